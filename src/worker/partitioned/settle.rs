//! How the partitioned worker settles what the handler did: `--verdicts`
//! (retries, dead-letter copies, records it stops on), and the commits
//! (due offsets, a commit that fails, commits taken back from a handler
//! that cannot be trusted).

use std::time::Instant;

use tracing::{debug, warn};

use super::Worker;
use crate::group::GroupError;
use crate::handler::Judged;
use crate::worker::dead_letter::Outcome;
use crate::worker::positions::Positions;
use crate::worker::verdicts::Action;

impl Worker {
    /// `--verdicts`: apply the handler's verdicts; move the commit position
    /// of each partition up to its lowest record not done. Some: a record
    /// the worker must stop on (no dead-letter topic).
    pub(super) fn judged(
        &mut self,
        judged: Vec<Judged>,
        positions: &mut Positions,
    ) -> Option<String> {
        let ledger = self.ledger.as_mut()?;
        let now = Instant::now();
        let mut stop = None;
        let mut touched: Vec<i32> = Vec::new();
        for j in judged {
            if !touched.contains(&j.partition) {
                touched.push(j.partition);
            }
            match j.verdict {
                crate::handler::Verdict::Ok => {}
                crate::handler::Verdict::Retry => self.verdict_counts.retried += 1,
                crate::handler::Verdict::Reject(_) => self.verdict_counts.rejected += 1,
            }
            match ledger.judged(j, now) {
                None => {}
                Some(Action::DeadLetter(d)) => {
                    warn!(
                        slot = self.core.cfg.slot,
                        "the record at partition {} offset {} goes to the dead-letter topic: {} ({} attempt(s))",
                        d.record.partition, d.record.offset, d.reason, d.attempts
                    );
                    if let Some(dl) = self.feed.dead_letters.as_ref() {
                        dl.send(d);
                        self.copies_pending += 1;
                    }
                }
                Some(Action::Stop(msg)) => {
                    stop.get_or_insert(msg);
                }
            }
        }
        for p in touched {
            if let Some(o) = ledger.done_through(p) {
                positions.acked(p, o);
            }
        }
        stop
    }

    /// The dead-letter task confirmed a copy (its original is done now) or
    /// failed for good (Err: why the worker stops).
    pub(super) fn copy_written(
        &mut self,
        outcome: Outcome,
        positions: &mut Positions,
    ) -> Result<(), String> {
        match outcome {
            Outcome::Written(p, o) => {
                self.copies_pending = self.copies_pending.saturating_sub(1);
                self.verdict_counts.dead_lettered += 1;
                if let Some(ledger) = self.ledger.as_mut() {
                    ledger.dead_lettered(p, o);
                    if let Some(done) = ledger.done_through(p) {
                        positions.acked(p, done);
                    }
                }
                Ok(())
            }
            Outcome::Fatal(why) => Err(why),
        }
    }

    /// Commit what was acknowledged; say so if that fails (those records
    /// will be delivered again).
    pub(super) async fn commit_or_warn(&mut self, positions: &mut Positions, when: &str) {
        let due = positions.uncommitted();
        if let Err(e) = self.commit(positions).await {
            warn!(
                slot = self.core.cfg.slot,
                "could not commit the offsets of {due} acknowledged record(s) {when} ({e}); this worker commits them if it gets their partitions again, else they will be delivered again"
            );
        }
    }

    /// The handler's acknowledgements cannot be trusted: commit, for every
    /// partition of this assignment, the offset at which the assignment
    /// began, so that whatever it claimed to have handled since is
    /// delivered again.
    pub(super) async fn take_back(&mut self, positions: &Positions) {
        let back = positions.take_back();
        if back.is_empty() {
            return;
        }
        match self.member.commit(&back).await {
            Ok(()) => warn!(
                event = "commits_taken_back",
                slot = self.core.cfg.slot,
                "took back the commits of this assignment: offsets {back:?} (partition, offset) are committed again"
            ),
            Err(e) => tracing::error!(
                slot = self.core.cfg.slot,
                "could not take back the commits of this assignment ({e}); records acknowledged by the untrustworthy handler may be lost: {back:?} (partition, offset) were the offsets to restore"
            ),
        }
    }

    pub(super) async fn commit(&mut self, positions: &mut Positions) -> Result<(), GroupError> {
        let due = positions.due();
        if due.is_empty() {
            return Ok(());
        }
        self.member.commit(&due).await?;
        positions.committed(&due);
        self.committed_at.extend(due.iter().copied());
        debug!(slot = self.core.cfg.slot, "committed");
        Ok(())
    }
}
