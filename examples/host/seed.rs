//! The seed article's four multiprocessing examples, through the library:
//! processes printing their index, a pool map, a producer/consumer queue,
//! and a shared counter. See examples/README.md for the Python originals.
//!
//! ```text
//! cargo run --release --example seed
//! ```

use std::time::Duration;

use wasmpool::{Pool, ProcessGroup};
use wasmpool_tests::{SEED_PROCESSES, SEED_PRODUCER_CONSUMER, SEED_SHARED_COUNTER, SQUARE};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("1. five processes, each printing its index");
    let group = ProcessGroup::builder()
        .module_file(SEED_PROCESSES)
        .copies(5)
        .build()?;
    run_all(&group, 5)?;

    println!("\n2. a pool map over 10 items with 4 workers");
    let pool = Pool::builder().module_file(SQUARE).workers(4).build()?;
    let squares: Vec<i64> = pool
        .map("square", 0..10)?
        .into_iter()
        .collect::<Result<_, _>>()?;
    println!("{squares:?}");

    println!("\n3. a producer and a consumer sharing a queue, stopping on close");
    let group = ProcessGroup::builder()
        .module_file(SEED_PRODUCER_CONSUMER)
        .queue("items", 4)
        .copies(2)
        .build()?;
    let (producer, consumer) = (group.spawn(0)?, group.spawn(1)?);
    assert!(producer.wait().success() && consumer.join(Some(Duration::from_secs(10))).is_some());

    println!("\n4. five processes incrementing a shared counter under its lock");
    let group = ProcessGroup::builder()
        .module_file(SEED_SHARED_COUNTER)
        .shared_memory(1 << 16)
        .copies(5)
        .build()?;
    run_all(&group, 5)?;
    let total = group.shared_region().expect("asked for one").load_i64(0)?;
    println!("the host reads the counter after the run: {total}");
    assert_eq!(total, 5);
    Ok(())
}

/// Starts processes `0..n` of `group` side by side, then waits for each and
/// checks that it exited 0 (Python: start them all, then join them all).
fn run_all(group: &ProcessGroup, n: u32) -> Result<(), wasmpool::Error> {
    let procs = (0..n)
        .map(|i| group.spawn(i))
        .collect::<Result<Vec<_>, _>>()?;
    for p in procs {
        assert!(p.wait().success());
    }
    Ok(())
}
