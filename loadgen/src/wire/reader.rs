//! A streaming reader of server frames (RFC 6455 §5.2, §5.4, §5.5) that buffers almost nothing.
//!
//! loadgen needs only the first [`HEAD_KEEP`] bytes of each message (the stamp), so payloads are
//! never copied in full: a frame wholly inside the read buffer is reported straight from it,
//! and a frame split across reads keeps just its head. A 16 KiB message costs no copy at all,
//! and an idle connection holds a couple of hundred bytes of reader state.
//!
//! Two paths, one result. The *scan* walks a large read frame by frame while each frame is a
//! whole, unfragmented, unmasked text or binary frame with a 7- or 16-bit length — every
//! frame of a fan-out at full rate — reading two (or four) header bytes and reporting the
//! message, with no state kept and nothing copied. Anything else (a header or payload split
//! across reads, fragments, control frames, 64-bit lengths, any frame the general path would
//! refuse) stops the scan, and the *general* path handles that one frame with
//! `fanout::proto::frame::parse_header` and the fragmentation rules before the scan resumes.
//! The general path alone is the oracle the tests check the scan against.
//!
//! permessage-deflate (RFC 7692): on a connection that negotiated it ([`FrameReader::deflate`])
//! a data message whose first frame has RSV1 set is compressed. Such frames never match the
//! scan (their byte 0 is `0xC1`/`0xC2`), so the scan costs what it did; the general path
//! parses them with `parse_header_deflate`, which refuses RSV1 on a continuation or control
//! frame, and without negotiation RSV1 stays a reserved bit. The head is inflated as
//! `inflate.rs` describes (straight from the buffer when the message is whole in it, else from
//! at most [`ZHEAD_KEEP`] kept bytes); the reported length is the compressed length.

use fanout::proto::frame::{
    FrameHeader, MAX_HEADER_LEN, OpCode, Role, parse_header, parse_header_deflate,
};
use fanout::proto::{Decoded, ProtocolError};

use super::inflate::{HeadInflater, ZHEAD_KEEP};
use super::stamp::STAMP_LEN;

/// How many leading bytes of each data message are kept and reported.
pub const HEAD_KEEP: usize = STAMP_LEN;

/// What the reader reports, in arrival order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A complete data message (fragments reassembled): its first bytes and its full length.
    Message {
        /// Binary (true) or text (false).
        binary: bool,
        /// The first `min(len, HEAD_KEEP)` bytes (of a compressed message: once inflated).
        head: &'a [u8],
        /// The message's payload length in bytes on the wire (of a compressed message: the
        /// compressed length).
        len: u64,
        /// It was compressed (RSV1 on its first frame).
        compressed: bool,
    },
    /// A ping with its payload (to be echoed in a pong).
    Ping(&'a [u8]),
    /// A pong.
    Pong,
    /// A close frame with its status code, if it carried one.
    Close(Option<u16>),
}

/// The frame whose payload is being read.
#[derive(Clone, Copy, Debug)]
struct Current {
    opcode: OpCode,
    fin: bool,
    remaining: u64,
}

/// Per-connection reader state.
#[derive(Clone, Debug, Default)]
pub struct FrameReader {
    /// Header bytes of a header split across reads.
    hdr: [u8; MAX_HEADER_LEN],
    hdr_len: usize,
    cur: Option<Current>,
    /// A data message is in progress (its first frame had FIN clear or is split across reads).
    in_message: bool,
    binary: bool,
    head: [u8; HEAD_KEEP],
    head_len: usize,
    msg_len: u64,
    /// Payload of the control frame being read (≤ 125 bytes by §5.5).
    ctrl: Vec<u8>,
    /// permessage-deflate was negotiated: RSV1 marks a compressed message.
    pub deflate: bool,
    /// The message in progress is compressed.
    compressed: bool,
    /// Its first compressed bytes (at most [`ZHEAD_KEEP`]); allocated only while a compressed
    /// message is split across reads.
    zhead: Vec<u8>,
}

impl FrameReader {
    /// Feeds the next bytes from the socket, reporting each complete message or control frame;
    /// compressed heads are inflated with `z` (the event loop's).
    #[inline]
    pub fn feed(
        &mut self,
        buf: &[u8],
        z: &mut HeadInflater,
        on: impl FnMut(Frame<'_>),
    ) -> Result<(), ProtocolError> {
        self.feed_with::<true>(buf, z, on)
    }

    /// [`FrameReader::feed`], with (`SCAN`) or without the scan of whole frames.
    #[inline]
    fn feed_with<const SCAN: bool>(
        &mut self,
        mut buf: &[u8],
        z: &mut HeadInflater,
        mut on: impl FnMut(Frame<'_>),
    ) -> Result<(), ProtocolError> {
        loop {
            if self.cur.is_none() {
                if SCAN && self.hdr_len == 0 && !self.in_message {
                    buf = scan(buf, &mut on);
                }
                if buf.is_empty() {
                    return Ok(());
                }
                let Some((h, used, rsv1)) = self.take_header(buf)? else {
                    return Ok(());
                };
                buf = &buf[used..];
                self.start(h, rsv1)?;
                // A whole unfragmented data frame already in the buffer (after a split header,
                // or with a 64-bit length).
                if matches!(h.opcode, OpCode::Binary | OpCode::Text)
                    && h.fin
                    && buf.len() as u64 >= h.payload_len
                {
                    let (payload, rest) = buf.split_at(h.payload_len as usize);
                    let mut inflated = [0; HEAD_KEEP];
                    let head = if rsv1 {
                        let n = z.head(payload, true, &mut inflated)?;
                        &inflated[..n]
                    } else {
                        &payload[..payload.len().min(HEAD_KEEP)]
                    };
                    on(Frame::Message {
                        binary: self.binary,
                        head,
                        len: h.payload_len,
                        compressed: rsv1,
                    });
                    self.in_message = false;
                    self.cur = None;
                    buf = rest;
                    continue;
                }
            }
            let Some(cur) = self.cur.as_mut() else {
                continue;
            };
            let n = cur.remaining.min(buf.len() as u64) as usize;
            let (chunk, rest) = buf.split_at(n);
            buf = rest;
            cur.remaining -= n as u64;
            let cur = *cur;
            if cur.opcode.is_control() {
                self.ctrl.extend_from_slice(chunk);
            } else if self.compressed {
                let take = (ZHEAD_KEEP - self.zhead.len()).min(chunk.len());
                self.zhead.extend_from_slice(&chunk[..take]);
                self.msg_len += n as u64;
            } else {
                let take = (HEAD_KEEP - self.head_len).min(chunk.len());
                self.head[self.head_len..self.head_len + take].copy_from_slice(&chunk[..take]);
                self.head_len += take;
                self.msg_len += n as u64;
            }
            if cur.remaining > 0 {
                return Ok(()); // the buffer is used up mid-payload
            }
            self.cur = None;
            self.finish(cur, z, &mut on)?;
        }
    }

    /// `parse_header`, or with permessage-deflate `parse_header_deflate`: the header, its
    /// length and RSV1.
    fn parse(&self, buf: &[u8]) -> Result<Decoded<(FrameHeader, usize, bool)>, ProtocolError> {
        if self.deflate {
            return parse_header_deflate(buf, Role::Client);
        }
        Ok(match parse_header(buf, Role::Client)? {
            Decoded::Complete((h, n)) => Decoded::Complete((h, n, false)),
            Decoded::Partial => Decoded::Partial,
        })
    }

    /// Completes a header from `buf` (and bytes saved from earlier reads); `None` when more
    /// bytes are needed (all of `buf` was saved). Returns the header, the bytes of `buf` used
    /// and RSV1.
    #[allow(clippy::type_complexity)]
    fn take_header(
        &mut self,
        buf: &[u8],
    ) -> Result<Option<(FrameHeader, usize, bool)>, ProtocolError> {
        if self.hdr_len == 0 {
            return Ok(match self.parse(buf)? {
                Decoded::Complete(h) => Some(h),
                Decoded::Partial => {
                    self.hdr[..buf.len()].copy_from_slice(buf);
                    self.hdr_len = buf.len();
                    None
                }
            });
        }
        let old = self.hdr_len;
        let take = (MAX_HEADER_LEN - old).min(buf.len());
        self.hdr[old..old + take].copy_from_slice(&buf[..take]);
        Ok(match self.parse(&self.hdr[..old + take])? {
            Decoded::Complete((h, len, rsv1)) => {
                self.hdr_len = 0;
                Some((h, len - old, rsv1))
            }
            Decoded::Partial => {
                self.hdr_len = old + take;
                None
            }
        })
    }

    /// Checks a new frame against the fragmentation rules (§5.4) and starts reading it
    /// (`rsv1`: compressed, checked by the header parser).
    fn start(&mut self, h: FrameHeader, rsv1: bool) -> Result<(), ProtocolError> {
        match h.opcode {
            OpCode::Continuation if !self.in_message => {
                return Err(ProtocolError::UnexpectedContinuation);
            }
            OpCode::Text | OpCode::Binary if self.in_message => {
                return Err(ProtocolError::ExpectedContinuation);
            }
            OpCode::Text | OpCode::Binary => {
                self.in_message = true;
                self.binary = h.opcode == OpCode::Binary;
                self.head_len = 0;
                self.msg_len = 0;
                self.compressed = rsv1;
            }
            OpCode::Continuation => {}
            OpCode::Close | OpCode::Ping | OpCode::Pong => self.ctrl.clear(),
        }
        self.cur = Some(Current {
            opcode: h.opcode,
            fin: h.fin,
            remaining: h.payload_len,
        });
        Ok(())
    }

    /// Reports a frame whose payload has been read in full.
    fn finish(
        &mut self,
        cur: Current,
        z: &mut HeadInflater,
        on: &mut impl FnMut(Frame<'_>),
    ) -> Result<(), ProtocolError> {
        match cur.opcode {
            OpCode::Ping => on(Frame::Ping(&self.ctrl)),
            OpCode::Pong => on(Frame::Pong),
            OpCode::Close => {
                let code = (self.ctrl.len() >= 2)
                    .then(|| u16::from_be_bytes([self.ctrl[0], self.ctrl[1]]));
                on(Frame::Close(code));
            }
            OpCode::Text | OpCode::Binary | OpCode::Continuation if cur.fin => {
                self.in_message = false;
                if self.compressed {
                    let zhead = std::mem::take(&mut self.zhead);
                    let whole = zhead.len() as u64 == self.msg_len;
                    self.head_len = z.head(&zhead, whole, &mut self.head)?;
                }
                let head = &self.head[..self.head_len];
                on(Frame::Message {
                    binary: self.binary,
                    head,
                    len: self.msg_len,
                    compressed: self.compressed,
                });
            }
            _ => {}
        }
        Ok(())
    }
}

/// Reports every whole, unfragmented, unmasked data frame with a 7- or 16-bit length at the
/// start of `buf`, and returns the rest from the first frame that is not one (or is not whole).
///
/// Exactly the frames on which `parse_header` (as a client) succeeds with `fin`, a text or
/// binary opcode and no mask, and which the general path reports unchanged while no message is
/// in progress: byte 0 is `0x81` or `0x82` (FIN, no reserved bits), byte 1 has the mask bit
/// clear.
#[inline(always)]
fn scan<'a>(mut buf: &'a [u8], on: &mut impl FnMut(Frame<'_>)) -> &'a [u8] {
    while let [b0 @ (0x81 | 0x82), b1 @ 0..=126, ..] = *buf {
        let (at, len) = if b1 < 126 {
            (2, usize::from(b1))
        } else if let [_, _, hi, lo, ..] = *buf {
            (4, usize::from(u16::from_be_bytes([hi, lo])))
        } else {
            break;
        };
        let Some(payload) = buf.get(at..at + len) else {
            break;
        };
        on(Frame::Message {
            binary: b0 == 0x82,
            head: &payload[..len.min(HEAD_KEEP)],
            len: len as u64,
            compressed: false,
        });
        buf = &buf[at + len..];
    }
    buf
}

#[cfg(test)]
mod tests;
