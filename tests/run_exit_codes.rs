//! `kswarm run`'s exit codes, which init systems act on (systemd's
//! `RestartPreventExitStatus=2`): 0 clean stop, 1 runtime failure, 2 usage or
//! configuration error; each with a message that names the flag or value.
mod support;

use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use support::{create_topic, wait_members, Run};

/// `run` to its end: (exit code, the final error message).
fn run_to_end(run: Run, within: Duration) -> (Option<i32>, String) {
    let mut p = run.spawn();
    let st = p.wait(within);
    let last = support::last_error(&p.stderr_text()).to_string();
    (st.code(), last)
}

#[test]
fn configuration_errors_exit_2_naming_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    for (flags, names) in [
        (&["--format", "xml"][..], "--format"),
        (&["-X", "fetch.max.bytes=lots"][..], "-X fetch.max.bytes"),
        (&["--exec", " "][..], "--exec"),
        (&["--max-restarts", "ten"][..], "--max-restarts"),
        (
            &["--broker-outage-limit", "soon"][..],
            "--broker-outage-limit",
        ),
        (&["--max-in-flight-time", "0s"][..], "--max-in-flight-time"),
    ] {
        let t0 = Instant::now();
        let out = Run::new("any-topic", "any-group")
            .bare()
            .args(flags)
            .state(dir.path())
            .output();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flags:?}: {err}");
        assert!(err.contains(names), "{flags:?} names {names}: {err}");
        assert!(t0.elapsed() < Duration::from_secs(5), "{flags:?}: at once");
    }
}

#[test]
fn an_unreachable_broker_exits_1_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let t0 = Instant::now();
    let (code, last) = run_to_end(
        Run::new("t", "g")
            .brokers(&addr)
            .bare()
            .args(["--connect-timeout", "2s"]),
        Duration::from_secs(30),
    );
    let _ = dir;
    assert_eq!(code, Some(1), "{last}");
    assert!(
        last.contains(&addr) && last.contains("--connect-timeout"),
        "{last}"
    );
    assert!(t0.elapsed() < Duration::from_secs(15));
}

/// Kafka grows a topic that has fewer partitions than workers; tansu cannot
/// (no CreatePartitions): kswarm exits 1 naming the way out.
#[test]
fn a_topic_that_cannot_be_grown_exits_1_and_one_that_can_is_grown() {
    let b = support::brokers();
    let dir = tempfile::tempdir().unwrap();
    let (topic, group) = (support::unique("x-grow"), support::unique("g-grow"));
    create_topic(&b, &topic, 1);
    match support::broker_kind() {
        support::Broker::Tansu => {
            let (code, last) = run_to_end(
                Run::new(&topic, &group).workers(2).partitions("auto"),
                Duration::from_secs(30),
            );
            assert_eq!(code, Some(1), "{last}");
            assert!(
                last.contains("CreatePartitions") && last.contains("-p keep"),
                "{last}"
            );
        }
        support::Broker::Kafka => {
            let mut run = Run::new(&topic, &group)
                .workers(2)
                .partitions("auto")
                .exec("cat >/dev/null")
                .state(dir.path())
                .spawn();
            wait_members(dir.path(), &group, &topic, 2, Duration::from_secs(60));
            let s = support::run_state(dir.path(), &group, &topic).unwrap();
            let owned: Vec<i32> = s
                .workers
                .iter()
                .flat_map(|w| w.partitions.clone())
                .collect();
            assert_eq!(owned.len(), 2, "grown to 2 partitions, one each: {s:?}");
            assert_eq!(support::stop(&mut run), Some(0));
        }
    }
}

#[test]
fn one_interrupt_stops_cleanly_with_0() {
    let b = support::brokers();
    let dir = tempfile::tempdir().unwrap();
    let (topic, group) = (support::unique("x-int"), support::unique("g-int"));
    create_topic(&b, &topic, 2);
    let mut run = Run::new(&topic, &group)
        .workers(2)
        .exec("cat >/dev/null")
        .state(dir.path())
        .spawn();
    wait_members(dir.path(), &group, &topic, 2, Duration::from_secs(60));
    run.signal(Signal::SIGINT);
    assert_eq!(
        run.wait(Duration::from_secs(30)).code(),
        Some(0),
        "{}",
        run.stderr_text()
    );
}

/// A worker that does not stop within --shutdown-timeout is SIGKILLed, and
/// kswarm says so with exit 1 (what it held was not committed).
#[test]
fn a_worker_killed_at_shutdown_makes_the_stop_exit_1() {
    let b = support::brokers();
    let dir = tempfile::tempdir().unwrap();
    let (topic, group) = (support::unique("x-kill"), support::unique("g-kill"));
    create_topic(&b, &topic, 1);
    let mut run = Run::new(&topic, &group)
        .exec("cat >/dev/null")
        .args(["--shutdown-timeout", "2s"])
        .state(dir.path())
        .spawn();
    let pids = wait_members(dir.path(), &group, &topic, 1, Duration::from_secs(60));
    // A stopped worker cannot act on TERM.
    kill(Pid::from_raw(pids[0]), Signal::SIGSTOP).unwrap();
    let t0 = Instant::now();
    run.signal(Signal::SIGTERM);
    let st = run.wait(Duration::from_secs(30));
    let took = t0.elapsed();
    let err = run.stderr_text();
    assert_eq!(st.code(), Some(1), "{err}");
    let last = support::last_error(&err);
    assert!(
        last.contains("slot 0") && last.contains("--shutdown-timeout"),
        "{last}"
    );
    assert!(
        took >= Duration::from_secs(2),
        "killed before --shutdown-timeout: {took:?}"
    );
}
