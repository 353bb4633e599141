//! The subscriber thread: keeps this node's Redis subscriptions equal to the channels the
//! directory has, each on the shard serving it. It routes; a connection per shard
//! ([`super::shard`]) subscribes and hands what arrives to the loops.
//!
//! Without a cluster there is one shard, `--redis`. In a Redis Cluster (`--redis-sharded` and
//! `CLUSTER SLOTS` answers) each primary is one, and a channel goes to the primary owning its
//! slot. When a shard gives channels back (Redis unsubscribed them as their slot migrated, or
//! never confirmed them: `MOVED`), the slot map is read again, at most every
//! [`REFRESH_EVERY`], and the channels routed by it.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use tracing::{debug, info, warn};

use super::cluster::{self, Topology};
use super::shard::{FromShard, Shard, ToShard};
use super::slots::Addr;
use super::stats::Link;
use super::{
    BackplaneStats, Change, FIRST_BACKOFF, MAX_BACKOFF, POLL, Settings, UNSUBSCRIBE_DELAY,
};
use crate::directory::Directory;
use crate::inbox::Handle;

/// The least time between two readings of the slot map.
pub(super) const REFRESH_EVERY: Duration = Duration::from_millis(100);

/// A shard's connection, as the subscriber thread holds it.
struct ShardLink {
    commands: Sender<ToShard>,
    probe: Option<String>,
}

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
    /// Wanted channels not given to a shard yet (new, or given back by their shard).
    unrouted: Vec<Box<str>>,
    /// The shard each channel was given to.
    routed: HashMap<Box<str>, Addr>,
    /// Forgotten channels, unsubscribed when due unless wanted again.
    lingering: VecDeque<(Instant, Box<str>)>,
    /// What `--redis` is; `None` until it answered.
    topology: Option<Topology>,
    shards: HashMap<Addr, ShardLink>,
    events: Sender<FromShard>,
    from_shards: Receiver<FromShard>,
    /// When to read the slot map (again); `None`: no need.
    refresh_at: Option<Instant>,
    last_refresh: Option<Instant>,
    backoff: Duration,
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
        let (events, from_shards) = crossbeam_channel::unbounded();
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
            unrouted: Vec::new(),
            routed: HashMap::new(),
            lingering: VecDeque::new(),
            topology: None,
            shards: HashMap::new(),
            events,
            from_shards,
            refresh_at: Some(Instant::now()),
            last_refresh: None,
            backoff: FIRST_BACKOFF,
        }
    }

    pub(super) fn run(mut self) {
        while !self.stop.load(Ordering::Acquire) {
            self.take_changes();
            while let Ok(FromShard::Lost(addr, names)) = self.from_shards.try_recv() {
                debug!(host = %addr.0, port = addr.1, channels = names.len(),
                    "backplane: a shard gave channels back; reading the slot map again");
                for name in names {
                    if self.routed.get(&name) == Some(&addr) {
                        self.routed.remove(&name);
                        self.unrouted.push(name);
                    }
                }
                self.refresh_soon();
            }
            if self.refresh_at.is_some_and(|at| at <= Instant::now()) {
                self.refresh();
            }
            self.route();
            self.expire();
            crossbeam_channel::select! {
                recv(self.changes) -> c => match c {
                    Ok(c) => self.note(c),
                    Err(_) => std::thread::sleep(POLL),
                },
                default(POLL) => {}
            }
        }
    }

    /// Reads the slot map now, or soon after the last time.
    fn refresh_soon(&mut self) {
        let at = match self.last_refresh {
            Some(last) => (last + REFRESH_EVERY).max(Instant::now()),
            None => Instant::now(),
        };
        self.refresh_at = Some(self.refresh_at.map_or(at, |t| t.min(at)));
    }

    fn refresh(&mut self) {
        self.last_refresh = Some(Instant::now());
        let known: Vec<Addr> = self.shards.keys().cloned().collect();
        match cluster::discover(&self.settings, &known) {
            Ok(topology) => {
                self.backoff = FIRST_BACKOFF;
                self.refresh_at = None;
                if self.topology.as_ref() != Some(&topology) {
                    self.apply(topology);
                }
            }
            Err(e) => {
                debug!(error = %e, "backplane: cannot read the slot map");
                if self.topology.is_none() {
                    self.stats.set(Link::SlotMap, false, Some(&e));
                }
                self.refresh_at = Some(Instant::now() + self.backoff);
                self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
            }
        }
    }

    /// Uses a new topology: a connection per shard, every channel on the shard serving it.
    fn apply(&mut self, topology: Topology) {
        let addrs = topology.shards(&self.settings);
        if let Topology::Cluster(_) = &topology
            && !matches!(self.topology, Some(Topology::Cluster(_)))
        {
            info!(
                shards = addrs.len(),
                "backplane: Redis Cluster: a subscriber connection per primary"
            );
        }
        self.stats
            .shards
            .store(addrs.len() as u64, Ordering::Relaxed);
        // A shard no longer listed loses its sender, and its connection ends.
        self.shards.retain(|a, _| addrs.contains(a));
        for addr in addrs {
            let probe = topology.probe_channel(&self.settings, &addr);
            if let Some(link) = self.shards.get_mut(&addr) {
                if link.probe != probe {
                    link.probe = probe.clone();
                    let _ = link.commands.send(ToShard::Probe(probe));
                }
                continue;
            }
            let (commands, rx) = crossbeam_channel::unbounded();
            let shard = Shard::new(
                addr.clone(),
                probe.clone(),
                self.settings.clone(),
                self.stats.clone(),
                self.stop.clone(),
                rx,
                self.events.clone(),
                self.handle.clone(),
                self.generation.clone(),
            );
            let spawned = std::thread::Builder::new()
                .name("fanout-redis-sub".into())
                .spawn(move || shard.run());
            match spawned {
                Ok(_) => {
                    self.shards.insert(addr, ShardLink { commands, probe });
                }
                Err(e) => {
                    warn!(error = %e, "backplane: cannot start a subscriber thread");
                    self.refresh_at = Some(Instant::now() + MAX_BACKOFF);
                }
            }
        }
        let mut moved = Vec::new();
        for (name, addr) in &self.routed {
            let owner = topology.owner(&self.settings, &self.settings.redis_channel(name));
            if owner.as_ref() != Some(addr) {
                if let Some(link) = self.shards.get(addr) {
                    let _ = link.commands.send(ToShard::Forget(name.clone()));
                }
                moved.push(name.clone());
            }
        }
        for name in moved {
            self.routed.remove(&name);
            self.unrouted.push(name);
        }
        self.topology = Some(topology);
    }

    /// Gives each unrouted channel to the shard serving it.
    fn route(&mut self) {
        let Some(topology) = &self.topology else {
            return;
        };
        let mut later = Vec::new();
        for name in std::mem::take(&mut self.unrouted) {
            if !self.wanted.contains(&name) || self.routed.contains_key(&name) {
                continue;
            }
            let owner = topology.owner(&self.settings, &self.settings.redis_channel(&name));
            match owner.and_then(|a| self.shards.get(&a).map(|l| (a, l))) {
                Some((addr, link)) => {
                    let _ = link.commands.send(ToShard::Subscribe(name.clone()));
                    self.routed.insert(name, addr);
                }
                // A slot nobody serves now (a cluster being resharded): ask again later.
                None => later.push(name),
            }
        }
        if !later.is_empty() {
            self.unrouted = later;
            if self.refresh_at.is_none() {
                self.refresh_at = Some(Instant::now() + MAX_BACKOFF);
            }
        }
    }

    /// Unsubscribes the forgotten channels whose delay has passed.
    fn expire(&mut self) {
        let now = Instant::now();
        while let Some((at, _)) = self.lingering.front()
            && *at <= now
        {
            let (_, name) = self.lingering.pop_front().expect("a front");
            if !self.wanted.contains(&name)
                && let Some(addr) = self.routed.remove(&name)
                && let Some(link) = self.shards.get(&addr)
            {
                let _ = link.commands.send(ToShard::Unsubscribe(name));
            }
        }
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
            self.unrouted = (self.wanted.iter())
                .filter(|n| !self.routed.contains_key(*n))
                .cloned()
                .collect();
            let now = Instant::now();
            for name in self.routed.keys() {
                if !self.wanted.contains(name) {
                    self.lingering.push_back((now, name.clone()));
                }
            }
        }
    }

    fn note(&mut self, change: Change) {
        match change {
            Change::Subscribe(name) => {
                if !self.routed.contains_key(&name) {
                    self.unrouted.push(name.clone());
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
        assert_eq!(sorted(sub.unrouted.drain(..)), ["a", "b", "c", "d"]);
        // As if subscribed; then three leave at once, one notice too many.
        let seed = sub.settings.seed();
        sub.routed = (sub.wanted.iter())
            .map(|n| (n.clone(), seed.clone()))
            .collect();
        for s in &shared[..3] {
            directory.lock().unwrap().leave(s, 0, true, now);
        }
        assert_eq!(overflows.load(Ordering::Relaxed), 3);
        sub.take_changes();
        assert_eq!(sorted(sub.wanted.iter().cloned()), ["d"]);
        let lingering = sub.lingering.iter().map(|(_, n)| n.clone());
        assert_eq!(sorted(lingering), ["a", "b", "c"], "unsubscribed when due");
        assert!(sub.unrouted.is_empty());
    }
}
