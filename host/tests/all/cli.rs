//! The real `wasmpool` binary: output format, ordering, exit codes, errors.
//! The tests of `map` and `run` run in both modes (`both_modes!`: the async
//! one adds `--concurrency 4`); those of `inspect` and of errors found
//! before anything runs (no pool or group is built) run once.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use wasmpool_tests::{MANDELBROT, PRIMES, SQUARE, TESTGUEST};

use crate::util::{both_modes, mode_args};

/// Runs `wasmpool args...` with `stdin`, in a private cache directory; a
/// `map` or a `run` in the current mode.
pub(crate) fn wasmpool(args: &[&str], stdin: &str) -> Output {
    let cache = tempfile::tempdir().unwrap();
    wasmpool_in(cache.path(), args, stdin)
}

fn wasmpool_in(cache: &std::path::Path, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_wasmpool"))
        .args(mode_args(args))
        .env("WASMPOOL_CACHE_DIR", cache)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let stdin = stdin.to_string();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(stdin.as_bytes());
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    out
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8(out.stderr.clone()).unwrap()
}

fn lines(range: std::ops::Range<u64>) -> String {
    range.map(|i| format!("{i}\n")).collect()
}

both_modes! {
    #[test]
    fn primes_over_64_tasks_sum_to_98610() {
        let out = wasmpool(
            &["map", PRIMES, "--task", "primes", "--values"],
            &lines(0..64),
        );
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let total: u64 = stdout(&out)
            .lines()
            .map(|l| l.parse::<u64>().unwrap())
            .sum();
        assert_eq!(total, 98610);
    }

    #[test]
    fn mandelbrot_over_512_rows_sums_to_12475425_from_an_input_file() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("rows.jsonl");
        std::fs::write(&input, lines(0..512)).unwrap();
        let out = wasmpool(
            &[
                "map",
                MANDELBROT,
                "--task",
                "row",
                "--input",
                input.to_str().unwrap(),
                "--values",
            ],
            "",
        );
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let total: u64 = stdout(&out)
            .lines()
            .map(|l| l.parse::<u64>().unwrap())
            .sum();
        assert_eq!(total, 12475425);
    }

    #[test]
    fn json_lines_come_in_input_order() {
        for task in ["square", "square_i64"] {
            let out = wasmpool(&["map", SQUARE, "--task", task, "-j", "3"], &lines(0..5000));
            assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
            let text = stdout(&out);
            let got: Vec<&str> = text.lines().collect();
            assert_eq!(got.len(), 5000);
            for (i, line) in got.iter().enumerate() {
                assert_eq!(
                    *line,
                    format!("{{\"index\":{i},\"ok\":{}}}", i * i),
                    "{task}"
                );
            }
        }
    }

    #[test]
    fn bad_json_line_fails_alone_and_names_its_line() {
        let out = wasmpool(&["map", SQUARE, "--task", "square"], "1\n\n{oops\n3\n");
        assert_eq!(out.status.code(), Some(1));
        let text = stdout(&out);
        let got: Vec<&str> = text.lines().collect();
        assert_eq!(got[0], r#"{"index":0,"ok":1}"#);
        assert!(
            got[1].starts_with(
                r#"{"index":1,"error":{"kind":"input","message":"<stdin>:3:2: invalid JSON: "#
            ),
            "blank lines are skipped but counted in line numbers: {}",
            got[1]
        );
        assert_eq!(got[2], r#"{"index":2,"ok":9}"#);
        assert!(
            stderr(&out).contains("wasmpool: 3 tasks, 1 failed, in "),
            "{}",
            stderr(&out)
        );
    }

    #[test]
    fn failed_task_is_reported_at_its_index_and_exit_status_is_one() {
        let out = wasmpool(&["map", TESTGUEST, "--task", "fail_on_tens"], &lines(8..13));
        assert_eq!(out.status.code(), Some(1));
        let text = stdout(&out);
        let got: Vec<&str> = text.lines().collect();
        assert_eq!(
            got,
            [
                r#"{"index":0,"ok":16}"#,
                r#"{"index":1,"ok":18}"#,
                r#"{"index":2,"error":{"kind":"guest","message":"10 is a multiple of ten"}}"#,
                r#"{"index":3,"ok":22}"#,
                r#"{"index":4,"ok":24}"#,
            ]
        );
    }

    #[test]
    fn values_mode_prints_failures_to_stderr() {
        let out = wasmpool(
            &["map", TESTGUEST, "--task", "fail_on_tens", "--values"],
            "9\n10\n11\n",
        );
        assert_eq!(out.status.code(), Some(1));
        assert_eq!(stdout(&out), "18\n22\n");
        assert!(
            stderr(&out).contains("<stdin>:2: task 1: guest: 10 is a multiple of ten"),
            "{}",
            stderr(&out)
        );
    }

    #[test]
    fn trap_output_has_a_backtrace() {
        let out = wasmpool(&["map", TESTGUEST, "--task", "panic_on_13"], "13\n14\n");
        assert_eq!(out.status.code(), Some(1));
        let text = stdout(&out);
        let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(first["error"]["kind"], "trap");
        assert!(
            first["error"]["message"]
                .as_str()
                .unwrap()
                .contains("unlucky 13"),
            "{first}"
        );
        assert!(
            first["error"]["backtrace"]
                .as_str()
                .unwrap()
                .contains("panic_on_13"),
            "{first}"
        );
        assert_eq!(text.lines().nth(1).unwrap(), r#"{"index":1,"ok":14}"#);
    }

    #[test]
    fn invalid_json_output_is_an_output_error() {
        let out = wasmpool(&["map", TESTGUEST, "--task", "not_json"], "null\n");
        assert_eq!(out.status.code(), Some(1));
        assert!(
            stdout(&out).starts_with(
                r#"{"index":0,"error":{"kind":"output","message":"the task's output is not valid JSON"#
            ),
            "{}",
            stdout(&out)
        );
    }

    #[test]
    fn workers_flag_is_honoured() {
        let out = wasmpool(
            &["map", TESTGUEST, "--task", "whoami", "-j", "3", "--values"],
            &"5\n".repeat(24),
        );
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let mut seen: Vec<String> = stdout(&out).lines().map(str::to_string).collect();
        seen.sort();
        seen.dedup();
        assert_eq!(seen, ["[0,3]", "[1,3]", "[2,3]"]);
    }
}

// One mode: the file is refused before any pool is built.
#[test]
fn not_wasm_file_is_a_usage_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.txt");
    std::fs::write(&path, [0xff, 0xfe, 0, 1]).unwrap();
    let out = wasmpool(&["map", path.to_str().unwrap(), "--task", "x"], "1\n");
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out).trim(),
        format!(
            "wasmpool: error: {}: not a WebAssembly module: it does not start with the \\0asm magic number, and it is not text (WAT)",
            path.display()
        )
    );
}

// One mode: the files are refused before any pool is built.
#[test]
fn missing_module_and_missing_input_are_usage_errors() {
    let out = wasmpool(&["map", "/nonexistent/m.wasm", "--task", "x"], "");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).starts_with(
            "wasmpool: error: /nonexistent/m.wasm: cannot read the module: No such file"
        ),
        "{}",
        stderr(&out)
    );
    let out = wasmpool(
        &[
            "map",
            SQUARE,
            "--task",
            "square",
            "--input",
            "/nonexistent/in.jsonl",
        ],
        "",
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).starts_with("wasmpool: error: /nonexistent/in.jsonl: cannot open the input"),
        "{}",
        stderr(&out)
    );
}

both_modes! {
    #[test]
    fn missing_task_is_a_usage_error_listing_the_tasks() {
        let out = wasmpool(&["map", SQUARE, "--task", "cube"], "1\n");
        assert_eq!(out.status.code(), Some(2));
        let err = stderr(&out);
        assert!(
            err.contains(r#"no task named "cube""#) && err.contains("square_i64"),
            "{err}"
        );
    }

    #[test]
    fn empty_input_runs_nothing_and_says_so() {
        let out = wasmpool(&["map", SQUARE, "--task", "square"], "");
        assert_eq!(out.status.code(), Some(0));
        assert_eq!(stdout(&out), "");
        assert!(
            stderr(&out).contains("<stdin>: no inputs, so no tasks ran"),
            "{}",
            stderr(&out)
        );
    }

    #[test]
    fn second_run_loads_the_module_from_the_cache() {
        let cache = tempfile::tempdir().unwrap();
        let first = wasmpool_in(
            cache.path(),
            &["-v", "map", SQUARE, "--task", "square"],
            "2\n",
        );
        assert!(stderr(&first).contains("compiled in"), "{}", stderr(&first));
        let second = wasmpool_in(
            cache.path(),
            &["-v", "map", SQUARE, "--task", "square"],
            "2\n",
        );
        assert!(
            stderr(&second).contains("loaded from cache"),
            "{}",
            stderr(&second)
        );
        assert!(
            !stderr(&second).contains("compiled in"),
            "{}",
            stderr(&second)
        );
        assert_eq!(stdout(&second), "{\"index\":0,\"ok\":4}\n");
    }
}

// One mode: `inspect` runs nothing.
#[test]
fn inspect_lists_tasks_and_imports() {
    let out = wasmpool(&["inspect", SQUARE], "");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("abi: wasmpool v1"), "{text}");
    assert!(
        text.contains("  square: json -> json (export wasmpool_task_square)"),
        "{text}"
    );
    assert!(text.contains("  square_i64: (i64) -> i64"), "{text}");
    assert!(text.contains("  wasmpool::input_read: "), "{text}");
}

both_modes! {
    #[test]
    fn shared_counter_through_the_cli_is_exact() {
        let out = wasmpool(
            &[
                "map",
                TESTGUEST,
                "--task",
                "count",
                "-j",
                "2",
                "--shared-memory",
                "64KiB",
                "--values",
            ],
            "500000\n500000\n",
        );
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        assert_eq!(stdout(&out), "500000\n500000\n");
    }

    #[test]
    fn queues_are_declared_on_the_command_line() {
        let out = wasmpool(
            &[
                "map", TESTGUEST, "--task", "pc", "-j", "2", "--queue", "q:16", "--values",
            ],
            "[0, 1000]\n[1, 0]\n",
        );
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        assert_eq!(stdout(&out), "[1000,0]\n[1000,499500]\n");
        let out = wasmpool(&["map", TESTGUEST, "--task", "pc", "--queue", "q:0"], "");
        assert_eq!(out.status.code(), Some(2));
        assert!(
            stderr(&out).contains("the capacity must be at least 1"),
            "{}",
            stderr(&out)
        );
    }
}

both_modes! {
    #[test]
    fn run_five_copies_each_printing_its_index_in_whole_lines() {
        let out = wasmpool(
            &[
                "run",
                wasmpool_tests::HELLO,
                "-n",
                "5",
                "--env",
                "GREETING=hi",
                "--",
                "x{i}",
            ],
            "",
        );
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let text = stdout(&out);
        let mut lines: Vec<&str> = text.lines().collect();
        lines.sort();
        let mut expect: Vec<String> = (0..5)
            .flat_map(|i| {
                [
                    format!("hello from process {i} of 5"),
                    format!("process {i} args [\"x{i}\"] GREETING=Some(\"hi\")"),
                ]
            })
            .collect();
        expect.sort();
        assert_eq!(lines, expect);
    }

    #[test]
    fn run_passes_the_exit_code_through() {
        // One copy ends as a command does: its status, and no error line.
        let out = wasmpool(&["run", wasmpool_tests::HELLO, "--", "--exit=3"], "");
        assert_eq!(out.status.code(), Some(3));
        assert_eq!(stderr(&out), "");
        let out = wasmpool(
            &["run", wasmpool_tests::HELLO, "-n", "3", "--", "--exit=4"],
            "",
        );
        assert_eq!(out.status.code(), Some(4));
        assert!(
            stderr(&out).contains("process 2: exit: guest called proc_exit(4)"),
            "{}",
            stderr(&out)
        );
    }

    #[test]
    fn run_takes_the_guests_arguments_after_the_module_without_a_separator() {
        let out = wasmpool(&["run", wasmpool_tests::HELLO, "a", "-x", "--env", "K=V"], "");
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        assert!(
            stdout(&out).contains(r#"args ["a", "-x", "--env", "K=V"]"#),
            "{}",
            stdout(&out)
        );
        // wasmpool's flags before the first argument are wasmpool's.
        let out = wasmpool(&["run", wasmpool_tests::HELLO, "-n", "2", "b", "--exit=0"], "");
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        assert!(stdout(&out).contains(r#"process 1 args ["b", "--exit=0"]"#));
        // `--` still ends wasmpool's flags.
        let out = wasmpool(&["run", wasmpool_tests::HELLO, "--", "-n", "2"], "");
        assert!(stdout(&out).contains(r#"process  args ["-n", "2"]"#), "{}", stdout(&out));
    }

    #[test]
    fn run_tag_prefixes_each_copys_lines_with_its_index() {
        let out = wasmpool(
            &["run", wasmpool_tests::HELLO, "-n", "3", "--tag", "--", "--exit=2"],
            "",
        );
        assert_eq!(out.status.code(), Some(2));
        let text = stdout(&out);
        let mut lines: Vec<&str> = text.lines().collect();
        lines.sort();
        let mut expect: Vec<String> = (0..3)
            .flat_map(|i| {
                [
                    format!("{i}\thello from process {i} of 3"),
                    format!("{i}\tprocess {i} args [\"--exit=2\"] GREETING=None"),
                ]
            })
            .collect();
        expect.sort();
        assert_eq!(lines, expect);
    }

    #[test]
    fn run_sees_only_its_preopened_dir() {
        let root = tempfile::tempdir().unwrap();
        let data = root.path().join("data");
        std::fs::create_dir(&data).unwrap();
        std::fs::write(data.join("in.txt"), "hello from the host\n").unwrap();
        std::fs::write(root.path().join("secret.txt"), "do not read").unwrap();
        let grant = format!("{}::/data:ro", data.display());
        let out = wasmpool(&["run", wasmpool_tests::READFILE, "--dir", &grant], "");
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        assert_eq!(
            stdout(&out),
            "read: hello from the host\ndenied: /etc/passwd\ndenied: /data/../secret.txt\ndenied: /\ndenied: write /data/out.txt\n"
        );
        assert!(!data.join("out.txt").exists());
        let grant = format!("{}::/data", data.display());
        let out = wasmpool(&["run", wasmpool_tests::READFILE, "--dir", &grant], "");
        assert!(
            stdout(&out).ends_with("wrote /data/out.txt\n"),
            "{}",
            stdout(&out)
        );
        assert_eq!(
            std::fs::read_to_string(data.join("out.txt")).unwrap(),
            "written"
        );
        let out = wasmpool(&["run", wasmpool_tests::READFILE], "");
        assert!(
            stdout(&out).starts_with("cannot read /data/in.txt"),
            "nothing is granted by default: {}",
            stdout(&out)
        );
    }

    /// The seed examples of examples/README.md, run as the README shows.
    #[test]
    fn seed_examples_run_as_documented() {
        use wasmpool_tests::{SEED_PROCESSES, SEED_PRODUCER_CONSUMER, SEED_SHARED_COUNTER};
        let out = wasmpool(&["run", SEED_PROCESSES, "-n", "5"], "");
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let mut got: Vec<String> = stdout(&out).lines().map(str::to_string).collect();
        got.sort();
        assert_eq!(
            got,
            (0..5)
                .map(|i| format!("process {i} of 5 says hello"))
                .collect::<Vec<_>>()
        );

        let out = wasmpool(
            &["map", SQUARE, "--task", "square", "-j", "4", "--values"],
            &lines(0..10),
        );
        assert_eq!(stdout(&out), "0\n1\n4\n9\n16\n25\n36\n49\n64\n81\n");

        let out = wasmpool(
            &[
                "run",
                SEED_PRODUCER_CONSUMER,
                "-n",
                "2",
                "--queue",
                "items:4",
            ],
            "",
        );
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let expect: String = (0..10)
            .map(|i| format!("consumed {i}\n"))
            .collect::<String>()
            + "queue closed: done\n";
        assert_eq!(stdout(&out), expect);

        let out = wasmpool(
            &[
                "run",
                SEED_SHARED_COUNTER,
                "-n",
                "5",
                "--shared-memory",
                "64KiB",
            ],
            "",
        );
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        assert_eq!(stdout(&out), "counter = 5\n");
    }

    #[test]
    fn run_gives_clocks_and_random() {
        let out = wasmpool(&["run", wasmpool_tests::CLOCKRAND, "-n", "2"], "");
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let text = stdout(&out);
        assert_eq!(
            text.matches("wall clock after 2024: true").count(),
            2,
            "{text}"
        );
        assert_eq!(
            text.matches("slept at least 20ms: true").count(),
            2,
            "{text}"
        );
        let randoms: Vec<&str> = text.lines().filter(|l| l.starts_with("random ")).collect();
        assert_eq!(randoms.len(), 2);
        assert_ne!(
            randoms[0], randoms[1],
            "each instance has its own random seed"
        );
    }

    #[test]
    fn run_reads_stdin() {
        let out = wasmpool(&["run", wasmpool_tests::UPCASE], "hello\nworld\n");
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        assert_eq!(stdout(&out), "HELLO\nWORLD\n");
    }
}

both_modes! {
    #[test]
    fn fail_fast_stops_at_the_first_failure_and_keeps_what_came_before() {
        // One worker runs the tasks in order (in the async mode, started in
        // order on one thread, and too short to be suspended), so everything
        // before the failure finished before it arrived.
        let out = wasmpool(
            &[
                "map",
                TESTGUEST,
                "--task",
                "fail_on_tens",
                "--fail-fast",
                "-j",
                "1",
            ],
            &lines(1..40),
        );
        assert_eq!(out.status.code(), Some(1));
        let text = stdout(&out);
        let got: Vec<&str> = text.lines().collect();
        assert_eq!(got.len(), 10, "{text}");
        assert_eq!(got[8], r#"{"index":8,"ok":18}"#);
        assert_eq!(
            got[9],
            r#"{"index":9,"error":{"kind":"guest","message":"10 is a multiple of ten"}}"#
        );
        assert!(
            stderr(&out).contains("stopped at the first failure (--fail-fast) after 10 tasks"),
            "{}",
            stderr(&out)
        );
    }

    #[test]
    fn limit_flags_end_hostile_tasks_with_their_kind() {
        let dir = tempfile::tempdir().unwrap();
        let wat = dir.path().join("hostile.wat");
        std::fs::write(
            &wat,
            r#"(module (memory (export "memory") 1)
                (func (export "run") (param i64) (result i64)
                    (if (i64.eq (local.get 0) (i64.const 1)) (then (loop br 0)))
                    (if (i64.eq (local.get 0) (i64.const 2))
                        (then (loop (br_if 0 (i32.ne (memory.grow (i32.const 1)) (i32.const -1)))) unreachable))
                    local.get 0))"#,
        )
        .unwrap();
        let wat = wat.to_str().unwrap();
        let kinds = |args: &[&str]| -> Vec<String> {
            let mut all = vec!["map", wat, "--task", "run"];
            all.extend_from_slice(args);
            let out = wasmpool(&all, "0\n1\n2\n3\n");
            assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
            stdout(&out)
                .lines()
                .map(|l| {
                    let v: serde_json::Value = serde_json::from_str(l).unwrap();
                    v["error"]["kind"]
                        .as_str()
                        .map_or_else(|| v["ok"].to_string(), str::to_string)
                })
                .collect()
        };
        assert_eq!(
            kinds(&["--timeout", "100ms", "--max-memory", "1MiB"]),
            ["0", "timeout", "out_of_memory", "3"]
        );
        assert_eq!(
            kinds(&["--fuel", "100000", "--max-memory", "1MiB"]),
            ["0", "out_of_fuel", "out_of_memory", "3"]
        );
    }

    #[test]
    fn journal_resumes_a_killed_run_with_identical_output() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in.jsonl");
        std::fs::write(&input, lines(0..640)).unwrap();
        let input = input.to_str().unwrap();
        let journal = dir.path().join("run.journal");
        let cache = tempfile::tempdir().unwrap();
        let full = wasmpool_in(
            cache.path(),
            &[
                "map", PRIMES, "--task", "primes", "--input", input, "-j", "2",
            ],
            "",
        );
        assert_eq!(full.status.code(), Some(0));

        // Start the same run with a journal, and SIGKILL it partway.
        let mut child = Command::new(env!("CARGO_BIN_EXE_wasmpool"))
            .args(mode_args(&[
                "map",
                PRIMES,
                "--task",
                "primes",
                "--input",
                input,
                "-j",
                "2",
                "--journal",
            ]))
            .arg(&journal)
            .env("WASMPOOL_CACHE_DIR", cache.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let recorded = std::fs::read_to_string(&journal)
                .map(|t| t.lines().count())
                .unwrap_or(0);
            if recorded > 50 {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the run did not get going"
            );
            assert!(
                child.try_wait().unwrap().is_none(),
                "the run finished before it could be killed"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let recorded = std::fs::read_to_string(&journal).unwrap().lines().count() - 1;
        assert!(recorded < 640, "killed before the end: {recorded} recorded");

        let resumed = wasmpool_in(
            cache.path(),
            &[
                "-v",
                "map",
                PRIMES,
                "--task",
                "primes",
                "--input",
                input,
                "-j",
                "2",
                "--journal",
                journal.to_str().unwrap(),
            ],
            "",
        );
        assert_eq!(resumed.status.code(), Some(0), "{}", stderr(&resumed));
        assert_eq!(
            stdout(&resumed),
            stdout(&full),
            "the resumed output is identical"
        );
        let log = stderr(&resumed);
        assert!(
            log.contains(&format!("640 tasks ({recorded} from the journal)")),
            "{log}"
        );

        // A journal of another task is refused with a clear message.
        let other = wasmpool_in(
            cache.path(),
            &[
                "map",
                PRIMES,
                "--task",
                "primes_i64",
                "--input",
                input,
                "--journal",
                journal.to_str().unwrap(),
            ],
            "",
        );
        assert_eq!(other.status.code(), Some(2));
        assert!(
            stderr(&other).contains("this journal records task \"primes\""),
            "{}",
            stderr(&other)
        );
    }
}

/// Runs `wasmpool args...` (no stdin) in `cache`, killing it if it takes
/// more than a minute.
fn wasmpool_bounded(cache: &std::path::Path, args: &[&str]) -> Output {
    let run =
        crate::util::wasmpool_watched(cache, args, "", std::time::Duration::from_secs(60), true);
    Output {
        status: run.status,
        stdout: run.stdout,
        stderr: run.stderr.into_bytes(),
    }
}

/// A journaled `map` of `module --task task` over the file `input`, with
/// `-v` and the `extra` flags.
fn journaled(
    cache: &std::path::Path,
    module: &str,
    task: &str,
    input: &std::path::Path,
    journal: &std::path::Path,
    extra: &[&str],
) -> Output {
    let mut args = vec![
        "-v",
        "map",
        module,
        "--task",
        task,
        "--input",
        input.to_str().unwrap(),
        "--journal",
        journal.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    wasmpool_bounded(cache, &args)
}

/// The first `n` lines of `text`, each with its newline.
fn first_lines(text: &str, n: usize) -> String {
    text.split_inclusive('\n').take(n).collect()
}

both_modes! {
    #[test]
    fn journal_refuses_a_resume_with_an_edited_input_line_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let cache = tempfile::tempdir().unwrap();
        let (input, journal) = (dir.path().join("in.jsonl"), dir.path().join("run.journal"));
        // Line 3 is blank, so task 6 is on line 8.
        std::fs::write(&input, "0\n1\n\n2\n3\n4\n5\n6\n7\n8\n9\n").unwrap();
        let first = journaled(cache.path(), SQUARE, "square", &input, &journal, &[]);
        assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
        assert_eq!(stdout(&first).lines().count(), 10);
        let recorded = std::fs::read(&journal).unwrap();

        // The same lines with CRLF endings are the same input.
        std::fs::write(
            &input,
            "0\r\n1\r\n\r\n2\r\n3\r\n4\r\n5\r\n6\r\n7\r\n8\r\n9\r\n",
        )
        .unwrap();
        let crlf = journaled(cache.path(), SQUARE, "square", &input, &journal, &[]);
        assert_eq!(crlf.status.code(), Some(0), "{}", stderr(&crlf));
        assert_eq!(stdout(&crlf), stdout(&first));
        assert!(stderr(&crlf).contains("10 tasks (10 from the journal)"));

        // An edited line is refused by its file and line; everything before it
        // is written, nothing of it or after it.
        std::fs::write(&input, "0\n1\n\n2\n3\n4\n5\n60\n7\n8\n9\n").unwrap();
        let edited = journaled(cache.path(), SQUARE, "square", &input, &journal, &[]);
        assert_eq!(edited.status.code(), Some(2), "{}", stderr(&edited));
        let err = stderr(&edited);
        assert!(
            err.contains("in.jsonl:8: this input line differs from the one journaled for task 6 (")
                && err.contains("run.journal:8); use a new journal, or remove this one to start over"),
            "{err}"
        );
        assert_eq!(stdout(&edited), first_lines(&stdout(&first), 6));
        assert_eq!(
            std::fs::read(&journal).unwrap(),
            recorded,
            "nothing appended"
        );
    }

    #[test]
    fn journal_refuses_a_resume_with_a_shorter_input() {
        let dir = tempfile::tempdir().unwrap();
        let cache = tempfile::tempdir().unwrap();
        let (input, journal) = (dir.path().join("in.jsonl"), dir.path().join("run.journal"));
        std::fs::write(&input, lines(0..20)).unwrap();
        let first = journaled(cache.path(), SQUARE, "square", &input, &journal, &[]);
        assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));

        std::fs::write(&input, lines(0..15)).unwrap();
        let shorter = journaled(cache.path(), SQUARE, "square", &input, &journal, &[]);
        assert_eq!(shorter.status.code(), Some(2), "{}", stderr(&shorter));
        let err = stderr(&shorter);
        assert!(
            err.contains("run.journal:17: this journal holds the result of task 15, but ")
                && err.contains("in.jsonl has only 15 tasks"),
            "{err}"
        );
        assert_eq!(stdout(&shorter), first_lines(&stdout(&first), 15));

        // A longer input is the same input with more to do.
        std::fs::write(&input, lines(0..25)).unwrap();
        let longer = journaled(cache.path(), SQUARE, "square", &input, &journal, &[]);
        assert_eq!(longer.status.code(), Some(0), "{}", stderr(&longer));
        assert!(stdout(&longer).starts_with(&stdout(&first)));
        assert!(stdout(&longer).ends_with("{\"index\":24,\"ok\":576}\n"));
        assert!(stderr(&longer).contains("25 tasks (20 from the journal)"));
    }

    #[test]
    fn journal_refuses_a_tampered_record_naming_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let cache = tempfile::tempdir().unwrap();
        let (input, journal) = (dir.path().join("in.jsonl"), dir.path().join("run.journal"));
        std::fs::write(&input, lines(0..10)).unwrap();
        let first = journaled(cache.path(), SQUARE, "square", &input, &journal, &[]);
        assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));

        let text = std::fs::read_to_string(&journal).unwrap();
        assert_eq!(
            text.matches(r#""line":{"index":4,"ok":16}}"#).count(),
            1,
            "{text}"
        );
        std::fs::write(
            &journal,
            text.replace(
                r#""line":{"index":4,"ok":16}}"#,
                r#""line":{"index":4,"ok":17}}"#,
            ),
        )
        .unwrap();
        let tampered = journaled(cache.path(), SQUARE, "square", &input, &journal, &[]);
        assert_eq!(tampered.status.code(), Some(2), "{}", stderr(&tampered));
        assert!(
            stderr(&tampered)
                .contains("run.journal:6: the record of task 4 does not match its check hash"),
            "{}",
            stderr(&tampered)
        );
        assert_eq!(stdout(&tampered), "");
    }

    #[test]
    fn journal_header_without_its_newline_is_repaired_and_garbage_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let cache = tempfile::tempdir().unwrap();
        let (input, journal) = (dir.path().join("in.jsonl"), dir.path().join("run.journal"));
        std::fs::write(&input, lines(0..10)).unwrap();
        let clean = wasmpool_bounded(
            cache.path(),
            &[
                "map",
                SQUARE,
                "--task",
                "square",
                "--input",
                input.to_str().unwrap(),
            ],
        );
        assert_eq!(clean.status.code(), Some(0), "{}", stderr(&clean));
        let first = journaled(cache.path(), SQUARE, "square", &input, &journal, &[]);
        assert_eq!(stdout(&first), stdout(&clean));
        let full = std::fs::read_to_string(&journal).unwrap();
        let header = full.lines().next().unwrap();
        assert!(header.starts_with(r#"{"wasmpool_journal":2,"#), "{header}");

        // Only the header, without its newline: repaired, and the run goes on.
        std::fs::write(&journal, header).unwrap();
        let repaired = journaled(cache.path(), SQUARE, "square", &input, &journal, &[]);
        assert_eq!(repaired.status.code(), Some(0), "{}", stderr(&repaired));
        assert_eq!(stdout(&repaired), stdout(&clean));
        assert!(stderr(&repaired).contains("10 tasks (0 from the journal)"));
        assert_eq!(std::fs::read_to_string(&journal).unwrap(), full);

        // Four records and a fifth cut short by a kill: resumed.
        let cut: String = first_lines(&full, 5) + &full.lines().nth(5).unwrap()[..30];
        std::fs::write(&journal, &cut).unwrap();
        let resumed = journaled(cache.path(), SQUARE, "square", &input, &journal, &[]);
        assert_eq!(resumed.status.code(), Some(0), "{}", stderr(&resumed));
        assert_eq!(stdout(&resumed), stdout(&clean));
        assert!(stderr(&resumed).contains("10 tasks (4 from the journal)"));
        assert_eq!(std::fs::read_to_string(&journal).unwrap(), full);

        // Anything else is refused by its line, and left as it is.
        for (garbage, at) in [
            (format!("{full}not a record\n"), 12),
            (format!("{full}not a record"), 12),
            (format!("{}{{\"index\":3}}\n", first_lines(&full, 3)), 4),
            ("not a journal\n".to_string(), 1),
        ] {
            std::fs::write(&journal, &garbage).unwrap();
            let refused = journaled(cache.path(), SQUARE, "square", &input, &journal, &[]);
            assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
            assert!(
                stderr(&refused).contains(&format!("run.journal:{at}: ")),
                "{garbage:?}: {}",
                stderr(&refused)
            );
            assert_eq!(stdout(&refused), "");
            assert_eq!(std::fs::read_to_string(&journal).unwrap(), garbage);
        }
    }

    #[test]
    fn journal_of_format_1_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let cache = tempfile::tempdir().unwrap();
        let (input, journal) = (dir.path().join("in.jsonl"), dir.path().join("run.journal"));
        std::fs::write(&input, lines(0..3)).unwrap();
        let old = "{\"wasmpool_journal\":1,\"module_sha256\":\"00\",\"task\":\"square\"}\n\
                   {\"index\":0,\"ok\":0}\n";
        std::fs::write(&journal, old).unwrap();
        let out = journaled(cache.path(), SQUARE, "square", &input, &journal, &[]);
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert!(
            stderr(&out).contains("this journal was written by an older wasmpool")
                && stderr(&out).contains("remove it to start over"),
            "{}",
            stderr(&out)
        );
        assert_eq!(stdout(&out), "");
        assert_eq!(std::fs::read_to_string(&journal).unwrap(), old);
    }

    #[test]
    fn journal_retry_failed_runs_journaled_failures_again() {
        let dir = tempfile::tempdir().unwrap();
        let cache = tempfile::tempdir().unwrap();
        let (input, journal) = (dir.path().join("in.jsonl"), dir.path().join("run.journal"));
        // Counts to its argument: out of fuel under a small --fuel.
        let wat = dir.path().join("count.wat");
        std::fs::write(
            &wat,
            r#"(module (memory (export "memory") 1)
                (func (export "count") (param i64) (result i64) (local i64)
                    (block (loop
                        (br_if 1 (i64.ge_u (local.get 1) (local.get 0)))
                        (local.set 1 (i64.add (local.get 1) (i64.const 1)))
                        (br 0)))
                    local.get 1))"#,
        )
        .unwrap();
        let wat = wat.to_str().unwrap();
        std::fs::write(&input, "1\n1000000\n3\n").unwrap();
        let records = || std::fs::read_to_string(&journal).unwrap().lines().count() - 1;

        let first = journaled(
            cache.path(),
            wat,
            "count",
            &input,
            &journal,
            &["--fuel", "10000"],
        );
        assert_eq!(first.status.code(), Some(1), "{}", stderr(&first));
        let text = stdout(&first);
        let got: Vec<&str> = text.lines().collect();
        assert_eq!(got[0], r#"{"index":0,"ok":1}"#);
        assert!(
            got[1].starts_with(r#"{"index":1,"error":{"kind":"out_of_fuel","#),
            "{text}"
        );
        assert_eq!(got[2], r#"{"index":2,"ok":3}"#);
        assert_eq!(records(), 3);

        // Without --retry-failed the failure is replayed.
        let replayed = journaled(cache.path(), wat, "count", &input, &journal, &[]);
        assert_eq!(replayed.status.code(), Some(1), "{}", stderr(&replayed));
        assert_eq!(stdout(&replayed), stdout(&first));
        assert!(stderr(&replayed).contains("3 tasks (3 from the journal)"));
        assert_eq!(records(), 3);

        // With it, the failed task runs again and its new result is appended.
        let retried = journaled(
            cache.path(),
            wat,
            "count",
            &input,
            &journal,
            &["--retry-failed"],
        );
        assert_eq!(retried.status.code(), Some(0), "{}", stderr(&retried));
        assert_eq!(
            stdout(&retried),
            "{\"index\":0,\"ok\":1}\n{\"index\":1,\"ok\":1000000}\n{\"index\":2,\"ok\":3}\n"
        );
        assert!(stderr(&retried).contains("3 tasks (2 from the journal)"));
        assert_eq!(records(), 4);
        let journal_text = std::fs::read_to_string(&journal).unwrap();
        assert!(
            journal_text.ends_with("\"line\":{\"index\":1,\"ok\":1000000}}\n"),
            "{journal_text}"
        );

        // The newest record of an index counts.
        let again = journaled(cache.path(), wat, "count", &input, &journal, &[]);
        assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
        assert_eq!(stdout(&again), stdout(&retried));
        assert!(stderr(&again).contains("3 tasks (3 from the journal)"));
        assert_eq!(records(), 4);

        // --retry-failed means nothing without a journal.
        let alone = wasmpool_bounded(
            cache.path(),
            &[
                "map",
                wat,
                "--task",
                "count",
                "--input",
                input.to_str().unwrap(),
                "--retry-failed",
            ],
        );
        assert_eq!(alone.status.code(), Some(2));
        assert!(stderr(&alone).contains("--journal"), "{}", stderr(&alone));
    }

    #[test]
    fn journal_replays_output_lines_byte_for_byte() {
        let dir = tempfile::tempdir().unwrap();
        let cache = tempfile::tempdir().unwrap();
        let (input, journal) = (dir.path().join("in.jsonl"), dir.path().join("run.journal"));
        // An ABI task that returns its input as it is.
        let wat = dir.path().join("echo.wat");
        std::fs::write(
            &wat,
            r#"(module
                (import "wasmpool" "input_len" (func $len (result i32)))
                (import "wasmpool" "input_read" (func $read (param i32 i32) (result i32)))
                (import "wasmpool" "output_write" (func $write (param i32 i32)))
                (memory (export "memory") 1)
                (func (export "wasmpool_abi_v1"))
                (func (export "wasmpool_task_echo") (result i32)
                    (drop (call $read (i32.const 0) (call $len)))
                    (call $write (i32.const 0) (call $len))
                    (i32.const 0)))"#,
        )
        .unwrap();
        let wat = wat.to_str().unwrap();
        let mut lines: Vec<u8> = Vec::new();
        lines.extend_from_slice(b"{\"b\": 1,  \"a\":[1.50, \"\\u00e9\", 1e3, -0.0]}\n");
        lines.extend_from_slice("\"tab\\there \u{e9}\"\n".as_bytes());
        lines.extend_from_slice(b"{\"x\":\n");
        lines.extend_from_slice(b"  [ ]  \n");
        // Not UTF-8, so not JSON: an `output` error, journaled as such.
        lines.extend_from_slice(b"\"\xff\"\n");
        std::fs::write(&input, &lines).unwrap();
        let plain = |values: bool| {
            let mut args = vec![
                "map",
                wat,
                "--task",
                "echo",
                "--input",
                input.to_str().unwrap(),
            ];
            if values {
                args.push("--values");
            }
            wasmpool_bounded(cache.path(), &args)
        };
        let (clean, clean_values) = (plain(false), plain(true));
        assert_eq!(clean.status.code(), Some(1), "{}", stderr(&clean));
        // Every result is one compact line; numbers and strings keep their bytes.
        let shown = String::from_utf8(clean.stdout.clone()).unwrap();
        let shown: Vec<&str> = shown.lines().collect();
        assert_eq!(
            shown[..4],
            [
                r#"{"index":0,"ok":{"b":1,"a":[1.50,"\u00e9",1e3,-0.0]}}"#,
                "{\"index\":1,\"ok\":\"tab\\there \u{e9}\"}",
                &format!(
                    r#"{{"index":2,"error":{{"kind":"input","message":"{}:3:5: invalid JSON: EOF while parsing a value","line":3}}}}"#,
                    input.display()
                ),
                r#"{"index":3,"ok":[]}"#,
            ],
            "{shown:#?}"
        );
        assert!(
            shown[4].starts_with(
                r#"{"index":4,"error":{"kind":"output","message":"the task's output is not UTF-8"#
            ),
            "{}",
            shown[4]
        );

        let first = journaled(cache.path(), wat, "echo", &input, &journal, &[]);
        assert_eq!(first.stdout, clean.stdout);
        // Each record holds its output line verbatim.
        let text = String::from_utf8(std::fs::read(&journal).unwrap()).unwrap();
        let out_lines: Vec<&[u8]> = clean.stdout.split(|&b| b == b'\n').collect();
        for (record, line) in text.lines().skip(1).zip(&out_lines) {
            let line = std::str::from_utf8(line).unwrap();
            assert!(record.ends_with(&format!(",\"line\":{line}}}")), "{record}");
        }
        assert_eq!(text.lines().count(), 1 + 5);

        for (extra, expected) in [(&[][..], &clean), (&["--values"][..], &clean_values)] {
            let replayed = journaled(cache.path(), wat, "echo", &input, &journal, extra);
            assert_eq!(replayed.status.code(), Some(1), "{}", stderr(&replayed));
            assert_eq!(replayed.stdout, expected.stdout, "{extra:?}");
            assert!(stderr(&replayed).contains("5 tasks (5 from the journal)"));
        }
    }
}
