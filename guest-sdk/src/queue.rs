//! Typed access to the host's named queues (Python's `multiprocessing.Queue`).

use std::marker::PhantomData;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::sys;

/// Why a queue operation did not complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueError {
    /// The timeout passed (the queue stayed full, or empty).
    Timeout,
    /// The queue is closed (and, for a get, drained).
    Closed,
    /// A message did not encode or decode as JSON of the queue's type.
    Invalid(String),
}

impl std::fmt::Display for QueueError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            QueueError::Timeout => f.write_str("timed out"),
            QueueError::Closed => f.write_str("queue closed"),
            QueueError::Invalid(e) => write!(f, "invalid message: {e}"),
        }
    }
}

impl std::error::Error for QueueError {}

/// A named, bounded queue owned by the host and shared by every instance of
/// the pool or process group. Messages are `T`s, carried as JSON.
///
/// ```no_run
/// use wasmpool_guest::Queue;
/// let q: Queue<u64> = Queue::open("numbers").expect("the host declares queue `numbers`");
/// q.put(&7).unwrap();
/// // A consumer stops when the queue is closed and drained, never on a racy "empty".
/// for n in q.iter() {
///     println!("{n}");
/// }
/// ```
pub struct Queue<T> {
    handle: i32,
    _t: PhantomData<fn(T) -> T>,
}

impl<T> std::fmt::Debug for Queue<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("handle", &self.handle)
            .finish()
    }
}

fn millis(timeout: Option<Duration>) -> i64 {
    timeout.map_or(-1, |t| i64::try_from(t.as_millis()).unwrap_or(i64::MAX))
}

impl<T: Serialize + DeserializeOwned> Queue<T> {
    /// Opens the queue the host declared as `name`, or `None`.
    ///
    /// ```no_run
    /// let q = wasmpool_guest::Queue::<String>::open("lines");
    /// ```
    pub fn open(name: &str) -> Option<Self> {
        // SAFETY: `name` is a live buffer of `name.len()` bytes for the call.
        let handle = unsafe { sys::queue_open(name.as_ptr(), name.len() as i32) };
        (handle >= 0).then_some(Queue {
            handle,
            _t: PhantomData,
        })
    }

    /// Puts a message, waiting for room as long as it takes.
    ///
    /// # Errors
    ///
    /// [`QueueError::Closed`] once the queue is closed.
    ///
    /// ```no_run
    /// # let q = wasmpool_guest::Queue::<u32>::open("q").unwrap();
    /// q.put(&1).unwrap();
    /// ```
    pub fn put(&self, value: &T) -> Result<(), QueueError> {
        self.put_with(value, None)
    }

    /// Puts a message, waiting at most `timeout` for room.
    ///
    /// # Errors
    ///
    /// [`QueueError::Timeout`] or [`QueueError::Closed`].
    ///
    /// ```no_run
    /// # let q = wasmpool_guest::Queue::<u32>::open("q").unwrap();
    /// q.put_timeout(&1, std::time::Duration::from_millis(10)).ok();
    /// ```
    pub fn put_timeout(&self, value: &T, timeout: Duration) -> Result<(), QueueError> {
        self.put_with(value, Some(timeout))
    }

    fn put_with(&self, value: &T, timeout: Option<Duration>) -> Result<(), QueueError> {
        let bytes = serde_json::to_vec(value).map_err(|e| QueueError::Invalid(e.to_string()))?;
        // SAFETY: `bytes` is live for the call; the host copies it.
        let status = unsafe {
            sys::queue_put(
                self.handle,
                bytes.as_ptr(),
                bytes.len() as i32,
                millis(timeout),
            )
        };
        match status {
            0 => Ok(()),
            1 => Err(QueueError::Timeout),
            _ => Err(QueueError::Closed),
        }
    }

    /// Takes the oldest message, waiting as long as it takes.
    ///
    /// # Errors
    ///
    /// [`QueueError::Closed`] once the queue is closed and drained.
    ///
    /// ```no_run
    /// # let q = wasmpool_guest::Queue::<u32>::open("q").unwrap();
    /// let n = q.get().unwrap();
    /// ```
    pub fn get(&self) -> Result<T, QueueError> {
        self.get_with(None)
    }

    /// Takes the oldest message, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`QueueError::Timeout`] or [`QueueError::Closed`].
    ///
    /// ```no_run
    /// # let q = wasmpool_guest::Queue::<u32>::open("q").unwrap();
    /// match q.get_timeout(std::time::Duration::from_millis(5)) {
    ///     Err(wasmpool_guest::QueueError::Timeout) => println!("nothing yet"),
    ///     other => println!("{other:?}"),
    /// }
    /// ```
    pub fn get_timeout(&self, timeout: Duration) -> Result<T, QueueError> {
        self.get_with(Some(timeout))
    }

    fn get_with(&self, timeout: Option<Duration>) -> Result<T, QueueError> {
        let len = sys::queue_get(self.handle, millis(timeout));
        match len {
            -1 => return Err(QueueError::Timeout),
            n if n < 0 => return Err(QueueError::Closed),
            _ => {}
        }
        let len = len as usize;
        let mut buf = Vec::<u8>::with_capacity(len);
        // SAFETY: `buf` has room for `len` bytes; the host writes at most that
        // many and returns the count, which bounds `set_len`.
        let n = unsafe { sys::queue_message(buf.as_mut_ptr(), len as i32) };
        // SAFETY: the host initialized the first `n <= len` bytes.
        unsafe { buf.set_len((n.max(0) as usize).min(len)) };
        serde_json::from_slice(&buf).map_err(|e| QueueError::Invalid(e.to_string()))
    }

    /// Closes the queue for everyone: puts fail, and gets fail once it is drained.
    ///
    /// ```no_run
    /// # let q = wasmpool_guest::Queue::<u32>::open("q").unwrap();
    /// q.close();
    /// ```
    pub fn close(&self) {
        sys::queue_close(self.handle)
    }

    /// Messages waiting now (racy: use [`close`](Self::close) to signal the end).
    ///
    /// ```no_run
    /// # let q = wasmpool_guest::Queue::<u32>::open("q").unwrap();
    /// println!("{} waiting", q.len());
    /// ```
    pub fn len(&self) -> usize {
        sys::queue_len(self.handle).max(0) as usize
    }

    /// Whether no message is waiting now (racy, like [`len`](Self::len)).
    ///
    /// ```no_run
    /// # let q = wasmpool_guest::Queue::<u32>::open("q").unwrap();
    /// let _ = q.is_empty();
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes messages until the queue is closed and drained.
    ///
    /// # Panics
    ///
    /// The iterator panics on a message that does not decode as `T`.
    ///
    /// ```no_run
    /// # let q = wasmpool_guest::Queue::<u32>::open("q").unwrap();
    /// let total: u32 = q.iter().sum();
    /// ```
    pub fn iter(&self) -> impl Iterator<Item = T> + '_ {
        std::iter::from_fn(move || match self.get() {
            Ok(v) => Some(v),
            Err(QueueError::Closed) => None,
            Err(e) => panic!("queue: {e}"),
        })
    }
}
