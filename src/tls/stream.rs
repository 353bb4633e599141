//! One connection's TLS transport: a `rustls::ServerConnection` driven over whatever
//! `Read + Write` the connection owns (its socket; a pipe in the tests), fed from the
//! connection's [`OutQueue`] of shared frames.
//!
//! - **Encrypted once per connection, encoded once per process**: the queue holds the same
//!   shared frames as for a plain connection; [`TlsStream::flush`] hands everything queued to
//!   rustls in one `writer().write_vectored` of the queue's slices, so the frames of a turn
//!   become as few records as their size allows (a record holds up to 16 KiB and spans frames),
//!   never one record per frame, and then writes the records with `write_tls` (one `writev`).
//! - **Backpressure**: rustls' output buffer is capped at [`TLS_BUFFER_LIMIT`], and it is fed
//!   only once everything it produced before has been written to the socket. So what
//!   `--max-backpressure` does not see (plaintext already taken out of the queue and encrypted
//!   but not yet sent) is bounded by that cap, like the kernel's socket buffer; the rest waits
//!   in the queue, counted as for a plain connection.
//! - **Reads** drain the socket until `WouldBlock` (mio is edge-triggered): each `read_tls`
//!   is followed by `process_new_packets`, and the plaintext goes into the loop's shared read
//!   buffer. A read that comes back short therefore means the socket was drained, as for a
//!   plain connection, except right after the peer's EOF (see [`TlsStream::more_buffered`]).
//! - **Idle**: after a flush rustls holds no records, and after its plaintext is read no
//!   plaintext; what an idle connection keeps is rustls' own state (its keys, and the 4 KiB
//!   record buffer it reads into).
//! - **Errors** are counted by [`ErrorKind`]; after a fatal one the alert rustls queued is
//!   written if the socket takes it, and the connection is closed.

use std::io::{self, IoSlice, Read, Write};
use std::sync::Arc;

use rustls::{ServerConfig, ServerConnection};

use crate::broadcast::OutQueue;
use crate::metrics::Stats;

/// Most ciphertext rustls may hold for a connection (see the module doc): four full records,
/// so one flush still fills a socket buffer in a few writes.
pub const TLS_BUFFER_LIMIT: usize = 64 * 1024;

/// Most queue entries handed to rustls in one `write_vectored`: 256 frames of 64 bytes
/// already fill a 16 KiB record, so more slices would not save a record. (The hub also
/// batches a channel's frames of a turn into one entry, so a long queue is rare.)
pub const TLS_IOVECS: usize = 256;

/// Why a TLS connection failed, as `fanout_tls_errors_total{kind}` counts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The first bytes are not a TLS record: plaintext (HTTP, most likely) sent to the TLS port.
    Plaintext,
    /// The handshake failed: no protocol version, cipher suite or ALPN protocol in common, or a
    /// peer that broke the handshake's rules.
    Handshake,
    /// The peer sent a fatal alert (a browser that does not trust the certificate sends
    /// `bad_certificate` or `unknown_ca`).
    Alert,
    /// A malformed record, or one that does not decrypt, after the first bytes.
    BadRecord,
    /// The handshake did not complete within `--handshake-timeout`.
    HandshakeTimeout,
    /// Anything else.
    Other,
}

impl ErrorKind {
    /// Every kind, in the order of [`Stats::tls_errors`].
    pub const ALL: [ErrorKind; 6] = [
        ErrorKind::Plaintext,
        ErrorKind::Handshake,
        ErrorKind::Alert,
        ErrorKind::BadRecord,
        ErrorKind::HandshakeTimeout,
        ErrorKind::Other,
    ];

    /// Its `kind` label.
    pub fn label(self) -> &'static str {
        match self {
            ErrorKind::Plaintext => "plaintext",
            ErrorKind::Handshake => "handshake",
            ErrorKind::Alert => "alert",
            ErrorKind::BadRecord => "bad_record",
            ErrorKind::HandshakeTimeout => "handshake_timeout",
            ErrorKind::Other => "other",
        }
    }

    /// Counts one in `stats`.
    pub fn count(self, stats: &mut Stats) {
        stats.tls_errors[self as usize] += 1;
    }

    /// The kind of a rustls error; `first` says whether it came from the peer's first record.
    pub fn of(e: &rustls::Error, first: bool) -> ErrorKind {
        use rustls::Error as E;
        match e {
            E::InvalidMessage(_) if first => ErrorKind::Plaintext,
            E::InvalidMessage(_) | E::DecryptError => ErrorKind::BadRecord,
            E::AlertReceived(_) => ErrorKind::Alert,
            E::PeerIncompatible(_)
            | E::PeerMisbehaved(_)
            | E::NoApplicationProtocol
            | E::InappropriateMessage { .. }
            | E::InappropriateHandshakeMessage { .. } => ErrorKind::Handshake,
            _ => ErrorKind::Other,
        }
    }
}

/// What [`TlsStream::flush`] achieved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Written {
    /// The queue and rustls' records are all written (and, when closing, `close_notify`).
    All,
    /// The socket would block: wait for its writable event.
    Blocked,
    /// rustls takes no data yet (the handshake is not done): wait for the peer.
    Held,
}

/// A connection's TLS state (see the module doc).
#[derive(Debug)]
pub struct TlsStream {
    conn: ServerConnection,
    /// The peer's EOF or `close_notify` has been seen; it is reported once the plaintext
    /// before it has been read.
    eof: bool,
    /// Some record from the peer was processed (a bad first record is plaintext, see
    /// [`ErrorKind::Plaintext`]).
    started: bool,
    /// Counted in `fanout_tls_handshakes_total`.
    handshaken: bool,
    /// Queued after the last bytes of a closing connection.
    close_notify_sent: bool,
}

impl TlsStream {
    /// A server-side TLS connection with `config`.
    pub fn new(config: Arc<ServerConfig>) -> Result<TlsStream, rustls::Error> {
        let mut conn = ServerConnection::new(config)?;
        conn.set_buffer_limit(Some(TLS_BUFFER_LIMIT));
        Ok(TlsStream {
            conn,
            eof: false,
            started: false,
            handshaken: false,
            close_notify_sent: false,
        })
    }

    /// Whether the handshake is still under way.
    pub fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    /// Whether rustls holds records to write (handshake messages, alerts, data).
    pub fn wants_write(&self) -> bool {
        self.conn.wants_write()
    }

    /// Whether a read shorter than the buffer may still leave something to read: the peer's
    /// EOF, seen while reading the plaintext before it.
    pub fn more_buffered(&self) -> bool {
        self.eof
    }

    /// The rustls connection (what was negotiated).
    pub fn connection(&self) -> &ServerConnection {
        &self.conn
    }

    /// Reads plaintext into `buf`, reading and decrypting records from `io` until `buf` is
    /// full or `io` would block. `Ok(0)` is the peer's end (with or without `close_notify`);
    /// `WouldBlock` means nothing is ready. A TLS error is counted in `stats` and returned as
    /// `InvalidData`, after a best-effort write of the alert rustls queued.
    pub fn read(
        &mut self,
        io: &mut (impl Read + Write),
        buf: &mut [u8],
        stats: &mut Stats,
    ) -> io::Result<usize> {
        let mut filled = 0;
        loop {
            while filled < buf.len() {
                match self.conn.reader().read(&mut buf[filled..]) {
                    Ok(0) => {
                        self.eof = true;
                        break;
                    }
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                        self.eof = true; // A TCP EOF without close_notify: an end all the same.
                        break;
                    }
                    Err(e) => return Err(e),
                }
            }
            if filled == buf.len() || self.eof {
                return Ok(filled);
            }
            match self.conn.read_tls(io) {
                Ok(n) => {
                    stats.bytes_in += n as u64;
                    self.process(io, stats)?;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && filled > 0 => return Ok(filled),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Processes the records just read; counts a completed handshake or an error.
    fn process(&mut self, io: &mut impl Write, stats: &mut Stats) -> io::Result<()> {
        let first = !self.started;
        self.started = true;
        if let Err(e) = self.conn.process_new_packets() {
            ErrorKind::of(&e, first).count(stats);
            // The alert rustls queued, if the socket takes it; the connection is closed anyway.
            let _ = self.conn.write_tls(io);
            return Err(io::Error::new(io::ErrorKind::InvalidData, e));
        }
        if !self.handshaken && !self.conn.is_handshaking() {
            self.handshaken = true;
            stats.tls_handshakes += 1;
        }
        Ok(())
    }

    /// Writes what rustls holds, then encrypts what `out` holds (all of it in one
    /// `write_vectored`, up to [`TLS_BUFFER_LIMIT`]) and writes that, until both are empty or
    /// `io` would block. With `closing`, `close_notify` follows the last byte.
    pub fn flush(
        &mut self,
        io: &mut impl Write,
        out: &mut OutQueue,
        closing: bool,
        stats: &mut Stats,
    ) -> io::Result<Written> {
        loop {
            while self.conn.wants_write() {
                stats.sends += 1;
                match self.conn.write_tls(io) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(n) => stats.bytes_out += n as u64,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        stats.sends_blocked += 1;
                        return Ok(Written::Blocked);
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            if out.is_empty() {
                if closing && !self.close_notify_sent {
                    self.close_notify_sent = true;
                    self.conn.send_close_notify();
                    continue;
                }
                return Ok(Written::All);
            }
            if self.conn.is_handshaking() {
                return Ok(Written::Held);
            }
            let mut iov = [IoSlice::new(&[]); TLS_IOVECS];
            let n = out.iovecs(&mut iov);
            let taken = self.conn.writer().write_vectored(&iov[..n])?;
            if taken == 0 {
                return Ok(Written::Held);
            }
            out.advance(taken);
        }
    }
}

#[cfg(test)]
#[path = "stream_tests.rs"]
mod tests;
