//! Job ids and the Redis keys of a job.

use sha2::{Digest, Sha256};

/// The set of live jobs' ids, which workers read to find work.
pub(crate) const JOBS: &str = "wasmpool:jobs";
/// A stream with an entry for each job opened (capped), that idle workers
/// block on to learn of new jobs at once.
pub(crate) const EVENTS: &str = "wasmpool:events";
/// The consumer group of every job's task stream.
pub(crate) const GROUP: &str = "workers";

/// A job's id: the hex SHA-256 of its module, task and input, so that the
/// same command run again names the same job and re-attaches to it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct JobId(String);

impl JobId {
    /// The id of running `task` of the module `module` on the input whose
    /// SHA-256 is `input` (with `how`: how the input is read, e.g. `json` or
    /// `raw`, since the same bytes read another way are other tasks).
    pub fn derive(module: &[u8], task: &str, input: &[u8; 32], how: &str) -> JobId {
        let mut h = Sha256::new();
        h.update(b"wasmpool job v1\0");
        h.update(Sha256::digest(module));
        h.update((task.len() as u64).to_le_bytes());
        h.update(task.as_bytes());
        h.update(input);
        h.update((how.len() as u64).to_le_bytes());
        h.update(how.as_bytes());
        JobId(hex(&h.finalize()))
    }

    /// An id read from Redis (from the jobs set); `None` unless it is 64
    /// lower-case hex digits, as [`derive`](Self::derive) writes them, so
    /// that a foreign member names no key of ours (an upper-case twin of a
    /// job's id named that job a second time, and stayed in the set after
    /// the job was finished).
    pub fn parse(text: &str) -> Option<JobId> {
        let hex = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
        let ok = text.len() == 64 && text.bytes().all(hex);
        ok.then(|| JobId(text.to_string()))
    }

    /// The 64 hex digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The job's meta hash: `module` (SHA-256), `task`, `name` (the input's
    /// name for messages), `how`, `submitted` (tasks in the stream so far),
    /// `total` (once the whole input is submitted).
    pub(crate) fn meta(&self) -> String {
        format!("wasmpool:job:{}:meta", self.0)
    }

    /// The job's task stream (consumer group [`GROUP`]).
    pub(crate) fn tasks(&self) -> String {
        format!("wasmpool:job:{}:tasks", self.0)
    }

    /// The job's results: index -> result line, written once.
    pub(crate) fn results(&self) -> String {
        format!("wasmpool:job:{}:results", self.0)
    }

    /// A list of at most one element, pushed each time a worker writes
    /// results: the submitter waits on it instead of polling.
    pub(crate) fn ready(&self) -> String {
        format!("wasmpool:job:{}:ready", self.0)
    }

    /// Workers that do not run the job: consumer -> why.
    pub(crate) fn refusals(&self) -> String {
        format!("wasmpool:job:{}:refusals", self.0)
    }
}

impl std::fmt::Display for JobId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The key of a module's bytes, by their hex SHA-256.
pub(crate) fn module(sha: &str) -> String {
    format!("wasmpool:module:{sha}")
}

/// Lower-case hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// The hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn ids_depend_on_everything_and_parse_back() {
        let a = JobId::derive(b"m", "t", &[0; 32], "json");
        assert_eq!(a, JobId::derive(b"m", "t", &[0; 32], "json"));
        assert_ne!(a, JobId::derive(b"m2", "t", &[0; 32], "json"));
        assert_ne!(a, JobId::derive(b"m", "t2", &[0; 32], "json"));
        assert_ne!(a, JobId::derive(b"m", "t", &[1; 32], "json"));
        assert_ne!(a, JobId::derive(b"m", "t", &[0; 32], "raw"));
        assert_eq!(JobId::parse(a.as_str()), Some(a.clone()));
        assert_eq!(JobId::parse("x"), None);
        assert_eq!(JobId::parse(&"g".repeat(64)), None);
        assert_eq!(JobId::parse(&a.as_str().to_ascii_uppercase()), None);
        assert_eq!(JobId::parse(&"a".repeat(63)), None);
        assert!(a.tasks().starts_with("wasmpool:job:"));
    }
}
