//! `--dead-letter-topic`: a task of the worker that produces dead-letter
//! copies (rskafka, acks=all) and says when the broker has acknowledged
//! each. Only then does the worker count the original record as done and
//! let its offset be committed; a crash before that delivers the original
//! again, so the copy is written at least once and nothing is lost.
//!
//! A copy keeps the original's key and value and headers, and adds headers
//! that say where it came from and why ([`copy_of`]). Copies waiting
//! together go in one request, to the dead-letter partition of the first
//! one's original partition (modulo the dead-letter topic's partitions). A broker that
//! cannot be reached is waited for (the record stays uncommitted); a refusal
//! that retrying cannot fix (no rights, the topic is gone) ends the worker
//! with a message naming the flag.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use rskafka::client::error::{Error as ClientError, ProtocolError};
use rskafka::client::partition::{Compression, PartitionClient, UnknownTopicHandling};
use tokio::sync::mpsc;
use tracing::warn;

use super::verdicts::DeadLetter;
use crate::config::ConnectConfig;

/// Copies written in one request at most.
const BATCH: usize = 500;
/// Pauses between attempts to produce a copy: 200 ms doubling to 10 s.
const PAUSE: crate::backoff::Doubling =
    crate::backoff::Doubling::new(Duration::from_millis(200), Duration::from_secs(10));

/// What the task tells the worker.
#[derive(Debug)]
pub enum Outcome {
    /// The broker acknowledged the copy of the record at (partition, offset).
    Written(i32, i64),
    /// Retrying cannot help: the worker must stop (exit 2) with this message.
    Fatal(String),
}

/// The worker's end of the task.
pub struct DeadLetters {
    tx: mpsc::UnboundedSender<DeadLetter>,
    pub outcomes: mpsc::UnboundedReceiver<Outcome>,
    task: tokio::task::JoinHandle<()>,
}

impl DeadLetters {
    pub fn start(connect: ConnectConfig, topic: String, source: String, group: String) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let (out_tx, outcomes) = mpsc::unbounded_channel();
        let task = tokio::spawn(run(connect, topic, source, group, rx, out_tx));
        DeadLetters { tx, outcomes, task }
    }

    pub fn send(&self, d: DeadLetter) {
        let _ = self.tx.send(d);
    }
}

impl Drop for DeadLetters {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The headers a copy carries on top of the original's.
pub const HEADER_TOPIC: &str = "kswarm.original.topic";
pub const HEADER_PARTITION: &str = "kswarm.original.partition";
pub const HEADER_OFFSET: &str = "kswarm.original.offset";
pub const HEADER_TIMESTAMP: &str = "kswarm.original.timestamp";
pub const HEADER_GROUP: &str = "kswarm.group";
pub const HEADER_REASON: &str = "kswarm.reason";
pub const HEADER_ATTEMPTS: &str = "kswarm.attempts";

/// The dead-letter copy of a record. rskafka keeps headers in a map: of an
/// original header name given twice the last value stays, and a null header
/// value becomes empty.
pub fn copy_of(d: &DeadLetter, source: &str, group: &str) -> rskafka::record::Record {
    let r = &d.record;
    let mut headers: BTreeMap<String, Vec<u8>> = r
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), v.as_deref().unwrap_or_default().to_vec()))
        .collect();
    for (k, v) in [
        (HEADER_TOPIC, source.to_string()),
        (HEADER_PARTITION, r.partition.to_string()),
        (HEADER_OFFSET, r.offset.to_string()),
        (HEADER_TIMESTAMP, r.timestamp_ms.to_string()),
        (HEADER_GROUP, group.to_string()),
        (HEADER_REASON, d.reason.clone()),
        (HEADER_ATTEMPTS, d.attempts.to_string()),
    ] {
        headers.insert(k.to_string(), v.into_bytes());
    }
    rskafka::record::Record {
        key: r.key.as_ref().map(|k| k.to_vec()),
        value: r.value.as_ref().map(|v| v.to_vec()),
        headers,
        timestamp: crate::produce::now(),
    }
}

async fn run(
    connect: ConnectConfig,
    topic: String,
    source: String,
    group: String,
    mut rx: mpsc::UnboundedReceiver<DeadLetter>,
    out: mpsc::UnboundedSender<Outcome>,
) {
    let mut producer = Producer {
        connect,
        topic,
        client_id: format!("kswarm-dead-letter-{group}"),
        client: None,
        partitions: HashMap::new(),
        count: 0,
    };
    // Copies that wait are written together: a burst of poison records
    // (a handler that rejects everything) costs one request per batch.
    let mut batch: Vec<DeadLetter> = Vec::new();
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        let copies: Vec<_> = batch.iter().map(|d| copy_of(d, &source, &group)).collect();
        let mut attempt = 0;
        loop {
            match producer
                .produce(batch[0].record.partition, copies.clone())
                .await
            {
                Ok(()) => {
                    for d in batch.drain(..) {
                        let _ = out.send(Outcome::Written(d.record.partition, d.record.offset));
                    }
                    break;
                }
                Err(Failure::Fatal(m)) => {
                    let _ = out.send(Outcome::Fatal(m));
                    return;
                }
                Err(Failure::Again(m)) => {
                    warn!(
                        "--dead-letter-topic '{}': could not write the copies of {} record(s) \
                         from partition {} offset {} on ({m}); trying again (their offsets stay \
                         uncommitted meanwhile)",
                        producer.topic,
                        batch.len(),
                        batch[0].record.partition,
                        batch[0].record.offset
                    );
                    producer.client = None;
                    producer.partitions.clear();
                    tokio::time::sleep(PAUSE.delay(attempt)).await;
                    attempt += 1;
                }
            }
        }
    }
}

enum Failure {
    Again(String),
    Fatal(String),
}

struct Producer {
    connect: ConnectConfig,
    topic: String,
    /// `kswarm-dead-letter-GROUP`: a client id of its own, for quotas and
    /// broker logs.
    client_id: String,
    client: Option<rskafka::client::Client>,
    partitions: HashMap<i32, PartitionClient>,
    count: i32,
}

impl Producer {
    async fn produce(
        &mut self,
        original_partition: i32,
        copies: Vec<rskafka::record::Record>,
    ) -> Result<(), Failure> {
        if self.client.is_none() {
            let client = crate::connect::connect_as(&self.connect, &self.client_id)
                .await
                .map_err(|e| Failure::Again(format!("{e:#}")))?;
            let topics = client
                .list_topics()
                .await
                .map_err(|e| Failure::Again(e.to_string()))?;
            let Some(t) = topics.into_iter().find(|t| t.name == self.topic) else {
                return Err(Failure::Fatal(format!(
                    "--dead-letter-topic '{}' does not exist (any more); kswarm run creates it \
                     at start, so it was deleted meanwhile: create it again",
                    self.topic
                )));
            };
            self.count = t.partitions.len().max(1) as i32;
            self.client = Some(client);
        }
        let p = original_partition.rem_euclid(self.count);
        if !self.partitions.contains_key(&p) {
            let client = self.client.as_ref().expect("connected above");
            let pc = tokio::time::timeout(
                self.connect.connect_timeout,
                client.partition_client(self.topic.clone(), p, UnknownTopicHandling::Error),
            )
            .await
            .map_err(|_| Failure::Again("no answer within --connect-timeout".into()))?
            .map_err(|e| self.classify(e))?;
            self.partitions.insert(p, pc);
        }
        let pc = &self.partitions[&p];
        let produced = tokio::time::timeout(
            self.connect.connect_timeout.max(Duration::from_secs(10)),
            pc.produce(copies, Compression::NoCompression),
        )
        .await
        .map_err(|_| Failure::Again("no acknowledgement from the broker in time".into()))?;
        produced.map(|_| ()).map_err(|e| self.classify(e))
    }

    fn classify(&self, e: ClientError) -> Failure {
        let fatal = |what: &str| {
            Failure::Fatal(format!(
                "--dead-letter-topic '{}': {what} ({e}); nothing was skipped: the record stays \
                 uncommitted and is delivered again after the restart",
                self.topic
            ))
        };
        match &e {
            ClientError::ServerError {
                protocol_error: ProtocolError::TopicAuthorizationFailed,
                ..
            } => fatal(
                "this client may not write to it: grant WRITE on the topic to kswarm's principal",
            ),
            ClientError::ServerError {
                protocol_error: ProtocolError::MessageTooLarge | ProtocolError::RecordListTooLarge,
                ..
            } => fatal("the record is larger than the topic accepts: raise its max.message.bytes"),
            ClientError::ServerError {
                protocol_error: ProtocolError::UnknownTopicOrPartition,
                ..
            } => fatal("the topic or partition does not exist any more: create it again"),
            _ => Failure::Again(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Record;
    use bytes::Bytes;

    #[test]
    fn a_copy_says_where_it_came_from_and_why() {
        let d = DeadLetter {
            record: Record {
                partition: 4,
                offset: 99,
                timestamp_ms: 1234,
                key: Some(Bytes::from_static(b"k")),
                value: Some(Bytes::from_static(b"v")),
                headers: vec![
                    ("trace".into(), Some(Bytes::from_static(b"t1"))),
                    ("null".into(), None),
                ],
                delivery_count: None,
            },
            reason: "bad json".into(),
            attempts: 2,
        };
        let c = copy_of(&d, "logs", "siem");
        assert_eq!(c.key.as_deref(), Some(&b"k"[..]));
        assert_eq!(c.value.as_deref(), Some(&b"v"[..]));
        let h = |k: &str| String::from_utf8(c.headers[k].clone()).unwrap();
        assert_eq!(h("trace"), "t1");
        assert_eq!(h("null"), "");
        assert_eq!(h(HEADER_TOPIC), "logs");
        assert_eq!(h(HEADER_PARTITION), "4");
        assert_eq!(h(HEADER_OFFSET), "99");
        assert_eq!(h(HEADER_TIMESTAMP), "1234");
        assert_eq!(h(HEADER_GROUP), "siem");
        assert_eq!(h(HEADER_REASON), "bad json");
        assert_eq!(h(HEADER_ATTEMPTS), "2");
    }
}
