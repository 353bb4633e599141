//! A connection's outbound queue: shared frames in order, how far the first one was written,
//! and what the queue holds, counted as `--max-backpressure` counts it.
//!
//! What is counted is memory really held, not wire bytes: a shared frame (a broadcast, a
//! history frame, a batch) costs this connection its length plus its slot in the queue
//! ([`SHARED_OVERHEAD`]); a buffer the loop made for this connection alone (an HTTP response,
//! a pong, a close frame) costs its capacity plus its allocation headers and slot
//! ([`OWNED_OVERHEAD`]). So a peer that makes the server produce many small answers without
//! reading them reaches the cap at the memory it really costs. Pongs can be coalesced: a
//! pong not yet started is replaced by a newer one (RFC 6455 §5.5.3 lets an endpoint answer
//! only the most recent ping), which the loop asks for when the peer is not reading them.

use std::collections::VecDeque;
use std::io::IoSlice;

use super::{MAX_IOVECS, SharedFrame};

/// What a queued shared frame costs a connection beyond its bytes: its slot in the queue (16
/// bytes, up to twice that as the queue grows by doubling).
pub const SHARED_OVERHEAD: usize = 32;

/// What a buffer made for one connection costs beyond its capacity: the `Arc` and `Vec`
/// headers with the allocator's own (about 64 bytes) and the queue slot.
pub const OWNED_OVERHEAD: usize = 96;

/// Entries shorter than this are gathered into one buffer before a send when several wait
/// in a row ([`OutQueue::gather`]).
pub const GATHER_BELOW: usize = 2048;

/// About how many bytes one [`OutQueue::gather`] call takes: a socket buffer rarely has room
/// for more, and what it does not take is copied again next time.
pub const GATHER_LIMIT: usize = 64 * 1024;

#[derive(Debug)]
struct Entry {
    frame: SharedFrame,
    /// Made for this connection alone (charged as [`OWNED_OVERHEAD`]).
    owned: bool,
}

impl Entry {
    fn cost(&self) -> usize {
        if self.owned {
            self.frame.capacity() + OWNED_OVERHEAD
        } else {
            self.frame.len() + SHARED_OVERHEAD
        }
    }
}

/// A connection's outbound frames: shared references plus how far the first one was written.
#[derive(Debug, Default)]
pub struct OutQueue {
    frames: VecDeque<Entry>,
    /// Bytes of `frames[0]` already written; frames after it are untouched, so an urgent
    /// control frame can go right after it without splitting a frame on the wire.
    head_written: usize,
    /// Unwritten bytes.
    queued: usize,
    /// What the queued entries cost (see the module doc): what `--max-backpressure` caps.
    held: usize,
    /// How many frames at the front urgent frames may not pass: the partly written head, HTTP
    /// responses (the `101` above all) and earlier urgent frames, so pongs keep their order and
    /// never overtake the handshake.
    pinned: usize,
    /// Where a pong not yet started waits, to be replaced by a newer one.
    pong_at: Option<usize>,
}

impl OutQueue {
    /// Unwritten bytes queued.
    pub fn queued_bytes(&self) -> usize {
        self.queued
    }

    /// What the queue holds, as `--max-backpressure` counts it: each entry's bytes plus its
    /// overhead.
    pub fn held_bytes(&self) -> usize {
        self.held
    }

    /// Whether nothing is waiting to be written.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// How many entries wait (a batch is one).
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    /// What queueing `frame` as a shared frame would add to [`Self::held_bytes`].
    pub fn shared_cost(frame: &SharedFrame) -> usize {
        frame.len() + SHARED_OVERHEAD
    }

    fn insert(&mut self, at: usize, frame: SharedFrame, owned: bool) {
        let entry = Entry { frame, owned };
        self.queued += entry.frame.len();
        self.held += entry.cost();
        self.frames.insert(at, entry);
    }

    /// Queues a shared frame (a broadcast, history, a batch) behind everything else.
    pub fn push(&mut self, frame: SharedFrame) {
        self.insert(self.frames.len(), frame, false);
    }

    /// Queues bytes made for this connection alone (an HTTP response, such as the `101`, or a
    /// close frame) behind everything else; nothing queued later may overtake them.
    pub fn push_pinned(&mut self, frame: SharedFrame) {
        self.insert(self.frames.len(), frame, true);
        self.pinned = self.frames.len();
    }

    /// Queues a control frame made for this connection ahead of queued data, but behind pinned
    /// frames and earlier urgent ones, and never inside a partly written frame.
    pub fn push_urgent(&mut self, frame: SharedFrame) {
        let at = self.pinned.max(usize::from(self.head_written > 0));
        self.insert(at, frame, true);
        self.pinned = at + 1;
    }

    /// Queues a pong like [`Self::push_urgent`], or, with `coalesce` and a pong waiting that
    /// has not been started, puts this one in its place. Returns whether it replaced one.
    pub fn push_pong(&mut self, frame: SharedFrame, coalesce: bool) -> bool {
        if let Some(at) = self.pong_at.filter(|_| coalesce) {
            let entry = Entry { frame, owned: true };
            let old = std::mem::replace(&mut self.frames[at], entry);
            self.queued = self.queued - old.frame.len() + self.frames[at].frame.len();
            self.held = self.held - old.cost() + self.frames[at].cost();
            return true;
        }
        self.push_urgent(frame);
        self.pong_at = Some(self.pinned - 1);
        false
    }

    /// Drops every frame not yet started, keeping a partly written one so the stream stays
    /// well-formed. Used before a slow consumer's close frame, to bound its memory at once.
    pub fn discard_unstarted(&mut self) {
        let keep = usize::from(self.head_written > 0).min(self.frames.len());
        self.frames.truncate(keep);
        self.pinned = self.pinned.min(keep);
        self.pong_at = None;
        self.queued = self
            .frames
            .front()
            .map_or(0, |e| e.frame.len() - self.head_written);
        self.held = self.frames.front().map_or(0, Entry::cost);
        self.shrink();
    }

    /// Fills `iov` with the unwritten bytes, in order; returns how many slices were used.
    pub fn iovecs<'a>(&'a self, iov: &mut [IoSlice<'a>]) -> usize {
        let mut n = 0;
        for (i, entry) in self.frames.iter().take(iov.len()).enumerate() {
            let skip = if i == 0 { self.head_written } else { 0 };
            iov[i] = IoSlice::new(&entry.frame[skip..]);
            n += 1;
        }
        n
    }

    /// The unwritten bytes of entry `i`.
    fn entry(&self, i: usize) -> &[u8] {
        let skip = if i == 0 { self.head_written } else { 0 };
        &self.frames[i].frame[skip..]
    }

    /// Fills `iov` with the unwritten bytes like [`Self::iovecs`], but runs of two or more
    /// entries shorter than [`GATHER_BELOW`] are first copied into `scratch` (cleared first)
    /// and handed over as one slice: the kernel copies each iovec separately with a start-up
    /// cost per piece, so many small pieces cost more than one copy here (see
    /// [`GATHER_BELOW`]). Large entries keep their own slice. At most about
    /// [`GATHER_LIMIT`] bytes are copied per call. Returns how many slices were used.
    pub fn gather<'a>(&'a self, scratch: &'a mut Vec<u8>, iov: &mut [IoSlice<'a>]) -> usize {
        // Runs of entries: (first, end, small).
        let mut runs = [(0usize, 0usize, false); MAX_IOVECS];
        let (mut n, mut bytes) = (0, 0);
        for i in 0..self.frames.len() {
            let len = self.entry(i).len();
            let small = len < GATHER_BELOW;
            if n > 0 && small && runs[n - 1].2 {
                runs[n - 1].1 = i + 1;
            } else if n == runs.len().min(iov.len()) {
                break;
            } else {
                runs[n] = (i, i + 1, small);
                n += 1;
            }
            if small {
                bytes += len;
                if bytes >= GATHER_LIMIT {
                    break;
                }
            }
        }
        scratch.clear();
        let mut spans = [(0usize, 0usize); MAX_IOVECS];
        for (run, span) in runs[..n].iter().zip(&mut spans) {
            if run.1 - run.0 > 1 {
                let start = scratch.len();
                for i in run.0..run.1 {
                    scratch.extend_from_slice(self.entry(i));
                }
                *span = (start, scratch.len());
            }
        }
        let scratch: &'a [u8] = scratch;
        for k in 0..n {
            let (first, end, _) = runs[k];
            iov[k] = if end - first > 1 {
                IoSlice::new(&scratch[spans[k].0..spans[k].1])
            } else {
                IoSlice::new(self.entry(first))
            };
        }
        n
    }

    /// Records that `written` bytes left the queue's front.
    pub fn advance(&mut self, mut written: usize) {
        self.queued -= written;
        while let Some(front) = self.frames.front() {
            let left = front.frame.len() - self.head_written;
            if written < left {
                self.head_written += written;
                if written > 0 && self.pong_at == Some(0) {
                    self.pong_at = None; // Started: it goes out as it is.
                }
                return;
            }
            written -= left;
            self.head_written = 0;
            self.pinned = self.pinned.saturating_sub(1);
            self.pong_at = match self.pong_at {
                Some(0) | None => None,
                Some(at) => Some(at - 1),
            };
            let entry = self.frames.pop_front().expect("front exists");
            self.held -= entry.cost();
        }
        debug_assert_eq!(written, 0, "advanced past the queued bytes");
        self.shrink();
    }

    /// Gives a long queue's memory back once it has drained.
    fn shrink(&mut self) {
        if self.frames.is_empty() && self.frames.capacity() > 64 {
            self.frames = VecDeque::new();
        }
    }
}

#[cfg(test)]
mod tests;
