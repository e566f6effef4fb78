//! `wasmpool inspect MODULE`: what a module offers.

use std::fmt::Write as _;
use std::process::ExitCode;

use super::args::{Common, InspectArgs};

pub(crate) fn run(common: &Common, args: InspectArgs) -> anyhow::Result<ExitCode> {
    let cache = common.cache();
    let info = if super::compile::is_cwasm(&args.module) {
        // SAFETY: the user named a `.cwasm` file on the command line, the
        // CLI's sign that they trust it as `wasmpool compile` output (see
        // `compile::is_cwasm`); its version and settings are checked.
        unsafe {
            wasmpool::ModuleInfo::from_file_allowing_precompiled(&args.module, cache.as_ref())?
        }
    } else {
        wasmpool::ModuleInfo::from_file(&args.module, cache.as_ref())?
    };
    let mut out = String::new();
    writeln!(out, "module: {}", args.module.display())?;
    match (info.abi_version, &info.abi_error) {
        (_, Some(problem)) => writeln!(out, "abi: unusable: {problem}")?,
        (Some(v), None) => writeln!(out, "abi: wasmpool v{v}")?,
        (None, None) if info.command => writeln!(out, "abi: none")?,
        (None, None) => writeln!(out, "abi: none (numeric exports only)")?,
    }
    if info.command {
        writeln!(out, "command: yes (_start; run it with `wasmpool run`)")?;
    }
    writeln!(out, "tasks:")?;
    if info.tasks.is_empty() {
        writeln!(out, "  (none)")?;
    }
    for task in &info.tasks {
        writeln!(out, "  {task}")?;
    }
    writeln!(out, "imports:")?;
    if info.imports.is_empty() {
        writeln!(out, "  (none)")?;
    }
    for import in &info.imports {
        writeln!(out, "  {import}")?;
    }
    use std::io::Write as _;
    std::io::stdout().lock().write_all(out.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}
