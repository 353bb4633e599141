//! Reading a connection: its share of a turn, the input an earlier turn left, its EOF.

use std::io;

use tracing::debug;

use super::event_loop::{Loop, READS_PER_TURN};
use crate::connection::{Connection, Phase};

impl Loop {
    /// Reads what `key`'s socket has. A read shorter than the buffer means it is drained (a
    /// new edge fires for later data), unless the event already said the peer closed: then
    /// its EOF is read now, since no further edge will announce it. What an earlier turn left
    /// unhandled is handled first; the connection's share of a turn is [`READS_PER_TURN`]
    /// reads and [`WORK_PER_TURN`] deliveries.
    pub(super) fn on_readable(&mut self, key: usize, closed: bool) {
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
            match conn.read(&mut buf, &mut self.scratch, &mut self.stats) {
                Ok(0) => {
                    self.on_eof(key);
                    break;
                }
                Ok(n) => {
                    self.on_data(key, &mut buf[..n]);
                    self.count_input(key);
                    let Some(conn) = self.conns.get(key).filter(|c| !c.backlog) else {
                        break;
                    };
                    if n < buf.len() && !closed && !conn.more_buffered() {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // With TLS a partial record may be kept without any plaintext.
                    self.count_input(key);
                    break;
                }
                Err(e) => {
                    debug!(key, error = %e, "read failed");
                    self.remove(key);
                    break;
                }
            }
        }
        self.read_buf = buf;
        // A TLS handshake message (or alert) to answer, even with nothing queued.
        if self.conns.get(key).is_some_and(Connection::has_output) {
            self.mark_dirty(key);
        }
    }

    /// Handles what `key` read in an earlier turn and left unhandled (see
    /// [`Connection::backlog`]). Returns whether its socket may be read now.
    pub(super) fn resume(&mut self, key: usize) -> bool {
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
    pub(super) fn on_eof(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let _ = conn.flush(&mut self.stats, &mut self.scratch);
        if !conn.has_output() {
            return self.remove(key);
        }
        if !matches!(conn.phase, Phase::Closing { .. }) {
            self.begin_closing(key, None);
        }
        if let Phase::Closing { peer_eof, .. } = &mut self.conns[key].phase {
            *peer_eof = true;
        }
    }
}
