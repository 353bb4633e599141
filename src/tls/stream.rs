//! One connection's TLS transport: a rustls `UnbufferedServerConnection` driven over
//! whatever `Read + Write` the connection owns (its socket; a pipe in the tests), fed from the
//! connection's [`OutQueue`](crate::broadcast::OutQueue) of shared frames. With rustls' unbuffered API the buffers are
//! ours, so they can be the loop's and an idle connection holds none.
//!
//! - **Encrypted once per connection, encoded once per process**: the queue holds the same
//!   shared frames as for a plain connection; [`TlsStream::flush`] encrypts up to
//!   [`TLS_BUFFER_LIMIT`] of it in one call (the frames gathered first when there are several),
//!   so the frames of a turn become as few records as their size allows (a record holds up to
//!   16 KiB and spans frames), never one record per frame, and writes the records with one
//!   `write`. Plaintext and ciphertext go through the loop's scratch buffer.
//! - **Backpressure**: records the socket did not take wait in the connection's own buffer
//!   (at most [`TLS_BUFFER_LIMIT`] and a few record headers), and nothing more is encrypted
//!   until they are written. So what `--max-backpressure` does not see (plaintext taken out of
//!   the queue and encrypted but not yet sent) is bounded, like the kernel's socket buffer; the
//!   rest waits in the queue, counted as for a plain connection.
//! - **Reads** drain the socket until `WouldBlock` (mio is edge-triggered): the ciphertext is
//!   read into the loop's scratch buffer and decrypted record by record into the loop's read
//!   buffer. A record is decrypted only when its plaintext surely fits; otherwise the read
//!   stops, the rest is kept and [`TlsStream::more_buffered`] says so. What is kept between
//!   reads is at most a partial record (or an unfinished handshake message) and one read.
//! - **Idle**: after a flush and a read a connection holds no ciphertext and no plaintext, and
//!   its buffers are freed: what is left is rustls' state (its keys and handshake state).
//! - **Errors** are counted by [`ErrorKind`]; after a fatal one the alert rustls made is
//!   written if the socket takes it, and the connection is closed.

use std::io::{self, Read, Write};
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::server::ServerConnectionData;
use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{ConnectionState, EncodeError, EncodeTlsData};

use super::ErrorKind;
use crate::metrics::Stats;

/// Most plaintext encrypted in one flush, and so most ciphertext a connection keeps when the
/// socket does not take it (see the module doc): four full records, so one write still fills a
/// socket buffer.
pub const TLS_BUFFER_LIMIT: usize = 64 * 1024;

/// Most queue entries gathered for one flush: 256 frames of 64 bytes already fill a 16 KiB
/// record, so more slices would not save a record. (The hub also batches a channel's frames of
/// a turn into one entry, so a long queue is rare.)
pub const TLS_IOVECS: usize = 256;

/// The longest record on the wire: a header and 16 KiB of plaintext plus the most expansion
/// TLS allows.
pub const MAX_RECORD: usize = 5 + 16 * 1024 + 2048;

/// Room for the ciphertext of [`TLS_BUFFER_LIMIT`] bytes of plaintext: each record adds its
/// header, nonce, tag and content type.
const CIPHERTEXT_LIMIT: usize = TLS_BUFFER_LIMIT + 1024;

/// The loop's scratch buffer as TLS uses it: ciphertext then the plaintext gathered for one
/// flush; for a read, ciphertext of up to one read buffer.
const SCRATCH_LEN: usize = CIPHERTEXT_LIMIT + TLS_BUFFER_LIMIT;

/// What [`TlsStream::flush`] achieved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Written {
    /// The queue and our records are all written (and, when closing, `close_notify`).
    All,
    /// The socket would block: wait for its writable event.
    Blocked,
    /// No data can be encrypted yet (the handshake is not done): wait for the peer.
    Held,
}

/// A connection's TLS state (see the module doc).
pub struct TlsStream {
    conn: UnbufferedServerConnection,
    /// Ciphertext read but not processed yet: a partial record, an unfinished handshake
    /// message, or records left when the read buffer filled. Empty, and unallocated, otherwise.
    pending_in: Vec<u8>,
    /// Records made but not written yet (the socket would block, or they were made while
    /// reading: handshake messages, session tickets, alerts). Empty, and unallocated, otherwise.
    pending_out: Vec<u8>,
    /// The peer's EOF or `close_notify` has been seen; it is reported once the plaintext
    /// before it has been read.
    eof: bool,
    /// A read stopped with whole records kept, for lack of room in the read buffer.
    stalled: bool,
    /// Some record from the peer was processed (a bad first record is plaintext, see
    /// [`ErrorKind::Plaintext`]).
    started: bool,
    /// Counted in `fanout_tls_handshakes_total`.
    handshaken: bool,
    /// Encrypted after the last bytes of a closing connection.
    close_notify_sent: bool,
    /// Input is read and dropped (see [`TlsStream::discard_input`]).
    discarding: bool,
}

impl std::fmt::Debug for TlsStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsStream")
            .field("handshaking", &self.conn.is_handshaking())
            .field("pending_in", &self.pending_in.len())
            .field("pending_out", &self.pending_out.len())
            .field("eof", &self.eof)
            .finish_non_exhaustive()
    }
}

impl TlsStream {
    /// A server-side TLS connection with `config`.
    pub fn new(config: Arc<ServerConfig>) -> Result<TlsStream, rustls::Error> {
        Ok(TlsStream {
            conn: UnbufferedServerConnection::new(config)?,
            pending_in: Vec::new(),
            pending_out: Vec::new(),
            eof: false,
            stalled: false,
            started: false,
            handshaken: false,
            close_notify_sent: false,
            discarding: false,
        })
    }

    /// Whether the handshake is still under way.
    pub fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    /// Whether records wait to be written (handshake messages, alerts, data).
    pub fn wants_write(&self) -> bool {
        !self.pending_out.is_empty()
    }

    /// Whether a read shorter than the buffer may still leave something to read: the peer's
    /// EOF, seen while reading the plaintext before it, or whole records kept for lack of room.
    pub fn more_buffered(&self) -> bool {
        self.eof || self.stalled
    }

    /// The protocol negotiated by ALPN.
    pub fn alpn_protocol(&self) -> Option<&[u8]> {
        self.conn.alpn_protocol()
    }

    /// What this connection holds in buffers of its own: ciphertext not yet processed or not
    /// yet written (nothing when idle).
    pub fn buffered(&self) -> usize {
        self.buffered_input() + self.pending_out.capacity()
    }

    /// Stops reading what the peer sends: the ciphertext kept is freed, and later reads drop
    /// what arrives until the peer's end. For a connection that is closing, whose input no
    /// longer matters.
    pub fn discard_input(&mut self) {
        self.pending_in = Vec::new();
        self.discarding = true;
    }

    /// Ciphertext kept between reads (counted in `--max-input-memory`).
    pub fn buffered_input(&self) -> usize {
        self.pending_in.capacity()
    }

    /// Reads plaintext into `buf` (at least [`MAX_RECORD`] long), reading records from `io`
    /// into `scratch` and decrypting them until `buf` is full or `io` would block. `Ok(0)` is
    /// the peer's end (with or without `close_notify`); `WouldBlock` means nothing is ready. A
    /// TLS error is counted in `stats` and returned as `InvalidData`, after a best-effort
    /// write of the alert rustls made.
    pub fn read(
        &mut self,
        io: &mut (impl Read + Write),
        buf: &mut [u8],
        scratch: &mut Vec<u8>,
        stats: &mut Stats,
    ) -> io::Result<usize> {
        debug_assert!(buf.len() >= MAX_RECORD);
        if self.eof {
            return Ok(0);
        }
        if self.discarding {
            return discard(io, buf, stats);
        }
        self.stalled = false;
        let scratch = scratch_of(scratch);
        // scratch[start..end] is the ciphertext rustls has not discarded yet.
        let (mut start, mut end) = (0, self.pending_in.len());
        scratch[..end].copy_from_slice(&self.pending_in);
        self.pending_in = Vec::new();
        let mut filled = 0;
        // The kept ciphertext is never longer than the room left in `buf`, so all the
        // plaintext its whole records hold fits (plaintext is shorter than its record).
        let result = loop {
            match self.process(&mut scratch[start..end], &mut buf[filled..], stats) {
                Ok(done) => {
                    start += done.discard;
                    filled += done.plaintext;
                    if self.eof {
                        break Ok(filled);
                    }
                }
                Err(e) => {
                    let _ = io.write_all(&self.pending_out);
                    break Err(e);
                }
            }
            // Everything whole is processed: read as much more as surely decrypts into the
            // room left.
            scratch.copy_within(start..end, 0);
            (start, end) = (0, end - start);
            let want = (buf.len() - filled).min(scratch.len()).saturating_sub(end);
            if want == 0 && filled == 0 {
                // A handshake message longer than a read buffer: none is, from an honest peer.
                ErrorKind::BadRecord.count(stats);
                break Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "TLS handshake message too long",
                ));
            }
            if want == 0 {
                self.stalled = true; // Come back with an empty buffer.
                break Ok(filled);
            }
            match io.read(&mut scratch[end..end + want]) {
                Ok(0) => {
                    self.eof = true; // A TCP EOF without close_notify: an end all the same.
                    break Ok(filled);
                }
                Ok(n) => {
                    end += n;
                    stats.bytes_in += n as u64;
                }
                Err(e) => match e.kind() {
                    io::ErrorKind::Interrupted => {}
                    io::ErrorKind::WouldBlock if filled > 0 => break Ok(filled),
                    _ => break Err(e),
                },
            }
        };
        if start < end {
            self.pending_in = scratch[start..end].to_vec();
        }
        result
    }

    /// Hands rustls the ciphertext in `incoming` until it can do no more with it, copying the
    /// plaintext into `plain` (which has room for it all, see [`TlsStream::read`]) and keeping
    /// the records it makes in `pending_out`.
    fn process(
        &mut self,
        incoming: &mut [u8],
        plain: &mut [u8],
        stats: &mut Stats,
    ) -> io::Result<Processed> {
        let mut done = Processed::default();
        loop {
            let rest = &mut incoming[done.discard..];
            let first = !self.started;
            self.started |= !rest.is_empty();
            let status = self.conn.process_tls_records(rest);
            let discard = status.discard;
            let progress = match status.state {
                Ok(ConnectionState::ReadTraffic(mut records)) => {
                    while let Some(record) = records.next_record() {
                        let record = record.map_err(|e| failure(&e, first, stats))?;
                        let to = &mut plain[done.plaintext..];
                        to[..record.payload.len()].copy_from_slice(record.payload);
                        done.plaintext += record.payload.len();
                    }
                    true
                }
                Ok(ConnectionState::EncodeTlsData(encoder)) => {
                    encode(encoder, &mut self.pending_out);
                    true
                }
                Ok(ConnectionState::TransmitTlsData(transmit)) => {
                    transmit.done();
                    true
                }
                Ok(ConnectionState::PeerClosed | ConnectionState::Closed) => {
                    self.eof = true;
                    false
                }
                Ok(ConnectionState::ReadEarlyData(mut early)) => {
                    // Not enabled in the config; dropped all the same if a peer sends it.
                    while early.next_record().is_some() {}
                    true
                }
                // Blocked on the handshake, or ready to write: nothing more to do with what
                // there is (and a state of a later rustls this server does not enable).
                Ok(_) => false,
                Err(e) => {
                    let e = failure(&e, first, stats);
                    self.encode_alert(&mut incoming[done.discard + discard..]);
                    return Err(e);
                }
            };
            done.discard += discard;
            self.count_handshake(stats);
            if self.eof || (!progress && discard == 0) {
                return Ok(done);
            }
        }
    }

    /// Counts a handshake that just completed.
    fn count_handshake(&mut self, stats: &mut Stats) {
        if !self.handshaken && !self.conn.is_handshaking() {
            self.handshaken = true;
            stats.tls_handshakes += 1;
        }
    }

    /// Encodes the alert rustls made after an error into `pending_out`; `incoming` is what
    /// rustls has not discarded (the unbuffered API must be given it again on every call).
    /// Only one call: the alert is the one record waiting, and a second call would process the
    /// bad input again.
    fn encode_alert(&mut self, incoming: &mut [u8]) {
        if let Ok(ConnectionState::EncodeTlsData(encoder)) =
            self.conn.process_tls_records(incoming).state
        {
            encode(encoder, &mut self.pending_out);
        }
    }
}

/// What [`TlsStream::process`] did with the records it was given.
#[derive(Debug, Default)]
struct Processed {
    /// Bytes of the input rustls is done with.
    discard: usize,
    /// Plaintext bytes copied out.
    plaintext: usize,
}

/// `scratch` at its working size ([`SCRATCH_LEN`]); grown once, then only reused, so no call
/// pays for zeroing it.
fn scratch_of(scratch: &mut Vec<u8>) -> &mut [u8] {
    if scratch.len() < SCRATCH_LEN {
        scratch.resize(SCRATCH_LEN, 0);
    }
    &mut scratch[..SCRATCH_LEN]
}

/// Reads from `io` into `buf` and drops it, until `io` would block (`WouldBlock`) or ends
/// (`Ok(0)`).
fn discard(io: &mut impl Read, buf: &mut [u8], stats: &mut Stats) -> io::Result<usize> {
    loop {
        match io.read(buf) {
            Ok(0) => return Ok(0),
            Ok(n) => stats.bytes_in += n as u64,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Counts `e` (from the peer's first record or not) and makes it an I/O error.
fn failure(e: &rustls::Error, first: bool, stats: &mut Stats) -> io::Error {
    ErrorKind::of(e, first).count(stats);
    io::Error::new(io::ErrorKind::InvalidData, e.clone())
}

/// Appends the record rustls made to `to`.
fn encode(mut encoder: EncodeTlsData<'_, ServerConnectionData>, to: &mut Vec<u8>) {
    let at = to.len();
    to.resize(at + 1024, 0);
    let n = match encoder.encode(&mut to[at..]) {
        Ok(n) => n,
        Err(EncodeError::InsufficientSize(size)) => {
            to.resize(at + size.required_size, 0);
            encoder.encode(&mut to[at..]).unwrap_or(0)
        }
        Err(EncodeError::AlreadyEncoded) => 0,
    };
    to.truncate(at + n);
}

#[path = "stream_write.rs"]
mod write;

#[cfg(test)]
#[path = "stream_tests.rs"]
mod tests;
