//! Glue called by the code that `#[task]` generates. Not a public API: it may
//! change in any release.

use std::cell::Cell;
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
    /// The JSON-encoded result.
    Ok(Vec<u8>),
    /// The task's own error message.
    Err(String),
}

fn encode<T: Serialize>(value: &T) -> Outcome {
    match serde_json::to_vec(value) {
        Ok(bytes) => Outcome::Ok(bytes),
        Err(e) => Outcome::Err(format!(
            "could not serialize the task's result as JSON: {e}"
        )),
    }
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
pub fn run_task<I: DeserializeOwned>(f: impl FnOnce(I) -> Outcome) -> i32 {
    install_panic_hook();
    let input = crate::input();
    let value: I = match serde_json::from_slice(&input) {
        Ok(value) => value,
        Err(e) => {
            crate::output(format!("input does not match the task's parameters: {e}").as_bytes());
            return STATUS_BAD_INPUT;
        }
    };
    match f(value) {
        Outcome::Ok(bytes) => {
            crate::output(&bytes);
            STATUS_OK
        }
        Outcome::Err(message) => {
            crate::output(message.as_bytes());
            STATUS_GUEST_ERROR
        }
    }
}
