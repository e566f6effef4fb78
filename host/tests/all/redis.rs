//! A private redis-server of `tests/servers` on loopback for the queue-mode
//! tests, and child processes killed when a test ends.

use std::path::PathBuf;
use std::process::{Child, Command};

use crate::util::{in_ci, install_servers, servers};

/// A redis-server of tests/servers on loopback, SIGKILLed when dropped.
pub(crate) struct Redis {
    dir: PathBuf,
    pub(crate) url: String,
    _temp: tempfile::TempDir,
}

impl Redis {
    /// Starts one, or says why it cannot (`None` after printing the skip
    /// message outside CI; a panic under CI).
    pub(crate) fn start() -> Option<Redis> {
        match Redis::try_start() {
            Ok(redis) => Some(redis),
            Err(why) if !in_ci() => {
                eprintln!("SKIPPED: no redis-server for the queue mode tests: {why}");
                None
            }
            Err(why) => panic!("CI: no redis-server for the queue mode tests: {why}"),
        }
    }

    fn try_start() -> Result<Redis, String> {
        if Command::new("redis-server")
            .arg("--version")
            .output()
            .is_err()
        {
            install_servers()?;
        }
        let temp = tempfile::Builder::new()
            .prefix("wasmpool-redis-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let mut redis = Redis {
            dir: temp.path().join("redis"),
            url: String::new(),
            _temp: temp,
        };
        redis.url = redis.restart()?;
        Ok(redis)
    }

    /// Starts it (again, on the same directory: same data, same port).
    pub(crate) fn restart(&self) -> Result<String, String> {
        let out = Command::new(servers("redis-start"))
            .arg(&self.dir)
            .output()
            .map_err(|e| format!("tests/servers/redis-start: {e}"))?;
        let url = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if !out.status.success() || !url.starts_with("redis://") {
            return Err(format!(
                "tests/servers/redis-start failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(url)
    }

    /// SIGKILLs the server.
    pub(crate) fn kill(&self) {
        let out = Command::new(servers("redis-stop"))
            .arg("--kill")
            .arg(&self.dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Runs `redis-cli` on it with `args`; its output.
    pub(crate) fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .arg("-u")
            .arg(&self.url)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "redis-cli {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The calls it has served of command `name` since its last reset.
    pub(crate) fn calls(&self, name: &str) -> u64 {
        let stats = self.cli(&["INFO", "commandstats"]);
        let head = format!("cmdstat_{name}:calls=");
        stats
            .lines()
            .find_map(|l| l.strip_prefix(&head))
            .and_then(|rest| rest.split(',').next())
            .map_or(0, |n| n.parse().unwrap())
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = Command::new(servers("redis-stop"))
            .arg("--kill")
            .arg(&self.dir)
            .output();
    }
}

/// Child processes, SIGKILLed when dropped (a failing test leaves none).
#[derive(Default)]
pub(crate) struct Children(pub(crate) Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
