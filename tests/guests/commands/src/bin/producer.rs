//! Puts 0..N on queue `q` (N from the first argument, default 10), then
//! closes it. The seed's producer. (process::producer_and_consumer_processes)

use wasmpool_guest::Queue;

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10);
    let q: Queue<u64> = Queue::open("q").expect("queue q");
    for i in 0..n {
        q.put(&i).expect("queue open");
    }
    q.close();
}
