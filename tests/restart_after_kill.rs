//! A `kswarm run` started right after a SIGKILLed one (a systemd restart
//! after a crash) sizes the topic for this host alone: the killed run's
//! members, still in the group until their sessions end, are this host's,
//! whatever the broker says of their client ids. tansu reports client ids
//! kswarm cannot read, so without the state file's member ids they counted
//! as foreign consumers: `-p auto` wanted twice the partitions, and tansu,
//! which cannot grow a topic, made the new run exit 1. Kafka and tansu.
mod support;

use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use support::{brokers, status_json, unique, wait_run_members, Run};

#[test]
fn a_run_right_after_a_sigkilled_one_sizes_for_this_host_and_starts() {
    let (topic, group) = (unique("rak"), unique("g-rak"));
    let dir = tempfile::tempdir().unwrap();
    // -w 2 -p auto: the first run creates the topic with 2 partitions.
    let run = || {
        Run::new(&topic, &group)
            .workers(2)
            .partitions("auto")
            .state(dir.path())
    };
    let first = run().name("first run").spawn();
    wait_run_members(
        &first,
        dir.path(),
        &group,
        &topic,
        2,
        Duration::from_secs(90),
    );

    // The whole tree at once: supervisor and workers, no goodbye.
    let mut tree = support::descendants(first.pid());
    tree.push(first.pid());
    for p in &tree {
        let _ = kill(Pid::from_raw(*p), Signal::SIGKILL);
    }
    support::wait_for(Duration::from_secs(10), "the killed tree gone", || {
        tree.iter().all(|p| !support::alive(*p)).then_some(())
    });
    // The killed members are still in the group (their sessions run on):
    // what the next run finds. (tansu names them with client ids kswarm
    // cannot read: no `kswarm-` prefix.)
    let before = status_json(dir.path(), &brokers(), &group, &topic);
    eprintln!("the group after the kill: {}", before["members"]);
    if let Some(members) = before["members"].as_array() {
        assert_eq!(members.len(), 2, "{before}");
    }

    let mut second = run().name("second run").spawn();
    // Its own state file (the killed run's names 2 joined workers too).
    support::wait_for(
        Duration::from_secs(90),
        "the second run's 2 workers joined",
        || {
            if let Some(st) = second.try_status() {
                panic!("the second run ended ({st}):\n{}", second.stderr_text());
            }
            let s = support::run_state(dir.path(), &group, &topic)?;
            let joined = s.workers.iter().filter(|w| w.generation.is_some()).count();
            (s.pid as i32 == second.pid() && joined == 2).then_some(())
        },
    );
    let log = second.stderr_text();
    assert!(
        log.contains(&format!("left topic '{topic}' as it is, 2 partitions")),
        "the second run sized for more than this host's 2 workers:\n{log}"
    );
    assert!(
        !log.contains("more worker(s) on other hosts") && !log.contains("grew topic"),
        "{log}"
    );
    let after = status_json(dir.path(), &brokers(), &group, &topic);
    assert_eq!(after["partitions"].as_array().unwrap().len(), 2, "{after}");
    assert_eq!(
        support::stop(&mut second),
        Some(0),
        "{}",
        second.stderr_text()
    );
}
