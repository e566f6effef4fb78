//! The batched queue calls (`queue_put_many`, `queue_get_many`,
//! `queue_messages`; docs/abi.md, "Batches"): through the Rust SDK
//! (`Queue::put_many`, `get_many`, `batches`) and raw, from WAT, for the
//! exact partial-put counts and the traps of a hostile guest. Every test
//! runs in both modes.

use std::time::{Duration, Instant};

use wasmpool::{Output, Payload, Pool, TaskErrorKind};
use wasmpool_tests::TESTGUEST;

use crate::util::{both_modes, builder, pool_builder};

/// Raw callers of the batch imports. Each task reads its input to 1024:
/// - `put`: (q, ptr, len, count, timeout_ms) as five i32 LE, then data
///   from 1044 on; outputs `queue_put_many(q, ptr, len, count,
///   timeout_ms)` as an i32 LE.
/// - `get`: (q, max_count, max_bytes, timeout_ms, copy) as five i32 LE;
///   outputs `queue_get_many(...)` as an i64 LE, then, when it is `>= 0`,
///   the bytes `queue_messages(8192, copy)` copied.
/// - `messages`: `queue_messages(0, 16)` with nothing held.
const RAW: &str = r#"(module
    (import "wasmpool" "input_len" (func $input_len (result i32)))
    (import "wasmpool" "input_read" (func $input_read (param i32 i32) (result i32)))
    (import "wasmpool" "output_write" (func $output_write (param i32 i32)))
    (import "wasmpool" "queue_put_many" (func $put_many (param i32 i32 i32 i32 i64) (result i32)))
    (import "wasmpool" "queue_get_many" (func $get_many (param i32 i32 i32 i64) (result i64)))
    (import "wasmpool" "queue_messages" (func $messages (param i32 i32) (result i32)))
    (memory (export "memory") 2)
    (func (export "wasmpool_abi_v1"))
    (func (export "wasmpool_task_put") (result i32)
        (drop (call $input_read (i32.const 1024) (call $input_len)))
        (i32.store (i32.const 0)
            (call $put_many (i32.load (i32.const 1024)) (i32.load (i32.const 1028))
                (i32.load (i32.const 1032)) (i32.load (i32.const 1036))
                (i64.extend_i32_s (i32.load (i32.const 1040)))))
        (call $output_write (i32.const 0) (i32.const 4))
        (i32.const 0))
    (func (export "wasmpool_task_get") (result i32)
        (local $r i64) (local $n i32)
        (drop (call $input_read (i32.const 1024) (call $input_len)))
        (local.set $r
            (call $get_many (i32.load (i32.const 1024)) (i32.load (i32.const 1028))
                (i32.load (i32.const 1032)) (i64.extend_i32_s (i32.load (i32.const 1036)))))
        (i64.store (i32.const 0) (local.get $r))
        (call $output_write (i32.const 0) (i32.const 8))
        (if (i64.ge_s (local.get $r) (i64.const 0))
            (then
                (local.set $n (call $messages (i32.const 8192) (i32.load (i32.const 1040))))
                (call $output_write (i32.const 8192) (local.get $n))))
        (i32.const 0))
    (func (export "wasmpool_task_messages") (result i32)
        (drop (call $messages (i32.const 0) (i32.const 16)))
        (i32.const 0)))"#;

/// Where `put`'s data starts in the guest's memory.
const DATA: i32 = 1044;

/// A batch in the ABI's layout.
fn batch(messages: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for m in messages {
        out.extend_from_slice(&(m.len() as u32).to_le_bytes());
        out.extend_from_slice(m);
    }
    out
}

fn words(ws: &[i32]) -> Vec<u8> {
    ws.iter().flat_map(|w| w.to_le_bytes()).collect()
}

/// A pool of [`RAW`] with queue `q` of `capacity` messages and `max_bytes`.
fn raw_pool(capacity: usize, max_bytes: usize) -> Pool {
    pool_builder()
        .module_bytes(RAW)
        .name("raw.wat")
        .workers(1)
        .queue_with_max_bytes("q", capacity, max_bytes)
        .cache(None)
        .build()
        .unwrap()
}

fn run(pool: &Pool, task: &str, input: Vec<u8>) -> Result<Vec<u8>, wasmpool::TaskError> {
    let task = pool.task(task).unwrap();
    let mut out: Vec<_> = pool
        .imap_payloads(&task, [Ok(Payload::Bytes(input))])
        .unwrap()
        .collect();
    out.pop().unwrap().map(|o| match o {
        Output::Bytes(b) => b,
        other => panic!("{other:?}"),
    })
}

/// `queue_put_many` of `data` (a batch of `count`) with `timeout_ms`, on queue 0.
fn put_many(pool: &Pool, data: &[u8], count: i32, timeout_ms: i32) -> i32 {
    let mut input = words(&[0, DATA, data.len() as i32, count, timeout_ms]);
    input.extend_from_slice(data);
    let out = run(pool, "put", input).unwrap();
    i32::from_le_bytes(out[..4].try_into().unwrap())
}

/// `queue_get_many` on queue 0: its result and the bytes copied (all of them).
fn get_many(pool: &Pool, max_count: i32, max_bytes: i32, timeout_ms: i32) -> (i64, Vec<u8>) {
    let out = run(
        pool,
        "get",
        words(&[0, max_count, max_bytes, timeout_ms, 1 << 15]),
    )
    .unwrap();
    (
        i64::from_le_bytes(out[..8].try_into().unwrap()),
        out[8..].to_vec(),
    )
}

both_modes! {
    #[test]
    fn put_many_get_many_round_trip_in_order_across_limits() {
        // Each u64 message is its JSON (1 to 5 bytes) and counts 64 more:
        // a budget of 500 bytes holds 6 or 7 of them, a capacity of 5
        // holds 5; batches of 64 must be cut at both limits, and the
        // consumer checks order and that each comes exactly once.
        let n = 20_000u64;
        for (capacity, max_bytes) in [(5, 1 << 20), (1024, 500), (3, 200)] {
            let pool = builder(TESTGUEST, 2)
                .queue_with_max_bytes("q", capacity, max_bytes)
                .build()
                .unwrap();
            let r = pool
                .map::<(u32, u64, u64), (u64, u64)>("pc_batch", [(0, n, 64), (1, n, 64)])
                .unwrap();
            assert_eq!(r[0], Ok((n, 0)), "capacity {capacity}, {max_bytes} bytes");
            assert_eq!(
                r[1],
                Ok((n, n * (n - 1) / 2)),
                "capacity {capacity}, {max_bytes} bytes: every message once, in order"
            );
        }
    }

    #[test]
    fn sdk_batches_time_out_and_see_close() {
        let pool = builder(TESTGUEST, 1).queue("q", 16).build().unwrap();
        let start = Instant::now();
        let r = pool.map::<(u64, u64), Vec<u64>>("get_many_within", [(8, 60)]).unwrap();
        let err = r[0].as_ref().unwrap_err();
        assert!(err.message().contains("timed out"), "{err}");
        assert!(start.elapsed() >= Duration::from_millis(60));
        // Three waiting, a max of 8: all three come at once, in order.
        let r = pool
            .map::<Vec<u64>, String>("put_many_values", [vec![7, 8, 9]])
            .unwrap();
        assert_eq!(r, [Ok("ok".to_string())]);
        let q = pool.queue("q").unwrap();
        assert_eq!(q.len(), 3);
        let r = pool.map::<(u64, u64), Vec<u64>>("get_many_within", [(2, 0)]).unwrap();
        assert_eq!(r, [Ok(vec![7, 8])], "at most max_count");
        // Closed with one left: it comes, then `closed` for both sides.
        q.close();
        let r = pool.map::<(u64, u64), Vec<u64>>("get_many_within", [(8, 1000)]).unwrap();
        assert_eq!(r, [Ok(vec![9])]);
        let r = pool.map::<(u64, u64), Vec<u64>>("get_many_within", [(8, 1000)]).unwrap();
        assert!(r[0].as_ref().unwrap_err().message().contains("queue closed"), "{r:?}");
        let r = pool
            .map::<Vec<u64>, String>("put_many_values", [vec![1, 2]])
            .unwrap();
        assert_eq!(r, [Ok("queue closed".to_string())]);
        let r = pool.map::<Vec<u64>, String>("put_many_values", [vec![]]).unwrap();
        assert_eq!(r, [Ok("ok".to_string())], "nothing to put is no host call");
    }

    #[test]
    fn put_many_reports_partial_puts_exactly() {
        // 8-byte messages count 72 bytes: a budget of 200 holds two.
        let pool = raw_pool(100, 200);
        let q = pool.queue("q").unwrap().clone();
        let three = batch(&[b"message0", b"message1", b"message2"]);
        assert_eq!(put_many(&pool, &three, 3, 0), 2, "two fit the byte budget");
        assert_eq!(q.len(), 2);
        // The rest of the batch: the queue is full, so it times out, none put.
        let rest = batch(&[b"message2"]);
        let start = Instant::now();
        assert_eq!(put_many(&pool, &rest, 1, 50), -1);
        assert!(start.elapsed() >= Duration::from_millis(50));
        assert_eq!(q.len(), 2);
        assert_eq!(q.get(None).unwrap(), b"message0");
        assert_eq!(put_many(&pool, &rest, 1, 0), 1);
        assert_eq!(q.get(None).unwrap(), b"message1");
        assert_eq!(q.get(None).unwrap(), b"message2");
        // The capacity cuts too.
        let pool = raw_pool(2, 1 << 20);
        let q = pool.queue("q").unwrap().clone();
        assert_eq!(put_many(&pool, &batch(&[b"a", b"", b"c"]), 3, -1), 2);
        assert_eq!(put_many(&pool, &[], 0, -1), 0, "count 0 puts nothing, waits for nothing");
        q.close();
        assert_eq!(put_many(&pool, &batch(&[b"c"]), 1, -1), -2, "closed: none put");
        assert_eq!(put_many(&pool, &[], 0, -1), -2, "closed");
        assert_eq!(q.get(None).unwrap(), b"a");
        assert_eq!(q.get(None).unwrap(), b"");
        assert!(q.get(None).unwrap_err().is_closed());
    }

    #[test]
    fn get_many_takes_up_to_its_limits_in_the_layout() {
        let pool = raw_pool(100, 1 << 20);
        let q = pool.queue("q").unwrap().clone();
        assert_eq!(get_many(&pool, 4, 1000, 0).0, -1, "empty: timed out");
        let start = Instant::now();
        assert_eq!(get_many(&pool, 4, 1000, 50).0, -1);
        assert!(start.elapsed() >= Duration::from_millis(50));
        for m in ["one", "two", "three", "four", "five", "six"] {
            q.put(m.as_bytes().to_vec(), None).unwrap();
        }
        let (len, got) = get_many(&pool, 2, 1000, 0);
        assert_eq!(got, batch(&[b"one", b"two"]), "max_count");
        assert_eq!(len, got.len() as i64);
        // max_bytes 0: the first message only, whatever its size.
        assert_eq!(get_many(&pool, 10, 0, 0).1, batch(&[b"three"]));
        // 4 + 4 + 4 + 4 = 16 bytes hold "four" and "five", not "six".
        assert_eq!(get_many(&pool, 10, 16, 0).1, batch(&[b"four", b"five"]));
        q.close();
        assert_eq!(get_many(&pool, 10, 1000, -1).1, batch(&[b"six"]));
        assert_eq!(get_many(&pool, 10, 1000, -1).0, -2, "closed and drained");
    }

    #[test]
    fn batch_waits_end_on_the_task_time_limit() {
        let pool = pool_builder()
            .module_bytes(RAW)
            .name("raw.wat")
            .workers(1)
            .queue("q", 1)
            .timeout(Duration::from_millis(200))
            .cache(None)
            .build()
            .unwrap();
        pool.queue("q").unwrap().put(b"full".to_vec(), None).unwrap();
        let mut input = words(&[0, DATA, 5, 1, -1]);
        input.extend_from_slice(&batch(&[b"x"]));
        let err = run(&pool, "put", input).unwrap_err();
        assert_eq!(err.kind(), TaskErrorKind::Timeout, "{err}");
        pool.queue("q").unwrap().get(None).unwrap();
        let err = run(&pool, "get", words(&[0, 8, 1000, -1, 64])).unwrap_err();
        assert_eq!(err.kind(), TaskErrorKind::Timeout, "{err}");
    }

    #[test]
    fn hostile_batch_arguments_trap_with_abi() {
        let pool = raw_pool(100, 200);
        let put = |header: [i32; 5], data: &[u8]| {
            let mut input = words(&header);
            input.extend_from_slice(data);
            run(&pool, "put", input)
        };
        let good = batch(&[b"ab", b"cd"]);
        let n = good.len() as i32;
        type Case<'a> = (&'a str, Result<Vec<u8>, wasmpool::TaskError>, &'a str);
        let cases: Vec<Case> = vec![
            ("negative count", put([0, DATA, n, -1, 0], &good), "negative count -1"),
            ("count too small", put([0, DATA, n, 1, 0], &good), "left after its 1 messages"),
            ("count too large", put([0, DATA, n, 3, 0], &good), "length prefix of message 2 of 3"),
            (
                "huge count",
                put([0, DATA, n, i32::MAX, 0], &good),
                "length prefix of message 2 of 2147483647",
            ),
            ("truncated prefix", put([0, DATA, 2, 1, 0], &good), "inside the length prefix"),
            (
                "length past the end",
                put([0, DATA, 8, 1, 0], &batch(&[b"too long"])),
                "says 8 bytes, but only 4",
            ),
            (
                "prefix of u32::MAX",
                put([0, DATA, 8, 1, 0], &[0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4]),
                "says 4294967295 bytes",
            ),
            (
                "larger than the budget",
                put([0, DATA, 204, 1, 0], &batch(&[&[7; 200]])),
                "larger than queue \"q\"'s byte budget",
            ),
            ("out of bounds", put([0, 131_000, 100, 1, 0], &[]), "out-of-bounds range"),
            ("negative length", put([0, DATA, -4, 1, 0], &[]), "negative length"),
            ("bad handle", put([3, DATA, n, 2, 0], &good), "bad queue handle 3"),
            (
                "get max_count 0",
                run(&pool, "get", words(&[0, 0, 100, 0, 0])),
                "max_count must be at least 1, not 0",
            ),
            (
                "get negative max_bytes",
                run(&pool, "get", words(&[0, 4, -1, 0, 0])),
                "negative max_bytes -1",
            ),
            ("get bad handle", run(&pool, "get", words(&[-1, 4, 100, 0, 0])), "bad queue handle -1"),
            ("messages with nothing held", run(&pool, "messages", vec![]), "no batch is held"),
        ];
        for (what, result, expect) in cases {
            let err = result.unwrap_err();
            assert_eq!(err.kind(), TaskErrorKind::Abi, "{what}: {err}");
            let function = if what.starts_with("get") {
                "queue_get_many: "
            } else if what.starts_with("messages") {
                "queue_messages: "
            } else {
                "queue_put_many: "
            };
            assert!(err.message().starts_with(function), "{what}: {err}");
            assert!(err.message().contains(expect), "{what}: {err}");
        }
        // Nothing was put by any of them, and the pool still serves.
        assert_eq!(pool.queue("q").unwrap().len(), 0);
        assert_eq!(put_many(&pool, &good, 2, 0), 2);
        let (_, got) = get_many(&pool, 8, 1000, 0);
        assert_eq!(got, good);
    }
}
