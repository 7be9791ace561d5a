//! A broker that stops answering (SIGSTOP of the suite's broker, then
//! SIGCONT) is an outage, not a crash loop: kswarm waits it out, and exits 1
//! only past --broker-outage-limit, naming the cause. Before, every worker
//! spent the shared restart budget while the broker could not answer, and
//! kswarm exited 1 with "restart budget spent".
//!
//! This file has one test: it stops the broker every other test uses.
mod support;

use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use support::{
    create_topic, numbered, produce_with, read_seen, tally, wait_for, wait_members, Run,
};

const LONG: Duration = Duration::from_secs(120);

/// The broker, stopped until dropped (a failing test must not leave it so).
struct Stopped(Pid);

impl Stopped {
    fn broker() -> Self {
        let pid = Pid::from_raw(support::broker_pid());
        kill(pid, Signal::SIGSTOP).expect("SIGSTOP the broker");
        Stopped(pid)
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = kill(self.0, Signal::SIGCONT);
    }
}

#[test]
fn a_broker_outage_is_waited_out_and_its_limit_ends_the_run() {
    let b = support::brokers();
    let (topic, group) = (support::unique("o-wait"), support::unique("g-wait"));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("handled.jsonl");
    create_topic(&b, &topic, 4);
    produce_with(&b, &topic, &numbered("o", 4000), &["--batch-size", "500"]);
    let handler = support::slow_appending_handler(&file, 0.001);
    // A small restart budget: workers that die while the broker cannot
    // answer must not spend it.
    let mut run = Run::new(&topic, &group)
        .workers(4)
        .exec(&handler)
        .args(["--max-restarts", "3/60s"])
        .state(dir.path())
        .spawn();
    wait_members(dir.path(), &group, &topic, 4, LONG);
    wait_for(LONG, "500 records handled", || {
        (read_seen(&file).len() >= 500).then_some(())
    });
    let outage = Duration::from_secs(30);
    let stopped = Stopped::broker();
    let t0 = Instant::now();
    while t0.elapsed() < outage {
        assert!(
            run.try_status().is_none(),
            "kswarm exited during the outage: {}",
            run.stderr_text()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    drop(stopped);
    let back = Instant::now();
    produce_with(&b, &topic, &numbered("after", 1000), &[]);
    wait_for(LONG, "every record, old and new, handled", || {
        let t = tally(&read_seen(&file));
        (t.distinct >= 5000).then_some(())
    });
    eprintln!(
        "records flow again; all handled {:?} after the broker came back",
        back.elapsed()
    );
    run.signal(Signal::SIGTERM);
    let st = run.wait(Duration::from_secs(30));
    assert_eq!(st.code(), Some(0), "{}", run.stderr_text());
    let t = tally(&read_seen(&file));
    assert_eq!((t.distinct, t.out_of_order), (5000, 0));
    eprintln!("duplicates after a {outage:?} outage: {}", t.duplicates);

    // With a limit, an outage past it ends the run with 1 and says why.
    let group = support::unique("g-limit");
    let mut run = Run::new(&topic, &group)
        .name("kswarm run (limit)")
        .exec("cat >/dev/null")
        .args(["--broker-outage-limit", "10s"])
        .state(dir.path())
        .spawn();
    wait_members(dir.path(), &group, &topic, 1, LONG);
    let stopped = Stopped::broker();
    let st = run.wait(Duration::from_secs(90));
    drop(stopped);
    let err = run.stderr_text();
    assert_eq!(st.code(), Some(1), "{err}");
    let last = support::last_error(&err);
    assert!(
        last.contains("--broker-outage-limit"),
        "names the limit: {last}"
    );
    assert!(last.contains(&b), "names the brokers: {last}");
    // A broker paused past its session is fenced for a moment when it
    // resumes (no controller, no leaders): sizing a topic then waits it out.
    create_topic(&b, &support::unique("o-after"), 2);
}
