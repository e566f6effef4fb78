//! Hostile guests: each ends with a clear error at its own index, and the
//! pool keeps serving the other tasks. Every test runs in both modes
//! (synchronous and async, `both_modes!`) but those where the pool must go
//! on past a worker stuck in a wasm atomic wait: the synchronous mode
//! abandons and replaces it, the async mode cannot.

use std::time::{Duration, Instant};

use wasmpool::{Isolation, Pool, TaskErrorKind};
use wasmpool_tests::TESTGUEST;

use crate::util::{both_modes, builder, pool_builder};

/// A numeric module with the hostile exports, plus `ok` returning its input.
const HOSTILE: &str = r#"(module
    (memory (export "memory") 1)
    (func (export "ok") (param i64) (result i64) local.get 0)
    (func (export "spin") (param i64) (result i64) (loop br 0) local.get 0)
    (func (export "bomb") (param i64) (result i64)
        (loop (br_if 0 (i32.ne (memory.grow (i32.const 16)) (i32.const -1))))
        unreachable)
    (func $recurse (export "recurse") (param i64) (result i64)
        (call $recurse (i64.add (local.get 0) (i64.const 1))))
)"#;

fn hostile(configure: impl FnOnce(wasmpool::PoolBuilder) -> wasmpool::PoolBuilder) -> Pool {
    configure(
        pool_builder()
            .module_bytes(HOSTILE)
            .name("hostile.wat")
            .workers(2)
            .cache(None),
    )
    .build()
    .unwrap()
}

/// Runs `task` on input 1 between two runs of `ok`, and returns its error;
/// the `ok`s around it must succeed on the same pool.
fn fails_alone(pool: &Pool, task: &str) -> wasmpool::TaskError {
    assert_eq!(pool.map::<i64, i64>("ok", [1, 2]).unwrap(), [Ok(1), Ok(2)]);
    let err = pool
        .map::<i64, i64>(task, [1])
        .unwrap()
        .pop()
        .unwrap()
        .unwrap_err();
    assert_eq!(
        pool.map::<i64, i64>("ok", 0..100).unwrap().len(),
        100,
        "the pool still serves"
    );
    assert!(
        pool.map::<i64, i64>("ok", 0..100)
            .unwrap()
            .iter()
            .all(Result::is_ok)
    );
    err
}

both_modes! {
    #[test]
    fn infinite_loop_times_out() {
        let pool = hostile(|b| b.timeout(Duration::from_millis(100)));
        let start = Instant::now();
        let err = fails_alone(&pool, "spin");
        assert_eq!(err.kind(), TaskErrorKind::Timeout, "{err}");
        assert_eq!(err.message(), "the task ran past its time limit of 100ms");
        assert!(start.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn infinite_loop_runs_out_of_fuel() {
        let pool = hostile(|b| b.fuel(100_000));
        let err = fails_alone(&pool, "spin");
        assert_eq!(err.kind(), TaskErrorKind::OutOfFuel, "{err}");
        assert_eq!(err.message(), "the task used up its fuel (100000 units)");
    }

    #[test]
    fn memory_bomb_is_out_of_memory() {
        let pool = hostile(|b| b.max_memory(16 << 20));
        let err = fails_alone(&pool, "bomb");
        assert_eq!(err.kind(), TaskErrorKind::OutOfMemory, "{err}");
        assert!(
            err.message().contains("past the limit of 16777216 bytes"),
            "{err}"
        );
    }

    #[test]
    fn rust_memory_bomb_is_out_of_memory() {
        let pool = builder(TESTGUEST, 1).max_memory(32 << 20).build().unwrap();
        let r = pool.map::<usize, usize>("alloc_mb", [1, 64, 2]).unwrap();
        assert_eq!(r[0], Ok(1));
        assert_eq!(
            r[1].as_ref().unwrap_err().kind(),
            TaskErrorKind::OutOfMemory,
            "{:?}",
            r[1]
        );
        assert_eq!(r[2], Ok(2));
    }

    #[test]
    fn unbounded_recursion_is_a_stack_overflow_trap() {
        let pool = hostile(|b| b);
        let err = fails_alone(&pool, "recurse");
        assert_eq!(err.kind(), TaskErrorKind::Trap, "{err}");
        assert!(err.message().contains("call stack exhausted"), "{err}");
    }

    #[test]
    fn queue_get_that_never_returns_times_out() {
        let pool = builder(TESTGUEST, 1)
            .queue("q", 1)
            .timeout(Duration::from_millis(200))
            .build()
            .unwrap();
        let start = Instant::now();
        let r = pool.map::<(), String>("get_forever", [()]).unwrap();
        let err = r[0].as_ref().unwrap_err();
        assert_eq!(err.kind(), TaskErrorKind::Timeout, "{err}");
        assert!(start.elapsed() < Duration::from_secs(5));
        assert_eq!(
            pool.map::<(u64, u64), i64>("add", [(1, 2)]).unwrap(),
            [Ok(3)],
            "still serving"
        );
    }

    #[test]
    fn huge_output_is_refused_at_the_default_limit() {
        let pool = builder(TESTGUEST, 1).build().unwrap();
        let r = pool.map::<usize, String>("big", [65 << 20, 3]).unwrap();
        let err = r[0].as_ref().unwrap_err();
        assert_eq!(err.kind(), TaskErrorKind::Abi);
        assert!(
            err.message().contains("exceed the limit of 67108864 bytes"),
            "{err}"
        );
        assert_eq!(r[1].as_deref(), Ok("xxx"));
    }

    #[test]
    fn task_isolation_gives_every_task_a_fresh_instance() {
        let pool = builder(TESTGUEST, 1)
            .isolation(Isolation::Task)
            .build()
            .unwrap();
        let calls: Vec<u64> = pool
            .map("calls", vec![(); 5])
            .unwrap()
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(
            calls,
            [1, 1, 1, 1, 1],
            "no state leaks from one task to the next"
        );
    }

    #[test]
    fn a_fresh_instance_sees_none_of_what_the_last_one_wrote() {
        // Slots are reset by writing back the pages an instance dirtied
        // (engine.rs): its data segment, untouched memory, and memory it
        // grew must all read as new for the next task in the same slot.
        let module = r#"(module
            (memory 2)
            (data (i32.const 1024) "\2a\00\00\00")
            (func (export "poke") (param $at i32) (result i32) (local $old i32)
                (if (i32.ge_u (local.get $at) (i32.const 131072))
                    (then (drop (memory.grow (i32.const 2)))))
                (local.set $old (i32.load (local.get $at)))
                (i32.store (local.get $at) (i32.const 0x5a5a5a5a))
                (local.get $old)))"#;
        let pool = pool_builder()
            .module_bytes(module)
            .workers(1)
            .isolation(Isolation::Task)
            .cache(None)
            .build()
            .unwrap();
        for at in [1024, 70_000, 200_000, 1024, 200_000, 70_000] {
            let old: i32 = pool.map("poke", [at]).unwrap().pop().unwrap().unwrap();
            assert_eq!(old, if at == 1024 { 42 } else { 0 }, "at {at}");
        }
    }

    #[test]
    fn recycle_after_replaces_the_instance() {
        let pool = builder(TESTGUEST, 1).recycle_after(2).build().unwrap();
        // One task at a time, so that the async mode too has one instance.
        let calls: Vec<u64> = (0..5)
            .map(|_| pool.map("calls", [()]).unwrap().pop().unwrap().unwrap())
            .collect();
        assert_eq!(calls, [1, 2, 1, 2, 1]);
    }

    #[test]
    fn every_host_function_rejects_bad_pointers_and_offsets() {
        let module = r#"(module
            (import "wasmpool" "queue_open" (func $queue_open (param i32 i32) (result i32)))
            (import "wasmpool" "queue_put" (func $queue_put (param i32 i32 i32 i64) (result i32)))
            (import "wasmpool" "queue_get" (func $queue_get (param i32 i64) (result i64)))
            (import "wasmpool" "queue_message" (func $queue_message (param i32 i32) (result i32)))
            (import "wasmpool" "queue_close" (func $queue_close (param i32)))
            (import "wasmpool" "queue_len" (func $queue_len (param i32) (result i32)))
            (import "wasmpool" "shm_read" (func $shm_read (param i64 i32 i32)))
            (import "wasmpool" "shm_write" (func $shm_write (param i64 i32 i32)))
            (import "wasmpool" "shm_load_i64" (func $shm_load_i64 (param i64) (result i64)))
            (import "wasmpool" "shm_add_i32" (func $shm_add_i32 (param i64 i32) (result i32)))
            (import "wasmpool" "shm_wait_i32" (func $shm_wait_i32 (param i64 i32 i64) (result i32)))
            (import "wasmpool" "shm_notify" (func $shm_notify (param i64 i32) (result i32)))
            (memory (export "memory") 1)
            (func (export "wasmpool_abi_v1"))
            (func (export "open_oob") (result i32) (call $queue_open (i32.const 65535) (i32.const 2)))
            (func (export "put_oob") (result i32) (call $queue_put (i32.const 0) (i32.const -8) (i32.const 16) (i64.const 0)))
            (func (export "put_bad_handle") (result i32) (call $queue_put (i32.const 7) (i32.const 0) (i32.const 1) (i64.const 0)))
            (func (export "get_bad_handle") (result i64) (call $queue_get (i32.const -3) (i64.const 0)))
            (func (export "message_without_get") (result i32) (call $queue_message (i32.const 0) (i32.const 4)))
            (func (export "close_bad_handle") (call $queue_close (i32.const 99)))
            (func (export "len_bad_handle") (result i32) (call $queue_len (i32.const 99)))
            (func (export "shm_read_oob") (call $shm_read (i64.const 0) (i32.const 65530) (i32.const 100)))
            (func (export "shm_write_past_region") (call $shm_write (i64.const 65530) (i32.const 0) (i32.const 100)))
            (func (export "shm_negative_offset") (result i64) (call $shm_load_i64 (i64.const -8)))
            (func (export "shm_misaligned") (result i32) (call $shm_add_i32 (i64.const 2) (i32.const 1)))
            (func (export "shm_huge_offset") (result i64) (call $shm_load_i64 (i64.const 0x7ffffffffffffff8)))
            (func (export "wait_misaligned") (result i32) (call $shm_wait_i32 (i64.const 1) (i32.const 0) (i64.const 0)))
            (func (export "notify_oob") (result i32) (call $shm_notify (i64.const 65536) (i32.const 1)))
        )"#;
        let pool = pool_builder()
            .module_bytes(module)
            .workers(2)
            .queue("q", 4)
            .shared_memory(1 << 16)
            .cache(None)
            .build()
            .unwrap();
        for (task, expect) in [
            ("open_oob", "queue_open: out-of-bounds range"),
            ("put_oob", "queue_put: out-of-bounds range"),
            ("put_bad_handle", "queue_put: bad queue handle 7"),
            ("get_bad_handle", "queue_get: bad queue handle -3"),
            ("message_without_get", "queue_message: no message is held"),
            ("close_bad_handle", "queue_close: bad queue handle 99"),
            ("len_bad_handle", "queue_len: bad queue handle 99"),
            ("shm_read_oob", "shm_read: out-of-bounds range"),
            (
                "shm_write_past_region",
                "shm_write: range at offset 65530 of 100 bytes is outside the shared region",
            ),
            ("shm_negative_offset", "shm_load_i64: negative offset -8"),
            (
                "shm_misaligned",
                "shm_add_i32: offset 2 is not aligned to 4 bytes",
            ),
            (
                "shm_huge_offset",
                "shm_load_i64: range at offset 9223372036854775800 of 8 bytes is outside",
            ),
            (
                "wait_misaligned",
                "shm_wait_i32: offset 1 is not aligned to 4 bytes",
            ),
            (
                "notify_oob",
                "shm_notify: range at offset 65536 of 4 bytes is outside",
            ),
        ] {
            let r = pool.map::<(), serde_json::Value>(task, [()]).unwrap();
            let err = r[0].as_ref().unwrap_err();
            assert_eq!(err.kind(), TaskErrorKind::Abi, "{task}: {err}");
            assert!(err.message().starts_with(expect), "{task}: {err}");
        }
    }

    /// A property test over the host side of the ABI: thousands of random
    /// (pointer, length, offset) triples, through every host function that
    /// takes one, each ends in success or an ABI error, never in a host failure,
    /// and the pool serves every call.
    #[test]
    fn random_pointers_never_hurt_the_host() {
        let module = r#"(module
            (import "wasmpool" "input_read" (func $input_read (param i32 i32) (result i32)))
            (import "wasmpool" "output_write" (func $output_write (param i32 i32)))
            (import "wasmpool" "trap_message" (func $trap_message (param i32 i32)))
            (import "wasmpool" "queue_open" (func $queue_open (param i32 i32) (result i32)))
            (import "wasmpool" "queue_put" (func $queue_put (param i32 i32 i32 i64) (result i32)))
            (import "wasmpool" "shm_read" (func $shm_read (param i64 i32 i32)))
            (import "wasmpool" "shm_write" (func $shm_write (param i64 i32 i32)))
            (import "wasmpool" "shm_cas_i64" (func $shm_cas_i64 (param i64 i64 i64) (result i64)))
            (memory (export "memory") 1)
            (func (export "wasmpool_abi_v1"))
            (func (export "poke") (param $f i32) (param $p i32) (param $l i32) (param $o i64) (result i32)
                (block $done
                    (br_if $done (i32.ne (local.get $f) (i32.const 0)))
                    (return (call $input_read (local.get $p) (local.get $l))))
                (block $done
                    (br_if $done (i32.ne (local.get $f) (i32.const 1)))
                    (call $output_write (local.get $p) (local.get $l)) (return (i32.const 0)))
                (block $done
                    (br_if $done (i32.ne (local.get $f) (i32.const 2)))
                    (call $trap_message (local.get $p) (local.get $l)) (return (i32.const 0)))
                (block $done
                    (br_if $done (i32.ne (local.get $f) (i32.const 3)))
                    (return (call $queue_open (local.get $p) (local.get $l))))
                (block $done
                    (br_if $done (i32.ne (local.get $f) (i32.const 4)))
                    (return (call $queue_put (i32.const 0) (local.get $p) (local.get $l) (i64.const 0))))
                (block $done
                    (br_if $done (i32.ne (local.get $f) (i32.const 5)))
                    (call $shm_read (local.get $o) (local.get $p) (local.get $l)) (return (i32.const 0)))
                (block $done
                    (br_if $done (i32.ne (local.get $f) (i32.const 6)))
                    (call $shm_write (local.get $o) (local.get $p) (local.get $l)) (return (i32.const 0)))
                (i32.wrap_i64 (call $shm_cas_i64 (local.get $o) (i64.const 0) (i64.const 1))))
        )"#;
        let pool = pool_builder()
            .module_bytes(module)
            .workers(2)
            .queue("q", 1_000_000)
            .shared_memory(1 << 16)
            .cache(None)
            .build()
            .unwrap();
        // xorshift64*: deterministic, no dependency.
        let mut state = 0x9e3779b97f4a7c15u64;
        let mut next = move || {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            state.wrapping_mul(0x2545f4914f6cdd1d)
        };
        let edge = [
            0i64,
            1,
            7,
            8,
            4095,
            65535,
            65536,
            65537,
            i32::MAX as i64,
            -1,
            -8,
            i64::MAX - 7,
            i64::MIN,
        ];
        let mut pick = move || {
            let r = next();
            if r % 3 == 0 {
                edge[(r >> 8) as usize % edge.len()]
            } else {
                ((r >> 8) % 70_000) as i64
            }
        };
        let calls: Vec<(i32, i32, i32, i64)> = (0..5000i32)
            .map(|i| (i % 8, pick() as i32, (pick() % 70_000) as i32, pick()))
            .collect();
        let results = pool.map::<_, i64>("poke", calls.clone()).unwrap();
        assert_eq!(results.len(), calls.len());
        let (mut ok, mut abi) = (0, 0);
        for (call, r) in calls.iter().zip(&results) {
            match r {
                Ok(_) => ok += 1,
                Err(e) if e.kind() == TaskErrorKind::Abi => abi += 1,
                Err(e) => panic!("{call:?}: unexpected {e}"),
            }
        }
        assert!(
            ok > 500 && abi > 500,
            "both outcomes are exercised: {ok} ok, {abi} abi errors"
        );
    }
}

// ---- The seams (issue 12): waits outside wasm code, host memory, leaks,
// soundness. Each test is bounded in time: a wait that is not cut short
// makes it fail, not hang for long.

/// A WAT module waiting where nothing interrupts it: a wasm atomic wait on
/// the imported shared region, with no timeout.
pub(crate) const ATOMIC_WAIT: &str = r#"(module
    (import "wasmpool" "shared" (memory 1 1 shared))
    (func (export "wasmpool_abi_v1"))
    (func (export "ok") (param i64) (result i64) local.get 0)
    (func (export "wait_forever") (param i64) (result i64)
        (i64.extend_i32_u (memory.atomic.wait32 (i32.const 0) (i32.const 0) (i64.const -1))))
    (func (export "wait_in_a_loop") (param i64) (result i64)
        (loop (drop (memory.atomic.wait32 (i32.const 0) (i32.const 0) (i64.const -1))) (br 0))
        (local.get 0)))"#;

fn atomic_wait_pool(workers: usize, timeout: Option<Duration>) -> Pool {
    let mut b = pool_builder()
        .module_bytes(ATOMIC_WAIT)
        .name("atomic_wait.wat")
        .workers(workers)
        .shared_memory(1 << 16)
        .cache(None);
    if let Some(t) = timeout {
        b = b.timeout(t);
    }
    b.build().unwrap()
}

both_modes! {
    #[test]
    fn wasi_sleep_past_the_deadline_times_out() {
        let pool = builder(TESTGUEST, 2)
            .timeout(Duration::from_millis(200))
            .build()
            .unwrap();
        let start = Instant::now();
        let r = pool.map::<u64, u64>("sleep_ms", [60_000, 10]).unwrap();
        let err = r[0].as_ref().unwrap_err();
        assert_eq!(err.kind(), TaskErrorKind::Timeout, "{err}");
        assert_eq!(r[1], Ok(10));
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the sleep was cut at its deadline: {:?}",
            start.elapsed()
        );
        // The sleep was interrupted, not abandoned: the same worker goes on.
        assert_eq!(pool.map::<u64, u64>("sleep_ms", [1]).unwrap(), [Ok(1)]);
    }

    #[test]
    fn wasi_sleep_still_sleeps_without_a_limit() {
        let pool = builder(TESTGUEST, 1).build().unwrap();
        let start = Instant::now();
        assert_eq!(pool.map::<u64, u64>("sleep_ms", [30]).unwrap(), [Ok(30)]);
        assert!(start.elapsed() >= Duration::from_millis(30));
    }
}

// Synchronous mode only: in the async mode a wasm atomic wait blocks the
// worker's whole runtime thread, which is not abandoned and replaced.
#[test]
fn wasm_atomic_wait_past_the_deadline_times_out_and_the_worker_is_replaced() {
    let pool = atomic_wait_pool(1, Some(Duration::from_millis(200)));
    let start = Instant::now();
    let r = pool
        .map::<i64, i64>("wait_forever", [1])
        .unwrap()
        .pop()
        .unwrap();
    let err = r.unwrap_err();
    assert_eq!(err.kind(), TaskErrorKind::Timeout, "{err}");
    assert!(err.message().contains("abandoned"), "{err}");
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    // One worker, stuck for good: a fresh one took its place.
    assert_eq!(
        pool.map::<i64, i64>("ok", 0..100).unwrap(),
        (0..100).map(Ok).collect::<Vec<_>>()
    );
    assert_eq!(pool.worker_stats()[0].instances, 2);
}

// Synchronous mode only: in the async mode a wasm atomic wait blocks the
// worker's whole runtime thread, which is not abandoned and replaced.
#[test]
fn a_batch_with_a_stuck_task_answers_every_other_input_once() {
    // Tiny tasks around a stuck one, on one worker: they share its batches.
    let pool = atomic_wait_pool(1, Some(Duration::from_millis(200)));
    let inputs: Vec<i64> = (0..2000).collect();
    let r = pool.map::<i64, i64>("ok", inputs.clone()).unwrap();
    assert_eq!(r, inputs.iter().copied().map(Ok).collect::<Vec<_>>());
    // The second may be woken by the reclaim of the first worker (it wakes
    // every waiter on the region, which a guest must tolerate anyway).
    let r = pool.map::<i64, i64>("wait_forever", [0, 0]).unwrap();
    assert_eq!(r[0].as_ref().unwrap_err().kind(), TaskErrorKind::Timeout);
    assert!(
        r[1].as_ref()
            .map_or_else(|e| e.kind() == TaskErrorKind::Timeout, |&woken| woken == 0),
        "{r:?}"
    );
    assert_eq!(
        pool.map::<i64, i64>("ok", inputs.clone()).unwrap().len(),
        2000
    );
}

both_modes! {
    #[test]
    fn initialize_that_sleeps_forever_fails_the_build_at_its_deadline() {
        let module = r#"(module
            (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
            (memory (export "memory") 1)
            (func (export "_initialize")
                ;; one relative clock subscription of about 10^18 ns
                (i64.store (i32.const 24) (i64.const 1000000000000000000))
                (i32.store (i32.const 16) (i32.const 1))
                (drop (call $poll (i32.const 0) (i32.const 64) (i32.const 1) (i32.const 128))))
            (func (export "ok") (param i64) (result i64) local.get 0))"#;
        let start = Instant::now();
        let err = pool_builder()
            .module_bytes(module)
            .name("init.wat")
            .workers(2)
            .timeout(Duration::from_millis(200))
            .cache(None)
            .build()
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("init.wat: cannot instantiate: timeout"),
            "{err}"
        );
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{:?}",
            start.elapsed()
        );
    }

    #[test]
    fn initialize_that_waits_forever_in_an_atomic_wait_fails_the_build() {
        let module = r#"(module
            (import "wasmpool" "shared" (memory 1 1 shared))
            (func (export "wasmpool_abi_v1"))
            (func (export "_initialize")
                (drop (memory.atomic.wait32 (i32.const 0) (i32.const 0) (i64.const -1))))
            (func (export "ok") (param i64) (result i64) local.get 0))"#;
        let start = Instant::now();
        let err = pool_builder()
            .module_bytes(module)
            .name("init.wat")
            .workers(1)
            .shared_memory(1 << 16)
            .timeout(Duration::from_millis(200))
            .cache(None)
            .build()
            .unwrap_err();
        assert!(err.to_string().contains("timeout"), "{err}");
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{:?}",
            start.elapsed()
        );
    }

    #[test]
    fn dropping_a_pool_with_a_guest_blocked_forever_is_prompt() {
        for timeout in [None, Some(Duration::from_secs(3600))] {
            let pool = atomic_wait_pool(2, timeout);
            let mut stream = pool.imap::<i64, i64>("wait_forever", [0]).unwrap();
            assert!(matches!(stream.try_next(), wasmpool::TryNext::Pending));
            std::thread::sleep(Duration::from_millis(100));
            let start = Instant::now();
            drop(stream);
            drop(pool);
            assert!(
                start.elapsed() < Duration::from_secs(2),
                "{timeout:?}: {:?}",
                start.elapsed()
            );
        }
    }

    #[test]
    fn dropping_a_pool_interrupts_spinning_and_waiting_guests() {
        let pool = builder(TESTGUEST, 2).queue("q", 1).build().unwrap();
        let start = Instant::now();
        let blocked = std::thread::scope(|s| {
            let p = &pool;
            let h = s.spawn(move || p.map::<(), String>("get_forever", [(), ()]).unwrap());
            std::thread::sleep(Duration::from_millis(100));
            // A map cannot outlive its pool; stop the guests from the host side
            // the way a drop does, by closing what they wait on.
            p.queue("q").unwrap().close();
            h.join().unwrap()
        });
        assert_eq!(blocked.len(), 2);
        drop(pool);
        assert!(start.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn queue_byte_budget_bounds_what_guests_can_park_in_the_host() {
        let module = r#"(module
            (import "wasmpool" "queue_put" (func $put (param i32 i32 i32 i64) (result i32)))
            (memory (export "memory") 17)
            (func (export "wasmpool_abi_v1"))
            ;; puts 1 MiB messages with no wait until the queue refuses; returns how many fit
            (func (export "flood") (param i64) (result i64)
                (local $n i64)
                (block $full
                    (loop $l
                        (br_if $full (i32.ne (call $put (i32.const 0) (i32.const 0) (i32.const 1048576) (i64.const 0)) (i32.const 0)))
                        (local.set $n (i64.add (local.get $n) (i64.const 1)))
                        (br $l)))
                (local.get $n))
            (func (export "too_big") (param i64) (result i64)
                (i64.extend_i32_s (call $put (i32.const 0) (i32.const 0) (i32.const 1048576) (i64.const 0)))))"#;
        let pool = pool_builder()
            .module_bytes(module)
            .workers(1)
            .max_memory(16 << 20)
            .queue_with_max_bytes("q", 1_000_000, 8 << 20)
            .cache(None)
            .build()
            .unwrap();
        // The count capacity (a million) would allow a terabyte; the budget of
        // 8 MiB stops the guest at 7 messages (each counts 64 bytes more).
        assert_eq!(pool.map::<i64, i64>("flood", [0]).unwrap(), [Ok(7)]);
        assert_eq!(pool.queue("q").unwrap().len(), 7);
        let small = pool_builder()
            .module_bytes(module)
            .workers(1)
            .queue_with_max_bytes("q", 10, 1000)
            .cache(None)
            .build()
            .unwrap();
        let err = small
            .map::<i64, i64>("too_big", [0])
            .unwrap()
            .pop()
            .unwrap()
            .unwrap_err();
        assert_eq!(err.kind(), TaskErrorKind::Abi, "{err}");
        assert!(
            err.message().contains(
                "a message of 1048576 bytes is larger than queue \"q\"'s byte budget of 1000 bytes"
            ),
            "{err}"
        );
    }
}

/// An ABI task writing `n` MiB of output (a JSON string) from one page of
/// memory, and a task that sleeps first, to hold up the ordered stream.
const OUTPUT_BOMB: &str = r#"(module
    (import "wasmpool" "input_len" (func $len (result i32)))
    (import "wasmpool" "input_read" (func $read (param i32 i32) (result i32)))
    (import "wasmpool" "output_write" (func $write (param i32 i32)))
    (memory (export "memory") 1)
    (data (i32.const 0) "\"")
    (func (export "wasmpool_abi_v1"))
    ;; input: one digit n; output: a string of n * 32 KiB
    (func (export "wasmpool_task_blob") (result i32)
        (local $n i32)
        (drop (call $read (i32.const 100) (i32.const 1)))
        (local.set $n (i32.mul (i32.sub (i32.load8_u (i32.const 100)) (i32.const 48)) (i32.const 32)))
        (memory.fill (i32.const 1024) (i32.const 120) (i32.const 1024))
        (call $write (i32.const 0) (i32.const 1))
        (block $done (loop $l
            (br_if $done (i32.eqz (local.get $n)))
            (call $write (i32.const 1024) (i32.const 1024))
            (local.set $n (i32.sub (local.get $n) (i32.const 1)))
            (br $l)))
        (call $write (i32.const 0) (i32.const 1))
        (i32.const 0)))"#;

both_modes! {
    #[test]
    fn output_budget_cuts_batches_and_holds_back_new_ones() {
        let pool = pool_builder()
            .module_bytes(OUTPUT_BOMB)
            .workers(2)
            .output_budget(1 << 20)
            .cache(None)
            .build()
            .unwrap();
        // Every output is 9 * 32 KiB = 288 KiB; the budget holds about four.
        let n = 200;
        let mut stream = pool.imap::<u8, String>("blob", vec![9u8; n]).unwrap();
        // Read nothing for a while: finished outputs pile up to the budget, not
        // to the window of 4096 inputs.
        let first = stream.next().unwrap().unwrap();
        assert_eq!(first.len(), 9 * 32 * 1024);
        std::thread::sleep(Duration::from_millis(300));
        let done: u64 = pool.worker_stats().iter().map(|w| w.tasks).sum();
        assert!(
            done < 40,
            "{done} tasks ran ahead of the reader; the budget allows about 4 + one batch per worker"
        );
        let rest: Vec<_> = stream.collect();
        assert_eq!(rest.len(), n - 1);
        assert!(
            rest.iter()
                .all(|r| r.as_ref().is_ok_and(|s| s.len() == 9 * 32 * 1024))
        );
    }

    #[test]
    fn a_queue_message_taken_by_one_task_is_not_visible_to_the_next() {
        let module = r#"(module
            (import "wasmpool" "queue_get" (func $get (param i32 i64) (result i64)))
            (import "wasmpool" "queue_message" (func $message (param i32 i32) (result i32)))
            (memory (export "memory") 1)
            (func (export "wasmpool_abi_v1"))
            (func (export "take") (param i64) (result i64) (call $get (i32.const 0) (i64.const 1000)))
            (func (export "peek") (param i64) (result i64)
                (i64.extend_i32_s (call $message (i32.const 0) (i32.const 100)))))"#;
        let pool = pool_builder()
            .module_bytes(module)
            .workers(1)
            .queue("q", 4)
            .cache(None)
            .build()
            .unwrap();
        pool.queue("q")
            .unwrap()
            .put(b"secret".to_vec(), None)
            .unwrap();
        assert_eq!(pool.map::<i64, i64>("take", [0]).unwrap(), [Ok(6)]);
        let err = pool
            .map::<i64, i64>("peek", [0])
            .unwrap()
            .pop()
            .unwrap()
            .unwrap_err();
        assert_eq!(err.kind(), TaskErrorKind::Abi, "{err}");
        assert!(err.message().contains("no message is held"), "{err}");
    }

    #[test]
    fn a_task_of_another_pool_is_refused() {
        let one = pool_builder()
            .module_bytes(r#"(module (func (export "f") (param i64) (result i64) local.get 0))"#)
            .workers(1)
            .cache(None)
            .build()
            .unwrap();
        // Same export name, ten results: running `one`'s task here would read
        // results that were never written.
        let ten = pool_builder()
            .module_bytes(
                r#"(module (func (export "f") (param i64)
                    (result i64 i64 i64 i64 i64 i64 i64 i64 i64 i64)
                    (local.get 0) (local.get 0) (local.get 0) (local.get 0) (local.get 0)
                    (local.get 0) (local.get 0) (local.get 0) (local.get 0) (local.get 0)))"#,
            )
            .workers(1)
            .cache(None)
            .build()
            .unwrap();
        let task = one.task("f").unwrap();
        let payload = task.encode(&7).unwrap();
        let err = ten.imap_payloads(&task, [Ok(payload.clone())]).unwrap_err();
        assert!(matches!(err, wasmpool::Error::ForeignTask { .. }), "{err}");
        assert!(err.to_string().contains("belongs to another pool"), "{err}");
        // Its own pool runs it.
        let out: Vec<_> = one.imap_payloads(&task, [Ok(payload)]).unwrap().collect();
        assert_eq!(
            out,
            [Ok(wasmpool::Output::Values(
                vec![wasmpool::WasmValue::I64(7)].into()
            ))]
        );
    }

    #[test]
    fn a_deep_stack_limit_runs_on_a_thread_that_fits_it() {
        let pool = hostile(|b| b.max_stack(8 << 20));
        // Deep recursion uses the whole 8 MiB wasm stack and ends in a trap,
        // not in the host's own stack overflow (which would abort the process).
        let err = fails_alone(&pool, "recurse");
        assert_eq!(err.kind(), TaskErrorKind::Trap, "{err}");
        assert!(err.message().contains("call stack exhausted"), "{err}");
    }

    #[test]
    fn out_of_range_limits_are_configuration_errors() {
        let err = hostile_builder().max_stack(64 << 20).build().unwrap_err();
        assert!(err.to_string().contains("max_stack"), "{err}");
        let err = hostile_builder()
            .timeout(Duration::from_secs(u64::MAX))
            .build()
            .unwrap_err();
        assert!(
            err.to_string().contains("longer than the longest allowed"),
            "{err}"
        );
        let err = hostile_builder()
            .timeout(Duration::ZERO)
            .build()
            .unwrap_err();
        assert!(err.to_string().contains("more than 0"), "{err}");
    }

    #[test]
    fn tables_cannot_grow_past_their_limit() {
        let module = r#"(module
            (table 1 funcref)
            (func (export "grow") (param i32) (result i32)
                (table.grow (ref.null func) (local.get 0))))"#;
        // One instance for all four, then a fresh one for each.
        for (isolation, expect) in [
            (Isolation::Worker, [1, -1, 11, -1]),
            (Isolation::Task, [1, -1, 1, 1]),
        ] {
            let pool = pool_builder()
                .module_bytes(module)
                .workers(1)
                .isolation(isolation)
                .max_table_elements(1000)
                .cache(None)
                .build()
                .unwrap();
            // One task at a time, so that the async mode too has one
            // instance.
            let grown = [10, 100_000_000, 989, 1]
                .map(|n| pool.map::<i32, i32>("grow", [n]).unwrap().pop().unwrap());
            assert_eq!(grown, expect.map(Ok));
        }
    }

    #[test]
    fn two_version_markers_or_a_marker_that_is_not_a_function_fail_to_load() {
        let two = r#"(module (func (export "wasmpool_abi_v2")) (func (export "wasmpool_abi_v1")))"#;
        let err = pool_builder()
            .module_bytes(two)
            .cache(None)
            .build()
            .unwrap_err();
        assert!(err.to_string().contains("two version markers"), "{err}");
        let global = r#"(module (global (export "wasmpool_abi_v1") i32 (i32.const 1)))"#;
        let err = pool_builder()
            .module_bytes(global)
            .cache(None)
            .build()
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("is a global; it must be a function"),
            "{err}"
        );
    }

    #[test]
    fn a_panic_in_the_host_while_instantiating_is_a_host_error_not_a_hang() {
        // A start function that traps is the nearest a guest gets to breaking
        // instantiation; it must surface as an error, and a later instance too.
        let module = r#"(module
            (global $n (mut i32) (i32.const 0))
            (func $start unreachable)
            (start $start)
            (func (export "f") (param i64) (result i64) local.get 0))"#;
        let err = pool_builder()
            .module_bytes(module)
            .cache(None)
            .build()
            .unwrap_err();
        assert!(err.to_string().contains("cannot instantiate"), "{err}");
    }
}

fn hostile_builder() -> wasmpool::PoolBuilder {
    pool_builder()
        .module_bytes(HOSTILE)
        .name("hostile.wat")
        .workers(1)
        .cache(None)
}

both_modes! {
    #[test]
    fn a_trap_message_of_one_task_does_not_name_the_next_ones_trap() {
        let module = r#"(module
            (import "wasmpool" "trap_message" (func $say (param i32 i32)))
            (memory (export "memory") 1)
            (data (i32.const 0) "stale")
            (func (export "wasmpool_abi_v1"))
            (func (export "say") (param i64) (result i64)
                (call $say (i32.const 0) (i32.const 5)) (local.get 0))
            (func (export "boom") (param i64) (result i64) unreachable))"#;
        let pool = pool_builder()
            .module_bytes(module)
            .workers(1)
            .cache(None)
            .build()
            .unwrap();
        assert_eq!(pool.map::<i64, i64>("say", [1]).unwrap(), [Ok(1)]);
        let err = pool
            .map::<i64, i64>("boom", [1])
            .unwrap()
            .pop()
            .unwrap()
            .unwrap_err();
        assert_eq!(err.kind(), TaskErrorKind::Trap, "{err}");
        assert!(!err.message().contains("stale"), "{err}");
    }
}

// Synchronous mode only: in the async mode a wasm atomic wait blocks the
// worker's whole runtime thread, which is not abandoned and replaced.
#[test]
fn workers_stuck_in_atomic_waits_are_reclaimed_so_the_pool_never_runs_dry() {
    // More stuck tasks than the pool has spare instance slots (16): each
    // abandoned worker is woken and gives its instance back.
    let pool = atomic_wait_pool(1, Some(Duration::from_millis(50)));
    let stuck = 30;
    // A futex-style loop: a wake-up (such as the one reclaiming an earlier
    // worker) sends it back to waiting, so every task is stuck until its
    // deadline.
    let r = pool
        .map::<i64, i64>("wait_in_a_loop", vec![0; stuck])
        .unwrap();
    assert!(
        r.iter()
            .all(|r| r.as_ref().unwrap_err().kind() == TaskErrorKind::Timeout),
        "{r:?}"
    );
    assert_eq!(
        pool.map::<i64, i64>("ok", 0..10).unwrap(),
        (0..10).map(Ok).collect::<Vec<_>>(),
        "well-behaved tasks still get instances"
    );
}

/// `poll` runs `poll_oneoff` on one subscription: `kind` 0 a clock (id,
/// timeout, flags as given), 1 `fd_read` of `id`; `mix` adds an `fd_read`
/// of stdin. Returns the errno * 1000 + the number of events.
const POLL: &str = r#"(module
    (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
    (memory (export "memory") 1)
    (func (export "poll") (param $kind i32) (param $id i32) (param $ts i64) (param $flags i32) (param $mix i32) (result i32)
        (local $n i32)
        (i32.store8 offset=8 (i32.const 1024) (local.get $kind))
        (i32.store offset=16 (i32.const 1024) (local.get $id))
        (i64.store offset=24 (i32.const 1024) (local.get $ts))
        (i32.store16 offset=40 (i32.const 1024) (local.get $flags))
        (local.set $n (i32.const 1))
        (if (local.get $mix) (then
            (i32.store8 offset=56 (i32.const 1024) (i32.const 1))
            (local.set $n (i32.const 2))))
        (i32.add
            (i32.mul (call $poll (i32.const 1024) (i32.const 8192) (local.get $n) (i32.const 16)) (i32.const 1000))
            (i32.load (i32.const 16)))))"#;

both_modes! {
    #[test]
    fn poll_oneoff_on_fds_and_absolute_clocks_works_and_keeps_the_deadline() {
        let pool = pool_builder()
            .module_bytes(POLL)
            .workers(1)
            .timeout(Duration::from_millis(300))
            .cache(None)
            .build()
            .unwrap();
        type Args = (i32, i32, i64, i32, i32);
        let run = |args: Args| {
            pool.map::<Args, i32>("poll", [args])
                .unwrap()
                .pop()
                .unwrap()
        };
        // stdin (empty for a pool guest) is ready at once: one event, no wait.
        assert_eq!(run((1, 0, 0, 0, 0)), Ok(1));
        // A clock of an hour and stdin: stdin fires, the clock does not.
        assert_eq!(run((0, 1, 3_600_000_000_000, 0, 1)), Ok(1));
        // A relative 10 ms sleep fires.
        assert_eq!(run((0, 1, 10_000_000, 0, 0)), Ok(1));
        // An absolute monotonic deadline far away sleeps until the time limit.
        let start = Instant::now();
        let err = run((0, 1, i64::MAX, 1, 0)).unwrap_err();
        assert_eq!(err.kind(), TaskErrorKind::Timeout, "{err}");
        assert!(start.elapsed() < Duration::from_secs(5));
        // A clock wasmpool does not have (process CPU time) is EINVAL (28).
        assert_eq!(run((0, 2, 1, 0, 0)), Ok(28_000));
    }
}
