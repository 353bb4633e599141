//! Channels: their subscribers and their recent history.
//!
//! A channel is a name, a dense list of connection keys (so a broadcast walks a contiguous
//! `Vec`) and, with `--history N`, its last N broadcast frames — the same shared buffers the
//! subscribers were sent, not copies. Each connection remembers its [`Subscription`] (channel id
//! and slot), so leaving is O(1) with `swap_remove`; the connection moved into the freed slot is
//! reported back so its own record can be fixed.
//!
//! A channel without subscribers is forgotten at once, unless it has history: then it is kept
//! for `--history-ttl` so a late joiner still gets the latest state. TTLs are all equal, so the
//! expiry queue is a FIFO, not a heap.
//!
//! All channels' history together is held under `--max-history-memory`: past it, the oldest
//! frames of any channel go first. A FIFO of every recorded frame (channel and sequence
//! number) finds them; entries for frames already gone for another reason are skipped there
//! and swept out when they outnumber the live ones. The budget counts what history really
//! holds, not only frame bytes: each frame is charged [`FRAME_OVERHEAD`] on top of its length
//! and each channel holding history [`channel_overhead`], so a flood of publishes to distinct
//! names (each a channel holding one tiny frame) is bounded by the budget too. The number of
//! channels is bounded as well (`--max-channels`).
//!
//! Names are kept in a `BTreeMap`, so `GET /channels` pages through them in order.

use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;
use std::time::{Duration, Instant};

use slab::Slab;

use crate::broadcast::SharedFrame;

/// Where a connection sits in the registry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Subscription {
    /// The channel's id (stable while the channel exists).
    pub channel: usize,
    /// The connection's index in the channel's subscriber list.
    pub slot: usize,
}

/// What history is charged per frame beyond its bytes: the shared buffer's allocation headers
/// (the `Arc` and the `Vec`, about 80 bytes with the allocator's own), its slot in the
/// channel's deque and its entry in the eviction FIFO (which may hold up to twice the live
/// entries before it is swept).
pub const FRAME_OVERHEAD: usize = 128;

/// What history is charged for a channel that holds any: the channel's record, its slot in the
/// slab, its entry in the name map and the expiry queue, its deque's first allocation, and its
/// name twice (the record and the map key). Measured with a flood of one-frame channels:
/// about 600 bytes of RSS each with 10-byte names.
pub fn channel_overhead(name: &str) -> usize {
    448 + 2 * name.len()
}

/// A channel could not be created: `--max-channels` exist already.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TooManyChannels;

#[derive(Debug)]
struct Channel {
    name: Box<str>,
    subscribers: Vec<usize>,
    /// Recent frames with their sequence numbers (increasing), oldest first.
    history: VecDeque<(u64, SharedFrame)>,
    /// Tells this channel apart from a later one reusing its slab id in the expiry queue.
    id: u64,
    /// When a channel left with history and no subscriber is forgotten; `None` while it has
    /// subscribers. Older entries for it in the expiry queue are ignored.
    expires_at: Option<Instant>,
    /// Frames published this turn, not yet queued to the subscribers (see [`crate::hub`]).
    /// Kept here so they go with the channel if it goes.
    pending: Vec<Pending>,
}

/// A frame published to a channel this turn, waiting for the end of the turn.
#[derive(Clone, Debug)]
pub struct Pending {
    /// The encoded frame.
    pub frame: SharedFrame,
    /// The connection that sent it, which does not get it back (unless `--echo`).
    pub from: Option<usize>,
}

/// One channel as reported by the API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChannelInfo<'a> {
    /// The channel's name.
    pub name: &'a str,
    /// How many connections are subscribed.
    pub subscribers: usize,
    /// How many frames of history it holds.
    pub history: usize,
}

/// Channel name → subscribers and history.
#[derive(Debug)]
pub struct Registry {
    by_name: BTreeMap<Box<str>, usize>,
    /// Boxed, so the slab's slots stay small: it never shrinks below its high-water mark.
    channels: Slab<Box<Channel>>,
    max_channels: usize,
    history_len: usize,
    history_ttl: Duration,
    /// (when, channel slab id, channel id) for channels left with history and no subscribers.
    expiries: VecDeque<(Instant, usize, u64)>,
    next_id: u64,
    /// What all history holds, frames and their channels' overheads, held under
    /// `max_history_bytes`.
    history_bytes: usize,
    max_history_bytes: usize,
    /// History frames held, all channels together.
    history_frames: usize,
    /// (channel slab id, channel id, sequence number) of recorded frames, oldest first; some
    /// may be gone already.
    recorded: VecDeque<(usize, u64, u64)>,
    next_seq: u64,
}

impl Default for Registry {
    fn default() -> Self {
        Registry::new(0, Duration::ZERO, 0)
    }
}

impl Registry {
    /// A registry keeping `history_len` frames per channel for `history_ttl` after the last
    /// subscriber leaves, and at most `max_history_bytes` of them over all channels (counted
    /// with their overheads), with no limit on the number of channels.
    pub fn new(history_len: usize, history_ttl: Duration, max_history_bytes: usize) -> Self {
        Registry {
            by_name: BTreeMap::new(),
            channels: Slab::new(),
            max_channels: usize::MAX,
            history_len,
            history_ttl,
            expiries: VecDeque::new(),
            next_id: 0,
            history_bytes: 0,
            max_history_bytes,
            history_frames: 0,
            recorded: VecDeque::new(),
            next_seq: 0,
        }
    }

    /// At most `max` channels exist at once; creating one more fails with [`TooManyChannels`].
    pub fn with_max_channels(mut self, max: usize) -> Self {
        self.max_channels = max;
        self
    }

    fn create(&mut self, name: &str) -> Result<usize, TooManyChannels> {
        if self.channels.len() >= self.max_channels {
            return Err(TooManyChannels);
        }
        self.next_id += 1;
        let id = self.channels.insert(Box::new(Channel {
            name: name.into(),
            subscribers: Vec::new(),
            history: VecDeque::new(),
            id: self.next_id,
            expires_at: None,
            pending: Vec::new(),
        }));
        self.by_name.insert(name.into(), id);
        Ok(id)
    }

    /// Adds connection `key` to channel `name`, creating the channel if needed (which fails
    /// when `--max-channels` exist).
    pub fn subscribe(&mut self, name: &str, key: usize) -> Result<Subscription, TooManyChannels> {
        let channel = match self.by_name.get(name) {
            Some(&id) => id,
            None => self.create(name)?,
        };
        let ch = &mut self.channels[channel];
        ch.expires_at = None;
        let subscribers = &mut ch.subscribers;
        subscribers.push(key);
        Ok(Subscription {
            channel,
            slot: subscribers.len() - 1,
        })
    }

    /// Removes a subscription at `now`. Returns the key of the connection that moved into its
    /// slot, if any: that connection's subscription slot is now `sub.slot`.
    pub fn unsubscribe(&mut self, sub: Subscription, now: Instant) -> Option<usize> {
        let ch = &mut self.channels[sub.channel];
        ch.subscribers.swap_remove(sub.slot);
        let moved = ch.subscribers.get(sub.slot).copied();
        if ch.subscribers.is_empty() {
            if ch.history.is_empty() {
                self.remove(sub.channel);
            } else {
                let at = now + self.history_ttl;
                ch.expires_at = Some(at);
                self.expiries.push_back((at, sub.channel, ch.id));
            }
        }
        moved
    }

    fn remove(&mut self, channel: usize) {
        let ch = self.channels.remove(channel);
        self.by_name.remove(&ch.name);
        self.history_frames -= ch.history.len();
        self.history_bytes -= ch.history.iter().map(|(_, f)| frame_cost(f)).sum::<usize>();
        if !ch.history.is_empty() {
            self.history_bytes -= channel_overhead(&ch.name);
        }
    }

    /// Removes channel `channel`'s oldest frame, charging back its cost (and its channel's
    /// overhead when that was its last frame).
    fn pop_oldest(&mut self, channel: usize) {
        let ch = &mut self.channels[channel];
        if let Some((_, old)) = ch.history.pop_front() {
            self.history_frames -= 1;
            self.history_bytes -= frame_cost(&old);
            if ch.history.is_empty() {
                self.history_bytes -= channel_overhead(&ch.name);
            }
        }
    }

    /// The channel to publish to: an existing one, or, when history is kept, a new one (so the
    /// message is there for whoever joins within the TTL). `Ok(None)`: nobody would ever see
    /// it; an error when it would have to be created and `--max-channels` exist.
    pub fn channel_for_publish(
        &mut self,
        name: &str,
        now: Instant,
    ) -> Result<Option<usize>, TooManyChannels> {
        if let Some(&id) = self.by_name.get(name) {
            return Ok(Some(id));
        }
        if self.history_len == 0 {
            return Ok(None);
        }
        let channel = self.create(name)?;
        let at = now + self.history_ttl;
        let ch = &mut self.channels[channel];
        ch.expires_at = Some(at);
        self.expiries.push_back((at, channel, ch.id));
        Ok(Some(channel))
    }

    /// Remembers a frame broadcast on `channel` (a no-op without `--history`), then drops the
    /// oldest frames of any channel while the total is over `--max-history-memory`. Returns
    /// how many frames it dropped for that.
    pub fn record(&mut self, channel: usize, frame: &SharedFrame) -> usize {
        if self.history_len == 0 {
            return 0;
        }
        let mut evicted = 0;
        self.next_seq += 1;
        if self.channels[channel].history.len() == self.history_len {
            self.pop_oldest(channel);
        }
        let ch = &mut self.channels[channel];
        if ch.history.is_empty() {
            self.history_bytes += channel_overhead(&ch.name);
        }
        ch.history.push_back((self.next_seq, frame.clone()));
        self.recorded.push_back((channel, ch.id, self.next_seq));
        self.history_frames += 1;
        self.history_bytes += frame_cost(frame);
        while self.history_bytes > self.max_history_bytes {
            let Some((channel, id, seq)) = self.recorded.pop_front() else {
                break;
            };
            let Some(ch) = self.channels.get(channel).filter(|c| c.id == id) else {
                continue;
            };
            if ch.history.front().is_some_and(|&(s, _)| s == seq) {
                self.pop_oldest(channel);
                evicted += 1;
                let ch = &self.channels[channel];
                if ch.history.is_empty() && ch.subscribers.is_empty() {
                    self.remove(channel); // Nothing left for anyone to join for.
                }
            }
        }
        if self.recorded.len() > 2 * self.history_frames + 1024 {
            let channels = &self.channels;
            self.recorded.retain(|&(channel, id, seq)| {
                channels.get(channel).is_some_and(|c| {
                    c.id == id && c.history.front().is_some_and(|&(first, _)| seq >= first)
                })
            });
            shrink(&mut self.recorded);
        }
        evicted
    }

    /// What history holds, all channels together, as `--max-history-memory` counts it: frame
    /// bytes plus [`FRAME_OVERHEAD`] each, plus [`channel_overhead`] per channel holding any.
    pub fn history_bytes(&self) -> usize {
        self.history_bytes
    }

    /// The frames a new subscriber of `channel` is sent first, oldest first.
    pub fn history(&self, channel: usize) -> impl Iterator<Item = &SharedFrame> {
        self.history_within(channel, usize::MAX).0
    }

    /// The newest frames of `channel`'s history whose lengths add up to at most `budget`,
    /// oldest first, and how many older frames were left out.
    pub fn history_within(
        &self,
        channel: usize,
        budget: usize,
    ) -> (impl Iterator<Item = &SharedFrame>, usize) {
        let history = self.channels.get(channel).map(|c| &c.history);
        let all = history.map_or(0, |h| h.len());
        let mut total = 0usize;
        let fit = history
            .into_iter()
            .flat_map(|h| h.iter().rev())
            .take_while(|(_, f)| {
                total = total.saturating_add(f.len());
                total <= budget
            })
            .count();
        let skipped = all - fit;
        (
            history
                .into_iter()
                .flat_map(move |h| h.range(skipped..).map(|(_, f)| f)),
            skipped,
        )
    }

    /// Forgets channels whose history outlived its TTL with no subscriber.
    pub fn expire(&mut self, now: Instant) {
        while let Some(&(at, channel, id)) = self.expiries.front() {
            let live = self.is_live_expiry(at, channel, id);
            if live && at > now {
                break;
            }
            // Due, or stale: the channel went another way (evicted by the history budget, or
            // joined again). A flood of channel names evicts them oldest first, so their
            // entries reach the front in order and go here, not a TTL later.
            self.expiries.pop_front();
            if live {
                self.remove(channel);
            }
        }
        // Stale entries behind a live one wait; when they outnumber the channels, sweep them.
        if self.expiries.len() > 2 * self.channels.len() + 1024 {
            let live: VecDeque<_> = (self.expiries.iter().copied())
                .filter(|&(at, channel, id)| self.is_live_expiry(at, channel, id))
                .collect();
            self.expiries = live;
        }
        shrink(&mut self.expiries);
    }

    fn is_live_expiry(&self, at: Instant, channel: usize, id: u64) -> bool {
        self.channels
            .get(channel)
            .is_some_and(|c| c.id == id && c.expires_at == Some(at))
    }

    /// When [`Self::expire`] next has something to do.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.expiries.front().map(|&(at, _, _)| at)
    }

    /// The channel id for `name`.
    pub fn lookup(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).copied()
    }

    /// The subscribers of channel `id`.
    pub fn subscribers(&self, id: usize) -> &[usize] {
        self.channels.get(id).map_or(&[], |c| &c.subscribers)
    }

    /// Adds a frame to `channel`'s pending ones; returns whether it is the first this turn
    /// (false, and nothing added, if the channel is gone).
    pub fn add_pending(&mut self, channel: usize, pending: Pending) -> bool {
        let Some(ch) = self.channels.get_mut(channel) else {
            return false;
        };
        ch.pending.push(pending);
        ch.pending.len() == 1
    }

    /// Moves `channel`'s pending frames into `into` (empty), leaving it an empty list with
    /// `into`'s old capacity, so neither side allocates turn after turn.
    pub fn take_pending(&mut self, channel: usize, into: &mut Vec<Pending>) {
        if let Some(ch) = self.channels.get_mut(channel) {
            std::mem::swap(&mut ch.pending, into);
        }
    }

    /// How many channels exist (with subscribers or with kept history).
    pub fn channel_count(&self) -> usize {
        self.channels.len()
    }

    /// One channel's figures.
    pub fn info(&self, id: usize) -> Option<ChannelInfo<'_>> {
        self.channels.get(id).map(|c| ChannelInfo {
            name: &c.name,
            subscribers: c.subscribers.len(),
            history: c.history.len(),
        })
    }

    /// Every channel's figures, in name order.
    pub fn iter(&self) -> impl Iterator<Item = ChannelInfo<'_>> {
        self.page(None)
    }

    /// The channels whose names come after `after` (all, for `None`), in name order.
    pub fn page(&self, after: Option<&str>) -> impl Iterator<Item = ChannelInfo<'_>> {
        let start = after.map_or(Bound::Unbounded, Bound::Excluded);
        self.by_name
            .range::<str, _>((start, Bound::Unbounded))
            .filter_map(|(_, &id)| self.info(id))
    }
}

fn frame_cost(frame: &SharedFrame) -> usize {
    frame.len() + FRAME_OVERHEAD
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
