//! Calls to host functions: named functions the embedder gave the pool (a
//! database lookup, an HTTP request...), called from inside a task.
//!
//! The input and the reply cross the boundary as bytes; by convention they
//! are JSON, and [`call`] does the serde on both sides. [`call_bytes`] passes
//! bytes through untouched, for host functions that speak something else.
//!
//! ```no_run
//! use wasmpool_guest::host::{self, HostError};
//!
//! #[wasmpool_guest::task]
//! pub fn greet(id: u64) -> Result<String, HostError> {
//!     // `?` works: the task then fails with kind `guest` and the error's message.
//!     let name: String = host::call("user_name", &id)?;
//!     Ok(format!("hello, {name}"))
//! }
//! ```
//!
//! A call waits until the host function answers (in the host's async mode it
//! suspends only this guest, not its worker thread), and the task's time
//! limit applies to the wait. Calling a name the host does not have is a
//! broken guest, not an error the guest can handle: the task traps with kind
//! `abi`, and the host's message lists the names it has. A host function that
//! panics ends the task with kind `host`. See `docs/abi.md`, "Host
//! functions", for the contract underneath.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::sys;

/// Why a host call gave no reply of the expected type.
///
/// Its [`Display`](std::fmt::Display) names the host function, so a task
/// that returns `Result<_, HostError>` (or passes it on with `?`) reports a
/// useful `guest` error.
///
/// ```no_run
/// use wasmpool_guest::host::{self, HostError};
///
/// match host::call::<_, u64>("stock", "apples") {
///     Ok(n) => println!("{n} apples"),
///     Err(HostError::Failed { message, .. }) => println!("the host said no: {message}"),
///     Err(e) => panic!("{e}"),
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostError {
    /// The host function ran and returned an error.
    Failed {
        /// The host function's name.
        function: String,
        /// Its error message (invalid UTF-8 is replaced).
        message: String,
    },
    /// The input did not serialize as JSON; the host function was not called.
    Input {
        /// The host function's name.
        function: String,
        /// serde's message.
        message: String,
    },
    /// The reply did not deserialize as the type the caller asked for.
    Reply {
        /// The host function's name.
        function: String,
        /// serde's message.
        message: String,
    },
}

impl HostError {
    /// The name of the host function the call was for.
    ///
    /// ```
    /// use wasmpool_guest::host::HostError;
    /// let e = HostError::Failed { function: "stock".into(), message: "no such item".into() };
    /// assert_eq!(e.function(), "stock");
    /// ```
    pub fn function(&self) -> &str {
        match self {
            HostError::Failed { function, .. }
            | HostError::Input { function, .. }
            | HostError::Reply { function, .. } => function,
        }
    }

    /// The message alone: the host function's own for
    /// [`Failed`](HostError::Failed), serde's for the others.
    ///
    /// ```
    /// use wasmpool_guest::host::HostError;
    /// let e = HostError::Failed { function: "stock".into(), message: "no such item".into() };
    /// assert_eq!(e.message(), "no such item");
    /// ```
    pub fn message(&self) -> &str {
        match self {
            HostError::Failed { message, .. }
            | HostError::Input { message, .. }
            | HostError::Reply { message, .. } => message,
        }
    }
}

impl std::fmt::Display for HostError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HostError::Failed { function, message } => {
                write!(f, "host function {function:?} failed: {message}")
            }
            HostError::Input { function, message } => write!(
                f,
                "the input for host function {function:?} does not serialize as JSON: {message}"
            ),
            HostError::Reply { function, message } => write!(
                f,
                "the reply of host function {function:?} does not decode as the expected type: {message}"
            ),
        }
    }
}

impl std::error::Error for HostError {}

/// Calls the host function `name` with `input` as JSON, and decodes its JSON
/// reply as `Out`.
///
/// # Errors
///
/// [`HostError::Failed`] when the host function returns an error,
/// [`HostError::Input`] when `input` does not serialize (the function is not
/// called), [`HostError::Reply`] when the reply does not decode as `Out`.
///
/// # Traps
///
/// The task traps (kind `abi`) when the host has no function named `name`,
/// and ends with kind `host` when the host function panics; neither returns
/// here.
///
/// ```no_run
/// use serde::{Deserialize, Serialize};
/// use wasmpool_guest::host;
///
/// #[derive(Serialize)]
/// struct Get<'a> {
///     table: &'a str,
///     key: u64,
/// }
///
/// #[derive(Deserialize)]
/// struct User {
///     name: String,
/// }
///
/// let user: User = host::call("db.get", &Get { table: "users", key: 7 })?;
/// println!("{}", user.name);
/// # Ok::<(), host::HostError>(())
/// ```
///
/// An input that cannot be JSON fails before anything reaches the host:
///
/// ```
/// use std::collections::HashMap;
/// use wasmpool_guest::host::{self, HostError};
///
/// let input = HashMap::from([((1, 2), "JSON keys must be strings")]);
/// let err = host::call::<_, ()>("anything", &input).unwrap_err();
/// assert!(matches!(err, HostError::Input { .. }));
/// ```
pub fn call<In, Out>(name: &str, input: &In) -> Result<Out, HostError>
where
    In: Serialize + ?Sized,
    Out: DeserializeOwned,
{
    let input = serde_json::to_vec(input).map_err(|e| HostError::Input {
        function: name.to_string(),
        message: e.to_string(),
    })?;
    decode(name, &call_bytes(name, &input)?)
}

/// Calls the host function `name` with `input` as it is, and returns its
/// reply as it is: for host functions whose input or reply is not JSON.
///
/// # Errors
///
/// [`HostError::Failed`] when the host function returns an error.
///
/// # Traps
///
/// As [`call`]: an unknown `name` traps with kind `abi`, a panicking host
/// function ends the task with kind `host`.
///
/// ```no_run
/// let digest = wasmpool_guest::host::call_bytes("sha256", b"some bytes")?;
/// assert_eq!(digest.len(), 32);
/// # Ok::<(), wasmpool_guest::host::HostError>(())
/// ```
pub fn call_bytes(name: &str, input: &[u8]) -> Result<Vec<u8>, HostError> {
    // SAFETY: `name` and `input` are live buffers of their lengths for the
    // call; the host copies them and keeps no pointer.
    let result = unsafe {
        sys::host_call(
            name.as_ptr(),
            abi_len(name.len()),
            input.as_ptr(),
            abi_len(input.len()),
        )
    };
    if result >= 0 {
        Ok(take_reply(result))
    } else {
        let message = take_reply(-1 - result);
        Err(HostError::Failed {
            function: name.to_string(),
            message: String::from_utf8_lossy(&message).into_owned(),
        })
    }
}

/// A slice length as the ABI's `i32`. Lossless on wasm32, where no object
/// exceeds `isize::MAX == i32::MAX` bytes.
fn abi_len(len: usize) -> i32 {
    i32::try_from(len).expect("a wasm32 buffer is at most i32::MAX bytes")
}

/// Copies the reply (or error message) of `len` bytes the host holds, which
/// releases it.
fn take_reply(len: i64) -> Vec<u8> {
    let len = usize::try_from(len)
        .ok()
        .filter(|&len| len <= i32::MAX as usize)
        .unwrap_or_else(|| {
            panic!("host_call: a reply of {len} bytes cannot fit in a wasm32 guest")
        });
    let mut buf = Vec::<u8>::with_capacity(len);
    // SAFETY: `buf` has room for `len` bytes at its pointer; the host writes
    // at most that many and returns the count, which bounds `set_len`.
    let n = unsafe { sys::host_reply(buf.as_mut_ptr(), len as i32) };
    // SAFETY: the host initialized the first `n <= len` bytes.
    unsafe { buf.set_len(usize::try_from(n).unwrap_or(0).min(len)) };
    buf
}

/// Decodes a JSON reply of host function `name` as `Out`.
fn decode<Out: DeserializeOwned>(name: &str, reply: &[u8]) -> Result<Out, HostError> {
    serde_json::from_slice(reply).map_err(|e| HostError::Reply {
        function: name.to_string(),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_decodes_or_names_the_function() {
        assert_eq!(decode::<Vec<u32>>("f", b"[1,2]"), Ok(vec![1, 2]));
        let err = decode::<u32>("db.get", b"\"seven\"").unwrap_err();
        assert!(matches!(&err, HostError::Reply { function, .. } if function == "db.get"));
        let text = err.to_string();
        assert!(text.contains("\"db.get\""), "{text}");
        assert!(text.contains("invalid type"), "{text}");
    }

    #[test]
    fn an_input_that_does_not_serialize_never_reaches_the_host() {
        let input = std::collections::BTreeMap::from([((1, 2), 3)]);
        let err = call::<_, u32>("f", &input).unwrap_err();
        assert_eq!(err.function(), "f");
        assert!(matches!(err, HostError::Input { .. }));
    }

    #[test]
    fn a_failure_displays_the_host_message() {
        let err = HostError::Failed {
            function: "stock".into(),
            message: "no such item: pears".into(),
        };
        assert_eq!(
            err.to_string(),
            "host function \"stock\" failed: no such item: pears"
        );
        assert_eq!(err.message(), "no such item: pears");
    }

    #[test]
    fn host_error_fits_a_task_result() {
        // What `#[task]` requires of an error type, and what `?` into a boxed
        // error requires.
        fn display<E: std::fmt::Display>(_: &E) {}
        fn boxed(e: HostError) -> Box<dyn std::error::Error + Send + Sync> {
            e.into()
        }
        let err = HostError::Input {
            function: "f".into(),
            message: "m".into(),
        };
        display(&err);
        assert_eq!(boxed(err.clone()).to_string(), err.to_string());
    }
}
