//! Queue mode's workloads (issue 16): the same `wasmpool map` on one
//! machine and through `wasmpool worker`s over a real redis-server
//! (started from `tests/servers/redis-start` on loopback for each run, not
//! timed). The time of a queue-mode run is from starting its workers to
//! the submitter's exit: their start-up counts, their idle exit does not.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use wasmpool_tests::{PRIMES, SQUARE};

use crate::child::Sample;

/// Tasks of the tiny workloads.
pub(crate) const TINY: u64 = 20_000;
/// The sum of the squares of 0..TINY.
pub(crate) const TINY_SQUARES: i64 = 2_666_466_670_000;
/// Entries of this many inputs for `--batch`.
pub(crate) const BATCH: &str = "64";

/// Whether this machine can run the queue-mode workloads.
pub(crate) fn available() -> bool {
    Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn servers(script: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/servers")
        .join(script)
}

/// A private redis-server, stopped (and its directory removed) on drop.
struct Redis {
    dir: PathBuf,
    url: String,
}

impl Redis {
    fn start(work: &Path) -> Redis {
        let dir = work.join("redis");
        let out = Command::new(servers("redis-start"))
            .arg(&dir)
            .stderr(Stdio::inherit())
            .output()
            .expect("tests/servers/redis-start");
        let url = String::from_utf8(out.stdout)
            .expect("utf-8")
            .trim()
            .to_string();
        assert!(
            out.status.success() && url.starts_with("redis://"),
            "redis-start failed"
        );
        Redis { dir, url }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = Command::new(servers("redis-stop"))
            .arg("--kill")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

fn wasmpool(cache: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(crate::child::wasmpool_bin());
    cmd.args(args)
        .env("WASMPOOL_CACHE_DIR", cache)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit());
    cmd
}

/// Runs workload `prefix` (`scale/...`) on `workers` cores.
pub(crate) fn run(prefix: &str, workers: usize) -> Sample {
    let work = std::env::temp_dir().join(format!("wasmpool-bench-scale-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).expect("tmp");
    let cache = work.join("cache");
    let (module, task, n) = match prefix {
        "scale/primes-local" | "scale/primes-redis" => (PRIMES, "primes_i64", 640),
        _ => (SQUARE, "square_i64", TINY),
    };
    let input = work.join("in.jsonl");
    let text: String = (0..n).map(|i| format!("{i}\n")).collect();
    std::fs::write(&input, text).expect("input");
    let input = input.to_str().expect("utf-8 path");
    // Compiled once into the cache first: no run pays compilation.
    let warm = wasmpool(
        &cache,
        &["map", module, "--task", task, "--range", "0..1", "-q"],
    )
    .stdout(Stdio::null())
    .status()
    .expect("wasmpool");
    assert!(warm.success());
    let map = [
        "map", module, "--task", task, "--input", input, "--values", "-q",
    ];
    let w = workers.to_string();
    let (secs, out) = match prefix {
        "scale/primes-local" | "scale/tiny-local" => {
            let mut args = map.to_vec();
            args.extend(["-j", &w]);
            let start = Instant::now();
            let out = wasmpool(&cache, &args).output().expect("wasmpool map");
            assert!(out.status.success(), "map failed");
            (start.elapsed().as_secs_f64(), out.stdout)
        }
        _ => {
            let redis = Redis::start(&work);
            // primes: one worker process per core (as on two machines);
            // tiny: one worker process with every core.
            let (procs, per) = match prefix {
                "scale/primes-redis" => (workers, 1),
                _ => (1, workers),
            };
            let per = per.to_string();
            let mut args = map.to_vec();
            args.extend(["--broker", &redis.url]);
            if prefix == "scale/tiny-redis-batch" {
                args.extend(["--batch", BATCH]);
            }
            let start = Instant::now();
            let mut kids: Vec<Child> = (0..procs)
                .map(|_| {
                    wasmpool(
                        &cache,
                        &["worker", "--broker", &redis.url, "-j", &per, "-q"],
                    )
                    .stdout(Stdio::null())
                    .spawn()
                    .expect("wasmpool worker")
                })
                .collect();
            let out = wasmpool(&cache, &args)
                .output()
                .expect("wasmpool map --broker");
            let secs = start.elapsed().as_secs_f64();
            for kid in &mut kids {
                let _ = kid.kill();
                let _ = kid.wait();
            }
            assert!(out.status.success(), "map --broker failed");
            (secs, out.stdout)
        }
    };
    let _ = std::fs::remove_dir_all(&work);
    let check = String::from_utf8(out)
        .expect("utf-8")
        .lines()
        .map(|l| l.parse::<i64>().expect("number"))
        .fold(0i64, i64::wrapping_add);
    Sample {
        secs,
        check,
        items: n,
        peak_kib: crate::child::peak_children_kib(),
        mem_kib: None,
    }
}
