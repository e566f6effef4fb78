//! Micro-benchmarks of wasmpool's building blocks, so that regressions show:
//! dispatch (a task's round trip through a pool), instantiation (a fresh
//! instance per task), a host call (an SDK task's input/output calls), and
//! queue put/get.
//!
//! ```text
//! cargo bench -p wasmpool-bench --bench micro
//! ```
//!
//! criterion keeps the last run in target/criterion and reports the change.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use wasmpool::{Isolation, Pool, Queue};
use wasmpool_tests::{SQUARE, TESTGUEST};

fn pool(module: &str, workers: usize) -> wasmpool::PoolBuilder {
    Pool::builder().module_file(module).workers(workers)
}

fn dispatch(c: &mut Criterion) {
    let pool = pool(SQUARE, 1).build().expect("pool");
    let mut g = c.benchmark_group("dispatch");
    g.throughput(Throughput::Elements(1000));
    g.bench_function("numeric export, 1000 tasks, 1 worker", |b| {
        b.iter(|| {
            pool.imap::<i64, i64>("square_i64", 0..1000)
                .expect("task")
                .map(|r| r.expect("ok"))
                .sum::<i64>()
        })
    });
    g.bench_function("SDK task, 1000 tasks, 1 worker", |b| {
        b.iter(|| {
            pool.imap::<i64, i64>("square", 0..1000)
                .expect("task")
                .map(|r| r.expect("ok"))
                .sum::<i64>()
        })
    });
    g.throughput(Throughput::Elements(1));
    g.bench_function("one task, one result (latency)", |b| {
        b.iter(|| {
            pool.map::<i64, i64>("square_i64", [black_box(7)])
                .expect("task")
        })
    });
    g.finish();
}

fn instantiation(c: &mut Criterion) {
    let fresh = pool(SQUARE, 1)
        .isolation(Isolation::Task)
        .build()
        .expect("pool");
    let mut g = c.benchmark_group("instantiation");
    g.throughput(Throughput::Elements(100));
    g.bench_function("fresh instance per task, 100 tasks", |b| {
        b.iter(|| {
            fresh
                .imap::<i64, i64>("square_i64", 0..100)
                .expect("task")
                .map(|r| r.expect("ok"))
                .sum::<i64>()
        })
    });
    g.bench_function("pool build (cached module, 1 worker)", |b| {
        b.iter(|| pool(SQUARE, 1).build().expect("pool"))
    });
    g.finish();
}

fn host_calls(c: &mut Criterion) {
    let pool = pool(TESTGUEST, 1)
        .shared_memory(1 << 16)
        .build()
        .expect("pool");
    let mut g = c.benchmark_group("host calls");
    g.throughput(Throughput::Elements(100_000));
    g.bench_function("shm_add_i64 x 100000 in one task", |b| {
        b.iter(|| pool.map::<u64, u64>("count", [100_000]).expect("task"))
    });
    g.finish();
}

fn queues(c: &mut Criterion) {
    let q = Queue::new("bench", 1024);
    let mut g = c.benchmark_group("queue");
    g.throughput(Throughput::Elements(1));
    g.bench_function("host put + get, uncontended", |b| {
        b.iter(|| {
            q.put(black_box(vec![1, 2, 3]), None).expect("put");
            q.get(None).expect("get")
        })
    });
    let pool = pool(TESTGUEST, 2)
        .queue("ping", 1)
        .queue("pong", 1)
        .build()
        .expect("pool");
    g.throughput(Throughput::Elements(1000));
    g.bench_function("ping-pong between two instances, 1000 round trips", |b| {
        b.iter(|| {
            pool.map::<(u32, u64), u64>("pingpong", [(0, 1000), (1, 1000)])
                .expect("pingpong")
        })
    });
    g.finish();
}

criterion_group! {
    name = micro;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_millis(500));
    targets = dispatch, instantiation, host_calls, queues
}
criterion_main!(micro);
