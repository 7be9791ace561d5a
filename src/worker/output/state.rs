//! The pure part of `--output-topic`: what a transaction error code means,
//! which transaction protocol the cluster runs, the open transaction's
//! state and the results buffered for it.

use std::collections::{BTreeMap, BTreeSet};

use crate::record::OutRecord;
use crate::wire::codes::*;
use crate::wire::group_msgs::code_name;

/// Error codes of the transaction requests that the group codes lack.
pub const MESSAGE_TOO_LARGE: i16 = 10;
pub const RECORD_LIST_TOO_LARGE: i16 = 18;
pub const NOT_ENOUGH_REPLICAS: i16 = 19;
pub const NOT_ENOUGH_REPLICAS_AFTER_APPEND: i16 = 20;
pub const CLUSTER_AUTHORIZATION_FAILED: i16 = 31;
pub const DUPLICATE_SEQUENCE_NUMBER: i16 = 46;
pub const INVALID_PRODUCER_EPOCH: i16 = 47;
pub const INVALID_PRODUCER_ID_MAPPING: i16 = 49;
pub const INVALID_TRANSACTION_TIMEOUT: i16 = 50;
pub const CONCURRENT_TRANSACTIONS: i16 = 51;
pub const TRANSACTIONAL_ID_AUTHORIZATION_FAILED: i16 = 53;
pub const PRODUCER_FENCED: i16 = 90;

/// How to react to an error code in a transaction answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnClass {
    Ok,
    /// Find the coordinator (or the leaders) again, then retry.
    Moved,
    /// Transient: retry the same request after a pause.
    Retry,
    /// The member's generation moved on (KIP-447): its offsets cannot be
    /// committed; the transaction must be aborted.
    GroupMoved,
    /// A newer producer with the same transactional id exists, or the
    /// coordinator ended the transaction (its timeout passed).
    Fenced,
    /// The transaction cannot commit; abort it.
    Abortable,
    /// Retrying cannot help: a flag or a record at fault (the message says which).
    Fatal(String),
}

/// Classify `code` from the answer to `request` (e.g. "EndTxn").
pub fn classify(code: i16, request: &str) -> TxnClass {
    let fatal = |why: &str| TxnClass::Fatal(format!("{request}: {}: {why}", code_name(code)));
    match code {
        NONE | DUPLICATE_SEQUENCE_NUMBER => TxnClass::Ok,
        COORDINATOR_NOT_AVAILABLE
        | NOT_COORDINATOR
        | NOT_LEADER_OR_FOLLOWER
        | LEADER_NOT_AVAILABLE
        | FENCED_LEADER_EPOCH
        | UNKNOWN_LEADER_EPOCH
        | UNKNOWN_TOPIC_OR_PARTITION => TxnClass::Moved,
        COORDINATOR_LOAD_IN_PROGRESS
        | CONCURRENT_TRANSACTIONS
        | REQUEST_TIMED_OUT
        | NETWORK_EXCEPTION
        | NOT_ENOUGH_REPLICAS
        | NOT_ENOUGH_REPLICAS_AFTER_APPEND
        | KAFKA_STORAGE_ERROR
        | THROTTLING_QUOTA_EXCEEDED
        | UNSTABLE_OFFSET_COMMIT => TxnClass::Retry,
        ILLEGAL_GENERATION
        | UNKNOWN_MEMBER_ID
        | FENCED_INSTANCE_ID
        | REBALANCE_IN_PROGRESS
        | FENCED_MEMBER_EPOCH
        | STALE_MEMBER_EPOCH => TxnClass::GroupMoved,
        INVALID_PRODUCER_EPOCH | PRODUCER_FENCED | INVALID_PRODUCER_ID_MAPPING => TxnClass::Fenced,
        TOPIC_AUTHORIZATION_FAILED => fatal(
            "this principal may not write the topic; grant it Write and Describe on \
             --output-topic (and on --dead-letter-topic)",
        ),
        GROUP_AUTHORIZATION_FAILED => fatal("grant this principal Read on the group (--group)"),
        TRANSACTIONAL_ID_AUTHORIZATION_FAILED | CLUSTER_AUTHORIZATION_FAILED => fatal(
            "grant this principal Write and Describe on the transactional ids kswarm uses \
             (prefix kswarm-), or IdempotentWrite on the cluster",
        ),
        INVALID_TRANSACTION_TIMEOUT => fatal(
            "-X transaction.timeout.ms is above the broker's transaction.max.timeout.ms; \
             lower it",
        ),
        UNSUPPORTED_VERSION => fatal("the broker lacks the transaction requests kswarm needs"),
        _ => TxnClass::Abortable,
    }
}

/// The transaction protocol the cluster runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnProtocol {
    /// KIP-98: partitions and the group's offsets are added to the
    /// transaction explicitly; the producer epoch stays.
    V1,
    /// KIP-890 (`transaction.version` 2): the brokers add them themselves
    /// (Produce v12+, TxnOffsetCommit v5), and every EndTxn hands out the
    /// next epoch.
    V2,
}

impl TxnProtocol {
    /// From the cluster's finalized `transaction.version` and whether the
    /// broker speaks Produce v12 and EndTxn v5.
    pub fn of(feature: Option<i16>, produce_max: Option<i16>, end_max: Option<i16>) -> Self {
        let v2 = feature.is_some_and(|l| l >= 2)
            && produce_max.is_some_and(|v| v >= 12)
            && end_max.is_some_and(|v| v >= 5);
        if v2 {
            TxnProtocol::V2
        } else {
            TxnProtocol::V1
        }
    }

    /// The Produce version that lets the broker add partitions itself (V2).
    pub fn produce_min(self) -> i16 {
        match self {
            TxnProtocol::V1 => 3,
            TxnProtocol::V2 => 12,
        }
    }

    /// TxnOffsetCommit's and EndTxn's highest version.
    pub fn commit_max(self) -> (i16, i16) {
        match self {
            TxnProtocol::V1 => (4, 4),
            TxnProtocol::V2 => (5, 5),
        }
    }

    /// Whether partitions and offsets must be added to the transaction
    /// explicitly.
    pub fn adds_explicitly(self) -> bool {
        self == TxnProtocol::V1
    }

    pub fn name(self) -> &'static str {
        match self {
            TxnProtocol::V1 => "transaction version 1 (KIP-98)",
            TxnProtocol::V2 => "transaction version 2 (KIP-890)",
        }
    }
}

/// Where a result goes: `--output-topic` or `--dead-letter-topic`.
pub type TopicIx = usize;
pub const OUTPUT: TopicIx = 0;
pub const DEAD_LETTER: TopicIx = 1;

/// The open transaction.
#[derive(Debug, Default)]
pub struct Open {
    /// Partitions added to it (V1) or written in it.
    pub partitions: BTreeSet<(TopicIx, i32)>,
    /// The group's offsets were added to it (V1).
    pub offsets_added: bool,
}

/// Results waiting for the next produce, per partition, and the sequence
/// numbers of each partition (idempotence: the broker drops a batch it
/// already has).
#[derive(Debug, Default)]
pub struct Buffer {
    pending: BTreeMap<(TopicIx, i32), Vec<OutRecord>>,
    bytes: usize,
    /// When the oldest result buffered now came.
    since: Option<std::time::Instant>,
    sequences: BTreeMap<(TopicIx, i32), i32>,
}

impl Buffer {
    pub fn push(&mut self, topic: TopicIx, partition: i32, r: OutRecord) {
        self.since.get_or_insert_with(std::time::Instant::now);
        self.bytes += r.size();
        self.pending.entry((topic, partition)).or_default().push(r);
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// When the oldest result buffered now came (None: nothing buffered).
    pub fn since(&self) -> Option<std::time::Instant> {
        self.since
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Everything buffered, each partition with its first sequence number.
    pub fn take(&mut self) -> Vec<((TopicIx, i32), i32, Vec<OutRecord>)> {
        self.bytes = 0;
        self.since = None;
        std::mem::take(&mut self.pending)
            .into_iter()
            .map(|(k, v)| (k, self.sequences.get(&k).copied().unwrap_or(0), v))
            .collect()
    }

    /// The broker has `n` records of this partition from `base` on.
    pub fn written(&mut self, key: (TopicIx, i32), base: i32, n: usize) {
        self.sequences.insert(key, base.wrapping_add(n as i32));
    }

    /// A new producer epoch numbers every partition from 0 again.
    pub fn new_epoch(&mut self) {
        self.sequences.clear();
    }

    /// Drop what is buffered (an aborted transaction).
    pub fn clear(&mut self) {
        self.pending.clear();
        self.bytes = 0;
        self.since = None;
    }
}

/// The output partition of a result: by its key (murmur2, as Kafka's
/// producers), else the partition of the record it came from (modulo the
/// topic's partitions), so one input partition's results keep their order.
pub fn partition_of(key: Option<&[u8]>, input_partition: i32, partitions: usize) -> i32 {
    let n = partitions.max(1);
    match key {
        Some(k) => crate::produce::partition_for_key(k, n) as i32,
        None => input_partition.rem_euclid(n as i32),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn rec(v: &str) -> OutRecord {
        OutRecord {
            key: None,
            value: Some(Bytes::from(v.to_string())),
            headers: vec![],
        }
    }

    #[test]
    fn codes_are_classified() {
        assert_eq!(classify(0, "EndTxn"), TxnClass::Ok);
        assert_eq!(classify(DUPLICATE_SEQUENCE_NUMBER, "Produce"), TxnClass::Ok);
        assert_eq!(classify(NOT_COORDINATOR, "EndTxn"), TxnClass::Moved);
        assert_eq!(
            classify(CONCURRENT_TRANSACTIONS, "InitProducerId"),
            TxnClass::Retry
        );
        assert_eq!(
            classify(ILLEGAL_GENERATION, "TxnOffsetCommit"),
            TxnClass::GroupMoved
        );
        assert_eq!(classify(PRODUCER_FENCED, "Produce"), TxnClass::Fenced);
        assert_eq!(classify(INVALID_PRODUCER_EPOCH, "EndTxn"), TxnClass::Fenced);
        assert_eq!(classify(45, "Produce"), TxnClass::Abortable);
        let TxnClass::Fatal(m) = classify(TOPIC_AUTHORIZATION_FAILED, "Produce") else {
            panic!()
        };
        assert!(m.contains("--output-topic") && m.contains("Produce"), "{m}");
    }

    #[test]
    fn the_protocol_follows_the_feature_and_the_versions() {
        assert_eq!(TxnProtocol::of(Some(2), Some(12), Some(5)), TxnProtocol::V2);
        assert_eq!(TxnProtocol::of(Some(1), Some(12), Some(5)), TxnProtocol::V1);
        assert_eq!(TxnProtocol::of(None, Some(12), Some(5)), TxnProtocol::V1);
        assert_eq!(TxnProtocol::of(Some(2), Some(11), Some(5)), TxnProtocol::V1);
        assert!(TxnProtocol::V1.adds_explicitly() && !TxnProtocol::V2.adds_explicitly());
    }

    #[test]
    fn sequences_continue_per_partition_and_restart_with_an_epoch() {
        let mut b = Buffer::default();
        b.push(OUTPUT, 0, rec("a"));
        b.push(OUTPUT, 0, rec("b"));
        b.push(DEAD_LETTER, 0, rec("c"));
        assert!(b.bytes() > 0);
        let taken = b.take();
        assert_eq!(taken.len(), 2);
        assert_eq!(taken[0].1, 0);
        assert_eq!(b.bytes(), 0);
        b.written((OUTPUT, 0), 0, 2);
        b.push(OUTPUT, 0, rec("d"));
        assert_eq!(b.take()[0].1, 2);
        b.written((OUTPUT, 0), 2, 1);
        b.new_epoch();
        b.push(OUTPUT, 0, rec("e"));
        assert_eq!(b.take()[0].1, 0);
    }

    #[test]
    fn results_follow_their_key_or_their_input_partition() {
        assert_eq!(partition_of(None, 5, 4), 1);
        assert_eq!(partition_of(None, 1, 4), 1);
        let k = partition_of(Some(b"user-1"), 0, 4);
        assert_eq!(k, partition_of(Some(b"user-1"), 3, 4));
        assert!((0..4).contains(&k));
    }
}
