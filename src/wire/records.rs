//! The record batches of a fetch answer -> kswarm's plain [`Record`]s.
//!
//! A Fetch answer (`wire::fetch`) holds each partition's record data as a
//! slice of the answer's buffer; kafka-protocol's
//! [`RecordBatchDecoder`] checks each batch's CRC, decompresses it and decodes
//! its records as slices of the fetched buffer. Keys and values therefore are
//! no copies: they share the fetched bytes until the handler has formatted
//! them.
//!
//! kswarm fetches read_committed, so the broker stops at the last stable
//! offset, but the records of aborted transactions before it are still in the
//! log: the broker lists those transactions beside the records and the client
//! drops them, as Kafka's own consumer does (`AbortedTransactions`).

use bytes::{Buf, Bytes};
use kafka_protocol::records::RecordBatchDecoder;

use crate::record::Record;

/// Base offset (8 bytes) and batch length (4 bytes) open every batch.
const BATCH_PREFIX: usize = 12;

/// What one fetch answer held.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Decoded {
    /// One past the last offset of the last complete batch (the next offset
    /// to fetch), if any batch was complete. Control batches and records
    /// before `from` count here even though they are not handed out.
    pub next_offset: Option<i64>,
    /// The answer ended in a batch cut off by the fetch's byte limit and held
    /// no complete batch before it: fetch again with a larger limit.
    pub only_partial: bool,
}

/// A transaction the broker reported as aborted in a fetch answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AbortedTxn {
    pub producer_id: i64,
    pub first_offset: i64,
}

/// Which producers' transactional batches are aborted at the batch being
/// decoded: a producer joins when a batch reaches its aborted transaction's
/// first offset and leaves at that transaction's abort marker.
struct AbortFilter {
    /// Reported transactions, latest first offset first (popped from the end).
    pending: Vec<AbortedTxn>,
    aborted_producers: Vec<i64>,
}

impl AbortFilter {
    fn new(mut pending: Vec<AbortedTxn>) -> Self {
        pending.sort_by_key(|t| std::cmp::Reverse(t.first_offset));
        AbortFilter {
            pending,
            aborted_producers: Vec::new(),
        }
    }

    /// Whether to drop the batch whose records are `records` (a transactional
    /// data batch of an aborted transaction). Moves the state past the batch.
    fn drops(&mut self, records: &[kafka_protocol::records::Record]) -> bool {
        let Some(first) = records.first() else {
            return false;
        };
        if first.producer_id < 0 {
            return false; // not from an idempotent or transactional producer
        }
        let last_offset = records
            .iter()
            .map(|r| r.offset)
            .max()
            .unwrap_or(first.offset);
        while self
            .pending
            .last()
            .is_some_and(|t| t.first_offset <= last_offset)
        {
            let t = self.pending.pop().expect("checked");
            self.aborted_producers.push(t.producer_id);
        }
        let aborted = self.aborted_producers.contains(&first.producer_id);
        if first.control {
            if is_abort_marker(first) {
                self.aborted_producers.retain(|p| *p != first.producer_id);
            }
            return false; // control records are skipped record by record
        }
        first.transactional && aborted
    }
}

/// A control record's key is a version (int16) and a type (int16): 0 = ABORT,
/// 1 = COMMIT.
fn is_abort_marker(r: &kafka_protocol::records::Record) -> bool {
    r.key
        .as_ref()
        .is_some_and(|k| k.len() >= 4 && k[2..4] == [0, 0])
}

/// Decodes every complete batch of `raw` and appends its records at offset
/// `from` or later to `out` (control records, the batches of transactions in
/// `aborted` and, in compressed batches, records before `from` are skipped).
/// A batch cut off at the end is left out: the next fetch starts there again.
pub fn decode_fetched(
    partition: i32,
    mut raw: Bytes,
    from: i64,
    aborted: Vec<AbortedTxn>,
    out: &mut Vec<Record>,
) -> Result<Decoded, String> {
    let mut decoded = Decoded::default();
    let mut abort_filter = AbortFilter::new(aborted);
    while raw.len() >= BATCH_PREFIX {
        let base_offset = (&raw[0..8]).get_i64();
        let length = (&raw[8..12]).get_i32();
        let Ok(length) = usize::try_from(length) else {
            return Err(format!(
                "partition {partition}: record batch at offset {base_offset} has a negative length ({length})"
            ));
        };
        let Some(total) = length.checked_add(BATCH_PREFIX) else {
            break;
        };
        if raw.len() < total {
            break; // cut off by the fetch's byte limit
        }
        let mut batch = raw.split_to(total);
        let set = RecordBatchDecoder::decode_with_custom_compression(
            &mut batch,
            Some(super::decompress::payload),
        )
        .map_err(|e| {
            format!("partition {partition}: cannot decode the record batch at offset {base_offset}: {e}")
        })?;
        if abort_filter.drops(&set.records) {
            let end = set.records.iter().map(|r| r.offset + 1).max();
            decoded.next_offset = decoded.next_offset.max(end);
            continue;
        }
        for r in set.records {
            decoded.next_offset = Some(decoded.next_offset.unwrap_or(i64::MIN).max(r.offset + 1));
            if r.control || r.offset < from {
                continue;
            }
            out.push(Record {
                partition,
                offset: r.offset,
                timestamp_ms: r.timestamp,
                key: r.key,
                value: r.value,
                headers: r
                    .headers
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v))
                    .collect(),
                delivery_count: None,
                lane: crate::record::Lane::Main,
            });
        }
    }
    decoded.only_partial = decoded.next_offset.is_none() && !raw.is_empty();
    Ok(decoded)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use indexmap::IndexMap;
    use kafka_protocol::protocol::StrBytes;
    use kafka_protocol::records::{
        Compression, Record as KRecord, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };

    fn krec(offset: i64, value: &str, control: bool) -> KRecord {
        let mut headers = IndexMap::new();
        headers.insert(
            StrBytes::from_static_str("h"),
            Some(Bytes::from_static(b"v")),
        );
        KRecord {
            transactional: control,
            control,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset,
            sequence: offset as i32,
            timestamp: 1_700_000_000_000 + offset,
            key: (offset % 2 == 0).then(|| Bytes::from(format!("k{offset}"))),
            value: Some(Bytes::from(value.to_string())),
            headers,
        }
    }

    fn batch(records: &[KRecord], compression: Compression) -> Bytes {
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            records,
            &RecordEncodeOptions {
                version: 2,
                compression,
            },
        )
        .unwrap();
        buf.freeze()
    }

    fn concat(parts: &[Bytes]) -> Bytes {
        let mut b = BytesMut::new();
        for p in parts {
            b.extend_from_slice(p);
        }
        b.freeze()
    }

    #[test]
    fn plain_and_compressed_batches_decode_in_order() {
        let a: Vec<KRecord> = (10..13).map(|o| krec(o, "plain", false)).collect();
        let b: Vec<KRecord> = (13..16).map(|o| krec(o, "zipped", false)).collect();
        let c: Vec<KRecord> = (16..18).map(|o| krec(o, "lz4", false)).collect();
        let raw = concat(&[
            batch(&a, Compression::None),
            batch(&b, Compression::Gzip),
            batch(&c, Compression::Lz4),
        ]);
        let mut out = Vec::new();
        let d = decode_fetched(3, raw, 10, Vec::new(), &mut out).unwrap();
        assert_eq!(d.next_offset, Some(18));
        assert!(!d.only_partial);
        let offsets: Vec<i64> = out.iter().map(|r| r.offset).collect();
        assert_eq!(offsets, (10..18).collect::<Vec<_>>());
        let r = &out[0];
        assert_eq!(r.partition, 3);
        assert_eq!(r.timestamp_ms, 1_700_000_000_010);
        assert_eq!(r.key.as_deref(), Some(&b"k10"[..]));
        assert_eq!(r.value.as_deref(), Some(&b"plain"[..]));
        assert_eq!(
            r.headers,
            vec![("h".to_string(), Some(Bytes::from_static(b"v")))]
        );
        assert_eq!(out[1].key, None);
        assert_eq!(out[4].value.as_deref(), Some(&b"zipped"[..]));
        assert_eq!(out[7].value.as_deref(), Some(&b"lz4"[..]));
    }

    #[test]
    fn records_before_the_fetch_offset_and_control_records_are_skipped() {
        let a: Vec<KRecord> = (0..5).map(|o| krec(o, "x", false)).collect();
        let ctl = vec![krec(5, "", true)];
        let raw = concat(&[
            batch(&a, Compression::Snappy),
            batch(&ctl, Compression::None),
        ]);
        let mut out = Vec::new();
        let d = decode_fetched(0, raw, 3, Vec::new(), &mut out).unwrap();
        assert_eq!(out.iter().map(|r| r.offset).collect::<Vec<_>>(), vec![3, 4]);
        // The control batch still moves the next fetch on.
        assert_eq!(d.next_offset, Some(6));
    }

    #[test]
    fn a_batch_cut_off_at_the_end_is_left_for_the_next_fetch() {
        let a: Vec<KRecord> = (0..3).map(|o| krec(o, "x", false)).collect();
        let b: Vec<KRecord> = (3..6).map(|o| krec(o, "y", false)).collect();
        let whole_b = batch(&b, Compression::None);
        let raw = concat(&[
            batch(&a, Compression::Zstd),
            whole_b.slice(..whole_b.len() - 7),
        ]);
        let mut out = Vec::new();
        let d = decode_fetched(0, raw, 0, Vec::new(), &mut out).unwrap();
        assert_eq!(out.len(), 3);
        assert_eq!(d.next_offset, Some(3));
        assert!(!d.only_partial);

        // Only a cut-off batch: nothing decoded, and the caller must fetch more.
        let mut out = Vec::new();
        let d = decode_fetched(0, whole_b.slice(..20), 3, Vec::new(), &mut out).unwrap();
        assert!(out.is_empty());
        assert_eq!(d.next_offset, None);
        assert!(d.only_partial);
        // An empty answer is not partial: the partition has nothing new.
        assert_eq!(
            decode_fetched(0, Bytes::new(), 3, Vec::new(), &mut out).unwrap(),
            Decoded::default()
        );
    }

    /// A record of producer `pid`'s transaction; `marker` makes it the
    /// transaction's control record (0 = ABORT, 1 = COMMIT).
    fn txn_rec(offset: i64, pid: i64, marker: Option<u8>) -> KRecord {
        let mut r = krec(offset, "t", marker.is_some());
        r.transactional = true;
        r.producer_id = pid;
        r.producer_epoch = 0;
        if let Some(kind) = marker {
            r.key = Some(Bytes::from(vec![0, 0, 0, kind]));
            r.value = Some(Bytes::from_static(&[0, 0, 0, 0, 0, 0]));
            r.headers.clear();
        }
        r
    }

    fn offsets(out: &[Record]) -> Vec<i64> {
        out.iter().map(|r| r.offset).collect()
    }

    #[test]
    fn records_of_aborted_transactions_are_dropped() {
        let plain: Vec<KRecord> = (0..2).map(|o| krec(o, "p", false)).collect();
        let raw = concat(&[
            batch(&plain, Compression::None),
            // producer 7's transaction at 2 is aborted, producer 8's at 4 commits
            batch(
                &[txn_rec(2, 7, None), txn_rec(3, 7, None)],
                Compression::None,
            ),
            batch(&[txn_rec(4, 8, None)], Compression::Gzip),
            batch(&[txn_rec(5, 7, Some(0))], Compression::None),
            batch(&[txn_rec(6, 8, Some(1))], Compression::None),
            // producer 7's next transaction commits: delivered
            batch(
                &[txn_rec(7, 7, None), txn_rec(8, 7, None)],
                Compression::None,
            ),
            batch(&[txn_rec(9, 7, Some(1))], Compression::None),
        ]);
        let aborted = [AbortedTxn {
            producer_id: 7,
            first_offset: 2,
        }];
        let mut out = Vec::new();
        let d = decode_fetched(0, raw.clone(), 0, aborted.to_vec(), &mut out).unwrap();
        assert_eq!(offsets(&out), vec![0, 1, 4, 7, 8]);
        assert_eq!(d.next_offset, Some(10));

        // Without the broker's list (tansu sends none) nothing is dropped.
        let mut out = Vec::new();
        decode_fetched(0, raw.clone(), 0, Vec::new(), &mut out).unwrap();
        assert_eq!(offsets(&out), vec![0, 1, 2, 3, 4, 7, 8]);

        // A fetch that starts inside the aborted transaction drops the rest of it.
        let mut out = Vec::new();
        decode_fetched(0, raw, 3, aborted.to_vec(), &mut out).unwrap();
        assert_eq!(offsets(&out), vec![4, 7, 8]);
    }

    #[test]
    fn an_aborted_transaction_only_covers_batches_from_its_first_offset_on() {
        // Producer 7 aborts a later transaction (first offset 4); the batch
        // at 0-1 belongs to an earlier one and is delivered.
        let raw = concat(&[
            batch(
                &[txn_rec(0, 7, None), txn_rec(1, 7, None)],
                Compression::None,
            ),
            batch(&[txn_rec(2, 7, Some(1))], Compression::None),
            batch(&[txn_rec(4, 7, None)], Compression::None),
            batch(&[txn_rec(5, 7, Some(0))], Compression::None),
        ]);
        let aborted = [AbortedTxn {
            producer_id: 7,
            first_offset: 4,
        }];
        let mut out = Vec::new();
        let d = decode_fetched(0, raw, 0, aborted.to_vec(), &mut out).unwrap();
        assert_eq!(offsets(&out), vec![0, 1]);
        assert_eq!(d.next_offset, Some(6));
    }

    #[test]
    fn a_corrupt_batch_is_an_error_naming_partition_and_offset() {
        let a: Vec<KRecord> = (40..42).map(|o| krec(o, "x", false)).collect();
        let mut raw = BytesMut::from(&batch(&a, Compression::None)[..]);
        let last = raw.len() - 1;
        raw[last] ^= 0xff;
        let err = decode_fetched(7, raw.freeze(), 40, Vec::new(), &mut Vec::new()).unwrap_err();
        assert!(
            err.contains("partition 7") && err.contains("offset 40"),
            "{err}"
        );
    }
}
