//! `--output-topic` on Apache Kafka: the handler's results and the input
//! offsets in one transaction. Under chaos (SIGKILL of workers, handler
//! processes and the supervisor, a broker restart) a `read_committed`
//! reader (librdkafka) of the output topic sees every expected result
//! exactly once: none missing, none twice, nothing else. A
//! `read_uncommitted` reader of the same topic may see the results of the
//! aborted transactions; the test prints how many.
//!
//! The tests of this file take turns (one lock): one of them restarts the
//! suite's broker.
mod support;

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use rand::{Rng, SeedableRng};
use support::{create_topic, descendants, numbered, produce_with, wait_for, Run};

static TURNS: Mutex<()> = Mutex::new(());

const RECORDS: usize = 100_000;
const CHAOS: Duration = Duration::from_secs(24);

/// Reads a topic from the start with an isolation level until it has `n`
/// records or nothing came for 8 s; prints each value on a line.
const READER: &str = r#"
import sys
from confluent_kafka import Consumer
b, t, n, iso = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
c = Consumer({"bootstrap.servers": b, "group.id": "reader-" + iso + "-" + t,
              "auto.offset.reset": "earliest", "isolation.level": iso,
              "enable.auto.commit": False})
c.subscribe([t])
got, idle = 0, 0
out = sys.stdout.buffer
while got < n and idle < 8:
    batch = c.consume(10000, 1.0)
    if not batch:
        idle += 1
        continue
    idle = 0
    for m in batch:
        if m.error():
            continue
        out.write((m.value() or b"") + b"\n")
        got += 1
out.flush()
c.close()
"#;

/// The one-to-one handler: a few thousand records a second per worker, so
/// that the workers are busy all through the chaos and kills land inside
/// open transactions.
const ONE_TO_ONE: &str = r#"
import sys, time
for line in sys.stdin:
    sys.stdout.write("r-" + line)
    sys.stdout.flush()
    time.sleep(0.0002)
"#;

/// The one-to-many handler: two results per record (one with a key), none
/// for every tenth; acknowledges with @done.
const FAN_OUT: &str = r#"
import json, sys, time
out = sys.stdout
for line in sys.stdin:
    v = line.rstrip("\n")
    if int(v.rsplit("-", 1)[1]) % 10 != 0:
        out.write("@out a-" + v + "\n")
        out.write("@json " + json.dumps({"key": v, "value": "b-" + v, "headers": {"from": v}}) + "\n")
    out.write("@done\n")
    out.flush()
    time.sleep(0.0002)
"#;

/// The same with the Java KafkaConsumer (tests/peers/TxnReader.java).
fn java_values(b: &str, topic: &str, n: usize, iso: &str) -> Vec<String> {
    let build = support::build_dir();
    let peer = build.join("java-txn-peer");
    let cp = format!("{}:{}/kafka/libs/*", peer.display(), build.display());
    let out = Command::new("java")
        .arg(format!(
            "-Dlog4j2.configurationFile={}",
            peer.join("log4j2.yaml").display()
        ))
        .args([
            "-cp",
            &cp,
            "TxnReader",
            b,
            topic,
            iso,
            &n.to_string(),
            "8000",
            "values",
        ])
        .output()
        .expect("run TxnReader (scripts/peers.sh install)");
    assert!(out.status.success(), "{}", support::stderr(&out));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

fn read_values(dir: &std::path::Path, b: &str, topic: &str, n: usize, iso: &str) -> Vec<String> {
    let script = dir.join("reader.py");
    std::fs::write(&script, READER).unwrap();
    let out = Command::new(support::python())
        .arg(&script)
        .args([b, topic, &n.to_string(), iso])
        .output()
        .expect("run the reader");
    assert!(out.status.success(), "{}", support::stderr(&out));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// Every expected value as often as expected (once, unless the input
/// holds it twice), and nothing else.
fn assert_exactly_once(got: &[String], expected: &[String]) {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for v in got {
        *counts.entry(v.as_str()).or_default() += 1;
    }
    let mut want: BTreeMap<&str, usize> = BTreeMap::new();
    for v in expected {
        *want.entry(v.as_str()).or_default() += 1;
    }
    let dups: Vec<(&str, usize)> = counts
        .iter()
        .filter(|(v, &c)| want.get(*v).is_some_and(|&w| c > w))
        .map(|(v, &c)| (*v, c))
        .collect();
    let missing: Vec<&str> = want
        .iter()
        .filter(|(v, &w)| counts.get(*v).is_none_or(|&c| c < w))
        .map(|(v, _)| *v)
        .collect();
    let extra: Vec<&&str> = counts.keys().filter(|v| !want.contains_key(**v)).collect();
    assert!(
        dups.is_empty() && missing.is_empty() && extra.is_empty(),
        "read_committed saw {} results: {} duplicated (e.g. {:?}), {} missing (e.g. {:?}), {} unexpected (e.g. {:?})",
        got.len(),
        dups.len(),
        &dups[..dups.len().min(5)],
        missing.len(),
        &missing[..missing.len().min(5)],
        extra.len(),
        &extra[..extra.len().min(5)]
    );
    assert_eq!(got.len(), expected.len());
}

/// The group's committed offsets of the 2-partition `topic`, summed; None
/// while they cannot be read (right after the broker restart the group
/// coordinator may still be loading: NOT_COORDINATOR), so a wait asks again.
fn committed_total(b: &str, topic: &str, group: &str) -> Option<i64> {
    let out = Command::new(support::python())
        .arg(support::repo_root().join("tests/peers/ck_member.py"))
        .args(["committed", b, topic, group, "2"])
        .output()
        .expect("run ck_member.py");
    if !out.status.success() {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    Some(
        v["committed"]
            .as_object()?
            .values()
            .map(|o| o.as_i64().unwrap_or(0))
            .sum(),
    )
}

fn is_worker(pid: i32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| c.split(|&b| b == 0).nth(1) == Some(b"spawned".as_slice()))
        .unwrap_or(false)
}

/// SIGKILL the suite's broker and start it again on its log dirs.
fn restart_broker(b: &str) {
    let pid = support::broker_pid();
    kill(Pid::from_raw(pid), Signal::SIGKILL).unwrap();
    wait_for(Duration::from_secs(20), "the broker to die", || {
        (!support::alive(pid)).then_some(())
    });
    // Its parent may not have reaped it yet (kafka.sh checks kill -0): try
    // again for a while.
    let port = b.rsplit(':').next().unwrap();
    wait_for(Duration::from_secs(60), "the broker to start again", || {
        let st = Command::new(support::repo_root().join("scripts/kafka.sh"))
            .args(["restart", port])
            .env("KSWARM_BUILD_DIR", support::build_dir())
            .status()
            .expect("scripts/kafka.sh restart");
        if !st.success() {
            std::thread::sleep(Duration::from_secs(1));
        }
        st.success().then_some(())
    });
}

struct Chaos {
    handler: String,
    format: &'static str,
    /// The results of one input value.
    results: fn(&str) -> Vec<String>,
    restart_broker: bool,
}

fn run_chaos(name: &str, c: Chaos) {
    assert_eq!(
        support::broker_kind(),
        support::Broker::Kafka,
        "a Kafka-only test: tansu has no aborted transactions"
    );
    let b = support::brokers();
    let (topic, out, group) = (
        support::unique(&format!("{name}-in")),
        support::unique(&format!("{name}-out")),
        support::unique(&format!("g-{name}")),
    );
    let dir = tempfile::tempdir().unwrap();
    create_topic(&b, &topic, 2);
    create_topic(&b, &out, 2);
    produce_with(
        &b,
        &topic,
        &numbered("c", RECORDS / 2),
        &["--batch-size", "1000"],
    );
    let state = dir.path().join("state");
    let start_run = |n: u32| {
        Run::new(&topic, &group)
            .name(&format!("kswarm run #{n}"))
            .brokers(&b)
            .workers(2)
            .format(c.format)
            .exec(&c.handler)
            .flag("--output-topic", &out)
            .flag("--commit-interval", "200ms")
            .args(["--shutdown-timeout", "5s", "--max-restarts", "1000/60s"])
            .state(&state)
            .spawn()
    };
    let mut sup = start_run(0);
    // The second half comes during the chaos, after the broker restart (a
    // produce cut off by it could leave records written twice).
    let start_producer = || {
        let (b, topic) = (b.clone(), topic.clone());
        std::thread::spawn(move || {
            let half = RECORDS / 2;
            for i in 0..10 {
                let lines: String = (0..half / 10)
                    .map(|j| format!("c-{}\n", half + i * (half / 10) + j))
                    .collect();
                produce_with(&b, &topic, &lines, &["--batch-size", "1000"]);
                std::thread::sleep(Duration::from_millis(1500));
            }
        })
    };
    let seed: u64 = rand::random();
    eprintln!("{name}: chaos seed {seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let (mut workers, mut handlers) = (0, 0);
    let mut sup_killed = false;
    std::thread::sleep(Duration::from_secs(3));
    if c.restart_broker {
        let t = Instant::now();
        restart_broker(&b);
        eprintln!("{name}: broker restarted (down {:?})", t.elapsed());
    }
    let producer = start_producer();
    let t0 = Instant::now();
    while t0.elapsed() < CHAOS {
        std::thread::sleep(Duration::from_millis(rng.gen_range(700..2000)));
        if !sup_killed && t0.elapsed() > CHAOS / 2 {
            sup_killed = true;
            sup.signal(Signal::SIGKILL);
            sup.wait(Duration::from_secs(5));
            std::thread::sleep(Duration::from_millis(500));
            sup = start_run(1);
            continue;
        }
        let kill_worker = rng.gen_bool(0.5);
        let pool: Vec<i32> = descendants(sup.pid())
            .into_iter()
            .filter(|&p| is_worker(p) == kill_worker)
            .collect();
        if pool.is_empty() {
            continue;
        }
        let _ = kill(
            Pid::from_raw(pool[rng.gen_range(0..pool.len())]),
            Signal::SIGKILL,
        );
        if kill_worker {
            workers += 1;
        } else {
            handlers += 1;
        }
    }
    producer.join().unwrap();
    eprintln!("{name}: chaos over: {workers} workers and {handlers} handler processes killed, the supervisor once");
    assert!(
        workers >= 3 && handlers >= 3,
        "{workers} workers, {handlers} handlers killed"
    );
    wait_for(Duration::from_secs(120), "every input committed", || {
        (committed_total(&b, &topic, &group)? as usize >= RECORDS).then_some(())
    });
    sup.signal(Signal::SIGTERM);
    let st = sup.wait(Duration::from_secs(60));
    assert_eq!(st.code(), Some(0), "{}", sup.stderr_text());
    // The expected results follow the input as written: a produce that the
    // broker restart cut off may have written some records twice (kswarm
    // produce is at least once), and each copy is a record of its own.
    let input = read_values(dir.path(), &b, &topic, usize::MAX / 2, "read_committed");
    assert!(input.len() >= RECORDS, "{} input records", input.len());
    let expected: Vec<String> = input.iter().flat_map(|v| (c.results)(v)).collect();
    let got = read_values(dir.path(), &b, &out, expected.len() + 1, "read_committed");
    let uncommitted = read_values(dir.path(), &b, &out, usize::MAX / 2, "read_uncommitted");
    eprintln!(
        "{name}: read_committed saw {} results, read_uncommitted {} (the difference: results of aborted transactions)",
        got.len(),
        uncommitted.len()
    );
    assert!(uncommitted.len() >= got.len());
    assert_exactly_once(&got, &expected);
    // The Java consumer agrees: read_committed sees each result once, and
    // read_uncommitted sees the aborted ones too.
    let java = java_values(&b, &out, expected.len(), "read_committed");
    assert_exactly_once(&java, &expected);
    let java_all = java_values(&b, &out, uncommitted.len(), "read_uncommitted");
    eprintln!(
        "{name}: the Java consumer saw {} results read_committed, {} read_uncommitted",
        java.len(),
        java_all.len()
    );
    assert_eq!(java_all.len(), uncommitted.len());
}

#[test]
fn one_to_one_results_are_exactly_once_through_kills_and_a_broker_restart() {
    let _turn = TURNS.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("one_to_one.py");
    std::fs::write(&script, ONE_TO_ONE).unwrap();
    run_chaos(
        "eo1",
        Chaos {
            handler: format!("{} {}", support::py(), script.display()),
            format: "value",
            results: |v| vec![format!("r-{v}")],
            restart_broker: true,
        },
    );
}

#[test]
fn one_to_many_results_are_exactly_once_through_kills() {
    let _turn = TURNS.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("fan_out.py");
    std::fs::write(&script, FAN_OUT).unwrap();
    run_chaos(
        "eon",
        Chaos {
            handler: format!("{} {}", support::py(), script.display()),
            format: "value",
            results: |v| {
                let n: u64 = v.rsplit('-').next().unwrap().parse().unwrap();
                if n % 10 == 0 {
                    vec![]
                } else {
                    vec![format!("a-{v}"), format!("b-{v}")]
                }
            },
            restart_broker: false,
        },
    );
}

#[test]
fn where_exactly_once_cannot_hold_kswarm_says_so() {
    let _turn = TURNS.lock().unwrap_or_else(|e| e.into_inner());
    let b = support::brokers();
    let topic = support::unique("eo-bad");
    create_topic(&b, &topic, 1);
    let cases: [(&[&str], &str); 4] = [
        (&["--exec", "cat", "--group-protocol", "share"], "share"),
        (&["--exec-batch", "cat"], "--exec-batch"),
        (&[], "needs an --exec handler"),
        (&["--exec", "cat", "-X", "output.topic="], "--output-topic"),
    ];
    for (extra, needle) in cases {
        let mut cmd = support::kswarm();
        cmd.args(["run", "-b", &b, "-t", &topic, "-g", "g-eo-bad"]);
        if !extra.contains(&"-X") {
            cmd.args(["--output-topic", "eo-out-never"]);
        }
        let out = cmd.args(extra).output().unwrap();
        let err = support::stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {err}");
        assert!(err.contains(needle), "{extra:?}: names {needle}: {err}");
    }
    // A missing output topic stops the run with 2, naming the flag.
    let missing = support::unique("eo-missing");
    let out = support::kswarm()
        .args([
            "run",
            "-b",
            &b,
            "-t",
            &topic,
            "-g",
            "g-eo-missing",
            "--exec",
            "cat",
        ])
        .args(["--output-topic", &missing])
        .output()
        .unwrap();
    let err = support::stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("--output-topic") && err.contains(&missing),
        "{err}"
    );

    // A result over the output topic's max.message.bytes stops the run with
    // 2 naming the flag and the limit; nothing is committed.
    let small = support::unique("eo-small");
    let admin = format!(
        "from confluent_kafka.admin import AdminClient, NewTopic\n\
         a = AdminClient({{'bootstrap.servers': '{b}'}})\n\
         t = NewTopic('{small}', 1, 1, config={{'max.message.bytes': '2000'}})\n\
         [f.result() for f in a.create_topics([t]).values()]\n"
    );
    let made = Command::new(support::python())
        .args(["-c", &admin])
        .status()
        .unwrap();
    assert!(made.success());
    let group = support::unique("g-eo-big");
    produce_with(&b, &topic, &numbered("big", 3), &[]);
    let out = support::kswarm()
        .args(["run", "-b", &b, "-t", &topic, "-g", &group, "-w", "1"])
        .args(["--output-topic", &small, "--format", "value"])
        .args([
            "--exec",
            "while read l; do head -c 5000 /dev/zero | tr '\\0' a; echo; done",
        ])
        .output()
        .unwrap();
    let err = support::stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    let last = support::last_error(&err);
    assert!(
        last.contains("--output-topic") && last.contains("max.message.bytes"),
        "{last}"
    );
    let committed = support::committed(&b, &topic, &group, 1);
    assert_eq!(
        committed.get(&0),
        Some(&None),
        "nothing committed: {committed:?}"
    );
}

/// A worker stopped past its session (SIGSTOP) loses its partitions to the
/// other one; when it goes on (SIGCONT) its open transaction cannot commit
/// (KIP-447: its generation is gone): it aborts it, rejoins, and none of
/// its results of that transaction become visible.
#[test]
fn a_zombie_worker_commits_nothing_and_rejoins() {
    let _turn = TURNS.lock().unwrap_or_else(|e| e.into_inner());
    let b = support::brokers();
    let (topic, out, group) = (
        support::unique("zin"),
        support::unique("zout"),
        support::unique("g-zombie"),
    );
    let dir = tempfile::tempdir().unwrap();
    create_topic(&b, &topic, 2);
    create_topic(&b, &out, 2);
    let n = 30_000;
    produce_with(&b, &topic, &numbered("z", n), &["--batch-size", "1000"]);
    // About 1,000 records a second per worker: still busy when stopped.
    let handler = r#"while IFS= read -r l; do printf 'z-%s\n' "$l"; sleep 0.001; done"#;
    let mut run = Run::new(&topic, &group)
        .workers(2)
        .format("value")
        .exec(handler)
        .flag("--output-topic", &out)
        .flag("--commit-interval", "2s")
        .state(dir.path())
        .spawn();
    wait_for(Duration::from_secs(60), "commits under way", || {
        (committed_total(&b, &topic, &group)? > 2000).then_some(())
    });
    let zombie = descendants(run.pid())
        .into_iter()
        .find(|&p| is_worker(p))
        .expect("a worker");
    kill(Pid::from_raw(zombie), Signal::SIGSTOP).unwrap();
    eprintln!("worker {zombie} stopped");
    // Past the 6 s session: the other worker takes every partition.
    std::thread::sleep(Duration::from_secs(14));
    kill(Pid::from_raw(zombie), Signal::SIGCONT).unwrap();
    wait_for(Duration::from_secs(120), "every input committed", || {
        (committed_total(&b, &topic, &group)? as usize >= n).then_some(())
    });
    assert!(
        support::alive(zombie),
        "the zombie rejoined instead of dying: {}",
        run.stderr_text()
    );
    run.signal(Signal::SIGTERM);
    let st = run.wait(Duration::from_secs(60));
    let err = run.stderr_text();
    assert_eq!(st.code(), Some(0), "{err}");
    assert!(
        err.contains("transaction aborted") && err.contains("KIP-447"),
        "the zombie's transaction was aborted for its generation: {err}"
    );
    let got = read_values(dir.path(), &b, &out, n + 1, "read_committed");
    let expected: Vec<String> = (0..n).map(|i| format!("z-z-{i}")).collect();
    assert_exactly_once(&got, &expected);
}

/// With --verdicts, a rejected record goes to the dead-letter topic in the
/// same transaction as the results and the offsets: the output has the
/// results of the good records, the dead-letter topic a copy of each
/// rejected one, each once.
#[test]
fn rejected_records_go_to_the_dead_letter_topic_in_the_transaction() {
    let _turn = TURNS.lock().unwrap_or_else(|e| e.into_inner());
    let b = support::brokers();
    let (topic, out, dead, group) = (
        support::unique("vin"),
        support::unique("vout"),
        support::unique("vdead"),
        support::unique("g-vdead"),
    );
    let dir = tempfile::tempdir().unwrap();
    create_topic(&b, &topic, 2);
    create_topic(&b, &out, 2);
    let n = 2000;
    produce_with(&b, &topic, &numbered("v", n), &[]);
    // Every fifth record is rejected; the others give one result each.
    let handler = r#"while IFS= read -r l; do case "${l##*-}" in *[05]) echo "@reject bad $l";; *) echo "ok-$l";; esac; done"#;
    let mut run = Run::new(&topic, &group)
        .workers(2)
        .format("value")
        .exec(handler)
        .arg("--verdicts")
        .flag("--dead-letter-topic", &dead)
        .flag("--output-topic", &out)
        .state(dir.path())
        .spawn();
    wait_for(Duration::from_secs(90), "every input committed", || {
        (committed_total(&b, &topic, &group)? as usize >= n).then_some(())
    });
    run.signal(Signal::SIGTERM);
    assert_eq!(run.wait(Duration::from_secs(60)).code(), Some(0));
    let rejected = |i: &usize| i % 5 == 0;
    let good: Vec<String> = (0..n)
        .filter(|i| !rejected(i))
        .map(|i| format!("ok-v-{i}"))
        .collect();
    let got = read_values(dir.path(), &b, &out, good.len() + 1, "read_committed");
    assert_exactly_once(&got, &good);
    let bad: Vec<String> = (0..n).filter(rejected).map(|i| format!("v-{i}")).collect();
    let copies = java_values(&b, &dead, bad.len(), "read_committed");
    assert_exactly_once(&copies, &bad);
}
