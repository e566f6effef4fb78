//! Shared helpers: pools over the built guests, each with a private cache.

use wasmpool::{ModuleCache, Pool, PoolBuilder};

/// A builder for `guest` with `workers` workers and no shared state with
/// other tests (no cache, so tests never race on cache files).
pub(crate) fn builder(guest: &str, workers: usize) -> PoolBuilder {
    Pool::builder()
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

/// A pool over a WAT module given as text.
pub(crate) fn wat_pool(wat: &str, workers: usize) -> Result<Pool, wasmpool::Error> {
    Pool::builder()
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
/// kept, or discarded when `keep_stdout` is false.
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
        .args(args)
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
