//! The command-line front end: `args` (clap definitions), one module per
//! subcommand, and the shared set-up they need.

mod args;
mod backtrace;
mod broker_map;
mod compile;
mod completions;
mod input;
mod inspect;
mod journal;
mod map;
mod merge;
mod new;
mod output;
mod progress;
pub(crate) mod report;
mod run;
mod shard;
mod worker;

use std::process::ExitCode;

use clap::Parser;

use args::{Args, Command, Common};

/// Parses the command line and runs the subcommand.
pub(crate) fn run() -> anyhow::Result<ExitCode> {
    progress::start_clock();
    let args = Args::parse();
    init_logging(args.verbose);
    let quiet = args.quiet;
    match args.command {
        Command::Map(map) => map::run(&args.common, quiet, map),
        Command::Run(run) => run::run(&args.common, args.verbose, quiet, run),
        Command::Inspect(inspect) => inspect::run(&args.common, inspect),
        Command::Compile(compile) => compile::run(compile),
        Command::New(new) => new::run(quiet, &new),
        Command::Merge(merge) => merge::run(quiet, &merge),
        Command::Completions(completions) => completions::run(&completions),
        Command::Worker(worker) => worker::run(&args.common, quiet, worker),
    }
}

/// Logs `tracing` events to stderr: warnings by default, more with each
/// `-v`, or what `RUST_LOG` says when it is set (e.g.
/// `RUST_LOG=wasmpool=debug`; an invalid directive is reported and
/// skipped, and with none valid `-v` counts). Lines go around the progress
/// bar, not through it.
fn init_logging(verbose: u8) {
    use tracing_subscriber::EnvFilter;
    use tracing_subscriber::filter::Directive;
    let level = match verbose {
        0 => tracing::Level::WARN,
        1 => tracing::Level::INFO,
        2 => tracing::Level::DEBUG,
        _ => tracing::Level::TRACE,
    };
    // Each directive of RUST_LOG on its own, so that a bad one is reported
    // here, once, and the rest still count.
    let mut filter = EnvFilter::default();
    let mut any = false;
    let directives = std::env::var("RUST_LOG").unwrap_or_default();
    let whole = EnvFilter::try_new(&directives).ok();
    let parts = directives
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty());
    for text in parts.filter(|_| whole.is_none()) {
        match text.parse::<Directive>() {
            Ok(directive) => {
                filter = filter.add_directive(directive);
                any = true;
            }
            Err(e) => eprintln!("wasmpool: RUST_LOG: ignoring {text:?}: {e}"),
        }
    }
    if let Some(whole) = whole.filter(|_| !directives.trim().is_empty()) {
        filter = whole;
    } else if !any {
        filter = EnvFilter::default().add_directive(level.into());
    }
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| progress::Stderr)
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
