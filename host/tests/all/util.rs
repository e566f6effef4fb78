//! Shared helpers: pools over the built guests, each with a private cache.

use wasmpool::{ModuleCache, Pool, PoolBuilder};

/// A builder for `guest` with `workers` workers and no shared state with
/// other tests (no cache, so tests never race on cache files).
pub(crate) fn builder(guest: &str, workers: usize) -> PoolBuilder {
    Pool::builder()
        .module_file(guest)
        .workers(workers)
        .cache(None)
}

/// A built pool for `guest`.
pub(crate) fn pool(guest: &str, workers: usize) -> Pool {
    builder(guest, workers)
        .build()
        .unwrap_or_else(|e| panic!("{guest}: {e}"))
}

/// A fresh, private cache directory.
pub(crate) fn cache_dir() -> (tempfile::TempDir, ModuleCache) {
    let dir = tempfile::tempdir().unwrap();
    let cache = ModuleCache::new(dir.path().join("cache"));
    (dir, cache)
}

/// A pool over a WAT module given as text.
pub(crate) fn wat_pool(wat: &str, workers: usize) -> Result<Pool, wasmpool::Error> {
    Pool::builder()
        .module_bytes(wat)
        .name("fixture.wat")
        .workers(workers)
        .cache(None)
        .build()
}
