//! The ConsumerProtocol bytes carried inside JoinGroup (member metadata =
//! subscription) and SyncGroup (member assignment), shared by every Kafka
//! client: an i16 version, then the body of that version. Newer versions only
//! append fields, so a body newer than we know is read with our newest
//! version and the rest ignored (as the Java client does).

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::consumer_protocol_assignment as cpa;
use kafka_protocol::messages::consumer_protocol_subscription as cps;
use kafka_protocol::messages::{
    ConsumerProtocolAssignment, ConsumerProtocolSubscription, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, Message, StrBytes};

/// The version of the subscription we send (v3: owned partitions, generation, rack).
pub const SUBSCRIPTION_VERSION: i16 = 3;
/// The version of the assignment we send. All versions carry the same
/// fields; v0 is readable by every client.
pub const ASSIGNMENT_VERSION: i16 = 0;

/// What a member subscribes to (JoinGroup protocol metadata).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Subscription {
    pub topics: Vec<String>,
    pub user_data: Option<Bytes>,
    /// topic -> partitions the member owned (v1+; empty for eager assignors).
    pub owned_partitions: Vec<(String, Vec<i32>)>,
    /// v2+; -1 when unknown.
    pub generation_id: i32,
    /// v3+.
    pub rack_id: Option<String>,
}

/// What the leader hands a member (SyncGroup assignment).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MemberAssignment {
    /// topic -> partitions.
    pub partitions: Vec<(String, Vec<i32>)>,
    pub user_data: Option<Bytes>,
}

impl MemberAssignment {
    /// The partitions of `topic`, sorted and without duplicates.
    pub fn partitions_of(&self, topic: &str) -> Vec<i32> {
        let mut v: Vec<i32> = self
            .partitions
            .iter()
            .filter(|(t, _)| t == topic)
            .flat_map(|(_, p)| p.iter().copied())
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }
}

fn s(x: &str) -> StrBytes {
    StrBytes::from_string(x.to_string())
}

fn framed<M: Encodable>(msg: &M, version: i16) -> anyhow::Result<Bytes> {
    let mut buf = BytesMut::new();
    buf.put_i16(version);
    msg.encode(&mut buf, version)?;
    Ok(buf.freeze())
}

/// Split off the version prefix; the version to decode the body with.
fn version_of<M: Message>(buf: &mut Bytes, what: &str) -> anyhow::Result<i16> {
    if buf.len() < 2 {
        anyhow::bail!("{what}: {} bytes, too short for a version", buf.len());
    }
    let v = buf.get_i16();
    if v < 0 {
        anyhow::bail!("{what}: negative version {v}");
    }
    Ok(v.min(M::VERSIONS.max))
}

pub fn encode_subscription(sub: &Subscription) -> anyhow::Result<Bytes> {
    encode_subscription_v(sub, SUBSCRIPTION_VERSION)
}

pub fn encode_subscription_v(sub: &Subscription, version: i16) -> anyhow::Result<Bytes> {
    let mut msg = ConsumerProtocolSubscription::default()
        .with_topics(sub.topics.iter().map(|t| s(t)).collect())
        .with_user_data(sub.user_data.clone());
    if version >= 1 {
        msg = msg.with_owned_partitions(
            sub.owned_partitions
                .iter()
                .map(|(t, p)| {
                    cps::TopicPartition::default()
                        .with_topic(TopicName(s(t)))
                        .with_partitions(p.clone())
                })
                .collect(),
        );
    }
    if version >= 2 {
        msg = msg.with_generation_id(sub.generation_id);
    }
    if version >= 3 {
        msg = msg.with_rack_id(sub.rack_id.as_deref().map(s));
    }
    framed(&msg, version)
}

pub fn decode_subscription(bytes: &[u8]) -> anyhow::Result<Subscription> {
    let mut buf = Bytes::copy_from_slice(bytes);
    let v = version_of::<ConsumerProtocolSubscription>(&mut buf, "subscription")?;
    let m = ConsumerProtocolSubscription::decode(&mut buf, v)?;
    Ok(Subscription {
        topics: m.topics.iter().map(|t| t.to_string()).collect(),
        user_data: m.user_data,
        owned_partitions: m
            .owned_partitions
            .into_iter()
            .map(|tp| (tp.topic.0.to_string(), tp.partitions))
            .collect(),
        generation_id: if v >= 2 { m.generation_id } else { -1 },
        rack_id: m.rack_id.map(|r| r.to_string()),
    })
}

pub fn encode_assignment(a: &MemberAssignment) -> anyhow::Result<Bytes> {
    encode_assignment_v(a, ASSIGNMENT_VERSION)
}

pub fn encode_assignment_v(a: &MemberAssignment, version: i16) -> anyhow::Result<Bytes> {
    let msg = ConsumerProtocolAssignment::default()
        .with_assigned_partitions(
            a.partitions
                .iter()
                .map(|(t, p)| {
                    cpa::TopicPartition::default()
                        .with_topic(TopicName(s(t)))
                        .with_partitions(p.clone())
                })
                .collect(),
        )
        .with_user_data(a.user_data.clone());
    framed(&msg, version)
}

/// An empty byte string is a valid "nothing assigned" (brokers send it to
/// members the leader left out).
pub fn decode_assignment(bytes: &[u8]) -> anyhow::Result<MemberAssignment> {
    if bytes.is_empty() {
        return Ok(MemberAssignment::default());
    }
    let mut buf = Bytes::copy_from_slice(bytes);
    let v = version_of::<ConsumerProtocolAssignment>(&mut buf, "assignment")?;
    let m = ConsumerProtocolAssignment::decode(&mut buf, v)?;
    Ok(MemberAssignment {
        partitions: m
            .assigned_partitions
            .into_iter()
            .map(|tp| (tp.topic.0.to_string(), tp.partitions))
            .collect(),
        user_data: m.user_data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put_str(b: &mut Vec<u8>, s: &str) {
        b.extend_from_slice(&(s.len() as i16).to_be_bytes());
        b.extend_from_slice(s.as_bytes());
    }

    #[test]
    fn subscription_round_trips_every_version() {
        for v in 0..=3 {
            let sub = Subscription {
                topics: vec!["logs".into(), "audit".into()],
                user_data: Some(Bytes::from_static(b"ud")),
                owned_partitions: if v >= 1 {
                    vec![("logs".into(), vec![0, 2])]
                } else {
                    vec![]
                },
                generation_id: if v >= 2 { 7 } else { -1 },
                rack_id: if v >= 3 { Some("r1".into()) } else { None },
            };
            let bytes = encode_subscription_v(&sub, v).unwrap();
            assert_eq!(i16::from_be_bytes([bytes[0], bytes[1]]), v);
            assert_eq!(decode_subscription(&bytes).unwrap(), sub, "version {v}");
        }
    }

    #[test]
    fn assignment_round_trips() {
        let a = MemberAssignment {
            partitions: vec![("logs".into(), vec![3, 1]), ("x".into(), vec![])],
            user_data: None,
        };
        for v in 0..=3 {
            let bytes = encode_assignment_v(&a, v).unwrap();
            assert_eq!(decode_assignment(&bytes).unwrap(), a);
        }
        assert_eq!(a.partitions_of("logs"), vec![1, 3]);
        assert_eq!(decode_assignment(&[]).unwrap(), MemberAssignment::default());
    }

    /// Bytes laid out by hand as librdkafka writes its consumer metadata
    /// (rd_kafka_consumer_protocol_member_metadata_new): version 3, topics,
    /// null user data, owned partitions, generation id, null rack.
    #[test]
    fn decodes_librdkafka_subscription() {
        let mut b = Vec::new();
        b.extend_from_slice(&3i16.to_be_bytes());
        b.extend_from_slice(&1i32.to_be_bytes());
        put_str(&mut b, "logs");
        b.extend_from_slice(&(-1i32).to_be_bytes()); // user data: null bytes
        b.extend_from_slice(&1i32.to_be_bytes()); // owned partitions: 1 topic
        put_str(&mut b, "logs");
        b.extend_from_slice(&2i32.to_be_bytes());
        b.extend_from_slice(&0i32.to_be_bytes());
        b.extend_from_slice(&4i32.to_be_bytes());
        b.extend_from_slice(&5i32.to_be_bytes()); // generation id
        b.extend_from_slice(&(-1i16).to_be_bytes()); // rack: null string
        let sub = decode_subscription(&b).unwrap();
        assert_eq!(sub.topics, vec!["logs"]);
        assert_eq!(sub.user_data, None);
        assert_eq!(sub.owned_partitions, vec![("logs".to_string(), vec![0, 4])]);
        assert_eq!(sub.generation_id, 5);
        assert_eq!(sub.rack_id, None);
    }

    /// A future version with extra trailing fields still decodes; an old v0
    /// one (kafka-python) too.
    #[test]
    fn decodes_newer_and_v0() {
        let mut b = Vec::new();
        b.extend_from_slice(&9i16.to_be_bytes());
        b.extend_from_slice(&1i32.to_be_bytes());
        put_str(&mut b, "t");
        b.extend_from_slice(&(-1i32).to_be_bytes());
        b.extend_from_slice(&0i32.to_be_bytes());
        b.extend_from_slice(&(-1i32).to_be_bytes());
        b.extend_from_slice(&(-1i16).to_be_bytes());
        b.extend_from_slice(b"future fields");
        assert_eq!(decode_subscription(&b).unwrap().topics, vec!["t"]);

        let mut b = Vec::new();
        b.extend_from_slice(&0i16.to_be_bytes());
        b.extend_from_slice(&1i32.to_be_bytes());
        put_str(&mut b, "t");
        b.extend_from_slice(&0i32.to_be_bytes()); // empty user data
        let sub = decode_subscription(&b).unwrap();
        assert_eq!(sub.topics, vec!["t"]);
        assert_eq!(sub.generation_id, -1);

        // An assignment of any version: version, partitions, user data.
        let mut a = Vec::new();
        a.extend_from_slice(&1i16.to_be_bytes());
        a.extend_from_slice(&1i32.to_be_bytes());
        put_str(&mut a, "t");
        a.extend_from_slice(&1i32.to_be_bytes());
        a.extend_from_slice(&2i32.to_be_bytes());
        a.extend_from_slice(&(-1i32).to_be_bytes());
        assert_eq!(decode_assignment(&a).unwrap().partitions_of("t"), vec![2]);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(decode_subscription(&[0]).is_err());
        assert!(decode_subscription(&[0, 0, 0, 0, 0, 9]).is_err());
        assert!(decode_assignment(&[0xff, 0xff]).is_err());
    }
}
