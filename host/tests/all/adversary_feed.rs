//! Adversary pass over `Pool::feed` / `Feed` and queue mode built on it:
//! a feed cancelled mid-stream under a tight output budget yields each
//! index once (both modes); on a real redis-server (skipped without one
//! outside CI), a stale job id must not make idle workers spin, a
//! submitter whose job is deleted under it must not wait for ever, and a
//! `--fail-fast` job's keys must not come back after it is deleted.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use wasmpool_tests::TESTGUEST;

use crate::redis::{Children, Redis};
use crate::util::{both_modes, builder};

both_modes! {
    /// A batch cut short by the output budget while an earlier batch is
    /// still running leaves its rest held in the feed; a cancel at that
    /// moment must still end those inputs (as `terminated` or run), never
    /// drop them: every pushed index yields exactly once.
    #[test]
    fn a_cancel_while_a_cut_rest_is_held_loses_no_result() {
        let pool = builder(TESTGUEST, 2)
            .window(64)
            .output_budget(100_000)
            .build()
            .unwrap();
        let task = pool.task("big").unwrap();
        let mut lost = Vec::new();
        for round in 0..20 {
            let mut feed = pool.feed(&task).unwrap();
            // Fast tasks first, so that later batches hold several inputs.
            for _ in 0..16 {
                feed.push(task.parse_json(b"10"));
            }
            while feed.pending() > 0 {
                let _ = feed.next_timeout(Duration::from_secs(10)).expect("a result");
            }
            // A slow task (a big output), then many outputs past the budget.
            feed.push(task.parse_json(b"40000000"));
            for _ in 0..60 {
                feed.push(task.parse_json(b"70000"));
            }
            let mut seen = BTreeMap::new();
            let mut taken = 0;
            while let Some((index, result)) = feed.next_timeout(Duration::from_secs(10)) {
                assert!(seen.insert(index, result.is_ok()).is_none(), "index {index} twice");
                taken += 1;
                if taken == 1 + round % 20 {
                    feed.cancel();
                }
            }
            if feed.pending() != 0 {
                lost.push((round, feed.pending(), (16..77).filter(|i| !seen.contains_key(i)).count()));
            }
        }
        assert!(lost.is_empty(), "(round, pending, missing): {lost:?}");
    }
}

fn wasmpool(cache: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wasmpool"));
    cmd.args(args)
        .env("WASMPOOL_CACHE_DIR", cache)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    cmd
}

fn worker(cache: &Path, url: &str) -> Child {
    wasmpool(cache, &["worker", "--broker", url, "-q", "-j", "1"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap()
}

/// Waits at most `limit` for `child`; `None` (and the child killed by
/// `Children` later) if it is still running.
fn exited_within(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// A job id left in `wasmpool:jobs` without its meta (an operator deleted
/// the meta, as the submitter's refusal message suggests, or Redis evicted
/// it): an idle worker looked it up again at once, round after round,
/// with no wait (one job listed: "its read waited already"), ~13,000
/// SMEMBERS + HMGET a second, a core of the worker's and of Redis's.
#[test]
fn a_stale_job_id_does_not_make_an_idle_worker_spin() {
    let Some(redis) = Redis::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    redis.cli(&["SADD", "wasmpool:jobs", &"a".repeat(64)]);
    let mut kids = Children::default();
    kids.0.push(worker(&cache, &redis.url));
    std::thread::sleep(Duration::from_millis(1000));
    redis.cli(&["CONFIG", "RESETSTAT"]);
    std::thread::sleep(Duration::from_millis(2000));
    let (lists, reads) = (redis.calls("smembers"), redis.calls("hmget"));
    assert!(
        lists < 100 && reads < 100,
        "an idle worker listed the jobs {lists} times and read a meta {reads} times in 2 s"
    );
}

/// Two submitters of the same job (the same command run twice, or a rerun
/// while the first is still alive): the first prints everything and
/// deletes the job; the second, re-attached, waited for ever for results
/// of a job that no longer exists, without a word. Here the job is
/// deleted as `Broker::finish` does (SREM + DEL of its keys) while its
/// submitter waits for a worker.
#[test]
fn a_submitter_whose_job_is_deleted_under_it_does_not_wait_for_ever() {
    let Some(redis) = Redis::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let mut kids = Children::default();
    let args = [
        "map", TESTGUEST, "--task", "sleep_ms", "--range", "0..8", "--broker", &redis.url,
    ];
    kids.0.push(wasmpool(&cache, &args).spawn().unwrap());
    let deadline = Instant::now() + Duration::from_secs(30);
    let meta = loop {
        let keys = redis.cli(&["KEYS", "wasmpool:job:*:meta"]);
        if let Some(key) = keys.lines().find(|l| !l.trim().is_empty()) {
            break key.to_string();
        }
        assert!(Instant::now() < deadline, "the job never appeared");
        std::thread::sleep(Duration::from_millis(50));
    };
    std::thread::sleep(Duration::from_millis(500));
    let job = meta
        .trim_start_matches("wasmpool:job:")
        .trim_end_matches(":meta");
    let key = |what: &str| format!("wasmpool:job:{job}:{what}");
    redis.cli(&["SREM", "wasmpool:jobs", job]);
    let (tasks, results, ready, refusals) =
        (key("tasks"), key("results"), key("ready"), key("refusals"));
    redis.cli(&["DEL", &meta, &tasks, &results, &ready, &refusals]);
    let status = exited_within(&mut kids.0[0], Duration::from_secs(20));
    assert!(
        status.is_some(),
        "the submitter still waits 20 s after its job was deleted"
    );
}

/// `--fail-fast` deletes its job while workers still run its entries: what
/// they write afterwards (results, the submitter's wake-up list, and a
/// refusal for the NOGROUP error of their next read) recreated keys of the
/// deleted job that nothing deletes (no TTL), one set per such run.
#[test]
fn a_fail_fast_job_leaves_no_keys_behind() {
    let Some(redis) = Redis::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let mut kids = Children::default();
    kids.0.push(worker(&cache, &redis.url));
    kids.0.push(worker(&cache, &redis.url));
    let args = [
        "map",
        TESTGUEST,
        "--task",
        "fail_on_tens",
        "--range",
        "1..400",
        "--fail-fast",
        "--broker",
        &redis.url,
    ];
    let status = wasmpool(&cache, &args).status().unwrap();
    assert_eq!(status.code(), Some(1));
    // The workers move on (and hit the deleted job) within their slice.
    std::thread::sleep(Duration::from_millis(2000));
    let keys = redis.cli(&["KEYS", "wasmpool:job:*"]);
    assert!(keys.trim().is_empty(), "keys of the deleted job: {keys}");
}

both_modes! {
    /// A feed dropped while its only worker sleeps for ten minutes in a
    /// host wait, with inputs queued past its window: the next stream of
    /// the pool runs at once (the sleep is interrupted, the queue dropped).
    #[test]
    fn a_feed_dropped_with_a_task_asleep_frees_its_worker() {
        let pool = builder(TESTGUEST, 1).window(4).build().unwrap();
        let task = pool.task("sleep_ms").unwrap();
        {
            let mut feed = pool.feed(&task).unwrap();
            for _ in 0..10_000 {
                feed.push(task.parse_json(b"600000"));
            }
            assert_eq!(feed.room(), 0);
            assert!(feed.try_next().is_none());
            assert!(feed.next_timeout(Duration::from_millis(200)).is_none());
        }
        let started = Instant::now();
        let mut feed = pool.feed(&task).unwrap();
        assert_eq!(feed.push(task.parse_json(b"1")), 0);
        let (index, result) = feed.next_timeout(Duration::from_secs(10)).expect("a result");
        assert_eq!(index, 0);
        assert!(result.is_ok(), "{result:?}");
        assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    }
}
