//! What a worker's report changes. Most reports only update its slot; a
//! join (or rejoin) moves the rules that wait for one: the rolling restart,
//! readiness, the status line.

use std::time::Instant;

use tracing::{error, info, warn};

use super::{Action, Fleet, Joined, Membership, Pid, Slot};
use crate::handler::limits::{Fate, Replacement};
use crate::report::{Report, StopCause};
use crate::supervisor::slot::Outage;

impl Fleet {
    pub(super) fn take_report(
        &mut self,
        slot: u32,
        pid: Pid,
        report: Report,
        now: Instant,
    ) -> Vec<Action> {
        let Some(s) = self.slots.get_mut(slot as usize) else {
            return Vec::new();
        };
        if s.pid() != Some(pid) {
            return Vec::new(); // a late line from a process already gone
        }
        s.heard(now);
        match report {
            Report::Started { .. } => {}
            Report::Stats(stats) => s.stats = Some(stats),
            // Known before the join completes, so a worker that dies
            // mid-join is evicted instead of stalling the group.
            Report::MemberId { member_id } => s.member_id = Some(member_id),
            Report::Alive { records } => alive(s, records),
            Report::Joined {
                member_id,
                generation,
                partitions,
            } => {
                let member = Membership {
                    member_id,
                    generation,
                    partitions,
                };
                return self.joined(slot, pid, member, now);
            }
            Report::Revoked { partitions } => {
                if s.revoked() {
                    info!(
                        event = "worker_revoked",
                        slot,
                        pid,
                        "slot {slot} pid {pid} revoked partitions {partitions:?}; rejoining"
                    );
                }
                return self.status();
            }
            Report::Stopping { reason } => stopping(s, slot, pid, reason),
            Report::Fatal { message } => {
                error!(
                    event = "worker_failed",
                    slot, pid, "slot {slot} pid {pid} failed: {message}"
                );
                s.last_fatal = Some(message);
            }
            Report::Replacing { why } => return self.replacing(slot, pid, why),
            Report::Outage { error } => outage(s, slot, pid, error, now),
            Report::Recovered => recovered(s, slot, pid, now),
        }
        Vec::new()
    }

    /// The worker in `slot` ends to replace its handler, which passed a
    /// limit; a record timeout is counted fleet-wide (the second one makes
    /// the record poison for every later worker).
    fn replacing(&mut self, slot: u32, pid: Pid, why: Replacement) -> Vec<Action> {
        if let Some((p, o)) = why.record() {
            if self.record_timeouts.timed_out(p, o) == Fate::Poison {
                warn!(
                    event = "record_expired",
                    slot,
                    partition = p,
                    offset = o,
                    "the record at partition {p} offset {o} timed out twice (--record-timeout): it is not given to a handler again (reject `timeout`: the dead-letter topic under --verdicts, else kswarm stops on it)"
                );
            }
        }
        warn!(
            event = "handler_replacing",
            slot,
            pid,
            reason = why.reason().label(),
            "slot {slot} pid {pid} replaces its handler ({}): {why}",
            why.reason()
        );
        if let Some(w) = self.slots[slot as usize].worker_mut() {
            w.replacing = Some(why);
        }
        Vec::new()
    }

    /// The worker in `slot` joined (or rejoined) the group as `member`.
    fn joined(&mut self, slot: u32, pid: Pid, member: Membership, now: Instant) -> Vec<Action> {
        let s = &mut self.slots[slot as usize];
        recovered(s, slot, pid, now);
        match s.joined(member.clone()) {
            Joined::First => info!(
                event = "worker_joined",
                slot,
                pid,
                generation = member.generation,
                partitions = ?member.partitions,
                member = %member.member_id,
                "slot {slot} pid {pid} joined generation {} partitions {:?} member {}",
                member.generation, member.partitions, member.member_id
            ),
            Joined::Changed(old) => info!(
                event = "worker_rebalanced",
                slot,
                pid,
                generation = member.generation,
                partitions = ?member.partitions,
                member = %member.member_id,
                "slot {slot} pid {pid} rebalanced: generation {} -> {} partitions {:?} -> {:?}",
                old.generation, member.generation, old.partitions, member.partitions
            ),
            Joined::Same | Joined::HandOver | Joined::Ignored => {}
        }
        let mut out = self.status();
        out.extend(self.advance_rolling(now));
        out.extend(self.check_ready());
        out
    }
}

/// Records acknowledged so far: a worker that acknowledged one made progress.
fn alive(s: &mut Slot, records: u64) {
    s.records = records;
    if records > 0 {
        if let Some(w) = s.worker_mut() {
            w.progressed = true;
        }
    }
}

/// The worker stops on purpose, for `reason` (what its exit then means).
fn stopping(s: &mut Slot, slot: u32, pid: Pid, reason: StopCause) {
    info!(event = "worker_stopping", slot, pid, reason = %reason, "slot {slot} pid {pid} stopping: {reason}");
    if let Some(w) = s.worker_mut() {
        w.stopping = Some(reason);
    }
}

/// The worker cannot reach the brokers: an outage begins, or goes on.
fn outage(s: &mut Slot, slot: u32, pid: Pid, error: String, now: Instant) {
    let Some(w) = s.worker_mut() else {
        return;
    };
    match &mut w.outage {
        Some(o) => o.error = error,
        None => {
            warn!(
                event = "broker_outage",
                slot, pid, "slot {slot} pid {pid}: requests to the brokers fail: {error}"
            );
            w.outage = Some(Outage { since: now, error });
        }
    }
}

/// The worker's `Joined` or `Recovered` report ends its broker outage.
fn recovered(s: &mut Slot, slot: u32, pid: Pid, now: Instant) {
    if let Some(o) = s.worker_mut().and_then(|w| w.outage.take()) {
        info!(
            event = "broker_recovered",
            slot,
            pid,
            "slot {slot} pid {pid}: the brokers answer again after {:?}",
            now.saturating_duration_since(o.since)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::super::*;
    use crate::supervisor::slot::Outage;

    #[test]
    fn late_reports_from_old_pids_are_ignored() {
        let t0 = Instant::now();
        let mut s = started(1, 10, t0);
        s.exited(100, Exit::Code(1), t0);
        assert!(s.report(0, 100, joined(9, &[0]), t0).is_empty());
        assert!(matches!(s.slots()[0].state, SlotState::Waiting { .. }));
        assert!(s.exited(12345, Exit::Code(0), t0).is_empty());
    }

    #[test]
    fn an_outage_keeps_its_start_and_the_latest_error_until_the_worker_recovers() {
        let t0 = Instant::now();
        let mut s = started(1, 10, t0);
        let report = |e: &str| Report::Outage { error: e.into() };
        s.report(0, 100, report("first"), t0);
        s.report(0, 100, report("second"), t0 + MS);
        assert_eq!(
            s.slots()[0].worker().unwrap().outage,
            Some(Outage {
                since: t0,
                error: "second".into()
            })
        );
        s.report(0, 100, Report::Recovered, t0 + 2 * MS);
        assert_eq!(s.slots()[0].worker().unwrap().outage, None);
    }
}
