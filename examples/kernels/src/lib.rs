//! The benchmark kernels of the design notes (§5), written once and shared by
//! the wasm guests in `examples/guests` and by the native rayon baseline, so
//! that both sides run exactly the same code.
//!
//! Each kernel's checksum is fixed; every implementation must match it:
//!
//! ```
//! use wasmpool_kernels::{mandelbrot_row, primes_in_block, MANDELBROT_ROWS};
//! let primes: u64 = (0..64).map(primes_in_block).sum();
//! assert_eq!(primes, wasmpool_kernels::PRIMES_64_TOTAL);
//! let rows: u64 = (0..MANDELBROT_ROWS).map(mandelbrot_row).sum();
//! assert_eq!(rows, wasmpool_kernels::MANDELBROT_TOTAL);
//! ```

#![no_std]

/// How many numbers one primes task covers.
pub const PRIMES_BLOCK: u64 = 20_000;
/// The sum of [`primes_in_block`] over tasks `0..64`.
pub const PRIMES_64_TOTAL: u64 = 98_610;
/// The sum of [`primes_in_block`] over tasks `0..640`.
pub const PRIMES_640_TOTAL: u64 = 837_099;
/// The mandelbrot image is `MANDELBROT_ROWS` by `MANDELBROT_ROWS` pixels.
pub const MANDELBROT_ROWS: u64 = 512;
/// The sum of [`mandelbrot_row`] over all rows.
pub const MANDELBROT_TOTAL: u64 = 12_475_425;

/// Counts the primes in `[i * 20000, (i + 1) * 20000)` by trial division
/// with odd divisors while `d * d <= n`.
///
/// ```
/// assert_eq!(wasmpool_kernels::primes_in_block(0), 2262);
/// ```
pub fn primes_in_block(i: u64) -> u64 {
    let start = i * PRIMES_BLOCK;
    let end = start + PRIMES_BLOCK;
    (start..end).filter(|&n| is_prime(n)).count() as u64
}

/// Trial division by 2 and then odd divisors while `d * d <= n`.
///
/// ```
/// assert!(wasmpool_kernels::is_prime(97));
/// assert!(!wasmpool_kernels::is_prime(91));
/// ```
// `%` rather than `is_multiple_of`: the same operation as the Python and
// native baselines, with no zero-divisor branch in the hot loop.
#[allow(clippy::manual_is_multiple_of)]
pub fn is_prime(n: u64) -> bool {
    if n < 2 {
        return false;
    }
    if n % 2 == 0 {
        return n == 2;
    }
    let mut d = 3;
    while d * d <= n {
        if n % d == 0 {
            return false;
        }
        d += 2;
    }
    true
}

/// The sum of the escape iteration counts of row `r` of a 512x512 image of
/// the Mandelbrot set: `y0 = -1.5 + 3.0 * r / 512`, `x0 = -2.0 + 3.0 * c / 512`,
/// iterating `z = z^2 + c` from 0 while `it < 256 && |z|^2 <= 4`.
///
/// ```
/// assert_eq!(wasmpool_kernels::mandelbrot_row(0), 908);
/// ```
pub fn mandelbrot_row(r: u64) -> u64 {
    let n = MANDELBROT_ROWS as f64;
    let y0 = -1.5 + 3.0 * r as f64 / n;
    let mut sum = 0u64;
    for c in 0..MANDELBROT_ROWS {
        let x0 = -2.0 + 3.0 * c as f64 / n;
        let (mut zr, mut zi) = (0.0f64, 0.0f64);
        let mut it = 0u64;
        while it < 256 && zr * zr + zi * zi <= 4.0 {
            let t = zr * zr - zi * zi + x0;
            zi = 2.0 * zr * zi + y0;
            zr = t;
            it += 1;
        }
        sum += it;
    }
    sum
}

/// The tiny task: `x * x`, wrapping on overflow.
///
/// ```
/// assert_eq!(wasmpool_kernels::square(12), 144);
/// ```
pub fn square(x: i64) -> i64 {
    x.wrapping_mul(x)
}
