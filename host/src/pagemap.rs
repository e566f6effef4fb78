//! Which pages of a range this process has written: Linux's `PAGEMAP_SCAN`
//! (6.7 and later), the one `unsafe` system interface of `rewind.rs`.
//!
//! Entry points: [`available`], then [`scan`], which reports the runs of
//! pages in a range that may hold something other than what was mapped
//! there: private pages (a copy made on write, or a page first written),
//! present or not (swapped out, or being migrated), and pages mapped to the
//! shared zero page, told apart. Pages of a file's page cache (how a
//! module's memory image is mapped) are not reported: they were only read.
//! wasmtime resets its pooling slots with the same scan
//! (`reset_with_pagemap`); it asks for present private pages only. This
//! asks for swapped and migrating ones as well, which are just as written,
//! and for zero pages, because a page written with zeros may be mapped to
//! the zero page later (by KSM, or by the kernel's shrinking of huge pages),
//! and it is then still not what it started as if it held data.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

/// `struct pm_scan_arg` of `<linux/fs.h>`.
#[repr(C)]
#[derive(Debug, Default)]
struct ScanArg {
    size: u64,
    flags: u64,
    start: u64,
    end: u64,
    walk_end: u64,
    vec: u64,
    vec_len: u64,
    max_pages: u64,
    category_inverted: u64,
    category_mask: u64,
    category_anyof_mask: u64,
    return_mask: u64,
}

/// `struct page_region` of `<linux/fs.h>`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
struct PageRegion {
    start: u64,
    end: u64,
    categories: u64,
}

// The page categories of `<linux/fs.h>`.
const WRITTEN: u64 = 1 << 1;
const FILE: u64 = 1 << 2;
const PRESENT: u64 = 1 << 3;
const SWAPPED: u64 = 1 << 4;
const PFNZERO: u64 = 1 << 5;

/// `PAGEMAP_SCAN`: `_IOWR('f', 16, struct pm_scan_arg)`.
const PAGEMAP_SCAN: u64 = (3 << 30) | ((size_of::<ScanArg>() as u64) << 16) | (0x66 << 8) | 16;

/// Regions one call can report; a scan with more continues where it
/// stopped.
const REGIONS: usize = 32;

/// Set in a child process made by `fork`, whose `/proc/self/pagemap`
/// (opened by the parent) would describe the parent's pages: scans then
/// fail, and callers fall back to what they do without them.
static FORKED: AtomicBool = AtomicBool::new(false);

extern "C" fn forked() {
    // Async-signal-safe: one atomic store.
    FORKED.store(true, Ordering::Relaxed);
}

thread_local! {
    /// This thread's own `/proc/self/pagemap`: one descriptor per thread,
    /// because the kernel counts a reference to an open file on every
    /// call from a process with threads, and one file shared by the
    /// workers would bounce that count between their cores.
    static PAGEMAP: Option<File> = {
        static HOOK: std::sync::Once = std::sync::Once::new();
        // SAFETY: registers a handler that only stores to an atomic.
        HOOK.call_once(|| unsafe {
            libc::pthread_atfork(None, None, Some(forked));
        });
        File::open("/proc/self/pagemap").ok()
    };
}

/// Whether [`scan`] works here (a Linux with `PAGEMAP_SCAN`): checked
/// once, with a scan of nothing.
pub(crate) fn available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        if !cfg!(target_os = "linux") {
            return false;
        }
        // SAFETY: an empty range: no memory is read (wasmtime checks for
        // the scan the same way).
        unsafe { scan(std::ptr::null(), 0, 0, |_, _, _| {}) }.is_some()
    })
}

/// The host's page size (the scan's unit).
pub(crate) fn page_size() -> usize {
    static PAGE: OnceLock<usize> = OnceLock::new();
    // SAFETY: `sysconf` has no preconditions.
    *PAGE.get_or_init(|| match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
        n if n > 0 => n as usize,
        _ => 4096,
    })
}

/// Calls `each(offset, len, zero)` for every run of written pages (`zero`
/// false) or pages mapped to the zero page (`zero` true) in
/// `base..base + len`, in order (offsets from `base`, whole pages), and
/// returns how many bytes the written ones hold; `None` if the scan failed
/// or found more than `max_bytes` written, in which case `each` may have
/// seen some of the runs and the caller must not rely on having seen them
/// all.
///
/// `each` may write to the pages it is given (the scan continues after
/// them).
///
/// # Safety
///
/// `base` must be page-aligned and `base..base + len` a range of this
/// process's address space that stays mapped for the call.
pub(crate) unsafe fn scan(
    base: *const u8,
    len: usize,
    max_bytes: usize,
    mut each: impl FnMut(usize, usize, bool),
) -> Option<usize> {
    if FORKED.load(Ordering::Relaxed) {
        return None;
    }
    PAGEMAP.with(|file| {
        // SAFETY: the caller's promise, passed on.
        unsafe { scan_with(file.as_ref()?.as_raw_fd(), base, len, max_bytes, &mut each) }
    })
}

/// The page faults this thread has taken so far (minor and major), and
/// which thread that is: the witness that lets a rewind skip the scan.
///
/// A page of a memory becomes private (written, in the scan's terms) only
/// through a fault of the thread that touched it: the copy made when a
/// file's or the zero page is first written, or a page first touched. The
/// kernel counts every completed fault for the thread that took it
/// (`mm_account_fault`, also for pages it touches for a system call),
/// so if a thread's count has not moved, nothing that thread did since
/// made a page private, and the private pages of a memory only it touches
/// are the ones it knew of. The two other ways a page becomes private
/// without such a fault are shut out where the witness is used: another
/// thread's touch (rewound instances run on one thread, checked per task
/// with [`thread`]) and the collapse of small pages into a huge one by
/// `khugepaged` (see [`no_huge_pages`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Faults {
    thread: u64,
    count: u64,
}

impl Faults {
    /// The thread these faults are of ([`thread`]).
    pub(crate) fn thread(self) -> u64 {
        self.thread
    }
}

/// This thread's faults so far; `None` where they cannot be read (not
/// Linux, or a child of `fork`, whose scans fail anyway).
pub(crate) fn faults() -> Option<Faults> {
    if FORKED.load(Ordering::Relaxed) {
        return None;
    }
    #[cfg(target_os = "linux")]
    {
        // SAFETY: `rusage` is plain data; all zeros is a valid value.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: `usage` is a valid, writable `rusage` for the call.
        if unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) } != 0 {
            return None;
        }
        let count = (usage.ru_minflt as u64).wrapping_add(usage.ru_majflt as u64);
        Some(Faults {
            thread: thread(),
            count,
        })
    }
    #[cfg(not(target_os = "linux"))]
    None
}

/// A number for this thread, unique in the process for its life (unlike
/// an address or an OS thread id, never reused).
pub(crate) fn thread() -> u64 {
    use std::sync::atomic::AtomicU64;
    static NEXT: AtomicU64 = AtomicU64::new(1);
    thread_local! {
        static THIS: u64 = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    THIS.with(|this| *this)
}

/// Asks the kernel never to back `base..base + len` with huge pages:
/// `khugepaged` could otherwise collapse its small pages into one huge
/// private page (untouched ones as zeros) from its own thread, and a write
/// there would then make no fault, which [`Faults`] relies on. `false` if
/// the kernel refused (the caller must then always scan). Existing huge
/// pages stay (a scan reports them as written); their contents do not
/// change.
///
/// # Safety
///
/// `base` must be page-aligned and `base..base + len` a range of this
/// process's address space; its contents are not changed.
pub(crate) unsafe fn no_huge_pages(base: *const u8, len: usize) -> bool {
    if len == 0 {
        return true;
    }
    #[cfg(target_os = "linux")]
    {
        // SAFETY: the caller's promise; `MADV_NOHUGEPAGE` changes only a
        // flag of the mappings, never what they hold.
        unsafe { libc::madvise(base.cast_mut().cast(), len, libc::MADV_NOHUGEPAGE) == 0 }
    }
    #[cfg(not(target_os = "linux"))]
    false
}

/// [`scan`] with `fd`, this thread's pagemap.
///
/// # Safety
///
/// As [`scan`].
unsafe fn scan_with(
    fd: i32,
    base: *const u8,
    len: usize,
    max_bytes: usize,
    each: &mut impl FnMut(usize, usize, bool),
) -> Option<usize> {
    let start = base as u64;
    let end = start + len as u64;
    let mut at = start;
    let mut total = 0;
    loop {
        let mut regions = [PageRegion::default(); REGIONS];
        let mut arg = ScanArg {
            size: size_of::<ScanArg>() as u64,
            start: at,
            end,
            vec: regions.as_mut_ptr() as u64,
            vec_len: REGIONS as u64,
            // Written and not a file's page...
            category_inverted: FILE,
            category_mask: WRITTEN | FILE,
            // ...whether in memory or not...
            category_anyof_mask: PRESENT | SWAPPED,
            // ...in runs of pages that are all the zero page or none.
            return_mask: PFNZERO,
            ..ScanArg::default()
        };
        // SAFETY: `arg` is a valid `pm_scan_arg` whose `vec` points to
        // `REGIONS` writable `page_region`s that outlive the call; the
        // kernel reads the page tables of `start..end` (the caller's
        // range) and writes only `arg` and `regions`. The fd is this
        // process's own pagemap (not a parent's: checked above).
        let found = unsafe { libc::ioctl(fd, PAGEMAP_SCAN as _, &mut arg as *mut ScanArg) };
        if found < 0 {
            return None;
        }
        for region in &regions[..(found as usize).min(REGIONS)] {
            if region.start < at || region.end > end || region.start > region.end {
                return None; // not what was asked: trust nothing
            }
            let n = (region.end - region.start) as usize;
            let zero = region.categories & PFNZERO != 0;
            if !zero {
                total += n;
                if total > max_bytes {
                    return None;
                }
            }
            each((region.start - start) as usize, n, zero);
        }
        if arg.walk_end >= end || len == 0 {
            return Some(total);
        }
        if arg.walk_end <= at {
            return None; // no progress: never loop
        }
        at = arg.walk_end;
    }
}

#[cfg(test)]
pub(crate) mod test {
    use super::*;

    /// An anonymous private mapping of `pages` pages, unmapped on drop.
    pub(crate) struct Map(pub(crate) *mut u8, pub(crate) usize);

    impl Map {
        pub(crate) fn new(pages: usize) -> Map {
            let len = pages * page_size();
            // SAFETY: a fresh anonymous mapping, no address requested.
            let p = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                )
            };
            assert_ne!(p, libc::MAP_FAILED);
            Map(p.cast(), len)
        }
    }

    impl Drop for Map {
        fn drop(&mut self) {
            // SAFETY: the mapping made in `new`.
            unsafe { libc::munmap(self.0.cast(), self.1) };
        }
    }

    /// Another thread, started now (starting a thread faults in the one
    /// that starts it), that writes a byte of page `page` of `map` when
    /// told to ([`Writer::write`]).
    pub(crate) struct Writer {
        turns: std::sync::Arc<std::sync::Barrier>,
        thread: std::thread::JoinHandle<u64>,
    }

    impl Writer {
        pub(crate) fn new(map: &Map, page: usize) -> Writer {
            let at = map.0 as usize + page * page_size();
            let turns = std::sync::Arc::new(std::sync::Barrier::new(2));
            let thread = std::thread::spawn({
                let turns = turns.clone();
                move || {
                    turns.wait();
                    // SAFETY: inside the mapping, which outlives the thread
                    // (the caller joins it before the map goes).
                    unsafe { (at as *mut u8).write_volatile(3) };
                    turns.wait();
                    thread()
                }
            });
            Writer { turns, thread }
        }

        /// Has the other thread write, and waits until it has.
        pub(crate) fn write(&self) {
            self.turns.wait();
            self.turns.wait();
        }

        /// Waits for the other thread to end (which may fault in this one)
        /// and gives its [`thread`] number.
        pub(crate) fn join(self) -> u64 {
            self.thread.join().unwrap()
        }
    }

    /// Runs of pages: (offset, length).
    type Runs = Vec<(usize, usize)>;

    /// The written runs, and the zero page's.
    fn runs(map: &Map, max: usize) -> Option<(Runs, Runs)> {
        let (mut written, mut zero) = (Vec::new(), Vec::new());
        // SAFETY: the whole of a live mapping.
        let total = unsafe {
            scan(map.0, map.1, max, |at, n, z| {
                if z { &mut zero } else { &mut written }.push((at, n))
            })
        }?;
        assert_eq!(total, written.iter().map(|r| r.1).sum::<usize>());
        Some((written, zero))
    }

    #[test]
    fn reports_written_pages_only_and_continues_past_a_full_vector() {
        if !available() {
            eprintln!("PAGEMAP_SCAN is not available here: skipped");
            return;
        }
        let page = page_size();
        let map = Map::new(200);
        assert_eq!(
            runs(&map, usize::MAX),
            Some((vec![], vec![])),
            "nothing yet"
        );
        // Reading maps the zero page: not written, but told.
        // SAFETY: inside the mapping.
        let _ = unsafe { std::ptr::read_volatile(map.0.add(5 * page)) };
        assert_eq!(
            runs(&map, usize::MAX),
            Some((vec![], vec![(5 * page, page)]))
        );
        // Every other page of the first 160: 80 runs, more than one call
        // reports.
        for i in (0..160).step_by(2) {
            // SAFETY: inside the mapping.
            unsafe { map.0.add(i * page + 7).write_volatile(1) };
        }
        // SAFETY: inside the mapping.
        unsafe { map.0.add(199 * page).write_volatile(1) };
        let mut expect: Vec<(usize, usize)> =
            (0..160).step_by(2).map(|i| (i * page, page)).collect();
        expect.push((199 * page, page));
        let (written, zero) = runs(&map, usize::MAX).unwrap();
        assert_eq!(written, expect);
        assert_eq!(zero, [(5 * page, page)], "page 5 was only read");
        // A limit: one page short of what was written fails, all succeeds.
        assert_eq!(runs(&map, 80 * page), None);
        assert!(runs(&map, 81 * page).is_some());
    }

    /// The kernel behaviour [`Faults`] stands on: a page becomes private
    /// only with a fault of the thread that writes it, a write to a page
    /// already private makes none, and another thread's write is not in
    /// this thread's count (why a rewind checks the thread).
    #[test]
    fn a_page_becomes_private_only_with_a_fault_of_the_thread_that_writes_it() {
        if !available() || faults().is_none() {
            eprintln!("PAGEMAP_SCAN or fault counts are not available here: skipped");
            return;
        }
        let map = Map::new(4);
        let page = page_size();
        let count = || faults().unwrap();
        let before = count();
        // SAFETY: inside the mapping.
        unsafe { map.0.write_volatile(1) };
        let after = count();
        assert!(after.count > before.count, "a first write faults");
        for i in 0..100 {
            // SAFETY: inside the mapping.
            unsafe { map.0.add(i).write_volatile(2) };
        }
        assert_eq!(count(), after, "a private page is written without a fault");
        let other = Writer::new(&map, 2);
        let after = count();
        other.write();
        assert_eq!(count(), after, "another thread's fault is not this one's");
        assert_ne!(other.join(), thread());
        let (written, _) = runs(&map, usize::MAX).unwrap();
        assert_eq!(
            written,
            [(0, page), (2 * page, page)],
            "yet it made a page private"
        );
    }
}
