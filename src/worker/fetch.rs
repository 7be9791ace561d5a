//! Fetching as Kafka's own consumers do: one task per worker keeps one Fetch
//! in flight per partition leader, covering every owned partition that
//! broker leads, inside an incremental fetch session (KIP-227). Answers are
//! decoded (record batches as slices of the fetched bytes) and queued,
//! pipelined ahead of the handler by a bounded channel: a slow handler slows
//! fetching instead of growing memory. The next request goes out as soon as
//! an answer is decoded, before it is queued, so the bytes held stay bounded
//! by `fetch.max.bytes` times (`FETCH_QUEUE` + 1 waiting + 1 in flight per
//! broker), whatever the partition count.
//!
//! A partition's records are taken from an answer only if the answering
//! broker still leads it and the answer starts where the partition stands,
//! so a leader change never delivers records twice or out of order.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use super::cluster::{fatal_or, Cluster, ClusterError, Fatal};
use super::fetch_budget::{decoded_bytes, FetchSize, RequestBudget};
use crate::backoff::Doubling;
use crate::config::StartFrom;
use crate::record::Record;
use crate::wire::codes;
use crate::wire::fetch::{self, FetchAnswer, FetchLimits, FetchPlan, FetchSession, PartitionWant};
use crate::wire::group_msgs::code_name;
use crate::wire::records::decode_fetched;
use crate::wire::{BrokerConn, WireError};

/// Fetched answers queued per worker ahead of the handler. With the one
/// decoded and waiting for room and the one in flight, a worker holds three
/// answers while its handler is behind: as many as before the next request
/// went out early, and a slow handler's worker stays near 20 MiB.
pub const FETCH_QUEUE: usize = 1;
/// The largest a partition's share grows to when a single record batch is
/// larger than it and the broker cuts it off (brokers before KIP-74).
const MAX_FETCH_BYTES: i32 = 64 * 1024 * 1024;
/// Retries of a broker or a partition: 100 ms doubling to 2 s.
const FETCH_PAUSE: Doubling = Doubling::new(Duration::from_millis(100), Duration::from_secs(2));
/// Metadata is read again at most this often while leaders are missing.
const METADATA_PAUSE: Doubling = Doubling::new(Duration::from_millis(100), Duration::from_secs(2));
/// A fetch answer may take the broker's wait plus this (Java's request.timeout.ms).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// What a partition's error in a fetch answer calls for.
#[derive(Debug, PartialEq, Eq)]
enum OnError {
    /// The offset is gone (retention) or beyond the end: reset by `--from`.
    Reset,
    /// The leader moved or the topic changed: read the leaders again.
    FindLeader,
    /// The broker is behind our metadata, or briefly unable: wait, then
    /// read the leaders again.
    Wait,
    /// Retrying with these settings cannot help.
    Fatal,
}

fn on_partition_error(code: i16) -> OnError {
    match code {
        codes::OFFSET_OUT_OF_RANGE => OnError::Reset,
        codes::TOPIC_AUTHORIZATION_FAILED => OnError::Fatal,
        codes::NOT_LEADER_OR_FOLLOWER
        | codes::FENCED_LEADER_EPOCH
        | codes::LEADER_NOT_AVAILABLE
        | codes::UNKNOWN_TOPIC_OR_PARTITION
        | codes::UNKNOWN_TOPIC_ID
        | codes::INCONSISTENT_TOPIC_ID
        | codes::KAFKA_STORAGE_ERROR => OnError::FindLeader,
        codes::UNKNOWN_LEADER_EPOCH
        | codes::OFFSET_NOT_AVAILABLE
        | codes::REPLICA_NOT_AVAILABLE
        | codes::CORRUPT_MESSAGE => OnError::Wait,
        // anything new: wait too, rather than spin
        _ => OnError::Wait,
    }
}

/// What the fetch task hands the worker.
pub enum Fetched {
    /// Records of one answer, in offset order per partition.
    Records(Vec<Record>),
    /// Fetching cannot go on with these settings.
    Fatal(String),
}

/// How the fetch task reads.
#[derive(Clone, Copy, Debug)]
pub struct FetchSettings {
    /// What one request asks for in all (`fetch.max.bytes`, or sized from
    /// what answers decode to).
    pub size: FetchSize,
    /// `max.partition.fetch.bytes`: the most one partition gets per request.
    pub partition_max_bytes: i32,
    /// `fetch.wait.max.ms`
    pub wait_ms: i32,
    /// Where an out-of-range offset resets to.
    pub from: StartFrom,
}

struct Part {
    offset: i64,
    max_bytes: i32,
    /// Not fetched before this (a corrupt batch, a partition error).
    not_before: Option<Instant>,
    failures: u32,
    high_watermark: Arc<AtomicI64>,
}

type InFlight = (
    i32,
    Option<BrokerConn>,
    FetchPlan,
    Result<FetchAnswer, WireError>,
);

/// Fetch `starts` ((partition, offset)) until the receiver is gone or the
/// task is aborted. Each answer's high watermarks go to `high_watermarks`.
pub async fn fetch_loop(
    cluster: Cluster,
    starts: Vec<(i32, i64)>,
    tx: mpsc::Sender<Fetched>,
    settings: FetchSettings,
    high_watermarks: HashMap<i32, Arc<AtomicI64>>,
) {
    let mut fetcher = Fetcher::new(cluster, starts, settings, high_watermarks);
    if let Err(e) = fetcher.run(&tx).await {
        let _ = tx.send(Fetched::Fatal(format!("{e:#}"))).await;
    }
}

/// What one answer brought: records in offset order per partition, the
/// partitions whose offset is out of range, and those that got records.
#[derive(Default)]
struct Taken {
    records: Vec<Record>,
    resets: Vec<i32>,
    fed: Vec<i32>,
}

/// The fetch task's state: the partitions, a fetch session per broker and
/// the requests in flight.
struct Fetcher {
    cluster: Cluster,
    settings: FetchSettings,
    budget: RequestBudget,
    parts: BTreeMap<i32, Part>,
    /// The order full requests name partitions in: one that got records goes
    /// to the back, so a small fetch.max.bytes does not starve the rest.
    order: VecDeque<i32>,
    sessions: HashMap<i32, FetchSession>,
    /// Per broker: not asked again before this, and its failures in a row.
    broker_pause: HashMap<i32, (Instant, u32)>,
    in_flight: HashSet<i32>,
    requests: JoinSet<InFlight>,
    need_metadata: bool,
    metadata_failures: u32,
}

impl Fetcher {
    fn new(
        cluster: Cluster,
        starts: Vec<(i32, i64)>,
        settings: FetchSettings,
        mut high_watermarks: HashMap<i32, Arc<AtomicI64>>,
    ) -> Self {
        let parts: BTreeMap<i32, Part> = starts
            .iter()
            .map(|&(p, offset)| {
                let hw = high_watermarks
                    .remove(&p)
                    .unwrap_or_else(|| Arc::new(AtomicI64::new(-1)));
                (
                    p,
                    Part {
                        offset,
                        max_bytes: settings.partition_max_bytes,
                        not_before: None,
                        failures: 0,
                        high_watermark: hw,
                    },
                )
            })
            .collect();
        let order = parts.keys().copied().collect();
        let need_metadata =
            cluster.topic_ref().id.is_none() || parts.keys().any(|p| cluster.leader(*p).is_none());
        Fetcher {
            cluster,
            settings,
            budget: RequestBudget::new(settings.size),
            parts,
            order,
            sessions: HashMap::new(),
            broker_pause: HashMap::new(),
            in_flight: HashSet::new(),
            requests: JoinSet::new(),
            need_metadata,
            metadata_failures: 0,
        }
    }

    async fn run(&mut self, tx: &mpsc::Sender<Fetched>) -> Result<(), Fatal> {
        loop {
            if self.need_metadata && !self.refresh_leaders().await? {
                continue;
            }
            self.send_requests();
            if self.requests.is_empty() {
                self.wait_for_partitions().await;
                continue;
            }
            let Some(done) = self.requests.join_next().await else {
                continue;
            };
            let Ok((node, conn, plan, answer)) = done else {
                continue; // a request task panicked: its broker is retried
            };
            self.in_flight.remove(&node);
            let Some(answer) = self.answered(node, conn, &plan, answer)? else {
                continue;
            };
            let wire = self.budget.learns().then(|| answer.record_bytes());
            let taken = self.take(node, answer)?;
            if let Some(wire) = wire {
                self.budget.observe(wire, decoded_bytes(&taken.records));
            }
            self.fed_last(&taken.fed);
            self.reset(&taken.resets).await?;
            // Ask again before handing these records over (which waits while
            // the worker is FETCH_QUEUE answers behind): the broker reads the
            // next answer while the worker works through this one.
            if !self.need_metadata {
                self.send_requests();
            }
            if !taken.records.is_empty() && tx.send(Fetched::Records(taken.records)).await.is_err()
            {
                info!("fetching stops: the worker is done with this assignment");
                return Ok(());
            }
        }
    }

    /// Read the leaders again. False: leaders are missing and nothing is in
    /// flight; the pause before asking again is over, start the loop again.
    async fn refresh_leaders(&mut self) -> Result<bool, Fatal> {
        match self.cluster.refresh().await {
            Ok(()) => self.need_metadata = false,
            Err(ClusterError::Fatal(m)) => return Err(Fatal(m)),
            Err(e) => warn!("{e:#}; trying again"),
        }
        if self.leaderless() || self.need_metadata {
            // A leader is being elected (or the brokers are away): ask
            // again soon, and fetch what has a leader meanwhile.
            self.need_metadata = true;
            let pause = METADATA_PAUSE.delay(self.metadata_failures);
            self.metadata_failures += 1;
            if self.requests.is_empty() {
                tokio::time::sleep(pause).await;
                return Ok(false);
            }
        } else {
            self.metadata_failures = 0;
        }
        Ok(true)
    }

    fn leaderless(&self) -> bool {
        self.parts.keys().any(|p| self.cluster.leader(*p).is_none())
    }

    /// One request per leader that has none in flight.
    fn send_requests(&mut self) {
        let now = Instant::now();
        for (node, want) in self.wanted(now) {
            if self.in_flight.contains(&node) {
                continue;
            }
            let Some(addr) = self.cluster.addr(node) else {
                continue;
            };
            let plan = self.sessions.entry(node).or_default().plan(&want);
            let delay = self
                .broker_pause
                .get(&node)
                .map(|(until, _)| until.saturating_duration_since(now))
                .unwrap_or_default();
            self.in_flight.insert(node);
            self.spawn_request(node, addr, plan, delay);
        }
    }

    /// Per leader: the partitions it leads that may be fetched now.
    fn wanted(&self, now: Instant) -> BTreeMap<i32, Vec<(i32, PartitionWant)>> {
        let mut wanted: BTreeMap<i32, Vec<(i32, PartitionWant)>> = BTreeMap::new();
        for &p in &self.order {
            let part = &self.parts[&p];
            if part.not_before.is_some_and(|t| t > now) {
                continue;
            }
            let Some(leader) = self.cluster.leader(p) else {
                continue;
            };
            wanted.entry(leader.node).or_default().push((
                p,
                PartitionWant {
                    offset: part.offset,
                    leader_epoch: leader.epoch,
                    max_bytes: part.max_bytes,
                },
            ));
        }
        wanted
    }

    /// Send `plan` to `node` after `delay`, on a connection of its own.
    fn spawn_request(&mut self, node: i32, addr: String, plan: FetchPlan, delay: Duration) {
        let conn = self.cluster.take_conn(node);
        let (client_id, connect_timeout, topic) = (
            self.cluster.client_id().to_string(),
            self.cluster.connect_timeout(),
            self.cluster.topic_ref().clone(),
        );
        let limits = FetchLimits {
            max_wait_ms: self.settings.wait_ms,
            max_bytes: self.budget.request_bytes(),
        };
        let timeout = REQUEST_TIMEOUT + Duration::from_millis(self.settings.wait_ms.max(0) as u64);
        self.requests.spawn(async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            let mut conn = match conn {
                Some(c) => c,
                None => match BrokerConn::connect(&addr, &client_id, connect_timeout).await {
                    Ok(c) => c,
                    Err(e) => return (node, None, plan, Err(e)),
                },
            };
            let r =
                match tokio::time::timeout(timeout, fetch::fetch(&mut conn, &topic, &plan, limits))
                    .await
                {
                    Ok(r) => r,
                    Err(_) => Err(WireError::Io {
                        addr,
                        what: "fetch",
                        source: std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            format!("no answer within {timeout:?}"),
                        ),
                    }),
                };
            (node, Some(conn), plan, r)
        });
    }

    /// Every partition waits: on a pause, or on a leader.
    async fn wait_for_partitions(&mut self) {
        let next = self.parts.values().filter_map(|p| p.not_before).min();
        let pause = next
            .map(|t| t.saturating_duration_since(Instant::now()))
            .unwrap_or(Duration::from_millis(100));
        tokio::time::sleep(pause.max(Duration::from_millis(1))).await;
        self.need_metadata |= self.leaderless();
    }

    /// A request to `node` came back: keep its connection and session up
    /// to date. Some: an answer whose partitions are to be read.
    fn answered(
        &mut self,
        node: i32,
        conn: Option<BrokerConn>,
        plan: &FetchPlan,
        answer: Result<FetchAnswer, WireError>,
    ) -> Result<Option<FetchAnswer>, Fatal> {
        let answer = match answer {
            Ok(a) => a,
            Err(e) => {
                if let WireError::Auth { .. }
                | WireError::Tls { .. }
                | WireError::Unsupported { .. } = e
                {
                    let e = fatal_or(e, "fetching");
                    return Err(Fatal(format!("{e:#}")));
                }
                self.sessions.entry(node).or_default().failed(true);
                let pause = self.pause_broker(node);
                warn!(broker = node, "fetch failed ({e}); retrying in {pause:?}");
                // The broker may be gone for good: its partitions' leaders may have moved.
                self.need_metadata = true;
                return Ok(None);
            }
        };
        if let Some(conn) = conn {
            self.cluster.put_conn(node, conn);
        }
        let session = self.sessions.entry(node).or_default();
        if answer.error != codes::NONE {
            let known = answer.error != codes::FETCH_SESSION_ID_NOT_FOUND;
            session.failed(known);
            if matches!(
                answer.error,
                codes::FETCH_SESSION_ID_NOT_FOUND
                    | codes::INVALID_FETCH_SESSION_EPOCH
                    | codes::FETCH_SESSION_TOPIC_ID_ERROR
            ) {
                debug!(
                    broker = node,
                    "fetch session ended ({}); starting a new one",
                    code_name(answer.error)
                );
            } else {
                let pause = self.pause_broker(node);
                warn!(
                    broker = node,
                    "fetch failed ({}); retrying in {pause:?}",
                    code_name(answer.error)
                );
                self.need_metadata = true;
            }
            return Ok(None);
        }
        if plan.full {
            debug!(
                broker = node,
                session = answer.session_id,
                partitions = plan.partitions.len(),
                "full fetch answered (session 0: the broker keeps none)"
            );
        }
        session.answered(plan, answer.session_id);
        if answer.throttle_ms > 0 {
            // KIP-219: the broker wants the client to wait out its quota.
            let until = Instant::now() + Duration::from_millis(answer.throttle_ms as u64);
            self.broker_pause.insert(node, (until, 0));
        } else {
            self.broker_pause.remove(&node);
        }
        Ok(Some(answer))
    }

    /// One more failure of `node` in a row: the pause before asking it again.
    fn pause_broker(&mut self, node: i32) -> Duration {
        let n = self.broker_pause.get(&node).map_or(0, |(_, n)| *n);
        let pause = FETCH_PAUSE.delay(n);
        self.broker_pause
            .insert(node, (Instant::now() + pause, n + 1));
        pause
    }

    /// The records of `node`'s answer, partition by partition: only the
    /// current leader's answer, and only from where each partition stands.
    fn take(&mut self, node: i32, answer: FetchAnswer) -> Result<Taken, Fatal> {
        let mut taken = Taken::default();
        let session = self.sessions.entry(node).or_default();
        for pa in answer.partitions {
            let p = pa.partition;
            let Some(part) = self.parts.get_mut(&p) else {
                continue;
            };
            let asked = session.holds(p).map(|w| w.offset);
            if self.cluster.leader(p).map(|l| l.node) != Some(node) || asked != Some(part.offset) {
                continue;
            }
            match pa.error {
                codes::NONE => {
                    part.high_watermark
                        .store(pa.high_watermark, Ordering::Relaxed);
                    if decode(part, pa, &self.settings, &mut taken.records) {
                        taken.fed.push(p);
                    }
                }
                code => match on_partition_error(code) {
                    OnError::Reset => taken.resets.push(p),
                    OnError::Fatal => {
                        return Err(Fatal(format!(
                            "not allowed to read topic {} (TopicAuthorizationFailed): grant this principal Read on it",
                            self.cluster.topic()
                        )))
                    }
                    OnError::FindLeader => {
                        debug!(partition = p, broker = node, "fetch: {}; reading the leaders again", code_name(code));
                        self.cluster.forget_leader(p, code);
                        self.need_metadata = true;
                    }
                    OnError::Wait => {
                        let pause = FETCH_PAUSE.delay(part.failures);
                        part.failures += 1;
                        part.not_before = Some(Instant::now() + pause);
                        let level_warn = part.failures > 3;
                        if level_warn {
                            warn!(partition = p, broker = node, "fetch: {}; retrying in {pause:?}", code_name(code));
                        } else {
                            debug!(partition = p, broker = node, "fetch: {}; retrying in {pause:?}", code_name(code));
                        }
                        self.need_metadata = true;
                    }
                },
            }
        }
        Ok(taken)
    }

    /// Partitions that got records go to the back of the order.
    fn fed_last(&mut self, fed: &[i32]) {
        for &p in fed {
            if let Some(i) = self.order.iter().position(|&q| q == p) {
                self.order.remove(i);
                self.order.push_back(p);
            }
        }
    }

    /// Offsets out of range start again where `--from` says.
    async fn reset(&mut self, resets: &[i32]) -> Result<(), Fatal> {
        if resets.is_empty() {
            return Ok(());
        }
        match self.cluster.start_offsets(resets, self.settings.from).await {
            Ok(offsets) => {
                for (p, o) in offsets {
                    if let Some(part) = self.parts.get_mut(&p) {
                        warn!(
                            partition = p,
                            "offset {} is out of range; resetting to {o} (--from)", part.offset
                        );
                        part.offset = o;
                    }
                }
            }
            Err(ClusterError::Fatal(m)) => return Err(Fatal(m)),
            Err(e) => {
                warn!("offsets out of range and reset failed: {e:#}");
                self.need_metadata = true;
            }
        }
        Ok(())
    }
}

/// Decode a partition's records of an answer into `records`, and move the
/// partition on (or grow its share when a batch did not fit, or pause it on
/// a corrupt batch). True: records were added.
fn decode(
    part: &mut Part,
    pa: fetch::PartitionAnswer,
    settings: &FetchSettings,
    records: &mut Vec<Record>,
) -> bool {
    let p = pa.partition;
    let before = records.len();
    match decode_fetched(p, pa.records, part.offset, pa.aborted, records) {
        Ok(d) if d.only_partial => {
            let grown = part.max_bytes.saturating_mul(2).min(MAX_FETCH_BYTES);
            if grown == part.max_bytes {
                warn!(
                    partition = p,
                    "a record batch at offset {} is larger than {grown} bytes; cannot fetch it",
                    part.offset
                );
                part.not_before = Some(Instant::now() + Duration::from_secs(1));
            } else {
                debug!(
                    partition = p,
                    "a record batch at offset {} is larger than {} bytes; fetching up to {grown}",
                    part.offset,
                    part.max_bytes
                );
                part.max_bytes = grown;
            }
            false
        }
        Ok(d) => {
            part.max_bytes = settings.partition_max_bytes;
            part.failures = 0;
            part.not_before = None;
            if let Some(next) = d.next_offset {
                part.offset = part.offset.max(next);
            }
            records.len() > before
        }
        Err(e) => {
            // A corrupt batch does not heal by itself; keep
            // trying (another replica may lead later) and say
            // so, rather than skip records.
            records.truncate(before);
            let pause = FETCH_PAUSE.delay(part.failures);
            part.failures += 1;
            part.not_before = Some(Instant::now() + pause);
            warn!(partition = p, "{e}; fetching it again in {pause:?}");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::script::{record_batch, Reply, ScriptedBroker, Seen};
    use bytes::Bytes;

    const MIB: i32 = 1024 * 1024;
    /// Records per scripted answer.
    const PER_ANSWER: i64 = 2000;

    /// 1,000-byte values, 20 varying hex digits and then the same letter:
    /// lz4 shrinks an answer of them about 30-40 times, yet it stays above
    /// the 16 KiB an answer needs to count for the budget.
    fn values(from: i64) -> Vec<Bytes> {
        (from..from + PER_ANSWER)
            .map(|i| {
                let mut v = format!("{:020x}", (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
                v.push_str(&"a".repeat(980));
                Bytes::from(v)
            })
            .collect()
    }

    /// A fetch task reading partition 0 of topic "t" from offset 0 off
    /// `broker`, into a channel as deep as the worker's.
    fn start_fetching(
        broker: &ScriptedBroker,
        size: FetchSize,
    ) -> (tokio::task::JoinHandle<()>, mpsc::Receiver<Fetched>) {
        let cluster = Cluster::new(
            "t",
            std::slice::from_ref(&broker.addr),
            "test",
            Duration::from_secs(5),
        );
        let settings = FetchSettings {
            size,
            partition_max_bytes: MIB,
            wait_ms: 100,
            from: StartFrom::Earliest,
        };
        let (tx, rx) = mpsc::channel(FETCH_QUEUE);
        let task = tokio::spawn(fetch_loop(
            cluster,
            vec![(0, 0)],
            tx,
            settings,
            HashMap::new(),
        ));
        (task, rx)
    }

    /// Run a fetcher against a broker that answers every Fetch with the
    /// next `PER_ANSWER` records; return the `max_bytes` of each request,
    /// and (batch bytes, decoded bytes) of each of the first `answers`.
    async fn fetch_from_script(
        size: FetchSize,
        lz4: bool,
        answers: usize,
    ) -> (Vec<i32>, Vec<(usize, usize)>) {
        let batches = Arc::new(std::sync::Mutex::new(Vec::new()));
        let sent = batches.clone();
        let broker = ScriptedBroker::start(move |seen| match seen {
            Seen::Metadata { .. } => Reply::Partitions(1),
            Seen::Fetch { partitions, .. } => {
                let (p, offset, _) = partitions[0];
                let batch = record_batch(offset, &values(offset), lz4);
                sent.lock().unwrap().push(batch.len());
                Reply::Records(vec![(p, offset + 100 * PER_ANSWER, batch)])
            }
            other => panic!("unexpected {other:?}"),
        })
        .await;
        let (task, mut rx) = start_fetching(&broker, size);
        let mut got = Vec::new();
        while got.len() < answers {
            match tokio::time::timeout(Duration::from_secs(10), rx.recv()).await {
                Ok(Some(Fetched::Records(records))) => {
                    assert_eq!(records.len() as i64, PER_ANSWER, "an answer's records");
                    let wire = batches.lock().unwrap()[got.len()];
                    got.push((wire, decoded_bytes(&records)));
                }
                other => panic!("no records: {:?}", other.map(|o| o.map(|_| ()))),
            }
        }
        task.abort();
        let asked = broker
            .seen()
            .into_iter()
            .filter_map(|s| match s {
                Seen::Fetch { max_bytes, .. } => Some(max_bytes),
                _ => None,
            })
            .collect();
        (asked, got)
    }

    /// By default each request asks for what the answers so far say decodes
    /// to the budget: after the first request's 256 KiB a plain topic's
    /// grow to the 2 MiB cap, an lz4 topic's (about 9 times smaller on the
    /// wire than decoded) stay well below it.
    #[tokio::test]
    async fn requests_follow_what_answers_decode_to() {
        let size = FetchSize::Adaptive {
            wire: 2 * MIB,
            decoded: 8 * MIB,
        };
        for lz4 in [true, false] {
            let (asked, got) = fetch_from_script(size, lz4, 4).await;
            // Request i + 1 goes out once answer i is in (the last may not yet).
            assert!(asked.len() >= got.len(), "lz4 {lz4}: requests {asked:?}");
            let mut budget = RequestBudget::new(size);
            assert_eq!(asked[0], 256 * 1024, "lz4 {lz4}: the first request");
            for (i, &(wire, decoded)) in got.iter().enumerate().take(asked.len() - 1) {
                budget.observe(wire, decoded);
                assert_eq!(
                    asked[i + 1],
                    budget.request_bytes(),
                    "lz4 {lz4}: request {}",
                    i + 1
                );
            }
            if lz4 {
                assert!(asked[1] < MIB, "{asked:?}");
            } else {
                assert_eq!(asked[1], 2 * MIB, "{asked:?}");
            }
        }
    }

    /// `-X fetch.max.bytes` is asked for exactly, whatever answers decode to.
    #[tokio::test]
    async fn a_fixed_size_is_asked_for_exactly() {
        let (asked, _) = fetch_from_script(FetchSize::Fixed(3 * MIB), true, 3).await;
        assert!(
            asked.len() >= 3 && asked.iter().all(|&b| b == 3 * MIB),
            "{asked:?}"
        );
    }

    /// While the worker is `FETCH_QUEUE` answers behind, the fetcher asks
    /// for one more answer (the broker reads it meanwhile) and no further;
    /// once the worker catches up, the records go on in offset order, none
    /// twice and none left out.
    #[tokio::test]
    async fn one_request_goes_out_while_the_worker_is_behind() {
        let broker = ScriptedBroker::start(move |seen| match seen {
            Seen::Metadata { .. } => Reply::Partitions(1),
            Seen::Fetch { partitions, .. } => {
                let (p, offset, _) = partitions[0];
                let batch = record_batch(offset, &values(offset), false);
                Reply::Records(vec![(p, offset + 100 * PER_ANSWER, batch)])
            }
            other => panic!("unexpected {other:?}"),
        })
        .await;
        let fetches = || {
            broker
                .seen()
                .iter()
                .filter(|s| matches!(s, Seen::Fetch { .. }))
                .count()
        };
        let (task, mut rx) = start_fetching(&broker, FetchSize::Fixed(MIB));
        // queued, one decoded and waiting for room, one answered and unread
        let held = FETCH_QUEUE + 2;
        let deadline = Instant::now() + Duration::from_secs(10);
        while fetches() < held && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(fetches(), held, "requests while the worker reads nothing");
        let mut next = 0;
        while next < 2 * held as i64 * PER_ANSWER {
            match tokio::time::timeout(Duration::from_secs(10), rx.recv()).await {
                Ok(Some(Fetched::Records(records))) => {
                    for r in records {
                        assert_eq!(r.offset, next, "records in offset order, once each");
                        next += 1;
                    }
                }
                other => panic!("no records: {:?}", other.map(|o| o.map(|_| ()))),
            }
        }
        task.abort();
    }

    #[test]
    fn partition_errors_are_acted_on() {
        assert_eq!(
            on_partition_error(codes::OFFSET_OUT_OF_RANGE),
            OnError::Reset
        );
        for moved in [
            codes::NOT_LEADER_OR_FOLLOWER,
            codes::FENCED_LEADER_EPOCH,
            codes::LEADER_NOT_AVAILABLE,
            codes::UNKNOWN_TOPIC_ID,
            codes::INCONSISTENT_TOPIC_ID,
            codes::KAFKA_STORAGE_ERROR,
        ] {
            assert_eq!(on_partition_error(moved), OnError::FindLeader, "{moved}");
        }
        for behind in [
            codes::UNKNOWN_LEADER_EPOCH,
            codes::OFFSET_NOT_AVAILABLE,
            codes::REPLICA_NOT_AVAILABLE,
            codes::CORRUPT_MESSAGE,
            9999,
        ] {
            assert_eq!(on_partition_error(behind), OnError::Wait, "{behind}");
        }
        assert_eq!(
            on_partition_error(codes::TOPIC_AUTHORIZATION_FAILED),
            OnError::Fatal
        );
    }
}
