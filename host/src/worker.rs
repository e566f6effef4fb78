//! The worker model: one thread per worker, each owning one [`Guest`]
//! (a `Store` and its instance), pulling [`Batch`]es from the pool's job
//! channel and sending each batch's results back on the batch's own reply
//! channel.
//!
//! Invariants:
//! - a worker runs one task at a time, so a guest's memory is only ever
//!   touched by its own thread;
//! - a poisoned guest (after a trap) or one whose host code panicked is
//!   dropped before the next task, and a fresh one is built on demand;
//! - every batch taken gets exactly one reply, [`Done`], unless its stream
//!   was dropped: `Running`'s `Drop` answers for a worker that panicked, and
//!   the watchdog answers for one it abandoned. A reply may hand back the
//!   inputs it did not run (`Done::rest`), which the stream sends again.
//!
//! With a time limit, the batch in progress sits behind a mutex shared with
//! the watchdog (`watchdog.rs`): when a task overruns its deadline in a wait
//! nothing can interrupt, the watchdog answers the batch (the stuck task as
//! `timeout`, the rest handed back), marks the worker abandoned and starts a
//! fresh one in its place; the stuck thread exits if its wait ever ends.
//! Without a time limit the batch stays on the worker's stack: no lock on
//! the fast path.
//!
//! Why threads and not rayon: each worker holds long-lived state (its store)
//! that must stay on one thread, and tasks arrive as a stream from a caller
//! that wants bounded memory; a fixed set of threads pulling from a channel
//! fits that better than work stealing. rayon still compiles modules (inside
//! wasmtime) and spreads the native baselines of the benchmarks.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

mod concurrent;

use crate::error::{TaskError, TaskErrorKind};
use crate::packed::{Items, ItemsIter, Next, Results};
use crate::runtime::Runtime;
use crate::sandbox::{Guest, WorkerId};
use crate::task::{Output, Payload, TaskSpec};
use crate::watchdog::{Registry, Watch};

/// A run of consecutive inputs of one stream, sent to one worker.
pub(crate) struct Batch {
    pub(crate) task: Arc<TaskSpec>,
    pub(crate) first_index: u64,
    /// Packed for a numeric task (`packed.rs`).
    pub(crate) items: Items,
    pub(crate) reply: Sender<Done>,
    pub(crate) stream: Arc<StreamState>,
}

/// What a stream shares with the workers running its batches.
#[derive(Debug)]
pub(crate) struct StreamState {
    /// Set when the stream is cancelled or dropped: its tasks not started end
    /// as `terminated`, and its running task is interrupted (the flag is
    /// the guest's second interruption flag, see `limits.rs`).
    pub(crate) cancelled: Arc<AtomicBool>,
    /// Output bytes finished and not yet handed to the caller (in batches
    /// being run, on their way back, or in the reorder window).
    pub(crate) bytes: AtomicUsize,
    /// Past this many `bytes`, batches are cut short and no new ones are
    /// sent.
    pub(crate) budget: usize,
}

/// The results of one batch, in the batch's order.
pub(crate) struct Done {
    pub(crate) first_index: u64,
    /// Packed for a numeric task (`packed.rs`).
    pub(crate) results: Results,
    /// The inputs after `results` that were not run: the batch was cut short
    /// (its outputs passed the stream's byte budget, or its worker was
    /// abandoned). The stream sends them again.
    pub(crate) rest: Vec<Result<Payload, TaskError>>,
    /// Time spent running the batch's tasks.
    pub(crate) busy: Duration,
    /// The output bytes of `results`, counted in the stream's `bytes`.
    pub(crate) bytes: usize,
}

/// How many output bytes a worker counts on its own before it adds them to
/// its stream's total (which other workers read).
const FLUSH_BYTES: usize = 64 << 10;

/// The bytes a result holds while it waits to be handed out: its output,
/// or its error's message and backtrace (a guest's own error message can
/// be as long as an output).
fn result_size(result: &Result<Output, TaskError>) -> usize {
    match result {
        Ok(Output::Bytes(b)) => b.len(),
        Ok(Output::Values(_)) => 0,
        Err(e) => e.message().len() + e.backtrace().map_or(0, str::len),
    }
}

/// What every worker of a pool shares.
pub(crate) struct Shared {
    pub(crate) runtime: Runtime,
    pub(crate) workers: u32,
    /// Replace an instance after this many tasks (1: a fresh one per task).
    pub(crate) recycle_after: Option<u64>,
    /// Set when the pool is dropped: every guest stops.
    pub(crate) stop: Arc<AtomicBool>,
    pub(crate) jobs: Receiver<Batch>,
    /// Every worker thread started, replacements included.
    pub(crate) threads: Mutex<Vec<JoinHandle<()>>>,
    /// The threads the watchdog abandoned: not worth waiting for.
    pub(crate) abandoned: Mutex<Vec<std::thread::ThreadId>>,
    pub(crate) counters: Vec<Arc<Counters>>,
    /// Tasks in flight at once on each worker: `Some` in the async mode
    /// (`worker/concurrent.rs`).
    pub(crate) concurrency: Option<u32>,
    /// Notified when a batch is sent or the job channel closes: how an
    /// async worker that is running tasks learns of new work.
    pub(crate) arrivals: Arc<tokio::sync::Notify>,
}

/// Counters one worker keeps, read by [`Pool::worker_stats`](crate::Pool::worker_stats).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) tasks: AtomicU64,
    pub(crate) failures: AtomicU64,
    pub(crate) busy_nanos: AtomicU64,
    pub(crate) instances: AtomicU64,
    pub(crate) rewound: AtomicU64,
}

/// What one worker has done so far.
///
/// ```no_run
/// # let pool = wasmpool::Pool::builder().module_file("square.wasm").build().unwrap();
/// for w in pool.worker_stats() {
///     println!("worker {}: {} tasks in {:?}", w.index, w.tasks, w.busy);
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct WorkerStats {
    /// The worker's index (what `worker_index()` returns in its guest).
    pub index: u32,
    /// Tasks run, successful or not.
    pub tasks: u64,
    /// Tasks that ended with an error.
    pub failures: u64,
    /// Time spent running tasks.
    pub busy: Duration,
    /// Instances created (1, plus one for each replacement after a trap or
    /// an abandoned task, and after recycling when not rewound).
    pub instances: u64,
    /// Times an instance was rewound to its state before its first task
    /// instead of being replaced, with [`Isolation::Task`](crate::Isolation::Task)
    /// or [`recycle_after`](crate::PoolBuilder::recycle_after): the next
    /// task sees it as a new instance (docs/architecture.md, "Rewinding").
    pub rewound: u64,
}

impl Counters {
    pub(crate) fn snapshot(&self, index: u32) -> WorkerStats {
        WorkerStats {
            index,
            tasks: self.tasks.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            busy: Duration::from_nanos(self.busy_nanos.load(Ordering::Relaxed)),
            instances: self.instances.load(Ordering::Relaxed),
            rewound: self.rewound.load(Ordering::Relaxed),
        }
    }
}

/// A batch being run. Dropping it without [`finish`](Self::finish) (a
/// panic in the worker) answers the batch anyway, its unrun inputs as
/// `host` errors.
struct Running {
    task: Arc<TaskSpec>,
    first_index: u64,
    items: ItemsIter,
    results: Results,
    reply: Sender<Done>,
    stream: Arc<StreamState>,
    counters: Arc<Counters>,
    start: Instant,
    failures: u64,
    bytes: usize,
    /// Bytes not yet added to `stream.bytes`.
    unreported: usize,
    /// An input was taken by `next` and its result not yet pushed.
    in_flight: bool,
    answered: bool,
}

impl Running {
    fn new(batch: Batch, counters: Arc<Counters>) -> Self {
        Running {
            results: Results::for_items(&batch.task, &batch.items),
            task: batch.task,
            first_index: batch.first_index,
            items: batch.items.into_iter(),
            reply: batch.reply,
            stream: batch.stream,
            counters,
            start: Instant::now(),
            failures: 0,
            bytes: 0,
            unreported: 0,
            in_flight: false,
            answered: false,
        }
    }

    /// The next input to run; `None` when the batch is over: every input
    /// ran, or the stream's outputs passed its byte budget (the batch is
    /// then cut short; at least one input always runs).
    fn next(&mut self) -> Option<Result<Payload, TaskError>> {
        if !self.goes_on() {
            return None;
        }
        let item = self.items.next();
        self.in_flight = item.is_some();
        item
    }

    /// [`next`](Self::next), a packed input as its bits (`packed.rs`).
    #[inline]
    fn next_raw(&mut self) -> Option<Next> {
        if !self.goes_on() {
            return None;
        }
        let next = self.items.next_raw();
        self.in_flight = next.is_some();
        next
    }

    /// Whether the batch goes on: not when its stream was cancelled (its
    /// inputs not run are then answered as `terminated`) or its outputs
    /// passed the byte budget.
    #[inline]
    fn goes_on(&mut self) -> bool {
        if self.stream.cancelled.load(Ordering::Relaxed) {
            while self.items.next().is_some() {
                self.push(Err(TaskError::new(
                    TaskErrorKind::Terminated,
                    "the stream was cancelled before this task started",
                )));
            }
            return false;
        }
        if self.unreported >= FLUSH_BYTES {
            let total = self
                .stream
                .bytes
                .fetch_add(self.unreported, Ordering::Relaxed);
            self.unreported = 0;
            if total > self.stream.budget && !self.results.is_empty() {
                return false;
            }
        }
        true
    }

    fn push(&mut self, result: Result<Output, TaskError>) {
        self.count_bytes(result_size(&result));
        self.push_counted(result);
    }

    /// Counts `size` bytes of output against the stream's budget (added to
    /// its total at the next flush).
    #[inline]
    fn count_bytes(&mut self, size: usize) {
        self.bytes += size;
        self.unreported += size;
    }

    /// [`push`](Self::push) for a text output that
    /// [`Guest::run_text`](crate::sandbox::Guest::run_text) appended to the
    /// results' texts: `size` bytes.
    #[inline]
    fn push_text(&mut self, size: usize) {
        self.count_bytes(size);
        self.in_flight = false;
        self.results.count_text();
    }

    /// Pushes a result whose bytes were already counted (in `bytes` and in
    /// the stream's total): the async worker counts each result as it
    /// finishes, before the earlier ones it waits behind.
    fn push_counted(&mut self, result: Result<Output, TaskError>) {
        self.in_flight = false;
        if result.is_err() {
            self.failures += 1;
        }
        self.results.push(result);
    }

    /// Answers the batch: its results, and the inputs it did not run.
    fn finish(mut self) {
        self.answer();
    }

    fn answer(&mut self) {
        self.answered = true;
        self.stream
            .bytes
            .fetch_add(self.unreported, Ordering::Relaxed);
        let busy = self.start.elapsed();
        let c = &self.counters;
        c.tasks
            .fetch_add(self.results.len() as u64, Ordering::Relaxed);
        c.failures.fetch_add(self.failures, Ordering::Relaxed);
        c.busy_nanos
            .fetch_add(busy.as_nanos() as u64, Ordering::Relaxed);
        // The receiver is gone when its stream was dropped: nothing to do.
        let _ = self.reply.send(Done {
            first_index: self.first_index,
            results: std::mem::take(&mut self.results),
            rest: self.items.by_ref().collect(),
            busy,
            bytes: self.bytes,
        });
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if !self.answered {
            let lost = || {
                Err(TaskError::new(
                    TaskErrorKind::Host,
                    "the worker running this task failed (a bug in wasmpool)",
                ))
            };
            if self.in_flight {
                self.push(lost());
            }
            while self.items.next().is_some() {
                self.push(lost());
            }
            self.answer();
        }
    }
}

/// The batch a watched worker is running, shared with the watchdog.
#[derive(Default)]
struct Progress {
    /// The worker's thread, once it runs.
    thread: Option<std::thread::ThreadId>,
    batch: Option<Running>,
    /// The watch token of the call in flight; 0 between calls.
    call: u64,
    /// Set by the watchdog: the batch was answered and this worker replaced.
    abandoned: bool,
}

/// A worker's side of the watchdog, when tasks have a time limit.
struct Watched {
    watch: Arc<Watch>,
    progress: Arc<Mutex<Progress>>,
}

fn lock(progress: &Mutex<Progress>) -> MutexGuard<'_, Progress> {
    // Every update of Progress is a single assignment or push.
    progress.lock().unwrap_or_else(|e| e.into_inner())
}

/// Starts worker `index`. With `ready`, it first makes its instance and
/// reports how that went; otherwise it makes one before its first task.
pub(crate) fn spawn(
    shared: &Arc<Shared>,
    index: u32,
    registry: Option<&Registry>,
    ready: Option<Sender<Result<(), TaskError>>>,
) -> std::io::Result<()> {
    if let Some(concurrency) = shared.concurrency {
        return spawn_async(shared, index, concurrency, registry, ready);
    }
    let watched = registry.map(|registry| {
        let progress: Arc<Mutex<Progress>> = Arc::default();
        let watch = registry.watch({
            let (shared, progress) = (shared.clone(), progress.clone());
            move |token, registry| abandon(&shared, index, &progress, token, registry)
        });
        Watched { watch, progress }
    });
    let mut worker = Worker {
        index,
        guest: None,
        cancel: None,
        shared: shared.clone(),
        counters: shared.counters[index as usize].clone(),
        watched,
    };
    let handle = std::thread::Builder::new()
        .name(format!("wasmpool-worker-{index}"))
        .stack_size(shared.runtime.limits.thread_stack())
        .spawn(move || {
            tracing::debug!("worker {index}: started");
            if let Some(w) = &worker.watched {
                lock(&w.progress).thread = Some(std::thread::current().id());
            }
            if let Some(ready) = ready {
                let made = worker.make_guest(shared_deadline(&worker.shared));
                let ok = made.is_ok();
                if ok {
                    worker.counters.instances.fetch_add(1, Ordering::Relaxed);
                }
                let _ = ready.send(made);
                if !ok {
                    return;
                }
            }
            worker.run();
        })?;
    keep(shared, handle);
    Ok(())
}

/// Records a worker thread, so that dropping the pool can join it.
fn keep(shared: &Shared, handle: JoinHandle<()>) {
    shared
        .threads
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(handle);
}

/// Starts worker `index` of the async mode: a thread with its own
/// current-thread runtime (`worker/concurrent.rs`).
fn spawn_async(
    shared: &Arc<Shared>,
    index: u32,
    concurrency: u32,
    registry: Option<&Registry>,
    ready: Option<Sender<Result<(), TaskError>>>,
) -> std::io::Result<()> {
    // Only a wasm atomic wait on the shared region can block an async
    // worker's thread; only a time limit says when to rescue it.
    let watch = match (registry, shared.runtime.shared_region()) {
        (Some(registry), Some(region)) if shared.runtime.limits.timeout.is_some() => {
            let polls = Arc::new(AtomicU64::new(0));
            let watch = registry.watch(concurrent::PollWatch::on_overdue(
                region.clone(),
                polls.clone(),
                shared.stop.clone(),
            ));
            Some(concurrent::PollWatch { watch, polls })
        }
        _ => None,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()?;
    let mut worker = concurrent::AsyncWorker {
        index,
        concurrency: concurrency as usize,
        shared: shared.clone(),
        counters: shared.counters[index as usize].clone(),
        idle: Vec::new(),
        watch,
        deadlines: std::collections::BTreeMap::new(),
    };
    let handle = std::thread::Builder::new()
        .name(format!("wasmpool-worker-{index}"))
        .stack_size(shared.runtime.limits.thread_stack())
        .spawn(move || {
            tracing::debug!("worker {index}: started (async, up to {concurrency} tasks at once)");
            reserve_heap(concurrency as usize * HEAP_PER_TASK);
            runtime.block_on(async move {
                if let Some(ready) = ready {
                    let made = worker.prepare().await;
                    let ok = made.is_ok();
                    let _ = ready.send(made);
                    if !ok {
                        return;
                    }
                }
                worker.run().await;
            });
        })?;
    keep(shared, handle);
    Ok(())
}

/// About what each task in flight of the async mode holds on the host's
/// heap (its store, instance and future; measured at 11-15 KiB).
const HEAP_PER_TASK: usize = 16 << 10;

/// Grows this thread's malloc heap to `bytes` once, and gives it back.
///
/// glibc grows a thread's heap (a non-main arena) one `mprotect` at a
/// time, page by page, as it fills, and never needs to again for space it
/// made accessible once. An async worker makes thousands of instances in a
/// burst, and with thousands of mappings in the process each of those
/// `mprotect`s (taking the address-space lock) cost as much as the
/// instantiation itself: most of the time of the first 10,000 tasks. So the
/// worker asks for its heap in one go before its first task; freeing it
/// returns the memory (glibc trims it), not the accessible range. With
/// another allocator this is one short burst of allocations and no more.
fn reserve_heap(bytes: usize) {
    const BLOCK: usize = 64 << 10; // under glibc's mmap threshold
    let blocks: Vec<Vec<u8>> = (0..bytes.div_ceil(BLOCK).min(4096))
        .map(|_| Vec::with_capacity(BLOCK))
        .collect();
    drop(std::hint::black_box(blocks));
}

/// The error of a task whose fresh instance could not be made.
fn fresh_instance_error(e: TaskError) -> TaskError {
    TaskError::new(
        if e.kind() == TaskErrorKind::Timeout {
            TaskErrorKind::Timeout
        } else {
            TaskErrorKind::Instantiate
        },
        format!("cannot create a fresh instance: {e}"),
    )
}

fn shared_deadline(shared: &Shared) -> Option<Instant> {
    shared.runtime.limits.deadline()
}

/// Runs on the watchdog's thread when worker `index` overran a deadline in
/// a wait nothing interrupts: answers its batch, and starts a fresh worker.
fn abandon(
    shared: &Arc<Shared>,
    index: u32,
    progress: &Mutex<Progress>,
    token: u64,
    registry: &Registry,
) {
    let mut p = lock(progress);
    if p.call != token || p.abandoned {
        return; // the call ended in the meantime
    }
    p.abandoned = true;
    if let Some(thread) = p.thread {
        shared
            .abandoned
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(thread);
    }
    if let Some(mut running) = p.batch.take() {
        let limit = shared.runtime.limits.timeout.unwrap_or_default();
        running.push(Err(TaskError::new(
            TaskErrorKind::Timeout,
            format!(
                "the task ran past its time limit of {limit:?}, in a wait nothing could interrupt; its instance was abandoned"
            ),
        )));
        running.finish();
    }
    drop(p);
    tracing::info!("worker {index}: a task is stuck past its deadline; starting a fresh worker");
    // The one wait a pool guest can be stuck in for good is a wasm atomic
    // wait on the shared region: wake everything there, so that the stuck
    // thread returns to wasm, traps at its deadline, and gives its instance
    // (memory and slot) back.
    if let Some(region) = shared.runtime.shared_region() {
        let region = region.clone();
        let _ = std::thread::Builder::new()
            .name("wasmpool-reclaim".into())
            .spawn(move || region.wake_all());
    }
    if let Err(e) = spawn(shared, index, Some(registry), None) {
        tracing::warn!("cannot start a worker in place of worker {index}: {e}");
    }
}

struct Worker {
    index: u32,
    guest: Option<Guest>,
    /// The cancel flag of the stream whose batch runs.
    cancel: Option<Arc<AtomicBool>>,
    shared: Arc<Shared>,
    counters: Arc<Counters>,
    watched: Option<Watched>,
}

impl Worker {
    fn run(mut self) {
        let jobs = self.shared.jobs.clone();
        for batch in jobs.iter() {
            let running = Running::new(batch, self.counters.clone());
            if !self.run_batch(running) {
                return; // abandoned: another worker took this one's place
            }
        }
    }

    /// Runs a batch to its end; `false` if this worker was abandoned.
    fn run_batch(&mut self, mut running: Running) -> bool {
        self.follow_stream(&running.stream.cancelled);
        let Some(watched) = &self.watched else {
            while let Some(next) = running.next_raw() {
                match next {
                    Next::Item(item) => {
                        let result =
                            item.and_then(|payload| self.run_one(&running.task, payload, None));
                        running.push(result);
                    }
                    // Texts in, texts out: no `Vec` per task.
                    Next::Text(at) => {
                        let task = &running.task;
                        let input = running.items.text(at);
                        let ran = match running.results.texts_out() {
                            Some(out) => {
                                self.run_guest(None, |guest| guest.run_text(task, input, out, None))
                            }
                            None => Err(TaskError::new(
                                TaskErrorKind::Host,
                                "text inputs without text results (a bug in wasmpool)",
                            )),
                        };
                        match ran {
                            Ok(size) => running.push_text(size),
                            Err(e) => running.push(Err(e)),
                        }
                    }
                    // Packed in, packed out: no `Payload` or `Output`.
                    Next::Bits(args) => {
                        let task = &running.task;
                        let ran = match running.results.packed_bits() {
                            Some(out) => self
                                .run_guest(None, |guest| guest.run_packed(task, &args, out, None)),
                            None => Err(TaskError::new(
                                TaskErrorKind::Host,
                                "packed inputs without packed results (a bug in wasmpool)",
                            )),
                        };
                        match ran {
                            Ok(()) => {
                                running.in_flight = false;
                                running.results.count_packed();
                            }
                            Err(e) => running.push(Err(e)),
                        }
                    }
                }
            }
            running.finish();
            return true;
        };
        let (watch, progress) = (watched.watch.clone(), watched.progress.clone());
        lock(&progress).batch = Some(running);
        loop {
            let (task, payload, deadline) = {
                let mut p = lock(&progress);
                let running = p
                    .batch
                    .as_mut()
                    .expect("only the watchdog takes it, and then sets abandoned");
                let Some(item) = running.next() else {
                    p.batch.take().expect("checked above").finish();
                    return true;
                };
                let payload = match item {
                    Ok(payload) => payload,
                    Err(e) => {
                        running.push(Err(e));
                        continue;
                    }
                };
                let task = running.task.clone();
                let deadline = shared_deadline(&self.shared);
                if let Some(d) = deadline {
                    p.call = watch.arm(d);
                }
                (task, payload, deadline)
            };
            let result = self.run_one(&task, payload, deadline);
            watch.disarm();
            let mut p = lock(&progress);
            if p.abandoned {
                return false;
            }
            p.call = 0;
            p.batch.as_mut().expect("not abandoned").push(result);
        }
    }

    /// Makes this worker's guest, by `deadline`; panics become errors.
    fn make_guest(&mut self, deadline: Option<Instant>) -> Result<(), TaskError> {
        let id = WorkerId {
            index: self.index,
            count: self.shared.workers,
        };
        let made = catch_unwind(AssertUnwindSafe(|| {
            self.shared
                .runtime
                .guest(id, None, self.shared.stop.clone(), deadline)
        }))
        .unwrap_or_else(|panic| Err(host_panic(panic.as_ref(), "creating an instance")));
        let mut guest = made?;
        if let Some(cancel) = &self.cancel {
            guest.set_cancel(cancel);
        }
        self.guest = Some(guest);
        Ok(())
    }

    /// Makes `cancel` (the flag of the stream whose batch starts) the guest's
    /// second interruption flag: once a batch, not once a task.
    fn follow_stream(&mut self, cancel: &Arc<AtomicBool>) {
        if !self.cancel.as_ref().is_some_and(|c| Arc::ptr_eq(c, cancel)) {
            self.cancel = Some(cancel.clone());
        }
        if let Some(guest) = &mut self.guest {
            guest.set_cancel(cancel);
        }
    }

    fn run_one(
        &mut self,
        task: &TaskSpec,
        payload: Payload,
        deadline: Option<Instant>,
    ) -> Result<Output, TaskError> {
        self.run_guest(deadline, |guest| guest.run(task, payload, deadline))
    }

    /// Runs `run` on this worker's guest (made first if there is none),
    /// and drops the guest after a failure that leaves it unusable, after
    /// a panic, or when it ran its `recycle_after` tasks.
    #[inline]
    fn run_guest<T>(
        &mut self,
        deadline: Option<Instant>,
        run: impl FnOnce(&mut Guest) -> Result<T, TaskError>,
    ) -> Result<T, TaskError> {
        if self.guest.is_none() {
            self.make_guest(deadline).map_err(fresh_instance_error)?;
            self.counters.instances.fetch_add(1, Ordering::Relaxed);
        }
        let guest = self.guest.as_mut().expect("made above");
        let result = catch_unwind(AssertUnwindSafe(|| run(guest)));
        match result {
            Ok(result) => {
                let tasks_run = guest.tasks_run;
                if !keeps_guest(guest, &self.shared, self.index) {
                    discarded(self.index, &result, tasks_run);
                    self.guest = None;
                }
                result
            }
            Err(panic) => {
                tracing::debug!(
                    "worker {}: replacing its instance: the host panicked in a task",
                    self.index
                );
                self.guest = None;
                Err(host_panic(panic.as_ref(), "running this task"))
            }
        }
    }
}

/// Whether a guest that ran a task may run the next: yes if it is
/// unharmed and has tasks left before its recycling; if it ran them all
/// (every task with `Isolation::Task`), only if it could be rewound to its
/// state before its first task (`rewind.rs`), which is as good as a new
/// instance; never after a trap. The one place both worker modes decide;
/// `index`: the worker's, whose counters count the rewinds.
pub(crate) fn keeps_guest(guest: &mut Guest, shared: &Shared, index: u32) -> bool {
    if guest.poisoned {
        return false;
    }
    if shared.recycle_after.is_none_or(|n| guest.tasks_run < n) {
        return true;
    }
    let rewound = guest.rewind();
    if rewound {
        shared.counters[index as usize]
            .rewound
            .fetch_add(1, Ordering::Relaxed);
    }
    rewound
}

/// Logs why worker `index` drops its instance after a task: the task's
/// failure left it unusable (a trap, a time limit), or it ran its
/// `recycle_after` tasks (`tasks_run`; every task with `Isolation::Task`,
/// so only at trace level).
fn discarded<T>(index: u32, result: &Result<T, TaskError>, tasks_run: u64) {
    match result {
        Err(e) => tracing::debug!(
            "worker {index}: replacing its instance: the task failed with {}",
            e.kind().as_str()
        ),
        Ok(_) => tracing::trace!("worker {index}: replacing its instance after {tasks_run} tasks"),
    }
}

/// A `host` error for a panic caught in the host's own code.
fn host_panic(panic: &(dyn std::any::Any + Send), doing: &str) -> TaskError {
    let what = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into());
    TaskError::new(
        TaskErrorKind::Host,
        format!("the host panicked {doing}: {what}"),
    )
}
