//! The hub: who gets what, on one loop. It knows this loop's channels and their subscribers
//! (connection keys, never sockets), decides what each subscriber is queued, with the
//! slow-consumer policy, and what to hand to the other loops; it touches no socket: the loop
//! hands it its connection table as [`Outboxes`], and unit tests hand it a plain one.
//! Channels of the whole process, which loops have subscribers of them, and history live in
//! the node's [`Directory`].
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

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use slab::Slab;

use crate::broadcast::{Broadcast, OutQueue, SharedFrame};
use crate::config::SlowConsumer;
use crate::directory::{Directory, Shared, TooManyChannels};
use crate::inbox::Handoff;
use crate::proto::deflate::{Agreed, COMPRESSOR_WINDOW_BITS, Compressor, DeflateCounts};

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
    /// What `key` negotiated of permessage-deflate, if it did (asked only with `--deflate`).
    fn deflate(&mut self, key: usize) -> Option<Agreed>;
}

/// Where a connection sits in its loop's hub.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Subscription {
    /// The channel's id in this hub (stable while the loop has subscribers of it).
    pub channel: usize,
    /// The connection's index in the channel's subscriber list.
    pub slot: usize,
}

/// A frame published to a channel this turn, waiting for the end of the turn.
#[derive(Clone, Debug)]
pub struct Pending {
    /// The encoded frame.
    pub frame: Broadcast,
    /// The connection that sent it, which does not get it back (unless `--echo`).
    pub from: Option<usize>,
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
    /// What this loop's permessage-deflate compressor did.
    pub deflate: DeflateCounts,
}

impl HubStats {
    /// Adds another hub's counts in.
    pub fn merge(&mut self, other: &HubStats) {
        self.deliveries += other.deliveries;
        self.dropped += other.dropped;
        self.history_evicted += other.history_evicted;
        self.batches += other.batches;
        self.deflate.compressed += other.deflate.compressed;
        self.deflate.skipped += other.deflate.skipped;
        self.deflate.bytes_in += other.deflate.bytes_in;
        self.deflate.bytes_out += other.deflate.bytes_out;
    }
}

/// A channel this loop has subscribers of.
#[derive(Debug)]
struct Local {
    shared: Arc<Shared>,
    /// Connection keys: a dense list, so a broadcast walks a contiguous `Vec`; leaving is
    /// O(1) with `swap_remove`.
    subscribers: Vec<usize>,
    /// Frames published this turn, not yet queued to the subscribers.
    pending: Vec<Pending>,
}

/// One loop's channels and the fan-out: see the module doc.
#[derive(Debug)]
pub struct Hub {
    loop_id: usize,
    directory: Arc<Mutex<Directory>>,
    /// Whether the directory keeps history (then publishing records under its lock).
    history: bool,
    channels: Slab<Local>,
    by_name: HashMap<Box<str>, usize>,
    by_uid: HashMap<u64, usize>,
    echo: bool,
    cap: usize,
    policy: SlowConsumer,
    /// Channels that got frames this turn (some may have been settled already).
    pending_channels: Vec<usize>,
    /// Reused between settles: the frames being queued, and their senders.
    frames: Vec<Pending>,
    senders: Vec<usize>,
    /// Messages published on this loop so far (each one's number is its sequence number).
    published: u64,
    /// The last sequence number received from each loop.
    received: Vec<u64>,
    /// What this turn hands to each other loop.
    outgoing: Vec<Vec<Handoff>>,
    /// What was counted.
    pub stats: HubStats,
    /// The loop's permessage-deflate compressor (`--deflate`): each message is compressed at
    /// most once in the process, by whichever loop first has a subscriber that wants it.
    compressor: Option<Compressor>,
}

impl Hub {
    /// The hub of loop `loop_id` of `loops`, over the process's `directory`, with the
    /// delivery policy: `echo` (senders get their own messages), `cap`
    /// (`--max-backpressure`) and what to do past it.
    pub fn new(
        loop_id: usize,
        loops: usize,
        directory: Arc<Mutex<Directory>>,
        echo: bool,
        cap: usize,
        policy: SlowConsumer,
    ) -> Self {
        let history = lock(&directory).keeps_history();
        Hub {
            loop_id,
            directory,
            history,
            channels: Slab::new(),
            by_name: HashMap::new(),
            by_uid: HashMap::new(),
            echo,
            cap,
            policy,
            pending_channels: Vec::new(),
            frames: Vec::new(),
            senders: Vec::new(),
            published: 0,
            received: vec![0; loops],
            outgoing: vec![Vec::new(); loops],
            stats: HubStats::default(),
            compressor: None,
        }
    }

    /// Compresses for subscribers that negotiated permessage-deflate (`--deflate`).
    pub fn with_compressor(mut self, compressor: Compressor) -> Self {
        self.compressor = Some(compressor);
        self
    }

    /// Its counters, with the compressor's brought up to date.
    pub fn stats(&mut self) -> HubStats {
        if let Some(c) = &self.compressor {
            self.stats.deflate = c.counts;
        }
        self.stats
    }

    /// The frame of `frame` for a subscriber that negotiated `deflate` (compressed where
    /// it pays, at most once in the process), or the plain one.
    pub fn frame_for(&mut self, frame: &Broadcast, deflate: Option<&Agreed>) -> SharedFrame {
        match (deflate, self.compressor.as_mut()) {
            (Some(agreed), Some(c)) => frame.frame_for(Some(agreed), c).clone(),
            _ => frame.plain().clone(),
        }
    }

    fn directory(&self) -> MutexGuard<'_, Directory> {
        lock(&self.directory)
    }

    /// Subscribes `key` to `name`, after queuing what the channel got this turn (so the new
    /// subscriber finds it in history, not twice). Fails when the channel would have to be
    /// created and `--max-channels` exist.
    pub fn subscribe(
        &mut self,
        name: &str,
        key: usize,
        table: &mut impl Outboxes,
    ) -> Result<Subscription, TooManyChannels> {
        let channel = match self.by_name.get(name) {
            Some(&channel) => {
                self.settle(channel, table);
                self.directory().join(name, self.loop_id, false)?;
                channel
            }
            None => {
                let shared = self.directory().join(name, self.loop_id, true)?;
                let uid = shared.uid;
                let channel = self.channels.insert(Local {
                    shared,
                    subscribers: Vec::new(),
                    pending: Vec::new(),
                });
                self.by_name.insert(name.into(), channel);
                self.by_uid.insert(uid, channel);
                channel
            }
        };
        let subscribers = &mut self.channels[channel].subscribers;
        subscribers.push(key);
        Ok(Subscription {
            channel,
            slot: subscribers.len() - 1,
        })
    }

    /// The history a subscriber that just joined is sent first: the newest frames that fit in
    /// `budget` bytes, oldest first, none that is on its way to this loop (see
    /// [`crate::directory`]); and how many older ones did not fit.
    pub fn history_for(&self, sub: Subscription, budget: usize) -> (Vec<Broadcast>, usize) {
        if !self.history {
            return (Vec::new(), 0);
        }
        let shared = &self.channels[sub.channel].shared;
        (self.directory()).history_for(shared, self.loop_id, &self.received, budget)
    }

    /// Unsubscribes at `now`, after queuing what the channel got this turn (which the leaver
    /// gets). Returns the key of the connection moved into `sub`'s slot, if any.
    pub fn unsubscribe(
        &mut self,
        sub: Subscription,
        now: Instant,
        table: &mut impl Outboxes,
    ) -> Option<usize> {
        self.settle(sub.channel, table);
        let local = &mut self.channels[sub.channel];
        local.subscribers.swap_remove(sub.slot);
        let moved = local.subscribers.get(sub.slot).copied();
        let last = local.subscribers.is_empty();
        (lock(&self.directory)).leave(&local.shared, self.loop_id, last, now);
        if last {
            let local = self.channels.remove(sub.channel);
            self.by_name.remove(&local.shared.name);
            self.by_uid.remove(&local.shared.uid);
        }
        moved
    }

    /// The name of channel `channel` (a subscription's channel id).
    pub fn channel_name(&self, channel: usize) -> &str {
        &self.channels[channel].shared.name
    }

    /// The subscribers of channel `channel` on this loop.
    pub fn subscribers(&self, channel: usize) -> &[usize] {
        self.channels.get(channel).map_or(&[], |c| &c.subscribers)
    }

    /// Publishes an encoded frame on `channel` (a subscription's channel id) from connection
    /// `from`: it goes into history now, to this loop's subscribers at the end of the turn,
    /// and to the other loops with subscribers in this turn's hand-offs. Returns how many
    /// subscribers this loop has of it.
    pub fn publish(&mut self, channel: usize, frame: Broadcast, from: Option<usize>) -> usize {
        let shared = self.channels[channel].shared.clone();
        self.spread(&shared, &frame);
        self.add_pending(channel, Pending { frame, from });
        self.channels[channel].subscribers.len()
    }

    /// Publishes an encoded frame on the channel called `name` (from the HTTP API or a
    /// `Handle`), creating it for its history if history is kept. Returns how many subscribers
    /// the channel has, all loops together; an error when it would have had to be created and
    /// `--max-channels` exist.
    pub fn publish_named(
        &mut self,
        name: &str,
        frame: Broadcast,
        now: Instant,
    ) -> Result<usize, TooManyChannels> {
        if let Some(&channel) = self.by_name.get(name) {
            self.publish(channel, frame, None);
            if self.channels[channel].shared.loops() == 1 << self.loop_id {
                return Ok(self.channels[channel].subscribers.len());
            }
            return Ok((self.directory()).subscribers(&self.channels[channel].shared));
        }
        let Some(shared) = self.directory().channel_for_publish(name, now)? else {
            return Ok(0);
        };
        self.spread(&shared, &frame);
        Ok((self.directory()).subscribers(&shared))
    }

    /// Records `frame` in `shared`'s history and hands it to the other loops with subscribers
    /// (whose mask is read under the same lock when history is kept).
    fn spread(&mut self, shared: &Arc<Shared>, frame: &Broadcast) {
        self.published += 1;
        let seq = self.published;
        let loops = if self.history {
            let (evicted, loops) = (lock(&self.directory)).record(shared, self.loop_id, seq, frame);
            self.stats.history_evicted += evicted as u64;
            loops
        } else {
            shared.loops()
        };
        let mut others = loops & !(1 << self.loop_id);
        while others != 0 {
            let target = others.trailing_zeros() as usize;
            others &= others - 1;
            self.outgoing[target].push(Handoff {
                channel: shared.clone(),
                frame: frame.clone(),
                origin: self.loop_id,
                seq,
            });
        }
    }

    fn add_pending(&mut self, channel: usize, pending: Pending) {
        let list = &mut self.channels[channel].pending;
        list.push(pending);
        if list.len() == 1 {
            self.pending_channels.push(channel);
        }
    }

    /// Takes a message another loop handed over: queued to this loop's subscribers at the end
    /// of the turn (it was recorded in history by its origin).
    pub fn receive(&mut self, handoff: Handoff) {
        self.received[handoff.origin] = handoff.seq;
        if let Some(&channel) = self.by_uid.get(&handoff.channel.uid) {
            self.add_pending(
                channel,
                Pending {
                    frame: handoff.frame,
                    from: None,
                },
            );
        }
    }

    /// This turn's hand-offs, by target loop (each taken once).
    pub fn outgoing(&mut self) -> impl Iterator<Item = (usize, Vec<Handoff>)> + '_ {
        (self.outgoing.iter_mut().enumerate())
            .filter(|(_, batch)| !batch.is_empty())
            .map(|(target, batch)| (target, std::mem::take(batch)))
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
        let Some(local) = self.channels.get_mut(channel) else {
            return;
        };
        let mut frames = std::mem::take(&mut self.frames);
        std::mem::swap(&mut local.pending, &mut frames);
        let mut offer = Offer {
            cap: self.cap,
            policy: self.policy,
            stats: &mut self.stats,
            table,
            compressor: self.compressor.as_mut(),
        };
        let subscribers = &self.channels[channel].subscribers;
        match frames.len() {
            0 => {}
            1 => {
                let except = frames[0].from.filter(|_| !self.echo);
                for &key in subscribers {
                    if Some(key) != except {
                        offer.frames(key, &frames, None, None);
                    }
                }
            }
            _ => {
                offer.stats.batches += 1;
                let mut batch = Batch::new(&frames);
                let senders = &mut self.senders;
                if !self.echo {
                    senders.extend(frames.iter().filter_map(|f| f.from));
                    senders.sort_unstable();
                    senders.dedup();
                }
                for &key in subscribers {
                    if senders.binary_search(&key).is_ok() {
                        // It published into this batch: the others' frames, one by one.
                        offer.frames(key, &frames, Some(key), None);
                    } else {
                        offer.frames(key, &frames, None, Some(&mut batch));
                    }
                }
                senders.clear();
            }
        }
        frames.clear();
        self.frames = frames;
    }
}

/// A channel's frames of one turn in one buffer: the plain frames, and (built when a
/// subscriber first needs it) the frames as a deflate subscriber with the full window gets
/// them, each compressed once.
struct Batch<'f> {
    frames: &'f [Pending],
    plain: SharedFrame,
    deflated: Option<SharedFrame>,
}

impl<'f> Batch<'f> {
    fn new(frames: &'f [Pending]) -> Self {
        Batch {
            frames,
            plain: concat(frames.iter().map(|f| f.frame.plain())),
            deflated: None,
        }
    }

    /// The batch for a subscriber that negotiated `deflate` (`None` for the others), or
    /// `None` when it needs its frames one by one (a window smaller than the compressor's).
    fn for_peer(
        &mut self,
        deflate: Option<Agreed>,
        c: Option<&mut Compressor>,
    ) -> Option<&SharedFrame> {
        match (deflate, c) {
            (None, _) | (_, None) => Some(&self.plain),
            (Some(agreed), Some(c))
                if agreed.server_max_window_bits() == COMPRESSOR_WINDOW_BITS =>
            {
                let frames = self.frames;
                let agreed = Some(&agreed);
                Some(self.deflated.get_or_insert_with(|| {
                    let parts: Vec<&SharedFrame> = frames
                        .iter()
                        .map(|f| f.frame.frame_for(agreed, c))
                        .collect();
                    concat(parts.into_iter())
                }))
            }
            _ => None,
        }
    }
}

/// One buffer holding `frames` one after another: one `memcpy` per frame.
fn concat<'a>(frames: impl Iterator<Item = &'a SharedFrame> + Clone) -> SharedFrame {
    let mut bytes = Vec::with_capacity(frames.clone().map(|f| f.len()).sum());
    for f in frames {
        bytes.extend_from_slice(f);
    }
    SharedFrame::new(bytes)
}

/// The directory, locked; a loop that panicked holding it has taken the process down (see
/// `Server::run`), so a poisoned lock is still fine to read while shutting down.
fn lock(directory: &Mutex<Directory>) -> MutexGuard<'_, Directory> {
    directory.lock().unwrap_or_else(|e| e.into_inner())
}

/// Queuing frames to subscribers under the cap and the slow-consumer policy.
struct Offer<'a, T> {
    cap: usize,
    policy: SlowConsumer,
    stats: &'a mut HubStats,
    table: &'a mut T,
    /// This loop's compressor, with `--deflate`.
    compressor: Option<&'a mut Compressor>,
}

impl<T: Outboxes> Offer<'_, T> {
    /// Queues `frames` (but those sent by `skip`) to `key`: as the one `batch` of them when
    /// given and it fits, else one by one, each judged against the cap as if published alone.
    /// A subscriber that negotiated permessage-deflate gets compressed frames where they pay.
    fn frames(
        &mut self,
        key: usize,
        frames: &[Pending],
        skip: Option<usize>,
        batch: Option<&mut Batch<'_>>,
    ) {
        let deflate = match self.compressor {
            Some(_) => self.table.deflate(key),
            None => None,
        };
        if let Some(batch) = batch
            && let Some(bytes) = batch.for_peer(deflate, self.compressor.as_deref_mut())
        {
            let bytes = bytes.clone();
            match self.push(key, &bytes, frames.len(), false) {
                Pushed::Yes | Pushed::Closed => return,
                Pushed::OverCap => {} // Then frame by frame, as if published one by one.
            }
        }
        for f in frames.iter().filter(|f| skip.is_none() || f.from != skip) {
            let frame = match (deflate, self.compressor.as_deref_mut()) {
                (Some(agreed), Some(c)) => f.frame.frame_for(Some(&agreed), c).clone(),
                _ => f.frame.plain().clone(),
            };
            match self.push(key, &frame, 1, true) {
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
