//! [`Pool`]: one isolated instance per worker, tasks fed through a host
//! queue, results gathered in input order.
//!
//! Entry points: [`Pool::builder`] → [`PoolBuilder::build`], then
//! [`Pool::map`] (collect everything), [`Pool::imap`] (stream in order) or
//! [`Pool::imap_unordered`] (stream as finished).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::dispatch::{
    Capacity, Decode, Dispatch, Feed, Imap, ImapUnordered, Inputs, Numbers, Texts, decode_run,
};
use crate::engine::{Allocation, CacheOutcome};
use crate::error::{Error, TaskError};
use crate::module::{ModuleInfo, resolve_task};
use crate::queue::Queue;
use crate::runtime::{Runtime, Setup, shared_setters};
use crate::shm::SharedRegion;
use crate::task::{Output, Payload, Task};
use crate::watchdog::{GRACE, Watchdog};
use crate::worker::{self, Batch, Counters, Shared, WorkerStats};

/// The default window of [`Imap`]: inputs out at once.
const DEFAULT_WINDOW: usize = 4096;

/// The default output budget of a stream (see [`PoolBuilder::output_budget`]).
pub const DEFAULT_OUTPUT_BUDGET: usize = 256 << 20;

/// How long dropping a pool waits for its workers to stop before it leaves
/// the ones stuck in an uninterruptible wait behind.
const DROP_GRACE: Duration = Duration::from_millis(250);

/// Gives each pool its own id, which its [`Task`]s carry.
static NEXT_POOL_ID: AtomicU64 = AtomicU64::new(1);

/// Configures and builds a [`Pool`].
///
/// ```no_run
/// # fn main() -> Result<(), wasmpool::Error> {
/// let pool = wasmpool::Pool::builder()
///     .module_file("primes.wasm")
///     .workers(4)
///     .build()?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
#[must_use = "a builder does nothing until .build()"]
pub struct PoolBuilder {
    setup: Setup,
    workers: Option<usize>,
    window: usize,
    output_budget: usize,
    isolation: Isolation,
    recycle_after: Option<u64>,
}

shared_setters!(PoolBuilder, "Pool");

/// How long an instance lives.
///
/// ```
/// let pool = wasmpool::Pool::builder()
///     .module_bytes("(module)")
///     .isolation(wasmpool::Isolation::Task)
///     .cache(None)
///     .build()
///     .unwrap();
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Isolation {
    /// One instance per worker, reused across its tasks (replaced after a
    /// trap). The default: the fastest.
    #[default]
    Worker,
    /// A fresh instance for every task: no state leaks from one task to the
    /// next (a few microseconds more per task with the pooling allocator).
    Task,
}

impl PoolBuilder {
    /// How long instances live. Default: [`Isolation::Worker`].
    ///
    /// ```no_run
    /// let builder = wasmpool::Pool::builder().module_file("m.wasm").isolation(wasmpool::Isolation::Task);
    /// ```
    pub fn isolation(mut self, isolation: Isolation) -> Self {
        self.isolation = isolation;
        self
    }

    /// Replaces each worker's instance after it has run `tasks` tasks
    /// (Python's `maxtasksperchild`). Default: never.
    ///
    /// ```no_run
    /// let builder = wasmpool::Pool::builder().module_file("m.wasm").recycle_after(1000);
    /// ```
    pub fn recycle_after(mut self, tasks: u64) -> Self {
        self.recycle_after = Some(tasks.max(1));
        self
    }

    /// How many workers (threads, each with its own instance). Default: the
    /// number of cores, `std::thread::available_parallelism()`.
    ///
    /// ```no_run
    /// let builder = wasmpool::Pool::builder().module_file("primes.wasm").workers(4);
    /// ```
    pub fn workers(mut self, workers: usize) -> Self {
        self.workers = Some(workers);
        self
    }

    /// The most inputs a stream has out at once (sent to workers, running, or
    /// finished and waiting for an earlier result). Default: 4096.
    ///
    /// ```no_run
    /// let builder = wasmpool::Pool::builder().module_file("primes.wasm").window(256);
    /// ```
    pub fn window(mut self, inputs: usize) -> Self {
        self.window = inputs;
        self
    }

    /// The most output bytes a stream holds that the caller has not taken
    /// yet (in finished batches and in the reorder window, error messages
    /// included), and the most input bytes it has sent and not yet run. Past
    /// it no new batch is sent, and running batches are cut short (their
    /// unrun inputs are sent again later), so the host's memory stays
    /// bounded whatever the guests return: at most this for each, plus one
    /// task's [`max_output`](Self::max_output) per worker. Default: 256 MiB.
    ///
    /// ```no_run
    /// let builder = wasmpool::Pool::builder().module_file("m.wasm").output_budget(64 << 20);
    /// ```
    pub fn output_budget(mut self, bytes: usize) -> Self {
        self.output_budget = bytes;
        self
    }

    /// Loads and compiles the module (through the cache), checks it against
    /// the ABI, and starts the workers, each with its instance.
    ///
    /// # Errors
    ///
    /// [`Error`] when the file cannot be read, is not wasm, does not compile,
    /// breaks the ABI, or cannot be instantiated (an unknown import, a trap in
    /// its start function), or when the configuration is invalid.
    ///
    /// ```
    /// let err = wasmpool::Pool::builder().build().unwrap_err();
    /// assert_eq!(err.to_string(), "invalid configuration: no module given");
    /// ```
    pub fn build(self) -> Result<Pool, Error> {
        let workers = match self.workers {
            Some(0) => {
                return Err(Error::Config(
                    "the number of workers must be at least 1".into(),
                ));
            }
            Some(n) => n,
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        };
        let workers_u32 = u32::try_from(workers)
            .ok()
            .filter(|&n| n <= 65_536)
            .ok_or_else(|| Error::Config(format!("{workers} workers is more than 65536")))?;
        // Each worker has one instance (in the async mode, one per task in
        // flight), and may have a second while its replacement starts;
        // with a time limit, an abandoned worker keeps its slot, so leave
        // room for a few.
        let concurrency = self.setup.concurrency;
        let per_worker = match concurrency {
            Some(0) => {
                return Err(Error::Config("the concurrency must be at least 1".into()));
            }
            Some(n) => n,
            None => 1,
        };
        let slots = workers_u32
            .checked_mul(per_worker)
            .and_then(|n| n.checked_add(workers_u32 + 2))
            .and_then(|n| {
                n.checked_add(if self.setup.limits.timeout.is_some() {
                    16
                } else {
                    0
                })
            })
            .ok_or_else(|| {
                Error::Config(format!(
                    "{workers} workers x {per_worker} tasks in flight is too many instances"
                ))
            })?;
        let recycle_after = match self.isolation {
            Isolation::Task => Some(1),
            Isolation::Worker => self.recycle_after,
        };
        let mut setup = self.setup;
        setup.rewind = recycle_after.is_some();
        let (runtime, watchdog) = Runtime::new(setup, Allocation::Pooling(slots), false)?;
        let origin = runtime.program.origin.clone();
        let (jobs, jobs_rx) = crossbeam_channel::unbounded::<Batch>();
        let shared = Arc::new(Shared {
            runtime,
            workers: workers_u32,
            recycle_after,
            stop: Arc::new(AtomicBool::new(false)),
            jobs: jobs_rx,
            threads: Mutex::new(Vec::with_capacity(workers)),
            abandoned: Mutex::new(Vec::new()),
            counters: (0..workers)
                .map(|_| Arc::new(Counters::default()))
                .collect(),
            concurrency,
            arrivals: Arc::default(),
        });
        let mut pool = Pool {
            id: NEXT_POOL_ID.fetch_add(1, Ordering::Relaxed),
            shared,
            watchdog,
            jobs: Some(jobs),
            workers,
            window: self.window,
            output_budget: self.output_budget,
            tasks: Mutex::new(HashMap::new()),
        };
        // Each worker makes its first instance on its own thread (in
        // parallel, and under the time limit: a start function or
        // `_initialize` that hangs cannot hang `build`).
        let (ready, ready_rx) = crossbeam_channel::unbounded();
        for index in 0..workers_u32 {
            worker::spawn(
                &pool.shared,
                index,
                pool.watchdog.as_ref().map(Watchdog::registry),
                Some(ready.clone()),
            )
            .map_err(|e| Error::Host(format!("cannot start worker thread {index}: {e}")))?;
        }
        let limit = pool.shared.runtime.limits.timeout;
        let give_up = limit.and_then(|t| Instant::now().checked_add(t + GRACE * 2));
        for _ in 0..workers {
            let made = match give_up {
                None => ready_rx.recv().ok(),
                Some(at) => ready_rx.recv_deadline(at).ok(),
            };
            let failure = match made {
                Some(Ok(())) => continue,
                Some(Err(e)) => e.to_string(),
                None => format!(
                    "timeout: creating an instance ran past the time limit of {:?}",
                    limit.unwrap_or_default()
                ),
            };
            pool.stop();
            return Err(Error::Instantiate {
                origin,
                message: failure,
            });
        }
        Ok(pool)
    }
}

/// A pool of workers, each running its own isolated instance of one module.
///
/// Like Python's `multiprocessing.Pool`: build it once, then map tasks over
/// inputs; results come back in input order, and a failed task costs only
/// its own result.
///
/// ```no_run
/// # fn main() -> Result<(), wasmpool::Error> {
/// let pool = wasmpool::Pool::builder().module_file("primes.wasm").build()?;
/// let counts: Vec<Result<u64, wasmpool::TaskError>> = pool.map("primes", 0..64u64)?;
/// let total: u64 = counts.into_iter().map(|r| r.unwrap()).sum();
/// assert_eq!(total, 98610);
/// # Ok(()) }
/// ```
///
/// # Drop
///
/// Dropping the pool stops its workers promptly: guests waiting in the host
/// (queues, wait/notify, WASI sleeps) are interrupted, and so is running
/// wasm code when tasks have a [`timeout`](PoolBuilder::timeout) (epoch
/// checks are compiled in only then: they cost call-heavy guests about 10%).
/// A worker that does not stop within 250 ms (a guest spinning with no
/// timeout, or stuck in a wait nothing can interrupt, such as a wasm atomic
/// wait) is left behind rather than waited for. No stream can be alive then
/// (streams borrow the pool), so no wanted result is lost.
pub struct Pool {
    /// Tells this pool's tasks from other pools'.
    id: u64,
    shared: Arc<Shared>,
    /// Keeps time and rescues stuck tasks, when tasks have a time limit.
    watchdog: Option<Watchdog>,
    jobs: Option<Sender<Batch>>,
    workers: usize,
    window: usize,
    output_budget: usize,
    tasks: Mutex<HashMap<String, Task>>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("module", &self.shared.runtime.program.origin)
            .field("workers", &self.workers)
            .finish_non_exhaustive()
    }
}

impl Pool {
    /// Starts configuring a pool.
    ///
    /// ```no_run
    /// let pool = wasmpool::Pool::builder().module_file("square.wasm").build();
    /// ```
    pub fn builder() -> PoolBuilder {
        PoolBuilder {
            setup: Setup::default(),
            workers: None,
            window: DEFAULT_WINDOW,
            output_budget: DEFAULT_OUTPUT_BUDGET,
            isolation: Isolation::Worker,
            recycle_after: None,
        }
    }

    /// The number of workers.
    ///
    /// ```no_run
    /// # let pool = wasmpool::Pool::builder().module_file("square.wasm").workers(3).build().unwrap();
    /// assert_eq!(pool.workers(), 3);
    /// ```
    pub fn workers(&self) -> usize {
        self.workers
    }

    /// Whether the module came from the cache or was compiled.
    ///
    /// ```no_run
    /// # let pool = wasmpool::Pool::builder().module_file("square.wasm").build().unwrap();
    /// println!("module {}", pool.cache_outcome());
    /// ```
    pub fn cache_outcome(&self) -> CacheOutcome {
        self.shared.runtime.program.cache_outcome
    }

    /// The module's tasks and imports.
    ///
    /// ```no_run
    /// # let pool = wasmpool::Pool::builder().module_file("square.wasm").build().unwrap();
    /// assert!(pool.module_info().tasks.iter().any(|t| t.name == "square"));
    /// ```
    pub fn module_info(&self) -> &ModuleInfo {
        &self.shared.runtime.program.info
    }

    /// The queue declared as `name`, shared with every instance.
    ///
    /// ```
    /// # let pool = wasmpool::Pool::builder().module_bytes("(module)").queue("q", 8).cache(None).build().unwrap();
    /// assert_eq!(pool.queue("q").unwrap().capacity(), 8);
    /// assert!(pool.queue("other").is_none());
    /// ```
    pub fn queue(&self, name: &str) -> Option<&Arc<Queue>> {
        self.shared.runtime.queue(name)
    }

    /// The shared region, if the pool has one.
    ///
    /// ```
    /// # let pool = wasmpool::Pool::builder().module_bytes("(module)").cache(None).build().unwrap();
    /// assert!(pool.shared_region().is_none());
    /// ```
    pub fn shared_region(&self) -> Option<&SharedRegion> {
        self.shared.runtime.shared_region()
    }

    /// What each worker has done so far.
    ///
    /// ```no_run
    /// # let pool = wasmpool::Pool::builder().module_file("square.wasm").build().unwrap();
    /// assert_eq!(pool.worker_stats().len(), pool.workers());
    /// ```
    pub fn worker_stats(&self) -> Vec<WorkerStats> {
        self.shared
            .counters
            .iter()
            .enumerate()
            .map(|(i, c)| c.snapshot(i as u32))
            .collect()
    }

    /// Looks up task `name`: the ABI export `wasmpool_task_<name>` first,
    /// then a numeric export `<name>`.
    ///
    /// # Errors
    ///
    /// [`Error::NoSuchTask`] naming the tasks the module does have.
    ///
    /// ```
    /// let pool = wasmpool::Pool::builder()
    ///     .module_bytes(r#"(module (func (export "one") (result i32) i32.const 1))"#)
    ///     .workers(1).cache(None).build().unwrap();
    /// assert_eq!(pool.task("one").unwrap().signature(), "() -> i32");
    /// let err = pool.task("two").unwrap_err();
    /// assert!(err.to_string().contains(r#"no task named "two""#), "{err}");
    /// ```
    pub fn task(&self, name: &str) -> Result<Task, Error> {
        let mut tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(task) = tasks.get(name) {
            return Ok(task.clone());
        }
        let program = &self.shared.runtime.program;
        let spec = resolve_task(
            program.module(),
            &program.origin,
            name,
            tasks.len(),
            self.id,
        )?;
        let task = Task {
            spec: Arc::new(spec),
        };
        tasks.insert(name.to_string(), task.clone());
        Ok(task)
    }

    fn dispatch<'a>(&'a self, task: Task, inputs: Inputs<'a>) -> Dispatch<'a> {
        let jobs = self
            .jobs
            .clone()
            .expect("the job channel lives as long as the pool");
        // In the async mode, every worker must be able to hold its
        // `concurrency` tasks in flight, and a few batches waiting.
        let in_flight = self.shared.concurrency.map_or(1, |n| n as usize);
        Dispatch::new(
            jobs,
            self.shared.runtime.engine.clone(),
            task,
            inputs,
            Capacity {
                workers: self.workers,
                in_flight,
                window: self.window.max(2 * self.workers * in_flight),
                budget: self.output_budget,
                arrivals: self
                    .shared
                    .concurrency
                    .map(|_| self.shared.arrivals.clone()),
            },
        )
    }

    /// Runs task `name` on every input and collects the results in input
    /// order. Inputs and outputs are serde values (JSON for ABI tasks,
    /// numbers or arrays of numbers for numeric ones).
    ///
    /// # Errors
    ///
    /// [`Error::NoSuchTask`] if the task does not exist. A failure of one
    /// task is its own `Err` in the result vector; the others still run.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), wasmpool::Error> {
    /// # let pool = wasmpool::Pool::builder().module_file("square.wasm").build()?;
    /// let squares: Vec<Result<i64, wasmpool::TaskError>> = pool.map("square", [1, 2, 3])?;
    /// assert_eq!(squares, [Ok(1), Ok(4), Ok(9)]);
    /// # Ok(()) }
    /// ```
    pub fn map<I, O>(
        &self,
        task: &str,
        inputs: impl IntoIterator<Item = I>,
    ) -> Result<Vec<Result<O, TaskError>>, Error>
    where
        I: Serialize,
        O: DeserializeOwned,
    {
        Ok(self.imap(task, inputs)?.collect())
    }

    /// Like [`map`](Self::map), but streams the results in input order with
    /// bounded memory (see [`Imap`]).
    ///
    /// # Errors
    ///
    /// [`Error::NoSuchTask`] if the task does not exist.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), wasmpool::Error> {
    /// # let pool = wasmpool::Pool::builder().module_file("square.wasm").build()?;
    /// let sum: i64 = pool.imap::<i64, i64>("square", 0..1000)?.map(Result::unwrap).sum();
    /// # Ok(()) }
    /// ```
    pub fn imap<'a, I, O>(
        &'a self,
        task: &str,
        inputs: impl IntoIterator<Item = I> + 'a,
    ) -> Result<Imap<'a, O>, Error>
    where
        I: Serialize,
        O: DeserializeOwned,
    {
        let (dispatch, decode) = self.typed::<I, O>(task, inputs)?;
        Ok(Imap::new(dispatch, decode))
    }

    /// Like [`imap`](Self::imap), but yields `(index, result)` as tasks
    /// finish (see [`ImapUnordered`]).
    ///
    /// # Errors
    ///
    /// [`Error::NoSuchTask`] if the task does not exist.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), wasmpool::Error> {
    /// # let pool = wasmpool::Pool::builder().module_file("square.wasm").build()?;
    /// for (index, result) in pool.imap_unordered::<i64, i64>("square", 0..10)? {
    ///     assert_eq!(result.unwrap(), (index * index) as i64);
    /// }
    /// # Ok(()) }
    /// ```
    pub fn imap_unordered<'a, I, O>(
        &'a self,
        task: &str,
        inputs: impl IntoIterator<Item = I> + 'a,
    ) -> Result<ImapUnordered<'a, O>, Error>
    where
        I: Serialize,
        O: DeserializeOwned,
    {
        let (dispatch, decode) = self.typed::<I, O>(task, inputs)?;
        Ok(ImapUnordered::new(dispatch, decode))
    }

    fn typed<'a, I: Serialize, O: DeserializeOwned>(
        &'a self,
        task: &str,
        inputs: impl IntoIterator<Item = I> + 'a,
    ) -> Result<(Dispatch<'a>, Decode<'a, O>), Error> {
        let task = self.task(task)?;
        let encoder = task.clone();
        // Inputs go into a batch as its tasks take them: a one-parameter
        // numeric task's as bits, an ABI task's as JSON texts back to back
        // (`packed.rs`), so that a stream of tiny tasks moves no buffer
        // per task between the cores; other numeric tasks' as values.
        let inputs: Inputs<'a> = match task.one_param() {
            Some(_) => Box::new(Numbers {
                inputs: inputs.into_iter(),
                task: encoder,
            }),
            None if !task.is_numeric() => Box::new(Texts {
                inputs: inputs.into_iter(),
                task: encoder,
            }),
            None => Box::new(
                inputs
                    .into_iter()
                    .map(move |i| encoder.encode_into(&i, Vec::new)),
            ),
        };
        let decode = Decode::new(
            Box::new(|task, output| match output {
                Output::Bytes(bytes) => task.decode_bytes(&bytes),
                values => task.decode(values),
            }),
            Box::new(|task, bits, count, out| task.decode_packed_run(bits, count, out)),
            Box::new(|task, text| task.decode_bytes(text)),
        );
        Ok((self.dispatch(task, inputs), decode))
    }

    /// The raw stream: payloads in, [`Output`]s out, in input order. An
    /// `Err` input is passed through to its position untouched (the CLI
    /// uses this for input lines that do not parse).
    ///
    /// # Errors
    ///
    /// [`Error::ForeignTask`] when `task` was looked up in another pool.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), wasmpool::Error> {
    /// # let pool = wasmpool::Pool::builder().module_file("square.wasm").build()?;
    /// let task = pool.task("square")?;
    /// let lines: Vec<&[u8]> = vec![b"3", b"oops"];
    /// let payloads = lines.into_iter().map(|l| task.parse_json(l));
    /// let results: Vec<_> = pool.imap_payloads(&task, payloads)?.collect();
    /// assert!(results[0].is_ok() && results[1].is_err());
    /// # Ok(()) }
    /// ```
    pub fn imap_payloads<'a>(
        &'a self,
        task: &Task,
        payloads: impl IntoIterator<Item = Result<Payload, TaskError>> + 'a,
    ) -> Result<Imap<'a, Output>, Error> {
        self.check_own(task)?;
        let decode = Decode::new(
            Box::new(|_, output| Ok(output)),
            Box::new(|task, bits, count, out| {
                decode_run(bits, count, out, |bits| {
                    Ok(crate::packed::output(&task.spec, bits))
                });
            }),
            Box::new(|_, text| Ok(Output::Bytes(text.to_vec()))),
        );
        Ok(Imap::new(
            self.dispatch(task.clone(), Box::new(payloads.into_iter())),
            decode,
        ))
    }

    /// A stream that takes inputs as the caller pushes them and yields
    /// results as tasks finish (see [`Feed`]): for inputs that arrive over
    /// time, such as requests or work-queue entries.
    ///
    /// # Errors
    ///
    /// [`Error::ForeignTask`] when `task` was looked up in another pool.
    ///
    /// ```
    /// # fn main() -> Result<(), wasmpool::Error> {
    /// let pool = wasmpool::Pool::builder()
    ///     .module_bytes(r#"(module (func (export "inc") (param i32) (result i32)
    ///         local.get 0 i32.const 1 i32.add))"#)
    ///     .workers(1).cache(None).build()?;
    /// let task = pool.task("inc")?;
    /// let mut feed = pool.feed(&task)?;
    /// assert_eq!(feed.push(task.parse_json(b"41")), 0);
    /// let (index, output) = feed.next_timeout(std::time::Duration::from_secs(5)).unwrap();
    /// assert_eq!((index, feed.pending()), (0, 0));
    /// # output.unwrap();
    /// assert!(feed.try_next().is_none()); // nothing pending: no wait
    /// # Ok(()) }
    /// ```
    pub fn feed<'a>(&'a self, task: &Task) -> Result<Feed<'a>, Error> {
        self.check_own(task)?;
        Ok(Feed::new(|inputs| self.dispatch(task.clone(), inputs)))
    }

    /// A task of this pool's, else [`Error::ForeignTask`]: a [`Task`] holds
    /// export indices of its own pool's module.
    fn check_own(&self, task: &Task) -> Result<(), Error> {
        if task.spec.pool != self.id {
            return Err(Error::ForeignTask {
                task: task.name().to_string(),
            });
        }
        Ok(())
    }

    /// Stops every worker: guests stop at once, waits end, and a worker
    /// stuck in a wait nothing interrupts is left behind after a grace.
    fn stop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.runtime.engine.increment_epoch();
        // Closing the channel ends each idle worker's loop.
        self.jobs = None;
        self.shared.arrivals.notify_waiters();
        // No more replacements once the watchdog is gone.
        self.watchdog = None;
        let threads = take(&self.shared.threads);
        let abandoned = take(&self.shared.abandoned);
        let give_up = Instant::now() + DROP_GRACE;
        for handle in threads {
            if abandoned.contains(&handle.thread().id()) {
                continue; // stuck for good: the watchdog gave up on it
            }
            while !handle.is_finished() && Instant::now() < give_up {
                std::thread::sleep(Duration::from_millis(1));
            }
            if handle.is_finished() {
                let _ = handle.join();
            } else {
                tracing::warn!(
                    "{}: a worker is stuck in a wait that cannot be interrupted; leaving it behind",
                    self.shared.runtime.program.origin
                );
            }
        }
    }
}

/// Empties a shared list, even one a panicking thread left poisoned.
fn take<T>(list: &Mutex<Vec<T>>) -> Vec<T> {
    std::mem::take(&mut *list.lock().unwrap_or_else(|e| e.into_inner()))
}

impl Drop for Pool {
    fn drop(&mut self) {
        // No stream is alive (they borrow the pool), so nothing queued is
        // wanted: stop everything now, even guests blocked forever.
        self.stop();
    }
}
