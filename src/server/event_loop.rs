//! One event loop: a `mio::Poll`, its listener, a `Slab` of connections, and the only place
//! that polls. With `--threads N` there are N of them, each on its own thread, sharing the
//! [`Node`].
//!
//! Each turn: poll; handle every event (accepts, reads, the inbox and other loops'
//! hand-offs); run due timers; let the hub queue the turn's messages (one batch per channel)
//! and hand other loops theirs (one send and at most one wake-up per loop); then flush every
//! connection that received output this turn, once. mio's rules are obeyed: accepts, the inbox
//! and writes are drained until `WouldBlock`/empty; a read shorter than the buffer means the
//! socket was drained (a new edge fires for later data); a socket that keeps delivering is put
//! back on a re-read list after its share of the turn ([`READS_PER_TURN`], [`WORK_PER_TURN`]),
//! so one flooding peer cannot starve the others; and spurious events are harmless because
//! every handler tolerates `WouldBlock` and checks the connection still exists.

use std::io;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token};
use slab::Slab;
use tracing::{debug, info};

use super::table::Table;
use crate::config;
use crate::connection::{Connection, Phase};
use crate::hub::{Hub, Subscription};
use crate::inbox::Inbox;
use crate::memory;
use crate::metrics::{LoopGauges, Stats};
use crate::node::{GAUGE_INTERVAL, Node, Snapshot};
use crate::proto::deflate::{Compressor, Inflater};
use crate::proto::session::Limits;
use crate::timers::Timers;

pub(super) const LISTENER: Token = Token(usize::MAX - 1);
pub(super) const WAKER: Token = Token(usize::MAX - 2);

/// Reads of one connection per turn before the others get a go (× 64 KiB).
pub const READS_PER_TURN: usize = 16;

/// Deliveries one connection's input may cause per turn before the others get a go: fairness
/// by the work a peer causes, not by the bytes it sends (three bytes to a 300-member channel
/// are 300 deliveries). The rest of what it sent waits, and is handled first next turn. High
/// enough that one publisher to 10 000 subscribers still gets 25 messages into each turn.
pub const WORK_PER_TURN: usize = 256 * 1024;

/// Inbox commands (and batches of other loops' hand-offs) handled per turn before sockets get
/// a go.
pub(super) const INBOX_BATCH: usize = 4096;

/// How often the loop looks for freed memory to give back (see [`crate::memory`]).
const TRIM_INTERVAL: Duration = Duration::from_secs(1);

/// How long accepting pauses after the process ran out of file descriptors.
pub(super) const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// One event loop and everything it owns.
pub(crate) struct Loop {
    /// Its place among the loops (0 also runs the process-wide chores: history expiry,
    /// giving memory back).
    pub(super) id: usize,
    pub(super) node: Arc<Node>,
    pub(super) poll: Poll,
    pub(super) listener: Option<TcpListener>,
    pub(super) config: config::Config,
    pub(super) limits: Limits,
    pub(super) inbox: Inbox,
    pub(super) inbox_backlog: bool,
    pub(super) conns: Slab<Connection>,
    /// This loop's channels, subscribers and the fan-out.
    pub(super) hub: Hub,
    pub(super) timers: Timers,
    /// Connections with output queued this turn: each is flushed once at the end of the turn.
    pub(super) dirty: Vec<usize>,
    /// Connections whose input was cut short by their share of a turn.
    pub(super) reread: Vec<usize>,
    /// One read buffer for every connection: idle connections hold none.
    pub(super) read_buf: Vec<u8>,
    /// One buffer for gathering small frames before a send (see `OutQueue::gather`).
    pub(super) scratch: Vec<u8>,
    /// Deliveries caused by the connection being handled now, this turn (see
    /// [`WORK_PER_TURN`]).
    pub(super) turn_work: usize,
    /// Bytes of the messages it published this turn: at half of `--max-backpressure` it
    /// waits for the next turn, so one turn never queues a subscriber more than its socket
    /// and its cap can take, and a reader that keeps up is never judged slow by a burst.
    pub(super) turn_bytes: usize,
    pub(super) next_id: u64,
    pub(super) now: Instant,
    pub(super) accept_paused_until: Option<Instant>,
    /// When to next see whether freed memory should go back to the system (see
    /// [`crate::memory`]; loop 0 only).
    pub(super) next_trim: Instant,
    /// When to next recompute the gauges this loop reports.
    pub(super) next_gauges: Instant,
    pub(super) gauges: LoopGauges,
    pub(super) shutdown_deadline: Option<Instant>,
    pub(super) stats: Stats,
    /// The loop's permessage-deflate inflater (`--deflate`), reset between messages: no
    /// connection keeps one.
    pub(super) inflater: Option<Inflater>,
}

impl Loop {
    /// Loop `id` of the node, with its poller, listener and inbox.
    pub(super) fn new(
        id: usize,
        node: Arc<Node>,
        poll: Poll,
        mut listener: TcpListener,
        inbox: Inbox,
    ) -> io::Result<Loop> {
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let config = node.config.clone();
        let limits = Limits {
            max_message: config.max_message,
            ping_interval: config.ping_interval,
            idle_timeout: config.idle_timeout,
            close_timeout: config.close_timeout,
        };
        let mut hub = Hub::new(
            id,
            node.loops(),
            node.directory.clone(),
            config.echo,
            config.max_backpressure,
            config.slow_consumer,
        );
        if config.deflate {
            hub = hub.with_compressor(Compressor::new(
                config.deflate_level,
                config.deflate_min_size,
            ));
        }
        let now = Instant::now();
        let node_deflate = config.deflate;
        Ok(Loop {
            id,
            node,
            poll,
            listener: Some(listener),
            config,
            limits,
            inbox,
            inbox_backlog: false,
            conns: Slab::new(),
            hub,
            timers: Timers::default(),
            dirty: Vec::new(),
            reread: Vec::new(),
            read_buf: vec![0; config::READ_BUFFER_BYTES],
            scratch: Vec::new(),
            turn_work: 0,
            turn_bytes: 0,
            next_id: 0,
            now,
            accept_paused_until: None,
            next_trim: now + TRIM_INTERVAL,
            next_gauges: now,
            gauges: LoopGauges::default(),
            shutdown_deadline: None,
            stats: Stats::default(),
            inflater: node_deflate.then(Inflater::new),
        })
    }

    /// Runs the loop until a shutdown completes (all its connections closed, or the shutdown
    /// timeout passed).
    pub(super) fn run(mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        loop {
            let timeout = self.poll_timeout();
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            self.now = Instant::now();
            for key in std::mem::take(&mut self.reread) {
                self.on_readable(key, false);
            }
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept(),
                    WAKER => {
                        self.inbox.rearm();
                        self.drain_inbox();
                    }
                    Token(key) => {
                        if event.is_readable() || event.is_read_closed() || event.is_error() {
                            self.on_readable(key, event.is_read_closed() || event.is_error());
                        }
                        if event.is_writable() {
                            if let Some(conn) = self.conns.get_mut(key) {
                                conn.write_blocked = false;
                            }
                            self.mark_dirty(key);
                        }
                    }
                }
            }
            if self.inbox_backlog {
                self.drain_inbox();
            }
            if self.accept_paused_until.is_some_and(|t| self.now >= t) {
                self.accept_paused_until = None;
                self.accept();
            }
            self.run_timers();
            if self.id == 0 {
                self.process_chores();
            }
            let (hub, mut table) = self.hub_and_table();
            hub.settle_all(&mut table);
            self.hand_off();
            self.report();
            self.flush_dirty();
            if let Some(deadline) = self.shutdown_deadline
                && (self.conns.is_empty() || self.now >= deadline)
            {
                let left = self.conns.len();
                let s = &self.stats;
                info!(
                    loop_id = self.id,
                    left,
                    accepted = s.accepted,
                    messages_in = s.messages_in,
                    deliveries = self.hub.stats.deliveries,
                    bytes_out = s.bytes_out,
                    "shut down"
                );
                return Ok(());
            }
        }
    }

    /// What one loop does for the whole process: history expiry, giving memory back.
    pub(super) fn process_chores(&mut self) {
        if self.config.history > 0 {
            self.node.directory().expire(self.now);
        }
        if self.now >= self.next_trim {
            self.next_trim = self.now + TRIM_INTERVAL;
            if memory::free_heap_bytes() > memory::TRIM_THRESHOLD && memory::give_back() {
                self.stats.memory_trims += 1;
            }
        }
    }

    /// Hands the other loops this turn's messages for their subscribers: one send, and at
    /// most one wake-up, per loop.
    pub(super) fn hand_off(&mut self) {
        for (target, batch) in self.hub.outgoing() {
            self.stats.handoffs += 1;
            self.stats.handed_off += batch.len() as u64;
            // A loop that stopped takes nothing more; its subscribers are closed already.
            let _ = self.node.links[target].hand_off(batch);
        }
    }

    /// This loop's counters and gauges, as they are now.
    pub(super) fn snapshot(&mut self) -> Snapshot {
        if self.now >= self.next_gauges {
            self.next_gauges = self.now + GAUGE_INTERVAL;
            self.gauges.queued_bytes = self.conns.iter().map(|(_, c)| c.out.held_bytes()).sum();
            self.gauges.deflate_connections = (self.conns.iter())
                .filter(|(_, c)| {
                    matches!(
                        c.phase,
                        Phase::Open {
                            deflate: Some(_),
                            ..
                        }
                    )
                })
                .count();
        }
        self.gauges.connections = self.conns.len();
        Snapshot {
            stats: self.stats,
            hub: self.hub.stats(),
            gauges: self.gauges,
        }
    }

    /// Reports this turn's counters to the node, before the turn's output leaves: whoever
    /// sees a message has a scrape that counts it. (With one loop, a scrape reads the loop's
    /// own counters.)
    pub(super) fn report(&mut self) {
        if self.node.loops() > 1 {
            let snapshot = self.snapshot();
            self.node.report(self.id, &snapshot);
        }
    }

    /// Whether the connection being handled has had its share of this turn: the deliveries
    /// its input caused, or the bytes it published (see [`WORK_PER_TURN`] and `turn_bytes`).
    pub(super) fn turn_used(&self) -> bool {
        self.turn_work >= WORK_PER_TURN || self.turn_bytes >= self.config.max_backpressure / 2
    }

    pub(super) fn poll_timeout(&self) -> Option<Duration> {
        if self.inbox_backlog || !self.reread.is_empty() {
            return Some(Duration::ZERO);
        }
        let chores = self.id == 0;
        let expiry = (chores && self.config.history > 0)
            .then(|| self.node.directory().next_expiry())
            .flatten();
        let next = [
            self.timers.next(),
            chores.then_some(self.next_trim),
            self.accept_paused_until,
            self.shutdown_deadline,
            expiry,
        ]
        .into_iter()
        .flatten()
        .min()?;
        // Round up so a timer is never polled for just before it is due.
        let now = Instant::now();
        Some(next.saturating_duration_since(now) + Duration::from_millis(1))
    }

    /// Queues bytes the loop itself produced (an HTTP response, a close frame) behind everything
    /// queued so far; no pong overtakes them.
    pub(super) fn enqueue(&mut self, key: usize, bytes: Vec<u8>) {
        if self.conns[key].enqueue_pinned(Arc::new(bytes)) {
            self.dirty.push(key);
        }
    }

    pub(super) fn enqueue_urgent(&mut self, key: usize, bytes: Vec<u8>) {
        if self.conns[key].enqueue_urgent(Arc::new(bytes)) {
            self.dirty.push(key);
        }
    }

    pub(super) fn enqueue_pong(&mut self, key: usize, bytes: Vec<u8>) {
        let cap = self.config.max_backpressure;
        if self.conns[key].enqueue_pong(Arc::new(bytes), cap, &mut self.stats) {
            self.dirty.push(key);
        }
    }

    pub(super) fn mark_dirty(&mut self, key: usize) {
        if let Some(conn) = self.conns.get_mut(key)
            && !std::mem::replace(&mut conn.dirty, true)
        {
            self.dirty.push(key);
        }
    }

    /// The hub and the connection table it delivers through, borrowed together.
    pub(super) fn hub_and_table(&mut self) -> (&mut Hub, Table<'_>) {
        let table = Table {
            conns: &mut self.conns,
            dirty: &mut self.dirty,
            timers: &mut self.timers,
            stats: &mut self.stats,
            node: &self.node,
            scratch: &mut self.scratch,
            now: self.now,
        };
        (&mut self.hub, table)
    }

    /// Queues what `key`'s channel got this turn, before the server closes it: a subscriber
    /// gets every message published before its close.
    pub(super) fn settle_channel_of(&mut self, key: usize) {
        if let Some(Phase::Open { sub, .. }) = self.conns.get(key).map(|c| &c.phase) {
            let channel = sub.channel;
            let (hub, mut table) = self.hub_and_table();
            hub.settle(channel, &mut table);
        }
    }

    pub(super) fn leave(&mut self, sub: Subscription) {
        let now = self.now;
        let (hub, mut table) = self.hub_and_table();
        if let Some(moved) = hub.unsubscribe(sub, now, &mut table)
            && let Some(Phase::Open { sub: s, .. }) =
                self.conns.get_mut(moved).map(|c| &mut c.phase)
        {
            s.slot = sub.slot;
        }
    }

    pub(super) fn remove(&mut self, key: usize) {
        if let Some(mut conn) = self.conns.try_remove(key) {
            self.node.connections.fetch_sub(1, Ordering::AcqRel);
            self.node.add_input(-(conn.input_counted as isize));
            conn.deregister(self.poll.registry());
            if let Phase::Open { sub, .. } = conn.phase {
                self.leave(sub);
            }
        }
    }

    pub(super) fn schedule(&mut self, key: usize) {
        if let Some(conn) = self.conns.get_mut(key) {
            self.timers.schedule(key, conn);
        }
    }

    pub(super) fn run_timers(&mut self) {
        while let Some(key) = self.timers.pop_due(self.now, &mut self.conns) {
            self.on_timer(key);
            self.count_input(key); // An idle close drops what it was receiving.
            self.schedule(key);
        }
    }

    pub(super) fn flush_dirty(&mut self) {
        let mut dirty = std::mem::take(&mut self.dirty);
        for &key in &dirty {
            let Some(conn) = self.conns.get_mut(key) else {
                continue;
            };
            if !std::mem::replace(&mut conn.dirty, false) {
                continue;
            }
            let before = conn.out.queued_bytes();
            let ok = conn
                .flush(&mut self.stats, &mut self.scratch)
                .and_then(|_| conn.update_interest(self.poll.registry(), Token(key)));
            if let Phase::Closing { deadline, .. } = &mut conn.phase
                && conn.out.queued_bytes() < before
            {
                // A closing connection is given up after `--close-timeout` without
                // progress, not while its last answers are still being read.
                *deadline = self.now + self.config.close_timeout;
            }
            if let Err(e) = ok {
                debug!(key, error = %e, "write failed");
                self.remove(key);
            } else if conn.is_done() {
                self.remove(key);
            } else if conn.read_paused && conn.out.held_bytes() <= self.config.max_backpressure {
                conn.read_paused = false;
                self.reread.push(key);
            }
        }
        dirty.clear();
        self.dirty = dirty;
    }
}
