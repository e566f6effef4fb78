//! Glue called by the code that `#[task]` generates. Not a public API: it may
//! change in any release.

use std::cell::{Cell, RefCell};
use std::fmt::Display;
use std::sync::Once;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::sys;

pub use serde_json;

/// Status codes of `docs/abi.md`.
const STATUS_OK: i32 = 0;
const STATUS_GUEST_ERROR: i32 = 1;
const STATUS_BAD_INPUT: i32 = 2;

/// What a task function's return value turns into.
#[derive(Debug)]
pub enum Outcome {
    /// The JSON-encoded result, already in the instance's output buffer
    /// (see [`run_task`]).
    Ok,
    /// The task's own error message.
    Err(String),
}

thread_local! {
    /// The instance's input and output buffers, kept from task to task so
    /// that a task allocates nothing of its own to read its input and write
    /// its result (a tiny task's malloc and free cost as much as its
    /// decoding). A buffer that grew past [`KEEP`] for one big task is
    /// given back afterwards. wasm32-wasip1 has one thread: these are
    /// plain statics there.
    static BUFFERS: RefCell<(Vec<u8>, Vec<u8>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// The most a buffer keeps between tasks.
const KEEP: usize = 64 << 10;

/// What a buffer starts with: room for most inputs in one `input_read`.
const START: usize = 256;

/// `in_len` and `out_len` of the task I/O area: nothing there.
const NONE: u32 = u32::MAX;

/// The task I/O area of docs/abi.md (`task_io`): the host writes each
/// task's input into the input buffer before the task's call and reads its
/// output from the output buffer after it, so that a task makes no host
/// call for either (two host calls were about a seventh of a tiny task).
#[repr(C, align(4))]
struct TaskIo {
    in_ptr: u32,
    in_cap: u32,
    in_len: u32,
    out_ptr: u32,
    out_len: u32,
}

/// The area. The host reads and writes it between (never during) the
/// calls of this module's tasks: every access here is volatile, so none
/// is moved across a call or assumed from an earlier one.
struct Area(std::cell::UnsafeCell<TaskIo>);

// SAFETY: wasm32-wasip1 guests have one thread; the host touches the area
// only while no wasm code of this instance runs.
unsafe impl Sync for Area {}

static IO: Area = Area(std::cell::UnsafeCell::new(TaskIo {
    in_ptr: 0,
    in_cap: 0,
    in_len: NONE,
    out_ptr: 0,
    out_len: NONE,
}));

thread_local! {
    /// Whether the area is registered with the host (once per instance).
    static REGISTERED: Cell<bool> = const { Cell::new(false) };
    /// How many `run_task`s are running: only the outermost hands its
    /// output over through the area (a nested one's output goes through
    /// `output_write`, appended, as it always was).
    static DEPTH: Cell<u32> = const { Cell::new(0) };
}

fn io() -> *mut TaskIo {
    IO.0.get()
}

/// Registers the area with the host, once per instance.
fn register() {
    if !REGISTERED.replace(true) && cfg!(target_family = "wasm") {
        // SAFETY: the area is a static: it lives as long as the instance.
        unsafe { sys::task_io(io().cast()) };
    }
}

/// Where the host may write the next task's input: `buf`'s spare room.
fn offer_input(buf: &mut Vec<u8>) {
    let io = io();
    // SAFETY: `io` points to the live static area; see `Area`.
    unsafe {
        std::ptr::addr_of_mut!((*io).in_ptr).write_volatile(buf.as_mut_ptr() as usize as u32);
        std::ptr::addr_of_mut!((*io).in_cap).write_volatile(buf.capacity() as u32);
    }
}

fn encode<T: Serialize>(value: &T) -> Outcome {
    BUFFERS.with(|b| {
        let out = &mut b.borrow_mut().1;
        // The last output stayed for the host to read after its task.
        shrink(out);
        out.clear();
        match serde_json::to_writer(&mut *out, value) {
            Ok(()) => Outcome::Ok,
            Err(e) => Outcome::Err(format!(
                "could not serialize the task's result as JSON: {e}"
            )),
        }
    })
}

/// Reads the current task's whole input into `buf` (cleared first): one
/// `input_read` when the input fits the buffer's capacity, as most do
/// once the buffer has grown to the usual size; `input_len` only when it
/// may not.
pub(crate) fn read_input(buf: &mut Vec<u8>) {
    let io = io();
    // SAFETY: `io` points to the live static area; see `Area`.
    let (in_ptr, in_len) = unsafe {
        (
            std::ptr::addr_of!((*io).in_ptr).read_volatile(),
            std::ptr::addr_of!((*io).in_len).read_volatile(),
        )
    };
    if in_len != NONE
        && in_ptr == buf.as_mut_ptr() as usize as u32
        && in_len as usize <= buf.capacity()
    {
        // SAFETY: before this task's call the host wrote its whole input,
        // `in_len <= capacity` bytes, at `in_ptr`, which is `buf`'s
        // pointer (offered by `offer_input` and not moved since).
        unsafe { buf.set_len(in_len as usize) };
        return;
    }
    buf.clear();
    if buf.capacity() < START {
        buf.reserve(START);
    }
    let cap = buf.capacity().min(i32::MAX as usize);
    // SAFETY: `buf` has capacity for `cap` bytes at its pointer, and the
    // host writes at most `cap` bytes there, returning how many it wrote.
    let written = unsafe { sys::input_read(buf.as_mut_ptr(), cap as i32) };
    let written = usize::try_from(written).unwrap_or(0).min(cap);
    if written < cap {
        // SAFETY: the host initialized the first `written <= cap` bytes.
        unsafe { buf.set_len(written) };
        return;
    }
    // The buffer is full: the input may be longer.
    let len = usize::try_from(sys::input_len()).unwrap_or(0);
    buf.reserve_exact(len);
    let len = len.min(buf.capacity()).min(i32::MAX as usize);
    // SAFETY: as above, with `len <= capacity`.
    let written = unsafe { sys::input_read(buf.as_mut_ptr(), len as i32) };
    // SAFETY: the host initialized the first `written <= len` bytes.
    unsafe { buf.set_len(usize::try_from(written).unwrap_or(0).min(len)) };
}

/// Holds a task's return value so that method resolution can pick
/// [`ViaResult`] for `Result`s and [`ViaValue`] for everything else
/// ("autoref specialization": the generated code calls
/// `(&&Wrap::new(value)).__outcome()`).
pub struct Wrap<T>(Cell<Option<T>>);

impl<T> std::fmt::Debug for Wrap<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Wrap(..)")
    }
}

impl<T> Wrap<T> {
    /// Wraps a return value.
    pub fn new(value: T) -> Self {
        Wrap(Cell::new(Some(value)))
    }
    fn take(&self) -> T {
        self.0
            .take()
            .expect("a task's return value is converted once")
    }
}

/// Conversion of a `Result<T: Serialize, E: Display>` return value.
pub trait ViaResult {
    /// Converts the wrapped value.
    fn __outcome(&self) -> Outcome;
}

impl<T: Serialize, E: Display> ViaResult for &Wrap<Result<T, E>> {
    fn __outcome(&self) -> Outcome {
        match self.take() {
            Ok(value) => encode(&value),
            Err(e) => Outcome::Err(e.to_string()),
        }
    }
}

/// Conversion of any other `T: Serialize` return value.
pub trait ViaValue {
    /// Converts the wrapped value.
    fn __outcome(&self) -> Outcome;
}

impl<T: Serialize> ViaValue for Wrap<T> {
    fn __outcome(&self) -> Outcome {
        encode(&self.take())
    }
}

fn install_panic_hook() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            let message = info.to_string();
            // SAFETY: `message` is a live buffer of `len` bytes for the call.
            unsafe { sys::trap_message(message.as_ptr(), message.len().min(4096) as i32) };
        }));
    });
}

/// Runs one task: decodes the input as `I`, calls `f`, writes the outcome,
/// and returns the status code of `docs/abi.md`.
///
/// The input is read into the instance's input buffer and the result
/// encoded into its output buffer (see `BUFFERS`); neither is borrowed
/// while `f` runs, so a task may itself call [`crate::input`] or, through
/// a nested task function, `run_task` again.
pub fn run_task<I: DeserializeOwned>(f: impl FnOnce(I) -> Outcome) -> i32 {
    install_panic_hook();
    register();
    struct Nested;
    impl Drop for Nested {
        fn drop(&mut self) {
            DEPTH.set(DEPTH.get() - 1);
        }
    }
    DEPTH.set(DEPTH.get() + 1);
    let _nested = Nested;
    let decoded = BUFFERS.with(|b| {
        let input = &mut b.borrow_mut().0;
        read_input(input);
        let value = match decode_integer::<I>(input) {
            Some(value) => Ok(value),
            None => serde_json::from_slice::<I>(input),
        };
        shrink(input);
        offer_input(input);
        value
    });
    let value: I = match decoded {
        Ok(value) => value,
        Err(e) => {
            crate::output(format!("input does not match the task's parameters: {e}").as_bytes());
            return STATUS_BAD_INPUT;
        }
    };
    match f(value) {
        Outcome::Ok => {
            BUFFERS.with(|b| {
                let out = &mut b.borrow_mut().1;
                if DEPTH.get() == 1 && REGISTERED.get() && cfg!(target_family = "wasm") {
                    // The host reads it after this call returns: it stays
                    // in the buffer until the next task's `encode`.
                    let io = io();
                    // SAFETY: `io` points to the live static area; see `Area`.
                    unsafe {
                        std::ptr::addr_of_mut!((*io).out_ptr)
                            .write_volatile(out.as_ptr() as usize as u32);
                        std::ptr::addr_of_mut!((*io).out_len).write_volatile(out.len() as u32);
                    }
                } else {
                    crate::output(out);
                    out.clear();
                    shrink(out);
                }
            });
            STATUS_OK
        }
        Outcome::Err(message) => {
            crate::output(message.as_bytes());
            STATUS_GUEST_ERROR
        }
    }
}

/// `text` decoded as `I` if it is a JSON integer of at most 18 digits, not
/// `-0`, and `I` takes it, given to `I`'s visitor as serde_json gives it
/// (`visit_u64` for `0` and up, `visit_i64` below): the value
/// `serde_json::from_slice` makes, without its parser (a quarter of a tiny
/// task's time in the guest). `None` otherwise, errors included, for
/// serde_json to decode or explain. The host decodes outputs by the same
/// rule (`task::decode_integer`).
fn decode_integer<I: DeserializeOwned>(text: &[u8]) -> Option<I> {
    use serde::de::IntoDeserializer;
    type E = serde::de::value::Error;
    let (negative, digits) = match text {
        [b'-', rest @ ..] => (true, rest),
        _ => (false, text),
    };
    let well_formed = match digits {
        [b'0'] => !negative,
        [b'1'..=b'9', rest @ ..] => rest.len() < 18 && rest.iter().all(u8::is_ascii_digit),
        _ => false,
    };
    if !well_formed {
        return None;
    }
    // At most 18 digits: below 10^18 < 2^63.
    let magnitude = digits
        .iter()
        .fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
    if negative {
        I::deserialize(IntoDeserializer::<E>::into_deserializer(
            -(magnitude as i64),
        ))
        .ok()
    } else {
        I::deserialize(IntoDeserializer::<E>::into_deserializer(magnitude)).ok()
    }
}

/// Gives back what a buffer grew to past [`KEEP`] for one big task.
#[inline]
fn shrink(buf: &mut Vec<u8>) {
    if buf.capacity() > KEEP {
        buf.clear();
        buf.shrink_to(START);
    }
}
