//! Which pages of a rewound instance's memory a rewind must put back
//! (`rewind.rs`): the private pages, found with one `PAGEMAP_SCAN`
//! (`pagemap.rs`, 2-3 µs here), or, when the instance's thread has taken no
//! page fault since the last scan, the very pages that scan found, for the
//! cost of one `getrusage` (0.4 µs).
//!
//! Why a fault count is enough: a page of a memory becomes private only
//! through a page fault (the copy made when a page of the image or the
//! zero page is first written, or a page first touched), and the kernel
//! counts each completed fault for the thread that took it
//! ([`pagemap::Faults`]). A rewound instance runs on one thread, whose
//! count then moves whenever one of its tasks makes a page private; a
//! write to a page that is private already makes no fault, but such a page
//! is one the scan found. Two other ways a page becomes private are shut
//! out: `khugepaged` collapsing small pages into a huge one from its own
//! thread (the memory is marked never to get huge pages,
//! [`pagemap::no_huge_pages`]), and another thread touching the memory
//! (a task that runs on another thread than the last scan's forgets what
//! it found, [`Written::entered`]). What is left is another thread of the
//! process populating the memory (`mlockall`, `MADV_POPULATE_WRITE`),
//! which wasmpool never does; one rewind in [`CHECK_EVERY`] scans anyway
//! and checks, and a page found outside the known ones turns the shortcut
//! off for the whole process. The check can only compare when the count
//! held still since the last scan; after a fault the scan is needed
//! anyway, and it puts back every private page, announced or not.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::pagemap;

/// One rewind in this many scans even though the count held still, and
/// checks that it found no private page outside the known ones: a scan,
/// 2-3 µs, every 64 tasks.
pub(crate) const CHECK_EVERY: u32 = 64;

/// Set when a check found a page the fault count did not announce: every
/// rewind of the process scans from then on.
pub(crate) static UNTRUSTED: AtomicBool = AtomicBool::new(false);

/// The pages of one memory a rewind must put back, kept between rewinds.
#[derive(Default)]
pub(crate) struct Written {
    /// Whether the kernel agreed never to back the memory with huge pages:
    /// the [`Known`] pages are only trusted then.
    small_pages: bool,
    /// The private pages the last scan found, if they may be put back
    /// without scanning again.
    known: Option<Known>,
}

/// The private pages of a memory as of a moment, and the faults its
/// thread had taken then.
///
/// Invariant: when `faults` was read, the memory's private pages were at
/// most `runs` (the scan after it found these, or fewer were there). A
/// page becomes private only through a fault of the thread that touches
/// it, and only this thread touches the memory (`Written::entered` forgets
/// a `Known` when a task runs on another): if the thread's faults are
/// still `faults` at the next rewind, `runs` holds every page any task
/// wrote since.
struct Known {
    faults: pagemap::Faults,
    runs: Vec<(usize, usize)>,
    /// Rewinds made with `runs` since the scan (fewer than
    /// `CHECK_EVERY - 1`).
    trusted: u32,
}

/// How [`Written::find`] found the pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Found {
    /// With a scan.
    Scanned,
    /// Without: the pages the last scan found.
    Known,
}

impl Written {
    /// For a memory at `base..base + len`, which it marks never to get huge
    /// pages.
    ///
    /// # Safety
    ///
    /// `base` must be page-aligned and `base..base + len` a range of this
    /// process's address space.
    pub(crate) unsafe fn new(base: *const u8, len: usize) -> Written {
        Written {
            // SAFETY: the caller's promise; only a flag of the mappings
            // changes.
            small_pages: unsafe { pagemap::no_huge_pages(base, len) },
            known: None,
        }
    }

    /// Notes that wasm is about to run in the memory's instance on this
    /// thread: what the last scan found is forgotten if it was made on
    /// another thread, whose fault count says nothing of this one's writes.
    #[inline]
    pub(crate) fn entered(&mut self) {
        if self
            .known
            .as_ref()
            .is_some_and(|k| k.faults.thread() != pagemap::thread())
        {
            self.known = None;
        }
    }

    /// Calls `each(offset, len, zero)` for every run of pages of
    /// `base..base + len` that may differ from what was there at the last
    /// call (see `pagemap::scan`: `zero` for runs mapped to the zero page),
    /// in order; `None` if the scan failed or found more than `max_bytes`
    /// written (`each` may have seen some runs). `untrusted`: [`UNTRUSTED`]
    /// (a parameter for tests).
    ///
    /// # Safety
    ///
    /// As `pagemap::scan`: `base` page-aligned, `base..base + len` mapped
    /// for the call, and the same memory at every call. `each` may write
    /// the pages it is given.
    pub(crate) unsafe fn find(
        &mut self,
        base: *const u8,
        len: usize,
        max_bytes: usize,
        untrusted: &AtomicBool,
        mut each: impl FnMut(usize, usize, bool),
    ) -> Option<Found> {
        // Read before `each` writes the pages: a fault while it does (a
        // page swapped out, or a zero page given data) makes the next call
        // scan again.
        let faults =
            pagemap::faults().filter(|_| self.small_pages && !untrusted.load(Ordering::Relaxed));
        if let (Some(known), Some(faults)) = (&mut self.known, faults)
            && known.faults == faults
            && known.trusted + 1 < CHECK_EVERY
        {
            known.trusted += 1;
            for &(at, len) in &known.runs {
                each(at, len, false);
            }
            return Some(Found::Known);
        }
        // What the scan must stay within, if this thread took no fault.
        let within = self
            .known
            .take()
            .filter(|known| Some(known.faults) == faults)
            .map(|known| known.runs);
        let mut runs = Vec::new();
        let each = |at: usize, len: usize, zero: bool| {
            if !zero {
                runs.push((at, len));
            }
            each(at, len, zero);
        };
        // SAFETY: the caller's promise, passed on.
        unsafe { pagemap::scan(base, len, max_bytes, each) }?;
        if let Some(within) = within
            && !runs_within(&runs, &within)
        {
            untrusted.store(true, Ordering::Relaxed);
            tracing::warn!(
                "a page of a rewound instance became private without a page fault of its \
                 thread (did another thread lock or populate it?): every rewind scans from now on"
            );
        }
        self.known = faults.map(|faults| Known {
            faults,
            runs,
            trusted: 0,
        });
        Some(Found::Scanned)
    }
}

/// Whether every page of `runs` is a page of `within` (both sorted runs of
/// `(offset, length)`, as a scan reports them). A run may span several
/// adjacent runs of `within`.
fn runs_within(runs: &[(usize, usize)], within: &[(usize, usize)]) -> bool {
    let mut known = within.iter().copied().peekable();
    runs.iter().all(|&(mut at, len)| {
        let end = at + len;
        while at < end {
            while known.next_if(|&(o, n)| o + n <= at).is_some() {}
            match known.peek() {
                Some(&(o, n)) if o <= at => at = o + n,
                _ => return false,
            }
        }
        true
    })
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::pagemap::test::{Map, Writer};

    type Runs = Vec<(usize, usize)>;

    #[test]
    fn runs_are_within_known_runs_only_if_every_page_is() {
        let known = [(0, 8), (8, 4), (20, 4)];
        assert!(runs_within(&[], &known));
        assert!(runs_within(&[(0, 12)], &known));
        assert!(runs_within(&[(4, 4), (8, 2), (21, 3)], &known));
        assert!(!runs_within(&[(10, 4)], &known));
        assert!(!runs_within(&[(16, 8)], &known));
        assert!(!runs_within(&[(24, 1)], &known));
        assert!(!runs_within(&[(0, 1)], &[]));
    }

    /// Scans until this thread writes no new page, then gives the pages
    /// found without one; a page another thread made private is missed
    /// (why a rewind checks its thread) until the check, which then turns
    /// the shortcut off.
    #[test]
    fn known_pages_stand_in_for_a_scan_until_a_fault_and_are_checked() {
        if !pagemap::available() || pagemap::faults().is_none() {
            eprintln!("PAGEMAP_SCAN or fault counts are not available here: skipped");
            return;
        }
        let map = Map::new(8);
        let page = pagemap::page_size();
        let untrusted = AtomicBool::new(false);
        let other = Writer::new(&map, 6);
        // SAFETY: the whole of a live mapping.
        let mut written = unsafe { Written::new(map.0, map.1) };
        let mut runs = Vec::with_capacity(8);
        let mut find = |written: &mut Written| {
            runs.clear();
            // SAFETY: the whole of a live mapping, every time.
            let found = unsafe {
                written.find(map.0, map.1, usize::MAX, &untrusted, |at, n, zero| {
                    if !zero {
                        runs.push((at, n))
                    }
                })
            };
            (found.unwrap(), runs.clone())
        };
        let write = |i: usize| {
            // SAFETY: inside the mapping.
            unsafe { map.0.add(i * page + 8).write_volatile(1) }
        };
        // Scans until a call finds the count unmoved since the last (the
        // first calls' own allocations may fault), then gives what the last
        // scan found.
        let settle = |find: &mut dyn FnMut(&mut Written) -> (Found, Runs),
                      written: &mut Written| {
            for _ in 0..8 {
                if let (Found::Known, runs) = find(written) {
                    return runs;
                }
            }
            panic!("still scanning after 8 calls without a new page");
        };
        write(1);
        assert_eq!(find(&mut written), (Found::Scanned, vec![(page, page)]));
        assert_eq!(settle(&mut find, &mut written), [(page, page)]);
        write(1);
        assert_eq!(
            find(&mut written),
            (Found::Known, vec![(page, page)]),
            "a page already private: no fault, no scan"
        );
        write(4);
        let both = vec![(page, page), (4 * page, page)];
        assert_eq!(
            find(&mut written),
            (Found::Scanned, both.clone()),
            "a new page: a fault, so a scan"
        );
        assert_eq!(settle(&mut find, &mut written), both);
        other.write();
        let mut known = 0;
        let (found, runs) = loop {
            match find(&mut written) {
                (Found::Known, runs) => {
                    assert_eq!(runs, both, "page 6 missed until the check");
                    known += 1;
                }
                scanned => break scanned,
            }
        };
        assert!(known < CHECK_EVERY, "{known}");
        assert_eq!(
            (found, runs.last()),
            (Found::Scanned, Some(&(6 * page, page)))
        );
        assert!(untrusted.load(Ordering::Relaxed), "the check caught page 6");
        assert_eq!(
            find(&mut written).0,
            Found::Scanned,
            "and scans from then on"
        );
        other.join();
    }
}
