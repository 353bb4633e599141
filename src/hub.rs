//! The hub: who gets what. Channels, their subscribers (connection keys, never sockets) and
//! history live in the [`Registry`]; the hub decides what each subscriber is queued, with the
//! slow-consumer policy, and touches no socket: the loop hands it its connection table as
//! [`Outboxes`], and unit tests hand it a plain one.
//!
//! # One contiguous batch per channel per turn
//!
//! A published frame is encoded once and recorded in history at once, but queued at the end
//! of the loop's turn ([`Hub::settle_all`]). If a channel got one frame this turn, that shared
//! frame is queued to every subscriber, as it always was. If it got several, they are copied
//! once, in order, into one shared buffer, and that buffer is queued to each subscriber as a
//! single entry: one reference, one iovec, one contiguous copy in the kernel, where queuing
//! the frames separately hands the kernel many small pieces (each with a start-up cost: on
//! this machine that was a third of the server's time at saturation). The copy is one
//! `memcpy` per message per turn, not per subscriber.
//!
//! The batch keeps every per-message contract:
//! - **the sender is excluded**: a subscriber that published into this batch gets the other
//!   frames one by one, without its own (unless `--echo`);
//! - **backpressure**: the batch is queued whole only where it fits under
//!   `--max-backpressure`; elsewhere its frames are offered one by one exactly as if they had
//!   been published one by one (an empty queue takes any one message, and a subscriber over
//!   the cap is first written what its socket takes), so `--slow-consumer drop` skips whole
//!   messages and counts each;
//! - **order**: frames keep their publishing order; a connection's pongs and closes are never
//!   inside a batch (a batch is one entry, and urgent frames go between entries);
//! - **membership**: before anyone joins or leaves a channel, or the server closes a
//!   subscriber, the channel's pending frames are queued ([`Hub::settle`]), so a joiner gets
//!   them through history and not twice, and a leaver gets what was published before it left.

use crate::broadcast::{OutQueue, SharedFrame};
use crate::config::SlowConsumer;
use crate::registry::{Pending, Registry, Subscription, TooManyChannels};

/// The connections a hub delivers to: the loop's connection table, as keys.
pub trait Outboxes {
    /// `key`'s outbound queue, if it takes data messages now (upgraded, no close sent or
    /// received).
    fn open(&mut self, key: usize) -> Option<&mut OutQueue>;
    /// Something was queued for `key`: it is to be flushed this turn.
    fn queued(&mut self, key: usize);
    /// Writes what `key`'s socket takes now. Called before judging a subscriber over the cap,
    /// so only bytes the kernel would not take count against it: a reader that keeps up is
    /// never judged by a burst queued within one turn.
    fn flush(&mut self, key: usize);
    /// `key` is over `--max-backpressure` under `--slow-consumer close`: close it (1008).
    fn close_slow(&mut self, key: usize);
}

/// What the hub counted (the loop's metrics add them in).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HubStats {
    /// Frames queued to subscribers (a batch of n frames counts n).
    pub deliveries: u64,
    /// Frames skipped for subscribers over the cap (`--slow-consumer drop`).
    pub dropped: u64,
    /// History frames dropped to stay under `--max-history-memory`.
    pub history_evicted: u64,
    /// Batches of two or more frames built.
    pub batches: u64,
}

/// Channels, subscribers and history, and the fan-out: see the module doc.
#[derive(Debug)]
pub struct Hub {
    /// Channels, subscribers and history.
    pub registry: Registry,
    echo: bool,
    cap: usize,
    policy: SlowConsumer,
    /// Channels that got frames this turn (some may have been settled already).
    pending_channels: Vec<usize>,
    /// Reused between settles: the frames being queued, and their senders.
    frames: Vec<Pending>,
    senders: Vec<usize>,
    /// What was counted.
    pub stats: HubStats,
}

impl Hub {
    /// A hub over `registry` with the delivery policy: `echo` (senders get their own
    /// messages), `cap` (`--max-backpressure`) and what to do past it.
    pub fn new(registry: Registry, echo: bool, cap: usize, policy: SlowConsumer) -> Self {
        Hub {
            registry,
            echo,
            cap,
            policy,
            pending_channels: Vec::new(),
            frames: Vec::new(),
            senders: Vec::new(),
            stats: HubStats::default(),
        }
    }

    /// Subscribes `key` to `name`, after queuing what the channel got this turn (so the new
    /// subscriber finds it in history, not twice).
    pub fn subscribe(
        &mut self,
        name: &str,
        key: usize,
        table: &mut impl Outboxes,
    ) -> Result<Subscription, TooManyChannels> {
        if let Some(channel) = self.registry.lookup(name) {
            self.settle(channel, table);
        }
        self.registry.subscribe(name, key)
    }

    /// Unsubscribes, after queuing what the channel got this turn (which the leaver gets).
    /// Returns the key of the connection moved into `sub`'s slot, if any.
    pub fn unsubscribe(
        &mut self,
        sub: Subscription,
        now: std::time::Instant,
        table: &mut impl Outboxes,
    ) -> Option<usize> {
        self.settle(sub.channel, table);
        self.registry.unsubscribe(sub, now)
    }

    /// Publishes an encoded frame on `channel` (an id from the registry) from connection
    /// `from` (none for the HTTP API and `Handle`): it goes into history now and to the
    /// subscribers at the end of the turn. Returns how many subscribers the channel has.
    pub fn publish(&mut self, channel: usize, frame: SharedFrame, from: Option<usize>) -> usize {
        // (A frame bigger than the history budget takes a channel nobody is on with it.)
        self.stats.history_evicted += self.registry.record(channel, &frame) as u64;
        if self.registry.add_pending(channel, Pending { frame, from }) {
            self.pending_channels.push(channel);
        }
        self.registry.subscribers(channel).len()
    }

    /// Queues every channel's pending frames: the end of the turn.
    pub fn settle_all(&mut self, table: &mut impl Outboxes) {
        let mut channels = std::mem::take(&mut self.pending_channels);
        for &channel in &channels {
            self.settle(channel, table);
        }
        channels.clear();
        self.pending_channels = channels;
    }

    /// Whether any frame waits for [`Self::settle_all`].
    pub fn has_pending(&self) -> bool {
        !self.pending_channels.is_empty()
    }

    /// Queues `channel`'s pending frames to its subscribers (see the module doc).
    pub fn settle(&mut self, channel: usize, table: &mut impl Outboxes) {
        let mut frames = std::mem::take(&mut self.frames);
        self.registry.take_pending(channel, &mut frames);
        let mut offer = Offer {
            cap: self.cap,
            policy: self.policy,
            stats: &mut self.stats,
            table,
        };
        match frames.len() {
            0 => {}
            1 => {
                let except = frames[0].from.filter(|_| !self.echo);
                for &key in self.registry.subscribers(channel) {
                    if Some(key) != except {
                        offer.frames(key, &frames, None, None);
                    }
                }
            }
            n => {
                offer.stats.batches += 1;
                let len = frames.iter().map(|f| f.frame.len()).sum();
                let mut bytes = Vec::with_capacity(len);
                for f in &frames {
                    bytes.extend_from_slice(&f.frame);
                }
                let batch = SharedFrame::new(bytes);
                let senders = &mut self.senders;
                if !self.echo {
                    senders.extend(frames.iter().filter_map(|f| f.from));
                    senders.sort_unstable();
                    senders.dedup();
                }
                for &key in self.registry.subscribers(channel) {
                    if senders.binary_search(&key).is_ok() {
                        // It published into this batch: the others' frames, one by one.
                        offer.frames(key, &frames, Some(key), None);
                    } else {
                        offer.frames(key, &frames, None, Some((&batch, n)));
                    }
                }
                senders.clear();
            }
        }
        frames.clear();
        self.frames = frames;
    }
}

/// Queuing frames to subscribers under the cap and the slow-consumer policy.
struct Offer<'a, T> {
    cap: usize,
    policy: SlowConsumer,
    stats: &'a mut HubStats,
    table: &'a mut T,
}

impl<T: Outboxes> Offer<'_, T> {
    /// Queues `frames` (but those sent by `skip`) to `key`: as the one `batch` of them when
    /// given and it fits, else one by one, each judged against the cap as if published alone.
    fn frames(
        &mut self,
        key: usize,
        frames: &[Pending],
        skip: Option<usize>,
        batch: Option<(&SharedFrame, usize)>,
    ) {
        if let Some((batch, n)) = batch {
            match self.push(key, batch, n, false) {
                Pushed::Yes | Pushed::Closed => return,
                Pushed::OverCap => {} // Then frame by frame, as if published one by one.
            }
        }
        for f in frames.iter().filter(|f| skip.is_none() || f.from != skip) {
            match self.push(key, &f.frame, 1, true) {
                Pushed::Yes => {}
                Pushed::Closed => return,
                Pushed::OverCap if self.policy == SlowConsumer::Drop => self.stats.dropped += 1,
                Pushed::OverCap => return self.table.close_slow(key),
            }
        }
    }

    /// Queues `frame` (`messages` messages) for `key` if it fits under the cap, after writing
    /// what its socket takes when it does not fit at first. A single message also fits an
    /// empty queue whatever its size (`lone`); a batch never goes past the cap, or one big
    /// turn would make a reader that keeps up look slow: it is then offered frame by frame.
    fn push(&mut self, key: usize, frame: &SharedFrame, messages: usize, lone: bool) -> Pushed {
        for attempt in 0..2 {
            let Some(queue) = self.table.open(key) else {
                return Pushed::Closed;
            };
            let held = queue.held_bytes();
            let fits = held + OutQueue::shared_cost(frame) <= self.cap || lone && held == 0;
            if fits {
                let first = queue.is_empty();
                queue.push(frame.clone());
                self.stats.deliveries += messages as u64;
                if first {
                    // A queue with something in it is already to be flushed, or waits for
                    // its socket to be writable.
                    self.table.queued(key);
                }
                return Pushed::Yes;
            }
            if attempt == 0 {
                self.table.flush(key);
            }
        }
        Pushed::OverCap
    }
}

/// What [`Offer::push`] did.
enum Pushed {
    Yes,
    OverCap,
    /// The subscriber no longer takes data (closed, or a flush failed).
    Closed,
}

#[cfg(test)]
mod tests;
