//! Host functions: named functions an embedder gives its guests
//! ([`PoolBuilder::host_fn`](crate::PoolBuilder::host_fn) and
//! [`host_fn_async`](crate::PoolBuilder::host_fn_async)), called through the
//! ABI's `host_call` (`docs/abi.md`, "Host functions").
//!
//! A call is written once, as a future ([`HostFns::call`]): an async host
//! function is awaited, a synchronous one is called in place; either races
//! the task's deadline and its interruption flags. The async mode awaits
//! that future in the guest's suspended call; the synchronous mode drives it
//! to its end on a small runtime of the worker's own thread
//! ([`HostFns::call_blocking`]).
//!
//! Inputs and replies are bytes (JSON by convention: the typed setters
//! decode and encode with serde). A host function's `Err` goes back to the
//! guest as an error it can handle; a panic ends the task with kind `host`.

use std::collections::BTreeMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;

use futures_util::FutureExt;

use crate::error::HostFnPanic;
use crate::wait::{self, OwnedWaiter, Stop};

/// What a host function answers: its reply, or an error message for the
/// guest.
pub(crate) type Reply = Result<Vec<u8>, String>;

type SyncFn = dyn Fn(&[u8]) -> Reply + Send + Sync;
type AsyncFn = dyn Fn(Vec<u8>) -> Pin<Box<dyn Future<Output = Reply> + Send>> + Send + Sync;

/// One host function.
#[derive(Clone)]
pub(crate) enum HostFn {
    /// Runs on the calling thread: for quick work (a lookup in memory).
    Sync(Arc<SyncFn>),
    /// A future: for work that waits (a network call), which suspends only
    /// the calling guest in the async mode.
    Async(Arc<AsyncFn>),
}

impl HostFn {
    /// A synchronous host function over serde types.
    pub(crate) fn typed<In, Out, E, F>(f: F) -> HostFn
    where
        In: serde::de::DeserializeOwned,
        Out: serde::Serialize,
        E: std::fmt::Display,
        F: Fn(In) -> Result<Out, E> + Send + Sync + 'static,
    {
        HostFn::Sync(Arc::new(move |input: &[u8]| {
            let input = decode(input)?;
            encode(f(input))
        }))
    }

    /// An async host function over serde types.
    pub(crate) fn typed_async<In, Out, E, F, Fut>(f: F) -> HostFn
    where
        In: serde::de::DeserializeOwned + Send + 'static,
        Out: serde::Serialize,
        E: std::fmt::Display,
        F: Fn(In) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Out, E>> + Send + 'static,
    {
        HostFn::Async(Arc::new(move |input: Vec<u8>| match decode::<In>(&input) {
            Ok(input) => {
                let future = f(input);
                Box::pin(async move { encode(future.await) })
            }
            Err(e) => Box::pin(std::future::ready(Err(e))),
        }))
    }
}

fn decode<In: serde::de::DeserializeOwned>(input: &[u8]) -> Result<In, String> {
    serde_json::from_slice(input).map_err(|e| format!("the input does not fit its type: {e}"))
}

fn encode<Out: serde::Serialize, E: std::fmt::Display>(reply: Result<Out, E>) -> Reply {
    let reply = reply.map_err(|e| e.to_string())?;
    serde_json::to_vec(&reply).map_err(|e| format!("its reply does not serialize as JSON: {e}"))
}

/// Every host function of a pool or process group, by name.
#[derive(Clone, Default)]
pub(crate) struct HostFns {
    fns: BTreeMap<String, HostFn>,
}

impl std::fmt::Debug for HostFns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.fns.keys()).finish()
    }
}

/// Why a call did not give a reply.
#[derive(Debug)]
pub(crate) enum CallError {
    /// No host function has this name.
    Unknown,
    /// The host function panicked.
    Panic(HostFnPanic),
    /// The task's deadline passed or it was interrupted while it waited.
    Stopped,
}

impl HostFns {
    pub(crate) fn insert(&mut self, name: String, f: HostFn) {
        self.fns.insert(name, f);
    }

    /// The names, for error messages.
    pub(crate) fn names(&self) -> Vec<&str> {
        self.fns.keys().map(String::as_str).collect()
    }

    /// Calls `name` with `input`, until its reply, or until `waiter` is
    /// interrupted or its task's time is up. The one implementation of a
    /// call: the async face awaits it, the blocking face drives it.
    pub(crate) async fn call(
        &self,
        name: &str,
        input: Vec<u8>,
        waiter: &OwnedWaiter,
    ) -> Result<Reply, CallError> {
        let f = self.fns.get(name).ok_or(CallError::Unknown)?;
        let panic = |p: Box<dyn std::any::Any + Send>| {
            let message = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            CallError::Panic(HostFnPanic {
                name: name.to_string(),
                message,
            })
        };
        let future = match f {
            HostFn::Sync(f) => {
                return std::panic::catch_unwind(AssertUnwindSafe(|| f(&input))).map_err(panic);
            }
            HostFn::Async(f) => {
                std::panic::catch_unwind(AssertUnwindSafe(|| f(input))).map_err(panic)?
            }
        };
        tokio::select! {
            reply = AssertUnwindSafe(future).catch_unwind() => reply.map_err(panic),
            Stop::Interrupted | Stop::Timeout = wait::stopped(waiter) => Err(CallError::Stopped),
        }
    }

    /// [`call`](Self::call)'s blocking face, for the synchronous mode: an
    /// async host function runs on a current-thread runtime of the calling
    /// thread (made once per thread).
    pub(crate) fn call_blocking(
        &self,
        name: &str,
        input: Vec<u8>,
        waiter: &OwnedWaiter,
    ) -> Result<Reply, CallError> {
        thread_local! {
            static RUNTIME: Option<tokio::runtime::Runtime> = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .ok();
        }
        match self.fns.get(name) {
            None => Err(CallError::Unknown),
            // No runtime needed: `call` returns at once for these.
            Some(HostFn::Sync(_)) => {
                futures_util::FutureExt::now_or_never(self.call(name, input, waiter))
                    .expect("a synchronous host function's call is ready at once")
            }
            Some(HostFn::Async(_)) => RUNTIME.with(|rt| match rt {
                Some(rt) => rt.block_on(self.call(name, input, waiter)),
                None => Err(CallError::Panic(HostFnPanic {
                    name: name.to_string(),
                    message: "cannot start a runtime for async host functions on this thread"
                        .into(),
                })),
            }),
        }
    }
}
