//! The channel directory: every channel of the process, which loops have subscribers of it,
//! and its recent history. One per process, in the [`crate::node::Node`], behind a mutex:
//! loops take it when a connection joins or leaves, when history is recorded or read, and for
//! the API; never per delivery.
//!
//! Each channel has a [`Shared`] record that loops keep a reference to: its name, a unique id,
//! and the mask of loops with subscribers, which a publishing loop reads to know where to hand
//! a message (an atomic load when no history is kept; under the lock, with the recording,
//! when it is, see below).
//!
//! # History
//!
//! With `--history N` a channel keeps its last N broadcast frames, the very buffers the
//! subscribers were sent. A channel with history and no subscribers is kept for
//! `--history-ttl`; TTLs are all equal, so the expiry queue is a FIFO. All history is held
//! under `--max-history-memory`, counting what it really holds: each frame is charged
//! [`FRAME_OVERHEAD`] on top of its length and each channel holding history
//! [`channel_overhead`], so a flood of publishes to distinct names is bounded too; past it the
//! oldest frames of any channel go first, found through a FIFO of every recorded frame whose
//! stale entries are skipped and swept.
//!
//! # The seam between history and live messages, across loops
//!
//! A message is recorded by the loop it arrives on (its *origin*), together with its origin
//! sequence number and the mask of loops it is handed to (read under the same lock). A loop
//! that takes a joiner settles its own pending frames first, then reads history under the
//! lock: an entry is for the joiner unless it was handed to this loop and has not arrived yet
//! (its origin sequence is past what this loop has received from that origin), in which case
//! it will arrive live. Hand-offs from one origin arrive in order, so this is exact: no gap and
//! no duplicate, however loops interleave.

use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use slab::Slab;

use crate::backplane::Interest;
use crate::broadcast::Broadcast;

/// What history is charged per frame beyond its bytes: the shared buffer's allocation headers
/// (the `Arc` and the `Vec`, about 80 bytes with the allocator's own), its slot in the
/// channel's deque and its entry in the eviction FIFO (which may hold up to twice the live
/// entries before it is swept).
pub const FRAME_OVERHEAD: usize = 128;

/// What history is charged for a channel that holds any: the channel's record, its slot in the
/// slab, its entry in the name map and the expiry queue, its deque's first allocation, and its
/// name twice (the record and the map key). Measured with a flood of one-frame channels.
pub fn channel_overhead(name: &str) -> usize {
    512 + 2 * name.len()
}

/// A channel could not be created: `--max-channels` exist already.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TooManyChannels;

/// What loops know of a channel.
#[derive(Debug)]
pub struct Shared {
    /// The channel's name.
    pub name: Box<str>,
    /// Unique for the process's lifetime: a channel created again under the same name gets a
    /// new one.
    pub uid: u64,
    /// Its slot in the directory.
    slot: usize,
    /// Bit `i`: loop `i` has subscribers. Written under the directory's lock.
    loops: AtomicU64,
}

impl Shared {
    /// The loops with subscribers (bit per loop), as last written.
    pub fn loops(&self) -> u64 {
        self.loops.load(Ordering::Acquire)
    }
}

/// One channel as reported by the API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelInfo {
    /// The channel's name.
    pub name: String,
    /// How many connections are subscribed, all loops together.
    pub subscribers: usize,
    /// How many frames of history it holds.
    pub history: usize,
}

/// A recorded frame.
#[derive(Debug)]
struct Record {
    /// Position in the eviction FIFO.
    seq: u64,
    /// The loop it arrived on, its sequence number there, and the loops it was handed to.
    origin: usize,
    origin_seq: u64,
    handed: u64,
    frame: Broadcast,
}

#[derive(Debug)]
struct Channel {
    shared: Arc<Shared>,
    subscribers: usize,
    /// Recent frames, oldest first.
    history: VecDeque<Record>,
    /// When a channel left with history and no subscriber is forgotten; `None` while it has
    /// subscribers. Older entries for it in the expiry queue are ignored.
    expires_at: Option<Instant>,
}

/// Every channel of the process: see the module doc.
#[derive(Debug)]
pub struct Directory {
    by_name: BTreeMap<Box<str>, usize>,
    /// Boxed, so the slab's slots stay small: it never shrinks below its high-water mark.
    channels: Slab<Box<Channel>>,
    max_channels: usize,
    history_len: usize,
    history_ttl: Duration,
    /// (when, channel slot, channel uid) for channels left with history and no subscribers.
    expiries: VecDeque<(Instant, usize, u64)>,
    next_uid: u64,
    /// What all history holds, frames and their channels' overheads.
    history_bytes: usize,
    max_history_bytes: usize,
    /// History frames held, all channels together.
    history_frames: usize,
    /// (channel slot, channel uid, record seq) of recorded frames, oldest first; some may be
    /// gone already.
    recorded: VecDeque<(usize, u64, u64)>,
    next_seq: u64,
    /// `--deflate`: frames may carry a compressed copy (see [`frame_cost_of`]).
    deflate: bool,
    /// `--redis`: told of every channel created and forgotten, to subscribe it in Redis.
    interest: Option<Interest>,
}

impl Default for Directory {
    fn default() -> Self {
        Directory::new(0, Duration::ZERO, 0)
    }
}

impl Directory {
    /// A directory keeping `history_len` frames per channel for `history_ttl` after the last
    /// subscriber leaves, and at most `max_history_bytes` of them over all channels (counted
    /// with their overheads), with no limit on the number of channels.
    pub fn new(history_len: usize, history_ttl: Duration, max_history_bytes: usize) -> Self {
        Directory {
            by_name: BTreeMap::new(),
            channels: Slab::new(),
            max_channels: usize::MAX,
            history_len,
            history_ttl,
            expiries: VecDeque::new(),
            next_uid: 0,
            history_bytes: 0,
            max_history_bytes,
            history_frames: 0,
            recorded: VecDeque::new(),
            next_seq: 0,
            deflate: false,
            interest: None,
        }
    }

    /// Tells `interest` of every channel created and forgotten (the backplane).
    pub fn with_interest(mut self, interest: Option<Interest>) -> Self {
        self.interest = interest;
        self
    }

    /// Every channel's name (for the backplane, when its notices overflowed).
    pub fn names(&self) -> Vec<Box<str>> {
        self.by_name.keys().cloned().collect()
    }

    /// Frames may carry a compressed copy (`--deflate`): history charges for it.
    pub fn with_deflate(mut self, deflate: bool) -> Self {
        self.deflate = deflate;
        self
    }

    /// At most `max` channels exist at once; creating one more fails with [`TooManyChannels`].
    pub fn with_max_channels(mut self, max: usize) -> Self {
        self.max_channels = max;
        self
    }

    /// Whether history is kept at all (`--history` above 0).
    pub fn keeps_history(&self) -> bool {
        self.history_len > 0
    }

    fn create(&mut self, name: &str) -> Result<usize, TooManyChannels> {
        if self.channels.len() >= self.max_channels {
            return Err(TooManyChannels);
        }
        self.next_uid += 1;
        let entry = self.channels.vacant_entry();
        let slot = entry.key();
        entry.insert(Box::new(Channel {
            shared: Arc::new(Shared {
                name: name.into(),
                uid: self.next_uid,
                slot,
                loops: AtomicU64::new(0),
            }),
            subscribers: 0,
            history: VecDeque::new(),
            expires_at: None,
        }));
        self.by_name.insert(name.into(), slot);
        if let Some(interest) = &self.interest {
            interest.changed(name, true);
        }
        Ok(slot)
    }

    /// The live channel `shared` names (not one that replaced it under the same name).
    fn get(&self, shared: &Shared) -> Option<&Channel> {
        let ch = self.channels.get(shared.slot)?;
        (ch.shared.uid == shared.uid).then_some(&**ch)
    }

    fn get_mut(&mut self, shared: &Shared) -> Option<&mut Channel> {
        let ch = self.channels.get_mut(shared.slot)?;
        (ch.shared.uid == shared.uid).then_some(&mut **ch)
    }

    /// A connection of loop `loop_id` joins channel `name`, creating the channel if needed
    /// (which fails when `--max-channels` exist). `first_on_loop`: the loop had no subscriber
    /// of it until now, so it is added to the channel's loops.
    pub fn join(
        &mut self,
        name: &str,
        loop_id: usize,
        first_on_loop: bool,
    ) -> Result<Arc<Shared>, TooManyChannels> {
        let slot = match self.by_name.get(name) {
            Some(&slot) => slot,
            None => self.create(name)?,
        };
        let ch = &mut self.channels[slot];
        ch.expires_at = None;
        ch.subscribers += 1;
        if first_on_loop {
            ch.shared.loops.fetch_or(1 << loop_id, Ordering::AcqRel);
        }
        Ok(ch.shared.clone())
    }

    /// A connection of loop `loop_id` leaves at `now`; `last_on_loop`: the loop has no
    /// subscriber of it left. A channel with no subscriber anywhere is forgotten at once, or,
    /// with history, after the TTL.
    pub fn leave(&mut self, shared: &Shared, loop_id: usize, last_on_loop: bool, now: Instant) {
        let ttl = self.history_ttl;
        let Some(ch) = self.get_mut(shared) else {
            return;
        };
        ch.subscribers -= 1;
        if last_on_loop {
            ch.shared.loops.fetch_and(!(1 << loop_id), Ordering::AcqRel);
        }
        if ch.subscribers == 0 {
            if ch.history.is_empty() {
                self.remove(shared.slot);
            } else {
                let at = now + ttl;
                ch.expires_at = Some(at);
                self.expiries.push_back((at, shared.slot, shared.uid));
            }
        }
    }

    fn remove(&mut self, slot: usize) {
        let ch = self.channels.remove(slot);
        self.by_name.remove(&ch.shared.name);
        if let Some(interest) = &self.interest {
            interest.changed(&ch.shared.name, false);
        }
        self.history_frames -= ch.history.len();
        let deflate = self.deflate;
        self.history_bytes -= (ch.history.iter())
            .map(|r| frame_cost_of(&r.frame, deflate))
            .sum::<usize>();
        if !ch.history.is_empty() {
            self.history_bytes -= channel_overhead(&ch.shared.name);
        }
    }

    /// Removes channel `slot`'s oldest frame, charging back its cost (and its channel's
    /// overhead when that was its last frame).
    fn pop_oldest(&mut self, slot: usize) {
        let ch = &mut self.channels[slot];
        if let Some(old) = ch.history.pop_front() {
            self.history_frames -= 1;
            self.history_bytes -= frame_cost_of(&old.frame, self.deflate);
            if ch.history.is_empty() {
                self.history_bytes -= channel_overhead(&ch.shared.name);
            }
        }
    }

    /// The channel called `name`, if it exists.
    pub fn lookup(&self, name: &str) -> Option<Arc<Shared>> {
        let &slot = self.by_name.get(name)?;
        Some(self.channels[slot].shared.clone())
    }

    /// The channel to publish to by name: an existing one, or, when history is kept, a new
    /// one (so the message is there for whoever joins within the TTL). `Ok(None)`: nobody
    /// would ever see it; an error when it would have to be created and `--max-channels`
    /// exist.
    pub fn channel_for_publish(
        &mut self,
        name: &str,
        now: Instant,
    ) -> Result<Option<Arc<Shared>>, TooManyChannels> {
        if let Some(shared) = self.lookup(name) {
            return Ok(Some(shared));
        }
        if self.history_len == 0 {
            return Ok(None);
        }
        let slot = self.create(name)?;
        let at = now + self.history_ttl;
        let ch = &mut self.channels[slot];
        ch.expires_at = Some(at);
        self.expiries.push_back((at, slot, ch.shared.uid));
        Ok(Some(ch.shared.clone()))
    }

    /// Remembers a frame broadcast on `shared` by loop `origin` (its `origin_seq`-th), then
    /// drops the oldest frames of any channel while the total is over `--max-history-memory`.
    /// Returns how many frames it dropped for that, and the loops with subscribers, read
    /// under the same lock (so a joiner on another loop sees either the record or the
    /// hand-off, see the module doc). A no-op returning the loops without `--history`.
    pub fn record(
        &mut self,
        shared: &Shared,
        origin: usize,
        origin_seq: u64,
        frame: &Broadcast,
    ) -> (usize, u64) {
        let loops = shared.loops();
        if self.history_len == 0 || self.get(shared).is_none() {
            return (0, loops);
        }
        let slot = shared.slot;
        let mut evicted = 0;
        self.next_seq += 1;
        if self.channels[slot].history.len() == self.history_len {
            self.pop_oldest(slot);
        }
        let ch = &mut self.channels[slot];
        if ch.history.is_empty() {
            self.history_bytes += channel_overhead(&ch.shared.name);
        }
        ch.history.push_back(Record {
            seq: self.next_seq,
            origin,
            origin_seq,
            handed: loops & !(1 << origin),
            frame: frame.clone(),
        });
        self.recorded.push_back((slot, shared.uid, self.next_seq));
        self.history_frames += 1;
        self.history_bytes += frame_cost_of(frame, self.deflate);
        while self.history_bytes > self.max_history_bytes {
            let Some((slot, uid, seq)) = self.recorded.pop_front() else {
                break;
            };
            let Some(ch) = self.channels.get(slot).filter(|c| c.shared.uid == uid) else {
                continue;
            };
            if ch.history.front().is_some_and(|r| r.seq == seq) {
                self.pop_oldest(slot);
                evicted += 1;
                let ch = &self.channels[slot];
                if ch.history.is_empty() && ch.subscribers == 0 {
                    self.remove(slot); // Nothing left for anyone to join for.
                }
            }
        }
        if self.recorded.len() > 2 * self.history_frames + 1024 {
            let channels = &self.channels;
            self.recorded.retain(|&(slot, uid, seq)| {
                channels.get(slot).is_some_and(|c| {
                    c.shared.uid == uid && c.history.front().is_some_and(|r| seq >= r.seq)
                })
            });
            shrink(&mut self.recorded);
        }
        (evicted, loops)
    }

    /// What history holds, all channels together, as `--max-history-memory` counts it: frame
    /// bytes plus [`FRAME_OVERHEAD`] each, plus [`channel_overhead`] per channel holding any.
    pub fn history_bytes(&self) -> usize {
        self.history_bytes
    }

    /// The history a new subscriber of `shared` on loop `loop_id` is sent first: the newest
    /// frames whose lengths add up to at most `budget`, oldest first, leaving out those still
    /// on their way to this loop (see the module doc; `received[o]` is the last sequence
    /// number this loop has received from loop `o`). Also returns how many older frames did
    /// not fit.
    pub fn history_for(
        &self,
        shared: &Shared,
        loop_id: usize,
        received: &[u64],
        budget: usize,
    ) -> (Vec<Broadcast>, usize) {
        let Some(ch) = self.get(shared) else {
            return (Vec::new(), 0);
        };
        let arrived = |r: &&Record| {
            r.handed & (1 << loop_id) == 0
                || received
                    .get(r.origin)
                    .is_some_and(|&last| r.origin_seq <= last)
        };
        let all = ch.history.iter().filter(arrived).count();
        let mut total = 0usize;
        let mut frames: Vec<Broadcast> = (ch.history.iter().rev().filter(arrived))
            .take_while(|r| {
                total = total.saturating_add(r.frame.plain().len());
                total <= budget
            })
            .map(|r| r.frame.clone())
            .collect();
        frames.reverse();
        let skipped = all - frames.len();
        (frames, skipped)
    }

    /// Forgets channels whose history outlived its TTL with no subscriber.
    pub fn expire(&mut self, now: Instant) {
        while let Some(&(at, slot, uid)) = self.expiries.front() {
            let live = self.is_live_expiry(at, slot, uid);
            if live && at > now {
                break;
            }
            // Due, or stale: the channel went another way (evicted by the history budget, or
            // joined again). A flood of channel names evicts them oldest first, so their
            // entries reach the front in order and go here, not a TTL later.
            self.expiries.pop_front();
            if live {
                self.remove(slot);
            }
        }
        // Stale entries behind a live one wait; when they outnumber the channels, sweep them.
        if self.expiries.len() > 2 * self.channels.len() + 1024 {
            let live: VecDeque<_> = (self.expiries.iter().copied())
                .filter(|&(at, slot, uid)| self.is_live_expiry(at, slot, uid))
                .collect();
            self.expiries = live;
        }
        shrink(&mut self.expiries);
    }

    fn is_live_expiry(&self, at: Instant, slot: usize, uid: u64) -> bool {
        self.channels
            .get(slot)
            .is_some_and(|c| c.shared.uid == uid && c.expires_at == Some(at))
    }

    /// When [`Self::expire`] next has something to do.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.expiries.front().map(|&(at, _, _)| at)
    }

    /// How many connections are subscribed to `shared`, all loops together.
    pub fn subscribers(&self, shared: &Shared) -> usize {
        self.get(shared).map_or(0, |c| c.subscribers)
    }

    /// How many channels exist (with subscribers or with kept history).
    pub fn channel_count(&self) -> usize {
        self.channels.len()
    }

    /// One channel's figures.
    pub fn info(&self, name: &str) -> Option<ChannelInfo> {
        let &slot = self.by_name.get(name)?;
        Some(self.channel_info(&self.channels[slot]))
    }

    fn channel_info(&self, ch: &Channel) -> ChannelInfo {
        ChannelInfo {
            name: ch.shared.name.to_string(),
            subscribers: ch.subscribers,
            history: ch.history.len(),
        }
    }

    /// Up to `limit` channels whose names come after `after` (from the first, for `None`), in
    /// name order, and whether more follow.
    pub fn page(&self, after: Option<&str>, limit: usize) -> (Vec<ChannelInfo>, bool) {
        let start = after.map_or(Bound::Unbounded, Bound::Excluded);
        let mut names = self.by_name.range::<str, _>((start, Bound::Unbounded));
        let page = names
            .by_ref()
            .take(limit)
            .map(|(_, &slot)| self.channel_info(&self.channels[slot]))
            .collect();
        (page, names.next().is_some())
    }
}

/// What history is charged for a frame: its bytes (twice with `--deflate`, for the compressed
/// copy a deflate subscriber may make it carry, never bigger than the plain one) and
/// [`FRAME_OVERHEAD`].
fn frame_cost_of(frame: &Broadcast, deflate: bool) -> usize {
    frame.plain().len() * (1 + usize::from(deflate)) + FRAME_OVERHEAD
}

/// Gives back a queue's spare capacity once it is mostly empty, so the memory of a burst goes
/// back to the allocator after it.
fn shrink<T>(queue: &mut VecDeque<T>) {
    if queue.capacity() > 4 * queue.len().max(256) {
        queue.shrink_to(2 * queue.len());
    }
}

#[cfg(test)]
mod tests;
