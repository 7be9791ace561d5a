//! The delivery promise under hostile conditions: handlers that lie in their
//! acknowledgements, ignore TERM and EOF, close their stdout, stall behind a
//! backlog or choke on a record; operators who start a second kswarm, stop
//! the supervisor, or send a burst of TTIN and TTOU. Each test failed on the
//! build before these cases were handled (issue 11) and runs on Apache Kafka
//! and on tansu. Tests look at what happened (committed offsets, what the
//! handler wrote down, processes, the state file, exit codes), not at log
//! wording.
mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use support::{
    committed, create_topic, numbered, processes_with, produce_with, py, read_lines, read_seen,
    run_state, slow_appending_handler, tally, wait_for, wait_members, Run,
};

const LONG: Duration = Duration::from_secs(90);

/// A Python handler from source, run as `PYTHON FILE ARGS`.
fn python_handler(dir: &Path, name: &str, source: &str, args: &str) -> String {
    let file = dir.join(name);
    std::fs::write(&file, source).unwrap();
    format!("{} {} {args}", py(), file.display())
}

fn code(st: std::process::ExitStatus) -> Option<i32> {
    st.code()
}

/// Every offset below a partition's committed one was handled: nothing lost.
fn assert_nothing_committed_unhandled(
    brokers: &str,
    topic: &str,
    group: &str,
    n: usize,
    handled: &Path,
) {
    let offsets: BTreeSet<(i32, i64)> = read_seen(handled)
        .iter()
        .map(|s| (s.partition, s.offset))
        .collect();
    for (p, c) in committed(brokers, topic, group, n) {
        let unhandled: Vec<i64> = (0..c.unwrap_or(0))
            .filter(|&o| !offsets.contains(&(p, o)))
            .take(5)
            .collect();
        assert!(
            unhandled.is_empty(),
            "partition {p} committed at {c:?} but offsets {unhandled:?}.. were never handled: lost"
        );
    }
}

/// Surplus ack lines (two per record once it has handled 1000) must not
/// commit records the handler never saw; before, they did (ids 101..199 of
/// 200 were committed and lost).
#[test]
fn acknowledgements_that_cannot_be_trusted_commit_nothing_unhandled() {
    let b = support::brokers();
    let (topic, group) = (support::unique("h-ack"), support::unique("g-ack"));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("handled.jsonl");
    create_topic(&b, &topic, 1);
    produce_with(&b, &topic, &numbered("a", 3000), &["--batch-size", "500"]);
    let liar = python_handler(
        dir.path(),
        "liar.py",
        r#"
import sys, time
f = open(sys.argv[1], "a")
n = 0
for line in sys.stdin:
    time.sleep(0.001)
    f.write(line)
    f.flush()
    n += 1
    sys.stdout.write("ok\n" if n <= 1000 else "ok\nalso ok\n")
    sys.stdout.flush()
"#,
        &file.display().to_string(),
    );
    let mut run = Run::new(&topic, &group)
        .exec(&liar)
        .args(["--commit-interval", "100ms", "--max-restarts", "0/60s"])
        .state(dir.path())
        .spawn();
    let st = run.wait(LONG);
    assert_eq!(code(st), Some(1), "{}", run.stderr_text());
    let handled = read_seen(&file).len();
    assert!(
        handled >= 1000,
        "the handler got going first ({handled} handled)"
    );
    assert_nothing_committed_unhandled(&b, &topic, &group, 1, &file);
}

/// Two `kswarm run` for one group and topic on one host each took over the
/// same members and consumed everything twice; the second is now refused.
#[test]
fn a_second_run_for_the_same_group_and_topic_is_refused() {
    let b = support::brokers();
    let (topic, group) = (support::unique("h-two"), support::unique("g-two"));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("handled.jsonl");
    create_topic(&b, &topic, 2);
    let handler = slow_appending_handler(&file, 0.0);
    let spec = Run::new(&topic, &group).exec(&handler).state(dir.path());
    let mut first = spec.spawn_as("first");
    wait_members(dir.path(), &group, &topic, 1, LONG);
    let mut second = spec.spawn_as("second");
    let st = second.wait(Duration::from_secs(30));
    assert_eq!(code(st), Some(2), "{}", second.stderr_text());
    assert!(
        second.stderr_text().contains(&first.pid().to_string()),
        "the message names the running one: {}",
        second.stderr_text()
    );
    assert!(first.try_status().is_none(), "the first one runs on");

    // A killed run, then two restarts at once (an operator and systemd):
    // exactly one runs.
    first.signal(Signal::SIGKILL);
    first.wait(Duration::from_secs(10));
    let mut a = spec.spawn_as("restart a");
    let mut c = spec.spawn_as("restart b");
    let (refused, running) = wait_for(
        Duration::from_secs(30),
        "one of two restarts refused",
        || match (a.try_status(), c.try_status()) {
            (Some(s), None) => Some((s, c.pid())),
            (None, Some(s)) => Some((s, a.pid())),
            (Some(x), Some(y)) => panic!("both ended: {x:?} {y:?}"),
            (None, None) => None,
        },
    );
    assert_eq!(code(refused), Some(2));
    wait_for(LONG, "the other one to take over", || {
        let s = run_state(dir.path(), &group, &topic)?;
        (s.pid as i32 == running && s.workers.iter().all(|w| w.generation.is_some())).then_some(())
    });
}

/// A slow handler with a backlog kept the worker from committing (11 s
/// without a commit), and a TTIN then redelivered 30,354 of 40,000 records.
/// Now commits go on, rebalances drain and commit, and a TERM with records in
/// flight then a restart delivers nothing twice and commits the end.
#[test]
fn a_backlog_does_not_stop_commits_and_rebalances_and_stops_duplicate_nothing() {
    let b = support::brokers();
    let (topic, group) = (support::unique("h-backlog"), support::unique("g-backlog"));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("handled.jsonl");
    const N: usize = 16_000;
    create_topic(&b, &topic, 4);
    produce_with(&b, &topic, &numbered("k", N), &["--batch-size", "1000"]);
    let handler = slow_appending_handler(&file, 0.0005);
    // Small fetches, so that the records of a worker's partitions interleave
    // in its handler and every partition has records in flight at a rebalance.
    let spec = Run::new(&topic, &group)
        .workers(2)
        .exec(&handler)
        .args(["--commit-interval", "500ms"])
        .args(["-X", "max.partition.fetch.bytes=8192"])
        .args(["-X", "fetch.max.bytes=32768"])
        .state(dir.path());
    let mut run = spec.spawn();
    wait_for(LONG, "2,000 records handled", || {
        (read_seen(&file).len() >= 2000).then_some(())
    });
    // Commits while the handlers are busy.
    wait_for(
        Duration::from_secs(10),
        "a commit during the backlog",
        || {
            let c = committed(&b, &topic, &group, 4);
            (c.values().flatten().sum::<i64>() > 0).then_some(())
        },
    );
    kill(Pid::from_raw(run.pid()), Signal::SIGTTIN).unwrap();
    wait_members(dir.path(), &group, &topic, 3, LONG);
    let handled = read_seen(&file).len();
    wait_for(LONG, "more records handled by three", || {
        (read_seen(&file).len() >= handled + 1000).then_some(())
    });
    kill(Pid::from_raw(run.pid()), Signal::SIGTTOU).unwrap();
    wait_members(dir.path(), &group, &topic, 2, LONG);
    wait_for(LONG, "half the records handled", || {
        (read_seen(&file).len() >= N / 2).then_some(())
    });
    // TERM with records in flight, then a restart.
    run.signal(Signal::SIGTERM);
    let st = run.wait(Duration::from_secs(30));
    assert_eq!(code(st), Some(0), "{}", run.stderr_text());
    let mut run = spec.spawn_as("restart");
    wait_for(LONG, "every record handled", || {
        (tally(&read_seen(&file)).distinct >= N).then_some(())
    });
    run.signal(Signal::SIGTERM);
    assert_eq!(code(run.wait(Duration::from_secs(30))), Some(0));
    let t = tally(&read_seen(&file));
    assert_eq!(t.distinct, N);
    assert_eq!(
        t.duplicates, 0,
        "a drained rebalance and a drained stop deliver nothing twice"
    );
    assert_eq!(t.out_of_order, 0);
    let ends: Vec<Option<i64>> = committed(&b, &topic, &group, 4).into_values().collect();
    let total: i64 = ends.iter().flatten().sum();
    assert_eq!(
        total, N as i64,
        "committed at the end of every partition: {ends:?}"
    );
}

/// Handler processes that ignore TERM and EOF and leave the process group
/// survived a SIGKILL of their worker and of the supervisor, with parent 1.
#[test]
fn no_handler_process_outlives_its_worker_or_the_supervisor() {
    let b = support::brokers();
    let (topic, group) = (support::unique("h-orphan"), support::unique("g-orphan"));
    let dir = tempfile::tempdir().unwrap();
    create_topic(&b, &topic, 1);
    let mark = support::unique("stubborn");
    let script = dir.path().join("stubborn.sh");
    std::fs::write(
        &script,
        format!(
            r#"{py} -c 'import os, signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
os.setsid()
while True: time.sleep(1)' {mark} </dev/null >/dev/null &
exec {py} -c 'import signal, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
for line in sys.stdin: print("ok", flush=True)
while True: time.sleep(1)' {mark}
"#,
            py = py()
        ),
    )
    .unwrap();
    let handler = format!("sh {}", script.display());
    let mut run = Run::new(&topic, &group)
        .exec(&handler)
        .state(dir.path())
        .spawn();
    let workers = wait_members(dir.path(), &group, &topic, 1, LONG);
    let first = wait_for(
        Duration::from_secs(20),
        "the handler's two processes",
        || {
            let p = processes_with(&mark);
            (p.len() == 2).then_some(p)
        },
    );
    kill(Pid::from_raw(workers[0]), Signal::SIGKILL).unwrap();
    wait_for(
        Duration::from_secs(15),
        "the killed worker's handler processes gone",
        || {
            let now = processes_with(&mark);
            first.iter().all(|p| !now.contains(p)).then_some(())
        },
    );
    // The replacement's handler runs; now kill the supervisor.
    wait_for(Duration::from_secs(30), "the replacement's handler", || {
        (processes_with(&mark).len() == 2).then_some(())
    });
    run.signal(Signal::SIGKILL);
    run.wait(Duration::from_secs(10));
    wait_for(Duration::from_secs(15), "no handler process left", || {
        processes_with(&mark).is_empty().then_some(())
    });
}

/// A handler that closes its stdout while a process it started keeps it
/// open acknowledges nothing: it was killed as hung every 30 s, for ever,
/// leaving that process behind each time. Now the worker says which handler
/// and which process, counts it as a failure, and leaves nothing behind.
#[test]
fn a_handler_that_closed_its_stdout_is_named_counted_and_cleaned_up() {
    let b = support::brokers();
    let (topic, group) = (support::unique("h-closed"), support::unique("g-closed"));
    let dir = tempfile::tempdir().unwrap();
    create_topic(&b, &topic, 1);
    produce_with(&b, &topic, &numbered("c", 100), &[]);
    // A sleep of a length no other process has, to find it again.
    let mark = format!("sleep {}", 600_000 + std::process::id() % 100_000);
    let handler = format!("{mark} & exec >&-; cat >/dev/null");
    let mut run = Run::new(&topic, &group)
        .exec(&handler)
        .args(["--hang-timeout", "3s", "--max-restarts", "2/60s"])
        .state(dir.path())
        .spawn();
    let st = run.wait(LONG);
    let err = run.stderr_text();
    assert_eq!(code(st), Some(1), "{err}");
    assert!(err.contains("acknowledged none for"), "{err}");
    assert!(
        err.contains("(sleep)"),
        "names the process holding its stdout: {err}"
    );
    assert!(
        processes_with(&mark).is_empty(),
        "left behind: {:?}",
        processes_with(&mark)
    );
}

/// A value with a newline under --format value with --exec stopped the
/// worker before the 500 records before it were delivered or committed.
#[test]
fn a_record_the_handler_cannot_take_comes_after_everything_before_it() {
    let b = support::brokers();
    let (topic, group) = (support::unique("h-poison"), support::unique("g-poison"));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("handled.txt");
    create_topic(&b, &topic, 1);
    produce_with(&b, &topic, &numbered("p", 500), &["--batch-size", "50"]);
    produce_value(&b, &topic, "two\nlines");
    produce_with(&b, &topic, &numbered("after", 100), &["--batch-size", "50"]);
    let handler = format!(
        "while IFS= read -r l; do printf '%s\\n' \"$l\" >> {}; echo ok; done",
        file.display()
    );
    let mut run = Run::new(&topic, &group)
        .format("value")
        .exec(&handler)
        .args(["--max-restarts", "0/60s"])
        .state(dir.path())
        .spawn();
    let st = run.wait(LONG);
    let err = run.stderr_text();
    assert_eq!(code(st), Some(1), "{err}");
    assert!(err.contains("partition 0 offset 500"), "{err}");
    let lines = read_lines(&file);
    assert_eq!(lines.len(), 500, "every record before the poison, once");
    assert_eq!(lines.last().map(String::as_str), Some("p-499"));
    let c = committed(&b, &topic, &group, 1);
    assert_eq!(c.get(&0), Some(&Some(500)), "committed up to the poison");
}

/// One record with this value on partition 0, by librdkafka (`kswarm
/// produce` cannot write a newline inside a value: it splits lines).
fn produce_value(brokers: &str, topic: &str, value: &str) {
    let out = std::process::Command::new(support::python())
        .arg("-c")
        .arg(
            "import sys\nfrom confluent_kafka import Producer\n\
             p = Producer({'bootstrap.servers': sys.argv[1]})\n\
             p.produce(sys.argv[2], value=sys.argv[3].encode(), partition=0)\n\
             assert p.flush(10) == 0\n",
        )
        .args([brokers, topic, value])
        .output()
        .expect("python");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Time the supervisor spends stopped (SIGSTOP) is not its workers'
/// silence: it used to kill a healthy worker as hung after SIGCONT.
#[test]
fn a_stopped_supervisor_kills_no_healthy_worker_when_it_continues() {
    let b = support::brokers();
    let (topic, group) = (support::unique("h-stop"), support::unique("g-stop"));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("handled.jsonl");
    create_topic(&b, &topic, 2);
    produce_with(
        &b,
        &topic,
        &numbered("s", 40_000),
        &["--batch-size", "1000"],
    );
    let handler = slow_appending_handler(&file, 0.0005);
    let mut run = Run::new(&topic, &group)
        .workers(2)
        .exec(&handler)
        .args(["--hang-timeout", "3s"])
        .state(dir.path())
        .spawn();
    let before = wait_members(dir.path(), &group, &topic, 2, LONG);
    run.signal(Signal::SIGSTOP);
    std::thread::sleep(Duration::from_secs(8));
    let handled_meanwhile = read_seen(&file).len();
    run.signal(Signal::SIGCONT);
    std::thread::sleep(Duration::from_secs(3));
    let s = run_state(dir.path(), &group, &topic).expect("state");
    let after: Vec<i32> = s.workers.iter().map(|w| w.pid as i32).collect();
    assert_eq!(
        after,
        before,
        "the same workers run on: {}",
        run.stderr_text()
    );
    assert!(s.workers.iter().all(|w| w.restarts == 0), "{s:?}");
    assert!(handled_meanwhile > 0);
    run.signal(Signal::SIGTERM);
    assert_eq!(code(run.wait(Duration::from_secs(30))), Some(0));
}

/// Five quick TTINs added one worker, and two TTOUs to a group of four
/// wedged it (on tansu) for over 80 s. Every signal counts now, and each
/// change waits for the group to be stable.
#[test]
fn every_ttin_and_ttou_counts_and_the_group_goes_on() {
    let b = support::brokers();
    let (topic, group) = (support::unique("h-scale"), support::unique("g-scale"));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("handled.jsonl");
    create_topic(&b, &topic, 8);
    let handler = slow_appending_handler(&file, 0.0);
    let mut run = Run::new(&topic, &group)
        .workers(2)
        .exec(&handler)
        .state(dir.path())
        .spawn();
    wait_members(dir.path(), &group, &topic, 2, LONG);
    let pid = Pid::from_raw(run.pid());
    for _ in 0..5 {
        kill(pid, Signal::SIGTTIN).unwrap();
        std::thread::sleep(Duration::from_millis(100));
    }
    support::wait_run_members(
        &run,
        dir.path(),
        &group,
        &topic,
        7,
        Duration::from_secs(180),
    );
    for _ in 0..3 {
        kill(pid, Signal::SIGTTOU).unwrap();
        std::thread::sleep(Duration::from_millis(100));
    }
    support::wait_run_members(
        &run,
        dir.path(),
        &group,
        &topic,
        4,
        Duration::from_secs(120),
    );
    // The group consumes: every record produced now is handled.
    produce_with(&b, &topic, &numbered("after", 2000), &[]);
    wait_for(LONG, "records handled after the scaling", || {
        (tally(&read_seen(&file)).distinct >= 2000).then_some(())
    });
    run.signal(Signal::SIGTERM);
    assert_eq!(code(run.wait(Duration::from_secs(30))), Some(0));
}

/// A slow handler (200 records/s) held up to 10,000 records, 50 s of work:
/// a SIGTERM waited the whole --shutdown-timeout and then killed it in the
/// middle of its work. The in-flight window now follows its rate
/// (--max-in-flight-time): the stop drains it, the handler reads to EOF and
/// ends on its own, and a restart delivers nothing twice.
#[test]
fn a_slow_handler_drains_at_a_stop_and_ends_on_its_own() {
    let b = support::brokers();
    let (topic, group) = (support::unique("h-slow"), support::unique("g-slow"));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("handled.jsonl");
    let ended = dir.path().join("ended");
    create_topic(&b, &topic, 1);
    produce_with(&b, &topic, &numbered("w", 3000), &["--batch-size", "1000"]);
    let handler = python_handler(
        dir.path(),
        "slow.py",
        r#"
import sys, time
f = open(sys.argv[1], "a")
for line in sys.stdin:
    time.sleep(0.005)
    f.write(line)
    f.flush()
    sys.stdout.write("ok\n")
    sys.stdout.flush()
open(sys.argv[2], "a").write("read to EOF\n")
"#,
        &format!("{} {}", file.display(), ended.display()),
    );
    let spec = Run::new(&topic, &group).exec(&handler).state(dir.path());
    let mut run = spec.spawn();
    wait_for(LONG, "500 records handled", || {
        (read_seen(&file).len() >= 500).then_some(())
    });
    let stop = Instant::now();
    run.signal(Signal::SIGTERM);
    assert_eq!(code(run.wait(Duration::from_secs(30))), Some(0));
    eprintln!("stop took {:?}", stop.elapsed());
    assert!(
        std::fs::read_to_string(&ended).is_ok_and(|t| t.contains("EOF")),
        "the handler drained what it held and ended on its own, not killed"
    );
    let mut run = spec.spawn_as("restart");
    wait_for(Duration::from_secs(120), "every record handled", || {
        (tally(&read_seen(&file)).distinct >= 3000).then_some(())
    });
    run.signal(Signal::SIGTERM);
    assert_eq!(code(run.wait(Duration::from_secs(30))), Some(0));
    assert_eq!(tally(&read_seen(&file)).duplicates, 0);
}

/// Smaller ones: a missing state directory is made (private) and status
/// finds the run; a handler that cannot be found is a configuration error
/// (exit 2, so that systemd does not retry it).
#[test]
fn a_missing_state_directory_is_made_and_a_missing_handler_exits_2() {
    let b = support::brokers();
    let (topic, group) = (support::unique("h-small"), support::unique("g-small"));
    let dir = tempfile::tempdir().unwrap();
    create_topic(&b, &topic, 1);
    let state = dir.path().join("not/yet/there");
    let mut run = Run::new(&topic, &group)
        .exec("cat >/dev/null")
        .state(&state)
        .spawn();
    wait_members(&state, &group, &topic, 1, LONG);
    let mode = std::fs::metadata(&state).map(|m| {
        use std::os::unix::fs::PermissionsExt;
        m.permissions().mode() & 0o777
    });
    assert_eq!(mode.ok(), Some(0o700));
    let v = support::status_json(&state, &b, &group, &topic);
    assert_eq!(v["supervisor"]["pid"], run.pid(), "{v}");
    run.signal(Signal::SIGTERM);
    assert_eq!(code(run.wait(Duration::from_secs(30))), Some(0));

    let started = Instant::now();
    let mut run = Run::new(&topic, &support::unique("g-missing"))
        .workers(2)
        .exec("/nonexistent/handler")
        .state(dir.path())
        .spawn();
    let st = run.wait(LONG);
    assert_eq!(code(st), Some(2), "{}", run.stderr_text());
    assert!(started.elapsed() < Duration::from_secs(30));
    assert!(run.stderr_text().contains("/nonexistent/handler"));
}

/// Acknowledges in groups of 20, as `mawk` reading a pipe does (it waits for
/// a full buffer); writes each record down as it arrives.
const GROUPED_ACKS: &str = r#"
import sys
seen = open(sys.argv[1], "a")
held = 0
for line in sys.stdin:
    seen.write(line); seen.flush()
    held += 1
    if held == 20:
        sys.stdout.write("ok\n" * held); sys.stdout.flush()
        held = 0
"#;

/// A handler that acknowledges in groups holds its last records at a
/// rebalance until the drain bound (0.75 of the 10 s rebalance timeout)
/// runs out: longer than Kafka's 6 s session. The member stopped
/// heartbeating at the rebalance, so the coordinator dropped it, the group
/// formed without it, and its rejoin revoked the other member, which then
/// drained as long: two members evicting each other in turn for ever (found
/// by the benchmark's failover groups on Kafka). Heartbeats now go on while
/// a member drains, so the group settles in one rebalance.
#[test]
fn a_drain_longer_than_the_session_keeps_the_member() {
    let b = support::brokers();
    let (topic, group) = (support::unique("h-drain"), support::unique("g-drain"));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("arrived.jsonl");
    create_topic(&b, &topic, 2);
    let handler = python_handler(
        dir.path(),
        "grouped.py",
        GROUPED_ACKS,
        &file.display().to_string(),
    );
    let mut run = Run::new(&topic, &group)
        .exec(&handler)
        .args(["--session-timeout", "6s", "--hang-timeout", "5m"])
        .state(dir.path())
        .spawn();
    wait_members(dir.path(), &group, &topic, 1, LONG);
    // Fewer records than a group of acknowledgements: the handler holds them.
    produce_with(&b, &topic, &numbered("held", 5), &[]);
    wait_for(LONG, "5 records at the handler", || {
        (read_lines(&file).len() >= 5).then_some(())
    });
    kill(Pid::from_raw(run.pid()), Signal::SIGTTIN).unwrap();
    let t0 = Instant::now();
    // One rebalance: about 7.5 s of drain, then the join.
    std::thread::sleep(Duration::from_secs(15));
    let settled = |what: &str| {
        let s = run_state(dir.path(), &group, &topic).expect("state file");
        let owners: Vec<(Option<i32>, usize)> = s
            .workers
            .iter()
            .map(|w| (w.generation, w.partitions.len()))
            .collect();
        assert!(
            owners.len() == 2 && owners.iter().all(|&(g, n)| g == owners[0].0 && n == 1),
            "{what} ({:?} after the TTIN): workers (generation, partitions) {owners:?}, not one partition each in one generation\n{}",
            t0.elapsed(),
            run.stderr_text()
        );
        owners[0].0
    };
    let generation = settled("settled");
    // And it stays so: no member drops out and rejoins.
    while t0.elapsed() < Duration::from_secs(30) {
        assert_eq!(
            settled("still settled"),
            generation,
            "{}",
            run.stderr_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    run.signal(Signal::SIGTERM);
    assert_eq!(code(run.wait(Duration::from_secs(30))), Some(0));
}
