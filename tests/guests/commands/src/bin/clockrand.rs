//! Reads the clocks and the random source, as a WASI command does under
//! `wasmtime run`. (cli::run_gives_clocks_and_random)

use std::hash::{BuildHasher, RandomState};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn main() {
    let year_2024 = Duration::from_secs(1_704_067_200);
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    println!("wall clock after 2024: {}", now > year_2024);
    let start = Instant::now();
    std::thread::sleep(Duration::from_millis(20));
    println!(
        "slept at least 20ms: {}",
        start.elapsed() >= Duration::from_millis(20)
    );
    // RandomState seeds from WASI random_get: different in every instance.
    println!("random {}", RandomState::new().hash_one("x"));
}
