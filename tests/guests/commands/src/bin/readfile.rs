//! Prints `/data/in.txt`, then tries to read paths it was not granted.
//! (process::wasi_command_sees_only_its_preopened_dir)

fn main() {
    match std::fs::read_to_string("/data/in.txt") {
        Ok(text) => println!("read: {}", text.trim()),
        Err(e) => println!("cannot read /data/in.txt: {e}"),
    }
    for path in ["/etc/passwd", "/data/../secret.txt", "/"] {
        match std::fs::read_dir(path)
            .map(|_| ())
            .or_else(|_| std::fs::read(path).map(|_| ()))
        {
            Ok(()) => println!("LEAK: could open {path}"),
            Err(_) => println!("denied: {path}"),
        }
    }
    match std::fs::write("/data/out.txt", "written") {
        Ok(()) => println!("wrote /data/out.txt"),
        Err(_) => println!("denied: write /data/out.txt"),
    }
}
