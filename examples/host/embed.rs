//! Embedding wasmpool as a library: build a pool, map a task in input order,
//! stream a million tiny tasks with bounded memory, and handle a failure.
//!
//! ```text
//! cargo run --release --example embed
//! ```

use wasmpool::{Pool, TaskErrorKind};

fn main() -> Result<(), wasmpool::Error> {
    // One worker per core, each with its own instance of the module.
    let pool = Pool::builder()
        .module_file(wasmpool_tests::SQUARE)
        .build()?;

    // Pool.map: serde values in, results in input order.
    let squares: Vec<Result<i64, wasmpool::TaskError>> = pool.map("square", [1, 2, 3, 4])?;
    println!("square over [1, 2, 3, 4]: {squares:?}");

    // imap: a streaming, ordered iterator; memory stays bounded.
    let sum: i64 = pool
        .imap::<i64, i64>("square_i64", 0..1_000_000)?
        .map(|r| r.unwrap())
        .sum();
    println!("sum of the first million squares: {sum}");

    // A task that does not fit its input fails alone, at its own index.
    let mixed = pool.map::<serde_json::Value, i64>(
        "square_i64",
        [
            serde_json::json!(5),
            serde_json::json!("five"),
            serde_json::json!(6),
        ],
    )?;
    for (i, r) in mixed.iter().enumerate() {
        match r {
            Ok(v) => println!("  input {i}: ok {v}"),
            Err(e) if e.kind() == TaskErrorKind::Input => {
                println!("  input {i}: bad input: {}", e.message())
            }
            Err(e) => println!("  input {i}: {e}"),
        }
    }
    Ok(())
}
