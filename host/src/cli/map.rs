//! `wasmpool map MODULE --task NAME`: JSON lines in, JSON lines out, in
//! input order, each line written as soon as every earlier one is.

use std::cell::RefCell;
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::process::ExitCode;
use std::rc::Rc;
use std::time::Instant;

use anyhow::Context;
use wasmpool::{Output, Task, TaskError, TryNext};

use super::args::{Common, MapArgs};

pub(crate) fn run(common: &Common, args: MapArgs) -> anyhow::Result<ExitCode> {
    let mut builder = wasmpool::Pool::builder()
        .module_file(&args.module)
        .cache(common.cache());
    if let Some(n) = args.workers {
        builder = builder.workers(n as usize);
    }
    for (name, capacity) in &args.queues {
        builder = builder.queue(name.clone(), *capacity);
    }
    if let Some(bytes) = args.shared_memory {
        builder = builder.shared_memory(bytes);
    }
    let pool = builder.build()?;
    let task = pool.task(&args.task)?;

    let (reader, input_name): (Box<dyn BufRead>, String) = match &args.input {
        None => (Box::new(io::stdin().lock()), "<stdin>".into()),
        Some(p) if p.as_os_str() == "-" => (Box::new(io::stdin().lock()), "<stdin>".into()),
        Some(path) => {
            let file = File::open(path)
                .with_context(|| format!("{}: cannot open the input", path.display()))?;
            (
                Box::new(BufReader::with_capacity(1 << 16, file)),
                path.display().to_string(),
            )
        }
    };
    let read_error = Rc::new(RefCell::new(None));
    let lines = Lines {
        reader,
        line: 0,
        buf: Vec::new(),
        error: read_error.clone(),
    };
    let payloads = lines.map({
        let (task, input_name) = (task.clone(), input_name.clone());
        move |(line, text)| {
            task.parse_json(&text).map_err(|e| {
                TaskError::new(e.kind(), format!("{input_name}:{line}: {}", e.message()))
            })
        }
    });

    let start = Instant::now();
    let mut out = BufWriter::with_capacity(1 << 16, io::stdout().lock());
    let mut line = Vec::with_capacity(256);
    let (mut total, mut failed) = (0u64, 0u64);
    let mut stream = pool.imap_payloads(&task, payloads);
    loop {
        let result = match stream.try_next() {
            TryNext::Ready(r) => r,
            TryNext::Done => break,
            TryNext::Pending => {
                // Everything finished so far is written: let it out before waiting.
                out.flush()?;
                match stream.next() {
                    Some(r) => r,
                    None => break,
                }
            }
        };
        let index = total;
        total += 1;
        line.clear();
        match render(&task, index, result, &mut line, args.values) {
            Ok(()) => out.write_all(&line)?,
            Err(err) => {
                failed += 1;
                if args.values {
                    eprintln!("wasmpool: {}: task {index}: {err}", input_name);
                } else {
                    write_error(&mut out, index, &err)?;
                }
            }
        }
    }
    drop(stream);
    out.flush()?;
    if let Some(err) = read_error.borrow_mut().take() {
        return Err(anyhow::Error::new(err).context(format!("{input_name}: cannot read the input")));
    }
    tracing::info!(
        "{total} tasks on {} workers in {:.3?} ({} failed)",
        pool.workers(),
        start.elapsed(),
        failed
    );
    if total == 0 {
        eprintln!("wasmpool: {input_name}: no input lines, so no tasks ran");
    }
    if failed > 0 {
        eprintln!("wasmpool: {failed} of {total} tasks failed");
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes one successful result line, or hands back the task's error.
fn render(
    task: &Task,
    index: u64,
    result: Result<Output, TaskError>,
    line: &mut Vec<u8>,
    bare: bool,
) -> Result<(), TaskError> {
    let output = result?;
    if !bare {
        line.extend_from_slice(b"{\"index\":");
        line.extend_from_slice(index.to_string().as_bytes());
        line.extend_from_slice(b",\"ok\":");
    }
    task.write_json(&output, line)?;
    if !bare {
        line.push(b'}');
    }
    line.push(b'\n');
    Ok(())
}

fn write_error(out: &mut impl Write, index: u64, err: &TaskError) -> io::Result<()> {
    #[derive(serde::Serialize)]
    struct Line<'a> {
        index: u64,
        error: Body<'a>,
    }
    #[derive(serde::Serialize)]
    struct Body<'a> {
        kind: &'a str,
        message: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        exit_code: Option<i32>,
        #[serde(skip_serializing_if = "Option::is_none")]
        backtrace: Option<&'a str>,
    }
    let body = Body {
        kind: err.kind().as_str(),
        message: err.message(),
        exit_code: err.exit_code(),
        backtrace: err.backtrace(),
    };
    serde_json::to_writer(&mut *out, &Line { index, error: body })?;
    out.write_all(b"\n")
}

/// Non-blank input lines with their line numbers (from 1). A read error
/// ends the lines and is kept for the caller to report.
struct Lines {
    reader: Box<dyn BufRead>,
    line: u64,
    buf: Vec<u8>,
    error: Rc<RefCell<Option<io::Error>>>,
}

impl Iterator for Lines {
    type Item = (u64, Vec<u8>);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            self.buf.clear();
            match self.reader.read_until(b'\n', &mut self.buf) {
                Ok(0) => return None,
                Ok(_) => {
                    self.line += 1;
                    if self.buf.trim_ascii().is_empty() {
                        continue;
                    }
                    return Some((self.line, self.buf.clone()));
                }
                Err(e) => {
                    *self.error.borrow_mut() = Some(e);
                    return None;
                }
            }
        }
    }
}
