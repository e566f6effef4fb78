//! The async mode from the library: the seed's asyncio example (1,000 tasks
//! that each wait a second) and an async host function that 1,000 tasks
//! call at once.
//!
//! ```text
//! cargo run --release --example asyncio
//! ```
//!
//! Both guests are plain synchronous Rust (examples/guests/asyncio): in the
//! async mode a task that waits suspends its instance, and its worker's
//! thread runs the others.

use std::time::{Duration, Instant};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // 1. asyncio.gather(*(fetch(i) for i in range(1000))): each task sleeps
    //    one second, then reports.
    let pool = wasmpool::Pool::builder()
        .module_file(wasmpool_tests::ASYNCIO)
        .workers(2)
        .concurrency(500)
        .build()?;
    let start = Instant::now();
    let reports = pool.map::<u32, String>("fetch", 0..1000)?;
    let took = start.elapsed();
    let done = reports.iter().filter(|r| r.is_ok()).count();
    println!(
        "{done} of 1000 tasks done in {took:.2?} on 2 threads (first: {:?}, last: {:?})",
        reports[0].as_ref().map_err(ToString::to_string),
        reports[999].as_ref().map_err(ToString::to_string),
    );

    // 2. An async host function: the host waits (as a database or an HTTP
    //    client would) and answers; 1,000 guests call it at once.
    let pool = wasmpool::Pool::builder()
        .module_file(wasmpool_tests::ASYNCIO)
        .workers(2)
        .concurrency(500)
        .host_fn_async("wait", |ms: u64| async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok::<_, String>(ms)
        })
        .build()?;
    let start = Instant::now();
    let answers = pool.map::<u64, u64>("ask_host", vec![1000; 1000])?;
    let took = start.elapsed();
    let answered = answers
        .iter()
        .filter(|r| r.as_ref().is_ok_and(|&ms| ms == 1000))
        .count();
    println!("{answered} of 1000 host calls (each waiting 1 s) answered in {took:.2?}");
    Ok(())
}
