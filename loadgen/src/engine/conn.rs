//! One client connection: socket, buffers and reader state. With `worker.rs`'s poll call, the
//! only code that touches sockets (connect, read, write, close).

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr};

use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use socket2::{Domain, Protocol, Socket, Type};

use crate::stats::{Cause, SeqTracker};
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
        }
    }

    /// The same connection, to target `target` of the plan.
    pub fn to(mut self, target: u32) -> Conn {
        self.target = target;
        self
    }

    /// Starts a non-blocking connect to `target`, bound first to `source` when given (so the
    /// source address, not the kernel's default, picks the ephemeral port), and registers it.
    pub fn open(
        &mut self,
        target: SocketAddr,
        source: Option<IpAddr>,
        registry: &Registry,
        token: Token,
    ) -> Result<(), Cause> {
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

    /// One `read` into `buf`: `Ok(0)` is end of stream.
    pub fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.sock.as_mut() {
            Some(s) => s.read(buf),
            None => Ok(0),
        }
    }

    /// Whether bytes are queued for the socket.
    pub fn has_output(&self) -> bool {
        self.wpos < self.wbuf.len()
    }

    /// Writes queued bytes until done or `WouldBlock` (then the next writable event resumes).
    pub fn flush(&mut self) -> io::Result<()> {
        let Some(sock) = self.sock.as_mut() else {
            return Ok(());
        };
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
    }
}
