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
    /// The interruption flag was set.
    Interrupted,
}

/// The deadline `timeout` from now (`None`: no deadline).
pub(crate) fn deadline(timeout: Option<Duration>) -> Option<Instant> {
    timeout.and_then(|t| Instant::now().checked_add(t))
}

/// How long the next slice of a wait may last, or why the wait must stop.
pub(crate) fn next_slice(
    deadline: Option<Instant>,
    interrupt: &AtomicBool,
) -> Result<Duration, Stop> {
    if interrupt.load(Ordering::Relaxed) {
        return Err(Stop::Interrupted);
    }
    match deadline {
        None => Ok(SLICE),
        Some(d) => {
            let left = d.saturating_duration_since(Instant::now());
            if left.is_zero() {
                Err(Stop::Timeout)
            } else {
                Ok(left.min(SLICE))
            }
        }
    }
}
