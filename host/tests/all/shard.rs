//! `map --shard K/N` and `merge` (issue 16, shard mode): shards merge to
//! exactly the output of one run, merge refuses incomplete or mixed sets
//! naming the problem, `--shard auto` reads Slurm's and Kubernetes'
//! variables, a killed shard resumes from its journal, and a real Slurm job
//! array (with one task killed and requeued) merges to the single run.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use wasmpool_tests::{SQUARE, TESTGUEST};

use crate::util::{in_ci, install_servers, servers};

/// The scheduler variables `--shard auto` reads: removed from every run here
/// (the tests may themselves run inside a Slurm job).
const SCHEDULER_VARS: &[&str] = &[
    "SLURM_ARRAY_TASK_ID",
    "SLURM_ARRAY_TASK_COUNT",
    "SLURM_ARRAY_TASK_MIN",
    "SLURM_ARRAY_TASK_MAX",
    "SLURM_ARRAY_TASK_STEP",
    "JOB_COMPLETION_INDEX",
    "JOB_COMPLETIONS",
];

fn command(cache: &Path, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wasmpool"));
    cmd.args(args)
        .env("WASMPOOL_CACHE_DIR", cache)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for var in SCHEDULER_VARS {
        cmd.env_remove(var);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// Runs `wasmpool args...` with the variables `env`, in `cache`.
fn run_env(cache: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    command(cache, args, env).output().unwrap()
}

fn run(cache: &Path, args: &[&str]) -> Output {
    run_env(cache, args, &[])
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// `map TESTGUEST --task fail_on_tens` (multiples of ten fail, so outputs
/// hold error lines too) with `extra` flags.
fn map_args<'a>(input: &'a [&'a str], extra: &'a [&'a str]) -> Vec<&'a str> {
    let mut args = vec!["map", TESTGUEST, "--task", "fail_on_tens", "-j", "2"];
    args.extend_from_slice(input);
    args.extend_from_slice(extra);
    args
}

/// Runs the N shards of `input` into `dir/out.K` and merges them (the
/// arguments in reverse order); asserts that the merged output and exit
/// status are the single run's.
fn shards_merge_to_single(cache: &Path, dir: &Path, input: &[&str], n: u64, extra: &[&str]) {
    let single = run(cache, &map_args(input, extra));
    assert!(
        matches!(single.status.code(), Some(0 | 1)),
        "{}",
        stderr(&single)
    );
    let mut outs = Vec::new();
    for k in 0..n {
        let out = dir.join(format!("out.{k}"));
        let shard = format!("{k}/{n}");
        let mut args = map_args(input, extra);
        args.extend(["--shard", &shard, "-o", p(&out)]);
        let ran = run(cache, &args);
        assert!(
            matches!(ran.status.code(), Some(0 | 1)),
            "{shard}: {}",
            stderr(&ran)
        );
        assert!(dir.join(format!("out.{k}.shard")).is_file());
        outs.push(out);
    }
    let merged_path = dir.join("merged");
    let mut args = vec!["merge"];
    args.extend(outs.iter().rev().map(|o| p(o)));
    args.extend(["-o", p(&merged_path)]);
    let merged = run(cache, &args);
    assert_eq!(
        merged.status.code(),
        single.status.code(),
        "{input:?} {extra:?} in {n}: {}",
        stderr(&merged)
    );
    assert_eq!(
        String::from_utf8(std::fs::read(&merged_path).unwrap()).unwrap(),
        String::from_utf8(single.stdout).unwrap(),
        "{input:?} {extra:?} in {n} shards"
    );
    // To stdout, the same.
    let merged = run(cache, &args[..args.len() - 2]);
    assert_eq!(merged.stdout, std::fs::read(&merged_path).unwrap());
    for o in &outs {
        std::fs::remove_file(o).unwrap();
        std::fs::remove_file(format!("{}.shard", p(o))).unwrap();
    }
}

#[test]
fn shards_of_1_2_3_7_merge_to_exactly_the_single_run() {
    let cache = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    for lines in [0u64, 1, 10, 11] {
        // A blank line in the middle: skipped, but counted in line numbers.
        let mut text: String = (0..lines).map(|i| format!("{i}\n")).collect();
        if lines > 5 {
            text.insert_str(4, "\n  \n");
        }
        std::fs::write(&input, text).unwrap();
        for n in [1, 2, 3, 7] {
            shards_merge_to_single(cache.path(), dir.path(), &["--input", p(&input)], n, &[]);
        }
    }
    // The other inputs and formats: a range, an array, --raw, --values.
    shards_merge_to_single(cache.path(), dir.path(), &["--range", "5..16"], 3, &[]);
    shards_merge_to_single(
        cache.path(),
        dir.path(),
        &["--range", "0..11"],
        7,
        &["--values"],
    );
    let array = dir.path().join("in.json");
    std::fs::write(&array, "[\n  1,\n  2, 10,\n  30, 4]\n").unwrap();
    shards_merge_to_single(
        cache.path(),
        dir.path(),
        &["--input-array", p(&array)],
        2,
        &[],
    );
    std::fs::write(&input, "a\nbb\n\nccc\n").unwrap();
    let raw = [
        "map",
        TESTGUEST,
        "--task",
        "shout",
        "-R",
        "--input",
        p(&input),
    ];
    let single = run(cache.path(), &raw);
    let mut outs = Vec::new();
    for k in 0..3 {
        let out = dir.path().join(format!("raw.{k}"));
        let shard = format!("{k}/3");
        let mut args = raw.to_vec();
        args.extend(["--shard", &shard, "-o", p(&out)]);
        assert_eq!(run(cache.path(), &args).status.code(), Some(0));
        outs.push(out);
    }
    let mut args = vec!["merge"];
    args.extend(outs.iter().map(|o| p(o)));
    let merged = run(cache.path(), &args);
    assert_eq!(merged.status.code(), Some(0), "{}", stderr(&merged));
    assert_eq!(merged.stdout, single.stdout);
}

/// The shards of `map SQUARE --task square` over `input` into `dir/NAME.K`.
fn square_shards(cache: &Path, dir: &Path, input: &Path, name: &str, n: u64) -> Vec<PathBuf> {
    (0..n)
        .map(|k| {
            let out = dir.join(format!("{name}.{k}"));
            let shard = format!("{k}/{n}");
            let ran = run(
                cache,
                &[
                    "map",
                    SQUARE,
                    "--task",
                    "square",
                    "--input",
                    p(input),
                    "--shard",
                    &shard,
                    "-o",
                    p(&out),
                ],
            );
            assert_eq!(ran.status.code(), Some(0), "{}", stderr(&ran));
            out
        })
        .collect()
}

/// `merge paths...`: its exit status 2 and its error message.
fn merge_refused(cache: &Path, paths: &[&Path]) -> String {
    let mut args = vec!["merge"];
    args.extend(paths.iter().map(|o| p(o)));
    let out = run(cache, &args);
    assert_eq!(out.status.code(), Some(2), "{paths:?}: {}", stderr(&out));
    assert!(out.stdout.is_empty(), "nothing is written when refused");
    stderr(&out)
}

#[test]
fn merge_refuses_incomplete_or_mixed_sets_naming_the_problem() {
    let cache = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let input = d.join("in.jsonl");
    std::fs::write(
        &input,
        (0..11).map(|i| format!("{i}\n")).collect::<String>(),
    )
    .unwrap();
    let three = square_shards(cache.path(), d, &input, "out", 3);
    let [a, b, c] = [&three[0], &three[1], &three[2]].map(PathBuf::as_path);
    let merged = run(cache.path(), &["merge", p(c), p(a), p(b)]);
    assert_eq!(merged.status.code(), Some(0), "{}", stderr(&merged));
    // Naming the sidecars (as a glob `out.*` does) is the same.
    let sidecar = d.join("out.1.shard");
    let globbed = run(
        cache.path(),
        &[
            "merge",
            p(a),
            p(&d.join("out.0.shard")),
            p(b),
            p(&sidecar),
            p(c),
        ],
    );
    assert_eq!(globbed.stdout, merged.stdout, "{}", stderr(&globbed));

    let err = merge_refused(cache.path(), &[a, c]);
    assert!(
        err.contains("tasks 4..8 of 11 are in none of the outputs: shard 1/3 is missing"),
        "{err}"
    );
    let err = merge_refused(cache.path(), &[a, b]);
    assert!(
        err.contains("tasks 8..11 of 11") && err.contains("shard 2/3 is missing"),
        "{err}"
    );

    // Another split of the same job: blocks that overlap.
    let two = square_shards(cache.path(), d, &input, "half", 2);
    let err = merge_refused(cache.path(), &[a, b, c, &two[1]]);
    assert!(err.contains("overlap: both hold task 6"), "{err}");
    // ...but blocks that tile are fine, whatever the split.
    let mixed = run(cache.path(), &["merge", p(&two[0]), p(&two[1])]);
    assert_eq!(mixed.stdout, merged.stdout, "{}", stderr(&mixed));

    let err = merge_refused(cache.path(), &[a, b, b, c]);
    assert!(err.contains("given twice"), "{err}");

    // Another input (one line changed), another task.
    let other = d.join("other.jsonl");
    std::fs::write(
        &other,
        (0..11).map(|i| format!("{}\n", i + 1)).collect::<String>(),
    )
    .unwrap();
    let foreign = square_shards(cache.path(), d, &other, "foreign", 3);
    let err = merge_refused(cache.path(), &[a, &foreign[1], c]);
    assert!(
        err.contains("are not shards of one job: they are of another input"),
        "{err}"
    );
    let task = d.join("task.1");
    let ran = run(
        cache.path(),
        &[
            "map",
            SQUARE,
            "--task",
            "square_i64",
            "--input",
            p(&input),
            "--shard",
            "1/3",
            "-o",
            p(&task),
        ],
    );
    assert_eq!(ran.status.code(), Some(0), "{}", stderr(&ran));
    let err = merge_refused(cache.path(), &[a, &task, c]);
    assert!(
        err.contains("of task \"square_i64\" and \"square\""),
        "{err}"
    );

    // A truncated output (as a shard's copy cut short), a changed one, and
    // an output without its sidecar (a shard that never finished).
    let cut = d.join("cut");
    let whole = std::fs::read(b).unwrap();
    std::fs::write(&cut, &whole[..whole.len() - 20]).unwrap();
    std::fs::copy(d.join("out.1.shard"), d.join("cut.shard")).unwrap();
    let err = merge_refused(cache.path(), &[a, &cut, c]);
    assert!(
        err.contains("cut (shard 1/3 (tasks 4..8)): incomplete")
            && err.contains("task 7 is the first missing")
            && err.contains("rerun that shard"),
        "{err}"
    );
    std::fs::write(&cut, &whole[..whole.len() / 2 + 1]).unwrap();
    let err = merge_refused(cache.path(), &[a, &cut, c]);
    assert!(err.contains("incomplete"), "{err}");
    let edited = String::from_utf8(whole.clone())
        .unwrap()
        .replace("25", "26");
    std::fs::write(&cut, edited).unwrap();
    let err = merge_refused(cache.path(), &[a, &cut, c]);
    assert!(
        err.contains("is not the output its sidecar describes"),
        "{err}"
    );
    std::fs::remove_file(d.join("cut.shard")).unwrap();
    let err = merge_refused(cache.path(), &[a, &cut, c]);
    assert!(err.contains("has no sidecar"), "{err}");

    // A shard stopped by --fail-fast is not complete.
    let tens = d.join("tens.jsonl");
    std::fs::write(&tens, "1\n10\n3\n4\n").unwrap();
    let stopped = d.join("stopped.0");
    let ran = run(
        cache.path(),
        &[
            "map",
            TESTGUEST,
            "--task",
            "fail_on_tens",
            "-j",
            "1",
            "--input",
            p(&tens),
            "--fail-fast",
            "--shard",
            "0/1",
            "-o",
            p(&stopped),
        ],
    );
    assert_eq!(ran.status.code(), Some(1), "{}", stderr(&ran));
    let err = merge_refused(cache.path(), &[&stopped]);
    assert!(
        err.contains("stopped at a failure (--fail-fast) after 2 of its 4 tasks"),
        "{err}"
    );

    // What shard mode cannot run is refused before it starts.
    let out = run(
        cache.path(),
        &[
            "map", SQUARE, "--task", "square", "--shard", "0/2", "-o", "x",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("stdin cannot be counted"),
        "{}",
        stderr(&out)
    );
    let out = run(
        cache.path(),
        &[
            "map", SQUARE, "--task", "square", "--range", "0..3", "--shard", "2/2",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("K must be below N"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn shard_auto_reads_slurm_and_kubernetes_variables() {
    let cache = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let args = [
        "map",
        SQUARE,
        "--task",
        "square",
        "--range",
        "0..10",
        "--shard",
        "auto",
        "-o",
        p(&out),
    ];
    let indices = |env: &[(&str, &str)]| -> Vec<u64> {
        let ran = run_env(cache.path(), &args, env);
        assert_eq!(ran.status.code(), Some(0), "{env:?}: {}", stderr(&ran));
        std::fs::read_to_string(&out)
            .unwrap()
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["index"]
                    .as_u64()
                    .unwrap()
            })
            .collect()
    };
    assert_eq!(
        indices(&[
            ("SLURM_ARRAY_TASK_ID", "1"),
            ("SLURM_ARRAY_TASK_COUNT", "3")
        ]),
        [4, 5, 6]
    );
    // Array IDs need not start at 0 (--array=5-7).
    assert_eq!(
        indices(&[
            ("SLURM_ARRAY_TASK_ID", "7"),
            ("SLURM_ARRAY_TASK_COUNT", "3"),
            ("SLURM_ARRAY_TASK_MIN", "5"),
            ("SLURM_ARRAY_TASK_MAX", "7"),
        ]),
        [7, 8, 9]
    );
    assert_eq!(
        indices(&[("JOB_COMPLETION_INDEX", "0"), ("JOB_COMPLETIONS", "4")]),
        [0, 1, 2]
    );
    let refused = |env: &[(&str, &str)]| {
        let ran = run_env(cache.path(), &args, env);
        assert_eq!(ran.status.code(), Some(2), "{env:?}");
        stderr(&ran)
    };
    let err = refused(&[("JOB_COMPLETION_INDEX", "1")]);
    assert!(
        err.contains("JOB_COMPLETIONS is not") && err.contains(".spec.completions"),
        "{err}"
    );
    let err = refused(&[("SLURM_ARRAY_TASK_ID", "1")]);
    assert!(err.contains("SLURM_ARRAY_TASK_COUNT is not"), "{err}");
    let err = refused(&[]);
    assert!(
        err.contains("SLURM_ARRAY_TASK_ID") && err.contains("JOB_COMPLETION_INDEX"),
        "{err}"
    );
}

/// Waits until `journal` holds more than `records` records, while `child`
/// runs.
fn wait_for_records(child: &mut std::process::Child, journal: &Path, records: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let held =
            std::fs::read_to_string(journal).map_or(0, |t| t.lines().count().saturating_sub(1));
        if held > records {
            return;
        }
        assert!(Instant::now() < deadline, "the shard did not get going");
        assert!(
            child.try_wait().unwrap().is_none(),
            "the shard finished before it was killed"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_killed_shard_resumes_from_its_journal_and_merges_identically() {
    let cache = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let input = d.join("in.jsonl");
    // 40 tasks of 40 ms: about 0.4 s a shard on 2 workers.
    std::fs::write(&input, "40\n".repeat(40)).unwrap();
    let base = [
        "map",
        TESTGUEST,
        "--task",
        "sleep_ms",
        "-j",
        "2",
        "--input",
        p(&input),
    ];
    let single = run(cache.path(), &base);
    assert_eq!(single.status.code(), Some(0), "{}", stderr(&single));
    let shard = |k: u64| {
        let (out, journal) = (d.join(format!("out.{k}")), d.join(format!("journal.{k}")));
        let shard = format!("{k}/2");
        let mut args: Vec<String> = base.iter().map(|s| s.to_string()).collect();
        args.extend(["--shard", &shard, "-o", p(&out), "--journal", p(&journal)].map(String::from));
        (args, out, journal)
    };
    let (args0, out0, _) = shard(0);
    let args0: Vec<&str> = args0.iter().map(String::as_str).collect();
    assert_eq!(run(cache.path(), &args0).status.code(), Some(0));

    let (args1, out1, journal1) = shard(1);
    let args1: Vec<&str> = args1.iter().map(String::as_str).collect();
    let mut child = command(cache.path(), &args1, &[]).spawn().unwrap();
    wait_for_records(&mut child, &journal1, 4);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let recorded = std::fs::read_to_string(&journal1).unwrap().lines().count() - 1;
    assert!(recorded < 20, "killed mid-run: {recorded} of 20 recorded");
    assert!(!out1.exists(), "a killed shard leaves no output");
    let err = merge_refused(cache.path(), &[&out0]);
    assert!(
        err.contains("tasks 20..40 of 40") && err.contains("shard 1/2 is missing"),
        "{err}"
    );

    let mut verbose = vec!["-v"];
    verbose.extend(&args1);
    let resumed = run(cache.path(), &verbose);
    assert_eq!(resumed.status.code(), Some(0), "{}", stderr(&resumed));
    assert!(
        stderr(&resumed).contains(&format!("20 tasks ({recorded} from the journal)")),
        "{}",
        stderr(&resumed)
    );
    let merged = run(cache.path(), &["merge", p(&out1), p(&out0)]);
    assert_eq!(merged.status.code(), Some(0), "{}", stderr(&merged));
    assert_eq!(merged.stdout, single.stdout);

    // Another shard's journal is refused, naming the range.
    let (_, _, journal0) = shard(0);
    let mut wrong = args1.clone();
    let at = wrong.iter().position(|a| *a == "--journal").unwrap();
    wrong[at + 1] = p(&journal0);
    let err = run(cache.path(), &wrong);
    assert_eq!(err.status.code(), Some(2));
    assert!(
        stderr(&err).contains("outside shard 1/2 (tasks 20..40)"),
        "{}",
        stderr(&err)
    );
}

/// A private single-node Slurm under a temporary directory, stopped (its
/// jobs cancelled, its daemons ended by PID) when dropped.
struct Slurm {
    dir: PathBuf,
    conf: String,
    _temp: tempfile::TempDir,
}

impl Slurm {
    /// Starts one (installing Slurm with tests/servers/install if it is
    /// missing); `Err` says why it could not.
    fn start() -> Result<Slurm, String> {
        if Command::new("sbatch").arg("--version").output().is_err() {
            install_servers()?;
        }
        let temp = tempfile::Builder::new()
            .prefix("wasmpool-slurm-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        // munged needs every directory above its socket searchable by all.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(temp.path(), std::fs::Permissions::from_mode(0o755))
            .map_err(|e| e.to_string())?;
        let dir = temp.path().join("slurm");
        std::fs::create_dir(&dir).map_err(|e| e.to_string())?;
        let mut slurm = Slurm {
            dir,
            conf: String::new(),
            _temp: temp,
        };
        let started = Command::new(servers("slurm-start"))
            .arg(&slurm.dir)
            .output()
            .map_err(|e| format!("tests/servers/slurm-start: {e}"))?;
        let stdout = String::from_utf8_lossy(&started.stdout);
        match stdout.lines().find_map(|l| l.strip_prefix("SLURM_CONF=")) {
            Some(conf) if started.status.success() => slurm.conf = conf.to_string(),
            _ => {
                return Err(format!(
                    "tests/servers/slurm-start failed: {}",
                    String::from_utf8_lossy(&started.stderr)
                ));
            }
        }
        Ok(slurm)
    }

    /// A Slurm client command (sbatch, squeue, scontrol) on this cluster.
    fn client(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        cmd.env("SLURM_CONF", &self.conf);
        cmd
    }
}

impl Drop for Slurm {
    fn drop(&mut self) {
        let _ = Command::new(servers("slurm-stop")).arg(&self.dir).output();
    }
}

#[test]
fn a_slurm_job_array_with_a_requeued_shard_merges_to_the_single_run() {
    let started = Instant::now();
    let slurm = match Slurm::start() {
        Ok(slurm) => slurm,
        Err(why) if !in_ci() => {
            eprintln!("\nskipped: no private Slurm: {why} (with CI set, this is a failure)\n");
            return;
        }
        Err(why) => panic!("no private Slurm (CI is set, so this fails): {why}"),
    };
    let cache = tempfile::tempdir().unwrap();
    // The job's files, where the jobs (root, in another process tree) can
    // reach them.
    let d = slurm.dir.join("job");
    std::fs::create_dir(&d).unwrap();
    let input = d.join("in.jsonl");
    // 80 tasks of 100 ms: about 2 s a shard on 2 workers.
    std::fs::write(&input, "100\n".repeat(80)).unwrap();
    let map = |extra: &str| {
        format!(
            "'{}' map '{}' --task sleep_ms -j 2 --input '{}'{extra}",
            env!("CARGO_BIN_EXE_wasmpool"),
            TESTGUEST,
            p(&input)
        )
    };
    let single = run(
        cache.path(),
        &[
            "map",
            TESTGUEST,
            "--task",
            "sleep_ms",
            "-j",
            "2",
            "--input",
            p(&input),
        ],
    );
    assert_eq!(single.status.code(), Some(0), "{}", stderr(&single));
    let script = d.join("job.sh");
    let k = "$SLURM_ARRAY_TASK_ID";
    let dir = p(&d);
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n\
             echo \"run ${{SLURM_RESTART_COUNT:-0}}\" >> '{dir}'/runs.{k}\n\
             export WASMPOOL_CACHE_DIR='{}'\n\
             exec {}\n",
            p(cache.path()),
            map(&format!(
                " --shard auto --journal '{dir}'/journal.{k} -o '{dir}'/out.{k}"
            ))
        ),
    )
    .unwrap();
    // sbatch --wait, in the background: its first line is the job id.
    let mut sbatch = slurm
        .client("sbatch")
        .args([
            "--parsable",
            "--wait",
            "--array=0-1",
            "--open-mode=append",
            "-D",
            dir,
        ])
        .arg("-o")
        .arg(d.join("slurm-%a.out"))
        .arg(&script)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let job = {
        use std::io::BufRead;
        let mut line = String::new();
        std::io::BufReader::new(sbatch.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        line.trim().split(';').next().unwrap().to_string()
    };
    assert!(job.parse::<u64>().is_ok(), "sbatch printed {job:?}");
    // Shard 1 is requeued mid-run once it has recorded a few results: Slurm
    // kills it and starts it again (SLURM_RESTART_COUNT=1).
    let journal1 = d.join("journal.1");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let held =
            std::fs::read_to_string(&journal1).map_or(0, |t| t.lines().count().saturating_sub(1));
        if held > 4 {
            break;
        }
        assert!(Instant::now() < deadline, "shard 1 did not get going");
        std::thread::sleep(Duration::from_millis(20));
    }
    let requeue = slurm
        .client("scontrol")
        .args(["requeue", &format!("{job}_1")])
        .output()
        .unwrap();
    assert!(requeue.status.success(), "{}", stderr(&requeue));
    // Done when sbatch --wait has returned and the queue is empty.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let waiting = sbatch.try_wait().unwrap().is_none();
        let queued = slurm
            .client("squeue")
            .args(["-h", "-j", &job])
            .output()
            .unwrap();
        if !waiting && queued.stdout.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "job {job} not done within 60 s");
        std::thread::sleep(Duration::from_millis(200));
    }
    let runs = |k| std::fs::read_to_string(d.join(format!("runs.{k}"))).unwrap_or_default();
    assert_eq!(runs(0), "run 0\n");
    assert_eq!(runs(1), "run 0\nrun 1\n", "shard 1 ran twice");
    let log1 = std::fs::read_to_string(d.join("slurm-1.out")).unwrap_or_default();
    let replayed: u64 = log1
        .split(" from the journal")
        .next()
        .and_then(|before| before.rsplit(", ").next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no summary of a resumed run in shard 1's log:\n{log1}"));
    assert!(
        (1..40).contains(&replayed),
        "the rerun replayed {replayed} of its 40 results: it was killed mid-run:\n{log1}"
    );
    let merged = run(
        cache.path(),
        &["merge", p(&d.join("out.1")), p(&d.join("out.0"))],
    );
    assert_eq!(merged.status.code(), Some(0), "{}", stderr(&merged));
    assert_eq!(
        merged.stdout, single.stdout,
        "the merged output is the single run's"
    );
    drop(slurm);
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
}
