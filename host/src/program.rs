//! What a guest program is, and where it comes from: the one place a
//! module source is read, bounded, compiled (through the cache) and checked
//! against `docs/abi.md`, for pools and process groups alike.
//!
//! Entry point: [`Program::load`]. Today a program is a core WebAssembly
//! module ([`Kind::Core`]); component-model programs will be a second kind
//! beside it, loaded and instantiated through the same calls.

use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;

use wasmtime::{Engine, Module};

use crate::engine::{CacheOutcome, ModuleCache, load_module};
use crate::error::Error;
use crate::module::{ModuleInfo, check_abi};
use crate::precompiled;
use crate::rewind::Plan;

/// The largest module accepted, in bytes (binary or text). wasmtime's
/// validator bounds what compiling a module of this size may cost (at most
/// a million functions, each body at most about 7.6 MB, ...).
pub const MAX_MODULE_SIZE: u64 = 256 << 20;

/// Where a module comes from.
#[derive(Debug, Clone)]
pub(crate) enum Source {
    File(PathBuf),
    Bytes(Vec<u8>),
}

impl Source {
    /// Whether the source is a precompiled module (`.cwasm`), judged from
    /// its header (a file that cannot be read is not).
    pub(crate) fn is_precompiled(&self) -> bool {
        match self {
            Source::File(path) => crate::precompiled::file_is_precompiled(path),
            Source::Bytes(bytes) => crate::precompiled::is_precompiled(bytes),
        }
    }

    /// Reads the module: its bytes, and the name errors use (`name`, else
    /// the file's path, else `<bytes>`).
    pub(crate) fn read(
        source: Option<Source>,
        name: Option<&str>,
    ) -> Result<(Vec<u8>, String), Error> {
        let too_large = |origin: &str, size: u64| Error::NotWasm {
            origin: origin.to_string(),
            reason: format!(
                "it is {size} bytes, more than the largest module accepted ({MAX_MODULE_SIZE} bytes)"
            ),
        };
        let (bytes, default_name) = match source {
            None => return Err(Error::Config("no module given".into())),
            Some(Source::Bytes(bytes)) => {
                if bytes.len() as u64 > MAX_MODULE_SIZE {
                    return Err(too_large(name.unwrap_or("<bytes>"), bytes.len() as u64));
                }
                (bytes, "<bytes>".to_string())
            }
            Some(Source::File(path)) => {
                let read_error = |source| Error::Read {
                    path: path.clone(),
                    source,
                };
                let file = std::fs::File::open(&path).map_err(read_error)?;
                let origin = path.display().to_string();
                let size = file.metadata().map_err(read_error)?.len();
                if size > MAX_MODULE_SIZE {
                    return Err(too_large(name.unwrap_or(&origin), size));
                }
                // `take` too: the file may grow between the check and the read.
                let mut bytes = Vec::with_capacity(size as usize);
                file.take(MAX_MODULE_SIZE + 1)
                    .read_to_end(&mut bytes)
                    .map_err(read_error)?;
                if bytes.len() as u64 > MAX_MODULE_SIZE {
                    return Err(too_large(name.unwrap_or(&origin), bytes.len() as u64));
                }
                (bytes, origin)
            }
        };
        Ok((bytes, name.map_or(default_name, str::to_string)))
    }
}

/// The kinds of guest program.
#[derive(Debug, Clone)]
pub(crate) enum Kind {
    /// A core WebAssembly module: ABI tasks, numeric exports, WASI commands.
    Core(Module),
}

/// A loaded, checked guest program.
#[derive(Debug, Clone)]
pub(crate) struct Program {
    /// The name errors use: the file's path, or the name given.
    pub(crate) origin: String,
    pub(crate) kind: Kind,
    pub(crate) info: ModuleInfo,
    pub(crate) cache_outcome: CacheOutcome,
    /// How its instances are rewound between tasks, if they can be
    /// (`rewind.rs`; only when asked for at load).
    pub(crate) rewind: Option<Arc<Plan>>,
}

impl Program {
    /// Reads, compiles (through `cache`) and checks a program. A
    /// precompiled module is loaded as it is when `allow_precompiled` (see
    /// `precompiled.rs`), else refused. `region`: the size of the shared
    /// region the program will be linked with, whose atomics are then
    /// compiled into it (`shm_inline.rs`; not into a precompiled module).
    /// `rewind`: whether instances will be rewound between tasks
    /// (`rewind.rs`; not those of a precompiled module).
    pub(crate) fn load(
        engine: &Engine,
        source: Option<Source>,
        name: Option<&str>,
        cache: Option<&ModuleCache>,
        allow_precompiled: bool,
        region: Option<u64>,
        rewind: bool,
    ) -> Result<Program, Error> {
        let (bytes, origin) = Source::read(source, name)?;
        let (module, cache_outcome, rewind) = if !precompiled::is_precompiled(&bytes) {
            load_module(engine, cache, &bytes, &origin, region, rewind)?
        } else if allow_precompiled {
            let module = precompiled::load(engine, &bytes, &origin)?;
            (module, CacheOutcome::Precompiled, None)
        } else {
            return Err(precompiled::not_allowed(&origin));
        };
        drop(bytes);
        check_abi(&module, &origin)?;
        let info = ModuleInfo::of(&module);
        Ok(Program {
            origin,
            kind: Kind::Core(module),
            info,
            cache_outcome,
            rewind,
        })
    }

    /// The core module.
    pub(crate) fn module(&self) -> &Module {
        match &self.kind {
            Kind::Core(module) => module,
        }
    }
}
