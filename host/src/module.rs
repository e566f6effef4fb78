//! What a module offers: its ABI version, its tasks, its imports.
//!
//! Entry points: [`ModuleInfo`] (what `wasmpool inspect` prints), and
//! `check_abi` / `resolve_task`, which enforce `docs/abi.md` when a pool
//! loads a module and when it looks up a task.

use std::fmt;
use std::path::Path;

use wasmtime::{ExternType, Module};

use crate::abi;
use crate::engine::{Allocation, EngineOptions, ModuleCache, load_module};
use crate::error::Error;
use crate::limits::Limits;
use crate::program::Source;
use crate::suggest;
use crate::task::{ExportIndex, TaskKind, TaskSpec, WasmType};

/// A module's tasks and imports, as `wasmpool inspect` shows them.
///
/// ```no_run
/// let pool = wasmpool::Pool::builder().module_file("primes.wasm").build()?;
/// for task in &pool.module_info().tasks {
///     println!("{task}");
/// }
/// # Ok::<(), wasmpool::Error>(())
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ModuleInfo {
    /// The wasmpool ABI version the module declares, if it uses the ABI.
    pub abi_version: Option<u32>,
    /// Every export that can run as a task.
    pub tasks: Vec<TaskInfo>,
    /// Whether the module is a WASI command (it exports `_start`), which
    /// `wasmpool run` and [`ProcessGroup`](crate::ProcessGroup) run.
    pub command: bool,
    /// Every import, as `module::name: type`.
    pub imports: Vec<String>,
    /// Why a pool would refuse the module under `docs/abi.md`, if it would.
    pub abi_error: Option<String>,
}

/// One task of a module.
///
/// ```
/// # let t = wasmpool::TaskInfo { name: "square".into(), export: "wasmpool_task_square".into(), signature: "json -> json".into() };
/// assert_eq!(t.to_string(), "square: json -> json (export wasmpool_task_square)");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskInfo {
    /// The name to ask for (`--task NAME`).
    pub name: String,
    /// The export that runs it.
    pub export: String,
    /// `json -> json` or `(i64) -> i64`.
    pub signature: String,
}

impl fmt::Display for TaskInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.name, self.signature)?;
        if self.export != self.name {
            write!(f, " (export {})", self.export)?;
        }
        Ok(())
    }
}

fn numeric_kind(ty: &wasmtime::FuncType) -> Option<TaskKind> {
    let params = ty
        .params()
        .map(|t| WasmType::from_val_type(&t))
        .collect::<Option<Vec<_>>>()?;
    let results = ty
        .results()
        .map(|t| WasmType::from_val_type(&t))
        .collect::<Option<Vec<_>>>()?;
    Some(TaskKind::Numeric { params, results })
}

fn is_abi_task_type(ty: &wasmtime::FuncType) -> bool {
    ty.params().len() == 0
        && ty.results().len() == 1
        && ty.results().next().is_some_and(|t| t.is_i32())
}

/// Exports the host treats as machinery, never as numeric tasks: what each
/// one is, in plain words, for `--task` given one of them.
fn reserved(name: &str) -> Option<&'static str> {
    if name.starts_with(abi::VERSION_MARKER_PREFIX) {
        return Some("the module's wasmpool ABI version marker");
    }
    match name {
        "_start" => Some(
            "a WASI command's entry point (run the command with `wasmpool run`, or a ProcessGroup)",
        ),
        "_initialize" => Some("the module's initializer, which runs once when an instance is made"),
        "__main_void" | "__main_argc_argv" => Some(
            "the language runtime's `main`, which `_start` calls (run the command with `wasmpool run`, or a ProcessGroup)",
        ),
        _ => None,
    }
}

fn is_reserved(name: &str) -> bool {
    reserved(name).is_some()
}

impl ModuleInfo {
    pub(crate) fn of(module: &Module) -> Self {
        let mut abi_version = None;
        let mut tasks = Vec::new();
        for export in module.exports() {
            let name = export.name();
            if let Some(v) = name.strip_prefix(abi::VERSION_MARKER_PREFIX) {
                abi_version = v.parse().ok();
            }
            let ExternType::Func(ty) = export.ty() else {
                continue;
            };
            if let Some(task) = name.strip_prefix(abi::TASK_PREFIX) {
                let signature = if is_abi_task_type(&ty) {
                    "json -> json".into()
                } else {
                    format!("invalid: {ty}")
                };
                tasks.push(TaskInfo {
                    name: task.into(),
                    export: name.into(),
                    signature,
                });
            } else if !is_reserved(name)
                && let Some(kind) = numeric_kind(&ty)
            {
                tasks.push(TaskInfo {
                    name: name.into(),
                    export: name.into(),
                    signature: kind.describe(),
                });
            }
        }
        let imports = module
            .imports()
            .map(|i| format!("{}::{}: {}", i.module(), i.name(), describe_extern(&i.ty())))
            .collect();
        ModuleInfo {
            abi_version,
            tasks,
            command: matches!(module.get_export("_start"), Some(ExternType::Func(_))),
            imports,
            abi_error: abi_rules(module).err(),
        }
    }

    /// Compiles (through `cache`) and describes the module at `path`,
    /// without instantiating it: what `wasmpool inspect` prints.
    ///
    /// # Errors
    ///
    /// [`Error`] when the file cannot be read, is not wasm, or does not compile.
    ///
    /// ```no_run
    /// let info = wasmpool::ModuleInfo::from_file("primes.wasm", None)?;
    /// assert_eq!(info.abi_version, Some(1));
    /// # Ok::<(), wasmpool::Error>(())
    /// ```
    pub fn from_file(path: impl AsRef<Path>, cache: Option<&ModuleCache>) -> Result<Self, Error> {
        Self::load(path.as_ref(), cache, false)
    }

    /// Like [`from_file`](Self::from_file), and the file may also be a
    /// precompiled module (`.cwasm`, see [`Precompiler`](crate::Precompiler)).
    ///
    /// # Safety
    ///
    /// The same as for [`PoolBuilder::allow_precompiled`](crate::PoolBuilder::allow_precompiled):
    /// a precompiled file must be one you trust, made by wasmpool and not
    /// altered since (its code is mapped, not validated).
    ///
    /// # Errors
    ///
    /// As [`from_file`](Self::from_file), and [`Error::Precompiled`] for a
    /// precompiled module this version of wasmpool cannot load.
    ///
    /// ```no_run
    /// // SAFETY: primes.cwasm was made by `wasmpool compile` on this machine.
    /// let info = unsafe { wasmpool::ModuleInfo::from_file_allowing_precompiled("primes.cwasm", None)? };
    /// # Ok::<(), wasmpool::Error>(())
    /// ```
    pub unsafe fn from_file_allowing_precompiled(
        path: impl AsRef<Path>,
        cache: Option<&ModuleCache>,
    ) -> Result<Self, Error> {
        Self::load(path.as_ref(), cache, true)
    }

    fn load(
        path: &Path,
        cache: Option<&ModuleCache>,
        allow_precompiled: bool,
    ) -> Result<Self, Error> {
        let source = Source::File(path.to_path_buf());
        let precompiled = allow_precompiled && source.is_precompiled();
        let limits = Limits::default();
        // A `.cwasm` is loaded into the engine profile it was made for,
        // with epoch checks (`precompiled.rs`). Its fuel setting is not
        // known here: a `.cwasm` with fuel metering is retried with it.
        let engine = |fuel: bool| {
            EngineOptions {
                mode: crate::engine::Mode::Sync,
                allocation: Allocation::OnDemand,
                threads: false,
                interruptible: precompiled,
                limits: &Limits {
                    fuel: fuel.then_some(u64::MAX),
                    ..limits.clone()
                },
            }
            .build()
        };
        let (bytes, origin) = Source::read(Some(source), None)?;
        let module = if !precompiled {
            if crate::precompiled::is_precompiled(&bytes) {
                return Err(crate::precompiled::not_allowed(&origin));
            }
            load_module(&engine(false)?, cache, &bytes, &origin, None, false)?.0
        } else {
            match crate::precompiled::load(&engine(false)?, &bytes, &origin) {
                Err(Error::Precompiled { message, .. })
                    if message.contains("with fuel metering") =>
                {
                    crate::precompiled::load(&engine(true)?, &bytes, &origin)?
                }
                other => other?,
            }
        };
        Ok(ModuleInfo::of(&module))
    }
}

fn describe_extern(ty: &ExternType) -> String {
    match ty {
        ExternType::Func(f) => f.to_string(),
        ExternType::Memory(m) => format!("memory {m:?}"),
        ExternType::Table(t) => format!("table {t:?}"),
        ExternType::Global(g) => format!("global {g:?}"),
        ExternType::Tag(t) => format!("tag {t:?}"),
    }
}

/// Enforces the load rules of `docs/abi.md` ("Version marker").
pub(crate) fn check_abi(module: &Module, origin: &str) -> Result<(), Error> {
    abi_rules(module).map_err(|message| Error::Abi {
        origin: origin.into(),
        message,
    })
}

fn abi_rules(module: &Module) -> Result<(), String> {
    let fail = Err;
    let mut marker = None;
    let mut uses_abi = false;
    let mut has_memory = false;
    let mut imports_functions = false;
    for export in module.exports() {
        let name = export.name();
        if let Some(v) = name.strip_prefix(abi::VERSION_MARKER_PREFIX) {
            if let Some(first) = &marker {
                return fail(format!(
                    "module exports two version markers, {}{first} and {name}; it must declare exactly one ABI version",
                    abi::VERSION_MARKER_PREFIX
                ));
            }
            if !matches!(export.ty(), ExternType::Func(_)) {
                return fail(format!(
                    "the version marker {name} is a {}; it must be a function (docs/abi.md, \"Version marker\")",
                    extern_kind(&export.ty())
                ));
            }
            marker = Some(v.to_string());
        }
        uses_abi |= name.starts_with(abi::TASK_PREFIX);
        has_memory |= name == "memory" && matches!(export.ty(), ExternType::Memory(_));
    }
    for import in module.imports() {
        if import.module() == abi::MODULE {
            uses_abi = true;
            imports_functions |= matches!(import.ty(), ExternType::Func(_));
            let known = abi::IMPORTS.contains(&import.name());
            if !known {
                let hint = match suggest::nearest(import.name(), abi::IMPORTS.iter().copied()) {
                    Some(near) => format!("did you mean {}::{near}? ", abi::MODULE),
                    None => String::new(),
                };
                return fail(format!(
                    "unknown import {}::{}: {}; {hint}this host (ABI version {}) provides {}",
                    abi::MODULE,
                    import.name(),
                    describe_extern(&import.ty()),
                    abi::VERSION,
                    abi::IMPORTS.join(", ")
                ));
            }
        }
    }
    match marker.as_deref() {
        Some(v) if v == abi::VERSION.to_string() => {}
        Some(v) => {
            return fail(format!(
                "module was built for wasmpool ABI version {v}; this host speaks version {}",
                abi::VERSION
            ));
        }
        None if uses_abi => {
            return fail(format!(
                "module uses the wasmpool ABI but does not export the version marker {}{}",
                abi::VERSION_MARKER_PREFIX,
                abi::VERSION
            ));
        }
        None => {}
    }
    if imports_functions && !has_memory {
        return fail("module imports from wasmpool but exports no memory named \"memory\"".into());
    }
    Ok(())
}

/// Finds task `name`: the ABI export `wasmpool_task_<name>` first, then a
/// numeric export `<name>` (`docs/abi.md`, "Overview").
pub(crate) fn resolve_task(
    module: &Module,
    origin: &str,
    name: &str,
    id: usize,
    pool: u64,
) -> Result<TaskSpec, Error> {
    let fail = |message: String| {
        Err(Error::NoSuchTask {
            origin: origin.into(),
            message,
        })
    };
    let abi_export = format!("{}{name}", abi::TASK_PREFIX);
    if let Some(ExternType::Func(ty)) = module.get_export(&abi_export) {
        if !is_abi_task_type(&ty) {
            return fail(format!(
                "export {abi_export} has type {ty}, but an ABI task must be `() -> i32`"
            ));
        }
        return Ok(TaskSpec {
            pool,
            id,
            name: name.into(),
            export_index: ExportIndex(module.get_export_index(&abi_export)),
            export: abi_export,
            kind: TaskKind::Abi,
        });
    }
    let tasks = || ModuleInfo::of(module).tasks;
    if let Some(short) = name.strip_prefix(abi::TASK_PREFIX)
        && module.get_export(name).is_some()
    {
        return fail(format!(
            "{name} is the export of task {short:?}; ask for the task by its name, {short}"
        ));
    }
    if let Some(what) = reserved(name)
        && module.get_export(name).is_some()
    {
        return fail(format!(
            "{name} is {what}, not a task; {}",
            task_list(&tasks())
        ));
    }
    // The exports rewinding adds (`rewind.rs`) are the host's, not the
    // module's.
    let export = module
        .get_export(name)
        .filter(|_| !name.starts_with(crate::rewind::PREFIX));
    match export {
        Some(ExternType::Func(ty)) => match numeric_kind(&ty) {
            Some(kind) => Ok(TaskSpec {
                pool,
                id,
                name: name.into(),
                export: name.into(),
                export_index: ExportIndex(module.get_export_index(name)),
                kind,
            }),
            None => fail(format!(
                "export {name} has type {ty}; a task must be an ABI task or take and return only i32, i64, f32 and f64"
            )),
        },
        Some(other) => fail(format!(
            "export {name} is a {}, not a function, so it cannot run as a task; {}",
            extern_kind(&other),
            task_list(&tasks())
        )),
        None => {
            let tasks = tasks();
            // The export's full name given for the task's: say which.
            let near = name
                .strip_prefix(abi::TASK_PREFIX)
                .filter(|short| tasks.iter().any(|t| t.name == *short))
                .or_else(|| suggest::nearest(name, tasks.iter().map(|t| t.name.as_str())));
            let hint = match near {
                Some(near) => format!("did you mean {near:?}? "),
                None => String::new(),
            };
            let command = if tasks.is_empty() && module.get_export("_start").is_some() {
                " (it exports _start: a WASI command, run as a process)"
            } else {
                ""
            };
            fail(format!(
                "no task named {name:?} (no export {abi_export} or {name}); {hint}{}{command}",
                task_list(&tasks)
            ))
        }
    }
}

fn extern_kind(ty: &ExternType) -> &'static str {
    match ty {
        ExternType::Func(_) => "function",
        ExternType::Memory(_) => "memory",
        ExternType::Table(_) => "table",
        ExternType::Global(_) => "global",
        ExternType::Tag(_) => "tag",
    }
}

/// "its tasks are: a, b" or "it has no tasks": the list error messages
/// give wherever a module's tasks are named.
pub(crate) fn task_list(tasks: &[TaskInfo]) -> String {
    if tasks.is_empty() {
        "it has no tasks".to_string()
    } else {
        let names: Vec<&str> = tasks.iter().map(|t| t.name.as_str()).collect();
        format!("its tasks are: {}", names.join(", "))
    }
}
