//! Writes `docs/benchmarks.md` and its two SVG plots from the measurements.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use crate::Stats;

fn find<'a>(r: &'a [Stats], name: &str) -> Option<&'a Stats> {
    r.iter().find(|s| s.spec.name == name)
}

fn mib(kib: u64) -> String {
    format!("{:.0} MiB", kib as f64 / 1024.0)
}

fn time(s: &Stats) -> String {
    let (scale, unit) = if s.median < 0.1 {
        (1e3, "ms")
    } else {
        (1.0, "s")
    };
    format!(
        "{:.3} {unit} ({:.3}–{:.3})",
        s.median * scale,
        s.min * scale,
        s.max * scale
    )
}

fn first_line(cmd: &str, args: &[&str]) -> String {
    std::process::Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_string()
        })
        .unwrap_or_default()
}

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .unwrap_or("unknown")
        .trim()
        .to_string();
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .next()
                .map(|l| l.split_whitespace().nth(1).unwrap_or("0").to_string())
        })
        .and_then(|k| k.parse::<u64>().ok())
        .map_or("unknown".into(), |k| {
            format!("{:.1} GiB", k as f64 / 1024.0 / 1024.0)
        });
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let lock = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.lock"))
        .unwrap_or_default();
    let wasmtime = lock
        .split("[[package]]")
        .find(|p| p.contains("name = \"wasmtime\"\n"))
        .and_then(|p| p.lines().find(|l| l.starts_with("version")))
        .map_or("?".into(), |l| {
            l.trim_start_matches("version = ")
                .trim_matches('"')
                .to_string()
        });
    format!(
        "| CPU | {cpu} |\n| cores | {cores} |\n| memory | {mem} |\n| Rust | {} |\n| wasmtime | {wasmtime} |\n| Python | {} |\n| OS | {} |\n",
        first_line("rustc", &["--version"]),
        first_line("python3", &["--version"]),
        first_line("uname", &["-sr"]),
    )
}

/// One target of the benchmark issue, and whether it held.
struct Target {
    what: String,
    goal: String,
    measured: String,
    met: bool,
}

/// A comparison of two workloads, round by round: every round runs each
/// workload once, seconds apart, so a spell of a slower machine (this
/// virtual machine's speed swings by up to 2x for tens of seconds) falls
/// on both runs of a round's pair and mostly cancels out of it, where the
/// two medians may come from different spells.
struct Paired {
    /// The median of the rounds' figures.
    median: f64,
    min: f64,
    max: f64,
    /// The same figure from the two workloads' medians.
    of_medians: f64,
}

impl Paired {
    /// `f(a's seconds, b's seconds)` for every round both ran.
    fn of(a: &Stats, b: &Stats, f: impl Fn(f64, f64) -> f64) -> Option<Paired> {
        let mut v: Vec<f64> = a
            .rounds
            .iter()
            .zip(&b.rounds)
            .map(|(&x, &y)| f(x, y))
            .collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        Some(Paired {
            median: v[v.len() / 2],
            min: v[0],
            max: v[v.len() - 1],
            of_medians: f(a.median, b.median),
        })
    }

    /// "median (min–max); of the medians m", with `digits` decimals and
    /// `unit` after the median and the medians' figure.
    fn show(&self, digits: usize, unit: &str) -> String {
        format!(
            "{:.digits$}{unit} ({:.digits$}–{:.digits$}); of the medians {:.digits$}{unit}",
            self.median, self.min, self.max, self.of_medians
        )
    }
}

/// The target "`one` on 1 worker is at least `goal` times as slow as
/// `many` on more", when both ran.
fn scaling(r: &[Stats], one: &str, many: &str, what: String, goal: f64) -> Option<Target> {
    let s = Paired::of(find(r, one)?, find(r, many)?, |a, b| a / b)?;
    Some(Target {
        what,
        goal: format!("≥ {goal}x"),
        measured: s.show(2, "x"),
        met: s.median >= goal,
    })
}

fn targets(r: &[Stats], cores: usize) -> Vec<Target> {
    let mut t = Vec::new();
    for kernel in ["primes640", "mandelbrot"] {
        for w in [1, cores] {
            if let (Some(wasm), Some(native)) = (
                find(r, &format!("{kernel}/wasm@{w}")),
                find(r, &format!("{kernel}/rayon@{w}")),
            ) && let Some(ratio) = Paired::of(wasm, native, |a, b| a / b)
            {
                t.push(Target {
                    what: format!("{kernel}, {w} worker(s): wasm time / native rayon time"),
                    goal: "≤ 1.05".into(),
                    measured: ratio.show(3, ""),
                    met: ratio.median <= 1.05,
                });
            }
            if cores == 1 {
                break;
            }
        }
    }
    t.extend(scaling(
        r,
        "primes640/wasm@1",
        &format!("primes640/wasm@{cores}"),
        format!("primes640: {cores} workers against 1"),
        1.9,
    ));
    let rate = |name: &str| find(r, name).map_or(0.0, Stats::rate);
    let mut rate_target = |what: &str, name: String, goal: f64, unit: &str| {
        let v = rate(&name);
        t.push(Target {
            what: what.into(),
            goal: format!("≥ {:.0} M {unit}/s", goal / 1e6),
            measured: format!("{:.2} M {unit}/s", v / 1e6),
            met: v >= goal,
        });
    };
    rate_target(
        "tiny tasks, numeric export, library",
        format!("tiny/numeric@{cores}"),
        10e6,
        "tasks",
    );
    rate_target(
        "tiny tasks, SDK (serde) task, library",
        format!("tiny/sdk@{cores}"),
        5e6,
        "tasks",
    );
    rate_target(
        "tiny tasks, CLI with JSON lines, SDK task",
        format!("tiny/cli-sdk@{cores}"),
        3e6,
        "lines",
    );
    rate_target(
        "queue messages between two instances",
        "queue/throughput".into(),
        5e6,
        "msgs",
    );
    if let Some(p) = find(r, "queue/pingpong") {
        let micros = p.per_item_ns() / 1e3;
        t.push(Target {
            what: "queue ping-pong between two instances, a round trip".into(),
            goal: "≤ 2.6 µs".into(),
            measured: format!("{micros:.1} µs"),
            met: micros <= 2.6,
        });
    }
    if let Some(c) = find(r, "counter/wasm") {
        let v = c.rate();
        t.push(Target {
            what: "shared counter, 2 x 1,000,000 atomic increments".into(),
            goal: "exact, ≥ 50 M incr/s".into(),
            measured: format!("{} exact, {:.1} M incr/s", c.check, v / 1e6),
            met: c.check == 2_000_000 && v >= 50e6,
        });
    }
    for (fresh, reused, what) in [
        (
            "instance/fresh",
            "instance/reused",
            "numeric task, writes no memory",
        ),
        (
            "instance/sdk-fresh",
            "instance/sdk-reused",
            "SDK task, writes memory",
        ),
    ] {
        if let (Some(f), Some(u)) = (find(r, fresh), find(r, reused))
            && let Some(extra) = Paired::of(f, u, |a, b| (a - b) / f.items as f64 * 1e6)
        {
            t.push(Target {
                what: format!("a fresh instance per task, over a reused one ({what})"),
                goal: "≤ 3 µs more per task".into(),
                measured: extra.show(2, " µs"),
                met: extra.median <= 3.0,
            });
        }
        t.extend(scaling(
            r,
            fresh,
            &format!("{fresh}@{cores}"),
            format!("a fresh instance per task: {cores} workers against 1 ({what})"),
            1.8,
        ));
    }
    for (name, when) in [
        ("async/sleep", "a new pool's first map, every instance made"),
        ("async/sleep-warm", "the pool's next map, instances reused"),
    ] {
        if let Some(a) = find(r, &format!("{name}@{cores}")) {
            t.push(Target {
                what: format!("async mode: 10,000 tasks each sleeping 10 ms ({when})"),
                goal: "≤ 0.25 s".into(),
                measured: format!("{:.3} s", a.median),
                met: a.median <= 0.25,
            });
        }
    }
    if let Some(p) = find(r, &format!("async/parked@{cores}"))
        && let Some(kib) = p.mem_kib
    {
        t.push(Target {
            what: "async mode: memory per suspended task (PSS and page tables, 10,000 parked)"
                .into(),
            goal: "≤ 64 KiB".into(),
            measured: format!("{kib:.1} KiB"),
            met: kib <= 64.0,
        });
    }
    if let (Some(local), Some(queue)) = (
        find(r, &format!("scale/primes-local@{cores}")),
        find(r, &format!("scale/primes-redis@{cores}")),
    ) && let Some(ratio) = Paired::of(local, queue, |a, b| a / b * 100.0)
    {
        t.push(Target {
            what: format!(
                "queue mode: primes640 through {cores} `wasmpool worker -j 1` over Redis, \
                 throughput against `map -j {cores}` on one machine"
            ),
            goal: "≥ 90%".into(),
            measured: ratio.show(1, "%"),
            met: ratio.median >= 90.0,
        });
    }
    if let Some(w) = find(r, "cli/warm") {
        t.push(Target {
            what: "warm CLI start (cached module, one task)".into(),
            goal: "≤ 10 ms".into(),
            measured: format!("{:.1} ms", w.median * 1e3),
            met: w.median <= 0.010,
        });
    }
    t
}

/// The peak memory of an async workload over that of the same pool
/// running two tasks (`async/idle`: the pool's own reservations and
/// threads), per suspended task.
fn per_suspended_kib(r: &[Stats], run: &Stats) -> f64 {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let base = find(r, &format!("async/idle@{cores}")).map_or(0, |s| s.peak_kib);
    run.peak_kib.saturating_sub(base) as f64 / run.items as f64
}

/// Writes the report and the plots into `dir`.
pub(crate) fn write(
    dir: &Path,
    r: &[Stats],
    elapsed: Duration,
    quick: bool,
) -> std::io::Result<()> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut md = String::new();
    let _ = writeln!(
        md,
        "# Benchmarks\n\n<!-- Written by `cargo run --release -p wasmpool-bench`; do not edit by hand. -->\n\n\
         Every figure is the median of {} runs (min–max in brackets), each run in a fresh process, the runs taken round-robin \
         (every workload once, then again) so that a slower spell of the machine falls on one run of many \
         workloads rather than on every run of one; peak memory is that process's peak RSS (with its children). Every run's checksum was checked. The suite \
         took {:.0} s.{}\n\nRun it with `just bench`, or:\n\n```sh\nrustup target add wasm32-wasip1 && cargo build \
         --release -p wasmpool && cargo run --release -p wasmpool-bench\n```\n\n## Machine\n\n| | |\n|---|---|\n{}",
        if quick {
            "1 (--quick)".to_string()
        } else {
            "5 (3 for Python)".to_string()
        },
        elapsed.as_secs_f64(),
        if quick {
            " **Quick mode: single runs, not for publication.**"
        } else {
            ""
        },
        machine()
    );

    let _ = writeln!(
        md,
        "\n## Targets\n\nA target that compares two workloads is judged on their runs round by round: \
         the median of the {rounds} rounds' figures, their spread in brackets, then the same figure from \
         the two workloads' medians. A round runs every workload once, so the two runs of a round's pair \
         are seconds apart and a slower spell of the machine falls on both; the two medians can come from \
         different spells. The tables below give each workload's own median.\n\n\
         | target | goal | measured | met |\n|---|---|---|---|",
        rounds = r.iter().map(|s| s.rounds.len()).max().unwrap_or(0)
    );
    for t in targets(r, cores) {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} |",
            t.what,
            t.goal,
            t.measured,
            if t.met { "yes" } else { "**no**" }
        );
    }

    let _ = writeln!(
        md,
        "\n## Compute kernels\n\nwasmpool runs the numeric exports (`primes_i64`, `row_i64`) of the example guests; \
         native rayon runs the same kernels (`examples/kernels`) compiled for the host; Python runs them in \
         `multiprocessing.Pool` with {cores} processes.\n\n| workload | implementation | workers | time | vs rayon, same workers | \
         speedup over 1 worker | peak memory |\n|---|---|---|---|---|---|---|"
    );
    for kernel in ["primes64", "primes640", "mandelbrot"] {
        for w in [1, cores] {
            for imp in ["rayon", "wasm"] {
                if let Some(s) = find(r, &format!("{kernel}/{imp}@{w}")) {
                    let native = find(r, &format!("{kernel}/rayon@{w}"))
                        .map_or(f64::NAN, |n| s.median / n.median);
                    let one = find(r, &format!("{kernel}/{imp}@1"))
                        .map_or(f64::NAN, |o| o.median / s.median);
                    let name = if imp == "wasm" {
                        "wasmpool"
                    } else {
                        "native rayon"
                    };
                    let _ = writeln!(
                        md,
                        "| {kernel} | {name} | {w} | {} | {native:.3}x | {one:.2}x | {} |",
                        time(s),
                        mib(s.peak_kib)
                    );
                }
            }
            if cores == 1 {
                break;
            }
        }
        for (suffix, label) in [
            ("python-pool", "Python Pool.map"),
            ("python-pool-chunk1", "Python Pool.map, chunksize=1"),
        ] {
            if let Some(s) = find(r, &format!("{kernel}/{suffix}")) {
                let native = find(r, &format!("{kernel}/rayon@{cores}"))
                    .map_or(f64::NAN, |n| s.median / n.median);
                let _ = writeln!(
                    md,
                    "| {kernel} | {label} | {cores} | {} | {native:.1}x | | {} |",
                    time(s),
                    mib(s.peak_kib)
                );
            }
        }
    }

    let _ = writeln!(
        md,
        "\n## A million tiny tasks (`square`)\n\n| path | workers | tasks | time | rate | per task | peak memory |\n|---|---|---|---|---|---|---|"
    );
    for (name, label) in [
        (
            format!("tiny/numeric@{cores}"),
            "library, numeric export `square_i64`",
        ),
        (
            format!("tiny/sdk@{cores}"),
            "library, SDK task `square` (serde JSON)",
        ),
        (
            format!("tiny/cli@{cores}"),
            "CLI, JSON lines in and out (whole process)",
        ),
        (
            format!("tiny/cli-sdk@{cores}"),
            "CLI, JSON lines, SDK task `square` (whole process)",
        ),
        (
            "tiny/python-pool".into(),
            "Python Pool.map, default chunksize",
        ),
        (
            "tiny/python-pool-chunk1".into(),
            "Python Pool.map, chunksize=1",
        ),
    ] {
        if let Some(s) = find(r, &name) {
            let _ = writeln!(
                md,
                "| {label} | {cores} | {} | {} | {:.2} M/s | {:.0} ns | {} |",
                s.items,
                time(s),
                s.rate() / 1e6,
                s.per_item_ns(),
                mib(s.peak_kib)
            );
        }
    }

    let _ = writeln!(
        md,
        "\n## Instances\n\n| isolation | tasks | time | per task | peak memory |\n|---|---|---|---|---|"
    );
    for (name, label) in [
        (
            "instance/reused".to_string(),
            "one instance per worker (default), 1 worker".to_string(),
        ),
        (
            format!("instance/reused@{cores}"),
            format!("one instance per worker (default), {cores} workers"),
        ),
        (
            "instance/fresh".to_string(),
            "a fresh instance per task, 1 worker".to_string(),
        ),
        (
            format!("instance/fresh@{cores}"),
            format!("a fresh instance per task, {cores} workers"),
        ),
        (
            "instance/sdk-reused".to_string(),
            "SDK task `square`: one instance per worker, 1 worker".to_string(),
        ),
        (
            "instance/sdk-fresh".to_string(),
            "SDK task `square`: a fresh instance per task, 1 worker".to_string(),
        ),
        (
            format!("instance/sdk-fresh@{cores}"),
            format!("SDK task `square`: a fresh instance per task, {cores} workers"),
        ),
    ] {
        if let Some(s) = find(r, &name) {
            let _ = writeln!(
                md,
                "| {label} | {} | {} | {:.2} µs | {} |",
                s.items,
                time(s),
                s.per_item_ns() / 1e3,
                mib(s.peak_kib)
            );
        }
    }

    let _ = writeln!(
        md,
        "\n## Queues between two instances\n\n| workload | messages | time | rate | peak memory |\n|---|---|---|---|---|"
    );
    for (name, label) in [
        (
            "queue/throughput",
            "wasmpool: producer → consumer (SDK `Queue<u64>`, `put_many`/`get_many` of 256)",
        ),
        (
            "queue/single",
            "wasmpool: the same, one `put` and one `get` a message",
        ),
        (
            "queue/python-throughput",
            "Python: `Queue` between two processes",
        ),
    ] {
        if let Some(s) = find(r, name) {
            let _ = writeln!(
                md,
                "| {label} | {} | {} | {:.0} k msgs/s | {} |",
                s.items,
                time(s),
                s.rate() / 1e3,
                mib(s.peak_kib)
            );
        }
    }
    for (name, label) in [
        ("queue/pingpong", "wasmpool: ping-pong"),
        ("queue/python-pingpong", "Python: ping-pong"),
    ] {
        if let Some(s) = find(r, name) {
            let _ = writeln!(
                md,
                "| {label} | {} round trips | {} | {:.1} µs per round trip | {} |",
                s.items,
                time(s),
                s.per_item_ns() / 1e3,
                mib(s.peak_kib)
            );
        }
    }

    let _ = writeln!(
        md,
        "\n## Async mode (`--concurrency`)\n\nEvery task in flight at once, each in its own instance, on {cores} worker threads \
         (`concurrency` = tasks / workers); Python runs the same sleeps as asyncio coroutines on one event loop. \
         The per-task memory column is the run's peak RSS over that of the same pool running two tasks (`async/idle`), divided by the tasks: \
         an upper bound, since RSS counts a page of the module's copy-on-write image again in every instance that maps it; the memory a \
         suspended task holds is measured below it.\n\n\
         | workload | tasks | time | per task memory | peak memory |\n|---|---|---|---|---|"
    );
    for (name, label) in [
        (
            format!("async/sleep@{cores}"),
            "wasmpool: WASI sleep of 10 ms (`sleep_ms`), a new pool",
        ),
        (
            format!("async/sleep-warm@{cores}"),
            "wasmpool: the same, the pool's next map (instances reused)",
        ),
        (
            "async/python-sleep".to_string(),
            "Python asyncio: `asyncio.sleep(0.01)`",
        ),
        (
            format!("async/hostfn@{cores}"),
            "wasmpool: async host function that waits 10 ms",
        ),
    ] {
        if let Some(s) = find(r, &name) {
            let per_task = if name.starts_with("async/python") {
                "".to_string()
            } else {
                format!("{:.1} KiB", per_suspended_kib(r, s))
            };
            let _ = writeln!(
                md,
                "| {label} | {} | {} | {per_task} | {} |",
                s.items,
                time(s),
                mib(s.peak_kib)
            );
        }
    }
    if let Some(p) = find(r, &format!("async/parked@{cores}"))
        && let Some(kib) = p.mem_kib
    {
        let _ = writeln!(
            md,
            "\nMemory a suspended task holds: {kib:.1} KiB. Measured with {} tasks parked at once in an async host function \
             (`async/parked`), as the growth of the process's proportional set size (`Pss` of `/proc/self/smaps_rollup`, \
             which counts a shared page once in all) plus its page tables (`VmPTE`) over the same pool with two parked, \
             divided by the tasks.",
            p.items
        );
    }
    if let (Some(cpu), Some(mixed)) = (
        find(r, &format!("async/cpu@{cores}")),
        find(r, &format!("async/mixed@{cores}")),
    ) {
        let _ = writeln!(
            md,
            "\nCPU-bound tasks (`burn`, {} of them) on the same async pool: {} alone, {} beside 20,000 tasks sleeping \
             50 ms each ({:.2}x). A busy guest yields at every epoch tick (10 ms), so the sleepers never wait for it long, \
             and it still has every core.",
            cpu.items,
            time(cpu),
            time(mixed),
            mixed.median / cpu.median
        );
    }

    let _ = writeln!(
        md,
        "\n## Shared counter\n\n| workload | increments | result | time | rate | peak memory |\n|---|---|---|---|---|---|"
    );
    for (name, label) in [
        (
            "counter/wasm",
            "wasmpool: `SharedValue::fetch_add`, 2 workers",
        ),
        (
            "counter/native",
            "native: `AtomicI64::fetch_add`, 2 threads (the hardware's limit)",
        ),
        (
            "counter/python-locked",
            "Python: `Value` with its lock, 2 processes",
        ),
        (
            "counter/python-unlocked",
            "Python: `Value(lock=False)`, `+= 1`, 2 processes",
        ),
    ] {
        if let Some(s) = find(r, name) {
            let result = if name.ends_with("unlocked") {
                format!("{} ({} updates lost)", s.check, s.items as i64 - s.check)
            } else {
                format!("{} (exact)", s.check)
            };
            let _ = writeln!(
                md,
                "| {label} | {} | {result} | {} | {:.1} M/s | {} |",
                s.items,
                time(s),
                s.rate() / 1e6,
                mib(s.peak_kib)
            );
        }
    }

    if let Some(local) = find(r, &format!("scale/primes-local@{cores}")) {
        let _ = writeln!(
            md,
            "\n## Queue mode (`map --broker`, `wasmpool worker`)\n\n\
             The same `wasmpool map` on this machine and through workers over a private \
             redis-server on loopback (`tests/servers/redis-start`: `appendonly yes`, \
             `appendfsync always`, so each write waits for a disk flush). A queue-mode time runs \
             from starting the workers to the submitter's exit: their start-up counts. \
             Redis, the submitter and the workers share the same {cores} cores.\n\n\
             | workload | how | tasks | time | per task | against one machine | peak memory |\n\
             |---|---|---|---|---|---|---|"
        );
        let tiny_local = find(r, &format!("scale/tiny-local@{cores}"));
        for (name, how, base) in [
            (
                "primes-local",
                format!("`map -j {cores}`, one machine"),
                local,
            ),
            (
                "primes-redis",
                format!("{cores} workers `-j 1` over Redis"),
                local,
            ),
            (
                "tiny-local",
                format!("`map -j {cores}`, one machine"),
                local,
            ),
            (
                "tiny-redis",
                format!("1 worker `-j {cores}` over Redis"),
                local,
            ),
            (
                "tiny-redis-batch",
                format!("the same, `--batch {}`", crate::scale::BATCH),
                local,
            ),
        ] {
            let Some(s) = find(r, &format!("scale/{name}@{cores}")) else {
                continue;
            };
            let base = if name.starts_with("tiny") {
                tiny_local.unwrap_or(base)
            } else {
                base
            };
            let workload = if name.starts_with("tiny") {
                "tiny (`square_i64`)"
            } else {
                "primes640 (`primes_i64`)"
            };
            let against = if std::ptr::eq(s, base) {
                "1.000x".to_string()
            } else {
                format!(
                    "{:.3}x the time, +{:.1} µs a task",
                    s.median / base.median,
                    (s.median - base.median) * 1e6 / s.items as f64
                )
            };
            let _ = writeln!(
                md,
                "| {workload} | {how} | {} | {} | {:.1} µs | {against} | {} |",
                s.items,
                time(s),
                s.per_item_ns() / 1e3,
                mib(s.peak_kib)
            );
        }
    }

    let _ = writeln!(
        md,
        "\n## CLI start\n\n| start | time | peak memory |\n|---|---|---|"
    );
    for (name, label) in [
        ("cli/cold", "cold: empty cache, compiles `square.wasm`"),
        ("cli/warm", "warm: module cached"),
    ] {
        if let Some(s) = find(r, name) {
            let _ = writeln!(md, "| {label} | {} | {} |", time(s), mib(s.peak_kib));
        }
    }

    let _ = writeln!(
        md,
        "\n## Plots\n\n![speedup by worker count](benchmarks-speedup.svg)\n\n![per-task overhead](benchmarks-overhead.svg)\n"
    );
    md.push_str(NOTES);
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("benchmarks.md"), md)?;
    std::fs::write(dir.join("benchmarks-speedup.svg"), speedup_svg(r, cores))?;
    std::fs::write(dir.join("benchmarks-overhead.svg"), overhead_svg(r, cores))?;
    Ok(())
}

/// Analysis that does not change from run to run; kept in the source so the
/// report is written whole by one command.
const NOTES: &str = include_str!("notes.md");

fn bars_svg(title: &str, unit: &str, bars: &[(String, f64, &str)], log: bool) -> String {
    let (w, row, left, top) = (800.0, 26.0, 300.0, 40.0);
    let h = top + row * bars.len() as f64 + 30.0;
    let max = bars.iter().map(|b| b.1).fold(0.0f64, f64::max).max(1e-9);
    let min_pos = bars
        .iter()
        .map(|b| b.1)
        .filter(|v| *v > 0.0)
        .fold(f64::INFINITY, f64::min);
    let scale = |v: f64| -> f64 {
        let span = w - left - 90.0;
        if log {
            let lo = (min_pos / 2.0).log10();
            ((v.max(min_pos / 2.0).log10() - lo) / (max.log10() - lo)).max(0.0) * span
        } else {
            v / max * span
        }
    };
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"10\" y=\"22\" font-size=\"15\" font-weight=\"bold\">{title}</text>\n"
    );
    for (i, (label, v, color)) in bars.iter().enumerate() {
        let y = top + row * i as f64;
        let bw = scale(*v);
        let shown = if *v >= 100.0 {
            format!("{v:.0}")
        } else {
            format!("{v:.3}")
        };
        let _ = writeln!(
            s,
            "<text x=\"{:.0}\" y=\"{:.0}\" text-anchor=\"end\">{label}</text>\
             <rect x=\"{left}\" y=\"{:.0}\" width=\"{bw:.1}\" height=\"{:.0}\" fill=\"{color}\"/>\
             <text x=\"{:.0}\" y=\"{:.0}\">{shown} {unit}</text>",
            left - 8.0,
            y + 15.0,
            y + 3.0,
            row - 8.0,
            left + bw + 6.0,
            y + 15.0
        );
    }
    let _ = writeln!(
        s,
        "<text x=\"{left}\" y=\"{:.0}\" fill=\"#555\">{}</text>\n</svg>",
        h - 8.0,
        if log { "log scale" } else { "linear scale" }
    );
    s
}

fn speedup_svg(r: &[Stats], cores: usize) -> String {
    let mut bars = Vec::new();
    for kernel in ["primes640", "mandelbrot"] {
        let Some(base) = find(r, &format!("{kernel}/rayon@1")) else {
            continue;
        };
        for w in [1, cores] {
            for (imp, label, color) in [
                ("rayon", "native rayon", "#4e79a7"),
                ("wasm", "wasmpool", "#f28e2b"),
            ] {
                if let Some(s) = find(r, &format!("{kernel}/{imp}@{w}")) {
                    bars.push((
                        format!("{kernel}, {label}, {w} worker(s)"),
                        base.median / s.median,
                        color,
                    ));
                }
            }
            if cores == 1 {
                break;
            }
        }
    }
    bars_svg(
        "Speedup over native rayon on 1 thread (higher is better)",
        "x",
        &bars,
        false,
    )
}

fn overhead_svg(r: &[Stats], cores: usize) -> String {
    let mut bars = Vec::new();
    let per = |name: &str| find(r, name).map(Stats::per_item_ns);
    for (name, label, color) in [
        (
            format!("tiny/numeric@{cores}"),
            "wasmpool library, numeric",
            "#f28e2b",
        ),
        (
            format!("tiny/sdk@{cores}"),
            "wasmpool library, SDK (serde)",
            "#f28e2b",
        ),
        (
            format!("tiny/cli@{cores}"),
            "wasmpool CLI, JSON lines",
            "#f28e2b",
        ),
        (
            "tiny/python-pool".into(),
            "Python Pool.map, chunked",
            "#59a14f",
        ),
        (
            "tiny/python-pool-chunk1".into(),
            "Python Pool.map, chunksize=1",
            "#59a14f",
        ),
    ] {
        if let Some(v) = per(&name) {
            bars.push((label.to_string(), v, color));
        }
    }
    if let (Some(f), Some(u)) = (per("instance/fresh"), per("instance/reused")) {
        bars.push((
            "fresh instance, extra per task".into(),
            (f - u).max(0.0),
            "#e15759",
        ));
    }
    bars_svg(
        "Cost per tiny task, ns (lower is better)",
        "ns",
        &bars,
        true,
    )
}

#[cfg(test)]
mod test {
    use super::*;

    fn stats(name: &str, rounds: &[f64]) -> Stats {
        let mut sorted = rounds.to_vec();
        sorted.sort_by(f64::total_cmp);
        sorted.push(0.0); // for `none`, which has no runs
        Stats {
            spec: crate::Spec {
                name: name.into(),
                runner: crate::Runner::Rust,
                runs: rounds.len(),
                expect: None,
            },
            median: sorted[rounds.len() / 2],
            min: sorted[0],
            max: sorted[rounds.len().saturating_sub(1)],
            items: 100,
            peak_kib: 0,
            check: 0,
            mem_kib: None,
            rounds: rounds.to_vec(),
        }
    }

    #[test]
    fn a_paired_figure_compares_the_runs_of_one_round() {
        // The machine is twice as slow in rounds 2 and 4, and in round 5
        // for `one` only: in four rounds of five `one` takes twice as long
        // as `two`, which the medians (4.0 from a slow round against 1.0
        // from a fast one) do not show.
        let one = stats("one", &[2.0, 4.0, 2.0, 4.0, 4.0]);
        let two = stats("two", &[1.0, 2.0, 1.0, 2.0, 1.0]);
        let p = Paired::of(&one, &two, |a, b| a / b).unwrap();
        assert_eq!((p.median, p.min, p.max), (2.0, 2.0, 4.0));
        assert!((p.of_medians - 4.0).abs() < 1e-9);
        let slow = stats("slow", &[4.0, 4.0, 4.0]);
        let fast = stats("fast", &[1.0, 1.0, 2.0, 2.0, 2.0]);
        let p = Paired::of(&slow, &fast, |a, b| a / b).unwrap();
        assert_eq!(
            (p.median, p.min, p.max),
            (4.0, 2.0, 4.0),
            "pairs only rounds both ran"
        );
        assert!((p.of_medians - 2.0).abs() < 1e-9);
        assert_eq!(
            p.show(1, "x"),
            "4.0x (2.0–4.0); of the medians 2.0x",
            "median, spread, then the medians' figure"
        );
        assert!(Paired::of(&slow, &stats("none", &[]), |a, b| a / b).is_none());
    }
}
