//! `wasmpool new` and `wasmpool completions` through the real binary: a new
//! task crate builds for wasm32-wasip1 outside this workspace and runs
//! under `map` as its README says.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::cli::wasmpool;

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs `wasmpool new` with `args`, in `cwd`.
fn new_in(cwd: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wasmpool"))
        .arg("new")
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap()
}

/// A target directory of its own under this repository's `target/`: the
/// crates the new crate needs are built once and kept between runs, and the
/// lock `cargo test` holds on `target/` itself is not in the way.
fn scaffold_target_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/scaffold")
}

#[test]
fn new_crate_builds_for_wasm32_wasip1_and_maps_its_sample_input_as_its_readme_shows() {
    // Inside this repository's workspace, as a user's crate inside their
    // own workspace would be: its empty `[workspace]` keeps it on its own.
    std::fs::create_dir_all(scaffold_target_dir()).unwrap();
    let parent = tempfile::tempdir_in(scaffold_target_dir()).unwrap();
    let out = new_in(parent.path(), &["word-count"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let dir = parent.path().join("word-count");
    assert!(
        stderr(&out).contains("cargo build --release --target wasm32-wasip1"),
        "{}",
        stderr(&out)
    );

    let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
    assert!(
        manifest.contains(r#"crate-type = ["cdylib"]"#),
        "{manifest}"
    );
    assert!(manifest.contains("\n[workspace]\n"), "{manifest}");
    let sdk = std::fs::canonicalize(concat!(env!("CARGO_MANIFEST_DIR"), "/../guest-sdk")).unwrap();
    assert!(
        manifest.contains(&format!(
            "wasmpool-guest = {{ path = \"{}\" }}",
            sdk.display()
        )),
        "the SDK of this source tree, by path: {manifest}"
    );

    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let build = Command::new(&cargo)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip1",
            "--offline",
        ])
        .current_dir(&dir)
        .env("CARGO_TARGET_DIR", scaffold_target_dir())
        .env_remove("RUSTFLAGS")
        .output()
        .unwrap();
    assert!(build.status.success(), "cargo build: {}", stderr(&build));

    let module = scaffold_target_dir().join("wasm32-wasip1/release/word_count.wasm");
    let input = dir.join("input.jsonl");
    let out = wasmpool(
        &[
            "map",
            module.to_str().unwrap(),
            "--task",
            "count_words",
            "--input",
            input.to_str().unwrap(),
        ],
        "",
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let got = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        got,
        "{\"index\":0,\"ok\":{\"id\":1,\"words\":4,\"chars\":19}}\n\
         {\"index\":1,\"ok\":{\"id\":2,\"words\":5,\"chars\":23}}\n\
         {\"index\":2,\"ok\":{\"id\":3,\"words\":1,\"chars\":5}}\n"
    );
    let readme = std::fs::read_to_string(dir.join("README.md")).unwrap();
    assert!(
        readme.contains(&got),
        "the README shows the output: {readme}"
    );
    assert!(
        readme.contains(
            "wasmpool map target/wasm32-wasip1/release/word_count.wasm --task count_words --input input.jsonl"
        ),
        "{readme}"
    );
}

#[test]
fn new_refuses_a_directory_that_is_not_empty() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("taken");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("notes.txt"), "mine").unwrap();
    let out = new_in(parent.path(), &["tasks", "--path", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.starts_with("wasmpool: "), "{err}");
    assert!(
        err.contains(&format!(
            "{}: already exists and is not empty; choose another NAME, or a new or empty \
             directory with --path",
            dir.display()
        )),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("notes.txt")).unwrap(),
        "mine"
    );
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        1,
        "nothing written"
    );

    // An empty directory is filled.
    let empty = parent.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let out = new_in(
        parent.path(),
        &["tasks", "--path", empty.to_str().unwrap(), "-q"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stderr(&out), "", "--quiet");
    assert!(empty.join("src/lib.rs").is_file());
}

#[test]
fn new_takes_the_sdk_from_sdk_path_and_checks_it() {
    let parent = tempfile::tempdir().unwrap();
    let sdk = concat!(env!("CARGO_MANIFEST_DIR"), "/../guest-sdk");
    let out = new_in(parent.path(), &["t", "--sdk-path", sdk]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let manifest = std::fs::read_to_string(parent.path().join("t/Cargo.toml")).unwrap();
    let canonical = std::fs::canonicalize(sdk).unwrap();
    assert!(
        manifest.contains(&format!("path = \"{}\"", canonical.display())),
        "{manifest}"
    );

    let not_sdk = env!("CARGO_MANIFEST_DIR");
    let out = new_in(parent.path(), &["u", "--sdk-path", not_sdk]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains(&format!(
            "--sdk-path {not_sdk}: not the wasmpool guest SDK: {not_sdk}/Cargo.toml: not the \
             manifest of the `wasmpool-guest` package"
        )),
        "{}",
        stderr(&out)
    );
    assert!(!parent.path().join("u").exists(), "nothing created");

    let out = new_in(parent.path(), &["9lives"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("must not start with a digit"));
}

#[test]
fn completions_for_every_shell_name_the_subcommands() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = wasmpool(&["completions", shell], "");
        assert_eq!(out.status.code(), Some(0), "{shell}: {}", stderr(&out));
        let script = String::from_utf8(out.stdout).unwrap();
        for sub in ["map", "run", "inspect", "new", "completions"] {
            assert!(script.contains(sub), "{shell}: no {sub}");
        }
        // Flags too: `--task` (fish: `-l task`).
        assert!(
            script.contains("--task") || script.contains("-l task"),
            "{shell}: no flags"
        );
    }
    let out = wasmpool(&["completions", "tcsh"], "");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("possible values: bash"),
        "{}",
        stderr(&out)
    );
}
