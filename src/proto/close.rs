//! Close codes and close-frame payloads (RFC 6455 §5.5.1, §7.4).
//!
//! A Close frame's payload is either empty or a two-byte status code in network order followed by
//! an optional UTF-8 reason (§5.5.1). This module owns which codes may travel on the wire (§7.4.1
//! defines them, §7.4.2 reserves the ranges) and builds and validates those payloads. The 125-byte
//! limit on the whole payload is a control-frame rule and is checked by [`super::frame`].

use super::ProtocolError;

/// 1000: normal closure.
pub const NORMAL: u16 = 1000;
/// 1001: the server is going away (shutdown).
pub const GOING_AWAY: u16 = 1001;
/// 1002: protocol error.
pub const PROTOCOL_ERROR: u16 = 1002;
/// 1007: payload data inconsistent with the message type (bad UTF-8).
pub const INVALID_PAYLOAD: u16 = 1007;
/// 1008: policy violation (slow consumer).
pub const POLICY_VIOLATION: u16 = 1008;
/// 1009: message too big.
pub const MESSAGE_TOO_BIG: u16 = 1009;
/// 1011: unexpected server condition.
pub const INTERNAL_ERROR: u16 = 1011;
/// 1013: try again later, the server is overloaded (IANA registry, after RFC 6455): sent when
/// `--max-input-memory` is full.
pub const TRY_AGAIN_LATER: u16 = 1013;
/// 1005: reported locally when a Close frame carried no code; never sent on the wire (§7.4.1).
pub const NO_STATUS_RECEIVED: u16 = 1005;
/// 1006: reported locally when the connection dropped without a Close frame; never sent (§7.4.1).
pub const ABNORMAL_CLOSURE: u16 = 1006;

/// The longest reason that fits a Close frame: 125 bytes of control payload less the 2-byte code.
pub const MAX_REASON_LEN: usize = 123;

/// Whether `code` may appear in a close frame on the wire (§7.4.1, §7.4.2).
///
/// Valid: 1000–1003 and 1007–1011 (§7.4.1), 1012–1014 (registered with IANA after the RFC:
/// service restart, try again later, bad gateway; browsers and Autobahn accept them), and
/// 3000–4999 (libraries, frameworks and applications, §7.4.2). Everything else is refused:
/// below 1000 (unused), 1004 (reserved), 1005 and 1006 (local-only, "MUST NOT be set"), 1015
/// (TLS failure, local-only), 1016–2999 (reserved for future protocol use), and 5000 and up.
pub fn is_valid_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// Validates a received close payload: `None` when it carries no code.
///
/// Checks run in order: a 1-byte payload is [`ProtocolError::InvalidClosePayload`], a code that
/// fails [`is_valid_code`] is [`ProtocolError::InvalidCloseCode`], and a reason that is not UTF-8
/// is [`ProtocolError::InvalidUtf8`] (closed with 1007, like a bad text message).
pub fn parse_close_payload(payload: &[u8]) -> Result<Option<(u16, &str)>, ProtocolError> {
    match payload {
        [] => Ok(None),
        [_] => Err(ProtocolError::InvalidClosePayload),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            if !is_valid_code(code) {
                return Err(ProtocolError::InvalidCloseCode);
            }
            let reason = std::str::from_utf8(reason).map_err(|_| ProtocolError::InvalidUtf8)?;
            Ok(Some((code, reason)))
        }
    }
}

/// `reason` cut to at most [`MAX_REASON_LEN`] bytes, on a char boundary so it stays UTF-8.
pub fn truncate_reason(reason: &str) -> &str {
    let mut end = reason.len().min(MAX_REASON_LEN);
    // A char boundary is at most 3 bytes back (a UTF-8 sequence is at most 4 bytes long).
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    &reason[..end]
}

/// Builds a close payload: the code in network order then the reason (truncated to fit 125 bytes
/// on a char boundary).
pub fn close_payload(code: u16, reason: &str) -> Vec<u8> {
    let reason = truncate_reason(reason);
    let mut out = Vec::with_capacity(2 + reason.len());
    out.extend_from_slice(&code.to_be_bytes());
    out.extend_from_slice(reason.as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One test per close code: `name: code => valid?`.
    macro_rules! codes {
        ($($name:ident: $code:expr => $valid:expr,)*) => {$(
            #[test]
            fn $name() {
                assert_eq!(is_valid_code($code), $valid, "code {}", $code);
                // The payload parser agrees with the predicate.
                let payload = close_payload($code, "bye");
                let parsed = parse_close_payload(&payload);
                if $valid {
                    assert_eq!(parsed, Ok(Some(($code, "bye"))));
                } else {
                    assert_eq!(parsed, Err(ProtocolError::InvalidCloseCode));
                }
            }
        )*};
    }

    codes! {
        code_0: 0 => false,
        code_999: 999 => false,
        code_1000: 1000 => true,
        code_1001: 1001 => true,
        code_1002: 1002 => true,
        code_1003: 1003 => true,
        code_1004: 1004 => false,
        code_1005: 1005 => false,
        code_1006: 1006 => false,
        code_1007: 1007 => true,
        code_1011: 1011 => true,
        code_1012: 1012 => true,
        code_1014: 1014 => true,
        code_1015: 1015 => false,
        code_1016: 1016 => false,
        code_2999: 2999 => false,
        code_3000: 3000 => true,
        code_4999: 4999 => true,
        code_5000: 5000 => false,
        code_65535: 65535 => false,
    }

    /// One test per received payload: `name: bytes => expected result`.
    macro_rules! payloads {
        ($($name:ident: $payload:expr => $expected:expr,)*) => {$(
            #[test]
            fn $name() {
                assert_eq!(parse_close_payload($payload), $expected);
            }
        )*};
    }

    payloads! {
        payload_empty: b"" => Ok(None),
        payload_one_byte: b"\x03" => Err(ProtocolError::InvalidClosePayload),
        payload_code_only: b"\x03\xe8" => Ok(Some((1000, ""))),
        payload_code_and_reason: b"\x03\xe9bye" => Ok(Some((1001, "bye"))),
        payload_utf8_reason: b"\x0f\xa0\xce\xba\xe1\xbd\xb9" => Ok(Some((4000, "\u{3ba}\u{1f79}"))),
        payload_bad_utf8: b"\x03\xe8\xff" => Err(ProtocolError::InvalidUtf8),
        payload_truncated_utf8: b"\x03\xe8\xce" => Err(ProtocolError::InvalidUtf8),
        payload_surrogate_reason: b"\x03\xe8\xed\xa0\x80" => Err(ProtocolError::InvalidUtf8),
        payload_code_checked_first: b"\x03\xed\xff" => Err(ProtocolError::InvalidCloseCode),
        payload_1005_on_wire: b"\x03\xed" => Err(ProtocolError::InvalidCloseCode),
        payload_zero_code: b"\x00\x00" => Err(ProtocolError::InvalidCloseCode),
    }

    #[test]
    fn payload_layout() {
        assert_eq!(close_payload(1000, ""), b"\x03\xe8");
        assert_eq!(close_payload(PROTOCOL_ERROR, "x"), b"\x03\xeax");
        assert_eq!(close_payload(4999, "é"), b"\x13\x87\xc3\xa9");
    }

    #[test]
    fn reason_truncated_to_fit() {
        let long = "a".repeat(200);
        let p = close_payload(NORMAL, &long);
        assert_eq!(p.len(), 125);
        assert_eq!(p.capacity(), 125);
        assert_eq!(parse_close_payload(&p), Ok(Some((NORMAL, &long[..123]))));
    }

    #[test]
    fn reason_truncated_on_char_boundary() {
        // 122 ASCII bytes then a 2-byte char straddling the 123-byte limit: the char is dropped.
        let reason = format!("{}é", "a".repeat(122));
        assert_eq!(truncate_reason(&reason), &reason[..122]);
        // Every offset of a 4-byte char across the limit.
        for pad in 119..=123 {
            let reason = format!("{}😀tail", "a".repeat(pad));
            let cut = truncate_reason(&reason);
            assert!(cut.len() <= MAX_REASON_LEN && reason.starts_with(cut));
            assert!(cut.len() + 4 > MAX_REASON_LEN || cut.ends_with('😀'));
            let p = close_payload(GOING_AWAY, &reason);
            assert_eq!(parse_close_payload(&p), Ok(Some((GOING_AWAY, cut))));
        }
        assert_eq!(truncate_reason("short"), "short");
        assert_eq!(truncate_reason(&"b".repeat(123)).len(), 123);
    }

    #[test]
    fn every_protocol_error_has_a_sendable_code_and_its_own_reason_that_fits() {
        let mut reasons = std::collections::HashSet::new();
        for e in ProtocolError::ALL {
            assert!(is_valid_code(e.close_code()), "{e:?}");
            assert_eq!(truncate_reason(e.reason()), e.reason(), "{e:?}");
            assert!(reasons.insert(e.reason()), "{e:?} shares its reason");
        }
    }

    #[test]
    fn every_code_agrees_with_ranges() {
        for code in 0..=u16::MAX {
            let expected = (1000..=1003).contains(&code)
                || (1007..=1014).contains(&code)
                || (3000..=4999).contains(&code);
            assert_eq!(is_valid_code(code), expected, "code {code}");
        }
    }
}
