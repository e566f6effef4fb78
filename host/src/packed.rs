//! A batch's inputs and results, packed into flat buffers for numeric
//! tasks.
//!
//! A batch crosses from the caller's core to a worker's and back. Held as
//! one `Result<Payload, TaskError>` per input (48 bytes) and one
//! `Result<Output, TaskError>` per result, a tiny numeric task moved two
//! cache lines between cores, and the worker's first load of each input
//! was a quarter of its time (issue 15's profile). Packed, a numeric
//! task's arguments and results are one `u64` each (a value's bits), eight
//! to a cache line; the rare input or result that does not fit (an error,
//! a payload of the wrong shape) is kept whole beside them, at its
//! position. Both sides still see a sequence of `Result`s in order:
//! packing changes how a batch travels, not what it says.

use std::sync::Arc;

use smallvec::SmallVec;
use wasmtime::ValRaw;

use crate::error::TaskError;
use crate::task::{Output, Payload, TaskKind, TaskSpec, Values, WasmType, WasmValue};

/// A packed argument as the raw value of a call.
#[inline]
pub(crate) fn raw_from_bits(ty: WasmType, bits: u64) -> ValRaw {
    match ty {
        WasmType::I32 => ValRaw::i32(bits as u32 as i32),
        WasmType::I64 => ValRaw::i64(bits as i64),
        WasmType::F32 => ValRaw::f32(bits as u32),
        WasmType::F64 => ValRaw::f64(bits),
    }
}

/// A call's raw result, packed.
#[inline]
pub(crate) fn bits_from_raw(ty: WasmType, raw: &ValRaw) -> u64 {
    match ty {
        WasmType::I32 => u64::from(raw.get_i32() as u32),
        WasmType::I64 => raw.get_i64() as u64,
        WasmType::F32 => u64::from(raw.get_f32()),
        WasmType::F64 => raw.get_f64(),
    }
}

/// The next input of a batch, as a worker takes it.
pub(crate) enum Next {
    /// A packed input: its arguments' bits.
    Bits(SmallVec<[u64; 4]>),
    /// An input kept whole.
    Item(Result<Payload, TaskError>),
    /// A text input: where it is ([`ItemsIter::text`]).
    Text(std::ops::Range<usize>),
}

/// A value's bits: an `i32` or `f32` in the low 32 bits.
#[inline]
pub(crate) fn to_bits(v: WasmValue) -> u64 {
    match v {
        WasmValue::I32(x) => u64::from(x as u32),
        WasmValue::I64(x) => x as u64,
        WasmValue::F32(x) => u64::from(x.to_bits()),
        WasmValue::F64(x) => x.to_bits(),
    }
}

pub(crate) fn from_bits(ty: WasmType, bits: u64) -> WasmValue {
    match ty {
        WasmType::I32 => WasmValue::I32(bits as u32 as i32),
        WasmType::I64 => WasmValue::I64(bits as i64),
        WasmType::F32 => WasmValue::F32(f32::from_bits(bits as u32)),
        WasmType::F64 => WasmValue::F64(f64::from_bits(bits)),
    }
}

/// Appends `values` to `bits` if they have exactly `types`.
#[inline]
fn pack(types: &[WasmType], values: &Values, bits: &mut Vec<u64>) -> bool {
    if let ([t], [v]) = (types, &values[..]) {
        if !v.has_type(*t) {
            return false;
        }
        bits.push(to_bits(*v));
        return true;
    }
    if values.len() != types.len() || !values.iter().zip(types).all(|(v, &t)| v.has_type(t)) {
        return false;
    }
    bits.extend(values.iter().map(|&v| to_bits(v)));
    true
}

#[inline]
pub(crate) fn unpack(types: &[WasmType], bits: &[u64]) -> Values {
    // Up to two values fill the inline buffer directly: `collect` into a
    // SmallVec was a tenth of the samples on both sides.
    match (types, bits) {
        ([t], [b, ..]) => {
            let one = from_bits(*t, *b);
            Values(smallvec::SmallVec::from_buf_and_len([one, one], 1))
        }
        ([t, u], [b, c, ..]) => Values(smallvec::SmallVec::from_buf([
            from_bits(*t, *b),
            from_bits(*u, *c),
        ])),
        _ => Values(
            types
                .iter()
                .zip(bits)
                .map(|(&t, &b)| from_bits(t, b))
                .collect(),
        ),
    }
}

fn params(task: &TaskSpec) -> Option<&[WasmType]> {
    match &task.kind {
        TaskKind::Numeric { params, .. } => Some(params),
        TaskKind::Abi => None,
    }
}

fn results(task: &TaskSpec) -> Option<&[WasmType]> {
    match &task.kind {
        TaskKind::Numeric { results, .. } => Some(results),
        TaskKind::Abi => None,
    }
}

/// A sequence of `T`s, most of them packed as bits.
pub(crate) struct Packed<T> {
    task: Arc<TaskSpec>,
    /// Each packed item's values, one after another.
    bits: Vec<u64>,
    /// The items not packed, by position, in order.
    odd: Vec<(usize, T)>,
    len: usize,
}

impl<T> Packed<T> {
    fn new(task: &Arc<TaskSpec>, arity: usize, capacity: usize) -> Self {
        Packed {
            task: task.clone(),
            bits: Vec::with_capacity(arity * capacity),
            odd: Vec::new(),
            len: 0,
        }
    }

    /// Appends `item`: as the bits of its `values` when they have exactly
    /// the task's `types`, else whole at its position.
    #[inline]
    fn push(
        &mut self,
        types: fn(&TaskSpec) -> Option<&[WasmType]>,
        item: T,
        values: impl FnOnce(&T) -> Option<&Values>,
    ) {
        let types = types(&self.task).unwrap_or_default();
        if !values(&item).is_some_and(|v| pack(types, v, &mut self.bits)) {
            self.odd.push((self.len, item));
        }
        self.len += 1;
    }
}

/// The walk of a batch's `len` items in order, those kept whole (`odd`,
/// by position) among the packed ones: what [`Unpacking`] and
/// [`TextsIter`] share.
struct Walk<T> {
    odd: std::iter::Peekable<std::vec::IntoIter<(usize, T)>>,
    pos: usize,
    len: usize,
}

impl<T> Walk<T> {
    fn new(odd: Vec<(usize, T)>, len: usize) -> Self {
        Walk {
            odd: odd.into_iter().peekable(),
            pos: 0,
            len,
        }
    }

    /// The next item: `Some(item)` one kept whole, `None` a packed one;
    /// `None` at the end.
    #[inline]
    fn next(&mut self) -> Option<Option<T>> {
        if self.pos == self.len {
            return None;
        }
        let pos = self.pos;
        self.pos += 1;
        if self.odd.peek().is_some_and(|(at, _)| *at == pos) {
            return Some(self.odd.next().map(|(_, item)| item));
        }
        Some(None)
    }

    /// Steps over the packed items from here up to the next one kept
    /// whole (or the end), and says how many they are.
    #[inline]
    fn run(&mut self) -> usize {
        let end = self.odd.peek().map_or(self.len, |(at, _)| *at);
        let count = end - self.pos;
        self.pos = end;
        count
    }

    fn remaining(&self) -> usize {
        self.len - self.pos
    }
}

/// Walks a [`Packed`] in order.
pub(crate) struct Unpacking<T> {
    task: Arc<TaskSpec>,
    bits: Vec<u64>,
    /// The first bits not read.
    at: usize,
    walk: Walk<T>,
}

impl<T> Unpacking<T> {
    fn new(p: Packed<T>) -> Self {
        Unpacking {
            task: p.task,
            bits: p.bits,
            at: 0,
            walk: Walk::new(p.odd, p.len),
        }
    }

    /// The next item: `Ok` one kept whole, `Err` where in `bits` the
    /// `arity` values of a packed one are.
    #[inline]
    fn next_at(&mut self, arity: usize) -> Option<Result<T, std::ops::Range<usize>>> {
        if let Some(item) = self.walk.next()? {
            return Some(Ok(item));
        }
        let start = self.at;
        self.at += arity;
        Some(Err(start..self.at))
    }

    /// The next item: `Ok` one kept whole, `Err` a packed one's values.
    fn next(&mut self, types: fn(&TaskSpec) -> Option<&[WasmType]>) -> Option<Result<T, Values>> {
        let arity = types(&self.task).map_or(0, <[WasmType]>::len);
        let next = self.next_at(arity)?;
        let types = types(&self.task).unwrap_or_default();
        Some(next.map_err(|at| unpack(types, &self.bits[at])))
    }
}

/// Texts (an ABI task's JSON inputs or outputs) back to back in one
/// buffer, the rare item that is not one (an error) kept whole beside them
/// at its position: a batch of tiny SDK tasks then crosses cores as one
/// buffer, not a `Vec` per task, and the caller neither allocates per input
/// nor misses the cache on a separate buffer per output.
pub(crate) struct Texts<T> {
    bytes: Vec<u8>,
    /// Where each text ends in `bytes`, in order.
    ends: Vec<usize>,
    /// The items kept whole, by position, in order.
    odd: Vec<(usize, T)>,
    len: usize,
}

impl<T> Texts<T> {
    fn with_capacity(capacity: usize) -> Self {
        Texts {
            bytes: Vec::with_capacity(capacity * 8),
            ends: Vec::with_capacity(capacity),
            odd: Vec::new(),
            len: 0,
        }
    }

    /// Appends a text that `write` writes at the end of the buffer, or,
    /// if it fails, what it returns, whole (what it wrote is dropped).
    #[inline]
    pub(crate) fn push_with(&mut self, write: impl FnOnce(&mut Vec<u8>) -> Result<(), T>) {
        let start = self.bytes.len();
        match write(&mut self.bytes) {
            Ok(()) => self.end_text(),
            Err(item) => {
                self.bytes.truncate(start);
                self.push_whole(item);
            }
        }
    }

    #[inline]
    fn push_text(&mut self, text: &[u8]) {
        self.bytes.extend_from_slice(text);
        self.end_text();
    }

    /// Ends the text that runs from the last one's end to the end of
    /// `bytes`, the next item.
    #[inline]
    fn end_text(&mut self) {
        self.ends.push(self.bytes.len());
        self.len += 1;
    }

    fn push_whole(&mut self, item: T) {
        self.odd.push((self.len, item));
        self.len += 1;
    }

    /// The bytes of the texts so far.
    pub(crate) fn bytes_len(&self) -> usize {
        self.bytes.len()
    }
}

/// Walks a [`Texts`] in order.
pub(crate) struct TextsIter<T> {
    bytes: Vec<u8>,
    ends: Vec<usize>,
    /// The next text's index in `ends`, and where it starts.
    text: usize,
    start: usize,
    walk: Walk<T>,
}

impl<T> TextsIter<T> {
    fn new(t: Texts<T>) -> Self {
        TextsIter {
            bytes: t.bytes,
            ends: t.ends,
            text: 0,
            start: 0,
            walk: Walk::new(t.odd, t.len),
        }
    }

    /// The next item: `Ok` one kept whole, `Err` where its text is.
    #[inline]
    fn next_at(&mut self) -> Option<Result<T, std::ops::Range<usize>>> {
        if let Some(item) = self.walk.next()? {
            return Some(Ok(item));
        }
        let (start, end) = (self.start, self.ends[self.text]);
        self.text += 1;
        self.start = end;
        Some(Err(start..end))
    }

    /// The texts from here up to the next item kept whole (or the end),
    /// at once: the buffer, where the first starts, and where each ends.
    #[inline]
    fn take_run(&mut self) -> (&[u8], usize, &[usize]) {
        let count = self.walk.run();
        let (first, start) = (self.text, self.start);
        self.text += count;
        if count > 0 {
            self.start = self.ends[self.text - 1];
        }
        (&self.bytes, start, &self.ends[first..self.text])
    }
}

/// A batch's inputs.
pub(crate) enum Items {
    List(Vec<Result<Payload, TaskError>>),
    Packed(PackedItems),
    /// An ABI task's inputs as texts (`Items::texts`).
    Texts(Texts<Result<Payload, TaskError>>),
}

/// A numeric task's inputs, packed.
pub(crate) struct PackedItems(Packed<Result<Payload, TaskError>>);

/// A batch of a task of one parameter, of type `ty`, open for appending
/// (see [`Items::one_param`]).
pub(crate) struct OneParam<'a> {
    p: &'a mut Packed<Result<Payload, TaskError>>,
    pub(crate) ty: WasmType,
}

impl OneParam<'_> {
    /// Appends an input whose one value, of type `ty`, has these bits.
    #[inline]
    pub(crate) fn push_bits(&mut self, bits: u64) {
        self.p.bits.push(bits);
        self.p.len += 1;
    }

    /// Appends an input kept whole.
    pub(crate) fn push_whole(&mut self, item: Result<Payload, TaskError>) {
        self.p.odd.push((self.p.len, item));
        self.p.len += 1;
    }
}

impl Items {
    /// An empty batch for `task`, for about `capacity` inputs: packed for
    /// a numeric task.
    pub(crate) fn new(task: &Arc<TaskSpec>, capacity: usize) -> Self {
        match params(task) {
            Some(params) => Items::Packed(PackedItems(Packed::new(task, params.len(), capacity))),
            None => Items::List(Vec::with_capacity(capacity)),
        }
    }

    /// An empty batch of texts, for about `capacity` inputs: what a typed
    /// stream of an ABI task sends (`dispatch::Texts`).
    pub(crate) fn texts(capacity: usize) -> Self {
        Items::Texts(Texts::with_capacity(capacity))
    }

    /// The texts of a batch made by [`texts`](Self::texts).
    pub(crate) fn as_texts(&mut self) -> Option<&mut Texts<Result<Payload, TaskError>>> {
        match self {
            Items::Texts(t) => Some(t),
            _ => None,
        }
    }

    pub(crate) fn push(&mut self, item: Result<Payload, TaskError>) {
        match self {
            Items::List(items) => items.push(item),
            Items::Texts(t) => match item {
                Ok(Payload::Bytes(text)) => t.push_text(&text),
                item => t.push_whole(item),
            },
            Items::Packed(PackedItems(p)) => {
                p.push(params, item, |item| match item {
                    Ok(Payload::Values(values)) => Some(values),
                    _ => None,
                });
            }
        }
    }

    /// The batch opened for appending inputs of one value straight as
    /// bits, when its task takes exactly one parameter: the typed path of
    /// `dispatch::Numbers`, which looks at the batch's shape once, not per
    /// input.
    #[inline]
    pub(crate) fn one_param(&mut self) -> Option<OneParam<'_>> {
        match self {
            Items::Packed(PackedItems(p)) => match params(&p.task) {
                Some(&[ty]) => Some(OneParam { p, ty }),
                _ => None,
            },
            Items::List(_) | Items::Texts(_) => None,
        }
    }

    pub(crate) fn len(&self) -> usize {
        match self {
            Items::List(items) => items.len(),
            Items::Packed(PackedItems(p)) => p.len,
            Items::Texts(t) => t.len,
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl IntoIterator for Items {
    type Item = Result<Payload, TaskError>;
    type IntoIter = ItemsIter;

    fn into_iter(self) -> ItemsIter {
        match self {
            Items::List(items) => ItemsIter::List(items.into_iter()),
            Items::Packed(PackedItems(p)) => ItemsIter::Packed(Unpacking::new(p)),
            Items::Texts(t) => ItemsIter::Texts(TextsIter::new(t)),
        }
    }
}

/// A batch's inputs, in order.
pub(crate) enum ItemsIter {
    List(std::vec::IntoIter<Result<Payload, TaskError>>),
    Packed(Unpacking<Result<Payload, TaskError>>),
    Texts(TextsIter<Result<Payload, TaskError>>),
}

impl ItemsIter {
    /// The next input, packed ones as their bits.
    #[inline]
    pub(crate) fn next_raw(&mut self) -> Option<Next> {
        match self {
            ItemsIter::List(items) => items.next().map(Next::Item),
            ItemsIter::Packed(u) => {
                let arity = params(&u.task).map_or(0, <[WasmType]>::len);
                Some(match u.next_at(arity)? {
                    Ok(item) => Next::Item(item),
                    Err(at) => Next::Bits(SmallVec::from_slice(&u.bits[at])),
                })
            }
            ItemsIter::Texts(t) => Some(match t.next_at()? {
                Ok(item) => Next::Item(item),
                Err(at) => Next::Text(at),
            }),
        }
    }

    /// The text of an input [`Next::Text`] named.
    #[inline]
    pub(crate) fn text(&self, at: std::ops::Range<usize>) -> &[u8] {
        match self {
            ItemsIter::Texts(t) => &t.bytes[at],
            _ => &[],
        }
    }
}

impl Iterator for ItemsIter {
    type Item = Result<Payload, TaskError>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        match self {
            ItemsIter::List(items) => items.next(),
            ItemsIter::Packed(u) => u
                .next(params)
                .map(|item| item.unwrap_or_else(|values| Ok(Payload::Values(values)))),
            ItemsIter::Texts(t) => Some(match t.next_at()? {
                Ok(item) => item,
                Err(at) => Ok(Payload::Bytes(t.bytes[at].to_vec())),
            }),
        }
    }
}

/// A batch's results, in the batch's order.
pub(crate) enum Results {
    List(Vec<Result<Output, TaskError>>),
    Packed(PackedResults),
    /// The outputs of a batch of texts, as texts.
    Texts(Texts<Result<Output, TaskError>>),
}

/// A numeric task's results, packed.
pub(crate) struct PackedResults(Packed<Result<Output, TaskError>>);

impl Default for Results {
    fn default() -> Self {
        Results::List(Vec::new())
    }
}

impl From<Vec<Result<Output, TaskError>>> for Results {
    fn from(results: Vec<Result<Output, TaskError>>) -> Self {
        Results::List(results)
    }
}

impl Results {
    /// No results yet of `task`, for about `capacity` of them: packed for
    /// a numeric task.
    pub(crate) fn new(task: &Arc<TaskSpec>, capacity: usize) -> Self {
        match results(task) {
            Some(types) => Results::Packed(PackedResults(Packed::new(task, types.len(), capacity))),
            None => Results::List(Vec::with_capacity(capacity)),
        }
    }

    /// No results yet of a batch of `items`: texts for texts, else as
    /// [`new`](Self::new).
    pub(crate) fn for_items(task: &Arc<TaskSpec>, items: &Items) -> Self {
        match items {
            Items::Texts(_) => Results::Texts(Texts::with_capacity(items.len())),
            _ => Results::new(task, items.len()),
        }
    }

    /// Where a batch of texts' outputs go: [`Guest::run_text`](crate::sandbox::Guest::run_text)
    /// appends one, then [`count_text`](Self::count_text) ends it. `None`
    /// for other batches.
    pub(crate) fn texts_out(&mut self) -> Option<&mut Vec<u8>> {
        match self {
            Results::Texts(t) => Some(&mut t.bytes),
            _ => None,
        }
    }

    /// Ends a text appended through [`texts_out`](Self::texts_out).
    pub(crate) fn count_text(&mut self) {
        if let Results::Texts(t) = self {
            t.end_text();
        }
    }

    pub(crate) fn push(&mut self, result: Result<Output, TaskError>) {
        match self {
            Results::List(results) => results.push(result),
            Results::Texts(t) => match result {
                Ok(Output::Bytes(text)) => t.push_text(&text),
                result => t.push_whole(result),
            },
            Results::Packed(PackedResults(p)) => {
                p.push(results, result, |result| match result {
                    Ok(Output::Values(values)) => Some(values),
                    _ => None,
                });
            }
        }
    }

    pub(crate) fn len(&self) -> usize {
        match self {
            Results::List(results) => results.len(),
            Results::Packed(PackedResults(p)) => p.len,
            Results::Texts(t) => t.len,
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Where a packed task's results go: [`Guest::run_packed`](crate::sandbox::Guest::run_packed)
    /// appends them, then [`count_packed`](Self::count_packed) counts them.
    /// `None` for a list.
    pub(crate) fn packed_bits(&mut self) -> Option<&mut Vec<u64>> {
        match self {
            Results::List(_) | Results::Texts(_) => None,
            Results::Packed(PackedResults(p)) => Some(&mut p.bits),
        }
    }

    /// Counts a result appended through [`packed_bits`](Self::packed_bits).
    pub(crate) fn count_packed(&mut self) {
        if let Results::Packed(PackedResults(p)) = self {
            p.len += 1;
        }
    }

    /// The position of the first error.
    pub(crate) fn first_error(&self) -> Option<usize> {
        match self {
            Results::List(results) => results.iter().position(Result::is_err),
            Results::Packed(PackedResults(p)) => {
                p.odd.iter().find(|(_, r)| r.is_err()).map(|&(at, _)| at)
            }
            Results::Texts(t) => t.odd.iter().find(|(_, r)| r.is_err()).map(|&(at, _)| at),
        }
    }
}

impl IntoIterator for Results {
    type Item = Result<Output, TaskError>;
    type IntoIter = ResultsIter;

    fn into_iter(self) -> ResultsIter {
        match self {
            Results::List(results) => ResultsIter::List(results.into_iter()),
            Results::Packed(PackedResults(p)) => ResultsIter::Packed(Unpacking::new(p)),
            Results::Texts(t) => ResultsIter::Texts(TextsIter::new(t)),
        }
    }
}

/// A batch's results, in order.
pub(crate) enum ResultsIter {
    List(std::vec::IntoIter<Result<Output, TaskError>>),
    Packed(Unpacking<Result<Output, TaskError>>),
    Texts(TextsIter<Result<Output, TaskError>>),
}

/// A numeric task's results from their packed bits.
pub(crate) fn output(task: &TaskSpec, bits: &[u64]) -> Output {
    Output::Values(unpack(results(task).unwrap_or_default(), bits))
}

impl Default for ResultsIter {
    fn default() -> Self {
        ResultsIter::List(Vec::new().into_iter())
    }
}

impl ResultsIter {
    /// The results not yet taken.
    pub(crate) fn remaining(&self) -> usize {
        match self {
            ResultsIter::List(results) => results.len(),
            ResultsIter::Packed(u) => u.walk.remaining(),
            ResultsIter::Texts(t) => t.walk.remaining(),
        }
    }
}

impl ResultsIter {
    /// Takes the packed results from here up to the next one kept whole
    /// (or the end), at once: their bits, one result's after another, and
    /// how many they are (0 when the next result is kept whole, for a list,
    /// or at the end).
    #[inline]
    pub(crate) fn take_packed_run(&mut self) -> (&[u64], usize) {
        match self {
            ResultsIter::List(_) | ResultsIter::Texts(_) => (&[], 0),
            ResultsIter::Packed(u) => {
                let arity = results(&u.task).map_or(0, <[WasmType]>::len);
                let count = u.walk.run();
                let start = u.at;
                u.at += count * arity;
                (&u.bits[start..u.at], count)
            }
        }
    }
}

impl ResultsIter {
    /// Takes the text results from here up to the next one kept whole (or
    /// the end), at once: the buffer, where the first starts and where each
    /// ends (none when the next result is kept whole, for other batches, or
    /// at the end).
    #[inline]
    pub(crate) fn take_text_run(&mut self) -> (&[u8], usize, &[usize]) {
        match self {
            ResultsIter::Texts(t) => t.take_run(),
            _ => (&[], 0, &[]),
        }
    }
}

impl Iterator for ResultsIter {
    type Item = Result<Output, TaskError>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        match self {
            ResultsIter::List(results) => results.next(),
            ResultsIter::Packed(u) => u
                .next(results)
                .map(|item| item.unwrap_or_else(|values| Ok(Output::Values(values)))),
            ResultsIter::Texts(t) => Some(match t.next_at()? {
                Ok(item) => item,
                Err(at) => Ok(Output::Bytes(t.bytes[at].to_vec())),
            }),
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::error::TaskErrorKind;
    use crate::task::ExportIndex;

    fn task(params: Vec<WasmType>, results: Vec<WasmType>) -> Arc<TaskSpec> {
        Arc::new(TaskSpec {
            pool: 0,
            id: 0,
            name: "t".into(),
            export: "t".into(),
            export_index: ExportIndex(None),
            kind: TaskKind::Numeric { params, results },
        })
    }

    fn values(v: &[WasmValue]) -> Values {
        v.iter().copied().collect()
    }

    #[test]
    fn texts_come_out_in_order_with_the_items_kept_whole() {
        let mut items = Items::texts(2);
        let texts = items.as_texts().unwrap();
        texts.push_with(|b| {
            b.extend_from_slice(b"12");
            Ok(())
        });
        // A failed write leaves nothing of itself behind.
        texts.push_with(|b| {
            b.extend_from_slice(b"garbage");
            Err(Err(TaskError::new(TaskErrorKind::Input, "bad")))
        });
        items.push(Ok(Payload::Bytes(b"\"x\"".to_vec())));
        items.push(Ok(Payload::Values(values(&[WasmValue::I32(1)]))));
        items.push(Ok(Payload::Bytes(b"[]".to_vec())));
        assert_eq!(items.len(), 5);
        let mut it = items.into_iter();
        match it.next_raw() {
            Some(Next::Text(at)) => assert_eq!(it.text(at), b"12"),
            _ => panic!("a text first"),
        }
        assert!(matches!(it.next_raw(), Some(Next::Item(Err(_)))));
        assert!(matches!(it.next_raw(), Some(Next::Text(at)) if at == (2..5)));
        // What is left goes back whole.
        let rest: Vec<_> = it.collect();
        assert_eq!(
            format!("{rest:?}"),
            format!(
                "{:?}",
                [
                    Ok::<_, TaskError>(Payload::Values(values(&[WasmValue::I32(1)]))),
                    Ok(Payload::Bytes(b"[]".to_vec()))
                ]
            )
        );

        // Results: runs of texts up to each one kept whole.
        let t = task(vec![], vec![]);
        let mut results = Results::for_items(&t, &Items::texts(0));
        for text in [&b"1"[..], b"22", b"333"] {
            results.texts_out().unwrap().extend_from_slice(text);
            results.count_text();
        }
        results.push(Err(TaskError::new(TaskErrorKind::Guest, "no")));
        results.push(Ok(Output::Bytes(b"4".to_vec())));
        assert_eq!(results.first_error(), Some(3));
        let mut it = results.into_iter();
        let (bytes, start, ends) = it.take_text_run();
        let texts: Vec<&[u8]> = ends
            .iter()
            .scan(start, |s, &e| {
                let t = &bytes[*s..e];
                *s = e;
                Some(t)
            })
            .collect();
        assert_eq!(texts, [&b"1"[..], b"22", b"333"]);
        assert!(it.take_text_run().2.is_empty(), "the next is kept whole");
        assert!(matches!(it.next(), Some(Err(_))));
        assert_eq!(it.take_text_run().2, [7]);
        assert_eq!(it.next().map(|r| r.is_ok()), None);
    }

    #[test]
    fn inputs_come_out_in_order_packed_or_whole() {
        use WasmType::{F32, I32};
        let t = task(vec![I32, F32], vec![]);
        let inputs = vec![
            Ok(Payload::Values(values(&[
                WasmValue::I32(-1),
                WasmValue::F32(1.5),
            ]))),
            Err(TaskError::new(TaskErrorKind::Input, "bad")),
            // The wrong shape stays whole, for the worker to refuse.
            Ok(Payload::Values(values(&[WasmValue::I64(3)]))),
            Ok(Payload::Bytes(b"3".to_vec())),
            Ok(Payload::Values(values(&[
                WasmValue::I32(i32::MIN),
                WasmValue::F32(-0.0),
            ]))),
        ];
        let mut items = Items::new(&t, 2);
        for item in inputs.clone() {
            items.push(item);
        }
        assert_eq!(items.len(), 5);
        assert!(matches!(&items, Items::Packed(PackedItems(p)) if p.bits.len() == 4));
        let back: Vec<_> = items.into_iter().collect();
        assert_eq!(format!("{back:?}"), format!("{inputs:?}"));

        let mut items = Items::new(&t, 2);
        for item in inputs.clone() {
            items.push(item);
        }
        let mut it = items.into_iter();
        assert!(
            matches!(it.next_raw(), Some(Next::Bits(b)) if b[..] == [u64::from(u32::MAX), 1.5f32.to_bits().into()])
        );
        assert!(matches!(it.next_raw(), Some(Next::Item(Err(_)))));
        // What is left goes back whole.
        let rest: Vec<_> = it.collect();
        assert_eq!(format!("{rest:?}"), format!("{:?}", &inputs[2..]));
    }

    #[test]
    fn results_come_out_in_order_errors_at_their_place() {
        use WasmType::{F64, I64};
        let t = task(vec![], vec![I64, F64]);
        let mut results = Results::new(&t, 4);
        let two = |a, b| {
            Ok(Output::Values(values(&[
                WasmValue::I64(a),
                WasmValue::F64(b),
            ])))
        };
        results.push(two(-7, 0.25));
        results.push(Err(TaskError::new(TaskErrorKind::Trap, "boom")));
        let out = results.packed_bits().expect("packed");
        out.extend([5u64, 2.0f64.to_bits()]);
        results.count_packed();
        results.push(two(i64::MAX, f64::NAN));
        assert_eq!(results.len(), 4);
        assert_eq!(results.first_error(), Some(1));
        let mut it = results.into_iter();
        assert_eq!(it.remaining(), 4);
        let back: Vec<_> = it.by_ref().collect();
        assert_eq!(it.remaining(), 0);
        assert_eq!(format!("{:?}", back[0]), format!("{:?}", two(-7, 0.25)));
        assert!(
            back[1]
                .as_ref()
                .is_err_and(|e| e.kind() == TaskErrorKind::Trap)
        );
        assert_eq!(format!("{:?}", back[2]), format!("{:?}", two(5, 2.0)));
        assert_eq!(
            format!("{:?}", back[3]),
            format!("{:?}", two(i64::MAX, f64::NAN))
        );
        assert_eq!(Results::default().first_error(), None);
    }
}
