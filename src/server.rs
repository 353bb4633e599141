//! The event loop: one `mio::Poll`, a `Slab` of connections, and the only place that polls.
//!
//! Each turn: poll; handle every event (accepts, reads, the inbox); run due timers; then flush
//! every connection that received output this turn, once, with vectored writes. mio's rules are
//! obeyed: accepts, the inbox and writes are drained until `WouldBlock`/empty; a read shorter
//! than the buffer means the socket was drained (a new edge fires for later data); a socket
//! that keeps delivering full buffers is put back on a re-read list after [`READS_PER_TURN`]
//! reads so one flooding peer cannot starve the others; and spurious events are harmless
//! because every handler tolerates `WouldBlock` and checks the connection still exists.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;
use tracing::{debug, info, warn};

use crate::config::{self, Config};
use crate::connection::{Connection, Phase};
use crate::hub::Hub;
use crate::inbox::{Handle, Inbox};
use crate::memory;
use crate::metrics::Stats;
use crate::proto::handshake::{self, Refusal};
use crate::proto::session::Limits;
use crate::registry::{Registry, Subscription};
use crate::timers::Timers;

mod dispatch;
mod http;
mod table;

use table::Table;

const LISTENER: Token = Token(usize::MAX - 1);
const WAKER: Token = Token(usize::MAX - 2);

/// Reads of one connection per turn before the others get a go (× 64 KiB).
pub const READS_PER_TURN: usize = 16;

/// Deliveries one connection's input may cause per turn before the others get a go: fairness
/// by the work a peer causes, not by the bytes it sends (three bytes to a 300-member channel
/// are 300 deliveries). The rest of what it sent waits, and is handled first next turn. High
/// enough that one publisher to 10 000 subscribers still gets 25 messages into each turn.
pub const WORK_PER_TURN: usize = 256 * 1024;

/// Inbox commands handled per turn before sockets get a go.
const INBOX_BATCH: usize = 4096;

/// How often the loop looks for freed memory to give back (see [`crate::memory`]).
const TRIM_INTERVAL: Duration = Duration::from_secs(1);

/// How long accepting pauses after the process ran out of file descriptors.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

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
    /// Channels, subscribers, history and the fan-out.
    hub: Hub,
    timers: Timers,
    /// Connections with output queued this turn: each is flushed once at the end of the turn.
    dirty: Vec<usize>,
    /// Connections whose read was cut short by [`READS_PER_TURN`].
    reread: Vec<usize>,
    /// One read buffer for every connection: idle connections hold none.
    read_buf: Vec<u8>,
    /// One buffer for gathering small frames before a send (see `OutQueue::gather`).
    scratch: Vec<u8>,
    /// Deliveries caused by the connection being handled now, this turn (see
    /// [`WORK_PER_TURN`]).
    turn_work: usize,
    /// Bytes of the messages it published this turn: at half of `--max-backpressure` it
    /// waits for the next turn, so one turn never queues a subscriber more than its socket
    /// and its cap can take, and a reader that keeps up is never judged slow by a burst.
    turn_bytes: usize,
    /// Heap bytes of partly received input, all connections together (the sum of their
    /// `input_counted`), held under `--max-input-memory`.
    input_memory: usize,
    next_id: u64,
    now: Instant,
    accept_paused_until: Option<Instant>,
    /// When to next see whether freed memory should go back to the system (see
    /// [`crate::memory`]).
    next_trim: Instant,
    shutdown_deadline: Option<Instant>,
    stats: Stats,
}

impl Server {
    /// Binds the listener and prepares the loop; nothing is served until [`Server::run`].
    pub fn bind(config: Config) -> io::Result<Server> {
        if let Some(name) = &config.default_channel {
            if !handshake::is_channel(name.as_bytes()) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "--default-channel {name:?} is not a valid channel name (a token of 1-64 bytes)"
                    ),
                ));
            }
        }
        let poll = Poll::new()?;
        let mut listener = listen(config.listen)?;
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
        let registry = Registry::new(
            config.history,
            config.history_ttl,
            config.max_history_memory,
        )
        .with_max_channels(config.max_channels);
        let hub = Hub::new(
            registry,
            config.echo,
            config.max_backpressure,
            config.slow_consumer,
        );
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
            hub,
            timers: Timers::default(),
            dirty: Vec::new(),
            reread: Vec::new(),
            read_buf: vec![0; config::READ_BUFFER_BYTES],
            scratch: Vec::new(),
            turn_work: 0,
            turn_bytes: 0,
            input_memory: 0,
            next_id: 0,
            now: Instant::now(),
            accept_paused_until: None,
            next_trim: Instant::now() + TRIM_INTERVAL,
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
            self.hub.registry.expire(self.now);
            let (hub, mut table) = self.hub_and_table();
            hub.settle_all(&mut table);
            if self.now >= self.next_trim {
                self.next_trim = self.now + TRIM_INTERVAL;
                if memory::free_heap_bytes() > memory::TRIM_THRESHOLD && memory::give_back() {
                    self.stats.memory_trims += 1;
                }
            }
            self.flush_dirty();
            if let Some(deadline) = self.shutdown_deadline {
                if self.conns.is_empty() || self.now >= deadline {
                    info!(left = self.conns.len(), stats = ?self.stats, "shut down");
                    return Ok(());
                }
            }
        }
    }

    /// Whether the connection being handled has had its share of this turn: the deliveries
    /// its input caused, or the bytes it published (see [`WORK_PER_TURN`] and `turn_bytes`).
    fn turn_used(&self) -> bool {
        self.turn_work >= WORK_PER_TURN || self.turn_bytes >= self.config.max_backpressure / 2
    }

    fn poll_timeout(&self) -> Option<Duration> {
        if self.inbox_backlog || !self.reread.is_empty() {
            return Some(Duration::ZERO);
        }
        let next = [
            self.timers.next(),
            Some(self.next_trim),
            self.accept_paused_until,
            self.shutdown_deadline,
            self.hub.registry.next_expiry(),
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
            return self.refuse_at_once(socket);
        }
        let _ = socket.set_nodelay(true);
        if self.config.socket_send_buffer > 0 {
            let size = self.config.socket_send_buffer;
            let _ = socket2::SockRef::from(&socket).set_send_buffer_size(size);
        }
        let phase = Phase::Http {
            buf: Vec::new(),
            deadline: self.now + self.config.handshake_timeout,
            reserve: open >= self.max_connections,
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
        self.schedule(key);
    }

    /// Past the reserve kept for monitoring: the `503` is written on the spot (a new socket's
    /// send buffer always has room for it) and the connection closed, so even a flood of
    /// connections gets its answer at no memory cost. What the client already sent is read
    /// first, so closing sends a FIN and not a reset that could destroy the answer.
    fn refuse_at_once(&mut self, mut socket: TcpStream) {
        *self.stats.refusals.entry(503).or_default() += 1;
        for _ in 0..4 {
            if !matches!(socket.read(&mut self.read_buf), Ok(n) if n > 0) {
                break;
            }
        }
        let _ = socket.write_all(&Refusal::SERVICE_UNAVAILABLE.response());
        let _ = socket.shutdown(std::net::Shutdown::Write);
    }

    /// Reads what `key`'s socket has. A read shorter than the buffer means it is drained (a
    /// new edge fires for later data), unless the event already said the peer closed: then
    /// its EOF is read now, since no further edge will announce it. What an earlier turn left
    /// unhandled is handled first; the connection's share of a turn is [`READS_PER_TURN`]
    /// reads and [`WORK_PER_TURN`] deliveries.
    fn on_readable(&mut self, key: usize, closed: bool) {
        self.turn_work = 0;
        self.turn_bytes = 0;
        if !self.resume(key) {
            return;
        }
        let mut buf = std::mem::take(&mut self.read_buf);
        for i in 0.. {
            let Some(conn) = self.conns.get_mut(key) else {
                break;
            };
            if i == READS_PER_TURN {
                self.stats.read_yields += 1;
                self.reread.push(key);
                break;
            }
            if conn.out.held_bytes() > self.config.max_backpressure {
                // Stop reading a peer that does not read our answers; `flush_dirty` resumes.
                conn.read_paused = true;
                break;
            }
            match conn.read(&mut buf) {
                Ok(0) => {
                    self.on_eof(key);
                    break;
                }
                Ok(n) => {
                    self.stats.bytes_in += n as u64;
                    self.on_data(key, &mut buf[..n]);
                    self.count_input(key);
                    let stopped = self.conns.get(key).is_none_or(|c| c.backlog);
                    if stopped || n < buf.len() && !closed {
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

    /// Handles what `key` read in an earlier turn and left unhandled (see
    /// [`Connection::backlog`]). Returns whether its socket may be read now.
    fn resume(&mut self, key: usize) -> bool {
        let Some(conn) = self.conns.get_mut(key) else {
            return false;
        };
        if conn.read_paused {
            return false;
        }
        if !std::mem::take(&mut conn.backlog) {
            return true;
        }
        match &mut conn.phase {
            Phase::Http { buf, .. } => {
                let buf = std::mem::take(buf);
                self.serve_http(key, buf);
            }
            Phase::Open { .. } => {
                let mut stash = std::mem::take(&mut conn.stash);
                self.on_frames(key, &mut stash);
            }
            Phase::Closing { .. } => conn.stash = Vec::new(),
        }
        self.count_input(key);
        self.conns.get(key).is_some_and(|c| !c.backlog)
    }

    /// The peer sent FIN. It may still be reading (a half-close after pipelined requests), so
    /// what is queued for it is written out first; the connection goes when that is done.
    fn on_eof(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let _ = conn.flush(&mut self.stats, &mut self.scratch);
        if conn.out.is_empty() {
            return self.remove(key);
        }
        if !matches!(conn.phase, Phase::Closing { .. }) {
            self.begin_closing(key, None);
        }
        if let Phase::Closing { peer_eof, .. } = &mut self.conns[key].phase {
            *peer_eof = true;
        }
    }

    /// Queues bytes the loop itself produced (an HTTP response, a close frame) behind everything
    /// queued so far; no pong overtakes them.
    fn enqueue(&mut self, key: usize, bytes: Vec<u8>) {
        if self.conns[key].enqueue_pinned(Arc::new(bytes)) {
            self.dirty.push(key);
        }
    }

    fn enqueue_urgent(&mut self, key: usize, bytes: Vec<u8>) {
        if self.conns[key].enqueue_urgent(Arc::new(bytes)) {
            self.dirty.push(key);
        }
    }

    fn enqueue_pong(&mut self, key: usize, bytes: Vec<u8>) {
        let cap = self.config.max_backpressure;
        if self.conns[key].enqueue_pong(Arc::new(bytes), cap, &mut self.stats) {
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

    /// The hub and the connection table it delivers through, borrowed together.
    fn hub_and_table(&mut self) -> (&mut Hub, Table<'_>) {
        let table = Table {
            conns: &mut self.conns,
            dirty: &mut self.dirty,
            timers: &mut self.timers,
            stats: &mut self.stats,
            input_memory: &mut self.input_memory,
            scratch: &mut self.scratch,
            now: self.now,
        };
        (&mut self.hub, table)
    }

    /// Queues what `key`'s channel got this turn, before the server closes it: a subscriber
    /// gets every message published before its close.
    fn settle_channel_of(&mut self, key: usize) {
        if let Some(Phase::Open { sub, .. }) = self.conns.get(key).map(|c| &c.phase) {
            let channel = sub.channel;
            let (hub, mut table) = self.hub_and_table();
            hub.settle(channel, &mut table);
        }
    }

    fn leave(&mut self, sub: Subscription) {
        let now = self.now;
        let (hub, mut table) = self.hub_and_table();
        if let Some(moved) = hub.unsubscribe(sub, now, &mut table) {
            if let Some(Phase::Open { sub: s, .. }) =
                self.conns.get_mut(moved).map(|c| &mut c.phase)
            {
                s.slot = sub.slot;
            }
        }
    }

    fn remove(&mut self, key: usize) {
        if let Some(mut conn) = self.conns.try_remove(key) {
            self.input_memory -= conn.input_counted;
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
            self.count_input(key); // An idle close drops what it was receiving.
            self.schedule(key);
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
            let before = conn.out.queued_bytes();
            let ok = conn
                .flush(&mut self.stats, &mut self.scratch)
                .and_then(|_| conn.update_interest(self.poll.registry(), Token(key)));
            if let Phase::Closing { deadline, .. } = &mut conn.phase {
                if conn.out.queued_bytes() < before {
                    // A closing connection is given up after `--close-timeout` without
                    // progress, not while its last answers are still being read.
                    *deadline = self.now + self.config.close_timeout;
                }
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

/// Binds a non-blocking listener with a deep accept queue. mio's own `bind` listens with a
/// backlog of 128, which a burst of connects overflows: every dropped SYN then costs its
/// client a one-second retransmit. The kernel caps the value at `net.core.somaxconn`.
fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(config::LISTEN_BACKLOG)?;
    Ok(TcpListener::from_std(socket.into()))
}
