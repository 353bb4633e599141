//! The writing half of [`TlsStream`]: the records kept, then the queue encrypted through the
//! loop's scratch buffer, up to [`TLS_BUFFER_LIMIT`] at a time (see the module doc of
//! [`super`]).

use std::io::{self, IoSlice, Write};

use rustls::unbuffered::{ConnectionState, EncryptError};

use super::{
    CIPHERTEXT_LIMIT, TLS_BUFFER_LIMIT, TLS_IOVECS, TlsStream, Written, encode, scratch_of,
};
use crate::broadcast::OutQueue;
use crate::metrics::Stats;

impl TlsStream {
    /// Writes the records kept, then encrypts what `out` holds (up to [`TLS_BUFFER_LIMIT`] at
    /// a time, through `scratch`) and writes that, until both are empty or `io` would block.
    /// With `closing`, `close_notify` follows the last byte.
    pub fn flush(
        &mut self,
        io: &mut impl Write,
        out: &mut OutQueue,
        closing: bool,
        scratch: &mut Vec<u8>,
        stats: &mut Stats,
    ) -> io::Result<Written> {
        loop {
            if !self.pending_out.is_empty() {
                let n = write(io, &self.pending_out, stats)?;
                if n < self.pending_out.len() {
                    self.pending_out.drain(..n);
                    return Ok(Written::Blocked);
                }
                self.pending_out = Vec::new();
            }
            let closing = closing && !self.close_notify_sent;
            if (out.is_empty() && !closing) || self.conn.is_handshaking() {
                return Ok(if out.is_empty() {
                    Written::All
                } else {
                    Written::Held
                });
            }
            let (taken, made) = self.encrypt(out, scratch)?;
            out.advance(taken);
            if taken == 0 && made == 0 {
                return Ok(Written::Held);
            }
            let cipher = &scratch[..made];
            let n = write(io, cipher, stats)?;
            if n < cipher.len() {
                self.pending_out = cipher[n..].to_vec();
                return Ok(Written::Blocked);
            }
        }
    }

    /// Encrypts up to [`TLS_BUFFER_LIMIT`] of what `out` holds into the start of `scratch`,
    /// or, with nothing queued, `close_notify` (the caller asks for it only when closing).
    /// Returns the plaintext taken and the ciphertext made.
    fn encrypt(&mut self, out: &OutQueue, scratch: &mut Vec<u8>) -> io::Result<(usize, usize)> {
        let (cipher, plain) = scratch_of(scratch).split_at_mut(CIPHERTEXT_LIMIT);
        let mut iov = [IoSlice::new(&[]); TLS_IOVECS];
        let n = out.iovecs(&mut iov);
        // One slice is encrypted where it lies; several are gathered first.
        let data: &[u8] = match &iov[..n] {
            [one, ..] if n == 1 || one.len() >= TLS_BUFFER_LIMIT => {
                &one[..one.len().min(TLS_BUFFER_LIMIT)]
            }
            slices => {
                let mut len = 0;
                for slice in slices {
                    let take = slice.len().min(TLS_BUFFER_LIMIT - len);
                    plain[len..len + take].copy_from_slice(&slice[..take]);
                    len += take;
                    if len == TLS_BUFFER_LIMIT {
                        break;
                    }
                }
                &plain[..len]
            }
        };
        loop {
            // rustls is given the ciphertext it has not discarded, as its unbuffered API
            // requires; every whole record in it has been processed, so it yields no data.
            let status = self.conn.process_tls_records(&mut self.pending_in);
            let discard = status.discard;
            let outcome = match status.state {
                Ok(ConnectionState::WriteTraffic(mut traffic)) => {
                    let made = if data.is_empty() {
                        self.close_notify_sent = true;
                        traffic.queue_close_notify(cipher)
                    } else {
                        traffic.encrypt(data, cipher)
                    };
                    Some(match made {
                        Ok(made) => Ok((data.len(), made)),
                        Err(EncryptError::EncryptExhausted) => {
                            Err(io::Error::other("TLS: encryption keys exhausted"))
                        }
                        Err(e) => Err(io::Error::other(e.to_string())),
                    })
                }
                Ok(ConnectionState::EncodeTlsData(encoder)) => {
                    encode(encoder, &mut self.pending_out);
                    None
                }
                Ok(ConnectionState::TransmitTlsData(transmit)) => {
                    transmit.done();
                    None
                }
                Ok(_) => Some(Ok((0, 0))),
                Err(e) => Some(Err(io::Error::new(io::ErrorKind::InvalidData, e))),
            };
            self.pending_in.drain(..discard);
            if let Some(outcome) = outcome {
                return outcome;
            }
        }
    }
}

/// Writes `bytes` until all are written or `io` would block, counting each call; returns how
/// many were written.
fn write(io: &mut impl Write, bytes: &[u8], stats: &mut Stats) -> io::Result<usize> {
    let mut written = 0;
    while written < bytes.len() {
        stats.sends += 1;
        match io.write(&bytes[written..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                stats.bytes_out += n as u64;
                written += n;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                stats.sends_blocked += 1;
                break;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(written)
}
