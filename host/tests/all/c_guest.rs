//! C guests: `guest-sdk/c/wasmpool.h`, the examples in `examples/c/` and the
//! header's ABI twin `tests/c/abi_all_imports.c`, compiled at test time with
//! clang's `wasm32-wasi` target, then run through the library and the real
//! binary.
//!
//! Without clang, lld, wasi-libc or the wasm32 compiler builtins these tests
//! print what is missing and how to install it, and skip; with the
//! environment variable `CI` set (as `.ci/run` does) they fail instead.
//! `CLANG` names another clang to use.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::{Value, json};
use wasmpool::{ModuleInfo, Stdio, TaskErrorKind};

use crate::cli::wasmpool;
use crate::util::{both_modes, group_builder, in_ci, pool_builder};

/// The packages that give clang its `wasm32-wasi` target on Debian 12.
const APT_PACKAGES: &str = "clang lld wasi-libc libclang-rt-14-dev-wasm32";

/// The C guests, compiled.
struct CGuests {
    /// `examples/c/tasks.c`: tasks `collatz`, `shout`, `collatz_steps`.
    tasks: String,
    /// `examples/c/producer_consumer.c`: a WASI command sharing queue `items`.
    producer_consumer: String,
    /// `tests/c/abi_all_imports.c`: calls every import of the header.
    all_imports: String,
    /// `tests/c/freestanding.c`: the header without a C library.
    freestanding: String,
}

/// The repository's root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn clang() -> String {
    std::env::var("CLANG").unwrap_or_else(|_| "clang".into())
}

/// How a compile went: the exit status and stderr, or why clang did not run.
fn run_clang(args: &[&str]) -> Result<(bool, String), String> {
    let clang = clang();
    let out = Command::new(&clang)
        .args(args)
        .output()
        .map_err(|e| format!("`{clang}` cannot be run ({e})"))?;
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    Ok((out.status.success(), text))
}

/// Checks each piece of the toolchain in turn, naming the first that is
/// missing and the package that has it.
fn check_toolchain(scratch: &Path) -> Result<(), String> {
    let clang = clang();
    let (ok, version) = run_clang(&["--version"])
        .map_err(|e| format!("clang is missing (package `clang`): {e}"))?;
    if !ok {
        return Err(format!("`{clang} --version` failed: {version}"));
    }
    let (_, builtins) = run_clang(&["--target=wasm32-wasi", "-print-libgcc-file-name"])?;
    let builtins = builtins.trim();
    if !Path::new(builtins).is_file() {
        return Err(format!(
            "clang's wasm32 compiler builtins ({builtins}) are missing \
             (package `libclang-rt-14-dev-wasm32`, for clang 14)"
        ));
    }
    let probe = scratch.join("probe.c");
    std::fs::write(
        &probe,
        "#include <stdlib.h>\nint main(void) { return abs(0); }\n",
    )
    .unwrap();
    let probe = probe.to_str().unwrap();
    let (ok, errors) = run_clang(&["--target=wasm32-wasi", "-fsyntax-only", probe])?;
    if !ok {
        return Err(format!(
            "the WASI sysroot's headers are missing (package `wasi-libc`): {}",
            errors.trim()
        ));
    }
    let wasm = scratch.join("probe.wasm");
    let (ok, errors) = run_clang(&["--target=wasm32-wasi", probe, "-o", wasm.to_str().unwrap()])?;
    if !ok {
        let missing = if errors.contains("wasm-ld") {
            "the linker wasm-ld is missing (package `lld`)"
        } else {
            "clang cannot link a wasm32-wasi program"
        };
        return Err(format!("{missing}: {}", errors.trim()));
    }
    Ok(())
}

/// A task module: a WASI reactor.
const REACTOR: &[&str] = &["--target=wasm32-wasi", "-mexec-model=reactor"];
/// A WASI command (`main`).
const COMMAND: &[&str] = &["--target=wasm32-wasi"];
/// A module without a C library.
const FREESTANDING: &[&str] = &[
    "--target=wasm32-unknown-unknown",
    "-nostdlib",
    "-Wl,--no-entry",
    "-DWASMPOOL_NO_LIBC",
];

/// Compiles `source` (relative to the root) into `dir` with `flags`, warnings
/// as errors. Written under a private name, then renamed, so that test
/// binaries running at once never read a half-written module.
fn compile(dir: &Path, source: &str, flags: &[&str]) -> String {
    let root = root();
    let stem = Path::new(source).file_stem().unwrap().to_str().unwrap();
    let out = dir.join(format!("{stem}.wasm"));
    let partial = dir.join(format!("{stem}.wasm.{}", std::process::id()));
    let include = root.join("guest-sdk/c");
    let source_path = root.join(source);
    let mut args = flags.to_vec();
    args.extend([
        "-O2",
        "-Wall",
        "-Wextra",
        "-Werror",
        "-I",
        include.to_str().unwrap(),
    ]);
    args.extend([
        source_path.to_str().unwrap(),
        "-o",
        partial.to_str().unwrap(),
    ]);
    let (ok, errors) = run_clang(&args).unwrap();
    assert!(ok, "{} {}:\n{errors}", clang(), args.join(" "));
    std::fs::rename(&partial, &out).unwrap();
    out.to_str().unwrap().to_string()
}

/// The compiled C guests, built once per test run; `None` (after printing
/// why) when the toolchain is missing outside CI. Panics with the same
/// message in CI.
fn c_guests() -> Option<&'static CGuests> {
    static BUILT: OnceLock<Result<CGuests, String>> = OnceLock::new();
    let built = BUILT.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("c_guest");
        std::fs::create_dir_all(&dir).unwrap();
        check_toolchain(&dir).map_err(|why| {
            format!(
                "the C guest tests need clang's wasm32-wasi target, and {why}. \
                 Install the toolchain with `apt-get install -y {APT_PACKAGES}` \
                 (Debian 12; `.ci/run` does this), or set CLANG to a clang that has it"
            )
        })?;
        Ok(CGuests {
            tasks: compile(&dir, "examples/c/tasks.c", REACTOR),
            producer_consumer: compile(&dir, "examples/c/producer_consumer.c", COMMAND),
            all_imports: compile(&dir, "tests/c/abi_all_imports.c", REACTOR),
            freestanding: compile(&dir, "tests/c/freestanding.c", FREESTANDING),
        })
    });
    match built {
        Ok(guests) => Some(guests),
        Err(why) if in_ci() => panic!("{why}"),
        Err(why) => {
            // Once, and past the test harness's capture of `eprintln!`, so
            // that a plain `cargo test` shows it.
            static SAID: std::sync::Once = std::sync::Once::new();
            SAID.call_once(|| {
                let _ = writeln!(
                    std::io::stderr(),
                    "\nskipped: {why} (with CI set, this is a failure)\n"
                );
            });
            None
        }
    }
}

/// The `wasmpool::` function imports of a module, as `name: type`.
fn abi_function_imports(info: &ModuleInfo) -> BTreeSet<String> {
    info.imports
        .iter()
        .filter_map(|i| i.strip_prefix("wasmpool::"))
        .filter(|i| !i.contains(": memory"))
        .map(str::to_string)
        .collect()
}

#[test]
fn header_declares_every_abi_function_with_the_fixtures_type() {
    let Some(c) = c_guests() else { return };
    let fixture = root().join("tests/fixtures/abi_all_imports.wat");
    let wat = ModuleInfo::from_file(&fixture, None).unwrap();
    let expected = abi_function_imports(&wat);
    assert_eq!(expected.len(), 31, "{expected:#?}");
    let compiled = ModuleInfo::from_file(&c.all_imports, None).unwrap();
    assert_eq!(abi_function_imports(&compiled), expected);
    assert_eq!(
        compiled.abi_version,
        Some(1),
        "the header exports the marker"
    );
    assert_eq!(compiled.abi_error, None);
    // Nothing declared beyond the ABI: every WASMPOOL_IMPORT(name) of the
    // header is a function of the fixture.
    let header = std::fs::read_to_string(root().join("guest-sdk/c/wasmpool.h")).unwrap();
    let declared: BTreeSet<String> = header
        .match_indices("WASMPOOL_IMPORT(")
        .map(|(at, m)| {
            let rest = &header[at + m.len()..];
            rest[..rest.find(')').unwrap()].to_string()
        })
        .filter(|name| name != "name")
        .collect();
    let names: BTreeSet<String> = expected
        .iter()
        .map(|i| i.split(':').next().unwrap().to_string())
        .collect();
    assert_eq!(declared, names);
}

#[test]
fn example_task_module_lists_its_tasks_and_imports_only_what_they_call() {
    let Some(c) = c_guests() else { return };
    let info = ModuleInfo::from_file(&c.tasks, None).unwrap();
    let tasks: Vec<String> = info.tasks.iter().map(ToString::to_string).collect();
    assert_eq!(
        tasks,
        [
            "collatz: json -> json (export wasmpool_task_collatz)",
            "shout: json -> json (export wasmpool_task_shout)",
            "collatz_steps: (i64) -> i64",
        ]
    );
    // Only what the tasks call: the header's unused helpers import nothing.
    let abi: BTreeSet<String> = abi_function_imports(&info)
        .into_iter()
        .map(|i| i.split(':').next().unwrap().to_string())
        .collect();
    assert_eq!(
        abi,
        BTreeSet::from(
            ["input_len", "input_read", "output_write", "trap_message"].map(String::from)
        )
    );
}

#[test]
fn header_without_libc_builds_a_freestanding_task() {
    let Some(c) = c_guests() else { return };
    let info = ModuleInfo::from_file(&c.freestanding, None).unwrap();
    assert_eq!(info.abi_version, Some(1));
    assert!(
        info.imports.iter().all(|i| i.starts_with("wasmpool::")),
        "{:#?}",
        info.imports
    );
    let pool = pool_builder()
        .module_file(&c.freestanding)
        .cache(None)
        .build()
        .unwrap();
    let long = "x".repeat(300);
    let mut results = pool
        .map::<&str, String>("reverse", ["abc", "", &long])
        .unwrap()
        .into_iter();
    assert_eq!(results.next().unwrap().unwrap(), "cba");
    assert_eq!(results.next().unwrap().unwrap(), "");
    let err = results.next().unwrap().unwrap_err();
    assert_eq!(err.kind(), TaskErrorKind::Trap);
    assert!(
        err.message()
            .starts_with("reverse: the input is longer than 256 bytes"),
        "{err}"
    );
}

/// Collatz `(steps, peak)` of `n`, computed here, independently of the guest.
fn collatz(mut n: i64) -> (i64, i64) {
    let (mut steps, mut peak) = (0, n);
    while n != 1 {
        n = if n % 2 == 0 { n / 2 } else { 3 * n + 1 };
        peak = peak.max(n);
        steps += 1;
    }
    (steps, peak)
}

both_modes! {
    #[test]
    fn c_abi_tasks_use_every_import_as_the_wat_fixture_does() {
        let Some(c) = c_guests() else { return };
        let pool = pool_builder()
            .module_file(&c.all_imports)
            .workers(2)
            .queue("q", 4)
            .shared_memory(1 << 16)
            .host_fn("echo", |v: Value| Ok::<_, String>(v))
            .host_fn("fail", |_: Value| Err::<Value, _>("no such row".to_string()))
            .cache(None)
            .build()
            .unwrap();
        let map = |task: &str, input: Value| {
            pool.map::<Value, Value>(task, [input]).unwrap().pop().unwrap()
        };
        assert_eq!(map("echo", json!({"a": [1, 2]})).unwrap(), json!({"a": [1, 2]}));
        // Through the task I/O area: each instance's first task reads its
        // input itself, the next ones find it written by the host.
        let inputs: Vec<Value> = (0..6).map(|i| json!({"n": i, "s": "x".repeat(i * 100)})).collect();
        let echoed: Vec<Value> = pool
            .map::<Value, Value>("io_echo", inputs.clone())
            .unwrap()
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(echoed, inputs);
        let worker = map("worker", json!(null)).unwrap();
        assert!(worker == json!(20) || worker == json!(21), "{worker}");
        assert_eq!(map("queue_roundtrip", json!("through the queue")).unwrap(), json!("through the queue"));
        assert_eq!(map("queue_batch", json!("in a batch")).unwrap(), json!("in a batch"));
        assert_eq!(map("shm_all", json!(null)).unwrap(), json!(42));
        assert_eq!(map("host_echo", json!([1, "two"])).unwrap(), json!([1, "two"]));
        let err = map("host_fail", json!(null)).unwrap_err();
        assert_eq!((err.kind(), err.message()), (TaskErrorKind::Guest, "no such row"));
        let err = map("say_no", json!(null)).unwrap_err();
        assert_eq!(err.kind(), TaskErrorKind::Trap);
        assert!(err.message().starts_with("fixture says no"), "{err}");
        assert_eq!(map("inc", json!(41)).unwrap(), json!(42));
        assert_eq!(map("inc", json!(-9_223_372_036_854_775_807_i64)).unwrap(), json!(i64::MIN + 2));
        for not_an_integer in [json!(1.5), json!("1"), json!(1e3), json!(u64::MAX), json!([1])] {
            let err = map("inc", not_an_integer.clone()).unwrap_err();
            assert_eq!(
                (err.kind(), err.message()),
                (TaskErrorKind::Input, "not an integer"),
                "{not_an_integer}"
            );
        }
        // Escapes, control characters, and characters outside the BMP (a
        // surrogate pair in JSON) survive a decode and an encode.
        for s in ["", "plain", "quote \" backslash \\ slash /", "tab\tnewline\n\u{1}\u{1f}", "é ü 中 😀"] {
            assert_eq!(map("string_roundtrip", json!(s)).unwrap(), json!(s), "{s:?}");
        }
        let err = map("string_roundtrip", json!(["not", "a", "string"])).unwrap_err();
        assert_eq!(err.kind(), TaskErrorKind::Input);
        // Last: closing `q` ends every later use of it.
        assert_eq!(map("queue_close", json!(null)).unwrap(), json!("closed"));
        assert!(pool.queue("q").unwrap().is_closed());
    }

    #[test]
    fn c_collatz_task_through_the_library() {
        let Some(c) = c_guests() else { return };
        let pool = pool_builder().module_file(&c.tasks).workers(4).cache(None).build().unwrap();
        let results = pool.map::<i64, Value>("collatz", 1..=200).unwrap();
        for (n, result) in (1..=200).zip(results) {
            let (steps, peak) = collatz(n);
            assert_eq!(result.unwrap(), json!({"n": n, "steps": steps, "peak": peak}));
        }
        let steps = pool.map::<i64, i64>("collatz_steps", [27, 97, 0, i64::MAX]).unwrap();
        let steps: Vec<i64> = steps.into_iter().map(Result::unwrap).collect();
        assert_eq!(steps, [collatz(27).0, collatz(97).0, -1, -1]);
    }

    #[test]
    fn c_collatz_task_through_the_cli_reports_each_kind_of_failure() {
        let Some(c) = c_guests() else { return };
        let input: String = (1..=50).map(|n| format!("{n}\n")).collect::<String>()
            + "0\n\"x\"\n9223372036854775807\n";
        let out = wasmpool(&["map", &c.tasks, "--task", "collatz"], &input);
        assert_eq!(out.status.code(), Some(1), "a task failed");
        let lines: Vec<Value> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 53);
        for (n, line) in (1..=50).zip(&lines) {
            let (steps, peak) = collatz(n);
            assert_eq!(line["ok"], json!({"n": n, "steps": steps, "peak": peak}), "{line}");
        }
        let error = |i: usize, kind: &str, message: &str| {
            let error = &lines[i]["error"];
            assert_eq!(error["kind"], json!(kind), "{error}");
            assert!(error["message"].as_str().unwrap().contains(message), "{error}");
        };
        error(50, "guest", "collatz: n must be at least 1");
        error(51, "input", "collatz takes one integer, such as 27");
        error(52, "trap", "collatz: 3n + 1 overflows a 64-bit integer");
    }

    #[test]
    fn c_text_and_numeric_tasks_through_the_cli() {
        let Some(c) = c_guests() else { return };
        let out = wasmpool(
            &["map", &c.tasks, "--task", "shout", "--values"],
            "\"hello, world\"\n\"caf\\u00e9 \\\"quoted\\\"\\n\"\n42\n",
        );
        assert_eq!(out.status.code(), Some(1));
        assert_eq!(
            String::from_utf8(out.stdout).unwrap(),
            "\"HELLO, WORLD\"\n\"CAFé \\\"QUOTED\\\"\\n\"\n"
        );
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert!(stderr.contains("shout takes one JSON string"), "{stderr}");
        let out = wasmpool(
            &["map", &c.tasks, "--task", "collatz_steps", "--values"],
            "1\n2\n3\n27\n",
        );
        assert_eq!(out.status.code(), Some(0));
        assert_eq!(String::from_utf8(out.stdout).unwrap(), "0\n1\n7\n111\n");
    }

    #[test]
    fn c_producer_and_consumers_share_a_queue_under_run() {
        let Some(c) = c_guests() else { return };
        let out = wasmpool(
            &["run", &c.producer_consumer, "-n", "4", "--queue", "items:4", "--", "1000"],
            "",
        );
        let stdout = String::from_utf8(out.stdout).unwrap();
        assert_eq!(out.status.code(), Some(0), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
        let mut lines: Vec<&str> = stdout.lines().collect();
        lines.sort();
        assert_eq!(lines.len(), 4, "{stdout}");
        assert_eq!(lines[0], "copy 0: put 1000 items");
        let (mut taken, mut sum) = (0, 0);
        for (i, line) in lines[1..].iter().enumerate() {
            let rest = line
                .strip_prefix(&format!("copy {}: took ", i + 1))
                .unwrap_or_else(|| panic!("{line}"));
            let (n, s) = rest.split_once(" items, sum ").unwrap();
            taken += n.parse::<u64>().unwrap();
            sum += s.parse::<u64>().unwrap();
        }
        assert_eq!((taken, sum), (1000, 500_500), "every item taken exactly once");
    }

    #[test]
    fn c_command_explains_a_missing_queue_and_a_bad_count() {
        let Some(c) = c_guests() else { return };
        let out = wasmpool(&["run", &c.producer_consumer], "");
        assert_eq!(out.status.code(), Some(2));
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert!(stderr.contains("copy 0: no queue `items`: run with --queue items"), "{stderr}");
        let out = wasmpool(&["run", &c.producer_consumer, "--queue", "items", "--", "ten"], "");
        assert_eq!(out.status.code(), Some(2));
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert!(stderr.contains("copy 0: COUNT must be a whole number, not `ten`"), "{stderr}");
    }

    #[test]
    fn c_producer_feeds_the_host_and_host_feeds_c_consumers() {
        let Some(c) = c_guests() else { return };
        let group = group_builder()
            .module_file(&c.producer_consumer)
            .cache(None)
            .stdio(Stdio::Null)
            .queue("items", 8)
            .args(["producer_consumer", "300"])
            .copies(3)
            .build()
            .unwrap();
        // Copy 0 produces; the host consumes, in order, until it is closed.
        let producer = group.spawn(0).unwrap();
        let items = group.queue("items").unwrap();
        let mut got = Vec::new();
        while let Ok(bytes) = items.get(Some(Duration::from_secs(10))) {
            got.push(String::from_utf8(bytes).unwrap());
        }
        assert!(items.get(None).unwrap_err().is_closed(), "ended on close, not a timeout");
        assert_eq!(got, (1..=300).map(|i| i.to_string()).collect::<Vec<_>>());
        assert!(producer.wait().success());

        // The host produces into a fresh group's queue; copies 1 and 2 consume.
        let group = group_builder()
            .module_file(&c.producer_consumer)
            .cache(None)
            .stdio(Stdio::Null)
            .queue("items", 8)
            .copies(3)
            .build()
            .unwrap();
        let consumers = [group.spawn(1).unwrap(), group.spawn(2).unwrap()];
        let items = group.queue("items").unwrap();
        for i in 1..=300 {
            items.put(i.to_string().into_bytes(), Some(Duration::from_secs(10))).unwrap();
        }
        items.close();
        for consumer in consumers {
            let status = consumer.wait();
            assert!(status.success(), "{:?}", status.error());
        }
        assert!(items.is_empty());
    }
}
