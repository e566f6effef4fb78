//! wasmpool's integration tests, one binary: the library (`pool`), the
//! guest ABI edge cases (`abi`), the module cache (`cache`) and the real
//! `wasmpool` binary (`cli`), all against real wasm modules.

mod abi;
mod cache;
mod cli;
mod concurrency;
mod hostfn;
mod hostile;
mod hostile_cli;
mod pool;
mod process;
mod shared;
mod util;
