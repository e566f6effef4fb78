//! Test support for wasmpool: the example and test guests, built for
//! `wasm32-wasip1` by this crate's build script, as path constants.
//!
//! ```
//! assert!(std::path::Path::new(wasmpool_tests::SQUARE).is_file());
//! ```

#![deny(missing_docs)]

include!(concat!(env!("OUT_DIR"), "/guests.rs"));

/// Every guest path, for tests that check them all.
pub const ALL: &[&str] = &[
    SQUARE, PRIMES, MANDELBROT, TESTGUEST, HELLO, COUNTER, SPIN, READFILE, PRODUCER, CONSUMER,
    CLOCKRAND, UPCASE, PANIC, ASYNCIO,
];
