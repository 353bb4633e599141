//! The sans-I/O WebSocket protocol core (RFC 6455).
//!
//! Nothing in here touches a socket, a poller or a clock: every function takes bytes (and, for
//! timers, an `Instant` handed in by the caller) and returns values. That keeps the protocol
//! testable byte-for-byte without a network, and lets the load generator reuse the same codec
//! from the client side.
//!
//! - [`handshake`]: the HTTP/1.1 upgrade (§4), accept key, refusals with their HTTP status.
//! - [`request`]: the HTTP/1.1 request layer both share: policy, refusals, header helpers.
//! - [`http`]: the small HTTP API on the same port (publish, channels, metrics, health).
//! - [`frame`]: frame header parse and encode (§5.2), opcodes.
//! - [`deflate`]: permessage-deflate (RFC 7692): negotiation, compress once per broadcast,
//!   bounded inflation.
//! - [`mask`]: client-to-server masking (§5.3), fast and naive.
//! - [`utf8`]: streaming, fail-fast UTF-8 validation of text messages (§5.6, §8.1).
//! - [`close`]: close codes and close-frame payloads (§5.5.1, §7.4).
//! - [`session`]: one connection's protocol state after the handshake.

pub mod close;
pub mod deflate;
pub mod frame;
pub mod handshake;
pub mod http;
pub mod mask;
pub mod request;
pub mod session;
pub mod utf8;

/// The result of parsing from a buffer that may not hold a whole unit yet.
///
/// Short input is not an error (like `httparse::Status`): the caller reads more and tries again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decoded<T> {
    /// More bytes are needed before anything can be decided.
    Partial,
    /// A whole unit was parsed.
    Complete(T),
}

/// A violation of RFC 6455 by the peer. Each one closes the connection with [`Self::close_code`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProtocolError {
    /// An RSV bit was set although no extension was negotiated (§5.2).
    ReservedBits,
    /// The opcode is one of the reserved values 3–7 or 0xB–0xF (§5.2).
    ReservedOpcode,
    /// A client sent a frame without a mask (§5.1).
    UnmaskedFrame,
    /// A server sent a masked frame (§5.1); only the client side reports this.
    MaskedFrame,
    /// A 64-bit payload length had its most significant bit set (§5.2).
    InvalidLength,
    /// A control frame carried more than 125 bytes of payload (§5.5).
    ControlFrameTooLong,
    /// A control frame had FIN clear (§5.5).
    FragmentedControlFrame,
    /// A continuation frame arrived with no fragmented message in progress (§5.4).
    UnexpectedContinuation,
    /// A new text or binary frame arrived inside a fragmented message (§5.4).
    ExpectedContinuation,
    /// A text message, or a close reason, was not valid UTF-8 (§8.1).
    InvalidUtf8,
    /// A close frame carried a one-byte payload (§5.5.1).
    InvalidClosePayload,
    /// A close frame carried a code that may not be sent on the wire (§7.4).
    InvalidCloseCode,
    /// A message was larger than the configured maximum (for a compressed message: once
    /// inflated, or on the wire beyond what DEFLATE can expand it to).
    MessageTooBig,
    /// RSV1, permessage-deflate's "per-message compressed" bit, was set on a control frame or
    /// a continuation frame (RFC 7692 §6.1).
    CompressedBitMisplaced,
    /// A compressed message was not valid DEFLATE data (RFC 7692 §7.2.2). RFC 7692 names no
    /// code; 1007 ("data not consistent with the type of the message", §7.4.1), like invalid
    /// UTF-8: the frames were well formed, their content was not. Node's `ws` does the same.
    InvalidCompressedData,
}

impl ProtocolError {
    /// Every error (for tests that check them all).
    pub const ALL: [ProtocolError; 15] = {
        use ProtocolError::*;
        [
            ReservedBits,
            ReservedOpcode,
            UnmaskedFrame,
            MaskedFrame,
            InvalidLength,
            ControlFrameTooLong,
            FragmentedControlFrame,
            UnexpectedContinuation,
            ExpectedContinuation,
            InvalidUtf8,
            InvalidClosePayload,
            InvalidCloseCode,
            MessageTooBig,
            CompressedBitMisplaced,
            InvalidCompressedData,
        ]
    };

    /// The close code the connection is closed with (§7.4.1).
    pub fn close_code(self) -> u16 {
        match self {
            ProtocolError::InvalidUtf8 | ProtocolError::InvalidCompressedData => {
                close::INVALID_PAYLOAD
            }
            ProtocolError::MessageTooBig => close::MESSAGE_TOO_BIG,
            _ => close::PROTOCOL_ERROR,
        }
    }

    /// A short human-readable reason, sent in the close frame (always ≤ 123 bytes).
    pub fn reason(self) -> &'static str {
        match self {
            ProtocolError::ReservedBits => "reserved bits set",
            ProtocolError::ReservedOpcode => "reserved opcode",
            ProtocolError::UnmaskedFrame => "client frame not masked",
            ProtocolError::MaskedFrame => "server frame masked",
            ProtocolError::InvalidLength => "invalid payload length",
            ProtocolError::ControlFrameTooLong => "control frame too long",
            ProtocolError::FragmentedControlFrame => "fragmented control frame",
            ProtocolError::UnexpectedContinuation => "unexpected continuation frame",
            ProtocolError::ExpectedContinuation => "expected continuation frame",
            ProtocolError::InvalidUtf8 => "invalid utf-8",
            ProtocolError::InvalidClosePayload => "invalid close payload",
            ProtocolError::InvalidCloseCode => "invalid close code",
            ProtocolError::MessageTooBig => "message too big",
            ProtocolError::CompressedBitMisplaced => {
                "compressed bit on a control or continuation frame"
            }
            ProtocolError::InvalidCompressedData => "invalid compressed data",
        }
    }
}

impl std::fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (close code {})", self.reason(), self.close_code())
    }
}

impl std::error::Error for ProtocolError {}
