//! The scripted broker's transaction and Produce requests (`--output-topic`):
//! what it saw of each, and its answers.

use bytes::Bytes;
use kafka_protocol::messages::{self as m, ApiKey};

use super::{decode, encode, s, Reply, Seen, SCRIPTED_TOPIC};

/// The transaction requests (`--output-topic`).
pub(super) fn seen_txn(key: ApiKey, buf: &mut Bytes, v: i16) -> Seen {
    match key {
        ApiKey::InitProducerId => {
            let r: m::InitProducerIdRequest = decode(buf, v);
            Seen::InitProducerId {
                transactional_id: r
                    .transactional_id
                    .map(|i| i.0.to_string())
                    .unwrap_or_default(),
            }
        }
        ApiKey::AddPartitionsToTxn => {
            let r: m::AddPartitionsToTxnRequest = decode(buf, v);
            Seen::AddPartitionsToTxn {
                partitions: r
                    .v3_and_below_topics
                    .into_iter()
                    .flat_map(|t| {
                        let name = t.name.0.to_string();
                        t.partitions.into_iter().map(move |p| (name.clone(), p))
                    })
                    .collect(),
            }
        }
        ApiKey::AddOffsetsToTxn => {
            let r: m::AddOffsetsToTxnRequest = decode(buf, v);
            Seen::AddOffsetsToTxn {
                group: r.group_id.0.to_string(),
            }
        }
        ApiKey::TxnOffsetCommit => {
            let r: m::TxnOffsetCommitRequest = decode(buf, v);
            Seen::TxnOffsetCommit {
                member_id: r.member_id.to_string(),
                generation_id: r.generation_id,
                producer_epoch: r.producer_epoch,
                offsets: r
                    .topics
                    .into_iter()
                    .flat_map(|t| t.partitions)
                    .map(|p| (p.partition_index, p.committed_offset))
                    .collect(),
            }
        }
        ApiKey::EndTxn => {
            let r: m::EndTxnRequest = decode(buf, v);
            Seen::EndTxn {
                commit: r.committed,
                producer_epoch: r.producer_epoch,
            }
        }
        ApiKey::Produce => seen_produce(decode(buf, v)),
        ApiKey::Fetch => {
            let r: m::FetchRequest = decode(buf, v);
            Seen::Fetch {
                max_bytes: r.max_bytes,
                partitions: r
                    .topics
                    .into_iter()
                    .flat_map(|t| t.partitions)
                    .map(|p| (p.partition, p.fetch_offset, p.partition_max_bytes))
                    .collect(),
            }
        }
        other => panic!("the scripted broker does not speak {other:?}"),
    }
}

fn seen_produce(r: m::ProduceRequest) -> Seen {
    let t = r.topic_data.into_iter().next().expect("a topic");
    let p = t.partition_data.into_iter().next().expect("a partition");
    let mut bytes = p.records.expect("records");
    let set = kafka_protocol::records::RecordBatchDecoder::decode(&mut bytes).expect("a batch");
    Seen::Produce {
        topic: t.name.0.to_string(),
        partition: p.index,
        transactional: set.records.iter().all(|r| r.transactional),
        base_sequence: set.records.first().map_or(-1, |r| r.sequence),
        values: set
            .records
            .into_iter()
            .map(|r| r.value.unwrap_or_default())
            .collect(),
    }
}

/// The wire answer to a transaction request.
pub(super) fn txn_answer(request: &Seen, reply: Reply, v: i16) -> Bytes {
    match (request, reply) {
        (Seen::InitProducerId { .. }, Reply::Producer { error, id, epoch }) => encode(
            m::InitProducerIdResponse::default()
                .with_error_code(error)
                .with_producer_id(m::ProducerId(id))
                .with_producer_epoch(epoch),
            v,
        ),
        (Seen::AddPartitionsToTxn { partitions }, Reply::Code(code)) => {
            use m::add_partitions_to_txn_response::{
                AddPartitionsToTxnPartitionResult, AddPartitionsToTxnTopicResult,
            };
            let topics = partitions
                .iter()
                .map(|(t, p)| {
                    AddPartitionsToTxnTopicResult::default()
                        .with_name(m::TopicName(s(t)))
                        .with_results_by_partition(vec![
                            AddPartitionsToTxnPartitionResult::default()
                                .with_partition_index(*p)
                                .with_partition_error_code(code),
                        ])
                })
                .collect();
            encode(
                m::AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(topics),
                v,
            )
        }
        (Seen::AddOffsetsToTxn { .. }, Reply::Code(code)) => encode(
            m::AddOffsetsToTxnResponse::default().with_error_code(code),
            v,
        ),
        (Seen::TxnOffsetCommit { offsets, .. }, Reply::Code(code)) => {
            use m::txn_offset_commit_response::{
                TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
            };
            encode(
                m::TxnOffsetCommitResponse::default().with_topics(vec![
                    TxnOffsetCommitResponseTopic::default()
                        .with_name(m::TopicName(s(SCRIPTED_TOPIC)))
                        .with_partitions(
                            offsets
                                .iter()
                                .map(|(p, _)| {
                                    TxnOffsetCommitResponsePartition::default()
                                        .with_partition_index(*p)
                                        .with_error_code(code)
                                })
                                .collect(),
                        ),
                ]),
                v,
            )
        }
        (Seen::EndTxn { .. }, Reply::Code(code)) => {
            encode(m::EndTxnResponse::default().with_error_code(code), v)
        }
        (
            Seen::Produce {
                topic, partition, ..
            },
            Reply::Code(code),
        ) => {
            use m::produce_response::{PartitionProduceResponse, TopicProduceResponse};
            encode(
                m::ProduceResponse::default().with_responses(vec![TopicProduceResponse::default()
                    .with_name(m::TopicName(s(topic)))
                    .with_partition_responses(vec![PartitionProduceResponse::default()
                        .with_index(*partition)
                        .with_error_code(code)])]),
                v,
            )
        }
        (request, reply) => panic!("the script answered {request:?} with {reply:?}"),
    }
}
