//! The transaction requests (KIP-98, KIP-447, KIP-890) as plain Rust:
//! InitProducerId, AddPartitionsToTxn, AddOffsetsToTxn, TxnOffsetCommit,
//! EndTxn, and a transactional Produce. Each picks its version with the
//! broker; Kafka error codes stay raw `i16` (`txn::errors` classifies them).

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{self as m, GroupId, ProducerId, TopicName, TransactionalId};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

use super::{BrokerConn, WireError, WireResult};
pub use crate::record::OutRecord;

fn s(x: &str) -> StrBytes {
    StrBytes::from_string(x.to_string())
}

/// The finalized feature that says which transaction protocol the cluster
/// runs (2: KIP-890's, with implicit partition adds and an epoch bump per
/// transaction).
pub const TRANSACTION_VERSION: &str = "transaction.version";

/// A producer id and epoch the transaction coordinator handed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerIdentity {
    pub id: i64,
    pub epoch: i16,
}

/// The group a transaction's offsets belong to, as the consumer sees it
/// (KIP-447: a member whose generation moved on cannot commit).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMetadata {
    pub group: String,
    pub member_id: String,
    pub generation: i32,
    pub instance_id: Option<String>,
}

/// InitProducerId for `transactional_id`: fences every earlier producer of
/// that id and aborts its open transaction. (error code, identity)
pub async fn init_producer_id(
    conn: &mut BrokerConn,
    transactional_id: &str,
    timeout_ms: i32,
) -> WireResult<(i16, ProducerIdentity)> {
    let v = conn.negotiate::<m::InitProducerIdRequest>(0, 5)?;
    let mut req = m::InitProducerIdRequest::default()
        .with_transactional_id(Some(TransactionalId(s(transactional_id))))
        .with_transaction_timeout_ms(timeout_ms);
    if v >= 3 {
        req = req.with_producer_id(ProducerId(-1)).with_producer_epoch(-1);
    }
    let r = conn.send(req, v).await?;
    Ok((
        r.error_code,
        ProducerIdentity {
            id: r.producer_id.0,
            epoch: r.producer_epoch,
        },
    ))
}

/// AddPartitionsToTxn (the client versions, up to 3): the partitions of
/// `topic` join the open transaction. Per partition its error code.
pub async fn add_partitions(
    conn: &mut BrokerConn,
    transactional_id: &str,
    producer: ProducerIdentity,
    topics: &[(String, Vec<i32>)],
) -> WireResult<Vec<(String, i32, i16)>> {
    let v = conn.negotiate::<m::AddPartitionsToTxnRequest>(0, 3)?;
    let req = m::AddPartitionsToTxnRequest::default()
        .with_v3_and_below_transactional_id(TransactionalId(s(transactional_id)))
        .with_v3_and_below_producer_id(ProducerId(producer.id))
        .with_v3_and_below_producer_epoch(producer.epoch)
        .with_v3_and_below_topics(
            topics
                .iter()
                .map(|(t, ps)| {
                    m::add_partitions_to_txn_request::AddPartitionsToTxnTopic::default()
                        .with_name(TopicName(s(t)))
                        .with_partitions(ps.clone())
                })
                .collect(),
        );
    let r = conn.send(req, v).await?;
    let mut out = Vec::new();
    for t in r.results_by_topic_v3_and_below {
        for p in t.results_by_partition {
            out.push((
                t.name.0.to_string(),
                p.partition_index,
                p.partition_error_code,
            ));
        }
    }
    Ok(out)
}

/// AddOffsetsToTxn: the group's offsets join the open transaction.
pub async fn add_offsets(
    conn: &mut BrokerConn,
    transactional_id: &str,
    producer: ProducerIdentity,
    group: &str,
) -> WireResult<i16> {
    let v = conn.negotiate::<m::AddOffsetsToTxnRequest>(0, 4)?;
    let req = m::AddOffsetsToTxnRequest::default()
        .with_transactional_id(TransactionalId(s(transactional_id)))
        .with_producer_id(ProducerId(producer.id))
        .with_producer_epoch(producer.epoch)
        .with_group_id(GroupId(s(group)));
    Ok(conn.send(req, v).await?.error_code)
}

/// TxnOffsetCommit to the group's coordinator, with the member's generation
/// (v3+, KIP-447). `max_version`: 5 adds the offsets partition to the
/// transaction implicitly (transaction version 2), 4 does not. Per
/// partition its error code.
pub async fn txn_offset_commit(
    conn: &mut BrokerConn,
    transactional_id: &str,
    producer: ProducerIdentity,
    meta: &GroupMetadata,
    topic: &str,
    offsets: &[(i32, i64)],
    max_version: i16,
) -> WireResult<Vec<(i32, i16)>> {
    let v = conn.negotiate::<m::TxnOffsetCommitRequest>(3, max_version)?;
    let req = m::TxnOffsetCommitRequest::default()
        .with_transactional_id(TransactionalId(s(transactional_id)))
        .with_group_id(GroupId(s(&meta.group)))
        .with_producer_id(ProducerId(producer.id))
        .with_producer_epoch(producer.epoch)
        .with_generation_id(meta.generation)
        .with_member_id(s(&meta.member_id))
        .with_group_instance_id(meta.instance_id.as_deref().map(s))
        .with_topics(vec![
            m::txn_offset_commit_request::TxnOffsetCommitRequestTopic::default()
                .with_name(TopicName(s(topic)))
                .with_partitions(
                    offsets
                        .iter()
                        .map(|&(p, o)| {
                            m::txn_offset_commit_request::TxnOffsetCommitRequestPartition::default()
                                .with_partition_index(p)
                                .with_committed_offset(o)
                                .with_committed_leader_epoch(-1)
                        })
                        .collect(),
                ),
        ]);
    let r = conn.send(req, v).await?;
    Ok(r.topics
        .into_iter()
        .flat_map(|t| t.partitions)
        .map(|p| (p.partition_index, p.error_code))
        .collect())
}

/// EndTxn: commit (or abort) the open transaction. `max_version` 5 (the
/// transaction version 2) answers with the producer's next epoch.
pub async fn end_txn(
    conn: &mut BrokerConn,
    transactional_id: &str,
    producer: ProducerIdentity,
    commit: bool,
    max_version: i16,
) -> WireResult<(i16, Option<ProducerIdentity>)> {
    let v = conn.negotiate::<m::EndTxnRequest>(0, max_version)?;
    let req = m::EndTxnRequest::default()
        .with_transactional_id(TransactionalId(s(transactional_id)))
        .with_producer_id(ProducerId(producer.id))
        .with_producer_epoch(producer.epoch)
        .with_committed(commit);
    let r = conn.send(req, v).await?;
    let next = (v >= 5 && r.error_code == 0).then_some(ProducerIdentity {
        id: r.producer_id.0,
        epoch: r.producer_epoch,
    });
    Ok((r.error_code, next))
}

/// One partition's part of a transactional Produce: its records, numbered
/// from `base_sequence`.
#[derive(Debug, Clone)]
pub struct PartitionBatch<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub base_sequence: i32,
    pub records: &'a [OutRecord],
}

/// What the broker said of one partition's batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchAnswer {
    pub topic: String,
    pub partition: i32,
    pub error: i16,
    pub message: Option<String>,
}

/// A transactional Produce (acks=all) of `batches` to one broker.
/// `min_version`: 12 when the broker must add the partitions to the
/// transaction itself (transaction version 2).
pub async fn produce(
    conn: &mut BrokerConn,
    transactional_id: &str,
    producer: ProducerIdentity,
    batches: &[PartitionBatch<'_>],
    min_version: i16,
    timeout_ms: i32,
) -> WireResult<Vec<BatchAnswer>> {
    let v = conn.negotiate::<m::ProduceRequest>(min_version, 12)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let mut topics: Vec<m::produce_request::TopicProduceData> = Vec::new();
    for b in batches {
        let data = encode_batch(b, producer, now).map_err(|msg| WireError::Protocol {
            addr: conn.addr().to_string(),
            msg,
        })?;
        let part = m::produce_request::PartitionProduceData::default()
            .with_index(b.partition)
            .with_records(Some(data));
        match topics.iter_mut().find(|t| t.name.0.as_str() == b.topic) {
            Some(t) => t.partition_data.push(part),
            None => topics.push(
                m::produce_request::TopicProduceData::default()
                    .with_name(TopicName(s(b.topic)))
                    .with_partition_data(vec![part]),
            ),
        }
    }
    let req = m::ProduceRequest::default()
        .with_transactional_id(Some(TransactionalId(s(transactional_id))))
        .with_acks(-1)
        .with_timeout_ms(timeout_ms)
        .with_topic_data(topics);
    let r = conn.send(req, v).await?;
    let mut out = Vec::new();
    for t in r.responses {
        for p in t.partition_responses {
            out.push(BatchAnswer {
                topic: t.name.0.to_string(),
                partition: p.index,
                error: p.error_code,
                message: p.error_message.map(|m| m.to_string()),
            });
        }
    }
    Ok(out)
}

/// One partition's records as a transactional record batch (v2, no
/// compression).
fn encode_batch(
    b: &PartitionBatch<'_>,
    producer: ProducerIdentity,
    now: i64,
) -> Result<Bytes, String> {
    let records: Vec<Record> = b
        .records
        .iter()
        .enumerate()
        .map(|(i, r)| Record {
            transactional: true,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: producer.id,
            producer_epoch: producer.epoch,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: b.base_sequence.wrapping_add(i as i32),
            timestamp: now,
            key: r.key.clone(),
            value: r.value.clone(),
            headers: r.headers.iter().map(|(k, v)| (s(k), v.clone())).collect(),
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
    .map_err(|e| format!("cannot encode a record batch: {e}"))?;
    Ok(buf.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::records::RecordBatchDecoder;

    #[test]
    fn a_batch_is_transactional_and_numbered_from_its_base_sequence() {
        let recs = vec![
            OutRecord {
                key: Some(Bytes::from_static(b"k")),
                value: Some(Bytes::from_static(b"one")),
                headers: vec![("h".into(), Some(Bytes::from_static(b"v")))],
            },
            OutRecord {
                key: None,
                value: Some(Bytes::from_static(b"two")),
                headers: vec![],
            },
        ];
        let b = PartitionBatch {
            topic: "t",
            partition: 3,
            base_sequence: 41,
            records: &recs,
        };
        let producer = ProducerIdentity { id: 7, epoch: 2 };
        let mut bytes = encode_batch(&b, producer, 1_000).unwrap();
        let set = RecordBatchDecoder::decode(&mut bytes).unwrap();
        assert_eq!(set.records.len(), 2);
        let (a, z) = (&set.records[0], &set.records[1]);
        assert!(a.transactional && z.transactional);
        assert_eq!((a.producer_id, a.producer_epoch), (7, 2));
        assert_eq!((a.sequence, z.sequence), (41, 42));
        assert_eq!(a.value.as_deref(), Some(&b"one"[..]));
        assert_eq!(a.key.as_deref(), Some(&b"k"[..]));
        assert_eq!(z.key, None);
        assert_eq!(a.headers.len(), 1);
    }
}
