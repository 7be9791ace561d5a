//! `--retry-delays` in classic and consumer groups, as a user runs them:
//! `kswarm run --verdicts --retry-delays 1s,3s` with a Python handler that
//! answers `retry` for some records; the retry topics and the dead-letter
//! topic read back by librdkafka (tests/peers/dlq_tool.py), commits read by
//! librdkafka.
//!
//! What must hold: every record ends `ok` exactly once (or in the
//! dead-letter topic after the last delay), each retry comes no earlier
//! than its delay, the topic's own partitions are committed to their end
//! while retries still wait (a retry never holds its partition back), the
//! retry topics carry the headers that lead back to the original, and a
//! SIGKILLed worker loses nothing.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use support::*;

/// A handler that logs `MS VALUE ATTEMPT TOPIC VERDICT` per delivery to
/// `log` and answers, by the number at the end of the value: a multiple of
/// 10 -> `retry` on its first two deliveries, then `ok`; ending in 5 ->
/// always `retry`; else `ok`. The attempt is 1 + the record's
/// `kswarm.attempts` header (deliveries before, in earlier topics).
fn retrying_handler(dir: &Path, log: &Path) -> String {
    let script = dir.join("retrying.py");
    std::fs::write(
        &script,
        r#"import json, sys, time
log = open(sys.argv[1], "a", buffering=1)
for line in sys.stdin:
    r = json.loads(line)
    v = r["value"]
    n = int(v.rsplit("-", 1)[1])
    h = {x["key"]: x["value"] for x in r["headers"]}
    attempt = int(h.get("kswarm.attempts", "0")) + 1
    if n % 10 == 0:
        verdict = "retry" if attempt <= 2 else "ok"
    elif n % 10 == 5:
        verdict = "retry"
    else:
        verdict = "ok"
    log.write("%d %s %d %s %s\n" % (int(time.time() * 1000), v, attempt, r["topic"], verdict))
    sys.stdout.write(verdict + "\n")
    sys.stdout.flush()
"#,
    )
    .unwrap();
    format!("{} -u {} {}", py(), script.display(), log.display())
}

/// One delivery as the handler logged it.
#[derive(Debug, Clone)]
struct Delivery {
    at_ms: i64,
    attempt: u32,
    topic: String,
    verdict: String,
}

fn deliveries(log: &Path) -> BTreeMap<String, Vec<Delivery>> {
    let mut out: BTreeMap<String, Vec<Delivery>> = BTreeMap::new();
    for l in read_lines(log) {
        let f: Vec<&str> = l.split(' ').collect();
        if f.len() != 5 {
            continue; // a line cut by a SIGKILL
        }
        out.entry(f[1].to_string()).or_default().push(Delivery {
            at_ms: f[0].parse().unwrap(),
            attempt: f[2].parse().unwrap(),
            topic: f[3].to_string(),
            verdict: f[4].to_string(),
        });
    }
    out
}

/// The end of every partition of `topic` (librdkafka reads it all).
fn ends_of(topic: &str, n: usize) -> BTreeMap<i32, i64> {
    let mut out: BTreeMap<i32, i64> = (0..n as i32).map(|p| (p, 0)).collect();
    for v in read_topic(topic) {
        let p = v["partition"].as_i64().unwrap() as i32;
        let o = v["offset"].as_i64().unwrap();
        let e = out.entry(p).or_insert(0);
        *e = (*e).max(o + 1);
    }
    out
}

fn committed_or_zero(topic: &str, group: &str, n: usize) -> BTreeMap<i32, i64> {
    committed(&brokers(), topic, group, n)
        .into_iter()
        .map(|(p, o)| (p, o.unwrap_or(0)))
        .collect()
}

fn header(v: &serde_json::Value, k: &str) -> String {
    v["headers"][k].as_str().unwrap_or_default().to_string()
}

fn retries_go_through_retry_topics(protocol: &str) {
    let dir = tempfile::tempdir().unwrap();
    let topic = unique("rt");
    let (retry1, retry3) = (format!("{topic}-retry-1s"), format!("{topic}-retry-3s"));
    let dlq = format!("{topic}-dlq");
    let group = unique("rt-g");
    let n = 400;
    create_topic(&brokers(), &topic, 2);
    let log = dir.path().join("log");
    let mut run = Run::new(&topic, &group)
        .workers(2)
        .protocol(protocol)
        .exec(&retrying_handler(dir.path(), &log))
        .format("json")
        .arg("--verdicts")
        .flag("--retry-delays", "1s,3s")
        .flag("--dead-letter-topic", &dlq)
        .flag("--commit-interval", "200ms")
        .state(dir.path())
        .spawn();
    wait_run_members(&run, dir.path(), &group, &topic, 2, Duration::from_secs(60));
    produce(&brokers(), &topic, &numbered("v", n));
    let ends = ends_of(&topic, 2);

    // The topic is committed to its end while the retried records still
    // wait for their delays: the retries hold nothing back.
    wait_for(
        Duration::from_secs(60),
        "the topic committed to its end",
        || (committed_or_zero(&topic, &group, 2) == ends).then_some(()),
    );
    let committed_at = Instant::now();
    let done_before = deliveries(&log)
        .iter()
        .filter(|(v, d)| v.ends_with('0') && d.iter().any(|d| d.verdict == "ok"))
        .count();
    let retried: Vec<String> = (0..n)
        .filter(|i| i % 10 == 0)
        .map(|i| format!("v-{i}"))
        .collect();
    assert!(
        done_before < retried.len() / 2,
        "the topic's commits waited for the retries: {done_before} of {} retried records were \
         done when its partitions were committed to their end",
        retried.len()
    );
    wait_for(Duration::from_secs(60), "every retried record ok", || {
        let d = deliveries(&log);
        retried
            .iter()
            .all(|v| {
                d.get(v)
                    .is_some_and(|d| d.iter().any(|d| d.verdict == "ok"))
            })
            .then_some(())
    });
    eprintln!("retries done {:?} after the commit", committed_at.elapsed());
    let (r1_ends, r3_ends) = (ends_of(&retry1, 2), ends_of(&retry3, 2));
    wait_for(
        Duration::from_secs(30),
        "the retry topics committed",
        || {
            (committed_or_zero(&retry1, &group, 2) == r1_ends
                && committed_or_zero(&retry3, &group, 2) == r3_ends)
                .then_some(())
        },
    );
    assert_eq!(stop(&mut run), Some(0), "{}", run.stderr_text());

    let d = deliveries(&log);
    assert_eq!(d.len(), n, "every record reached the handler");
    for (v, ds) in &d {
        let i: usize = v.rsplit('-').next().unwrap().parse().unwrap();
        let shape: Vec<(u32, &str, &str)> = ds
            .iter()
            .map(|d| (d.attempt, d.topic.as_str(), d.verdict.as_str()))
            .collect();
        let want: Vec<(u32, &str, &str)> = match i % 10 {
            0 => vec![
                (1, &topic, "retry"),
                (2, &retry1, "retry"),
                (3, &retry3, "ok"),
            ],
            5 => vec![
                (1, &topic, "retry"),
                (2, &retry1, "retry"),
                (3, &retry3, "retry"),
            ],
            _ => vec![(1, &topic, "ok")],
        };
        assert_eq!(shape, want, "{v} on a clean run: once per topic, in order");
        // Never before its delay (the copy is written after the verdict and
        // is due a delay after that); the upper bound is generous here: the
        // benchmark (scripts/bench/retry_proof.py) measures it.
        for (pair, delay) in ds.windows(2).zip([1000, 3000]) {
            let gap = pair[1].at_ms - pair[0].at_ms;
            assert!(
                (delay..delay + 5000).contains(&gap),
                "{v}: attempt {} came {gap} ms after attempt {} (delay {delay} ms)",
                pair[1].attempt,
                pair[0].attempt
            );
        }
    }

    // The retry topics: one copy per retry, with headers that lead back to
    // the original and say when it is due.
    let source: BTreeMap<String, (i64, i64)> = read_topic(&topic)
        .into_iter()
        .map(|v| {
            (
                v["value"].as_str().unwrap().to_string(),
                (
                    v["partition"].as_i64().unwrap(),
                    v["offset"].as_i64().unwrap(),
                ),
            )
        })
        .collect();
    let want_retried: BTreeSet<String> = (0..n)
        .filter(|i| i % 5 == 0)
        .map(|i| format!("v-{i}"))
        .collect();
    for (retry_topic, attempts) in [(&retry1, "1"), (&retry3, "2")] {
        let copies = read_topic(retry_topic);
        let values: BTreeSet<String> = copies
            .iter()
            .map(|c| c["value"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(values, want_retried, "{retry_topic}");
        assert_eq!(copies.len(), want_retried.len(), "{retry_topic}: once each");
        for c in &copies {
            let (p, o) = source[c["value"].as_str().unwrap()];
            assert_eq!(header(c, "kswarm.original.topic"), topic, "{c}");
            assert_eq!(header(c, "kswarm.original.partition"), p.to_string(), "{c}");
            assert_eq!(header(c, "kswarm.original.offset"), o.to_string(), "{c}");
            assert_eq!(header(c, "kswarm.attempts"), attempts, "{c}");
            assert_eq!(header(c, "kswarm.reason"), "retry", "{c}");
            assert_eq!(
                c["partition"].as_i64().unwrap(),
                p,
                "{c}: same partition number"
            );
            let due: i64 = header(c, "kswarm.retry.due").parse().unwrap();
            assert!(due > 1_700_000_000_000, "{c}: due in ms since the epoch");
        }
    }
    // After the last delay, `retry` sends the record to the dead-letter topic.
    let dead = read_topic(&dlq);
    let dead_values: BTreeSet<String> = dead
        .iter()
        .map(|c| c["value"].as_str().unwrap().to_string())
        .collect();
    let want_dead: BTreeSet<String> = (0..n)
        .filter(|i| i % 10 == 5)
        .map(|i| format!("v-{i}"))
        .collect();
    assert_eq!(dead_values, want_dead);
    for c in &dead {
        assert_eq!(header(c, "kswarm.original.topic"), topic, "{c}");
        assert_eq!(header(c, "kswarm.attempts"), "3", "{c}");
        assert!(
            header(c, "kswarm.reason").contains("--retry-delays 1s,3s"),
            "{c}"
        );
    }
}

#[test]
fn retries_go_through_retry_topics_classic() {
    retries_go_through_retry_topics("classic");
}

#[test]
fn retries_go_through_retry_topics_consumer() {
    if broker_kind() != Broker::Kafka {
        eprintln!("the consumer protocol needs Apache Kafka; tansu has the classic one only");
        return;
    }
    retries_go_through_retry_topics("consumer");
}

/// A worker process: `kswarm spawned --slot N`.
fn is_worker(pid: i32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| c.split(|&b| b == 0).nth(1) == Some(b"spawned".as_slice()))
        .unwrap_or(false)
}

/// SIGKILL a worker while records of every topic are in flight: nothing is
/// lost, every record still ends `ok` (or dead-lettered), and the topic and
/// the retry topics are committed to their ends.
#[test]
fn a_killed_worker_loses_no_retry() {
    let dir = tempfile::tempdir().unwrap();
    let topic = unique("rtk");
    let dlq = format!("{topic}-dlq");
    let group = unique("rtk-g");
    let n = 3000;
    create_topic(&brokers(), &topic, 2);
    let log = dir.path().join("log");
    let mut run = Run::new(&topic, &group)
        .workers(2)
        .exec(&retrying_handler(dir.path(), &log))
        .format("json")
        .arg("--verdicts")
        .flag("--retry-delays", "1s,2s")
        .flag("--dead-letter-topic", &dlq)
        .flag("--commit-interval", "200ms")
        .state(dir.path())
        .spawn();
    wait_run_members(&run, dir.path(), &group, &topic, 2, Duration::from_secs(60));
    produce(&brokers(), &topic, &numbered("v", n));
    // Kill a worker once the first retry topic is being read.
    wait_for(Duration::from_secs(60), "a first retry delivered", || {
        deliveries(&log)
            .values()
            .any(|d| d.iter().any(|d| d.attempt == 2))
            .then_some(())
    });
    let workers: Vec<i32> = descendants(run.pid())
        .into_iter()
        .filter(|&p| is_worker(p))
        .collect();
    assert!(!workers.is_empty());
    kill(Pid::from_raw(workers[0]), Signal::SIGKILL).unwrap();
    let finished = |d: &BTreeMap<String, Vec<Delivery>>, v: &str| -> bool {
        let i: usize = v.rsplit('-').next().unwrap().parse().unwrap();
        d.get(v).is_some_and(|d| {
            d.iter()
                .any(|d| d.verdict == "ok" || (i % 10 == 5 && d.attempt >= 3))
        })
    };
    wait_for(Duration::from_secs(120), "every record finished", || {
        let d = deliveries(&log);
        (0..n)
            .all(|i| finished(&d, &format!("v-{i}")))
            .then_some(())
    });
    let all_ends: Vec<(String, BTreeMap<i32, i64>)> = [
        topic.clone(),
        format!("{topic}-retry-1s"),
        format!("{topic}-retry-2s"),
    ]
    .into_iter()
    .map(|t| {
        let e = ends_of(&t, 2);
        (t, e)
    })
    .collect();
    wait_for(Duration::from_secs(60), "every topic committed", || {
        all_ends
            .iter()
            .all(|(t, e)| committed_or_zero(t, &group, 2) == *e)
            .then_some(())
    });
    assert_eq!(stop(&mut run), Some(0), "{}", run.stderr_text());
    // Every record that always says `retry` is in the dead-letter topic.
    let dead: BTreeSet<String> = read_topic(&dlq)
        .iter()
        .map(|c| c["value"].as_str().unwrap().to_string())
        .collect();
    for i in (0..n).filter(|i| i % 10 == 5) {
        assert!(dead.contains(&format!("v-{i}")), "v-{i} lost");
    }
}
