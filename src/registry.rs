//! Channels and their subscribers.
//!
//! A channel is a name and a dense list of connection keys, so a broadcast walks a contiguous
//! `Vec`. Each connection remembers its [`Subscription`] (channel id and slot in that list), so
//! leaving is O(1) with `swap_remove`; the connection moved into the freed slot is reported back
//! so its own record can be fixed. Empty channels are forgotten.

use std::collections::HashMap;

use slab::Slab;

/// Where a connection sits in the registry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Subscription {
    /// The channel's id (stable while it has subscribers).
    pub channel: usize,
    /// The connection's index in the channel's subscriber list.
    pub slot: usize,
}

#[derive(Debug)]
struct Channel {
    name: Box<str>,
    subscribers: Vec<usize>,
}

/// Channel name → subscribers.
#[derive(Debug, Default)]
pub struct Registry {
    by_name: HashMap<Box<str>, usize>,
    channels: Slab<Channel>,
}

impl Registry {
    /// Adds connection `key` to channel `name`, creating the channel if needed.
    pub fn subscribe(&mut self, name: &str, key: usize) -> Subscription {
        let channel = match self.by_name.get(name) {
            Some(&id) => id,
            None => {
                let id = self.channels.insert(Channel {
                    name: name.into(),
                    subscribers: Vec::new(),
                });
                self.by_name.insert(name.into(), id);
                id
            }
        };
        let subscribers = &mut self.channels[channel].subscribers;
        subscribers.push(key);
        Subscription {
            channel,
            slot: subscribers.len() - 1,
        }
    }

    /// Removes a subscription. Returns the key of the connection that moved into its slot, if
    /// any: that connection's subscription slot is now `sub.slot`.
    pub fn unsubscribe(&mut self, sub: Subscription) -> Option<usize> {
        let ch = &mut self.channels[sub.channel];
        ch.subscribers.swap_remove(sub.slot);
        let moved = ch.subscribers.get(sub.slot).copied();
        if ch.subscribers.is_empty() {
            let ch = self.channels.remove(sub.channel);
            self.by_name.remove(&ch.name);
        }
        moved
    }

    /// The channel id for `name`, if it has subscribers.
    pub fn lookup(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).copied()
    }

    /// The subscribers of channel `id`.
    pub fn subscribers(&self, id: usize) -> &[usize] {
        self.channels.get(id).map_or(&[], |c| &c.subscribers)
    }

    /// How many channels have subscribers.
    pub fn channel_count(&self) -> usize {
        self.channels.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscribe_and_leave_keep_slots_consistent() {
        let mut r = Registry::default();
        let a = r.subscribe("room", 10);
        let b = r.subscribe("room", 11);
        let c = r.subscribe("room", 12);
        let other = r.subscribe("other", 13);
        assert_eq!(a.channel, b.channel);
        assert_ne!(a.channel, other.channel);
        assert_eq!((a.slot, b.slot, c.slot), (0, 1, 2));

        // 12 moves into a's slot.
        assert_eq!(r.unsubscribe(a), Some(12));
        assert_eq!(r.subscribers(c.channel), &[12, 11]);
        let c = Subscription { slot: a.slot, ..c };
        // Removing the last slot moves nobody.
        assert_eq!(r.unsubscribe(b), None);
        assert_eq!(r.unsubscribe(c), None);
        assert_eq!(r.lookup("room"), None);
        assert_eq!(r.channel_count(), 1);
        assert_eq!(r.subscribers(other.channel), &[13]);
    }

    #[test]
    fn a_forgotten_channel_is_recreated_fresh() {
        let mut r = Registry::default();
        let s = r.subscribe("x", 1);
        r.unsubscribe(s);
        let s2 = r.subscribe("x", 2);
        assert_eq!(r.subscribers(s2.channel), &[2]);
        assert_eq!(r.lookup("x"), Some(s2.channel));
    }
}
