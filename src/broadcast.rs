//! Encode once, share everywhere: the broadcast frame and each connection's outbound queue.
//!
//! A message published to a channel is encoded into one [`SharedFrame`] (header + payload in a
//! single allocation). Every subscriber's [`OutQueue`] holds a reference to those same bytes;
//! the only per-subscriber work is a reference-count increment and a queue push. The loop later
//! writes each queue with one vectored write, so all frames queued for a subscriber in one turn
//! leave in one syscall.

use std::sync::Arc;

use crate::proto::frame::{self, OpCode};

/// An encoded, immutable frame shared by every queue it was delivered to.
pub type SharedFrame = Arc<Vec<u8>>;

/// How many slices one vectored write may carry (Linux's `IOV_MAX` is 1024; a few dozen
/// already fill a socket buffer with small frames).
pub const MAX_IOVECS: usize = 64;

mod queue;
pub use queue::{GATHER_BELOW, GATHER_LIMIT, OWNED_OVERHEAD, OutQueue, SHARED_OVERHEAD};

/// Encodes `payload` once as an unmasked, unfragmented frame for any number of subscribers.
pub fn encode(opcode: OpCode, payload: &[u8]) -> SharedFrame {
    Arc::new(frame::encode_frame(opcode, payload))
}

/// A message for [`crate::Handle::publish`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// Sent as a text frame.
    Text(String),
    /// Sent as a binary frame.
    Binary(Vec<u8>),
}

impl Message {
    /// The frame this message is sent as.
    pub fn encode(&self) -> SharedFrame {
        match self {
            Message::Text(t) => encode(OpCode::Text, t.as_bytes()),
            Message::Binary(b) => encode(OpCode::Binary, b),
        }
    }
}

impl From<&str> for Message {
    fn from(s: &str) -> Self {
        Message::Text(s.to_owned())
    }
}

impl From<String> for Message {
    fn from(s: String) -> Self {
        Message::Text(s)
    }
}

impl From<Vec<u8>> for Message {
    fn from(b: Vec<u8>) -> Self {
        Message::Binary(b)
    }
}
