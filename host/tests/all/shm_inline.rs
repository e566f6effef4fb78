//! The shared region's atomics compiled into the guest (`shm_inline.rs`):
//! the rewritten calls do what the host's calls do, at every edge of the
//! region, in both modes; calls the rewrite leaves to the host (through a
//! table) agree with them; and cached code is not reused for a region of
//! another size.

use wasmpool::{ModuleCache, Pool, TaskErrorKind};

use crate::util::{both_modes, pool_builder};

/// Every plain atomic, called directly (rewritten when there is a region)
/// and through a table (never rewritten), each wrapped as a numeric task.
const ATOMICS: &str = r#"(module
    (import "wasmpool" "shm_load_i32" (func $load32 (param i64) (result i32)))
    (import "wasmpool" "shm_store_i32" (func $store32 (param i64 i32)))
    (import "wasmpool" "shm_add_i32" (func $add32 (param i64 i32) (result i32)))
    (import "wasmpool" "shm_cas_i32" (func $cas32 (param i64 i32 i32) (result i32)))
    (import "wasmpool" "shm_load_i64" (func $load64 (param i64) (result i64)))
    (import "wasmpool" "shm_store_i64" (func $store64 (param i64 i64)))
    (import "wasmpool" "shm_add_i64" (func $add64 (param i64 i64) (result i64)))
    (import "wasmpool" "shm_cas_i64" (func $cas64 (param i64 i64 i64) (result i64)))
    (type $add64_t (func (param i64 i64) (result i64)))
    (table 1 funcref)
    (elem (i32.const 0) $add64)
    (memory (export "memory") 1)
    (func (export "wasmpool_abi_v1"))
    (func (export "load32") (param i64) (result i32) (call $load32 (local.get 0)))
    (func (export "store32") (param i64 i32) (result i32) (call $store32 (local.get 0) (local.get 1)) (i32.const 0))
    (func (export "add32") (param i64 i32) (result i32) (call $add32 (local.get 0) (local.get 1)))
    (func (export "cas32") (param i64 i32 i32) (result i32) (call $cas32 (local.get 0) (local.get 1) (local.get 2)))
    (func (export "load64") (param i64) (result i64) (call $load64 (local.get 0)))
    (func (export "store64") (param i64 i64) (result i64) (call $store64 (local.get 0) (local.get 1)) (i64.const 0))
    (func (export "add64") (param i64 i64) (result i64) (call $add64 (local.get 0) (local.get 1)))
    (func (export "cas64") (param i64 i64 i64) (result i64) (call $cas64 (local.get 0) (local.get 1) (local.get 2)))
    (func (export "add64_by_table") (param i64 i64) (result i64)
        (call_indirect (type $add64_t) (local.get 0) (local.get 1) (i32.const 0)))
    (func (export "tail_add64") (param i64 i64) (result i64) (return_call $add64 (local.get 0) (local.get 1)))
)"#;

const REGION: u64 = 2 << 16;

fn pool(region: u64, cache: Option<ModuleCache>) -> Pool {
    pool_builder()
        .module_bytes(ATOMICS)
        .workers(1)
        .shared_memory(region as usize)
        .cache(cache)
        .build()
        .unwrap()
}

/// One task's result: the value, or the ABI error's message.
fn call<A: serde::Serialize>(pool: &Pool, task: &str, args: A) -> Result<i64, String> {
    let mut r = pool.map::<A, i64>(task, [args]).unwrap();
    r.pop().unwrap().map_err(|e| {
        assert_eq!(e.kind(), TaskErrorKind::Abi, "{task}: {e}");
        e.message().to_string()
    })
}

both_modes! {
    #[test]
    fn each_atomic_does_what_the_host_does_at_the_edges_of_the_region() {
        let pool = pool(REGION, None);
        let region = pool.shared_region().unwrap();
        let last64 = REGION as i64 - 8;
        let last32 = REGION as i64 - 4;

        // The last offsets in the region: each operation, checked from the host.
        assert_eq!(call(&pool, "store64", (last64, -5_i64)), Ok(0));
        assert_eq!(region.load_i64(last64 as u64).unwrap(), -5);
        assert_eq!(call(&pool, "add64", (last64, 7_i64)), Ok(-5));
        assert_eq!(call(&pool, "load64", (last64,)), Ok(2));
        assert_eq!(call(&pool, "cas64", (last64, 3_i64, 9_i64)), Ok(2), "no swap");
        assert_eq!(call(&pool, "cas64", (last64, 2_i64, 9_i64)), Ok(2), "swap");
        assert_eq!(region.load_i64(last64 as u64).unwrap(), 9);
        assert_eq!(call(&pool, "add64_by_table", (last64, 1_i64)), Ok(9));
        assert_eq!(call(&pool, "tail_add64", (last64, 1_i64)), Ok(10));
        assert_eq!(region.load_i64(last64 as u64).unwrap(), 11);

        assert_eq!(call(&pool, "store32", (last32, i32::MAX)), Ok(0));
        assert_eq!(call(&pool, "add32", (last32, 1)), Ok(i64::from(i32::MAX)));
        assert_eq!(region.load_i32(last32 as u64).unwrap(), i32::MIN, "wrapping add");
        assert_eq!(call(&pool, "cas32", (last32, i32::MIN, 4)), Ok(i64::from(i32::MIN)));
        assert_eq!(call(&pool, "load32", (last32,)), Ok(4));
        assert_eq!(region.load_i64(last64 as u64).unwrap() & 0xffff_ffff, 11, "the i64 below is intact");

        // Past the region, negative, misaligned: the host's own messages,
        // whether the call was rewritten or went through the table.
        let outside = |name: &str, at: i64, width: u64| {
            format!("{name}: range at offset {at} of {width} bytes is outside the shared region")
        };
        for (task, args, expect) in [
            ("load64", (last64 + 8, 0, 0), outside("shm_load_i64", last64 + 8, 8)),
            ("store64", (last64 + 8, 1, 0), outside("shm_store_i64", last64 + 8, 8)),
            ("add64", (last64 + 8, 1, 0), outside("shm_add_i64", last64 + 8, 8)),
            ("add64_by_table", (last64 + 8, 1, 0), outside("shm_add_i64", last64 + 8, 8)),
            ("cas64", (last64 + 8, 0, 1), outside("shm_cas_i64", last64 + 8, 8)),
            ("load32", (last32 + 4, 0, 0), outside("shm_load_i32", last32 + 4, 4)),
            ("add32", (i64::MAX - 3, 1, 0), outside("shm_add_i32", i64::MAX - 3, 4)),
            ("load64", (-8, 0, 0), "shm_load_i64: negative offset -8".into()),
            ("store32", (-1, 0, 0), "shm_store_i32: negative offset -1".into()),
            ("add64", (4, 1, 0), "shm_add_i64: offset 4 is not aligned to 8 bytes".into()),
            ("cas32", (2, 0, 1), "shm_cas_i32: offset 2 is not aligned to 4 bytes".into()),
        ] {
            let got = match task {
                "load64" | "load32" => call(&pool, task, (args.0,)),
                "cas64" | "cas32" => call(&pool, task, args),
                _ => call(&pool, task, (args.0, args.1)),
            };
            let message = got.expect_err(task);
            assert!(message.starts_with(&expect), "{task}: {message:?}, expected {expect:?}");
        }
        // Nothing outside the edges was written.
        assert_eq!(region.load_i64(0).unwrap(), 0);
        // A bad offset's backtrace names the function that made the call.
        let err = pool.map::<(i64, i64), i64>("add64", [(4, 1)]).unwrap().pop().unwrap().unwrap_err();
        let trace = err.backtrace().unwrap_or_default();
        assert!(trace.contains("wasmpool::shm_add_i64 (inlined)"), "{trace}");
    }

    #[test]
    fn a_fuel_budget_buys_what_it_bought_without_a_region() {
        // Inlined, a call is a dozen wasm instructions where the host call
        // was one: with fuel on, calls stay host calls, so a budget that
        // fits 1,000 host calls still fits them (it would not fit the
        // inlined ones: 2.4x the fuel, the adversary's measure).
        let wat = r#"(module
            (import "wasmpool" "shm_add_i64" (func $add (param i64 i64) (result i64)))
            (memory (export "memory") 1)
            (func (export "wasmpool_abi_v1"))
            (func (export "calls") (param i64) (result i64) (local $i i64)
                (loop $l
                    (drop (call $add (i64.const 0) (i64.const 1)))
                    (local.set $i (i64.add (local.get $i) (i64.const 1)))
                    (br_if $l (i64.lt_u (local.get $i) (local.get 0))))
                (local.get $i)))"#;
        let pool = pool_builder()
            .module_bytes(wat)
            .workers(1)
            .shared_memory(1 << 16)
            .fuel(20_000)
            .cache(None)
            .build()
            .unwrap();
        assert_eq!(pool.map::<i64, i64>("calls", [1000]).unwrap(), [Ok(1000)]);
        assert_eq!(pool.shared_region().unwrap().load_i64(0).unwrap(), 1000);
    }

    #[test]
    fn a_module_importing_the_region_itself_keeps_its_memory_and_its_calls() {
        // The region is already memory 0 here: the rewrite must use it, not
        // add a second one, and the module's own memory keeps its index.
        let wat = r#"(module
            (import "wasmpool" "shared" (memory 1 65536 shared))
            (import "wasmpool" "shm_add_i64" (func $add (param i64 i64) (result i64)))
            (memory (export "memory") 1)
            (data (memory 1) (i32.const 16) "\2a")
            (func (export "wasmpool_abi_v1"))
            (func (export "both") (param i64) (result i64)
                (drop (i64.atomic.rmw.add 0 (i32.const 8) (i64.const 100)))
                (drop (call $add (i64.const 8) (local.get 0)))
                (i64.add (i64.atomic.load 0 (i32.const 8)) (i64.load8_u 1 (i32.const 16)))))"#;
        let pool = pool_builder()
            .module_bytes(wat)
            .workers(1)
            .shared_memory(1 << 16)
            .cache(None)
            .build()
            .unwrap();
        assert_eq!(pool.map::<i64, i64>("both", [5]).unwrap(), [Ok(105 + 42)]);
        assert_eq!(pool.shared_region().unwrap().load_i64(8).unwrap(), 105);
    }
}

#[test]
fn a_region_imported_with_another_type_is_refused_in_the_modules_own_terms() {
    // A 64-bit `wasmpool::shared` import is not the region's type: the
    // module is not rewritten (its i32 accesses would not fit it), and the
    // linker says why, about the module as written.
    let wat = r#"(module
        (import "wasmpool" "shm_add_i64" (func $add (param i64 i64) (result i64)))
        (import "wasmpool" "shared" (memory i64 1 1 shared))
        (memory (export "memory") 1)
        (func (export "wasmpool_abi_v1"))
        (func (export "op") (param i64) (result i64) (call $add (local.get 0) (i64.const 1))))"#;
    let err = Pool::builder()
        .module_bytes(wat)
        .shared_memory(1 << 16)
        .cache(None)
        .build()
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("incompatible import type for `wasmpool::shared`"),
        "{err}"
    );
}

#[test]
fn cached_code_is_not_reused_for_a_region_of_another_size() {
    // The rewritten code embeds the region's size in its bounds checks, so
    // the cache must keep one entry per size: an offset inside the larger
    // region is outside the smaller one, whichever was compiled first.
    let dir = tempfile::tempdir().unwrap();
    let cache = || Some(ModuleCache::new(dir.path()));
    let small = 1 << 16;
    let inside_large_only = (small,);
    for round in 0..2 {
        let p = pool(small, cache());
        let err = call(&p, "load64", inside_large_only).expect_err("outside 64 KiB");
        assert!(
            err.contains("is outside the shared region"),
            "round {round}: {err}"
        );
        let p = pool(REGION, cache());
        assert_eq!(
            call(&p, "load64", inside_large_only),
            Ok(0),
            "round {round}"
        );
    }
    let entries = std::fs::read_dir(dir.path()).unwrap().count();
    assert_eq!(entries, 2, "one entry per region size");
}
