//! Taking connections in: accepting until `WouldBlock`, admitting each one (a slab slot, a
//! timer, TLS when configured) or refusing it at once past the connection limit.

use std::io::{self, Read, Write};
use std::sync::atomic::Ordering;

use mio::Token;
use mio::net::TcpStream;
use tracing::{debug, warn};

use super::event_loop::{ACCEPT_BACKOFF, Loop};
use crate::config;
use crate::connection::{Connection, Phase, Transport};
use crate::proto::handshake::Refusal;
use crate::tls::TlsStream;

impl Loop {
    /// Accepts until the listener would block (or, out of file descriptors, pauses accepting
    /// for [`ACCEPT_BACKOFF`]), admitting or refusing each connection.
    pub(super) fn accept(&mut self) {
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

    /// Takes a new connection in: refused at once past `--max-connections` plus the reserve,
    /// else given a slab slot, its handshake timer and, when configured, its TLS state.
    pub(super) fn admit(&mut self, socket: TcpStream) {
        self.stats.accepted += 1;
        // Counted first, so loops accepting at once cannot both take the last place.
        let open = self.node.connections.fetch_add(1, Ordering::AcqRel);
        let max = self.node.max_connections;
        if open >= max + config::REFUSAL_SLACK {
            self.node.connections.fetch_sub(1, Ordering::AcqRel);
            return self.refuse_at_once(socket);
        }
        let _ = socket.set_nodelay(true);
        if self.config.socket_send_buffer > 0 {
            let size = self.config.socket_send_buffer;
            let _ = socket2::SockRef::from(&socket).set_send_buffer_size(size);
        }
        // The TLS handshake counts against --handshake-timeout, as the HTTP request does.
        let transport = match &self.node.tls {
            None => Transport::Plain,
            Some(certs) => match TlsStream::new(certs.current()) {
                Ok(tls) => Transport::Tls(Box::new(tls)),
                Err(e) => {
                    self.node.connections.fetch_sub(1, Ordering::AcqRel);
                    return warn!(error = %e, "cannot start a TLS session");
                }
            },
        };
        let phase = Phase::Http {
            buf: Vec::new(),
            deadline: self.now + self.config.handshake_timeout,
            reserve: open >= max,
        };
        self.next_id += 1;
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        match Connection::new(
            socket,
            Token(key),
            self.next_id,
            phase,
            transport,
            self.poll.registry(),
        ) {
            Ok(conn) => entry.insert(conn),
            Err(e) => {
                self.node.connections.fetch_sub(1, Ordering::AcqRel);
                return debug!(error = %e, "register failed");
            }
        };
        self.schedule(key);
    }

    /// Past the reserve kept for monitoring: the `503` is written on the spot (a new socket's
    /// send buffer always has room for it) and the connection closed, so even a flood of
    /// connections gets its answer at no memory cost. What the client already sent is read
    /// first, so closing sends a FIN and not a reset that could destroy the answer. Over TLS
    /// there is no answer without a handshake: the connection is just closed.
    pub(super) fn refuse_at_once(&mut self, mut socket: TcpStream) {
        self.stats.refusals.add(503);
        for _ in 0..4 {
            if !matches!(socket.read(&mut self.read_buf), Ok(n) if n > 0) {
                break;
            }
        }
        if self.node.tls.is_none() {
            let _ = socket.write_all(&Refusal::SERVICE_UNAVAILABLE.response());
        }
        let _ = socket.shutdown(std::net::Shutdown::Write);
    }
}
