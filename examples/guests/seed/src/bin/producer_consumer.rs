//! A producer putting 0..9 on a queue and a consumer printing them, stopping
//! when the queue is closed (Python: `Queue`, with a sentinel or `close`).
//! Copy 0 produces, copy 1 consumes.
//!
//! ```text
//! wasmpool run producer_consumer.wasm -n 2 --queue items:4
//! ```

use wasmpool_guest::Queue;

fn main() {
    let items: Queue<u32> = Queue::open("items").expect("run with --queue items");
    if wasmpool_guest::worker_index() == 0 {
        for i in 0..10 {
            items.put(&i).expect("the queue is open");
        }
        items.close();
    } else {
        for item in items.iter() {
            println!("consumed {item}");
        }
        println!("queue closed: done");
    }
}
