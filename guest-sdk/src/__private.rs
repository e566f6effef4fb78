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

fn encode<T: Serialize>(value: &T) -> Outcome {
    BUFFERS.with(|b| {
        let out = &mut b.borrow_mut().1;
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
    let decoded = BUFFERS.with(|b| {
        let input = &mut b.borrow_mut().0;
        read_input(input);
        let value = serde_json::from_slice::<I>(input);
        shrink(input);
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
                crate::output(out);
                out.clear();
                shrink(out);
            });
            STATUS_OK
        }
        Outcome::Err(message) => {
            crate::output(message.as_bytes());
            STATUS_GUEST_ERROR
        }
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
