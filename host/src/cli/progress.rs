//! What a long run shows on stderr: a progress bar while it runs, and one
//! summary line when it ends.
//!
//! [`Progress::start`] draws the bar only when stderr is a terminal (and
//! never with `--quiet`); [`Progress::finish`] clears it and prints the
//! summary, `wasmpool: 10000 tasks, 3 failed, in 1.23 s`, on a terminal or
//! not, unless `--quiet`.
//!
//! The bar costs the hot path nothing: the thread that consumes results
//! stores two counters ([`Progress::update`], relaxed atomics), and a ticker
//! thread copies them into the bar ten times a second. Whatever else goes to
//! stderr while the bar is up (log lines, `--values` failures) and `map`'s
//! output to a terminal are written around the bar ([`suspend`],
//! [`Progress::around_bar`]), so no line is drawn over.

use std::io::{self, IsTerminal, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

/// How often the ticker copies the counters into the bar.
const TICK: Duration = Duration::from_millis(100);

/// When the command started: the summary's time is the whole run's,
/// compilation included, as `time` would measure it.
static STARTED: OnceLock<Instant> = OnceLock::new();

/// Starts the clock of the summary line (once, as the command starts).
pub(crate) fn start_clock() {
    STARTED.get_or_init(Instant::now);
}

/// The bar being shown, if any: what [`suspend`] writes around.
static SHOWN: Mutex<Option<ProgressBar>> = Mutex::new(None);

thread_local! {
    /// Whether this thread is inside [`suspend`]: the bar is already off the
    /// screen, and taking it off again would wait on its own lock.
    static SUSPENDED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f`, which writes to stderr (or to the terminal stderr is on), with
/// the progress bar taken off the screen, and draws it again after. `f` may
/// itself log or call `suspend`.
pub(crate) fn suspend<R>(f: impl FnOnce() -> R) -> R {
    if SUSPENDED.get() {
        return f();
    }
    let bar = SHOWN.lock().unwrap_or_else(|e| e.into_inner()).clone();
    match bar {
        Some(bar) => bar.suspend(|| {
            struct Reset;
            impl Drop for Reset {
                fn drop(&mut self) {
                    SUSPENDED.set(false);
                }
            }
            SUSPENDED.set(true);
            let _reset = Reset;
            f()
        }),
        None => f(),
    }
}

/// stderr, written around the progress bar: the log's writer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stderr;

impl Write for Stderr {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        suspend(|| io::stderr().write(buf))
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        suspend(|| io::stderr().write_all(buf))
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}

/// A run's progress: the bar, the clock, and what the summary counts.
#[derive(Debug)]
pub(crate) struct Progress {
    shown: Option<Shown>,
    start: Instant,
    quiet: bool,
    unit: Unit,
}

/// What a run counts, in the singular and the plural.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Unit(&'static str, &'static str);

/// `map`'s unit.
pub(crate) const TASKS: Unit = Unit("task", "tasks");
/// `run -n`'s unit.
pub(crate) const COPIES: Unit = Unit("copy", "copies");

impl Unit {
    fn of(self, n: u64) -> &'static str {
        if n == 1 { self.0 } else { self.1 }
    }
}

/// The tasks (or copies) of a run, as the summary line gives them.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Tally {
    /// Finished, failed or not (replayed ones included).
    pub(crate) done: u64,
    /// Failed.
    pub(crate) failed: u64,
    /// Replayed from a journal: `Some` only when a journal is used.
    pub(crate) replayed: Option<u64>,
}

#[derive(Debug)]
struct Shown {
    bar: ProgressBar,
    counts: Arc<Counts>,
    stop: Option<mpsc::Sender<()>>,
    ticker: Option<JoinHandle<()>>,
}

#[derive(Debug, Default)]
struct Counts {
    done: AtomicU64,
    failed: AtomicU64,
}

impl Progress {
    /// Starts the clock, and the bar if `bar` is wanted, `--quiet` is not
    /// given and stderr is a terminal. `unit` names what is counted.
    pub(crate) fn start(quiet: bool, unit: Unit, bar: bool) -> Self {
        let shown = (bar && !quiet && io::stderr().is_terminal()).then(|| Shown::new(unit));
        Progress {
            shown,
            start: *STARTED.get_or_init(Instant::now),
            quiet,
            unit,
        }
    }

    /// Whether the bar is drawn.
    pub(crate) fn is_shown(&self) -> bool {
        self.shown.is_some()
    }

    /// The number of tasks, once known: the bar shows `done/total` and an
    /// ETA from then on.
    pub(crate) fn set_total(&self, total: u64) {
        if let Some(shown) = &self.shown {
            set_total(&shown.bar, self.unit, total);
        }
    }

    /// Counts the lines of the file at `path` (one task each: the
    /// non-blank ones, or with `blank` every one) on a thread of its own,
    /// and sets the total when done, so that a large input delays nothing.
    /// Only for a regular file, and only while the bar is drawn; a file that
    /// cannot be read leaves the total unknown.
    pub(crate) fn count_lines_of(&self, path: &Path, blank: bool) {
        let Some(shown) = &self.shown else { return };
        let Ok(file) = std::fs::File::open(path) else {
            return;
        };
        if !file.metadata().is_ok_and(|m| m.is_file()) {
            return;
        }
        let (bar, unit) = (shown.bar.clone(), self.unit);
        let _ = std::thread::Builder::new()
            .name("wasmpool-count-lines".into())
            .spawn(move || {
                if let Ok(n) = count_lines(file, blank) {
                    set_total(&bar, unit, n);
                }
            });
    }

    /// Records how far the run is: cheap enough for every result (two
    /// relaxed stores, and nothing at all without a bar).
    #[inline]
    pub(crate) fn update(&self, done: u64, failed: u64) {
        if let Some(shown) = &self.shown {
            shown.counts.done.store(done, Ordering::Relaxed);
            shown.counts.failed.store(failed, Ordering::Relaxed);
        }
    }

    /// `out` (stdout) written around the bar when stdout is a terminal, so
    /// that output lines and the bar do not draw over each other; `out`
    /// itself otherwise. Put a buffer in front of it: each write of the
    /// wrapper takes the bar off and puts it back.
    pub(crate) fn around_bar<W: Write>(&self, out: W) -> AroundBar<W> {
        let bar = self
            .shown
            .as_ref()
            .filter(|_| io::stdout().is_terminal())
            .map(|s| s.bar.clone());
        AroundBar { out, bar }
    }

    /// Clears the bar and prints the summary line (unless `--quiet`):
    /// `wasmpool: 10 tasks, 1 failed, 2 from the journal, in 0.12 s`.
    pub(crate) fn finish(mut self, tally: Tally) {
        self.shown.take();
        if self.quiet {
            return;
        }
        eprintln!(
            "wasmpool: {}",
            summary(tally, self.unit, self.start.elapsed())
        );
    }
}

impl Shown {
    fn new(unit: Unit) -> Self {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(10));
        bar.set_style(style(unit, false));
        let counts = Arc::new(Counts::default());
        let (stop, stopped) = mpsc::channel();
        let ticker = std::thread::Builder::new()
            .name("wasmpool-progress".into())
            .spawn({
                let (bar, counts) = (bar.clone(), counts.clone());
                move || tick(&bar, &counts, &stopped)
            })
            .ok();
        *SHOWN.lock().unwrap_or_else(|e| e.into_inner()) = Some(bar.clone());
        Shown {
            bar,
            counts,
            stop: Some(stop),
            ticker,
        }
    }
}

impl Drop for Shown {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(ticker) = self.ticker.take() {
            let _ = ticker.join();
        }
        *SHOWN.lock().unwrap_or_else(|e| e.into_inner()) = None;
        self.bar.finish_and_clear();
    }
}

/// The ticker: copies the counters into the bar until told to stop.
fn tick(bar: &ProgressBar, counts: &Counts, stop: &mpsc::Receiver<()>) {
    let mut failed_shown = 0;
    loop {
        let failed = counts.failed.load(Ordering::Relaxed);
        if failed != failed_shown {
            bar.set_message(format!("  {failed} failed"));
            failed_shown = failed;
        }
        bar.set_position(counts.done.load(Ordering::Relaxed));
        bar.tick();
        match stop.recv_timeout(TICK) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

fn set_total(bar: &ProgressBar, unit: Unit, total: u64) {
    bar.set_length(total);
    bar.set_style(style(unit, true));
}

/// `⠙ [#####>-----] 4,521/10,000 tasks  812/s  00:00:05 ETA 00:00:07  3 failed`;
/// without a total, no bar and no ETA.
fn style(unit: Unit, total: bool) -> ProgressStyle {
    let template = if total {
        "{spinner} [{bar:30}] {human_pos}/{human_len} {unit}  {rate}  {elapsed_precise} ETA {eta}{msg}"
    } else {
        "{spinner} {human_pos} {unit}  {rate}  {elapsed_precise}{msg}"
    };
    ProgressStyle::with_template(template)
        .expect("the template is valid")
        .progress_chars("#>-")
        .with_key(
            "unit",
            move |s: &ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = w.write_str(unit.of(s.len().unwrap_or(s.pos())));
            },
        )
        .with_key("rate", |s: &ProgressState, w: &mut dyn std::fmt::Write| {
            let rate = s.per_sec();
            let _ = if rate < 10.0 {
                write!(w, "{rate:.1}/s")
            } else {
                write!(w, "{rate:.0}/s")
            };
        })
        .with_key("eta", |s: &ProgressState, w: &mut dyn std::fmt::Write| {
            // No estimate before the first result.
            let _ = if s.pos() == 0 {
                w.write_str("--:--:--")
            } else {
                let secs = s.eta().as_secs();
                write!(
                    w,
                    "{:02}:{:02}:{:02}",
                    secs / 3600,
                    secs / 60 % 60,
                    secs % 60
                )
            };
        })
}

/// The lines of `file` as `map` counts its inputs: the non-blank ones, or
/// with `blank` (`--raw`) every one.
fn count_lines(mut file: impl io::Read, blank_counts: bool) -> io::Result<u64> {
    let mut buf = vec![0u8; 1 << 16];
    let (mut lines, mut blank, mut empty) = (0u64, true, true);
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        for &b in &buf[..n] {
            if b == b'\n' {
                lines += u64::from(!blank || blank_counts);
                blank = true;
                empty = true;
            } else {
                empty = false;
                blank &= b.is_ascii_whitespace();
            }
        }
    }
    // A last line without its newline.
    Ok(lines + u64::from(!blank || (blank_counts && !empty)))
}

/// `10 tasks, 1 failed, 2 from the journal, in 0.12 s`.
fn summary(tally: Tally, unit: Unit, elapsed: Duration) -> String {
    let mut line = format!(
        "{} {}, {} failed",
        tally.done,
        unit.of(tally.done),
        tally.failed
    );
    if let Some(replayed) = tally.replayed {
        line.push_str(&format!(", {replayed} from the journal"));
    }
    line.push_str(&format!(", in {}", human_duration(elapsed)));
    line
}

/// `0.12 s`, `59.99 s`, `2m 05s`, `1h 02m 05s`.
fn human_duration(d: Duration) -> String {
    let secs = d.as_secs();
    if secs < 60 {
        return format!("{:.2} s", d.as_secs_f64());
    }
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    if h == 0 {
        format!("{m}m {s:02}s")
    } else {
        format!("{h}h {m:02}m {s:02}s")
    }
}

/// A writer whose writes take the progress bar off the terminal and put it
/// back (see [`Progress::around_bar`]).
#[derive(Debug)]
pub(crate) struct AroundBar<W> {
    out: W,
    bar: Option<ProgressBar>,
}

impl<W: Write> Write for AroundBar<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let AroundBar { out, bar } = self;
        match bar {
            Some(bar) => bar.suspend(|| out.write(buf)),
            None => out.write(buf),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        let AroundBar { out, bar } = self;
        match bar {
            Some(bar) => bar.suspend(|| out.write_all(buf)),
            None => out.write_all(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn summary_names_tasks_failures_journal_and_time() {
        let tally = Tally {
            done: 10_000,
            failed: 3,
            replayed: None,
        };
        assert_eq!(
            summary(tally, TASKS, Duration::from_millis(1234)),
            "10000 tasks, 3 failed, in 1.23 s"
        );
        let tally = Tally {
            replayed: Some(2),
            ..tally
        };
        assert_eq!(
            summary(tally, COPIES, Duration::from_secs(125)),
            "10000 copies, 3 failed, 2 from the journal, in 2m 05s"
        );
        let one = Tally {
            done: 1,
            failed: 0,
            replayed: None,
        };
        assert_eq!(
            summary(one, COPIES, Duration::from_millis(50)),
            "1 copy, 0 failed, in 0.05 s"
        );
        assert_eq!(human_duration(Duration::from_secs(3725)), "1h 02m 05s");
        assert_eq!(human_duration(Duration::from_millis(59_990)), "59.99 s");
    }

    #[test]
    fn lines_are_counted_as_map_reads_them() {
        let count = |text: &str| count_lines(text.as_bytes(), false).unwrap();
        assert_eq!(count(""), 0);
        assert_eq!(count("1\n2\n3\n"), 3);
        assert_eq!(count("1\n2\n3"), 3, "a last line without a newline");
        assert_eq!(count("1\n\n  \r\n\t\n2\r\n"), 2, "blank lines are skipped");
        assert_eq!(count(" \n"), 0);
        // --raw: every line is a task, blank or not.
        let raw = |text: &str| count_lines(text.as_bytes(), true).unwrap();
        assert_eq!(raw(""), 0);
        assert_eq!(raw("a\n\n \nb"), 4);
        assert_eq!(raw("a\n\n"), 2);
        assert_eq!(raw(" "), 1);
    }

    #[test]
    fn suspend_nests() {
        let bar = ProgressBar::with_draw_target(Some(3), ProgressDrawTarget::hidden());
        *SHOWN.lock().unwrap() = Some(bar);
        let got = suspend(|| suspend(|| suspend(|| 42)));
        *SHOWN.lock().unwrap() = None;
        assert_eq!(got, 42);
        assert!(!SUSPENDED.get());
    }

    #[test]
    fn no_bar_when_quiet_or_not_wanted() {
        assert!(!Progress::start(true, TASKS, true).is_shown());
        assert!(!Progress::start(false, TASKS, false).is_shown());
    }
}
