//! Fetching as Kafka's own consumers do: one Fetch request per broker for
//! every partition a worker reads from that broker, inside an incremental
//! fetch session (KIP-227), by topic id where the broker takes them (Fetch
//! v13+). Also the two requests a fetcher needs besides Fetch: Metadata (who
//! leads each partition, at which leader epoch, and where that broker is) and
//! ListOffsets (where `--from` starts, one request per broker).
//!
//! [`FetchSession`] is the pure part: what the next request must name, given
//! what the broker's session already holds. The rest turns plain values into
//! kafka-protocol requests and answers back into plain values.

use std::collections::BTreeMap;

use bytes::Bytes;
use kafka_protocol::messages as m;
use kafka_protocol::messages::{BrokerId, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::records::AbortedTxn;
use super::{BrokerConn, WireResult};

/// Fetch versions we speak: v4 (the oldest Kafka 4 accepts) to v17. v7 adds
/// sessions, v9 leader epochs, v13 topic ids.
const FETCH_MIN: i16 = 4;
const FETCH_MAX: i16 = 17;
/// The last Fetch version that names topics (v13+ uses ids).
const FETCH_BY_NAME_MAX: i16 = 12;
/// read_committed: the broker stops at the last stable offset and lists the
/// aborted transactions before it.
const READ_COMMITTED: i8 = 1;

/// What the fetcher asks of one partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartitionWant {
    pub offset: i64,
    /// The leader epoch from metadata (-1: unknown, no fencing).
    pub leader_epoch: i32,
    pub max_bytes: i32,
}

/// One Fetch request's session fields and partitions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchPlan {
    pub session_id: i32,
    pub epoch: i32,
    /// A full request names every partition; an incremental one only the
    /// new and changed ones.
    pub full: bool,
    pub partitions: Vec<(i32, PartitionWant)>,
    /// Partitions to drop from the session (incremental requests only).
    pub forgotten: Vec<i32>,
}

/// The client side of one broker's fetch session (KIP-227).
///
/// A full request (epoch 0) asks the broker for a session; the broker
/// answers with its id, or 0 when it keeps none (then every request is full).
/// Each later request carries the next epoch and names only partitions that
/// are new or whose offset, epoch or size changed, plus the ones to forget;
/// the broker answers only for partitions with news. Any error starts over
/// with a full request.
#[derive(Debug, Default)]
pub struct FetchSession {
    id: i32,
    /// The epoch of the next request: 0 = full.
    epoch: i32,
    /// What the broker's session holds once the last request arrived.
    sent: BTreeMap<i32, PartitionWant>,
}

impl FetchSession {
    #[cfg(test)]
    fn new() -> Self {
        Self::default()
    }

    /// The next request for `wanted` (in the order a full request lists them).
    pub fn plan(&mut self, wanted: &[(i32, PartitionWant)]) -> FetchPlan {
        let full = self.epoch == 0 || self.id == 0;
        let plan = if full {
            FetchPlan {
                session_id: self.id,
                epoch: 0,
                full: true,
                partitions: wanted.to_vec(),
                forgotten: Vec::new(),
            }
        } else {
            let keep: std::collections::BTreeSet<i32> = wanted.iter().map(|(p, _)| *p).collect();
            FetchPlan {
                session_id: self.id,
                epoch: self.epoch,
                full: false,
                partitions: wanted
                    .iter()
                    .filter(|(p, w)| self.sent.get(p) != Some(w))
                    .copied()
                    .collect(),
                forgotten: self
                    .sent
                    .keys()
                    .filter(|p| !keep.contains(p))
                    .copied()
                    .collect(),
            }
        };
        self.sent = wanted.iter().copied().collect();
        plan
    }

    /// The broker answered `plan` without a top-level error, with `session_id`.
    pub fn answered(&mut self, plan: &FetchPlan, session_id: i32) {
        if plan.full {
            self.id = session_id;
            self.epoch = if session_id == 0 { 0 } else { 1 };
        } else {
            self.epoch = next_epoch(self.epoch);
        }
    }

    /// The request failed. `session_known`: the broker still knows our
    /// session (a transport error, an epoch out of step), so the next full
    /// request closes it instead of leaving it to expire.
    pub fn failed(&mut self, session_known: bool) {
        if !session_known {
            self.id = 0;
        }
        self.epoch = 0;
        self.sent.clear();
    }

    /// What the broker's session holds for `partition` (the offset the last
    /// request's answer for it starts at).
    pub fn holds(&self, partition: i32) -> Option<&PartitionWant> {
        self.sent.get(&partition)
    }

    /// The broker's session id (0: none).
    #[cfg(test)]
    fn id(&self) -> i32 {
        self.id
    }
}

/// Kafka's session epochs: 1, 2, .. i32::MAX, then 1 again.
fn next_epoch(epoch: i32) -> i32 {
    if epoch == i32::MAX {
        1
    } else {
        epoch + 1
    }
}

/// Which topic a fetch reads: its name, and its id when the cluster has one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicRef {
    pub name: String,
    pub id: Option<u128>,
}

/// A fetch's byte limits and wait.
#[derive(Clone, Copy, Debug)]
pub struct FetchLimits {
    pub max_wait_ms: i32,
    pub max_bytes: i32,
}

/// One partition's part of a Fetch answer.
#[derive(Debug)]
pub struct PartitionAnswer {
    pub partition: i32,
    pub error: i16,
    pub high_watermark: i64,
    /// The record batches as the broker sent them (a slice of the answer).
    pub records: Bytes,
    pub aborted: Vec<AbortedTxn>,
}

/// A Fetch answer in plain values.
#[derive(Debug)]
pub struct FetchAnswer {
    pub error: i16,
    pub session_id: i32,
    pub throttle_ms: i32,
    pub partitions: Vec<PartitionAnswer>,
}

impl FetchAnswer {
    /// The bytes of record batches in the answer, all partitions together.
    pub fn record_bytes(&self) -> usize {
        self.partitions.iter().map(|p| p.records.len()).sum()
    }
}

/// Send one Fetch for `plan` of `topic` and return its answer.
pub async fn fetch(
    conn: &mut BrokerConn,
    topic: &TopicRef,
    plan: &FetchPlan,
    limits: FetchLimits,
) -> WireResult<FetchAnswer> {
    let top = if topic.id.is_some() {
        FETCH_MAX
    } else {
        FETCH_BY_NAME_MAX
    };
    let v = conn.negotiate::<m::FetchRequest>(FETCH_MIN, top)?;
    let req = fetch_request(topic, plan, limits, v);
    let r = conn.send(req, v).await?;
    Ok(fetch_answer(topic, r, v))
}

fn fetch_request(
    topic: &TopicRef,
    plan: &FetchPlan,
    limits: FetchLimits,
    v: i16,
) -> m::FetchRequest {
    let by_id = v > FETCH_BY_NAME_MAX;
    let id = uuid::Uuid::from_u128(topic.id.unwrap_or(0));
    let name = TopicName(StrBytes::from_string(topic.name.clone()));
    let partitions: Vec<m::fetch_request::FetchPartition> = plan
        .partitions
        .iter()
        .map(|(p, w)| {
            m::fetch_request::FetchPartition::default()
                .with_partition(*p)
                .with_current_leader_epoch(w.leader_epoch)
                .with_fetch_offset(w.offset)
                .with_partition_max_bytes(w.max_bytes)
        })
        .collect();
    let mut topics = Vec::new();
    if !partitions.is_empty() {
        let mut t = m::fetch_request::FetchTopic::default().with_partitions(partitions);
        if by_id {
            t = t.with_topic_id(id);
        } else {
            t = t.with_topic(name.clone());
        }
        topics.push(t);
    }
    let mut forgotten = Vec::new();
    if !plan.forgotten.is_empty() {
        let mut f =
            m::fetch_request::ForgottenTopic::default().with_partitions(plan.forgotten.clone());
        if by_id {
            f = f.with_topic_id(id);
        } else {
            f = f.with_topic(name);
        }
        forgotten.push(f);
    }
    // Before v7 there are no sessions: every request is full and sessionless.
    let (session_id, epoch) = if v >= 7 {
        (plan.session_id, plan.epoch)
    } else {
        (0, -1)
    };
    m::FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(limits.max_wait_ms)
        .with_min_bytes(1)
        .with_max_bytes(limits.max_bytes)
        .with_isolation_level(READ_COMMITTED)
        .with_session_id(session_id)
        .with_session_epoch(epoch)
        .with_topics(topics)
        .with_forgotten_topics_data(forgotten)
}

fn fetch_answer(topic: &TopicRef, r: m::FetchResponse, v: i16) -> FetchAnswer {
    let by_id = v > FETCH_BY_NAME_MAX;
    let mut partitions = Vec::new();
    for t in r.responses {
        let ours = if by_id {
            Some(t.topic_id.as_u128()) == topic.id
        } else {
            t.topic.0.as_str() == topic.name
        };
        if !ours {
            continue;
        }
        for p in t.partitions {
            partitions.push(PartitionAnswer {
                partition: p.partition_index,
                error: p.error_code,
                high_watermark: p.high_watermark,
                records: p.records.unwrap_or_default(),
                aborted: p
                    .aborted_transactions
                    .unwrap_or_default()
                    .into_iter()
                    .map(|a| AbortedTxn {
                        producer_id: a.producer_id.0,
                        first_offset: a.first_offset,
                    })
                    .collect(),
            });
        }
    }
    FetchAnswer {
        error: r.error_code,
        session_id: r.session_id,
        throttle_ms: r.throttle_time_ms,
        partitions,
    }
}

/// Who leads one partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Leader {
    /// The leader's node id (-1: none now).
    pub node: i32,
    pub epoch: i32,
}

/// A topic's partition leaders and the brokers' addresses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TopicLayout {
    /// The topic's error code (0: found).
    pub error: i16,
    pub id: Option<u128>,
    /// partition -> (leader or error code)
    pub leaders: BTreeMap<i32, Result<Leader, i16>>,
    /// node id -> "host:port"
    pub brokers: BTreeMap<i32, String>,
}

/// Metadata of `topic`: its id, each partition's leader and epoch, and where
/// every broker is.
pub async fn topic_layout(conn: &mut BrokerConn, topic: &str) -> WireResult<TopicLayout> {
    let v = conn.negotiate::<m::MetadataRequest>(1, 12)?;
    let mut req = m::MetadataRequest::default().with_topics(Some(vec![
        m::metadata_request::MetadataRequestTopic::default()
            .with_name(Some(TopicName(StrBytes::from_string(topic.to_string())))),
    ]));
    if v >= 4 {
        req = req.with_allow_auto_topic_creation(false);
    }
    let r = conn.send(req, v).await?;
    let mut layout = TopicLayout {
        brokers: r
            .brokers
            .iter()
            .map(|b| (b.node_id.0, format!("{}:{}", b.host, b.port)))
            .collect(),
        error: super::codes::UNKNOWN_TOPIC_OR_PARTITION,
        ..TopicLayout::default()
    };
    let Some(t) = r
        .topics
        .into_iter()
        .find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == topic))
    else {
        return Ok(layout);
    };
    layout.error = t.error_code;
    layout.id = (!t.topic_id.is_nil()).then(|| t.topic_id.as_u128());
    layout.leaders = t
        .partitions
        .into_iter()
        .map(|p| {
            let l = if p.error_code != 0 && p.leader_id.0 < 0 {
                Err(p.error_code)
            } else {
                Ok(Leader {
                    node: p.leader_id.0,
                    epoch: p.leader_epoch,
                })
            };
            (p.partition_index, l)
        })
        .collect();
    Ok(layout)
}

/// ListOffsets for `partitions` ((partition, leader epoch)) of `topic`, read
/// committed: the earliest offsets, or the latest (`latest`). Each partition
/// gets its offset or a Kafka error code.
pub async fn list_offsets(
    conn: &mut BrokerConn,
    topic: &str,
    partitions: &[(i32, i32)],
    latest: bool,
) -> WireResult<BTreeMap<i32, Result<i64, i16>>> {
    // v2 brings isolation levels, v4 leader epochs.
    let v = conn.negotiate::<m::ListOffsetsRequest>(2, 7)?;
    let at: i64 = if latest { -1 } else { -2 };
    let req = m::ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_isolation_level(READ_COMMITTED)
        .with_topics(vec![m::list_offsets_request::ListOffsetsTopic::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partitions(
                partitions
                    .iter()
                    .map(|(p, epoch)| {
                        m::list_offsets_request::ListOffsetsPartition::default()
                            .with_partition_index(*p)
                            .with_current_leader_epoch(*epoch)
                            .with_timestamp(at)
                    })
                    .collect(),
            )]);
    let r = conn.send(req, v).await?;
    let mut out = BTreeMap::new();
    for t in r.topics {
        if t.name.0.as_str() != topic {
            continue;
        }
        for p in t.partitions {
            let o = if p.error_code != 0 {
                Err(p.error_code)
            } else {
                Ok(p.offset)
            };
            out.insert(p.partition_index, o);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn want(offset: i64) -> PartitionWant {
        PartitionWant {
            offset,
            leader_epoch: 3,
            max_bytes: 1000,
        }
    }

    #[test]
    fn first_request_is_full_and_asks_for_a_session() {
        let mut s = FetchSession::new();
        let p = s.plan(&[(0, want(5)), (1, want(7))]);
        assert!(p.full);
        assert_eq!((p.session_id, p.epoch), (0, 0));
        assert_eq!(p.partitions.len(), 2);
        assert!(p.forgotten.is_empty());
    }

    #[test]
    fn a_session_names_only_what_changed() {
        let mut s = FetchSession::new();
        let p = s.plan(&[(0, want(5)), (1, want(7)), (2, want(9))]);
        s.answered(&p, 42);
        // partition 0 moved on, 1 is unchanged, 2 left, 3 is new
        let p = s.plan(&[(0, want(6)), (1, want(7)), (3, want(0))]);
        assert!(!p.full);
        assert_eq!((p.session_id, p.epoch), (42, 1));
        assert_eq!(p.partitions, vec![(0, want(6)), (3, want(0))]);
        assert_eq!(p.forgotten, vec![2]);
        s.answered(&p, 42);
        // nothing changed: an empty incremental request (the broker waits for data)
        let p = s.plan(&[(0, want(6)), (1, want(7)), (3, want(0))]);
        assert_eq!((p.epoch, p.partitions.len(), p.forgotten.len()), (2, 0, 0));
        // a new leader epoch or a larger size counts as a change
        s.answered(&p, 42);
        let bigger = PartitionWant {
            max_bytes: 2000,
            ..want(6)
        };
        let p = s.plan(&[(0, bigger), (1, want(7)), (3, want(0))]);
        assert_eq!(p.partitions, vec![(0, bigger)]);
    }

    #[test]
    fn a_broker_without_sessions_gets_full_requests() {
        let mut s = FetchSession::new();
        for _ in 0..3 {
            let p = s.plan(&[(0, want(5))]);
            assert!(p.full);
            assert_eq!((p.session_id, p.epoch), (0, 0));
            s.answered(&p, 0);
        }
    }

    #[test]
    fn errors_start_over_closing_a_known_session() {
        let mut s = FetchSession::new();
        let p = s.plan(&[(0, want(5))]);
        s.answered(&p, 9);
        let _ = s.plan(&[(0, want(6))]);
        s.failed(true); // say a broken connection: close session 9 and make a new one
        let p = s.plan(&[(0, want(6))]);
        assert!(p.full);
        assert_eq!((p.session_id, p.epoch), (9, 0));
        s.answered(&p, 10);
        assert_eq!(s.id(), 10);
        let _ = s.plan(&[(0, want(7))]);
        s.failed(false); // FETCH_SESSION_ID_NOT_FOUND: the broker forgot it
        let p = s.plan(&[(0, want(7))]);
        assert_eq!((p.session_id, p.epoch, p.full), (0, 0, true));
    }

    #[test]
    fn epochs_wrap_to_one() {
        assert_eq!(next_epoch(1), 2);
        assert_eq!(next_epoch(i32::MAX), 1);
    }

    #[test]
    fn requests_name_topics_by_id_from_v13() {
        let topic = TopicRef {
            name: "logs".into(),
            id: Some(77),
        };
        let plan = FetchPlan {
            session_id: 5,
            epoch: 2,
            full: false,
            partitions: vec![(1, want(10))],
            forgotten: vec![4],
        };
        let limits = FetchLimits {
            max_wait_ms: 100,
            max_bytes: 1 << 20,
        };
        let r = fetch_request(&topic, &plan, limits, 13);
        assert_eq!(r.topics[0].topic_id.as_u128(), 77);
        assert_eq!(r.forgotten_topics_data[0].partitions, vec![4]);
        assert_eq!(
            (r.session_id, r.session_epoch, r.isolation_level),
            (5, 2, 1)
        );
        let p = &r.topics[0].partitions[0];
        assert_eq!(
            (
                p.fetch_offset,
                p.current_leader_epoch,
                p.partition_max_bytes
            ),
            (10, 3, 1000)
        );
        let r = fetch_request(&topic, &plan, limits, 12);
        assert_eq!(r.topics[0].topic.0.as_str(), "logs");
        assert!(r.topics[0].topic_id.is_nil());
        let r = fetch_request(&topic, &plan, limits, 6);
        assert_eq!((r.session_id, r.session_epoch), (0, -1));
    }
}
