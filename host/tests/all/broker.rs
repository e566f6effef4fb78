//! Queue mode on a real redis-server (issue 16): `map --broker` with
//! `wasmpool worker`s prints exactly the single-machine output; a worker
//! killed mid-task has its entries claimed by another, and Redis killed
//! and restarted mid-run loses nothing; an entry whose workers keep dying
//! becomes a `lost` error line after --max-attempts; a submitter killed and
//! run again re-attaches to its job. Skipped (with a message) outside CI
//! when redis-server is missing and cannot be installed; a failure under
//! CI=1.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use wasmpool_tests::TESTGUEST;

use crate::redis::{Children, Redis};

fn wasmpool(cache: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wasmpool"));
    cmd.args(args)
        .env("WASMPOOL_CACHE_DIR", cache)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Waits for `child` at most `limit`, then kills it and fails.
fn wait_output(child: Child, limit: Duration, what: &str) -> Output {
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            // SAFETY: kill(2) on a child of this process, by its PID.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            panic!("{what} did not finish in {limit:?}");
        }
    }
}

/// Waits at most `limit` for a child to exit (a worker with
/// --exit-when-idle), else fails (the child is killed by `Children`).
fn exit_within(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "a worker did not exit within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn worker(cache: &Path, url: &str, extra: &[&str]) -> Child {
    let mut args = vec!["worker", "--broker", url, "-q"];
    args.extend_from_slice(extra);
    wasmpool(cache, &args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn submit(cache: &Path, url: &str, task: &str, input: &Path) -> Child {
    submit_with(cache, url, task, input, &[])
}

fn submit_with(cache: &Path, url: &str, task: &str, input: &Path, extra: &[&str]) -> Child {
    let mut args = vec![
        "map",
        TESTGUEST,
        "--task",
        task,
        "--input",
        input.to_str().unwrap(),
        "--broker",
        url,
    ];
    args.extend_from_slice(extra);
    wasmpool(cache, &args).spawn().unwrap()
}

/// The output of `map` on this machine.
fn single_run(cache: &Path, task: &str, input: &Path) -> Output {
    let args = [
        "map",
        TESTGUEST,
        "--task",
        task,
        "--input",
        input.to_str().unwrap(),
        "-j",
        "2",
        "-q",
    ];
    wasmpool(cache, &args).output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn assert_same(single: &Output, queued: &Output) {
    assert_eq!(
        text(&queued.stdout),
        text(&single.stdout),
        "queue mode's output differs from one machine's; stderr: {}",
        text(&queued.stderr)
    );
    assert_eq!(
        queued.status.code(),
        single.status.code(),
        "{}",
        text(&queued.stderr)
    );
}

#[test]
fn two_workers_print_exactly_the_single_machine_output() {
    let Some(redis) = Redis::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let input = dir.path().join("in.jsonl");
    // Multiples of ten fail; a line that is not JSON, a blank line and a
    // string are input errors located in the file.
    let mut lines: Vec<String> = (0..200).map(|i| i.to_string()).collect();
    lines.insert(17, "oops".into());
    lines.insert(40, String::new());
    lines.insert(41, "\"x\"".into());
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let single = single_run(&cache, "fail_on_tens", &input);
    let mut kids = Children::default();
    let submitter = submit(&cache, &redis.url, "fail_on_tens", &input);
    for _ in 0..2 {
        kids.0
            .push(worker(&cache, &redis.url, &["-j", "1", "--exit-when-idle"]));
    }
    let queued = wait_output(submitter, Duration::from_secs(60), "map --broker");
    assert_same(&single, &queued);
    assert_eq!(text(&queued.stdout).lines().count(), 202);
    for kid in &mut kids.0 {
        let status = exit_within(kid, Duration::from_secs(30));
        assert!(status.success(), "a worker ended with {status}");
    }
    // The same with 7 inputs to an entry (the last one short, and the
    // input errors' entries cut around them).
    let submitter = submit_with(
        &cache,
        &redis.url,
        "fail_on_tens",
        &input,
        &["--batch", "7"],
    );
    let mut kids = Children::default();
    kids.0
        .push(worker(&cache, &redis.url, &["-j", "2", "--exit-when-idle"]));
    let batched = wait_output(submitter, Duration::from_secs(60), "map --broker --batch 7");
    assert_same(&single, &batched);
}

#[test]
fn a_killed_worker_and_a_restarted_redis_lose_nothing() {
    let Some(redis) = Redis::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let input = dir.path().join("in.jsonl");
    let lines: Vec<String> = (0..40).map(|i| (100 + i).to_string()).collect();
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let single = single_run(&cache, "sleep_ms", &input);
    let mut kids = Children::default();
    let submitter = submit(&cache, &redis.url, "sleep_ms", &input);
    let flags = ["-j", "1", "--claim-idle", "1s", "--exit-when-idle"];
    kids.0.push(worker(&cache, &redis.url, &flags));
    kids.0.push(worker(&cache, &redis.url, &flags));
    // Both are mid-task (each task sleeps 100 ms or more).
    std::thread::sleep(Duration::from_millis(1500));
    kids.0[0].kill().unwrap();
    kids.0[0].wait().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    redis.kill();
    std::thread::sleep(Duration::from_millis(500));
    redis.restart().unwrap();
    let queued = wait_output(submitter, Duration::from_secs(90), "map --broker");
    assert_same(&single, &queued);
    let status = exit_within(&mut kids.0[1], Duration::from_secs(30));
    assert!(status.success(), "the surviving worker ended with {status}");
}

#[test]
fn an_entry_whose_workers_keep_dying_becomes_a_lost_line() {
    let Some(redis) = Redis::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let input = dir.path().join("in.jsonl");
    // The middle task never ends in time: each worker running it is killed,
    // as a task that crashes its worker process would have it.
    // The tasks after it are held beside it (each worker holds two
    // entries per instance): they must not be lost with it.
    std::fs::write(&input, "5\n600000\n7\n8\n9\n").unwrap();
    let mut kids = Children::default();
    let submitter = submit(&cache, &redis.url, "sleep_ms", &input);
    let flags = ["-j", "1", "--claim-idle", "1s", "--max-attempts", "2"];
    for _ in 0..2 {
        let mut w = worker(&cache, &redis.url, &flags);
        std::thread::sleep(Duration::from_millis(2000));
        w.kill().unwrap();
        w.wait().unwrap();
    }
    let mut last = flags.to_vec();
    last.push("--exit-when-idle");
    kids.0.push(worker(&cache, &redis.url, &last));
    let queued = wait_output(submitter, Duration::from_secs(60), "map --broker");
    let out = text(&queued.stdout);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 5, "{out}\n{}", text(&queued.stderr));
    assert_eq!(lines[0], r#"{"index":0,"ok":5}"#);
    assert!(
        lines[1].starts_with(
            r#"{"index":1,"error":{"kind":"lost","message":"the task was delivered 2 times"#
        ),
        "{}",
        lines[1]
    );
    assert_eq!(
        lines[2..],
        [
            r#"{"index":2,"ok":7}"#,
            r#"{"index":3,"ok":8}"#,
            r#"{"index":4,"ok":9}"#
        ]
    );
    assert_eq!(queued.status.code(), Some(1));
}

#[test]
fn a_task_longer_than_the_claim_time_is_not_claimed_from_a_live_worker() {
    let Some(redis) = Redis::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let input = dir.path().join("in.jsonl");
    std::fs::write(&input, "3000\n").unwrap();
    let mut kids = Children::default();
    let submitter = submit(&cache, &redis.url, "sleep_ms", &input);
    let flags = [
        "-j",
        "1",
        "--claim-idle",
        "1s",
        "--max-attempts",
        "1",
        "--exit-when-idle",
    ];
    kids.0.push(worker(&cache, &redis.url, &flags));
    std::thread::sleep(Duration::from_millis(700));
    kids.0.push(worker(&cache, &redis.url, &flags));
    let queued = wait_output(submitter, Duration::from_secs(60), "map --broker");
    assert_eq!(
        text(&queued.stdout),
        "{\"index\":0,\"ok\":3000}\n",
        "{}",
        text(&queued.stderr)
    );
}

#[test]
fn a_rerun_submitter_re_attaches_and_prints_the_same_output() {
    let Some(redis) = Redis::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let input = dir.path().join("in.jsonl");
    let lines: Vec<String> = (0..30).map(|i| (50 + i).to_string()).collect();
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let single = single_run(&cache, "sleep_ms", &input);
    let mut kids = Children::default();
    let mut first = submit(&cache, &redis.url, "sleep_ms", &input);
    kids.0
        .push(worker(&cache, &redis.url, &["-j", "1", "--exit-when-idle"]));
    std::thread::sleep(Duration::from_millis(800));
    first.kill().unwrap();
    first.wait().unwrap();
    let again = submit(&cache, &redis.url, "sleep_ms", &input);
    let queued = wait_output(again, Duration::from_secs(60), "map --broker, again");
    assert!(
        text(&queued.stderr).contains("re-attached"),
        "{}",
        text(&queued.stderr)
    );
    assert_same(&single, &queued);
    let started = Instant::now();
    let status = exit_within(&mut kids.0[0], Duration::from_secs(30));
    assert!(status.success() && started.elapsed() < Duration::from_secs(30));

    // With a journal, results leave Redis once journaled; the rerun
    // replays them from the journal and gathers the rest.
    let journal = dir.path().join("journal");
    let j = journal.to_str().unwrap();
    let mut first = submit_with(&cache, &redis.url, "sleep_ms", &input, &["--journal", j]);
    kids.0
        .push(worker(&cache, &redis.url, &["-j", "1", "--exit-when-idle"]));
    std::thread::sleep(Duration::from_millis(1200));
    first.kill().unwrap();
    first.wait().unwrap();
    let recorded = std::fs::read_to_string(&journal).unwrap().lines().count();
    assert!(recorded > 1, "the first run journaled nothing");
    let again = submit_with(&cache, &redis.url, "sleep_ms", &input, &["--journal", j]);
    let queued = wait_output(
        again,
        Duration::from_secs(60),
        "map --broker --journal, again",
    );
    assert_same(&single, &queued);
}

/// The output of `wasmpool ARGS` on this machine (-j 2) and with
/// `--broker URL` (one worker running), stdin from `stdin`.
fn both_ways(cache: &Path, url: &str, args: &[&str], stdin: &[u8]) -> (Output, Output) {
    let run = |extra: &[&str]| {
        let mut all = args.to_vec();
        all.extend_from_slice(extra);
        let mut child = wasmpool(cache, &all).stdin(Stdio::piped()).spawn().unwrap();
        let mut input = child.stdin.take().unwrap();
        let bytes = stdin.to_vec();
        std::thread::spawn(move || {
            use std::io::Write;
            let _ = input.write_all(&bytes);
        });
        wait_output(child, Duration::from_secs(60), &all.join(" "))
    };
    (run(&["-j", "2"]), run(&["--broker", url]))
}

/// Lines of stderr that name a task (`--values` reports failures there).
fn task_messages(out: &Output) -> Vec<String> {
    text(&out.stderr)
        .lines()
        .filter(|l| l.contains(": task "))
        .map(str::to_string)
        .collect()
}

#[test]
fn every_input_source_and_output_format_of_map_works_with_a_broker() {
    let Some(redis) = Redis::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let array = dir.path().join("in.json");
    std::fs::write(&array, "[1, 20,\n  \"x\", 3]").unwrap();
    let array = array.to_str().unwrap();
    let mut kids = Children::default();
    kids.0.push(worker(&cache, &redis.url, &["-j", "2"]));
    let map = ["map", TESTGUEST, "--task"];
    let cases: Vec<(Vec<&str>, &[u8])> = vec![
        (vec!["fail_on_tens", "--range", "5..25", "--values"], b""),
        (
            vec!["fail_on_tens", "--input", "-"],
            b"1\n2\n\noops\n30\n4\n",
        ),
        (vec!["fail_on_tens", "--input-array", array], b""),
        (vec!["shout", "-R", "-r"], b"hello\nworld\n\n\xff\n"),
    ];
    for (case, stdin) in cases {
        let args: Vec<&str> = map.iter().chain(&case).copied().collect();
        let (single, queued) = both_ways(&cache, &redis.url, &args, stdin);
        assert_same(&single, &queued);
        assert_eq!(task_messages(&queued), task_messages(&single), "{case:?}");
        assert!(!text(&single.stdout).is_empty(), "{case:?}");
    }
    // --fail-fast stops at the first failure in input order, and deletes
    // the job so that workers stop on it.
    let args: Vec<&str> = map
        .iter()
        .chain(&["fail_on_tens", "--range", "5..500", "--fail-fast"])
        .copied()
        .collect();
    let (_, queued) = both_ways(&cache, &redis.url, &args, b"");
    assert_eq!(queued.status.code(), Some(1));
    let out = text(&queued.stdout);
    assert!(
        out.lines()
            .last()
            .unwrap()
            .starts_with(r#"{"index":5,"error""#),
        "{out}"
    );
    assert!(text(&queued.stderr).contains("stopped at the first failure"));
    // A shard of a broker job means nothing: refused, saying why.
    let out = wasmpool(
        &cache,
        &[
            "map",
            TESTGUEST,
            "--task",
            "fail_on_tens",
            "--range",
            "0..9",
            "--broker",
            &redis.url,
            "--shard",
            "1/2",
            "-o",
            "x",
        ],
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("no shard is needed"),
        "{}",
        text(&out.stderr)
    );
}

/// The id `map --broker` gives the job of `task` over JSON lines file
/// `input` with the test guest.
fn job_id(task: &str, input: &Path) -> wasmpool::broker::JobId {
    use sha2::Digest;
    let module = std::fs::read(TESTGUEST).unwrap();
    let sha: [u8; 32] = sha2::Sha256::digest(std::fs::read(input).unwrap()).into();
    wasmpool::broker::JobId::derive(&module, task, &sha, "json batch 1")
}

#[test]
fn a_job_a_worker_cannot_run_is_refused_and_named_and_the_others_still_run() {
    let Some(redis) = Redis::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let input = dir.path().join("in.jsonl");
    std::fs::write(&input, "1\n2\n3\n").unwrap();
    let job = job_id("fail_on_tens", &input);

    // A meta planted for the job's id naming another module: refused by
    // the submitter, whose job it is not.
    let meta = format!("wasmpool:job:{job}:meta");
    redis.cli(&[
        "HSET",
        &meta,
        "module",
        &"0".repeat(64),
        "task",
        "fail_on_tens",
        "how",
        "json",
        "name",
        "x",
        "submitted",
        "0",
    ]);
    let out = wait_output(
        submit(&cache, &redis.url, "fail_on_tens", &input),
        Duration::from_secs(30),
        "map (planted meta)",
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("refusing to use it"),
        "{}",
        text(&out.stderr)
    );
    redis.cli(&["DEL", &meta]);

    // A result line not written by a worker of ours (a line break inside):
    // refused, not printed over two lines.
    let results = format!("wasmpool:job:{job}:results");
    redis.cli(&["HSET", &results, "0", "{\"index\":0,\n\"ok\":1}"]);
    let out = wait_output(
        submit(&cache, &redis.url, "fail_on_tens", &input),
        Duration::from_secs(30),
        "map (forged result)",
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("is not its result line"),
        "{}",
        text(&out.stderr)
    );
    assert!(text(&out.stdout).is_empty());
    redis.cli(&["DEL", &results, &meta, &format!("wasmpool:job:{job}:tasks")]);

    // The job's results key of another type: the worker cannot write its
    // results, says so and stays up; the submitter stops with the error;
    // another job runs on the same worker.
    let results = format!("wasmpool:job:{job}:results");
    redis.cli(&["SET", &results, "not a hash"]);
    let mut kids = Children::default();
    kids.0.push(worker(&cache, &redis.url, &["-j", "1"]));
    let out = wait_output(
        submit(&cache, &redis.url, "fail_on_tens", &input),
        Duration::from_secs(30),
        "map (results key a string)",
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("WRONGTYPE"),
        "{}",
        text(&out.stderr)
    );
    redis.cli(&["DEL", &results]);
    let other = dir.path().join("other.jsonl");
    // (another input, so another job)
    std::fs::write(&other, "1\n2\n3\n\n").unwrap();
    let single_other = single_run(&cache, "fail_on_tens", &other);
    let out = wait_output(
        submit(&cache, &redis.url, "fail_on_tens", &other),
        Duration::from_secs(30),
        "map (another job)",
    );
    assert_same(&single_other, &out);
    assert!(kids.0[0].try_wait().unwrap().is_none(), "the worker exited");
    drop(kids);

    // (The job above stays broken: its entries were acknowledged in the
    // transaction whose result writes failed, a Redis transaction does not
    // roll back; the worker and the submitter both said so.)
    //
    // A worker whose limits the module cannot meet refuses a job, and the
    // submitter, waiting, says which worker and why.
    let input = dir.path().join("third.jsonl");
    std::fs::write(&input, "4\n5\n20\n").unwrap();
    let single = single_run(&cache, "fail_on_tens", &input);
    let mut kids = Children::default();
    kids.0.push(worker(
        &cache,
        &redis.url,
        &["-j", "1", "--max-memory", "512KiB"],
    ));
    let mut submitter = submit(&cache, &redis.url, "fail_on_tens", &input);
    let mut stderr = submitter.stderr.take().unwrap();
    let said = std::thread::spawn(move || {
        use std::io::Read;
        let mut buf = [0u8; 4096];
        let mut all = String::new();
        while let Ok(n) = stderr.read(&mut buf) {
            if n == 0 {
                break;
            }
            all.push_str(&String::from_utf8_lossy(&buf[..n]));
            // (the line may come in several writes)
            if all.contains("waits for a worker that can") {
                break;
            }
        }
        all
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    while !said.is_finished() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = submitter.kill();
    let _ = submitter.wait();
    let said = said.join().unwrap();
    assert!(
        said.contains("does not run this job") && said.contains("memory"),
        "{said}"
    );
    // The job's results, once a worker that can run it comes.
    kids.0.push(worker(
        &cache,
        &redis.url,
        &["-j", "1", "--claim-idle", "1s"],
    ));
    let out = wait_output(
        submit(&cache, &redis.url, "fail_on_tens", &input),
        Duration::from_secs(30),
        "map (after the refusal)",
    );
    assert_same(&single, &out);
}
