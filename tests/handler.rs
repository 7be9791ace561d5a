//! Record handlers with real child processes (no broker needed, but for the
//! last test, which runs `kswarm run` to see a handler's whole environment).
//!
//! Tests that must own the process's stdout/stderr (stdout handler, stderr
//! prefixing) re-run this test binary as a child process limited to
//! `child_process_entry` with KSWARM_HANDLER_TEST_CHILD=<scenario>; in the
//! normal run that function has nothing to do and returns at once.

mod support;

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use kswarm::config::{Format, HandlerSpec};
use kswarm::handler::{Ack, Handler, HandlerEnv, HandlerEvent};
use kswarm::record::Record;
use support::alive;

const LIMIT: Duration = Duration::from_secs(30);

fn env(slot: u32) -> HandlerEnv {
    HandlerEnv {
        slot,
        group: "g-test".into(),
        topic: "t-test".into(),
        retry_topics: Vec::new(),
        guard_exe: env!("CARGO_BIN_EXE_kswarm").into(),
    }
}

fn rec(partition: i32, offset: i64, value: &[u8]) -> Record {
    Record {
        partition,
        offset,
        timestamp_ms: 1_700_000_000_000 + offset,
        key: Some(Bytes::from(format!("k{offset}"))),
        value: Some(Bytes::copy_from_slice(value)),
        headers: vec![("h".into(), Some(Bytes::from_static(b"v")))],
        delivery_count: None,
        lane: kswarm::record::Lane::Main,
    }
}

fn exec(cmd: &str) -> HandlerSpec {
    HandlerSpec::Exec(cmd.into())
}

fn batch(cmd: &str, size: usize, wait_ms: u64, retries: u32) -> HandlerSpec {
    HandlerSpec::Batch {
        command: cmd.into(),
        size,
        wait: Duration::from_millis(wait_ms),
        retries,
    }
}

/// Collects events until None (or a Failed/OutputClosed, when `stop_at_end`).
async fn drain(h: &mut Handler) -> Vec<HandlerEvent> {
    let mut out = Vec::new();
    while let Some(ev) = tokio::time::timeout(LIMIT, h.next_event())
        .await
        .expect("handler events within the time limit")
    {
        out.push(ev);
    }
    out
}

fn acks(events: &[HandlerEvent]) -> Vec<Ack> {
    events
        .iter()
        .filter_map(|e| match e {
            HandlerEvent::Ack(a) => Some(*a),
            _ => None,
        })
        .collect()
}

fn failure(events: &[HandlerEvent]) -> Option<&str> {
    events.iter().find_map(|e| match e {
        HandlerEvent::Failed(m) => Some(m.as_str()),
        _ => None,
    })
}

/// Acks per partition must only move forward; returns the last one of each.
fn last_acks(acks: &[Ack]) -> HashMap<i32, i64> {
    let mut last: HashMap<i32, i64> = HashMap::new();
    for a in acks {
        if let Some(prev) = last.get(&a.partition) {
            assert!(a.offset > *prev, "ack went backwards: {a:?} after {prev}");
        }
        last.insert(a.partition, a.offset);
    }
    last
}

#[tokio::test]
async fn exec_cat_acks_everything_in_order() {
    let mut h = Handler::start(&exec("cat"), Format::Json, 10_000, env(1))
        .await
        .unwrap();
    for i in 0..3000i64 {
        h.send(rec((i % 3) as i32, i / 3, b"hello")).await.unwrap();
    }
    h.close_input().await;
    let events = drain(&mut h).await;
    assert_eq!(failure(&events), None);
    let last = last_acks(&acks(&events));
    assert_eq!(last, HashMap::from([(0, 999), (1, 999), (2, 999)]));
    assert_eq!(h.in_flight(), 0);
}

#[tokio::test]
async fn exec_handler_that_exits_early_fails_after_its_acks() {
    let mut h = Handler::start(&exec("head -n 3"), Format::Value, 100, env(1))
        .await
        .unwrap();
    for i in 0..10 {
        // It may be gone before we finish sending; that is the point.
        if h.send(rec(0, i, b"x")).await.is_err() {
            break;
        }
    }
    let events = drain(&mut h).await;
    let msg = failure(&events).expect("a Failed event");
    assert!(
        msg.contains("head -n 3") && msg.contains("exit status 0"),
        "{msg}"
    );
    assert!(msg.contains("7 not acknowledged"), "{msg}");
    assert_eq!(last_acks(&acks(&events)), HashMap::from([(0, 2)]));
    assert!(matches!(events.last(), Some(HandlerEvent::Failed(_))));
    assert_eq!(h.in_flight(), 7);
    assert!(
        h.send(rec(0, 10, b"x")).await.is_err(),
        "send after failure"
    );
}

#[tokio::test]
async fn exec_command_not_found_fails_clearly() {
    let mut h = Handler::start(
        &exec("kswarm-no-such-handler-xyz --flag"),
        Format::Json,
        10,
        env(1),
    )
    .await
    .unwrap();
    let _ = h.send(rec(0, 0, b"x")).await;
    let events = drain(&mut h).await;
    let msg = failure(&events).expect("a Failed event");
    assert!(msg.contains("command not found"), "{msg}");
    assert!(msg.contains("kswarm-no-such-handler-xyz"), "{msg}");
    assert!(acks(&events).is_empty());
}

#[tokio::test]
async fn the_byte_limit_stops_staging_but_lets_one_big_record_through() {
    let mut h = Handler::start(&exec("cat >/dev/null"), Format::Value, 1000, env(1))
        .await
        .unwrap();
    h.limit_bytes(1000);
    // 1 KiB values: the first goes through (one record always does), then no room.
    assert_eq!(h.room(), 1000);
    h.send(rec(0, 0, &[b'x'; 1024])).await.unwrap();
    assert_eq!(h.in_flight_bytes(), 1025, "the line, newline included");
    assert_eq!(h.room(), 0, "over the byte limit");
    let blocked =
        tokio::time::timeout(Duration::from_millis(300), h.send(rec(0, 1, &[b'x'; 10]))).await;
    assert!(blocked.is_err(), "send waits while the bytes are in flight");
    h.kill();
}

#[tokio::test]
async fn never_acking_handler_stops_send_at_max_in_flight() {
    let mut h = Handler::start(&exec("cat >/dev/null"), Format::Json, 5, env(1))
        .await
        .unwrap();
    for i in 0..5 {
        tokio::time::timeout(Duration::from_secs(5), h.send(rec(0, i, b"x")))
            .await
            .expect("below the limit send does not wait")
            .unwrap();
    }
    assert_eq!(h.in_flight(), 5);
    let blocked = tokio::time::timeout(Duration::from_millis(500), h.send(rec(0, 5, b"x"))).await;
    assert!(
        blocked.is_err(),
        "send must wait while 5 records are unacknowledged"
    );
    assert_eq!(h.in_flight(), 5);
    // next_event has nothing either.
    assert!(
        tokio::time::timeout(Duration::from_millis(200), h.next_event())
            .await
            .is_err()
    );
    h.kill();
    let events = drain(&mut h).await;
    let msg = failure(&events).expect("a Failed event after kill");
    assert!(
        msg.contains("killed") && msg.contains("5 record(s)"),
        "{msg}"
    );
}

#[tokio::test]
async fn backpressure_still_lets_a_slow_handler_finish() {
    // Acks arrive while send waits at the limit, so everything goes through.
    let mut h = Handler::start(
        &exec("while read -r l; do echo ok; done"),
        Format::Value,
        3,
        env(1),
    )
    .await
    .unwrap();
    let mut events = Vec::new();
    for i in 0..50 {
        tokio::time::timeout(LIMIT, h.send(rec(i % 2, i as i64, b"v")))
            .await
            .unwrap()
            .unwrap();
        assert!(h.in_flight() <= 3);
    }
    h.close_input().await;
    events.extend(drain(&mut h).await);
    assert_eq!(failure(&events), None);
    assert_eq!(last_acks(&acks(&events)), HashMap::from([(0, 48), (1, 49)]));
}

#[tokio::test]
async fn extra_output_lines_are_a_protocol_error() {
    let mut h = Handler::start(
        &exec("while read -r l; do echo ack; echo debug-output; done"),
        Format::Json,
        100,
        env(1),
    )
    .await
    .unwrap();
    h.send(rec(0, 0, b"x")).await.unwrap();
    let events = drain(&mut h).await;
    // The acknowledgements of a handler that prints more lines than
    // records cannot be trusted at all.
    let msg = events
        .iter()
        .find_map(|e| match e {
            HandlerEvent::Untrusted(m) => Some(m.as_str()),
            _ => None,
        })
        .expect("an Untrusted event");
    assert!(
        msg.contains("more lines on its stdout than records"),
        "{msg}"
    );
    assert!(msg.contains(">&2"), "{msg}");
}

#[tokio::test]
async fn handler_sees_its_environment() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("env");
    let cmd = format!(
        "printf '%s|%s|%s\\n' \"$KSWARM_WORKER\" \"$KSWARM_GROUP\" \"$KSWARM_TOPIC\" > '{}'; cat",
        file.display()
    );
    for spec in [
        exec(&cmd),
        batch(&cmd.replace("; cat", "; cat >/dev/null"), 10, 10, 0),
    ] {
        let mut h = Handler::start(&spec, Format::Json, 10, env(5))
            .await
            .unwrap();
        h.send(rec(0, 0, b"x")).await.unwrap();
        h.close_input().await;
        let events = drain(&mut h).await;
        assert_eq!(failure(&events), None);
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "5|g-test|t-test\n");
        std::fs::remove_file(&file).unwrap();
    }
}

#[tokio::test]
async fn one_mib_values_and_non_utf8_reach_the_handler_intact() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("seen");
    let mut h = Handler::start(
        &exec(&format!("tee '{}'", file.display())),
        Format::Json,
        4,
        env(1),
    )
    .await
    .unwrap();
    let big: Vec<u8> = (0..(1 << 20)).map(|i| b'a' + (i % 26) as u8).collect();
    let binary: Vec<u8> = vec![0xff, 0xfe, 0x00, b'\n', 0x80];
    for i in 0..8 {
        let v = if i % 2 == 0 { &big } else { &binary };
        tokio::time::timeout(LIMIT, h.send(rec(0, i, v)))
            .await
            .unwrap()
            .unwrap();
    }
    h.close_input().await;
    let events = drain(&mut h).await;
    assert_eq!(failure(&events), None);
    assert_eq!(last_acks(&acks(&events)), HashMap::from([(0, 7)]));
    let text = std::fs::read_to_string(&file).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 8);
    for (i, line) in lines.iter().enumerate() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["offset"], i as i64);
        if i % 2 == 0 {
            assert_eq!(v["value"].as_str().unwrap().as_bytes(), &big[..]);
            assert!(v.get("value_encoding").is_none());
        } else {
            assert_eq!(v["value_encoding"], "base64");
            let b = base64::engine::general_purpose::STANDARD
                .decode(v["value"].as_str().unwrap())
                .unwrap();
            assert_eq!(b, binary);
        }
    }
}

#[tokio::test]
async fn exec_value_format_refuses_a_value_with_a_newline() {
    let mut h = Handler::start(&exec("cat"), Format::Value, 10, env(1))
        .await
        .unwrap();
    h.send(rec(0, 0, b"one line")).await.unwrap();
    assert!(h.send(rec(0, 1, b"two\nlines")).await.is_err());
    let events = drain(&mut h).await;
    let msg = failure(&events).expect("a Failed event");
    assert!(
        msg.contains("offset 1") && msg.contains("--format json"),
        "{msg}"
    );
}

#[tokio::test]
async fn exec_batch_acks_each_batch_per_partition() {
    let dir = tempfile::tempdir().unwrap();
    let sizes = dir.path().join("sizes");
    let cmd = format!("wc -l >> '{}'", sizes.display());
    let mut h = Handler::start(&batch(&cmd, 500, 50, 0), Format::Json, 10_000, env(2))
        .await
        .unwrap();
    for i in 0..1200i64 {
        h.send(rec((i % 3) as i32, i / 3, b"v")).await.unwrap();
    }
    h.close_input().await;
    let events = drain(&mut h).await;
    assert_eq!(failure(&events), None);
    let acks = acks(&events);
    // One ack per partition per batch: 3 batches x 3 partitions.
    assert_eq!(acks.len(), 9, "{acks:?}");
    assert_eq!(
        last_acks(&acks),
        HashMap::from([(0, 399), (1, 399), (2, 399)])
    );
    assert_eq!(
        acks[0..3].iter().map(|a| a.offset).collect::<Vec<_>>(),
        [166, 166, 165]
    );
    let runs: Vec<u32> = std::fs::read_to_string(&sizes)
        .unwrap()
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect();
    assert_eq!(runs, [500, 500, 200]);
}

#[tokio::test]
async fn exec_batch_closes_a_batch_after_the_wait() {
    let mut h = Handler::start(
        &batch("cat >/dev/null", 1000, 100, 0),
        Format::Json,
        10_000,
        env(2),
    )
    .await
    .unwrap();
    let t = Instant::now();
    h.send(rec(0, 0, b"v")).await.unwrap();
    let ev = tokio::time::timeout(LIMIT, h.next_event()).await.unwrap();
    assert_eq!(
        ev,
        Some(HandlerEvent::Ack(Ack {
            partition: 0,
            offset: 0
        }))
    );
    assert!(t.elapsed() >= Duration::from_millis(100));
}

#[tokio::test]
async fn exec_batch_failure_is_retried_then_fails() {
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join("runs");
    let cmd = format!(
        "cat >/dev/null; echo run >> '{}'; echo 'db is down' >&2; exit 3",
        runs.display()
    );
    let mut h = Handler::start(&batch(&cmd, 10, 10, 2), Format::Json, 100, env(2))
        .await
        .unwrap();
    let t = Instant::now();
    for i in 0..5 {
        h.send(rec(0, i, b"v")).await.unwrap();
    }
    let events = drain(&mut h).await;
    let msg = failure(&events).expect("a Failed event");
    assert!(
        msg.contains("exit status 3") && msg.contains("3 time(s)"),
        "{msg}"
    );
    assert!(msg.contains("db is down"), "{msg}");
    assert!(acks(&events).is_empty());
    assert_eq!(std::fs::read_to_string(&runs).unwrap().lines().count(), 3);
    // Backoff 100 ms then 200 ms.
    assert!(
        t.elapsed() >= Duration::from_millis(300),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(h.in_flight(), 5);
}

#[tokio::test]
async fn exec_batch_retry_that_succeeds_acks() {
    let dir = tempfile::tempdir().unwrap();
    let mark = dir.path().join("mark");
    // Fails the first run, succeeds the second.
    let cmd = format!(
        "cat >/dev/null; [ -e '{0}' ] || {{ touch '{0}'; exit 1; }}",
        mark.display()
    );
    let mut h = Handler::start(&batch(&cmd, 10, 10, 1), Format::Json, 100, env(2))
        .await
        .unwrap();
    h.send(rec(4, 9, b"v")).await.unwrap();
    h.close_input().await;
    let events = drain(&mut h).await;
    assert_eq!(
        events,
        [HandlerEvent::Ack(Ack {
            partition: 4,
            offset: 9
        })]
    );
}

#[tokio::test]
async fn exec_batch_command_not_found_fails_without_retrying() {
    let mut h = Handler::start(
        &batch("kswarm-no-such-batch-xyz", 10, 10, 5),
        Format::Json,
        100,
        env(2),
    )
    .await
    .unwrap();
    let t = Instant::now();
    h.send(rec(0, 0, b"v")).await.unwrap();
    let events = drain(&mut h).await;
    let msg = failure(&events).expect("a Failed event");
    assert!(msg.contains("command not found"), "{msg}");
    assert!(
        t.elapsed() < Duration::from_millis(2000),
        "no retries: {:?}",
        t.elapsed()
    );
}

#[tokio::test]
async fn kill_takes_down_the_handler_process_group() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pid");
    // A grandchild (sleep) in the handler's group must die too.
    let cmd = format!(
        "sleep 60 & echo $! > '{}'; cat >/dev/null",
        pidfile.display()
    );
    let mut h = Handler::start(&exec(&cmd), Format::Json, 10, env(1))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_to_string(&pidfile).map_or(true, |s| !s.ends_with('\n')) {
        assert!(Instant::now() < deadline, "handler did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(alive(pid));
    h.kill();
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive(pid) {
        assert!(Instant::now() < deadline, "grandchild {pid} survived kill");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---------------------------------------------------------------------------
// Scenarios in a child process (they own stdout / stderr).

/// Runs this test binary as a child limited to `child_process_entry`.
fn child(scenario: &str, result: &Path) -> Command {
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.args([
        "--exact",
        "child_process_entry",
        "--nocapture",
        "--test-threads=1",
    ])
    .env("KSWARM_HANDLER_TEST_CHILD", scenario)
    .env("KSWARM_HANDLER_TEST_RESULT", result)
    .env_remove("RUST_LOG")
    .stdin(Stdio::null())
    .stdout(Stdio::null());
    c
}

fn wait_ok(mut c: std::process::Child, what: &str) {
    let deadline = Instant::now() + LIMIT;
    loop {
        if let Some(status) = c.try_wait().unwrap() {
            assert!(status.success(), "{what}: child failed: {status}");
            return;
        }
        if Instant::now() > deadline {
            let _ = c.kill();
            panic!("{what}: child took too long");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The entry point of the child processes above; in the normal test run
/// (no KSWARM_HANDLER_TEST_CHILD) there is nothing to do.
#[test]
fn child_process_entry() {
    let Ok(scenario) = std::env::var("KSWARM_HANDLER_TEST_CHILD") else {
        return;
    };
    let result = std::env::var("KSWARM_HANDLER_TEST_RESULT").unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let outcome = rt.block_on(async {
        match scenario.as_str() {
            "stderr" => child_stderr().await,
            "closed-stdout" => child_closed_stdout().await,
            "big-lines" => child_big_lines().await,
            "worker-dies" => child_worker_dies().await,
            other => panic!("unknown scenario {other}"),
        }
    });
    std::fs::write(result, outcome).unwrap();
}

/// fd 1 := fd 2 (the test's pipe), so that libtest's own output (to the
/// original stdout, /dev/null) stays out of it. Returns the saved stdout.
fn stdout_to_stderr_pipe() -> i32 {
    let saved = nix::unistd::dup(1).unwrap();
    nix::unistd::dup2(2, 1).unwrap();
    saved
}

fn restore_stdout(saved: i32) {
    nix::unistd::dup2(saved, 1).unwrap();
}

async fn child_stderr() -> String {
    let cmd =
        "echo \"first line from worker $KSWARM_WORKER\" >&2; printf 'no newline at end' >&2; cat";
    let mut h = Handler::start(&exec(cmd), Format::Json, 10, env(7))
        .await
        .unwrap();
    h.send(rec(0, 0, b"x")).await.unwrap();
    h.close_input().await;
    let events = drain(&mut h).await;
    format!("{events:?}")
}

#[test]
fn exec_stderr_is_prefixed_with_the_worker_slot() {
    let dir = tempfile::tempdir().unwrap();
    let result = dir.path().join("result");
    let mut c = child("stderr", &result)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = String::new();
    c.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    wait_ok(c, "stderr scenario");
    assert!(
        err.contains("[worker 7] first line from worker 7\n"),
        "{err}"
    );
    assert!(err.contains("[worker 7] no newline at end\n"), "{err}");
    let events = std::fs::read_to_string(&result).unwrap();
    assert!(
        events.contains("Ack(Ack { partition: 0, offset: 0 })"),
        "{events}"
    );
}

async fn child_closed_stdout() -> String {
    let saved = stdout_to_stderr_pipe();
    let mut h = Handler::start(&HandlerSpec::Stdout, Format::Value, 1000, env(1))
        .await
        .unwrap();
    let mut events = Vec::new();
    let line = vec![b'z'; 1000];
    for i in 0.. {
        if h.send(rec(0, i, &line)).await.is_err() {
            break;
        }
        if h.in_flight() >= 500 {
            // Let the writer run; collect what is done.
            if let Some(ev) = h.next_event().await {
                events.push(ev);
            }
        }
        assert!(i < 10_000_000, "stdout never reported closed");
    }
    events.extend(drain(&mut h).await);
    restore_stdout(saved);
    format!("{:?}", events.last())
}

#[test]
fn stdout_to_a_closed_pipe_is_output_closed() {
    let dir = tempfile::tempdir().unwrap();
    let result = dir.path().join("result");
    let mut c = child("closed-stdout", &result)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Read a little, then close the only read end (like `| head -c 5000`).
    let mut pipe = c.stderr.take().unwrap();
    let mut first = [0u8; 5000];
    pipe.read_exact(&mut first).unwrap();
    assert!(first.iter().all(|&b| b == b'z' || b == b'\n'));
    drop(pipe);
    wait_ok(c, "closed-stdout scenario");
    assert_eq!(
        std::fs::read_to_string(&result).unwrap(),
        "Some(OutputClosed)"
    );
}

const BIG_LINES: i64 = 150;
const BIG_LINE: usize = 100 * 1024;

async fn child_big_lines() -> String {
    let saved = stdout_to_stderr_pipe();
    let me: char = std::env::var("KSWARM_HANDLER_TEST_FILL")
        .unwrap()
        .parse()
        .unwrap();
    let mut h = Handler::start(&HandlerSpec::Stdout, Format::Value, 64, env(1))
        .await
        .unwrap();
    let mut events = Vec::new();
    for i in 0..BIG_LINES {
        let mut v = format!("{me}:{i}:").into_bytes();
        v.resize(BIG_LINE, me as u8);
        // Send, and collect acks whenever the limit is reached.
        h.send(rec(0, i, &v)).await.unwrap();
    }
    h.close_input().await;
    events.extend(drain(&mut h).await);
    restore_stdout(saved);
    format!("{:?}", events.last())
}

#[test]
fn stdout_lines_from_two_processes_never_interleave() {
    let dir = tempfile::tempdir().unwrap();
    let (r, w) = nix::unistd::pipe().unwrap();
    let mut children = Vec::new();
    for fill in ['a', 'b'] {
        let result = dir.path().join(format!("result-{fill}"));
        let c = child("big-lines", &result)
            .env("KSWARM_HANDLER_TEST_FILL", fill.to_string())
            .stderr(Stdio::from(w.try_clone().unwrap()))
            .spawn()
            .unwrap();
        children.push((c, fill, result));
    }
    drop(w);
    let mut all = Vec::new();
    std::fs::File::from(r).read_to_end(&mut all).unwrap();
    let mut next: HashMap<char, i64> = HashMap::new();
    for line in all.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let text = std::str::from_utf8(line).expect("lines are text");
        let mut parts = text.splitn(3, ':');
        let id: char = parts
            .next()
            .unwrap()
            .parse()
            .expect("line starts with its writer");
        let seq: i64 = parts
            .next()
            .unwrap()
            .parse()
            .expect("then a sequence number");
        let fill = parts.next().unwrap();
        assert_eq!(line.len(), BIG_LINE, "line {id}:{seq} is cut or mixed");
        assert!(
            fill.chars().all(|c| c == id),
            "line {id}:{seq} holds another process's bytes"
        );
        let expected = next.entry(id).or_insert(0);
        assert_eq!(seq, *expected, "lines of {id} out of order or lost");
        *expected += 1;
    }
    assert_eq!(next.len(), 2);
    for (c, fill, result) in children {
        wait_ok(c, "big-lines scenario");
        assert_eq!(next.get(&fill), Some(&BIG_LINES), "all lines of {fill}");
        let last = std::fs::read_to_string(result).unwrap();
        assert_eq!(
            last,
            format!(
                "{:?}",
                Some(HandlerEvent::Ack(Ack {
                    partition: 0,
                    offset: BIG_LINES - 1
                }))
            )
        );
    }
}

async fn child_worker_dies() -> String {
    let pidfile = std::env::var("KSWARM_HANDLER_TEST_PIDFILE").unwrap();
    // `exec sleep` keeps PDEATHSIG (kept across execve) and never reads stdin,
    // so only the parent-death signal can end it before 60 s.
    let cmd =
        format!("echo $$ > '{pidfile}.tmp' && mv '{pidfile}.tmp' '{pidfile}' && exec sleep 60");
    let mut h = Handler::start(&exec(&cmd), Format::Json, 10, env(1))
        .await
        .unwrap();
    h.send(rec(0, 0, b"x")).await.unwrap();
    while !Path::new(&pidfile).exists() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Die without running destructors (no Handler drop, no kill): like a crash.
    std::process::exit(0);
}

#[test]
fn handler_dies_with_its_worker() {
    let dir = tempfile::tempdir().unwrap();
    let result = dir.path().join("result");
    let pidfile = dir.path().join("pid");
    let c = child("worker-dies", &result)
        .env("KSWARM_HANDLER_TEST_PIDFILE", &pidfile)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_ok(c, "worker-dies scenario");
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive(pid) {
        assert!(
            Instant::now() < deadline,
            "handler {pid} outlived its worker"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The worker's loop shape: select! over next_event (cancel-safe) and other
/// work; records are sent only while in_flight() is below the limit, so send
/// never waits. No ack is lost or duplicated.
#[tokio::test]
async fn worker_style_select_loop_loses_nothing() {
    let mut h = Handler::start(
        &exec("while read -r l; do echo ok; done"),
        Format::Json,
        7,
        env(1),
    )
    .await
    .unwrap();
    let total = 300i64;
    let mut next = 0i64;
    let mut last: HashMap<i32, i64> = HashMap::new();
    let mut closed = false;
    let work = async {
        loop {
            let room = next < total && h.in_flight() < 7;
            tokio::select! {
                ev = h.next_event() => match ev {
                    Some(HandlerEvent::Ack(a)) => {
                        let prev = last.insert(a.partition, a.offset);
                        assert!(prev.is_none_or(|p| p < a.offset), "{a:?} after {prev:?}");
                    }
                    Some(other) => panic!("{other:?}"),
                    None => break,
                },
                _ = tokio::time::sleep(Duration::from_millis(1)), if room => {
                    let r = rec((next % 4) as i32, next, b"v");
                    let sent = tokio::time::timeout(Duration::from_millis(10), h.send(r)).await;
                    sent.expect("send below the limit does not wait").unwrap();
                    next += 1;
                }
                _ = std::future::ready(()), if next == total && !closed => {
                    h.close_input().await;
                    closed = true;
                }
            }
        }
    };
    tokio::time::timeout(LIMIT, work)
        .await
        .expect("loop finishes");
    assert_eq!(
        last,
        HashMap::from([(0, 296), (1, 297), (2, 298), (3, 299)])
    );
    assert_eq!(h.in_flight(), 0);
}

/// The handler's environment holds exactly the `KSWARM_*` variables the
/// README documents (KSWARM_WORKER, KSWARM_GROUP, KSWARM_TOPIC), not kswarm's
/// own (state directory, log settings, supervisor pid, flag fallbacks),
/// though all of them are set where kswarm runs: a real `kswarm run` whose
/// handler dumps `env`.
#[test]
fn a_handler_sees_only_the_documented_kswarm_variables() {
    let b = support::brokers();
    let (topic, group) = (support::unique("henv"), support::unique("g-henv"));
    support::create_topic(&b, &topic, 1);
    support::produce(&b, &topic, "one\n");
    let dir = tempfile::tempdir().unwrap();
    let dump = dir.path().join("env");
    let handler = format!(
        "env > {dump}.tmp && mv {dump}.tmp {dump}; while read -r l; do echo ok; done",
        dump = dump.display()
    );
    let mut run = support::Run::new(&topic, &group)
        .exec(&handler)
        .state(dir.path())
        .env("KSWARM_LOG_LEVEL", "info")
        .env("KSWARM_LOG_FORMAT", "text")
        .env("KSWARM_HOST_ID", "envtest")
        .env("KSWARM_SOMETHING_NEW", "x")
        .env("NOT_KSWARM", "kept")
        .spawn();
    let env = support::wait_for(LIMIT, "the handler's env dump", || {
        std::fs::read_to_string(&dump).ok()
    });
    assert_eq!(support::stop(&mut run), Some(0), "{}", run.stderr_text());
    let vars: HashMap<&str, &str> = env.lines().filter_map(|l| l.split_once('=')).collect();
    let mut kswarm: Vec<&str> = vars
        .keys()
        .copied()
        .filter(|k| k.starts_with("KSWARM_"))
        .collect();
    kswarm.sort_unstable();
    assert_eq!(
        kswarm,
        ["KSWARM_GROUP", "KSWARM_TOPIC", "KSWARM_WORKER"],
        "{env}"
    );
    assert_eq!(vars["KSWARM_WORKER"], "0");
    assert_eq!(vars["KSWARM_GROUP"], group);
    assert_eq!(vars["KSWARM_TOPIC"], topic);
    assert_eq!(
        vars.get("NOT_KSWARM"),
        Some(&"kept"),
        "the rest passes: {env}"
    );
}
