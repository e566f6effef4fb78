//! The `wasmpool` command. Parsing and reporting live in `cli/`; this file
//! only turns the outcome into an exit code (the one place errors become
//! text for a human):
//!
//! - 0: every task succeeded;
//! - 1: some task failed (its error is in the output);
//! - 2: a usage, configuration or host error (printed as
//!   `wasmpool: error: ...`, with its causes once and any hints).

use std::process::ExitCode;

mod cli;

fn main() -> ExitCode {
    match cli::run() {
        Ok(code) => code,
        Err(err) => {
            if cli::is_broken_pipe(&err) {
                return ExitCode::SUCCESS;
            }
            cli::report::error(&err);
            ExitCode::from(2)
        }
    }
}
