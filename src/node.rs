//! The node: what all loops of the process share, behind one `Arc`, read-mostly.
//!
//! - the configuration;
//! - the channel [`Directory`]: every channel, which loops have subscribers of it, history
//!   (one mutex, taken on joins, leaves, history and the API; never per delivery);
//! - the global budgets, which hold for the whole process whatever the number of loops:
//!   connections (`--max-connections`) and partly received input (`--max-input-memory`), as
//!   atomics each loop adds its share to (history's budget is in the directory);
//! - each loop's [`Link`], through which [`crate::Handle`]s and the other loops reach it;
//! - the TLS certificates (`--tls-cert`), which every loop reads at each accept and a reload
//!   replaces for all of them at once;
//! - the Redis backplane, if any (`--redis`);
//! - each loop's counters as of its last turn ([`Snapshot`]), which a `/metrics` scrape on any
//!   loop adds up.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::auth::AuthKeys;
use crate::backplane::Backplane;
use crate::config::Config;
use crate::directory::Directory;
use crate::hub::HubStats;
use crate::inbox::Link;
use crate::metrics::{LoopGauges, Stats};
use crate::tls::Certificates;

/// How often a loop recomputes the gauges it reports (its connections' queued bytes take a
/// walk over them).
pub const GAUGE_INTERVAL: Duration = Duration::from_millis(100);

/// Most event loops (`--threads`): a channel's loops are a 64-bit mask.
pub const MAX_LOOPS: usize = 64;

/// One loop's counters and gauges as of the end of its last turn.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Its loop counters.
    pub stats: Stats,
    /// Its hub's counters.
    pub hub: HubStats,
    /// Its gauges.
    pub gauges: LoopGauges,
}

/// What the loops of one process share: see the module doc.
#[derive(Debug)]
pub struct Node {
    /// The configuration.
    pub config: Config,
    /// The effective connection limit, all loops together.
    pub max_connections: usize,
    /// Channels, their loops, history.
    pub directory: Arc<Mutex<Directory>>,
    /// Open connections, all loops together.
    pub connections: AtomicUsize,
    /// Heap bytes of partly received input, all loops together.
    pub input_memory: AtomicUsize,
    /// Each loop's way in.
    pub links: Arc<[Link]>,
    /// The keys that verify connection tokens (`--auth-*`); `None`: no token needed.
    pub auth: Option<AuthKeys>,
    /// The certificate connections are accepted with (`--tls-cert`); `None`: plain TCP.
    pub tls: Option<Arc<Certificates>>,
    /// The Redis backplane (`--redis`): where loops send what they accept for other nodes.
    pub backplane: Option<Backplane>,
    snapshots: Vec<Mutex<Snapshot>>,
}

impl Node {
    /// A node for `links.len()` loops.
    pub fn new(
        config: Config,
        max_connections: usize,
        directory: Directory,
        links: Arc<[Link]>,
        auth: Option<AuthKeys>,
        tls: Option<Arc<Certificates>>,
        backplane: Option<Backplane>,
    ) -> Node {
        Node {
            auth,
            tls,
            backplane,
            config,
            max_connections,
            directory: Arc::new(Mutex::new(directory)),
            connections: AtomicUsize::new(0),
            input_memory: AtomicUsize::new(0),
            snapshots: (0..links.len()).map(|_| Mutex::default()).collect(),
            links,
        }
    }

    /// How many loops there are.
    pub fn loops(&self) -> usize {
        self.links.len()
    }

    /// The directory, locked. A loop that panicked while holding it has already taken the
    /// process down with it (see `Server::run`), so a poisoned lock is still consistent enough
    /// to read for shutting down.
    pub fn directory(&self) -> MutexGuard<'_, Directory> {
        self.directory.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Loop `loop_id` reports its counters at the end of a turn.
    pub fn report(&self, loop_id: usize, snapshot: &Snapshot) {
        let mut slot = self.snapshots[loop_id]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        *slot = *snapshot;
    }

    /// Every loop's counters added up, with `own` (the asking loop's, fresher than its report)
    /// in place of its report; and each loop's gauges.
    pub fn totals(&self, loop_id: usize, own: &Snapshot) -> (Stats, HubStats, Vec<LoopGauges>) {
        let (mut stats, mut hub, mut loops) = (Stats::default(), HubStats::default(), Vec::new());
        for (i, slot) in self.snapshots.iter().enumerate() {
            let s = if i == loop_id {
                *own
            } else {
                *slot.lock().unwrap_or_else(|e| e.into_inner())
            };
            stats.merge(&s.stats);
            hub.merge(&s.hub);
            loops.push(s.gauges);
        }
        (stats, hub, loops)
    }

    /// Adds `delta` (which may be negative) to the input-memory total; returns the new total.
    pub fn add_input(&self, delta: isize) -> usize {
        if delta >= 0 {
            self.input_memory
                .fetch_add(delta as usize, Ordering::AcqRel)
                + delta as usize
        } else {
            let d = delta.unsigned_abs();
            self.input_memory.fetch_sub(d, Ordering::AcqRel) - d
        }
    }
}
