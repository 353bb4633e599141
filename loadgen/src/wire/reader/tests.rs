//! The reader against the RFC's framing rules, and the scan against the general path: every
//! split of a stream, and corrupted streams, must decode the same both ways.

use super::*;
use fanout::proto::deflate::{Compressor, Inflater};
use fanout::proto::frame::{RSV1, encode_frame, write_header};

use crate::wire::writer::json_body;

#[derive(Debug, PartialEq)]
enum Owned {
    Msg(bool, Vec<u8>, u64),
    /// A compressed message: its inflated head and its compressed length.
    Zmsg(bool, Vec<u8>, u64),
    Ping(Vec<u8>),
    Pong,
    Close(Option<u16>),
}

/// Everything reported for `chunks` fed in order, and how the feeding ended (the first
/// error stops it), with (`SCAN`) or without the scan.
fn decode<const SCAN: bool>(chunks: &[&[u8]]) -> (Vec<Owned>, Result<(), ProtocolError>) {
    decode_with::<SCAN>(false, chunks)
}

/// [`decode`] on a connection that negotiated permessage-deflate (`deflate`) or not.
fn decode_with<const SCAN: bool>(
    deflate: bool,
    chunks: &[&[u8]],
) -> (Vec<Owned>, Result<(), ProtocolError>) {
    let mut r = FrameReader {
        deflate,
        ..FrameReader::default()
    };
    let mut z = HeadInflater::default();
    let mut out = Vec::new();
    for c in chunks {
        let fed = r.feed_with::<SCAN>(c, &mut z, |f| {
            out.push(match f {
                Frame::Message {
                    binary,
                    head,
                    len,
                    compressed: false,
                } => Owned::Msg(binary, head.to_vec(), len),
                Frame::Message {
                    binary,
                    head,
                    len,
                    compressed: true,
                } => Owned::Zmsg(binary, head.to_vec(), len),
                Frame::Ping(p) => Owned::Ping(p.to_vec()),
                Frame::Pong => Owned::Pong,
                Frame::Close(c) => Owned::Close(c),
            })
        });
        if fed.is_err() {
            return (out, fed);
        }
    }
    (out, Ok(()))
}

/// [`decode`] with the scan, after checking that the general path alone agrees with it.
fn read_all(chunks: &[&[u8]]) -> Result<Vec<Owned>, ProtocolError> {
    let (out, end) = decode::<true>(chunks);
    let (oracle, oracle_end) = decode::<false>(chunks);
    assert_eq!((&out, end), (&oracle, oracle_end));
    end.map(|()| out)
}

/// xorshift64*: reproducible pseudo-random numbers for the split and mutation tests.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as usize % n.max(1)
    }

    /// `s` cut into pieces of random lengths (1 to `max` bytes).
    fn chunks<'a>(&mut self, mut s: &'a [u8], max: usize) -> Vec<&'a [u8]> {
        let mut out = Vec::new();
        while !s.is_empty() {
            let (c, rest) = s.split_at((1 + self.below(max)).min(s.len()));
            out.push(c);
            s = rest;
        }
        out
    }
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

/// A fan-out stream: the frames the scan takes (7- and 16-bit lengths, text and binary, a
/// non-minimal 16-bit length, empty and short payloads) between ones it leaves to the
/// general path (fragments, control frames, a 64-bit length).
fn fanout_stream() -> (Vec<u8>, Vec<Owned>) {
    let big: Vec<u8> = (0..1200u32).map(|i| (i * 7) as u8).collect();
    let mut s = Vec::new();
    let mut want = Vec::new();
    let h = |n: usize| big[..n.min(HEAD_KEEP)].to_vec();
    for (i, n) in [64, 24, 0, 5, 125, 126, 64, 300, 1200, 64, 23, 64]
        .into_iter()
        .enumerate()
    {
        let binary = i % 5 != 2;
        let op = if binary { OpCode::Binary } else { OpCode::Text };
        s.extend(encode_frame(op, &big[..n]));
        want.push(Owned::Msg(binary, h(n), n as u64));
    }
    // The 16-bit form of a 10-byte length: not minimal, but valid for the general path.
    s.extend([0x82, 126, 0, 10]);
    s.extend_from_slice(&big[..10]);
    want.push(Owned::Msg(true, h(10), 10));
    s.extend(frame(false, OpCode::Binary, &big[..30]));
    s.extend(encode_frame(OpCode::Ping, b"p"));
    s.extend(frame(true, OpCode::Continuation, &big[30..40]));
    want.extend([Owned::Ping(b"p".to_vec()), Owned::Msg(true, h(40), 40)]);
    s.extend([0x82, 127, 0, 0, 0, 0, 0, 0, 0, 64]);
    s.extend_from_slice(&big[..64]);
    want.push(Owned::Msg(true, h(64), 64));
    for _ in 0..3 {
        s.extend(encode_frame(OpCode::Binary, &big[..64]));
        want.push(Owned::Msg(true, h(64), 64));
    }
    s.extend(encode_frame(OpCode::Pong, b""));
    s.extend(encode_frame(OpCode::Binary, &big[..64]));
    want.extend([Owned::Pong, Owned::Msg(true, h(64), 64)]);
    (s, want)
}

#[test]
fn scan_agrees_with_the_general_path_split_at_every_offset() {
    let (s, want) = fanout_stream();
    assert_eq!(read_all(&[&s]).unwrap(), want);
    for cut in 0..=s.len() {
        assert_eq!(
            read_all(&[&s[..cut], &s[cut..]]).unwrap(),
            want,
            "cut at {cut}"
        );
    }
    // Three reads: every first cut, the second a pseudo-random distance after it.
    let mut rng = Rng(0x5EED);
    for a in 0..=s.len() {
        let b = (a + rng.below(200)).min(s.len());
        let parts = [&s[..a], &s[a..b], &s[b..]];
        assert_eq!(read_all(&parts).unwrap(), want, "cuts at {a} and {b}");
    }
    for max in [1, 2, 3, 7, 64, 500] {
        for _ in 0..20 {
            assert_eq!(read_all(&rng.chunks(&s, max)).unwrap(), want, "max {max}");
        }
    }
}

#[test]
fn scan_agrees_with_the_general_path_on_corrupted_streams() {
    let (s, _) = fanout_stream();
    // Where each frame's header starts: most mutations hit a header.
    let mut starts = vec![0];
    while let Ok(Decoded::Complete((h, n))) =
        parse_header(&s[*starts.last().unwrap()..], Role::Client)
    {
        starts.push(starts.last().unwrap() + n + h.payload_len as usize);
    }
    assert_eq!(starts.pop(), Some(s.len()));
    let mut rng = Rng(42);
    let mut errors = 0;
    for _ in 0..3000 {
        let mut bad = s.clone();
        for _ in 0..1 + rng.below(3) {
            let i = match rng.below(4) {
                0 => rng.below(bad.len()),
                _ => (starts[rng.below(starts.len())] + rng.below(4)).min(bad.len() - 1),
            };
            bad[i] = match rng.below(4) {
                0 => rng.below(256) as u8,
                1 => bad[i] ^ (1 << rng.below(8)),
                2 => [0x80, 0x81, 0x82, 0x89, 0x8A, 0x01, 0x02, 0x00][rng.below(8)],
                _ => [0x7D, 0x7E, 0x7F, 0xFE, 0xFF, 0x00][rng.below(6)],
            };
        }
        let max = 1 + rng.below(300);
        let chunks = rng.chunks(&bad, max);
        let with = decode::<true>(&chunks);
        assert_eq!(with, decode::<false>(&chunks), "{bad:?}");
        errors += usize::from(with.1.is_err());
    }
    assert!(
        errors > 1000,
        "the mutations should often break the framing: {errors}"
    );
}

/// `payload` compressed as fanout sends it (the `00 00 ff ff` tail removed), at `level`:
/// with fanout's `Compressor`, or (when that would send it plain, as not smaller) with the
/// same zlib settings directly.
fn compress(payload: &[u8], level: u32) -> Vec<u8> {
    if let Some(frame) = Compressor::new(level, 0).compress_frame(OpCode::Binary, payload) {
        let Ok(Decoded::Complete((_, at, true))) =
            fanout::proto::frame::parse_header_deflate(&frame, Role::Client)
        else {
            panic!("a compressed frame")
        };
        return frame[at..].to_vec();
    }
    let mut z = flate2::Compress::new(flate2::Compression::new(level), false);
    let mut out = Vec::with_capacity(payload.len() * 2 + 64);
    z.compress_vec(payload, &mut out, flate2::FlushCompress::Sync)
        .expect("compresses");
    assert!(out.ends_with(&fanout::proto::deflate::TAIL));
    out.truncate(out.len() - 4);
    out
}

/// A stamp-like head and a JSON body of `n` bytes in all.
fn message(n: usize, seed: u64) -> Vec<u8> {
    let mut m: Vec<u8> = (0..24).map(|i| (seed as u8).wrapping_mul(31) ^ i).collect();
    m.extend(json_body(n.saturating_sub(24), seed));
    m.truncate(n);
    m
}

/// A deflate connection's stream: compressed messages whole and fragmented (one of them
/// compressing to more than `ZHEAD_KEEP`), between plain messages and control frames. The
/// expected heads come from inflating each message whole with fanout's `Inflater`.
fn deflate_stream(level: u32) -> (Vec<u8>, Vec<Owned>) {
    let mut s = Vec::new();
    let mut want = Vec::new();
    for (i, n) in [1024, 64, 30, 300, 4096, 70_000, 1000, 2000]
        .into_iter()
        .enumerate()
    {
        let m = message(n, i as u64);
        let z = compress(&m, level);
        let oracle = Inflater::new().inflate(&z, usize::MAX).expect("inflates");
        assert_eq!(oracle, m);
        let head = oracle[..n.min(HEAD_KEEP)].to_vec();
        if i % 3 == 1 {
            // Fragmented: RSV1 on the first frame only, a ping in between.
            let (a, rest) = z.split_at(z.len() / 3);
            let (b, c) = rest.split_at(rest.len() / 2);
            let mut first = frame(false, OpCode::Binary, a);
            first[0] |= RSV1;
            s.extend(first);
            s.extend(frame(false, OpCode::Continuation, b));
            s.extend(encode_frame(OpCode::Ping, b"z"));
            s.extend(frame(true, OpCode::Continuation, c));
            want.push(Owned::Ping(b"z".to_vec()));
        } else {
            let mut f = frame(true, OpCode::Binary, &z);
            f[0] |= RSV1;
            s.extend(f);
        }
        want.push(Owned::Zmsg(true, head, z.len() as u64));
        s.extend(encode_frame(OpCode::Binary, &m[..m.len().min(200)]));
        want.push(Owned::Msg(
            true,
            m[..m.len().min(HEAD_KEEP)].to_vec(),
            m.len().min(200) as u64,
        ));
    }
    (s, want)
}

/// [`read_all`] on a deflate connection.
fn read_all_deflate(chunks: &[&[u8]]) -> Result<Vec<Owned>, ProtocolError> {
    let (out, end) = decode_with::<true>(true, chunks);
    let (oracle, oracle_end) = decode_with::<false>(true, chunks);
    assert_eq!((&out, end), (&oracle, oracle_end));
    end.map(|()| out)
}

#[test]
fn compressed_heads_match_a_full_inflate_across_random_splits() {
    for level in [1, 9] {
        let (s, want) = deflate_stream(level);
        assert_eq!(read_all_deflate(&[&s]).unwrap(), want);
        for cut in (0..s.len()).step_by(61).chain(0..600) {
            let parts = [&s[..cut], &s[cut..]];
            assert_eq!(read_all_deflate(&parts).unwrap(), want, "cut at {cut}");
        }
        let mut rng = Rng(0xDEF1 + u64::from(level));
        for max in [1, 5, 100, 700, 1500, 20_000] {
            for _ in 0..8 {
                let chunks = rng.chunks(&s, max);
                assert_eq!(read_all_deflate(&chunks).unwrap(), want, "max {max}");
            }
        }
    }
}

#[test]
fn a_plain_stream_reads_the_same_with_deflate_negotiated() {
    let (s, want) = fanout_stream();
    assert_eq!(read_all_deflate(&[&s]).unwrap(), want);
}

#[test]
fn misplaced_or_unnegotiated_rsv1_and_corrupt_data_are_protocol_errors() {
    let z = compress(&message(500, 1), 1);
    let mut compressed = frame(true, OpCode::Binary, &z);
    compressed[0] |= RSV1;
    // Not negotiated: RSV1 is a reserved bit (RFC 6455 §5.2).
    assert_eq!(read_all(&[&compressed]), Err(ProtocolError::ReservedBits));
    assert_eq!(read_all_deflate(&[&compressed]).unwrap().len(), 1);
    // RSV1 on a continuation or a control frame (RFC 7692 §6.1).
    let mut s = frame(false, OpCode::Binary, &z[..10]);
    s[0] |= RSV1;
    let mut cont = frame(true, OpCode::Continuation, &z[10..]);
    cont[0] |= RSV1;
    s.extend(cont);
    assert_eq!(
        read_all_deflate(&[&s]),
        Err(ProtocolError::CompressedBitMisplaced)
    );
    let mut ping = encode_frame(OpCode::Ping, b"p");
    ping[0] |= RSV1;
    assert_eq!(
        read_all_deflate(&[&ping]),
        Err(ProtocolError::CompressedBitMisplaced)
    );
    // RSV2 stays reserved.
    let mut rsv2 = encode_frame(OpCode::Binary, b"x");
    rsv2[0] |= 0x20;
    assert_eq!(read_all_deflate(&[&rsv2]), Err(ProtocolError::ReservedBits));
    // A reserved block type, whole and split.
    let mut bad = frame(true, OpCode::Binary, &[0xff; 40]);
    bad[0] |= RSV1;
    assert_eq!(
        read_all_deflate(&[&bad]),
        Err(ProtocolError::InvalidCompressedData)
    );
    assert_eq!(
        read_all_deflate(&[&bad[..5], &bad[5..]]),
        Err(ProtocolError::InvalidCompressedData)
    );
}
