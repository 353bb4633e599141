//! The subscriber thread: keeps this node's Redis subscriptions equal to the channels the
//! directory has, and hands what arrives to the loops.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use redis::{Client, Connection, PushKind, RedisError, RedisResult, Value};
use tracing::debug;

use super::stats::Link;
use super::{
    BackplaneStats, CONNECT_TIMEOUT, Change, FIRST_BACKOFF, IO_TIMEOUT, POLL, SUBSCRIBE_BATCH,
    Settings, UNSUBSCRIBE_DELAY, back_off, envelope, unix_micros,
};
use crate::broadcast;
use crate::directory::Directory;
use crate::inbox::Handle;
use crate::proto::handshake::is_channel;

pub(super) struct Subscriber {
    settings: Arc<Settings>,
    stats: Arc<BackplaneStats>,
    stop: Arc<AtomicBool>,
    changes: Receiver<Change>,
    resync: Arc<AtomicBool>,
    directory: Arc<Mutex<Directory>>,
    handle: Handle,
    generation: Arc<AtomicU64>,
    /// The channels the directory has.
    wanted: HashSet<Box<str>>,
    /// The channels subscribed on the current connection.
    subscribed: HashSet<Box<str>>,
    /// Wanted, not subscribed yet.
    to_subscribe: Vec<Box<str>>,
    /// Forgotten channels, unsubscribed when due unless wanted again.
    lingering: VecDeque<(Instant, Box<str>)>,
    /// Publish time of the newest probe of ours that came back (or when connected).
    probe_seen_us: u64,
}

/// Why the subscriber stopped serving a connection.
enum Failure {
    /// The loops have stopped: nothing more to deliver to.
    Stopped,
    /// The connection failed.
    Redis(RedisError),
    /// Probes the publisher got through to Redis stopped coming back.
    Wedged,
}

impl From<RedisError> for Failure {
    fn from(e: RedisError) -> Self {
        Failure::Redis(e)
    }
}

/// How long probes acknowledged by Redis may go unseen before the subscriber connection is
/// deemed wedged (up for Redis, delivering nothing: seen after failovers) and replaced.
pub(super) const WEDGED_AFTER: Duration = Duration::from_secs(3);

/// Whether a probe published at `acked_us` (acknowledged by Redis) should have arrived, when
/// the newest one seen was published at `seen_us` (or the connection was made then).
fn wedged(acked_us: u64, seen_us: u64) -> bool {
    acked_us > seen_us + WEDGED_AFTER.as_micros() as u64
}

impl Subscriber {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        settings: Arc<Settings>,
        stats: Arc<BackplaneStats>,
        stop: Arc<AtomicBool>,
        changes: Receiver<Change>,
        resync: Arc<AtomicBool>,
        directory: Arc<Mutex<Directory>>,
        handle: Handle,
        generation: Arc<AtomicU64>,
    ) -> Self {
        Subscriber {
            settings,
            stats,
            stop,
            changes,
            resync,
            directory,
            handle,
            generation,
            wanted: HashSet::new(),
            subscribed: HashSet::new(),
            to_subscribe: Vec::new(),
            lingering: VecDeque::new(),
            probe_seen_us: 0,
        }
    }

    pub(super) fn run(mut self) {
        let mut backoff = FIRST_BACKOFF;
        while !self.stop.load(Ordering::Acquire) {
            self.take_changes();
            let error = match self.connect() {
                Ok(con) => {
                    backoff = FIRST_BACKOFF;
                    match self.serve(con) {
                        Ok(()) | Err(Failure::Stopped) => return,
                        Err(Failure::Redis(e)) => e.to_string(),
                        Err(Failure::Wedged) => {
                            self.stats.wedged.fetch_add(1, Ordering::Relaxed);
                            format!("no probe came back in {WEDGED_AFTER:?}: connection wedged")
                        }
                    }
                }
                Err(e) => e.to_string(),
            };
            debug!(error = %error, "backplane: subscriber connection failed");
            self.subscribed.clear();
            self.stats.subscriptions.store(0, Ordering::Relaxed);
            self.stats.set(Link::Subscriber, false, Some(&error));
            let mut changes = Vec::new();
            back_off(&mut backoff, &self.stop, || {
                changes.extend(self.changes.try_iter());
            });
            for c in changes {
                self.note(c);
            }
        }
    }

    fn connect(&self) -> RedisResult<Connection> {
        let client = Client::open(self.settings.connection(true))?;
        let con = client.get_connection_with_timeout(CONNECT_TIMEOUT)?;
        con.set_write_timeout(Some(IO_TIMEOUT))?;
        con.set_read_timeout(Some(POLL))?;
        Ok(con)
    }

    /// Subscribes this node's probe channel and every wanted channel on a new connection,
    /// then keeps the subscriptions up to date and hands over what arrives, until the
    /// connection fails or the node stops (`Ok`).
    fn serve(&mut self, mut con: Connection) -> Result<(), Failure> {
        self.subscribed.clear();
        self.lingering.clear();
        self.to_subscribe = self.wanted.iter().cloned().collect();
        let sub = if self.settings.sharded {
            "SSUBSCRIBE"
        } else {
            "SUBSCRIBE"
        };
        let probe = self.settings.probe_channel();
        redis::cmd(sub)
            .arg(&probe)
            .set_no_response(true)
            .exec(&mut con)?;
        self.update(&mut con)?;
        self.probe_seen_us = unix_micros();
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.stats.set(Link::Subscriber, true, None);
        let message = match self.settings.sharded {
            true => PushKind::SMessage,
            false => PushKind::Message,
        };
        while !self.stop.load(Ordering::Acquire) {
            self.take_changes();
            self.update(&mut con)?;
            match con.recv_response() {
                Ok(Value::Push { kind, data }) if kind == message => {
                    if let [Value::BulkString(channel), Value::BulkString(payload)] = &data[..]
                        && *channel == probe.as_bytes()
                    {
                        if let Ok(e) = envelope::decode(payload) {
                            self.probe_seen_us = self.probe_seen_us.max(e.published_us);
                        }
                        continue;
                    }
                    self.arrived(data)?
                }
                Ok(Value::Push {
                    kind: PushKind::SUnsubscribe,
                    data,
                }) => {
                    // A sharded channel whose slot moved is unsubscribed by the server:
                    // subscribe it again (or this confirms our own SUNSUBSCRIBE).
                    if let Some(Value::BulkString(name)) = data.first()
                        && let Some(name) = self.fanout_name(name)
                        && self.wanted.contains(name)
                        && self.subscribed.remove(name)
                    {
                        self.to_subscribe.push(name.into());
                    }
                }
                Ok(_) => {} // Subscription confirmations.
                Err(e) if e.is_timeout() => {
                    // Nothing waiting on the socket (so not merely behind on reading).
                    let acked = self.stats.probe_acked_us.load(Ordering::Acquire);
                    if wedged(acked, self.probe_seen_us) {
                        return Err(Failure::Wedged);
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
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

    /// Takes the directory's notices (or, after they overflowed, the directory itself).
    fn take_changes(&mut self) {
        for _ in 0..super::INTEREST_CAPACITY {
            match self.changes.try_recv() {
                Ok(c) => self.note(c),
                Err(_) => break,
            }
        }
        if self.resync.swap(false, Ordering::AcqRel) {
            let names = (self.directory.lock().unwrap_or_else(|e| e.into_inner())).names();
            self.wanted = names.into_iter().collect();
            self.to_subscribe = (self.wanted.iter())
                .filter(|n| !self.subscribed.contains(*n))
                .cloned()
                .collect();
            let now = Instant::now();
            for name in &self.subscribed {
                if !self.wanted.contains(name) {
                    self.lingering.push_back((now, name.clone()));
                }
            }
        }
    }

    fn note(&mut self, change: Change) {
        match change {
            Change::Subscribe(name) => {
                if !self.subscribed.contains(&name) {
                    self.to_subscribe.push(name.clone());
                }
                self.wanted.insert(name);
            }
            Change::Unsubscribe(name) => {
                self.wanted.remove(&name);
                let at = Instant::now() + UNSUBSCRIBE_DELAY;
                self.lingering.push_back((at, name));
            }
        }
    }

    /// Sends the (un)subscriptions due, batched, without waiting for their confirmations.
    fn update(&mut self, con: &mut Connection) -> RedisResult<()> {
        let (sub, unsub) = match self.settings.sharded {
            true => ("SSUBSCRIBE", "SUNSUBSCRIBE"),
            false => ("SUBSCRIBE", "UNSUBSCRIBE"),
        };
        let mut names = std::mem::take(&mut self.to_subscribe);
        names.retain(|n| self.wanted.contains(n) && !self.subscribed.contains(n));
        names.sort_unstable();
        names.dedup();
        self.send(con, sub, &names)?;
        self.subscribed.extend(names);
        let now = Instant::now();
        let mut gone = Vec::new();
        while let Some((at, _)) = self.lingering.front()
            && *at <= now
        {
            let (_, name) = self.lingering.pop_front().expect("a front");
            if !self.wanted.contains(&name) && self.subscribed.remove(&name) {
                gone.push(name);
            }
        }
        self.send(con, unsub, &gone)?;
        (self.stats.subscriptions).store(self.subscribed.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    fn send(&self, con: &mut Connection, command: &str, names: &[Box<str>]) -> RedisResult<()> {
        for chunk in names.chunks(SUBSCRIBE_BATCH) {
            let mut cmd = redis::cmd(command);
            for name in chunk {
                cmd.arg(self.settings.redis_channel(name));
            }
            cmd.set_no_response(true).exec(con)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backplane::Backplane;
    use crate::config::Config;

    /// A subscriber (never connected) over a directory whose notices overflow past 2.
    fn subscriber() -> (Subscriber, Arc<Mutex<Directory>>, Backplane, mio::Poll) {
        let config = Config {
            redis: Some("redis://127.0.0.1:1/".into()),
            node_id: Some("t".into()),
            ..Config::default()
        };
        let settings = Settings::from_config(&config).unwrap().unwrap();
        let (backplane, interest) = Backplane::with_interest_capacity(settings, 2);
        let directory = Directory::default().with_interest(Some(interest));
        let directory = Arc::new(Mutex::new(directory));
        let parts = backplane.parts.lock().unwrap().take().unwrap();
        let poll = mio::Poll::new().unwrap();
        let waker = mio::Waker::new(poll.registry(), mio::Token(0)).unwrap();
        let (link, _inbox) = crate::inbox::channel(waker);
        let sub = Subscriber::new(
            backplane.settings.clone(),
            backplane.stats.clone(),
            backplane.stop.clone(),
            parts.changes,
            parts.resync,
            directory.clone(),
            Handle::new(Arc::from([link])),
            Arc::default(),
        );
        (sub, directory, backplane, poll)
    }

    fn sorted(names: impl IntoIterator<Item = Box<str>>) -> Vec<String> {
        let mut v: Vec<String> = names.into_iter().map(String::from).collect();
        v.sort();
        v.dedup();
        v
    }

    #[test]
    fn overflowed_notices_make_the_bridge_reread_the_directory() {
        let (mut sub, directory, backplane, _poll) = subscriber();
        let now = Instant::now();
        let mut shared = Vec::new();
        for name in ["a", "b", "c", "d"] {
            shared.push(directory.lock().unwrap().join(name, 0, true).unwrap());
        }
        let overflows = &backplane.stats.interest_overflows;
        assert_eq!(overflows.load(Ordering::Relaxed), 2, "two notices fit");
        sub.take_changes();
        assert_eq!(sorted(sub.wanted.iter().cloned()), ["a", "b", "c", "d"]);
        assert_eq!(sorted(sub.to_subscribe.drain(..)), ["a", "b", "c", "d"]);
        // As if subscribed; then three leave at once, one notice too many.
        sub.subscribed = sub.wanted.clone();
        for s in &shared[..3] {
            directory.lock().unwrap().leave(s, 0, true, now);
        }
        assert_eq!(overflows.load(Ordering::Relaxed), 3);
        sub.take_changes();
        assert_eq!(sorted(sub.wanted.iter().cloned()), ["d"]);
        let lingering = sub.lingering.iter().map(|(_, n)| n.clone());
        assert_eq!(sorted(lingering), ["a", "b", "c"], "unsubscribed when due");
        assert!(sub.to_subscribe.is_empty());
    }

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
