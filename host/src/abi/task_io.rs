//! The task I/O area (docs/abi.md, `task_io`): a task's input and output
//! passed through guest memory around the task's call, instead of through
//! `input_read` and `output_write` inside it.
//!
//! A tiny task made two host calls, each a trip out of wasm and back plus a
//! lookup of the guest's memory (together about a seventh of a tiny SDK
//! task's time). A guest that registers an area has its input written into
//! its own buffer before the call and its output read from it after, by
//! the host, with no call out of wasm.
//!
//! The area is 20 bytes of guest memory, five little-endian `u32`s:
//!
//! | offset | field | written by |
//! |---|---|---|
//! | 0 | `in_ptr`: where the next input may go | the guest |
//! | 4 | `in_cap`: how many bytes fit there | the guest |
//! | 8 | `in_len`: the input's length, or `NONE` if it was not written | the host, before each task |
//! | 12 | `out_ptr`: where the task's output is | the guest |
//! | 16 | `out_len`: its length, or `NONE` for no output here | the host sets `NONE` before each task; the guest sets the length |
//!
//! Everything the guest wrote is checked as the calls check their
//! arguments: an input range outside memory is not written to (`in_len`
//! says `NONE`, and `input_read` still works), an output range outside
//! memory is an `abi` error of the task, and the output counts against the
//! output limit as `output_write`'s does (it is appended after anything
//! `output_write` wrote).

use wasmtime::{Caller, Linker, Store};

use super::{MODULE, append_output, memory};
use crate::error::AbiError;
use crate::sandbox::StoreData;

/// The area's size in bytes.
const AREA: usize = 20;
/// `in_len` and `out_len`: nothing there.
const NONE: u32 = u32::MAX;

const IN_PTR: usize = 0;
const IN_CAP: usize = 4;
const IN_LEN: usize = 8;
const OUT_PTR: usize = 12;
const OUT_LEN: usize = 16;

fn get(area: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(area[at..at + 4].try_into().expect("4 bytes"))
}

fn set(area: &mut [u8], at: usize, v: u32) {
    area[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

/// `[ptr, ptr + len)` inside `size` bytes.
fn range(ptr: u32, len: u32, size: usize) -> Option<std::ops::Range<usize>> {
    let (ptr, len) = (ptr as usize, len as usize);
    ptr.checked_add(len)
        .filter(|&end| end <= size)
        .map(|end| ptr..end)
}

/// Adds `task_io(ptr: i32)`: registers (or, with `-1`, forgets) the area.
pub(crate) fn add_to_linker(linker: &mut Linker<StoreData>) -> wasmtime::Result<()> {
    linker.func_wrap(
        MODULE,
        "task_io",
        |mut caller: Caller<'_, StoreData>, ptr: i32| -> wasmtime::Result<()> {
            if ptr == -1 {
                caller.data_mut().task_io = None;
                return Ok(());
            }
            let (mem, state) = memory(&mut caller, "task_io")?;
            let fits = u32::try_from(ptr)
                .ok()
                .filter(|&p| p % 4 == 0 && range(p, AREA as u32, mem.len()).is_some());
            match fits {
                Some(at) => {
                    state.task_io = Some(at);
                    Ok(())
                }
                None => Err(AbiError {
                    function: "task_io",
                    message: format!(
                        "the area at {ptr} is not 4-aligned or not {AREA} bytes inside memory"
                    ),
                }
                .into()),
            }
        },
    )?;
    Ok(())
}

/// Before an ABI task's call: writes its input where the area says, if it
/// fits, and clears the area's output.
#[inline]
pub(crate) fn before_call(store: &mut Store<StoreData>) {
    let Some(at) = store.data().task_io else {
        return;
    };
    let Some(memory) = store.data().memory else {
        return;
    };
    let (mem, state) = memory.data_and_store_mut(store);
    let at = at as usize;
    let area = &mem[at..at + AREA];
    let (in_ptr, in_cap) = (get(area, IN_PTR), get(area, IN_CAP));
    let len = state.input.len();
    let written = match range(in_ptr, in_cap, mem.len()) {
        Some(r) if len <= r.len() => {
            mem[r.start..r.start + len].copy_from_slice(&state.input);
            len as u32
        }
        _ => NONE,
    };
    let area = &mut mem[at..at + AREA];
    set(area, IN_LEN, written);
    set(area, OUT_LEN, NONE);
}

/// After an ABI task's call returned: appends the output the area names,
/// if any, to the task's output.
#[inline]
pub(crate) fn after_call(store: &mut Store<StoreData>) -> Result<(), AbiError> {
    let Some(at) = store.data().task_io else {
        return Ok(());
    };
    let Some(memory) = store.data().memory else {
        return Ok(());
    };
    let (mem, state) = memory.data_and_store_mut(store);
    let at = at as usize;
    let area = &mem[at..at + AREA];
    let (out_ptr, out_len) = (get(area, OUT_PTR), get(area, OUT_LEN));
    if out_len == NONE {
        return Ok(());
    }
    let Some(r) = range(out_ptr, out_len, mem.len()) else {
        return Err(AbiError {
            function: "task_io",
            message: format!(
                "the output at {out_ptr} of {out_len} bytes is out of bounds of the guest's memory"
            ),
        });
    };
    append_output(state, &mem[r], "task_io")
}
