//! WASI calls the host implements itself so that they follow the
//! interruption policy of `limits.rs`: today `poll_oneoff`, which is how a
//! WASI guest sleeps (`std::thread::sleep`) and waits on clocks.
//!
//! wasmtime-wasi's own `poll_oneoff` sleeps in one piece, so a guest asleep
//! in it outlives its time limit and ignores a terminate. This one handles
//! the subscription sets made only of clocks (relative ones on any clock,
//! absolute ones on the realtime clock) by sleeping in slices through
//! `wait.rs`, like every other wait; any other set (subscriptions on file
//! descriptors, absolute monotonic deadlines) goes to wasmtime-wasi's
//! implementation, kept under another name. Those are covered by the
//! watchdog instead.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use wasmtime::{Caller, Extern, Linker};

use super::{mem, stopped, waiter};
use crate::sandbox::StoreData;
use crate::wait::{Stop, next_slice};

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

/// Replaces wasmtime-wasi's `poll_oneoff` (already in `linker`) with
/// wasmpool's.
pub(crate) fn add_to_linker(linker: &mut Linker<StoreData>) -> wasmtime::Result<()> {
    // wasmtime-wasi's, in a linker of its own made on first use: the
    // fallback for the subscription sets handled there.
    let fallback: Arc<OnceLock<Linker<StoreData>>> = Arc::default();
    linker.allow_shadowing(true);
    linker.func_wrap(
        WASI,
        "poll_oneoff",
        move |caller: Caller<'_, StoreData>, subs: i32, events: i32, count: i32, nevents: i32| {
            poll_oneoff(caller, &fallback, [subs, events, count, nevents])
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

/// Calls wasmtime-wasi's `poll_oneoff`.
fn wasi_poll_oneoff(
    mut caller: Caller<'_, StoreData>,
    fallback: &OnceLock<Linker<StoreData>>,
    [subs, events, count, nevents]: [i32; 4],
) -> wasmtime::Result<i32> {
    let linker = match fallback.get() {
        Some(linker) => linker,
        None => {
            let mut linker = Linker::new(caller.engine());
            wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |s: &mut StoreData| &mut s.wasi)?;
            fallback.get_or_init(|| linker)
        }
    };
    let Extern::Func(func) = linker.get(&mut caller, WASI, "poll_oneoff")? else {
        return Err(wasmtime::Error::msg(
            "wasmtime-wasi's poll_oneoff is not a function",
        ));
    };
    func.typed::<(i32, i32, i32, i32), i32>(&caller)?
        .call(&mut caller, (subs, events, count, nevents))
}

/// One clock subscription: its `userdata` and when it fires.
struct Clock {
    userdata: u64,
    at: Instant,
}

/// The clocks of a subscription set that holds only clocks this file
/// handles; `None` for any other set.
fn clocks(subs: &[u8]) -> Option<Vec<Clock>> {
    let now = Instant::now();
    let u64_at = |s: &[u8], at: usize| u64::from_le_bytes(s[at..at + 8].try_into().unwrap());
    subs.chunks_exact(SUBSCRIPTION)
        .map(|s| {
            let userdata = u64_at(s, 0);
            if s[8] != 0 {
                return None; // fd_read or fd_write
            }
            let id = u32::from_le_bytes(s[16..20].try_into().unwrap());
            let timeout = Duration::from_nanos(u64_at(s, 24));
            let flags = u16::from_le_bytes(s[40..42].try_into().unwrap());
            let wait = match (id, flags & ABSTIME != 0) {
                (CLOCK_REALTIME | CLOCK_MONOTONIC, false) => timeout,
                (CLOCK_REALTIME, true) => {
                    let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).ok()?;
                    timeout.saturating_sub(since_epoch)
                }
                _ => return None,
            };
            // Past `Instant`'s range: the same as never, for a guest.
            let at = now
                .checked_add(wait)
                .unwrap_or(now + Duration::from_secs(1 << 40));
            Some(Clock { userdata, at })
        })
        .collect()
}

fn poll_oneoff(
    mut caller: Caller<'_, StoreData>,
    fallback: &OnceLock<Linker<StoreData>>,
    args: [i32; 4],
) -> wasmtime::Result<i32> {
    let [subs_ptr, events_ptr, count, nevents_ptr] = args;
    if count == 0 {
        return Ok(ERRNO_INVAL);
    }
    let set = {
        let Ok((memory, _)) = super::memory(&mut caller, "poll_oneoff") else {
            return wasi_poll_oneoff(caller, fallback, args);
        };
        let len = usize::try_from(count)
            .ok()
            .and_then(|n| n.checked_mul(SUBSCRIPTION))
            .and_then(|n| i32::try_from(n).ok());
        match len.and_then(|len| mem::slice("poll_oneoff", memory, subs_ptr, len).ok()) {
            Some(subs) => clocks(subs),
            None => None,
        }
    };
    let Some(set) = set else {
        return wasi_poll_oneoff(caller, fallback, args);
    };
    let first = set.iter().map(|c| c.at).min().expect("count > 0");
    loop {
        let data = caller.data();
        match next_slice(Some(first), waiter(data)) {
            Ok(slice) => std::thread::sleep(slice),
            Err(Stop::Timeout) => break,
            Err(Stop::Interrupted) => return Err(stopped(data)),
        }
    }
    let now = Instant::now();
    let fired: Vec<&Clock> = set.iter().filter(|c| c.at <= now).collect();
    let (memory, _) = super::memory(&mut caller, "poll_oneoff")?;
    let len = i32::try_from(fired.len() * EVENT).unwrap_or(i32::MAX);
    let events = mem::slice_mut("poll_oneoff", memory, events_ptr, len)?;
    for (event, clock) in events.chunks_exact_mut(EVENT).zip(&fired) {
        event.fill(0); // error 0 (success), type 0 (clock), no fd fields
        event[..8].copy_from_slice(&clock.userdata.to_le_bytes());
    }
    let nevents = mem::slice_mut("poll_oneoff", memory, nevents_ptr, 4)?;
    nevents.copy_from_slice(&(fired.len() as u32).to_le_bytes());
    Ok(ERRNO_SUCCESS)
}
