//! The fleet of slots: what the supervisor should do, decided from plain
//! data. Pure: no processes, no clock (every call takes `now`), no randomness
//! (the backoff jitter is injected). `supervisor/mod.rs` feeds it events (a
//! worker was started, reported, exited; a signal; a timer) and carries out
//! the [`Action`]s it returns.
//!
//! One slot's lifecycle lives in [`super::slot`]; what becomes of a dead
//! worker's group member in [`super::handover`]; restart delays and the
//! crash-loop budget in [`super::backoff`]. Here: the decisions that concern
//! the fleet as a whole, one family of rules per file:
//!
//! - [`timers`]: what comes due with time ([`Fleet::tick`]): starts, hung
//!   workers, workers that overstay their stop, a broker outage past its limit;
//! - [`reports`] and [`exits`]: what a worker's report or its end changes;
//! - [`restart`]: a crash, its backoff, the budget, and when to give up;
//! - [`rolling`]: HUP, one worker at a time;
//! - [`scaling`]: TTIN/TTOU, one step at a time, each once the group is stable;
//! - [`shutdown`]: TERM/INT, a second INT, and the outcome;
//! - [`readiness`]: what sd_notify is told (READY, STATUS).

mod action;
mod exits;
mod readiness;
mod reports;
mod restart;
mod rolling;
mod scaling;
mod shutdown;
#[cfg(test)]
mod testkit;
mod timers;

use std::time::{Duration, Instant};

use tracing::{error, info};

use super::backoff::{BackoffPolicy, Budget, Jitter};
pub use super::slot::{Exit, Inherit, Joined, Membership, Pid, Slot, SlotState, StopReason};
use crate::config::RestartBudget;
use crate::report::Report;
pub use action::{Action, Notify, Outcome, Sig};
use readiness::Told;
use restart::Crash;
use rolling::Rolling;
use scaling::Scaling;
use shutdown::Stop;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// --hang-timeout: SIGKILL a group member silent this long.
    pub hang: Duration,
    /// A worker that is not (yet) in the group may be silent this long instead
    /// (if longer than `hang`): joining waits for the broker and the other
    /// members.
    pub join: Duration,
    /// --shutdown-timeout plus a margin: SIGKILL a worker still stopping after this.
    pub stop: Duration,
    /// --broker-outage-limit: give up (exit 1) once a worker has been unable
    /// to reach the brokers this long; None: wait for them for ever.
    pub outage: Option<Duration>,
}

#[derive(Debug)]
enum Mode {
    Normal,
    Rolling(Rolling),
    ShuttingDown(Stop),
    Done,
}

/// A worker process that ended, and what its slot's next worker inherits
/// (what [`exits`] hands to [`restart`] when the end is a crash).
#[derive(Debug)]
struct Ended {
    slot: usize,
    pid: Pid,
    exit: Exit,
    inherit: Option<Inherit>,
}

/// All slots and the policy that moves them.
pub struct Fleet {
    slots: Vec<Slot>,
    /// Slots 0..target are wanted; the rest are retired or retiring.
    target: usize,
    mode: Mode,
    timeouts: Timeouts,
    policy: BackoffPolicy,
    budget: Budget,
    jitter: Jitter,
    told: Told,
    scaling: Scaling,
    /// At shutdown the workers hand over instead of leaving one by one, and
    /// the supervisor removes all their members in one LeaveGroup (see
    /// [`Fleet::leave_together`]).
    leave_together: bool,
    /// `--record-timeout`: timeouts per record, fleet-wide.
    record_timeouts: crate::handler::limits::TimeoutBook,
}

impl Fleet {
    /// `workers` slots, all due to start at `now`: the first [`Fleet::tick`]
    /// returns one `Spawn` each.
    pub fn new(
        workers: u32,
        now: Instant,
        timeouts: Timeouts,
        policy: BackoffPolicy,
        budget: RestartBudget,
        jitter: Jitter,
    ) -> Self {
        let n = workers.max(1) as usize;
        Self {
            slots: (0..n).map(|_| Slot::new(now)).collect(),
            target: n,
            mode: Mode::Normal,
            timeouts,
            policy,
            budget: Budget::new(budget),
            jitter,
            told: Told::default(),
            scaling: Scaling::default(),
            leave_together: false,
            record_timeouts: Default::default(),
        }
    }

    /// Stop the group's members together: at shutdown every worker drains,
    /// commits and exits without LeaveGroup, and once all have ended one
    /// LeaveGroup removes all their members ([`Action::LeaveTogether`]).
    ///
    /// Why: members that leave one by one put the group into a rebalance
    /// with the first LeaveGroup, and the rest leave during it. tansu keeps a
    /// leader that leaves while the group forms, so a group left that way
    /// names a departed leader and no later consumer (kswarm or another
    /// client) can form it. One LeaveGroup for all of them empties the group
    /// in one step. Off under --static-membership, whose members leave with
    /// their group.instance.id themselves.
    pub fn leave_together(mut self, on: bool) -> Self {
        self.leave_together = on;
        self
    }

    /// `--record-timeout`: the records a new worker must not give to its
    /// handler (they timed out twice).
    pub fn expired_records(&self) -> Vec<(i32, i64)> {
        self.record_timeouts.expired()
    }

    pub fn slots(&self) -> &[Slot] {
        &self.slots
    }

    /// Workers wanted now (changed by TTIN/TTOU).
    pub fn target(&self) -> usize {
        self.target
    }

    /// Whether a rolling restart (HUP) is under way.
    pub fn is_rolling(&self) -> bool {
        matches!(self.mode, Mode::Rolling(_))
    }

    /// Workers wanted once every TTIN and TTOU so far is carried out.
    pub fn wanted(&self) -> usize {
        (self.target as i64 + self.scaling.pending).max(1) as usize
    }

    pub fn is_shutting_down(&self) -> bool {
        matches!(self.mode, Mode::ShuttingDown(_) | Mode::Done)
    }

    /// Live worker pids, in slot order.
    pub fn pids(&self) -> Vec<Pid> {
        self.slots.iter().filter_map(Slot::pid).collect()
    }

    pub fn slot_of(&self, pid: Pid) -> Option<usize> {
        self.slots.iter().position(|s| s.pid() == Some(pid))
    }

    /// What the next process of `slot` inherits, if anything (taken: asked
    /// once per start).
    pub fn take_inherit(&mut self, slot: u32) -> Option<Inherit> {
        self.slots.get_mut(slot as usize)?.take_inherit()
    }

    /// A member id a crashed supervisor's worker in `slot` held (from its
    /// state file): the slot's first worker joins under it, so the group need
    /// not wait for the dead member's session to expire.
    pub fn adopt(&mut self, slot: u32, member_id: String) {
        if let Some(s) = self.slots.get_mut(slot as usize) {
            if let SlotState::Waiting { until, .. } = s.state {
                s.member_id = Some(member_id.clone());
                s.wait(until, Some(Inherit::Rejoin(member_id)));
            }
        }
    }

    /// Whether `slot` waits to be started (a `Spawn` for it is still wanted).
    pub fn is_due(&self, slot: u32) -> bool {
        !self.is_shutting_down() && self.slots.get(slot as usize).is_some_and(Slot::is_waiting)
    }

    /// Timers: due starts, hung workers, workers that overstay their stop,
    /// a broker outage past its limit; and a scaling step that waited.
    pub fn tick(&mut self, now: Instant) -> Vec<Action> {
        let mut out = self.due(now);
        out.extend(self.advance_scaling(now));
        out
    }

    /// A worker process was started for `slot`.
    pub fn spawned(&mut self, slot: u32, pid: Pid, now: Instant) -> Vec<Action> {
        info!(
            event = "worker_started",
            slot, pid, "slot {slot} pid {pid} started"
        );
        self.slots[slot as usize].started(pid, now);
        self.status()
    }

    /// Starting a worker for `slot` failed (e.g. the binary is gone): a crash.
    pub fn spawn_failed(&mut self, slot: u32, err: &str, now: Instant) -> Vec<Action> {
        error!(
            event = "spawn_failed",
            slot, "slot {slot}: cannot start a worker: {err}"
        );
        let i = slot as usize;
        self.slots[i].last_fatal = Some(format!("cannot start a worker: {err}"));
        let inherit = self.slots[i].take_inherit();
        self.crashed(Crash::unstarted(i, inherit, now), now)
    }

    /// A report from the worker `pid` in `slot`.
    pub fn report(&mut self, slot: u32, pid: Pid, report: Report, now: Instant) -> Vec<Action> {
        let mut out = self.take_report(slot, pid, report, now);
        out.extend(self.advance_scaling(now));
        out
    }

    /// The supervisor did not run for a while (SIGSTOP then SIGCONT, a
    /// frozen cgroup, a suspended machine): its workers' silence meanwhile
    /// was ours, not theirs. Restart every silence clock at `now`.
    pub fn resumed(&mut self, now: Instant) {
        for s in &mut self.slots {
            s.resumed(now);
        }
    }

    /// The worker `pid` ended (reaped after SIGCHLD).
    pub fn exited(&mut self, pid: Pid, exit: Exit, now: Instant) -> Vec<Action> {
        let mut out = self.take_exit(pid, exit, now);
        out.extend(self.advance_scaling(now));
        out
    }

    /// The highest slot in use (or wanted).
    fn last_used(&self) -> usize {
        self.slots
            .iter()
            .rposition(|s| s.state != SlotState::Retired)
            .unwrap_or(0)
            .max(self.target.saturating_sub(1))
    }
}

#[cfg(test)]
mod tests {
    use super::testkit::*;
    use super::*;

    #[test]
    fn starts_every_slot_and_is_ready_when_all_joined() {
        let t0 = Instant::now();
        let s = started(3, 10, t0);
        assert_eq!(s.pids(), vec![100, 101, 102]);
        assert!(
            matches!(s.slots()[2].state, SlotState::Member(_, ref member) if member.partitions == vec![2])
        );
    }

    #[test]
    fn adopted_member_ids_go_to_the_first_workers() {
        let t0 = Instant::now();
        let mut s = slots(2, 10, t0);
        s.adopt(1, "old-1".into());
        s.adopt(7, "no such slot".into());
        assert_eq!(spawns(&s.tick(t0)), vec![0, 1]);
        assert_eq!(s.take_inherit(0), None);
        assert_eq!(s.take_inherit(1), Some(Inherit::Rejoin("old-1".into())));
    }
}
