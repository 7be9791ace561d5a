//! One Kafka record as the worker hands it to a handler.

use std::sync::Arc;

/// A fetched record. `topic` is shared by all records of a fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub topic: Arc<str>,
    pub partition: i32,
    pub offset: i64,
    /// Milliseconds since the Unix epoch (create or log-append time, as the broker says).
    pub timestamp_ms: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    /// In record order; Kafka allows repeated header keys.
    pub headers: Vec<(String, Vec<u8>)>,
}
