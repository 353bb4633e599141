//! Unit tests for the session: reassembly, control frames between fragments, UTF-8 fail-fast,
//! the close handshake, heartbeat timers.

use super::*;

const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

fn limits() -> Limits {
    Limits {
        max_message: 1024,
        ping_interval: Duration::from_secs(30),
        idle_timeout: Duration::from_secs(75),
        close_timeout: Duration::from_secs(2),
    }
}

/// A masked client frame with explicit FIN and opcode.
fn client(fin: bool, opcode: OpCode, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let header = FrameHeader {
        fin,
        opcode,
        mask: Some(KEY),
        payload_len: payload.len() as u64,
    };
    frame::write_header(&mut out, &header);
    let start = out.len();
    out.extend_from_slice(payload);
    mask::apply_mask_naive(&mut out[start..], KEY, 0);
    out
}

/// What feeding `input` in pieces of `chunk` bytes produces: messages as (opcode, payload),
/// frames to send, and the close frame if the connection ended.
#[derive(Debug, Default, PartialEq)]
struct Outcome {
    messages: Vec<(OpCode, Vec<u8>)>,
    sent: Vec<Vec<u8>>,
    closed: Option<Option<Vec<u8>>>,
}

fn feed(session: &mut Session, input: &[u8], chunk: usize) -> Outcome {
    let now = Instant::now();
    let mut out = Outcome::default();
    let mut data = input.to_vec();
    for piece in data.chunks_mut(chunk.max(1)) {
        let mut pos = 0;
        while pos < piece.len() {
            let (used, event) = session.handle_bytes(&mut piece[pos..], now);
            assert!(used > 0 || event.is_some(), "no progress");
            pos += used;
            match event {
                Some(Event::Message { opcode, payload }) => {
                    out.messages.push((opcode, payload.to_vec()))
                }
                Some(Event::Send(f)) => out.sent.push(f),
                Some(Event::Close(f)) => out.closed = Some(f),
                None => {}
            }
        }
    }
    out
}

fn run(input: &[u8], chunk: usize) -> Outcome {
    feed(&mut Session::new(limits(), Instant::now()), input, chunk)
}

fn close_with(code: u16) -> Option<Option<Vec<u8>>> {
    Some(Some(close_frame(code, "")))
}

fn close_code(outcome: &Outcome) -> Option<u16> {
    let f = outcome.closed.as_ref()?.as_ref()?;
    Some(u16::from_be_bytes([f[2], f[3]]))
}

#[test]
fn single_frame_message_is_borrowed_and_unmasked() {
    let mut input = client(true, OpCode::Text, b"Hello");
    let mut s = Session::new(limits(), Instant::now());
    let (used, event) = s.handle_bytes(&mut input, Instant::now());
    assert_eq!(used, 11);
    assert_eq!(
        event,
        Some(Event::Message {
            opcode: OpCode::Text,
            payload: Payload::Borrowed(b"Hello")
        })
    );
}

#[test]
fn fragments_reassemble_with_an_interleaved_ping_at_every_split() {
    let mut input = client(false, OpCode::Text, b"Hel");
    input.extend(client(true, OpCode::Ping, b"p!"));
    input.extend(client(false, OpCode::Continuation, b"l"));
    input.extend(client(true, OpCode::Continuation, b"o \xe2\x82\xac"));
    input.extend(client(true, OpCode::Binary, &[0, 1, 2]));
    for chunk in 1..=input.len() {
        let out = run(&input, chunk);
        assert_eq!(
            out.messages,
            vec![
                (OpCode::Text, "Hello €".as_bytes().to_vec()),
                (OpCode::Binary, vec![0, 1, 2])
            ],
            "chunk {chunk}"
        );
        assert_eq!(out.sent, vec![vec![0x8a, 2, b'p', b'!']], "chunk {chunk}");
        assert_eq!(out.closed, None);
    }
}

#[test]
fn header_alone_then_payload_then_another_message() {
    // Regression: a frame whose header came in one read and whole payload in the next
    // must not leave a half-started message behind.
    let first = client(true, OpCode::Text, b"abc");
    let mut s = Session::new(limits(), Instant::now());
    assert_eq!(feed(&mut s, &first[..6], 64), Outcome::default());
    let mut rest = first[6..].to_vec();
    rest.extend(client(true, OpCode::Binary, b"next"));
    let out = feed(&mut s, &rest, 64);
    assert_eq!(
        out.messages,
        vec![
            (OpCode::Text, b"abc".to_vec()),
            (OpCode::Binary, b"next".to_vec())
        ]
    );
    assert_eq!(out.closed, None);
}

#[test]
fn empty_messages_are_delivered() {
    let mut input = client(true, OpCode::Binary, b"");
    input.extend(client(false, OpCode::Text, b""));
    input.extend(client(true, OpCode::Continuation, b""));
    let out = run(&input, 100);
    assert_eq!(
        out.messages,
        vec![(OpCode::Binary, vec![]), (OpCode::Text, vec![])]
    );
}

macro_rules! violations {
    ($($name:ident: $input:expr => $code:expr;)*) => {$(
        #[test]
        fn $name() {
            let input: Vec<u8> = $input;
            for chunk in [1, 2, 3, input.len()] {
                let out = run(&input, chunk);
                assert_eq!(close_code(&out), Some($code), "chunk {chunk}: {out:?}");
                assert!(out.messages.is_empty(), "chunk {chunk}");
            }
        }
    )*};
}

violations! {
    unmasked_frame: vec![0x81, 0x00] => 1002;
    reserved_bits: { let mut f = client(true, OpCode::Text, b"a"); f[0] |= 0x40; f } => 1002;
    reserved_opcode: { let mut f = client(true, OpCode::Text, b"a"); f[0] = 0x83; f } => 1002;
    continuation_without_message: client(true, OpCode::Continuation, b"a") => 1002;
    new_message_inside_fragmented: {
        let mut f = client(false, OpCode::Text, b"a");
        f.extend(client(true, OpCode::Binary, b"b"));
        f
    } => 1002;
    fragmented_ping: client(false, OpCode::Ping, b"") => 1002;
    long_ping: { let mut f = vec![0x89, 0xfe, 0, 126]; f.extend(KEY); f.extend([0; 126]); f } => 1002;
    invalid_utf8_single_frame: client(true, OpCode::Text, b"a\xffb") => 1007;
    invalid_utf8_across_fragments: {
        let mut f = client(false, OpCode::Text, b"ok \xe2\x82");
        f.extend(client(true, OpCode::Continuation, b"\x28"));
        f
    } => 1007;
    truncated_utf8_at_message_end: {
        let mut f = client(false, OpCode::Text, b"ok");
        f.extend(client(true, OpCode::Continuation, b"\xe2\x82"));
        f
    } => 1007;
    too_big_single_frame: client(true, OpCode::Binary, &[0; 1025]) => 1009;
    too_big_across_fragments: {
        let mut f = client(false, OpCode::Binary, &[0; 1000]);
        f.extend(client(true, OpCode::Continuation, &[0; 25]));
        f
    } => 1009;
    close_one_byte_payload: client(true, OpCode::Close, &[3]) => 1002;
    close_reserved_code: client(true, OpCode::Close, &1005u16.to_be_bytes()) => 1002;
    close_code_out_of_range: client(true, OpCode::Close, &5000u16.to_be_bytes()) => 1002;
    close_reason_not_utf8: client(true, OpCode::Close, b"\x03\xe8\xff") => 1007;
}

#[test]
fn invalid_utf8_fails_before_the_message_ends() {
    // The invalid byte is in the first fragment; the final fragment never arrives.
    let input = client(false, OpCode::Text, b"abc\xc0\xaf");
    let out = run(&input, input.len());
    assert_eq!(close_code(&out), Some(1007));
    // And within one frame whose payload has only partly arrived.
    let whole = client(true, OpCode::Text, b"abc\xffdefghij");
    let out = run(&whole[..whole.len() - 4], 3);
    assert_eq!(close_code(&out), Some(1007));
}

#[test]
fn too_big_is_detected_from_the_header_alone() {
    let mut s = Session::new(limits(), Instant::now());
    // Header only: 16-bit length 2000, no payload bytes at all.
    let mut header = vec![0x82, 0xfe, 0x07, 0xd0];
    header.extend(KEY);
    let out = feed(&mut s, &header, header.len());
    assert_eq!(close_code(&out), Some(1009));
}

#[test]
fn close_is_echoed_and_later_input_ignored() {
    let mut input = client(true, OpCode::Close, b"\x0f\xa0bye");
    input.extend(client(true, OpCode::Text, b"late"));
    let out = run(&input, input.len());
    assert_eq!(out.closed, Some(Some(vec![0x88, 2, 0x0f, 0xa0])));
    assert!(out.messages.is_empty());
    // No code at all: answered with 1000.
    let out = run(&client(true, OpCode::Close, b""), 64);
    assert_eq!(out.closed, close_with(1000));
}

#[test]
fn open_until_our_own_close_even_after_answering_the_peer() {
    // Found by the `session` fuzz target once `is_open` meant "data may still be queued".
    let t0 = Instant::now();
    let mut s = Session::new(limits(), t0);
    let mut unmasked = vec![0x82, 0x03, 1, 2, 3];
    let (_, event) = s.handle_bytes(&mut unmasked, t0);
    assert!(matches!(event, Some(Event::Close(Some(_)))));
    assert!(s.is_open(), "what was queued before the answer still goes");
    assert_eq!(
        s.close(1001, "server shutting down", t0),
        None,
        "one close frame"
    );
    assert!(!s.is_open(), "nothing more after our close");
}

#[test]
fn server_close_waits_for_the_peer_and_then_times_out() {
    let t0 = Instant::now();
    let mut s = Session::new(limits(), t0);
    let frame = s.close(1001, "server shutting down", t0).unwrap();
    assert_eq!(&frame[..4], &[0x88, 22, 0x03, 0xe9]);
    assert!(!s.is_open());
    assert_eq!(s.close(1000, "", t0), None, "only one close is sent");
    // Data after our close is discarded; the peer's close ends it without a reply.
    let mut input = client(true, OpCode::Text, b"x");
    input.extend(client(true, OpCode::Close, b"\x03\xe9"));
    let out = feed(&mut s, &input, 4);
    assert!(out.messages.is_empty());
    assert_eq!(out.closed, Some(None));

    let mut s = Session::new(limits(), t0);
    s.close(1001, "", t0);
    assert_eq!(s.poll_timeout(), Some(t0 + Duration::from_secs(2)));
    assert_eq!(s.handle_timeout(t0 + Duration::from_secs(1)), None);
    assert_eq!(
        s.handle_timeout(t0 + Duration::from_secs(2)),
        Some(Timeout::CloseExpired)
    );
}

#[test]
fn a_message_in_progress_at_our_close_is_finished_without_buffering_or_a_second_close() {
    let t0 = Instant::now();
    let mut s = Session::new(limits(), t0);
    let out = feed(&mut s, &client(false, OpCode::Text, b"caf\xc3"), 64);
    assert_eq!(out, Outcome::default());
    assert!(s.buffered_bytes() > 0);
    s.close(1001, "server shutting down", t0).unwrap();
    assert_eq!(
        s.buffered_bytes(),
        0,
        "the message is dropped with our close"
    );
    // The rest of the message, split across reads: still checked, never kept or delivered.
    let mut input = client(false, OpCode::Continuation, b"\xa9 ");
    input.extend(client(true, OpCode::Continuation, &[b'x'; 900]));
    for piece in input.chunks(100) {
        assert_eq!(feed(&mut s, piece, 100), Outcome::default());
        assert_eq!(s.buffered_bytes(), 0);
    }
    // Its size still counts: a message over the limit fails the connection, but we have
    // already sent our close, so no second one.
    let mut s = Session::new(limits(), t0);
    feed(&mut s, &client(false, OpCode::Binary, &[0; 1000]), 64);
    s.close(1001, "", t0).unwrap();
    let out = feed(&mut s, &client(true, OpCode::Continuation, &[0; 100]), 64);
    assert_eq!(out.closed, Some(None));
    // Nor for bad UTF-8 found after our close, nor any other violation.
    let mut s = Session::new(limits(), t0);
    feed(&mut s, &client(false, OpCode::Text, b"ok"), 64);
    s.close(1001, "", t0).unwrap();
    let out = feed(&mut s, &client(true, OpCode::Continuation, b"\xff"), 64);
    assert_eq!(out.closed, Some(None));
    let mut s = Session::new(limits(), t0);
    s.close(1001, "", t0).unwrap();
    let out = feed(&mut s, &client(true, OpCode::Continuation, b"x"), 64);
    assert_eq!(out.closed, Some(None), "unexpected continuation");
}

#[test]
fn pings_on_schedule_and_closes_when_idle() {
    let t0 = Instant::now();
    let mut s = Session::new(limits(), t0);
    assert_eq!(s.poll_timeout(), Some(t0 + Duration::from_secs(30)));
    assert_eq!(s.handle_timeout(t0 + Duration::from_secs(29)), None);
    let t30 = t0 + Duration::from_secs(30);
    assert_eq!(s.handle_timeout(t30), Some(Timeout::Ping(vec![0x89, 0])));
    assert_eq!(s.poll_timeout(), Some(t0 + Duration::from_secs(60)));
    // A pong at 40 s moves the idle deadline to 115 s; pings continue at 60 and 90.
    let mut pong = client(true, OpCode::Pong, b"");
    s.handle_bytes(&mut pong, t0 + Duration::from_secs(40));
    assert!(matches!(
        s.handle_timeout(t0 + Duration::from_secs(60)),
        Some(Timeout::Ping(_))
    ));
    assert!(matches!(
        s.handle_timeout(t0 + Duration::from_secs(90)),
        Some(Timeout::Ping(_))
    ));
    assert_eq!(s.poll_timeout(), Some(t0 + Duration::from_secs(115)));
    match s.handle_timeout(t0 + Duration::from_secs(115)) {
        Some(Timeout::Idle(f)) => assert_eq!(&f[2..4], &1001u16.to_be_bytes()),
        other => panic!("expected idle close, got {other:?}"),
    }
}

mod props {
    use super::*;
    use proptest::prelude::*;

    type Messages = Vec<(OpCode, Vec<u8>)>;

    /// A message as (binary?, payload, fragment lengths, ping after the first fragment?).
    fn message() -> impl Strategy<Value = (bool, Vec<u8>, Vec<usize>, bool)> {
        (
            any::<bool>(),
            proptest::collection::vec(any::<u8>(), 0..300),
            proptest::collection::vec(1usize..80, 0..4),
            any::<bool>(),
        )
    }

    fn encode_stream(messages: &[(bool, Vec<u8>, Vec<usize>, bool)]) -> (Vec<u8>, Messages, usize) {
        let mut stream = Vec::new();
        let mut expected = Vec::new();
        let mut pings = 0;
        for (binary, payload, cuts, ping) in messages {
            let opcode = if *binary {
                OpCode::Binary
            } else {
                OpCode::Text
            };
            // Text payloads are made valid UTF-8 (ASCII) so only the framing varies.
            let payload: Vec<u8> = if *binary {
                payload.clone()
            } else {
                payload.iter().map(|b| b'a' + b % 26).collect()
            };
            let mut pieces = Vec::new();
            let mut rest = &payload[..];
            for &c in cuts {
                let c = c.min(rest.len());
                pieces.push(&rest[..c]);
                rest = &rest[c..];
            }
            pieces.push(rest);
            for (i, piece) in pieces.iter().enumerate() {
                let op = if i == 0 { opcode } else { OpCode::Continuation };
                stream.extend(client(i == pieces.len() - 1, op, piece));
                if i == 0 && *ping {
                    stream.extend(client(true, OpCode::Ping, b"hb"));
                    pings += 1;
                }
            }
            expected.push((opcode, payload));
        }
        (stream, expected, pings)
    }

    proptest! {
        #[test]
        fn any_split_of_a_valid_stream_gives_the_same_messages(
            messages in proptest::collection::vec(message(), 1..6),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..12),
        ) {
            let (stream, expected, pings) = encode_stream(&messages);
            let mut points: Vec<usize> = cuts.iter().map(|c| c.index(stream.len() + 1)).collect();
            points.push(0);
            points.push(stream.len());
            points.sort_unstable();
            let mut s = Session::new(limits(), Instant::now());
            let mut got = Outcome::default();
            for w in points.windows(2) {
                let part = feed(&mut s, &stream[w[0]..w[1]], usize::MAX);
                got.messages.extend(part.messages);
                got.sent.extend(part.sent);
                prop_assert_eq!(part.closed, None);
            }
            prop_assert_eq!(got.messages, expected);
            prop_assert_eq!(got.sent.len(), pings);
        }

        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..600), chunk in 1usize..64) {
            let mut s = Session::new(limits(), Instant::now());
            let _ = feed(&mut s, &data, chunk);
        }
    }
}
