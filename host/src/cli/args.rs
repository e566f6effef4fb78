//! Command-line arguments (clap derive). The doc comments are the help text.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Run WebAssembly tasks in parallel on every core, each worker in its own
/// isolated instance.
#[derive(Debug, Parser)]
#[command(name = "wasmpool", version, propagate_version = true)]
pub(crate) struct Args {
    #[command(subcommand)]
    pub(crate) command: Command,
    #[command(flatten)]
    pub(crate) common: Common,
    /// Log more to stderr (-v: compilation and cache, -vv: workers and
    /// instances, -vvv: everything); RUST_LOG, when set, takes its place.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub(crate) verbose: u8,
    /// No progress bar and no summary line on stderr (errors still print).
    #[arg(short, long, global = true)]
    pub(crate) quiet: bool,
}

/// Flags every subcommand takes.
#[derive(Debug, clap::Args)]
pub(crate) struct Common {
    /// Do not read or write the cache of compiled modules.
    #[arg(long, global = true)]
    pub(crate) no_cache: bool,
    /// The cache of compiled modules [default: $WASMPOOL_CACHE_DIR, else
    /// $XDG_CACHE_HOME/wasmpool, else ~/.cache/wasmpool].
    #[arg(long, value_name = "DIR", global = true)]
    pub(crate) cache_dir: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run a task on every input (JSON lines; or text lines, a JSON array, a
    /// range), in parallel, and print the results in input order.
    #[command(after_help = MAP_EXAMPLES)]
    Map(MapArgs),
    /// Run a WASI command (`_start`), like `wasmtime run`; with -n N, run N
    /// isolated copies in parallel.
    #[command(after_help = RUN_EXAMPLES)]
    Run(RunArgs),
    /// List a module's tasks (exports with their signatures) and imports.
    #[command(after_help = INSPECT_EXAMPLES)]
    Inspect(InspectArgs),
    /// Compile a module ahead of time into a .cwasm file, which map, run and
    /// inspect load without compiling (this wasmpool version only).
    #[command(after_help = COMPILE_EXAMPLES)]
    Compile(CompileArgs),
    /// Create a task crate: an example task, its Cargo.toml, a README and a
    /// sample input, ready to build for wasm32-wasip1 and run with `map`.
    #[command(after_help = NEW_EXAMPLES)]
    New(NewArgs),
    /// Join the outputs of `map --shard` into the output of one run, after
    /// checking that they are all of one job and complete.
    #[command(after_help = MERGE_EXAMPLES)]
    Merge(MergeArgs),
    /// Run the tasks of jobs submitted with `map --broker URL` (queue mode
    /// on Redis Streams), one instance per core, with this command line's
    /// limits.
    #[command(after_help = super::worker::EXAMPLES)]
    Worker(super::worker::WorkerArgs),
    /// Print a completion script for a shell.
    #[command(after_help = COMPLETIONS_EXAMPLES)]
    Completions(CompletionsArgs),
}

const MERGE_EXAMPLES: &str = "\
Examples:
  wasmpool merge out.0 out.1 out.2 -o out.jsonl
  wasmpool merge out.* > out.jsonl

Each OUT of `map --shard K/N -o OUT` has a sidecar OUT.shard naming its job
(module, task, input) and its block of tasks. merge takes the outputs in any
order (naming OUT.shard instead of OUT is the same), checks that they are of
one job, that their blocks cover every task once, and that each output is
whole, then writes them in order: exactly the output of one run over the
whole input. A shard that is missing or did not finish is named, with its
tasks; rerun it with its journal. Exit status: 0 if every task succeeded, 1
if any failed (as a single run), 2 when the set is refused.
See docs/scale-out.md.";

const COMPILE_EXAMPLES: &str = "\
Examples:
  wasmpool compile primes.wasm -o primes.cwasm
  seq 0 63 | wasmpool map primes.cwasm --task primes
  wasmpool compile worker.wasm --fuel && wasmpool run worker.cwasm --fuel 1000000

A .cwasm is machine code for this machine and this version of wasmpool;
another version refuses it (compile it again). It runs with every flag of
map and run except --fuel, which needs a module compiled with --fuel (and
only such a module needs --fuel). wasmpool loads precompiled code only from
files named *.cwasm: load only files you compiled yourself.";

const INSPECT_EXAMPLES: &str = "\
Examples:
  wasmpool inspect primes.wasm
  wasmpool inspect target/wasm32-wasip1/release/my_tasks.wasm";

const NEW_EXAMPLES: &str = "\
Examples:
  wasmpool new word-count
  wasmpool new word-count --path ~/src/wc
  wasmpool new word-count --sdk-path ~/src/wasmpool/guest-sdk

Then, in the new directory:
  cargo build --release --target wasm32-wasip1
  wasmpool map target/wasm32-wasip1/release/word_count.wasm --task count_words --input input.jsonl

The SDK is not on crates.io yet: the crate depends on it by path (the
guest-sdk/ of the wasmpool source this binary was built from, or
--sdk-path), else by git.";

const COMPLETIONS_EXAMPLES: &str = "\
Examples:
  wasmpool completions bash > ~/.local/share/bash-completion/completions/wasmpool
  wasmpool completions zsh > ~/.zfunc/_wasmpool
  wasmpool completions fish > ~/.config/fish/completions/wasmpool.fish
  wasmpool completions powershell >> $PROFILE";

const RUN_EXAMPLES: &str = "\
Examples:
  wasmpool run hello.wasm --name world
  wasmpool run worker.wasm -n 5 --tag -- --shard {i}
  wasmpool run counter.wasm -n 5 --shared-memory 64KiB
  wasmpool run tool.wasm --dir ./data::/data:ro --env LANG=C

With -n, each copy gets WASMPOOL_INDEX and WASMPOOL_COUNT; `{i}` in the
arguments becomes the copy's index. Output is kept whole line by line. The
limits (--timeout, --max-memory, --fuel, --max-stack) apply to each copy.
Exit status: the guest's own with one copy; with several, 0 if all exited 0,
else the first non-zero status in index order (134 for a trap, 124 past
--timeout). 2 on usage and host errors.";

#[derive(Debug, clap::Args)]
pub(crate) struct RunArgs {
    /// The module: a WASI command (.wasm or WebAssembly text).
    #[arg(value_name = "MODULE")]
    pub(crate) module: PathBuf,
    /// How many isolated copies to run in parallel; each gets
    /// WASMPOOL_INDEX and WASMPOOL_COUNT [default: one, without them].
    #[arg(short = 'n', long = "copies", value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=10000))]
    pub(crate) copies: Option<u32>,
    /// Grant a host directory: HOST::GUEST, or HOST::GUEST:ro for read-only
    /// (HOST alone maps it to the same path).
    #[arg(long = "dir", value_name = "HOST::GUEST[:ro]", value_parser = parse_dir)]
    pub(crate) dirs: Vec<(PathBuf, String, bool)>,
    /// Set an environment variable (K=V), or pass one of the host's (K).
    #[arg(long = "env", value_name = "K=V", value_parser = parse_env)]
    pub(crate) env: Vec<(String, Option<String>)>,
    /// The export to run instead of `_start` (of type `() -> ()`).
    #[arg(long, value_name = "EXPORT", default_value = "_start")]
    pub(crate) invoke: String,
    /// Declare a named queue shared by the copies, holding at most CAPACITY
    /// messages (default 1024) and BYTES of them (default 64MiB).
    #[arg(long = "queue", value_name = "NAME[:CAPACITY[:BYTES]]", value_parser = parse_queue)]
    pub(crate) queues: Vec<QueueArg>,
    /// Give the copies one shared region of SIZE bytes (e.g. 64KiB; a
    /// whole number of 64KiB pages, else rounded up with a warning).
    #[arg(long, value_name = "SIZE", value_parser = parse_region_size)]
    pub(crate) shared_memory: Option<usize>,
    #[command(flatten)]
    pub(crate) limits: LimitArgs,
    #[command(flatten)]
    pub(crate) mode: ModeArgs,
    /// Prefix each line a copy writes (stdout and stderr) with its index and
    /// a tab, as GNU parallel's --tag.
    #[arg(long)]
    pub(crate) tag: bool,
    /// Arguments for the guest: everything after MODULE that is not one of
    /// wasmpool's flags before it, or everything after `--`.
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "ARGS"
    )]
    pub(crate) args: Vec<String>,
}

/// `HOST::GUEST[:ro]` or `HOST`.
fn parse_dir(s: &str) -> Result<(PathBuf, String, bool), String> {
    let (spec, read_only) = match s.strip_suffix(":ro") {
        Some(rest) => (rest, true),
        None => (s, false),
    };
    let (host, guest) = match spec.split_once("::") {
        Some((host, guest)) => (host, guest),
        None => (spec, spec),
    };
    if host.is_empty() || guest.is_empty() {
        return Err(format!("{s:?}: expected HOST::GUEST[:ro]"));
    }
    // `A:B` (one colon, as in `docker -v`) where no directory `A:B` exists:
    // the user meant `A::B`.
    if !spec.contains("::")
        && let Some((a, b)) = spec.split_once(':')
        && !a.is_empty()
        && !b.is_empty()
        && !std::path::Path::new(spec).exists()
    {
        let ro = if read_only { ":ro" } else { "" };
        return Err(format!(
            "{s:?}: no directory {spec:?}; did you mean {a}::{b}{ro}? (HOST::GUEST takes two colons)"
        ));
    }
    Ok((PathBuf::from(host), guest.to_string(), read_only))
}

/// `K=V`, or `K` to pass the host's value.
fn parse_env(s: &str) -> Result<(String, Option<String>), String> {
    let (k, v) = match s.split_once('=') {
        Some((k, v)) => (k, Some(v.to_string())),
        None => (s, None),
    };
    if k.is_empty() {
        return Err(format!("{s:?}: expected K=V or K"));
    }
    Ok((k.to_string(), v))
}

const MAP_EXAMPLES: &str = "\
Examples:
  seq 0 63 | wasmpool map primes.wasm --task primes
  wasmpool map square.wasm --task square_i64 --input numbers.jsonl --values
  echo '[3, 4]' | wasmpool map add.wasm --task add
  wasmpool map words.wasm --task count_words -R --input book.txt -o counts.jsonl
  wasmpool map square.wasm --task square_i64 --range 0..1000 --values
  wasmpool map tasks.wasm --task shout --input-array names.json -r
  wasmpool map primes.wasm --task primes --input in.jsonl --shard 1/4 -o out.1 --journal j.1
  wasmpool map primes.wasm --task primes --input in.jsonl --broker redis://queue:6379/0

Output: one JSON line per input line, in input order:
  {\"index\":0,\"ok\":2262}
  {\"index\":1,\"error\":{\"kind\":\"trap\",\"message\":\"...\"}}
Exit status: 0 if every task succeeded, 1 if any failed, 2 on other errors.";

#[derive(Debug, clap::Args)]
pub(crate) struct MapArgs {
    /// The module: a .wasm file (or WebAssembly text).
    #[arg(value_name = "MODULE")]
    pub(crate) module: PathBuf,
    /// The task to run: an SDK task, or a numeric export.
    #[arg(long, short, value_name = "NAME")]
    pub(crate) task: String,
    /// JSON lines, one task argument per line; `-` is stdin [default: -].
    /// A numeric export takes a number, or an array for several parameters.
    #[arg(long, short, value_name = "FILE")]
    pub(crate) input: Option<PathBuf>,
    /// Read text: each input line (blank ones too) is given to the task as a
    /// JSON string, like `jq -R`.
    #[arg(long, short = 'R', conflicts_with_all = ["input_array", "range"])]
    pub(crate) raw: bool,
    /// Read one JSON array (pretty-printed or not) from FILE (`-`: stdin),
    /// streamed: each element is one task's input.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["input", "range"])]
    pub(crate) input_array: Option<PathBuf>,
    /// Run the task on the integers A, A+1, ..., B-1 (half-open, as in
    /// Rust; `A..=B` includes B), without reading any input.
    #[arg(long, value_name = "A..B", value_parser = super::input::parse_range,
          allow_hyphen_values = true, conflicts_with = "input")]
    pub(crate) range: Option<super::input::Range>,
    /// Worker threads, each with its own instance [default: the number of cores].
    #[arg(long, short = 'j', value_name = "N", value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub(crate) workers: Option<u32>,
    /// Print bare result values, one per line; failures go to stderr.
    #[arg(long)]
    pub(crate) values: bool,
    /// Like --values, but a string result is printed as its text, without
    /// quotes or escapes (like `jq -r`).
    #[arg(long, short = 'r')]
    pub(crate) raw_output: bool,
    /// Write the results to FILE instead of stdout; FILE is replaced only
    /// once every result is written (a run that ends with status 2 leaves
    /// it as it was).
    #[arg(long, short = 'o', value_name = "FILE")]
    pub(crate) output: Option<PathBuf>,
    /// Declare a named queue shared by every instance, holding at most
    /// CAPACITY messages (default 1024) and BYTES of them (default 64MiB).
    #[arg(long = "queue", value_name = "NAME[:CAPACITY[:BYTES]]", value_parser = parse_queue)]
    pub(crate) queues: Vec<QueueArg>,
    /// Give the instances one shared region of SIZE bytes (e.g. 64KiB, 16MiB;
    /// a whole number of 64KiB pages, else rounded up with a warning).
    #[arg(long, value_name = "SIZE", value_parser = parse_region_size)]
    pub(crate) shared_memory: Option<usize>,
    #[command(flatten)]
    pub(crate) limits: LimitArgs,
    #[command(flatten)]
    pub(crate) mode: ModeArgs,
    #[command(flatten)]
    pub(crate) pool: PoolArgs,
    /// Stop as soon as a task fails: tasks still running or waiting (even
    /// blocked for good) are cancelled and reported as `terminated`; every
    /// result before the failure and the failure itself are written, then
    /// the run exits 1.
    #[arg(long)]
    pub(crate) fail_fast: bool,
    /// Append each finished result to FILE as it comes; a rerun with the same
    /// journal and input skips the tasks it holds and prints the same output
    /// (a journal of other input is refused).
    #[arg(long, value_name = "FILE")]
    pub(crate) journal: Option<PathBuf>,
    /// With --journal: run the tasks the journal records as failed again,
    /// instead of replaying their failures.
    #[arg(long, requires = "journal")]
    pub(crate) retry_failed: bool,
    /// Run only the K-th of N contiguous blocks of the input's tasks (from
    /// 0; `auto`: from SLURM_ARRAY_TASK_ID/COUNT or
    /// JOB_COMPLETION_INDEX/JOB_COMPLETIONS), with their global indices;
    /// needs an input file or --range, and -o OUT, beside which it writes
    /// OUT.shard for `wasmpool merge`.
    #[arg(long, value_name = "K/N|auto", value_parser = super::shard::parse_shard,
          requires = "output")]
    pub(crate) shard: Option<super::shard::ShardArg>,
    /// Queue mode: submit the inputs to a Redis broker
    /// (redis://HOST:PORT/DB) for `wasmpool worker`s to run, and print
    /// their results in input order; rerun, it re-attaches to the same job.
    #[arg(long, value_name = "URL")]
    pub(crate) broker: Option<String>,
    /// With --broker: put B consecutive inputs in one queue entry (for tiny
    /// tasks) [default: 1].
    #[arg(long, value_name = "B", requires = "broker",
          value_parser = clap::value_parser!(u32).range(1..=65536))]
    pub(crate) batch: Option<u32>,
}

#[derive(Debug, clap::Args)]
pub(crate) struct MergeArgs {
    /// The outputs of `map --shard ... -o OUT` (or their OUT.shard
    /// sidecars), in any order.
    #[arg(value_name = "OUT", required = true)]
    pub(crate) outputs: Vec<PathBuf>,
    /// Write the merged output to FILE instead of stdout, atomically (FILE
    /// is replaced only once all of it is written).
    #[arg(long, short = 'o', value_name = "FILE")]
    pub(crate) output: Option<PathBuf>,
}

/// Limits, the same for `map` and `run` (see docs/security.md).
#[derive(Debug, clap::Args)]
#[command(next_help_heading = "Limits")]
pub(crate) struct LimitArgs {
    /// The most memory each instance may grow to (e.g. 256MiB).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub(crate) max_memory: Option<usize>,
    /// The most time one task (or copy) may run, wherever it waits (e.g. 5s,
    /// 250ms, 2m; at most a year).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub(crate) timeout: Option<std::time::Duration>,
    /// The fuel each task (or copy) starts with (a deterministic CPU limit;
    /// slower).
    #[arg(long, value_name = "N")]
    pub(crate) fuel: Option<u64>,
    /// The most stack wasm code may use (e.g. 1MiB; at most 16MiB) [default: 512KiB].
    #[arg(long, value_name = "SIZE", value_parser = parse_stack)]
    pub(crate) max_stack: Option<usize>,
    /// The most elements a table may grow to [default: 20000].
    #[arg(long, value_name = "N")]
    pub(crate) max_table_elements: Option<usize>,
    /// The most output one task may write [default: 64MiB].
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub(crate) max_output: Option<usize>,
}

impl LimitArgs {
    /// The limits the flags ask for.
    pub(crate) fn to_limits(&self) -> wasmpool::Limits {
        let mut limits = wasmpool::Limits::default();
        limits.max_memory = self.max_memory;
        limits.timeout = self.timeout;
        limits.fuel = self.fuel;
        limits.max_stack = self.max_stack;
        if let Some(n) = self.max_table_elements {
            limits.max_table_elements = n;
        }
        if let Some(bytes) = self.max_output {
            limits.max_output = bytes;
        }
        limits
    }
}

/// The async mode, the same for `map` and `run` (see docs/async.md).
#[derive(Debug, clap::Args)]
pub(crate) struct ModeArgs {
    /// Run up to N tasks (or copies) at once on each worker thread, each in
    /// its own instance: a guest that waits (sleeps, queues, host calls) is
    /// suspended instead of holding a thread. For I/O-bound work.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub(crate) concurrency: Option<u32>,
}

/// How a pool's instances live.
#[derive(Debug, clap::Args)]
pub(crate) struct PoolArgs {
    /// `worker`: one instance per worker, reused; `task`: a fresh instance
    /// for every task.
    #[arg(long, value_name = "MODE", default_value = "worker", value_parser = ["worker", "task"])]
    pub(crate) isolation: String,
    /// Replace each worker's instance after N tasks.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) recycle_after: Option<u64>,
}

/// `5s`, `250ms`, `2m`, `1h`, `1.5s`, or a plain number of seconds.
pub(crate) fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration such as 5s or 250ms"))?;
    let secs = match unit.trim() {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "us" | "µs" => n / 1e6,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        other => {
            return Err(format!(
                "unknown duration unit {other:?} (use ms, s, m or h)"
            ));
        }
    };
    if !(secs > 0.0 && secs.is_finite()) {
        return Err(format!("{s:?}: a duration must be positive"));
    }
    match std::time::Duration::try_from_secs_f64(secs) {
        Ok(d) if d <= wasmpool::MAX_TIMEOUT => Ok(d),
        _ => Err(format!("{s:?} is too long: at most a year (365 days)")),
    }
}

/// A stack size: a size, at most [`wasmpool::MAX_STACK_LIMIT`].
fn parse_stack(s: &str) -> Result<usize, String> {
    let bytes = parse_size(s)?;
    if bytes == 0 {
        return Err("the stack must be more than 0 bytes".into());
    }
    if bytes > wasmpool::MAX_STACK_LIMIT {
        return Err(format!(
            "{s:?} is too large: the wasm stack may be at most 16MiB"
        ));
    }
    Ok(bytes)
}

/// A queue to declare: `NAME[:CAPACITY[:BYTES]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct QueueArg {
    pub(crate) name: String,
    pub(crate) capacity: usize,
    pub(crate) max_bytes: usize,
}

/// `NAME`, `NAME:CAPACITY` or `NAME:CAPACITY:BYTES`.
fn parse_queue(s: &str) -> Result<QueueArg, String> {
    let mut parts = s.splitn(3, ':');
    let name = parts.next().unwrap_or_default();
    let capacity = match parts.next() {
        None => 1024,
        Some(cap) => {
            let cap = cap
                .parse::<usize>()
                .map_err(|e| format!("capacity {cap:?}: {e}"))?;
            if cap == 0 {
                return Err("the capacity must be at least 1".into());
            }
            cap
        }
    };
    let max_bytes = match parts.next() {
        None => wasmpool::DEFAULT_QUEUE_BYTES,
        Some(bytes) => parse_size(bytes)?,
    };
    if max_bytes < 64 {
        return Err(format!(
            "{max_bytes} bytes: no message fits (each counts its length plus 64 bytes of \
             bookkeeping): give at least 64"
        ));
    }
    if name.is_empty() {
        return Err("the queue needs a name".into());
    }
    Ok(QueueArg {
        name: name.to_string(),
        capacity,
        max_bytes,
    })
}

/// A shared region's size: a size of at least one byte (rounded up to whole
/// 64 KiB pages when the run starts, with a warning).
fn parse_region_size(s: &str) -> Result<usize, String> {
    match parse_size(s)? {
        0 => Err("a shared region must have at least one 64KiB page (e.g. 64KiB)".into()),
        bytes => Ok(bytes),
    }
}

/// A size in bytes: `65536`, `64KiB`, `16MiB`, `1GiB` (also `K`, `M`, `G`,
/// `KB`, `MB`, `GB`, all powers of 1024).
fn parse_size(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: usize = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size such as 65536, 64KiB or 16MiB"))?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        other => return Err(format!("unknown size unit {other:?} (use KiB, MiB or GiB)")),
    };
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("{s:?} is too large"))
}

#[derive(Debug, clap::Args)]
pub(crate) struct InspectArgs {
    /// The module: a .wasm file (or WebAssembly text).
    #[arg(value_name = "MODULE")]
    pub(crate) module: PathBuf,
}

#[derive(Debug, clap::Args)]
pub(crate) struct CompileArgs {
    /// The module to compile: a .wasm file (or WebAssembly text).
    #[arg(value_name = "MODULE")]
    pub(crate) module: PathBuf,
    /// Where to write the precompiled module; its name must end in .cwasm
    /// [default: MODULE with the extension .cwasm].
    #[arg(long, short, value_name = "OUT.cwasm")]
    pub(crate) output: Option<PathBuf>,
    /// Compile fuel metering in, for runs with --fuel (a module compiled
    /// with it runs only with --fuel, and one without it only without).
    #[arg(long)]
    pub(crate) fuel: bool,
}

#[derive(Debug, clap::Args)]
pub(crate) struct NewArgs {
    /// The crate's name (letters, digits, `-` and `_`; the module is
    /// NAME.wasm with `-` as `_`).
    #[arg(value_name = "NAME")]
    pub(crate) name: String,
    /// Where to create it; it must not exist or be empty [default: ./NAME].
    #[arg(long, value_name = "DIR")]
    pub(crate) path: Option<PathBuf>,
    /// The guest SDK's directory (wasmpool's `guest-sdk/`) to depend on by
    /// path [default: the one this wasmpool was built from, if it is still
    /// there, else a git dependency on the wasmpool repository].
    #[arg(long, value_name = "DIR")]
    pub(crate) sdk_path: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub(crate) struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_name = "SHELL")]
    pub(crate) shell: clap_complete::Shell,
}

#[cfg(test)]
mod test {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn verify_cli() {
        Args::command().debug_assert();
    }

    /// Every subcommand's help, whoever adds it, ends with examples of it.
    #[test]
    fn every_subcommand_help_has_examples() {
        let mut command = Args::command();
        command.build();
        let mut checked = 0;
        for sub in command.get_subcommands_mut() {
            let name = sub.get_name().to_string();
            if name == "help" {
                continue;
            }
            let help = sub.render_long_help().to_string();
            let (_, examples) = help
                .split_once("\nExamples:\n")
                .unwrap_or_else(|| panic!("`wasmpool {name} --help` has no Examples: section"));
            assert!(
                examples
                    .lines()
                    .take_while(|line| line.starts_with("  "))
                    .any(|line| line.contains(&format!("wasmpool {name} "))),
                "`wasmpool {name} --help`: no example runs `wasmpool {name}`:\n{examples}"
            );
            checked += 1;
        }
        assert!(checked >= 5, "only {checked} subcommands");
    }

    #[test]
    fn map_flags_parse() {
        let args = Args::try_parse_from([
            "wasmpool", "map", "m.wasm", "--task", "f", "-j", "3", "--values",
        ])
        .unwrap();
        let Command::Map(map) = args.command else {
            panic!("not map")
        };
        assert_eq!(map.task, "f");
        assert_eq!(map.workers, Some(3));
        assert!(map.values);
        assert!(
            Args::try_parse_from(["wasmpool", "map", "m.wasm", "--task", "f", "-j", "0"]).is_err()
        );
        assert!(
            Args::try_parse_from(["wasmpool", "map", "m.wasm"]).is_err(),
            "--task is required"
        );
    }

    #[test]
    fn dir_and_env_values_parse() {
        assert_eq!(
            parse_dir("./data::/data:ro"),
            Ok((PathBuf::from("./data"), "/data".into(), true))
        );
        assert_eq!(
            parse_dir("/tmp"),
            Ok((PathBuf::from("/tmp"), "/tmp".into(), false))
        );
        assert!(parse_dir("::/x").is_err());
        let err = parse_dir("/nonexistent-host:/data:ro").unwrap_err();
        assert!(
            err.contains("did you mean /nonexistent-host::/data:ro?"),
            "{err}"
        );
        let dir = tempfile::tempdir().unwrap();
        let colon = dir.path().join("a:b");
        std::fs::create_dir(&colon).unwrap();
        let colon = colon.to_str().unwrap();
        assert_eq!(
            parse_dir(colon),
            Ok((PathBuf::from(colon), colon.to_string(), false)),
            "an existing directory with a colon in its name is taken as it is"
        );
        assert_eq!(parse_region_size("1"), Ok(1));
        assert!(
            parse_region_size("0")
                .unwrap_err()
                .contains("at least one 64KiB page")
        );
        assert_eq!(parse_env("A=b=c"), Ok(("A".into(), Some("b=c".into()))));
        assert_eq!(parse_env("HOME"), Ok(("HOME".into(), None)));
        assert!(parse_env("=x").is_err());
        let args = Args::try_parse_from([
            "wasmpool", "run", "m.wasm", "-n", "5", "--", "--shard", "{i}",
        ])
        .unwrap();
        let Command::Run(run) = args.command else {
            panic!("not run")
        };
        assert_eq!(
            (run.copies, run.args),
            (Some(5), vec!["--shard".to_string(), "{i}".to_string()])
        );
    }

    #[test]
    fn queue_and_size_values_parse() {
        let q = |name: &str, capacity, max_bytes| QueueArg {
            name: name.into(),
            capacity,
            max_bytes,
        };
        assert_eq!(parse_queue("jobs"), Ok(q("jobs", 1024, 64 << 20)));
        assert_eq!(parse_queue("jobs:8"), Ok(q("jobs", 8, 64 << 20)));
        assert_eq!(parse_queue("jobs:8:1MiB"), Ok(q("jobs", 8, 1 << 20)));
        assert!(parse_queue("jobs:8:lots").is_err());
        assert!(parse_queue("jobs:0").is_err());
        assert!(parse_queue(":8").is_err());
        assert!(
            parse_queue("jobs:8:63")
                .unwrap_err()
                .contains("no message fits")
        );
        assert_eq!(parse_queue("jobs:8:64"), Ok(q("jobs", 8, 64)));
        assert_eq!(parse_size("65536"), Ok(65536));
        assert_eq!(parse_size("64KiB"), Ok(65536));
        assert_eq!(parse_size("16MiB"), Ok(16 << 20));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert!(
            parse_size("12 parsecs")
                .unwrap_err()
                .contains("unknown size unit")
        );
        assert!(parse_size("lots").is_err());
    }

    #[test]
    fn durations_parse() {
        use std::time::Duration;
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("1e20").is_err());
        assert!(
            parse_duration("100000000000000000000")
                .unwrap_err()
                .contains("at most a year")
        );
        assert!(parse_stack("64MiB").unwrap_err().contains("at most 16MiB"));
        assert_eq!(parse_stack("2MiB"), Ok(2 << 20));
        assert!(
            parse_duration("5 fortnights")
                .unwrap_err()
                .contains("unknown duration unit")
        );
    }
}
