//! The publisher thread: takes what the loops queued and publishes it to Redis in pipelines,
//! one per shard, each message on the shard serving its channel.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use redis::{Connection, RedisError, RedisResult, Value};
use tracing::debug;

use crate::proto::frame::OpCode;

use super::cluster::{self, Topology, connect};
use super::slots::Addr;
use super::stats::Link;
use super::{
    BackplaneStats, FIRST_BACKOFF, MAX_BACKOFF, Outgoing, PUBLISH_BATCH, Settings, back_off,
    envelope,
};

/// How often an idle publisher looks at the stop flag and the subscriber's reconnections.
const IDLE: Duration = Duration::from_millis(100);

/// How often the publisher sends this node a probe through each shard, so the subscriber sees
/// when a connection stopped delivering (see `shard::WEDGED_AFTER`).
const PROBE_EVERY: Duration = Duration::from_secs(1);

pub(super) struct Publisher {
    pub(super) settings: Arc<Settings>,
    pub(super) stats: Arc<BackplaneStats>,
    pub(super) stop: Arc<AtomicBool>,
    pub(super) queue: Receiver<Outgoing>,
    /// Bumped by a subscriber connection each time it connects: Redis may have restarted, so
    /// the connections are replaced before they are used (rather than losing a pipeline).
    pub(super) generation: Arc<AtomicU64>,
}

/// The connection to one shard.
struct ShardCon {
    con: Option<Connection>,
    retry_at: Instant,
    backoff: Duration,
}

/// The publisher's view of Redis.
struct State {
    topology: Option<Topology>,
    links: HashMap<Addr, ShardCon>,
    /// When to read the slot map (again).
    refresh_at: Option<Instant>,
    backoff: Duration,
}

/// How one shard's pipeline went.
#[derive(Default)]
struct Sent {
    published: u64,
    dropped: u64,
    /// Indices of the messages refused with `MOVED` or `ASK`, in order.
    moved: Vec<usize>,
    /// The connection failed: it is replaced.
    error: Option<RedisError>,
}

impl Publisher {
    pub(super) fn run(self) {
        let mut state = State {
            topology: None,
            links: HashMap::new(),
            refresh_at: Some(Instant::now()),
            backoff: FIRST_BACKOFF,
        };
        let mut seen = self.generation.load(Ordering::Acquire);
        let mut backoff = FIRST_BACKOFF;
        let mut batch = Vec::with_capacity(PUBLISH_BATCH);
        let mut buf = Vec::new();
        let mut next_probe = Instant::now();
        while !self.stop.load(Ordering::Acquire) {
            let generation = self.generation.load(Ordering::Acquire);
            if generation != seen {
                // A subscriber connection was made: Redis may have restarted, so these
                // connections are replaced before a batch goes out on them.
                seen = generation;
                for link in state.links.values_mut() {
                    link.con = None;
                    link.retry_at = Instant::now();
                }
            }
            if !self.connect(&mut state) {
                // The queue fills meanwhile, up to --redis-queue; then loops drop.
                back_off(&mut backoff, &self.stop, || {});
                continue;
            }
            backoff = FIRST_BACKOFF;
            if Instant::now() >= next_probe {
                next_probe = Instant::now() + PROBE_EVERY;
                self.probe(&mut state, &mut buf);
            }
            match self.queue.recv_timeout(IDLE) {
                Ok(first) => batch.push(first),
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => return,
            }
            while batch.len() < PUBLISH_BATCH {
                match self.queue.try_recv() {
                    Ok(m) => batch.push(m),
                    Err(_) => break,
                }
            }
            let generation = self.generation.load(Ordering::Acquire);
            if generation != seen {
                // A subscriber connection was made while this waited: Redis may have
                // restarted, so the connections are replaced before the batch goes out.
                seen = generation;
                for link in state.links.values_mut() {
                    link.con = None;
                    link.retry_at = Instant::now();
                }
                self.connect(&mut state);
            }
            let moved = self.publish(&mut state, &batch, None, &mut buf);
            if !moved.is_empty() {
                // The slot map changed: read it again and try those messages once more.
                self.refresh(&mut state);
                self.connect(&mut state);
                let again = self.publish(&mut state, &batch, Some(&moved), &mut buf);
                (self.stats.dropped).fetch_add(again.len() as u64, Ordering::Relaxed);
            }
            batch.clear();
        }
    }

    /// Reads the slot map when due and connects to the shards whose retry time came; whether
    /// any connection is up.
    fn connect(&self, state: &mut State) -> bool {
        if state.refresh_at.is_some_and(|at| at <= Instant::now()) {
            self.refresh(state);
        }
        let Some(topology) = &state.topology else {
            return false;
        };
        let mut error = None;
        for addr in topology.shards(&self.settings) {
            let link = state.links.entry(addr.clone()).or_insert(ShardCon {
                con: None,
                retry_at: Instant::now(),
                backoff: FIRST_BACKOFF,
            });
            if link.con.is_some() || link.retry_at > Instant::now() {
                continue;
            }
            match connect(&self.settings, &addr, false) {
                Ok(c) => {
                    link.con = Some(c);
                    link.backoff = FIRST_BACKOFF;
                }
                Err(e) => {
                    debug!(host = %addr.0, port = addr.1, error = %e,
                        "backplane: publisher cannot connect");
                    link.retry_at = Instant::now() + link.backoff;
                    link.backoff = (link.backoff * 2).min(MAX_BACKOFF);
                    error = Some(e);
                }
            }
        }
        let all = state.links.values().all(|l| l.con.is_some());
        let any = state.links.values().any(|l| l.con.is_some());
        match (all, error) {
            (true, _) => self.stats.set(Link::Publisher, true, None),
            (false, Some(e)) => self.stats.set(Link::Publisher, false, Some(&e)),
            (false, None) => self.stats.set(Link::Publisher, false, None),
        }
        any
    }

    /// Asks what `--redis` is (again); keeps the connections to the shards still listed.
    fn refresh(&self, state: &mut State) {
        let known: Vec<Addr> = state.links.keys().cloned().collect();
        match cluster::discover(&self.settings, &known) {
            Ok(topology) => {
                let shards = topology.shards(&self.settings);
                state.links.retain(|a, _| shards.contains(a));
                state.topology = Some(topology);
                state.refresh_at = None;
                state.backoff = FIRST_BACKOFF;
            }
            Err(e) => {
                debug!(error = %e, "backplane: publisher cannot read the slot map");
                if state.topology.is_none() {
                    self.stats.set(Link::Publisher, false, Some(&e));
                }
                state.refresh_at = Some(Instant::now() + state.backoff);
                state.backoff = (state.backoff * 2).min(MAX_BACKOFF);
            }
        }
    }

    /// Publishes a probe (an empty envelope) to this node's probe channel on each shard.
    fn probe(&self, state: &mut State, buf: &mut Vec<u8>) {
        let Some(topology) = &state.topology else {
            return;
        };
        let command = self.command();
        for (addr, link) in &mut state.links {
            let (Some(con), Some(channel)) = (
                link.con.as_mut(),
                topology.probe_channel(&self.settings, addr),
            ) else {
                continue;
            };
            let now = super::unix_micros();
            buf.clear();
            envelope::encode_into(buf, &self.settings.node_id, OpCode::Binary, now, b"");
            let sent: RedisResult<()> = redis::cmd(command).arg(&channel).arg(&buf[..]).exec(con);
            match sent {
                Ok(()) => self.stats.probe_acked(&channel, now),
                Err(e) if e.redirect_node().is_some() => state.refresh_at = Some(Instant::now()),
                Err(e) => {
                    debug!(error = %e, "backplane: probe failed");
                    link.con = None;
                }
            }
        }
    }

    fn command(&self) -> &'static str {
        if self.settings.sharded {
            "SPUBLISH"
        } else {
            "PUBLISH"
        }
    }

    /// Publishes `batch` (or only the messages at `only`), a pipeline per shard; counts what
    /// was published and dropped, and returns the indices of the messages refused with
    /// `MOVED`, not counted yet.
    fn publish(
        &self,
        state: &mut State,
        batch: &[Outgoing],
        only: Option<&[usize]>,
        buf: &mut Vec<u8>,
    ) -> Vec<usize> {
        let mut moved = Vec::new();
        let Some(topology) = &state.topology else {
            let n = only.map_or(batch.len(), <[usize]>::len) as u64;
            self.stats.dropped.fetch_add(n, Ordering::Relaxed);
            return moved;
        };
        let mut groups: HashMap<Addr, Vec<usize>> = HashMap::new();
        let mut unserved = 0;
        let all: Vec<usize>;
        let indices = match only {
            Some(only) => only,
            None => {
                all = (0..batch.len()).collect();
                &all
            }
        };
        for &i in indices {
            let channel = self.settings.redis_channel(&batch[i].channel);
            match topology.owner(&self.settings, &channel) {
                Some(addr) => groups.entry(addr).or_default().push(i),
                None => unserved += 1,
            }
        }
        if unserved > 0 {
            // A slot nobody serves now (a cluster being resharded).
            self.stats.dropped.fetch_add(unserved, Ordering::Relaxed);
            state.refresh_at.get_or_insert(Instant::now());
        }
        for (addr, group) in groups {
            let link = state.links.get_mut(&addr);
            let Some(con) = link.and_then(|l| l.con.as_mut()) else {
                (self.stats.dropped).fetch_add(group.len() as u64, Ordering::Relaxed);
                continue;
            };
            let sent = self.send(con, batch, &group, buf);
            self.stats
                .published
                .fetch_add(sent.published, Ordering::Relaxed);
            self.stats
                .dropped
                .fetch_add(sent.dropped, Ordering::Relaxed);
            moved.extend(sent.moved);
            if let Some(e) = sent.error {
                // Some of it may have reached Redis: sending it again could deliver it
                // twice, so it is counted as dropped and the connection replaced.
                debug!(host = %addr.0, port = addr.1, error = %e, "backplane: publish failed");
                self.stats.set(Link::Publisher, false, Some(&e));
                if let Some(link) = state.links.get_mut(&addr) {
                    link.con = None;
                }
            }
        }
        moved.sort_unstable();
        moved
    }

    /// One pipeline of PUBLISH (or SPUBLISH) commands, one envelope each, and their answers.
    fn send(
        &self,
        con: &mut Connection,
        batch: &[Outgoing],
        group: &[usize],
        buf: &mut Vec<u8>,
    ) -> Sent {
        let node = &self.settings.node_id;
        let mut pipe = redis::pipe();
        let mut sent = Vec::with_capacity(group.len());
        for &i in group {
            let m = &batch[i];
            let Some((opcode, payload)) = m.frame.message() else {
                continue;
            };
            buf.clear();
            envelope::encode_into(buf, node, opcode, m.published_us, payload);
            pipe.cmd(self.command())
                .arg(self.settings.redis_channel(&m.channel))
                .arg(&buf[..]);
            sent.push(i);
        }
        let mut out = Sent::default();
        if let Err(e) = con.send_packed_command(&pipe.get_packed_pipeline()) {
            out.dropped = sent.len() as u64;
            out.error = Some(e);
            return out;
        }
        for (k, &i) in sent.iter().enumerate() {
            match con.recv_response() {
                Ok(Value::ServerError(e)) => {
                    let e = RedisError::from(e);
                    if e.redirect_node().is_some() {
                        out.moved.push(i);
                    } else {
                        out.dropped += 1;
                    }
                }
                Ok(_) => out.published += 1,
                Err(e) => {
                    out.dropped += (sent.len() - k) as u64;
                    out.error = Some(e);
                    return out;
                }
            }
        }
        out
    }
}
