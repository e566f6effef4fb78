//! The async mode (`PoolBuilder::concurrency`): many waiting tasks per
//! worker, each in its own instance.

use std::time::{Duration, Instant};

use wasmpool_tests::{ASYNCIO, HELLO, SPIN, TESTGUEST};

// The real binary with a private cache (these tests run in the default
// mode, so `cli` passes the arguments as they are).
use crate::cli::wasmpool as cli;
use crate::hostile::ATOMIC_WAIT;
use crate::util::builder;

#[test]
fn a_thousand_sleeping_tasks_share_two_threads() {
    let pool = builder(TESTGUEST, 2).concurrency(500).build().unwrap();
    let start = Instant::now();
    let out = pool.map::<u64, u64>("sleep_ms", vec![200; 1000]).unwrap();
    let took = start.elapsed();
    assert_eq!(out.len(), 1000);
    assert!(
        out.iter().all(|r| r.as_ref().is_ok_and(|&ms| ms == 200)),
        "{:?}",
        &out[..3]
    );
    // Sequentially on 2 threads this would take 100 s.
    assert!(took < Duration::from_secs(20), "took {took:?}");
    let made: u64 = pool.worker_stats().iter().map(|w| w.instances).sum();
    assert!(made > 2 && made <= 1002, "{made} instances");
}

#[test]
fn results_keep_input_order_when_tasks_finish_out_of_order() {
    let pool = builder(TESTGUEST, 2).concurrency(64).build().unwrap();
    let inputs: Vec<u64> = (0..200).map(|i| (200 - i) % 7 * 5).collect();
    let out = pool.map::<u64, u64>("sleep_ms", inputs.clone()).unwrap();
    let got: Vec<u64> = out.into_iter().map(Result::unwrap).collect();
    assert_eq!(got, inputs);
}

#[test]
fn a_busy_guest_yields_so_sleeping_tasks_on_its_thread_still_finish() {
    // One worker thread: four guests burning CPU for seconds and a stream of
    // sleepers share it; the sleepers finish long before the burners.
    let pool = builder(ASYNCIO, 1).concurrency(64).build().unwrap();
    std::thread::scope(|s| {
        let burners = s.spawn(|| {
            let start = Instant::now();
            let out = pool.map::<u64, u64>("burn", vec![400_000_000; 4]).unwrap();
            assert!(out.iter().all(Result::is_ok));
            start.elapsed()
        });
        std::thread::sleep(Duration::from_millis(100));
        let start = Instant::now();
        let out = pool.map::<u64, u64>("sleep_ms", vec![20; 40]).unwrap();
        let sleepers = start.elapsed();
        assert!(out.iter().all(Result::is_ok));
        let burners = burners.join().unwrap();
        assert!(
            sleepers * 3 < burners,
            "sleepers took {sleepers:?}, burners {burners:?}: a busy guest starved them"
        );
    });
}

#[test]
fn more_instances_than_the_machine_holds_is_a_clear_error_not_a_crash() {
    // 2 x 200,000 slots: past both the mappings a process may have and the
    // address space, whatever the machine's settings.
    let err = builder(ASYNCIO, 2)
        .concurrency(200_000)
        .build()
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("vm.max_map_count") || text.contains("address space"),
        "{text}"
    );
    assert!(text.contains("--concurrency"), "{text}");
}

#[test]
fn limits_hold_in_the_async_mode() {
    let pool = builder(TESTGUEST, 2)
        .concurrency(8)
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let start = Instant::now();
    let out = pool.map::<u64, u64>("sleep_ms", [10, 5_000, 10]).unwrap();
    assert!(out[0].is_ok() && out[2].is_ok(), "{out:?}");
    let err = out[1].as_ref().unwrap_err();
    assert_eq!(err.kind(), wasmpool::TaskErrorKind::Timeout, "{err}");
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn map_with_concurrency_runs_waiting_tasks_side_by_side_in_order() {
    let input: String = (0..300).map(|i| format!("{}\n", 100 + i % 3)).collect();
    let start = Instant::now();
    let out = cli(
        &[
            "map",
            ASYNCIO,
            "--task",
            "sleep_ms",
            "-j",
            "2",
            "--concurrency",
            "150",
            "--values",
        ],
        &input,
    );
    let took = start.elapsed();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let want: String = (0..300).map(|i| format!("{}\n", 100 + i % 3)).collect();
    assert_eq!(String::from_utf8(out.stdout).unwrap(), want);
    // One after another: 30 s; 150 at a time on each of 2 workers: ~0.1 s.
    assert!(took < Duration::from_secs(10), "took {took:?}");
}

#[test]
fn run_with_concurrency_runs_copies_on_a_few_threads_with_limits() {
    let out = cli(&["run", HELLO, "-n", "40", "--concurrency", "10"], "");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let mut greeted: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("hello from process"))
        .collect();
    greeted.sort_unstable();
    greeted.dedup();
    assert_eq!(greeted.len(), 40, "{text}");
    // A copy that never ends is stopped at its deadline (exit 124).
    let start = Instant::now();
    let out = cli(
        &["run", SPIN, "--concurrency", "4", "--timeout", "300ms"],
        "",
    );
    assert_eq!(
        out.status.code(),
        Some(124),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(start.elapsed() < Duration::from_secs(5));
}

#[test]
fn the_seeds_asyncio_example_runs_as_documented() {
    // examples/README.md, example 5: 1,000 tasks that each wait one second.
    let input: String = (0..1000).map(|i| format!("{i}\n")).collect();
    let start = Instant::now();
    let out = cli(
        &[
            "map",
            ASYNCIO,
            "--task",
            "fetch",
            "-j",
            "2",
            "--concurrency",
            "500",
            "--values",
        ],
        &input,
    );
    let took = start.elapsed();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1000);
    assert_eq!(lines[0], r#""task 0 done""#);
    assert_eq!(lines[999], r#""task 999 done""#);
    // About one second; one at a time per worker it would be 500 s.
    assert!(took < Duration::from_secs(15), "took {took:?}");
}

#[test]
fn a_wasm_atomic_wait_that_blocks_the_thread_still_ends_at_its_deadline() {
    let pool = wasmpool::Pool::builder()
        .module_bytes(ATOMIC_WAIT)
        .name("atomic_wait.wat")
        .workers(1)
        .concurrency(4)
        .shared_memory(1 << 16)
        .timeout(Duration::from_millis(200))
        .cache(None)
        .build()
        .unwrap();
    for task in ["wait_forever", "wait_in_a_loop"] {
        let start = Instant::now();
        let out = pool.map::<i64, i64>(task, [1, 2]).unwrap();
        let took = start.elapsed();
        for r in &out {
            let err = r.as_ref().unwrap_err();
            assert_eq!(
                err.kind(),
                wasmpool::TaskErrorKind::Timeout,
                "{task}: {err}"
            );
        }
        assert!(took < Duration::from_secs(5), "{task}: took {took:?}");
        // The thread is free again: the worker serves.
        assert_eq!(
            pool.map::<i64, i64>("ok", 0..50).unwrap(),
            (0..50).map(Ok).collect::<Vec<_>>()
        );
    }
}

#[test]
fn batches_cut_short_by_the_output_budget_still_reach_a_parked_async_worker() {
    // Every batch passes the 1 MiB budget after a few outputs and is cut
    // short; its rest is sent again while the worker may be parked waiting
    // for work. The map must finish (it hung before the resend woke it).
    let pool = builder(TESTGUEST, 1)
        .concurrency(4)
        .output_budget(1 << 20)
        .build()
        .unwrap();
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::scope(|s| {
        s.spawn(|| {
            let out = pool
                .map::<usize, String>("big", vec![300_000; 400])
                .unwrap();
            let _ = done.send(
                out.iter()
                    .all(|r| r.as_ref().is_ok_and(|s| s.len() == 300_000)),
            );
        });
        match finished.recv_timeout(Duration::from_secs(60)) {
            Ok(all_ok) => assert!(all_ok),
            Err(_) => panic!("the map hung with batches cut short by the budget"),
        }
    });
}

#[test]
fn run_with_concurrency_ends_a_copy_blocked_in_a_wasm_atomic_wait_at_its_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let wat = dir.path().join("wait.wat");
    std::fs::write(
        &wat,
        r#"(module
            (import "wasmpool" "shared" (memory 1 1 shared))
            (func (export "wasmpool_abi_v1"))
            (func (export "_start")
                (drop (memory.atomic.wait32 (i32.const 0) (i32.const 0) (i64.const -1)))))"#,
    )
    .unwrap();
    let wat = wat.to_str().unwrap();
    let start = Instant::now();
    let out = cli(
        &[
            "run",
            wat,
            "--shared-memory",
            "64KiB",
            "--timeout",
            "300ms",
            "--concurrency",
            "4",
        ],
        "",
    );
    assert_eq!(
        out.status.code(),
        Some(124),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
}
