//! Inbound permessage-deflate through a [`Session`]: RSV1 rules (RFC 7692 §6.1), bounded
//! inflation (1009), corrupt data and bad UTF-8 after inflating (1007), fragmented compressed
//! messages split across reads at every offset.

use std::time::{Duration, Instant};

use super::*;
use crate::proto::frame::FrameHeader;
use crate::proto::mask;
use crate::proto::session::{Event, Limits, Session};

const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
const MAX: usize = 1024;

fn limits() -> Limits {
    Limits {
        max_message: MAX,
        ping_interval: Duration::from_secs(30),
        idle_timeout: Duration::from_secs(75),
        close_timeout: Duration::from_secs(2),
    }
}

/// A masked client frame; `rsv1` sets the per-message-compressed bit.
fn client(fin: bool, rsv1: bool, opcode: OpCode, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let header = FrameHeader {
        fin,
        opcode,
        mask: Some(KEY),
        payload_len: payload.len() as u64,
    };
    frame::write_header(&mut out, &header);
    if rsv1 {
        out[0] |= frame::RSV1;
    }
    let start = out.len();
    out.extend_from_slice(payload);
    mask::apply_mask_naive(&mut out[start..], KEY, 0);
    out
}

/// A compressed message as a client sends it, in frames of the compressed bytes cut at `cuts`.
fn compressed_message(opcode: OpCode, compressed: &[u8], cuts: &[usize]) -> Vec<u8> {
    let mut pieces = Vec::new();
    let mut rest = compressed;
    for &c in cuts {
        let c = c.min(rest.len());
        pieces.push(&rest[..c]);
        rest = &rest[c..];
    }
    pieces.push(rest);
    let last = pieces.len() - 1;
    let mut out = Vec::new();
    for (i, piece) in pieces.iter().enumerate() {
        let op = if i == 0 { opcode } else { OpCode::Continuation };
        out.extend(client(i == last, i == 0, op, piece));
    }
    out
}

#[derive(Debug, Default, PartialEq)]
struct Outcome {
    messages: Vec<(OpCode, Vec<u8>)>,
    sent: usize,
    close_code: Option<u16>,
}

/// Feeds `input` to `session` in reads cut at `cuts`, with one inflater.
fn feed_at(session: &mut Session, input: &[u8], cuts: &[usize]) -> Outcome {
    let now = Instant::now();
    let mut inflater = Inflater::new();
    let mut out = Outcome::default();
    let mut data = input.to_vec();
    let mut bounds = vec![0];
    bounds.extend(cuts.iter().copied().filter(|&c| c < data.len()));
    bounds.push(data.len());
    for w in bounds.windows(2) {
        let piece = &mut data[w[0]..w[1]];
        let mut pos = 0;
        while pos < piece.len() {
            let (used, event) = session.handle_bytes_with(&mut piece[pos..], now, &mut inflater);
            assert!(used > 0 || event.is_some(), "no progress");
            pos += used;
            match event {
                Some(Event::Message { opcode, payload }) => {
                    out.messages.push((opcode, payload.to_vec()))
                }
                Some(Event::Send(_)) => out.sent += 1,
                Some(Event::Close(f)) => {
                    out.close_code = f.map(|f| u16::from_be_bytes([f[2], f[3]]))
                }
                None => {}
            }
        }
    }
    out
}

fn deflate_session() -> Session {
    Session::with_deflate(limits(), Instant::now())
}

fn run(input: &[u8]) -> Outcome {
    feed_at(&mut deflate_session(), input, &[])
}

#[test]
fn rfc_hello_in_one_frame() {
    let input = client(
        true,
        true,
        OpCode::Text,
        &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00],
    );
    let out = run(&input);
    assert_eq!(out.messages, vec![(OpCode::Text, b"Hello".to_vec())]);
    assert_eq!(out.close_code, None);
    // Without an inflater handed in, a fresh one is used.
    let mut s = deflate_session();
    let mut data = input.clone();
    let (used, event) = s.handle_bytes(&mut data, Instant::now());
    assert_eq!(used, input.len());
    assert!(matches!(event, Some(Event::Message { payload, .. }) if &*payload == b"Hello"));
}

#[test]
fn a_fragmented_compressed_message_split_at_every_offset() {
    let text = "tick {\"cpu\": 12.5, \"mem\": 40} € ".repeat(12);
    let compressed = oracle_compress(text.as_bytes(), 6);
    let mut input = compressed_message(OpCode::Text, &compressed[..], &[5, 1, 40]);
    // A ping between fragments, then a plain message, then another compressed one.
    let ping = client(true, false, OpCode::Ping, b"hb");
    let first_end = client(false, true, OpCode::Text, &compressed[..5]).len();
    input.splice(first_end..first_end, ping);
    input.extend(client(true, false, OpCode::Binary, &[1, 2, 3]));
    input.extend(compressed_message(
        OpCode::Binary,
        &oracle_compress(&[7; 300], 1),
        &[],
    ));
    let expected = vec![
        (OpCode::Text, text.clone().into_bytes()),
        (OpCode::Binary, vec![1, 2, 3]),
        (OpCode::Binary, vec![7; 300]),
    ];
    for cut in 0..=input.len() {
        let out = feed_at(&mut deflate_session(), &input, &[cut]);
        assert_eq!(out.messages, expected, "cut at {cut}");
        assert_eq!((out.sent, out.close_code), (1, None), "cut at {cut}");
    }
    for chunk in [1, 2, 3, 7] {
        let cuts: Vec<usize> = (chunk..input.len()).step_by(chunk).collect();
        let out = feed_at(&mut deflate_session(), &input, &cuts);
        assert_eq!(out.messages, expected, "chunk {chunk}");
    }
}

#[test]
fn an_idle_deflate_session_holds_nothing() {
    let mut s = deflate_session();
    let compressed = oracle_compress(&[b'a'; 500], 6);
    let input = compressed_message(OpCode::Binary, &compressed, &[3]);
    let half = feed_at(&mut s, &input[..input.len() - 2], &[]);
    assert!(half.messages.is_empty());
    assert!(s.buffered_bytes() > 0, "the compressed bytes so far");
    let rest = feed_at(&mut s, &input[input.len() - 2..], &[]);
    assert_eq!(rest.messages, vec![(OpCode::Binary, vec![b'a'; 500])]);
    assert_eq!(s.buffered_bytes(), 0);
}

/// One test per input: `name: bytes => close code;`, fed whole and a byte at a time.
macro_rules! violations {
    ($($name:ident: $input:expr => $code:expr;)*) => {$(
        #[test]
        fn $name() {
            let input: Vec<u8> = $input;
            for cuts in [vec![], (1..input.len()).collect::<Vec<_>>()] {
                let out = run(&input);
                let split = feed_at(&mut deflate_session(), &input, &cuts);
                assert_eq!(out, split);
                assert_eq!(out.close_code, Some($code), "{out:?}");
                assert!(out.messages.is_empty());
            }
        }
    )*};
}

violations! {
    rsv1_on_a_continuation: {
        let mut f = client(false, true, OpCode::Text, &oracle_compress(b"abc", 1));
        f.extend(client(true, true, OpCode::Continuation, &[0x00]));
        f
    } => 1002;
    rsv1_on_an_uncompressed_messages_continuation: {
        let mut f = client(false, false, OpCode::Text, b"abc");
        f.extend(client(true, true, OpCode::Continuation, b"def"));
        f
    } => 1002;
    rsv1_on_a_ping: client(true, true, OpCode::Ping, b"") => 1002;
    rsv1_on_a_pong: client(true, true, OpCode::Pong, b"") => 1002;
    rsv1_on_a_close: client(true, true, OpCode::Close, &1000u16.to_be_bytes()) => 1002;
    rsv2_with_deflate: { let mut f = client(true, false, OpCode::Text, b"a"); f[0] |= 0x20; f } => 1002;
    corrupt_data: client(true, true, OpCode::Binary, &[0xff; 8]) => 1007;
    corrupt_fragmented: {
        let mut f = client(false, true, OpCode::Binary, &[0x00, 0x05]);
        f.extend(client(true, false, OpCode::Continuation, &[0x00, 0x00, 0x00, b'H']));
        f
    } => 1007;
    invalid_utf8_after_inflating: client(true, true, OpCode::Text, &oracle_compress(b"ok \xff ok", 6)) => 1007;
    truncated_utf8_after_inflating: client(true, true, OpCode::Text, &oracle_compress(b"ok \xe2\x82", 6)) => 1007;
    one_byte_over_once_inflated: client(true, true, OpCode::Binary, &oracle_compress(&[0; MAX + 1], 6)) => 1009;
    a_zip_bomb: client(true, true, OpCode::Binary, &zip_bomb(10 << 20)) => 1009;
    a_fragmented_zip_bomb: compressed_message(OpCode::Text, &zip_bomb(1 << 20), &[10, 10]) => 1009;
    too_big_on_the_wire: {
        let mut header = vec![0xc2, 0xfe];
        header.extend((compressed_limit(MAX) as u16 + 1).to_be_bytes());
        header.extend(KEY);
        header
    } => 1009;
}

#[test]
fn rsv1_without_negotiation_is_1002() {
    let input = client(
        true,
        true,
        OpCode::Text,
        &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00],
    );
    let out = feed_at(&mut Session::new(limits(), Instant::now()), &input, &[]);
    assert_eq!(out.close_code, Some(1002));
    assert!(out.messages.is_empty());
}

#[test]
fn exactly_the_limit_once_inflated_is_accepted() {
    // An incompressible message of exactly the limit, "compressed" as stored blocks, takes
    // more bytes on the wire than the limit; it is still accepted.
    let payload = noise(MAX);
    let compressed = oracle_compress(&payload, 0);
    assert!(compressed.len() > MAX);
    let out = run(&client(true, true, OpCode::Binary, &compressed));
    assert_eq!(out.messages, vec![(OpCode::Binary, payload)]);
}

#[test]
fn after_our_close_compressed_messages_are_dropped() {
    let t0 = Instant::now();
    let mut s = Session::with_deflate(limits(), t0);
    s.close(1001, "bye", t0).unwrap();
    let mut input = client(true, true, OpCode::Text, &oracle_compress(b"late", 6));
    input.extend(compressed_message(
        OpCode::Binary,
        &oracle_compress(&[1; 600], 6),
        &[4],
    ));
    let out = feed_at(&mut s, &input, &[3, 20]);
    assert_eq!(out, Outcome::default());
    assert_eq!(s.buffered_bytes(), 0);
    let close = client(true, false, OpCode::Close, &1000u16.to_be_bytes());
    assert_eq!(
        feed_at(&mut s, &close, &[]).close_code,
        None,
        "ours was sent already"
    );
}

proptest! {
    #[test]
    fn any_split_of_mixed_messages_gives_the_same_messages(
        messages in proptest::collection::vec(
            (payload(), any::<bool>(), proptest::collection::vec(1usize..60, 0..4)),
            1..5,
        ),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..10),
    ) {
        let mut stream = Vec::new();
        let mut expected = Vec::new();
        for (payload, compress, frames) in &messages {
            let payload = &payload[..payload.len().min(MAX)];
            if *compress {
                stream.extend(compressed_message(OpCode::Binary, &oracle_compress(payload, 6), frames));
            } else {
                stream.extend(client(true, false, OpCode::Binary, payload));
            }
            expected.push((OpCode::Binary, payload.to_vec()));
        }
        let mut points: Vec<usize> = cuts.iter().map(|c| c.index(stream.len() + 1)).collect();
        points.sort_unstable();
        let out = feed_at(&mut deflate_session(), &stream, &points);
        prop_assert_eq!(out.close_code, None);
        prop_assert_eq!(out.messages, expected);
    }
}
