//! The payload of a compressed record batch, for
//! `RecordBatchDecoder::decode_with_custom_compression`.
//!
//! kafka-protocol's own decompressors copy the compressed bytes first, grow
//! the output from an empty buffer through `io::copy`'s 8 KiB steps, and make
//! a new zstd context (over 100 KiB of tables) for every batch. On a
//! compressed topic that was most of a worker's CPU per record (issue 32). Here
//! the same C libraries it uses (the `zstd` and `lz4` crates) decompress
//! straight from the fetched bytes into one buffer sized from the input, and
//! each keeps one context per thread; lz4's frame checksums are left to the
//! batch's CRC32C (see [`super::lz4`]). gzip and snappy (rare for log topics) go
//! through kafka-protocol as before; an uncompressed batch is not copied.

use std::cell::RefCell;

use anyhow::{anyhow, Context, Result};
use bytes::Bytes;
use kafka_protocol::compression::{Decompressor, Gzip, Snappy};
use kafka_protocol::records::Compression;

use super::lz4::Lz4Frames;
use zstd::zstd_safe::{DCtx, InBuffer, OutBuffer, ResetDirective};

/// First guess of the decompressed size, as a multiple of the compressed
/// one (log lines compress 4-10x); the buffer doubles when it is not enough.
const GUESS_RATIO: usize = 6;

thread_local! {
    /// One zstd decompression context per thread, reset per batch.
    static ZSTD: RefCell<Option<DCtx<'static>>> = const { RefCell::new(None) };
    /// One lz4 frame decompression context per thread, reset per batch.
    static LZ4: RefCell<Option<Lz4Frames>> = const { RefCell::new(None) };
}

/// The records bytes of a batch whose `raw` payload is compressed with `c`.
pub(crate) fn payload(raw: &mut Bytes, c: Compression) -> Result<Bytes> {
    match c {
        Compression::None => Ok(std::mem::take(raw)),
        Compression::Zstd => zstd(raw).context("Failed to decompress zstd"),
        Compression::Lz4 => lz4(raw).context("Failed to decompress lz4"),
        Compression::Gzip => Gzip::decompress(raw, |out: &mut Bytes| Ok(std::mem::take(out))),
        Compression::Snappy => Snappy::decompress(raw, |out: &mut Bytes| Ok(std::mem::take(out))),
    }
}

fn guess(raw: &[u8]) -> usize {
    raw.len().saturating_mul(GUESS_RATIO).max(4096)
}

/// Every zstd frame of `raw`, one after another (a producer writes one).
fn zstd(raw: &[u8]) -> Result<Bytes> {
    ZSTD.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = Some(DCtx::try_create().ok_or_else(|| anyhow!("cannot allocate a context"))?);
        }
        let dctx = slot.as_mut().expect("made above");
        dctx.reset(ResetDirective::SessionOnly)
            .map_err(|code| anyhow!("reset: {}", zstd::zstd_safe::get_error_name(code)))?;
        let mut out: Vec<u8> = Vec::with_capacity(guess(raw));
        let mut input = InBuffer::around(raw);
        loop {
            if out.len() == out.capacity() {
                out.reserve(out.capacity());
            }
            let before = (input.pos(), out.len());
            let hint = dctx
                .decompress_stream(&mut OutBuffer::around_pos(&mut out, before.1), &mut input)
                .map_err(|code| anyhow!("{}", zstd::zstd_safe::get_error_name(code)))?;
            let done = input.pos() == raw.len();
            if hint == 0 && done {
                return Ok(Bytes::from(fitted(out)));
            }
            if done && out.len() < out.capacity() && (input.pos(), out.len()) == before {
                return Err(anyhow!("the frame ends before its end mark"));
            }
        }
    })
}

/// The LZ4 frames of `raw` (Kafka's lz4 is the frame format; a producer
/// writes one), decompressed straight from the fetched bytes into a buffer
/// sized from the input, with the thread's context.
fn lz4(raw: &[u8]) -> Result<Bytes> {
    LZ4.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = Some(Lz4Frames::new()?);
        }
        let out = slot
            .as_ref()
            .expect("made above")
            .decompress(raw, guess(raw))?;
        Ok(Bytes::from(fitted(out)))
    })
}

/// The decompressed bytes without the spare room of the guess and its
/// doublings: the records are slices of them and keep the whole allocation
/// alive until the handler is done (twice the records' size, measured as a
/// worker's peak RSS on lz4 topics). Shrinking a large allocation in place
/// (glibc's realloc) copies nothing.
fn fitted(mut out: Vec<u8>) -> Vec<u8> {
    if out.capacity() - out.len() > out.len() / 8 {
        out.shrink_to_fit();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use kafka_protocol::records::{
        Record as KRecord, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions,
        TimestampType,
    };

    /// Log-like records: compressible, but not all alike.
    fn records(n: i64) -> Vec<KRecord> {
        (0..n)
            .map(|i| KRecord {
                transactional: false,
                control: false,
                partition_leader_epoch: 0,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: i,
                sequence: i as i32,
                timestamp: 1_700_000_000_000 + i,
                key: None,
                value: Some(Bytes::from(format!(
                    "2026-12-07T07:00:{:02}Z host-{} sshd[{}]: Accepted publickey for user{} port {}",
                    i % 60,
                    i % 7,
                    1000 + i * 13 % 997,
                    i % 11,
                    40000 + i
                ))),
                headers: Default::default(),
                delete_horizon: false,
            })
            .collect()
    }

    fn batch(recs: &[KRecord], compression: Compression) -> Bytes {
        let mut buf = BytesMut::new();
        let opts = RecordEncodeOptions {
            version: 2,
            compression,
        };
        RecordBatchEncoder::encode(&mut buf, recs.iter(), &opts).expect("encodes");
        buf.freeze()
    }

    fn decode_ours(b: &Bytes) -> Vec<KRecord> {
        let mut b = b.clone();
        RecordBatchDecoder::decode_with_custom_compression(&mut b, Some(payload))
            .expect("decodes")
            .records
    }

    #[test]
    fn every_compression_decodes_as_kafka_protocol_does() {
        let recs = records(1000);
        for c in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let b = batch(&recs, c);
            let theirs = RecordBatchDecoder::decode(&mut b.clone())
                .expect("decodes")
                .records;
            let ours = decode_ours(&b);
            assert_eq!(ours.len(), 1000, "{c:?}");
            assert_eq!(ours, theirs, "{c:?}");
            assert_eq!(ours[999].value, recs[999].value, "{c:?}");
        }
    }

    #[test]
    fn output_larger_than_the_first_guess_grows() {
        // Values of one repeated byte compress far beyond GUESS_RATIO.
        let mut recs = records(200);
        for r in &mut recs {
            r.value = Some(Bytes::from(vec![b'x'; 20_000]));
        }
        for c in [Compression::Lz4, Compression::Zstd] {
            let b = batch(&recs, c);
            assert!(
                b.len() * GUESS_RATIO < 200 * 20_000,
                "{c:?} is not compressed enough"
            );
            let ours = decode_ours(&b);
            assert_eq!(ours.len(), 200);
            assert!(ours
                .iter()
                .all(|r| r.value.as_ref().unwrap().len() == 20_000));
        }
    }

    /// Our zstd loop must not take a frame without its end for a whole one
    /// (nor the lz4 one: `a_cut_or_foreign_lz4_frame_is_an_error`).
    #[test]
    fn a_cut_zstd_frame_is_an_error_not_a_short_batch() {
        let b = batch(&records(100), Compression::Zstd);
        // The batch header (61 bytes) stays; the compressed payload loses its end.
        let mut raw = b.slice(61..b.len() - 8);
        assert!(payload(&mut raw, Compression::Zstd).is_err());
        let mut whole = b.slice(61..);
        assert!(payload(&mut whole, Compression::Zstd).is_ok());
    }

    /// An lz4 frame of `data` with or without both XXH32 checksums.
    fn lz4_frame(data: &[u8], checksums: bool) -> Vec<u8> {
        use lz4::liblz4::{BlockChecksum, ContentChecksum};
        let mut b = lz4::EncoderBuilder::new();
        if !checksums {
            b.checksum(ContentChecksum::NoChecksum)
                .block_checksum(BlockChecksum::NoBlockChecksum);
        }
        let mut enc = b.build(Vec::new()).expect("encoder");
        std::io::Write::write_all(&mut enc, data).expect("compresses");
        let (frame, res) = enc.finish();
        res.expect("finishes");
        frame
    }

    fn log_bytes(n: i64) -> Vec<u8> {
        records(n)
            .iter()
            .flat_map(|r| r.value.as_ref().unwrap().to_vec())
            .collect()
    }

    #[test]
    fn lz4_frames_with_and_without_checksums_decode_alike() {
        // 300 KiB: more than one 64 KiB lz4 block, more than the first guess.
        let data = log_bytes(4000);
        for checksums in [true, false] {
            let frame = lz4_frame(&data, checksums);
            let mut raw = Bytes::from(frame);
            let out = payload(&mut raw, Compression::Lz4).expect("decodes");
            assert_eq!(&out[..], &data[..], "checksums {checksums}");
        }
        // Two frames one after the other decode as their concatenation.
        let mut two = lz4_frame(&data[..1000], true);
        two.extend(lz4_frame(&data[1000..3000], false));
        let out = payload(&mut Bytes::from(two), Compression::Lz4).expect("decodes");
        assert_eq!(&out[..], &data[..3000]);
    }

    /// The frame checksums are skipped because the batch CRC32C covers the
    /// compressed bytes: a flipped byte fails the batch before lz4 sees it.
    #[test]
    fn lz4_checksums_are_left_to_the_batch_crc() {
        let data = log_bytes(100);
        let mut frame = lz4_frame(&data, true);
        let n = frame.len();
        frame[n - 1] ^= 0xff; // the content checksum, the frame's last 4 bytes
        let out = payload(&mut Bytes::from(frame), Compression::Lz4).expect("not checked");
        assert_eq!(&out[..], &data[..]);

        let b = batch(&records(100), Compression::Lz4);
        let mut flipped = b.to_vec();
        flipped[b.len() - 10] ^= 0x01;
        let err = RecordBatchDecoder::decode_with_custom_compression(
            &mut Bytes::from(flipped),
            Some(payload),
        )
        .expect_err("refused");
        assert!(
            format!("{err:#}").contains("Cyclic redundancy check"),
            "{err:#}"
        );
    }

    #[test]
    fn a_cut_or_foreign_lz4_frame_is_an_error() {
        let frame = Bytes::from(lz4_frame(&log_bytes(100), false));
        assert!(payload(&mut frame.slice(..frame.len() - 8), Compression::Lz4).is_err());
        assert!(payload(&mut frame.slice(..5), Compression::Lz4).is_err());
        let mut foreign = Bytes::from_static(b"not an lz4 frame at all");
        assert!(payload(&mut foreign, Compression::Lz4).is_err());
        // The thread's context is fine for the next batch after those.
        assert!(payload(&mut frame.clone(), Compression::Lz4).is_ok());
    }

    #[test]
    fn spare_room_is_given_back() {
        let mut v = Vec::with_capacity(1 << 20);
        v.extend_from_slice(&[7u8; 1000]);
        let v = fitted(v);
        assert_eq!(v, vec![7u8; 1000]);
        assert!(v.capacity() < 2000, "{}", v.capacity());
        // A little spare room is not worth a realloc.
        let mut v = Vec::with_capacity(1100);
        v.extend_from_slice(&[7u8; 1000]);
        assert_eq!(fitted(v).capacity(), 1100);
    }

    #[test]
    fn the_thread_context_serves_batch_after_batch() {
        for c in [Compression::Zstd, Compression::Lz4] {
            let a = batch(&records(10), c);
            let b = batch(&records(500), c);
            for _ in 0..3 {
                assert_eq!(decode_ours(&a).len(), 10, "{c:?}");
                assert_eq!(decode_ours(&b).len(), 500, "{c:?}");
            }
        }
    }

    /// `cargo test --release --lib decompress_cost -- --ignored --nocapture`:
    /// µs per 1,000-record batch, kafka-protocol's decoder against this one.
    #[test]
    #[ignore]
    fn decompress_cost() {
        let recs = records(1000);
        for c in [Compression::None, Compression::Lz4, Compression::Zstd] {
            let b = batch(&recs, c);
            let rounds = 2000;
            let t = std::time::Instant::now();
            for _ in 0..rounds {
                let n = RecordBatchDecoder::decode(&mut b.clone())
                    .unwrap()
                    .records
                    .len();
                assert_eq!(n, 1000);
            }
            let theirs = t.elapsed().as_secs_f64() * 1e6 / rounds as f64;
            let t = std::time::Instant::now();
            for _ in 0..rounds {
                assert_eq!(decode_ours(&b).len(), 1000);
            }
            let ours = t.elapsed().as_secs_f64() * 1e6 / rounds as f64;
            println!(
                "{c:?}: {} compressed bytes; kafka-protocol {theirs:.1} µs per batch, ours {ours:.1} µs ({:.2}x)",
                b.len(),
                theirs / ours
            );
        }
        // The lz4 payload alone: the `lz4` crate's reader (kswarm's before
        // the frame API) against the frame API; frames as rskafka writes them
        // (both checksums) and as Java and librdkafka do (none).
        let data = log_bytes(1000);
        for checksums in [true, false] {
            let frame = lz4_frame(&data, checksums);
            let rounds = 5000;
            let t = std::time::Instant::now();
            for _ in 0..rounds {
                let mut out = Vec::with_capacity(guess(&frame));
                std::io::Read::read_to_end(&mut lz4::Decoder::new(&frame[..]).unwrap(), &mut out)
                    .unwrap();
                assert_eq!(out.len(), data.len());
            }
            let reader = t.elapsed().as_secs_f64() * 1e6 / rounds as f64;
            let t = std::time::Instant::now();
            for _ in 0..rounds {
                assert_eq!(lz4(&frame).unwrap().len(), data.len());
            }
            let frames = t.elapsed().as_secs_f64() * 1e6 / rounds as f64;
            println!(
                "lz4 payload of {} bytes, checksums {checksums}: the lz4 crate's reader {reader:.1} µs, \
                 the frame API {frames:.1} µs ({:.2}x)",
                data.len(),
                reader / frames
            );
        }
    }
}
