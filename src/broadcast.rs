//! Encode once, share everywhere: the broadcast frame and each connection's outbound queue.
//!
//! A message published to a channel is encoded into one [`SharedFrame`] (header + payload in a
//! single allocation). Every subscriber's [`OutQueue`] holds a reference to those same bytes;
//! the only per-subscriber work is a reference-count increment and a queue push. The loop later
//! writes each queue with one vectored write, so all frames queued for a subscriber in one turn
//! leave in one syscall.

use std::collections::VecDeque;
use std::io::IoSlice;
use std::sync::Arc;

use crate::proto::frame::{self, OpCode};

/// An encoded, immutable frame shared by every queue it was delivered to.
pub type SharedFrame = Arc<Vec<u8>>;

/// How many frames one vectored write may carry (Linux's `IOV_MAX` is 1024; a few dozen
/// already fill a socket buffer with small frames).
pub const MAX_IOVECS: usize = 64;

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

/// A connection's outbound frames: shared references plus how far the first one was written.
#[derive(Debug, Default)]
pub struct OutQueue {
    frames: VecDeque<SharedFrame>,
    /// Bytes of `frames[0]` already written; frames after it are untouched, so an urgent
    /// control frame can go right after it without splitting a frame on the wire.
    head_written: usize,
    /// Unwritten bytes, counted per connection although the frames are shared: this is what
    /// `--max-backpressure` caps.
    queued: usize,
    /// How many frames at the front urgent frames may not pass: the partly written head, HTTP
    /// responses (the `101` above all) and earlier urgent frames, so pongs keep their order and
    /// never overtake the handshake.
    pinned: usize,
}

impl OutQueue {
    /// Unwritten bytes queued.
    pub fn queued_bytes(&self) -> usize {
        self.queued
    }

    /// Whether nothing is waiting to be written.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Queues a frame behind everything else.
    pub fn push(&mut self, frame: SharedFrame) {
        self.queued += frame.len();
        self.frames.push_back(frame);
    }

    /// Queues a frame behind everything else that nothing queued later may overtake (an HTTP
    /// response, such as the `101`).
    pub fn push_pinned(&mut self, frame: SharedFrame) {
        self.push(frame);
        self.pinned = self.frames.len();
    }

    /// Queues a control frame ahead of queued data, but behind pinned frames and earlier urgent
    /// ones, and never inside a partly written frame.
    pub fn push_urgent(&mut self, frame: SharedFrame) {
        self.queued += frame.len();
        let at = self.pinned.max(usize::from(self.head_written > 0));
        self.frames.insert(at, frame);
        self.pinned = at + 1;
    }

    /// Drops every frame not yet started, keeping a partly written one so the stream stays
    /// well-formed. Used before a slow consumer's close frame, to bound its memory at once.
    pub fn discard_unstarted(&mut self) {
        let keep = usize::from(self.head_written > 0).min(self.frames.len());
        self.frames.truncate(keep);
        self.pinned = self.pinned.min(keep);
        self.queued = self
            .frames
            .front()
            .map_or(0, |f| f.len() - self.head_written);
    }

    /// Fills `iov` with the unwritten bytes, in order; returns how many slices were used.
    pub fn iovecs<'a>(&'a self, iov: &mut [IoSlice<'a>]) -> usize {
        let mut n = 0;
        for (i, frame) in self.frames.iter().take(iov.len()).enumerate() {
            let skip = if i == 0 { self.head_written } else { 0 };
            iov[i] = IoSlice::new(&frame[skip..]);
            n += 1;
        }
        n
    }

    /// Records that `written` bytes left the queue's front.
    pub fn advance(&mut self, mut written: usize) {
        self.queued -= written;
        while let Some(front) = self.frames.front() {
            let left = front.len() - self.head_written;
            if written < left {
                self.head_written += written;
                return;
            }
            written -= left;
            self.head_written = 0;
            self.pinned = self.pinned.saturating_sub(1);
            self.frames.pop_front();
        }
        debug_assert_eq!(written, 0, "advanced past the queued bytes");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(bytes: &[u8]) -> SharedFrame {
        Arc::new(bytes.to_vec())
    }

    fn pending(q: &OutQueue) -> Vec<u8> {
        let mut iov = [IoSlice::new(&[]); MAX_IOVECS];
        let n = q.iovecs(&mut iov);
        iov[..n].iter().flat_map(|s| s.iter().copied()).collect()
    }

    #[test]
    fn one_encoding_is_shared_by_every_queue() {
        let f = encode(OpCode::Text, b"hi");
        let mut queues: Vec<OutQueue> = (0..3).map(|_| OutQueue::default()).collect();
        for q in &mut queues {
            q.push(f.clone());
        }
        assert_eq!(Arc::strong_count(&f), 4);
        for q in &queues {
            assert_eq!(pending(q), [0x81, 2, b'h', b'i']);
            assert_eq!(q.queued_bytes(), 4);
        }
    }

    #[test]
    fn advance_tracks_partial_frames() {
        let mut q = OutQueue::default();
        q.push(frame(b"abc"));
        q.push(frame(b"de"));
        q.advance(2);
        assert_eq!(pending(&q), b"cde");
        assert_eq!(q.queued_bytes(), 3);
        q.advance(2);
        assert_eq!(pending(&q), b"e");
        q.advance(1);
        assert!(q.is_empty());
        assert_eq!(q.queued_bytes(), 0);
    }

    #[test]
    fn urgent_frames_jump_the_queue_but_not_a_partial_frame() {
        let mut q = OutQueue::default();
        q.push(frame(b"abc"));
        q.push_urgent(frame(b"P"));
        assert_eq!(pending(&q), b"Pabc");
        q.advance(2); // "P" and "a" written: "bc" is a partial frame now
        q.push(frame(b"xy"));
        q.push_urgent(frame(b"Q"));
        assert_eq!(pending(&q), b"bcQxy");
        assert_eq!(q.queued_bytes(), 5);
    }

    #[test]
    fn urgent_frames_keep_their_order_and_never_pass_pinned_ones() {
        let mut q = OutQueue::default();
        q.push_pinned(frame(b"101 "));
        q.push(frame(b"hist "));
        q.push_urgent(frame(b"P1 "));
        q.push_urgent(frame(b"P2 "));
        q.push(frame(b"live"));
        assert_eq!(pending(&q), b"101 P1 P2 hist live");
        // Once the pinned and urgent frames are written, a new urgent one goes first again.
        q.advance(10);
        q.push_urgent(frame(b"P3 "));
        assert_eq!(pending(&q), b"P3 hist live");
    }

    #[test]
    fn discard_keeps_only_a_started_frame() {
        let mut q = OutQueue::default();
        q.push(frame(b"abc"));
        q.push(frame(b"def"));
        q.discard_unstarted();
        assert!(q.is_empty());
        assert_eq!(q.queued_bytes(), 0);

        q.push(frame(b"abc"));
        q.push(frame(b"def"));
        q.advance(1);
        q.discard_unstarted();
        assert_eq!(pending(&q), b"bc");
        assert_eq!(q.queued_bytes(), 2);
    }

    #[test]
    fn iovecs_are_capped_at_the_slice_length() {
        let mut q = OutQueue::default();
        for _ in 0..MAX_IOVECS + 5 {
            q.push(frame(b"x"));
        }
        let mut iov = [IoSlice::new(&[]); MAX_IOVECS];
        assert_eq!(q.iovecs(&mut iov), MAX_IOVECS);
    }
}
