//! Hostile guests against the real binary: the limits of `run`, the host's
//! memory under bombs (the peak resident memory of the `wasmpool` process),
//! one result per line, `--fail-fast` with a task blocked for good, and
//! flags out of range. Every run is bounded in time. The tests run in both
//! modes (`both_modes!`: the async one adds `--concurrency 4` to `map` and
//! `run`), but the one of flags (refused before anything runs) and the one
//! that needs other tasks to go on beside a task stuck in a wasm atomic
//! wait.

use std::path::Path;
use std::time::Duration;

use wasmpool_tests::PANIC;

use crate::util::{Run, both_modes, mode_args, wasmpool_watched};

const LIMIT: Duration = Duration::from_secs(60);

/// Writes `text` to `dir/name` and returns the path.
fn file(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

fn wasmpool(dir: &Path, args: &[&str], stdin: &str) -> Run {
    wasmpool_watched(&dir.join("cache"), args, stdin, LIMIT, true)
}

fn lines(run: &Run) -> Vec<String> {
    String::from_utf8_lossy(&run.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// A WASI command that sleeps for about 30 years through `poll_oneoff`, and
/// an export that spins.
const SLEEPER: &str = r#"(module
    (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
    (memory (export "memory") 1)
    (func (export "_start")
        (i64.store (i32.const 24) (i64.const 1000000000000000000))
        (i32.store (i32.const 16) (i32.const 1))
        (drop (call $poll (i32.const 0) (i32.const 64) (i32.const 1) (i32.const 128))))
    (func (export "spin") (loop br 0))
    (func (export "bomb")
        (loop (br_if 0 (i32.ne (memory.grow (i32.const 16)) (i32.const -1))))
        unreachable))"#;

both_modes! {
    #[test]
    fn run_timeout_ends_sleeping_and_spinning_copies() {
        let dir = tempfile::tempdir().unwrap();
        let wat = file(dir.path(), "sleeper.wat", SLEEPER);
        for (args, copies) in [
            (vec!["run", &wat, "--timeout", "300ms"], 1),
            (
                vec!["run", &wat, "--invoke", "spin", "--timeout", "300ms"],
                1,
            ),
            (vec!["run", &wat, "-n", "3", "--timeout", "300ms"], 3),
        ] {
            let run = wasmpool(dir.path(), &args, "");
            assert_eq!(run.status.code(), Some(124), "{args:?}: {}", run.stderr);
            assert_eq!(
                run.stderr.matches("timeout: ").count(),
                copies,
                "{args:?}: {}",
                run.stderr
            );
            assert!(
                run.elapsed < Duration::from_secs(10),
                "{args:?}: {:?}",
                run.elapsed
            );
        }
    }

    #[test]
    fn run_max_memory_and_fuel_hold() {
        let dir = tempfile::tempdir().unwrap();
        let wat = file(dir.path(), "sleeper.wat", SLEEPER);
        let run = wasmpool(
            dir.path(),
            &["run", &wat, "--invoke", "bomb", "--max-memory", "16MiB"],
            "",
        );
        assert_eq!(run.status.code(), Some(134), "{}", run.stderr);
        assert!(run.stderr.contains("out_of_memory: "), "{}", run.stderr);
        let run = wasmpool(
            dir.path(),
            &["run", &wat, "--invoke", "spin", "--fuel", "100000"],
            "",
        );
        assert_eq!(run.status.code(), Some(134), "{}", run.stderr);
        assert!(run.stderr.contains("out_of_fuel: "), "{}", run.stderr);
    }

    #[test]
    fn run_with_one_copy_sees_exactly_the_granted_environment() {
        let dir = tempfile::tempdir().unwrap();
        // Exits with the number of environment variables it sees.
        let wat = file(
            dir.path(),
            "env.wat",
            r#"(module
                (import "wasi_snapshot_preview1" "environ_sizes_get" (func $sizes (param i32 i32) (result i32)))
                (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
                (memory (export "memory") 1)
                (func (export "_start")
                    (drop (call $sizes (i32.const 0) (i32.const 4)))
                    (call $exit (i32.load (i32.const 0)))))"#,
        );
        let run = wasmpool(dir.path(), &["run", &wat, "--env", "A=1"], "");
        assert_eq!(run.status.code(), Some(1), "as wasmtime run: only A");
        let run = wasmpool(dir.path(), &["run", &wat], "");
        assert_eq!(run.status.code(), Some(0), "nothing granted, nothing seen");
        let run = wasmpool(dir.path(), &["run", &wat, "-n", "1", "--env", "A=1"], "");
        assert_eq!(
            run.status.code(),
            Some(3),
            "-n adds WASMPOOL_INDEX and WASMPOOL_COUNT"
        );
    }
}

/// A command that writes `abc` with no newline.
const NO_NEWLINE: &str = r#"(module
    (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
    (memory (export "memory") 1)
    (data (i32.const 16) "abc")
    (func (export "_start")
        (i32.store (i32.const 0) (i32.const 16))
        (i32.store (i32.const 4) (i32.const 3))
        (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"#;

both_modes! {
    #[test]
    fn run_ends_each_copys_unfinished_last_line() {
        let dir = tempfile::tempdir().unwrap();
        let wat = file(dir.path(), "abc.wat", NO_NEWLINE);
        let run = wasmpool(dir.path(), &["run", &wat, "-n", "3"], "");
        assert_eq!(run.status.code(), Some(0), "{}", run.stderr);
        assert_eq!(run.stdout, b"abc\nabc\nabc\n", "never glued together");
        let run = wasmpool(dir.path(), &["run", &wat], "");
        assert_eq!(run.stdout, b"abc", "one copy: its bytes as they are");
    }

    #[test]
    fn run_cuts_an_endless_line_in_pieces_and_keeps_host_memory_bounded() {
        let dir = tempfile::tempdir().unwrap();
        // 800 writes of 64 KiB of `x`, no newline: 50 MiB in one line per copy.
        let wat = file(
            dir.path(),
            "line.wat",
            r#"(module
                (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
                (memory (export "memory") 2)
                (func (export "_start") (local $i i32)
                    (memory.fill (i32.const 65536) (i32.const 120) (i32.const 65536))
                    (i32.store (i32.const 0) (i32.const 65536))
                    (i32.store (i32.const 4) (i32.const 65536))
                    (loop $l
                        (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
                        (local.set $i (i32.add (local.get $i) (i32.const 1)))
                        (br_if $l (i32.lt_u (local.get $i) (i32.const 800))))))"#,
        );
        let run = wasmpool(
            dir.path(),
            &["run", &wat, "-n", "2", "--max-memory", "16MiB"],
            "",
        );
        assert_eq!(run.status.code(), Some(0), "{}", run.stderr);
        assert_eq!(run.stdout.len(), 2 * 800 * 65536 + 2 * 800);
        assert!(
            run.stdout
                .split(|&b| b == b'\n')
                .all(|line| line.len() <= 65536 && line.iter().all(|&b| b == b'x'))
        );
        // Held per copy: at most one 64 KiB piece, not the 50 MiB line.
        assert!(
            run.peak_kib < 64 << 10,
            "peak {} KiB for 2 x 50 MiB of output",
            run.peak_kib
        );
    }
}

/// A task module whose `blob` task answers input `0` after sleeping 2 s,
/// input `2` at once with `""`, and any other input with a 16 MiB string
/// built from one page of its memory: outputs that pile up behind task 0.
const BOMB: &str = r#"(module
    (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
    (import "wasmpool" "input_len" (func $len (result i32)))
    (import "wasmpool" "input_read" (func $read (param i32 i32) (result i32)))
    (import "wasmpool" "output_write" (func $write (param i32 i32)))
    (memory (export "memory") 1)
    (data (i32.const 200) "\"")
    (func (export "wasmpool_abi_v1"))
    (func (export "wasmpool_task_blob") (result i32) (local $n i32)
        (drop (call $read (i32.const 300) (i32.const 1)))
        (if (i32.eq (i32.load8_u (i32.const 300)) (i32.const 48))
            (then
                (i64.store (i32.const 24) (i64.const 2000000000))
                (i32.store (i32.const 16) (i32.const 1))
                (drop (call $poll (i32.const 0) (i32.const 64) (i32.const 1) (i32.const 128)))
                (call $write (i32.const 200) (i32.const 1))
                (call $write (i32.const 200) (i32.const 1))
                (return (i32.const 0))))
        (if (i32.eq (i32.load8_u (i32.const 300)) (i32.const 50))
            (then
                (call $write (i32.const 200) (i32.const 1))
                (call $write (i32.const 200) (i32.const 1))
                (return (i32.const 0))))
        (memory.fill (i32.const 1024) (i32.const 120) (i32.const 32768))
        (call $write (i32.const 200) (i32.const 1))
        (local.set $n (i32.const 512))
        (loop $l
            (call $write (i32.const 1024) (i32.const 32768))
            (local.set $n (i32.sub (local.get $n) (i32.const 1)))
            (br_if $l (local.get $n)))
        (call $write (i32.const 200) (i32.const 1))
        (i32.const 0)))"#;

both_modes! {
    #[test]
    fn map_queue_flood_keeps_host_memory_within_the_queue_budget() {
        let dir = tempfile::tempdir().unwrap();
        let wat = file(
            dir.path(),
            "flood.wat",
            r#"(module
                (import "wasmpool" "queue_put" (func $put (param i32 i32 i32 i64) (result i32)))
                (memory (export "memory") 17)
                (func (export "wasmpool_abi_v1"))
                (func (export "flood") (param i64) (result i64)
                    (loop $l
                        (drop (call $put (i32.const 0) (i32.const 0) (i32.const 1048576) (i64.const 0)))
                        (br $l))
                    (i64.const 0)))"#,
        );
        // A million messages of 1 MiB would be a terabyte; the byte budget of
        // the queue (16 MiB here) is what the guests can park in the host.
        let run = wasmpool(
            dir.path(),
            &[
                "map",
                &wat,
                "--task",
                "flood",
                "-j",
                "2",
                "--max-memory",
                "16MiB",
                "--queue",
                "q:1000000:16MiB",
                "--timeout",
                "1s",
            ],
            "0\n1\n",
        );
        assert_eq!(run.status.code(), Some(1), "{}", run.stderr);
        assert_eq!(lines(&run).len(), 2);
        assert!(
            lines(&run)
                .iter()
                .all(|l| l.contains(r#""kind":"timeout""#))
        );
        assert!(run.peak_kib < 128 << 10, "peak {} KiB", run.peak_kib);
    }

    #[test]
    fn map_output_bomb_behind_a_slow_task_keeps_host_memory_bounded() {
        let dir = tempfile::tempdir().unwrap();
        // Task 0 sleeps 2 s; every other task returns a 16 MiB string built
        // from one page of memory: 99 x 16 MiB would pile up behind task 0.
        let wat = file(dir.path(), "bomb.wat", BOMB);
        let input: String = (0..100)
            .map(|i| format!("{}\n", if i == 0 { 0 } else { 1 }))
            .collect();
        let run = wasmpool_watched(
            &dir.path().join("cache"),
            &[
                "map",
                &wat,
                "--task",
                "blob",
                "-j",
                "2",
                "--max-memory",
                "16MiB",
                "--values",
            ],
            &input,
            LIMIT,
            false,
        );
        assert_eq!(run.status.code(), Some(0), "{}", run.stderr);
        // 256 MiB of output budget, per worker one finished output and one
        // being built, the line being written, the process itself and what the
        // allocator keeps: well under the 1.6 GiB that would pile up.
        assert!(run.peak_kib < 640 << 10, "peak {} KiB", run.peak_kib);
    }

    #[test]
    fn outputs_behind_a_slow_task_stay_bounded_among_many_fast_tasks() {
        let dir = tempfile::tempdir().unwrap();
        // Task 0 sleeps 2 s, 1,500 tasks return "" at once, then 64 return
        // 16 MiB each. Batches cut short by the output budget come back with
        // their unrun inputs, and those rests wait while the stream is past
        // its budget. When they were sent again at once, free workers kept
        // taking them, each time running one 16 MiB output more: 1.05 GiB
        // here (2.4 GiB with 3,000 and 150), against 420-610 MiB now.
        let wat = file(dir.path(), "bomb.wat", BOMB);
        let input: String = std::iter::once(0)
            .chain(std::iter::repeat_n(2, 1500))
            .chain(std::iter::repeat_n(1, 64))
            .map(|i| format!("{i}\n"))
            .collect();
        let run = wasmpool_watched(
            &dir.path().join("cache"),
            &["map", &wat, "--task", "blob", "-j", "2", "--max-memory", "16MiB", "--values"],
            &input,
            LIMIT,
            false,
        );
        assert_eq!(run.status.code(), Some(0), "{}", run.stderr);
        assert!(run.peak_kib < 800 << 10, "peak {} KiB", run.peak_kib);
    }

    #[test]
    fn map_writes_each_result_on_one_line_whatever_the_guest_returns() {
        let dir = tempfile::tempdir().unwrap();
        // Valid JSON with newlines between its tokens: copied as it is, its
        // second line would read as the result of task 1.
        let wat = file(
            dir.path(),
            "forge.wat",
            r#"(module
                (import "wasmpool" "output_write" (func $write (param i32 i32)))
                (memory (export "memory") 1)
                (data (i32.const 0) "[0,\0a{\22index\22:1,\22ok\22:\22forged\22}\0a]")
                (func (export "wasmpool_abi_v1"))
                (func (export "wasmpool_task_forge") (result i32)
                    (call $write (i32.const 0) (i32.const 31))
                    (i32.const 0)))"#,
        );
        let journal = dir.path().join("j");
        let journal = journal.to_str().unwrap();
        let run = wasmpool(
            dir.path(),
            &[
                "map",
                &wat,
                "--task",
                "forge",
                "-j",
                "1",
                "--journal",
                journal,
            ],
            "1\n2\n",
        );
        assert_eq!(run.status.code(), Some(0), "{}", run.stderr);
        assert_eq!(
            lines(&run),
            [
                r#"{"index":0,"ok":[0,{"index":1,"ok":"forged"}]}"#,
                r#"{"index":1,"ok":[0,{"index":1,"ok":"forged"}]}"#,
            ]
        );
        let values = wasmpool(
            dir.path(),
            &["map", &wat, "--task", "forge", "--values"],
            "1\n",
        );
        assert_eq!(lines(&values), [r#"[0,{"index":1,"ok":"forged"}]"#]);
        assert_eq!(
            std::fs::read_to_string(journal).unwrap().lines().count(),
            1 + 2
        );
        // Nested deeper than the parser's limit: an output error, not a crash.
        let deep = file(
            dir.path(),
            "deep.wat",
            &format!(
                r#"(module
                    (import "wasmpool" "output_write" (func $write (param i32 i32)))
                    (memory (export "memory") 1)
                    (data (i32.const 0) "{}")
                    (func (export "wasmpool_abi_v1"))
                    (func (export "wasmpool_task_deep") (result i32)
                        (call $write (i32.const 0) (i32.const 2000))
                        (i32.const 0)))"#,
                "[".repeat(1000) + &"]".repeat(1000)
            ),
        );
        let run = wasmpool(dir.path(), &["map", &deep, "--task", "deep"], "1\n");
        assert_eq!(run.status.code(), Some(1), "{}", run.stderr);
        assert!(
            lines(&run)[0].contains(r#""kind":"output""#),
            "{:?}",
            lines(&run)
        );
    }
}

/// Task 0 waits for good in a wasm atomic wait; task 1 traps; the rest
/// return their input.
const BLOCKED: &str = r#"(module
    (import "wasmpool" "shared" (memory 1 1 shared))
    (func (export "wasmpool_abi_v1"))
    (func (export "t") (param i64) (result i64)
        (if (i64.eqz (local.get 0))
            (then (drop (memory.atomic.wait32 (i32.const 0) (i32.const 0) (i64.const -1)))))
        (if (i64.eq (local.get 0) (i64.const 1)) (then unreachable))
        (local.get 0)))"#;

// Synchronous mode only: in the async mode a wasm atomic wait blocks the
// worker's whole runtime thread, and with it the tasks it took after the
// blocked one: task 1 would never run (nor, later, time out).
#[test]
fn fail_fast_with_a_task_blocked_for_good_ends_promptly() {
    let dir = tempfile::tempdir().unwrap();
    let wat = file(dir.path(), "blocked.wat", BLOCKED);
    let run = wasmpool(
        dir.path(),
        &[
            "map",
            &wat,
            "--task",
            "t",
            "-j",
            "2",
            "--shared-memory",
            "64KiB",
            "--fail-fast",
        ],
        "0\n1\n2\n",
    );
    assert_eq!(run.status.code(), Some(1), "{}", run.stderr);
    let got = lines(&run);
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(
        got[0].starts_with(r#"{"index":0,"error":{"kind":"terminated""#),
        "{got:?}"
    );
    assert!(
        got[1].starts_with(r#"{"index":1,"error":{"kind":"trap""#),
        "{got:?}"
    );
    assert!(run.elapsed < Duration::from_secs(10), "{:?}", run.elapsed);
    // With a time limit instead, the blocked task times out and the rest run.
    let run = wasmpool(
        dir.path(),
        &[
            "map",
            &wat,
            "--task",
            "t",
            "-j",
            "2",
            "--shared-memory",
            "64KiB",
            "--timeout",
            "300ms",
        ],
        "0\n1\n2\n",
    );
    let got = lines(&run);
    assert!(got[0].contains(r#""kind":"timeout""#), "{got:?}");
    assert!(got[1].contains(r#""kind":"trap""#), "{got:?}");
    assert_eq!(got[2], r#"{"index":2,"ok":2}"#);
}

both_modes! {
    #[test]
    fn an_endless_input_line_is_an_input_error_of_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let wat = file(dir.path(), "sleeper.wat", SLEEPER);
        // 100 MiB of digits without a newline, then a good line.
        let mut input = "1".repeat(100 << 20);
        input.push_str("\nnull\n");
        let run = wasmpool_watched(
            &dir.path().join("cache"),
            &["map", &wat, "--task", "spin", "--timeout", "100ms"],
            &input,
            LIMIT,
            true,
        );
        let got = lines(&run);
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(
            got[0].contains(r#""kind":"input""#) && got[0].contains(":1: the line is longer than"),
            "{got:?}"
        );
        assert!(got[1].contains(r#""kind":"timeout""#), "{got:?}");
        assert!(run.peak_kib < 160 << 10, "peak {} KiB", run.peak_kib);
    }

    #[test]
    fn a_journal_of_null_results_resumes() {
        let dir = tempfile::tempdir().unwrap();
        let wat = file(
            dir.path(),
            "echo.wat",
            r#"(module
                (import "wasmpool" "input_read" (func $read (param i32 i32) (result i32)))
                (import "wasmpool" "output_write" (func $write (param i32 i32)))
                (memory (export "memory") 1)
                (func (export "wasmpool_abi_v1"))
                (func (export "wasmpool_task_echo") (result i32)
                    (call $write (i32.const 0) (call $read (i32.const 0) (i32.const 60000)))
                    (i32.const 0)))"#,
        );
        let journal = dir.path().join("j");
        let args = [
            "map",
            &wat,
            "--task",
            "echo",
            "--journal",
            journal.to_str().unwrap(),
        ];
        let first = wasmpool(dir.path(), &args, "1\nnull\n2\n");
        assert_eq!(first.status.code(), Some(0), "{}", first.stderr);
        let again = wasmpool(dir.path(), &args, "1\nnull\n2\n");
        assert_eq!(again.status.code(), Some(0), "{}", again.stderr);
        assert_eq!(again.stdout, first.stdout);
    }
}

// One mode: the flags are refused before any pool or group is built.
#[test]
fn out_of_range_flags_are_usage_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let wat = file(dir.path(), "sleeper.wat", SLEEPER);
    for (flag, value, says) in [
        ("--max-stack", "64MiB", "at most 16MiB"),
        ("--timeout", "100000000000000000000", "at most a year"),
        ("--timeout", "1e20", "duration"),
        ("--max-memory", "99999999999GiB", "too large"),
    ] {
        for cmd in ["map", "run"] {
            let mut args = vec![cmd, &wat, flag, value];
            if cmd == "map" {
                args.extend(["--task", "spin"]);
            }
            let run = wasmpool(dir.path(), &args, "");
            assert_eq!(run.status.code(), Some(2), "{args:?}: {}", run.stderr);
            assert!(run.stderr.contains(says), "{args:?}: {}", run.stderr);
            assert!(!run.stderr.contains("panicked"), "{args:?}: {}", run.stderr);
        }
    }
}

both_modes! {
    #[test]
    fn a_2mib_stack_runs_deep_recursion_to_a_trap_not_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let wat = file(
            dir.path(),
            "recurse.wat",
            r#"(module (func $r (export "r") (param i64) (result i64)
                (call $r (i64.add (local.get 0) (i64.const 1)))))"#,
        );
        for stack in ["2MiB", "16MiB"] {
            let run = wasmpool(
                dir.path(),
                &["map", &wat, "--task", "r", "--max-stack", stack],
                "1\n",
            );
            assert_eq!(run.status.code(), Some(1), "{stack}: {}", run.stderr);
            assert!(
                lines(&run)[0].contains("call stack exhausted"),
                "{stack}: {:?}",
                lines(&run)
            );
        }
    }
}

both_modes! {
    #[test]
    fn run_reports_a_trapping_copy_with_its_panic_message() {
        let dir = tempfile::tempdir().unwrap();
        let run = wasmpool(dir.path(), &["run", PANIC, "-n", "2"], "");
        assert_eq!(run.status.code(), Some(134), "{}", run.stderr);
        assert_eq!(
            run.stderr
                .matches("trap: the answer was not 42 (wasm trap: ")
                .count(),
            2,
            "{}",
            run.stderr
        );
        // The guest's own frames; the runtime's are counted, not shown.
        assert!(run.stderr.contains("panic::descend"), "{}", run.stderr);
        assert!(!run.stderr.contains("::panicking::"), "{}", run.stderr);
        assert!(
            run.stderr.contains("frames of the language runtime hidden"),
            "{}",
            run.stderr
        );
        let verbose = wasmpool(dir.path(), &["run", PANIC, "-v"], "");
        assert!(
            verbose.stderr.contains("::panicking::"),
            "{}",
            verbose.stderr
        );
    }
}

/// Spawns `wasmpool args...` (in the current mode) with a stdin
/// pipe that stays open (nothing is ever written to it), and returns the
/// child and that pipe. The child gets SIGINT's default action back: a
/// test run in the background of a shell inherits it ignored, and the
/// Ctrl-C test would then measure the harness, not wasmpool.
fn spawn_with_open_stdin(
    dir: &Path,
    args: &[&str],
) -> (std::process::Child, std::process::ChildStdin) {
    use std::os::unix::process::CommandExt;
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_wasmpool"));
    // SAFETY: runs in the child between fork and exec, where only
    // async-signal-safe calls are allowed; `signal` is one, and it touches
    // nothing but the child's own signal disposition.
    unsafe {
        command.pre_exec(|| {
            libc::signal(libc::SIGINT, libc::SIG_DFL);
            Ok(())
        });
    }
    let mut child = command
        .args(mode_args(args))
        .env("WASMPOOL_CACHE_DIR", dir.join("cache"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdin = child.stdin.take().unwrap();
    (child, stdin)
}

/// Waits for `child` at most `limit`; kills it and fails the test after.
fn wait_bounded(child: &mut std::process::Child, limit: Duration) -> std::process::ExitStatus {
    let start = std::time::Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if start.elapsed() > limit {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

both_modes! {
    #[test]
    fn run_timeout_ends_a_blocking_read_of_stdin() {
        let dir = tempfile::tempdir().unwrap();
        let wat = file(
            dir.path(),
            "read.wat",
            r#"(module
                (import "wasi_snapshot_preview1" "fd_read" (func $read (param i32 i32 i32 i32) (result i32)))
                (memory (export "memory") 1)
                (func (export "_start")
                    (i32.store (i32.const 0) (i32.const 16))
                    (i32.store (i32.const 4) (i32.const 100))
                    (drop (call $read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)))))"#,
        );
        let (mut child, _stdin) =
            spawn_with_open_stdin(dir.path(), &["run", &wat, "--timeout", "300ms"]);
        let status = wait_bounded(&mut child, Duration::from_secs(10));
        assert_eq!(status.code(), Some(124));
    }
}

both_modes! {
    #[test]
    fn ctrl_c_ends_a_map_with_a_task_blocked_for_good() {
        let dir = tempfile::tempdir().unwrap();
        let wat = file(dir.path(), "blocked.wat", BLOCKED);
        let (mut child, mut stdin) = spawn_with_open_stdin(
            dir.path(),
            &["map", &wat, "--task", "t", "--shared-memory", "64KiB"],
        );
        use std::io::Write;
        stdin.write_all(b"0\n").unwrap();
        stdin.flush().unwrap();
        std::thread::sleep(Duration::from_millis(300));
        let kill = std::process::Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(kill.success());
        let start = std::time::Instant::now();
        let status = wait_bounded(&mut child, Duration::from_secs(10));
        assert!(!status.success());
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{:?}",
            start.elapsed()
        );
    }
}
