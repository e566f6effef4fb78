//! wasmpool's integration tests, one binary: the library (`pool`), the
//! guest ABI edge cases (`abi`), the module cache (`cache`) and the real
//! `wasmpool` binary (`cli`), all against real wasm modules.

mod abi;
mod adversary_feed;
mod adversary_queue;
mod adversary_shard;
mod adversary_wasi;
mod broker;
mod c_guest;
mod cache;
mod cli;
mod cli_errors;
mod cli_input;
mod concurrency;
mod hostfn;
mod hostile;
mod hostile_cli;
mod pool;
mod precompiled;
mod process;
mod progress;
mod queue_batch;
mod redis;
mod rewind;
mod scaffold;
mod shard;
mod shared;
mod shm_inline;
mod task_io;
mod util;
