//! The execution core that pools and process groups share: what their
//! builders hold in common ([`Setup`], and one set of setters for both),
//! and what it builds ([`Runtime`]): the engine, the program, its imports
//! linked once into an `InstancePre`, the queues and the shared region.
//!
//! Data flows one way: a front end (`Pool`, `ProcessGroup`, the CLI) fills
//! in a `Setup`; `Runtime::new` makes the engine (`engine.rs`, the only
//! `Config`), loads the program (`program.rs`) and links it (here, the only
//! linker); `Runtime::guest` makes each instance (`sandbox.rs`, the only
//! `Store`); the limits travel down with it (`limits.rs`).

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use wasmtime::{Engine, InstancePre, Linker};
use wasmtime_wasi::p1::WasiP1Ctx;

use crate::abi;
use crate::engine::{Allocation, EngineOptions, Mode, ModuleCache};
use crate::error::{Error, TaskError};
use crate::hostfn::HostFns;
use crate::limits::Limits;
use crate::program::{Program, Source};
use crate::queue::Queue;
use crate::sandbox::{Guest, GuestParts, Resources, StoreData, WorkerId};
use crate::shm::SharedRegion;
use crate::watchdog::Watchdog;

/// The default byte budget of a queue: what its waiting messages may hold
/// in all.
pub const DEFAULT_QUEUE_BYTES: usize = 64 << 20;

/// A queue to declare.
#[derive(Debug, Clone)]
pub(crate) struct QueueSpec {
    pub(crate) name: String,
    pub(crate) capacity: usize,
    pub(crate) max_bytes: usize,
}

/// What the pool and process-group builders hold in common.
#[derive(Debug, Clone, Default)]
pub(crate) struct Setup {
    pub(crate) source: Option<Source>,
    pub(crate) name: Option<String>,
    /// `None`: the default location; `Some(None)`: no cache.
    pub(crate) cache: Option<Option<ModuleCache>>,
    pub(crate) limits: Limits,
    pub(crate) queues: Vec<QueueSpec>,
    pub(crate) shared_memory: Option<usize>,
    /// The embedder's host functions.
    pub(crate) host_fns: HostFns,
    /// Tasks in flight at once on each worker (async mode); `None`: the
    /// synchronous mode.
    pub(crate) concurrency: Option<u32>,
    /// Whether a precompiled module (`.cwasm`) may be loaded.
    pub(crate) allow_precompiled: bool,
    /// Whether instances are replaced after some tasks (`Isolation::Task`,
    /// `recycle_after`): they are then rewound instead where the module
    /// allows (`rewind.rs`).
    pub(crate) rewind: bool,
}

/// The setters [`PoolBuilder`](crate::PoolBuilder) and
/// [`ProcessGroupBuilder`](crate::ProcessGroupBuilder) share, written once:
/// each builder has a `setup: Setup` field.
macro_rules! shared_setters {
    ($builder:ident, $owner:literal) => {
        impl $builder {
            /// The module to run, read from a `.wasm` (or `.wat`) file at
            /// `build` (at most [`MAX_MODULE_SIZE`](crate::MAX_MODULE_SIZE)
            /// bytes).
            ///
            /// ```no_run
            #[doc = concat!("let builder = wasmpool::", $owner, "::builder().module_file(\"primes.wasm\");")]
            /// ```
            pub fn module_file(mut self, path: impl Into<std::path::PathBuf>) -> Self {
                self.setup.source = Some($crate::program::Source::File(path.into()));
                self
            }

            /// The module to run, as binary or text (WAT) bytes. Errors name
            /// it `<bytes>` unless [`name`](Self::name) says otherwise.
            ///
            /// ```
            #[doc = concat!("let builder = wasmpool::", $owner, "::builder().module_bytes(\"(module)\");")]
            /// ```
            pub fn module_bytes(mut self, bytes: impl Into<Vec<u8>>) -> Self {
                self.setup.source = Some($crate::program::Source::Bytes(bytes.into()));
                self
            }

            /// Allows the module source to be a precompiled module (a
            /// `.cwasm` file made by [`Precompiler`](crate::Precompiler) or
            /// `wasmpool compile`), which loads without compiling. Without
            /// it, a precompiled module is refused with [`Error::NotWasm`](crate::Error::NotWasm).
            /// A wasm module loads the same either way. Default: `false`.
            ///
            /// # Safety
            ///
            /// A precompiled module is machine code, and it runs as it is:
            /// unlike wasm it is not validated, so a forged one can do
            /// anything this process can. With this on, the module source
            /// must be one you trust as you trust your own binaries: made
            /// by [`Precompiler`](crate::Precompiler) from a module you
            /// would run, and not altered since. (A file from another
            /// version of wasmpool or wasmtime, or compiled with other
            /// settings, is refused with
            /// [`Error::Precompiled`](crate::Error::Precompiled); that check
            /// reads the file's header, not its code.)
            ///
            /// ```no_run
            /// // SAFETY: primes.cwasm was made by `wasmpool compile` on this machine.
            #[doc = concat!("let builder = unsafe { wasmpool::", $owner, "::builder().allow_precompiled(true) }")]
            ///     .module_file("primes.cwasm");
            /// ```
            pub unsafe fn allow_precompiled(mut self, allow: bool) -> Self {
                self.setup.allow_precompiled = allow;
                self
            }

            /// The name errors use for the module. Default: the file's path,
            /// or `<bytes>`.
            ///
            /// ```
            #[doc = concat!("let err = wasmpool::", $owner, "::builder().module_bytes(\"nonsense\").name(\"mine.wasm\").build().unwrap_err();")]
            /// assert!(err.to_string().starts_with("mine.wasm: "), "{err}");
            /// ```
            pub fn name(mut self, name: impl Into<String>) -> Self {
                self.setup.name = Some(name.into());
                self
            }

            /// Where compiled modules are cached; `None` turns the cache off.
            /// Default: [`ModuleCache::default_location`](crate::ModuleCache::default_location).
            ///
            /// ```no_run
            #[doc = concat!("let builder = wasmpool::", $owner, "::builder()")]
            ///     .module_file("primes.wasm")
            ///     .cache(Some(wasmpool::ModuleCache::new("/tmp/cache")));
            /// ```
            pub fn cache(mut self, cache: Option<$crate::ModuleCache>) -> Self {
                self.setup.cache = Some(cache);
                self
            }

            /// All the [`Limits`](crate::Limits) at once, replacing any set
            /// before. Default: `Limits::default()`.
            ///
            /// ```no_run
            /// let mut limits = wasmpool::Limits::default();
            /// limits.fuel = Some(1_000_000);
            #[doc = concat!("let builder = wasmpool::", $owner, "::builder().module_file(\"m.wasm\").limits(limits);")]
            /// ```
            pub fn limits(mut self, limits: $crate::Limits) -> Self {
                self.setup.limits = limits;
                self
            }

            /// The most bytes each instance's own linear memory may grow to
            /// ([`Limits::max_memory`](crate::Limits::max_memory)). Default:
            /// no limit beyond wasm32's 4 GiB.
            ///
            /// ```no_run
            #[doc = concat!("let builder = wasmpool::", $owner, "::builder().module_file(\"m.wasm\").max_memory(256 << 20);")]
            /// ```
            pub fn max_memory(mut self, bytes: usize) -> Self {
                self.setup.limits.max_memory = Some(bytes);
                self
            }

            /// The most time one task or process may run, wherever it waits
            /// ([`Limits::timeout`](crate::Limits::timeout)). Default: none.
            ///
            /// ```no_run
            #[doc = concat!("let builder = wasmpool::", $owner, "::builder().module_file(\"m.wasm\").timeout(std::time::Duration::from_secs(5));")]
            /// ```
            pub fn timeout(mut self, limit: std::time::Duration) -> Self {
                self.setup.limits.timeout = Some(limit);
                self
            }

            /// The fuel each task or process starts with
            /// ([`Limits::fuel`](crate::Limits::fuel)). Default: off.
            ///
            /// ```no_run
            #[doc = concat!("let builder = wasmpool::", $owner, "::builder().module_file(\"m.wasm\").fuel(10_000_000);")]
            /// ```
            pub fn fuel(mut self, units: u64) -> Self {
                self.setup.limits.fuel = Some(units);
                self
            }

            /// The most stack wasm code may use, in bytes
            /// ([`Limits::max_stack`](crate::Limits::max_stack)). Default:
            /// wasmtime's 512 KiB.
            ///
            /// ```no_run
            #[doc = concat!("let builder = wasmpool::", $owner, "::builder().module_file(\"m.wasm\").max_stack(1 << 20);")]
            /// ```
            pub fn max_stack(mut self, bytes: usize) -> Self {
                self.setup.limits.max_stack = Some(bytes);
                self
            }

            /// The most elements a table may grow to
            /// ([`Limits::max_table_elements`](crate::Limits::max_table_elements)).
            /// Default: 20,000.
            ///
            /// ```no_run
            #[doc = concat!("let builder = wasmpool::", $owner, "::builder().module_file(\"m.wasm\").max_table_elements(1000);")]
            /// ```
            pub fn max_table_elements(mut self, elements: usize) -> Self {
                self.setup.limits.max_table_elements = elements;
                self
            }

            /// The most bytes one task may output
            /// ([`Limits::max_output`](crate::Limits::max_output)). Default:
            /// 64 MiB.
            ///
            /// ```no_run
            #[doc = concat!("let builder = wasmpool::", $owner, "::builder().module_file(\"m.wasm\").max_output(1 << 20);")]
            /// ```
            pub fn max_output(mut self, bytes: usize) -> Self {
                self.setup.limits.max_output = bytes;
                self
            }

            /// Declares a named queue holding at most `capacity` messages and
            /// [`DEFAULT_QUEUE_BYTES`](crate::DEFAULT_QUEUE_BYTES) in all,
            /// shared by every instance and by the host. Guests open it by
            /// name.
            ///
            /// ```
            #[doc = concat!("let runner = wasmpool::", $owner, "::builder()")]
            ///     .module_bytes(r#"(module (func (export "_start")))"#)
            ///     .queue("results", 1000)
            ///     .cache(None)
            ///     .build()
            ///     .unwrap();
            /// runner.queue("results").unwrap().put(b"42".to_vec(), None).unwrap();
            /// ```
            pub fn queue(self, name: impl Into<String>, capacity: usize) -> Self {
                self.queue_with_max_bytes(name, capacity, $crate::DEFAULT_QUEUE_BYTES)
            }

            /// Declares a named queue holding at most `capacity` messages and
            /// `max_bytes` bytes of messages in all: a put waits while either
            /// is reached, and a message larger than `max_bytes` is refused.
            ///
            /// ```
            #[doc = concat!("let runner = wasmpool::", $owner, "::builder()")]
            ///     .module_bytes(r#"(module (func (export "_start")))"#)
            ///     .queue_with_max_bytes("q", 1000, 1 << 20)
            ///     .cache(None)
            ///     .build()
            ///     .unwrap();
            /// assert_eq!(runner.queue("q").unwrap().max_bytes(), 1 << 20);
            /// ```
            pub fn queue_with_max_bytes(
                mut self,
                name: impl Into<String>,
                capacity: usize,
                max_bytes: usize,
            ) -> Self {
                self.setup.queues.push($crate::runtime::QueueSpec {
                    name: name.into(),
                    capacity,
                    max_bytes,
                });
                self
            }

            /// Runs in the async mode, with up to `tasks` tasks in flight at
            /// once on each worker, each in its own instance (a pool's
            /// window grows to hold them). A guest that waits (a WASI sleep,
            /// a queue, a shared-memory wait, a host function) is suspended
            /// and its worker's thread runs the others; a busy guest yields
            /// every 10 ms. Default: the synchronous mode, one task per
            /// worker at a time. See docs/async.md.
            ///
            /// ```no_run
            #[doc = concat!("let builder = wasmpool::", $owner, "::builder().module_file(\"fetch.wasm\").concurrency(1000);")]
            /// ```
            pub fn concurrency(mut self, tasks: u32) -> Self {
                self.setup.concurrency = Some(tasks);
                self
            }

            /// Gives guests a host function named `name`, which they call
            /// with `wasmpool_guest::host::call(name, &input)` (the ABI's
            /// `host_call`, docs/abi.md). Its input and reply travel as
            /// JSON; an `Err` reaches the guest as an error it can handle,
            /// and a panic ends the calling task with kind `host`. It runs
            /// on the worker's thread: for work that waits, use
            /// [`host_fn_async`](Self::host_fn_async).
            ///
            /// ```
            #[doc = concat!("let builder = wasmpool::", $owner, "::builder()")]
            ///     .host_fn("double", |x: i64| Ok::<_, String>(2 * x));
            /// ```
            pub fn host_fn<In, Out, E, F>(mut self, name: impl Into<String>, f: F) -> Self
            where
                In: serde::de::DeserializeOwned,
                Out: serde::Serialize,
                E: std::fmt::Display,
                F: Fn(In) -> Result<Out, E> + Send + Sync + 'static,
            {
                self.setup
                    .host_fns
                    .insert(name.into(), $crate::hostfn::HostFn::typed(f));
                self
            }

            /// Gives guests an async host function named `name`: as
            /// [`host_fn`](Self::host_fn), but the function returns a
            /// future (a database query, an HTTP call made with the host's
            /// own client). In the async mode only the calling guest waits
            /// for it; in the synchronous mode its worker's thread does.
            /// The future runs on a tokio current-thread runtime with
            /// timers enabled; it ends at the task's deadline.
            ///
            /// ```
            /// use std::time::Duration;
            #[doc = concat!("let builder = wasmpool::", $owner, "::builder()")]
            ///     .host_fn_async("later", |ms: u64| async move {
            ///         tokio::time::sleep(Duration::from_millis(ms)).await;
            ///         Ok::<_, String>(ms)
            ///     });
            /// ```
            pub fn host_fn_async<In, Out, E, F, Fut>(mut self, name: impl Into<String>, f: F) -> Self
            where
                In: serde::de::DeserializeOwned + Send + 'static,
                Out: serde::Serialize,
                E: std::fmt::Display,
                F: Fn(In) -> Fut + Send + Sync + 'static,
                Fut: std::future::Future<Output = Result<Out, E>> + Send + 'static,
            {
                self.setup
                    .host_fns
                    .insert(name.into(), $crate::hostfn::HostFn::typed_async(f));
                self
            }

            /// Gives every instance one shared region of at least `bytes`
            /// bytes (rounded up to 64 KiB), reachable through the ABI's
            /// `shm_*` calls and from the host through `shared_region`.
            /// Default: none.
            ///
            /// ```
            #[doc = concat!("let runner = wasmpool::", $owner, "::builder()")]
            ///     .module_bytes(r#"(module (func (export "_start")))"#)
            ///     .shared_memory(1 << 20)
            ///     .cache(None)
            ///     .build()
            ///     .unwrap();
            /// assert_eq!(runner.shared_region().unwrap().len(), 1 << 20);
            /// ```
            pub fn shared_memory(mut self, bytes: usize) -> Self {
                self.setup.shared_memory = Some(bytes);
                self
            }
        }
    };
}

pub(crate) use shared_setters;

/// What a pool or a process group runs on.
pub(crate) struct Runtime {
    pub(crate) engine: Engine,
    pub(crate) program: Program,
    pub(crate) pre: InstancePre<StoreData>,
    pub(crate) resources: Arc<Resources>,
    pub(crate) limits: Arc<Limits>,
    /// Tasks in flight at once per worker thread: `Some` in the async mode,
    /// whose linker holds the async faces and whose guests are made and
    /// called with wasmtime's async API.
    pub(crate) concurrency: Option<u32>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("program", &self.program.origin)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Runtime {
    /// Makes the engine, loads and links the program, and makes the queues
    /// and the shared region; also the watchdog, when tasks have a timeout.
    /// Takes the `Setup` by value, so that module bytes are not copied.
    /// `interruptible`: running wasm code must be stoppable even without a
    /// timeout (processes, which can be terminated).
    pub(crate) fn new(
        setup: Setup,
        allocation: Allocation,
        interruptible: bool,
    ) -> Result<(Runtime, Option<Watchdog>), Error> {
        setup.limits.validate()?;
        let cache = setup
            .cache
            .clone()
            .unwrap_or_else(ModuleCache::default_location);
        let mode = if setup.concurrency.is_some() {
            Mode::Async
        } else {
            Mode::Sync
        };
        // A `.cwasm`'s code always has epoch checks (`precompiled.rs`).
        let precompiled =
            setup.allow_precompiled && setup.source.as_ref().is_some_and(Source::is_precompiled);
        let engine = EngineOptions {
            allocation,
            threads: setup.shared_memory.is_some(),
            interruptible: interruptible || precompiled || setup.limits.timeout.is_some(),
            mode,
            limits: &setup.limits,
        }
        .build()?;
        let resources = Arc::new(build_resources(&engine, &setup)?);
        let program = Program::load(
            &engine,
            setup.source,
            setup.name.as_deref(),
            cache.as_ref(),
            setup.allow_precompiled,
            // Not with fuel: an inlined call is a dozen wasm instructions
            // where a host call was one, and fuel counts them, so the same
            // budget would stop a task sooner.
            resources
                .shm
                .as_ref()
                .filter(|_| setup.limits.fuel.is_none())
                .map(|r| r.len() as u64),
            setup.rewind,
        )?;
        let pre = link(&engine, &program, &resources, mode)?;
        // The watchdog keeps time for deadlines, and in the async mode it
        // also drives the epoch ticks at which busy guests yield.
        let watchdog = (setup.limits.timeout.is_some() || mode == Mode::Async)
            .then(|| Watchdog::start(&engine))
            .transpose()?;
        Ok((
            Runtime {
                engine,
                program,
                pre,
                resources,
                limits: Arc::new(setup.limits),
                concurrency: setup.concurrency,
            },
            watchdog,
        ))
    }

    /// A fresh guest (instance and store), instantiated and initialized by
    /// `deadline`.
    pub(crate) fn guest(
        &self,
        worker: WorkerId,
        wasi: Option<WasiP1Ctx>,
        interrupt: Arc<AtomicBool>,
        deadline: Option<Instant>,
    ) -> Result<Guest, TaskError> {
        Guest::new(
            &self.pre,
            self.parts(worker, wasi, interrupt),
            deadline,
            self.program.rewind.as_ref(),
        )
    }

    /// What a new guest of this runtime is made of, besides its program.
    fn parts(
        &self,
        worker: WorkerId,
        wasi: Option<WasiP1Ctx>,
        interrupt: Arc<AtomicBool>,
    ) -> GuestParts {
        GuestParts {
            worker,
            limits: self.limits.clone(),
            resources: self.resources.clone(),
            wasi,
            interrupt,
        }
    }

    /// [`guest`](Self::guest)'s async face.
    pub(crate) async fn guest_async(
        &self,
        worker: WorkerId,
        wasi: Option<WasiP1Ctx>,
        interrupt: Arc<AtomicBool>,
        deadline: Option<Instant>,
    ) -> Result<Guest, TaskError> {
        Guest::new_async(
            &self.pre,
            self.parts(worker, wasi, interrupt),
            deadline,
            self.program.rewind.as_ref(),
        )
        .await
    }

    /// The queue declared as `name`.
    pub(crate) fn queue(&self, name: &str) -> Option<&Arc<Queue>> {
        self.resources.queues.iter().find(|q| q.name() == name)
    }

    /// The shared region, if there is one.
    pub(crate) fn shared_region(&self) -> Option<&SharedRegion> {
        self.resources.shm.as_ref()
    }
}

/// Makes the queues and the shared region.
fn build_resources(engine: &Engine, setup: &Setup) -> Result<Resources, Error> {
    let mut list: Vec<Arc<Queue>> = Vec::with_capacity(setup.queues.len());
    for spec in &setup.queues {
        if list.iter().any(|q| q.name() == spec.name) {
            return Err(Error::Config(format!(
                "queue {:?} is declared twice",
                spec.name
            )));
        }
        list.push(Arc::new(Queue::with_max_bytes(
            spec.name.clone(),
            spec.capacity,
            spec.max_bytes,
        )));
    }
    let shm = setup
        .shared_memory
        .map(|bytes| SharedRegion::new(engine, bytes))
        .transpose()?;
    Ok(Resources {
        queues: list,
        shm,
        host_fns: Arc::new(setup.host_fns.clone()),
    })
}

/// Links a program against WASI (with wasmpool's own interruptible
/// `poll_oneoff`), the `wasmpool` ABI and, when there is one, the shared
/// region: the one place imports are resolved.
fn link(
    engine: &Engine,
    program: &Program,
    resources: &Arc<Resources>,
    mode: Mode,
) -> Result<InstancePre<StoreData>, Error> {
    let mut linker = Linker::<StoreData>::new(engine);
    fn wasi(s: &mut StoreData) -> &mut WasiP1Ctx {
        s.wasi()
    }
    match mode {
        Mode::Sync => wasmtime_wasi::p1::add_to_linker_sync(&mut linker, wasi),
        Mode::Async => wasmtime_wasi::p1::add_to_linker_async(&mut linker, wasi),
    }
    .and_then(|()| abi::wasi::add_to_linker(&mut linker, mode))
    .map_err(|e| Error::Host(format!("cannot link WASI: {e:#}")))?;
    abi::add_to_linker(&mut linker, mode)
        .map_err(|e| Error::Host(format!("cannot link the ABI: {e:#}")))?;
    if let Some(region) = &resources.shm {
        // Offered as the import `wasmpool::shared`, for guests that use the
        // region directly with wasm atomics. `define` wants a store only to
        // check that the memory belongs to this engine.
        let scratch = wasmtime::Store::new(
            engine,
            StoreData::new(GuestParts {
                worker: WorkerId { index: 0, count: 1 },
                limits: Arc::default(),
                resources: resources.clone(),
                wasi: None,
                interrupt: Arc::default(),
            }),
        );
        linker
            .define(&scratch, abi::MODULE, "shared", region.memory().clone())
            .map_err(|e| Error::Host(format!("cannot offer the shared region: {e:#}")))?;
    }
    linker
        .instantiate_pre(program.module())
        .map_err(|e| Error::Instantiate {
            origin: program.origin.clone(),
            message: format!("{e:#}"),
        })
}
