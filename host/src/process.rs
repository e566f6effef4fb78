//! Processes: Python's `multiprocessing.Process`, as isolated instances
//! running a WASI command (`_start`, or another export), each on its own
//! thread, sharing a group's queues and shared region.
//!
//! Entry points: [`ProcessGroup::builder`] compiles a module once and
//! declares what its processes are granted; [`ProcessGroup::spawn`] starts
//! one; [`Process`] joins it with a timeout, reports its exit status, or
//! terminates it.
//!
//! Termination: a process's engine has epoch interruption on, and every
//! store carries a deadline one epoch ahead with a callback that checks the
//! store's interruption flag. [`Process::terminate`] sets the flag and bumps
//! the epoch, so running wasm stops at its next loop back-edge or call, and a
//! host call that waits notices the flag within one wait slice. No ticker
//! thread is needed.

use std::io::Write;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll};
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::{Config, Engine, InstancePre, Store, UpdateDeadline};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

use crate::engine::{ModuleCache, Source, load_module};
use crate::error::{Error, Interrupted, TaskError, TaskErrorKind};
use crate::module::check_abi;
use crate::pool::{build_resources, link};
use crate::queue::Queue;
use crate::sandbox::{Limits, Resources, StoreData, WorkerId, classify};
use crate::shm::SharedRegion;

/// The exit code of a process that trapped (as `wasmtime run`: 128 + SIGABRT).
pub const EXIT_TRAP: i32 = 134;
/// The exit code of a terminated process (128 + SIGTERM).
pub const EXIT_TERMINATED: i32 = 143;

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
    /// `proc_exit(n)`, [`EXIT_TRAP`] after a trap, [`EXIT_TERMINATED`] after
    /// [`Process::terminate`].
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
                    _ => EXIT_TRAP,
                };
                let error = (code != 0).then_some(e);
                ExitStatus { code, error }
            }
        }
    }
}

/// Where a process's standard output and error go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Stdio {
    /// The host's stdout and stderr, a whole line at a time, so that lines
    /// from processes running side by side never mix.
    #[default]
    Lines,
    /// Discarded.
    Null,
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
    source: Option<Source>,
    name: Option<String>,
    cache: Option<Option<ModuleCache>>,
    args: Vec<String>,
    env: Vec<(String, String)>,
    dirs: Vec<DirGrant>,
    inherit_stdin: bool,
    stdio: Stdio,
    entry: String,
    queues: Vec<(String, usize)>,
    shared_memory: Option<usize>,
    copies: u32,
}

impl ProcessGroupBuilder {
    /// The module, from a file.
    pub fn module_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.source = Some(Source::File(path.into()));
        self
    }

    /// The module, as binary or text bytes.
    pub fn module_bytes(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.source = Some(Source::Bytes(bytes.into()));
        self
    }

    /// The name errors use for the module.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// The module cache; `None` turns it off. Default: the default location.
    pub fn cache(mut self, cache: Option<ModuleCache>) -> Self {
        self.cache = Some(cache);
        self
    }

    /// The command line each process sees (`argv`, the program name first).
    /// `{i}` in an argument becomes the process's index. Default: none.
    pub fn args<S: Into<String>>(mut self, args: impl IntoIterator<Item = S>) -> Self {
        self.args = args.into_iter().map(Into::into).collect();
        self
    }

    /// Adds an environment variable. Every process also gets
    /// `WASMPOOL_INDEX` (its index) and `WASMPOOL_COUNT`.
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

    /// Declares a named queue shared by the group's processes and the host.
    pub fn queue(mut self, name: impl Into<String>, capacity: usize) -> Self {
        self.queues.push((name.into(), capacity));
        self
    }

    /// Gives the group one shared region of at least `bytes` bytes.
    pub fn shared_memory(mut self, bytes: usize) -> Self {
        self.shared_memory = Some(bytes);
        self
    }

    /// How many processes the group will run, what `worker_count()` and
    /// `WASMPOOL_COUNT` report. Default: 1.
    pub fn copies(mut self, n: u32) -> Self {
        self.copies = n.max(1);
        self
    }

    /// Compiles the module and prepares its imports.
    ///
    /// # Errors
    ///
    /// As [`PoolBuilder::build`](crate::PoolBuilder::build), plus a missing
    /// entry export or a directory that cannot be opened.
    pub fn build(self) -> Result<ProcessGroup, Error> {
        let (bytes, origin) = Source::read(self.source, self.name)?;
        let cache = self.cache.unwrap_or_else(ModuleCache::default_location);
        let mut config = Config::new();
        config.epoch_interruption(true);
        if self.shared_memory.is_some() {
            config.wasm_threads(true).shared_memory(true);
        }
        let engine = Engine::new(&config)
            .map_err(|e| Error::Host(format!("cannot create the engine: {e:#}")))?;
        let (module, _) = load_module(&engine, cache.as_ref(), &bytes, &origin)?;
        check_abi(&module, &origin)?;
        match module.get_export(&self.entry) {
            Some(wasmtime::ExternType::Func(ty))
                if ty.params().len() == 0 && ty.results().len() == 0 => {}
            Some(other) => {
                return Err(Error::NoSuchTask {
                    origin,
                    message: format!(
                        "entry export {} has type {other:?}, but it must be `() -> ()`",
                        self.entry
                    ),
                });
            }
            None => {
                return Err(Error::NoSuchTask {
                    origin,
                    message: format!(
                        "no export {} to run (a WASI command exports _start)",
                        self.entry
                    ),
                });
            }
        }
        for dir in &self.dirs {
            if !dir.host.is_dir() {
                return Err(Error::Config(format!(
                    "--dir {}: not a directory",
                    dir.host.display()
                )));
            }
        }
        let resources = Arc::new(build_resources(&engine, &self.queues, self.shared_memory)?);
        let pre = link(&engine, &module, &resources, &origin)?;
        Ok(ProcessGroup {
            inner: Arc::new(GroupInner {
                origin,
                engine,
                pre,
                resources,
                args: self.args,
                env: self.env,
                dirs: self.dirs,
                inherit_stdin: self.inherit_stdin,
                stdio: self.stdio,
                entry: self.entry,
                copies: self.copies,
            }),
        })
    }
}

struct GroupInner {
    origin: String,
    engine: Engine,
    pre: InstancePre<StoreData>,
    resources: Arc<Resources>,
    args: Vec<String>,
    env: Vec<(String, String)>,
    dirs: Vec<DirGrant>,
    inherit_stdin: bool,
    stdio: Stdio,
    entry: String,
    copies: u32,
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
            .field("module", &self.inner.origin)
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
            source: None,
            name: None,
            cache: None,
            args: Vec::new(),
            env: Vec::new(),
            dirs: Vec::new(),
            inherit_stdin: false,
            stdio: Stdio::Lines,
            entry: "_start".into(),
            queues: Vec::new(),
            shared_memory: None,
            copies: 1,
        }
    }

    /// The queue declared as `name`.
    ///
    /// ```
    /// # let group = wasmpool::ProcessGroup::builder().module_bytes(r#"(module (func (export "_start")))"#).queue("q", 4).cache(None).build().unwrap();
    /// assert!(group.queue("q").is_some());
    /// ```
    pub fn queue(&self, name: &str) -> Option<&Arc<Queue>> {
        self.inner
            .resources
            .queues
            .iter()
            .find(|q| q.name() == name)
    }

    /// The shared region, if the group has one.
    ///
    /// ```
    /// # let group = wasmpool::ProcessGroup::builder().module_bytes(r#"(module (func (export "_start")))"#).shared_memory(1).cache(None).build().unwrap();
    /// assert_eq!(group.shared_region().unwrap().len(), 65536);
    /// ```
    pub fn shared_region(&self) -> Option<&SharedRegion> {
        self.inner.resources.shm.as_ref()
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
        let args: Vec<String> = g
            .args
            .iter()
            .map(|a| a.replace("{i}", &index.to_string()))
            .collect();
        wasi.args(&args);
        for (k, v) in &g.env {
            wasi.env(k, v);
        }
        wasi.env("WASMPOOL_INDEX", index.to_string())
            .env("WASMPOOL_COUNT", g.copies.to_string());
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
        let (out, err) = match g.stdio {
            Stdio::Lines => (LineSink::new(false), LineSink::new(true)),
            Stdio::Null => (LineSink::null(), LineSink::null()),
        };
        wasi.stdout(out.clone()).stderr(err.clone());
        let data = StoreData::new(
            WorkerId {
                index,
                count: g.copies,
            },
            Limits::default(),
            g.resources.clone(),
            wasi.build_p1(),
        );
        let interrupt = data.interrupt.clone();
        let state = Arc::new(State {
            status: Mutex::new(None),
            done: Condvar::new(),
        });
        let inner = self.inner.clone();
        let st = state.clone();
        let thread = std::thread::Builder::new()
            .name(format!("wasmpool-process-{index}"))
            .spawn(move || {
                let result = run(&inner, data);
                out.finish();
                err.finish();
                *st.status.lock().unwrap_or_else(|e| e.into_inner()) =
                    Some(ExitStatus::from_result(result));
                st.done.notify_all();
            })
            .map_err(|e| Error::Host(format!("cannot start process thread {index}: {e}")))?;
        Ok(Process {
            index,
            engine: self.inner.engine.clone(),
            interrupt,
            state,
            thread: Some(thread),
        })
    }
}

fn run(g: &GroupInner, data: StoreData) -> Result<(), TaskError> {
    let mut store = Store::new(&g.engine, data);
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(|ctx| {
        if ctx.data().interrupt.load(Ordering::SeqCst) {
            Err(Interrupted.into())
        } else {
            Ok(UpdateDeadline::Continue(1))
        }
    });
    let call = |store: &mut Store<StoreData>| -> wasmtime::Result<()> {
        // A terminate that came before the deadline was set bumped an epoch
        // this store will never see: check the flag after setting it.
        if store.data().interrupt.load(Ordering::SeqCst) {
            return Err(Interrupted.into());
        }
        let instance = g.pre.instantiate(&mut *store)?;
        store.data_mut().memory = instance.get_memory(&mut *store, "memory");
        let entry = instance.get_typed_func::<(), ()>(&mut *store, &g.entry)?;
        entry.call(&mut *store, ())
    };
    call(&mut store).map_err(|e| classify(e, store.data_mut()))
}

struct State {
    status: Mutex<Option<ExitStatus>>,
    done: Condvar,
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
        self.state
            .status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_none()
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
        self.state
            .status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(ExitStatus::code)
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
        let guard = self.state.status.lock().unwrap_or_else(|e| e.into_inner());
        let guard = match timeout {
            None => self
                .state
                .done
                .wait_while(guard, |s| s.is_none())
                .unwrap_or_else(|e| e.into_inner()),
            Some(t) => {
                self.state
                    .done
                    .wait_timeout_while(guard, t, |s| s.is_none())
                    .unwrap_or_else(|e| e.into_inner())
                    .0
            }
        };
        guard.clone()
    }

    /// Waits for it to end, and for its thread.
    ///
    /// ```
    /// # let group = wasmpool::ProcessGroup::builder().module_bytes(r#"(module (func (export "_start")))"#).cache(None).build().unwrap();
    /// assert!(group.spawn(0).unwrap().wait().success());
    /// ```
    pub fn wait(mut self) -> ExitStatus {
        let status = self.join(None).expect("joined without a timeout");
        if let Some(t) = self.thread.take() {
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
    }
}

/// A guest output stream that writes whole lines to the host's stdout or
/// stderr, so lines of processes running side by side never interleave.
#[derive(Clone)]
struct LineSink {
    buf: Arc<Mutex<Vec<u8>>>,
    stderr: bool,
    null: bool,
}

impl LineSink {
    fn new(stderr: bool) -> Self {
        LineSink {
            buf: Arc::default(),
            stderr,
            null: false,
        }
    }

    fn null() -> Self {
        LineSink {
            buf: Arc::default(),
            stderr: false,
            null: true,
        }
    }

    fn emit(&self, bytes: &[u8]) {
        // A failed write to the host's own stdout (a closed pipe) cannot be
        // reported to anyone useful; the guest carries on.
        if self.stderr {
            let _ = std::io::stderr().lock().write_all(bytes);
        } else {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(bytes).and_then(|()| out.flush());
        }
    }

    fn write(&self, data: &[u8]) {
        if self.null {
            return;
        }
        let mut buf = self.buf.lock().unwrap_or_else(|e| e.into_inner());
        buf.extend_from_slice(data);
        if let Some(last) = buf.iter().rposition(|&b| b == b'\n') {
            let rest = buf.split_off(last + 1);
            let lines = std::mem::replace(&mut *buf, rest);
            drop(buf);
            self.emit(&lines);
        }
    }

    /// Writes what is left of an unfinished last line.
    fn finish(&self) {
        let rest = std::mem::take(&mut *self.buf.lock().unwrap_or_else(|e| e.into_inner()));
        if !rest.is_empty() && !self.null {
            self.emit(&rest);
        }
    }
}

impl IsTerminal for LineSink {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LineSink {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl tokio::io::AsyncWrite for LineSink {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.write(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
