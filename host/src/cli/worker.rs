//! `wasmpool worker --broker URL`: runs the tasks of the jobs on a Redis
//! broker (queue mode, see `wasmpool::broker` and docs/scale-out.md) on a
//! local pool, one instance per core, with this command line's limits and
//! capabilities only.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use wasmpool::broker::{Broker, Delivery, Finished, Input, JobId};
use wasmpool::{Output, Pool, Task, TaskError, TaskErrorKind};

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

/// How long a worker leaves a listed job without a meta before it looks
/// at it again.
const MISSING_RETRY: Duration = Duration::from_secs(5);

/// How long a finished entry may wait to be written with others.
const FLUSH_EVERY: Duration = Duration::from_millis(20);

/// How long a worker waits to read again after the broker had nothing.
const DRY_WAIT: Duration = Duration::from_millis(20);

/// How long a worker leaves a job it refused before it tries it again (the
/// error may have been passing).
const REFUSAL_RETRY: Duration = Duration::from_secs(60);

/// While other jobs wait, how long one job is fed before the worker moves
/// on (it then finishes what it holds of it).
const SLICE: Duration = Duration::from_secs(1);

pub(crate) fn run(common: &Common, quiet: bool, args: WorkerArgs) -> anyhow::Result<ExitCode> {
    let mut broker = Broker::connect(&args.broker)?;
    let consumer = consumer_name();
    let held = heartbeat(&args.broker, &consumer, args.claim_idle)?;
    if !quiet {
        eprintln!("wasmpool: worker {consumer} on {}", args.broker);
    }
    // One pool per module (by SHA-256) of a live job, built when a job of
    // it comes, dropped once no live job has it.
    let mut pools: HashMap<String, Pool> = HashMap::new();
    // Jobs this worker does not run (a bad module, no such task, an error
    // on the job's keys), since when: tried again after a while.
    let mut refused: HashMap<JobId, Instant> = HashMap::new();
    let mut last_claim: HashMap<JobId, Instant> = HashMap::new();
    let mut idle_since = Instant::now();
    let mut infos: HashMap<JobId, wasmpool::broker::JobInfo> = HashMap::new();
    let mut done_tasks = 0u64;
    let mut last_event = broker.last_job_event()?;
    // Listed jobs without a meta (being opened, or deleted): looked at
    // again after a while, not on every round.
    let mut missing: HashMap<JobId, Instant> = HashMap::new();
    loop {
        let jobs = broker.jobs()?;
        // Jobs ended since the last round: what this worker's last writes
        // may have made again of their keys is deleted (if they did end).
        let ended: Vec<JobId> = infos
            .keys()
            .filter(|j| !jobs.contains(j))
            .cloned()
            .collect();
        for job in ended {
            if let Err(e) = broker.forget_if_gone(&job) {
                tracing::warn!("job {job}: {e}");
            }
        }
        infos.retain(|job, _| jobs.contains(job));
        missing.retain(|job, since| jobs.contains(job) && since.elapsed() < MISSING_RETRY);
        last_claim.retain(|job, _| jobs.contains(job));
        refused.retain(|job, since| jobs.contains(job) && since.elapsed() < REFUSAL_RETRY);
        pools.retain(|module, _| infos.values().any(|i| i.module == *module));
        let mut worked = false;
        // Whether a job's read waited on the broker this round.
        let mut waited = false;
        for job in &jobs {
            if refused.contains_key(job) || missing.contains_key(job) {
                continue;
            }
            let mut refuse = |broker: &mut Broker, why: String| {
                tracing::error!("job {job}: {why}");
                refused.insert(job.clone(), Instant::now());
                // The submitter says why it waits.
                if let Err(e) = broker.refuse(job, &consumer, &why) {
                    tracing::warn!("job {job}: {e}");
                }
            };
            if !infos.contains_key(job) {
                match broker.job(job) {
                    Ok(Some(info)) => {
                        infos.insert(job.clone(), info);
                    }
                    Ok(None) => {
                        missing.insert(job.clone(), Instant::now());
                        continue;
                    }
                    Err(e) => {
                        refuse(&mut broker, e.to_string());
                        continue;
                    }
                }
            }
            let info = &infos[job];
            if !pools.contains_key(&info.module) {
                match build_pool(common, &args, &mut broker, &info.module) {
                    Ok(pool) => {
                        pools.insert(info.module.clone(), pool);
                    }
                    Err(e) => {
                        refuse(&mut broker, format!("{e:#}"));
                        continue;
                    }
                }
            }
            let pool = &pools[&info.module];
            let task = match pool.task(&info.task) {
                Ok(task) => task,
                Err(e) => {
                    refuse(&mut broker, e.to_string());
                    continue;
                }
            };
            let mut run = JobRun {
                broker: &mut broker,
                consumer: &consumer,
                job,
                pool,
                task: &task,
                lines: JobLines {
                    name: &info.name,
                    json_lines: info.how == "json",
                },
                held: &held,
                args: &args,
                last_claim: last_claim
                    .entry(job.clone())
                    .or_insert(Instant::now() - args.claim_idle),
                entries: BTreeMap::new(),
                done: Vec::new(),
                done_since: Instant::now(),
            };
            let alone = jobs.len() == 1;
            waited |= alone;
            let ran = run.run(alone);
            lock(&held).clear();
            match ran {
                Ok(0) => {}
                Ok(ran) => {
                    worked = true;
                    done_tasks += ran;
                }
                // What it held is claimed by another worker (or by this
                // one, once the job is tried again).
                Err(e) => refuse(&mut broker, format!("{e:#}")),
            }
        }
        if worked {
            idle_since = Instant::now();
            continue;
        }
        if args.exit_when_idle && idle_since.elapsed() >= IDLE_EXIT {
            let mut left = 0;
            for job in jobs.iter().filter(|j| !refused.contains_key(*j)) {
                left += broker.backlog(job).unwrap_or(0);
            }
            if left == 0 {
                if !quiet {
                    let skipped = match refused.len() {
                        0 => String::new(),
                        n => format!(
                            " ({n} job{} it cannot run left)",
                            if n == 1 { "" } else { "s" }
                        ),
                    };
                    eprintln!(
                        "wasmpool: worker {consumer}: idle, exiting after {done_tasks} tasks{skipped}"
                    );
                }
                return Ok(ExitCode::SUCCESS);
            }
        }
        // With one job, its read waited already; else wait for a new job
        // (or, with several, a little before looking at them again).
        if !waited {
            let wait = if jobs.is_empty() { 1000 } else { 100 };
            broker.wait_for_jobs(&mut last_event, Duration::from_millis(wait))?;
        }
    }
}

/// The entries this worker holds: their job and ids (the heartbeat keeps
/// them from being claimed).
type Held = std::sync::Arc<std::sync::Mutex<HeldEntries>>;

#[derive(Default)]
struct HeldEntries {
    job: Option<JobId>,
    ids: HashSet<String>,
}

impl HeldEntries {
    fn clear(&mut self) {
        self.job = None;
        self.ids.clear();
    }
}

fn lock(held: &Held) -> std::sync::MutexGuard<'_, HeldEntries> {
    held.lock().unwrap_or_else(|e| e.into_inner())
}

/// Starts a thread (with its own connection) that resets the idle time of
/// the entries held three times per `claim_idle`, so that a task that
/// runs longer than `claim_idle` (or waits behind one) is not claimed from
/// this live worker.
fn heartbeat(url: &str, consumer: &str, claim_idle: Duration) -> anyhow::Result<Held> {
    let held: Held = Default::default();
    let mut broker = Broker::connect(url)?;
    let (shared, consumer) = (held.clone(), consumer.to_string());
    std::thread::Builder::new()
        .name("wasmpool-heartbeat".into())
        .spawn(move || {
            loop {
                std::thread::sleep(claim_idle / 3);
                let (job, ids) = {
                    let held = lock(&shared);
                    let Some(job) = held.job.clone() else {
                        continue;
                    };
                    (job, held.ids.iter().cloned().collect::<Vec<_>>())
                };
                if let Err(e) = broker.touch(&job, &consumer, &ids) {
                    tracing::warn!("job {job}: {e}");
                }
            }
        })
        .context("cannot start the heartbeat thread")?;
    Ok(held)
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

/// What a claim found.
enum Claimed {
    /// An entry to run, alone.
    Run(Delivery),
    /// An entry finished without running (lost, or not one of ours).
    Finished,
    /// Nothing idle to claim.
    None,
}

/// An entry being run: its inputs went into the feed from `first` on.
struct Entry {
    id: String,
    inputs: Vec<Input>,
    /// The result lines so far, by position in the entry.
    lines: Vec<Vec<u8>>,
    left: usize,
}

/// One job fed to a pool through one long-lived [`wasmpool::Feed`]: entries
/// are read from the broker as the pool has room, each input runs as soon
/// as an instance is free (no entry waits for another), and an entry's
/// results are written with its acknowledgement once all its inputs are
/// done.
struct JobRun<'r, 'p> {
    broker: &'r mut Broker,
    consumer: &'r str,
    job: &'r JobId,
    pool: &'p Pool,
    task: &'r Task,
    lines: JobLines<'r>,
    held: &'r Held,
    args: &'r WorkerArgs,
    last_claim: &'r mut Instant,
    /// The entries in the feed, by the feed index of their first input.
    entries: BTreeMap<u64, Entry>,
    /// Entries finished and not yet written, the first since when.
    done: Vec<Finished>,
    done_since: Instant,
}

impl JobRun<'_, '_> {
    /// Runs the job's entries until it has none left for this worker (or,
    /// when `alone` is false, until its time slice is over). Returns how
    /// many tasks ran.
    ///
    /// Entries of a dead worker (idle past --claim-idle) are run one at a
    /// time with nothing else in the pool: a task that kills its worker
    /// then adds deliveries to its own entry only, never to the entries
    /// that happened to be held beside it, so only it ends as `lost`.
    fn run(&mut self, alone: bool) -> anyhow::Result<u64> {
        let pool = self.pool;
        let mut feed = pool.feed(self.task)?;
        lock(self.held).job = Some(self.job.clone());
        let slots = pool.workers() * self.args.mode.concurrency.unwrap_or(1) as usize;
        let started = Instant::now();
        let mut ran = 0u64;
        // Entries finished per second, and the time of a step's round trip
        // to the broker (moving averages): enough entries are held to keep
        // every instance busy through two round trips and FLUSH_EVERY (at
        // least ~10 ms of work, two entries per instance), so that a task
        // never waits on the broker (a broker with `appendfsync always`
        // takes a disk flush per write).
        let mut rate = 0.0f64;
        let mut rate_mark = (Instant::now(), 0u64);
        let mut trip = 0.0f64;
        let mut finished = 0u64;
        let mut inputs_per_entry = 1usize;
        // A dead worker's entries wait: finish what is held, then claim
        // them one by one.
        let mut recovering = false;
        // When the broker last had nothing to read.
        let mut dry_at = None;
        loop {
            while let Some((index, result)) = feed.try_next() {
                ran += 1;
                finished += self.record(index, result)?;
            }
            let elapsed = rate_mark.0.elapsed();
            if elapsed >= Duration::from_millis(50) {
                let now = (finished - rate_mark.1) as f64 / elapsed.as_secs_f64();
                rate = if rate == 0.0 {
                    now
                } else {
                    0.7 * rate + 0.3 * now
                };
                rate_mark = (Instant::now(), finished);
            }
            if !recovering && self.last_claim.elapsed() >= self.args.claim_idle / 4 {
                *self.last_claim = Instant::now();
                recovering = self.broker.has_idle(self.job, self.args.claim_idle)?;
            }
            if recovering && self.entries.is_empty() {
                self.flush()?;
                match self.claim_one()? {
                    Claimed::Run(d) => self.start(&mut feed, d),
                    Claimed::Finished => self.flush()?,
                    Claimed::None => recovering = false,
                }
                continue;
            }
            let cover = (rate * (2.0 * trip + FLUSH_EVERY.as_secs_f64()).max(0.01)).ceil();
            let wanted = (slots + cover as usize).clamp(2 * slots, 1024);
            let room =
                (feed.room() / inputs_per_entry).min(wanted.saturating_sub(self.entries.len()));
            let feeding = !recovering && (alone || started.elapsed() < SLICE);
            // A round trip to the broker (with `appendfsync always`, a disk
            // flush) is made for many entries at once: to read when half the
            // entries wanted are missing (or few are left), to write when a
            // finished entry has waited FLUSH_EVERY; each carries the other.
            let dry = dry_at.is_some_and(|t: Instant| t.elapsed() < DRY_WAIT);
            let read = feeding
                && room > 0
                && (self.entries.is_empty()
                    || (!dry && (2 * room >= wanted || self.entries.len() <= slots)));
            let write = !self.done.is_empty()
                && (self.done_since.elapsed() >= FLUSH_EVERY
                    || self.done.len() >= 256
                    || self.entries.is_empty());
            let mut got = 0;
            if read || write {
                let count = if read { room } else { 0 };
                let deliveries = if self.entries.is_empty() && self.done.is_empty() && alone {
                    // Nothing running: wait on the broker a while.
                    let block = Duration::from_millis(200);
                    self.broker.read(self.job, self.consumer, count, block)?
                } else {
                    let t = Instant::now();
                    let (job, consumer) = (self.job, self.consumer);
                    let d = self
                        .broker
                        .complete_and_read(job, &self.done, consumer, count)?;
                    let secs = t.elapsed().as_secs_f64();
                    trip = if trip == 0.0 {
                        secs
                    } else {
                        0.8 * trip + 0.2 * secs
                    };
                    self.forget_done();
                    d
                };
                if read {
                    dry_at = deliveries.is_empty().then(Instant::now);
                }
                for d in deliveries {
                    inputs_per_entry = inputs_per_entry.max(d.inputs.len());
                    got += 1;
                    self.start(&mut feed, d);
                }
                self.flush()?; // entries not of ours
            }
            if self.entries.is_empty() && got == 0 {
                return Ok(ran);
            }
            if !read && !write {
                // Nothing to do before a result comes, a finished entry is
                // due to be written, or the broker may have more.
                let mut wait = Duration::from_secs(1);
                if !self.done.is_empty() {
                    wait = wait.min(FLUSH_EVERY.saturating_sub(self.done_since.elapsed()));
                }
                if feeding && room > 0 {
                    wait = wait.min(DRY_WAIT);
                }
                if let Some((index, result)) = feed.next_timeout(wait) {
                    ran += 1;
                    finished += self.record(index, result)?;
                }
            }
        }
    }

    /// Claims one entry a dead worker held: to run, or finished here as
    /// `lost` when delivered more than --max-attempts times.
    fn claim_one(&mut self) -> anyhow::Result<Claimed> {
        let (job, idle) = (self.job, self.args.claim_idle);
        let Some(d) = self.broker.claim(job, self.consumer, idle, 1)?.pop() else {
            return Ok(Claimed::None);
        };
        tracing::info!(
            "job {job}: claimed entry {} (delivery {})",
            d.id,
            d.deliveries
        );
        if d.deliveries <= self.args.max_attempts && !d.inputs.is_empty() {
            return Ok(Claimed::Run(d));
        }
        if !d.inputs.is_empty() {
            tracing::warn!(
                "job {job}: entry {} was delivered {} times: its tasks are lost",
                d.id,
                d.deliveries
            );
        }
        let lost = d
            .inputs
            .iter()
            .map(|i| (i.index, lost_line(i.index, d.deliveries - 1)))
            .collect();
        self.finished(d.id, lost);
        Ok(Claimed::Finished)
    }

    /// Puts an entry's inputs into the feed (an entry that is not one of
    /// ours is acknowledged and dropped).
    fn start(&mut self, feed: &mut wasmpool::Feed<'_>, d: Delivery) {
        if d.inputs.is_empty() {
            self.finished(d.id, Vec::new());
            return;
        }
        lock(self.held).ids.insert(d.id.clone());
        let mut first = None;
        for input in &d.inputs {
            let index = feed.push(self.lines.parse(self.task, input));
            first.get_or_insert(index);
        }
        let n = d.inputs.len();
        self.entries.insert(
            first.expect("an entry with inputs"),
            Entry {
                id: d.id,
                inputs: d.inputs,
                lines: vec![Vec::new(); n],
                left: n,
            },
        );
    }

    /// Records the result of feed input `index`; returns 1 when it
    /// finished its entry.
    fn record(&mut self, index: u64, result: Result<Output, TaskError>) -> anyhow::Result<u64> {
        let (&first, entry) = self
            .entries
            .range_mut(..=index)
            .next_back()
            .expect("every feed index is in an entry");
        let k = (index - first) as usize;
        entry.lines[k] = self.lines.line(self.task, &entry.inputs[k], result)?;
        entry.left -= 1;
        if entry.left > 0 {
            return Ok(0);
        }
        let entry = self.entries.remove(&first).expect("looked up above");
        let lines = entry
            .inputs
            .iter()
            .map(|i| i.index)
            .zip(entry.lines)
            .collect();
        self.finished(entry.id, lines);
        Ok(1)
    }

    /// An entry finished: written with the next round trip.
    fn finished(&mut self, id: String, lines: Vec<(u64, Vec<u8>)>) {
        if self.done.is_empty() {
            self.done_since = Instant::now();
        }
        self.done.push((id, lines));
    }

    /// Writes the finished entries' results and acknowledgements.
    fn flush(&mut self) -> anyhow::Result<()> {
        if self.done.is_empty() {
            return Ok(());
        }
        self.broker.complete(self.job, &self.done)?;
        self.forget_done();
        Ok(())
    }

    /// The finished entries are written: no longer held.
    fn forget_done(&mut self) {
        let mut held = lock(self.held);
        for (id, _) in self.done.drain(..) {
            held.ids.remove(&id);
        }
    }
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
