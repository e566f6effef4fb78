//! The shared region: one `wasmtime::SharedMemory` per pool or process
//! group, Python's `Value`/`Array`, with atomics and a futex-style
//! wait/notify for locks.
//!
//! Entry point: [`SharedRegion`]. Guests reach it through the ABI's `shm_*`
//! functions (each a bounds- and alignment-checked call into the methods
//! here), or directly as the imported memory `wasmpool::shared` from
//! hand-written WAT. The host holds the same region and can read and write it
//! before, during and after a run.
//!
//! Invariants: the region never grows or moves after creation (its minimum
//! and maximum size are equal), so addresses checked against `len()` stay
//! valid; every host access is atomic (bulk copies byte by byte, relaxed), so
//! the host never races non-atomically with guests on other threads.

use std::sync::atomic::{AtomicBool, AtomicI32, AtomicI64, AtomicU8, Ordering};
use std::time::Duration;

use wasmtime::{Engine, MemoryType, SharedMemory, WaitResult};

use crate::error::Error;
use crate::wait::{OwnedWaiter, Stop, Waiter, deadline, next_slice};

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use event_listener::Event;

/// A bad offset or size for the shared region.
///
/// ```
/// # let region = wasmpool::SharedRegion::for_tests(65536);
/// let err = region.load_i64(3).unwrap_err();
/// assert_eq!(err.to_string(), "offset 3 is not aligned to 8 bytes");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ShmError {
    /// `[offset, offset + len)` is not inside the region.
    #[error("range at offset {offset} of {len} bytes is outside the shared region of {size} bytes")]
    OutOfBounds {
        /// Where the access starts.
        offset: u64,
        /// How many bytes.
        len: u64,
        /// The region's size.
        size: u64,
    },
    /// An atomic access must be aligned to its width.
    #[error("offset {offset} is not aligned to {width} bytes")]
    Misaligned {
        /// Where the access starts.
        offset: u64,
        /// The access width.
        width: u64,
    },
}

/// How a [`SharedRegion::wait_i32`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// Woken by a notify.
    Notified,
    /// The value was not the expected one: no wait happened.
    Mismatch,
    /// The deadline passed.
    TimedOut,
    /// The waiting guest was terminated.
    Interrupted,
}

/// One region of memory shared by every instance of a pool or process group.
///
/// ```
/// let region = wasmpool::SharedRegion::for_tests(1 << 16);
/// region.store_i64(0, 40).unwrap();
/// assert_eq!(region.fetch_add_i64(0, 2).unwrap(), 40);
/// assert_eq!(region.load_i64(0).unwrap(), 42);
/// ```
#[derive(Clone)]
pub struct SharedRegion {
    mem: SharedMemory,
    /// The size in bytes, fixed at creation. Kept here because
    /// `SharedMemory::data_size` takes a lock that every atomic call would
    /// otherwise contend on.
    len: usize,
    /// The async face's waiters, by offset (`wait.rs`): what `notify` wakes
    /// besides wasmtime's own waiters. An entry lives while someone waits.
    async_waiters: Arc<Mutex<HashMap<u64, Arc<Event>>>>,
}

impl std::fmt::Debug for SharedRegion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedRegion")
            .field("len", &self.len())
            .finish()
    }
}

/// The wasm page size.
const PAGE: usize = 65536;

impl SharedRegion {
    /// A region of at least `bytes` bytes (rounded up to 64 KiB pages) for
    /// `engine`, which must have wasm threads enabled.
    pub(crate) fn new(engine: &Engine, bytes: usize) -> Result<Self, Error> {
        let pages = bytes.div_ceil(PAGE).max(1);
        let pages = u32::try_from(pages)
            .ok()
            .filter(|&p| p <= 65536)
            .ok_or_else(|| {
                Error::Config(format!(
                    "a shared region of {bytes} bytes is larger than 4 GiB"
                ))
            })?;
        let mem = SharedMemory::new(engine, MemoryType::shared(pages, pages))
            .map_err(|e| Error::Host(format!("cannot create the shared region: {e:#}")))?;
        let len = mem.data_size();
        Ok(SharedRegion {
            mem,
            len,
            async_waiters: Arc::default(),
        })
    }

    /// A standalone region, for examples and tests of the region itself.
    ///
    /// ```
    /// assert_eq!(wasmpool::SharedRegion::for_tests(1).len(), 65536);
    /// ```
    #[doc(hidden)]
    pub fn for_tests(bytes: usize) -> Self {
        let mut config = wasmtime::Config::new();
        config.wasm_threads(true).shared_memory(true);
        let engine = Engine::new(&config).expect("engine with threads");
        SharedRegion::new(&engine, bytes).expect("shared region")
    }

    pub(crate) fn memory(&self) -> &SharedMemory {
        &self.mem
    }

    /// The region's size in bytes (a multiple of 64 KiB).
    ///
    /// ```
    /// assert_eq!(wasmpool::SharedRegion::for_tests(100_000).len(), 131072);
    /// ```
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the region is empty (it never is: it has at least one page).
    ///
    /// ```
    /// assert!(!wasmpool::SharedRegion::for_tests(1).is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn check(&self, offset: u64, len: u64, align: u64) -> Result<usize, ShmError> {
        let size = self.len() as u64;
        match offset.checked_add(len) {
            Some(end) if end <= size => {}
            _ => return Err(ShmError::OutOfBounds { offset, len, size }),
        }
        if !offset.is_multiple_of(align) {
            return Err(ShmError::Misaligned {
                offset,
                width: align,
            });
        }
        // offset < size <= 4 GiB fits in usize on every supported host.
        Ok(offset as usize)
    }

    fn bytes(&self, offset: usize, len: usize) -> &[AtomicU8] {
        let data = self.mem.data();
        let cells = &data[offset..offset + len];
        // SAFETY: `AtomicU8` has the size and alignment of `UnsafeCell<u8>`,
        // and the region is only ever accessed through atomics by the host
        // (see the module's invariants); `cells` borrows from `self.mem`, whose
        // memory never moves or shrinks while it is alive.
        unsafe { &*(std::ptr::from_ref(cells) as *const [AtomicU8]) }
    }

    fn atomic_i64(&self, offset: u64) -> Result<&AtomicI64, ShmError> {
        let at = self.check(offset, 8, 8)?;
        let ptr = self.mem.data()[at..at + 8].as_ptr();
        // SAFETY: `at..at + 8` is inside the region (checked), the base is
        // page-aligned and `at` a multiple of 8, so the pointer is valid and
        // aligned for an `AtomicI64`; the memory lives as long as `self`, and
        // shared wasm memory is meant for concurrent atomic access.
        Ok(unsafe { &*(ptr as *const AtomicI64) })
    }

    fn atomic_i32(&self, offset: u64) -> Result<&AtomicI32, ShmError> {
        let at = self.check(offset, 4, 4)?;
        let ptr = self.mem.data()[at..at + 4].as_ptr();
        // SAFETY: as in `atomic_i64`, for 4 bytes aligned to 4.
        Ok(unsafe { &*(ptr as *const AtomicI32) })
    }

    /// Copies `buf.len()` bytes at `offset` into `buf`.
    ///
    /// # Errors
    ///
    /// [`ShmError::OutOfBounds`].
    ///
    /// ```
    /// # let region = wasmpool::SharedRegion::for_tests(1);
    /// region.write(10, b"hi").unwrap();
    /// let mut buf = [0; 2];
    /// region.read(10, &mut buf).unwrap();
    /// assert_eq!(&buf, b"hi");
    /// ```
    pub fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(), ShmError> {
        let at = self.check(offset, buf.len() as u64, 1)?;
        let cells = self.bytes(at, buf.len());
        for (b, cell) in buf.iter_mut().zip(cells) {
            *b = cell.load(Ordering::Relaxed);
        }
        std::sync::atomic::fence(Ordering::Acquire);
        Ok(())
    }

    /// Copies `data` into the region at `offset`.
    ///
    /// # Errors
    ///
    /// [`ShmError::OutOfBounds`].
    ///
    /// ```
    /// # let region = wasmpool::SharedRegion::for_tests(1);
    /// assert!(region.write(65535, b"xy").is_err());
    /// ```
    pub fn write(&self, offset: u64, data: &[u8]) -> Result<(), ShmError> {
        let at = self.check(offset, data.len() as u64, 1)?;
        std::sync::atomic::fence(Ordering::Release);
        for (b, cell) in data.iter().zip(self.bytes(at, data.len())) {
            cell.store(*b, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Atomically loads the `i64` at `offset` (aligned to 8).
    ///
    /// # Errors
    ///
    /// [`ShmError`] for a bad or misaligned offset.
    ///
    /// ```
    /// # let region = wasmpool::SharedRegion::for_tests(1);
    /// assert_eq!(region.load_i64(8).unwrap(), 0);
    /// ```
    pub fn load_i64(&self, offset: u64) -> Result<i64, ShmError> {
        Ok(self.atomic_i64(offset)?.load(Ordering::SeqCst))
    }

    /// Atomically stores an `i64` at `offset`.
    ///
    /// # Errors
    ///
    /// [`ShmError`] for a bad or misaligned offset.
    ///
    /// ```
    /// # let region = wasmpool::SharedRegion::for_tests(1);
    /// region.store_i64(8, -1).unwrap();
    /// ```
    pub fn store_i64(&self, offset: u64, value: i64) -> Result<(), ShmError> {
        self.atomic_i64(offset)?.store(value, Ordering::SeqCst);
        Ok(())
    }

    /// Atomically adds to the `i64` at `offset`; returns the previous value.
    ///
    /// # Errors
    ///
    /// [`ShmError`] for a bad or misaligned offset.
    ///
    /// ```
    /// # let region = wasmpool::SharedRegion::for_tests(1);
    /// assert_eq!(region.fetch_add_i64(0, 5).unwrap(), 0);
    /// ```
    pub fn fetch_add_i64(&self, offset: u64, delta: i64) -> Result<i64, ShmError> {
        Ok(self.atomic_i64(offset)?.fetch_add(delta, Ordering::SeqCst))
    }

    /// Atomically replaces the `i64` at `offset` with `new` if it is
    /// `expected`; returns the previous value (equal to `expected` on success).
    ///
    /// # Errors
    ///
    /// [`ShmError`] for a bad or misaligned offset.
    ///
    /// ```
    /// # let region = wasmpool::SharedRegion::for_tests(1);
    /// assert_eq!(region.compare_exchange_i64(0, 0, 7).unwrap(), 0);
    /// assert_eq!(region.compare_exchange_i64(0, 0, 9).unwrap(), 7);
    /// ```
    pub fn compare_exchange_i64(
        &self,
        offset: u64,
        expected: i64,
        new: i64,
    ) -> Result<i64, ShmError> {
        let a = self.atomic_i64(offset)?;
        Ok(
            a.compare_exchange(expected, new, Ordering::SeqCst, Ordering::SeqCst)
                .unwrap_or_else(|v| v),
        )
    }

    /// Atomically loads the `i32` at `offset` (aligned to 4).
    ///
    /// # Errors
    ///
    /// [`ShmError`] for a bad or misaligned offset.
    ///
    /// ```
    /// # let region = wasmpool::SharedRegion::for_tests(1);
    /// assert_eq!(region.load_i32(4).unwrap(), 0);
    /// ```
    pub fn load_i32(&self, offset: u64) -> Result<i32, ShmError> {
        Ok(self.atomic_i32(offset)?.load(Ordering::SeqCst))
    }

    /// Atomically stores an `i32` at `offset`.
    ///
    /// # Errors
    ///
    /// [`ShmError`] for a bad or misaligned offset.
    ///
    /// ```
    /// # let region = wasmpool::SharedRegion::for_tests(1);
    /// region.store_i32(4, 3).unwrap();
    /// ```
    pub fn store_i32(&self, offset: u64, value: i32) -> Result<(), ShmError> {
        self.atomic_i32(offset)?.store(value, Ordering::SeqCst);
        Ok(())
    }

    /// Atomically adds to the `i32` at `offset`; returns the previous value.
    ///
    /// # Errors
    ///
    /// [`ShmError`] for a bad or misaligned offset.
    ///
    /// ```
    /// # let region = wasmpool::SharedRegion::for_tests(1);
    /// assert_eq!(region.fetch_add_i32(4, 1).unwrap(), 0);
    /// ```
    pub fn fetch_add_i32(&self, offset: u64, delta: i32) -> Result<i32, ShmError> {
        Ok(self.atomic_i32(offset)?.fetch_add(delta, Ordering::SeqCst))
    }

    /// Compare-and-exchange on the `i32` at `offset`; returns the previous value.
    ///
    /// # Errors
    ///
    /// [`ShmError`] for a bad or misaligned offset.
    ///
    /// ```
    /// # let region = wasmpool::SharedRegion::for_tests(1);
    /// assert_eq!(region.compare_exchange_i32(4, 0, 1).unwrap(), 0);
    /// ```
    pub fn compare_exchange_i32(
        &self,
        offset: u64,
        expected: i32,
        new: i32,
    ) -> Result<i32, ShmError> {
        let a = self.atomic_i32(offset)?;
        Ok(
            a.compare_exchange(expected, new, Ordering::SeqCst, Ordering::SeqCst)
                .unwrap_or_else(|v| v),
        )
    }

    /// Waits while the `i32` at `offset` equals `expected`, until a
    /// [`notify`](Self::notify), the timeout (`None`: forever), or `interrupt`.
    ///
    /// # Errors
    ///
    /// [`ShmError`] for a bad or misaligned offset.
    ///
    /// ```
    /// # let region = wasmpool::SharedRegion::for_tests(1);
    /// use std::time::Duration;
    /// let never = std::sync::atomic::AtomicBool::new(false);
    /// let r = region.wait_i32(0, 0, Some(Duration::from_millis(1)), &never).unwrap();
    /// assert_eq!(r, wasmpool::Wake::TimedOut);
    /// assert_eq!(region.wait_i32(0, 5, None, &never).unwrap(), wasmpool::Wake::Mismatch);
    /// ```
    pub fn wait_i32(
        &self,
        offset: u64,
        expected: i32,
        timeout: Option<Duration>,
        interrupt: &AtomicBool,
    ) -> Result<Wake, ShmError> {
        self.wait_i32_for(
            offset,
            expected,
            timeout,
            Waiter {
                interrupt: Some(interrupt),
                ..Waiter::default()
            },
        )
    }

    pub(crate) fn wait_i32_for(
        &self,
        offset: u64,
        expected: i32,
        timeout: Option<Duration>,
        waiter: Waiter<'_>,
    ) -> Result<Wake, ShmError> {
        // As wasm's `memory.atomic.wait32`: the value is compared first, so a
        // zero timeout still tells a mismatch from a timeout.
        if self.atomic_i32(offset)?.load(Ordering::SeqCst) != expected {
            return Ok(Wake::Mismatch);
        }
        let deadline = deadline(timeout);
        loop {
            let slice = match next_slice(deadline, waiter) {
                Ok(slice) => slice,
                Err(Stop::Timeout) => return Ok(Wake::TimedOut),
                Err(Stop::Interrupted) => return Ok(Wake::Interrupted),
            };
            // Checked above: in bounds and aligned, so wasmtime cannot trap.
            match self.mem.atomic_wait32(offset, expected as u32, Some(slice)) {
                Ok(WaitResult::Ok) => return Ok(Wake::Notified),
                Ok(WaitResult::Mismatch) => return Ok(Wake::Mismatch),
                Ok(WaitResult::TimedOut) => continue,
                Err(_) => {
                    return Err(ShmError::OutOfBounds {
                        offset,
                        len: 4,
                        size: self.len() as u64,
                    });
                }
            }
        }
    }

    /// The async face of [`wait_i32_for`](Self::wait_i32_for): the guest's
    /// instance is suspended until [`notify`](Self::notify) wakes this
    /// offset or the value changes. A wasm `memory.atomic.notify` executed
    /// by a guest reaches only the blocking face; an async waiter sees its
    /// value change within a wait slice (`wait::SLICE`) instead.
    pub(crate) async fn wait_i32_async(
        &self,
        offset: u64,
        expected: i32,
        timeout: Option<Duration>,
        waiter: &OwnedWaiter,
    ) -> Result<Wake, ShmError> {
        let cell = self.atomic_i32(offset)?;
        if cell.load(Ordering::SeqCst) != expected {
            return Ok(Wake::Mismatch);
        }
        let event = self
            .async_waiters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(offset)
            .or_default()
            .clone();
        // One listener for the whole wait: a notification after this point
        // is never lost. A changed value is as good as a notification.
        let listener = event.listen();
        tokio::pin!(listener);
        let deadline = deadline(timeout);
        let done = loop {
            if cell.load(Ordering::SeqCst) != expected {
                break Ok(());
            }
            let slice = match next_slice(deadline, waiter.borrow()) {
                Ok(slice) => slice,
                Err(stop) => break Err(stop),
            };
            if tokio::time::timeout(slice, listener.as_mut()).await.is_ok() {
                break Ok(());
            }
        };
        {
            let mut map = self.async_waiters.lock().unwrap_or_else(|e| e.into_inner());
            // Two references: the map's and ours; no other waiter.
            if Arc::strong_count(&event) == 2 {
                map.remove(&offset);
            }
        }
        match done {
            Ok(()) => Ok(Wake::Notified),
            Err(Stop::Timeout) => Ok(Wake::TimedOut),
            Err(Stop::Interrupted) => Ok(Wake::Interrupted),
        }
    }

    /// Wakes every waiter on the region, at every address: how the watchdog
    /// gets back a worker it abandoned in a wasm `memory.atomic.wait` (the
    /// wait returns, and the guest's next epoch check ends it). Other
    /// waiters see a wake-up they must tolerate anyway (anyone may notify).
    /// Takes about a millisecond per 64 KiB.
    pub(crate) fn wake_all(&self) {
        for offset in (0..self.len as u64).step_by(4) {
            let _ = self.mem.atomic_notify(offset, u32::MAX);
        }
    }

    /// Wakes up to `count` waiters on `offset`; returns how many woke.
    ///
    /// # Errors
    ///
    /// [`ShmError`] for a bad or misaligned offset.
    ///
    /// ```
    /// # let region = wasmpool::SharedRegion::for_tests(1);
    /// assert_eq!(region.notify(0, 1).unwrap(), 0);
    /// ```
    pub fn notify(&self, offset: u64, count: u32) -> Result<u32, ShmError> {
        self.atomic_i32(offset)?;
        let woken = self
            .mem
            .atomic_notify(offset, count)
            .map_err(|_| ShmError::OutOfBounds {
                offset,
                len: 4,
                size: self.len() as u64,
            })?;
        let left = count - woken.min(count);
        if left == 0 {
            return Ok(woken);
        }
        let event = self
            .async_waiters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&offset)
            .cloned();
        let more = event.map_or(0, |e| e.notify_additional(left as usize));
        Ok(woken + more.min(u32::MAX as usize) as u32)
    }
}
