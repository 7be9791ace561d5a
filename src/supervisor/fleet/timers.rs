//! What comes due with time, as a short list of named rules ([`Fleet::due`]):
//! a broker outage past --broker-outage-limit stops everyone; then, slot by
//! slot, a waiting slot is started, a hung worker killed, a worker that
//! overstays its stop killed.

use std::time::Instant;

use tracing::{error, warn};

use super::{Action, Fleet, Mode, Outcome, Sig, SlotState, StopReason};

/// The first worker whose broker outage passes the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct OutageDue {
    at: Instant,
    slot: usize,
}

impl Fleet {
    /// The earliest time at which [`Fleet::tick`] has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        let shutting = self.is_shutting_down();
        let outage = self
            .outage_deadline()
            .filter(|_| !shutting)
            .map(|due| due.at);
        self.slots
            .iter()
            .filter_map(|s| match s.state {
                SlotState::Waiting { until, .. } if !shutting => Some(until),
                SlotState::Joining(_) | SlotState::Member(..) if !shutting => {
                    s.silence_deadline(self.timeouts.hang, self.timeouts.join)
                }
                // Once SIGKILLed, only its exit (SIGCHLD) is awaited: a
                // deadline that no timer clears would spin the loop.
                SlotState::Stopping {
                    deadline, killed, ..
                } if !killed => Some(deadline),
                _ => None,
            })
            .chain(outage)
            .min()
    }

    /// The rules that time brings due.
    pub(super) fn due(&mut self, now: Instant) -> Vec<Action> {
        if let Some(failure) = self.outage_past_limit(now) {
            return self.begin_shutdown(Some(failure), now);
        }
        let mut out = Vec::new();
        for i in 0..self.slots.len() {
            out.extend(self.start_if_due(i, now));
            out.extend(self.kill_if_hung(i, now));
            out.extend(self.kill_if_overstaying(i, now));
        }
        out
    }

    /// When the first worker's broker outage passes --broker-outage-limit.
    fn outage_deadline(&self) -> Option<OutageDue> {
        let limit = self.timeouts.outage?;
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                let outage = s.worker()?.outage.as_ref()?;
                Some((outage.since + limit, i))
            })
            .min()
            .map(|(at, slot)| OutageDue { at, slot })
    }

    /// The brokers have been out of reach past --broker-outage-limit: give
    /// up (exit 1) with the last error.
    fn outage_past_limit(&self, now: Instant) -> Option<Outcome> {
        if self.is_shutting_down() {
            return None;
        }
        let OutageDue { at, slot: i } = self.outage_deadline().filter(|due| due.at <= now)?;
        let (since, error) = self.slots[i]
            .worker()
            .and_then(|w| w.outage.clone())
            .map_or((at, String::new()), |o| (o.since, o.error));
        Some(Outcome {
            code: 1,
            message: format!(
                "the brokers could not be reached for {:?} (--broker-outage-limit {:?}); \
                 the last error (slot {i}): {error}. Check that the cluster is up and \
                 reachable from this host, or raise --broker-outage-limit (none waits for ever)",
                now.saturating_duration_since(since),
                self.timeouts.outage.unwrap_or_default()
            ),
            slot: None,
            reason: "broker outage limit passed",
        })
    }

    /// A waiting slot whose time has come is started.
    fn start_if_due(&self, i: usize, now: Instant) -> Option<Action> {
        match self.slots[i].state {
            SlotState::Waiting { until, .. } if !self.is_shutting_down() && until <= now => {
                Some(Action::Spawn { slot: i as u32 })
            }
            _ => None,
        }
    }

    /// A running worker silent past its limit is suspected first (reports
    /// already on their way may still arrive), then SIGKILLed if it stays
    /// silent; its exit counts as a crash.
    fn kill_if_hung(&mut self, i: usize, now: Instant) -> Option<Action> {
        if self.is_shutting_down() {
            return None;
        }
        let (hang, join, stop) = (self.timeouts.hang, self.timeouts.join, self.timeouts.stop);
        let slot = &mut self.slots[i];
        let silent = slot.silence_deadline(hang, join).is_some_and(|d| d <= now);
        if !slot.is_active() || !silent {
            return None;
        }
        let worker = slot.worker_mut().expect("a running worker");
        if worker.suspected.is_none() {
            // Let reports already on their way arrive first.
            worker.suspected = Some(now);
            return None;
        }
        let (pid, last_report) = (worker.pid, worker.last_report);
        let why = if slot.membership().is_some() {
            "--hang-timeout"
        } else {
            "while joining the group"
        };
        error!(
            event = "worker_hung",
            slot = i,
            pid,
            "slot {i} pid {pid}: no report for {:?} ({why}); killing it",
            now.saturating_duration_since(last_report)
        );
        slot.stop(StopReason::Hung, now + stop, true);
        Some(Action::Signal {
            pid,
            sig: Sig::Kill,
        })
    }

    /// A worker still running past its stop deadline is SIGKILLed (once); at
    /// a shutdown that makes the stop unclean.
    fn kill_if_overstaying(&mut self, i: usize, now: Instant) -> Option<Action> {
        let stop = self.timeouts.stop;
        let SlotState::Stopping {
            worker,
            deadline,
            killed,
            reason,
            ..
        } = &mut self.slots[i].state
        else {
            return None;
        };
        if *deadline > now || *killed {
            return None;
        }
        let pid = worker.pid;
        warn!(
            event = "worker_overstayed",
            slot = i,
            pid,
            "slot {i} pid {pid}: still running {:?} after SIGTERM; sending SIGKILL",
            stop
        );
        *killed = true;
        if *reason == StopReason::Shutdown {
            if let Mode::ShuttingDown(s) = &mut self.mode {
                s.unclean.push(format!(
                    "slot {i} pid {pid} did not stop within --shutdown-timeout and was killed"
                ));
            }
        }
        Some(Action::Signal {
            pid,
            sig: Sig::Kill,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::testkit::*;
    use super::super::*;
    use crate::supervisor::slot::SILENCE_CONFIRM;

    #[test]
    fn a_waiting_slot_starts_when_its_time_comes_and_never_at_shutdown() {
        let t0 = Instant::now();
        let mut s = started(1, 10, t0);
        s.exited(100, Exit::Code(1), t0);
        let at = until(&s.slots()[0]);
        assert_eq!(s.start_if_due(0, at - MS), None);
        assert_eq!(s.start_if_due(0, at), Some(Action::Spawn { slot: 0 }));
        s.shutdown(t0);
        assert_eq!(s.start_if_due(0, at), None);
    }

    #[test]
    fn a_silent_worker_is_suspected_before_it_is_killed() {
        let t0 = Instant::now();
        let mut s = started(1, 10, t0);
        let late = t0 + MS + Duration::from_secs(5);
        assert_eq!(s.kill_if_hung(0, late - MS), None);
        assert_eq!(s.kill_if_hung(0, late), None, "suspected only");
        assert!(s.slots()[0].worker().unwrap().suspected.is_some());
        assert_eq!(
            s.kill_if_hung(0, late + SILENCE_CONFIRM),
            Some(Action::Signal {
                pid: 100,
                sig: Sig::Kill
            })
        );
        assert!(matches!(
            s.slots()[0].state,
            SlotState::Stopping {
                reason: StopReason::Hung,
                killed: true,
                ..
            }
        ));
    }

    #[test]
    fn a_worker_overstaying_its_stop_is_killed_once_and_the_stop_is_unclean() {
        let t0 = Instant::now();
        let mut s = started(1, 10, t0);
        s.shutdown(t0);
        let deadline = t0 + Duration::from_secs(12);
        assert_eq!(s.kill_if_overstaying(0, deadline - MS), None);
        assert_eq!(
            s.kill_if_overstaying(0, deadline),
            Some(Action::Signal {
                pid: 100,
                sig: Sig::Kill
            })
        );
        assert_eq!(s.kill_if_overstaying(0, deadline + MS), None, "once");
        let Mode::ShuttingDown(stop) = &s.mode else {
            panic!("shutting down")
        };
        assert_eq!(stop.unclean.len(), 1, "{:?}", stop.unclean);
    }

    #[test]
    fn hung_worker_is_killed_and_restarted() {
        let t0 = Instant::now();
        let mut s = started(2, 10, t0);
        let t1 = t0 + Duration::from_secs(4);
        s.report(0, 100, Report::Alive { records: 0 }, t1);
        assert_eq!(s.next_deadline(), Some(t0 + MS + Duration::from_secs(5)));
        // Silent past the limit: one more moment for reports on their way...
        let t6 = t0 + Duration::from_secs(6);
        assert!(signals(&s.tick(t6)).is_empty());
        assert_eq!(s.next_deadline(), Some(t6 + SILENCE_CONFIRM));
        // ...then killed.
        let a = s.tick(t6 + SILENCE_CONFIRM);
        assert_eq!(signals(&a), vec![(101, Sig::Kill)]);
        let a = s.exited(101, Exit::Signal(9), t0 + Duration::from_secs(6));
        assert!(exit_of(&a).is_none());
        assert_eq!(
            s.take_inherit(1),
            Some(Inherit::TakeOver(Membership {
                member_id: "m-1".into(),
                generation: 1,
                partitions: vec![1]
            }))
        );
        assert!(matches!(s.slots()[1].state, SlotState::Waiting { .. }));
        assert_eq!(s.slots()[1].restarts, 1);
        // a worker still joining gets the longer join allowance
        let t2 = t0 + Duration::from_secs(7);
        s.tick(t2);
        s.spawned(1, 300, t2);
        let killed = |a: Vec<Action>| signals(&a).contains(&(300, Sig::Kill));
        assert!(!killed(s.tick(t2 + Duration::from_secs(19))));
        assert!(!killed(s.tick(t2 + Duration::from_secs(20))));
        assert!(killed(
            s.tick(t2 + Duration::from_secs(20) + SILENCE_CONFIRM)
        ));
    }

    #[test]
    fn an_outage_past_its_limit_stops_with_1_and_the_error() {
        let t0 = Instant::now();
        let mut s = started(2, 10, t0);
        s.timeouts.outage = Some(Duration::from_secs(60));
        let report = |e: &str| Report::Outage { error: e.into() };
        s.report(1, 101, report("first"), t0);
        // Outage reports keep the worker from looking hung.
        s.report(
            1,
            101,
            report("cannot reach b1:9092"),
            t0 + Duration::from_secs(30),
        );
        assert_eq!(s.next_deadline(), Some(t0 + MS + Duration::from_secs(5)));
        s.report(
            0,
            100,
            Report::Alive { records: 0 },
            t0 + Duration::from_secs(59),
        );
        s.report(
            1,
            101,
            report("cannot reach b1:9092"),
            t0 + Duration::from_secs(59),
        );
        assert!(s.tick(t0 + Duration::from_secs(59)).is_empty());
        let a = s.tick(t0 + Duration::from_secs(60));
        assert!(s.is_shutting_down());
        assert_eq!(signals(&a).len(), 2, "every worker is stopped: {a:?}");
        s.exited(100, Exit::Code(0), t0 + Duration::from_secs(61));
        let out =
            exit_of(&s.exited(101, Exit::Code(0), t0 + Duration::from_secs(61))).expect("exit");
        assert_eq!(out.code, 1);
        assert!(
            out.message.contains("--broker-outage-limit"),
            "{}",
            out.message
        );
        assert!(
            out.message.contains("cannot reach b1:9092"),
            "{}",
            out.message
        );
    }

    #[test]
    fn time_the_supervisor_was_stopped_is_not_the_workers_silence() {
        let t0 = Instant::now();
        let mut s = started(1, 10, t0);
        // Stopped for 60 s (hang 5 s): on waking, its timers are overdue.
        let woke = t0 + Duration::from_secs(60);
        s.resumed(woke);
        assert!(signals(&s.tick(woke)).is_empty(), "not killed as hung");
        assert_eq!(s.next_deadline(), Some(woke + Duration::from_secs(5)));
        let later = woke + Duration::from_secs(5);
        assert!(signals(&s.tick(later)).is_empty());
        assert_eq!(
            signals(&s.tick(later + SILENCE_CONFIRM)),
            vec![(100, Sig::Kill)],
            "but still if it stays silent after"
        );
        // A report that comes in the moment of grace saves it.
        let mut s = started(1, 10, t0);
        let late = t0 + Duration::from_secs(60);
        assert!(signals(&s.tick(late)).is_empty());
        s.report(0, 100, Report::Alive { records: 9 }, late + MS);
        assert!(signals(&s.tick(late + SILENCE_CONFIRM)).is_empty());
    }
}
