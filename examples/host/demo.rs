//! The demo: a real guest on every core. Counts the primes below 12,800,000
//! in 640 wasm tasks, first on one worker, then on one worker per core, and
//! prints what each worker did.
//!
//! ```text
//! cargo run --release --example demo
//! ```

use std::time::Instant;

use wasmpool::Pool;
use wasmpool_kernels::{MANDELBROT_TOTAL, PRIMES_640_TOTAL};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("wasmpool demo: {cores} cores, one isolated wasmtime instance per worker\n");

    let mut one_worker = None;
    for workers in [1, cores] {
        let pool = Pool::builder()
            .module_file(wasmpool_tests::PRIMES)
            .workers(workers)
            .build()?;
        let start = Instant::now();
        let total: u64 = pool
            .imap::<u64, u64>("primes", 0..640)?
            .map(|r| r.expect("primes task"))
            .sum();
        let elapsed = start.elapsed();
        assert_eq!(total, PRIMES_640_TOTAL, "checksum");
        println!(
            "primes.wasm ({}), 640 tasks on {workers} worker{}: {total} primes below 12,800,000 in {elapsed:.2?}",
            pool.cache_outcome(),
            if workers == 1 { "" } else { "s" },
        );
        for w in pool.worker_stats() {
            println!(
                "  worker {}: {:>3} tasks, busy {:>8.2?}, {} instance{}",
                w.index,
                w.tasks,
                w.busy,
                w.instances,
                if w.instances == 1 { "" } else { "s" }
            );
        }
        match one_worker {
            None => one_worker = Some(elapsed),
            Some(base) => println!(
                "  speedup over 1 worker: {:.2}x",
                base.as_secs_f64() / elapsed.as_secs_f64()
            ),
        }
        if cores == 1 {
            break;
        }
    }

    let pool = Pool::builder()
        .module_file(wasmpool_tests::MANDELBROT)
        .build()?;
    let start = Instant::now();
    let rows: Vec<u64> = pool
        .map("row", 0..512u64)?
        .into_iter()
        .collect::<Result<_, _>>()?;
    let total: u64 = rows.iter().sum();
    assert_eq!(total, MANDELBROT_TOTAL, "checksum");
    println!(
        "\nmandelbrot.wasm, 512 rows on {} workers, results in row order: {total} iterations in {:.2?}",
        pool.workers(),
        start.elapsed()
    );
    let max = rows.iter().copied().max().unwrap_or(1).max(1);
    for r in (0..512).step_by(64) {
        let bar = "#".repeat((rows[r] * 50 / max) as usize);
        println!("  row {r:>3} {bar:<50} {}", rows[r]);
    }
    Ok(())
}
