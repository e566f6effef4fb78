//! The shared region's atomic calls, compiled into the guest.
//!
//! A guest reaches the shared region through ABI calls (`shm_add_i64`, ...,
//! docs/abi.md). Each is a call out of wasm into the host and back (about
//! 11 ns here), and between two workers incrementing one counter that call
//! is what limits them: the counter's cache line moves to the other core
//! while a worker is in the call's trampolines, so every increment waits for
//! it (2 x 1,000,000 increments: 40 M/s, against 73 M/s for the same
//! increments as wasm atomics on the region imported as a memory, and 80 M/s
//! natively).
//!
//! So when a pool has a region, [`inline`] rewrites a module that imports
//! any of the eight plain atomics (`shm_{load,store,add,cas}_{i32,i64}`):
//! it imports the region as a memory (`wasmpool::shared`, as a guest can do
//! itself), appends one small function per such import that does the same
//! access with a wasm atomic instruction, and points every direct `call` of
//! the import at it. The rewritten module behaves as the original:
//!
//! - the same operations, sequentially consistent both ways (wasm atomics
//!   are; the host used `SeqCst`);
//! - an offset that is negative, out of bounds or misaligned is not accessed
//!   by the new function: it calls the original import, which traps with
//!   the same message as before (docs/abi.md), so bad offsets cost a host
//!   call and nothing changes for them;
//! - the imports stay, with their indices: an export of one, a `ref.func`,
//!   or a call through a table still reaches the host function.
//!
//! Invariants: function indices do not move (the new functions come after
//! every existing one); memory indices do (an imported memory comes before
//! the module's own), and every memory index in the module is remapped. The
//! rewrite depends on the region's size, which the checks embed, so cached
//! code is keyed by it. A module the rewrite cannot handle (a GC type, an
//! unexpected signature, an invalid module, a region imported with another
//! type) is left as it is: host calls are always correct. Precompiled
//! modules (`.cwasm`) are never rewritten, nor modules run with fuel (fuel
//! counts wasm instructions, and an inlined call has a dozen where a host
//! call had one: the same budget would stop a task sooner).

use std::collections::HashMap;

use wasm_encoder::reencode::{self, Reencode};
use wasm_encoder::{
    CodeSection, EntityType, Function, FunctionSection, ImportSection, Instruction, MemArg,
    MemoryType, ValType,
};
use wasmparser::{Operator, Parser, Payload, TypeRef};

use crate::abi::MODULE;

/// One of the eight plain atomics: its name, the width of the value and
/// what it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Load,
    Store,
    Add,
    Cas,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Atomic {
    /// The import's name, which backtraces show for the new function.
    name: &'static str,
    op: Op,
    /// 4 or 8 bytes.
    width: u64,
}

impl Atomic {
    fn named(name: &str) -> Option<Atomic> {
        // The ABI's own spelling of the name, which lives as long as we need.
        let name = crate::abi::IMPORTS.iter().copied().find(|&n| n == name)?;
        let (op, width) = match name {
            "shm_load_i32" => (Op::Load, 4),
            "shm_store_i32" => (Op::Store, 4),
            "shm_add_i32" => (Op::Add, 4),
            "shm_cas_i32" => (Op::Cas, 4),
            "shm_load_i64" => (Op::Load, 8),
            "shm_store_i64" => (Op::Store, 8),
            "shm_add_i64" => (Op::Add, 8),
            "shm_cas_i64" => (Op::Cas, 8),
            _ => return None,
        };
        Some(Atomic { name, op, width })
    }

    fn value(&self) -> wasmparser::ValType {
        if self.width == 8 {
            wasmparser::ValType::I64
        } else {
            wasmparser::ValType::I32
        }
    }

    /// Whether `ty` is the ABI's signature for this call (an import with
    /// another one is refused by the linker, and left alone here).
    fn fits(&self, ty: &wasmparser::FuncType) -> bool {
        use wasmparser::ValType::I64;
        let v = self.value();
        let (params, results): (&[_], &[_]) = match self.op {
            Op::Load => (&[I64], &[v]),
            Op::Store => (&[I64, v], &[]),
            Op::Add => (&[I64, v], &[v]),
            Op::Cas => (&[I64, v, v], &[v]),
        };
        ty.params() == params && ty.results() == results
    }

    /// The body: bounds and alignment checked as the host checks them; a
    /// bad offset goes to the host's own call (`original`), which traps with
    /// the ABI's message; a good one is accessed with one wasm atomic.
    fn body(&self, original: u32, memory: u32, region_bytes: u64) -> Function {
        let params = match self.op {
            Op::Load => 1,
            Op::Store | Op::Add => 2,
            Op::Cas => 3,
        };
        let result = match self.op {
            Op::Store => wasm_encoder::BlockType::Empty,
            _ if self.width == 8 => wasm_encoder::BlockType::Result(ValType::I64),
            _ => wasm_encoder::BlockType::Result(ValType::I32),
        };
        let mem = MemArg {
            offset: 0,
            align: if self.width == 8 { 3 } else { 2 },
            memory_index: memory,
        };
        // The region holds at least one 64 KiB page, so the last offset an
        // access of `width` may start at is positive.
        let last = region_bytes - self.width;
        let mut f = Function::new([]);
        // `offset >u last`: also every negative offset.
        f.instructions()
            .local_get(0)
            .i64_const(last as i64)
            .i64_gt_u()
            .local_get(0)
            .i64_const((self.width - 1) as i64)
            .i64_and()
            .i64_const(0)
            .i64_ne()
            .i32_or()
            .if_(result);
        for i in 0..params {
            f.instructions().local_get(i);
        }
        f.instructions().call(original).else_();
        f.instructions().local_get(0).i32_wrap_i64();
        for i in 1..params {
            f.instructions().local_get(i);
        }
        let access = match (self.op, self.width) {
            (Op::Load, 8) => Instruction::I64AtomicLoad(mem),
            (Op::Load, _) => Instruction::I32AtomicLoad(mem),
            (Op::Store, 8) => Instruction::I64AtomicStore(mem),
            (Op::Store, _) => Instruction::I32AtomicStore(mem),
            (Op::Add, 8) => Instruction::I64AtomicRmwAdd(mem),
            (Op::Add, _) => Instruction::I32AtomicRmwAdd(mem),
            (Op::Cas, 8) => Instruction::I64AtomicRmwCmpxchg(mem),
            (Op::Cas, _) => Instruction::I32AtomicRmwCmpxchg(mem),
        };
        f.instruction(&access);
        f.instructions().end().end();
        f
    }
}

/// What a module has that the rewrite needs: found in one pass over its
/// sections before anything is encoded.
struct Plan {
    /// Each inlinable import: its function index, type index and call.
    imports: Vec<(u32, u32, Atomic)>,
    /// Functions (imported and defined) before the rewrite.
    functions: u32,
    /// Imported memories before the rewrite; the region's index, if the
    /// module imports it already.
    imported_memories: u32,
    shared: Option<u32>,
}

impl Plan {
    fn of(binary: &[u8]) -> Result<Option<Plan>, wasmparser::BinaryReaderError> {
        let mut types = Vec::new();
        let mut plan = Plan {
            imports: Vec::new(),
            functions: 0,
            imported_memories: 0,
            shared: None,
        };
        let mut has_code = false;
        for payload in Parser::new(0).parse_all(binary) {
            match payload? {
                Payload::TypeSection(section) => {
                    for ty in section.into_iter_err_on_gc_types() {
                        types.push(ty?);
                    }
                }
                Payload::ImportSection(section) => {
                    for import in section.into_imports() {
                        let import = import?;
                        match import.ty {
                            TypeRef::Func(ty) | TypeRef::FuncExact(ty) => {
                                if import.module == MODULE
                                    && let Some(atomic) = Atomic::named(import.name)
                                    && types.get(ty as usize).is_some_and(|t| atomic.fits(t))
                                {
                                    plan.imports.push((plan.functions, ty, atomic));
                                }
                                plan.functions += 1;
                            }
                            TypeRef::Memory(ty) => {
                                if import.module == MODULE && import.name == "shared" {
                                    if ty.memory64 || !ty.shared {
                                        // Not the region's type: the linker
                                        // refuses it, in the module's own terms.
                                        return Ok(None);
                                    }
                                    plan.shared = Some(plan.imported_memories);
                                }
                                plan.imported_memories += 1;
                            }
                            _ => {}
                        }
                    }
                }
                Payload::FunctionSection(section) => plan.functions += section.count(),
                Payload::CodeSectionStart { .. } => has_code = true,
                _ => {}
            }
        }
        Ok((has_code && !plan.imports.is_empty()).then_some(plan))
    }
}

/// The rewriter: wasm-encoder's round trip, with the imports, functions,
/// code, calls and memory indices changed as the module's docs say.
struct Inliner {
    plan: Plan,
    region_bytes: u64,
    /// Import function index -> the new function's index.
    calls: HashMap<u32, u32>,
}

impl Inliner {
    /// The region's memory index in the rewritten module.
    fn region(&self) -> u32 {
        self.plan.shared.unwrap_or(self.plan.imported_memories)
    }
}

impl Reencode for Inliner {
    type Error = std::convert::Infallible;

    fn memory_index(&mut self, memory: u32) -> Result<u32, reencode::Error<Self::Error>> {
        Ok(match self.plan.shared {
            Some(_) => memory,
            None if memory >= self.plan.imported_memories => memory + 1,
            None => memory,
        })
    }

    fn instruction<'a>(
        &mut self,
        op: Operator<'a>,
    ) -> Result<Instruction<'a>, reencode::Error<Self::Error>> {
        Ok(match op {
            Operator::Call { function_index } if self.calls.contains_key(&function_index) => {
                Instruction::Call(self.calls[&function_index])
            }
            Operator::ReturnCall { function_index } if self.calls.contains_key(&function_index) => {
                Instruction::ReturnCall(self.calls[&function_index])
            }
            op => reencode::utils::instruction(self, op)?,
        })
    }

    fn parse_import_section(
        &mut self,
        imports: &mut ImportSection,
        section: wasmparser::ImportSectionReader<'_>,
    ) -> Result<(), reencode::Error<Self::Error>> {
        reencode::utils::parse_import_section(self, imports, section)?;
        if self.plan.shared.is_none() {
            let pages = self.region_bytes / 65536;
            imports.import(
                MODULE,
                "shared",
                EntityType::Memory(MemoryType {
                    minimum: pages,
                    maximum: Some(pages),
                    memory64: false,
                    shared: true,
                    page_size_log2: None,
                }),
            );
        }
        Ok(())
    }

    fn parse_function_section(
        &mut self,
        functions: &mut FunctionSection,
        section: wasmparser::FunctionSectionReader<'_>,
    ) -> Result<(), reencode::Error<Self::Error>> {
        reencode::utils::parse_function_section(self, functions, section)?;
        for &(_, ty, _) in &self.plan.imports {
            functions.function(ty);
        }
        Ok(())
    }

    /// The new functions are named after their imports, so that a
    /// backtrace through one (a bad offset's trap) says what it is.
    fn parse_custom_name_subsection(
        &mut self,
        names: &mut wasm_encoder::NameSection,
        section: wasmparser::Name<'_>,
    ) -> Result<(), reencode::Error<Self::Error>> {
        let wasmparser::Name::Function(map) = section else {
            return reencode::utils::parse_custom_name_subsection(self, names, section);
        };
        let mut functions = wasm_encoder::NameMap::new();
        for naming in map {
            let naming = naming?;
            functions.append(naming.index, naming.name);
        }
        for (&(_, _, atomic), at) in self.plan.imports.iter().zip(self.plan.functions..) {
            functions.append(at, &format!("wasmpool::{} (inlined)", atomic.name));
        }
        names.functions(&functions);
        Ok(())
    }

    fn parse_code_section(
        &mut self,
        code: &mut CodeSection,
        section: wasmparser::CodeSectionReader<'_>,
    ) -> Result<(), reencode::Error<Self::Error>> {
        reencode::utils::parse_code_section(self, code, section)?;
        let region = self.region();
        for &(import, _, atomic) in &self.plan.imports {
            code.function(&atomic.body(import, region, self.region_bytes));
        }
        Ok(())
    }
}

/// Whether [`inline`] would rewrite `binary`: it calls one of the plain
/// atomics (a module that does not parse is not rewritten).
pub(crate) fn applies(binary: &[u8]) -> bool {
    matches!(Plan::of(binary), Ok(Some(_)))
}

/// `binary` rewritten so that its calls of the region's plain atomics are
/// wasm atomics on the region (see the module's docs), or `None` when it
/// calls none of them or cannot be rewritten (it then runs as it is).
///
/// `region_bytes` is the region's size: a whole number of 64 KiB pages, at
/// least one, at most 4 GiB.
pub(crate) fn inline(binary: &[u8], region_bytes: u64) -> Option<Vec<u8>> {
    debug_assert!(region_bytes >= 65536 && region_bytes.is_multiple_of(65536));
    // Only a valid module is rewritten (an invalid one is left for
    // wasmtime to explain), and a panic in the rewrite, should the encoder
    // meet something it cannot handle, leaves the module as it is: the
    // rewrite is an optimization, never a way to fail a load.
    let valid = wasmparser::Validator::new_with_features(wasmparser::WasmFeatures::all())
        .validate_all(binary)
        .is_ok();
    if !valid {
        return None;
    }
    std::panic::catch_unwind(|| rewrite(binary, region_bytes)).unwrap_or_else(|_| {
        tracing::warn!("not inlining the shared region's atomics: the rewrite panicked");
        None
    })
}

fn rewrite(binary: &[u8], region_bytes: u64) -> Option<Vec<u8>> {
    let plan = match Plan::of(binary) {
        Ok(Some(plan)) => plan,
        Ok(None) => return None,
        Err(e) => {
            tracing::debug!("not inlining the shared region's atomics: {e}");
            return None;
        }
    };
    let calls = plan
        .imports
        .iter()
        .enumerate()
        .map(|(i, &(import, _, _))| (import, plan.functions + i as u32))
        .collect();
    let mut inliner = Inliner {
        plan,
        region_bytes,
        calls,
    };
    let mut module = wasm_encoder::Module::new();
    match inliner.parse_core_module(&mut module, Parser::new(0), binary) {
        Ok(()) => Some(module.finish()),
        Err(e) => {
            tracing::debug!("not inlining the shared region's atomics: {e}");
            None
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;

    fn wat(text: &str) -> Vec<u8> {
        wat::parse_str(text).unwrap()
    }

    #[test]
    fn a_module_without_the_atomics_is_left_alone() {
        let plain = wat(
            r#"(module (import "wasmpool" "shm_size" (func (result i64)))
            (func (export "f")))"#,
        );
        assert!(inline(&plain, 65536).is_none());
    }

    #[test]
    fn an_import_with_another_signature_is_left_alone() {
        let odd = wat(
            r#"(module (import "wasmpool" "shm_add_i64" (func (param i32)))
            (func (export "f") i32.const 0 call 0))"#,
        );
        assert!(inline(&odd, 65536).is_none());
    }

    #[test]
    fn calls_are_redirected_and_memories_renumbered() {
        let module = wat(r#"(module
            (import "wasmpool" "shm_add_i64" (func $add (param i64 i64) (result i64)))
            (memory (export "memory") 1)
            (data (i32.const 8) "x")
            (func (export "f") (result i64)
              i32.const 0 i64.load drop
              i64.const 0 i64.const 1 call $add))"#);
        let out = inline(&module, 65536).expect("rewritten");
        wasmparser::Validator::new_with_features(wasmparser::WasmFeatures::all())
            .validate_all(&out)
            .expect("valid");
        let text = wasmprinter::print_bytes(&out).unwrap();
        assert!(
            text.contains(r#"(import "wasmpool" "shared" (memory (;0;) 1 1 shared))"#),
            "{text}"
        );
        // The new function comes after every existing one, named after
        // its import.
        assert!(
            text.contains(r#"call $"wasmpool::shm_add_i64 (inlined)""#),
            "{text}"
        );
        assert!(
            text.contains(r#"(func $"wasmpool::shm_add_i64 (inlined)" (;2;)"#),
            "{text}"
        );
        assert!(text.contains("i64.load 1"), "{text}");
        assert!(text.contains("i64.atomic.rmw.add"), "{text}");
        assert!(text.contains(r#"(export "memory" (memory 1))"#), "{text}");
    }

    #[test]
    fn the_sdk_guest_is_rewritten_into_a_valid_module() {
        // The guest the shared-memory tests and the counter benchmark run:
        // a real Rust SDK module, with every section rustc emits.
        let guest = std::fs::read(wasmpool_tests::TESTGUEST).unwrap();
        assert!(applies(&guest));
        let out = inline(&guest, 1 << 20).expect("rewritten");
        wasmparser::Validator::new_with_features(wasmparser::WasmFeatures::all())
            .validate_all(&out)
            .expect("valid");
        let text = wasmprinter::print_bytes(&out).unwrap();
        assert!(text.contains("i64.atomic.rmw.add"));
    }
}
