//! LZ4 frames decompressed by liblz4 (the copy the `lz4` crate bundles and
//! exports as `lz4::liblz4`) through its frame API directly: the `lz4`
//! crate's reader has no way to reuse a context, to read from a slice without
//! copying it, or to skip the frame checksums (see [`Lz4Frames`]). This is
//! the one module of `wire` that calls C, so its `unsafe` stays here.
#![allow(unsafe_code)]

use anyhow::{anyhow, Context, Result};
use lz4::liblz4::{
    LZ4FDecompressOptions, LZ4FDecompressionContext, LZ4F_createDecompressionContext,
    LZ4F_decompress, LZ4F_freeDecompressionContext, LZ4F_getErrorName, LZ4F_isError,
    LZ4F_resetDecompressionContext, LZ4_versionNumber, LZ4F_VERSION,
};

/// A liblz4 frame decompression context, kept per thread and reset per
/// batch. The `lz4` crate's reader made a new context for every batch, copied
/// the input through a 32 KiB buffer, and checked the frame's XXH32
/// checksums, which rskafka's producer (so `kswarm produce`) writes and
/// Kafka's Java producer does not: a `perf` profile of a worker reading an
/// lz4 topic that `kswarm produce` wrote put XXH32 at 16% of its CPU.
/// The checksums are skipped: the batch's CRC32C, checked by the decoder
/// before the payload is read, covers every compressed byte already, so a
/// corrupt payload never gets here, and liblz4 decodes without reading or
/// writing out of bounds whatever the input.
pub(crate) struct Lz4Frames {
    ctx: LZ4FDecompressionContext,
    /// liblz4 1.9.4 and later read `skipChecksums` where older ones have a
    /// reserved zero (lz4-sys names it `reserved[0]`).
    skip_checksums: u32,
}

impl Lz4Frames {
    pub(crate) fn new() -> Result<Self> {
        let mut ctx = LZ4FDecompressionContext(std::ptr::null_mut());
        // SAFETY: liblz4 allocates the context and writes its pointer to ctx.
        lz4_result(unsafe { LZ4F_createDecompressionContext(&mut ctx, LZ4F_VERSION) })
            .context("cannot allocate a context")?;
        // SAFETY: a plain query of the linked library.
        let version = unsafe { LZ4_versionNumber() };
        Ok(Self {
            ctx,
            skip_checksums: u32::from(version >= 10904),
        })
    }

    /// Every frame of `raw`, one after another, into a buffer of `guess`
    /// bytes first that doubles while it is not enough.
    pub(crate) fn decompress(&self, raw: &[u8], guess: usize) -> Result<Vec<u8>> {
        // SAFETY: ctx is a live context; a reset only clears its frame state
        // (whatever an earlier batch, whole or broken, left in it).
        unsafe { LZ4F_resetDecompressionContext(self.ctx) };
        let options = LZ4FDecompressOptions {
            stable_dst: 0,
            reserved: [self.skip_checksums, 0, 0],
        };
        let mut out: Vec<u8> = Vec::with_capacity(guess.max(64));
        let mut read = 0;
        loop {
            if out.len() == out.capacity() {
                out.reserve(out.capacity());
            }
            let spare = out.spare_capacity_mut();
            let (mut wrote, mut took) = (spare.len(), raw.len() - read);
            // SAFETY: liblz4 writes at most `wrote` bytes into the spare room
            // and reads at most `took` bytes of raw; it returns how many of
            // each in the same variables.
            let hint = lz4_result(unsafe {
                LZ4F_decompress(
                    self.ctx,
                    spare.as_mut_ptr().cast(),
                    &mut wrote,
                    raw[read..].as_ptr(),
                    &mut took,
                    &options,
                )
            })?;
            // SAFETY: liblz4 initialised the first `wrote` bytes of the spare room.
            unsafe { out.set_len(out.len() + wrote) };
            read += took;
            if hint == 0 && read == raw.len() {
                return Ok(out);
            }
            // hint 0 with input left: another frame follows (the context
            // starts it on its own). Otherwise liblz4 wants more input, and
            // with none left the frame was cut short.
            if wrote == 0 && took == 0 {
                return Err(anyhow!("the frame ends before its end mark"));
            }
        }
    }
}

impl Drop for Lz4Frames {
    fn drop(&mut self) {
        // SAFETY: the context is not used after this.
        unsafe { LZ4F_freeDecompressionContext(self.ctx) };
    }
}

/// liblz4's size-or-error code as a Result.
fn lz4_result(code: usize) -> Result<usize> {
    // SAFETY: both only read the code; the name is a static C string.
    if unsafe { LZ4F_isError(code) } == 0 {
        return Ok(code);
    }
    let name = unsafe { std::ffi::CStr::from_ptr(LZ4F_getErrorName(code)) };
    Err(anyhow!("{}", name.to_string_lossy()))
}
