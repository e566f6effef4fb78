//! Queues and the shared region across instances of one pool.

use std::time::{Duration, Instant};

use wasmpool_tests::TESTGUEST;

use crate::util::builder;

#[test]
fn shared_counter_is_exact() {
    let pool = builder(TESTGUEST, 2)
        .shared_memory(1 << 16)
        .build()
        .unwrap();
    // `count_together`: both tasks count at once, one per worker (a fast
    // task could otherwise end before the second worker woke, and the
    // first worker would take both: this test once failed so in CI).
    let r = pool
        .map::<u64, u64>("count_together", [1_000_000, 1_000_000])
        .unwrap();
    assert_eq!(r, [Ok(1_000_000), Ok(1_000_000)]);
    assert_eq!(
        pool.shared_region().unwrap().load_i64(0).unwrap(),
        2_000_000
    );
    assert_eq!(
        pool.worker_stats().iter().filter(|w| w.tasks == 1).count(),
        2,
        "both workers counted"
    );
}

#[test]
fn lock_makes_read_modify_write_exact() {
    let pool = builder(TESTGUEST, 2)
        .shared_memory(1 << 16)
        .build()
        .unwrap();
    let r = pool
        .map::<u64, u64>("locked_count", [20_000, 20_000])
        .unwrap();
    assert!(r.iter().all(Result::is_ok), "{r:?}");
    assert_eq!(pool.shared_region().unwrap().load_i64(136).unwrap(), 40_000);
}

#[test]
fn producer_consumer_loses_nothing() {
    let n = 100_000u64;
    let pool = builder(TESTGUEST, 2).queue("q", 64).build().unwrap();
    let r = pool
        .map::<(u32, u64), (u64, u64)>("pc", [(0, n), (1, n)])
        .unwrap();
    assert_eq!(r[0], Ok((n, 0)));
    assert_eq!(
        r[1],
        Ok((n, n * (n - 1) / 2)),
        "every message exactly once: count and sum match"
    );
}

#[test]
fn host_feeds_a_guest_consumer() {
    let pool = builder(TESTGUEST, 1).queue("q", 16).build().unwrap();
    let q = pool.queue("q").unwrap().clone();
    let feeder = std::thread::spawn(move || {
        for i in 0..1000u64 {
            q.put_json(&i, None).unwrap();
        }
        q.close();
    });
    let r = pool.map::<(u32, u64), (u64, u64)>("pc", [(1, 0)]).unwrap();
    feeder.join().unwrap();
    assert_eq!(r, [Ok((1000, 999 * 1000 / 2))]);
}

#[test]
fn barrier_releases_all_four() {
    let pool = builder(TESTGUEST, 4)
        .shared_memory(1 << 16)
        .build()
        .unwrap();
    for _round in 0..3 {
        let r: Vec<bool> = pool
            .map("barrier", [4u32; 4])
            .unwrap()
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(
            r.iter().filter(|&&last| last).count(),
            1,
            "exactly one instance arrives last: {r:?}"
        );
    }
}

#[test]
fn get_timeout_on_empty_queue_times_out() {
    let pool = builder(TESTGUEST, 1).queue("q", 4).build().unwrap();
    let start = Instant::now();
    let r = pool.map::<u64, String>("get_with_timeout", [50]).unwrap();
    assert_eq!(r, [Ok("timeout".to_string())]);
    assert!(start.elapsed() >= Duration::from_millis(50));
    // The host side too.
    let err = pool
        .queue("q")
        .unwrap()
        .get(Some(Duration::from_millis(10)))
        .unwrap_err();
    assert!(err.is_timeout());
}

#[test]
fn guest_without_a_region_gets_a_clear_abi_error() {
    let pool = builder(TESTGUEST, 1).build().unwrap();
    let r = pool.map::<u64, u64>("count", [1]).unwrap();
    let err = r[0].as_ref().unwrap_err();
    assert_eq!(err.kind(), wasmpool::TaskErrorKind::Abi);
    assert!(err.message().contains("no shared region"), "{err}");
}

#[test]
fn unknown_queue_is_reported_by_the_guest() {
    let pool = builder(TESTGUEST, 1).build().unwrap();
    let r = pool.map::<(u32, u64), (u64, u64)>("pc", [(0, 1)]).unwrap();
    assert_eq!(r[0].as_ref().unwrap_err().message(), "no queue q");
}

#[test]
fn wat_guest_uses_the_shared_memory_directly() {
    let wat = r#"(module
        (import "wasmpool" "shared" (memory 1 65536 shared))
        (func (export "wasmpool_abi_v1"))
        (func (export "bump") (param i32) (result i64)
            (local $i i32)
            (loop $l
                (drop (i64.atomic.rmw.add (i32.const 8) (i64.const 1)))
                (local.set $i (i32.add (local.get $i) (i32.const 1)))
                (br_if $l (i32.lt_u (local.get $i) (local.get 0))))
            (i64.atomic.load (i32.const 8))))"#;
    let pool = wasmpool::Pool::builder()
        .module_bytes(wat)
        .workers(2)
        .shared_memory(1 << 16)
        .cache(None)
        .build()
        .unwrap();
    let r = pool.map::<u32, i64>("bump", [500_000, 500_000]).unwrap();
    assert!(r.iter().all(Result::is_ok), "{r:?}");
    assert_eq!(
        pool.shared_region().unwrap().load_i64(8).unwrap(),
        1_000_000
    );
}

#[test]
fn event_wakes_a_waiter() {
    let pool = builder(TESTGUEST, 2)
        .shared_memory(1 << 16)
        .build()
        .unwrap();
    let r = pool.map::<u32, bool>("event", [0, 1]).unwrap();
    assert_eq!(r, [Ok(true), Ok(true)]);
}

#[test]
fn semaphore_bounds_concurrency_with_permits_the_host_set_before_the_run() {
    let pool = builder(TESTGUEST, 4)
        .shared_memory(1 << 16)
        .build()
        .unwrap();
    let region = pool.shared_region().unwrap();
    region.store_i32(208, 2).unwrap(); // two permits, written by the host before any task
    let r = pool.map::<u64, i64>("hold_permit", [5u64; 16]).unwrap();
    assert!(r.iter().all(|x| matches!(x, Ok(1..=2))), "{r:?}");
    let most = region.load_i64(224).unwrap();
    assert!(
        (1..=2).contains(&most),
        "at most two holders at once, saw {most}"
    );
    assert_eq!(region.load_i32(208).unwrap(), 2, "every permit came back");
}

#[test]
fn host_reads_the_region_during_a_run() {
    let pool = builder(TESTGUEST, 1)
        .shared_memory(1 << 16)
        .build()
        .unwrap();
    std::thread::scope(|s| {
        let run = s.spawn(|| pool.map::<u64, u64>("count", [3_000_000]).unwrap());
        let region = pool.shared_region().unwrap();
        let mut seen = 0;
        while !run.is_finished() {
            let v = region.load_i64(0).unwrap();
            assert!(v >= seen, "the counter only grows");
            seen = v;
        }
        assert_eq!(run.join().unwrap(), [Ok(3_000_000)]);
    });
    assert_eq!(
        pool.shared_region().unwrap().load_i64(0).unwrap(),
        3_000_000
    );
}
