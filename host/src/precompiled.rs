//! Modules compiled ahead of time: `.cwasm` files.
//!
//! Entry points: [`Precompiler`] makes them (what `wasmpool compile` runs);
//! `load` turns one back into a module, for a pool or process group whose
//! builder allowed it (`allow_precompiled`, an `unsafe` opt-in).
//!
//! A `.cwasm` is wasmtime's precompiled format, stamped with this
//! wasmpool's version (`engine::module_version`). Its code is compiled
//! for one engine profile that every run can use: epoch checks always
//! compiled in (so `--timeout`, the async mode and process groups work; a
//! pool without a timeout pays their small cost), and fuel metering only
//! when asked for. (The wasm threads proposal is on in every engine
//! wasmpool makes, wasmtime's default with its `threads` feature, so a
//! module using a shared memory compiles the same way.) Loading checks the
//! stamp and every setting again (wasmtime's own checks), so a file from
//! another version, another engine profile or another machine is refused
//! with a message saying to recompile it.
//!
//! # Trust
//!
//! Loading a `.cwasm` runs its machine code as it is: unlike a `.wasm`, it
//! is not validated, so a forged file can do anything the host process can.
//! Only load files you compiled, from modules you would run.

use std::path::Path;

use wasmtime::{Engine, Module, Precompiled};

use crate::engine::{Allocation, EngineOptions, Mode, module_version, to_binary};
use crate::error::Error;
use crate::limits::Limits;
use crate::program::Source;

/// Compiles WebAssembly modules ahead of time into precompiled modules
/// (`.cwasm` files), which pools and process groups load without compiling
/// (with [`PoolBuilder::allow_precompiled`](crate::PoolBuilder::allow_precompiled)).
///
/// A precompiled module loads only into this version of wasmpool, on a
/// machine with the same CPU features, and into a run whose fuel setting
/// matches ([`fuel`](Self::fuel)); anything else is refused with
/// [`Error::Precompiled`].
///
/// ```
/// # fn main() -> Result<(), wasmpool::Error> {
/// let cwasm = wasmpool::Precompiler::new()
///     .precompile(br#"(module (func (export "double") (param i64) (result i64)
///         local.get 0 local.get 0 i64.add))"#)?;
/// // SAFETY: `cwasm` was made just above, by this version of wasmpool.
/// let pool = unsafe { wasmpool::Pool::builder().allow_precompiled(true) }
///     .module_bytes(cwasm)
///     .cache(None)
///     .build()?;
/// assert_eq!(pool.map::<i64, i64>("double", [21])?[0], Ok(42));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default)]
pub struct Precompiler {
    fuel: bool,
}

impl Precompiler {
    /// A precompiler for runs without a fuel limit.
    ///
    /// ```
    /// let precompiler = wasmpool::Precompiler::new();
    /// ```
    pub fn new() -> Self {
        Precompiler::default()
    }

    /// Whether the code meters fuel, as runs with a fuel limit
    /// ([`Limits::fuel`](crate::Limits::fuel), `--fuel`) need; code that
    /// meters fuel runs only with a fuel limit, and code that does not, only
    /// without. Default: `false`.
    ///
    /// ```
    /// let precompiler = wasmpool::Precompiler::new().fuel(true);
    /// ```
    pub fn fuel(mut self, metered: bool) -> Self {
        self.fuel = metered;
        self
    }

    /// Compiles a module (binary or text wasm) and returns the precompiled
    /// module's bytes.
    ///
    /// # Errors
    ///
    /// [`Error::NotWasm`] or [`Error::Compile`] when the bytes are not a
    /// valid module.
    ///
    /// ```
    /// let cwasm = wasmpool::Precompiler::new().precompile(b"(module)").unwrap();
    /// assert!(cwasm.starts_with(b"\x7fELF"));
    /// ```
    pub fn precompile(&self, wasm: &[u8]) -> Result<Vec<u8>, Error> {
        self.compile(wasm, "<bytes>")
    }

    /// Compiles the module in `input` (binary or text wasm) into the
    /// precompiled module `output`, which is replaced whole (written to a
    /// temporary file beside it, then renamed).
    ///
    /// # Errors
    ///
    /// [`Error::Read`] or [`Error::Write`] for the files; [`Error::NotWasm`]
    /// or [`Error::Compile`] when `input` is not a valid module.
    ///
    /// ```no_run
    /// wasmpool::Precompiler::new().precompile_file("primes.wasm", "primes.cwasm")?;
    /// # Ok::<(), wasmpool::Error>(())
    /// ```
    pub fn precompile_file(
        &self,
        input: impl AsRef<Path>,
        output: impl AsRef<Path>,
    ) -> Result<(), Error> {
        let (bytes, origin) = Source::read(Some(Source::File(input.as_ref().into())), None)?;
        let code = self.compile(&bytes, &origin)?;
        write_atomically(output.as_ref(), &code)
    }

    fn compile(&self, wasm: &[u8], origin: &str) -> Result<Vec<u8>, Error> {
        if is_precompiled(wasm) {
            return Err(Error::NotWasm {
                origin: origin.into(),
                reason: "it is already precompiled; compile its .wasm instead".into(),
            });
        }
        let binary = to_binary(wasm, origin)?;
        let code = self
            .engine()?
            .precompile_module(&binary)
            .map_err(|e| Error::Compile {
                origin: origin.into(),
                message: format!("{e:#}"),
            })?;
        tracing::info!("{origin}: precompiled for {}", module_version());
        Ok(code)
    }

    /// The engine profile of every `.cwasm` (see the module docs).
    fn engine(&self) -> Result<Engine, Error> {
        let limits = Limits {
            fuel: self.fuel.then_some(u64::MAX),
            ..Limits::default()
        };
        EngineOptions {
            allocation: Allocation::OnDemand,
            threads: false,
            interruptible: true,
            mode: Mode::Sync,
            limits: &limits,
        }
        .build()
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let write_error = |source| Error::Write {
        path: path.into(),
        source,
    };
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp{}", std::process::id()));
    let tmp = std::path::PathBuf::from(tmp);
    std::fs::write(&tmp, bytes).map_err(write_error)?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        write_error(e)
    })
}

/// The ELF OS ABI byte wasmtime marks its precompiled files with
/// (`wasmtime_environ::obj::ELFOSABI_WASMTIME`).
const ELFOSABI_WASMTIME: u8 = 200;

/// Whether `bytes` are a precompiled module or component, or claim to be
/// one (wasmtime's mark in an ELF header that does not parse: a damaged
/// file, which loading then reports as such).
pub(crate) fn is_precompiled(bytes: &[u8]) -> bool {
    Engine::detect_precompiled(bytes).is_some()
        || (bytes.starts_with(b"\x7fELF") && bytes.get(7) == Some(&ELFOSABI_WASMTIME))
}

/// Whether the file at `path` is a precompiled module or component (as
/// [`is_precompiled`] judges from its first bytes); `false` when it cannot
/// be read (reading it later reports why).
pub(crate) fn file_is_precompiled(path: &Path) -> bool {
    use std::io::Read;
    let mut head = [0; 8];
    let marked = std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok_and(|()| head.starts_with(b"\x7fELF") && head[7] == ELFOSABI_WASMTIME);
    marked || matches!(Engine::detect_precompiled_file(path), Ok(Some(_)))
}

/// Why a precompiled module was refused where precompiled code is not
/// allowed.
pub(crate) fn not_allowed(origin: &str) -> Error {
    Error::NotWasm {
        origin: origin.into(),
        reason: "it is a module precompiled to machine code (a .cwasm file), and precompiled \
                 code was not allowed here"
            .into(),
    }
}

/// Loads precompiled `bytes` into `engine`, which must have been made with
/// the `.cwasm` profile (epoch checks on). The caller has allowed
/// precompiled code (the builders' `allow_precompiled`, an `unsafe` opt-in
/// whose contract is that the file is one the embedder trusts).
pub(crate) fn load(engine: &Engine, bytes: &[u8], origin: &str) -> Result<Module, Error> {
    if Engine::detect_precompiled(bytes) == Some(Precompiled::Component) {
        return Err(Error::Precompiled {
            origin: origin.into(),
            message: "it is a precompiled component; wasmpool runs core modules".into(),
        });
    }
    // SAFETY: `Module::deserialize` needs bytes made by wasmtime's
    // `precompile_module` or `serialize` that were not altered. The trust
    // boundary is the caller's opt-in: `allow_precompiled` is `unsafe`, and
    // its contract is that the module source is a file the embedder trusts
    // (the CLI allows it only for files named `*.cwasm` the user names).
    // Within that boundary, what we can check is checked before any code
    // runs: wasmtime parses the ELF header and the engine section, refuses
    // code stamped with any version but this wasmpool's (`module_version`,
    // set on every engine we make; plain wasmtime stamps its own), and
    // refuses code compiled with other settings (target, CPU features,
    // tunables such as fuel and epochs, wasm features). `deserialize`
    // copies the bytes into memory it owns, so nothing changes under it.
    // The machine code itself is not validated; see the module's "Trust".
    let module = unsafe { Module::deserialize(engine, bytes) }.map_err(|e| Error::Precompiled {
        origin: origin.into(),
        message: explain(&format!("{e:#}")),
    })?;
    tracing::info!("{origin}: loaded precompiled code");
    Ok(module)
}

/// wasmpool's words for wasmtime's reason to refuse a precompiled module.
fn explain(reason: &str) -> String {
    let recompile = "recompile it from its .wasm";
    if let Some(version) = reason
        .split("incompatible version '")
        .nth(1)
        .and_then(|rest| rest.split('\'').next())
    {
        let made_by = if version.starts_with("wasmpool ") {
            format!("it was compiled by {version}")
        } else {
            format!("it was not compiled by wasmpool (it is stamped {version:?})")
        };
        return format!(
            "{made_by}, and this is {}; {recompile} with this version",
            module_version()
        );
    }
    if reason.contains("without fuel support") {
        return format!(
            "it was compiled without fuel metering, which a fuel limit needs; {recompile} with fuel metering (`Precompiler::fuel`)"
        );
    }
    if reason.contains("with fuel support") {
        return format!(
            "it was compiled with fuel metering, which runs only with a fuel limit; set one, or {recompile} without it"
        );
    }
    if reason.contains("failed to parse")
        || reason.contains("section")
        || reason.contains("incompatible object file format")
    {
        return format!("it is damaged or truncated ({reason}); {recompile}");
    }
    format!("it was compiled for other settings or another machine ({reason}); {recompile} here")
}

#[cfg(test)]
mod test {
    use super::explain;

    #[test]
    fn wasmtime_reasons_become_instructions() {
        let other =
            explain("Module was compiled with incompatible version 'wasmpool 0.0.1 (wasmtime 47)'");
        assert!(
            other.starts_with(
                "it was compiled by wasmpool 0.0.1 (wasmtime 47), and this is wasmpool "
            ),
            "{other}"
        );
        assert!(
            other.ends_with("recompile it from its .wasm with this version"),
            "{other}"
        );
        let foreign = explain("Module was compiled with incompatible version '48'");
        assert!(
            foreign.starts_with("it was not compiled by wasmpool (it is stamped \"48\")"),
            "{foreign}"
        );
        let fuel =
            explain("Module was compiled without fuel support but it is enabled for the host");
        assert!(
            fuel.contains("recompile it from its .wasm with fuel metering"),
            "{fuel}"
        );
        let damaged = explain("failed to parse precompiled artifact as an ELF");
        assert!(
            damaged.starts_with("it is damaged or truncated"),
            "{damaged}"
        );
    }
}
