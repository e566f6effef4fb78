//! Views of the shared region (Python's `Value` and `Array`), and the
//! synchronization types built on its wait/notify: [`Lock`], [`Event`],
//! [`Barrier`], [`Semaphore`].
//!
//! Every instance of a pool or process group sees the same region; the host
//! sizes it (`--shared-memory SIZE`). Places in it are byte offsets that the
//! guests agree on, like fields of a struct: `SharedValue::<u64>::at(0)`,
//! `SharedArray::<i32>::at(64, 100)`. Offsets must be aligned to the type's
//! size, and a bad offset traps the task with a clear ABI error.

use std::marker::PhantomData;
use std::time::Duration;

use crate::sys;

mod sealed {
    pub trait Sealed {}
}

/// An integer type the region supports atomically: `i32`, `u32`, `i64`, `u64`.
pub trait Atom: Copy + sealed::Sealed {
    /// Size in bytes (also the alignment).
    const SIZE: u64;
    #[doc(hidden)]
    fn load(offset: u64) -> Self;
    #[doc(hidden)]
    fn store(offset: u64, v: Self);
    #[doc(hidden)]
    fn fetch_add(offset: u64, v: Self) -> Self;
    #[doc(hidden)]
    fn cas(offset: u64, expected: Self, new: Self) -> Self;
}

macro_rules! atom {
    ($t:ty, $raw:ty, $size:expr, $load:ident, $store:ident, $add:ident, $cas:ident) => {
        impl sealed::Sealed for $t {}
        impl Atom for $t {
            const SIZE: u64 = $size;
            fn load(offset: u64) -> Self {
                sys::$load(offset as i64) as $t
            }
            fn store(offset: u64, v: Self) {
                sys::$store(offset as i64, v as $raw)
            }
            fn fetch_add(offset: u64, v: Self) -> Self {
                sys::$add(offset as i64, v as $raw) as $t
            }
            fn cas(offset: u64, expected: Self, new: Self) -> Self {
                sys::$cas(offset as i64, expected as $raw, new as $raw) as $t
            }
        }
    };
}
atom!(
    i32,
    i32,
    4,
    shm_load_i32,
    shm_store_i32,
    shm_add_i32,
    shm_cas_i32
);
atom!(
    u32,
    i32,
    4,
    shm_load_i32,
    shm_store_i32,
    shm_add_i32,
    shm_cas_i32
);
atom!(
    i64,
    i64,
    8,
    shm_load_i64,
    shm_store_i64,
    shm_add_i64,
    shm_cas_i64
);
atom!(
    u64,
    i64,
    8,
    shm_load_i64,
    shm_store_i64,
    shm_add_i64,
    shm_cas_i64
);

/// The size of the shared region in bytes (0 when the run has none).
///
/// ```no_run
/// assert!(wasmpool_guest::shared_size() >= 8);
/// ```
pub fn shared_size() -> u64 {
    sys::shm_size().max(0) as u64
}

/// Copies region bytes at `offset` into `buf`.
///
/// ```no_run
/// let mut buf = [0u8; 16];
/// wasmpool_guest::shared_read(1024, &mut buf);
/// ```
pub fn shared_read(offset: u64, buf: &mut [u8]) {
    // SAFETY: `buf` is a live, writable buffer of `buf.len()` bytes.
    unsafe { sys::shm_read(offset as i64, buf.as_mut_ptr(), buf.len() as i32) }
}

/// Copies `data` into the region at `offset`.
///
/// ```no_run
/// wasmpool_guest::shared_write(1024, b"hello");
/// ```
pub fn shared_write(offset: u64, data: &[u8]) {
    // SAFETY: `data` is live for the call; the host copies it.
    unsafe { sys::shm_write(offset as i64, data.as_ptr(), data.len() as i32) }
}

/// One atomic integer in the shared region (Python's `Value`).
///
/// ```no_run
/// use wasmpool_guest::SharedValue;
/// const COUNTER: SharedValue<u64> = SharedValue::at(0);
/// COUNTER.fetch_add(1);
/// ```
#[derive(Debug, Clone, Copy)]
pub struct SharedValue<T> {
    offset: u64,
    _t: PhantomData<T>,
}

impl<T: Atom> SharedValue<T> {
    /// The value at byte `offset` (aligned to `T`'s size).
    pub const fn at(offset: u64) -> Self {
        SharedValue {
            offset,
            _t: PhantomData,
        }
    }
    /// Atomically reads the value.
    pub fn load(&self) -> T {
        T::load(self.offset)
    }
    /// Atomically writes the value.
    pub fn store(&self, v: T) {
        T::store(self.offset, v)
    }
    /// Atomically adds `v` (wrapping); returns the previous value.
    pub fn fetch_add(&self, v: T) -> T {
        T::fetch_add(self.offset, v)
    }
    /// Replaces the value with `new` if it is `current`: `Ok(current)` if it
    /// was, else `Err(actual)`.
    pub fn compare_exchange(&self, current: T, new: T) -> Result<T, T>
    where
        T: PartialEq,
    {
        let prev = T::cas(self.offset, current, new);
        if prev == current { Ok(prev) } else { Err(prev) }
    }
}

/// `len` atomic integers in a row in the shared region (Python's `Array`).
///
/// ```no_run
/// use wasmpool_guest::SharedArray;
/// let histogram: SharedArray<u32> = SharedArray::at(4096, 256);
/// histogram.fetch_add(17, 1);
/// let mut copy = vec![0; 256];
/// histogram.read(&mut copy);
/// ```
#[derive(Debug, Clone, Copy)]
pub struct SharedArray<T> {
    offset: u64,
    len: usize,
    _t: PhantomData<T>,
}

impl<T: Atom> SharedArray<T> {
    /// `len` elements starting at byte `offset` (aligned to `T`'s size).
    pub const fn at(offset: u64, len: usize) -> Self {
        SharedArray {
            offset,
            len,
            _t: PhantomData,
        }
    }
    /// The number of elements.
    pub fn len(&self) -> usize {
        self.len
    }
    /// Whether it has no elements.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// Element `i` as a [`SharedValue`].
    ///
    /// # Panics
    ///
    /// If `i >= len`.
    pub fn get(&self, i: usize) -> SharedValue<T> {
        assert!(
            i < self.len,
            "index {i} out of bounds for a SharedArray of {}",
            self.len
        );
        SharedValue::at(self.offset + i as u64 * T::SIZE)
    }
    /// Atomically reads element `i`.
    pub fn load(&self, i: usize) -> T {
        self.get(i).load()
    }
    /// Atomically writes element `i`.
    pub fn store(&self, i: usize, v: T) {
        self.get(i).store(v)
    }
    /// Atomically adds to element `i`; returns the previous value.
    pub fn fetch_add(&self, i: usize, v: T) -> T {
        self.get(i).fetch_add(v)
    }
    /// Reads the first `out.len()` elements (each atomically).
    ///
    /// # Panics
    ///
    /// If `out` is longer than the array.
    pub fn read(&self, out: &mut [T]) {
        for (i, slot) in out.iter_mut().enumerate() {
            *slot = self.load(i);
        }
    }
    /// Writes `values` from the start (each atomically).
    ///
    /// # Panics
    ///
    /// If `values` is longer than the array.
    pub fn write(&self, values: &[T]) {
        for (i, v) in values.iter().enumerate() {
            self.store(i, *v);
        }
    }
}

fn wait(offset: u64, expected: i32, timeout: Option<Duration>) -> bool {
    let ms = timeout.map_or(-1, |t| i64::try_from(t.as_millis()).unwrap_or(i64::MAX));
    sys::shm_wait_i32(offset as i64, expected, ms) != 2
}

fn notify(offset: u64, count: u32) {
    sys::shm_notify(offset as i64, count.min(i32::MAX as u32) as i32);
}

/// A mutual-exclusion lock in 4 bytes of the region (Python's `Lock`).
///
/// ```no_run
/// use wasmpool_guest::{Lock, SharedValue};
/// const LOCK: Lock = Lock::at(0);
/// const TOTAL: SharedValue<u64> = SharedValue::at(8);
/// let _guard = LOCK.lock();
/// TOTAL.store(TOTAL.load() + 1); // a read-modify-write made safe by the lock
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Lock {
    word: SharedValue<i32>,
}

/// Held while a [`Lock`] is locked; unlocks on drop.
#[derive(Debug)]
#[must_use = "the lock unlocks when the guard is dropped"]
pub struct LockGuard<'a> {
    lock: &'a Lock,
}

impl Lock {
    /// The lock at byte `offset` (aligned to 4; starts unlocked at 0).
    pub const fn at(offset: u64) -> Self {
        Lock {
            word: SharedValue::at(offset),
        }
    }
    /// Locks, waiting as long as it takes. States: 0 free, 1 held, 2 held
    /// with waiters (Drepper's futex mutex).
    pub fn lock(&self) -> LockGuard<'_> {
        if self.word.compare_exchange(0, 1).is_err() {
            loop {
                // Announce a waiter, then sleep while it stays held.
                if self.word.load() == 2 || self.word.compare_exchange(1, 2).is_ok() {
                    wait(self.word.offset, 2, None);
                }
                if self.word.compare_exchange(0, 2).is_ok() {
                    break;
                }
            }
        }
        LockGuard { lock: self }
    }
    /// Locks if free, without waiting.
    pub fn try_lock(&self) -> Option<LockGuard<'_>> {
        self.word
            .compare_exchange(0, 1)
            .ok()
            .map(|_| LockGuard { lock: self })
    }
    fn unlock(&self) {
        if self.word.fetch_add(-1) != 1 {
            self.word.store(0);
            notify(self.word.offset, 1);
        }
    }
}

impl Drop for LockGuard<'_> {
    fn drop(&mut self) {
        self.lock.unlock();
    }
}

/// A flag others can wait for (Python's `Event`), in 4 bytes of the region.
///
/// ```no_run
/// const READY: wasmpool_guest::Event = wasmpool_guest::Event::at(16);
/// READY.wait();
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Event {
    word: SharedValue<i32>,
}

impl Event {
    /// The event at byte `offset` (aligned to 4; starts clear at 0).
    pub const fn at(offset: u64) -> Self {
        Event {
            word: SharedValue::at(offset),
        }
    }
    /// Sets the flag and wakes every waiter.
    pub fn set(&self) {
        self.word.store(1);
        notify(self.word.offset, u32::MAX);
    }
    /// Clears the flag.
    pub fn clear(&self) {
        self.word.store(0);
    }
    /// Whether the flag is set.
    pub fn is_set(&self) -> bool {
        self.word.load() != 0
    }
    /// Waits until the flag is set.
    pub fn wait(&self) {
        while !self.is_set() {
            wait(self.word.offset, 0, None);
        }
    }
    /// Waits at most `timeout`; returns whether the flag is set.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        if !self.is_set() {
            wait(self.word.offset, 0, Some(timeout));
        }
        self.is_set()
    }
}

/// A barrier for `parties` instances (Python's `Barrier`), in 8 bytes of the
/// region: an arrival count and a generation number. Reusable.
///
/// ```no_run
/// const ALL: wasmpool_guest::Barrier = wasmpool_guest::Barrier::at(32, 4);
/// ALL.wait(); // returns once 4 instances have arrived
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Barrier {
    count: SharedValue<i32>,
    generation: SharedValue<i32>,
    parties: i32,
}

impl Barrier {
    /// The barrier at byte `offset` (aligned to 4; both words start at 0).
    pub const fn at(offset: u64, parties: u32) -> Self {
        Barrier {
            count: SharedValue::at(offset),
            generation: SharedValue::at(offset + 4),
            parties: parties as i32,
        }
    }
    /// Waits until `parties` instances have called `wait`; returns `true` in
    /// exactly one of them (the last to arrive).
    pub fn wait(&self) -> bool {
        let generation = self.generation.load();
        if self.count.fetch_add(1) + 1 == self.parties {
            self.count.store(0);
            self.generation.fetch_add(1);
            notify(self.generation.offset, u32::MAX);
            return true;
        }
        while self.generation.load() == generation {
            wait(self.generation.offset, generation, None);
        }
        false
    }
}

/// A counting semaphore (Python's `Semaphore`) in 4 bytes of the region.
///
/// ```no_run
/// const SLOTS: wasmpool_guest::Semaphore = wasmpool_guest::Semaphore::at(48);
/// SLOTS.acquire();
/// // ... at most N instances here at once ...
/// SLOTS.release();
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Semaphore {
    permits: SharedValue<i32>,
}

impl Semaphore {
    /// The semaphore at byte `offset` (aligned to 4). Its permits start at
    /// whatever the region holds (0 unless the host or a guest set them with
    /// [`release`](Self::release) or [`set_permits`](Self::set_permits)).
    pub const fn at(offset: u64) -> Self {
        Semaphore {
            permits: SharedValue::at(offset),
        }
    }
    /// Sets the number of permits (before anyone uses it).
    pub fn set_permits(&self, n: u32) {
        self.permits.store(n as i32);
    }
    /// Takes a permit, waiting until one is free.
    pub fn acquire(&self) {
        loop {
            let v = self.permits.load();
            if v > 0 {
                if self.permits.compare_exchange(v, v - 1).is_ok() {
                    return;
                }
            } else {
                wait(self.permits.offset, v, None);
            }
        }
    }
    /// Takes a permit if one is free.
    pub fn try_acquire(&self) -> bool {
        let v = self.permits.load();
        v > 0 && self.permits.compare_exchange(v, v - 1).is_ok()
    }
    /// Gives a permit back and wakes one waiter.
    pub fn release(&self) {
        self.permits.fetch_add(1);
        notify(self.permits.offset, 1);
    }
}
