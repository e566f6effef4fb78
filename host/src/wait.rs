//! The one rule every waiting host call follows: wait in slices of at most
//! [`SLICE`], so that a deadline or an interruption (a terminated guest) is
//! noticed promptly even when nothing wakes the waiter.
//!
//! Each waiting call is written once, as an *attempt* (take a message, see
//! a changed value, see the time pass) that either succeeds or says to
//! wait, and waits through one of two faces of the same rule: the blocking
//! face (a thread sleeps on a condition variable, a futex or a timer, in the
//! synchronous mode) and the async face ([`until`], [`sleep_until_async`]:
//! the guest's instance is suspended and its thread runs others, in the
//! async mode).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use event_listener::Event;

/// The longest a waiter sleeps before it looks at its deadline and its
/// interruption flag again.
pub(crate) const SLICE: Duration = Duration::from_millis(20);

/// Why a wait ended without its condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    /// The deadline passed.
    Timeout,
    /// The interruption flag was set, or the waiting task's time is up.
    Interrupted,
}

/// The deadline `timeout` from now (`None`: no deadline).
pub(crate) fn deadline(timeout: Option<Duration>) -> Option<Instant> {
    timeout.and_then(|t| Instant::now().checked_add(t))
}

/// Who is waiting: the flag that interrupts the wait (a terminated guest)
/// and the deadline of the waiting task (its time limit), if any.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Waiter<'a> {
    pub(crate) interrupt: Option<&'a AtomicBool>,
    /// A second interruption flag (the cancel flag of the task's stream).
    pub(crate) cancel: Option<&'a AtomicBool>,
    pub(crate) task_deadline: Option<Instant>,
}

/// How long the next slice of a wait may last, or why the wait must stop:
/// [`Stop::Timeout`] when the wait's own `deadline` passed,
/// [`Stop::Interrupted`] when the waiter was interrupted or its task's time
/// is up.
pub(crate) fn next_slice(deadline: Option<Instant>, waiter: Waiter<'_>) -> Result<Duration, Stop> {
    let set = |flag: Option<&AtomicBool>| flag.is_some_and(|f| f.load(Ordering::Relaxed));
    if set(waiter.interrupt) || set(waiter.cancel) {
        return Err(Stop::Interrupted);
    }
    let now = Instant::now();
    let mut slice = SLICE;
    if let Some(d) = waiter.task_deadline {
        let left = d.saturating_duration_since(now);
        if left.is_zero() {
            return Err(Stop::Interrupted);
        }
        slice = slice.min(left);
    }
    if let Some(d) = deadline {
        let left = d.saturating_duration_since(now);
        if left.is_zero() {
            return Err(Stop::Timeout);
        }
        slice = slice.min(left);
    }
    Ok(slice)
}

/// A [`Waiter`] that owns what it looks at, for async waits: their futures
/// outlive any borrow of the store.
#[derive(Debug, Clone, Default)]
pub(crate) struct OwnedWaiter {
    pub(crate) interrupt: Option<Arc<AtomicBool>>,
    pub(crate) cancel: Option<Arc<AtomicBool>>,
    pub(crate) task_deadline: Option<Instant>,
}

impl OwnedWaiter {
    pub(crate) fn borrow(&self) -> Waiter<'_> {
        Waiter {
            interrupt: self.interrupt.as_deref(),
            cancel: self.cancel.as_deref(),
            task_deadline: self.task_deadline,
        }
    }
}

/// The async face of a wait: polls `attempt` until it yields, sleeping on
/// `event` (which the other side notifies when the condition may have
/// changed) in slices of the same rule as the blocking face, so that a
/// missed notification costs at most a slice and a deadline or an
/// interruption is noticed in time.
pub(crate) async fn until<T>(
    event: &Event,
    deadline: Option<Instant>,
    waiter: &OwnedWaiter,
    mut attempt: impl FnMut() -> Option<T>,
) -> Result<T, Stop> {
    loop {
        if let Some(done) = attempt() {
            return Ok(done);
        }
        let slice = next_slice(deadline, waiter.borrow())?;
        // Listen before the second look: a notification between the look
        // and the sleep is not lost.
        let listener = event.listen();
        if let Some(done) = attempt() {
            return Ok(done);
        }
        let _ = tokio::time::timeout(slice, listener).await;
    }
}

/// Sleeps until `at`, in slices: `Err(Stop::Interrupted)` if the waiter is
/// interrupted or its task's time is up first. The blocking face.
pub(crate) fn sleep_until(at: Instant, waiter: Waiter<'_>) -> Result<(), Stop> {
    loop {
        match next_slice(Some(at), waiter) {
            Ok(slice) => std::thread::sleep(slice),
            Err(Stop::Timeout) => return Ok(()),
            Err(Stop::Interrupted) => return Err(Stop::Interrupted),
        }
    }
}

/// [`sleep_until`]'s async face: the same rule, a timer instead of a
/// thread's sleep.
pub(crate) async fn sleep_until_async(at: Instant, waiter: &OwnedWaiter) -> Result<(), Stop> {
    loop {
        match next_slice(Some(at), waiter.borrow()) {
            Ok(slice) => tokio::time::sleep(slice).await,
            Err(Stop::Timeout) => return Ok(()),
            Err(Stop::Interrupted) => return Err(Stop::Interrupted),
        }
    }
}

/// Resolves when `waiter` must stop waiting: interrupted, or its task's
/// time is up. Raced against a wait that has no condition of its own to
/// re-check (a host function's future).
pub(crate) async fn stopped(waiter: &OwnedWaiter) -> Stop {
    loop {
        match next_slice(None, waiter.borrow()) {
            Ok(slice) => tokio::time::sleep(slice).await,
            Err(stop) => return stop,
        }
    }
}
