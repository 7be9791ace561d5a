//! Bad input through `kswarm worker` processes: each gets a clear message (or
//! is handled) and nothing is lost.
mod support;

use std::io::Write;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use base64::Engine as _;
use kswarm::report::Report;
use nix::sys::signal::Signal;
use support::{
    appending_handler, committed, create_topic, missing, numbered, produce, produce_with,
    read_seen, tally, wait_for, WorkerSpec,
};

const LONG: Duration = Duration::from_secs(60);

fn produce_bytes(brokers: &str, topic: &str, data: &[u8]) {
    let mut c = support::kswarm()
        .args(["produce", "-b", brokers, "-t", topic, "--batch-size", "50"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start kswarm produce");
    let mut sin = c.stdin.take().unwrap();
    let data = data.to_vec();
    let w = std::thread::spawn(move || sin.write_all(&data));
    let out = c.wait_with_output().unwrap();
    w.join().unwrap().unwrap();
    assert!(
        out.status.success(),
        "produce: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// After a failed handler: nothing committed, and a good handler then gets every record.
fn nothing_lost(b: &str, topic: &str, group: &str, dir: &Path, prefix: &str, n: usize) {
    let c = committed(b, topic, group, 2);
    eprintln!("committed after the failure: {c:?}");
    let file = dir.join(format!("good-{group}.jsonl"));
    let mut w = WorkerSpec::new(b, topic, group, dir)
        .args(&["--exec", &appending_handler(&file)])
        .start(9);
    wait_for(LONG, "the good handler to get every record", || {
        missing(&tally(&read_seen(&file)).values, prefix, n)
            .is_empty()
            .then_some(())
    });
    w.signal(Signal::SIGTERM);
    let st = w.wait(Duration::from_secs(20));
    assert!(st.success(), "{st:?}: {}", w.stderr_text());
}

/// A worker whose handler is broken fails (exit `code`) with a message; returns its stderr.
fn fails_with(b: &str, topic: &str, group: &str, dir: &Path, handler: &[&str]) -> String {
    fails_with_code(b, topic, group, dir, handler, 1)
}

fn fails_with_code(
    b: &str,
    topic: &str,
    group: &str,
    dir: &Path,
    handler: &[&str],
    code: i32,
) -> String {
    let mut w = WorkerSpec::new(b, topic, group, dir).args(handler).start(3);
    let st = w.wait(Duration::from_secs(30));
    let err = w.stderr_text();
    eprintln!("{handler:?} -> {st:?}\n{err}");
    assert!(!st.success(), "{handler:?}: the worker must fail");
    assert_eq!(
        st.code(),
        Some(code),
        "runtime failure is exit 1, a configuration error 2"
    );
    // The Fatal report's message: what the supervisor is told, without the
    // timestamps and log noise of stderr (a "127" there could be anything).
    let fatal = w.reports().into_iter().find_map(|r| match r {
        Report::Fatal { message } => Some(message),
        _ => None,
    });
    fatal.expect("a Fatal report tells the supervisor why")
}

#[test]
fn handler_not_found() {
    let b = support::brokers();
    let (topic, group) = (support::unique("b-nf"), support::unique("g-nf"));
    let dir = tempfile::tempdir().unwrap();
    create_topic(&b, &topic, 2);
    produce(&b, &topic, &numbered("n", 200));
    // A handler that cannot be run is a configuration error: exit 2.
    let err = fails_with_code(
        &b,
        &topic,
        &group,
        dir.path(),
        &["--exec", "/nonexistent/kswarm-handler"],
        2,
    );
    assert!(
        err.contains("'/nonexistent/kswarm-handler'"),
        "names the command: {err}"
    );
    assert!(
        err.contains("command not found (sh exit status 127)"),
        "says why: {err}"
    );
    nothing_lost(&b, &topic, &group, dir.path(), "n", 200);
}

#[test]
fn handler_that_exits_at_once() {
    let b = support::brokers();
    let (topic, group) = (support::unique("b-exit"), support::unique("g-exit"));
    let dir = tempfile::tempdir().unwrap();
    create_topic(&b, &topic, 2);
    produce(&b, &topic, &numbered("q", 200));
    let err = fails_with(&b, &topic, &group, dir.path(), &["--exec", "exit 3"]);
    assert!(err.contains("--exec 'exit 3'"), "names the command: {err}");
    assert!(
        err.contains("ended (exit status 3)"),
        "gives the exit status: {err}"
    );
    nothing_lost(&b, &topic, &group, dir.path(), "q", 200);
}

#[test]
fn handler_that_writes_extra_lines() {
    let b = support::brokers();
    let (topic, group) = (support::unique("b-garb"), support::unique("g-garb"));
    let dir = tempfile::tempdir().unwrap();
    create_topic(&b, &topic, 2);
    produce(&b, &topic, &numbered("g", 500));
    // A banner line before the acks: one ack too many.
    let err = fails_with(
        &b,
        &topic,
        &group,
        dir.path(),
        &[
            "--exec",
            "echo starting up; while read -r l; do echo ok; done",
        ],
    );
    assert!(err.contains("more lines"), "says what is wrong: {err}");
    assert!(err.contains("stderr"), "says the way out: {err}");
    nothing_lost(&b, &topic, &group, dir.path(), "g", 500);
}

#[test]
fn handler_that_never_acknowledges() {
    let b = support::brokers();
    let (topic, group) = (support::unique("b-hang"), support::unique("g-hang"));
    let dir = tempfile::tempdir().unwrap();
    create_topic(&b, &topic, 2);
    produce(&b, &topic, &numbered("h", 500));
    let mut w = WorkerSpec::new(&b, &topic, &group, dir.path())
        .args(&[
            "--exec",
            "cat > /dev/null",
            "--max-in-flight",
            "10",
            "--shutdown-timeout",
            "2s",
        ])
        .start(0);
    w.wait_owned(LONG, &[0, 1]);
    let alive = |w: &support::Proc| {
        w.reports()
            .iter()
            .filter(|r| matches!(r, Report::Alive { .. }))
            .count()
    };
    std::thread::sleep(Duration::from_secs(2));
    let a0 = alive(&w);
    std::thread::sleep(Duration::from_secs(4));
    let a1 = alive(&w);
    eprintln!(
        "Alive reports while the handler never acknowledges: {a0} after 2 s, {a1} after 6 s; last records count {:?}",
        w.alive_records()
    );
    assert!(w.try_status().is_none(), "the worker waits for the handler");
    assert_eq!(w.alive_records().unwrap_or(0), 0, "nothing acknowledged");

    let t = Instant::now();
    w.signal(Signal::SIGTERM);
    let st = w.wait(Duration::from_secs(20));
    let took = t.elapsed();
    eprintln!("TERM -> exit {st:?} in {took:?}\n{}", w.stderr_text());
    assert!(
        took < Duration::from_secs(8),
        "stopped within --shutdown-timeout 2s (+ margin): {took:?}"
    );
    assert!(
        w.stderr_text().contains("delivered again"),
        "says that the unacknowledged records will come again: {}",
        w.stderr_text()
    );
    assert_eq!(
        committed(&b, &topic, &group, 2).values().flatten().count(),
        0,
        "nothing committed"
    );
    nothing_lost(&b, &topic, &group, dir.path(), "h", 500);
    // The verdict on liveness reports is printed above (see the report).
    let _ = (a0, a1);
}

#[test]
fn non_utf8_values_come_as_base64_with_a_marker() {
    let b = support::brokers();
    let (topic, group) = (support::unique("b-bin"), support::unique("g-bin"));
    let dir = tempfile::tempdir().unwrap();
    create_topic(&b, &topic, 2);
    let mut data = Vec::new();
    let mut want = Vec::new();
    // Not 10: a newline would split the line into two records.
    for i in 11..111u8 {
        let v = vec![0xff, 0xfe, i, b'x', 0x80];
        data.extend_from_slice(&v);
        data.push(b'\n');
        want.push(v);
    }
    produce_bytes(&b, &topic, &data);
    let mut w = WorkerSpec::new(&b, &topic, &group, dir.path()).start(0);
    let lines = wait_for(LONG, "100 records on stdout", || {
        let l = w.stdout_lines();
        (l.len() >= 100).then_some(l)
    });
    let mut got = Vec::new();
    for l in &lines {
        let v: serde_json::Value = serde_json::from_str(l).expect("json line");
        assert_eq!(v["value_encoding"], "base64", "marker on {l}");
        got.push(
            base64::engine::general_purpose::STANDARD
                .decode(v["value"].as_str().unwrap())
                .unwrap(),
        );
    }
    got.sort();
    want.sort();
    assert_eq!(got, want, "the bytes come back intact");
    w.signal(Signal::SIGTERM);
    assert!(w.wait(Duration::from_secs(20)).success());
}

const BIG: usize = 1000 * 1024;

#[test]
fn huge_values_reach_the_handler_whole() {
    let b = support::brokers();
    let (topic, group) = (support::unique("b-big"), support::unique("g-big"));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("handled.jsonl");
    create_topic(&b, &topic, 2);
    let mut data = String::new();
    // 1000 KiB: as large as Kafka's default message.max.bytes (1 MiB per batch) lets one record be.
    for i in 0..6 {
        data.push_str(&format!("big-{i}-{}\n", "v".repeat(BIG)));
        data.push_str(&format!("small-{i}\n"));
    }
    produce_with(&b, &topic, &data, &["--batch-size", "1"]);
    let mut w = WorkerSpec::new(&b, &topic, &group, dir.path())
        .args(&["--exec", &appending_handler(&file)])
        .start(0);
    let seen = wait_for(LONG, "12 records handled", || {
        let s = read_seen(&file);
        (s.len() >= 12).then_some(s)
    });
    let t = tally(&seen);
    assert_eq!(t.duplicates, 0);
    for i in 0..6 {
        assert!(t.values.contains(&format!("small-{i}")));
        let big = t
            .values
            .iter()
            .find(|v| v.starts_with(&format!("big-{i}-")))
            .unwrap_or_else(|| panic!("big-{i} missing"));
        assert_eq!(big.len(), format!("big-{i}-").len() + BIG);
    }
    w.signal(Signal::SIGTERM);
    let st = w.wait(Duration::from_secs(20));
    assert!(st.success(), "{st:?}: {}", w.stderr_text());
}

#[test]
fn empty_topic_stops_cleanly_on_term() {
    let b = support::brokers();
    let (topic, group) = (support::unique("b-empty"), support::unique("g-empty"));
    let dir = tempfile::tempdir().unwrap();
    create_topic(&b, &topic, 2);
    let mut w = WorkerSpec::new(&b, &topic, &group, dir.path()).start(0);
    w.wait_owned(LONG, &[0, 1]);
    std::thread::sleep(Duration::from_secs(2));
    let t = Instant::now();
    w.signal(Signal::SIGTERM);
    let st = w.wait(Duration::from_secs(20));
    eprintln!("empty topic: TERM -> {st:?} in {:?}", t.elapsed());
    assert!(st.success(), "{st:?}: {}", w.stderr_text());
    assert!(t.elapsed() < Duration::from_secs(5));
    assert!(w.stdout_lines().is_empty());
    assert_eq!(
        committed(&b, &topic, &group, 2).values().flatten().count(),
        0
    );
}

/// `kswarm run` with `args` on a 2-partition topic; waits for its exit.
fn run_until_exit(b: &str, topic: &str, group: &str, args: &[&str]) -> (Option<i32>, String) {
    let mut p = support::Run::new(topic, group)
        .brokers(b)
        .partitions("2")
        .args(["--session-timeout", "6s"])
        .args(args)
        .spawn();
    let st = p.wait(Duration::from_secs(90));
    let err = p.stderr_text();
    eprintln!("kswarm run {args:?} -> {st:?}\n{err}");
    (st.code(), err)
}

#[test]
fn run_stops_with_1_naming_the_slot_when_the_handler_crash_loops() {
    let b = support::brokers();
    let (topic, group) = (support::unique("b-loop"), support::unique("g-loop"));
    let dir = tempfile::tempdir().unwrap();
    create_topic(&b, &topic, 2);
    produce(&b, &topic, &numbered("l", 200));
    let (code, err) = run_until_exit(
        &b,
        &topic,
        &group,
        &["--exec", "exit 3", "--max-restarts", "2/60s"],
    );
    assert_eq!(code, Some(1), "a spent restart budget is exit 1");
    let last = err
        .lines()
        .rev()
        .find(|l| l.starts_with("kswarm: error: slot"))
        .unwrap_or("");
    assert!(last.contains("slot 0"), "names the slot: {last}");
    assert!(last.contains("--max-restarts"), "names the flag: {last}");
    assert!(
        last.contains("ended (exit status 3)"),
        "gives the handler's failure: {last}"
    );
    nothing_lost(&b, &topic, &group, dir.path(), "l", 200);
}

#[test]
fn run_hang_timeout_catches_a_handler_that_never_acknowledges() {
    let b = support::brokers();
    let dir = tempfile::tempdir().unwrap();
    // Many records (the worker blocks at --max-in-flight) and a handful (it does not).
    for (n, extra) in [(500, &["--max-in-flight", "10"][..]), (5, &[][..])] {
        let (topic, group) = (support::unique("b-hung"), support::unique("g-hung"));
        create_topic(&b, &topic, 2);
        produce(&b, &topic, &numbered("u", n));
        let mut args = vec![
            "--exec",
            "cat > /dev/null",
            "--hang-timeout",
            "3s",
            "--max-restarts",
            "1/60s",
        ];
        args.extend_from_slice(extra);
        let t = Instant::now();
        let (code, err) = run_until_exit(&b, &topic, &group, &args);
        eprintln!("{n} records: exit {code:?} after {:?}", t.elapsed());
        assert_eq!(code, Some(1), "{n} records: the hung handler ends the run");
        assert!(
            err.contains("--hang-timeout"),
            "{n} records: says why: {err}"
        );
        nothing_lost(&b, &topic, &group, dir.path(), "u", n);
    }
}
