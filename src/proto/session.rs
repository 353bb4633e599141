//! One connection's protocol state after the handshake (RFC 6455 §5, §6.2, §7).
//!
//! [`Session::handle_bytes`] takes the bytes a read produced and returns at most one
//! [`Event`] at a time together with how many bytes it consumed, so nothing is queued inside the
//! session and an idle session holds no buffers. It enforces every receive-side rule: masking,
//! fragmentation, control-frame rules, the message size limit (checked from the header, before
//! anything is buffered), UTF-8 of text (fail fast, across fragments) and the close handshake.
//!
//! Timers (ping interval, idle timeout, close wait) are state here too, but the clock is the
//! caller's: every input that needs the time takes an `Instant`.
//!
//! With permessage-deflate negotiated ([`Session::with_deflate`], RFC 7692) a message whose
//! first frame has RSV1 set is compressed. Its compressed bytes are gathered like any
//! fragmented message (the limit on them is [`compressed_limit`]), and only once it is whole
//! is it inflated, by the loop's [`Inflater`] handed to [`Session::handle_bytes_with`], then
//! checked as UTF-8 if it is text. So no inflate state lives in a session between calls.

use std::time::{Duration, Instant};

use super::deflate::{Inflater, compressed_limit};
use super::frame::{self, FrameHeader, OpCode, Role};
use super::utf8::Utf8Validator;
use super::{Decoded, ProtocolError, close, mask};

/// The limits and intervals a session enforces.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Largest message (sum of fragments) accepted; larger closes with 1009.
    pub max_message: usize,
    /// How often the server pings.
    pub ping_interval: Duration,
    /// How long a peer may send nothing before it is closed.
    pub idle_timeout: Duration,
    /// How long to wait for the peer's close after sending ours.
    pub close_timeout: Duration,
}

/// A complete message's payload: borrowed straight from the read buffer (unmasked in place)
/// when the whole message arrived in one frame and one read, owned when it was reassembled.
#[derive(Debug, PartialEq, Eq)]
pub enum Payload<'a> {
    /// Unmasked in place in the caller's read buffer: no copy was made.
    Borrowed(&'a [u8]),
    /// Reassembled from several frames or reads.
    Owned(Vec<u8>),
}

impl std::ops::Deref for Payload<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Payload::Borrowed(b) => b,
            Payload::Owned(v) => v,
        }
    }
}

/// What the caller must do after feeding bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// A complete text or binary message arrived.
    Message {
        /// [`OpCode::Text`] or [`OpCode::Binary`].
        opcode: OpCode,
        /// The unmasked payload (valid UTF-8 for text).
        payload: Payload<'a>,
    },
    /// Send this control frame (a pong) ahead of queued data, but after a partly written frame.
    Send(Vec<u8>),
    /// The connection is over: send `frame` (if any) after what is queued, flush, then close
    /// the TCP connection. Later input is discarded.
    Close(Option<Vec<u8>>),
}

/// What a timer produced.
#[derive(Debug, PartialEq, Eq)]
pub enum Timeout {
    /// Send this ping frame.
    Ping(Vec<u8>),
    /// The peer was idle too long: send this close frame, then wait for its close.
    Idle(Vec<u8>),
    /// Our close was not answered in time: drop the connection.
    CloseExpired,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Data flows both ways.
    Open,
    /// We sent a close and wait for the peer's; its data messages are discarded.
    CloseSent { deadline: Instant },
    /// Both sides are done (or the peer failed): input is discarded.
    Closed,
}

/// The frame whose payload is arriving.
#[derive(Clone, Copy, Debug)]
struct InFrame {
    header: FrameHeader,
    key: [u8; 4],
    received: u64,
    /// RSV1: this frame starts a compressed message.
    compressed: bool,
}

/// A fragmented or partly received data message.
#[derive(Debug)]
struct InMessage {
    opcode: OpCode,
    /// The payload so far; left empty once we have sent a close, when the rest is only checked.
    buf: Vec<u8>,
    /// Payload bytes received so far (what `--max-message` limits).
    len: u64,
    utf8: Utf8Validator,
    /// `buf` holds compressed bytes, inflated (and UTF-8 checked) once the message is whole.
    compressed: bool,
}

impl InMessage {
    fn new(opcode: OpCode, compressed: bool) -> Box<Self> {
        Box::new(InMessage {
            opcode,
            buf: Vec::new(),
            len: 0,
            utf8: Utf8Validator::new(),
            compressed,
        })
    }
}

/// Per-connection protocol state (server role).
#[derive(Debug)]
pub struct Session {
    limits: Limits,
    state: State,
    /// A frame header split across reads (at most 13 bytes wait here).
    header_buf: [u8; frame::MAX_HEADER_LEN],
    header_len: u8,
    frame: Option<InFrame>,
    /// `None` between messages, so an idle session owns no heap memory.
    message: Option<Box<InMessage>>,
    /// A control frame's payload split across reads (≤ 125 bytes).
    control: Vec<u8>,
    last_activity: Instant,
    next_ping: Instant,
    /// We started the close (see [`Session::is_open`]).
    close_started: bool,
    /// permessage-deflate was negotiated: RSV1 marks a compressed message.
    deflate: bool,
}

impl Session {
    /// A session that has just completed its handshake at `now`.
    pub fn new(limits: Limits, now: Instant) -> Self {
        Session {
            limits,
            state: State::Open,
            header_buf: [0; frame::MAX_HEADER_LEN],
            header_len: 0,
            frame: None,
            message: None,
            control: Vec::new(),
            last_activity: now,
            next_ping: now + limits.ping_interval,
            close_started: false,
            deflate: false,
        }
    }

    /// A session whose handshake agreed on permessage-deflate: a data message whose first
    /// frame has RSV1 set is compressed. Feed it with [`Self::handle_bytes_with`].
    pub fn with_deflate(limits: Limits, now: Instant) -> Self {
        Session {
            deflate: true,
            ..Session::new(limits, now)
        }
    }

    /// Whether permessage-deflate was negotiated.
    pub fn deflate(&self) -> bool {
        self.deflate
    }

    /// Heap bytes held for input not yet delivered: a partly received data message, and the
    /// buffer for control payloads split across reads. Zero between messages until a control
    /// frame has been split.
    pub fn buffered_bytes(&self) -> usize {
        self.message.as_ref().map_or(0, |m| m.buf.capacity()) + self.control.capacity()
    }

    /// Whether data messages may still be sent to the peer: until the session starts a close
    /// itself ([`Session::close`], or the idle timeout). A close frame the session answers
    /// with (to the peer's close, or to a violation) is handed out in [`Event::Close`]; the
    /// caller may queue what it still has for the peer before it, then sends nothing more
    /// (RFC 6455 §5.5.1: no data after our Close).
    pub fn is_open(&self) -> bool {
        !self.close_started
    }

    /// Starts a server-initiated close: returns the close frame to send, or `None` if a close
    /// was already sent (or the session already closed). The session then waits
    /// `close_timeout` for the peer's close, and [`Self::is_open`] is false either way.
    pub fn close(&mut self, code: u16, reason: &str, now: Instant) -> Option<Vec<u8>> {
        // Whether or not a frame goes, the caller is done sending data.
        self.close_started = true;
        if self.state != State::Open {
            return None;
        }
        self.state = State::CloseSent {
            deadline: now + self.limits.close_timeout,
        };
        // A message in progress will never be delivered: its bytes go now. The rest of it is
        // still checked as it arrives (the peer may finish it before answering our close).
        if let Some(m) = &mut self.message {
            m.buf = Vec::new();
        }
        Some(close_frame(code, reason))
    }

    /// When [`Self::handle_timeout`] next has something to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Open => Some(
                self.next_ping
                    .min(self.last_activity + self.limits.idle_timeout),
            ),
            State::CloseSent { deadline } => Some(deadline),
            State::Closed => None,
        }
    }

    /// Runs the timers that are due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) -> Option<Timeout> {
        match self.state {
            State::Open if now >= self.last_activity + self.limits.idle_timeout => self
                .close(close::GOING_AWAY, "idle timeout", now)
                .map(Timeout::Idle),
            State::Open if now >= self.next_ping => {
                self.next_ping = now + self.limits.ping_interval;
                Some(Timeout::Ping(frame::encode_frame(OpCode::Ping, &[])))
            }
            State::CloseSent { deadline } if now >= deadline => {
                self.state = State::Closed;
                Some(Timeout::CloseExpired)
            }
            _ => None,
        }
    }

    /// Feeds bytes read from the peer at `now`. Returns how many were consumed and at most one
    /// event; call again with the rest until everything is consumed. `data` is unmasked in place.
    ///
    /// For a session without deflate. One [`Self::with_deflate`] also works, but inflates each
    /// compressed message with a fresh [`Inflater`]: the loop should pass its own to
    /// [`Self::handle_bytes_with`].
    pub fn handle_bytes<'a>(
        &mut self,
        data: &'a mut [u8],
        now: Instant,
    ) -> (usize, Option<Event<'a>>) {
        self.handle(data, now, None)
    }

    /// [`Self::handle_bytes`], inflating compressed messages with `inflater` (the loop's one,
    /// reset for each message). A compressed message is always delivered as
    /// [`Payload::Owned`]; past `max_message` bytes once inflated it is 1009, invalid DEFLATE
    /// data is 1007 ([`ProtocolError::InvalidCompressedData`]) and so is text that is not
    /// UTF-8. After we have sent our close, compressed messages are dropped without inflating.
    pub fn handle_bytes_with<'a>(
        &mut self,
        data: &'a mut [u8],
        now: Instant,
        inflater: &mut Inflater,
    ) -> (usize, Option<Event<'a>>) {
        self.handle(data, now, Some(inflater))
    }

    fn handle<'a>(
        &mut self,
        data: &'a mut [u8],
        now: Instant,
        inflater: Option<&mut Inflater>,
    ) -> (usize, Option<Event<'a>>) {
        self.last_activity = now;
        let len = data.len();
        if self.state == State::Closed {
            return (len, None);
        }
        match self.decode(data, inflater) {
            Ok(done) => done,
            Err(e) => {
                // The stream cannot be trusted past a violation: fail the connection (§7.1.7),
                // with a close frame unless we have sent ours already (only one is sent).
                let frame =
                    (self.state == State::Open).then(|| close_frame(e.close_code(), e.reason()));
                self.state = State::Closed;
                self.message = None;
                (len, Some(Event::Close(frame)))
            }
        }
    }

    fn decode<'a>(
        &mut self,
        data: &'a mut [u8],
        mut inflater: Option<&mut Inflater>,
    ) -> Result<(usize, Option<Event<'a>>), ProtocolError> {
        let total = data.len();
        // What is left of `data`; chunks are split off it so a borrowed payload can be returned.
        let mut input = data;
        loop {
            let f = match self.frame {
                Some(f) => f,
                None => {
                    let (used, header) = self.read_header(input)?;
                    input = &mut std::mem::take(&mut input)[used..];
                    match header {
                        Some((header, compressed)) => self.start_frame(header, compressed)?,
                        None => return Ok((total - input.len(), None)),
                    }
                }
            };
            let remaining = f.header.payload_len - f.received;
            let avail = remaining.min(input.len() as u64) as usize;
            let (chunk, rest) = std::mem::take(&mut input).split_at_mut(avail);
            input = rest;
            let consumed = total - input.len();
            let opcode = f.header.opcode;

            // The common case: an unfragmented data message wholly inside this read is unmasked
            // in place and handed out without a copy.
            let whole = f.received == 0 && avail as u64 == remaining;
            if whole && f.header.fin && !opcode.is_control() && opcode != OpCode::Continuation {
                self.frame = None;
                mask::apply_mask(chunk, f.key, 0);
                if f.compressed {
                    if self.state == State::Open {
                        let payload = self.inflate(chunk, opcode, inflater.as_deref_mut())?;
                        let payload = Payload::Owned(payload);
                        return Ok((consumed, Some(Event::Message { opcode, payload })));
                    }
                } else if opcode == OpCode::Text && simdutf8::basic::from_utf8(chunk).is_err() {
                    return Err(ProtocolError::InvalidUtf8);
                } else if self.state == State::Open {
                    let payload = Payload::Borrowed(chunk);
                    return Ok((consumed, Some(Event::Message { opcode, payload })));
                }
            } else {
                self.frame = Some(f);
                if !self.take_payload(f, chunk)? {
                    return Ok((consumed, None));
                }
                self.frame = None;
                if let Some(event) = self.finish_frame(f.header, inflater.as_deref_mut())? {
                    return Ok((consumed, Some(event)));
                }
            }
            if input.is_empty() {
                return Ok((total, None));
            }
        }
    }

    /// Unmasks a piece of the current frame's payload into the control or message buffer
    /// (after our close, a data payload is unmasked in place, checked and dropped). Returns
    /// whether the frame is now complete.
    fn take_payload(&mut self, f: InFrame, chunk: &mut [u8]) -> Result<bool, ProtocolError> {
        if chunk.is_empty() {
            // Only the header has arrived: nothing to buffer yet (so a frame that then arrives
            // whole can still take the no-copy path).
            return Ok(f.received == f.header.payload_len);
        }
        let offset = f.received as usize;
        let opcode = f.header.opcode;
        if opcode.is_control() {
            mask::unmask_into(&mut self.control, chunk, f.key, offset);
        } else {
            let m = self
                .message
                .get_or_insert_with(|| InMessage::new(opcode, f.compressed));
            m.len += chunk.len() as u64;
            let piece = if self.state == State::Open {
                let start = m.buf.len();
                mask::unmask_into(&mut m.buf, chunk, f.key, offset);
                &m.buf[start..]
            } else {
                mask::apply_mask(chunk, f.key, offset);
                &chunk[..]
            };
            if m.opcode == OpCode::Text && !m.compressed && m.utf8.feed(piece).is_err() {
                return Err(ProtocolError::InvalidUtf8);
            }
        }
        let received = f.received + chunk.len() as u64;
        if let Some(cur) = self.frame.as_mut() {
            cur.received = received;
        }
        Ok(received == f.header.payload_len)
    }

    /// Parses a header from saved bytes plus `input`: the header with its RSV1 bit and the
    /// bytes of `input` it used, or `None` with all of `input` saved when it is incomplete.
    fn read_header(
        &mut self,
        input: &[u8],
    ) -> Result<(usize, Option<(FrameHeader, bool)>), ProtocolError> {
        let saved = self.header_len as usize;
        if saved == 0 {
            return match self.parse_header(input)? {
                Decoded::Complete((h, len, rsv1)) => Ok((len, Some((h, rsv1)))),
                Decoded::Partial => {
                    self.save_header(input);
                    Ok((input.len(), None))
                }
            };
        }
        let take = (frame::MAX_HEADER_LEN - saved).min(input.len());
        self.header_buf[saved..saved + take].copy_from_slice(&input[..take]);
        match self.parse_header(&self.header_buf[..saved + take])? {
            Decoded::Complete((h, len, rsv1)) => {
                self.header_len = 0;
                Ok((len - saved, Some((h, rsv1))))
            }
            Decoded::Partial => {
                self.header_len = (saved + take) as u8;
                Ok((take, None))
            }
        }
    }

    /// RSV1 is refused unless deflate was negotiated ([`frame::parse_header_deflate`]).
    fn parse_header(
        &self,
        buf: &[u8],
    ) -> Result<Decoded<(FrameHeader, usize, bool)>, ProtocolError> {
        if self.deflate {
            return frame::parse_header_deflate(buf, Role::Server);
        }
        Ok(match frame::parse_header(buf, Role::Server)? {
            Decoded::Complete((h, len)) => Decoded::Complete((h, len, false)),
            Decoded::Partial => Decoded::Partial,
        })
    }

    fn save_header(&mut self, input: &[u8]) {
        self.header_buf[..input.len()].copy_from_slice(input);
        self.header_len = input.len() as u8;
    }

    /// Applies the message-level rules to a new frame's header (§5.4) and the size limit (on
    /// the wire: a compressed message is checked again once inflated).
    fn start_frame(
        &mut self,
        header: FrameHeader,
        compressed: bool,
    ) -> Result<InFrame, ProtocolError> {
        let key = header.mask.ok_or(ProtocolError::UnmaskedFrame)?;
        let len = header.payload_len;
        let max = self.limits.max_message;
        match header.opcode {
            op if op.is_control() => self.control.clear(),
            OpCode::Continuation => {
                let m = self
                    .message
                    .as_mut()
                    .ok_or(ProtocolError::UnexpectedContinuation)?;
                let limit = if m.compressed {
                    compressed_limit(max)
                } else {
                    max as u64
                };
                if m.len + len > limit {
                    return Err(ProtocolError::MessageTooBig);
                }
            }
            opcode => {
                if self.message.is_some() {
                    return Err(ProtocolError::ExpectedContinuation);
                }
                let limit = if compressed {
                    compressed_limit(max)
                } else {
                    max as u64
                };
                if len > limit {
                    return Err(ProtocolError::MessageTooBig);
                }
                if !header.fin {
                    self.message = Some(InMessage::new(opcode, compressed));
                }
            }
        }
        let f = InFrame {
            header,
            key,
            received: 0,
            compressed,
        };
        self.frame = Some(f);
        Ok(f)
    }

    /// Inflates a whole compressed message and checks it (UTF-8 for text).
    fn inflate(
        &self,
        compressed: &[u8],
        opcode: OpCode,
        inflater: Option<&mut Inflater>,
    ) -> Result<Vec<u8>, ProtocolError> {
        let max = self.limits.max_message;
        match inflater {
            Some(inflater) => inflater.inflate_message(opcode, compressed, max),
            None => Inflater::new().inflate_message(opcode, compressed, max),
        }
    }

    /// A frame's payload is complete: act on it.
    fn finish_frame(
        &mut self,
        header: FrameHeader,
        inflater: Option<&mut Inflater>,
    ) -> Result<Option<Event<'static>>, ProtocolError> {
        match header.opcode {
            OpCode::Ping => {
                let pong = frame::encode_frame(OpCode::Pong, &self.control);
                Ok((self.state == State::Open).then_some(Event::Send(pong)))
            }
            OpCode::Pong => Ok(None),
            OpCode::Close => {
                let code = close::parse_close_payload(&self.control)?.map(|(code, _)| code);
                let reply = match self.state {
                    State::Open => Some(close_frame(code.unwrap_or(close::NORMAL), "")),
                    _ => None,
                };
                self.state = State::Closed;
                self.message = None;
                Ok(Some(Event::Close(reply)))
            }
            _ if !header.fin => Ok(None),
            _ => {
                let Some(mut m) = self.message.take() else {
                    return Ok(None);
                };
                if m.compressed {
                    // After our close nothing was kept: the message is dropped unread.
                    if self.state != State::Open {
                        return Ok(None);
                    }
                    let payload = self.inflate(&m.buf, m.opcode, inflater)?;
                    return Ok(Some(Event::Message {
                        opcode: m.opcode,
                        payload: Payload::Owned(payload),
                    }));
                }
                if m.opcode == OpCode::Text && m.utf8.finish().is_err() {
                    return Err(ProtocolError::InvalidUtf8);
                }
                let open = self.state == State::Open;
                Ok(open.then(|| Event::Message {
                    opcode: m.opcode,
                    payload: Payload::Owned(std::mem::take(&mut m.buf)),
                }))
            }
        }
    }
}

fn close_frame(code: u16, reason: &str) -> Vec<u8> {
    frame::encode_close_frame(code, reason)
}

#[cfg(test)]
mod tests;
