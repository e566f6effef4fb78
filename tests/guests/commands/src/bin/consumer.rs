//! Prints each item of queue `q` until it is closed and drained (not on a
//! racy `empty()`), then the count. The seed's consumer.
//! (process::producer_and_consumer_processes)

use wasmpool_guest::Queue;

fn main() {
    let q: Queue<u64> = Queue::open("q").expect("queue q");
    let quiet = std::env::args().any(|a| a == "--quiet");
    let (mut count, mut sum) = (0u64, 0u64);
    for item in q.iter() {
        if !quiet {
            println!("got {item}");
        }
        count += 1;
        sum += item;
    }
    println!("consumed {count} items, sum {sum}");
}
