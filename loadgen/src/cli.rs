//! The command line: `loadgen <connect|fanout|sweep|chat|peer|publish> [flags]`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// Longest a single `--duration` (or sweep step) may be: every run ends by itself.
pub const MAX_DURATION: Duration = Duration::from_secs(600);

/// Capacity tests for WebSocket pub/sub servers that follow fanout's client contract.
#[derive(Clone, Debug, Parser)]
#[command(name = "loadgen", version, about, long_about = None)]
pub struct Cli {
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The scenarios and the peer server.
#[derive(Clone, Debug, Subcommand)]
pub enum Command {
    /// Open N idle connections: handshakes/s, time to reach N, failures, server RSS per connection.
    Connect(ConnectArgs),
    /// N subscribers and P publishers on one channel at a fixed rate: throughput, loss, latency.
    Fanout(FanoutArgs),
    /// Raise the offered rate (double, then bisect) to the highest one with no loss within the SLO.
    Sweep(SweepArgs),
    /// K rooms of M members, every member publishing: many-to-many latency and cost.
    Chat(ChatArgs),
    /// Serve the client contract with tokio + tokio-tungstenite (the in-tree peer for comparisons).
    Peer(PeerArgs),
    /// Pipelined `POST /publish` on one keep-alive connection: accepted/s, each one delivered.
    Publish(crate::publish::PublishArgs),
}

/// Flags every scenario takes.
#[derive(Clone, Debug, Args)]
pub struct Common {
    /// The server: ws://HOST:PORT/PATH or wss://HOST:PORT/PATH (loopback only unless
    /// --allow-remote). Repeat it for several nodes of a cluster: subscribers and publishers
    /// are spread over the URLs round-robin, and the accounting covers every node (ws:// and
    /// wss:// may be mixed).
    #[arg(long, default_value = "ws://127.0.0.1:8080/")]
    pub url: Vec<String>,
    /// Pin every publisher to this URL (one of --url, or another node); subscribers still
    /// spread over --url.
    #[arg(long, value_name = "URL")]
    pub pub_url: Option<String>,
    /// A connection token (JWT) for a server with access control: offered as the extra
    /// subprotocol `bearer.TOKEN` after the channel. Prefer the environment variable (`ps`
    /// shows flags).
    #[arg(
        long,
        env = "LOADGEN_TOKEN",
        value_name = "JWT",
        hide_env_values = true
    )]
    pub token: Option<String>,
    /// Local addresses to connect from, bound before connect: `127.0.0.1-127.0.0.8` or a comma
    /// list. Each address has its own ephemeral ports, so many addresses allow more connections.
    #[arg(long, value_name = "ADDRS")]
    pub source: Option<String>,
    /// Event-loop threads; connections are sharded across them.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// New connections per second (0: as fast as --max-pending allows).
    #[arg(long, default_value_t = 5000.0)]
    pub connect_rate: f64,
    /// Most connections in TCP connect or handshake at once.
    #[arg(long, default_value_t = 512)]
    pub max_pending: usize,
    /// A connection not open within this time fails as timed out.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub connect_timeout: Duration,
    /// After publishing ends, wait at most this long for in-flight deliveries before counting
    /// what is missing as lost.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub drain: Duration,
    /// Timeline resolution (progress line and plots).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub interval: Duration,
    /// The server's process id: report its CPU per delivery, CPU% and RSS (from /proc).
    #[arg(long, value_name = "PID")]
    pub server_pid: Option<u32>,
    /// Write every figure as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Draw an SVG plot (latency over time; for sweep, rate and p99 vs offered rate).
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,
    /// Fail (exit 3) if any message is lost or any connection fails or drops.
    #[arg(long)]
    pub expect_no_loss: bool,
    /// Fail (exit 3) if p99 latency exceeds this.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub max_p99: Option<Duration>,
    /// For wss:// URLs: trust the certificates in this PEM file (e.g. the server's
    /// self-signed certificate). A wss:// URL needs this or --insecure.
    #[arg(long, value_name = "PEM", conflicts_with = "insecure")]
    pub ca_file: Option<PathBuf>,
    /// For wss:// URLs: accept any server certificate (handshake signatures are still
    /// verified, so the cost is the real one; chain and name are not checked).
    #[arg(long)]
    pub insecure: bool,
    /// Allow a target (and sources) outside 127.0.0.0/8 and ::1.
    #[arg(long)]
    pub allow_remote: bool,
    /// No progress line and no summary table.
    #[arg(long)]
    pub quiet: bool,
    /// Offer permessage-deflate (RFC 7692, no context takeover either way); a server that
    /// declines it is used plain. Reports how many connections negotiated it.
    #[arg(long)]
    pub deflate: bool,
    /// What follows the stamp in each message: zeros, or dashboard-like JSON (compressible
    /// as real updates are; use it with --deflate).
    #[arg(long, value_enum, default_value_t = crate::engine::Payload::Zeros)]
    pub payload: crate::engine::Payload,
    /// With --deflate, publishers compress what they send (on connections that negotiated
    /// it) with fanout's compressor at its default level and minimum size, one per event loop.
    #[arg(long, requires = "deflate")]
    pub compress_publish: bool,
}

/// `loadgen connect`.
#[derive(Clone, Debug, Args)]
pub struct ConnectArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub common: Common,
    /// Connections to open.
    #[arg(long, default_value_t = 1000)]
    pub conns: usize,
    /// Spread them over this many channels (`idle-0`, `idle-1`, …).
    #[arg(long, default_value_t = 1)]
    pub channels: usize,
    /// Hold them open this long before measuring the server's RSS.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub hold: Duration,
}

/// `loadgen fanout`.
#[derive(Clone, Debug, Args)]
pub struct FanoutArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub common: Common,
    /// Subscribers (receive only).
    #[arg(long, default_value_t = 1000)]
    pub subs: usize,
    /// Publishers (they also receive each other's messages, which count as deliveries).
    #[arg(long, default_value_t = 1)]
    pub pubs: usize,
    /// Messages per second, all publishers together.
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,
    /// Payload bytes per message (at least 24: the stamp).
    #[arg(long, default_value = "64", value_parser = parse_size)]
    pub size: usize,
    /// How long to publish.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// The channel name.
    #[arg(long, default_value = "fanout")]
    pub channel: String,
}

/// `loadgen sweep`.
#[derive(Clone, Debug, Args)]
pub struct SweepArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub common: Common,
    /// Subscribers.
    #[arg(long, default_value_t = 1000)]
    pub subs: usize,
    /// Publishers.
    #[arg(long, default_value_t = 1)]
    pub pubs: usize,
    /// Payload bytes per message.
    #[arg(long, default_value = "64", value_parser = parse_size)]
    pub size: usize,
    /// A step passes when nothing is lost and p99 is within this.
    #[arg(long, default_value = "50ms", value_parser = parse_duration)]
    pub slo: Duration,
    /// First offered rate, messages per second.
    #[arg(long, default_value_t = 100.0)]
    pub start_rate: f64,
    /// Never offer more than this many messages per second.
    #[arg(long, default_value_t = 1e7)]
    pub max_rate: f64,
    /// Publishing time of each step.
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    pub step_duration: Duration,
    /// Most steps (each costs step-duration plus drain).
    #[arg(long, default_value_t = 16)]
    pub max_steps: usize,
    /// Stop bisecting when the bracket is within this fraction.
    #[arg(long, default_value_t = 0.05)]
    pub tolerance: f64,
    /// After a failed step, wait until no message has arrived for this long (at most 30 s), so
    /// the server's backlog clears before the next step.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub cooldown: Duration,
}

/// `loadgen chat`.
#[derive(Clone, Debug, Args)]
pub struct ChatArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub common: Common,
    /// Rooms (channels `room-0`, `room-1`, …).
    #[arg(long, default_value_t = 200)]
    pub rooms: usize,
    /// Members per room; every member publishes.
    #[arg(long, default_value_t = 10)]
    pub members: usize,
    /// Messages per second, all members of all rooms together.
    #[arg(long, default_value_t = 2000.0)]
    pub rate: f64,
    /// Payload bytes per message.
    #[arg(long, default_value = "64", value_parser = parse_size)]
    pub size: usize,
    /// How long to publish.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
}

/// `loadgen peer`.
#[derive(Clone, Debug, Args)]
pub struct PeerArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9002")]
    pub listen: SocketAddr,
    /// Runtime worker threads: 1 is tokio's current-thread runtime (one core, like fanout).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Messages queued per connection before it is closed as a slow consumer.
    #[arg(long, default_value_t = 65536)]
    pub queue: usize,
}

/// Durations (`10s`, `500ms`) and sizes (`64`, `16KiB`, `1MiB`) are parsed exactly as the
/// server parses its own flags.
pub use fanout::config::{parse_duration, parse_size};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn flags_parse() {
        let cli = Cli::parse_from([
            "loadgen",
            "fanout",
            "--subs",
            "5",
            "--rate",
            "50",
            "--size",
            "16KiB",
            "--duration",
            "500ms",
            "--url",
            "ws://127.0.0.1:1/",
            "--expect-no-loss",
            "--max-p99",
            "20ms",
        ]);
        let Command::Fanout(a) = cli.command else {
            panic!("not fanout")
        };
        assert_eq!((a.subs, a.rate, a.size), (5, 50.0, 16384));
        assert_eq!(a.duration, Duration::from_millis(500));
        assert!(a.common.expect_no_loss);
        assert_eq!(a.common.max_p99, Some(Duration::from_millis(20)));
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert!(parse_size("3 parsecs").is_err());
    }
}
