//! Tasks, their inputs and their outputs, and the JSON mapping of each.
//!
//! Entry point: [`Task`], got from [`Pool::task`](crate::Pool::task), which
//! knows whether an export is an ABI task (bytes in, bytes out: JSON for the
//! CLI and the typed helpers) or a numeric export (`(i64) -> i64` and the
//! like), and converts JSON or serde values to [`Payload`]s and
//! [`Output`]s back, as `docs/abi.md` specifies.

use std::fmt;
use std::sync::Arc;

use serde::Serialize;
use serde::de::{DeserializeOwned, IgnoredAny};
use serde_json::Value as Json;
use wasmtime::{ValRaw, ValType};

use crate::error::{TaskError, TaskErrorKind};

/// A WebAssembly number type, the parameter and result types of numeric tasks.
///
/// ```
/// assert_eq!(wasmpool::WasmType::I64.to_string(), "i64");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WasmType {
    /// `i32`
    I32,
    /// `i64`
    I64,
    /// `f32`
    F32,
    /// `f64`
    F64,
}

impl WasmType {
    pub(crate) fn from_val_type(t: &ValType) -> Option<Self> {
        match t {
            ValType::I32 => Some(WasmType::I32),
            ValType::I64 => Some(WasmType::I64),
            ValType::F32 => Some(WasmType::F32),
            ValType::F64 => Some(WasmType::F64),
            _ => None,
        }
    }
}

impl fmt::Display for WasmType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WasmType::I32 => "i32",
            WasmType::I64 => "i64",
            WasmType::F32 => "f32",
            WasmType::F64 => "f64",
        })
    }
}

/// One WebAssembly number: an argument or a result of a numeric task.
///
/// ```
/// let v = wasmpool::WasmValue::I64(7);
/// assert_eq!(v.to_string(), "7");
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum WasmValue {
    /// An `i32`.
    I32(i32),
    /// An `i64`.
    I64(i64),
    /// An `f32`.
    F32(f32),
    /// An `f64`.
    F64(f64),
}

impl WasmValue {
    pub(crate) fn to_raw(self) -> ValRaw {
        match self {
            WasmValue::I32(v) => ValRaw::i32(v),
            WasmValue::I64(v) => ValRaw::i64(v),
            WasmValue::F32(v) => ValRaw::f32(v.to_bits()),
            WasmValue::F64(v) => ValRaw::f64(v.to_bits()),
        }
    }

    pub(crate) fn from_raw(ty: WasmType, raw: &ValRaw) -> Self {
        match ty {
            WasmType::I32 => WasmValue::I32(raw.get_i32()),
            WasmType::I64 => WasmValue::I64(raw.get_i64()),
            WasmType::F32 => WasmValue::F32(f32::from_bits(raw.get_f32())),
            WasmType::F64 => WasmValue::F64(f64::from_bits(raw.get_f64())),
        }
    }

    pub(crate) fn to_val(self) -> wasmtime::Val {
        match self {
            WasmValue::I32(v) => wasmtime::Val::I32(v),
            WasmValue::I64(v) => wasmtime::Val::I64(v),
            WasmValue::F32(v) => wasmtime::Val::F32(v.to_bits()),
            WasmValue::F64(v) => wasmtime::Val::F64(v.to_bits()),
        }
    }

    /// A numeric `Val` as a value; `None` for references.
    pub(crate) fn from_val(val: &wasmtime::Val) -> Option<Self> {
        Some(match *val {
            wasmtime::Val::I32(v) => WasmValue::I32(v),
            wasmtime::Val::I64(v) => WasmValue::I64(v),
            wasmtime::Val::F32(v) => WasmValue::F32(f32::from_bits(v)),
            wasmtime::Val::F64(v) => WasmValue::F64(f64::from_bits(v)),
            _ => return None,
        })
    }

    /// Whether the value has type `ty`.
    pub(crate) fn has_type(&self, ty: WasmType) -> bool {
        matches!(
            (self, ty),
            (WasmValue::I32(_), WasmType::I32)
                | (WasmValue::I64(_), WasmType::I64)
                | (WasmValue::F32(_), WasmType::F32)
                | (WasmValue::F64(_), WasmType::F64)
        )
    }

    fn to_json(self) -> Json {
        match self {
            WasmValue::I32(v) => Json::from(v),
            WasmValue::I64(v) => Json::from(v),
            WasmValue::F32(v) => Json::from(v),
            WasmValue::F64(v) => Json::from(v),
        }
    }
}

impl fmt::Display for WasmValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.to_json(), f)
    }
}

/// The arguments or results of a numeric task. Up to two are held inline,
/// so a typical call allocates nothing.
///
/// ```
/// use wasmpool::{Values, WasmValue};
/// let v: Values = vec![WasmValue::I64(1), WasmValue::F64(2.5)].into();
/// assert_eq!(v.len(), 2);
/// assert_eq!(v[1], WasmValue::F64(2.5));
/// ```
#[derive(Clone, PartialEq, Default)]
pub struct Values(pub(crate) smallvec::SmallVec<[WasmValue; 2]>);

impl fmt::Debug for Values {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.0.iter()).finish()
    }
}

impl std::ops::Deref for Values {
    type Target = [WasmValue];
    fn deref(&self) -> &[WasmValue] {
        &self.0
    }
}

impl From<Vec<WasmValue>> for Values {
    fn from(v: Vec<WasmValue>) -> Self {
        Values(smallvec::SmallVec::from_vec(v))
    }
}

impl FromIterator<WasmValue> for Values {
    fn from_iter<I: IntoIterator<Item = WasmValue>>(iter: I) -> Self {
        Values(iter.into_iter().collect())
    }
}

/// A task's input, ready to send to a worker.
///
/// ```
/// let p = wasmpool::Payload::Bytes(b"42".to_vec());
/// ```
#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    /// The input bytes of an ABI task (JSON, by wasmpool's conventions).
    Bytes(Vec<u8>),
    /// The arguments of a numeric task, one per parameter.
    Values(Values),
}

/// A task's result, as it came out of the guest.
///
/// ```
/// let o = wasmpool::Output::Values(vec![wasmpool::WasmValue::I64(4)].into());
/// ```
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// The output bytes of an ABI task.
    Bytes(Vec<u8>),
    /// The results of a numeric task.
    Values(Values),
}

/// What kind of export a task is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TaskKind {
    /// `wasmpool_task_<name>: () -> i32`, bytes in and out through the ABI.
    Abi,
    /// A plain export with number parameters and results.
    Numeric {
        params: Vec<WasmType>,
        results: Vec<WasmType>,
    },
}

impl TaskKind {
    pub(crate) fn describe(&self) -> String {
        match self {
            TaskKind::Abi => "json -> json".into(),
            TaskKind::Numeric { params, results } => {
                let list = |ts: &[WasmType]| {
                    ts.iter()
                        .map(|t| t.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                match results.as_slice() {
                    [one] => format!("({}) -> {one}", list(params)),
                    _ => format!("({}) -> ({})", list(params), list(results)),
                }
            }
        }
    }
}

/// A task resolved against a module: its name, export and kind. `id` indexes
/// each worker's cache of resolved functions; `pool` is the pool it was
/// resolved in, the only one that runs it.
#[derive(Debug)]
pub(crate) struct TaskSpec {
    pub(crate) pool: u64,
    pub(crate) id: usize,
    pub(crate) name: String,
    pub(crate) export: String,
    /// `export`'s index in the module: every instance finds it there
    /// without looking the name up (a tenth of a fresh instance's own
    /// work, measured).
    pub(crate) export_index: ExportIndex,
    pub(crate) kind: TaskKind,
}

/// A [`wasmtime::ModuleExport`] (which is not `Debug`).
#[derive(Clone, Copy)]
pub(crate) struct ExportIndex(pub(crate) Option<wasmtime::ModuleExport>);

impl fmt::Debug for ExportIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "ExportIndex(..)"
        } else {
            "ExportIndex(None)"
        })
    }
}

/// A task of a pool's module, ready to be mapped over inputs.
///
/// Get one with [`Pool::task`](crate::Pool::task). It converts inputs to
/// [`Payload`]s and [`Output`]s back, from serde values or from JSON text.
///
/// ```no_run
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let pool = wasmpool::Pool::builder().module_file("square.wasm").build()?;
/// let task = pool.task("square")?;
/// println!("{}: {}", task.name(), task.signature());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Task {
    pub(crate) spec: Arc<TaskSpec>,
}

impl Task {
    /// The name the task was asked for by.
    ///
    /// ```no_run
    /// # let pool = wasmpool::Pool::builder().module_file("square.wasm").build().unwrap();
    /// assert_eq!(pool.task("square").unwrap().name(), "square");
    /// ```
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// The export that runs it (`wasmpool_task_<name>` or `<name>`).
    ///
    /// ```no_run
    /// # let pool = wasmpool::Pool::builder().module_file("square.wasm").build().unwrap();
    /// assert_eq!(pool.task("square").unwrap().export(), "wasmpool_task_square");
    /// ```
    pub fn export(&self) -> &str {
        &self.spec.export
    }

    /// The task's signature as text: `json -> json` for ABI tasks,
    /// `(i64) -> i64` for numeric ones.
    ///
    /// ```no_run
    /// # let pool = wasmpool::Pool::builder().module_file("square.wasm").build().unwrap();
    /// assert_eq!(pool.task("square_i64").unwrap().signature(), "(i64) -> i64");
    /// ```
    pub fn signature(&self) -> String {
        self.spec.kind.describe()
    }

    /// Whether this is a numeric export rather than an ABI task.
    ///
    /// ```no_run
    /// # let pool = wasmpool::Pool::builder().module_file("square.wasm").build().unwrap();
    /// assert!(pool.task("square_i64").unwrap().is_numeric());
    /// ```
    pub fn is_numeric(&self) -> bool {
        matches!(self.spec.kind, TaskKind::Numeric { .. })
    }

    /// The type of a numeric task's one parameter; `None` for an ABI task
    /// or another number of parameters.
    pub(crate) fn one_param(&self) -> Option<WasmType> {
        match &self.spec.kind {
            TaskKind::Numeric { params, .. } if let [ty] = params[..] => Some(ty),
            _ => None,
        }
    }

    /// Encodes a serde value as this task's input: JSON bytes for an ABI
    /// task; for a numeric task, a number or an array of numbers mapped to
    /// the parameters.
    ///
    /// # Errors
    ///
    /// A [`TaskErrorKind::Input`] error when the value does not serialize
    /// or does not fit a numeric task's parameters.
    ///
    /// ```no_run
    /// # let pool = wasmpool::Pool::builder().module_file("square.wasm").build().unwrap();
    /// let task = pool.task("square_i64").unwrap();
    /// assert_eq!(task.encode(&3).unwrap(), wasmpool::Payload::Values(vec![wasmpool::WasmValue::I64(3)].into()));
    /// ```
    pub fn encode<I: Serialize + ?Sized>(&self, input: &I) -> Result<Payload, TaskError> {
        self.encode_into(input, || Vec::with_capacity(BUFFER_START))
    }

    /// [`encode`](Self::encode), writing an ABI task's JSON into the buffer
    /// `buffer` gives (cleared first); a numeric task takes none.
    pub(crate) fn encode_into<I: Serialize + ?Sized>(
        &self,
        input: &I,
        buffer: impl FnOnce() -> Vec<u8>,
    ) -> Result<Payload, TaskError> {
        match &self.spec.kind {
            TaskKind::Abi => {
                let mut bytes = buffer();
                bytes.clear();
                self.encode_text_into(input, &mut bytes)
                    .map(|()| Payload::Bytes(bytes))
            }
            // One number for one parameter, the common case, without the
            // general serializer's list.
            TaskKind::Numeric { params, .. }
                if let [ty] = params[..]
                    && let Some(value) = crate::numeric::to_one_arg(ty, input) =>
            {
                Ok(Payload::Values(Values(
                    smallvec::SmallVec::from_buf_and_len([value, value], 1),
                )))
            }
            TaskKind::Numeric { params, .. } => crate::numeric::to_args(params, input)
                .map(Payload::Values)
                .map_err(|e| TaskError::new(TaskErrorKind::Input, e.0)),
        }
    }

    /// An ABI task's input as JSON, appended to `buffer` (which may hold
    /// other inputs before it; on an error, what was appended is left for
    /// the caller to drop).
    pub(crate) fn encode_text_into<I: Serialize + ?Sized>(
        &self,
        input: &I,
        buffer: &mut Vec<u8>,
    ) -> Result<(), TaskError> {
        serde_json::to_writer(buffer, input).map_err(|e| {
            TaskError::new(
                TaskErrorKind::Input,
                format!("cannot encode the input: {e}"),
            )
        })
    }

    /// Parses one JSON text (a line of the CLI's input) as this task's input.
    /// An ABI task gets the text itself once it is known to be valid JSON.
    ///
    /// # Errors
    ///
    /// A [`TaskErrorKind::Input`] error naming what is wrong.
    ///
    /// ```no_run
    /// # let pool = wasmpool::Pool::builder().module_file("square.wasm").build().unwrap();
    /// let task = pool.task("square").unwrap();
    /// assert!(task.parse_json(b"[1, 2").is_err());
    /// ```
    pub fn parse_json(&self, text: &[u8]) -> Result<Payload, TaskError> {
        self.parse_json_into(text, Vec::new())
    }

    /// [`parse_json`](Self::parse_json), copying an ABI task's text into
    /// `buffer` (cleared first) instead of a new allocation: give it a
    /// buffer of an output already written (see [`Spares`]). A numeric
    /// task does not use it.
    ///
    /// # Errors
    ///
    /// As [`parse_json`](Self::parse_json).
    ///
    /// ```no_run
    /// # let pool = wasmpool::Pool::builder().module_file("square.wasm").build().unwrap();
    /// let task = pool.task("square").unwrap();
    /// let spares = wasmpool::Spares::default();
    /// let payload = task.parse_json_into(b"7", spares.take()).unwrap();
    /// assert_eq!(payload, wasmpool::Payload::Bytes(b"7".to_vec()));
    /// ```
    pub fn parse_json_into(&self, text: &[u8], buffer: Vec<u8>) -> Result<Payload, TaskError> {
        let invalid = |e: serde_json::Error| {
            TaskError::new(TaskErrorKind::Input, format!("invalid JSON: {e}"))
        };
        match &self.spec.kind {
            TaskKind::Abi => {
                // A bare number, the commonest line, needs no parser.
                if !is_json_number(text) {
                    serde_json::from_slice::<IgnoredAny>(text).map_err(invalid)?;
                }
                let mut bytes = buffer;
                bytes.clear();
                bytes.reserve(text.len().max(BUFFER_START));
                bytes.extend_from_slice(text);
                Ok(Payload::Bytes(bytes))
            }
            TaskKind::Numeric { params, .. } => {
                let args = match json_integer(text.trim_ascii()) {
                    // The common case, one integer, without building a JSON value.
                    Some(n) => crate::numeric::to_args(params, &n),
                    None => {
                        let json: Json = serde_json::from_slice(text).map_err(invalid)?;
                        crate::numeric::to_args(params, &json)
                    }
                };
                args.map(Payload::Values)
                    .map_err(|e| TaskError::new(TaskErrorKind::Input, e.0))
            }
        }
    }

    /// Writes an output as one JSON value on one line (no newline) to `out`.
    /// An ABI task's bytes are checked to be one valid JSON value (nested at
    /// most 128 deep) and copied without the whitespace between tokens, so
    /// that whatever bytes a guest returns, its result is exactly one line;
    /// numeric results become a number, `null` or an array.
    ///
    /// # Errors
    ///
    /// A [`TaskErrorKind::Output`] error when an ABI task's output is not JSON.
    ///
    /// ```no_run
    /// # let pool = wasmpool::Pool::builder().module_file("square.wasm").build().unwrap();
    /// # let task = pool.task("square").unwrap();
    /// let mut line = Vec::new();
    /// task.write_json(&wasmpool::Output::Bytes(b"16".to_vec()), &mut line).unwrap();
    /// assert_eq!(line, b"16");
    /// ```
    pub fn write_json(&self, output: &Output, out: &mut Vec<u8>) -> Result<(), TaskError> {
        match output {
            // A bare number is valid and compact as it is: the commonest
            // output needs neither the parser nor the byte-by-byte copy.
            Output::Bytes(bytes) if is_json_number(bytes) => out.extend_from_slice(bytes),
            Output::Bytes(bytes) => {
                check_json_output(bytes)?;
                let start = out.len();
                if let Err(depth) = compact_json(bytes, out) {
                    out.truncate(start);
                    return Err(TaskError::new(
                        TaskErrorKind::Output,
                        format!(
                            "the task's output is nested more than {depth} deep, which JSON readers refuse"
                        ),
                    ));
                }
            }
            Output::Values(values) => {
                // Writing a serde_json::Value to a Vec cannot fail.
                let _ = serde_json::to_writer(&mut *out, &values_to_json(values));
            }
        }
        Ok(())
    }

    /// Decodes an output as a serde value.
    ///
    /// # Errors
    ///
    /// A [`TaskErrorKind::Output`] error when the output is not JSON of type `O`.
    ///
    /// ```no_run
    /// # let pool = wasmpool::Pool::builder().module_file("square.wasm").build().unwrap();
    /// # let task = pool.task("square").unwrap();
    /// let n: u64 = task.decode(wasmpool::Output::Bytes(b"16".to_vec())).unwrap();
    /// assert_eq!(n, 16);
    /// ```
    pub fn decode<O: DeserializeOwned>(&self, output: Output) -> Result<O, TaskError> {
        match output {
            Output::Bytes(bytes) => self.decode_bytes(&bytes),
            Output::Values(values) => crate::numeric::from_results(&values).map_err(|e| {
                TaskError::new(
                    TaskErrorKind::Output,
                    format!(
                        "the output does not decode as {}: {e}",
                        std::any::type_name::<O>()
                    ),
                )
            }),
        }
    }
}

impl Task {
    /// Decodes a numeric task's packed results (`packed.rs`) as a serde
    /// value: [`decode`](Self::decode) without an `Output`.
    #[inline]
    pub(crate) fn decode_packed<O: DeserializeOwned>(&self, bits: &[u64]) -> Result<O, TaskError> {
        let types = match &self.spec.kind {
            TaskKind::Numeric { results, .. } => &results[..],
            TaskKind::Abi => &[],
        };
        let decoded = match (types, bits) {
            ([ty], [b]) => crate::numeric::from_results(std::slice::from_ref(
                &crate::packed::from_bits(*ty, *b),
            )),
            _ => crate::numeric::from_results(&crate::packed::unpack(types, bits)),
        };
        decoded.map_err(|e| undecodable(std::any::type_name::<O>(), &e))
    }

    /// Decodes a run of `count` packed results (`packed.rs`) as `O`,
    /// appended to `out`: for a task of one result, one loop per result
    /// type, so that the type is a constant in each and a result decodes
    /// in a few instructions; else [`decode_packed`](Self::decode_packed)
    /// for each.
    #[inline]
    pub(crate) fn decode_packed_run<O: DeserializeOwned>(
        &self,
        bits: &[u64],
        count: usize,
        out: &mut std::collections::VecDeque<Result<O, TaskError>>,
    ) {
        let one = |value: WasmValue| {
            crate::numeric::from_results(std::slice::from_ref(&value))
                .map_err(|e| undecodable(std::any::type_name::<O>(), &e))
        };
        match &self.spec.kind {
            TaskKind::Numeric { results, .. } if results.len() == 1 && bits.len() == count => {
                out.reserve(count);
                match results[0] {
                    WasmType::I32 => {
                        out.extend(bits.iter().map(|&b| one(WasmValue::I32(b as u32 as i32))))
                    }
                    WasmType::I64 => {
                        out.extend(bits.iter().map(|&b| one(WasmValue::I64(b as i64))))
                    }
                    WasmType::F32 => out.extend(
                        bits.iter()
                            .map(|&b| one(WasmValue::F32(f32::from_bits(b as u32)))),
                    ),
                    WasmType::F64 => {
                        out.extend(bits.iter().map(|&b| one(WasmValue::F64(f64::from_bits(b)))));
                    }
                }
            }
            _ => crate::dispatch::decode_run(bits, count, out, |bits| self.decode_packed(bits)),
        }
    }

    /// Decodes an ABI task's output bytes as a serde value
    /// ([`decode`](Self::decode) without taking the buffer).
    pub(crate) fn decode_bytes<O: DeserializeOwned>(&self, bytes: &[u8]) -> Result<O, TaskError> {
        // Most tiny tasks' outputs are one integer: handed to `O` as
        // serde_json would hand it (parsing it was 7% of a million tiny
        // tasks). Anything else, or a type that refuses an integer, takes
        // serde_json's path, whose result and message are the reference.
        if let Some(decoded) = decode_integer(bytes) {
            return Ok(decoded);
        }
        serde_json::from_slice(bytes).map_err(|e| {
            TaskError::new(
                TaskErrorKind::Output,
                format!(
                    "the output does not decode as {}: {e}",
                    std::any::type_name::<O>()
                ),
            )
        })
    }
}

/// Byte buffers of outputs already used, kept to hold later inputs, on the
/// thread that reads a stream: a stream of tiny tasks then allocates no
/// buffer per task once its window is full (malloc and free were half of
/// the caller's time). [`Pool::imap`](crate::Pool::imap) needs none (it
/// sends an SDK task's inputs as texts in one buffer per batch);
/// [`Pool::imap_payloads`](crate::Pool::imap_payloads) callers give
/// [`Output::Bytes`] buffers back with [`give`](Self::give) and fill
/// [`take`](Self::take)n ones with [`Task::parse_json_into`]. At most 8,192
/// buffers are kept, none larger than 1 KiB (8 MiB at most).
///
/// ```
/// let spares = wasmpool::Spares::default();
/// spares.give(Vec::with_capacity(100));
/// assert!(spares.take().capacity() >= 100);
/// ```
#[derive(Debug, Default)]
pub struct Spares(std::cell::RefCell<Vec<Vec<u8>>>);

impl Spares {
    /// More than a stream's default window holds.
    const MAX: usize = 8192;
    /// Big buffers go back to the allocator.
    const MAX_CAPACITY: usize = 1024;

    /// A spare buffer (empty), or a new one.
    pub fn take(&self) -> Vec<u8> {
        self.0
            .borrow_mut()
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(BUFFER_START))
    }

    /// Keeps `bytes` for a later [`take`](Self::take) if there is room.
    pub fn give(&self, mut bytes: Vec<u8>) {
        let mut spares = self.0.borrow_mut();
        if spares.len() < Self::MAX
            && (BUFFER_START..=Self::MAX_CAPACITY).contains(&bytes.capacity())
        {
            bytes.clear();
            spares.push(bytes);
        }
    }
}

/// The least capacity of an ABI task's input buffer. The buffer comes back
/// as a later task's output buffer (`Guest::abi_outcome`), so room for a
/// small result in it means the worker's thread never grows it: a buffer
/// reallocated there and freed on the caller's thread takes the
/// allocator's slow cross-thread path (measured at 5% of a tiny SDK task).
const BUFFER_START: usize = 64;

/// `text` as an integer, if it is exactly a JSON integer
/// (`-?(0|[1-9][0-9]*)`) that fits an `i128`.
fn json_integer(text: &[u8]) -> Option<i128> {
    let digits = text.strip_prefix(b"-").unwrap_or(text);
    let well_formed = match digits {
        [b'0'] => true,
        [b'1'..=b'9', rest @ ..] => rest.iter().all(u8::is_ascii_digit) && digits.len() <= 38,
        _ => false,
    };
    if !well_formed {
        return None;
    }
    std::str::from_utf8(text).ok()?.parse().ok()
}

/// `text` decoded as `O` if it is a JSON integer of at most 18 digits, not
/// `-0`, and `O` takes it: given to `O`'s visitor as serde_json gives it
/// (`visit_u64` for `0` and up, `visit_i64` below), so the value is the one
/// `serde_json::from_slice` makes. `None` otherwise, errors included.
fn decode_integer<O: DeserializeOwned>(text: &[u8]) -> Option<O> {
    use serde::de::IntoDeserializer;
    type E = serde::de::value::Error;
    let (negative, digits) = match text {
        [b'-', rest @ ..] => (true, rest),
        _ => (false, text),
    };
    let well_formed = match digits {
        [b'0'] => !negative,
        [b'1'..=b'9', rest @ ..] => rest.len() < 18 && rest.iter().all(u8::is_ascii_digit),
        _ => false,
    };
    if !well_formed {
        return None;
    }
    // At most 18 digits: below 10^18 < 2^63.
    let magnitude = digits
        .iter()
        .fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
    if negative {
        O::deserialize(IntoDeserializer::<E>::into_deserializer(
            -(magnitude as i64),
        ))
        .ok()
    } else {
        O::deserialize(IntoDeserializer::<E>::into_deserializer(magnitude)).ok()
    }
}

/// Whether `text` is exactly one JSON number (RFC 8259:
/// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`), with no whitespace.
fn is_json_number(text: &[u8]) -> bool {
    fn digits(t: &[u8]) -> usize {
        t.iter().take_while(|b| b.is_ascii_digit()).count()
    }
    let mut t = text.strip_prefix(b"-").unwrap_or(text);
    match t {
        [b'0', ..] => t = &t[1..],
        [b'1'..=b'9', ..] => t = &t[digits(t)..],
        _ => return false,
    }
    if let [b'.', rest @ ..] = t {
        let n = digits(rest);
        if n == 0 {
            return false;
        }
        t = &rest[n..];
    }
    if let [b'e' | b'E', rest @ ..] = t {
        let rest = rest
            .strip_prefix(b"+")
            .or_else(|| rest.strip_prefix(b"-"))
            .unwrap_or(rest);
        let n = digits(rest);
        if n == 0 {
            return false;
        }
        t = &rest[n..];
    }
    t.is_empty()
}

/// How deep an output may nest arrays and objects: serde_json's own limit,
/// so that every reader of the CLI's output and journal can parse it.
const MAX_DEPTH: usize = 128;

/// Appends valid JSON `text` to `out` without the whitespace between its
/// tokens. Raw control characters cannot occur inside JSON strings, so the
/// result holds no newline. `Err(MAX_DEPTH)` when it nests deeper than that.
fn compact_json(text: &[u8], out: &mut Vec<u8>) -> Result<(), usize> {
    let (mut in_string, mut escaped, mut depth, mut skip) = (false, false, 0usize, 0);
    out.reserve(text.len());
    for (i, &b) in text.iter().enumerate() {
        if skip > 0 {
            skip -= 1;
            continue;
        }
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                // U+2028 and U+2029 are valid in JSON strings, but some
                // line readers (JavaScript, Python's splitlines) break on
                // them: write them escaped, the same string.
                (false, 0xE2) if matches!(text.get(i + 1..i + 3), Some([0x80, 0xA8 | 0xA9])) => {
                    let last = if text[i + 2] == 0xA8 { b'8' } else { b'9' };
                    out.extend_from_slice(&[b'\\', b'u', b'2', b'0', b'2', last]);
                    skip = 2; // its two continuation bytes
                    continue;
                }
                _ => {}
            }
        } else {
            match b {
                b'"' => in_string = true,
                b'[' | b'{' => {
                    depth += 1;
                    if depth > MAX_DEPTH {
                        return Err(MAX_DEPTH);
                    }
                }
                b']' | b'}' => depth = depth.saturating_sub(1),
                b' ' | b'\n' | b'\r' | b'\t' => continue,
                _ => {}
            }
        }
        out.push(b);
    }
    Ok(())
}

fn check_json_output(bytes: &[u8]) -> Result<(), TaskError> {
    let shown = || String::from_utf8_lossy(&bytes[..bytes.len().min(80)]).into_owned();
    if let Err(e) = std::str::from_utf8(bytes) {
        return Err(TaskError::new(
            TaskErrorKind::Output,
            format!(
                "the task's output is not UTF-8 ({e}), so not JSON: {:?}",
                shown()
            ),
        ));
    }
    serde_json::from_slice::<IgnoredAny>(bytes)
        .map(|_| ())
        .map_err(|e| {
            TaskError::new(
                TaskErrorKind::Output,
                format!("the task's output is not valid JSON ({e}): {:?}", shown()),
            )
        })
}

fn values_to_json(values: &[WasmValue]) -> Json {
    match values {
        [] => Json::Null,
        [one] => one.to_json(),
        many => Json::Array(many.iter().map(|v| v.to_json()).collect()),
    }
}

/// The error of a numeric result that does not decode as `type_name`: out
/// of the way of [`Task::decode_packed`]'s loop, which runs per result.
#[cold]
#[inline(never)]
fn undecodable(type_name: &str, e: &dyn std::fmt::Display) -> TaskError {
    TaskError::new(
        TaskErrorKind::Output,
        format!("the output does not decode as {type_name}: {e}"),
    )
}

#[cfg(test)]
mod test {
    use super::{compact_json, decode_integer, is_json_number};
    use serde::de::DeserializeOwned;

    #[test]
    fn json_numbers_are_told_exactly() {
        for yes in [
            "0",
            "-0",
            "7",
            "-12",
            "10",
            "1.5",
            "-0.25",
            "1e9",
            "1E+9",
            "2.5e-3",
            "123456789012345678901234567890",
            "1e400",
            "-1e-400",
            &"9".repeat(500),
            &format!("1.{}e99999", "0".repeat(300)),
        ] {
            assert!(is_json_number(yes.as_bytes()), "{yes}");
            assert!(
                serde_json::from_str::<serde::de::IgnoredAny>(yes).is_ok(),
                "{yes}"
            );
        }
        for no in [
            "", "-", "01", "-01", "1.", ".5", "1e", "1e+", "+1", " 1", "1 ", "1\n", "0x1", "1.5.2",
            "NaN", "Infinity", "1_000", "--1", "1e5e5", "\"1\"",
        ] {
            assert!(!is_json_number(no.as_bytes()), "{no:?}");
        }
    }

    #[test]
    fn integers_decode_as_serde_json_decodes_them() {
        use serde::Deserialize;
        #[derive(Debug, PartialEq, Deserialize)]
        struct Newtype(i64);
        #[derive(Debug, PartialEq, Deserialize)]
        #[serde(untagged)]
        enum Either {
            Number(u8),
            Text(String),
        }
        /// Whenever the fast path decodes, it agrees with serde_json.
        fn agrees<O: DeserializeOwned + PartialEq + std::fmt::Debug>(text: &str) -> bool {
            let fast = decode_integer::<O>(text.as_bytes());
            if let Some(fast) = &fast {
                assert_eq!(
                    Some(fast),
                    serde_json::from_str::<O>(text).ok().as_ref(),
                    "{text}"
                );
            }
            fast.is_some()
        }
        for text in [
            "0",
            "-0",
            "7",
            "-12",
            "255",
            "256",
            "-129",
            "999999999999999999",
            "1000000000000000000",
            "-999999999999999999",
            "01",
            "1.0",
            "1e2",
            " 1",
            "",
        ] {
            agrees::<i64>(text);
            agrees::<u64>(text);
            agrees::<u8>(text);
            agrees::<i8>(text);
            agrees::<f64>(text);
            agrees::<serde_json::Value>(text);
            agrees::<String>(text);
            agrees::<Option<i64>>(text);
            agrees::<Newtype>(text);
            agrees::<Either>(text);
        }
        assert!(agrees::<i64>("-12") && agrees::<u8>("255") && agrees::<f64>("7"));
        assert!(agrees::<serde_json::Value>("999999999999999999"));
        // Left to serde_json: "-0" (a float there), 19 digits, non-integers,
        // and types an integer does not fit.
        assert!(!agrees::<f64>("-0") && !agrees::<i64>("1000000000000000000"));
        assert!(!agrees::<u8>("256") && !agrees::<String>("7") && !agrees::<i64>("1.0"));
    }

    fn compact(text: &str) -> String {
        let mut out = Vec::new();
        compact_json(text.as_bytes(), &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn line_and_paragraph_separators_are_escaped() {
        assert_eq!(
            compact("\"a\u{2028}b\u{2029}c\u{2027}\""),
            "\"a\\u2028b\\u2029c\u{2027}\""
        );
    }

    #[test]
    fn nesting_past_the_limit_is_refused() {
        let ok = "[".repeat(128) + &"]".repeat(128);
        assert!(compact_json(ok.as_bytes(), &mut Vec::new()).is_ok());
        let deep = "[".repeat(129) + &"]".repeat(129);
        assert_eq!(compact_json(deep.as_bytes(), &mut Vec::new()), Err(128));
        let in_string = format!("\"{}\"", "[".repeat(1000));
        assert!(compact_json(in_string.as_bytes(), &mut Vec::new()).is_ok());
    }

    #[test]
    fn whitespace_between_tokens_goes_and_strings_stay() {
        assert_eq!(compact("1"), "1");
        assert_eq!(
            compact(" {\n \"a b\" :\t[1 ,\r\n 2] }\n"),
            r#"{"a b":[1,2]}"#
        );
        assert_eq!(
            compact("\"x\\\" \\\\\" \n,"),
            "\"x\\\" \\\\\",",
            "escapes end strings right"
        );
        assert_eq!(
            compact("0\n}\n{\"index\":1,\"ok\":\"forged\"}"),
            "0}{\"index\":1,\"ok\":\"forged\"}"
        );
    }
}
