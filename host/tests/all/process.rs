//! Processes: WASI commands on their own threads, sharing a group's queues
//! and shared region; join with a timeout, exit codes, terminate. Every test
//! runs in both modes (`both_modes!`: the async one sets the group's
//! `concurrency`, and its processes run on a tokio runtime).

use std::time::{Duration, Instant};

use wasmpool::{EXIT_TERMINATED, Stdio, TaskErrorKind};
use wasmpool_tests::{CONSUMER, COUNTER, PRODUCER, SPIN};

use crate::util::{both_modes, group_builder};

/// A group of `module`, in the current mode.
fn group(module: &str) -> wasmpool::ProcessGroupBuilder {
    group_builder()
        .module_file(module)
        .cache(None)
        .stdio(Stdio::Null)
}

both_modes! {
    #[test]
    fn five_processes_count_to_exactly_five() {
        let group = group(COUNTER)
            .shared_memory(1 << 16)
            .copies(5)
            .build()
            .unwrap();
        let procs: Vec<_> = (0..5).map(|i| group.spawn(i).unwrap()).collect();
        for p in procs {
            assert!(p.wait().success());
        }
        assert_eq!(group.shared_region().unwrap().load_i64(0).unwrap(), 5);
    }

    #[test]
    fn producer_process_feeds_the_host_until_close() {
        let group = group(PRODUCER)
            .queue("q", 4)
            .args(["producer", "1000"])
            .build()
            .unwrap();
        let p = group.spawn(0).unwrap();
        let q = group.queue("q").unwrap();
        let mut got = Vec::new();
        while let Ok(bytes) = q.get(Some(Duration::from_secs(10))) {
            got.push(String::from_utf8(bytes).unwrap().parse::<u64>().unwrap());
        }
        assert!(
            q.get(None).unwrap_err().is_closed(),
            "the loop ended on close, not on a timeout"
        );
        assert_eq!(got, (0..1000).collect::<Vec<_>>());
        assert!(p.wait().success());
    }

    #[test]
    fn producer_and_consumer_processes_share_a_queue() {
        let producer = group(PRODUCER)
            .queue("q", 8)
            .args(["producer", "5000"])
            .build()
            .unwrap();
        // The consumer runs in its own group; the host relays between the queues
        // so that both sides are real processes.
        let consumer = group(CONSUMER)
            .queue("q", 8)
            .args(["consumer", "--quiet"])
            .build()
            .unwrap();
        let (p, c) = (producer.spawn(0).unwrap(), consumer.spawn(0).unwrap());
        let (from, to) = (producer.queue("q").unwrap(), consumer.queue("q").unwrap());
        let mut n = 0;
        while let Ok(m) = from.get(Some(Duration::from_secs(10))) {
            to.put(m, None).unwrap();
            n += 1;
        }
        to.close();
        assert_eq!(n, 5000);
        assert!(p.wait().success());
        assert!(c.wait().success());
    }

    #[test]
    fn join_times_out_while_running_and_terminate_stops_an_infinite_loop() {
        let group = group(SPIN).build().unwrap();
        let p = group.spawn(0).unwrap();
        assert!(p.join(Some(Duration::from_millis(100))).is_none());
        assert!(p.is_alive());
        assert_eq!(p.exit_code(), None);
        let start = Instant::now();
        p.terminate();
        let status = p
            .join(Some(Duration::from_secs(10)))
            .expect("terminated promptly");
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "took {:?}",
            start.elapsed()
        );
        assert_eq!(status.code(), EXIT_TERMINATED);
        assert_eq!(status.error().unwrap().kind(), TaskErrorKind::Terminated);
        assert!(!p.is_alive());
        assert_eq!(p.exit_code(), Some(EXIT_TERMINATED));
    }

    #[test]
    fn terminate_interrupts_a_blocked_queue_get() {
        let group = group(CONSUMER).queue("q", 1).build().unwrap();
        let p = group.spawn(0).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        assert!(p.is_alive(), "waiting for a message that never comes");
        p.terminate();
        let status = p
            .join(Some(Duration::from_secs(5)))
            .expect("a blocked get ends on terminate");
        assert_eq!(status.code(), EXIT_TERMINATED);
    }

    #[test]
    fn terminating_one_process_leaves_the_others_running() {
        let group = group(SPIN).copies(2).build().unwrap();
        let (a, b) = (group.spawn(0).unwrap(), group.spawn(1).unwrap());
        a.terminate();
        assert!(a.join(Some(Duration::from_secs(5))).is_some());
        assert!(
            b.join(Some(Duration::from_millis(200))).is_none(),
            "the other copy still runs"
        );
        b.terminate();
        assert!(b.join(Some(Duration::from_secs(5))).is_some());
    }

    #[test]
    fn missing_entry_and_bad_dir_are_clear_errors() {
        let err = group(COUNTER)
            .entry("main2")
            .build()
            .unwrap_err()
            .to_string();
        assert!(err.contains("no export main2 to run"), "{err}");
        let err = group(COUNTER)
            .dir("/nonexistent/dir", "/data", true)
            .build()
            .unwrap_err()
            .to_string();
        assert!(err.contains("/nonexistent/dir: not a directory"), "{err}");
    }
}
