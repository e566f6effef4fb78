//! The task I/O area (docs/abi.md, `task_io`) against hand-written guests,
//! including ones that misuse it: every value the guest controls is
//! checked, a misuse ends that task with an `abi` error and no other, and
//! the calls keep working beside the area.

use wasmpool::{Output, Payload, PoolBuilder, TaskErrorKind};

use crate::util::{both_modes, pool_builder};

/// A guest whose task `t` registers the area at `area` (its bytes at 1024
/// start as `init`, a WAT data string), then runs `body`; the output is
/// what `body` hands over.
fn guest(area: i32, init: &str, body: &str) -> PoolBuilder {
    let wat = format!(
        r#"(module
            (import "wasmpool" "input_len" (func $input_len (result i32)))
            (import "wasmpool" "input_read" (func $input_read (param i32 i32) (result i32)))
            (import "wasmpool" "output_write" (func $output_write (param i32 i32)))
            (import "wasmpool" "task_io" (func $task_io (param i32)))
            (memory (export "memory") 1)
            (data (i32.const 1024) "{init}")
            (data (i32.const 4000) "AR")
            (func (export "wasmpool_abi_v1"))
            (func (export "wasmpool_task_t") (result i32) (local $n i32)
                (call $task_io (i32.const {area}))
                {body}
                (i32.const 0)))"#
    );
    pool_builder().module_bytes(wat).workers(1).cache(None)
}

/// An area at 1024: in_ptr 2048, in_cap 16, in_len and out_len none.
const AREA: &str = r"\00\08\00\00\10\00\00\00\ff\ff\ff\ff\00\00\00\00\ff\ff\ff\ff";

/// Writes "A" if the host wrote the input into the area, "R" if the task
/// read it itself, then hands the input back through the area.
const ECHO: &str = r#"
    (local.set $n (i32.load (i32.const 1032)))
    (if (i32.eq (local.get $n) (i32.const -1))
        (then
            (call $output_write (i32.const 4001) (i32.const 1))
            (local.set $n (call $input_read (i32.const 2048) (call $input_len))))
        (else (call $output_write (i32.const 4000) (i32.const 1))))
    (i32.store (i32.const 1036) (i32.const 2048))
    (i32.store (i32.const 1040) (local.get $n))"#;

/// Runs `t` on each input in turn on the one instance: its raw outputs,
/// or its errors' kind and message.
fn run(builder: PoolBuilder, inputs: &[&[u8]]) -> Vec<Result<String, (TaskErrorKind, String)>> {
    let pool = builder.build().unwrap();
    let task = pool.task("t").unwrap();
    let inputs: Vec<_> = inputs
        .iter()
        .map(|i| Ok(Payload::Bytes(i.to_vec())))
        .collect();
    pool.imap_payloads(&task, inputs)
        .unwrap()
        .map(|r| match r {
            Ok(Output::Bytes(b)) => Ok(String::from_utf8(b).unwrap()),
            Ok(other) => panic!("{other:?}"),
            Err(e) => Err((e.kind(), e.message().to_string())),
        })
        .collect()
}

fn abi_error(message: &str) -> Result<String, (TaskErrorKind, String)> {
    Err((TaskErrorKind::Abi, message.to_string()))
}

both_modes! {
    #[test]
    fn inputs_come_in_and_outputs_go_out_through_the_area_and_big_inputs_fall_back() {
        let out = run(
            guest(1024, AREA, ECHO),
            &[b"abc", b"", b"0123456789abcdefXYZ", b"xy", b"0123456789abcdef"],
        );
        assert_eq!(
            out,
            [
                // Registered during the first task: it reads its input.
                Ok("Rabc".into()),
                Ok("A".into()),
                // 19 bytes do not fit in_cap 16: not written, read instead.
                Ok("R0123456789abcdefXYZ".into()),
                Ok("Axy".into()),
                Ok("A0123456789abcdef".into()),
            ]
        );
    }

    #[test]
    fn misuses_of_the_area_end_that_task_alone_with_an_abi_error() {
        let misaligned = run(guest(1026, AREA, ECHO), &[b"a"]);
        assert_eq!(
            misaligned,
            [abi_error("task_io: the area at 1026 is not 4-aligned or not 20 bytes inside memory")]
        );
        let past_memory = run(guest(65520, AREA, ECHO), &[b"a"]);
        assert_eq!(
            past_memory,
            [abi_error("task_io: the area at 65520 is not 4-aligned or not 20 bytes inside memory")]
        );
        // An input range outside memory is not written to: the task reads
        // its input itself.
        let outside = r"\f8\ff\00\00\10\00\00\00\ff\ff\ff\ff\00\00\00\00\ff\ff\ff\ff";
        let body = ECHO.replace("(i32.const 2048)", "(i32.const 3000)");
        assert_eq!(
            run(guest(1024, outside, &body), &[b"one", b"two"]),
            [Ok("Rone".into()), Ok("Rtwo".into())]
        );
        // An output range outside memory, then one past the output limit;
        // the task after each runs on a new instance.
        let bad_out = r#"(i32.store (i32.const 1036) (i32.const 65530))
                          (i32.store (i32.const 1040) (i32.const 100))"#;
        let out = run(
            guest(
                1024,
                AREA,
                &format!(
                    r#"(if (i32.eq (call $input_len) (i32.const 3))
                        (then {bad_out} (return (i32.const 0))))
                    {ECHO}"#
                ),
            )
            .max_output(8),
            &[b"bad", b"ok", b"012345678", b"fine"],
        );
        assert_eq!(
            out,
            [
                abi_error("task_io: the output at 65530 of 100 bytes is out of bounds of the guest's memory"),
                Ok("Rok".into()),
                // "A" through output_write, then 9 bytes: past 8.
                abi_error("task_io: the task's output would exceed the limit of 8 bytes"),
                Ok("Rfine".into()),
            ]
        );
    }

    #[test]
    fn an_area_forgotten_with_minus_one_is_neither_written_nor_read() {
        // Registers, then forgets: the host writes no input and ignores
        // out_len; the output is what output_write wrote.
        let body = format!("(call $task_io (i32.const -1)) {ECHO}");
        assert_eq!(
            run(guest(1024, AREA, &body), &[b"abc", b"de"]),
            [Ok("R".into()), Ok("R".into())]
        );
    }
}

/// The Rust SDK's use of the area, beside what a task may do itself.
mod sdk {
    use wasmpool::{Output, Payload};
    use wasmpool_tests::TESTGUEST;

    use crate::util::{both_modes, pool_builder};

    /// Each input's raw output, on one instance, in order.
    fn raw(task: &str, inputs: &[&str]) -> Vec<String> {
        let pool = pool_builder()
            .module_file(TESTGUEST)
            .workers(1)
            .build()
            .unwrap();
        let task = pool.task(task).unwrap();
        let inputs: Vec<_> = inputs
            .iter()
            .map(|i| Ok(Payload::Bytes(i.as_bytes().to_vec())))
            .collect();
        pool.imap_payloads(&task, inputs)
            .unwrap()
            .map(|r| match r.unwrap() {
                Output::Bytes(b) => String::from_utf8(b).unwrap(),
                other => panic!("{other:?}"),
            })
            .collect()
    }

    both_modes! {
        #[test]
        fn sdk_input_still_reads_the_whole_input() {
            // The first task reads its input through the calls, the next
            // ones find it in the area; `input()` sees it either way, big
            // ones (past the area's room) too.
            let big = format!("\"{}\"", "z".repeat(100_000));
            let inputs = ["1", "[1,2,3]", big.as_str(), "{}"];
            let expected: Vec<String> = inputs.iter().map(|i| i.len().to_string()).collect();
            assert_eq!(raw("input_len_seen", &inputs), expected);
        }

        #[test]
        fn sdk_output_written_by_the_task_comes_before_its_returned_value() {
            assert_eq!(raw("written_then_returned", &["5", "6"]), ["[1,5", "[1,6"]);
        }

        #[test]
        fn sdk_nested_task_output_comes_first_and_whole() {
            assert_eq!(raw("nested", &["5", "21", "5"]), ["105", "4221", "105"]);
        }
    }
}
