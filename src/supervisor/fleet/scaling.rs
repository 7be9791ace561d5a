//! TTIN/TTOU: one worker more or less, as gunicorn does. Signals are
//! counted and carried out one step at a time, each once the group is
//! stable (a member that leaves while the group rebalances can wedge it).

use std::time::Instant;

use tracing::{info, warn};

use super::{Action, Fleet, Mode, Sig, Slot, SlotState, StopReason};

/// TTIN/TTOU asked for and not yet carried out: one change at a time, each
/// once the group is stable (see [`Fleet::settled`]).
#[derive(Debug, Default)]
pub(super) struct Scaling {
    /// +1 per TTIN, -1 per TTOU.
    pub pending: i64,
    /// The last step taken.
    last_step: Option<Step>,
}

/// A scaling step: the group's generation when it began, and when.
#[derive(Debug, Clone, Copy)]
struct Step {
    generation: i32,
    at: Instant,
}

impl Fleet {
    /// TTIN: one worker more, once the group is stable (see [`Fleet::settled`]).
    pub fn grow(&mut self, now: Instant) -> Vec<Action> {
        if self.is_shutting_down() {
            return Vec::new();
        }
        self.scaling.pending += 1;
        self.log_scale_request("TTIN");
        self.advance_scaling(now)
    }

    /// TTOU: one worker less (never below one), once the group is stable.
    pub fn shrink(&mut self, now: Instant) -> Vec<Action> {
        if self.is_shutting_down() {
            return Vec::new();
        }
        if self.wanted() <= 1 {
            warn!("TTOU ignored: kswarm keeps at least one worker");
            return Vec::new();
        }
        self.scaling.pending -= 1;
        self.log_scale_request("TTOU");
        self.advance_scaling(now)
    }

    fn log_scale_request(&self, signal: &str) {
        let wanted = self.wanted();
        if self.scaling.pending == 0 {
            info!("{signal}: back to {wanted} workers as they are now");
        } else {
            info!(
                "{signal}: {wanted} workers wanted (now {}); changing one at a time, each once the group is stable",
                self.target
            );
        }
    }

    /// Whether the group is stable enough for the next scaling step: every
    /// wanted slot has a member, no removed one is still stopping, and all
    /// share one generation newer than the last step's (a member that left
    /// or joined starts a rebalance that the others see only at their next
    /// heartbeat). A step that brings no new generation within the join
    /// allowance does not block the next one for ever.
    fn settled(&self, now: Instant) -> bool {
        let (wanted, rest) = self.slots.split_at(self.target.min(self.slots.len()));
        if wanted.len() < self.target || rest.iter().any(|s| s.state != SlotState::Retired) {
            return false;
        }
        let mut gens = wanted.iter().map(|s| s.membership().map(|m| m.generation));
        let Some(Some(first)) = gens.next() else {
            return false;
        };
        if !gens.all(|g| g == Some(first)) {
            return false;
        }
        match self.scaling.last_step {
            None => true,
            Some(step) => {
                first > step.generation
                    || now.saturating_duration_since(step.at) > self.timeouts.join
            }
        }
    }

    /// Carry out the next TTIN or TTOU if the group is stable.
    pub(super) fn advance_scaling(&mut self, now: Instant) -> Vec<Action> {
        if self.scaling.pending == 0 || !matches!(self.mode, Mode::Normal) || !self.settled(now) {
            return Vec::new();
        }
        let generation = self
            .slots
            .iter()
            .filter_map(|s| s.membership().map(|m| m.generation))
            .max()
            .unwrap_or(-1);
        self.scaling.last_step = Some(Step {
            generation,
            at: now,
        });
        if self.scaling.pending > 0 {
            self.scaling.pending -= 1;
            self.grow_one(now)
        } else {
            self.scaling.pending += 1;
            self.shrink_one(now)
        }
    }

    /// One worker more, now.
    fn grow_one(&mut self, now: Instant) -> Vec<Action> {
        self.target += 1;
        let i = self.target - 1;
        info!(
            event = "worker_added",
            workers = self.target,
            "adding a worker (TTIN): now {} workers",
            self.target
        );
        if i >= self.slots.len() {
            self.slots.push(Slot::new(now));
        } else {
            let s = &mut self.slots[i];
            match s.state {
                SlotState::Retired => {
                    s.attempt = 0;
                    s.wait(now, None);
                }
                // still leaving after a TTOU: start a new one when it is gone
                SlotState::Stopping { .. } => s.restop(StopReason::Rolling),
                _ => {}
            }
        }
        let mut out = self.due(now);
        out.extend(self.status());
        out
    }

    /// One worker less (never below one), now: the highest slot stops gracefully.
    fn shrink_one(&mut self, now: Instant) -> Vec<Action> {
        if self.target <= 1 {
            warn!("TTOU ignored: kswarm keeps at least one worker");
            return Vec::new();
        }
        self.target -= 1;
        let i = self.target;
        info!(
            event = "worker_removed",
            slot = i,
            workers = self.target,
            "removing a worker (TTOU): slot {i}; now {} workers",
            self.target
        );
        let deadline = now + self.timeouts.stop;
        let s = &mut self.slots[i];
        let mut out = Vec::new();
        if let SlotState::Stopping {
            reason: StopReason::Rolling | StopReason::Shutdown | StopReason::Shrink,
            ..
        } = s.state
        {
            s.restop(StopReason::Shrink);
        } else if let Some(pid) = s.stop(StopReason::Shrink, deadline, false) {
            out.push(Action::Signal {
                pid,
                sig: Sig::Term,
            });
        }
        if s.state == SlotState::Retired {
            self.slots.truncate(self.last_used() + 1);
        }
        out.extend(self.status());
        out.extend(self.advance_rolling(now));
        out.extend(self.check_ready());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::super::*;

    #[test]
    fn ttin_adds_and_ttou_removes_the_highest_slot() {
        let t0 = Instant::now();
        let mut s = started(2, 10, t0);
        let a = s.grow(t0);
        assert_eq!(spawns(&a), vec![2]);
        s.spawned(2, 102, t0);
        assert_eq!(s.target(), 3);
        // The group settles at a new generation before the next step.
        for (slot, pid) in [(0, 100), (1, 101), (2, 102)] {
            s.report(slot, pid, joined(2, &[slot as i32]), t0);
        }
        let a = s.shrink(t0);
        assert_eq!(signals(&a), vec![(102, Sig::Term)]);
        assert_eq!(s.target(), 2);
        let a = s.exited(102, Exit::Code(0), t0);
        assert!(spawns(&a).is_empty());
        assert_eq!(s.slots().len(), 2);
        for (slot, pid) in [(0, 100), (1, 101)] {
            s.report(slot, pid, joined(3, &[slot as i32]), t0);
        }
        s.shrink(t0);
        assert_eq!(s.target(), 1);
        s.exited(101, Exit::Code(0), t0);
        s.report(0, 100, joined(4, &[0, 1]), t0);
        assert!(s.shrink(t0).is_empty(), "never below one worker");
        assert_eq!(s.target(), 1);
        assert_eq!(s.pids(), vec![100]);
        // grow again reuses slot 1
        assert_eq!(spawns(&s.grow(t0)), vec![1]);
    }

    #[test]
    fn scaling_signals_are_counted_and_applied_one_at_a_time_once_the_group_is_stable() {
        let t0 = Instant::now();
        let mut s = started(2, 10, t0);
        // Three TTINs at once: one worker now, the next once the group has
        // rebalanced with it.
        assert_eq!(spawns(&s.grow(t0)), vec![2]);
        assert!(s.grow(t0).is_empty());
        assert!(s.grow(t0).is_empty());
        assert_eq!(s.wanted(), 5);
        s.spawned(2, 102, t0);
        // The new worker joined, the others have not rejoined yet: not stable.
        assert!(spawns(&s.report(2, 102, joined(2, &[2]), t0)).is_empty());
        assert!(spawns(&s.report(0, 100, joined(2, &[0]), t0)).is_empty());
        let a = s.report(1, 101, joined(2, &[1]), t0);
        assert_eq!(
            spawns(&a),
            vec![3],
            "the second step once all share the new generation"
        );
        s.spawned(3, 103, t0);
        for (slot, pid) in [(0, 100), (1, 101), (2, 102), (3, 103)] {
            s.report(slot, pid, joined(3, &[slot as i32]), t0);
        }
        assert_eq!(s.target(), 5);
        s.spawned(4, 104, t0);
        for (slot, pid) in [(0, 100), (1, 101), (2, 102), (3, 103), (4, 104)] {
            s.report(slot, pid, joined(4, &[slot as i32]), t0);
        }
        // Two TTOUs: one worker leaves; the second only after the others
        // rejoined without it (a leave mid-rebalance can wedge a group).
        assert_eq!(signals(&s.shrink(t0)), vec![(104, Sig::Term)]);
        assert!(s.shrink(t0).is_empty());
        s.exited(104, Exit::Code(0), t0);
        for (slot, pid) in [(0, 100), (1, 101), (2, 102)] {
            assert!(signals(&s.report(slot, pid, joined(5, &[slot as i32]), t0)).is_empty());
        }
        let a = s.report(3, 103, joined(5, &[3]), t0);
        assert_eq!(signals(&a), vec![(103, Sig::Term)]);
        assert_eq!((s.target(), s.wanted()), (3, 3));
        // A TTIN and a TTOU cancel out.
        s.exited(103, Exit::Code(0), t0);
        assert!(s.grow(t0).is_empty(), "not settled since the last step");
        assert_eq!(s.wanted(), 4);
        s.shrink(t0);
        assert_eq!(s.wanted(), 3);
    }
}
