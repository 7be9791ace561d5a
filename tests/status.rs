//! `kswarm status`: committed offset, end and lag per partition, and the
//! supervisor that owns them on this host, checked against Apache Kafka's own
//! consumer-groups tool (kafka-tools, run through scripts/kafka.sh). Kafka
//! only: tansu reports wrong high watermarks (docs/limits.md).
mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use support::{
    create_topic, numbered, produce_with, read_seen, status_json, wait_for, wait_members, Run,
};

/// Per partition (committed, end, lag) as `kafka-consumer-groups --describe` says.
fn kafka_tool_view(brokers: &str, group: &str) -> BTreeMap<i64, (Option<i64>, i64, Option<i64>)> {
    let _ = brokers;
    let text = support::kafka_consumer_groups(group, &[]);
    let num = |s: &str| s.parse::<i64>().ok();
    text.lines()
        .filter(|l| l.starts_with(group))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // GROUP TOPIC PARTITION CURRENT-OFFSET LOG-END-OFFSET LAG ...
            (
                num(f[2]).unwrap(),
                (num(f[3]), num(f[4]).unwrap(), num(f[5])),
            )
        })
        .collect()
}

#[test]
fn status_matches_kafkas_consumer_groups_tool_and_names_the_owners() {
    assert_eq!(
        support::broker_kind(),
        support::Broker::Kafka,
        "a Kafka-only test"
    );
    let b = support::brokers();
    let (topic, group) = (support::unique("st"), support::unique("g-st"));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("handled.jsonl");
    create_topic(&b, &topic, 3);
    produce_with(&b, &topic, &numbered("s", 3000), &["--batch-size", "100"]);
    // A slow handler: part of the log handled and committed, part not.
    let handler = support::slow_appending_handler(&file, 0.002);
    let mut run = Run::new(&topic, &group)
        .workers(2)
        .exec(&handler)
        .args(["--commit-interval", "200ms"])
        .state(dir.path())
        .spawn();
    let pids = wait_members(dir.path(), &group, &topic, 2, Duration::from_secs(60));
    wait_for(Duration::from_secs(60), "some records handled", || {
        (read_seen(&file).len() >= 500).then_some(())
    });
    // While it runs: every partition has an owner among the workers.
    let v = status_json(dir.path(), &b, &group, &topic);
    assert_eq!(v["supervisor"]["pid"], run.pid());
    for row in v["partitions"].as_array().unwrap() {
        let owner = row["owner_pid"].as_i64().expect("an owner") as i32;
        assert!(pids.contains(&owner), "{row}");
    }
    // The broker's view of the group, every host: both workers, their
    // client ids and address, and the 3 partitions between them.
    assert_eq!(v["version"], 1, "{v}");
    assert_eq!(v["group_protocol"], "classic", "{v}");
    assert_eq!(v["group_state"], "Stable", "{v}");
    let members = v["members"]
        .as_array()
        .expect("members from DescribeGroups");
    assert_eq!(members.len(), 2, "{v}");
    let mut clients: Vec<&str> = members
        .iter()
        .map(|m| m["client_id"].as_str().unwrap())
        .collect();
    clients.sort();
    // kswarm-SLOT.wN.HOST: this host runs 2 workers (see group_size)
    let host = nix::unistd::gethostname().unwrap().into_string().unwrap();
    assert_eq!(
        clients,
        [format!("kswarm-0.w2.{host}"), format!("kswarm-1.w2.{host}")]
    );
    let mut owned: Vec<i64> = members
        .iter()
        .flat_map(|m| {
            m["partitions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p.as_i64().unwrap())
        })
        .collect();
    owned.sort();
    assert_eq!(owned, [0, 1, 2]);
    assert!(
        members
            .iter()
            .all(|m| m["client_host"] == "127.0.0.1" && m["protocol"] == "classic"),
        "{v}"
    );
    // --watch --json: one document per --interval, until stopped.
    let mut watch = support::kswarm()
        .env("KSWARM_STATE_DIR", dir.path())
        .args([
            "status",
            "-b",
            &b,
            "-g",
            &group,
            "-t",
            &topic,
            "--json",
            "--watch",
            "--interval",
            "300ms",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    watch.kill().unwrap();
    let out = watch.wait_with_output().unwrap();
    let docs: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON document per line"))
        .collect();
    assert!(
        docs.len() >= 2,
        "{} documents in 1.5 s at 300ms",
        docs.len()
    );
    assert!(docs.iter().all(|d| d["group"] == group.as_str()));
    // Stopped: offsets stand still; kswarm and Kafka's tool must agree.
    assert_eq!(support::stop(&mut run), Some(0));
    let v = status_json(dir.path(), &b, &group, &topic);
    assert!(v["supervisor"].is_null(), "no supervisor runs now: {v}");
    let ours: BTreeMap<i64, (Option<i64>, i64, Option<i64>)> = v["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["partition"].as_i64().unwrap(),
                (
                    r["committed"].as_i64(),
                    r["end"].as_i64().unwrap(),
                    r["lag"].as_i64(),
                ),
            )
        })
        .collect();
    let kafka = kafka_tool_view(&b, &group);
    eprintln!("kswarm status: {ours:?}\nkafka-consumer-groups: {kafka:?}");
    // Kafka's tool lists an empty group's partitions only where it has a
    // committed offset; kswarm lists every partition, uncommitted ones
    // without committed offset or lag.
    let committed_only: BTreeMap<i64, (Option<i64>, i64, Option<i64>)> = ours
        .iter()
        .filter(|(_, (c, _, _))| c.is_some())
        .map(|(&p, &row)| (p, row))
        .collect();
    assert_eq!(committed_only, kafka);
    for (p, (c, _, lag)) in &ours {
        if c.is_none() {
            assert_eq!(*lag, None, "partition {p}: no commit, so no lag to show");
        }
    }
    // The total counts a partition with nothing committed as all to do.
    let total: i64 = ours.values().map(|(_, e, l)| l.unwrap_or(*e)).sum();
    assert_eq!(v["total_lag"], total);
    assert!(total > 0, "part of the log is still to be handled");
    let ends: i64 = ours.values().map(|(_, e, _)| e).sum();
    assert_eq!(ends, 3000);
}

#[test]
fn a_bad_watch_interval_exits_2_before_connecting() {
    let out = support::kswarm()
        .args([
            "status",
            "-b",
            "127.0.0.1:1",
            "-g",
            "g",
            "-t",
            "t",
            "--watch",
            "--interval",
            "soon",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(support::last_error(&err).contains("--interval"), "{err}");
}

/// `status --json` carries `security` as `plan --json` does (the README
/// promises it in both): the same words for the same connection settings.
#[test]
fn status_json_shows_security_as_plan_json_does() {
    let b = support::brokers();
    let (topic, group) = (support::unique("st-sec"), support::unique("g-st-sec"));
    create_topic(&b, &topic, 1);
    let dir = tempfile::tempdir().unwrap();
    let json_of = |sub: &[&str]| -> serde_json::Value {
        let out = support::kswarm()
            .env("KSWARM_STATE_DIR", dir.path())
            .args(sub)
            .args(["-b", &b, "-g", &group, "-t", &topic, "--json"])
            .args(["-X", "security.protocol=plaintext"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{sub:?}: {err}");
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let status = json_of(&["status"]);
    let plan = json_of(&["plan", "-w", "1"]);
    assert_eq!(status["security"], "PLAINTEXT", "{status}");
    assert_eq!(status["security"], plan["security"], "{plan}");
}
