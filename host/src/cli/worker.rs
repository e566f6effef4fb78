//! `wasmpool worker --broker URL`: runs the tasks of the jobs on a Redis
//! broker (queue mode, see `wasmpool::broker` and docs/scale-out.md) on a
//! local pool, one instance per core, with this command line's limits and
//! capabilities only.

use std::collections::HashMap;
use std::io;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use wasmpool::broker::{Broker, Delivery, Finished, JobId};
use wasmpool::{Output, Pool, Task, TaskError, TaskErrorKind, TryNext};

use super::args::{Common, LimitArgs, ModeArgs, PoolArgs};
use super::input::{self, Origin};

pub(crate) const EXAMPLES: &str = "\
Examples:
  wasmpool worker --broker redis://queue.example:6379/0
  wasmpool worker --broker redis://10.0.0.5:6379/0 -j 8 --max-memory 512MiB --timeout 1m
  wasmpool worker --broker redis://127.0.0.1:6379/0 --exit-when-idle --claim-idle 10s

Runs the tasks of every job submitted with `wasmpool map ... --broker URL`:
fetches each job's module from the broker (checked by its SHA-256; compiled
once per machine and cached), runs its inputs with one instance per core
under this command line's limits, and writes each result with its
acknowledgement in one transaction. Entries a dead worker held are claimed
after --claim-idle; an entry delivered more than --max-attempts times
becomes an error result of kind `lost` instead of running again. Guests get
no capability the broker names: only what this command line grants.
See docs/scale-out.md.";

#[derive(Debug, clap::Args)]
pub(crate) struct WorkerArgs {
    /// The Redis server holding the jobs: redis://HOST:PORT/DB.
    #[arg(long, value_name = "URL")]
    pub(crate) broker: String,
    /// Worker threads, each with its own instance [default: the number of cores].
    #[arg(long, short = 'j', value_name = "N", value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub(crate) workers: Option<u32>,
    /// Claim the entries another worker has held unfinished this long (its
    /// worker died).
    #[arg(long, value_name = "DURATION", default_value = "30s",
          value_parser = super::args::parse_duration)]
    pub(crate) claim_idle: Duration,
    /// An entry delivered more than K times (its workers died running it)
    /// becomes an error result of kind `lost` instead of running again.
    #[arg(long, value_name = "K", default_value_t = 3,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) max_attempts: u64,
    /// Exit once no job has any task left to run or claim (after 2 s of
    /// nothing to do).
    #[arg(long)]
    pub(crate) exit_when_idle: bool,
    #[command(flatten)]
    pub(crate) limits: LimitArgs,
    #[command(flatten)]
    pub(crate) mode: ModeArgs,
    #[command(flatten)]
    pub(crate) pool: PoolArgs,
}

/// How long a worker with --exit-when-idle waits with nothing to do.
const IDLE_EXIT: Duration = Duration::from_secs(2);

pub(crate) fn run(common: &Common, quiet: bool, args: WorkerArgs) -> anyhow::Result<ExitCode> {
    let mut broker = Broker::connect(&args.broker)?;
    let consumer = consumer_name();
    let running = heartbeat(&args.broker, &consumer, args.claim_idle)?;
    if !quiet {
        eprintln!("wasmpool: worker {consumer} on {}", args.broker);
    }
    // One pool per module (by SHA-256), built when a job of it comes.
    let mut pools: HashMap<String, Pool> = HashMap::new();
    // Jobs this worker cannot run (no such task, a bad module): skipped.
    let mut refused: HashMap<JobId, String> = HashMap::new();
    let mut last_claim: HashMap<JobId, Instant> = HashMap::new();
    let mut idle_since = Instant::now();
    // The jobs and their meta, read again after a round with nothing to do
    // or once a second (not on every round: two round trips per entry).
    let mut jobs: Vec<JobId> = Vec::new();
    let mut infos: HashMap<JobId, wasmpool::broker::JobInfo> = HashMap::new();
    let mut listed = Instant::now();
    let mut stale = true;
    let mut done_tasks = 0u64;
    loop {
        if stale || listed.elapsed() >= Duration::from_secs(1) {
            jobs = broker.jobs()?;
            infos.retain(|job, _| jobs.contains(job));
            listed = Instant::now();
            stale = false;
        }
        let mut worked = false;
        let single = jobs.len() == 1;
        for job in &jobs {
            if refused.contains_key(job) {
                continue;
            }
            if !infos.contains_key(job) {
                match broker.job(job)? {
                    Some(info) => {
                        infos.insert(job.clone(), info);
                    }
                    None => continue,
                }
            }
            let info = &infos[job];
            if !pools.contains_key(&info.module) {
                match build_pool(common, &args, &mut broker, &info.module) {
                    Ok(pool) => {
                        pools.insert(info.module.clone(), pool);
                    }
                    Err(e) => {
                        tracing::error!("job {job}: {e:#}");
                        refused.insert(job.clone(), format!("{e:#}"));
                        continue;
                    }
                }
            }
            let pool = &pools[&info.module];
            let task = match pool.task(&info.task) {
                Ok(task) => task,
                Err(e) => {
                    tracing::error!("job {job}: {e}");
                    refused.insert(job.clone(), e.to_string());
                    continue;
                }
            };
            // One entry per instance that can run at once.
            let per_worker = args.mode.concurrency.unwrap_or(1) as usize;
            let n = pool.workers() * per_worker;
            let mut deliveries = Vec::new();
            let due = last_claim
                .get(job)
                .is_none_or(|t| t.elapsed() >= args.claim_idle / 4);
            if due {
                last_claim.insert(job.clone(), Instant::now());
                deliveries = broker.claim(job, &consumer, args.claim_idle, n)?;
                if !deliveries.is_empty() {
                    tracing::info!("job {job}: claimed {} entries", deliveries.len());
                }
            }
            if deliveries.len() < n {
                let block = if single && deliveries.is_empty() {
                    Duration::from_millis(200)
                } else {
                    Duration::ZERO
                };
                deliveries.extend(broker.read(job, &consumer, n - deliveries.len(), block)?);
            }
            if deliveries.is_empty() {
                continue;
            }
            worked = true;
            let job_lines = JobLines {
                name: &info.name,
                json_lines: info.how == "json",
            };
            let ids = deliveries.iter().map(|d| d.id.clone()).collect();
            *lock(&running) = Some((job.clone(), ids));
            let ran = run_deliveries(
                &mut broker,
                job,
                pool,
                &task,
                &job_lines,
                deliveries,
                args.max_attempts,
            );
            *lock(&running) = None;
            done_tasks += ran?;
        }
        if worked {
            idle_since = Instant::now();
            continue;
        }
        stale = true;
        if args.exit_when_idle && idle_since.elapsed() >= IDLE_EXIT {
            let mut left = 0;
            for job in jobs.iter().filter(|j| !refused.contains_key(*j)) {
                left += broker.backlog(job)?;
            }
            if left == 0 {
                if !quiet {
                    eprintln!(
                        "wasmpool: worker {consumer}: idle, exiting after {done_tasks} tasks"
                    );
                }
                return Ok(ExitCode::SUCCESS);
            }
        }
        if jobs.len() != 1 {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The entries being run: their job and ids.
type Running = std::sync::Arc<std::sync::Mutex<Option<(JobId, Vec<String>)>>>;

fn lock(running: &Running) -> std::sync::MutexGuard<'_, Option<(JobId, Vec<String>)>> {
    running.lock().unwrap_or_else(|e| e.into_inner())
}

/// Starts a thread (with its own connection) that resets the idle time of
/// the entries being run three times per `claim_idle`, so that a task that
/// runs longer than `claim_idle` is not claimed from this live worker.
fn heartbeat(url: &str, consumer: &str, claim_idle: Duration) -> anyhow::Result<Running> {
    let running: Running = Default::default();
    let mut broker = Broker::connect(url)?;
    let (shared, consumer) = (running.clone(), consumer.to_string());
    std::thread::Builder::new()
        .name("wasmpool-heartbeat".into())
        .spawn(move || {
            loop {
                std::thread::sleep(claim_idle / 3);
                let Some((job, ids)) = lock(&shared).clone() else {
                    continue;
                };
                if let Err(e) = broker.touch(&job, &consumer, &ids) {
                    tracing::warn!("job {job}: {e}");
                }
            }
        })
        .context("cannot start the heartbeat thread")?;
    Ok(running)
}

/// A name for this worker's consumer: host and process id.
fn consumer_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "host".into());
    format!("{host}-{}", std::process::id())
}

/// A pool of the module with hex SHA-256 `sha`, fetched from the broker,
/// with this command line's limits (the same flags as `map`'s).
fn build_pool(
    common: &Common,
    args: &WorkerArgs,
    broker: &mut Broker,
    sha: &str,
) -> anyhow::Result<Pool> {
    let bytes = broker.module(sha)?;
    let mut builder = Pool::builder().module_bytes(bytes).cache(common.cache());
    if let Some(n) = args.workers {
        builder = builder.workers(n as usize);
    }
    if let Some(n) = args.mode.concurrency {
        builder = builder.concurrency(n);
    }
    builder = args.pool.apply(builder.limits(args.limits.to_limits()));
    builder
        .build()
        .with_context(|| format!("module {sha} from the broker"))
}

/// Runs the inputs of `deliveries` on `pool` and writes their results,
/// entry by entry as each finishes (in batches of those finished together).
/// Returns how many tasks ran.
fn run_deliveries(
    broker: &mut Broker,
    job: &JobId,
    pool: &Pool,
    task: &Task,
    lines: &JobLines<'_>,
    deliveries: Vec<Delivery>,
    max_attempts: u64,
) -> anyhow::Result<u64> {
    let mut done: Vec<Finished> = Vec::new();
    // Entries to run: (id, inputs); the others are finished here.
    let mut runs: Vec<Delivery> = Vec::new();
    for d in deliveries {
        if d.deliveries > max_attempts {
            tracing::warn!(
                "job {job}: entry {} was delivered {} times: its tasks are lost",
                d.id,
                d.deliveries
            );
            let lost = d
                .inputs
                .iter()
                .map(|i| (i.index, lost_line(i.index, d.deliveries - 1)))
                .collect();
            done.push((d.id, lost));
        } else if d.inputs.is_empty() {
            // Not an entry of ours: acknowledged and dropped.
            done.push((d.id, Vec::new()));
        } else {
            runs.push(d);
        }
    }
    broker.complete(job, &done)?;
    done.clear();
    let order: Vec<(usize, usize)> = runs
        .iter()
        .enumerate()
        .flat_map(|(e, d)| (0..d.inputs.len()).map(move |k| (e, k)))
        .collect();
    let payloads = order.iter().map(|&(e, k)| {
        let input = &runs[e].inputs[k];
        lines.parse(task, input)
    });
    let mut stream = pool.imap_payloads(task, payloads)?;
    let mut at = 0;
    let mut current: Vec<(u64, Vec<u8>)> = Vec::new();
    let total = order.len() as u64;
    loop {
        let result = match stream.try_next() {
            TryNext::Ready(r) => Some(r),
            TryNext::Done => None,
            TryNext::Pending => {
                // Let out what is finished before waiting.
                broker.complete(job, &done)?;
                done.clear();
                stream.next()
            }
        };
        let Some(result) = result else { break };
        let (e, k) = order[at];
        at += 1;
        let input = &runs[e].inputs[k];
        current.push((input.index, lines.line(task, input, result)?));
        if k + 1 == runs[e].inputs.len() {
            done.push((runs[e].id.clone(), std::mem::take(&mut current)));
        }
    }
    drop(stream);
    broker.complete(job, &done)?;
    Ok(total)
}

/// The result line of an entry delivered too many times.
fn lost_line(index: u64, ran: u64) -> Vec<u8> {
    let message = format!(
        "the task was delivered {ran} time{} and its worker died (or lost the broker) each time; \
         it is not run again (--max-attempts)",
        if ran == 1 { "" } else { "s" }
    );
    let message = serde_json::to_string(&message).expect("a string");
    format!(r#"{{"index":{index},"error":{{"kind":"lost","message":{message}}}}}"#).into_bytes()
}

/// What a job's result lines need: the input's name, and how it is read.
pub(super) struct JobLines<'a> {
    pub(super) name: &'a str,
    pub(super) json_lines: bool,
}

impl JobLines<'_> {
    /// The payload of an input, as `map` parses it.
    fn parse(
        &self,
        task: &Task,
        input: &wasmpool::broker::Input,
    ) -> Result<wasmpool::Payload, TaskError> {
        let origin = origin(input);
        task.parse_json(&input.text).map_err(|e| {
            super::map::parse_error(e, &input.text, self.json_lines, self.name, origin)
        })
    }

    /// The result line `map` writes for this result (its default JSON
    /// lines output).
    fn line(
        &self,
        task: &Task,
        input: &wasmpool::broker::Input,
        result: Result<Output, TaskError>,
    ) -> io::Result<Vec<u8>> {
        let mut line = Vec::with_capacity(64);
        line.extend_from_slice(format!("{{\"index\":{},\"ok\":", input.index).as_bytes());
        match result.and_then(|output| task.write_json(&output, &mut line)) {
            Ok(()) => {
                line.push(b'}');
                Ok(line)
            }
            Err(mut err) => {
                let origin = origin(input);
                let input_error = err.kind() == TaskErrorKind::Input;
                if input_error && input::split_location(self.name, err.message()).is_none() {
                    let message = input::locate(self.name, origin, err.message());
                    err = TaskError::new(TaskErrorKind::Input, message);
                }
                line.clear();
                super::map::write_error(
                    &mut line,
                    input.index,
                    input_error.then_some(origin.line),
                    &err,
                )?;
                Ok(line)
            }
        }
    }
}

fn origin(input: &wasmpool::broker::Input) -> Origin {
    Origin {
        line: input.line,
        column: input.column,
    }
}
