//! One consumer-group member: join, fetch (one request per leader), hand records to the
//! handler, commit what the handler acknowledged, report to the supervisor.
//! The process around it (start-up, signals) is [`bootstrap`]'s.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::config::WorkerConfig;
use crate::error::{ConfigError, ExitWith};
use crate::group::{GroupError, GroupSettings, Member};
use crate::handler::{Handler, HandlerEnv, HandlerEvent, Judged, Refused};
use crate::record::Record;
use crate::report::{Report, EXIT_CONFIG};

mod bootstrap;
mod cluster;
mod dead_letter;
mod fetch;
mod positions;
mod report;
mod share;
mod shutdown;
mod verdicts;

use cluster::{Cluster, Fatal};
use dead_letter::{DeadLetters, Outcome};
use fetch::{fetch_loop, FetchSettings, Fetched, FETCH_QUEUE};
use positions::Positions;
use report::{OutageClock, Reporter};
use shutdown::Shutdown;

pub use bootstrap::{cmd, spawned};
use verdicts::{Action, Ledger};

/// Staged bytes handed to the handler at once at most (a fetched batch is
/// staged whole unless it formats to more than this).
const CHUNK_BYTES: usize = 256 * 1024;
/// The in-flight window never goes below this many records (see
/// `handler::window`).
const MIN_WINDOW: usize = 100;
/// Alive reports to the supervisor, this often.
const ALIVE_EVERY: Duration = Duration::from_secs(1);

/// A fetched batch the handler has taken only part of so far.
struct Pending {
    records: Vec<Record>,
    next: usize,
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
    cfg: WorkerConfig,
    /// The topic's leaders and a connection per broker (start offsets; the
    /// fetch task of each generation gets a copy of its own).
    cluster: Cluster,
    member: Member,
    handler: Handler,
    reporter: Reporter,
    /// A stop signal; by SIGUSR1: stop without leaving the group.
    shutdown: Shutdown,
    /// Records handed to the handler since the worker started; minus the
    /// handler's in-flight count, the records it acknowledged.
    sent: u64,
    /// When the last Alive report went out, and the acknowledged count then.
    last_alive: (Instant, u64),
    /// Whether (and since when) the brokers are out of reach.
    outage: OutageClock,
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
    /// `--dead-letter-topic`: the task that writes dead-letter copies, and
    /// how many it has not confirmed yet.
    dead_letters: Option<DeadLetters>,
    copies_pending: usize,
    verdict_counts: crate::metrics::VerdictCounts,
}

pub(super) async fn run(cfg: WorkerConfig) -> anyhow::Result<()> {
    if cfg.consume.group_protocol == crate::config::GroupProtocol::Share {
        return share::run(cfg).await;
    }
    let mut reporter = Reporter::open(cfg.report_fd)?;
    reporter.send(Report::Started {
        pid: std::process::id(),
    });
    let mut shutdown = Shutdown::from_signals()?;
    let mut outage = OutageClock::new(&cfg.connect.brokers.join(","));

    // The brokers may be down when we start (an outage, a restart of the
    // whole cluster): wait for them like for any other outage.
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
                return Err(fatal(&mut reporter, ConfigError(format!("{e:#}")).into()))
            }
            Err(e) => {
                let pause = outage.failed(&mut reporter, &format!("{e:#}"), started);
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = shutdown.recv() => return Ok(()),
                }
            }
        }
    }
    let mut member = loop {
        let started = Instant::now();
        match Member::connect(GroupSettings::from_worker(&cfg)).await {
            Ok(m) => break m,
            Err(GroupError::Other(e)) => {
                let pause = outage.failed(&mut reporter, &format!("{e:#}"), started);
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = shutdown.recv() => return Ok(()),
                }
            }
            Err(e) => return Err(fatal(&mut reporter, group_error(e))),
        }
    };
    outage.recovered(&mut reporter);
    // Tell the supervisor our member id before the join completes: if we die
    // mid-join (say as the leader, before SyncGroup), it evicts us, and the
    // rest of the group does not wait on a dead member.
    let mut early = reporter.try_clone();
    member.on_member_id(move |id| {
        early.send(Report::MemberId {
            member_id: id.to_string(),
        })
    });
    if let Some(id) = &cfg.rejoin {
        info!(
            slot = cfg.slot,
            "rejoining as member {id} (this slot's previous worker)"
        );
        member.rejoin_as(id);
        reporter.send(Report::MemberId {
            member_id: id.clone(),
        });
    }
    let handler = match start_handler(&cfg, cfg.consume.verdicts.is_some()).await {
        Ok(h) => h,
        Err(e) => return Err(fatal(&mut reporter, e)),
    };
    let dead_letters = start_dead_letters(&cfg);

    let mut worker = Worker {
        cfg,
        cluster,
        member,
        handler,
        reporter,
        shutdown,
        sent: 0,
        last_alive: (Instant::now(), 0),
        outage,
        carried: BTreeMap::new(),
        high_watermarks: HashMap::new(),
        committed_at: BTreeMap::new(),
        rebalances: 0,
        ledger: None,
        dead_letters,
        copies_pending: 0,
        verdict_counts: Default::default(),
    };
    let result = worker.consume().await;
    match result {
        Ok(()) => Ok(()),
        Err(e) => Err(fatal(&mut worker.reporter, e)),
    }
}

/// The worker's handler with its in-flight bounds; `per_record`: its
/// acknowledgements come per record ([`Handler::per_record`]: `--verdicts`,
/// or a share group, which acknowledges records one by one).
async fn start_handler(cfg: &WorkerConfig, per_record: bool) -> anyhow::Result<Handler> {
    let mut handler = Handler::start(
        &cfg.consume.handler,
        cfg.consume.format,
        cfg.consume.max_in_flight,
        HandlerEnv {
            slot: cfg.slot,
            group: cfg.consume.group.clone(),
            topic: cfg.topic.clone(),
            guard_exe: "/proc/self/exe".into(),
        },
    )
    .await?;
    handler.limit_bytes(cfg.consume.max_in_flight_bytes);
    // An --exec-batch handler needs two whole batches in flight (one running,
    // one filling); other handlers start small and grow with their rate.
    let floor = match &cfg.consume.handler {
        crate::config::HandlerSpec::Batch { size, .. } => size.saturating_mul(2),
        _ => MIN_WINDOW,
    };
    handler.limit_time(cfg.consume.max_in_flight_time, floor);
    if per_record {
        handler.per_record(cfg.consume.verdicts.is_some());
    }
    Ok(handler)
}

/// Per partition owned now or handled before: the records and bytes the
/// handler acknowledged (the rest of each entry is the caller's to fill).
fn handled_stats(
    owned: &[i32],
    handler: &Handler,
) -> BTreeMap<i32, crate::metrics::PartitionStats> {
    use crate::metrics::PartitionStats;
    let mut parts: BTreeMap<i32, PartitionStats> = owned
        .iter()
        .map(|&p| {
            (
                p,
                PartitionStats {
                    partition: p,
                    ..PartitionStats::default()
                },
            )
        })
        .collect();
    for &(p, records, bytes) in handler.handled().0 {
        let e = parts.entry(p).or_insert_with(|| PartitionStats {
            partition: p,
            ..PartitionStats::default()
        });
        e.records = records;
        e.bytes = bytes;
    }
    parts
}

/// `--dead-letter-topic`: the task that writes the copies.
fn start_dead_letters(cfg: &WorkerConfig) -> Option<DeadLetters> {
    let topic = cfg.consume.verdicts.as_ref()?.dead_letter_topic.clone()?;
    Some(DeadLetters::start(
        cfg.connect.clone(),
        topic,
        cfg.topic.clone(),
        cfg.consume.group.clone(),
    ))
}

/// Report a fatal error to the supervisor; a configuration error becomes
/// exit status [`EXIT_CONFIG`].
fn fatal(reporter: &mut Reporter, e: anyhow::Error) -> anyhow::Error {
    let message = format!("{e:#}");
    reporter.send(Report::Fatal {
        message: message.clone(),
    });
    if e.downcast_ref::<ConfigError>().is_some() {
        return ExitWith(EXIT_CONFIG as u8, message).into();
    }
    e
}

impl Worker {
    async fn consume(&mut self) -> anyhow::Result<()> {
        let mut resume = self.cfg.resume.take();
        loop {
            let assigned = match resume.take() {
                Some(r) => {
                    info!(
                        slot = self.cfg.slot,
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
                slot = self.cfg.slot,
                generation = assigned.generation_id,
                partitions = ?assigned.partitions,
                "joined group {} as {}",
                self.cfg.consume.group,
                assigned.member_id
            );
            self.reporter.send(Report::Joined {
                member_id: assigned.member_id.clone(),
                generation: assigned.generation_id,
                partitions: assigned.partitions.clone(),
            });
            match self.consume_generation(&assigned.partitions).await? {
                GenerationEnd::Rebalance => {
                    self.rebalances += 1;
                    self.reporter.send(Report::Revoked {
                        partitions: assigned.partitions.clone(),
                    });
                }
                GenerationEnd::Shutdown => return self.finish("signal").await,
                GenerationEnd::OutputClosed => return self.finish("stdout closed").await,
                GenerationEnd::Poison(msg) => {
                    self.reporter.send(Report::Stopping {
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
                _ = self.shutdown.recv() => return Ok(None),
            };
            match r {
                Ok(a) => {
                    self.outage.recovered(&mut self.reporter);
                    return Ok(Some(a));
                }
                Err(GroupError::Other(e)) => {
                    let pause = self
                        .outage
                        .failed(&mut self.reporter, &format!("{e:#}"), started);
                    tokio::select! {
                        _ = tokio::time::sleep(pause) => {}
                        _ = self.shutdown.recv() => return Ok(None),
                    }
                }
                Err(e) => return Err(group_error(e)),
            }
        }
    }

    /// Leave the group (the generation loop has already drained and committed).
    async fn finish(&mut self, reason: &str) -> anyhow::Result<()> {
        self.reporter.send(Report::Stopping {
            reason: reason.to_string(),
        });
        if self.shutdown.hands_over() {
            // The supervisor hands the member to this slot's next worker
            // (rolling restart) or removes it with the others (shutdown).
            info!(
                slot = self.cfg.slot,
                "stopping ({reason}); member {} stays in the group for the supervisor to hand on",
                self.member.member_id()
            );
            return Ok(());
        }
        info!(slot = self.cfg.slot, "stopping ({reason})");
        let _ = self.member.leave().await;
        Ok(())
    }

    /// Where each owned partition starts: its committed offset, or --from.
    /// Waits out broker outages; None if the group rebalanced or a stop
    /// signal came meanwhile.
    async fn start_offsets(&mut self, owned: &[i32]) -> anyhow::Result<Option<Positions>> {
        let mut stop = self.shutdown.clone();
        loop {
            let started = Instant::now();
            let attempt = tokio::select! {
                r = self.try_start_offsets(owned) => r,
                _ = stop.recv() => return Ok(None),
            };
            match attempt {
                Ok(p) => {
                    self.outage.recovered(&mut self.reporter);
                    return Ok(Some(p));
                }
                Err(e) => match e.downcast::<GroupError>() {
                    Ok(GroupError::Rebalance) => return Ok(None),
                    Ok(GroupError::Fatal(m)) => return Err(ConfigError(m).into()),
                    Ok(GroupError::Other(e)) | Err(e) => {
                        let pause =
                            self.outage
                                .failed(&mut self.reporter, &format!("{e:#}"), started);
                        tokio::select! {
                            _ = tokio::time::sleep(pause) => {}
                            r = self.member.rebalance_needed() => {
                                r.map_err(group_error)?;
                                return Ok(None);
                            }
                            _ = self.shutdown.recv() => return Ok(None),
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
                .start_offsets(&from, self.cfg.consume.from)
                .await?;
            for (p, start) in starts {
                positions.start_at(p, start);
            }
        }
        Ok(positions)
    }

    async fn consume_generation(&mut self, owned: &[i32]) -> anyhow::Result<GenerationEnd> {
        let Some(mut positions) = self.start_offsets(owned).await? else {
            return Ok(if self.shutdown.is_shutdown() {
                GenerationEnd::Shutdown
            } else {
                GenerationEnd::Rebalance
            });
        };
        let (tx, mut rx) = mpsc::channel::<Fetched>(FETCH_QUEUE);
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
        let settings = FetchSettings {
            max_bytes: self.cfg.consume.fetch_max_bytes,
            partition_max_bytes: self.cfg.consume.partition_fetch_max_bytes,
            wait_ms: self.cfg.consume.fetch_wait_ms,
            from: self.cfg.consume.from,
        };
        let mut fetchers: Vec<JoinHandle<()>> = vec![tokio::spawn(fetch_loop(
            self.cluster.detached(),
            starts,
            tx,
            settings,
            high_watermarks,
        ))];
        for (p, c) in positions.committed_offsets() {
            self.committed_at.insert(p, c);
        }
        self.ledger = self.cfg.consume.verdicts.as_ref().map(|v| {
            let command = match &self.cfg.consume.handler {
                crate::config::HandlerSpec::Exec(c) => c.as_str(),
                _ => "",
            };
            Ledger::new(v.max_retries, v.dead_letter_topic.is_some(), command)
        });
        // Records whose retry is due and that the handler has not taken yet.
        let mut again: Vec<Record> = Vec::new();
        let stop_fetchers = |fetchers: &mut Vec<JoinHandle<()>>| {
            for f in fetchers.drain(..) {
                f.abort();
            }
        };

        let mut commit_tick = tokio::time::interval(self.cfg.consume.commit_interval);
        let mut alive_tick = tokio::time::interval(ALIVE_EVERY);
        let mut epochs = self.member.epochs();
        let mut reported_epoch = self.member.generation_id();
        // One loop for everything, so that a handler with a backlog never
        // keeps the worker from committing, reporting or noticing a
        // rebalance: the pending batch is handed over as the handler makes room.
        let mut pending: Option<Pending> = None;
        let end = loop {
            if let Some(ledger) = self.ledger.as_mut() {
                again.extend(ledger.due_retries(Instant::now()));
                if !again.is_empty() {
                    let offered = self.handler.offer(&again, CHUNK_BYTES);
                    for r in again.drain(..offered.taken) {
                        ledger.sent(&r);
                    }
                    self.sent += offered.taken as u64;
                }
            }
            if let Some(p) = pending.as_mut().filter(|_| again.is_empty()) {
                let offered = self.handler.offer(&p.records[p.next..], CHUNK_BYTES);
                if let Some(ledger) = self.ledger.as_mut() {
                    for r in &p.records[p.next..p.next + offered.taken] {
                        ledger.sent(r);
                    }
                }
                p.next += offered.taken;
                self.sent += offered.taken as u64;
                if let Some(Refused::Poison(msg)) = offered.refused {
                    break GenerationEnd::Poison(msg);
                }
                if p.next >= p.records.len() {
                    pending = None;
                }
            }
            tokio::select! {
                biased;
                _ = self.shutdown.recv() => break GenerationEnd::Shutdown,
                ev = self.handler.next_event() => match ev {
                    Some(HandlerEvent::Ack(a)) => positions.acked(a.partition, a.offset),
                    Some(HandlerEvent::Judged(judged)) => {
                        if let Some(msg) = self.judged(judged, &mut positions) {
                            break GenerationEnd::Poison(msg);
                        }
                    }
                    Some(HandlerEvent::OutputClosed) => break GenerationEnd::OutputClosed,
                    Some(HandlerEvent::Failed(why)) => {
                        // Commit what was acknowledged, but stay in the group:
                        // the supervisor's replacement takes our membership
                        // over. A LeaveGroup here would only force a rebalance
                        // (and a broker like tansu keeps a leader that leaves
                        // mid-rebalance as leader, so the group never forms).
                        stop_fetchers(&mut fetchers);
                        self.commit_or_warn(&mut positions, "before the restart").await;
                        let why = why + &self.first_unacked_value().await;
                        return Err(self.handler_failure(why));
                    }
                    Some(HandlerEvent::Untrusted(why)) => {
                        stop_fetchers(&mut fetchers);
                        self.take_back(&positions).await;
                        return Err(anyhow::anyhow!(why));
                    }
                    None => {
                        stop_fetchers(&mut fetchers);
                        self.commit_or_warn(&mut positions, "before the restart").await;
                        return Err(anyhow::anyhow!("handler ended unexpectedly"));
                    }
                },
                r = self.member.rebalance_needed() => {
                    r.map_err(group_error)?;
                    break GenerationEnd::Rebalance;
                }
                _ = retry_due(self.ledger.as_ref()) => {}
                outcome = copy_outcome(self.dead_letters.as_mut()) => {
                    if let Err(why) = self.copy_written(outcome, &mut positions) {
                        stop_fetchers(&mut fetchers);
                        self.commit_or_warn(&mut positions, "before stopping").await;
                        return Err(ConfigError(why).into());
                    }
                }
                // Consumer protocol: the member epoch moved on with the same
                // partitions; the supervisor needs it to take the member over.
                epoch = crate::group::consumer::next_epoch(&mut epochs), if epochs.is_some() => {
                    if epoch == reported_epoch {
                        continue;
                    }
                    reported_epoch = epoch;
                    self.reporter.send(Report::Joined {
                        member_id: self.member.member_id().to_string(),
                        generation: epoch,
                        partitions: owned.to_vec(),
                    });
                }
                _ = commit_tick.tick() => {
                    let started = Instant::now();
                    match self.commit(&mut positions).await {
                        Ok(()) => self.outage.recovered(&mut self.reporter),
                        Err(GroupError::Rebalance) => break GenerationEnd::Rebalance,
                        Err(GroupError::Other(e)) => {
                            // Keep consuming; the acknowledged offsets stay due and
                            // go out with a later commit once the broker answers.
                            self.outage.failed(&mut self.reporter, &format!("{e:#}"), started);
                        }
                        Err(e) => return Err(group_error(e)),
                    }
                }
                // Alive: idle, or the handler made progress since the last
                // report. A handler that holds records and acknowledges none
                // looks hung, however few records it holds (--hang-timeout).
                _ = alive_tick.tick() => {
                    if let Some(stalled) = self.handler.stalled_for(Instant::now()) {
                        if stalled >= self.cfg.consume.hang_timeout {
                            let why = self.handler.stall_message(stalled, "--hang-timeout");
                            stop_fetchers(&mut fetchers);
                            self.commit_or_warn(&mut positions, "before the restart").await;
                            return Err(anyhow::anyhow!("handler failed: {why}"));
                        }
                    }
                    if self.handler.in_flight() == 0 || self.acked() > self.last_alive.1 {
                        self.alive();
                    }
                    self.report_stats(owned);
                }
                fetched = rx.recv(), if pending.is_none() => match fetched {
                    Some(Fetched::Records(records)) => pending = Some(Pending { records, next: 0 }),
                    Some(Fetched::Fatal(why)) => {
                        stop_fetchers(&mut fetchers);
                        self.commit_or_warn(&mut positions, "before stopping").await;
                        return Err(ConfigError(why).into());
                    }
                    None => {}
                },
            }
        };
        stop_fetchers(&mut fetchers);
        // Everything already handed to the handler must be acknowledged
        // before we commit and let another member take the partitions. A
        // rebalance waits for us only up to the rebalance timeout, so its
        // drain must end well before that.
        let closing = !matches!(end, GenerationEnd::Rebalance);
        let limit = if closing {
            self.cfg.consume.shutdown_timeout
        } else {
            self.cfg
                .consume
                .shutdown_timeout
                .min(self.cfg.consume.rebalance_timeout.mul_f64(0.75))
        };
        match self.drain(&mut positions, closing, limit).await {
            Drained::All | Drained::TimedOut => {}
            Drained::Failed(why) => {
                warn!(
                    slot = self.cfg.slot,
                    "{why}; records not acknowledged will be delivered again"
                );
            }
            Drained::Untrusted(why) => {
                self.take_back(&positions).await;
                return Err(anyhow::anyhow!(why));
            }
        }
        let when = match end {
            GenerationEnd::Rebalance => "before the rebalance",
            _ => "before stopping",
        };
        self.commit_or_warn(&mut positions, when).await;
        positions.carry_into(&mut self.carried);
        Ok(end)
    }

    /// The first bytes of the record the handler most likely died on (the
    /// first it did not acknowledge), read again from its leader: the worker
    /// no longer holds it. Empty if it cannot be read in a few seconds.
    async fn first_unacked_value(&mut self) -> String {
        let Some((p, o)) = self.handler.first_unacked() else {
            return String::new();
        };
        match tokio::time::timeout(Duration::from_secs(3), self.cluster.peek(p, o)).await {
            Ok(Ok(Some(r))) if r.offset == o => format!(
                "; the value of that record begins {}",
                verdicts::first_bytes(r.value.as_deref())
            ),
            _ => String::new(),
        }
    }

    /// A handler failure for the worker's exit: a handler that could not be
    /// started at all is a configuration error.
    fn handler_failure(&self, why: String) -> anyhow::Error {
        if self.acked() == 0 && self.handler.could_not_start() {
            return ConfigError(why).into();
        }
        anyhow::anyhow!("handler failed: {why}")
    }

    /// Records the handler acknowledged since the worker started.
    fn acked(&self) -> u64 {
        self.sent.saturating_sub(self.handler.in_flight() as u64)
    }

    /// The statistics `--metrics-addr` shows, to the supervisor.
    fn report_stats(&mut self, owned: &[i32]) {
        use crate::metrics::WorkerStats;
        use std::sync::atomic::Ordering;
        let mut parts = handled_stats(owned, &self.handler);
        let latency = self.handler.handled().1;
        for (p, e) in parts.iter_mut() {
            e.committed = self.committed_at.get(p).copied();
            e.high_watermark = self
                .high_watermarks
                .get(p)
                .map(|h| h.load(Ordering::Relaxed))
                .filter(|&h| h >= 0);
        }
        self.reporter.send(Report::Stats(WorkerStats {
            partitions: parts.into_values().collect(),
            in_flight_records: self.handler.in_flight() as u64,
            in_flight_bytes: self.handler.in_flight_bytes() as u64,
            ack_latency: latency.clone(),
            rebalances: self.rebalances,
            verdicts: self.verdict_counts,
        }));
    }

    fn alive(&mut self) {
        let records = self.acked();
        self.last_alive = (Instant::now(), records);
        self.reporter.send(Report::Alive { records });
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
            self.handler.close_input().await;
        }
        let mut commit_tick = tokio::time::interval(self.cfg.consume.commit_interval);
        commit_tick.reset();
        // The handler's last verdicts may still send records to the
        // dead-letter topic: wait for those copies too (within the limit).
        let mut ended = false;
        loop {
            let handler_done = ended || (!closing && self.handler.in_flight() == 0);
            if handler_done && self.copies_pending == 0 {
                return Drained::All;
            }
            tokio::select! {
                outcome = copy_outcome(self.dead_letters.as_mut()), if self.copies_pending > 0 => {
                    if let Err(why) = self.copy_written(outcome, positions) {
                        return Drained::Failed(why);
                    }
                }
                _ = tokio::time::sleep_until(deadline), if handler_done => {
                    warn!(
                        slot = self.cfg.slot,
                        "{} dead-letter copies were not confirmed within {limit:?}; their records stay uncommitted and will be delivered again",
                        self.copies_pending
                    );
                    return Drained::TimedOut;
                }
                ev = tokio::time::timeout_at(deadline, self.handler.next_event()), if !handler_done => match ev {
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
                        let held = self.handler.in_flight();
                        if held > 0 {
                            warn!(
                                slot = self.cfg.slot,
                                in_flight = held,
                                "the handler did not acknowledge {held} record(s) within {limit:?}; they will be delivered again"
                            );
                        } else {
                            warn!(
                                slot = self.cfg.slot,
                                "the handler acknowledged every record but did not exit within {limit:?} of its input being closed (--shutdown-timeout); killing it"
                            );
                        }
                        if closing {
                            self.handler.kill();
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
                        slot = self.cfg.slot,
                        "the record at partition {} offset {} goes to the dead-letter topic: {} ({} attempt(s))",
                        d.record.partition, d.record.offset, d.reason, d.attempts
                    );
                    if let Some(dl) = self.dead_letters.as_ref() {
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
                slot = self.cfg.slot,
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
                slot = self.cfg.slot,
                "took back the commits of this assignment: offsets {back:?} (partition, offset) are committed again"
            ),
            Err(e) => tracing::error!(
                slot = self.cfg.slot,
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
        debug!(slot = self.cfg.slot, "committed");
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

/// The dead-letter task's next outcome (never without the task).
async fn copy_outcome(dl: Option<&mut DeadLetters>) -> Outcome {
    match dl {
        Some(d) => match d.outcomes.recv().await {
            Some(o) => o,
            None => Outcome::Fatal("the dead-letter task ended".into()),
        },
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
