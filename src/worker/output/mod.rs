//! `--output-topic`: the handler's results and the offsets of the records
//! they came from, committed in one Kafka transaction (exactly once).
//!
//! Each worker slot has a transactional id of its own, stable across its
//! restarts (`kswarm-GROUP-TOPIC-HOST-SLOT`): the InitProducerId of a
//! replacement fences its dead predecessor and aborts the transaction it
//! left open. Results are buffered and produced as they come (by their key,
//! or to the partition of their input); the transaction ends at every
//! commit: the offsets go in with the member's generation (KIP-447, so a
//! member whose partitions moved on cannot commit), then EndTxn. With
//! `transaction.version` 2 (KIP-890, Kafka 4) the brokers add partitions
//! and offsets to the transaction themselves and every EndTxn bumps the
//! producer epoch.
//!
//! A transaction that cannot commit is aborted, and the worker stops: its
//! uncommitted records are handled again by whoever owns them next, and
//! none of their results become visible to `read_committed` readers.

pub(crate) mod state;
#[cfg(test)]
mod tests;

use std::time::Duration;

use tracing::{debug, info, warn};

use self::state::{classify, Buffer, Open, TopicIx, TxnClass, TxnProtocol, DEAD_LETTER, OUTPUT};
use super::cluster::{Cluster, ClusterError};
use crate::group::link::Pacer;
use crate::group::{CoordinatorKind, CoordinatorLink, LinkSettings};
use crate::record::OutRecord;
use crate::wire::group_msgs::code_name;
use crate::wire::txn::{self, GroupMetadata, PartitionBatch, ProducerIdentity};
use crate::wire::{ApiKey, BrokerConn};

/// Results buffered up to this many bytes before they are produced: the
/// produce of one part overlaps the handling of the next, so that the
/// commit finds little left to write (results are invisible to
/// read_committed readers until the commit anyway).
const PRODUCE_AT: usize = 64 * 1024;
/// ... or once the oldest buffered result has waited this long.
const LINGER: Duration = Duration::from_millis(20);
/// Per request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a transaction could not commit.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TxnError {
    /// The group moved on (KIP-447): this generation's offsets cannot be
    /// committed; its transaction is aborted, and so is every later one of
    /// the same generation. The member rejoins.
    #[error("{0}")]
    GroupMoved(String),
    /// A newer worker took the transactional id over, or the brokers stayed
    /// away: the transaction is aborted, and so is every later one.
    #[error("{0}")]
    Aborted(String),
    /// Retrying cannot help: a flag or a record at fault.
    #[error("{0}")]
    Fatal(String),
}

/// What the worker's transactions need to know.
#[derive(Debug, Clone)]
pub struct OutputSettings {
    pub brokers: Vec<String>,
    pub client_id: String,
    pub connect_timeout: Duration,
    pub transactional_id: String,
    pub transaction_timeout: Duration,
    pub output_topic: String,
    pub dead_letter_topic: Option<String>,
    /// The group (TxnOffsetCommit goes to its coordinator) and the topic
    /// whose offsets are committed.
    pub group: String,
    pub input_topic: String,
    /// How long the brokers may stay away before a commit fails.
    pub window: Duration,
}

/// The worker's transactional producer.
pub struct Output {
    s: OutputSettings,
    txn_link: CoordinatorLink,
    group_link: CoordinatorLink,
    protocol: TxnProtocol,
    producer: ProducerIdentity,
    /// `--output-topic`, then `--dead-letter-topic` if any.
    topics: Vec<Cluster>,
    open: Option<Open>,
    buffer: Buffer,
    /// A transaction failed: every later commit fails the same way.
    failed: Option<TxnError>,
    /// The generation (member id, generation) the group fenced: its
    /// commits are refused without asking.
    fenced: Option<(String, i32)>,
}

impl Output {
    /// Find the transaction coordinator, fence every earlier producer of
    /// this slot's transactional id (aborting what it left open), and learn
    /// the output topics' leaders.
    pub async fn start(s: OutputSettings) -> Result<Output, TxnError> {
        let link = |key: &str, kind| LinkSettings {
            brokers: s.brokers.clone(),
            client_id: s.client_id.clone(),
            group: key.to_string(),
            kind,
            connect_timeout: s.connect_timeout,
            window: s.window,
        };
        let mut topics = vec![Cluster::new(
            &s.output_topic,
            &s.brokers,
            &s.client_id,
            s.connect_timeout,
        )];
        if let Some(dl) = &s.dead_letter_topic {
            topics.push(Cluster::new(
                dl,
                &s.brokers,
                &s.client_id,
                s.connect_timeout,
            ));
        }
        let mut out = Output {
            txn_link: CoordinatorLink::new(link(&s.transactional_id, CoordinatorKind::Transaction)),
            group_link: CoordinatorLink::new(link(&s.group, CoordinatorKind::Group)),
            protocol: TxnProtocol::V1,
            producer: ProducerIdentity { id: -1, epoch: -1 },
            topics,
            open: None,
            buffer: Buffer::default(),
            failed: None,
            fenced: None,
            s,
        };
        for t in 0..out.topics.len() {
            out.refresh(t).await?;
        }
        out.init_producer().await?;
        info!(
            "transactional id {} (producer {} epoch {}), {}",
            out.s.transactional_id,
            out.producer.id,
            out.producer.epoch,
            out.protocol.name()
        );
        Ok(out)
    }

    /// The result of a record of input partition `input_partition` goes to
    /// the transaction (`dead_letter`: to the dead-letter topic).
    pub async fn send(
        &mut self,
        input_partition: i32,
        results: Vec<OutRecord>,
        dead_letter: bool,
    ) -> Result<(), TxnError> {
        let topic = if dead_letter { DEAD_LETTER } else { OUTPUT };
        let partitions = self.topics[topic].partition_count();
        for r in results {
            let p = state::partition_of(r.key.as_deref(), input_partition, partitions);
            self.buffer.push(topic, p, r);
        }
        let lingered = self.buffer.since().is_some_and(|t| t.elapsed() >= LINGER);
        if self.buffer.bytes() >= PRODUCE_AT || lingered {
            self.produce().await?;
        }
        Ok(())
    }

    /// Commit the transaction: everything sent so far and the input
    /// offsets `offsets` (next offset per partition), with the member's
    /// generation. Nothing to commit: nothing happens.
    pub async fn commit(
        &mut self,
        offsets: &[(i32, i64)],
        meta: &GroupMetadata,
    ) -> Result<(), TxnError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let generation = (meta.member_id.clone(), meta.generation);
        if self.fenced.as_ref() == Some(&generation) {
            self.abort_open().await;
            return Err(TxnError::GroupMoved(format!(
                "generation {} of member {} was fenced; its offsets cannot be committed",
                meta.generation, meta.member_id
            )));
        }
        let r = self.try_commit(offsets, meta).await;
        match &r {
            Ok(()) => {}
            Err(TxnError::GroupMoved(why)) => {
                warn!("transaction aborted: {why}");
                self.abort_open().await;
                self.fenced = Some(generation);
            }
            Err(e) => self.fail(e.clone()).await,
        }
        r
    }

    /// Drop what is buffered and abort what is open (best effort).
    async fn abort_open(&mut self) {
        self.buffer.clear();
        if self.open.is_some() {
            if let Err(why) = self.end(false).await {
                debug!("could not abort the transaction: {why}");
            }
            self.open = None;
        }
    }

    async fn try_commit(
        &mut self,
        offsets: &[(i32, i64)],
        meta: &GroupMetadata,
    ) -> Result<(), TxnError> {
        self.produce().await?;
        if offsets.is_empty() && self.open.is_none() {
            return Ok(());
        }
        if !offsets.is_empty() {
            self.commit_offsets(offsets, meta).await?;
        }
        self.end(true).await?;
        debug!("transaction committed ({} offsets)", offsets.len());
        Ok(())
    }

    /// Abort what is open (a worker that stops on an untrustworthy
    /// handler). Its results never become visible.
    pub async fn abort(&mut self, why: &str) {
        self.fail(TxnError::Aborted(why.to_string())).await;
    }

    /// The failure that ended the transactions, if one did.
    pub fn failure(&self) -> Option<&TxnError> {
        self.failed.as_ref()
    }

    /// A transaction failed: abort it (best effort: a fenced producer
    /// cannot, and the coordinator aborts it at its timeout anyway), and
    /// refuse everything from now on.
    async fn fail(&mut self, e: TxnError) {
        self.abort_open().await;
        warn!("transaction aborted: {e}");
        self.failed.get_or_insert(e);
    }

    async fn init_producer(&mut self) -> Result<(), TxnError> {
        let (id, timeout) = (
            self.s.transactional_id.clone(),
            self.s.transaction_timeout.as_millis() as i32,
        );
        let mut tries = Tries::new(self.s.window, "InitProducerId");
        loop {
            let conn = self.txn_conn().await?;
            let answer = txn::init_producer_id(conn, &id, timeout).await;
            let protocol = TxnProtocol::of(
                conn.feature(txn::TRANSACTION_VERSION),
                conn.broker_versions(ApiKey::Produce).map(|v| v.1),
                conn.broker_versions(ApiKey::EndTxn).map(|v| v.1),
            );
            match answer {
                Ok((0, producer)) => {
                    (self.producer, self.protocol) = (producer, protocol);
                    self.buffer.new_epoch();
                    return Ok(());
                }
                Ok((code, _)) => self.txn_code(code, "InitProducerId", &mut tries).await?,
                Err(e) => {
                    self.txn_link.drop_conn();
                    tries.pause(&e.to_string()).await?
                }
            }
        }
    }

    /// Produce what is buffered (V1: after adding its partitions to the
    /// transaction).
    async fn produce(&mut self) -> Result<(), TxnError> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let batches = self.buffer.take();
        self.open.get_or_insert_with(Open::default);
        if self.protocol.adds_explicitly() {
            let keys: Vec<(TopicIx, i32)> = batches.iter().map(|b| b.0).collect();
            self.add_partitions(&keys).await?;
        }
        for ((topic, partition), base, records) in batches {
            self.produce_one(topic, partition, base, &records).await?;
            self.buffer.written((topic, partition), base, records.len());
            if let Some(open) = self.open.as_mut() {
                open.partitions.insert((topic, partition));
            }
        }
        Ok(())
    }

    /// One partition's batch to its leader, retried (same sequence numbers:
    /// the broker drops a batch it already has) until it is written.
    async fn produce_one(
        &mut self,
        topic: TopicIx,
        partition: i32,
        base: i32,
        records: &[OutRecord],
    ) -> Result<(), TxnError> {
        let mut tries = Tries::new(self.s.window, "Produce");
        loop {
            let name = self.topics[topic].topic().to_string();
            let batch = PartitionBatch {
                topic: &name,
                partition,
                base_sequence: base,
                records,
            };
            let Some(leader) = self.topics[topic].leader(partition) else {
                tries
                    .pause(&format!("no leader of {name} partition {partition}"))
                    .await?;
                self.refresh(topic).await?;
                continue;
            };
            let mut conn = match self.topics[topic].conn(leader.node).await {
                Ok(c) => c,
                Err(e) => {
                    tries.pause(&e.to_string()).await?;
                    self.refresh(topic).await?;
                    continue;
                }
            };
            let (id, producer, min) = (
                self.s.transactional_id.clone(),
                self.producer,
                self.protocol.produce_min(),
            );
            let timeout = REQUEST_TIMEOUT.as_millis() as i32;
            let answer = txn::produce(&mut conn, &id, producer, &[batch], min, timeout).await;
            self.topics[topic].put_conn(leader.node, conn);
            let code = match answer {
                Ok(a) => a.first().map_or(0, |b| b.error),
                Err(e) => {
                    tries.pause(&e.to_string()).await?;
                    continue;
                }
            };
            match classify(code, "Produce") {
                TxnClass::Ok => return Ok(()),
                TxnClass::Moved | TxnClass::Retry => {
                    tries.pause(&code_name(code)).await?;
                    self.refresh(topic).await?;
                }
                _ if code == state::MESSAGE_TOO_LARGE || code == state::RECORD_LIST_TOO_LARGE => {
                    return Err(TxnError::Fatal(too_large(&name, partition, records)))
                }
                other => return Err(self.outcome(other, code, "Produce")),
            }
        }
    }

    /// V1: AddPartitionsToTxn for the partitions not yet in the transaction.
    async fn add_partitions(&mut self, keys: &[(TopicIx, i32)]) -> Result<(), TxnError> {
        let added = self
            .open
            .as_ref()
            .map(|o| o.partitions.clone())
            .unwrap_or_default();
        let mut want: Vec<(String, Vec<i32>)> = Vec::new();
        for &(t, p) in keys.iter().filter(|k| !added.contains(k)) {
            let name = self.topics[t].topic().to_string();
            match want.iter_mut().find(|w| w.0 == name) {
                Some(w) => w.1.push(p),
                None => want.push((name, vec![p])),
            }
        }
        if want.is_empty() {
            return Ok(());
        }
        let mut tries = Tries::new(self.s.window, "AddPartitionsToTxn");
        loop {
            let (id, producer) = (self.s.transactional_id.clone(), self.producer);
            let conn = self.txn_conn().await?;
            match txn::add_partitions(conn, &id, producer, &want).await {
                Ok(answers) => {
                    let code = answers.iter().map(|a| a.2).find(|&c| c != 0).unwrap_or(0);
                    if code == 0 {
                        return Ok(());
                    }
                    self.txn_code(code, "AddPartitionsToTxn", &mut tries)
                        .await?;
                }
                Err(e) => {
                    self.txn_link.drop_conn();
                    tries.pause(&e.to_string()).await?
                }
            }
        }
    }

    /// The input offsets into the transaction: V1 AddOffsetsToTxn first,
    /// then TxnOffsetCommit to the group's coordinator.
    async fn commit_offsets(
        &mut self,
        offsets: &[(i32, i64)],
        meta: &GroupMetadata,
    ) -> Result<(), TxnError> {
        self.open.get_or_insert_with(Open::default);
        if self.protocol.adds_explicitly() && !self.open.as_ref().is_some_and(|o| o.offsets_added) {
            let mut tries = Tries::new(self.s.window, "AddOffsetsToTxn");
            loop {
                let (id, producer) = (self.s.transactional_id.clone(), self.producer);
                let conn = self.txn_conn().await?;
                match txn::add_offsets(conn, &id, producer, &meta.group).await {
                    Ok(0) => break,
                    Ok(code) => self.txn_code(code, "AddOffsetsToTxn", &mut tries).await?,
                    Err(e) => {
                        self.txn_link.drop_conn();
                        tries.pause(&e.to_string()).await?
                    }
                }
            }
            if let Some(o) = self.open.as_mut() {
                o.offsets_added = true;
            }
        }
        let mut tries = Tries::new(self.s.window, "TxnOffsetCommit");
        let max = self.protocol.commit_max().0;
        loop {
            let (id, producer) = (self.s.transactional_id.clone(), self.producer);
            let topic = self.s.input_topic.clone();
            let conn = self
                .group_link
                .conn()
                .await
                .map_err(|e| TxnError::Aborted(e.to_string()))?;
            match txn::txn_offset_commit(conn, &id, producer, meta, &topic, offsets, max).await {
                Ok(answers) => {
                    let code = answers.iter().map(|a| a.1).find(|&c| c != 0).unwrap_or(0);
                    match classify(code, "TxnOffsetCommit") {
                        TxnClass::Ok => return Ok(()),
                        TxnClass::Moved => {
                            self.group_link.forget();
                            tries.pause(&code_name(code)).await?
                        }
                        TxnClass::Retry => tries.pause(&code_name(code)).await?,
                        other => return Err(self.outcome(other, code, "TxnOffsetCommit")),
                    }
                }
                Err(e) => {
                    self.group_link.drop_conn();
                    tries.pause(&e.to_string()).await?
                }
            }
        }
    }

    /// EndTxn: commit or abort. V2: take the next epoch it hands out.
    async fn end(&mut self, commit: bool) -> Result<(), TxnError> {
        let what = if commit {
            "EndTxn (commit)"
        } else {
            "EndTxn (abort)"
        };
        let mut tries = Tries::new(self.s.window, what);
        let max = self.protocol.commit_max().1;
        loop {
            let (id, producer) = (self.s.transactional_id.clone(), self.producer);
            let conn = self.txn_conn().await?;
            match txn::end_txn(conn, &id, producer, commit, max).await {
                Ok((0, next)) => {
                    self.open = None;
                    if let Some(next) = next {
                        self.producer = next;
                        self.buffer.new_epoch();
                    }
                    return Ok(());
                }
                Ok((code, _)) => self.txn_code(code, what, &mut tries).await?,
                Err(e) => {
                    self.txn_link.drop_conn();
                    tries.pause(&e.to_string()).await?
                }
            }
        }
    }

    /// React to an error code from the transaction coordinator: pause and
    /// retry (Ok), or fail.
    async fn txn_code(
        &mut self,
        code: i16,
        request: &str,
        tries: &mut Tries,
    ) -> Result<(), TxnError> {
        match classify(code, request) {
            TxnClass::Ok => Ok(()),
            TxnClass::Moved => {
                self.txn_link.forget();
                tries.pause(&code_name(code)).await
            }
            TxnClass::Retry => tries.pause(&code_name(code)).await,
            other => Err(self.outcome(other, code, request)),
        }
    }

    /// The error of a class that ends the transaction.
    fn outcome(&self, class: TxnClass, code: i16, request: &str) -> TxnError {
        let id = &self.s.transactional_id;
        match class {
            TxnClass::Fatal(m) => TxnError::Fatal(m),
            TxnClass::GroupMoved => TxnError::GroupMoved(format!(
                "{request}: {}: the group moved on and this worker's partitions may belong to another member now; its offsets cannot be committed (KIP-447 fencing)",
                code_name(code)
            )),
            TxnClass::Fenced => TxnError::Aborted(format!(
                "{request}: {}: transactional id {id} was taken over by a newer worker of this slot, or the coordinator ended the transaction (-X transaction.timeout.ms passed)",
                code_name(code)
            )),
            _ => TxnError::Aborted(format!("{request}: {}", code_name(code))),
        }
    }

    async fn txn_conn(&mut self) -> Result<&mut BrokerConn, TxnError> {
        self.txn_link
            .conn()
            .await
            .map_err(|e| TxnError::Aborted(format!("{e:#}")))
    }

    /// Read a topic's leaders again; a topic that is missing or may not be
    /// written is fatal.
    async fn refresh(&mut self, topic: TopicIx) -> Result<(), TxnError> {
        let flag = if topic == OUTPUT {
            "--output-topic"
        } else {
            "--dead-letter-topic"
        };
        let mut tries = Tries::new(self.s.window, "Metadata");
        loop {
            match self.topics[topic].refresh().await {
                Ok(()) => return Ok(()),
                Err(ClusterError::Fatal(m)) => return Err(TxnError::Fatal(format!("{flag}: {m}"))),
                Err(ClusterError::Retry(e)) => tries.pause(&format!("{flag}: {e:#}")).await?,
            }
        }
    }
}

/// A message for a result over the topic's size limit, naming the largest.
fn too_large(topic: &str, partition: i32, records: &[OutRecord]) -> String {
    let biggest = records.iter().map(OutRecord::size).max().unwrap_or(0);
    format!(
        "a result for topic {topic} (partition {partition}) is over the topic's \
         max.message.bytes (the largest in the batch takes about {biggest} bytes); raise the \
         topic's max.message.bytes, or make the handler's results smaller. Nothing past the \
         last committed transaction is committed"
    )
}

/// Retries of one request within the outage window: the group link's
/// pacing (50 ms doubling to 1 s), its give-up an aborted transaction.
struct Tries {
    pacer: Pacer,
    what: &'static str,
}

impl Tries {
    fn new(window: Duration, what: &'static str) -> Self {
        Tries {
            pacer: Pacer::new(window),
            what,
        }
    }

    async fn pause(&mut self, problem: &str) -> Result<(), TxnError> {
        self.pacer
            .pause(self.what, problem)
            .await
            .map_err(|e| TxnError::Aborted(format!("{e:#}")))
    }
}
