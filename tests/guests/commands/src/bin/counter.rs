//! Adds 1 to the shared counter at offset 0 under a lock, like the seed's
//! `Value('i', 0)` with `get_lock()`. (process::five_processes_count_to_five)

use wasmpool_guest::{Lock, SharedValue};

const LOCK: Lock = Lock::at(8);
const COUNTER: SharedValue<i64> = SharedValue::at(0);

fn main() {
    let _guard = LOCK.lock();
    COUNTER.store(COUNTER.load() + 1);
}
