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
//! - every batch taken gets exactly one reply unless its map was cancelled.
//!
//! Why threads and not rayon: each worker holds long-lived state (its store)
//! that must stay on one thread, and tasks arrive as a stream from a caller
//! that wants bounded memory; a fixed set of threads pulling from a channel
//! fits that better than work stealing. rayon still compiles modules (inside
//! wasmtime) and spreads the native baselines of the benchmarks.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use wasmtime::InstancePre;

use crate::error::{TaskError, TaskErrorKind};
use crate::sandbox::{Guest, Limits, Resources, StoreData, WorkerId};
use crate::task::{Output, Payload, TaskSpec};

/// A run of consecutive inputs of one map, sent to one worker.
pub(crate) struct Batch {
    pub(crate) task: Arc<TaskSpec>,
    pub(crate) seq: u64,
    pub(crate) first_index: u64,
    pub(crate) items: Vec<Result<Payload, TaskError>>,
    pub(crate) reply: Sender<Done>,
    pub(crate) cancelled: Arc<AtomicBool>,
}

/// The results of one batch, in the batch's order.
pub(crate) struct Done {
    pub(crate) seq: u64,
    pub(crate) first_index: u64,
    pub(crate) results: Vec<Result<Output, TaskError>>,
    /// Time spent running the batch's tasks.
    pub(crate) busy: Duration,
}

/// What every worker of a pool shares.
pub(crate) struct Shared {
    pub(crate) pre: InstancePre<StoreData>,
    pub(crate) limits: Limits,
    pub(crate) workers: u32,
    pub(crate) resources: Arc<Resources>,
    /// Replace an instance after this many tasks (1: a fresh one per task).
    pub(crate) recycle_after: Option<u64>,
}

/// Counters one worker keeps, read by [`Pool::worker_stats`](crate::Pool::worker_stats).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) tasks: AtomicU64,
    pub(crate) failures: AtomicU64,
    pub(crate) busy_nanos: AtomicU64,
    pub(crate) instances: AtomicU64,
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
    /// Instances created (1, plus one for each replacement after a trap).
    pub instances: u64,
}

impl Counters {
    pub(crate) fn snapshot(&self, index: u32) -> WorkerStats {
        WorkerStats {
            index,
            tasks: self.tasks.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            busy: Duration::from_nanos(self.busy_nanos.load(Ordering::Relaxed)),
            instances: self.instances.load(Ordering::Relaxed),
        }
    }
}

/// Starts worker `index` with its first guest.
pub(crate) fn spawn(
    index: u32,
    guest: Guest,
    shared: Arc<Shared>,
    jobs: Receiver<Batch>,
    counters: Arc<Counters>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("wasmpool-worker-{index}"))
        .spawn(move || {
            Worker {
                index,
                guest: Some(guest),
                shared,
                counters,
            }
            .run(jobs)
        })
}

struct Worker {
    index: u32,
    guest: Option<Guest>,
    shared: Arc<Shared>,
    counters: Arc<Counters>,
}

impl Worker {
    fn run(mut self, jobs: Receiver<Batch>) {
        for batch in jobs.iter() {
            if batch.cancelled.load(Ordering::Relaxed) {
                continue;
            }
            let start = Instant::now();
            let mut results = Vec::with_capacity(batch.items.len());
            let mut failures = 0;
            for item in batch.items {
                let result = item.and_then(|payload| self.run_one(&batch.task, payload));
                failures += u64::from(result.is_err());
                results.push(result);
            }
            let busy = start.elapsed();
            let c = &self.counters;
            c.tasks.fetch_add(results.len() as u64, Ordering::Relaxed);
            c.failures.fetch_add(failures, Ordering::Relaxed);
            c.busy_nanos
                .fetch_add(busy.as_nanos() as u64, Ordering::Relaxed);
            // The receiver is gone when its map was dropped: nothing to do.
            let _ = batch.reply.send(Done {
                seq: batch.seq,
                first_index: batch.first_index,
                results,
                busy,
            });
        }
    }

    fn run_one(&mut self, task: &TaskSpec, payload: Payload) -> Result<Output, TaskError> {
        let guest = match &mut self.guest {
            Some(guest) => guest,
            slot @ None => {
                let id = WorkerId {
                    index: self.index,
                    count: self.shared.workers,
                };
                let guest = Guest::new(
                    &self.shared.pre,
                    id,
                    self.shared.limits.clone(),
                    self.shared.resources.clone(),
                )
                .map_err(|e| {
                    TaskError::new(
                        TaskErrorKind::Instantiate,
                        format!("cannot create a fresh instance: {e:#}"),
                    )
                })?;
                self.counters.instances.fetch_add(1, Ordering::Relaxed);
                slot.insert(guest)
            }
        };
        let result = catch_unwind(AssertUnwindSafe(|| guest.run(task, payload)));
        match result {
            Ok(result) => {
                let worn_out = self
                    .shared
                    .recycle_after
                    .is_some_and(|n| guest.tasks_run >= n);
                if guest.poisoned || worn_out {
                    self.guest = None;
                }
                result
            }
            Err(panic) => {
                self.guest = None;
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".into());
                Err(TaskError::new(
                    TaskErrorKind::Host,
                    format!("the host panicked running this task: {what}"),
                ))
            }
        }
    }
}
