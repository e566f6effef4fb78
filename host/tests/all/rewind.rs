//! Instances rewound between tasks instead of replaced (`rewind.rs`): with
//! `Isolation::Task` every task must see the instance as it was after
//! instantiation, whatever the last task wrote (its memory's image pages,
//! pages the start function wrote, zero pages, pages across a full scan
//! vector, globals), and a task that grows memory, writes too much, or a
//! module that changes tables or calls out while starting, gets a new
//! instance as before.

use wasmpool::{Isolation, Pool, WorkerStats};

use crate::util::{both_modes, pool_builder};

/// A module whose whole state a task can read (`look`) and change.
const STATE: &str = r#"(module
    (memory (export "memory") 4)
    ;; Image pages: 42 at 1024, and four bytes across a page boundary.
    (data (i32.const 1024) "\2a\00\00\00")
    (data (i32.const 4094) "\01\02\03\04")
    (global $g (mut i64) (i64.const 7))
    (global $f (mut f64) (f64.const 1.5))
    ;; What starting writes: a zero page, an image page, a global.
    (func $init
        (i32.store (i32.const 20000) (i32.const 99))
        (i32.store (i32.const 1028) (i32.const 5))
        (global.set $g (i64.const 8)))
    (start $init)
    ;; A checksum of everything a task can see: every byte of memory (by
    ;; position), its size and the globals.
    (func (export "look") (result i64) (local $at i32) (local $sum i64)
        (loop $next
            (local.set $sum (i64.add
                (i64.mul (local.get $sum) (i64.const 31))
                (i64.load (local.get $at))))
            (local.set $at (i32.add (local.get $at) (i32.const 8)))
            (br_if $next (i32.lt_u (local.get $at) (i32.mul (memory.size) (i32.const 65536)))))
        (i64.add (i64.add (local.get $sum) (i64.extend_i32_u (memory.size)))
            (i64.add (global.get $g) (i64.trunc_f64_s (f64.mul (global.get $f) (f64.const 1000))))))
    ;; Writes `v` at `at` and changes the globals; returns what was there.
    (func (export "poke") (param $at i32) (param $v i32) (result i32) (local $old i32)
        (local.set $old (i32.load (local.get $at)))
        (i32.store (local.get $at) (local.get $v))
        (global.set $g (i64.add (global.get $g) (i64.const 1)))
        (global.set $f (f64.const -2.25))
        (local.get $old))
    ;; Writes a byte at the start of every other 4 KiB page of the first
    ;; `pages`: more separate runs than one scan reports.
    (func (export "scribble") (param $pages i32) (result i32) (local $p i32)
        (loop $next
            (i32.store8 (i32.mul (local.get $p) (i32.const 4096)) (i32.const 0xff))
            (local.set $p (i32.add (local.get $p) (i32.const 2)))
            (br_if $next (i32.lt_u (local.get $p) (local.get $pages))))
        (local.get $pages))
    ;; Fills `bytes` bytes from 0.
    (func (export "fill") (param $bytes i32) (result i32)
        (memory.fill (i32.const 0) (i32.const 0x5a) (local.get $bytes))
        (local.get $bytes))
    (func (export "grow") (result i32) (memory.grow (i32.const 1))))"#;

fn pool(module: &str) -> Pool {
    pool_builder()
        .module_bytes(module)
        .workers(1)
        .isolation(Isolation::Task)
        .cache(None)
        .build()
        .unwrap()
}

/// One task, alone (so that the async mode too runs it in its one idle
/// instance).
fn one<T: serde::de::DeserializeOwned>(pool: &Pool, task: &str, args: impl serde::Serialize) -> T {
    pool.map::<_, T>(task, [args])
        .unwrap()
        .pop()
        .unwrap()
        .unwrap()
}

fn stats(pool: &Pool) -> WorkerStats {
    pool.worker_stats().pop().unwrap()
}

/// Runs `count` (the shared region's counter, which `module`'s start
/// function bumps) three times with a fresh instance each: the start
/// function must run for each, so the module is never rewound.
fn counts_once_a_task(module: &str) {
    let pool = pool_builder()
        .module_bytes(module)
        .workers(1)
        .isolation(Isolation::Task)
        .shared_memory(1 << 16)
        .cache(None)
        .build()
        .unwrap();
    let counts: Vec<i64> = (0..3).map(|_| one(&pool, "count", ())).collect();
    assert!(counts.windows(2).all(|w| w[1] > w[0]), "{counts:?}");
    assert_eq!(stats(&pool).rewound, 0);
}

both_modes! {
    #[test]
    fn every_task_sees_the_state_instantiation_left() {
        let pool = pool(STATE);
        let start: i64 = one(&pool, "look", ());
        // Each write, then the whole state again: as it started.
        for (at, old) in [(1024, 42), (1028, 5), (20000, 99), (4096, 0x0403), (200_000, 0)] {
            for _ in 0..2 {
                assert_eq!(one::<i32>(&pool, "poke", (at, 7)), old, "at {at}");
                assert_eq!(one::<i64>(&pool, "look", ()), start, "after a write at {at}");
            }
        }
        assert_eq!(one::<i32>(&pool, "scribble", 64), 64);
        assert_eq!(one::<i64>(&pool, "look", ()), start, "after writes to 32 pages");
        // Many tasks in one map, each on the state of a new instance.
        let olds = pool.map::<(i32, i32), i32>("poke", vec![(1024, 1); 50]).unwrap();
        assert!(olds.iter().all(|r| r == &Ok(42)), "{olds:?}");
        let s = stats(&pool);
        assert!(s.rewound >= 60, "instances were rewound, not replaced: {s:?}");
    }

    /// A rewind skips the scan when its thread took no page fault since
    /// the last one, and puts back the pages that scan found: a task that
    /// writes only those makes no fault, one that writes a page never
    /// written before makes one. Hundreds of tasks in one map, writing
    /// known pages and new ones in turn, past the scan every 64 rewinds
    /// makes to check the fault count: each sees nothing of the others.
    #[test]
    fn tasks_writing_known_and_new_pages_in_turn_each_see_a_new_instance() {
        let pool = pool(STATE);
        let start: i64 = one(&pool, "look", ());
        // 512 bytes into each 4 KiB page: zeros in the image and after
        // starting. Three rounds over the pages: new ones in the first,
        // known ones after; each page written twice in a row (the second
        // task sees whether the first one's write was put back), then a
        // known page.
        let pages = 4 * 65536 / 4096;
        let pokes: Vec<(i32, i32)> = (0..3 * pages)
            .flat_map(|i| {
                let at = (i * 7) % pages * 4096 + 512;
                [(at, i + 1), (at, -i), (512, -1)]
            })
            .collect();
        let olds = pool.map::<(i32, i32), i32>("poke", pokes.clone()).unwrap();
        for ((at, _), old) in pokes.iter().zip(&olds) {
            assert_eq!(old, &Ok(0), "the write at {at} of an earlier task was seen");
        }
        assert_eq!(one::<i64>(&pool, "look", ()), start);
        assert!(stats(&pool).rewound as i32 >= 9 * pages);
    }

    #[test]
    fn a_task_that_grows_memory_or_writes_too_much_gets_a_new_instance() {
        let pool = pool(STATE);
        let start: i64 = one(&pool, "look", ());
        let before = stats(&pool);
        assert_eq!(one::<i32>(&pool, "grow", ()), 4);
        assert_eq!(one::<i64>(&pool, "look", ()), start, "back to 4 pages");
        let after = stats(&pool);
        assert_eq!(after.instances, before.instances + 1, "{before:?} -> {after:?}");
        // More than a rewind puts back (1 MiB): a bigger memory.
        let big = STATE.replace("(memory (export \"memory\") 4)", "(memory (export \"memory\") 40)");
        let pool = self::pool(&big);
        let start: i64 = one(&pool, "look", ());
        let before = stats(&pool);
        assert_eq!(one::<i32>(&pool, "fill", 2 << 20), 2 << 20);
        assert_eq!(one::<i64>(&pool, "look", ()), start, "after 2 MiB written");
        let after = stats(&pool);
        assert_eq!(after.instances, before.instances + 1, "{before:?} -> {after:?}");
        // A trap: a new instance.
        assert!(pool.map::<(i32, i32), i32>("poke", [(-1, 0)]).unwrap()[0].is_err());
        assert_eq!(one::<i64>(&pool, "look", ()), start, "after a trap");
    }

    #[test]
    fn modules_that_change_tables_or_call_out_while_starting_are_not_rewound() {
        // A table a task changes: replaced every task, so each sees it new.
        let table = r#"(module
            (table 2 funcref)
            (func $f (result i32) (i32.const 1))
            (elem declare func $f)
            (type $t (func (result i32)))
            (func (export "swap") (result i32) (local $was i32)
                (local.set $was (ref.is_null (table.get (i32.const 1))))
                (table.set (i32.const 1) (ref.func $f))
                (local.get $was)))"#;
        let pool = self::pool(table);
        let was: Vec<i32> = (0..3).map(|_| one(&pool, "swap", ())).collect();
        assert_eq!(was, [1, 1, 1]);
        assert_eq!(stats(&pool).rewound, 0);
        // A start function that calls the host: it must run for every
        // task, as a new instance's would.
        let counting = r#"(module
            (import "wasmpool" "shm_add_i64" (func $add (param i64 i64) (result i64)))
            (import "wasmpool" "shm_load_i64" (func $load (param i64) (result i64)))
            (memory (export "memory") 1)
            (func (export "wasmpool_abi_v1"))
            (func $init (drop (call $add (i64.const 0) (i64.const 1))))
            (start $init)
            (func (export "count") (result i64) (call $load (i64.const 0))))"#;
        counts_once_a_task(counting);
        // The same with the region imported as a memory and written by a
        // wasm atomic: no import is called, and still once a task.
        let counting = r#"(module
            (import "wasmpool" "shared" (memory 1 1 shared))
            (func (export "wasmpool_abi_v1"))
            (func $init (drop (i64.atomic.rmw.add (i32.const 0) (i64.const 1))))
            (start $init)
            (func (export "count") (result i64) (i64.atomic.load (i32.const 0))))"#;
        counts_once_a_task(counting);
    }

    #[test]
    fn the_exports_rewinding_adds_are_not_tasks() {
        let pool = pool(STATE);
        let err = pool
            .map::<i32, i32>("wasmpool:rewind:memory", [1])
            .unwrap_err()
            .to_string();
        assert!(err.contains("no task named"), "{err}");
        assert!(!err.contains("is a memory"), "{err}");
    }

    #[test]
    fn recycle_after_rewinds_too() {
        let pool = pool_builder()
            .module_bytes(STATE)
            .workers(1)
            .recycle_after(2)
            .cache(None)
            .build()
            .unwrap();
        // `look` writes nothing (a rewind after it alone sets the globals
        // back and leaves memory be), `poke` does: after a write and a
        // read in one instance, its memory is still put back.
        let start: i64 = one(&pool, "look", ());
        assert_eq!(one::<i64>(&pool, "look", ()), start);
        assert_eq!(one::<i32>(&pool, "poke", (1024, 1)), 42);
        assert_ne!(one::<i64>(&pool, "look", ()), start, "its own write, seen");
        assert_eq!(one::<i64>(&pool, "look", ()), start, "rewound");
        assert_eq!(one::<i32>(&pool, "poke", (1024, 1)), 42);
        let olds: Vec<i32> = (0..5).map(|_| one(&pool, "poke", (1024, 1))).collect();
        assert_eq!(olds, [42, 1, 42, 1, 42]);
        assert!(stats(&pool).rewound >= 4);
    }
}
