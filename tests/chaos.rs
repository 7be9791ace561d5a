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
        .env_remove("RUST_LOG");
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
    let t0 = Instant::now();
    while t0.elapsed() < CHAOS {
        std::thread::sleep(Duration::from_millis(rng.gen_range(500..2000)));
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

    wait_for(Duration::from_secs(120), "every id handled", || {
        let t = tally(&read_seen(&file));
        if sup.try_status().is_some() {
            panic!("kswarm run exited during the run: {}", sup.stderr_text());
        }
        missing(&t.values, "c", RECORDS).is_empty().then_some(())
    });
    std::thread::sleep(Duration::from_millis(500));
    sup.signal(Signal::SIGTERM);
    let st = sup.wait(Duration::from_secs(30));
    let seen = read_seen(&file);
    let t = tally(&seen);
    eprintln!(
        "CHAOS RESULT: {} deliveries, {} distinct, lost {}, duplicates {}, out of order {}",
        seen.len(),
        t.distinct,
        missing(&t.values, "c", RECORDS).len(),
        t.duplicates,
        t.out_of_order
    );
    assert_eq!(t.distinct, RECORDS);
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
