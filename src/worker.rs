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
use crate::cli::WorkerArgs;
use crate::config::{StartFrom, WorkerConfig};
use crate::group::{GroupError, GroupSettings, Member};
use crate::handler::{Handler, HandlerEnv, HandlerEvent};
use crate::record::Record;
use crate::report::Report;
use crate::wire::records::{decode_fetched, AbortedTxn};

/// Fetched batches buffered per worker ahead of the handler (pipelining).
const FETCH_QUEUE: usize = 2;
/// Staged bytes handed to the handler at once at most (a fetched batch is
/// staged whole unless it formats to more than this).
const CHUNK_BYTES: usize = 256 * 1024;
/// The largest fetch we grow to when a single record batch is larger than
/// the fetch asked for and the broker cuts it off (brokers before KIP-74).
const MAX_FETCH_BYTES: i32 = 64 * 1024 * 1024;
/// Alive reports to the supervisor, this often.
const ALIVE_EVERY: Duration = Duration::from_secs(1);

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

/// Why a generation's consume loop ended.
enum GenerationEnd {
    Rebalance,
    Shutdown,
    OutputClosed,
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
}

async fn run(cfg: WorkerConfig) -> anyhow::Result<()> {
    let mut reporter = Reporter::open(cfg.report_fd)?;
    reporter.send(Report::Started {
        pid: std::process::id(),
    });
    let (shutdown, hand_over) = watch_shutdown_signals()?;

    let client = crate::admin::connect(&cfg.connect).await?;

    let mut member = Member::connect(GroupSettings::from_worker(&cfg))
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
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
    let mut handler = Handler::start(
        &cfg.consume.handler,
        cfg.consume.format,
        cfg.consume.max_in_flight,
        HandlerEnv {
            slot: cfg.slot,
            group: cfg.consume.group.clone(),
            topic: cfg.topic.clone(),
        },
    )
    .await?;
    handler.limit_bytes(cfg.consume.max_in_flight_bytes);

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
    };
    let result = worker.consume().await;
    match &result {
        Ok(()) => {}
        Err(e) => worker.reporter.send(Report::Fatal {
            message: format!("{e:#}"),
        }),
    }
    result
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
                None => tokio::select! {
                    r = self.member.join() => r.map_err(group_error)?,
                    _ = changed_to_true(&mut self.shutdown) => return self.finish("signal").await,
                },
            };
            info!(
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

    async fn start_offsets(&mut self, owned: &[i32]) -> anyhow::Result<BTreeMap<i32, Position>> {
        let committed = self.member.committed(owned).await.map_err(group_error)?;
        let mut out = BTreeMap::new();
        for &p in owned {
            let start = match committed.get(&p).copied().flatten() {
                Some(o) if o >= 0 => o,
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
        let mut positions = self.start_offsets(owned).await?;
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
        let end = loop {
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
                        self.commit(&mut positions).await.ok();
                        return Err(anyhow::anyhow!("handler failed: {why}"));
                    }
                    None => {
                        stop_fetchers(&mut fetchers);
                        self.commit(&mut positions).await.ok();
                        return Err(anyhow::anyhow!("handler ended unexpectedly"));
                    }
                },
                r = self.member.rebalance_needed() => {
                    r.map_err(group_error)?;
                    break GenerationEnd::Rebalance;
                }
                _ = commit_tick.tick() => {
                    if let Err(e) = self.commit(&mut positions).await {
                        match e {
                            GroupError::Rebalance => break GenerationEnd::Rebalance,
                            other => return Err(group_error(other)),
                        }
                    }
                }
                // Alive: idle, or the handler made progress since the last
                // report. A handler that holds records and acknowledges none
                // looks hung, however few records it holds (--hang-timeout).
                _ = alive_tick.tick() => {
                    if self.handler.in_flight() == 0 || self.acked() > self.last_alive.1 {
                        self.alive();
                    }
                }
                batch = rx.recv() => {
                    let Some(batch) = batch else { continue };
                    if let Some(end) = self.deliver(batch).await? {
                        break end;
                    }
                }
            }
        };
        stop_fetchers(&mut fetchers);
        // Everything already handed to the handler must be acknowledged
        // before we commit and let another member take the partitions.
        let closing = !matches!(end, GenerationEnd::Rebalance);
        self.drain(&mut positions, closing).await;
        match self.commit(&mut positions).await {
            Ok(()) | Err(GroupError::Rebalance) => {}
            Err(e) => warn!(slot = self.cfg.slot, "final commit failed: {e}"),
        }
        Ok(end)
    }

    /// Hand one fetched batch to the handler: stage as many records as it has
    /// room for, hand them over, and when it has none, wait for room while
    /// still noticing signals and rebalances (one fetched batch may hold
    /// thousands of records, too many for a slow handler to take before the
    /// group's rebalance timeout runs out).
    async fn deliver(&mut self, batch: FetchedBatch) -> anyhow::Result<Option<GenerationEnd>> {
        let mut records = batch.records.iter().peekable();
        while let Some(&record) = records.peek() {
            if self.handler.room() == 0 {
                if self.handler.flush().is_err() {
                    return Ok(None);
                }
                tokio::select! {
                    biased;
                    _ = self.handler.ready() => {}
                    _ = changed_to_true(&mut self.shutdown) => return Ok(Some(GenerationEnd::Shutdown)),
                    r = self.member.rebalance_needed() => {
                        r.map_err(group_error)?;
                        return Ok(Some(GenerationEnd::Rebalance));
                    }
                }
                if self.handler.room() == 0 {
                    // The handler is gone; its Failed event says why.
                    return Ok(None);
                }
                // The consume loop's Alive tick does not run while we are here;
                // a handler that makes progress is alive, one that does not is not.
                if self.last_alive.0.elapsed() >= ALIVE_EVERY && self.acked() > self.last_alive.1 {
                    self.alive();
                }
            }
            if self.handler.stage(record).is_err() {
                let _ = self.handler.flush();
                return Ok(None);
            }
            records.next();
            self.sent += 1;
            if self.handler.staged_bytes() >= CHUNK_BYTES && self.handler.flush().is_err() {
                return Ok(None);
            }
        }
        if self.handler.flush().is_err() {
            return Ok(None);
        }
        Ok(None)
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

    /// Wait (bounded by --shutdown-timeout) for the handler to acknowledge
    /// everything it holds. On a final stop, close its input first.
    async fn drain(&mut self, positions: &mut BTreeMap<i32, Position>, closing: bool) {
        let deadline = Instant::now() + self.cfg.consume.shutdown_timeout;
        if closing {
            self.handler.close_input().await;
        }
        while self.handler.in_flight() > 0 || closing {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.handler.next_event()).await {
                Ok(Some(HandlerEvent::Ack(a))) => self.on_ack(positions, a.partition, a.offset),
                Ok(Some(HandlerEvent::Failed(why))) => {
                    warn!(
                        slot = self.cfg.slot,
                        "{why}; records not acknowledged will be delivered again"
                    );
                    break;
                }
                Ok(Some(HandlerEvent::OutputClosed)) | Ok(None) => break,
                Err(_) => {
                    warn!(
                        slot = self.cfg.slot,
                        in_flight = self.handler.in_flight(),
                        "handler did not acknowledge within --shutdown-timeout; those records will be delivered again"
                    );
                    if closing {
                        self.handler.kill();
                    }
                    break;
                }
            }
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

fn group_error(e: GroupError) -> anyhow::Error {
    anyhow::anyhow!("{e}")
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
                        failures += 1;
                        let pause = Duration::from_millis((50u64 << failures.min(6)).min(2000));
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
                failures += 1;
                let pause = Duration::from_millis((50u64 << failures.min(6)).min(2000));
                warn!(partition, "fetch failed ({e}); retrying in {pause:?}");
                tokio::time::sleep(pause).await;
            }
        }
    }
}
