//! The one support module of the integration tests: the broker under test
//! (which, and where), unique names, the kswarm binary and the Python peers'
//! venv; topics, records, `kswarm worker` and `kswarm run` processes under a
//! kill-on-drop guard, their reports and state files, and committed offsets
//! read by a real librdkafka consumer.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use kswarm::report::Report;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

mod run;
#[allow(unused_imports)]
pub use run::Run;

/// The broker to test against. A missing broker is a failure, never a skip:
/// run the suite through `scripts/test.sh`, which starts one.
pub fn brokers() -> String {
    std::env::var("KSWARM_TEST_BROKERS").expect(
        "KSWARM_TEST_BROKERS is not set: run the tests with scripts/test.sh (it starts a local broker)",
    )
}

/// [`brokers`] as a list (the library's `GroupSettings` take one).
pub fn broker_list() -> Vec<String> {
    brokers().split(',').map(str::to_string).collect()
}

/// Removing members of `group` on their behalf (`kswarm::group::evict`), on the suite's broker.
pub fn eviction(group: &str, protocol: kswarm::config::GroupProtocol) -> kswarm::group::Eviction {
    kswarm::group::Eviction::new(
        &broker_list(),
        std::time::Duration::from_secs(10),
        group,
        protocol,
    )
}

/// Which broker the suite runs against (`KSWARM_TEST_BROKER`, set by
/// scripts/test.sh): Apache Kafka, the reference, or tansu, the emulator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Broker {
    Kafka,
    Tansu,
}

pub fn broker_kind() -> Broker {
    match std::env::var("KSWARM_TEST_BROKER").as_deref() {
        Ok("tansu") => Broker::Tansu,
        Ok("kafka") | Err(_) => Broker::Kafka,
        Ok(other) => panic!("KSWARM_TEST_BROKER={other}: use kafka or tansu"),
    }
}

/// The pid of the broker scripts/broker.sh started for the suite (tests that
/// stop it for a while: SIGSTOP, then SIGCONT).
pub fn broker_pid() -> i32 {
    let port = brokers()
        .rsplit(':')
        .next()
        .expect("KSWARM_TEST_BROKERS is HOST:PORT")
        .to_string();
    let build = build_dir();
    let file = match broker_kind() {
        Broker::Kafka => build.join(format!("kafka-{port}/pid")),
        Broker::Tansu => build.join(format!("broker-{port}.pid")),
    };
    std::fs::read_to_string(&file)
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e} (start the broker with scripts/broker.sh)",
                file.display()
            )
        })
        .trim()
        .parse()
        .expect("a pid")
}

/// Kafka's consumer-groups tool (kafka-tools, through scripts/kafka.sh) on
/// `group`, with more flags (`--members`, ...); its standard output.
pub fn kafka_consumer_groups(group: &str, flags: &[&str]) -> String {
    let out = Command::new(repo_root().join("scripts/kafka.sh"))
        .args([
            "tool",
            "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
            "--bootstrap-server",
            &brokers(),
            "--describe",
            "--group",
            group,
        ])
        .args(flags)
        .output()
        .expect("scripts/kafka.sh tool");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A name no other test (or earlier run on the same broker) uses.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{prefix}-{}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        nanos % 1_000_000_000
    )
}

/// The binary under test; KSWARM_TEST_BIN overrides it (say, a copy kept
/// fixed while the tree is rebuilt during a long bug hunt).
pub fn kswarm_bin() -> PathBuf {
    std::env::var_os("KSWARM_TEST_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_kswarm")))
}

pub fn kswarm() -> Command {
    let mut c = Command::new(kswarm_bin());
    c.env_remove("RUST_LOG")
        .env("KSWARM_STATE_DIR", state_dir());
    c
}

/// Where the supervisors started by the tests keep their state files (they
/// stay after a run, one per group), instead of the system's temp dir.
pub fn state_dir() -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("kswarm-state");
    let _ = std::fs::create_dir_all(&d);
    d
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Where scripts/broker.sh installs brokers, peers and the venv
/// (`KSWARM_BUILD_DIR`, else build/ in the repository).
pub fn build_dir() -> PathBuf {
    std::env::var("KSWARM_BUILD_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| repo_root().join("build"))
}

/// A TCP port of 127.0.0.1 that nothing listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A process's standard error as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A process's exit status, standard output and standard error, for a
/// failure message.
pub fn output_text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Python of the venv that scripts/broker.sh installs (confluent-kafka, kafka-python).
pub fn python() -> PathBuf {
    let p = build_dir().join("venv/bin/python");
    assert!(
        p.exists(),
        "{} missing: run scripts/broker.sh install",
        p.display()
    );
    p
}

/// Run kswarm with args and stdin text; return the output.
pub fn kswarm_with_stdin(args: &[&str], stdin: &str) -> Output {
    use std::io::Write;
    let mut child = kswarm()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start kswarm");
    let mut sin = child.stdin.take().unwrap();
    let text = stdin.to_string();
    let writer = std::thread::spawn(move || {
        let _ = sin.write_all(text.as_bytes());
    });
    let out = child.wait_with_output().expect("wait kswarm");
    writer.join().unwrap();
    out
}

/// Poll `f` every 50 ms until it returns Some, or panic naming `what` after `timeout`.
pub fn wait_for<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `kswarm plan --apply`: a topic with `partitions` partitions.
pub fn create_topic(brokers: &str, topic: &str, partitions: usize) {
    let n = partitions.to_string();
    let out = kswarm()
        .args([
            "plan", "-b", brokers, "-t", topic, "-w", &n, "-p", &n, "--apply",
        ])
        .output()
        .expect("run kswarm plan");
    assert!(
        out.status.success(),
        "kswarm plan --apply failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `kswarm produce`: one record per line (unkeyed: round-robin batches).
pub fn produce(brokers: &str, topic: &str, lines: &str) {
    let out = kswarm_with_stdin(
        &["produce", "-b", brokers, "-t", topic, "--batch-size", "50"],
        lines,
    );
    assert!(
        out.status.success(),
        "kswarm produce failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `kswarm produce` with more flags (e.g. a bigger --batch-size).
pub fn produce_with(brokers: &str, topic: &str, lines: &str, flags: &[&str]) {
    let mut args = vec!["produce", "-b", brokers, "-t", topic];
    args.extend_from_slice(flags);
    let out = kswarm_with_stdin(&args, lines);
    assert!(
        out.status.success(),
        "kswarm produce failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every descendant of `pid` (children, grandchildren...), from /proc.
pub fn descendants(pid: i32) -> Vec<i32> {
    let mut parent_of: Vec<(i32, i32)> = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(p) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
            continue;
        };
        // pid (comm) state ppid ...: comm may hold spaces, so split after ')'.
        let Some(rest) = stat.rsplit_once(')').map(|x| x.1) else {
            continue;
        };
        if let Some(ppid) = rest.split_whitespace().nth(1).and_then(|x| x.parse().ok()) {
            parent_of.push((p, ppid));
        }
    }
    let mut out = Vec::new();
    let mut frontier = vec![pid];
    while let Some(q) = frontier.pop() {
        for &(c, pp) in &parent_of {
            if pp == q && !out.contains(&c) {
                out.push(c);
                frontier.push(c);
            }
        }
    }
    out
}

/// Alive and not a zombie (nor dead: state Z or X in /proc/PID/stat).
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat
                .rsplit_once(')')
                .map(|(_, r)| r.trim_start().chars().next());
            !matches!(state, Some(Some('Z')) | Some(Some('X')))
        }
        Err(_) => false,
    }
}

/// SIGKILL every descendant of `pid` (a worker's handler processes).
pub fn kill_descendants(pid: i32) -> usize {
    let all = descendants(pid);
    for &c in &all {
        let _ = kill(Pid::from_raw(c), Signal::SIGKILL);
    }
    all.len()
}

/// A /proc/PID/status field in KiB (VmHWM, VmRSS).
pub fn proc_kib(pid: i32, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Lines "PREFIX-0" .. "PREFIX-(n-1)".
pub fn numbered(prefix: &str, n: usize) -> String {
    let mut s = String::with_capacity(n * 12);
    for i in 0..n {
        s.push_str(&format!("{prefix}-{i}\n"));
    }
    s
}

/// One delivered record (from a `--format json` line).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Seen {
    pub partition: i32,
    pub offset: i64,
    pub value: String,
}

pub fn parse_json_line(line: &str) -> Option<Seen> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    Some(Seen {
        partition: v.get("partition")?.as_i64()? as i32,
        offset: v.get("offset")?.as_i64()?,
        value: v.get("value")?.as_str().unwrap_or_default().to_string(),
    })
}

/// Parse every complete line of a file of json records (a torn last line,
/// written by a handler killed mid-write, is ignored).
pub fn read_seen(path: &Path) -> Vec<Seen> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let complete = match text.rfind('\n') {
        Some(i) => &text[..=i],
        None => "",
    };
    complete
        .lines()
        .map(|l| parse_json_line(l).unwrap_or_else(|| panic!("not a record line: {l:?}")))
        .collect()
}

/// Delivery figures of a list of deliveries, in delivery order.
#[derive(Debug, Default)]
pub struct Tally {
    /// Distinct (partition, offset) delivered.
    pub distinct: usize,
    /// Deliveries beyond the first of a record.
    pub duplicates: usize,
    /// Per partition: first deliveries that came after a higher offset's first delivery.
    pub out_of_order: usize,
    pub values: BTreeSet<String>,
}

pub fn tally(seen: &[Seen]) -> Tally {
    let mut t = Tally::default();
    let mut first: BTreeSet<(i32, i64)> = BTreeSet::new();
    let mut highest: BTreeMap<i32, i64> = BTreeMap::new();
    for s in seen {
        if first.insert((s.partition, s.offset)) {
            let h = highest.entry(s.partition).or_insert(-1);
            if s.offset < *h {
                t.out_of_order += 1;
            } else {
                *h = s.offset;
            }
            t.values.insert(s.value.clone());
        } else {
            t.duplicates += 1;
        }
    }
    t.distinct = first.len();
    t
}

/// Values PREFIX-0..n missing from `values`.
pub fn missing(values: &BTreeSet<String>, prefix: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("{prefix}-{i}"))
        .filter(|v| !values.contains(v))
        .collect()
}

/// Per partition that has records in `seen`, one past the highest offset
/// seen: what a group that handled them all has committed, in the shape
/// [`committed`] returns (always Some).
pub fn ends(seen: &[Seen]) -> BTreeMap<i32, Option<i64>> {
    let mut m = BTreeMap::new();
    for s in seen {
        let e = m.entry(s.partition).or_insert(Some(0));
        *e = Some(e.unwrap().max(s.offset + 1));
    }
    m
}

/// [`ends`] for every partition 0..`partitions`, None where nothing was
/// seen: what [`committed`] returns once everything seen is committed.
pub fn ends_all(seen: &[Seen], partitions: usize) -> BTreeMap<i32, Option<i64>> {
    let seen_ends = ends(seen);
    (0..partitions as i32)
        .map(|p| (p, seen_ends.get(&p).copied().flatten()))
        .collect()
}

/// Committed offsets of `group` on partitions 0..n of `topic`, read by a
/// confluent-kafka consumer (None: nothing committed).
pub fn committed(brokers: &str, topic: &str, group: &str, n: usize) -> BTreeMap<i32, Option<i64>> {
    let script = repo_root().join("tests/peers/ck_member.py");
    let out = Command::new(python())
        .arg(script)
        .args(["committed", brokers, topic, group, &n.to_string()])
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "ck_member.py committed failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(text.trim()).expect("json from ck_member.py");
    v["committed"]
        .as_object()
        .expect("committed object")
        .iter()
        .map(|(k, o)| (k.parse().unwrap(), o.as_i64()))
        .collect()
}

/// Python of the test venv, for handlers.
pub fn py() -> String {
    python().display().to_string()
}

/// An `--exec` handler that appends each record line to `file` (flushed to the
/// kernel) and only then acknowledges it.
pub fn appending_handler(file: &Path) -> String {
    slow_appending_handler(file, 0.0)
}

/// [`appending_handler`] that sleeps `secs` per record first.
pub fn slow_appending_handler(file: &Path, secs: f64) -> String {
    format!(
        "{} -c 'import sys, time\nf=open(sys.argv[1],\"a\")\nfor l in sys.stdin:\n    {}f.write(l); f.flush(); sys.stdout.write(\"ok\\n\"); sys.stdout.flush()\n' {}",
        py(),
        if secs > 0.0 { format!("time.sleep({secs}); ") } else { String::new() },
        file.display()
    )
}

/// A running process, SIGKILLed and reaped on drop (test failures included).
pub struct Proc {
    pub name: String,
    pub child: Child,
    pub stdout: Arc<Mutex<Vec<String>>>,
    pub stderr: Arc<Mutex<String>>,
    pub report: Option<PathBuf>,
    status: Option<ExitStatus>,
}

impl Proc {
    /// Start `cmd` with stdout and stderr collected by threads (stdout as lines).
    pub fn spawn(name: &str, mut cmd: Command, report: Option<PathBuf>) -> Proc {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("start {name}: {e}"));
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let out = child.stdout.take().unwrap();
        let lines = stdout.clone();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines() {
                match l {
                    Ok(l) => lines.lock().unwrap().push(l),
                    Err(_) => break,
                }
            }
        });
        let mut err = child.stderr.take().unwrap();
        let text = stderr.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            loop {
                match err.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => text
                        .lock()
                        .unwrap()
                        .push_str(&String::from_utf8_lossy(&buf[..n])),
                }
            }
        });
        Proc {
            name: name.to_string(),
            child,
            stdout,
            stderr,
            report,
            status: None,
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn signal(&self, s: Signal) {
        if self.status.is_none() {
            let _ = kill(Pid::from_raw(self.pid()), s);
        }
    }

    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().expect("try_wait");
        }
        self.status
    }

    /// Wait for the exit, at most `timeout` (then panic with the stderr).
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let name = self.name.clone();
        let st = wait_for(timeout, &format!("{name} to exit"), || self.try_status());
        // Let the reader threads catch the last output.
        std::thread::sleep(Duration::from_millis(100));
        st
    }

    pub fn stderr_text(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    pub fn stdout_lines(&self) -> Vec<String> {
        self.stdout.lock().unwrap().clone()
    }

    pub fn reports(&self) -> Vec<Report> {
        let Some(path) = &self.report else {
            return Vec::new();
        };
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .filter_map(Report::from_line)
            .collect()
    }

    /// Partitions owned now, from the reports (None: not joined, or revoked).
    pub fn owned(&self) -> Option<Vec<i32>> {
        let mut now = None;
        for r in self.reports() {
            match r {
                Report::Joined { partitions, .. } => now = Some(partitions),
                Report::Revoked { .. } | Report::Stopping { .. } | Report::Fatal { .. } => {
                    now = None
                }
                _ => {}
            }
        }
        now
    }

    pub fn joins(&self) -> usize {
        self.reports()
            .iter()
            .filter(|r| matches!(r, Report::Joined { .. }))
            .count()
    }

    pub fn wait_owned(&self, timeout: Duration, want: &[i32]) {
        wait_for(
            timeout,
            &format!(
                "{} to own {want:?} (stderr: {})",
                self.name,
                self.stderr_text()
            ),
            || (self.owned().as_deref() == Some(want)).then_some(()),
        )
    }

    /// Sum of acknowledged records from the latest Alive report.
    pub fn alive_records(&self) -> Option<u64> {
        self.reports().iter().rev().find_map(|r| match r {
            Report::Alive { records } => Some(*records),
            _ => None,
        })
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.try_status().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// How to start a `kswarm worker`.
#[derive(Clone)]
pub struct WorkerSpec {
    pub brokers: String,
    pub topic: String,
    pub group: String,
    pub dir: PathBuf,
    /// --session-timeout
    pub session: String,
    /// More flags (handler, timeouts...).
    pub args: Vec<String>,
}

impl WorkerSpec {
    pub fn new(brokers: &str, topic: &str, group: &str, dir: &Path) -> Self {
        Self {
            brokers: brokers.to_string(),
            topic: topic.to_string(),
            group: group.to_string(),
            dir: dir.to_path_buf(),
            session: "6s".into(),
            args: vec!["--commit-interval".into(), "200ms".into()],
        }
    }

    pub fn session(mut self, s: &str) -> Self {
        self.session = s.to_string();
        self
    }

    pub fn arg(mut self, a: &str) -> Self {
        self.args.push(a.to_string());
        self
    }

    pub fn args(mut self, a: &[&str]) -> Self {
        self.args.extend(a.iter().map(|s| s.to_string()));
        self
    }

    /// `kswarm worker --slot SLOT ...` with reports (fd 3) to a fresh file.
    pub fn start(&self, slot: u32) -> Proc {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let report = self.dir.join(format!("report-{slot}-{n}.jsonl"));
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg("exec \"$@\" 3>\"$KSWARM_TEST_REPORT\"")
            .arg("sh")
            .arg(kswarm_bin())
            .args([
                "worker",
                "-b",
                &self.brokers,
                "-t",
                &self.topic,
                "-g",
                &self.group,
            ])
            .args(["--slot", &slot.to_string(), "--report-fd", "3"])
            .args(["--session-timeout", &self.session])
            .args(&self.args)
            .env("KSWARM_TEST_REPORT", &report)
            .env_remove("RUST_LOG")
            .env_remove("KSWARM_SUPERVISOR_PID");
        Proc::spawn(&format!("worker slot {slot} (#{n})"), cmd, Some(report))
    }
}

/// The last `kswarm: error: ..` line of a run's stderr (the message that
/// goes with its exit code), or "" if there is none.
pub fn last_error(stderr: &str) -> &str {
    stderr
        .lines()
        .rev()
        .find(|l| l.starts_with("kswarm: error: "))
        .unwrap_or("")
}

/// SIGTERM a `kswarm run` and wait (30 s) for its exit code.
pub fn stop(run: &mut Proc) -> Option<i32> {
    run.signal(Signal::SIGTERM);
    run.wait(Duration::from_secs(30)).code()
}

/// What a `kswarm run` says of itself in its state file (None before it wrote one).
pub fn run_state(
    state: &Path,
    group: &str,
    topic: &str,
) -> Option<kswarm::state_file::SupervisorState> {
    let path = kswarm::state_file::state_path(state, group, topic);
    // Builds before 2026-11-30 wrote `kswarm-GROUP.json`: read that too, so
    // that the suite can run against an older build (KSWARM_TEST_BIN) and
    // show what it catches.
    let legacy = state.join(format!("kswarm-{group}.json"));
    let text = std::fs::read(path)
        .or_else(|_| std::fs::read(legacy))
        .ok()?;
    serde_json::from_slice(&text).ok()
}

/// [`wait_members`] of a run, with its stderr in the message if it times out.
pub fn wait_run_members(
    run: &Proc,
    state: &Path,
    group: &str,
    topic: &str,
    n: usize,
    within: Duration,
) -> Vec<i32> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(s) = run_state(state, group, topic) {
            let joined: Vec<i32> = s
                .workers
                .iter()
                .filter(|w| w.generation.is_some())
                .map(|w| w.pid as i32)
                .collect();
            if s.workers.len() == n && joined.len() == n {
                return joined;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{n} workers of {group} not in the group within {within:?}: {:?}\n{}",
            run_state(state, group, topic),
            run.stderr_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Wait until the run has `n` workers, each a member with partitions; their pids.
pub fn wait_members(
    state: &Path,
    group: &str,
    topic: &str,
    n: usize,
    within: Duration,
) -> Vec<i32> {
    wait_for(
        within,
        &format!("{n} workers of {group} in the group"),
        || {
            let s = run_state(state, group, topic)?;
            let joined: Vec<i32> = s
                .workers
                .iter()
                .filter(|w| w.generation.is_some())
                .map(|w| w.pid as i32)
                .collect();
            (s.workers.len() == n && joined.len() == n).then_some(joined)
        },
    )
}

/// `kswarm status --json` with the state directory `state`; it must succeed.
pub fn status_json(state: &Path, b: &str, group: &str, topic: &str) -> serde_json::Value {
    let out = kswarm()
        .env("KSWARM_STATE_DIR", state)
        .args(["status", "-b", b, "-g", group, "-t", topic, "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Processes whose command line contains `needle` (other than this one).
pub fn processes_with(needle: &str) -> Vec<i32> {
    let me = std::process::id() as i32;
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse::<i32>().ok())
        .filter(|&p| p != me)
        .filter(|p| {
            std::fs::read(format!("/proc/{p}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(needle))
                .unwrap_or(false)
        })
        .collect()
}

/// Every complete line of a file (a handler's record of what it handled).
pub fn read_lines(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let complete = match text.rfind('\n') {
        Some(i) => &text[..=i],
        None => "",
    };
    complete.lines().map(str::to_string).collect()
}

/// Duplicates (lines seen more than once) and distinct lines.
pub fn count_lines(lines: &[String]) -> (usize, usize) {
    let distinct: BTreeSet<&String> = lines.iter().collect();
    (lines.len() - distinct.len(), distinct.len())
}

/// Every record of `topic` as librdkafka reads it (tests/peers/dlq_tool.py),
/// one JSON object each.
pub fn read_topic(topic: &str) -> Vec<serde_json::Value> {
    let out = Command::new(python())
        .arg(repo_root().join("tests/peers/dlq_tool.py"))
        .args(["read", &brokers(), topic])
        .output()
        .expect("run dlq_tool.py");
    assert!(
        out.status.success(),
        "dlq_tool.py read {topic}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}
