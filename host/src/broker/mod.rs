//! Queue mode: a job's tasks on a Redis Streams consumer group, run by
//! `wasmpool worker`s on any number of machines (issue 16).
//!
//! Keys (a job's id is [`JobId`]: SHA-256 of module, task and input):
//!
//! | key | type | holds |
//! | --- | --- | --- |
//! | `wasmpool:jobs` | set | the ids of live jobs, for workers to find |
//! | `wasmpool:events` | stream | an entry per job opened (capped at ~1,000), to wake idle workers |
//! | `wasmpool:module:{sha256}` | string | a module's bytes, set once |
//! | `wasmpool:job:{id}:meta` | hash | `module`, `task`, `name`, `how`, `submitted`, `total` |
//! | `wasmpool:job:{id}:tasks` | stream, group `workers` | entries of one or more inputs |
//! | `wasmpool:job:{id}:results` | hash | index -> result line, first writer wins |
//! | `wasmpool:job:{id}:ready` | list | at most one element, pushed with each write of results |
//! | `wasmpool:job:{id}:refusals` | hash | consumer -> why it does not run the job |
//!
//! The write path: a worker writes an entry's results with `HSETNX` and
//! acknowledges and deletes the entry, in one `MULTI/EXEC`, so that a
//! result and its ack land together or not at all, and a second run of the
//! same entry (after a claim) changes nothing. The submitter adds entries
//! and moves `submitted` on in one `MULTI/EXEC` too, so a rerun submits
//! exactly the inputs not yet submitted.
//!
//! Connection errors (Redis restarting) are retried for
//! [`Broker::retry_for`]; every operation is idempotent under a retry.

mod entry;
mod keys;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use redis::streams::{StreamAutoClaimReply, StreamId, StreamPendingCountReply, StreamReadReply};
use redis::{Connection, RedisError, RedisResult, Value};

pub use entry::{Delivery, Input};
pub use keys::{JobId, sha256_hex};

/// A failure to use the broker.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BrokerError(String);

impl BrokerError {
    fn new(message: impl Into<String>) -> BrokerError {
        BrokerError(message.into())
    }
}

/// A finished entry: its stream id, and its inputs' `(index, result line)`.
pub type Finished = (String, Vec<(u64, Vec<u8>)>);

/// What a job's meta hash says, for a worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobInfo {
    /// The module's hex SHA-256.
    pub module: String,
    /// The task's name.
    pub task: String,
    /// The input's name, for messages (`in.jsonl`).
    pub name: String,
    /// How the input is read: `json` (JSON lines) or `raw` (text lines).
    pub how: String,
}

/// A connection to a Redis server holding wasmpool jobs (a work queue on
/// Redis Streams consumer groups), which reconnects after connection errors.
pub struct Broker {
    client: redis::Client,
    url: String,
    conn: Option<Connection>,
    retry_for: Duration,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker").field("url", &self.url).finish()
    }
}

/// Whether an error is the connection's (retry), not a command's.
fn is_connection_error(e: &RedisError) -> bool {
    e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() || e.is_timeout()
        // A restarted server still loading its AOF.
        || e.code() == Some("LOADING")
}

impl Broker {
    /// Connects to `url` (`redis://HOST:PORT/DB`).
    ///
    /// # Errors
    ///
    /// When the URL is not one, or the server cannot be reached for the
    /// retry time (a minute).
    pub fn connect(url: &str) -> Result<Broker, BrokerError> {
        let client = redis::Client::open(url)
            .map_err(|e| BrokerError::new(format!("--broker {url}: {e}")))?;
        let mut broker = Broker {
            client,
            url: url.to_string(),
            conn: None,
            retry_for: Duration::from_secs(60),
        };
        broker.run("PING", |c| redis::cmd("PING").query::<String>(c))?;
        Ok(broker)
    }

    /// How long connection errors are retried before an operation fails
    /// [default: a minute].
    pub fn retry_for(&mut self, time: Duration) {
        self.retry_for = time;
    }

    /// Runs `f` on the connection, reconnecting and running it again after
    /// connection errors until the retry time has passed.
    fn run<T>(
        &mut self,
        what: &str,
        mut f: impl FnMut(&mut Connection) -> RedisResult<T>,
    ) -> Result<T, BrokerError> {
        let give_up = Instant::now() + self.retry_for;
        let mut pause = Duration::from_millis(50);
        loop {
            let result = match &mut self.conn {
                Some(conn) => f(conn),
                None => match self
                    .client
                    .get_connection_with_timeout(Duration::from_secs(2))
                {
                    Ok(conn) => {
                        let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
                        self.conn = Some(conn);
                        continue;
                    }
                    Err(e) => Err(e),
                },
            };
            match result {
                Ok(value) => return Ok(value),
                Err(e) if is_connection_error(&e) && Instant::now() < give_up => {
                    tracing::debug!("{}: {what}: {e}; retrying", self.url);
                    self.conn = None;
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_secs(1));
                }
                Err(e) => return Err(BrokerError::new(format!("{}: {what}: {e}", self.url))),
            }
        }
    }

    // ---- the submitter's side ----

    /// Creates job `job` (or finds it, when it exists): uploads the module
    /// once, writes its meta, creates its stream and group, and lists it
    /// for workers. Returns how many of its inputs are submitted already.
    ///
    /// # Errors
    ///
    /// Broker errors.
    pub fn open_job(
        &mut self,
        job: &JobId,
        module: &[u8],
        task: &str,
        name: &str,
        how: &str,
    ) -> Result<u64, BrokerError> {
        let sha = sha256_hex(module);
        self.run("upload the module", |c| {
            redis::cmd("SET")
                .arg(keys::module(&sha))
                .arg(module)
                .arg("NX")
                .query::<Value>(c)
        })?;
        let meta = job.meta();
        self.run("write the job", |c| {
            let mut p = redis::pipe();
            p.atomic();
            for (k, v) in [
                ("module", sha.as_str()),
                ("task", task),
                ("name", name),
                ("how", how),
                ("submitted", "0"),
            ] {
                p.cmd("HSETNX").arg(&meta).arg(k).arg(v).ignore();
            }
            p.query::<()>(c)
        })?;
        // A job's id is derived from its module, task and input, so a meta
        // that names others was not written for this job: refused.
        let found = self.job(job)?;
        let expected = (sha.as_str(), task, how);
        if let Some(info) =
            found.filter(|i| (i.module.as_str(), i.task.as_str(), i.how.as_str()) != expected)
        {
            return Err(BrokerError::new(format!(
                "job {job}: the broker's meta for it names module {}, task {:?}, input read as {:?}, \
                 not this job's {sha}, {task:?}, {how:?}: refusing to use it (delete {meta} if it is stale)",
                info.module, info.task, info.how
            )));
        }
        let tasks = job.tasks();
        self.run("create the group", |c| {
            match redis::cmd("XGROUP")
                .arg("CREATE")
                .arg(&tasks)
                .arg(keys::GROUP)
                .arg("0")
                .arg("MKSTREAM")
                .query::<()>(c)
            {
                Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
                other => other,
            }
        })?;
        self.run("list the job", |c| {
            redis::pipe()
                .cmd("SADD")
                .arg(keys::JOBS)
                .arg(job.as_str())
                .ignore()
                .cmd("XADD")
                .arg(keys::EVENTS)
                .arg("MAXLEN")
                .arg("~")
                .arg(1000)
                .arg("*")
                .arg("job")
                .arg(job.as_str())
                .ignore()
                .query::<()>(c)
        })?;
        self.submitted(job)
    }

    /// How many of the job's inputs are submitted.
    ///
    /// # Errors
    ///
    /// Broker errors.
    pub fn submitted(&mut self, job: &JobId) -> Result<u64, BrokerError> {
        let meta = job.meta();
        let n: Option<u64> = self.run("read the job", |c| {
            redis::cmd("HGET").arg(&meta).arg("submitted").query(c)
        })?;
        n.ok_or_else(|| BrokerError::new(format!("job {job}: it has no meta (deleted?)")))
    }

    /// Submits the inputs `first..end`: `entries` (each one stream entry of
    /// consecutive inputs) and `results` written directly (inputs that
    /// cannot run: index, result line), and records `end` as submitted, in
    /// one transaction. Done already (a retry after the reply was lost) is
    /// success.
    ///
    /// # Errors
    ///
    /// Broker errors, and when `first` is not where the job's submission is.
    pub fn submit(
        &mut self,
        job: &JobId,
        first: u64,
        end: u64,
        entries: &[Vec<Input>],
        results: &[(u64, Vec<u8>)],
    ) -> Result<(), BrokerError> {
        let (meta, tasks, res) = (job.meta(), job.tasks(), job.results());
        let mut out_of_place = None;
        self.run("submit", |c| {
            let at: Option<u64> = redis::cmd("HGET").arg(&meta).arg("submitted").query(c)?;
            if at == Some(end) {
                return Ok(());
            }
            if at != Some(first) {
                out_of_place = Some(at);
                return Ok(());
            }
            let mut p = redis::pipe();
            p.atomic();
            for inputs in entries {
                let fields = entry::encode(inputs);
                p.cmd("XADD").arg(&tasks).arg("*");
                for (k, v) in &fields {
                    p.arg(*k).arg(v.as_slice());
                }
                p.ignore();
            }
            for (index, line) in results {
                p.cmd("HSETNX")
                    .arg(&res)
                    .arg(*index)
                    .arg(line.as_slice())
                    .ignore();
            }
            p.cmd("HSET").arg(&meta).arg("submitted").arg(end).ignore();
            p.query::<()>(c)
        })?;
        match out_of_place {
            None => Ok(()),
            Some(at) => Err(BrokerError::new(format!(
                "job {job}: submitting from input {first}, but the broker has {} submitted \
                 (another submitter of the same job?)",
                at.map_or("none".to_string(), |n| n.to_string())
            ))),
        }
    }

    /// Records that the job has `total` inputs, all submitted.
    ///
    /// # Errors
    ///
    /// Broker errors.
    pub fn set_total(&mut self, job: &JobId, total: u64) -> Result<(), BrokerError> {
        let meta = job.meta();
        self.run("record the total", |c| {
            redis::cmd("HSET")
                .arg(&meta)
                .arg("total")
                .arg(total)
                .query(c)
        })
    }

    /// The result lines of inputs `first..first + count`, `None` for those
    /// not finished.
    ///
    /// # Errors
    ///
    /// Broker errors.
    pub fn results(
        &mut self,
        job: &JobId,
        first: u64,
        count: u64,
    ) -> Result<Vec<Option<Vec<u8>>>, BrokerError> {
        if count == 0 {
            return Ok(Vec::new());
        }
        let res = job.results();
        self.run("read results", |c| {
            let mut cmd = redis::cmd("HMGET");
            cmd.arg(&res);
            for i in first..first + count {
                cmd.arg(i);
            }
            cmd.query(c)
        })
    }

    /// Waits up to `time` for a worker to write results of the job (returns
    /// at once if one has since the last wait).
    ///
    /// # Errors
    ///
    /// Broker errors.
    pub fn wait_for_results(&mut self, job: &JobId, time: Duration) -> Result<(), BrokerError> {
        let ready = job.ready();
        // BLPOP's timeout is in seconds (fractions since Redis 6).
        let secs = time.as_secs_f64().max(0.001);
        self.run("wait for results", |c| {
            redis::cmd("BLPOP").arg(&ready).arg(secs).query::<Value>(c)
        })?;
        Ok(())
    }

    /// Records that worker `consumer` does not run the job, and why (the
    /// submitter shows it while it waits).
    ///
    /// # Errors
    ///
    /// Broker errors.
    pub fn refuse(&mut self, job: &JobId, consumer: &str, why: &str) -> Result<(), BrokerError> {
        let key = job.refusals();
        // Bounded: one field per worker, a short reason each.
        let why: String = why.chars().take(1000).collect();
        self.run("record a refusal", |c| {
            redis::cmd("HSET")
                .arg(&key)
                .arg(consumer)
                .arg(&why)
                .query::<()>(c)
        })
    }

    /// The workers that do not run the job, and why.
    ///
    /// # Errors
    ///
    /// Broker errors.
    pub fn refusals(&mut self, job: &JobId) -> Result<Vec<(String, String)>, BrokerError> {
        let key = job.refusals();
        let map: HashMap<String, String> = self.run("read refusals", |c| {
            redis::cmd("HGETALL").arg(&key).query(c)
        })?;
        let mut list: Vec<_> = map.into_iter().collect();
        list.sort();
        Ok(list)
    }

    /// Deletes the results of inputs `indices` (written out and kept
    /// elsewhere, such as in a journal).
    ///
    /// # Errors
    ///
    /// Broker errors.
    pub fn delete_results(&mut self, job: &JobId, indices: &[u64]) -> Result<(), BrokerError> {
        if indices.is_empty() {
            return Ok(());
        }
        let res = job.results();
        self.run("delete results", |c| {
            redis::cmd("HDEL").arg(&res).arg(indices).query::<()>(c)
        })
    }

    /// Deletes the job: its meta, stream, results, and its place in the
    /// jobs set (the module stays, for other jobs of it).
    ///
    /// # Errors
    ///
    /// Broker errors.
    pub fn finish(&mut self, job: &JobId) -> Result<(), BrokerError> {
        let keys = [
            job.meta(),
            job.tasks(),
            job.results(),
            job.ready(),
            job.refusals(),
        ];
        self.run("delete the job", |c| {
            redis::pipe()
                .atomic()
                .cmd("SREM")
                .arg(keys::JOBS)
                .arg(job.as_str())
                .ignore()
                .cmd("DEL")
                .arg(&keys[..])
                .ignore()
                .query::<()>(c)
        })
    }

    /// Deletes what is left of job `job` if it has ended (no meta): a
    /// worker's last write of results can come after the submitter deleted
    /// the job (`--fail-fast`) and make its `results` and `ready` keys
    /// again. One script, so that a job opened again meanwhile (same id)
    /// loses nothing.
    ///
    /// # Errors
    ///
    /// Broker errors.
    pub fn forget_if_gone(&mut self, job: &JobId) -> Result<(), BrokerError> {
        let keys = [job.meta(), job.results(), job.ready(), job.refusals()];
        let script = redis::Script::new(
            "if redis.call('EXISTS', KEYS[1]) == 0 then \
               return redis.call('DEL', KEYS[2], KEYS[3], KEYS[4]) end return 0",
        );
        self.run("forget an ended job", |c| {
            script.key(&keys[..]).invoke::<()>(c)
        })
    }

    // ---- the worker's side ----

    /// The live jobs.
    ///
    /// # Errors
    ///
    /// Broker errors.
    pub fn jobs(&mut self) -> Result<Vec<JobId>, BrokerError> {
        let ids: Vec<String> = self.run("list jobs", |c| {
            redis::cmd("SMEMBERS").arg(keys::JOBS).query(c)
        })?;
        let mut jobs: Vec<JobId> = ids.iter().filter_map(|s| JobId::parse(s)).collect();
        jobs.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        Ok(jobs)
    }

    /// The id of the latest job event: where [`wait_for_jobs`](Self::wait_for_jobs)
    /// starts, read before listing the jobs so that no job opened in
    /// between is missed.
    ///
    /// # Errors
    ///
    /// Broker errors.
    pub fn last_job_event(&mut self) -> Result<String, BrokerError> {
        let last: redis::streams::StreamRangeReply = self.run("read job events", |c| {
            redis::cmd("XREVRANGE")
                .arg(keys::EVENTS)
                .arg("+")
                .arg("-")
                .arg("COUNT")
                .arg(1)
                .query(c)
        })?;
        Ok(last.ids.into_iter().next().map_or("0-0".into(), |id| id.id))
    }

    /// Waits up to `time` for a job to be opened after event `since` (see
    /// [`last_job_event`](Self::last_job_event)), which it moves on.
    /// Returns whether one was.
    ///
    /// # Errors
    ///
    /// Broker errors.
    pub fn wait_for_jobs(
        &mut self,
        since: &mut String,
        time: Duration,
    ) -> Result<bool, BrokerError> {
        let from = since.clone();
        let reply: Option<StreamReadReply> = self.run("wait for jobs", |c| {
            redis::cmd("XREAD")
                .arg(block_args(time.max(Duration::from_millis(1))))
                .arg("COUNT")
                .arg(64)
                .arg("STREAMS")
                .arg(keys::EVENTS)
                .arg(&from)
                .query(c)
        })?;
        let last = reply
            .into_iter()
            .flat_map(|r| r.keys)
            .flat_map(|k| k.ids)
            .last();
        Ok(match last {
            Some(id) => {
                *since = id.id;
                true
            }
            None => false,
        })
    }

    /// A job's meta; `None` when it is gone.
    ///
    /// # Errors
    ///
    /// Broker errors.
    pub fn job(&mut self, job: &JobId) -> Result<Option<JobInfo>, BrokerError> {
        let meta = job.meta();
        let fields: Vec<Option<String>> = self.run("read the job", |c| {
            redis::cmd("HMGET")
                .arg(&meta)
                .arg(&["module", "task", "name", "how"])
                .query(c)
        })?;
        let mut it = fields.into_iter();
        let mut next = || it.next().flatten();
        Ok(match (next(), next(), next(), next()) {
            (Some(module), Some(task), Some(name), Some(how)) => Some(JobInfo {
                module,
                task,
                name,
                how,
            }),
            _ => None,
        })
    }

    /// The module whose hex SHA-256 is `sha`, checked against it.
    ///
    /// # Errors
    ///
    /// When it is missing or its bytes have another hash.
    pub fn module(&mut self, sha: &str) -> Result<Vec<u8>, BrokerError> {
        let key = keys::module(sha);
        let bytes: Option<Vec<u8>> =
            self.run("fetch the module", |c| redis::cmd("GET").arg(&key).query(c))?;
        let bytes = bytes.ok_or_else(|| BrokerError::new(format!("{key}: no such module")))?;
        let actual = sha256_hex(&bytes);
        if actual != sha {
            return Err(BrokerError::new(format!(
                "{key}: the module's SHA-256 is {actual}: refusing it"
            )));
        }
        Ok(bytes)
    }

    /// Up to `count` new entries of the job for `consumer`, waiting up to
    /// `block` for one (zero: not waiting). None when the job is gone.
    ///
    /// # Errors
    ///
    /// Broker errors.
    pub fn read(
        &mut self,
        job: &JobId,
        consumer: &str,
        count: usize,
        block: Duration,
    ) -> Result<Vec<Delivery>, BrokerError> {
        let tasks = job.tasks();
        let reply: Option<StreamReadReply> = self.run("read tasks", |c| {
            match read_cmd(&tasks, consumer, count, block).query(c) {
                Err(e) if job_gone(&e) => Ok(None),
                other => other,
            }
        })?;
        let ids = reply.into_iter().flat_map(|r| r.keys).flat_map(|k| k.ids);
        Ok(ids.map(|id| delivery(id, 1)).collect())
    }

    /// Claims for `consumer` up to `count` entries of the job that were
    /// delivered to a consumer and not acknowledged for `idle` (a dead
    /// worker's), with how many times each has been delivered now.
    ///
    /// # Errors
    ///
    /// Broker errors.
    pub fn claim(
        &mut self,
        job: &JobId,
        consumer: &str,
        idle: Duration,
        count: usize,
    ) -> Result<Vec<Delivery>, BrokerError> {
        let tasks = job.tasks();
        let reply: Option<StreamAutoClaimReply> = self.run("claim tasks", |c| {
            let r = redis::cmd("XAUTOCLAIM")
                .arg(&tasks)
                .arg(keys::GROUP)
                .arg(consumer)
                .arg(idle.as_millis() as u64)
                .arg("0-0")
                .arg("COUNT")
                .arg(count)
                .query(c);
            match r {
                Err(e) if job_gone(&e) => Ok(None),
                other => other.map(Some),
            }
        })?;
        let Some(reply) = reply.filter(|r| !r.claimed.is_empty()) else {
            return Ok(Vec::new());
        };
        // The delivery counts: every claimed entry is this consumer's now.
        let pending: StreamPendingCountReply = self.run("count deliveries", |c| {
            redis::cmd("XPENDING")
                .arg(&tasks)
                .arg(keys::GROUP)
                .arg("-")
                .arg("+")
                .arg(count.max(1) * 4 + 64)
                .arg(consumer)
                .query(c)
        })?;
        let counts: HashMap<String, usize> = pending
            .ids
            .into_iter()
            .map(|p| (p.id, p.times_delivered))
            .collect();
        Ok(reply
            .claimed
            .into_iter()
            .map(|id| {
                let n = counts.get(&id.id).copied().unwrap_or(1) as u64;
                delivery(id, n)
            })
            .collect())
    }

    /// Whether some entry of the job has been held unacknowledged for
    /// `idle` or longer (a dead worker's), without claiming it.
    ///
    /// # Errors
    ///
    /// Broker errors.
    pub fn has_idle(&mut self, job: &JobId, idle: Duration) -> Result<bool, BrokerError> {
        let tasks = job.tasks();
        let pending: Option<StreamPendingCountReply> = self.run("look for idle tasks", |c| {
            let r = redis::cmd("XPENDING")
                .arg(&tasks)
                .arg(keys::GROUP)
                .arg("IDLE")
                .arg(idle.as_millis() as u64)
                .arg("-")
                .arg("+")
                .arg(1)
                .query(c);
            match r {
                Err(e) if job_gone(&e) => Ok(None),
                other => other.map(Some),
            }
        })?;
        Ok(pending.is_some_and(|p| !p.ids.is_empty()))
    }

    /// Resets the idle time of entries `ids` that `consumer` holds (a
    /// heartbeat while they run, so that a task longer than the claim time
    /// is not claimed from a live worker). `XCLAIM ... JUSTID` to the same
    /// consumer: their delivery counts do not change.
    ///
    /// # Errors
    ///
    /// Broker errors.
    pub fn touch(
        &mut self,
        job: &JobId,
        consumer: &str,
        ids: &[String],
    ) -> Result<(), BrokerError> {
        if ids.is_empty() {
            return Ok(());
        }
        let tasks = job.tasks();
        self.run("touch tasks", |c| {
            let r = redis::cmd("XCLAIM")
                .arg(&tasks)
                .arg(keys::GROUP)
                .arg(consumer)
                .arg(0)
                .arg(ids)
                .arg("JUSTID")
                .query::<Value>(c);
            match r {
                Err(e) if job_gone(&e) => Ok(Value::Nil),
                other => other,
            }
        })?;
        Ok(())
    }

    /// Writes the results of finished entries (`(entry id, [(index, result
    /// line)])`), first writer wins, and acknowledges and deletes the
    /// entries, in one transaction.
    ///
    /// # Errors
    ///
    /// Broker errors.
    pub fn complete(&mut self, job: &JobId, done: &[Finished]) -> Result<(), BrokerError> {
        if done.is_empty() {
            return Ok(());
        }
        self.run("write results", |c| {
            let mut p = redis::pipe();
            p.cmd("MULTI").ignore();
            complete_into(&mut p, job, done);
            p.cmd("EXEC");
            let (exec,): (Value,) = p.query(c)?;
            check_exec(&exec)
        })
    }

    /// [`complete`](Self::complete) and then [`read`](Self::read) (not
    /// waiting) in one round trip: a worker's step. With `appendfsync
    /// always`, every round trip that writes waits for a disk flush.
    ///
    /// # Errors
    ///
    /// Broker errors.
    pub fn complete_and_read(
        &mut self,
        job: &JobId,
        done: &[Finished],
        consumer: &str,
        count: usize,
    ) -> Result<Vec<Delivery>, BrokerError> {
        if count == 0 {
            self.complete(job, done)?;
            return Ok(Vec::new());
        }
        if done.is_empty() {
            return self.read(job, consumer, count, Duration::ZERO);
        }
        let tasks = job.tasks();
        let reply: Option<StreamReadReply> = self.run("write results and read tasks", |c| {
            let mut p = redis::pipe();
            p.cmd("MULTI").ignore();
            complete_into(&mut p, job, done);
            // EXEC's replies are checked: a command of it that failed (a
            // key of another type) does not undo the others.
            p.cmd("EXEC");
            p.add_command(read_cmd(&tasks, consumer, count, Duration::ZERO));
            let (exec, read): (Value, Value) = match p.query(c) {
                Err(e) if job_gone(&e) => return Ok(None),
                other => other?,
            };
            check_exec(&exec)?;
            let read = match read {
                Value::ServerError(e) => Err(RedisError::from(e)),
                read => redis::from_redis_value(read).map_err(RedisError::from),
            };
            match read {
                // The job ended (the results were written: EXEC ran first).
                Err(e) if job_gone(&e) => Ok(None),
                other => other,
            }
        })?;
        let ids = reply.into_iter().flat_map(|r| r.keys).flat_map(|k| k.ids);
        Ok(ids.map(|id| delivery(id, 1)).collect())
    }

    /// How many entries of the job are in its stream (not yet finished).
    ///
    /// # Errors
    ///
    /// Broker errors.
    pub fn backlog(&mut self, job: &JobId) -> Result<u64, BrokerError> {
        let tasks = job.tasks();
        self.run("count tasks", |c| redis::cmd("XLEN").arg(&tasks).query(c))
    }
}

/// Adds to `p` the commands that write the results of `done` (first writer
/// wins), acknowledge and delete their entries, and wake the submitter;
/// run in one `MULTI/EXEC`.
fn complete_into(p: &mut redis::Pipeline, job: &JobId, done: &[Finished]) {
    let (tasks, res, ready) = (job.tasks(), job.results(), job.ready());
    for (id, lines) in done {
        for (index, line) in lines {
            p.cmd("HSETNX")
                .arg(&res)
                .arg(*index)
                .arg(line.as_slice())
                .ignore();
        }
        p.cmd("XACK").arg(&tasks).arg(keys::GROUP).arg(id).ignore();
        p.cmd("XDEL").arg(&tasks).arg(id).ignore();
    }
    // Wakes the submitter (see `wait_for_results`).
    p.cmd("LPUSH").arg(&ready).arg(1).ignore();
    p.cmd("LTRIM").arg(&ready).arg(0).arg(0).ignore();
}

/// The first error among the replies of an `EXEC`, if any.
fn check_exec(exec: &Value) -> RedisResult<()> {
    match exec {
        Value::ServerError(e) => Err(e.clone().into()),
        Value::Array(replies) => replies.iter().try_for_each(check_exec),
        _ => Ok(()),
    }
}

/// A delivery of a stream entry; an entry that is not ours has no inputs.
fn delivery(id: StreamId, deliveries: u64) -> Delivery {
    Delivery {
        inputs: entry::decode(&id.map).unwrap_or_default(),
        id: id.id,
        deliveries,
    }
}

/// `XREADGROUP` of up to `count` new entries of stream `tasks` for
/// `consumer`, waiting up to `block`.
fn read_cmd(tasks: &str, consumer: &str, count: usize, block: Duration) -> redis::Cmd {
    let mut cmd = redis::cmd("XREADGROUP");
    cmd.arg("GROUP")
        .arg(keys::GROUP)
        .arg(consumer)
        .arg("COUNT")
        .arg(count)
        .arg(block_args(block))
        .arg("STREAMS")
        .arg(tasks)
        .arg(">");
    cmd
}

/// `BLOCK ms` for a wait, nothing for none (`BLOCK 0` waits for ever).
fn block_args(block: Duration) -> Vec<String> {
    match block.as_millis() {
        0 => Vec::new(),
        ms => vec!["BLOCK".into(), ms.to_string()],
    }
}

/// Whether an error says the job's stream is gone (the job ended, its keys
/// deleted, even while a read waited on it).
fn job_gone(e: &RedisError) -> bool {
    matches!(e.code(), Some("NOGROUP" | "UNBLOCKED"))
}
