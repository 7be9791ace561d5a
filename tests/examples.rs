//! The handler examples of `examples/handlers/` (Python, Node, Go, bash),
//! each run by a real `kswarm run --format json --verdicts
//! --dead-letter-topic` on Kafka. Records with keys and headers are written
//! by librdkafka, some that the examples must reject (a value that is not
//! JSON, one that is not an object, one missing), some they answer `retry`
//! once (the demo header `simulate: transient`). Checked: every good record
//! handled exactly once with its key, header and payload; every bad one in
//! the dead-letter topic with the example's reason; everything committed;
//! then a SIGTERM to each handler: it says it answered what it read and
//! exits, kswarm restarts it, and new records are handled once, old ones
//! not again.
mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use support::{
    brokers, committed, create_topic, python, read_topic, repo_root, unique, wait_for, Run,
};

/// librdkafka writes records `from..to` as JSON lines {"key","value","headers"} on stdin.
const PRODUCER: &str = r#"
import json, sys
from confluent_kafka import Producer
p = Producer({"bootstrap.servers": sys.argv[1], "linger.ms": 5})
for line in sys.stdin:
    r = json.loads(line)
    p.produce(sys.argv[2], key=r["key"], value=None if r["value"] is None else r["value"].encode(),
              headers=[(k, v.encode()) for k, v in r["headers"].items()])
left = p.flush(30)
sys.exit(1 if left else 0)
"#;

/// What record `i` is, and what the examples must answer.
#[derive(Debug, Clone, PartialEq)]
enum Kind {
    /// `{"event":"e-I"}` with a `source` header: ok.
    Good,
    /// As Good, with `simulate: transient`: retry once, then ok.
    Transient,
    /// Value `not json I`: reject naming JSON.
    NotJson,
    /// Value `[I]`: reject, not an object.
    NotObject,
    /// No value at all: reject.
    NoValue,
}

fn kind(i: usize) -> Kind {
    match i % 10 {
        3 => Kind::NotJson,
        5 => Kind::Transient,
        7 => Kind::NotObject,
        9 if i % 20 == 9 => Kind::NoValue,
        _ => Kind::Good,
    }
}

fn produce_records(topic: &str, range: std::ops::Range<usize>) {
    let mut lines = String::new();
    for i in range {
        let key = format!("k-{i}");
        let (value, mut headers) = match kind(i) {
            Kind::Good | Kind::Transient => (
                Some(format!("{{\"event\":\"e-{i}\"}}")),
                serde_json::json!({"source": format!("src-{i}")}),
            ),
            Kind::NotJson => (Some(format!("not json {i}")), serde_json::json!({})),
            Kind::NotObject => (Some(format!("[{i}]")), serde_json::json!({})),
            Kind::NoValue => (None, serde_json::json!({})),
        };
        if kind(i) == Kind::Transient {
            headers["simulate"] = "transient".into();
        }
        lines += &serde_json::json!({"key": key, "value": value, "headers": headers}).to_string();
        lines.push('\n');
    }
    use std::io::Write as _;
    let mut p = Command::new(python())
        .args(["-c", PRODUCER, &brokers(), topic])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    p.stdin.take().unwrap().write_all(lines.as_bytes()).unwrap();
    assert!(
        p.wait().unwrap().success(),
        "the librdkafka producer failed"
    );
}

/// The handled file's records, by key, each with how often it came.
fn handled(file: &Path) -> BTreeMap<String, Vec<serde_json::Value>> {
    let mut out: BTreeMap<String, Vec<serde_json::Value>> = BTreeMap::new();
    for line in std::fs::read_to_string(file).unwrap_or_default().lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        out.entry(v["key"].as_str().unwrap().to_string())
            .or_default()
            .push(v);
    }
    out
}

fn good(i: usize) -> bool {
    matches!(kind(i), Kind::Good | Kind::Transient)
}

/// The handler processes under `run` (by /proc/PID/comm).
fn handler_pids(run: i32, comm: &str) -> Vec<i32> {
    support::descendants(run)
        .into_iter()
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/comm"))
                .is_ok_and(|c| c.trim_end().starts_with(comm))
        })
        .collect()
}

/// The whole scenario for one example: `cmd` is the handler command, `comm`
/// the name its process goes by, `by` what it writes into each record.
fn example(cmd: &str, comm: &str, by: &str) {
    let (topic, group) = (unique(&format!("ex-{by}")), unique(&format!("g-ex-{by}")));
    let dead = format!("{topic}-dead");
    create_topic(&brokers(), &topic, 2);
    create_topic(&brokers(), &dead, 1);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("handled.jsonl");
    const FIRST: usize = 200;
    let mut run = Run::new(&topic, &group)
        .workers(2)
        .exec(cmd)
        .format("json")
        .args(["--verdicts", "--dead-letter-topic", &dead])
        .args(["--commit-interval", "100ms"])
        .env("HANDLED_FILE", &file)
        .state(dir.path())
        .spawn();
    // The records come once both workers are members: a record answered
    // `retry` holds its partition's commit (the in-memory retry), so a
    // start-up rebalance that moved such a partition would deliver the
    // records behind it again (at-least-once, and not what this checks).
    support::wait_members(dir.path(), &group, &topic, 2, Duration::from_secs(60));
    produce_records(&topic, 0..FIRST);
    let want_good = (0..FIRST).filter(|&i| good(i)).count();
    wait_for(Duration::from_secs(90), "every good record handled", || {
        (handled(&file).len() >= want_good).then_some(())
    });

    // SIGTERM to each handler: it answers what it read and exits 0; kswarm
    // restarts it; old records are not handled again, new ones once.
    std::thread::sleep(Duration::from_millis(500)); // commits of the last acks
    let pids = handler_pids(run.pid(), comm);
    assert_eq!(pids.len(), 2, "two {comm} handlers under kswarm");
    for &p in &pids {
        kill(Pid::from_raw(p), Signal::SIGTERM).unwrap();
    }
    let t = std::time::Instant::now();
    while !{
        let now = handler_pids(run.pid(), comm);
        now.len() == 2 && now.iter().all(|p| !pids.contains(p))
    } {
        if t.elapsed() > Duration::from_secs(30) {
            let procs: Vec<String> = support::descendants(run.pid())
                .iter()
                .map(|p| {
                    let f = |n: &str| {
                        std::fs::read_to_string(format!("/proc/{p}/{n}")).unwrap_or_default()
                    };
                    format!(
                        "{p} {} {}",
                        f("comm").trim(),
                        f("cmdline").replace('\0', " ")
                    )
                })
                .collect();
            panic!(
                "{comm} handlers {pids:?} not replaced within 30 s after SIGTERM; processes:\n{}\n{}",
                procs.join("\n"),
                run.stderr_text()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    const ALL: usize = 300;
    produce_records(&topic, FIRST..ALL);
    let want_good = (0..ALL).filter(|&i| good(i)).count();
    wait_for(Duration::from_secs(90), "the new records handled", || {
        (handled(&file).len() >= want_good).then_some(())
    });
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(support::stop(&mut run), Some(0), "{}", run.stderr_text());
    let stderr = run.stderr_text();
    for slot in 0..2 {
        let said = format!("[worker {slot}] ");
        assert!(
            stderr.lines().any(|l| l.starts_with(&said)
                && l.contains("SIGTERM: every record read has its verdict")),
            "slot {slot}'s handler says it answered what it read on SIGTERM:\n{stderr}"
        );
    }

    // Every good record once, as produced; no bad one.
    let seen = handled(&file);
    for i in 0..ALL {
        let key = format!("k-{i}");
        match (good(i), seen.get(&key)) {
            (true, Some(v)) => {
                assert_eq!(v.len(), 1, "{key} handled {} times: {v:?}", v.len());
                let r = &v[0];
                assert_eq!(r["source"], format!("src-{i}"), "{r}");
                assert_eq!(r["event"], format!("e-{i}"), "{r}");
                assert_eq!(r["by"], by, "{r}");
            }
            (true, None) => panic!("{key} was never handled"),
            (false, Some(v)) => panic!("{key} ({:?}) was handled: {v:?}", kind(i)),
            (false, None) => {}
        }
    }
    assert_eq!(seen.len(), want_good);

    // Every bad record in the dead-letter topic, once, with the reason.
    let copies = read_topic(&dead);
    let mut by_key: BTreeMap<String, &serde_json::Value> = BTreeMap::new();
    for c in &copies {
        let key = c["key"].as_str().unwrap().to_string();
        assert!(
            by_key.insert(key.clone(), c).is_none(),
            "{key} copied twice"
        );
    }
    for i in (0..ALL).filter(|&i| !good(i)) {
        let key = format!("k-{i}");
        let c = by_key
            .get(&key)
            .unwrap_or_else(|| panic!("{key} not in {dead}"));
        let reason = c["headers"]["kswarm.reason"].as_str().unwrap();
        let want = match kind(i) {
            Kind::NotJson => "value is not JSON",
            Kind::NotObject => "value is not a JSON object",
            Kind::NoValue => "no value",
            _ => unreachable!(),
        };
        assert!(reason.starts_with(want), "{key}: reason {reason:?}");
        assert_eq!(c["headers"]["kswarm.original.topic"], topic.as_str());
    }
    assert_eq!(copies.len(), ALL - want_good);
    // Everything is done: committed to the end of the log.
    let ends: i64 = committed(&brokers(), &topic, &group, 2)
        .values()
        .map(|o| o.expect("a commit on each partition"))
        .sum();
    assert_eq!(ends, ALL as i64);
}

fn handler_path(rel: &str) -> PathBuf {
    repo_root().join("examples/handlers").join(rel)
}

#[test]
fn python_example() {
    // Standard library only: any python3 does (the venv's is the suite's).
    let cmd = format!(
        "{} {}",
        python().display(),
        handler_path("python/handler.py").display()
    );
    example(&cmd, "python", "python");
}

#[test]
fn node_example() {
    let cmd = format!("node {}", handler_path("node/handler.js").display());
    example(&cmd, "node", "node");
}

#[test]
fn go_example() {
    // Standard library only: built offline into a temp dir, no downloads.
    let out = tempfile::tempdir().unwrap();
    let bin = out.path().join("kswarm-handler");
    let build = Command::new("go")
        .args(["build", "-o"])
        .arg(&bin)
        .arg(".")
        .current_dir(handler_path("go"))
        .env("GOTOOLCHAIN", "local")
        .env("GOFLAGS", "-mod=mod")
        .env("GOPROXY", "off")
        .output()
        .expect("go on PATH");
    assert!(build.status.success(), "{}", support::output_text(&build));
    example(&bin.display().to_string(), "kswarm-handler", "go");
}

#[test]
fn shell_example() {
    let cmd = handler_path("shell/handler.sh").display().to_string();
    // `#!/usr/bin/env bash`: the process is bash's.
    example(&cmd, "bash", "shell");
}
