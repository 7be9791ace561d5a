//! The task of the worker that produces the copies verdicts call for
//! (rskafka, acks=all): dead-letter copies (`--dead-letter-topic`) and
//! retry copies (`--retry-delays`), and says when the broker has
//! acknowledged each. Only then does the worker count the original record
//! as done and let its offset be committed; a crash before that delivers
//! the original again, so the copy is written at least once and nothing is
//! lost.
//!
//! A copy keeps the original's key and value and headers, and adds headers
//! that say where it came from and why ([`copy_of`]). It goes to the
//! partition of its topic with the original's partition number (modulo the
//! topic's partitions): the member that owns a partition of the topic also
//! owns that partition of each retry topic, so a retry comes back to the
//! worker that read the original (while the assignment holds). Copies
//! waiting together go in one request per target partition. A broker that
//! cannot be reached is waited for (the record stays uncommitted); a
//! refusal that retrying cannot fix (no rights, the topic is gone) ends the
//! worker with a message naming the flag.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use rskafka::client::error::{Error as ClientError, ProtocolError};
use rskafka::client::partition::{Compression, PartitionClient, UnknownTopicHandling};
use tokio::sync::mpsc;
use tracing::warn;

use super::verdicts::{Dest, Reroute};
use crate::config::ConnectConfig;
use crate::record::{Lane, Record};

/// Copies written in one request at most.
const BATCH: usize = 500;
/// Pauses between attempts to produce a copy: 200 ms doubling to 10 s.
const PAUSE: crate::backoff::Doubling =
    crate::backoff::Doubling::new(Duration::from_millis(200), Duration::from_secs(10));

/// What the task tells the worker.
#[derive(Debug)]
pub enum Outcome {
    /// The broker acknowledged the copy (to this topic) of the record at
    /// (lane, partition, offset).
    Written(Dest, Lane, i32, i64),
    /// Retrying cannot help: the worker must stop (exit 2) with this message.
    Fatal(String),
}

/// Where copies go: the topics, and what the worker reads and is called.
#[derive(Debug, Clone)]
pub struct Targets {
    pub dead_letter: Option<String>,
    /// `--retry-delays`: each retry topic and its delay, in order.
    pub retry: Vec<(String, Duration)>,
    /// The topic the worker reads (`-t`).
    pub source: String,
    pub group: String,
}

impl Targets {
    fn topic(&self, to: Dest) -> Option<&str> {
        match to {
            Dest::DeadLetter => self.dead_letter.as_deref(),
            Dest::Retry(i) => self.retry.get(usize::from(i)).map(|r| r.0.as_str()),
        }
    }

    /// The flag that names `to`'s topic, for messages.
    fn flag(&self, to: Dest) -> String {
        match to {
            Dest::DeadLetter => format!(
                "--dead-letter-topic '{}'",
                self.dead_letter.as_deref().unwrap_or_default()
            ),
            Dest::Retry(_) => format!(
                "the retry topic '{}' of --retry-delays",
                self.topic(to).unwrap_or_default()
            ),
        }
    }
}

/// The worker's end of the task.
pub struct Copies {
    tx: mpsc::UnboundedSender<Reroute>,
    pub outcomes: mpsc::UnboundedReceiver<Outcome>,
    task: tokio::task::JoinHandle<()>,
}

impl Copies {
    pub fn start(connect: ConnectConfig, targets: Targets) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let (out_tx, outcomes) = mpsc::unbounded_channel();
        let task = tokio::spawn(run(connect, targets, rx, out_tx));
        Copies { tx, outcomes, task }
    }

    pub fn send(&self, d: Reroute) {
        let _ = self.tx.send(d);
    }
}

impl Drop for Copies {
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
/// A retry copy: when it is due (milliseconds since the Unix epoch).
pub const HEADER_DUE: &str = "kswarm.retry.due";

/// The deliveries a record of a retry topic had before (its
/// `kswarm.attempts` header; 0 for a record of the topic itself).
pub fn attempts_before(r: &Record) -> u32 {
    if r.lane == Lane::Main {
        return 0;
    }
    header(r, HEADER_ATTEMPTS)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// When a record of a retry topic is due, in milliseconds since the Unix
/// epoch: its `kswarm.retry.due` header, else its timestamp plus `delay`.
pub fn due_ms(r: &Record, delay: Duration) -> i64 {
    header(r, HEADER_DUE)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| r.timestamp_ms.saturating_add(delay.as_millis() as i64))
}

fn header(r: &Record, name: &str) -> Option<String> {
    let (_, v) = r.headers.iter().rev().find(|(k, _)| k == name)?;
    Some(String::from_utf8_lossy(v.as_deref()?).into_owned())
}

/// The copy of a record. rskafka keeps headers in a map: of an original
/// header name given twice the last value stays, and a null header value
/// becomes empty. A record read from a retry topic keeps the headers that
/// name its original (topic, partition, offset, timestamp); `due_ms`: a
/// retry copy's due time.
pub fn copy_of(
    d: &Reroute,
    source: &str,
    group: &str,
    due_ms: Option<i64>,
) -> rskafka::record::Record {
    let r = &d.record;
    let mut headers: BTreeMap<String, Vec<u8>> = r
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), v.as_deref().unwrap_or_default().to_vec()))
        .collect();
    if r.lane == Lane::Main {
        for (k, v) in [
            (HEADER_TOPIC, source.to_string()),
            (HEADER_PARTITION, r.partition.to_string()),
            (HEADER_OFFSET, r.offset.to_string()),
            (HEADER_TIMESTAMP, r.timestamp_ms.to_string()),
        ] {
            headers.insert(k.to_string(), v.into_bytes());
        }
    }
    for (k, v) in [
        (HEADER_GROUP, group.to_string()),
        (HEADER_REASON, d.reason.clone()),
        (HEADER_ATTEMPTS, d.attempts.to_string()),
    ] {
        headers.insert(k.to_string(), v.into_bytes());
    }
    match due_ms {
        Some(due) => headers.insert(HEADER_DUE.to_string(), due.to_string().into_bytes()),
        None => headers.remove(HEADER_DUE),
    };
    rskafka::record::Record {
        key: r.key.as_ref().map(|k| k.to_vec()),
        value: r.value.as_ref().map(|v| v.to_vec()),
        headers,
        timestamp: crate::produce::now(),
    }
}

async fn run(
    connect: ConnectConfig,
    targets: Targets,
    mut rx: mpsc::UnboundedReceiver<Reroute>,
    out: mpsc::UnboundedSender<Outcome>,
) {
    let mut producers: HashMap<Dest, Producer> = HashMap::new();
    // Copies that wait are written together: a burst of poison records
    // (a handler that rejects everything) costs one request per target
    // partition and batch.
    let mut batch: Vec<Reroute> = Vec::new();
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        let mut groups: BTreeMap<(Dest, i32), Vec<Reroute>> = BTreeMap::new();
        for d in batch.drain(..) {
            groups
                .entry((d.to, d.record.partition))
                .or_default()
                .push(d);
        }
        for ((to, partition), copies) in groups {
            let Some(topic) = targets.topic(to) else {
                let _ = out.send(Outcome::Fatal(format!(
                    "a copy for {} has no topic (kswarm bug); nothing was skipped",
                    targets.flag(to)
                )));
                return;
            };
            let producer = producers.entry(to).or_insert_with(|| Producer {
                connect: connect.clone(),
                topic: topic.to_string(),
                flag: targets.flag(to),
                client_id: match to {
                    Dest::DeadLetter => format!("kswarm-dead-letter-{}", targets.group),
                    Dest::Retry(_) => format!("kswarm-retry-{}", targets.group),
                },
                client: None,
                partitions: HashMap::new(),
                count: 0,
            });
            let due = match to {
                Dest::DeadLetter => None,
                Dest::Retry(i) => Some(targets.retry[usize::from(i)].1),
            };
            if let Err(m) = write(producer, partition, &copies, &targets, due).await {
                let _ = out.send(Outcome::Fatal(m));
                return;
            }
            for d in copies {
                let _ = out.send(Outcome::Written(
                    to,
                    d.record.lane,
                    d.record.partition,
                    d.record.offset,
                ));
            }
        }
    }
}

/// Write copies of records of one partition, trying again until the broker
/// takes them; Err: retrying cannot help. `delay`: a retry topic's delay.
async fn write(
    producer: &mut Producer,
    partition: i32,
    copies: &[Reroute],
    targets: &Targets,
    delay: Option<Duration>,
) -> Result<(), String> {
    let mut attempt = 0;
    loop {
        let due = delay.map(|d| crate::produce::now().timestamp_millis() + d.as_millis() as i64);
        let records: Vec<_> = copies
            .iter()
            .map(|d| copy_of(d, &targets.source, &targets.group, due))
            .collect();
        match producer.produce(partition, records).await {
            Ok(()) => return Ok(()),
            Err(Failure::Fatal(m)) => return Err(m),
            Err(Failure::Again(m)) => {
                warn!(
                    "{}: could not write the copies of {} record(s) from partition {} offset {} \
                     on ({m}); trying again (their offsets stay uncommitted meanwhile)",
                    producer.flag,
                    copies.len(),
                    partition,
                    copies[0].record.offset
                );
                producer.client = None;
                producer.partitions.clear();
                tokio::time::sleep(PAUSE.delay(attempt)).await;
                attempt += 1;
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
    /// The flag that names the topic, for messages.
    flag: String,
    /// `kswarm-dead-letter-GROUP` or `kswarm-retry-GROUP`: a client id of
    /// its own, for quotas and broker logs.
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
                    "{} does not exist (any more); kswarm run creates it at start, so it was \
                     deleted meanwhile: create it again",
                    self.flag
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
                "{}: {what} ({e}); nothing was skipped: the record stays uncommitted and is \
                 delivered again after the restart",
                self.flag
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
        let d = Reroute {
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
                lane: crate::record::Lane::Main,
            },
            reason: "bad json".into(),
            attempts: 2,
            to: Dest::DeadLetter,
        };
        let c = copy_of(&d, "logs", "siem", None);
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

    #[test]
    fn a_retry_copy_of_a_retried_record_keeps_its_original_and_counts_on() {
        let first = Reroute {
            record: Record {
                partition: 1,
                offset: 7,
                timestamp_ms: 5,
                key: None,
                value: Some(Bytes::from_static(b"v")),
                headers: vec![],
                delivery_count: None,
                lane: Lane::Main,
            },
            reason: "retry".into(),
            attempts: 1,
            to: Dest::Retry(0),
        };
        let c = copy_of(&first, "logs", "siem", Some(1_000));
        // As the worker reads it back from the first retry topic.
        let again = Record {
            partition: 1,
            offset: 0,
            timestamp_ms: 900,
            key: None,
            value: Some(Bytes::from_static(b"v")),
            headers: c
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), Some(Bytes::from(v.clone()))))
                .collect(),
            delivery_count: None,
            lane: Lane::Retry(0),
        };
        assert_eq!(attempts_before(&again), 1);
        assert_eq!(due_ms(&again, Duration::from_secs(1)), 1_000);
        let second = Reroute {
            record: again,
            reason: "retry".into(),
            attempts: 2,
            to: Dest::Retry(1),
        };
        let c2 = copy_of(&second, "logs-retry-1s", "siem", Some(4_000));
        let h = |k: &str| String::from_utf8(c2.headers[k].clone()).unwrap();
        assert_eq!(
            h(HEADER_TOPIC),
            "logs",
            "the original topic, not the retry topic"
        );
        assert_eq!(h(HEADER_OFFSET), "7");
        assert_eq!(h(HEADER_ATTEMPTS), "2");
        assert_eq!(h(HEADER_DUE), "4000");
        let dead = Reroute {
            to: Dest::DeadLetter,
            ..second
        };
        assert!(!copy_of(&dead, "logs", "siem", None)
            .headers
            .contains_key(HEADER_DUE));
        // A record of the topic itself has had no attempts; without a due
        // header a retry record is due at its timestamp plus the delay.
        let plain = Record {
            lane: Lane::Retry(0),
            headers: vec![],
            ..first.record.clone()
        };
        assert_eq!(attempts_before(&first.record), 0);
        assert_eq!(due_ms(&plain, Duration::from_secs(3)), 3_005);
    }
}
