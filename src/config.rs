//! Every limit and default of the server, each with the reason it has the value it has, and the
//! layers a setting is read from.
//!
//! The same struct is the command line (`clap` derive) and the library's configuration, so a
//! default is written exactly once: [`Config::default`] is what `fanout` with no flags runs.
//!
//! # Layers
//!
//! A setting takes the first of: its flag, its `FANOUT_<FLAG>` environment variable, the
//! `--config` TOML file, its default. Clap resolves flags, variables and defaults, and
//! `ArgMatches::value_source` says which one it used; the file then fills in only the settings
//! whose value is a default or unset. In the file, each key is the field's name in kebab-case
//! (`max-message`, the flag's own name; the list `allowed-origins` is the one key spelled
//! differently from its repeatable flag `--allowed-origin`); durations and sizes are strings in
//! the flags' syntax. [`Config::to_toml`] writes that format, so `fanout --print-config` output
//! is a valid file.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use std::{fmt, io};

use clap::builder::{BoolishValueParser, TypedValueParser};
use clap::parser::ValueSource;
use clap::{Args, CommandFactory, FromArgMatches, Parser, ValueEnum};
use serde::{Deserialize, Serialize};

mod file;
use file::{FileConfig, read_file};

/// Largest HTTP request head accepted during the handshake (431 beyond it). Browsers send well
/// under 2 KiB; 8 KiB is what common proxies allow and bounds memory per pending handshake.
pub const MAX_HEADER_BYTES: usize = 8 * 1024;

/// Bytes read from a socket per `read` call into the loop's one shared read buffer. Large
/// enough to take many small frames per syscall; shared, so idle connections cost none of it.
pub const READ_BUFFER_BYTES: usize = 64 * 1024;

/// The listen backlog: how many connections may wait to be accepted. Deep enough for a ramp of
/// thousands of connects per second (the kernel caps it at `net.core.somaxconn`).
pub const LISTEN_BACKLOG: i32 = 4096;

/// How many connections past `--max-connections` may be held briefly to be sent a `503`, so a
/// flood of connections gets an answer without growing memory without bound; beyond that, extra
/// connections are closed at once.
pub const REFUSAL_SLACK: usize = 256;

/// File descriptors kept back from the open-file limit for the listener, the poller, the waker,
/// the signal pipe and logging when `--max-connections` is derived from that limit.
pub const RESERVED_FDS: usize = 32;

/// What to do with a subscriber whose queued output exceeds `--max-backpressure`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SlowConsumer {
    /// Close it with 1008 "slow consumer" (a chat client that cannot keep up reconnects and
    /// resyncs rather than silently missing messages).
    Close,
    /// Skip messages for it while it is over the cap, and count the drops (a dashboard that only
    /// needs the latest values).
    Drop,
}

/// What to do with a client over `--max-client-rate`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RateLimit {
    /// Close it with 1008 "rate limit" (a chat member flooding a room).
    Close,
    /// Drop its messages over the limit, and count them.
    Drop,
}

/// How many event loops to run (`--threads`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Threads {
    /// One per available core.
    Auto,
    /// Exactly this many (1 to [`crate::node::MAX_LOOPS`]).
    Count(usize),
}

impl Threads {
    /// The number of loops this stands for on this machine.
    pub fn resolve(self) -> usize {
        match self {
            Threads::Auto => std::thread::available_parallelism()
                .map_or(1, |n| n.get())
                .min(crate::node::MAX_LOOPS),
            Threads::Count(n) => n,
        }
    }
}

impl fmt::Display for Threads {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Threads::Auto => f.write_str("auto"),
            Threads::Count(n) => write!(f, "{n}"),
        }
    }
}

/// Parses `--threads`: `auto` or a count from 1 to 64.
pub fn parse_threads(s: &str) -> Result<Threads, String> {
    if s.trim().eq_ignore_ascii_case("auto") {
        return Ok(Threads::Auto);
    }
    match s.trim().parse() {
        Ok(n) if (1..=crate::node::MAX_LOOPS).contains(&n) => Ok(Threads::Count(n)),
        _ => Err(format!(
            "invalid thread count {s:?}: auto, or 1 to {}",
            crate::node::MAX_LOOPS
        )),
    }
}

/// The server's configuration: `fanout --help` documents every field.
#[derive(Clone, Debug, PartialEq, Eq, Args)]
pub struct Config {
    /// Address to listen on.
    #[arg(long, env = "FANOUT_LISTEN")]
    #[arg(value_name = "ADDR", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Event loops, each on its own thread with its own listener (SO_REUSEPORT) and its own
    /// connections, sharing every broadcast frame: `auto` is one per core. Default 1: one loop
    /// is the simplest to reason about and enough for most deployments.
    #[arg(long, env = "FANOUT_THREADS", value_name = "N|auto")]
    #[arg(default_value = "1", value_parser = parse_threads)]
    pub threads: Threads,

    /// Channel for clients that offer no Sec-WebSocket-Protocol; without it they are refused (400).
    #[arg(long, env = "FANOUT_DEFAULT_CHANNEL", value_name = "NAME")]
    pub default_channel: Option<String>,

    /// Also deliver each message back to its sender.
    #[arg(long, env = "FANOUT_ECHO", value_parser = BoolishValueParser::new())]
    pub echo: bool,

    /// Allowed Origin header value (repeatable, or comma-separated); when given, any other
    /// Origin is refused (403). Requests without an Origin (non-browser clients) are allowed.
    #[arg(long = "allowed-origin", env = "FANOUT_ALLOWED_ORIGIN")]
    #[arg(value_name = "ORIGIN", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,

    /// Close connections that have not completed the handshake within this time (with 408; a
    /// TLS handshake not done by then is just closed).
    #[arg(long, env = "FANOUT_HANDSHAKE_TIMEOUT")]
    #[arg(value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub handshake_timeout: Duration,

    /// Largest message (sum of its fragments) a client may send; larger closes with 1009.
    #[arg(long, env = "FANOUT_MAX_MESSAGE")]
    #[arg(value_name = "BYTES", default_value = "1MiB", value_parser = parse_size)]
    pub max_message: usize,

    /// Cap on a connection's queued-but-unwritten bytes (counted per connection even though
    /// broadcast bytes are shared); see --slow-consumer.
    #[arg(long, env = "FANOUT_MAX_BACKPRESSURE")]
    #[arg(value_name = "BYTES", default_value = "4MiB", value_parser = parse_size)]
    pub max_backpressure: usize,

    /// Memory for partly received input (messages, request heads, publish bodies), all
    /// connections together; the connection that would go over it is closed with 1013 (or
    /// refused with 503).
    #[arg(long, env = "FANOUT_MAX_INPUT_MEMORY")]
    #[arg(value_name = "BYTES", default_value = "256MiB", value_parser = parse_size)]
    pub max_input_memory: usize,

    /// What happens to a subscriber over --max-backpressure.
    #[arg(long, env = "FANOUT_SLOW_CONSUMER")]
    #[arg(value_name = "POLICY", value_enum, default_value = "close")]
    pub slow_consumer: SlowConsumer,

    /// Interval between server pings to each connection.
    #[arg(long, env = "FANOUT_PING_INTERVAL")]
    #[arg(value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    pub ping_interval: Duration,

    /// Close a connection that has sent nothing (pongs included) for this long.
    #[arg(long, env = "FANOUT_IDLE_TIMEOUT")]
    #[arg(value_name = "DURATION", default_value = "75s", value_parser = parse_duration)]
    pub idle_timeout: Duration,

    /// Most simultaneous connections; extras are refused with 503. Default: the open-file
    /// limit minus a small reserve.
    #[arg(long, env = "FANOUT_MAX_CONNECTIONS", value_name = "N")]
    pub max_connections: Option<usize>,

    /// After sending a close frame, how long to wait for the peer's close before dropping it.
    #[arg(long, env = "FANOUT_CLOSE_TIMEOUT")]
    #[arg(value_name = "DURATION", default_value = "2s", value_parser = parse_duration)]
    pub close_timeout: Duration,

    /// On SIGINT/SIGTERM, how long to flush close frames before exiting anyway.
    #[arg(long, env = "FANOUT_SHUTDOWN_TIMEOUT")]
    #[arg(value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,

    /// Token that POST /publish/... requires as `Authorization: Bearer TOKEN`. Unset by
    /// default, so publishing is open, which suits the default localhost listen address: set
    /// one before listening anywhere else. Prefer the environment variable, which `ps` does not
    /// show.
    #[arg(long, env = "FANOUT_PUBLISH_TOKEN", hide_env_values = true)]
    #[arg(value_name = "TOKEN")]
    pub publish_token: Option<String>,

    /// Whether WebSocket clients may publish. With false they only receive, a data message
    /// closes the connection with 1008 "publishing not allowed", and publishing is left to
    /// POST /publish and Handle::publish (a dashboard feed whose viewers must not push).
    #[arg(long, env = "FANOUT_CLIENT_PUBLISH", value_name = "BOOL")]
    #[arg(default_value = "true", value_parser = BoolishValueParser::new())]
    #[arg(action = clap::ArgAction::Set)]
    pub client_publish: bool,

    /// HMAC secret (HS256, at least 32 bytes) that signs connection tokens (JWT). With it or
    /// --auth-public-key, every WebSocket upgrade needs a valid token whose `channels` claim
    /// covers the channel. Prefer the environment variable or the config file: `ps` shows
    /// flags.
    #[arg(long, env = "FANOUT_AUTH_HMAC_SECRET", hide_env_values = true)]
    #[arg(value_name = "SECRET")]
    pub auth_hmac_secret: Option<String>,

    /// Public key (PEM: RSA for RS256, P-256 for ES256, P-384 for ES384, Ed25519 for EdDSA)
    /// that verifies connection tokens; see --auth-hmac-secret.
    #[arg(long, env = "FANOUT_AUTH_PUBLIC_KEY", value_name = "FILE")]
    pub auth_public_key: Option<PathBuf>,

    /// Bearer token that GET /channels, /channels/{name} and /metrics require when set
    /// (Prometheus sends it with `authorization: {credentials: ...}`); /healthz stays open.
    #[arg(long, env = "FANOUT_ADMIN_TOKEN", hide_env_values = true)]
    #[arg(value_name = "TOKEN")]
    pub admin_token: Option<String>,

    /// Most messages per second one WebSocket client may publish (a token bucket; see
    /// --max-client-burst and --rate-limit). Unset: no limit.
    #[arg(long, env = "FANOUT_MAX_CLIENT_RATE", value_name = "N")]
    #[arg(value_parser = clap::value_parser!(u32).range(1..))]
    pub max_client_rate: Option<u32>,

    /// How many messages a client may send at once above --max-client-rate. Default: one
    /// second's worth (the rate).
    #[arg(long, env = "FANOUT_MAX_CLIENT_BURST", value_name = "N")]
    #[arg(value_parser = clap::value_parser!(u32).range(1..))]
    pub max_client_burst: Option<u32>,

    /// What happens to a client over --max-client-rate: close it with 1008 "rate limit", or
    /// drop its extra messages (counted).
    #[arg(long, env = "FANOUT_RATE_LIMIT", value_name = "POLICY")]
    #[arg(value_enum, default_value = "close")]
    pub rate_limit: RateLimit,

    /// Broadcast frames each channel keeps for late joiners, sent right after the 101. Default
    /// 0: history holds memory per channel and changes what a new subscriber first sees, so a
    /// deployment opts in (a dashboard of latest values wants 1).
    #[arg(long, env = "FANOUT_HISTORY", value_name = "N", default_value_t = 0)]
    pub history: usize,

    /// How long a channel with history but no subscribers keeps it. Default 5m: long enough to
    /// ride over a deploy or a dashboard's reconnect, short enough that abandoned channel names
    /// do not pile up.
    #[arg(long, env = "FANOUT_HISTORY_TTL")]
    #[arg(value_name = "DURATION", default_value = "5m", value_parser = parse_duration)]
    pub history_ttl: Duration,

    /// Memory for history, all channels together (frames and the channels holding them, with
    /// their overheads); past it the oldest frames of any channel are dropped first.
    #[arg(long, env = "FANOUT_MAX_HISTORY_MEMORY")]
    #[arg(value_name = "BYTES", default_value = "256MiB", value_parser = parse_size)]
    pub max_history_memory: usize,

    /// Accept permessage-deflate (RFC 7692) from clients that offer it (every browser does):
    /// each broadcast is compressed once, shared by every subscriber that negotiated it, with
    /// no compressor state per connection. Default off: compression costs CPU, and only
    /// compressible messages (JSON, text) gain.
    #[arg(long, env = "FANOUT_DEFLATE", value_parser = BoolishValueParser::new())]
    pub deflate: bool,

    /// zlib level for --deflate (1 fastest .. 9 smallest). Default 1: measured on 1 KiB of
    /// dashboard JSON, it saves 66 % of the bytes in a third of the time level 6 takes (74 %).
    #[arg(long, env = "FANOUT_DEFLATE_LEVEL", value_name = "LEVEL")]
    #[arg(default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=9))]
    pub deflate_level: u32,

    /// Messages smaller than this go out uncompressed even with --deflate: below it, the
    /// fixed cost of a compression outweighs the bytes saved (measured: 37 % saved at 256 B).
    #[arg(long, env = "FANOUT_DEFLATE_MIN_SIZE", value_name = "BYTES")]
    #[arg(default_value = "256", value_parser = parse_size)]
    pub deflate_min_size: usize,

    /// Most channels that may exist at once; a join or publish that would create one more is
    /// refused with 503. Default 1 000 000: far above what the connection limit and the
    /// history budget let a deployment use, a backstop against a flood of channel names.
    #[arg(
        long,
        env = "FANOUT_MAX_CHANNELS",
        value_name = "N",
        default_value_t = 1_000_000
    )]
    pub max_channels: usize,

    /// Kernel send buffer of each connection (SO_SNDBUF; 0: the kernel's autotuning, up to
    /// net.ipv4.tcp_wmem's maximum, 4 MiB by default). A bounded buffer keeps what a stuck
    /// subscriber pins in the kernel small and lets --max-backpressure see it sooner.
    #[arg(long, env = "FANOUT_SOCKET_SEND_BUFFER")]
    #[arg(value_name = "BYTES", default_value = "256KiB", value_parser = parse_size)]
    pub socket_send_buffer: usize,

    /// PEM certificate chain (leaf first). With --tls-key, the listener speaks TLS only
    /// (wss:// and https:// on the same port); SIGHUP reads both files again.
    #[arg(long, env = "FANOUT_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key of --tls-cert (PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "FANOUT_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// Redis server that links this node to the others (`redis://[user:pass@]host:port[/db]`):
    /// every message accepted here is also published there, and this node subscribes to the
    /// channels it has subscribers (or history) of. Unset by default: one node needs nothing.
    #[arg(long, env = "FANOUT_REDIS", hide_env_values = true, value_name = "URL")]
    pub redis: Option<String>,

    /// Prefix of the Redis channels, so several deployments can share one Redis: channel
    /// `room` is the Redis channel `fanout:room`.
    #[arg(long, env = "FANOUT_REDIS_PREFIX", value_name = "PREFIX")]
    #[arg(default_value = "fanout:")]
    pub redis_prefix: String,

    /// This node's name in the envelopes it publishes (1-64 bytes), by which it ignores its
    /// own: it must differ from every other node's. Default: random at start, which is what a
    /// node needs unless an operator wants to recognise nodes in Redis.
    #[arg(long, env = "FANOUT_NODE_ID", value_name = "ID")]
    pub node_id: Option<String>,

    /// Messages waiting to be published to Redis; past it, while Redis is slow or down, they
    /// are dropped and counted (local delivery goes on). Default 65 536: a second of a busy
    /// node, a few MiB of small messages, enough to ride out a reconnect.
    #[arg(long, env = "FANOUT_REDIS_QUEUE", value_name = "N")]
    #[arg(default_value_t = 65_536)]
    #[arg(value_parser = clap::value_parser!(u32).range(1..).map(|n| n as usize))]
    pub redis_queue: usize,

    /// Sharded pub/sub (SSUBSCRIBE/SPUBLISH, Redis 7): a Redis Cluster spreads the channels
    /// over its shards instead of sending every message to every shard.
    #[arg(long, env = "FANOUT_REDIS_SHARDED", value_parser = BoolishValueParser::new())]
    pub redis_sharded: bool,
}

/// The `fanout` command line: the settings, plus where to read more and what to do with them.
#[derive(Debug, Parser)]
#[command(
    name = "fanout",
    version,
    about = "A WebSocket pub/sub broadcast server",
    long_about = None,
    after_help = "Each setting takes the first of: its flag, its FANOUT_* environment variable, \
                  the --config file, its default. Lists in the environment are comma-separated; \
                  booleans take true/false (also 1/0, yes/no, on/off)."
)]
struct Cli {
    #[command(flatten)]
    settings: Config,

    /// TOML file of settings, keyed by flag name (fanout.example.toml lists them all); flags
    /// and FANOUT_* variables override it.
    #[arg(long, env = "FANOUT_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,

    /// Print the effective configuration as TOML (a valid --config file) and exit.
    #[arg(long)]
    print_config: bool,
}

/// What the command line asked for, with every layer applied.
#[derive(Clone, Debug)]
pub struct Loaded {
    /// The effective configuration.
    pub config: Config,
    /// The `--config` file it was read from, if any.
    pub file: Option<PathBuf>,
    /// `--print-config`: print [`Config::to_toml`] and exit instead of serving.
    pub print_config: bool,
}

/// Why the configuration could not be loaded.
#[derive(Debug)]
pub enum ConfigError {
    /// A bad flag or environment variable, or `--help`/`--version` (which clap prints on exit).
    Cli(clap::Error),
    /// The `--config` file could not be read.
    Read {
        /// The file as given.
        path: PathBuf,
        /// What reading it failed with.
        source: io::Error,
    },
    /// The `--config` file is not TOML, has a key that is not a setting, or a bad value.
    File {
        /// The file as given.
        path: PathBuf,
        /// The parser's message: the key, the line, and what is wrong with it.
        message: String,
    },
}

impl Default for Config {
    /// The documented defaults, whatever `FANOUT_*` variables the process has.
    fn default() -> Self {
        let matches = command(false)
            .try_get_matches_from(["fanout"])
            .expect("the defaults parse");
        Config::from_arg_matches(&matches).expect("the defaults parse")
    }
}

impl Config {
    /// The process's configuration: its arguments, its `FANOUT_*` variables and `--config`.
    pub fn load() -> Result<Loaded, ConfigError> {
        Config::load_from(std::env::args_os())
    }

    /// As [`Config::load`], from the given arguments (the first is the program name); the
    /// environment is still the process's own.
    pub fn load_from<I, T>(args: I) -> Result<Loaded, ConfigError>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        load(command(true), args)
    }

    /// The defaults with a TOML file's settings over them (no flags, no environment).
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let mut config = Config::default();
        read_file(path)?.apply(&mut config, |_| false);
        Ok(config)
    }

    /// The configuration in the `--config` file format. Unset options are left out.
    pub fn to_toml(&self) -> String {
        toml::to_string(&FileConfig::from(self)).expect("every setting is TOML")
    }
}

impl ConfigError {
    /// Prints the error and exits like clap: `--help` and `--version` to stdout with 0,
    /// anything else to stderr with 2.
    pub fn exit(&self) -> ! {
        match self {
            ConfigError::Cli(e) => e.exit(),
            e => {
                eprintln!("error: {e}");
                std::process::exit(2)
            }
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Cli(e) => write!(f, "{e}"),
            ConfigError::Read { path, source } => {
                write!(f, "cannot read config file {}: {source}", path.display())
            }
            ConfigError::File { path, message } => {
                write!(f, "invalid config file {}: {message}", path.display())
            }
        }
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConfigError::Cli(e) => Some(e),
            ConfigError::Read { source, .. } => Some(source),
            ConfigError::File { .. } => None,
        }
    }
}

/// The command line; without `read_env`, `FANOUT_*` variables are ignored.
fn command(read_env: bool) -> clap::Command {
    let cmd = Cli::command();
    if read_env {
        cmd
    } else {
        cmd.mut_args(|arg| arg.env(None))
    }
}

fn load<I, T>(cmd: clap::Command, args: I) -> Result<Loaded, ConfigError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let matches = cmd.try_get_matches_from(args).map_err(ConfigError::Cli)?;
    let cli = Cli::from_arg_matches(&matches).map_err(ConfigError::Cli)?;
    let mut config = cli.settings;
    if let Some(path) = &cli.config {
        read_file(path)?.apply(&mut config, |id| {
            matches!(
                matches.value_source(id),
                Some(ValueSource::CommandLine | ValueSource::EnvVariable)
            )
        });
    }
    Ok(Loaded {
        config,
        file: cli.config,
        print_config: cli.print_config,
    })
}

/// Parses `10s`, `500ms`, `2m` (humantime syntax).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("invalid duration {s:?}: {e}"))
}

/// Writes a duration in the largest unit that divides it exactly (`75s`, `5m`, `500ms`), so
/// [`parse_duration`] reads it back unchanged.
pub fn format_duration(d: Duration) -> String {
    const UNITS: [(u128, &str); 7] = [
        (86_400_000_000_000, "d"),
        (3_600_000_000_000, "h"),
        (60_000_000_000, "m"),
        (1_000_000_000, "s"),
        (1_000_000, "ms"),
        (1_000, "us"),
        (1, "ns"),
    ];
    let ns = d.as_nanos();
    match UNITS
        .iter()
        .find(|(unit, _)| ns.is_multiple_of(*unit) && ns > 0)
    {
        Some((unit, name)) => format!("{}{name}", ns / unit),
        None => "0s".to_owned(),
    }
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

/// Writes a byte size in the largest binary unit that divides it exactly (`1MiB`, `300`), so
/// [`parse_size`] reads it back unchanged.
pub fn format_size(n: usize) -> String {
    match [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")]
        .into_iter()
        .find(|&(unit, _)| n.is_multiple_of(unit) && n > 0)
    {
        Some((unit, name)) => format!("{}{name}", n / unit),
        None => n.to_string(),
    }
}

#[cfg(test)]
mod tests;
