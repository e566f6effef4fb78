# Developer recipes. README.md's two commands need none of this.

# Build the example and test guests for wasm32-wasip1 into target/wasm32-wasip1.
guests:
    rustup target add wasm32-wasip1
    cargo build --release --target wasm32-wasip1 -p square -p primes -p mandelbrot -p testguest -p asyncio

# The C examples (examples/c) with clang's wasm32-wasi target, into target/c-guests (docs/c-guest.md).
c-guests:
    mkdir -p target/c-guests
    clang --target=wasm32-wasi -O2 -mexec-model=reactor -I guest-sdk/c examples/c/tasks.c -o target/c-guests/tasks.wasm
    clang --target=wasm32-wasi -O2 -I guest-sdk/c examples/c/producer_consumer.c -o target/c-guests/producer_consumer.wasm

# The whole test suite, exactly as CI runs it.
test:
    ./.ci/run

# Format and lint.
lint:
    cargo fmt --all --check
    cargo clippy --workspace --all-targets -- -D warnings

# API docs for the host and the SDK.
doc:
    cargo doc --no-deps -p wasmpool -p wasmpool-guest --open

# Run every host example.
examples:
    cargo run --release --example demo
    cargo run --release --example embed
    cargo run --release --example asyncio

# The demo.
demo:
    cargo run --release --example demo

# The benchmark suite: writes docs/benchmarks.md and its plots (about 2 minutes on 2 cores).
bench:
    rustup target add wasm32-wasip1
    cargo build --release -p wasmpool
    cargo run --release -p wasmpool-bench

# The benchmark suite, one run per workload (a smoke test of the suite).
bench-quick:
    cargo build --release -p wasmpool
    cargo run --release -p wasmpool-bench -- --quick --out target/bench-quick
