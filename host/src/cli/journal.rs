//! `--journal FILE`: a durable record of finished results, so that a run
//! killed halfway can be resumed.
//!
//! Format (JSON lines): a header `{"wasmpool_journal":1,"module_sha256":..,
//! "task":..}`, then one line per finished task, exactly the line `map`
//! prints in its default format (`{"index":N,"ok":..}` or
//! `{"index":N,"error":{..}}`). Results are appended as they are printed and
//! written out whenever the output is flushed, so a killed process loses at
//! most the results it had not yet flushed; `sync_data` runs at most once a
//! second (and at the end), which bounds the loss on power failure too. A
//! last line cut short by a kill is dropped when the journal is reopened.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
struct Header {
    wasmpool_journal: u32,
    module_sha256: String,
    task: String,
}

/// One recorded result, as `map` printed it.
#[derive(Debug, Deserialize)]
pub(crate) struct Entry<'a> {
    pub(crate) index: u64,
    #[serde(borrow)]
    pub(crate) ok: Option<&'a RawValue>,
    pub(crate) error: Option<ErrorBody>,
}

/// The `error` object of an output line.
#[derive(Debug, Deserialize)]
pub(crate) struct ErrorBody {
    pub(crate) kind: String,
    pub(crate) message: String,
}

/// An open journal: what it held when opened, and the file to append to.
pub(crate) struct Journal {
    path: PathBuf,
    done: HashMap<u64, String>,
    out: BufWriter<File>,
    last_sync: Instant,
}

impl Journal {
    /// Opens (or creates) the journal for `task` of the module with these
    /// bytes, reading the results it already holds.
    pub(crate) fn open(path: &Path, module: &[u8], task: &str) -> anyhow::Result<Journal> {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(module);
        let header = Header {
            wasmpool_journal: 1,
            module_sha256: digest.iter().map(|b| format!("{b:02x}")).collect(),
            task: task.to_string(),
        };
        let show = path.display();
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .with_context(|| format!("{show}: cannot open the journal"))?;
        let mut text = String::new();
        file.read_to_string(&mut text)
            .with_context(|| format!("{show}: cannot read the journal"))?;
        let mut done = HashMap::new();
        if text.is_empty() {
            let mut line = serde_json::to_string(&header)?;
            line.push('\n');
            file.write_all(line.as_bytes())?;
        } else {
            let mut lines = text.split_inclusive('\n');
            let first = lines.next().unwrap_or_default();
            let found: Header = serde_json::from_str(first.trim_end())
                .with_context(|| format!("{show}:1: not a wasmpool journal"))?;
            if found != header {
                bail!(
                    "{show}: this journal records task {:?} of a module with SHA-256 {}; this run is task {:?} of {}; \
                     use another journal file, or remove this one to start over",
                    found.task,
                    found.module_sha256,
                    header.task,
                    header.module_sha256
                );
            }
            let mut valid = first.len();
            for (n, line) in lines.enumerate() {
                let complete = line.ends_with('\n');
                match serde_json::from_str::<Entry<'_>>(line.trim_end()) {
                    Ok(entry) if complete => {
                        done.insert(entry.index, line.trim_end().to_string());
                        valid += line.len();
                    }
                    // Cut short by a kill: drop it, and it will run again.
                    _ if !complete => break,
                    Err(e) => bail!("{show}:{}: corrupt journal line: {e}", n + 2),
                    Ok(_) => unreachable!("complete is true here"),
                }
            }
            if valid < text.len() {
                file.set_len(valid as u64)?;
                file.seek(SeekFrom::End(0))?;
            }
        }
        Ok(Journal {
            path: path.to_path_buf(),
            done,
            out: BufWriter::new(file),
            last_sync: Instant::now(),
        })
    }

    /// The recorded line of task `index`, if it finished in an earlier run.
    pub(crate) fn get(&self, index: u64) -> Option<&str> {
        self.done.get(&index).map(String::as_str)
    }

    /// The indices of the results the journal held when opened.
    pub(crate) fn indices(&self) -> impl Iterator<Item = u64> + '_ {
        self.done.keys().copied()
    }

    /// How many results the journal held when opened.
    pub(crate) fn len(&self) -> usize {
        self.done.len()
    }

    /// Records one finished result (its output line, without the newline).
    pub(crate) fn record(&mut self, line: &[u8]) -> anyhow::Result<()> {
        self.out.write_all(line)?;
        self.out.write_all(b"\n")?;
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
