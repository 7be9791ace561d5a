//! What the fleet's tests share: a fleet with fixed timeouts and the
//! longest jitter, and readers of the actions it returns.

use std::time::{Duration, Instant};

use super::*;

pub(super) const MS: Duration = Duration::from_millis(1);

/// When a waiting slot starts next.
pub(super) fn until(s: &Slot) -> Instant {
    match s.state {
        SlotState::Waiting { until, .. } => until,
        ref other => panic!("not waiting: {other:?}"),
    }
}

pub(super) fn slots(n: u32, budget: u32, t0: Instant) -> Fleet {
    Fleet::new(
        n,
        t0,
        Timeouts {
            hang: Duration::from_secs(5),
            join: Duration::from_secs(20),
            stop: Duration::from_secs(12),
            outage: None,
        },
        BackoffPolicy::default(),
        RestartBudget {
            max: budget,
            window: Duration::from_secs(60),
        },
        Box::new(|| 1.0), // longest delay of each attempt
    )
}

pub(super) fn joined(gen: i32, parts: &[i32]) -> Report {
    Report::Joined {
        member_id: format!("m-{gen}"),
        generation: gen,
        partitions: parts.to_vec(),
    }
}

pub(super) fn spawns(a: &[Action]) -> Vec<u32> {
    a.iter()
        .filter_map(|a| match a {
            Action::Spawn { slot } => Some(*slot),
            _ => None,
        })
        .collect()
}

pub(super) fn signals(a: &[Action]) -> Vec<(Pid, Sig)> {
    a.iter()
        .filter_map(|a| match a {
            Action::Signal { pid, sig } => Some((*pid, *sig)),
            _ => None,
        })
        .collect()
}

pub(super) fn exit_of(a: &[Action]) -> Option<Outcome> {
    a.iter().find_map(|a| match a {
        Action::Exit(o) => Some(o.clone()),
        _ => None,
    })
}

pub(super) fn leaves(a: &[Action]) -> Vec<Vec<String>> {
    a.iter()
        .filter_map(|a| match a {
            Action::LeaveTogether { member_ids } => Some(member_ids.clone()),
            _ => None,
        })
        .collect()
}

pub(super) fn evictions(a: &[Action]) -> Vec<(u32, String)> {
    a.iter()
        .filter_map(|a| match a {
            Action::Evict { slot, member_id } => Some((*slot, member_id.clone())),
            _ => None,
        })
        .collect()
}

/// Start all slots with pids 100, 101, ... and join them.
pub(super) fn started(n: u32, budget: u32, t0: Instant) -> Fleet {
    let mut s = slots(n, budget, t0);
    assert_eq!(spawns(&s.tick(t0)), (0..n).collect::<Vec<_>>());
    for i in 0..n {
        s.spawned(i, 100 + i as i32, t0);
    }
    for i in 0..n {
        let a = s.report(i, 100 + i as i32, joined(1, &[i as i32]), t0 + MS);
        let ready = a.contains(&Action::Notify(Notify::Ready));
        assert_eq!(ready, i == n - 1, "READY only once all joined");
    }
    s
}
