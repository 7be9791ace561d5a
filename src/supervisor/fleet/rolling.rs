//! HUP: a rolling restart. Every worker is replaced, one at a time, each
//! once its predecessor's replacement has joined. The old worker hands its
//! member over (no LeaveGroup, no rebalance) to the new one.

use std::collections::VecDeque;
use std::time::Instant;

use tracing::{info, warn};

use super::{Action, Fleet, Mode, Notify, Pid, Sig, SlotState, StopReason};

/// A rolling restart under way: the slot being replaced now, then the
/// `pending` ones.
#[derive(Debug)]
pub(super) struct Rolling {
    current: Option<Replacing>,
    pending: VecDeque<usize>,
}

/// The slot whose worker is being replaced, and that worker's pid.
#[derive(Debug, Clone, Copy)]
struct Replacing {
    slot: usize,
    old: Pid,
}

impl Fleet {
    /// HUP: replace every worker, one at a time, each once its predecessor's
    /// replacement has joined.
    pub fn rolling_restart(&mut self, now: Instant) -> Vec<Action> {
        match self.mode {
            Mode::Normal => {}
            Mode::Rolling(_) => {
                warn!("HUP ignored: a rolling restart is already running");
                return Vec::new();
            }
            _ => return Vec::new(),
        }
        info!(
            event = "rolling_restart",
            workers = self.target,
            "rolling restart of {} workers (HUP)",
            self.target
        );
        self.mode = Mode::Rolling(Rolling {
            current: None,
            pending: (0..self.target).collect(),
        });
        let mut out = vec![Action::Notify(Notify::Reloading)];
        out.extend(self.advance_rolling(now));
        out
    }

    /// The next step of a rolling restart, if the current one is done.
    pub(super) fn advance_rolling(&mut self, now: Instant) -> Vec<Action> {
        let Mode::Rolling(rolling) = &self.mode else {
            return Vec::new();
        };
        if let Some(current) = rolling.current {
            if !self.replaced(current) {
                return Vec::new();
            }
        }
        match self.replace_next(now) {
            Some(action) => vec![action],
            None => self.rolling_done(),
        }
    }

    /// Whether the slot's old worker is gone and its replacement a member
    /// (or the slot was retired meanwhile).
    fn replaced(&self, r: Replacing) -> bool {
        match self.slots.get(r.slot) {
            None => true,
            Some(s) => match &s.state {
                SlotState::Retired => true,
                SlotState::Member(w, _) => w.pid != r.old,
                _ => false,
            },
        }
    }

    /// Ask the next pending slot's worker to hand over; None when none is left.
    fn replace_next(&mut self, now: Instant) -> Option<Action> {
        let Mode::Rolling(rolling) = &mut self.mode else {
            return None;
        };
        rolling.current = None;
        while let Some(i) = rolling.pending.pop_front() {
            if i >= self.target {
                continue;
            }
            let s = &mut self.slots[i];
            if !s.is_active() {
                continue; // waiting or stopping: it gets a new process anyway
            }
            // The worker stays a member and its replacement takes it over:
            // no LeaveGroup, no rebalance (one mid-join is rejoined under its
            // member id instead).
            let Some(pid) = s.stop(StopReason::Rolling, now + self.timeouts.stop, false) else {
                continue;
            };
            info!(
                event = "worker_replacing",
                slot = i,
                pid,
                "slot {i} pid {pid}: replacing (rolling restart)"
            );
            rolling.current = Some(Replacing { slot: i, old: pid });
            return Some(Action::Signal {
                pid,
                sig: Sig::HandOver,
            });
        }
        None
    }

    fn rolling_done(&mut self) -> Vec<Action> {
        info!(event = "rolling_restart_done", "rolling restart done");
        self.mode = Mode::Normal;
        let mut out = vec![Action::Notify(Notify::Ready)];
        out.extend(self.status());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::super::*;
    use super::Replacing;

    #[test]
    fn a_second_hup_is_ignored_while_one_runs_and_a_replaced_slot_waits_for_its_join() {
        let t0 = Instant::now();
        let mut s = started(1, 10, t0);
        s.rolling_restart(t0);
        assert!(s.rolling_restart(t0).is_empty());
        let r = Replacing { slot: 0, old: 100 };
        assert!(!s.replaced(r), "still handing over");
        s.exited(100, Exit::Code(0), t0 + MS);
        s.spawned(0, 200, t0 + MS);
        assert!(!s.replaced(r), "not joined yet");
        s.report(0, 200, joined(1, &[0]), t0 + 2 * MS);
        assert!(s.replaced(r));
        assert!(!s.is_rolling());
    }

    #[test]
    fn hup_replaces_one_worker_at_a_time() {
        let t0 = Instant::now();
        let mut s = started(2, 10, t0);
        let a = s.rolling_restart(t0);
        assert!(a.contains(&Action::Notify(Notify::Reloading)));
        assert_eq!(signals(&a), vec![(100, Sig::HandOver)]);
        // old one hands over -> immediate replacement as the same member, no
        // budget spent, nobody evicted
        let a = s.exited(100, Exit::Code(0), t0 + MS);
        assert_eq!(spawns(&a), vec![0]);
        assert!(evictions(&a).is_empty(), "{a:?}");
        assert_eq!(
            s.take_inherit(0),
            Some(Inherit::TakeOver(Membership {
                member_id: "m-1".into(),
                generation: 1,
                partitions: vec![0],
            }))
        );
        s.spawned(0, 200, t0 + MS);
        assert!(
            signals(&s.tick(t0 + 2 * MS)).is_empty(),
            "waits for the join"
        );
        let a = s.report(0, 200, joined(1, &[0]), t0 + 3 * MS);
        assert_eq!(signals(&a), vec![(101, Sig::HandOver)]);
        // It joined a new generation just before the signal reached it: the
        // successor takes that one over.
        s.report(1, 101, joined(3, &[1]), t0 + 3 * MS);
        let a = s.exited(101, Exit::Code(0), t0 + 4 * MS);
        assert_eq!(spawns(&a), vec![1]);
        assert!(
            matches!(s.take_inherit(1), Some(Inherit::TakeOver(m)) if m.generation == 3),
            "the newest generation is taken over"
        );
        s.spawned(1, 201, t0 + 4 * MS);
        let a = s.report(1, 201, joined(3, &[1]), t0 + 5 * MS);
        assert!(a.contains(&Action::Notify(Notify::Ready)));
        assert_eq!(s.pids(), vec![200, 201]);
        assert_eq!(s.slots()[0].restarts + s.slots()[1].restarts, 0);
    }

    #[test]
    fn hup_of_a_worker_still_joining_rejoins_under_its_member_id() {
        let t0 = Instant::now();
        let mut s = slots(1, 10, t0);
        s.tick(t0);
        s.spawned(0, 100, t0);
        s.report(
            0,
            100,
            Report::MemberId {
                member_id: "m-x".into(),
            },
            t0,
        );
        let a = s.rolling_restart(t0);
        assert_eq!(signals(&a), vec![(100, Sig::HandOver)]);
        let a = s.exited(100, Exit::Code(0), t0 + MS);
        assert_eq!(spawns(&a), vec![0]);
        assert!(evictions(&a).is_empty(), "{a:?}");
        assert_eq!(s.take_inherit(0), Some(Inherit::Rejoin("m-x".into())));
    }
}
