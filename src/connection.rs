//! One client connection: its socket, its transport, its phase, and its outbound queue.
//!
//! With the event loop in `server.rs`, this is the only code that reads from or writes to a
//! socket. Protocol decisions are made by the sans-I/O core ([`crate::proto`]); this file moves
//! bytes and derives the poll [`Interest`] from the connection's state instead of tracking it by
//! hand.
//!
//! The [`Transport`] is plain TCP or TLS (as in rustls' mio server): the same queue of shared
//! frames feeds either, and everything above this file sees plaintext only. A TLS connection
//! also wants to be written when rustls holds records (handshake messages, alerts), and sends
//! `close_notify` after its last bytes, before our FIN.

use std::io::{self, IoSlice, Read, Write};
use std::net::Shutdown;
use std::time::Instant;

use mio::net::TcpStream;
use mio::{Interest, Token};

use crate::auth::Bucket;
use crate::broadcast::{MAX_IOVECS, OutQueue, SharedFrame};
use crate::hub::Subscription;
use crate::metrics::Stats;
use crate::proto::deflate::Agreed;
use crate::proto::session::Session;
use crate::tls::stream::{TlsStream, Written};

/// What carries a connection's bytes.
#[derive(Debug)]
pub enum Transport {
    /// Plain TCP: the queue is written to the socket as it is.
    Plain,
    /// TLS (`--tls-cert`): the queue is encrypted per connection (boxed: a plain connection
    /// carries only the pointer's room).
    Tls(Box<TlsStream>),
}

/// Where a connection is in its life.
#[derive(Debug)]
pub enum Phase {
    /// Reading HTTP requests: the upgrade handshake, or API calls on a persistent connection.
    /// `buf` is bounded by `MAX_HEADER_BYTES` plus `--max-message` (a publish body), or by one
    /// read of pipelined requests.
    Http {
        /// Request bytes received and not yet answered.
        buf: Vec<u8>,
        /// When an unfinished request (or an idle persistent connection) gets 408 and closes.
        deadline: Instant,
        /// Accepted past `--max-connections`, in the small reserve kept for monitoring: only
        /// `/healthz` and `/metrics` are answered, anything else gets 503.
        reserve: bool,
    },
    /// The WebSocket is up: frames flow and the connection is subscribed.
    Open {
        /// Protocol state.
        session: Session,
        /// Where it sits in its loop's hub.
        sub: Subscription,
        /// What it may do beyond receiving.
        access: Access,
        /// What it negotiated of permessage-deflate (`--deflate`), if anything.
        deflate: Option<Agreed>,
    },
    /// The last bytes (a refusal or a close frame) are queued. When they are written our side
    /// is shut down; the connection is dropped at the peer's EOF or at `deadline`, whichever
    /// comes first. Waiting for the EOF keeps the kernel from answering unread input with a
    /// reset that could destroy the bytes we just sent.
    Closing {
        /// When to give up on the peer.
        deadline: Instant,
        /// Whether our FIN has been sent.
        write_shut: bool,
        /// Whether the peer's EOF has been seen: the connection goes as soon as our side is
        /// written out.
        peer_eof: bool,
    },
}

/// What an open connection may do beyond receiving, set at the upgrade from the flags and its
/// token. Free when no token or rate limit applies (`limits` is `None`).
#[derive(Debug)]
pub struct Access {
    /// It may publish: `--client-publish`, and with tokens, its `publish` claim.
    pub may_publish: bool,
    /// When its token expires and how fast it may publish, when either applies.
    pub limits: Option<Box<AccessLimits>>,
}

/// The costlier half of [`Access`], boxed so that connections without a token or a rate limit
/// do not carry it.
#[derive(Debug)]
pub struct AccessLimits {
    /// When its token expires: it is closed then with 1008 "token expired".
    pub expires: Option<Instant>,
    /// `--max-client-rate`.
    pub bucket: Option<Bucket>,
}

impl Access {
    /// When the token expires, if it does.
    pub fn expires(&self) -> Option<Instant> {
        self.limits.as_ref().and_then(|l| l.expires)
    }
}

/// What a flush achieved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flushed {
    /// Everything queued was written.
    All,
    /// The socket buffer is full; the rest waits for a writable event.
    Blocked,
}

/// A client connection.
#[derive(Debug)]
pub struct Connection {
    socket: TcpStream,
    /// Plain or TLS.
    pub transport: Transport,
    /// Unique for the server's lifetime: tells a timer entry for a reused slab key apart.
    pub id: u64,
    /// Where the connection is in its life.
    pub phase: Phase,
    /// Frames waiting to be written.
    pub out: OutQueue,
    /// Whether it is on the loop's list of connections to flush this turn.
    pub dirty: bool,
    /// The earliest deadline scheduled for it in the loop's timer queue.
    pub timer_at: Option<Instant>,
    /// The interest currently registered with the poller.
    registered: Interest,
    /// Reading stopped because more than `--max-backpressure` bytes wait to be written (a
    /// peer that sends requests or pings but does not read the answers); resumed once the
    /// queue drains.
    pub read_paused: bool,
    /// This connection's share of the loop's input-memory total: its
    /// [`Connection::input_bytes`] when last counted.
    pub input_counted: usize,
    /// The last send returned `WouldBlock`: nothing is written until the socket's writable
    /// event, so a subscriber that does not read costs no syscall per message it is sent.
    pub write_blocked: bool,
    /// Processing stopped before the end of what was read (the connection used its share of a
    /// turn, or its answers reached the cap): the rest waits in [`Self::stash`] (or, before
    /// the upgrade, in the request buffer) and is handled before the socket is read again.
    pub backlog: bool,
    /// WebSocket bytes read but not yet handled (see [`Self::backlog`]); empty otherwise.
    pub stash: Vec<u8>,
}

impl Connection {
    /// Registers a newly accepted socket under `token` (readable only at first).
    pub fn new(
        mut socket: TcpStream,
        token: Token,
        id: u64,
        phase: Phase,
        transport: Transport,
        registry: &mio::Registry,
    ) -> io::Result<Self> {
        registry.register(&mut socket, token, Interest::READABLE)?;
        Ok(Connection {
            socket,
            transport,
            id,
            phase,
            out: OutQueue::default(),
            dirty: false,
            timer_at: None,
            registered: Interest::READABLE,
            read_paused: false,
            input_counted: 0,
            write_blocked: false,
            backlog: false,
            stash: Vec::new(),
        })
    }

    /// Whether the connection is finished: closing, our side written out, and the peer gone.
    pub fn is_done(&self) -> bool {
        matches!(
            self.phase,
            Phase::Closing {
                write_shut: true,
                peer_eof: true,
                ..
            }
        )
    }

    /// Drops the TLS input kept and stops decrypting what follows (see
    /// [`TlsStream::discard_input`]): once closing, only the peer's end matters.
    pub fn discard_tls_input(&mut self) {
        if let Transport::Tls(tls) = &mut self.transport {
            tls.discard_input();
        }
    }

    /// Heap bytes its partly received input holds: an unfinished request (or publish body)
    /// while in the HTTP phase, an unfinished message once open, nothing once closing; with
    /// TLS also the ciphertext kept between reads (a partial record, most often).
    pub fn input_bytes(&self) -> usize {
        let tls = match &self.transport {
            Transport::Tls(tls) => tls.buffered_input(),
            Transport::Plain => 0,
        };
        tls + self.stash.capacity()
            + match &self.phase {
                Phase::Http { buf, .. } => buf.capacity(),
                Phase::Open { session, .. } => session.buffered_bytes(),
                Phase::Closing { .. } => 0,
            }
    }

    /// Brings [`Self::input_counted`] up to date; returns by how much it changed, for the
    /// process's total.
    pub fn recount_input(&mut self) -> isize {
        let now = self.input_bytes();
        let before = std::mem::replace(&mut self.input_counted, now);
        now as isize - before as isize
    }

    /// Whether data messages may be queued for it: upgraded, and no close sent or received.
    pub fn is_open(&self) -> bool {
        matches!(&self.phase, Phase::Open { session, .. } if session.is_open())
    }

    /// Starts a server-initiated close of an open WebSocket; returns the close frame to queue
    /// (see [`Session::close`]).
    pub fn close(&mut self, code: u16, reason: &str, now: Instant) -> Option<Vec<u8>> {
        match &mut self.phase {
            Phase::Open { session, .. } => session.close(code, reason, now),
            _ => None,
        }
    }

    /// Reads once into `buf` (with TLS: reads ciphertext into `scratch` and decrypts until
    /// `buf` is full or the socket would block), counting the bytes read from the socket.
    /// `Ok(0)` is the peer's EOF.
    pub fn read(
        &mut self,
        buf: &mut [u8],
        scratch: &mut Vec<u8>,
        stats: &mut Stats,
    ) -> io::Result<usize> {
        if let Transport::Tls(tls) = &mut self.transport {
            return tls.read(&mut self.socket, buf, scratch, stats);
        }
        loop {
            match self.socket.read(buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Ok(n) => {
                    stats.bytes_in += n as u64;
                    return Ok(n);
                }
                other => return other,
            }
        }
    }

    /// Whether a read shorter than the buffer may leave something to read all the same (see
    /// [`TlsStream::more_buffered`]); never for plain TCP.
    pub fn more_buffered(&self) -> bool {
        matches!(&self.transport, Transport::Tls(tls) if tls.more_buffered())
    }

    /// Whether its TLS handshake is still under way (never for plain TCP).
    pub fn tls_handshaking(&self) -> bool {
        matches!(&self.transport, Transport::Tls(tls) if tls.is_handshaking())
    }

    /// Whether anything waits to be written: queued frames, or records rustls holds.
    pub fn has_output(&self) -> bool {
        !self.out.is_empty() || matches!(&self.transport, Transport::Tls(tls) if tls.wants_write())
    }

    /// Queues a frame and reports whether the connection just became dirty.
    pub fn enqueue(&mut self, frame: SharedFrame) -> bool {
        self.out.push(frame);
        !std::mem::replace(&mut self.dirty, true)
    }

    /// Queues bytes nothing queued later may overtake, such as an HTTP response (see
    /// [`OutQueue::push_pinned`]); reports whether the connection just became dirty.
    pub fn enqueue_pinned(&mut self, frame: SharedFrame) -> bool {
        self.out.push_pinned(frame);
        !std::mem::replace(&mut self.dirty, true)
    }

    /// Queues a control frame ahead of data (see [`OutQueue::push_urgent`]); reports whether
    /// the connection just became dirty.
    pub fn enqueue_urgent(&mut self, frame: SharedFrame) -> bool {
        self.out.push_urgent(frame);
        !std::mem::replace(&mut self.dirty, true)
    }

    /// Queues a pong; when the peer is not reading (its socket is full, or its queue is past
    /// `cap`), it replaces a pong not yet started instead (see [`OutQueue::push_pong`]), so
    /// a ping flood cannot grow the queue. Reports whether the connection just became dirty.
    pub fn enqueue_pong(&mut self, frame: SharedFrame, cap: usize, stats: &mut Stats) -> bool {
        let coalesce = self.write_blocked || self.out.held_bytes() >= cap;
        if self.out.push_pong(frame, coalesce) {
            stats.pongs_coalesced += 1;
        }
        !std::mem::replace(&mut self.dirty, true)
    }

    /// Writes queued frames until the queue is empty or the socket would block (then nothing
    /// more is tried until its writable event, see [`Self::write_blocked`]), counting in
    /// `stats`; in the closing phase, shuts our side down once everything is written. Runs of
    /// small frames are gathered through `scratch` (see [`OutQueue::gather`]). With TLS the
    /// queue is encrypted through `scratch` instead ([`TlsStream::flush`]: up to 64 KiB of it
    /// into as few records as that takes, then one write), `close_notify` last when closing.
    pub fn flush(&mut self, stats: &mut Stats, scratch: &mut Vec<u8>) -> io::Result<Flushed> {
        if let Transport::Tls(tls) = &mut self.transport {
            if self.write_blocked {
                return Ok(Flushed::Blocked);
            }
            let closing = matches!(self.phase, Phase::Closing { .. });
            match tls.flush(&mut self.socket, &mut self.out, closing, scratch, stats)? {
                Written::All => {}
                Written::Held => return Ok(Flushed::Blocked),
                Written::Blocked => {
                    self.write_blocked = true;
                    return Ok(Flushed::Blocked);
                }
            }
        }
        while !self.out.is_empty() {
            if self.write_blocked {
                return Ok(Flushed::Blocked);
            }
            let mut iov = [IoSlice::new(&[]); MAX_IOVECS];
            let n = self.out.gather(scratch, &mut iov);
            stats.sends += 1;
            // `send`/`sendmsg` rather than `write`/`writev`: the socket calls skip the VFS
            // layer's per-call checks, measured at over 1 µs per delivery on this machine.
            let result = if n == 1 {
                self.socket.write(&iov[0])
            } else {
                socket2::SockRef::from(&self.socket).send_vectored(&iov[..n])
            };
            match result {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(written) => {
                    stats.bytes_out += written as u64;
                    self.out.advance(written);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    stats.sends_blocked += 1;
                    self.write_blocked = true;
                    return Ok(Flushed::Blocked);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if let Phase::Closing { write_shut, .. } = &mut self.phase
            && !*write_shut
        {
            *write_shut = true;
            // The peer may already be gone; there is nothing left to send either way.
            let _ = self.socket.shutdown(Shutdown::Write);
        }
        Ok(Flushed::All)
    }

    /// Re-registers with the poller if the interest derived from the state changed: writable
    /// only while output is waiting (see [`Self::has_output`]).
    pub fn update_interest(&mut self, registry: &mio::Registry, token: Token) -> io::Result<()> {
        let wanted = if self.has_output() {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        if wanted != self.registered {
            registry.reregister(&mut self.socket, token, wanted)?;
            self.registered = wanted;
        }
        Ok(())
    }

    /// Removes the socket from the poller (before it is dropped).
    pub fn deregister(&mut self, registry: &mio::Registry) {
        let _ = registry.deregister(&mut self.socket);
    }

    /// The earliest moment a timer of this connection is due.
    pub fn deadline(&self) -> Option<Instant> {
        match &self.phase {
            Phase::Http { deadline, .. } | Phase::Closing { deadline, .. } => Some(*deadline),
            // A token's expiry matters until the session closes (for any reason).
            Phase::Open {
                session, access, ..
            } => match (
                session.poll_timeout(),
                access.expires().filter(|_| session.is_open()),
            ) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            },
        }
    }
}
