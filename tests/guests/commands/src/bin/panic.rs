//! Panics with a message, through a few frames of its own, as a buggy WASI
//! command does. (hostile_cli::run_reports_a_trapping_copy_with_its_panic_message)

fn main() {
    let n: u32 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(3);
    descend(n);
}

#[inline(never)]
fn descend(n: u32) {
    if n == 0 {
        panic!("the answer was not 42");
    }
    descend(n - 1);
    std::hint::black_box(n);
}
