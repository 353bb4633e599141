//! A streaming reader of server frames (RFC 6455 §5.2, §5.4, §5.5) that buffers almost nothing.
//!
//! loadgen needs only the first [`HEAD_KEEP`] bytes of each message (the stamp), so payloads are
//! never copied in full: a frame wholly inside the read buffer is reported straight from it,
//! and a frame split across reads keeps just its head. A 16 KiB message costs no copy at all,
//! and an idle connection holds a couple of hundred bytes of reader state.

use fanout::proto::frame::{FrameHeader, MAX_HEADER_LEN, OpCode, Role, parse_header};
use fanout::proto::{Decoded, ProtocolError};

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
        /// The first `min(len, HEAD_KEEP)` bytes.
        head: &'a [u8],
        /// The message's length in bytes.
        len: u64,
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
}

impl FrameReader {
    /// Feeds the next bytes from the socket, reporting each complete message or control frame.
    pub fn feed(
        &mut self,
        mut buf: &[u8],
        mut on: impl FnMut(Frame<'_>),
    ) -> Result<(), ProtocolError> {
        loop {
            if self.cur.is_none() {
                if buf.is_empty() {
                    return Ok(());
                }
                let Some((h, used)) = self.take_header(buf)? else {
                    return Ok(());
                };
                buf = &buf[used..];
                self.start(h)?;
                // Fast path: a whole unfragmented data frame already in the buffer.
                if matches!(h.opcode, OpCode::Binary | OpCode::Text)
                    && h.fin
                    && buf.len() as u64 >= h.payload_len
                {
                    let (payload, rest) = buf.split_at(h.payload_len as usize);
                    let head = &payload[..payload.len().min(HEAD_KEEP)];
                    on(Frame::Message {
                        binary: self.binary,
                        head,
                        len: h.payload_len,
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
            self.finish(cur, &mut on);
        }
    }

    /// Completes a header from `buf` (and bytes saved from earlier reads); `None` when more
    /// bytes are needed (all of `buf` was saved). Returns the header and the bytes of `buf` used.
    fn take_header(&mut self, buf: &[u8]) -> Result<Option<(FrameHeader, usize)>, ProtocolError> {
        if self.hdr_len == 0 {
            return Ok(match parse_header(buf, Role::Client)? {
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
        Ok(match parse_header(&self.hdr[..old + take], Role::Client)? {
            Decoded::Complete((h, len)) => {
                self.hdr_len = 0;
                Some((h, len - old))
            }
            Decoded::Partial => {
                self.hdr_len = old + take;
                None
            }
        })
    }

    /// Checks a new frame against the fragmentation rules (§5.4) and starts reading it.
    fn start(&mut self, h: FrameHeader) -> Result<(), ProtocolError> {
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
    fn finish(&mut self, cur: Current, on: &mut impl FnMut(Frame<'_>)) {
        match cur.opcode {
            OpCode::Ping => on(Frame::Ping(&self.ctrl)),
            OpCode::Pong => on(Frame::Pong),
            OpCode::Close => {
                let code = (self.ctrl.len() >= 2)
                    .then(|| u16::from_be_bytes([self.ctrl[0], self.ctrl[1]]));
                on(Frame::Close(code));
            }
            OpCode::Text | OpCode::Binary | OpCode::Continuation if cur.fin => {
                let head = &self.head[..self.head_len];
                on(Frame::Message {
                    binary: self.binary,
                    head,
                    len: self.msg_len,
                });
                self.in_message = false;
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fanout::proto::frame::{encode_frame, write_header};

    #[derive(Debug, PartialEq)]
    enum Owned {
        Msg(bool, Vec<u8>, u64),
        Ping(Vec<u8>),
        Pong,
        Close(Option<u16>),
    }

    fn read_all(chunks: &[&[u8]]) -> Result<Vec<Owned>, ProtocolError> {
        let mut r = FrameReader::default();
        let mut out = Vec::new();
        for c in chunks {
            r.feed(c, |f| {
                out.push(match f {
                    Frame::Message { binary, head, len } => Owned::Msg(binary, head.to_vec(), len),
                    Frame::Ping(p) => Owned::Ping(p.to_vec()),
                    Frame::Pong => Owned::Pong,
                    Frame::Close(c) => Owned::Close(c),
                })
            })?;
        }
        Ok(out)
    }

    fn frame(fin: bool, opcode: OpCode, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        let h = FrameHeader {
            fin,
            opcode,
            mask: None,
            payload_len: payload.len() as u64,
        };
        write_header(&mut v, &h);
        v.extend_from_slice(payload);
        v
    }

    /// A stream with every length class, fragments, an interleaved ping, a pong and a close.
    fn stream() -> (Vec<u8>, Vec<Owned>) {
        let big: Vec<u8> = (0..70_000u32).map(|i| i as u8).collect();
        let mut s = Vec::new();
        s.extend(encode_frame(OpCode::Binary, &big[..5]));
        s.extend(encode_frame(OpCode::Text, b""));
        s.extend(encode_frame(OpCode::Binary, &big[..300]));
        s.extend(encode_frame(OpCode::Binary, &big));
        s.extend(frame(false, OpCode::Binary, &big[..10]));
        s.extend(frame(true, OpCode::Ping, b"hi"));
        s.extend(frame(false, OpCode::Continuation, &big[10..20]));
        s.extend(frame(true, OpCode::Continuation, &big[20..100]));
        s.extend(encode_frame(OpCode::Pong, b""));
        s.extend(encode_frame(OpCode::Close, &1001u16.to_be_bytes()));
        let h = |n: usize| big[..n.min(HEAD_KEEP)].to_vec();
        let want = vec![
            Owned::Msg(true, h(5), 5),
            Owned::Msg(false, vec![], 0),
            Owned::Msg(true, h(300), 300),
            Owned::Msg(true, h(70_000), 70_000),
            Owned::Ping(b"hi".to_vec()),
            Owned::Msg(true, h(100), 100),
            Owned::Pong,
            Owned::Close(Some(1001)),
        ];
        (s, want)
    }

    #[test]
    fn whole_stream_decodes() {
        let (s, want) = stream();
        assert_eq!(read_all(&[&s]).unwrap(), want);
    }

    #[test]
    fn every_split_point_and_byte_at_a_time_decode_the_same() {
        let (s, want) = stream();
        for cut in (0..s.len()).step_by(97).chain(0..40) {
            assert_eq!(
                read_all(&[&s[..cut], &s[cut..]]).unwrap(),
                want,
                "cut at {cut}"
            );
        }
        let bytes: Vec<&[u8]> = s[..400].chunks(1).chain(s[400..].chunks(7)).collect();
        assert_eq!(read_all(&bytes).unwrap(), want);
    }

    #[test]
    fn fragmentation_rules_are_enforced() {
        let cont = frame(true, OpCode::Continuation, b"x");
        assert_eq!(
            read_all(&[&cont]),
            Err(ProtocolError::UnexpectedContinuation)
        );
        let mut s = frame(false, OpCode::Text, b"a");
        s.extend(frame(true, OpCode::Binary, b"b"));
        assert_eq!(read_all(&[&s]), Err(ProtocolError::ExpectedContinuation));
        let masked = fanout::proto::frame::encode_masked_frame(OpCode::Binary, b"m", [1, 2, 3, 4]);
        assert_eq!(read_all(&[&masked]), Err(ProtocolError::MaskedFrame));
    }
}
