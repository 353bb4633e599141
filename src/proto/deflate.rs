//! permessage-deflate (RFC 7692), shaped for broadcast: compressed once per message, shared by
//! every subscriber, with no compression state per connection.
//!
//! - **Negotiation** ([`negotiate`], §7.1): the first acceptable offer is answered with
//!   `server_no_context_takeover; client_no_context_takeover`, so every message, each way, is
//!   compressed on its own. That is what makes the rest possible.
//! - **Outbound** ([`Compressor`], [`DeflatableFrame`], §7.2.1): a loop owns one compressor
//!   and resets it for each message. A broadcast frame is compressed lazily, the first time it
//!   goes to a subscriber that negotiated the extension, and that one compressed frame (RSV1
//!   set) is shared by every such subscriber, on every loop; the others get the plain frame.
//!   When compressing would not make the payload smaller, or it is under the minimum size,
//!   everyone gets the plain frame (RSV1 is per message, §6).
//! - **Inbound** ([`Inflater`], §7.2.2): a loop owns one inflater, reset for each message, and
//!   a [`Session`](super::session::Session) hands it a compressed message only once the whole
//!   message has arrived, so no connection holds inflate state, and an idle one holds nothing.
//!   Output is bounded: past the message limit inflation stops at once (a "zip bomb" costs at
//!   most the limit), and corrupt data is [`ProtocolError::InvalidCompressedData`] (1007).
//!
//! The codec is zlib's, via `flate2` on the pure-Rust `zlib-rs` backend: no C library to find
//! at build time, and it takes window sizes, which the default `miniz_oxide` backend does not.

use std::sync::{Arc, OnceLock};

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use super::frame::{self, OpCode, Role};
use super::{Decoded, ProtocolError};

mod negotiate;
pub use negotiate::{Agreed, COMPRESSOR_WINDOW_BITS, negotiate};

/// The default compression level: 1, the fastest. On 1 KiB of dashboard-like JSON it saves
/// 66% of the bytes in about a third of the time of level 6 (74% saved) or 9 (74%, slower
/// still). Levels 6–9 suit a deployment whose every message reaches thousands of
/// subscribers, where 8% more bytes saved per subscriber outweigh one slower compression; at
/// the default, a loop that publishes many messages to small audiences is not slowed much
/// (`cargo bench --bench deflate`; figures in `benches/deflate.rs`).
pub const DEFAULT_LEVEL: u32 = 1;

/// The default smallest payload worth compressing, in bytes. Compressing costs a fixed few
/// microseconds however small the message (resetting the compressor clears its 128 KiB hash
/// table), and JSON this short has few repeats: at level 1 a 128-byte update shrinks by 7%, a
/// 256-byte one by 37%, 512 bytes by 55%. Lower than `ws`'s 1 KiB default because here one
/// compression serves every subscriber.
pub const DEFAULT_MIN_SIZE: usize = 256;

/// The empty stored block that ends a sync flush: removed from every compressed message and
/// appended again before inflating (§7.2.1, §7.2.2).
pub const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// The compressor's scratch buffer keeps at most this much between messages: a rare huge
/// message must not pin its size in every loop.
const SCRATCH_KEEP: usize = 64 * 1024;

/// The inflater's first output buffer, in multiples of the compressed size (JSON typically
/// compresses 3–10×); it then doubles up to the limit.
const FIRST_GUESS_RATIO: usize = 4;

/// The most compressed bytes a message of at most `max_message` bytes (once inflated) may
/// take on the wire. DEFLATE can expand data, at worst to 9 bits a byte (fixed-Huffman
/// literals 144–255) plus block headers, so a client that compresses an incompressible message
/// of exactly the limit is not refused; beyond this a message is 1009 from its headers alone.
pub fn compressed_limit(max_message: usize) -> u64 {
    let max = max_message as u64;
    max + max / 8 + 64
}

/// One loop's compressor: raw DEFLATE with a [`COMPRESSOR_WINDOW_BITS`] window, reset before
/// each message (no context takeover). Not shared between threads: each loop owns one.
pub struct Compressor {
    deflate: Compress,
    min_size: usize,
    /// Compressed output of the message in hand, before it is copied behind its header.
    scratch: Vec<u8>,
    /// What it did, for the metrics.
    pub counts: DeflateCounts,
}

/// What a [`Compressor`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeflateCounts {
    /// Messages compressed (the compressed frame was smaller).
    pub compressed: u64,
    /// Messages sent plain: under the minimum size, or not smaller compressed.
    pub skipped: u64,
    /// Payload bytes of the compressed messages, before.
    pub bytes_in: u64,
    /// Their compressed frame bytes, after.
    pub bytes_out: u64,
}

impl std::fmt::Debug for Compressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compressor")
            .field("min_size", &self.min_size)
            .finish_non_exhaustive()
    }
}

impl Compressor {
    /// A compressor at zlib `level` (0–9; above 9 is 9; 0 only stores, so it never makes a
    /// message smaller) that leaves payloads under `min_size` bytes uncompressed.
    pub fn new(level: u32, min_size: usize) -> Self {
        Compressor {
            deflate: Compress::new(Compression::new(level.min(9)), false),
            min_size,
            scratch: Vec::new(),
            counts: DeflateCounts::default(),
        }
    }

    /// The message `payload` as one complete, unmasked server frame with RSV1 set and its
    /// payload compressed per §7.2.1 (the `00 00 ff ff` tail removed); `None` when `payload`
    /// is under the minimum size or compressing would not make it smaller, and for control
    /// frames (§6.1). The frame is allocated once, exactly.
    pub fn compress_frame(&mut self, opcode: OpCode, payload: &[u8]) -> Option<Vec<u8>> {
        if opcode.is_control() || opcode == OpCode::Continuation || payload.len() < self.min_size {
            self.counts.skipped += 1;
            return None;
        }
        let n = self.compress(payload);
        let frame = n.map(|n| frame::encode_compressed_frame(opcode, &self.scratch[..n]));
        match &frame {
            Some(f) => {
                self.counts.compressed += 1;
                self.counts.bytes_in += payload.len() as u64;
                self.counts.bytes_out += f.len() as u64;
            }
            None => self.counts.skipped += 1,
        }
        if self.scratch.len() > SCRATCH_KEEP {
            self.scratch = Vec::new();
        }
        frame
    }

    /// Compresses `payload` into the scratch buffer; returns the compressed length without the
    /// tail, if it is smaller than `payload`.
    fn compress(&mut self, payload: &[u8]) -> Option<usize> {
        // Room for as many bytes as the payload plus the tail: output that fills it is not
        // smaller, so compressing stops there (incompressible data costs no more than this).
        let room = payload.len() + TAIL.len();
        if self.scratch.len() < room {
            self.scratch.resize(room, 0);
        }
        self.deflate.reset();
        // One call does it all: zlib consumes all the input and completes the flush unless the
        // output fills up first, and then the result would not be smaller anyway.
        let status = self
            .deflate
            .compress(payload, &mut self.scratch[..room], FlushCompress::Sync)
            .ok()?;
        let written = self.deflate.total_out() as usize;
        (status == Status::Ok && written < room).then(|| {
            debug_assert_eq!(self.deflate.total_in() as usize, payload.len());
            debug_assert!(self.scratch[..written].ends_with(&TAIL));
            written - TAIL.len()
        })
    }
}

/// One loop's inflater: raw DEFLATE with a 32 KiB window (we never limit the client's),
/// reset before each message (no context takeover). Not shared between threads.
pub struct Inflater {
    inflate: Decompress,
}

impl std::fmt::Debug for Inflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inflater").finish_non_exhaustive()
    }
}

impl Default for Inflater {
    fn default() -> Self {
        Self::new()
    }
}

impl Inflater {
    /// A new inflater (about 40 KiB once used: zlib's state and its 32 KiB window).
    pub fn new() -> Self {
        Inflater {
            inflate: Decompress::new(false),
        }
    }

    /// Inflates one whole message's payload (as received: without the tail) into a new buffer
    /// of at most `max` bytes; see [`Self::inflate_into`].
    pub fn inflate(&mut self, compressed: &[u8], max: usize) -> Result<Vec<u8>, ProtocolError> {
        let mut out = Vec::new();
        self.inflate_into(compressed, max, &mut out)?;
        Ok(out)
    }

    /// [`Self::inflate`], then a text message must be UTF-8 ([`ProtocolError::InvalidUtf8`]).
    pub fn inflate_message(
        &mut self,
        opcode: OpCode,
        compressed: &[u8],
        max: usize,
    ) -> Result<Vec<u8>, ProtocolError> {
        let payload = self.inflate(compressed, max)?;
        if opcode == OpCode::Text && simdutf8::basic::from_utf8(&payload).is_err() {
            return Err(ProtocolError::InvalidUtf8);
        }
        Ok(payload)
    }

    /// Inflates one whole message's payload into `out` (cleared first), per §7.2.2: the tail
    /// is appended (without copying `compressed`) and the result inflated.
    ///
    /// - More than `max` bytes of output: [`ProtocolError::MessageTooBig`], as soon as byte
    ///   `max + 1` is produced. `out` never grows past `max + 1` bytes (plus what the
    ///   allocator rounds up), however much the input would expand to.
    /// - Invalid DEFLATE data: [`ProtocolError::InvalidCompressedData`].
    /// - A block with BFINAL set ends the message (§7.2.3.4 allows senders to finish that
    ///   way); any bytes after it are ignored, as zlib-based peers do.
    pub fn inflate_into(
        &mut self,
        compressed: &[u8],
        max: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), ProtocolError> {
        out.clear();
        self.inflate.reset(false);
        let bound = max.saturating_add(1);
        let first = compressed.len().saturating_mul(FIRST_GUESS_RATIO).max(256);
        for mut input in [compressed, &TAIL[..]] {
            loop {
                if out.len() == out.capacity() {
                    let step = out.capacity().max(first).min(bound - out.len());
                    out.reserve_exact(step);
                }
                let (in0, len0) = (self.inflate.total_in(), out.len());
                let status = self
                    .inflate
                    .decompress_vec(input, out, FlushDecompress::None)
                    .map_err(|_| ProtocolError::InvalidCompressedData)?;
                let used = (self.inflate.total_in() - in0) as usize;
                input = &input[used..];
                if out.len() > max {
                    return Err(ProtocolError::MessageTooBig);
                }
                if status == Status::StreamEnd {
                    return Ok(());
                }
                if out.len() < out.capacity() {
                    if input.is_empty() {
                        break;
                    }
                    if used == 0 && out.len() == len0 {
                        // Input and room, yet no progress: zlib could not use the input.
                        return Err(ProtocolError::InvalidCompressedData);
                    }
                }
            }
        }
        Ok(())
    }
}

/// A broadcast frame and its lazily compressed variant, shared (behind an `Arc`) by every
/// queue and every loop that delivers it.
///
/// # Thread safety
/// `DeflatableFrame` is `Send + Sync`. The compressed variant is computed at most once per
/// message per process: the first caller of [`Self::compressed`] runs its own loop's
/// [`Compressor`] inside [`OnceLock::get_or_init`]; a caller on another thread arriving
/// meanwhile blocks until it is done (microseconds for a few KiB; no lock is held otherwise)
/// and then shares the result. If that compression panicked, the next caller compresses
/// again. Every loop's compressor has the same settings, so which one wins does not matter.
#[derive(Debug)]
pub struct DeflatableFrame {
    plain: Arc<Vec<u8>>,
    /// The data frame's opcode and header length; `None` for a control frame, a fragment or
    /// anything else that may not be compressed.
    data: Option<(OpCode, usize)>,
    /// `Some(None)` once compression was tried and did not pay.
    compressed: OnceLock<Option<Arc<Vec<u8>>>>,
}

impl DeflatableFrame {
    /// Wraps an unmasked server frame (as [`frame::encode_frame`] makes). Only a whole,
    /// unfragmented text or binary frame is ever compressed; anything else is always sent
    /// plain.
    pub fn new(plain: Arc<Vec<u8>>) -> Self {
        let data = match frame::parse_header(&plain, Role::Client) {
            Ok(Decoded::Complete((h, len)))
                if h.fin
                    && matches!(h.opcode, OpCode::Text | OpCode::Binary)
                    && h.payload_len == (plain.len() - len) as u64 =>
            {
                Some((h.opcode, len))
            }
            _ => None,
        };
        DeflatableFrame {
            plain,
            data,
            compressed: OnceLock::new(),
        }
    }

    /// Encodes `payload` as a plain frame (not compressed yet).
    pub fn encode(opcode: OpCode, payload: &[u8]) -> Self {
        Self::new(Arc::new(frame::encode_frame(opcode, payload)))
    }

    /// The plain frame, for subscribers without the extension.
    pub fn plain(&self) -> &Arc<Vec<u8>> {
        &self.plain
    }

    /// The data message's opcode and payload; `None` for a control frame or a fragment.
    pub fn message(&self) -> Option<(OpCode, &[u8])> {
        self.data.map(|(opcode, at)| (opcode, &self.plain[at..]))
    }

    /// The message's payload length (uncompressed).
    pub fn payload_len(&self) -> usize {
        self.plain.len() - self.data.map_or(0, |(_, at)| at)
    }

    /// The compressed frame, computed with `compressor` unless some thread did already; `None`
    /// when compressing does not pay (or the frame may not be compressed).
    pub fn compressed(&self, compressor: &mut Compressor) -> Option<&Arc<Vec<u8>>> {
        let (opcode, at) = self.data?;
        self.compressed
            .get_or_init(|| {
                compressor
                    .compress_frame(opcode, &self.plain[at..])
                    .map(Arc::new)
            })
            .as_ref()
    }

    /// The frame for a subscriber: compressed if it negotiated the extension (`peer`), the
    /// message fits the window it allows ([`Agreed::accepts`]) and compressing pays; the plain
    /// frame otherwise. Compresses on first need only.
    pub fn frame_for(&self, peer: Option<&Agreed>, compressor: &mut Compressor) -> &Arc<Vec<u8>> {
        match peer {
            Some(agreed) if agreed.accepts(self.payload_len()) => {
                self.compressed(compressor).unwrap_or(&self.plain)
            }
            _ => &self.plain,
        }
    }
}

#[cfg(test)]
mod tests;
