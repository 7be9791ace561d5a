//! Topic administration that rskafka does not offer: CreatePartitions (Kafka
//! API 37), after checking the broker's ApiVersions for it.

use std::time::Duration;

use kafka_protocol::messages::{self as m, ApiKey, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::group_msgs::code_name;
use super::{BrokerConn, WireError};

/// What a CreatePartitions attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GrowOutcome {
    /// The broker accepted the new partition count.
    Done,
    /// The broker does not offer CreatePartitions at all (e.g. tansu).
    Unsupported { broker: String },
    /// INVALID_PARTITIONS: the count is not more than the topic has now
    /// (often a concurrent grow got there first); the broker's message.
    Invalid(String),
}

/// INVALID_PARTITIONS.
const INVALID_PARTITIONS: i16 = 37;

/// Connect to the first bootstrap broker that answers.
async fn bootstrap(brokers: &[String], timeout: Duration) -> anyhow::Result<BrokerConn> {
    let mut errors = Vec::new();
    for addr in brokers {
        match BrokerConn::connect(addr, "kswarm", timeout).await {
            Ok(c) => return Ok(c),
            Err(e) => errors.push(e.to_string()),
        }
    }
    anyhow::bail!(
        "cannot reach the brokers at {} within {timeout:?} (--connect-timeout): {}; check -b/--brokers and that the cluster is up",
        brokers.join(","),
        errors.join("; ")
    )
}

/// Whether the broker answering first among `brokers` offers CreatePartitions.
pub async fn supports_create_partitions(
    brokers: &[String],
    timeout: Duration,
) -> anyhow::Result<bool> {
    let conn = bootstrap(brokers, timeout).await?;
    Ok(conn.broker_versions(ApiKey::CreatePartitions).is_some())
}

/// The controller's address per Metadata, if it is another broker than `conn`'s.
async fn controller_addr(conn: &mut BrokerConn, timeout: Duration) -> Option<String> {
    let v = conn.negotiate::<m::MetadataRequest>(1, 12).ok()?;
    let req = m::MetadataRequest::default().with_topics(Some(vec![]));
    let r = conn.send_timeout(req, v, timeout).await.ok()?;
    let b = r.brokers.iter().find(|b| b.node_id == r.controller_id)?;
    let addr = if b.host.contains(':') {
        format!("[{}]:{}", b.host, b.port)
    } else {
        format!("{}:{}", b.host, b.port)
    };
    (addr != conn.addr()).then_some(addr)
}

/// Grow `topic` to `count` partitions. Checks ApiVersions first; sends the
/// request to the controller when Metadata names another broker.
pub async fn create_partitions(
    brokers: &[String],
    topic: &str,
    count: u32,
    timeout: Duration,
) -> anyhow::Result<GrowOutcome> {
    let mut conn = bootstrap(brokers, timeout).await?;
    if conn.broker_versions(ApiKey::CreatePartitions).is_none() {
        return Ok(GrowOutcome::Unsupported {
            broker: conn.addr().to_string(),
        });
    }
    if let Some(addr) = controller_addr(&mut conn, timeout).await {
        if let Ok(c) = BrokerConn::connect(&addr, "kswarm", timeout).await {
            if c.broker_versions(ApiKey::CreatePartitions).is_some() {
                conn = c;
            }
        }
    }
    let v = match conn.negotiate::<m::CreatePartitionsRequest>(0, 3) {
        Ok(v) => v,
        Err(WireError::Unsupported { addr, .. }) => {
            return Ok(GrowOutcome::Unsupported { broker: addr })
        }
        Err(e) => return Err(e.into()),
    };
    let timeout_ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    let req = m::CreatePartitionsRequest::default()
        .with_topics(vec![
            m::create_partitions_request::CreatePartitionsTopic::default()
                .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                .with_count(count as i32)
                .with_assignments(None),
        ])
        .with_timeout_ms(timeout_ms)
        .with_validate_only(false);
    // The broker may wait up to timeout_ms itself before answering.
    let r = conn.send_timeout(req, v, timeout * 2).await?;
    let Some(res) = r.results.into_iter().next() else {
        anyhow::bail!(
            "CreatePartitions for '{topic}': broker {} answered with no result",
            conn.addr()
        );
    };
    let msg = res.error_message.map(|m| m.to_string()).unwrap_or_default();
    match res.error_code {
        0 => Ok(GrowOutcome::Done),
        INVALID_PARTITIONS => Ok(GrowOutcome::Invalid(format!(
            "{}{}",
            code_name(res.error_code),
            if msg.is_empty() {
                String::new()
            } else {
                format!(": {msg}")
            }
        ))),
        code => anyhow::bail!(
            "growing topic '{topic}' to {count} partitions failed on {}: {}{}",
            conn.addr(),
            code_name(code),
            if msg.is_empty() {
                String::new()
            } else {
                format!(": {msg}")
            }
        ),
    }
}
