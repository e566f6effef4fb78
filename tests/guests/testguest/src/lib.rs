//! One task per behaviour the host's tests check. Each task says which
//! test relies on it.

use serde::{Deserialize, Serialize};
use wasmpool_guest::task;

/// Several parameters take a JSON array. (pool::several_parameters_take_an_array)
#[task]
pub fn add(a: i64, b: i64) -> i64 {
    a + b
}

/// Fails by its own judgement on multiples of ten. (pool::failure_stays_at_its_index)
#[task]
pub fn fail_on_tens(x: u64) -> Result<u64, String> {
    if x.is_multiple_of(10) {
        Err(format!("{x} is a multiple of ten"))
    } else {
        Ok(x * 2)
    }
}

/// Panics on 13: a trap with the panic message. (pool::panic_is_a_trap_with_its_message)
#[task]
pub fn panic_on_13(x: u64) -> u64 {
    if x == 13 {
        panic!("unlucky {x}");
    }
    x
}

/// Spins for `ms` milliseconds, then says which worker ran it.
/// (pool::worker_count_is_honoured)
#[task]
pub fn whoami(ms: u64) -> (u32, u32) {
    let start = std::time::Instant::now();
    while start.elapsed().as_millis() < u128::from(ms) {
        std::hint::spin_loop();
    }
    (
        wasmpool_guest::worker_index(),
        wasmpool_guest::worker_count(),
    )
}

/// A struct in, a number out. (pool::serde_structs_cross_the_boundary)
#[derive(Debug, Deserialize, Serialize)]
pub struct Point {
    /// x
    pub x: f64,
    /// y
    pub y: f64,
}

/// The length of a vector. (pool::serde_structs_cross_the_boundary)
#[task]
pub fn norm(p: Point) -> f64 {
    (p.x * p.x + p.y * p.y).sqrt()
}

/// A string in, a string out: the text upper-cased, with its length.
/// (cli_input::raw_lines_in_and_raw_strings_out)
#[task]
pub fn shout(text: String) -> String {
    format!("{} ({})", text.to_uppercase(), text.chars().count())
}

/// Counts calls in this instance: state persists across tasks of one
/// worker, and is fresh after a trap. (pool::instance_is_replaced_after_a_trap)
#[task]
pub fn calls() -> u64 {
    static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1
}

/// Exits the instance with WASI `proc_exit`. (pool::proc_exit_is_reported)
#[task]
pub fn exit_with(code: i32) -> u32 {
    std::process::exit(code)
}

/// Returns a string of `n` bytes. (pool::output_limit_is_enforced)
#[task]
pub fn big(n: usize) -> String {
    "x".repeat(n)
}

/// Writes output that is not JSON. (cli::invalid_json_output_is_an_output_error)
#[unsafe(no_mangle)]
pub extern "C" fn wasmpool_task_not_json() -> i32 {
    wasmpool_guest::output(b"{this is not json");
    0
}

// ---- the SDK's task I/O area beside the calls (task_io::sdk_*) ----

/// The input's length as `wasmpool_guest::input()` reads it (through the
/// host calls, beside the area the SDK decoded it from).
#[task]
pub fn input_len_seen(_x: serde::de::IgnoredAny) -> usize {
    wasmpool_guest::input().len()
}

/// Writes `[1,` itself, then returns `x`: the output is `[1,` then `x`,
/// in that order.
#[task]
pub fn written_then_returned(x: u64) -> u64 {
    wasmpool_guest::output(b"[1,");
    x
}

/// Doubles `x`.
#[task]
pub fn double(x: u64) -> u64 {
    2 * x
}

/// Runs task `double` on the same input from inside this task (its
/// output is written first), then returns `x`: `2x` then `x`.
#[task]
pub fn nested(x: u64) -> u64 {
    __wasmpool_task_double();
    x
}

// ---- queues and the shared region (pool::shared_* and pool::queue_* tests) ----

use wasmpool_guest::{Barrier, Lock, Queue, QueueError, SharedValue};

const COUNTER: SharedValue<u64> = SharedValue::at(0);
const LOCK: Lock = Lock::at(128);
const GUARDED: SharedValue<u64> = SharedValue::at(136);
const BARRIER_AT: u64 = 64;

/// Adds 1 to the shared counter `n` times (the counter benchmark).
#[task]
pub fn count(n: u64) -> u64 {
    for _ in 0..n {
        COUNTER.fetch_add(1);
    }
    n
}

/// Waits until two instances are here (the barrier at 96), then adds 1 to
/// the shared counter `n` times: the two tasks of a map on 2 workers
/// always run at once, one on each, however slowly a worker wakes.
/// (shared::shared_counter_is_exact)
#[task]
pub fn count_together(n: u64) -> u64 {
    Barrier::at(96, 2).wait();
    count(n)
}

/// Adds 1 to a plain (non-atomic) read-modify-write under the lock, `n`
/// times. (pool::lock_makes_read_modify_write_exact)
#[task]
pub fn locked_count(n: u64) -> u64 {
    for _ in 0..n {
        let _guard = LOCK.lock();
        GUARDED.store(GUARDED.load() + 1);
    }
    n
}

/// Role 0 puts 0..n on queue `q` and closes it; role 1 takes until closed
/// and returns [count, sum]. (pool::producer_consumer_loses_nothing)
#[task]
pub fn pc(role: u32, n: u64) -> Result<(u64, u64), String> {
    let q: Queue<u64> = Queue::open("q").ok_or("no queue q")?;
    if role == 0 {
        for i in 0..n {
            q.put(&i).map_err(|e| e.to_string())?;
        }
        q.close();
        Ok((n, 0))
    } else {
        let (mut count, mut sum) = (0, 0);
        for x in q.iter() {
            count += 1;
            sum += x;
        }
        Ok((count, sum))
    }
}

/// Waits at the barrier for `parties` instances; true in the last to arrive.
/// (pool::barrier_releases_all_four)
#[task]
pub fn barrier(parties: u32) -> bool {
    Barrier::at(BARRIER_AT, parties).wait()
}

/// A get with a timeout on queue `q`. (pool::get_timeout_on_empty_queue_times_out)
#[task]
pub fn get_with_timeout(ms: u64) -> String {
    let q: Queue<u64> = Queue::open("q").expect("queue q");
    match q.get_timeout(std::time::Duration::from_millis(ms)) {
        Ok(v) => format!("got {v}"),
        Err(QueueError::Timeout) => "timeout".into(),
        Err(e) => e.to_string(),
    }
}

const EVENT: wasmpool_guest::Event = wasmpool_guest::Event::at(200);
const SLOTS: wasmpool_guest::Semaphore = wasmpool_guest::Semaphore::at(208);
const INSIDE: SharedValue<i64> = SharedValue::at(216);
const MOST_INSIDE: SharedValue<i64> = SharedValue::at(224);

/// Role 0 waits (at most 10 s) for the event and returns whether it is set;
/// role 1 sets it after 20 ms. (shared::event_wakes_a_waiter)
#[task]
pub fn event(role: u32) -> bool {
    if role == 0 {
        EVENT.wait_timeout(std::time::Duration::from_secs(10))
    } else {
        std::thread::sleep(std::time::Duration::from_millis(20));
        EVENT.set();
        true
    }
}

/// Holds a permit of the semaphore (which the host sets up) for `ms`
/// milliseconds, recording the most holders at once.
/// (shared::semaphore_bounds_concurrency)
#[task]
pub fn hold_permit(ms: u64) -> i64 {
    SLOTS.acquire();
    let now = INSIDE.fetch_add(1) + 1;
    let mut most = MOST_INSIDE.load();
    while now > most {
        match MOST_INSIDE.compare_exchange(most, now) {
            Ok(_) => break,
            Err(actual) => most = actual,
        }
    }
    let start = std::time::Instant::now();
    while start.elapsed().as_millis() < u128::from(ms) {
        std::hint::spin_loop();
    }
    INSIDE.fetch_add(-1);
    SLOTS.release();
    now
}

/// Allocates and touches `mb` MiB. (hostile::rust_memory_bomb_is_out_of_memory)
#[task]
pub fn alloc_mb(mb: usize) -> usize {
    let v = vec![1u8; mb << 20];
    v.iter().map(|&b| b as usize).sum::<usize>() >> 20
}

/// Waits on queue `q` with no timeout. (hostile::queue_get_that_never_returns_times_out)
#[task]
pub fn get_forever() -> String {
    let q: Queue<u64> = Queue::open("q").expect("queue q");
    format!("{:?}", q.get())
}

/// Role 0 sends `n` pings on queue `ping` and waits for each pong on queue
/// `pong`; role 1 answers. (bench: queue ping-pong latency)
#[task]
pub fn pingpong(role: u32, n: u64) -> Result<u64, String> {
    let ping: Queue<u64> = Queue::open("ping").ok_or("no queue ping")?;
    let pong: Queue<u64> = Queue::open("pong").ok_or("no queue pong")?;
    for i in 0..n {
        if role == 0 {
            ping.put(&i).map_err(|e| e.to_string())?;
            pong.get().map_err(|e| e.to_string())?;
        } else {
            let x = ping.get().map_err(|e| e.to_string())?;
            pong.put(&x).map_err(|e| e.to_string())?;
        }
    }
    Ok(n)
}

/// Role 0 puts 0..n on queue `q` in `put_many` calls of `batch` values and
/// closes it; role 1 takes `get_many(batch)` until closed, checks that the
/// values come in order, once each, and returns [count, sum].
/// (queue_batch::put_many_get_many_round_trip; bench: queue throughput)
#[task]
pub fn pc_batch(role: u32, n: u64, batch: u64) -> Result<(u64, u64), String> {
    let q: Queue<u64> = Queue::open("q").ok_or("no queue q")?;
    let batch = batch.max(1);
    if role == 0 {
        let mut values = Vec::with_capacity(batch as usize);
        let mut i = 0;
        while i < n {
            values.clear();
            values.extend(i..n.min(i + batch));
            q.put_many(&values).map_err(|e| e.to_string())?;
            i += values.len() as u64;
        }
        q.close();
        Ok((n, 0))
    } else {
        let (mut count, mut sum) = (0u64, 0u64);
        for got in q.batches(batch as usize) {
            if got.is_empty() || got.len() as u64 > batch {
                return Err(format!("a batch of {} for a max of {batch}", got.len()));
            }
            for x in got {
                if x != count {
                    return Err(format!("got {x} where {count} was next"));
                }
                count += 1;
                sum += x;
            }
        }
        Ok((count, sum))
    }
}

/// `get_many_timeout(max, ms)` on queue `q`: the batch, or the error's text.
/// (queue_batch::get_many_times_out_and_sees_close)
#[task]
pub fn get_many_within(max: u64, ms: u64) -> Result<Vec<u64>, String> {
    let q: Queue<u64> = Queue::open("q").ok_or("no queue q")?;
    q.get_many_timeout(max as usize, std::time::Duration::from_millis(ms))
        .map_err(|e| e.to_string())
}

/// `put_many(values)` on queue `q`: "ok" or the error's text.
/// (queue_batch::get_many_times_out_and_sees_close)
#[task]
pub fn put_many_values(values: Vec<u64>) -> String {
    let Some(q) = Queue::<u64>::open("q") else {
        return "no queue q".into();
    };
    match q.put_many(&values) {
        Ok(()) => "ok".into(),
        Err(e) => e.to_string(),
    }
}

/// Sleeps `ms` milliseconds through WASI (`poll_oneoff`), then returns it.
/// (hostile::wasi_sleep_past_the_deadline_times_out)
#[task]
pub fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(std::time::Duration::from_millis(ms));
    ms
}

// ---- host functions (host_fn tests) ----

use wasmpool_guest::host::{self, HostError};
// serde_json itself, through the SDK's re-export: the SDK and this guest move
// in lockstep, and a direct dependency would change Cargo.lock.
use wasmpool_guest::__private::serde_json::Value as Json;

/// A host call: the function's name and its JSON input (`null` if absent).
#[derive(Debug, Deserialize)]
pub struct HostCall {
    /// The host function's name.
    pub name: String,
    /// Its input.
    #[serde(default)]
    pub input: Json,
}

/// Calls host function `name` with `input` and returns its reply; the host
/// function's error is the task's (kind `guest`). Input `{"name": "...",
/// "input": <json>}`. (host_fn::*)
#[task]
pub fn call_host(call: HostCall) -> Result<Json, HostError> {
    host::call::<Json, Json>(&call.name, &call.input)
}

/// Calls host function `name` twice with the same `input` and returns both
/// replies, `[first, second]`: each call's reply is its own. Input as
/// `call_host`. (host_fn::*)
#[task]
pub fn call_host_twice(call: HostCall) -> Result<(Json, Json), HostError> {
    let first = host::call::<Json, Json>(&call.name, &call.input)?;
    let second = host::call::<Json, Json>(&call.name, &call.input)?;
    Ok((first, second))
}

/// Hostile raw calls of the host-function imports, past the SDK. Only for
/// wasm: natively the imports do not exist.
#[cfg(target_family = "wasm")]
mod raw_host {
    use wasmpool_guest::task;

    #[link(wasm_import_module = "wasmpool")]
    unsafe extern "C" {
        fn host_call(name_ptr: i32, name_len: i32, in_ptr: i32, in_len: i32) -> i64;
        fn host_reply(ptr: i32, len: i32) -> i32;
    }

    /// Calls `host_reply` with nothing held: an `abi` trap. Returns what the
    /// call returned if the host lets it through. (hostile::*)
    #[task]
    pub(crate) fn host_reply_without_call() -> i32 {
        let mut buf = [0u8; 16];
        // SAFETY: `buf` is 16 live bytes on the stack for the call.
        unsafe { host_reply(buf.as_mut_ptr() as i32, buf.len() as i32) }
    }

    /// Calls host function `name` with an input range outside memory
    /// (`in_ptr = -16`, `in_len = 64`): an `abi` trap. Returns what the call
    /// returned if the host lets it through. (hostile::*)
    #[task]
    pub(crate) fn host_call_bad_pointer(name: String) -> i64 {
        // SAFETY: the name is live for the call; the input range is
        // deliberately out of bounds, which the host must check, not use.
        unsafe { host_call(name.as_ptr() as i32, name.len() as i32, -16, 64) }
    }
}
