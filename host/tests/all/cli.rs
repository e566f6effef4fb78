//! The real `wasmpool` binary: output format, ordering, exit codes, errors.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use wasmpool_tests::{MANDELBROT, PRIMES, SQUARE, TESTGUEST};

/// Runs `wasmpool args...` with `stdin`, in a private cache directory.
fn wasmpool(args: &[&str], stdin: &str) -> Output {
    let cache = tempfile::tempdir().unwrap();
    wasmpool_in(cache.path(), args, stdin)
}

fn wasmpool_in(cache: &std::path::Path, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_wasmpool"))
        .args(args)
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
            r#"{"index":1,"error":{"kind":"input","message":"<stdin>:3: invalid JSON: "#
        ),
        "blank lines are skipped but counted in line numbers: {}",
        got[1]
    );
    assert_eq!(got[2], r#"{"index":2,"ok":9}"#);
    assert!(
        stderr(&out).contains("1 of 3 tasks failed"),
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
        stderr(&out).contains("<stdin>: task 1: guest: 10 is a multiple of ten"),
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
            "wasmpool: {}: not a WebAssembly module: it does not start with the \\0asm magic number, and it is not text (WAT)",
            path.display()
        )
    );
}

#[test]
fn missing_module_and_missing_input_are_usage_errors() {
    let out = wasmpool(&["map", "/nonexistent/m.wasm", "--task", "x"], "");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).starts_with("wasmpool: /nonexistent/m.wasm: No such file"),
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
        stderr(&out).starts_with("wasmpool: /nonexistent/in.jsonl: cannot open the input"),
        "{}",
        stderr(&out)
    );
}

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
    assert!(stderr(&out).contains("no input lines"), "{}", stderr(&out));
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
    let out = wasmpool(&["run", wasmpool_tests::HELLO, "--", "--exit=3"], "");
    assert_eq!(out.status.code(), Some(3));
    assert!(
        stderr(&out).contains("guest called proc_exit(3)"),
        "{}",
        stderr(&out)
    );
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

#[test]
fn fail_fast_stops_at_the_first_failure_and_keeps_what_came_before() {
    let out = wasmpool(
        &["map", TESTGUEST, "--task", "fail_on_tens", "--fail-fast"],
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
        .args([
            "map",
            PRIMES,
            "--task",
            "primes",
            "--input",
            input,
            "-j",
            "2",
            "--journal",
        ])
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
