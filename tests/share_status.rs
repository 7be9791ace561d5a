//! `kswarm status` of a share group (KIP-932) on Apache Kafka 4.4, checked
//! against Kafka's own `kafka-share-groups` tool (ShareGroupCommand, from
//! kafka-tools through scripts/kafka.sh): the members and their partitions
//! as `--describe --members --verbose` shows them, the start offsets as
//! `--describe --verbose` shows them, and a backlog of high watermark minus
//! start offset per partition (not the whole topic as lag); and the same
//! figures at `--metrics-addr`. The run is paused mid-topic (its handler
//! stops answering) so that every view reads one quiet group.
//!
//! On tansu, which has no share groups, `status` shows a group the classic
//! way (checked instead). Run with a broker, e.g.
//! `KSWARM_KAFKA_PROPS='group.initial.rebalance.delay.ms=0' scripts/kafka.sh start 29600`, then
//! `KSWARM_TEST_BROKERS=127.0.0.1:29600 cargo test --release --test share_status`.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::*;

fn temp_dir(name: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(unique(name));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Kafka's share-groups tool on `group`: its rows, each a map from the
/// header's column names to the values.
fn kafka_share_groups(group: &str, flags: &[&str]) -> Vec<BTreeMap<String, String>> {
    let out = Command::new(repo_root().join("scripts/kafka.sh"))
        .args([
            "tool",
            "org.apache.kafka.tools.consumer.group.ShareGroupCommand",
            "--bootstrap-server",
            &brokers(),
            "--describe",
            "--group",
            group,
        ])
        .args(flags)
        .output()
        .expect("scripts/kafka.sh tool ShareGroupCommand");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<String> = match lines.next() {
        Some(h) => h.split_whitespace().map(str::to_string).collect(),
        None => return Vec::new(),
    };
    lines
        .map(|l| {
            let cells: Vec<&str> = l.split_whitespace().collect();
            assert_eq!(cells.len(), header.len(), "a row of the tool: {l}\n{text}");
            header
                .iter()
                .cloned()
                .zip(cells.into_iter().map(str::to_string))
                .collect()
        })
        .collect()
}

/// (member id, client id, host, member epoch, partitions of `topic`).
type MemberView = (String, String, String, i64, BTreeSet<i64>);

/// The tool's members: ASSIGNMENT is `topic:0,topic:1` (or `-`).
fn tool_members(group: &str, topic: &str) -> BTreeSet<MemberView> {
    kafka_share_groups(group, &["--members", "--verbose"])
        .into_iter()
        .map(|r| {
            let parts = r["ASSIGNMENT"]
                .split(',')
                .filter_map(|a| a.rsplit_once(':'))
                .filter(|(t, _)| *t == topic)
                .map(|(_, p)| p.parse().unwrap())
                .collect();
            (
                r["CONSUMER-ID"].clone(),
                r["CLIENT-ID"].clone(),
                r["HOST"].trim_start_matches('/').to_string(),
                r["MEMBER-EPOCH"].parse().unwrap(),
                parts,
            )
        })
        .collect()
}

fn status_members(s: &Value) -> BTreeSet<MemberView> {
    s["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["member_id"].as_str().unwrap().to_string(),
                m["client_id"].as_str().unwrap().to_string(),
                m["client_host"].as_str().unwrap().to_string(),
                m["member_epoch"].as_i64().unwrap(),
                m["partitions"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| p.as_i64().unwrap())
                    .collect(),
            )
        })
        .collect()
}

/// The tool's (start offset, lag) per partition of `topic`.
fn tool_offsets(group: &str, topic: &str) -> BTreeMap<i64, (i64, i64)> {
    kafka_share_groups(group, &["--verbose"])
        .into_iter()
        .filter(|r| r["TOPIC"] == topic)
        .map(|r| {
            (
                r["PARTITION"].parse().unwrap(),
                (
                    r["START-OFFSET"].parse().unwrap(),
                    r["LAG"].parse().unwrap(),
                ),
            )
        })
        .collect()
}

/// status's (start offset, high watermark, backlog) per partition.
fn status_offsets(s: &Value) -> BTreeMap<i64, (i64, i64, i64)> {
    s["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let n = |k: &str| p[k].as_i64().unwrap_or_else(|| panic!("{k} in {p}"));
            (
                n("partition"),
                (n("start_offset"), n("high_watermark"), n("backlog")),
            )
        })
        .collect()
}

/// /metrics as text.
fn metrics_text(port: u16) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    Some(text)
}

/// The samples of one share family, per partition.
fn share_samples(text: &str, family: &str) -> BTreeMap<i64, i64> {
    text.lines()
        .filter(|l| l.starts_with(&format!("kswarm_{family}{{")))
        .map(|l| {
            let part = l.split("partition=\"").nth(1).unwrap();
            let p = part.split('"').next().unwrap().parse().unwrap();
            (p, l.rsplit(' ').next().unwrap().parse().unwrap())
        })
        .collect()
}

/// A handler that appends each record to `out` and answers `ok`, waiting
/// first while the file `pause` exists (the run stays a member, quiet).
fn pausable_handler(out: &Path, pause: &Path) -> String {
    format!(
        "{} -c 'import sys, os, time\nf=open(sys.argv[1], \"a\")\nfor l in sys.stdin:\n    time.sleep(0.01)\n    while os.path.exists(sys.argv[2]): time.sleep(0.05)\n    f.write(l); f.flush(); sys.stdout.write(\"ok\\n\"); sys.stdout.flush()\n' {} {}",
        py(),
        out.display(),
        pause.display()
    )
}

fn status_of(state: &Path, group: &str, topic: &str) -> Value {
    status_json(state, &brokers(), group, topic)
}

/// Read `f` until two reads a second apart agree: the value then.
fn settled<T: PartialEq + std::fmt::Debug>(what: &str, mut f: impl FnMut() -> T) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = f();
    loop {
        std::thread::sleep(Duration::from_secs(1));
        let now = f();
        if now == last {
            return now;
        }
        assert!(Instant::now() < deadline, "{what} never settled: {now:?}");
        last = now;
    }
}

#[test]
fn status_and_metrics_show_a_share_groups_members_and_backlog_as_kafkas_tool_does() {
    let b = brokers();
    let topic = unique("sst");
    let group = unique("sst-g");
    create_topic(&b, &topic, 2);
    let n = 2000;
    produce(&b, &topic, &numbered("ss", n));
    if broker_kind() == Broker::Tansu {
        // No share groups: the group is shown the classic way, no "protocol".
        let s = status_of(&temp_dir("sst-state"), &group, &topic);
        assert!(s.get("protocol").is_none(), "{s}");
        assert_eq!(s["total_lag"], n as i64, "{s}");
        return;
    }
    let dir = temp_dir("sst");
    let (handled, pause) = (dir.join("handled.jsonl"), dir.join("pause"));
    let state = temp_dir("sst-state");
    let port = free_port();
    let mut run = Run::new(&topic, &group)
        .name("share-status")
        .workers(2)
        .protocol("share")
        .flag("--from", "earliest")
        .flag("--metrics-addr", format!("127.0.0.1:{port}"))
        .exec(&pausable_handler(&handled, &pause))
        .state(&state)
        .spawn();
    // Let it handle part of the topic, then pause it: a member, quiet.
    wait_for(Duration::from_secs(90), "300 records handled", || {
        (read_lines(&handled).len() >= 300).then_some(())
    });
    std::fs::write(&pause, "").unwrap();
    let handled_before = settled("records handled", || read_lines(&handled).len());

    // Members: kswarm's two workers, as Kafka's tool lists them.
    let members = settled("the tool's members", || tool_members(&group, &topic));
    assert_eq!(members.len(), 2, "{members:?}");
    let s = status_of(&state, &group, &topic);
    assert_eq!(s["protocol"], "share", "{s}");
    assert_eq!(status_members(&s), members, "{s}");
    let assigned: BTreeSet<i64> = members.iter().flat_map(|m| m.4.clone()).collect();
    assert_eq!(assigned, BTreeSet::from([0, 1]), "{members:?}");

    // Offsets: the tool's start offsets, and backlog = high watermark - start.
    let tool = settled("the tool's offsets", || tool_offsets(&group, &topic));
    let s = status_of(&state, &group, &topic);
    let ours = status_offsets(&s);
    assert_eq!(
        ours.keys().collect::<Vec<_>>(),
        tool.keys().collect::<Vec<_>>()
    );
    let mut total = 0;
    for (p, &(start, hwm, backlog)) in &ours {
        let (tool_start, tool_lag) = tool[p];
        assert_eq!(start, tool_start, "partition {p}: {s}\ntool: {tool:?}");
        assert_eq!(backlog, hwm - start, "partition {p}: {s}");
        // Kafka's lag leaves out records finished past the start offset.
        assert!(tool_lag <= backlog, "partition {p}: {s}\ntool: {tool:?}");
        eprintln!(
            "partition {p}: start {start} hwm {hwm} backlog {backlog}, Kafka's lag {tool_lag}"
        );
        total += backlog;
    }
    let hwms: i64 = ours.values().map(|v| v.1).sum();
    assert_eq!(hwms, n as i64);
    assert_eq!(s["total_backlog"], total, "{s}");
    assert!(
        total > 0 && total < n as i64,
        "part of the topic is left: {s}"
    );
    // Every record before a start offset was handled (acknowledged) by kswarm.
    let starts: i64 = ours.values().map(|v| v.0).sum();
    assert!(
        starts <= handled_before as i64,
        "{starts} records before the start offsets, {handled_before} handled"
    );

    // The human view says the same.
    let out = kswarm()
        .env("KSWARM_STATE_DIR", &state)
        .args(["status", "-b", &b, "-g", &group, "-t", &topic])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        text.contains(&format!("share group  total backlog {total}")),
        "{text}"
    );

    // --metrics-addr: the same figures (its poller reads every 5 s).
    wait_for(
        Duration::from_secs(20),
        "the metrics' share backlog",
        || {
            let m = metrics_text(port)?;
            let backlog = share_samples(&m, "share_backlog");
            let start = share_samples(&m, "share_start_offset");
            let want_backlog: BTreeMap<i64, i64> = ours.iter().map(|(p, v)| (*p, v.2)).collect();
            let want_start: BTreeMap<i64, i64> = ours.iter().map(|(p, v)| (*p, v.0)).collect();
            (backlog == want_backlog && start == want_start).then_some(())
        },
    );

    std::fs::remove_file(&pause).unwrap();
    assert_eq!(stop(&mut run), Some(0), "{}", run.stderr_text());
}

#[test]
fn status_of_a_group_that_does_not_exist_says_so_and_how_to_start_it() {
    let b = brokers();
    let topic = unique("sst-none");
    let group = unique("sst-none-g");
    create_topic(&b, &topic, 1);
    let out = kswarm()
        .env("KSWARM_STATE_DIR", temp_dir("sst-none-state"))
        .args(["status", "-b", &b, "-g", &group, "-t", &topic])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    // Not an error: a group not started yet is a state status can show.
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        text.contains(&format!("no group '{group}' on the broker yet"))
            && text.contains(&format!("kswarm run -g {group} -t {topic}")),
        "{text}"
    );
}
