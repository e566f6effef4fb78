//! The one rule every waiting host call follows: wait in slices of at most
//! [`SLICE`], so that a deadline or an interruption (a terminated guest) is
//! noticed promptly even when nothing wakes the waiter.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

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
