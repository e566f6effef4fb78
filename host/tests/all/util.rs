//! Shared helpers: pools over the built guests, each with a private cache,
//! and the two modes (synchronous and async) the pool tests run in.

use std::cell::Cell;

use wasmpool::{ModuleCache, Pool, PoolBuilder, ProcessGroupBuilder};

/// The concurrency of the async mode's variant of a test.
pub(crate) const ASYNC_CONCURRENCY: u32 = 4;

thread_local! {
    /// The mode of the test running on this thread: `None` synchronous,
    /// `Some(n)` the async mode with `n` tasks in flight per worker.
    static MODE: Cell<Option<u32>> = const { Cell::new(None) };
}

/// Runs `f` (a test's body) in a mode: every pool, process group, `map` or
/// `run` it makes through the helpers here runs in it. The mode belongs to
/// the calling thread: threads the body spawns are in the synchronous one.
pub(crate) fn in_mode(concurrency: Option<u32>, f: impl FnOnce()) {
    struct Reset(Option<u32>);
    impl Drop for Reset {
        fn drop(&mut self) {
            MODE.with(|m| m.set(self.0));
        }
    }
    let _reset = Reset(MODE.with(|m| m.replace(concurrency)));
    f();
}

/// The mode of the test running on this thread.
pub(crate) fn mode() -> Option<u32> {
    MODE.with(Cell::get)
}

/// `Pool::builder()` in the current mode.
pub(crate) fn pool_builder() -> PoolBuilder {
    match mode() {
        None => Pool::builder(),
        Some(n) => Pool::builder().concurrency(n),
    }
}

/// `ProcessGroup::builder()` in the current mode.
pub(crate) fn group_builder() -> ProcessGroupBuilder {
    match mode() {
        None => wasmpool::ProcessGroup::builder(),
        Some(n) => wasmpool::ProcessGroup::builder().concurrency(n),
    }
}

/// The arguments of a `wasmpool` command line, in the current mode: a
/// `map` or a `run` gets `--concurrency N` in the async mode, right after
/// the subcommand (so never after a `--`).
pub(crate) fn mode_args(args: &[&str]) -> Vec<String> {
    let mut all: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let subcommand = args.iter().position(|a| !a.starts_with('-'));
    if let Some(n) = mode()
        && let Some(at) = subcommand.filter(|&at| matches!(args[at], "map" | "run"))
    {
        all.splice(at + 1..at + 1, ["--concurrency".into(), n.to_string()]);
    }
    all
}

/// Turns each test function into a module of the same name holding two
/// tests, `name::sync` and `name::async_mode`, that run its body in either
/// mode (see [`in_mode`]); the body sees the file's items and imports. The
/// function's attributes (`#[test]`, `#[ignore]`, `#[cfg]`, docs) go on
/// both tests, not on the body, which must compile wherever the file does.
macro_rules! both_modes {
    ($($(#[$attr:meta])* fn $name:ident() $body:block)*) => {$(
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            fn body() $body

            $(#[$attr])*
            fn sync() {
                $crate::util::in_mode(None, body);
            }

            $(#[$attr])*
            fn async_mode() {
                $crate::util::in_mode(Some($crate::util::ASYNC_CONCURRENCY), body);
            }
        }
    )*};
}
pub(crate) use both_modes;

/// A builder for `guest` with `workers` workers and no shared state with
/// other tests (no cache, so tests never race on cache files), in the
/// current mode.
pub(crate) fn builder(guest: &str, workers: usize) -> PoolBuilder {
    pool_builder()
        .module_file(guest)
        .workers(workers)
        .cache(None)
}

/// A built pool for `guest`.
pub(crate) fn pool(guest: &str, workers: usize) -> Pool {
    builder(guest, workers)
        .build()
        .unwrap_or_else(|e| panic!("{guest}: {e}"))
}

/// A fresh, private cache directory.
pub(crate) fn cache_dir() -> (tempfile::TempDir, ModuleCache) {
    let dir = tempfile::tempdir().unwrap();
    let cache = ModuleCache::new(dir.path().join("cache"));
    (dir, cache)
}

/// A pool over a WAT module given as text, in the current mode.
pub(crate) fn wat_pool(wat: &str, workers: usize) -> Result<Pool, wasmpool::Error> {
    pool_builder()
        .module_bytes(wat)
        .name("fixture.wat")
        .workers(workers)
        .cache(None)
        .build()
}

/// What a bounded run of the `wasmpool` binary gave.
pub(crate) struct Run {
    pub(crate) status: std::process::ExitStatus,
    pub(crate) stdout: Vec<u8>,
    pub(crate) stderr: String,
    /// The process's peak resident memory (VmHWM), in KiB.
    pub(crate) peak_kib: u64,
    pub(crate) elapsed: std::time::Duration,
}

/// Runs `wasmpool args...` with `stdin`, in the cache `cache`, watching its
/// peak memory; kills it and fails the test after `limit`. Its stdout is
/// kept, or discarded when `keep_stdout` is false. A `map` or a `run` runs
/// in the current mode ([`mode_args`]).
pub(crate) fn wasmpool_watched(
    cache: &std::path::Path,
    args: &[&str],
    stdin: &str,
    limit: std::time::Duration,
    keep_stdout: bool,
) -> Run {
    use std::io::{Read, Write};
    use std::process::{Command, Stdio};
    let start = std::time::Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_wasmpool"))
        .args(mode_args(args))
        .env("WASMPOOL_CACHE_DIR", cache)
        .stdin(Stdio::piped())
        .stdout(if keep_stdout {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let stdin = stdin.to_string();
    std::thread::spawn(move || {
        let _ = input.write_all(stdin.as_bytes());
    });
    let read_all = |mut from: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = from.read_to_end(&mut bytes);
            bytes
        })
    };
    let out = read_all(match child.stdout.take() {
        Some(stdout) => Box::new(stdout),
        None => Box::new(std::io::empty()),
    });
    let err = read_all(Box::new(child.stderr.take().unwrap()));
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak_kib = 0;
    let status = loop {
        // VmHWM only grows, so the last reading before exit is the peak.
        if let Ok(text) = std::fs::read_to_string(&status_file)
            && let Some(line) = text.lines().find(|l| l.starts_with("VmHWM:"))
        {
            let kib: u64 = line
                .split_whitespace()
                .nth(1)
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            peak_kib = peak_kib.max(kib);
        }
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > limit {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("wasmpool {args:?} took more than {limit:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    };
    Run {
        status,
        stdout: out.join().unwrap(),
        stderr: String::from_utf8_lossy(&err.join().unwrap()).into_owned(),
        peak_kib,
        elapsed: start.elapsed(),
    }
}

#[test]
fn the_async_mode_reaches_pools_and_command_lines() {
    // Four tasks of 300 ms on one worker: about 300 ms when they run at
    // once, 1.2 s one after the other.
    let took = |concurrency| {
        let mut took = std::time::Duration::ZERO;
        in_mode(concurrency, || {
            let pool = builder(wasmpool_tests::TESTGUEST, 1).build().unwrap();
            let start = std::time::Instant::now();
            let out = pool.map::<u64, u64>("sleep_ms", [300; 4]).unwrap();
            assert!(out.iter().all(Result::is_ok), "{out:?}");
            took = start.elapsed();
        });
        took
    };
    assert!(took(None) >= std::time::Duration::from_millis(1200));
    assert!(took(Some(ASYNC_CONCURRENCY)) < std::time::Duration::from_millis(1000));
    assert_eq!(mode(), None, "the mode ends with its body");
    let args = ["-v", "map", "m.wasm", "--task", "run", "--", "map"];
    assert_eq!(mode_args(&args), args);
    in_mode(Some(4), || {
        assert_eq!(
            mode_args(&args),
            [
                "-v",
                "map",
                "--concurrency",
                "4",
                "m.wasm",
                "--task",
                "run",
                "--",
                "map"
            ]
        );
        assert_eq!(
            mode_args(&["run", "c.wasm", "--", "map"]),
            ["run", "--concurrency", "4", "c.wasm", "--", "map"]
        );
        assert_eq!(mode_args(&["inspect", "m.wasm"]), ["inspect", "m.wasm"]);
    });
}

/// A script of tests/servers (real servers for the scale-out tests).
pub(crate) fn servers(script: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/servers")
        .join(script)
}

/// Installs the Debian packages of tests/servers (idempotent); `Err` says
/// why it could not.
pub(crate) fn install_servers() -> Result<(), String> {
    let install = std::process::Command::new(servers("install"))
        .output()
        .map_err(|e| format!("tests/servers/install: {e}"))?;
    if !install.status.success() {
        return Err(format!(
            "tests/servers/install failed: {}",
            String::from_utf8_lossy(&install.stderr)
        ));
    }
    Ok(())
}

/// Whether this is CI (`CI` set, as `.ci/run` does): a tool or server the
/// tests need that cannot be installed or started is then a failure, not a
/// skip.
pub(crate) fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
}
