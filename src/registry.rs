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
//! and swept out when they outnumber the live ones.

use std::collections::{HashMap, VecDeque};
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
    by_name: HashMap<Box<str>, usize>,
    channels: Slab<Channel>,
    history_len: usize,
    history_ttl: Duration,
    /// (when, channel slab id, channel id) for channels left with history and no subscribers.
    expiries: VecDeque<(Instant, usize, u64)>,
    next_id: u64,
    /// Bytes of all history frames, held under `max_history_bytes`.
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
    /// subscriber leaves, and at most `max_history_bytes` of them over all channels.
    pub fn new(history_len: usize, history_ttl: Duration, max_history_bytes: usize) -> Self {
        Registry {
            by_name: HashMap::new(),
            channels: Slab::new(),
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

    fn create(&mut self, name: &str) -> usize {
        self.next_id += 1;
        let id = self.channels.insert(Channel {
            name: name.into(),
            subscribers: Vec::new(),
            history: VecDeque::new(),
            id: self.next_id,
            expires_at: None,
        });
        self.by_name.insert(name.into(), id);
        id
    }

    /// Adds connection `key` to channel `name`, creating the channel if needed.
    pub fn subscribe(&mut self, name: &str, key: usize) -> Subscription {
        let channel = match self.by_name.get(name) {
            Some(&id) => id,
            None => self.create(name),
        };
        let ch = &mut self.channels[channel];
        ch.expires_at = None;
        let subscribers = &mut ch.subscribers;
        subscribers.push(key);
        Subscription {
            channel,
            slot: subscribers.len() - 1,
        }
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
        self.history_bytes -= ch.history.iter().map(|(_, f)| f.len()).sum::<usize>();
    }

    /// The channel to publish to: an existing one, or, when history is kept, a new one (so the
    /// message is there for whoever joins within the TTL). `None`: nobody would ever see it.
    pub fn channel_for_publish(&mut self, name: &str, now: Instant) -> Option<usize> {
        if let Some(&id) = self.by_name.get(name) {
            return Some(id);
        }
        if self.history_len == 0 {
            return None;
        }
        let channel = self.create(name);
        let at = now + self.history_ttl;
        let ch = &mut self.channels[channel];
        ch.expires_at = Some(at);
        self.expiries.push_back((at, channel, ch.id));
        Some(channel)
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
        let ch = &mut self.channels[channel];
        if ch.history.len() == self.history_len {
            if let Some((_, old)) = ch.history.pop_front() {
                self.history_frames -= 1;
                self.history_bytes -= old.len();
            }
        }
        ch.history.push_back((self.next_seq, frame.clone()));
        self.recorded.push_back((channel, ch.id, self.next_seq));
        self.history_frames += 1;
        self.history_bytes += frame.len();
        while self.history_bytes > self.max_history_bytes {
            let Some((channel, id, seq)) = self.recorded.pop_front() else {
                break;
            };
            let Some(ch) = self.channels.get_mut(channel).filter(|c| c.id == id) else {
                continue;
            };
            if ch.history.front().is_some_and(|&(s, _)| s == seq) {
                let (_, old) = ch.history.pop_front().expect("front exists");
                self.history_frames -= 1;
                self.history_bytes -= old.len();
                evicted += 1;
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
        }
        evicted
    }

    /// Bytes of history held, all channels together.
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
            if at > now {
                return;
            }
            self.expiries.pop_front();
            if self
                .channels
                .get(channel)
                .is_some_and(|c| c.id == id && c.expires_at == Some(at))
            {
                self.remove(channel);
            }
        }
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

    /// Every channel's figures, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = ChannelInfo<'_>> {
        self.channels.iter().filter_map(|(id, _)| self.info(id))
    }
}

#[cfg(test)]
mod tests;
