//! Unit tests for permessage-deflate's data path: RFC 7692 §7.2.3 vectors, compress → inflate
//! round trips checked against flate2's own stream decoder, the output bound (a zip bomb),
//! corrupt data, and the shared, compress-once frame. Inbound through a session: `session.rs`.

use std::io::{Read, Write};

use super::*;
use proptest::prelude::*;

mod session;

/// What an independent client does (RFC 7692 §7.2.1): flate2's raw stream encoder, a sync
/// flush, the tail removed.
fn oracle_compress(payload: &[u8], level: u32) -> Vec<u8> {
    let mut e = flate2::write::DeflateEncoder::new(Vec::new(), Compression::new(level));
    e.write_all(payload).unwrap();
    e.flush().unwrap();
    let mut out = e.get_ref().clone();
    assert!(out.ends_with(&TAIL));
    out.truncate(out.len() - TAIL.len());
    out
}

/// What an independent client does (§7.2.2): the tail appended, flate2's raw stream decoder.
/// A stream decoder wants a final block, so an empty one (`03 00`: BFINAL, fixed Huffman, end
/// of block) follows the tail's empty stored block.
fn oracle_inflate(compressed: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let end = [0x03, 0x00];
    flate2::read::DeflateDecoder::new(compressed.chain(&TAIL[..]).chain(&end[..]))
        .read_to_end(&mut out)
        .unwrap();
    out
}

/// `len` zeros (a multiple of 64 KiB), compressed: one sync-flushed 64 KiB block repeated (a
/// block of zeros refers only to the zeros just before it), so a 10 MiB bomb costs one 64 KiB
/// compression. About 1000:1.
fn zip_bomb(len: usize) -> Vec<u8> {
    let chunk = 1 << 16;
    let mut block = oracle_compress(&vec![0; chunk], 9);
    block.extend(TAIL);
    let mut bomb = block.repeat(len / chunk);
    bomb.truncate(bomb.len() - TAIL.len());
    bomb
}

#[test]
fn the_zip_bomb_is_what_it_says() {
    let bomb = zip_bomb(4 << 16);
    assert_eq!(oracle_inflate(&bomb), vec![0; 4 << 16]);
    assert!(zip_bomb(10 << 20).len() < 20 << 10);
}

/// `len` pseudo-random bytes (xorshift): incompressible.
fn noise(len: usize) -> Vec<u8> {
    let mut x = 0x2545_f491_4f6c_dd1du64;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect()
}

/// The payload of a compressed server frame, checking its first byte.
fn compressed_payload(frame: &[u8], opcode: OpCode) -> &[u8] {
    let Ok(Decoded::Complete((h, at, true))) = frame::parse_header_deflate(frame, Role::Client)
    else {
        panic!("not a compressed frame: {frame:02x?}");
    };
    assert!(h.fin && h.mask.is_none() && h.opcode == opcode);
    assert_eq!(h.payload_len as usize, frame.len() - at);
    &frame[at..]
}

/// One test per vector: `name: [compressed payload] => inflated;`.
macro_rules! inflate_vectors {
    ($($name:ident: [$($byte:expr),* $(,)?] => $expected:expr;)*) => {$(
        #[test]
        fn $name() {
            let compressed: &[u8] = &[$($byte),*];
            let expected: &[u8] = $expected;
            assert_eq!(Inflater::new().inflate(compressed, 1024).as_deref(), Ok(expected));
        }
    )*};
}

inflate_vectors! {
    // RFC 7692 §7.2.3.1: a compressed "Hello".
    rfc_hello: [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00] => b"Hello";
    // §7.2.3.3: a DEFLATE block with no compression.
    rfc_stored_block: [0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00] => b"Hello";
    // §7.2.3.4: a block with BFINAL set, then the byte that makes the tail an empty block.
    rfc_bfinal: [0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00] => b"Hello";
    // §7.2.3.5: two DEFLATE blocks in one message.
    rfc_two_blocks: [0xf2, 0x48, 0x05, 0x00, 0x00, 0x00, 0xff, 0xff, 0xca, 0xc9, 0xc9, 0x07, 0x00]
        => b"Hello";
    // §7.2.3.6: an empty message is one 0x00 byte; a client may also send nothing at all.
    rfc_empty: [0x00] => b"";
    nothing: [] => b"";
    // A BFINAL block ends the message; what follows is ignored, as zlib-based peers do.
    after_bfinal_ignored: [0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0xde, 0xad] => b"Hello";
}

#[test]
fn corrupt_data_is_1007() {
    let corrupt = |data: &[u8]| Inflater::new().inflate(data, 1 << 20);
    // BTYPE 11 is reserved.
    assert_eq!(
        corrupt(&[0xff; 16]),
        Err(ProtocolError::InvalidCompressedData)
    );
    // A stored block whose NLEN is not the complement of LEN.
    assert_eq!(
        corrupt(&[0x00, 0x05, 0x00, 0x00, 0x00, b'H']),
        Err(ProtocolError::InvalidCompressedData)
    );
    // A client that keeps its context although we answered client_no_context_takeover: its
    // second message refers back into the first, which our inflater no longer has.
    let mut e = flate2::write::DeflateEncoder::new(Vec::new(), Compression::new(6));
    e.write_all(b"the same words again and again").unwrap();
    e.flush().unwrap();
    let first = e.get_ref().len();
    e.write_all(b"the same words again and again").unwrap();
    e.flush().unwrap();
    let second = &e.get_ref()[first..e.get_ref().len() - TAIL.len()];
    assert_eq!(corrupt(second), Err(ProtocolError::InvalidCompressedData));
    assert_eq!(ProtocolError::InvalidCompressedData.close_code(), 1007);
    // The same inflater goes on to the next message as if nothing happened.
    let mut inflater = Inflater::new();
    assert!(inflater.inflate(&[0xff; 4], 64).is_err());
    assert_eq!(
        inflater.inflate(&oracle_compress(b"next", 6), 64).unwrap(),
        b"next"
    );
}

#[test]
fn a_zip_bomb_stops_at_the_limit() {
    let bomb = zip_bomb(10 << 20);
    let max = 1 << 20;
    let mut inflater = Inflater::new();
    let mut out = Vec::new();
    assert_eq!(
        inflater.inflate_into(&bomb, max, &mut out),
        Err(ProtocolError::MessageTooBig)
    );
    assert!(
        out.capacity() <= max + 1 + 64,
        "allocated {}",
        out.capacity()
    );
    // It stopped as soon as the bound was passed: most of the input was never read.
    assert!(inflater.inflate.total_in() < bomb.len() as u64 / 5);
}

#[test]
fn the_limit_is_exact() {
    let payload = vec![b'x'; 1000];
    let compressed = oracle_compress(&payload, 6);
    let mut inflater = Inflater::new();
    assert_eq!(inflater.inflate(&compressed, 1000).unwrap(), payload);
    assert_eq!(
        inflater.inflate(&compressed, 999),
        Err(ProtocolError::MessageTooBig)
    );
    assert_eq!(inflater.inflate(&[0x00], 0).unwrap(), b"");
}

#[test]
fn compress_frame_rules() {
    let json =
        br#"{"metric":"cpu","value":1},{"metric":"cpu","value":2},{"metric":"cpu","value":3}"#;
    let mut c = Compressor::new(DEFAULT_LEVEL, 0);
    let frame = c.compress_frame(OpCode::Text, json).unwrap();
    assert_eq!(frame[0], 0xc1, "FIN, RSV1, text");
    assert_eq!(frame.capacity(), frame.len(), "allocated exactly");
    let payload = compressed_payload(&frame, OpCode::Text);
    assert!(payload.len() < json.len());
    assert_eq!(oracle_inflate(payload), json);
    let frame = c.compress_frame(OpCode::Binary, json).unwrap();
    assert_eq!(frame[0], 0xc2);
    // Under the minimum size, not smaller, or a control frame: no compressed frame.
    assert_eq!(
        Compressor::new(1, json.len() + 1).compress_frame(OpCode::Text, json),
        None
    );
    assert!(
        Compressor::new(1, json.len())
            .compress_frame(OpCode::Text, json)
            .is_some()
    );
    assert_eq!(c.compress_frame(OpCode::Text, b"Hello"), None);
    assert_eq!(c.compress_frame(OpCode::Text, b""), None);
    assert_eq!(c.compress_frame(OpCode::Binary, &noise(4096)), None);
    assert_eq!(c.compress_frame(OpCode::Ping, &[b'a'; 100]), None);
    assert_eq!(c.compress_frame(OpCode::Continuation, &[b'a'; 100]), None);
    // Level 0 only stores: never smaller.
    assert_eq!(
        Compressor::new(0, 0).compress_frame(OpCode::Text, json),
        None
    );
}

#[test]
fn a_huge_message_does_not_pin_its_scratch_buffer() {
    let mut c = Compressor::new(1, 0);
    let big = vec![b'a'; 1 << 20];
    let frame = c.compress_frame(OpCode::Binary, &big).unwrap();
    assert_eq!(
        oracle_inflate(compressed_payload(&frame, OpCode::Binary)),
        big
    );
    assert_eq!(c.scratch.capacity(), 0);
    c.compress_frame(OpCode::Binary, &[b'a'; 1000]).unwrap();
    assert!(c.scratch.capacity() <= SCRATCH_KEEP);
}

/// Payloads that compress (words from a small vocabulary) and payloads that may not.
fn payload() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..2000),
        proptest::collection::vec(
            prop::sample::select(vec![
                &b"{\"cpu\":"[..],
                b"12",
                b"3.5",
                b"},",
                b"\"mem\"",
                b" "
            ]),
            0..400
        )
        .prop_map(|words| words.concat()),
    ]
}

proptest! {
    #[test]
    fn compress_then_inflate_round_trips(payload in payload(), level in 0u32..=9, min in 0usize..64) {
        let mut c = Compressor::new(level, min);
        // Twice: the second message must not depend on the first (no context takeover).
        for _ in 0..2 {
            match c.compress_frame(OpCode::Binary, &payload) {
                Some(frame) => {
                    let compressed = compressed_payload(&frame, OpCode::Binary);
                    prop_assert!(compressed.len() < payload.len());
                    prop_assert!(payload.len() >= min);
                    prop_assert_eq!(&oracle_inflate(compressed), &payload);
                    let ours = Inflater::new().inflate(compressed, payload.len());
                    prop_assert_eq!(ours.as_ref(), Ok(&payload));
                }
                None => prop_assert!(
                    payload.len() < min || oracle_compress(&payload, level).len() >= payload.len()
                ),
            }
        }
    }

    #[test]
    fn inflate_agrees_with_the_oracle(payload in payload(), level in 1u32..=9, max in 0usize..2100) {
        let compressed = oracle_compress(&payload, level);
        let got = Inflater::new().inflate(&compressed, max);
        if payload.len() <= max {
            prop_assert_eq!(got, Ok(payload));
        } else {
            prop_assert_eq!(got, Err(ProtocolError::MessageTooBig));
        }
    }

    #[test]
    fn arbitrary_input_never_panics(data in proptest::collection::vec(any::<u8>(), 0..300), max in 0usize..5000) {
        if let Ok(out) = Inflater::new().inflate(&data, max) {
            prop_assert!(out.len() <= max);
        }
    }
}

fn agreed(value: &str) -> Agreed {
    negotiate([value.as_bytes()]).unwrap()
}

#[test]
fn the_shared_frame_is_compressed_once_for_all_threads() {
    fn shared<T: Send + Sync>() {}
    shared::<DeflatableFrame>();

    let json = br#"{"series":[{"cpu":1},{"cpu":2},{"cpu":3},{"cpu":4},{"cpu":5}]}"#.repeat(8);
    let frame = DeflatableFrame::encode(OpCode::Text, &json);
    assert_eq!(frame.payload_len(), json.len());
    let compressed: Vec<usize> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                s.spawn(|| {
                    let mut c = Compressor::new(DEFAULT_LEVEL, DEFAULT_MIN_SIZE);
                    Arc::as_ptr(frame.compressed(&mut c).unwrap()) as usize
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(
        compressed.windows(2).all(|w| w[0] == w[1]),
        "one shared frame"
    );
    let mut c = Compressor::new(9, 0);
    let bytes = frame.frame_for(Some(&agreed("permessage-deflate")), &mut c);
    assert_eq!(
        Arc::as_ptr(bytes) as usize,
        compressed[0],
        "computed once, not again"
    );
    assert_eq!(
        oracle_inflate(compressed_payload(bytes, OpCode::Text)),
        json
    );
    assert!(Arc::ptr_eq(frame.frame_for(None, &mut c), frame.plain()));
}

#[test]
fn who_gets_which_frame() {
    let mut c = Compressor::new(DEFAULT_LEVEL, 64);
    let any = agreed("permessage-deflate");
    let small_window = agreed("permessage-deflate; server_max_window_bits=9");
    let json = br#"{"k":"v"},"#.repeat(60);
    let frame = DeflatableFrame::encode(OpCode::Text, &json);
    assert_eq!(
        frame.compressed.get(),
        None,
        "nothing compressed before it is needed"
    );
    assert!(Arc::ptr_eq(frame.frame_for(None, &mut c), frame.plain()));
    assert_eq!(
        frame.compressed.get(),
        None,
        "no subscriber with deflate yet"
    );
    // 600 bytes exceed a 512-byte window: plain, and still not compressed.
    assert!(Arc::ptr_eq(
        frame.frame_for(Some(&small_window), &mut c),
        frame.plain()
    ));
    assert_eq!(frame.compressed.get(), None);
    assert_eq!(frame.frame_for(Some(&any), &mut c)[0], 0xc1);
    // A message that fits the small window gets the compressed frame too.
    let short = DeflatableFrame::encode(OpCode::Binary, &json[..500]);
    assert_eq!(short.frame_for(Some(&small_window), &mut c)[0], 0xc2);
    // Under the minimum, or not smaller: everyone gets the plain frame, compression is tried
    // once.
    let tiny = DeflatableFrame::encode(OpCode::Text, b"{\"k\":1}");
    assert!(Arc::ptr_eq(
        tiny.frame_for(Some(&any), &mut c),
        tiny.plain()
    ));
    assert_eq!(tiny.compressed.get(), Some(&None));
    // Control frames and anything that is not one whole data frame stay plain.
    for plain in [
        frame::encode_frame(OpCode::Ping, &[b'a'; 100]),
        frame::encode_close_frame(1000, &"x".repeat(100)),
        json.clone(),
        Vec::new(),
    ] {
        let f = DeflatableFrame::new(Arc::new(plain));
        assert!(Arc::ptr_eq(f.frame_for(Some(&any), &mut c), f.plain()));
    }
}
