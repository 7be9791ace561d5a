//! A scripted broker for unit tests: a loopback listener in the test's own
//! runtime that speaks the Kafka wire protocol (kafka-protocol's decoders
//! and encoders, its types kept in here) and answers each group request as
//! the test's script says. Requests come in as [`Seen`], answers go out as
//! [`Reply`]: plain types, so tests outside `wire` never see kafka-protocol.
//! ApiVersions and FindCoordinator (this broker coordinates every group)
//! are answered without the script.

use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{self as m, ApiKey, BrokerId, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The topic id every scripted assignment and Metadata answer uses.
pub const TOPIC_ID: u128 = 0x0123_4567_89ab_cdef_0123_4567_89ab_cdef;

/// A group request as the scripted broker received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    JoinGroup {
        member_id: String,
        instance_id: Option<String>,
        /// The assignor names offered, in order.
        protocols: Vec<String>,
        /// The subscription bytes of the first assignor.
        subscription: Bytes,
    },
    SyncGroup {
        member_id: String,
        generation_id: i32,
        /// (member id, assignment bytes): filled by the leader only.
        assignments: Vec<(String, Bytes)>,
    },
    Heartbeat {
        member_id: String,
        generation_id: i32,
    },
    LeaveGroup {
        member_ids: Vec<String>,
        instance_ids: Vec<Option<String>>,
    },
    OffsetFetch {
        partitions: Vec<i32>,
        /// KIP-447's require_stable (v7+).
        require_stable: bool,
    },
    OffsetCommit {
        member_id: String,
        generation_id: i32,
        offsets: Vec<(i32, i64)>,
    },
    Metadata {
        topics: Vec<String>,
    },
    ConsumerHeartbeat {
        member_id: String,
        epoch: i32,
        /// The partitions the member says it owns (None: unchanged).
        owned: Option<Vec<i32>>,
        subscribed: Option<Vec<String>>,
    },
    ShareHeartbeat {
        member_id: String,
        epoch: i32,
    },
    InitProducerId {
        transactional_id: String,
    },
    AddPartitionsToTxn {
        partitions: Vec<(String, i32)>,
    },
    AddOffsetsToTxn {
        group: String,
    },
    TxnOffsetCommit {
        member_id: String,
        generation_id: i32,
        producer_epoch: i16,
        offsets: Vec<(i32, i64)>,
    },
    EndTxn {
        commit: bool,
        producer_epoch: i16,
    },
    /// A Fetch request: its `max_bytes` and (partition, fetch offset,
    /// partition max bytes) of each partition it names.
    Fetch {
        max_bytes: i32,
        partitions: Vec<(i32, i64, i32)>,
    },
    /// One partition's batch of a Produce request (the first one).
    Produce {
        topic: String,
        partition: i32,
        transactional: bool,
        base_sequence: i32,
        values: Vec<Bytes>,
    },
}

/// The script's answer to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    JoinGroup {
        error: i16,
        generation_id: i32,
        member_id: String,
        leader: String,
        protocol: Option<String>,
        /// (member id, subscription bytes), for the leader.
        members: Vec<(String, Bytes)>,
    },
    SyncGroup {
        error: i16,
        assignment: Bytes,
    },
    /// Heartbeat, LeaveGroup, OffsetCommit (every partition): this code.
    Code(i16),
    /// OffsetFetch: (partition, committed next offset or -1, its error code).
    Offsets {
        error: i16,
        offsets: Vec<(i32, i64, i16)>,
    },
    /// Metadata: every asked topic exists with this many partitions.
    Partitions(i32),
    /// ConsumerGroupHeartbeat / ShareGroupHeartbeat.
    Beat {
        error: i16,
        epoch: i32,
        interval_ms: i32,
        /// Partitions of [`TOPIC_ID`]; None: unchanged.
        assignment: Option<Vec<i32>>,
    },
    /// InitProducerId: the producer id and epoch handed out.
    Producer {
        error: i16,
        id: i64,
        epoch: i16,
    },
    /// Fetch (no session): (partition, high watermark, record batches) of
    /// [`TOPIC_ID`]; see [`record_batch`].
    Records(Vec<(i32, i64, Bytes)>),
    /// No answer: the connection stays silent (the client times out).
    Silence,
}

/// One record batch (v2) of `values` from `base_offset` on, lz4-compressed
/// or not, for a [`Reply::Records`].
pub fn record_batch(base_offset: i64, values: &[Bytes], lz4: bool) -> Bytes {
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };
    let records: Vec<Record> = values
        .iter()
        .enumerate()
        .map(|(i, v)| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: base_offset + i as i64,
            sequence: -1,
            timestamp: 1_700_000_000_000,
            key: None,
            value: Some(v.clone()),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    let compression = if lz4 {
        Compression::Lz4
    } else {
        Compression::None
    };
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )
    .expect("encode a record batch");
    buf.freeze()
}

mod txn;
use txn::{seen_txn, txn_answer};

type Script = Box<dyn FnMut(&Seen) -> Reply + Send>;

/// A running scripted broker; its tasks end with the test's runtime.
pub struct ScriptedBroker {
    pub addr: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    connections: Arc<Mutex<usize>>,
}

impl ScriptedBroker {
    /// Listen on a free loopback port and answer with `script`.
    pub async fn start(script: impl FnMut(&Seen) -> Reply + Send + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(Mutex::new(0));
        let script: Arc<Mutex<Script>> = Arc::new(Mutex::new(Box::new(script)));
        let (s2, c2, a2) = (seen.clone(), connections.clone(), addr.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                *c2.lock().unwrap() += 1;
                tokio::spawn(serve(stream, a2.clone(), script.clone(), s2.clone()));
            }
        });
        Self {
            addr,
            seen,
            connections,
        }
    }

    /// Every scripted request so far, in order.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// How many connections were made to it.
    pub fn connections(&self) -> usize {
        *self.connections.lock().unwrap()
    }
}

async fn serve(
    mut stream: TcpStream,
    addr: String,
    script: Arc<Mutex<Script>>,
    seen: Arc<Mutex<Vec<Seen>>>,
) {
    loop {
        let Ok(len) = stream.read_i32().await else {
            return;
        };
        let mut frame = vec![0u8; len as usize];
        if stream.read_exact(&mut frame).await.is_err() {
            return;
        }
        let mut buf = Bytes::from(frame);
        let key = ApiKey::try_from(i16::from_be_bytes([buf[0], buf[1]])).expect("api key");
        let version = i16::from_be_bytes([buf[2], buf[3]]);
        let header =
            RequestHeader::decode(&mut buf, key.request_header_version(version)).expect("header");
        let answer = match key {
            ApiKey::ApiVersions => Some(encode(api_versions(), version)),
            ApiKey::FindCoordinator => Some(encode(find_coordinator(&addr, version), version)),
            _ => {
                let request = decode_request(key, &mut buf, version);
                seen.lock().unwrap().push(request.clone());
                let reply = (script.lock().unwrap())(&request);
                encode_reply(&addr, &request, reply, version)
            }
        };
        let Some(body) = answer else {
            // Silence: hold the connection open without answering.
            std::future::pending::<()>().await;
            return;
        };
        let rh = ResponseHeader::default().with_correlation_id(header.correlation_id);
        let mut out = BytesMut::new();
        rh.encode(&mut out, key.response_header_version(version))
            .expect("response header");
        out.extend_from_slice(&body);
        let mut framed = (out.len() as i32).to_be_bytes().to_vec();
        framed.extend_from_slice(&out);
        if stream.write_all(&framed).await.is_err() {
            return;
        }
    }
}

fn encode<T: Encodable>(msg: T, version: i16) -> Bytes {
    let mut out = BytesMut::new();
    msg.encode(&mut out, version).expect("encode");
    out.freeze()
}

fn s(x: &str) -> StrBytes {
    StrBytes::from_string(x.to_string())
}

const SPOKEN: [ApiKey; 20] = [
    ApiKey::Fetch,
    ApiKey::InitProducerId,
    ApiKey::AddPartitionsToTxn,
    ApiKey::AddOffsetsToTxn,
    ApiKey::TxnOffsetCommit,
    ApiKey::EndTxn,
    ApiKey::Produce,
    ApiKey::ApiVersions,
    ApiKey::Metadata,
    ApiKey::FindCoordinator,
    ApiKey::JoinGroup,
    ApiKey::SyncGroup,
    ApiKey::Heartbeat,
    ApiKey::LeaveGroup,
    ApiKey::OffsetCommit,
    ApiKey::OffsetFetch,
    ApiKey::ConsumerGroupHeartbeat,
    ApiKey::ShareGroupHeartbeat,
    ApiKey::ShareFetch,
    ApiKey::ShareAcknowledge,
];

fn api_versions() -> m::ApiVersionsResponse {
    m::ApiVersionsResponse::default().with_api_keys(
        SPOKEN
            .iter()
            .map(|k| {
                let v = k.valid_versions();
                m::api_versions_response::ApiVersion::default()
                    .with_api_key(*k as i16)
                    .with_min_version(v.min)
                    .with_max_version(v.max)
            })
            .collect(),
    )
}

fn find_coordinator(addr: &str, version: i16) -> m::FindCoordinatorResponse {
    let (host, port) = addr.rsplit_once(':').expect("host:port");
    let port: i32 = port.parse().expect("port");
    let r = m::FindCoordinatorResponse::default();
    if version >= 4 {
        r.with_coordinators(vec![m::find_coordinator_response::Coordinator::default()
            .with_node_id(BrokerId(1))
            .with_host(s(host))
            .with_port(port)])
    } else {
        r.with_node_id(BrokerId(1))
            .with_host(s(host))
            .with_port(port)
    }
}

fn decode<T: Decodable>(buf: &mut Bytes, version: i16) -> T {
    T::decode(buf, version).expect("request body")
}

fn decode_request(key: ApiKey, buf: &mut Bytes, v: i16) -> Seen {
    match key {
        ApiKey::JoinGroup => {
            let r: m::JoinGroupRequest = decode(buf, v);
            Seen::JoinGroup {
                member_id: r.member_id.to_string(),
                instance_id: r.group_instance_id.map(|i| i.to_string()),
                protocols: r.protocols.iter().map(|p| p.name.to_string()).collect(),
                subscription: r
                    .protocols
                    .first()
                    .map(|p| p.metadata.clone())
                    .unwrap_or_default(),
            }
        }
        ApiKey::SyncGroup => {
            let r: m::SyncGroupRequest = decode(buf, v);
            Seen::SyncGroup {
                member_id: r.member_id.to_string(),
                generation_id: r.generation_id,
                assignments: r
                    .assignments
                    .into_iter()
                    .map(|a| (a.member_id.to_string(), a.assignment))
                    .collect(),
            }
        }
        ApiKey::Heartbeat => {
            let r: m::HeartbeatRequest = decode(buf, v);
            Seen::Heartbeat {
                member_id: r.member_id.to_string(),
                generation_id: r.generation_id,
            }
        }
        ApiKey::LeaveGroup => seen_leave(decode(buf, v), v),
        ApiKey::OffsetFetch => {
            let r: m::OffsetFetchRequest = decode(buf, v);
            Seen::OffsetFetch {
                partitions: r
                    .topics
                    .unwrap_or_default()
                    .into_iter()
                    .flat_map(|t| t.partition_indexes)
                    .collect(),
                require_stable: r.require_stable,
            }
        }
        ApiKey::OffsetCommit => {
            let r: m::OffsetCommitRequest = decode(buf, v);
            Seen::OffsetCommit {
                member_id: r.member_id.to_string(),
                generation_id: r.generation_id_or_member_epoch,
                offsets: r
                    .topics
                    .into_iter()
                    .flat_map(|t| t.partitions)
                    .map(|p| (p.partition_index, p.committed_offset))
                    .collect(),
            }
        }
        ApiKey::Metadata => {
            let r: m::MetadataRequest = decode(buf, v);
            Seen::Metadata {
                topics: r
                    .topics
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|t| t.name.map(|n| n.0.to_string()))
                    .collect(),
            }
        }
        ApiKey::ConsumerGroupHeartbeat => seen_consumer_beat(decode(buf, v)),
        ApiKey::ShareGroupHeartbeat => {
            let r: m::ShareGroupHeartbeatRequest = decode(buf, v);
            Seen::ShareHeartbeat {
                member_id: r.member_id.to_string(),
                epoch: r.member_epoch,
            }
        }
        other => seen_txn(other, buf, v),
    }
}

fn seen_leave(r: m::LeaveGroupRequest, v: i16) -> Seen {
    let (member_ids, instance_ids) = if v >= 3 {
        r.members
            .iter()
            .map(|m| {
                (
                    m.member_id.to_string(),
                    m.group_instance_id.as_ref().map(|i| i.to_string()),
                )
            })
            .unzip()
    } else {
        (vec![r.member_id.to_string()], vec![None])
    };
    Seen::LeaveGroup {
        member_ids,
        instance_ids,
    }
}

fn seen_consumer_beat(r: m::ConsumerGroupHeartbeatRequest) -> Seen {
    Seen::ConsumerHeartbeat {
        member_id: r.member_id.to_string(),
        epoch: r.member_epoch,
        owned: r
            .topic_partitions
            .map(|t| t.into_iter().flat_map(|t| t.partitions).collect()),
        subscribed: r
            .subscribed_topic_names
            .map(|t| t.into_iter().map(|n| n.0.to_string()).collect()),
    }
}

/// The wire answer to `request`; None for [`Reply::Silence`].
fn encode_reply(addr: &str, request: &Seen, reply: Reply, v: i16) -> Option<Bytes> {
    let body = match (request, reply) {
        (_, Reply::Silence) => return None,
        (Seen::JoinGroup { .. }, r @ Reply::JoinGroup { .. }) => encode(join_answer(r), v),
        (Seen::SyncGroup { .. }, Reply::SyncGroup { error, assignment }) => encode(
            m::SyncGroupResponse::default()
                .with_error_code(error)
                .with_protocol_type(Some(s("consumer")))
                .with_assignment(assignment),
            v,
        ),
        (Seen::Heartbeat { .. }, Reply::Code(code)) => {
            encode(m::HeartbeatResponse::default().with_error_code(code), v)
        }
        (Seen::LeaveGroup { member_ids, .. }, Reply::Code(code)) => {
            encode(leave_answer(member_ids, code, v), v)
        }
        (Seen::OffsetCommit { offsets, .. }, Reply::Code(code)) => {
            encode(commit_answer(offsets, code), v)
        }
        (Seen::OffsetFetch { .. }, Reply::Offsets { error, offsets }) => {
            encode(fetch_offsets_answer(error, offsets), v)
        }
        (Seen::Metadata { topics }, Reply::Partitions(n)) => {
            encode(metadata_answer(addr, topics, n), v)
        }
        (Seen::ConsumerHeartbeat { member_id, .. }, r @ Reply::Beat { .. }) => {
            encode(consumer_beat_answer(member_id, r), v)
        }
        (Seen::ShareHeartbeat { member_id, .. }, r @ Reply::Beat { .. }) => {
            encode(share_beat_answer(member_id, r), v)
        }
        (Seen::Fetch { .. }, Reply::Records(parts)) => encode(fetch_answer(parts), v),
        (request, reply) => txn_answer(request, reply, v),
    };
    Some(body)
}

fn join_answer(r: Reply) -> m::JoinGroupResponse {
    let Reply::JoinGroup {
        error,
        generation_id,
        member_id,
        leader,
        protocol,
        members,
    } = r
    else {
        unreachable!()
    };
    m::JoinGroupResponse::default()
        .with_error_code(error)
        .with_generation_id(generation_id)
        .with_member_id(s(&member_id))
        .with_leader(s(&leader))
        .with_protocol_type(Some(s("consumer")))
        .with_protocol_name(protocol.as_deref().map(s))
        .with_members(
            members
                .into_iter()
                .map(|(id, meta)| {
                    m::join_group_response::JoinGroupResponseMember::default()
                        .with_member_id(s(&id))
                        .with_metadata(meta)
                })
                .collect(),
        )
}

/// Per member from v3 (each with `code`), the group's code before.
fn leave_answer(member_ids: &[String], code: i16, v: i16) -> m::LeaveGroupResponse {
    if v < 3 {
        return m::LeaveGroupResponse::default().with_error_code(code);
    }
    m::LeaveGroupResponse::default().with_members(
        member_ids
            .iter()
            .map(|id| {
                m::leave_group_response::MemberResponse::default()
                    .with_member_id(s(id))
                    .with_error_code(code)
            })
            .collect(),
    )
}

fn commit_answer(offsets: &[(i32, i64)], code: i16) -> m::OffsetCommitResponse {
    use m::offset_commit_response::{OffsetCommitResponsePartition, OffsetCommitResponseTopic};
    m::OffsetCommitResponse::default().with_topics(vec![OffsetCommitResponseTopic::default()
        .with_name(m::TopicName(s(SCRIPTED_TOPIC)))
        .with_partitions(
            offsets
                .iter()
                .map(|(p, _)| {
                    OffsetCommitResponsePartition::default()
                        .with_partition_index(*p)
                        .with_error_code(code)
                })
                .collect(),
        )])
}

fn fetch_offsets_answer(error: i16, offsets: Vec<(i32, i64, i16)>) -> m::OffsetFetchResponse {
    use m::offset_fetch_response::{OffsetFetchResponsePartition, OffsetFetchResponseTopic};
    m::OffsetFetchResponse::default()
        .with_error_code(error)
        .with_topics(vec![OffsetFetchResponseTopic::default()
            .with_name(m::TopicName(s(SCRIPTED_TOPIC)))
            .with_partitions(
                offsets
                    .into_iter()
                    .map(|(p, o, code)| {
                        OffsetFetchResponsePartition::default()
                            .with_partition_index(p)
                            .with_committed_offset(o)
                            .with_error_code(code)
                    })
                    .collect(),
            )])
}

/// A Fetch answer without a session: each partition's batches under
/// [`TOPIC_ID`] (v13 and later name topics by id).
fn fetch_answer(parts: Vec<(i32, i64, Bytes)>) -> m::FetchResponse {
    use m::fetch_response::{FetchableTopicResponse, PartitionData};
    m::FetchResponse::default().with_responses(vec![FetchableTopicResponse::default()
        .with_topic_id(uuid::Uuid::from_u128(TOPIC_ID))
        .with_partitions(
            parts
                .into_iter()
                .map(|(p, hw, records)| {
                    PartitionData::default()
                        .with_partition_index(p)
                        .with_high_watermark(hw)
                        .with_last_stable_offset(hw)
                        .with_records(Some(records))
                })
                .collect(),
        )])
}

fn metadata_answer(addr: &str, topics: &[String], partitions: i32) -> m::MetadataResponse {
    use m::metadata_response::{
        MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
    };
    let (host, port) = addr.rsplit_once(':').expect("host:port");
    m::MetadataResponse::default()
        .with_brokers(vec![MetadataResponseBroker::default()
            .with_node_id(BrokerId(1))
            .with_host(s(host))
            .with_port(port.parse().expect("port"))])
        .with_topics(
            topics
                .iter()
                .map(|t| {
                    MetadataResponseTopic::default()
                        .with_name(Some(m::TopicName(s(t))))
                        .with_topic_id(uuid::Uuid::from_u128(TOPIC_ID))
                        .with_partitions(
                            (0..partitions)
                                .map(|p| {
                                    MetadataResponsePartition::default()
                                        .with_partition_index(p)
                                        .with_leader_id(BrokerId(1))
                                })
                                .collect(),
                        )
                })
                .collect(),
        )
}

/// (error, epoch, interval, partitions of [`TOPIC_ID`]) of a [`Reply::Beat`].
fn beat_fields(r: Reply) -> (i16, i32, i32, Option<Vec<i32>>) {
    let Reply::Beat {
        error,
        epoch,
        interval_ms,
        assignment,
    } = r
    else {
        unreachable!()
    };
    (error, epoch, interval_ms, assignment)
}

fn consumer_beat_answer(member_id: &str, r: Reply) -> m::ConsumerGroupHeartbeatResponse {
    use m::consumer_group_heartbeat_response::{Assignment, TopicPartitions};
    let (error, epoch, interval_ms, assignment) = beat_fields(r);
    m::ConsumerGroupHeartbeatResponse::default()
        .with_error_code(error)
        .with_member_id(Some(s(member_id)))
        .with_member_epoch(epoch)
        .with_heartbeat_interval_ms(interval_ms)
        .with_assignment(assignment.map(|p| {
            Assignment::default().with_topic_partitions(vec![TopicPartitions::default()
                .with_topic_id(uuid::Uuid::from_u128(TOPIC_ID))
                .with_partitions(p)])
        }))
}

fn share_beat_answer(member_id: &str, r: Reply) -> m::ShareGroupHeartbeatResponse {
    use m::share_group_heartbeat_response::{Assignment, TopicPartitions};
    let (error, epoch, interval_ms, assignment) = beat_fields(r);
    m::ShareGroupHeartbeatResponse::default()
        .with_error_code(error)
        .with_member_id(Some(s(member_id)))
        .with_member_epoch(epoch)
        .with_heartbeat_interval_ms(interval_ms)
        .with_assignment(assignment.map(|p| {
            Assignment::default().with_topic_partitions(vec![TopicPartitions::default()
                .with_topic_id(uuid::Uuid::from_u128(TOPIC_ID))
                .with_partitions(p)])
        }))
}

/// The topic name OffsetFetch answers are for: tests use this topic.
pub const SCRIPTED_TOPIC: &str = "t";
