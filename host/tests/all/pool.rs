//! The library: ordered results, streams, failures at their own index.
//! Every test runs in both modes (synchronous and async, `both_modes!`).

use std::collections::BTreeSet;

use wasmpool::{TaskErrorKind, TryNext};
use wasmpool_kernels::{MANDELBROT_TOTAL, PRIMES_64_TOTAL, PRIMES_640_TOTAL};
use wasmpool_tests::{MANDELBROT, PRIMES, SQUARE, TESTGUEST};

use crate::util::{both_modes, builder, pool};

both_modes! {
    #[test]
    fn primes_64_tasks_sum_to_checksum() {
        let pool = pool(PRIMES, 2);
        let counts: Vec<u64> = pool
            .map("primes", 0..64u64)
            .unwrap()
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(counts[0], 2262);
        assert_eq!(counts.iter().sum::<u64>(), PRIMES_64_TOTAL);
        // The numeric export gives the same numbers.
        let numeric: Vec<u64> = pool
            .map("primes_i64", 0..64u64)
            .unwrap()
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(numeric, counts);
    }

    #[test]
    fn primes_640_and_mandelbrot_match_their_checksums() {
        let primes = pool(PRIMES, 2);
        let total: u64 = primes
            .imap::<u64, u64>("primes", 0..640)
            .unwrap()
            .map(Result::unwrap)
            .sum();
        assert_eq!(total, PRIMES_640_TOTAL);
        let mandel = pool(MANDELBROT, 2);
        let total: u64 = mandel
            .imap::<u64, u64>("row", 0..512)
            .unwrap()
            .map(Result::unwrap)
            .sum();
        assert_eq!(total, MANDELBROT_TOTAL);
    }

    #[test]
    fn results_come_in_input_order_with_many_more_tasks_than_workers() {
        let pool = pool(SQUARE, 3);
        for task in ["square", "square_i64"] {
            let results: Vec<i64> = pool
                .imap::<i64, i64>(task, 0..100_000)
                .unwrap()
                .map(Result::unwrap)
                .collect();
            assert_eq!(results.len(), 100_000);
            for (i, r) in results.iter().enumerate() {
                assert_eq!(*r, (i * i) as i64, "{task} result {i}");
            }
        }
    }

    #[test]
    fn unordered_stream_yields_each_index_once() {
        let pool = pool(SQUARE, 2);
        let mut seen = vec![false; 20_000];
        for (index, r) in pool
            .imap_unordered::<i64, i64>("square", 0..20_000)
            .unwrap()
        {
            assert!(!seen[index], "index {index} twice");
            seen[index] = true;
            assert_eq!(r.unwrap(), (index * index) as i64);
        }
        assert!(seen.iter().all(|&s| s));
    }

    #[test]
    fn worker_count_is_honoured() {
        for workers in [1, 3] {
            let pool = pool(TESTGUEST, workers);
            assert_eq!(pool.workers(), workers);
            let who: Vec<(u32, u32)> = pool
                .map("whoami", vec![5u64; 8 * workers])
                .unwrap()
                .into_iter()
                .map(Result::unwrap)
                .collect();
            let indexes: BTreeSet<u32> = who.iter().map(|&(i, _)| i).collect();
            assert!(who.iter().all(|&(_, n)| n as usize == workers), "{who:?}");
            assert_eq!(
                indexes,
                (0..workers as u32).collect(),
                "every worker ran tasks, and no other"
            );
            let stats = pool.worker_stats();
            assert_eq!(stats.len(), workers);
            assert_eq!(
                stats.iter().map(|s| s.tasks).sum::<u64>(),
                8 * workers as u64
            );
        }
    }

    #[test]
    fn failure_stays_at_its_index() {
        let pool = pool(TESTGUEST, 2);
        let results = pool.map::<u64, u64>("fail_on_tens", 1..=25).unwrap();
        for (i, r) in results.iter().enumerate() {
            let x = i as u64 + 1;
            if x.is_multiple_of(10) {
                let err = r.as_ref().unwrap_err();
                assert_eq!(err.kind(), TaskErrorKind::Guest);
                assert_eq!(err.message(), format!("{x} is a multiple of ten"));
            } else {
                assert_eq!(r.as_ref().unwrap(), &(x * 2));
            }
        }
    }

    #[test]
    fn panic_is_a_trap_with_its_message_and_the_instance_is_replaced() {
        let pool = pool(TESTGUEST, 1);
        let results = pool.map::<u64, u64>("panic_on_13", 10..17).unwrap();
        let err = results[3].as_ref().unwrap_err();
        assert_eq!(err.kind(), TaskErrorKind::Trap);
        assert!(err.message().contains("unlucky 13"), "{err}");
        assert!(
            err.backtrace().is_some_and(|bt| bt.contains("panic_on_13")),
            "{:?}",
            err.backtrace()
        );
        let ok: Vec<u64> = results
            .iter()
            .filter_map(|r| r.as_ref().ok().copied())
            .collect();
        assert_eq!(ok, [10, 11, 12, 14, 15, 16]);
        // One instance, and one in its place after the trap; in the async
        // mode, up to one per task in flight besides.
        let instances = pool.worker_stats()[0].instances;
        let per_worker = u64::from(crate::util::mode().unwrap_or(1));
        assert!(
            (2..=per_worker + 1).contains(&instances),
            "the trapped instance was replaced once: {instances} instances"
        );
    }

    #[test]
    fn instance_state_persists_until_a_trap() {
        let pool = pool(TESTGUEST, 1);
        // One task at a time, so that the async mode too has one instance.
        let calls: Vec<u64> = (0..3)
            .map(|_| pool.map("calls", [()]).unwrap().pop().unwrap().unwrap())
            .collect();
        assert_eq!(
            calls,
            [1, 2, 3],
            "one instance per worker, reused across tasks"
        );
        assert!(pool.map::<u64, u64>("panic_on_13", [13]).unwrap()[0].is_err());
        let calls: Vec<u64> = pool
            .map("calls", [()])
            .unwrap()
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(calls, [1], "a fresh instance after the trap");
    }

    #[test]
    fn several_parameters_take_an_array() {
        let pool = pool(TESTGUEST, 2);
        let sums = pool
            .map::<(i64, i64), i64>("add", [(1, 2), (40, 2)])
            .unwrap();
        assert_eq!(sums, [Ok(3), Ok(42)]);
    }

    #[test]
    fn serde_structs_cross_the_boundary() {
        #[derive(serde::Serialize)]
        struct Point {
            x: f64,
            y: f64,
        }
        let pool = pool(TESTGUEST, 2);
        let norms = pool
            .map::<Point, f64>("norm", [Point { x: 3.0, y: 4.0 }])
            .unwrap();
        assert_eq!(norms, [Ok(5.0)]);
        let wrong = pool.map::<&str, f64>("norm", ["not a point"]).unwrap();
        let err = wrong[0].as_ref().unwrap_err();
        assert_eq!(err.kind(), TaskErrorKind::Input);
        assert!(err.message().contains("input does not match"), "{err}");
    }

    #[test]
    fn output_of_the_wrong_type_is_an_output_error() {
        let pool = pool(TESTGUEST, 1);
        let r = pool.map::<usize, u64>("big", [3]).unwrap();
        let err = r[0].as_ref().unwrap_err();
        assert_eq!(err.kind(), TaskErrorKind::Output);
        assert!(err.message().contains("does not decode as u64"), "{err}");
    }

    #[test]
    fn proc_exit_is_reported_with_its_code() {
        let pool = pool(TESTGUEST, 1);
        let r = pool.map::<i32, u32>("exit_with", [3]).unwrap();
        let err = r[0].as_ref().unwrap_err();
        assert_eq!(err.kind(), TaskErrorKind::Exit);
        assert_eq!(err.exit_code(), Some(3));
    }

    #[test]
    fn output_limit_is_enforced() {
        let pool = builder(TESTGUEST, 1).max_output(1000).build().unwrap();
        let r = pool.map::<usize, String>("big", [10, 5000, 20]).unwrap();
        assert_eq!(r[0].as_deref(), Ok("xxxxxxxxxx"));
        let err = r[1].as_ref().unwrap_err();
        assert_eq!(err.kind(), TaskErrorKind::Abi);
        assert!(
            err.message().contains("exceed the limit of 1000 bytes"),
            "{err}"
        );
        assert_eq!(r[2].as_ref().map(String::len), Ok(20));
    }

    #[test]
    fn numeric_inputs_that_do_not_fit_fail_alone() {
        let pool = pool(SQUARE, 2);
        let inputs = vec![
            serde_json::json!(2),
            serde_json::json!("two"),
            serde_json::json!([1, 2]),
            serde_json::json!(1.5),
        ];
        let r = pool.map::<_, i64>("square_i64", inputs).unwrap();
        assert_eq!(r[0], Ok(4));
        for (i, expect) in [
            (1, "expected a number or an array of numbers"),
            (2, "takes 1 parameter"),
            (3, "takes an integer, and 1.5 is not one"),
        ] {
            let err = r[i].as_ref().unwrap_err();
            assert_eq!(err.kind(), TaskErrorKind::Input);
            assert!(err.message().contains(expect), "{i}: {err}");
        }
    }

    #[test]
    fn numeric_streams_keep_every_result_at_its_place_across_batches() {
        // A one-parameter numeric task's typed inputs go straight into a
        // batch's bits and its results come back decoded a run at a time
        // (dispatch.rs `Numbers`, `Decode`): inputs kept whole (an array),
        // inputs that fail to encode, and tasks that trap sit between
        // packed ones, in batches of every size, and each result must
        // still come out at its own index, ordered or not.
        let pool = crate::util::wat_pool(
            r#"(module (func (export "half") (param i64) (result i64)
                   (if (i64.eq (i64.rem_u (local.get 0) (i64.const 1000)) (i64.const 999))
                       (then unreachable))
                   (i64.div_u (local.get 0) (i64.const 2))))"#,
            2,
        )
        .unwrap();
        let n = 20_000u64;
        let input = |i: u64| match i % 97 {
            13 => serde_json::json!([i]),
            41 => serde_json::json!("x"),
            _ => serde_json::json!(i),
        };
        let check = |i: u64, r: &Result<u64, wasmpool::TaskError>| match (i % 97, i % 1000) {
            (41, _) => assert_eq!(r.as_ref().unwrap_err().kind(), TaskErrorKind::Input, "{i}"),
            (_, 999) => assert_eq!(r.as_ref().unwrap_err().kind(), TaskErrorKind::Trap, "{i}"),
            _ => assert_eq!(r, &Ok(i / 2), "{i}"),
        };
        let ordered: Vec<_> = pool.imap::<_, u64>("half", (0..n).map(input)).unwrap().collect();
        assert_eq!(ordered.len(), n as usize);
        for (i, r) in ordered.iter().enumerate() {
            check(i as u64, r);
        }
        let mut seen = BTreeSet::new();
        for (i, r) in pool.imap_unordered::<_, u64>("half", (0..n).map(input)).unwrap() {
            check(i as u64, &r);
            assert!(seen.insert(i), "{i} twice");
        }
        assert_eq!(seen.len(), n as usize);
        // A stream dropped halfway leaves the pool as it was.
        let mut stream = pool.imap::<u64, u64>("half", 0..n).unwrap();
        assert_eq!(stream.nth(1234), Some(Ok(617)));
        drop(stream);
        assert_eq!(pool.map::<u64, u64>("half", [10]).unwrap(), [Ok(5)]);
    }

    #[test]
    fn sdk_streams_keep_every_result_at_its_place_across_batches_of_texts() {
        // A typed stream of an SDK task sends its inputs as JSON texts back
        // to back and gets its outputs back the same way (packed.rs
        // `Texts`): inputs that fail to encode, tasks that fail by their
        // own judgement, tasks that trap, and outputs that do not decode as
        // the type asked sit between the texts, in batches of every size,
        // and each result must still come out at its own index, ordered or
        // not, and under a byte budget small enough to cut batches short.
        struct In(u64);
        impl serde::Serialize for In {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                if self.0 % 97 == 41 {
                    return Err(serde::ser::Error::custom("41 mod 97 does not encode"));
                }
                s.serialize_u64(self.0)
            }
        }
        let n = 20_000u64;
        let check = |i: u64, r: &Result<u16, wasmpool::TaskError>| {
            let kind = r.as_ref().err().map(|e| e.kind());
            if i % 97 == 41 {
                assert_eq!(kind, Some(TaskErrorKind::Input), "{i}");
            } else if i.is_multiple_of(10) {
                assert_eq!(kind, Some(TaskErrorKind::Guest), "{i}");
            } else if i * 2 > u64::from(u16::MAX) {
                assert_eq!(kind, Some(TaskErrorKind::Output), "{i}");
            } else {
                assert_eq!(r, &Ok(i as u16 * 2), "{i}");
            }
        };
        for budget in [None, Some(4096)] {
            let mut b = builder(TESTGUEST, 2);
            if let Some(budget) = budget {
                b = b.output_budget(budget);
            }
            let pool = b.build().unwrap();
            let ordered: Vec<_> = pool
                .imap::<_, u16>("fail_on_tens", (0..n).map(In))
                .unwrap()
                .collect();
            assert_eq!(ordered.len(), n as usize);
            for (i, r) in ordered.iter().enumerate() {
                check(i as u64, r);
            }
            let mut seen = BTreeSet::new();
            for (i, r) in pool
                .imap_unordered::<_, u16>("fail_on_tens", (0..n).map(In))
                .unwrap()
            {
                check(i as u64, &r);
                assert!(seen.insert(i), "{i} twice");
            }
            assert_eq!(seen.len(), n as usize);
        }
        // A trap between texts, and the stream goes on with a new instance.
        let pool = pool(TESTGUEST, 2);
        let r = pool.map::<u64, u64>("panic_on_13", 0..3000).unwrap();
        for (i, r) in r.iter().enumerate() {
            match i {
                13 => assert_eq!(r.as_ref().unwrap_err().kind(), TaskErrorKind::Trap),
                _ => assert_eq!(r, &Ok(i as u64), "{i}"),
            }
        }
        // A stream dropped halfway leaves the pool as it was.
        let mut stream = pool.imap::<u64, u64>("double", 0..n).unwrap();
        assert_eq!(stream.nth(1234), Some(Ok(2468)));
        drop(stream);
        assert_eq!(pool.map::<u64, u64>("double", [10]).unwrap(), [Ok(20)]);
    }

    #[test]
    fn numeric_streams_of_every_value_type_decode_each_result_as_asked() {
        // One loop per parameter and result type on the caller's side
        // (dispatch.rs `Numbers`, `Task::decode_packed_run`): each type
        // must come through, and a result that does not decode as the type
        // asked fails alone, at its index.
        let pool = crate::util::wat_pool(
            r#"(module
                 (func (export "neg_i32") (param i32) (result i32) (i32.sub (i32.const 0) (local.get 0)))
                 (func (export "half_f32") (param f32) (result f32) (f32.mul (local.get 0) (f32.const 0.5)))
                 (func (export "half_f64") (param f64) (result f64) (f64.mul (local.get 0) (f64.const 0.5))))"#,
            2,
        )
        .unwrap();
        let n = 5_000;
        let r = pool.map::<i32, i32>("neg_i32", 0..n).unwrap();
        assert!(r.iter().enumerate().all(|(i, r)| *r == Ok(-(i as i32))));
        // -0 decodes as a u32; every other result is negative and does not.
        let r = pool.map::<i32, u32>("neg_i32", 0..n).unwrap();
        assert_eq!(r[0], Ok(0));
        for r in &r[1..] {
            let err = r.as_ref().unwrap_err();
            assert_eq!(err.kind(), TaskErrorKind::Output);
            assert!(err.message().contains("u32"), "{err}");
        }
        let r = pool.map::<f32, f32>("half_f32", (0..n).map(|i| i as f32)).unwrap();
        assert!(r.iter().enumerate().all(|(i, r)| *r == Ok(i as f32 / 2.0)));
        let r = pool.map::<f64, f64>("half_f64", (0..n).map(f64::from)).unwrap();
        assert!(r.iter().enumerate().all(|(i, r)| *r == Ok(i as f64 / 2.0)));
        // An integer input for a float parameter, as before.
        assert_eq!(pool.map::<u64, f64>("half_f64", [3]).unwrap(), [Ok(1.5)]);
    }

    #[test]
    fn missing_task_is_a_clear_error() {
        let pool = pool(SQUARE, 1);
        let err = pool.map::<i64, i64>("cube", [1]).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains(SQUARE) && text.contains(r#"no task named "cube""#),
            "{text}"
        );
        assert!(
            text.contains("square_i64") && text.contains("square"),
            "lists the tasks it has: {text}"
        );
    }

    #[test]
    fn ordered_stream_memory_is_bounded_by_the_window() {
        // An endless input: the stream must only read as far as the window.
        let pool = builder(SQUARE, 2).window(64).build().unwrap();
        let pulled = std::cell::Cell::new(0u64);
        let inputs = (0i64..).inspect(|_| pulled.set(pulled.get() + 1));
        let mut stream = pool.imap::<i64, i64>("square", inputs).unwrap();
        for i in 0..10_000i64 {
            assert_eq!(stream.next().unwrap().unwrap(), i * i);
            assert!(
                pulled.get() <= i as u64 + 1 + 64,
                "read {} inputs ahead at {i}",
                pulled.get()
            );
        }
    }

    #[test]
    fn try_next_never_blocks_and_ends() {
        let pool = pool(SQUARE, 2);
        let mut stream = pool.imap::<i64, i64>("square", 0..100).unwrap();
        let mut got = Vec::new();
        loop {
            match stream.try_next() {
                TryNext::Ready(r) => got.push(r.unwrap()),
                TryNext::Pending => std::thread::yield_now(),
                TryNext::Done => break,
            }
        }
        assert_eq!(got, (0..100).map(|i| i * i).collect::<Vec<_>>());
    }

    #[test]
    fn dropping_a_stream_early_leaves_the_pool_usable() {
        let pool = pool(PRIMES, 2);
        {
            let mut stream = pool.imap::<u64, u64>("primes", 0..640).unwrap();
            assert_eq!(stream.next().unwrap().unwrap(), 2262);
        }
        let r = pool.map::<u64, u64>("primes", [0]).unwrap();
        assert_eq!(r, [Ok(2262)]);
    }

    #[test]
    fn empty_input_gives_empty_results() {
        let pool = pool(SQUARE, 2);
        assert!(pool.map::<i64, i64>("square", []).unwrap().is_empty());
    }

    #[test]
    fn zero_workers_is_a_config_error() {
        let err = builder(SQUARE, 0).build().unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid configuration: the number of workers must be at least 1"
        );
    }

    /// The SDK reads an input in one call when it fits the instance's
    /// kept buffer and in two when it may not, and keeps its buffers from
    /// task to task: every length around the buffer's edges (256 bytes to
    /// start, 64 KiB kept), in an order that grows and shrinks them, comes
    /// back whole.
    #[test]
    fn sdk_inputs_and_outputs_of_every_size_round_trip_through_kept_buffers() {
        let pool = pool(TESTGUEST, 1);
        let lens = [
            0usize, 1, 252, 253, 254, 255, 256, 257, 300, 1000, 65534, 65535, 65536, 65537,
            1 << 20, 3, 254, 255, 256, 70000, 10, 100_000, 0,
        ];
        let inputs: Vec<String> = lens
            .iter()
            .enumerate()
            .map(|(i, &n)| (0..n).map(|j| char::from(b'a' + ((i + j) % 26) as u8)).collect())
            .collect();
        let out: Vec<String> = pool
            .map("shout", inputs.clone())
            .unwrap()
            .into_iter()
            .map(Result::unwrap)
            .collect();
        for (i, (got, sent)) in out.iter().zip(&inputs).enumerate() {
            // The JSON text of a string of n letters is n + 2 bytes.
            let want = format!("{} ({})", sent.to_uppercase(), sent.len());
            assert!(got == &want, "input {i} of {} letters came back wrong", lens[i]);
        }
    }
}

both_modes! {
    #[test]
    fn a_feed_yields_each_pushed_input_once_with_failures_at_their_index() {
        let pool = builder(TESTGUEST, 2).window(64).build().unwrap();
        let task = pool.task("fail_on_tens").unwrap();
        let mut feed = pool.feed(&task).unwrap();
        let mut seen = std::collections::BTreeMap::new();
        let mut take = |feed: &mut wasmpool::Feed<'_>, wait: bool| {
            let next = if wait {
                feed.next_timeout(std::time::Duration::from_secs(10))
            } else {
                feed.try_next()
            };
            let Some((index, result)) = next else { return false };
            let line = match result {
                Ok(output) => {
                    let mut json = Vec::new();
                    task.write_json(&output, &mut json).unwrap();
                    String::from_utf8(json).unwrap()
                }
                Err(e) => format!("{:?}", e.kind()),
            };
            assert!(seen.insert(index, line).is_none(), "index {index} twice");
            true
        };
        let mut pushed = 0u64;
        while pushed < 1000 {
            // Within the window: memory stays bounded.
            while feed.room() > 0 && pushed < 1000 {
                let input = if pushed == 500 {
                    Err(wasmpool::TaskError::new(TaskErrorKind::Input, "not a number"))
                } else {
                    task.parse_json(pushed.to_string().as_bytes())
                };
                assert_eq!(feed.push(input), pushed);
                pushed += 1;
            }
            assert!(take(&mut feed, true));
            while take(&mut feed, false) {}
        }
        while feed.pending() > 0 {
            assert!(take(&mut feed, true), "{} results never came", feed.pending());
        }
        assert!(feed.try_next().is_none());
        assert!(feed.next_timeout(std::time::Duration::from_secs(5)).is_none());
        assert_eq!(seen.len(), 1000);
        for (i, line) in seen {
            let expected = match i {
                500 => "Input".to_string(),
                i if i % 10 == 0 => "Guest".to_string(),
                i => (2 * i).to_string(),
            };
            assert_eq!(line, expected, "index {i}");
        }
        // More inputs after a pause: a feed does not end when it is empty.
        assert_eq!(feed.push(task.parse_json(b"7")), 1000);
        let (index, result) = feed.next_timeout(std::time::Duration::from_secs(10)).unwrap();
        assert_eq!(index, 1000);
        assert!(result.is_ok());
    }

    #[test]
    fn a_cancelled_feed_ends_what_it_holds_as_terminated() {
        let pool = pool(TESTGUEST, 1);
        let task = pool.task("sleep_ms").unwrap();
        let mut feed = pool.feed(&task).unwrap();
        for _ in 0..3 {
            feed.push(task.parse_json(b"300"));
        }
        // Nothing is finished yet: a short wait gives nothing.
        assert!(feed.next_timeout(std::time::Duration::from_millis(50)).is_none());
        feed.cancel();
        feed.push(task.parse_json(b"300"));
        let mut kinds = Vec::new();
        while let Some((index, result)) = feed.next_timeout(std::time::Duration::from_secs(10)) {
            kinds.push((index, result.map(|_| ()).map_err(|e| e.kind())));
        }
        kinds.sort_by_key(|(i, _)| *i);
        assert_eq!(kinds.len(), 4, "{kinds:?}");
        assert!(
            kinds.iter().all(|(_, r)| *r == Err(TaskErrorKind::Terminated)),
            "{kinds:?}"
        );
        assert_eq!(feed.pending(), 0);
    }
}
