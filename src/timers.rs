//! The deadline queue behind every per-connection timer (handshake timeout, pings, idle
//! timeout, close wait).
//!
//! A binary heap of `(when, key, connection id)`. Entries are never removed: they go stale, and
//! each connection's `timer_at` names its one live entry. A deadline that moves later (every
//! read pushes the idle deadline back) costs nothing until the old entry pops, when the
//! connection is simply rescheduled; only a deadline that moves earlier pushes a new entry. So
//! no event costs O(connections) and the heap holds about one entry per connection.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

use slab::Slab;

use crate::connection::Connection;

/// Pending deadlines of all connections.
#[derive(Debug, Default)]
pub struct Timers {
    heap: BinaryHeap<Reverse<(Instant, usize, u64)>>,
}

impl Timers {
    /// Queues `conn`'s next deadline unless an entry at or before it is already queued.
    pub fn schedule(&mut self, key: usize, conn: &mut Connection) {
        if let Some(at) = conn.deadline()
            && conn.timer_at.is_none_or(|t| at < t)
        {
            self.heap.push(Reverse((at, key, conn.id)));
            conn.timer_at = Some(at);
        }
    }

    /// The earliest queued deadline (possibly stale).
    pub fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _, _))| *at)
    }

    /// Pops the next entry due at `now` whose connection still exists and for which it is the
    /// live entry; returns that connection's key, its `timer_at` cleared (reschedule it after).
    pub fn pop_due(&mut self, now: Instant, conns: &mut Slab<Connection>) -> Option<usize> {
        while let Some(&Reverse((at, key, id))) = self.heap.peek() {
            if at > now {
                return None;
            }
            self.heap.pop();
            match conns.get_mut(key) {
                Some(conn) if conn.id == id && conn.timer_at == Some(at) => {
                    conn.timer_at = None;
                    return Some(key);
                }
                _ => {} // Stale: the connection is gone or has an earlier entry.
            }
        }
        None
    }
}
