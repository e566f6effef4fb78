//! `wasmpool map MODULE --task NAME`: inputs in (JSON lines, text lines,
//! a JSON array or a range: `input`), JSON lines out (or bare values), in
//! input order, each line written as soon as every earlier one is.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, IsTerminal, Write};
use std::process::ExitCode;
use std::rc::Rc;
use std::time::Instant;

use anyhow::Context;
use wasmpool::{Output, Spares, Task, TaskError, TaskErrorKind, TryNext};

use super::args::{Common, MapArgs};
use super::input::{self, Origin};
use super::journal::{self, Entry, InputHash, Journal};
use super::output::{Sink, same_file};
use super::progress::{self, Progress, Tally};
use super::shard;

pub(crate) fn run(common: &Common, quiet: bool, args: MapArgs) -> anyhow::Result<ExitCode> {
    if args.broker.is_some() {
        return super::broker_map::run(common, quiet, args);
    }
    // A shard counts its input first: what it cannot run is refused before
    // the module is compiled.
    let shard = match args.shard {
        None => None,
        Some(arg) => Some(shard::Plan::new(arg, &args)?),
    };
    let mut builder = wasmpool::Pool::builder()
        .module_file(&args.module)
        .cache(common.cache());
    if let Some(n) = args.workers {
        builder = builder.workers(n as usize);
    }
    for q in &args.queues {
        builder = builder.queue_with_max_bytes(q.name.clone(), q.capacity, q.max_bytes);
    }
    if super::compile::is_cwasm(&args.module) {
        // SAFETY: the user named a `.cwasm` file on the command line, the
        // CLI's sign that they trust it as `wasmpool compile` output (see
        // `compile::is_cwasm`); its version and settings are checked.
        builder = unsafe { builder.allow_precompiled(true) };
    }
    if let Some(bytes) = args.shared_memory {
        builder = builder.shared_memory(super::report::region_size(bytes));
    }
    if let Some(n) = args.mode.concurrency {
        builder = builder.concurrency(n);
    }
    builder = args.pool.apply(builder.limits(args.limits.to_limits()));
    let pool = builder.build()?;
    let task = pool.task(&args.task)?;
    let module = match args.journal.is_some() || shard.is_some() {
        false => Vec::new(),
        true => std::fs::read(&args.module)
            .with_context(|| format!("{}: cannot read the module", args.module.display()))?,
    };
    let journal = match &args.journal {
        None => None,
        Some(path) => {
            let journal = Journal::open(path, &module, &args.task)?;
            if let Some(plan) = &shard {
                let what = format!(
                    "shard {}/{} (tasks {}..{})",
                    plan.shard.k, plan.shard.n, plan.first, plan.end
                );
                journal.check_shard(plan.first, plan.end, &what)?;
            }
            // Checked once the journal exists, so that two names of one
            // new file are caught too.
            if args.output.as_deref().is_some_and(|o| same_file(o, path)) {
                anyhow::bail!(
                    "{}: --output and --journal name the same file; the results would replace the journal",
                    path.display()
                );
            }
            tracing::info!(
                "{}: {} results already recorded",
                path.display(),
                journal.len()
            );
            Some(journal)
        }
    };

    let (first, end) = shard.as_ref().map_or((0, u64::MAX), |p| (p.first, p.end));
    let (source, input_name) = open_input(&args, first)?;
    if let Some(plan) = shard.as_ref().filter(|_| !quiet) {
        eprintln!("wasmpool: {}", plan.describe());
    }
    // The order of every input, where it came from, and where its result
    // comes from. The input iterator pushes; the output loop pops.
    let order: Rc<RefCell<VecDeque<Pending>>> = Rc::default();
    let plan = journal.as_ref().map(|j| j.plan(args.retry_failed));
    let read_error = Rc::new(RefCell::new(None));
    // Output buffers, once written out, hold the next input lines.
    let spares = Rc::new(Spares::default());
    let payloads = Inputs {
        source,
        // A range starts at the shard's first value; a file is read from its
        // start, skipping the tasks before the shard's.
        index: if args.range.is_some() { first } else { 0 },
        first,
        end,
        error: read_error.clone(),
        parse: {
            let (task, input_name, order) = (task.clone(), input_name.clone(), order.clone());
            let spares = spares.clone();
            // Only a JSON line that does not parse may be meant as text.
            let json_lines = !args.raw && args.input_array.is_none() && args.range.is_none();
            move |index: u64, item: input::Item<'_>| {
                let origin = item.origin;
                let source = match &plan {
                    None => Source::Pool(None),
                    Some(plan) => {
                        // The task's input text, so the same input read
                        // another way (`"a"` as JSON, `a` with --raw) is
                        // the same input.
                        let input = journal::input_hash(item.text);
                        match plan.replay(index, input) {
                            Ok(true) => Source::Journal,
                            Ok(false) => Source::Pool(Some(input)),
                            Err(why) => {
                                Source::Refused(format!("{input_name}:{}: {why}", origin.line))
                            }
                        }
                    }
                };
                let run = matches!(source, Source::Pool(_));
                order.borrow_mut().push_back(Pending {
                    index,
                    origin,
                    source,
                });
                if !run {
                    return None;
                }
                let located = |message: &str| {
                    TaskError::new(
                        TaskErrorKind::Input,
                        input::locate(&input_name, origin, message),
                    )
                };
                if let Some(problem) = item.problem {
                    return Some(Err(located(&problem)));
                }
                Some(
                    task.parse_json_into(item.text, spares.take())
                        .map_err(|e| parse_error(e, item.text, json_lines, &input_name, origin)),
                )
            }
        },
    };

    // With --output, the results go to a file beside it, renamed over it
    // once all are written: a run that fails leaves no partial file.
    let (sink, mut output) = Sink::open(args.output.as_deref())?;
    let start = Instant::now();
    let progress = Progress::start(quiet, progress::TASKS, true);
    if let Some(plan) = &shard {
        progress.set_total(plan.end - plan.first);
    } else if let Some(path) = args.input.as_deref().filter(|p| p.as_os_str() != "-") {
        progress.count_lines_of(path, args.raw);
    }
    if let Some(range) = args.range.filter(|_| shard.is_none()) {
        progress.set_total(u64::try_from(range.len()).unwrap_or(u64::MAX));
    }
    // A shard's output is hashed as it is written, for its sidecar.
    let sink = shard::Digesting {
        inner: sink,
        digest: shard.as_ref().map(|p| p.digest.clone()),
    };
    let mut emit = Emitter::new(
        &task,
        BufWriter::with_capacity(1 << 16, progress.around_bar(sink)),
        journal,
        &args,
        &input_name,
        &spares,
        &progress,
    );
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
                .is_some_and(|p| !matches!(p.source, Source::Pool(_)))
        {
            emit.replay(pop().expect("checked above"))?;
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
            while let Some(pending) = pop() {
                debug_assert!(
                    !matches!(pending.source, Source::Pool(_)),
                    "the pool ended before input {}",
                    pending.index
                );
                if emit.stopped {
                    break;
                }
                emit.replay(pending)?;
            }
            break;
        };
        loop {
            match pop() {
                Some(Pending {
                    index,
                    origin,
                    source: Source::Pool(input),
                }) if !emit.stopped => {
                    emit.emit(index, origin, input, result)?;
                    break;
                }
                Some(pending) if !emit.stopped => emit.replay(pending)?,
                _ => break,
            }
        }
    }
    drop(stream);
    emit.flush(true)?;
    if let Some(err) = read_error.borrow_mut().take() {
        return Err(err);
    }
    if let Some(journal) = emit
        .journal
        .as_ref()
        .filter(|_| !emit.stopped && shard.is_none())
    {
        journal.check_covers(emit.total, &input_name)?;
    }
    if let Some(plan) = shard
        .as_ref()
        .filter(|p| !emit.stopped && emit.total != p.end - p.first)
    {
        anyhow::bail!(
            "{input_name}: the input changed while the shard ran: it had {} tasks when counted, \
             and now its tasks {}..{} are {} (do not change the input of a sharded job)",
            plan.input.total,
            plan.first,
            plan.end,
            emit.total
        );
    }
    if let Some(output) = output.take() {
        output.commit()?;
    }
    if let (Some(plan), Some(path)) = (&shard, &args.output) {
        let format = if args.raw_output {
            "raw_output"
        } else if args.values {
            "values"
        } else {
            "json"
        };
        plan.write_sidecar(
            path,
            &module,
            &args.task,
            format,
            emit.total,
            emit.failed,
            emit.stopped,
        )?;
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
    let journaled = args.journal.is_some();
    progress.finish(Tally {
        done: total,
        failed,
        replayed: journaled.then_some(replayed),
    });
    if let Some(plan) = shard.as_ref().filter(|_| total == 0) {
        eprintln!(
            "wasmpool: shard {}/{} of the {} tasks of {input_name} is empty, so no tasks ran",
            plan.shard.k, plan.shard.n, plan.input.total
        );
    } else if total == 0 {
        match args.range {
            Some(range) => eprintln!("wasmpool: --range {range} is empty, so no tasks ran"),
            None => eprintln!("wasmpool: {input_name}: no inputs, so no tasks ran"),
        }
    }
    if stopped {
        eprintln!("wasmpool: stopped at the first failure (--fail-fast) after {total} tasks");
        return Ok(ExitCode::from(1));
    }
    if failed > 0 {
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

/// One input on its way through: its index, where it came from, and where
/// its result comes from.
struct Pending {
    index: u64,
    origin: Origin,
    source: Source,
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
/// the journal. `map --broker` writes the lines its workers leave with it.
pub(super) struct Emitter<'a, W: Write> {
    task: &'a Task,
    out: W,
    journal: Option<Journal>,
    /// Bare values (--values or --raw-output), not JSON lines.
    values: bool,
    /// String values as their text (--raw-output).
    raw_output: bool,
    fail_fast: bool,
    input_name: &'a str,
    line: Vec<u8>,
    /// Where output buffers go back for input lines.
    spares: &'a Spares,
    pub(super) total: u64,
    pub(super) failed: u64,
    replayed: u64,
    /// Stopped at a failure (--fail-fast).
    pub(super) stopped: bool,
    progress: &'a Progress,
}

impl<'a, W: Write> Emitter<'a, W> {
    /// Writes to `out` in the format `args` ask for.
    pub(super) fn new(
        task: &'a Task,
        out: W,
        journal: Option<Journal>,
        args: &MapArgs,
        input_name: &'a str,
        spares: &'a Spares,
        progress: &'a Progress,
    ) -> Self {
        Emitter {
            task,
            out,
            journal,
            values: args.values || args.raw_output,
            raw_output: args.raw_output,
            fail_fast: args.fail_fast,
            input_name,
            line: Vec::with_capacity(256),
            spares,
            total: 0,
            failed: 0,
            replayed: 0,
            stopped: false,
            progress,
        }
    }

    /// A result from the pool.
    fn emit(
        &mut self,
        index: u64,
        origin: Origin,
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
        let written = result.and_then(|output| {
            let written = self.task.write_json(&output, &mut self.line);
            if let Output::Bytes(bytes) = output {
                self.spares.give(bytes);
            }
            written
        });
        match written {
            Ok(()) => {
                let end = self.line.len();
                if needs_line {
                    self.line.push(b'}');
                }
                if let Some(j) = &mut self.journal {
                    j.record(index, input(), &self.line)?;
                }
                if self.values {
                    let value = std::mem::take(&mut self.line);
                    let written = self.write_value(&value[at..end]);
                    self.line = value;
                    written?;
                } else {
                    self.write_line()?;
                }
            }
            Err(mut err) => {
                // Every input error names where its input is: the host's
                // own are located already; the guest's (status 2, often
                // serde's "missing field `url` at line 1 column 18") get
                // the file's line, and its column where serde's points into
                // the file's own text.
                let input_error = err.kind() == TaskErrorKind::Input;
                if input_error && input::split_location(self.input_name, err.message()).is_none() {
                    let message = input::locate(self.input_name, origin, err.message());
                    err = TaskError::new(TaskErrorKind::Input, message);
                }
                self.line.clear();
                let line = input_error.then_some(origin.line);
                write_error(&mut self.line, index, line, &err)?;
                if let Some(j) = &mut self.journal {
                    j.record(index, input(), &self.line)?;
                }
                self.failure(index, origin.line, err.kind().as_str(), err.message())?;
            }
        }
        self.total += 1;
        self.progress.update(self.total, self.failed);
        Ok(())
    }

    /// A result recorded in the journal by an earlier run, or the refusal
    /// of a journal written for another input line.
    fn replay(&mut self, pending: Pending) -> anyhow::Result<()> {
        let Pending {
            index,
            origin,
            source,
        } = pending;
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
        self.replayed += 1;
        self.entry(index, origin.line, &text, entry)
    }

    /// A result line finished elsewhere (by a broker's worker) for input
    /// `index` from line `line` of the input: written as it is, as its bare
    /// value, or as its failure. A line that is not a result line for
    /// `index` is refused, naming `from`.
    pub(super) fn result_line(
        &mut self,
        index: u64,
        line: u64,
        text: &[u8],
        from: &str,
    ) -> anyhow::Result<()> {
        let text = std::str::from_utf8(text).map_err(|e| {
            anyhow::anyhow!("{from}: the result of input {index} is not UTF-8: {e}")
        })?;
        let entry: Entry<'_> = serde_json::from_str(text).map_err(|e| {
            anyhow::anyhow!("{from}: the result of input {index} is not a result line: {e}")
        })?;
        // A worker of ours writes one compact line; anything else (a line
        // break inside, another index, neither field) was not.
        if entry.index != index
            || (entry.ok.is_none() && entry.error.is_none())
            || text.contains(['\n', '\r'])
        {
            anyhow::bail!("{from}: the result of input {index} is not its result line: {text}");
        }
        self.entry(index, line, text, entry)
    }

    /// Writes a parsed result line `text`.
    fn entry(&mut self, index: u64, line: u64, text: &str, entry: Entry<'_>) -> anyhow::Result<()> {
        self.line.clear();
        self.line.extend_from_slice(text.as_bytes());
        match (entry.ok, entry.error) {
            (Some(value), _) if self.values => self.write_value(value.get().as_bytes())?,
            (Some(_), _) => self.write_line()?,
            (None, Some(err)) => self.failure(index, line, &err.kind, &err.message)?,
            (None, None) => self.write_line()?,
        }
        self.total += 1;
        self.progress.update(self.total, self.failed);
        Ok(())
    }

    fn write_line(&mut self) -> io::Result<()> {
        self.out.write_all(&self.line)?;
        self.out.write_all(b"\n")
    }

    /// A bare value: its JSON text, or with --raw-output a string's text.
    fn write_value(&mut self, value: &[u8]) -> io::Result<()> {
        let text = match value.first() {
            Some(b'"') if self.raw_output => serde_json::from_slice::<String>(value).ok(),
            _ => None,
        };
        match text {
            Some(text) => self.out.write_all(text.as_bytes())?,
            None => self.out.write_all(value)?,
        }
        self.out.write_all(b"\n")
    }

    fn failure(&mut self, index: u64, line: u64, kind: &str, message: &str) -> io::Result<()> {
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
            // `<stdin>:3: task 2: guest: ...`; an input error's message
            // has its location (with a column, where there is one) first.
            let (at, message) = match input::split_location(self.input_name, &message) {
                Some((at, rest)) => (at.to_string(), rest),
                None => (format!("{}:{line}", self.input_name), message.as_str()),
            };
            progress::suspend(|| {
                eprintln!("wasmpool: {at}: task {index}: {kind}: {message}");
            });
            Ok(())
        } else {
            self.write_line()
        }
    }

    pub(super) fn flush(&mut self, end: bool) -> anyhow::Result<()> {
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

/// Why an input's text is not the task's input, located in the input
/// (`in.jsonl:3: ...`), with a hint where a JSON line looks like plain
/// text (`json_lines`: the input is JSON lines). `map` and `worker` (for a
/// broker's inputs) both say it this way.
pub(super) fn parse_error(
    e: TaskError,
    text: &[u8],
    json_lines: bool,
    input_name: &str,
    origin: Origin,
) -> TaskError {
    let hint = if !json_lines || e.kind() != TaskErrorKind::Input {
        None
    } else if serde_json::from_slice::<serde::de::IgnoredAny>(text).is_err() {
        input::json_line_hint(text)
    } else {
        None
    };
    let mut message = input::locate(input_name, origin, e.message());
    if let Some(hint) = hint {
        message = format!("{message}; {hint}");
    }
    TaskError::new(TaskErrorKind::Input, message)
}

/// An error line, `{"index":..,"error":{"kind":..,"message":..}}`; `line`
/// (the input's line, for input errors) after the message.
pub(super) fn write_error(
    out: &mut Vec<u8>,
    index: u64,
    line: Option<u64>,
    err: &TaskError,
) -> io::Result<()> {
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
        line: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        exit_code: Option<i32>,
        #[serde(skip_serializing_if = "Option::is_none")]
        backtrace: Option<&'a str>,
    }
    let body = Body {
        kind: err.kind().as_str(),
        message: err.message(),
        line,
        exit_code: err.exit_code(),
        backtrace: err.backtrace(),
    };
    serde_json::to_writer(out, &Line { index, error: body })?;
    Ok(())
}

/// Opens the input the flags name: a [`Source`](input::Source) and what
/// errors call it (`in.jsonl`, `<stdin>`, `<range 0..10>`). On a terminal,
/// says that it waits for input typed there.
fn open_input(args: &MapArgs, first: u64) -> anyhow::Result<(Box<dyn input::Source>, String)> {
    if let Some(range) = args.range {
        let values = input::RangeValues::starting_at(range, first);
        return Ok((Box::new(values), range.name()));
    }
    let path = args.input_array.as_ref().or(args.input.as_ref());
    let (reader, name): (Box<dyn BufRead>, String) = match path {
        Some(path) if path.as_os_str() != "-" => {
            let file = File::open(path)
                .with_context(|| format!("{}: cannot open the input", path.display()))?;
            (
                Box::new(BufReader::with_capacity(1 << 16, file)),
                path.display().to_string(),
            )
        }
        _ => {
            if io::stdin().is_terminal() {
                let array = args.input_array.is_some();
                eprintln!("wasmpool: {}", input::terminal_hint(array));
            }
            (Box::new(io::stdin().lock()), "<stdin>".into())
        }
    };
    Ok((source_of(args, reader, &name), name))
}

/// The inputs of `reader` (called `name`) as the flags read them: array
/// elements, JSON lines, or text lines.
pub(super) fn source_of(
    args: &MapArgs,
    reader: Box<dyn BufRead>,
    name: &str,
) -> Box<dyn input::Source> {
    if args.input_array.is_some() {
        Box::new(input::ArrayElements::new(reader, name))
    } else {
        Box::new(input::Lines::new(reader, name, args.raw))
    }
}

/// The inputs of a [`Source`](input::Source), each handed to `parse` with
/// its task index (from 0) straight from the source's buffer; yields what
/// `parse` returns, skipping `None`s. An error that ends the input is kept
/// for the caller.
struct Inputs<F> {
    source: Box<dyn input::Source>,
    /// The index of the next input.
    index: u64,
    /// A shard's block: inputs before `first` are read past, and none is
    /// read from `end` on.
    first: u64,
    end: u64,
    error: Rc<RefCell<Option<anyhow::Error>>>,
    parse: F,
}

impl<F, T> Iterator for Inputs<F>
where
    F: FnMut(u64, input::Item<'_>) -> Option<T>,
{
    type Item = T;

    fn next(&mut self) -> Option<T> {
        loop {
            if self.index >= self.end {
                return None;
            }
            match self.source.next_item() {
                Ok(None) => return None,
                Ok(Some(_)) if self.index < self.first => self.index += 1,
                Ok(Some(item)) => {
                    self.index += 1;
                    if let Some(out) = (self.parse)(self.index - 1, item) {
                        return Some(out);
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

impl super::args::PoolArgs {
    /// Sets what the flags ask for on a pool builder.
    pub(super) fn apply(&self, mut b: wasmpool::PoolBuilder) -> wasmpool::PoolBuilder {
        if let Some(n) = self.recycle_after {
            b = b.recycle_after(n);
        }
        if self.isolation == "task" {
            b = b.isolation(wasmpool::Isolation::Task);
        }
        b
    }
}
