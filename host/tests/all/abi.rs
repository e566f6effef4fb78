//! The guest ABI's edge cases, with hand-written WAT: every pointer checked,
//! every load rule of docs/abi.md enforced with a clear message.

use wasmpool::{Payload, TaskErrorKind};

use crate::util::wat_pool;

const ALL_IMPORTS: &str = include_str!("../../../tests/fixtures/abi_all_imports.wat");

/// A module with the marker and memory, importing the listed functions and
/// exporting one task `t` with `body`.
fn abi_module(body: &str) -> String {
    format!(
        r#"(module
            (import "wasmpool" "input_len" (func $input_len (result i32)))
            (import "wasmpool" "input_read" (func $input_read (param i32 i32) (result i32)))
            (import "wasmpool" "output_write" (func $output_write (param i32 i32)))
            (import "wasmpool" "trap_message" (func $trap_message (param i32 i32)))
            (memory (export "memory") 1)
            (func (export "wasmpool_abi_v1"))
            (func (export "wasmpool_task_t") (result i32) {body}))"#
    )
}

fn run_raw(wat: &str, input: &[u8]) -> Result<Vec<u8>, wasmpool::TaskError> {
    let pool = wat_pool(wat, 1).unwrap();
    let task = pool.task("t").unwrap();
    let mut results: Vec<_> = pool
        .imap_payloads(&task, [Ok(Payload::Bytes(input.to_vec()))])
        .unwrap()
        .collect();
    results.pop().unwrap().map(|o| match o {
        wasmpool::Output::Bytes(b) => b,
        other => panic!("{other:?}"),
    })
}

#[test]
fn all_imports_fixture_instantiates_and_runs() {
    let pool = wasmpool::Pool::builder()
        .module_bytes(ALL_IMPORTS)
        .workers(2)
        .queue("q", 4)
        .shared_memory(1 << 16)
        .host_fn("echo", |v: serde_json::Value| Ok::<_, String>(v))
        .cache(None)
        .build()
        .unwrap();
    let r = pool
        .map::<serde_json::Value, serde_json::Value>("host_echo", [serde_json::json!([1, "two"])])
        .unwrap();
    assert_eq!(r[0].as_ref().unwrap(), &serde_json::json!([1, "two"]));
    let r = pool
        .map::<&str, String>("queue_roundtrip", ["through the queue"])
        .unwrap();
    assert_eq!(r, [Ok("through the queue".to_string())]);
    let r = pool
        .map::<&str, String>("queue_batch", ["in a batch"])
        .unwrap();
    assert_eq!(r, [Ok("in a batch".to_string())]);
    assert_eq!(pool.map::<(), u32>("shm_all", [()]).unwrap(), [Ok(42)]);
    let echoed = pool
        .map::<serde_json::Value, serde_json::Value>("echo", [serde_json::json!({"a": [1, 2]})])
        .unwrap();
    assert_eq!(
        echoed[0].as_ref().unwrap(),
        &serde_json::json!({"a": [1, 2]})
    );
    let inputs: Vec<String> = (0..6).map(|i| "y".repeat(i * 300)).collect();
    let through_area = pool
        .map::<String, String>("io_echo", inputs.clone())
        .unwrap();
    assert_eq!(through_area, inputs.into_iter().map(Ok).collect::<Vec<_>>());
    let who = pool.map::<(), u32>("worker", [(); 4]).unwrap();
    for w in who {
        let w = w.unwrap();
        assert!(w == 20 || w == 21, "count 2, index 0 or 1: {w}");
    }
    let said = pool.map::<(), u32>("say_no", [()]).unwrap();
    let err = said[0].as_ref().unwrap_err();
    assert_eq!(err.kind(), TaskErrorKind::Trap);
    assert!(err.message().starts_with("fixture says no"), "{err}");
}

#[test]
fn all_imports_fixture_covers_every_import() {
    // Every import the host checks against (module.rs) is in the fixture.
    let info = {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("all.wat");
        std::fs::write(&path, ALL_IMPORTS).unwrap();
        wasmpool::ModuleInfo::from_file(&path, None).unwrap()
    };
    let names: Vec<&str> = info
        .imports
        .iter()
        .filter_map(|i| i.strip_prefix("wasmpool::"))
        .map(|i| i.split(':').next().unwrap())
        .collect();
    let documented = include_str!("../../../docs/abi.md");
    for name in &names {
        let named =
            documented.contains(&format!("`{name}")) || documented.contains(&format!("\"{name}\""));
        assert!(named, "docs/abi.md documents {name}");
    }
    assert_eq!(
        names.len(),
        32,
        "the fixture imports all 32 names: {names:?}"
    );
}

#[test]
fn out_of_bounds_pointers_trap_the_task_not_the_pool() {
    let cases = [
        (
            "input_read past the end",
            "(drop (call $input_read (i32.const 65530) (i32.const 100))) (i32.const 0)",
            "input_read: out-of-bounds range",
        ),
        (
            "input_read negative length",
            "(drop (call $input_read (i32.const 0) (i32.const -1))) (i32.const 0)",
            "input_read: negative length -1",
        ),
        (
            "input_read wrapping pointer",
            "(drop (call $input_read (i32.const -1) (i32.const 2))) (i32.const 0)",
            "input_read: out-of-bounds range",
        ),
        (
            "output_write past the end",
            "(call $output_write (i32.const 65536) (i32.const 1)) (i32.const 0)",
            "output_write: out-of-bounds range",
        ),
        (
            "output_write huge",
            "(call $output_write (i32.const 1) (i32.const 2147483647)) (i32.const 0)",
            "output_write: out-of-bounds range",
        ),
        (
            "trap_message past the end",
            "(call $trap_message (i32.const 65535) (i32.const 2)) (i32.const 0)",
            "trap_message: out-of-bounds range",
        ),
    ];
    for (what, body, expect) in cases {
        let err = run_raw(&abi_module(body), b"12345").unwrap_err();
        assert_eq!(err.kind(), TaskErrorKind::Abi, "{what}: {err}");
        assert!(err.message().contains(expect), "{what}: {err}");
    }
    // The pool keeps serving after an ABI error.
    let wat = abi_module(
        "(if (i32.eq (call $input_len) (i32.const 1)) (then (call $output_write (i32.const 70000) (i32.const 1))))
         (drop (call $input_read (i32.const 0) (call $input_len)))
         (call $output_write (i32.const 0) (call $input_len)) (i32.const 0)",
    );
    let pool = wat_pool(&wat, 1).unwrap();
    let r = pool
        .map::<serde_json::Value, serde_json::Value>(
            "t",
            [
                serde_json::json!(12),
                serde_json::json!(5),
                serde_json::json!(34),
            ],
        )
        .unwrap();
    assert_eq!(r[0].as_ref().unwrap(), &serde_json::json!(12));
    assert_eq!(r[1].as_ref().unwrap_err().kind(), TaskErrorKind::Abi);
    assert_eq!(r[2].as_ref().unwrap(), &serde_json::json!(34));
}

#[test]
fn bad_status_is_an_abi_error() {
    let err = run_raw(&abi_module("(i32.const 7)"), b"1").unwrap_err();
    assert_eq!(err.kind(), TaskErrorKind::Abi);
    assert!(err.message().contains("returned status 7"), "{err}");
}

#[test]
fn status_one_and_two_carry_the_guest_message() {
    let wat = abi_module(
        r#"(call $output_write (i32.const 100) (i32.const 4)) (i32.const 1))
           (data (i32.const 100) "nope""#,
    );
    let err = run_raw(&wat, b"1").unwrap_err();
    assert_eq!((err.kind(), err.message()), (TaskErrorKind::Guest, "nope"));
}

#[test]
fn abi_version_mismatch_is_a_load_error() {
    let wat = r#"(module (memory (export "memory") 1) (func (export "wasmpool_abi_v2"))
                 (func (export "wasmpool_task_t") (result i32) (i32.const 0)))"#;
    let err = wat_pool(wat, 1).unwrap_err().to_string();
    assert_eq!(
        err,
        "fixture.wat: module was built for wasmpool ABI version 2; this host speaks version 1"
    );
}

#[test]
fn missing_version_marker_is_a_load_error() {
    let wat = r#"(module (memory (export "memory") 1)
                 (func (export "wasmpool_task_t") (result i32) (i32.const 0)))"#;
    let err = wat_pool(wat, 1).unwrap_err().to_string();
    assert!(
        err.contains("does not export the version marker wasmpool_abi_v1"),
        "{err}"
    );
}

#[test]
fn unknown_abi_import_is_a_load_error() {
    let wat = r#"(module (import "wasmpool" "teleport" (func (param i32)))
                 (memory (export "memory") 1) (func (export "wasmpool_abi_v1")))"#;
    let err = wat_pool(wat, 1).unwrap_err().to_string();
    assert!(
        err.starts_with("fixture.wat: unknown import wasmpool::teleport"),
        "{err}"
    );
    assert!(
        err.contains("input_read"),
        "lists what the host provides: {err}"
    );
}

#[test]
fn abi_module_without_memory_is_a_load_error() {
    let wat = r#"(module (import "wasmpool" "input_len" (func (result i32))) (func (export "wasmpool_abi_v1")))"#;
    let err = wat_pool(wat, 1).unwrap_err().to_string();
    assert!(err.contains("exports no memory named \"memory\""), "{err}");
}

#[test]
fn unknown_other_import_is_an_instantiation_error() {
    let wat =
        r#"(module (import "env" "secret" (func)) (func (export "f") (result i32) (i32.const 1)))"#;
    let err = wat_pool(wat, 1).unwrap_err().to_string();
    assert!(
        err.starts_with("fixture.wat: cannot instantiate:") && err.contains("env::secret"),
        "{err}"
    );
}

#[test]
fn trap_in_start_function_is_an_instantiation_error() {
    let wat = r#"(module (func $boom unreachable) (start $boom) (func (export "f") (result i32) (i32.const 1)))"#;
    let err = wat_pool(wat, 1).unwrap_err().to_string();
    assert!(
        err.starts_with("fixture.wat: cannot instantiate: trap:"),
        "{err}"
    );
    assert!(err.contains("unreachable"), "{err}");
}

#[test]
fn wrongly_typed_exports_are_not_tasks() {
    let wat = r#"(module (memory (export "memory") 1) (func (export "wasmpool_abi_v1"))
                 (func (export "wasmpool_task_t") (param i32) (result i32) (i32.const 0))
                 (func (export "takes_ref") (param v128))
                 (global (export "g") i32 (i32.const 1)))"#;
    let pool = wat_pool(wat, 1).unwrap();
    let err = pool.task("t").unwrap_err().to_string();
    assert!(err.contains("must be `() -> i32`"), "{err}");
    let err = pool.task("takes_ref").unwrap_err().to_string();
    assert!(err.contains("only i32, i64, f32 and f64"), "{err}");
    let err = pool.task("g").unwrap_err().to_string();
    assert!(
        err.contains("export g is a global, not a function"),
        "{err}"
    );
}

#[test]
fn numeric_exports_need_no_sdk() {
    let wat = r#"(module
        (func (export "hypot") (param f64 f64) (result f64)
            (f64.sqrt (f64.add (f64.mul (local.get 0) (local.get 0)) (f64.mul (local.get 1) (local.get 1)))))
        (func (export "divmod") (param i32 i32) (result i32 i32)
            (i32.div_u (local.get 0) (local.get 1)) (i32.rem_u (local.get 0) (local.get 1)))
        (func (export "nothing")))"#;
    let pool = wat_pool(wat, 2).unwrap();
    assert_eq!(
        pool.map::<(f64, f64), f64>("hypot", [(3.0, 4.0)]).unwrap(),
        [Ok(5.0)]
    );
    assert_eq!(
        pool.map::<(u32, u32), (u32, u32)>("divmod", [(17, 5)])
            .unwrap(),
        [Ok((3, 2))]
    );
    assert_eq!(pool.map::<(), ()>("nothing", [()]).unwrap(), [Ok(())]);
    let err = pool
        .map::<(u32, u32), (u32, u32)>("divmod", [(1, 0)])
        .unwrap();
    let err = err[0].as_ref().unwrap_err();
    assert_eq!(err.kind(), TaskErrorKind::Trap);
    assert!(err.message().contains("integer divide by zero"), "{err}");
}

#[test]
fn not_wasm_is_a_clear_error() {
    for (bytes, expect) in [
        (
            &b""[..],
            "<bytes>: not a WebAssembly module: the file is empty",
        ),
        (&b"\0as"[..], "truncated inside the \\0asm magic number"),
        (
            &b"\x7fELF\x02\x01\x01\0\0\0\0\0\xff\xfe"[..],
            "not a WebAssembly module: it is a native ELF file (a shared library such as a .so, or a program), not WebAssembly; build the crate as a `cdylib`",
        ),
        (&b"hello world"[..], "does not parse as text (WAT)"),
        (&b"\0asm\x01\0\0\0\x01\x05"[..], "<bytes>: invalid module:"),
    ] {
        let err = wasmpool::Pool::builder()
            .module_bytes(bytes)
            .cache(None)
            .build()
            .unwrap_err()
            .to_string();
        assert!(err.contains(expect), "{bytes:?}: {err}");
    }
}
