//! One Kafka record as the worker hands it to a handler.

use bytes::Bytes;

/// A fetched record. Key, value and header values are slices of the fetched
/// bytes (no copy per record); its topic is the worker's topic, or one of
/// its retry topics ([`Lane`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    /// Milliseconds since the Unix epoch (create or log-append time, as the broker says).
    pub timestamp_ms: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    /// In record order; a header value may be null.
    pub headers: Vec<(String, Option<Bytes>)>,
    /// Share groups only: how many times the record has gone to a handler
    /// (1 the first time; more after a release, a lock that ran out, a
    /// crashed member, or a `retry` the worker held and handed on again: the
    /// broker's count plus the worker's own re-deliveries). None under the
    /// classic and consumer protocols.
    pub delivery_count: Option<u16>,
    /// Which of the worker's topics it was read from.
    pub lane: Lane,
}

/// The topics a worker reads: the topic (`-t`), and with `--retry-delays`
/// the retry topic of each delay, in order. A partition of a retry topic
/// belongs to the member that owns the topic's partition of the same
/// number, so retry partitions move with the group's assignment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Lane {
    #[default]
    Main,
    /// The retry topic of `--retry-delays`' delay at this index.
    Retry(u8),
}

/// A record kswarm writes (`--output-topic`: a handler's result, or a
/// dead-letter copy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutRecord {
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<(String, Option<Bytes>)>,
}

impl OutRecord {
    /// Bytes it takes, about (for batch sizes and messages).
    pub fn size(&self) -> usize {
        let h: usize = self
            .headers
            .iter()
            .map(|(k, v)| k.len() + v.as_ref().map_or(0, Bytes::len) + 8)
            .sum();
        self.key.as_ref().map_or(0, Bytes::len) + self.value.as_ref().map_or(0, Bytes::len) + h + 24
    }
}
