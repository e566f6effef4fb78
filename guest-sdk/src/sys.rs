//! Every raw import from the host module `wasmpool`, in one place.
//!
//! This mirrors `docs/abi.md` line for line; the safe wrappers in `lib.rs`
//! are the only callers. On targets other than wasm the functions exist so
//! that guest crates still compile natively (for `cargo clippy` and for unit
//! tests of the task functions themselves), but calling them panics.

#[cfg(target_family = "wasm")]
#[link(wasm_import_module = "wasmpool")]
unsafe extern "C" {
    /// The current task's input length in bytes.
    pub(crate) safe fn input_len() -> i32;
    /// Copies `min(len, input_len())` input bytes to `ptr`; returns the count.
    pub(crate) fn input_read(ptr: *mut u8, len: i32) -> i32;
    /// Appends `len` bytes at `ptr` to the task's output.
    pub(crate) fn output_write(ptr: *const u8, len: i32);
    /// Records the message the host reports if the task traps.
    pub(crate) fn trap_message(ptr: *const u8, len: i32);
    /// This instance's worker index.
    pub(crate) safe fn worker_index() -> i32;
    /// The number of workers in the pool.
    pub(crate) safe fn worker_count() -> i32;
}

#[cfg(not(target_family = "wasm"))]
pub(crate) use native::*;

#[cfg(not(target_family = "wasm"))]
mod native {
    #![allow(clippy::missing_safety_doc)]
    //! Stand-ins with the same signatures, for native builds of guest crates.

    fn outside() -> ! {
        panic!(
            "wasmpool-guest host calls only work inside a wasm guest run by wasmpool \
             (build with --target wasm32-wasip1); call your task function directly in native tests"
        )
    }
    pub(crate) fn input_len() -> i32 {
        outside()
    }
    pub(crate) unsafe fn input_read(_ptr: *mut u8, _len: i32) -> i32 {
        outside()
    }
    pub(crate) unsafe fn output_write(_ptr: *const u8, _len: i32) {
        outside()
    }
    pub(crate) unsafe fn trap_message(_ptr: *const u8, _len: i32) {
        outside()
    }
    pub(crate) fn worker_index() -> i32 {
        outside()
    }
    pub(crate) fn worker_count() -> i32 {
        outside()
    }
}
