//! One measurement, run in a child process of its own so that its peak
//! memory is its own: `wasmpool-bench --child WORKLOAD`. Prints one JSON
//! object: seconds, the checksum, items done, and peak RSS in KiB.

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Instant;

use rayon::prelude::*;
use serde::Serialize;
use wasmpool::{Isolation, Pool};
use wasmpool_kernels::{mandelbrot_row, primes_in_block};
use wasmpool_tests::{ASYNCIO, MANDELBROT, PRIMES, SQUARE, TESTGUEST};

/// What one child run reports.
#[derive(Debug, Serialize)]
pub(crate) struct Sample {
    pub(crate) secs: f64,
    pub(crate) check: i64,
    pub(crate) items: u64,
    pub(crate) peak_kib: u64,
    /// A workload's own memory figure, where it has one (KiB per task).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) mem_kib: Option<f64>,
}

/// Peak resident memory of this process (VmHWM), in KiB.
pub(crate) fn peak_self_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(str::to_string)
        })
        .and_then(|l| l.split_whitespace().nth(1).and_then(|n| n.parse().ok()))
        .unwrap_or(0)
}

/// Peak resident memory of the largest waited-for child, in KiB.
pub(crate) fn peak_children_kib() -> u64 {
    // SAFETY: `getrusage` writes into the zeroed struct we own; RUSAGE_CHILDREN
    // is a valid `who`.
    unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage);
        usage.ru_maxrss as u64
    }
}

fn pool(module: &str, workers: usize) -> Pool {
    Pool::builder()
        .module_file(module)
        .workers(workers)
        .build()
        .expect("pool")
}

/// Iterations of the asyncio guest's `burn` task (a few milliseconds of
/// arithmetic), and how many of them the CPU-bound async workloads run.
pub(crate) const BURN: u64 = 2_000_000;
pub(crate) const BURN_TASKS: u64 = 400;

/// An async-mode pool over the asyncio example guest with room for `in_flight` tasks
/// in flight across `workers` workers.
fn async_builder(workers: usize, in_flight: u64) -> wasmpool::PoolBuilder {
    let per_worker = in_flight.div_ceil(workers as u64) as u32;
    Pool::builder()
        .module_file(ASYNCIO)
        .workers(workers)
        .concurrency(per_worker)
}

fn async_pool(workers: usize, in_flight: u64) -> Pool {
    async_builder(workers, in_flight).build().expect("pool")
}

fn timed(items: u64, f: impl FnOnce() -> i64) -> Sample {
    let start = Instant::now();
    let before = Usage::now();
    let check = f();
    Usage::now().since(&before).report();
    Sample {
        secs: start.elapsed().as_secs_f64(),
        check,
        items,
        peak_kib: peak_self_kib(),
        mem_kib: None,
    }
}

/// Workloads that take only tens of milliseconds are timed over this many
/// back-to-back repetitions (each checked), and report the time of one, so
/// that a scheduling hiccup on a shared machine does not decide the figure.
const REPEAT: u32 = 10;

fn timed_repeated(items: u64, mut f: impl FnMut() -> i64) -> Sample {
    let start = Instant::now();
    let check = f();
    for _ in 1..REPEAT {
        assert_eq!(f(), check, "every repetition gives the same checksum");
    }
    let secs = start.elapsed().as_secs_f64() / f64::from(REPEAT);
    Sample {
        secs,
        check,
        items,
        peak_kib: peak_self_kib(),
        mem_kib: None,
    }
}

fn sum_map(pool: &Pool, task: &str, n: u64) -> i64 {
    pool.imap::<u64, i64>(task, 0..n)
        .expect("task")
        .map(|r| r.expect("result"))
        .sum()
}

pub(crate) fn wasmpool_bin() -> std::path::PathBuf {
    let me = std::env::current_exe().expect("current exe");
    me.parent().expect("dir").join("wasmpool")
}

fn cli(args: &[&str], input: Option<&std::path::Path>, cache: &std::path::Path) -> (f64, String) {
    let mut cmd = Command::new(wasmpool_bin());
    cmd.args(args)
        .env("WASMPOOL_CACHE_DIR", cache)
        .stderr(Stdio::inherit())
        .stdout(Stdio::piped());
    match input {
        Some(path) => cmd.stdin(std::fs::File::open(path).expect("input")),
        None => cmd.stdin(Stdio::null()),
    };
    let start = Instant::now();
    let out = cmd.output().expect("run wasmpool");
    let secs = start.elapsed().as_secs_f64();
    assert!(out.status.success(), "wasmpool {args:?} failed");
    (secs, String::from_utf8(out.stdout).expect("utf-8"))
}

/// Runs workload `name` once.
pub(crate) fn run(name: &str) -> Sample {
    let (prefix, arg) = name.rsplit_once('@').unwrap_or((name, ""));
    let workers: usize = arg.parse().unwrap_or(1);
    match prefix {
        // Compute kernels: wasm through the library, and native rayon.
        "primes64/wasm" => {
            let p = pool(PRIMES, workers);
            timed_repeated(64, || sum_map(&p, "primes_i64", 64))
        }
        "primes640/wasm" => {
            let p = pool(PRIMES, workers);
            timed(640, || sum_map(&p, "primes_i64", 640))
        }
        "mandelbrot/wasm" => {
            let p = pool(MANDELBROT, workers);
            timed_repeated(512, || sum_map(&p, "row_i64", 512))
        }
        "primes64/rayon" | "primes640/rayon" | "mandelbrot/rayon" => {
            let tp = rayon::ThreadPoolBuilder::new()
                .num_threads(workers)
                .build()
                .expect("rayon");
            let (n, kernel): (u64, fn(u64) -> u64) = match prefix {
                "primes64/rayon" => (64, primes_in_block),
                "primes640/rayon" => (640, primes_in_block),
                _ => (512, mandelbrot_row),
            };
            let run = || {
                tp.install(|| {
                    (0..n as u32)
                        .into_par_iter()
                        .with_max_len(1)
                        .map(|i| kernel(u64::from(i)))
                        .sum::<u64>() as i64
                })
            };
            if n == 640 {
                timed(n, run)
            } else {
                timed_repeated(n, run)
            }
        }
        // A million tiny tasks through the library.
        "tiny/numeric" => {
            let p = pool(SQUARE, workers);
            timed(1_000_000, || sum_map(&p, "square_i64", 1_000_000))
        }
        "tiny/sdk" => {
            let p = pool(SQUARE, workers);
            timed(1_000_000, || sum_map(&p, "square", 1_000_000))
        }
        // A million JSON lines through the CLI, end to end.
        "tiny/cli" | "tiny/cli-sdk" => {
            let task = if prefix == "tiny/cli" {
                "square_i64"
            } else {
                "square"
            };
            let dir = std::env::temp_dir().join(format!("wasmpool-bench-{}", std::process::id()));
            std::fs::create_dir_all(&dir).expect("tmp");
            let input = dir.join("lines.jsonl");
            let text: String = (0..1_000_000u64).map(|i| format!("{i}\n")).collect();
            std::fs::write(&input, text).expect("input");
            let warm = dir.join("cache");
            cli(
                &["map", SQUARE, "--task", task, "--values"],
                Some(&input),
                &warm,
            );
            let w = workers.to_string();
            let (secs, out) = cli(
                &["map", SQUARE, "--task", task, "--values", "-j", &w],
                Some(&input),
                &warm,
            );
            let check = out
                .lines()
                .map(|l| l.parse::<i64>().expect("number"))
                .fold(0i64, i64::wrapping_add);
            let _ = std::fs::remove_dir_all(&dir);
            Sample {
                secs,
                check,
                items: 1_000_000,
                peak_kib: peak_children_kib(),
                mem_kib: None,
            }
        }
        // A fresh instance per task against a reused one (one worker, or
        // `@N`: N workers, for how fresh instances scale).
        // `instance/*`: the numeric export, which writes no memory (a fresh
        // instance is its globals set back); `instance/sdk-*`: the SDK
        // task, whose input, output and stack are in memory (a fresh
        // instance is also the pages it wrote put back).
        "instance/reused" | "instance/fresh" | "instance/sdk-reused" | "instance/sdk-fresh" => {
            let isolation = if prefix.ends_with("fresh") {
                Isolation::Task
            } else {
                Isolation::Worker
            };
            let task = if prefix.contains("sdk") {
                "square"
            } else {
                "square_i64"
            };
            let p = Pool::builder()
                .module_file(SQUARE)
                .workers(workers)
                .isolation(isolation)
                .build()
                .expect("pool");
            // Runs of a few milliseconds (all but the SDK task's fresh
            // instances) are timed over repetitions.
            if prefix == "instance/sdk-fresh" {
                timed(100_000, || sum_map(&p, task, 100_000))
            } else {
                timed_repeated(100_000, || sum_map(&p, task, 100_000))
            }
        }
        // Queues between two instances.
        // Batched: the producer puts 256 values a `put_many`, the consumer
        // takes up to 256 a `get_many` (one host call per batch each way).
        // `queue/single`: one `put` and one `get` a message, as before
        // batches.
        "queue/throughput" | "queue/single" => {
            let n = 200_000u64;
            let batch = 256u64;
            let p = Pool::builder()
                .module_file(TESTGUEST)
                .workers(2)
                .queue("q", 1024)
                .build()
                .expect("pool");
            timed(n, || {
                let r = if prefix == "queue/single" {
                    p.map::<(u32, u64), (u64, u64)>("pc", [(0, n), (1, n)])
                } else {
                    p.map::<(u32, u64, u64), (u64, u64)>("pc_batch", [(0, n, batch), (1, n, batch)])
                };
                r.expect("producer and consumer")[1]
                    .clone()
                    .expect("consumer")
                    .1 as i64
            })
        }
        "queue/pingpong" => {
            let n = 20_000u64;
            let p = Pool::builder()
                .module_file(TESTGUEST)
                .workers(2)
                .queue("ping", 1)
                .queue("pong", 1)
                .build()
                .expect("pool");
            timed(n, || {
                p.map::<(u32, u64), u64>("pingpong", [(0, n), (1, n)])
                    .expect("pingpong")
                    .into_iter()
                    .map(|r| r.expect("pingpong") as i64)
                    .sum::<i64>()
                    / 2
            })
        }
        // The async mode: 10,000 tasks that each sleep 10 ms (a WASI sleep
        // in the guest), all in flight at once on the workers' threads.
        "async/sleep" | "async/sleep-warm" => {
            let n = 10_000u64;
            let p = async_pool(workers, n);
            if prefix == "async/sleep-warm" {
                // Untimed: the first map makes the instances, the timed one
                // reuses them (a long-lived pool's steady state).
                p.map::<u64, u64>("sleep_ms", vec![10; n as usize])
                    .expect("sleep_ms");
            }
            timed(n, || {
                p.map::<u64, u64>("sleep_ms", vec![10; n as usize])
                    .expect("sleep_ms")
                    .into_iter()
                    .map(|r| r.expect("slept") as i64)
                    .sum()
            })
        }
        // The memory of a suspended task: 10,000 tasks parked in a host
        // function at once, measured there (PSS and page tables) against
        // the same pool with two parked; the time is the whole run's.
        "async/parked" => {
            let n = 10_000u64;
            let parked = std::sync::Arc::new(AtomicU64::new(0));
            let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(0));
            let p = {
                let (parked, gate) = (parked.clone(), gate.clone());
                async_builder(workers, n)
                    .host_fn_async("wait", move |ms: u64| {
                        parked.fetch_add(1, Ordering::SeqCst);
                        let gate = gate.clone();
                        async move {
                            gate.acquire().await.expect("gate").forget();
                            Ok::<_, String>(ms)
                        }
                    })
                    .build()
                    .expect("pool")
            };
            let start = Instant::now();
            let base = parked_kib(&p, 2, &parked, &gate);
            let full = parked_kib(&p, n, &parked, &gate);
            Sample {
                secs: start.elapsed().as_secs_f64(),
                check: n as i64,
                items: n,
                peak_kib: peak_self_kib(),
                mem_kib: Some(full.saturating_sub(base) as f64 / (n - 2) as f64),
            }
        }
        // The same pool as `async/sleep`, running two tasks: the memory of
        // the pool itself, which the per-task figure leaves out.
        "async/idle" => {
            let p = async_pool(workers, 10_000);
            timed(2, || {
                p.map::<u64, u64>("sleep_ms", [10, 10])
                    .expect("sleep_ms")
                    .into_iter()
                    .map(|r| r.expect("slept") as i64)
                    .sum()
            })
        }
        // 10,000 tasks that each call an async host function that waits
        // 10 ms before it answers.
        "async/hostfn" => {
            let n = 10_000u64;
            let p = async_builder(workers, n)
                .host_fn_async("wait", |ms: u64| async move {
                    tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
                    Ok::<_, String>(ms)
                })
                .build()
                .expect("pool");
            timed(n, || {
                p.map::<u64, i64>("ask_host", vec![10; n as usize])
                    .expect("ask_host")
                    .into_iter()
                    .map(|r| r.expect("answered"))
                    .sum()
            })
        }
        // CPU-bound tasks in the async mode, alone (`async/cpu`) and beside
        // 20,000 sleeping tasks on the same pool (`async/mixed`): the time
        // is the CPU-bound stream's, to show it still has every core.
        "async/cpu" | "async/mixed" => {
            let p = async_pool(workers, 2_000);
            let burn = || {
                p.map::<u64, u64>("burn", vec![BURN; BURN_TASKS as usize])
                    .expect("burn")
                    .into_iter()
                    .map(|r| r.expect("burnt") as i64)
                    .sum::<i64>()
            };
            if prefix == "async/cpu" {
                return timed(BURN_TASKS, burn);
            }
            std::thread::scope(|s| {
                let sleepers = s.spawn(|| {
                    p.map::<u64, u64>("sleep_ms", vec![50; 20_000])
                        .expect("sleep_ms")
                        .len()
                });
                // Let the sleepers fill the workers first.
                std::thread::sleep(std::time::Duration::from_millis(20));
                let sample = timed(BURN_TASKS, burn);
                assert_eq!(sleepers.join().expect("sleepers"), 20_000);
                sample
            })
        }
        // 2 workers x 1,000,000 atomic increments.
        "counter/wasm" => {
            let p = Pool::builder()
                .module_file(TESTGUEST)
                .workers(2)
                .shared_memory(1 << 16)
                .build()
                .expect("pool");
            timed_repeated(2_000_000, || {
                p.shared_region()
                    .expect("region")
                    .store_i64(0, 0)
                    .expect("reset");
                // `count_together`: a barrier of 2 first, so that the two
                // tasks always count at once, one on each worker (with
                // `count`, a worker that woke late could find its half
                // of the count done).
                p.map::<u64, u64>("count_together", [1_000_000, 1_000_000])
                    .expect("count");
                p.shared_region()
                    .expect("region")
                    .load_i64(0)
                    .expect("load")
            })
        }
        // The same increments natively: two threads, one atomic, no sandbox.
        "counter/native" => {
            let counter = AtomicI64::new(0);
            timed_repeated(2_000_000, || {
                counter.store(0, Ordering::SeqCst);
                std::thread::scope(|s| {
                    for _ in 0..2 {
                        s.spawn(|| {
                            for _ in 0..1_000_000 {
                                counter.fetch_add(1, Ordering::SeqCst);
                            }
                        });
                    }
                });
                counter.load(Ordering::SeqCst)
            })
        }
        // CLI start: first compile (empty cache), then a cached module.
        "cli/cold" | "cli/warm" => {
            let dir =
                std::env::temp_dir().join(format!("wasmpool-bench-start-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).expect("tmp");
            let input = dir.join("one.jsonl");
            std::fs::write(&input, "7\n").expect("input");
            let args = ["map", SQUARE, "--task", "square_i64", "--values", "-j", "1"];
            if prefix == "cli/warm" {
                cli(&args, Some(&input), &dir);
            }
            let (secs, out) = cli(&args, Some(&input), &dir);
            let _ = std::fs::remove_dir_all(&dir);
            Sample {
                secs,
                check: out.trim().parse().expect("49"),
                items: 1,
                peak_kib: peak_children_kib(),
                mem_kib: None,
            }
        }
        scale if scale.starts_with("scale/") => crate::scale::run(scale, workers),
        other => panic!("unknown workload {other}"),
    }
}

/// CPU time and minor page faults of this process so far: with
/// `WASMPOOL_BENCH_USAGE` set, a timed workload prints what it used on
/// stderr (how the async mode's cold start was broken down).
struct Usage {
    user: f64,
    sys: f64,
    minor_faults: i64,
}

impl Usage {
    fn now() -> Usage {
        // SAFETY: an all-zero `rusage` is a valid value of the plain C struct.
        let mut u: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: `u` is a live, writable `rusage` for the call.
        unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
        let secs = |v: libc::timeval| v.tv_sec as f64 + v.tv_usec as f64 / 1e6;
        Usage {
            user: secs(u.ru_utime),
            sys: secs(u.ru_stime),
            minor_faults: u.ru_minflt,
        }
    }

    fn since(&self, before: &Usage) -> Usage {
        Usage {
            user: self.user - before.user,
            sys: self.sys - before.sys,
            minor_faults: self.minor_faults - before.minor_faults,
        }
    }

    fn report(&self) {
        if std::env::var_os("WASMPOOL_BENCH_USAGE").is_some() {
            eprintln!(
                "user {:.3} s, sys {:.3} s, {} minor faults",
                self.user, self.sys, self.minor_faults
            );
        }
    }
}

/// This process's proportional set size plus its page tables, in KiB:
/// memory it holds, with each shared page counted once in all (RSS counts
/// a page again in every mapping of it, and the 10,000 instances of the
/// async workloads each map the same copy-on-write module image).
fn pss_and_page_tables_kib() -> u64 {
    let field = |file: &str, key: &str| -> u64 {
        std::fs::read_to_string(file)
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with(key))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|v| v.parse().ok())
            })
            .unwrap_or_else(|| panic!("{file} has no {key}"))
    };
    field("/proc/self/smaps_rollup", "Pss:") + field("/proc/self/status", "VmPTE:")
}

/// Parks `n` tasks of `pool` (async mode) in the host function `park`,
/// waits until all are suspended, measures, and lets them go.
fn parked_kib(pool: &Pool, n: u64, parked: &AtomicU64, gate: &tokio::sync::Semaphore) -> u64 {
    parked.store(0, Ordering::SeqCst);
    std::thread::scope(|s| {
        let run = s.spawn(|| {
            pool.map::<u64, i64>("ask_host", vec![0; n as usize])
                .expect("ask_host")
                .into_iter()
                .map(|r| r.expect("answered"))
                .sum::<i64>()
        });
        while parked.load(Ordering::SeqCst) < n {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let kib = pss_and_page_tables_kib();
        if std::env::var_os("WASMPOOL_BENCH_USAGE").is_some() {
            let rollup = std::fs::read_to_string("/proc/self/smaps_rollup").unwrap_or_default();
            let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
            let keys = ["Rss:", "Pss:", "Pss_Anon:", "Pss_File:", "VmPTE:"];
            let found: Vec<String> = rollup
                .lines()
                .chain(status.lines())
                .filter(|l| keys.iter().any(|k| l.starts_with(k)))
                .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
                .collect();
            eprintln!("{n} parked: {}", found.join(", "));
        }
        gate.add_permits(n as usize);
        run.join().expect("map");
        kib
    })
}
