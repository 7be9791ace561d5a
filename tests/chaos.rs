//! Chaos under `kswarm run`: numbered records produced all along, SIGKILL of
//! random workers and handler processes every 0.5-2 s for 30 s, one SIGKILL
//! of the supervisor (and a fresh start), then let it finish. The handler
//! misbehaves too: it ignores SIGTERM, keeps running after EOF, and
//! acknowledges in bursts.
//!
//! What must hold (and is asserted, so that a storm, a quiet run or a
//! lossy one fails):
//! - enough kills of each kind happened, and records still flowed when the
//!   chaos ended;
//! - every id was handled; first deliveries of a partition in offset order;
//! - after the final TERM the committed offsets are the end of every
//!   partition, and every offset below them was handled;
//! - duplicates stay within what the kills can redeliver: per kill, the
//!   in-flight window (--max-in-flight) plus one commit interval of records.
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use rand::{Rng, SeedableRng};
use support::{
    committed, create_topic, descendants, numbered, processes_with, produce_with, py, read_seen,
    tally, wait_for, Run,
};

/// Records before the chaos, and produced during it (in steps).
const BEFORE: usize = 40_000;
const DURING: usize = 160_000;
/// The producer's steps: past the end of the chaos, so that records still
/// flow when it ends.
const STEPS: usize = 40;
const CHAOS: Duration = Duration::from_secs(30);
/// The in-flight window and commit interval of the run, for the bound.
const MAX_IN_FLIGHT: usize = 2_000;
const COMMIT_INTERVAL_MS: u64 = 200;

/// A worker process: `kswarm spawned --slot N` (its settings come on fd 4).
fn is_worker(pid: i32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| c.split(|&b| b == 0).nth(1) == Some(b"spawned".as_slice()))
        .unwrap_or(false)
}

/// The handler: appends each record to the file, acknowledges in bursts of
/// 1-50 records, ignores SIGTERM, and stays after EOF until killed.
const HANDLER: &str = r#"
import os, random, signal, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
f = open(sys.argv[1], "ab")
rest = b""
while True:
    chunk = os.read(0, 65536)
    if not chunk:
        break
    lines = (rest + chunk).split(b"\n")
    rest = lines.pop()
    owed, burst = 0, random.randint(1, 50)
    for line in lines:
        time.sleep(0.0001)
        f.write(line + b"\n")
        f.flush()
        owed += 1
        if owed >= burst:
            os.write(1, b"ok\n" * owed)
            owed, burst = 0, random.randint(1, 50)
    if owed:
        os.write(1, b"ok\n" * owed)
while True:
    time.sleep(1)
"#;

#[test]
fn chaos_under_run_loses_nothing_and_duplicates_within_the_window() {
    let b = support::brokers();
    let (topic, group) = (support::unique("chaos"), support::unique("g-chaos"));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("handled.jsonl");
    create_topic(&b, &topic, 2);
    produce_with(
        &b,
        &topic,
        &numbered("c", BEFORE),
        &["--batch-size", "1000"],
    );
    let script = dir.path().join("handler.py");
    std::fs::write(&script, HANDLER).unwrap();
    let handler = format!("{} {} {}", py(), script.display(), file.display());
    let state = dir.path().join("state");
    let start_run = |n: u32| {
        let mut run = Run::new(&topic, &group)
            .name(&format!("kswarm run #{n}"))
            .brokers(&b)
            .workers(2)
            .exec(&handler)
            .flag("--commit-interval", format!("{COMMIT_INTERVAL_MS}ms"))
            .flag("--max-in-flight", MAX_IN_FLIGHT.to_string())
            .args(["--shutdown-timeout", "3s", "--max-restarts", "1000/60s"])
            .state(&state);
        if let Ok(level) = std::env::var("KSWARM_CHAOS_LOG") {
            run = run.flag("--log-level", level);
        }
        run.spawn()
    };
    let mut sup = start_run(0);
    wait_for(Duration::from_secs(90), "records to be handled", || {
        (read_seen(&file).len() > 1000).then_some(())
    });

    // Records keep coming during the chaos.
    let producing = Arc::new(AtomicBool::new(true));
    let producer = {
        let (b, topic, producing) = (b.clone(), topic.clone(), producing.clone());
        std::thread::spawn(move || {
            let step = DURING / STEPS;
            for i in 0..STEPS {
                let mut lines = String::new();
                for j in 0..step {
                    lines.push_str(&format!("c-{}\n", BEFORE + i * step + j));
                }
                produce_with(&b, &topic, &lines, &["--batch-size", "1000"]);
                std::thread::sleep(Duration::from_millis(900));
            }
            producing.store(false, Ordering::SeqCst);
        })
    };

    let seed: u64 = rand::random();
    eprintln!("chaos seed {seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let (mut workers_killed, mut handlers_killed, mut no_victim) = (0usize, 0usize, 0usize);
    let mut supervisor_killed = false;
    let mut flow_marks = Vec::new();
    let t0 = Instant::now();
    while t0.elapsed() < CHAOS {
        std::thread::sleep(Duration::from_millis(rng.gen_range(500..2000)));
        flow_marks.push((t0.elapsed(), tally(&read_seen(&file)).distinct));
        if !supervisor_killed && t0.elapsed() > CHAOS / 2 {
            supervisor_killed = true;
            sup.signal(Signal::SIGKILL);
            sup.wait(Duration::from_secs(5));
            // No worker or handler outlives the supervisor.
            wait_for(
                Duration::from_secs(10),
                "no orphans of the killed supervisor",
                || {
                    let mut left = processes_with(&topic);
                    left.extend(processes_with(&file.display().to_string()));
                    left.is_empty().then_some(())
                },
            );
            eprintln!("supervisor SIGKILLed at {:?}; no orphans", t0.elapsed());
            sup = start_run(1);
            continue;
        }
        // A victim of the chosen kind; a round without one (a worker just
        // restarting) waits a little for one rather than skipping.
        let kill_worker = rng.gen_bool(0.5);
        let victim = (0..20).find_map(|_| {
            let (workers, handlers): (Vec<i32>, Vec<i32>) = descendants(sup.pid())
                .into_iter()
                .partition(|&p| is_worker(p));
            let pool = if kill_worker { workers } else { handlers };
            if pool.is_empty() {
                std::thread::sleep(Duration::from_millis(100));
                return None;
            }
            Some(pool[rng.gen_range(0..pool.len())])
        });
        let Some(victim) = victim else {
            no_victim += 1;
            continue;
        };
        let _ = kill(Pid::from_raw(victim), Signal::SIGKILL);
        if kill_worker {
            workers_killed += 1;
        } else {
            handlers_killed += 1;
        }
    }
    let at_end = tally(&read_seen(&file)).distinct;
    eprintln!(
        "chaos over after {:?}: {workers_killed} workers, {handlers_killed} handler processes, supervisor once, {no_victim} rounds without a victim; {at_end} distinct handled",
        t0.elapsed()
    );
    assert!(workers_killed >= 4, "only {workers_killed} workers killed");
    assert!(
        handlers_killed >= 4,
        "only {handlers_killed} handler processes killed"
    );
    assert!(no_victim <= 3, "{no_victim} rounds found nothing to kill");
    // Records were still flowing in the last quarter of the chaos: the
    // chaos hit a busy group, not a finished one.
    let late: Vec<usize> = flow_marks
        .iter()
        .filter(|(t, _)| *t >= CHAOS * 3 / 4)
        .map(|(_, n)| *n)
        .collect();
    assert!(
        late.len() >= 2 && late.last() > late.first() && at_end < BEFORE + DURING,
        "records must still flow at the end of the chaos: {flow_marks:?}"
    );
    producer.join().unwrap();
    assert!(!producing.load(Ordering::SeqCst));

    // Let it finish: every id handled, or no progress for 60 s.
    let total = BEFORE + DURING;
    let (mut last, mut last_change) = (0usize, Instant::now());
    loop {
        let t = tally(&read_seen(&file));
        if t.distinct >= total {
            break;
        }
        if t.distinct != last {
            (last, last_change) = (t.distinct, Instant::now());
        }
        if let Some(st) = sup.try_status() {
            panic!(
                "kswarm run exited ({st:?}) before the end: {}",
                sup.stderr_text()
            );
        }
        if last_change.elapsed() > Duration::from_secs(60) {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_millis(500));
    sup.signal(Signal::SIGTERM);
    let st = sup.wait(Duration::from_secs(30));
    let seen = read_seen(&file);
    let t = tally(&seen);
    let values: BTreeSet<&str> = seen.iter().map(|s| s.value.as_str()).collect();
    let lost: Vec<String> = (0..total)
        .map(|i| format!("c-{i}"))
        .filter(|v| !values.contains(v.as_str()))
        .collect();
    let kills = workers_killed + handlers_killed + 2;
    let per_kill = t.duplicates.checked_div(kills).unwrap_or(0);
    eprintln!(
        "CHAOS RESULT: {} deliveries, {} distinct, lost {}, duplicates {} ({} kills: {per_kill} per kill), out of order {}",
        seen.len(),
        t.distinct,
        lost.len(),
        t.duplicates,
        kills,
        t.out_of_order
    );
    if !lost.is_empty() {
        let keep = std::env::temp_dir().join(format!("kswarm-chaos-{seed}"));
        let _ = std::fs::create_dir_all(&keep);
        let _ = std::fs::copy(&file, keep.join("handled.jsonl"));
        let _ = std::fs::write(keep.join("run-stderr.txt"), sup.stderr_text());
        eprintln!(
            "lost (first 10): {:?}; evidence in {}",
            &lost[..lost.len().min(10)],
            keep.display()
        );
    }
    assert!(lost.is_empty(), "{} records lost", lost.len());
    assert_eq!(
        t.out_of_order, 0,
        "first deliveries of a partition in offset order"
    );
    assert!(
        st.success(),
        "kswarm run after TERM: {st:?}; {}",
        sup.stderr_text()
    );

    // Committed at the end of every partition, and nothing below it skipped.
    let mut ends: BTreeMap<i32, i64> = BTreeMap::new();
    for s in &seen {
        let e = ends.entry(s.partition).or_insert(0);
        *e = (*e).max(s.offset + 1);
    }
    let c = committed(&b, &topic, &group, 2);
    for (p, end) in &ends {
        assert_eq!(
            c.get(p),
            Some(&Some(*end)),
            "partition {p}: committed {c:?}, end {end}"
        );
    }
    let handled: BTreeSet<(i32, i64)> = seen.iter().map(|s| (s.partition, s.offset)).collect();
    for (&p, &end) in &ends {
        let skipped = (0..end).filter(|&o| !handled.contains(&(p, o))).count();
        assert_eq!(
            skipped, 0,
            "partition {p}: offsets below the committed end never handled"
        );
    }
    // Each kill redelivers at most what was in flight plus one commit
    // interval of acknowledged records (at the rate of this machine, well
    // under 10,000 records/s per worker).
    let bound = kills * (MAX_IN_FLIGHT + 10_000 * COMMIT_INTERVAL_MS as usize / 1000);
    assert!(
        t.duplicates <= bound,
        "{} duplicates for {kills} kills: more than the in-flight window and a commit interval each ({bound})",
        t.duplicates
    );
}
