//! Chaos under `kswarm run`: 200k numbered records, SIGKILL of random workers
//! and handlers every 0.5-2 s for 30 s, one SIGKILL of the supervisor (and a
//! fresh start), then let it finish. Every id must be handled at least once,
//! first deliveries of each partition in offset order; duplicates are counted.
mod common;
mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use rand::{Rng, SeedableRng};
use support::{
    create_topic, descendants, missing, numbered, produce_with, read_seen, slow_appending_handler,
    tally, wait_for, Proc,
};

const RECORDS: usize = 200_000;
const CHAOS: Duration = Duration::from_secs(30);

fn is_worker(pid: i32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| c.split(|&b| b == 0).nth(1) == Some(b"worker".as_slice()))
        .unwrap_or(false)
}

/// Processes whose command line mentions `needle` (left-overs of a killed supervisor).
fn processes_mentioning(needle: &str) -> Vec<i32> {
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

// It used to wedge the group on tansu in about 1 run of 5 (3 of 8 with
// KSWARM_CHAOS_PAUSE_MS=100-700): a worker whose handler was killed sent
// LeaveGroup while the group was forming, and tansu keeps such a leader for
// good. Workers no longer leave on a handler failure and replacements join
// under their predecessor's member id (see README, failover).
#[test]
fn chaos_under_run_loses_nothing() {
    let b = common::brokers();
    let (topic, group) = (common::unique("chaos"), common::unique("g-chaos"));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("handled.jsonl");
    create_topic(&b, &topic, 2);
    produce_with(
        &b,
        &topic,
        &numbered("c", RECORDS),
        &["--batch-size", "1000"],
    );
    // ~4k records/s per handler: the stream lasts past the chaos.
    let handler = slow_appending_handler(&file, 0.0002);
    let start_run = |n: u32| {
        let mut cmd = Command::new(common::kswarm_bin());
        cmd.args([
            "run", "-b", &b, "-t", &topic, "-g", &group, "-w", "2", "-p", "2",
        ])
        .args(["--exec", &handler])
        .args(["--session-timeout", "6s", "--commit-interval", "200ms"])
        .args(["--shutdown-timeout", "5s", "--max-restarts", "1000/60s"])
        .env_remove("RUST_LOG")
        .env("KSWARM_STATE_DIR", common::state_dir());
        if let Ok(level) = std::env::var("KSWARM_CHAOS_LOG") {
            cmd.args(["--log-level", &level]);
        }
        Proc::spawn(&format!("kswarm run #{n}"), cmd, None)
    };
    let mut sup = start_run(0);
    wait_for(Duration::from_secs(60), "records to be handled", || {
        (read_seen(&file).len() > 1000).then_some(())
    });

    let seed: u64 = rand::random();
    eprintln!("chaos seed {seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let (mut workers_killed, mut handlers_killed) = (0, 0);
    let mut supervisor_killed = false;
    let mut earlier_stderr = String::new();
    let t0 = Instant::now();
    // KSWARM_CHAOS_PAUSE_MS=LO-HI: a harsher (or gentler) kill cadence, for hunting bugs.
    let pause = std::env::var("KSWARM_CHAOS_PAUSE_MS")
        .ok()
        .and_then(|v| {
            let (lo, hi) = v.split_once('-')?;
            Some(lo.parse::<u64>().ok()?..hi.parse::<u64>().ok()?)
        })
        .unwrap_or(500..2000);
    while t0.elapsed() < CHAOS {
        std::thread::sleep(Duration::from_millis(rng.gen_range(pause.clone())));
        if !supervisor_killed && t0.elapsed() > CHAOS / 2 {
            supervisor_killed = true;
            sup.signal(Signal::SIGKILL);
            sup.wait(Duration::from_secs(5));
            // PDEATHSIG: no worker or handler outlives the supervisor.
            wait_for(
                Duration::from_secs(10),
                "no orphans of the killed supervisor",
                || {
                    let mut left = processes_mentioning(&topic);
                    left.extend(processes_mentioning(&file.display().to_string()));
                    left.is_empty().then_some(())
                },
            );
            eprintln!("supervisor SIGKILLed at {:?}; no orphans", t0.elapsed());
            earlier_stderr = sup.stderr_text();
            sup = start_run(1);
            continue;
        }
        let all = descendants(sup.pid());
        let (workers, handlers): (Vec<i32>, Vec<i32>) =
            all.into_iter().partition(|&p| is_worker(p));
        let kill_worker = rng.gen_bool(0.5);
        let pool = if kill_worker { &workers } else { &handlers };
        if pool.is_empty() {
            continue;
        }
        let victim = pool[rng.gen_range(0..pool.len())];
        let _ = kill(Pid::from_raw(victim), Signal::SIGKILL);
        if kill_worker {
            workers_killed += 1;
        } else {
            handlers_killed += 1;
        }
    }
    eprintln!(
        "chaos over after {:?}: {workers_killed} workers, {handlers_killed} handler processes, supervisor once; {} deliveries so far",
        t0.elapsed(),
        read_seen(&file).len()
    );

    // Let it finish: every id handled, or no progress for 60 s.
    let (mut last, mut last_change) = (0usize, Instant::now());
    loop {
        let t = tally(&read_seen(&file));
        if missing(&t.values, "c", RECORDS).is_empty() {
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
    let lost = missing(&t.values, "c", RECORDS);
    eprintln!(
        "CHAOS RESULT: {} deliveries, {} distinct, lost {}, duplicates {}, out of order {}",
        seen.len(),
        t.distinct,
        lost.len(),
        t.duplicates,
        t.out_of_order
    );
    if !lost.is_empty() {
        let keep = std::env::temp_dir().join(format!("kswarm-chaos-{seed}"));
        let _ = std::fs::create_dir_all(&keep);
        let _ = std::fs::copy(&file, keep.join("handled.jsonl"));
        let _ = std::fs::write(keep.join("run-stderr.txt"), sup.stderr_text());
        let _ = std::fs::write(keep.join("run0-stderr.txt"), &earlier_stderr);
        let _ = std::fs::write(keep.join("lost.txt"), lost.join("\n"));
        eprintln!(
            "lost ids (first 10): {:?}; evidence kept in {}",
            &lost[..lost.len().min(10)],
            keep.display()
        );
    }
    // Safety, whatever the liveness: no offset below the committed one was
    // skipped (a commit never runs ahead of the handler).
    let committed = support::committed(&b, &topic, &group, 2);
    let handled: std::collections::BTreeSet<(i32, i64)> =
        seen.iter().map(|s| (s.partition, s.offset)).collect();
    let mut skipped = 0;
    for (&p, c) in &committed {
        skipped += (0..c.unwrap_or(0))
            .filter(|&o| !handled.contains(&(p, o)))
            .count();
    }
    eprintln!("CHAOS SAFETY: committed {committed:?}; committed but never handled: {skipped}");
    assert_eq!(skipped, 0, "records committed without being handled: lost");
    assert_eq!(
        t.distinct, RECORDS,
        "not every record was handled (lost or never delivered; see the run's log)"
    );
    assert_eq!(
        t.out_of_order, 0,
        "first deliveries of a partition in offset order"
    );
    assert!(
        st.success(),
        "kswarm run after TERM: {st:?}; {}",
        sup.stderr_text()
    );
}
