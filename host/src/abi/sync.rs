//! The ABI functions that reach state shared by every instance of a pool or
//! process group: named queues and the shared region (`docs/abi.md`,
//! "Queues" and "Shared memory"). The only host calls that wait live here.

use std::time::Duration;

use wasmtime::{Caller, Linker};

use std::sync::Arc;

use super::{MODULE, abi_error, mem, memory, owned_waiter, stopped, waiter};
use crate::engine::Mode;
use crate::queue::{Batch, PREFIX, Queue, QueueError};
use crate::sandbox::StoreData;
use crate::shm::{SharedRegion, ShmError, Wake};

/// `timeout_ms < 0` waits forever.
fn timeout(ms: i64) -> Option<Duration> {
    u64::try_from(ms).ok().map(Duration::from_millis)
}

fn queue<'a>(
    data: &'a StoreData,
    function: &'static str,
    handle: i32,
) -> wasmtime::Result<&'a std::sync::Arc<crate::queue::Queue>> {
    match usize::try_from(handle)
        .ok()
        .and_then(|h| data.resources.queues.get(h))
    {
        Some(q) => Ok(q),
        None => abi_error(function, format!("bad queue handle {handle}")),
    }
}

fn region<'a>(data: &'a StoreData, function: &'static str) -> wasmtime::Result<&'a SharedRegion> {
    match &data.resources.shm {
        Some(r) => Ok(r),
        None => abi_error(
            function,
            "this run has no shared region (give it one: --shared-memory SIZE)",
        ),
    }
}

fn offset(function: &'static str, offset: i64) -> wasmtime::Result<u64> {
    u64::try_from(offset).or_else(|_| abi_error(function, format!("negative offset {offset}")))
}

fn shm<T>(function: &'static str, r: Result<T, ShmError>) -> wasmtime::Result<T> {
    r.or_else(|e| abi_error(function, e.to_string()))
}

/// `queue_put`'s arguments: the queue, and the message copied out of the
/// guest's memory (checked against the queue's byte budget first).
fn put_args<'a>(
    caller: &'a mut Caller<'_, StoreData>,
    q: i32,
    ptr: i32,
    len: i32,
) -> wasmtime::Result<(&'a Arc<Queue>, Vec<u8>, &'a StoreData)> {
    let (mem, state) = memory(caller, "queue_put")?;
    let src = mem::slice("queue_put", mem, ptr, len)?;
    let queue = queue(state, "queue_put", q)?;
    if crate::queue::cost(src) > queue.max_bytes() {
        // Checked before copying: the message could never fit.
        return abi_error(
            "queue_put",
            format!(
                "a message of {} bytes {} queue {:?}'s byte budget of {} bytes",
                src.len(),
                crate::queue::too_large(src.len(), queue.max_bytes()),
                queue.name(),
                queue.max_bytes()
            ),
        );
    }
    Ok((queue, src.to_vec(), state))
}

/// `queue_put`'s status: 0 put, 1 timed out, 2 closed.
fn put_status(state: &StoreData, put: Result<(), QueueError>) -> wasmtime::Result<i32> {
    match put {
        Ok(()) => Ok(0),
        Err(QueueError::Timeout(_)) => Ok(1),
        Err(QueueError::Interrupted(_)) => Err(stopped(state)),
        Err(_) => Ok(2),
    }
}

/// `queue_get`'s result: the message's length (held for `queue_message`),
/// -1 timed out, -2 closed.
fn get_status(state: &mut StoreData, got: Result<Vec<u8>, QueueError>) -> wasmtime::Result<i64> {
    match got {
        Ok(message) => {
            let len = message.len() as i64;
            state.message = Some(message);
            Ok(len)
        }
        Err(QueueError::Timeout(_)) => Ok(-1),
        Err(QueueError::Interrupted(_)) => Err(stopped(state)),
        Err(_) => Ok(-2),
    }
}

/// Checks a guest's batch for `queue_put_many` whole, before anything is
/// put: exactly `count` length-prefixed messages filling `batch`, each
/// within the queue's byte budget. Walks it without allocating, in at most
/// `batch.len() / 4 + 1` steps whatever `count` says.
fn check_batch(queue: &Queue, batch: &[u8], count: i32) -> wasmtime::Result<()> {
    const F: &str = "queue_put_many";
    let Ok(count) = usize::try_from(count) else {
        return abi_error(F, format!("negative count {count}"));
    };
    let mut rest = batch;
    for i in 0..count {
        let Some((prefix, tail)) = rest.split_first_chunk::<PREFIX>() else {
            return abi_error(
                F,
                format!(
                    "the batch of {} bytes ends inside the length prefix of message {i} of {count}",
                    batch.len()
                ),
            );
        };
        let len = u32::from_le_bytes(*prefix) as usize;
        if len > tail.len() {
            return abi_error(
                F,
                format!(
                    "message {i} of {count} says {len} bytes, but only {} bytes of the batch follow",
                    tail.len()
                ),
            );
        }
        if crate::queue::cost(&tail[..len]) > queue.max_bytes() {
            return abi_error(
                F,
                format!(
                    "message {i} of {len} bytes {} queue {:?}'s byte budget of {} bytes",
                    crate::queue::too_large(len, queue.max_bytes()),
                    queue.name(),
                    queue.max_bytes()
                ),
            );
        }
        rest = &tail[len..];
    }
    if !rest.is_empty() {
        return abi_error(
            F,
            format!(
                "{} bytes of the batch are left after its {count} messages",
                rest.len()
            ),
        );
    }
    Ok(())
}

/// `queue_put_many`'s arguments: the queue and the checked batch (still in
/// guest memory: messages are copied only as they are put).
fn put_many_args<'a>(
    caller: &'a mut Caller<'_, StoreData>,
    q: i32,
    ptr: i32,
    len: i32,
    count: i32,
) -> wasmtime::Result<(&'a Arc<Queue>, &'a [u8], &'a StoreData)> {
    let (mem, state) = memory(caller, "queue_put_many")?;
    let batch = mem::slice("queue_put_many", mem, ptr, len)?;
    let queue = queue(state, "queue_put_many", q)?;
    check_batch(queue, batch, count)?;
    Ok((queue, batch, state))
}

/// `queue_put_many`'s result: how many were put, -1 timed out, -2 closed.
fn put_many_status(state: &StoreData, put: Result<usize, QueueError>) -> wasmtime::Result<i32> {
    match put {
        // At most `count`, an i32.
        Ok(n) => Ok(n as i32),
        Err(QueueError::Timeout(_)) => Ok(-1),
        Err(QueueError::Interrupted(_)) => Err(stopped(state)),
        Err(QueueError::TooLarge { len, max_bytes, .. }) => abi_error(
            "queue_put_many",
            format!(
                "a message of {len} bytes {} the queue's byte budget of {max_bytes} bytes",
                crate::queue::too_large(len, max_bytes)
            ),
        ),
        Err(_) => Ok(-2),
    }
}

/// `queue_get_many`'s limits: at least one message, a byte cap of at
/// least zero (the first message is taken whatever its size).
fn get_many_limits(max_count: i32, max_bytes: i32) -> wasmtime::Result<(usize, usize)> {
    if max_count < 1 {
        return abi_error(
            "queue_get_many",
            format!("max_count must be at least 1, not {max_count}"),
        );
    }
    if max_bytes < 0 {
        return abi_error("queue_get_many", format!("negative max_bytes {max_bytes}"));
    }
    Ok((max_count as usize, max_bytes as usize))
}

/// `queue_get_many`'s result: the batch's length in bytes (held for
/// `queue_messages`), -1 timed out, -2 closed.
fn get_many_status(
    state: &mut StoreData,
    got: Result<usize, QueueError>,
    batch: Vec<u8>,
) -> wasmtime::Result<i64> {
    match got {
        Ok(_) => {
            let len = batch.len() as i64;
            state.message = Some(batch);
            Ok(len)
        }
        Err(QueueError::Timeout(_)) => Ok(-1),
        Err(QueueError::Interrupted(_)) => Err(stopped(state)),
        Err(_) => Ok(-2),
    }
}

/// `shm_wait_i32`'s status: 0 woken, 1 value differed, 2 timed out.
fn wait_status(data: &StoreData, wake: Result<Wake, ShmError>) -> wasmtime::Result<i32> {
    match shm("shm_wait_i32", wake)? {
        Wake::Notified => Ok(0),
        Wake::Mismatch => Ok(1),
        Wake::TimedOut => Ok(2),
        Wake::Interrupted => Err(stopped(data)),
    }
}

/// Adds the queue and shared-region imports; the waiting ones with the
/// face `mode` needs (`wait.rs`).
pub(super) fn add_to_linker(linker: &mut Linker<StoreData>, mode: Mode) -> wasmtime::Result<()> {
    // ---- queues ----
    linker.func_wrap(
        MODULE,
        "queue_open",
        |mut caller: Caller<'_, StoreData>, ptr: i32, len: i32| -> wasmtime::Result<i32> {
            let (mem, state) = memory(&mut caller, "queue_open")?;
            let name = mem::slice("queue_open", mem, ptr, len)?;
            let found = state
                .resources
                .queues
                .iter()
                .position(|q| q.name().as_bytes() == name);
            Ok(found.map_or(-1, |i| i as i32))
        },
    )?;
    match mode {
        Mode::Sync => {
            linker.func_wrap(
                MODULE,
                "queue_put",
                |mut caller: Caller<'_, StoreData>,
                 q: i32,
                 ptr: i32,
                 len: i32,
                 ms: i64|
                 -> wasmtime::Result<i32> {
                    let (queue, message, state) = put_args(&mut caller, q, ptr, len)?;
                    let put = queue.put_interruptible(message, timeout(ms), waiter(state));
                    put_status(state, put)
                },
            )?;
            linker.func_wrap(
                MODULE,
                "queue_get",
                |mut caller: Caller<'_, StoreData>, q: i32, ms: i64| -> wasmtime::Result<i64> {
                    let state = caller.data_mut();
                    let queue = queue(state, "queue_get", q)?;
                    let got = queue.get_interruptible(timeout(ms), waiter(state));
                    get_status(state, got)
                },
            )?;
            linker.func_wrap(
                MODULE,
                "queue_put_many",
                |mut caller: Caller<'_, StoreData>,
                 q: i32,
                 ptr: i32,
                 len: i32,
                 count: i32,
                 ms: i64|
                 -> wasmtime::Result<i32> {
                    let (queue, batch, state) = put_many_args(&mut caller, q, ptr, len, count)?;
                    let put =
                        queue.put_many_interruptible(Batch::new(batch), timeout(ms), waiter(state));
                    put_many_status(state, put)
                },
            )?;
            linker.func_wrap(
                MODULE,
                "queue_get_many",
                |mut caller: Caller<'_, StoreData>,
                 q: i32,
                 max_count: i32,
                 max_bytes: i32,
                 ms: i64|
                 -> wasmtime::Result<i64> {
                    let (max_count, max_bytes) = get_many_limits(max_count, max_bytes)?;
                    let state = caller.data_mut();
                    let queue = queue(state, "queue_get_many", q)?;
                    let mut batch = Vec::new();
                    let got = queue.get_many_interruptible(
                        max_count,
                        max_bytes,
                        &mut batch,
                        timeout(ms),
                        waiter(state),
                    );
                    get_many_status(state, got, batch)
                },
            )?;
        }
        Mode::Async => {
            linker.func_wrap_async(
                MODULE,
                "queue_put",
                |mut caller: Caller<'_, StoreData>, (q, ptr, len, ms): (i32, i32, i32, i64)| {
                    Box::new(async move {
                        let (queue, message, state) = put_args(&mut caller, q, ptr, len)?;
                        let (queue, waiter) = (queue.clone(), owned_waiter(state));
                        let put = queue.put_async(message, timeout(ms), &waiter).await;
                        put_status(caller.data(), put)
                    })
                },
            )?;
            linker.func_wrap_async(
                MODULE,
                "queue_get",
                |mut caller: Caller<'_, StoreData>, (q, ms): (i32, i64)| {
                    Box::new(async move {
                        let state = caller.data();
                        let queue = queue(state, "queue_get", q)?.clone();
                        let waiter = owned_waiter(state);
                        let got = queue.get_async(timeout(ms), &waiter).await;
                        get_status(caller.data_mut(), got)
                    })
                },
            )?;
            linker.func_wrap_async(
                MODULE,
                "queue_put_many",
                |mut caller: Caller<'_, StoreData>,
                 (q, ptr, len, count, ms): (i32, i32, i32, i32, i64)| {
                    Box::new(async move {
                        let (queue, batch, state) = put_many_args(&mut caller, q, ptr, len, count)?;
                        let (queue, waiter) = (queue.clone(), owned_waiter(state));
                        // The batch stays in guest memory while the guest is
                        // suspended in this call: only what is put is copied.
                        let put = queue
                            .put_many_async(Batch::new(batch), timeout(ms), &waiter)
                            .await;
                        put_many_status(caller.data(), put)
                    })
                },
            )?;
            linker.func_wrap_async(
                MODULE,
                "queue_get_many",
                |mut caller: Caller<'_, StoreData>,
                 (q, max_count, max_bytes, ms): (i32, i32, i32, i64)| {
                    Box::new(async move {
                        let (max_count, max_bytes) = get_many_limits(max_count, max_bytes)?;
                        let state = caller.data();
                        let queue = queue(state, "queue_get_many", q)?.clone();
                        let waiter = owned_waiter(state);
                        let mut batch = Vec::new();
                        let got = queue
                            .get_many_async(max_count, max_bytes, &mut batch, timeout(ms), &waiter)
                            .await;
                        get_many_status(caller.data_mut(), got, batch)
                    })
                },
            )?;
        }
    }
    linker.func_wrap(
        MODULE,
        "queue_message",
        |mut caller: Caller<'_, StoreData>, ptr: i32, len: i32| -> wasmtime::Result<i32> {
            let (mem, state) = memory(&mut caller, "queue_message")?;
            let dest = mem::slice_mut("queue_message", mem, ptr, len)?;
            let Some(message) = state.message.take() else {
                return abi_error("queue_message", "no message is held: call queue_get first");
            };
            let n = dest.len().min(message.len());
            dest[..n].copy_from_slice(&message[..n]);
            Ok(n as i32)
        },
    )?;
    linker.func_wrap(
        MODULE,
        "queue_messages",
        |mut caller: Caller<'_, StoreData>, ptr: i32, len: i32| -> wasmtime::Result<i32> {
            let (mem, state) = memory(&mut caller, "queue_messages")?;
            let dest = mem::slice_mut("queue_messages", mem, ptr, len)?;
            let Some(batch) = state.message.take() else {
                return abi_error(
                    "queue_messages",
                    "no batch is held: call queue_get_many first",
                );
            };
            let n = dest.len().min(batch.len());
            dest[..n].copy_from_slice(&batch[..n]);
            Ok(n as i32)
        },
    )?;
    linker.func_wrap(
        MODULE,
        "queue_close",
        |caller: Caller<'_, StoreData>, q: i32| -> wasmtime::Result<()> {
            queue(caller.data(), "queue_close", q)?.close();
            Ok(())
        },
    )?;
    linker.func_wrap(
        MODULE,
        "queue_len",
        |caller: Caller<'_, StoreData>, q: i32| -> wasmtime::Result<i32> {
            Ok(queue(caller.data(), "queue_len", q)?
                .len()
                .min(i32::MAX as usize) as i32)
        },
    )?;

    // ---- the shared region ----
    linker.func_wrap(MODULE, "shm_size", |caller: Caller<'_, StoreData>| -> i64 {
        caller
            .data()
            .resources
            .shm
            .as_ref()
            .map_or(0, |r| r.len() as i64)
    })?;
    linker.func_wrap(
        MODULE,
        "shm_read",
        |mut caller: Caller<'_, StoreData>, off: i64, ptr: i32, len: i32| -> wasmtime::Result<()> {
            let (mem, state) = memory(&mut caller, "shm_read")?;
            let dest = mem::slice_mut("shm_read", mem, ptr, len)?;
            let region = region(state, "shm_read")?;
            shm("shm_read", region.read(offset("shm_read", off)?, dest))
        },
    )?;
    linker.func_wrap(
        MODULE,
        "shm_write",
        |mut caller: Caller<'_, StoreData>, off: i64, ptr: i32, len: i32| -> wasmtime::Result<()> {
            let (mem, state) = memory(&mut caller, "shm_write")?;
            let src = mem::slice("shm_write", mem, ptr, len)?;
            let region = region(state, "shm_write")?;
            shm("shm_write", region.write(offset("shm_write", off)?, src))
        },
    )?;
    macro_rules! atomics {
        ($ty:ty, $load:literal, $store:literal, $add:literal, $cas:literal,
         $load_fn:ident, $store_fn:ident, $add_fn:ident, $cas_fn:ident) => {
            linker.func_wrap(
                MODULE,
                $load,
                |caller: Caller<'_, StoreData>, off: i64| -> wasmtime::Result<$ty> {
                    shm(
                        $load,
                        region(caller.data(), $load)?.$load_fn(offset($load, off)?),
                    )
                },
            )?;
            linker.func_wrap(
                MODULE,
                $store,
                |caller: Caller<'_, StoreData>, off: i64, v: $ty| -> wasmtime::Result<()> {
                    shm(
                        $store,
                        region(caller.data(), $store)?.$store_fn(offset($store, off)?, v),
                    )
                },
            )?;
            linker.func_wrap(
                MODULE,
                $add,
                |caller: Caller<'_, StoreData>, off: i64, v: $ty| -> wasmtime::Result<$ty> {
                    shm(
                        $add,
                        region(caller.data(), $add)?.$add_fn(offset($add, off)?, v),
                    )
                },
            )?;
            linker.func_wrap(
                MODULE,
                $cas,
                |caller: Caller<'_, StoreData>,
                 off: i64,
                 expected: $ty,
                 new: $ty|
                 -> wasmtime::Result<$ty> {
                    shm(
                        $cas,
                        region(caller.data(), $cas)?.$cas_fn(offset($cas, off)?, expected, new),
                    )
                },
            )?;
        };
    }
    atomics!(
        i32,
        "shm_load_i32",
        "shm_store_i32",
        "shm_add_i32",
        "shm_cas_i32",
        load_i32,
        store_i32,
        fetch_add_i32,
        compare_exchange_i32
    );
    atomics!(
        i64,
        "shm_load_i64",
        "shm_store_i64",
        "shm_add_i64",
        "shm_cas_i64",
        load_i64,
        store_i64,
        fetch_add_i64,
        compare_exchange_i64
    );
    match mode {
        Mode::Sync => linker.func_wrap(
            MODULE,
            "shm_wait_i32",
            |caller: Caller<'_, StoreData>,
             off: i64,
             expected: i32,
             ms: i64|
             -> wasmtime::Result<i32> {
                let data = caller.data();
                let region = region(data, "shm_wait_i32")?;
                let off = offset("shm_wait_i32", off)?;
                let wake = region.wait_i32_for(off, expected, timeout(ms), waiter(data));
                wait_status(data, wake)
            },
        )?,
        Mode::Async => linker.func_wrap_async(
            MODULE,
            "shm_wait_i32",
            |caller: Caller<'_, StoreData>, (off, expected, ms): (i64, i32, i64)| {
                Box::new(async move {
                    let data = caller.data();
                    let region = region(data, "shm_wait_i32")?.clone();
                    let off = offset("shm_wait_i32", off)?;
                    let waiter = owned_waiter(data);
                    let wake = region
                        .wait_i32_async(off, expected, timeout(ms), &waiter)
                        .await;
                    wait_status(caller.data(), wake)
                })
            },
        )?,
    };
    linker.func_wrap(
        MODULE,
        "shm_notify",
        |caller: Caller<'_, StoreData>, off: i64, count: i32| -> wasmtime::Result<i32> {
            let region = region(caller.data(), "shm_notify")?;
            let count = u32::try_from(count).unwrap_or(u32::MAX);
            Ok(shm(
                "shm_notify",
                region.notify(offset("shm_notify", off)?, count),
            )?
            .min(i32::MAX as u32) as i32)
        },
    )?;
    Ok(())
}
