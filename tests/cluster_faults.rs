//! kswarm through broker faults on real Apache Kafka nodes that this file
//! starts itself (scripts/kafka.sh; it needs only `scripts/kafka.sh install`,
//! not KSWARM_TEST_BROKERS):
//!
//! - a. 3-node KRaft cluster, topic with replication factor 3 and
//!   `min.insync.replicas=2`: SIGKILL of the node that coordinates the group;
//! - b. the same cluster (the node of a. started again): SIGKILL of the leader
//!   of a partition kswarm consumes (not the coordinator);
//! - c. one disk-backed node: SIGKILL, `scripts/kafka.sh restart` 10 s later;
//! - d. one node: SIGSTOP for 30 s, then SIGCONT;
//! - e. the 3-node cluster again: every partition's leadership moved to
//!   another live node (replica order reassigned, preferred leader election)
//!   while records flow: the old leader answers NOT_LEADER_OR_FOLLOWER or
//!   FENCED_LEADER_EPOCH, and kswarm's fetcher must find the new one without
//!   a restart, a duplicate or a record out of order.
//!
//! In each case kswarm runs 2 workers with an `--exec` handler that appends
//! every record (`--format json`) to a file and acknowledges it; numbered
//! records are produced before the fault and, by a producer thread, all
//! along. Asserted: kswarm's supervisor stays alive the whole time, every
//! id reaches the handler, each partition's first deliveries come in offset
//! order, commits resume, and a SIGTERM at the end stops kswarm with 0.
//! Printed: the time from the fault (a, b) or from the broker's return (c, d)
//! until records flow again on every partition, and until commits resume.
//!
//! The two tests hold one lock: 3 JVMs on a 2-core machine are heavy enough.
//! Ports: 29101-29103 (cluster), 29110 (single node), below Linux's ephemeral
//! range (32768-60999): a fixed port inside it was once taken by a client
//! connection of another test (the node exited with "Address already in use").
//! Every node is stopped
//! by a guard, also when a test panics.
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use support::{
    build_dir, numbered, produce_with, read_seen, tally, wait_for, wait_members, Proc, Run, Seen,
};

const CLUSTER: [u16; 3] = [29101, 29102, 29103];
const SINGLE: u16 = 29110;
const PARTITIONS: i32 = 4;
/// Records produced before kswarm starts.
const PRE: usize = 2000;
/// Records per `kswarm produce` run of the producer thread (5 per partition).
const CHUNK: usize = 20;
/// Longest wait for kswarm to recover once the cluster can serve again.
const RECOVER: Duration = Duration::from_secs(120);

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn one_at_a_time() -> MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// Run `cmd` (stdin `input`), killing it after `timeout`: None then.
fn run_timeout(mut cmd: Command, input: Option<String>, timeout: Duration) -> Option<Output> {
    cmd.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("start {cmd:?}: {e}"));
    let pid = Pid::from_raw(child.id() as i32);
    if let Some(text) = input {
        let mut sin = child.stdin.take().unwrap();
        std::thread::spawn(move || {
            let _ = sin.write_all(text.as_bytes());
        });
    }
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(timeout) {
        Ok(out) => Some(out.expect("wait for a child")),
        Err(_) => {
            let _ = kill(pid, Signal::SIGKILL);
            let _ = rx.recv();
            None
        }
    }
}

/// `scripts/kafka.sh ARGS` with `KSWARM_KAFKA_PROPS=props`.
fn kafka_sh(args: &[&str], props: &str, timeout: Duration) -> Option<Output> {
    let mut cmd = Command::new(support::repo_root().join("scripts/kafka.sh"));
    cmd.args(args).env("KSWARM_KAFKA_PROPS", props);
    run_timeout(cmd, None, timeout)
}

/// A Kafka tool's stdout, or None when it failed or hung.
fn tool(class: &str, args: &[&str]) -> Option<String> {
    let mut all = vec!["tool", class];
    all.extend_from_slice(args);
    let out = kafka_sh(&all, "", Duration::from_secs(60))?;
    if !out.status.success() {
        eprintln!(
            "{class} {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        return None;
    }
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The group's coordinator, from the consumer-groups tool: (port, node id).
fn coordinator(brokers: &str, group: &str) -> (u16, i32) {
    wait_for(
        Duration::from_secs(90),
        &format!("the coordinator of {group} from ConsumerGroupCommand"),
        || {
            let out = tool(
                "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
                &[
                    "--bootstrap-server",
                    brokers,
                    "--describe",
                    "--group",
                    group,
                    "--state",
                ],
            )?;
            // GROUP  COORDINATOR (ID)  ASSIGNMENT-STRATEGY  STATE  #MEMBERS
            out.lines().find_map(|l| {
                let t: Vec<&str> = l.split_whitespace().collect();
                if t.len() < 3 || t[0] != group {
                    return None;
                }
                let port = t[1].rsplit(':').next()?.parse().ok()?;
                let id = t[2].trim_matches(|c| c == '(' || c == ')').parse().ok()?;
                Some((port, id))
            })
        },
    )
}

/// Partition -> leader node id, from TopicCommand --describe.
fn leaders(brokers: &str, topic: &str) -> BTreeMap<i32, i32> {
    wait_for(
        Duration::from_secs(90),
        &format!("the leaders of {topic} from TopicCommand"),
        || {
            let out = tool(
                "org.apache.kafka.tools.TopicCommand",
                &[
                    "--bootstrap-server",
                    brokers,
                    "--describe",
                    "--topic",
                    topic,
                ],
            )?;
            let mut m = BTreeMap::new();
            for l in out.lines() {
                let t: Vec<&str> = l.split_whitespace().collect();
                let after = |key: &str| {
                    t.iter()
                        .position(|x| *x == key)
                        .and_then(|i| t.get(i + 1))
                        .and_then(|v| v.parse::<i32>().ok())
                };
                if let (Some(p), Some(leader)) = (after("Partition:"), after("Leader:")) {
                    m.insert(p, leader);
                }
            }
            (m.len() == PARTITIONS as usize).then_some(m)
        },
    )
}

/// The nodes this file started; stopped on drop (a panicking test included).
struct Nodes {
    ports: Vec<u16>,
    props: String,
    /// Nodes SIGKILLed and not started again.
    killed: Mutex<BTreeSet<u16>>,
}

impl Nodes {
    fn start(ports: &[u16], props: &str) -> Nodes {
        let nodes = Nodes {
            ports: ports.to_vec(),
            props: props.to_string(),
            killed: Mutex::new(BTreeSet::new()),
        };
        // Nodes an aborted earlier run of this file left on its ports.
        nodes.stop_all();
        let list: Vec<String> = ports.iter().map(u16::to_string).collect();
        let list = list.join(",");
        let t = Instant::now();
        let args = if ports.len() == 1 {
            ["start", list.as_str()]
        } else {
            ["cluster-start", list.as_str()]
        };
        let out = kafka_sh(&args, props, Duration::from_secs(240))
            .unwrap_or_else(|| panic!("scripts/kafka.sh {args:?} hung"));
        assert!(
            out.status.success(),
            "scripts/kafka.sh {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!(
            "Kafka on {list} ({props}) up in {:.1} s",
            t.elapsed().as_secs_f64()
        );
        nodes
    }

    fn bootstrap(&self) -> String {
        let v: Vec<String> = self
            .ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        v.join(",")
    }

    fn pid_file(port: u16) -> PathBuf {
        build_dir().join(format!("kafka-{port}/pid"))
    }

    fn pid(&self, port: u16) -> Pid {
        let f = Self::pid_file(port);
        let text = std::fs::read_to_string(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        Pid::from_raw(text.trim().parse().expect("a pid"))
    }

    fn running(&self, port: u16) -> bool {
        std::fs::read_to_string(Self::pid_file(port))
            .ok()
            .and_then(|t| t.trim().parse::<i32>().ok())
            .is_some_and(|p| kill(Pid::from_raw(p), None).is_ok())
    }

    /// SIGKILL the node of `port`.
    fn sigkill(&self, port: u16) {
        kill(self.pid(port), Signal::SIGKILL).expect("SIGKILL a node");
        self.killed.lock().unwrap().insert(port);
    }

    /// `scripts/kafka.sh restart PORT` once the killed process is gone
    /// (blocks until the node answers).
    fn restart(&self, port: u16) -> Output {
        wait_for(
            Duration::from_secs(30),
            &format!("the killed node of {port} to be gone"),
            || (!self.running(port)).then_some(()),
        );
        let p = port.to_string();
        let out = kafka_sh(&["restart", &p], &self.props, Duration::from_secs(180))
            .unwrap_or_else(|| panic!("scripts/kafka.sh restart {port} hung"));
        if out.status.success() {
            self.killed.lock().unwrap().remove(&port);
        }
        out
    }

    /// Start again every node that was killed (by a case, or one that failed
    /// half-way), and let a stopped one go on.
    fn ensure_up(&self) {
        for &p in &self.ports {
            let killed = self.killed.lock().unwrap().contains(&p);
            if self.running(p) && !killed {
                let _ = kill(self.pid(p), Signal::SIGCONT);
            } else {
                let out = self.restart(p);
                assert!(
                    out.status.success(),
                    "restart {p}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
    }

    fn stop_all(&self) {
        for &p in &self.ports {
            if self.running(p) {
                let _ = kill(self.pid(p), Signal::SIGCONT);
            }
        }
        let list: Vec<String> = self.ports.iter().map(u16::to_string).collect();
        let list = list.join(",");
        let out = if self.ports.len() == 1 {
            kafka_sh(&["stop", &list], "", Duration::from_secs(60))
        } else {
            kafka_sh(&["cluster-stop", &list], "", Duration::from_secs(120))
        };
        if out.is_none() {
            eprintln!("scripts/kafka.sh could not stop {list} in time");
        }
    }
}

impl Drop for Nodes {
    fn drop(&mut self) {
        self.stop_all();
    }
}

/// A node SIGSTOPped until dropped.
struct Stopped(Pid);

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = kill(self.0, Signal::SIGCONT);
    }
}

/// `--exec` handler: appends each record line to `file`, flushed, then acks.
fn handler(file: &Path) -> String {
    let venv = build_dir().join("venv/bin/python");
    let py = if venv.exists() {
        venv.display().to_string()
    } else {
        "python3".to_string()
    };
    format!(
        "{py} -c 'import sys\nf=open(sys.argv[1],\"a\")\nfor l in sys.stdin:\n    f.write(l); f.flush(); sys.stdout.write(\"ok\\n\"); sys.stdout.flush()\n' {}",
        file.display()
    )
}

/// Produces chunks of numbered records all along, retrying a chunk until the
/// cluster takes it (a failed run may have written part of it: duplicates
/// are fine, the check is on ids).
struct Producer {
    prefix: String,
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<(usize, Instant)>>>,
    failures: Arc<Mutex<Vec<(Instant, String)>>>,
    thread: Option<JoinHandle<()>>,
}

impl Producer {
    fn start(brokers: &str, topic: &str, prefix: &str) -> Producer {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(Vec::new()));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let (b, t, pfx) = (brokers.to_string(), topic.to_string(), prefix.to_string());
        let (st, ak, fl) = (stop.clone(), acked.clone(), failures.clone());
        let thread = std::thread::spawn(move || {
            let mut c = 0;
            while !st.load(Ordering::Relaxed) {
                let lines = numbered(&format!("{pfx}-c{c}"), CHUNK);
                let mut after_stop = 0;
                loop {
                    let mut cmd = support::kswarm();
                    cmd.args(["produce", "-b", &b, "-t", &t]).args([
                        "--batch-size",
                        "5",
                        "--connect-timeout",
                        "3s",
                    ]);
                    match run_timeout(cmd, Some(lines.clone()), Duration::from_secs(8)) {
                        Some(o) if o.status.success() => {
                            ak.lock().unwrap().push((c, Instant::now()));
                            break;
                        }
                        other => {
                            let why = match other {
                                Some(o) => String::from_utf8_lossy(&o.stderr).trim().to_string(),
                                None => "no answer within 8 s (killed)".to_string(),
                            };
                            fl.lock().unwrap().push((Instant::now(), why));
                            if st.load(Ordering::Relaxed) {
                                after_stop += 1;
                                if after_stop >= 10 {
                                    return;
                                }
                            }
                            std::thread::sleep(Duration::from_millis(200));
                        }
                    }
                }
                c += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        Producer {
            prefix: prefix.to_string(),
            stop,
            acked,
            failures,
            thread: Some(thread),
        }
    }

    /// When the cluster first took a chunk after `t`.
    fn first_ack_after(&self, t: Instant) -> Option<Duration> {
        self.acked
            .lock()
            .unwrap()
            .iter()
            .find(|(_, at)| *at > t)
            .map(|(_, at)| at.duration_since(t))
    }

    /// Stop; the ids the cluster acknowledged.
    fn finish(&mut self) -> Vec<String> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().expect("producer thread");
        }
        let mut ids = Vec::new();
        for (c, _) in self.acked.lock().unwrap().iter() {
            ids.extend((0..CHUNK).map(|i| format!("{}-c{c}-{i}", self.prefix)));
        }
        ids
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Committed offsets of the group per partition, by `kswarm status --json`.
fn committed(brokers: &str, group: &str, topic: &str) -> Option<BTreeMap<i32, i64>> {
    let mut cmd = support::kswarm();
    cmd.args(["status", "-b", brokers, "-g", group, "-t", topic, "--json"])
        .args(["--connect-timeout", "3s"]);
    let out = run_timeout(cmd, None, Duration::from_secs(8))?;
    if !out.status.success() {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    Some(
        v["partitions"]
            .as_array()?
            .iter()
            .filter_map(|p| Some((p["partition"].as_i64()? as i32, p["committed"].as_i64()?)))
            .collect(),
    )
}

/// Per partition, the highest offset handled.
fn highest(seen: &[Seen]) -> BTreeMap<i32, i64> {
    let mut m: BTreeMap<i32, i64> = (0..PARTITIONS).map(|p| (p, -1)).collect();
    for s in seen {
        let h = m.entry(s.partition).or_insert(-1);
        *h = (*h).max(s.offset);
    }
    m
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

/// One case: a topic, a group, a `kswarm run` and a producer.
struct Case {
    tag: &'static str,
    brokers: String,
    topic: String,
    group: String,
    dir: tempfile::TempDir,
    file: PathBuf,
    run: Proc,
    producer: Producer,
    /// No fault that costs a worker: nothing may be handled twice and no
    /// worker restarted.
    exact: bool,
}

impl Case {
    fn start(tag: &'static str, brokers: &str, replication: u32) -> Case {
        let topic = support::unique(&format!("cf-{tag}"));
        let group = support::unique(&format!("cfg-{tag}"));
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("handled.jsonl");
        let t = Instant::now();
        let rf = replication.to_string();
        let out = support::kswarm()
            .args(["plan", "-b", brokers, "-t", &topic, "-w", "2", "-p", "4"])
            .args(["--replication-factor", &rf, "--apply"])
            .output()
            .expect("run kswarm plan");
        assert!(
            out.status.success(),
            "[{tag}] kswarm plan --apply: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        produce_with(
            brokers,
            &topic,
            &numbered(&format!("{tag}-pre"), PRE),
            &["--batch-size", "100"],
        );
        let h = handler(&file);
        let run = Run::new(&topic, &group)
            .brokers(brokers)
            .workers(2)
            .format("json")
            .exec(&h)
            .state(dir.path())
            .spawn();
        let producer = Producer::start(brokers, &topic, &format!("{tag}-live"));
        let mut case = Case {
            tag,
            brokers: brokers.to_string(),
            topic,
            group,
            dir,
            file,
            run,
            producer,
            exact: false,
        };
        let state = case.dir.path().to_path_buf();
        wait_members(&state, &case.group, &case.topic, 2, Duration::from_secs(90));
        let joined = t.elapsed();
        // The backlog handled, and live records flowing on every partition.
        let live = format!("{tag}-live");
        case.wait_alive(Duration::from_secs(90), "the backlog handled", |c| {
            let seen = read_seen(&c.file);
            let pre = seen.iter().filter(|s| !s.value.starts_with(&live)).count();
            let parts: BTreeSet<i32> = seen
                .iter()
                .filter(|s| s.value.starts_with(&live))
                .map(|s| s.partition)
                .collect();
            (pre >= PRE && parts.len() == PARTITIONS as usize).then_some(())
        });
        eprintln!(
            "[{tag}] topic {} (4 partitions, replication factor {replication}), group {}: \
             2 workers joined {} after plan, backlog of {PRE} handled and live records on \
             every partition {} after plan",
            case.topic,
            case.group,
            secs(joined),
            secs(t.elapsed())
        );
        case
    }

    fn stderr_tail(&self, n: usize) -> String {
        let text = self.run.stderr_text();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Panic (with kswarm's stderr) if kswarm has exited.
    fn assert_alive(&mut self, during: &str) {
        if let Some(st) = self.run.try_status() {
            std::thread::sleep(Duration::from_millis(200));
            panic!(
                "[{}] kswarm exited ({st}) {during}; its stderr ends with:\n{}",
                self.tag,
                self.stderr_tail(80)
            );
        }
    }

    /// Poll `f` every 100 ms, checking kswarm is alive, until Some.
    fn wait_alive<T>(
        &mut self,
        within: Duration,
        what: &str,
        mut f: impl FnMut(&Case) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + within;
        loop {
            self.assert_alive(&format!("while waiting for {what}"));
            if let Some(v) = f(self) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "[{}] timed out after {within:?} waiting for {what}; kswarm's stderr ends with:\n{}",
                self.tag,
                self.stderr_tail(80)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn sleep_alive(&mut self, d: Duration, during: &str) {
        let end = Instant::now() + d;
        while Instant::now() < end {
            self.assert_alive(during);
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn snapshot(&self) -> BTreeMap<i32, i64> {
        highest(&read_seen(&self.file))
    }

    /// Per partition, how long after `since` the first record past `base`
    /// reached the handler; waits for every partition.
    fn wait_flow(&mut self, since: Instant, base: &BTreeMap<i32, i64>) -> BTreeMap<i32, Duration> {
        let mut first: BTreeMap<i32, Duration> = BTreeMap::new();
        let base = base.clone();
        self.wait_alive(RECOVER, "records to flow again on every partition", |c| {
            let now = since.elapsed();
            for (p, h) in highest(&read_seen(&c.file)) {
                if h > base.get(&p).copied().unwrap_or(-1) {
                    first.entry(p).or_insert(now);
                }
            }
            (first.len() == PARTITIONS as usize).then_some(())
        });
        first
    }

    /// How long after `since` commits covered, on every partition, a record
    /// handled after `since` (`base`: the highest offsets handled then).
    fn wait_commits(&mut self, since: Instant, base: &BTreeMap<i32, i64>) -> Duration {
        // Polled from a thread so that the liveness checks go on meanwhile.
        let (b, g, t) = (self.brokers.clone(), self.group.clone(), self.topic.clone());
        let base = base.clone();
        let done = Arc::new(AtomicBool::new(false));
        let d2 = done.clone();
        let th = std::thread::spawn(move || -> Option<Duration> {
            while !d2.load(Ordering::Relaxed) {
                if let Some(c) = committed(&b, &g, &t) {
                    if base
                        .iter()
                        .all(|(p, h)| c.get(p).is_some_and(|&o| o > h + 1))
                    {
                        return Some(since.elapsed());
                    }
                }
                std::thread::sleep(Duration::from_millis(250));
            }
            None
        });
        let mut th = Some(th);
        let r = std::panic::catch_unwind(AssertUnwindSafe(|| {
            self.wait_alive(RECOVER, "commits to resume on every partition", |_| {
                th.as_ref().is_some_and(|t| t.is_finished()).then_some(())
            })
        }));
        done.store(true, Ordering::Relaxed);
        let res = th.take().unwrap().join().expect("commit poller");
        if let Err(e) = r {
            std::panic::resume_unwind(e);
        }
        res.expect("commits resumed")
    }

    /// Go on producing a little, then check every id was handled, in order
    /// per partition, and stop kswarm with SIGTERM (exit 0).
    fn finish(mut self) {
        self.sleep_alive(Duration::from_secs(2), "after the recovery");
        let mut want: Vec<String> = (0..PRE).map(|i| format!("{}-pre-{i}", self.tag)).collect();
        want.extend(self.producer.finish());
        let failures = self.producer.failures.lock().unwrap().len();
        let n = want.len();
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            self.assert_alive("while the last records are handled");
            let t = tally(&read_seen(&self.file));
            let missing: Vec<&String> = want.iter().filter(|v| !t.values.contains(*v)).collect();
            if missing.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "[{}] {} of {n} ids never reached the handler within 90 s, e.g. {:?}; \
                 highest offsets handled {:?}; kswarm's stderr ends with:\n{}",
                self.tag,
                missing.len(),
                &missing[..missing.len().min(10)],
                highest(&read_seen(&self.file)),
                self.stderr_tail(80)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        let t = tally(&read_seen(&self.file));
        assert_eq!(
            t.out_of_order, 0,
            "[{}] first deliveries out of offset order",
            self.tag
        );
        eprintln!(
            "[{}] all {n} ids handled ({} distinct records, {} duplicates; {failures} failed \
             produce runs during the fault, retried)",
            self.tag, t.distinct, t.duplicates
        );
        self.run.signal(Signal::SIGTERM);
        let st = self.run.wait(Duration::from_secs(40));
        let restarts = self
            .run
            .stderr_text()
            .lines()
            .filter(|l| l.contains("restart"))
            .count();
        eprintln!(
            "[{}] kswarm's stderr ({restarts} lines mention a restart) ends with:\n{}",
            self.tag,
            self.stderr_tail(40)
        );
        assert_eq!(st.code(), Some(0), "[{}] SIGTERM: exit status", self.tag);
        if self.exact {
            assert_eq!(t.duplicates, 0, "[{}] records handled twice", self.tag);
            assert_eq!(restarts, 0, "[{}] workers restarted", self.tag);
        }
    }
}

/// Run `f`, recording its panic instead of unwinding (the other cases of the
/// test still run).
fn attempt(name: &str, failures: &mut Vec<String>, f: impl FnOnce()) {
    let t = Instant::now();
    if let Err(e) = std::panic::catch_unwind(AssertUnwindSafe(f)) {
        let msg = e
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        failures.push(format!("{name}: {msg}"));
    }
    eprintln!("== {name}: {} ==", secs(t.elapsed()));
}

/// a. SIGKILL of the group's coordinator.
fn coordinator_killed(nodes: &Nodes) {
    let b = nodes.bootstrap();
    let mut case = Case::start("a", &b, 3);
    let (port, id) = coordinator(&b, &case.group);
    let leaders_before = leaders(&b, &case.topic);
    eprintln!("[a] coordinator: node {id} (127.0.0.1:{port}); leaders before: {leaders_before:?}");
    case.sleep_alive(Duration::from_secs(1), "before the fault");
    nodes.sigkill(port);
    let t0 = Instant::now();
    let base = case.snapshot();
    let flow = case.wait_flow(t0, &base);
    let commits = case.wait_commits(t0, &base);
    let acked = case.producer.first_ack_after(t0);
    let (nport, nid) = coordinator(&b, &case.group);
    eprintln!(
        "[a] SIGKILL of coordinator node {id}: records flow again on every partition {} after \
         the fault (per partition {:?}); commits resume on every partition {} after it; the \
         cluster first took new records {} after it; new coordinator: node {nid} (127.0.0.1:{nport})",
        secs(flow.values().max().copied().unwrap()),
        flow.iter().map(|(p, d)| (*p, secs(*d))).collect::<Vec<_>>(),
        secs(commits),
        acked.map(secs).unwrap_or("-".into()),
    );
    assert_ne!(nport, port, "[a] the group still names the killed node");
    case.finish();
}

/// b. SIGKILL of the leader of consumed partitions (not the coordinator).
fn leader_killed(nodes: &Nodes) {
    let b = nodes.bootstrap();
    let mut case = Case::start("b", &b, 3);
    let (cport, cid) = coordinator(&b, &case.group);
    let before = leaders(&b, &case.topic);
    let victim = *before
        .values()
        .find(|&&n| n != cid)
        .expect("a partition leader that does not coordinate the group");
    let port = CLUSTER[(victim - 1) as usize];
    let led: Vec<i32> = before
        .iter()
        .filter(|(_, &n)| n == victim)
        .map(|(p, _)| *p)
        .collect();
    eprintln!(
        "[b] coordinator node {cid} (127.0.0.1:{cport}); leaders {before:?}; killing node {victim} \
         (127.0.0.1:{port}), leader of partitions {led:?}"
    );
    case.sleep_alive(Duration::from_secs(1), "before the fault");
    nodes.sigkill(port);
    let t0 = Instant::now();
    let base = case.snapshot();
    let flow = case.wait_flow(t0, &base);
    let commits = case.wait_commits(t0, &base);
    let acked = case.producer.first_ack_after(t0);
    let after = leaders(&b, &case.topic);
    let led_flow = led.iter().map(|p| flow[p]).max().unwrap();
    eprintln!(
        "[b] SIGKILL of leader node {victim}: records of its partitions {led:?} flow again {} \
         after the fault, all partitions {} (per partition {:?}); commits resume on every \
         partition {} after it; the cluster first took new records {} after it; leaders now {after:?}",
        secs(led_flow),
        secs(flow.values().max().copied().unwrap()),
        flow.iter().map(|(p, d)| (*p, secs(*d))).collect::<Vec<_>>(),
        secs(commits),
        acked.map(secs).unwrap_or("-".into()),
    );
    for p in &led {
        assert_ne!(
            after[p], victim,
            "[b] partition {p} still led by the killed node"
        );
    }
    case.finish();
}

/// e. Every partition's leadership moves to another live node while records
/// flow (no node dies): the fetcher follows the new leaders by itself.
fn leaders_moved(nodes: &Nodes) {
    let b = nodes.bootstrap();
    let mut case = Case::start("e", &b, 3);
    let before = leaders(&b, &case.topic);
    // Each partition's replicas, the next node first: after the reassignment
    // (only the order changes, so it completes at once) a preferred leader
    // election makes that node the leader.
    let next = |n: i32| n % 3 + 1;
    let parts: Vec<String> = before
        .iter()
        .map(|(p, &l)| {
            let (a, c) = (next(l), next(next(l)));
            format!(
                r#"{{"topic":"{}","partition":{p},"replicas":[{a},{l},{c}]}}"#,
                case.topic
            )
        })
        .collect();
    let plan = case.dir.path().join("reassign.json");
    std::fs::write(
        &plan,
        format!(r#"{{"version":1,"partitions":[{}]}}"#, parts.join(",")),
    )
    .unwrap();
    case.sleep_alive(Duration::from_secs(1), "before the move");
    let t0 = Instant::now();
    tool(
        "org.apache.kafka.tools.reassign.ReassignPartitionsCommand",
        &[
            "--bootstrap-server",
            &b,
            "--reassignment-json-file",
            plan.to_str().unwrap(),
            "--execute",
        ],
    )
    .expect("ReassignPartitionsCommand --execute");
    let topic = case.topic.clone();
    let elect = case.dir.path().join("elect.json");
    let names: Vec<String> = before
        .keys()
        .map(|p| format!(r#"{{"topic":"{topic}","partition":{p}}}"#))
        .collect();
    std::fs::write(&elect, format!(r#"{{"partitions":[{}]}}"#, names.join(","))).unwrap();
    wait_for(
        Duration::from_secs(60),
        "the preferred leader election",
        || {
            tool(
                "org.apache.kafka.tools.LeaderElectionCommand",
                &[
                    "--bootstrap-server",
                    &b,
                    "--election-type",
                    "preferred",
                    "--path-to-json-file",
                    elect.to_str().unwrap(),
                ],
            )
            .map(|_| ())
            .filter(|_| {
                let now = leaders(&b, &topic);
                before.iter().all(|(p, &l)| now.get(p) == Some(&next(l)))
            })
        },
    );
    // Measured from the moment the tools saw every new leader in place.
    let moved = t0.elapsed();
    let in_place = Instant::now();
    let base = case.snapshot();
    let flow = case.wait_flow(in_place, &base);
    let after = leaders(&b, &case.topic);
    eprintln!(
        "[e] leaders {before:?} -> {after:?} ({} for the tools): records flow on every partition {} after that (per partition {:?})",
        secs(moved),
        secs(flow.values().max().copied().unwrap()),
        flow.iter().map(|(p, d)| (*p, secs(*d))).collect::<Vec<_>>(),
    );
    case.exact = true;
    case.finish();
}

/// c. SIGKILL of the only node, `restart` 10 s later.
fn single_killed_and_restarted(nodes: &Nodes) {
    let b = nodes.bootstrap();
    let mut case = Case::start("c", &b, 1);
    case.sleep_alive(Duration::from_secs(1), "before the fault");
    nodes.sigkill(SINGLE);
    let t0 = Instant::now();
    case.sleep_alive(Duration::from_secs(10), "while the node is dead");
    // The restart in a thread: kswarm's liveness is checked meanwhile.
    let out = std::thread::scope(|s| {
        let restart = s.spawn(|| nodes.restart(SINGLE));
        case.wait_alive(Duration::from_secs(240), "the node's restart", |_| {
            restart.is_finished().then_some(())
        });
        restart.join().expect("restart")
    });
    assert!(
        out.status.success(),
        "[c] scripts/kafka.sh restart: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let back = Instant::now();
    let base = case.snapshot();
    let flow = case.wait_flow(back, &base);
    let commits = case.wait_commits(back, &base);
    let acked = case.producer.first_ack_after(back);
    eprintln!(
        "[c] SIGKILL, restart after 10 s (node back {} after the kill): records flow again on \
         every partition {} after the node's return (per partition {:?}); commits resume {} \
         after it; the node first took new records {} after it",
        secs(back.duration_since(t0)),
        secs(flow.values().max().copied().unwrap()),
        flow.iter().map(|(p, d)| (*p, secs(*d))).collect::<Vec<_>>(),
        secs(commits),
        acked.map(secs).unwrap_or("-".into()),
    );
    case.finish();
}

/// d. SIGSTOP of the only node for 30 s, then SIGCONT.
fn single_stopped(nodes: &Nodes) {
    let b = nodes.bootstrap();
    let mut case = Case::start("d", &b, 1);
    case.sleep_alive(Duration::from_secs(1), "before the fault");
    let pid = nodes.pid(SINGLE);
    kill(pid, Signal::SIGSTOP).expect("SIGSTOP the node");
    let stopped = Stopped(pid);
    case.sleep_alive(Duration::from_secs(30), "while the node is stopped");
    drop(stopped);
    let back = Instant::now();
    let base = case.snapshot();
    let flow = case.wait_flow(back, &base);
    let commits = case.wait_commits(back, &base);
    let acked = case.producer.first_ack_after(back);
    eprintln!(
        "[d] SIGSTOP for 30 s, SIGCONT: records flow again on every partition {} after SIGCONT \
         (per partition {:?}); commits resume {} after it; the node first took new records {} \
         after it",
        secs(flow.values().max().copied().unwrap()),
        flow.iter().map(|(p, d)| (*p, secs(*d))).collect::<Vec<_>>(),
        secs(commits),
        acked.map(secs).unwrap_or("-".into()),
    );
    case.finish();
}

#[test]
fn a_three_node_cluster_loses_the_coordinator_then_a_partition_leader_then_moves_leaders() {
    let _one = one_at_a_time();
    let nodes = Nodes::start(
        &CLUSTER,
        "group.initial.rebalance.delay.ms=0 min.insync.replicas=2",
    );
    let b = nodes.bootstrap();
    let mut failures = Vec::new();
    attempt("a: coordinator SIGKILLed", &mut failures, || {
        coordinator_killed(&nodes)
    });
    attempt("b: partition leader SIGKILLed", &mut failures, || {
        // The node of a. back, and in sync again, first.
        let t = Instant::now();
        nodes.ensure_up();
        wait_for(
            Duration::from_secs(120),
            "no under-replicated partitions",
            || {
                let out = tool(
                    "org.apache.kafka.tools.TopicCommand",
                    &[
                        "--bootstrap-server",
                        &b,
                        "--describe",
                        "--under-replicated-partitions",
                    ],
                )?;
                out.trim().is_empty().then_some(())
            },
        );
        eprintln!(
            "[b] every node up and in sync {} after the restart began",
            secs(t.elapsed())
        );
        leader_killed(&nodes)
    });
    attempt("e: every partition leader moved", &mut failures, || {
        nodes.ensure_up();
        leaders_moved(&nodes)
    });
    drop(nodes);
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn a_single_node_is_killed_and_restarted_then_stopped_and_continued() {
    let _one = one_at_a_time();
    let nodes = Nodes::start(&[SINGLE], "group.initial.rebalance.delay.ms=0");
    let mut failures = Vec::new();
    attempt(
        "c: node SIGKILLed, restarted 10 s later",
        &mut failures,
        || single_killed_and_restarted(&nodes),
    );
    attempt("d: node SIGSTOPped 30 s", &mut failures, || {
        nodes.ensure_up();
        single_stopped(&nodes)
    });
    drop(nodes);
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
