//! Run WebAssembly tasks in parallel on every core, each worker in its own
//! isolated wasmtime instance: Python's `multiprocessing.Pool`, rebuilt on
//! WebAssembly isolation.
//!
//! # Quick start
//!
//! A module's exports are its tasks. A [`Pool`] starts one worker per core,
//! each with its own instance, and maps a task over inputs, returning the
//! results in input order:
//!
//! ```
//! # fn main() -> Result<(), wasmpool::Error> {
//! let pool = wasmpool::Pool::builder()
//!     .module_bytes(r#"(module
//!         (func (export "square") (param i64) (result i64)
//!             local.get 0 local.get 0 i64.mul))"#)
//!     .build()?;
//! let squares: Vec<i64> = pool
//!     .map("square", 1..=5)?
//!     .into_iter()
//!     .collect::<Result<_, _>>()
//!     .unwrap();
//! assert_eq!(squares, [1, 4, 9, 16, 25]);
//! # Ok(()) }
//! ```
//!
//! Real tasks are written in Rust with the guest SDK (crate
//! `wasmpool-guest`) and compiled to `wasm32-wasip1`:
//!
//! ```text
//! #[wasmpool_guest::task]
//! pub fn primes(i: u64) -> u64 { /* ... */ }
//! ```
//!
//! ```no_run
//! # fn main() -> Result<(), wasmpool::Error> {
//! let pool = wasmpool::Pool::builder().module_file("primes.wasm").build()?;
//! let total: u64 = pool.imap::<u64, u64>("primes", 0..64)?.map(Result::unwrap).sum();
//! # Ok(()) }
//! ```
//!
//! # Tasks
//!
//! Two kinds of export run as tasks (see `docs/abi.md`):
//!
//! - **ABI tasks**, `wasmpool_task_<name>`, take and return bytes; wasmpool's
//!   typed helpers and CLI put JSON in them. The SDK's `#[task]` makes these.
//! - **Numeric exports** such as `(i64) -> i64` or `(f64, f64) -> f64` are
//!   called directly: the input is a number, or an array for several
//!   parameters. C, Zig or hand-written WAT need no SDK.
//!
//! [`Pool::task`] looks a task up and tells which it is.
//!
//! # Streams
//!
//! [`Pool::map`] collects everything. [`Pool::imap`] streams results in input
//! order through a bounded window, so memory stays flat over millions of
//! inputs; [`Pool::imap_unordered`] yields `(index, result)` as tasks finish.
//! Inputs are cut into batches sized from the measured task time, so tiny
//! tasks and heavy ones both keep every core busy.
//!
//! # Processes, queues and shared memory
//!
//! The rest of Python's `multiprocessing`:
//!
//! - [`ProcessGroup`] runs WASI commands (`_start`) as [`Process`]es, each an
//!   isolated instance on its own thread, with only the arguments,
//!   environment and directories it is granted; [`Process::join`] takes a
//!   timeout and [`Process::terminate`] stops even an infinite loop.
//! - [`Queue`]: named, bounded, many-producer many-consumer queues owned by
//!   the host and shared by every instance of a pool or group
//!   ([`PoolBuilder::queue`]); closing one ends every consumer's loop.
//! - [`SharedRegion`]: one shared memory per pool or group
//!   ([`PoolBuilder::shared_memory`]) with atomics and wait/notify, on which
//!   the SDK builds `SharedValue`, `SharedArray`, `Lock`, `Event`, `Barrier`
//!   and `Semaphore`.
//!
//! ```
//! # fn main() -> Result<(), wasmpool::Error> {
//! let group = wasmpool::ProcessGroup::builder()
//!     .module_bytes(r#"(module (func (export "_start") (loop br 0)))"#)
//!     .build()?;
//! let p = group.spawn(0)?;
//! assert!(p.join(Some(std::time::Duration::from_millis(20))).is_none(), "still spinning");
//! p.terminate();
//! assert_eq!(p.wait().code(), wasmpool::EXIT_TERMINATED);
//! # Ok(()) }
//! ```
//!
//! # Limits
//!
//! A guest gets what [`Limits`] allow, the same for pools and process
//! groups: memory, time, fuel, stack, table size and output. The time limit
//! holds wherever the guest is (in wasm code, in a host call, asleep in
//! WASI, in a wasm atomic wait), and the host's own memory stays bounded
//! whatever guests do (queues and streams have byte budgets); see
//! `docs/security.md`.
//!
//! ```
//! # fn main() -> Result<(), wasmpool::Error> {
//! use std::time::Duration;
//! let pool = wasmpool::Pool::builder()
//!     .module_bytes(r#"(module (func (export "spin") (param i64) (result i64) (loop br 0) local.get 0))"#)
//!     .timeout(Duration::from_millis(50))
//!     .max_memory(16 << 20)
//!     .cache(None)
//!     .build()?;
//! let err = pool.map::<i64, i64>("spin", [1])?.pop().unwrap().unwrap_err();
//! assert_eq!(err.kind(), wasmpool::TaskErrorKind::Timeout);
//! # Ok(()) }
//! ```
//!
//! # The async mode and host functions
//!
//! For I/O-bound work, [`PoolBuilder::concurrency`] runs many tasks at once
//! on each worker thread, each in its own instance: a guest that waits (a
//! sleep, a queue, a host call) is suspended instead of holding its thread.
//! [`PoolBuilder::host_fn`] and [`PoolBuilder::host_fn_async`] give guests
//! functions of the host (a database lookup, an HTTP call), which they call
//! with `wasmpool_guest::host::call`. See `docs/async.md`.
//!
//! ```
//! # fn main() -> Result<(), wasmpool::Error> {
//! use std::time::Duration;
//! let pool = wasmpool::Pool::builder()
//!     .module_bytes(r#"(module (func (export "_start")))"#)
//!     .concurrency(100)
//!     .host_fn_async("wait", |ms: u64| async move {
//!         tokio::time::sleep(Duration::from_millis(ms)).await;
//!         Ok::<_, String>(ms)
//!     })
//!     .cache(None)
//!     .build()?;
//! # Ok(()) }
//! ```
//!
//! # Errors
//!
//! Setting up a pool fails with an [`Error`] naming the module and what is
//! wrong. After that, each task's result is a `Result<_, `[`TaskError`]`>`:
//! a trap, a guest-reported error, an input that does not fit, each at its
//! own index; the instance that trapped is replaced and every other task
//! still runs.
//!
//! # Engine and cache
//!
//! Each pool runs on a wasmtime engine with the pooling allocator and
//! copy-on-write memory images; each worker keeps one instance made from a
//! shared `InstancePre`. Compiled modules are cached on disk
//! ([`ModuleCache`]), so a second run of the same module does not recompile.
//! [`Precompiler`] compiles a module ahead of time into a `.cwasm` file
//! (what `wasmpool compile` does), which a builder loads without compiling
//! once [`PoolBuilder::allow_precompiled`] says the file is trusted.

#![deny(missing_docs)]
#![doc(test(attr(deny(warnings))))]
#![doc(test(attr(allow(dead_code, unused_variables, unused_mut))))]

mod abi;
#[cfg(feature = "broker")]
pub mod broker;
mod dispatch;
mod engine;
mod error;
mod hostfn;
mod limits;
mod module;
mod numeric;
mod packed;
mod pagemap;
mod pool;
mod precompiled;
mod process;
mod program;
mod queue;
mod rewind;
mod runtime;
mod sandbox;
mod shm;
mod shm_inline;
mod stdio;
mod suggest;
mod task;
mod wait;
mod watchdog;
mod worker;
mod written;

pub use dispatch::{Feed, Imap, ImapUnordered, TryNext};
pub use engine::{CacheOutcome, ModuleCache};
pub use error::{Error, TaskError, TaskErrorKind};
pub use limits::{Limits, MAX_STACK_LIMIT, MAX_TIMEOUT};
pub use module::{ModuleInfo, TaskInfo};
pub use pool::{DEFAULT_OUTPUT_BUDGET, Isolation, Pool, PoolBuilder};
pub use precompiled::Precompiler;
pub use process::{
    EXIT_TERMINATED, EXIT_TIMEOUT, EXIT_TRAP, ExitStatus, Process, ProcessGroup,
    ProcessGroupBuilder,
};
pub use program::MAX_MODULE_SIZE;
pub use queue::{Queue, QueueError};
pub use runtime::DEFAULT_QUEUE_BYTES;
pub use shm::{SharedRegion, ShmError, Wake};
pub use stdio::Stdio;
pub use task::{Output, Payload, Spares, Task, Values, WasmType, WasmValue};
pub use worker::WorkerStats;
