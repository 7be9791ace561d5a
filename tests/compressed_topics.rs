//! Compressed batches as real producers write them, read by `kswarm run`:
//! librdkafka (confluent-kafka, tests/peers/codec_producer.py) and Kafka's
//! Java producer (kafka-tools' ConsoleProducer, through scripts/kafka.sh),
//! with every codec Kafka has. kswarm decompresses lz4 and zstd itself
//! (src/wire/decompress.rs, src/wire/lz4.rs), so the frames other producers
//! write (the Java producer's lz4 frames carry no checksums, rskafka's both)
//! must come out record for record. Kafka only: it runs the Java producer.
mod support;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use support::{create_topic, parse_json_line, tally, wait_for, Run, Seen};

const N: usize = 1500;

/// Record i of codec_producer.py.
fn librdkafka_value(prefix: &str, i: usize) -> String {
    format!(
        "{prefix}-{i} {}",
        &"host-7 sshd[4242]: Accepted publickey for user3 ".repeat(4)[..150]
    )
}

/// Record i of [`java_produces`].
fn java_value(prefix: &str, i: usize) -> String {
    format!(
        "{prefix}-{i} {}",
        ["host-3 kernel: eth0 link up"; 5].join(" ")
    )
}

/// N records PREFIX-i from librdkafka with compression.type=codec.
fn librdkafka_produces(topic: &str, codec: &str, prefix: &str) {
    let out = Command::new(support::python())
        .arg(support::repo_root().join("tests/peers/codec_producer.py"))
        .args([&support::brokers(), topic, codec, prefix, &N.to_string()])
        .output()
        .expect("start codec_producer.py");
    assert!(
        out.status.success(),
        "librdkafka {codec}: {}",
        support::stderr(&out)
    );
}

/// N records PREFIX-i from Kafka's Java producer with compression.type=codec.
fn java_produces(topic: &str, codec: &str, prefix: &str) {
    let lines: String = (0..N).map(|i| java_value(prefix, i) + "\n").collect();
    let mut child = Command::new(support::repo_root().join("scripts/kafka.sh"))
        .args([
            "tool",
            "org.apache.kafka.tools.ConsoleProducer",
            "--bootstrap-server",
            &support::brokers(),
            "--topic",
            topic,
            "--compression-codec",
            codec,
            "--command-property",
            "linger.ms=100",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("scripts/kafka.sh tool");
    let mut stdin = child.stdin.take().unwrap();
    std::io::Write::write_all(&mut stdin, lines.as_bytes()).unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "Java producer {codec}: {}",
        support::stderr(&out)
    );
}

#[test]
fn every_codec_from_librdkafka_and_the_java_producer_is_read_whole() {
    assert_eq!(
        support::broker_kind(),
        support::Broker::Kafka,
        "a Kafka-only test (Kafka's Java producer)"
    );
    for codec in ["lz4", "zstd", "gzip", "snappy"] {
        let (topic, group) = (
            support::unique(&format!("cz-{codec}")),
            support::unique("g-cz"),
        );
        create_topic(&support::brokers(), &topic, 2);
        librdkafka_produces(&topic, codec, "rd");
        java_produces(&topic, codec, "java");
        let mut run = Run::new(&topic, &group)
            .workers(2)
            .format("json")
            .args(["--from", "earliest"])
            .spawn();
        let seen: Vec<Seen> = wait_for(Duration::from_secs(60), "every record", || {
            let s: Vec<Seen> = run
                .stdout_lines()
                .iter()
                .filter_map(|l| parse_json_line(l))
                .collect();
            (s.len() >= 2 * N).then_some(s)
        });
        support::stop(&mut run);
        let t = tally(&seen);
        assert_eq!(t.distinct, 2 * N, "{codec}: records read");
        let want: BTreeSet<String> = (0..N)
            .flat_map(|i| [librdkafka_value("rd", i), java_value("java", i)])
            .collect();
        let wrong: Vec<&String> = t.values.symmetric_difference(&want).take(3).collect();
        assert!(
            wrong.is_empty(),
            "{codec}: values not as produced: {wrong:?}"
        );
    }
}
