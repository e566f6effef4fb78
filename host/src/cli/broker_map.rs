//! `wasmpool map MODULE --task T --input F --broker URL`: submits the inputs
//! of a job to a Redis broker, a window at a time, and writes the results
//! the workers leave there in input order: the same output as `map` on one
//! machine. Run again, the same command re-attaches to the same job.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use sha2::{Digest, Sha256};
use wasmpool::broker::{Broker, Input, JobId};
use wasmpool::{TaskError, TaskErrorKind};

use super::args::{Common, MapArgs};
use super::input::{self, Source};
use super::journal::{self, Journal, Plan};
use super::output::Sink;

/// The most inputs submitted and not yet written out.
const WINDOW: u64 = 4096;
/// Inputs submitted in one transaction, and results read in one call.
const CHUNK: u64 = 256;

pub(crate) fn run(common: &Common, quiet: bool, args: MapArgs) -> anyhow::Result<ExitCode> {
    let url = args.broker.clone().expect("called with --broker");
    refuse_unsupported(&args)?;
    let path = match args.input.as_deref() {
        Some(p) if p.as_os_str() != "-" => p.to_path_buf(),
        _ => anyhow::bail!(
            "--broker needs --input FILE: the job is named by its input's hash, so that a rerun \
             re-attaches to it (stdin cannot be read twice)"
        ),
    };
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
    // The task is checked here, before anything is submitted.
    let pool = wasmpool::Pool::builder()
        .module_bytes(module.clone())
        .cache(common.cache())
        .workers(1)
        .build()?;
    pool.task(&args.task)?;
    drop(pool);
    let how = if args.raw { "raw" } else { "json" };
    let input_sha = hash_file(&path)?;
    let job = JobId::derive(&module, &args.task, &input_sha, how);
    let name = path.display().to_string();
    let mut journal = match &args.journal {
        None => None,
        Some(path) => Some(Journal::open(path, &module, &args.task)?),
    };
    let plan = journal.as_ref().map(|j| j.plan(args.retry_failed));
    let mut broker = Broker::connect(&url)?;
    let submitted = broker.open_job(&job, &module, &args.task, &name, how)?;
    if !quiet {
        let state = if submitted > 0 {
            format!("re-attached ({submitted} inputs submitted before)")
        } else {
            "new".into()
        };
        eprintln!("wasmpool: job {job} on {url}: {state}");
    }

    let file = File::open(&path).with_context(|| format!("{name}: cannot open the input"))?;
    let mut source = input::Lines::new(
        Box::new(BufReader::with_capacity(1 << 16, file)),
        &name,
        args.raw,
    );
    let (sink, mut output) = Sink::open(args.output.as_deref())?;
    let mut out = BufWriter::with_capacity(1 << 16, sink);

    let mut state = Submit {
        next: 0,
        submitted,
        total: None,
        plan,
        held: std::collections::VecDeque::new(),
    };
    let mut emitted = 0u64;
    let mut failed = 0u64;
    let mut pause = Duration::from_millis(5);
    loop {
        // Submit while the window has room.
        while state.total.is_none() && state.submitted < emitted + WINDOW {
            let room = (emitted + WINDOW - state.submitted).min(CHUNK);
            state.submit(&mut broker, &job, &mut source, &name, room, batch)?;
        }
        // Gather what is finished, in order.
        let want = state.submitted.saturating_sub(emitted).min(CHUNK);
        let mut got = 0;
        let mut journaled = Vec::new();
        for line in broker.results(&job, emitted, want)? {
            let (hash, replay) = state.held.front().copied().unwrap_or((0, false));
            let line = match (line, &journal) {
                (_, Some(j)) if replay => j
                    .get(emitted)
                    .expect("replayed results are journaled")
                    .as_bytes()
                    .to_vec(),
                (Some(line), _) => line,
                (None, _) => break,
            };
            if !replay && let Some(j) = &mut journal {
                j.record(emitted, hash, &line)?;
                journaled.push(emitted);
            }
            state.held.pop_front();
            if is_error_line(&line) {
                failed += 1;
            }
            out.write_all(&line)?;
            out.write_all(b"\n")?;
            emitted += 1;
            got += 1;
        }
        if let Some(j) = journal.as_mut().filter(|_| !journaled.is_empty()) {
            // On disk before they leave Redis: the journal holds them now.
            j.flush(true)?;
            broker.delete_results(&job, &journaled)?;
        }
        if state.total == Some(emitted) {
            break;
        }
        // A full chunk: more may be waiting. Otherwise wait a little (each
        // poll costs Redis a read of up to a chunk of fields), longer while
        // nothing comes.
        if got < CHUNK {
            out.flush()?;
            pause = if got > 0 {
                Duration::from_millis(10)
            } else {
                (pause * 2).min(Duration::from_millis(100))
            };
            std::thread::sleep(pause);
        }
    }
    out.flush()?;
    drop(out);
    if let Some(j) = &mut journal {
        j.flush(true)?;
        j.check_covers(emitted, &name)?;
    }
    if let Some(output) = output.take() {
        output.commit()?;
    }
    broker.finish(&job)?;
    if !quiet {
        eprintln!("wasmpool: job {job}: {emitted} tasks ({failed} failed)");
    }
    if emitted == 0 {
        eprintln!("wasmpool: {name}: no inputs, so no tasks ran");
    }
    Ok(if failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// Where submission is: the next input read, the inputs the broker has,
/// and the total once the input has ended; with a journal, what it holds.
struct Submit {
    next: u64,
    submitted: u64,
    total: Option<u64>,
    plan: Option<Plan>,
    /// From the next input to print on, each read input's hash (for its
    /// journal record) and whether the journal holds its result.
    held: std::collections::VecDeque<(journal::InputHash, bool)>,
}

impl Submit {
    /// Reads up to `room` inputs past those submitted and submits them.
    fn submit(
        &mut self,
        broker: &mut Broker,
        job: &JobId,
        source: &mut input::Lines,
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
            self.held.push_back((hash, replay));
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

/// Whether a result line is an error line.
fn is_error_line(line: &[u8]) -> bool {
    let rest = line.strip_prefix(b"{\"index\":").unwrap_or(line);
    let rest = rest.trim_ascii_start();
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    rest[digits..].starts_with(b",\"error\"")
}

/// The SHA-256 of a file's bytes.
fn hash_file(path: &std::path::Path) -> anyhow::Result<[u8; 32]> {
    let mut file =
        File::open(path).with_context(|| format!("{}: cannot open the input", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file
            .read(&mut buf)
            .with_context(|| format!("{}: cannot read the input", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize().into())
}

/// Flags that mean nothing in queue mode, or that it does not do yet.
fn refuse_unsupported(args: &MapArgs) -> anyhow::Result<()> {
    let flags = [
        (args.input_array.is_some(), "--input-array"),
        (args.range.is_some(), "--range"),
        (args.values || args.raw_output, "--values/--raw-output"),
        (args.fail_fast, "--fail-fast"),
        (args.shard.is_some(), "--shard"),
    ];
    if let Some((_, flag)) = flags.iter().find(|(set, _)| *set) {
        anyhow::bail!("{flag} is not supported with --broker (queue mode) yet");
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

#[cfg(test)]
mod test {
    #[test]
    fn error_lines_are_told_apart() {
        assert!(super::is_error_line(
            br#"{"index":12,"error":{"kind":"trap"}}"#
        ));
        assert!(!super::is_error_line(br#"{"index":12,"ok":{"error":1}}"#));
    }
}
