//! `wasmpool inspect MODULE`: what a module offers.

use std::fmt::Write as _;
use std::process::ExitCode;

use super::args::{Common, InspectArgs};

pub(crate) fn run(common: &Common, args: InspectArgs) -> anyhow::Result<ExitCode> {
    let info = wasmpool::ModuleInfo::from_file(&args.module, common.cache().as_ref())?;
    let mut out = String::new();
    writeln!(out, "module: {}", args.module.display())?;
    match (info.abi_version, &info.abi_error) {
        (_, Some(problem)) => writeln!(out, "abi: unusable: {problem}")?,
        (Some(v), None) => writeln!(out, "abi: wasmpool v{v}")?,
        (None, None) => writeln!(out, "abi: none (numeric exports only)")?,
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
