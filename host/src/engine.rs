//! The wasmtime [`Engine`](wasmtime::Engine) wasmpool runs on, and the
//! on-disk cache of compiled modules.
//!
//! Entry points: [`EngineOptions::build`] makes an engine with the pooling
//! allocator sized for a pool; [`ModuleCache`] loads a module from the cache
//! or compiles it and stores the result, so a second run of the same module
//! skips compilation (it logs `loaded from cache` at `info` level instead of
//! `compiled`).

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use sha2::{Digest, Sha256};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, Module, ModuleVersionStrategy,
    PoolingAllocationConfig,
};

use crate::error::Error;
use crate::limits::Limits;
use crate::rewind::{self, Plan};

/// The dirty bytes of a linear memory or table written back when its slot
/// is reset, rather than given back to the kernel (see `build`).
const KEEP_RESIDENT: usize = 1 << 20;

/// How instances are allocated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Allocation {
    /// The pooling allocator with this many slots (instances alive at once):
    /// pools, whose instance count is known.
    Pooling(u32),
    /// On demand: process groups, which may spawn any number.
    OnDemand,
}

/// How guests are run: one task per worker thread at a time, or many
/// suspended ones on each (`PoolBuilder::concurrency`). Waiting host calls
/// have a face for each (`wait.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Mode {
    /// Synchronous calls: a waiting guest holds its thread.
    #[default]
    Sync,
    /// wasmtime's async API: a waiting guest's instance is suspended.
    Async,
}

/// How an engine is set up: the only place a wasmtime `Config` is made.
#[derive(Debug, Clone)]
pub(crate) struct EngineOptions<'a> {
    pub(crate) allocation: Allocation,
    /// Whether a shared region is wanted: lets the host create a shared
    /// memory (a Tier 2 feature in wasmtime, so only for runs that ask for
    /// it). The threads proposal's instructions are wasmtime's default.
    pub(crate) threads: bool,
    /// Whether running wasm code must be stoppable: epoch checks compiled
    /// in (see `limits.rs`).
    pub(crate) interruptible: bool,
    pub(crate) mode: Mode,
    pub(crate) limits: &'a Limits,
}

/// The address space the pooling allocator may reserve for linear
/// memories: most of x86-64's and aarch64's 128 TiB of user space, with room
/// for everything else a process maps.
const ADDRESS_SPACE: u64 = 96 << 40;
/// The guard regions wasmtime puts around each memory slot (its defaults:
/// 32 MiB after, and as much before).
const GUARDS: u64 = 64 << 20;
/// wasmtime's default reservation for a 32-bit memory: its whole 4 GiB, so
/// that bounds checks are free.
const FULL_RESERVATION: u64 = 4 << 30;

/// How many memory mappings each slot of the pooling allocator may add
/// once used: its memory's and its table's accessible part (each splits the
/// pool's reservation in three) and, in the async mode, its fiber stack
/// and guard page.
fn maps_per_slot(fibers: bool) -> u64 {
    if fibers { 6 } else { 4 }
}

/// Mappings left for the rest of the process (code, heaps, threads).
const OTHER_MAPS: u64 = 4096;

/// The most memory mappings a process may have (`vm.max_map_count`, 65530
/// by default on Linux).
fn max_map_count() -> u64 {
    std::fs::read_to_string("/proc/sys/vm/max_map_count")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(65_530)
}

/// Checks that `slots` instance slots fit the machine, and says how much
/// address space each memory slot reserves: wasmtime's 4 GiB when they fit,
/// else just `--max-memory` (with explicit bounds checks). Two limits
/// bind: the number of memory mappings a process may have, and the address
/// space; an error names the limit and what to change.
pub(crate) fn fit_slots(slots: u32, limits: &Limits, fibers: bool) -> Result<Option<u64>, Error> {
    fit_slots_in(slots, limits, fibers, max_map_count())
}

fn fit_slots_in(
    slots: u32,
    limits: &Limits,
    fibers: bool,
    max_maps: u64,
) -> Result<Option<u64>, Error> {
    let slots64 = u64::from(slots);
    let most_by_maps = max_maps.saturating_sub(OTHER_MAPS) / maps_per_slot(fibers);
    if slots64 > most_by_maps {
        return Err(Error::Config(format!(
            "{slots} instance slots need about {} memory mappings, but this machine allows \
             {max_maps} per process (vm.max_map_count), enough for about {most_by_maps} slots; \
             lower --concurrency or --workers, or raise vm.max_map_count",
            slots64 * maps_per_slot(fibers)
        )));
    }
    let fits = |reservation: u64| slots64 * (reservation + GUARDS) <= ADDRESS_SPACE;
    if fits(FULL_RESERVATION) {
        return Ok(None);
    }
    let most = |reservation: u64| ADDRESS_SPACE / (reservation + GUARDS);
    if let Some(max) = limits.max_memory {
        let reservation = (max as u64).div_ceil(64 << 10) * (64 << 10);
        if fits(reservation) {
            return Ok(Some(reservation));
        }
        return Err(Error::Config(format!(
            "{slots} instance slots do not fit in this machine's address space: each reserves \
             {} MiB (--max-memory) plus guard pages, and at most {} fit; lower --concurrency \
             or --max-memory",
            reservation >> 20,
            most(reservation)
        )));
    }
    Err(Error::Config(format!(
        "{slots} instance slots do not fit in this machine's address space: each reserves 4 GiB \
         for a 32-bit memory, and at most {} fit; lower --concurrency, or set --max-memory \
         (with --max-memory 64MiB, up to {} fit)",
        most(FULL_RESERVATION),
        most(64 << 20)
    )))
}

impl EngineOptions<'_> {
    pub(crate) fn build(&self) -> Result<Engine, Error> {
        let mut config = Config::new();
        let async_mode = self.mode == Mode::Async;
        if let Allocation::Pooling(slots) = self.allocation {
            let mut pooling = PoolingAllocationConfig::default();
            // Each slot reserves address space (not memory) for one linear
            // memory; size the pool to what we use rather than wasmtime's
            // default of 1000.
            pooling
                .total_core_instances(slots)
                .total_memories(slots)
                .total_tables(slots)
                .table_elements(self.limits.max_table_elements)
                .total_component_instances(0)
                // Fiber stacks are only for async calls: one per instance in
                // the async mode, none otherwise (wasmtime's default of 1000
                // costs a guard-page mprotect each, which was most of the
                // CLI's start-up time).
                .total_stacks(if async_mode { slots } else { 0 });
            // Where Linux's PAGEMAP_SCAN is available (6.7+), a slot is reset
            // for its next instance by writing back the pages the last one
            // dirtied (up to KEEP_RESIDENT bytes of them), not by `madvise`:
            // no page-table change, so no TLB shootdown on the other cores
            // and no page faults when the slot is used again. A fresh
            // instance per task on 2 workers (`--isolation task`): 200,000
            // tasks 1.7-2.2 s -> 0.95-1.4 s, kernel time 1.3-1.6 s -> 0.4-0.5
            // s. Without the scan, wasmtime would write back the first
            // KEEP_RESIDENT bytes whether dirty or not: `madvise` it stays.
            if PoolingAllocationConfig::is_pagemap_scan_available() {
                pooling
                    .pagemap_scan(wasmtime::Enabled::Yes)
                    .linear_memory_keep_resident(KEEP_RESIDENT)
                    .table_keep_resident(KEEP_RESIDENT);
            }
            if let Some(reservation) = fit_slots(slots, self.limits, async_mode)? {
                pooling.max_memory_size(reservation as usize);
                config.memory_reservation(reservation);
            }
            config
                .allocation_strategy(InstanceAllocationStrategy::Pooling(pooling))
                .memory_init_cow(true);
        }
        if self.threads {
            config.wasm_threads(true).shared_memory(true);
        }
        // The interruption policy (`limits.rs`) stops wasm code through
        // epoch checks: a load and a compare at every loop head and call,
        // which cost call-heavy guests 8-10% (serde tasks, queues, measured),
        // so they are compiled in only where something must stop wasm code.
        // In the async mode, epoch checks are also where a busy guest yields
        // to the others on its thread.
        config
            .epoch_interruption(self.interruptible || async_mode)
            .consume_fuel(self.limits.fuel.is_some());
        if let Some(bytes) = self.limits.max_stack {
            // wasmtime checks the wasm stack against the async one even when
            // no async call is made (its default is 2 MiB).
            config
                .max_wasm_stack(bytes)
                .async_stack_size(bytes.max(2 << 20) + (64 << 10));
        }
        // Compiled code (cache entries and `.cwasm` files) carries this
        // version, and wasmtime refuses code of any other: a file made by
        // another wasmpool (or by plain wasmtime) is never loaded.
        config
            .module_version(ModuleVersionStrategy::Custom(module_version()))
            .map_err(|e| Error::Host(format!("cannot create the engine: {e:#}")))?;
        Engine::new(&config).map_err(|e| Error::Host(format!("cannot create the engine: {e:#}")))
    }
}

/// The version compiled code is stamped with: this wasmpool's and
/// wasmtime's (whose own stamp is its major version).
pub(crate) fn module_version() -> String {
    format!(
        "wasmpool {} (wasmtime {})",
        env!("CARGO_PKG_VERSION"),
        ModuleVersionStrategy::WasmtimeVersion.as_str()
    )
}

/// Whether a module came from the cache.
///
/// ```
/// assert_eq!(wasmpool::CacheOutcome::Hit.to_string(), "loaded from cache");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CacheOutcome {
    /// The compiled module was read from the cache.
    Hit,
    /// The module was compiled, and the result stored in the cache.
    Miss,
    /// The cache is turned off: the module was compiled.
    Disabled,
    /// The module was compiled ahead of time (a `.cwasm` file, see
    /// [`Precompiler`](crate::Precompiler)): the cache was not needed.
    Precompiled,
}

impl std::fmt::Display for CacheOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CacheOutcome::Hit => "loaded from cache",
            CacheOutcome::Miss => "compiled (and cached)",
            CacheOutcome::Disabled => "compiled (cache disabled)",
            CacheOutcome::Precompiled => "loaded precompiled",
        })
    }
}

/// An on-disk cache of compiled modules (`.cwasm` files).
///
/// Entries are keyed by the SHA-256 of the module's bytes and by the
/// engine's [`precompile_compatibility_hash`](wasmtime::Engine::precompile_compatibility_hash)
/// (wasmtime's version and every setting that changes code generation), so
/// an entry is only ever loaded into an engine that produced it.
///
/// The default directory is `$WASMPOOL_CACHE_DIR`, else
/// `$XDG_CACHE_HOME/wasmpool`, else `$HOME/.cache/wasmpool`.
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// let cache = wasmpool::ModuleCache::new(dir.path());
/// assert_eq!(cache.dir(), dir.path());
/// ```
///
/// # Trust
///
/// Loading a cache entry runs machine code from it without re-checking it,
/// like `wasmtime run` with its cache. Whoever can write to the cache
/// directory can run code as the user running wasmpool: keep it private to
/// that user (it is created with the user's default permissions).
#[derive(Debug, Clone)]
pub struct ModuleCache {
    dir: PathBuf,
}

impl ModuleCache {
    /// A cache in `dir` (created when first written).
    ///
    /// ```
    /// let cache = wasmpool::ModuleCache::new("/tmp/my-wasmpool-cache");
    /// ```
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        ModuleCache { dir: dir.into() }
    }

    /// The default cache, or `None` when no directory can be found (no
    /// `WASMPOOL_CACHE_DIR`, `XDG_CACHE_HOME` or `HOME`).
    ///
    /// ```
    /// if let Some(cache) = wasmpool::ModuleCache::default_location() {
    ///     println!("caching in {}", cache.dir().display());
    /// }
    /// ```
    pub fn default_location() -> Option<Self> {
        let env = |k: &str| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        env("WASMPOOL_CACHE_DIR")
            .or_else(|| env("XDG_CACHE_HOME").map(|d| d.join("wasmpool")))
            .or_else(|| env("HOME").map(|d| d.join(".cache").join("wasmpool")))
            .map(ModuleCache::new)
    }

    /// The directory holding the entries.
    ///
    /// ```
    /// assert_eq!(wasmpool::ModuleCache::new("/x").dir(), std::path::Path::new("/x"));
    /// ```
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The entry for `bytes`; `region`: the shared region's size the code
    /// was rewritten for (`shm_inline.rs`), and `rewind`: whether it has
    /// the exports rewinding needs (`rewind.rs`), both part of the key.
    fn entry(&self, engine: &Engine, bytes: &[u8], region: Option<u64>, rewind: bool) -> PathBuf {
        let mut compat = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut compat);
        let mut digest = Sha256::new();
        digest.update(bytes);
        if let Some(region) = region {
            digest.update(format!("\0shm_inline {region}"));
        }
        if rewind {
            digest.update("\0rewind");
        }
        let digest = digest.finalize();
        let mut name = String::with_capacity(90);
        for b in &digest[..20] {
            name.push_str(&format!("{b:02x}"));
        }
        name.push_str(&format!("-{:016x}.cwasm", compat.finish()));
        self.dir.join(name)
    }

    fn load(&self, engine: &Engine, path: &Path) -> Option<Module> {
        if !path.is_file() {
            return None;
        }
        // SAFETY: the trust boundary is the cache directory (see the type's
        // docs): entries are files this cache wrote with `Module::serialize`
        // from an engine with the same compatibility hash (part of the file
        // name), and wasmtime checks the header's version and settings again.
        // Files are written to a temporary name and renamed into place, never
        // modified in place, so a mapped file does not change under us.
        match unsafe { Module::deserialize_file(engine, path) } {
            Ok(module) => Some(module),
            Err(e) => {
                tracing::warn!("ignoring cache entry {}: {e:#}", path.display());
                None
            }
        }
    }

    fn store(&self, path: &Path, module: &Module) {
        let write = || -> std::io::Result<()> {
            let bytes = module.serialize().map_err(std::io::Error::other)?;
            std::fs::create_dir_all(&self.dir)?;
            let tmp = path.with_extension(format!("tmp{}", std::process::id()));
            std::fs::write(&tmp, bytes)?;
            std::fs::rename(&tmp, path)
        };
        if let Err(e) = write() {
            tracing::warn!("cannot write cache entry {}: {e}", path.display());
        }
    }
}

/// Compiles `bytes` (binary or text wasm), going through `cache` when given.
/// `region`: the size of the shared region the module will be linked
/// with, if any: a module that calls its plain atomics is compiled with
/// them inlined (`shm_inline.rs`). `rewind`: whether its instances are to
/// be rewound between tasks (`rewind.rs`); the plan for that comes back if
/// the module can be.
pub(crate) fn load_module(
    engine: &Engine,
    cache: Option<&ModuleCache>,
    bytes: &[u8],
    origin: &str,
    region: Option<u64>,
    rewind: bool,
) -> Result<(Module, CacheOutcome, Option<Arc<Plan>>), Error> {
    let binary = to_binary(bytes, origin)?;
    // Whether each rewrite applies is found from the module as it is, so
    // that a cached rewrite is found without rewriting again.
    let region = region.filter(|_| crate::shm_inline::applies(&binary));
    // Only where the pages a task wrote can be found (`pagemap.rs`).
    let plan = (rewind && rewind::available())
        .then(|| match Plan::of(&binary) {
            Ok(plan) => Some(Arc::new(plan)),
            Err(why) => {
                tracing::debug!("{origin}: instances are replaced, not rewound: {why}");
                None
            }
        })
        .flatten();
    let entry = cache.map(|c| (c, c.entry(engine, bytes, region, plan.is_some())));
    if let Some((cache, path)) = &entry
        && let Some(module) = cache.load(engine, path)
    {
        tracing::info!("{origin}: loaded from cache {}", path.display());
        return Ok((module, CacheOutcome::Hit, plan));
    }
    let start = Instant::now();
    let mut code = std::borrow::Cow::Borrowed(&*binary);
    if let Some(inlined) = region.and_then(|len| crate::shm_inline::inline(&binary, len)) {
        code = inlined.into();
    }
    if let Some(with) = plan
        .as_ref()
        .and_then(|plan| rewind::add_exports(&code, plan))
    {
        code = with.into();
    }
    // The rewritten module, if it compiles; else the module as it is (a
    // rewrite wasmtime refuses would be a wasmpool bug, never the user's;
    // without the added exports, its instances are replaced, not rewound).
    let compile = |code: &[u8]| Module::from_binary(engine, code);
    let module = match &code {
        std::borrow::Cow::Owned(rewritten) => match compile(rewritten) {
            Ok(module) => Ok(module),
            Err(e) => compile(&binary).inspect(|_| {
                tracing::warn!("{origin}: compiling the module as it is, not rewritten: {e:#}")
            }),
        },
        std::borrow::Cow::Borrowed(binary) => compile(binary),
    }
    .map_err(|e| Error::Compile {
        origin: origin.to_string(),
        message: format!("{e:#}"),
    })?;
    tracing::info!("{origin}: compiled in {:.1?}", start.elapsed());
    match entry {
        Some((cache, path)) => {
            cache.store(&path, &module);
            Ok((module, CacheOutcome::Miss, plan))
        }
        None => Ok((module, CacheOutcome::Disabled, plan)),
    }
}

/// The binary form of a module given as binary or text (WAT) wasm.
pub(crate) fn to_binary<'a>(
    bytes: &'a [u8],
    origin: &str,
) -> Result<std::borrow::Cow<'a, [u8]>, Error> {
    check_magic(bytes, origin)?;
    wat::parse_bytes(bytes).map_err(|e| Error::NotWasm {
        origin: origin.to_string(),
        reason: format!("it does not start with the \\0asm magic number, and it does not parse as text (WAT): {e}"),
    })
}

const MAGIC: &[u8] = b"\0asm";

/// How to get a `.wasm` from a Rust crate: the hint for files that are
/// something else a Rust build makes.
const BUILD_HINT: &str = "build the crate as a `cdylib` (`crate-type = [\"cdylib\"]` under [lib]) with \
     `cargo build --release --target wasm32-wasip1`, which writes \
     target/wasm32-wasip1/release/NAME.wasm";

/// What a file that is not wasm is, when it is something a build makes by
/// mistake: a native library or program, or an archive (`.rlib`, `.a`).
fn native_kind(bytes: &[u8]) -> Option<&'static str> {
    const KINDS: &[(&[u8], &str)] = &[
        (
            b"\x7fELF",
            "a native ELF file (a shared library such as a .so, or a program)",
        ),
        (
            b"!<arch>\n",
            "an archive (a Rust .rlib or a static .a library)",
        ),
        (
            b"\xcf\xfa\xed\xfe",
            "a native Mach-O file (a .dylib or a program)",
        ),
        (
            b"\xfe\xed\xfa\xcf",
            "a native Mach-O file (a .dylib or a program)",
        ),
        (b"MZ", "a native Windows file (a .dll or an .exe)"),
    ];
    KINDS
        .iter()
        .find(|(magic, _)| bytes.starts_with(magic))
        .map(|&(_, kind)| kind)
}

fn check_magic(bytes: &[u8], origin: &str) -> Result<(), Error> {
    let not_wasm = |reason: &str| Error::NotWasm {
        origin: origin.to_string(),
        reason: reason.into(),
    };
    if bytes.is_empty() {
        return Err(not_wasm("the file is empty"));
    }
    if MAGIC.starts_with(bytes) {
        return Err(not_wasm(
            "the file is truncated inside the \\0asm magic number",
        ));
    }
    if bytes.starts_with(MAGIC) {
        return Ok(());
    }
    if crate::precompiled::is_precompiled(bytes) {
        return Err(crate::precompiled::not_allowed(origin));
    }
    // Before the text check: an archive's header is text.
    if let Some(kind) = native_kind(bytes) {
        return Err(not_wasm(&format!(
            "it is {kind}, not WebAssembly; {BUILD_HINT}"
        )));
    }
    if std::str::from_utf8(bytes).is_ok() {
        // Text that may be WAT: the parser says more.
        return Ok(());
    }
    Err(not_wasm(
        "it does not start with the \\0asm magic number, and it is not text (WAT)",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_fit_the_mappings_and_the_address_space_or_say_which_does_not() {
        let limits = Limits::default();
        assert_eq!(fit_slots_in(1000, &limits, true, 65_530).unwrap(), None);
        let err = fit_slots_in(20_000, &limits, true, 65_530).unwrap_err();
        assert!(err.to_string().contains("vm.max_map_count"), "{err}");
        // With mappings to spare, the address space binds: 4 GiB a slot.
        let err = fit_slots_in(40_000, &limits, true, u64::MAX).unwrap_err();
        assert!(err.to_string().contains("--max-memory 64MiB"), "{err}");
        // A memory limit shrinks each slot's reservation to it.
        let small = Limits {
            max_memory: Some((1 << 20) + 1),
            ..Limits::default()
        };
        assert_eq!(
            fit_slots_in(40_000, &small, true, u64::MAX).unwrap(),
            Some(17 * (64 << 10))
        );
    }
}
