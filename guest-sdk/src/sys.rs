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
    /// Registers the 20-byte task I/O area at `ptr` (-1: none).
    pub(crate) fn task_io(ptr: *mut u8);
    /// Records the message the host reports if the task traps.
    pub(crate) fn trap_message(ptr: *const u8, len: i32);
    /// This instance's worker index.
    pub(crate) safe fn worker_index() -> i32;
    /// The number of workers in the pool.
    pub(crate) safe fn worker_count() -> i32;

    /// A handle for the queue named by the bytes at `ptr`, or -1.
    pub(crate) fn queue_open(ptr: *const u8, len: i32) -> i32;
    /// 0 put, 1 timed out, 2 closed.
    pub(crate) fn queue_put(q: i32, ptr: *const u8, len: i32, timeout_ms: i64) -> i32;
    /// The length of the message taken (held for `queue_message`), -1 timed out, -2 closed.
    pub(crate) safe fn queue_get(q: i32, timeout_ms: i64) -> i64;
    /// Copies the held message to `ptr`.
    pub(crate) fn queue_message(ptr: *mut u8, len: i32) -> i32;
    /// Closes the queue.
    pub(crate) safe fn queue_close(q: i32);
    /// Messages waiting.
    pub(crate) safe fn queue_len(q: i32) -> i32;
    /// Puts a prefix of the `count` length-prefixed messages at `ptr`: how
    /// many were put (>= 1 unless `count` is 0), -1 timed out, -2 closed.
    pub(crate) fn queue_put_many(
        q: i32,
        ptr: *const u8,
        len: i32,
        count: i32,
        timeout_ms: i64,
    ) -> i32;
    /// Takes up to `max_count` messages (the first always, more within
    /// `max_bytes`): the held batch's length, -1 timed out, -2 closed.
    pub(crate) safe fn queue_get_many(
        q: i32,
        max_count: i32,
        max_bytes: i32,
        timeout_ms: i64,
    ) -> i64;
    /// Copies the held batch to `ptr`.
    pub(crate) fn queue_messages(ptr: *mut u8, len: i32) -> i32;

    /// The shared region's size in bytes (0: none).
    pub(crate) safe fn shm_size() -> i64;
    /// Copies region bytes at `offset` to `ptr`.
    pub(crate) fn shm_read(offset: i64, ptr: *mut u8, len: i32);
    /// Copies bytes at `ptr` into the region at `offset`.
    pub(crate) fn shm_write(offset: i64, ptr: *const u8, len: i32);
    pub(crate) safe fn shm_load_i32(offset: i64) -> i32;
    pub(crate) safe fn shm_store_i32(offset: i64, value: i32);
    pub(crate) safe fn shm_add_i32(offset: i64, value: i32) -> i32;
    pub(crate) safe fn shm_cas_i32(offset: i64, expected: i32, new: i32) -> i32;
    pub(crate) safe fn shm_load_i64(offset: i64) -> i64;
    pub(crate) safe fn shm_store_i64(offset: i64, value: i64);
    pub(crate) safe fn shm_add_i64(offset: i64, value: i64) -> i64;
    pub(crate) safe fn shm_cas_i64(offset: i64, expected: i64, new: i64) -> i64;
    /// 0 woken, 1 value differed, 2 timed out.
    pub(crate) safe fn shm_wait_i32(offset: i64, expected: i32, timeout_ms: i64) -> i32;
    /// Wakes up to `count` waiters; returns how many woke.
    pub(crate) safe fn shm_notify(offset: i64, count: i32) -> i32;

    /// Calls the host function named by the bytes at `name_ptr` with the
    /// input at `in_ptr`: the reply's length (held for `host_reply`), or
    /// `-1 - len` for an error message of `len` bytes (held likewise).
    pub(crate) fn host_call(
        name_ptr: *const u8,
        name_len: i32,
        in_ptr: *const u8,
        in_len: i32,
    ) -> i64;
    /// Copies the held reply (or error message) to `ptr` and releases it.
    pub(crate) fn host_reply(ptr: *mut u8, len: i32) -> i32;
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
    pub(crate) unsafe fn task_io(_ptr: *mut u8) {
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
    pub(crate) unsafe fn queue_open(_ptr: *const u8, _len: i32) -> i32 {
        outside()
    }
    pub(crate) unsafe fn queue_put(_q: i32, _ptr: *const u8, _len: i32, _timeout_ms: i64) -> i32 {
        outside()
    }
    pub(crate) fn queue_get(_q: i32, _timeout_ms: i64) -> i64 {
        outside()
    }
    pub(crate) unsafe fn queue_message(_ptr: *mut u8, _len: i32) -> i32 {
        outside()
    }
    pub(crate) fn queue_close(_q: i32) {
        outside()
    }
    pub(crate) fn queue_len(_q: i32) -> i32 {
        outside()
    }
    pub(crate) unsafe fn queue_put_many(
        _q: i32,
        _ptr: *const u8,
        _len: i32,
        _count: i32,
        _timeout_ms: i64,
    ) -> i32 {
        outside()
    }
    pub(crate) fn queue_get_many(
        _q: i32,
        _max_count: i32,
        _max_bytes: i32,
        _timeout_ms: i64,
    ) -> i64 {
        outside()
    }
    pub(crate) unsafe fn queue_messages(_ptr: *mut u8, _len: i32) -> i32 {
        outside()
    }
    pub(crate) fn shm_size() -> i64 {
        outside()
    }
    pub(crate) unsafe fn shm_read(_offset: i64, _ptr: *mut u8, _len: i32) {
        outside()
    }
    pub(crate) unsafe fn shm_write(_offset: i64, _ptr: *const u8, _len: i32) {
        outside()
    }
    pub(crate) fn shm_load_i32(_offset: i64) -> i32 {
        outside()
    }
    pub(crate) fn shm_store_i32(_offset: i64, _value: i32) {
        outside()
    }
    pub(crate) fn shm_add_i32(_offset: i64, _value: i32) -> i32 {
        outside()
    }
    pub(crate) fn shm_cas_i32(_offset: i64, _expected: i32, _new: i32) -> i32 {
        outside()
    }
    pub(crate) fn shm_load_i64(_offset: i64) -> i64 {
        outside()
    }
    pub(crate) fn shm_store_i64(_offset: i64, _value: i64) {
        outside()
    }
    pub(crate) fn shm_add_i64(_offset: i64, _value: i64) -> i64 {
        outside()
    }
    pub(crate) fn shm_cas_i64(_offset: i64, _expected: i64, _new: i64) -> i64 {
        outside()
    }
    pub(crate) fn shm_wait_i32(_offset: i64, _expected: i32, _timeout_ms: i64) -> i32 {
        outside()
    }
    pub(crate) fn shm_notify(_offset: i64, _count: i32) -> i32 {
        outside()
    }
    pub(crate) unsafe fn host_call(
        _name_ptr: *const u8,
        _name_len: i32,
        _in_ptr: *const u8,
        _in_len: i32,
    ) -> i64 {
        outside()
    }
    pub(crate) unsafe fn host_reply(_ptr: *mut u8, _len: i32) -> i32 {
        outside()
    }
}
