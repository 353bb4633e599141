//! One event loop: a `mio::Poll` over this thread's share of the connections.
//!
//! Each turn: poll (sleeping until I/O or the timerfd armed for the next due send, connect or
//! progress tick, so sends leave on time without spinning), handle events, take commands, open due
//! connections, queue due messages, flush every connection with output once, publish counters.
//! Reads go through one large buffer per thread: one `read` per readable socket per turn (a
//! short read means the socket is drained), and every frame in a read is handled before the
//! next read. While reads are dense the next turn waits a little (`pace.rs`). The connect phase
//! lives in `connecting.rs`, the trial in `trial.rs`.

use std::cmp::Reverse;
use std::io;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, Sender, TryRecvError};
use std::time::Duration;

use mio::{Events, Poll, Token};

use super::conn::{Conn, State};
use super::connecting::ConnectPhase;
use super::pace::Pacer;
use super::recv::{RecvState, on_bytes};
use super::timer::Timer;
use super::trial::TrialRun;
use super::{Command, Reply, Shared};
use crate::stats::{Cause, Failures};
use crate::wire::handshake;
use crate::wire::writer::KeyGen;

/// The token of the thread's waker.
pub const WAKER: Token = Token(usize::MAX);

/// The token of the thread's timer.
const TIMER: Token = Token(usize::MAX - 1);

/// Bytes per `read`: many frames per syscall, and a whole 16 KiB message several times over.
const READ_BUFFER: usize = 256 * 1024;

/// While handling a large batch of events (a broadcast to thousands of subscribers), check
/// after this many whether a send has come due, so reading does not delay the schedule.
const SEND_CHECK_EVERY: usize = 64;

/// The longest the loop sleeps with nothing due (commands also wake it, through the waker).
const IDLE_WAKE: Duration = Duration::from_millis(100);

/// One event-loop thread and the connections it owns.
pub struct Worker {
    pub(super) index: usize,
    pub(super) poll: Poll,
    pub(super) conns: Vec<Conn>,
    pub(super) shared: Arc<Shared>,
    pub(super) cmds: Receiver<Command>,
    pub(super) replies: Sender<Reply>,
    pub(super) keys: KeyGen,
    timer: Timer,
    scratch: Vec<u8>,
    pub(super) rx: RecvState,
    pub(super) connecting: Option<ConnectPhase>,
    pub(super) trial: Option<TrialRun>,
    pub(super) dirty: Vec<usize>,
    /// Connections that closed while no trial ran, reported with the next connect phase.
    pub(super) dropped_idle: Failures,
    pub(super) synced: (u64, u64),
}

impl Worker {
    /// A worker over `conns`; nothing happens until commands arrive.
    pub fn new(
        index: usize,
        poll: Poll,
        conns: Vec<Conn>,
        shared: Arc<Shared>,
        cmds: Receiver<Command>,
        replies: Sender<Reply>,
    ) -> io::Result<Worker> {
        let timer = Timer::new(poll.registry(), TIMER)?;
        Ok(Worker {
            index,
            poll,
            conns,
            shared,
            cmds,
            replies,
            keys: KeyGen::new(0x9E37_79B9_7F4A_7C15 ^ index as u64),
            timer,
            scratch: vec![0; READ_BUFFER],
            rx: RecvState::default(),
            connecting: None,
            trial: None,
            dirty: Vec::new(),
            dropped_idle: Failures::default(),
            synced: (0, 0),
        })
    }

    /// Runs until `Command::Stop` (or until the engine is gone).
    pub fn run(mut self) {
        let mut events = Events::with_capacity(4096);
        let mut ready: Vec<(usize, bool, bool)> = Vec::with_capacity(4096);
        let mut pacer = Pacer::default();
        loop {
            if self.trial.is_some()
                && let Some(at) = pacer.resume_at()
            {
                let now = self.shared.now_ns();
                let until = self.next_wake(now).min(at);
                if until > now {
                    std::thread::sleep(Duration::from_nanos(until - now));
                }
            }
            let now = self.shared.now_ns();
            let next = self.next_wake(now);
            let timeout = if next <= now {
                Duration::ZERO
            } else {
                if let Err(e) = self.timer.arm(next, now) {
                    let _ = self.replies.send(Reply::Fatal(format!("timerfd: {e}")));
                    return;
                }
                IDLE_WAKE
            };
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                let _ = self.replies.send(Reply::Fatal(format!("poll failed: {e}")));
                return;
            }
            ready.clear();
            if events.iter().any(|e| e.token() == TIMER) {
                self.timer.fired();
            }
            ready.extend(events.iter().filter(|e| e.token().0 < TIMER.0).map(|e| {
                let read = e.is_readable() || e.is_read_closed() || e.is_error();
                (e.token().0, read, e.is_writable())
            }));
            let reads = ready.iter().filter(|r| r.1).count();
            pacer.turn(self.shared.now_ns(), reads);
            for (i, &(li, read, write)) in ready.iter().enumerate() {
                self.on_event(li, read, write);
                if i % SEND_CHECK_EVERY == SEND_CHECK_EVERY - 1 {
                    self.send_if_due();
                }
            }
            loop {
                match self.cmds.try_recv() {
                    Ok(Command::Stop) | Err(TryRecvError::Disconnected) => return,
                    Ok(cmd) => self.on_command(cmd),
                    Err(TryRecvError::Empty) => break,
                }
            }
            let now = self.shared.now_ns();
            self.connect_step(now);
            self.publish_step(now);
            self.flush_dirty();
            self.interval_step(now);
            self.sync_shared();
        }
    }

    /// When the loop must next wake: the next due connect, send, timeout scan or progress
    /// tick (the timer is armed for it; I/O events wake the loop sooner).
    fn next_wake(&self, now: u64) -> u64 {
        let mut next = now + IDLE_WAKE.as_nanos() as u64;
        if let Some(p) = &self.connecting {
            if !p.queue.is_empty() && p.in_flight.len() < p.cap {
                next = next.min(p.start_ns + (p.opened as f64 * p.spacing_ns) as u64);
            }
            next = next.min(p.next_scan_ns);
        }
        if let Some(t) = &self.trial {
            if let Some(Reverse((due, _, _))) = t.heap.peek() {
                next = next.min(*due);
            }
            next = next.min(t.next_interval_ns);
        }
        next
    }

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Connect {
                start_ns,
                rate,
                cap,
            } => self.start_connect(start_ns, rate, cap),
            Command::Trial(plan) => self.start_trial(plan),
            Command::Collect => self.collect(),
            Command::Stop => {}
        }
    }

    fn on_event(&mut self, li: usize, read: bool, write: bool) {
        let Some(conn) = self.conns.get_mut(li) else {
            return;
        };
        match conn.state {
            State::Idle => {}
            State::Connecting => match conn.check_connected() {
                Ok(false) => {}
                Ok(true) => {
                    let plan = &self.shared.plan;
                    let channel = &plan.channels[conn.channel as usize];
                    let nonce = (u128::from(self.keys.next_u64()) << 64
                        | u128::from(self.keys.next_u64()))
                    .to_le_bytes();
                    let target = &plan.targets[conn.target as usize];
                    let req = handshake::request(
                        &target.host,
                        &target.path,
                        channel,
                        plan.token.as_deref(),
                        nonce,
                    )
                    .offer_deflate(plan.deflate);
                    conn.wbuf.extend_from_slice(&req.bytes);
                    conn.state = State::Handshaking(req.accept);
                    if let Err(e) = conn.flush() {
                        self.fail(li, Cause::of(&e));
                    }
                }
                Err(cause) => self.fail(li, cause),
            },
            State::Handshaking(_) | State::Open => {
                if write
                    && conn.has_output()
                    && let Err(e) = conn.flush()
                {
                    return self.fail(li, Cause::of(&e));
                }
                if read {
                    self.read_conn(li);
                }
            }
        }
    }

    /// Reads until the socket is drained. A read shorter than the buffer means it is (as
    /// tokio also assumes on Linux); the next arrival raises a new edge.
    fn read_conn(&mut self, li: usize) {
        let mut scratch = std::mem::take(&mut self.scratch);
        loop {
            let n = match self.conns[li].read(&mut scratch) {
                Ok(0) => break self.fail(li, Cause::Reset),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => break self.fail(li, Cause::of(&e)),
            };
            let now = self.shared.now_ns();
            let outcome = match &self.conns[li].state {
                State::Handshaking(_) => self.on_handshake_bytes(li, &scratch[..n], now),
                State::Open => {
                    let conn = &mut self.conns[li];
                    on_bytes(conn, &scratch[..n], &mut self.rx, now, &mut self.keys)
                }
                State::Idle | State::Connecting => Ok(None),
            };
            if self.conns[li].has_output() {
                self.dirty.push(li);
            }
            match outcome {
                Ok(None) if n < scratch.len() => break,
                Ok(None) => {}
                Ok(Some(cause)) | Err(cause) => break self.fail(li, cause),
            }
        }
        // Over TLS a read may leave only handshake messages (or a key update) to send.
        if self.conns[li].has_output() {
            self.dirty.push(li);
        }
        self.scratch = scratch;
    }

    /// Closes connection `li` and books the cause: a connect failure while it was being
    /// opened, a drop (during the trial, or while idle) once it was open.
    pub(super) fn fail(&mut self, li: usize, cause: Cause) {
        let conn = &mut self.conns[li];
        let was_open = conn.state == State::Open;
        if conn.state == State::Idle {
            return;
        }
        conn.close(self.poll.registry());
        if was_open {
            self.shared.open.fetch_sub(1, Ordering::Relaxed);
            match self.trial.as_mut() {
                Some(t) => t.dropped.add(cause),
                None => self.dropped_idle.add(cause),
            }
        } else if let Some(p) = self.connecting.as_mut() {
            p.failures.add(cause);
            if let Some(i) = p.in_flight.iter().position(|&x| x == li) {
                p.in_flight.swap_remove(i);
            }
        }
    }

    /// Sends (and flushes) whatever has come due, in the middle of a batch of events.
    fn send_if_due(&mut self) {
        let due = self
            .trial
            .as_ref()
            .and_then(|t| t.heap.peek())
            .map(|r| r.0.0);
        let now = self.shared.now_ns();
        if due.is_some_and(|d| d <= now) {
            self.publish_step(now);
            self.flush_dirty();
        }
    }

    fn flush_dirty(&mut self) {
        let mut dirty = std::mem::take(&mut self.dirty);
        for li in dirty.drain(..) {
            if let Err(e) = self.conns[li].flush() {
                self.fail(li, Cause::of(&e));
            }
        }
        self.dirty = dirty;
    }

    /// Adds this thread's new counts to the shared progress counters.
    pub(super) fn sync_shared(&mut self) {
        let delivered = self.rx.take_unsynced();
        if delivered > 0 {
            self.shared
                .delivered
                .fetch_add(delivered, Ordering::Relaxed);
        }
        let frames = std::mem::take(&mut self.rx.unsynced_frames);
        if frames > 0 {
            self.shared.frames.fetch_add(frames, Ordering::Relaxed);
        }
        if let Some(t) = self.trial.as_mut() {
            let (sent, expected) = self.synced;
            if t.sent > sent || t.expected > expected {
                self.shared.sent.fetch_add(t.sent - sent, Ordering::Relaxed);
                self.shared
                    .expected
                    .fetch_add(t.expected - expected, Ordering::Relaxed);
                self.synced = (t.sent, t.expected);
            }
            // Only now, with `expected` complete in the shared counter, may the driver start
            // comparing deliveries against it.
            if t.done && !t.done_reported {
                t.done_reported = true;
                let _ = self.replies.send(Reply::Done);
            }
        } else {
            self.synced = (0, 0);
        }
    }
}
