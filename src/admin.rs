//! Topic administration: describe a topic's partition count, create a missing
//! topic, grow a small one (CreatePartitions, through `wire::admin`), and carry
//! out a sizing [`Plan`]. Every broker call is bounded by --connect-timeout.
//! (Building the client is `connect`'s job.)

use std::future::Future;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use rskafka::client::error::{Error as ClientError, ProtocolError};
use rskafka::client::Client;

use crate::config::ConnectConfig;
use crate::sizing::{Action, Plan};

/// Reaching the brokers lives in `connect`; callers know it as `admin::connect`.
pub use crate::connect::connect;

/// Time a created topic is given to show up in metadata.
const SETTLE: Duration = Duration::from_secs(5);

/// The cluster is not ready to place a topic yet: its metadata names no live
/// controller (a broker that has just started, or one that has not
/// registered), or every broker is fenced for a moment (a broker that has
/// just resumed after a pause past its session): worth asking again.
fn cluster_not_ready(e: &ClientError) -> bool {
    match e {
        ClientError::InvalidResponse(m) => m.contains("not found in metadata"),
        ClientError::ServerError {
            protocol_error: ProtocolError::InvalidReplicationFactor,
            error_message: Some(m),
            ..
        } => m.contains("fenced"),
        ClientError::ServerError { protocol_error, .. } => matches!(
            protocol_error,
            ProtocolError::NotController | ProtocolError::BrokerNotAvailable
        ),
        _ => false,
    }
}

/// What applying a plan did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    Created(u32),
    /// Someone else created it first (a concurrent kswarm); it has this many partitions.
    CreatedByOther(u32),
    Grown {
        from: u32,
        to: u32,
    },
    /// A concurrent grow got there first; the topic has this many partitions.
    GrownByOther(u32),
    Unchanged(u32),
}

impl Applied {
    pub fn partitions(&self) -> u32 {
        match *self {
            Applied::Created(n)
            | Applied::CreatedByOther(n)
            | Applied::GrownByOther(n)
            | Applied::Unchanged(n) => n,
            Applied::Grown { to, .. } => to,
        }
    }

    pub fn describe(&self, topic: &str) -> String {
        match *self {
            Applied::Created(n) => format!(
                "created topic '{topic}' with {}",
                crate::sizing::n_partitions(n)
            ),
            Applied::CreatedByOther(n) => format!(
                "topic '{topic}' was created meanwhile by someone else; it has {}",
                crate::sizing::n_partitions(n),
            ),
            Applied::Grown { from, to } => {
                format!(
                    "grew topic '{topic}' from {from} to {}",
                    crate::sizing::n_partitions(to)
                )
            }
            Applied::GrownByOther(n) => format!(
                "topic '{topic}' was grown meanwhile by someone else; it has {}",
                crate::sizing::n_partitions(n),
            ),
            Applied::Unchanged(n) => format!(
                "left topic '{topic}' as it is, {}",
                crate::sizing::n_partitions(n)
            ),
        }
    }
}

/// A connected admin client for one cluster.
pub struct Admin {
    client: Client,
    cfg: ConnectConfig,
}

impl Admin {
    pub async fn connect(cfg: &ConnectConfig) -> anyhow::Result<Self> {
        Ok(Self {
            client: connect(cfg).await?,
            cfg: cfg.clone(),
        })
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Run one broker call bounded by --connect-timeout.
    async fn bounded<T, E: std::fmt::Display>(
        &self,
        what: &str,
        fut: impl Future<Output = Result<T, E>>,
    ) -> anyhow::Result<T> {
        match tokio::time::timeout(self.cfg.connect_timeout, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(anyhow!(
                "{what} failed on {}: {e}",
                self.cfg.brokers.join(",")
            )),
            Err(_) => Err(anyhow!(
                "{what}: no answer from {} within {:?} (--connect-timeout)",
                self.cfg.brokers.join(","),
                self.cfg.connect_timeout
            )),
        }
    }

    /// The topic's partition count, None if it does not exist.
    pub async fn partition_count(&self, topic: &str) -> anyhow::Result<Option<u32>> {
        let topics = self
            .bounded("reading topic metadata", self.client.list_topics())
            .await?;
        Ok(topics
            .into_iter()
            .find(|t| t.name == topic)
            .map(|t| t.partitions.len() as u32)
            .filter(|&n| n > 0))
    }

    /// Read the count again until it is at least `want` (metadata can lag
    /// behind a create or grow), for at most SETTLE.
    async fn settle(&self, topic: &str, want: u32) -> anyhow::Result<Option<u32>> {
        let deadline = tokio::time::Instant::now() + SETTLE;
        loop {
            let n = self.partition_count(topic).await?;
            if n.is_some_and(|n| n >= want) || tokio::time::Instant::now() >= deadline {
                return Ok(n);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Create `topic` with `partitions`. A topic created meanwhile by someone
    /// else (TOPIC_ALREADY_EXISTS) is not an error.
    pub async fn create_topic(
        &self,
        topic: &str,
        partitions: u32,
        replication_factor: i16,
    ) -> anyhow::Result<Applied> {
        let timeout_ms = self.cfg.connect_timeout.as_millis().min(i32::MAX as u128) as i32;
        let deadline = tokio::time::Instant::now() + self.cfg.connect_timeout;
        let pause =
            crate::backoff::Doubling::new(Duration::from_millis(50), Duration::from_secs(1));
        let mut attempt = 0;
        let res = loop {
            let controller = self
                .client
                .controller_client()
                .context("controller client")?;
            let res = tokio::time::timeout_at(
                deadline,
                controller.create_topic(topic, partitions as i32, replication_factor, timeout_ms),
            )
            .await;
            // A broker that has just (re)started answers metadata before it
            // knows the controller (id -1), and one that has just resumed is
            // fenced for a moment: ask again until --connect-timeout.
            match &res {
                Ok(Err(e)) if cluster_not_ready(e) && tokio::time::Instant::now() < deadline => {
                    tracing::debug!(error = %e, "the cluster cannot place the topic yet; asking again");
                    tokio::time::sleep(pause.delay(attempt)).await;
                    attempt += 1;
                }
                _ => break res,
            }
        };
        let by_other = match res {
            Ok(Ok(())) => false,
            Ok(Err(ClientError::ServerError {
                protocol_error: ProtocolError::TopicAlreadyExists,
                ..
            })) => true,
            Ok(Err(ClientError::ServerError {
                protocol_error,
                error_message,
                ..
            })) => bail!(
                "creating topic '{topic}' with {} (replication factor {replication_factor}) failed: {protocol_error}{}; check --partitions and --replication-factor against the cluster", crate::sizing::n_partitions(partitions),
                error_message.map(|m| format!(" ({m})")).unwrap_or_default()
            ),
            Ok(Err(e)) => bail!("creating topic '{topic}' failed: {e}"),
            Err(_) => bail!(
                "creating topic '{topic}': no answer from {} within {:?} (--connect-timeout)",
                self.cfg.brokers.join(","),
                self.cfg.connect_timeout
            ),
        };
        let want = if by_other { 1 } else { partitions };
        let Some(n) = self.settle(topic, want).await? else {
            bail!("topic '{topic}' was created but does not show up in the cluster metadata");
        };
        Ok(if by_other {
            Applied::CreatedByOther(n)
        } else {
            Applied::Created(n)
        })
    }

    /// Grow `topic` from `from` to `to` partitions with CreatePartitions.
    pub async fn grow_topic(&self, topic: &str, from: u32, to: u32) -> anyhow::Result<Applied> {
        use crate::wire::admin::{create_partitions, GrowOutcome};
        let outcome =
            create_partitions(&self.cfg.brokers, topic, to, self.cfg.connect_timeout).await?;
        match outcome {
            GrowOutcome::Done => {
                let n = self.settle(topic, to).await?.unwrap_or(to);
                Ok(Applied::Grown { from, to: n })
            }
            GrowOutcome::Unsupported { broker } => Err(crate::error::ExitWith(
                1,
                format!(
                    "topic '{topic}' has {} and {to} are wanted, but the broker at {broker} does not support CreatePartitions (Kafka API 37); \
                     run with -p keep to use the topic as it is, or grow the topic with the cluster's admin tools \
                     (e.g. kafka-topics.sh --alter --topic {topic} --partitions {to})",
                    crate::sizing::n_partitions(from)
                ),
            )
            .into()),
            GrowOutcome::Invalid(msg) => {
                // A concurrent grow (another kswarm) may have won: read again.
                let n = self.partition_count(topic).await?.unwrap_or(0);
                if n >= to {
                    Ok(Applied::GrownByOther(n))
                } else {
                    bail!("growing topic '{topic}' from {from} to {to} partitions was refused: {msg}")
                }
            }
        }
    }

    /// For a dry run that would grow the topic: a note if the broker cannot.
    pub async fn grow_support_note(&self, topic: &str, plan: &Plan) -> Option<String> {
        match crate::wire::admin::supports_create_partitions(
            &self.cfg.brokers,
            self.cfg.connect_timeout,
        )
        .await
        {
            Ok(false) => Some(format!(
                "the broker does not support CreatePartitions: --apply will fail; use -p keep to keep {}, or grow topic '{topic}' with the cluster's admin tools",
                crate::sizing::n_partitions(plan.current.unwrap_or(0))
            )),
            _ => None,
        }
    }

    /// Carry out `plan` on `topic`.
    pub async fn apply(
        &self,
        topic: &str,
        plan: &Plan,
        replication_factor: i16,
    ) -> anyhow::Result<Applied> {
        match (plan.action, plan.current, plan.target) {
            (Action::Create, _, Some(t)) => {
                let applied = self.create_topic(topic, t, replication_factor).await?;
                if let Applied::CreatedByOther(n) = applied {
                    if n < t {
                        // Someone else created it smaller: grow it like a second run would.
                        return match self.grow_topic(topic, n, t).await? {
                            Applied::Grown { to, .. } | Applied::GrownByOther(to) => {
                                Ok(Applied::CreatedByOther(to))
                            }
                            other => Ok(other),
                        };
                    }
                }
                Ok(applied)
            }
            (Action::Grow, Some(c), Some(t)) => self.grow_topic(topic, c, t).await,
            (_, Some(c), _) => Ok(Applied::Unchanged(c)),
            (_, None, _) => bail!(
                "topic '{topic}' does not exist and -p keep forbids creating it; create it, or use -p auto or -p N so kswarm creates it"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rskafka::client::error::RequestContext;

    fn server(protocol_error: ProtocolError, message: Option<&str>) -> ClientError {
        ClientError::ServerError {
            protocol_error,
            error_message: message.map(str::to_string),
            request: RequestContext::Topic("t".into()),
            response: None,
            is_virtual: false,
        }
    }

    #[test]
    fn a_cluster_that_cannot_place_a_topic_yet_is_asked_again() {
        assert!(cluster_not_ready(&server(
            ProtocolError::NotController,
            None
        )));
        // A resumed Kafka node fenced for a moment (seen in CI after the outage test).
        let fenced = "Unable to replicate the partition 1 time(s): All brokers are currently \
                      fenced, or have all their log directories cordoned.";
        assert!(cluster_not_ready(&server(
            ProtocolError::InvalidReplicationFactor,
            Some(fenced)
        )));
        // A replication factor the cluster can never meet is final.
        assert!(!cluster_not_ready(&server(
            ProtocolError::InvalidReplicationFactor,
            Some("Unable to replicate the partition 3 time(s): The target replication factor of 3 cannot be reached because only 1 broker(s) are registered.")
        )));
        assert!(!cluster_not_ready(&server(
            ProtocolError::TopicAuthorizationFailed,
            None
        )));
    }
}
