//! Host functions (`PoolBuilder::host_fn`, `host_fn_async`) called by
//! guests through `host_call`, in both modes: each test runs its body with
//! the synchronous pool and with an async one.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value as Json, json};
use wasmpool::{Pool, PoolBuilder, TaskErrorKind};
use wasmpool_tests::TESTGUEST;

/// The modes every test runs in: synchronous, and async with 8 tasks in
/// flight per worker.
const MODES: [Option<u32>; 2] = [None, Some(8)];

fn builder(concurrency: Option<u32>) -> PoolBuilder {
    let b = Pool::builder()
        .module_file(TESTGUEST)
        .workers(2)
        .cache(None);
    match concurrency {
        Some(n) => b.concurrency(n),
        None => b,
    }
}

/// A pool with the functions most tests call.
fn pool(concurrency: Option<u32>) -> Pool {
    builder(concurrency)
        .host_fn("double", |x: i64| Ok::<_, String>(2 * x))
        .host_fn("refuse", |why: String| {
            Err::<i64, _>(format!("refused: {why}"))
        })
        .host_fn("explode", |_: Json| -> Result<i64, String> {
            panic!("the host function blew up")
        })
        .host_fn_async("later", |ms: u64| async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok::<_, String>(ms)
        })
        .host_fn_async("never", |_: Json| async move {
            std::future::pending::<()>().await;
            Ok::<i64, String>(0)
        })
        .build()
        .unwrap()
}

fn call(name: &str, input: Json) -> Json {
    json!({"name": name, "input": input})
}

#[test]
fn sync_and_async_host_functions_answer_in_order() {
    for mode in MODES {
        let pool = pool(mode);
        let inputs: Vec<Json> = (0..40)
            .map(|i| {
                if i % 2 == 0 {
                    call("double", json!(i))
                } else {
                    call("later", json!(i % 5))
                }
            })
            .collect();
        let out = pool.map::<Json, Json>("call_host", inputs).unwrap();
        for (i, r) in out.into_iter().enumerate() {
            let want = if i % 2 == 0 {
                json!(2 * i)
            } else {
                json!(i % 5)
            };
            assert_eq!(r.unwrap(), want, "input {i} in mode {mode:?}");
        }
    }
}

#[test]
fn each_call_has_its_own_reply() {
    for mode in MODES {
        let pool = pool(mode);
        let out = pool
            .map::<Json, (i64, i64)>("call_host_twice", [call("double", json!(21))])
            .unwrap();
        assert_eq!(out[0].as_ref().unwrap(), &(42, 42), "mode {mode:?}");
    }
}

#[test]
fn a_host_functions_error_reaches_the_guest_and_fails_only_its_task() {
    for mode in MODES {
        let pool = pool(mode);
        let out = pool
            .map::<Json, Json>(
                "call_host",
                [
                    call("double", json!(1)),
                    call("refuse", json!("no")),
                    call("double", json!(2)),
                ],
            )
            .unwrap();
        assert_eq!(out[0].as_ref().unwrap(), &json!(2));
        let err = out[1].as_ref().unwrap_err();
        assert_eq!(err.kind(), TaskErrorKind::Guest, "{err} ({mode:?})");
        assert!(err.message().contains("refused: no"), "{err}");
        assert_eq!(out[2].as_ref().unwrap(), &json!(4));
    }
}

#[test]
fn a_bad_input_for_a_typed_host_function_is_an_error_for_the_guest() {
    for mode in MODES {
        let pool = pool(mode);
        let err = pool
            .map::<Json, Json>("call_host", [call("double", json!("not a number"))])
            .unwrap()
            .remove(0)
            .unwrap_err();
        assert_eq!(err.kind(), TaskErrorKind::Guest, "{err}");
        assert!(err.message().contains("does not fit its type"), "{err}");
        assert_eq!(
            err.message().matches("double").count(),
            1,
            "named once: {err}"
        );
    }
}

#[test]
fn an_unknown_name_is_an_abi_error_listing_the_names() {
    for mode in MODES {
        let pool = pool(mode);
        let err = pool
            .map::<Json, Json>("call_host", [call("dubble", json!(1))])
            .unwrap()
            .remove(0)
            .unwrap_err();
        assert_eq!(err.kind(), TaskErrorKind::Abi, "{err}");
        assert!(err.message().contains(r#""dubble""#), "{err}");
        assert!(
            err.message()
                .contains("double, explode, later, never, refuse"),
            "{err}"
        );
        // The pool still serves.
        let ok = pool
            .map::<Json, Json>("call_host", [call("double", json!(3))])
            .unwrap();
        assert_eq!(ok[0].as_ref().unwrap(), &json!(6));
    }
}

#[test]
fn a_panicking_host_function_is_a_host_error_and_the_pool_goes_on() {
    for mode in MODES {
        let pool = pool(mode);
        let out = pool
            .map::<Json, Json>(
                "call_host",
                [call("explode", json!(null)), call("double", json!(5))],
            )
            .unwrap();
        let err = out[0].as_ref().unwrap_err();
        assert_eq!(err.kind(), TaskErrorKind::Host, "{err}");
        assert!(err.message().contains("the host function blew up"), "{err}");
        assert!(err.message().contains(r#""explode""#), "{err}");
        assert_eq!(out[1].as_ref().unwrap(), &json!(10));
    }
}

#[test]
fn a_host_function_that_never_answers_ends_at_the_deadline() {
    for mode in MODES {
        let pool = builder(mode)
            .timeout(Duration::from_millis(300))
            .host_fn_async("never", |_: Json| async move {
                std::future::pending::<()>().await;
                Ok::<i64, String>(0)
            })
            .host_fn("double", |x: i64| Ok::<_, String>(2 * x))
            .build()
            .unwrap();
        let start = Instant::now();
        let out = pool
            .map::<Json, Json>(
                "call_host",
                [call("never", json!(null)), call("double", json!(4))],
            )
            .unwrap();
        let took = start.elapsed();
        let err = out[0].as_ref().unwrap_err();
        assert_eq!(err.kind(), TaskErrorKind::Timeout, "{err} ({mode:?})");
        assert_eq!(out[1].as_ref().unwrap(), &json!(8));
        assert!(took < Duration::from_secs(3), "took {took:?} ({mode:?})");
    }
}

#[test]
fn raw_abi_misuse_of_host_calls_traps_with_abi() {
    for mode in MODES {
        let pool = pool(mode);
        let err = pool
            .map::<Json, i32>("host_reply_without_call", [json!(null)])
            .unwrap()
            .remove(0)
            .unwrap_err();
        assert_eq!(err.kind(), TaskErrorKind::Abi, "{err}");
        assert!(err.message().contains("host_reply"), "{err}");
        let err = pool
            .map::<String, i64>("host_call_bad_pointer", ["double".to_string()])
            .unwrap()
            .remove(0)
            .unwrap_err();
        assert_eq!(err.kind(), TaskErrorKind::Abi, "{err}");
        assert!(err.message().contains("host_call"), "{err}");
    }
}

#[test]
fn a_thousand_tasks_share_an_async_host_function_that_waits() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let pool = builder(Some(500))
        .host_fn_async("later", move |ms: u64| {
            counted.fetch_add(1, Ordering::Relaxed);
            async move {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                Ok::<_, String>(ms)
            }
        })
        .build()
        .unwrap();
    let start = Instant::now();
    let out = pool
        .map::<Json, u64>("call_host", vec![call("later", json!(200)); 1000])
        .unwrap();
    let took = start.elapsed();
    assert!(out.iter().all(|r| r.as_ref().is_ok_and(|&ms| ms == 200)));
    assert_eq!(calls.load(Ordering::Relaxed), 1000);
    // One after another on 2 threads this is 100 s; suspended, about 0.2 s
    // plus making 1,000 instances (bounded loosely for loaded CI machines).
    assert!(took < Duration::from_secs(20), "took {took:?}");
}
