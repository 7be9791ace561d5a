//! `kswarm run` as a process tree: real workers against the test broker, real
//! signals. Each test reads the supervisor's log lines (stderr) to learn which
//! pid runs in which slot.

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixDatagram;
use std::process::{Child, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// Time for a worker to join a group on tansu (JoinGroup waits up to the
/// rebalance timeout for the other members).
const JOIN: Duration = Duration::from_secs(30);

/// A running `kswarm run` and everything it printed on stderr so far.
struct Run {
    child: Child,
    log: Arc<(Mutex<Vec<String>>, Condvar)>,
    /// Record lines on stdout (the stdout handler).
    out: Arc<Mutex<Vec<String>>>,
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

impl Run {
    fn start(topic: &str, group: &str, extra: &[&str]) -> Self {
        Self::start_env(topic, group, extra, &[])
    }

    fn start_env(topic: &str, group: &str, extra: &[&str], env: &[(&str, &str)]) -> Self {
        let brokers = common::brokers();
        let mut cmd = common::kswarm();
        cmd.args(["run", "-b", &brokers, "-t", topic, "-g", group])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
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
                let (m, cv) = &*sink;
                m.lock().unwrap().push(strip_ansi(&line));
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

    fn lines(&self) -> Vec<String> {
        self.log.0.lock().unwrap().clone()
    }

    /// Wait until some line (from index `from` on) satisfies `pred`; return it.
    fn wait_line(
        &self,
        from: usize,
        within: Duration,
        what: &str,
        pred: impl Fn(&str) -> bool,
    ) -> (usize, String) {
        let deadline = Instant::now() + within;
        let (m, cv) = &*self.log;
        let mut lines = m.lock().unwrap();
        loop {
            if let Some((i, l)) = lines.iter().enumerate().skip(from).find(|(_, l)| pred(l)) {
                return (i, l.clone());
            }
            let now = Instant::now();
            assert!(
                now < deadline,
                "no log line {what} within {within:?}; log:\n{}",
                lines.join("\n")
            );
            lines = cv.wait_timeout(lines, deadline - now).unwrap().0;
        }
    }

    fn wait_text(&self, from: usize, within: Duration, text: &str) -> (usize, String) {
        self.wait_line(from, within, &format!("containing {text:?}"), |l| {
            l.contains(text)
        })
    }

    /// Wait for "slot S pid P joined" (from `from` on) and return (line index, pid).
    fn wait_joined(&self, from: usize, slot: u32, within: Duration) -> (usize, i32) {
        let prefix = format!("slot {slot} pid ");
        let (i, l) = self.wait_line(from, within, &format!("'slot {slot} .. joined'"), |l| {
            l.contains(&prefix) && l.contains(" joined generation")
        });
        (i, pid_after(&l, &prefix))
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
                self.lines().join("\n")
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

fn pid_after(line: &str, prefix: &str) -> i32 {
    let rest = &line[line.find(prefix).unwrap() + prefix.len()..];
    rest.split_whitespace().next().unwrap().parse().unwrap()
}

/// Alive and not a zombie.
fn alive(pid: i32) -> bool {
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
    (common::unique("sup-t"), common::unique("sup-g"))
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
    let mut run = Run::start(&t, &g, &[]);
    let (_, line) = run.wait_text(0, JOIN, "workers joined");
    assert!(line.contains(&format!("all {n} workers joined")), "{line}");
    let pids: Vec<i32> = (0..n).map(|s| run.wait_joined(0, s, JOIN).1).collect();
    run.signal(Signal::SIGTERM);
    let st = run.wait_exit(Duration::from_secs(20));
    assert_eq!(st.code(), Some(0), "log:\n{}", run.lines().join("\n"));
    assert!(wait_dead(&pids, Duration::from_secs(1)).is_empty());
    run.wait_text(0, Duration::from_secs(2), "all workers stopped cleanly");
}

#[test]
fn a_killed_worker_is_replaced_in_its_slot() {
    let (t, g) = names();
    let dir = tempfile::tempdir().unwrap();
    let state_dir = dir.path().to_str().unwrap();
    // The replacement must not wait for the dead member's session timeout
    // (10 s here): the supervisor evicts it at once.
    let mut run = Run::start_env(
        &t,
        &g,
        &["-w", "2", "--session-timeout", "10s"],
        &[("KSWARM_STATE_DIR", state_dir)],
    );
    let (i, old) = run.wait_joined(0, 1, JOIN);
    run.wait_text(0, JOIN, "all 2 workers joined");
    // the state file for `kswarm status` names both workers
    let state_file = kswarm::state_file::state_path(dir.path(), &g, &t);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = std::fs::read_to_string(&state_file).unwrap_or_default();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        let joined = v["workers"]
            .as_array()
            .map(|w| w.iter().filter(|w| w["member_id"].is_string()).count())
            .unwrap_or(0);
        if joined == 2 && text.contains(&format!("\"pid\": {old}")) {
            assert_eq!(v["pid"].as_i64(), Some(run.pid() as i64), "{text}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "state file {state_file:?}: {text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let t0 = Instant::now();
    kill(Pid::from_raw(old), Signal::SIGKILL).unwrap();
    let (_, new) = run.wait_joined(i + 1, 1, JOIN);
    let took = t0.elapsed();
    eprintln!("replacement joined {took:?} after SIGKILL");
    assert!(
        took < Duration::from_secs(9),
        "waited for the session timeout? {took:?}"
    );
    run.wait_text(
        0,
        Duration::ZERO,
        "slot 1: the replacement takes over member",
    );
    assert_ne!(new, old);
    assert!(alive(new));
    run.wait_text(
        0,
        Duration::ZERO,
        &format!("slot 1 pid {old} ended unexpectedly with signal 9"),
    );
    run.signal(Signal::SIGTERM);
    assert_eq!(run.wait_exit(Duration::from_secs(20)).code(), Some(0));
    // The state file stays, naming both slots' members for the next run.
    let text = std::fs::read_to_string(&state_file).expect("state file kept");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
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
    let mut run = Run::start(
        &t,
        &g,
        &[
            "-w",
            "1",
            "--max-restarts",
            "3/60s",
            "--exec",
            "echo boom-marker-42 >&2; exit 3",
        ],
    );
    let st = run.wait_exit(Duration::from_secs(60));
    let log = run.lines().join("\n");
    assert_eq!(st.code(), Some(1), "log:\n{log}");
    // the supervisor's own last word (workers print "kswarm: error:" too)
    let last = &log[log.find("kswarm: error: slot 0").expect("final error")..];
    assert!(last.contains("slot 0"), "{last}");
    assert!(last.contains("--max-restarts"), "{last}");
    assert!(
        last.contains("boom-marker-42"),
        "the worker's last stderr lines: {last}"
    );
    // 3 restarts happened before giving up
    assert!(log.contains("slot 0: restart 3 in"), "{log}");
}

#[test]
fn a_sigkilled_supervisor_leaves_no_worker_behind() {
    let (t, g) = names();
    // `cat` acknowledges every record by echoing it: a long-running handler.
    let mut run = Run::start(&t, &g, &["-w", "2", "--exec", "cat"]);
    run.wait_joined(0, 0, JOIN);
    run.wait_joined(0, 1, JOIN);
    let tree = descendants(run.pid());
    assert!(tree.len() >= 4, "2 workers and their handlers: {tree:?}");
    run.signal(Signal::SIGKILL);
    run.wait_exit(Duration::from_secs(5));
    let left = wait_dead(&tree, Duration::from_secs(2));
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
    let brokers = common::brokers();
    // size the topic (2 partitions) before producing
    let plan = common::kswarm()
        .args(["plan", "-b", &brokers, "-t", &t, "-w", "2", "--apply"])
        .output()
        .unwrap();
    assert!(
        plan.status.success(),
        "{}",
        String::from_utf8_lossy(&plan.stderr)
    );
    let lines: String = (0..200).map(|i| format!("rec-{i}\n")).collect();
    let out = common::kswarm_with_stdin(&["produce", "-b", &brokers, "-t", &t], &lines);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let mut child = common::kswarm()
        .args([
            "run", "-b", &brokers, "-t", &t, "-g", &g, "-w", "2", "--format", "value",
        ])
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
    let mut run = Run::start(&t, &g, &["-w", "1"]);
    run.wait_joined(0, 0, JOIN);
    let n = run.lines().len();
    run.signal(Signal::SIGTTIN);
    let (i, added) = run.wait_joined(n, 1, JOIN);
    run.signal(Signal::SIGTTOU);
    run.wait_text(
        i,
        Duration::from_secs(20),
        &format!("slot 1 pid {added} stopped"),
    );
    assert!(wait_dead(&[added], Duration::from_secs(2)).is_empty());
    let n = run.lines().len();
    run.signal(Signal::SIGTTOU);
    run.wait_text(
        n,
        Duration::from_secs(5),
        "TTOU ignored: kswarm keeps at least one worker",
    );
    run.signal(Signal::SIGTERM);
    assert_eq!(run.wait_exit(Duration::from_secs(20)).code(), Some(0));
    let log = run.lines().join("\n");
    assert!(!log.contains("slot 2"), "never more than 2 slots: {log}");
}

/// The generation in a "slot S pid P joined generation G ..." or
/// "slot S pid P rebalanced: generation F -> G ..." line.
fn generation_in(line: &str) -> i32 {
    if line.contains(" rebalanced: generation ") {
        pid_after(line, "-> ")
    } else {
        pid_after(line, "joined generation ")
    }
}

/// The group's generation per the supervisor's last join or rebalance line.
fn last_generation(lines: &[String]) -> i32 {
    let l = lines
        .iter()
        .rev()
        .find(|l| l.contains(" joined generation ") || l.contains(" rebalanced: generation "))
        .expect("a join line");
    generation_in(l)
}

#[test]
fn hup_replaces_every_worker_once_one_at_a_time_without_a_rebalance() {
    let (t, g) = names();
    let mut run = Run::start(&t, &g, &["-w", "2", "--format", "value"]);
    let (_, a) = run.wait_joined(0, 0, JOIN);
    let (_, b) = run.wait_joined(0, 1, JOIN);
    run.wait_text(0, JOIN, "all 2 workers joined");
    let before: Vec<String> = (0..100).map(|i| format!("before-{i}")).collect();
    produce(&t, &before);
    assert_eq!(run.wait_records(100, Duration::from_secs(20)).len(), 100);
    let generation = last_generation(&run.lines());

    let n = run.lines().len();
    run.signal(Signal::SIGHUP);
    let (done, _) = run.wait_text(n, Duration::from_secs(60), "rolling restart done");
    let lines = run.lines();
    let after = &lines[n..=done];
    let count = |s: &str| after.iter().filter(|l| l.contains(s)).count();
    assert_eq!(count("replacing (rolling restart)"), 2, "{after:#?}");
    assert_eq!(count(&format!("slot 0 pid {a}: replacing")), 1);
    assert_eq!(count(&format!("slot 1 pid {b}: replacing")), 1);
    // one at a time: slot 1 is asked to stop only after slot 0's replacement joined
    let (j0, a2) = run.wait_joined(n, 0, Duration::ZERO);
    let (r1, _) = run.wait_text(n, Duration::ZERO, &format!("slot 1 pid {b}: replacing"));
    assert!(j0 < r1, "{after:#?}");
    let (j1, b2) = run.wait_joined(r1, 1, Duration::ZERO);
    assert!(a2 != a && b2 != b);
    assert!(wait_dead(&[a, b], Duration::from_secs(2)).is_empty());
    assert!(
        !after.iter().any(|l| l.contains("restart 1 in")),
        "HUP is no crash: {after:#?}"
    );
    // Each old worker handed its member over and its replacement carried on
    // in the same generation: nobody left, the group never rebalanced.
    assert_eq!(
        count("stays in the group for the supervisor to hand on"),
        2,
        "{after:#?}"
    );
    assert_eq!(count("taking over member"), 2, "{after:#?}");
    assert_eq!(generation_in(&lines[j0]), generation, "{after:#?}");
    assert_eq!(generation_in(&lines[j1]), generation, "{after:#?}");
    assert_eq!(count("rebalanced"), 0, "{after:#?}");

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
    let mut run = Run::start(&t, &g, &["-w", "1", "--hang-timeout", "3s"]);
    let (i, pid) = run.wait_joined(0, 0, JOIN);
    kill(Pid::from_raw(pid), Signal::SIGSTOP).unwrap();
    let t0 = Instant::now();
    let (k, _) = run.wait_text(
        i,
        Duration::from_secs(10),
        &format!("slot 0 pid {pid}: no report for"),
    );
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_millis(1500),
        "killed too early: {waited:?}"
    );
    let (_, new) = run.wait_joined(k, 0, JOIN);
    assert_ne!(new, pid);
    assert!(wait_dead(&[pid], Duration::from_secs(2)).is_empty());
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
    let mut run = Run::start_env(
        &t,
        &g,
        &["-w", "2"],
        &[("NOTIFY_SOCKET", sock_path.to_str().unwrap())],
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
    run.wait_text(0, Duration::from_secs(5), "rolling restart done");
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
    let mut run = Run::start(&t, &g, &["-w", "1", "--shutdown-timeout", "60s"]);
    let (_, pid) = run.wait_joined(0, 0, JOIN);
    // A stopped worker cannot act on TERM: a graceful stop would take the
    // whole --shutdown-timeout.
    kill(Pid::from_raw(pid), Signal::SIGSTOP).unwrap();
    run.signal(Signal::SIGINT);
    std::thread::sleep(Duration::from_millis(300));
    let t0 = Instant::now();
    run.signal(Signal::SIGINT);
    let st = run.wait_exit(Duration::from_secs(10));
    assert!(t0.elapsed() < Duration::from_secs(5));
    assert!(st.code().is_some() && st.code() != Some(0), "{st:?}");
    assert!(wait_dead(&[pid], Duration::from_secs(2)).is_empty());
}

fn produce(topic: &str, lines: &[String]) {
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    let out = common::kswarm_with_stdin(&["produce", "-b", &common::brokers(), "-t", topic], &text);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_replacement_of_a_killed_worker_consumes_its_partitions() {
    let (t, g) = names();
    let mut run = Run::start(&t, &g, &["-w", "2", "--format", "value"]);
    run.wait_text(0, JOIN, "all 2 workers joined");
    let before: Vec<String> = (0..100).map(|i| format!("before-{i}")).collect();
    produce(&t, &before);
    assert_eq!(run.wait_records(100, Duration::from_secs(20)).len(), 100);

    let (i, old) = run.wait_joined(0, 1, Duration::ZERO);
    let t0 = Instant::now();
    kill(Pid::from_raw(old), Signal::SIGKILL).unwrap();
    let (_, new) = run.wait_joined(i + 1, 1, JOIN);
    assert_ne!(new, old);
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
    run.signal(Signal::SIGTERM);
    assert_eq!(run.wait_exit(Duration::from_secs(20)).code(), Some(0));
}

#[test]
fn a_closed_stdout_stops_kswarm_cleanly() {
    // `kswarm run | head -n 1`
    let (t, g) = names();
    let brokers = common::brokers();
    let plan = common::kswarm()
        .args(["plan", "-b", &brokers, "-t", &t, "-w", "2", "--apply"])
        .output()
        .unwrap();
    assert!(
        plan.status.success(),
        "{}",
        String::from_utf8_lossy(&plan.stderr)
    );
    produce(&t, &["first".to_string()]);
    let mut child = common::kswarm()
        .args([
            "run", "-b", &brokers, "-t", &t, "-g", &g, "-w", "2", "--format", "value",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let log = std::thread::spawn(move || {
        let mut s = String::new();
        use std::io::Read;
        let _ = BufReader::new(stderr).read_to_string(&mut s);
        s
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
    let log = strip_ansi(&log.join().unwrap());
    assert_eq!(status.code(), Some(0), "{log}");
    assert!(log.contains("stdout closed; stopping"), "{log}");
    assert!(!log.contains("restart 1 in"), "no restarts: {log}");
}

/// The member id in a "slot S pid P joined generation G partitions [..] member M" line.
fn member_after(line: &str) -> String {
    line.rsplit(" member ").next().unwrap().trim().to_string()
}

#[test]
fn a_restarted_kswarm_takes_back_the_places_of_a_killed_one() {
    let (t, g) = names();
    let dir = tempfile::tempdir().unwrap();
    let env = [("KSWARM_STATE_DIR", dir.path().to_str().unwrap())];
    // A long session: new members that did not take the dead ones' places
    // would wait for those sessions to expire (tansu keeps the dead leader).
    let args = ["-w", "2", "--session-timeout", "20s"];
    let mut first = Run::start_env(&t, &g, &args, &env);
    first.wait_text(0, JOIN, "all 2 workers joined");
    let old: std::collections::BTreeSet<String> = (0..2)
        .map(|s| {
            let (i, _) = first.wait_joined(0, s, JOIN);
            member_after(&first.lines()[i])
        })
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
    let second = Run::start_env(&t, &g, &args, &env);
    second.wait_text(0, JOIN, "all 2 workers joined");
    let took = t0.elapsed();
    eprintln!("the second kswarm had both workers joined {took:?} after its start");
    let new: std::collections::BTreeSet<String> = (0..2)
        .map(|s| {
            let (i, _) = second.wait_joined(0, s, JOIN);
            member_after(&second.lines()[i])
        })
        .collect();
    assert_eq!(new, old, "the same members again");
    second.wait_text(
        0,
        Duration::from_secs(1),
        &format!("left by the previous kswarm (pid {})", first.pid()),
    );
    // tansu holds a JoinGroup for half the session timeout (10 s here); new
    // members that did not take the places back took 36 s in a hand check.
    assert!(
        took < Duration::from_secs(18),
        "waited for the dead members' 20 s sessions? {took:?}"
    );
}

/// Wait until a librdkafka consumer (tests/peers/ck_member.py) in `group` is
/// assigned every partition of `topic`; how long that took, or None.
fn librdkafka_takes_the_group(topic: &str, group: &str, within: Duration) -> Option<Duration> {
    let t0 = Instant::now();
    let mut peer = std::process::Command::new(common::python())
        .arg(common::repo_root().join("tests/peers/ck_member.py"))
        .args(["consume", &common::brokers(), topic, group, "range"])
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
        let mut run = Run::start(&t, &g, &["-w", "2", "-p", "2"]);
        run.wait_text(0, JOIN, "all 2 workers joined");
        run.signal(Signal::SIGTERM);
        assert_eq!(run.wait_exit(Duration::from_secs(20)).code(), Some(0));
        run.wait_text(
            0,
            Duration::from_secs(2),
            &format!("left group {g}: 2 members in one LeaveGroup"),
        );
        let took = librdkafka_takes_the_group(&t, &g, Duration::from_secs(20));
        eprintln!("round {round}: librdkafka formed the group after kswarm in {took:?}");
        assert!(
            took.is_some(),
            "round {round}: librdkafka could not form group {g} after kswarm stopped"
        );
    }
}
