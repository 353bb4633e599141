//! loadgen: the capacity-test tool of fanout.
//!
//! It speaks only fanout's client contract — the channel is the `Sec-WebSocket-Protocol`
//! value, and each message a client sends reaches every *other* subscriber of the channel — so
//! it measures any server that follows that contract: fanout, the tokio peer (`loadgen peer`),
//! uWebSockets.js (`peers/uws`) and the reference peer (`contig-peer`, `peers/contig.rs`).
//!
//! # Method
//!
//! - **Client.** `--threads` mio event loops (default 1), connections sharded across them. Client
//!   frames are masked with a fresh key each, and the handshake checks `Sec-WebSocket-Accept`
//!   and the selected protocol, with the same codec as the server (`fanout::proto`).
//!   `wss://` URLs add a rustls client (ring, TLS 1.2/1.3) under the same loop: it decrypts
//!   until the socket would block, the upgrade request waits in rustls until its handshake is
//!   done, and a failed TLS handshake counts as the failure cause `tls`. Trust is explicit
//!   (`--ca-file` or `--insecure`); the accounting is the same as over `ws://`.
//! - **Receive path.** A capacity test must outrun the server it tests, so receiving is cheap:
//!   one `read` per readable socket per turn into a 256 KiB buffer (a short read means it is
//!   drained); a scan walks the whole frames in it reading only their 2–4 header bytes and the
//!   24-byte stamp (a frame split across reads keeps just those); nothing is allocated per
//!   frame; a delivery is a stamp read, an in-order check on its (receiver, publisher) sequence
//!   tracker and one increment of an HDR latency bucket, turned into a histogram once per
//!   progress interval: about 12 ns a frame over 256 KiB reads of 64-byte frames on the
//!   2-core development machine (39 ns before this path was tuned).
//!   While reads are dense (≥ 50 per ms) a turn starts at least 200 µs after the previous one,
//!   so what arrives meanwhile costs one `recv` per socket, not a wake-up per server write;
//!   sparse traffic is read at once. What is left is the kernel's: on loopback each `recv`
//!   also sends the ACK for what it read, about as costly as the server's `send`.
//! - **Compression.** With `--deflate` every connection offers permessage-deflate (RFC 7692)
//!   with no context takeover either way; those the server accepts are counted
//!   (`deflate_connections`), the others run plain. Publishers send plain messages (RSV1 is
//!   per message, and a client need not compress) unless `--compress-publish` (fanout's
//!   compressor, one per event loop). A compressed message costs one
//!   inflate of its *head* only — just enough DEFLATE to yield the stamp, straight from the
//!   read buffer, with one inflater per event loop (`wire::inflate`) — and plain frames keep
//!   the scan. `wire_bytes` counts payload bytes as they arrived, compressed or not, so
//!   `wire_bytes_per_delivery` shows what compression saved; `--payload json` gives messages
//!   worth compressing (zeros would shrink to nothing).
//! - **Open loop.** A trial offers `--rate` messages per second over all publishers: slot `j` is
//!   due at `start + j/rate`. A message is sent when due, whatever happened to earlier ones; if
//!   loadgen is late it sends everything overdue at once. Each payload carries its publisher, a
//!   trial id, a sequence number and its *scheduled* send time (ns on one monotonic clock shared
//!   by all threads). Latency is receive time minus scheduled time, so a stall anywhere —
//!   server, kernel or loadgen — counts against every message it delayed (no coordinated
//!   omission). Each loop sleeps on a `timerfd` armed for its next due send, so sends leave
//!   within microseconds of their slot without spinning (loadgen's CPU % stays meaningful).
//!   How late loadgen itself queued each message is reported as `send_lag_us`.
//! - **Counting.** Each message is *expected* at every other connection of its channel that
//!   was open when the trial began. Receivers track each publisher's sequence numbers exactly:
//!   a first reception is *delivered* (and *reordered* when it fills a gap), a repeat is a
//!   *duplicate*. The trial is *done* when every publisher has sent its schedule and either all
//!   expected deliveries have arrived or `--drain` (default 2 s) has passed since the schedule
//!   ended; then `lost = expected − delivered`. Messages of an earlier trial (sweep) are *stale*,
//!   never deliveries. Latency goes into an HDR histogram (1 ns – 1 h, 3 digits).
//! - **Rates.** `delivered_per_sec` is deliveries divided by the time from the schedule's start
//!   to the last delivery (at least `--duration`), so a server that delivers late is not
//!   credited with the offered rate.
//! - **Cost.** With `--server-pid`, `utime + stime` of the server (`/proc/PID/stat`, 10 ms
//!   ticks, all threads) is read before and after each trial: *server CPU µs per delivery* is
//!   the difference over the deliveries, *server CPU %* over the wall time; loadgen's own CPU %
//!   is read the same way from `/proc/self`. RSS is `VmRSS` from `/proc/PID/status`.
//! - **Who was the limit.** A figure is the server's only if loadgen had CPU to spare: on a
//!   2-core machine (server pinned to one core, loadgen to the other) every report carries both
//!   CPU %, and `compare.sh` marks with † any trial where loadgen's was at least the server's
//!   (or at least 90 %). A server that writes every frame to every subscriber separately costs
//!   loadgen a `recv` (and an ACK) per frame, so CPU per delivery at a fixed moderate rate
//!   remains the figure that compares servers most robustly.
//! - **Bounds.** Every run ends by itself: `--duration` is capped at 10 minutes, sweeps at
//!   `--max-steps`, every wait has a deadline; only the `--url` address is loaded, loopback
//!   unless `--allow-remote`; connections are refused up front, with a message, when they
//!   would not fit under the open-file limit or in the sources' ephemeral ports.
//!
//! # Layout
//! - [`cli`]: flags. [`target`]: `--url`, `--source`. [`tls`]: whom `wss://` trusts.
//! - [`wire`]: the client codec (handshake, frame reader, masked writer, payload stamp,
//!   compressed heads).
//! - [`pacing`]: the send schedule. [`stats`]: sequence tracking, tallies, percentiles, causes.
//! - [`engine`]: the event loops (the only code that touches sockets) and their driver.
//! - [`scenario`]: `connect`, `fanout`, `sweep`, `chat`. [`report`], [`plot`], [`progress`]:
//!   output. [`sysinfo`]: `/proc` and limits. [`peer`]: the tokio peer server.
//! - `peers/contig.rs`: the `contig-peer` binary, a minimal mio reference server (one
//!   contiguous write per subscriber per turn) for comparisons — not fanout's code.
#![deny(missing_docs)]

pub mod cli;
pub mod engine;
pub mod pacing;
pub mod peer;
pub mod plot;
pub mod progress;
pub mod publish;
pub mod report;
pub mod scenario;
pub mod stats;
pub mod sysinfo;
pub mod target;
pub mod tls;
pub mod wire;

pub use report::Outcome;

/// Why a run did not succeed.
#[derive(Debug)]
pub enum RunError {
    /// It could not run (bad flags, limits, the server unreachable …).
    Setup(String),
    /// It ran, and an assertion (`--expect-no-loss`, `--max-p99`) failed.
    Assertion {
        /// The run's results.
        outcome: Box<Outcome>,
        /// One line per failed assertion.
        reasons: Vec<String>,
    },
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunError::Setup(e) => write!(f, "{e}"),
            RunError::Assertion { reasons, .. } => {
                write!(f, "assertion failed: {}", reasons.join("; "))
            }
        }
    }
}

impl std::error::Error for RunError {}

/// Runs a scenario (or the peer server) as the command line says; writes `--json`/`--plot`,
/// prints the summary unless `--quiet`, and checks the assertions.
pub fn run(cli: cli::Cli) -> Result<Outcome, RunError> {
    use cli::Command;
    let (outcome, common) = match cli.command {
        Command::Peer(args) => {
            peer::serve(&args).map_err(|e| RunError::Setup(format!("peer: {e}")))?;
            return Ok(Outcome::default());
        }
        Command::Publish(args) => {
            let report = publish::run(&args).map_err(RunError::Setup)?;
            if report.delivered != report.sent || report.accepted != report.sent {
                return Err(RunError::Setup(format!(
                    "{} sent, {} accepted, {} delivered",
                    report.sent, report.accepted, report.delivered
                )));
            }
            return Ok(Outcome::default());
        }
        Command::Connect(a) => (scenario::connect::run(&a), a.common),
        Command::Fanout(a) => (scenario::fanout::run(&a), a.common),
        Command::Sweep(a) => (scenario::sweep::run(&a), a.common),
        Command::Chat(a) => (scenario::chat::run(&a), a.common),
    };
    let outcome = outcome.map_err(RunError::Setup)?;
    if let Some(path) = &common.json {
        report::write_json(path, &outcome.json).map_err(RunError::Setup)?;
    }
    if let Some(path) = &common.plot {
        plot::draw(path, &outcome).map_err(RunError::Setup)?;
    }
    if !common.quiet {
        println!("{}", report::table(&outcome));
    }
    let reasons = report::check(&outcome, common.expect_no_loss, common.max_p99);
    if reasons.is_empty() {
        Ok(outcome)
    } else {
        Err(RunError::Assertion {
            outcome: Box::new(outcome),
            reasons,
        })
    }
}
