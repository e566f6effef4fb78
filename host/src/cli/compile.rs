//! `wasmpool compile MODULE [-o OUT.cwasm]`: compile ahead of time, so that
//! `map`, `run` and `inspect` load the module without compiling it.

use std::path::Path;
use std::process::ExitCode;

use super::args::CompileArgs;

pub(crate) fn run(args: CompileArgs) -> anyhow::Result<ExitCode> {
    let named = args.output.is_some();
    let output = args
        .output
        .unwrap_or_else(|| args.module.with_extension("cwasm"));
    if !is_cwasm(&output) {
        anyhow::bail!(
            "{}: the output's name must end in .cwasm: wasmpool loads precompiled code only \
             from files so named",
            output.display()
        );
    }
    wasmpool::Precompiler::new()
        .fuel(args.fuel)
        .precompile_file(&args.module, &output)?;
    if !named {
        // The user did not say where: say where it went.
        eprintln!("wasmpool: wrote {}", output.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// Whether the CLI may load precompiled code from `path`: only from files
/// named `*.cwasm`, which the user named on the command line. A precompiled
/// module is machine code that runs without validation; the name is the
/// user's statement that the file is one `wasmpool compile` made (see
/// docs/security.md). Any other file must be wasm, and a precompiled one
/// under another name is refused.
pub(crate) fn is_cwasm(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "cwasm")
}
