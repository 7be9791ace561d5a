//! `kswarm plan` and `prepare_for_run` against the real broker; partition
//! counts are checked with confluent-kafka (librdkafka), not with kswarm.

mod support;

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::{brokers, kswarm, python, stderr, unique};

/// Run a command to completion, killing it (and failing) after `limit`.
fn run_bounded(mut cmd: Command, limit: Duration) -> (Output, Duration) {
    let start = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start command");
    loop {
        if child.try_wait().expect("try_wait").is_some() {
            let out = child.wait_with_output().expect("wait");
            return (out, start.elapsed());
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().expect("wait");
            panic!(
                "command did not finish within {limit:?}; stderr: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn plan(args: &[&str]) -> Output {
    let mut c = kswarm();
    c.arg("plan").args(args);
    run_bounded(c, Duration::from_secs(30)).0
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn json_plan(args: &[&str]) -> serde_json::Value {
    let mut all = args.to_vec();
    all.push("--json");
    let o = plan(&all);
    assert!(o.status.success(), "plan {args:?} failed: {}", stderr(&o));
    serde_json::from_str(stdout(&o).trim()).expect("one JSON object on stdout")
}

/// Partition count as librdkafka sees it (None: the topic does not exist).
fn peer_partitions(topic: &str) -> Option<u64> {
    let script = r#"
import sys
from confluent_kafka.admin import AdminClient
a = AdminClient({"bootstrap.servers": sys.argv[1]})
md = a.list_topics(timeout=10)
t = md.topics.get(sys.argv[2])
print(len(t.partitions) if t is not None and t.error is None else "missing")
"#;
    let mut c = Command::new(python());
    c.arg("-c").arg(script).arg(brokers()).arg(topic);
    let (o, _) = run_bounded(c, Duration::from_secs(30));
    assert!(o.status.success(), "peer metadata failed: {}", stderr(&o));
    let s = stdout(&o);
    match s.trim() {
        "missing" => None,
        n => Some(n.parse().expect("a count")),
    }
}

#[test]
fn apply_creates_the_topic_and_a_second_apply_does_nothing() {
    let b = brokers();
    let t = unique("plan-create");
    assert_eq!(peer_partitions(&t), None);

    let dry = plan(&["-b", &b, "-t", &t, "-w", "3"]);
    assert!(dry.status.success(), "{}", stderr(&dry));
    let text = stdout(&dry);
    assert!(text.contains("missing"), "{text}");
    assert!(text.contains("create topic"), "{text}");
    assert!(text.contains("add --apply"), "{text}");
    assert_eq!(
        peer_partitions(&t),
        None,
        "a plan without --apply changed the topic"
    );

    let o = plan(&["-b", &b, "-t", &t, "-w", "3", "--apply"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains(&format!("created topic '{t}' with 3 partitions")),
        "{}",
        stdout(&o)
    );
    assert_eq!(peer_partitions(&t), Some(3));

    let again = json_plan(&["-b", &b, "-t", &t, "-w", "3", "--apply"]);
    assert_eq!(again["action"], "nothing");
    assert_eq!(again["current"], 3);
    assert_eq!(again["partitions"], 3);
    assert_eq!(again["applied"], true);
    assert_eq!(peer_partitions(&t), Some(3));
}

#[test]
fn more_partitions_than_workers_are_shared_out_never_shrunk() {
    let b = brokers();
    let t = unique("plan-shrink");
    let o = plan(&["-b", &b, "-t", &t, "-p", "5", "--apply"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(peer_partitions(&t), Some(5));

    let j = json_plan(&["-b", &b, "-t", &t, "-w", "2", "--apply"]);
    assert_eq!(j["action"], "cannot-shrink");
    assert_eq!(j["current"], 5);
    assert_eq!(j["target"], 2);
    assert_eq!(j["workers"], 2);
    assert_eq!(j["partitions"], 5);
    let notes: Vec<String> = j["notes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap().to_string())
        .collect();
    assert!(
        notes.iter().any(|n| n.contains("cannot remove")),
        "{notes:?}"
    );
    assert!(
        notes
            .iter()
            .any(|n| n.contains("shared out, 2 or 3 per worker")),
        "{notes:?}"
    );
    assert_eq!(peer_partitions(&t), Some(5));

    let text = plan(&["-b", &b, "-t", &t, "-w", "2"]);
    assert!(stdout(&text).contains("cannot shrink"), "{}", stdout(&text));
}

#[test]
fn json_has_the_documented_shape() {
    let b = brokers();
    let t = unique("plan-json");
    let j = json_plan(&["-b", &b, "-t", &t, "-w", "2", "-p", "4"]);
    assert_eq!(j["topic"], t.as_str());
    assert_eq!(j["brokers"][0], b.split(',').next().unwrap());
    assert!(j["cores"].as_u64().unwrap() >= 1);
    assert!(j["cores_affinity"].as_u64().unwrap() >= 1);
    assert!(j["cores_quota"].is_null() || j["cores_quota"].is_u64());
    assert_eq!(j["workers"], 2);
    assert!(j["current"].is_null());
    assert_eq!(j["target"], 4);
    assert_eq!(j["action"], "create");
    assert!(j["description"].as_str().unwrap().contains("4 partitions"));
    assert!(j["notes"].is_array());
    assert_eq!(j["applied"], false);
    assert_eq!(j["failed"], false);
    assert!(j["result"].is_null());
    assert_eq!(j["partitions"], 4);
    assert_eq!(peer_partitions(&t), None);
}

#[test]
fn unreachable_broker_fails_with_the_address_within_the_timeout() {
    let t = unique("plan-unreach");
    let mut c = kswarm();
    c.args([
        "plan",
        "-b",
        "127.0.0.1:1",
        "-t",
        &t,
        "--connect-timeout",
        "2s",
    ]);
    let (o, took) = run_bounded(c, Duration::from_secs(20));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(e.contains("127.0.0.1:1"), "{e}");
    assert!(e.contains("--connect-timeout"), "{e}");
    assert!(
        took < Duration::from_secs(4),
        "took {took:?} for a 2s --connect-timeout"
    );
}

#[test]
fn usage_errors_exit_2_and_name_the_flag() {
    let b = brokers();
    let cases: &[(&[&str], &str)] = &[
        (&["-t", "bad name"], "--topic"),
        (&["-t", ""], "--topic"),
        (&["-t", "ok", "-w", "0"], "--workers"),
        (&["-t", "ok", "-w", "-3"], "--workers"),
        (&["-t", "ok", "-w", "many"], "--workers"),
        (&["-t", "ok", "-p", "0"], "--partitions"),
        (&["-t", "ok", "-p", "-1"], "--partitions"),
        (
            &["-t", "ok", "--connect-timeout", "soon"],
            "--connect-timeout",
        ),
        (
            &["-t", "ok", "--replication-factor", "0"],
            "--replication-factor",
        ),
        (&["-t", "ok", "--bogus"], "--bogus"),
    ];
    for (args, flag) in cases {
        let mut all = vec!["-b", b.as_str()];
        all.extend_from_slice(args);
        let o = plan(&all);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(
            stderr(&o).contains(flag),
            "{args:?} should name {flag}: {}",
            stderr(&o)
        );
    }
    let o = plan(&["-b", "nohostport", "-t", "ok"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--brokers"), "{}", stderr(&o));
}

#[test]
fn taskset_to_one_cpu_gives_one_core() {
    let b = brokers();
    let t = unique("plan-taskset");
    assert!(
        Command::new("taskset").arg("--version").output().is_ok(),
        "taskset (util-linux) is needed for this test"
    );
    let mut c = Command::new("taskset");
    c.args(["-c", "0"])
        .arg(support::kswarm_bin())
        .args(["plan", "-b", &b, "-t", &t, "--json"]);
    let (o, _) = run_bounded(c, Duration::from_secs(30));
    assert!(o.status.success(), "{}", stderr(&o));
    let j: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(j["cores"], 1, "{j}");
    assert_eq!(j["cores_affinity"], 1, "{j}");
    assert_eq!(j["workers"], 1, "{j}");
    assert_eq!(j["target"], 1, "{j}");
}

/// Kafka grows the topic with CreatePartitions; tansu has no CreatePartitions,
/// and kswarm names the way out.
#[test]
fn growing_a_topic_grows_it_or_names_the_way_out() {
    let b = brokers();
    let t = unique("plan-grow");
    let o = plan(&["-b", &b, "-t", &t, "-p", "1", "--apply"]);
    assert!(o.status.success(), "{}", stderr(&o));

    let dry = plan(&["-b", &b, "-t", &t, "-w", "3"]);
    assert!(dry.status.success());
    assert!(stdout(&dry).contains("grow topic"), "{}", stdout(&dry));
    if support::broker_kind() == support::Broker::Kafka {
        assert!(
            !stdout(&dry).contains("does not support CreatePartitions"),
            "{}",
            stdout(&dry)
        );
        let o = plan(&["-b", &b, "-t", &t, "-w", "3", "--apply"]);
        assert!(o.status.success(), "{}", stderr(&o));
        assert_eq!(peer_partitions(&t), Some(3));
        let j = json_plan(&["-b", &b, "-t", &t, "-w", "3"]);
        assert_eq!(j["action"], "nothing", "{j}");
        return;
    }
    // The dry run already warns.
    assert!(
        stdout(&dry).contains("does not support CreatePartitions"),
        "{}",
        stdout(&dry)
    );

    let o = plan(&["-b", &b, "-t", &t, "-w", "3", "--apply"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(e.contains("CreatePartitions"), "{e}");
    assert!(e.contains("-p keep"), "{e}");
    assert!(e.contains("admin tools"), "{e}");
    assert_eq!(peer_partitions(&t), Some(1));

    // -p keep is the way out.
    let j = json_plan(&["-b", &b, "-t", &t, "-w", "3", "-p", "keep", "--apply"]);
    assert_eq!(j["action"], "keep");
    assert_eq!(j["partitions"], 1);
    assert!(
        j["notes"].to_string().contains("2 workers will stay idle"),
        "{j}"
    );
}

#[test]
fn keep_on_a_missing_topic_is_a_clear_error() {
    let b = brokers();
    let t = unique("plan-keep");
    let o = plan(&["-b", &b, "-t", &t, "-p", "keep", "--apply"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("-p keep"), "{}", stderr(&o));
    assert!(stderr(&o).contains("does not exist"), "{}", stderr(&o));
    assert_eq!(peer_partitions(&t), None);
}

#[test]
fn two_concurrent_applies_on_one_new_topic_both_succeed() {
    let b = brokers();
    let t = unique("plan-race");
    let spawn = || {
        kswarm()
            .args(["plan", "-b", &b, "-t", &t, "-w", "2", "--apply"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start kswarm")
    };
    let (a, c) = (spawn(), spawn());
    for child in [a, c] {
        let o = child.wait_with_output().unwrap();
        assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    }
    assert_eq!(peer_partitions(&t), Some(2));
}

fn run_config(args: &[&str]) -> kswarm::config::RunConfig {
    use clap::Parser;
    let mut all = vec!["kswarm", "run"];
    all.extend_from_slice(args);
    let cli = kswarm::cli::Cli::try_parse_from(all).expect("flags parse");
    match cli.command {
        kswarm::cli::Command::Run(a) => kswarm::config::RunConfig::from_args(&a).expect("valid"),
        _ => unreachable!(),
    }
}

#[test]
fn prepare_for_run_creates_and_reports_the_counts() {
    let b = brokers();
    let t = unique("plan-prepare");
    let cfg = run_config(&["-b", &b, "-t", &t, "-g", "g", "-w", "2", "-p", "3"]);
    let p = kswarm::plan::prepare_for_run(&cfg).expect("prepare");
    assert_eq!((p.workers, p.partitions), (2, 3));
    assert_eq!(peer_partitions(&t), Some(3));
    // Again, wanting fewer: kept, not shrunk.
    let cfg = run_config(&["-b", &b, "-t", &t, "-g", "g", "-w", "1"]);
    let p = kswarm::plan::prepare_for_run(&cfg).expect("prepare again");
    assert_eq!((p.workers, p.partitions), (1, 3));

    let missing = unique("plan-prepare-keep");
    let cfg = run_config(&["-b", &b, "-t", &missing, "-g", "g", "-p", "keep"]);
    let e = kswarm::plan::prepare_for_run(&cfg).unwrap_err().to_string();
    assert!(e.contains("-p keep"), "{e}");
    assert_eq!(peer_partitions(&missing), None);
}

#[test]
fn creating_an_existing_topic_counts_as_created_by_someone_else() {
    // What the loser of a create race sees: TOPIC_ALREADY_EXISTS, then a re-read.
    let b = brokers();
    let t = unique("plan-exists");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let cfg = kswarm::config::ConnectConfig {
            brokers: vec![b.clone()],
            connect_timeout: Duration::from_secs(10),
            security: Default::default(),
            settings: Default::default(),
        };
        let admin = kswarm::admin::Admin::connect(&cfg).await.expect("connect");
        let first = admin.create_topic(&t, 2, 1).await.expect("create");
        assert_eq!(first, kswarm::admin::Applied::Created(2));
        let second = admin.create_topic(&t, 2, 1).await.expect("create again");
        assert_eq!(second, kswarm::admin::Applied::CreatedByOther(2));
        assert_eq!(admin.partition_count(&t).await.unwrap(), Some(2));
    });
}
