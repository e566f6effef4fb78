//! `wasmpool run MODULE [-n N] [--dir ..] [--env ..] -- ARGS`: WASI commands,
//! one isolated copy or N in parallel.

use std::process::ExitCode;

use wasmpool::ProcessGroup;

use super::args::{Common, RunArgs};

pub(crate) fn run(common: &Common, verbose: u8, args: RunArgs) -> anyhow::Result<ExitCode> {
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
        .inherit_stdin(copies == 1);
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
    if let Some(bytes) = args.shared_memory {
        builder = builder.shared_memory(bytes);
    }
    if let Some(n) = args.mode.concurrency {
        builder = builder.concurrency(n);
    }
    let group = builder.build()?;
    let processes = (0..copies)
        .map(|i| group.spawn(i))
        .collect::<Result<Vec<_>, _>>()?;
    let mut first_failure = None;
    for p in processes {
        let index = p.index();
        let status = p.wait();
        if let Some(err) = status.error() {
            let who = if copies == 1 {
                String::new()
            } else {
                format!("process {index}: ")
            };
            eprintln!("wasmpool: {}: {who}{err}", args.module.display());
            if let Some(bt) = err.backtrace() {
                eprint!("{}", super::backtrace::shown(bt, verbose));
            }
        }
        if !status.success() && first_failure.is_none() {
            first_failure = Some(status.code());
        }
    }
    Ok(match first_failure {
        None => ExitCode::SUCCESS,
        Some(code) => ExitCode::from(u8::try_from(code).unwrap_or(1).max(1)),
    })
}
