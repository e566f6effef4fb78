//! Counts primes by trial division: task `i` covers `[i*20000, (i+1)*20000)`.
//! Over tasks 0..64 the counts sum to 98610 (design notes §5).
//!
//! ```text
//! seq 0 63 | wasmpool map primes.wasm --task primes --values | paste -sd+ | bc   # 98610
//! ```

/// The number of primes in block `i`.
#[wasmpool_guest::task]
pub fn primes(i: u64) -> u64 {
    wasmpool_kernels::primes_in_block(i)
}

/// The same kernel as a plain numeric export, `(i64) -> i64`.
#[unsafe(no_mangle)]
pub extern "C" fn primes_i64(i: i64) -> i64 {
    wasmpool_kernels::primes_in_block(i as u64) as i64
}
