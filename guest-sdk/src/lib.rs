//! Write wasmpool tasks in Rust.
//!
//! A task is an ordinary function over [serde] types. Mark it with
//! [`#[task]`](macro@task), build the crate as a `cdylib` for
//! `wasm32-wasip1`, and run it on every core with the `wasmpool` CLI or the
//! `wasmpool` library:
//!
//! ```
//! use wasmpool_guest::task;
//!
//! /// Squares a number.
//! #[task]
//! pub fn square(x: u64) -> u64 {
//!     x * x
//! }
//!
//! // The function itself is untouched, so it stays testable natively.
//! assert_eq!(square(12), 144);
//! ```
//!
//! `wasmpool new my-tasks` makes such a crate, ready to build. By hand:
//!
//! ```toml
//! # Cargo.toml of the guest crate
//! [lib]
//! crate-type = ["cdylib"]
//!
//! [dependencies]
//! # Not on crates.io yet: by git, or by path on a clone of wasmpool.
//! wasmpool-guest = { git = "https://github.com/wasmpool/wasmpool" }
//! # wasmpool-guest = { path = "../wasmpool/guest-sdk" }
//! # For your own input and output types.
//! serde = { version = "1", features = ["derive"] }
//!
//! # Only if the crate sits inside another workspace's directory.
//! [workspace]
//! ```
//!
//! ```text
//! $ cargo build --release --target wasm32-wasip1
//! $ seq 1 5 | wasmpool map target/wasm32-wasip1/release/my_tasks.wasm --task square --values
//! 1
//! 4
//! ...
//! ```
//!
//! # Inputs and outputs
//!
//! The input crosses the boundary as JSON. A task with one parameter takes
//! that value (`5`, `"text"`, `{"a": 1}`); a task with several parameters takes
//! a JSON array with one element per parameter (`[3, 4]`); a task with none
//! takes `null`. The return value is serialized as JSON.
//!
//! # Errors
//!
//! A task may return `Result<T, E>` for any `E: Display`. An `Err` is reported
//! by the host as an error of kind `guest` with `E`'s message, at that task's
//! own index; every other task still runs.
//!
//! ```
//! #[wasmpool_guest::task]
//! pub fn parse_port(s: String) -> Result<u16, std::num::ParseIntError> {
//!     s.parse()
//! }
//! # assert!(parse_port("80".into()).is_ok());
//! ```
//!
//! A `panic!` traps the task; the host reports it as kind `trap` with the
//! panic message and replaces the instance.
//!
//! # Queues and shared memory
//!
//! Instances of one pool (or process group) talk through the host:
//! [`Queue`] is a named, bounded queue of serde values; [`SharedValue`] and
//! [`SharedArray`] are atomic integers in the shared region; [`Lock`],
//! [`Event`], [`Barrier`] and [`Semaphore`] are built on its wait/notify.
//!
//! # Host functions
//!
//! A task can call a function its embedder gave the pool by name (a database
//! lookup, an HTTP request): [`host::call`] sends a serde value as JSON and
//! decodes the JSON reply; the host function's own error comes back as a
//! [`host::HostError`], which a task can pass on with `?`.
//!
//! ```
//! use serde::Deserialize;
//! use wasmpool_guest::host::{self, HostError};
//!
//! #[derive(Deserialize)]
//! struct Rate {
//!     eur: f64,
//! }
//!
//! #[wasmpool_guest::task]
//! pub fn to_eur(usd: f64) -> Result<f64, HostError> {
//!     let rate: Rate = host::call("exchange_rate", "USD")?;
//!     Ok(usd * rate.eur)
//! }
//! ```
//!
//! # The ABI underneath
//!
//! All of this is a thin layer over the documented ABI in `docs/abi.md`, which
//! any language that compiles to WebAssembly can implement.

#![deny(missing_docs)]
#![doc(test(attr(deny(warnings))))]
#![doc(test(attr(allow(dead_code, unused_variables, unused_mut))))]

pub mod host;
mod queue;
mod shared;
mod sys;

pub use queue::{Queue, QueueError};
pub use shared::{
    Atom, Barrier, Event, Lock, LockGuard, Semaphore, SharedArray, SharedValue, shared_read,
    shared_size, shared_write,
};

/// Turns a function into an exported wasmpool task.
///
/// The function keeps its name and body. The macro adds an export named
/// `wasmpool_task_<name>` that decodes the JSON input into the parameters,
/// calls the function and writes the JSON result (see the crate docs).
///
/// The function must not be `async`, generic, or a method, and every
/// parameter must implement `serde::Deserialize` and the return type
/// `serde::Serialize` (or be a `Result<T, E>` with `T: Serialize` and
/// `E: Display`).
///
/// ```
/// #[wasmpool_guest::task]
/// pub fn add(a: i64, b: i64) -> i64 {
///     a + b
/// }
/// # assert_eq!(add(2, 3), 5);
/// ```
///
/// Misuse is a compile error:
///
/// ```compile_fail
/// #[wasmpool_guest::task]
/// pub async fn not_async(x: u64) -> u64 { x }
/// ```
///
/// ```compile_fail
/// #[wasmpool_guest::task]
/// pub fn not_generic<T>(x: T) -> T { x }
/// ```
pub use wasmpool_guest_macros::task;

/// Returns the current task's raw input bytes (JSON, for the CLI and the
/// typed library helpers).
///
/// Tasks made with [`task`] never need this; it is for hand-written exports.
///
/// ```no_run
/// let bytes = wasmpool_guest::input();
/// ```
pub fn input() -> Vec<u8> {
    let len = usize::try_from(sys::input_len()).unwrap_or(0);
    let mut buf = Vec::with_capacity(len);
    // SAFETY: `buf` has capacity for `len` bytes at its pointer, and the host
    // writes at most `len` bytes there, returning how many it wrote.
    let written = unsafe { sys::input_read(buf.as_mut_ptr(), len as i32) };
    let written = usize::try_from(written).unwrap_or(0).min(len);
    // SAFETY: the host initialized the first `written <= len <= capacity` bytes.
    unsafe { buf.set_len(written) };
    buf
}

/// Appends bytes to the current task's output.
///
/// ```no_run
/// wasmpool_guest::output(b"42");
/// ```
pub fn output(bytes: &[u8]) {
    for chunk in bytes.chunks(i32::MAX as usize) {
        // SAFETY: `chunk` is a live slice of `chunk.len()` bytes; the host
        // only reads from it during the call.
        unsafe { sys::output_write(chunk.as_ptr(), chunk.len() as i32) };
    }
}

/// The index of the worker running this instance, in `0..worker_count()`.
///
/// Like Python's `current_process().name`, it tells tasks apart by worker:
///
/// ```no_run
/// let me = wasmpool_guest::worker_index();
/// assert!(me < wasmpool_guest::worker_count());
/// ```
pub fn worker_index() -> u32 {
    sys::worker_index() as u32
}

/// The number of workers in the pool running this instance.
///
/// ```no_run
/// assert!(wasmpool_guest::worker_count() >= 1);
/// ```
pub fn worker_count() -> u32 {
    sys::worker_count() as u32
}

/// The ABI version marker (`docs/abi.md`, "Version marker"). The host never
/// calls it; the export's name tells the host which ABI this guest speaks.
#[cfg(target_family = "wasm")]
#[doc(hidden)]
#[unsafe(no_mangle)]
pub extern "C" fn wasmpool_abi_v1() {}

#[doc(hidden)]
pub mod __private;
