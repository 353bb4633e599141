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
    /// Frames dropped to stay under `max_history_bytes`.
    evicted: u64,
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
            evicted: 0,
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
    /// oldest frames of any channel while the total is over `--max-history-memory`.
    pub fn record(&mut self, channel: usize, frame: &SharedFrame) {
        if self.history_len == 0 {
            return;
        }
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
                self.evicted += 1;
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
    }

    /// Bytes of history held, all channels together.
    pub fn history_bytes(&self) -> usize {
        self.history_bytes
    }

    /// History frames dropped so far to stay under `--max-history-memory`.
    pub fn history_evicted(&self) -> u64 {
        self.evicted
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
mod tests {
    use std::sync::Arc;

    use super::*;

    fn frame(b: u8) -> SharedFrame {
        Arc::new(vec![b])
    }

    #[test]
    fn subscribe_and_leave_keep_slots_consistent() {
        let now = Instant::now();
        let mut r = Registry::default();
        let a = r.subscribe("room", 10);
        let b = r.subscribe("room", 11);
        let c = r.subscribe("room", 12);
        let other = r.subscribe("other", 13);
        assert_eq!(a.channel, b.channel);
        assert_ne!(a.channel, other.channel);
        assert_eq!((a.slot, b.slot, c.slot), (0, 1, 2));

        // 12 moves into a's slot.
        assert_eq!(r.unsubscribe(a, now), Some(12));
        assert_eq!(r.subscribers(c.channel), &[12, 11]);
        let c = Subscription { slot: a.slot, ..c };
        // Removing the last slot moves nobody.
        assert_eq!(r.unsubscribe(b, now), None);
        assert_eq!(r.unsubscribe(c, now), None);
        assert_eq!(r.lookup("room"), None);
        assert_eq!(r.channel_count(), 1);
        assert_eq!(r.subscribers(other.channel), &[13]);
    }

    #[test]
    fn without_history_publishing_to_nobody_creates_nothing() {
        let mut r = Registry::default();
        assert_eq!(r.channel_for_publish("x", Instant::now()), None);
        assert_eq!(r.channel_count(), 0);
    }

    #[test]
    fn history_keeps_the_last_n_frames_in_order() {
        let now = Instant::now();
        let mut r = Registry::new(3, Duration::from_secs(60), usize::MAX);
        let ch = r.channel_for_publish("feed", now).unwrap();
        for b in 0..5 {
            r.record(ch, &frame(b));
        }
        let got: Vec<u8> = r.history(ch).map(|f| f[0]).collect();
        assert_eq!(got, [2, 3, 4]);
        assert_eq!(
            r.info(ch),
            Some(ChannelInfo {
                name: "feed",
                subscribers: 0,
                history: 3
            })
        );
    }

    /// Frame bytes `[tag; len]`.
    fn sized(tag: u8, len: usize) -> SharedFrame {
        Arc::new(vec![tag; len])
    }

    fn tags(r: &Registry, ch: usize) -> Vec<u8> {
        r.history(ch).map(|f| f[0]).collect()
    }

    #[test]
    fn history_memory_drops_the_oldest_frames_of_any_channel_first() {
        let now = Instant::now();
        let mut r = Registry::new(10, Duration::from_secs(60), 10);
        let a = r.channel_for_publish("a", now).unwrap();
        let b = r.channel_for_publish("b", now).unwrap();
        r.subscribe("a", 7); // a has a subscriber, b does not
        r.record(a, &sized(1, 4));
        r.record(b, &sized(2, 4));
        assert_eq!((r.history_bytes(), r.history_evicted()), (8, 0));
        // 12 bytes > 10: a's frame 1, the oldest, goes; a stays (it has a subscriber).
        r.record(a, &sized(3, 4));
        assert_eq!((tags(&r, a), tags(&r, b)), (vec![3], vec![2]));
        assert_eq!((r.history_bytes(), r.history_evicted()), (8, 1));
        // b's only frame goes next, and b with it: nobody is on it and it has nothing left.
        r.record(a, &sized(4, 4));
        assert_eq!(tags(&r, a), [3, 4]);
        assert_eq!(r.lookup("b"), None);
        assert_eq!((r.history_bytes(), r.history_evicted()), (8, 2));
        // A frame bigger than the whole budget is not kept at all, and takes the rest with it.
        r.record(a, &sized(5, 11));
        assert_eq!(tags(&r, a), Vec::<u8>::new());
        assert_eq!((r.history_bytes(), r.history_evicted()), (0, 5));
        assert_eq!(r.lookup("a"), Some(a), "a channel with a subscriber stays");
    }

    #[test]
    fn history_memory_is_given_back_when_frames_or_channels_go() {
        let now = Instant::now();
        let ttl = Duration::from_secs(1);
        let mut r = Registry::new(2, ttl, usize::MAX);
        let ch = r.channel_for_publish("feed", now).unwrap();
        for (tag, len) in [(1, 5), (2, 6), (3, 7)] {
            r.record(ch, &sized(tag, len)); // the per-channel limit drops frame 1
        }
        assert_eq!((tags(&r, ch), r.history_bytes()), (vec![2, 3], 13));
        r.expire(now + ttl);
        assert_eq!((r.channel_count(), r.history_bytes()), (0, 0));
    }

    #[test]
    fn the_eviction_queue_stays_bounded_by_the_frames_held() {
        let mut r = Registry::new(1, Duration::from_secs(60), usize::MAX);
        let ch = r.channel_for_publish("feed", Instant::now()).unwrap();
        for i in 0..100_000u32 {
            r.record(ch, &sized(i as u8, 1));
        }
        assert_eq!(r.history_frames, 1);
        assert!(r.recorded.len() <= 2 + 1024, "{}", r.recorded.len());
        // What is left in the queue still finds the live frame when the budget shrinks.
        r.max_history_bytes = 0;
        r.record(ch, &sized(9, 1));
        assert_eq!((r.history_frames, r.history_bytes()), (0, 0));
    }

    #[test]
    fn history_within_a_budget_keeps_the_newest_frames_that_fit() {
        let mut r = Registry::new(4, Duration::from_secs(60), usize::MAX);
        let ch = r.channel_for_publish("feed", Instant::now()).unwrap();
        // Frames of 1, 2, 3 and 4 bytes, each filled with its own length.
        for len in 1..=4u8 {
            r.record(ch, &Arc::new(vec![len; len as usize]));
        }
        let within = |budget| {
            let (frames, skipped) = r.history_within(ch, budget);
            (frames.map(|f| f[0]).collect::<Vec<_>>(), skipped)
        };
        assert_eq!(within(usize::MAX), (vec![1, 2, 3, 4], 0));
        assert_eq!(within(10), (vec![1, 2, 3, 4], 0));
        assert_eq!(within(9), (vec![2, 3, 4], 1));
        assert_eq!(within(7), (vec![3, 4], 2));
        assert_eq!(
            within(6),
            (vec![4], 3),
            "the newest that fit, not any that fit"
        );
        assert_eq!(within(3), (vec![], 4));
        assert_eq!(within(0), (vec![], 4));
        assert_eq!(r.history_within(ch + 1, 100).1, 0, "unknown channel");
    }

    #[test]
    fn a_channel_with_history_outlives_its_subscribers_by_the_ttl() {
        let t0 = Instant::now();
        let ttl = Duration::from_secs(60);
        let mut r = Registry::new(2, ttl, usize::MAX);
        let s = r.subscribe("feed", 1);
        r.record(s.channel, &frame(9));
        r.unsubscribe(s, t0);
        assert_eq!(r.next_expiry(), Some(t0 + ttl));
        r.expire(t0 + ttl - Duration::from_secs(1));
        assert_eq!(r.lookup("feed"), Some(s.channel));

        // A subscriber arriving in time keeps it past the first expiry.
        let s2 = r.subscribe("feed", 2);
        r.expire(t0 + ttl);
        assert_eq!(r.lookup("feed"), Some(s2.channel));
        let t1 = t0 + ttl + Duration::from_secs(5);
        r.unsubscribe(s2, t1);
        r.expire(t1 + ttl);
        assert_eq!(r.lookup("feed"), None);
        assert_eq!(r.channel_count(), 0);
    }

    #[test]
    fn an_early_expiry_entry_does_not_cut_a_later_ttl_short() {
        // Created by a publish at t0 (entry for t0+ttl); a subscriber comes and goes, leaving
        // at t0+2: it must live until t0+2+ttl, not die at t0+ttl.
        let t0 = Instant::now();
        let ttl = Duration::from_secs(3);
        let mut r = Registry::new(1, ttl, usize::MAX);
        let ch = r.channel_for_publish("feed", t0).unwrap();
        r.record(ch, &frame(1));
        let s = r.subscribe("feed", 7);
        r.unsubscribe(s, t0 + Duration::from_secs(2));
        r.expire(t0 + ttl + Duration::from_millis(300));
        assert_eq!(r.lookup("feed"), Some(ch));
        r.expire(t0 + Duration::from_secs(2) + ttl);
        assert_eq!(r.lookup("feed"), None);
    }

    #[test]
    fn a_stale_expiry_does_not_remove_a_recreated_channel() {
        let t0 = Instant::now();
        let ttl = Duration::from_secs(10);
        let mut r = Registry::new(1, ttl, usize::MAX);
        let first = r.channel_for_publish("a", t0).unwrap();
        r.record(first, &frame(1));
        r.expire(t0 + ttl); // forgotten
        assert_eq!(r.lookup("a"), None);
        let again = r.channel_for_publish("a", t0 + ttl).unwrap();
        assert_eq!(again, first, "slab id reused");
        r.record(again, &frame(2));
        r.expire(t0 + ttl + Duration::from_secs(1));
        assert_eq!(r.lookup("a"), Some(again));
    }
}
