//! Configuration layers, run through the real binary: flags > `FANOUT_*` variables > the
//! `--config` file > defaults, read back with `--print-config` (which binds nothing).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use fanout::Config;

/// Runs `fanout` with `args` and exactly the `FANOUT_*` variables in `env`.
fn fanout(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fanout"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("FANOUT_") {
            cmd.env_remove(name);
        }
    }
    cmd.args(args).envs(env.iter().copied()).output().unwrap()
}

/// `--print-config` with `args` and `env`; it must succeed.
fn print_config(args: &[&str], env: &[(&str, &str)]) -> String {
    let out = fanout(&[&["--print-config"], args].concat(), env);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{:?}: {stderr}", out.status);
    String::from_utf8(out.stdout).unwrap()
}

/// Writes `text` to a file of its own for the test called `name`.
fn file(name: &str, text: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("config-tests");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fanout.example.toml")
}

const DEFAULTS: &str = r#"listen = "127.0.0.1:8080"
threads = 1
echo = false
allowed-origins = []
handshake-timeout = "10s"
max-message = "1MiB"
max-backpressure = "4MiB"
max-input-memory = "256MiB"
slow-consumer = "close"
ping-interval = "30s"
idle-timeout = "75s"
close-timeout = "2s"
shutdown-timeout = "5s"
client-publish = true
rate-limit = "close"
history = 0
history-ttl = "5m"
max-history-memory = "256MiB"
deflate = false
deflate-level = 1
deflate-min-size = "256"
max-channels = 1000000
socket-send-buffer = "256KiB"
redis-prefix = "fanout:"
redis-queue = 65536
redis-sharded = false
"#;

#[test]
fn print_config_shows_the_defaults_and_exits_0() {
    assert_eq!(print_config(&[], &[]), DEFAULTS);
    assert_eq!(Config::default().to_toml(), DEFAULTS);
}

#[test]
fn flag_beats_env_beats_file_beats_default() {
    let path = file(
        "precedence",
        r#"
max-message = "2KiB"
idle-timeout = "1m"
history = 4
echo = true
allowed-origins = ["https://file"]
default-channel = "from-file"
"#,
    );
    let out = print_config(
        &[
            "--config",
            path.to_str().unwrap(),
            "--max-message",
            "4KiB",
            "--default-channel",
            "from-flag",
        ],
        &[
            ("FANOUT_MAX_MESSAGE", "3KiB"),
            ("FANOUT_IDLE_TIMEOUT", "2m"),
            ("FANOUT_ECHO", "false"),
            ("FANOUT_ALLOWED_ORIGIN", "https://a,https://b"),
            ("FANOUT_DEFAULT_CHANNEL", "from-env"),
        ],
    );
    let expected = DEFAULTS
        .replace(
            "threads = 1\n",
            "threads = 1\ndefault-channel = \"from-flag\"\n",
        )
        .replace(
            "allowed-origins = []",
            "allowed-origins = [\"https://a\", \"https://b\"]",
        )
        .replace("max-message = \"1MiB\"", "max-message = \"4KiB\"")
        .replace("idle-timeout = \"75s\"", "idle-timeout = \"2m\"")
        .replace("history = 0", "history = 4");
    assert_eq!(out, expected);
}

#[test]
fn env_beats_file_and_names_the_file() {
    let path = file(
        "env",
        "listen = \"127.0.0.1:1\"\nhistory-ttl = \"1h\"\nmax-connections = 5\n",
    );
    let out = print_config(
        &[],
        &[
            ("FANOUT_CONFIG", path.to_str().unwrap()),
            ("FANOUT_LISTEN", "0.0.0.0:9000"),
            ("FANOUT_PUBLISH_TOKEN", "s3cret"),
        ],
    );
    let expected = DEFAULTS
        .replace("listen = \"127.0.0.1:8080\"", "listen = \"0.0.0.0:9000\"")
        .replace(
            "idle-timeout = \"75s\"\n",
            "idle-timeout = \"75s\"\nmax-connections = 5\n",
        )
        .replace(
            "shutdown-timeout = \"5s\"\n",
            "shutdown-timeout = \"5s\"\npublish-token = \"s3cret\"\n",
        )
        .replace("history-ttl = \"5m\"", "history-ttl = \"1h\"");
    assert_eq!(out, expected);
}

#[test]
fn print_config_round_trips() {
    let args = [
        "--listen",
        "0.0.0.0:9000",
        "--threads",
        "auto",
        "--default-channel",
        "lobby",
        "--echo",
        "--allowed-origin",
        "https://a",
        "--allowed-origin",
        "https://b",
        "--handshake-timeout",
        "1500ms",
        "--max-message",
        "300",
        "--max-backpressure",
        "64KiB",
        "--max-input-memory",
        "32MiB",
        "--slow-consumer",
        "drop",
        "--ping-interval",
        "7s",
        "--idle-timeout",
        "90s",
        "--max-connections",
        "1000",
        "--close-timeout",
        "1s",
        "--shutdown-timeout",
        "1m",
        "--publish-token",
        "s3cret",
        "--client-publish",
        "false",
        "--auth-hmac-secret",
        "0123456789abcdef0123456789abcdef",
        "--auth-public-key",
        "/etc/fanout/key.pem",
        "--admin-token",
        "adm",
        "--max-client-rate",
        "20",
        "--max-client-burst",
        "40",
        "--rate-limit",
        "drop",
        "--history",
        "10",
        "--history-ttl",
        "1h",
        "--max-history-memory",
        "8MiB",
        "--deflate",
        "--deflate-level",
        "6",
        "--deflate-min-size",
        "1KiB",
        "--max-channels",
        "5000",
        "--socket-send-buffer",
        "0",
        "--redis",
        "redis://127.0.0.1:6380/1",
        "--redis-prefix",
        "chat:",
        "--node-id",
        "web-1",
        "--redis-queue",
        "1000",
        "--redis-sharded",
    ];
    let printed = print_config(&args, &[]);
    assert_eq!(
        printed,
        r#"listen = "0.0.0.0:9000"
threads = "auto"
default-channel = "lobby"
echo = true
allowed-origins = ["https://a", "https://b"]
handshake-timeout = "1500ms"
max-message = "300"
max-backpressure = "64KiB"
max-input-memory = "32MiB"
slow-consumer = "drop"
ping-interval = "7s"
idle-timeout = "90s"
max-connections = 1000
close-timeout = "1s"
shutdown-timeout = "1m"
publish-token = "s3cret"
client-publish = false
auth-hmac-secret = "0123456789abcdef0123456789abcdef"
auth-public-key = "/etc/fanout/key.pem"
admin-token = "adm"
max-client-rate = 20
max-client-burst = 40
rate-limit = "drop"
history = 10
history-ttl = "1h"
max-history-memory = "8MiB"
deflate = true
deflate-level = 6
deflate-min-size = "1KiB"
max-channels = 5000
socket-send-buffer = "0"
redis = "redis://127.0.0.1:6380/1"
redis-prefix = "chat:"
node-id = "web-1"
redis-queue = 1000
redis-sharded = true
"#
    );
    let saved = file("round-trip", &printed);
    let again = print_config(&["--config", saved.to_str().unwrap()], &[]);
    assert_eq!(again, printed);
}

#[test]
fn example_file_loads_to_the_defaults() {
    assert_eq!(Config::from_file(&example()).unwrap(), Config::default());
    let out = print_config(&["--config", example().to_str().unwrap()], &[]);
    assert_eq!(out, DEFAULTS);
}

#[test]
fn example_file_lists_every_key() {
    use clap::Args;
    let example = std::fs::read_to_string(example()).unwrap();
    let settings = Config::augment_args(clap::Command::new("fanout"));
    let keys: Vec<String> = settings
        .get_arguments()
        .map(|a| a.get_id().as_str().replace('_', "-"))
        .collect();
    assert!(keys.len() > 20, "{keys:?}");
    for key in keys {
        let set = example.contains(&format!("\n{key} = "));
        let commented = example.contains(&format!("\n# {key} = "));
        assert!(set || commented, "{key} missing from fanout.example.toml");
    }
}

#[test]
fn unknown_key_exits_2_naming_the_key_and_file() {
    let path = file(
        "unknown",
        "listen = \"127.0.0.1:1\"\nmax-mesage = \"1MiB\"\n",
    );
    let out = fanout(&["--config", path.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let head = format!(
        "error: invalid config file {}: key `max-mesage`: ",
        path.display()
    );
    assert!(stderr.starts_with(&head), "{stderr}");
    assert!(stderr.contains("unknown field `max-mesage`"), "{stderr}");
    assert!(stderr.contains("line 2"), "{stderr}");
}

#[test]
fn bad_duration_in_the_file_names_the_key() {
    let path = file("bad-duration", "echo = true\nidle-timeout = \"75\"\n");
    let out = fanout(&["--print-config", "--config", path.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let head = format!(
        "error: invalid config file {}: key `idle-timeout`: ",
        path.display()
    );
    assert!(stderr.starts_with(&head), "{stderr}");
    assert!(stderr.contains("invalid duration \"75\""), "{stderr}");
}

#[test]
fn missing_file_exits_2_naming_it() {
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("no-such-fanout.toml");
    let out = fanout(&["--config", path.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let head = format!("error: cannot read config file {}: ", path.display());
    assert!(stderr.starts_with(&head), "{stderr}");
}

#[test]
fn bad_env_value_exits_2() {
    let out = fanout(&["--print-config"], &[("FANOUT_MAX_MESSAGE", "lots")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("invalid size \"lots\""), "{stderr}");
}

#[test]
fn help_lists_every_flag_and_its_environment_variable() {
    let out = fanout(&["--help"], &[("FANOUT_PUBLISH_TOKEN", "hidden-secret")]);
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "listen",
        "default-channel",
        "echo",
        "allowed-origin",
        "handshake-timeout",
        "max-message",
        "max-backpressure",
        "max-input-memory",
        "slow-consumer",
        "ping-interval",
        "idle-timeout",
        "max-connections",
        "close-timeout",
        "shutdown-timeout",
        "publish-token",
        "history",
        "history-ttl",
        "max-history-memory",
        "config",
    ] {
        assert!(help.contains(&format!("--{flag}")), "--{flag} in\n{help}");
        let var = format!("FANOUT_{}", flag.to_uppercase().replace('-', "_"));
        assert!(help.contains(&format!("[env: {var}")), "{var} in\n{help}");
    }
    assert!(help.contains("--print-config"), "{help}");
    assert!(
        !help.contains("hidden-secret"),
        "the token leaked into --help"
    );
}
