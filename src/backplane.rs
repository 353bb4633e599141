//! The Redis backplane: several fanout nodes behind a load balancer, one channel namespace.
//!
//! One small interface to an external engine (Centrifugo's `Broker`): [`Backplane::publish`]
//! for what a loop accepted, [`Interest`] for the channels this node starts or stops needing,
//! and a handler for what arrives, which hands it to the loops through the same inbox as
//! every other producer. Two bridge threads own the Redis connections; no loop ever waits for
//! them:
//!
//! ```text
//!  loops ── Outgoing (bounded --redis-queue, try_send) ─▶ publisher thread ─ PUBLISH… ─▶ Redis
//!  directory ── Change (bounded, try_send) ─▶ subscriber thread ─ routes ─▶ a thread per shard
//!  loop 0 ◀── Command::Remote (inbox + waker) ── shard threads ◀── messages ──────────── Redis
//! ```
//!
//! - **Shards**: without a cluster there is one, `--redis`, and one connection of each kind.
//!   With `--redis-sharded` on a Redis Cluster (`CLUSTER SLOTS` answers), each primary is one:
//!   a subscriber connection and thread per primary, a publisher connection per primary, and
//!   each channel on the primary owning its slot ([`slots`]). A channel Redis stops serving on
//!   a shard (its slot moved) is routed again once the slot map is read again; a publish
//!   answered `MOVED` is retried once after that. `fanout_backplane_up` is 1 only while every
//!   shard's connections are up.
//! - **What is subscribed**: a channel while the directory has it (local subscribers, or
//!   history), batched up to [`SUBSCRIBE_BATCH`] names per command; it is unsubscribed
//!   [`UNSUBSCRIBE_DELAY`] after the directory forgets it, unless it came back (no flapping).
//!   When the loops' notices overflow their queue, the bridge re-reads the directory instead.
//! - **Publishing** is pipelined: the publisher takes what is queued (up to
//!   [`PUBLISH_BATCH`]) and sends it as one pipeline. A full queue drops the message, counts
//!   it and logs (at most once a second); local delivery never notices.
//! - **What arrives** is decoded ([`envelope`]), encoded once into a frame and given to loop 0
//!   like a `Handle::publish`: loop 0 delivers it, records it in history and hands the same
//!   frame to the other loops. A channel's one connection, one thread and one loop keep each origin's
//!   order. A node's own envelopes come back to it and are dropped.
//! - **Failures**: a lost connection is retried with a backoff from [`FIRST_BACKOFF`] doubling
//!   to [`MAX_BACKOFF`] (with jitter), every channel in use is subscribed again, and the state
//!   change is logged once; `fanout_backplane_up` shows it and `/healthz` stays 200, since
//!   local service goes on. A subscriber connection can also wedge (up for Redis, delivering
//!   nothing, as seen after failovers): the publisher sends this node a probe every second on
//!   a channel of its own, and when probes Redis acknowledged stop coming back for 3 s the
//!   subscriber connection is replaced.

use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::BuildHasher;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use redis::{ConnectionInfo, IntoConnectionInfo, ProtocolVersion};
use tracing::{info, warn};

use crate::broadcast::Broadcast;
use crate::config::Config;
use crate::directory::Directory;
use crate::inbox::Handle;

mod cluster;
pub mod envelope;
mod publisher;
mod shard;
pub mod slots;
mod stats;
mod subscriber;

pub use stats::{AGE_BUCKETS, BackplaneStats};

/// First wait before reconnecting to Redis.
pub const FIRST_BACKOFF: Duration = Duration::from_millis(50);
/// Longest wait between reconnection attempts: Redis back after a restart is used within
/// this, and a down Redis costs one connection attempt per node per 2 s.
pub const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// Channels per SUBSCRIBE or UNSUBSCRIBE command (Centrifugo's figure).
pub const SUBSCRIBE_BATCH: usize = 512;
/// How long a forgotten channel stays subscribed, in case it comes back at once (a client
/// reconnecting), so Redis is not asked to flap.
pub const UNSUBSCRIBE_DELAY: Duration = Duration::from_secs(1);
/// Messages per pipeline.
pub const PUBLISH_BATCH: usize = 1024;
/// Subscription notices that may wait for the bridge; past it, it re-reads the directory.
pub const INTEREST_CAPACITY: usize = 64 * 1024;
/// How long a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a command to Redis may take before the connection is deemed wedged and replaced.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the subscriber waits for a message before it looks at new subscription notices
/// (the delay before a first subscriber's channel is subscribed in Redis).
const POLL: Duration = Duration::from_millis(10);

/// The backplane settings, checked.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Where Redis is.
    info: ConnectionInfo,
    /// Prepended to every channel name.
    prefix: String,
    /// This node's id.
    node_id: Box<[u8]>,
    /// `--redis-queue`.
    queue: usize,
    /// SSUBSCRIBE/SPUBLISH.
    sharded: bool,
}

impl Settings {
    /// The backplane `config` asks for, if any; an error for a bad URL or node id.
    pub fn from_config(config: &Config) -> io::Result<Option<Settings>> {
        let Some(url) = &config.redis else {
            return Ok(None);
        };
        let invalid = |m: String| io::Error::new(io::ErrorKind::InvalidInput, m);
        let info = url
            .as_str()
            .into_connection_info()
            .map_err(|e| invalid(format!("--redis: {e}")))?;
        let node_id = match &config.node_id {
            Some(id) if (1..=envelope::MAX_NODE_ID).contains(&id.len()) => id.clone(),
            Some(id) => {
                return Err(invalid(format!(
                    "--node-id {id:?}: 1 to {} bytes",
                    envelope::MAX_NODE_ID
                )));
            }
            None => random_id(),
        };
        Ok(Some(Settings {
            info,
            prefix: config.redis_prefix.clone(),
            node_id: node_id.into_bytes().into(),
            queue: config.redis_queue.max(1),
            sharded: config.redis_sharded,
        }))
    }

    /// This node's id.
    pub fn node_id(&self) -> &str {
        std::str::from_utf8(&self.node_id).unwrap_or("?")
    }

    /// The Redis channel of a fanout channel.
    fn redis_channel(&self, name: &str) -> String {
        let mut s = String::with_capacity(self.prefix.len() + name.len());
        s.push_str(&self.prefix);
        s.push_str(name);
        s
    }

    /// `--redis`'s address (a Unix socket's path, port 0).
    fn seed(&self) -> slots::Addr {
        match self.info.addr() {
            redis::ConnectionAddr::Tcp(host, port) => (host.clone(), *port),
            redis::ConnectionAddr::TcpTls { host, port, .. } => (host.clone(), *port),
            other => (other.to_string(), 0),
        }
    }

    /// The node's own probe channel: `@` is not in a channel name, so no fanout channel
    /// collides with it.
    fn probe_channel(&self) -> String {
        format!("{}@probe:{}", self.prefix, self.node_id())
    }

    /// The connection settings, with RESP3 for the subscriber (its pushes carry sharded
    /// messages too) and whatever the URL says for the publisher.
    fn connection(&self, resp3: bool) -> ConnectionInfo {
        if !resp3 {
            return self.info.clone();
        }
        let redis = self.info.redis_settings().clone();
        (self.info.clone()).set_redis_settings(redis.set_protocol(ProtocolVersion::RESP3))
    }
}

/// 16 hex digits from the process's random hasher keys, the time and the process id.
fn random_id() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let h = RandomState::new().hash_one((nanos, std::process::id()));
    format!("{h:016x}")
}

/// Microseconds since the Unix epoch: an envelope's publish time.
pub fn unix_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// A channel the directory started or stopped having.
#[derive(Debug)]
enum Change {
    Subscribe(Box<str>),
    Unsubscribe(Box<str>),
}

/// The directory's way to tell the bridge which channels this node needs: notices through a
/// bounded queue, never blocking (the directory's lock is held).
#[derive(Debug)]
pub struct Interest {
    changes: Sender<Change>,
    /// Set when a notice did not fit: the bridge re-reads the whole directory.
    resync: Arc<AtomicBool>,
    stats: Arc<BackplaneStats>,
    warned: RateLimit,
}

impl Interest {
    /// The directory created (`true`) or forgot (`false`) channel `name`.
    pub fn changed(&self, name: &str, wanted: bool) {
        let change = match wanted {
            true => Change::Subscribe(name.into()),
            false => Change::Unsubscribe(name.into()),
        };
        if let Err(TrySendError::Full(_)) = self.changes.try_send(change) {
            self.resync.store(true, Ordering::Release);
            let n = self
                .stats
                .interest_overflows
                .fetch_add(1, Ordering::Relaxed)
                + 1;
            if self.warned.ready() {
                warn!(
                    overflows = n,
                    "backplane: subscription notices overflowed; re-reading the channel directory"
                );
            }
        }
    }
}

/// A message for Redis.
struct Outgoing {
    channel: Box<str>,
    frame: Broadcast,
    published_us: u64,
}

/// The loops' side of the backplane, in the node.
pub struct Backplane {
    out: Sender<Outgoing>,
    /// What the bridge counted.
    pub stats: Arc<BackplaneStats>,
    stop: Arc<AtomicBool>,
    warned: RateLimit,
    settings: Arc<Settings>,
    /// The bridge's ends, until [`Backplane::start`].
    parts: Mutex<Option<Parts>>,
}

impl fmt::Debug for Backplane {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Backplane")
            .field("node_id", &self.settings.node_id())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

struct Parts {
    out: Receiver<Outgoing>,
    changes: Receiver<Change>,
    resync: Arc<AtomicBool>,
}

impl Backplane {
    /// The loops' side and the directory's [`Interest`]; the bridge starts with
    /// [`Backplane::start`], once the loops can be reached.
    pub fn new(settings: Settings) -> (Backplane, Interest) {
        Backplane::with_interest_capacity(settings, INTEREST_CAPACITY)
    }

    fn with_interest_capacity(settings: Settings, capacity: usize) -> (Backplane, Interest) {
        let (out, out_rx) = crossbeam_channel::bounded(settings.queue);
        let (changes, changes_rx) = crossbeam_channel::bounded(capacity);
        let stats = Arc::new(BackplaneStats::default());
        let resync = Arc::new(AtomicBool::new(false));
        let interest = Interest {
            changes,
            resync: resync.clone(),
            stats: stats.clone(),
            warned: RateLimit::default(),
        };
        let backplane = Backplane {
            out,
            stats,
            stop: Arc::new(AtomicBool::new(false)),
            warned: RateLimit::default(),
            settings: Arc::new(settings),
            parts: Mutex::new(Some(Parts {
                out: out_rx,
                changes: changes_rx,
                resync,
            })),
        };
        (backplane, interest)
    }

    /// This node's id.
    pub fn node_id(&self) -> &str {
        self.settings.node_id()
    }

    /// Starts the bridge threads: the publisher, and the subscriber, which hands what arrives
    /// to the loops through `handle` and re-reads `directory` when notices overflowed.
    pub fn start(&self, handle: Handle, directory: Arc<Mutex<Directory>>) -> io::Result<()> {
        let Some(parts) = self.parts.lock().unwrap_or_else(|e| e.into_inner()).take() else {
            return Ok(());
        };
        info!(
            node_id = self.node_id(),
            sharded = self.settings.sharded,
            "backplane: starting"
        );
        let generation = Arc::new(AtomicU64::new(0));
        let publisher = publisher::Publisher {
            settings: self.settings.clone(),
            stats: self.stats.clone(),
            stop: self.stop.clone(),
            queue: parts.out,
            generation: generation.clone(),
        };
        let subscriber = subscriber::Subscriber::new(
            self.settings.clone(),
            self.stats.clone(),
            self.stop.clone(),
            parts.changes,
            parts.resync,
            directory,
            handle,
            generation,
        );
        std::thread::Builder::new()
            .name("fanout-redis-pub".into())
            .spawn(move || publisher.run())?;
        std::thread::Builder::new()
            .name("fanout-redis-sub".into())
            .spawn(move || subscriber.run())?;
        Ok(())
    }

    /// Queues a message a loop accepted for the other nodes. Never blocks: when the queue is
    /// full (Redis slow or down), the message is dropped and counted.
    pub fn publish(&self, channel: &str, frame: &Broadcast) {
        let msg = Outgoing {
            channel: channel.into(),
            frame: frame.clone(),
            published_us: unix_micros(),
        };
        if let Err(TrySendError::Full(_)) = self.out.try_send(msg) {
            let n = self.stats.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if self.warned.ready() {
                warn!(
                    dropped = n,
                    "backplane: --redis-queue is full (Redis slow or down); messages are not reaching the other nodes"
                );
            }
        }
    }
}

impl Drop for Backplane {
    /// The node is gone: the bridge threads stop within a poll interval.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

/// At most one log line a second from many threads.
#[derive(Debug)]
struct RateLimit {
    start: Instant,
    /// Milliseconds since `start` of the last line, plus one (0: never).
    last: AtomicU64,
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit {
            start: Instant::now(),
            last: AtomicU64::new(0),
        }
    }
}

impl RateLimit {
    /// Whether to log now.
    fn ready(&self) -> bool {
        let now = self.start.elapsed().as_millis() as u64 + 1;
        let last = self.last.load(Ordering::Relaxed);
        (last == 0 || now >= last + 1000)
            && (self.last)
                .compare_exchange(last, now, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
    }
}

/// Sleeps `backoff` (less up to a quarter of it, so nodes that lost Redis together do not
/// come back in lockstep) in slices of [`POLL`], returning early when `stop` is set; and
/// doubles it up to [`MAX_BACKOFF`]. `between` runs after each slice.
fn back_off(backoff: &mut Duration, stop: &AtomicBool, mut between: impl FnMut()) {
    let jitter = (unix_micros() % 1000) as u32;
    let wait = *backoff - *backoff / 4 * jitter / 1000;
    let until = Instant::now() + wait;
    while !stop.load(Ordering::Acquire) {
        let now = Instant::now();
        if now >= until {
            break;
        }
        std::thread::sleep((until - now).min(POLL));
        between();
    }
    *backoff = (*backoff * 2).min(MAX_BACKOFF);
}
