//! One guest instance and what its store holds.
//!
//! Entry point: [`Guest::new`] instantiates a module from an `InstancePre`
//! into a fresh `Store` with its own WASI context, and [`Guest::run`] runs one
//! task in it and maps every way a task can fail to a [`TaskError`].
//!
//! Invariant: after a trap (`Guest::poisoned`) the guest must not run again;
//! the worker drops it and builds a new one, so a half-updated heap never
//! leaks into the next task.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use smallvec::SmallVec;
use wasmtime::{
    Func, Instance, InstancePre, Memory, ResourceLimiter, Store, Trap, TypedFunc, ValRaw,
    WasmBacktrace,
};
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::p1::WasiP1Ctx;

use crate::error::{AbiError, Interrupted, TaskError, TaskErrorKind, TimedOut};
use crate::queue::Queue;
use crate::shm::SharedRegion;
use crate::task::{Output, Payload, TaskKind, TaskSpec, WasmValue};

/// Limits that apply to every task of a pool (and to its instantiation).
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    /// The most bytes a task may write with `output_write`.
    pub(crate) max_output: usize,
    /// The most bytes an instance's own linear memory may grow to.
    pub(crate) max_memory: Option<usize>,
    /// The most wall-clock time one task may run (epoch interruption for
    /// wasm code, deadlines for host calls that wait).
    pub(crate) timeout: Option<Duration>,
    /// The fuel each task starts with (deterministic CPU limit).
    pub(crate) fuel: Option<u64>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_output: 64 << 20,
            max_memory: None,
            timeout: None,
            fuel: None,
        }
    }
}

/// How often the pool's ticker advances the engine's epoch: the resolution
/// of task timeouts.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Enforces the memory cap, and remembers a refused growth so that the trap
/// that usually follows (a Rust guest aborts) is reported as out of memory.
#[derive(Debug, Default)]
pub(crate) struct MemoryLimiter {
    cap: Option<usize>,
    /// The size a refused `memory.grow` asked for, during the current task.
    pub(crate) refused: Option<usize>,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        match self.cap {
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
        _desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(true)
    }
}

/// What every instance of a pool or process group shares: the named queues
/// (a guest's handle is an index into `queues`) and the shared region.
#[derive(Debug, Default)]
pub(crate) struct Resources {
    pub(crate) queues: Vec<Arc<Queue>>,
    pub(crate) shm: Option<SharedRegion>,
}

/// Which worker an instance belongs to (what `worker_index` returns).
#[derive(Debug, Clone, Copy)]
pub(crate) struct WorkerId {
    pub(crate) index: u32,
    pub(crate) count: u32,
}

/// Everything a store holds for its one instance.
pub(crate) struct StoreData {
    pub(crate) wasi: WasiP1Ctx,
    /// The guest's exported `memory`, resolved once after instantiation.
    pub(crate) memory: Option<Memory>,
    /// The current task's input (empty between tasks).
    pub(crate) input: Vec<u8>,
    /// The current task's output so far.
    pub(crate) output: Vec<u8>,
    /// What the guest said before a trap (its panic message).
    pub(crate) trap_message: Option<String>,
    pub(crate) worker: WorkerId,
    pub(crate) limits: Limits,
    /// Queues and the shared region of this pool or group.
    pub(crate) resources: Arc<Resources>,
    /// Set to stop the guest: waits in host calls end, and wasm code stops
    /// at its next epoch check.
    pub(crate) interrupt: Arc<AtomicBool>,
    /// The message taken by the last `queue_get`, until `queue_message`.
    pub(crate) message: Option<Vec<u8>>,
    /// The memory cap and what it refused.
    pub(crate) limiter: MemoryLimiter,
    /// When the current task's time is up: host calls that wait stop then.
    pub(crate) task_deadline: Option<Instant>,
}

/// The WASI context of a pool's instances: nothing of the host is visible
/// (no files, no environment, no arguments), and guest stdout goes to the
/// host's stderr so that it can never corrupt results on the host's stdout.
pub(crate) fn sealed_wasi() -> WasiP1Ctx {
    WasiCtxBuilder::new()
        .stdout(wasmtime_wasi::cli::stderr())
        .stderr(wasmtime_wasi::cli::stderr())
        .build_p1()
}

impl StoreData {
    pub(crate) fn new(
        worker: WorkerId,
        limits: Limits,
        resources: Arc<Resources>,
        wasi: WasiP1Ctx,
    ) -> Self {
        StoreData {
            wasi,
            memory: None,
            input: Vec::new(),
            output: Vec::new(),
            trap_message: None,
            worker,
            resources,
            interrupt: Arc::new(AtomicBool::new(false)),
            message: None,
            limiter: MemoryLimiter {
                cap: limits.max_memory,
                refused: None,
            },
            task_deadline: None,
            limits,
        }
    }
}

/// A task export, resolved in one instance.
#[derive(Clone)]
enum Resolved {
    Abi(TypedFunc<(), i32>),
    Numeric(Func),
}

/// One live instance with its store, ready to run tasks one at a time.
pub(crate) struct Guest {
    store: Store<StoreData>,
    instance: Instance,
    /// Task exports resolved so far, indexed by `TaskSpec::id`.
    resolved: Vec<Option<Resolved>>,
    /// Set when a task trapped: the instance must be replaced.
    pub(crate) poisoned: bool,
    /// Tasks run in this instance (for recycling).
    pub(crate) tasks_run: u64,
}

impl std::fmt::Debug for Guest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guest")
            .field("worker", &self.store.data().worker)
            .finish_non_exhaustive()
    }
}

impl Guest {
    /// Instantiates a fresh guest and runs its `_initialize`, if any.
    pub(crate) fn new(
        pre: &InstancePre<StoreData>,
        worker: WorkerId,
        limits: Limits,
        resources: Arc<Resources>,
    ) -> Result<Guest, TaskError> {
        let mut store = Store::new(
            pre.module().engine(),
            StoreData::new(worker, limits, resources, sealed_wasi()),
        );
        store.limiter(|data| &mut data.limiter);
        if store.data().limits.timeout.is_some() {
            store.epoch_deadline_trap();
        }
        // Instantiation (a start function, `_initialize`) runs under the same
        // limits as a task.
        start_task(&mut store);
        let setup = |store: &mut Store<StoreData>| -> wasmtime::Result<Instance> {
            let instance = pre.instantiate(&mut *store)?;
            store.data_mut().memory = instance.get_memory(&mut *store, "memory");
            if let Some(init) = instance.get_func(&mut *store, "_initialize") {
                init.typed::<(), ()>(&*store)?.call(&mut *store, ())?;
            }
            Ok(instance)
        };
        match setup(&mut store) {
            Ok(instance) => Ok(Guest {
                store,
                instance,
                resolved: Vec::new(),
                poisoned: false,
                tasks_run: 0,
            }),
            Err(e) => Err(classify(e, store.data_mut())),
        }
    }

    fn resolve(&mut self, task: &TaskSpec) -> Result<Resolved, TaskError> {
        if let Some(Some(r)) = self.resolved.get(task.id) {
            return Ok(r.clone());
        }
        let missing = || {
            TaskError::new(
                TaskErrorKind::Host,
                format!("export {} vanished", task.export),
            )
        };
        let func = self
            .instance
            .get_func(&mut self.store, &task.export)
            .ok_or_else(missing)?;
        let r = match task.kind {
            TaskKind::Abi => Resolved::Abi(func.typed(&self.store).map_err(|e| {
                TaskError::new(
                    TaskErrorKind::Host,
                    format!("export {}: {e:#}", task.export),
                )
            })?),
            TaskKind::Numeric { .. } => Resolved::Numeric(func),
        };
        if self.resolved.len() <= task.id {
            self.resolved.resize(task.id + 1, None);
        }
        self.resolved[task.id] = Some(r.clone());
        Ok(r)
    }

    /// Runs one task to completion. On a trap, marks the guest poisoned.
    pub(crate) fn run(&mut self, task: &TaskSpec, payload: Payload) -> Result<Output, TaskError> {
        let func = self.resolve(task)?;
        self.tasks_run += 1;
        start_task(&mut self.store);
        let result = match (func, payload) {
            (Resolved::Abi(f), Payload::Bytes(input)) => {
                if i32::try_from(input.len()).is_err() {
                    return Err(TaskError::new(
                        TaskErrorKind::Input,
                        "the input is larger than 2 GiB",
                    ));
                }
                self.store.data_mut().input = input;
                let status = f.call(&mut self.store, ());
                let data = self.store.data_mut();
                let output = std::mem::take(&mut data.output);
                // The input buffer was allocated on the caller's thread: it
                // becomes the next task's output buffer and goes back there with
                // that result, instead of being freed here. Buffers then stay
                // with the thread that allocated them, which spares the
                // allocator's cross-thread locks (a third of the time of tiny
                // SDK tasks, measured).
                let mut spare = std::mem::take(&mut data.input);
                spare.clear();
                data.output = spare;
                status.map(|status| abi_outcome(status, output))
            }
            (Resolved::Numeric(f), Payload::Values(args)) => {
                let TaskKind::Numeric { params, results } = &task.kind else {
                    unreachable!("a numeric export resolves to Resolved::Numeric")
                };
                if args.len() != params.len()
                    || !args.iter().zip(params).all(|(a, &t)| a.has_type(t))
                {
                    return Err(TaskError::new(
                        TaskErrorKind::Input,
                        format!("arguments {args:?} do not fit {}", task.kind.describe()),
                    ));
                }
                let mut raw: SmallVec<[ValRaw; 8]> = args.iter().map(|a| a.to_raw()).collect();
                raw.resize(params.len().max(results.len()), ValRaw::i32(0));
                // SAFETY: `f` is the export named by `task`, whose type was read
                // from the module when the task was resolved: its parameters are
                // exactly `params` and its results exactly `results`, all
                // numbers (no references to keep alive). `raw` holds one value
                // of the right type per parameter (checked just above) and has
                // room for every result. The call is not made from inside
                // another call on this store.
                let call = unsafe {
                    f.call_unchecked(&mut self.store, std::ptr::from_mut(raw.as_mut_slice()))
                };
                call.map(|()| {
                    Ok(Output::Values(
                        results
                            .iter()
                            .zip(&raw)
                            .map(|(&t, r)| WasmValue::from_raw(t, r))
                            .collect(),
                    ))
                })
            }
            (_, payload) => Err(wasmtime::Error::msg(format!(
                "payload {payload:?} does not fit task {} ({})",
                task.name,
                task.kind.describe()
            ))),
        };
        match result {
            Ok(outcome) => outcome,
            Err(e) => {
                let error = classify(e, self.store.data_mut());
                if error.kind() != TaskErrorKind::Host {
                    self.poisoned = true;
                }
                Err(error)
            }
        }
    }
}

/// Maps an ABI task's status and output bytes to its result.
fn abi_outcome(status: i32, output: Vec<u8>) -> Result<Output, TaskError> {
    let text = || String::from_utf8_lossy(&output).into_owned();
    match status {
        0 => Ok(Output::Bytes(output)),
        1 => Err(TaskError::new(TaskErrorKind::Guest, text())),
        2 => Err(TaskError::new(TaskErrorKind::Input, text())),
        other => Err(TaskError::new(
            TaskErrorKind::Abi,
            format!("the task returned status {other}; docs/abi.md allows 0, 1 and 2"),
        )),
    }
}

/// Resets the per-task state of a store and arms its limits: fuel, the
/// epoch deadline, the deadline of waits, the memory-refusal flag.
pub(crate) fn start_task(store: &mut Store<StoreData>) {
    let limits = store.data().limits.clone();
    if let Some(fuel) = limits.fuel {
        // Fuel is only on when the engine consumes it (see EngineOptions).
        let _ = store.set_fuel(fuel);
    }
    if let Some(timeout) = limits.timeout {
        let ticks = timeout.as_nanos().div_ceil(EPOCH_TICK.as_nanos()) as u64 + 1;
        store.set_epoch_deadline(ticks);
    }
    let data = store.data_mut();
    data.trap_message = None;
    data.output.clear();
    data.limiter.refused = None;
    data.task_deadline = limits.timeout.and_then(|t| Instant::now().checked_add(t));
}

/// Turns the error of a failed call into the task's error: once, here.
pub(crate) fn classify(e: wasmtime::Error, data: &mut StoreData) -> TaskError {
    let backtrace = e.downcast_ref::<WasmBacktrace>().map(|bt| bt.to_string());
    let trap_message = data.trap_message.take();
    if let Some(exit) = e.downcast_ref::<wasmtime_wasi::I32Exit>() {
        return TaskError::exit(exit.0);
    }
    if e.downcast_ref::<Interrupted>().is_some() {
        return TaskError::new(TaskErrorKind::Terminated, "terminated by the host")
            .with_backtrace(backtrace);
    }
    let timed_out = e.downcast_ref::<TimedOut>().is_some()
        || e.downcast_ref::<Trap>() == Some(&Trap::Interrupt);
    if timed_out && let Some(limit) = data.limits.timeout {
        return TaskError::new(
            TaskErrorKind::Timeout,
            format!("the task ran past its time limit of {limit:?}"),
        )
        .with_backtrace(backtrace);
    }
    if e.downcast_ref::<Trap>() == Some(&Trap::OutOfFuel) {
        let fuel = data.limits.fuel.unwrap_or(0);
        return TaskError::new(
            TaskErrorKind::OutOfFuel,
            format!("the task used up its fuel ({fuel} units)"),
        )
        .with_backtrace(backtrace);
    }
    if let (Some(wanted), Some(cap)) = (data.limiter.refused.take(), data.limits.max_memory) {
        return TaskError::new(
            TaskErrorKind::OutOfMemory,
            format!("the guest tried to grow its memory to {wanted} bytes, past the limit of {cap} bytes"),
        )
        .with_backtrace(backtrace);
    }
    if let Some(abi) = e.downcast_ref::<AbiError>() {
        return TaskError::new(TaskErrorKind::Abi, abi.to_string()).with_backtrace(backtrace);
    }
    let message = match (e.downcast_ref::<Trap>(), trap_message) {
        (Some(trap), Some(msg)) => format!("{msg} ({trap})"),
        (Some(trap), None) => trap.to_string(),
        (None, Some(msg)) => format!("{msg} ({e:#})"),
        (None, None) => format!("{e:#}"),
    };
    TaskError::new(TaskErrorKind::Trap, message).with_backtrace(backtrace)
}
