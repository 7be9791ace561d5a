//! Share groups (KIP-932) as plain Rust: ShareGroupHeartbeat (membership),
//! ShareFetch (records acquired for this member, with acknowledgements riding
//! along) and ShareAcknowledge (acknowledgements alone); a share group's
//! configs are in [`super::configs`].
//!
//! The pure parts, tested below: the requests built from plain values, the
//! answers read back into plain values, acknowledgements packed into
//! batches, and the records of an answer cut down to the acquired ranges.
//! Every message is spoken at v1 (the first non-preview version, Kafka 4.1+;
//! kafka-protocol 0.18 encodes v1 only, and Kafka 4.4 accepts it).

use std::collections::BTreeMap;

use bytes::Bytes;
use kafka_protocol::messages::{self as m, GroupId, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::consumer_group::TopicId;
use super::{BrokerConn, WireResult};
use crate::record::Record;

#[cfg(test)]
pub(crate) const INVALID_RECORD_STATE: i16 = 121;
pub const SHARE_SESSION_NOT_FOUND: i16 = 122;
pub const INVALID_SHARE_SESSION_EPOCH: i16 = 123;

/// The share session epoch that closes a session.
pub const CLOSE_EPOCH: i32 = -1;

fn s(x: &str) -> StrBytes {
    StrBytes::from_string(x.to_string())
}

/// Whether the broker offers share groups at all (ShareGroupHeartbeat and
/// ShareFetch v1: Apache Kafka 4.1 with share.version=1, 4.2+ by default).
pub fn supports_share_groups(conn: &BrokerConn) -> bool {
    conn.version_for(m::ApiKey::ShareGroupHeartbeat, 1, 1)
        .is_some()
        && conn.version_for(m::ApiKey::ShareFetch, 1, 1).is_some()
        && conn
            .version_for(m::ApiKey::ShareAcknowledge, 1, 1)
            .is_some()
}

/// What the broker says about its share group support, for a message.
pub fn share_support(conn: &BrokerConn) -> String {
    let v = |k| match conn.broker_versions(k) {
        Some((a, b)) => format!("v{a}..v{b}"),
        None => "none".into(),
    };
    format!(
        "ShareGroupHeartbeat {}, ShareFetch {}, ShareAcknowledge {}",
        v(m::ApiKey::ShareGroupHeartbeat),
        v(m::ApiKey::ShareFetch),
        v(m::ApiKey::ShareAcknowledge)
    )
}

/// One ShareGroupHeartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareBeat<'a> {
    pub group: &'a str,
    /// Chosen by the client (a UUID), kept for the member's life.
    pub member_id: &'a str,
    /// 0 to join, the current epoch to beat, -1 to leave.
    pub member_epoch: i32,
    /// Sent when joining (None: unchanged).
    pub topics: Option<&'a [String]>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareBeatAnswer {
    pub error: i16,
    pub error_message: Option<String>,
    pub member_id: Option<String>,
    pub member_epoch: i32,
    pub heartbeat_interval_ms: i32,
    /// Per topic id, the partitions assigned now; None: unchanged.
    pub assignment: Option<Vec<(TopicId, Vec<i32>)>>,
}

fn share_beat_request(b: &ShareBeat<'_>) -> m::ShareGroupHeartbeatRequest {
    m::ShareGroupHeartbeatRequest::default()
        .with_group_id(GroupId(s(b.group)))
        .with_member_id(s(b.member_id))
        .with_member_epoch(b.member_epoch)
        .with_subscribed_topic_names(
            b.topics
                .map(|t| t.iter().map(|x| TopicName(s(x))).collect()),
        )
}

fn share_beat_answer(r: m::ShareGroupHeartbeatResponse) -> ShareBeatAnswer {
    ShareBeatAnswer {
        error: r.error_code,
        error_message: r.error_message.map(|x| x.to_string()),
        member_id: r.member_id.map(|x| x.to_string()),
        member_epoch: r.member_epoch,
        heartbeat_interval_ms: r.heartbeat_interval_ms,
        assignment: r.assignment.map(|a| {
            a.topic_partitions
                .into_iter()
                .map(|t| (t.topic_id.as_u128(), t.partitions))
                .collect()
        }),
    }
}

pub async fn share_group_heartbeat(
    conn: &mut BrokerConn,
    b: &ShareBeat<'_>,
) -> WireResult<ShareBeatAnswer> {
    let v = conn.negotiate::<m::ShareGroupHeartbeatRequest>(1, 1)?;
    let r = conn.send(share_beat_request(b), v).await?;
    Ok(share_beat_answer(r))
}

/// How a record was dealt with (KIP-932's acknowledge types).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum AckType {
    /// An offset in an acquired range that holds no record (a control
    /// record, a compacted-away offset).
    Gap = 0,
    /// Handled: done for good.
    Accept = 1,
    /// Not handled: back to the pool, delivered again (delivery count + 1).
    Release = 2,
    /// Not to be handled: archived, never delivered again.
    Reject = 3,
}

/// Acknowledgements of consecutive offsets in one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckBatch {
    pub first: i64,
    pub last: i64,
    /// One type for the whole range, or one per offset.
    pub types: Vec<i8>,
}

/// Pack one partition's acknowledgements ((offset, type), any order, no
/// offset twice) into batches: consecutive offsets of one type make one
/// batch with a single type.
pub fn ack_batches(acks: &[(i64, AckType)]) -> Vec<AckBatch> {
    let mut sorted = acks.to_vec();
    sorted.sort_unstable();
    sorted.dedup_by_key(|a| a.0);
    let mut out: Vec<AckBatch> = Vec::new();
    for (offset, t) in sorted {
        match out.last_mut() {
            Some(b) if b.last + 1 == offset && b.types == [t as i8] => b.last = offset,
            _ => out.push(AckBatch {
                first: offset,
                last: offset,
                types: vec![t as i8],
            }),
        }
    }
    out
}

/// One ShareFetch: the session fields, the partitions to name (with their
/// acknowledgements) and the ones to drop from the session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareFetchPlan<'a> {
    pub group: &'a str,
    pub member_id: &'a str,
    /// 0 opens a session (no acknowledgements allowed), then 1, 2, ..; -1 closes it.
    pub epoch: i32,
    pub topic_id: TopicId,
    pub partitions: Vec<(i32, Vec<AckBatch>)>,
    pub forgotten: Vec<i32>,
    pub max_wait_ms: i32,
    pub max_bytes: i32,
    pub partition_max_bytes: i32,
    /// Records to acquire at most.
    pub max_records: i32,
    /// The broker acquires in batches of about this many records.
    pub batch_size: i32,
}

fn share_fetch_request(p: &ShareFetchPlan<'_>) -> m::ShareFetchRequest {
    let id = uuid::Uuid::from_u128(p.topic_id);
    let partitions: Vec<m::share_fetch_request::FetchPartition> = p
        .partitions
        .iter()
        .map(|(part, acks)| {
            m::share_fetch_request::FetchPartition::default()
                .with_partition_index(*part)
                .with_partition_max_bytes(p.partition_max_bytes)
                .with_acknowledgement_batches(
                    acks.iter()
                        .map(|b| {
                            m::share_fetch_request::AcknowledgementBatch::default()
                                .with_first_offset(b.first)
                                .with_last_offset(b.last)
                                .with_acknowledge_types(b.types.clone())
                        })
                        .collect(),
                )
        })
        .collect();
    let mut topics = Vec::new();
    if !partitions.is_empty() {
        topics.push(
            m::share_fetch_request::FetchTopic::default()
                .with_topic_id(id)
                .with_partitions(partitions),
        );
    }
    let mut forgotten = Vec::new();
    if !p.forgotten.is_empty() {
        forgotten.push(
            m::share_fetch_request::ForgottenTopic::default()
                .with_topic_id(id)
                .with_partitions(p.forgotten.clone()),
        );
    }
    m::ShareFetchRequest::default()
        .with_group_id(Some(GroupId(s(p.group))))
        .with_member_id(Some(s(p.member_id)))
        .with_share_session_epoch(p.epoch)
        .with_max_wait_ms(p.max_wait_ms)
        .with_min_bytes(1)
        .with_max_bytes(p.max_bytes)
        .with_max_records(p.max_records)
        .with_batch_size(p.batch_size)
        .with_topics(topics)
        .with_forgotten_topics_data(forgotten)
}

/// Records acquired for us: offsets first..=last, delivered `delivery_count` times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Acquired {
    pub first: i64,
    pub last: i64,
    pub delivery_count: i16,
}

/// One partition of a ShareFetch answer.
#[derive(Debug, Clone)]
pub struct SharePartitionAnswer {
    pub partition: i32,
    pub error: i16,
    pub error_message: Option<String>,
    /// The outcome of the acknowledgements this request carried for it.
    pub ack_error: i16,
    pub ack_error_message: Option<String>,
    /// The record batches (may hold records outside `acquired`).
    pub records: Bytes,
    pub acquired: Vec<Acquired>,
}

#[derive(Debug, Clone)]
pub struct ShareFetchAnswer {
    pub error: i16,
    pub error_message: Option<String>,
    /// How long acquired records stay ours (the broker's record lock).
    pub lock_timeout_ms: i32,
    pub partitions: Vec<SharePartitionAnswer>,
}

fn share_fetch_answer(r: m::ShareFetchResponse, topic_id: TopicId) -> ShareFetchAnswer {
    let mut partitions = Vec::new();
    for t in r.responses {
        if t.topic_id.as_u128() != topic_id {
            continue;
        }
        for p in t.partitions {
            partitions.push(SharePartitionAnswer {
                partition: p.partition_index,
                error: p.error_code,
                error_message: p.error_message.map(|x| x.to_string()),
                ack_error: p.acknowledge_error_code,
                ack_error_message: p.acknowledge_error_message.map(|x| x.to_string()),
                records: p.records.unwrap_or_default(),
                acquired: p
                    .acquired_records
                    .into_iter()
                    .map(|a| Acquired {
                        first: a.first_offset,
                        last: a.last_offset,
                        delivery_count: a.delivery_count,
                    })
                    .collect(),
            });
        }
    }
    ShareFetchAnswer {
        error: r.error_code,
        error_message: r.error_message.map(|x| x.to_string()),
        lock_timeout_ms: r.acquisition_lock_timeout_ms,
        partitions,
    }
}

pub async fn share_fetch(
    conn: &mut BrokerConn,
    plan: &ShareFetchPlan<'_>,
) -> WireResult<ShareFetchAnswer> {
    let v = conn.negotiate::<m::ShareFetchRequest>(1, 1)?;
    let r = conn.send(share_fetch_request(plan), v).await?;
    Ok(share_fetch_answer(r, plan.topic_id))
}

/// One ShareAcknowledge (acknowledgements without fetching; epoch -1 also
/// closes the session).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareAckPlan<'a> {
    pub group: &'a str,
    pub member_id: &'a str,
    pub epoch: i32,
    pub topic_id: TopicId,
    pub partitions: Vec<(i32, Vec<AckBatch>)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareAckAnswer {
    pub error: i16,
    pub error_message: Option<String>,
    /// (partition, error code, message)
    pub partitions: Vec<(i32, i16, Option<String>)>,
}

fn share_ack_request(p: &ShareAckPlan<'_>) -> m::ShareAcknowledgeRequest {
    let parts: Vec<m::share_acknowledge_request::AcknowledgePartition> = p
        .partitions
        .iter()
        .map(|(part, acks)| {
            m::share_acknowledge_request::AcknowledgePartition::default()
                .with_partition_index(*part)
                .with_acknowledgement_batches(
                    acks.iter()
                        .map(|b| {
                            m::share_acknowledge_request::AcknowledgementBatch::default()
                                .with_first_offset(b.first)
                                .with_last_offset(b.last)
                                .with_acknowledge_types(b.types.clone())
                        })
                        .collect(),
                )
        })
        .collect();
    let mut topics = Vec::new();
    if !parts.is_empty() {
        topics.push(
            m::share_acknowledge_request::AcknowledgeTopic::default()
                .with_topic_id(uuid::Uuid::from_u128(p.topic_id))
                .with_partitions(parts),
        );
    }
    m::ShareAcknowledgeRequest::default()
        .with_group_id(Some(GroupId(s(p.group))))
        .with_member_id(Some(s(p.member_id)))
        .with_share_session_epoch(p.epoch)
        .with_topics(topics)
}

pub async fn share_acknowledge(
    conn: &mut BrokerConn,
    plan: &ShareAckPlan<'_>,
) -> WireResult<ShareAckAnswer> {
    let v = conn.negotiate::<m::ShareAcknowledgeRequest>(1, 1)?;
    let r = conn.send(share_ack_request(plan), v).await?;
    Ok(ShareAckAnswer {
        error: r.error_code,
        error_message: r.error_message.map(|x| x.to_string()),
        partitions: r
            .responses
            .into_iter()
            .filter(|t| t.topic_id.as_u128() == plan.topic_id)
            .flat_map(|t| t.partitions)
            .map(|p| {
                (
                    p.partition_index,
                    p.error_code,
                    p.error_message.map(|x| x.to_string()),
                )
            })
            .collect(),
    })
}

/// What [`acquired_records`] found besides the records.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Leftovers {
    /// Acquired offsets inside the complete batches that hold no record
    /// (control records, compacted offsets): acknowledged as [`AckType::Gap`].
    pub gaps: Vec<i64>,
    /// Acquired offsets past the last complete batch of the answer (cut off
    /// by a byte limit): not read, so RELEASEd, never taken for gaps.
    pub unread: Vec<i64>,
}

/// The records of one partition's answer that were acquired for us, each
/// with its delivery count, appended to `out`; and the acquired offsets
/// that hold no record ([`Leftovers`]).
pub fn acquired_records(
    partition: i32,
    raw: Bytes,
    acquired: &[Acquired],
    out: &mut Vec<(Record, i16)>,
) -> Result<Leftovers, String> {
    let Some(from) = acquired.iter().map(|a| a.first).min() else {
        return Ok(Leftovers::default());
    };
    let mut decoded = Vec::new();
    let d = super::records::decode_fetched(partition, raw, from, Vec::new(), &mut decoded)?;
    let read_to = d.next_offset.unwrap_or(i64::MIN);
    let count = |o: i64| {
        acquired
            .iter()
            .find(|a| a.first <= o && o <= a.last)
            .map(|a| a.delivery_count)
    };
    let mut seen: BTreeMap<i64, ()> = BTreeMap::new();
    for r in decoded {
        if let Some(c) = count(r.offset) {
            if seen.insert(r.offset, ()).is_none() {
                let r = Record {
                    delivery_count: Some(c.max(0) as u16),
                    lane: crate::record::Lane::Main,
                    ..r
                };
                out.push((r, c));
            }
        }
    }
    let mut left = Leftovers::default();
    for a in acquired {
        for o in a.first..=a.last {
            if seen.contains_key(&o) {
                continue;
            }
            if o < read_to {
                left.gaps.push(o);
            } else {
                left.unread.push(o);
            }
        }
    }
    Ok(left)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use kafka_protocol::protocol::Encodable;
    use kafka_protocol::records::{
        Compression, Record as KRecord, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };

    #[test]
    fn acknowledgements_pack_into_runs_of_one_type() {
        use AckType::*;
        let acks = [
            (7, Accept),
            (5, Accept),
            (6, Accept),
            (9, Accept),
            (10, Reject),
            (11, Release),
            (12, Release),
            (6, Accept),
        ];
        let b = ack_batches(&acks);
        let got: Vec<(i64, i64, Vec<i8>)> =
            b.into_iter().map(|b| (b.first, b.last, b.types)).collect();
        assert_eq!(
            got,
            vec![
                (5, 7, vec![1]),
                (9, 9, vec![1]),
                (10, 10, vec![3]),
                (11, 12, vec![2])
            ]
        );
        assert!(ack_batches(&[]).is_empty());
    }

    #[test]
    fn heartbeat_request_and_answer() {
        let topics = vec!["logs".to_string()];
        let r = share_beat_request(&ShareBeat {
            group: "g",
            member_id: "m",
            member_epoch: 0,
            topics: Some(&topics),
        });
        assert_eq!(r.group_id.0.as_str(), "g");
        assert_eq!(r.member_epoch, 0);
        assert_eq!(r.subscribed_topic_names.unwrap()[0].0.as_str(), "logs");
        let r = share_beat_request(&ShareBeat {
            group: "g",
            member_id: "m",
            member_epoch: -1,
            topics: None,
        });
        assert!(r.subscribed_topic_names.is_none());
        let resp = m::ShareGroupHeartbeatResponse::default()
            .with_member_id(Some(s("m")))
            .with_member_epoch(3)
            .with_heartbeat_interval_ms(5000)
            .with_assignment(Some(
                m::share_group_heartbeat_response::Assignment::default().with_topic_partitions(
                    vec![
                        m::share_group_heartbeat_response::TopicPartitions::default()
                            .with_topic_id(uuid::Uuid::from_u128(9))
                            .with_partitions(vec![0, 1]),
                    ],
                ),
            ));
        let a = share_beat_answer(resp);
        assert_eq!((a.member_epoch, a.heartbeat_interval_ms), (3, 5000));
        assert_eq!(a.assignment, Some(vec![(9, vec![0, 1])]));
    }

    #[test]
    fn fetch_request_carries_session_acks_and_forgotten() {
        let plan = ShareFetchPlan {
            group: "g",
            member_id: "m",
            epoch: 4,
            topic_id: 77,
            partitions: vec![(
                1,
                ack_batches(&[(3, AckType::Accept), (4, AckType::Accept)]),
            )],
            forgotten: vec![2],
            max_wait_ms: 100,
            max_bytes: 1000,
            partition_max_bytes: 500,
            max_records: 50,
            batch_size: 10,
        };
        let r = share_fetch_request(&plan);
        let mut buf = BytesMut::new();
        r.encode(&mut buf, 1).unwrap();
        assert_eq!(r.share_session_epoch, 4);
        assert_eq!(r.member_id.as_ref().unwrap().as_str(), "m");
        assert_eq!((r.max_records, r.batch_size), (50, 10));
        let p = &r.topics[0].partitions[0];
        assert_eq!(r.topics[0].topic_id.as_u128(), 77);
        assert_eq!(p.partition_index, 1);
        assert_eq!(p.acknowledgement_batches[0].first_offset, 3);
        assert_eq!(p.acknowledgement_batches[0].last_offset, 4);
        assert_eq!(p.acknowledgement_batches[0].acknowledge_types, vec![1]);
        assert_eq!(r.forgotten_topics_data[0].partitions, vec![2]);
        // Nothing to name: no topic entry at all.
        let r = share_fetch_request(&ShareFetchPlan {
            partitions: vec![],
            forgotten: vec![],
            ..plan
        });
        assert!(r.topics.is_empty() && r.forgotten_topics_data.is_empty());
    }

    fn batch(offsets: std::ops::Range<i64>) -> Bytes {
        let records: Vec<KRecord> = offsets
            .map(|o| KRecord {
                transactional: false,
                control: false,
                partition_leader_epoch: 0,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: o,
                sequence: o as i32,
                timestamp: 0,
                key: None,
                value: Some(Bytes::from(format!("v{o}"))),
                headers: Default::default(),
                delete_horizon: false,
            })
            .collect();
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            &records,
            &RecordEncodeOptions {
                version: 2,
                compression: Compression::None,
            },
        )
        .unwrap();
        buf.freeze()
    }

    #[test]
    fn only_acquired_records_are_handed_out_with_their_delivery_count() {
        // The broker sends the whole batch 0..10; we acquired 2..=4 (first
        // delivery) and 7..=11 (third), 10 and 11 holding no record.
        let acquired = [
            Acquired {
                first: 2,
                last: 4,
                delivery_count: 1,
            },
            Acquired {
                first: 7,
                last: 11,
                delivery_count: 3,
            },
        ];
        let mut out = Vec::new();
        let mut whole = BytesMut::from(&batch(0..10)[..]);
        whole.extend_from_slice(&batch(12..13));
        let left = acquired_records(5, whole.freeze(), &acquired, &mut out).unwrap();
        let got: Vec<(i32, i64, i16)> = out
            .iter()
            .map(|(r, c)| (r.partition, r.offset, *c))
            .collect();
        assert_eq!(
            got,
            vec![
                (5, 2, 1),
                (5, 3, 1),
                (5, 4, 1),
                (5, 7, 3),
                (5, 8, 3),
                (5, 9, 3)
            ]
        );
        // The record itself carries its count, for the handler's line.
        let counts: Vec<Option<u16>> = out.iter().map(|(r, _)| r.delivery_count).collect();
        assert_eq!(counts, [1, 1, 1, 3, 3, 3].map(Some));
        assert_eq!(left.gaps, vec![10, 11]);
        assert!(left.unread.is_empty());
        // The answer's last batch is cut off: its acquired offsets were not
        // read, so they are no gaps (a GAP would lose them).
        let mut raw = BytesMut::from(&batch(0..5)[..]);
        let second = batch(5..12);
        raw.extend_from_slice(&second[..second.len() - 3]);
        let mut out = Vec::new();
        let left = acquired_records(5, raw.freeze(), &acquired, &mut out).unwrap();
        assert_eq!(out.len(), 3, "2, 3 and 4");
        assert_eq!(left.gaps, Vec::<i64>::new());
        assert_eq!(left.unread, vec![7, 8, 9, 10, 11]);
        // Nothing acquired: nothing handed out, even with records present.
        let mut out = Vec::new();
        assert_eq!(
            acquired_records(5, batch(0..3), &[], &mut out).unwrap(),
            Leftovers::default()
        );
        assert!(out.is_empty());
    }

    #[test]
    fn fetch_answer_keeps_our_topic_only() {
        let part = m::share_fetch_response::PartitionData::default()
            .with_partition_index(1)
            .with_acknowledge_error_code(INVALID_RECORD_STATE)
            .with_records(Some(batch(0..2)))
            .with_acquired_records(vec![m::share_fetch_response::AcquiredRecords::default()
                .with_first_offset(0)
                .with_last_offset(1)
                .with_delivery_count(2)]);
        let resp = m::ShareFetchResponse::default()
            .with_acquisition_lock_timeout_ms(30000)
            .with_responses(vec![
                m::share_fetch_response::ShareFetchableTopicResponse::default()
                    .with_topic_id(uuid::Uuid::from_u128(77))
                    .with_partitions(vec![part.clone()]),
                m::share_fetch_response::ShareFetchableTopicResponse::default()
                    .with_topic_id(uuid::Uuid::from_u128(78))
                    .with_partitions(vec![part]),
            ]);
        let a = share_fetch_answer(resp, 77);
        assert_eq!(a.lock_timeout_ms, 30000);
        assert_eq!(a.partitions.len(), 1);
        let p = &a.partitions[0];
        assert_eq!((p.partition, p.ack_error), (1, INVALID_RECORD_STATE));
        assert_eq!(
            p.acquired,
            vec![Acquired {
                first: 0,
                last: 1,
                delivery_count: 2
            }]
        );
    }

    #[test]
    fn acknowledge_request_names_partitions_with_acks() {
        let r = share_ack_request(&ShareAckPlan {
            group: "g",
            member_id: "m",
            epoch: CLOSE_EPOCH,
            topic_id: 5,
            partitions: vec![(0, ack_batches(&[(9, AckType::Release)]))],
        });
        let mut buf = BytesMut::new();
        r.encode(&mut buf, 1).unwrap();
        assert_eq!(r.share_session_epoch, -1);
        assert_eq!(
            r.topics[0].partitions[0].acknowledgement_batches[0].acknowledge_types,
            vec![2]
        );
    }
}
