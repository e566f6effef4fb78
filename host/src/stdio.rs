//! Where guests' standard output and error go: [`Stdio`], and the line sink
//! shared by processes and pool guests.
//!
//! A sink writes whole lines, so that the lines of guests running side by
//! side never mix. Its buffer is bounded: a line longer than
//! [`MAX_LINE`] is written in pieces of that size, each ended with a
//! newline when other guests may write too, so that the host's memory stays
//! bounded and no other guest's line lands inside it. A guest's unfinished
//! last line is written when it ends (with a newline added when other guests
//! write too). Only the newly written bytes are scanned, so a long line
//! written a byte at a time costs linear time.

use std::io::Write;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

/// The longest piece of a line a sink holds before writing it out.
pub(crate) const MAX_LINE: usize = 64 << 10;

/// Where a process's standard output and error go.
///
/// ```
/// assert_eq!(wasmpool::Stdio::default(), wasmpool::Stdio::Lines);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Stdio {
    /// The host's stdout and stderr, a whole line at a time, so that lines
    /// from processes running side by side never mix.
    #[default]
    Lines,
    /// Like [`Lines`](Stdio::Lines), each line prefixed with the process's
    /// index and a tab (`3\tline`), as GNU parallel's `--tag` does, so that
    /// the lines of copies running side by side can be told apart and
    /// sorted (`sort -s -n -k1,1`).
    Tagged,
    /// Discarded.
    Null,
}

/// The host stream a sink writes to.
#[derive(Debug, Clone)]
pub(crate) enum Target {
    Stdout,
    Stderr,
    Null,
    /// Kept in memory, for tests.
    #[cfg(test)]
    Capture(Arc<Mutex<Vec<u8>>>),
}

/// How much of its last output a sink keeps, to find a panic message in.
const TAIL: usize = 4096;

#[derive(Debug)]
struct Inner {
    buf: Mutex<Vec<u8>>,
    /// The last [`TAIL`] bytes written, when kept.
    tail: Option<Mutex<Vec<u8>>>,
    target: Target,
    /// Other guests may write to the same stream, or lines are tagged:
    /// pieces and the last line are ended with a newline.
    shared: bool,
    /// Written before every line (and every piece of a long one); empty
    /// for none.
    prefix: Vec<u8>,
}

/// A guest output stream that writes whole lines (see the module docs).
#[derive(Debug, Clone)]
pub(crate) struct LineSink {
    inner: Arc<Inner>,
}

impl LineSink {
    /// A sink to `target`; `shared` when other guests write to it too.
    pub(crate) fn new(target: Target, shared: bool) -> Self {
        LineSink {
            inner: Arc::new(Inner {
                buf: Mutex::new(Vec::new()),
                tail: None,
                target,
                shared,
                prefix: Vec::new(),
            }),
        }
    }

    /// A sink to `target` that also keeps its last few KiB, so that a
    /// guest's panic message can be found in it ([`panic_message`](Self::panic_message)).
    pub(crate) fn keeping_tail(target: Target, shared: bool) -> Self {
        LineSink {
            inner: Arc::new(Inner {
                buf: Mutex::new(Vec::new()),
                tail: Some(Mutex::new(Vec::new())),
                target,
                shared,
                prefix: Vec::new(),
            }),
        }
    }

    /// This sink with `prefix` written before each line (see
    /// [`Stdio::Tagged`]); each line, and each piece of a long one, then
    /// ends with a newline. Only before the sink is cloned.
    pub(crate) fn with_prefix(mut self, prefix: String) -> Self {
        let inner = Arc::get_mut(&mut self.inner).expect("a sink is tagged before it is shared");
        inner.prefix = prefix.into_bytes();
        inner.shared = true;
        self
    }

    /// The message of the last Rust panic the guest printed (`thread 'main'
    /// panicked at src/main.rs:3:5:` and the lines after it), if any.
    pub(crate) fn panic_message(&self) -> Option<String> {
        let tail = self
            .inner
            .tail
            .as_ref()?
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let text = String::from_utf8_lossy(&tail);
        let (_, after) = text.rsplit_once("panicked at ")?;
        let (_location, rest) = after.split_once(":\n")?;
        let message: Vec<&str> = rest
            .lines()
            .take_while(|l| !l.starts_with("note: ") && !l.starts_with("stack backtrace:"))
            .collect();
        let message = message.join("\n");
        (!message.trim().is_empty()).then(|| message.trim_end().to_string())
    }

    fn write(&self, data: &[u8]) {
        self.inner.write(data);
    }

    /// Writes what is left of an unfinished last line.
    pub(crate) fn finish(&self) {
        self.inner.finish();
    }
}

impl Inner {
    fn emit(&self, bytes: &[u8], end_line: bool) {
        // A failed write to the host's own stdout (a closed pipe) cannot be
        // reported to anyone useful; the guest carries on.
        let write = |out: &mut dyn Write| {
            if self.prefix.is_empty() {
                out.write_all(bytes)?;
            } else {
                for line in bytes.split_inclusive(|&b| b == b'\n') {
                    out.write_all(&self.prefix)?;
                    out.write_all(line)?;
                }
            }
            if end_line {
                out.write_all(b"\n")?;
            }
            out.flush()
        };
        let _ = match &self.target {
            Target::Stdout => write(&mut std::io::stdout().lock()),
            Target::Stderr => write(&mut std::io::stderr().lock()),
            Target::Null => Ok(()),
            #[cfg(test)]
            Target::Capture(out) => write(&mut *out.lock().unwrap()),
        };
    }

    fn write(&self, data: &[u8]) {
        if let Some(tail) = &self.tail {
            let mut tail = tail.lock().unwrap_or_else(|e| e.into_inner());
            let keep = &data[data.len().saturating_sub(TAIL)..];
            let drop = (tail.len() + keep.len()).saturating_sub(TAIL);
            tail.drain(..drop);
            tail.extend_from_slice(keep);
        }
        if matches!(self.target, Target::Null) {
            return;
        }
        let mut buf = self.buf.lock().unwrap_or_else(|e| e.into_inner());
        let mut data = data;
        // Whole lines at the end of `data` go out with what was buffered.
        if let Some(last) = data.iter().rposition(|&b| b == b'\n') {
            if buf.is_empty() {
                self.emit(&data[..=last], false);
            } else {
                buf.extend_from_slice(&data[..=last]);
                self.emit(&buf, false);
                buf.clear();
            }
            data = &data[last + 1..];
        }
        // An unfinished line: held, but never more than MAX_LINE of it.
        while buf.len() + data.len() > MAX_LINE {
            let take = MAX_LINE - buf.len();
            buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            self.emit(&buf, self.shared);
            buf.clear();
        }
        buf.extend_from_slice(data);
    }

    fn finish(&self) {
        let mut buf = self.buf.lock().unwrap_or_else(|e| e.into_inner());
        if !buf.is_empty() {
            self.emit(&buf, self.shared);
            buf.clear();
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.finish();
    }
}

impl IsTerminal for LineSink {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LineSink {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl tokio::io::AsyncWrite for LineSink {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.write(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod test {
    use super::*;

    fn capture(shared: bool) -> (LineSink, Arc<Mutex<Vec<u8>>>) {
        let out = Arc::default();
        (
            LineSink::new(Target::Capture(Arc::clone(&out)), shared),
            out,
        )
    }

    #[test]
    fn whole_lines_go_out_and_the_rest_waits() {
        let (sink, out) = capture(true);
        sink.write(b"one\ntw");
        assert_eq!(*out.lock().unwrap(), b"one\n");
        sink.write(b"o\nthree");
        assert_eq!(*out.lock().unwrap(), b"one\ntwo\n");
        sink.finish();
        assert_eq!(*out.lock().unwrap(), b"one\ntwo\nthree\n", "ended at exit");
    }

    #[test]
    fn a_long_line_a_byte_at_a_time_stays_bounded_and_is_cut_in_lines() {
        let (sink, out) = capture(true);
        for _ in 0..(2 * MAX_LINE + 10) {
            sink.write(b"x");
            assert!(sink.inner.buf.lock().unwrap().len() <= MAX_LINE);
        }
        sink.finish();
        let out = out.lock().unwrap();
        let lines: Vec<usize> = out.split(|&b| b == b'\n').map(<[u8]>::len).collect();
        assert_eq!(lines, [MAX_LINE, MAX_LINE, 10, 0]);
    }

    #[test]
    fn the_last_panic_message_is_found_in_the_tail() {
        let sink = LineSink::keeping_tail(Target::Null, false);
        assert_eq!(sink.panic_message(), None);
        sink.write(&vec![b'-'; 10_000]);
        sink.write(b"\nthread 'main' panicked at src/main.rs:3:5:\nthe answer\nwas not 42\n");
        sink.write(b"note: run with `RUST_BACKTRACE=1` to display a backtrace\n");
        assert_eq!(
            sink.panic_message().as_deref(),
            Some("the answer\nwas not 42")
        );
        assert!(sink.inner.tail.as_ref().unwrap().lock().unwrap().len() <= TAIL);
    }

    #[test]
    fn a_single_guest_gets_its_bytes_unchanged() {
        let (sink, out) = capture(false);
        sink.write(&vec![b'x'; MAX_LINE + 5]);
        sink.write(b"no newline at the end");
        sink.finish();
        let out = out.lock().unwrap();
        assert_eq!(out.len(), MAX_LINE + 5 + 21);
        assert!(!out.contains(&b'\n'));
    }

    #[test]
    fn tagged_lines_each_get_the_prefix_and_a_last_newline() {
        let (sink, out) = capture(false);
        let sink = sink.with_prefix("7\t".into());
        sink.write(b"one\ntwo\nthr");
        sink.write(b"ee\n\nlast");
        sink.finish();
        assert_eq!(
            *out.lock().unwrap(),
            b"7\tone\n7\ttwo\n7\tthree\n7\t\n7\tlast\n"
        );
    }
}
