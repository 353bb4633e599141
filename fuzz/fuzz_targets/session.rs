//! `Session::handle_bytes` (server role) over arbitrary bytes, split into reads the input picks.
//!
//! Input layout: `[limits][close][c0 c1 c2 c3][stream...]`.
//! - `limits & 3` picks `max_message` from [`MAX_MESSAGES`].
//! - `close & 0x80` makes the server start its own close after `stream.len() * (close & 0x7f)
//!   / 127` bytes (the `CloseSent` state: data discarded, no pongs, no second close frame).
//! - `c0..c3` are read sizes (`c + 1`, so 1..=256 bytes), used in turn.
//!
//! Invariants, checked on every call:
//! - `used` is in `1..=len` for non-empty input, so the caller's loop always progresses;
//! - after `Event::Close` every later call consumes all its input and returns no event;
//! - `buffered_bytes()` stays within what the limits allow ([`buffer_bound`]), and an idle
//!   session (just after a message, or after a close) holds at most the control buffer;
//! - a message is Text or Binary, at most `max_message` bytes, and Text is UTF-8;
//! - a `Send` is one unmasked pong of at most 125 bytes; a close is one unmasked close frame
//!   with a valid code, sent only if the server had not sent its own;
//! - nothing but a bare close (`Close(None)`) comes after the server's own close;
//! - `is_open()` is false exactly once the server has started its own close: a close the
//!   session answers (`Event::Close`) leaves it true, so data queued before it still goes.
//!
//! Differential: the stream fed in the input's read sizes, whole (cut only where the server
//! closes), and one byte at a time (for short streams) gives the same events.
#![no_main]

use std::time::{Duration, Instant};

use fanout::proto::Decoded;
use fanout::proto::close;
use fanout::proto::frame::{self, MAX_CONTROL_PAYLOAD, OpCode, Role};
use fanout::proto::session::{Event, Limits, Session};
use libfuzzer_sys::fuzz_target;

/// Small limits, so the size rules are reached by real payloads, not only by announced lengths.
const MAX_MESSAGES: [usize; 4] = [4096, 64, 7, 0];

/// Bytes before the stream: limits selector, close selector, four read sizes.
const PREFIX: usize = 6;

/// Streams up to this long are also fed one byte at a time.
const BYTEWISE_MAX: usize = 1024;

/// What a run produced, in order; payloads copied so runs can be compared.
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    Message(OpCode, Vec<u8>),
    Send(Vec<u8>),
    Close(Option<Vec<u8>>),
    /// The server's own close (`Session::close`), with the frame it returned.
    ServerClose(Option<Vec<u8>>),
}

/// The most heap a session may hold: a partial message grows by `Vec`'s amortized doubling, so
/// up to twice `max_message` (and never below `Vec`'s 8-byte minimum capacity), plus the control
/// buffer, likewise up to twice 125.
fn buffer_bound(max_message: usize) -> usize {
    2 * max_message.max(8) + control_bound()
}

/// The most an idle session (no message in progress) may hold: the control buffer.
fn control_bound() -> usize {
    2 * MAX_CONTROL_PAYLOAD
}

fn limits(max_message: usize) -> Limits {
    Limits {
        max_message,
        ping_interval: Duration::from_secs(30),
        idle_timeout: Duration::from_secs(60),
        close_timeout: Duration::from_secs(2),
    }
}

/// Splits `frame` (a server frame) into header and payload, checking it parses as one whole
/// unmasked frame with `opcode`.
fn server_frame(frame: &[u8], opcode: OpCode) -> &[u8] {
    let (h, n) = match frame::parse_header(frame, Role::Client) {
        Ok(Decoded::Complete(done)) => done,
        other => panic!("server frame {frame:02x?} does not parse: {other:?}"),
    };
    assert_eq!(h.opcode, opcode, "{frame:02x?}");
    assert!(h.fin && h.mask.is_none(), "{frame:02x?}");
    assert_eq!(n as u64 + h.payload_len, frame.len() as u64, "{frame:02x?}");
    &frame[n..]
}

/// Feeds `stream` in reads ending at each of `cuts` (ascending, the last one `stream.len()`),
/// calling `Session::close` once `close_at` bytes have been fed.
fn run(stream: &[u8], cuts: &[usize], close_at: Option<usize>, max_message: usize) -> Vec<Seen> {
    let now = Instant::now();
    let mut s = Session::new(limits(max_message), now);
    let mut seen = Vec::new();
    let mut closed = false;
    let mut server_closed = false;
    let mut start = 0;
    for &end in cuts {
        if close_at == Some(start) && !server_closed {
            seen.push(server_close(&mut s, closed, now));
            server_closed = true;
        }
        let mut piece = stream[start..end].to_vec();
        start = end;
        let mut pos = 0;
        while pos < piece.len() {
            let rest = &mut piece[pos..];
            let len = rest.len();
            let (used, event) = s.handle_bytes(rest, now);
            assert!(used > 0, "no progress on {len} bytes");
            assert!(used <= len, "used {used} of {len} bytes");
            if closed {
                assert_eq!(used, len, "input after a close must all be consumed");
                assert!(event.is_none(), "event after a close: {event:?}");
            }
            let idle = match event {
                None => false,
                Some(Event::Message { opcode, payload }) => {
                    assert!(!server_closed, "message delivered after our close");
                    assert!(
                        matches!(opcode, OpCode::Text | OpCode::Binary),
                        "{opcode:?}"
                    );
                    assert!(
                        payload.len() <= max_message,
                        "{} > {max_message}",
                        payload.len()
                    );
                    if opcode == OpCode::Text {
                        assert!(std::str::from_utf8(&payload).is_ok(), "text not UTF-8");
                    }
                    seen.push(Seen::Message(opcode, payload.to_vec()));
                    true
                }
                Some(Event::Send(pong)) => {
                    assert!(!server_closed, "pong sent after our close");
                    assert!(server_frame(&pong, OpCode::Pong).len() <= MAX_CONTROL_PAYLOAD);
                    seen.push(Seen::Send(pong));
                    false
                }
                Some(Event::Close(frame)) => {
                    // `is_open` says whether data may still be queued before the answer: only
                    // our own close ends that (see `Session::is_open`).
                    assert_eq!(s.is_open(), !server_closed);
                    match &frame {
                        Some(f) => {
                            assert!(!server_closed, "second close frame after our close");
                            let payload = server_frame(f, OpCode::Close);
                            match close::parse_close_payload(payload) {
                                Ok(Some((code, _))) => assert!(close::is_valid_code(code)),
                                other => panic!("close payload {payload:02x?}: {other:?}"),
                            }
                        }
                        None => assert!(server_closed, "no close frame, but none was sent"),
                    }
                    seen.push(Seen::Close(frame));
                    closed = true;
                    true
                }
            };
            let held = s.buffered_bytes();
            assert!(held <= buffer_bound(max_message), "buffered {held} bytes");
            if idle {
                assert!(held <= control_bound(), "idle session holds {held} bytes");
            }
            pos += used;
        }
    }
    if close_at == Some(start) && !server_closed {
        seen.push(server_close(&mut s, closed, now));
    }
    seen
}

/// Starts the server's own close, checking what `Session::close` returns.
fn server_close(s: &mut Session, closed: bool, now: Instant) -> Seen {
    let frame = s.close(close::GOING_AWAY, "server shutting down", now);
    match &frame {
        Some(f) => {
            assert!(
                !closed,
                "close() after the connection closed returned a frame"
            );
            let payload = server_frame(f, OpCode::Close);
            assert_eq!(&payload[..2], &close::GOING_AWAY.to_be_bytes());
        }
        None => assert!(closed, "close() on an open session returned no frame"),
    }
    assert!(!s.is_open());
    assert!(
        s.buffered_bytes() <= control_bound(),
        "{}",
        s.buffered_bytes()
    );
    Seen::ServerClose(frame)
}

/// Read boundaries: reads of `sizes` bytes in turn (all at once for `None`), also cut at
/// `close_at`, ending at `len`.
fn cuts(len: usize, sizes: Option<&[usize]>, close_at: Option<usize>) -> Vec<usize> {
    let mut cuts = vec![len];
    if let Some(sizes) = sizes {
        let mut at = 0;
        for &size in sizes.iter().cycle() {
            at += size;
            if at >= len {
                break;
            }
            cuts.push(at);
        }
    }
    cuts.extend(close_at);
    cuts.sort_unstable();
    cuts.dedup();
    cuts
}

fuzz_target!(|data: &[u8]| {
    let Some((prefix, stream)) = data.split_at_checked(PREFIX) else {
        return;
    };
    let max_message = MAX_MESSAGES[usize::from(prefix[0] & 3)];
    let close_at =
        (prefix[1] & 0x80 != 0).then(|| stream.len() * usize::from(prefix[1] & 0x7f) / 127);
    let sizes: [usize; 4] = std::array::from_fn(|i| usize::from(prefix[2 + i]) + 1);
    let len = stream.len();

    let whole = run(stream, &cuts(len, None, close_at), close_at, max_message);
    let split = run(
        stream,
        &cuts(len, Some(&sizes), close_at),
        close_at,
        max_message,
    );
    assert_eq!(split, whole, "reads of {sizes:?} vs whole");
    if len <= BYTEWISE_MAX {
        let bytewise = run(
            stream,
            &cuts(len, Some(&[1]), close_at),
            close_at,
            max_message,
        );
        assert_eq!(bytewise, whole, "one byte at a time vs whole");
    }
});
