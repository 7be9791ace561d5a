//! Everything that speaks the Kafka wire protocol. All kafka-protocol types
//! stay inside this module; the rest of kswarm sees plain types.
//!
//! - [`admin`]: CreatePartitions after an ApiVersions check.
//! - [`conn`]: one framed connection to one broker, with version negotiation.
//! - [`group_msgs`]: typed group requests (FindCoordinator, JoinGroup, ..) returning plain types.
//! - [`consumer_protocol`]: the ConsumerProtocol subscription/assignment bytes.
//! - [`fetch`]: Fetch with sessions (KIP-227), the topic's leaders, ListOffsets: what a worker reads with.
//! - [`share`]: share groups (KIP-932): ShareGroupHeartbeat, ShareFetch, ShareAcknowledge.
//! - [`configs`]: set a group's configs, read a group's or a broker's (IncrementalAlterConfigs, DescribeConfigs).
//! - [`share_admin`]: ShareGroupDescribe, DescribeShareGroupOffsets (for `status` and the metrics).
//! - [`txn`]: transactions (InitProducerId .. EndTxn, transactional Produce) for `--output-topic`.
//! - `decompress` and `lz4`: lz4 and zstd batches decompressed without copies.
//! - [`records`]: the record batches of a fetch answer, decoded without a copy per record.
//! - `script` (tests only): a scripted in-process broker, so that members can be unit-tested.

pub(crate) mod admin;
pub(crate) mod codes;
pub(crate) mod configs;
pub(crate) mod conn;
pub(crate) mod consumer_group;
pub(crate) mod consumer_protocol;
pub(crate) mod decompress;
pub(crate) mod fetch;
pub(crate) mod group_msgs;
mod lz4;
pub(crate) mod records;
pub(crate) mod sasl;
#[cfg(test)]
pub(crate) mod script;
pub(crate) mod share;
pub(crate) mod share_admin;
pub(crate) mod txn;

pub use conn::BrokerConn;
pub use kafka_protocol::messages::ApiKey;

use std::time::Duration;

/// A wire-level failure talking to one broker.
#[derive(thiserror::Error, Debug)]
pub enum WireError {
    /// The broker could not be reached or the connection broke (retriable).
    #[error("broker {addr}: {what}: {source}")]
    Io {
        addr: String,
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// Connecting took longer than the connect timeout (retriable).
    #[error("broker {addr}: no connection within {after:?}")]
    Timeout { addr: String, after: Duration },
    /// The broker lacks a request (or every version of it) that we need.
    #[error("broker {addr} does not support {api:?} versions {ours_min}..={ours_max}{theirs}")]
    Unsupported {
        addr: String,
        api: ApiKey,
        ours_min: i16,
        ours_max: i16,
        theirs: String,
    },
    /// The bytes made no sense (bad frame, wrong correlation id, undecodable body).
    #[error("broker {addr}: protocol error: {msg}")]
    Protocol { addr: String, msg: String },
    /// The TLS handshake failed for a reason that will not pass: an untrusted
    /// or misnamed certificate, a listener that does not speak TLS.
    #[error("{msg}")]
    Tls { addr: String, msg: String },
    /// The broker refused our credentials, or the mechanism: retrying with
    /// the same settings cannot help.
    #[error("broker {addr}: {msg}")]
    Auth { addr: String, msg: String },
    /// Something answers at the address, but not the Kafka protocol (an HTTP
    /// server, a TLS listener spoken to in plaintext, ...).
    #[error("{addr} answered, but not as a Kafka broker ({what}); check -b/--brokers: that port may belong to another service{hint}")]
    NotKafka {
        addr: String,
        what: String,
        hint: &'static str,
    },
}

/// What the first bytes of an answer that is no Kafka frame look like: the
/// size prefix of a real frame is small, so these are someone else's bytes.
pub fn describe_foreign(first: [u8; 4]) -> (String, &'static str) {
    if first[0] == 0x15 && first[1] == 0x03 {
        return (
            "a TLS alert".into(),
            ", or the listener wants TLS (-X security.protocol=SSL)",
        );
    }
    if first.iter().all(|b| b.is_ascii_graphic() || *b == b' ') {
        let text = String::from_utf8_lossy(&first).into_owned();
        return (format!("its first bytes are {text:?}"), "");
    }
    (format!("its first bytes are {first:02x?}"), "")
}

impl WireError {
    /// Transport problems worth a retry on a fresh connection.
    pub fn is_transport(&self) -> bool {
        matches!(
            self,
            WireError::Io { .. } | WireError::Timeout { .. } | WireError::Protocol { .. }
        )
    }
}

pub type WireResult<T> = std::result::Result<T, WireError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn foreign_answers_are_described() {
        assert_eq!(describe_foreign(*b"HTTP").0, "its first bytes are \"HTTP\"");
        let (what, hint) = describe_foreign([0x15, 0x03, 0x03, 0x00]);
        assert!(what.contains("TLS") && hint.contains("security.protocol=SSL"));
        assert!(describe_foreign([0xff, 0, 1, 2]).0.contains("ff"));
    }
}
