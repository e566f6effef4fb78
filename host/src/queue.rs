//! Named, bounded, many-producer many-consumer queues owned by the host and
//! shared by every instance of a pool or process group: Python's
//! `multiprocessing.Queue`.
//!
//! Entry point: [`Queue`]. Guests reach a queue through the ABI
//! (`queue_open`, `queue_put`, `queue_get`, ...); the host holds the same
//! `Queue` and can put, get and close too.
//!
//! Invariants: at most `capacity` messages, and at most `max_bytes` bytes of
//! messages, are held (the host memory a queue can take is bounded whatever
//! guests put); once closed, `put`
//! fails and `get` drains what is left and then reports [`QueueError::Closed`].
//! Every wait takes a deadline and is cut into slices that check an
//! interruption flag, so a terminated guest never stays blocked here.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::wait::{self, OwnedWaiter, Stop, Waiter, deadline, next_slice};

use event_listener::Event;

/// Why a queue operation did not complete.
///
/// ```
/// let q = wasmpool::Queue::new("jobs", 1);
/// q.put(b"a".to_vec(), None).unwrap();
/// let err = q.put(b"b".to_vec(), Some(std::time::Duration::ZERO)).unwrap_err();
/// assert!(err.is_timeout());
/// assert_eq!(err.into_inner(), Some(b"b".to_vec()));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QueueError<T = Vec<u8>> {
    /// The deadline passed: the queue stayed full (for a put, with the
    /// message handed back) or empty (for a get).
    #[error("timed out")]
    Timeout(Option<T>),
    /// The queue is closed: no more puts, and nothing left to get.
    #[error("queue closed")]
    Closed(Option<T>),
    /// The wait was interrupted (the guest was terminated).
    #[error("interrupted")]
    Interrupted(Option<T>),
    /// The message is larger than the queue's byte budget, so it can never
    /// fit (the message is handed back).
    #[error("message of {len} bytes {} the queue's byte budget of {max_bytes} bytes", too_large(*.len, *.max_bytes))]
    TooLarge {
        /// The message's size.
        len: usize,
        /// The queue's budget.
        max_bytes: usize,
        /// The message.
        message: Option<T>,
    },
    /// A message taken by [`Queue::get_json`] does not decode as the type
    /// asked for (the message is consumed).
    #[error("message does not decode: {0}")]
    Invalid(String),
}

impl<T> QueueError<T> {
    /// Whether the deadline passed.
    ///
    /// ```
    /// assert!(wasmpool::QueueError::<Vec<u8>>::Timeout(None).is_timeout());
    /// ```
    pub fn is_timeout(&self) -> bool {
        matches!(self, QueueError::Timeout(_))
    }

    /// Whether the queue is closed.
    ///
    /// ```
    /// assert!(wasmpool::QueueError::<Vec<u8>>::Closed(None).is_closed());
    /// ```
    pub fn is_closed(&self) -> bool {
        matches!(self, QueueError::Closed(_))
    }

    /// The message a failed put hands back.
    ///
    /// ```
    /// assert_eq!(wasmpool::QueueError::Closed(Some(1)).into_inner(), Some(1));
    /// ```
    pub fn into_inner(self) -> Option<T> {
        match self {
            QueueError::Timeout(m) | QueueError::Closed(m) | QueueError::Interrupted(m) => m,
            QueueError::TooLarge { message, .. } => message,
            QueueError::Invalid(_) => None,
        }
    }
}

struct State {
    items: VecDeque<Vec<u8>>,
    /// The bytes of the messages in `items`.
    bytes: usize,
    closed: bool,
    /// Threads asleep in `get` / `put`: a notify (a futex syscall) is only
    /// needed when someone sleeps.
    sleeping_getters: u32,
    sleeping_putters: u32,
}

/// How many times a waiter re-checks the queue, briefly releasing the lock,
/// before it sleeps: a producer on another core usually delivers within that
/// time, and sleeping costs two syscalls.
const SPINS: u32 = 100;

/// A named, bounded, many-producer many-consumer queue of byte messages.
///
/// ```
/// use std::time::Duration;
/// let q = wasmpool::Queue::new("results", 8);
/// q.put_json(&[1, 2, 3], None).unwrap();
/// q.close();
/// let got: Vec<u32> = q.get_json(Some(Duration::from_secs(1))).unwrap();
/// assert_eq!(got, [1, 2, 3]);
/// assert!(q.get(None).unwrap_err().is_closed(), "drained and closed");
/// ```
pub struct Queue {
    name: String,
    capacity: usize,
    max_bytes: usize,
    state: Mutex<State>,
    not_empty: Condvar,
    not_full: Condvar,
    /// The async face's wake-ups (`wait.rs`): notified with the condition
    /// variables; costs one atomic load while no async waiter ever listened.
    readable: Event,
    writable: Event,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("name", &self.name)
            .field("capacity", &self.capacity)
            .field("max_bytes", &self.max_bytes)
            .field("len", &self.len())
            .finish()
    }
}

impl Queue {
    /// A queue holding at most `capacity` messages (at least 1) and
    /// [`DEFAULT_QUEUE_BYTES`](crate::DEFAULT_QUEUE_BYTES) in all.
    ///
    /// ```
    /// let q = wasmpool::Queue::new("jobs", 100);
    /// assert_eq!((q.name(), q.capacity(), q.len()), ("jobs", 100, 0));
    /// ```
    pub fn new(name: impl Into<String>, capacity: usize) -> Self {
        Queue::with_max_bytes(name, capacity, crate::runtime::DEFAULT_QUEUE_BYTES)
    }

    /// A queue holding at most `capacity` messages (at least 1) and
    /// `max_bytes` bytes of messages in all: a put waits while either is
    /// reached, and a message larger than `max_bytes` is refused with
    /// [`QueueError::TooLarge`]. Each message counts its length plus 64
    /// bytes, what the host spends to hold it.
    ///
    /// ```
    /// let q = wasmpool::Queue::with_max_bytes("jobs", 100, 200);
    /// q.put(vec![0; 60], None).unwrap();
    /// let full = q.put(vec![0; 60], Some(std::time::Duration::ZERO)).unwrap_err();
    /// assert!(full.is_timeout(), "2 x (60 + 64) bytes would pass the budget of 200");
    /// assert!(matches!(q.put(vec![0; 137], None), Err(wasmpool::QueueError::TooLarge { .. })));
    /// ```
    pub fn with_max_bytes(name: impl Into<String>, capacity: usize, max_bytes: usize) -> Self {
        Queue {
            name: name.into(),
            capacity: capacity.max(1),
            max_bytes: max_bytes.max(1),
            state: Mutex::new(State {
                items: VecDeque::new(),
                bytes: 0,
                closed: false,
                sleeping_getters: 0,
                sleeping_putters: 0,
            }),
            not_empty: Condvar::new(),
            not_full: Condvar::new(),
            readable: Event::new(),
            writable: Event::new(),
        }
    }

    /// The queue's name.
    ///
    /// ```
    /// assert_eq!(wasmpool::Queue::new("q", 1).name(), "q");
    /// ```
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The most messages it holds.
    ///
    /// ```
    /// assert_eq!(wasmpool::Queue::new("q", 0).capacity(), 1);
    /// ```
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The most bytes of messages it holds.
    ///
    /// ```
    /// assert_eq!(wasmpool::Queue::with_max_bytes("q", 1, 4096).max_bytes(), 4096);
    /// ```
    pub fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave State inconsistent
        // (every update is a single push, pop or flag store).
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Lets go of the lock for a moment, so that the other side can act.
    fn spin<'a>(&'a self, state: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        drop(state);
        std::hint::spin_loop();
        std::thread::yield_now();
        self.lock()
    }

    /// The blocking wait every synchronous call shares: `attempt` runs with
    /// the lock held and either finishes (`Ok`) or hands the lock back; the
    /// caller then re-checks after brief spins, and at last sleeps on
    /// `side`'s condition variable, a slice at a time, until `timeout` or
    /// an interruption (`wait.rs`). The one copy of the loop for `put`,
    /// `get` and their batched forms.
    fn wait<'a, R>(
        &'a self,
        side: Side,
        timeout: Option<Duration>,
        waiter: Waiter<'_>,
        mut attempt: impl FnMut(MutexGuard<'a, State>) -> Result<R, MutexGuard<'a, State>>,
    ) -> Result<R, Stop> {
        let deadline = deadline(timeout);
        let mut spins = 0;
        let mut state = self.lock();
        loop {
            state = match attempt(state) {
                Ok(done) => return Ok(done),
                Err(state) => state,
            };
            if spins < SPINS {
                spins += 1;
                state = self.spin(state);
                continue;
            }
            let slice = next_slice(deadline, waiter)?;
            let (cv, sleepers): (_, fn(&mut State) -> &mut u32) = match side {
                Side::Put => (&self.not_full, |s| &mut s.sleeping_putters),
                Side::Get => (&self.not_empty, |s| &mut s.sleeping_getters),
            };
            *sleepers(&mut state) += 1;
            state = sleep(cv, state, slice);
            *sleepers(&mut state) -= 1;
        }
    }

    /// The number of messages waiting.
    ///
    /// ```
    /// let q = wasmpool::Queue::new("q", 4);
    /// q.put(vec![1], None).unwrap();
    /// assert_eq!(q.len(), 1);
    /// ```
    pub fn len(&self) -> usize {
        self.lock().items.len()
    }

    /// Whether no message is waiting. Racy by nature: to stop a consumer,
    /// [`close`](Self::close) the queue instead.
    ///
    /// ```
    /// assert!(wasmpool::Queue::new("q", 4).is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the queue was closed.
    ///
    /// ```
    /// let q = wasmpool::Queue::new("q", 4);
    /// q.close();
    /// assert!(q.is_closed());
    /// ```
    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// Closes the queue: puts fail from now on, and gets fail with
    /// [`QueueError::Closed`] once the remaining messages are taken. Every
    /// waiting producer and consumer wakes up.
    ///
    /// ```
    /// let q = wasmpool::Queue::new("q", 4);
    /// q.close();
    /// assert!(q.put(vec![], None).unwrap_err().is_closed());
    /// ```
    pub fn close(&self) {
        self.lock().closed = true;
        self.not_empty.notify_all();
        self.not_full.notify_all();
        self.readable.notify(usize::MAX);
        self.writable.notify(usize::MAX);
    }

    /// Puts a message, waiting up to `timeout` (`None`: forever) for room.
    ///
    /// # Errors
    ///
    /// [`QueueError::Timeout`] or [`QueueError::Closed`], with the message.
    ///
    /// ```
    /// let q = wasmpool::Queue::new("q", 4);
    /// q.put(b"hello".to_vec(), None).unwrap();
    /// ```
    pub fn put(&self, message: Vec<u8>, timeout: Option<Duration>) -> Result<(), QueueError> {
        self.put_interruptible(message, timeout, Waiter::default())
    }

    pub(crate) fn put_interruptible(
        &self,
        message: Vec<u8>,
        timeout: Option<Duration>,
        waiter: Waiter<'_>,
    ) -> Result<(), QueueError> {
        let (message, size) = self.check_size(message)?;
        let mut message = Some(message);
        let done = self.wait(Side::Put, timeout, waiter, |state| {
            let m = message.take().expect("put back after every attempt");
            match self.try_put(state, m, size) {
                Ok(Ok(())) => Ok(Ok(())),
                Ok(Err((back, state))) => {
                    message = Some(back);
                    Err(state)
                }
                Err(e) => Ok(Err(e)),
            }
        });
        outcome(done, message)
    }

    /// The async face of [`put_interruptible`](Self::put_interruptible): the
    /// same attempt, and a suspended task instead of a sleeping thread.
    pub(crate) async fn put_async(
        &self,
        message: Vec<u8>,
        timeout: Option<Duration>,
        waiter: &OwnedWaiter,
    ) -> Result<(), QueueError> {
        let (message, size) = self.check_size(message)?;
        let mut message = Some(message);
        let done = wait::until(&self.writable, deadline(timeout), waiter, || {
            let m = message.take().expect("put back after every attempt");
            match self.try_put(self.lock(), m, size) {
                Ok(Ok(())) => Some(Ok(())),
                Ok(Err((back, _))) => {
                    message = Some(back);
                    None
                }
                Err(e) => Some(Err(e)),
            }
        })
        .await;
        outcome(done, message)
    }

    /// What `message` counts against the byte budget, or why it never fits.
    fn check_size(&self, message: Vec<u8>) -> Result<(Vec<u8>, usize), QueueError> {
        let size = cost(&message);
        if size > self.max_bytes {
            return Err(QueueError::TooLarge {
                len: message.len(),
                max_bytes: self.max_bytes,
                message: Some(message),
            });
        }
        Ok((message, size))
    }

    /// One attempt at a put, with the lock held: `Ok(Ok(()))` put (and a
    /// waiting getter woken), `Ok(Err(..))` no room (the message and the
    /// lock handed back), `Err` closed. The one copy of the put's rule,
    /// for both faces.
    #[allow(clippy::type_complexity)]
    fn try_put<'a>(
        &'a self,
        mut state: MutexGuard<'a, State>,
        message: Vec<u8>,
        size: usize,
    ) -> Result<Result<(), (Vec<u8>, MutexGuard<'a, State>)>, QueueError> {
        if state.closed {
            return Err(QueueError::Closed(Some(message)));
        }
        if state.items.len() < self.capacity && state.bytes + size <= self.max_bytes {
            state.bytes += size;
            state.items.push_back(message);
            let wake = state.sleeping_getters > 0;
            drop(state);
            if wake {
                self.not_empty.notify_one();
            }
            self.readable.notify_additional(1);
            return Ok(Ok(()));
        }
        Ok(Err((message, state)))
    }

    /// Takes the oldest message, waiting up to `timeout` (`None`: forever).
    ///
    /// # Errors
    ///
    /// [`QueueError::Timeout`], or [`QueueError::Closed`] once the queue is
    /// closed and drained.
    ///
    /// ```
    /// let q = wasmpool::Queue::new("q", 4);
    /// let err = q.get(Some(std::time::Duration::from_millis(1))).unwrap_err();
    /// assert!(err.is_timeout());
    /// ```
    pub fn get(&self, timeout: Option<Duration>) -> Result<Vec<u8>, QueueError> {
        self.get_interruptible(timeout, Waiter::default())
    }

    pub(crate) fn get_interruptible(
        &self,
        timeout: Option<Duration>,
        waiter: Waiter<'_>,
    ) -> Result<Vec<u8>, QueueError> {
        let done = self.wait(Side::Get, timeout, waiter, |state| self.try_get(state));
        outcome(done, None)
    }

    /// The async face of [`get_interruptible`](Self::get_interruptible).
    pub(crate) async fn get_async(
        &self,
        timeout: Option<Duration>,
        waiter: &OwnedWaiter,
    ) -> Result<Vec<u8>, QueueError> {
        let done = wait::until(&self.readable, deadline(timeout), waiter, || {
            self.try_get(self.lock()).ok()
        })
        .await;
        outcome(done, None)
    }

    /// One attempt at a get, with the lock held: `Ok` the message (and a
    /// waiting putter woken) or `Closed`; `Err` the lock back when empty.
    /// The one copy of the get's rule, for both faces.
    #[allow(clippy::type_complexity)]
    fn try_get<'a>(
        &'a self,
        mut state: MutexGuard<'a, State>,
    ) -> Result<Result<Vec<u8>, QueueError>, MutexGuard<'a, State>> {
        if let Some(message) = state.items.pop_front() {
            state.bytes -= cost(&message);
            let wake = state.sleeping_putters > 0;
            drop(state);
            if wake {
                self.not_full.notify_one();
            }
            self.writable.notify_additional(1);
            return Ok(Ok(message));
        }
        if state.closed {
            return Ok(Err(QueueError::Closed(None)));
        }
        Err(state)
    }

    /// Puts a prefix of `messages` at once: waits up to `timeout` until the
    /// first fits, then puts, in order, as many as fit now (the queue's
    /// capacity and byte budget), and returns how many (`Ok(0)` only for no
    /// messages). The messages are copied only once they are put, so the
    /// host memory taken is bounded by the queue's budget whatever the
    /// caller hands in. The caller checks each message against
    /// [`max_bytes`](Self::max_bytes) first (`queue_put_many` traps); a
    /// first message that could never fit is refused with
    /// [`QueueError::TooLarge`] rather than waited for.
    ///
    /// # Errors
    ///
    /// [`QueueError::Timeout`], [`QueueError::Closed`] or
    /// [`QueueError::Interrupted`], each with nothing put.
    pub(crate) fn put_many_interruptible<'m>(
        &self,
        messages: impl Iterator<Item = &'m [u8]> + Clone,
        timeout: Option<Duration>,
        waiter: Waiter<'_>,
    ) -> Result<usize, QueueError> {
        let done = self.wait(Side::Put, timeout, waiter, |state| {
            match self.try_put_many(state, messages.clone()) {
                Ok(Ok(put)) => Ok(Ok(put)),
                Ok(Err(state)) => Err(state),
                Err(e) => Ok(Err(e)),
            }
        });
        outcome(done, None)
    }

    /// The async face of [`put_many_interruptible`](Self::put_many_interruptible).
    pub(crate) async fn put_many_async<'m>(
        &self,
        messages: impl Iterator<Item = &'m [u8]> + Clone,
        timeout: Option<Duration>,
        waiter: &OwnedWaiter,
    ) -> Result<usize, QueueError> {
        let done = wait::until(&self.writable, deadline(timeout), waiter, || {
            match self.try_put_many(self.lock(), messages.clone()) {
                Ok(Ok(put)) => Some(Ok(put)),
                Ok(Err(_)) => None,
                Err(e) => Some(Err(e)),
            }
        })
        .await;
        outcome(done, None)
    }

    /// One attempt at a batched put, with the lock held: `Ok(Ok(n))` the
    /// first `n` messages put (waiting getters woken; `n == 0` only for no
    /// messages), `Ok(Err(..))` not even the first fits now (the lock
    /// handed back), `Err` closed or a first message that never fits.
    #[allow(clippy::type_complexity)]
    fn try_put_many<'a, 'm>(
        &'a self,
        mut state: MutexGuard<'a, State>,
        messages: impl Iterator<Item = &'m [u8]>,
    ) -> Result<Result<usize, MutexGuard<'a, State>>, QueueError> {
        if state.closed {
            return Err(QueueError::Closed(None));
        }
        let mut put = 0;
        let mut empty = true;
        for message in messages {
            empty = false;
            let size = cost(message);
            if put == 0 && size > self.max_bytes {
                return Err(QueueError::TooLarge {
                    len: message.len(),
                    max_bytes: self.max_bytes,
                    message: None,
                });
            }
            if state.items.len() >= self.capacity || state.bytes + size > self.max_bytes {
                break;
            }
            state.bytes += size;
            state.items.push_back(message.to_vec());
            put += 1;
        }
        if put == 0 && !empty {
            return Ok(Err(state));
        }
        let wake = state.sleeping_getters > 0;
        drop(state);
        if wake {
            if put == 1 {
                self.not_empty.notify_one();
            } else {
                self.not_empty.notify_all();
            }
        }
        if put > 0 {
            self.readable.notify_additional(put);
        }
        Ok(Ok(put))
    }

    /// Takes up to `max_count` (at least 1) of the oldest messages at once,
    /// waiting up to `timeout` only for the first, and appends them to `out`
    /// in the layout of `queue_get_many` (each a `u32` little-endian length,
    /// then its bytes): the first message always, the next ones while `out`
    /// grows by at most `max_bytes` in all. Returns how many were taken.
    ///
    /// # Errors
    ///
    /// [`QueueError::Timeout`], [`QueueError::Interrupted`], or
    /// [`QueueError::Closed`] once the queue is closed and drained.
    pub(crate) fn get_many_interruptible(
        &self,
        max_count: usize,
        max_bytes: usize,
        out: &mut Vec<u8>,
        timeout: Option<Duration>,
        waiter: Waiter<'_>,
    ) -> Result<usize, QueueError> {
        let done = self.wait(Side::Get, timeout, waiter, |state| {
            self.try_get_many(state, max_count, max_bytes, out)
        });
        outcome(done, None)
    }

    /// The async face of [`get_many_interruptible`](Self::get_many_interruptible).
    pub(crate) async fn get_many_async(
        &self,
        max_count: usize,
        max_bytes: usize,
        out: &mut Vec<u8>,
        timeout: Option<Duration>,
        waiter: &OwnedWaiter,
    ) -> Result<usize, QueueError> {
        let done = wait::until(&self.readable, deadline(timeout), waiter, || {
            self.try_get_many(self.lock(), max_count, max_bytes, out)
                .ok()
        })
        .await;
        outcome(done, None)
    }

    /// One attempt at a batched get, with the lock held: `Ok` how many
    /// messages went to `out` (at least one; waiting putters woken) or
    /// `Closed`; `Err` the lock back when empty.
    #[allow(clippy::type_complexity)]
    fn try_get_many<'a>(
        &'a self,
        mut state: MutexGuard<'a, State>,
        max_count: usize,
        max_bytes: usize,
        out: &mut Vec<u8>,
    ) -> Result<Result<usize, QueueError>, MutexGuard<'a, State>> {
        let start = out.len();
        let mut taken = 0;
        while taken < max_count.max(1) {
            let Some(front) = state.items.front() else {
                break;
            };
            let grown = out.len() - start + PREFIX + front.len();
            if taken > 0 && grown > max_bytes {
                break;
            }
            let message = state.items.pop_front().expect("a front message");
            state.bytes -= cost(&message);
            // A host-put message longer than u32::MAX bytes cannot be
            // described (nor copied by a guest's i32 length): saturate.
            let len = u32::try_from(message.len()).unwrap_or(u32::MAX);
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(&message);
            taken += 1;
        }
        if taken > 0 {
            let wake = state.sleeping_putters > 0;
            drop(state);
            if wake {
                if taken == 1 {
                    self.not_full.notify_one();
                } else {
                    self.not_full.notify_all();
                }
            }
            self.writable.notify_additional(taken);
            return Ok(Ok(taken));
        }
        if state.closed {
            return Ok(Err(QueueError::Closed(None)));
        }
        Err(state)
    }

    /// Puts a serde value as JSON.
    ///
    /// # Errors
    ///
    /// As [`put`](Self::put), and [`QueueError::Invalid`] for a value that
    /// does not serialize as JSON (a map with non-string keys).
    ///
    /// ```
    /// let q = wasmpool::Queue::new("q", 4);
    /// q.put_json(&("job", 7), None).unwrap();
    /// ```
    pub fn put_json<T: Serialize + ?Sized>(
        &self,
        value: &T,
        timeout: Option<Duration>,
    ) -> Result<(), QueueError> {
        let bytes = serde_json::to_vec(value).map_err(|e| QueueError::Invalid(e.to_string()))?;
        self.put(bytes, timeout)
    }

    /// Takes a message and decodes it from JSON.
    ///
    /// # Errors
    ///
    /// As [`get`](Self::get), and [`QueueError::Invalid`] when the message
    /// does not decode as `T`.
    ///
    /// ```
    /// let q = wasmpool::Queue::new("q", 4);
    /// q.put(b"[1,2]".to_vec(), None).unwrap();
    /// let v: Vec<u8> = q.get_json(None).unwrap();
    /// assert_eq!(v, [1, 2]);
    /// ```
    pub fn get_json<T: DeserializeOwned>(
        &self,
        timeout: Option<Duration>,
    ) -> Result<T, QueueError> {
        let bytes = self.get(timeout)?;
        serde_json::from_slice(&bytes).map_err(|e| {
            QueueError::Invalid(format!(
                "queue {}: not a {}: {e}",
                self.name,
                std::any::type_name::<T>()
            ))
        })
    }
}

/// The length prefix of each message in a batch (`queue_put_many`,
/// `queue_get_many`): a `u32`, little-endian.
pub(crate) const PREFIX: usize = 4;

/// The messages of a length-prefixed batch, in order; it stops at the first
/// prefix or message the bytes do not hold (`queue_put_many` checks a
/// guest's batch whole before it walks it).
#[derive(Debug, Clone)]
pub(crate) struct Batch<'a> {
    rest: &'a [u8],
}

impl<'a> Batch<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Batch { rest: bytes }
    }
}

impl<'a> Iterator for Batch<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let (prefix, rest) = self.rest.split_first_chunk::<PREFIX>()?;
        let len = u32::from_le_bytes(*prefix) as usize;
        let message = rest.get(..len)?;
        self.rest = &rest[len..];
        Some(message)
    }
}

/// How a message too large for a byte budget compares with it, for
/// messages: "is larger than" when its length alone is, else what it counts
/// (its length and [`MESSAGE_OVERHEAD`]), so that an empty message refused
/// by a budget of 10 bytes is not said to be larger than 10 bytes.
pub(crate) fn too_large(len: usize, max_bytes: usize) -> String {
    if len > max_bytes {
        return "is larger than".into();
    }
    format!(
        "counts {} bytes (with the host's {MESSAGE_OVERHEAD} bytes of bookkeeping), larger than",
        len.saturating_add(MESSAGE_OVERHEAD)
    )
}

/// What the host spends on a held message besides its bytes: its `Vec`, its
/// slot in the deque, and the allocator's own header.
pub(crate) const MESSAGE_OVERHEAD: usize = 64;

/// What a message counts against the byte budget: its length plus
/// [`MESSAGE_OVERHEAD`], so that many tiny (or empty) messages are bounded
/// by what they really cost.
pub(crate) fn cost(message: &[u8]) -> usize {
    message.len() + MESSAGE_OVERHEAD
}

/// Which way a caller of [`Queue::wait`] waits: for room, or for a
/// message.
#[derive(Debug, Clone, Copy)]
enum Side {
    Put,
    Get,
}

/// A wait's result as the caller's: a stop becomes the error of that
/// kind, handing back the message not put, if any.
fn outcome<R>(
    done: Result<Result<R, QueueError>, Stop>,
    message: Option<Vec<u8>>,
) -> Result<R, QueueError> {
    match done {
        Ok(result) => result,
        Err(Stop::Timeout) => Err(QueueError::Timeout(message)),
        Err(Stop::Interrupted) => Err(QueueError::Interrupted(message)),
    }
}

/// Sleeps on `cv` for at most one slice (see `wait.rs`); the caller
/// re-checks its condition, its deadline and its interruption flag.
fn sleep<'a>(cv: &Condvar, guard: MutexGuard<'a, State>, slice: Duration) -> MutexGuard<'a, State> {
    cv.wait_timeout(guard, slice)
        .unwrap_or_else(|e| e.into_inner())
        .0
}
