//! Wasm backtraces as the CLI shows them on stderr: the guest's own frames,
//! without the dozens of standard-library frames a Rust panic goes through
//! (all of them with `-v`).

/// Crates whose frames belong to the toolchain's runtime, not to the
/// guest's own code.
const RUNTIME_CRATES: &[&str] = &[
    "std",
    "core",
    "alloc",
    "__rustc",
    "panic_abort",
    "panic_unwind",
    "compiler_builtins",
    "dlmalloc",
    "wasi",
    "wasmpool_guest",
];

/// Functions of libc and of the runtime's start-up.
const RUNTIME_FUNCTIONS: &[&str] = &[
    "abort",
    "_start",
    "__main_void",
    "__original_main",
    "__wasm_call_ctors",
    "rust_panic",
    "rust_begin_unwind",
];

/// Whether a frame's function belongs to the runtime: `std[1a2b]::x`,
/// `core::y`, `<alloc::vec::Vec<T> as Drop>::drop`, `abort`, ...
fn is_runtime(function: &str) -> bool {
    let path = function.trim_start_matches('<');
    let krate = path.split(['[', ':', '<', ' ']).next().unwrap_or_default();
    RUNTIME_CRATES.contains(&krate)
        || RUNTIME_FUNCTIONS.contains(&function)
        || function.starts_with("__rust")
}

/// `backtrace` with runtime frames left out (all frames when `verbose`),
/// ending in a newline.
pub(crate) fn shown(backtrace: &str, verbose: u8) -> String {
    let mut out = String::with_capacity(backtrace.len());
    let mut hidden = 0;
    let mut keep = true;
    for line in backtrace.lines() {
        if let Some(name) = frame_function(line) {
            keep = verbose > 0 || !is_runtime(name);
            hidden += usize::from(!keep);
        }
        if keep {
            out.push_str(line);
            out.push('\n');
        }
    }
    if hidden > 0 {
        out.push_str(&format!(
            "    ({hidden} frames of the language runtime hidden; -v shows them)\n"
        ));
    }
    out
}

/// The function name of a frame's first line (`   3:  0x1a2b - module!name`).
fn frame_function(line: &str) -> Option<&str> {
    let (number, rest) = line.trim_start().split_once(':')?;
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (_, name) = rest.split_once(" - ")?;
    Some(name.split_once('!').map_or(name, |(_, f)| f).trim())
}

#[cfg(test)]
mod test {
    use super::*;

    const TRACE: &str = "error while executing at wasm backtrace:
    0:   0x7a1c - boom.wasm!__rust_start_panic
    1:   0x79f0 - boom.wasm!rust_panic
    2:   0x7900 - boom.wasm!std[a88812da5ee6ad9e]::panicking::panic_with_hook
    3:   0x1234 - boom.wasm!boom::explode::h2
                    at src/main.rs:3:5
    4:   0x1300 - boom.wasm!boom::main::h3
    5:   0x1400 - boom.wasm!<alloc::vec::Vec<T> as core::ops::Drop>::drop
    6:   0x1500 - boom.wasm!__main_void
    7:   0x1600 - boom.wasm!_start";

    #[test]
    fn only_the_guests_own_frames_by_default() {
        assert_eq!(
            shown(TRACE, 0),
            "error while executing at wasm backtrace:
    3:   0x1234 - boom.wasm!boom::explode::h2
                    at src/main.rs:3:5
    4:   0x1300 - boom.wasm!boom::main::h3
    (6 frames of the language runtime hidden; -v shows them)
"
        );
    }

    #[test]
    fn every_frame_with_verbose() {
        assert_eq!(shown(TRACE, 1), format!("{TRACE}\n"));
    }
}
