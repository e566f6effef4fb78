//! The WASI context a pool's guest gets on its first WASI call (made
//! lazily, inside a task, in a fresh or a reused instance): exactly the
//! sealed one, whatever the mode, the isolation, and the host process's
//! own environment, arguments, stdin and working directory.

use std::time::Duration;

use wasmpool::{Isolation, Output, Payload, Pool};

use crate::util::{both_modes, pool_builder, wasmpool_watched};

/// `probe` outputs seven i32 LE: the environment's variable count and
/// bytes, the arguments' count and bytes, `fd_prestat_get(3)`'s errno
/// (8, EBADF: no preopened directory), the bytes `fd_read(0)` read from
/// stdin, and the bytes `fd_write(1)` wrote of the line "probe-stdout\n".
const PROBE: &str = r#"(module
    (import "wasi_snapshot_preview1" "environ_sizes_get" (func $env (param i32 i32) (result i32)))
    (import "wasi_snapshot_preview1" "args_sizes_get" (func $args (param i32 i32) (result i32)))
    (import "wasi_snapshot_preview1" "fd_prestat_get" (func $prestat (param i32 i32) (result i32)))
    (import "wasi_snapshot_preview1" "fd_read" (func $read (param i32 i32 i32 i32) (result i32)))
    (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
    (import "wasmpool" "output_write" (func $output_write (param i32 i32)))
    (memory (export "memory") 1)
    (data (i32.const 1024) "probe-stdout\n")
    (data (i32.const 1040) "truefalse")
    (func (export "wasmpool_abi_v1"))
    (func $probe
        (drop (call $env (i32.const 0) (i32.const 4)))
        (drop (call $args (i32.const 8) (i32.const 12)))
        (i32.store (i32.const 16) (call $prestat (i32.const 3) (i32.const 200)))
        ;; iovec at 300: 64 bytes at 2048
        (i32.store (i32.const 300) (i32.const 2048))
        (i32.store (i32.const 304) (i32.const 64))
        (i32.store (i32.const 20) (i32.const -1))
        (drop (call $read (i32.const 0) (i32.const 300) (i32.const 1) (i32.const 20)))
        ;; iovec at 312: the line at 1024
        (i32.store (i32.const 312) (i32.const 1024))
        (i32.store (i32.const 316) (i32.const 13))
        (drop (call $write (i32.const 1) (i32.const 312) (i32.const 1) (i32.const 24))))
    (func (export "wasmpool_task_probe") (result i32)
        (call $probe)
        (call $output_write (i32.const 0) (i32.const 28))
        (i32.const 0))
    ;; `sealed`: the JSON `true` when the probe saw SEALED, else `false`.
    (func (export "wasmpool_task_sealed") (result i32)
        (call $probe)
        (if (i32.and
                (i32.and
                    (i32.and (i32.eqz (i32.load (i32.const 0))) (i32.eqz (i32.load (i32.const 4))))
                    (i32.and (i32.eqz (i32.load (i32.const 8))) (i32.eqz (i32.load (i32.const 12)))))
                (i32.and
                    (i32.and (i32.eq (i32.load (i32.const 16)) (i32.const 8))
                        (i32.eqz (i32.load (i32.const 20))))
                    (i32.eq (i32.load (i32.const 24)) (i32.const 13))))
            (then (call $output_write (i32.const 1040) (i32.const 4)))
            (else (call $output_write (i32.const 1044) (i32.const 5))))
        (i32.const 0)))"#;

/// What every probe must see: nothing of the host, stdin empty, stdout
/// writable.
const SEALED: [i32; 7] = [0, 0, 0, 0, 8, 0, 13];

fn probe_pool(isolation: Isolation, workers: usize) -> Pool {
    pool_builder()
        .module_bytes(PROBE)
        .name("probe.wat")
        .workers(workers)
        .isolation(isolation)
        .cache(None)
        .build()
        .unwrap()
}

fn probe(pool: &Pool, n: usize) -> Vec<[i32; 7]> {
    let task = pool.task("probe").unwrap();
    let inputs = (0..n).map(|_| Ok(Payload::Bytes(Vec::new())));
    pool.imap_payloads(&task, inputs)
        .unwrap()
        .map(|r| match r.unwrap() {
            Output::Bytes(b) => {
                let words: Vec<i32> = b
                    .chunks(4)
                    .map(|w| i32::from_le_bytes(w.try_into().unwrap()))
                    .collect();
                words.try_into().unwrap()
            }
            other => panic!("{other:?}"),
        })
        .collect()
}

both_modes! {
    #[test]
    fn a_lazily_made_wasi_context_is_sealed_in_reused_and_fresh_instances() {
        // The test process has an environment, arguments and a working
        // directory: none of it may show.
        assert!(std::env::vars().count() > 0);
        for isolation in [Isolation::Worker, Isolation::Task] {
            let pool = probe_pool(isolation, 2);
            let seen = probe(&pool, 12);
            assert_eq!(seen.len(), 12);
            for s in seen {
                assert_eq!(s, SEALED, "{isolation:?}");
            }
        }
    }
}

#[test]
fn map_guests_see_nothing_of_the_host_and_their_stdout_stays_off_the_results() {
    // stdin holding bytes, the CLI's own arguments and environment: with
    // and without --isolation task, and in the async mode.
    let dir = tempfile::tempdir().unwrap();
    let module = dir.path().join("probe.wat");
    std::fs::write(&module, PROBE).unwrap();
    let input = dir.path().join("in.jsonl");
    std::fs::write(&input, "null\n".repeat(6)).unwrap();
    for extra in [&[][..], &["--isolation", "task"], &["--concurrency", "3"]] {
        let mut args = vec![
            "map",
            module.to_str().unwrap(),
            "--task",
            "sealed",
            "--input",
            input.to_str().unwrap(),
            "-j",
            "2",
            "-q",
        ];
        args.extend_from_slice(extra);
        let run = wasmpool_watched(
            dir.path(),
            &args,
            "stdin bytes no guest may read\n",
            Duration::from_secs(60),
            true,
        );
        assert!(run.status.success(), "{extra:?}: {}", run.stderr);
        let stdout = String::from_utf8(run.stdout).unwrap();
        let expected: String = (0..6)
            .map(|i| format!("{{\"index\":{i},\"ok\":true}}\n"))
            .collect();
        assert_eq!(stdout, expected, "{extra:?}");
        assert_eq!(
            run.stderr.matches("probe-stdout\n").count(),
            6,
            "{extra:?}: each guest's line on stderr, whole: {}",
            run.stderr
        );
    }
}
