//! [`Pool`]: one isolated instance per worker, tasks fed through a host
//! queue, results gathered in input order.
//!
//! Entry points: [`Pool::builder`] → [`PoolBuilder::build`], then
//! [`Pool::map`] (collect everything), [`Pool::imap`] (stream in order) or
//! [`Pool::imap_unordered`] (stream as finished).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::Sender;
use serde::Serialize;
use serde::de::DeserializeOwned;
use wasmtime::{Linker, Module};

use crate::abi;
use crate::dispatch::{Decode, Dispatch, Imap, ImapUnordered, Inputs};
use crate::engine::{CacheOutcome, EngineOptions, ModuleCache, Source, load_module};
use crate::error::{Error, TaskError};
use crate::module::{ModuleInfo, check_abi, resolve_task};
use crate::queue::Queue;
use crate::sandbox::{EPOCH_TICK, Guest, Limits, Resources, StoreData, WorkerId};
use crate::shm::SharedRegion;
use crate::task::{Output, Payload, Task};
use crate::worker::{self, Batch, Counters, Shared, WorkerStats};

/// The default window of [`Imap`]: inputs out at once.
const DEFAULT_WINDOW: usize = 4096;

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
    source: Option<Source>,
    name: Option<String>,
    workers: Option<usize>,
    cache: Option<Option<ModuleCache>>,
    limits: Limits,
    window: usize,
    queues: Vec<(String, usize)>,
    shared_memory: Option<usize>,
    max_stack: Option<usize>,
    isolation: Isolation,
    recycle_after: Option<u64>,
}

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
    /// The most bytes each instance's own linear memory may grow to. A task
    /// that needs more fails with kind `out_of_memory`; its instance is
    /// replaced. Default: no limit beyond wasm32's 4 GiB.
    ///
    /// ```no_run
    /// let builder = wasmpool::Pool::builder().module_file("m.wasm").max_memory(256 << 20);
    /// ```
    pub fn max_memory(mut self, bytes: usize) -> Self {
        self.limits.max_memory = Some(bytes);
        self
    }

    /// The most time one task may run, enforced by epoch interruption (10 ms
    /// resolution) and by the deadlines of host calls that wait. A task that
    /// runs longer fails with kind `timeout`. Default: none.
    ///
    /// ```no_run
    /// let builder = wasmpool::Pool::builder().module_file("m.wasm").timeout(std::time::Duration::from_secs(5));
    /// ```
    pub fn timeout(mut self, limit: Duration) -> Self {
        self.limits.timeout = Some(limit);
        self
    }

    /// The fuel each task starts with: a deterministic CPU limit (roughly one
    /// unit per wasm instruction). A task that runs out fails with kind
    /// `out_of_fuel`. Fuel metering slows wasm code down; see
    /// `docs/benchmarks.md`. Default: off.
    ///
    /// ```no_run
    /// let builder = wasmpool::Pool::builder().module_file("m.wasm").fuel(10_000_000);
    /// ```
    pub fn fuel(mut self, units: u64) -> Self {
        self.limits.fuel = Some(units);
        self
    }

    /// The most stack wasm code may use, in bytes. Deeper recursion traps
    /// with a stack overflow. Default: wasmtime's 512 KiB.
    ///
    /// ```no_run
    /// let builder = wasmpool::Pool::builder().module_file("m.wasm").max_stack(1 << 20);
    /// ```
    pub fn max_stack(mut self, bytes: usize) -> Self {
        self.max_stack = Some(bytes);
        self
    }

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

    /// Declares a named queue holding at most `capacity` messages, shared by
    /// every worker's instance and by the host ([`Pool::queue`]). Guests
    /// open it by name.
    ///
    /// ```
    /// let pool = wasmpool::Pool::builder()
    ///     .module_bytes("(module)")
    ///     .queue("results", 1000)
    ///     .cache(None)
    ///     .build()
    ///     .unwrap();
    /// pool.queue("results").unwrap().put(b"42".to_vec(), None).unwrap();
    /// ```
    pub fn queue(mut self, name: impl Into<String>, capacity: usize) -> Self {
        self.queues.push((name.into(), capacity));
        self
    }

    /// Gives the pool one shared region of at least `bytes` bytes (rounded
    /// up to 64 KiB), reachable from every instance through the ABI's `shm_*`
    /// calls and from the host through [`Pool::shared_region`]. Default: none.
    ///
    /// ```
    /// let pool = wasmpool::Pool::builder()
    ///     .module_bytes("(module)")
    ///     .shared_memory(1 << 20)
    ///     .cache(None)
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(pool.shared_region().unwrap().len(), 1 << 20);
    /// ```
    pub fn shared_memory(mut self, bytes: usize) -> Self {
        self.shared_memory = Some(bytes);
        self
    }

    /// The module to run, read from a `.wasm` (or `.wat`) file at `build`.
    ///
    /// ```no_run
    /// let builder = wasmpool::Pool::builder().module_file("primes.wasm");
    /// ```
    pub fn module_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.source = Some(Source::File(path.into()));
        self
    }

    /// The module to run, as binary or text (WAT) bytes. Errors name it
    /// `<bytes>` unless [`name`](Self::name) says otherwise.
    ///
    /// ```
    /// let pool = wasmpool::Pool::builder()
    ///     .module_bytes(r#"(module (func (export "double") (param i64) (result i64)
    ///                        local.get 0 i64.const 2 i64.mul))"#)
    ///     .workers(2)
    ///     .cache(None)
    ///     .build()
    ///     .unwrap();
    /// let doubled: Vec<i64> = pool.map("double", [1, 2, 3]).unwrap().into_iter().map(Result::unwrap).collect();
    /// assert_eq!(doubled, [2, 4, 6]);
    /// ```
    pub fn module_bytes(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.source = Some(Source::Bytes(bytes.into()));
        self
    }

    /// The name errors use for the module. Default: the file's path, or
    /// `<bytes>`.
    ///
    /// ```
    /// let err = wasmpool::Pool::builder().module_bytes("nonsense").name("mine.wasm").build().unwrap_err();
    /// assert!(err.to_string().starts_with("mine.wasm: "), "{err}");
    /// ```
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
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

    /// Where compiled modules are cached; `None` turns the cache off.
    /// Default: [`ModuleCache::default_location`].
    ///
    /// ```no_run
    /// let builder = wasmpool::Pool::builder()
    ///     .module_file("primes.wasm")
    ///     .cache(Some(wasmpool::ModuleCache::new("/tmp/cache")));
    /// ```
    pub fn cache(mut self, cache: Option<ModuleCache>) -> Self {
        self.cache = Some(cache);
        self
    }

    /// The most bytes one task may output. Default: 64 MiB. A task that
    /// writes more fails with kind `abi`.
    ///
    /// ```no_run
    /// let builder = wasmpool::Pool::builder().module_file("primes.wasm").max_output(1 << 20);
    /// ```
    pub fn max_output(mut self, bytes: usize) -> Self {
        self.limits.max_output = bytes;
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
        let workers_u32 =
            u32::try_from(workers).map_err(|_| Error::Config("too many workers".into()))?;
        let (bytes, origin) = Source::read(self.source, self.name)?;
        let cache = self.cache.unwrap_or_else(ModuleCache::default_location);

        let engine = EngineOptions {
            instance_slots: workers_u32.saturating_mul(2).saturating_add(2),
            threads: self.shared_memory.is_some(),
            epoch: self.limits.timeout.is_some(),
            fuel: self.limits.fuel.is_some(),
            max_stack: self.max_stack,
        }
        .build()?;
        let ticker = self
            .limits
            .timeout
            .map(|_| Ticker::start(&engine))
            .transpose()?;
        let resources = Arc::new(build_resources(&engine, &self.queues, self.shared_memory)?);
        let (module, cache_outcome) = load_module(&engine, cache.as_ref(), &bytes, &origin)?;
        drop(bytes);
        check_abi(&module, &origin)?;

        let instantiate = |message: String| Error::Instantiate {
            origin: origin.clone(),
            message,
        };
        let pre = link(&engine, &module, &resources, &origin)?;

        let shared = Arc::new(Shared {
            pre,
            limits: self.limits.clone(),
            workers: workers_u32,
            resources: resources.clone(),
            recycle_after: match self.isolation {
                Isolation::Task => Some(1),
                Isolation::Worker => self.recycle_after,
            },
        });
        let (jobs, jobs_rx) = crossbeam_channel::unbounded::<Batch>();
        let mut threads = Vec::with_capacity(workers);
        let mut counters = Vec::with_capacity(workers);
        for index in 0..workers_u32 {
            let id = WorkerId {
                index,
                count: workers_u32,
            };
            let guest = Guest::new(&shared.pre, id, self.limits.clone(), resources.clone())
                .map_err(|e| instantiate(e.to_string()))?;
            let c = Arc::new(Counters::default());
            c.instances.store(1, std::sync::atomic::Ordering::Relaxed);
            let handle = worker::spawn(index, guest, shared.clone(), jobs_rx.clone(), c.clone())
                .map_err(|e| Error::Host(format!("cannot start worker thread {index}: {e}")))?;
            threads.push(handle);
            counters.push(c);
        }
        let info = ModuleInfo::of(&module);
        Ok(Pool {
            origin,
            module,
            info,
            cache_outcome,
            workers,
            window: self.window,
            jobs: Some(jobs),
            resources,
            ticker,
            threads,
            counters,
            tasks: Mutex::new(HashMap::new()),
        })
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
/// Dropping the pool lets the workers finish the batches already queued and
/// joins their threads.
pub struct Pool {
    origin: String,
    module: Module,
    info: ModuleInfo,
    cache_outcome: CacheOutcome,
    workers: usize,
    window: usize,
    jobs: Option<Sender<Batch>>,
    resources: Arc<Resources>,
    /// Advances the epoch while the pool lives, when tasks have a timeout.
    ticker: Option<Ticker>,
    threads: Vec<JoinHandle<()>>,
    counters: Vec<Arc<Counters>>,
    tasks: Mutex<HashMap<String, Task>>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("module", &self.origin)
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
            source: None,
            name: None,
            workers: None,
            cache: None,
            limits: Limits::default(),
            window: DEFAULT_WINDOW,
            queues: Vec::new(),
            shared_memory: None,
            max_stack: None,
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
        self.cache_outcome
    }

    /// The module's tasks and imports.
    ///
    /// ```no_run
    /// # let pool = wasmpool::Pool::builder().module_file("square.wasm").build().unwrap();
    /// assert!(pool.module_info().tasks.iter().any(|t| t.name == "square"));
    /// ```
    pub fn module_info(&self) -> &ModuleInfo {
        &self.info
    }

    /// The queue declared as `name`, shared with every instance.
    ///
    /// ```
    /// # let pool = wasmpool::Pool::builder().module_bytes("(module)").queue("q", 8).cache(None).build().unwrap();
    /// assert_eq!(pool.queue("q").unwrap().capacity(), 8);
    /// assert!(pool.queue("other").is_none());
    /// ```
    pub fn queue(&self, name: &str) -> Option<&Arc<Queue>> {
        self.resources.queues.iter().find(|q| q.name() == name)
    }

    /// The shared region, if the pool has one.
    ///
    /// ```
    /// # let pool = wasmpool::Pool::builder().module_bytes("(module)").cache(None).build().unwrap();
    /// assert!(pool.shared_region().is_none());
    /// ```
    pub fn shared_region(&self) -> Option<&SharedRegion> {
        self.resources.shm.as_ref()
    }

    /// What each worker has done so far.
    ///
    /// ```no_run
    /// # let pool = wasmpool::Pool::builder().module_file("square.wasm").build().unwrap();
    /// assert_eq!(pool.worker_stats().len(), pool.workers());
    /// ```
    pub fn worker_stats(&self) -> Vec<WorkerStats> {
        self.counters
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
        let spec = resolve_task(&self.module, &self.origin, name, tasks.len())?;
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
        Dispatch::new(jobs, task, inputs, self.workers, self.window)
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
    ) -> Result<(Dispatch<'a>, Decode<O>), Error> {
        let task = self.task(task)?;
        let encoder = task.clone();
        let inputs: Inputs<'a> = Box::new(inputs.into_iter().map(move |i| encoder.encode(&i)));
        let decode: Decode<O> = |task, output| task.decode(output);
        Ok((self.dispatch(task, inputs), decode))
    }

    /// The raw stream: payloads in, [`Output`]s out, in input order. An
    /// `Err` input is passed through to its position untouched (the CLI
    /// uses this for input lines that do not parse).
    ///
    /// ```no_run
    /// # fn main() -> Result<(), wasmpool::Error> {
    /// # let pool = wasmpool::Pool::builder().module_file("square.wasm").build()?;
    /// let task = pool.task("square")?;
    /// let lines: Vec<&[u8]> = vec![b"3", b"oops"];
    /// let payloads = lines.into_iter().map(|l| task.parse_json(l));
    /// let results: Vec<_> = pool.imap_payloads(&task, payloads).collect();
    /// assert!(results[0].is_ok() && results[1].is_err());
    /// # Ok(()) }
    /// ```
    pub fn imap_payloads<'a>(
        &'a self,
        task: &Task,
        payloads: impl IntoIterator<Item = Result<Payload, TaskError>> + 'a,
    ) -> Imap<'a, Output> {
        let decode: Decode<Output> = |_, output| Ok(output);
        Imap::new(
            self.dispatch(task.clone(), Box::new(payloads.into_iter())),
            decode,
        )
    }
}

/// Makes the queues and the shared region a pool or process group shares.
pub(crate) fn build_resources(
    engine: &wasmtime::Engine,
    queues: &[(String, usize)],
    shared_memory: Option<usize>,
) -> Result<Resources, Error> {
    let mut list: Vec<Arc<Queue>> = Vec::with_capacity(queues.len());
    for (name, capacity) in queues {
        if list.iter().any(|q| q.name() == name) {
            return Err(Error::Config(format!("queue {name:?} is declared twice")));
        }
        list.push(Arc::new(Queue::new(name.clone(), *capacity)));
    }
    let shm = shared_memory
        .map(|bytes| SharedRegion::new(engine, bytes))
        .transpose()?;
    Ok(Resources { queues: list, shm })
}

/// Links a module against WASI, the `wasmpool` ABI and, when there is one,
/// the shared region: the one place imports are resolved, for pools and
/// process groups alike.
pub(crate) fn link(
    engine: &wasmtime::Engine,
    module: &Module,
    resources: &Arc<Resources>,
    origin: &str,
) -> Result<wasmtime::InstancePre<StoreData>, Error> {
    let mut linker = Linker::<StoreData>::new(engine);
    wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |s: &mut StoreData| &mut s.wasi)
        .map_err(|e| Error::Host(format!("cannot link WASI: {e:#}")))?;
    abi::add_to_linker(&mut linker)
        .map_err(|e| Error::Host(format!("cannot link the ABI: {e:#}")))?;
    if let Some(region) = &resources.shm {
        define_shared(engine, &mut linker, region, resources)?;
    }
    linker
        .instantiate_pre(module)
        .map_err(|e| Error::Instantiate {
            origin: origin.to_string(),
            message: format!("{e:#}"),
        })
}

/// Offers the shared region as the import `wasmpool::shared`, for guests
/// that use it directly with wasm atomics.
fn define_shared(
    engine: &wasmtime::Engine,
    linker: &mut Linker<StoreData>,
    region: &SharedRegion,
    resources: &Arc<Resources>,
) -> Result<(), Error> {
    let scratch = wasmtime::Store::new(
        engine,
        StoreData::new(
            WorkerId { index: 0, count: 1 },
            Limits::default(),
            resources.clone(),
            crate::sandbox::sealed_wasi(),
        ),
    );
    linker
        .define(&scratch, abi::MODULE, "shared", region.memory().clone())
        .map(|_| ())
        .map_err(|e| Error::Host(format!("cannot offer the shared region: {e:#}")))
}

impl Drop for Pool {
    fn drop(&mut self) {
        // Closing the channel ends each worker's loop once it is drained.
        self.jobs = None;
        for handle in self.threads.drain(..) {
            let _ = handle.join();
        }
        // Stop the ticker last: draining workers may still need their timeouts.
        self.ticker = None;
    }
}

/// A thread that advances an engine's epoch every [`EPOCH_TICK`] until it
/// is dropped.
struct Ticker {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Ticker {
    fn start(engine: &wasmtime::Engine) -> Result<Self, Error> {
        let (stop, stopped) = crossbeam_channel::bounded::<()>(0);
        let engine = engine.clone();
        let thread = std::thread::Builder::new()
            .name("wasmpool-epoch".into())
            .spawn(move || {
                while let Err(crossbeam_channel::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(EPOCH_TICK)
                {
                    engine.increment_epoch();
                }
            })
            .map_err(|e| Error::Host(format!("cannot start the epoch thread: {e}")))?;
        Ok(Ticker {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
