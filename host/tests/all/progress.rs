//! What `map` and `run` tell on stderr about a run: the summary line (on a
//! terminal or not), `--quiet`, the progress bar (only on a terminal), and
//! the logs of `-v` and `RUST_LOG`.

use std::io::Write;
use std::process::{Command, Stdio};

use wasmpool_tests::{HELLO, SQUARE, TESTGUEST};

use crate::cli::wasmpool;
use crate::util::{both_modes, mode_args};

/// `wasmpool args...` in the current mode, with `RUST_LOG` set to `rust_log`
/// (or unset), `stdin` as input and a private cache.
fn wasmpool_logging(args: &[&str], rust_log: Option<&str>, stdin: &str) -> std::process::Output {
    let cache = tempfile::tempdir().unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_wasmpool"));
    command
        .args(mode_args(args))
        .env("WASMPOOL_CACHE_DIR", cache.path())
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(directives) = rust_log {
        command.env("RUST_LOG", directives);
    }
    let mut child = command.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8(out.stderr.clone()).unwrap()
}

/// Checks that `line` is a summary line with this text before its time
/// (`wasmpool: 5 tasks, 1 failed, in 0.12 s`), and returns the time.
fn summary_time(line: &str, counts: &str) -> f64 {
    let rest = line
        .strip_prefix(&format!("wasmpool: {counts}, in "))
        .unwrap_or_else(|| panic!("not a summary of {counts:?}: {line:?}"));
    let secs = rest
        .strip_suffix(" s")
        .unwrap_or_else(|| panic!("not a time in seconds: {rest:?}"));
    secs.parse().unwrap()
}

both_modes! {
    #[test]
    fn map_ends_with_a_summary_line_even_when_stderr_is_not_a_terminal() {
        let out = wasmpool(&["map", TESTGUEST, "--task", "fail_on_tens"], "8\n9\n10\n\n11\n12\n");
        assert_eq!(out.status.code(), Some(1));
        let err = stderr(&out);
        // The summary is the whole of stderr: no progress bar when stderr
        // is a pipe (no carriage returns, no escape sequences).
        assert_eq!(err.lines().count(), 1, "{err:?}");
        assert!(!err.contains('\r') && !err.contains('\u{1b}'), "{err:?}");
        let secs = summary_time(err.trim_end(), "5 tasks, 1 failed");
        assert!((0.0..60.0).contains(&secs), "{secs}");
    }

    #[test]
    fn quiet_leaves_stderr_to_errors() {
        let out = wasmpool(&["map", "-q", SQUARE, "--task", "square"], "1\n2\n");
        assert_eq!(out.status.code(), Some(0));
        assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 2);
        assert_eq!(stderr(&out), "", "--quiet: no summary");

        // A failure under --values still says what failed.
        let out = wasmpool(
            &["map", TESTGUEST, "--task", "fail_on_tens", "--values", "--quiet"],
            "9\n10\n",
        );
        assert_eq!(out.status.code(), Some(1));
        let err = stderr(&out);
        assert_eq!(err.lines().count(), 1, "the failure, no summary: {err:?}");
        assert!(err.contains("task 1: guest: 10 is a multiple of ten"), "{err:?}");
    }

    #[test]
    fn run_with_copies_ends_with_a_summary_and_one_copy_does_not() {
        let out = wasmpool(&["run", HELLO, "-n", "3", "--", "--exit=3"], "");
        assert_eq!(out.status.code(), Some(3));
        let err = stderr(&out);
        summary_time(err.lines().last().unwrap(), "3 copies, 3 failed");

        let out = wasmpool(&["run", HELLO, "-n", "2"], "");
        assert_eq!(out.status.code(), Some(0));
        summary_time(stderr(&out).trim_end(), "2 copies, 0 failed");

        // One copy is a command like any other: its stderr is its own.
        let out = wasmpool(&["run", HELLO], "");
        assert_eq!(out.status.code(), Some(0));
        assert_eq!(stderr(&out), "");
        let out = wasmpool(&["run", "--quiet", HELLO, "-n", "2"], "");
        assert_eq!(stderr(&out), "");
    }

    #[test]
    fn summary_counts_results_from_the_journal() {
        let dir = tempfile::tempdir().unwrap();
        let journal = dir.path().join("run.journal");
        let journal = journal.to_str().unwrap();
        let args = ["map", SQUARE, "--task", "square", "--journal", journal];
        let first = wasmpool(&args, "1\n2\n3\n");
        assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
        summary_time(stderr(&first).trim_end(), "3 tasks, 0 failed, 0 from the journal");
        let second = wasmpool(&args, "1\n2\n3\n4\n");
        assert_eq!(second.status.code(), Some(0), "{}", stderr(&second));
        summary_time(stderr(&second).trim_end(), "4 tasks, 0 failed, 3 from the journal");
    }
}

both_modes! {
    #[test]
    fn verbose_logs_compilation_workers_and_replaced_instances() {
        let args = ["map", "-vv", TESTGUEST, "--task", "panic_on_13", "-j", "1"];
        let out = wasmpool_logging(&args, None, "12\n13\n14\n");
        assert_eq!(out.status.code(), Some(1));
        let err = stderr(&out);
        for line in [
            ": compiled in ",
            "worker 0: started",
            "worker 0: replacing its instance: the task failed with trap",
        ] {
            assert!(err.contains(line), "no {line:?} in {err}");
        }
        // Without -v, none of it.
        let out = wasmpool_logging(&args[..1].iter().chain(&args[2..]).copied().collect::<Vec<_>>(), None, "13\n");
        assert!(!stderr(&out).contains("worker 0"), "{}", stderr(&out));
    }

    #[test]
    fn rust_log_takes_the_place_of_verbose_and_reports_a_bad_directive() {
        let args = ["map", SQUARE, "--task", "square", "-j", "1"];
        let out = wasmpool_logging(&args, Some("wasmpool::worker=debug"), "2\n");
        assert_eq!(out.status.code(), Some(0));
        let err = stderr(&out);
        assert!(err.contains("worker 0: started"), "{err}");
        assert!(!err.contains("compiled in"), "only the worker's events: {err}");

        let out = wasmpool_logging(&args, Some("wasmpool=loud,wasmpool::worker=debug"), "2\n");
        assert_eq!(out.status.code(), Some(0));
        let err = stderr(&out);
        assert!(
            err.starts_with("wasmpool: RUST_LOG: ignoring \"wasmpool=loud\": "),
            "{err}"
        );
        assert!(err.contains("worker 0: started"), "the valid directive counts: {err}");
    }
}

/// `script` (util-linux) runs `command` with a pseudo-terminal as its
/// terminal; what was drawn on it comes back. `None` without `script`.
fn on_a_terminal(command: &str) -> Option<String> {
    let out = Command::new("script")
        .args(["-q", "-e", "-c", command, "/dev/null"])
        .output()
        .ok()?;
    assert!(
        out.status.success(),
        "{command}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Quotes `s` for `sh`.
fn sh(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

// One mode: what is drawn does not depend on it.
#[test]
fn progress_bar_is_drawn_on_a_terminal_with_the_total_of_an_input_file() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    std::fs::write(&input, "300\n300\n\n300\n300\n").unwrap();
    let output = dir.path().join("out.jsonl");
    let command = |extra: &str| {
        format!(
            "WASMPOOL_CACHE_DIR={cache} {bin} map {module} --task sleep_ms -j 2 --input {input} {extra} > {output}",
            cache = sh(dir.path().join("cache").to_str().unwrap()),
            bin = sh(env!("CARGO_BIN_EXE_wasmpool")),
            module = sh(TESTGUEST),
            input = sh(input.to_str().unwrap()),
            output = sh(output.to_str().unwrap()),
        )
    };
    let Some(drawn) = on_a_terminal(&command("")) else {
        eprintln!("skipped: no `script` command to run wasmpool on a pseudo-terminal");
        return;
    };
    assert!(
        drawn.contains("/4 tasks") && drawn.contains("ETA"),
        "a bar with the total: {drawn:?}"
    );
    assert!(
        drawn.contains("wasmpool: 4 tasks, 0 failed, in "),
        "{drawn:?}"
    );
    assert_eq!(std::fs::read_to_string(&output).unwrap().lines().count(), 4);

    let quiet = on_a_terminal(&command("--quiet")).unwrap();
    assert_eq!(quiet, "", "--quiet draws nothing");
}
