//! `kswarm produce` against the real broker; what arrived is read back with
//! confluent-kafka (librdkafka), and key placement is checked against
//! kafka-python's murmur2 partitioner.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::{brokers, create_topic, kswarm, python, stderr, unique};

/// Reads every partition of a topic from the start until it has `want`
/// records and saw the end of every partition, or the time is up. Prints one
/// line per record: partition, offset, key (hex or -), value (hex), and, for
/// keyed records, the partition kafka-python's DefaultPartitioner picks.
const READER: &str = r#"
import sys, time
from confluent_kafka import Consumer, TopicPartition, KafkaError
from kafka.partitioner.default import murmur2
brokers, topic, want, limit = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
c = Consumer({"bootstrap.servers": brokers, "group.id": "reader-" + topic,
              "enable.auto.commit": False, "enable.partition.eof": True})
md = c.list_topics(topic, timeout=10)
parts = sorted(md.topics[topic].partitions)
c.assign([TopicPartition(topic, p, 0) for p in parts])
eof, n, out = set(), 0, []
deadline = time.time() + limit
while time.time() < deadline and not (n >= want and len(eof) == len(parts)):
    msgs = c.consume(1000, 0.5)
    for m in msgs:
        if m.error():
            if m.error().code() == KafkaError._PARTITION_EOF:
                eof.add(m.partition())
                continue
            raise SystemExit("consume error: %s" % m.error())
        eof.discard(m.partition())
        k = m.key()
        want_p = (murmur2(k) & 0x7fffffff) % len(parts) if k is not None else -1
        out.append("%d %d %s %s %d" % (m.partition(), m.offset(), k.hex() if k is not None else "-",
                                      (m.value() or b"").hex(), want_p))
        n += 1
c.close()
sys.stdout.write("\n".join(out) + ("\n" if out else ""))
"#;

#[derive(Debug, Clone, PartialEq, Eq)]
struct Rec {
    partition: i32,
    offset: i64,
    key: Option<Vec<u8>>,
    value: Vec<u8>,
    java_partition: i32,
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn read_back(topic: &str, want: usize) -> Vec<Rec> {
    let out = Command::new("timeout")
        .arg("90")
        .arg(python())
        .arg("-c")
        .arg(READER)
        .arg(brokers())
        .arg(topic)
        .arg(want.to_string())
        .arg("60")
        .output()
        .expect("run the reader");
    assert!(
        out.status.success(),
        "reader failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            Rec {
                partition: f[0].parse().unwrap(),
                offset: f[1].parse().unwrap(),
                key: (f[2] != "-").then(|| unhex(f[2])),
                value: unhex(f[3]),
                java_partition: f[4].parse().unwrap(),
            }
        })
        .collect()
}

/// Run `kswarm produce ARGS` with `input` on stdin, within `limit`.
fn produce(args: &[&str], input: Vec<u8>, limit: Duration) -> Output {
    let mut child = kswarm()
        .arg("produce")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start kswarm produce");
    let mut sin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        let _ = sin.write_all(&input);
    });
    let out = wait_bounded(child, limit);
    writer.join().unwrap();
    out
}

fn wait_bounded(mut child: Child, limit: Duration) -> Output {
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "kswarm produce did not finish within {limit:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn hundred_thousand_lines_arrive_exactly_once_with_their_bytes() {
    let t = unique("produce-100k");
    create_topic(&brokers(), &t, 3);
    let n = 100_000usize;
    let mut lines: Vec<Vec<u8>> = (0..n)
        .map(|i| format!("line {i:06} payload").into_bytes())
        .collect();
    // Bytes that are not UTF-8, a carriage return (kept), an empty line.
    lines[7] = vec![0xff, 0xfe, b'x', 0x00, 0x80];
    lines[8] = b"ends with CR\r".to_vec();
    lines[9] = Vec::new();
    let mut input = lines.join(&b'\n');
    input.push(b'\n');

    let start = Instant::now();
    let o = produce(
        &["-b", &brokers(), "-t", &t],
        input,
        Duration::from_secs(120),
    );
    let took = start.elapsed();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&format!("produced {n} records to {t}")),
        "{}",
        stderr(&o)
    );
    eprintln!("produced {n} records in {took:?}");

    let got = read_back(&t, n);
    assert_eq!(got.len(), n, "records read back");
    let mut values: Vec<Vec<u8>> = got.iter().map(|r| r.value.clone()).collect();
    values.sort();
    let mut want = lines.clone();
    want.sort();
    assert!(
        values == want,
        "values read back differ from the lines written"
    );
    assert!(got.iter().all(|r| r.key.is_none()));
    // Round-robin: every partition got records.
    let used: BTreeSet<i32> = got.iter().map(|r| r.partition).collect();
    assert_eq!(used.len(), 3, "{used:?}");
    // Offsets are unique per partition.
    let offsets: BTreeSet<(i32, i64)> = got.iter().map(|r| (r.partition, r.offset)).collect();
    assert_eq!(offsets.len(), n);
}

#[test]
fn a_last_line_without_newline_is_a_record() {
    let t = unique("produce-nonl");
    create_topic(&brokers(), &t, 1);
    let o = produce(
        &["-b", &brokers(), "-t", &t],
        b"a\nb".to_vec(),
        Duration::from_secs(30),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let got = read_back(&t, 2);
    let v: Vec<Vec<u8>> = got.iter().map(|r| r.value.clone()).collect();
    assert_eq!(v, vec![b"a".to_vec(), b"b".to_vec()]);
}

#[test]
fn keyed_records_land_on_one_partition_each_like_the_java_partitioner() {
    let t = unique("produce-keys");
    create_topic(&brokers(), &t, 4);
    let n = 2000usize;
    let input: Vec<u8> = (0..n)
        .flat_map(|i| format!("user-{}:v{i}\n", i % 13).into_bytes())
        .collect();
    let o = produce(
        &[
            "-b",
            &brokers(),
            "-t",
            &t,
            "--key-separator",
            ":",
            "--batch-size",
            "50",
        ],
        input,
        Duration::from_secs(60),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let got = read_back(&t, n);
    assert_eq!(got.len(), n);
    let mut by_key: BTreeMap<Vec<u8>, BTreeSet<i32>> = BTreeMap::new();
    for r in &got {
        let k = r.key.clone().expect("every record has a key");
        by_key.entry(k).or_default().insert(r.partition);
        assert_eq!(
            r.partition, r.java_partition,
            "key placement differs from murmur2"
        );
        assert!(
            r.value.starts_with(b"v"),
            "the key separator was not cut off"
        );
    }
    assert_eq!(by_key.len(), 13);
    assert!(by_key.values().all(|ps| ps.len() == 1), "{by_key:?}");
    // One key's records keep their input order along the offsets.
    let mut seq: BTreeMap<Vec<u8>, Vec<(i64, usize)>> = BTreeMap::new();
    for r in &got {
        let i: usize = std::str::from_utf8(&r.value[1..]).unwrap().parse().unwrap();
        seq.entry(r.key.clone().unwrap())
            .or_default()
            .push((r.offset, i));
    }
    for (k, mut v) in seq {
        v.sort();
        assert!(
            v.windows(2).all(|w| w[0].1 < w[1].1),
            "key {k:?} out of order"
        );
    }
}

#[test]
fn a_fixed_key_sends_everything_to_one_partition() {
    let t = unique("produce-fixed");
    create_topic(&brokers(), &t, 3);
    let input: Vec<u8> = (0..500)
        .flat_map(|i| format!("r{i}\n").into_bytes())
        .collect();
    let o = produce(
        &[
            "-b",
            &brokers(),
            "-t",
            &t,
            "--key",
            "tenant-a",
            "--batch-size",
            "20",
        ],
        input,
        Duration::from_secs(60),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let got = read_back(&t, 500);
    assert_eq!(got.len(), 500);
    let parts: BTreeSet<i32> = got.iter().map(|r| r.partition).collect();
    assert_eq!(parts.len(), 1, "{parts:?}");
    assert_eq!(got[0].partition, got[0].java_partition);
    let values: Vec<String> = got
        .iter()
        .map(|r| String::from_utf8(r.value.clone()).unwrap())
        .collect();
    let want: Vec<String> = (0..500).map(|i| format!("r{i}")).collect();
    assert_eq!(values, want, "one partition keeps the input order");
}

#[test]
fn every_compression_is_readable_by_librdkafka() {
    for codec in ["gzip", "lz4", "snappy", "zstd"] {
        let t = unique(&format!("produce-{codec}"));
        create_topic(&brokers(), &t, 2);
        let input: Vec<u8> = (0..300)
            .flat_map(|i| format!("{codec} record {i} {}\n", "z".repeat(50)).into_bytes())
            .collect();
        let o = produce(
            &["-b", &brokers(), "-t", &t, "--compression", codec],
            input,
            Duration::from_secs(60),
        );
        assert!(o.status.success(), "{codec}: {}", stderr(&o));
        let got = read_back(&t, 300);
        assert_eq!(got.len(), 300, "{codec}");
        assert!(
            got.iter().all(|r| r.value.starts_with(codec.as_bytes())),
            "{codec}"
        );
    }
}

#[test]
fn a_slow_writer_is_not_held_back_until_eof() {
    let t = unique("produce-slow");
    create_topic(&brokers(), &t, 1);
    let mut child = kswarm()
        .args(["produce", "-b", &brokers(), "-t", &t, "--linger", "50ms"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut sin = child.stdin.take().unwrap();
    sin.write_all(b"first\n").unwrap();
    sin.flush().unwrap();
    // stdin stays open: the record must still go out (within the linger).
    let got = read_back(&t, 1);
    assert_eq!(
        got.len(),
        1,
        "the first line did not arrive while stdin stayed open"
    );
    assert_eq!(got[0].value, b"first");
    sin.write_all(b"second\n").unwrap();
    drop(sin);
    let o = wait_bounded(child, Duration::from_secs(30));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("produced 2 records"), "{}", stderr(&o));
}

#[test]
fn a_missing_topic_points_at_plan_apply() {
    let t = unique("produce-missing");
    let o = produce(
        &["-b", &brokers(), "-t", &t],
        b"x\n".to_vec(),
        Duration::from_secs(30),
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(e.contains("does not exist"), "{e}");
    assert!(e.contains("kswarm plan") && e.contains("--apply"), "{e}");
}

#[test]
fn bad_flags_exit_2_and_an_unreachable_broker_exits_1() {
    let b = brokers();
    for (args, flag) in [
        (vec!["--compression", "brotli"], "--compression"),
        (vec!["--batch-size", "0"], "--batch-size"),
        (vec!["--linger", "soon"], "--linger"),
        (vec!["--key-separator", ""], "--key-separator"),
        (vec!["--key", "a", "--key-separator", ":"], "--key"),
    ] {
        let mut all = vec!["-b", b.as_str(), "-t", "x"];
        all.extend(args.iter().copied());
        let o = produce(&all, Vec::new(), Duration::from_secs(30));
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(flag), "{args:?}: {}", stderr(&o));
    }
    let start = Instant::now();
    let o = produce(
        &["-b", "127.0.0.1:1", "-t", "x", "--connect-timeout", "1s"],
        b"x\n".to_vec(),
        Duration::from_secs(20),
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("127.0.0.1:1"), "{}", stderr(&o));
    assert!(start.elapsed() < Duration::from_secs(4));
}
