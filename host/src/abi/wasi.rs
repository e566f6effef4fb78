//! WASI calls the host implements itself so that they follow the
//! interruption policy of `limits.rs`: `poll_oneoff`, which is how a WASI
//! guest sleeps (`std::thread::sleep`, `clock_nanosleep`) and polls, and the
//! monotonic clock it is measured against.
//!
//! wasmtime-wasi's own `poll_oneoff` sleeps in one piece, so a guest asleep
//! in it outlives its time limit and ignores a terminate. This one waits in
//! slices through `wait.rs`, like every other wait:
//!
//! - clock subscriptions, relative or absolute, on the realtime and the
//!   monotonic clock, fire at their time (other clock ids are `EINVAL`, as in
//!   wasmtime-wasi);
//! - `fd_read` and `fd_write` subscriptions are ready at once: the streams a
//!   guest has (its sinks, files, an empty or inherited stdin) never block a
//!   write, and a read that then blocks (an inherited stdin with no data)
//!   waits under the watchdog;
//! - in the async mode, the same call suspends the guest's instance on a
//!   timer instead of sleeping its thread (`wait.rs`'s two faces);
//! - the subscriptions and events are read and written through the one
//!   bounds checker: a bad range traps with kind `abi`.

use std::future::Future;
use std::sync::LazyLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use wasmtime::{Caller, Linker};
use wasmtime_wasi::HostMonotonicClock;

use super::{mem, owned_waiter, stopped, waiter};
use crate::engine::Mode;
use crate::error::AbiError;
use crate::sandbox::StoreData;
use crate::wait;

const WASI: &str = "wasi_snapshot_preview1";

/// The size of a WASI `subscription` and of an `event`.
const SUBSCRIPTION: usize = 48;
const EVENT: usize = 32;
/// `errno` values.
const ERRNO_SUCCESS: i32 = 0;
const ERRNO_INVAL: i32 = 28;
/// `subclockflags::subscription_clock_abstime`.
const ABSTIME: u16 = 1;
const CLOCK_REALTIME: u32 = 0;
const CLOCK_MONOTONIC: u32 = 1;
/// `eventtype` values, which are also the subscription tags.
const EVENT_CLOCK: u8 = 0;

/// The origin of every guest's monotonic clock, so that an absolute
/// monotonic deadline can be turned into an `Instant`.
static ORIGIN: LazyLock<Instant> = LazyLock::new(Instant::now);

/// The monotonic clock wasmpool gives guests: nanoseconds since [`ORIGIN`].
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct MonotonicClock;

impl HostMonotonicClock for MonotonicClock {
    fn resolution(&self) -> u64 {
        1
    }

    fn now(&self) -> u64 {
        u64::try_from(ORIGIN.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

/// Replaces wasmtime-wasi's `poll_oneoff` (already in `linker`) with
/// wasmpool's.
pub(crate) fn add_to_linker(linker: &mut Linker<StoreData>, mode: Mode) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    match mode {
        Mode::Sync => linker.func_wrap(WASI, "poll_oneoff", poll_oneoff)?,
        Mode::Async => linker.func_wrap_async(WASI, "poll_oneoff", poll_oneoff_async)?,
    };
    linker.allow_shadowing(false);
    Ok(())
}

/// One subscription: its `userdata`, its tag, and when it fires (`None`:
/// at once).
struct Subscription {
    userdata: u64,
    tag: u8,
    at: Option<Instant>,
}

/// Reads a subscription set; `Err(errno)` for a clock wasmpool does not
/// have.
fn subscriptions(subs: &[u8]) -> Result<Vec<Subscription>, i32> {
    let now = Instant::now();
    let u64_at = |s: &[u8], at: usize| u64::from_le_bytes(s[at..at + 8].try_into().unwrap());
    subs.chunks_exact(SUBSCRIPTION)
        .map(|s| {
            let (userdata, tag) = (u64_at(s, 0), s[8]);
            if tag != EVENT_CLOCK {
                return Ok(Subscription {
                    userdata,
                    tag,
                    at: None,
                });
            }
            let id = u32::from_le_bytes(s[16..20].try_into().unwrap());
            let timeout = Duration::from_nanos(u64_at(s, 24));
            let flags = u16::from_le_bytes(s[40..42].try_into().unwrap());
            let wait = match (id, flags & ABSTIME != 0) {
                (CLOCK_REALTIME | CLOCK_MONOTONIC, false) => timeout,
                (CLOCK_REALTIME, true) => {
                    let since_epoch = SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .unwrap_or_default();
                    timeout.saturating_sub(since_epoch)
                }
                (CLOCK_MONOTONIC, true) => timeout.saturating_sub(ORIGIN.elapsed()),
                _ => return Err(ERRNO_INVAL),
            };
            // Past `Instant`'s range: the same as never, for a guest.
            let at = now
                .checked_add(wait)
                .unwrap_or(now + Duration::from_secs(1 << 40));
            Ok(Subscription {
                userdata,
                tag,
                at: Some(at),
            })
        })
        .collect()
}

/// `poll_oneoff`'s arguments: the subscriptions, and when the first one
/// fires (`Err(errno)` for a set the guest gets an error for).
type Polled = Result<(Vec<Subscription>, Instant), i32>;

fn poll_args(
    caller: &mut Caller<'_, StoreData>,
    subs_ptr: i32,
    events_ptr: i32,
    count: i32,
    nevents_ptr: i32,
) -> wasmtime::Result<Polled> {
    const NAME: &str = "poll_oneoff";
    if count == 0 {
        return Ok(Err(ERRNO_INVAL));
    }
    let (subs_len, events_len) = (
        event_bytes(count, SUBSCRIPTION)?,
        event_bytes(count, EVENT)?,
    );
    let (memory, _) = super::memory(caller, NAME)?;
    // Both ranges are checked before anything waits.
    mem::slice_mut(NAME, memory, events_ptr, events_len)?;
    mem::slice_mut(NAME, memory, nevents_ptr, 4)?;
    let set = match subscriptions(mem::slice(NAME, memory, subs_ptr, subs_len)?) {
        Ok(set) => set,
        Err(errno) => return Ok(Err(errno)),
    };
    // Anything ready at once (an fd) means no wait at all.
    let first = set
        .iter()
        .map(|s| s.at)
        .min()
        .expect("count > 0")
        .unwrap_or_else(Instant::now);
    Ok(Ok((set, first)))
}

fn event_bytes(count: i32, size: usize) -> Result<i32, AbiError> {
    usize::try_from(count)
        .ok()
        .and_then(|n| n.checked_mul(size))
        .and_then(|n| i32::try_from(n).ok())
        .ok_or_else(|| AbiError {
            function: "poll_oneoff",
            message: format!("{count} subscriptions do not fit in memory"),
        })
}

/// Writes the events of the subscriptions that fired by now.
fn poll_events(
    caller: &mut Caller<'_, StoreData>,
    set: &[Subscription],
    events_ptr: i32,
    count: i32,
    nevents_ptr: i32,
) -> wasmtime::Result<i32> {
    const NAME: &str = "poll_oneoff";
    let now = Instant::now();
    let fired: Vec<&Subscription> = set
        .iter()
        .filter(|s| s.at.is_none_or(|at| at <= now))
        .collect();
    let (memory, _) = super::memory(caller, NAME)?;
    let events = mem::slice_mut(NAME, memory, events_ptr, event_bytes(count, EVENT)?)?;
    for (event, sub) in events.chunks_exact_mut(EVENT).zip(&fired) {
        event.fill(0); // error 0 (success), no fd fields
        event[..8].copy_from_slice(&sub.userdata.to_le_bytes());
        event[10] = sub.tag;
    }
    let nevents = mem::slice_mut(NAME, memory, nevents_ptr, 4)?;
    nevents.copy_from_slice(&(fired.len() as u32).to_le_bytes());
    Ok(ERRNO_SUCCESS)
}

/// The blocking face: the thread sleeps, in slices.
fn poll_oneoff(
    mut caller: Caller<'_, StoreData>,
    subs_ptr: i32,
    events_ptr: i32,
    count: i32,
    nevents_ptr: i32,
) -> wasmtime::Result<i32> {
    let (set, first) = match poll_args(&mut caller, subs_ptr, events_ptr, count, nevents_ptr)? {
        Ok(polled) => polled,
        Err(errno) => return Ok(errno),
    };
    if wait::sleep_until(first, waiter(caller.data())).is_err() {
        return Err(stopped(caller.data()));
    }
    poll_events(&mut caller, &set, events_ptr, count, nevents_ptr)
}

/// The async face: the instance is suspended on a timer.
fn poll_oneoff_async(
    mut caller: Caller<'_, StoreData>,
    (subs_ptr, events_ptr, count, nevents_ptr): (i32, i32, i32, i32),
) -> Box<dyn Future<Output = wasmtime::Result<i32>> + Send + '_> {
    Box::new(async move {
        let (set, first) = match poll_args(&mut caller, subs_ptr, events_ptr, count, nevents_ptr)? {
            Ok(polled) => polled,
            Err(errno) => return Ok(errno),
        };
        let waiter = owned_waiter(caller.data());
        if wait::sleep_until_async(first, &waiter).await.is_err() {
            return Err(stopped(caller.data()));
        }
        poll_events(&mut caller, &set, events_ptr, count, nevents_ptr)
    })
}
