//! Share groups (KIP-932, `--group-protocol share`) on Apache Kafka 4.4:
//! more workers than partitions all get records; a clean stop leaves nothing
//! to deliver again (every record was ACCEPTed); a Java KafkaShareConsumer
//! shares the group with kswarm's workers; SIGKILLed workers and handlers
//! lose nothing; a broker without share groups is a usage error (exit 2).
//! The other versions of the share-group matrix (docs/share-groups.md) (4.1 with share.version=1,
//! 4.2) get one short run each, on a node of their own
//! (`KSWARM_KAFKA_VERSION=.. scripts/kafka.sh start`; scripts/test.sh
//! installs them).
//!
//! Each test uses its own topic and group. On tansu, which has no share
//! groups, each test checks instead that kswarm refuses them (exit 2).
//! Run with a broker, e.g.
//! `KSWARM_KAFKA_PROPS='group.initial.rebalance.delay.ms=0' scripts/kafka.sh start 29600`, then
//! `KSWARM_TEST_BROKERS=127.0.0.1:29600 cargo test --release --test share`.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use support::*;

/// A handler that appends each record line to DIR/wSLOT.jsonl (the worker's
/// slot from KSWARM_WORKER), sleeping `secs` first, then acknowledges it.
/// `marker` is on its command line (for pkill-by-pid in the chaos test).
fn slot_handler(dir: &Path, secs: f64, marker: &str) -> String {
    format!(
        "{} -c 'import sys, os, time\nf=open(os.path.join(sys.argv[1], \"w\" + os.environ[\"KSWARM_WORKER\"] + \".jsonl\"), \"a\")\nfor l in sys.stdin:\n    {}f.write(l); f.flush(); sys.stdout.write(\"ok\\n\"); sys.stdout.flush()\n' {} {marker}",
        py(),
        if secs > 0.0 {
            format!("time.sleep({secs}); ")
        } else {
            String::new()
        },
        dir.display()
    )
}

/// Every record line the handlers wrote, per file name.
fn seen_by_file(dir: &Path) -> BTreeMap<String, Vec<Seen>> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if name.ends_with(".jsonl") {
            out.insert(name, read_seen(&e.path()));
        }
    }
    out
}

fn all_seen(dir: &Path) -> Vec<Seen> {
    seen_by_file(dir).into_values().flatten().collect()
}

fn temp_dir(name: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(unique(name));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Wait until every one of `n` workers of the run is a member with partitions.
fn wait_assigned(run: &Proc, state: &Path, group: &str, topic: &str, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(s) = run_state(state, group, topic) {
            if s.workers.len() == n && s.workers.iter().all(|w| !w.partitions.is_empty()) {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{n} workers of {group} not assigned within 60 s: {:?}\n{}",
            run_state(state, group, topic),
            run.stderr_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Wait until `n` records PREFIX-i are among the handled ones; the handled.
fn wait_all(dir: &Path, prefix: &str, n: usize, within: Duration, run: &Proc) -> Vec<Seen> {
    let deadline = Instant::now() + within;
    loop {
        let seen = all_seen(dir);
        let t = tally(&seen);
        let miss = missing(&t.values, prefix, n);
        if miss.is_empty() {
            return seen;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {n} records never handled within {within:?} (e.g. {:?}); {} distinct handled\n{}",
            miss.len(),
            &miss[..miss.len().min(5)],
            t.distinct,
            run.stderr_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Set a share group's config (`name=value`) with Kafka's ConfigCommand.
fn set_group_config(b: &str, group: &str, setting: &str) {
    let out = Command::new(repo_root().join("scripts/kafka.sh"))
        .args([
            "tool",
            "org.apache.kafka.tools.ConfigCommand",
            "--bootstrap-server",
            b,
            "--alter",
            "--entity-type",
            "groups",
            "--entity-name",
            group,
            "--add-config",
            setting,
        ])
        .output()
        .expect("scripts/kafka.sh tool ConfigCommand");
    assert!(
        out.status.success(),
        "setting {setting}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The suite's broker, when it has share groups. tansu has none: there
/// every share test checks instead that kswarm refuses with exit 2.
fn share_broker() -> Option<String> {
    match broker_kind() {
        Broker::Kafka => Some(brokers()),
        Broker::Tansu => {
            assert_share_refused(&brokers());
            None
        }
    }
}

/// One share run handled to the end: a fresh 2-partition topic, the
/// group's configs set first (`name=value`, by Kafka's tool), `workers`
/// workers whose handlers take `secs` per record and write what they see
/// into `dir`, `n` records produced once all are assigned and every one
/// seen, then a clean stop (checked). Returns what the run wrote on stderr.
struct Handled {
    topic: String,
    group: String,
    dir: PathBuf,
    stderr: String,
}

fn handle_all_then_stop(
    b: &str,
    name: &str,
    workers: usize,
    secs: f64,
    n: usize,
    configs: &[&str],
) -> Handled {
    let topic = unique(name);
    let group = unique(&format!("{name}-g"));
    let dir = temp_dir(name);
    create_topic(b, &topic, 2);
    for setting in configs {
        set_group_config(b, &group, setting);
    }
    let state = temp_dir(&format!("{name}-state"));
    let handler = slot_handler(&dir, secs, &format!("{name}-handler"));
    let mut run = Run::new(&topic, &group)
        .name(name)
        .workers(workers)
        .protocol("share")
        .exec(&handler)
        .state(&state)
        .spawn();
    wait_assigned(&run, &state, &group, &topic, workers);
    produce(b, &topic, &numbered(name, n));
    wait_all(&dir, name, n, Duration::from_secs(120), &run);
    // Let the last acknowledgements go out, then stop.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(stop(&mut run), Some(0), "{}", run.stderr_text());
    Handled {
        topic,
        group,
        dir,
        stderr: run.stderr_text(),
    }
}

#[test]
fn eight_workers_share_two_partitions_and_a_clean_stop_accepts_everything() {
    let Some(b) = share_broker() else { return };
    let n = 2000;
    let Handled {
        topic,
        group,
        dir,
        stderr,
    } = handle_all_then_stop(&b, "share-8w", 8, 0.004, n, &[]);
    assert!(
        stderr.contains(
            "a ShareFetch asks for at most 1000 records (share.partition.max.record.locks 2000)"
        ),
        "half the broker's default lock limit: {stderr}"
    );

    let per_worker: BTreeMap<String, usize> = seen_by_file(&dir)
        .into_iter()
        .map(|(k, v)| (k, v.len()))
        .collect();
    assert_eq!(
        per_worker.len(),
        8,
        "every one of the 8 workers handles records of the 2 partitions: {per_worker:?}"
    );
    assert!(per_worker.values().all(|&c| c > 0), "{per_worker:?}");
    let t = tally(&all_seen(&dir));
    assert_eq!(t.distinct, n);
    assert_eq!(
        t.duplicates, 0,
        "no record is delivered twice without a crash: {per_worker:?}"
    );

    // Every record was ACCEPTed before the clean stop: the same group has
    // nothing left to deliver, now or after the record locks (30 s) run out.
    let dir2 = temp_dir("share-8w-again");
    let state2 = temp_dir("share-8w-state2");
    let handler2 = slot_handler(&dir2, 0.0, "share-8w-again");
    let mut again = Run::new(&topic, &group)
        .name("share-8w-again")
        .workers(2)
        .protocol("share")
        .exec(&handler2)
        .state(&state2)
        .spawn();
    wait_assigned(&again, &state2, &group, &topic, 2);
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(stop(&mut again), Some(0), "{}", again.stderr_text());
    let redelivered = all_seen(&dir2);
    assert!(
        redelivered.is_empty(),
        "{} record(s) delivered again after a clean stop (not ACCEPTed), e.g. {:?}",
        redelivered.len(),
        redelivered.first()
    );
}

/// A group whose partitions lock fewer records than the broker's default
/// gets ShareFetch requests of half its limit: asking for more took every
/// lock, and each next fetch waited out fetch.wait.max.ms (200,000 records
/// here took 10.8-39.9 s that way, 3.8-6.8 s now).
#[test]
fn a_group_with_fewer_record_locks_asks_for_half_of_them() {
    let Some(b) = share_broker() else { return };
    let n = 3000;
    let locks = ["share.partition.max.record.locks=200"];
    let run = handle_all_then_stop(&b, "share-locks", 2, 0.0, n, &locks);
    assert!(
        run.stderr.contains(
            "a ShareFetch asks for at most 100 records (share.partition.max.record.locks 200)"
        ),
        "the group's own lock limit is read: {}",
        run.stderr
    );
    let t = tally(&all_seen(&run.dir));
    assert_eq!((t.distinct, t.duplicates), (n, 0), "{}", run.stderr);
}

#[test]
fn a_java_share_consumer_shares_the_group_with_kswarm() {
    let Some(b) = share_broker() else { return };
    let classes = support::build_dir().join("java-share-peer");
    assert!(
        classes.join("JavaShareMember.class").exists(),
        "the Java share peer is not compiled in {}: run scripts/peers.sh install",
        classes.display()
    );
    let topic = unique("share-java");
    let group = unique("share-java-g");
    let dir = temp_dir("share-java");
    create_topic(&b, &topic, 2);
    let java_out = dir.join("java.jsonl");
    let mut java = Command::new("java");
    java.arg("-cp")
        .arg(format!(
            "{}:{}/*",
            classes.display(),
            support::build_dir().join("kafka/libs").display()
        ))
        .arg(format!(
            "-Dlog4j2.configurationFile={}",
            support::build_dir().join("java-peer/log4j2.yaml").display()
        ))
        .args(["JavaShareMember", &b, &topic, &group])
        .arg(&java_out);
    // Its stdin stays open while the test runs: closing it stops the peer.
    java.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut java = java.spawn().expect("start java");
    let java_stdin = java.stdin.take();
    let state = temp_dir("share-java-state");
    let handler = slot_handler(&dir, 0.01, "share-java-handler");
    let mut run = Run::new(&topic, &group)
        .name("share-java")
        .workers(2)
        .protocol("share")
        .exec(&handler)
        .state(&state)
        .spawn();
    wait_assigned(&run, &state, &group, &topic, 2);
    // Give the Java member time to join too.
    std::thread::sleep(Duration::from_secs(4));
    let n = 3000;
    produce(&b, &topic, &numbered("sj", n));
    let all = wait_all(&dir, "sj", n, Duration::from_secs(120), &run);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(stop(&mut run), Some(0), "{}", run.stderr_text());
    drop(java_stdin);
    let deadline = Instant::now() + Duration::from_secs(30);
    while java.try_wait().unwrap().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = java.kill();
    let _ = java.wait();

    let by_java: BTreeSet<String> = read_seen(&java_out).into_iter().map(|s| s.value).collect();
    let by_kswarm: BTreeSet<String> = seen_by_file(&dir)
        .into_iter()
        .filter(|(k, _)| k.starts_with('w'))
        .flat_map(|(_, v)| v.into_iter().map(|s| s.value))
        .collect();
    assert!(
        !by_java.is_empty(),
        "the Java share consumer got no records"
    );
    assert!(!by_kswarm.is_empty(), "kswarm's workers got no records");
    let union: BTreeSet<String> = by_java.union(&by_kswarm).cloned().collect();
    assert!(missing(&union, "sj", n).is_empty());
    assert!(all.len() >= n);
    let overlap = by_java.intersection(&by_kswarm).count();
    eprintln!(
        "java handled {}, kswarm {}, overlap {overlap}",
        by_java.len(),
        by_kswarm.len(),
    );
    // A clean run: what one side accepted never reaches the other, nor
    // the same side again.
    assert_eq!(
        overlap, 0,
        "records handled by both the Java member and kswarm on a clean run"
    );
    let t = tally(&all_seen(&dir));
    assert_eq!(
        (t.distinct, t.duplicates),
        (n, 0),
        "every record handled once on a clean run"
    );
}

#[test]
fn sigkilled_workers_and_handlers_lose_nothing() {
    let Some(b) = share_broker() else { return };
    let topic = unique("share-chaos");
    let group = unique("share-chaos-g");
    let dir = temp_dir("share-chaos");
    create_topic(&b, &topic, 2);
    // Every acquisition counts as a delivery, and the broker archives a
    // record at its group's share.delivery.count.limit (5 by default)
    // whatever happens next: a record held by handlers killed in 5 rounds is
    // gone (seen here in 2 of 8 runs with 10 rounds: 8 and 18 of 4000
    // records, each just handled around them). That is the poison-record
    // guard of share groups, not a loss by kswarm; this test gives the group
    // the broker's most (10) and kills in 8 rounds, so no record can run out
    // of deliveries.
    set_group_config(&b, &group, "share.delivery.count.limit=10");
    let state = temp_dir("share-chaos-state");
    let marker = unique("share-chaos-marker");
    let handler = slot_handler(&dir, 0.002, &marker);
    let mut run = Run::new(&topic, &group)
        .name("share-chaos")
        .workers(4)
        .protocol("share")
        .args(["--max-restarts", "100/60s"])
        .exec(&handler)
        .state(&state)
        .spawn();
    wait_assigned(&run, &state, &group, &topic, 4);
    let n = 4000;
    let chunks = 10;
    let producer = {
        let b = b.clone();
        let topic = topic.clone();
        std::thread::spawn(move || {
            for c in 0..chunks {
                let mut lines = String::new();
                for i in (c * n / chunks)..((c + 1) * n / chunks) {
                    lines.push_str(&format!("sc-{i}\n"));
                }
                produce(&b, &topic, &lines);
                std::thread::sleep(Duration::from_millis(400));
            }
        })
    };
    let mut killed_workers = 0;
    let mut killed_handlers = 0;
    for round in 0..8 {
        std::thread::sleep(Duration::from_millis(600));
        if round % 2 == 0 {
            // A live worker (a slot may be between two workers now).
            let pid = wait_for(Duration::from_secs(10), "a live worker", || {
                let s = run_state(&state, &group, &topic)?;
                let alive: Vec<i32> = s
                    .workers
                    .iter()
                    .map(|w| w.pid as i32)
                    .filter(|&p| kill(Pid::from_raw(p), None).is_ok())
                    .collect();
                alive.get(round / 2 % alive.len().max(1)).copied()
            });
            if kill(Pid::from_raw(pid), Signal::SIGKILL).is_ok() {
                killed_workers += 1;
            }
        } else {
            // The handlers (and their guards); not the supervisor, whose
            // --exec carries the marker too.
            for pid in processes_with(&marker)
                .into_iter()
                .filter(|&p| p != run.pid())
            {
                if kill(Pid::from_raw(pid), Signal::SIGKILL).is_ok() {
                    killed_handlers += 1;
                }
            }
        }
    }
    producer.join().unwrap();
    assert!(
        killed_workers >= 3 && killed_handlers >= 3,
        "{killed_workers} workers, {killed_handlers} handler processes killed"
    );
    // Records a killed worker had acquired come back when its session ends
    // or when their lock (30 s) runs out.
    let seen = wait_all(&dir, "sc", n, Duration::from_secs(150), &run);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(stop(&mut run), Some(0), "{}", run.stderr_text());
    let t = tally(&seen);
    assert_eq!(t.distinct, n);
    eprintln!(
        "chaos: {killed_workers} workers and {killed_handlers} handlers killed; {} records handled, {} deliveries again",
        t.distinct, t.duplicates
    );
}

/// `kswarm run --group-protocol share` against `addr` exits 2 naming the
/// flag and the broker version or feature needed.
fn assert_share_refused(addr: &str) {
    let topic = unique("share-none");
    let state = temp_dir("share-none-state");
    // Bounded: a build that took the refusal for a passing fault would
    // retry for ever; the wait fails the test instead (and kills the run).
    let mut run = Run::new(&topic, &unique("share-none-g"))
        .name("kswarm run --group-protocol share")
        .brokers(addr)
        .partitions("1")
        .protocol("share")
        .state(&state)
        .spawn();
    let status = run.wait(Duration::from_secs(60));
    let stderr = run.stderr_text();
    assert_eq!(status.code(), Some(2), "{stderr}");
    let err = last_error(&stderr);
    assert!(
        err.contains("--group-protocol share")
            && err.contains("Apache Kafka 4.2")
            && err.contains("share.version=1"),
        "{stderr}"
    );
}

#[test]
fn a_broker_without_share_groups_is_a_usage_error_naming_the_flag_and_the_version() {
    // tansu has no share groups (ApiVersions lists no ShareGroupHeartbeat):
    // the suite's broker under tansu, else a tansu of this test's own.
    match broker_kind() {
        Broker::Tansu => assert_share_refused(&brokers()),
        Broker::Kafka => {
            let port = free_port().to_string();
            let out = Command::new(repo_root().join("scripts/broker.sh"))
                .args(["start", &port])
                .env("KSWARM_BROKER", "tansu")
                .output()
                .expect("scripts/broker.sh");
            assert!(
                out.status.success(),
                "tansu did not start: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let result =
                std::panic::catch_unwind(|| assert_share_refused(&format!("127.0.0.1:{port}")));
            let _ = Command::new(repo_root().join("scripts/broker.sh"))
                .args(["stop", &port])
                .env("KSWARM_BROKER", "tansu")
                .output();
            let _ = std::fs::remove_file(support::build_dir().join(format!("broker-{port}.log")));
            if let Err(e) = result {
                std::panic::resume_unwind(e);
            }
        }
    }
}

#[test]
fn kafka_formatted_without_share_groups_is_a_usage_error_too() {
    // Apache Kafka 4.4 with share.version=0: ApiVersions still lists the
    // share requests, and ShareGroupHeartbeat answers UNSUPPORTED_VERSION.
    if broker_kind() != Broker::Kafka {
        return assert_share_refused(&brokers());
    }
    let port = free_port().to_string();
    let out = Command::new(repo_root().join("scripts/kafka.sh"))
        .args(["start", &port])
        .env("KSWARM_KAFKA_FORMAT_ARGS", "--feature share.version=0")
        .env("KSWARM_KAFKA_PROPS", "group.initial.rebalance.delay.ms=0")
        .env("KSWARM_KAFKA_HEAP", "256m")
        .output()
        .expect("scripts/kafka.sh");
    assert!(
        out.status.success(),
        "kafka did not start: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result = std::panic::catch_unwind(|| assert_share_refused(&format!("127.0.0.1:{port}")));
    let _ = Command::new(repo_root().join("scripts/kafka.sh"))
        .args(["stop", &port])
        .output();
    let _ = std::fs::remove_dir_all(support::build_dir().join(format!("kafka-{port}")));
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

#[test]
fn a_clean_stop_mid_batch_releases_the_rest_and_nothing_is_delivered_twice() {
    // One record batch of 3000 (one partition): the first run takes it
    // whole, handles part of it and stops; what it did not hand over goes
    // back (RELEASE), and the next run gets exactly that: the rest of the
    // batch, whose first part the broker answers with again but did not
    // acquire for it.
    let Some(b) = share_broker() else { return };
    let topic = unique("share-mid");
    let group = unique("share-mid-g");
    create_topic(&b, &topic, 1);
    let n = 3000;
    produce_with(&b, &topic, &numbered("sm", n), &["--batch-size", "5000"]);
    let dir1 = temp_dir("share-mid-1");
    let state1 = temp_dir("share-mid-state1");
    let handler1 = slot_handler(&dir1, 0.002, "share-mid-1");
    let mut first = Run::new(&topic, &group)
        .name("share-mid-1")
        .protocol("share")
        .exec(&handler1)
        .state(&state1)
        .spawn();
    wait_for(Duration::from_secs(60), "300 records handled", || {
        (all_seen(&dir1).len() >= 300).then_some(())
    });
    assert_eq!(stop(&mut first), Some(0), "{}", first.stderr_text());
    let by_first = all_seen(&dir1);
    assert!(
        by_first.len() < n,
        "the first run handled all {n} records before its stop; the test needs a stop mid-batch"
    );

    let dir2 = temp_dir("share-mid-2");
    let state2 = temp_dir("share-mid-state2");
    let handler2 = slot_handler(&dir2, 0.0, "share-mid-2");
    let mut second = Run::new(&topic, &group)
        .name("share-mid-2")
        .protocol("share")
        .exec(&handler2)
        .state(&state2)
        .spawn();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let mut all = by_first.clone();
        all.extend(all_seen(&dir2));
        if missing(&tally(&all).values, "sm", n).is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "records missing after 90 s: {} handled by the first run, {} by the second\n{}",
            by_first.len(),
            all_seen(&dir2).len(),
            second.stderr_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(stop(&mut second), Some(0), "{}", second.stderr_text());
    let by_second = all_seen(&dir2);
    let mut all = by_first.clone();
    all.extend(by_second.iter().cloned());
    let t = tally(&all);
    assert_eq!(t.distinct, n);
    assert_eq!(
        t.duplicates,
        0,
        "records delivered twice across a clean stop: {} by the first run, {} by the second",
        by_first.len(),
        by_second.len()
    );
}

/// A `--verdicts` handler: `reject bad N` for the numbers in `reject`,
/// `retry` for those in `retry` (every time), `ok` for the rest; it logs
/// "VERDICT VALUE DELIVERY_COUNT" per record to `log`.
fn judging_handler(dir: &Path, log: &Path, reject: &[usize], retry: &[usize]) -> String {
    let set = |v: &[usize]| {
        v.iter()
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    let script = dir.join("judge.py");
    std::fs::write(
        &script,
        format!(
            r#"import json, sys
reject = {{{}}}
retry = {{{}}}
log = open(sys.argv[1], "a")
for line in sys.stdin:
    v = json.loads(line)["value"]
    n = int(v.rsplit("-", 1)[1])
    verdict = "reject bad %d" % n if n in reject else "retry" if n in retry else "ok"
    log.write("%s %s %d\n" % (verdict.split()[0], v, json.loads(line)["delivery_count"])); log.flush()
    sys.stdout.write(verdict + "\n"); sys.stdout.flush()
"#,
            set(reject),
            set(retry)
        ),
    )
    .unwrap();
    format!("{} -u {} {}", py(), script.display(), log.display())
}

#[test]
fn verdicts_retry_held_records_and_reject_into_the_dead_letter_topic() {
    let Some(b) = share_broker() else { return };
    let topic = unique("share-verd");
    let dlq = format!("{topic}-dlq");
    let group = unique("share-verd-g");
    let dir = temp_dir("share-verd");
    create_topic(&b, &topic, 2);
    let n = 200;
    let reject: Vec<usize> = (0..n).filter(|i| i % 10 == 7).collect();
    let retry: Vec<usize> = (0..n).filter(|i| i % 10 == 3).collect();
    let log = dir.join("log");
    let handler = judging_handler(&dir, &log, &reject, &retry);
    let state = temp_dir("share-verd-state");
    let mut run = Run::new(&topic, &group)
        .name("share-verd")
        .workers(3)
        .protocol("share")
        .exec(&handler)
        .arg("--verdicts")
        .flag("--dead-letter-topic", &dlq)
        .args(["--max-record-retries", "1"])
        .state(&state)
        .spawn();
    wait_assigned(&run, &state, &group, &topic, 3);
    produce(&b, &topic, &numbered("v", n));
    let copies_of = || -> Vec<(String, BTreeMap<String, String>)> {
        let out = Command::new(python())
            .arg(repo_root().join("tests/peers/dlq_tool.py"))
            .args(["read", &b, &dlq])
            .output()
            .expect("run dlq_tool.py");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                (
                    v["value"].as_str().unwrap_or_default().to_string(),
                    v["headers"]
                        .as_object()
                        .unwrap()
                        .iter()
                        .map(|(k, h)| (k.clone(), h.as_str().unwrap_or_default().to_string()))
                        .collect(),
                )
            })
            .collect()
    };
    let want_copies = reject.len() + retry.len();
    wait_for(
        Duration::from_secs(90),
        "every record judged and copied",
        || {
            let lines = read_lines(&log);
            let values: BTreeSet<&str> = lines.iter().filter_map(|l| l.split(' ').nth(1)).collect();
            (values.len() == n && copies_of().len() >= want_copies).then_some(())
        },
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(stop(&mut run), Some(0), "{}", run.stderr_text());

    // Per value: (verdict, the delivery count the handler was told), in order.
    let mut seen: BTreeMap<String, Vec<(String, u32)>> = BTreeMap::new();
    for l in read_lines(&log) {
        let f: Vec<&str> = l.split(' ').collect();
        let [verdict, value, count] = f[..] else {
            panic!("log line {l:?}")
        };
        seen.entry(value.to_string())
            .or_default()
            .push((verdict.to_string(), count.parse().unwrap()));
    }
    assert_eq!(seen.len(), n);
    let said = |v: &[(&str, u32)]| -> Vec<(String, u32)> {
        v.iter().map(|(s, c)| (s.to_string(), *c)).collect()
    };
    for i in &retry {
        // One retry allowed: held, handed to the handler again after a
        // pause (it is told this is the second delivery), then dead-lettered.
        let want = said(&[("retry", 1), ("retry", 2)]);
        assert_eq!(seen[&format!("v-{i}")], want, "v-{i}");
    }
    for i in (0..n).filter(|i| !reject.contains(i) && !retry.contains(i)) {
        assert_eq!(seen[&format!("v-{i}")], said(&[("ok", 1)]), "v-{i}");
    }
    let copies = copies_of();
    assert_eq!(copies.len(), want_copies, "each copy once on a clean run");
    for (value, h) in &copies {
        let i: usize = value.rsplit('-').next().unwrap().parse().unwrap();
        assert_eq!(h.get("kswarm.original.topic"), Some(&topic), "{h:?}");
        if reject.contains(&i) {
            assert_eq!(h["kswarm.reason"], format!("bad {i}"), "{h:?}");
            assert_eq!(h["kswarm.attempts"], "1", "{h:?}");
        } else {
            assert!(retry.contains(&i), "{value}");
            assert!(h["kswarm.reason"].contains("retried 1 time(s)"), "{h:?}");
            assert_eq!(h["kswarm.attempts"], "2", "{h:?}");
        }
    }

    // Everything was acknowledged (ACCEPT or REJECT): nothing comes again.
    let dir2 = temp_dir("share-verd-again");
    let state2 = temp_dir("share-verd-state2");
    let handler2 = slot_handler(&dir2, 0.0, "share-verd-again");
    let mut again = Run::new(&topic, &group)
        .name("share-verd-again")
        .protocol("share")
        .exec(&handler2)
        .state(&state2)
        .spawn();
    wait_assigned(&again, &state2, &group, &topic, 1);
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(stop(&mut again), Some(0), "{}", again.stderr_text());
    assert!(all_seen(&dir2).is_empty(), "{:?}", all_seen(&dir2).first());
}

/// A Kafka node of another `version`, of the calling test's own, on a free
/// port: `KSWARM_KAFKA_VERSION=version scripts/kafka.sh start` (4.1 is
/// formatted with share.version=1). Stopped and its directory removed when
/// dropped.
struct OtherKafka {
    port: String,
    version: &'static str,
}

impl OtherKafka {
    fn kafka_sh(version: &str) -> Command {
        let mut c = Command::new(repo_root().join("scripts/kafka.sh"));
        c.env("KSWARM_KAFKA_VERSION", version);
        c
    }

    fn start(version: &'static str) -> Self {
        let port = free_port().to_string();
        let out = Self::kafka_sh(version)
            .args(["start", &port])
            .env("KSWARM_KAFKA_PROPS", "group.initial.rebalance.delay.ms=0")
            .env("KSWARM_KAFKA_HEAP", "384m")
            .output()
            .expect("scripts/kafka.sh");
        let node = Self { port, version };
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && said.contains(&format!("Apache Kafka {version} up on")),
            "Kafka {version} did not start: {said}"
        );
        node
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The finalized level of a feature, from Kafka's own FeatureCommand.
    fn feature_level(&self, feature: &str) -> Option<u32> {
        let out = Self::kafka_sh(self.version)
            .args(["tool", "org.apache.kafka.tools.FeatureCommand"])
            .args(["--bootstrap-server", &self.addr(), "describe"])
            .output()
            .expect("scripts/kafka.sh tool FeatureCommand");
        // "Feature: share.version  SupportedMinVersion: 0 ..  FinalizedVersionLevel: 1 ..",
        // separated by tabs (4.1, 4.2) or runs of spaces (4.3+).
        let text = String::from_utf8_lossy(&out.stdout);
        let words = |l: &str| l.split_whitespace().map(str::to_string).collect::<Vec<_>>();
        let line = text
            .lines()
            .map(words)
            .find(|w| w.len() > 1 && w[0] == "Feature:" && w[1] == feature)?;
        let at = line.iter().position(|w| w == "FinalizedVersionLevel:")?;
        line.get(at + 1)?.parse().ok()
    }
}

impl Drop for OtherKafka {
    fn drop(&mut self) {
        let _ = Self::kafka_sh(self.version)
            .args(["stop", &self.port])
            .output();
        let _ = std::fs::remove_dir_all(support::build_dir().join(format!("kafka-{}", self.port)));
    }
}

/// One short share-group run on Kafka `version`, whose `share.version`
/// must be `level`: 2 workers on a 2-partition topic handle 300 records,
/// each once and told it is its first delivery, and stop cleanly; no
/// request is answered with an error on the way (Kafka 4.1 answered every
/// ShareFetch with UNKNOWN_SERVER_ERROR while member ids were dashed UUIDs).
fn share_group_on(version: &'static str, level: u32) {
    if broker_kind() != Broker::Kafka {
        return assert_share_refused(&brokers());
    }
    let node = OtherKafka::start(version);
    let b = node.addr();
    assert_eq!(
        node.feature_level("share.version"),
        Some(level),
        "Kafka {version}"
    );
    let tag = format!("share-v{}", version.replace('.', ""));
    let topic = unique(&tag);
    let group = unique(&format!("{tag}-g"));
    let dir = temp_dir(&tag);
    let state = temp_dir(&format!("{tag}-state"));
    create_topic(&b, &topic, 2);
    let mut run = Run::new(&topic, &group)
        .name(&format!("kswarm on Kafka {version}"))
        .brokers(&b)
        .workers(2)
        .protocol("share")
        .exec(&slot_handler(&dir, 0.0, &tag))
        .state(&state)
        .spawn();
    wait_assigned(&run, &state, &group, &topic, 2);
    let n = 300;
    produce(&b, &topic, &numbered("mx", n));
    wait_all(&dir, "mx", n, Duration::from_secs(60), &run);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(stop(&mut run), Some(0), "{}", run.stderr_text());
    let t = tally(&all_seen(&dir));
    assert_eq!((t.distinct, t.duplicates), (n, 0), "Kafka {version}");
    for f in std::fs::read_dir(&dir).unwrap().flatten() {
        for l in read_lines(&f.path()) {
            let v: serde_json::Value = serde_json::from_str(&l).unwrap();
            assert_eq!(v["delivery_count"], 1, "Kafka {version}: {l}");
        }
    }
    let stderr = run.stderr_text();
    assert!(
        !stderr.contains("UnknownServerError"),
        "Kafka {version}: UNKNOWN_SERVER_ERROR answers on the way:\n{stderr}"
    );
    // No group config for the lock limit before Kafka 4.4: the leader's.
    assert!(
        stderr.contains(
            "asks for at most 1000 records (group.share.partition.max.record.locks 2000)"
        ),
        "Kafka {version}: the broker's lock limit is read:\n{stderr}"
    );
}

#[test]
fn share_groups_work_on_kafka_4_1_formatted_with_share_version_1() {
    share_group_on("4.1.2", 1);
}

#[test]
fn share_groups_work_on_kafka_4_2() {
    share_group_on("4.2.2", 1);
}

/// A `--verdicts` handler for timing: per record it logs
/// "VERDICT VALUE DELIVERY_COUNT READ_AT ANSWERED_AT" (Unix seconds) to
/// `log`. Values starting with `slow-` sleep `slow_secs` on their first
/// delivery and are answered `ok`; the others are answered `retry` until
/// their delivery count reaches `ok_at`, then `ok`.
fn timing_handler(dir: &Path, log: &Path, ok_at: u32, slow_secs: f64) -> String {
    let script = dir.join("timing.py");
    std::fs::write(
        &script,
        format!(
            r#"import json, sys, time
log = open(sys.argv[1], "a")
for line in sys.stdin:
    read = time.time()
    r = json.loads(line)
    v, dc = r["value"], r["delivery_count"]
    if v.startswith("slow-") and dc == 1:
        time.sleep({slow_secs})
    verdict = "ok" if v.startswith("slow-") or dc >= {ok_at} else "retry"
    log.write("%s %s %d %.6f %.6f\n" % (verdict, v, dc, read, time.time())); log.flush()
    sys.stdout.write(verdict + "\n"); sys.stdout.flush()
"#
        ),
    )
    .unwrap();
    format!("{} -u {} {}", py(), script.display(), log.display())
}

/// One handler log line of [`timing_handler`].
#[derive(Debug, Clone)]
struct Timed {
    verdict: String,
    count: u32,
    read: f64,
    answered: f64,
}

/// The handler's log per value, in order.
fn timed_by_value(log: &Path) -> BTreeMap<String, Vec<Timed>> {
    let mut out: BTreeMap<String, Vec<Timed>> = BTreeMap::new();
    for l in read_lines(log) {
        let f: Vec<&str> = l.split(' ').collect();
        let [verdict, value, count, read, answered] = f[..] else {
            panic!("log line {l:?}")
        };
        out.entry(value.to_string()).or_default().push(Timed {
            verdict: verdict.to_string(),
            count: count.parse().unwrap(),
            read: read.parse().unwrap(),
            answered: answered.parse().unwrap(),
        });
    }
    out
}

#[test]
fn retry_delays_hand_a_record_again_after_each_delay() {
    let Some(b) = share_broker() else { return };
    let topic = unique("share-delays");
    let group = unique("share-delays-g");
    let dir = temp_dir("share-delays");
    create_topic(&b, &topic, 2);
    let n = 20;
    let log = dir.join("log");
    // retry, retry, ok: the record waits 1 s, then 2 s.
    let handler = timing_handler(&dir, &log, 3, 0.0);
    let state = temp_dir("share-delays-state");
    let mut run = Run::new(&topic, &group)
        .name("share-delays")
        .workers(2)
        .protocol("share")
        .exec(&handler)
        .arg("--verdicts")
        .flag("--retry-delays", "1s,2s")
        .state(&state)
        .spawn();
    wait_assigned(&run, &state, &group, &topic, 2);
    produce(&b, &topic, &numbered("d", n));
    wait_for(Duration::from_secs(60), "every record answered ok", || {
        let by = timed_by_value(&log);
        let oks = by
            .values()
            .filter(|t| t.iter().any(|x| x.verdict == "ok"))
            .count();
        (oks == n).then_some(())
    });
    // Nothing more comes (a third retry, a stray redelivery).
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(stop(&mut run), Some(0), "{}", run.stderr_text());
    let by = timed_by_value(&log);
    assert_eq!(by.len(), n, "{by:?}");
    for (value, t) in &by {
        let said: Vec<(&str, u32)> = t.iter().map(|x| (x.verdict.as_str(), x.count)).collect();
        // Held by the worker: the handler is told each delivery's number.
        assert_eq!(
            said,
            [("retry", 1), ("retry", 2), ("ok", 3)],
            "{value}: {t:?}\n{}",
            run.stderr_text()
        );
        for (i, delay) in [(1, 1.0), (2, 2.0)] {
            // From the verdict to the next delivery: never before the
            // delay; the slack above is for a loaded machine.
            let gap = t[i].read - t[i - 1].answered;
            assert!(
                gap >= delay - 0.02 && gap < delay + 2.5,
                "{value}: delivery {} came {gap:.3} s after the `retry`; --retry-delays says {delay} s",
                i + 1
            );
        }
    }

    // Everything was ACCEPTed: nothing comes again.
    let dir2 = temp_dir("share-delays-again");
    let state2 = temp_dir("share-delays-state2");
    let handler2 = slot_handler(&dir2, 0.0, "share-delays-again");
    let mut again = Run::new(&topic, &group)
        .name("share-delays-again")
        .protocol("share")
        .exec(&handler2)
        .state(&state2)
        .spawn();
    wait_assigned(&again, &state2, &group, &topic, 1);
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(stop(&mut again), Some(0), "{}", again.stderr_text());
    assert!(all_seen(&dir2).is_empty(), "{:?}", all_seen(&dir2).first());
}

#[test]
fn a_pause_past_the_lock_and_a_handler_past_the_lock_are_handled_and_told() {
    let Some(b) = share_broker() else { return };
    let topic = unique("share-lock");
    let group = unique("share-lock-g");
    let dir = temp_dir("share-lock");
    create_topic(&b, &topic, 1);
    // The shortest lock the broker allows by default
    // (group.share.min.record.lock.duration.ms).
    set_group_config(&b, &group, "share.record.lock.duration.ms=15000");
    let log = dir.join("log");
    let handler = timing_handler(&dir, &log, 2, 16.5);
    let state = temp_dir("share-lock-state");
    let mut run = Run::new(&topic, &group)
        .name("share-lock")
        .protocol("share")
        .exec(&handler)
        .arg("--verdicts")
        .flag("--retry-delays", "20s")
        .state(&state)
        .spawn();
    wait_assigned(&run, &state, &group, &topic, 1);
    // A 20 s pause cannot be held under a 15 s lock: the record is
    // RELEASEd shortly before the lock ends and the broker delivers it again.
    produce(&b, &topic, "cut-0\n");
    let cut = wait_for(Duration::from_secs(40), "cut-0 delivered again", || {
        timed_by_value(&log)
            .remove("cut-0")
            .filter(|t| t.len() >= 2)
    });
    let gap = cut[1].read - cut[0].answered;
    assert!(
        (12.0..19.0).contains(&gap),
        "cut-0 came again {gap:.3} s after its `retry` (lock 15 s, pause 20 s): {cut:?}\n{}",
        run.stderr_text()
    );
    assert_eq!(
        (cut[1].verdict.as_str(), cut[1].count),
        ("ok", 2),
        "{cut:?}"
    );
    // A handler that holds a record past its lock is told so, naming it.
    produce(&b, &topic, "slow-1\n");
    wait_for(Duration::from_secs(40), "slow-1 answered ok", || {
        timed_by_value(&log)
            .get("slow-1")
            .filter(|t| t.iter().any(|x| x.verdict == "ok"))
            .map(|_| ())
    });
    // The 20 s after cut-0's `retry` are over: it was not handed out again.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(stop(&mut run), Some(0), "{}", run.stderr_text());
    let by = timed_by_value(&log);
    assert_eq!(by["cut-0"].len(), 2, "{:?}", by["cut-0"]);
    let err = run.stderr_text();
    assert_eq!(
        err.matches("would outlive the record's acquisition lock")
            .count(),
        1,
        "{err}"
    );
    assert!(
        err.contains("past the broker's acquisition lock of 15.0 s")
            && err.contains("record 0@1 ")
            && err.contains("share.record.lock.duration.ms"),
        "{err}"
    );
}
