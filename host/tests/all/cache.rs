//! The on-disk module cache: a second load of the same module does not
//! recompile it.

use wasmpool::{CacheOutcome, ModuleCache, Pool};
use wasmpool_tests::SQUARE;

use crate::util::cache_dir;

fn build(cache: &ModuleCache) -> Pool {
    Pool::builder()
        .module_file(SQUARE)
        .workers(1)
        .cache(Some(cache.clone()))
        .build()
        .unwrap()
}

#[test]
fn second_build_loads_from_cache() {
    let (_dir, cache) = cache_dir();
    assert_eq!(build(&cache).cache_outcome(), CacheOutcome::Miss);
    let second = build(&cache);
    assert_eq!(second.cache_outcome(), CacheOutcome::Hit);
    assert_eq!(second.map::<i64, i64>("square", [7]).unwrap(), [Ok(49)]);
    let entries = std::fs::read_dir(cache.dir()).unwrap().count();
    assert_eq!(entries, 1, "one entry, no temporary files left");
}

#[test]
fn corrupt_cache_entry_is_recompiled() {
    let (_dir, cache) = cache_dir();
    drop(build(&cache));
    for entry in std::fs::read_dir(cache.dir()).unwrap() {
        std::fs::write(entry.unwrap().path(), b"garbage").unwrap();
    }
    let pool = build(&cache);
    assert_eq!(pool.cache_outcome(), CacheOutcome::Miss);
    assert_eq!(pool.map::<i64, i64>("square", [3]).unwrap(), [Ok(9)]);
    assert_eq!(
        build(&cache).cache_outcome(),
        CacheOutcome::Hit,
        "the entry was rewritten"
    );
}

#[test]
fn disabled_cache_always_compiles() {
    let pool = Pool::builder()
        .module_file(SQUARE)
        .workers(1)
        .cache(None)
        .build()
        .unwrap();
    assert_eq!(pool.cache_outcome(), CacheOutcome::Disabled);
}
