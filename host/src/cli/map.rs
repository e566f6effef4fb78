//! `wasmpool map MODULE --task NAME`: JSON lines in, JSON lines out, in
//! input order, each line written as soon as every earlier one is.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::process::ExitCode;
use std::rc::Rc;
use std::time::Instant;

use anyhow::Context;
use wasmpool::{Output, Task, TaskError, TryNext};

use super::args::{Common, MapArgs};
use super::journal::{self, Entry, InputHash, Journal};

pub(crate) fn run(common: &Common, args: MapArgs) -> anyhow::Result<ExitCode> {
    let mut builder = wasmpool::Pool::builder()
        .module_file(&args.module)
        .cache(common.cache());
    if let Some(n) = args.workers {
        builder = builder.workers(n as usize);
    }
    for q in &args.queues {
        builder = builder.queue_with_max_bytes(q.name.clone(), q.capacity, q.max_bytes);
    }
    if let Some(bytes) = args.shared_memory {
        builder = builder.shared_memory(bytes);
    }
    if let Some(n) = args.mode.concurrency {
        builder = builder.concurrency(n);
    }
    builder = args.pool.apply(builder.limits(args.limits.to_limits()));
    let pool = builder.build()?;
    let task = pool.task(&args.task)?;
    let journal = match &args.journal {
        None => None,
        Some(path) => {
            let module = std::fs::read(&args.module)
                .with_context(|| format!("{}: cannot read the module", args.module.display()))?;
            let journal = Journal::open(path, &module, &args.task)?;
            tracing::info!(
                "{}: {} results already recorded",
                path.display(),
                journal.len()
            );
            Some(journal)
        }
    };

    let (reader, input_name): (Box<dyn BufRead>, String) = match &args.input {
        None => (Box::new(io::stdin().lock()), "<stdin>".into()),
        Some(p) if p.as_os_str() == "-" => (Box::new(io::stdin().lock()), "<stdin>".into()),
        Some(path) => {
            let file = File::open(path)
                .with_context(|| format!("{}: cannot open the input", path.display()))?;
            (
                Box::new(BufReader::with_capacity(1 << 16, file)),
                path.display().to_string(),
            )
        }
    };
    // The order of every input, and where its result comes from. The input
    // iterator pushes; the output loop pops.
    let order: Rc<RefCell<VecDeque<(u64, Source)>>> = Rc::default();
    let plan = journal.as_ref().map(|j| j.plan(args.retry_failed));
    let read_error = Rc::new(RefCell::new(None));
    let payloads = Lines {
        reader,
        line: 0,
        index: 0,
        buf: Vec::new(),
        error: read_error.clone(),
        parse: {
            let (task, input_name, order) = (task.clone(), input_name.clone(), order.clone());
            move |index: u64, line: u64, text: &[u8], too_long: bool| {
                let source = match &plan {
                    None => Source::Pool(None),
                    Some(plan) => {
                        let input = journal::input_hash(text);
                        match plan.replay(index, input) {
                            Ok(true) => Source::Journal,
                            Ok(false) => Source::Pool(Some(input)),
                            Err(why) => Source::Refused(format!("{input_name}:{line}: {why}")),
                        }
                    }
                };
                let run = matches!(source, Source::Pool(_));
                order.borrow_mut().push_back((index, source));
                if !run {
                    return None;
                }
                if too_long {
                    return Some(Err(TaskError::new(
                        wasmpool::TaskErrorKind::Input,
                        format!(
                            "{input_name}:{line}: the line is longer than {MAX_INPUT_LINE} bytes, the most one input may be"
                        ),
                    )));
                }
                Some(task.parse_json(text).map_err(|e| {
                    TaskError::new(e.kind(), format!("{input_name}:{line}: {}", e.message()))
                }))
            }
        },
    };

    let start = Instant::now();
    let mut emit = Emitter {
        task: &task,
        out: BufWriter::with_capacity(1 << 16, io::stdout().lock()),
        journal,
        values: args.values,
        fail_fast: args.fail_fast,
        input_name: &input_name,
        line: Vec::with_capacity(256),
        total: 0,
        failed: 0,
        replayed: 0,
        stopped: false,
    };
    let mut stream = pool.imap_payloads(&task, payloads)?;
    if args.fail_fast {
        // Cancel at the first failure to arrive, wherever it is: tasks still
        // running or waiting (even blocked for good) end as `terminated`.
        stream = stream.fail_fast();
    }
    let pop = || order.borrow_mut().pop_front();
    loop {
        // Results recorded by an earlier run come out in their place.
        while !emit.stopped
            && order
                .borrow()
                .front()
                .is_some_and(|(_, s)| !matches!(s, Source::Pool(_)))
        {
            let (index, source) = pop().expect("checked above");
            emit.replay(index, source)?;
        }
        if emit.stopped {
            break;
        }
        let result = match stream.try_next() {
            TryNext::Ready(r) => Some(r),
            TryNext::Done => None,
            TryNext::Pending => {
                // Everything finished so far is written: let it out before waiting.
                emit.flush(false)?;
                stream.next()
            }
        };
        let Some(result) = result else {
            while let Some((index, source)) = pop() {
                debug_assert!(
                    !matches!(source, Source::Pool(_)),
                    "the pool ended before input {index}"
                );
                if emit.stopped {
                    break;
                }
                emit.replay(index, source)?;
            }
            break;
        };
        loop {
            match pop() {
                Some((index, Source::Pool(input))) if !emit.stopped => {
                    emit.emit(index, input, result)?;
                    break;
                }
                Some((index, source)) if !emit.stopped => emit.replay(index, source)?,
                _ => break,
            }
        }
    }
    drop(stream);
    emit.flush(true)?;
    if let Some(err) = read_error.borrow_mut().take() {
        return Err(anyhow::Error::new(err).context(format!("{input_name}: cannot read the input")));
    }
    if let Some(journal) = emit.journal.as_ref().filter(|_| !emit.stopped) {
        journal.check_covers(emit.total, &input_name)?;
    }
    let Emitter {
        total,
        failed,
        replayed,
        stopped,
        ..
    } = emit;
    tracing::info!(
        "{total} tasks ({replayed} from the journal) on {} workers in {:.3?} ({failed} failed)",
        pool.workers(),
        start.elapsed(),
    );
    if total == 0 {
        eprintln!("wasmpool: {input_name}: no input lines, so no tasks ran");
    }
    if stopped {
        eprintln!("wasmpool: stopped at the first failure (--fail-fast) after {total} tasks");
        return Ok(ExitCode::from(1));
    }
    if failed > 0 {
        eprintln!("wasmpool: {failed} of {total} tasks failed");
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

/// Where the result of one input comes from.
enum Source {
    /// The pool runs it; with a journal, the hash of its input line.
    Pool(Option<InputHash>),
    /// The journal holds it from an earlier run.
    Journal,
    /// The journal holds a result for another input line: the run stops.
    Refused(String),
}

/// Writes results in order: to stdout (JSON lines or bare values), and to
/// the journal.
struct Emitter<'a, W: Write> {
    task: &'a Task,
    out: W,
    journal: Option<Journal>,
    values: bool,
    fail_fast: bool,
    input_name: &'a str,
    line: Vec<u8>,
    total: u64,
    failed: u64,
    replayed: u64,
    stopped: bool,
}

impl<W: Write> Emitter<'_, W> {
    /// A result from the pool.
    fn emit(
        &mut self,
        index: u64,
        input: Option<InputHash>,
        result: Result<Output, TaskError>,
    ) -> anyhow::Result<()> {
        let input = || input.expect("inputs are hashed when there is a journal");
        self.line.clear();
        // The full JSON line is only needed for the default output and the
        // journal; `--values` alone writes the bare value.
        let needs_line = !self.values || self.journal.is_some();
        if needs_line {
            self.line.extend_from_slice(b"{\"index\":");
            push_u64(&mut self.line, index);
            self.line.extend_from_slice(b",\"ok\":");
        }
        let at = self.line.len();
        match result.and_then(|output| self.task.write_json(&output, &mut self.line)) {
            Ok(()) => {
                let end = self.line.len();
                if needs_line {
                    self.line.push(b'}');
                }
                if let Some(j) = &mut self.journal {
                    j.record(index, input(), &self.line)?;
                }
                if self.values {
                    self.out.write_all(&self.line[at..end])?;
                    self.out.write_all(b"\n")?;
                } else {
                    self.write_line()?;
                }
            }
            Err(err) => {
                self.line.clear();
                write_error(&mut self.line, index, &err)?;
                if let Some(j) = &mut self.journal {
                    j.record(index, input(), &self.line)?;
                }
                self.failure(index, err.kind().as_str(), err.message())?;
            }
        }
        self.total += 1;
        Ok(())
    }

    /// A result recorded in the journal by an earlier run, or the refusal
    /// of a journal written for another input line.
    fn replay(&mut self, index: u64, source: Source) -> anyhow::Result<()> {
        if let Source::Refused(why) = source {
            self.flush(true)?;
            anyhow::bail!(why);
        }
        let journal = self
            .journal
            .as_ref()
            .expect("replayed results come from a journal");
        let text = journal
            .get(index)
            .expect("only recorded indices are replayed")
            .to_string();
        let entry: Entry<'_> =
            serde_json::from_str(&text).expect("checked when the journal was opened");
        self.line.clear();
        self.line.extend_from_slice(text.as_bytes());
        match (entry.ok, entry.error) {
            (Some(value), _) if self.values => self.write_value(value.get().as_bytes())?,
            (Some(_), _) => self.write_line()?,
            (None, Some(err)) => self.failure(index, &err.kind, &err.message)?,
            (None, None) => self.write_line()?,
        }
        self.total += 1;
        self.replayed += 1;
        Ok(())
    }

    fn write_line(&mut self) -> io::Result<()> {
        self.out.write_all(&self.line)?;
        self.out.write_all(b"\n")
    }

    fn write_value(&mut self, value: &[u8]) -> io::Result<()> {
        self.out.write_all(value)?;
        self.out.write_all(b"\n")
    }

    fn failure(&mut self, index: u64, kind: &str, message: &str) -> io::Result<()> {
        self.failed += 1;
        // Tasks cut off by --fail-fast's own cancel are written, and the run
        // stops at the first real failure.
        self.stopped |= self.fail_fast && kind != "terminated";
        if self.values {
            // The message is the guest's: no control character of it
            // reaches the terminal as such (a newline would forge a line).
            let message: String = message
                .chars()
                .flat_map(|c| {
                    let escape = c.is_control() || c == '\u{2028}' || c == '\u{2029}';
                    either(escape, c)
                })
                .collect();
            eprintln!(
                "wasmpool: {}: task {index}: {kind}: {message}",
                self.input_name
            );
            Ok(())
        } else {
            self.write_line()
        }
    }

    fn flush(&mut self, end: bool) -> anyhow::Result<()> {
        self.out.flush()?;
        if let Some(j) = &mut self.journal {
            j.flush(end)?;
        }
        Ok(())
    }
}

/// `c` escaped (`\n`, `\u{1b}`) when `escape`, else as it is.
fn either(escape: bool, c: char) -> impl Iterator<Item = char> {
    let escaped = escape.then(|| c.escape_default());
    let plain = (!escape).then_some(c);
    escaped.into_iter().flatten().chain(plain)
}

/// Appends `n` in decimal, without going through `fmt`.
fn push_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

fn write_error(out: &mut Vec<u8>, index: u64, err: &TaskError) -> io::Result<()> {
    #[derive(serde::Serialize)]
    struct Line<'a> {
        index: u64,
        error: Body<'a>,
    }
    #[derive(serde::Serialize)]
    struct Body<'a> {
        kind: &'a str,
        message: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        exit_code: Option<i32>,
        #[serde(skip_serializing_if = "Option::is_none")]
        backtrace: Option<&'a str>,
    }
    let body = Body {
        kind: err.kind().as_str(),
        message: err.message(),
        exit_code: err.exit_code(),
        backtrace: err.backtrace(),
    };
    serde_json::to_writer(out, &Line { index, error: body })?;
    Ok(())
}

/// Non-blank input lines, each handed to `parse` with its task index (from
/// 0) and line number (from 1) straight from the read buffer; yields what
/// `parse` returns, skipping `None`s. A read error ends the lines and is kept
/// for the caller.
struct Lines<F> {
    reader: Box<dyn BufRead>,
    line: u64,
    index: u64,
    buf: Vec<u8>,
    error: Rc<RefCell<Option<io::Error>>>,
    parse: F,
}

/// The longest input line read: a longer one is an `input` error of its own
/// (the rest of it is skipped), so one line cannot take the host's memory.
const MAX_INPUT_LINE: usize = 64 << 20;

impl<F, T> Iterator for Lines<F>
where
    F: FnMut(u64, u64, &[u8], bool) -> Option<T>,
{
    type Item = T;

    fn next(&mut self) -> Option<T> {
        loop {
            self.buf.clear();
            let limit = MAX_INPUT_LINE as u64 + 1;
            match io::Read::take(&mut self.reader, limit).read_until(b'\n', &mut self.buf) {
                Ok(0) => return None,
                Ok(_) => {
                    self.line += 1;
                    let too_long = self.buf.len() > MAX_INPUT_LINE;
                    if too_long && let Err(e) = skip_line(&mut self.reader) {
                        *self.error.borrow_mut() = Some(e);
                        return None;
                    }
                    if self.buf.trim_ascii().is_empty() {
                        continue;
                    }
                    // The guest gets the JSON text, not its line ending.
                    let end = self.buf.len()
                        - usize::from(self.buf.ends_with(b"\n"))
                        - usize::from(self.buf.ends_with(b"\r\n"));
                    self.index += 1;
                    let text = &self.buf[..end.min(MAX_INPUT_LINE)];
                    if let Some(item) = (self.parse)(self.index - 1, self.line, text, too_long) {
                        return Some(item);
                    }
                }
                Err(e) => {
                    *self.error.borrow_mut() = Some(e);
                    return None;
                }
            }
        }
    }
}

/// Reads past the rest of the current line, without keeping it.
fn skip_line(reader: &mut dyn BufRead) -> io::Result<()> {
    loop {
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            return Ok(());
        }
        match buf.iter().position(|&b| b == b'\n') {
            Some(at) => {
                reader.consume(at + 1);
                return Ok(());
            }
            None => {
                let n = buf.len();
                reader.consume(n);
            }
        }
    }
}

impl super::args::PoolArgs {
    /// Sets what the flags ask for on a pool builder.
    fn apply(&self, mut b: wasmpool::PoolBuilder) -> wasmpool::PoolBuilder {
        if let Some(n) = self.recycle_after {
            b = b.recycle_after(n);
        }
        if self.isolation == "task" {
            b = b.isolation(wasmpool::Isolation::Task);
        }
        b
    }
}
