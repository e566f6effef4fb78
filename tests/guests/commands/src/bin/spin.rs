//! Loops forever. (process::terminate_stops_an_infinite_loop)

fn main() {
    println!("spinning");
    let mut x: u64 = 0;
    loop {
        x = std::hint::black_box(x.wrapping_add(1));
    }
}
