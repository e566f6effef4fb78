//! `wasmpool merge OUT...`: the outputs of `map --shard K/N -o OUT` joined
//! into the output of one run over the whole input, once their sidecars
//! (`OUT.shard`, see `shard`) show that they are of one job, that their
//! blocks cover every task exactly once, and that each output is whole.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use sha2::Digest;

use super::args::MergeArgs;
use super::output::Sink;
use super::shard::{self, Sidecar};

/// One shard to merge: its output, as named, and its sidecar.
struct Part {
    path: PathBuf,
    sidecar: Sidecar,
}

impl Part {
    fn show(&self) -> String {
        format!("{} ({})", self.path.display(), self.sidecar.describe())
    }
}

/// What to tell the user to do about a shard that did not finish.
fn rerun(s: &Sidecar) -> String {
    format!(
        "rerun that shard (`wasmpool map ... --shard {}/{} -o OUT`) with its --journal: it \
         resumes where it stopped",
        s.k, s.n
    )
}

pub(crate) fn run(quiet: bool, args: &MergeArgs) -> anyhow::Result<ExitCode> {
    let parts = read_parts(&args.outputs)?;
    if let Some(output) = &args.output {
        refuse_output_among_inputs(output, &parts)?;
    }
    check_one_job(&parts)?;
    let parts = check_tiling(parts)?;
    for part in &parts {
        check_part(part)?;
    }

    let (mut out, file) = Sink::open(args.output.as_deref())?;
    let mut out = io::BufWriter::with_capacity(1 << 16, &mut out);
    for part in &parts {
        // Copied as it is checked again: a file changed since the check is
        // refused (with -o, the output is then left as it was).
        let mut reader = Hashed::open(&part.path)?;
        io::copy(&mut reader, &mut out)
            .with_context(|| format!("{}: cannot copy it", part.path.display()))?;
        if !reader.matches(&part.sidecar) {
            bail!(
                "{}: changed while it was merged; merge again",
                part.path.display()
            );
        }
    }
    out.flush()?;
    drop(out);
    if let Some(file) = file {
        file.commit()?;
    }
    let first = &parts[0].sidecar;
    let failed: u64 = parts.iter().map(|p| p.sidecar.failed).sum();
    if !quiet {
        eprintln!(
            "wasmpool: merged {} {} of task {} over {}: {} results, {failed} failed",
            parts.len(),
            if parts.len() == 1 { "shard" } else { "shards" },
            first.task,
            first.input.name,
            first.total,
        );
    }
    Ok(if failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// Reads each named output's sidecar; an argument may name the sidecar
/// itself (`OUT.shard`, as a glob `out.*` gives both). The same output
/// named twice the same way is refused.
fn read_parts(names: &[PathBuf]) -> anyhow::Result<Vec<Part>> {
    let mut parts: Vec<Part> = Vec::new();
    let mut seen: Vec<(FileKey, bool, PathBuf)> = Vec::new();
    for name in names {
        let (path, as_sidecar) = match name.to_str().and_then(|s| s.strip_suffix(".shard")) {
            Some(out) if !shard::sidecar_path(name).exists() => (PathBuf::from(out), true),
            _ => (name.clone(), false),
        };
        let key = FileKey::of(&path);
        if let Some((_, _, before)) = seen
            .iter()
            .find(|(k, sidecar, _)| *k == key && *sidecar == as_sidecar)
        {
            bail!(
                "{}: given twice (as {} and as {}); name each shard's output once",
                path.display(),
                before.display(),
                name.display()
            );
        }
        let known = seen.iter().any(|(k, _, _)| *k == key);
        seen.push((key, as_sidecar, name.clone()));
        if known {
            // OUT and OUT.shard: one shard.
            continue;
        }
        let sidecar_path = shard::sidecar_path(&path);
        let text = match read_sidecar(&sidecar_path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let what = if path.exists() {
                    format!(
                        "{} has no sidecar {}: either it is not the output of \
                         `wasmpool map --shard K/N -o OUT`, or its shard did not finish (map \
                         writes OUT.shard once OUT is whole); rerun that shard with its --journal",
                        path.display(),
                        sidecar_path.display()
                    )
                } else {
                    format!(
                        "{}: no such output (nor its sidecar {})",
                        path.display(),
                        sidecar_path.display()
                    )
                };
                bail!(what);
            }
            Err(e) => {
                return Err(e).with_context(|| format!("{}: cannot read", sidecar_path.display()));
            }
        };
        let sidecar = parse_sidecar(&text)
            .map_err(|why| anyhow::anyhow!("{}: {why}", sidecar_path.display()))?;
        parts.push(Part { path, sidecar });
    }
    Ok(parts)
}

/// Refuses `-o` naming one of the outputs merged or a sidecar: the merged
/// output would be renamed over it, and that shard's output (or sidecar)
/// would be lost.
fn refuse_output_among_inputs(output: &Path, parts: &[Part]) -> anyhow::Result<()> {
    let key = FileKey::of(output);
    if matches!(key, FileKey::Path(_)) {
        return Ok(()); // no such file yet: none of the inputs
    }
    for part in parts {
        let sidecar = shard::sidecar_path(&part.path);
        for (what, path) in [("output", &part.path), ("sidecar", &sidecar)] {
            if FileKey::of(path) == key {
                bail!(
                    "-o {}: is the {what} {} of a shard being merged: merging would replace it; \
                     write the merged output to another file",
                    output.display(),
                    path.display()
                );
            }
        }
    }
    Ok(())
}

/// The most a sidecar may hold: map writes a few hundred bytes (its input's
/// name is the longest field), so more is not one, and is not read whole.
const MAX_SIDECAR: u64 = 1 << 20;

/// A sidecar's bytes, at most [`MAX_SIDECAR`] of them (a longer file is
/// an `InvalidData` error).
fn read_sidecar(path: &Path) -> io::Result<Vec<u8>> {
    let mut text = Vec::new();
    File::open(path)?
        .take(MAX_SIDECAR + 1)
        .read_to_end(&mut text)?;
    if text.len() as u64 > MAX_SIDECAR {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "longer than {MAX_SIDECAR} bytes, so not a shard sidecar written by `wasmpool map --shard`"
            ),
        ));
    }
    Ok(text)
}

fn parse_sidecar(text: &[u8]) -> Result<Sidecar, String> {
    #[derive(serde::Deserialize)]
    struct Version {
        wasmpool_shard: u32,
    }
    let version: Version = serde_json::from_slice(text)
        .map_err(|e| format!("not a shard sidecar written by `wasmpool map --shard` ({e})"))?;
    if version.wasmpool_shard != shard::VERSION {
        return Err(format!(
            "a shard sidecar of format {} (this wasmpool reads format {}): merge with the \
             wasmpool that wrote it",
            version.wasmpool_shard,
            shard::VERSION
        ));
    }
    let sidecar: Sidecar = serde_json::from_slice(text)
        .map_err(|e| format!("not a shard sidecar written by `wasmpool map --shard` ({e})"))?;
    let s = &sidecar;
    let broken = || Err("the sidecar does not hold together (edited or damaged)".into());
    // K below N first: `split` of a K past N may overflow.
    if s.n == 0 || s.k >= s.n {
        return broken();
    }
    let (first, end) = shard::split(s.total, s.n, s.k);
    let expected_job = shard::job_id(&s.module_sha256, &s.task, &s.input);
    if (first, end) != (s.first, s.end) || s.job != expected_job {
        return broken();
    }
    Ok(sidecar)
}

/// The identity of a file: its device and inode, else its path.
#[derive(Debug, PartialEq, Eq)]
enum FileKey {
    Inode(u64, u64),
    Path(PathBuf),
}

impl FileKey {
    fn of(path: &Path) -> FileKey {
        use std::os::unix::fs::MetadataExt;
        match std::fs::metadata(path) {
            Ok(m) => FileKey::Inode(m.dev(), m.ino()),
            Err(_) => FileKey::Path(path.to_path_buf()),
        }
    }
}

/// Refuses shards of different jobs, naming what differs.
fn check_one_job(parts: &[Part]) -> anyhow::Result<()> {
    let first = &parts[0];
    let a = &first.sidecar;
    for part in &parts[1..] {
        let b = &part.sidecar;
        let differs = if b.module_sha256 != a.module_sha256 {
            Some(format!(
                "of another module (SHA-256 {} and {})",
                short(&b.module_sha256),
                short(&a.module_sha256)
            ))
        } else if b.task != a.task {
            Some(format!("of task {:?} and {:?}", b.task, a.task))
        } else if b.input.kind != a.input.kind {
            Some(format!(
                "of inputs read another way ({} and {})",
                b.input.kind, a.input.kind
            ))
        } else if b.input.sha256 != a.input.sha256 || b.total != a.total {
            Some(format!(
                "of another input: {} ({} tasks, SHA-256 {}) and {} ({} tasks, SHA-256 {}); \
                 the input changed between the shards' runs, or they ran on other inputs",
                b.input.name,
                b.total,
                short(&b.input.sha256),
                a.input.name,
                a.total,
                short(&a.input.sha256)
            ))
        } else if b.format != a.format {
            Some(format!(
                "written in other formats ({} and {}): every shard needs the same --values/-r",
                b.format, a.format
            ))
        } else {
            None
        };
        if let Some(differs) = differs {
            bail!(
                "{} and {} are not shards of one job: they are {differs}",
                part.path.display(),
                first.path.display()
            );
        }
    }
    Ok(())
}

fn short(sha: &str) -> &str {
    &sha[..sha.len().min(16)]
}

/// Orders the shards by their blocks and refuses a gap or an overlap.
fn check_tiling(mut parts: Vec<Part>) -> anyhow::Result<Vec<Part>> {
    parts.sort_by_key(|p| (p.sidecar.first, p.sidecar.end, p.sidecar.k));
    let total = parts[0].sidecar.total;
    let ns: std::collections::BTreeSet<u64> = parts.iter().map(|p| p.sidecar.n).collect();
    // The shards that would fill the tasks from..to, when all are of one N.
    let missing = |from: u64, to: u64| -> String {
        let names = if let [n] = ns.iter().copied().collect::<Vec<_>>()[..] {
            // Computed, not searched: N may be as large as u64::MAX (a
            // search over 0..N never ended).
            let (lo, hi) = (shard_of(total, n, from), shard_of(total, n, to - 1));
            let count = hi - lo + 1;
            let mut ks: Vec<String> = (lo..=hi)
                .take(MISSING_NAMED)
                .map(|k| format!("{k}/{n}"))
                .collect();
            if count > MISSING_NAMED as u64 {
                ks.pop();
                ks.push(format!("... {hi}/{n} ({count} in all)"));
            }
            format!(
                "shard{} {} {} missing",
                if count == 1 { "" } else { "s" },
                ks.join(", "),
                if count == 1 { "is" } else { "are" }
            )
        } else {
            "a shard is missing".to_string()
        };
        format!(
            "tasks {from}..{to} of {total} are in none of the outputs: {names}; run it (`wasmpool \
             map ... --shard K/N --journal J -o OUT`), or, if it ran, name its output too"
        )
    };
    let mut next = 0u64;
    let mut last: Option<&Part> = None;
    for part in &parts {
        let s = &part.sidecar;
        if s.first == s.end {
            // An empty shard holds nothing, and so overlaps nothing.
            continue;
        }
        if s.first > next {
            bail!(missing(next, s.first));
        }
        if s.first < next {
            let other = last.expect("a block ends before this one");
            bail!(
                "{} and {} overlap: both hold task {}; name each shard's output once, and only \
                 shards of one split",
                other.show(),
                part.show(),
                s.first
            );
        }
        next = s.end;
        last = Some(part);
    }
    if next < total {
        bail!(missing(next, total));
    }
    Ok(parts)
}

/// The most missing shards a message names one by one.
const MISSING_NAMED: usize = 8;

/// The shard of `n` over `total` tasks that holds task `t < total` (the
/// inverse of [`shard::split`]: the first `total % n` shards hold one task
/// more than the others).
fn shard_of(total: u64, n: u64, t: u64) -> u64 {
    let (base, rem) = (total / n, total % n);
    // rem * (base + 1) <= total: no overflow.
    let long = rem * (base + 1);
    if t < long {
        t / (base + 1)
    } else {
        // t < total, so a task past the long shards means base > 0.
        rem + (t - long) / base
    }
}

/// Refuses a shard that did not finish its block, or an output that is not
/// what its sidecar describes (cut short, or changed since).
fn check_part(part: &Part) -> anyhow::Result<()> {
    let s = &part.sidecar;
    if s.stopped || s.done != s.end - s.first {
        bail!(
            "{}: stopped at a failure (--fail-fast) after {} of its {} tasks: the tasks {}..{} \
             have no result; {}, without --fail-fast",
            part.show(),
            s.done,
            s.end - s.first,
            s.first + s.done,
            s.end,
            rerun(s)
        );
    }
    let mut reader = Hashed::open(&part.path)?;
    if s.format == "json" {
        // One result line per task, in order, each `{"index":N,...`.
        // Only each line's head is kept: a line may be as long as a task's
        // output, and an edited file's "line" as long as the file.
        let mut line = Vec::new();
        let mut expected = s.first;
        loop {
            let Some(ended) = next_line_head(&mut reader, &mut line)
                .with_context(|| format!("{}: cannot read", part.path.display()))?
            else {
                break;
            };
            if ended {
                line.push(b'\n');
            }
            let index = line
                .strip_prefix(b"{\"index\":")
                .map(|rest| {
                    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
                    std::str::from_utf8(&rest[..digits])
                        .ok()
                        .and_then(|d| d.parse::<u64>().ok())
                })
                .unwrap_or(None);
            if index != Some(expected) || expected >= s.end || !line.ends_with(b"\n") {
                if !line.ends_with(b"\n") && expected < s.end {
                    bail!(
                        "{}: incomplete: it ends in the middle of line {}, the result of task \
                         {expected} (the file was cut short since map wrote it); {}",
                        part.show(),
                        expected - s.first + 1,
                        rerun(s)
                    );
                }
                let found = match index {
                    Some(i) if line.ends_with(b"\n") => format!("the result of task {i}"),
                    _ => "a line that is not a whole result line".to_string(),
                };
                let at = expected - s.first + 1;
                if expected >= s.end {
                    bail!(
                        "{}: line {at} holds {found}, after the last task of its block: the file \
                         was changed since map wrote it; {}",
                        part.show(),
                        rerun(s)
                    );
                }
                bail!(
                    "{}: line {at} should be the result of task {expected}, but it holds {found}: \
                     the file was cut short or changed since map wrote it; {}",
                    part.show(),
                    rerun(s)
                );
            }
            expected += 1;
        }
        if expected < s.end {
            bail!(
                "{}: incomplete: it ends after {} of its {} results; task {expected} is the first \
                 missing (the file was cut short since map wrote it); {}",
                part.show(),
                expected - s.first,
                s.end - s.first,
                rerun(s)
            );
        }
    } else {
        io::copy(&mut reader, &mut io::sink())
            .with_context(|| format!("{}: cannot read", part.path.display()))?;
    }
    let (sha, bytes) = reader.finish();
    if sha != s.output_sha256 || bytes != s.output_bytes {
        bail!(
            "{}: is not the output its sidecar describes ({bytes} bytes with SHA-256 {}, where \
             map wrote {} bytes with SHA-256 {}): it was cut short, or changed since; {}",
            part.show(),
            short(&sha),
            s.output_bytes,
            short(&s.output_sha256),
            rerun(s)
        );
    }
    Ok(())
}

/// The head of a result line: `{"index":` and the longest u64.
const LINE_HEAD: usize = 9 + 20;

/// Reads the next line of `reader`, keeping at most its first
/// [`LINE_HEAD`] bytes in `head` (without the newline): `None` at the end
/// of the file, else whether a newline ended the line.
fn next_line_head(reader: &mut impl BufRead, head: &mut Vec<u8>) -> io::Result<Option<bool>> {
    head.clear();
    let mut any = false;
    loop {
        let buf = match reader.fill_buf() {
            Ok(buf) => buf,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if buf.is_empty() {
            return Ok(any.then_some(false));
        }
        any = true;
        let (take, ended) = match buf.iter().position(|&b| b == b'\n') {
            Some(at) => (at, true),
            None => (buf.len(), false),
        };
        let room = LINE_HEAD.saturating_sub(head.len());
        head.extend_from_slice(&buf[..take.min(room)]);
        reader.consume(take + usize::from(ended));
        if ended {
            return Ok(Some(true));
        }
    }
}

/// An output file read through a hash of its bytes.
struct Hashed {
    reader: BufReader<File>,
    sha: sha2::Sha256,
    bytes: u64,
}

impl Hashed {
    fn open(path: &Path) -> anyhow::Result<Hashed> {
        let file = File::open(path).with_context(|| format!("{}: cannot read", path.display()))?;
        Ok(Hashed {
            reader: BufReader::with_capacity(1 << 16, file),
            sha: sha2::Sha256::new(),
            bytes: 0,
        })
    }

    fn finish(&mut self) -> (String, u64) {
        let sha = std::mem::take(&mut self.sha);
        (shard::hex(&sha.finalize()), self.bytes)
    }

    /// Whether what was read is what `s` describes.
    fn matches(&mut self, s: &Sidecar) -> bool {
        let (sha, bytes) = self.finish();
        sha == s.output_sha256 && bytes == s.output_bytes
    }
}

impl Read for Hashed {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.reader.read(buf)?;
        self.sha.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

impl BufRead for Hashed {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.reader.fill_buf()
    }

    fn consume(&mut self, amt: usize) {
        let buf = self.reader.buffer();
        self.sha.update(&buf[..amt.min(buf.len())]);
        self.bytes += amt as u64;
        self.reader.consume(amt);
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn a_sidecar_that_does_not_hold_together_is_refused() {
        let input = shard::InputId {
            name: "in.jsonl".into(),
            kind: "json_lines".into(),
            sha256: "ab".repeat(32),
            total: 11,
        };
        let module = "cd".repeat(32);
        let sidecar = Sidecar {
            wasmpool_shard: shard::VERSION,
            job: shard::job_id(&module, "t", &input),
            module_sha256: module,
            task: "t".into(),
            input,
            format: "json".into(),
            k: 1,
            n: 3,
            first: 4,
            end: 8,
            total: 11,
            done: 4,
            failed: 0,
            stopped: false,
            output_sha256: "ef".repeat(32),
            output_bytes: 80,
        };
        let text = serde_json::to_vec(&sidecar).unwrap();
        assert_eq!(parse_sidecar(&text).unwrap().first, 4);
        let edit = |f: fn(&mut Sidecar)| {
            let mut s = sidecar.clone();
            f(&mut s);
            parse_sidecar(&serde_json::to_vec(&s).unwrap()).unwrap_err()
        };
        assert!(edit(|s| s.first = 3).contains("does not hold together"));
        assert!(edit(|s| s.task = "u".into()).contains("does not hold together"));
        assert!(edit(|s| s.k = 3).contains("does not hold together"));
        assert!(edit(|s| s.wasmpool_shard = 2).contains("format 2"));
        // A K far past N (k * base overflowed in `split` before K was checked).
        assert!(edit(|s| (s.k, s.n) = (u64::MAX, 1)).contains("does not hold together"));
        assert!(
            parse_sidecar(b"{\"index\":0,\"ok\":1}")
                .unwrap_err()
                .contains("not a shard sidecar")
        );
    }

    #[test]
    fn shard_of_inverts_split() {
        for total in [0u64, 1, 2, 5, 11, 64, 97] {
            for n in [1u64, 2, 3, 4, 7, 64, 100, u64::MAX] {
                for k in (0..n.min(120)).chain([n - 1]) {
                    let (first, end) = shard::split(total, n, k);
                    for t in first..end {
                        assert_eq!(shard_of(total, n, t), k, "total {total} n {n} task {t}");
                    }
                }
            }
        }
    }
}
