//! Close codes and close-frame payloads (RFC 6455 §5.5.1, §7.4). STUB.

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

/// Whether `code` may appear in a close frame on the wire (§7.4.1, §7.4.2).
pub fn is_valid_code(_code: u16) -> bool {
    todo!()
}

/// Validates a received close payload: `None` when it carries no code.
pub fn parse_close_payload(_payload: &[u8]) -> Result<Option<(u16, &str)>, ProtocolError> {
    todo!()
}

/// Builds a close payload: the code in network order then the reason (truncated to fit 125 bytes
/// on a char boundary).
pub fn close_payload(_code: u16, _reason: &str) -> Vec<u8> {
    todo!()
}
