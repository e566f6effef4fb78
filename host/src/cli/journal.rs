//! `--journal FILE`: a durable record of finished results, bound to the
//! input they came from, so that a run killed halfway can be resumed.
//!
//! Format (JSON lines, version 2): a header `{"wasmpool_journal":2,
//! "module_sha256":..,"task":..}`, then one record per finished task:
//!
//! ```text
//! {"index":N,"input":"<hash>","check":"<hash>","line":<output line>}
//! ```
//!
//! `line` is, byte for byte, the line `map` printed in its default format
//! (`{"index":N,"ok":..}` or `{"index":N,"error":{..}}`), so a replay can
//! write it back verbatim. `input` is the first 16 hex digits of the SHA-256
//! of the task's input text (the JSON the task gets: a JSON line without its
//! line ending, a `--raw` line as a JSON string, an `--input-array` element
//! as written, a `--range` number), so a resume with other input is refused,
//! and the same input read another way is the same input; `check` is the
//! same over the index, `input` and `line`, so an edited or damaged record
//! is refused (it guards against accidents, not against someone who
//! recomputes it). A journal may hold several records for one index
//! (`--retry-failed` appends the new result of a failed task): the last one
//! counts.
//!
//! Results are appended as they are printed and written out whenever the
//! output is flushed, so a killed process loses at most the results it had
//! not yet flushed; `sync_data` runs at most once a second (and at the end),
//! which bounds the loss on power failure too. A last record cut short by a
//! kill is dropped when the journal is reopened, and a header that lost its
//! newline gets it back; anything else that is not a valid record is refused.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sha2::Digest;

/// The format this wasmpool writes and reads.
const VERSION: u32 = 2;

/// What to tell the user to do about a journal that does not fit the run.
const START_OVER: &str = "use a new journal, or remove this one to start over";

#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
struct Header {
    wasmpool_journal: u32,
    module_sha256: String,
    task: String,
}

/// Just the version of a header, to refuse other formats by name.
#[derive(Debug, Deserialize)]
struct Version {
    wasmpool_journal: u32,
}

/// One record as stored.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Record<'a> {
    index: u64,
    input: &'a str,
    check: &'a str,
    #[serde(borrow)]
    line: &'a RawValue,
}

/// One recorded result, as `map` printed it.
#[derive(Debug, Deserialize)]
pub(crate) struct Entry<'a> {
    pub(crate) index: u64,
    /// Present whenever the line has `ok`, even `"ok":null` (a task that
    /// returned `null`): a plain `Option` would read that as absent.
    #[serde(borrow, default, deserialize_with = "present")]
    pub(crate) ok: Option<&'a RawValue>,
    pub(crate) error: Option<ErrorBody>,
}

/// Deserializes a field that is there, whatever its value, as `Some`.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

/// The `error` object of an output line.
#[derive(Debug, Deserialize)]
pub(crate) struct ErrorBody {
    pub(crate) kind: String,
    pub(crate) message: String,
}

/// The hash that binds a record to its input: the first 8 bytes of the
/// SHA-256 of the task's input text (a line without its trailing `\n` or
/// `\r\n`).
pub(crate) type InputHash = u64;

/// The [`InputHash`] of one input line (as read, line ending included or not).
pub(crate) fn input_hash(line: &[u8]) -> InputHash {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    first_u64(&sha2::Sha256::digest(line))
}

/// The check of a record: the first 8 bytes of the SHA-256 of its index, its
/// input hash (as written) and its output line.
fn check_hash(index: u64, input: &str, line: &[u8]) -> u64 {
    let mut sha = sha2::Sha256::new();
    sha.update(format!("{index}\n{input}\n").as_bytes());
    sha.update(line);
    first_u64(&sha.finalize())
}

fn first_u64(digest: &[u8]) -> u64 {
    u64::from_be_bytes(digest[..8].try_into().expect("a SHA-256 has 32 bytes"))
}

/// 16 lowercase hex digits.
fn hex16(n: u64) -> String {
    format!("{n:016x}")
}

/// 16 lowercase hex digits back to their value.
fn parse_hex16(s: &str) -> Option<u64> {
    let hex = s.len() == 16 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    hex.then(|| u64::from_str_radix(s, 16).ok()).flatten()
}

/// The newest record of one index.
#[derive(Debug)]
struct Held {
    /// The output line, to replay verbatim.
    line: String,
    input: InputHash,
    failed: bool,
    /// Its line number in the journal (from 1, the header).
    at: u64,
}

/// An open journal: what it held when opened, and the file to append to.
pub(crate) struct Journal {
    path: PathBuf,
    done: HashMap<u64, Held>,
    out: BufWriter<File>,
    record: Vec<u8>,
    last_sync: Instant,
}

impl Journal {
    /// Opens (or creates) the journal for `task` of the module with these
    /// bytes, reading and checking the results it already holds.
    pub(crate) fn open(path: &Path, module: &[u8], task: &str) -> anyhow::Result<Journal> {
        let digest = sha2::Sha256::digest(module);
        let header = Header {
            wasmpool_journal: VERSION,
            module_sha256: digest.iter().map(|b| format!("{b:02x}")).collect(),
            task: task.to_string(),
        };
        let show = path.display();
        // It is read back whole, then appended to: a FIFO or `/dev/stdout`
        // on a pipe would wait for good, a device fails on its first sync.
        if let Ok(meta) = std::fs::metadata(path)
            && !meta.is_file()
        {
            bail!(
                "{show}: is not a regular file; --journal needs one, as it is read back on a rerun"
            );
        }
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .with_context(|| format!("{show}: cannot open the journal"))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .with_context(|| format!("{show}: cannot read the journal"))?;
        let mut done = HashMap::new();
        if bytes.is_empty() {
            let mut line = serde_json::to_string(&header)?;
            line.push('\n');
            file.write_all(line.as_bytes())
                .with_context(|| format!("{show}: cannot write the journal"))?;
        } else {
            let mut lines = bytes.split_inclusive(|&b| b == b'\n');
            let first = lines.next().unwrap_or_default();
            check_header(&show, first, &header)?;
            let mut valid = first.len();
            for (n, line) in (2..).zip(lines) {
                let Some(record) = line.strip_suffix(b"\n") else {
                    // A last line without its newline: a record cut short by
                    // a kill is dropped, and its task will run again.
                    if !is_cut_record(line) {
                        bail!("{show}:{n}: not a journal record; {START_OVER}");
                    }
                    break;
                };
                let (index, held) = read_record(record, n)
                    .map_err(|why| anyhow::anyhow!("{show}:{n}: {why}; {START_OVER}"))?;
                done.insert(index, held);
                valid += line.len();
            }
            if !first.ends_with(b"\n") {
                // A header that lost its newline: give it back before
                // anything is appended to it.
                file.write_all(b"\n")
                    .with_context(|| format!("{show}: cannot write the journal"))?;
            } else if valid < bytes.len() {
                file.set_len(valid as u64)
                    .with_context(|| format!("{show}: cannot write the journal"))?;
                file.seek(SeekFrom::End(0))?;
            }
        }
        Ok(Journal {
            path: path.to_path_buf(),
            done,
            out: BufWriter::new(file),
            record: Vec::with_capacity(256),
            last_sync: Instant::now(),
        })
    }

    /// What the input side needs to decide, line by line, which results to
    /// replay: with `retry_failed`, recorded failures run again.
    pub(crate) fn plan(&self, retry_failed: bool) -> Plan {
        Plan {
            path: self.path.display().to_string(),
            held: self
                .done
                .iter()
                .map(|(&index, held)| {
                    let replay = !(retry_failed && held.failed);
                    (index, (held.input, replay, held.at))
                })
                .collect(),
        }
    }

    /// The recorded output line of task `index`, if it finished in an
    /// earlier run.
    pub(crate) fn get(&self, index: u64) -> Option<&str> {
        self.done.get(&index).map(|held| held.line.as_str())
    }

    /// How many results the journal held when opened.
    pub(crate) fn len(&self) -> usize {
        self.done.len()
    }

    /// Refuses a journal that holds results past the last of the `tasks`
    /// inputs of `input_name`: it was written for a longer input.
    pub(crate) fn check_covers(&self, tasks: u64, input_name: &str) -> anyhow::Result<()> {
        let beyond = self.done.iter().filter(|&(&index, _)| index >= tasks);
        if let Some((index, held)) = beyond.min_by_key(|&(&index, _)| index) {
            bail!(
                "{}:{}: this journal holds the result of task {index}, but {input_name} has only {tasks} \
                 tasks, so the journal was written for another input; {START_OVER}",
                self.path.display(),
                held.at,
            );
        }
        Ok(())
    }

    /// Refuses a journal that holds results outside the tasks `first..end`
    /// of a shard (`shard` describes it): it is another shard's, or of
    /// another split of the input. Indices are global, so a shard's journal
    /// holds `first..end` only.
    pub(crate) fn check_shard(&self, first: u64, end: u64, shard: &str) -> anyhow::Result<()> {
        let outside = self
            .done
            .iter()
            .filter(|&(&index, _)| index < first || index >= end);
        if let Some((index, held)) = outside.min_by_key(|&(&index, _)| index) {
            bail!(
                "{}:{}: this journal holds the result of task {index}, outside {shard}, so it is \
                 the journal of another shard (or of another split of the input); give each shard \
                 its own journal (e.g. --journal run.journal.K), or {START_OVER}",
                self.path.display(),
                held.at,
            );
        }
        Ok(())
    }

    /// Records one finished result: its index, the hash of its input line
    /// and its output line (without the newline). A line that cannot be one
    /// record (not UTF-8, or holding a raw newline) is not recorded, so
    /// that task runs again on resume.
    pub(crate) fn record(
        &mut self,
        index: u64,
        input: InputHash,
        line: &[u8],
    ) -> anyhow::Result<()> {
        if std::str::from_utf8(line).is_err() || line.contains(&b'\n') {
            tracing::warn!(
                "{}: the output of task {index} is not one line of UTF-8, so it is not journaled",
                self.path.display()
            );
            return Ok(());
        }
        let input = hex16(input);
        let check = hex16(check_hash(index, &input, line));
        let r = &mut self.record;
        r.clear();
        r.extend_from_slice(b"{\"index\":");
        r.extend_from_slice(index.to_string().as_bytes());
        r.extend_from_slice(b",\"input\":\"");
        r.extend_from_slice(input.as_bytes());
        r.extend_from_slice(b"\",\"check\":\"");
        r.extend_from_slice(check.as_bytes());
        r.extend_from_slice(b"\",\"line\":");
        r.extend_from_slice(line);
        r.extend_from_slice(b"}\n");
        // One write for the whole record, so the file only ever ends in a
        // record cut short, never in one missing just its newline.
        self.out.write_all(r)?;
        Ok(())
    }

    /// Writes what is buffered to the file; syncs it at most once a second.
    pub(crate) fn flush(&mut self, force_sync: bool) -> anyhow::Result<()> {
        self.out
            .flush()
            .with_context(|| format!("{}: cannot write the journal", self.path.display()))?;
        if force_sync || self.last_sync.elapsed() >= Duration::from_secs(1) {
            self.out.get_ref().sync_data()?;
            self.last_sync = Instant::now();
        }
        Ok(())
    }
}

/// Refuses a first line that is not `expected` (ignoring a missing newline).
fn check_header(
    show: &impl std::fmt::Display,
    first: &[u8],
    expected: &Header,
) -> anyhow::Result<()> {
    let first = first.strip_suffix(b"\n").unwrap_or(first);
    let version: Version = serde_json::from_slice(first)
        .with_context(|| format!("{show}:1: not a wasmpool journal"))?;
    match version.wasmpool_journal {
        VERSION => {}
        v if v < VERSION => bail!(
            "{show}: this journal was written by an older wasmpool (journal format {v}, \
             which does not record the input); remove it to start over"
        ),
        v => bail!(
            "{show}: this journal was written by a newer wasmpool (journal format {v}); \
             use a new journal, or that wasmpool"
        ),
    }
    let found: Header = serde_json::from_slice(first)
        .with_context(|| format!("{show}:1: not a wasmpool journal"))?;
    if found != *expected {
        bail!(
            "{show}: this journal records task {:?} of a module with SHA-256 {}; this run is task {:?} of {}; \
             use another journal file, or remove this one to start over",
            found.task,
            found.module_sha256,
            expected.task,
            expected.module_sha256
        );
    }
    Ok(())
}

/// Whether a last line without its newline can be the start of a record
/// (what a kill while appending leaves), rather than something else.
fn is_cut_record(line: &[u8]) -> bool {
    const START: &[u8] = b"{\"index\":";
    line.starts_with(START) || START.starts_with(line)
}

/// Reads and checks one record (without its newline), the `n`th line.
fn read_record(record: &[u8], n: u64) -> Result<(u64, Held), String> {
    let r: Record<'_> =
        serde_json::from_slice(record).map_err(|e| format!("not a journal record ({e})"))?;
    let input = parse_hex16(r.input).ok_or("not a journal record (a bad input hash)")?;
    let line = r.line.get();
    if parse_hex16(r.check) != Some(check_hash(r.index, r.input, line.as_bytes())) {
        return Err(format!(
            "the record of task {} does not match its check hash, so the journal was edited or damaged",
            r.index
        ));
    }
    let entry: Entry<'_> =
        serde_json::from_str(line).map_err(|e| format!("not a journal record ({e})"))?;
    if entry.index != r.index || entry.ok.is_some() == entry.error.is_some() {
        return Err(format!(
            "not a journal record (its line is not the result of task {})",
            r.index
        ));
    }
    let held = Held {
        line: line.to_string(),
        input,
        failed: entry.error.is_some(),
        at: n,
    };
    Ok((r.index, held))
}

/// Which inputs to replay from the journal, and the input lines it was
/// written for; cheap to hand to the input side of `map`.
#[derive(Debug)]
pub(crate) struct Plan {
    path: String,
    /// Per index: the input hash, whether to replay, the journal line.
    held: HashMap<u64, (InputHash, bool, u64)>,
}

impl Plan {
    /// Whether to replay the result of input `index`, whose line hashes to
    /// `input`; an error (to prefix with the input's file and line) if the
    /// journal recorded a result for another input line there.
    pub(crate) fn replay(&self, index: u64, input: InputHash) -> Result<bool, String> {
        match self.held.get(&index) {
            None => Ok(false),
            Some(&(held, replay, _)) if held == input => Ok(replay),
            Some(&(_, _, at)) => Err(format!(
                "this input line differs from the one journaled for task {index} ({}:{at}); {START_OVER}",
                self.path
            )),
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn input_hash_ignores_the_line_ending_only() {
        assert_eq!(input_hash(b"[1, 2]\n"), input_hash(b"[1, 2]"));
        assert_eq!(input_hash(b"[1, 2]\r\n"), input_hash(b"[1, 2]"));
        assert_ne!(input_hash(b"[1, 2] \n"), input_hash(b"[1, 2]"));
        assert_eq!(hex16(input_hash(b"abc")), "ba7816bf8f01cfea");
    }

    #[test]
    fn records_round_trip_verbatim_and_the_newest_wins() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        let ok = br#"{"index":0,"ok":{"b": 1,"a":[1.50, "\u00e9"]}}"#;
        let failed = br#"{"index":1,"error":{"kind":"guest","message":"no"}}"#;
        let retried = br#"{"index":1,"ok":2}"#;
        let mut j = Journal::open(&path, b"module", "t").unwrap();
        j.record(0, input_hash(b"0"), ok).unwrap();
        j.record(1, input_hash(b"1"), failed).unwrap();
        j.record(2, input_hash(b"2"), b"{\"index\":2,\"ok\":[1,\n2]}")
            .unwrap();
        j.flush(true).unwrap();
        drop(j);
        let j = Journal::open(&path, b"module", "t").unwrap();
        assert_eq!(j.get(0).unwrap().as_bytes(), ok);
        assert_eq!(j.get(1).unwrap().as_bytes(), failed);
        assert_eq!(j.get(2), None, "a multi-line output is not journaled");
        let plan = j.plan(true);
        assert_eq!(plan.replay(0, input_hash(b"0")), Ok(true));
        assert_eq!(plan.replay(1, input_hash(b"1")), Ok(false), "retried");
        assert_eq!(j.plan(false).replay(1, input_hash(b"1")), Ok(true));
        assert!(
            plan.replay(0, input_hash(b"7"))
                .unwrap_err()
                .contains(":2);")
        );
        let mut j = j;
        j.record(1, input_hash(b"1"), retried).unwrap();
        j.flush(true).unwrap();
        drop(j);
        let j = Journal::open(&path, b"module", "t").unwrap();
        assert_eq!(j.get(1).unwrap().as_bytes(), retried);
        assert_eq!(j.len(), 2);
        assert!(j.check_covers(2, "in").is_ok());
        let err = j.check_covers(1, "in").unwrap_err().to_string();
        assert!(
            err.contains(":4: this journal holds the result of task 1"),
            "{err}"
        );
        assert!(j.check_shard(0, 3, "shard 0/2").is_ok());
        let err = j
            .check_shard(1, 3, "shard 1/2 (tasks 1..3)")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(":2: this journal holds the result of task 0, outside shard 1/2"),
            "{err}"
        );
    }
}
