//! The connect phase of a worker: open its closed connections at the connect rate, at most
//! `cap` in TCP connect or handshake at once, fail those past the connect timeout, and report
//! when every one has opened or failed.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;

use fanout::proto::Decoded;
use mio::Token;

use super::Reply;
use super::conn::State;
use super::recv::on_bytes;
use super::worker::Worker;
use crate::stats::{Cause, Failures};
use crate::wire::handshake::{self, HandshakeError};

/// How often in-flight handshakes are checked against the connect timeout.
const TIMEOUT_SCAN_NS: u64 = 20_000_000;

/// The connect phase in progress.
pub struct ConnectPhase {
    pub(super) queue: VecDeque<usize>,
    pub(super) opened: u64,
    pub(super) start_ns: u64,
    /// ns between connects on this thread (0: as fast as `cap` allows).
    pub(super) spacing_ns: f64,
    pub(super) cap: usize,
    pub(super) in_flight: Vec<usize>,
    pub(super) failures: Failures,
    pub(super) handshakes: u64,
    /// Handshakes that negotiated permessage-deflate.
    pub(super) deflated: u64,
    pub(super) last_open_ns: u64,
    pub(super) next_scan_ns: u64,
}

impl Worker {
    /// Starts a connect phase over every connection that is not open.
    pub(super) fn start_connect(&mut self, start_ns: u64, rate: f64, cap: usize) {
        let queue: VecDeque<usize> = (0..self.conns.len())
            .filter(|&i| self.conns[i].state == State::Idle)
            .collect();
        self.connecting = Some(ConnectPhase {
            queue,
            opened: 0,
            start_ns,
            spacing_ns: if rate > 0.0 { 1e9 / rate } else { 0.0 },
            cap: cap.max(1),
            in_flight: Vec::new(),
            failures: Failures::default(),
            handshakes: 0,
            deflated: 0,
            last_open_ns: start_ns,
            next_scan_ns: start_ns,
        });
    }

    pub(super) fn on_handshake_bytes(
        &mut self,
        li: usize,
        bytes: &[u8],
        now: u64,
    ) -> Result<Option<Cause>, Cause> {
        let conn = &mut self.conns[li];
        conn.rbuf.extend_from_slice(bytes);
        let State::Handshaking(accept) = &conn.state else {
            return Ok(None);
        };
        let channel = &self.shared.plan.channels[conn.channel as usize];
        let offered = self.shared.plan.deflate;
        let accepted = match handshake::parse_response(&conn.rbuf, accept, channel, offered) {
            Ok(Decoded::Partial) => return Ok(None),
            Ok(Decoded::Complete(a)) => a,
            Err(HandshakeError::Status(s)) => return Err(Cause::Http(s)),
            Err(HandshakeError::BadAccept) => return Err(Cause::BadAccept),
            Err(HandshakeError::BadProtocol) => return Err(Cause::BadProtocol),
            Err(HandshakeError::Malformed) => return Err(Cause::BadResponse),
            Err(HandshakeError::BadExtension) => return Err(Cause::BadExtension),
        };
        let rest = std::mem::take(&mut conn.rbuf).split_off(accepted.head_len);
        conn.state = State::Open;
        conn.reader.deflate = accepted.deflate;
        self.shared.open.fetch_add(1, Ordering::Relaxed);
        if let Some(p) = self.connecting.as_mut() {
            p.handshakes += 1;
            p.deflated += u64::from(accepted.deflate);
            p.last_open_ns = now;
            if let Some(i) = p.in_flight.iter().position(|&x| x == li) {
                p.in_flight.swap_remove(i);
            }
        }
        on_bytes(
            &mut self.conns[li],
            &rest,
            &mut self.rx,
            now,
            &mut self.keys,
        )
    }

    pub(super) fn connect_step(&mut self, now: u64) {
        let Some(mut p) = self.connecting.take() else {
            return;
        };
        let threads = self.shared.threads;
        let sources = &self.shared.plan.sources;
        while p.in_flight.len() < p.cap {
            let Some(&li) = p.queue.front() else { break };
            if p.start_ns + (p.opened as f64 * p.spacing_ns) as u64 > now {
                break;
            }
            p.queue.pop_front();
            p.opened += 1;
            let global = li * threads + self.index;
            let source = (!sources.is_empty()).then(|| sources[global % sources.len()]);
            let conn = &mut self.conns[li];
            conn.since_ns = now;
            let plan = &self.shared.plan;
            match conn.open(
                &plan.targets[conn.target as usize],
                plan.tls.as_ref(),
                source,
                self.poll.registry(),
                Token(li),
            ) {
                Ok(()) => p.in_flight.push(li),
                Err(cause) => p.failures.add(cause),
            }
        }
        if now >= p.next_scan_ns {
            p.next_scan_ns = now + TIMEOUT_SCAN_NS;
            let limit = self.shared.connect_timeout_ns;
            let late: Vec<usize> = p
                .in_flight
                .iter()
                .copied()
                .filter(|&li| now.saturating_sub(self.conns[li].since_ns) > limit)
                .collect();
            self.connecting = Some(p);
            for li in late {
                self.fail(li, Cause::TimedOut);
            }
            p = self.connecting.take().expect("phase put back above");
        }
        if p.queue.is_empty() && p.in_flight.is_empty() {
            let mut open_per_channel = vec![0u64; self.shared.plan.channels.len()];
            for c in self.conns.iter().filter(|c| c.state == State::Open) {
                open_per_channel[c.channel as usize] += 1;
            }
            let _ = self.replies.send(Reply::Connected {
                open_per_channel,
                failures: p.failures,
                dropped: std::mem::take(&mut self.dropped_idle),
                handshakes: p.handshakes,
                deflated: p.deflated,
                last_open_ns: p.last_open_ns,
            });
        } else {
            self.connecting = Some(p);
        }
    }
}
