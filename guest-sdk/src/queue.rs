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

/// The length prefix of each message of a batch (`queue_put_many`,
/// `queue_get_many`): a `u32`, little-endian.
const PREFIX: usize = 4;

/// The bytes and the count of the first messages of a length-prefixed
/// `batch`: at most `count` of them, within `max_bytes` (at least one).
fn span(batch: &[u8], count: usize, max_bytes: usize) -> (usize, usize) {
    let (mut at, mut n) = (0, 0);
    while n < count {
        let Some(prefix) = batch.get(at..at + PREFIX) else {
            break;
        };
        let len = u32::from_le_bytes(prefix.try_into().expect("4 bytes")) as usize;
        let end = at + PREFIX + len;
        if n > 0 && end > max_bytes {
            break;
        }
        (at, n) = (end, n + 1);
    }
    (at, n)
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

    /// Puts every value, in order, waiting for room as long as it takes: one
    /// host call (`queue_put_many`) puts as many as fit at once, so a
    /// producer pays a host call per batch instead of per message. Other
    /// producers' messages may land between two of those calls, never
    /// inside one.
    ///
    /// # Errors
    ///
    /// [`QueueError::Closed`] once the queue is closed: the values before
    /// some point were put, the rest were not (none is put twice).
    /// [`QueueError::Invalid`] if a value does not encode (nothing is put).
    ///
    /// ```no_run
    /// # let q = wasmpool_guest::Queue::<u64>::open("q").unwrap();
    /// let numbers: Vec<u64> = (0..1000).collect();
    /// q.put_many(&numbers).unwrap();
    /// ```
    pub fn put_many(&self, values: &[T]) -> Result<(), QueueError> {
        let mut batch = Vec::with_capacity(values.len() * 16);
        for value in values {
            let at = batch.len();
            batch.extend_from_slice(&[0; PREFIX]);
            serde_json::to_writer(&mut batch, value)
                .map_err(|e| QueueError::Invalid(e.to_string()))?;
            let len = u32::try_from(batch.len() - at - PREFIX)
                .map_err(|_| QueueError::Invalid("a message of 4 GiB or more".into()))?;
            batch[at..at + PREFIX].copy_from_slice(&len.to_le_bytes());
        }
        let (mut at, mut left) = (0, values.len());
        while left > 0 {
            // One call takes at most i32::MAX bytes: the messages that fit
            // (walked only for a batch that large).
            let (len, count) = if batch.len() - at <= i32::MAX as usize {
                (batch.len() - at, left)
            } else {
                span(&batch[at..], left, i32::MAX as usize)
            };
            // SAFETY: `[at, at + len)` is live for the call and holds `count`
            // whole length-prefixed messages; the host copies what it puts.
            let put = unsafe {
                sys::queue_put_many(
                    self.handle,
                    batch[at..].as_ptr(),
                    len as i32,
                    count as i32,
                    -1,
                )
            };
            match put {
                -1 => return Err(QueueError::Timeout),
                n if n <= 0 => return Err(QueueError::Closed),
                n => {
                    let n = (n as usize).min(count);
                    at += span(&batch[at..], n, usize::MAX).0;
                    left -= n;
                }
            }
        }
        Ok(())
    }

    /// Takes up to `max` of the oldest messages at once (one host call,
    /// `queue_get_many`), waiting as long as it takes for the first; the
    /// ones already waiting behind it come along. An empty `Vec` only for
    /// `max == 0`.
    ///
    /// # Errors
    ///
    /// [`QueueError::Closed`] once the queue is closed and drained;
    /// [`QueueError::Invalid`] if a message does not decode (the whole
    /// batch was taken, so the rest of it is lost too).
    ///
    /// ```no_run
    /// # let q = wasmpool_guest::Queue::<u64>::open("q").unwrap();
    /// let mut total = 0;
    /// while let Ok(batch) = q.get_many(256) {
    ///     total += batch.iter().sum::<u64>();
    /// }
    /// println!("{total}");
    /// ```
    pub fn get_many(&self, max: usize) -> Result<Vec<T>, QueueError> {
        self.get_many_with(max, None)
    }

    /// [`get_many`](Self::get_many), waiting at most `timeout` for the first message.
    ///
    /// # Errors
    ///
    /// [`QueueError::Timeout`], [`QueueError::Closed`] or [`QueueError::Invalid`].
    ///
    /// ```no_run
    /// # let q = wasmpool_guest::Queue::<u64>::open("q").unwrap();
    /// match q.get_many_timeout(64, std::time::Duration::from_millis(5)) {
    ///     Ok(batch) => println!("{} messages", batch.len()),
    ///     Err(e) => println!("{e}"),
    /// }
    /// ```
    pub fn get_many_timeout(&self, max: usize, timeout: Duration) -> Result<Vec<T>, QueueError> {
        self.get_many_with(max, Some(timeout))
    }

    fn get_many_with(&self, max: usize, timeout: Option<Duration>) -> Result<Vec<T>, QueueError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let max_count = max.min(i32::MAX as usize) as i32;
        let len = sys::queue_get_many(self.handle, max_count, i32::MAX, millis(timeout));
        match len {
            -1 => return Err(QueueError::Timeout),
            n if n < 0 => return Err(QueueError::Closed),
            _ => {}
        }
        let len = usize::try_from(len)
            .unwrap_or(usize::MAX)
            .min(i32::MAX as usize);
        let mut buf = Vec::<u8>::with_capacity(len);
        // SAFETY: `buf` has room for `len` bytes; the host writes at most that
        // many and returns the count, which bounds `set_len`.
        let n = unsafe { sys::queue_messages(buf.as_mut_ptr(), len as i32) };
        // SAFETY: the host initialized the first `n <= len` bytes.
        unsafe { buf.set_len((n.max(0) as usize).min(len)) };
        let mut values = Vec::new();
        let mut rest = &buf[..];
        while let Some((prefix, tail)) = rest.split_first_chunk::<PREFIX>() {
            let len = (u32::from_le_bytes(*prefix) as usize).min(tail.len());
            let value = serde_json::from_slice(&tail[..len])
                .map_err(|e| QueueError::Invalid(e.to_string()))?;
            values.push(value);
            rest = &tail[len..];
        }
        Ok(values)
    }

    /// Takes batches of up to `max` messages ([`get_many`](Self::get_many))
    /// until the queue is closed and drained: [`iter`](Self::iter) with one
    /// host call per batch. Each batch is handed over whole, so dropping
    /// the iterator loses nothing.
    ///
    /// # Panics
    ///
    /// The iterator panics on a message that does not decode as `T`.
    ///
    /// ```no_run
    /// # let q = wasmpool_guest::Queue::<u64>::open("q").unwrap();
    /// let total: u64 = q.batches(256).flatten().sum();
    /// ```
    pub fn batches(&self, max: usize) -> impl Iterator<Item = Vec<T>> + '_ {
        let max = max.max(1);
        std::iter::from_fn(move || match self.get_many(max) {
            Ok(batch) => Some(batch),
            Err(QueueError::Closed) => None,
            Err(e) => panic!("queue: {e}"),
        })
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
    /// One message per host call, on purpose: an iterator that fetched
    /// batches would hold messages it had taken from the queue but not yet
    /// yielded, and `q.iter().take(5)` (or any early `break`) would drop
    /// them, lost to every consumer. To pay one host call per batch, take
    /// whole batches: [`batches`](Self::batches) or [`get_many`](Self::get_many).
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
