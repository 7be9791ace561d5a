//! `kswarm produce`: lines on stdin become records.
//!
//! A reader thread cuts stdin into lines (any bytes; only the trailing `\n` is
//! stripped) and hands them over in chunks. The async side batches records per
//! partition (up to --batch-size records, or what --linger allows) and gives
//! each partition its own task, so batches to different partitions are in
//! flight at once while one partition's batches stay in order.
//!
//! Partitioning: records without a key go round-robin, one batch per
//! partition in turn (a "sticky" partitioner). Keyed records go to
//! `(murmur2(key) & 0x7fffffff) % partitions`, the Java client's default
//! partitioner (librdkafka's `murmur2_random`), so a key lands on the same
//! partition whichever of these clients wrote it.

use std::io::{BufRead, BufReader};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context};
use rskafka::chrono::{DateTime, Utc};
use rskafka::client::partition::{Compression, PartitionClient, UnknownTopicHandling};
use rskafka::record::Record;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::cli::ProduceArgs;
use crate::config::{
    parse_count, parse_duration, validate_topic, Checked, ConnectConfig, UsageError,
};

/// Payload bytes per produce request at most (brokers refuse requests over
/// 1 MiB by default); a single larger record still goes alone.
const MAX_BATCH_BYTES: usize = 768 * 1024;
/// Bytes a record costs beyond its key and value, roughly.
const RECORD_OVERHEAD: usize = 24;
/// Lines per hand-over from the reader thread at most.
const CHUNK_LINES: usize = 1024;
/// Batches queued per partition before the reader waits.
const QUEUE_PER_PARTITION: usize = 4;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyMode {
    None,
    Fixed(Vec<u8>),
    /// Split each line at the first SEP: key before, value after. A line
    /// without SEP has no key.
    Separator(Vec<u8>),
}

/// Validated `kswarm produce` settings.
#[derive(Debug, Clone)]
pub struct ProduceConfig {
    pub connect: ConnectConfig,
    pub topic: String,
    pub key: KeyMode,
    pub compression: Compression,
    pub linger: Duration,
    pub batch_size: usize,
}

impl ProduceConfig {
    pub fn from_args(a: &ProduceArgs) -> Checked<Self> {
        let key = match (&a.key, &a.key_separator) {
            (Some(_), Some(_)) => {
                return Err(UsageError(
                    "--key and --key-separator cannot be used together; pick one".into(),
                ))
            }
            (Some(k), None) => KeyMode::Fixed(k.as_bytes().to_vec()),
            (None, Some(s)) if s.is_empty() => {
                return Err(UsageError(
                    "--key-separator: the separator is empty; give one or more characters, e.g. --key-separator ':'".into(),
                ))
            }
            (None, Some(s)) => KeyMode::Separator(s.as_bytes().to_vec()),
            (None, None) => KeyMode::None,
        };
        Ok(Self {
            connect: ConnectConfig::from_args(&a.connect)?,
            topic: validate_topic(&a.topic)?,
            key,
            compression: parse_compression(&a.compression)?,
            linger: parse_duration("--linger", &a.linger)?,
            batch_size: parse_count("--batch-size", &a.batch_size, 1, 100_000)? as usize,
        })
    }
}

pub fn parse_compression(raw: &str) -> Checked<Compression> {
    Ok(match raw.trim().to_ascii_lowercase().as_str() {
        "none" => Compression::NoCompression,
        "gzip" => Compression::Gzip,
        "lz4" => Compression::Lz4,
        "snappy" => Compression::Snappy,
        "zstd" => Compression::Zstd,
        _ => {
            return Err(UsageError(format!(
                "--compression: '{raw}' is not one of none, gzip, lz4, snappy, zstd"
            )))
        }
    })
}

/// Kafka's murmur2 (`org.apache.kafka.common.utils.Utils.murmur2`).
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let len = data.len();
    let mut h: u32 = SEED ^ (len as u32);
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let rest = chunks.remainder();
    if rest.len() >= 3 {
        h ^= (rest[2] as u32) << 16;
    }
    if rest.len() >= 2 {
        h ^= (rest[1] as u32) << 8;
    }
    if !rest.is_empty() {
        h ^= rest[0] as u32;
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition (index into the topic's partitions) of a keyed record.
pub fn partition_for_key(key: &[u8], partitions: usize) -> usize {
    ((murmur2(key) & 0x7fff_ffff) as usize) % partitions.max(1)
}

/// Key and value of one line.
pub fn split_line(mode: &KeyMode, mut line: Vec<u8>) -> (Option<Vec<u8>>, Vec<u8>) {
    match mode {
        KeyMode::None => (None, line),
        KeyMode::Fixed(k) => (Some(k.clone()), line),
        KeyMode::Separator(sep) => match find(&line, sep) {
            Some(i) => {
                let value = line.split_off(i + sep.len());
                line.truncate(i);
                (Some(line), value)
            }
            None => (None, line),
        },
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || needle.len() > hay.len() {
        return None;
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

/// `kswarm produce`.
pub fn run(args: &ProduceArgs) -> anyhow::Result<()> {
    let cfg = ProduceConfig::from_args(args)?;
    crate::connect::prepare(&cfg.connect)?;
    let threads = crate::sizing::usable_cores().usable.clamp(1, 4) as usize;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let produced = Arc::new(AtomicU64::new(0));
    let result = rt.block_on(produce(&cfg, Arc::clone(&produced)));
    rt.shutdown_timeout(Duration::from_millis(200));
    let n = produced.load(Ordering::Relaxed);
    match result {
        Ok(()) => {
            eprintln!("produced {n} records to {}", cfg.topic);
            Ok(())
        }
        Err(e) if n == 0 => Err(e),
        Err(e) => {
            eprintln!("produced {n} records to {} before the failure", cfg.topic);
            Err(e)
        }
    }
}

/// Records waiting for one partition.
#[derive(Default)]
struct Pending {
    records: Vec<Record>,
    bytes: usize,
}

async fn produce(cfg: &ProduceConfig, produced: Arc<AtomicU64>) -> anyhow::Result<()> {
    let (client, ids) = topic_partitions(cfg).await?;
    let client = Arc::new(client);

    // One sender task per partition.
    let (err_tx, mut err_rx) = mpsc::unbounded_channel::<anyhow::Error>();
    let mut queues = Vec::with_capacity(ids.len());
    let mut tasks = Vec::with_capacity(ids.len());
    for &id in &ids {
        let (tx, rx) = mpsc::channel::<Vec<Record>>(QUEUE_PER_PARTITION);
        queues.push(tx);
        tasks.push(tokio::spawn(partition_task(
            Arc::clone(&client),
            cfg.clone(),
            id,
            rx,
            Arc::clone(&produced),
            err_tx.clone(),
        )));
    }
    drop(err_tx);

    // The reader thread.
    let (line_tx, mut line_rx) = mpsc::channel::<std::io::Result<Vec<Vec<u8>>>>(8);
    std::thread::Builder::new()
        .name("stdin".into())
        .spawn(move || read_stdin(line_tx))
        .context("starting the stdin reader")?;

    let mut batches = Batcher::new(cfg, queues);
    let failure = loop {
        let step = tokio::select! {
            chunk = line_rx.recv() => match chunk {
                None => break batches.flush_all().await.err(),
                Some(chunk) => batches.take(chunk.context("reading stdin")?).await,
            },
            _ = sleep_until(batches.deadline), if batches.deadline.is_some() => batches.flush_all().await,
            Some(e) = err_rx.recv() => Err(e),
        };
        if let Err(e) = step {
            break Some(e);
        }
    };
    drop(batches);
    for t in tasks {
        let _ = t.await;
    }
    // A task's own error explains a closed queue better than the closed queue does.
    if let Ok(e) = err_rx.try_recv() {
        return Err(e);
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// A client, and the partitions of `--topic` (which must exist).
async fn topic_partitions(
    cfg: &ProduceConfig,
) -> anyhow::Result<(rskafka::client::Client, Vec<i32>)> {
    let client = crate::admin::connect(&cfg.connect).await?;
    let topics = tokio::time::timeout(cfg.connect.connect_timeout, client.list_topics())
        .await
        .map_err(|_| anyhow!("reading topic metadata: no answer within --connect-timeout"))?
        .context("reading topic metadata")?;
    let Some(topic) = topics.into_iter().find(|t| t.name == cfg.topic) else {
        bail!(
            "topic '{}' does not exist; create it first, e.g. kswarm plan -b {} -t {} --apply (add -p N for N partitions)",
            cfg.topic,
            cfg.connect.brokers.join(","),
            cfg.topic
        );
    };
    let ids: Vec<i32> = topic.partitions.into_iter().collect();
    if ids.is_empty() {
        bail!("topic '{}' has no partitions", cfg.topic);
    }
    Ok((client, ids))
}

/// Lines become records, gathered per partition (by key, or round robin)
/// and handed to the partitions' sender tasks by size or after --linger.
struct Batcher<'a> {
    cfg: &'a ProduceConfig,
    queues: Vec<mpsc::Sender<Vec<Record>>>,
    pending: Vec<Pending>,
    /// The partition index keyless records go to now.
    rr: usize,
    /// When the oldest pending record has lingered long enough.
    deadline: Option<Instant>,
}

impl<'a> Batcher<'a> {
    fn new(cfg: &'a ProduceConfig, queues: Vec<mpsc::Sender<Vec<Record>>>) -> Self {
        let pending = (0..queues.len()).map(|_| Pending::default()).collect();
        Self {
            cfg,
            queues,
            pending,
            rr: 0,
            deadline: None,
        }
    }

    /// Take a chunk of stdin lines; full batches go at once.
    async fn take(&mut self, lines: Vec<Vec<u8>>) -> anyhow::Result<()> {
        let ts = now();
        let n = self.pending.len();
        for line in lines {
            let (key, value) = split_line(&self.cfg.key, line);
            let idx = match &key {
                Some(k) => partition_for_key(k, n),
                None => self.rr,
            };
            let p = &mut self.pending[idx];
            p.bytes += key.as_ref().map_or(0, Vec::len) + value.len() + RECORD_OVERHEAD;
            p.records.push(Record {
                key,
                value: Some(value),
                headers: Default::default(),
                timestamp: ts,
            });
            if self.deadline.is_none() {
                self.deadline = Some(Instant::now() + self.cfg.linger);
            }
            if p.records.len() >= self.cfg.batch_size || p.bytes >= MAX_BATCH_BYTES {
                self.dispatch(idx).await?;
            }
        }
        if self.cfg.linger.is_zero() {
            self.flush_all().await?;
        }
        Ok(())
    }

    /// Hand partition index `idx`'s pending records to its sender.
    async fn dispatch(&mut self, idx: usize) -> anyhow::Result<()> {
        let batch = std::mem::take(&mut self.pending[idx]);
        if batch.records.is_empty() {
            return Ok(());
        }
        if idx == self.rr {
            self.rr = (self.rr + 1) % self.pending.len();
        }
        self.queues[idx]
            .send(batch.records)
            .await
            .map_err(|_| anyhow!("the sender for partition index {idx} stopped"))
    }

    /// Hand every partition's pending records to its sender.
    async fn flush_all(&mut self) -> anyhow::Result<()> {
        for idx in 0..self.pending.len() {
            self.dispatch(idx).await?;
        }
        self.deadline = None;
        Ok(())
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

pub(crate) fn now() -> DateTime<Utc> {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// Hand partition `idx`'s records to its task; an unkeyed batch moves the
/// round-robin on to the next partition.
async fn partition_task(
    client: Arc<rskafka::client::Client>,
    cfg: ProduceConfig,
    partition: i32,
    mut rx: mpsc::Receiver<Vec<Record>>,
    produced: Arc<AtomicU64>,
    err_tx: mpsc::UnboundedSender<anyhow::Error>,
) {
    let topic = cfg.topic.clone();
    let pc: PartitionClient = match tokio::time::timeout(
        cfg.connect.connect_timeout,
        client.partition_client(topic.clone(), partition, UnknownTopicHandling::Retry),
    )
    .await
    {
        Ok(Ok(pc)) => pc,
        Ok(Err(e)) => {
            let _ = err_tx.send(anyhow!(
                "connecting to the leader of {topic}/{partition}: {e}"
            ));
            return;
        }
        Err(_) => {
            let _ = err_tx.send(anyhow!(
                "connecting to the leader of {topic}/{partition}: no answer within --connect-timeout"
            ));
            return;
        }
    };
    while let Some(records) = rx.recv().await {
        let n = records.len() as u64;
        if let Err(e) = pc.produce(records, cfg.compression).await {
            let hint = match &e {
                rskafka::client::error::Error::ServerError {
                    protocol_error:
                        rskafka::client::error::ProtocolError::MessageTooLarge
                        | rskafka::client::error::ProtocolError::RecordListTooLarge,
                    ..
                } => "; a record is larger than the broker accepts (message.max.bytes): split it or raise the limit, or lower --batch-size",
                _ => "",
            };
            let _ = err_tx.send(anyhow!(
                "producing to {topic}/{partition} failed: {e}{hint}"
            ));
            return;
        }
        produced.fetch_add(n, Ordering::Relaxed);
    }
}

/// Cut stdin into lines, stripping only the trailing `\n`, and hand them over
/// in chunks: a chunk goes out when it is full or when stdin has nothing more
/// buffered (so a slow writer's lines are not held back).
fn read_stdin(tx: mpsc::Sender<std::io::Result<Vec<Vec<u8>>>>) {
    let stdin = std::io::stdin();
    let mut reader = BufReader::with_capacity(1 << 18, stdin.lock());
    let mut chunk = Vec::with_capacity(CHUNK_LINES);
    loop {
        let mut line = Vec::new();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) => break,
            Ok(_) => {
                if line.last() == Some(&b'\n') {
                    line.pop();
                }
                chunk.push(line);
                if chunk.len() >= CHUNK_LINES || reader.buffer().is_empty() {
                    let full = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK_LINES));
                    if tx.blocking_send(Ok(full)).is_err() {
                        return;
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                let _ = tx.blocking_send(Err(e));
                return;
            }
        }
    }
    if !chunk.is_empty() {
        let _ = tx.blocking_send(Ok(chunk));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_kafka() {
        // Vectors from Kafka's UtilsTest.testMurmur2.
        assert_eq!(murmur2(b"21"), -973932308);
        assert_eq!(murmur2(b"foobar"), -790332482);
        assert_eq!(murmur2(b"a-little-bit-long-string"), -985981536);
        assert_eq!(murmur2(b"a-little-bit-longer-string"), -1486304829);
        assert_eq!(
            murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8"),
            -58897971
        );
        assert_eq!(murmur2(b"abc"), 479470107);
    }

    #[test]
    fn key_partition_is_stable_and_in_range() {
        for n in 1..20 {
            let p = partition_for_key(b"user-42", n);
            assert!(p < n);
            assert_eq!(p, partition_for_key(b"user-42", n));
        }
    }

    #[test]
    fn split_lines() {
        let sep = KeyMode::Separator(b"::".to_vec());
        assert_eq!(
            split_line(&sep, b"k::v::w".to_vec()),
            (Some(b"k".to_vec()), b"v::w".to_vec())
        );
        assert_eq!(
            split_line(&sep, b"no sep".to_vec()),
            (None, b"no sep".to_vec())
        );
        assert_eq!(
            split_line(&sep, b"::v".to_vec()),
            (Some(vec![]), b"v".to_vec())
        );
        let fixed = KeyMode::Fixed(b"k".to_vec());
        assert_eq!(
            split_line(&fixed, vec![0xff, 0]),
            (Some(b"k".to_vec()), vec![0xff, 0])
        );
        assert_eq!(
            split_line(&KeyMode::None, b"x".to_vec()),
            (None, b"x".to_vec())
        );
    }

    #[test]
    fn compression_names() {
        assert_eq!(parse_compression("zstd").unwrap(), Compression::Zstd);
        assert_eq!(
            parse_compression("none").unwrap(),
            Compression::NoCompression
        );
        assert!(parse_compression("brotli")
            .unwrap_err()
            .0
            .contains("--compression"));
    }
}
