//! Processes: Python's `multiprocessing.Process`, as isolated instances
//! running a WASI command (`_start`, or another export), each on its own
//! thread, sharing a group's queues and shared region.
//!
//! Entry points: [`ProcessGroup::builder`] compiles a module once and
//! declares what its processes are granted and what they may use (the same
//! [`Limits`](crate::Limits) as pools); [`ProcessGroup::spawn`] starts one;
//! [`Process`] joins it with a timeout, reports its exit status, or
//! terminates it.
//!
//! Processes run on the same execution core as pools (`runtime.rs`,
//! `sandbox.rs`) and under the same interruption policy (`limits.rs`):
//! [`Process::terminate`] sets the store's flag and bumps the epoch, so
//! running wasm stops at its next epoch check and a host call that waits
//! notices within one wait slice; a process stuck where nothing can
//! interrupt it is reported as ended 50 ms later and its thread left behind.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use wasmtime::Engine;
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

use futures_util::FutureExt;

use crate::engine::Allocation;
use crate::error::{Error, TaskError, TaskErrorKind};
use crate::queue::Queue;
use crate::runtime::{Runtime, Setup, shared_setters};
use crate::sandbox::WorkerId;
use crate::shm::SharedRegion;
use crate::stdio::{LineSink, Stdio, Target};
use crate::watchdog::{GRACE, Watchdog, WatchedPolls};

/// The exit code of a process that trapped (as `wasmtime run`: 128 + SIGABRT).
pub const EXIT_TRAP: i32 = 134;
/// The exit code of a terminated process (128 + SIGTERM).
pub const EXIT_TERMINATED: i32 = 143;
/// The exit code of a process that ran past its time limit (as GNU
/// `timeout`).
pub const EXIT_TIMEOUT: i32 = 124;

/// How a process ended.
///
/// ```
/// # use wasmpool::ProcessGroup;
/// let group = ProcessGroup::builder()
///     .module_bytes(r#"(module (func (export "_start")))"#)
///     .cache(None)
///     .build()
///     .unwrap();
/// let status = group.spawn(0).unwrap().wait();
/// assert!(status.success());
/// assert_eq!(status.code(), 0);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExitStatus {
    code: i32,
    error: Option<TaskError>,
}

impl ExitStatus {
    /// The exit code: 0 when the entry point returned, `n` after
    /// `proc_exit(n)`, [`EXIT_TRAP`] after a trap (and running out of memory
    /// or fuel), [`EXIT_TIMEOUT`] past the time limit, [`EXIT_TERMINATED`]
    /// after [`Process::terminate`].
    pub fn code(&self) -> i32 {
        self.code
    }

    /// Whether the code is 0.
    pub fn success(&self) -> bool {
        self.code == 0
    }

    /// What went wrong, for a trap, a termination or a non-zero exit.
    pub fn error(&self) -> Option<&TaskError> {
        self.error.as_ref()
    }

    fn from_result(result: Result<(), TaskError>) -> Self {
        match result {
            Ok(()) => ExitStatus {
                code: 0,
                error: None,
            },
            Err(e) => {
                let code = match e.kind() {
                    TaskErrorKind::Exit => e.exit_code().unwrap_or(1),
                    TaskErrorKind::Terminated => EXIT_TERMINATED,
                    TaskErrorKind::Timeout => EXIT_TIMEOUT,
                    _ => EXIT_TRAP,
                };
                let error = (code != 0).then_some(e);
                ExitStatus { code, error }
            }
        }
    }
}

/// A directory a process may see.
#[derive(Debug, Clone)]
struct DirGrant {
    host: PathBuf,
    guest: String,
    read_only: bool,
}

/// Configures a [`ProcessGroup`].
///
/// Nothing of the host is visible unless granted: arguments, environment
/// variables and directories are given here, per group.
///
/// ```no_run
/// # fn main() -> Result<(), wasmpool::Error> {
/// let group = wasmpool::ProcessGroup::builder()
///     .module_file("hello.wasm")
///     .args(["hello.wasm", "copy-{i}"])
///     .env("GREETING", "hi")
///     .dir("data", "/data", true)
///     .build()?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
#[must_use = "a builder does nothing until .build()"]
pub struct ProcessGroupBuilder {
    setup: Setup,
    args: Vec<String>,
    env: Vec<(String, String)>,
    dirs: Vec<DirGrant>,
    inherit_stdin: bool,
    stdio: Stdio,
    entry: String,
    copies: Option<u32>,
}

shared_setters!(ProcessGroupBuilder, "ProcessGroup");

impl ProcessGroupBuilder {
    /// The command line each process sees (`argv`, the program name first).
    /// `{i}` in an argument becomes the process's index. Default: none.
    pub fn args<S: Into<String>>(mut self, args: impl IntoIterator<Item = S>) -> Self {
        self.args = args.into_iter().map(Into::into).collect();
        self
    }

    /// Adds an environment variable. Once [`copies`](Self::copies) is set,
    /// every process also gets `WASMPOOL_INDEX` (its index) and
    /// `WASMPOOL_COUNT`; without it, the environment is exactly what is
    /// granted here, as under `wasmtime run`.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Grants the host directory `host` as `guest` inside, read-only or not.
    pub fn dir(
        mut self,
        host: impl Into<PathBuf>,
        guest: impl Into<String>,
        read_only: bool,
    ) -> Self {
        self.dirs.push(DirGrant {
            host: host.into(),
            guest: guest.into(),
            read_only,
        });
        self
    }

    /// Whether processes read the host's stdin. Default: no (stdin is empty).
    pub fn inherit_stdin(mut self, yes: bool) -> Self {
        self.inherit_stdin = yes;
        self
    }

    /// Where output goes. Default: [`Stdio::Lines`].
    pub fn stdio(mut self, stdio: Stdio) -> Self {
        self.stdio = stdio;
        self
    }

    /// The export each process runs, of type `() -> ()`. Default: `_start`.
    pub fn entry(mut self, export: impl Into<String>) -> Self {
        self.entry = export.into();
        self
    }

    /// How many processes the group will run, what `worker_count()` and
    /// `WASMPOOL_COUNT` report; setting it also gives each process
    /// `WASMPOOL_INDEX` and `WASMPOOL_COUNT`, and, when more than one, ends
    /// each one's unfinished last line at exit so that no two copies' lines
    /// are glued together. Default: one, with neither variable.
    pub fn copies(mut self, n: u32) -> Self {
        self.copies = Some(n.max(1));
        self
    }

    /// Compiles the module and prepares its imports.
    ///
    /// # Errors
    ///
    /// As [`PoolBuilder::build`](crate::PoolBuilder::build), plus a missing
    /// entry export or a directory that cannot be opened.
    pub fn build(self) -> Result<ProcessGroup, Error> {
        let (runtime, watchdog) = Runtime::new(self.setup, Allocation::OnDemand, true)?;
        let origin = &runtime.program.origin;
        let no_entry = |message: String| Error::NoSuchTask {
            origin: origin.clone(),
            message,
        };
        match runtime.program.module().get_export(&self.entry) {
            Some(wasmtime::ExternType::Func(ty))
                if ty.params().len() == 0 && ty.results().len() == 0 => {}
            Some(other) => {
                return Err(no_entry(format!(
                    "entry export {} has type {other:?}, but it must be `() -> ()`",
                    self.entry
                )));
            }
            None => {
                let tasks = crate::ModuleInfo::of(runtime.program.module()).tasks;
                let what = if tasks.is_empty() {
                    "a WASI command exports _start".to_string()
                } else {
                    format!(
                        "this is a task module, run by a pool: {}",
                        crate::module::task_list(&tasks)
                    )
                };
                return Err(no_entry(format!(
                    "no export {} to run ({what})",
                    self.entry
                )));
            }
        }
        let executor = match runtime.concurrency {
            None => None,
            Some(0) => {
                return Err(Error::Config("the concurrency must be at least 1".into()));
            }
            Some(n) => Some(Executor::new(n)?),
        };
        for dir in &self.dirs {
            if !dir.host.is_dir() {
                return Err(Error::Config(format!(
                    "--dir {}: not a directory",
                    dir.host.display()
                )));
            }
        }
        Ok(ProcessGroup {
            inner: Arc::new(GroupInner {
                runtime,
                watchdog,
                args: self.args,
                env: self.env,
                dirs: self.dirs,
                inherit_stdin: self.inherit_stdin,
                stdio: self.stdio,
                entry: self.entry,
                copies: self.copies,
                executor,
            }),
        })
    }
}

/// Where the processes of an async group run (`ProcessGroupBuilder::concurrency`):
/// a tokio runtime with one thread per core, and a limit on the processes
/// running at once (the others wait for a place before they start).
struct Executor {
    runtime: Option<tokio::runtime::Runtime>,
    places: Arc<tokio::sync::Semaphore>,
}

impl Executor {
    fn new(concurrency: u32) -> Result<Self, Error> {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("wasmpool-process")
            .enable_time()
            .build()
            .map_err(|e| Error::Host(format!("cannot start the async runtime: {e}")))?;
        let places = (concurrency as usize)
            .saturating_mul(threads)
            .min(tokio::sync::Semaphore::MAX_PERMITS);
        Ok(Executor {
            runtime: Some(runtime),
            places: Arc::new(tokio::sync::Semaphore::new(places)),
        })
    }
}

impl Drop for Executor {
    fn drop(&mut self) {
        // The last reference may go away on one of the runtime's own
        // threads (a process's future holds the group): shut down without
        // blocking there.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

struct GroupInner {
    runtime: Runtime,
    /// Keeps time and rescues stuck processes, when they have a time limit.
    watchdog: Option<Watchdog>,
    args: Vec<String>,
    env: Vec<(String, String)>,
    dirs: Vec<DirGrant>,
    inherit_stdin: bool,
    stdio: Stdio,
    entry: String,
    copies: Option<u32>,
    /// `Some` in the async mode.
    executor: Option<Executor>,
}

/// A compiled module and what its processes share: queues, a shared region,
/// the grants of the builder. Python's `Process`es over one target.
///
/// ```no_run
/// # fn main() -> Result<(), wasmpool::Error> {
/// let group = wasmpool::ProcessGroup::builder().module_file("worker.wasm").copies(5).build()?;
/// let procs: Vec<_> = (0..5).map(|i| group.spawn(i)).collect::<Result<_, _>>()?;
/// for p in procs {
///     assert!(p.wait().success());
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct ProcessGroup {
    inner: Arc<GroupInner>,
}

impl std::fmt::Debug for ProcessGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessGroup")
            .field("module", &self.inner.runtime.program.origin)
            .finish_non_exhaustive()
    }
}

impl ProcessGroup {
    /// Starts configuring a group.
    ///
    /// ```
    /// let builder = wasmpool::ProcessGroup::builder().module_file("hello.wasm").copies(5);
    /// ```
    pub fn builder() -> ProcessGroupBuilder {
        ProcessGroupBuilder {
            setup: Setup::default(),
            args: Vec::new(),
            env: Vec::new(),
            dirs: Vec::new(),
            inherit_stdin: false,
            stdio: Stdio::Lines,
            entry: "_start".into(),
            copies: None,
        }
    }

    /// The queue declared as `name`.
    ///
    /// ```
    /// # let group = wasmpool::ProcessGroup::builder().module_bytes(r#"(module (func (export "_start")))"#).queue("q", 4).cache(None).build().unwrap();
    /// assert!(group.queue("q").is_some());
    /// ```
    pub fn queue(&self, name: &str) -> Option<&Arc<Queue>> {
        self.inner.runtime.queue(name)
    }

    /// The shared region, if the group has one.
    ///
    /// ```
    /// # let group = wasmpool::ProcessGroup::builder().module_bytes(r#"(module (func (export "_start")))"#).shared_memory(1).cache(None).build().unwrap();
    /// assert_eq!(group.shared_region().unwrap().len(), 65536);
    /// ```
    pub fn shared_region(&self) -> Option<&SharedRegion> {
        self.inner.runtime.shared_region()
    }

    /// Starts process `index` on its own thread (its `worker_index()`,
    /// `WASMPOOL_INDEX` and `{i}` in its arguments).
    ///
    /// ```
    /// # let group = wasmpool::ProcessGroup::builder().module_bytes(r#"(module (func (export "_start")))"#).cache(None).build().unwrap();
    /// let p = group.spawn(0).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Host`] when the thread or the WASI context cannot be created.
    pub fn spawn(&self, index: u32) -> Result<Process, Error> {
        let g = &self.inner;
        let mut wasi = WasiCtxBuilder::new();
        wasi.monotonic_clock(crate::abi::wasi::MonotonicClock);
        let args: Vec<String> = g
            .args
            .iter()
            .map(|a| a.replace("{i}", &index.to_string()))
            .collect();
        wasi.args(&args);
        for (k, v) in &g.env {
            // With copies, wasmpool's own index and count are the truth.
            let ours = g.copies.is_some() && (k == "WASMPOOL_INDEX" || k == "WASMPOOL_COUNT");
            if !ours {
                wasi.env(k, v);
            }
        }
        if let Some(count) = g.copies {
            wasi.env("WASMPOOL_INDEX", index.to_string())
                .env("WASMPOOL_COUNT", count.to_string());
        }
        for d in &g.dirs {
            let perms = if d.read_only {
                FsPerms::ReadOnly
            } else {
                FsPerms::ReadWrite
            };
            wasi.preopened_dir(&d.host, &d.guest, perms)
                .map_err(|e| Error::Host(format!("--dir {}: {e:#}", d.host.display())))?;
        }
        if g.inherit_stdin {
            wasi.inherit_stdin();
        }
        let shared_output = g.copies.is_some_and(|n| n > 1);
        let (out, err) = match g.stdio {
            Stdio::Lines | Stdio::Tagged => (Target::Stdout, Target::Stderr),
            Stdio::Null => (Target::Null, Target::Null),
        };
        let (mut out, mut err) = (
            LineSink::new(out, shared_output),
            LineSink::keeping_tail(err, shared_output),
        );
        if g.stdio == Stdio::Tagged {
            out = out.with_prefix(format!("{index}\t"));
            err = err.with_prefix(format!("{index}\t"));
        }
        wasi.stdout(out.clone()).stderr(err.clone());
        let wasi = Some(wasi.build_p1());
        let interrupt = Arc::new(AtomicBool::new(false));
        let state = Arc::new(State::default());
        // In the async mode the watch is armed around each poll of the
        // process's future (a thread blocked in a wasm atomic wait cannot
        // reach its timer), and the shared region is woken so that the
        // blocked runtime thread comes back.
        let region = g.executor.as_ref().and(g.runtime.shared_region().cloned());
        let watch = g.watchdog.as_ref().filter(|_| g.runtime.limits.timeout.is_some()).map(|w| {
            let state = state.clone();
            let limit = g.runtime.limits.timeout.unwrap_or_default();
            w.registry().watch(move |_, _| {
                state.end(
                    Err(TaskError::new(
                        TaskErrorKind::Timeout,
                        format!(
                            "the process ran past its time limit of {limit:?}, in a wait nothing could interrupt; it was abandoned"
                        ),
                    )),
                    true,
                );
                if let Some(region) = region.clone() {
                    let _ = std::thread::Builder::new()
                        .name("wasmpool-reclaim".into())
                        .spawn(move || region.wake_all());
                }
            })
        });
        let inner = self.inner.clone();
        let st = state.clone();
        let interrupt_flag = interrupt.clone();
        let worker = WorkerId {
            index,
            count: g.copies.unwrap_or(1),
        };
        if let Some(executor) = &g.executor {
            let places = executor.places.clone();
            let runtime = executor.runtime.as_ref().expect("taken only on drop");
            runtime.spawn(async move {
                // Waiting for a place is not running: the time limit starts
                // with the process.
                let Ok(_place) = places.acquire_owned().await else {
                    return;
                };
                let deadline = inner.runtime.limits.deadline();
                let run = WatchedPolls {
                    inner: Box::pin(async {
                        let mut guest = inner
                            .runtime
                            .guest_async(worker, wasi, interrupt_flag, deadline)
                            .await?;
                        guest.run_entry_async(&inner.entry, deadline).await
                    }),
                    watch: watch.clone(),
                    deadline,
                };
                let result = match deadline.and_then(|d| d.checked_add(GRACE)) {
                    None => AssertUnwindSafe(run).catch_unwind().await,
                    Some(at) => {
                        tokio::time::timeout_at(at.into(), AssertUnwindSafe(run).catch_unwind())
                            .await
                            .unwrap_or_else(|_| {
                                Ok(Err(TaskError::new(
                                    TaskErrorKind::Timeout,
                                    format!(
                                        "the process ran past its time limit of {:?}",
                                        inner.runtime.limits.timeout.unwrap_or_default()
                                    ),
                                )))
                            })
                    }
                }
                .unwrap_or_else(|_| {
                    Err(TaskError::new(
                        TaskErrorKind::Host,
                        "the host panicked running this process (a bug in wasmpool)",
                    ))
                });
                out.finish();
                err.finish();
                st.end(result.map_err(|e| with_panic_message(e, &err)), false);
            });
            return Ok(Process {
                index,
                engine: self.inner.runtime.engine.clone(),
                interrupt,
                state,
                thread: None,
            });
        }
        let thread = std::thread::Builder::new()
            .name(format!("wasmpool-process-{index}"))
            .stack_size(g.runtime.limits.thread_stack())
            .spawn(move || {
                let deadline = inner.runtime.limits.deadline();
                if let (Some(w), Some(d)) = (&watch, deadline) {
                    w.arm(d);
                }
                let result = catch_unwind(AssertUnwindSafe(|| {
                    let mut guest = inner
                        .runtime
                        .guest(worker, wasi, interrupt_flag, deadline)?;
                    guest.run_entry(&inner.entry, deadline)
                }))
                .unwrap_or_else(|_| {
                    Err(TaskError::new(
                        TaskErrorKind::Host,
                        "the host panicked running this process (a bug in wasmpool)",
                    ))
                });
                if let Some(w) = &watch {
                    w.disarm();
                }
                out.finish();
                err.finish();
                st.end(result.map_err(|e| with_panic_message(e, &err)), false);
            })
            .map_err(|e| Error::Host(format!("cannot start process thread {index}: {e}")))?;
        Ok(Process {
            index,
            engine: self.inner.runtime.engine.clone(),
            interrupt,
            state,
            thread: Some(thread),
        })
    }
}

/// A trap of a Rust command names the panic it printed, as a task's trap
/// names its panic (the SDK's hook reports it; a plain command only prints
/// it to stderr).
fn with_panic_message(error: TaskError, stderr: &LineSink) -> TaskError {
    if error.kind() != TaskErrorKind::Trap || !error.message().starts_with("wasm trap") {
        return error;
    }
    match stderr.panic_message() {
        Some(panic) => TaskError::new(
            TaskErrorKind::Trap,
            format!("{panic} ({})", error.message()),
        )
        .with_backtrace(error.backtrace().map(str::to_string)),
        None => error,
    }
}

/// How a process stands, shared by its thread, its handle and the watchdog.
#[derive(Default)]
struct State {
    inner: Mutex<StateInner>,
    done: Condvar,
}

#[derive(Default)]
struct StateInner {
    status: Option<ExitStatus>,
    /// Its thread is stuck and was left behind: do not join it.
    abandoned: bool,
    /// When `terminate` was called.
    terminated_at: Option<Instant>,
}

impl State {
    fn lock(&self) -> MutexGuard<'_, StateInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records how the process ended, unless that is known already.
    fn end(&self, result: Result<(), TaskError>, abandoned: bool) {
        let mut s = self.lock();
        if s.status.is_none() {
            s.status = Some(ExitStatus::from_result(result));
            s.abandoned = abandoned;
        }
        drop(s);
        self.done.notify_all();
    }
}

/// A running (or finished) process.
///
/// # Drop
///
/// Dropping a `Process` does not stop it: it runs to completion on its own
/// thread, like a Python process that is never joined. Call
/// [`terminate`](Self::terminate) first to stop it.
pub struct Process {
    index: u32,
    engine: Engine,
    interrupt: Arc<AtomicBool>,
    state: Arc<State>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Process {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Process")
            .field("index", &self.index)
            .field("alive", &self.is_alive())
            .finish()
    }
}

impl Process {
    /// The index the process was spawned with.
    ///
    /// ```
    /// # let group = wasmpool::ProcessGroup::builder().module_bytes(r#"(module (func (export "_start")))"#).cache(None).build().unwrap();
    /// assert_eq!(group.spawn(3).unwrap().index(), 3);
    /// ```
    pub fn index(&self) -> u32 {
        self.index
    }

    /// Whether it is still running.
    ///
    /// ```
    /// # let group = wasmpool::ProcessGroup::builder().module_bytes(r#"(module (func (export "_start") (loop br 0)))"#).cache(None).build().unwrap();
    /// let p = group.spawn(0).unwrap();
    /// assert!(p.is_alive());
    /// p.terminate();
    /// ```
    pub fn is_alive(&self) -> bool {
        self.join(Some(Duration::ZERO)).is_none()
    }

    /// Its exit code, once it has ended.
    ///
    /// ```
    /// # let group = wasmpool::ProcessGroup::builder().module_bytes(r#"(module (func (export "_start")))"#).cache(None).build().unwrap();
    /// let p = group.spawn(0).unwrap();
    /// p.join(None);
    /// assert_eq!(p.exit_code(), Some(0));
    /// ```
    pub fn exit_code(&self) -> Option<i32> {
        self.join(Some(Duration::ZERO)).map(|s| s.code())
    }

    /// Waits up to `timeout` (`None`: forever) for it to end; `None` if it is
    /// still running.
    ///
    /// ```
    /// # let group = wasmpool::ProcessGroup::builder().module_bytes(r#"(module (func (export "_start") (loop br 0)))"#).cache(None).build().unwrap();
    /// let p = group.spawn(0).unwrap();
    /// assert!(p.join(Some(std::time::Duration::from_millis(10))).is_none());
    /// p.terminate();
    /// assert!(p.join(None).is_some());
    /// ```
    pub fn join(&self, timeout: Option<Duration>) -> Option<ExitStatus> {
        let give_up = timeout.and_then(|t| Instant::now().checked_add(t));
        let mut s = self.state.lock();
        loop {
            if let Some(status) = &s.status {
                return Some(status.clone());
            }
            // Terminated, but stuck where nothing interrupts it: it counts as
            // ended, and its thread is left behind.
            if let Some(at) = s.terminated_at
                && at.elapsed() >= GRACE
            {
                s.status = Some(ExitStatus::from_result(Err(TaskError::new(
                    TaskErrorKind::Terminated,
                    "terminated by the host (it was stuck in a wait nothing could interrupt, and was abandoned)",
                ))));
                s.abandoned = true;
                continue;
            }
            let mut wait = give_up.map_or(Duration::from_secs(3600), |g| {
                g.saturating_duration_since(Instant::now())
            });
            if let Some(at) = s.terminated_at {
                wait = wait.min(GRACE.saturating_sub(at.elapsed()));
            }
            if wait.is_zero() && give_up.is_some_and(|g| Instant::now() >= g) {
                return None;
            }
            s = self
                .state
                .done
                .wait_timeout(s, wait)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Waits for it to end, and for its thread.
    ///
    /// ```
    /// # let group = wasmpool::ProcessGroup::builder().module_bytes(r#"(module (func (export "_start")))"#).cache(None).build().unwrap();
    /// assert!(group.spawn(0).unwrap().wait().success());
    /// ```
    pub fn wait(mut self) -> ExitStatus {
        let status = self.join(None).expect("joined without a timeout");
        if let Some(t) = self.thread.take()
            && !self.state.lock().abandoned
        {
            let _ = t.join();
        }
        status
    }

    /// Stops it promptly: running wasm traps at its next epoch check, and a
    /// wait in a host call ends within one wait slice. Its exit code becomes
    /// [`EXIT_TERMINATED`] (unless it had already ended).
    ///
    /// ```
    /// let group = wasmpool::ProcessGroup::builder()
    ///     .module_bytes(r#"(module (func (export "_start") (loop br 0)))"#)
    ///     .cache(None)
    ///     .build()
    ///     .unwrap();
    /// let p = group.spawn(0).unwrap();
    /// p.terminate();
    /// assert_eq!(p.wait().code(), wasmpool::EXIT_TERMINATED);
    /// ```
    pub fn terminate(&self) {
        self.interrupt.store(true, Ordering::SeqCst);
        self.engine.increment_epoch();
        self.state
            .lock()
            .terminated_at
            .get_or_insert_with(Instant::now);
        self.state.done.notify_all();
    }
}
