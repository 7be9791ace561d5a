//! The worker of a partitioned group (the classic and consumer protocols):
//! join, fetch (one request per leader), hand records to the handler,
//! commit what the handler acknowledged, report to the supervisor.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::config::WorkerConfig;
use crate::error::ConfigError;
use crate::group::{GroupError, GroupSettings, Member};
use crate::handler::{HandlerEvent, Judged, Refused};
use crate::record::Record;
use crate::report::Report;

use super::cluster::{Cluster, Fatal};
use super::core::{self, Core, Feed, ALIVE_EVERY, CHUNK_BYTES};
use super::dead_letter::Outcome;
use super::fetch::{fetch_loop, FetchSettings, Fetched, FETCH_QUEUE};
use super::positions::Positions;

use super::verdicts::{Action, Ledger};

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

/// Why a generation's consume loop ended.
enum GenerationEnd {
    Rebalance,
    Shutdown,
    OutputClosed,
    /// A record the handler cannot take: everything before it is delivered
    /// and committed, then the worker stops with this message.
    Poison(String),
}

/// How a drain of the handler ended.
enum Drained {
    /// Everything handed over was acknowledged (and, when closing, the
    /// handler ended).
    All,
    /// The time allowed ran out first.
    TimedOut,
    Failed(String),
    Untrusted(String),
}

struct Worker {
    core: Core,
    feed: Feed,
    /// The topic's leaders and a connection per broker (start offsets; the
    /// fetch task of each generation gets a copy of its own).
    cluster: Cluster,
    member: Member,
    /// Per partition: the next offset after what the handler acknowledged in
    /// an earlier generation that could not be committed then (the group
    /// moved on, the broker was away). Every record below it was handled,
    /// so a later generation that owns the partition starts there and
    /// commits it, instead of delivering those records again.
    carried: BTreeMap<i32, i64>,
    /// Per partition fetched: the end of its log at the last fetch (-1:
    /// not known yet), written by the fetch task.
    high_watermarks: HashMap<i32, Arc<std::sync::atomic::AtomicI64>>,
    /// Per partition: the last committed offset we know (the metrics).
    committed_at: BTreeMap<i32, i64>,
    /// Times our partitions changed since the worker started.
    rebalances: u64,
    /// `--verdicts`: this generation's records between handler and commit.
    ledger: Option<Ledger>,
    /// `--dead-letter-topic`: the copies the dead-letter task has not
    /// confirmed yet.
    copies_pending: usize,
    verdict_counts: crate::metrics::VerdictCounts,
}

pub(super) async fn run(cfg: WorkerConfig) -> anyhow::Result<()> {
    let mut core = Core::open(cfg)?;
    let Some((cluster, member)) = connect(&mut core).await? else {
        return Ok(());
    };
    let feed = match Feed::start(&core.cfg, core.cfg.consume.verdicts.is_some()).await {
        Ok(f) => f,
        Err(e) => return Err(core.fatal(e)),
    };
    let mut worker = Worker {
        core,
        feed,
        cluster,
        member,
        carried: BTreeMap::new(),
        high_watermarks: HashMap::new(),
        committed_at: BTreeMap::new(),
        rebalances: 0,
        ledger: None,
        copies_pending: 0,
        verdict_counts: Default::default(),
    };
    let result = worker.consume().await;
    match result {
        Ok(()) => Ok(()),
        Err(e) => Err(worker.core.fatal(e)),
    }
}

/// The topic's leaders and the group's coordinator, waiting out outages:
/// the brokers may be down when we start (an outage, a restart of the whole
/// cluster). None: a stop signal came first.
async fn connect(core: &mut Core) -> anyhow::Result<Option<(Cluster, Member)>> {
    let cfg = &core.cfg;
    let mut cluster = Cluster::new(
        &cfg.topic,
        &cfg.connect.brokers,
        &crate::group_size::client_id(cfg.slot, cfg.host_workers, &cfg.host_id),
        cfg.connect.connect_timeout,
    );
    loop {
        let started = Instant::now();
        match cluster.refresh().await {
            Ok(()) => break,
            Err(e) if e.is::<Fatal>() => {
                return Err(core.fatal(ConfigError(format!("{e:#}")).into()))
            }
            Err(e) => {
                if !core.wait_out(&e, started).await {
                    return Ok(None);
                }
            }
        }
    }
    let mut member = loop {
        let started = Instant::now();
        match Member::connect(GroupSettings::from_worker(&core.cfg)).await {
            Ok(m) => break m,
            Err(GroupError::Other(e)) => {
                if !core.wait_out(&e, started).await {
                    return Ok(None);
                }
            }
            Err(e) => return Err(core.fatal(group_error(e))),
        }
    };
    core.recovered();
    // Tell the supervisor our member id before the join completes: if we die
    // mid-join (say as the leader, before SyncGroup), it evicts us, and the
    // rest of the group does not wait on a dead member.
    let mut early = core.reporter.try_clone();
    member.on_member_id(move |id| {
        early.send(Report::MemberId {
            member_id: id.to_string(),
        })
    });
    if let Some(id) = &core.cfg.rejoin {
        info!(
            slot = core.cfg.slot,
            "rejoining as member {id} (this slot's previous worker)"
        );
        member.rejoin_as(id);
        core.reporter.send(Report::MemberId {
            member_id: id.clone(),
        });
    }
    Ok(Some((cluster, member)))
}

impl Worker {
    async fn consume(&mut self) -> anyhow::Result<()> {
        let mut resume = self.core.cfg.resume.take();
        loop {
            let assigned = match resume.take() {
                Some(r) => {
                    info!(
                        slot = self.core.cfg.slot,
                        "taking over member {} (generation {})", r.member_id, r.generation
                    );
                    self.member.resume(&r.member_id, r.generation, r.partitions)
                }
                None => match self.join().await? {
                    Some(a) => a,
                    None => return self.finish("signal").await,
                },
            };
            info!(
                event = "member_joined",
                slot = self.core.cfg.slot,
                generation = assigned.generation_id,
                partitions = ?assigned.partitions,
                "joined group {} as {}",
                self.core.cfg.consume.group,
                assigned.member_id
            );
            self.core.reporter.send(Report::Joined {
                member_id: assigned.member_id.clone(),
                generation: assigned.generation_id,
                partitions: assigned.partitions.clone(),
            });
            match self.consume_generation(&assigned.partitions).await? {
                GenerationEnd::Rebalance => {
                    self.rebalances += 1;
                    self.core.reporter.send(Report::Revoked {
                        partitions: assigned.partitions.clone(),
                    });
                }
                GenerationEnd::Shutdown => return self.finish("signal").await,
                GenerationEnd::OutputClosed => return self.finish("stdout closed").await,
                GenerationEnd::Poison(msg) => {
                    self.core.reporter.send(Report::Stopping {
                        reason: "a record the handler cannot take".into(),
                    });
                    return Err(anyhow::anyhow!(msg));
                }
            }
        }
    }

    /// Join the group, waiting out broker outages. None: a stop signal came first.
    async fn join(&mut self) -> anyhow::Result<Option<crate::group::Assigned>> {
        loop {
            let started = Instant::now();
            let r = tokio::select! {
                r = self.member.join() => r,
                _ = self.core.shutdown.recv() => return Ok(None),
            };
            match r {
                Ok(a) => {
                    self.core.recovered();
                    return Ok(Some(a));
                }
                Err(GroupError::Other(e)) => {
                    if !self.core.wait_out(&e, started).await {
                        return Ok(None);
                    }
                }
                Err(e) => return Err(group_error(e)),
            }
        }
    }

    /// Leave the group (the generation loop has already drained and committed).
    async fn finish(&mut self, reason: &str) -> anyhow::Result<()> {
        self.core.reporter.send(Report::Stopping {
            reason: reason.to_string(),
        });
        if self.core.shutdown.hands_over() {
            // The supervisor hands the member to this slot's next worker
            // (rolling restart) or removes it with the others (shutdown).
            info!(
                slot = self.core.cfg.slot,
                "stopping ({reason}); member {} stays in the group for the supervisor to hand on",
                self.member.member_id()
            );
            return Ok(());
        }
        info!(slot = self.core.cfg.slot, "stopping ({reason})");
        let _ = self.member.leave().await;
        Ok(())
    }

    /// Where each owned partition starts: its committed offset, or --from.
    /// Waits out broker outages; None if the group rebalanced or a stop
    /// signal came meanwhile.
    async fn start_offsets(&mut self, owned: &[i32]) -> anyhow::Result<Option<Positions>> {
        let mut stop = self.core.shutdown.clone();
        loop {
            let started = Instant::now();
            let attempt = tokio::select! {
                r = self.try_start_offsets(owned) => r,
                _ = stop.recv() => return Ok(None),
            };
            match attempt {
                Ok(p) => {
                    self.core.recovered();
                    return Ok(Some(p));
                }
                Err(e) => match e.downcast::<GroupError>() {
                    Ok(GroupError::Rebalance) => return Ok(None),
                    Ok(GroupError::Fatal(m)) => return Err(ConfigError(m).into()),
                    Ok(GroupError::Other(e)) | Err(e) => {
                        tokio::select! {
                            go_on = self.core.wait_out(&e, started) => if !go_on {
                                return Ok(None);
                            },
                            r = self.member.rebalance_needed() => {
                                r.map_err(group_error)?;
                                return Ok(None);
                            }
                        }
                    }
                },
            }
        }
    }

    async fn try_start_offsets(&mut self, owned: &[i32]) -> anyhow::Result<Positions> {
        let broker: BTreeMap<i32, Option<i64>> =
            self.member.committed(owned).await?.into_iter().collect();
        let (mut positions, from) = Positions::plan(owned, &broker, &self.carried);
        if !from.is_empty() {
            let starts = self
                .cluster
                .start_offsets(&from, self.core.cfg.consume.from)
                .await?;
            for (p, start) in starts {
                positions.start_at(p, start);
            }
        }
        Ok(positions)
    }

    async fn consume_generation(&mut self, owned: &[i32]) -> anyhow::Result<GenerationEnd> {
        let Some(positions) = self.start_offsets(owned).await? else {
            return Ok(if self.core.shutdown.is_shutdown() {
                GenerationEnd::Shutdown
            } else {
                GenerationEnd::Rebalance
            });
        };
        let mut gen = self.start_generation(owned, positions);
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
                outcome = core::copy_outcome(self.feed.dead_letters.as_mut()) => {
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
            };
            if let Some(end) = end {
                break end;
            }
        };
        gen.stop_fetchers();
        self.end_generation(&mut gen.positions, end).await
    }

    /// Start fetching where each partition stands, and a ledger of verdicts.
    fn start_generation(&mut self, owned: &[i32], positions: Positions) -> Generation {
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
            max_bytes: cfg.consume.fetch_max_bytes,
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
        self.ledger = cfg.consume.verdicts.as_ref().map(|v| {
            let command = match &cfg.consume.handler {
                crate::config::HandlerSpec::Exec(c) => c.as_str(),
                _ => "",
            };
            Ledger::new(v.max_retries, v.dead_letter_topic.is_some(), command)
        });
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
            if !gen.again.is_empty() {
                let offered = self.feed.handler.offer(&gen.again, CHUNK_BYTES);
                for r in gen.again.drain(..offered.taken) {
                    ledger.sent(&r);
                }
                self.feed.sent += offered.taken as u64;
            }
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
    ) -> anyhow::Result<Option<GenerationEnd>> {
        match ev {
            Some(HandlerEvent::Ack(a)) => gen.positions.acked(a.partition, a.offset),
            Some(HandlerEvent::Judged(judged)) => {
                if let Some(msg) = self.judged(judged, &mut gen.positions) {
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
                return Err(anyhow::anyhow!(why));
            }
            None => {
                gen.stop_fetchers();
                self.commit_or_warn(&mut gen.positions, "before the restart")
                    .await;
                return Err(anyhow::anyhow!("handler ended unexpectedly"));
            }
        }
        Ok(None)
    }

    /// The dead-letter task's outcome; Err: it failed for good.
    async fn copy_outcome(&mut self, gen: &mut Generation, outcome: Outcome) -> anyhow::Result<()> {
        if let Err(why) = self.copy_written(outcome, &mut gen.positions) {
            gen.stop_fetchers();
            self.commit_or_warn(&mut gen.positions, "before stopping")
                .await;
            return Err(ConfigError(why).into());
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
    async fn commit_due(&mut self, gen: &mut Generation) -> anyhow::Result<Option<GenerationEnd>> {
        let started = Instant::now();
        match self.commit(&mut gen.positions).await {
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
    async fn tick(&mut self, gen: &mut Generation) -> anyhow::Result<()> {
        if let Some(hung) = self.feed.hung(self.core.cfg.consume.hang_timeout) {
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
    async fn fetched(
        &mut self,
        gen: &mut Generation,
        fetched: Option<Fetched>,
    ) -> anyhow::Result<()> {
        match fetched {
            Some(Fetched::Records(records)) => gen.pending = Some(Pending { records, next: 0 }),
            Some(Fetched::Fatal(why)) => {
                gen.stop_fetchers();
                self.commit_or_warn(&mut gen.positions, "before stopping")
                    .await;
                return Err(ConfigError(why).into());
            }
            None => {}
        }
        Ok(())
    }

    /// The generation ends: everything already handed to the handler must
    /// be acknowledged before we commit and let another member take the
    /// partitions. A rebalance waits for us only up to the rebalance
    /// timeout, so its drain must end well before that.
    async fn end_generation(
        &mut self,
        positions: &mut Positions,
        end: GenerationEnd,
    ) -> anyhow::Result<GenerationEnd> {
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
                return Err(anyhow::anyhow!(why));
            }
        }
        let when = match end {
            GenerationEnd::Rebalance => "before the rebalance",
            _ => "before stopping",
        };
        self.commit_or_warn(positions, when).await;
        positions.carry_into(&mut self.carried);
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
                super::verdicts::first_bytes(r.value.as_deref())
            ),
            _ => String::new(),
        }
    }

    /// The statistics `--metrics-addr` shows, to the supervisor.
    fn report_stats(&mut self, owned: &[i32]) {
        use std::sync::atomic::Ordering;
        let mut stats = self.feed.stats(owned, self.rebalances, self.verdict_counts);
        for e in &mut stats.partitions {
            e.committed = self.committed_at.get(&e.partition).copied();
            e.high_watermark = self
                .high_watermarks
                .get(&e.partition)
                .map(|h| h.load(Ordering::Relaxed))
                .filter(|&h| h >= 0);
        }
        self.core.reporter.send(Report::Stats(stats));
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
            let handler_done = ended || (!closing && self.feed.handler.in_flight() == 0);
            if handler_done && self.copies_pending == 0 {
                return Drained::All;
            }
            tokio::select! {
                outcome = core::copy_outcome(self.feed.dead_letters.as_mut()), if self.copies_pending > 0 => {
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
                        let _ = self.judged(judged, positions);
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

    /// `--verdicts`: apply the handler's verdicts; move the commit position
    /// of each partition up to its lowest record not done. Some: a record
    /// the worker must stop on (no dead-letter topic).
    fn judged(&mut self, judged: Vec<Judged>, positions: &mut Positions) -> Option<String> {
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
    fn copy_written(&mut self, outcome: Outcome, positions: &mut Positions) -> Result<(), String> {
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
    async fn commit_or_warn(&mut self, positions: &mut Positions, when: &str) {
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
    async fn take_back(&mut self, positions: &Positions) {
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

    async fn commit(&mut self, positions: &mut Positions) -> Result<(), GroupError> {
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

/// Resolves when the ledger's next retry comes due (never without one).
async fn retry_due(ledger: Option<&Ledger>) {
    match ledger.and_then(Ledger::next_retry) {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// A group error for the worker's exit: retrying cannot fix a fatal one, so
/// it is a configuration error (a setting the broker refuses, no rights...).
fn group_error(e: GroupError) -> anyhow::Error {
    match e {
        GroupError::Fatal(m) => ConfigError(m).into(),
        GroupError::Rebalance => e.into(),
        GroupError::Other(e) => e,
    }
}
