//! One consumer-group member: join, fetch (rskafka), hand records to the
//! handler, commit what the handler acknowledged, report to the supervisor.
//!
//! Runs on a current-thread tokio runtime: one worker is meant to use one core,
//! and handler children must be spawned from a thread that lives as long as the
//! worker (PR_SET_PDEATHSIG fires when the spawning thread exits).

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rskafka::client::partition::{OffsetAt, PartitionClient, UnknownTopicHandling};
use rskafka::client::Client;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::app::ExitWith;
use crate::backoff::Doubling;
use crate::cli::WorkerArgs;
use crate::config::{StartFrom, WorkerConfig};
use crate::group::{GroupError, GroupSettings, Member};
use crate::handler::{Handler, HandlerEnv, HandlerEvent, Refused};
use crate::record::Record;
use crate::report::{Report, EXIT_CONFIG};
use crate::wire::records::{decode_fetched, AbortedTxn};

/// Fetched batches buffered per worker ahead of the handler (pipelining).
const FETCH_QUEUE: usize = 2;
/// Staged bytes handed to the handler at once at most (a fetched batch is
/// staged whole unless it formats to more than this).
const CHUNK_BYTES: usize = 256 * 1024;
/// The largest fetch we grow to when a single record batch is larger than
/// the fetch asked for and the broker cuts it off (brokers before KIP-74).
const MAX_FETCH_BYTES: i32 = 64 * 1024 * 1024;
/// The in-flight window never goes below this many records (see
/// `handler::window`).
const MIN_WINDOW: usize = 100;
/// Alive reports to the supervisor, this often.
const ALIVE_EVERY: Duration = Duration::from_secs(1);
/// While the brokers cannot be reached: the first pause before trying again,
/// the longest, and how often the supervisor hears that it still lasts.
const OUTAGE_PAUSE: Doubling = Doubling::new(Duration::from_millis(500), Duration::from_secs(10));
/// Fetch retries (a failed fetch, a corrupt batch): 100 ms doubling to 2 s.
const FETCH_PAUSE: Doubling = Doubling::new(Duration::from_millis(100), Duration::from_secs(2));
const OUTAGE_REPORT_EVERY: Duration = Duration::from_secs(5);

pub fn cmd(args: WorkerArgs) -> anyhow::Result<()> {
    let cfg = WorkerConfig::from_args(&args)?;
    check_parent_alive()?;
    keep_freed_buffers();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the worker's runtime")?;
    rt.block_on(run(cfg))
}

/// A worker allocates and frees a buffer of a few hundred KiB per fetch.
/// glibc's defaults (mmap above 128 KiB, trim the heap top above 256 KiB,
/// both adjusted as it goes) return such buffers to the kernel and fault
/// fresh zeroed pages in for the next one: in `perf record` of `kswarm run
/// --exec` that was several percent of the worker's CPU in page faults and
/// page clearing, and fixed thresholds took the run's CPU per 1M records from
/// 0.39 to about 0.30 s at the same peak RSS. Freed buffers are kept and reused.
fn keep_freed_buffers() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets two allocator tunables; it is called once,
    // before the runtime (and any other thread) starts.
    #[allow(unsafe_code)]
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 4 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 8 << 20);
    }
}

/// The supervisor sets PR_SET_PDEATHSIG before exec; if it died before that,
/// we are already an orphan: stop now instead of consuming unsupervised.
fn check_parent_alive() -> anyhow::Result<()> {
    if let Ok(want) = std::env::var("KSWARM_SUPERVISOR_PID") {
        let parent = nix::unistd::getppid().as_raw().to_string();
        if parent != want {
            return Err(
                ExitWith(1, format!("supervisor (pid {want}) is gone; worker exits")).into(),
            );
        }
    }
    Ok(())
}

/// Writes reports to the supervisor's pipe; a no-op without `--report-fd`.
struct Reporter {
    out: Option<std::fs::File>,
}

impl Reporter {
    fn open(fd: Option<i32>) -> anyhow::Result<Self> {
        let out = match fd {
            // Re-opening /dev/fd/N gives us the pipe without unsafe fd adoption.
            Some(fd) => Some(
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(format!("/dev/fd/{fd}"))
                    .with_context(|| format!("--report-fd {fd} is not open for writing"))?,
            ),
            None => None,
        };
        Ok(Self { out })
    }

    fn try_clone(&self) -> Self {
        Self {
            out: self.out.as_ref().and_then(|f| f.try_clone().ok()),
        }
    }

    fn send(&mut self, report: Report) {
        if let Some(out) = &mut self.out {
            // A supervisor that stopped reading is dead; PDEATHSIG ends us soon.
            let _ = out.write_all(report.to_line().as_bytes());
        }
    }
}

/// One partition's positions: what went to the handler and what it acknowledged.
#[derive(Debug, Clone, Copy)]
struct Position {
    /// Next offset to commit (one past the last acknowledged record).
    acked_next: i64,
    /// What the broker has committed for us.
    committed: i64,
}

struct FetchedBatch {
    records: Vec<Record>,
}

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
    topic: Arc<str>,
    client: Client,
    partitions: HashMap<i32, Arc<PartitionClient>>,
    member: Member,
    handler: Handler,
    reporter: Reporter,
    shutdown: tokio::sync::watch::Receiver<bool>,
    /// Set with `shutdown` by SIGUSR1: stop without leaving the group.
    hand_over: Arc<AtomicBool>,
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
}

/// A worker error that restarting cannot fix (a handler that cannot be run,
/// a setting the broker refuses): the worker exits with [`EXIT_CONFIG`] and
/// the supervisor stops with exit status 2 instead of restarting it.
#[derive(Debug)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

async fn run(cfg: WorkerConfig) -> anyhow::Result<()> {
    let mut reporter = Reporter::open(cfg.report_fd)?;
    reporter.send(Report::Started {
        pid: std::process::id(),
    });
    let (mut shutdown, hand_over) = watch_shutdown_signals()?;
    let mut outage = OutageClock {
        brokers: cfg.connect.brokers.join(","),
        ..OutageClock::default()
    };

    // The brokers may be down when we start (an outage, a restart of the
    // whole cluster): wait for them like for any other outage.
    let client = loop {
        let started = Instant::now();
        match crate::admin::connect(&cfg.connect).await {
            Ok(c) => break c,
            Err(e) => {
                let pause = outage.failed(&mut reporter, &format!("{e:#}"), started);
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = changed_to_true(&mut shutdown) => return Ok(()),
                }
            }
        }
    };
    let mut member = loop {
        let started = Instant::now();
        match Member::connect(GroupSettings::from_worker(&cfg)).await {
            Ok(m) => break m,
            Err(GroupError::Other(e)) => {
                let pause = outage.failed(&mut reporter, &format!("{e:#}"), started);
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = changed_to_true(&mut shutdown) => return Ok(()),
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
    let handler = Handler::start(
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
    .await;
    let mut handler = match handler {
        Ok(h) => h,
        Err(e) => return Err(fatal(&mut reporter, e)),
    };
    handler.limit_bytes(cfg.consume.max_in_flight_bytes);
    // An --exec-batch handler needs two whole batches in flight (one running,
    // one filling); other handlers start small and grow with their rate.
    let floor = match &cfg.consume.handler {
        crate::config::HandlerSpec::Batch { size, .. } => size.saturating_mul(2),
        _ => MIN_WINDOW,
    };
    handler.limit_time(cfg.consume.max_in_flight_time, floor);

    let mut worker = Worker {
        topic: Arc::from(cfg.topic.as_str()),
        cfg,
        client,
        partitions: HashMap::new(),
        member,
        handler,
        reporter,
        shutdown,
        hand_over,
        sent: 0,
        last_alive: (Instant::now(), 0),
        outage,
        carried: BTreeMap::new(),
    };
    let result = worker.consume().await;
    match result {
        Ok(()) => Ok(()),
        Err(e) => Err(fatal(&mut worker.reporter, e)),
    }
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

/// How long the brokers have been out of reach, and the pacing of retries.
#[derive(Debug, Default)]
struct OutageClock {
    /// `--brokers`, named in every report.
    brokers: String,
    since: Option<Instant>,
    attempts: u32,
    last_report: Option<Instant>,
}

impl OutageClock {
    /// One more failed try: log and report it (not every time), and return
    /// the pause before the next (doubling from 0.5 s to 10 s).
    /// `started`: when the failed try began (a try may itself retry for
    /// --connect-timeout before it gives up): the outage began then.
    fn failed(&mut self, reporter: &mut Reporter, error: &str, started: Instant) -> Duration {
        let error = if error.contains(&self.brokers) {
            error.to_string()
        } else {
            format!("--brokers {}: {error}", self.brokers)
        };
        let now = Instant::now();
        let since = *self.since.get_or_insert(started);
        let due = self
            .last_report
            .is_none_or(|t| now.duration_since(t) >= OUTAGE_REPORT_EVERY);
        if due {
            warn!(
                event = "broker_outage",
                "requests to the brokers fail, for {:?} now: {error}; waiting and retrying",
                now.duration_since(since)
            );
            reporter.send(Report::Outage {
                error: error.to_string(),
            });
            self.last_report = Some(now);
        }
        let pause = OUTAGE_PAUSE.delay(self.attempts);
        self.attempts += 1;
        pause
    }

    fn recovered(&mut self, reporter: &mut Reporter) {
        if let Some(since) = self.since.take() {
            info!(
                event = "broker_recovered",
                "the brokers answer again after {:?}",
                since.elapsed()
            );
            reporter.send(Report::Recovered);
        }
        self.attempts = 0;
        self.last_report = None;
    }
}

/// TERM or INT -> graceful stop (drain, commit, leave). USR1 -> hand-over,
/// what the supervisor sends for a rolling restart and at shutdown: drain and
/// commit the same way, but stay in the group; the slot's next worker takes
/// the member over without a rebalance, or at shutdown the supervisor removes
/// all members in one LeaveGroup. A TERM or INT after a USR1 still leaves.
fn watch_shutdown_signals() -> anyhow::Result<(tokio::sync::watch::Receiver<bool>, Arc<AtomicBool>)>
{
    use tokio::signal::unix::{signal, SignalKind};
    let (tx, rx) = tokio::sync::watch::channel(false);
    let hand_over = Arc::new(AtomicBool::new(false));
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut usr1 = signal(SignalKind::user_defined1())?;
    let flag = hand_over.clone();
    tokio::spawn(async move {
        loop {
            let leave = tokio::select! {
                _ = term.recv() => true,
                _ = int.recv() => true,
                _ = usr1.recv() => false,
            };
            if leave {
                flag.store(false, Ordering::SeqCst);
            } else if !*tx.borrow() {
                flag.store(true, Ordering::SeqCst);
            }
            let _ = tx.send(true);
        }
    });
    Ok((rx, hand_over))
}

async fn changed_to_true(rx: &mut tokio::sync::watch::Receiver<bool>) {
    if *rx.borrow() {
        return;
    }
    while rx.changed().await.is_ok() {
        if *rx.borrow() {
            return;
        }
    }
    // Sender gone: never fires.
    std::future::pending::<()>().await
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
                _ = changed_to_true(&mut self.shutdown) => return Ok(None),
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
                        _ = changed_to_true(&mut self.shutdown) => return Ok(None),
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
        if self.hand_over.load(Ordering::SeqCst) {
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

    async fn partition_client(&mut self, p: i32) -> anyhow::Result<Arc<PartitionClient>> {
        if let Some(pc) = self.partitions.get(&p) {
            return Ok(pc.clone());
        }
        let pc = Arc::new(
            self.client
                .partition_client(self.topic.to_string(), p, UnknownTopicHandling::Retry)
                .await
                .with_context(|| format!("no client for partition {p} of {}", self.topic))?,
        );
        self.partitions.insert(p, pc.clone());
        Ok(pc)
    }

    /// Where each owned partition starts: its committed offset, or --from.
    /// Waits out broker outages; None if the group rebalanced or a stop
    /// signal came meanwhile.
    async fn start_offsets(
        &mut self,
        owned: &[i32],
    ) -> anyhow::Result<Option<BTreeMap<i32, Position>>> {
        let mut stop = self.shutdown.clone();
        loop {
            let started = Instant::now();
            let attempt = tokio::select! {
                r = self.try_start_offsets(owned) => r,
                _ = changed_to_true(&mut stop) => return Ok(None),
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
                            _ = changed_to_true(&mut self.shutdown) => return Ok(None),
                        }
                    }
                },
            }
        }
    }

    async fn try_start_offsets(
        &mut self,
        owned: &[i32],
    ) -> anyhow::Result<BTreeMap<i32, Position>> {
        let committed = self.member.committed(owned).await?;
        let mut out = BTreeMap::new();
        for &p in owned {
            let carried = self.carried.get(&p).copied();
            let broker = committed.get(&p).copied().flatten().filter(|&o| o >= 0);
            if let Some(c) = carried.filter(|&c| broker.is_none_or(|o| c > o)) {
                // Handled by us, not yet committed: commit it, do not deliver it again.
                out.insert(
                    p,
                    Position {
                        acked_next: c,
                        committed: broker.unwrap_or(-1),
                    },
                );
                continue;
            }
            let start = match broker {
                Some(o) => o,
                _ => {
                    let pc = self.partition_client(p).await?;
                    let at = match self.cfg.consume.from {
                        StartFrom::Earliest => OffsetAt::Earliest,
                        StartFrom::Latest => OffsetAt::Latest,
                    };
                    pc.get_offset(at)
                        .await
                        .with_context(|| format!("cannot read the start offset of partition {p}"))?
                }
            };
            out.insert(
                p,
                Position {
                    acked_next: start,
                    committed: start,
                },
            );
        }
        Ok(out)
    }

    async fn consume_generation(&mut self, owned: &[i32]) -> anyhow::Result<GenerationEnd> {
        let Some(mut positions) = self.start_offsets(owned).await? else {
            return Ok(if *self.shutdown.borrow() {
                GenerationEnd::Shutdown
            } else {
                GenerationEnd::Rebalance
            });
        };
        // Where this assignment began: what a handler whose acknowledgements
        // turn out to be untrustworthy is rolled back to.
        let assigned_at: BTreeMap<i32, i64> = positions
            .iter()
            .map(|(&p, pos)| (p, pos.committed))
            .collect();
        let (tx, mut rx) = mpsc::channel::<FetchedBatch>(FETCH_QUEUE);
        let mut fetchers: Vec<JoinHandle<()>> = Vec::new();
        let fetch_bytes = crate::config::partition_fetch_bytes(
            self.cfg.consume.fetch_max_bytes,
            self.cfg.consume.partition_fetch_max_bytes,
            positions.len(),
        );
        for (&p, pos) in &positions {
            let pc = self.partition_client(p).await?;
            fetchers.push(tokio::spawn(fetch_loop(
                pc,
                pos.acked_next,
                tx.clone(),
                fetch_bytes,
                self.cfg.consume.fetch_wait_ms,
                self.cfg.consume.from,
            )));
        }
        drop(tx);
        let stop_fetchers = |fetchers: &mut Vec<JoinHandle<()>>| {
            for f in fetchers.drain(..) {
                f.abort();
            }
        };

        let mut commit_tick = tokio::time::interval(self.cfg.consume.commit_interval);
        let mut alive_tick = tokio::time::interval(ALIVE_EVERY);
        // One loop for everything, so that a handler with a backlog never
        // keeps the worker from committing, reporting or noticing a
        // rebalance: the pending batch is handed over as the handler makes room.
        let mut pending: Option<Pending> = None;
        let end = loop {
            if let Some(p) = pending.as_mut() {
                let offered = self.handler.offer(&p.records[p.next..], CHUNK_BYTES);
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
                _ = changed_to_true(&mut self.shutdown) => break GenerationEnd::Shutdown,
                ev = self.handler.next_event() => match ev {
                    Some(HandlerEvent::Ack(a)) => self.on_ack(&mut positions, a.partition, a.offset),
                    Some(HandlerEvent::OutputClosed) => break GenerationEnd::OutputClosed,
                    Some(HandlerEvent::Failed(why)) => {
                        // Commit what was acknowledged, but stay in the group:
                        // the supervisor's replacement takes our membership
                        // over. A LeaveGroup here would only force a rebalance
                        // (and a broker like tansu keeps a leader that leaves
                        // mid-rebalance as leader, so the group never forms).
                        stop_fetchers(&mut fetchers);
                        self.commit_or_warn(&mut positions, "before the restart").await;
                        return Err(self.handler_failure(why));
                    }
                    Some(HandlerEvent::Untrusted(why)) => {
                        stop_fetchers(&mut fetchers);
                        self.take_back(&positions, &assigned_at).await;
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
                }
                batch = rx.recv(), if pending.is_none() => {
                    if let Some(b) = batch {
                        pending = Some(Pending { records: b.records, next: 0 });
                    }
                }
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
                self.take_back(&positions, &assigned_at).await;
                return Err(anyhow::anyhow!(why));
            }
        }
        let when = match end {
            GenerationEnd::Rebalance => "before the rebalance",
            _ => "before stopping",
        };
        self.commit_or_warn(&mut positions, when).await;
        for (&p, pos) in &positions {
            if pos.acked_next > pos.committed {
                self.carried.insert(p, pos.acked_next);
            } else {
                self.carried.remove(&p);
            }
        }
        Ok(end)
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

    fn alive(&mut self) {
        let records = self.acked();
        self.last_alive = (Instant::now(), records);
        self.reporter.send(Report::Alive { records });
    }

    fn on_ack(&mut self, positions: &mut BTreeMap<i32, Position>, partition: i32, offset: i64) {
        if let Some(pos) = positions.get_mut(&partition) {
            if offset + 1 > pos.acked_next {
                pos.acked_next = offset + 1;
            }
        }
    }

    /// Wait, at most `limit`, for the handler to acknowledge everything it
    /// holds; commit what it acknowledges meanwhile (every --commit-interval),
    /// so that a drain cut short by its limit loses as little as possible.
    /// On a final stop, close the handler's input first and wait for it to end.
    async fn drain(
        &mut self,
        positions: &mut BTreeMap<i32, Position>,
        closing: bool,
        limit: Duration,
    ) -> Drained {
        let deadline = tokio::time::Instant::now() + limit;
        if closing {
            self.handler.close_input().await;
        }
        let mut commit_tick = tokio::time::interval(self.cfg.consume.commit_interval);
        commit_tick.reset();
        loop {
            if !closing && self.handler.in_flight() == 0 {
                return Drained::All;
            }
            tokio::select! {
                ev = tokio::time::timeout_at(deadline, self.handler.next_event()) => match ev {
                    Ok(Some(HandlerEvent::Ack(a))) => self.on_ack(positions, a.partition, a.offset),
                    Ok(Some(HandlerEvent::Failed(why))) => return Drained::Failed(why),
                    Ok(Some(HandlerEvent::Untrusted(why))) => return Drained::Untrusted(why),
                    Ok(Some(HandlerEvent::OutputClosed)) | Ok(None) => return Drained::All,
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

    /// Commit what was acknowledged; say so if that fails (those records
    /// will be delivered again).
    async fn commit_or_warn(&mut self, positions: &mut BTreeMap<i32, Position>, when: &str) {
        let due: u64 = positions
            .values()
            .map(|p| (p.acked_next - p.committed).max(0) as u64)
            .sum();
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
    async fn take_back(
        &mut self,
        positions: &BTreeMap<i32, Position>,
        assigned_at: &BTreeMap<i32, i64>,
    ) {
        let back: Vec<(i32, i64)> = positions
            .iter()
            .filter_map(|(&p, pos)| {
                let start = *assigned_at.get(&p)?;
                (pos.committed != start).then_some((p, start))
            })
            .collect();
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

    async fn commit(&mut self, positions: &mut BTreeMap<i32, Position>) -> Result<(), GroupError> {
        let due: Vec<(i32, i64)> = positions
            .iter()
            .filter(|(_, pos)| pos.acked_next != pos.committed)
            .map(|(&p, pos)| (p, pos.acked_next))
            .collect();
        if due.is_empty() {
            return Ok(());
        }
        self.member.commit(&due).await?;
        for (p, o) in due {
            if let Some(pos) = positions.get_mut(&p) {
                pos.committed = o;
            }
        }
        debug!(slot = self.cfg.slot, "committed");
        Ok(())
    }
}

/// A group error for the worker's exit: retrying cannot fix a fatal one, so
/// it is a configuration error (a setting the broker refuses, no rights...).
fn group_error(e: GroupError) -> anyhow::Error {
    match e {
        GroupError::Fatal(m) => ConfigError(m).into(),
        GroupError::Rebalance => anyhow::anyhow!("{e}"),
        GroupError::Other(e) => e,
    }
}

/// Fetch one partition from `offset` on, pipelined ahead of the handler by the
/// bounded channel. Ends when the receiver is gone or the task is aborted.
async fn fetch_loop(
    pc: Arc<PartitionClient>,
    mut offset: i64,
    tx: mpsc::Sender<FetchedBatch>,
    max_bytes: i32,
    wait_ms: i32,
    from: StartFrom,
) {
    use rskafka::client::error::{Error as KError, ProtocolError};
    let partition = pc.partition();
    let mut failures = 0u32;
    let mut limit = max_bytes;
    loop {
        match pc.fetch_raw(offset, 1..limit, wait_ms).await {
            Ok((raw, _high_watermark, aborted)) => {
                tracing::trace!(partition, offset, limit, bytes = raw.len(), "fetched");
                failures = 0;
                let mut records = Vec::new();
                let aborted = aborted
                    .into_iter()
                    .map(|(producer_id, first_offset)| AbortedTxn {
                        producer_id,
                        first_offset,
                    })
                    .collect();
                let decoded = match decode_fetched(partition, raw, offset, aborted, &mut records) {
                    Ok(d) => d,
                    Err(e) => {
                        // A corrupt batch does not heal by itself; keep trying
                        // (the broker may serve it again from another replica)
                        // and say so, rather than skip records.
                        let pause = FETCH_PAUSE.delay(failures);
                        failures += 1;
                        warn!(partition, "{e}; fetching it again in {pause:?}");
                        tokio::time::sleep(pause).await;
                        continue;
                    }
                };
                if decoded.only_partial {
                    let grown = limit.saturating_mul(2).min(MAX_FETCH_BYTES);
                    if grown == limit {
                        warn!(
                            partition,
                            "a record batch at offset {offset} is larger than {limit} bytes; cannot fetch it"
                        );
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    } else {
                        debug!(partition, "a record batch at offset {offset} is larger than {limit} bytes; fetching up to {grown}");
                        limit = grown;
                    }
                    continue;
                }
                limit = max_bytes;
                if let Some(next) = decoded.next_offset {
                    offset = offset.max(next);
                }
                if records.is_empty() {
                    continue;
                }
                if tx.send(FetchedBatch { records }).await.is_err() {
                    return;
                }
            }
            Err(KError::ServerError {
                protocol_error: ProtocolError::OffsetOutOfRange,
                ..
            }) => {
                let at = match from {
                    StartFrom::Earliest => OffsetAt::Earliest,
                    StartFrom::Latest => OffsetAt::Latest,
                };
                match pc.get_offset(at).await {
                    Ok(o) => {
                        warn!(
                            partition,
                            "offset {offset} is out of range; resetting to {o} (--from)"
                        );
                        offset = o;
                    }
                    Err(e) => {
                        warn!(
                            partition,
                            "offset {offset} out of range and reset failed: {e}"
                        );
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
            }
            Err(e) => {
                let pause = FETCH_PAUSE.delay(failures);
                failures += 1;
                warn!(partition, "fetch failed ({e}); retrying in {pause:?}");
                tokio::time::sleep(pause).await;
            }
        }
    }
}
