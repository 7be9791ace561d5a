//! Many hosts, one group, on real network namespaces: a Linux bridge with an
//! address of its own (10.231.N.1) where a dedicated Apache Kafka node
//! listens, and one namespace per host (10.231.N.11, .12, ..) joined to it by
//! a veth pair, each with its own host name (a UTS namespace via `unshare`),
//! its own state directory and its own `kswarm run` with a different `-w`.
//!
//! One test, the scenarios in order:
//! 0. hosts of 1, 2 and 3 workers start at the same moment: the topic ends
//!    with 6 partitions, one per worker (then they stop); the same again
//!    under `--group-protocol consumer`;
//!
//! then on one topic and group:
//! 1. hosts of 1, 2 and 3 workers start one after another: `-p auto` sizes
//!    the topic for the whole group (1, then 3, then 6 partitions) and every
//!    worker owns one partition;
//! 2. a whole host is SIGKILLed: the others take its partitions within the
//!    session timeout, nothing is lost;
//! 3. a new host of 3 joins: the topic grows to 7, the group rebalances onto
//!    the new partition, nothing is lost;
//! 4. a host stops gracefully: its partitions move at once, no record is
//!    handled twice;
//! 5. a host's veth is cut: the others take its partitions within the
//!    session timeout, nothing is lost.
//!
//! The namespaces, the bridge and the broker are removed when the test ends,
//! failed or not (and any left by a killed run are removed first).
//! Needs root (it runs as root in CI) and iproute2.
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use support::*;

const SESSION: &str = "6s";

fn sh(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", cmd])
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn must(cmd: &str) {
    let out = Command::new("sh")
        .args(["-c", cmd])
        .output()
        .expect("run sh");
    assert!(
        out.status.success(),
        "`{cmd}` failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The bridge, the namespaces and the broker; all removed on drop.
struct Net {
    id: u32,
    hosts: Vec<String>,
    port: u16,
    started_broker: bool,
}

impl Net {
    fn bridge(&self) -> String {
        format!("ksbr{}", self.id)
    }
    fn broker_ip(&self) -> String {
        format!("10.231.{}.1", self.id)
    }
    fn brokers(&self) -> String {
        format!("{}:{}", self.broker_ip(), self.port)
    }
    fn ns(&self, host: &str) -> String {
        format!("ks{}-{host}", self.id)
    }
    fn veth(&self, host: &str) -> String {
        format!("ks{}{host}0", self.id)
    }

    fn up(hosts: &[&str]) -> Net {
        assert!(
            nix::unistd::geteuid().is_root(),
            "tests/hosts.rs makes network namespaces: run it as root"
        );
        let id = std::process::id() % 200 + 20;
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let mut net = Net {
            id,
            hosts: Vec::new(),
            port,
            started_broker: false,
        };
        net.teardown(hosts); // whatever a killed run left under these names
        must(&format!(
            "ip link add {b} type bridge && ip addr add {ip}/24 dev {b} && ip link set {b} up",
            b = net.bridge(),
            ip = net.broker_ip()
        ));
        for (i, h) in hosts.iter().enumerate() {
            let ns = net.ns(h);
            let v0 = net.veth(h);
            let v1 = format!("ks{}{h}1", id);
            must(&format!(
                "ip netns add {ns} && ip link add {v0} type veth peer name {v1} && \
                 ip link set {v1} netns {ns} && ip link set {v0} master {b} up && \
                 ip -n {ns} addr add 10.231.{id}.{a}/24 dev {v1} && ip -n {ns} link set {v1} up && \
                 ip -n {ns} link set lo up",
                b = net.bridge(),
                a = 11 + i
            ));
            net.hosts.push(h.to_string());
        }
        // A Kafka node of its own, listening on the bridge (where every
        // namespace reaches it) instead of loopback.
        let out = Command::new(repo_root().join("scripts/kafka.sh"))
            .args(["start", &port.to_string()])
            .env("KSWARM_KAFKA_HOST", net.broker_ip())
            .env("KSWARM_KAFKA_PROPS", "group.initial.rebalance.delay.ms=0")
            .output()
            .expect("run scripts/kafka.sh");
        net.started_broker = true;
        assert!(
            out.status.success(),
            "scripts/kafka.sh start failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        net
    }

    fn teardown(&self, hosts: &[&str]) {
        for h in hosts {
            sh(&format!("ip netns del {} 2>/dev/null", self.ns(h)));
            sh(&format!("ip link del {} 2>/dev/null", self.veth(h)));
        }
        sh(&format!("ip link del {} 2>/dev/null", self.bridge()));
    }

    /// `kswarm ARGS` on `host`: in its namespace, under its own host name.
    fn kswarm<I, S>(&self, host: &str, state: &Path, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut c = Command::new("ip");
        c.args([
            "netns",
            "exec",
            &self.ns(host),
            "unshare",
            "--uts",
            "sh",
            "-c",
        ])
        .arg(r#"hostname "$0" && exec "$@""#)
        .arg(host)
        .arg(kswarm_bin())
        .args(args)
        .env_remove("RUST_LOG")
        .env("KSWARM_STATE_DIR", state);
        c
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        if self.started_broker {
            let _ = Command::new(repo_root().join("scripts/kafka.sh"))
                .args(["stop", &self.port.to_string()])
                .output();
        }
        let hosts: Vec<&str> = self.hosts.iter().map(String::as_str).collect();
        self.teardown(&hosts);
    }
}

/// Partition -> owning host, from `kswarm status --json` (members on every host).
fn owners(brokers: &str, topic: &str, group: &str) -> Option<Vec<(i32, String)>> {
    let out = kswarm()
        .args(["status", "-b", brokers, "-g", group, "-t", topic, "--json"])
        .output()
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    let mut owned = Vec::new();
    for m in v["members"].as_array()? {
        let client = m["client_id"].as_str()?;
        // kswarm-SLOT.wN.HOST
        let host = client.splitn(3, '.').nth(2)?.to_string();
        for p in m["partitions"].as_array()? {
            owned.push((p.as_i64()? as i32, host.clone()));
        }
    }
    owned.sort();
    Some(owned)
}

fn partition_count(brokers: &str, topic: &str) -> Option<i64> {
    let out = kswarm()
        .args(["plan", "-b", brokers, "-t", topic, "-p", "keep", "--json"])
        .output()
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    v["current"].as_i64()
}

/// Wait until `n` partitions are owned, one owner each, none by `not`.
fn wait_spread(
    net: &Net,
    topic: &str,
    group: &str,
    n: usize,
    not: &[&str],
    within: Duration,
) -> Duration {
    let t0 = Instant::now();
    wait_for(
        within,
        &format!("{n} partitions owned, none by {not:?}"),
        || {
            let o = owners(&net.brokers(), topic, group)?;
            let parts: std::collections::BTreeSet<i32> = o.iter().map(|(p, _)| *p).collect();
            (o.len() == n && parts.len() == n && o.iter().all(|(_, h)| !not.contains(&h.as_str())))
                .then_some(())
        },
    );
    t0.elapsed()
}

struct Host {
    proc: Proc,
    seen: PathBuf,
}

fn start_host(net: &Net, dir: &Path, host: &str, workers: u32, topic: &str, group: &str) -> Host {
    start_host_with(net, dir, host, workers, topic, group, &[])
}

fn start_host_with(
    net: &Net,
    dir: &Path,
    host: &str,
    workers: u32,
    topic: &str,
    group: &str,
    extra: &[&str],
) -> Host {
    let seen = dir.join(format!("seen-{host}"));
    let state = dir.join(format!("state-{host}"));
    std::fs::create_dir_all(&state).unwrap();
    let run = Run::new(topic, group)
        .brokers(&net.brokers())
        .workers(workers as usize)
        .no_partitions()
        .args(["--session-timeout", SESSION])
        .format("json")
        .exec(&appending_handler(&seen))
        .args(extra);
    let cmd = net.kswarm(host, &state, run.argv());
    Host {
        proc: Proc::spawn(&format!("kswarm on {host}"), cmd, None),
        seen,
    }
}

fn all_seen(hosts: &[&Host]) -> Vec<Seen> {
    hosts.iter().flat_map(|h| read_seen(&h.seen)).collect()
}

#[test]
fn three_hosts_share_one_group() {
    let net = Net::up(&["a", "b", "c", "d"]);
    let b = net.brokers();
    let dir = tempfile::tempdir().unwrap();
    let topic = unique("hosts");
    let group = unique("hosts-g");
    // 0. three hosts start at the same moment on a fresh topic: each sees
    //    only itself at first; within a few size checks the topic has one
    //    partition per worker of all three, and each worker owns one
    {
        let t0 = unique("hosts-race");
        let g0 = unique("hosts-race-g");
        let racers: Vec<Host> = [("a", 1), ("b", 2), ("c", 3)]
            .iter()
            .map(|(h, w)| start_host(&net, dir.path(), h, *w, &t0, &g0))
            .collect();
        let took = wait_spread(&net, &t0, &g0, 6, &[], Duration::from_secs(60));
        eprintln!("three hosts started together: 6 partitions, one per worker, after {took:?}");
        assert_eq!(partition_count(&b, &t0), Some(6));
        drop(racers);
        // the same under KIP-848, where the broker assigns the new partitions
        let t1 = unique("hosts-race-848");
        let g1 = unique("hosts-race-848-g");
        let racers: Vec<Host> = [("a", 1), ("b", 2), ("c", 3)]
            .iter()
            .map(|(h, w)| {
                start_host_with(
                    &net,
                    dir.path(),
                    h,
                    *w,
                    &t1,
                    &g1,
                    &["--group-protocol", "consumer"],
                )
            })
            .collect();
        let took = wait_spread(&net, &t1, &g1, 6, &[], Duration::from_secs(60));
        eprintln!("the same with --group-protocol consumer: after {took:?}");
        assert_eq!(partition_count(&b, &t1), Some(6));
        drop(racers);
    }
    let mut produced = 0usize;
    let produce_batch = |prefix: &str, n: usize| -> usize {
        produce(&b, &topic, &numbered(prefix, n));
        n
    };

    // 1. hosts of 1, 2 and 3 workers, one after another
    let ha = start_host(&net, dir.path(), "a", 1, &topic, &group);
    wait_spread(&net, &topic, &group, 1, &[], Duration::from_secs(60));
    let hb = start_host(&net, dir.path(), "b", 2, &topic, &group);
    wait_spread(&net, &topic, &group, 3, &[], Duration::from_secs(60));
    let hc = start_host(&net, dir.path(), "c", 3, &topic, &group);
    wait_spread(&net, &topic, &group, 6, &[], Duration::from_secs(60));
    assert_eq!(partition_count(&b, &topic), Some(6), "1 + 2 + 3 workers");
    let o = owners(&b, &topic, &group).unwrap();
    for (host, n) in [("a", 1), ("b", 2), ("c", 3)] {
        assert_eq!(o.iter().filter(|(_, h)| h == host).count(), n, "{o:?}");
    }
    // the group-wide view, from a host that has not started yet
    let plan = net
        .kswarm(
            "d",
            dir.path(),
            [
                "plan", "-b", &b, "-t", &topic, "-g", &group, "-w", "3", "--json",
            ],
        )
        .output()
        .unwrap();
    let pj: serde_json::Value = serde_json::from_slice(&plan.stdout).expect("plan --json");
    assert_eq!(pj["host_id"], "d");
    assert_eq!(pj["group_workers"], 9, "{pj}");
    assert_eq!(pj["target"], 9);
    assert_eq!(pj["group_hosts"].as_array().unwrap().len(), 3);

    produced += produce_batch("one", 1200);
    wait_for(Duration::from_secs(60), "batch one handled", || {
        missing(&tally(&all_seen(&[&ha, &hb, &hc])).values, "one", 1200)
            .is_empty()
            .then_some(())
    });

    // 2. host b dies whole: supervisor, workers and handlers SIGKILLed
    let mut hb = hb;
    let pids: Vec<i32> = std::iter::once(hb.proc.pid())
        .chain(descendants(hb.proc.pid()))
        .collect();
    for pid in &pids {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(*pid), Signal::SIGKILL);
    }
    hb.proc.wait(Duration::from_secs(10));
    let took = wait_spread(&net, &topic, &group, 6, &["b"], Duration::from_secs(30));
    eprintln!("host b killed: its partitions moved in {took:?}");
    assert!(
        took < Duration::from_secs(15),
        "took {took:?}, session {SESSION}"
    );
    produced += produce_batch("two", 1200);
    wait_for(
        Duration::from_secs(60),
        "batch two handled without host b",
        || {
            missing(&tally(&all_seen(&[&ha, &hc])).values, "two", 1200)
                .is_empty()
                .then_some(())
        },
    );

    // 3. host d of 3 joins: 1 + 3 + 3 = 7 partitions
    let hd = start_host(&net, dir.path(), "d", 3, &topic, &group);
    wait_spread(&net, &topic, &group, 7, &["b"], Duration::from_secs(60));
    assert_eq!(partition_count(&b, &topic), Some(7));
    produced += produce_batch("three", 1400);
    wait_for(Duration::from_secs(60), "batch three handled", || {
        missing(&tally(&all_seen(&[&ha, &hc, &hd])).values, "three", 1400)
            .is_empty()
            .then_some(())
    });

    // 4. host c stops gracefully: its partitions move at once, nothing twice
    let mut hc = hc;
    hc.proc.signal(Signal::SIGTERM);
    assert!(
        hc.proc.wait(Duration::from_secs(30)).success(),
        "{}",
        hc.proc.stderr_text()
    );
    let took = wait_spread(
        &net,
        &topic,
        &group,
        7,
        &["b", "c"],
        Duration::from_secs(30),
    );
    eprintln!("host c stopped: its partitions moved in {took:?}");
    assert!(
        took < Duration::from_secs(5),
        "a graceful stop took {took:?}"
    );
    produced += produce_batch("four", 1400);
    wait_for(Duration::from_secs(60), "batch four handled", || {
        missing(&tally(&all_seen(&[&ha, &hd])).values, "four", 1400)
            .is_empty()
            .then_some(())
    });
    let four: Vec<Seen> = all_seen(&[&ha, &hb, &hc, &hd])
        .into_iter()
        .filter(|s| s.value.starts_with("four"))
        .collect();
    assert_eq!(
        tally(&four).duplicates,
        0,
        "records handled twice across a graceful stop"
    );

    // 5. host d's cable is cut
    must(&format!("ip link set {} down", net.veth("d")));
    let took = wait_spread(
        &net,
        &topic,
        &group,
        7,
        &["b", "c", "d"],
        Duration::from_secs(30),
    );
    eprintln!("host d cut off: its partitions moved in {took:?}");
    assert!(
        took < Duration::from_secs(15),
        "took {took:?}, session {SESSION}"
    );
    produced += produce_batch("five", 700);
    wait_for(
        Duration::from_secs(60),
        "batch five handled by host a alone",
        || {
            missing(&tally(&all_seen(&[&ha])).values, "five", 700)
                .is_empty()
                .then_some(())
        },
    );

    // nothing lost anywhere
    let all = all_seen(&[&ha, &hb, &hc, &hd]);
    let t = tally(&all);
    assert_eq!(t.distinct, produced, "every record handled at least once");
    drop(hd);
    drop(ha);
}
