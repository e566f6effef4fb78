//! wasmpool's benchmark suite: every workload of the design notes (§5),
//! wasmpool against native rayon and Python's multiprocessing, measured side
//! by side in one run. Writes `docs/benchmarks.md` and two SVG plots.
//!
//! ```text
//! rustup target add wasm32-wasip1 && cargo build --release -p wasmpool && cargo run --release -p wasmpool-bench
//! ```
//!
//! Each figure is the median of several runs, each in a fresh child process
//! (`--child WORKLOAD`), so that peak memory is per workload. Every run's
//! checksum is checked; a wrong one fails the suite.

mod child;
mod report;
mod scale;

use std::process::Command;

use serde::Deserialize;

/// Who runs a workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Runner {
    Rust,
    Python,
}

/// One workload of the suite.
#[derive(Debug, Clone)]
struct Spec {
    name: String,
    runner: Runner,
    runs: usize,
    expect: Option<i64>,
}

/// The aggregated runs of one workload.
#[derive(Debug, Clone)]
struct Stats {
    spec: Spec,
    median: f64,
    min: f64,
    max: f64,
    items: u64,
    peak_kib: u64,
    check: i64,
    /// The median of the workload's own memory figure, where it has one.
    mem_kib: Option<f64>,
    /// Every run's seconds, in the order of the rounds (run `k` of every
    /// workload was taken in round `k`, within seconds of each other).
    rounds: Vec<f64>,
}

impl Stats {
    fn rate(&self) -> f64 {
        self.items as f64 / self.median
    }
    fn per_item_ns(&self) -> f64 {
        self.median * 1e9 / self.items as f64
    }
}

#[derive(Debug, Deserialize)]
struct Sample {
    secs: f64,
    check: i64,
    items: u64,
    peak_kib: u64,
    #[serde(default)]
    mem_kib: Option<f64>,
}

const SQUARES_1M: i64 = 333_332_833_333_500_000;
const SQUARES_100K: i64 = 333_328_333_350_000;

fn specs(quick: bool) -> Vec<Spec> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let runs = if quick { 1 } else { 5 };
    let py_runs = if quick { 1 } else { 3 };
    let mut v = Vec::new();
    let mut add = |name: String, runner, runs, expect| {
        v.push(Spec {
            name,
            runner,
            runs,
            expect,
        })
    };
    for w in [1, cores] {
        add(
            format!("primes64/wasm@{w}"),
            Runner::Rust,
            runs,
            Some(98_610),
        );
        add(
            format!("primes64/rayon@{w}"),
            Runner::Rust,
            runs,
            Some(98_610),
        );
        add(
            format!("primes640/wasm@{w}"),
            Runner::Rust,
            runs,
            Some(837_099),
        );
        add(
            format!("primes640/rayon@{w}"),
            Runner::Rust,
            runs,
            Some(837_099),
        );
        add(
            format!("mandelbrot/wasm@{w}"),
            Runner::Rust,
            runs,
            Some(12_475_425),
        );
        add(
            format!("mandelbrot/rayon@{w}"),
            Runner::Rust,
            runs,
            Some(12_475_425),
        );
        if cores == 1 {
            break;
        }
    }
    add(
        "primes64/python-pool".into(),
        Runner::Python,
        py_runs,
        Some(98_610),
    );
    add(
        "primes64/python-pool-chunk1".into(),
        Runner::Python,
        py_runs,
        Some(98_610),
    );
    add(
        "mandelbrot/python-pool".into(),
        Runner::Python,
        py_runs,
        Some(12_475_425),
    );
    add(
        "mandelbrot/python-pool-chunk1".into(),
        Runner::Python,
        py_runs,
        Some(12_475_425),
    );
    add(
        format!("tiny/numeric@{cores}"),
        Runner::Rust,
        runs,
        Some(SQUARES_1M),
    );
    add(
        format!("tiny/sdk@{cores}"),
        Runner::Rust,
        runs,
        Some(SQUARES_1M),
    );
    add(
        format!("tiny/cli@{cores}"),
        Runner::Rust,
        runs,
        Some(SQUARES_1M),
    );
    add(
        format!("tiny/cli-sdk@{cores}"),
        Runner::Rust,
        runs,
        Some(SQUARES_1M),
    );
    add(
        "tiny/python-pool".into(),
        Runner::Python,
        py_runs,
        Some(SQUARES_1M),
    );
    add(
        "tiny/python-pool-chunk1".into(),
        Runner::Python,
        py_runs,
        Some(SQUARES_100K),
    );
    add(
        "instance/reused".into(),
        Runner::Rust,
        runs,
        Some(SQUARES_100K),
    );
    add(
        "instance/fresh".into(),
        Runner::Rust,
        runs,
        Some(SQUARES_100K),
    );
    if cores > 1 {
        add(
            format!("instance/reused@{cores}"),
            Runner::Rust,
            runs,
            Some(SQUARES_100K),
        );
        add(
            format!("instance/fresh@{cores}"),
            Runner::Rust,
            runs,
            Some(SQUARES_100K),
        );
    }
    for name in ["instance/sdk-reused", "instance/sdk-fresh"] {
        add(name.into(), Runner::Rust, runs, Some(SQUARES_100K));
    }
    if cores > 1 {
        add(
            format!("instance/sdk-fresh@{cores}"),
            Runner::Rust,
            runs,
            Some(SQUARES_100K),
        );
    }
    add(
        "queue/throughput".into(),
        Runner::Rust,
        runs,
        Some(200_000 * 199_999 / 2),
    );
    add(
        "queue/single".into(),
        Runner::Rust,
        runs,
        Some(200_000 * 199_999 / 2),
    );
    add(
        "queue/python-throughput".into(),
        Runner::Python,
        py_runs,
        Some(100_000 * 99_999 / 2),
    );
    add("queue/pingpong".into(), Runner::Rust, runs, Some(20_000));
    add(
        "queue/python-pingpong".into(),
        Runner::Python,
        py_runs,
        Some(10_000),
    );
    add("counter/wasm".into(), Runner::Rust, runs, Some(2_000_000));
    add("counter/native".into(), Runner::Rust, runs, Some(2_000_000));
    add(
        "counter/python-locked".into(),
        Runner::Python,
        py_runs,
        Some(200_000),
    );
    add(
        "counter/python-unlocked".into(),
        Runner::Python,
        py_runs,
        None,
    );
    add(
        format!("async/sleep@{cores}"),
        Runner::Rust,
        runs,
        Some(100_000),
    );
    add(
        format!("async/sleep-warm@{cores}"),
        Runner::Rust,
        runs,
        Some(100_000),
    );
    add(format!("async/idle@{cores}"), Runner::Rust, runs, Some(20));
    add(
        format!("async/parked@{cores}"),
        Runner::Rust,
        runs,
        Some(10_000),
    );
    add(
        "async/python-sleep".into(),
        Runner::Python,
        py_runs,
        Some(100_000),
    );
    add(
        format!("async/hostfn@{cores}"),
        Runner::Rust,
        runs,
        Some(100_000),
    );
    let burnt = Some((child::BURN_TASKS * child::BURN) as i64);
    add(format!("async/cpu@{cores}"), Runner::Rust, runs, burnt);
    add(format!("async/mixed@{cores}"), Runner::Rust, runs, burnt);
    // Queue mode over a local redis-server, where the machine has one.
    if scale::available() {
        for name in ["primes-local", "primes-redis"] {
            add(
                format!("scale/{name}@{cores}"),
                Runner::Rust,
                runs,
                Some(837_099),
            );
        }
        for name in ["tiny-local", "tiny-redis", "tiny-redis-batch"] {
            let squares = Some(scale::TINY_SQUARES);
            add(format!("scale/{name}@{cores}"), Runner::Rust, runs, squares);
        }
    }
    add("cli/cold".into(), Runner::Rust, runs, Some(49));
    add("cli/warm".into(), Runner::Rust, runs, Some(49));
    v
}

fn run_once(spec: &Spec) -> Result<Sample, String> {
    let mut cmd = match spec.runner {
        Runner::Rust => {
            let mut c = Command::new(std::env::current_exe().map_err(|e| e.to_string())?);
            c.arg("--child").arg(&spec.name);
            c
        }
        Runner::Python => {
            let script = concat!(env!("CARGO_MANIFEST_DIR"), "/baselines.py");
            let mut c = Command::new("python3");
            c.arg(script).arg(&spec.name);
            c
        }
    };
    let out = cmd
        .output()
        .map_err(|e| format!("{}: cannot run: {e}", spec.name))?;
    if !out.status.success() {
        return Err(format!(
            "{}: failed: {}",
            spec.name,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.trim())
        .map_err(|e| format!("{}: bad report {text:?}: {e}", spec.name))
}

/// One run of `spec`, its checksum checked.
fn sample(spec: &Spec) -> Result<Sample, String> {
    let s = run_once(spec)?;
    if let Some(expect) = spec.expect
        && s.check != expect
    {
        return Err(format!(
            "{}: checksum {} where {expect} was expected",
            spec.name, s.check
        ));
    }
    Ok(s)
}

/// Runs every workload `runs` times, round-robin: round 1 runs each once,
/// then round 2, and so on, so that a spell of a slower machine (this
/// virtual machine's speed swings by up to 2x for tens of seconds) falls
/// on one run of many workloads, which the medians drop, rather than on
/// every run of one workload.
fn measure_all(specs: &[Spec]) -> Result<Vec<Stats>, String> {
    let rounds = specs.iter().map(|s| s.runs).max().unwrap_or(0);
    let mut samples: Vec<Vec<Sample>> = specs.iter().map(|_| Vec::new()).collect();
    for round in 0..rounds {
        eprintln!("round {} of {rounds}", round + 1);
        for (spec, done) in specs.iter().zip(&mut samples) {
            if round < spec.runs {
                done.push(sample(spec)?);
            }
        }
    }
    Ok(specs
        .iter()
        .zip(samples)
        .map(|(spec, samples)| stats(spec, samples))
        .collect())
}

/// The median run of `samples` and their spread.
fn stats(spec: &Spec, mut samples: Vec<Sample>) -> Stats {
    let rounds = samples.iter().map(|s| s.secs).collect();
    samples.sort_by(|a, b| a.secs.total_cmp(&b.secs));
    let mid = &samples[samples.len() / 2];
    let mut peaks: Vec<u64> = samples.iter().map(|s| s.peak_kib).collect();
    peaks.sort_unstable();
    let mut mems: Vec<f64> = samples.iter().filter_map(|s| s.mem_kib).collect();
    mems.sort_by(f64::total_cmp);
    Stats {
        spec: spec.clone(),
        median: mid.secs,
        min: samples[0].secs,
        max: samples[samples.len() - 1].secs,
        items: mid.items,
        peak_kib: peaks[peaks.len() / 2],
        check: mid.check,
        mem_kib: mems.get(mems.len() / 2).copied(),
        rounds,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [flag, name] = args.as_slice()
        && flag == "--child"
    {
        let sample = child::run(name);
        println!("{}", serde_json::to_string(&sample).expect("json"));
        return;
    }
    let quick = args.iter().any(|a| a == "--quick");
    let out_dir = args
        .iter()
        .position(|a| a == "--out")
        .and_then(|i| args.get(i + 1))
        .map_or_else(
            || concat!(env!("CARGO_MANIFEST_DIR"), "/../docs").into(),
            std::path::PathBuf::from,
        );
    let cli = std::env::current_exe()
        .expect("exe")
        .parent()
        .expect("dir")
        .join("wasmpool");
    if !cli.is_file() {
        eprintln!(
            "wasmpool-bench: {} is missing; build it first: cargo build --release -p wasmpool",
            cli.display()
        );
        std::process::exit(2);
    }
    let start = std::time::Instant::now();
    let results = match measure_all(&specs(quick)) {
        Ok(results) => results,
        Err(e) => {
            eprintln!("wasmpool-bench: {e}");
            std::process::exit(1);
        }
    };
    for stats in &results {
        eprintln!(
            "{:<34} {:>10.4} s  ({:.4}-{:.4})  {:>8.0} items/s  {:>7.1} MiB",
            stats.spec.name,
            stats.median,
            stats.min,
            stats.max,
            stats.rate(),
            stats.peak_kib as f64 / 1024.0
        );
    }
    let elapsed = start.elapsed();
    report::write(&out_dir, &results, elapsed, quick).expect("write the report");
    eprintln!("wrote {}/benchmarks.md in {elapsed:.0?}", out_dir.display());
}
