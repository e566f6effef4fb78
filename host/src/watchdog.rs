//! The watchdog: one thread per pool or process group with a time limit. It
//! keeps time for wasm code and rescues tasks stuck where nothing can
//! interrupt them.
//!
//! Every [`TICK`] it advances the engine's epoch, so that each store's epoch
//! callback checks the task's deadline (`limits.rs`), and then looks at every
//! registered [`Watch`]: a call still running [`GRACE`] past its deadline is
//! in a wait that neither the epoch nor a wait slice reaches (a wasm
//! `memory.atomic.wait32`, a blocking read). Its owner's `on_overdue` runs
//! once: a pool worker reports the task as `timeout`, hands the rest of its
//! batch back and is replaced by a fresh worker; a process is reported as
//! timed out. The stuck thread is left behind and exits on its own if its
//! wait ever ends.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{RecvTimeoutError, Sender};

use crate::error::Error;

/// How often the epoch advances while a timeout is set: the resolution of
/// timeouts in wasm code.
pub(crate) const TICK: Duration = Duration::from_millis(10);

/// How long past its deadline a call may stay in a wait before it is
/// abandoned. Waits in host calls notice the deadline within 20 ms, wasm
/// code within a tick; only a wait nothing can interrupt takes this long.
pub(crate) const GRACE: Duration = Duration::from_millis(50);

type OnOverdue = Box<dyn Fn(u64, &Registry) + Send + Sync>;

/// One watched call site: a pool worker or a process.
pub(crate) struct Watch {
    base: Instant,
    /// The deadline of the call in flight, in nanoseconds after `base`, plus
    /// one; 0 when nothing is to be watched.
    deadline: AtomicU64,
    on_overdue: OnOverdue,
}

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watch")
            .field("deadline", &self.deadline.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Watch {
    /// Watches a call that must end by `deadline`; returns the token
    /// `on_overdue` will be given, which tells this call from later ones.
    pub(crate) fn arm(&self, deadline: Instant) -> u64 {
        let token = deadline.saturating_duration_since(self.base).as_nanos() as u64 + 1;
        self.deadline.store(token, Ordering::SeqCst);
        token
    }

    /// The call ended: nothing to watch.
    pub(crate) fn disarm(&self) {
        self.deadline.store(0, Ordering::SeqCst);
    }
}

/// Lets `on_overdue` register the watch of a replacement.
#[derive(Debug, Clone)]
pub(crate) struct Registry {
    base: Instant,
    watches: Weak<Mutex<Vec<Weak<Watch>>>>,
}

impl Registry {
    /// A new watch; `on_overdue(token, registry)` runs on the watchdog's
    /// thread when a call armed with `token` overruns by [`GRACE`].
    pub(crate) fn watch(
        &self,
        on_overdue: impl Fn(u64, &Registry) + Send + Sync + 'static,
    ) -> Arc<Watch> {
        let watch = Arc::new(Watch {
            base: self.base,
            deadline: AtomicU64::new(0),
            on_overdue: Box::new(on_overdue),
        });
        if let Some(list) = self.watches.upgrade() {
            list.lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(Arc::downgrade(&watch));
        }
        watch
    }
}

/// The thread; stopped and joined when dropped.
#[derive(Debug)]
pub(crate) struct Watchdog {
    registry: Registry,
    // Held only to keep the registry's list alive.
    _watches: Arc<Mutex<Vec<Weak<Watch>>>>,
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Watchdog {
    pub(crate) fn start(engine: &wasmtime::Engine) -> Result<Self, Error> {
        let base = Instant::now();
        let watches: Arc<Mutex<Vec<Weak<Watch>>>> = Arc::default();
        let registry = Registry {
            base,
            watches: Arc::downgrade(&watches),
        };
        let (stop, stopped) = crossbeam_channel::bounded::<()>(0);
        let engine = engine.clone();
        let list = watches.clone();
        let reg = registry.clone();
        let thread = std::thread::Builder::new()
            .name("wasmpool-watchdog".into())
            .spawn(move || {
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(TICK) {
                    engine.increment_epoch();
                    let now = base.elapsed().as_nanos() as u64;
                    let grace = GRACE.as_nanos() as u64;
                    let mut overdue = Vec::new();
                    list.lock().unwrap_or_else(|e| e.into_inner()).retain(|w| {
                        let Some(watch) = w.upgrade() else {
                            return false;
                        };
                        let token = watch.deadline.load(Ordering::SeqCst);
                        if token != 0
                            && now > token + grace
                            && watch
                                .deadline
                                .compare_exchange(token, 0, Ordering::SeqCst, Ordering::SeqCst)
                                .is_ok()
                        {
                            overdue.push((watch, token));
                        }
                        true
                    });
                    // Outside the lock: a handler registers its replacement.
                    for (watch, token) in overdue {
                        (watch.on_overdue)(token, &reg);
                    }
                }
            })
            .map_err(|e| Error::Host(format!("cannot start the watchdog thread: {e}")))?;
        Ok(Watchdog {
            registry,
            _watches: watches,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    pub(crate) fn registry(&self) -> &Registry {
        &self.registry
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.stop = None;
        if let Some(t) = self.thread.take()
            && t.thread().id() != std::thread::current().id()
        {
            let _ = t.join();
        }
    }
}

/// A future whose every poll is watched: armed with `deadline` while it
/// runs, disarmed when it returns. An async task's poll that does not
/// return past its deadline and the grace is blocked in a wait no future
/// can suspend (a wasm atomic wait), and its watch's handler rescues it.
pub(crate) struct WatchedPolls<F> {
    pub(crate) inner: std::pin::Pin<Box<F>>,
    pub(crate) watch: Option<Arc<Watch>>,
    pub(crate) deadline: Option<Instant>,
}

impl<F: std::future::Future> std::future::Future for WatchedPolls<F> {
    type Output = F::Output;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<F::Output> {
        if let (Some(w), Some(d)) = (&self.watch, self.deadline) {
            w.arm(d);
        }
        let polled = self.inner.as_mut().poll(cx);
        if let Some(w) = &self.watch {
            w.disarm();
        }
        polled
    }
}
