//! A crash and what follows it: a restart after a backoff delay (reset
//! after a healthy run), or giving up (exit 1) once the crash loop is plain:
//! the restart budget is spent, or too many workers in a row acknowledged
//! nothing. A configuration error is given up on at once (exit 2).

use std::time::Instant;

use tracing::info;

use super::{Action, Ended, Exit, Fleet, Inherit, Outcome, Pid, Slot};
use crate::metrics::RestartReason;
use crate::supervisor::slot::Worker;

/// A worker that crashed, hung, or could not be started.
#[derive(Debug)]
pub(super) struct Crash {
    pub slot: usize,
    /// How it ended; None: it could not be started.
    pub exit: Option<Exit>,
    pub why: RestartReason,
    /// When it started.
    pub since: Instant,
    /// Whether it acknowledged a record.
    pub progressed: bool,
    /// Whether it died while the brokers were out of reach.
    pub in_outage: bool,
    /// What the slot's next worker inherits.
    pub inherit: Option<Inherit>,
}

impl Crash {
    /// The worker `w` ended as `end` says.
    pub fn of(end: Ended, w: &Worker, why: RestartReason) -> Self {
        let in_outage = w.outage.is_some();
        // A crash while the brokers are out of reach is the outage's doing.
        let why = match why {
            RestartReason::Exit | RestartReason::Signal if in_outage => RestartReason::BrokerOutage,
            other => other,
        };
        Self {
            slot: end.slot,
            exit: Some(end.exit),
            why,
            since: w.since,
            progressed: w.progressed,
            in_outage: w.outage.is_some(),
            inherit: end.inherit,
        }
    }

    /// No worker could be started for `slot` at `now`.
    pub fn unstarted(slot: usize, inherit: Option<Inherit>, now: Instant) -> Self {
        Self {
            slot,
            exit: None,
            why: RestartReason::Spawn,
            since: now,
            progressed: false,
            in_outage: false,
            inherit,
        }
    }
}

impl Fleet {
    /// Restart the crashed worker's slot after a backoff delay, its next
    /// worker inheriting what the crash left, or give up (exit 1) once the
    /// crash loop is plain. A worker that died while the brokers were out of
    /// reach did not crash on its own: waiting out an outage spends no budget.
    pub(super) fn crashed(&mut self, crash: Crash, now: Instant) -> Vec<Action> {
        let i = crash.slot;
        if self.is_shutting_down() {
            self.slots[i].retire();
            return Vec::new();
        }
        self.count_crash(&crash, now);
        let failure = if crash.in_outage {
            None
        } else if crash.why.is_replacement() {
            // A replacement kswarm chose spends no budget; a handler that
            // never acknowledges anything between them is a loop all the same.
            self.crash_loop(i, crash.exit)
        } else {
            self.give_up(i, crash.exit, now)
        };
        if let Some(failure) = failure {
            self.slots[i].retire();
            return self.begin_shutdown(Some(failure), now);
        }
        self.schedule_restart(crash, now)
    }

    /// A healthy run resets the backoff; a run without progress counts
    /// towards a crash loop, one with progress ends it.
    fn count_crash(&mut self, crash: &Crash, now: Instant) {
        let i = crash.slot;
        if now.saturating_duration_since(crash.since) >= self.policy.healthy_after {
            self.slots[i].attempt = 0;
        }
        self.note_memory_loop(crash);
        if crash.why.is_replacement() {
            // Not a crash: no growing backoff either.
            self.slots[i].attempt = 0;
            info!(
                "slot {i}: its handler is replaced ({}); the restart budget is not spent",
                crash.why
            );
        }
        if crash.in_outage {
            info!("slot {i} ended during a broker outage; restarting it without spending the restart budget");
        } else if crash.progressed {
            self.slots[i].fruitless = 0;
        } else {
            self.slots[i].fruitless += 1;
        }
    }

    /// A handler replaced for memory again and again leaks: say so each time,
    /// with the count.
    fn note_memory_loop(&mut self, crash: &Crash) {
        let s = &mut self.slots[crash.slot];
        if crash.why != RestartReason::Memory {
            s.memory_in_a_row = 0;
            return;
        }
        s.memory_in_a_row += 1;
        if s.memory_in_a_row >= 2 {
            tracing::warn!(
                event = "handler_memory_loop",
                slot = crash.slot,
                times = s.memory_in_a_row,
                "slot {}: its handler was replaced for memory {} times in a row (--handler-memory-max): it keeps growing; look for a leak in the handler",
                crash.slot,
                s.memory_in_a_row
            );
        }
    }

    /// Start the slot again after its backoff delay (at once if that is zero).
    fn schedule_restart(&mut self, crash: Crash, now: Instant) -> Vec<Action> {
        let i = crash.slot;
        let u = (self.jitter)();
        let s = &mut self.slots[i];
        let delay = self.policy.delay(s.attempt, u);
        s.attempt += 1;
        s.restarts += 1;
        *s.restart_reasons.entry(crash.why).or_default() += 1;
        s.last_restart = Some((crash.why, now));
        info!(
            event = "restart_scheduled",
            slot = i,
            reason = crash.why.label(),
            restarts = s.restarts,
            delay_ms = delay.as_millis() as u64,
            attempt = s.attempt,
            "slot {i}: restart {} in {} ms (attempt {}, reason {})",
            s.restarts,
            delay.as_millis(),
            s.attempt,
            crash.why
        );
        s.wait(now + delay, crash.inherit);
        if delay.is_zero() {
            return self.due(now);
        }
        Vec::new()
    }

    /// Why restarting slot `i` again is a crash loop, if it is.
    fn give_up(&mut self, i: usize, exit: Option<Exit>, now: Instant) -> Option<Outcome> {
        self.over_budget(i, exit, now)
            .or_else(|| self.crash_loop(i, exit))
    }

    /// The restart budget is spent (--max-restarts N/WINDOW); else this
    /// restart is spent from it.
    fn over_budget(&mut self, i: usize, exit: Option<Exit>, now: Instant) -> Option<Outcome> {
        if self.budget.try_spend(now) {
            return None;
        }
        let limit = self.budget.limit();
        let how = match (exit, self.slots[i].pid()) {
            (Some(e), Some(pid)) => format!("(pid {pid}) ended with {e}"),
            (Some(e), None) => format!("ended with {e}"),
            (None, _) => "could not be started".to_string(),
        };
        Some(Outcome {
            code: 1,
            message: format!(
                "slot {i} {how}; restart budget spent (--max-restarts {}/{:?}: {} restarts within {:?}); stopping. \
                 Fix the cause (see the worker's output), or allow more with --max-restarts N/WINDOW{}",
                limit.max,
                limit.window,
                self.budget.spent(),
                limit.window,
                last_error(&self.slots[i])
            ),
            slot: Some(i as u32),
            reason: "restart budget spent",
        })
    }

    /// More than N (of --max-restarts N/..) workers of slot `i` in a row
    /// ended without acknowledging a record, however slowly: a handler that
    /// is killed as hung every 30 s is a loop too.
    fn crash_loop(&self, i: usize, exit: Option<Exit>) -> Option<Outcome> {
        let fruitless = self.slots[i].fruitless;
        let loop_limit = self.budget.limit().max.max(1);
        (fruitless > loop_limit).then(|| Outcome {
            code: 1,
            message: format!(
                "slot {i}: {fruitless} workers in a row ended without acknowledging a single record \
                 (the last with {}); that is a crash loop however slowly it turns (--max-restarts {}/..). \
                 Fix the cause (see the worker's output){}",
                exit.map_or("no start".to_string(), |e| e.to_string()),
                loop_limit,
                last_error(&self.slots[i])
            ),
            slot: Some(i as u32),
            reason: "crash loop",
        })
    }

    /// The worker `pid` of slot `i` stopped on a configuration error, which
    /// restarting cannot fix: stop everyone, exit 2.
    pub(super) fn give_up_on_config_error(
        &mut self,
        i: usize,
        pid: Pid,
        now: Instant,
    ) -> Vec<Action> {
        let why = self.slots[i]
            .last_fatal
            .clone()
            .unwrap_or_else(|| "a configuration error".into());
        let failure = Outcome {
            code: 2,
            message: format!("slot {i} pid {pid} stopped on a configuration error, which restarting cannot fix: {why}"),
            slot: Some(i as u32),
            reason: "configuration error",
        };
        self.begin_shutdown(Some(failure), now)
    }
}

/// The slot's last `Fatal` report, for the end of a give-up message.
fn last_error(s: &Slot) -> String {
    s.last_fatal
        .as_ref()
        .map(|f| format!("; its last error: {f}"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::testkit::*;
    use super::super::*;
    use crate::metrics::RestartReason;

    #[test]
    fn crash_restarts_in_the_same_slot_with_growing_backoff() {
        let t0 = Instant::now();
        let mut s = started(2, 10, t0);
        // first crash: restart within 50 ms
        let a = s.exited(101, Exit::Code(3), t0 + 10 * MS);
        assert!(spawns(&a).is_empty());
        let until = until(&s.slots()[1]);
        assert_eq!(until, t0 + 60 * MS);
        assert_eq!(s.next_deadline(), Some(until));
        assert!(spawns(&s.tick(until - MS)).is_empty());
        assert_eq!(spawns(&s.tick(until)), vec![1]);
        s.spawned(1, 200, until);
        // second crash right away: 100 ms
        s.exited(200, Exit::Signal(9), until + MS);
        assert_eq!(
            super::super::testkit::until(&s.slots()[1]),
            until + MS + 100 * MS
        );
        assert_eq!(s.slots()[1].restarts, 2);
        assert_eq!(s.slots()[1].last_exit, Some(Exit::Signal(9)));
        // slot 0 untouched
        assert_eq!(s.slots()[0].pid(), Some(100));
    }

    #[test]
    fn restarts_are_counted_by_reason() {
        let t0 = Instant::now();
        let mut s = started(1, 10, t0);
        s.exited(100, Exit::Signal(9), t0);
        s.tick(t0 + Duration::from_secs(1));
        s.spawn_failed(0, "gone", t0 + Duration::from_secs(1));
        assert_eq!(
            s.slots()[0].restart_reasons,
            [(RestartReason::Signal, 1), (RestartReason::Spawn, 1)].into()
        );
    }

    #[test]
    fn healthy_run_resets_the_backoff() {
        let t0 = Instant::now();
        let mut s = started(1, 10, t0);
        s.exited(100, Exit::Code(1), t0);
        let t1 = t0 + Duration::from_secs(1);
        s.tick(t1);
        s.spawned(0, 200, t1);
        // ran 40 s: the next delay is a first delay again
        let t2 = t1 + Duration::from_secs(40);
        s.report(0, 200, Report::Alive { records: 5 }, t2);
        s.exited(200, Exit::Code(1), t2);
        assert_eq!(until(&s.slots()[0]), t2 + 50 * MS);
        assert_eq!(s.slots()[0].records, 5);
    }

    #[test]
    fn spent_budget_stops_everyone_and_names_the_slot() {
        let t0 = Instant::now();
        let mut s = started(2, 2, t0);
        s.report(
            1,
            101,
            Report::Fatal {
                message: "handler exited 3".into(),
            },
            t0,
        );
        let mut t = t0;
        let mut pid = 101;
        for _ in 0..2 {
            assert!(exit_of(&s.exited(pid, Exit::Code(3), t)).is_none());
            t += Duration::from_secs(1);
            assert_eq!(spawns(&s.tick(t)), vec![1]);
            pid += 1000;
            s.spawned(1, pid, t);
        }
        // third crash within the window: over budget -> TERM slot 0, no restart
        let a = s.exited(pid, Exit::Code(3), t);
        assert_eq!(signals(&a), vec![(100, Sig::Term)]);
        assert!(a.contains(&Action::Notify(Notify::Stopping)));
        assert!(exit_of(&a).is_none(), "waits for slot 0 to stop");
        assert!(s.is_shutting_down());
        assert!(spawns(&s.tick(t + Duration::from_secs(1))).is_empty());
        let out = exit_of(&s.exited(100, Exit::Code(0), t + MS)).expect("exit");
        assert_eq!(out.code, 1);
        assert_eq!(out.slot, Some(1));
        assert!(out.message.contains("slot 1"), "{}", out.message);
        assert!(out.message.contains("exit status 3"), "{}", out.message);
        assert!(out.message.contains("--max-restarts"), "{}", out.message);
        assert!(out.message.contains("handler exited 3"), "{}", out.message);
    }

    #[test]
    fn a_slow_crash_loop_without_progress_stops_after_the_budget_count() {
        let t0 = Instant::now();
        let mut s = started(1, 3, t0);
        let (mut t, mut pid) = (t0, 100);
        // One crash every 40 s: never 3 within the 60 s window; 3 in a row
        // without progress are still within --max-restarts 3.
        for round in 0..3 {
            t += Duration::from_secs(40);
            let a = s.exited(pid, Exit::Signal(9), t);
            assert!(
                exit_of(&a).is_none() && !s.is_shutting_down(),
                "round {round}"
            );
            t += Duration::from_secs(1);
            assert_eq!(spawns(&s.tick(t)), vec![0]);
            pid += 1;
            s.spawned(0, pid, t);
        }
        // A worker that acknowledged records resets the count...
        s.report(0, pid, Report::Alive { records: 5 }, t);
        t += Duration::from_secs(40);
        s.exited(pid, Exit::Signal(9), t);
        assert_eq!(s.slots()[0].fruitless, 0);
        // ...and 4 fruitless ones in a row (more than --max-restarts 3) stop.
        for round in 0..4 {
            t += Duration::from_secs(40);
            s.tick(t);
            pid += 1;
            s.spawned(0, pid, t);
            t += Duration::from_secs(40);
            let a = s.exited(pid, Exit::Code(1), t);
            assert_eq!(s.is_shutting_down(), round == 3, "round {round}");
            if round == 3 {
                let out = exit_of(&a).expect("nothing else runs: exit at once");
                assert_eq!((out.code, out.slot), (1, Some(0)));
                assert!(
                    out.message.contains("4 workers in a row"),
                    "{}",
                    out.message
                );
            }
        }
    }

    #[test]
    fn a_worker_that_dies_in_a_broker_outage_spends_no_budget() {
        let t0 = Instant::now();
        let mut s = started(1, 1, t0);
        let outage = |e: &str| Report::Outage { error: e.into() };
        let (mut t, mut pid) = (t0, 100);
        for _ in 0..5 {
            s.report(0, pid, outage("no answer from b1:9092"), t);
            t += Duration::from_secs(1);
            let a = s.exited(pid, Exit::Code(1), t);
            assert!(!s.is_shutting_down() && exit_of(&a).is_none());
            t += Duration::from_secs(20);
            assert_eq!(spawns(&s.tick(t)), vec![0]);
            pid += 1;
            s.spawned(0, pid, t);
        }
        // Once the brokers answer, crashes count again.
        s.report(0, pid, Report::Recovered, t);
        s.exited(pid, Exit::Code(1), t);
        assert!(
            !s.is_shutting_down(),
            "the first crash is within --max-restarts 1"
        );
        t += Duration::from_secs(20);
        s.tick(t);
        pid += 1;
        s.spawned(0, pid, t);
        s.exited(pid, Exit::Code(1), t);
        assert!(s.is_shutting_down(), "the second spends the budget");
    }

    #[test]
    fn a_handler_replaced_for_a_limit_spends_no_budget_and_no_backoff() {
        use crate::handler::limits::Replacement;
        let t0 = Instant::now();
        let mut s = started(1, 1, t0);
        let (mut t, mut pid) = (t0, 100);
        for n in 1..=5u64 {
            s.report(0, pid, Report::Alive { records: 10 }, t);
            let why = Replacement::Memory {
                used: 200 << 20,
                max: 150 << 20,
            };
            s.report(0, pid, Report::Replacing { why }, t);
            t += Duration::from_secs(1);
            let a = s.exited(pid, Exit::Code(1), t);
            assert!(
                !s.is_shutting_down() && exit_of(&a).is_none(),
                "replacement {n}"
            );
            let slot = &s.slots()[0];
            assert_eq!(slot.attempt, 1, "the backoff does not grow");
            assert!(until(slot) <= t + Duration::from_millis(50));
            assert_eq!(slot.restart_reasons, [(RestartReason::Memory, n)].into());
            assert_eq!(slot.last_restart, Some((RestartReason::Memory, t)));
            assert_eq!(slot.memory_in_a_row, n as u32);
            t += Duration::from_secs(1);
            assert_eq!(spawns(&s.tick(t)), vec![0]);
            pid += 1;
            s.spawned(0, pid, t);
        }
        // A crash spends the budget as before (and ends the memory run).
        s.exited(pid, Exit::Code(1), t);
        assert!(!s.is_shutting_down(), "within --max-restarts 1");
        assert_eq!(s.slots()[0].memory_in_a_row, 0);
        assert_eq!(s.slots()[0].last_restart, Some((RestartReason::Exit, t)));
    }

    #[test]
    fn a_record_that_times_out_twice_is_expired_for_every_later_worker() {
        use crate::handler::limits::Replacement;
        let t0 = Instant::now();
        let mut s = started(2, 10, t0);
        let why = Replacement::RecordTimeout {
            partition: 1,
            offset: 42,
            held_ms: 2000,
        };
        s.report(1, 101, Report::Replacing { why: why.clone() }, t0);
        assert!(s.expired_records().is_empty(), "once: delivered again");
        s.exited(101, Exit::Code(1), t0);
        assert_eq!(
            s.slots()[1].restart_reasons,
            [(RestartReason::RecordTimeout, 1)].into()
        );
        // The record moved to slot 0 in a rebalance: the count is fleet-wide.
        s.report(0, 100, Report::Replacing { why }, t0);
        assert_eq!(s.expired_records(), vec![(1, 42)]);
    }
}
