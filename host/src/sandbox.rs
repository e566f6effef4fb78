//! One guest instance and what its store holds: the only place a `Store`
//! and an instance are made, for pool workers and processes alike.
//!
//! Entry point: [`Guest::new`] instantiates a program from an `InstancePre`
//! into a fresh `Store` with its WASI context, under the interruption
//! policy of `limits.rs`; [`Guest::run`] runs one task in it and
//! [`Guest::run_entry`] a process's entry point, and every way they can fail
//! becomes a [`TaskError`] in one place ([`classify`]).
//!
//! Invariants:
//! - after a trap (`Guest::poisoned`) the guest must not run again; the
//!   worker drops it and builds a new one, so a half-updated heap never leaks
//!   into the next task;
//! - per-task host state (input, output, a held queue message, the trap
//!   message, a refused growth) is cleared when a task starts, so nothing of
//!   one task is visible to the next;
//! - `call_unchecked` is only reached with a function whose type was checked
//!   against the task's signature in this very instance.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use smallvec::SmallVec;
use wasmtime::{
    Func, Instance, InstancePre, Memory, Store, Trap, TypedFunc, Val, ValRaw, WasmBacktrace,
};
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::p1::WasiP1Ctx;

use crate::engine::Mode;
use crate::error::{AbiError, HostFnPanic, Interrupted, TaskError, TaskErrorKind, TimedOut};
use crate::hostfn::HostFns;
use crate::limits::{self, Limiter, Limits};
use crate::queue::Queue;
use crate::rewind::{Plan, Snapshot};
use crate::shm::SharedRegion;
use crate::stdio::{LineSink, Target};
use crate::task::{Output, Payload, TaskKind, TaskSpec, Values, WasmType, WasmValue};

/// What every instance of a pool or process group shares: the named queues
/// (a guest's handle is an index into `queues`) and the shared region.
#[derive(Debug, Default)]
pub(crate) struct Resources {
    pub(crate) queues: Vec<Arc<Queue>>,
    pub(crate) shm: Option<SharedRegion>,
    /// The embedder's host functions (`hostfn.rs`).
    pub(crate) host_fns: Arc<HostFns>,
}

/// Which worker an instance belongs to (what `worker_index` returns).
#[derive(Debug, Clone, Copy)]
pub(crate) struct WorkerId {
    pub(crate) index: u32,
    pub(crate) count: u32,
}

/// Everything a store holds for its one instance.
pub(crate) struct StoreData {
    /// The WASI context; `None` stands for [`sealed_wasi`], made on the
    /// guest's first WASI call (see [`StoreData::wasi`]).
    wasi: Option<WasiP1Ctx>,
    /// The guest's exported `memory`, resolved once after instantiation.
    pub(crate) memory: Option<Memory>,
    /// The current task's input (empty between tasks).
    pub(crate) input: Vec<u8>,
    /// The current task's output so far.
    pub(crate) output: Vec<u8>,
    /// What the guest said before a trap (its panic message).
    pub(crate) trap_message: Option<String>,
    pub(crate) worker: WorkerId,
    pub(crate) limits: Arc<Limits>,
    /// Queues and the shared region of this pool or group.
    pub(crate) resources: Arc<Resources>,
    /// Set to stop the guest: waits in host calls end, and wasm code stops
    /// at its next epoch check (see `limits.rs`).
    pub(crate) interrupt: Arc<AtomicBool>,
    /// A second such flag: the cancel flag of the stream whose task runs.
    pub(crate) cancel: Option<Arc<AtomicBool>>,
    /// The message taken by the last `queue_get`, until `queue_message`.
    pub(crate) message: Option<Vec<u8>>,
    /// The reply (or error message) of the last `host_call`, until
    /// `host_reply`.
    pub(crate) reply: Option<Vec<u8>>,
    /// The memory and table caps, and what they refused.
    pub(crate) limiter: Limiter,
    /// When the current task's time is up: wasm code and host calls that
    /// wait stop then.
    pub(crate) task_deadline: Option<Instant>,
    /// The guest's task I/O area, if it registered one (`task_io`,
    /// docs/abi.md): its address, 4-aligned, its 20 bytes inside memory.
    pub(crate) task_io: Option<u32>,
}

/// The WASI context of a pool's instances: nothing of the host is visible
/// (no files, no environment, no arguments), and guest stdout goes to the
/// host's stderr so that it can never corrupt results on the host's stdout,
/// a whole line at a time (`stdio.rs`).
pub(crate) fn sealed_wasi() -> WasiP1Ctx {
    WasiCtxBuilder::new()
        .stdout(LineSink::new(Target::Stderr, true))
        .stderr(LineSink::new(Target::Stderr, true))
        .monotonic_clock(crate::abi::wasi::MonotonicClock)
        .build_p1()
}

/// What a new guest is made of, besides its program.
pub(crate) struct GuestParts {
    pub(crate) worker: WorkerId,
    pub(crate) limits: Arc<Limits>,
    pub(crate) resources: Arc<Resources>,
    /// `None`: the sealed context of a pool's instances, made only if the
    /// guest calls WASI. A fresh instance per task (`Isolation::Task`) then
    /// pays nothing for WASI unless it uses it: building and dropping the
    /// context (its random generator seeded, its stdio table filled) was a
    /// tenth of a fresh instance's cost, measured.
    pub(crate) wasi: Option<WasiP1Ctx>,
    pub(crate) interrupt: Arc<AtomicBool>,
}

impl StoreData {
    /// The WASI context, made now if this is the guest's first WASI call
    /// (the accessor the WASI imports are linked with).
    pub(crate) fn wasi(&mut self) -> &mut WasiP1Ctx {
        self.wasi.get_or_insert_with(sealed_wasi)
    }

    pub(crate) fn new(parts: GuestParts) -> Self {
        StoreData {
            wasi: parts.wasi,
            memory: None,
            input: Vec::new(),
            output: Vec::new(),
            trap_message: None,
            worker: parts.worker,
            resources: parts.resources,
            interrupt: parts.interrupt,
            cancel: None,
            message: None,
            reply: None,
            limiter: Limiter::new(&parts.limits),
            task_deadline: None,
            task_io: None,
            limits: parts.limits,
        }
    }
}

/// A task export, resolved in one instance.
///
/// Never cloned on the per-task path: a `TypedFunc` holds its `FuncType`,
/// whose clone and drop touch reference counts shared by every instance of
/// the engine (measured at a tenth of a tiny SDK task's time on 2 workers,
/// from cache lines bouncing between the cores).
#[derive(Clone)]
enum Resolved {
    Abi(TypedFunc<(), i32>),
    /// A numeric export whose type was checked against the task's signature.
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
    /// A numeric task's arguments, then its results; reused from task to
    /// task.
    raw: SmallVec<[ValRaw; 8]>,
    /// The state before its first task, if the instance can be rewound
    /// to it (`rewind.rs`).
    snapshot: Option<Snapshot>,
    /// Per task (by `TaskSpec::id`, beside `resolved`): whether its export
    /// cannot write memory (`rewind::Plan`: no store reachable).
    leaves_memory: Vec<bool>,
    /// Whether a task since the last rewind may have written memory: a
    /// rewind then looks for the pages it wrote.
    memory_touched: bool,
    /// The next text input's buffer ([`Guest::run_text`]): it and the
    /// store's output buffer trade places every task, so that a batch of
    /// texts runs with no allocation per task.
    text_in: Vec<u8>,
}

impl std::fmt::Debug for Guest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guest")
            .field("worker", &self.store.data().worker)
            .finish_non_exhaustive()
    }
}

impl Guest {
    /// Instantiates a fresh guest and runs its start function and
    /// `_initialize`, if any, under the limits of a task that must end by
    /// `deadline`.
    /// `rewind`: the module's plan for rewinding, if its instances are to
    /// be rewound between tasks.
    pub(crate) fn new(
        pre: &InstancePre<StoreData>,
        parts: GuestParts,
        deadline: Option<Instant>,
        rewind: Option<&Arc<Plan>>,
    ) -> Result<Guest, TaskError> {
        let mut store = new_store(pre, parts, deadline, Mode::Sync);
        let setup = |store: &mut Store<StoreData>| -> wasmtime::Result<Instance> {
            // A terminate that came before the store existed bumped an epoch
            // this store never saw: check the flag once it exists.
            limits::check(store.data())?;
            let instance = pre.instantiate(&mut *store)?;
            store.data_mut().memory = instance.get_memory(&mut *store, "memory");
            if let Some(init) = instance.get_func(&mut *store, "_initialize") {
                init.typed::<(), ()>(&*store)?.call(&mut *store, ())?;
            }
            Ok(instance)
        };
        let made = setup(&mut store);
        Guest::made(store, made, rewind)
    }

    /// [`new`](Self::new)'s async face, for the async mode: instantiation
    /// and `_initialize` may suspend.
    pub(crate) async fn new_async(
        pre: &InstancePre<StoreData>,
        parts: GuestParts,
        deadline: Option<Instant>,
        rewind: Option<&Arc<Plan>>,
    ) -> Result<Guest, TaskError> {
        let mut store = new_store(pre, parts, deadline, Mode::Async);
        let made = async {
            limits::check(store.data())?;
            let instance = pre.instantiate_async(&mut store).await?;
            store.data_mut().memory = instance.get_memory(&mut store, "memory");
            if let Some(init) = instance.get_func(&mut store, "_initialize") {
                init.typed::<(), ()>(&store)?
                    .call_async(&mut store, ())
                    .await?;
            }
            Ok(instance)
        }
        .await;
        Guest::made(store, made, rewind)
    }

    fn made(
        mut store: Store<StoreData>,
        made: wasmtime::Result<Instance>,
        rewind: Option<&Arc<Plan>>,
    ) -> Result<Guest, TaskError> {
        match made {
            Ok(instance) => {
                // The plan found that instantiation calls no import, so no
                // WASI context or task I/O area can exist yet; a rewind
                // drops them, so check rather than assume.
                let pristine = store.data().wasi.is_none() && store.data().task_io.is_none();
                let snapshot = rewind
                    .filter(|_| pristine)
                    .and_then(|plan| Snapshot::take(plan, &mut store, &instance));
                Ok(Guest {
                    store,
                    instance,
                    resolved: Vec::new(),
                    poisoned: false,
                    tasks_run: 0,
                    raw: SmallVec::new(),
                    snapshot,
                    leaves_memory: Vec::new(),
                    memory_touched: false,
                    text_in: Vec::new(),
                })
            }
            Err(e) => Err(classify(e, store.data_mut())),
        }
    }

    /// Puts this guest back as it was before its first task, as good as a
    /// fresh instance (`rewind.rs`); `false` if it cannot be (no snapshot,
    /// a trap, a memory that grew, ...): it must then be dropped.
    pub(crate) fn rewind(&mut self) -> bool {
        let Some(snapshot) = &mut self.snapshot else {
            return false;
        };
        if self.poisoned || !snapshot.rewind(&mut self.store, self.memory_touched) {
            return false;
        }
        self.memory_touched = false;
        let data = self.store.data_mut();
        // A new WASI context (fresh descriptors, clocks, random) on the
        // next WASI call, as a new instance would make.
        data.wasi = None;
        // The guest registers its area again: its memory no longer says
        // it did.
        data.task_io = None;
        self.tasks_run = 0;
        true
    }

    /// Resolves `task`'s export in this instance, once; the result is in
    /// `self.resolved[task.id]`.
    fn resolve(&mut self, task: &TaskSpec) -> Result<(), TaskError> {
        if let Some(Some(_)) = self.resolved.get(task.id) {
            return Ok(());
        }
        let host = |message: String| TaskError::new(TaskErrorKind::Host, message);
        let func = match &task.export_index.0 {
            Some(index) => self
                .instance
                .get_module_export(&mut self.store, index)
                .and_then(wasmtime::Extern::into_func),
            None => self.instance.get_func(&mut self.store, &task.export),
        }
        .ok_or_else(|| host(format!("export {} vanished", task.export)))?;
        let r = match &task.kind {
            TaskKind::Abi => Resolved::Abi(
                func.typed(&self.store)
                    .map_err(|e| host(format!("export {}: {e:#}", task.export)))?,
            ),
            TaskKind::Numeric { params, results } => {
                // The check `call_unchecked` relies on, made against this
                // instance's own export.
                let ty = func.ty(&self.store);
                let fits = |actual: &mut dyn ExactSizeIterator<Item = wasmtime::ValType>,
                            expected: &[WasmType]| {
                    actual.len() == expected.len()
                        && actual
                            .zip(expected)
                            .all(|(a, &e)| WasmType::from_val_type(&a) == Some(e))
                };
                if !fits(&mut ty.params(), params) || !fits(&mut ty.results(), results) {
                    return Err(host(format!(
                        "export {} has type {ty}, not {} as the task says",
                        task.export,
                        task.kind.describe()
                    )));
                }
                Resolved::Numeric(func)
            }
        };
        if self.resolved.len() <= task.id {
            self.resolved.resize(task.id + 1, None);
            self.leaves_memory.resize(task.id + 1, false);
        }
        // An ABI task's input is written into memory by the host: never.
        self.leaves_memory[task.id] = matches!(r, Resolved::Numeric(_))
            && self
                .snapshot
                .as_ref()
                .is_some_and(|s| s.leaves_memory(&task.export));
        self.resolved[task.id] = Some(r);
        Ok(())
    }

    /// Makes `cancel` the second interruption flag of the tasks to come.
    pub(crate) fn set_cancel(&mut self, cancel: &Arc<AtomicBool>) {
        let data = self.store.data_mut();
        if !data.cancel.as_ref().is_some_and(|c| Arc::ptr_eq(c, cancel)) {
            data.cancel = Some(cancel.clone());
        }
    }

    /// Runs one task to completion, ending it by `deadline`. On a trap,
    /// marks the guest poisoned. The synchronous face of a task's call.
    pub(crate) fn run(
        &mut self,
        task: &TaskSpec,
        payload: Payload,
        deadline: Option<Instant>,
    ) -> Result<Output, TaskError> {
        self.prepare(task, payload, deadline)?;
        // `prepare` resolved the export, whose kind is the task's, and
        // checked the payload against it.
        let called = match &self.resolved[task.id] {
            Some(Resolved::Abi(f)) => {
                let status = f.call(&mut self.store, ());
                self.abi_outcome(status)
            }
            Some(Resolved::Numeric(f)) => {
                let raw = &mut self.raw;
                let TaskKind::Numeric { results, .. } = &task.kind else {
                    unreachable!("a numeric export resolves to Resolved::Numeric")
                };
                // SAFETY: `f` is this instance's export named by `task`, and
                // `resolve` (called by `prepare`) checked its type against
                // the task's `params` and `results` in this instance (not
                // only in the module the task was looked up in): its
                // parameters and results are exactly those, all numbers (no
                // references to keep alive). `prepare` checked that `raw`
                // holds one value of the right type per parameter and made
                // room for every result. The call is not made from inside
                // another call on this store.
                let call = unsafe {
                    f.call_unchecked(&mut self.store, std::ptr::from_mut(raw.as_mut_slice()))
                };
                call.map(|()| Ok(numeric_output(results, raw)))
            }
            None => unreachable!("prepare resolved the export"),
        };
        self.finish(called)
    }

    /// [`run`](Self::run) for a text input of a batch of texts
    /// (`packed::Texts`): on success the output is appended to `out` and
    /// its length returned; nothing is appended on an error.
    pub(crate) fn run_text(
        &mut self,
        task: &TaskSpec,
        input: &[u8],
        out: &mut Vec<u8>,
        deadline: Option<Instant>,
    ) -> Result<usize, TaskError> {
        let mut buffer = std::mem::take(&mut self.text_in);
        buffer.clear();
        buffer.extend_from_slice(input);
        match self.run(task, Payload::Bytes(buffer), deadline)? {
            Output::Bytes(mut output) => {
                out.extend_from_slice(&output);
                let n = output.len();
                output.clear();
                self.text_in = output;
                Ok(n)
            }
            Output::Values(_) => Err(TaskError::new(
                TaskErrorKind::Host,
                "a text input ran as a numeric task (a bug in wasmpool)",
            )),
        }
    }

    /// [`run`](Self::run) for a numeric task's packed input
    /// (`packed.rs`): `args` holds the bits of one argument per parameter;
    /// the bits of each result are appended to `out`, nothing on an error.
    pub(crate) fn run_packed(
        &mut self,
        task: &TaskSpec,
        args: &[u64],
        out: &mut Vec<u64>,
        deadline: Option<Instant>,
    ) -> Result<(), TaskError> {
        self.resolve(task)?;
        let TaskKind::Numeric { params, results } = &task.kind else {
            unreachable!("only numeric tasks are packed")
        };
        if args.len() != params.len() {
            return Err(TaskError::new(
                TaskErrorKind::Host,
                format!(
                    "{} packed arguments for {}",
                    args.len(),
                    task.kind.describe()
                ),
            ));
        }
        self.raw.clear();
        self.raw.extend(
            params
                .iter()
                .zip(args)
                .map(|(&t, &b)| crate::packed::raw_from_bits(t, b)),
        );
        self.raw
            .resize(params.len().max(results.len()), ValRaw::i32(0));
        start_task(&mut self.store, deadline);
        self.count_task(task);
        let Some(Resolved::Numeric(f)) = &self.resolved[task.id] else {
            unreachable!("a numeric export resolves to Resolved::Numeric")
        };
        let raw = &mut self.raw;
        // SAFETY: as in `run`: `f` is this instance's export named by
        // `task`, and `resolve` checked its type against the task's
        // `params` and `results` in this instance: all numbers, no
        // references. `raw` holds one value per parameter, each made for
        // that parameter's type (any bits are a valid value of a number
        // type), and has room for every result. The call is not made from
        // inside another call on this store.
        let call =
            unsafe { f.call_unchecked(&mut self.store, std::ptr::from_mut(raw.as_mut_slice())) };
        let called = call.map(|()| {
            out.extend(
                results
                    .iter()
                    .zip(raw.iter())
                    .map(|(&t, r)| crate::packed::bits_from_raw(t, r)),
            );
            Ok(Output::Values(Values::default()))
        });
        self.finish(called).map(drop)
    }

    /// [`run`](Self::run)'s async face: the same preparation and outcome,
    /// with the call suspended while the guest waits (and at its epoch
    /// yields). Dropping the future cancels the call; the guest is then
    /// poisoned.
    pub(crate) async fn run_async(
        &mut self,
        task: &TaskSpec,
        payload: Payload,
        deadline: Option<Instant>,
    ) -> Result<Output, TaskError> {
        self.prepare(task, payload, deadline)?;
        // Poisoned unless the call comes back: a dropped future leaves the
        // instance mid-call.
        self.poisoned = true;
        let called = match &self.resolved[task.id] {
            Some(Resolved::Abi(f)) => {
                let f = f.clone();
                let status = f.call_async(&mut self.store, ()).await;
                self.abi_outcome(status)
            }
            Some(Resolved::Numeric(f)) => {
                let raw = &self.raw;
                let f = *f;
                let TaskKind::Numeric { params, results } = &task.kind else {
                    unreachable!("a numeric export resolves to Resolved::Numeric")
                };
                let args: SmallVec<[Val; 8]> = params
                    .iter()
                    .zip(raw)
                    .map(|(&t, r)| WasmValue::from_raw(t, r).to_val())
                    .collect();
                let mut out: SmallVec<[Val; 8]> = results.iter().map(|_| Val::I32(0)).collect();
                f.call_async(&mut self.store, &args, &mut out)
                    .await
                    .map(|()| {
                        Ok(Output::Values(
                            out.iter().filter_map(WasmValue::from_val).collect(),
                        ))
                    })
            }
            None => unreachable!("prepare resolved the export"),
        };
        self.poisoned = false;
        self.finish(called)
    }

    /// Everything before a task's call: resolves its export, checks the
    /// payload against it, resets the per-task state and arms the limits.
    #[inline]
    fn prepare(
        &mut self,
        task: &TaskSpec,
        payload: Payload,
        deadline: Option<Instant>,
    ) -> Result<(), TaskError> {
        self.resolve(task)?;
        match (&task.kind, payload) {
            (TaskKind::Abi, Payload::Bytes(input)) => {
                if i32::try_from(input.len()).is_err() {
                    return Err(TaskError::new(
                        TaskErrorKind::Input,
                        "the input is larger than 2 GiB",
                    ));
                }
                start_task(&mut self.store, deadline);
                self.store.data_mut().input = input;
                crate::abi::task_io::before_call(&mut self.store);
            }
            (TaskKind::Numeric { params, results }, Payload::Values(args)) => {
                if args.len() != params.len()
                    || !args.iter().zip(params).all(|(a, &t)| a.has_type(t))
                {
                    return Err(TaskError::new(
                        TaskErrorKind::Input,
                        format!("arguments {args:?} do not fit {}", task.kind.describe()),
                    ));
                }
                self.raw.clear();
                self.raw.extend(args.iter().map(|a| a.to_raw()));
                self.raw
                    .resize(params.len().max(results.len()), ValRaw::i32(0));
                start_task(&mut self.store, deadline);
            }
            (_, payload) => {
                return Err(TaskError::new(
                    TaskErrorKind::Host,
                    format!(
                        "payload {payload:?} does not fit task {} ({})",
                        task.name,
                        task.kind.describe()
                    ),
                ));
            }
        }
        self.count_task(task);
        Ok(())
    }

    /// Counts a task about to run (resolved), and notes whether it may
    /// write memory, for the next rewind: the one place both ways of
    /// running a task do it.
    fn count_task(&mut self, task: &TaskSpec) {
        self.tasks_run += 1;
        self.memory_touched |= !self.leaves_memory[task.id];
        self.entering();
    }

    /// Tells the snapshot which thread is about to run wasm in this
    /// instance (`Snapshot::entered`); every call into the guest after
    /// instantiation passes here.
    #[inline]
    fn entering(&mut self) {
        if let Some(snapshot) = &mut self.snapshot {
            snapshot.entered();
        }
    }

    /// An ABI task's status and output. The input buffer was allocated on
    /// the caller's thread: it becomes the next task's output buffer and
    /// goes back there with that result, instead of being freed here.
    /// Buffers then stay with the thread that allocated them, which spares
    /// the allocator's cross-thread locks (a third of the time of tiny SDK
    /// tasks, measured).
    #[inline]
    fn abi_outcome(
        &mut self,
        status: wasmtime::Result<i32>,
    ) -> wasmtime::Result<Result<Output, TaskError>> {
        let status = status.and_then(|status| {
            crate::abi::task_io::after_call(&mut self.store)?;
            Ok(status)
        });
        let data = self.store.data_mut();
        let output = std::mem::take(&mut data.output);
        let mut spare = std::mem::take(&mut data.input);
        spare.clear();
        data.output = spare;
        status.map(|status| abi_outcome(status, output))
    }

    /// Everything after a task's call: its error classified once, and the
    /// guest poisoned after a trap.
    #[inline]
    fn finish(
        &mut self,
        called: wasmtime::Result<Result<Output, TaskError>>,
    ) -> Result<Output, TaskError> {
        self.store.data_mut().task_deadline = None;
        match called {
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

    /// Runs a process's entry point, an export of type `() -> ()`.
    pub(crate) fn run_entry(
        &mut self,
        entry: &str,
        deadline: Option<Instant>,
    ) -> Result<(), TaskError> {
        start_task(&mut self.store, deadline);
        self.entering();
        let call = |store: &mut Store<StoreData>, instance: Instance| -> wasmtime::Result<()> {
            instance
                .get_typed_func::<(), ()>(&mut *store, entry)?
                .call(&mut *store, ())
        };
        let result = call(&mut self.store, self.instance);
        entry_outcome(self, result)
    }

    /// [`run_entry`](Self::run_entry)'s async face.
    pub(crate) async fn run_entry_async(
        &mut self,
        entry: &str,
        deadline: Option<Instant>,
    ) -> Result<(), TaskError> {
        start_task(&mut self.store, deadline);
        self.entering();
        self.poisoned = true;
        let result = async {
            self.instance
                .get_typed_func::<(), ()>(&mut self.store, entry)?
                .call_async(&mut self.store, ())
                .await
        }
        .await;
        entry_outcome(self, result)
    }
}

/// A store for a new guest, under the interruption policy of `mode` and
/// the limits of a task that must end by `deadline`.
fn new_store(
    pre: &InstancePre<StoreData>,
    parts: GuestParts,
    deadline: Option<Instant>,
    mode: Mode,
) -> Store<StoreData> {
    let mut store = Store::new(pre.module().engine(), StoreData::new(parts));
    limits::install(&mut store, mode);
    start_task(&mut store, deadline);
    store
}

/// A numeric task's results, read back from the raw values.
fn numeric_output(results: &[WasmType], raw: &[ValRaw]) -> Output {
    Output::Values(
        results
            .iter()
            .zip(raw)
            .map(|(&t, r)| WasmValue::from_raw(t, r))
            .collect(),
    )
}

/// An entry point's outcome: a guest that ran an entry cannot run again.
fn entry_outcome(guest: &mut Guest, result: wasmtime::Result<()>) -> Result<(), TaskError> {
    guest.poisoned = true;
    result.map_err(|e| classify(e, guest.store.data_mut()))
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

/// Resets the per-task state of a store and arms its limits: fuel and the
/// deadline the interruption policy checks.
fn start_task(store: &mut Store<StoreData>, deadline: Option<Instant>) {
    if let Some(fuel) = store.data().limits.fuel {
        // Fuel is only on when the engine consumes it (see EngineOptions).
        let _ = store.set_fuel(fuel);
    }
    let data = store.data_mut();
    data.trap_message = None;
    data.message = None;
    data.reply = None;
    data.input.clear();
    data.output.clear();
    data.limiter.refused = None;
    data.task_deadline = deadline;
}

/// The most of a backtrace a task error keeps: function names come from the
/// guest's name section, and a guest can make them as long as it likes.
const MAX_BACKTRACE: usize = 16 << 10;

/// `text`, cut to at most `max` bytes (on a character boundary) with a note
/// of how much was left out.
fn bounded(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut cut = max;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        let left = text.len() - cut;
        text.truncate(cut);
        text.push_str(&format!("\n... ({left} more bytes)"));
    }
    text
}

/// Turns the error of a failed call into the task's error: once, here.
pub(crate) fn classify(e: wasmtime::Error, data: &mut StoreData) -> TaskError {
    let backtrace = e
        .downcast_ref::<WasmBacktrace>()
        .map(|bt| bounded(bt.to_string(), MAX_BACKTRACE));
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
    if let Some(panic) = e.downcast_ref::<HostFnPanic>() {
        return TaskError::new(
            TaskErrorKind::Host,
            bounded(panic.to_string(), MAX_BACKTRACE),
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
    let message = bounded(message, MAX_BACKTRACE);
    TaskError::new(TaskErrorKind::Trap, message).with_backtrace(backtrace)
}
