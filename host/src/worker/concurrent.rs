//! The async mode's worker (`PoolBuilder::concurrency`): one thread with a
//! current-thread tokio runtime, running up to `concurrency` tasks at once,
//! each in its own instance, with wasmtime's async API. A task that waits
//! (a WASI sleep, a queue, a host function) suspends its instance and the
//! thread runs the others; a busy one yields at every epoch tick.
//!
//! It takes batches from the same job channel as the synchronous worker and
//! answers each with the same [`Running`], so ordering, budgets, counters
//! and cancellation are shared: the only difference is that a batch's
//! tasks may run side by side, so their results are put back in order
//! ([`Open::pending`]) before they are pushed.
//!
//! Invariants:
//! - at most `concurrency` tasks in flight, and at most that many instances
//!   alive (in flight or idle) on this worker;
//! - every batch taken is answered once all the inputs it started are
//!   finished; a panic in a task's future ends that task with `host`;
//! - a task's call is dropped (its instance with it) at its deadline plus
//!   [`GRACE`] if neither an epoch check nor a wait noticed the deadline
//!   first (a host function's future that never ends, say).

use std::collections::BTreeMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use crossbeam_channel::TryRecvError;
use futures_util::FutureExt;
use futures_util::stream::{FuturesUnordered, StreamExt};

use super::{Batch, Counters, Running, Shared, fresh_instance_error, host_panic, result_size};
use crate::error::{TaskError, TaskErrorKind};
use crate::sandbox::{Guest, WorkerId};
use crate::shm::SharedRegion;
use crate::task::{Output, Payload, TaskSpec};
use crate::watchdog::{GRACE, Registry, TICK, Watch};

/// A batch being run: its answer, and the results that came back out of
/// order.
struct Open {
    running: Running,
    /// Inputs taken from the batch so far.
    taken: usize,
    /// Results finished ahead of an earlier one, by offset in the batch.
    pending: BTreeMap<usize, Result<Output, TaskError>>,
    /// Tasks of this batch in flight.
    in_flight: usize,
    /// No more inputs are taken: all were, or the batch was cut short.
    exhausted: bool,
}

impl Open {
    fn new(batch: Batch, counters: Arc<Counters>) -> Self {
        Open {
            running: Running::new(batch, counters),
            taken: 0,
            pending: BTreeMap::new(),
            in_flight: 0,
            exhausted: false,
        }
    }

    /// The next input to start, with its offset; `None` when no more
    /// should start (cancelled: the rest are `terminated`; or past the
    /// stream's byte budget: the rest go back with the answer).
    fn take(&mut self) -> Option<(usize, Result<Payload, TaskError>)> {
        if self.exhausted {
            return None;
        }
        let r = &mut self.running;
        if r.stream.cancelled.load(Ordering::Relaxed) {
            while r.items.next().is_some() {
                self.pending.insert(
                    self.taken,
                    Err(TaskError::new(
                        TaskErrorKind::Terminated,
                        "the stream was cancelled before this task started",
                    )),
                );
                self.taken += 1;
            }
            self.exhausted = true;
            self.flush();
            return None;
        }
        // Every result is counted in the stream's total as it finishes
        // (`put`), so the budget sees outputs waiting behind a slow one.
        if self.taken > 0 && r.stream.bytes.load(Ordering::Relaxed) > r.stream.budget {
            self.exhausted = true;
            return None;
        }
        match r.items.next() {
            Some(item) => {
                self.taken += 1;
                self.in_flight += 1;
                Some((self.taken - 1, item))
            }
            None => {
                self.exhausted = true;
                None
            }
        }
    }

    /// Records the result at `offset`, counting its bytes against the
    /// stream's budget at once, and pushes every result now in order.
    fn put(&mut self, offset: usize, result: Result<Output, TaskError>) {
        self.in_flight -= 1;
        let size = result_size(&result);
        self.running.bytes += size;
        self.running.stream.bytes.fetch_add(size, Ordering::Relaxed);
        self.pending.insert(offset, result);
        self.flush();
    }

    fn flush(&mut self) {
        while let Some(entry) = self.pending.first_entry() {
            if *entry.key() != self.running.results.len() {
                break;
            }
            self.running.push_counted(entry.remove());
        }
    }

    fn done(&self) -> bool {
        self.exhausted && self.in_flight == 0
    }
}

/// What a finished task hands back to the worker.
struct Finished {
    batch: u64,
    offset: usize,
    /// Its instance, unless it must not run again.
    guest: Option<Guest>,
    result: Result<Output, TaskError>,
    /// Whether the task made a fresh instance.
    made: bool,
    /// Its deadline, counted in the worker's `deadlines`.
    deadline: Option<Instant>,
}

type TaskFuture = Pin<Box<dyn Future<Output = Finished>>>;

pub(crate) struct AsyncWorker {
    pub(crate) index: u32,
    pub(crate) concurrency: usize,
    pub(crate) shared: Arc<Shared>,
    pub(crate) counters: Arc<Counters>,
    /// Instances ready for a task.
    pub(crate) idle: Vec<Guest>,
    /// With a time limit and a shared region: the watch over this
    /// thread's polls (see [`PollWatch`]).
    pub(crate) watch: Option<PollWatch>,
    /// The deadlines of the tasks in flight (a multiset: deadline -> count).
    pub(crate) deadlines: BTreeMap<Instant, usize>,
}

/// What rescues an async worker whose thread is blocked inside a poll: the
/// one wait the async mode cannot suspend is a wasm `memory.atomic.wait`
/// on the shared region, executed by the guest's own code. Each poll is
/// armed with the earliest deadline in flight; past it (and the watchdog's
/// grace), a reclaim thread wakes every waiter of the region each tick until
/// the poll returns, so the stuck guest gets back to wasm code, where its
/// epoch check ends it at its deadline (`limits.rs`).
pub(crate) struct PollWatch {
    pub(crate) watch: Arc<Watch>,
    /// Bumped after every poll: how the reclaim thread sees it returned.
    pub(crate) polls: Arc<AtomicU64>,
}

impl PollWatch {
    /// The handler the watchdog runs for an overdue poll.
    pub(crate) fn on_overdue(
        region: SharedRegion,
        polls: Arc<AtomicU64>,
        stop: Arc<AtomicBool>,
    ) -> impl Fn(u64, &Registry) + Send + Sync + 'static {
        move |_, _| {
            let (region, polls, stop) = (region.clone(), polls.clone(), stop.clone());
            let seen = polls.load(Ordering::SeqCst);
            let _ = std::thread::Builder::new()
                .name("wasmpool-reclaim".into())
                .spawn(move || {
                    while polls.load(Ordering::SeqCst) == seen {
                        region.wake_all();
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        std::thread::sleep(TICK);
                    }
                });
        }
    }
}

impl AsyncWorker {
    fn id(&self) -> WorkerId {
        WorkerId {
            index: self.index,
            count: self.shared.workers,
        }
    }

    /// Makes one instance before the first task, so that a module that
    /// cannot be instantiated fails the pool's `build`.
    pub(crate) async fn prepare(&mut self) -> Result<(), TaskError> {
        let deadline = self.shared.runtime.limits.deadline();
        let made = AssertUnwindSafe(self.shared.runtime.guest_async(
            self.id(),
            None,
            self.shared.stop.clone(),
            deadline,
        ))
        .catch_unwind()
        .await
        .unwrap_or_else(|panic| Err(host_panic(panic.as_ref(), "creating an instance")))?;
        self.counters.instances.fetch_add(1, Ordering::Relaxed);
        self.idle.push(made);
        Ok(())
    }

    /// Runs batches until the pool closes its job channel and every task in
    /// flight has finished.
    pub(crate) async fn run(mut self) {
        let jobs = self.shared.jobs.clone();
        let arrivals = self.shared.arrivals.clone();
        let mut batches = Batches::default();
        let mut tasks: FuturesUnordered<TaskFuture> = FuturesUnordered::new();
        let mut closed = false;
        loop {
            // Start tasks while there is room: open batches first, in order.
            while tasks.len() < self.concurrency {
                if let Some((id, task, cancel, offset, item)) = batches.take() {
                    tasks.push(self.start(id, task, cancel, offset, item));
                    continue;
                }
                if closed {
                    break;
                }
                match jobs.try_recv() {
                    Ok(batch) => {
                        batches.open(Open::new(batch, self.counters.clone()));
                        // Run what was started up to its first wait before
                        // taking more: a busy task then keeps this thread
                        // for a while, and the other workers take the next
                        // batches instead of this one taking them all.
                        self.drain(&mut tasks, &mut batches);
                    }
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => closed = true,
                }
            }
            let room = tasks.len() < self.concurrency && !closed;
            if tasks.is_empty() && closed {
                return;
            }
            // Listen before the last look at the channel, so that a batch
            // sent in between is not missed.
            let notified = arrivals.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if room && !jobs.is_empty() {
                continue;
            }
            if tasks.is_empty() {
                // Nothing runs: wait for a batch, or for the pool to close.
                match jobs.try_recv() {
                    Ok(batch) => batches.open(Open::new(batch, self.counters.clone())),
                    Err(TryRecvError::Disconnected) => closed = true,
                    Err(TryRecvError::Empty) => notified.await,
                }
                continue;
            }
            self.arm();
            tokio::select! {
                biased;
                Some(finished) = tasks.next() => {
                    self.disarm();
                    self.finished(&mut batches, finished);
                }
                () = &mut notified, if room => self.disarm(),
            }
            // Take every other task that finished meanwhile.
            self.drain(&mut tasks, &mut batches);
        }
    }

    /// Polls the tasks that can run now, and takes those that finished.
    fn drain(&mut self, tasks: &mut FuturesUnordered<TaskFuture>, batches: &mut Batches) {
        loop {
            self.arm();
            let next = tasks.next().now_or_never();
            self.disarm();
            match next {
                Some(Some(finished)) => self.finished(batches, finished),
                _ => return,
            }
        }
    }

    /// Arms the poll watch with the earliest deadline in flight.
    fn arm(&self) {
        if let (Some(w), Some((&d, _))) = (&self.watch, self.deadlines.first_key_value()) {
            w.watch.arm(d);
        }
    }

    fn disarm(&self) {
        if let Some(w) = &self.watch {
            w.watch.disarm();
            w.polls.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn finished(&mut self, batches: &mut Batches, f: Finished) {
        if let Some(d) = f.deadline
            && let std::collections::btree_map::Entry::Occupied(mut e) = self.deadlines.entry(d)
        {
            *e.get_mut() -= 1;
            if *e.get() == 0 {
                e.remove();
            }
        }
        if f.made {
            self.counters.instances.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(guest) = f.guest {
            self.idle.push(guest);
        }
        batches.put(f.batch, f.offset, f.result);
    }

    /// The future of one task: takes an idle instance or makes one, runs
    /// the task in it under its deadline, and hands the instance back.
    fn start(
        &mut self,
        batch: u64,
        task: Arc<TaskSpec>,
        cancel: Arc<AtomicBool>,
        offset: usize,
        item: Result<Payload, TaskError>,
    ) -> TaskFuture {
        let deadline = self.shared.runtime.limits.deadline();
        if let Some(d) = deadline {
            *self.deadlines.entry(d).or_default() += 1;
        }
        let finished = move |result, guest, made| Finished {
            batch,
            offset,
            guest,
            result,
            made,
            deadline,
        };
        let payload = match item {
            Ok(payload) => payload,
            Err(e) => return Box::pin(std::future::ready(finished(Err(e), None, false))),
        };
        let guest = self.idle.pop();
        let shared = self.shared.clone();
        let id = self.id();
        Box::pin(async move {
            let run = async {
                let (mut guest, made) = match guest {
                    Some(guest) => (guest, false),
                    None => {
                        let made = shared
                            .runtime
                            .guest_async(id, None, shared.stop.clone(), deadline)
                            .await;
                        match made {
                            Ok(guest) => (guest, true),
                            Err(e) => return (Err(fresh_instance_error(e)), None, false),
                        }
                    }
                };
                guest.set_cancel(&cancel);
                let call = guest.run_async(&task, payload, deadline);
                let limit = shared.runtime.limits.timeout.unwrap_or_default();
                let mut result = match deadline.and_then(|d| d.checked_add(GRACE)) {
                    None => call.await,
                    Some(at) => tokio::time::timeout_at(at.into(), call)
                        .await
                        .unwrap_or_else(|_| {
                            Err(TaskError::new(
                                TaskErrorKind::Timeout,
                                format!("the task ran past its time limit of {limit:?}"),
                            ))
                        }),
                };
                // Back only after the grace: the thread was blocked in a
                // wait nothing suspends, and the poll watch woke it. Its
                // result is late, and the instance was woken mid-wait.
                if deadline.is_some_and(|d| Instant::now() > d + GRACE) && result.is_ok() {
                    guest.poisoned = true;
                    result = Err(TaskError::new(
                        TaskErrorKind::Timeout,
                        format!(
                            "the task ran past its time limit of {limit:?}, in a wait nothing could \
                             interrupt; its instance was discarded"
                        ),
                    ));
                }
                let tasks_run = guest.tasks_run;
                let keep = super::keeps_guest(&mut guest, &shared, id.index);
                if !keep {
                    super::discarded(id.index, &result, tasks_run);
                }
                (result, keep.then_some(guest), made)
            };
            match AssertUnwindSafe(run).catch_unwind().await {
                Ok((result, guest, made)) => finished(result, guest, made),
                Err(panic) => finished(
                    Err(host_panic(panic.as_ref(), "running this task")),
                    None,
                    false,
                ),
            }
        })
    }
}

/// The batches a worker has open: by id, and in the order they may still
/// start tasks. Every operation is logarithmic in the number open (an
/// async worker can have thousands).
#[derive(Default)]
struct Batches {
    open: BTreeMap<u64, Open>,
    /// Batches that may still have inputs to start, oldest first.
    startable: std::collections::VecDeque<u64>,
    next_id: u64,
}

type Start = (
    u64,
    Arc<TaskSpec>,
    Arc<AtomicBool>,
    usize,
    Result<Payload, TaskError>,
);

impl Batches {
    fn open(&mut self, o: Open) {
        let id = self.next_id;
        self.next_id += 1;
        self.open.insert(id, o);
        self.startable.push_back(id);
    }

    /// The next input to start, from the oldest batch that has one.
    fn take(&mut self) -> Option<Start> {
        while let Some(&id) = self.startable.front() {
            let Some(o) = self.open.get_mut(&id) else {
                self.startable.pop_front();
                continue;
            };
            if let Some((offset, item)) = o.take() {
                let cancel = o.running.stream.cancelled.clone();
                return Some((id, o.running.task.clone(), cancel, offset, item));
            }
            self.startable.pop_front();
            self.answer_if_done(id);
        }
        None
    }

    /// Records a finished task's result, and answers its batch once every
    /// task of it finished.
    fn put(&mut self, id: u64, offset: usize, result: Result<Output, TaskError>) {
        if let Some(o) = self.open.get_mut(&id) {
            o.put(offset, result);
            self.answer_if_done(id);
        }
    }

    fn answer_if_done(&mut self, id: u64) {
        if self.open.get(&id).is_some_and(Open::done) {
            let mut o = self.open.remove(&id).expect("checked above");
            o.flush();
            o.running.finish();
        }
    }
}
