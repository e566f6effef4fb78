//! `wasmpool new NAME`: a task crate that builds for `wasm32-wasip1` and
//! runs under `wasmpool map` as it is.
//!
//! The guest SDK is not on crates.io yet, so the crate depends on it the
//! way that resolves from anywhere: by path on the SDK of the wasmpool
//! source this binary was built from (while that is still there) or the one
//! `--sdk-path` names, else by git on the wasmpool repository.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};

use super::args::NewArgs;

/// The guest SDK beside the host crate this binary was built from.
const BUILT_FROM_SDK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../guest-sdk");

/// The repository a git dependency points at.
const REPOSITORY: &str = env!("CARGO_PKG_REPOSITORY");

/// The example task's name, as `--task` takes it.
pub(crate) const EXAMPLE_TASK: &str = "count_words";

pub(crate) fn run(quiet: bool, args: &NewArgs) -> anyhow::Result<ExitCode> {
    check_name(&args.name)?;
    let dir = args
        .path
        .clone()
        .unwrap_or_else(|| PathBuf::from(&args.name));
    check_empty(&dir)?;
    let sdk = match &args.sdk_path {
        Some(path) => Sdk::Path(sdk_dir(path).with_context(|| {
            format!("--sdk-path {}: not the wasmpool guest SDK", path.display())
        })?),
        None => match sdk_dir(Path::new(BUILT_FROM_SDK)) {
            Ok(path) => Sdk::Path(path),
            Err(_) => Sdk::Git(REPOSITORY.to_string()),
        },
    };
    let files = scaffold(&args.name, &sdk)?;
    for (relative, text) in &files {
        let path = dir.join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("{}: cannot create the directory", parent.display()))?;
        }
        std::fs::write(&path, text)
            .with_context(|| format!("{}: cannot write the file", path.display()))?;
    }
    if !quiet {
        let module = module_name(&args.name);
        eprintln!(
            "wasmpool: created the task crate `{}` in {} ({})\n\
             Build and run it:\n  \
             cd {}\n  \
             cargo build --release --target wasm32-wasip1\n  \
             wasmpool map target/wasm32-wasip1/release/{module}.wasm --task {EXAMPLE_TASK} --input input.jsonl",
            args.name,
            dir.display(),
            sdk.describe(),
            dir.display(),
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Where the guest SDK comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Sdk {
    /// A directory holding the `wasmpool-guest` package (absolute).
    Path(PathBuf),
    /// A git repository holding it.
    Git(String),
}

impl Sdk {
    /// The dependency line of `Cargo.toml`.
    fn dependency(&self) -> anyhow::Result<String> {
        Ok(match self {
            Sdk::Path(path) => {
                let path = path
                    .to_str()
                    .with_context(|| format!("{}: the path is not UTF-8", path.display()))?;
                format!("wasmpool-guest = {{ path = {} }}", toml_string(path))
            }
            Sdk::Git(url) => format!("wasmpool-guest = {{ git = {} }}", toml_string(url)),
        })
    }

    fn describe(&self) -> String {
        match self {
            Sdk::Path(path) => format!("the SDK by path: {}", path.display()),
            Sdk::Git(url) => format!("the SDK by git: {url}"),
        }
    }
}

/// `path`, made absolute, if it holds the `wasmpool-guest` package.
fn sdk_dir(path: &Path) -> anyhow::Result<PathBuf> {
    let dir = std::fs::canonicalize(path)
        .with_context(|| format!("{}: cannot find the directory", path.display()))?;
    let manifest = dir.join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest)
        .with_context(|| format!("{}: cannot read it", manifest.display()))?;
    if !text
        .lines()
        .any(|line| line.replace(' ', "") == "name=\"wasmpool-guest\"")
    {
        bail!(
            "{}: not the manifest of the `wasmpool-guest` package (wasmpool's guest-sdk/)",
            manifest.display()
        );
    }
    Ok(dir)
}

/// A package name cargo takes: ASCII letters, digits, `-` and `_`,
/// starting with a letter or `_`.
fn check_name(name: &str) -> anyhow::Result<()> {
    let Some(first) = name.chars().next() else {
        bail!("the crate needs a name");
    };
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
    {
        bail!(
            "{name:?} is not a crate name: {bad:?} is not allowed (use letters, digits, `-` and `_`; \
             --path chooses the directory)"
        );
    }
    if first.is_ascii_digit() {
        bail!("{name:?} is not a crate name: it must not start with a digit");
    }
    if first == '-' {
        bail!(
            "{name:?} is not a crate name: it must start with a letter or `_` (cargo refuses a leading `-`)"
        );
    }
    if KEYWORDS.contains(&module_name(name).as_str()) {
        bail!("{name:?} is not a crate name: it is a Rust keyword (cargo refuses it)");
    }
    Ok(())
}

/// The keywords cargo refuses as package names (its `restricted_names`).
const KEYWORDS: &[&str] = &[
    "Self", "abstract", "as", "async", "await", "become", "box", "break", "const", "continue",
    "crate", "do", "dyn", "else", "enum", "extern", "false", "final", "fn", "for", "gen", "if",
    "impl", "in", "let", "loop", "macro", "match", "mod", "move", "mut", "override", "priv", "pub",
    "ref", "return", "self", "static", "struct", "super", "trait", "true", "try", "type", "typeof",
    "unsafe", "unsized", "use", "virtual", "where", "while", "yield",
];

/// Refuses a directory that exists and holds anything.
fn check_empty(dir: &Path) -> anyhow::Result<()> {
    let exists = std::fs::symlink_metadata(dir).is_ok();
    match std::fs::read_dir(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && exists => {
            bail!(
                "{}: is a symlink to {}, which does not exist; create that directory, or choose \
                 another --path",
                dir.display(),
                std::fs::read_link(dir).unwrap_or_default().display()
            )
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory && exists => {
            bail!("{}: already exists and is not a directory", dir.display())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => {
            bail!(
                "{}: cannot be created: a file is in its path, where a directory should be",
                dir.display()
            )
        }
        Err(e) => Err(anyhow::Error::new(e).context(format!("{}: cannot read it", dir.display()))),
        Ok(mut entries) => {
            if entries.next().is_some() {
                bail!(
                    "{}: already exists and is not empty; choose another NAME, or a new or empty \
                     directory with --path",
                    dir.display()
                );
            }
            Ok(())
        }
    }
}

/// The module's file name (without `.wasm`): the crate name with `-` as `_`.
fn module_name(name: &str) -> String {
    name.replace('-', "_")
}

/// A TOML basic string.
fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The files of the crate, by path inside its directory.
fn scaffold(name: &str, sdk: &Sdk) -> anyhow::Result<Vec<(&'static str, String)>> {
    let module = module_name(name);
    let cargo_toml = format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"
publish = false

[lib]
# A WebAssembly module with one export per task, not a Rust library.
crate-type = ["cdylib"]

[dependencies]
# The wasmpool guest SDK (not on crates.io yet: a path or git dependency).
{sdk}
serde = {{ version = "1", features = ["derive"] }}

# A workspace of its own: the crate builds where it is, even inside the
# directory of another workspace.
[workspace]
"#,
        sdk = sdk.dependency()?,
    );
    let lib_rs = format!(
        r#"//! wasmpool tasks: each `#[task]` function becomes an export that
//! `wasmpool map --task NAME` runs on every input line, in parallel.

use serde::{{Deserialize, Serialize}};
use wasmpool_guest::task;

/// One input line: `{{"id": 1, "text": "the quick brown fox"}}`.
#[derive(Debug, Deserialize)]
pub struct Doc {{
    pub id: u64,
    pub text: String,
}}

/// One output value: `{{"id": 1, "words": 4, "chars": 19}}`.
#[derive(Debug, PartialEq, Serialize)]
pub struct Count {{
    pub id: u64,
    pub words: usize,
    pub chars: usize,
}}

/// Counts the words and characters of a document.
#[task]
pub fn {EXAMPLE_TASK}(doc: Doc) -> Count {{
    Count {{
        id: doc.id,
        words: doc.text.split_whitespace().count(),
        chars: doc.text.chars().count(),
    }}
}}

// The function itself is untouched by `#[task]`: `cargo test` tests it
// natively.
#[cfg(test)]
mod tests {{
    use super::*;

    #[test]
    fn counts_words_and_chars() {{
        let doc = Doc {{
            id: 7,
            text: "hello wide world".into(),
        }};
        let want = Count {{
            id: 7,
            words: 3,
            chars: 16,
        }};
        assert_eq!({EXAMPLE_TASK}(doc), want);
    }}
}}
"#
    );
    let input = "\
{\"id\": 1, \"text\": \"the quick brown fox\"}
{\"id\": 2, \"text\": \"jumps over the lazy dog\"}
{\"id\": 3, \"text\": \"hello\"}
";
    let readme = format!(
        r#"# {name}

wasmpool tasks in Rust (made by `wasmpool new`). The task `{EXAMPLE_TASK}` in
`src/lib.rs` takes one JSON value per input line and returns one.

Build the module (once: `rustup target add wasm32-wasip1`):

```sh
cargo build --release --target wasm32-wasip1
```

Run the task on every line of `input.jsonl`, in parallel:

```sh
wasmpool map target/wasm32-wasip1/release/{module}.wasm --task {EXAMPLE_TASK} --input input.jsonl
```

```text
{{"index":0,"ok":{{"id":1,"words":4,"chars":19}}}}
{{"index":1,"ok":{{"id":2,"words":5,"chars":23}}}}
{{"index":2,"ok":{{"id":3,"words":1,"chars":5}}}}
```

`--values` prints the bare results; `wasmpool inspect` lists the module's
tasks. Test the functions natively with `cargo test`.
"#
    );
    Ok(vec![
        ("Cargo.toml", cargo_toml),
        ("src/lib.rs", lib_rs),
        ("input.jsonl", input.to_string()),
        ("README.md", readme),
        (".gitignore", "/target\n".to_string()),
    ])
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn names_follow_cargo() {
        assert!(check_name("word-count").is_ok());
        assert!(check_name("wc_2").is_ok());
        assert!(check_name("").is_err());
        assert!(
            check_name("2fast")
                .unwrap_err()
                .to_string()
                .contains("must not start with a digit")
        );
        for name in ["-", "-x"] {
            let err = check_name(name).unwrap_err().to_string();
            assert!(err.contains("must start with a letter or `_`"), "{err}");
        }
        assert!(check_name("_x").is_ok());
        assert!(
            check_name("a/b")
                .unwrap_err()
                .to_string()
                .contains("'/' is not allowed")
        );
        assert_eq!(module_name("word-count"), "word_count");
        assert!(
            check_name("fn")
                .unwrap_err()
                .to_string()
                .contains("Rust keyword")
        );
        assert!(check_name("fnord").is_ok());
    }

    #[test]
    fn a_directory_that_cannot_be_made_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("afile");
        std::fs::write(&file, "x").unwrap();
        let err = |p: &Path| check_empty(p).unwrap_err().to_string();
        assert!(err(&file).contains("already exists and is not a directory"));
        assert!(
            err(&file.join("sub")).contains("a file is in its path"),
            "{}",
            err(&file.join("sub"))
        );
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(dir.path().join("nowhere"), &link).unwrap();
        assert!(err(&link).contains("is a symlink to"), "{}", err(&link));
    }

    #[test]
    fn dependency_lines_are_toml() {
        let git = Sdk::Git("https://github.com/wasmpool/wasmpool".into());
        assert_eq!(
            git.dependency().unwrap(),
            r#"wasmpool-guest = { git = "https://github.com/wasmpool/wasmpool" }"#
        );
        let path = Sdk::Path(PathBuf::from(r#"/src/my "pool"\sdk"#));
        assert_eq!(
            path.dependency().unwrap(),
            r#"wasmpool-guest = { path = "/src/my \"pool\"\\sdk" }"#
        );
        assert_eq!(REPOSITORY, "https://github.com/wasmpool/wasmpool");
    }

    #[test]
    fn the_sdk_this_binary_was_built_from_is_found() {
        let dir = sdk_dir(Path::new(BUILT_FROM_SDK)).unwrap();
        assert!(dir.is_absolute() && dir.ends_with("guest-sdk"));
        assert!(sdk_dir(Path::new(env!("CARGO_MANIFEST_DIR"))).is_err());
    }
}
