//! What the loop does with what arrives: handshakes, frames, published messages, timers and
//! shutdown. All of it works on the connection state and queues output; the socket work stays
//! in `server.rs` and `connection.rs`.

use std::sync::Arc;

use tracing::{debug, info};

use super::{INBOX_BATCH, Server, WORK_PER_TURN};
use crate::broadcast::{self, OutQueue, SharedFrame};
use crate::config::SlowConsumer;
use crate::connection::{Connection, Phase};
use crate::inbox::Command;
use crate::proto::handshake::{self, Refusal};
use crate::proto::session::{Event, Session, Timeout};
use crate::proto::{close, http};
use crate::registry::TooManyChannels;

impl Server {
    pub(super) fn on_data(&mut self, key: usize, data: &mut [u8]) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        match &mut conn.phase {
            Phase::Http { buf, .. } => {
                let mut buf = std::mem::take(buf);
                buf.extend_from_slice(data);
                self.serve_http(key, buf);
            }
            Phase::Open { .. } => self.on_frames(key, data),
            Phase::Closing { .. } => {} // Discarded: we only wait for the peer's EOF.
        }
    }

    /// Completes an upgrade; returns false (after refusing it) if its channel would have to
    /// be created and `--max-channels` exist.
    pub(super) fn upgrade(&mut self, key: usize, up: &handshake::Upgrade) -> bool {
        let Ok(sub) = self.registry.subscribe(&up.channel, key) else {
            self.refuse(key, Refusal::TOO_MANY_CHANNELS);
            return false;
        };
        let conn = &mut self.conns[key];
        conn.phase = Phase::Open {
            session: Session::new(self.limits, self.now),
            sub,
        };
        self.stats.upgraded += 1;
        self.enqueue(key, handshake::upgrade_response(up));
        // History goes right behind the 101 and before anything live: both happen within this
        // turn of the single-threaded loop, so there is no gap and no duplicate at the seam.
        // Only the newest frames that fit in half of `--max-backpressure` are sent, so a long
        // history of big messages cannot make a joiner a slow consumer before it has read a
        // byte, and live messages queued behind it in this turn still fit; the oldest ones
        // are skipped (and counted).
        let conn = &mut self.conns[key];
        let budget = (self.config.max_backpressure / 2).saturating_sub(conn.out.queued_bytes());
        let (history, skipped) = self.registry.history_within(sub.channel, budget);
        for frame in history {
            conn.out.push(frame.clone());
            self.stats.history_sent += 1;
        }
        self.stats.history_skipped += skipped as u64;
        self.schedule(key);
        true
    }

    /// Handles WebSocket bytes from `key`. When the deliveries they caused this turn reach
    /// [`WORK_PER_TURN`], the rest is stashed for the next turn (see `Connection::backlog`).
    pub(super) fn on_frames(&mut self, key: usize, data: &mut [u8]) {
        let mut pos = 0;
        while pos < data.len() {
            let Some(conn) = self.conns.get_mut(key) else {
                return;
            };
            let Phase::Open { session, sub } = &mut conn.phase else {
                return;
            };
            if self.turn_work >= WORK_PER_TURN {
                conn.stash = data[pos..].to_vec();
                conn.backlog = true;
                self.stats.read_yields += 1;
                self.reread.push(key);
                return;
            }
            let channel = sub.channel;
            let (used, event) = session.handle_bytes(&mut data[pos..], self.now);
            pos += used;
            match event {
                None => {}
                Some(Event::Message { opcode, payload }) => {
                    self.stats.messages_in += 1;
                    let frame = broadcast::encode(opcode, &payload);
                    let except = (!self.config.echo).then_some(key);
                    self.fan_out(channel, &frame, except);
                }
                Some(Event::Send(pong)) => self.enqueue_pong(key, pong),
                Some(Event::Close(frame)) => {
                    if let Some(f) = &frame {
                        self.stats.close_sent(f);
                    }
                    self.begin_closing(key, frame)
                }
            }
        }
    }

    /// Queues `frame` for every open subscriber of `channel` except `except`, and keeps it in
    /// the channel's history. Returns how many subscribers it was queued for.
    pub(super) fn fan_out(
        &mut self,
        channel: usize,
        frame: &SharedFrame,
        except: Option<usize>,
    ) -> usize {
        self.stats.history_evicted += self.registry.record(channel, frame) as u64;
        let cap = self.config.max_backpressure;
        let mut queued = 0;
        self.turn_work += self.registry.subscribers(channel).len();
        for &k in self.registry.subscribers(channel) {
            if Some(k) == except {
                continue;
            }
            let conn = &mut self.conns[k];
            if !conn.is_open() {
                continue;
            }
            if over_cap(conn, frame, cap) {
                // Only bytes the kernel would not take count against the cap: a reader that
                // keeps up must not be judged by a burst queued within one turn.
                if let Err(e) = conn.flush(&mut self.stats, &mut self.scratch) {
                    debug!(key = k, error = %e, "write failed"); // Removed at the turn's flush.
                }
            }
            if over_cap(conn, frame, cap) {
                match self.config.slow_consumer {
                    SlowConsumer::Drop => self.stats.dropped += 1,
                    SlowConsumer::Close => {
                        self.stats.slow_closes += 1;
                        conn.out.discard_unstarted();
                        let close = conn.close(close::POLICY_VIOLATION, "slow consumer", self.now);
                        conn.recount_input(&mut self.input_memory); // Closing drops its input.
                        if let Some(f) = close {
                            self.stats.close_sent(&f);
                            if conn.enqueue_pinned(Arc::new(f)) {
                                self.dirty.push(k);
                            }
                        }
                        self.timers.schedule(k, conn);
                    }
                }
                continue;
            }
            self.stats.deliveries += 1;
            queued += 1;
            if conn.enqueue(frame.clone()) {
                self.dirty.push(k);
            }
        }
        queued
    }

    /// Publishes an already encoded frame to a channel (the inbox and HTTP paths). Returns how
    /// many subscribers it was queued for, or an error when it would have had to create the
    /// channel (for its history) and `--max-channels` exist.
    pub(super) fn publish(
        &mut self,
        channel: &str,
        frame: &SharedFrame,
    ) -> Result<usize, TooManyChannels> {
        Ok(
            match self.registry.channel_for_publish(channel, self.now)? {
                Some(id) => self.fan_out(id, frame, None),
                None => 0,
            },
        )
    }

    pub(super) fn drain_inbox(&mut self) {
        for _ in 0..INBOX_BATCH {
            match self.inbox.try_next() {
                Some(Command::Publish { channel, message }) => {
                    if self.publish(&channel, &message.encode()).is_err() {
                        self.stats.channel_refusals += 1;
                    }
                }
                Some(Command::Shutdown) => self.begin_shutdown(),
                None => {
                    self.inbox_backlog = false;
                    return;
                }
            }
        }
        self.inbox_backlog = true;
    }

    pub(super) fn begin_shutdown(&mut self) {
        if self.shutdown_deadline.is_some() {
            return;
        }
        info!(connections = self.conns.len(), "shutting down");
        if let Some(mut listener) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut listener);
        }
        self.shutdown_deadline = Some(self.now + self.config.shutdown_timeout);
        let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
        for key in keys {
            let conn = &mut self.conns[key];
            match &mut conn.phase {
                // An HTTP connection gets the answers already queued for it (a publish that was
                // delivered must not look failed to its publisher), then closes.
                Phase::Http { .. } if !conn.out.is_empty() => self.begin_closing(key, None),
                Phase::Http { .. } => self.remove(key),
                Phase::Open { session, .. } => {
                    if let Some(f) =
                        session.close(close::GOING_AWAY, "server shutting down", self.now)
                    {
                        self.stats.close_sent(&f);
                        self.count_input(key); // Closing drops its input.
                        self.enqueue(key, f);
                        self.schedule(key);
                    }
                }
                Phase::Closing { .. } => {}
            }
        }
    }

    /// Leaves the channel, queues `last` (a close frame) and waits for the peer's EOF.
    pub(super) fn begin_closing(&mut self, key: usize, last: Option<Vec<u8>>) {
        let deadline = self.now + self.config.close_timeout;
        let conn = &mut self.conns[key];
        let old = std::mem::replace(
            &mut conn.phase,
            Phase::Closing {
                deadline,
                write_shut: false,
                peer_eof: false,
            },
        );
        conn.stash = Vec::new();
        conn.backlog = false;
        if let Phase::Open { sub, .. } = old {
            self.leave(sub);
        }
        self.count_input(key); // Whatever it was receiving is dropped.
        if let Some(f) = last {
            self.enqueue(key, f);
        }
        self.mark_dirty(key);
        self.schedule(key);
    }

    /// Brings `key`'s share of the input-memory total up to date after it received bytes. If
    /// its input grew and the total is now over `--max-input-memory`, this connection is the
    /// one turned away — with 503 before its request is complete, with `1013 Try Again Later`
    /// in the middle of a message — so the memory goes back at once and every other
    /// connection carries on.
    pub(super) fn count_input(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let grew = conn.recount_input(&mut self.input_memory);
        if !grew || self.input_memory <= self.config.max_input_memory {
            return;
        }
        let bytes = conn.input_counted;
        debug!(
            key,
            bytes,
            total = self.input_memory,
            "over --max-input-memory"
        );
        self.stats.input_memory_refusals += 1;
        match &mut conn.phase {
            Phase::Http { buf, .. } => {
                if http::is_publish(buf) {
                    *self.stats.publishes.entry(503).or_default() += 1;
                }
                self.refuse(key, Refusal::INPUT_MEMORY)
            }
            Phase::Open { session, .. } => {
                let reason = Refusal::INPUT_MEMORY.reason;
                let frame = session.close(close::TRY_AGAIN_LATER, reason, self.now);
                if let Some(f) = &frame {
                    self.stats.close_sent(f);
                }
                self.begin_closing(key, frame);
            }
            Phase::Closing { .. } => {}
        }
    }

    /// Sends a complete HTTP response, then closes.
    pub(super) fn respond(&mut self, key: usize, response: Vec<u8>) {
        self.begin_closing(key, Some(response));
    }

    pub(super) fn on_timer(&mut self, key: usize) {
        let now = self.now;
        let conn = &mut self.conns[key];
        if conn.deadline().is_none_or(|d| d > now) {
            return;
        }
        match &mut conn.phase {
            Phase::Http { .. } => self.refuse(key, Refusal::timeout()),
            Phase::Closing { .. } => {
                let unsent = conn.out.queued_bytes();
                debug!(key, unsent, "close timed out");
                self.remove(key)
            }
            Phase::Open { session, .. } => match session.handle_timeout(now) {
                Some(Timeout::Ping(f)) => self.enqueue_urgent(key, f),
                Some(Timeout::Idle(f)) => {
                    self.stats.close_sent(&f);
                    self.enqueue(key, f)
                }
                Some(Timeout::CloseExpired) => self.remove(key),
                None => {}
            },
        }
    }
}

/// Whether queueing `frame` would take `conn` past the cap. An empty queue always takes one
/// frame, so a message larger than the cap still reaches a reader that keeps up.
fn over_cap(conn: &Connection, frame: &SharedFrame, cap: usize) -> bool {
    let held = conn.out.held_bytes();
    held > 0 && held + OutQueue::shared_cost(frame) > cap
}
