//! The library's error types.
//!
//! - [`Error`]: setting up a pool failed (a module that does not load, a task
//!   that does not exist). Nothing ran.
//! - [`TaskError`]: one task failed. It is reported at that task's own index,
//!   and every other task still runs.
//! - `AbiError` (internal): a guest broke `docs/abi.md`; it travels up
//!   through wasmtime as the error of a host call and becomes a [`TaskError`]
//!   of kind [`TaskErrorKind::Abi`].

use std::fmt;
use std::path::PathBuf;

/// An error setting up a pool or loading a module.
///
/// ```
/// let err = wasmpool::Pool::builder().module_bytes(b"not wasm".to_vec()).build().unwrap_err();
/// assert!(err.to_string().contains("not a WebAssembly module"), "{err}");
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A module file could not be read. The I/O error is the
    /// [`source`](std::error::Error::source), not part of this message (so
    /// that a report of the whole chain names it once).
    #[error("{}: cannot read the module", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file could not be written (a precompiled module). The I/O error is
    /// the [`source`](std::error::Error::source).
    #[error("{}: cannot write", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The bytes are not a WebAssembly module (binary or text).
    #[error("{origin}: not a WebAssembly module: {reason}")]
    NotWasm {
        /// The file name, or `<bytes>`.
        origin: String,
        /// What is wrong.
        reason: String,
    },
    /// The module did not compile or validate.
    #[error("{origin}: invalid module: {message}")]
    Compile {
        /// The file name, or `<bytes>`.
        origin: String,
        /// The compiler's message with its chain.
        message: String,
    },
    /// A precompiled module (`.cwasm`) that this engine cannot load: made by
    /// another version of wasmpool or wasmtime, with other settings, or
    /// damaged. Recompile it from its `.wasm` with
    /// [`Precompiler`](crate::Precompiler) (`wasmpool compile`).
    #[error("{origin}: cannot load the precompiled module: {message}")]
    Precompiled {
        /// The file name, or `<bytes>`.
        origin: String,
        /// What does not match, and what to do.
        message: String,
    },
    /// The module breaks the wasmpool ABI (version marker, imports, memory).
    #[error("{origin}: {message}")]
    Abi {
        /// The file name, or `<bytes>`.
        origin: String,
        /// What is wrong, as `docs/abi.md` words it.
        message: String,
    },
    /// The module could not be instantiated (an unknown import, a trap in
    /// the start function or `_initialize`, a resource limit).
    #[error("{origin}: cannot instantiate: {message}")]
    Instantiate {
        /// The file name, or `<bytes>`.
        origin: String,
        /// wasmtime's message with its chain.
        message: String,
    },
    /// No export of that name can run as a task.
    #[error("{origin}: {message}")]
    NoSuchTask {
        /// The file name, or `<bytes>`.
        origin: String,
        /// Which name was asked for, and what the module has instead.
        message: String,
    },
    /// A [`Task`](crate::Task) looked up in one pool was given to another.
    #[error("task {task:?} belongs to another pool: look it up with this pool's `task`")]
    ForeignTask {
        /// The task's name.
        task: String,
    },
    /// The pool was configured wrongly (for example zero workers).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The engine could not be created or a worker thread could not start.
    #[error("{0}")]
    Host(String),
}

/// What kind of failure ended a task. The names are the `kind` strings of
/// the CLI's JSON output and of `docs/abi.md`.
///
/// ```
/// assert_eq!(wasmpool::TaskErrorKind::Trap.as_str(), "trap");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TaskErrorKind {
    /// A WebAssembly trap, including a Rust guest's panic.
    Trap,
    /// The task reported its own error (ABI status 1).
    Guest,
    /// The input did not parse or did not fit the task's parameters.
    Input,
    /// The output was not valid JSON, or not of the type asked for.
    Output,
    /// The guest broke the ABI (a bad pointer, a bad status code).
    Abi,
    /// The guest called WASI `proc_exit`.
    Exit,
    /// The instance could not be (re)created for this task.
    Instantiate,
    /// The guest was terminated from the host.
    Terminated,
    /// The task ran past its time limit.
    Timeout,
    /// The guest hit its memory limit.
    OutOfMemory,
    /// The task used up its fuel.
    OutOfFuel,
    /// The host failed (a bug in wasmpool).
    Host,
}

impl TaskErrorKind {
    /// The stable lowercase name of this kind.
    ///
    /// ```
    /// assert_eq!(wasmpool::TaskErrorKind::Input.as_str(), "input");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            TaskErrorKind::Trap => "trap",
            TaskErrorKind::Guest => "guest",
            TaskErrorKind::Input => "input",
            TaskErrorKind::Output => "output",
            TaskErrorKind::Abi => "abi",
            TaskErrorKind::Exit => "exit",
            TaskErrorKind::Instantiate => "instantiate",
            TaskErrorKind::Terminated => "terminated",
            TaskErrorKind::Timeout => "timeout",
            TaskErrorKind::OutOfMemory => "out_of_memory",
            TaskErrorKind::OutOfFuel => "out_of_fuel",
            TaskErrorKind::Host => "host",
        }
    }
}

impl fmt::Display for TaskErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why one task failed. Reported at that task's index; the rest still run.
///
/// ```
/// use wasmpool::{TaskError, TaskErrorKind};
/// let err = TaskError::new(TaskErrorKind::Guest, "negative input");
/// assert_eq!(err.to_string(), "guest: negative input");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskError {
    // Boxed: results travel by value through the hot path, and most are Ok.
    inner: Box<Inner>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Inner {
    kind: TaskErrorKind,
    message: String,
    backtrace: Option<String>,
    exit_code: Option<i32>,
}

impl TaskError {
    /// A task error of `kind` with `message`.
    ///
    /// ```
    /// let e = wasmpool::TaskError::new(wasmpool::TaskErrorKind::Input, "expected a number");
    /// assert_eq!(e.message(), "expected a number");
    /// ```
    pub fn new(kind: TaskErrorKind, message: impl Into<String>) -> Self {
        TaskError {
            inner: Box::new(Inner {
                kind,
                message: message.into(),
                backtrace: None,
                exit_code: None,
            }),
        }
    }

    pub(crate) fn with_backtrace(mut self, backtrace: Option<String>) -> Self {
        self.inner.backtrace = backtrace;
        self
    }

    pub(crate) fn exit(code: i32) -> Self {
        let mut e = TaskError::new(
            TaskErrorKind::Exit,
            format!("guest called proc_exit({code})"),
        );
        e.inner.exit_code = Some(code);
        e
    }

    /// What kind of failure this is.
    ///
    /// ```
    /// # let e = wasmpool::TaskError::new(wasmpool::TaskErrorKind::Trap, "unreachable");
    /// assert_eq!(e.kind(), wasmpool::TaskErrorKind::Trap);
    /// ```
    pub fn kind(&self) -> TaskErrorKind {
        self.inner.kind
    }

    /// The message, without the kind.
    ///
    /// ```
    /// # let e = wasmpool::TaskError::new(wasmpool::TaskErrorKind::Trap, "unreachable");
    /// assert_eq!(e.message(), "unreachable");
    /// ```
    pub fn message(&self) -> &str {
        &self.inner.message
    }

    /// The wasm backtrace of a trap, one frame per line, with function names
    /// where the module has them.
    ///
    /// ```
    /// # let e = wasmpool::TaskError::new(wasmpool::TaskErrorKind::Trap, "unreachable");
    /// assert!(e.backtrace().is_none());
    /// ```
    pub fn backtrace(&self) -> Option<&str> {
        self.inner.backtrace.as_deref()
    }

    /// The exit code, for [`TaskErrorKind::Exit`].
    ///
    /// ```
    /// # let e = wasmpool::TaskError::new(wasmpool::TaskErrorKind::Trap, "unreachable");
    /// assert_eq!(e.exit_code(), None);
    /// ```
    pub fn exit_code(&self) -> Option<i32> {
        self.inner.exit_code
    }
}

impl fmt::Display for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.inner.kind, self.inner.message)
    }
}

impl std::error::Error for TaskError {}

/// A wait in a host call (or the guest's code) was cut short because the
/// guest was terminated.
#[derive(Debug, thiserror::Error)]
#[error("terminated")]
pub(crate) struct Interrupted;

/// A host call that waits reached the end of the task's time limit.
#[derive(Debug, thiserror::Error)]
#[error("the task's time limit passed while it waited in the host")]
pub(crate) struct TimedOut;

/// A guest broke `docs/abi.md`. Returned from host functions, so that the
/// task traps; turned into a [`TaskError`] of kind `abi` when it is caught.
#[derive(Debug, thiserror::Error)]
#[error("{function}: {message}")]
pub(crate) struct AbiError {
    pub(crate) function: &'static str,
    pub(crate) message: String,
}

/// A host function given by the embedder panicked: the task ends with a
/// [`TaskError`] of kind `host` (the embedder's bug, not the guest's).
#[derive(Debug, thiserror::Error)]
#[error("host function {name:?} panicked: {message}")]
pub(crate) struct HostFnPanic {
    pub(crate) name: String,
    pub(crate) message: String,
}
