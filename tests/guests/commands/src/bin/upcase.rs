//! Copies stdin to stdout in upper case. (cli::run_reads_stdin)

use std::io::{BufRead, Write};

fn main() {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for line in std::io::stdin().lock().lines() {
        writeln!(out, "{}", line.unwrap().to_uppercase()).unwrap();
    }
}
