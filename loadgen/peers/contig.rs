//! `contig-peer`: a *reference* peer for loadgen comparisons — not fanout's code, and not a
//! server to deploy. It shows what a minimal mio server gets out of this machine when every
//! subscriber's frames of a poll turn leave in one contiguous `write`, so `compare.sh` can set
//! fanout's figures beside that ceiling.
//!
//! The client contract, as loadgen uses it (strict validation skipped):
//! - the channel is the first token offered in `Sec-WebSocket-Protocol`, echoed in the `101`
//!   with the `Sec-WebSocket-Accept` for the client's key (`400` when none is offered);
//! - each data message a client sends goes to every *other* subscriber of its channel; pings
//!   are answered, a close is echoed. Fragmented messages are not supported (the connection is
//!   dropped), and neither is anything else loadgen never sends.
//!
//! Two ways to fan out, chosen with `--mode`:
//! - `copy` (default): each message is framed once and copied into the output buffer of every
//!   other subscriber; at the end of the turn each connection with output gets one `write`.
//! - `shared`: a channel's frames of one turn are appended to one buffer, and at the end of the
//!   turn that same buffer is written to every subscriber with one `write` each — no copy per
//!   subscriber. A subscriber that published in the turn gets its own copy without its own
//!   frames; one whose socket is full gets the rest copied into its output buffer, which is
//!   then written (in order) when the socket is writable again.
//!
//! One thread, one `Poll`, edge-triggered: reads and accepts are drained until `WouldBlock`, a
//! short write waits for the next writable event. A connection with more than 64 MiB queued is
//! dropped as a slow consumer. The sans-I/O pieces — header parsing, unmasking and the accept
//! key — come from `fanout::proto`, the codec loadgen itself uses; the loop, the buffers and the
//! fan-out are this file's own.
//!
//! Usage: `contig-peer [--listen 127.0.0.1:9004] [--mode copy|shared]`.

use std::collections::HashMap;
use std::io::{self, ErrorKind, Read, Write};
use std::net::SocketAddr;

use fanout::proto::Decoded;
use fanout::proto::frame::{FrameHeader, OpCode, Role, parse_header, write_header};
use fanout::proto::handshake::accept_key;
use fanout::proto::mask::apply_mask;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};

const LISTENER: Token = Token(usize::MAX);
/// Bytes per `read`.
const READ_BUFFER: usize = 64 * 1024;
/// A request head longer than this is refused (the connection is dropped).
const MAX_HEAD: usize = 8 * 1024;
/// A subscriber with more than this queued is dropped as a slow consumer.
const MAX_QUEUED: usize = 64 << 20;

struct Conn {
    sock: TcpStream,
    /// Index into `Peer::channels` once upgraded.
    channel: Option<usize>,
    /// Read but not yet handled: part of a request head or of a frame.
    inbuf: Vec<u8>,
    /// Queued for the socket; `out_pos` bytes of it are written.
    out: Vec<u8>,
    out_pos: usize,
    /// In this turn's list of connections to write.
    dirty: bool,
    /// The last write was short: wait for a writable event before writing again.
    blocked: bool,
    /// Close once `out` is written (after a refusal or a close frame).
    closing: bool,
}

impl Conn {
    fn queued(&self) -> usize {
        self.out.len() - self.out_pos
    }

    /// Puts it on the turn's write list (once).
    fn mark(&mut self, i: usize, dirty: &mut Vec<usize>) {
        if !self.dirty {
            self.dirty = true;
            dirty.push(i);
        }
    }
}

#[derive(Default)]
struct Channel {
    members: Vec<usize>,
    /// `shared` mode: the frames published in this turn, and (publisher, start, end) of each.
    turn: Vec<u8>,
    spans: Vec<(usize, usize, usize)>,
}

struct Peer {
    /// `--mode shared` (else `copy`).
    shared: bool,
    poll: Poll,
    listener: TcpListener,
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    names: HashMap<String, usize>,
    channels: Vec<Channel>,
    /// Connections with output to write at the end of the turn.
    dirty: Vec<usize>,
    /// `shared` mode: channels with frames in this turn.
    hot: Vec<usize>,
    /// Connections to close at the end of the turn.
    doomed: Vec<usize>,
    scratch: Vec<u8>,
    frame: Vec<u8>,
}

fn main() -> io::Result<()> {
    let (mut listen, mut shared) = ("127.0.0.1:9004".to_string(), false);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match (a.as_str(), args.next()) {
            ("--listen", Some(v)) => listen = v,
            ("--mode", Some(m)) if m == "copy" || m == "shared" => shared = m == "shared",
            _ => {
                eprintln!("usage: contig-peer [--listen ADDR] [--mode copy|shared]");
                std::process::exit(2);
            }
        }
    }
    let bad = |e| io::Error::new(ErrorKind::InvalidInput, format!("--listen {listen}: {e}"));
    let listen: SocketAddr = listen.parse().map_err(bad)?;
    let poll = Poll::new()?;
    let mut listener = TcpListener::bind(listen)?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    let mode = if shared { "shared" } else { "copy" };
    eprintln!(
        "contig-peer: {mode} mode, listening on {}",
        listener.local_addr()?
    );
    let mut peer = Peer {
        shared,
        poll,
        listener,
        conns: Vec::new(),
        free: Vec::new(),
        names: HashMap::new(),
        channels: Vec::new(),
        dirty: Vec::new(),
        hot: Vec::new(),
        doomed: Vec::new(),
        scratch: vec![0; READ_BUFFER],
        frame: Vec::new(),
    };
    let mut events = Events::with_capacity(1024);
    loop {
        match peer.poll.poll(&mut events, None) {
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            result => result?,
        }
        for ev in events.iter() {
            if ev.token() == LISTENER {
                peer.accept();
                continue;
            }
            let i = ev.token().0;
            if ev.is_writable()
                && let Some(c) = peer.conns.get_mut(i).and_then(Option::as_mut)
            {
                c.blocked = false;
                if c.queued() > 0 {
                    c.mark(i, &mut peer.dirty);
                }
            }
            if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                peer.read(i);
            }
        }
        peer.end_turn();
    }
}

impl Peer {
    fn accept(&mut self) {
        loop {
            let (mut sock, _) = match self.listener.accept() {
                Ok(s) => s,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return, // WouldBlock, or out of descriptors: wait for the next edge
            };
            let _ = sock.set_nodelay(true);
            let i = self.free.pop().unwrap_or(self.conns.len());
            let both = Interest::READABLE | Interest::WRITABLE;
            if self
                .poll
                .registry()
                .register(&mut sock, Token(i), both)
                .is_err()
            {
                self.free.push(i);
                continue;
            }
            let (inbuf, out) = (Vec::new(), Vec::new());
            let (channel, out_pos, dirty, blocked, closing) = (None, 0, false, false, false);
            let conn = Conn {
                sock,
                channel,
                inbuf,
                out,
                out_pos,
                dirty,
                blocked,
                closing,
            };
            match self.conns.get_mut(i) {
                Some(slot) => *slot = Some(conn),
                None => self.conns.push(Some(conn)),
            }
        }
    }

    /// Reads until `WouldBlock`, handling what arrived after each read.
    fn read(&mut self, i: usize) {
        loop {
            let Some(c) = self.conns.get_mut(i).and_then(Option::as_mut) else {
                return;
            };
            if c.closing {
                return;
            }
            match c.sock.read(&mut self.scratch) {
                Ok(0) => return self.doomed.push(i),
                Ok(n) => c.inbuf.extend_from_slice(&self.scratch[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return self.doomed.push(i),
            }
            let mut inbuf = std::mem::take(&mut c.inbuf);
            let Some(used) = self.handle(i, &mut inbuf) else {
                return self.doomed.push(i);
            };
            inbuf.drain(..used);
            if let Some(c) = self.conns[i].as_mut() {
                c.inbuf = inbuf;
            }
        }
    }

    /// Handles the request head or the whole frames at the start of `buf`; returns the bytes
    /// used, or `None` when the connection is to be dropped.
    fn handle(&mut self, i: usize, buf: &mut [u8]) -> Option<usize> {
        let mut at = 0;
        if self.conns[i].as_ref().is_some_and(|c| c.channel.is_none()) {
            match buf.windows(4).position(|w| w == b"\r\n\r\n") {
                Some(end) => {
                    self.upgrade(i, &buf[..end + 4]);
                    at = end + 4;
                }
                None if buf.len() > MAX_HEAD => return None,
                None => {}
            }
            if at == 0 || self.conns[i].as_ref().is_none_or(|c| c.closing) {
                return Some(at);
            }
        }
        while at < buf.len() {
            let (h, len) = match parse_header(&buf[at..], Role::Server).ok()? {
                Decoded::Complete(h) => h,
                Decoded::Partial => break,
            };
            // `parse_header` refuses lengths of 2^63 and more: this cannot overflow.
            let (start, end) = (at + len, at + len + h.payload_len as usize);
            if end > buf.len() {
                break;
            }
            let payload = &mut buf[start..end];
            if let Some(key) = h.mask {
                apply_mask(payload, key, 0);
            }
            at = end;
            match h.opcode {
                OpCode::Text | OpCode::Binary if h.fin => self.publish(i, h.opcode, payload),
                OpCode::Ping => self.reply(i, OpCode::Pong, payload),
                OpCode::Pong => {}
                OpCode::Close => {
                    self.reply(i, OpCode::Close, &payload[..payload.len().min(2)]);
                    if let Some(c) = self.conns[i].as_mut() {
                        c.closing = true;
                    }
                    return Some(buf.len());
                }
                _ => return None, // a fragment: not supported
            }
        }
        Some(at)
    }

    /// Answers a request head: `101` and a subscription, or `400`.
    fn upgrade(&mut self, i: usize, head: &[u8]) {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        let _ = req.parse(head);
        let header = |name: &str| {
            req.headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case(name))
                .map(|h| h.value)
        };
        let key = header("sec-websocket-key");
        let channel = header("sec-websocket-protocol")
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|v| v.split(',').next())
            .map(str::trim)
            .filter(|v| !v.is_empty());
        let Some(c) = self.conns[i].as_mut() else {
            return;
        };
        let (Some(key), Some(name)) = (key, channel) else {
            c.out
                .extend_from_slice(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
            c.closing = true;
            return c.mark(i, &mut self.dirty);
        };
        let response = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {}\r\nSec-WebSocket-Protocol: {name}\r\n\r\n",
            accept_key(key)
        );
        c.out.extend_from_slice(response.as_bytes());
        let next = self.channels.len();
        let ch = *self.names.entry(name.to_string()).or_insert(next);
        if ch == next {
            self.channels.push(Channel::default());
        }
        self.channels[ch].members.push(i);
        c.channel = Some(ch);
        c.mark(i, &mut self.dirty);
    }

    /// Queues one unmasked frame for connection `i` alone.
    fn reply(&mut self, i: usize, opcode: OpCode, payload: &[u8]) {
        if let Some(c) = self.conns[i].as_mut() {
            write_frame(&mut c.out, opcode, payload);
            c.mark(i, &mut self.dirty);
        }
    }

    /// A message from `from`: to every other member of its channel.
    fn publish(&mut self, from: usize, opcode: OpCode, payload: &[u8]) {
        let Some(ch) = self.conns[from].as_ref().and_then(|c| c.channel) else {
            return;
        };
        let channel = &mut self.channels[ch];
        if self.shared {
            if channel.turn.is_empty() {
                self.hot.push(ch);
            }
            let start = channel.turn.len();
            write_frame(&mut channel.turn, opcode, payload);
            channel.spans.push((from, start, channel.turn.len()));
            return;
        }
        self.frame.clear();
        write_frame(&mut self.frame, opcode, payload);
        for &m in &channel.members {
            if m == from {
                continue;
            }
            let Some(c) = self.conns[m].as_mut() else {
                continue;
            };
            c.out.extend_from_slice(&self.frame);
            c.mark(m, &mut self.dirty);
        }
    }

    /// The end of a poll turn: `shared` channels go out, then one write per dirty connection,
    /// then the doomed connections close.
    fn end_turn(&mut self) {
        for ch in std::mem::take(&mut self.hot) {
            self.write_shared(ch);
        }
        for i in std::mem::take(&mut self.dirty) {
            let Some(c) = self.conns[i].as_mut() else {
                continue;
            };
            c.dirty = false;
            if c.queued() > MAX_QUEUED {
                self.doomed.push(i);
                continue;
            }
            if c.blocked || c.queued() == 0 {
                continue;
            }
            let Some(n) = try_write(&mut c.sock, &c.out[c.out_pos..]) else {
                self.doomed.push(i);
                continue;
            };
            c.out_pos += n;
            if c.queued() > 0 {
                c.blocked = true;
            } else {
                c.out.clear();
                c.out_pos = 0;
                if c.closing {
                    self.doomed.push(i);
                }
            }
        }
        for i in std::mem::take(&mut self.doomed) {
            self.close(i);
        }
    }

    /// `shared` mode: one channel's frames of this turn to every member but their publishers.
    fn write_shared(&mut self, ch: usize) {
        let channel = &mut self.channels[ch];
        let (turn, spans) = (&channel.turn, &channel.spans);
        for &m in &channel.members {
            let Some(c) = self.conns[m].as_mut() else {
                continue;
            };
            if spans.iter().any(|s| s.0 == m) {
                // It published in this turn: everything but its own frames, copied.
                for &(_, start, end) in spans.iter().filter(|s| s.0 != m) {
                    c.out.extend_from_slice(&turn[start..end]);
                }
            } else if c.queued() > 0 || c.blocked {
                c.out.extend_from_slice(turn); // behind earlier output: keep the order
            } else {
                let Some(written) = try_write(&mut c.sock, turn) else {
                    self.doomed.push(m);
                    continue;
                };
                if written < turn.len() {
                    c.out.extend_from_slice(&turn[written..]);
                    c.blocked = true;
                }
            }
            if c.queued() > 0 {
                c.mark(m, &mut self.dirty);
            }
        }
        channel.turn.clear();
        channel.spans.clear();
    }

    fn close(&mut self, i: usize) {
        let Some(mut c) = self.conns.get_mut(i).and_then(Option::take) else {
            return;
        };
        let _ = self.poll.registry().deregister(&mut c.sock);
        if let Some(ch) = c.channel {
            let members = &mut self.channels[ch].members;
            if let Some(p) = members.iter().position(|&m| m == i) {
                members.swap_remove(p);
            }
        }
        self.free.push(i);
    }
}

/// One `write`: the bytes written (0 when the socket is full), or `None` when it failed.
fn try_write(sock: &mut TcpStream, buf: &[u8]) -> Option<usize> {
    match sock.write(buf) {
        Ok(n) => Some(n),
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => Some(0),
        Err(_) => None,
    }
}

/// Appends one unmasked, unfragmented frame.
fn write_frame(out: &mut Vec<u8>, opcode: OpCode, payload: &[u8]) {
    let header = FrameHeader {
        fin: true,
        opcode,
        mask: None,
        payload_len: payload.len() as u64,
    };
    write_header(out, &header);
    out.extend_from_slice(payload);
}
