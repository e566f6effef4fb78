//! Prints its index, arguments and one environment variable, a line each.
//! (process::hello_*, cli::run_*)

fn main() {
    let index = std::env::var("WASMPOOL_INDEX").unwrap_or_default();
    let args: Vec<String> = std::env::args().skip(1).collect();
    println!(
        "hello from process {index} of {}",
        std::env::var("WASMPOOL_COUNT").unwrap_or_default()
    );
    println!(
        "process {index} args {args:?} GREETING={:?}",
        std::env::var("GREETING").ok()
    );
    if let Some(code) = args.iter().find_map(|a| a.strip_prefix("--exit=")) {
        std::process::exit(code.parse().unwrap());
    }
}
