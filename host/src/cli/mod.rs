//! The command-line front end: `args` (clap definitions), one module per
//! subcommand, and the shared set-up they need.

mod args;
mod backtrace;
mod inspect;
mod journal;
mod map;
mod run;

use std::process::ExitCode;

use clap::Parser;

use args::{Args, Command, Common};

/// Parses the command line and runs the subcommand.
pub(crate) fn run() -> anyhow::Result<ExitCode> {
    let args = Args::parse();
    init_logging(args.verbose);
    match args.command {
        Command::Map(map) => map::run(&args.common, map),
        Command::Run(run) => run::run(&args.common, args.verbose, run),
        Command::Inspect(inspect) => inspect::run(&args.common, inspect),
    }
}

fn init_logging(verbose: u8) {
    let level = match verbose {
        0 => tracing::Level::WARN,
        1 => tracing::Level::INFO,
        2 => tracing::Level::DEBUG,
        _ => tracing::Level::TRACE,
    };
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .without_time()
        .with_target(false)
        .init();
}

impl Common {
    /// The module cache the flags ask for.
    fn cache(&self) -> Option<wasmpool::ModuleCache> {
        if self.no_cache {
            None
        } else if let Some(dir) = &self.cache_dir {
            Some(wasmpool::ModuleCache::new(dir))
        } else {
            wasmpool::ModuleCache::default_location()
        }
    }
}

/// Whether an error is a closed stdout (`wasmpool ... | head`), which is a
/// normal way for a run to end.
pub(crate) fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
