//! Hostile guests: each ends with a clear error at its own index, and the
//! pool keeps serving the other tasks.

use std::time::{Duration, Instant};

use wasmpool::{Isolation, Pool, TaskErrorKind};
use wasmpool_tests::TESTGUEST;

use crate::util::builder;

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
        Pool::builder()
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
fn recycle_after_replaces_the_instance() {
    let pool = builder(TESTGUEST, 1).recycle_after(2).build().unwrap();
    let calls: Vec<u64> = pool
        .map("calls", vec![(); 5])
        .unwrap()
        .into_iter()
        .map(Result::unwrap)
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
    let pool = Pool::builder()
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
    let pool = Pool::builder()
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
