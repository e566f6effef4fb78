//! Builds every guest crate (the examples and the test guests) for
//! `wasm32-wasip1` with a nested cargo, into its own target directory under
//! `OUT_DIR` (so it never waits on the outer build's lock), and writes one
//! path constant per guest to `OUT_DIR/guests.rs`.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Every guest crate: (package, constant name).
const GUESTS: &[(&str, &str)] = &[
    ("square", "SQUARE"),
    ("primes", "PRIMES"),
    ("mandelbrot", "MANDELBROT"),
    ("testguest", "TESTGUEST"),
    ("asyncio", "ASYNCIO"),
];

/// The WASI commands of packages `commands` and `seed`: (binary, constant name).
const COMMANDS: &[(&str, &str)] = &[
    ("processes", "SEED_PROCESSES"),
    ("producer_consumer", "SEED_PRODUCER_CONSUMER"),
    ("shared_counter", "SEED_SHARED_COUNTER"),
    ("hello", "HELLO"),
    ("counter", "COUNTER"),
    ("spin", "SPIN"),
    ("readfile", "READFILE"),
    ("producer", "PRODUCER"),
    ("consumer", "CONSUMER"),
    ("clockrand", "CLOCKRAND"),
    ("upcase", "UPCASE"),
    ("panic", "PANIC"),
];

const TARGET: &str = "wasm32-wasip1";

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest.parent().unwrap().to_path_buf();
    let out = PathBuf::from(std::env::var_os("OUT_DIR").unwrap());
    for dir in [
        "examples/guests",
        "examples/kernels",
        "guest-sdk",
        "tests/guests",
        "Cargo.lock",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }
    let target_dir = out.join("guest-target");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.arg("build")
        .arg("--release")
        .arg("--target")
        .arg(TARGET)
        .arg("--manifest-path")
        .arg(root.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir)
        // No DWARF in the guests (the name section stays, so backtraces keep
        // function names): a 2.3 MB module becomes 150 KB, which loads,
        // hashes and compiles faster.
        .arg("--config")
        .arg("profile.release.debug=false")
        .arg("--config")
        .arg("profile.release.strip=\"debuginfo\"");
    for (package, _) in GUESTS {
        cmd.arg("-p").arg(package);
    }
    cmd.arg("-p").arg("commands").arg("-p").arg("seed");
    // Flags meant for the outer (host) build must not leak into the guests'.
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTC_WRAPPER",
        "CARGO_PRIMARY_PACKAGE",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd
        .status()
        .expect("cannot run cargo to build the wasm guests");
    if !status.success() {
        panic!(
            "building the wasm guests failed (see above). If the target is missing, run \
             `rustup target add {TARGET}` (README.md's commands do it for you)."
        );
    }
    let mut consts = String::new();
    for (package, name) in GUESTS.iter().chain(COMMANDS) {
        let path = target_dir
            .join(TARGET)
            .join("release")
            .join(format!("{package}.wasm"));
        assert!(
            Path::new(&path).is_file(),
            "{} was not built",
            path.display()
        );
        consts.push_str(&format!(
            "/// The `{package}` guest, built for {TARGET}.\npub const {name}: &str = {:?};\n",
            path.display().to_string()
        ));
    }
    std::fs::write(out.join("guests.rs"), consts).unwrap();
}
