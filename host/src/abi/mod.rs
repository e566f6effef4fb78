//! The host side of `docs/abi.md`: every import of module `wasmpool`, in one
//! table ([`add_to_linker`]).
//!
//! Host functions copy between guest memory and the store's task state
//! through `mem`, the one bounds checker. A guest that breaks the ABI gets an
//! [`AbiError`](crate::error::AbiError), which traps its task and nothing
//! else. The functions that share state between instances, and the only ones
//! that wait (queues, the shared region, wait/notify), are in `sync.rs`; each
//! wait takes a deadline and honours the store's interruption flag, so that
//! one place can gain async versions later.

mod host;
pub(crate) mod mem;
mod sync;
pub(crate) mod task_io;
pub(crate) mod wasi;

use wasmtime::{Caller, Linker};

use crate::engine::Mode;
use crate::error::{AbiError, Interrupted, TimedOut};
use crate::sandbox::StoreData;
use crate::wait::{OwnedWaiter, Waiter};

/// The import module name.
pub(crate) const MODULE: &str = "wasmpool";
/// The version this host speaks, and the marker export that declares it.
pub(crate) const VERSION: u32 = 1;
pub(crate) const VERSION_MARKER_PREFIX: &str = "wasmpool_abi_v";
/// The export-name prefix of ABI tasks.
pub(crate) const TASK_PREFIX: &str = "wasmpool_task_";
/// How much of a trap message the host keeps.
const TRAP_MESSAGE_MAX: usize = 4096;

/// Every import name of module `wasmpool`, for error messages.
pub(crate) const IMPORTS: &[&str] = &[
    "input_len",
    "input_read",
    "output_write",
    "task_io",
    "trap_message",
    "worker_index",
    "worker_count",
    "queue_open",
    "queue_put",
    "queue_get",
    "queue_message",
    "queue_close",
    "queue_len",
    "queue_put_many",
    "queue_get_many",
    "queue_messages",
    "shm_size",
    "shm_read",
    "shm_write",
    "shm_load_i32",
    "shm_store_i32",
    "shm_add_i32",
    "shm_cas_i32",
    "shm_load_i64",
    "shm_store_i64",
    "shm_add_i64",
    "shm_cas_i64",
    "shm_wait_i32",
    "shm_notify",
    "shared",
    "host_call",
    "host_reply",
];

/// Who waits: the store's interruption flag and its task's deadline.
fn waiter(data: &StoreData) -> Waiter<'_> {
    Waiter {
        interrupt: Some(&data.interrupt),
        cancel: data.cancel.as_deref(),
        task_deadline: data.task_deadline,
    }
}

/// [`waiter`], owned: for the async face, whose futures outlive borrows.
fn owned_waiter(data: &StoreData) -> OwnedWaiter {
    OwnedWaiter {
        interrupt: Some(data.interrupt.clone()),
        cancel: data.cancel.clone(),
        task_deadline: data.task_deadline,
    }
}

/// Why a wait of this store was cut short: a terminate, or the task's time limit.
fn stopped(data: &StoreData) -> wasmtime::Error {
    if crate::limits::interrupted(data) {
        Interrupted.into()
    } else {
        TimedOut.into()
    }
}

fn memory<'a>(
    caller: &'a mut Caller<'_, StoreData>,
    function: &'static str,
) -> Result<(&'a mut [u8], &'a mut StoreData), AbiError> {
    // `ok_or_else`: the error's message is a `String`, and building it
    // eagerly cost a malloc and a free on every host call.
    let memory = caller.data().memory.ok_or_else(|| AbiError {
        function,
        message: "the module exports no memory named \"memory\"".into(),
    })?;
    Ok(memory.data_and_store_mut(caller))
}

/// Appends `bytes` to the task's output, within the output limit.
fn append_output(
    state: &mut StoreData,
    bytes: &[u8],
    function: &'static str,
) -> Result<(), AbiError> {
    if state.output.len() + bytes.len() > state.limits.max_output {
        return Err(AbiError {
            function,
            message: format!(
                "the task's output would exceed the limit of {} bytes",
                state.limits.max_output
            ),
        });
    }
    state.output.extend_from_slice(bytes);
    Ok(())
}

/// Adds every `wasmpool` import to `linker`, those that wait with the face
/// `mode` needs.
pub(crate) fn add_to_linker(linker: &mut Linker<StoreData>, mode: Mode) -> wasmtime::Result<()> {
    linker.func_wrap(
        MODULE,
        "input_len",
        |caller: Caller<'_, StoreData>| -> i32 {
            // The input length is capped at i32::MAX when it is set.
            caller.data().input.len() as i32
        },
    )?;
    linker.func_wrap(
        MODULE,
        "input_read",
        |mut caller: Caller<'_, StoreData>, ptr: i32, len: i32| -> wasmtime::Result<i32> {
            let (mem, state) = memory(&mut caller, "input_read")?;
            let dest = mem::slice_mut("input_read", mem, ptr, len)?;
            let n = dest.len().min(state.input.len());
            dest[..n].copy_from_slice(&state.input[..n]);
            Ok(n as i32)
        },
    )?;
    linker.func_wrap(
        MODULE,
        "output_write",
        |mut caller: Caller<'_, StoreData>, ptr: i32, len: i32| -> wasmtime::Result<()> {
            let (mem, state) = memory(&mut caller, "output_write")?;
            let src = mem::slice("output_write", mem, ptr, len)?;
            append_output(state, src, "output_write")?;
            Ok(())
        },
    )?;
    linker.func_wrap(
        MODULE,
        "trap_message",
        |mut caller: Caller<'_, StoreData>, ptr: i32, len: i32| -> wasmtime::Result<()> {
            let (mem, state) = memory(&mut caller, "trap_message")?;
            let src = mem::slice("trap_message", mem, ptr, len)?;
            let kept = &src[..src.len().min(TRAP_MESSAGE_MAX)];
            state.trap_message = Some(String::from_utf8_lossy(kept).into_owned());
            Ok(())
        },
    )?;
    linker.func_wrap(
        MODULE,
        "worker_index",
        |caller: Caller<'_, StoreData>| -> i32 { caller.data().worker.index as i32 },
    )?;
    linker.func_wrap(
        MODULE,
        "worker_count",
        |caller: Caller<'_, StoreData>| -> i32 { caller.data().worker.count as i32 },
    )?;
    task_io::add_to_linker(linker)?;
    sync::add_to_linker(linker, mode)?;
    host::add_to_linker(linker, mode)
}

/// `Err(AbiError)` for `function`.
pub(crate) fn abi_error<T>(
    function: &'static str,
    message: impl Into<String>,
) -> wasmtime::Result<T> {
    Err(AbiError {
        function,
        message: message.into(),
    }
    .into())
}
