//! What the loop does with what arrives: handshakes, frames, published messages, timers and
//! shutdown. All of it works on the connection state and queues output; the socket work stays
//! in `server.rs` and `connection.rs`.

use tracing::{debug, info};

use super::event_loop::{INBOX_BATCH, Loop};
use crate::broadcast::{self, Broadcast};
use std::num::NonZeroU32;

use super::http::unix_now;
use crate::auth::{self, Bucket};
use crate::config::RateLimit;
use crate::connection::{Access, AccessLimits, Phase};
use crate::directory::TooManyChannels;
use crate::inbox::Command;
use crate::proto::handshake::{self, Refusal};
use crate::proto::session::{Event, Session, Timeout};
use crate::proto::{close, http};
use crate::tls::ErrorKind as TlsErrorKind;

impl Loop {
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
        let (hub, mut table) = self.hub_and_table();
        let Ok(sub) = hub.subscribe(&up.channel, key, &mut table) else {
            self.refuse(key, Refusal::TOO_MANY_CHANNELS);
            return false;
        };
        let access = self.access(up);
        let session = match up.deflate {
            Some(_) => Session::with_deflate(self.limits, self.now),
            None => Session::new(self.limits, self.now),
        };
        let conn = &mut self.conns[key];
        conn.phase = Phase::Open {
            session,
            sub,
            access,
            deflate: up.deflate,
        };
        self.stats.upgraded += 1;
        self.enqueue(key, handshake::upgrade_response(up));
        // History goes right behind the 101 and before anything live, with no gap and no
        // duplicate at the seam, whichever loops its messages came from (see
        // `crate::directory`).
        // Only the newest frames that fit in half of `--max-backpressure` are sent, so a long
        // history of big messages cannot make a joiner a slow consumer before it has read a
        // byte, and live messages queued behind it in this turn still fit; the oldest ones
        // are skipped (and counted).
        let queued = self.conns[key].out.queued_bytes();
        let budget = (self.config.max_backpressure / 2).saturating_sub(queued);
        let (history, skipped) = self.hub.history_for(sub, budget);
        for frame in history {
            let frame = self.hub.frame_for(&frame, up.deflate.as_ref());
            self.conns[key].out.push(frame);
            self.stats.history_sent += 1;
        }
        self.stats.history_skipped += skipped as u64;
        self.schedule(key);
        true
    }

    /// Handles WebSocket bytes from `key`. When it has had its share of the turn (the
    /// deliveries or bytes its messages caused, see `Loop::turn_used`), the rest is stashed
    /// for the next turn (see `Connection::backlog`).
    pub(super) fn on_frames(&mut self, key: usize, data: &mut [u8]) {
        let mut pos = 0;
        while pos < data.len() {
            let used_up = self.turn_used();
            let Some(conn) = self.conns.get_mut(key) else {
                return;
            };
            let Phase::Open {
                session,
                sub,
                access,
                ..
            } = &mut conn.phase
            else {
                return;
            };
            if used_up {
                conn.stash = data[pos..].to_vec();
                conn.backlog = true;
                self.stats.read_yields += 1;
                self.reread.push(key);
                return;
            }
            let channel = sub.channel;
            let (used, event) = match &mut self.inflater {
                Some(inflater) => session.handle_bytes_with(&mut data[pos..], self.now, inflater),
                None => session.handle_bytes(&mut data[pos..], self.now),
            };
            pos += used;
            match event {
                None => {}
                Some(Event::Message { opcode, payload }) => {
                    self.stats.messages_in += 1;
                    if !access.may_publish {
                        self.stats.publish_refusals += 1;
                        self.close_open(key, "publishing not allowed");
                        continue;
                    }
                    let bucket = access.limits.as_mut().and_then(|l| l.bucket.as_mut());
                    if bucket.is_some_and(|b| !b.try_take(self.now)) {
                        self.stats.rate_limited += 1;
                        if self.config.rate_limit == RateLimit::Close {
                            self.close_open(key, "rate limit");
                        }
                        continue;
                    }
                    let frame = broadcast::message(opcode, &payload);
                    self.turn_bytes += frame.plain().len();
                    if let Some(backplane) = &self.node.backplane {
                        backplane.publish(self.hub.channel_name(channel), &frame);
                    }
                    self.turn_work += self.hub.publish(channel, frame, Some(key));
                }
                Some(Event::Send(pong)) => self.enqueue_pong(key, pong),
                Some(Event::Close(frame)) => {
                    // What was published before this close still reaches this connection,
                    // ahead of the close frame (it would have, one message at a time).
                    self.settle_channel_of(key);
                    if let Some(f) = &frame {
                        self.stats.close_sent(f);
                    }
                    self.begin_closing(key, frame)
                }
            }
        }
    }

    /// Publishes an already encoded frame to a channel (the inbox and HTTP paths), and to the
    /// other nodes through the backplane. Returns how many subscribers the channel has on
    /// this node, or an error when it would have had to create the channel (for its history)
    /// and `--max-channels` exist.
    pub(super) fn publish(
        &mut self,
        channel: &str,
        frame: Broadcast,
    ) -> Result<usize, TooManyChannels> {
        let subscribers = self.publish_here(channel, frame.clone())?;
        if let Some(backplane) = &self.node.backplane {
            backplane.publish(channel, &frame);
        }
        Ok(subscribers)
    }

    /// Publishes to this node's subscribers only (a message from another node, or the local
    /// part of [`Self::publish`]).
    pub(super) fn publish_here(
        &mut self,
        channel: &str,
        frame: Broadcast,
    ) -> Result<usize, TooManyChannels> {
        self.turn_bytes += frame.plain().len();
        let subscribers = self.hub.publish_named(channel, frame, self.now)?;
        self.turn_work += subscribers;
        Ok(subscribers)
    }

    /// Takes what other loops handed over, then `Handle` commands: a bounded number of each
    /// per turn, and no more than half of `--max-backpressure` in bytes (as for a connection,
    /// see `Loop::turn_used`: one turn never queues a subscriber more than a reader that
    /// keeps up can take). The rest waits for the next turn.
    pub(super) fn drain_inbox(&mut self) {
        let budget = self.config.max_backpressure / 2;
        let mut bytes = 0;
        let mut batches = 0;
        while batches < INBOX_BATCH && bytes < budget {
            let Some(batch) = self.inbox.try_handoffs() else {
                break;
            };
            batches += 1;
            for handoff in batch {
                bytes += handoff.frame.plain().len();
                self.hub.receive(handoff);
            }
        }
        let mut commands = 0;
        while commands < INBOX_BATCH && bytes < budget {
            commands += 1;
            match self.inbox.try_next() {
                Some(Command::Publish { channel, frame }) => {
                    bytes += frame.plain().len();
                    if self.publish(&channel, frame).is_err() {
                        self.stats.channel_refusals += 1;
                    }
                }
                Some(Command::Remote { channel, frame }) => {
                    bytes += frame.plain().len();
                    if self.publish_here(&channel, frame).is_err() {
                        self.stats.channel_refusals += 1;
                    }
                }
                Some(Command::Shutdown) => self.begin_shutdown(),
                None => {
                    self.inbox_backlog = batches == INBOX_BATCH || bytes >= budget;
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
        let (hub, mut table) = self.hub_and_table();
        hub.settle_all(&mut table); // What was published before the shutdown goes out first.
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
        conn.discard_tls_input();
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
    /// in the middle of a message, closed without a word in its TLS handshake — so the memory
    /// goes back at once and every other connection carries on.
    pub(super) fn count_input(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let delta = conn.recount_input();
        if delta == 0 {
            return;
        }
        let total = self.node.add_input(delta);
        if delta < 0 || total <= self.config.max_input_memory {
            return;
        }
        let bytes = conn.input_counted;
        debug!(key, bytes, total, "over --max-input-memory");
        self.stats.input_memory_refusals += 1;
        if conn.tls_handshaking() {
            // No answer can be sent before the TLS handshake is done.
            self.remove(key);
            return;
        }
        match &mut conn.phase {
            Phase::Http { buf, .. } => {
                if http::is_publish(buf) {
                    self.stats.publishes.add(503);
                }
                self.refuse(key, Refusal::INPUT_MEMORY)
            }
            Phase::Open { .. } => {
                self.settle_channel_of(key);
                let Some(Phase::Open { session, .. }) =
                    self.conns.get_mut(key).map(|c| &mut c.phase)
                else {
                    return;
                };
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

    /// What a connection upgraded with `up` may do: publish per `--client-publish` and its
    /// token, until its token expires, at `--max-client-rate`.
    fn access(&self, up: &handshake::Upgrade) -> Access {
        let grant = up.grant.as_ref();
        let may_publish =
            self.config.client_publish && grant.is_none_or(|g| g.may_publish(&up.channel));
        let expires = grant.map(|g| self.now + g.remaining(unix_now()));
        let bucket = self.config.max_client_rate.map(|rate| {
            let rate = NonZeroU32::new(rate).expect("--max-client-rate is at least 1");
            let burst = self.config.max_client_burst.and_then(NonZeroU32::new);
            Bucket::new(rate, burst.unwrap_or(rate), self.now)
        });
        let limits = (expires.is_some() || bucket.is_some())
            .then(|| Box::new(AccessLimits { expires, bucket }));
        Access {
            may_publish,
            limits,
        }
    }

    /// Closes an open connection with 1008 `reason` (a policy it broke: publishing, its rate,
    /// its token's time); what was published to it before still goes out first.
    pub(super) fn close_open(&mut self, key: usize, reason: &str) {
        self.settle_channel_of(key);
        let now = self.now;
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if let Some(f) = conn.close(close::POLICY_VIOLATION, reason, now) {
            self.stats.close_sent(&f);
            self.count_input(key); // Closing drops its input.
            self.enqueue(key, f);
            self.schedule(key);
        }
    }

    pub(super) fn on_timer(&mut self, key: usize) {
        let now = self.now;
        if self.conns[key].deadline().is_none_or(|d| d > now) {
            return;
        }
        self.settle_channel_of(key); // An idle close comes after what was published before it.
        let conn = &mut self.conns[key];
        if let Phase::Open { access, .. } = &conn.phase
            && access.expires().is_some_and(|t| t <= now)
        {
            self.stats.token_expired += 1;
            return self.close_open(key, auth::EXPIRED_CLOSE_REASON);
        }
        let conn = &mut self.conns[key];
        let tls_handshaking = conn.tls_handshaking();
        match &mut conn.phase {
            // No 408 before TLS is up: just close.
            Phase::Http { .. } if tls_handshaking => {
                TlsErrorKind::HandshakeTimeout.count(&mut self.stats);
                self.remove(key)
            }
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
