//! Five processes incrementing one shared counter under its lock (Python:
//! `Value('i', 0)` and `with counter.get_lock(): counter.value += 1`). A
//! barrier lets process 0 print the total once everyone is done.
//!
//! ```text
//! wasmpool run shared_counter.wasm -n 5 --shared-memory 64KiB
//! ```

use wasmpool_guest::{Barrier, Lock, SharedValue};

const COUNTER: SharedValue<i64> = SharedValue::at(0);
const COUNTER_LOCK: Lock = Lock::at(8);

fn main() {
    {
        let _guard = COUNTER_LOCK.lock();
        COUNTER.store(COUNTER.load() + 1);
    }
    let everyone = Barrier::at(16, wasmpool_guest::worker_count());
    everyone.wait();
    if wasmpool_guest::worker_index() == 0 {
        println!("counter = {}", COUNTER.load());
    }
}
