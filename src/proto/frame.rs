//! Frame header parsing and encoding (RFC 6455 §5.2). STUB: being implemented.

use super::{Decoded, ProtocolError};

/// Which end of the connection is parsing: servers require masked frames, clients forbid them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// We are the server: every incoming frame must be masked.
    Server,
    /// We are the client: no incoming frame may be masked.
    Client,
}

/// A frame opcode (§5.2). Reserved values are rejected at parse time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum OpCode {
    /// Continues a fragmented message.
    Continuation = 0x0,
    /// A text (UTF-8) data frame.
    Text = 0x1,
    /// A binary data frame.
    Binary = 0x2,
    /// Close control frame.
    Close = 0x8,
    /// Ping control frame.
    Ping = 0x9,
    /// Pong control frame.
    Pong = 0xA,
}

impl OpCode {
    /// Control frames are Close, Ping and Pong (opcodes with the high bit set).
    pub fn is_control(self) -> bool {
        (self as u8) & 0x8 != 0
    }
}

/// A parsed frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    /// Final fragment of a message.
    pub fin: bool,
    /// The frame's opcode.
    pub opcode: OpCode,
    /// The masking key, if the frame is masked.
    pub mask: Option<[u8; 4]>,
    /// Payload length in bytes.
    pub payload_len: u64,
}

/// Largest possible header: 2 + 8 (64-bit length) + 4 (mask).
pub const MAX_HEADER_LEN: usize = 14;

/// Parses the frame header at the start of `buf`, returning it and its length in bytes.
pub fn parse_header(
    _buf: &[u8],
    _role: Role,
) -> Result<Decoded<(FrameHeader, usize)>, ProtocolError> {
    todo!()
}

/// Appends the header for `header` to `out` (mask key included when `header.mask` is set).
pub fn write_header(_out: &mut Vec<u8>, _header: &FrameHeader) {
    todo!()
}

/// The length of the header for a payload of `payload_len` bytes.
pub fn header_len(_payload_len: u64, _masked: bool) -> usize {
    todo!()
}

/// Encodes a whole unmasked, unfragmented frame (what a server sends).
pub fn encode_frame(_opcode: OpCode, _payload: &[u8]) -> Vec<u8> {
    todo!()
}

/// Encodes a whole masked, unfragmented frame (what a client sends).
pub fn encode_masked_frame(_opcode: OpCode, _payload: &[u8], _key: [u8; 4]) -> Vec<u8> {
    todo!()
}
