//! Every limit and default of the server, each with the reason it has the value it has.
//!
//! The same struct is the command line (`clap` derive) and the library's configuration, so a
//! default is written exactly once: [`Config::default`] is what `fanout` with no flags runs.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Parser, ValueEnum};

/// Largest HTTP request head accepted during the handshake (431 beyond it). Browsers send well
/// under 2 KiB; 8 KiB is what common proxies allow and bounds memory per pending handshake.
pub const MAX_HEADER_BYTES: usize = 8 * 1024;

/// Bytes read from a socket per `read` call into the loop's one shared read buffer. Large
/// enough to take many small frames per syscall; shared, so idle connections cost none of it.
pub const READ_BUFFER_BYTES: usize = 64 * 1024;

/// How many connections past `--max-connections` may be held briefly to be sent a `503`, so a
/// flood of connections gets an answer without growing memory without bound; beyond that, extra
/// connections are closed at once.
pub const REFUSAL_SLACK: usize = 256;

/// File descriptors kept back from the open-file limit for the listener, the poller, the waker,
/// the signal pipe and logging when `--max-connections` is derived from that limit.
pub const RESERVED_FDS: usize = 32;

/// What to do with a subscriber whose queued output exceeds `--max-backpressure`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SlowConsumer {
    /// Close it with 1008 "slow consumer" (a chat client that cannot keep up reconnects and
    /// resyncs rather than silently missing messages).
    Close,
    /// Skip messages for it while it is over the cap, and count the drops (a dashboard that only
    /// needs the latest values).
    Drop,
}

/// The server's configuration: `fanout --help` documents every field.
#[derive(Clone, Debug, Parser)]
#[command(name = "fanout", version, about = "A WebSocket pub/sub broadcast server", long_about = None)]
pub struct Config {
    /// Address to listen on.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Channel for clients that offer no Sec-WebSocket-Protocol; without it they are refused (400).
    #[arg(long, value_name = "NAME")]
    pub default_channel: Option<String>,

    /// Also deliver each message back to its sender.
    #[arg(long)]
    pub echo: bool,

    /// Allowed Origin header value (repeatable); when given, any other Origin is refused (403).
    /// Requests without an Origin (non-browser clients) are allowed.
    #[arg(long = "allowed-origin", value_name = "ORIGIN")]
    pub allowed_origins: Vec<String>,

    /// Close connections that have not completed the handshake within this time (with 408).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub handshake_timeout: Duration,

    /// Largest message (sum of its fragments) a client may send; larger closes with 1009.
    #[arg(long, value_name = "BYTES", default_value = "1MiB", value_parser = parse_size)]
    pub max_message: usize,

    /// Cap on a connection's queued-but-unwritten bytes (counted per connection even though
    /// broadcast bytes are shared); see --slow-consumer.
    #[arg(long, value_name = "BYTES", default_value = "4MiB", value_parser = parse_size)]
    pub max_backpressure: usize,

    /// What happens to a subscriber over --max-backpressure.
    #[arg(long, value_name = "POLICY", value_enum, default_value = "close")]
    pub slow_consumer: SlowConsumer,

    /// Interval between server pings to each connection.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    pub ping_interval: Duration,

    /// Close a connection that has sent nothing (pongs included) for this long.
    #[arg(long, value_name = "DURATION", default_value = "75s", value_parser = parse_duration)]
    pub idle_timeout: Duration,

    /// Most simultaneous connections; extras are refused with 503. Default: the open-file
    /// limit minus a small reserve.
    #[arg(long, value_name = "N")]
    pub max_connections: Option<usize>,

    /// After sending a close frame, how long to wait for the peer's close before dropping it.
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = parse_duration)]
    pub close_timeout: Duration,

    /// TEMPORARY (being replaced): publish token.
    #[arg(long, value_name = "TOKEN")]
    pub publish_token: Option<String>,

    /// TEMPORARY: history length.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub history: usize,

    /// TEMPORARY: history ttl.
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_duration)]
    pub history_ttl: Duration,

    /// On SIGINT/SIGTERM, how long to flush close frames before exiting anyway.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config::parse_from(["fanout"])
    }
}

/// Parses `10s`, `500ms`, `2m` (humantime syntax).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("invalid duration {s:?}: {e}"))
}

/// Parses a byte size: `1048576`, `64KiB`, `1MiB`, `1GiB` (also `KB`/`MB`/`GB` as powers of 1024).
pub fn parse_size(s: &str) -> Result<usize, String> {
    let s = s.trim();
    let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(digits);
    let n: usize = n.parse().map_err(|_| format!("invalid size {s:?}"))?;
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => {
            return Err(format!(
                "invalid size unit in {s:?} (use B, KiB, MiB or GiB)"
            ));
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("size {s:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_documented_values() {
        let c = Config::default();
        assert_eq!(c.listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(c.handshake_timeout, Duration::from_secs(10));
        assert_eq!(c.max_message, 1 << 20);
        assert_eq!(c.max_backpressure, 4 << 20);
        assert_eq!(c.slow_consumer, SlowConsumer::Close);
        assert_eq!(c.ping_interval, Duration::from_secs(30));
        assert_eq!(c.idle_timeout, Duration::from_secs(75));
        assert_eq!(c.shutdown_timeout, Duration::from_secs(5));
        assert_eq!(c.max_connections, None);
        assert!(!c.echo);
    }

    #[test]
    fn sizes_and_durations_parse() {
        assert_eq!(parse_size("64KiB"), Ok(65536));
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert_eq!(parse_size("300"), Ok(300));
        assert!(parse_size("1XB").is_err());
        assert!(parse_size("").is_err());
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert!(parse_duration("10").is_err());
    }

    #[test]
    fn flags_override_defaults() {
        let c = Config::parse_from([
            "fanout",
            "--echo",
            "--allowed-origin",
            "https://a",
            "--allowed-origin",
            "https://b",
            "--slow-consumer",
            "drop",
            "--max-message",
            "64KiB",
            "--ping-interval",
            "500ms",
        ]);
        assert!(c.echo);
        assert_eq!(c.allowed_origins, vec!["https://a", "https://b"]);
        assert_eq!(c.slow_consumer, SlowConsumer::Drop);
        assert_eq!(c.max_message, 65536);
        assert_eq!(c.ping_interval, Duration::from_millis(500));
    }
}
