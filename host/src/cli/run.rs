//! `wasmpool run MODULE [-n N] [--dir ..] [--env ..] -- ARGS`: WASI commands,
//! one isolated copy or N in parallel.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use wasmpool::{Process, ProcessGroup, Stdio, TaskErrorKind};

use super::args::{Common, RunArgs};
use super::progress::{self, Progress, Tally};

pub(crate) fn run(
    common: &Common,
    verbose: u8,
    quiet: bool,
    args: RunArgs,
) -> anyhow::Result<ExitCode> {
    let program = args
        .module
        .file_name()
        .map_or_else(|| "module".into(), |n| n.to_string_lossy().into_owned());
    let copies = args.copies.unwrap_or(1);
    let mut builder = ProcessGroup::builder()
        .module_file(&args.module)
        .cache(common.cache())
        .limits(args.limits.to_limits())
        .args(std::iter::once(program).chain(args.args.iter().cloned()))
        .entry(args.invoke.clone())
        .inherit_stdin(copies == 1)
        .stdio(if args.tag {
            Stdio::Tagged
        } else {
            Stdio::Lines
        });
    if let Some(n) = args.copies {
        builder = builder.copies(n);
    }
    for (k, v) in &args.env {
        let value = match v {
            Some(v) => v.clone(),
            None => match std::env::var(k) {
                Ok(v) => v,
                Err(_) => continue,
            },
        };
        builder = builder.env(k.clone(), value);
    }
    for (host, guest, read_only) in &args.dirs {
        builder = builder.dir(host.clone(), guest.clone(), *read_only);
    }
    for q in &args.queues {
        builder = builder.queue_with_max_bytes(q.name.clone(), q.capacity, q.max_bytes);
    }
    if super::compile::is_cwasm(&args.module) {
        // SAFETY: the user named a `.cwasm` file on the command line, the
        // CLI's sign that they trust it as `wasmpool compile` output (see
        // `compile::is_cwasm`); its version and settings are checked.
        builder = unsafe { builder.allow_precompiled(true) };
    }
    if let Some(bytes) = args.shared_memory {
        builder = builder.shared_memory(super::report::region_size(bytes));
    }
    if let Some(n) = args.mode.concurrency {
        builder = builder.concurrency(n);
    }
    let group = builder.build()?;
    // With several copies, a bar on a terminal stderr; not when stdout is
    // on the terminal too, where the copies' lines would run through it.
    let several = args.copies.is_some();
    let progress = Progress::start(
        quiet,
        progress::COPIES,
        several && !std::io::stdout().is_terminal(),
    );
    progress.set_total(u64::from(copies));
    let processes = (0..copies)
        .map(|i| group.spawn(i))
        .collect::<Result<Vec<_>, _>>()?;
    let mut first_failure = None;
    let mut failed = 0;
    for p in &processes {
        let index = p.index();
        if progress.is_shown() {
            while p.join(Some(TICK)).is_none() {
                let (done, failed) = tally(&processes);
                progress.update(done, failed);
            }
        }
        let status = p.join(None).expect("joined without a timeout");
        // A single copy that called `proc_exit(n)` ended as a command does:
        // its status is wasmpool's, and there is nothing to add to it.
        let plain_exit = |e: &wasmpool::TaskError| copies == 1 && e.kind() == TaskErrorKind::Exit;
        if let Some(err) = status.error().filter(|e| !plain_exit(e)) {
            let who = if copies == 1 {
                String::new()
            } else {
                format!("process {index}: ")
            };
            progress::suspend(|| {
                eprintln!("wasmpool: {}: {who}{err}", args.module.display());
                if let Some(bt) = err.backtrace() {
                    eprint!("{}", super::backtrace::shown(bt, verbose));
                }
            });
        }
        if !status.success() {
            failed += 1;
            first_failure.get_or_insert(status.code());
        }
    }
    for p in processes {
        p.wait();
    }
    // A summary only for several copies: one copy is a command, whose
    // output is its own.
    if several {
        progress.finish(Tally {
            done: u64::from(copies),
            failed,
            replayed: None,
        });
    }
    Ok(match first_failure {
        None => ExitCode::SUCCESS,
        Some(code) => ExitCode::from(u8::try_from(code).unwrap_or(1).max(1)),
    })
}

/// How often the bar's counts are taken while copies run.
const TICK: Duration = Duration::from_millis(100);

/// How many copies have ended, and how many of them failed.
fn tally(processes: &[Process]) -> (u64, u64) {
    processes
        .iter()
        .filter_map(Process::exit_code)
        .fold((0, 0), |(done, failed), code| {
            (done + 1, failed + u64::from(code != 0))
        })
}
