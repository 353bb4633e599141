//! `frame::parse_header` for both roles over arbitrary bytes, and the encoders read back.
//!
//! For each role:
//! - `Complete((h, n))`: `n` is 2..=14 and within the input; the header obeys what parsing
//!   promises (mask per role, control frames final and ≤ 125 bytes, length below 2^63); bytes
//!   after the header do not matter; every shorter prefix is `Partial`; `write_header(h)` is
//!   `header_len` bytes that parse back to `h`, and equal the input's header when that used the
//!   minimal length encoding (non-minimal ones are accepted, and are longer).
//! - `Err(e)`: every prefix is `Partial` or the same `e` (the module's "a prefix never
//!   contradicts the whole").
//! - `Partial`: the input is shorter than a maximal header, and every prefix is `Partial` too.
//!
//! Then the input is used as a payload: `encode_frame`, `encode_masked_frame` and
//! `encode_close_frame` must produce one frame that parses back to that payload.
#![no_main]

use fanout::proto::Decoded;
use fanout::proto::close;
use fanout::proto::frame::{self, FrameHeader, MAX_CONTROL_PAYLOAD, MAX_HEADER_LEN, OpCode, Role};
use fanout::proto::mask;
use libfuzzer_sys::fuzz_target;

fn check_parse(data: &[u8], role: Role) {
    let whole = frame::parse_header(data, role);
    let limit = data.len().min(MAX_HEADER_LEN + 1);
    match whole {
        Ok(Decoded::Complete((h, n))) => {
            assert!(
                (2..=MAX_HEADER_LEN).contains(&n) && n <= data.len(),
                "n = {n}"
            );
            assert_eq!(h.mask.is_some(), role == Role::Server, "{h:?}");
            assert!(h.payload_len <= i64::MAX as u64, "{h:?}");
            if h.opcode.is_control() {
                assert!(
                    h.fin && h.payload_len <= MAX_CONTROL_PAYLOAD as u64,
                    "{h:?}"
                );
            }
            let minimal = frame::header_len(h.payload_len, h.mask.is_some());
            assert!(n >= minimal, "{n} < {minimal}");
            assert_eq!(
                frame::parse_header(&data[..n], role),
                whole,
                "trailing bytes mattered"
            );
            for k in 0..n {
                assert_eq!(
                    frame::parse_header(&data[..k], role),
                    Ok(Decoded::Partial),
                    "{k}"
                );
            }
            let mut out = Vec::new();
            frame::write_header(&mut out, &h);
            assert_eq!(out.len(), minimal);
            assert_eq!(
                frame::parse_header(&out, role),
                Ok(Decoded::Complete((h, minimal))),
                "{out:02x?}"
            );
            if n == minimal {
                assert_eq!(
                    &out[..],
                    &data[..n],
                    "minimal encoding re-encoded differently"
                );
            }
        }
        Err(e) => {
            for k in 0..limit {
                let prefix = frame::parse_header(&data[..k], role);
                assert!(
                    prefix == Ok(Decoded::Partial) || prefix == Err(e),
                    "prefix of {k} bytes gave {prefix:?}, whole {e:?}"
                );
            }
        }
        Ok(Decoded::Partial) => {
            assert!(
                data.len() < MAX_HEADER_LEN,
                "{} bytes still partial",
                data.len()
            );
            for k in 0..limit {
                assert_eq!(
                    frame::parse_header(&data[..k], role),
                    Ok(Decoded::Partial),
                    "{k}"
                );
            }
        }
    }
}

/// `frame` must be exactly one FIN frame of `opcode` for `role`; returns its unmasked payload.
fn read_back(frame: &[u8], role: Role, opcode: OpCode) -> Vec<u8> {
    let (h, n): (FrameHeader, usize) = match frame::parse_header(frame, role) {
        Ok(Decoded::Complete(done)) => done,
        other => panic!("encoded frame {frame:02x?} does not parse: {other:?}"),
    };
    assert!(h.fin && h.opcode == opcode, "{h:?}");
    assert_eq!(n, frame::header_len(h.payload_len, h.mask.is_some()));
    assert_eq!(n as u64 + h.payload_len, frame.len() as u64);
    let mut payload = frame[n..].to_vec();
    if let Some(key) = h.mask {
        mask::apply_mask_naive(&mut payload, key, 0);
    }
    payload
}

fn check_encoders(data: &[u8]) {
    let key = [0x37, 0xfa, 0x21, 0x3d];
    for opcode in [OpCode::Text, OpCode::Binary, OpCode::Ping, OpCode::Pong] {
        if opcode.is_control() && data.len() > MAX_CONTROL_PAYLOAD {
            continue;
        }
        let plain = frame::encode_frame(opcode, data);
        assert_eq!(read_back(&plain, Role::Client, opcode), data);
        let masked = frame::encode_masked_frame(opcode, data, key);
        assert_eq!(read_back(&masked, Role::Server, opcode), data);
    }
    if let Some(([hi, lo], reason)) = data.split_first_chunk() {
        let code = u16::from_be_bytes([*hi, *lo]);
        let reason = String::from_utf8_lossy(reason);
        let payload = read_back(
            &frame::encode_close_frame(code, &reason),
            Role::Client,
            OpCode::Close,
        );
        assert!(payload.len() <= MAX_CONTROL_PAYLOAD);
        assert_eq!(payload[..2], code.to_be_bytes());
        assert!(
            reason.as_bytes().starts_with(&payload[2..]),
            "reason cut badly"
        );
        let sent = std::str::from_utf8(&payload[2..]).expect("reason cut inside a char");
        if reason.len() <= close::MAX_REASON_LEN {
            assert_eq!(sent, reason, "a reason that fits was cut");
        } else {
            // Cut on a char boundary: at most 3 bytes short of the limit.
            assert!(
                sent.len() + 3 >= close::MAX_REASON_LEN,
                "cut to {} bytes",
                sent.len()
            );
        }
        if close::is_valid_code(code) {
            assert_eq!(close::parse_close_payload(&payload), Ok(Some((code, sent))));
        }
    }
}

fuzz_target!(|data: &[u8]| {
    check_parse(data, Role::Server);
    check_parse(data, Role::Client);
    check_encoders(data);
});
