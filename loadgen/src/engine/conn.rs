//! One client connection: socket, buffers and reader state. With `worker.rs`'s poll call, the
//! only code that touches sockets (connect, read, write, close).
//!
//! The transport is plain TCP or TLS (`wss://`, a `rustls::ClientConnection`, sans-I/O: this
//! file feeds it the socket's bytes). Above it nothing changes: `read` hands out plaintext and
//! `flush` takes the same write buffer. The TLS handshake needs no state of its own: the upgrade
//! request is written into rustls as soon as TCP connects, rustls holds it until its handshake
//! is done, and the WebSocket handshake's timeout covers both. The socket stays registered for
//! reads and writes (edge-triggered), so a handshake message rustls still wants to write goes
//! out on the next writable event, and `has_output` counts it.

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use rustls::{ClientConfig, ClientConnection};
use socket2::{Domain, Protocol, Socket, Type};

use crate::stats::{Cause, SeqTracker};
use crate::target::Target;
use crate::wire::reader::FrameReader;

/// Linux's `EINPROGRESS`: a non-blocking connect that is under way.
const EINPROGRESS: i32 = 115;

/// A write buffer that grew past this is released once drained, so a burst does not pin
/// memory on thousands of connections.
const KEEP_WBUF: usize = 64 * 1024;

/// Where a connection is in its life.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum State {
    /// No socket (not opened yet, or closed and waiting to be reopened).
    Idle,
    /// TCP connect in progress.
    Connecting,
    /// Upgrade request sent; waiting for the `101` whose accept value is this.
    Handshaking(String),
    /// Subscribed: frames flow.
    Open,
}

/// A client connection and everything loadgen keeps for it.
#[derive(Debug)]
pub struct Conn {
    /// Index of the channel it subscribes to.
    pub channel: u32,
    /// Index of the target (node) it connects to.
    pub target: u32,
    /// Its publisher number, when it publishes.
    pub publisher: Option<u32>,
    /// Lifecycle state.
    pub state: State,
    /// When the current connect attempt began (ns since the run's start), for the timeout.
    pub since_ns: u64,
    /// Handshake response bytes until the head is complete (empty afterwards).
    pub rbuf: Vec<u8>,
    /// Bytes queued for the socket; `wpos` of them are already written.
    pub wbuf: Vec<u8>,
    wpos: usize,
    /// Frame reader state (partial headers and message heads).
    pub reader: FrameReader,
    /// Sequence tracking per publisher heard in the current trial.
    pub trackers: Vec<(u32, SeqTracker)>,
    sock: Option<TcpStream>,
    transport: Transport,
}

/// What carries the bytes: the socket itself, or TLS over it.
#[derive(Debug)]
enum Transport {
    /// `ws://`: bytes go straight to the socket.
    Plain,
    /// `wss://`: rustls encrypts `wbuf` and decrypts what is read (boxed: its state is large).
    Tls(Box<ClientConnection>),
}

impl Conn {
    /// A connection that is not open yet.
    pub fn new(channel: u32, publisher: Option<u32>) -> Conn {
        Conn {
            channel,
            target: 0,
            publisher,
            state: State::Idle,
            since_ns: 0,
            rbuf: Vec::new(),
            wbuf: Vec::new(),
            wpos: 0,
            reader: FrameReader::default(),
            trackers: Vec::new(),
            sock: None,
            transport: Transport::Plain,
        }
    }

    /// The same connection, to target `target` of the plan.
    pub fn to(mut self, target: u32) -> Conn {
        self.target = target;
        self
    }

    /// Starts a non-blocking connect to `target`, bound first to `source` when given (so the
    /// source address, not the kernel's default, picks the ephemeral port), and registers it.
    /// A `wss://` target gets a TLS client of `tls` (the plan has one whenever a target is
    /// `wss://`), whose ClientHello leaves with the first flush.
    pub fn open(
        &mut self,
        target: &Target,
        tls: Option<&Arc<ClientConfig>>,
        source: Option<IpAddr>,
        registry: &Registry,
        token: Token,
    ) -> Result<(), Cause> {
        self.transport = match (target.tls, tls) {
            (false, _) => Transport::Plain,
            (true, Some(config)) => {
                let mut tls = ClientConnection::new(config.clone(), target.server_name.clone())
                    .map_err(|_| Cause::Tls)?;
                // `wbuf` is the queue: rustls takes all of it, and holds the upgrade request
                // until its handshake is done.
                tls.set_buffer_limit(None);
                Transport::Tls(Box::new(tls))
            }
            (true, None) => return Err(Cause::Tls),
        };
        let target = target.addr;
        let sock = Socket::new(
            Domain::for_address(target),
            Type::STREAM,
            Some(Protocol::TCP),
        )
        .map_err(|e| Cause::of(&e))?;
        let setup = || -> io::Result<()> {
            sock.set_nonblocking(true)?;
            sock.set_tcp_nodelay(true)?;
            if let Some(ip) = source {
                // Lets a port whose previous connection is in TIME_WAIT be bound again.
                sock.set_reuse_address(true)?;
                sock.bind(&SocketAddr::new(ip, 0).into())?;
            }
            match sock.connect(&target.into()) {
                Err(e) if e.raw_os_error() != Some(EINPROGRESS) => Err(e),
                _ => Ok(()),
            }
        };
        setup().map_err(|e| Cause::of(&e))?;
        let mut stream = TcpStream::from_std(std::net::TcpStream::from(sock));
        registry
            .register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)
            .map_err(|e| Cause::of(&e))?;
        self.sock = Some(stream);
        self.state = State::Connecting;
        Ok(())
    }

    /// After an event on a connecting socket: `Ok(true)` once connected, `Ok(false)` while the
    /// connect is still in progress (a spurious event), `Err` when it failed.
    pub fn check_connected(&mut self) -> Result<bool, Cause> {
        let sock = self.sock.as_ref().ok_or(Cause::Reset)?;
        if let Some(e) = sock.take_error().map_err(|e| Cause::of(&e))? {
            return Err(Cause::of(&e));
        }
        match sock.peer_addr() {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
            Err(e) => Err(Cause::of(&e)),
        }
    }

    /// Reads plaintext into `buf`: `Ok(0)` is end of stream. A plain read is one `read`; over
    /// TLS, records are read and decrypted until `buf` is full or the socket would block, so a
    /// short read still means the socket is drained. A TLS error comes back as an `io::Error`
    /// wrapping the `rustls::Error`, which [`Cause::of`] counts as `tls`.
    pub fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(sock) = self.sock.as_mut() else {
            return Ok(0);
        };
        let tls = match &mut self.transport {
            Transport::Plain => return sock.read(buf),
            Transport::Tls(tls) => tls,
        };
        let mut filled = 0;
        loop {
            match tls.reader().read(&mut buf[filled..]) {
                Ok(0) => return Ok(filled), // close_notify: end of stream once `buf` is taken
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return if filled > 0 { Ok(filled) } else { Err(e) },
            }
            if filled == buf.len() {
                return Ok(filled);
            }
            match tls.read_tls(sock) {
                Ok(0) => return Ok(filled), // end of stream (0 now, or on the next call)
                Ok(_) => {}
                Err(e) if filled > 0 && e.kind() == io::ErrorKind::WouldBlock => {
                    return Ok(filled);
                }
                Err(e) => return Err(e),
            }
            if let Err(e) = tls.process_new_packets() {
                // The alert rustls queued for the server leaves with the close's last flush.
                return Err(io::Error::new(io::ErrorKind::InvalidData, e));
            }
        }
    }

    /// Whether bytes are queued for the socket (over TLS: plaintext, or records rustls holds).
    pub fn has_output(&self) -> bool {
        self.wpos < self.wbuf.len()
            || matches!(&self.transport, Transport::Tls(tls) if tls.wants_write())
    }

    /// Writes queued bytes until done or `WouldBlock` (then the next writable event resumes).
    pub fn flush(&mut self) -> io::Result<()> {
        let Some(sock) = self.sock.as_mut() else {
            return Ok(());
        };
        if let Transport::Tls(tls) = &mut self.transport {
            if self.wpos < self.wbuf.len() {
                // No limit is set, so rustls takes it all (as records, or held until the
                // handshake is done).
                tls.writer().write_all(&self.wbuf[self.wpos..])?;
                self.wpos = self.wbuf.len();
            }
            while tls.wants_write() {
                match tls.write_tls(sock) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            // All of `wbuf` is rustls' now: below, only the reset of the buffer applies.
        }
        while self.wpos < self.wbuf.len() {
            match sock.write(&self.wbuf[self.wpos..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.wpos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.wbuf.clear();
        self.wpos = 0;
        if self.wbuf.capacity() > KEEP_WBUF {
            self.wbuf = Vec::new();
        }
        Ok(())
    }

    /// Closes the socket (best effort: queued bytes get one last write) and forgets all
    /// per-connection state, so the connection can be opened again.
    pub fn close(&mut self, registry: &Registry) {
        let _ = self.flush();
        if let Some(mut s) = self.sock.take() {
            let _ = registry.deregister(&mut s);
        }
        self.state = State::Idle;
        self.rbuf = Vec::new();
        self.wbuf = Vec::new();
        self.wpos = 0;
        self.reader = FrameReader::default();
        self.trackers = Vec::new();
        self.transport = Transport::Plain;
    }
}
