//! `--group-protocol consumer` (KIP-848) on Apache Kafka: a SIGKILLed
//! worker is taken over as the same member (nothing moves, nothing is lost),
//! and a classic group converts to the consumer protocol and back while
//! kswarm runs in both, with nothing lost or handled twice. Peers of other
//! clients in consumer-protocol groups: tests/interop.rs; the refusal on a
//! broker without the protocol: tests/interop.rs on tansu.
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use support::{
    appending_handler, committed, create_topic, ends_all, missing, numbered, produce, read_seen,
    run_state, slow_appending_handler, tally, wait_for, wait_run_members, Run, Seen,
};

const LONG: Duration = Duration::from_secs(90);

/// Every record PREFIX-0..n in the files, then all that was handled.
fn wait_handled(files: &[&Path], prefix: &str, n: usize) -> Vec<Seen> {
    wait_for(LONG, &format!("{n} records {prefix}-* handled"), || {
        let seen: Vec<Seen> = files.iter().flat_map(|f| read_seen(f)).collect();
        missing(&tally(&seen).values, prefix, n)
            .is_empty()
            .then_some(())
    });
    files.iter().flat_map(|f| read_seen(f)).collect()
}

/// (slot -> (member id, partitions)) of a run, once every worker is a member.
fn members(state: &Path, group: &str, topic: &str) -> Option<BTreeMap<u32, (String, Vec<i32>)>> {
    let s = run_state(state, group, topic)?;
    s.workers
        .iter()
        .map(|w| {
            w.generation?;
            Some((w.slot, (w.member_id.clone()?, w.partitions.clone())))
        })
        .collect()
}

/// `kswarm status --json` of a group: the members the broker describes.
fn described_members(group: &str, topic: &str) -> Vec<serde_json::Value> {
    let v = support::status_json(&support::state_dir(), &support::brokers(), group, topic);
    v["members"].as_array().cloned().unwrap_or_default()
}

#[test]
fn a_sigkilled_worker_is_taken_over_as_the_same_member() {
    let b = support::brokers();
    let (topic, group) = (support::unique("cp-kill"), support::unique("g-cp-kill"));
    let dir = tempfile::tempdir().unwrap();
    let (state, file) = (dir.path().join("state"), dir.path().join("handled.jsonl"));
    std::fs::create_dir_all(&state).unwrap();
    create_topic(&b, &topic, 4);
    let n = 20_000;
    produce(&b, &topic, &numbered("k", n));
    let handler = slow_appending_handler(&file, 0.0002);
    let mut run = Run::new(&topic, &group)
        .workers(2)
        .protocol("consumer")
        .format("json")
        .exec(&handler)
        .state(&state)
        .spawn();
    wait_run_members(&run, &state, &group, &topic, 2, LONG);
    // The broker splits the partitions 2 and 2 (an incremental move of two).
    let before = wait_for(LONG, "2 partitions per worker", || {
        let m = members(&state, &group, &topic)?;
        m.values().all(|(_, p)| p.len() == 2).then_some(m)
    });
    wait_for(LONG, "some records handled", || {
        (read_seen(&file).len() >= 2000).then_some(())
    });
    // Slot 0 by its number: the state file leaves out a slot with no process
    // (between the kill and the restart), so workers[0] may be slot 1 then.
    let slot0 =
        |s: &kswarm::state_file::SupervisorState| s.workers.iter().find(|w| w.slot == 0).cloned();
    let victim = slot0(&run_state(&state, &group, &topic).unwrap())
        .expect("slot 0 runs")
        .pid as i32;
    let t0 = Instant::now();
    kill(Pid::from_raw(victim), Signal::SIGKILL).unwrap();
    let after = wait_for(LONG, "slot 0 replaced and a member again", || {
        let w = slot0(&run_state(&state, &group, &topic)?)?;
        (w.pid as i32 != victim && w.generation.is_some())
            .then(|| members(&state, &group, &topic))?
    });
    let took = t0.elapsed();
    assert_eq!(
        after, before,
        "the replacement carries on as the same member with the same partitions, and nothing moved"
    );
    let members_now = described_members(&group, &topic);
    assert_eq!(members_now.len(), 2, "no third member: {members_now:?}");

    let seen = wait_handled(&[&file], "k", n);
    let t = tally(&seen);
    assert_eq!(
        t.out_of_order, 0,
        "first deliveries in offset order per partition"
    );
    assert_eq!(t.distinct, n);
    assert_eq!(support::stop(&mut run), Some(0), "{}", run.stderr_text());
    assert_eq!(
        committed(&b, &topic, &group, 4),
        ends_all(&read_seen(&file), 4)
    );
    let err = run.stderr_text();
    assert!(err.contains("takes over member"), "{err}");
    eprintln!(
        "SIGKILL -> slot 0 a member again in {took:?}; {} duplicates (records the dead worker's handler held)",
        t.duplicates
    );
}

/// A classic group of kswarm workers; a second kswarm joins it with the
/// consumer protocol (Kafka converts the group online: its classic members
/// stay, the broker assigns); then the consumer-protocol run stops and the
/// group is classic again. Three batches, each across a change of owners:
/// nothing lost, nothing handled twice, and the end committed.
#[test]
fn a_classic_group_converts_to_the_consumer_protocol_and_back() {
    let b = support::brokers();
    let (topic, group) = (support::unique("cp-conv"), support::unique("g-cp-conv"));
    let dir = tempfile::tempdir().unwrap();
    let (state_a, state_b) = (dir.path().join("a"), dir.path().join("b"));
    std::fs::create_dir_all(&state_a).unwrap();
    std::fs::create_dir_all(&state_b).unwrap();
    let (file_a, file_b) = (dir.path().join("a.jsonl"), dir.path().join("b.jsonl"));
    create_topic(&b, &topic, 4);
    let (ha, hb) = (appending_handler(&file_a), appending_handler(&file_b));
    let common = Run::new(&topic, &group).workers(2).format("json");

    let mut classic = common
        .clone()
        .name("classic run")
        .exec(&ha)
        .state(&state_a)
        .spawn();
    wait_run_members(&classic, &state_a, &group, &topic, 2, LONG);
    produce(&b, &topic, &numbered("a", 2000));
    wait_handled(&[&file_a], "a", 2000);

    let mut consumer = common
        .name("consumer run")
        .protocol("consumer")
        .exec(&hb)
        .state(&state_b)
        .spawn();
    // All four workers own a partition each.
    wait_for(LONG, "4 members with a partition each", || {
        let (a, c) = (
            members(&state_a, &group, &topic)?,
            members(&state_b, &group, &topic)?,
        );
        let owned: BTreeSet<i32> = a
            .values()
            .chain(c.values())
            .flat_map(|(_, p)| p.clone())
            .collect();
        (a.values().chain(c.values()).all(|(_, p)| p.len() == 1) && owned.len() == 4).then_some(())
    });
    let described = described_members(&group, &topic);
    assert_eq!(
        described.len(),
        4,
        "the broker describes all four members: {described:?}"
    );
    produce(&b, &topic, &numbered("b", 4000));
    let seen = wait_handled(&[&file_a, &file_b], "b", 4000);
    assert!(
        !read_seen(&file_b).is_empty(),
        "the consumer-protocol run handled records of batch b"
    );

    // The consumer-protocol members leave: the classic ones take over.
    assert_eq!(
        support::stop(&mut consumer),
        Some(0),
        "{}",
        consumer.stderr_text()
    );
    wait_for(LONG, "the classic run owns every partition again", || {
        let a = members(&state_a, &group, &topic)?;
        let owned: BTreeSet<i32> = a.values().flat_map(|(_, p)| p.clone()).collect();
        (owned.len() == 4).then_some(())
    });
    produce(&b, &topic, &numbered("c", 2000));
    wait_handled(&[&file_a, &file_b], "c", 2000);
    assert_eq!(
        support::stop(&mut classic),
        Some(0),
        "{}",
        classic.stderr_text()
    );

    let all: Vec<Seen> = read_seen(&file_a)
        .into_iter()
        .chain(read_seen(&file_b))
        .collect();
    let t = tally(&all);
    assert_eq!(
        t.duplicates, 0,
        "every move started at the old owner's commit"
    );
    assert_eq!(
        t.distinct,
        8000,
        "{} handled of 8000 ({} seen in b)",
        t.distinct,
        seen.len()
    );
    assert_eq!(committed(&b, &topic, &group, 4), ends_all(&all, 4));
}
