//! The head of a compressed message (RFC 7692 §7.2.2), and nothing more.
//!
//! loadgen reads only the stamp at the start of each message, so a compressed message is
//! inflated only until [`HEAD_KEEP`] bytes come out: the DEFLATE block header (a dynamic
//! Huffman header takes up to about 300 bytes) and a few dozen literals. The rest of the
//! message is never inflated, so the reported length is the compressed length on the wire,
//! and corrupt data past the head goes unnoticed (loadgen is a load generator, not a
//! validator; fanout's own tests and Autobahn check its compressed output).
//!
//! Design: *keep the compressed head, inflate once*, rather than a streaming inflate state per
//! connection. Both sides negotiated no context takeover, so each message inflates on its own.
//! A compressed message wholly inside one read (every message of a fan-out of a few KiB) is
//! inflated straight from the read buffer, with no copy. A message split across reads or
//! fragmented keeps at most [`ZHEAD_KEEP`] compressed bytes in its reader, and is inflated
//! when it ends. One [`HeadInflater`] per event loop (zlib's state and window, about 40 KiB,
//! created on the first compressed message) serves all its connections, since it is reset for
//! each message; an idle connection holds no inflate state, and one in the middle of a split
//! message at most 1 KiB. A streaming state per connection would cost that 40 KiB on every
//! connection with a message in flight, to save re-reading at most 1 KiB once per split message.

use flate2::{Decompress, FlushDecompress, Status};

use fanout::proto::ProtocolError;
use fanout::proto::deflate::TAIL;

use super::reader::HEAD_KEEP;

/// The most compressed bytes of a message kept across reads: far more than a block header
/// (at most 286 + 30 code lengths of 7 bits, plus the code-length code: under 300 bytes) and
/// [`HEAD_KEEP`] literals of at most 15 bits each.
pub const ZHEAD_KEEP: usize = 1024;

/// One event loop's raw-DEFLATE inflater, reset for each message.
#[derive(Default)]
pub struct HeadInflater {
    inflate: Option<Decompress>,
}

impl std::fmt::Debug for HeadInflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeadInflater")
            .field("used", &self.inflate.is_some())
            .finish()
    }
}

impl HeadInflater {
    /// Inflates the first bytes of a message into `out` and returns how many there are:
    /// `HEAD_KEEP` unless the message is shorter. `compressed` is the message's compressed
    /// payload as received, or a prefix of it (`whole` false), which must then hold enough to
    /// produce the head (see [`ZHEAD_KEEP`]); a prefix that does not yields a shorter head.
    /// Invalid DEFLATE data before the head is complete is
    /// [`ProtocolError::InvalidCompressedData`].
    pub fn head(
        &mut self,
        compressed: &[u8],
        whole: bool,
        out: &mut [u8; HEAD_KEEP],
    ) -> Result<usize, ProtocolError> {
        let z = self.inflate.get_or_insert_with(|| Decompress::new(false));
        z.reset(false);
        let tail: &[u8] = if whole { &TAIL } else { &[] };
        let mut produced = 0;
        for input in [compressed, tail] {
            let in0 = z.total_in();
            let mut used = 0;
            while produced < HEAD_KEEP && used < input.len() {
                let out0 = z.total_out();
                let status = z
                    .decompress(&input[used..], &mut out[produced..], FlushDecompress::None)
                    .map_err(|_| ProtocolError::InvalidCompressedData)?;
                let progress = (z.total_out() - out0) as usize;
                produced += progress;
                let step = (z.total_in() - in0) as usize - used;
                used += step;
                if status == Status::StreamEnd {
                    return Ok(produced); // BFINAL: the message ends here (§7.2.3.4)
                }
                if step == 0 && progress == 0 {
                    // Input and room, yet no progress: zlib could not use the input.
                    return Err(ProtocolError::InvalidCompressedData);
                }
            }
        }
        Ok(produced)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fanout::proto::deflate::{Compressor, Inflater};
    use fanout::proto::frame::{OpCode, Role, parse_header_deflate};

    /// The compressed payload of `payload` as fanout sends it.
    fn compress(payload: &[u8]) -> Vec<u8> {
        let frame = Compressor::new(6, 0)
            .compress_frame(OpCode::Binary, payload)
            .expect("compressible");
        let Ok(fanout::proto::Decoded::Complete((_, at, true))) =
            parse_header_deflate(&frame, Role::Client)
        else {
            panic!("a compressed frame")
        };
        frame[at..].to_vec()
    }

    #[test]
    fn the_head_matches_a_full_inflate_and_a_prefix_suffices() {
        let mut z = HeadInflater::default();
        for n in [0, 5, 23, 24, 25, 300, 1024, 70_000] {
            let payload: Vec<u8> = crate::wire::writer::json_body(n, 7);
            let Some(c) = (payload.len() > 8).then(|| compress(&payload)) else {
                continue;
            };
            let whole = Inflater::new().inflate(&c, usize::MAX).unwrap();
            assert_eq!(whole, payload);
            let mut out = [0; HEAD_KEEP];
            let got = z.head(&c, true, &mut out).unwrap();
            assert_eq!(&out[..got], &payload[..n.min(HEAD_KEEP)], "n {n}");
            let prefix = &c[..c.len().min(ZHEAD_KEEP)];
            let got = z.head(prefix, prefix.len() == c.len(), &mut out).unwrap();
            assert_eq!(&out[..got], &payload[..n.min(HEAD_KEEP)], "prefix, n {n}");
        }
    }

    #[test]
    fn corrupt_data_is_refused() {
        let mut z = HeadInflater::default();
        let mut out = [0; HEAD_KEEP];
        // BTYPE 11 is reserved.
        assert_eq!(
            z.head(&[0xff, 0xff, 0xff], true, &mut out),
            Err(ProtocolError::InvalidCompressedData)
        );
        // Still usable afterwards.
        let c = compress(&[b'a'; 100]);
        assert_eq!(z.head(&c, true, &mut out), Ok(HEAD_KEEP));
        assert_eq!(out, [b'a'; HEAD_KEEP]);
    }
}
