//! `--verdicts`, `--dead-letter-topic`, `--max-record-retries` in classic and
//! consumer groups, as a user runs them: `kswarm run` with a Python handler
//! that says `ok`, `retry` or `reject REASON`; the dead-letter topic read back
//! by librdkafka (tests/peers/dlq_tool.py), commits read by librdkafka.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use nix::sys::signal::Signal;
use support::*;

/// A handler that appends `VERDICT VALUE` per record to `log`, and judges by
/// the number at the end of the value: listed in `reject` -> `reject bad N`,
/// in `retry` -> `retry` (always), else `ok`; after sleeping `delay` seconds.
fn judging_handler(dir: &Path, log: &Path, reject: &str, retry: &str, delay: f64) -> String {
    let script = dir.join("judge.py");
    std::fs::write(
        &script,
        format!(
            r#"import json, sys, time
reject = {{{reject}}}
retry = {{{retry}}}
log = open(sys.argv[1], "a")
for line in sys.stdin:
    time.sleep({delay})
    v = json.loads(line)["value"]
    n = int(v.rsplit("-", 1)[1])
    verdict = "reject bad %d" % n if n in reject else "retry" if n in retry else "ok"
    log.write("%s %s\n" % (verdict.split()[0], v)); log.flush()
    sys.stdout.write(verdict + "\n"); sys.stdout.flush()
"#
        ),
    )
    .unwrap();
    format!("{} -u {} {}", py(), script.display(), log.display())
}

/// One dead-letter record as librdkafka reads it.
#[derive(Debug)]
struct Copy {
    value: String,
    headers: BTreeMap<String, String>,
}

fn read_dead_letters(topic: &str) -> Vec<Copy> {
    read_topic(topic)
        .into_iter()
        .map(|v| Copy {
            value: v["value"].as_str().unwrap_or_default().to_string(),
            headers: v["headers"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, h)| (k.clone(), h.as_str().unwrap_or_default().to_string()))
                .collect(),
        })
        .collect()
}

/// Where each value of `topic` is, (partition, offset), as librdkafka reads
/// it (kswarm's own view is what is under test).
fn source_positions(topic: &str) -> BTreeMap<String, (i32, i64)> {
    read_topic(topic)
        .into_iter()
        .map(|v| {
            (
                v["value"].as_str().unwrap().to_string(),
                (
                    v["partition"].as_i64().unwrap() as i32,
                    v["offset"].as_i64().unwrap(),
                ),
            )
        })
        .collect()
}

/// The log end offset of every partition of `topic` (librdkafka).
fn log_ends(topic: &str, n: usize) -> BTreeMap<i32, i64> {
    let pos = source_positions(topic);
    let mut out: BTreeMap<i32, i64> = (0..n as i32).map(|p| (p, 0)).collect();
    for (p, o) in pos.values() {
        let e = out.entry(*p).or_insert(0);
        *e = (*e).max(o + 1);
    }
    out
}

fn committed_all(topic: &str, group: &str, n: usize) -> BTreeMap<i32, i64> {
    committed(&brokers(), topic, group, n)
        .into_iter()
        .map(|(p, o)| (p, o.unwrap_or(-1)))
        .collect()
}

/// The sum over workers of a counter in `/metrics` (plain HTTP, text format).
fn counter_sum(port: u16, name: &str) -> Option<f64> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let lines: Vec<f64> = text
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect();
    (!lines.is_empty()).then(|| lines.iter().sum())
}

fn verdicts_with_dead_letter_topic(protocol: &str) {
    let dir = tempfile::tempdir().unwrap();
    let topic = unique("verd");
    let dlq = format!("{topic}-dlq");
    let group = unique("verd-g");
    let n = 200;
    create_topic(&brokers(), &topic, 2);
    let log = dir.path().join("log");
    let handler = judging_handler(
        dir.path(),
        &log,
        &(0..n)
            .filter(|i| i % 10 == 7)
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(","),
        &(0..n)
            .filter(|i| i % 10 == 3)
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(","),
        0.0,
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let mut run = Run::new(&topic, &group)
        .workers(2)
        .flag("--metrics-addr", &addr)
        .protocol(protocol)
        .exec(&handler)
        .arg("--verdicts")
        .flag("--dead-letter-topic", &dlq)
        .args(["--max-record-retries", "1", "--commit-interval", "200ms"])
        .state(dir.path())
        .spawn();
    // Records only once both workers own their partitions: a rebalance
    // would start a moving record's attempts again (they are counted per
    // assignment) and the counts below would not be exact.
    wait_run_members(&run, dir.path(), &group, &topic, 2, Duration::from_secs(60));
    produce(&brokers(), &topic, &numbered("v", n));
    let want_ends = log_ends(&topic, 2);
    wait_for(Duration::from_secs(90), "every offset committed", || {
        (committed_all(&topic, &group, 2) == want_ends).then_some(())
    });
    // Per worker counters, summed: 20 rejects, 20 records retried twice, 40 copies.
    wait_for(Duration::from_secs(10), "the verdict counters", || {
        let got = [
            counter_sum(port, "kswarm_records_rejected_total")?,
            counter_sum(port, "kswarm_records_retried_total")?,
            counter_sum(port, "kswarm_records_dead_lettered_total")?,
        ];
        (got == [20.0, 40.0, 40.0]).then_some(())
    });
    assert_eq!(stop(&mut run), Some(0), "{}", run.stderr_text());

    // The handler saw every record; retried ones twice (one retry allowed).
    let lines = read_lines(&log);
    let mut seen: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for l in &lines {
        let (verdict, value) = l.split_once(' ').unwrap();
        seen.entry(value.to_string())
            .or_default()
            .push(verdict.to_string());
    }
    assert_eq!(seen.len(), n, "every record reached the handler");
    for i in (0..n).filter(|i| i % 10 == 3) {
        assert_eq!(seen[&format!("v-{i}")], vec!["retry", "retry"], "v-{i}");
    }

    // The dead-letter topic holds exactly the rejected and the exhausted
    // records, once each on a clean run, with headers that lead back.
    let source = source_positions(&topic);
    let copies = read_dead_letters(&dlq);
    let values: BTreeSet<&str> = copies.iter().map(|c| c.value.as_str()).collect();
    let want: BTreeSet<String> = (0..n)
        .filter(|i| i % 10 == 7 || i % 10 == 3)
        .map(|i| format!("v-{i}"))
        .collect();
    assert_eq!(
        values,
        want.iter().map(String::as_str).collect(),
        "dead-letter values"
    );
    assert_eq!(copies.len(), want.len(), "no copy twice on a clean run");
    for c in &copies {
        let i: usize = c.value.rsplit('-').next().unwrap().parse().unwrap();
        let (p, o) = source[&c.value];
        let h = |k: &str| c.headers.get(k).cloned().unwrap_or_default();
        assert_eq!(h("kswarm.original.topic"), topic, "{c:?}");
        assert_eq!(h("kswarm.original.partition"), p.to_string(), "{c:?}");
        assert_eq!(h("kswarm.original.offset"), o.to_string(), "{c:?}");
        assert_eq!(h("kswarm.group"), group, "{c:?}");
        if i % 10 == 7 {
            assert_eq!(h("kswarm.reason"), format!("bad {i}"), "{c:?}");
            assert_eq!(h("kswarm.attempts"), "1", "{c:?}");
        } else {
            assert!(h("kswarm.reason").contains("retried 1 time(s)"), "{c:?}");
            assert_eq!(h("kswarm.attempts"), "2", "{c:?}");
        }
    }
}

#[test]
fn rejected_and_exhausted_records_go_to_the_dead_letter_topic_classic() {
    verdicts_with_dead_letter_topic("classic");
}

#[test]
fn rejected_and_exhausted_records_go_to_the_dead_letter_topic_consumer() {
    if broker_kind() != Broker::Kafka {
        return; // tansu has no consumer protocol (tests/consumer_protocol.rs)
    }
    verdicts_with_dead_letter_topic("consumer");
}

/// Without --dead-letter-topic a rejected record stops the worker (restarts,
/// then exit 1) with a message naming its partition, offset and first bytes;
/// everything before it is committed, nothing after it.
#[test]
fn without_dead_letter_topic_a_reject_stops_naming_the_record() {
    let dir = tempfile::tempdir().unwrap();
    let topic = unique("verd-stop");
    let group = unique("verd-stop-g");
    create_topic(&brokers(), &topic, 1);
    produce(&brokers(), &topic, &numbered("v", 10));
    let log = dir.path().join("log");
    let handler = judging_handler(dir.path(), &log, "4", "", 0.0);
    let mut run = Run::new(&topic, &group)
        .exec(&handler)
        .args(["--verdicts", "--max-restarts", "1/1m"])
        .state(dir.path())
        .spawn();
    let status = run.wait(Duration::from_secs(90));
    let err = run.stderr_text();
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(last_error(&err).contains("restart budget spent"), "{err}");
    // The worker's own error line (the supervisor's summary repeats it,
    // unless the worker's exit reached it before its report did).
    let line = err
        .lines()
        .find(|l| l.contains("kswarm: error:") && l.contains("gave up on the record"))
        .unwrap_or_else(|| panic!("no error line of the worker: {err}"));
    for want in [
        "partition 0 offset 4",
        "bad 4",
        "begins \"v-4\"",
        "--dead-letter-topic",
    ] {
        assert!(line.contains(want), "{want:?} not in {line}");
    }
    assert_eq!(
        committed_all(&topic, &group, 1)[&0],
        4,
        "committed up to the record"
    );
    let rejected = read_lines(&log)
        .iter()
        .filter(|l| *l == "reject v-4")
        .count();
    assert_eq!(
        rejected,
        2,
        "delivered again after the restart: {:?}",
        read_lines(&log)
    );
}

/// SIGKILL chaos with half the records rejected: workers and handlers are
/// killed while dead-letter copies are being written and offsets committed.
/// A copy must be acknowledged by the broker before its original's offset is
/// committed, so every rejected record ends up in the dead-letter topic (at
/// least once) and every other one was handled: nothing lost.
///
/// The copies are slowed down on purpose: a Kafka producer quota on the
/// dead-letter client id (`kswarm-dead-letter-GROUP`) throttles them to
/// 40 KB/s, so they lag seconds behind the handler, and a kill lands
/// between handling and copy. (A build that counted a record done once its
/// copy was queued lost 831 and 901 of the 2,000 copies in two runs here.)
#[test]
fn sigkill_chaos_loses_no_dead_letter() {
    if broker_kind() != Broker::Kafka {
        return; // the throttle is a Kafka client quota
    }
    let dir = tempfile::tempdir().unwrap();
    let topic = unique("verd-kill");
    let dlq = format!("{topic}-dlq");
    let group = unique("verd-kill-g");
    let n = 4_000;
    create_topic(&brokers(), &topic, 2);
    produce(&brokers(), &topic, &numbered("v", n));
    let quota = Command::new(repo_root().join("scripts/kafka.sh"))
        .args([
            "tool",
            "org.apache.kafka.tools.ConfigCommand",
            "--bootstrap-server",
            &brokers(),
            "--alter",
            "--add-config",
            "producer_byte_rate=40000",
            "--entity-type",
            "clients",
            "--entity-name",
            &format!("kswarm-dead-letter-{group}"),
        ])
        .output()
        .unwrap();
    assert!(
        quota.status.success(),
        "{}",
        String::from_utf8_lossy(&quota.stderr)
    );
    let log = dir.path().join("log");
    let odd: Vec<String> = (0..n)
        .filter(|i| i % 2 == 1)
        .map(|i| i.to_string())
        .collect();
    let handler = judging_handler(dir.path(), &log, &odd.join(","), "", 0.001);
    let mut run = Run::new(&topic, &group)
        .workers(2)
        .exec(&handler)
        .arg("--verdicts")
        .flag("--dead-letter-topic", &dlq)
        .args(["--commit-interval", "100ms", "--max-restarts", "20/1m"])
        .state(dir.path())
        .spawn();
    let want_ends = log_ends(&topic, 2);
    let mut kills = 0;
    for round in 0..7 {
        wait_for(Duration::from_secs(60), "copies being written", || {
            run.stderr_text()
                .contains("goes to the dead-letter topic")
                .then_some(())
        });
        let pids = wait_members(dir.path(), &group, &topic, 2, Duration::from_secs(60));
        if committed_all(&topic, &group, 2) == want_ends {
            break;
        }
        std::thread::sleep(Duration::from_millis(400));
        if round != 3 {
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pids[round as usize % 2]),
                Signal::SIGKILL,
            )
            .unwrap();
        } else {
            // The handler of a worker (not the supervisor, whose command
            // line names the handler too).
            assert!(
                kill_descendants(pids[round as usize % 2]) > 0,
                "no handler to kill"
            );
        }
        kills += 1;
    }
    wait_for(Duration::from_secs(120), "every offset committed", || {
        (committed_all(&topic, &group, 2) == want_ends).then_some(())
    });
    assert_eq!(stop(&mut run), Some(0), "{}", run.stderr_text());
    assert!(kills >= 2, "the run ended before the kills: {kills}");

    let copies: BTreeSet<String> = read_dead_letters(&dlq)
        .into_iter()
        .map(|c| c.value)
        .collect();
    let handled: BTreeSet<String> = read_lines(&log)
        .iter()
        .filter_map(|l| l.strip_prefix("ok ").map(str::to_string))
        .collect();
    let lost_copies: Vec<usize> = (0..n)
        .filter(|i| i % 2 == 1 && !copies.contains(&format!("v-{i}")))
        .collect();
    let lost_ok: Vec<usize> = (0..n)
        .filter(|i| i % 2 == 0 && !handled.contains(&format!("v-{i}")))
        .collect();
    assert!(
        lost_copies.is_empty() && lost_ok.is_empty(),
        "after {kills} kills: {} rejected records missing from the dead-letter topic {:?}, {} ok records never handled {:?}",
        lost_copies.len(),
        &lost_copies[..lost_copies.len().min(10)],
        lost_ok.len(),
        &lost_ok[..lost_ok.len().min(10)]
    );
}

/// A handler whose lines are not verdicts breaks the contract: the worker
/// stops with a message showing the line and the forms expected.
#[test]
fn a_line_that_is_no_verdict_names_the_forms() {
    let dir = tempfile::tempdir().unwrap();
    let topic = unique("verd-bad");
    let group = unique("verd-bad-g");
    create_topic(&brokers(), &topic, 1);
    produce(&brokers(), &topic, &numbered("v", 3));
    let mut run = Run::new(&topic, &group)
        .exec("sed -u s/^/done:/")
        .args(["--verdicts", "--max-restarts", "0/1m"])
        .state(dir.path())
        .spawn();
    let status = run.wait(Duration::from_secs(60));
    let err = run.stderr_text();
    assert_eq!(status.code(), Some(1), "{err}");
    // The worker's own error line (see above).
    assert!(
        err.lines().any(|l| l.contains("kswarm: error:")
            && l.contains("'ok', 'retry' or 'reject REASON'")
            && l.contains("\"done:{")),
        "{err}"
    );
    assert_eq!(committed(&brokers(), &topic, &group, 1)[&0], None);
}

/// Inconsistent flags exit 2 naming the flag, before any connection.
#[test]
fn verdict_flags_out_of_place_exit_2() {
    for (args, want) in [
        (
            &["--exec-batch", "cat", "--verdicts"][..],
            "--verdicts needs an --exec handler",
        ),
        (&["--verdicts"][..], "--verdicts needs an --exec handler"),
        (
            &["--exec", "cat", "--dead-letter-topic", "d"][..],
            "--dead-letter-topic needs --verdicts",
        ),
        (
            &["--exec", "cat", "--max-record-retries", "2"][..],
            "--max-record-retries needs --verdicts",
        ),
        (
            &["--exec", "cat", "--verdicts", "--dead-letter-topic", "same"][..],
            "is the topic being read",
        ),
        (
            &[
                "--exec",
                "cat",
                "--verdicts",
                "--dead-letter-topic",
                "bad name",
            ][..],
            "--dead-letter-topic",
        ),
        (
            &[
                "--exec",
                "cat",
                "--verdicts",
                "--max-record-retries",
                "lots",
            ][..],
            "--max-record-retries",
        ),
    ] {
        let out = Run::new("same", "g")
            .brokers("127.0.0.1:1")
            .bare()
            .args(args)
            .output();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {want:?} not in {err}");
    }
}

/// Without --verdicts, a record that kills the handler: the message names
/// the first record not acknowledged, partition, offset and the first bytes
/// of its value (read again from the broker), and everything before it is
/// committed.
#[test]
fn a_handler_crash_names_the_record_it_died_on() {
    let dir = tempfile::tempdir().unwrap();
    let topic = unique("verd-crash");
    let group = unique("verd-crash-g");
    create_topic(&brokers(), &topic, 1);
    produce(&brokers(), &topic, &numbered("v", 6));
    let script = dir.path().join("crash.py");
    std::fs::write(
        &script,
        "import json, sys\nfor line in sys.stdin:\n    if json.loads(line)['value'] == 'v-3':\n        sys.exit(3)\n    print('ok', flush=True)\n",
    )
    .unwrap();
    let handler = format!("{} -u {}", py(), script.display());
    let mut run = Run::new(&topic, &group)
        .exec(&handler)
        .args(["--max-restarts", "0/1m"])
        .state(dir.path())
        .spawn();
    let status = run.wait(Duration::from_secs(60));
    let err = run.stderr_text();
    assert_eq!(status.code(), Some(1), "{err}");
    // The worker's own error line (the supervisor's summary repeats it,
    // unless the worker's exit reached it before its report did).
    let line = err
        .lines()
        .find(|l| l.contains("kswarm: error:") && l.contains("exit status 3"))
        .unwrap_or_else(|| panic!("no error line of the worker: {err}"));
    for want in [
        "partition 0 offset 3",
        "begins \"v-3\"",
        "--dead-letter-topic",
    ] {
        assert!(line.contains(want), "{want:?} not in {line}");
    }
    assert_eq!(committed_all(&topic, &group, 1)[&0], 3);
}
