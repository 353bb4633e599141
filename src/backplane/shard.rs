//! One subscriber connection, to one shard (to `--redis` itself without a cluster): keeps its
//! subscriptions equal to the channels the subscriber thread routed to it, hands what arrives
//! to the loops, and tells the subscriber thread of the channels this shard no longer serves.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TryRecvError};
use redis::{Connection, PushKind, RedisError, Value};
use tracing::debug;

use super::cluster::connect;
use super::slots::Addr;
use super::stats::Link;
use super::{
    BackplaneStats, FIRST_BACKOFF, POLL, SUBSCRIBE_BATCH, Settings, back_off, envelope, slots,
    unix_micros,
};
use crate::broadcast;
use crate::inbox::Handle;
use crate::proto::handshake::is_channel;

/// What the subscriber thread tells a shard's connection.
#[derive(Debug)]
pub(super) enum ToShard {
    /// Subscribe this channel here.
    Subscribe(Box<str>),
    /// Unsubscribe it (its delay has passed).
    Unsubscribe(Box<str>),
    /// It is served elsewhere now: forget it without a command (this shard would refuse one).
    Forget(Box<str>),
    /// This node's probe channel on this shard is now this one.
    Probe(Option<String>),
}

/// What a shard's connection tells the subscriber thread.
#[derive(Debug)]
pub(super) enum FromShard {
    /// These channels are not served here (the server unsubscribed them, as Redis does when
    /// their slot moves, or never confirmed their subscription): the slot map is out of date.
    Lost(Addr, Vec<Box<str>>),
}

/// How long a subscription may go unconfirmed before its slot is taken to have moved. Redis
/// answers `MOVED`, but after a read timed out the client library skips the next reply that
/// is not a push, so a refusal can go unseen: its missing confirmation is what counts.
const CONFIRM_WITHIN: Duration = Duration::from_secs(1);

/// How long probes acknowledged by Redis may go unseen before the connection is deemed wedged
/// (up for Redis, delivering nothing: seen after failovers) and replaced.
pub(super) const WEDGED_AFTER: Duration = Duration::from_secs(3);

/// Whether a probe published at `acked_us` (acknowledged by Redis) should have arrived, when
/// the newest one seen was published at `seen_us` (or the connection was made then).
fn wedged(acked_us: u64, seen_us: u64) -> bool {
    acked_us > seen_us + WEDGED_AFTER.as_micros() as u64
}

/// Why a connection stopped being served.
enum Failure {
    /// The node or this shard is gone: nothing more to do.
    Stopped,
    Redis(RedisError),
    /// Probes the publisher got through to Redis stopped coming back.
    Wedged,
}

impl From<RedisError> for Failure {
    fn from(e: RedisError) -> Self {
        Failure::Redis(e)
    }
}

pub(super) struct Shard {
    addr: Addr,
    settings: Arc<Settings>,
    stats: Arc<BackplaneStats>,
    /// The node's stop flag.
    stop: Arc<AtomicBool>,
    /// From the subscriber thread; it hanging up means this shard is no longer used.
    commands: Receiver<ToShard>,
    events: Sender<FromShard>,
    handle: Handle,
    generation: Arc<AtomicU64>,
    probe: Option<String>,
    /// The channels routed here.
    wanted: HashSet<Box<str>>,
    /// Subscribed on the current connection (confirmed or not).
    subscribed: HashSet<Box<str>>,
    /// Subscribed, not confirmed yet, since when.
    unconfirmed: HashMap<Box<str>, Instant>,
    to_subscribe: Vec<Box<str>>,
    to_unsubscribe: Vec<Box<str>>,
    /// Publish time of the newest probe of ours that came back (or when connected).
    probe_seen_us: u64,
    /// The probe channel changed: subscribe the new one.
    probe_due: bool,
    /// Whether this connection counts as up in the stats.
    up: bool,
    /// What this connection adds to `fanout_backplane_subscriptions`.
    counted: u64,
}

impl Shard {
    /// A connection to the shard at `addr`, taking commands from `commands`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        addr: Addr,
        probe: Option<String>,
        settings: Arc<Settings>,
        stats: Arc<BackplaneStats>,
        stop: Arc<AtomicBool>,
        commands: Receiver<ToShard>,
        events: Sender<FromShard>,
        handle: Handle,
        generation: Arc<AtomicU64>,
    ) -> Shard {
        Shard {
            addr,
            settings,
            stats,
            stop,
            commands,
            events,
            handle,
            generation,
            probe,
            wanted: HashSet::new(),
            subscribed: HashSet::new(),
            unconfirmed: HashMap::new(),
            to_subscribe: Vec::new(),
            to_unsubscribe: Vec::new(),
            probe_seen_us: 0,
            probe_due: false,
            up: false,
            counted: 0,
        }
    }

    pub(super) fn run(mut self) {
        let mut backoff = FIRST_BACKOFF;
        while !self.stop.load(Ordering::Acquire) {
            let error = match connect(&self.settings, &self.addr, true) {
                Ok(con) => {
                    backoff = FIRST_BACKOFF;
                    match self.serve(con) {
                        Ok(()) | Err(Failure::Stopped) => break,
                        Err(Failure::Redis(e)) => e.to_string(),
                        Err(Failure::Wedged) => {
                            self.stats.wedged.fetch_add(1, Ordering::Relaxed);
                            format!("no probe came back in {WEDGED_AFTER:?}: connection wedged")
                        }
                    }
                }
                Err(e) => e.to_string(),
            };
            debug!(host = %self.addr.0, port = self.addr.1, error = %error,
                "backplane: subscriber connection failed");
            self.subscribed.clear();
            self.unconfirmed.clear();
            self.count();
            if self.up {
                self.up = false;
                self.stats.set(Link::Subscriber, false, Some(&error));
            }
            let mut gone = false;
            let stop = self.stop.clone();
            back_off(&mut backoff, &stop, || {
                gone |= !self.take_commands();
            });
            if gone {
                break;
            }
        }
        self.subscribed.clear();
        self.count();
        if self.up {
            self.stats.set(Link::Subscriber, false, None);
        }
    }

    /// Subscribes the probe channel and every channel routed here on a new connection, then
    /// keeps the subscriptions up to date and hands over what arrives.
    fn serve(&mut self, mut con: Connection) -> Result<(), Failure> {
        con.set_read_timeout(Some(POLL))?;
        self.subscribed.clear();
        self.unconfirmed.clear();
        self.to_subscribe = self.wanted.iter().cloned().collect();
        self.to_unsubscribe.clear();
        self.probe_due = false;
        if let Some(probe) = &self.probe {
            self.send(&mut con, self.sub(), vec![probe.clone()])?;
        }
        self.update(&mut con)?;
        self.probe_seen_us = unix_micros();
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.up = true;
        self.stats.set(Link::Subscriber, true, None);
        let message = match self.settings.sharded {
            true => PushKind::SMessage,
            false => PushKind::Message,
        };
        let confirmed = match self.settings.sharded {
            true => PushKind::SSubscribe,
            false => PushKind::Subscribe,
        };
        let mut checked = Instant::now();
        while !self.stop.load(Ordering::Acquire) {
            if !self.take_commands() {
                return Err(Failure::Stopped);
            }
            self.update(&mut con)?;
            match con.recv_response() {
                Ok(Value::Push { kind, data }) if kind == message => {
                    if let [Value::BulkString(channel), Value::BulkString(payload)] = &data[..]
                        && self.probe.as_deref().map(str::as_bytes) == Some(&channel[..])
                    {
                        if let Ok(e) = envelope::decode(payload) {
                            self.probe_seen_us = self.probe_seen_us.max(e.published_us);
                        }
                        continue;
                    }
                    self.arrived(data)?
                }
                Ok(Value::Push { kind, data }) if kind == confirmed => {
                    if let Some(Value::BulkString(name)) = data.first()
                        && let Some(name) = self.fanout_name(name)
                    {
                        self.unconfirmed.remove(name);
                    }
                }
                Ok(Value::Push {
                    kind: PushKind::SUnsubscribe,
                    data,
                }) => {
                    // Redis unsubscribes a sharded channel whose slot moved away (or this
                    // confirms our own SUNSUBSCRIBE).
                    if let Some(Value::BulkString(name)) = data.first()
                        && let Some(name) = self.fanout_name(name)
                        && self.wanted.contains(name)
                        && self.subscribed.contains(name)
                    {
                        let name: Box<str> = name.into();
                        self.lost(vec![name]);
                    }
                }
                Ok(Value::ServerError(e)) => {
                    // `MOVED slot host:port` for a subscription sent on a stale slot map
                    // (when the connection reads it at all: see `CONFIRM_WITHIN`).
                    let e = RedisError::from(e);
                    if let Some((_, slot)) = e.redirect_node() {
                        let moved: Vec<Box<str>> = (self.unconfirmed.keys())
                            .filter(|n| {
                                let c = self.settings.redis_channel(n);
                                slots::key_slot(c.as_bytes()) == slot
                            })
                            .cloned()
                            .collect();
                        self.lost(moved);
                    }
                }
                Ok(_) => {}
                Err(e) if e.is_timeout() => {
                    // Nothing waiting on the socket (so not merely behind on reading).
                    if let Some(probe) = &self.probe {
                        let acked = self.stats.probe_acked_at(probe);
                        if wedged(acked, self.probe_seen_us) {
                            return Err(Failure::Wedged);
                        }
                    }
                }
                Err(e) => return Err(e.into()),
            }
            if checked.elapsed() >= POLL * 10 && !self.unconfirmed.is_empty() {
                checked = Instant::now();
                let late: Vec<Box<str>> = (self.unconfirmed.iter())
                    .filter(|(_, at)| at.elapsed() >= CONFIRM_WITHIN)
                    .map(|(n, _)| n.clone())
                    .collect();
                if !late.is_empty() {
                    self.lost(late);
                }
            }
        }
        Ok(())
    }

    /// Gives channels back to the subscriber thread to be routed again.
    fn lost(&mut self, names: Vec<Box<str>>) {
        if names.is_empty() {
            return;
        }
        for name in &names {
            self.wanted.remove(name);
            self.subscribed.remove(name);
            self.unconfirmed.remove(name);
        }
        self.count();
        let _ = self.events.send(FromShard::Lost(self.addr.clone(), names));
    }

    /// The fanout channel a Redis channel stands for, if it is one of ours.
    fn fanout_name<'a>(&self, redis: &'a [u8]) -> Option<&'a str> {
        let name = redis.strip_prefix(self.settings.prefix.as_bytes())?;
        is_channel(name)
            .then(|| std::str::from_utf8(name).ok())
            .flatten()
    }

    /// A message from Redis: `[channel, payload]`.
    fn arrived(&mut self, data: Vec<Value>) -> Result<(), Failure> {
        let [Value::BulkString(channel), Value::BulkString(payload)] = &data[..] else {
            return Ok(());
        };
        let Some(name) = self.fanout_name(channel) else {
            return Ok(());
        };
        let e = match envelope::decode(payload) {
            Ok(e) => e,
            Err(error) => {
                self.stats.invalid.fetch_add(1, Ordering::Relaxed);
                debug!(channel = name, ?error, "backplane: unreadable envelope");
                return Ok(());
            }
        };
        if *e.node == *self.settings.node_id {
            return Ok(()); // Ours: delivered here when it was accepted.
        }
        let age = unix_micros().saturating_sub(e.published_us);
        self.stats.observe_age(Duration::from_micros(age));
        self.stats.received.fetch_add(1, Ordering::Relaxed);
        let frame = broadcast::message(e.opcode, e.payload);
        self.handle
            .remote(name, frame)
            .map_err(|_| Failure::Stopped)
    }

    /// Takes the subscriber thread's commands; `false` when it hung up.
    fn take_commands(&mut self) -> bool {
        loop {
            match self.commands.try_recv() {
                Ok(ToShard::Subscribe(name)) => {
                    if !self.subscribed.contains(&name) {
                        self.to_subscribe.push(name.clone());
                    }
                    self.wanted.insert(name);
                }
                Ok(ToShard::Unsubscribe(name)) => {
                    self.wanted.remove(&name);
                    self.to_unsubscribe.push(name);
                }
                Ok(ToShard::Forget(name)) => {
                    self.wanted.remove(&name);
                    self.subscribed.remove(&name);
                    self.unconfirmed.remove(&name);
                }
                Ok(ToShard::Probe(probe)) => {
                    // The old one is dropped by Redis when its slot leaves this shard.
                    self.probe_due = probe.is_some() && probe != self.probe;
                    self.probe = probe;
                    self.probe_seen_us = unix_micros();
                }
                Err(TryRecvError::Empty) => return true,
                Err(TryRecvError::Disconnected) => return false,
            }
        }
    }

    fn sub(&self) -> &'static str {
        if self.settings.sharded {
            "SSUBSCRIBE"
        } else {
            "SUBSCRIBE"
        }
    }

    /// Sends the (un)subscriptions due, batched, without waiting for their confirmations.
    fn update(&mut self, con: &mut Connection) -> redis::RedisResult<()> {
        if std::mem::take(&mut self.probe_due)
            && let Some(probe) = &self.probe
        {
            self.send(con, self.sub(), vec![probe.clone()])?;
        }
        if !self.to_subscribe.is_empty() {
            let mut names = std::mem::take(&mut self.to_subscribe);
            names.retain(|n| self.wanted.contains(n) && !self.subscribed.contains(n));
            names.sort_unstable();
            names.dedup();
            self.send(con, self.sub(), self.channels(&names))?;
            if self.settings.sharded {
                let now = Instant::now();
                for name in &names {
                    self.unconfirmed.insert(name.clone(), now);
                }
            }
            self.subscribed.extend(names);
        }
        if !self.to_unsubscribe.is_empty() {
            let mut gone = std::mem::take(&mut self.to_unsubscribe);
            gone.retain(|n| !self.wanted.contains(n) && self.subscribed.remove(n));
            for name in &gone {
                self.unconfirmed.remove(name);
            }
            let unsub = match self.settings.sharded {
                true => "SUNSUBSCRIBE",
                false => "UNSUBSCRIBE",
            };
            self.send(con, unsub, self.channels(&gone))?;
        }
        self.count();
        Ok(())
    }

    /// The Redis channels of fanout channels.
    fn channels(&self, names: &[Box<str>]) -> Vec<String> {
        names
            .iter()
            .map(|n| self.settings.redis_channel(n))
            .collect()
    }

    /// Writes the commands for Redis `channels`, up to [`SUBSCRIBE_BATCH`] a command, all in
    /// one write. In a cluster a sharded command's channels must share a slot, so they are
    /// grouped by slot.
    fn send(
        &self,
        con: &mut Connection,
        command: &str,
        channels: Vec<String>,
    ) -> redis::RedisResult<()> {
        if channels.is_empty() {
            return Ok(());
        }
        let mut channels: Vec<(u16, String)> = (channels.into_iter())
            .map(|c| {
                let slot = match self.settings.sharded {
                    true => slots::key_slot(c.as_bytes()),
                    false => 0,
                };
                (slot, c)
            })
            .collect();
        channels.sort_by_key(|(slot, _)| *slot);
        let mut pipe = redis::pipe();
        for group in channels.chunk_by(|a, b| a.0 == b.0) {
            for chunk in group.chunks(SUBSCRIBE_BATCH) {
                let cmd = pipe.cmd(command);
                for (_, c) in chunk {
                    cmd.arg(c);
                }
            }
        }
        con.send_packed_command(&pipe.get_packed_pipeline())
    }

    /// Brings `fanout_backplane_subscriptions` up to date with this connection's share.
    fn count(&mut self) {
        let n = self.subscribed.len() as u64;
        let subs = &self.stats.subscriptions;
        if n > self.counted {
            subs.fetch_add(n - self.counted, Ordering::Relaxed);
        } else {
            subs.fetch_sub(self.counted - n, Ordering::Relaxed);
        }
        self.counted = n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wedged_only_when_an_acknowledged_probe_is_overdue() {
        let s = 1_000_000_000;
        let after = WEDGED_AFTER.as_micros() as u64;
        assert!(!wedged(0, s), "no probe acknowledged yet");
        assert!(!wedged(s + after, s), "just in time");
        assert!(wedged(s + after + 1, s));
        assert!(!wedged(s - 5, s), "seen after it was acknowledged");
    }
}
