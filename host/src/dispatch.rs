//! Feeding a pool and gathering its results: the ordered stream [`Imap`],
//! the unordered stream [`ImapUnordered`], and [`Feed`], a stream the caller
//! pushes inputs into as they arrive.
//!
//! Inputs are pulled lazily from the caller's iterator, on the caller's
//! thread, and cut into batches that go to the workers. Two rules keep it fast
//! and bounded:
//!
//! - **Adaptive batches.** The first batches hold one input each; after
//!   that, a batch holds as many inputs as take about 100 µs by the measured
//!   time per task, so that tiny tasks pay the channel cost once per few
//!   hundred inputs while slow tasks are still spread one by one.
//! - **A bounded window.** At most `window` inputs (and at most a few batches
//!   per worker) are out at once: sent, running, or finished but waiting for
//!   an earlier result. The caller's iterator is not read further until the
//!   oldest result is handed out, so memory stays bounded over any number of
//!   inputs.
//! - **A byte budget.** Outputs finished but not yet handed to the caller
//!   count against the stream's budget ([`PoolBuilder::output_budget`](crate::PoolBuilder::output_budget)):
//!   past it, no new batch is sent and running batches are cut short, their
//!   unrun inputs coming back to be sent again. At least one input of the
//!   batch holding the oldest unfinished input always runs, so the stream
//!   always moves.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender};

use crate::error::{TaskError, TaskErrorKind};
use crate::packed::{Items, OneParam, ResultsIter};
use crate::task::{Output, Payload, Task, WasmType};
use crate::watchdog::GRACE;
use crate::worker::{Batch, Done, StreamState};

/// The caller's inputs, already converted to payloads (or to their errors),
/// taken a batch at a time.
pub(crate) type Inputs<'a> = Box<dyn Source + 'a>;

/// Where a stream's inputs come from, a batch at a time: one call per
/// batch, so that a numeric task's inputs go straight into the batch's
/// bits ([`Items::one_param`]) with no `Result<Payload, TaskError>` (48
/// bytes) built, moved and matched per input, and no dynamic call per
/// input. That was half of the calling thread's time for tiny numeric
/// tasks, and on 2 cores the calling thread's time per task is what two
/// workers cannot have.
pub(crate) trait Source {
    /// Appends up to `n` inputs to `items`, and, when `room` is `Some`,
    /// stops early once the input bytes appended would exceed it (at
    /// least one input is always taken; `None`: no room at all, so one
    /// input). Returns the bytes appended and whether the inputs ran out.
    fn take(&mut self, items: &mut Items, n: usize, room: Option<usize>) -> Taken;

    /// An empty batch of `task` for about `n` of this source's inputs.
    fn batch(&self, task: &Arc<crate::task::TaskSpec>, n: usize) -> Items {
        Items::new(task, n)
    }
}

/// The typed inputs of an ABI task (an SDK task: `pool.map::<u64, u64>`),
/// written as JSON straight into a batch of texts (`packed::Texts`): no
/// buffer per input, and the batch crosses cores as one. An input that
/// cannot be encoded is kept whole at its position, with the error
/// [`Task::encode_into`] gives.
pub(crate) struct Texts<It> {
    pub(crate) inputs: It,
    pub(crate) task: Task,
}

impl<It> Source for Texts<It>
where
    It: Iterator,
    It::Item: serde::Serialize,
{
    fn take(&mut self, items: &mut Items, n: usize, room: Option<usize>) -> Taken {
        let texts = items
            .as_texts()
            .expect("a Texts source fills the batches it makes");
        let start = texts.bytes_len();
        let mut taken = 0;
        while taken < n
            && (taken == 0 || room.is_some_and(|room| texts.bytes_len() - start <= room))
        {
            let Some(input) = self.inputs.next() else {
                return Taken {
                    bytes: texts.bytes_len() - start,
                    ended: true,
                };
            };
            texts.push_with(|buffer| self.task.encode_text_into(&input, buffer).map_err(Err));
            taken += 1;
        }
        Taken {
            bytes: texts.bytes_len() - start,
            ended: false,
        }
    }

    fn batch(&self, _task: &Arc<crate::task::TaskSpec>, n: usize) -> Items {
        Items::texts(n)
    }
}

/// The typed inputs of a numeric task of one parameter (the common case:
/// `pool.map::<u64, u64>("square", 0..n)`), encoded straight into a
/// batch's bits. An input that is not one number of the parameter's type
/// takes [`Task::encode_into`]'s path, for its result or its error.
pub(crate) struct Numbers<It> {
    pub(crate) inputs: It,
    pub(crate) task: Task,
}

impl<It> Source for Numbers<It>
where
    It: Iterator,
    It::Item: serde::Serialize,
{
    fn take(&mut self, items: &mut Items, n: usize, room: Option<usize>) -> Taken {
        // A number holds no bytes while it waits, so `room` only matters
        // when there is none (then one input, as for any source).
        let n = if room.is_none() { n.min(1) } else { n };
        // `Pool::typed` makes a `Numbers` only for a task of one numeric
        // parameter, whose batches `Items::new` packs.
        let mut batch = items
            .one_param()
            .expect("a Numbers source feeds a task of one numeric parameter");
        // One loop per parameter type, so that the type is a constant in
        // each and the per-input conversion folds to a few instructions.
        #[inline(always)]
        fn fill<It: Iterator<Item: serde::Serialize>>(
            ty: WasmType,
            n: usize,
            inputs: &mut It,
            task: &Task,
            batch: &mut OneParam<'_>,
        ) -> bool {
            for _ in 0..n {
                let Some(input) = inputs.next() else {
                    return true;
                };
                match crate::numeric::to_one_arg(ty, &input) {
                    Some(value) => batch.push_bits(crate::packed::to_bits(value)),
                    None => batch.push_whole(task.encode_into(&input, Vec::new)),
                }
            }
            false
        }
        let (inputs, task) = (&mut self.inputs, &self.task);
        let ended = match batch.ty {
            WasmType::I32 => fill(WasmType::I32, n, inputs, task, &mut batch),
            WasmType::I64 => fill(WasmType::I64, n, inputs, task, &mut batch),
            WasmType::F32 => fill(WasmType::F32, n, inputs, task, &mut batch),
            WasmType::F64 => fill(WasmType::F64, n, inputs, task, &mut batch),
        };
        Taken { bytes: 0, ended }
    }
}

/// What [`Source::take`] appended.
pub(crate) struct Taken {
    /// The bytes the inputs appended hold while they wait to run.
    pub(crate) bytes: usize,
    /// The inputs ran out (for now, for a [`Feed`]).
    pub(crate) ended: bool,
}

impl<T: Iterator<Item = Result<Payload, TaskError>>> Source for T {
    fn take(&mut self, items: &mut Items, n: usize, room: Option<usize>) -> Taken {
        let mut bytes = 0;
        let mut taken = 0;
        while taken < n && (taken == 0 || room.is_some_and(|room| bytes <= room)) {
            let Some(item) = self.next() else {
                return Taken { bytes, ended: true };
            };
            bytes += input_size(&item);
            items.push(item);
            taken += 1;
        }
        Taken {
            bytes,
            ended: false,
        }
    }
}

/// Turns a result kept whole into what the stream yields.
pub(crate) type DecodeOutput<'a, T> = Box<dyn FnMut(&Task, Output) -> Result<T, TaskError> + 'a>;

/// Turns a run of packed results (`packed.rs`: `count` results, their
/// bits one after another) into what the stream yields, appended in order.
pub(crate) type DecodeBits<'a, T> =
    Box<dyn FnMut(&Task, &[u64], usize, &mut VecDeque<Result<T, TaskError>>) + 'a>;

/// Turns a text result (an ABI task's output in a batch of texts) into
/// what the stream yields.
pub(crate) type DecodeText<'a, T> = Box<dyn FnMut(&Task, &[u8]) -> Result<T, TaskError> + 'a>;

/// Turns a raw output into what the stream yields.
pub(crate) struct Decode<'a, T> {
    pub(crate) output: DecodeOutput<'a, T>,
    pub(crate) bits: DecodeBits<'a, T>,
    pub(crate) text: DecodeText<'a, T>,
    /// Results decoded and not yet handed out, all of the current batch:
    /// packed results are decoded a run at a time, in one loop with no
    /// dynamic call per result (per result, that call and the walk of the
    /// packed results were a third of the calling thread's time).
    pub(crate) ready: VecDeque<Result<T, TaskError>>,
}

impl<'a, T> Decode<'a, T> {
    pub(crate) fn new(
        output: DecodeOutput<'a, T>,
        bits: DecodeBits<'a, T>,
        text: DecodeText<'a, T>,
    ) -> Self {
        Decode {
            output,
            bits,
            text,
            ready: VecDeque::new(),
        }
    }

    /// The next result of `current`, decoded; packed ones straight from
    /// their bits, a run at a time, with no `Output` in between.
    #[inline]
    fn next(&mut self, task: &Task, current: &mut ResultsIter) -> Option<Result<T, TaskError>> {
        if let Some(r) = self.ready.pop_front() {
            return Some(r);
        }
        let (bits, count) = current.take_packed_run();
        if count > 0 {
            (self.bits)(task, bits, count, &mut self.ready);
            return self.ready.pop_front();
        }
        let (bytes, mut start, ends) = current.take_text_run();
        if !ends.is_empty() {
            self.ready.reserve(ends.len());
            for &end in ends {
                self.ready.push_back((self.text)(task, &bytes[start..end]));
                start = end;
            }
            return self.ready.pop_front();
        }
        // The next result is one kept whole (a packed one would have been
        // in the run), or there is none.
        Some(current.next()?.and_then(|o| (self.output)(task, o)))
    }

    /// Results of the current batch decoded and not yet handed out.
    fn buffered(&self) -> usize {
        self.ready.len()
    }
}

/// Decodes a run of `count` packed results with `one`, a result from its
/// bits: the loop every [`DecodeBits`] runs.
#[inline]
pub(crate) fn decode_run<T>(
    bits: &[u64],
    count: usize,
    out: &mut VecDeque<Result<T, TaskError>>,
    mut one: impl FnMut(&[u64]) -> Result<T, TaskError>,
) {
    let arity = bits.len() / count.max(1);
    out.reserve(count);
    if arity == 0 {
        out.extend((0..count).map(|_| one(&[])));
    } else {
        out.extend(bits.chunks_exact(arity).map(one));
    }
}

/// The bytes an input holds while it waits to run.
fn input_size(item: &Result<Payload, TaskError>) -> usize {
    match item {
        Ok(Payload::Bytes(bytes)) => bytes.len(),
        _ => 0,
    }
}

/// How long a batch should take, in nanoseconds.
const TARGET_BATCH_NANOS: f64 = 100_000.0;

pub(crate) struct Dispatch<'a> {
    jobs: Sender<Batch>,
    /// Bumped on cancel, so that running wasm code checks its flags.
    engine: wasmtime::Engine,
    input: Inputs<'a>,
    input_done: bool,
    /// The input is a [`Feed`]'s queue: running out of it means nothing
    /// more for now, not the end.
    open_ended: bool,
    task: Task,
    reply_tx: Sender<Done>,
    reply_rx: Receiver<Done>,
    stream: Arc<StreamState>,
    next_index: u64,
    batches_out: usize,
    items_out: usize,
    /// Batches out at once. Each runs at least one input, budget or not,
    /// so this many outputs is what a stream can hold past its budget.
    max_batches: usize,
    max_items: usize,
    max_batch: usize,
    nanos_per_item: Option<f64>,
    /// Batches sent and not answered: first index -> (length, input bytes).
    out: BTreeMap<u64, (usize, usize)>,
    /// The input bytes of the batches out.
    input_bytes: usize,
    /// When the stream was cancelled.
    cancelled_at: Option<Instant>,
    /// Cancel at the first failure to arrive.
    fail_fast: bool,
    /// Async workers' wake-up, notified after each batch sent.
    arrivals: Option<Arc<tokio::sync::Notify>>,
    /// Rests of batches cut short, by first index, with their input
    /// bytes: held back while the stream is past its output budget, unless
    /// one holds the oldest unfinished input (see [`Dispatch::send_held`]).
    held: BTreeMap<u64, (Vec<Result<Payload, TaskError>>, usize)>,
    /// The index of the failure that cancelled the stream.
    failed_at: Option<u64>,
}

/// How much a stream may have out at once.
pub(crate) struct Capacity {
    pub(crate) workers: usize,
    /// Tasks each worker runs at once (1 but in the async mode).
    pub(crate) in_flight: usize,
    /// Inputs out at once.
    pub(crate) window: usize,
    /// The output byte budget.
    pub(crate) budget: usize,
    /// Notified after each batch sent, in the async mode.
    pub(crate) arrivals: Option<Arc<tokio::sync::Notify>>,
}

impl<'a> Dispatch<'a> {
    pub(crate) fn new(
        jobs: Sender<Batch>,
        engine: wasmtime::Engine,
        task: Task,
        input: Inputs<'a>,
        capacity: Capacity,
    ) -> Self {
        let Capacity {
            workers,
            in_flight,
            window,
            budget,
            arrivals,
        } = capacity;
        let (reply_tx, reply_rx) = crossbeam_channel::unbounded();
        let max_items = window.max(1);
        let slots = workers * in_flight;
        Dispatch {
            jobs,
            engine,
            input,
            input_done: false,
            open_ended: false,
            task,
            reply_tx,
            reply_rx,
            stream: Arc::new(StreamState {
                cancelled: Arc::new(AtomicBool::new(false)),
                bytes: AtomicUsize::new(0),
                budget,
            }),
            next_index: 0,
            batches_out: 0,
            items_out: 0,
            // A batch for every task in flight and three more waiting per
            // worker: not four per task in flight, which in the async mode
            // would let the outputs held past the budget grow with the
            // concurrency.
            max_batches: (slots + 3 * workers).max(16),
            max_items,
            // Leave room for every worker to hold a couple of batches.
            max_batch: (max_items / (4 * slots).max(1)).max(1),
            arrivals,
            held: BTreeMap::new(),
            nanos_per_item: None,
            out: BTreeMap::new(),
            input_bytes: 0,
            cancelled_at: None,
            fail_fast: false,
            failed_at: None,
        }
    }

    fn batch_size(&self) -> usize {
        let size = match self.nanos_per_item {
            None => 1,
            Some(ns) => (TARGET_BATCH_NANOS / ns.max(1.0)) as usize,
        };
        size.clamp(1, self.max_batch)
            .min(self.max_items - self.items_out)
    }

    /// Sends batches while the window and the byte budget have room and
    /// inputs remain. The budget counts the input bytes sent and not yet
    /// run as well as the outputs held, so big inputs are bounded too.
    fn fill(&mut self) {
        self.send_held();
        let budget = self.stream.budget;
        while !self.input_done
            && self.batches_out < self.max_batches
            && self.items_out < self.max_items
            && (self.batches_out == 0
                || (self.stream.bytes.load(Ordering::Relaxed) <= budget
                    && self.input_bytes <= budget))
        {
            let n = self.batch_size();
            // Packed for a numeric task: the batch crosses cores as a few
            // cache lines (`packed.rs`).
            let mut items = self.input.batch(&self.task.spec, n);
            let Taken { bytes, ended } =
                self.input
                    .take(&mut items, n, budget.checked_sub(self.input_bytes));
            if ended {
                self.input_done = !self.open_ended;
            }
            if items.is_empty() {
                break;
            }
            let len = items.len();
            let first_index = self.next_index;
            if !self.send(first_index, items, bytes) {
                self.input_done = true;
                break;
            }
            self.next_index += len as u64;
            self.items_out += len;
        }
    }

    /// Sends one batch; `false` if the workers are gone.
    fn send(&mut self, first_index: u64, items: Items, bytes: usize) -> bool {
        let batch = Batch {
            task: self.task.spec.clone(),
            first_index,
            items,
            reply: self.reply_tx.clone(),
            stream: self.stream.clone(),
        };
        let len = batch.items.len();
        // The pool (borrowed by the stream) keeps the workers alive, so the
        // channel is open; if it were not, recv below would report it.
        let sent = self.jobs.send(batch).is_ok();
        if sent {
            self.batches_out += 1;
            self.input_bytes += bytes;
            self.out.insert(first_index, (len, bytes));
            // An async worker with tasks in flight, or parked, learns of
            // the batch from this, whether it is new or a rest sent again.
            if let Some(arrivals) = &self.arrivals {
                arrivals.notify_waiters();
            }
        }
        sent
    }

    /// Stops the stream (see [`Imap::cancel`]).
    fn cancel(&mut self) {
        if self.cancelled_at.is_none() {
            self.input_done = true;
            self.stream.cancelled.store(true, Ordering::SeqCst);
            self.engine.increment_epoch();
            self.cancelled_at = Some(Instant::now());
        }
    }

    fn observe(&mut self, done: &Done) {
        if done.results.is_empty() {
            return;
        }
        let ns = done.busy.as_nanos() as f64 / done.results.len() as f64;
        self.nanos_per_item = Some(match self.nanos_per_item {
            None => ns,
            Some(avg) => 0.7 * avg + 0.3 * ns,
        });
    }

    fn release(&mut self, done: &Done) {
        self.items_out -= done.results.len();
        self.stream.bytes.fetch_sub(done.bytes, Ordering::Relaxed);
    }

    fn finished(&self) -> bool {
        self.input_done && self.batches_out == 0 && self.held.is_empty()
    }

    /// Sends the held rests that may go, oldest first: all of them while
    /// the stream is within its budget (or cancelled, so that they end as
    /// `terminated`), else only one that holds the oldest unfinished input
    /// (no batch out starts before it), so that the stream always moves
    /// while outputs waiting behind a slow task stay bounded. Without this
    /// hold, a worker kept taking a re-sent rest, running one input past
    /// the budget and cutting it again, one output more per round trip.
    fn send_held(&mut self) {
        while let Some((&first, _)) = self.held.first_key_value() {
            let within = self.stream.bytes.load(Ordering::Relaxed) <= self.stream.budget;
            let oldest = self.out.keys().next().is_none_or(|&o| first < o);
            if !(within || oldest || self.cancelled_at.is_some()) {
                return;
            }
            let (rest, bytes) = self.held.remove(&first).expect("looked at above");
            let len = rest.len();
            if !self.send(first, Items::List(rest), bytes) {
                // No workers: those inputs cannot run.
                self.items_out -= len;
            }
        }
    }

    fn recv(&mut self, wait: Wait) -> Option<Done> {
        loop {
            let received = match (wait, self.cancelled_at) {
                (Wait::No, _) => self.reply_rx.try_recv().ok(),
                (Wait::Forever, None) => self.reply_rx.recv().ok(),
                (Wait::Until(until), None) => self.reply_rx.recv_deadline(until).ok(),
                // Cancelled: a batch stuck in a wait nothing interrupts is
                // given up after a grace, so that the stream ends promptly.
                (wait, Some(at)) => {
                    let give_up = at + GRACE * 4;
                    let until = match wait {
                        Wait::Until(until) => until.min(give_up),
                        _ => give_up,
                    };
                    match self.reply_rx.recv_deadline(until) {
                        Ok(done) => Some(done),
                        Err(_) if until == give_up => return self.abandon_one(),
                        Err(_) => return None,
                    }
                }
            };
            let mut done = received?;
            let Some((_, bytes)) = self.out.remove(&done.first_index) else {
                continue; // answered late, after it was given up
            };
            self.batches_out -= 1;
            self.input_bytes -= bytes;
            self.observe(&done);
            if !done.rest.is_empty() {
                // Cut short: the rest goes out again when the budget has
                // room, or at once if it holds the oldest unfinished input.
                let first = done.first_index + done.results.len() as u64;
                let rest = std::mem::take(&mut done.rest);
                let bytes = rest.iter().map(input_size).sum();
                self.held.insert(first, (rest, bytes));
                self.send_held();
            }
            if self.fail_fast
                && self.failed_at.is_none()
                && let Some(i) = done.results.first_error()
            {
                self.failed_at = Some(done.first_index + i as u64);
                self.cancel();
            }
            return Some(done);
        }
    }

    /// Answers the oldest batch still out as terminated, without its
    /// worker; `None` when none is out.
    fn abandon_one(&mut self) -> Option<Done> {
        let (&first_index, &(len, bytes)) = self.out.iter().next()?;
        self.out.remove(&first_index);
        self.batches_out -= 1;
        self.input_bytes -= bytes;
        let results = (0..len)
            .map(|_| {
                Err(TaskError::new(
                    TaskErrorKind::Terminated,
                    "the stream was cancelled while this task was stuck in a wait nothing could interrupt; it was left behind",
                ))
            })
            .collect::<Vec<_>>()
            .into();
        Some(Done {
            first_index,
            results,
            rest: Vec::new(),
            busy: std::time::Duration::ZERO,
            bytes: 0,
        })
    }
}

impl Drop for Dispatch<'_> {
    fn drop(&mut self) {
        // Workers skip the tasks of a stream nobody reads any more.
        self.stream.cancelled.store(true, Ordering::Relaxed);
    }
}

/// How long [`Dispatch::recv`] waits for a finished batch.
#[derive(Clone, Copy)]
enum Wait {
    No,
    Forever,
    Until(Instant),
}

/// What [`Imap::try_next`] found.
#[derive(Debug)]
pub enum TryNext<T> {
    /// The next result, in input order.
    Ready(T),
    /// The next result is not finished yet.
    Pending,
    /// Every result has been handed out.
    Done,
}

/// A stream of results in input order, with bounded memory.
///
/// Made by [`Pool::imap`](crate::Pool::imap) and
/// [`Pool::imap_payloads`](crate::Pool::imap_payloads). It yields one result
/// per input, in input order; a failed task yields its [`TaskError`] at its
/// own position and the stream goes on.
///
/// # Ordering and memory
///
/// Results that finish early wait for earlier ones, inside a window of at
/// most [`PoolBuilder::window`](crate::PoolBuilder::window) inputs; inputs
/// are read from the caller's iterator only as the window frees up.
///
/// # Drop
///
/// Dropping the stream early cancels what has not started, and interrupts
/// its running tasks where they wait in the host (and in wasm code when the
/// pool has a timeout); their results are discarded. Dropping does not wait
/// for them.
///
/// ```no_run
/// # fn main() -> Result<(), wasmpool::Error> {
/// let pool = wasmpool::Pool::builder().module_file("square.wasm").build()?;
/// for (i, r) in pool.imap::<u64, u64>("square", 0..1_000_000)?.enumerate() {
///     assert_eq!(r.unwrap(), (i * i) as u64);
/// }
/// # Ok(()) }
/// ```
#[must_use = "a stream does nothing unless it is iterated"]
pub struct Imap<'a, T> {
    d: Dispatch<'a>,
    /// Finished batches by their first index, waiting for earlier ones.
    pending: BTreeMap<u64, Done>,
    current: ResultsIter,
    /// The index of the first input whose batch is not yet in `current`.
    next_emit: u64,
    decode: Decode<'a, T>,
}

impl<T> std::fmt::Debug for Imap<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Imap")
            .field("task", &self.d.task.name())
            .field(
                "next_index",
                &(self.d.next_index
                    - self.d.items_out as u64
                    - self.current.remaining() as u64
                    - self.decode.buffered() as u64),
            )
            .finish_non_exhaustive()
    }
}

impl<'a, T> Imap<'a, T> {
    pub(crate) fn new(d: Dispatch<'a>, decode: Decode<'a, T>) -> Self {
        Imap {
            d,
            pending: BTreeMap::new(),
            current: ResultsIter::default(),
            next_emit: 0,
            decode,
        }
    }

    #[inline(never)]
    fn step(&mut self, block: bool) -> TryNext<Result<T, TaskError>> {
        loop {
            if let Some(r) = self.decode.next(&self.d.task, &mut self.current) {
                return TryNext::Ready(r);
            }
            if let Some(done) = self.pending.remove(&self.next_emit) {
                self.d.release(&done);
                self.next_emit += done.results.len() as u64;
                self.current = done.results.into_iter();
                continue;
            }
            self.d.fill();
            if self.d.finished() {
                return TryNext::Done;
            }
            match self.d.recv(if block { Wait::Forever } else { Wait::No }) {
                Some(done) => {
                    self.pending.insert(done.first_index, done);
                }
                None if block => return TryNext::Done,
                None => return TryNext::Pending,
            }
        }
    }

    /// Stops the stream early: no more inputs are read; tasks not started
    /// end as `terminated` without running; running tasks are interrupted
    /// (kind `terminated`) where they wait in the host, and in wasm code
    /// when the pool has a timeout; what already finished is kept. The
    /// stream then yields every input read so far, in order, and ends. A
    /// task stuck in a wait nothing interrupts is given up after 200 ms
    /// (`terminated`) and its worker left to finish on its own.
    ///
    /// ```no_run
    /// # let pool = wasmpool::Pool::builder().module_file("square.wasm").build().unwrap();
    /// let mut stream = pool.imap::<u64, u64>("square", 0..1_000_000).unwrap();
    /// let first = stream.next();
    /// stream.cancel();
    /// let rest = stream.count(); // what was read before the cancel
    /// assert!(rest < 1_000_000);
    /// ```
    pub fn cancel(&mut self) {
        self.d.cancel();
    }

    /// Cancels the stream (see [`cancel`](Self::cancel)) as soon as a
    /// failure arrives, whatever its position; [`failed_at`](Self::failed_at)
    /// then says which. The CLI's `--fail-fast`.
    ///
    /// ```no_run
    /// # let pool = wasmpool::Pool::builder().module_file("testguest.wasm").build().unwrap();
    /// let mut stream = pool.imap::<u64, u64>("fail_on_tens", 0..1000).unwrap().fail_fast();
    /// let results: Vec<_> = stream.by_ref().take_while(Result::is_ok).collect();
    /// assert_eq!(stream.failed_at(), Some(10));
    /// ```
    pub fn fail_fast(mut self) -> Self {
        self.d.fail_fast = true;
        self
    }

    /// The index of the failure that cancelled a [`fail_fast`](Self::fail_fast)
    /// stream, once one has arrived.
    ///
    /// ```no_run
    /// # let pool = wasmpool::Pool::builder().module_file("square.wasm").build().unwrap();
    /// let stream = pool.imap::<u64, u64>("square", 0..10).unwrap().fail_fast();
    /// assert_eq!(stream.failed_at(), None);
    /// ```
    pub fn failed_at(&self) -> Option<u64> {
        self.d.failed_at
    }

    /// The next result if it is already finished, without blocking.
    ///
    /// The CLI uses it to flush its output exactly when it would otherwise
    /// wait, so results stream out as soon as their prefix is complete.
    ///
    /// ```no_run
    /// # let pool = wasmpool::Pool::builder().module_file("square.wasm").build().unwrap();
    /// let mut stream = pool.imap::<u64, u64>("square", 0..10).unwrap();
    /// loop {
    ///     match stream.try_next() {
    ///         wasmpool::TryNext::Ready(r) => println!("{r:?}"),
    ///         wasmpool::TryNext::Pending => std::thread::yield_now(),
    ///         wasmpool::TryNext::Done => break,
    ///     }
    /// }
    /// ```
    pub fn try_next(&mut self) -> TryNext<Result<T, TaskError>> {
        self.step(false)
    }
}

impl<T> Iterator for Imap<'_, T> {
    type Item = Result<T, TaskError>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        // Most results are already decoded: handed out here, inlined into
        // the caller's loop, without `step`'s frame.
        if let Some(r) = self.decode.ready.pop_front() {
            return Some(r);
        }
        match self.step(true) {
            TryNext::Ready(r) => Some(r),
            TryNext::Pending | TryNext::Done => None,
        }
    }
}

/// A stream of `(index, result)` pairs in completion order.
///
/// Made by [`Pool::imap_unordered`](crate::Pool::imap_unordered). Each input
/// yields exactly once, tagged with its index in the input; memory is
/// bounded as for [`Imap`], and nothing waits for a slow earlier task.
///
/// ```no_run
/// # fn main() -> Result<(), wasmpool::Error> {
/// let pool = wasmpool::Pool::builder().module_file("primes.wasm").build()?;
/// let mut total = 0;
/// for (_index, r) in pool.imap_unordered::<u64, u64>("primes", 0..64)? {
///     total += r.unwrap();
/// }
/// assert_eq!(total, 98610);
/// # Ok(()) }
/// ```
#[must_use = "a stream does nothing unless it is iterated"]
pub struct ImapUnordered<'a, T> {
    d: Dispatch<'a>,
    current: ResultsIter,
    current_index: u64,
    decode: Decode<'a, T>,
}

impl<T> std::fmt::Debug for ImapUnordered<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImapUnordered")
            .field("task", &self.d.task.name())
            .finish_non_exhaustive()
    }
}

impl<'a, T> ImapUnordered<'a, T> {
    pub(crate) fn new(d: Dispatch<'a>, decode: Decode<'a, T>) -> Self {
        ImapUnordered {
            d,
            current: ResultsIter::default(),
            current_index: 0,
            decode,
        }
    }
}

impl<T> ImapUnordered<'_, T> {
    /// Stops the stream early, as [`Imap::cancel`] does.
    ///
    /// ```no_run
    /// # let pool = wasmpool::Pool::builder().module_file("square.wasm").build().unwrap();
    /// let mut stream = pool.imap_unordered::<u64, u64>("square", 0..1_000_000).unwrap();
    /// stream.next();
    /// stream.cancel();
    /// assert!(stream.count() < 1_000_000);
    /// ```
    pub fn cancel(&mut self) {
        self.d.cancel();
    }
}

impl<T> Iterator for ImapUnordered<'_, T> {
    type Item = (usize, Result<T, TaskError>);

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if let Some(r) = self.decode.ready.pop_front() {
            let index = self.current_index as usize;
            self.current_index += 1;
            return Some((index, r));
        }
        self.next_slow()
    }
}

impl<T> ImapUnordered<'_, T> {
    fn next_slow(&mut self) -> Option<(usize, Result<T, TaskError>)> {
        loop {
            if let Some(r) = self.decode.next(&self.d.task, &mut self.current) {
                let index = self.current_index as usize;
                self.current_index += 1;
                return Some((index, r));
            }
            self.d.fill();
            if self.d.finished() {
                return None;
            }
            let done = self.d.recv(Wait::Forever)?;
            self.d.release(&done);
            self.current_index = done.first_index;
            self.current = done.results.into_iter();
        }
    }
}

/// A stream the caller feeds: inputs are pushed as they arrive, results
/// are taken as tasks finish, `(index, result)` in completion order; the
/// Python equivalent is a series of `pool.apply_async` calls.
///
/// Made by [`Pool::feed`](crate::Pool::feed). The index of an input is the
/// number of inputs pushed before it. Unlike [`Imap`], a feed does not end
/// when it has nothing to run: it waits for more inputs for as long as the
/// caller keeps it, which is what a server or a work-queue consumer needs
/// (`wasmpool worker` runs each broker job through one).
///
/// # Memory
///
/// Inputs pushed past [`room`](Self::room) wait in the feed until the
/// window frees up: keep within it to bound memory. Finished outputs count
/// against the pool's output budget, as in every stream.
///
/// # Drop
///
/// As for [`Imap`]: tasks not started are dropped, running ones
/// interrupted where they wait, their results discarded.
///
/// ```
/// # fn main() -> Result<(), wasmpool::Error> {
/// let pool = wasmpool::Pool::builder()
///     .module_bytes(r#"(module (func (export "double") (param i64) (result i64)
///         local.get 0 local.get 0 i64.add))"#)
///     .workers(2).cache(None).build()?;
/// let task = pool.task("double")?;
/// let mut feed = pool.feed(&task)?;
/// for n in [1, 2, 3] {
///     feed.push(task.parse_json(n.to_string().as_bytes()));
/// }
/// let mut results = Vec::new();
/// while let Some((index, result)) = feed.next_timeout(std::time::Duration::from_secs(5)) {
///     let mut json = Vec::new();
///     task.write_json(&result.expect("no task fails"), &mut json).unwrap();
///     results.push((index, String::from_utf8(json).unwrap()));
/// }
/// results.sort();
/// assert_eq!(results, [(0, "2".to_string()), (1, "4".into()), (2, "6".into())]);
/// # Ok(()) }
/// ```
#[must_use = "a feed runs nothing unless its results are taken"]
pub struct Feed<'a> {
    d: Dispatch<'a>,
    /// Pushed and not yet read by the dispatch (the dispatch's input
    /// iterator pops from the front).
    queued: std::rc::Rc<std::cell::RefCell<std::collections::VecDeque<Result<Payload, TaskError>>>>,
    pushed: u64,
    /// Results handed to the caller.
    taken: u64,
    current: ResultsIter,
    current_index: u64,
}

impl std::fmt::Debug for Feed<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Feed")
            .field("task", &self.d.task.name())
            .field("pushed", &self.pushed)
            .field("taken", &self.taken)
            .finish_non_exhaustive()
    }
}

impl<'a> Feed<'a> {
    pub(crate) fn new(make: impl FnOnce(Inputs<'a>) -> Dispatch<'a>) -> Self {
        let queued: std::rc::Rc<std::cell::RefCell<std::collections::VecDeque<_>>> =
            Default::default();
        let input = queued.clone();
        let mut d = make(Box::new(std::iter::from_fn(move || {
            input.borrow_mut().pop_front()
        })));
        d.open_ended = true;
        Feed {
            d,
            queued,
            pushed: 0,
            taken: 0,
            current: ResultsIter::default(),
            current_index: 0,
        }
    }

    /// Adds an input (an `Err` is passed through as its result, as in
    /// [`Pool::imap_payloads`](crate::Pool::imap_payloads)); returns its
    /// index. It is sent to a worker at once if the window has room, else
    /// when it frees up.
    ///
    /// Once the feed is cancelled, inputs pushed end as `terminated`
    /// without running.
    pub fn push(&mut self, input: Result<Payload, TaskError>) -> u64 {
        self.queued.borrow_mut().push_back(input);
        let index = self.pushed;
        self.pushed += 1;
        if self.d.cancelled_at.is_none() {
            self.d.fill();
        }
        index
    }

    /// How many more inputs fit in the window now: pushed inputs beyond it
    /// wait in the feed (unbounded memory if the caller does not look).
    pub fn room(&self) -> usize {
        self.d
            .max_items
            .saturating_sub(self.d.items_out + self.queued.borrow().len())
    }

    /// Inputs pushed whose results have not been taken yet.
    pub fn pending(&self) -> u64 {
        self.pushed - self.taken
    }

    /// The next finished result, if there is one now.
    pub fn try_next(&mut self) -> Option<(u64, Result<Output, TaskError>)> {
        self.step(Wait::No)
    }

    /// The next finished result, waiting up to `timeout` for one; `None` at
    /// once when nothing is pending.
    pub fn next_timeout(
        &mut self,
        timeout: std::time::Duration,
    ) -> Option<(u64, Result<Output, TaskError>)> {
        self.step(Wait::Until(Instant::now() + timeout))
    }

    fn step(&mut self, wait: Wait) -> Option<(u64, Result<Output, TaskError>)> {
        loop {
            if let Some(r) = self.current.next() {
                let index = self.current_index;
                self.current_index += 1;
                self.taken += 1;
                return Some((index, r));
            }
            if self.d.cancelled_at.is_some() {
                // What is queued ends here; rests held back by the budget
                // go out to end as `terminated` (as `fill` would send them).
                self.terminate_queued();
                self.d.send_held();
            } else {
                self.d.fill();
            }
            if self.d.batches_out == 0 && self.d.held.is_empty() {
                return None;
            }
            let done = self.d.recv(wait)?;
            self.d.release(&done);
            self.current_index = done.first_index;
            self.current = done.results.into_iter();
        }
    }

    /// Inputs queued after a cancel end as `terminated`, without running.
    fn terminate_queued(&mut self) {
        let queued: Vec<_> = self.queued.borrow_mut().drain(..).collect();
        if queued.is_empty() {
            return;
        }
        let first_index = self.d.next_index;
        self.d.next_index += queued.len() as u64;
        let results: Vec<_> = queued
            .iter()
            .map(|_| {
                Err(TaskError::new(
                    TaskErrorKind::Terminated,
                    "the feed was cancelled before this task started",
                ))
            })
            .collect();
        // Handed out as a finished batch of its own, after what is current.
        self.d.items_out += results.len();
        self.d.batches_out += 1;
        self.d.out.insert(first_index, (results.len(), 0));
        let _ = self.d.reply_tx.send(Done {
            first_index,
            results: results.into(),
            rest: Vec::new(),
            busy: std::time::Duration::ZERO,
            bytes: 0,
        });
    }

    /// Stops the feed as [`Imap::cancel`] does: what is queued or not
    /// started ends as `terminated`, running tasks are interrupted where
    /// they wait; every pending input still yields its result.
    pub fn cancel(&mut self) {
        self.d.cancel();
    }
}
