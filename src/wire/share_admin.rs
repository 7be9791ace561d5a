//! Describing share groups (KIP-932) for `kswarm status` and the metrics:
//! ShareGroupDescribe (members and their assignments) and
//! DescribeShareGroupOffsets (each share-partition's start offset), as plain
//! Rust. Both go to the group's coordinator. The answers are read by pure
//! functions, tested below.

use kafka_protocol::messages::{self as m, GroupId, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::{BrokerConn, WireResult};

fn s(x: &str) -> StrBytes {
    StrBytes::from_string(x.to_string())
}

/// One member of a share group, as ShareGroupDescribe tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareMember {
    pub member_id: String,
    pub member_epoch: i32,
    pub client_id: String,
    pub client_host: String,
    /// Partitions assigned now, per topic name.
    pub assignment: Vec<(String, Vec<i32>)>,
}

/// A share group as ShareGroupDescribe tells it. `error` is not 0 for a
/// group that does not exist or is of another type (GROUP_ID_NOT_FOUND,
/// with the broker's message saying which).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareGroup {
    pub error: i16,
    pub error_message: Option<String>,
    pub state: String,
    pub group_epoch: i32,
    pub assignment_epoch: i32,
    pub members: Vec<ShareMember>,
}

/// Whether the broker answers ShareGroupDescribe v1 (has share groups).
pub fn offers_share_group_describe(conn: &BrokerConn) -> bool {
    conn.version_for(m::ApiKey::ShareGroupDescribe, 1, 1)
        .is_some()
}

/// Whether the broker describes share groups (ShareGroupDescribe v1 and
/// DescribeShareGroupOffsets v0: Apache Kafka 4.1+).
pub fn supports_share_describe(conn: &BrokerConn) -> bool {
    conn.version_for(m::ApiKey::ShareGroupDescribe, 1, 1)
        .is_some()
        && conn
            .version_for(m::ApiKey::DescribeShareGroupOffsets, 0, 0)
            .is_some()
}

/// What the broker offers of the two, for a message.
pub fn describe_support(conn: &BrokerConn) -> String {
    let v = |k| match conn.broker_versions(k) {
        Some((a, b)) => format!("v{a}..v{b}"),
        None => "none".into(),
    };
    format!(
        "ShareGroupDescribe {}, DescribeShareGroupOffsets {}",
        v(m::ApiKey::ShareGroupDescribe),
        v(m::ApiKey::DescribeShareGroupOffsets)
    )
}

pub async fn share_group_describe(conn: &mut BrokerConn, group: &str) -> WireResult<ShareGroup> {
    let v = conn.negotiate::<m::ShareGroupDescribeRequest>(1, 1)?;
    let req = m::ShareGroupDescribeRequest::default().with_group_ids(vec![GroupId(s(group))]);
    Ok(read_describe(conn.send(req, v).await?))
}

fn read_describe(r: m::ShareGroupDescribeResponse) -> ShareGroup {
    let Some(g) = r.groups.into_iter().next() else {
        return ShareGroup {
            error: super::codes::GROUP_ID_NOT_FOUND,
            error_message: None,
            state: String::new(),
            group_epoch: -1,
            assignment_epoch: -1,
            members: Vec::new(),
        };
    };
    ShareGroup {
        error: g.error_code,
        error_message: g.error_message.map(|x| x.to_string()),
        state: g.group_state.to_string(),
        group_epoch: g.group_epoch,
        assignment_epoch: g.assignment_epoch,
        members: g
            .members
            .into_iter()
            .map(|x| ShareMember {
                member_id: x.member_id.to_string(),
                member_epoch: x.member_epoch,
                client_id: x.client_id.to_string(),
                client_host: x.client_host.to_string(),
                assignment: x
                    .assignment
                    .topic_partitions
                    .into_iter()
                    .map(|t| (t.topic_name.0.to_string(), t.partitions))
                    .collect(),
            })
            .collect(),
    }
}

/// One share-partition's start offset: the first record not yet finished
/// (acknowledged or archived) by the group; -1 when the group has not
/// begun on the partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StartOffset {
    pub partition: i32,
    pub start_offset: i64,
    pub error: i16,
}

/// The group's start offsets of one topic, or the group's error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareOffsets {
    pub error: i16,
    pub error_message: Option<String>,
    pub partitions: Vec<StartOffset>,
}

pub async fn describe_share_group_offsets(
    conn: &mut BrokerConn,
    group: &str,
    topic: &str,
    partitions: &[i32],
) -> WireResult<ShareOffsets> {
    let v = conn.negotiate::<m::DescribeShareGroupOffsetsRequest>(0, 0)?;
    let req = m::DescribeShareGroupOffsetsRequest::default().with_groups(vec![
        m::describe_share_group_offsets_request::DescribeShareGroupOffsetsRequestGroup::default()
            .with_group_id(GroupId(s(group)))
            .with_topics(Some(vec![
                m::describe_share_group_offsets_request::DescribeShareGroupOffsetsRequestTopic::default()
                    .with_topic_name(TopicName(s(topic)))
                    .with_partitions(partitions.to_vec()),
            ])),
    ]);
    Ok(read_offsets(conn.send(req, v).await?, topic))
}

fn read_offsets(r: m::DescribeShareGroupOffsetsResponse, topic: &str) -> ShareOffsets {
    let Some(g) = r.groups.into_iter().next() else {
        return ShareOffsets {
            error: super::codes::GROUP_ID_NOT_FOUND,
            error_message: None,
            partitions: Vec::new(),
        };
    };
    let mut partitions: Vec<StartOffset> = g
        .topics
        .into_iter()
        .filter(|t| t.topic_name.0.as_str() == topic)
        .flat_map(|t| t.partitions)
        .map(|p| StartOffset {
            partition: p.partition_index,
            start_offset: p.start_offset,
            error: p.error_code,
        })
        .collect();
    partitions.sort_by_key(|p| p.partition);
    ShareOffsets {
        error: g.error_code,
        error_message: g.error_message.map(|x| x.to_string()),
        partitions,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use m::describe_share_group_offsets_response as o;
    use m::share_group_describe_response as d;

    #[test]
    fn a_description_is_read_into_members_and_their_partitions() {
        let member = d::Member::default()
            .with_member_id(s("m1"))
            .with_member_epoch(7)
            .with_client_id(s("kswarm-0.w1.host"))
            .with_client_host(s("/127.0.0.1"))
            .with_assignment(d::Assignment::default().with_topic_partitions(vec![
                d::TopicPartitions::default()
                    .with_topic_name(TopicName(s("t")))
                    .with_partitions(vec![0, 2]),
            ]));
        let r =
            m::ShareGroupDescribeResponse::default().with_groups(vec![d::DescribedGroup::default(
            )
            .with_group_state(s("Stable"))
            .with_group_epoch(3)
            .with_assignment_epoch(3)
            .with_members(vec![member])]);
        let g = read_describe(r);
        assert_eq!(g.error, 0);
        assert_eq!(g.state, "Stable");
        assert_eq!(g.members.len(), 1);
        assert_eq!(g.members[0].client_host, "/127.0.0.1");
        assert_eq!(g.members[0].assignment, vec![("t".to_string(), vec![0, 2])]);
        // No group in the answer at all: "not found", not a panic.
        let none = read_describe(m::ShareGroupDescribeResponse::default());
        assert_eq!(none.error, crate::wire::codes::GROUP_ID_NOT_FOUND);
    }

    #[test]
    fn start_offsets_are_read_for_the_topic_asked_sorted_by_partition() {
        let part = |i, off| {
            o::DescribeShareGroupOffsetsResponsePartition::default()
                .with_partition_index(i)
                .with_start_offset(off)
        };
        let topic = |name: &str, parts| {
            o::DescribeShareGroupOffsetsResponseTopic::default()
                .with_topic_name(TopicName(s(name)))
                .with_partitions(parts)
        };
        let r = m::DescribeShareGroupOffsetsResponse::default().with_groups(vec![
            o::DescribeShareGroupOffsetsResponseGroup::default().with_topics(vec![
                topic("t", vec![part(1, -1), part(0, 40)]),
                topic("other", vec![part(0, 9)]),
            ]),
        ]);
        let got = read_offsets(r, "t");
        assert_eq!(got.error, 0);
        let offs: Vec<(i32, i64)> = got
            .partitions
            .iter()
            .map(|p| (p.partition, p.start_offset))
            .collect();
        assert_eq!(offs, vec![(0, 40), (1, -1)]);
    }
}
