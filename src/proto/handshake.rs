//! The HTTP/1.1 upgrade handshake (RFC 6455 §4). STUB: being implemented.

use super::Decoded;

/// The GUID appended to `Sec-WebSocket-Key` before hashing (§1.3).
pub const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// What the handshake enforces, taken from the server's configuration.
#[derive(Clone, Copy, Debug)]
pub struct Policy<'a> {
    /// Channel used when the client offers no subprotocol; `None` refuses such clients (400).
    pub default_channel: Option<&'a str>,
    /// Allowed `Origin` values; empty allows any origin.
    pub allowed_origins: &'a [String],
    /// Largest request head accepted; a longer one is refused with 431.
    pub max_header_bytes: usize,
}

/// An accepted WebSocket upgrade.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upgrade {
    /// The channel the connection subscribes to (the selected subprotocol or the default).
    pub channel: String,
    /// Whether `channel` was offered as a subprotocol (and so is echoed in the 101).
    pub selected_protocol: bool,
    /// The `Sec-WebSocket-Accept` value.
    pub accept: String,
}

/// A request the handshake accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// A valid WebSocket upgrade.
    Upgrade(Upgrade),
    /// `GET /healthz` without upgrade.
    Health,
}

/// A refused request: a complete HTTP response is sent, then the connection is closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The HTTP status code.
    pub status: u16,
    /// A human-readable reason, sent as the response body.
    pub reason: &'static str,
}

/// Parses a request head from the start of `buf`.
pub fn parse(_buf: &[u8], _policy: &Policy<'_>) -> Result<Decoded<(Request, usize)>, Refusal> {
    todo!()
}

/// `base64(SHA-1(key + GUID))`.
pub fn accept_key(_key: &[u8]) -> String {
    todo!()
}
