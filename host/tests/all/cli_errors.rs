//! The CLI's own error messages, as a user meets them: the cause named
//! once, `help:` lines with what to do, "did you mean" for task names,
//! imports and `--dir`, plain words for exports that are not tasks, and
//! colour only where asked for. Errors found before anything runs are
//! tested once; `--shared-memory` runs in both modes.

use std::process::{Command, Output, Stdio};

use wasmpool_tests::{HELLO, SQUARE};

use crate::cli::wasmpool;
use crate::util::{both_modes, mode_args};

fn stderr(out: &Output) -> String {
    String::from_utf8(out.stderr.clone()).unwrap()
}

/// Runs `wasmpool args...` with no stdin and the environment changes `env`
/// (a `None` value removes the variable), in the current mode.
fn wasmpool_env(args: &[&str], env: &[(&str, Option<&str>)]) -> Output {
    let cache = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wasmpool"));
    cmd.args(mode_args(args))
        .env("WASMPOOL_CACHE_DIR", cache.path())
        .env_remove("NO_COLOR")
        .env_remove("CLICOLOR_FORCE")
        .stdin(Stdio::null());
    for (k, v) in env {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    cmd.output().unwrap()
}

#[test]
fn missing_module_names_its_cause_once_with_a_build_hint() {
    let out = wasmpool(&["map", "/nonexistent/m.wasm", "--task", "x"], "");
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert_eq!(
        err.lines().next().unwrap(),
        "wasmpool: error: /nonexistent/m.wasm: cannot read the module: No such file or directory (os error 2)"
    );
    assert_eq!(err.matches("No such file").count(), 1, "{err}");
    assert!(
        err.contains(
            "  help: a task crate builds its module with `cargo build --release --target wasm32-wasip1` \
             (and `crate-type = [\"cdylib\"]` under [lib] in Cargo.toml), into \
             target/wasm32-wasip1/release/NAME.wasm\n"
        ),
        "{err}"
    );
}

#[test]
fn missing_wasm_under_target_release_points_at_the_wasm32_directory() {
    let dir = tempfile::tempdir().unwrap();
    let built = dir.path().join("target/wasm32-wasip1/release");
    std::fs::create_dir_all(&built).unwrap();
    std::fs::copy(SQUARE, built.join("tasks.wasm")).unwrap();
    let wrong = dir.path().join("target/release/tasks.wasm");
    let out = wasmpool(&["inspect", wrong.to_str().unwrap()], "");
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "  help: did you mean {}?\n",
            built.join("tasks.wasm").display()
        )),
        "{err}"
    );
}

#[test]
fn native_library_and_rlib_get_a_cdylib_hint() {
    let dir = tempfile::tempdir().unwrap();
    // A real native ELF file: the wasmpool binary itself.
    let so = dir.path().join("libtasks.so");
    std::fs::copy(env!("CARGO_BIN_EXE_wasmpool"), &so).unwrap();
    // An ar archive, the format of .rlib and .a files.
    let rlib = dir.path().join("libtasks.rlib");
    std::fs::write(
        &rlib,
        b"!<arch>\nlib.rmeta/      0           0     0     644     4         `\n\0\0\0\0",
    )
    .unwrap();
    for (path, kind) in [
        (
            &so,
            "it is a native ELF file (a shared library such as a .so, or a program), not WebAssembly",
        ),
        (
            &rlib,
            "it is an archive (a Rust .rlib or a static .a library), not WebAssembly",
        ),
    ] {
        let out = wasmpool(&["map", path.to_str().unwrap(), "--task", "x"], "");
        assert_eq!(out.status.code(), Some(2));
        let err = stderr(&out);
        assert!(
            err.starts_with(&format!(
                "wasmpool: error: {}: not a WebAssembly module: {kind}; build the crate as a \
                 `cdylib` (`crate-type = [\"cdylib\"]` under [lib]) with \
                 `cargo build --release --target wasm32-wasip1`, which writes \
                 target/wasm32-wasip1/release/NAME.wasm",
                path.display()
            )),
            "{err}"
        );
    }
}

#[test]
fn misspelled_task_gets_did_you_mean() {
    let out = wasmpool(&["map", SQUARE, "--task", "squar"], "1\n");
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        format!(
            "wasmpool: error: {SQUARE}: no task named \"squar\" (no export wasmpool_task_squar \
             or squar); did you mean \"square\"? its tasks are: square_i64, square\n"
        )
    );
    // Nothing near: no guess, only the list.
    let err = stderr(&wasmpool(&["map", SQUARE, "--task", "cube"], "1\n"));
    assert!(!err.contains("did you mean"), "{err}");
    assert!(err.contains("its tasks are: square_i64, square"), "{err}");
}

#[test]
fn unknown_import_gets_did_you_mean() {
    let dir = tempfile::tempdir().unwrap();
    let wat = dir.path().join("typo.wat");
    std::fs::write(
        &wat,
        r#"(module (import "wasmpool" "queue_gett" (func (param i32) (result i32)))
                   (memory (export "memory") 1)
                   (func (export "wasmpool_abi_v1"))
                   (func (export "wasmpool_task_t") (result i32) i32.const 0))"#,
    )
    .unwrap();
    let wat = wat.to_str().unwrap();
    let out = wasmpool(&["map", wat, "--task", "t"], "1\n");
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.starts_with(&format!(
            "wasmpool: error: {wat}: unknown import wasmpool::queue_gett: (type (func (param i32) \
             (result i32))); did you mean wasmpool::queue_get? this host (ABI version 1) provides \
             input_len, "
        )),
        "{err}"
    );
    let out = wasmpool(&["inspect", wat], "");
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("abi: unusable: unknown import wasmpool::queue_gett: (type (func (param i32) (result i32))); did you mean wasmpool::queue_get?"),
        "{text}"
    );
}

#[test]
fn task_flag_on_an_export_that_is_not_a_task_says_what_it_is() {
    let cases: &[(&str, &str, &str)] = &[
        (
            SQUARE,
            "wasmpool_abi_v1",
            "wasmpool_abi_v1 is the module's wasmpool ABI version marker, not a task; its tasks are: square_i64, square",
        ),
        (
            SQUARE,
            "wasmpool_task_square",
            "wasmpool_task_square is the export of task \"square\"; ask for the task by its name, square",
        ),
        (
            SQUARE,
            "memory",
            "export memory is a memory, not a function, so it cannot run as a task; its tasks are: square_i64, square",
        ),
        (
            HELLO,
            "_start",
            "_start is a WASI command's entry point (run the command with `wasmpool run`, or a ProcessGroup), not a task; it has no tasks",
        ),
        (
            HELLO,
            "__main_void",
            "__main_void is the language runtime's `main`, which `_start` calls (run the command with `wasmpool run`, or a ProcessGroup), not a task; it has no tasks",
        ),
    ];
    for (module, task, message) in cases {
        let out = wasmpool(&["map", module, "--task", task], "1\n");
        assert_eq!(out.status.code(), Some(2), "{task}");
        assert_eq!(
            stderr(&out),
            format!("wasmpool: error: {module}: {message}\n")
        );
    }
}

#[test]
fn dir_with_one_colon_suggests_two() {
    let out = wasmpool(&["run", HELLO, "--dir", "/nonexistent-data:/data:ro"], "");
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains(
            "\"/nonexistent-data:/data:ro\": no directory \"/nonexistent-data:/data\"; did you \
             mean /nonexistent-data::/data:ro? (HOST::GUEST takes two colons)"
        ),
        "{err}"
    );
}

both_modes! {
    #[test]
    fn shared_memory_is_whole_pages_rounded_up_with_a_warning() {
        let out = wasmpool_env(&["run", HELLO, "--shared-memory", "1"], &[]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        assert!(
            stderr(&out).contains(
                "wasmpool: warning: --shared-memory 1: a shared region is a whole number of \
                 64KiB pages; using 64KiB\n"
            ),
            "{}",
            stderr(&out)
        );
        let out = wasmpool_env(&["run", HELLO, "--shared-memory", "64KiB"], &[]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        assert!(!stderr(&out).contains("warning"), "{}", stderr(&out));
        let out = wasmpool_env(&["map", SQUARE, "--task", "square", "--shared-memory", "0"], &[]);
        assert_eq!(out.status.code(), Some(2));
        assert!(
            stderr(&out).contains("a shared region must have at least one 64KiB page"),
            "{}",
            stderr(&out)
        );
    }
}

#[test]
fn inspect_lists_tasks_and_says_command_but_not_the_machinery() {
    let out = wasmpool(&["inspect", HELLO], "");
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    let tasks = text
        .split("tasks:\n")
        .nth(1)
        .and_then(|rest| rest.split("imports:\n").next())
        .unwrap();
    assert_eq!(tasks, "  (none)\n", "{text}");
    assert!(text.contains("\nabi: none\n"), "{text}");
    assert!(
        text.contains("\ncommand: yes (_start; run it with `wasmpool run`)\n"),
        "{text}"
    );
    let out = wasmpool(&["inspect", SQUARE], "");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("tasks:\n  square_i64: (i64) -> i64\n  square: json -> json (export wasmpool_task_square)\nimports:\n"),
        "{text}"
    );
    assert!(!text.contains("command:"), "{text}");
}

#[test]
fn colour_only_when_forced_and_never_with_no_color() {
    let args = ["inspect", "/nonexistent/m.wasm"];
    // Piped stderr: plain.
    let plain = stderr(&wasmpool_env(&args, &[]));
    assert!(plain.starts_with("wasmpool: error: "), "{plain}");
    assert!(!plain.contains('\x1b'), "{plain:?}");
    let forced = stderr(&wasmpool_env(&args, &[("CLICOLOR_FORCE", Some("1"))]));
    assert!(
        forced.starts_with("wasmpool: \x1b[1;31merror:\x1b[0m /nonexistent/m.wasm"),
        "{forced:?}"
    );
    assert!(forced.contains("  \x1b[1;36mhelp:\x1b[0m "), "{forced:?}");
    let no_color = stderr(&wasmpool_env(
        &args,
        &[("CLICOLOR_FORCE", Some("1")), ("NO_COLOR", Some("1"))],
    ));
    assert_eq!(no_color, plain);
}

/// A journal that is not a regular file is refused before anything runs
/// (`/dev/stdout` on a pipe made the run wait for good, reading its own
/// output; `/dev/null` failed with a bare "Invalid argument"), and so is
/// `--output` naming the journal (the results replaced it).
#[test]
fn a_journal_must_be_a_file_of_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let fifo = fifo.to_str().unwrap();
    let out = wasmpool(
        &[
            "map",
            SQUARE,
            "--task",
            "square",
            "--range",
            "0..3",
            "--journal",
            fifo,
        ],
        "",
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("is not a regular file; --journal needs one"),
        "{}",
        stderr(&out)
    );

    let journal = dir.path().join("j.jsonl");
    let (j, o) = (
        journal.to_str().unwrap(),
        format!("{}/./j.jsonl", dir.path().display()),
    );
    let out = wasmpool(
        &[
            "map",
            SQUARE,
            "--task",
            "square",
            "--range",
            "0..3",
            "--journal",
            j,
            "-o",
            &o,
        ],
        "",
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("--output and --journal name the same file"),
        "{}",
        stderr(&out)
    );
    let kept = std::fs::read_to_string(&journal).unwrap();
    assert!(
        kept.starts_with("{\"wasmpool_journal\""),
        "still a journal: {kept}"
    );
}
