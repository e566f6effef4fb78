//! Five processes, each printing its index (Python: `Process(target=f, args=(i,))`).
//!
//! ```text
//! wasmpool run processes.wasm -n 5
//! ```

fn main() {
    let index = wasmpool_guest::worker_index();
    println!(
        "process {index} of {} says hello",
        wasmpool_guest::worker_count()
    );
}
