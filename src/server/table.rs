//! The loop's connection table as the hub sees it ([`Outboxes`]): keys to queues, and the
//! slow-consumer close, which needs the connection's session, timers and input accounting.

use std::sync::Arc;
use std::time::Instant;

use slab::Slab;

use crate::broadcast::OutQueue;
use crate::connection::{Connection, Phase};
use crate::hub::Outboxes;
use crate::metrics::Stats;
use crate::node::Node;
use crate::proto::close;
use crate::proto::deflate::Agreed;
use crate::timers::Timers;

/// Borrowed parts of the loop the hub delivers through.
pub(super) struct Table<'a> {
    pub conns: &'a mut Slab<Connection>,
    pub dirty: &'a mut Vec<usize>,
    pub timers: &'a mut Timers,
    pub stats: &'a mut Stats,
    pub node: &'a Node,
    pub scratch: &'a mut Vec<u8>,
    pub now: Instant,
}

impl Outboxes for Table<'_> {
    fn open(&mut self, key: usize) -> Option<&mut OutQueue> {
        self.conns
            .get_mut(key)
            .filter(|c| c.is_open())
            .map(|c| &mut c.out)
    }

    fn queued(&mut self, key: usize) {
        if let Some(conn) = self.conns.get_mut(key)
            && !std::mem::replace(&mut conn.dirty, true)
        {
            self.dirty.push(key);
        }
    }

    fn deflate(&mut self, key: usize) -> Option<Agreed> {
        match self.conns.get(key).map(|c| &c.phase) {
            Some(Phase::Open { deflate, .. }) => *deflate,
            _ => None,
        }
    }

    fn flush(&mut self, key: usize) {
        if let Some(conn) = self.conns.get_mut(key) {
            if let Err(e) = conn.flush(self.stats, self.scratch) {
                // Removed at the turn's flush, which meets the same error.
                tracing::debug!(key, error = %e, "write failed");
            }
            // What is left waits for a writable event: the turn's flush registers for it.
            if !std::mem::replace(&mut conn.dirty, true) {
                self.dirty.push(key);
            }
        }
    }

    /// Closes `key` with `1008 slow consumer`: what it has not started is dropped at once
    /// (its memory bounded now), the close frame queued, its input given back.
    fn close_slow(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        self.stats.slow_closes += 1;
        conn.out.discard_unstarted();
        let close = conn.close(close::POLICY_VIOLATION, "slow consumer", self.now);
        self.node.add_input(conn.recount_input()); // Closing drops its input.
        if let Some(f) = close {
            self.stats.close_sent(&f);
            if conn.enqueue_pinned(Arc::new(f)) {
                self.dirty.push(key);
            }
        }
        self.timers.schedule(key, conn);
    }
}
