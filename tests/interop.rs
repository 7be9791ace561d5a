//! kswarm and real third-party consumers in ONE consumer group: librdkafka
//! (confluent-kafka), kafka-python, kafkajs and the Java `KafkaConsumer`, each
//! with the `range` and the `roundrobin` assignor (classic protocol).
//!
//! Every case takes a fresh 4-partition topic and a fresh group, starts one
//! side, waits until it owns all partitions, then starts the other (so on
//! Apache Kafka, which keeps the first member as leader, the side started
//! first computes the assignment: `*_peer_first` has the peer assign
//! partitions to kswarm's workers, `*_kswarm_first` the other way round). It
//! waits until `kswarm run -w 2` (two members) and the peer (one member) own
//! disjoint partitions covering the topic, produces numbered records and
//! waits until the records handled by kswarm (an `--exec` handler appending
//! each `--format json` line to a file) and by the peer (its own file) hold
//! every id. Then it checks: nothing lost; both kswarm and the peer handled
//! records, each only from partitions it owned; first deliveries of each
//! partition in offset order; no duplicates (nothing crashed or rebalanced
//! while records flowed). Last, the peer closes (LeaveGroup when its stdin
//! closes), kswarm takes over all partitions, a SIGTERM stops kswarm with
//! exit 0, and the committed offsets stand at the end of every partition.
//!
//! Peers: tests/peers/{ck_member.py, kp_member.py} (build/venv, from
//! `scripts/broker.sh install`), tests/peers/kjs_member.js and
//! tests/peers/JavaMember.java (`scripts/peers.sh install`). A missing peer
//! fails its cases, never skips them.
mod common;
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use support::{
    appending_handler, committed, create_topic, numbered, produce_with, read_seen, run_state,
    start_run, tally, wait_for, wait_members, Proc, Seen,
};

const PARTITIONS: usize = 4;
const RECORDS: usize = 2000;
/// Session timeout of kswarm and of every peer (Kafka's minimum).
const SESSION: &str = "6s";

/// Up to the first group with both sides in it (a JVM start, a rebalance).
const SETTLE: Duration = Duration::from_secs(90);
/// Produce to every record handled.
const CONSUME: Duration = Duration::from_secs(90);
/// The peer's close (LeaveGroup) and kswarm taking its partitions over.
const HANDOVER: Duration = Duration::from_secs(60);
/// SIGTERM to kswarm's exit (drain, commit, leave).
const STOP: Duration = Duration::from_secs(40);

fn build_dir() -> PathBuf {
    std::env::var("KSWARM_BUILD_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| common::repo_root().join("build"))
}

fn peers_dir() -> PathBuf {
    common::repo_root().join("tests/peers")
}

const INSTALL_HINT: &str = "run scripts/peers.sh install";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PeerKind {
    /// confluent-kafka (librdkafka): tests/peers/ck_member.py consume-to-file.
    Librdkafka,
    /// kafka-python: tests/peers/kp_member.py consume-to-file.
    KafkaPython,
    /// kafkajs 2.x: tests/peers/kjs_member.js.
    Kafkajs,
    /// The Java KafkaConsumer (kafka-clients): tests/peers/JavaMember.java.
    Java,
}

impl PeerKind {
    fn name(self) -> &'static str {
        match self {
            PeerKind::Librdkafka => "librdkafka",
            PeerKind::KafkaPython => "kafka-python",
            PeerKind::Kafkajs => "kafkajs",
            PeerKind::Java => "java",
        }
    }

    /// The command that runs this peer; panics (never skips) when the peer is
    /// not installed.
    fn command(
        self,
        brokers: &str,
        topic: &str,
        group: &str,
        assignor: &str,
        out: &Path,
    ) -> Command {
        let out = out.display().to_string();
        let tail = [brokers, topic, group, assignor, out.as_str()];
        match self {
            PeerKind::Librdkafka | PeerKind::KafkaPython => {
                let script = if self == PeerKind::Librdkafka {
                    "ck_member.py"
                } else {
                    "kp_member.py"
                };
                // common::python() panics naming scripts/broker.sh install.
                let mut c = Command::new(common::python());
                c.arg(peers_dir().join(script))
                    .arg("consume-to-file")
                    .args(tail);
                c
            }
            PeerKind::Kafkajs => {
                let modules = build_dir().join("node/node_modules");
                assert!(
                    modules.join("kafkajs/package.json").exists(),
                    "the kafkajs peer is missing ({} has no kafkajs): {INSTALL_HINT}",
                    modules.display()
                );
                assert!(
                    which("node"),
                    "the kafkajs peer needs Node.js ('node' on PATH): install Node.js 20, then {INSTALL_HINT}"
                );
                let mut c = Command::new("node");
                c.arg(peers_dir().join("kjs_member.js"))
                    .args(tail)
                    .env("NODE_PATH", &modules);
                c
            }
            PeerKind::Java => {
                let classes = build_dir().join("java-peer");
                let class = classes.join("JavaMember.class");
                assert!(
                    class.exists(),
                    "the Java peer is missing ({} not compiled): {INSTALL_HINT}",
                    class.display()
                );
                let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
                let source = peers_dir().join("JavaMember.java");
                assert!(
                    modified(&class) >= modified(&source),
                    "the Java peer is out of date ({} is newer than its class): {INSTALL_HINT}",
                    source.display()
                );
                assert!(
                    which("java"),
                    "the Java peer needs 'java' on PATH (JDK 17+), then {INSTALL_HINT}"
                );
                let libs = build_dir().join("kafka/libs");
                let mut c = Command::new("java");
                c.args(["-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1"])
                    .arg(format!(
                        "-Dlog4j2.configurationFile={}",
                        classes.join("log4j2.yaml").display()
                    ))
                    .arg("-cp")
                    .arg(format!("{}:{}/*", classes.display(), libs.display()))
                    .arg("JavaMember")
                    .args(tail);
                c
            }
        }
    }
}

fn which(prog: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|d| d.join(prog).is_file()))
        .unwrap_or(false)
}

/// A running peer: its stdin (closing it makes the peer leave the group), its
/// stdout lines (JSON) and stderr; SIGKILLed on drop.
struct Peer {
    kind: PeerKind,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<String>>,
    status: Option<ExitStatus>,
}

impl Peer {
    fn start(kind: PeerKind, mut cmd: Command) -> Peer {
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("start the {} peer: {e} ({INSTALL_HINT})", kind.name()));
        let stdin = child.stdin.take();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let out = child.stdout.take().unwrap();
        let l2 = lines.clone();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                l2.lock().unwrap().push(l);
            }
        });
        let mut err = child.stderr.take().unwrap();
        let e2 = stderr.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            loop {
                match err.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => e2
                        .lock()
                        .unwrap()
                        .push_str(&String::from_utf8_lossy(&buf[..n])),
                }
            }
        });
        Peer {
            kind,
            child,
            stdin,
            lines,
            stderr,
            status: None,
        }
    }

    fn json_lines(&self) -> Vec<serde_json::Value> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// The partitions the peer owns now, from its latest "assigned" line
    /// (None before the first, or after a "revoked" one).
    fn assigned(&self) -> Option<Vec<i32>> {
        let mut now = None;
        for v in self.json_lines() {
            if let Some(a) = v.get("assigned").and_then(|a| a.as_array()) {
                now = Some(
                    a.iter()
                        .map(|x| x.as_i64().expect("a partition number") as i32)
                        .collect(),
                );
            } else if v.get("revoked").is_some() {
                now = None;
            }
        }
        now
    }

    /// Whether the peer led the group at its latest join (only kafkajs says).
    fn led(&self) -> Option<bool> {
        self.json_lines()
            .iter()
            .rev()
            .find_map(|v| v.get("leader").and_then(|l| l.as_bool()))
    }

    fn closed(&self) -> bool {
        self.json_lines().iter().any(|v| v.get("closed").is_some())
    }

    fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().expect("try_wait");
        }
        self.status
    }

    /// Close stdin (the peer commits, leaves the group and exits) and wait
    /// for its exit.
    fn close(&mut self, within: Duration) -> ExitStatus {
        drop(self.stdin.take());
        let name = self.kind.name();
        let st = wait_for(within, &format!("the {name} peer to exit"), || {
            self.try_status()
        });
        // Let the reader threads catch the last lines.
        std::thread::sleep(Duration::from_millis(100));
        st
    }

    fn stderr_text(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if self.try_status().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The last `n` characters of a log, for failure messages.
fn tail(s: &str, n: usize) -> &str {
    let mut start = s.len().saturating_sub(n);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum First {
    Peer,
    Kswarm,
}

/// One interop case: its names, files and processes. On a panic its Drop
/// prints what kswarm and the peer said before both are killed.
struct Case {
    kind: PeerKind,
    assignor: &'static str,
    brokers: String,
    topic: String,
    group: String,
    state: PathBuf,
    kswarm_file: PathBuf,
    peer_file: PathBuf,
    kswarm: Option<Proc>,
    peer: Option<Peer>,
}

impl Drop for Case {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        eprintln!(
            "--- interop {} {}: topic {} group {}",
            self.kind.name(),
            self.assignor,
            self.topic,
            self.group
        );
        eprintln!("kswarm state: {:?}", self.kswarm_view());
        if let Some(k) = &self.kswarm {
            eprintln!(
                "--- kswarm stderr (tail):\n{}",
                tail(&k.stderr_text(), 12_000)
            );
        }
        if let Some(p) = &self.peer {
            eprintln!(
                "--- {} peer stdout:\n{}",
                self.kind.name(),
                p.lines.lock().unwrap().join("\n")
            );
            eprintln!(
                "--- {} peer stderr (tail):\n{}",
                self.kind.name(),
                tail(&p.stderr_text(), 12_000)
            );
        }
    }
}

impl Case {
    fn new(kind: PeerKind, assignor: &'static str) -> Case {
        let brokers = common::brokers();
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(common::unique("interop"));
        let state = dir.join("state");
        std::fs::create_dir_all(&state).unwrap();
        let name = format!("interop-{}-{assignor}", kind.name());
        Case {
            kind,
            assignor,
            brokers,
            topic: common::unique(&name),
            group: common::unique(&format!("{name}-g")),
            state,
            kswarm_file: dir.join("kswarm.jsonl"),
            peer_file: dir.join("peer.jsonl"),
            kswarm: None,
            peer: None,
        }
    }

    fn start_kswarm(&mut self) {
        let handler = appending_handler(&self.kswarm_file);
        let args = [
            "-w",
            "2",
            "-p",
            "keep",
            "--assignor",
            self.assignor,
            "--format",
            "json",
            "--session-timeout",
            SESSION,
            "--exec",
            &handler,
        ];
        self.kswarm = Some(start_run(
            "kswarm run",
            &self.topic,
            &self.group,
            &self.state,
            &args,
        ));
    }

    fn start_peer(&mut self) {
        let cmd = self.kind.command(
            &self.brokers,
            &self.topic,
            &self.group,
            self.assignor,
            &self.peer_file,
        );
        self.peer = Some(Peer::start(self.kind, cmd));
    }

    fn kswarm_proc(&mut self) -> &mut Proc {
        self.kswarm.as_mut().expect("kswarm started")
    }

    fn peer_ref(&self) -> &Peer {
        self.peer.as_ref().expect("peer started")
    }

    /// kswarm's workers' partitions when every worker is a member of one and
    /// the same generation (None otherwise).
    fn kswarm_view(&self) -> Option<Vec<Vec<i32>>> {
        let s = run_state(&self.state, &self.group, &self.topic)?;
        let first = s.workers.first()?.generation?;
        s.workers
            .iter()
            .all(|w| w.generation == Some(first))
            .then(|| s.workers.iter().map(|w| w.partitions.clone()).collect())
    }

    /// Whether `owners` hold disjoint, non-empty partition sets covering the topic.
    fn covers(owners: &[Vec<i32>]) -> bool {
        let mut seen = BTreeSet::new();
        let disjoint = owners
            .iter()
            .flatten()
            .all(|&p| (0..PARTITIONS as i32).contains(&p) && seen.insert(p));
        disjoint && seen.len() == PARTITIONS && owners.iter().all(|o| !o.is_empty())
    }

    /// Wait until kswarm's 2 workers own every partition between them.
    fn wait_kswarm_owns_all(&self, within: Duration, what: &str) -> Vec<Vec<i32>> {
        wait_for(within, what, || {
            let v = self.kswarm_view()?;
            (v.len() == 2 && Self::covers(&v)).then_some(v)
        })
    }

    /// Wait until kswarm's 2 workers and the peer own disjoint partitions
    /// covering the topic; (kswarm's partitions, the peer's).
    fn wait_settled(&self) -> (BTreeSet<i32>, BTreeSet<i32>) {
        let what = format!(
            "kswarm's 2 workers and the {} peer to share the {PARTITIONS} partitions ({})",
            self.kind.name(),
            self.assignor
        );
        wait_for(SETTLE, &what, || {
            let mut owners = self.kswarm_view()?;
            if owners.len() != 2 {
                return None;
            }
            let ks: BTreeSet<i32> = owners.iter().flatten().copied().collect();
            let peer = self.peer_ref().assigned()?;
            owners.push(peer.clone());
            Self::covers(&owners).then(|| (ks, peer.into_iter().collect()))
        })
    }
}

fn partitions_of(seen: &[Seen]) -> BTreeSet<i32> {
    seen.iter().map(|s| s.partition).collect()
}

fn run_case(kind: PeerKind, assignor: &'static str, first: First) {
    let t0 = Instant::now();
    let mut c = Case::new(kind, assignor);
    // A missing peer fails here, before anything is started.
    drop(kind.command(&c.brokers, "t", "g", assignor, Path::new("/dev/null")));
    create_topic(&c.brokers, &c.topic, PARTITIONS);

    // One side alone first: it owns everything, and on Kafka it leads the
    // group the other side then joins.
    match first {
        First::Peer => {
            c.start_peer();
            let name = kind.name();
            wait_for(
                SETTLE,
                &format!("the {name} peer to own all partitions alone"),
                || {
                    (c.peer_ref().assigned()? == (0..PARTITIONS as i32).collect::<Vec<_>>())
                        .then_some(())
                },
            );
            c.start_kswarm();
        }
        First::Kswarm => {
            c.start_kswarm();
            wait_members(&c.state, &c.group, &c.topic, 2, SETTLE);
            c.wait_kswarm_owns_all(SETTLE, "kswarm's 2 workers to own all partitions alone");
            c.start_peer();
        }
    }
    let (ks_parts, peer_parts) = c.wait_settled();
    let settled = t0.elapsed();

    let prefix = format!("{}-{assignor}", kind.name());
    produce_with(
        &c.brokers,
        &c.topic,
        &numbered(&prefix, RECORDS),
        &["--batch-size", "50"],
    );
    let all: BTreeSet<String> = (0..RECORDS).map(|i| format!("{prefix}-{i}")).collect();
    let (ks_seen, peer_seen) = wait_for(
        CONSUME,
        "every record handled by kswarm or the peer",
        || {
            let ks = read_seen(&c.kswarm_file);
            let peer = read_seen(&c.peer_file);
            let have: BTreeSet<&String> = ks.iter().chain(&peer).map(|s| &s.value).collect();
            all.iter().all(|v| have.contains(v)).then_some((ks, peer))
        },
    );
    let consumed = t0.elapsed();

    // Nothing lost, nothing else.
    let (kt, pt) = (tally(&ks_seen), tally(&peer_seen));
    let values: BTreeSet<&String> = kt.values.iter().chain(&pt.values).collect();
    let strangers: Vec<&&String> = values.iter().filter(|v| !all.contains(**v)).collect();
    assert!(
        strangers.is_empty(),
        "records nobody produced: {strangers:?}"
    );
    // Both sides did their share, each from its own partitions only.
    assert!(
        !ks_seen.is_empty() && !peer_seen.is_empty(),
        "kswarm handled {} records, the {} peer {}: both own partitions, both must handle some",
        ks_seen.len(),
        kind.name(),
        peer_seen.len()
    );
    assert_eq!(
        partitions_of(&ks_seen),
        ks_parts,
        "kswarm handled records of partitions other than the ones it was assigned"
    );
    assert_eq!(
        partitions_of(&peer_seen),
        peer_parts,
        "the {} peer handled records of partitions other than the ones it was assigned",
        kind.name()
    );
    // Per-partition order of first deliveries, on each side.
    assert_eq!(
        kt.out_of_order, 0,
        "kswarm: first deliveries out of offset order"
    );
    assert_eq!(
        pt.out_of_order,
        0,
        "the {} peer: first deliveries out of offset order",
        kind.name()
    );
    // No crash and no rebalance while records flowed: each record once.
    let key = |s: &Seen| (s.partition, s.offset);
    let peer_keys: BTreeSet<(i32, i64)> = peer_seen.iter().map(key).collect();
    let both: BTreeSet<(i32, i64)> = ks_seen
        .iter()
        .map(key)
        .filter(|k| peer_keys.contains(k))
        .collect();
    assert_eq!(
        (kt.duplicates, pt.duplicates, both.len()),
        (0, 0, 0),
        "duplicates (kswarm, peer, handled by both)"
    );
    assert_eq!(
        kt.distinct + pt.distinct,
        RECORDS,
        "distinct records handled"
    );

    // The peer leaves; kswarm takes its partitions over.
    let led = c.peer_ref().led();
    let status = c.peer.as_mut().unwrap().close(HANDOVER);
    assert!(
        status.success(),
        "the {} peer exited with {status}",
        kind.name()
    );
    assert!(
        c.peer_ref().closed(),
        "the {} peer did not close cleanly",
        kind.name()
    );
    c.wait_kswarm_owns_all(
        HANDOVER,
        "kswarm's 2 workers to own all partitions after the peer left",
    );

    // SIGTERM: drain, commit, leave, exit 0.
    let k = c.kswarm_proc();
    k.signal(Signal::SIGTERM);
    let status = k.wait(STOP);
    assert_eq!(status.code(), Some(0), "kswarm run after SIGTERM: {status}");

    // Everything handled is committed, on both sides.
    let mut end: BTreeMap<i32, i64> = BTreeMap::new();
    for s in ks_seen.iter().chain(&peer_seen) {
        let e = end.entry(s.partition).or_insert(0);
        *e = (*e).max(s.offset + 1);
    }
    let committed = committed(&c.brokers, &c.topic, &c.group, PARTITIONS);
    let want: BTreeMap<i32, Option<i64>> = (0..PARTITIONS as i32)
        .map(|p| (p, end.get(&p).copied()))
        .collect();
    assert_eq!(
        committed, want,
        "committed offsets vs the end of each partition"
    );

    eprintln!(
        "interop {} {assignor} ({} first{}): kswarm {:?} handled {}, peer {:?} handled {}; \
         settled {:.1}s, consumed {:.1}s, done {:.1}s",
        kind.name(),
        match first {
            First::Peer => "peer",
            First::Kswarm => "kswarm",
        },
        match led {
            Some(true) => ", peer led",
            Some(false) => ", kswarm led",
            None => "",
        },
        ks_parts,
        ks_seen.len(),
        peer_parts,
        peer_seen.len(),
        settled.as_secs_f64(),
        consumed.as_secs_f64(),
        t0.elapsed().as_secs_f64()
    );
}

macro_rules! cases {
    ($($name:ident: $kind:ident, $assignor:literal, $first:ident;)*) => {
        $(
            #[test]
            fn $name() {
                run_case(PeerKind::$kind, $assignor, First::$first);
            }
        )*
    };
}

cases! {
    librdkafka_range_peer_first: Librdkafka, "range", Peer;
    librdkafka_range_kswarm_first: Librdkafka, "range", Kswarm;
    librdkafka_roundrobin_peer_first: Librdkafka, "roundrobin", Peer;
    librdkafka_roundrobin_kswarm_first: Librdkafka, "roundrobin", Kswarm;
    kafka_python_range_peer_first: KafkaPython, "range", Peer;
    kafka_python_range_kswarm_first: KafkaPython, "range", Kswarm;
    kafka_python_roundrobin_peer_first: KafkaPython, "roundrobin", Peer;
    kafka_python_roundrobin_kswarm_first: KafkaPython, "roundrobin", Kswarm;
    kafkajs_range_peer_first: Kafkajs, "range", Peer;
    kafkajs_range_kswarm_first: Kafkajs, "range", Kswarm;
    kafkajs_roundrobin_peer_first: Kafkajs, "roundrobin", Peer;
    kafkajs_roundrobin_kswarm_first: Kafkajs, "roundrobin", Kswarm;
    java_range_peer_first: Java, "range", Peer;
    java_range_kswarm_first: Java, "range", Kswarm;
    java_roundrobin_peer_first: Java, "roundrobin", Peer;
    java_roundrobin_kswarm_first: Java, "roundrobin", Kswarm;
}
