//! What a worker's end means: for a running worker, a crash (or a clean stop
//! of everyone when its reader closed stdout, or giving up on a
//! configuration error); for one the supervisor stopped, what it was
//! stopped for. Then the member it leaves behind is evicted if nobody takes
//! it over soon.

use std::time::Instant;

use tracing::{error, info, warn};

use super::restart::Crash;
use super::{Action, Ended, Exit, Fleet, Inherit, Pid, SlotState, StopReason};
use crate::metrics::RestartReason;
use crate::report::StopCause;
use crate::supervisor::handover;
use crate::supervisor::slot::Worker;

impl Fleet {
    pub(super) fn take_exit(&mut self, pid: Pid, exit: Exit, now: Instant) -> Vec<Action> {
        let Some(i) = self.slot_of(pid) else {
            return Vec::new();
        };
        self.slots[i].last_exit = Some(exit);
        // Exit 0 means it left the group itself. Anything else leaves a
        // member behind (see `handover`).
        let inherit = handover::inherit_after_exit(
            &self.slots[i].state,
            exit,
            self.is_shutting_down(),
            self.slots[i].member_id.as_deref(),
        );
        let taken_over = matches!(inherit, Some(Inherit::TakeOver(_)));
        let dead_member = self.slots[i].member_id.clone();
        let end = Ended {
            slot: i,
            pid,
            exit,
            inherit,
        };
        let state = std::mem::replace(&mut self.slots[i].state, SlotState::Retired);
        let mut out: Vec<Action> = match state {
            SlotState::Joining(w) | SlotState::Member(w, _) => self.running_ended(end, &w, now),
            SlotState::Stopping {
                worker,
                reason,
                killed,
                ..
            } => self.stopped_ended(end, &worker, reason, killed, now),
            other @ (SlotState::Waiting { .. } | SlotState::Retired) => {
                self.slots[i].state = other;
                Vec::new()
            }
        };
        out.splice(
            0..0,
            self.evict_if_orphaned(i, exit, taken_over, dead_member, now),
        );
        out.extend(self.status());
        out.extend(self.advance_rolling(now));
        out.extend(self.check_done());
        out
    }

    /// A worker that was not asked to stop ended.
    fn running_ended(&mut self, end: Ended, w: &Worker, now: Instant) -> Vec<Action> {
        let (i, pid, exit) = (end.slot, end.pid, end.exit);
        if self.is_shutting_down() {
            info!(event = "worker_ended", slot = i, pid, exit = %exit, "slot {i} pid {pid} ended with {exit}");
            return Vec::new();
        }
        if exit.success() && w.stopping == Some(StopCause::StdoutClosed) {
            // `kswarm run | head`: whoever reads the records is gone;
            // restarting cannot help. Stop everyone, cleanly.
            info!("slot {i} pid {pid}: stdout closed; stopping");
            return self.shutdown(now);
        }
        if exit == Exit::Code(crate::report::EXIT_CONFIG) {
            return self.give_up_on_config_error(i, pid, now);
        }
        if let Some(why) = &w.replacing {
            info!(event = "worker_replaced", slot = i, pid, exit = %exit, reason = why.reason().label(), "slot {i} pid {pid} ended to replace its handler ({}); starting the next", why.reason());
            return self.crashed(Crash::of(end, w, why.reason()), now);
        }
        error!(
            event = "worker_crashed",
            slot = i,
            pid,
            exit = %exit,
            "slot {i} pid {pid} ended unexpectedly with {exit}"
        );
        let why = match exit {
            Exit::Signal(_) => RestartReason::Signal,
            _ => RestartReason::Exit,
        };
        self.crashed(Crash::of(end, w, why), now)
    }

    /// A worker the supervisor asked to stop ended: what follows depends
    /// on what it was stopped for.
    fn stopped_ended(
        &mut self,
        end: Ended,
        worker: &Worker,
        reason: StopReason,
        killed: bool,
        now: Instant,
    ) -> Vec<Action> {
        let (i, pid, exit) = (end.slot, end.pid, end.exit);
        match reason {
            StopReason::Hung => {
                warn!(event = "worker_ended", slot = i, pid, exit = %exit, "slot {i} pid {pid} (hung) ended with {exit}");
                self.crashed(Crash::of(end, worker, RestartReason::Hung), now)
            }
            StopReason::Rolling => {
                log_stop(i, pid, exit, killed);
                self.slots[i].wait(now, end.inherit);
                self.due(now)
            }
            StopReason::Shrink => {
                log_stop(i, pid, exit, killed);
                self.slots.truncate(self.last_used() + 1);
                Vec::new()
            }
            StopReason::Shutdown => {
                log_stop(i, pid, exit, killed);
                self.note_shutdown_exit(i, pid, exit, killed);
                Vec::new()
            }
        }
    }

    /// A member that died without leaving, that nobody takes over soon:
    /// evict it so the rest of the group need not wait for it. (A TTOU may
    /// have dropped the slot altogether.)
    fn evict_if_orphaned(
        &self,
        i: usize,
        exit: Exit,
        taken_over: bool,
        dead_member: Option<String>,
        now: Instant,
    ) -> Option<Action> {
        let restart_in = match self.slots.get(i).map(|s| &s.state) {
            Some(SlotState::Waiting { until, .. }) => Some(until.saturating_duration_since(now)),
            _ => None,
        };
        // At a shutdown with `leave_together` every member leaves at the end.
        let leaves_later = self.leave_together && self.is_shutting_down();
        if !handover::evict_after_exit(exit, taken_over, restart_in, leaves_later) {
            return None;
        }
        Some(Action::Evict {
            slot: i as u32,
            member_id: dead_member?,
        })
    }
}

fn log_stop(i: usize, pid: Pid, exit: Exit, killed: bool) {
    if killed {
        warn!(event = "worker_stopped", slot = i, pid, exit = %exit, killed, "slot {i} pid {pid} killed ({exit})");
    } else if exit.success() || exit == Exit::Signal(libc::SIGTERM) {
        info!(event = "worker_stopped", slot = i, pid, exit = %exit, killed, "slot {i} pid {pid} stopped ({exit})");
    } else {
        warn!(event = "worker_stopped", slot = i, pid, exit = %exit, killed, "slot {i} pid {pid} stopped with {exit}");
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::testkit::*;
    use super::super::*;
    use crate::report::{Report, StopCause};
    use crate::supervisor::handover::EVICT_IF_RESTART_AFTER;

    #[test]
    fn a_member_in_good_standing_is_taken_over_not_evicted() {
        let t0 = Instant::now();
        let mut s = started(2, 10, t0);
        let a = s.exited(101, Exit::Signal(9), t0);
        assert!(evictions(&a).is_empty(), "{a:?}");
        let Some(Inherit::TakeOver(r)) = s.take_inherit(1) else {
            panic!("take over")
        };
        assert_eq!(
            (r.member_id.as_str(), r.generation, r.partitions),
            ("m-1", 1, vec![1])
        );
        assert_eq!(s.take_inherit(1), None, "only once");
        // a graceful stop at shutdown leaves nothing behind
        let a = s.shutdown(t0);
        assert!(evictions(&a).is_empty());
        let a = s.exited(100, Exit::Code(0), t0);
        assert!(evictions(&a).is_empty());
    }

    #[test]
    fn a_member_that_died_mid_rebalance_is_rejoined_by_a_quick_replacement() {
        let t0 = Instant::now();
        let mut s = started(1, 10, t0);
        s.report(
            0,
            100,
            Report::Revoked {
                partitions: vec![0],
            },
            t0,
        );
        // first crash: the replacement starts within 50 ms and joins as m-1
        let a = s.exited(100, Exit::Code(1), t0);
        assert!(evictions(&a).is_empty(), "{a:?}");
        assert_eq!(s.take_inherit(0), Some(Inherit::Rejoin("m-1".into())));
        // the slot keeps that id while its next process has not reported one
        let t1 = t0 + Duration::from_secs(1);
        s.tick(t1);
        s.spawned(0, 200, t1);
        assert_eq!(s.slots()[0].member_id.as_deref(), Some("m-1"));
        // ...and follows the ids it reports
        s.report(
            0,
            200,
            Report::MemberId {
                member_id: "m-2".into(),
            },
            t1,
        );
        assert_eq!(s.slots()[0].member_id.as_deref(), Some("m-2"));
    }

    #[test]
    fn a_member_that_died_mid_rebalance_is_evicted_when_its_replacement_is_late() {
        let t0 = Instant::now();
        let mut s = started(1, 100, t0);
        // crash the slot mid-join until its backoff reaches a second
        let mut t = t0;
        let mut pid = 100;
        for n in 0.. {
            s.report(
                0,
                pid,
                Report::MemberId {
                    member_id: format!("m-{n}"),
                },
                t,
            );
            let a = s.exited(pid, Exit::Signal(9), t);
            let until = until(&s.slots()[0]);
            if until - t >= EVICT_IF_RESTART_AFTER {
                assert_eq!(evictions(&a), vec![(0, format!("m-{n}"))]);
                // evicted or not, the replacement joins under the same id
                assert_eq!(s.take_inherit(0), Some(Inherit::Rejoin(format!("m-{n}"))));
                break;
            }
            assert!(evictions(&a).is_empty(), "attempt {n}: {a:?}");
            t = until;
            s.tick(t);
            pid += 1;
            s.spawned(0, pid, t);
        }
    }

    #[test]
    fn a_dead_member_is_evicted_when_no_replacement_comes() {
        let t0 = Instant::now();
        let mut s = started(2, 10, t0);
        s.report(
            1,
            101,
            Report::Revoked {
                partitions: vec![1],
            },
            t0,
        );
        s.shutdown(t0);
        let a = s.exited(101, Exit::Signal(9), t0);
        assert_eq!(evictions(&a), vec![(1, "m-1".into())]);
        assert_eq!(s.take_inherit(1), None);
    }

    #[test]
    fn a_configuration_error_stops_everyone_with_2_and_no_restart() {
        let t0 = Instant::now();
        let mut s = started(2, 10, t0);
        let message = "--exec '/nope': command not found (sh exit status 127)";
        s.report(
            1,
            101,
            Report::Fatal {
                message: message.into(),
            },
            t0,
        );
        let a = s.exited(101, Exit::Code(crate::report::EXIT_CONFIG), t0);
        assert!(spawns(&a).is_empty());
        assert_eq!(signals(&a), vec![(100, Sig::Term)]);
        let out = exit_of(&s.exited(100, Exit::Code(0), t0)).expect("exit");
        assert_eq!((out.code, out.slot), (2, Some(1)));
        assert!(out.message.contains(message), "{}", out.message);
    }

    #[test]
    fn closed_stdout_stops_everyone_cleanly() {
        let t0 = Instant::now();
        let mut s = started(2, 10, t0);
        s.report(
            0,
            100,
            Report::Stopping {
                reason: StopCause::StdoutClosed,
            },
            t0,
        );
        let a = s.exited(100, Exit::Code(0), t0);
        assert_eq!(signals(&a), vec![(101, Sig::Term)]);
        assert!(spawns(&a).is_empty());
        let out = exit_of(&s.exited(101, Exit::Code(0), t0)).unwrap();
        assert_eq!(out.code, 0);
        // an exit 0 for any other reason is restarted
        let mut s = started(1, 10, t0);
        s.report(
            0,
            100,
            Report::Stopping {
                reason: "other".into(),
            },
            t0,
        );
        s.exited(100, Exit::Code(0), t0);
        assert!(matches!(s.slots()[0].state, SlotState::Waiting { .. }));
    }
}
