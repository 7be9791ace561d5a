//! The worker of a share group (KIP-932, `--group-protocol share`).
//!
//! A share group hands out records, not partitions: every member may be
//! assigned every partition, and ShareFetch *acquires* records for this
//! member (for the broker's record lock, 30 s by default). The worker
//! hands acquired records (only those inside the acquired ranges) to the
//! same [`Handler`] as the classic worker, and turns the handler's
//! acknowledgements into ACCEPT; they ride on the next ShareFetch to that
//! partition's leader, or go in a ShareAcknowledge when there is no room
//! to fetch more. Nothing is committed: the broker keeps the share group's
//! state. A record acquired and not acknowledged (a crash, a SIGKILL) goes
//! back to the pool when its lock runs out, or at once when its share
//! session is closed.
//!
//! - one membership task ([`ShareMember`]): ShareGroupHeartbeat;
//! - one task per partition leader ([`session_task`]): its share session
//!   (epoch 0 opens, then 1, 2, ..; -1 closes), one request at a time;
//! - this loop: hands records over, keeps what the handler holds per
//!   partition, and decides each leader's next request.
//!
//! A stop (SIGTERM, SIGINT, or the supervisor's SIGUSR1): no more fetching;
//! records acquired and not yet handed over are RELEASEd; the handler
//! drains (up to --shutdown-timeout; what it did not acknowledge by then is
//! RELEASEd too); the sessions close with the last acknowledgements
//! (ShareAcknowledge, epoch -1); the member leaves (heartbeat epoch -1).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::cluster::{Cluster, ClusterError};
use super::copies::Outcome;
use super::core::{self, Core, Feed, ALIVE_EVERY, CHUNK_BYTES};
use super::error::{Result, WorkerError};
use crate::config::{StartFrom, WorkerConfig};
use crate::group::share::{unsupported_message, ShareMember, ShareState};
use crate::group::streak::{share_error_limit, ErrorStreaks};
use crate::group::GroupSettings;
use crate::handler::{HandlerEvent, Refused};
use crate::record::Record;
use crate::report::{Report, StopCause};
use crate::wire::configs::{self, ConfigOwner};
use crate::wire::share::{self as sw, AckType};
use crate::wire::BrokerConn;

mod judge;
mod leaders;
mod lease;
mod retry;
mod session;

use leaders::{records_per_fetch, SessionHandle};
use lease::Lease;
use retry::{Pauses, Waiting};
use session::{Acks, SessionReply};

/// How long the end of a stop waits for the sessions to close and the member to leave.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

pub(super) async fn run(cfg: WorkerConfig) -> Result<()> {
    let mut core = Core::open(cfg)?;
    let client_id =
        crate::group_size::client_id(core.cfg.slot, core.cfg.host_workers, &core.cfg.host_id);
    let mut cluster = Cluster::new(
        &core.cfg.topic,
        &core.cfg.connect.brokers,
        &client_id,
        core.cfg.connect.connect_timeout,
    );
    // The topic's leaders and id, waiting out outages; then the broker's
    // share group support and the group's start (share.auto.offset.reset).
    loop {
        let started = Instant::now();
        let r = match cluster.refresh().await {
            Ok(()) => prepare_group(&core.cfg, &client_id).await,
            Err(e) => Err(e),
        };
        match r {
            Ok(()) => break,
            Err(e @ ClusterError::Fatal(_)) => {
                return Err(core.fatal(WorkerError::Config(format!("{e:#}"))))
            }
            Err(e) => {
                if !core.wait_out(&e, started).await {
                    return Ok(());
                }
            }
        }
    }
    core.recovered();
    let Some(topic_id) = cluster.topic_ref().id else {
        let e = WorkerError::Config(format!(
            "--group-protocol share: the broker names no id for topic {} (Metadata v10+); share groups need a broker with topic ids (Kafka 4.1+)",
            core.cfg.topic
        ));
        return Err(core.fatal(e));
    };
    let fetch_records = fetch_records(&mut cluster, &core.cfg.consume.group).await;
    let member = join(&mut core).await;
    // Per-record acknowledgements: a share group acknowledges records one
    // by one (and under --verdicts each says ok, retry or reject).
    let feed = match Feed::start(&core.cfg, true).await {
        Ok(f) => f,
        Err(e) => return Err(core.fatal(e)),
    };
    let (replies_tx, replies) = mpsc::unbounded_channel();
    let limit = share_error_limit(
        core.cfg.consume.session_timeout,
        core.cfg.consume.session_timeout_auto,
    );
    let core_verdicts = core.cfg.consume.verdicts.clone();
    let mut w = ShareWorker {
        state: member.state(),
        member,
        core,
        feed,
        cluster,
        topic_id,
        fetch_records,
        assigned: Vec::new(),
        queue: VecDeque::new(),
        leases: HashMap::new(),
        pauses: Pauses::new(core_verdicts.as_ref()),
        waiting: Waiting::default(),
        cut_told: false,
        handed: BTreeMap::new(),
        held: HashMap::new(),
        copies: BTreeSet::new(),
        acks: BTreeMap::new(),
        sessions: HashMap::new(),
        replies_tx,
        replies,
        redelivered: 0,
        ack_failures: 0,
        rejected: 0,
        retried: 0,
        dead_lettered: 0,
        rebalances: 0,
        last_problem: None,
        errors: ErrorStreaks::new(limit),
        stop: None,
        handler_done: false,
        state_open: true,
    };
    match w.consume().await {
        Ok(()) => Ok(()),
        Err(e) => Err(w.core.fatal(e)),
    }
}

/// Start the membership. The supervisor names the member of this slot's
/// previous worker (to be taken over under the classic and consumer
/// protocols). A share member holds nothing worth taking over: it leaves on
/// the dead worker's behalf, and this worker joins as a new member.
async fn join(core: &mut Core) -> ShareMember {
    let cfg = &core.cfg;
    let settings = GroupSettings::from_worker(cfg);
    if let Some(old) = cfg
        .resume
        .as_ref()
        .map(|r| r.member_id.clone())
        .or_else(|| cfg.rejoin.clone())
    {
        match crate::group::evict(&settings.eviction(), std::slice::from_ref(&old), &[]).await {
            Ok(()) => info!(
                slot = cfg.slot,
                "the previous worker's share member {old} left the group"
            ),
            Err(e) => debug!(
                slot = cfg.slot,
                "could not remove share member {old}: {e:#}"
            ),
        }
    }
    let member = ShareMember::start(settings);
    core.reporter.send(Report::MemberId {
        member_id: member.member_id.clone(),
    });
    member
}

/// Check that the broker has share groups (else exit 2 with the way out),
/// set the group's `share.auto.offset.reset` to `--from` (a share group
/// starts at the latest offset unless told otherwise, and the setting is a
/// group config, read when a partition's share state is first made).
async fn prepare_group(
    cfg: &WorkerConfig,
    client_id: &str,
) -> std::result::Result<(), ClusterError> {
    let mut last = None;
    for b in &cfg.connect.brokers {
        let mut conn = match BrokerConn::connect(b, client_id, cfg.connect.connect_timeout).await {
            Ok(c) => c,
            Err(e) => {
                last = Some(e);
                continue;
            }
        };
        if !sw::supports_share_groups(&conn) {
            let detail = format!("its ApiVersions lists {}", sw::share_support(&conn));
            return Err(ClusterError::Fatal(unsupported_message(b, &detail)));
        }
        let value = match cfg.consume.from {
            StartFrom::Earliest => "earliest",
            StartFrom::Latest => "latest",
        };
        match configs::set_group_config(
            &mut conn,
            &cfg.consume.group,
            "share.auto.offset.reset",
            value,
        )
        .await
        {
            Ok(Ok(())) => debug!("share group {}: share.auto.offset.reset={value}", cfg.consume.group),
            Ok(Err((code, msg))) => warn!(
                "--from {value}: the broker refused the group config share.auto.offset.reset={value} ({}{}); the share group starts where the broker's setting says (latest by default)",
                crate::wire::group_msgs::code_name(code),
                if msg.is_empty() { String::new() } else { format!(": {msg}") }
            ),
            Err(e) if e.is_transport() => return Err(anyhow::Error::from(e).into()),
            Err(e) => warn!(
                "--from {value}: cannot set the group config share.auto.offset.reset ({e}); the share group starts where the broker's setting says (latest by default)"
            ),
        }
        return Ok(());
    }
    Err(ClusterError::Retry(match last {
        Some(e) => e.into(),
        None => anyhow::anyhow!("no broker given"),
    }))
}

/// The most records one ShareFetch asks for, from the record lock limit of
/// the group's partitions ([`records_per_fetch`]), as the log tells.
async fn fetch_records(cluster: &mut Cluster, group: &str) -> i32 {
    let locks = lock_limit(cluster, group).await;
    let records = records_per_fetch(locks.map(|(l, _)| l));
    match locks {
        Some((l, key)) => {
            info!("share group {group}: a ShareFetch asks for at most {records} records ({key} {l})")
        }
        None => info!(
            "share group {group}: a ShareFetch asks for at most {records} records (the record lock limit is not known: the default)"
        ),
    }
    records
}

/// The record lock limit and where it came from: the group's
/// `share.partition.max.record.locks` (Kafka 4.4: its own value, else the
/// broker's default), else the `group.share.partition.max.record.locks` of
/// partition 0's leader (Kafka 4.1 and 4.2 have no such group config).
/// None where neither can be read; a broker that does not answer within
/// the connect timeout does not hold up the start (the default serves).
async fn lock_limit(cluster: &mut Cluster, group: &str) -> Option<(i32, &'static str)> {
    let node = cluster.leader(0)?.node;
    let mut conn = cluster.conn(node).await.ok()?;
    let asks = [
        (
            ConfigOwner::Group(group),
            "share.partition.max.record.locks",
        ),
        (
            ConfigOwner::Broker(node),
            "group.share.partition.max.record.locks",
        ),
    ];
    let mut found = None;
    for (owner, key) in asks {
        let read = configs::read_config(&mut conn, owner, key);
        match tokio::time::timeout(cluster.connect_timeout(), read).await {
            Ok(Ok(Ok(Some(v)))) => found = v.parse::<i32>().ok().map(|l| (l, key)),
            Ok(Ok(Ok(None))) => {}
            Ok(Ok(Err((code, msg)))) => debug!(
                "the broker does not describe {key} of {owner:?} ({} {msg})",
                crate::wire::group_msgs::code_name(code)
            ),
            Ok(Err(e)) => debug!("cannot read {key} of {owner:?}: {e}"),
            Err(_) => {
                debug!("no answer about {key} of {owner:?} in time");
                break;
            }
        }
        if found.is_some() {
            break;
        }
    }
    cluster.put_conn(node, conn);
    found
}

struct ShareWorker {
    core: Core,
    feed: Feed,
    cluster: Cluster,
    member: ShareMember,
    state: tokio::sync::watch::Receiver<ShareState>,
    topic_id: u128,
    /// The most records one ShareFetch asks for ([`records_per_fetch`]).
    fetch_records: i32,
    /// The partitions the group assigns us now.
    assigned: Vec<i32>,
    /// Acquired records not yet taken by the handler.
    queue: VecDeque<Record>,
    /// Each record acquired and not yet acknowledged: its delivery count
    /// and lock.
    leases: HashMap<(i32, i64), Lease>,
    /// How `retry` spaces a record's deliveries.
    pauses: Pauses,
    /// Retried records waiting out their pause (their locks held).
    waiting: Waiting,
    /// The log was told once that a pause outlives the record lock.
    cut_told: bool,
    /// Under --verdicts: the records the handler holds (for a retry or a
    /// dead-letter copy).
    held: HashMap<(i32, i64), Record>,
    /// Records whose dead-letter copy is not acknowledged yet: REJECTed once it is.
    copies: BTreeSet<(i32, i64)>,
    /// Per partition: offsets handed to the handler and not yet
    /// acknowledged, in the order handed over.
    handed: BTreeMap<i32, VecDeque<i64>>,
    /// Acknowledgements not sent yet.
    acks: Acks,
    /// Per leader node.
    sessions: HashMap<i32, SessionHandle>,
    replies_tx: mpsc::UnboundedSender<SessionReply>,
    replies: mpsc::UnboundedReceiver<SessionReply>,
    /// Records that came with a delivery count above 1.
    redelivered: u64,
    /// Acknowledgements the broker refused (the record's lock had run out,
    /// its session was gone): those records are delivered again.
    ack_failures: u64,
    /// Records rejected because the handler cannot take them.
    rejected: u64,
    /// `retry` verdicts held for another delivery (or RELEASEd).
    retried: u64,
    /// Dead-letter copies the broker acknowledged.
    dead_lettered: u64,
    rebalances: u64,
    last_problem: Option<(Instant, String)>,
    /// Error answers in a row, per request and leader.
    errors: ErrorStreaks,
    /// A stop under way.
    stop: Option<Stopping>,
    /// The handler ended, or will not be waited for.
    handler_done: bool,
    /// The membership task still reports its state.
    state_open: bool,
}

/// How the loop ended.
enum End {
    Stop(StopCause),
    Failed(WorkerError),
}

/// A stop under way: how the loop ends, and until when the handler may
/// drain (None: no limit; the handler is done already).
struct Stopping {
    end: End,
    deadline: Option<tokio::time::Instant>,
}

/// Resolves at `deadline` (never without one).
async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

impl ShareWorker {
    async fn consume(&mut self) -> Result<()> {
        let mut alive_tick = tokio::time::interval(ALIVE_EVERY);
        loop {
            if self.stop.is_none() {
                if let Some(e) = self.offer() {
                    self.stop_with(End::Failed(e), None, false).await;
                }
            }
            self.dispatch(self.stop.is_some());
            if self.stopped() {
                break;
            }
            let stopping = self.stop.is_some();
            let deadline = self.stop.as_ref().and_then(|s| s.deadline);
            let next_retry = self.waiting.next_due().map(tokio::time::Instant::from_std);
            tokio::select! {
                biased;
                _ = self.core.shutdown.recv(), if !stopping => {
                    self.stop_with(End::Stop(StopCause::Signal), self.drain_deadline(), true).await;
                }
                ev = self.feed.handler.next_event(), if !self.handler_done => self.handler_event(ev).await,
                outcome = core::copy_outcome(self.feed.copies.as_mut()), if !self.copies.is_empty() => {
                    self.copy_outcome(outcome).await;
                }
                _ = sleep_until(deadline), if stopping && self.handler_done && !self.copies.is_empty() => {
                    self.copies_timed_out();
                }
                reply = self.replies.recv() => {
                    if let Some(r) = reply {
                        self.replied(r, stopping).await;
                    }
                }
                changed = self.state.changed(), if self.state_open && !stopping => {
                    self.membership_changed(changed.is_ok()).await;
                }
                _ = sleep_until(deadline), if stopping && !self.handler_done => self.drain_timed_out().await,
                _ = sleep_until(next_retry), if !stopping && next_retry.is_some() => self.retries_due(),
                _ = alive_tick.tick() => self.tick().await,
            }
        }
        self.finish().await
    }

    /// The stop is over: the handler is done, every dead-letter copy is
    /// settled and no request is under way.
    fn stopped(&self) -> bool {
        self.stop.is_some()
            && self.handler_done
            && self.copies.is_empty()
            && self.sessions.values().all(|s| !s.busy)
    }

    /// The handler's drain limit of a stop that begins now.
    fn drain_deadline(&self) -> Option<tokio::time::Instant> {
        Some(tokio::time::Instant::now() + self.core.cfg.consume.shutdown_timeout)
    }

    /// Begin a stop that ends with `end`, the handler draining until
    /// `deadline`; `close_input`: let the handler finish what it holds.
    async fn stop_with(
        &mut self,
        end: End,
        deadline: Option<tokio::time::Instant>,
        close_input: bool,
    ) {
        self.stop = Some(Stopping { end, deadline });
        self.begin_stop(close_input).await;
    }

    /// What the handler said (or that it ended).
    async fn handler_event(&mut self, ev: Option<HandlerEvent>) {
        let stopping = self.stop.is_some();
        match ev {
            Some(HandlerEvent::Ack(a)) => self.acked(a.partition, a.offset),
            Some(HandlerEvent::Judged(js)) => {
                for j in js {
                    self.judged(j);
                }
            }
            Some(HandlerEvent::OutputClosed) => {
                if !stopping {
                    let deadline = self.drain_deadline();
                    self.stop_with(End::Stop(StopCause::StdoutClosed), deadline, true)
                        .await;
                }
            }
            Some(HandlerEvent::Failed(why)) => {
                self.handler_done = true;
                self.release_handed();
                if stopping {
                    warn!(
                        slot = self.core.cfg.slot,
                        "{why}; records not acknowledged are released and delivered again"
                    );
                } else {
                    let e = self.feed.handler_failure(why);
                    self.stop_with(End::Failed(e), None, false).await;
                }
            }
            Some(HandlerEvent::Untrusted(why)) => {
                // ACCEPTs already sent cannot be taken back; what it
                // holds now is released, and the worker ends.
                self.handler_done = true;
                self.release_handed();
                let e = WorkerError::Handler(format!(
                    "{why} (share group: acknowledgements already sent cannot be taken back; the records it holds now are released)"
                ));
                match self.stop.as_mut() {
                    Some(s) => s.end = End::Failed(e),
                    None => self.stop_with(End::Failed(e), None, false).await,
                }
            }
            None => {
                self.handler_done = true;
                self.release_handed();
                if !stopping {
                    let e = WorkerError::Handler("handler ended unexpectedly".into());
                    self.stop_with(End::Failed(e), None, false).await;
                }
            }
        }
    }

    /// The dead-letter task wrote a copy (its record is REJECTed now), or
    /// failed for good.
    async fn copy_outcome(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Written(_, _, p, o) => {
                if self.copies.remove(&(p, o)) {
                    self.dead_lettered += 1;
                    self.ack(p, o, AckType::Reject);
                }
            }
            Outcome::Fatal(m) => {
                // The records waiting for a copy go back.
                for (p, o) in std::mem::take(&mut self.copies) {
                    self.ack(p, o, AckType::Release);
                }
                if self.stop.is_none() {
                    let deadline = self.drain_deadline();
                    self.stop_with(End::Failed(WorkerError::Config(m)), deadline, true)
                        .await;
                } else {
                    warn!(slot = self.core.cfg.slot, "{m}");
                }
            }
        }
    }

    /// The stop's limit passed with dead-letter copies unconfirmed.
    fn copies_timed_out(&mut self) {
        warn!(
            slot = self.core.cfg.slot,
            "{} dead-letter copy(ies) not acknowledged within --shutdown-timeout; their records are released and delivered again",
            self.copies.len()
        );
        for (p, o) in std::mem::take(&mut self.copies) {
            self.ack(p, o, AckType::Release);
        }
    }

    /// The membership task has news (`open`: false if it is gone).
    async fn membership_changed(&mut self, open: bool) {
        if !open {
            self.state_open = false;
            return;
        }
        let st = self.state.borrow_and_update().clone();
        match st {
            ShareState::Assigned { epoch, partitions } => {
                info!(
                    event = "member_joined",
                    slot = self.core.cfg.slot,
                    generation = epoch,
                    partitions = ?partitions,
                    "share group {}: member {} is assigned partitions {partitions:?}",
                    self.core.cfg.consume.group,
                    self.member.member_id
                );
                if !self.assigned.is_empty() {
                    self.rebalances += 1;
                }
                self.assigned = partitions.clone();
                self.core.reporter.send(Report::Joined {
                    member_id: self.member.member_id.clone(),
                    generation: epoch,
                    partitions,
                });
            }
            ShareState::Joining => self.assigned.clear(),
            ShareState::Fatal(m) => {
                let deadline = self.drain_deadline();
                self.stop_with(End::Failed(WorkerError::Config(m)), deadline, true)
                    .await;
            }
            ShareState::Failing(m) => {
                // A restart may help: exit 1, within the restart budget.
                let e = WorkerError::Other(anyhow::anyhow!(m));
                let deadline = self.drain_deadline();
                self.stop_with(End::Failed(e), deadline, true).await;
            }
        }
    }

    /// The handler did not drain within --shutdown-timeout: kill it, keep
    /// the acknowledgements that came before, release the rest.
    async fn drain_timed_out(&mut self) {
        let held = self.feed.handler.in_flight();
        warn!(
            slot = self.core.cfg.slot,
            in_flight = held,
            "the handler did not acknowledge {held} record(s) within --shutdown-timeout; they are released and delivered again"
        );
        self.feed.handler.kill();
        // Keep the acknowledgements that came before the kill.
        while let Some(ev) = self.feed.handler.next_event().await {
            match ev {
                HandlerEvent::Ack(a) => self.acked(a.partition, a.offset),
                HandlerEvent::Judged(js) => {
                    for j in js {
                        self.judged(j);
                    }
                }
                _ => {}
            }
        }
        self.release_handed();
        self.handler_done = true;
    }

    /// Every second: a hung handler stops the worker; liveness and
    /// statistics to the supervisor.
    async fn tick(&mut self) {
        if self.stop.is_none() {
            if let Some(hung) = self.feed.check_limits(self.core.cfg.consume.hang_timeout) {
                let now = Some(tokio::time::Instant::now());
                self.stop_with(End::Failed(hung), now, false).await;
            }
        }
        self.check_locks();
        self.core.alive(self.feed.acked());
        self.report_stats();
    }

    /// Close the sessions with the last acknowledgements, leave the group.
    async fn finish(&mut self) -> Result<()> {
        self.close_sessions().await;
        let end = self
            .stop
            .take()
            .map_or(End::Stop(StopCause::Signal), |s| s.end);
        let reason = match &end {
            End::Stop(r) => r.clone(),
            End::Failed(_) => StopCause::Failure,
        };
        self.core.reporter.send(Report::Stopping {
            reason: reason.clone(),
        });
        info!(
            slot = self.core.cfg.slot,
            redelivered = self.redelivered,
            refused_acks = self.ack_failures,
            retried = self.retried,
            rejected = self.rejected,
            "stopping ({reason}); leaving share group {}",
            self.core.cfg.consume.group
        );
        self.member.leave(CLOSE_WAIT).await;
        match end {
            End::Stop(_) => Ok(()),
            End::Failed(e) => Err(e),
        }
    }

    /// A stop begins: no more fetching; acquired records not handed over go
    /// back (RELEASE). `close_input`: let the handler finish what it holds.
    async fn begin_stop(&mut self, close_input: bool) {
        for r in std::mem::take(&mut self.queue) {
            self.ack(r.partition, r.offset, AckType::Release);
        }
        for (p, o) in self.waiting.take_all() {
            self.held.remove(&(p, o));
            self.ack(p, o, AckType::Release);
        }
        if close_input {
            self.feed.handler.close_input().await;
        }
    }

    /// Hand queued records to the handler as far as it has room. A record it
    /// refuses (a newline in a value under --format value) is REJECTed.
    fn offer(&mut self) -> Option<WorkerError> {
        let keep = self.core.cfg.consume.verdicts.is_some();
        while !self.queue.is_empty() {
            let offered = self
                .feed
                .handler
                .offer(self.queue.make_contiguous(), CHUNK_BYTES);
            for r in self.queue.drain(..offered.taken) {
                self.handed
                    .entry(r.partition)
                    .or_default()
                    .push_back(r.offset);
                if keep {
                    self.held.insert((r.partition, r.offset), r);
                }
            }
            self.feed.sent += offered.taken as u64;
            match offered.refused {
                None => return None,
                Some(Refused::Stopped) => return None, // its event says why
                Some(Refused::Poison(msg)) => {
                    let r = self.queue.pop_front().expect("the refused record");
                    tracing::error!(
                        slot = self.core.cfg.slot,
                        "{msg} (share group: the record is REJECTed, so the broker archives it, and the worker goes on)"
                    );
                    self.rejected += 1;
                    self.ack(r.partition, r.offset, AckType::Reject);
                }
            }
        }
        None
    }

    /// The handler acknowledged every record of `partition` it was sent up
    /// to and including `offset`.
    fn acked(&mut self, partition: i32, offset: i64) {
        let Some(q) = self.handed.get_mut(&partition) else {
            return;
        };
        if !q.contains(&offset) {
            return;
        }
        let mut done = Vec::new();
        while let Some(o) = q.pop_front() {
            done.push(o);
            if o == offset {
                break;
            }
        }
        for o in done {
            self.held.remove(&(partition, o));
            self.ack(partition, o, AckType::Accept);
        }
    }

    /// One acknowledgement due for the broker.
    fn ack(&mut self, partition: i32, offset: i64, t: AckType) {
        self.leases.remove(&(partition, offset));
        self.acks.entry(partition).or_default().push((offset, t));
    }

    /// What the handler holds goes back to the pool.
    fn release_handed(&mut self) {
        for (p, q) in std::mem::take(&mut self.handed) {
            for o in q {
                self.held.remove(&(p, o));
                self.ack(p, o, AckType::Release);
            }
        }
    }

    fn report_stats(&mut self) {
        let verdicts = crate::metrics::VerdictCounts {
            retried: self.retried,
            rejected: self.rejected,
            dead_lettered: self.dead_lettered,
        };
        let stats = self.feed.stats(&self.assigned, self.rebalances, verdicts);
        self.core.reporter.send(Report::Stats(stats));
    }
}
