//! The record batches of a fetch answer -> kswarm's plain [`Record`]s.
//!
//! rskafka fetches (our `fetch_raw` patch, see vendor/rskafka/KSWARM.md) and
//! hands back the partition's record data undecoded; kafka-protocol's
//! [`RecordBatchDecoder`] checks each batch's CRC, decompresses it and decodes
//! its records as slices of the fetched buffer. Keys and values therefore are
//! no copies: they share the fetched bytes until the handler has formatted
//! them.

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

/// Decodes every complete batch of `raw` and appends its records at offset
/// `from` or later to `out` (control records and, in compressed batches,
/// records before `from` are skipped). A batch cut off at the end is left
/// out: the next fetch starts there again.
pub fn decode_fetched(
    partition: i32,
    mut raw: Bytes,
    from: i64,
    out: &mut Vec<Record>,
) -> Result<Decoded, String> {
    let mut decoded = Decoded::default();
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
        let set = RecordBatchDecoder::decode(&mut batch).map_err(|e| {
            format!("partition {partition}: cannot decode the record batch at offset {base_offset}: {e}")
        })?;
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
        let d = decode_fetched(3, raw, 10, &mut out).unwrap();
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
        let d = decode_fetched(0, raw, 3, &mut out).unwrap();
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
        let d = decode_fetched(0, raw, 0, &mut out).unwrap();
        assert_eq!(out.len(), 3);
        assert_eq!(d.next_offset, Some(3));
        assert!(!d.only_partial);

        // Only a cut-off batch: nothing decoded, and the caller must fetch more.
        let mut out = Vec::new();
        let d = decode_fetched(0, whole_b.slice(..20), 3, &mut out).unwrap();
        assert!(out.is_empty());
        assert_eq!(d.next_offset, None);
        assert!(d.only_partial);
        // An empty answer is not partial: the partition has nothing new.
        assert_eq!(
            decode_fetched(0, Bytes::new(), 3, &mut out).unwrap(),
            Decoded::default()
        );
    }

    #[test]
    fn a_corrupt_batch_is_an_error_naming_partition_and_offset() {
        let a: Vec<KRecord> = (40..42).map(|o| krec(o, "x", false)).collect();
        let mut raw = BytesMut::from(&batch(&a, Compression::None)[..]);
        let last = raw.len() - 1;
        raw[last] ^= 0xff;
        let err = decode_fetched(7, raw.freeze(), 40, &mut Vec::new()).unwrap_err();
        assert!(
            err.contains("partition 7") && err.contains("offset 40"),
            "{err}"
        );
    }
}
