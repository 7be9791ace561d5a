//! The fetch path against the real broker: one worker reading 256 partitions
//! through one fetch session (every record once, in offset order, with a
//! `fetch.max.bytes` far below what the partitions hold, so no partition may
//! starve), and a compacted topic whose offsets have holes.
mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use nix::sys::signal::Signal;
use support::{committed, create_topic, parse_json_line, tally, wait_for, Seen, WorkerSpec};

const LONG: Duration = Duration::from_secs(90);

fn seen(p: &support::Proc) -> Vec<Seen> {
    p.stdout_lines()
        .iter()
        .filter_map(|l| parse_json_line(l))
        .collect()
}

/// The distinct ids of the `r-ID-padding` values seen.
fn ids(seen: &[Seen]) -> std::collections::BTreeSet<usize> {
    seen.iter()
        .filter_map(|s| s.value.split('-').nth(1)?.parse().ok())
        .collect()
}

/// SIGTERM, and the worker exits 0.
fn stop(w: &mut support::Proc) {
    w.signal(Signal::SIGTERM);
    let st = w.wait(Duration::from_secs(30));
    assert!(
        st.success(),
        "exit after TERM: {st:?}; stderr: {}",
        w.stderr_text()
    );
}

/// Per partition, the offsets seen in the order they were handled.
fn offsets_by_partition(seen: &[Seen]) -> BTreeMap<i32, Vec<i64>> {
    let mut m: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
    for s in seen {
        m.entry(s.partition).or_default().push(s.offset);
    }
    m
}

#[test]
fn one_worker_reads_256_partitions_in_order_per_partition_without_starving_any() {
    const PARTS: usize = 256;
    const PER: usize = 20;
    let b = support::brokers();
    let (topic, group) = (support::unique("f-256"), support::unique("fg-256"));
    let dir = tempfile::tempdir().unwrap();
    create_topic(&b, &topic, PARTS);
    // Unkeyed records go one batch per partition in turn: 4 batches of 5
    // records of ~420 bytes per partition.
    let pad = "x".repeat(400);
    let lines: Vec<String> = (0..PARTS * PER).map(|i| format!("r-{i}-{pad}")).collect();
    for chunk in lines.chunks(PARTS * 5) {
        support::produce_with(
            &b,
            &topic,
            &(chunk.join("\n") + "\n"),
            &["--batch-size", "5"],
        );
    }

    // 16 KiB per request, 4 KiB per partition, for 256 partitions of ~8.5 KiB
    // each: a partition takes several requests, and the broker fills a
    // request from a few partitions only, so the rest wait their turn.
    let mut w = WorkerSpec::new(&b, &topic, &group, dir.path())
        .args(
            [
                "-X",
                "fetch.max.bytes=16384",
                "-X",
                "max.partition.fetch.bytes=4096",
            ]
            .as_slice(),
        )
        .start(0);
    wait_for(LONG, &format!("all {} records", PARTS * PER), || {
        (ids(&seen(&w)).len() == PARTS * PER).then_some(())
    });
    std::thread::sleep(Duration::from_millis(500));
    let all = seen(&w);
    let t = tally(&all);
    assert_eq!(t.duplicates, 0, "a record was delivered twice");
    assert_eq!(all.len(), PARTS * PER, "records handled");
    let want: std::collections::BTreeSet<usize> = (0..PARTS * PER).collect();
    assert_eq!(ids(&all), want, "the ids handled");
    let by_part = offsets_by_partition(&all);
    assert_eq!(by_part.len(), PARTS, "partitions read");
    for (p, offs) in &by_part {
        let want: Vec<i64> = (0..offs.len() as i64).collect();
        assert_eq!(offs, &want, "partition {p}: offsets not 0.. in order");
    }

    stop(&mut w);
    let ends: BTreeMap<i32, Option<i64>> = by_part
        .iter()
        .map(|(p, o)| (*p, Some(o.len() as i64)))
        .collect();
    assert_eq!(
        committed(&b, &topic, &group, PARTS),
        ends,
        "committed offsets after TERM"
    );
}

/// A Python one-shot reader (librdkafka, assign + read to the end): the
/// offsets of the topic's only partition, one per line.
const READ_OFFSETS: &str = r#"
import sys
from confluent_kafka import Consumer, TopicPartition, OFFSET_BEGINNING
brokers, topic = sys.argv[1:3]
c = Consumer({"bootstrap.servers": brokers, "group.id": "unused", "enable.auto.commit": False,
              "enable.partition.eof": True})
c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
while True:
    m = c.poll(10)
    if m is None:
        sys.exit(1)
    if m.error():
        if m.error().code() == -191:  # _PARTITION_EOF
            break
        sys.exit(2)
    print(m.offset())
c.close()
"#;

/// Creates a one-partition topic that the log cleaner compacts at once.
const CREATE_COMPACTED: &str = r#"
import sys
from confluent_kafka.admin import AdminClient, NewTopic
brokers, topic = sys.argv[1:3]
a = AdminClient({"bootstrap.servers": brokers})
t = NewTopic(topic, num_partitions=1, replication_factor=1, config={
    "cleanup.policy": "compact", "segment.ms": "100",
    "min.cleanable.dirty.ratio": "0.01", "delete.retention.ms": "100"})
a.create_topics([t])[topic].result(30)
# Created is not yet known to every listener: wait until metadata has a leader.
import time
for _ in range(300):
    md = a.list_topics(topic, timeout=5).topics.get(topic)
    if md is not None and md.error is None and md.partitions and md.partitions[0].leader >= 0:
        break
    time.sleep(0.1)
else:
    sys.exit("topic never got a leader")
"#;

fn librdkafka_offsets(brokers: &str, topic: &str) -> Option<Vec<i64>> {
    let out = std::process::Command::new(support::python())
        .args(["-c", READ_OFFSETS, brokers, topic])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    Some(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect(),
    )
}

#[test]
fn a_compacted_topic_with_holes_in_its_offsets_is_read_through() {
    if support::broker_kind() != support::Broker::Kafka {
        eprintln!("compaction needs Apache Kafka's log cleaner; this broker has none");
        return;
    }
    let b = support::brokers();
    let (topic, group) = (support::unique("f-compact"), support::unique("fg-compact"));
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(support::python())
        .args(["-c", CREATE_COMPACTED, &b, &topic])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "create the compacted topic: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Three rounds, each in later segments: 50 keys, then k0..k24 twice.
    // Compaction keeps each key's last record: k25..k49 of round 0 (offsets
    // 25..=49) and k0..k24 of round 2 (75..=99), so the log starts with a
    // hole (0..=24) and has one inside (50..=74).
    for round in 0..3 {
        let keys = if round == 0 { 50 } else { 25 };
        let lines: String = (0..keys)
            .map(|k| format!("k{k}\tround{round}-k{k}\n"))
            .collect();
        support::produce_with(
            &b,
            &topic,
            &lines,
            &["--key-separator", "\t", "--batch-size", "10"],
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    // The active segment is never cleaned: roll past the last round.
    std::thread::sleep(Duration::from_millis(300));
    support::produce_with(&b, &topic, "tail\tend\n", &["--key-separator", "\t"]);
    // The cleaner runs every 15 s (log.cleaner.backoff.ms) and may clean in
    // more than one pass: wait until it is done, so that the log kswarm
    // reads is the one librdkafka read.
    let compacted: Vec<i64> = (25..50).chain(75..101).collect();
    let offsets = wait_for(LONG, "the log cleaner to compact the topic", || {
        librdkafka_offsets(&b, &topic).filter(|o| *o == compacted)
    });
    let end = *offsets.last().unwrap() + 1;
    assert_eq!(end, 101, "the log's end");

    let mut w = WorkerSpec::new(&b, &topic, &group, dir.path()).start(0);
    wait_for(LONG, "the worker reaches the log's end", || {
        seen(&w).iter().any(|s| s.offset == end - 1).then_some(())
    });
    std::thread::sleep(Duration::from_millis(500));
    let got: Vec<i64> = seen(&w).iter().map(|s| s.offset).collect();
    assert_eq!(got, offsets, "kswarm's offsets are librdkafka's, in order");
    let values: Vec<String> = seen(&w).into_iter().map(|s| s.value).collect();
    for k in 0..50 {
        let v = format!("round{}-k{k}", if k < 25 { 2 } else { 0 });
        assert!(
            values.contains(&v),
            "the latest value of k{k} ({v}) is missing"
        );
    }
    stop(&mut w);
    let c = committed(&b, &topic, &group, 1);
    assert_eq!(
        c.get(&0).copied().flatten(),
        Some(end),
        "committed past the last hole"
    );
}

/// Commits offset 50 for a group (a standalone commit) and deletes the
/// topic's records before offset 80 (DeleteRecords), so the group's
/// position is below the log's start.
const COMMIT_THEN_DELETE: &str = r#"
import sys
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient
brokers, topic, group = sys.argv[1:4]
c = Consumer({"bootstrap.servers": brokers, "group.id": group, "enable.auto.commit": False})
import time
for attempt in range(100):  # until the group's coordinator is found
    try:
        c.commit(offsets=[TopicPartition(topic, 0, 50)], asynchronous=False)
        break
    except Exception:
        if attempt == 99:
            raise
        time.sleep(0.2)
c.close()
a = AdminClient({"bootstrap.servers": brokers})
for f in a.delete_records([TopicPartition(topic, 0, 80)]).values():
    r = f.result(30)
    assert r.low_watermark == 80, r
"#;

#[test]
fn a_committed_offset_below_the_log_start_resets_by_from_and_says_so() {
    let b = support::brokers();
    let (topic, group) = (support::unique("f-oor"), support::unique("fg-oor"));
    let dir = tempfile::tempdir().unwrap();
    create_topic(&b, &topic, 1);
    let lines: String = (0..100).map(|i| format!("r-{i}-x\n")).collect();
    support::produce(&b, &topic, &lines);
    let out = std::process::Command::new(support::python())
        .args(["-c", COMMIT_THEN_DELETE, &b, &topic, &group])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "commit 50, delete before 80: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let mut w = WorkerSpec::new(&b, &topic, &group, dir.path())
        .args(["--from", "earliest"].as_slice())
        .start(0);
    wait_for(LONG, "records 80..99", || {
        (ids(&seen(&w)).len() == 20).then_some(())
    });
    std::thread::sleep(Duration::from_millis(500));
    let offsets: Vec<i64> = seen(&w).iter().map(|s| s.offset).collect();
    assert_eq!(
        offsets,
        (80..100).collect::<Vec<i64>>(),
        "read from the log's start, once"
    );
    stop(&mut w);
    let err = w.stderr_text();
    assert!(
        err.contains("offset 50 is out of range; resetting to 80 (--from)"),
        "the reset is logged: {err}"
    );
    assert_eq!(
        committed(&b, &topic, &group, 1).get(&0).copied().flatten(),
        Some(100)
    );
}
