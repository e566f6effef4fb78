//! `wasmpool completions SHELL`: a completion script for the shell, made
//! by `clap_complete` from the same clap definitions as the parser, so it
//! never lags behind the flags.

use std::io::Write;
use std::process::ExitCode;

use clap::CommandFactory;

use super::args::{Args, CompletionsArgs};

pub(crate) fn run(args: &CompletionsArgs) -> anyhow::Result<ExitCode> {
    let mut command = Args::command();
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut command, "wasmpool", &mut script);
    std::io::stdout().lock().write_all(&script)?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod test {
    use clap_complete::Shell;

    use super::*;

    #[test]
    fn every_shell_gets_a_script_naming_every_subcommand() {
        let command = Args::command();
        let subcommands: Vec<&str> = command.get_subcommands().map(|c| c.get_name()).collect();
        assert!(subcommands.len() >= 5, "{subcommands:?}");
        for shell in [
            Shell::Bash,
            Shell::Zsh,
            Shell::Fish,
            Shell::Elvish,
            Shell::PowerShell,
        ] {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Args::command(), "wasmpool", &mut script);
            let script = String::from_utf8(script).unwrap();
            assert!(!script.trim().is_empty(), "{shell}");
            for name in &subcommands {
                assert!(script.contains(name), "{shell}: no {name}");
            }
        }
    }
}
