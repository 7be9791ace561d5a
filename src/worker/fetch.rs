//! Fetching: one task per owned partition reads its records from the
//! partition's leader (rskafka, record batches decoded as slices of the
//! fetched bytes) and queues them, pipelined ahead of the handler by a
//! bounded channel: a slow handler slows fetching instead of growing memory.

use std::sync::Arc;
use std::time::Duration;

use rskafka::client::partition::{OffsetAt, PartitionClient};
use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::backoff::Doubling;
use crate::config::StartFrom;
use crate::record::Record;
use crate::wire::records::{decode_fetched, AbortedTxn};

/// Fetched batches buffered per worker ahead of the handler (pipelining).
pub const FETCH_QUEUE: usize = 2;
/// The largest fetch we grow to when a single record batch is larger than
/// the fetch asked for and the broker cuts it off (brokers before KIP-74).
const MAX_FETCH_BYTES: i32 = 64 * 1024 * 1024;
/// Fetch retries (a failed fetch, a corrupt batch): 100 ms doubling to 2 s.
const FETCH_PAUSE: Doubling = Doubling::new(Duration::from_millis(100), Duration::from_secs(2));

/// The records of one fetch of one partition, in offset order.
pub struct FetchedBatch {
    pub records: Vec<Record>,
}

/// Fetch one partition from `offset` on, pipelined ahead of the handler by the
/// bounded channel. Ends when the receiver is gone or the task is aborted.
/// Each answer's high watermark goes to `high_watermark` (the metrics' lag).
pub async fn fetch_loop(
    pc: Arc<PartitionClient>,
    mut offset: i64,
    tx: mpsc::Sender<FetchedBatch>,
    max_bytes: i32,
    wait_ms: i32,
    from: StartFrom,
    high_watermark: Arc<std::sync::atomic::AtomicI64>,
) {
    use rskafka::client::error::{Error as KError, ProtocolError};
    let partition = pc.partition();
    let mut failures = 0u32;
    let mut limit = max_bytes;
    loop {
        match pc.fetch_raw(offset, 1..limit, wait_ms).await {
            Ok((raw, hw, aborted)) => {
                high_watermark.store(hw, std::sync::atomic::Ordering::Relaxed);
                tracing::trace!(partition, offset, limit, bytes = raw.len(), "fetched");
                failures = 0;
                let mut records = Vec::new();
                let aborted = aborted
                    .into_iter()
                    .map(|(producer_id, first_offset)| AbortedTxn {
                        producer_id,
                        first_offset,
                    })
                    .collect();
                let decoded = match decode_fetched(partition, raw, offset, aborted, &mut records) {
                    Ok(d) => d,
                    Err(e) => {
                        // A corrupt batch does not heal by itself; keep trying
                        // (the broker may serve it again from another replica)
                        // and say so, rather than skip records.
                        let pause = FETCH_PAUSE.delay(failures);
                        failures += 1;
                        warn!(partition, "{e}; fetching it again in {pause:?}");
                        tokio::time::sleep(pause).await;
                        continue;
                    }
                };
                if decoded.only_partial {
                    let grown = limit.saturating_mul(2).min(MAX_FETCH_BYTES);
                    if grown == limit {
                        warn!(
                            partition,
                            "a record batch at offset {offset} is larger than {limit} bytes; cannot fetch it"
                        );
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    } else {
                        debug!(partition, "a record batch at offset {offset} is larger than {limit} bytes; fetching up to {grown}");
                        limit = grown;
                    }
                    continue;
                }
                limit = max_bytes;
                if let Some(next) = decoded.next_offset {
                    offset = offset.max(next);
                }
                if records.is_empty() {
                    continue;
                }
                if tx.send(FetchedBatch { records }).await.is_err() {
                    return;
                }
            }
            Err(KError::ServerError {
                protocol_error: ProtocolError::OffsetOutOfRange,
                ..
            }) => {
                let at = match from {
                    StartFrom::Earliest => OffsetAt::Earliest,
                    StartFrom::Latest => OffsetAt::Latest,
                };
                match pc.get_offset(at).await {
                    Ok(o) => {
                        warn!(
                            partition,
                            "offset {offset} is out of range; resetting to {o} (--from)"
                        );
                        offset = o;
                    }
                    Err(e) => {
                        warn!(
                            partition,
                            "offset {offset} out of range and reset failed: {e}"
                        );
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
            }
            Err(e) => {
                let pause = FETCH_PAUSE.delay(failures);
                failures += 1;
                warn!(partition, "fetch failed ({e}); retrying in {pause:?}");
                tokio::time::sleep(pause).await;
            }
        }
    }
}
