//! How the partitioned worker settles what the handler did: `--verdicts`
//! (retries, dead-letter copies, records it stops on), and the commits
//! (due offsets, a commit that fails, commits taken back from a handler
//! that cannot be trusted).

use std::time::Instant;

use tracing::{debug, warn};

use super::Worker;
use crate::group::GroupError;
use crate::handler::Judged;
use crate::record::Lane;
use crate::worker::copies::Outcome;
use crate::worker::error::WorkerError;
use crate::worker::output::TxnError;
use crate::worker::positions::Positions;
use crate::worker::verdicts::{Action, Dest, Ledger, Reroute};

impl Worker {
    /// `--verdicts`: apply the handler's verdicts; move the commit position
    /// of each partition up to its lowest record not done. Some: a record
    /// the worker must stop on (no dead-letter topic).
    pub(super) async fn judged(
        &mut self,
        mut judged: Vec<Judged>,
        positions: &mut Positions,
    ) -> Result<Option<String>, WorkerError> {
        self.emit(&mut judged).await?;
        if self.ledger.is_none() {
            // --output-topic without --verdicts: every finished record is done.
            for j in &judged {
                positions.acked(j.partition, j.offset);
            }
            return Ok(None);
        }
        let mut copies = Vec::new();
        let stop = self.apply_verdicts(judged, positions, &mut copies);
        for d in copies {
            if self.dead_letter_in_txn(&d).await? {
                // In the same transaction as the offsets: done now.
                self.verdict_counts.dead_lettered += 1;
                if let Some((ledger, positions)) = self.books(d.record.lane, positions) {
                    ledger.copied(d.record.partition, d.record.offset);
                    if let Some(done) = ledger.done_through(d.record.partition) {
                        positions.acked(d.record.partition, done);
                    }
                }
            } else if let Some(dl) = self.feed.copies.as_ref() {
                dl.send(d);
                self.copies_pending += 1;
            }
        }
        Ok(stop)
    }

    /// The ledger and positions of records read from `lane` (the topic's:
    /// this generation's `positions`; a retry topic's: its own).
    fn books<'a>(
        &'a mut self,
        lane: Lane,
        positions: &'a mut Positions,
    ) -> Option<(&'a mut Ledger, &'a mut Positions)> {
        match lane {
            Lane::Main => Some((self.ledger.as_mut()?, positions)),
            Lane::Retry(i) => self
                .lanes
                .get_mut(usize::from(i))
                .map(|l| (&mut l.ledger, &mut l.positions)),
        }
    }

    /// The verdicts into the ledgers; the copies they call for into
    /// `copies`. Some: a record the worker must stop on.
    fn apply_verdicts(
        &mut self,
        judged: Vec<Judged>,
        positions: &mut Positions,
        copies: &mut Vec<Reroute>,
    ) -> Option<String> {
        let now = Instant::now();
        let mut stop = None;
        let mut touched: Vec<(Lane, i32)> = Vec::new();
        for j in judged {
            if !touched.contains(&(j.lane, j.partition)) {
                touched.push((j.lane, j.partition));
            }
            match j.verdict {
                crate::handler::Verdict::Ok => {}
                crate::handler::Verdict::Retry => self.verdict_counts.retried += 1,
                crate::handler::Verdict::Reject(_) => self.verdict_counts.rejected += 1,
            }
            let slot = self.core.cfg.slot;
            let (ledger, _) = self.books(j.lane, positions)?;
            match ledger.judged(j, now) {
                None => {}
                Some(Action::Copy(d)) => {
                    if d.to == Dest::DeadLetter {
                        warn!(
                            slot,
                            "the record at partition {} offset {} goes to the dead-letter topic: {} ({} attempt(s))",
                            d.record.partition, d.record.offset, d.reason, d.attempts
                        );
                    }
                    copies.push(d);
                }
                Some(Action::Stop(msg)) => {
                    stop.get_or_insert(msg);
                }
            }
        }
        for (lane, p) in touched {
            if let Some((ledger, positions)) = self.books(lane, positions) {
                if let Some(o) = ledger.done_through(p) {
                    positions.acked(p, o);
                }
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
            Outcome::Written(dest, lane, p, o) => {
                self.copies_pending = self.copies_pending.saturating_sub(1);
                if dest == Dest::DeadLetter {
                    self.verdict_counts.dead_lettered += 1;
                }
                if let Some((ledger, positions)) = self.books(lane, positions) {
                    ledger.copied(p, o);
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
        if let Some(out) = self.output.as_mut() {
            // Committed results are visible already; the open transaction,
            // with whatever the handler claimed since, is dropped.
            out.abort("the handler cannot be trusted").await;
            return;
        }
        for i in 0..self.lanes.len() {
            let back = self.lanes[i].positions.take_back();
            let topic = self.retry_topics[i].cluster.topic().to_string();
            if let Err(e) = self.member.commit_in(&topic, &back).await {
                tracing::error!(
                    slot = self.core.cfg.slot,
                    "could not take back the commits of retry topic {topic} ({e}); records acknowledged by the untrustworthy handler may be lost: {back:?} (partition, offset) were the offsets to restore"
                );
            }
        }
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
        let meta = self.output.is_some().then(|| self.group_metadata());
        if let (Some(out), Some(meta)) = (self.output.as_mut(), meta) {
            match out.commit(&due, &meta).await {
                Ok(()) => {}
                // The records of this generation are handled again by
                // whoever owns them next (their results were aborted).
                Err(TxnError::GroupMoved(_)) => return Err(GroupError::Rebalance),
                Err(e) => return Err(GroupError::Other(anyhow::anyhow!(e))),
            }
        } else if !due.is_empty() {
            self.member.commit(&due).await?;
        }
        self.commit_lanes().await?;
        if due.is_empty() {
            return Ok(());
        }
        positions.committed(&due);
        self.committed_at.extend(due.iter().copied());
        debug!(slot = self.core.cfg.slot, "committed");
        Ok(())
    }

    /// `--retry-delays`: commit what was done of each retry topic.
    async fn commit_lanes(&mut self) -> Result<(), GroupError> {
        for (lane, topic) in self.lanes.iter_mut().zip(&self.retry_topics) {
            let due = lane.positions.due();
            if due.is_empty() {
                continue;
            }
            self.member.commit_in(topic.cluster.topic(), &due).await?;
            lane.positions.committed(&due);
        }
        Ok(())
    }
}
