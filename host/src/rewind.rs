//! A fresh instance without a new one: an instance rewound to the state it
//! started a task in.
//!
//! With `Isolation::Task` (and `recycle_after`) every task must see an
//! instance as it was just after instantiation: its memory, globals and
//! tables as the module set them up, nothing of any earlier task. wasmtime
//! gives that by making a new instance (a new store, a pooling slot,
//! instantiation) and throwing the old one away (its pages written back,
//! its slot returned): about 5 µs a task here, most of it wasmtime's own
//! bookkeeping. For most modules the same state can be had by undoing what
//! a task changed, which is far less: the pages it wrote (found with one
//! `PAGEMAP_SCAN`, `pagemap.rs`), and its mutable globals.
//!
//! [`Plan::of`] decides at load whether a module can be rewound, and what
//! rewinding it needs. Everything an instance holds must then be either
//! put back or unchangeable:
//!
//! - its one memory (if any): written pages are put back from the module's
//!   data segments (the [`Plan`]'s image) or from what the start function
//!   and `_initialize` wrote (the [`Snapshot`]), or zeroed; a memory that
//!   grew cannot shrink, so a task that grew it leaves the instance to be
//!   replaced as before;
//! - its mutable globals: set back; only numbers (no references);
//! - its tables: never changed after instantiation, because the module has
//!   no instruction that changes a table (`table.set`, `table.grow`,
//!   `table.fill`, `table.copy`, `table.init`) and imports none;
//! - its dropped segments: unchanged, because the module has no
//!   `data.drop` or `elem.drop` (instantiation's own drops are the same
//!   every time);
//! - what instantiation did outside the instance: nothing, because its
//!   start function and `_initialize` can reach no import and no indirect
//!   call, a module that imports the shared region runs no code at
//!   instantiation, and no active data segment writes the region (each
//!   would be done once per task by a fresh instance, once in all by a
//!   rewound one);
//! - the store's host state: reset per task already (`sandbox.rs`), and the
//!   WASI context dropped (the next task that calls WASI gets a new one).
//!
//! A rewind costs one scan of the memory's page tables (2-3 µs here,
//! `bench/scripts/pagemap-cost`) and the pages put back; once the pages a
//! module's tasks write are all private, not even the scan: if the thread
//! took no page fault since the last scan, no page became private, and the
//! pages to put back are the ones that scan found (`written.rs`, one
//! `getrusage`, 0.4 µs, checked by a scan one rewind in 64). After a numeric
//! task whose export can reach no store, atomic write, bulk memory
//! instruction, import or indirect call (found at load: the plan's
//! `leave_memory`), memory cannot have changed, and only the globals are
//! set back (`Guest` tracks whether any task since the last rewind could
//! write).
//!
//! One difference from a new instance is of time, not state: under a time
//! limit, a new instance's start function runs within each task's time;
//! a rewound one ran it once, before its first task.
//!
//! Anything else (more than one memory, a shared or custom-page-size
//! memory, GC types, imports other than functions and the shared region,
//! a start function that calls out) and the module is not rewound: every
//! task gets a new instance, as before. The module is compiled with one
//! export more per mutable global and one for its memory (named with
//! [`PREFIX`], which no task name can start with), which is how the host
//! reaches what a module does not export itself.
//!
//! Invariants: a rewind either puts back everything above or reports
//! failure, and the caller then drops the instance (wasmtime resets its
//! slot as it always does). Page contents come only from the module (its
//! data segments) or from this very instance before its first task.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use wasm_encoder::reencode::{self, Reencode};
use wasm_encoder::{ExportKind, ExportSection};
use wasmparser::{DataKind, ExternalKind, Operator, Parser, Payload, TypeRef};
use wasmtime::{Global, Instance, Memory, Store, Val};

use crate::pagemap;
use crate::sandbox::StoreData;
use crate::written::{self, Written};

/// The prefix of the exports the rewrite adds.
pub(crate) const PREFIX: &str = "wasmpool:rewind:";

/// The export of the module's memory.
const MEMORY_EXPORT: &str = "wasmpool:rewind:memory";

fn global_export(index: u32) -> String {
    format!("{PREFIX}global:{index}")
}

/// The largest memory image kept for rewinding (the bytes of the pages
/// the data segments touch): a module with more is not rewound.
const MAX_IMAGE: usize = 64 << 20;

/// The most written bytes a rewind puts back. A task that wrote more
/// leaves its instance to be replaced: wasmtime then gives pages past its
/// own resident limit back to the kernel, which is cheaper than copying.
const MAX_WRITTEN: usize = 1 << 20;

/// What rewinding a module's instances needs, found at load.
#[derive(Debug)]
pub(crate) struct Plan {
    /// The module's mutable globals, by index (all defined: no global is
    /// imported).
    globals: Vec<u32>,
    /// Their exports' names.
    global_names: Vec<String>,
    /// Whether instantiation runs code (a start function, `_initialize`),
    /// which may write memory.
    init_runs: bool,
    /// The exported functions that cannot write memory: no store, atomic
    /// write or bulk memory instruction, no import and no indirect call
    /// reachable. A numeric task of one leaves memory as it found it.
    leave_memory: HashSet<String>,
    /// Whether the module defines a memory.
    memory: bool,
    /// The memory's contents after instantiation, page by page (host
    /// pages, by offset, sorted): the pages its active data segments
    /// write. Every other page starts as zeros.
    image: Vec<(usize, Box<[u8]>)>,
}

/// Why a module is not rewound (for the debug log).
type Refusal = String;

impl Plan {
    /// The plan for `binary` (a valid module), or why it cannot be
    /// rewound.
    pub(crate) fn of(binary: &[u8]) -> Result<Plan, Refusal> {
        let page = pagemap::page_size();
        let mut plan = Plan {
            globals: Vec::new(),
            global_names: Vec::new(),
            init_runs: false,
            leave_memory: HashSet::new(),
            memory: false,
            image: Vec::new(),
        };
        let mut image: BTreeMap<usize, Box<[u8]>> = BTreeMap::new();
        let mut imported_funcs = 0u32;
        let mut imported_memories = 0u32;
        let mut roots = Vec::new();
        // Per defined function: its direct callees, whether it makes an
        // indirect call, and whether it writes memory itself.
        let mut calls: Vec<Calls> = Vec::new();
        let mut exported_funcs: Vec<(String, u32)> = Vec::new();
        let mut has_exports = false;
        let err = |e: wasmparser::BinaryReaderError| e.to_string();
        for payload in Parser::new(0).parse_all(binary) {
            match payload.map_err(err)? {
                Payload::TypeSection(section) => {
                    for ty in section.into_iter_err_on_gc_types() {
                        ty.map_err(err)?;
                    }
                }
                Payload::ImportSection(section) => {
                    for import in section.into_imports() {
                        let import = import.map_err(err)?;
                        match import.ty {
                            TypeRef::Func(_) | TypeRef::FuncExact(_) => imported_funcs += 1,
                            TypeRef::Memory(_)
                                if import.module == crate::abi::MODULE
                                    && import.name == "shared" =>
                            {
                                imported_memories += 1
                            }
                            _ => {
                                return Err(format!(
                                    "it imports {}::{}, which is not a function",
                                    import.module, import.name
                                ));
                            }
                        }
                    }
                }
                Payload::MemorySection(section) => {
                    for memory in section {
                        let memory = memory.map_err(err)?;
                        if plan.memory {
                            return Err("it defines more than one memory".into());
                        }
                        if memory.shared || memory.page_size_log2.is_some() {
                            return Err("its memory is shared or has a custom page size".into());
                        }
                        plan.memory = true;
                    }
                }
                Payload::GlobalSection(section) => {
                    for (index, global) in section.into_iter().enumerate() {
                        let global = global.map_err(err)?;
                        if !global.ty.mutable {
                            continue;
                        }
                        if !matches!(
                            global.ty.content_type,
                            wasmparser::ValType::I32
                                | wasmparser::ValType::I64
                                | wasmparser::ValType::F32
                                | wasmparser::ValType::F64
                                | wasmparser::ValType::V128
                        ) {
                            return Err("it has a mutable global holding a reference".into());
                        }
                        plan.globals.push(index as u32);
                    }
                }
                Payload::ExportSection(section) => {
                    has_exports = true;
                    for export in section {
                        let export = export.map_err(err)?;
                        if export.name.starts_with(PREFIX) {
                            return Err(format!("it exports {}", export.name));
                        }
                        if export.name == "_initialize" && export.kind == ExternalKind::Func {
                            roots.push(export.index);
                        }
                        if export.kind == ExternalKind::Func {
                            exported_funcs.push((export.name.to_string(), export.index));
                        }
                    }
                }
                Payload::StartSection { func, .. } => roots.push(func),
                Payload::DataSection(section) => {
                    for data in section {
                        let data = data.map_err(err)?;
                        let DataKind::Active {
                            memory_index,
                            offset_expr,
                        } = data.kind
                        else {
                            continue;
                        };
                        if memory_index < imported_memories {
                            return Err("a data segment writes the shared region".into());
                        }
                        let offset = constant(offset_expr).ok_or_else(|| {
                            "a data segment's offset is not a constant".to_string()
                        })?;
                        write_image(&mut image, page, offset, data.data)?;
                    }
                }
                Payload::CodeSectionEntry(body) => {
                    let mut ops = body.get_operators_reader().map_err(err)?;
                    let mut f = Calls::default();
                    while !ops.eof() {
                        let op = ops.read().map_err(err)?;
                        if changes_tables(&op) {
                            return Err(format!("it uses {op:?}"));
                        }
                        f.writes |= writes_memory(&op);
                        match op {
                            Operator::Call { function_index }
                            | Operator::ReturnCall { function_index } => {
                                f.callees.push(function_index)
                            }
                            // Stack switching runs code it does not name
                            // either (refused by this engine today).
                            Operator::CallIndirect { .. }
                            | Operator::ReturnCallIndirect { .. }
                            | Operator::CallRef { .. }
                            | Operator::ReturnCallRef { .. }
                            | Operator::Resume { .. }
                            | Operator::ResumeThrow { .. }
                            | Operator::ResumeThrowRef { .. }
                            | Operator::Switch { .. } => f.indirect = true,
                            _ => {}
                        }
                    }
                    calls.push(f);
                }
                _ => {}
            }
        }
        if !has_exports {
            return Err("it exports nothing".into());
        }
        pure_init(&roots, imported_funcs, &calls)?;
        plan.leave_memory = exported_funcs
            .into_iter()
            .filter(|&(_, f)| leaves_memory(f, imported_funcs, &calls))
            .map(|(name, _)| name)
            .collect();
        if imported_memories > 0 && !roots.is_empty() {
            // What it does to the shared region would be done once in
            // all, where new instances do it once a task.
            return Err("it starts with code and imports the shared region".into());
        }
        plan.init_runs = !roots.is_empty();
        plan.global_names = plan.globals.iter().map(|&g| global_export(g)).collect();
        plan.image = image.into_iter().collect();
        Ok(plan)
    }
}

/// The value of a constant offset (`i32.const` or `i64.const`).
fn constant(expr: wasmparser::ConstExpr<'_>) -> Option<u64> {
    let mut ops = expr.get_operators_reader();
    let value = match ops.read().ok()? {
        Operator::I32Const { value } => u64::from(value as u32),
        Operator::I64Const { value } => value as u64,
        _ => return None,
    };
    matches!(ops.read().ok()?, Operator::End).then_some(value)
}

/// Writes a data segment into the image, page by page.
fn write_image(
    image: &mut BTreeMap<usize, Box<[u8]>>,
    page: usize,
    offset: u64,
    mut data: &[u8],
) -> Result<(), Refusal> {
    let too_big = || format!("its data segments cover more than {MAX_IMAGE} bytes");
    let mut at = usize::try_from(offset).map_err(|_| too_big())?;
    at.checked_add(data.len()).ok_or_else(too_big)?;
    while !data.is_empty() {
        let start = at - at % page;
        if !image.contains_key(&start) && (image.len() + 1) * page > MAX_IMAGE {
            return Err(too_big());
        }
        let bytes = image
            .entry(start)
            .or_insert_with(|| vec![0; page].into_boxed_slice());
        let n = (page - (at - start)).min(data.len());
        bytes[at - start..][..n].copy_from_slice(&data[..n]);
        data = &data[n..];
        at += n;
    }
    Ok(())
}

/// What one defined function does that rewinding cares about.
#[derive(Debug, Default)]
struct Calls {
    /// Its direct callees.
    callees: Vec<u32>,
    /// Whether it makes an indirect call.
    indirect: bool,
    /// Whether it writes memory itself.
    writes: bool,
}

/// Whether `op` changes a table or drops a segment: state a rewind cannot
/// put back.
fn changes_tables(op: &Operator<'_>) -> bool {
    matches!(
        op,
        Operator::TableSet { .. }
            | Operator::TableGrow { .. }
            | Operator::TableFill { .. }
            | Operator::TableCopy { .. }
            | Operator::TableInit { .. }
            | Operator::TableAtomicRmwXchg { .. }
            | Operator::TableAtomicRmwCmpxchg { .. }
            | Operator::ElemDrop { .. }
            | Operator::DataDrop { .. }
    )
}

/// Whether `op` may write linear memory (or change its size): every
/// store, atomic write and bulk memory instruction. Loads and everything
/// that only reads do not.
fn writes_memory(op: &Operator<'_>) -> bool {
    use Operator::*;
    matches!(
        op,
        I32Store { .. }
            | I64Store { .. }
            | F32Store { .. }
            | F64Store { .. }
            | I32Store8 { .. }
            | I32Store16 { .. }
            | I64Store8 { .. }
            | I64Store16 { .. }
            | I64Store32 { .. }
            | V128Store { .. }
            | V128Store8Lane { .. }
            | V128Store16Lane { .. }
            | V128Store32Lane { .. }
            | V128Store64Lane { .. }
            | I32AtomicStore { .. }
            | I32AtomicStore8 { .. }
            | I32AtomicStore16 { .. }
            | I64AtomicStore { .. }
            | I64AtomicStore8 { .. }
            | I64AtomicStore16 { .. }
            | I64AtomicStore32 { .. }
            | I32AtomicRmwAdd { .. }
            | I32AtomicRmwSub { .. }
            | I32AtomicRmwAnd { .. }
            | I32AtomicRmwOr { .. }
            | I32AtomicRmwXor { .. }
            | I32AtomicRmwXchg { .. }
            | I32AtomicRmwCmpxchg { .. }
            | I32AtomicRmw8AddU { .. }
            | I32AtomicRmw8SubU { .. }
            | I32AtomicRmw8AndU { .. }
            | I32AtomicRmw8OrU { .. }
            | I32AtomicRmw8XorU { .. }
            | I32AtomicRmw8XchgU { .. }
            | I32AtomicRmw8CmpxchgU { .. }
            | I32AtomicRmw16AddU { .. }
            | I32AtomicRmw16SubU { .. }
            | I32AtomicRmw16AndU { .. }
            | I32AtomicRmw16OrU { .. }
            | I32AtomicRmw16XorU { .. }
            | I32AtomicRmw16XchgU { .. }
            | I32AtomicRmw16CmpxchgU { .. }
            | I64AtomicRmwAdd { .. }
            | I64AtomicRmwSub { .. }
            | I64AtomicRmwAnd { .. }
            | I64AtomicRmwOr { .. }
            | I64AtomicRmwXor { .. }
            | I64AtomicRmwXchg { .. }
            | I64AtomicRmwCmpxchg { .. }
            | I64AtomicRmw8AddU { .. }
            | I64AtomicRmw8SubU { .. }
            | I64AtomicRmw8AndU { .. }
            | I64AtomicRmw8OrU { .. }
            | I64AtomicRmw8XorU { .. }
            | I64AtomicRmw8XchgU { .. }
            | I64AtomicRmw8CmpxchgU { .. }
            | I64AtomicRmw16AddU { .. }
            | I64AtomicRmw16SubU { .. }
            | I64AtomicRmw16AndU { .. }
            | I64AtomicRmw16OrU { .. }
            | I64AtomicRmw16XorU { .. }
            | I64AtomicRmw16XchgU { .. }
            | I64AtomicRmw16CmpxchgU { .. }
            | I64AtomicRmw32AddU { .. }
            | I64AtomicRmw32SubU { .. }
            | I64AtomicRmw32AndU { .. }
            | I64AtomicRmw32OrU { .. }
            | I64AtomicRmw32XorU { .. }
            | I64AtomicRmw32XchgU { .. }
            | I64AtomicRmw32CmpxchgU { .. }
            | MemoryFill { .. }
            | MemoryCopy { .. }
            | MemoryInit { .. }
            | MemoryGrow { .. }
            | MemoryDiscard { .. }
    )
}

/// What a walk through direct calls met that stopped it (see [`reaches`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reached {
    /// An import: the host, which may do anything.
    Import,
    /// A function index outside the module.
    Outside,
    /// An indirect call, which could reach any function.
    Indirect,
    /// A function that writes memory itself (only when asked).
    Write,
}

/// Walks from `roots` through direct calls and says what stopped it, if
/// anything: an import, an index outside the module, an indirect call, or
/// (with `writes`) a function that writes memory.
fn reaches(roots: &[u32], imported: u32, calls: &[Calls], writes: bool) -> Option<Reached> {
    let mut seen = vec![false; calls.len()];
    let mut stack: Vec<u32> = roots.to_vec();
    while let Some(f) = stack.pop() {
        let Some(defined) = f.checked_sub(imported) else {
            return Some(Reached::Import);
        };
        let Some(c) = calls.get(defined as usize) else {
            return Some(Reached::Outside);
        };
        if std::mem::replace(&mut seen[defined as usize], true) {
            continue;
        }
        if c.indirect {
            return Some(Reached::Indirect);
        }
        if writes && c.writes {
            return Some(Reached::Write);
        }
        stack.extend(&c.callees);
    }
    None
}

/// Whether defined or imported function `f` leaves memory as it was:
/// neither it nor any function it reaches writes memory, calls an import
/// (the host may write) or makes an indirect call.
fn leaves_memory(f: u32, imported: u32, calls: &[Calls]) -> bool {
    reaches(&[f], imported, calls, true).is_none()
}

/// Checks that what runs at instantiation (`roots`: the start function and
/// `_initialize`) reaches no import and no indirect call.
fn pure_init(roots: &[u32], imported: u32, calls: &[Calls]) -> Result<(), Refusal> {
    match reaches(roots, imported, calls, false) {
        None => Ok(()),
        Some(Reached::Import) => Err("its start function or _initialize calls the host".into()),
        Some(Reached::Outside) => {
            Err("its start function or _initialize is not in the module".into())
        }
        Some(Reached::Indirect) => {
            Err("its start function or _initialize makes an indirect call".into())
        }
        Some(Reached::Write) => unreachable!("writes were not asked for"),
    }
}

/// `binary` with the exports rewinding needs added (see the module's
/// docs), or `None` if the rewrite failed (the module then runs as it is,
/// and is not rewound).
pub(crate) fn add_exports(binary: &[u8], plan: &Plan) -> Option<Vec<u8>> {
    std::panic::catch_unwind(|| {
        // The memory's index in this binary (after any shared-region import
        // `shm_inline.rs` added).
        let mut imported_memories = 0;
        for payload in Parser::new(0).parse_all(binary) {
            if let Ok(Payload::ImportSection(section)) = payload {
                for import in section.into_imports().flatten() {
                    imported_memories += u32::from(matches!(import.ty, TypeRef::Memory(_)));
                }
            }
        }
        let mut adder = Exports {
            globals: &plan.globals,
            memory: plan.memory.then_some(imported_memories),
        };
        let mut module = wasm_encoder::Module::new();
        adder
            .parse_core_module(&mut module, Parser::new(0), binary)
            .ok()?;
        Some(module.finish())
    })
    .ok()
    .flatten()
}

/// The rewriter: the module as it is, with the exports added.
struct Exports<'a> {
    globals: &'a [u32],
    memory: Option<u32>,
}

impl Reencode for Exports<'_> {
    type Error = std::convert::Infallible;

    fn parse_export_section(
        &mut self,
        exports: &mut ExportSection,
        section: wasmparser::ExportSectionReader<'_>,
    ) -> Result<(), reencode::Error<Self::Error>> {
        reencode::utils::parse_export_section(self, exports, section)?;
        if let Some(memory) = self.memory {
            exports.export(MEMORY_EXPORT, ExportKind::Memory, memory);
        }
        for &global in self.globals {
            exports.export(&global_export(global), ExportKind::Global, global);
        }
        Ok(())
    }
}

/// An instance's state before its first task: what a rewind puts back.
pub(crate) struct Snapshot {
    plan: Arc<Plan>,
    globals: Vec<(Global, Val)>,
    memory: Option<MemorySnapshot>,
}

struct MemorySnapshot {
    memory: Memory,
    /// Its size in bytes.
    size: usize,
    /// The pages that differ from the image (what the start function and
    /// `_initialize` wrote), by offset, sorted.
    written: Vec<(usize, Box<[u8]>)>,
    /// Which pages the next rewind puts back (`written.rs`).
    pages: Written,
}

/// `pages`' content at `offset`, if it has one.
fn page_at(pages: &[(usize, Box<[u8]>)], offset: usize) -> Option<&[u8]> {
    pages
        .binary_search_by_key(&offset, |(at, _)| *at)
        .ok()
        .map(|i| &*pages[i].1)
}

impl Snapshot {
    /// The state of a new `instance` of a module with `plan`, before its
    /// first task; `None` if it cannot be taken (the instance is then
    /// replaced after each task, as without a plan).
    pub(crate) fn take(
        plan: &Arc<Plan>,
        store: &mut Store<StoreData>,
        instance: &Instance,
    ) -> Option<Snapshot> {
        let mut globals = Vec::with_capacity(plan.globals.len());
        for name in &plan.global_names {
            let global = instance.get_global(&mut *store, name)?;
            globals.push((global, global.get(&mut *store)));
        }
        let memory = match plan.memory {
            false => None,
            true => {
                let memory = instance.get_memory(&mut *store, MEMORY_EXPORT)?;
                let (base, size) = (memory.data_ptr(&*store), memory.data_size(&*store));
                let page = pagemap::page_size();
                if base.addr() % page != 0 || size % page != 0 {
                    return None;
                }
                let mut written = Vec::new();
                let keep = |at: usize, len: usize, _zero: bool| {
                    for offset in (at..at + len).step_by(page) {
                        // SAFETY: a whole page inside the memory (the scan
                        // reports pages of the range asked); nothing writes
                        // it while we hold the store.
                        let now = unsafe { std::slice::from_raw_parts(base.add(offset), page) };
                        let differs = match page_at(&plan.image, offset) {
                            Some(image) => now != image,
                            None => now.iter().any(|&b| b != 0),
                        };
                        if differs {
                            written.push((offset, now.into()));
                        }
                    }
                };
                // Without code at instantiation, the memory is the image:
                // nothing to find (and no scan for every new instance of
                // a module whose instances cannot be rewound after all).
                if plan.init_runs {
                    // SAFETY: `base..base + size` is this instance's
                    // memory, page-aligned (checked above) and mapped while
                    // the store lives; the scan only reads its page tables.
                    unsafe { pagemap::scan(base, size, MAX_WRITTEN, keep) }?;
                }
                Some(MemorySnapshot {
                    memory,
                    size,
                    written,
                    // SAFETY: as the scan: this instance's memory,
                    // page-aligned.
                    pages: unsafe { Written::new(base, size) },
                })
            }
        };
        Some(Snapshot {
            plan: plan.clone(),
            globals,
            memory,
        })
    }

    /// Notes that a task (or any other call) is about to run in the
    /// instance on this thread (`Written::entered`).
    #[inline]
    pub(crate) fn entered(&mut self) {
        if let Some(m) = &mut self.memory {
            m.pages.entered();
        }
    }

    /// Whether a numeric task of export `name` leaves memory as it found
    /// it (see [`Plan`]).
    pub(crate) fn leaves_memory(&self, name: &str) -> bool {
        self.plan.leave_memory.contains(name)
    }

    /// Puts the instance back as it was before its first task; `false`
    /// if it cannot be (its memory grew, it wrote more than `MAX_WRITTEN`
    /// bytes, the scan failed): the caller must then drop the instance.
    /// `touched`: whether the tasks since the last rewind may have written
    /// memory; if not, only the globals are set back.
    ///
    /// The pages a task wrote are found with one scan of the memory's page
    /// tables, or, when this thread has taken no page fault since the last
    /// scan, are the pages that scan found: a rewind then costs one
    /// `getrusage` instead (0.4 µs against 2-3 µs here; `written.rs`).
    pub(crate) fn rewind(&mut self, store: &mut Store<StoreData>, touched: bool) -> bool {
        if let Some(m) = &self.memory
            && m.memory.data_size(&*store) != m.size
        {
            return false;
        }
        if let Some(m) = self.memory.as_mut().filter(|_| touched) {
            let base = m.memory.data_ptr(&*store);
            let page = pagemap::page_size();
            let (written, image) = (&m.written, &self.plan.image);
            let put_back = |at: usize, len: usize, zero: bool| {
                for offset in (at..at + len).step_by(page) {
                    let then = page_at(written, offset).or_else(|| page_at(image, offset));
                    if zero && then.is_none() {
                        continue; // zeros, as it started: leave the zero page
                    }
                    // SAFETY: a whole page inside this instance's memory
                    // (`size` bytes, checked just above; the scan reports
                    // pages of the range asked), not shared (the plan
                    // refuses shared memories), and no wasm runs while we
                    // hold the store: writing it races nothing.
                    let now = unsafe { std::slice::from_raw_parts_mut(base.add(offset), page) };
                    match then {
                        Some(then) => now.copy_from_slice(then),
                        None => now.fill(0),
                    }
                }
            };
            // SAFETY: as in `take`: this instance's memory, page-aligned,
            // mapped while the store lives; the same memory every time.
            let found = unsafe {
                m.pages
                    .find(base, m.size, MAX_WRITTEN, &written::UNTRUSTED, put_back)
            };
            if found.is_none() {
                return false;
            }
        }
        for (global, value) in &self.globals {
            if global.set(&mut *store, *value).is_err() {
                return false;
            }
        }
        true
    }
}

/// Whether rewinding can work on this machine at all.
pub(crate) fn available() -> bool {
    pagemap::available()
}

#[cfg(test)]
mod test {
    use super::*;

    fn plan(text: &str) -> Result<Plan, Refusal> {
        Plan::of(&wat::parse_str(text).unwrap())
    }

    #[test]
    fn modules_that_change_more_than_memory_and_globals_are_refused() {
        for (module, why) in [
            (
                r#"(module (table 1 funcref) (func (export "f") (table.set (i32.const 0) (ref.null func))))"#,
                "TableSet",
            ),
            (
                r#"(module (memory 1) (data "x") (func (export "f") (data.drop 0)))"#,
                "DataDrop",
            ),
            (
                r#"(module (memory 1) (memory 1) (func (export "f")))"#,
                "more than one memory",
            ),
            (
                r#"(module (global (mut externref) (ref.null extern)) (func (export "f")))"#,
                "reference",
            ),
            (
                r#"(module (import "env" "g" (global i32)) (func (export "f")))"#,
                "not a function",
            ),
            (
                r#"(module (import "wasmpool" "worker_index" (func $w (result i32)))
                    (func $init (drop (call $w))) (start $init) (func (export "f")))"#,
                "calls the host",
            ),
            (
                r#"(module (type $t (func)) (table 1 funcref)
                    (func (export "_initialize") (call_indirect (type $t) (i32.const 0))))"#,
                "indirect call",
            ),
            (
                r#"(module (import "wasmpool" "shared" (memory 1 1 shared))
                    (data (i32.const 0) "x") (func (export "f")))"#,
                "shared region",
            ),
            (
                r#"(module (import "wasmpool" "shared" (memory 1 1 shared))
                    (func $init (i32.atomic.store (i32.const 0) (i32.const 1))) (start $init)
                    (func (export "f")))"#,
                "imports the shared region",
            ),
            (r#"(module (func (export "wasmpool:rewind:x")))"#, "exports"),
        ] {
            let refusal = plan(module).unwrap_err();
            assert!(refusal.contains(why), "{module}: {refusal}");
        }
    }

    #[test]
    fn a_plan_holds_the_mutable_globals_and_the_data_segments_pages() {
        let plan = plan(
            r#"(module (memory 2) (global i32 (i32.const 1)) (global (mut i64) (i64.const 2))
                (data (i32.const 4094) "abcd") (data (i32.const 70000) "z")
                (func $init (call $helper)) (func $helper) (start $init)
                (func (export "f")))"#,
        )
        .unwrap();
        assert_eq!(plan.globals, [1]);
        assert!(plan.memory);
        let page = pagemap::page_size();
        let pages: Vec<usize> = plan.image.iter().map(|(at, _)| *at).collect();
        assert_eq!(pages, [0, page, 70000 / page * page]);
        assert_eq!(&plan.image[0].1[page - 2..], b"ab");
        assert_eq!(&plan.image[1].1[..2], b"cd");
    }

    #[test]
    fn exports_that_cannot_write_memory_are_found() {
        let plan = plan(
            r#"(module (import "wasmpool" "worker_index" (func $host (result i32)))
                (memory 1) (global $g (mut i32) (i32.const 0)) (type $t (func))
                (table 1 funcref)
                (func $reads (result i32) (global.set $g (i32.const 1)) (i32.load (i32.const 8)))
                (func $writes (i32.store8 (i32.const 0) (i32.const 1)))
                (func (export "pure") (result i32) (call $reads))
                (func (export "stores") (call $writes))
                (func (export "stores_later") (call $reads) (drop) (call $writes))
                (func (export "host") (result i32) (call $host))
                (func (export "indirect") (call_indirect (type $t) (i32.const 0)))
                (func (export "atomic") (drop (i32.atomic.rmw.add (i32.const 0) (i32.const 1))))
                (func (export "fill") (memory.fill (i32.const 0) (i32.const 0) (i32.const 1)))
                (func (export "grow") (drop (memory.grow (i32.const 0)))))"#,
        )
        .unwrap();
        let mut pure: Vec<&str> = plan.leave_memory.iter().map(String::as_str).collect();
        pure.sort();
        assert_eq!(pure, ["pure"]);
    }

    #[test]
    fn the_exports_are_added_and_the_rest_is_kept() {
        let binary = wat::parse_str(
            r#"(module (import "wasmpool" "shared" (memory 1 1 shared)) (memory 1)
                (global (mut i32) (i32.const 0)) (func (export "f")))"#,
        )
        .unwrap();
        let plan = Plan::of(&binary).unwrap();
        let text = wasmprinter::print_bytes(add_exports(&binary, &plan).unwrap()).unwrap();
        assert!(
            text.contains(r#"(export "wasmpool:rewind:memory" (memory 1))"#),
            "{text}"
        );
        assert!(
            text.contains(r#"(export "wasmpool:rewind:global:0" (global 0))"#),
            "{text}"
        );
        assert!(text.contains(r#"(export "f" (func 0))"#), "{text}");
    }
}
