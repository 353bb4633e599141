//! Encode once, share everywhere: the broadcast frame and each connection's outbound queue.
//!
//! A message published to a channel is encoded into one [`SharedFrame`] (header + payload in a
//! single allocation), wrapped in a [`Broadcast`] that can also hold its compressed variant
//! (permessage-deflate, compressed at most once, on first need, and shared likewise). Every
//! subscriber's [`OutQueue`] holds a reference to those same bytes; the only per-subscriber
//! work is a reference-count increment and a queue push. The loop later writes each queue with
//! one send, so all frames queued for a subscriber in one turn leave in one syscall.

use std::sync::Arc;

use crate::proto::deflate::DeflatableFrame;
use crate::proto::frame::{self, OpCode};

/// An encoded, immutable frame shared by every queue it was delivered to.
pub type SharedFrame = Arc<Vec<u8>>;

/// A published message: its plain frame and, lazily, its compressed one, shared by every loop,
/// subscriber and history slot that has it.
pub type Broadcast = Arc<DeflatableFrame>;

/// How many slices one vectored write may carry (Linux's `IOV_MAX` is 1024; a few dozen
/// already fill a socket buffer with small frames).
pub const MAX_IOVECS: usize = 64;

mod queue;
pub use queue::{GATHER_BELOW, GATHER_LIMIT, OWNED_OVERHEAD, OutQueue, SHARED_OVERHEAD};

/// Encodes `payload` once as an unmasked, unfragmented frame for any number of subscribers.
pub fn encode(opcode: OpCode, payload: &[u8]) -> SharedFrame {
    Arc::new(frame::encode_frame(opcode, payload))
}

/// Encodes a message once, to be broadcast.
pub fn message(opcode: OpCode, payload: &[u8]) -> Broadcast {
    Arc::new(DeflatableFrame::new(encode(opcode, payload)))
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
    /// The frame this message is sent as, encoded once.
    pub fn encode(&self) -> Broadcast {
        match self {
            Message::Text(t) => message(OpCode::Text, t.as_bytes()),
            Message::Binary(b) => message(OpCode::Binary, b),
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
