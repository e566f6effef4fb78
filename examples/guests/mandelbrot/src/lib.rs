//! One row of a 512x512 Mandelbrot image per task; a task returns the sum of
//! its row's iteration counts. Over rows 0..512 they sum to 12475425
//! (design notes §5).
//!
//! ```text
//! seq 0 511 | wasmpool map mandelbrot.wasm --task row --values | paste -sd+ | bc   # 12475425
//! ```

/// The sum of the iteration counts of row `r`.
#[wasmpool_guest::task]
pub fn row(r: u64) -> u64 {
    wasmpool_kernels::mandelbrot_row(r)
}

/// The same kernel as a plain numeric export, `(i64) -> i64`.
#[unsafe(no_mangle)]
pub extern "C" fn row_i64(r: i64) -> i64 {
    wasmpool_kernels::mandelbrot_row(r as u64) as i64
}
