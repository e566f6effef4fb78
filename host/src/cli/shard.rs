//! `map --shard K/N`: run one contiguous block of the input's tasks, for
//! array schedulers (Slurm job arrays, Kubernetes Indexed Jobs), and describe
//! it in a sidecar file `OUT.shard` that `wasmpool merge` checks.
//!
//! The blocks are sized like `numpy.array_split`: of `total` tasks in `N`
//! shards, the first `total % N` get one task more. The total must be known
//! before the shard starts: a regular input file is read once to count (and
//! hash) it, a `--range` knows its length, and stdin cannot be split without
//! reading it all, so it is refused.
//!
//! The output file holds plain result lines, exactly the lines a single run
//! prints for those tasks (with their global indices), so consumers need
//! nothing new; the sidecar says which job (module, task, input) and which
//! range the output holds, how many tasks ran, and the SHA-256 of the
//! output, so that `merge` can refuse a set that is incomplete, mixed or
//! changed.

use std::cell::RefCell;
use std::fmt;
use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use sha2::Digest;

use super::args::MapArgs;
use super::input;

/// The sidecar format this wasmpool writes and reads.
pub(crate) const VERSION: u32 = 1;

/// What `--shard` names: a fixed `K/N`, or `auto` (from the scheduler's
/// environment).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ShardArg {
    Fixed { k: u64, n: u64 },
    Auto,
}

/// Parses `K/N` (0-based K < N, N >= 1) or `auto`.
pub(crate) fn parse_shard(s: &str) -> Result<ShardArg, String> {
    if s.trim() == "auto" {
        return Ok(ShardArg::Auto);
    }
    let usage = || {
        format!(
            "{s:?} is not a shard: K/N runs the K-th of N shards, from 0 (0/4 to 3/4); \
             `auto` takes them from SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT or \
             JOB_COMPLETION_INDEX/JOB_COMPLETIONS"
        )
    };
    let (k, n) = s.split_once('/').ok_or_else(usage)?;
    let k: u64 = k.trim().parse().map_err(|_| usage())?;
    let n: u64 = n.trim().parse().map_err(|_| usage())?;
    if n == 0 {
        return Err(format!("{s:?}: N must be at least 1"));
    }
    if k >= n {
        return Err(format!(
            "{s:?}: shards count from 0, so K must be below N (the last of {n} is {}/{n})",
            n - 1
        ));
    }
    Ok(ShardArg::Fixed { k, n })
}

/// The shard a run takes: K of N, and where that came from (for messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Shard {
    pub(crate) k: u64,
    pub(crate) n: u64,
    /// `--shard 1/3`, or the variables `auto` read.
    pub(crate) from: String,
}

impl ShardArg {
    /// The shard, reading the scheduler's variables through `var` for `auto`.
    pub(crate) fn resolve(self, var: impl Fn(&str) -> Option<String>) -> anyhow::Result<Shard> {
        match self {
            ShardArg::Fixed { k, n } => Ok(Shard {
                k,
                n,
                from: format!("--shard {k}/{n}"),
            }),
            ShardArg::Auto => auto(&var),
        }
    }
}

/// `--shard auto`: Slurm's array variables, else Kubernetes' Indexed Job ones.
fn auto(var: &dyn Fn(&str) -> Option<String>) -> anyhow::Result<Shard> {
    let number = |name: &str| -> anyhow::Result<Option<u64>> {
        match var(name) {
            None => Ok(None),
            Some(v) if v.trim().is_empty() => Ok(None),
            Some(v) => v.trim().parse::<u64>().map(Some).map_err(|_| {
                anyhow::anyhow!("--shard auto: {name}={v:?} is not a whole number (0, 1, 2, ...)")
            }),
        }
    };
    if let Some(id) = number("SLURM_ARRAY_TASK_ID")? {
        let count = number("SLURM_ARRAY_TASK_COUNT")?.ok_or_else(|| {
            anyhow::anyhow!(
                "--shard auto: SLURM_ARRAY_TASK_ID={id} is set but SLURM_ARRAY_TASK_COUNT is not \
                 (Slurm sets both in a job array's tasks); pass --shard K/N instead"
            )
        })?;
        let min = number("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
        let step = number("SLURM_ARRAY_TASK_STEP")?.unwrap_or(1);
        let max = number("SLURM_ARRAY_TASK_MAX")?;
        let contiguous = step == 1 && max.is_none_or(|max| max.checked_sub(min) == Some(count - 1));
        let k = id.checked_sub(min).filter(|&k| k < count && count > 0);
        let (Some(k), true) = (k, contiguous) else {
            bail!(
                "--shard auto: the job array is not one contiguous run of IDs \
                 (SLURM_ARRAY_TASK_ID={id}, SLURM_ARRAY_TASK_MIN={min}, SLURM_ARRAY_TASK_MAX={}, \
                 SLURM_ARRAY_TASK_STEP={step}, SLURM_ARRAY_TASK_COUNT={count}); submit it as \
                 --array=0-{} (a `%` limit is fine), or pass --shard K/N",
                max.map_or("unset".to_string(), |m| m.to_string()),
                count.saturating_sub(1)
            );
        };
        let min_text = if min == 0 {
            String::new()
        } else {
            format!(" - SLURM_ARRAY_TASK_MIN={min}")
        };
        return Ok(Shard {
            k,
            n: count,
            from: format!("SLURM_ARRAY_TASK_ID={id}{min_text} of SLURM_ARRAY_TASK_COUNT={count}"),
        });
    }
    if let Some(k) = number("JOB_COMPLETION_INDEX")? {
        let n = number("JOB_COMPLETIONS")?.ok_or_else(|| {
            anyhow::anyhow!(
                "--shard auto: JOB_COMPLETION_INDEX={k} is set but JOB_COMPLETIONS is not: \
                 Kubernetes does not set it; pass the Job's .spec.completions in the container's \
                 env (`- name: JOB_COMPLETIONS` with the same value as `completions:`), or pass \
                 --shard K/N"
            )
        })?;
        if k >= n {
            bail!(
                "--shard auto: JOB_COMPLETION_INDEX={k} is not below JOB_COMPLETIONS={n}; \
                 JOB_COMPLETIONS must be the Job's .spec.completions"
            );
        }
        return Ok(Shard {
            k,
            n,
            from: format!("JOB_COMPLETION_INDEX={k} of JOB_COMPLETIONS={n}"),
        });
    }
    bail!(
        "--shard auto: no shard in the environment: it reads SLURM_ARRAY_TASK_ID and \
         SLURM_ARRAY_TASK_COUNT (and SLURM_ARRAY_TASK_MIN) in a Slurm job array's task, or \
         JOB_COMPLETION_INDEX and JOB_COMPLETIONS in a Kubernetes Indexed Job, and none is set; \
         pass --shard K/N outside a scheduler"
    )
}

/// The block of shard `k` of `n` over `total` tasks, `first..end`, sized
/// like `numpy.array_split`: the first `total % n` shards get one more.
pub(crate) fn split(total: u64, n: u64, k: u64) -> (u64, u64) {
    let (base, rem) = (total / n, total % n);
    let first = k * base + k.min(rem);
    (first, first + base + u64::from(k < rem))
}

/// What identifies a shard's input, and how many tasks it has.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct InputId {
    /// What errors call it (`in.jsonl`, `<range 0..10>`): for messages only,
    /// not part of the job (shards may name one file by different paths).
    pub(crate) name: String,
    /// How it is read: `json_lines`, `raw_lines`, `array` or `range`.
    pub(crate) kind: String,
    /// The SHA-256 of the file's bytes; for a range, of its `A..B` text.
    pub(crate) sha256: String,
    /// How many tasks it has.
    pub(crate) total: u64,
}

/// Counts and hashes the input `args` name, reading it as `map` will: the
/// shard's total must be known before it starts.
pub(crate) fn count_input(args: &MapArgs) -> anyhow::Result<InputId> {
    if let Some(range) = args.range {
        let total = u64::try_from(range.len())
            .map_err(|_| anyhow::anyhow!("--range {range} has too many values to shard"))?;
        let text = format!("{}..{}", range.start, range.end);
        return Ok(InputId {
            name: range.name(),
            kind: "range".into(),
            sha256: hex(&sha2::Sha256::digest(text.as_bytes())),
            total,
        });
    }
    let array = args.input_array.is_some();
    let path = args.input_array.as_ref().or(args.input.as_ref());
    let path = match path {
        Some(p) if p.as_os_str() != "-" => p,
        _ => bail!(
            "--shard needs the number of inputs before it starts, and stdin cannot be counted \
             without reading it all: name a file with --input FILE{}, or use --range A..B",
            if array { " (--input-array FILE)" } else { "" }
        ),
    };
    let show = path.display().to_string();
    let file = File::open(path).with_context(|| format!("{show}: cannot open the input"))?;
    if !file.metadata().is_ok_and(|m| m.is_file()) {
        bail!(
            "{show}: is not a regular file; --shard reads its input twice (to count it, then to \
             run its block), so it needs one (write a pipe's lines to a file first)"
        );
    }
    let digest = Rc::new(RefCell::new(sha2::Sha256::new()));
    let reader = Box::new(BufReader::with_capacity(
        1 << 16,
        HashingReader {
            inner: file,
            digest: digest.clone(),
        },
    ));
    let (mut source, kind): (Box<dyn input::Source>, &str) = if array {
        (Box::new(input::ArrayElements::new(reader, &show)), "array")
    } else if args.raw {
        (
            Box::new(input::Lines::new(reader, &show, true)),
            "raw_lines",
        )
    } else {
        (
            Box::new(input::Lines::new(reader, &show, false)),
            "json_lines",
        )
    };
    let mut total = 0u64;
    while source.next_item()?.is_some() {
        total += 1;
    }
    // Whatever the source left unread (nothing, for a well-formed input).
    drop(source);
    let sha256 = hex(&Rc::try_unwrap(digest)
        .map_err(|_| anyhow::anyhow!("the input's hash is still in use"))?
        .into_inner()
        .finalize());
    Ok(InputId {
        name: show,
        kind: kind.into(),
        sha256,
        total,
    })
}

/// A reader that hashes what passes through it.
struct HashingReader<R> {
    inner: R,
    digest: Rc<RefCell<sha2::Sha256>>,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.digest.borrow_mut().update(&buf[..n]);
        Ok(n)
    }
}

/// The SHA-256 and size of what a shard wrote to its output.
#[derive(Debug, Default)]
pub(crate) struct OutputDigest {
    sha: sha2::Sha256,
    bytes: u64,
}

/// A writer that passes everything on to `inner`, and hashes it when it has
/// a digest (shard mode).
pub(crate) struct Digesting<W> {
    pub(crate) inner: W,
    pub(crate) digest: Option<Rc<RefCell<OutputDigest>>>,
}

impl<W: Write> Write for Digesting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        if let Some(d) = &self.digest {
            let mut d = d.borrow_mut();
            d.sha.update(&buf[..n]);
            d.bytes += n as u64;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The sidecar `OUT.shard`: what a shard's output holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Sidecar {
    pub(crate) wasmpool_shard: u32,
    /// The SHA-256 of the module's SHA-256, the task and the input's kind,
    /// SHA-256 and total: the same for every shard of one job.
    pub(crate) job: String,
    pub(crate) module_sha256: String,
    pub(crate) task: String,
    pub(crate) input: InputId,
    /// `json` (result lines), `values` (--values) or `raw_output` (-r).
    pub(crate) format: String,
    pub(crate) k: u64,
    pub(crate) n: u64,
    /// The global indices of its tasks, `first..end`, of `total`.
    pub(crate) first: u64,
    pub(crate) end: u64,
    pub(crate) total: u64,
    /// How many of them it wrote results for (fewer only with --fail-fast).
    pub(crate) done: u64,
    pub(crate) failed: u64,
    /// Whether --fail-fast stopped it.
    pub(crate) stopped: bool,
    pub(crate) output_sha256: String,
    pub(crate) output_bytes: u64,
}

impl Sidecar {
    /// `shard 1/3 (tasks 4..8)`.
    pub(crate) fn describe(&self) -> String {
        format!(
            "shard {}/{} (tasks {}..{})",
            self.k, self.n, self.first, self.end
        )
    }
}

/// The job id of module, task and input.
pub(crate) fn job_id(module_sha256: &str, task: &str, input: &InputId) -> String {
    let text = format!(
        "wasmpool shard job\nmodule {module_sha256}\ntask {task}\ninput {} {} {}\n",
        input.kind, input.sha256, input.total
    );
    hex(&sha2::Sha256::digest(text.as_bytes()))
}

/// The SHA-256 of `bytes`, in hex.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex(&sha2::Sha256::digest(bytes))
}

pub(crate) fn hex(digest: &[u8]) -> String {
    use fmt::Write as _;
    digest.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Where the sidecar of output `out` is: `OUT.shard`, beside it.
pub(crate) fn sidecar_path(out: &Path) -> PathBuf {
    let mut name = out.as_os_str().to_os_string();
    name.push(".shard");
    PathBuf::from(name)
}

/// Refuses a shard's files that would land on one another: the output
/// (renamed over its path at the end) on the input, and the sidecar
/// (likewise) on the input or the journal. Either loses a file the user
/// needs: the input the other shards still read, or the journal a rerun
/// resumes from.
fn refuse_clashing_paths(
    out: &Path,
    input: Option<&Path>,
    journal: Option<&Path>,
) -> anyhow::Result<()> {
    let sidecar = sidecar_path(out);
    let mine = [("output", out), ("sidecar", sidecar.as_path())];
    let theirs = [("--input", input), ("--journal", journal)];
    for (what, path) in mine {
        for (flag, other) in theirs {
            let Some(other) = other.filter(|o| o.as_os_str() != "-") else {
                continue;
            };
            if super::output::same_file(path, other) {
                bail!(
                    "{}: is both the shard's {what} and its {flag}: the {what} would replace \
                     it; give -o another name (the sidecar is OUT.shard)",
                    path.display()
                );
            }
        }
    }
    Ok(())
}

/// What `map` knows of its shard once it has counted the input.
pub(crate) struct Plan {
    pub(crate) shard: Shard,
    pub(crate) input: InputId,
    pub(crate) first: u64,
    pub(crate) end: u64,
    pub(crate) digest: Rc<RefCell<OutputDigest>>,
}

impl Plan {
    /// Resolves the shard and counts the input; refuses what shard mode
    /// cannot do before anything runs.
    pub(crate) fn new(arg: ShardArg, args: &MapArgs) -> anyhow::Result<Plan> {
        let shard = arg.resolve(|name| std::env::var(name).ok())?;
        if let Some(out) = &args.output
            && let Ok(meta) = std::fs::metadata(out)
            && !meta.is_file()
        {
            bail!(
                "{}: is not a regular file; --shard writes its output to a file, with the \
                 sidecar {} beside it for `wasmpool merge`",
                out.display(),
                sidecar_path(out).display()
            );
        }
        if let Some(out) = &args.output {
            refuse_clashing_paths(out, args.input.as_deref(), args.journal.as_deref())?;
        }
        let input = count_input(args)?;
        let (first, end) = split(input.total, shard.n, shard.k);
        Ok(Plan {
            shard,
            input,
            first,
            end,
            digest: Rc::default(),
        })
    }

    /// `shard 1/3 (--shard 1/3): tasks 4..8 of the 11 of in.jsonl`.
    pub(crate) fn describe(&self) -> String {
        format!(
            "shard {}/{} ({}): tasks {}..{} of the {} of {}",
            self.shard.k,
            self.shard.n,
            self.shard.from,
            self.first,
            self.end,
            self.input.total,
            self.input.name
        )
    }

    /// Writes the sidecar of `out`, once the output is in place.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn write_sidecar(
        &self,
        out: &Path,
        module: &[u8],
        task: &str,
        format: &str,
        done: u64,
        failed: u64,
        stopped: bool,
    ) -> anyhow::Result<()> {
        let module_sha256 = sha256_hex(module);
        let digest = std::mem::take(&mut *self.digest.borrow_mut());
        let sidecar = Sidecar {
            wasmpool_shard: VERSION,
            job: job_id(&module_sha256, task, &self.input),
            module_sha256,
            task: task.to_string(),
            input: self.input.clone(),
            format: format.to_string(),
            k: self.shard.k,
            n: self.shard.n,
            first: self.first,
            end: self.end,
            total: self.input.total,
            done,
            failed,
            stopped,
            output_sha256: hex(&digest.sha.finalize()),
            output_bytes: digest.bytes,
        };
        let path = sidecar_path(out);
        let mut file = super::output::AtomicFile::create(&path)?;
        let mut text = serde_json::to_vec(&sidecar)?;
        text.push(b'\n');
        file.file()
            .write_all(&text)
            .with_context(|| format!("{}: cannot write the shard's sidecar", path.display()))?;
        file.commit()
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn blocks_are_split_like_numpy_array_split() {
        let blocks = |total, n| (0..n).map(|k| split(total, n, k)).collect::<Vec<_>>();
        assert_eq!(blocks(11, 3), [(0, 4), (4, 8), (8, 11)]);
        assert_eq!(blocks(10, 3), [(0, 4), (4, 7), (7, 10)]);
        assert_eq!(blocks(1, 3), [(0, 1), (1, 1), (1, 1)]);
        assert_eq!(blocks(0, 2), [(0, 0), (0, 0)]);
        assert_eq!(blocks(7, 1), [(0, 7)]);
        for total in 0..40 {
            for n in 1..9 {
                let b = blocks(total, n);
                assert_eq!(b[0].0, 0);
                assert_eq!(b[n as usize - 1].1, total);
                assert!(b.windows(2).all(|w| w[0].1 == w[1].0));
            }
        }
    }

    #[test]
    fn shard_args_parse() {
        assert_eq!(parse_shard("1/3"), Ok(ShardArg::Fixed { k: 1, n: 3 }));
        assert_eq!(parse_shard("auto"), Ok(ShardArg::Auto));
        assert!(
            parse_shard("3/3")
                .unwrap_err()
                .contains("K must be below N")
        );
        assert!(parse_shard("0/0").unwrap_err().contains("at least 1"));
        assert!(parse_shard("1").unwrap_err().contains("is not a shard"));
        assert!(parse_shard("-1/3").unwrap_err().contains("is not a shard"));
    }

    #[test]
    fn auto_reads_slurm_then_kubernetes() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                vars.iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        let shard = |vars| ShardArg::Auto.resolve(env(vars));
        let got = shard(&[
            ("SLURM_ARRAY_TASK_ID", "1"),
            ("SLURM_ARRAY_TASK_COUNT", "2"),
        ])
        .unwrap();
        assert_eq!((got.k, got.n), (1, 2));
        let got = shard(&[
            ("SLURM_ARRAY_TASK_ID", "7"),
            ("SLURM_ARRAY_TASK_COUNT", "3"),
            ("SLURM_ARRAY_TASK_MIN", "5"),
            ("SLURM_ARRAY_TASK_MAX", "7"),
            ("JOB_COMPLETION_INDEX", "0"),
        ])
        .unwrap();
        assert_eq!((got.k, got.n), (2, 3), "{}", got.from);
        let err = shard(&[
            ("SLURM_ARRAY_TASK_ID", "4"),
            ("SLURM_ARRAY_TASK_COUNT", "3"),
            ("SLURM_ARRAY_TASK_MIN", "0"),
            ("SLURM_ARRAY_TASK_MAX", "4"),
            ("SLURM_ARRAY_TASK_STEP", "2"),
        ])
        .unwrap_err()
        .to_string();
        assert!(err.contains("not one contiguous run"), "{err}");
        let got = shard(&[("JOB_COMPLETION_INDEX", "2"), ("JOB_COMPLETIONS", "4")]).unwrap();
        assert_eq!((got.k, got.n), (2, 4));
        let err = shard(&[("JOB_COMPLETION_INDEX", "2")])
            .unwrap_err()
            .to_string();
        assert!(err.contains(".spec.completions"), "{err}");
        let err = shard(&[]).unwrap_err().to_string();
        assert!(
            err.contains("SLURM_ARRAY_TASK_ID") && err.contains("JOB_COMPLETION_INDEX"),
            "{err}"
        );
        let err = shard(&[("SLURM_ARRAY_TASK_ID", "x")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a whole number"), "{err}");
    }
}
