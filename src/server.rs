//! The event loop: one `mio::Poll`, a `Slab` of connections, and the only place that polls.
//!
//! Each turn: poll; handle every event (accepts, reads, the inbox); run due timers; then flush
//! every connection that received output this turn, once, with vectored writes. mio's rules are
//! obeyed: accepts, the inbox and writes are drained until `WouldBlock`/empty; a read shorter
//! than the buffer means the socket was drained (a new edge fires for later data); a socket
//! that keeps delivering full buffers is put back on a re-read list after [`READS_PER_TURN`]
//! reads so one flooding peer cannot starve the others; and spurious events are harmless
//! because every handler tolerates `WouldBlock` and checks the connection still exists.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;
use tracing::{debug, info, warn};

use crate::broadcast::{self, SharedFrame};
use crate::config::{self, Config, SlowConsumer};
use crate::connection::{Connection, Phase};
use crate::inbox::{Command, Handle, Inbox};
use crate::proto::close;
use crate::proto::handshake::{self, Refusal, Request};
use crate::proto::session::{Event, Limits, Session, Timeout};
use crate::registry::{Registry, Subscription};
use crate::timers::Timers;

const LISTENER: Token = Token(usize::MAX - 1);
const WAKER: Token = Token(usize::MAX - 2);

/// Reads of one connection per turn before the others get a go (× 64 KiB).
pub const READS_PER_TURN: usize = 16;

/// Inbox commands handled per turn before sockets get a go.
const INBOX_BATCH: usize = 4096;

/// How long accepting pauses after the process ran out of file descriptors.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Counters kept by the loop (plain integers: no per-message cost beyond an increment).
#[derive(Clone, Copy, Debug, Default)]
pub struct Stats {
    /// TCP connections accepted.
    pub accepted: u64,
    /// Handshakes completed.
    pub upgraded: u64,
    /// Requests refused with an HTTP error status.
    pub refused: u64,
    /// Data messages received from clients.
    pub messages_in: u64,
    /// Frames queued to subscribers.
    pub deliveries: u64,
    /// Frames skipped for subscribers over `--max-backpressure` (`--slow-consumer drop`).
    pub dropped: u64,
    /// Subscribers closed with 1008 for being over `--max-backpressure`.
    pub slow_closes: u64,
}

/// A bound fanout server. [`Server::run`] drives it until it is shut down.
pub struct Server {
    poll: Poll,
    listener: Option<TcpListener>,
    local_addr: SocketAddr,
    config: Config,
    limits: Limits,
    max_connections: usize,
    inbox: Inbox,
    inbox_backlog: bool,
    conns: Slab<Connection>,
    registry: Registry,
    timers: Timers,
    /// Connections with output queued this turn: each is flushed once at the end of the turn.
    dirty: Vec<usize>,
    /// Connections whose read was cut short by [`READS_PER_TURN`].
    reread: Vec<usize>,
    /// One read buffer for every connection: idle connections hold none.
    read_buf: Vec<u8>,
    next_id: u64,
    now: Instant,
    accept_paused_until: Option<Instant>,
    shutdown_deadline: Option<Instant>,
    stats: Stats,
}

impl Server {
    /// Binds the listener and prepares the loop; nothing is served until [`Server::run`].
    pub fn bind(config: Config) -> io::Result<Server> {
        let poll = Poll::new()?;
        let mut listener = TcpListener::bind(config.listen)?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let inbox = Inbox::new(Waker::new(poll.registry(), WAKER)?);
        let local_addr = listener.local_addr()?;
        let max_connections = config.max_connections.unwrap_or_else(|| {
            let (soft, _) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap_or((1024, 1024));
            (soft as usize).saturating_sub(config::RESERVED_FDS).max(1)
        });
        let limits = Limits {
            max_message: config.max_message,
            ping_interval: config.ping_interval,
            idle_timeout: config.idle_timeout,
            close_timeout: config.close_timeout,
        };
        Ok(Server {
            poll,
            listener: Some(listener),
            local_addr,
            config,
            limits,
            max_connections,
            inbox,
            inbox_backlog: false,
            conns: Slab::new(),
            registry: Registry::default(),
            timers: Timers::default(),
            dirty: Vec::new(),
            reread: Vec::new(),
            read_buf: vec![0; config::READ_BUFFER_BYTES],
            next_id: 0,
            now: Instant::now(),
            accept_paused_until: None,
            shutdown_deadline: None,
            stats: Stats::default(),
        })
    }

    /// The address the server listens on (useful after binding port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The effective connection limit.
    pub fn max_connections(&self) -> usize {
        self.max_connections
    }

    /// A handle for publishing from other threads and for shutting down.
    pub fn handle(&self) -> Handle {
        self.inbox.handle()
    }

    /// Runs the loop until a shutdown completes (all connections closed, or the shutdown
    /// timeout passed).
    pub fn run(mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        info!(addr = %self.local_addr, max_connections = self.max_connections, "listening");
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
                self.on_readable(key);
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
                            self.on_readable(key);
                        }
                        if event.is_writable() {
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
            self.flush_dirty();
            if let Some(deadline) = self.shutdown_deadline {
                if self.conns.is_empty() || self.now >= deadline {
                    info!(left = self.conns.len(), stats = ?self.stats, "shut down");
                    return Ok(());
                }
            }
        }
    }

    fn poll_timeout(&self) -> Option<Duration> {
        if self.inbox_backlog || !self.reread.is_empty() {
            return Some(Duration::ZERO);
        }
        let next = [
            self.timers.next(),
            self.accept_paused_until,
            self.shutdown_deadline,
        ]
        .into_iter()
        .flatten()
        .min()?;
        // Round up so a timer is never polled for just before it is due.
        let now = Instant::now();
        Some(next.saturating_duration_since(now) + Duration::from_millis(1))
    }

    fn accept(&mut self) {
        if self.accept_paused_until.is_some() {
            return;
        }
        while let Some(listener) = &self.listener {
            match listener.accept() {
                Ok((socket, _)) => self.admit(socket),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if matches!(e.raw_os_error(), Some(23 | 24 | 105 | 12)) => {
                    // ENFILE, EMFILE, ENOBUFS, ENOMEM: the pending connection stays in the
                    // backlog; retrying now would spin, so pause and retry after a backoff.
                    warn!(error = %e, "accept failed: out of file descriptors or memory; pausing accepts");
                    self.accept_paused_until = Some(self.now + ACCEPT_BACKOFF);
                    return;
                }
                Err(e) => debug!(error = %e, "accept failed"),
            }
        }
    }

    fn admit(&mut self, socket: TcpStream) {
        self.stats.accepted += 1;
        let open = self.conns.len();
        if open >= self.max_connections + config::REFUSAL_SLACK {
            return; // Dropped at once: answering would cost memory without bound.
        }
        let _ = socket.set_nodelay(true);
        let refuse = open >= self.max_connections;
        let phase = if refuse {
            Phase::Closing {
                deadline: self.now + self.config.close_timeout,
                write_shut: false,
            }
        } else {
            Phase::Handshake {
                buf: Vec::new(),
                deadline: self.now + self.config.handshake_timeout,
            }
        };
        self.next_id += 1;
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        match Connection::new(
            socket,
            Token(key),
            self.next_id,
            phase,
            self.poll.registry(),
        ) {
            Ok(conn) => entry.insert(conn),
            Err(e) => return debug!(error = %e, "register failed"),
        };
        if refuse {
            self.stats.refused += 1;
            self.enqueue(key, Refusal::service_unavailable().response());
        }
        self.schedule(key);
    }

    fn on_readable(&mut self, key: usize) {
        let mut buf = std::mem::take(&mut self.read_buf);
        for i in 0.. {
            let Some(conn) = self.conns.get_mut(key) else {
                break;
            };
            if i == READS_PER_TURN {
                self.reread.push(key);
                break;
            }
            match conn.read(&mut buf) {
                Ok(0) => {
                    self.on_eof(key);
                    break;
                }
                Ok(n) => {
                    self.on_data(key, &mut buf[..n]);
                    if n < buf.len() {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    debug!(key, error = %e, "read failed");
                    self.remove(key);
                    break;
                }
            }
        }
        self.read_buf = buf;
    }

    fn on_eof(&mut self, key: usize) {
        if let Some(conn) = self.conns.get_mut(key) {
            if matches!(conn.phase, Phase::Closing { .. }) {
                let _ = conn.flush(); // Our last bytes go out before the FIN.
            }
        }
        self.remove(key);
    }

    fn on_data(&mut self, key: usize, data: &mut [u8]) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        match &mut conn.phase {
            Phase::Handshake { buf, .. } => {
                buf.extend_from_slice(data);
                let policy = handshake::Policy {
                    default_channel: self.config.default_channel.as_deref(),
                    allowed_origins: &self.config.allowed_origins,
                    max_header_bytes: config::MAX_HEADER_BYTES,
                };
                match handshake::parse(buf, &policy) {
                    Ok(crate::proto::Decoded::Partial) => {}
                    Ok(crate::proto::Decoded::Complete((request, used))) => {
                        let mut rest = buf.split_off(used);
                        match request {
                            Request::Upgrade(up) => {
                                self.upgrade(key, &up);
                                if !rest.is_empty() {
                                    self.on_frames(key, &mut rest);
                                }
                            }
                            Request::Health => self.respond(key, handshake::health_response()),
                        }
                    }
                    Err(refusal) => {
                        debug!(
                            key,
                            status = refusal.status,
                            reason = refusal.reason,
                            "refused"
                        );
                        self.stats.refused += 1;
                        self.respond(key, refusal.response());
                    }
                }
            }
            Phase::Open { .. } => self.on_frames(key, data),
            Phase::Closing { .. } => {} // Discarded: we only wait for the peer's EOF.
        }
    }

    fn upgrade(&mut self, key: usize, up: &handshake::Upgrade) {
        let sub = self.registry.subscribe(&up.channel, key);
        let conn = &mut self.conns[key];
        conn.phase = Phase::Open {
            session: Session::new(self.limits, self.now),
            sub,
        };
        self.stats.upgraded += 1;
        self.enqueue(key, handshake::upgrade_response(up));
        self.schedule(key);
    }

    fn on_frames(&mut self, key: usize, data: &mut [u8]) {
        let mut pos = 0;
        while pos < data.len() {
            let Some(conn) = self.conns.get_mut(key) else {
                return;
            };
            let Phase::Open { session, sub } = &mut conn.phase else {
                return;
            };
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
                Some(Event::Send(pong)) => self.enqueue_urgent(key, pong),
                Some(Event::Close(frame)) => self.begin_closing(key, frame),
            }
        }
    }

    /// Queues `frame` for every open subscriber of `channel` except `except`.
    fn fan_out(&mut self, channel: usize, frame: &SharedFrame, except: Option<usize>) {
        let cap = self.config.max_backpressure;
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
                if let Err(e) = conn.flush() {
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
                        if let Some(f) = close {
                            if conn.enqueue(Arc::new(f)) {
                                self.dirty.push(k);
                            }
                        }
                        self.timers.schedule(k, conn);
                    }
                }
                continue;
            }
            self.stats.deliveries += 1;
            if conn.enqueue(frame.clone()) {
                self.dirty.push(k);
            }
        }
    }

    /// Publishes an already encoded frame to a channel (the inbox path).
    fn publish(&mut self, channel: &str, frame: &SharedFrame) {
        if let Some(id) = self.registry.lookup(channel) {
            self.fan_out(id, frame, None);
        }
    }

    fn drain_inbox(&mut self) {
        for _ in 0..INBOX_BATCH {
            match self.inbox.try_next() {
                Some(Command::Publish { channel, message }) => {
                    self.publish(&channel, &message.encode())
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

    fn begin_shutdown(&mut self) {
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
                Phase::Handshake { .. } => self.remove(key),
                Phase::Open { session, .. } => {
                    if let Some(f) =
                        session.close(close::GOING_AWAY, "server shutting down", self.now)
                    {
                        self.enqueue(key, f);
                        self.schedule(key);
                    }
                }
                Phase::Closing { .. } => {}
            }
        }
    }

    /// Leaves the channel, queues `last` (a close frame) and waits for the peer's EOF.
    fn begin_closing(&mut self, key: usize, last: Option<Vec<u8>>) {
        let deadline = self.now + self.config.close_timeout;
        let conn = &mut self.conns[key];
        let old = std::mem::replace(
            &mut conn.phase,
            Phase::Closing {
                deadline,
                write_shut: false,
            },
        );
        if let Phase::Open { sub, .. } = old {
            self.leave(sub);
        }
        if let Some(f) = last {
            self.enqueue(key, f);
        }
        self.mark_dirty(key);
        self.schedule(key);
    }

    /// Sends a complete HTTP response, then closes.
    fn respond(&mut self, key: usize, response: Vec<u8>) {
        self.begin_closing(key, Some(response));
    }

    fn enqueue(&mut self, key: usize, bytes: Vec<u8>) {
        if self.conns[key].enqueue(Arc::new(bytes)) {
            self.dirty.push(key);
        }
    }

    fn enqueue_urgent(&mut self, key: usize, bytes: Vec<u8>) {
        if self.conns[key].enqueue_urgent(Arc::new(bytes)) {
            self.dirty.push(key);
        }
    }

    fn mark_dirty(&mut self, key: usize) {
        if let Some(conn) = self.conns.get_mut(key) {
            if !std::mem::replace(&mut conn.dirty, true) {
                self.dirty.push(key);
            }
        }
    }

    fn leave(&mut self, sub: Subscription) {
        if let Some(moved) = self.registry.unsubscribe(sub) {
            if let Some(Phase::Open { sub: s, .. }) =
                self.conns.get_mut(moved).map(|c| &mut c.phase)
            {
                s.slot = sub.slot;
            }
        }
    }

    fn remove(&mut self, key: usize) {
        if let Some(mut conn) = self.conns.try_remove(key) {
            conn.deregister(self.poll.registry());
            if let Phase::Open { sub, .. } = conn.phase {
                self.leave(sub);
            }
        }
    }

    fn schedule(&mut self, key: usize) {
        if let Some(conn) = self.conns.get_mut(key) {
            self.timers.schedule(key, conn);
        }
    }

    fn run_timers(&mut self) {
        while let Some(key) = self.timers.pop_due(self.now, &mut self.conns) {
            self.on_timer(key);
            self.schedule(key);
        }
    }

    fn on_timer(&mut self, key: usize) {
        let now = self.now;
        let conn = &mut self.conns[key];
        if conn.deadline().is_none_or(|d| d > now) {
            return;
        }
        match &mut conn.phase {
            Phase::Handshake { .. } => self.respond(key, Refusal::timeout().response()),
            Phase::Closing { .. } => self.remove(key),
            Phase::Open { session, .. } => match session.handle_timeout(now) {
                Some(Timeout::Ping(f)) => self.enqueue_urgent(key, f),
                Some(Timeout::Idle(f)) => self.enqueue(key, f),
                Some(Timeout::CloseExpired) => self.remove(key),
                None => {}
            },
        }
    }

    fn flush_dirty(&mut self) {
        let mut dirty = std::mem::take(&mut self.dirty);
        for &key in &dirty {
            let Some(conn) = self.conns.get_mut(key) else {
                continue;
            };
            if !std::mem::replace(&mut conn.dirty, false) {
                continue;
            }
            let ok = conn
                .flush()
                .and_then(|_| conn.update_interest(self.poll.registry(), Token(key)));
            if let Err(e) = ok {
                debug!(key, error = %e, "write failed");
                self.remove(key);
            }
        }
        dirty.clear();
        self.dirty = dirty;
    }
}

/// Whether queueing `frame` would take `conn` past the cap. An empty queue always takes one
/// frame, so a message larger than the cap still reaches a reader that keeps up.
fn over_cap(conn: &Connection, frame: &SharedFrame, cap: usize) -> bool {
    let queued = conn.out.queued_bytes();
    queued > 0 && queued + frame.len() > cap
}
