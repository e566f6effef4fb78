//! [`Limits`]: what one guest may use, the same for pools and process
//! groups, and the one interruption policy that enforces the time limit and
//! termination wherever a guest runs.
//!
//! # The interruption policy
//!
//! Every store runs with epoch interruption and a deadline one epoch ahead,
//! renewed by a callback that first checks the store's interruption flag
//! (set by [`Process::terminate`](crate::Process::terminate) or by dropping a
//! pool) and its task's deadline ([`Limits::timeout`]). So:
//!
//! - **wasm code** stops at its next epoch check (a loop back-edge or a
//!   call) after the epoch moves: the watchdog moves it every
//!   [`TICK`](crate::watchdog::TICK) while tasks have a timeout, and a
//!   terminate or a dropped pool moves it at once. Epoch checks are compiled
//!   in for process groups and for pools with a timeout only: they cost
//!   call-heavy guests about 10%;
//! - **host calls that wait** (queues, `shm_wait_i32`, WASI sleeps) wait in
//!   slices and check the same flag and deadline between them (`wait.rs`);
//! - **waits nothing can interrupt** (a wasm `memory.atomic.wait32` on the
//!   shared region, a blocking read of a pipe) are abandoned by the watchdog
//!   [`GRACE`](crate::watchdog::GRACE) after the deadline: the task is
//!   reported as `timeout`, and a fresh worker takes the stuck one's place.
//!
//! Without a timeout no watchdog runs and a pool's guests have no epoch
//! checks, so the fast path is unchanged.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use wasmtime::{ResourceLimiter, Store, UpdateDeadline};

use crate::engine::Mode;
use crate::error::{Error, Interrupted, TimedOut};
use crate::sandbox::StoreData;

/// The largest `max_stack` accepted: worker threads get a native stack of
/// this much more than the wasm stack, so it is bounded.
pub const MAX_STACK_LIMIT: usize = 16 << 20;

/// The longest `timeout` accepted (one year): longer ones are surely a
/// mistake, and they could not be added to an `Instant`.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(365 * 24 * 3600);

/// What one guest may use. The same limits apply to [`Pool`](crate::Pool)
/// tasks and [`Process`](crate::Process)es, and their instantiation (start
/// function and `_initialize`) counts as part of the first task.
///
/// Set them field by field, or through the builders' setters of the same
/// names:
///
/// ```
/// use std::time::Duration;
/// let mut limits = wasmpool::Limits::default();
/// limits.timeout = Some(Duration::from_secs(5));
/// limits.max_memory = Some(256 << 20);
/// let pool = wasmpool::Pool::builder()
///     .module_bytes("(module)")
///     .limits(limits)
///     .cache(None)
///     .build()
///     .unwrap();
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Limits {
    /// The most bytes an instance's own linear memory may grow to. A task
    /// that needs more fails with kind `out_of_memory`. Default: none
    /// beyond wasm32's 4 GiB.
    pub max_memory: Option<usize>,
    /// The most wall-clock time one task (or process) may run, wherever it
    /// is: in wasm code, in a host call, in WASI, in a wasm atomic wait. Past
    /// it the task fails with kind `timeout` within 100 ms. At most
    /// [`MAX_TIMEOUT`]. Default: none.
    pub timeout: Option<Duration>,
    /// The fuel each task starts with: a deterministic CPU limit (about one
    /// unit per wasm instruction); running out is kind `out_of_fuel`. Fuel
    /// metering slows wasm code down. Default: off.
    pub fuel: Option<u64>,
    /// The most stack wasm code may use, in bytes; deeper recursion traps
    /// with a stack overflow. At most [`MAX_STACK_LIMIT`]. Default:
    /// wasmtime's 512 KiB.
    pub max_stack: Option<usize>,
    /// The most elements a table may grow to. Default: 20,000 (wasmtime's
    /// pooling default).
    pub max_table_elements: usize,
    /// The most bytes one task may write with `output_write`; more is kind
    /// `abi`. Default: 64 MiB.
    pub max_output: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_memory: None,
            timeout: None,
            fuel: None,
            max_stack: None,
            max_table_elements: 20_000,
            max_output: 64 << 20,
        }
    }
}

impl Limits {
    /// Checks that every limit is in range.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] naming the limit.
    ///
    /// ```
    /// let mut limits = wasmpool::Limits::default();
    /// limits.max_stack = Some(64 << 20);
    /// let err = limits.validate().unwrap_err();
    /// assert!(err.to_string().contains("max_stack"), "{err}");
    /// ```
    pub fn validate(&self) -> Result<(), Error> {
        if let Some(stack) = self.max_stack {
            if stack > MAX_STACK_LIMIT {
                return Err(Error::Config(format!(
                    "max_stack of {stack} bytes is more than the largest allowed, {MAX_STACK_LIMIT} bytes (16 MiB)"
                )));
            }
            if stack == 0 {
                return Err(Error::Config("max_stack must be more than 0".into()));
            }
        }
        if let Some(t) = self.timeout {
            if t > MAX_TIMEOUT {
                return Err(Error::Config(format!(
                    "a timeout of {t:?} is longer than the longest allowed, one year"
                )));
            }
            if t.is_zero() {
                return Err(Error::Config("a timeout must be more than 0".into()));
            }
        }
        if self.max_memory.is_some_and(|m| m > 1 << 32) {
            return Err(Error::Config(
                "max_memory is more than 4 GiB, the most a wasm32 memory can hold".into(),
            ));
        }
        Ok(())
    }

    /// The native stack a thread running guests under these limits needs:
    /// the wasm stack plus room for the host's own frames.
    pub(crate) fn thread_stack(&self) -> usize {
        const HOST_FRAMES: usize = 2 << 20;
        self.max_stack.unwrap_or(512 << 10) + HOST_FRAMES
    }

    /// When a task starting now must end.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.timeout.and_then(|t| Instant::now().checked_add(t))
    }
}

/// Enforces the memory and table caps, and remembers a refused memory
/// growth so that the trap that usually follows (a Rust guest aborts) is
/// reported as out of memory.
#[derive(Debug, Default)]
pub(crate) struct Limiter {
    memory: Option<usize>,
    table_elements: usize,
    /// The size a refused `memory.grow` asked for, during the current task.
    pub(crate) refused: Option<usize>,
}

impl Limiter {
    pub(crate) fn new(limits: &Limits) -> Self {
        Limiter {
            memory: limits.max_memory,
            table_elements: limits.max_table_elements,
            refused: None,
        }
    }
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        match self.memory {
            Some(cap) if desired > cap => {
                self.refused = Some(desired);
                Ok(false)
            }
            _ => Ok(true),
        }
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= self.table_elements)
    }

    fn instances(&self) -> usize {
        1
    }

    fn tables(&self) -> usize {
        // A core module has at most a handful; the default (10,000) lets one
        // instance reserve far more host memory than it could use.
        100
    }

    fn memories(&self) -> usize {
        // Its own memory and the shared region.
        2
    }
}

/// Installs the interruption policy (see the module docs) on a new store.
/// In the async mode, each epoch tick is also where a busy guest yields to
/// the others on its thread.
pub(crate) fn install(store: &mut Store<StoreData>, mode: Mode) {
    store.limiter(|data| &mut data.limiter);
    let next = match mode {
        Mode::Sync => UpdateDeadline::Continue,
        Mode::Async => UpdateDeadline::Yield,
    };
    store.epoch_deadline_callback(move |ctx| {
        check(ctx.data())?;
        Ok(next(1))
    });
    store.set_epoch_deadline(1);
}

/// Whether the guest was told to stop: terminated, its pool dropped, or its
/// stream cancelled.
pub(crate) fn interrupted(data: &StoreData) -> bool {
    data.interrupt.load(Ordering::Relaxed)
        || data
            .cancel
            .as_ref()
            .is_some_and(|c| c.load(Ordering::Relaxed))
}

/// Why a guest must stop now, if it must: it was interrupted, or its
/// task's time is up.
pub(crate) fn check(data: &StoreData) -> wasmtime::Result<()> {
    if interrupted(data) {
        return Err(Interrupted.into());
    }
    if data.task_deadline.is_some_and(|d| Instant::now() >= d) {
        return Err(TimedOut.into());
    }
    Ok(())
}
