//! `wasmpool map MODULE --task T --input F --broker URL`: submits the inputs
//! of a job to a Redis broker, a window at a time, and writes the results
//! the workers leave there in input order: the same output as `map` on one
//! machine. Run again, the same command re-attaches to the same job.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, IsTerminal, Read};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use sha2::{Digest, Sha256};
use wasmpool::broker::{Broker, Input, JobId};
use wasmpool::{Spares, TaskError, TaskErrorKind};

use super::args::{Common, MapArgs};
use super::input;
use super::journal::{self, Journal, Plan};
use super::map::{self, Emitter};
use super::output::Sink;
use super::progress::{self, Progress, Tally};

/// The most inputs submitted and not yet written out.
const WINDOW: u64 = 4096;
/// How long the submitter waits with no result before it says which
/// workers refused the job.
const REFUSALS_AFTER: Duration = Duration::from_secs(5);
/// Inputs submitted in one transaction, and results read in one call.
const CHUNK: u64 = 256;

pub(crate) fn run(common: &Common, quiet: bool, args: MapArgs) -> anyhow::Result<ExitCode> {
    let url = args.broker.clone().expect("called with --broker");
    refuse_unsupported(&args)?;
    if super::compile::is_cwasm(&args.module) {
        anyhow::bail!(
            "{}: --broker sends the module to other machines, which never load precompiled \
             machine code from the broker: give the .wasm (each worker compiles it once and caches it)",
            args.module.display()
        );
    }
    let batch = u64::from(args.batch.unwrap_or(1));
    let module = std::fs::read(&args.module)
        .with_context(|| format!("{}: cannot read the module", args.module.display()))?;
    // The task is checked here, before anything is submitted; the pool's
    // one idle worker costs nothing, and its task writes bare values.
    let pool = wasmpool::Pool::builder()
        .module_bytes(module.clone())
        .cache(common.cache())
        .workers(1)
        .build()?;
    let task = pool.task(&args.task)?;
    let input = JobInput::open(&args)?;
    // Another --batch cuts the same inputs into other entries: another job.
    let job = JobId::derive(
        &module,
        &args.task,
        &input.sha,
        &format!("{} batch {batch}", input.how),
    );
    let name = input.name.clone();
    let mut journal = match &args.journal {
        None => None,
        Some(path) => {
            let journal = Journal::open(path, &module, &args.task)?;
            if args
                .output
                .as_deref()
                .is_some_and(|o| super::output::same_file(o, path))
            {
                anyhow::bail!(
                    "{}: --output and --journal name the same file; the results would replace the journal",
                    path.display()
                );
            }
            Some(journal)
        }
    };
    let plan = journal.as_ref().map(|j| j.plan(args.retry_failed));
    let mut broker = Broker::connect(&url)?;
    let submitted = broker.open_job(&job, &module, &args.task, &name, input.how)?;
    if !quiet {
        let state = if submitted > 0 {
            format!("re-attached ({submitted} inputs submitted before)")
        } else {
            "new".into()
        };
        eprintln!("wasmpool: job {job} on {url}: {state}");
    }

    let mut source = input.source(&args)?;
    let (sink, mut output) = Sink::open(args.output.as_deref())?;
    let progress = Progress::start(quiet, progress::TASKS, true);
    input.count(&progress, &args);
    let spares = Spares::default();
    let mut emit = Emitter::new(
        &task,
        BufWriter::with_capacity(1 << 16, progress.around_bar(sink)),
        None,
        &args,
        &name,
        &spares,
        &progress,
    );
    let from = format!("{url} (job {job})");

    let mut state = Submit {
        next: 0,
        submitted,
        total: None,
        plan,
        held: std::collections::VecDeque::new(),
    };
    let mut emitted = 0u64;
    let mut replayed = 0u64;
    let mut pause = Duration::from_millis(5);
    // Workers that refused the job, said once each while nothing comes.
    let mut told: std::collections::HashSet<String> = Default::default();
    let mut last_result = std::time::Instant::now();
    while !emit.stopped {
        // Submit while the window has room.
        while state.total.is_none() && state.submitted < emitted + WINDOW {
            let room = (emitted + WINDOW - state.submitted).min(CHUNK);
            state.submit(&mut broker, &job, source.as_mut(), &name, room, batch)?;
        }
        // Gather what is finished, in order.
        let want = state.submitted.saturating_sub(emitted).min(CHUNK);
        let mut got = 0;
        let mut journaled = Vec::new();
        for line in broker.results(&job, emitted, want)? {
            let held = state.held.front().copied().unwrap_or_default();
            let line = match (line, &journal) {
                (_, Some(j)) if held.replay => {
                    replayed += 1;
                    j.get(emitted)
                        .expect("replayed results are journaled")
                        .as_bytes()
                        .to_vec()
                }
                (Some(line), _) => line,
                (None, _) => break,
            };
            emit.result_line(emitted, held.line, &line, &from)?;
            if !held.replay
                && let Some(j) = &mut journal
            {
                j.record(emitted, held.hash, &line)?;
                journaled.push(emitted);
            }
            state.held.pop_front();
            emitted += 1;
            got += 1;
            if emit.stopped {
                break;
            }
        }
        if let Some(j) = journal.as_mut().filter(|_| !journaled.is_empty()) {
            // On disk before they leave Redis: the journal holds them now.
            j.flush(true)?;
            broker.delete_results(&job, &journaled)?;
        }
        if state.total == Some(emitted) {
            break;
        }
        // A full chunk: more may be waiting. Otherwise wait for a worker to
        // say it wrote results (or a little while: each poll costs Redis a
        // read of up to a chunk of fields), longer while nothing comes.
        if got > 0 {
            last_result = std::time::Instant::now();
        } else if last_result.elapsed() >= REFUSALS_AFTER {
            last_result = std::time::Instant::now();
            // A job deleted under its submitter (another submitter of it
            // finished it) would never give a result again.
            if broker.job(&job)?.is_none() {
                anyhow::bail!(
                    "job {job} was deleted from {url} while this submitter waited for its results \
                     (another submitter of the same job finished it?); run the command again"
                );
            }
            for (worker, why) in broker.refusals(&job)? {
                if told.insert(worker.clone()) {
                    progress::suspend(|| {
                        eprintln!(
                            "wasmpool: worker {worker} does not run this job: {why} \
                             (the job waits for a worker that can)"
                        )
                    });
                }
            }
        }
        if got < CHUNK && !emit.stopped {
            emit.flush(false)?;
            pause = if got > 0 {
                Duration::from_millis(10)
            } else {
                (pause * 2).min(Duration::from_millis(100))
            };
            broker.wait_for_results(&job, pause)?;
        }
    }
    emit.flush(true)?;
    let (total, failed, stopped) = (emit.total, emit.failed, emit.stopped);
    drop(emit);
    if let Some(j) = &mut journal {
        j.flush(true)?;
        if !stopped {
            j.check_covers(emitted, &name)?;
        }
    }
    if let Some(output) = output.take() {
        output.commit()?;
    }
    // Done, or stopped at a failure: either way its workers stop (a
    // --fail-fast rerun starts over, or from its journal).
    broker.finish(&job)?;
    progress.finish(Tally {
        done: total,
        failed,
        replayed: journal.is_some().then_some(replayed),
    });
    if stopped {
        eprintln!("wasmpool: stopped at the first failure (--fail-fast) after {total} tasks");
        return Ok(ExitCode::from(1));
    }
    if emitted == 0 {
        match args.range {
            Some(range) => eprintln!("wasmpool: --range {range} is empty, so no tasks ran"),
            None => eprintln!("wasmpool: {name}: no inputs, so no tasks ran"),
        }
    }
    Ok(if failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// A job's input: a file, stdin kept in a temporary file (the job is named
/// by its input's hash, and a rerun with the same bytes re-attaches), or a
/// range; and how its inputs are read.
struct JobInput {
    /// The file read, if the input is one.
    path: Option<PathBuf>,
    /// Stdin's copy: a temporary file with no name (unlinked at once, so
    /// that nothing is left behind however the submitter ends), read
    /// through `/proc/self/fd`.
    _spool: Option<File>,
    name: String,
    /// `json` (JSON lines), `raw` (text lines), `array` (a JSON array's
    /// elements) or `range`.
    how: &'static str,
    sha: [u8; 32],
}

impl JobInput {
    fn open(args: &MapArgs) -> anyhow::Result<JobInput> {
        let how = if args.range.is_some() {
            "range"
        } else if args.input_array.is_some() {
            "array"
        } else if args.raw {
            "raw"
        } else {
            "json"
        };
        if let Some(range) = args.range {
            let name = range.name();
            return Ok(JobInput {
                path: None,
                _spool: None,
                sha: Sha256::digest(name.as_bytes()).into(),
                name,
                how,
            });
        }
        let given = args.input_array.as_ref().or(args.input.as_ref());
        let (path, spool, name) = match given {
            Some(p) if p.as_os_str() != "-" => (p.clone(), None, p.display().to_string()),
            _ => {
                if io::stdin().is_terminal() {
                    eprintln!(
                        "wasmpool: {}",
                        input::terminal_hint(args.input_array.is_some())
                    );
                }
                use std::os::fd::AsRawFd;
                let mut spool =
                    tempfile::tempfile().context("cannot make a temporary file to hold stdin")?;
                io::copy(&mut io::stdin().lock(), &mut spool)
                    .context("<stdin>: cannot read the input")?;
                // Each open of this path reads the file from its start.
                let path = PathBuf::from(format!("/proc/self/fd/{}", spool.as_raw_fd()));
                (path, Some(spool), "<stdin>".to_string())
            }
        };
        Ok(JobInput {
            sha: hash_file(&path, &name)?,
            path: Some(path),
            _spool: spool,
            name,
            how,
        })
    }

    /// Its inputs, from the first.
    fn source(&self, args: &MapArgs) -> anyhow::Result<Box<dyn input::Source>> {
        let Some(path) = &self.path else {
            let range = args.range.expect("an input without a file is a range");
            return Ok(Box::new(input::RangeValues::new(range)));
        };
        let file =
            File::open(path).with_context(|| format!("{}: cannot open the input", self.name))?;
        let reader = Box::new(BufReader::with_capacity(1 << 16, file));
        Ok(map::source_of(args, reader, &self.name))
    }

    /// Gives the progress bar its total, where it can be known.
    fn count(&self, progress: &Progress, args: &MapArgs) {
        match (&self.path, args.range) {
            (_, Some(range)) => progress.set_total(u64::try_from(range.len()).unwrap_or(u64::MAX)),
            (Some(path), None) if args.input_array.is_none() => {
                progress.count_lines_of(path, args.raw)
            }
            _ => {}
        }
    }
}

/// What the submitter knows of an input read and not yet written out.
#[derive(Debug, Clone, Copy, Default)]
struct Held {
    /// Its hash, for its journal record.
    hash: journal::InputHash,
    /// The journal holds its result.
    replay: bool,
    /// Its line in the input, for messages.
    line: u64,
}

/// Where submission is: the next input read, the inputs the broker has,
/// and the total once the input has ended; with a journal, what it holds.
struct Submit {
    next: u64,
    submitted: u64,
    total: Option<u64>,
    plan: Option<Plan>,
    /// From the next input to print on, what is known of each read input.
    held: std::collections::VecDeque<Held>,
}

impl Submit {
    /// Reads up to `room` inputs past those submitted and submits them.
    fn submit(
        &mut self,
        broker: &mut Broker,
        job: &JobId,
        source: &mut dyn input::Source,
        name: &str,
        room: u64,
        batch: u64,
    ) -> anyhow::Result<()> {
        let first = self.submitted;
        let mut entries: Vec<Vec<Input>> = Vec::new();
        let mut results: Vec<(u64, Vec<u8>)> = Vec::new();
        let mut current: Vec<Input> = Vec::new();
        let mut ended = false;
        while self.next < first + room {
            let Some(item) = source.next_item()? else {
                ended = true;
                break;
            };
            let index = self.next;
            self.next += 1;
            let (hash, replay) = match &self.plan {
                None => (0, false),
                Some(plan) => {
                    let hash = journal::input_hash(item.text);
                    match plan.replay(index, hash) {
                        Ok(replay) => (hash, replay),
                        Err(why) => anyhow::bail!("{name}:{}: {why}", item.origin.line),
                    }
                }
            };
            self.held.push_back(Held {
                hash,
                replay,
                line: item.origin.line,
            });
            if index < first {
                continue; // submitted by an earlier run
            }
            if replay {
                // Its result is in the journal: not run again.
                entries.extend((!current.is_empty()).then(|| std::mem::take(&mut current)));
                continue;
            }
            if let Some(problem) = item.problem {
                // It cannot run: its error line goes straight to the results.
                let message = input::locate(name, item.origin, &problem);
                let err = TaskError::new(TaskErrorKind::Input, message);
                let mut line = Vec::new();
                super::map::write_error(&mut line, index, Some(item.origin.line), &err)?;
                results.push((index, line));
                entries.extend((!current.is_empty()).then(|| std::mem::take(&mut current)));
                continue;
            }
            current.push(Input {
                index,
                line: item.origin.line,
                column: item.origin.column,
                text: item.text.to_vec(),
            });
            if current.len() as u64 >= batch {
                entries.push(std::mem::take(&mut current));
            }
        }
        if !current.is_empty() {
            entries.push(current);
        }
        let end = self.next.max(first);
        if end > first {
            broker.submit(job, first, end, &entries, &results)?;
            self.submitted = end;
        }
        if ended {
            if self.next < first {
                anyhow::bail!(
                    "{name}: the input has {} inputs, but the job has {first} submitted: the input changed",
                    self.next
                );
            }
            broker.set_total(job, self.next)?;
            self.total = Some(self.next);
        }
        Ok(())
    }
}

/// The SHA-256 of a file's bytes.
fn hash_file(path: &std::path::Path, name: &str) -> anyhow::Result<[u8; 32]> {
    let mut file = File::open(path).with_context(|| format!("{name}: cannot open the input"))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file
            .read(&mut buf)
            .with_context(|| format!("{name}: cannot read the input"))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize().into())
}

/// Flags that mean nothing in queue mode.
fn refuse_unsupported(args: &MapArgs) -> anyhow::Result<()> {
    if args.shard.is_some() {
        anyhow::bail!(
            "--shard and --broker are two ways to spread one job over machines: a broker's \
             workers take its tasks as they are free, so no shard is needed (see docs/scale-out.md)"
        );
    }
    let local = [
        (args.workers.is_some(), "-j/--workers"),
        (!args.queues.is_empty(), "--queue"),
        (args.shared_memory.is_some(), "--shared-memory"),
        (args.mode.concurrency.is_some(), "--concurrency"),
        (args.limits.max_memory.is_some(), "--max-memory"),
        (args.limits.timeout.is_some(), "--timeout"),
        (args.limits.fuel.is_some(), "--fuel"),
    ];
    if let Some((_, flag)) = local.iter().find(|(set, _)| *set) {
        anyhow::bail!(
            "{flag}: with --broker the tasks run on `wasmpool worker`s, each with its own limits: \
             give {flag} to them"
        );
    }
    Ok(())
}
