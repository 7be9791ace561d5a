//! The requests of the next-generation consumer group protocol (KIP-848) as
//! plain Rust: ConsumerGroupHeartbeat, ConsumerGroupDescribe, and the topic
//! id that its assignments are written in. Error codes stay raw `i16`.

use kafka_protocol::messages::{self as m, GroupId, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::{BrokerConn, WireResult};

fn s(x: &str) -> StrBytes {
    StrBytes::from_string(x.to_string())
}

/// A topic's id (a UUID) as a plain number.
pub type TopicId = u128;

/// One ConsumerGroupHeartbeat. `None` fields are sent as null: "unchanged"
/// in a heartbeat of a known member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerBeat<'a> {
    pub group: &'a str,
    pub member_id: &'a str,
    /// 0 to join, the current epoch to beat, -1 to leave (-2: a static
    /// member leaving for a while).
    pub member_epoch: i32,
    pub instance_id: Option<&'a str>,
    pub rebalance_timeout_ms: Option<i32>,
    pub topics: Option<&'a [String]>,
    pub server_assignor: Option<&'a str>,
    /// The partitions we own, of `topic_id`.
    pub owned: Option<(TopicId, &'a [i32])>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerBeatAnswer {
    pub error: i16,
    pub error_message: Option<String>,
    pub member_id: Option<String>,
    pub member_epoch: i32,
    pub heartbeat_interval_ms: i32,
    /// The partitions the member may own now, per topic id; None: unchanged.
    pub assignment: Option<Vec<(TopicId, Vec<i32>)>>,
}

/// Whether the broker speaks the consumer group protocol at all.
pub fn supports_consumer_groups(conn: &BrokerConn) -> bool {
    conn.version_for(m::ApiKey::ConsumerGroupHeartbeat, 1, 1)
        .is_some()
}

pub async fn consumer_group_heartbeat(
    conn: &mut BrokerConn,
    b: &ConsumerBeat<'_>,
) -> WireResult<ConsumerBeatAnswer> {
    // v1: the member id is chosen by the client (KIP-1082).
    let v = conn.negotiate::<m::ConsumerGroupHeartbeatRequest>(1, 1)?;
    let req = m::ConsumerGroupHeartbeatRequest::default()
        .with_group_id(GroupId(s(b.group)))
        .with_member_id(s(b.member_id))
        .with_member_epoch(b.member_epoch)
        .with_instance_id(b.instance_id.map(s))
        .with_rebalance_timeout_ms(b.rebalance_timeout_ms.unwrap_or(-1))
        .with_subscribed_topic_names(
            b.topics
                .map(|t| t.iter().map(|x| TopicName(s(x))).collect()),
        )
        .with_server_assignor(b.server_assignor.map(s))
        .with_topic_partitions(b.owned.map(|(id, parts)| {
            if parts.is_empty() {
                Vec::new()
            } else {
                vec![
                    m::consumer_group_heartbeat_request::TopicPartitions::default()
                        .with_topic_id(uuid::Uuid::from_u128(id))
                        .with_partitions(parts.to_vec()),
                ]
            }
        }));
    let r = conn.send(req, v).await?;
    Ok(ConsumerBeatAnswer {
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
    })
}

/// The id of `topic` (Metadata v10+): Ok(id) or Err(Kafka error code).
pub async fn topic_id(conn: &mut BrokerConn, topic: &str) -> WireResult<Result<TopicId, i16>> {
    let v = conn.negotiate::<m::MetadataRequest>(10, 12)?;
    let req = m::MetadataRequest::default()
        .with_topics(Some(vec![
            m::metadata_request::MetadataRequestTopic::default()
                .with_name(Some(TopicName(s(topic)))),
        ]))
        .with_allow_auto_topic_creation(false);
    let r = conn.send(req, v).await?;
    let found = r
        .topics
        .into_iter()
        .find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == topic));
    Ok(match found {
        Some(t) if t.error_code != 0 => Err(t.error_code),
        Some(t) if !t.topic_id.is_nil() => Ok(t.topic_id.as_u128()),
        _ => Err(super::codes::UNKNOWN_TOPIC_OR_PARTITION),
    })
}

/// One member of a consumer-protocol group, as ConsumerGroupDescribe tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribedMember {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub member_epoch: i32,
    pub client_id: String,
    pub client_host: String,
    /// Partitions owned now, per topic name.
    pub assignment: Vec<(String, Vec<i32>)>,
    /// Whether it speaks the classic protocol in this consumer group (an
    /// online-converted group); None: the broker does not say (v0).
    pub classic: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribedGroup {
    pub error: i16,
    pub state: String,
    pub group_epoch: i32,
    pub assignor: String,
    pub members: Vec<DescribedMember>,
}

pub async fn consumer_group_describe(
    conn: &mut BrokerConn,
    group: &str,
) -> WireResult<DescribedGroup> {
    let v = conn.negotiate::<m::ConsumerGroupDescribeRequest>(0, 1)?;
    let req = m::ConsumerGroupDescribeRequest::default().with_group_ids(vec![GroupId(s(group))]);
    let r = conn.send(req, v).await?;
    let Some(g) = r.groups.into_iter().next() else {
        return Ok(DescribedGroup {
            error: super::codes::GROUP_ID_NOT_FOUND,
            state: String::new(),
            group_epoch: -1,
            assignor: String::new(),
            members: Vec::new(),
        });
    };
    Ok(DescribedGroup {
        error: g.error_code,
        state: g.group_state.to_string(),
        group_epoch: g.group_epoch,
        assignor: g.assignor_name.to_string(),
        members: g
            .members
            .into_iter()
            .map(|x| DescribedMember {
                member_id: x.member_id.to_string(),
                instance_id: x.instance_id.map(|i| i.to_string()),
                member_epoch: x.member_epoch,
                client_id: x.client_id.to_string(),
                client_host: x.client_host.to_string(),
                assignment: x
                    .assignment
                    .topic_partitions
                    .into_iter()
                    .map(|t| (t.topic_name.0.to_string(), t.partitions))
                    .collect(),
                classic: match x.member_type {
                    0 => Some(true),
                    1 => Some(false),
                    _ => None,
                },
            })
            .collect(),
    })
}
