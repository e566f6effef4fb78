//! Modules compiled ahead of time: `wasmpool compile`, then `map`, `run`
//! and `inspect` on the `.cwasm` give what they give on the `.wasm`, in
//! both modes; files from elsewhere (plain wasmtime, another wasmpool
//! version, damaged, or precompiled under another name) are refused with a
//! message saying what to do; and the library's `Precompiler` and
//! `allow_precompiled`.

use std::path::{Path, PathBuf};
use std::process::Output;

use wasmpool_tests::{HELLO, PRIMES, SEED_SHARED_COUNTER, SQUARE};

use crate::cli::wasmpool;
use crate::util::{both_modes, group_builder, pool_builder};

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8(out.stderr.clone()).unwrap()
}

/// Compiles `module` into `dir` with `wasmpool compile` and `extra` flags,
/// and returns the `.cwasm`'s path.
fn compile(module: &str, dir: &Path, extra: &[&str]) -> PathBuf {
    let name = Path::new(module).file_stem().unwrap().to_str().unwrap();
    let out_path = dir.join(format!("{name}.cwasm"));
    let mut args = vec!["compile", module, "-o", out_path.to_str().unwrap()];
    args.extend_from_slice(extra);
    let out = wasmpool(&args, "");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stderr(&out), "", "compile is quiet");
    out_path
}

/// The summary line's time varies; the rest of stderr must not.
fn without_summary(err: &str) -> String {
    err.lines()
        .filter(|l| !(l.starts_with("wasmpool: ") && l.contains(" failed, in ")))
        .map(|l| format!("{l}\n"))
        .collect()
}

both_modes! {
    #[test]
    fn map_on_a_cwasm_gives_what_the_wasm_gives() {
        let dir = tempfile::tempdir().unwrap();
        let cwasm = compile(PRIMES, dir.path(), &[]);
        let input: String = (0..64).map(|i| format!("{i}\n")).collect();
        let wasm = wasmpool(&["map", PRIMES, "--task", "primes"], &input);
        assert_eq!(wasm.status.code(), Some(0), "{}", stderr(&wasm));
        assert_eq!(stdout(&wasm).lines().count(), 64);
        for extra in [&[][..], &["--timeout", "30s", "-j", "2"][..]] {
            let mut args = vec!["map", cwasm.to_str().unwrap(), "--task", "primes"];
            args.extend_from_slice(extra);
            let out = wasmpool(&args, &input);
            assert_eq!(out.status.code(), Some(0), "{extra:?}: {}", stderr(&out));
            assert_eq!(stdout(&out), stdout(&wasm), "{extra:?}");
        }
        // A task that fails fails the same way.
        let bad = "\"not a number\"\n";
        let wasm = wasmpool(&["map", SQUARE, "--task", "square_i64"], bad);
        let cwasm = compile(SQUARE, dir.path(), &[]);
        let out = wasmpool(&["map", cwasm.to_str().unwrap(), "--task", "square_i64"], bad);
        assert_eq!(out.status.code(), Some(1));
        assert_eq!(stdout(&out), stdout(&wasm));
    }

    #[test]
    fn run_on_a_cwasm_gives_what_the_wasm_gives() {
        let dir = tempfile::tempdir().unwrap();
        let hello = compile(HELLO, dir.path(), &[]);
        let args = |module: &str| {
            vec!["run", module, "-n", "3", "--env", "GREETING=hi", "--", "--exit=4", "{i}"]
                .into_iter()
                .map(String::from)
                .collect::<Vec<_>>()
        };
        let run = |module: &str| {
            let args = args(module);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            wasmpool(&args, "")
        };
        let wasm = run(HELLO);
        let out = run(hello.to_str().unwrap());
        assert_eq!(out.status.code(), wasm.status.code());
        assert_eq!(out.status.code(), Some(4));
        let sorted = |s: String| {
            let mut lines: Vec<String> = s.lines().map(str::to_string).collect();
            lines.sort();
            lines
        };
        assert_eq!(sorted(stdout(&out)), sorted(stdout(&wasm)));
        assert_eq!(
            without_summary(&stderr(&out)).replace(hello.to_str().unwrap(), "M"),
            without_summary(&stderr(&wasm)).replace(HELLO, "M")
        );
        // The shared region and its atomics: five copies count to an exact total.
        let counter = compile(SEED_SHARED_COUNTER, dir.path(), &[]);
        let shared = |module: &str| {
            wasmpool(&["run", module, "-n", "5", "--shared-memory", "64KiB"], "")
        };
        let wasm = shared(SEED_SHARED_COUNTER);
        let out = shared(counter.to_str().unwrap());
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        assert_eq!(stdout(&out), stdout(&wasm));
    }

    #[test]
    fn a_module_with_wasm_atomics_on_the_shared_region_compiles_and_maps_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let wat = dir.path().join("bump.wat");
        std::fs::write(
            &wat,
            r#"(module
                 (import "wasmpool" "shared" (memory 1 1 shared))
                 (memory (export "memory") 1)
                 (func (export "wasmpool_abi_v1"))
                 (func (export "bump") (param i32) (result i32)
                   (i32.atomic.rmw.add (i32.const 0) (local.get 0))))"#,
        )
        .unwrap();
        let cwasm = compile(wat.to_str().unwrap(), dir.path(), &[]);
        let map = |module: &str| {
            wasmpool(
                &["map", module, "--task", "bump", "--shared-memory", "64KiB", "-j", "1", "--values"],
                "1\n2\n3\n",
            )
        };
        let out = map(cwasm.to_str().unwrap());
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        assert_eq!(stdout(&out), "0\n1\n3\n");
        assert_eq!(stdout(&out), stdout(&map(wat.to_str().unwrap())));
    }

    #[test]
    fn fuel_runs_need_a_cwasm_compiled_with_fuel_and_only_they_do() {
        let dir = tempfile::tempdir().unwrap();
        let plain = compile(SQUARE, dir.path(), &[]);
        let out = wasmpool(
            &["map", plain.to_str().unwrap(), "--task", "square", "--fuel", "1000000"],
            "3\n",
        );
        assert_eq!(out.status.code(), Some(2));
        assert_eq!(
            stderr(&out),
            format!(
                "wasmpool: error: {}: cannot load the precompiled module: it was compiled without \
                 fuel metering, which a fuel limit needs; recompile it from its .wasm with fuel \
                 metering (`Precompiler::fuel`)\n  help: recompile it for runs with --fuel: \
                 `wasmpool compile MODULE.wasm --fuel -o OUT.cwasm`\n",
                plain.display()
            )
        );
        let metered_dir = tempfile::tempdir().unwrap();
        let metered = compile(SQUARE, metered_dir.path(), &["--fuel"]);
        let metered = metered.to_str().unwrap();
        let out = wasmpool(
            &["map", metered, "--task", "square", "--fuel", "1000000", "--values"],
            "3\n",
        );
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        assert_eq!(stdout(&out), "9\n");
        // Its fuel is counted: too little runs out.
        let out = wasmpool(&["map", metered, "--task", "square", "--fuel", "10"], "3\n");
        assert_eq!(out.status.code(), Some(1));
        assert!(stdout(&out).contains("\"kind\":\"out_of_fuel\""), "{}", stdout(&out));
        let out = wasmpool(&["map", metered, "--task", "square"], "3\n");
        assert_eq!(out.status.code(), Some(2));
        assert!(
            stderr(&out).contains("  help: run it with --fuel N, or recompile it without --fuel"),
            "{}",
            stderr(&out)
        );
    }

    #[test]
    fn library_loads_precompiled_bytes_only_when_allowed() {
        let cwasm = wasmpool::Precompiler::new()
            .precompile(br#"(module (func (export "double") (param i64) (result i64)
                local.get 0 local.get 0 i64.add))"#)
            .unwrap();
        let err = pool_builder()
            .module_bytes(cwasm.clone())
            .cache(None)
            .build()
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "<bytes>: not a WebAssembly module: it is a module precompiled to machine code (a \
             .cwasm file), and precompiled code was not allowed here"
        );
        // SAFETY: made just above by this wasmpool.
        let pool = unsafe { pool_builder().allow_precompiled(true) }
            .module_bytes(cwasm)
            .cache(None)
            .build()
            .unwrap();
        assert_eq!(pool.map::<i64, i64>("double", [21, -4]).unwrap(), [Ok(42), Ok(-8)]);
        let command = wasmpool::Precompiler::new()
            .precompile(br#"(module (func (export "_start")))"#)
            .unwrap();
        // SAFETY: made just above by this wasmpool.
        let group = unsafe { group_builder().allow_precompiled(true) }
            .module_bytes(command)
            .copies(2)
            .cache(None)
            .build()
            .unwrap();
        assert!(group.spawn(1).unwrap().wait().success());
    }
}

#[test]
fn inspect_on_a_cwasm_shows_what_it_shows_on_the_wasm() {
    let dir = tempfile::tempdir().unwrap();
    for module in [SQUARE, HELLO] {
        let cwasm = compile(module, dir.path(), &[]);
        let wasm = wasmpool(&["inspect", module], "");
        let out = wasmpool(&["inspect", cwasm.to_str().unwrap()], "");
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        assert_eq!(
            stdout(&out).replace(cwasm.to_str().unwrap(), "M"),
            stdout(&wasm).replace(module, "M")
        );
    }
    // One compiled with fuel metering inspects too.
    let fuel_dir = tempfile::tempdir().unwrap();
    let cwasm = compile(SQUARE, fuel_dir.path(), &["--fuel"]);
    let out = wasmpool(&["inspect", cwasm.to_str().unwrap()], "");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("  square: json -> json"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn compile_writes_a_cwasm_beside_the_module_and_refuses_other_names() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = dir.path().join("sq.wasm");
    std::fs::copy(SQUARE, &wasm).unwrap();
    let out = wasmpool(&["compile", wasm.to_str().unwrap()], "");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let cwasm = dir.path().join("sq.cwasm");
    assert!(std::fs::read(&cwasm).unwrap().starts_with(b"\x7fELF"));
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 2, "no temporary file is left: {names:?}");

    let other = dir.path().join("sq.bin");
    let out = wasmpool(&["compile", SQUARE, "-o", other.to_str().unwrap()], "");
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        format!(
            "wasmpool: error: {}: the output's name must end in .cwasm: wasmpool loads \
             precompiled code only from files so named\n",
            other.display()
        )
    );
    assert!(!other.exists());
    let out = wasmpool(
        &[
            "compile",
            cwasm.to_str().unwrap(),
            "-o",
            dir.path().join("again.cwasm").to_str().unwrap(),
        ],
        "",
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains(
            "not a WebAssembly module: it is already precompiled; compile its .wasm instead"
        ),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_cwasm_made_by_plain_wasmtime_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let foreign = dir.path().join("foreign.cwasm");
    let code = wasmtime::Engine::default()
        .precompile_module(&std::fs::read(SQUARE).unwrap())
        .unwrap();
    std::fs::write(&foreign, code).unwrap();
    let out = wasmpool(
        &["map", foreign.to_str().unwrap(), "--task", "square"],
        "1\n",
    );
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.starts_with(&format!(
            "wasmpool: error: {}: cannot load the precompiled module: it was not compiled by \
             wasmpool (it is stamped \"48\"), and this is wasmpool {} (wasmtime 48); recompile it \
             from its .wasm with this version\n",
            foreign.display(),
            env!("CARGO_PKG_VERSION")
        )),
        "{err}"
    );
    assert!(
        err.ends_with(
            "  help: recompile it with this wasmpool: `wasmpool compile MODULE.wasm -o OUT.cwasm`\n"
        ),
        "{err}"
    );
}

#[test]
fn a_cwasm_of_another_wasmpool_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cwasm = compile(SQUARE, dir.path(), &[]);
    // The same file, stamped as another version of the same length.
    let ours = format!("wasmpool {} (wasmtime", env!("CARGO_PKG_VERSION"));
    let other_version: String = env!("CARGO_PKG_VERSION")
        .chars()
        .map(|c| {
            if c.is_ascii_digit() {
                if c == '9' { '8' } else { '9' }
            } else {
                c
            }
        })
        .collect();
    let theirs = format!("wasmpool {other_version} (wasmtime");
    let mut bytes = std::fs::read(&cwasm).unwrap();
    let at = bytes
        .windows(ours.len())
        .position(|w| w == ours.as_bytes())
        .expect("the version stamp");
    bytes[at..at + ours.len()].copy_from_slice(theirs.as_bytes());
    std::fs::write(&cwasm, bytes).unwrap();
    for command in ["map", "run", "inspect"] {
        let mut args = vec![command, cwasm.to_str().unwrap()];
        if command == "map" {
            args.extend(["--task", "square"]);
        }
        let out = wasmpool(&args, "1\n");
        assert_eq!(out.status.code(), Some(2), "{command}");
        assert!(
            stderr(&out).starts_with(&format!(
                "wasmpool: error: {}: cannot load the precompiled module: it was compiled by \
                 wasmpool {other_version} (wasmtime 48), and this is wasmpool {} (wasmtime 48); \
                 recompile it from its .wasm with this version\n",
                cwasm.display(),
                env!("CARGO_PKG_VERSION")
            )),
            "{command}: {}",
            stderr(&out)
        );
    }
}

#[test]
fn a_damaged_cwasm_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cwasm = compile(SQUARE, dir.path(), &[]);
    let bytes = std::fs::read(&cwasm).unwrap();
    std::fs::write(&cwasm, &bytes[..bytes.len() / 2]).unwrap();
    let out = wasmpool(&["map", cwasm.to_str().unwrap(), "--task", "square"], "1\n");
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.starts_with(&format!(
            "wasmpool: error: {}: cannot load the precompiled module: it is damaged or truncated (",
            cwasm.display()
        )),
        "{err}"
    );
}

#[test]
fn precompiled_code_under_another_name_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cwasm = compile(SQUARE, dir.path(), &[]);
    let disguised = dir.path().join("square.wasm");
    std::fs::copy(&cwasm, &disguised).unwrap();
    for args in [
        vec!["map", disguised.to_str().unwrap(), "--task", "square"],
        vec!["run", disguised.to_str().unwrap()],
        vec!["inspect", disguised.to_str().unwrap()],
    ] {
        let out = wasmpool(&args, "1\n");
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert_eq!(
            stderr(&out),
            format!(
                "wasmpool: error: {}: not a WebAssembly module: it is a module precompiled to \
                 machine code (a .cwasm file), and precompiled code was not allowed here\n  \
                 help: wasmpool loads precompiled code only from files named *.cwasm: it is \
                 machine code, run without validation, so name a file so only if `wasmpool \
                 compile` made it for you\n",
                disguised.display()
            ),
            "{args:?}"
        );
    }
}
