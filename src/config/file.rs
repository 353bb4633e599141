//! The `--config` file: TOML keyed by flag name in kebab-case, every key optional, unknown keys
//! rejected by name. Durations and sizes are strings in the flags' syntax.

use std::fmt;
use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{
    Config, ConfigError, RateLimit, SlowConsumer, Threads, format_duration, format_size,
    parse_duration, parse_size, parse_threads,
};

pub(super) fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse_toml(&text).map_err(|message| ConfigError::File {
        path: path.to_owned(),
        message,
    })
}

/// Parses the file; an error names the offending key before the parser's own message (which
/// shows the line but, for a bad value, names the key only in that excerpt).
pub(super) fn parse_toml(text: &str) -> Result<FileConfig, String> {
    toml::from_str(text).map_err(|e| {
        let message = e.to_string().trim_end().to_owned();
        match culprit(text) {
            Some(key) => format!("key `{key}`: {message}"),
            None => message,
        }
    })
}

/// The first key whose entry does not parse on its own.
fn culprit(text: &str) -> Option<String> {
    let table: toml::Table = text.parse().ok()?;
    table.into_iter().find_map(|(key, value)| {
        let alone = toml::Value::Table(toml::Table::from_iter([(key.clone(), value)]));
        alone.try_into::<FileConfig>().is_err().then_some(key)
    })
}

/// The file format: every setting optional, keyed by its field name in kebab-case.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct FileConfig {
    listen: Option<SocketAddr>,
    #[serde(with = "threads")]
    threads: Option<Threads>,
    default_channel: Option<String>,
    echo: Option<bool>,
    allowed_origins: Option<Vec<String>>,
    #[serde(with = "duration")]
    handshake_timeout: Option<Duration>,
    #[serde(with = "size")]
    max_message: Option<usize>,
    #[serde(with = "size")]
    max_backpressure: Option<usize>,
    #[serde(with = "size")]
    max_input_memory: Option<usize>,
    slow_consumer: Option<SlowConsumer>,
    #[serde(with = "duration")]
    ping_interval: Option<Duration>,
    #[serde(with = "duration")]
    idle_timeout: Option<Duration>,
    max_connections: Option<usize>,
    #[serde(with = "duration")]
    close_timeout: Option<Duration>,
    #[serde(with = "duration")]
    shutdown_timeout: Option<Duration>,
    publish_token: Option<String>,
    client_publish: Option<bool>,
    auth_hmac_secret: Option<String>,
    auth_public_key: Option<PathBuf>,
    admin_token: Option<String>,
    max_client_rate: Option<u32>,
    max_client_burst: Option<u32>,
    rate_limit: Option<RateLimit>,
    history: Option<usize>,
    #[serde(with = "duration")]
    history_ttl: Option<Duration>,
    #[serde(with = "size")]
    max_history_memory: Option<usize>,
    deflate: Option<bool>,
    deflate_level: Option<u32>,
    #[serde(with = "size")]
    deflate_min_size: Option<usize>,
    max_channels: Option<usize>,
    #[serde(with = "size")]
    socket_send_buffer: Option<usize>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    redis: Option<String>,
    redis_prefix: Option<String>,
    node_id: Option<String>,
    redis_queue: Option<usize>,
    redis_sharded: Option<bool>,
}

impl FileConfig {
    /// Sets each setting the file has, unless `explicit(id)` says a flag or variable gave it.
    pub(super) fn apply(self, config: &mut Config, explicit: impl Fn(&str) -> bool) {
        macro_rules! layer {
            ($($field:ident),* $(,)?) => {$(
                if let Some(value) = self.$field {
                    if !explicit(stringify!($field)) {
                        config.$field = value.into();
                    }
                }
            )*};
        }
        layer! {
            listen, threads, default_channel, echo, allowed_origins, handshake_timeout, max_message,
            max_backpressure, max_input_memory, slow_consumer, ping_interval, idle_timeout,
            max_connections, close_timeout, shutdown_timeout, publish_token, client_publish,
            auth_hmac_secret, auth_public_key, admin_token, max_client_rate, max_client_burst,
            rate_limit, history,
            history_ttl, max_history_memory, deflate, deflate_level, deflate_min_size,
            max_channels, socket_send_buffer, tls_cert, tls_key, redis, redis_prefix, node_id,
            redis_queue, redis_sharded
        }
    }
}

impl From<&Config> for FileConfig {
    fn from(c: &Config) -> Self {
        FileConfig {
            listen: Some(c.listen),
            threads: Some(c.threads),
            default_channel: c.default_channel.clone(),
            echo: Some(c.echo),
            allowed_origins: Some(c.allowed_origins.clone()),
            handshake_timeout: Some(c.handshake_timeout),
            max_message: Some(c.max_message),
            max_backpressure: Some(c.max_backpressure),
            max_input_memory: Some(c.max_input_memory),
            slow_consumer: Some(c.slow_consumer),
            ping_interval: Some(c.ping_interval),
            idle_timeout: Some(c.idle_timeout),
            max_connections: c.max_connections,
            close_timeout: Some(c.close_timeout),
            shutdown_timeout: Some(c.shutdown_timeout),
            publish_token: c.publish_token.clone(),
            client_publish: Some(c.client_publish),
            auth_hmac_secret: c.auth_hmac_secret.clone(),
            auth_public_key: c.auth_public_key.clone(),
            admin_token: c.admin_token.clone(),
            max_client_rate: c.max_client_rate,
            max_client_burst: c.max_client_burst,
            rate_limit: Some(c.rate_limit),
            history: Some(c.history),
            history_ttl: Some(c.history_ttl),
            max_history_memory: Some(c.max_history_memory),
            deflate: Some(c.deflate),
            deflate_level: Some(c.deflate_level),
            deflate_min_size: Some(c.deflate_min_size),
            max_channels: Some(c.max_channels),
            socket_send_buffer: Some(c.socket_send_buffer),
            tls_cert: c.tls_cert.clone(),
            tls_key: c.tls_key.clone(),
            redis: c.redis.clone(),
            redis_prefix: Some(c.redis_prefix.clone()),
            node_id: c.node_id.clone(),
            redis_queue: Some(c.redis_queue),
            redis_sharded: Some(c.redis_sharded),
        }
    }
}

/// Durations in the file: strings in the flags' syntax.
mod duration {
    use super::*;
    use serde::{Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_str(&format_duration(*d)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let s = String::deserialize(d)?;
        parse_duration(&s).map(Some).map_err(D::Error::custom)
    }
}

/// `threads` in the file: `"auto"` or a number.
mod threads {
    use super::*;
    use serde::de::{Error, Visitor};
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &Option<Threads>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(Threads::Count(n)) => s.serialize_u64(*n as u64),
            Some(Threads::Auto) => s.serialize_str("auto"),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Threads>, D::Error> {
        d.deserialize_any(ThreadsVisitor).map(Some)
    }

    struct ThreadsVisitor;

    impl Visitor<'_> for ThreadsVisitor {
        type Value = Threads;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("\"auto\" or a number of threads from 1 to 64")
        }

        fn visit_str<E: Error>(self, s: &str) -> Result<Threads, E> {
            parse_threads(s).map_err(E::custom)
        }

        fn visit_i64<E: Error>(self, n: i64) -> Result<Threads, E> {
            parse_threads(&n.to_string()).map_err(E::custom)
        }
    }
}

/// Sizes in the file: strings in the flags' syntax, or plain integers (bytes).
mod size {
    use super::*;
    use serde::de::{Error, Visitor};
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(n: &Option<usize>, s: S) -> Result<S::Ok, S::Error> {
        match n {
            Some(n) => s.serialize_str(&format_size(*n)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
        d.deserialize_any(SizeVisitor).map(Some)
    }

    struct SizeVisitor;

    impl Visitor<'_> for SizeVisitor {
        type Value = usize;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a size such as \"64KiB\" or \"1MiB\", or a number of bytes")
        }

        fn visit_str<E: Error>(self, s: &str) -> Result<usize, E> {
            parse_size(s).map_err(E::custom)
        }

        fn visit_i64<E: Error>(self, n: i64) -> Result<usize, E> {
            usize::try_from(n).map_err(|_| E::custom(format!("invalid size {n}")))
        }
    }
}
