//! Unit tests for the configuration: defaults, sizes and durations, flags over the file, the
//! file format and its errors naming the key. Environment variables are tested on the binary
//! in `tests/config.rs`.

use super::file::parse_toml;
use super::*;
use std::fs;

#[test]
fn defaults_match_the_documented_values() {
    let c = Config::default();
    assert_eq!(c.listen, "127.0.0.1:8080".parse().unwrap());
    assert_eq!(c.handshake_timeout, Duration::from_secs(10));
    assert_eq!(c.max_message, 1 << 20);
    assert_eq!(c.max_backpressure, 4 << 20);
    assert_eq!(c.max_input_memory, 256 << 20);
    assert_eq!(c.slow_consumer, SlowConsumer::Close);
    assert_eq!(c.ping_interval, Duration::from_secs(30));
    assert_eq!(c.idle_timeout, Duration::from_secs(75));
    assert_eq!(c.shutdown_timeout, Duration::from_secs(5));
    assert_eq!(c.max_connections, None);
    assert_eq!(c.publish_token, None);
    assert_eq!(c.history, 0);
    assert_eq!(c.history_ttl, Duration::from_secs(300));
    assert_eq!(c.max_history_memory, 256 << 20);
    assert!(!c.echo);
    assert_eq!((c.tls_cert, c.tls_key), (None, None));
    assert_eq!(c.redis, None);
    assert_eq!(c.redis_prefix, "fanout:");
    assert_eq!(c.node_id, None);
    assert_eq!(c.redis_queue, 65_536);
    assert!(!c.redis_sharded);
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
fn sizes_and_durations_format_in_their_largest_exact_unit() {
    for (n, text) in [(0, "0"), (300, "300"), (65536, "64KiB"), (1 << 20, "1MiB")] {
        assert_eq!(format_size(n), text);
        assert_eq!(parse_size(text), Ok(n));
    }
    for (ms, text) in [(0, "0s"), (500, "500ms"), (75_000, "75s"), (300_000, "5m")] {
        let d = Duration::from_millis(ms);
        assert_eq!(format_duration(d), text);
        assert_eq!(parse_duration(text), Ok(d));
    }
    let odd = Duration::from_nanos(1_500);
    assert_eq!(parse_duration(&format_duration(odd)), Ok(odd));
}

/// Loads without the process's `FANOUT_*` variables, so these tests do not depend on them.
fn load_args(args: &[&str]) -> Result<Loaded, ConfigError> {
    load(
        command(false),
        std::iter::once("fanout").chain(args.iter().copied()),
    )
}

#[test]
fn flags_override_defaults() {
    let c = load_args(&[
        "--echo",
        "--allowed-origin",
        "https://a",
        "--allowed-origin",
        "https://b,https://c",
        "--slow-consumer",
        "drop",
        "--max-message",
        "64KiB",
        "--ping-interval",
        "500ms",
        "--history",
        "3",
        "--history-ttl",
        "1m",
        "--publish-token",
        "s3cret",
    ])
    .unwrap()
    .config;
    assert!(c.echo);
    assert_eq!(c.allowed_origins, ["https://a", "https://b", "https://c"]);
    assert_eq!(c.slow_consumer, SlowConsumer::Drop);
    assert_eq!(c.max_message, 65536);
    assert_eq!(c.ping_interval, Duration::from_millis(500));
    assert_eq!(c.history, 3);
    assert_eq!(c.history_ttl, Duration::from_secs(60));
    assert_eq!(c.publish_token.as_deref(), Some("s3cret"));
}

/// A configuration with every setting away from its default.
fn everything_set() -> Config {
    Config {
        listen: "0.0.0.0:9000".parse().unwrap(),
        threads: Threads::Auto,
        default_channel: Some("lobby".into()),
        echo: true,
        allowed_origins: vec!["https://a".into(), "https://b".into()],
        handshake_timeout: Duration::from_millis(1500),
        max_message: 300,
        max_backpressure: 64 << 10,
        max_input_memory: 32 << 20,
        slow_consumer: SlowConsumer::Drop,
        ping_interval: Duration::from_secs(7),
        idle_timeout: Duration::from_secs(90),
        max_connections: Some(1000),
        close_timeout: Duration::from_secs(1),
        shutdown_timeout: Duration::from_secs(60),
        publish_token: Some("s3cret".into()),
        client_publish: false,
        auth_hmac_secret: Some("a secret of more than 32 bytes...".into()),
        auth_public_key: Some("/etc/fanout/key.pem".into()),
        admin_token: Some("adm".into()),
        max_client_rate: Some(10),
        max_client_burst: Some(20),
        rate_limit: RateLimit::Drop,
        history: 10,
        history_ttl: Duration::from_secs(3600),
        max_history_memory: 8 << 20,
        deflate: true,
        deflate_level: 9,
        deflate_min_size: 64,
        max_channels: 5000,
        socket_send_buffer: 0,
        tls_cert: Some("/etc/fanout/cert.pem".into()),
        tls_key: Some("/etc/fanout/key.pem".into()),
        redis: Some("redis://127.0.0.1:6379/2".into()),
        redis_prefix: "chat:".into(),
        node_id: Some("web-3".into()),
        redis_queue: 1000,
        redis_sharded: true,
    }
}

#[test]
fn every_setting_round_trips_through_the_file_format() {
    let c = everything_set();
    let mut back = Config::default();
    parse_toml(&c.to_toml())
        .unwrap()
        .apply(&mut back, |_| false);
    assert_eq!(back, c);
}

#[test]
fn file_keys_are_the_settings_in_kebab_case() {
    let table: toml::Table = toml::from_str(&everything_set().to_toml()).unwrap();
    let keys: Vec<&str> = table.keys().map(String::as_str).collect();
    let ids: Vec<String> = Config::augment_args(clap::Command::new("x"))
        .get_arguments()
        .map(|a| a.get_id().as_str().replace('_', "-"))
        .collect();
    let mut sorted_ids = ids.clone();
    sorted_ids.sort();
    assert_eq!(keys, sorted_ids, "one file key per flag");
}

#[test]
fn file_fills_only_what_flags_left_at_default() {
    let dir = std::env::temp_dir().join(format!("fanout-config-unit-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    let path = dir.join("layers.toml");
    fs::write(
        &path,
        "max-message = \"2KiB\"\nhistory = 4\ndefault-channel = \"file\"\necho = true\n",
    )
    .unwrap();
    let loaded = load_args(&[
        "--config",
        path.to_str().unwrap(),
        "--max-message",
        "3KiB",
        "--default-channel",
        "flag",
    ])
    .unwrap();
    let c = loaded.config;
    assert_eq!(c.max_message, 3 << 10, "flag beats file");
    assert_eq!(
        c.default_channel.as_deref(),
        Some("flag"),
        "flag beats file"
    );
    assert_eq!(c.history, 4, "file beats default");
    assert!(c.echo, "file beats default");
    assert_eq!(c.idle_timeout, Duration::from_secs(75), "default");
    assert_eq!(loaded.file.as_deref(), Some(path.as_path()));
    assert!(!loaded.print_config);
    assert_eq!(Config::from_file(&path).unwrap().max_message, 2 << 10);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn file_errors_name_the_key() {
    let e = parse_toml("listen = \"127.0.0.1:1\"\nmax-mesage = 5\n").unwrap_err();
    assert!(e.starts_with("key `max-mesage`: "), "{e}");
    assert!(e.contains("unknown field `max-mesage`"), "{e}");
    let e = parse_toml("echo = true\nidle-timeout = \"75\"\n").unwrap_err();
    assert!(e.starts_with("key `idle-timeout`: "), "{e}");
    assert!(e.contains("invalid duration \"75\""), "{e}");
    let e = parse_toml("max-message = \"1TB\"\n").unwrap_err();
    assert!(e.starts_with("key `max-message`: "), "{e}");
    assert!(e.contains("invalid size unit"), "{e}");
    let e = parse_toml("max-message = true\n").unwrap_err();
    assert!(e.starts_with("key `max-message`: "), "{e}");
    assert!(e.contains("expected a size such as"), "{e}");
    let e = parse_toml("slow-consumer = \"wait\"\n").unwrap_err();
    assert!(e.starts_with("key `slow-consumer`: "), "{e}");
    assert!(e.contains("unknown variant `wait`"), "{e}");
}

#[test]
fn sizes_in_the_file_may_be_plain_integers() {
    let mut c = Config::default();
    parse_toml("max-message = 4096\n")
        .unwrap()
        .apply(&mut c, |_| false);
    assert_eq!(c.max_message, 4096);
}
