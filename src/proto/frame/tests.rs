//! Unit tests for the frame codec: RFC 6455 §5.7 vectors, every length class, every
//! violation and its close code, and any split of a valid stream.

use super::*;
use crate::proto::mask::apply_mask_naive;
use Decoded::{Complete, Partial};
use ProtocolError::*;
use proptest::prelude::*;

const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

fn hdr(fin: bool, opcode: OpCode, mask: Option<[u8; 4]>, payload_len: u64) -> FrameHeader {
    FrameHeader {
        fin,
        opcode,
        mask,
        payload_len,
    }
}

/// Parses `bytes` under `role`, checks the result, and checks that every prefix parses to
/// `Partial` or to the same result (a split never changes the verdict).
fn check_parse(
    bytes: &[u8],
    role: Role,
    expected: Result<Decoded<(FrameHeader, usize)>, ProtocolError>,
) {
    assert_eq!(parse_header(bytes, role), expected, "{bytes:02x?}");
    for n in 0..bytes.len() {
        let prefix = parse_header(&bytes[..n], role);
        assert!(
            prefix == Ok(Partial) || prefix == expected,
            "prefix {n}: {prefix:?}"
        );
    }
}

/// One test per header: `name: [bytes], Role => expected parse_header result;`.
macro_rules! parse_cases {
    ($($name:ident: [$($byte:expr),* $(,)?], $role:ident => $expected:expr;)*) => {$(
        #[test]
        fn $name() {
            check_parse(&[$($byte),*], Role::$role, $expected);
        }
    )*};
}

parse_cases! {
    // Each violation, alone, from as few bytes as decide it.
    rsv1: [0xC1, 0x85], Server => Err(ReservedBits);
    rsv2_one_byte: [0xA1], Server => Err(ReservedBits);
    rsv3_one_byte: [0x91], Client => Err(ReservedBits);
    opcode_3: [0x83], Server => Err(ReservedOpcode);
    opcode_7: [0x87, 0x80], Server => Err(ReservedOpcode);
    opcode_b: [0x8B], Client => Err(ReservedOpcode);
    opcode_f: [0x8F, 0x00], Client => Err(ReservedOpcode);
    fragmented_close: [0x08], Server => Err(FragmentedControlFrame);
    fragmented_ping: [0x09, 0x80], Server => Err(FragmentedControlFrame);
    fragmented_pong: [0x0A], Client => Err(FragmentedControlFrame);
    ping_16_bit_126: [0x89, 0xFE, 0x00, 0x7E], Server => Err(ControlFrameTooLong);
    close_16_bit_max: [0x88, 0xFE, 0xFF, 0xFF], Server => Err(ControlFrameTooLong);
    pong_64_bit_126: [0x8A, 0xFF, 0, 0, 0, 0, 0, 0, 0, 0x7E], Server => Err(ControlFrameTooLong);
    binary_64_bit_msb: [0x82, 0xFF, 0x80], Server => Err(InvalidLength);
    text_64_bit_all_ones: [0x81, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF], Client
        => Err(InvalidLength);
    unmasked_text: [0x81, 0x05, 0x48], Server => Err(UnmaskedFrame);
    unmasked_16_bit: [0x82, 0x7E], Server => Err(UnmaskedFrame);
    unmasked_64_bit: [0x82, 0x7F, 0x00], Server => Err(UnmaskedFrame);
    unmasked_continuation: [0x00, 0x00], Server => Err(UnmaskedFrame);
    masked_to_client: [0x81, 0x85], Client => Err(MaskedFrame);
    masked_ping_to_client: [0x89, 0x80], Client => Err(MaskedFrame);

    // Several violations: the first in the documented order wins.
    rsv_before_opcode: [0xF3], Server => Err(ReservedBits);
    opcode_before_fin: [0x0B], Server => Err(ReservedOpcode);
    fin_before_length: [0x09, 0x7E, 0x01, 0x00], Server => Err(FragmentedControlFrame);
    too_long_before_msb: [0x89, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0], Server
        => Err(ControlFrameTooLong);
    too_long_before_unmasked: [0x89, 0x7E, 0x00, 0x7E], Server => Err(ControlFrameTooLong);
    msb_before_unmasked: [0x82, 0x7F, 0x80], Server => Err(InvalidLength);
    msb_before_masked: [0x82, 0xFF, 0x80], Client => Err(InvalidLength);

    // Short input.
    empty_server: [], Server => Ok(Partial);
    empty_client: [], Client => Ok(Partial);
    first_byte_only: [0x81], Server => Ok(Partial);
    missing_key: [0x81, 0x85, 0x37, 0xfa, 0x21], Server => Ok(Partial);
    missing_16_bit_len: [0x82, 0x7E], Client => Ok(Partial);
    missing_64_bit_len: [0x82, 0xFF, 0, 0, 0, 0, 0, 0, 0x01], Server => Ok(Partial);
    // The documented waits: an earlier check needs bytes before the mask is judged.
    control_waits_for_length: [0x89, 0x7E, 0x00], Server => Ok(Partial);
    msb_waits_for_byte_2: [0x82, 0x7F], Server => Ok(Partial);

    // Non-minimal length encodings are accepted (§5.2 obliges only the sender).
    ping_16_bit_5: [0x89, 0xFE, 0x00, 0x05, 1, 2, 3, 4], Server
        => Ok(Complete((hdr(true, OpCode::Ping, Some([1, 2, 3, 4]), 5), 8)));
    close_64_bit_125: [0x88, 0x7F, 0, 0, 0, 0, 0, 0, 0, 125], Client
        => Ok(Complete((hdr(true, OpCode::Close, None, 125), 10)));
    binary_64_bit_1: [0x02, 0x7F, 0, 0, 0, 0, 0, 0, 0, 1], Client
        => Ok(Complete((hdr(false, OpCode::Binary, None, 1), 10)));
    largest_length: [0x82, 0x7F, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF], Client
        => Ok(Complete((hdr(true, OpCode::Binary, None, i64::MAX as u64), 10)));
    trailing_bytes_ignored: [0x80, 0x02, 0x6c, 0x6f, 0xFF], Client
        => Ok(Complete((hdr(true, OpCode::Continuation, None, 2), 2)));
}

/// A §5.7 example: the exact bytes, what they parse to, and the unmasked payload.
fn rfc_example(bytes: &[u8], role: Role, header: FrameHeader, payload: &[u8]) {
    let len = header_len(header.payload_len, header.mask.is_some());
    check_parse(bytes, role, Ok(Complete((header, len))));
    let mut written = Vec::new();
    write_header(&mut written, &header);
    assert_eq!(written, bytes[..len]);
    let mut body = bytes[len..].to_vec();
    if let Some(key) = header.mask {
        apply_mask_naive(&mut body, key, 0);
    }
    assert_eq!(body, payload);
}

#[test]
fn rfc_unmasked_text() {
    let bytes = [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
    assert_eq!(encode_frame(OpCode::Text, b"Hello"), bytes);
    rfc_example(
        &bytes,
        Role::Client,
        hdr(true, OpCode::Text, None, 5),
        b"Hello",
    );
}

#[test]
fn rfc_masked_text() {
    let bytes = [
        0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
    ];
    assert_eq!(encode_masked_frame(OpCode::Text, b"Hello", KEY), bytes);
    rfc_example(
        &bytes,
        Role::Server,
        hdr(true, OpCode::Text, Some(KEY), 5),
        b"Hello",
    );
}

#[test]
fn rfc_fragmented_text() {
    let first = [0x01, 0x03, 0x48, 0x65, 0x6c];
    let second = [0x80, 0x02, 0x6c, 0x6f];
    rfc_example(
        &first,
        Role::Client,
        hdr(false, OpCode::Text, None, 3),
        b"Hel",
    );
    rfc_example(
        &second,
        Role::Client,
        hdr(true, OpCode::Continuation, None, 2),
        b"lo",
    );
}

#[test]
fn rfc_unmasked_ping() {
    let bytes = [0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
    assert_eq!(encode_frame(OpCode::Ping, b"Hello"), bytes);
    rfc_example(
        &bytes,
        Role::Client,
        hdr(true, OpCode::Ping, None, 5),
        b"Hello",
    );
}

#[test]
fn rfc_masked_pong() {
    let bytes = [
        0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
    ];
    assert_eq!(encode_masked_frame(OpCode::Pong, b"Hello", KEY), bytes);
    rfc_example(
        &bytes,
        Role::Server,
        hdr(true, OpCode::Pong, Some(KEY), 5),
        b"Hello",
    );
}

#[test]
fn rfc_256_byte_binary() {
    let payload: Vec<u8> = (0..=255).collect();
    let frame = encode_frame(OpCode::Binary, &payload);
    assert_eq!(frame[..4], [0x82, 0x7E, 0x01, 0x00]);
    rfc_example(
        &frame,
        Role::Client,
        hdr(true, OpCode::Binary, None, 256),
        &payload,
    );
}

#[test]
fn rfc_64_kib_binary() {
    let payload: Vec<u8> = (0..65536u32).map(|i| i as u8).collect();
    let frame = encode_frame(OpCode::Binary, &payload);
    assert_eq!(frame[..10], [0x82, 0x7F, 0, 0, 0, 0, 0, 0x01, 0x00, 0x00]);
    rfc_example(
        &frame,
        Role::Client,
        hdr(true, OpCode::Binary, None, 65536),
        &payload,
    );
}

#[test]
fn length_class_boundaries_round_trip() {
    for (len, class_len) in [(0, 2), (125, 2), (126, 4), (65535, 4), (65536, 10)] {
        let payload = vec![0xA5; len];
        for mask in [None, Some(KEY)] {
            let (frame, role) = match mask {
                None => (encode_frame(OpCode::Binary, &payload), Role::Client),
                Some(key) => (
                    encode_masked_frame(OpCode::Binary, &payload, key),
                    Role::Server,
                ),
            };
            let n = class_len + if mask.is_some() { 4 } else { 0 };
            assert_eq!(header_len(len as u64, mask.is_some()), n);
            assert_eq!(frame.len(), n + len);
            assert_eq!(frame.capacity(), frame.len(), "one exact allocation");
            let header = hdr(true, OpCode::Binary, mask, len as u64);
            rfc_example(&frame, role, header, &payload);
        }
    }
}

#[test]
fn close_frame() {
    let frame = encode_close_frame(close::NORMAL, "bye");
    assert_eq!(frame, [0x88, 0x05, 0x03, 0xe8, b'b', b'y', b'e']);
    assert_eq!(frame.capacity(), frame.len());
    let long = "é".repeat(100);
    let frame = encode_close_frame(close::GOING_AWAY, &long);
    assert_eq!(frame.len(), 2 + 2 + 122, "123 bytes would split a char");
    assert_eq!(frame.capacity(), frame.len());
    assert_eq!(frame[2..], close::close_payload(close::GOING_AWAY, &long));
    let parsed = close::parse_close_payload(&frame[2..]);
    assert_eq!(parsed, Ok(Some((close::GOING_AWAY, &long[..122]))));
}

#[test]
fn opcodes() {
    for bits in 0..=0xFFu8 {
        match OpCode::from_u8(bits) {
            Some(op) => {
                assert_eq!(op as u8, bits);
                assert_eq!(op.is_control(), bits >= 8);
            }
            None => assert!(matches!(bits, 3..=7 | 0xB..)),
        }
    }
}

fn opcode() -> impl Strategy<Value = OpCode> {
    use OpCode::*;
    prop::sample::select(vec![Continuation, Text, Binary, Close, Ping, Pong])
}

/// Any header a conforming sender may write, lengths biased to the class boundaries.
fn valid_header() -> impl Strategy<Value = FrameHeader> {
    let len = prop_oneof![
        prop::sample::select(vec![0u64, 125, 126, 65535, 65536, i64::MAX as u64]),
        0u64..=125,
        126u64..=65535,
        65536u64..=i64::MAX as u64,
    ];
    (opcode(), any::<bool>(), any::<Option<[u8; 4]>>(), len).prop_map(|(op, fin, mask, len)| {
        if op.is_control() {
            hdr(true, op, mask, len % 126)
        } else {
            hdr(fin, op, mask, len)
        }
    })
}

proptest! {
    #[test]
    fn valid_headers_round_trip(header in valid_header(), tail in prop::collection::vec(any::<u8>(), 0..4)) {
        let mut bytes = Vec::new();
        write_header(&mut bytes, &header);
        let masked = header.mask.is_some();
        let len = header_len(header.payload_len, masked);
        prop_assert_eq!(bytes.len(), len);
        let (role, wrong_role, wrong) = if masked {
            (Role::Server, Role::Client, MaskedFrame)
        } else {
            (Role::Client, Role::Server, UnmaskedFrame)
        };
        bytes.extend_from_slice(&tail);
        prop_assert_eq!(parse_header(&bytes, role), Ok(Complete((header, len))));
        prop_assert_eq!(parse_header(&bytes, wrong_role), Err(wrong));
        for n in 0..len {
            prop_assert_eq!(parse_header(&bytes[..n], role), Ok(Partial));
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(
        mut bytes in prop::collection::vec(any::<u8>(), 0..=MAX_HEADER_LEN + 2),
        clear_rsv in any::<bool>(),
    ) {
        // Clearing RSV half the time lets the later checks see most inputs.
        if clear_rsv && !bytes.is_empty() {
            bytes[0] &= !RSV_BITS;
        }
        for role in [Role::Server, Role::Client] {
            let whole = parse_header(&bytes, role);
            if let Ok(Complete((header, len))) = whole {
                prop_assert!(len <= bytes.len());
                prop_assert!(len >= header_len(header.payload_len, header.mask.is_some()));
            }
            for n in 0..bytes.len() {
                let prefix = parse_header(&bytes[..n], role);
                prop_assert!(prefix == Ok(Partial) || prefix == whole);
            }
        }
    }

    #[test]
    fn any_split_of_a_masked_stream_yields_the_same_frames(
        frames in prop::collection::vec(
            (opcode(), prop_oneof![0usize..=125, 126usize..=400, Just(65536usize)], any::<[u8; 4]>()),
            1..8,
        ),
        chunks in prop::collection::vec(1usize..64, 1..16),
    ) {
        let mut stream = Vec::new();
        let mut expected = Vec::new();
        for (i, &(op, len, key)) in frames.iter().enumerate() {
            let len = if op.is_control() { len % 126 } else { len };
            let payload: Vec<u8> = (0..len).map(|j| (i * 31 + j) as u8).collect();
            stream.extend(encode_masked_frame(op, &payload, key));
            expected.push((hdr(true, op, Some(key), len as u64), payload));
        }

        // The caller: accumulate what arrives, take every whole frame off the front.
        let mut buf = Vec::new();
        let mut pos = 0;
        let mut got = Vec::new();
        let mut sizes = chunks.iter().cycle();
        let mut sent = 0;
        while sent < stream.len() {
            let end = (sent + sizes.next().unwrap()).min(stream.len());
            buf.extend_from_slice(&stream[sent..end]);
            sent = end;
            while let Complete((header, n)) = parse_header(&buf[pos..], Role::Server).unwrap() {
                let total = n + header.payload_len as usize;
                if buf.len() - pos < total {
                    break;
                }
                let mut payload = buf[pos + n..pos + total].to_vec();
                apply_mask_naive(&mut payload, header.mask.unwrap(), 0);
                got.push((header, payload));
                pos += total;
            }
        }
        prop_assert_eq!(pos, stream.len());
        prop_assert_eq!(got, expected);
    }
}

/// `parse_header_deflate` on `bytes`: the result, and every prefix `Partial` or the same.
fn check_deflate(
    bytes: &[u8],
    expected: Result<Decoded<(FrameHeader, usize, bool)>, ProtocolError>,
) {
    assert_eq!(
        parse_header_deflate(bytes, Role::Server),
        expected,
        "{bytes:02x?}"
    );
    for n in 0..bytes.len() {
        let prefix = parse_header_deflate(&bytes[..n], Role::Server);
        assert!(
            prefix == Ok(Partial) || prefix == expected,
            "prefix {n}: {prefix:?}"
        );
    }
}

/// permessage-deflate headers (RFC 7692 §6): `name: [bytes] => expected;`, as a server.
macro_rules! deflate_cases {
    ($($name:ident: [$($byte:expr),* $(,)?] => $expected:expr;)*) => {$(
        #[test]
        fn $name() {
            check_deflate(&[$($byte),*], $expected);
        }
    )*};
}

deflate_cases! {
    deflate_rsv1_text: [0xC1, 0x85, 1, 2, 3, 4]
        => Ok(Complete((hdr(true, OpCode::Text, Some([1, 2, 3, 4]), 5), 6, true)));
    deflate_rsv1_first_fragment: [0x42, 0x80, 1, 2, 3, 4]
        => Ok(Complete((hdr(false, OpCode::Binary, Some([1, 2, 3, 4]), 0), 6, true)));
    deflate_no_rsv1: [0x81, 0x80, 1, 2, 3, 4]
        => Ok(Complete((hdr(true, OpCode::Text, Some([1, 2, 3, 4]), 0), 6, false)));
    deflate_rsv1_continuation: [0xC0] => Err(CompressedBitMisplaced);
    deflate_rsv1_unfinished_continuation: [0x40, 0x80] => Err(CompressedBitMisplaced);
    deflate_rsv1_ping: [0xC9] => Err(CompressedBitMisplaced);
    deflate_rsv1_pong: [0xCA, 0x80] => Err(CompressedBitMisplaced);
    deflate_rsv1_close: [0xC8] => Err(CompressedBitMisplaced);
    deflate_rsv2_still_reserved: [0xA1] => Err(ReservedBits);
    deflate_rsv1_and_rsv3: [0xD1] => Err(ReservedBits);
    deflate_rsv1_reserved_opcode: [0xC3] => Err(ReservedOpcode);
    deflate_rsv1_unmasked: [0xC1, 0x05] => Err(UnmaskedFrame);
}

#[test]
fn rfc7692_compressed_hello_frame() {
    // RFC 7692 §7.2.3.1: "Hello" compressed, in one unmasked text frame with RSV1.
    let payload = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
    let bytes = [0xc1, 0x07, 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
    assert_eq!(encode_compressed_frame(OpCode::Text, &payload), bytes);
    assert_eq!(
        parse_header_deflate(&bytes, Role::Client),
        Ok(Complete((hdr(true, OpCode::Text, None, 7), 2, true)))
    );
    assert_eq!(parse_header(&bytes, Role::Client), Err(ReservedBits));
}

proptest! {
    #[test]
    fn deflate_parse_agrees_without_rsv1(mut bytes in prop::collection::vec(any::<u8>(), 0..=MAX_HEADER_LEN)) {
        if let Some(b0) = bytes.first_mut() {
            *b0 &= !RSV1;
        }
        for role in [Role::Server, Role::Client] {
            let plain = parse_header(&bytes, role).map(|d| match d {
                Complete((h, len)) => Complete((h, len, false)),
                Partial => Partial,
            });
            prop_assert_eq!(parse_header_deflate(&bytes, role), plain);
        }
    }
}
