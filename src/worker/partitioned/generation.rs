//! One generation of the partitioned worker: from the assignment to the
//! rebalance or the stop. Fetching starts where each partition stands; one
//! loop hands records to the handler as it makes room, takes its
//! acknowledgements, commits, reports and notices a rebalance; at the end
//! the handler drains and what it acknowledged is committed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::warn;

use super::{group_error, GenerationEnd, Worker};
use crate::group::GroupError;
use crate::handler::{HandlerEvent, Refused};
use crate::record::Lane;
use crate::record::Record;
use crate::report::Report;
use crate::worker::copies::Outcome;
use crate::worker::core::{self, ALIVE_EVERY, CHUNK_BYTES};
use crate::worker::error::{Result, WorkerError};
use crate::worker::fetch::{fetch_loop, FetchSettings, Fetched, FETCH_QUEUE};
use crate::worker::positions::Positions;
use crate::worker::verdicts::{Ledger, RetryPath};

use super::retry_lanes;

/// A fetched batch the handler has taken only part of so far.
struct Pending {
    records: Vec<Record>,
    next: usize,
}

/// One generation's state: where each owned partition stands, the fetch
/// task and its records, the ticks.
struct Generation {
    owned: Vec<i32>,
    positions: Positions,
    rx: mpsc::Receiver<Fetched>,
    fetchers: Vec<JoinHandle<()>>,
    /// Records whose retry is due and that the handler has not taken yet.
    again: Vec<Record>,
    /// The fetched batch the handler has taken only part of so far.
    pending: Option<Pending>,
    commit_tick: tokio::time::Interval,
    alive_tick: tokio::time::Interval,
    /// Consumer protocol: the member's epochs, and the last one reported.
    epochs: Option<tokio::sync::watch::Receiver<i32>>,
    reported_epoch: i32,
}

impl Generation {
    fn stop_fetchers(&mut self) {
        for f in self.fetchers.drain(..) {
            f.abort();
        }
    }
}

/// How a drain of the handler ended.
pub(super) enum Drained {
    /// Everything handed over was acknowledged (and, when closing, the
    /// handler ended).
    All,
    /// The time allowed ran out first.
    TimedOut,
    Failed(String),
    Untrusted(String),
}

impl Worker {
    pub(super) async fn consume_generation(&mut self, owned: &[i32]) -> Result<GenerationEnd> {
        let Some(starts) = self.start_offsets(owned).await? else {
            return Ok(if self.core.shutdown.is_shutdown() {
                GenerationEnd::Shutdown
            } else {
                GenerationEnd::Rebalance
            });
        };
        let mut gen = self.start_generation(owned, starts);
        // One loop for everything, so that a handler with a backlog never
        // keeps the worker from committing, reporting or noticing a
        // rebalance: the pending batch is handed over as the handler makes room.
        let end = loop {
            if let Some(end) = self.hand_over(&mut gen) {
                break end;
            }
            let end = tokio::select! {
                biased;
                _ = self.core.shutdown.recv() => Some(GenerationEnd::Shutdown),
                ev = self.feed.handler.next_event() => self.handler_event(&mut gen, ev).await?,
                r = self.member.rebalance_needed() => {
                    r.map_err(group_error)?;
                    Some(GenerationEnd::Rebalance)
                }
                _ = retry_due(self.ledger.as_ref()) => None,
                outcome = core::copy_outcome(self.feed.copies.as_mut()) => {
                    self.copy_outcome(&mut gen, outcome).await?;
                    None
                }
                // Consumer protocol: the member epoch moved on with the same
                // partitions; the supervisor needs it to take the member over.
                epoch = crate::group::consumer::next_epoch(&mut gen.epochs), if gen.epochs.is_some() => {
                    self.epoch_moved(&mut gen, epoch);
                    None
                }
                _ = gen.commit_tick.tick() => self.commit_due(&mut gen).await?,
                _ = gen.alive_tick.tick() => {
                    self.tick(&mut gen).await?;
                    None
                }
                fetched = gen.rx.recv(), if gen.pending.is_none() => {
                    self.fetched(&mut gen, fetched).await?;
                    None
                }
                // --retry-delays: records of the retry topics, held until due.
                ev = retry_lanes::next_event(&mut self.lanes) => {
                    if let retry_lanes::LaneEvent::Fetched(lane, fetched) = ev {
                        self.lane_fetched(&mut gen, lane, fetched).await?;
                    }
                    None
                }
            };
            if let Some(end) = end {
                break end;
            }
        };
        gen.stop_fetchers();
        self.stop_lanes();
        let end = self.end_generation(&mut gen.positions, end).await;
        self.lanes.clear();
        end
    }

    /// Start fetching where each partition stands, and a ledger of verdicts.
    fn start_generation(&mut self, owned: &[i32], starts: super::Starts) -> Generation {
        let super::Starts {
            positions,
            lanes: lane_starts,
        } = starts;
        let (tx, rx) = mpsc::channel::<Fetched>(FETCH_QUEUE);
        let starts: Vec<(i32, i64)> = positions.starts().collect();
        let high_watermarks = starts
            .iter()
            .map(|&(p, _)| {
                let hw = self
                    .high_watermarks
                    .entry(p)
                    .or_insert_with(|| Arc::new(std::sync::atomic::AtomicI64::new(-1)));
                (p, hw.clone())
            })
            .collect();
        let cfg = &self.core.cfg;
        let settings = FetchSettings {
            size: cfg.consume.fetch_size,
            partition_max_bytes: cfg.consume.partition_fetch_max_bytes,
            wait_ms: cfg.consume.fetch_wait_ms,
            from: cfg.consume.from,
        };
        let fetchers: Vec<JoinHandle<()>> = vec![tokio::spawn(fetch_loop(
            self.cluster.detached(),
            starts,
            tx,
            settings,
            high_watermarks,
        ))];
        for (p, c) in positions.committed_offsets() {
            self.committed_at.insert(p, c);
        }
        let command = match &cfg.consume.handler {
            crate::config::HandlerSpec::Exec(c) => c.as_str(),
            _ => "",
        };
        self.ledger = cfg.consume.verdicts.as_ref().map(|v| {
            let retry = if v.retry_delays.is_empty() {
                RetryPath::InMemory {
                    max_retries: v.max_retries,
                }
            } else {
                RetryPath::topics(Lane::Main, &labels(v))
            };
            Ledger::new(retry, v.dead_letter_topic.is_some(), command)
        });
        if let Some(v) = &cfg.consume.verdicts {
            let dead_letter = v.dead_letter_topic.is_some();
            self.lanes = self
                .retry_topics
                .iter()
                .zip(lane_starts)
                .map(|(t, positions)| {
                    let ledger = retry_lanes::ledger(t.index, &labels(v), dead_letter, command);
                    t.start(positions, ledger, settings)
                })
                .collect();
        }
        Generation {
            owned: owned.to_vec(),
            positions,
            rx,
            fetchers,
            again: Vec::new(),
            pending: None,
            commit_tick: tokio::time::interval(cfg.consume.commit_interval),
            alive_tick: tokio::time::interval(ALIVE_EVERY),
            epochs: self.member.epochs(),
            reported_epoch: self.member.generation_id(),
        }
    }

    /// Hand the handler the records whose retry is due, then the pending
    /// batch, as far as it has room. Some: a record it cannot take.
    fn hand_over(&mut self, gen: &mut Generation) -> Option<GenerationEnd> {
        if let Some(ledger) = self.ledger.as_mut() {
            gen.again.extend(ledger.due_retries(Instant::now()));
        }
        if !self.lanes.is_empty() {
            let now = retry_lanes::now_ms();
            for lane in &mut self.lanes {
                lane.take_due(now, &mut gen.again);
            }
        }
        if !gen.again.is_empty() {
            let offered = self.feed.handler.offer(&gen.again, CHUNK_BYTES);
            for r in gen.again.drain(..offered.taken) {
                let ledger = match r.lane {
                    Lane::Main => self.ledger.as_mut(),
                    Lane::Retry(i) => self.lanes.get_mut(usize::from(i)).map(|l| &mut l.ledger),
                };
                if let Some(ledger) = ledger {
                    ledger.sent(&r);
                }
            }
            self.feed.sent += offered.taken as u64;
        }
        let p = gen.pending.as_mut().filter(|_| gen.again.is_empty())?;
        let offered = self.feed.handler.offer(&p.records[p.next..], CHUNK_BYTES);
        if let Some(ledger) = self.ledger.as_mut() {
            for r in &p.records[p.next..p.next + offered.taken] {
                ledger.sent(r);
            }
        }
        p.next += offered.taken;
        self.feed.sent += offered.taken as u64;
        if let Some(Refused::Poison(msg)) = offered.refused {
            return Some(GenerationEnd::Poison(msg));
        }
        if p.next >= p.records.len() {
            gen.pending = None;
        }
        None
    }

    /// What the handler said. Some: the generation ends; Err: the worker
    /// stops.
    async fn handler_event(
        &mut self,
        gen: &mut Generation,
        ev: Option<HandlerEvent>,
    ) -> Result<Option<GenerationEnd>> {
        match ev {
            Some(HandlerEvent::Ack(a)) => gen.positions.acked(a.partition, a.offset),
            Some(HandlerEvent::Judged(judged)) => {
                if let Some(msg) = self.judged(judged, &mut gen.positions).await? {
                    return Ok(Some(GenerationEnd::Poison(msg)));
                }
            }
            Some(HandlerEvent::OutputClosed) => return Ok(Some(GenerationEnd::OutputClosed)),
            Some(HandlerEvent::Failed(why)) => {
                // Commit what was acknowledged, but stay in the group:
                // the supervisor's replacement takes our membership
                // over. A LeaveGroup here would only force a rebalance
                // (and a broker like tansu keeps a leader that leaves
                // mid-rebalance as leader, so the group never forms).
                gen.stop_fetchers();
                self.commit_or_warn(&mut gen.positions, "before the restart")
                    .await;
                let why = why + &self.first_unacked_value().await;
                return Err(self.feed.handler_failure(why));
            }
            Some(HandlerEvent::Untrusted(why)) => {
                gen.stop_fetchers();
                self.take_back(&gen.positions).await;
                return Err(WorkerError::Handler(why));
            }
            None => {
                gen.stop_fetchers();
                self.commit_or_warn(&mut gen.positions, "before the restart")
                    .await;
                return Err(WorkerError::Handler("handler ended unexpectedly".into()));
            }
        }
        Ok(None)
    }

    /// The dead-letter task's outcome; Err: it failed for good.
    async fn copy_outcome(&mut self, gen: &mut Generation, outcome: Outcome) -> Result<()> {
        if let Err(why) = self.copy_written(outcome, &mut gen.positions) {
            gen.stop_fetchers();
            self.commit_or_warn(&mut gen.positions, "before stopping")
                .await;
            return Err(WorkerError::Config(why));
        }
        Ok(())
    }

    /// Consumer protocol: tell the supervisor the member's new epoch.
    fn epoch_moved(&mut self, gen: &mut Generation, epoch: i32) {
        if epoch == gen.reported_epoch {
            return;
        }
        gen.reported_epoch = epoch;
        self.core.reporter.send(Report::Joined {
            member_id: self.member.member_id().to_string(),
            generation: epoch,
            partitions: gen.owned.clone(),
        });
    }

    /// Every --commit-interval: commit what was acknowledged. Some: the
    /// group rebalanced.
    async fn commit_due(&mut self, gen: &mut Generation) -> Result<Option<GenerationEnd>> {
        let started = Instant::now();
        let committed = self.commit(&mut gen.positions).await;
        if let Some(e) = self.output_failure() {
            gen.stop_fetchers();
            return Err(e);
        }
        match committed {
            Ok(()) => self.core.recovered(),
            Err(GroupError::Rebalance) => return Ok(Some(GenerationEnd::Rebalance)),
            Err(GroupError::Other(e)) => {
                // Keep consuming; the acknowledged offsets stay due and
                // go out with a later commit once the broker answers.
                self.core.failed(&e, started);
            }
            Err(e) => return Err(group_error(e)),
        }
        Ok(None)
    }

    /// Alive: idle, or the handler made progress since the last report. A
    /// handler that holds records and acknowledges none looks hung, however
    /// few records it holds (--hang-timeout).
    async fn tick(&mut self, gen: &mut Generation) -> Result<()> {
        if let Some(hung) = self.feed.check_limits(self.core.cfg.consume.hang_timeout) {
            gen.stop_fetchers();
            self.commit_or_warn(&mut gen.positions, "before the restart")
                .await;
            return Err(hung);
        }
        if self.feed.handler.in_flight() == 0 || self.feed.acked() > self.core.last_alive.1 {
            self.core.alive(self.feed.acked());
        }
        self.report_stats(&gen.owned);
        Ok(())
    }

    /// The fetch task's next batch (or why fetching cannot go on).
    async fn fetched(&mut self, gen: &mut Generation, fetched: Option<Fetched>) -> Result<()> {
        match fetched {
            Some(Fetched::Records(records)) => gen.pending = Some(Pending { records, next: 0 }),
            Some(Fetched::Fatal(why)) => {
                gen.stop_fetchers();
                self.commit_or_warn(&mut gen.positions, "before stopping")
                    .await;
                return Err(WorkerError::Config(why));
            }
            None => {}
        }
        Ok(())
    }

    /// A retry topic's next answer (or why fetching it cannot go on).
    async fn lane_fetched(
        &mut self,
        gen: &mut Generation,
        lane: usize,
        fetched: Option<Fetched>,
    ) -> Result<()> {
        if let Err(why) = self.lanes[lane].fetched(fetched) {
            gen.stop_fetchers();
            self.stop_lanes();
            self.commit_or_warn(&mut gen.positions, "before stopping")
                .await;
            return Err(WorkerError::Config(why));
        }
        Ok(())
    }

    fn stop_lanes(&mut self) {
        for lane in &mut self.lanes {
            lane.stop_fetching();
        }
    }

    /// The generation ends: everything already handed to the handler must
    /// be acknowledged before we commit and let another member take the
    /// partitions. A rebalance waits for us only up to the rebalance
    /// timeout, so its drain must end well before that.
    async fn end_generation(
        &mut self,
        positions: &mut Positions,
        end: GenerationEnd,
    ) -> Result<GenerationEnd> {
        let closing = !matches!(end, GenerationEnd::Rebalance);
        let limit = if closing {
            self.core.cfg.consume.shutdown_timeout
        } else {
            self.core
                .cfg
                .consume
                .shutdown_timeout
                .min(self.core.cfg.consume.rebalance_timeout.mul_f64(0.75))
        };
        match self.drain(positions, closing, limit).await {
            Drained::All | Drained::TimedOut => {}
            Drained::Failed(why) => {
                warn!(
                    slot = self.core.cfg.slot,
                    "{why}; records not acknowledged will be delivered again"
                );
            }
            Drained::Untrusted(why) => {
                self.take_back(positions).await;
                return Err(WorkerError::Handler(why));
            }
        }
        let when = match end {
            GenerationEnd::Rebalance => "before the rebalance",
            _ => "before stopping",
        };
        self.commit_or_warn(positions, when).await;
        if let Some(e) = self.output_failure() {
            return Err(e);
        }
        if self.output.is_none() {
            // With --output-topic a record is done only once its results are
            // committed: what this generation could not commit is handled
            // again, never carried.
            positions.carry_into(&mut self.carried);
            for (lane, topic) in self.lanes.iter().zip(self.retry_topics.iter_mut()) {
                lane.positions.carry_into(&mut topic.carried);
            }
        }
        Ok(end)
    }

    /// The first bytes of the record the handler most likely died on (the
    /// first it did not acknowledge), read again from its leader: the worker
    /// no longer holds it. Empty if it cannot be read in a few seconds.
    async fn first_unacked_value(&mut self) -> String {
        let Some((p, o)) = self.feed.handler.first_unacked() else {
            return String::new();
        };
        match tokio::time::timeout(Duration::from_secs(3), self.cluster.peek(p, o)).await {
            Ok(Ok(Some(r))) if r.offset == o => format!(
                "; the value of that record begins {}",
                crate::worker::verdicts::first_bytes(r.value.as_deref())
            ),
            _ => String::new(),
        }
    }

    /// Wait, at most `limit`, for the handler to acknowledge everything it
    /// holds; commit what it acknowledges meanwhile (every --commit-interval),
    /// so that a drain cut short by its limit loses as little as possible.
    /// On a final stop, close the handler's input first and wait for it to end.
    async fn drain(
        &mut self,
        positions: &mut Positions,
        closing: bool,
        limit: Duration,
    ) -> Drained {
        let deadline = tokio::time::Instant::now() + limit;
        if closing {
            self.feed.handler.close_input().await;
        }
        let mut commit_tick = tokio::time::interval(self.core.cfg.consume.commit_interval);
        commit_tick.reset();
        // The handler's last verdicts may still send records to the
        // dead-letter topic: wait for those copies too (within the limit).
        let mut ended = false;
        loop {
            let handler_done = ended || (!closing && self.feed.handler.settled());
            if handler_done && self.copies_pending == 0 {
                return Drained::All;
            }
            tokio::select! {
                outcome = core::copy_outcome(self.feed.copies.as_mut()), if self.copies_pending > 0 => {
                    if let Err(why) = self.copy_written(outcome, positions) {
                        return Drained::Failed(why);
                    }
                }
                _ = tokio::time::sleep_until(deadline), if handler_done => {
                    warn!(
                        slot = self.core.cfg.slot,
                        "{} dead-letter copies were not confirmed within {limit:?}; their records stay uncommitted and will be delivered again",
                        self.copies_pending
                    );
                    return Drained::TimedOut;
                }
                ev = tokio::time::timeout_at(deadline, self.feed.handler.next_event()), if !handler_done => match ev {
                    Ok(Some(HandlerEvent::Ack(a))) => positions.acked(a.partition, a.offset),
                    // A record the worker would stop on stays uncommitted:
                    // it is delivered again after the restart.
                    Ok(Some(HandlerEvent::Judged(judged))) => {
                        if let Err(e) = self.judged(judged, positions).await {
                            return Drained::Failed(format!("{e:#}"));
                        }
                    }
                    Ok(Some(HandlerEvent::Failed(why))) => return Drained::Failed(why),
                    Ok(Some(HandlerEvent::Untrusted(why))) => return Drained::Untrusted(why),
                    Ok(Some(HandlerEvent::OutputClosed)) | Ok(None) => ended = true,
                    Err(_) => {
                        let held = self.feed.handler.in_flight();
                        if held > 0 {
                            warn!(
                                slot = self.core.cfg.slot,
                                in_flight = held,
                                "the handler did not acknowledge {held} record(s) within {limit:?}; they will be delivered again"
                            );
                        } else {
                            warn!(
                                slot = self.core.cfg.slot,
                                "the handler acknowledged every record but did not exit within {limit:?} of its input being closed (--shutdown-timeout); killing it"
                            );
                        }
                        if closing {
                            self.feed.handler.kill();
                        }
                        return Drained::TimedOut;
                    }
                },
                _ = commit_tick.tick() => {
                    let _ = self.commit(positions).await;
                }
            }
        }
    }
}

/// The labels of `--retry-delays`, in order.
fn labels(v: &crate::config::VerdictConfig) -> Vec<String> {
    v.retry_delays.iter().map(|d| d.label.clone()).collect()
}

/// Resolves when the ledger's next retry comes due (never without one).
async fn retry_due(ledger: Option<&Ledger>) {
    match ledger.and_then(Ledger::next_retry) {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}
