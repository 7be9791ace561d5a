//! The classic group requests as plain Rust: each function picks the version
//! with the broker, builds the request, and turns the answer into our own
//! types. Kafka error codes stay raw `i16` here; `group::errors` classifies them.

use std::collections::BTreeMap;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{self as m, GroupId, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::{BrokerConn, WireResult};

fn s(x: &str) -> StrBytes {
    StrBytes::from_string(x.to_string())
}

fn opt(x: Option<&str>) -> Option<StrBytes> {
    x.map(s)
}

/// `NOT_COORDINATOR (16)` style name of a Kafka error code, for messages.
pub fn code_name(code: i16) -> String {
    match ResponseError::try_from_code(code) {
        None => "NONE".to_string(),
        Some(ResponseError::Unknown(c)) => format!("unknown error {c}"),
        Some(e) => format!("{e:?} ({code})"),
    }
}

/// The protocol type of consumer groups.
pub const CONSUMER: &str = "consumer";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoordinatorAnswer {
    pub error: i16,
    pub node_id: i32,
    pub host: String,
    pub port: i32,
}

impl CoordinatorAnswer {
    pub fn addr(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// FindCoordinator of a group (`key_type` 0) or of a transactional id (1).
pub async fn find_coordinator_of(
    conn: &mut BrokerConn,
    group: &str,
    key_type: i8,
) -> WireResult<CoordinatorAnswer> {
    let v = conn.negotiate::<m::FindCoordinatorRequest>(if key_type == 0 { 0 } else { 1 }, 6)?;
    let mut req = m::FindCoordinatorRequest::default().with_key_type(key_type);
    if v >= 4 {
        req = req.with_coordinator_keys(vec![s(group)]);
    } else {
        req = req.with_key(s(group));
    }
    let r = conn.send(req, v).await?;
    if v >= 4 {
        let c = r.coordinators.into_iter().next();
        return Ok(match c {
            Some(c) => CoordinatorAnswer {
                error: c.error_code,
                node_id: c.node_id.0,
                host: c.host.to_string(),
                port: c.port,
            },
            // An empty list is a broken answer: ask again later.
            None => CoordinatorAnswer {
                error: 15,
                node_id: -1,
                host: String::new(),
                port: 0,
            },
        });
    }
    Ok(CoordinatorAnswer {
        error: r.error_code,
        node_id: r.node_id.0,
        host: r.host.to_string(),
        port: r.port,
    })
}

/// Partition counts of `topics`: Ok(count) or Err(kafka error code).
pub async fn partition_counts(
    conn: &mut BrokerConn,
    topics: &[String],
) -> WireResult<BTreeMap<String, Result<i32, i16>>> {
    let v = conn.negotiate::<m::MetadataRequest>(1, 12)?;
    let mut req = m::MetadataRequest::default().with_topics(Some(
        topics
            .iter()
            .map(|t| {
                m::metadata_request::MetadataRequestTopic::default()
                    .with_name(Some(TopicName(s(t))))
            })
            .collect(),
    ));
    if v >= 4 {
        req = req.with_allow_auto_topic_creation(false);
    }
    let r = conn.send(req, v).await?;
    let mut out = BTreeMap::new();
    for t in r.topics {
        let Some(name) = t.name else { continue };
        let val = if t.error_code != 0 {
            Err(t.error_code)
        } else {
            Ok(t.partitions.len() as i32)
        };
        out.insert(name.0.to_string(), val);
    }
    Ok(out)
}

#[derive(Debug, Clone)]
pub struct JoinArgs<'a> {
    pub group: &'a str,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub member_id: &'a str,
    pub instance_id: Option<&'a str>,
    /// (assignor name, subscription bytes), in preference order.
    pub protocols: Vec<(String, Bytes)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinMember {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub metadata: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinAnswer {
    pub error: i16,
    pub generation_id: i32,
    pub protocol_name: Option<String>,
    pub leader: String,
    pub member_id: String,
    /// Filled for the leader only.
    pub members: Vec<JoinMember>,
}

/// JoinGroup; needs v5+ when an instance id is given (static membership).
pub async fn join_group(conn: &mut BrokerConn, a: &JoinArgs<'_>) -> WireResult<JoinAnswer> {
    let min = if a.instance_id.is_some() { 5 } else { 0 };
    let v = conn.negotiate::<m::JoinGroupRequest>(min, 9)?;
    let req = m::JoinGroupRequest::default()
        .with_group_id(GroupId(s(a.group)))
        .with_session_timeout_ms(a.session_timeout_ms)
        .with_rebalance_timeout_ms(a.rebalance_timeout_ms)
        .with_member_id(s(a.member_id))
        .with_group_instance_id(opt(a.instance_id))
        .with_protocol_type(s(CONSUMER))
        .with_protocols(
            a.protocols
                .iter()
                .map(|(name, meta)| {
                    m::join_group_request::JoinGroupRequestProtocol::default()
                        .with_name(s(name))
                        .with_metadata(meta.clone())
                })
                .collect(),
        );
    let r = conn.send(req, v).await?;
    Ok(JoinAnswer {
        error: r.error_code,
        generation_id: r.generation_id,
        protocol_name: r.protocol_name.map(|p| p.to_string()),
        leader: r.leader.to_string(),
        member_id: r.member_id.to_string(),
        members: r
            .members
            .into_iter()
            .map(|mm| JoinMember {
                member_id: mm.member_id.to_string(),
                instance_id: mm.group_instance_id.map(|x| x.to_string()),
                metadata: mm.metadata,
            })
            .collect(),
    })
}

#[derive(Debug, Clone)]
pub struct SyncArgs<'a> {
    pub group: &'a str,
    pub generation_id: i32,
    pub member_id: &'a str,
    pub instance_id: Option<&'a str>,
    pub protocol_name: Option<&'a str>,
    /// (member id, assignment bytes); empty unless we lead.
    pub assignments: Vec<(String, Bytes)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncAnswer {
    pub error: i16,
    pub assignment: Bytes,
}

pub async fn sync_group(conn: &mut BrokerConn, a: &SyncArgs<'_>) -> WireResult<SyncAnswer> {
    let min = if a.instance_id.is_some() { 3 } else { 0 };
    let v = conn.negotiate::<m::SyncGroupRequest>(min, 5)?;
    let mut req = m::SyncGroupRequest::default()
        .with_group_id(GroupId(s(a.group)))
        .with_generation_id(a.generation_id)
        .with_member_id(s(a.member_id))
        .with_assignments(
            a.assignments
                .iter()
                .map(|(mid, bytes)| {
                    m::sync_group_request::SyncGroupRequestAssignment::default()
                        .with_member_id(s(mid))
                        .with_assignment(bytes.clone())
                })
                .collect(),
        );
    if v >= 3 {
        req = req.with_group_instance_id(opt(a.instance_id));
    }
    if v >= 5 {
        req = req
            .with_protocol_type(Some(s(CONSUMER)))
            .with_protocol_name(opt(a.protocol_name));
    }
    let r = conn.send(req, v).await?;
    Ok(SyncAnswer {
        error: r.error_code,
        assignment: r.assignment,
    })
}

/// Heartbeat; the Kafka error code (0 = fine).
pub async fn heartbeat(
    conn: &mut BrokerConn,
    group: &str,
    generation_id: i32,
    member_id: &str,
    instance_id: Option<&str>,
) -> WireResult<i16> {
    let min = if instance_id.is_some() { 3 } else { 0 };
    let v = conn.negotiate::<m::HeartbeatRequest>(min, 4)?;
    let mut req = m::HeartbeatRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_generation_id(generation_id)
        .with_member_id(s(member_id));
    if v >= 3 {
        req = req.with_group_instance_id(opt(instance_id));
    }
    Ok(conn.send(req, v).await?.error_code)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaveAnswer {
    pub error: i16,
    /// Per member (v3+): (member id, instance id, error code).
    pub members: Vec<(String, Option<String>, i16)>,
}

/// LeaveGroup for one or more members: (member id, instance id). v0-2 can
/// only name one member by id per request, so several members on an old
/// broker take several requests (the first error wins).
pub async fn leave_group(
    conn: &mut BrokerConn,
    group: &str,
    members: &[(String, Option<String>)],
) -> WireResult<LeaveAnswer> {
    let needs_identity = members.iter().any(|(_, i)| i.is_some());
    let v = conn.negotiate::<m::LeaveGroupRequest>(if needs_identity { 3 } else { 0 }, 5)?;
    if v >= 3 {
        let req = m::LeaveGroupRequest::default()
            .with_group_id(GroupId(s(group)))
            .with_members(
                members
                    .iter()
                    .map(|(mid, iid)| {
                        let mut mi = m::leave_group_request::MemberIdentity::default()
                            .with_member_id(s(mid))
                            .with_group_instance_id(opt(iid.as_deref()));
                        if v >= 5 {
                            mi = mi.with_reason(Some(s("kswarm: member leaving")));
                        }
                        mi
                    })
                    .collect(),
            );
        let r = conn.send(req, v).await?;
        return Ok(LeaveAnswer {
            error: r.error_code,
            members: r
                .members
                .into_iter()
                .map(|x| {
                    (
                        x.member_id.to_string(),
                        x.group_instance_id.map(|i| i.to_string()),
                        x.error_code,
                    )
                })
                .collect(),
        });
    }
    let mut out = LeaveAnswer {
        error: 0,
        members: Vec::new(),
    };
    for (mid, _) in members {
        let req = m::LeaveGroupRequest::default()
            .with_group_id(GroupId(s(group)))
            .with_member_id(s(mid));
        let code = conn.send(req, v).await?.error_code;
        out.members.push((mid.clone(), None, code));
        if out.error == 0 {
            out.error = code;
        }
    }
    Ok(out)
}

#[derive(Debug, Clone)]
pub struct CommitArgs<'a> {
    pub group: &'a str,
    pub generation_id: i32,
    pub member_id: &'a str,
    pub instance_id: Option<&'a str>,
    pub topic: &'a str,
    /// (partition, next offset to read).
    pub offsets: &'a [(i32, i64)],
}

/// OffsetCommit; per partition error codes.
pub async fn offset_commit(
    conn: &mut BrokerConn,
    a: &CommitArgs<'_>,
) -> WireResult<Vec<(i32, i16)>> {
    let min = if a.instance_id.is_some() { 7 } else { 2 };
    let v = conn.negotiate::<m::OffsetCommitRequest>(min, 9)?;
    let mut req = m::OffsetCommitRequest::default()
        .with_group_id(GroupId(s(a.group)))
        .with_generation_id_or_member_epoch(a.generation_id)
        .with_member_id(s(a.member_id))
        .with_topics(vec![
            m::offset_commit_request::OffsetCommitRequestTopic::default()
                .with_name(TopicName(s(a.topic)))
                .with_partitions(
                    a.offsets
                        .iter()
                        .map(|&(p, off)| {
                            m::offset_commit_request::OffsetCommitRequestPartition::default()
                                .with_partition_index(p)
                                .with_committed_offset(off)
                                .with_committed_metadata(Some(StrBytes::new()))
                        })
                        .collect(),
                ),
        ]);
    if v <= 4 {
        req = req.with_retention_time_ms(-1);
    }
    if v >= 7 {
        req = req.with_group_instance_id(opt(a.instance_id));
    }
    let r = conn.send(req, v).await?;
    Ok(r.topics
        .into_iter()
        .flat_map(|t| {
            t.partitions
                .into_iter()
                .map(|p| (p.partition_index, p.error_code))
        })
        .collect())
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedOffsets {
    /// Group-level error (v2+).
    pub error: i16,
    /// (partition, committed offset or -1, error code).
    pub partitions: Vec<(i32, i64, i16)>,
}

/// OffsetFetch of `partitions` of `topic`.
pub async fn offset_fetch(
    conn: &mut BrokerConn,
    group: &str,
    topic: &str,
    partitions: &[i32],
) -> WireResult<FetchedOffsets> {
    let v = conn.negotiate::<m::OffsetFetchRequest>(1, 7)?;
    let req = m::OffsetFetchRequest::default()
        .with_group_id(GroupId(s(group)))
        // KIP-447: a partition whose offsets sit in an open transaction
        // answers UNSTABLE_OFFSET_COMMIT instead of the offset before it, so
        // a new owner never starts behind a zombie's commit that is to come.
        .with_require_stable(v >= 7)
        .with_topics(Some(vec![
            m::offset_fetch_request::OffsetFetchRequestTopic::default()
                .with_name(TopicName(s(topic)))
                .with_partition_indexes(partitions.to_vec()),
        ]));
    let r = conn.send(req, v).await?;
    Ok(FetchedOffsets {
        error: r.error_code,
        partitions: r
            .topics
            .into_iter()
            .filter(|t| t.name.0.as_str() == topic)
            .flat_map(|t| {
                t.partitions
                    .into_iter()
                    .map(|p| (p.partition_index, p.committed_offset, p.error_code))
            })
            .collect(),
    })
}

/// One member of a classic group, as DescribeGroups tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassicMember {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    /// Its ConsumerProtocol assignment bytes (empty while the group forms).
    pub assignment: bytes::Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassicGroup {
    pub error: i16,
    pub state: String,
    pub protocol_type: String,
    /// The assignor the group chose.
    pub protocol: String,
    pub members: Vec<ClassicMember>,
}

/// DescribeGroups of one group.
pub async fn describe_group(conn: &mut BrokerConn, group: &str) -> WireResult<ClassicGroup> {
    let v = conn.negotiate::<m::DescribeGroupsRequest>(0, 5)?;
    let req = m::DescribeGroupsRequest::default().with_groups(vec![GroupId(s(group))]);
    let r = conn.send(req, v).await?;
    let Some(g) = r.groups.into_iter().next() else {
        return Ok(ClassicGroup {
            error: super::codes::GROUP_ID_NOT_FOUND,
            state: String::new(),
            protocol_type: String::new(),
            protocol: String::new(),
            members: Vec::new(),
        });
    };
    Ok(ClassicGroup {
        error: g.error_code,
        state: g.group_state.to_string(),
        protocol_type: g.protocol_type.to_string(),
        protocol: g.protocol_data.to_string(),
        members: g
            .members
            .into_iter()
            .map(|x| ClassicMember {
                member_id: x.member_id.to_string(),
                instance_id: x.group_instance_id.map(|i| i.to_string()),
                client_id: x.client_id.to_string(),
                client_host: x.client_host.to_string(),
                assignment: x.member_assignment,
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_addresses() {
        assert_eq!(code_name(0), "NONE");
        assert_eq!(code_name(27), "RebalanceInProgress (27)");
        assert_eq!(code_name(9999), "unknown error 9999");
        let c = CoordinatorAnswer {
            error: 0,
            node_id: 1,
            host: "h".into(),
            port: 9,
        };
        assert_eq!(c.addr(), "h:9");
        let c = CoordinatorAnswer {
            error: 0,
            node_id: 1,
            host: "::1".into(),
            port: 9,
        };
        assert_eq!(c.addr(), "[::1]:9");
    }
}
