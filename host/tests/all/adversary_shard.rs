//! `merge` against hostile or unlucky inputs (shard mode): a split into a
//! huge number of shards with one missing, an output whose "line" is as
//! long as the file, and `-o` naming one of the files being merged.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use wasmpool_tests::SQUARE;

use crate::util::wasmpool_watched;

fn run(cache: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wasmpool"));
    cmd.args(args)
        .env("WASMPOOL_CACHE_DIR", cache)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for var in [
        "SLURM_ARRAY_TASK_ID",
        "SLURM_ARRAY_TASK_COUNT",
        "JOB_COMPLETION_INDEX",
        "JOB_COMPLETIONS",
    ] {
        cmd.env_remove(var);
    }
    cmd.output().unwrap()
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `map SQUARE --task square` over `n` inputs as shard `shard`, to `out`.
fn shard(dir: &Path, n: u64, shard: &str, out: &Path) {
    let input = dir.join("in.jsonl");
    let text: String = (1..=n).map(|i| format!("{i}\n")).collect();
    std::fs::write(&input, text).unwrap();
    let r = run(
        &dir.join("cache"),
        &[
            "map",
            SQUARE,
            "--task",
            "square",
            "--input",
            p(&input),
            "--shard",
            shard,
            "-o",
            p(out),
            "-q",
        ],
    );
    assert!(r.status.success(), "{shard}: {}", stderr(&r));
}

#[test]
fn merge_with_a_shard_missing_of_a_huge_split_ends_at_once_naming_them() {
    // N = u64::MAX is a valid split (most shards empty). The message naming
    // the missing shards searched all of 0..N: merge spun for ever.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out0");
    shard(dir.path(), 5, "0/18446744073709551615", &out);
    let start = Instant::now();
    let r = wasmpool_watched(
        &dir.path().join("cache"),
        &["merge", p(&out)],
        "",
        Duration::from_secs(20),
        true,
    );
    assert_eq!(r.status.code(), Some(2), "{}", r.stderr);
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    assert!(
        r.stderr.contains(
            "tasks 1..5 of 5 are in none of the outputs: shards 1/18446744073709551615, \
             2/18446744073709551615, 3/18446744073709551615, 4/18446744073709551615 are missing"
        ),
        "{}",
        r.stderr
    );

    // Many shards missing: a few are named, and how many.
    let out = dir.path().join("big0");
    shard(dir.path(), 1000, "0/1000", &out);
    let r = run(&dir.path().join("cache"), &["merge", p(&out)]);
    assert_eq!(r.status.code(), Some(2));
    let err = stderr(&r);
    assert!(
        err.contains("tasks 1..1000 of 1000 are in none of the outputs: shards 1/1000, 2/1000,")
            && err.contains("7/1000, ... 999/1000 (999 in all) are missing"),
        "{err}"
    );
    assert!(err.len() < 1000, "{err}");

    // Uneven blocks (the first total % N shards hold one more): each gap
    // names exactly the shards that tile it.
    let out1 = dir.path().join("u1");
    shard(dir.path(), 11, "1/4", &out1); // tasks 3..6 of 0..3, 3..6, 6..9, 9..11
    let r = run(&dir.path().join("cache"), &["merge", p(&out1)]);
    let err = stderr(&r);
    assert!(
        err.contains("tasks 0..3 of 11 are in none of the outputs: shard 0/4 is missing"),
        "{err}"
    );
    let out3 = dir.path().join("u3");
    shard(dir.path(), 11, "3/4", &out3);
    let out0 = dir.path().join("u0");
    shard(dir.path(), 11, "0/4", &out0);
    let r = run(
        &dir.path().join("cache"),
        &["merge", p(&out0), p(&out1), p(&out3)],
    );
    let err = stderr(&r);
    assert!(
        err.contains("tasks 6..9 of 11 are in none of the outputs: shard 2/4 is missing"),
        "{err}"
    );
}

#[test]
fn merge_reads_an_output_without_line_breaks_in_bounded_memory() {
    // An output replaced by 192 MiB with no newline: merge read the whole
    // "line" into memory before it looked at the file's hash.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out0");
    shard(dir.path(), 3, "0/1", &out);
    let mut forged = b"{\"index\":0,\"ok\":\"".to_vec();
    forged.resize(192 << 20, b'x');
    std::fs::write(&out, forged).unwrap();
    let r = wasmpool_watched(
        &dir.path().join("cache"),
        &["merge", p(&out)],
        "",
        Duration::from_secs(60),
        true,
    );
    assert_eq!(r.status.code(), Some(2), "{}", r.stderr);
    assert!(
        r.stderr
            .contains("incomplete: it ends in the middle of line 1"),
        "{}",
        r.stderr
    );
    assert!(r.stdout.is_empty());
    assert!(
        r.peak_kib < 64 * 1024,
        "merge peaked at {} MiB",
        r.peak_kib / 1024
    );
}

#[test]
fn merge_refuses_to_write_over_an_output_or_a_sidecar_it_merges() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    shard(dir.path(), 6, "0/2", &a);
    shard(dir.path(), 6, "1/2", &b);
    let before = std::fs::read(&b).unwrap();
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&b, &link).unwrap();
    let b_sidecar = dir.path().join("b.shard");
    for target in [&b, &b_sidecar, &link] {
        let r = run(
            &dir.path().join("cache"),
            &["merge", p(&a), p(&b), "-o", p(target)],
        );
        assert_eq!(r.status.code(), Some(2), "{}", stderr(&r));
        assert!(
            stderr(&r).contains("of a shard being merged: merging would replace it"),
            "{}",
            stderr(&r)
        );
    }
    assert_eq!(std::fs::read(&b).unwrap(), before, "b untouched");
    // And the shards still merge, to another file.
    let merged = dir.path().join("merged");
    let r = run(
        &dir.path().join("cache"),
        &["merge", p(&a), p(&b), "-o", p(&merged)],
    );
    assert!(r.status.success(), "{}", stderr(&r));
    let text = std::fs::read_to_string(&merged).unwrap();
    assert_eq!(text.lines().count(), 6);
    assert!(text.starts_with("{\"index\":0,\"ok\":1}\n"), "{text}");
}

#[test]
fn a_shard_whose_output_or_sidecar_would_replace_its_input_or_journal_is_refused() {
    // `-o` naming the input renamed the shard's output over it at the end
    // (the other shards then ran on results); `--journal OUT.shard` was
    // replaced by the sidecar (a rerun could not resume).
    let dir = tempfile::tempdir().unwrap();
    let d = |name: &str| dir.path().join(name);
    let input = d("in.jsonl");
    std::fs::write(&input, "1\n2\n3\n").unwrap();
    std::os::unix::fs::symlink(&input, d("link")).unwrap();
    let cases: [(&str, &[&str], &str); 4] = [
        (
            "in.jsonl",
            &[],
            "is both the shard's output and its --input",
        ),
        ("link", &[], "is both the shard's output and its --input"),
        (
            "out",
            &["--journal", "out.shard"],
            "is both the shard's sidecar and its --journal",
        ),
        (
            "j",
            &["--journal", "j"],
            "is both the shard's output and its --journal",
        ),
    ];
    for (out, extra, expect) in cases {
        let out = d(out);
        let mut args = vec![
            "map",
            SQUARE,
            "--task",
            "square",
            "--input",
            p(&input),
            "--shard",
            "0/2",
            "-o",
            p(&out),
        ];
        let extra: Vec<String> = extra
            .iter()
            .map(|a| {
                if a.starts_with('-') {
                    a.to_string()
                } else {
                    p(&d(a)).to_string()
                }
            })
            .collect();
        args.extend(extra.iter().map(String::as_str));
        let r = run(&d("cache"), &args);
        assert_eq!(r.status.code(), Some(2), "{args:?}: {}", stderr(&r));
        assert!(stderr(&r).contains(expect), "{args:?}: {}", stderr(&r));
        assert_eq!(std::fs::read_to_string(&input).unwrap(), "1\n2\n3\n");
    }
    // The same shard with its own names runs.
    let r = run(
        &d("cache"),
        &[
            "map",
            SQUARE,
            "--task",
            "square",
            "--input",
            p(&input),
            "--shard",
            "0/2",
            "-o",
            p(&d("out")),
            "--journal",
            p(&d("out.journal")),
        ],
    );
    assert!(r.status.success(), "{}", stderr(&r));
}

#[test]
fn a_huge_sidecar_is_refused_without_being_read_whole() {
    // A sidecar is a few hundred bytes; a 4 GiB one (sparse here) was read
    // whole into memory before it was parsed.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out0");
    shard(dir.path(), 3, "0/1", &out);
    let sidecar = dir.path().join("out0.shard");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&sidecar)
        .unwrap()
        .set_len(4 << 30)
        .unwrap();
    let r = wasmpool_watched(
        &dir.path().join("cache"),
        &["merge", p(&out)],
        "",
        Duration::from_secs(30),
        true,
    );
    assert_eq!(r.status.code(), Some(2), "{}", r.stderr);
    assert!(
        r.stderr
            .contains("longer than 1048576 bytes, so not a shard sidecar"),
        "{}",
        r.stderr
    );
    assert!(
        r.peak_kib < 64 * 1024,
        "merge peaked at {} MiB",
        r.peak_kib / 1024
    );
}
