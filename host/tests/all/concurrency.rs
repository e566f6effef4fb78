//! The async mode (`PoolBuilder::concurrency`): many waiting tasks per
//! worker, each in its own instance.

use std::time::{Duration, Instant};

use wasmpool_tests::TESTGUEST;

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
