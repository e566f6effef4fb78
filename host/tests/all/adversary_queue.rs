//! The batched queue calls against a hostile guest, beyond
//! `queue_batch.rs`: batches at the very end of memory, floods of empty
//! messages, a batch larger than the byte budget as a whole, a batch taken
//! and never copied (it must not reach the next task), and a copy to a
//! range out of bounds. Every test runs in both modes.

use wasmpool::{Output, Payload, Pool, TaskErrorKind};

use crate::util::{both_modes, pool_builder};

/// Each task reads its input to 0 as i32 LE words:
/// - `put`: (ptr, len, count); `queue_put_many(0, ptr, len, count, 0)`
///   with the batch taken from the input's bytes after the three words,
///   copied to `ptr` first; outputs the result as an i32 LE.
/// - `take`: `queue_get_many(0, 1000, 1 << 20, 0)`, never copied; outputs
///   the result as an i64 LE.
/// - `copy`: (ptr, len); `queue_messages(ptr, len)`; outputs the count.
/// - `take_copy`: (ptr, len); `take`, then `copy` in the same task; outputs
///   the count and, when `ptr` is 0, the bytes copied.
///
/// Memory: one page (65536 bytes).
const GUEST: &str = r#"(module
    (import "wasmpool" "input_len" (func $input_len (result i32)))
    (import "wasmpool" "input_read" (func $input_read (param i32 i32) (result i32)))
    (import "wasmpool" "output_write" (func $output_write (param i32 i32)))
    (import "wasmpool" "queue_put_many" (func $put_many (param i32 i32 i32 i32 i64) (result i32)))
    (import "wasmpool" "queue_get_many" (func $get_many (param i32 i32 i32 i64) (result i64)))
    (import "wasmpool" "queue_messages" (func $messages (param i32 i32) (result i32)))
    (memory (export "memory") 1 1)
    (func (export "wasmpool_abi_v1"))
    (func (export "wasmpool_task_put") (result i32)
        (local $ptr i32) (local $len i32)
        (drop (call $input_read (i32.const 0) (call $input_len)))
        (local.set $ptr (i32.load (i32.const 0)))
        (local.set $len (i32.load (i32.const 4)))
        ;; the batch bytes (input from 12 on) moved to ptr, when in bounds
        (if (i32.and (i32.le_u (local.get $ptr) (i32.const 65536))
                (i32.le_u (local.get $len) (i32.sub (i32.const 65536) (local.get $ptr))))
            (then (memory.copy (local.get $ptr) (i32.const 12)
                (i32.sub (call $input_len) (i32.const 12)))))
        (i32.store (i32.const 60000)
            (call $put_many (i32.const 0) (local.get $ptr) (local.get $len)
                (i32.load (i32.const 8)) (i64.const 0)))
        (call $output_write (i32.const 60000) (i32.const 4))
        (i32.const 0))
    (func (export "wasmpool_task_take") (result i32)
        (i64.store (i32.const 60000)
            (call $get_many (i32.const 0) (i32.const 1000) (i32.const 1048576) (i64.const 0)))
        (call $output_write (i32.const 60000) (i32.const 8))
        (i32.const 0))
    (func (export "wasmpool_task_take_copy") (result i32)
        (drop (call $input_read (i32.const 0) (call $input_len)))
        (i64.store (i32.const 60000)
            (call $get_many (i32.const 0) (i32.const 1000) (i32.const 1048576) (i64.const 0)))
        (i32.store (i32.const 60008)
            (call $messages (i32.load (i32.const 0)) (i32.load (i32.const 4))))
        (call $output_write (i32.const 60008) (i32.const 4))
        (call $output_write (i32.const 0) (i32.load (i32.const 60008)))
        (i32.const 0))
    (func (export "wasmpool_task_copy") (result i32)
        (drop (call $input_read (i32.const 0) (call $input_len)))
        (i32.store (i32.const 60000)
            (call $messages (i32.load (i32.const 0)) (i32.load (i32.const 4))))
        (call $output_write (i32.const 60000) (i32.const 4))
        (i32.const 0)))"#;

fn pool(capacity: usize, max_bytes: usize) -> Pool {
    pool_builder()
        .module_bytes(GUEST)
        .name("adversary.wat")
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

fn words(ws: &[i32]) -> Vec<u8> {
    ws.iter().flat_map(|w| w.to_le_bytes()).collect()
}

fn batch(messages: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for m in messages {
        out.extend_from_slice(&(m.len() as u32).to_le_bytes());
        out.extend_from_slice(m);
    }
    out
}

/// `put` of `data` (a batch of `count`) placed at `ptr`.
fn put_at(pool: &Pool, ptr: i32, data: &[u8], count: i32) -> Result<i32, wasmpool::TaskError> {
    let mut input = words(&[ptr, data.len() as i32, count]);
    input.extend_from_slice(data);
    run(pool, "put", input).map(|out| i32::from_le_bytes(out[..4].try_into().unwrap()))
}

both_modes! {
    #[test]
    fn a_batch_ending_at_the_last_byte_of_memory_is_read_and_one_past_it_traps() {
        let pool = pool(100, 1 << 20);
        let data = batch(&[b"tail", b"end"]);
        let last = 65536 - data.len() as i32;
        assert_eq!(put_at(&pool, last, &data, 2).unwrap(), 2);
        let q = pool.queue("q").unwrap();
        assert_eq!(q.get(None).unwrap(), b"tail");
        assert_eq!(q.get(None).unwrap(), b"end");
        // One byte further, or a pointer that wraps: out of bounds, nothing put.
        for ptr in [last + 1, -1, i32::MIN] {
            let err = put_at(&pool, ptr, &data, 2).unwrap_err();
            assert_eq!(err.kind(), TaskErrorKind::Abi, "{ptr}: {err}");
            assert!(err.message().contains("out-of-bounds"), "{err}");
        }
        assert_eq!(q.len(), 0);
    }

    #[test]
    fn a_flood_of_empty_messages_is_bounded_by_capacity_and_by_bytes() {
        // 10,000 empty messages in one call: each costs 64 bytes of the
        // budget, so a budget of 640 takes 10 and a capacity of 7 takes 7.
        let empties = vec![0u8; 4 * 10_000];
        let pool_ = pool(100_000, 640);
        assert_eq!(put_at(&pool_, 4096, &empties, 10_000).unwrap(), 10);
        assert_eq!(pool_.queue("q").unwrap().len(), 10);
        let pool_ = pool(7, 1 << 20);
        assert_eq!(put_at(&pool_, 4096, &empties, 10_000).unwrap(), 7);
        // A count that does not match the bytes is refused whole.
        let err = put_at(&pool_, 4096, &empties, 9_999).unwrap_err();
        assert_eq!(err.kind(), TaskErrorKind::Abi, "{err}");
        assert_eq!(pool_.queue("q").unwrap().len(), 7);
    }

    #[test]
    fn a_batch_larger_than_the_budget_goes_in_parts_none_lost_or_doubled() {
        // Ten 100-byte messages (164 each) against a budget of 500: three at
        // a time; the producer resends the rest, the consumer drains.
        let pool = pool(1000, 500);
        let q = pool.queue("q").unwrap().clone();
        let messages: Vec<Vec<u8>> = (0..10u8).map(|i| vec![i; 100]).collect();
        let mut at = 0;
        let mut got = Vec::new();
        while at < messages.len() {
            let rest: Vec<&[u8]> = messages[at..].iter().map(|m| m.as_slice()).collect();
            let n = put_at(&pool, 4096, &batch(&rest), rest.len() as i32).unwrap();
            assert!(n == -1 || (1..=3).contains(&n), "{n}");
            if n > 0 {
                at += n as usize;
            }
            while let Ok(m) = q.get(Some(std::time::Duration::ZERO)) {
                got.push(m);
            }
        }
        assert_eq!(got, messages);
    }

    #[test]
    fn a_batch_taken_and_never_copied_does_not_reach_the_next_task() {
        let pool = pool(100, 1 << 20);
        let q = pool.queue("q").unwrap();
        q.put(b"secret of task one".to_vec(), None).unwrap();
        let out = run(&pool, "take", Vec::new()).unwrap();
        assert_eq!(i64::from_le_bytes(out[..8].try_into().unwrap()), 22);
        // The next task, in the same instance, finds nothing held.
        let err = run(&pool, "copy", words(&[0, 64])).unwrap_err();
        assert_eq!(err.kind(), TaskErrorKind::Abi, "{err}");
        assert!(err.message().contains("no batch is held"), "{err}");
        // A copy to a range out of bounds traps, in the task that took it.
        q.put(b"x".to_vec(), None).unwrap();
        let err = run(&pool, "take_copy", words(&[65530, 64])).unwrap_err();
        assert_eq!(err.kind(), TaskErrorKind::Abi, "{err}");
        assert!(err.message().contains("queue_messages: out-of-bounds"), "{err}");
        let err = run(&pool, "take_copy", words(&[0, -1])).unwrap_err();
        assert!(err.message().contains("negative length"), "{err}");
        // In bounds: the prefix and the byte, exactly.
        q.put(b"y".to_vec(), None).unwrap();
        let out = run(&pool, "take_copy", words(&[0, 64])).unwrap();
        assert_eq!(out, [&5i32.to_le_bytes()[..], &batch(&[b"y"])].concat());
        assert_eq!(q.len(), 0);
    }
}

/// `t` reads its input as one ASCII digit: `0` waits for ever in
/// `queue_get_many` on queue `e` (nobody puts there); `2` puts one message
/// in queue `f` (capacity 1), then waits for ever in `queue_put_many` to put
/// another; `1` spins a while (so that the others are waiting), then traps.
const BLOCKED: &str = r#"(module
    (import "wasmpool" "input_read" (func $input_read (param i32 i32) (result i32)))
    (import "wasmpool" "queue_open" (func $open (param i32 i32) (result i32)))
    (import "wasmpool" "queue_put_many" (func $put_many (param i32 i32 i32 i32 i64) (result i32)))
    (import "wasmpool" "queue_get_many" (func $get_many (param i32 i32 i32 i64) (result i64)))
    (memory (export "memory") 1)
    (data (i32.const 100) "e")
    (data (i32.const 104) "f")
    (data (i32.const 200) "\01\00\00\00x")
    (func (export "wasmpool_abi_v1"))
    (func (export "wasmpool_task_t") (result i32)
        (local $i i32)
        (drop (call $input_read (i32.const 0) (i32.const 1)))
        (if (i32.eq (i32.load8_u (i32.const 0)) (i32.const 48))
            (then (drop (call $get_many (call $open (i32.const 100) (i32.const 1))
                (i32.const 8) (i32.const 1024) (i64.const -1)))))
        (if (i32.eq (i32.load8_u (i32.const 0)) (i32.const 50))
            (then
                (drop (call $put_many (call $open (i32.const 104) (i32.const 1))
                    (i32.const 200) (i32.const 5) (i32.const 1) (i64.const -1)))
                (drop (call $put_many (call $open (i32.const 104) (i32.const 1))
                    (i32.const 200) (i32.const 5) (i32.const 1) (i64.const -1)))))
        (local.set $i (i32.const 200000000))
        (loop $spin
            (local.set $i (i32.sub (local.get $i) (i32.const 1)))
            (br_if $spin (i32.gt_s (local.get $i) (i32.const 0))))
        unreachable))"#;

both_modes! {
    #[test]
    fn fail_fast_ends_tasks_waiting_for_ever_in_batched_queue_calls() {
        let dir = tempfile::tempdir().unwrap();
        let wat = dir.path().join("blocked.wat");
        std::fs::write(&wat, BLOCKED).unwrap();
        let run = crate::util::wasmpool_watched(
            dir.path(),
            &[
                "map",
                wat.to_str().unwrap(),
                "--task",
                "t",
                "-j",
                "3",
                "--queue",
                "e",
                "--queue",
                "f:1",
                "--fail-fast",
            ],
            "0\n2\n1\n",
            std::time::Duration::from_secs(30),
            true,
        );
        assert_eq!(run.status.code(), Some(1), "{}", run.stderr);
        let out = String::from_utf8(run.stdout).unwrap();
        let got: Vec<&str> = out.lines().collect();
        assert_eq!(got.len(), 3, "{got:?}");
        for (i, line) in got[..2].iter().enumerate() {
            assert!(
                line.starts_with(&format!(r#"{{"index":{i},"error":{{"kind":"terminated""#)),
                "{got:?}"
            );
        }
        assert!(got[2].starts_with(r#"{"index":2,"error":{"kind":"trap""#), "{got:?}");
        assert!(run.elapsed < std::time::Duration::from_secs(10), "{:?}", run.elapsed);
    }
}

both_modes! {
    #[test]
    fn a_message_refused_for_its_bookkeeping_says_what_it_counts() {
        // A budget of 10 bytes: an empty message counts 64 and never fits.
        // It was refused as "a message of 0 bytes is larger than ... 10 bytes"; now it says
        // what it counts.
        let pool = pool(4, 10);
        let err = put_at(&pool, 4096, &batch(&[b""]), 1).unwrap_err();
        assert_eq!(err.kind(), TaskErrorKind::Abi, "{err}");
        assert!(
            err.message().contains(
                "message 0 of 0 bytes counts 64 bytes (with the host's 64 bytes of bookkeeping), \
                 larger than queue \"q\"'s byte budget of 10 bytes"
            ),
            "{err}"
        );
        // A message longer than the budget is still just larger.
        let err = put_at(&pool, 4096, &batch(&[b"eleven bytes"]), 1).unwrap_err();
        assert!(
            err.message().contains("message 0 of 12 bytes is larger than queue"),
            "{err}"
        );
        let q = wasmpool::Queue::with_max_bytes("h", 4, 10);
        let err = q.put(Vec::new(), None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "message of 0 bytes counts 64 bytes (with the host's 64 bytes of bookkeeping), larger \
             than the queue's byte budget of 10 bytes"
        );
    }
}
