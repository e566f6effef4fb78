//! How the CLI reports its own errors and warnings on stderr, in the style
//! of cargo and GCC: `wasmpool: error: WHAT: WHY`, each cause once, then
//! `  help: WHAT TO DO` lines where wasmpool knows a fix. The prefixes are
//! coloured on a terminal, and plain when stderr is not one or `NO_COLOR` is
//! set (`CLICOLOR_FORCE` forces colour, as cargo and clap allow).

use std::fmt::Display;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

/// Whether stderr gets colour: `NO_COLOR` (non-empty) turns it off, then
/// `CLICOLOR_FORCE` (non-empty, not `0`) on, else a terminal has it.
fn colour() -> bool {
    let set = |k: &str| std::env::var_os(k).is_some_and(|v| !v.is_empty() && v != "0");
    if std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()) {
        return false;
    }
    set("CLICOLOR_FORCE") || std::io::stderr().is_terminal()
}

/// `label:` in bold and the colour `code` (an SGR number), when stderr has
/// colour.
fn label(label: &str, code: u8) -> String {
    if colour() {
        format!("\x1b[1;{code}m{label}:\x1b[0m")
    } else {
        format!("{label}:")
    }
}

/// Prints a fatal error with its causes, and any hints for it.
pub(crate) fn error(err: &anyhow::Error) {
    let mut text = format!("wasmpool: {} {err:#}\n", label("error", 31));
    for hint in hints(err) {
        text.push_str(&format!("  {} {hint}\n", label("help", 36)));
    }
    // One write, so that the lines stay together.
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

/// Prints a warning: something wasmpool did on the user's behalf.
pub(crate) fn warning(message: impl Display) {
    let text = format!("wasmpool: {} {message}\n", label("warning", 33));
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

/// A shared region's size as the ABI has it: a whole number of 64 KiB wasm
/// pages (docs/abi.md, "Shared memory"); any other size is rounded up, with
/// a warning saying so.
pub(crate) fn region_size(bytes: usize) -> usize {
    const PAGE: usize = 64 << 10;
    let rounded = bytes.div_ceil(PAGE).max(1) * PAGE;
    if rounded != bytes {
        warning(format_args!(
            "--shared-memory {bytes}: a shared region is a whole number of 64KiB pages; \
             using {}KiB",
            rounded >> 10
        ));
    }
    rounded
}

/// What to do about `err`, where wasmpool knows.
fn hints(err: &anyhow::Error) -> Vec<String> {
    let mut hints = Vec::new();
    for cause in err.chain() {
        let Some(err) = cause.downcast_ref::<wasmpool::Error>() else {
            continue;
        };
        match err {
            wasmpool::Error::Read { path, source }
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                hints.extend(missing_module(path));
            }
            wasmpool::Error::NotWasm { reason, .. } if reason.contains("not allowed") => {
                hints.push(
                    "wasmpool loads precompiled code only from files named *.cwasm: it is \
                     machine code, run without validation, so name a file so only if \
                     `wasmpool compile` made it for you"
                        .into(),
                );
            }
            wasmpool::Error::Precompiled { message, .. } => hints.push(
                if message.contains("which a fuel limit needs") {
                    "recompile it for runs with --fuel: `wasmpool compile MODULE.wasm --fuel -o OUT.cwasm`"
                } else if message.contains("runs only with a fuel limit") {
                    "run it with --fuel N, or recompile it without --fuel: `wasmpool compile MODULE.wasm -o OUT.cwasm`"
                } else {
                    "recompile it with this wasmpool: `wasmpool compile MODULE.wasm -o OUT.cwasm`"
                }
                .into(),
            ),
            _ => {}
        }
    }
    hints
}

/// Hints for a module file that does not exist: where a Rust build puts
/// its `.wasm`, and the file there if there is one.
fn missing_module(path: &Path) -> Vec<String> {
    let Some(name) = path.file_name() else {
        return Vec::new();
    };
    let ext = path.extension().and_then(|e| e.to_str());
    if !matches!(ext, Some("wasm" | "cwasm" | "wat")) {
        return Vec::new();
    }
    let mut hints = Vec::new();
    // `target/release/x.wasm` or `target/debug/x.wasm` for
    // `target/wasm32-wasip1/release/x.wasm`, and a name with `-` for `_`.
    let mut candidates: Vec<PathBuf> = Vec::new();
    let dir = path.parent().unwrap_or(Path::new(""));
    for profile in ["release", "debug"] {
        if dir.ends_with(Path::new("target").join(profile)) {
            let target = dir.parent().unwrap_or(Path::new(""));
            candidates.push(target.join("wasm32-wasip1").join(profile).join(name));
        }
    }
    let underscored = name.to_string_lossy().replace('-', "_");
    if underscored != name.to_string_lossy() {
        candidates.push(dir.join(&underscored));
    }
    if let Some(found) = candidates.into_iter().find(|c| c.is_file()) {
        hints.push(format!("did you mean {}?", found.display()));
    }
    if ext == Some("wasm") {
        hints.push(
            "a task crate builds its module with `cargo build --release --target wasm32-wasip1` \
             (and `crate-type = [\"cdylib\"]` under [lib] in Cargo.toml), into \
             target/wasm32-wasip1/release/NAME.wasm"
                .into(),
        );
    }
    hints
}
