//! The shutdown: TERM, a first INT, a spent budget or a configuration error
//! stop every worker gracefully (SIGKILL after --shutdown-timeout); a second
//! INT kills them at once. Once the last worker has ended, the outcome says
//! how it went (0 only for a clean stop).

use std::time::Instant;

use tracing::{error, info, warn};

use super::{Action, Exit, Fleet, Mode, Notify, Outcome, Pid, Sig, SlotState, StopReason};

/// A shutdown under way, and what its outcome will say.
#[derive(Debug, Default)]
pub(super) struct Stop {
    /// Why it began, if not on a signal.
    failure: Option<Outcome>,
    /// A second interrupt killed every worker.
    forced: bool,
    /// Workers that did not stop cleanly.
    pub unclean: Vec<String>,
}

impl Fleet {
    /// TERM, first INT, or a spent budget: stop every worker gracefully.
    pub fn shutdown(&mut self, now: Instant) -> Vec<Action> {
        self.begin_shutdown(None, now)
    }

    /// A second INT: SIGKILL every worker now.
    pub fn kill_all(&mut self, now: Instant) -> Vec<Action> {
        let mut out = self.begin_shutdown(None, now);
        if let Mode::ShuttingDown(s) = &mut self.mode {
            s.forced = true;
        }
        for (i, s) in self.slots.iter_mut().enumerate() {
            if let Some(pid) = s.kill() {
                warn!("slot {i} pid {pid}: killing (second interrupt)");
                out.push(Action::Signal {
                    pid,
                    sig: Sig::Kill,
                });
            }
        }
        out
    }

    /// Stop every worker; `failure`: why, if not on a signal (the first
    /// reason given is the one the outcome keeps).
    pub(super) fn begin_shutdown(&mut self, failure: Option<Outcome>, now: Instant) -> Vec<Action> {
        if let Mode::ShuttingDown(s) = &mut self.mode {
            if s.failure.is_none() {
                s.failure = failure;
            }
            return Vec::new();
        }
        if matches!(self.mode, Mode::Done) {
            return Vec::new();
        }
        match &failure {
            Some(f) => error!(
                event = "stopping",
                reason = f.reason,
                "{}; stopping {} workers",
                f.reason,
                self.pids().len()
            ),
            None => info!(
                event = "stopping",
                reason = "signal",
                "stopping {} workers",
                self.pids().len()
            ),
        }
        self.mode = Mode::ShuttingDown(Stop {
            failure,
            ..Stop::default()
        });
        let mut out = vec![Action::Notify(Notify::Stopping)];
        let deadline = now + self.timeouts.stop;
        let sig = if self.leave_together {
            Sig::HandOver
        } else {
            Sig::Term
        };
        for s in &mut self.slots {
            if matches!(s.state, SlotState::Stopping { .. }) {
                s.restop(StopReason::Shutdown);
            } else if let Some(pid) = s.stop(StopReason::Shutdown, deadline, false) {
                out.push(Action::Signal { pid, sig });
            }
        }
        out.extend(self.check_done());
        out
    }

    /// A worker stopped for the shutdown ended: anything but a clean end
    /// (or one by the stop signal itself, which came before the worker set
    /// up its handler, with nothing to drain yet) makes the stop unclean. A
    /// killed one was noted when it was killed.
    pub(super) fn note_shutdown_exit(&mut self, i: usize, pid: Pid, exit: Exit, killed: bool) {
        let clean = exit.success()
            || exit == Exit::Signal(libc::SIGTERM)
            || exit == Exit::Signal(libc::SIGUSR1);
        if !clean && !killed {
            if let Mode::ShuttingDown(s) = &mut self.mode {
                s.unclean
                    .push(format!("slot {i} pid {pid} ended with {exit}"));
            }
        }
    }

    /// Once the last worker of a shutdown has ended: the members leave
    /// together (if they do), and the supervisor exits.
    pub(super) fn check_done(&mut self) -> Vec<Action> {
        if !matches!(self.mode, Mode::ShuttingDown(_))
            || self.slots.iter().any(|s| s.pid().is_some())
        {
            return Vec::new();
        }
        let Mode::ShuttingDown(stop) = std::mem::replace(&mut self.mode, Mode::Done) else {
            unreachable!("checked above");
        };
        let mut out = Vec::new();
        if self.leave_together {
            let member_ids: Vec<String> = self
                .slots
                .iter()
                .filter_map(|s| s.member_id.clone())
                .collect();
            if !member_ids.is_empty() {
                out.push(Action::LeaveTogether { member_ids });
            }
        }
        out.push(Action::Exit(stop.outcome()));
        out
    }
}

impl Stop {
    /// How the shutdown went: the failure that began it, a second
    /// interrupt, workers that did not stop cleanly, or a clean stop.
    fn outcome(self) -> Outcome {
        if let Some(f) = self.failure {
            f
        } else if self.forced {
            Outcome {
                code: 1,
                message: "stopped by a second interrupt; workers were killed without committing"
                    .into(),
                slot: None,
                reason: "second interrupt",
            }
        } else if !self.unclean.is_empty() {
            Outcome {
                code: 1,
                message: format!(
                    "{}; raise --shutdown-timeout if the handler needs longer to drain",
                    self.unclean.join("; ")
                ),
                slot: None,
                reason: "unclean stop",
            }
        } else {
            info!(event = "stopped_cleanly", "all workers stopped cleanly");
            Outcome {
                code: 0,
                message: String::new(),
                slot: None,
                reason: "clean stop",
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::testkit::*;
    use super::super::*;

    #[test]
    fn graceful_shutdown_exits_zero_or_kills_after_the_timeout() {
        let t0 = Instant::now();
        let mut s = started(2, 10, t0);
        let a = s.shutdown(t0);
        assert_eq!(signals(&a), vec![(100, Sig::Term), (101, Sig::Term)]);
        assert!(s.shutdown(t0).is_empty(), "a second TERM changes nothing");
        assert!(exit_of(&s.exited(100, Exit::Code(0), t0 + MS)).is_none());
        // 101 ignores TERM: killed at the deadline
        assert!(signals(&s.tick(t0 + Duration::from_secs(11))).is_empty());
        let a = s.tick(t0 + Duration::from_secs(12));
        assert_eq!(signals(&a), vec![(101, Sig::Kill)]);
        // Killed: no timer is due any more (the loop would spin on one that
        // nothing clears); its exit is what comes next.
        assert_eq!(s.next_deadline(), None);
        let out = exit_of(&s.exited(101, Exit::Signal(9), t0 + Duration::from_secs(12))).unwrap();
        assert_eq!(out.code, 1);
        assert!(out.message.contains("slot 1"), "{}", out.message);

        let mut s = started(2, 10, t0);
        s.shutdown(t0);
        s.exited(100, Exit::Code(0), t0);
        let out = exit_of(&s.exited(101, Exit::Signal(libc::SIGTERM), t0)).unwrap();
        assert_eq!(
            out,
            Outcome {
                code: 0,
                message: String::new(),
                slot: None,
                reason: "clean stop",
            }
        );
    }

    #[test]
    fn the_first_failure_is_the_outcome_and_a_worker_ending_badly_makes_the_stop_unclean() {
        let t0 = Instant::now();
        let mut s = started(2, 10, t0);
        let failure = |reason: &'static str| Outcome {
            code: 1,
            message: reason.to_string(),
            slot: None,
            reason,
        };
        s.begin_shutdown(Some(failure("first")), t0);
        assert!(s.begin_shutdown(Some(failure("second")), t0).is_empty());
        s.exited(100, Exit::Code(0), t0);
        assert_eq!(
            exit_of(&s.exited(101, Exit::Code(0), t0)).unwrap().reason,
            "first"
        );

        let mut s = started(2, 10, t0);
        s.shutdown(t0);
        s.exited(100, Exit::Signal(libc::SIGUSR1), t0);
        let out = exit_of(&s.exited(101, Exit::Code(3), t0)).unwrap();
        assert_eq!((out.code, out.reason), (1, "unclean stop"));
        assert!(
            out.message
                .contains("slot 1 pid 101 ended with exit status 3"),
            "{}",
            out.message
        );
    }

    #[test]
    fn at_shutdown_members_leave_together_after_the_last_worker_ended() {
        let t0 = Instant::now();
        let mut s = started(3, 10, t0).leave_together(true);
        let a = s.shutdown(t0);
        assert_eq!(
            signals(&a),
            vec![
                (100, Sig::HandOver),
                (101, Sig::HandOver),
                (102, Sig::HandOver)
            ]
        );
        let a = s.exited(100, Exit::Code(0), t0 + MS);
        assert!(leaves(&a).is_empty() && exit_of(&a).is_none());
        // One is killed at the deadline: no eviction of its own (that would
        // be one member leaving alone); it leaves with the others.
        let a = s.exited(101, Exit::Signal(9), t0 + MS);
        assert!(evictions(&a).is_empty(), "{a:?}");
        // Killed by the hand-over signal before it could catch it: clean.
        let a = s.exited(102, Exit::Signal(libc::SIGUSR1), t0 + 2 * MS);
        assert_eq!(leaves(&a), vec![vec!["m-1".to_string(); 3]]);
        let exit_at = a.iter().position(|x| matches!(x, Action::Exit(_)));
        let leave_at = a
            .iter()
            .position(|x| matches!(x, Action::LeaveTogether { .. }));
        assert!(leave_at < exit_at, "leave before exiting: {a:?}");
        assert_eq!(exit_of(&a).unwrap().code, 1, "slot 1 ended with signal 9");

        // Without it (static membership) every worker leaves by itself.
        let mut s = started(1, 10, t0);
        assert_eq!(signals(&s.shutdown(t0)), vec![(100, Sig::Term)]);
        let a = s.exited(100, Exit::Code(0), t0 + MS);
        assert!(leaves(&a).is_empty());
        assert_eq!(exit_of(&a).unwrap().code, 0);
    }

    #[test]
    fn second_interrupt_kills_at_once() {
        let t0 = Instant::now();
        let mut s = started(2, 10, t0);
        s.shutdown(t0);
        let a = s.kill_all(t0 + MS);
        assert_eq!(signals(&a), vec![(100, Sig::Kill), (101, Sig::Kill)]);
        s.exited(100, Exit::Signal(9), t0 + MS);
        let out = exit_of(&s.exited(101, Exit::Signal(9), t0 + MS)).unwrap();
        assert_eq!(out.code, 1);
    }
}
