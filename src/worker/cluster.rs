//! What a worker knows of the cluster it reads from: the topic's partition
//! leaders (Metadata, refreshed when a fetch says a leader moved) and one
//! connection per broker, opened when first needed.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use anyhow::Context as _;

use crate::config::StartFrom;
use crate::wire::codes;
use crate::wire::fetch::{self, Leader, TopicLayout, TopicRef};
use crate::wire::group_msgs::code_name;
use crate::wire::{BrokerConn, WireError};

/// What [`Cluster::peek`] reads at most.
const PEEK_BYTES: i32 = 1 << 20;

/// A fatal problem: retrying with the same settings cannot help.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Fatal(pub String);

/// Why a request about the topic failed.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// Retrying with the same settings cannot help (no rights, TLS, a
    /// broker without the versions we need).
    #[error("{0}")]
    Fatal(String),
    /// Worth a retry: the brokers may be away, a leader may be moving.
    #[error("{0:#}")]
    Retry(anyhow::Error),
}

impl From<anyhow::Error> for ClusterError {
    fn from(e: anyhow::Error) -> Self {
        ClusterError::Retry(e)
    }
}

pub struct Cluster {
    topic: String,
    bootstrap: Vec<String>,
    client_id: String,
    connect_timeout: Duration,
    layout: TopicLayout,
    /// node id -> an idle connection (a fetch in flight holds its own).
    conns: HashMap<i32, BrokerConn>,
    /// The connection metadata is asked on (any broker).
    meta: Option<BrokerConn>,
}

impl Cluster {
    pub fn new(
        topic: &str,
        bootstrap: &[String],
        client_id: &str,
        connect_timeout: Duration,
    ) -> Self {
        Cluster {
            topic: topic.to_string(),
            bootstrap: bootstrap.to_vec(),
            client_id: client_id.to_string(),
            connect_timeout,
            layout: TopicLayout::default(),
            conns: HashMap::new(),
            meta: None,
        }
    }

    /// The same cluster without its connections (for another task).
    pub fn detached(&self) -> Self {
        Cluster {
            layout: self.layout.clone(),
            conns: HashMap::new(),
            meta: None,
            ..Cluster::new(
                &self.topic,
                &self.bootstrap,
                &self.client_id,
                self.connect_timeout,
            )
        }
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    pub fn topic_ref(&self) -> TopicRef {
        TopicRef {
            name: self.topic.clone(),
            id: self.layout.id,
        }
    }

    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    /// Read the topic's leaders again.
    pub async fn refresh(&mut self) -> Result<(), ClusterError> {
        let conn = match self.meta.take() {
            Some(c) if !c.is_broken() => c,
            _ => {
                let addrs: Vec<String> = (self.bootstrap.iter())
                    .chain(self.layout.brokers.values())
                    .cloned()
                    .collect();
                any_conn(
                    addrs,
                    &self.client_id,
                    self.connect_timeout,
                    &self.bootstrap,
                )
                .await?
            }
        };
        let mut conn = conn;
        let layout = fetch::topic_layout(&mut conn, &self.topic)
            .await
            .map_err(|e| fatal_or(e, "reading the topic's leaders"))?;
        self.meta = Some(conn);
        if layout.error == codes::TOPIC_AUTHORIZATION_FAILED {
            return Err(ClusterError::Fatal(format!(
                "not allowed to read topic {} (TopicAuthorizationFailed): grant this principal Read and Describe on it",
                self.topic
            )));
        }
        if layout.error != 0 {
            return Err(anyhow::anyhow!(
                "the brokers do not know topic {} now ({})",
                self.topic,
                code_name(layout.error)
            )
            .into());
        }
        self.layout = layout;
        Ok(())
    }

    /// The leader of `partition`, if one is known.
    pub fn leader(&self, partition: i32) -> Option<Leader> {
        match self.layout.leaders.get(&partition) {
            Some(Ok(l)) if l.node >= 0 && self.layout.brokers.contains_key(&l.node) => Some(*l),
            _ => None,
        }
    }

    /// How many partitions the topic has (as last read).
    pub fn partition_count(&self) -> usize {
        self.layout.leaders.len()
    }

    /// Where broker `node` listens.
    pub fn addr(&self, node: i32) -> Option<String> {
        self.layout.brokers.get(&node).cloned()
    }

    /// The idle connection to `node`, if there is one.
    pub fn take_conn(&mut self, node: i32) -> Option<BrokerConn> {
        self.conns.remove(&node).filter(|c| !c.is_broken())
    }

    pub fn put_conn(&mut self, node: i32, conn: BrokerConn) {
        if !conn.is_broken() {
            self.conns.insert(node, conn);
        }
    }

    /// A connection to broker `node`: its idle one, or a new one.
    pub async fn conn(&mut self, node: i32) -> Result<BrokerConn, ClusterError> {
        if let Some(c) = self.take_conn(node) {
            return Ok(c);
        }
        let addr = self
            .addr(node)
            .with_context(|| format!("broker {node} is not in the metadata"))
            .map_err(ClusterError::Retry)?;
        let (client_id, timeout) = (self.client_id.clone(), self.connect_timeout);
        BrokerConn::connect(&addr, &client_id, timeout)
            .await
            .map_err(|e| fatal_or(e, "connecting to a partition leader"))
    }

    /// The record at `offset` of `partition` (or the next one there is),
    /// read with one sessionless Fetch: for a message about a record the
    /// handler died on, which the worker no longer holds.
    pub async fn peek(
        &mut self,
        partition: i32,
        offset: i64,
    ) -> anyhow::Result<Option<crate::record::Record>> {
        let leader = self
            .leader(partition)
            .with_context(|| format!("no leader known for partition {partition}"))?;
        let mut conn = self.conn(leader.node).await?;
        let plan = fetch::FetchPlan {
            session_id: 0,
            epoch: -1,
            full: true,
            partitions: vec![(
                partition,
                fetch::PartitionWant {
                    offset,
                    leader_epoch: leader.epoch,
                    max_bytes: PEEK_BYTES,
                },
            )],
            forgotten: vec![],
        };
        let limits = fetch::FetchLimits {
            max_wait_ms: 0,
            max_bytes: PEEK_BYTES,
        };
        let answer = fetch::fetch(&mut conn, &self.topic_ref(), &plan, limits).await?;
        self.put_conn(leader.node, conn);
        let Some(pa) = answer
            .partitions
            .into_iter()
            .find(|p| p.partition == partition)
        else {
            return Ok(None);
        };
        let mut out = Vec::new();
        crate::wire::records::decode_fetched(partition, pa.records, offset, pa.aborted, &mut out)
            .map_err(anyhow::Error::msg)?;
        Ok(out.into_iter().find(|r| r.offset >= offset))
    }

    /// Where `partitions` start by `--from`: one ListOffsets per leader.
    /// Fails (to be retried) if a leader is unknown or moved meanwhile.
    pub async fn start_offsets(
        &mut self,
        partitions: &[i32],
        from: StartFrom,
    ) -> Result<BTreeMap<i32, i64>, ClusterError> {
        if partitions.iter().any(|p| self.leader(*p).is_none()) {
            self.refresh().await?;
        }
        let mut by_leader: BTreeMap<i32, Vec<(i32, i32)>> = BTreeMap::new();
        for &p in partitions {
            let l = self
                .leader(p)
                .with_context(|| format!("partition {p} of {} has no leader now", self.topic))
                .map_err(ClusterError::Retry)?;
            by_leader.entry(l.node).or_default().push((p, l.epoch));
        }
        let mut out = BTreeMap::new();
        for (node, parts) in by_leader {
            let mut conn = self.conn(node).await?;
            let r = fetch::list_offsets(&mut conn, &self.topic, &parts, from == StartFrom::Latest)
                .await
                .map_err(|e| fatal_or(e, "reading where --from starts"));
            self.put_conn(node, conn);
            for (p, o) in r? {
                match o {
                    Ok(o) => {
                        out.insert(p, o);
                    }
                    Err(code) => {
                        // A moved leader: the next try reads fresh metadata.
                        self.layout.leaders.insert(p, Err(code));
                        return Err(anyhow::anyhow!(
                            "cannot read the start offset of partition {p} ({})",
                            code_name(code)
                        )
                        .into());
                    }
                }
            }
        }
        if let Some(p) = partitions.iter().find(|p| !out.contains_key(p)) {
            return Err(anyhow::anyhow!(
                "the broker did not answer for the start offset of partition {p}"
            )
            .into());
        }
        Ok(out)
    }

    /// Forget `partition`'s leader until the next refresh.
    pub fn forget_leader(&mut self, partition: i32, code: i16) {
        self.layout.leaders.insert(partition, Err(code));
    }
}

/// Auth, TLS and missing versions are fatal; the rest is worth a retry.
pub fn fatal_or(e: WireError, what: &str) -> ClusterError {
    match e {
        WireError::Auth { .. } | WireError::Tls { .. } => ClusterError::Fatal(e.to_string()),
        WireError::Unsupported { .. } => ClusterError::Fatal(format!("{e} ({what})")),
        e => ClusterError::Retry(anyhow::anyhow!(e).context(what.to_string())),
    }
}

/// A connection to the first of `addrs` (the bootstrap brokers, then the
/// known ones) that answers.
async fn any_conn(
    addrs: Vec<String>,
    client_id: &str,
    timeout: Duration,
    bootstrap: &[String],
) -> Result<BrokerConn, ClusterError> {
    let mut last = None;
    for addr in addrs {
        match BrokerConn::connect(&addr, client_id, timeout).await {
            Ok(c) => return Ok(c),
            Err(e @ (WireError::Auth { .. } | WireError::Tls { .. })) => {
                return Err(ClusterError::Fatal(e.to_string()))
            }
            Err(e) => last = Some(e),
        }
    }
    let e = match last {
        Some(e) => anyhow::anyhow!(e),
        None => anyhow::anyhow!("no broker given"),
    };
    Err(ClusterError::Retry(e.context(format!(
        "cannot reach any of --brokers {}",
        bootstrap.join(",")
    ))))
}
