//! `wasmpool map`'s inputs and outputs through the real binary: `--raw`,
//! `--raw-output`, `--input-array`, `--range`, `--output`; input errors
//! naming `file:line` (in the message, in a `line` field, under `--values`);
//! numbers that do not fit; the hint on a terminal; `--journal` with every
//! input source.

use std::path::{Path, PathBuf};
use std::process::Output;

use wasmpool_tests::{SQUARE, TESTGUEST};

use crate::cli::wasmpool;
use crate::util::both_modes;

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8(out.stderr.clone()).unwrap()
}

/// The output lines as JSON values.
fn json_lines(out: &Output) -> Vec<serde_json::Value> {
    stdout(out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// The files in `dir`, sorted.
fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

both_modes! {
    #[test]
    fn raw_lines_in_and_raw_strings_out() {
        let text = "hello world\n\n\"quoted\" \\ été\r\nlast";
        let out = wasmpool(&["map", TESTGUEST, "--task", "shout", "--raw"], text);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        assert_eq!(
            stdout(&out),
            concat!(
                r#"{"index":0,"ok":"HELLO WORLD (11)"}"#, "\n",
                r#"{"index":1,"ok":" (0)"}"#, "\n",
                r#"{"index":2,"ok":"\"QUOTED\" \\ ÉTÉ (14)"}"#, "\n",
                r#"{"index":3,"ok":"LAST (4)"}"#, "\n",
            ),
            "every line (a blank one too) is one JSON string, without its line ending"
        );
        let out = wasmpool(&["map", TESTGUEST, "--task", "shout", "-R", "-r"], text);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        assert_eq!(stdout(&out), "HELLO WORLD (11)\n (0)\n\"QUOTED\" \\ ÉTÉ (14)\nLAST (4)\n");
        // -r prints other values as JSON, as jq -r does.
        let out = wasmpool(&["map", SQUARE, "--task", "square", "-r"], "3\n");
        assert_eq!(stdout(&out), "9\n");
    }

    #[test]
    fn raw_line_that_is_not_utf8_fails_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("latin1.txt");
        std::fs::write(&path, b"ok\ncaf\xe9\nfine\n").unwrap();
        let out = wasmpool(&["map", TESTGUEST, "--task", "shout", "-R", "-i", s(&path)], "");
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        let got = json_lines(&out);
        assert_eq!(got[0]["ok"], "OK (2)");
        assert_eq!(got[1]["error"]["kind"], "input");
        assert_eq!(got[1]["error"]["line"], 2);
        let message = got[1]["error"]["message"].as_str().unwrap();
        assert_eq!(
            message,
            format!("{}:2: the line is not UTF-8 text (byte 4 is not), so it cannot be a JSON string", path.display())
        );
        assert_eq!(got[2]["ok"], "FINE (4)");
    }

    #[test]
    fn plain_text_without_raw_fails_with_a_hint_to_use_it() {
        let out = wasmpool(&["map", TESTGUEST, "--task", "shout"], "\"json\"\nplain text\n");
        assert_eq!(out.status.code(), Some(1));
        let got = json_lines(&out);
        assert_eq!(got[0]["ok"], "JSON (4)");
        assert_eq!(
            got[1]["error"],
            serde_json::json!({
                "kind": "input",
                "message": "<stdin>:2:1: invalid JSON: expected value; if the input is plain text, \
                            pass --raw (-R) to give each line to the task as a JSON string",
                "line": 2,
            })
        );
        // A pretty-printed array given as lines says where to go instead.
        let out = wasmpool(&["map", SQUARE, "--task", "square"], "[\n  1\n]\n");
        let got = json_lines(&out);
        let message = got[0]["error"]["message"].as_str().unwrap();
        assert!(message.contains("read it with --input-array FILE"), "{message}");
    }

    #[test]
    fn input_array_streams_its_elements_pretty_printed_or_not() {
        let dir = tempfile::tempdir().unwrap();
        let pretty = write(
            dir.path(),
            "points.json",
            "[\n  {\"x\": 3, \"y\": 4},\n  {\n    \"x\": 6,\n    \"y\": 8\n  },\n  {\"x\": 1}, {\"y\": 0, \"x\": 0}\n]\n",
        );
        let out = wasmpool(
            &["map", TESTGUEST, "--task", "norm", "--input-array", s(&pretty)],
            "",
        );
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        let got = json_lines(&out);
        assert_eq!(got.len(), 4, "{}", stdout(&out));
        assert_eq!(got[0], serde_json::json!({"index": 0, "ok": 5.0}));
        assert_eq!(got[1], serde_json::json!({"index": 1, "ok": 10.0}));
        // serde's position inside the element becomes the file's: the
        // element starts on line 7 at column 3, and serde points at its 8th byte.
        assert_eq!(
            got[2]["error"],
            serde_json::json!({
                "kind": "input",
                "message": format!(
                    "{}:7:10: input does not match the task's parameters: missing field `y`",
                    pretty.display()
                ),
                "line": 7,
            })
        );
        assert_eq!(got[3], serde_json::json!({"index": 3, "ok": 0.0}), "the rest still runs");
        // One line, from stdin, numbers and arrays for a task of two parameters.
        let out = wasmpool(
            &["map", TESTGUEST, "--task", "add", "--input-array", "-"],
            "[[1,2],[30, 40] ,[-5,5]]",
        );
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let values: Vec<i64> = json_lines(&out)
            .iter()
            .map(|v| v["ok"].as_i64().unwrap())
            .collect();
        assert_eq!(values, [3, 70, 0]);
        // An element that is not JSON fails alone, and is not taken for text.
        let out = wasmpool(
            &["map", SQUARE, "--task", "square", "--input-array", "-"],
            "[1, oops, 3]",
        );
        let got = json_lines(&out);
        assert_eq!(
            got[1]["error"],
            serde_json::json!({
                "kind": "input",
                "message": "<stdin>:1:5: invalid JSON: expected value",
                "line": 1,
            })
        );
        assert_eq!(got[2]["ok"], 9);
        let out = wasmpool(&["map", SQUARE, "--task", "square", "--input-array", "-"], " [ ] ");
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        assert_eq!(stdout(&out), "");
    }

    #[test]
    fn broken_input_array_stops_after_the_elements_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let broken = write(dir.path(), "broken.json", "[1,\n 2 3, 4]");
        let out = wasmpool(
            &["map", SQUARE, "--task", "square", "--input-array", s(&broken), "--values"],
            "",
        );
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert_eq!(stdout(&out), "1\n", "the elements before the break are written");
        assert!(
            stderr(&out).contains(&format!(
                "{}:2:4: expected `,` or `]` after the element that starts at line 2 column 2",
                broken.display()
            )),
            "{}",
            stderr(&out)
        );
        let lines = write(dir.path(), "lines.jsonl", "1\n2\n");
        let out = wasmpool(&["map", SQUARE, "--task", "square", "--input-array", s(&lines)], "");
        assert_eq!(out.status.code(), Some(2));
        assert!(
            stderr(&out).contains("expected `[`: the file is not a JSON array; for one JSON value per line, use --input instead"),
            "{}",
            stderr(&out)
        );
    }

    #[test]
    fn range_runs_the_integers_half_open() {
        let out = wasmpool(&["map", SQUARE, "--task", "square_i64", "--range", "-2..3", "--values"], "");
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        assert_eq!(stdout(&out), "4\n1\n0\n1\n4\n");
        let out = wasmpool(&["map", SQUARE, "--task", "square", "--range=1..=3", "--values"], "");
        assert_eq!(stdout(&out), "1\n4\n9\n");
        let out = wasmpool(&["map", SQUARE, "--task", "square", "--range", "5..5"], "");
        assert_eq!(out.status.code(), Some(0));
        assert!(stderr(&out).contains("--range 5..5 is empty, so no tasks ran"), "{}", stderr(&out));
        // A value the task refuses names its position in the range; serde's
        // position inside the number text is dropped.
        let out = wasmpool(&["map", TESTGUEST, "--task", "fail_on_tens", "--range", "-1..2"], "");
        assert_eq!(out.status.code(), Some(1));
        let got = json_lines(&out);
        assert_eq!(
            got[0]["error"],
            serde_json::json!({
                "kind": "input",
                "message": "<range -1..2>:1: input does not match the task's parameters: \
                            invalid value: integer `-1`, expected u64",
                "line": 1,
            })
        );
        assert_eq!(got[1]["error"]["message"], "0 is a multiple of ten");
        assert_eq!(got[2]["ok"], 2);
    }

    #[test]
    fn input_errors_name_file_and_line_also_under_values() {
        let dir = tempfile::tempdir().unwrap();
        let input = write(dir.path(), "in.jsonl", "{\"x\":3,\"y\":4}\n\n  {\"x\":1}\n{oops\n");
        let out = wasmpool(&["map", TESTGUEST, "--task", "norm", "-i", s(&input)], "");
        assert_eq!(out.status.code(), Some(1));
        let got = json_lines(&out);
        let name = input.display();
        assert_eq!(got[0]["ok"], 5.0);
        assert_eq!(
            got[1]["error"],
            serde_json::json!({
                "kind": "input",
                "message": format!("{name}:3:9: input does not match the task's parameters: missing field `y`"),
                "line": 3,
            }),
            "the guest's serde error is located in the file: line 3, column 9 (after two spaces)"
        );
        assert_eq!(
            got[2]["error"]["message"],
            format!("{name}:4:2: invalid JSON: key must be a string")
        );
        assert_eq!(got[2]["error"]["line"], 4);
        let out = wasmpool(&["map", TESTGUEST, "--task", "norm", "-i", s(&input), "--values"], "");
        assert_eq!(stdout(&out), "5.0\n");
        let err = stderr(&out);
        assert!(
            err.contains(&format!(
                "wasmpool: {name}:3:9: task 1: input: input does not match the task's parameters: missing field `y`\n"
            )),
            "{err}"
        );
        assert!(err.contains(&format!("wasmpool: {name}:4:2: task 2: input: invalid JSON: key must be a string\n")), "{err}");
        // A failure of another kind names the input's line too, and its
        // error object has no `line` (only input errors carry one).
        let out = wasmpool(&["map", TESTGUEST, "--task", "fail_on_tens", "--values"], "9\n\n10\n");
        assert!(stderr(&out).contains("wasmpool: <stdin>:3: task 1: guest: 10 is a multiple of ten\n"), "{}", stderr(&out));
        let out = wasmpool(&["map", TESTGUEST, "--task", "fail_on_tens"], "10\n");
        assert_eq!(stdout(&out), "{\"index\":0,\"error\":{\"kind\":\"guest\",\"message\":\"10 is a multiple of ten\"}}\n");
    }

    #[test]
    fn output_file_is_written_whole_or_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.jsonl");
        let out = wasmpool(&["map", SQUARE, "--task", "square", "-o", s(&target)], "1\n2\nx\n");
        assert_eq!(out.status.code(), Some(1), "task failures still write the results");
        assert_eq!(stdout(&out), "", "the results go to the file, not stdout");
        let written = std::fs::read_to_string(&target).unwrap();
        let lines: Vec<&str> = written.lines().collect();
        assert_eq!(lines[..2], [r#"{"index":0,"ok":1}"#, r#"{"index":1,"ok":4}"#]);
        assert!(lines[2].contains(r#""kind":"input""#), "{written}");
        assert_eq!(files_in(dir.path()), ["out.jsonl"]);
        // A run that fails before it writes anything (no such task) leaves
        // the old file as it was, and no temporary file.
        std::fs::write(&target, "old\n").unwrap();
        let out = wasmpool(&["map", SQUARE, "--task", "cube", "-o", s(&target)], "1\n");
        assert_eq!(out.status.code(), Some(2));
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "old\n");
        assert_eq!(files_in(dir.path()), ["out.jsonl"]);
        // One that fails halfway (a broken array after some results)
        // neither: no partial file in place of the old one.
        let broken = write(dir.path(), "in.json", "[1, 2, 3 4]");
        let out = wasmpool(
            &["map", SQUARE, "--task", "square", "--input-array", s(&broken), "-o", s(&target)],
            "",
        );
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "old\n");
        assert_eq!(files_in(dir.path()), ["in.json", "out.jsonl"]);
        // Nor when nothing existed: no file at all.
        let fresh = dir.path().join("fresh.txt");
        let out = wasmpool(
            &["map", SQUARE, "--task", "square", "--input-array", s(&broken), "-o", s(&fresh), "-r"],
            "",
        );
        assert_eq!(out.status.code(), Some(2));
        assert!(!fresh.exists());
        let out = wasmpool(&["map", SQUARE, "--task", "square", "-o", s(&fresh), "-r", "--range", "0..4"], "");
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        assert_eq!(std::fs::read_to_string(&fresh).unwrap(), "0\n1\n4\n9\n");
        // The input is read from the file as it was, so -o may name it.
        let same = write(dir.path(), "same.txt", "2\n3\n");
        let out = wasmpool(&["map", SQUARE, "--task", "square", "-i", s(&same), "-o", s(&same), "-r"], "");
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        assert_eq!(std::fs::read_to_string(&same).unwrap(), "4\n9\n");
    }

    #[test]
    fn numbers_that_do_not_fit_a_parameter_are_input_errors() {
        let dir = tempfile::tempdir().unwrap();
        let wat = write(
            dir.path(),
            "twice.wat",
            r#"(module
                 (func (export "twice") (param i32) (result i32) local.get 0 i32.const 2 i32.mul)
                 (func (export "pair") (param i64 i32) (result i64) local.get 0))"#,
        );
        let inputs = "21\n4294967295\n4294967296\n-2147483649\n1e3\n1000.0\n1.5\n[7]\n";
        let out = wasmpool(&["map", s(&wat), "--task", "twice"], inputs);
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        let got = json_lines(&out);
        let name = "<stdin>";
        let error = |i: usize| got[i]["error"]["message"].as_str().unwrap().to_string();
        assert_eq!(got[0]["ok"], 42);
        assert_eq!(got[1]["ok"], -2, "u32::MAX is -1 as an i32, doubled");
        assert_eq!(
            error(2),
            format!(
                "{name}:3: 4294967296 is out of range for the i32 parameter, which takes \
                 -2147483648 to 4294967295 (values above 2147483647 are passed as the unsigned \
                 number with the same bits)"
            )
        );
        assert!(error(3).starts_with(&format!("{name}:4: -2147483649 is out of range")));
        for (i, line) in [(4, 5), (5, 6)] {
            assert_eq!(
                error(i),
                format!(
                    "{name}:{line}: the i32 parameter takes an integer, and 1000.0 is a \
                     floating-point number (written with a fraction or an exponent, such as 1e3 \
                     or 1000.0): write it as 1000"
                )
            );
            assert_eq!(got[i]["error"]["line"], line);
        }
        assert_eq!(error(6), format!("{name}:7: the i32 parameter takes an integer, and 1.5 is not one"));
        assert_eq!(got[7]["ok"], 14);
        // An SDK task's integer refuses 1e3 alike (serde's rule, in the guest).
        let out = wasmpool(&["map", TESTGUEST, "--task", "fail_on_tens"], "1e3\n");
        let got = json_lines(&out);
        assert_eq!(
            got[0]["error"]["message"],
            "<stdin>:1:3: input does not match the task's parameters: \
             invalid type: floating point `1000.0`, expected u64"
        );
        // The same rule inside an array, for parameter 2.
        let out = wasmpool(&["map", s(&wat), "--task", "pair"], "[1, 2]\n[1, 2e0]\n[1, 4294967296]\n");
        let got = json_lines(&out);
        assert_eq!(got[0]["ok"], 1);
        let message = got[1]["error"]["message"].as_str().unwrap();
        assert!(message.starts_with("<stdin>:2: parameter 2 (i32) takes an integer, and 2.0 is"), "{message}");
        let message = got[2]["error"]["message"].as_str().unwrap();
        assert!(message.starts_with("<stdin>:3: 4294967296 is out of range for parameter 2 (i32)"), "{message}");
    }

    #[test]
    fn journal_resumes_raw_range_and_array_inputs() {
        let dir = tempfile::tempdir().unwrap();
        let array = write(dir.path(), "in.json", "[\n  {\"x\": 3, \"y\": 4},\n  {\"x\": 1}\n]\n");
        let text = write(dir.path(), "in.txt", "one\n\ntwo\n");
        let runs: [(&str, Vec<&str>); 3] = [
            ("norm", vec!["--input-array", s(&array)]),
            ("shout", vec!["-R", "-i", s(&text)]),
            ("fail_on_tens", vec!["--range", "8..12"]),
        ];
        for (task, input) in runs {
            let journal = dir.path().join(format!("{task}.journal"));
            let mut args = vec!["map", TESTGUEST, "--task", task, "--journal", s(&journal)];
            args.extend(&input);
            let first = wasmpool(&args, "");
            let recorded = std::fs::read_to_string(&journal).unwrap();
            assert!(recorded.lines().count() > 2, "{task}: {recorded}");
            let again = wasmpool(&args, "");
            assert_eq!(stdout(&again), stdout(&first), "{task}");
            assert_eq!(again.status.code(), first.status.code(), "{task}");
            assert_eq!(
                std::fs::read_to_string(&journal).unwrap(),
                recorded,
                "{task}: the rerun replays every result and runs nothing"
            );
            args.push("-r");
            let values = wasmpool(&args, "");
            assert_eq!(std::fs::read_to_string(&journal).unwrap(), recorded, "{task}");
            assert!(!stdout(&values).contains("{\"index\""), "{task}: {}", stdout(&values));
        }
        // The journal binds to the task's input, whichever way it was read:
        // `"one"` as a JSON line is `one` under --raw.
        let journal = dir.path().join("shout.journal");
        let json = wasmpool(
            &["map", TESTGUEST, "--task", "shout", "--journal", s(&journal)],
            "\"one\"\n\"\"\n\"two\"\n",
        );
        assert_eq!(json.status.code(), Some(0), "{}", stderr(&json));
        let raw = wasmpool(
            &["map", TESTGUEST, "--task", "shout", "-R", "--journal", s(&journal)],
            "one\n\nthree\n",
        );
        assert_eq!(raw.status.code(), Some(2));
        assert!(
            stderr(&raw).contains("<stdin>:3: this input line differs from the one journaled for task 2"),
            "{}",
            stderr(&raw)
        );
        assert_eq!(stdout(&raw), concat!(
            r#"{"index":0,"ok":"ONE (3)"}"#, "\n", r#"{"index":1,"ok":" (0)"}"#, "\n"
        ));
    }
}

/// `-o` naming what a renamed file cannot replace (a FIFO here; `/dev/null`
/// and `/dev/stdout` alike) writes to it directly, and a symlink is written
/// through: a rename over them once replaced `/dev/null` with a file.
#[test]
fn output_to_a_fifo_or_a_symlink_keeps_it_what_it_is() {
    use std::os::unix::fs::FileTypeExt;
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read_to_string(fifo).unwrap())
    };
    let out = wasmpool(
        &[
            "map",
            SQUARE,
            "--task",
            "square",
            "-r",
            "--range",
            "1..4",
            "-o",
            s(&fifo),
        ],
        "",
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // Checked before the join: a FIFO renamed away would leave the reader
    // waiting for good.
    assert!(
        std::fs::symlink_metadata(&fifo)
            .unwrap()
            .file_type()
            .is_fifo()
    );
    assert_eq!(reader.join().unwrap(), "1\n4\n9\n");
    assert_eq!(
        files_in(dir.path()),
        ["fifo"],
        "no temporary file beside it"
    );

    let real = write(dir.path(), "real.txt", "old\n");
    let link = dir.path().join("link.txt");
    std::os::unix::fs::symlink("real.txt", &link).unwrap();
    let out = wasmpool(
        &[
            "map",
            SQUARE,
            "--task",
            "square",
            "-r",
            "--range",
            "2..4",
            "-o",
            s(&link),
        ],
        "",
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(std::fs::read_to_string(&real).unwrap(), "4\n9\n");
    assert_eq!(files_in(dir.path()), ["fifo", "link.txt", "real.txt"]);
}

#[test]
fn input_sources_exclude_each_other() {
    for args in [
        &["--raw", "--range", "0..3"][..],
        &["--input", "x", "--input-array", "y"],
        &["--range", "0..3", "--input", "x"],
    ] {
        let mut all = vec!["map", SQUARE, "--task", "square"];
        all.extend(args);
        let out = wasmpool(&all, "");
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(
            stderr(&out).contains("cannot be used with"),
            "{}",
            stderr(&out)
        );
    }
    let out = wasmpool(&["map", SQUARE, "--task", "square", "--range", "10..1"], "");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("the end comes before the start"),
        "{}",
        stderr(&out)
    );
}

/// Runs `wasmpool args...` with a pseudo-terminal as stdin, types `typed`
/// at it, and returns its exit status, stdout and stderr (both pipes).
fn on_terminal(args: &[&str], typed: &[u8]) -> (bool, String, String) {
    use std::io::{Read, Write};
    use std::os::fd::FromRawFd;
    let (mut master, mut slave) = (-1, -1);
    // SAFETY: openpty writes two new descriptors to the pointers given;
    // name, termios and winsize may be null.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors are new and owned here alone.
    let (mut master, slave) = unsafe {
        (
            std::fs::File::from_raw_fd(master),
            std::fs::File::from_raw_fd(slave),
        )
    };
    let cache = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_wasmpool"))
        .args(args)
        .env("WASMPOOL_CACHE_DIR", cache.path())
        .stdin(slave)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    master.write_all(typed).unwrap();
    let mut err = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        err.read_to_string(&mut text).unwrap();
        text
    });
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let ok = child.wait().unwrap().success();
    (ok, out, reader.join().unwrap())
}

/// A terminal on stdin: `map` says it reads from there, rather than wait
/// silently; what is typed runs, and Ctrl-D (the terminal's EOF) ends the
/// input.
#[test]
fn terminal_on_stdin_gets_a_hint() {
    let (ok, out, err) = on_terminal(&["map", SQUARE, "--task", "square"], b"3\n\x04");
    assert!(ok, "{err}");
    assert_eq!(out, "{\"index\":0,\"ok\":9}\n");
    assert!(
        err.contains(
            "wasmpool: reading inputs from the terminal, one per line; end with Ctrl-D, or pass --input FILE"
        ),
        "{err}"
    );
    let args = [
        "map",
        SQUARE,
        "--task",
        "square",
        "--input-array",
        "-",
        "-r",
    ];
    let (ok, out, err) = on_terminal(&args, b"[2,\n 3]\n\x04");
    assert!(ok, "{err}");
    assert_eq!(out, "4\n9\n");
    assert!(
        err.contains("wasmpool: reading a JSON array from the terminal; end with Ctrl-D, or pass --input-array FILE"),
        "{err}"
    );
    // Not on a pipe.
    let out = wasmpool(&["map", SQUARE, "--task", "square"], "");
    assert!(!stderr(&out).contains("terminal"), "{}", stderr(&out));
}
