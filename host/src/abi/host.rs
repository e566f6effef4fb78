//! `host_call` and `host_reply` (`docs/abi.md`, "Host functions"): a guest
//! calls a function its embedder gave the pool (`hostfn.rs`).

use std::sync::Arc;

use wasmtime::{Caller, Linker};

use super::{MODULE, abi_error, mem, memory, owned_waiter, stopped};
use crate::engine::Mode;
use crate::error::AbiError;
use crate::hostfn::{CallError, HostFns, Reply};
use crate::sandbox::StoreData;
use crate::wait::OwnedWaiter;

/// The longest name `host_call` reads.
const MAX_NAME: i32 = 1024;

/// `host_call`'s arguments, copied out of the guest's memory.
fn call_args(
    caller: &mut Caller<'_, StoreData>,
    name: (i32, i32),
    input: (i32, i32),
) -> wasmtime::Result<(Arc<HostFns>, String, Vec<u8>, OwnedWaiter)> {
    let (mem, state) = memory(caller, "host_call")?;
    if name.1 > MAX_NAME {
        return abi_error(
            "host_call",
            format!("a name of {} bytes (at most {MAX_NAME})", name.1),
        );
    }
    let name_bytes = mem::slice("host_call", mem, name.0, name.1)?;
    let Ok(name) = std::str::from_utf8(name_bytes).map(str::to_string) else {
        return abi_error("host_call", "the function name is not UTF-8");
    };
    let input = mem::slice("host_call", mem, input.0, input.1)?.to_vec();
    Ok((
        state.resources.host_fns.clone(),
        name,
        input,
        owned_waiter(state),
    ))
}

/// `host_call`'s result: the reply's length, or `-1 - len` for an error
/// message of `len` bytes; either is held for `host_reply`.
fn call_result(
    state: &mut StoreData,
    fns: &HostFns,
    name: &str,
    outcome: Result<Reply, CallError>,
) -> wasmtime::Result<i64> {
    match outcome {
        Ok(Ok(reply)) => {
            let len = reply.len() as i64;
            state.reply = Some(reply);
            Ok(len)
        }
        Ok(Err(message)) => {
            let len = message.len() as i64;
            state.reply = Some(message.into_bytes());
            Ok(-1 - len)
        }
        Err(CallError::Unknown) => {
            let names = fns.names();
            Err(AbiError {
                function: "host_call",
                message: if names.is_empty() {
                    format!("no host function named {name:?}: the host gives none")
                } else {
                    format!(
                        "no host function named {name:?}; the host has: {}",
                        names.join(", ")
                    )
                },
            }
            .into())
        }
        Err(CallError::Panic(p)) => Err(p.into()),
        Err(CallError::Stopped) => Err(stopped(state)),
    }
}

pub(super) fn add_to_linker(linker: &mut Linker<StoreData>, mode: Mode) -> wasmtime::Result<()> {
    match mode {
        Mode::Sync => linker.func_wrap(
            MODULE,
            "host_call",
            |mut caller: Caller<'_, StoreData>,
             name_ptr: i32,
             name_len: i32,
             ptr: i32,
             len: i32|
             -> wasmtime::Result<i64> {
                let (fns, name, input, w) =
                    call_args(&mut caller, (name_ptr, name_len), (ptr, len))?;
                let outcome = fns.call_blocking(&name, input, &w);
                call_result(caller.data_mut(), &fns, &name, outcome)
            },
        )?,
        Mode::Async => linker.func_wrap_async(
            MODULE,
            "host_call",
            |mut caller: Caller<'_, StoreData>,
             (name_ptr, name_len, ptr, len): (i32, i32, i32, i32)| {
                Box::new(async move {
                    let (fns, name, input, w) =
                        call_args(&mut caller, (name_ptr, name_len), (ptr, len))?;
                    let outcome = fns.call(&name, input, &w).await;
                    call_result(caller.data_mut(), &fns, &name, outcome)
                })
            },
        )?,
    };
    linker.func_wrap(
        MODULE,
        "host_reply",
        |mut caller: Caller<'_, StoreData>, ptr: i32, len: i32| -> wasmtime::Result<i32> {
            let (mem, state) = memory(&mut caller, "host_reply")?;
            let dest = mem::slice_mut("host_reply", mem, ptr, len)?;
            let Some(reply) = state.reply.take() else {
                return abi_error("host_reply", "no reply is held: call host_call first");
            };
            let n = dest.len().min(reply.len());
            dest[..n].copy_from_slice(&reply[..n]);
            Ok(n as i32)
        },
    )?;
    Ok(())
}
