//! How much one fetch request asks for.
//!
//! A fetch answer is decoded at once, and its records wait in the fetch
//! queue until the handler takes them, so what a worker holds is the
//! *decoded* size of a few answers. On an uncompressed topic that is about
//! the answer's size; on a compressed one it is the compression ratio times
//! it (lz4 and zstd log lines: 4-25x). Kafka's `fetch.max.bytes` counts the
//! bytes on the wire, so a size that is fast on plain topics would make a
//! worker's memory balloon on compressed ones, and one that is lean on
//! compressed topics costs plain ones round trips (and the broker a request
//! each).
//!
//! So by default ([`FetchSize::Adaptive`]) the request's size follows the
//! inflation seen in recent answers: it asks for what decodes to about
//! `decoded` bytes, never more than `wire` on the wire. With
//! `-X fetch.max.bytes` set ([`FetchSize::Fixed`]) every request asks for
//! exactly that, as Kafka's clients do.

pub use crate::config::FetchSize;
use crate::record::Record;

/// The first request of an adaptive fetcher knows no ratio yet: it asks for
/// no more than this, so a compressed topic's first answer stays small too.
const FIRST_REQUEST: i32 = 256 * 1024;
/// The least an adaptive request asks for (the broker always sends at least
/// one whole batch, so this only bounds the number of round trips).
const LEAST_REQUEST: i32 = 64 * 1024;
/// Answers smaller than this say little about the ratio (batch headers and
/// the per-record cost dominate): they leave the estimate as it is.
const LEAST_SAMPLE: usize = 16 * 1024;

/// The request size of one fetcher, learned from its answers.
#[derive(Debug)]
pub struct RequestBudget {
    size: FetchSize,
    /// Decoded bytes per byte on the wire, a moving average; None before
    /// the first answer of some size.
    inflation: Option<f64>,
}

impl RequestBudget {
    pub fn new(size: FetchSize) -> Self {
        RequestBudget {
            size,
            inflation: None,
        }
    }

    /// `fetch.max.bytes` of the next request.
    pub fn request_bytes(&self) -> i32 {
        match self.size {
            FetchSize::Fixed(n) => n,
            FetchSize::Adaptive { wire, decoded } => match self.inflation {
                None => wire.min(FIRST_REQUEST),
                Some(ratio) => {
                    let fits = (decoded as f64 / ratio.max(1.0)) as i32;
                    fits.clamp(LEAST_REQUEST.min(wire), wire)
                }
            },
        }
    }

    /// Whether answers change the size ([`observe`](Self::observe) them);
    /// a fixed size needs no count of what they decode to.
    pub fn learns(&self) -> bool {
        matches!(self.size, FetchSize::Adaptive { .. })
    }

    /// An answer of `wire` bytes of record batches decoded to `decoded`
    /// bytes in memory (see [`decoded_bytes`]).
    pub fn observe(&mut self, wire: usize, decoded: usize) {
        if wire < LEAST_SAMPLE {
            return;
        }
        let ratio = decoded as f64 / wire as f64;
        // Half the weight on the newest answer: a topic's producers may
        // change codec, and one odd answer moves the size only halfway.
        self.inflation = Some(match self.inflation {
            None => ratio,
            Some(old) => (old + ratio) / 2.0,
        });
    }
}

/// What `records` take in memory: their bytes (slices of the answer, or of
/// a batch's decompressed bytes) and the records themselves.
pub fn decoded_bytes(records: &[Record]) -> usize {
    let len = |b: &Option<bytes::Bytes>| b.as_ref().map_or(0, |b| b.len());
    records
        .iter()
        .map(|r| {
            std::mem::size_of::<Record>()
                + len(&r.key)
                + len(&r.value)
                + r.headers
                    .iter()
                    .map(|(k, v)| k.len() + len(v))
                    .sum::<usize>()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: i32 = 1024 * 1024;
    const ADAPTIVE: FetchSize = FetchSize::Adaptive {
        wire: 2 * MIB,
        decoded: 8 * MIB,
    };

    #[test]
    fn a_fixed_size_is_asked_for_whatever_the_answers_decode_to() {
        let mut b = RequestBudget::new(FetchSize::Fixed(MIB / 2));
        assert_eq!(b.request_bytes(), MIB / 2);
        b.observe(MIB as usize, 30 * MIB as usize);
        assert_eq!(b.request_bytes(), MIB / 2);
    }

    #[test]
    fn the_first_request_is_small_then_a_plain_topic_gets_the_whole_wire_size() {
        let mut b = RequestBudget::new(ADAPTIVE);
        assert_eq!(b.request_bytes(), FIRST_REQUEST);
        // 200-byte records: about 1.6x in memory with the record structs.
        b.observe(512 * 1024, 820 * 1024);
        assert_eq!(b.request_bytes(), 2 * MIB);
    }

    #[test]
    fn a_compressed_topic_asks_for_what_decodes_to_the_budget() {
        let mut b = RequestBudget::new(ADAPTIVE);
        b.observe(512 * 1024, 16 * 512 * 1024); // 16x
        assert_eq!(b.request_bytes(), MIB / 2);
        // The average moves halfway towards a 32x answer: 24x.
        b.observe(512 * 1024, 32 * 512 * 1024);
        assert_eq!(b.request_bytes(), (8.0 * MIB as f64 / 24.0) as i32);
    }

    #[test]
    fn the_size_stays_between_its_floor_and_the_wire_cap() {
        let mut b = RequestBudget::new(ADAPTIVE);
        b.observe(64 * 1024, 64 * 1024 * 10_000);
        assert_eq!(b.request_bytes(), LEAST_REQUEST);
        let mut b = RequestBudget::new(ADAPTIVE);
        b.observe(64 * 1024, 1024); // less in memory than on the wire: counts as 1x
        assert_eq!(b.request_bytes(), 2 * MIB);
        // A wire cap under the floor wins.
        let mut b = RequestBudget::new(FetchSize::Adaptive {
            wire: 16 * 1024,
            decoded: 8 * MIB,
        });
        b.observe(64 * 1024, 64 * 1024 * 10_000);
        assert_eq!(b.request_bytes(), 16 * 1024);
    }

    #[test]
    fn small_answers_leave_the_estimate_alone() {
        let mut b = RequestBudget::new(ADAPTIVE);
        b.observe(1000, 1_000_000);
        assert_eq!(b.request_bytes(), FIRST_REQUEST);
    }

    #[test]
    fn decoded_bytes_count_the_slices_and_the_records() {
        let r = Record {
            partition: 0,
            offset: 0,
            timestamp_ms: 0,
            key: Some(bytes::Bytes::from_static(b"k")),
            value: Some(bytes::Bytes::from(vec![0u8; 200])),
            headers: vec![("h".into(), Some(bytes::Bytes::from_static(b"vv")))],
            delivery_count: None,
            lane: Default::default(),
        };
        let one = std::mem::size_of::<Record>() + 1 + 200 + 1 + 2;
        assert_eq!(decoded_bytes(&[r.clone(), r]), 2 * one);
        assert_eq!(decoded_bytes(&[]), 0);
    }
}
