//! The load engine: `--threads` event loops, each owning a shard of the connections, driven
//! from the main thread through two phases — *connect* (open every closed connection at the
//! connect rate) and *trial* (publish on an open-loop schedule, wait for in-flight deliveries,
//! collect the counts). `sweep` runs many trials over the same connections.
//!
//! Connection `g` of the plan lives on thread `g % threads`. Each thread has its own `Poll`,
//! its own 256 KiB read buffer and a `mio::Waker`; commands reach it over a channel, and
//! results come back on one shared reply channel. Progress counters are shared atomics that
//! threads add to once per loop turn.

mod conn;
mod connecting;
mod pace;
mod recv;
mod timer;
mod trial;
mod worker;

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mio::{Poll, Waker};

use crate::pacing::Schedule;
use crate::stats::{Failures, Percentiles, Tally, latency_histogram};
use crate::target::Target;
use crate::wire::stamp::STAMP_LEN;

pub use self::driver::{ConnectReport, Point, Snapshot, TrialReport, TrialSpec};

mod driver;

/// One connection of the plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnSpec {
    /// Index into [`Plan::channels`].
    pub channel: u32,
    /// Index into [`Plan::targets`]: the node it connects to.
    pub target: u32,
    /// Publisher number (0..P, each used once) when this connection publishes.
    pub publisher: Option<u32>,
}

/// Everything a run connects: the targets, the channels and the connections.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The servers (several: the nodes of a cluster); connections take them round-robin.
    pub targets: Vec<Target>,
    /// The target every publisher connects to (`--pub-url`), instead of round-robin.
    pub pub_target: Option<u32>,
    /// A token offered as the subprotocol `bearer.TOKEN` (`--token`).
    pub token: Option<String>,
    /// Local addresses to bind before connecting, round-robin (empty: the kernel's choice).
    pub sources: Vec<IpAddr>,
    /// Channel names, each offered as `Sec-WebSocket-Protocol`.
    pub channels: Vec<String>,
    /// Offer permessage-deflate (`--deflate`).
    pub deflate: bool,
    /// The connections.
    pub conns: Vec<ConnSpec>,
    /// Whom `wss://` targets are trusted by (`--ca-file`, `--insecure`): needed when one is.
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

impl Plan {
    /// A plan against `target` with no connections yet.
    pub fn new(target: &Target, sources: Vec<IpAddr>) -> Plan {
        Plan::cluster(vec![target.clone()], None, sources)
    }

    /// A plan against several targets (at least one), publishers pinned to `pub_target` when
    /// given, with no connections yet.
    pub fn cluster(targets: Vec<Target>, pub_target: Option<u32>, sources: Vec<IpAddr>) -> Plan {
        assert!(!targets.is_empty(), "a plan needs a target");
        Plan {
            targets,
            pub_target,
            token: None,
            sources,
            channels: Vec::new(),
            deflate: false,
            conns: Vec::new(),
            tls: None,
        }
    }

    /// Adds a channel and returns its index.
    pub fn channel(&mut self, name: String) -> u32 {
        self.channels.push(name);
        (self.channels.len() - 1) as u32
    }

    /// Adds `n` subscribers of `channel`, spread over the targets round-robin.
    pub fn subscribers(&mut self, channel: u32, n: usize) {
        for _ in 0..n {
            let target = self.next_target(false);
            self.conns.push(ConnSpec {
                channel,
                target,
                publisher: None,
            });
        }
    }

    /// Adds a publishing connection (it also receives the channel's other messages), on the
    /// `--pub-url` target or the next one round-robin.
    pub fn publisher(&mut self, channel: u32) {
        let q = self.publishers();
        let target = self.pub_target.unwrap_or_else(|| self.next_target(true));
        self.conns.push(ConnSpec {
            channel,
            target,
            publisher: Some(q),
        });
    }

    /// The target for the next subscriber (or publisher): round-robin over each kind, so
    /// with two nodes, a channel's subscribers and its publishers are both split evenly.
    fn next_target(&self, publisher: bool) -> u32 {
        let before = (self.conns.iter())
            .filter(|c| c.publisher.is_some() == publisher)
            .count();
        (before % self.targets.len()) as u32
    }

    /// How many connections publish.
    pub fn publishers(&self) -> u32 {
        self.conns.iter().filter(|c| c.publisher.is_some()).count() as u32
    }
}

/// How the engine runs.
#[derive(Clone, Debug)]
pub struct EngineOpts {
    /// Event-loop threads.
    pub threads: usize,
    /// New connections per second over all threads (0: as fast as `max_pending` allows).
    pub connect_rate: f64,
    /// Most connections in TCP connect or handshake at once, over all threads.
    pub max_pending: usize,
    /// A connection not open within this time fails as `timed_out`.
    pub connect_timeout: Duration,
    /// Payload bytes per published message.
    pub size: usize,
    /// What follows the stamp (`--payload`).
    pub payload: Payload,
    /// Publishers compress their messages where deflate was negotiated (`--compress-publish`).
    pub compress_publish: bool,
}

/// What follows the stamp in a published message (`--payload`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Payload {
    /// Zeros: the cheapest to send, and compressible to almost nothing.
    #[default]
    Zeros,
    /// Dashboard-like JSON (`wire::writer::json_body`), compressible about as real updates are.
    Json,
}

/// State the threads share with the driver.
struct Shared {
    epoch: Instant,
    plan: Plan,
    threads: usize,
    connect_timeout_ns: u64,
    size: usize,
    /// The bodies messages cycle through (message `k` takes `k % len`); empty for zeros.
    bodies: Vec<Vec<u8>>,
    compress_publish: bool,
    open: AtomicU64,
    sent: AtomicU64,
    expected: AtomicU64,
    delivered: AtomicU64,
    /// Every data message received, of any trial: tells when a server's backlog has drained.
    frames: AtomicU64,
}

impl Shared {
    /// Monotonic ns since the run's start: the clock of every schedule and stamp.
    fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    fn reset_counters(&self) {
        for c in [&self.sent, &self.expected, &self.delivered] {
            c.store(0, Ordering::Relaxed);
        }
    }
}

/// What one trial is, as sent to every thread.
struct TrialPlan {
    id: u32,
    schedule: Schedule,
    /// Open connections per channel when the trial starts: each message is expected at all of
    /// them but its sender.
    receivers: Vec<u64>,
    interval_ns: u64,
}

/// Driver → thread.
enum Command {
    Connect {
        start_ns: u64,
        rate: f64,
        cap: usize,
    },
    Trial(Arc<TrialPlan>),
    Collect,
    Stop,
}

/// Thread → driver.
enum Reply {
    Connected {
        open_per_channel: Vec<u64>,
        failures: Failures,
        dropped: Failures,
        handshakes: u64,
        deflated: u64,
        last_open_ns: u64,
    },
    Interval {
        index: u64,
        hist: Histogram<u64>,
        delivered: u64,
    },
    Done,
    Collected(Box<WorkerTrial>),
    Fatal(String),
}

/// One thread's share of a trial's results.
struct WorkerTrial {
    tally: Tally,
    hist: Histogram<u64>,
    sent: u64,
    expected: u64,
    dropped: Failures,
    last_delivery_ns: u64,
    tail: (u64, Histogram<u64>, u64),
    lag: Histogram<u64>,
}

/// A thread and how to reach it.
struct Handle {
    cmds: mpsc::Sender<Command>,
    waker: Waker,
    join: Option<JoinHandle<()>>,
}

/// The running engine. Dropping it stops and joins its threads.
pub struct Engine {
    shared: Arc<Shared>,
    handles: Vec<Handle>,
    replies: mpsc::Receiver<Reply>,
    opts: EngineOpts,
    trial_id: u32,
    open_per_channel: Vec<u64>,
}

impl Engine {
    /// Starts `opts.threads` idle threads over `plan`'s connections.
    pub fn start(plan: Plan, opts: EngineOpts) -> std::io::Result<Engine> {
        let threads = opts.threads.max(1);
        let shared = Arc::new(Shared {
            epoch: Instant::now(),
            threads,
            connect_timeout_ns: opts.connect_timeout.as_nanos() as u64,
            size: opts.size,
            bodies: match opts.payload {
                Payload::Zeros => Vec::new(),
                Payload::Json => (0..crate::wire::writer::JSON_BODIES as u64)
                    .map(|k| crate::wire::writer::json_body(opts.size.saturating_sub(STAMP_LEN), k))
                    .collect(),
            },
            compress_publish: opts.compress_publish,
            open: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            expected: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            frames: AtomicU64::new(0),
            plan,
        });
        let (reply_tx, replies) = mpsc::channel();
        let mut handles = Vec::with_capacity(threads);
        for w in 0..threads {
            let poll = Poll::new()?;
            let waker = Waker::new(poll.registry(), worker::WAKER)?;
            let conns = shared.plan.conns.iter().skip(w).step_by(threads);
            let conns = conns
                .map(|c| conn::Conn::new(c.channel, c.publisher).to(c.target))
                .collect();
            let (cmd_tx, cmd_rx) = mpsc::channel();
            let wk = worker::Worker::new(w, poll, conns, shared.clone(), cmd_rx, reply_tx.clone())?;
            let join = std::thread::Builder::new()
                .name(format!("loadgen-{w}"))
                .spawn(move || wk.run())?;
            handles.push(Handle {
                cmds: cmd_tx,
                waker,
                join: Some(join),
            });
        }
        let channels = shared.plan.channels.len();
        Ok(Engine {
            shared,
            handles,
            replies,
            opts,
            trial_id: 0,
            open_per_channel: vec![0; channels],
        })
    }

    fn broadcast(&self, make: impl Fn() -> Command) {
        for h in &self.handles {
            let _ = h.cmds.send(make());
            let _ = h.waker.wake();
        }
    }

    /// Connections currently open.
    pub fn open(&self) -> u64 {
        self.shared.open.load(Ordering::Relaxed)
    }

    /// Connections in the plan.
    pub fn planned(&self) -> u64 {
        self.shared.plan.conns.len() as u64
    }

    /// Data messages received since the engine started, of any trial (stale ones too): what
    /// [`Engine::settle`] watches to tell when a server's backlog has drained.
    pub fn frames(&self) -> u64 {
        self.shared.frames.load(Ordering::Relaxed)
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.broadcast(|| Command::Stop);
        for h in &mut self.handles {
            if let Some(j) = h.join.take() {
                let _ = j.join();
            }
        }
    }
}

/// Merges `src` into `dst`.
fn merge_hist(dst: &mut Histogram<u64>, src: &Histogram<u64>) {
    // Both come from `latency_histogram()`, so they share bounds and adding cannot fail.
    dst.add(src).expect("histograms with the same bounds");
}

/// An empty latency histogram and its (zero) percentiles.
fn empty() -> (Histogram<u64>, Percentiles) {
    (latency_histogram(), Percentiles::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(port: u16) -> Target {
        Target::parse(&format!("ws://127.0.0.1:{port}/"), false).unwrap()
    }

    #[test]
    fn subscribers_and_publishers_are_spread_over_the_targets_each_round_robin() {
        let mut plan = Plan::cluster(vec![target(1), target(2)], None, Vec::new());
        let ch = plan.channel("c".into());
        plan.publisher(ch);
        plan.subscribers(ch, 3);
        plan.publisher(ch);
        let got: Vec<(u32, Option<u32>)> =
            plan.conns.iter().map(|c| (c.target, c.publisher)).collect();
        assert_eq!(
            got,
            [(0, Some(0)), (0, None), (1, None), (0, None), (1, Some(1))]
        );
    }

    #[test]
    fn a_pinned_publisher_target_takes_every_publisher() {
        let mut plan = Plan::cluster(vec![target(1), target(2), target(3)], Some(2), Vec::new());
        let ch = plan.channel("c".into());
        plan.publisher(ch);
        plan.publisher(ch);
        plan.subscribers(ch, 2);
        let got: Vec<u32> = plan.conns.iter().map(|c| c.target).collect();
        assert_eq!(got, [2, 2, 0, 1]);
    }
}
