//! The tiny task of the benchmarks, two ways: `square` through the guest SDK
//! (JSON in and out) and `square_i64`, a plain numeric export that any host
//! can call with no SDK at all.
//!
//! ```text
//! seq 1 5 | wasmpool map square.wasm --task square --values
//! seq 1 5 | wasmpool map square.wasm --task square_i64 --values
//! ```

use wasmpool_guest::task;

/// `x * x` as an SDK task (wrapping on overflow).
#[task]
pub fn square(x: i64) -> i64 {
    wasmpool_kernels::square(x)
}

/// `x * x` as a plain numeric export: `(i64) -> i64`.
#[unsafe(no_mangle)]
pub extern "C" fn square_i64(x: i64) -> i64 {
    wasmpool_kernels::square(x)
}
