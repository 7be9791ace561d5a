//! `kswarm run` as a process tree: real workers against the test broker, real
//! signals. Each test runs kswarm with `--log-format json` and follows its
//! structured events (`worker_joined`, `takeover`, `restart_scheduled`, ...:
//! the `event` field and its data), not the wording of its log lines.

mod support;

use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixDatagram;
use std::process::{Child, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;
use support::alive;

/// Time for a worker to join a group (on tansu JoinGroup waits up to half
/// the session timeout for the other members).
const JOIN: Duration = Duration::from_secs(30);

/// A running `kswarm run` and every log event it printed on stderr so far.
struct Run {
    child: Child,
    log: Arc<(Mutex<Vec<Value>>, Condvar)>,
    /// Record lines on stdout (the stdout handler).
    out: Arc<Mutex<Vec<String>>>,
}

/// A worker's join as the supervisor saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Joined {
    index: usize,
    pid: i32,
    generation: i64,
    member: String,
}

/// `kswarm run -b BROKERS -t TOPIC -g GROUP`, without `-w` and `-p` unless
/// the test adds them.
fn spec(topic: &str, group: &str) -> support::Run {
    support::Run::new(topic, group).bare()
}

impl Run {
    /// Start `spec` with `--log-format json`, following its log.
    fn spawn(spec: support::Run) -> Self {
        let mut cmd = spec.global(["--log-format", "json"]).command();
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("start kswarm run");
        let stdout = child.stdout.take().unwrap();
        let out = Arc::new(Mutex::new(Vec::new()));
        let records = out.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                records.lock().unwrap().push(line);
            }
        });
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new((Mutex::new(Vec::new()), Condvar::new()));
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                eprintln!("[kswarm] {line}");
                // Anything not JSON (a panic, say) is kept as a bare message.
                let ev = serde_json::from_str::<Value>(&line)
                    .unwrap_or_else(|_| serde_json::json!({ "message": line }));
                let (m, cv) = &*sink;
                m.lock().unwrap().push(ev);
                cv.notify_all();
            }
        });
        Run { child, log, out }
    }

    /// Wait until `n` distinct record lines arrived on stdout.
    fn wait_records(&self, n: usize, within: Duration) -> std::collections::BTreeSet<String> {
        let deadline = Instant::now() + within;
        loop {
            let seen: std::collections::BTreeSet<String> =
                self.out.lock().unwrap().iter().cloned().collect();
            if seen.len() >= n || Instant::now() >= deadline {
                return seen;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    fn signal(&self, sig: Signal) {
        kill(Pid::from_raw(self.pid()), sig).expect("signal kswarm");
    }

    fn events(&self) -> Vec<Value> {
        self.log.0.lock().unwrap().clone()
    }

    fn messages(&self) -> String {
        self.events()
            .iter()
            .map(|e| e["message"].as_str().unwrap_or_default().to_string())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Wait for an event named `name` (from index `from` on) that satisfies
    /// `pred`; return its index and itself.
    fn wait_event(
        &self,
        from: usize,
        within: Duration,
        name: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> (usize, Value) {
        let deadline = Instant::now() + within;
        let (m, cv) = &*self.log;
        let mut events = m.lock().unwrap();
        loop {
            if let Some((i, e)) = events
                .iter()
                .enumerate()
                .skip(from)
                .find(|(_, e)| e["event"] == name && pred(e))
            {
                return (i, e.clone());
            }
            let now = Instant::now();
            assert!(
                now < deadline,
                "no event {name} within {within:?}; log:\n{}",
                events
                    .iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join("\n")
            );
            events = cv.wait_timeout(events, deadline - now).unwrap().0;
        }
    }

    /// Events named `name` in `from..to` that satisfy `pred`.
    fn count(&self, from: usize, to: usize, name: &str, pred: impl Fn(&Value) -> bool) -> usize {
        self.events()
            .iter()
            .take(to)
            .skip(from)
            .filter(|e| e["event"] == name && pred(e))
            .count()
    }

    /// Wait for `worker_joined` of `slot` (from `from` on).
    fn wait_joined(&self, from: usize, slot: u32, within: Duration) -> Joined {
        let (index, e) = self.wait_event(from, within, "worker_joined", |e| e["slot"] == slot);
        Joined {
            index,
            pid: e["pid"].as_i64().unwrap() as i32,
            generation: e["generation"].as_i64().unwrap(),
            member: e["member"].as_str().unwrap().to_string(),
        }
    }

    /// The slot's place in the group now: its last join or rebalance.
    fn current(&self, slot: u32) -> Option<Joined> {
        let events = self.events();
        events
            .iter()
            .enumerate()
            .rev()
            .find(|(_, e)| {
                e["slot"] == slot
                    && (e["event"] == "worker_joined" || e["event"] == "worker_rebalanced")
            })
            .map(|(index, e)| Joined {
                index,
                pid: e["pid"].as_i64().unwrap() as i32,
                generation: e["generation"].as_i64().unwrap(),
                member: e["member"].as_str().unwrap().to_string(),
            })
    }

    /// Wait until slots 0..n are members of one generation (a group that
    /// formed in steps has settled); their memberships.
    fn wait_settled(&self, n: u32, within: Duration) -> Vec<Joined> {
        let deadline = Instant::now() + within;
        loop {
            let now: Vec<Option<Joined>> = (0..n).map(|s| self.current(s)).collect();
            if now.iter().all(Option::is_some) {
                let now: Vec<Joined> = now.into_iter().flatten().collect();
                if now.iter().all(|j| j.generation == now[0].generation) {
                    // and no rebalance under way: nothing revoked since
                    let last = now.iter().map(|j| j.index).max().unwrap();
                    let to = self.events().len();
                    if self.count(last, to, "worker_revoked", |_| true) == 0 {
                        return now;
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "the group did not settle: {}",
                self.messages()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The final error message (the `exit` event).
    fn exit_message(&self) -> String {
        self.events()
            .iter()
            .rev()
            .find(|e| e["event"] == "exit")
            .map(|e| e["message"].as_str().unwrap_or_default().to_string())
            .unwrap_or_default()
    }

    fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                // let the reader thread catch up with the last lines
                std::thread::sleep(Duration::from_millis(100));
                return st;
            }
            assert!(
                Instant::now() < deadline,
                "kswarm run did not exit within {within:?}; log:\n{}",
                self.messages()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn wait_dead(pids: &[i32], within: Duration) -> Vec<i32> {
    let deadline = Instant::now() + within;
    loop {
        let left: Vec<i32> = pids.iter().copied().filter(|p| alive(*p)).collect();
        if left.is_empty() || Instant::now() >= deadline {
            return left;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn names() -> (String, String) {
    (support::unique("sup-t"), support::unique("sup-g"))
}

fn usable_cores() -> u32 {
    std::thread::available_parallelism()
        .map(|n| n.get() as u32)
        .unwrap_or(1)
}

#[test]
fn default_worker_count_is_the_usable_cores_and_term_exits_zero() {
    let (t, g) = names();
    let n = usable_cores();
    let mut run = Run::spawn(spec(&t, &g));
    let (_, all) = run.wait_event(0, JOIN, "all_joined", |_| true);
    assert_eq!(all["workers"], n, "{all}");
    let pids: Vec<i32> = (0..n).map(|s| run.wait_joined(0, s, JOIN).pid).collect();
    run.signal(Signal::SIGTERM);
    let st = run.wait_exit(Duration::from_secs(20));
    assert_eq!(st.code(), Some(0), "log:\n{}", run.messages());
    assert!(wait_dead(&pids, Duration::from_secs(1)).is_empty());
    run.wait_event(0, Duration::from_secs(2), "stopped_cleanly", |_| true);
}

/// The dead worker's replacement takes its member over: same member id, same
/// generation, and the other worker never rebalances. (An eviction and a
/// rebalance would also consume the partitions again, and on Kafka about as
/// fast, so the time alone proves nothing.)
#[test]
fn a_killed_worker_is_replaced_in_its_slot_without_a_rebalance() {
    let (t, g) = names();
    let dir = tempfile::tempdir().unwrap();
    let mut run = Run::spawn(
        spec(&t, &g)
            .workers(2)
            .args(["--session-timeout", "10s"])
            .state(dir.path()),
    );
    run.wait_event(0, JOIN, "all_joined", |_| true);
    let old = run.wait_settled(2, JOIN).remove(1);
    // the state file for `kswarm status` names both workers
    let state_file = kswarm::state_file::state_path(dir.path(), &g, &t);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = std::fs::read_to_string(&state_file).unwrap_or_default();
        let v: Value = serde_json::from_str(&text).unwrap_or_default();
        let joined = v["workers"]
            .as_array()
            .map(|w| w.iter().filter(|w| w["member_id"].is_string()).count())
            .unwrap_or(0);
        if joined == 2 && text.contains(&format!("\"pid\": {}", old.pid)) {
            assert_eq!(v["pid"].as_i64(), Some(run.pid() as i64), "{text}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "state file {state_file:?}: {text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let from = run.events().len();
    let t0 = Instant::now();
    kill(Pid::from_raw(old.pid), Signal::SIGKILL).unwrap();
    let new = run.wait_joined(from, 1, JOIN);
    let took = t0.elapsed();
    eprintln!("replacement joined {took:?} after SIGKILL");
    let (_, takeover) = run.wait_event(from, Duration::ZERO, "takeover", |e| e["slot"] == 1);
    assert_eq!(takeover["member"], old.member.as_str(), "{takeover}");
    assert_eq!(takeover["generation"], old.generation, "{takeover}");
    assert_ne!(new.pid, old.pid);
    assert!(alive(new.pid));
    assert_eq!(
        (new.member.as_str(), new.generation),
        (old.member.as_str(), old.generation)
    );
    let (_, crash) = run.wait_event(from, Duration::ZERO, "worker_crashed", |e| {
        e["pid"] == old.pid
    });
    assert_eq!(crash["exit"], "signal 9 (SIGKILL)");
    // Nobody rebalanced, nobody was evicted.
    std::thread::sleep(Duration::from_secs(2));
    let now = run.events().len();
    for name in ["worker_rebalanced", "worker_revoked", "evicted"] {
        assert_eq!(
            run.count(from, now, name, |_| true),
            0,
            "{name} after the kill"
        );
    }
    assert!(
        took < Duration::from_secs(5),
        "a take-over needs no session timeout (10 s): {took:?}"
    );
    run.signal(Signal::SIGTERM);
    assert_eq!(run.wait_exit(Duration::from_secs(20)).code(), Some(0));
    // The state file stays, naming both slots' members for the next run.
    let text = std::fs::read_to_string(&state_file).expect("state file kept");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["pid"].as_i64(), Some(run.pid() as i64), "{text}");
    let slots: Vec<i64> = v["members"]
        .as_array()
        .map(|m| m.iter().filter_map(|m| m["slot"].as_i64()).collect())
        .unwrap_or_default();
    assert_eq!(slots, vec![0, 1], "{text}");
}

#[test]
fn a_crash_looping_worker_spends_the_budget_and_exits_1_naming_the_slot() {
    let (t, g) = names();
    let mut run = Run::spawn(
        spec(&t, &g)
            .workers(1)
            .args(["--max-restarts", "3/60s"])
            .exec("echo boom-marker-42 >&2; exit 3"),
    );
    let st = run.wait_exit(Duration::from_secs(60));
    assert_eq!(st.code(), Some(1), "log:\n{}", run.messages());
    // The supervisor's last word: the slot, the flag, and the worker's last
    // stderr lines (the handler's marker appears there, not in the command).
    let last = run.exit_message();
    let (_, tail) = last
        .split_once("last stderr lines of slot 0:")
        .expect(&last);
    assert!(last.starts_with("slot 0"), "{last}");
    assert!(last.contains("--max-restarts 3/"), "{last}");
    assert!(
        tail.contains("boom-marker-42"),
        "the worker's last stderr lines: {last}"
    );
    // 3 restarts happened before giving up
    let restarts = run.count(0, usize::MAX, "restart_scheduled", |e| e["slot"] == 0);
    assert_eq!(restarts, 3, "{}", run.messages());
}

#[test]
fn a_sigkilled_supervisor_leaves_no_worker_behind() {
    let (t, g) = names();
    // `cat` acknowledges every record by echoing it: a long-running handler.
    let mut run = Run::spawn(spec(&t, &g).workers(2).exec("cat"));
    run.wait_joined(0, 0, JOIN);
    run.wait_joined(0, 1, JOIN);
    let tree = descendants(run.pid());
    assert!(
        tree.len() >= 6,
        "2 workers, their guards and handlers: {tree:?}"
    );
    run.signal(Signal::SIGKILL);
    run.wait_exit(Duration::from_secs(5));
    let left = wait_dead(&tree, Duration::from_secs(3));
    assert!(
        left.is_empty(),
        "outlived the supervisor: {left:?} of {tree:?}"
    );
}

/// Every process below `pid`, from /proc.
fn descendants(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    let mut todo = vec![pid];
    while let Some(p) = todo.pop() {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) else {
            continue;
        };
        for task in tasks.flatten() {
            let kids = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
            for k in kids
                .split_whitespace()
                .filter_map(|k| k.parse::<i32>().ok())
            {
                out.push(k);
                todo.push(k);
            }
        }
    }
    out
}

#[test]
fn records_reach_stdout_through_the_workers() {
    let (t, g) = names();
    let brokers = support::brokers();
    // size the topic (2 partitions) before producing
    let plan = support::kswarm()
        .args(["plan", "-b", &brokers, "-t", &t, "-w", "2", "--apply"])
        .output()
        .unwrap();
    assert!(
        plan.status.success(),
        "{}",
        String::from_utf8_lossy(&plan.stderr)
    );
    let lines: String = (0..200).map(|i| format!("rec-{i}\n")).collect();
    let out = support::kswarm_with_stdin(&["produce", "-b", &brokers, "-t", &t], &lines);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let mut child = spec(&t, &g)
        .brokers(&brokers)
        .workers(2)
        .format("value")
        .command()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = std::collections::BTreeSet::new();
    let deadline = Instant::now() + JOIN + Duration::from_secs(10);
    while seen.len() < 200 {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) => {
                seen.insert(l);
            }
            Err(_) => break,
        }
    }
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(seen.len(), 200, "records seen: {}", seen.len());
    assert!(seen.contains("rec-0") && seen.contains("rec-199"));
    assert_eq!(status.code(), Some(0));
}

#[test]
fn ttin_and_ttou_change_the_worker_count() {
    let (t, g) = names();
    let mut run = Run::spawn(spec(&t, &g).workers(1));
    run.wait_joined(0, 0, JOIN);
    let n = run.events().len();
    run.signal(Signal::SIGTTIN);
    let added = run.wait_joined(n, 1, JOIN);
    run.signal(Signal::SIGTTOU);
    let (_, stopped) = run.wait_event(
        added.index,
        Duration::from_secs(20),
        "worker_stopped",
        |e| e["pid"] == added.pid,
    );
    assert_eq!(stopped["slot"], 1);
    assert!(wait_dead(&[added.pid], Duration::from_secs(2)).is_empty());
    // Never below one worker: the last TTOU changes nothing.
    let n = run.events().len();
    run.signal(Signal::SIGTTOU);
    std::thread::sleep(Duration::from_secs(1));
    let to = run.events().len();
    assert_eq!(run.count(n, to, "worker_removed", |_| true), 0);
    assert_eq!(run.count(n, to, "worker_stopping", |_| true), 0);
    run.signal(Signal::SIGTERM);
    assert_eq!(run.wait_exit(Duration::from_secs(20)).code(), Some(0));
    let slots: std::collections::BTreeSet<i64> = run
        .events()
        .iter()
        .filter(|e| e["event"] == "worker_started")
        .filter_map(|e| e["slot"].as_i64())
        .collect();
    assert_eq!(slots, [0, 1].into(), "never more than 2 slots");
}

#[test]
fn hup_replaces_every_worker_once_one_at_a_time_without_a_rebalance() {
    let (t, g) = names();
    let mut run = Run::spawn(spec(&t, &g).workers(2).format("value"));
    run.wait_event(0, JOIN, "all_joined", |_| true);
    let before: Vec<String> = (0..100).map(|i| format!("before-{i}")).collect();
    produce(&t, &before);
    assert_eq!(run.wait_records(100, Duration::from_secs(20)).len(), 100);
    let mut settled = run.wait_settled(2, JOIN);
    let (b, a) = (settled.remove(1), settled.remove(0));
    let generation = a.generation;

    let n = run.events().len();
    run.signal(Signal::SIGHUP);
    let (done, _) = run.wait_event(n, Duration::from_secs(60), "rolling_restart_done", |_| true);
    let replacing = |pid: i32| run.count(n, done + 1, "worker_replacing", |e| e["pid"] == pid);
    assert_eq!(run.count(n, done + 1, "worker_replacing", |_| true), 2);
    assert_eq!((replacing(a.pid), replacing(b.pid)), (1, 1));
    // one at a time: slot 1 is asked to stop only after slot 0's replacement joined
    let a2 = run.wait_joined(n, 0, Duration::ZERO);
    let (r1, _) = run.wait_event(n, Duration::ZERO, "worker_replacing", |e| e["pid"] == b.pid);
    assert!(a2.index < r1);
    let b2 = run.wait_joined(r1, 1, Duration::ZERO);
    assert!(a2.pid != a.pid && b2.pid != b.pid);
    assert!(wait_dead(&[a.pid, b.pid], Duration::from_secs(2)).is_empty());
    assert_eq!(
        run.count(n, done + 1, "restart_scheduled", |_| true),
        0,
        "HUP is no crash"
    );
    // Each old worker handed its member over and its replacement carried on
    // in the same generation: nobody left, the group never rebalanced.
    assert_eq!(run.count(n, done + 1, "takeover", |_| true), 2);
    assert_eq!(
        (a2.member.as_str(), a2.generation),
        (a.member.as_str(), generation)
    );
    assert_eq!(
        (b2.member.as_str(), b2.generation),
        (b.member.as_str(), generation)
    );
    assert_eq!(run.count(n, done + 1, "worker_rebalanced", |_| true), 0);

    // Both partitions flow again, and nothing was delivered twice: each old
    // worker committed what it had written before handing over.
    let later: Vec<String> = (0..100).map(|i| format!("after-{i}")).collect();
    produce(&t, &later);
    assert_eq!(run.wait_records(200, Duration::from_secs(20)).len(), 200);
    std::thread::sleep(Duration::from_millis(500));
    let out = run.out.lock().unwrap().clone();
    assert_eq!(out.len(), 200, "duplicates after a rolling restart");
    run.signal(Signal::SIGTERM);
    assert_eq!(run.wait_exit(Duration::from_secs(20)).code(), Some(0));
}

#[test]
fn a_hung_worker_is_killed_after_the_hang_timeout() {
    let (t, g) = names();
    let mut run = Run::spawn(spec(&t, &g).workers(1).args(["--hang-timeout", "3s"]));
    let j = run.wait_joined(0, 0, JOIN);
    kill(Pid::from_raw(j.pid), Signal::SIGSTOP).unwrap();
    let t0 = Instant::now();
    let (k, _) = run.wait_event(j.index, Duration::from_secs(15), "worker_hung", |e| {
        e["pid"] == j.pid
    });
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_millis(2500),
        "killed before --hang-timeout: {waited:?}"
    );
    let new = run.wait_joined(k, 0, JOIN);
    assert_ne!(new.pid, j.pid);
    assert!(wait_dead(&[j.pid], Duration::from_secs(2)).is_empty());
    run.signal(Signal::SIGTERM);
    assert_eq!(run.wait_exit(Duration::from_secs(20)).code(), Some(0));
}

#[test]
fn sd_notify_ready_status_and_stopping() {
    let (t, g) = names();
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut run = Run::spawn(
        spec(&t, &g)
            .workers(2)
            .env("NOTIFY_SOCKET", sock_path.to_str().unwrap()),
    );
    let mut got = Vec::<String>::new();
    let recv_until = |got: &mut Vec<String>, want: &str, within: Duration| {
        let deadline = Instant::now() + within;
        let mut buf = [0u8; 4096];
        while !got.iter().any(|m| m.lines().any(|l| l == want)) {
            assert!(
                Instant::now() < deadline,
                "no {want} within {within:?}; got {got:?}"
            );
            if let Ok(n) = sock.recv(&mut buf) {
                got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
        }
    };
    recv_until(&mut got, "READY=1", JOIN);
    assert!(
        got.iter()
            .any(|m| m.starts_with("STATUS=2/2 workers joined")),
        "{got:?}"
    );
    // READY only after both joined
    let ready_at = got
        .iter()
        .position(|m| m.lines().any(|l| l == "READY=1"))
        .unwrap();
    assert!(
        got[..ready_at].iter().any(|m| m.starts_with("STATUS=2/2")),
        "{got:?}"
    );
    // HUP: RELOADING=1, then READY=1 again once every worker was replaced
    let before = got.len();
    run.signal(Signal::SIGHUP);
    let mut fresh = Vec::new();
    recv_until(&mut fresh, "RELOADING=1", Duration::from_secs(5));
    recv_until(&mut fresh, "READY=1", Duration::from_secs(60));
    // READY=1 (socket) can overtake the log line (stderr pipe): allow a moment.
    run.wait_event(0, Duration::from_secs(5), "rolling_restart_done", |_| true);
    assert!(
        fresh
            .iter()
            .any(|m| m.lines().any(|l| l.starts_with("MONOTONIC_USEC="))),
        "RELOADING=1 comes with MONOTONIC_USEC: {fresh:?}"
    );
    got.extend(fresh);
    assert!(got.len() > before);
    run.signal(Signal::SIGTERM);
    recv_until(&mut got, "STOPPING=1", Duration::from_secs(10));
    assert_eq!(run.wait_exit(Duration::from_secs(20)).code(), Some(0));
}

#[test]
fn a_second_interrupt_kills_at_once() {
    let (t, g) = names();
    let mut run = Run::spawn(spec(&t, &g).workers(1).args(["--shutdown-timeout", "60s"]));
    let j = run.wait_joined(0, 0, JOIN);
    // A stopped worker cannot act on TERM: a graceful stop would take the
    // whole --shutdown-timeout.
    kill(Pid::from_raw(j.pid), Signal::SIGSTOP).unwrap();
    run.signal(Signal::SIGINT);
    std::thread::sleep(Duration::from_millis(300));
    let t0 = Instant::now();
    run.signal(Signal::SIGINT);
    let st = run.wait_exit(Duration::from_secs(10));
    assert!(t0.elapsed() < Duration::from_secs(5));
    assert_eq!(st.code(), Some(1), "{st:?}");
    assert!(
        run.exit_message().contains("second interrupt"),
        "{}",
        run.exit_message()
    );
    assert!(wait_dead(&[j.pid], Duration::from_secs(2)).is_empty());
}

fn produce(topic: &str, lines: &[String]) {
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    let out =
        support::kswarm_with_stdin(&["produce", "-b", &support::brokers(), "-t", topic], &text);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_replacement_of_a_killed_worker_consumes_its_partitions() {
    let (t, g) = names();
    let mut run = Run::spawn(spec(&t, &g).workers(2).format("value"));
    run.wait_event(0, JOIN, "all_joined", |_| true);
    let before: Vec<String> = (0..100).map(|i| format!("before-{i}")).collect();
    produce(&t, &before);
    assert_eq!(run.wait_records(100, Duration::from_secs(20)).len(), 100);

    let old = run.wait_settled(2, JOIN).remove(1);
    let from = run.events().len();
    let t0 = Instant::now();
    kill(Pid::from_raw(old.pid), Signal::SIGKILL).unwrap();
    let new = run.wait_joined(from, 1, JOIN);
    assert_ne!(new.pid, old.pid);
    // It carries on as the dead member, in its generation.
    assert_eq!(
        (new.member.as_str(), new.generation),
        (old.member.as_str(), old.generation)
    );
    // records on every partition, the dead worker's included, flow again
    let after: Vec<String> = (0..100).map(|i| format!("after-{i}")).collect();
    produce(&t, &after);
    let seen = run.wait_records(200, Duration::from_secs(20));
    let took = t0.elapsed();
    eprintln!("SIGKILL -> 100 new records consumed on all partitions: {took:?}");
    let missing: Vec<&String> = after.iter().filter(|a| !seen.contains(*a)).collect();
    assert!(
        missing.is_empty(),
        "not consumed after the restart: {missing:?}"
    );
    let now = run.events().len();
    assert_eq!(run.count(from, now, "worker_rebalanced", |_| true), 0);
    run.signal(Signal::SIGTERM);
    assert_eq!(run.wait_exit(Duration::from_secs(20)).code(), Some(0));
}

#[test]
fn a_closed_stdout_stops_kswarm_cleanly() {
    // `kswarm run | head -n 1`
    let (t, g) = names();
    let brokers = support::brokers();
    let plan = support::kswarm()
        .args(["plan", "-b", &brokers, "-t", &t, "-w", "2", "--apply"])
        .output()
        .unwrap();
    assert!(
        plan.status.success(),
        "{}",
        String::from_utf8_lossy(&plan.stderr)
    );
    produce(&t, &["first".to_string()]);
    let mut child = spec(&t, &g)
        .global(["--log-format", "json"])
        .brokers(&brokers)
        .workers(2)
        .format("value")
        .command()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let log = std::thread::spawn(move || {
        BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .filter_map(|l| serde_json::from_str::<Value>(&l).ok())
            .collect::<Vec<Value>>()
    });
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    assert_eq!(first.trim(), "first");
    drop(out); // the reader goes away
               // more records: writing them tells the workers
    let more: Vec<String> = (0..50).map(|i| format!("more-{i}")).collect();
    produce(&t, &more);
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("kswarm kept running with its stdout closed");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let log = log.join().unwrap();
    let named = |n: &str| log.iter().filter(|e| e["event"] == n).count();
    assert_eq!(status.code(), Some(0), "{log:?}");
    assert!(
        log.iter()
            .any(|e| e["event"] == "worker_stopping" && e["reason"] == "stdout closed"),
        "{log:?}"
    );
    assert_eq!(named("restart_scheduled"), 0, "no restarts: {log:?}");
    assert_eq!(named("stopped_cleanly"), 1, "{log:?}");
}

#[test]
fn a_restarted_kswarm_takes_back_the_places_of_a_killed_one() {
    let (t, g) = names();
    let dir = tempfile::tempdir().unwrap();
    // A long session: new members that did not take the dead ones' places
    // would wait for those sessions to expire (tansu keeps the dead leader).
    let args = spec(&t, &g)
        .workers(2)
        .args(["--session-timeout", "20s"])
        .state(dir.path());
    let mut first = Run::spawn(args.clone());
    first.wait_event(0, JOIN, "all_joined", |_| true);
    let old: std::collections::BTreeSet<String> = (0..2)
        .map(|s| first.wait_joined(0, s, JOIN).member)
        .collect();
    // the state file knows them before the kill
    let state_file = kswarm::state_file::state_path(dir.path(), &g, &t);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !old.iter().all(|m| {
        std::fs::read_to_string(&state_file)
            .unwrap_or_default()
            .contains(m.as_str())
    }) {
        assert!(Instant::now() < deadline, "state file without {old:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    first.signal(Signal::SIGKILL);
    first.wait_exit(Duration::from_secs(5));

    let t0 = Instant::now();
    let second = Run::spawn(args);
    second.wait_event(0, JOIN, "all_joined", |_| true);
    let took = t0.elapsed();
    eprintln!("the second kswarm had both workers joined {took:?} after its start");
    let new: std::collections::BTreeSet<String> = (0..2)
        .map(|s| second.wait_joined(0, s, JOIN).member)
        .collect();
    assert_eq!(new, old, "the same members again");
    // tansu holds a JoinGroup for half the session timeout (10 s here); new
    // members that did not take the places back took 36 s in a hand check.
    // On Kafka the dead members would hold their partitions for their 20 s
    // sessions.
    assert!(
        took < Duration::from_secs(18),
        "waited for the dead members' 20 s sessions? {took:?}"
    );
}

/// Wait until a librdkafka consumer (tests/peers/ck_member.py) in `group` is
/// assigned every partition of `topic`; how long that took, or None.
fn librdkafka_takes_the_group(topic: &str, group: &str, within: Duration) -> Option<Duration> {
    let t0 = Instant::now();
    let mut peer = std::process::Command::new(support::python())
        .arg(support::repo_root().join("tests/peers/ck_member.py"))
        .args(["consume", &support::brokers(), topic, group, "range"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the librdkafka peer");
    let out = peer.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if line.contains("\"assigned\": [0, 1]") {
                let _ = tx.send(());
            }
        }
    });
    let took = rx.recv_timeout(within).ok().map(|_| t0.elapsed());
    drop(peer.stdin.take()); // the peer closes (LeaveGroup) on EOF
    let deadline = Instant::now() + Duration::from_secs(10);
    while peer.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = peer.kill();
    let _ = peer.wait();
    took
}

#[test]
fn after_a_clean_stop_another_consumer_can_form_the_group() {
    // Workers that left one by one used to leave tansu naming a departed
    // leader about half the time, and no later consumer could form the group.
    // Three rounds: a regression shows in at least one with odds of 7 in 8.
    for round in 0..3 {
        let (t, g) = names();
        let mut run = Run::spawn(spec(&t, &g).workers(2).partitions("2"));
        run.wait_event(0, JOIN, "all_joined", |_| true);
        run.signal(Signal::SIGTERM);
        assert_eq!(run.wait_exit(Duration::from_secs(20)).code(), Some(0));
        let (_, left) = run.wait_event(0, Duration::from_secs(2), "left_together", |_| true);
        assert_eq!(left["members"], 2, "{left}");
        let took = librdkafka_takes_the_group(&t, &g, Duration::from_secs(20));
        eprintln!("round {round}: librdkafka formed the group after kswarm in {took:?}");
        assert!(
            took.is_some(),
            "round {round}: librdkafka could not form group {g} after kswarm stopped"
        );
    }
}

/// --static-membership under `run`: every worker is a member with its own
/// group.instance.id (PREFIX-SLOT), a killed one is taken over in the same
/// generation, and a TERM ends the run cleanly.
#[test]
fn static_membership_under_run() {
    let (t, g) = names();
    let mut run = Run::spawn(spec(&t, &g).workers(2).arg("--static-membership"));
    run.wait_event(0, JOIN, "all_joined", |_| true);
    let old = run.wait_settled(2, JOIN).remove(1);
    if support::broker_kind() == support::Broker::Kafka {
        let members = support::kafka_consumer_groups(&g, &["--members"]);
        for slot in 0..2 {
            assert!(
                members
                    .lines()
                    .any(|l| l.split_whitespace().nth(2) == Some(&format!("{g}-{slot}"))),
                "instance id {g}-{slot}: {members}"
            );
        }
    }
    let from = run.events().len();
    kill(Pid::from_raw(old.pid), Signal::SIGKILL).unwrap();
    let new = run.wait_joined(from, 1, JOIN);
    assert_eq!((new.member, new.generation), (old.member, old.generation));
    run.signal(Signal::SIGTERM);
    assert_eq!(run.wait_exit(Duration::from_secs(20)).code(), Some(0));
}
