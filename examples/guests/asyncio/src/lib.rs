//! The seed's fifth tool, asyncio, as a guest: tasks that spend their time
//! waiting. The guest code is plain synchronous Rust; run it in the async
//! mode (`--concurrency N`) and a waiting task suspends its instance
//! instead of holding a thread, so a thousand of them share two cores.
//!
//! ```text
//! seq 0 999 | wasmpool map asyncio.wasm --task fetch --concurrency 500 --values
//! ```

use std::time::Duration;

use wasmpool_guest::host::{self, HostError};
use wasmpool_guest::task;

/// Waits one second (as an I/O call would), then reports: the seed's
/// `async def fetch(i): await asyncio.sleep(1); return f"task {i} done"`.
#[task]
pub fn fetch(i: u32) -> String {
    std::thread::sleep(Duration::from_secs(1));
    format!("task {i} done")
}

/// Sleeps `ms` milliseconds and returns it: the benchmark's waiting task.
#[task]
pub fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

/// Asks the host function `wait` (which the host gives the pool: it waits
/// `ms` milliseconds and answers `ms`), and returns its answer: a task
/// whose I/O is done by the host.
#[task]
pub fn ask_host(ms: u64) -> Result<u64, HostError> {
    host::call("wait", &ms)
}

/// `n` rounds of integer arithmetic (a few milliseconds for 2,000,000)
/// and returns `n`: a CPU-bound task that never waits, to run beside the
/// waiting ones (a busy guest yields to them at every epoch tick).
#[task]
pub fn burn(n: u64) -> u64 {
    let mut x = std::hint::black_box(0x9E37_79B9_7F4A_7C15u64);
    for _ in 0..n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    std::hint::black_box(x);
    n
}
