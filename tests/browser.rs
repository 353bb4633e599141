//! The demo page in a real browser: `tests/browser/run.mjs` drives Debian's headless Chromium
//! (through `playwright-core`) against a server on 127.0.0.1: two pages chat on one channel, a
//! `POST /publish/…` reaches both, Chromium's `permessage-deflate` offer is declined without
//! breaking the handshake (and accepted with `--deflate`), numbers are plotted, and a token
//! pasted into the page opens a server with access control.
//!
//! Needs `node` and Chromium (`CHROMIUM`, default `/usr/bin/chromium`); without either it prints
//! "skipped: …" and passes. Runs `npm ci` in `tests/browser` when `playwright-core` is not
//! installed there. `FANOUT_SCREENSHOT=PATH` keeps a PNG of both pages.

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::TestServer;

/// The script bounds itself to 75 s; this catches a hung `node`.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(120);

#[test]
fn demo_page_in_headless_chromium() {
    let chromium =
        std::env::var_os("CHROMIUM").map_or_else(|| "/usr/bin/chromium".into(), PathBuf::from);
    if !chromium.exists() {
        println!(
            "skipped: no Chromium at {} (apt-get install chromium)",
            chromium.display()
        );
        return;
    }
    if Command::new("node").arg("--version").output().is_err() {
        println!("skipped: node is not installed");
        return;
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    if !dir.join("node_modules/playwright-core").exists() {
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--prefix"])
            .arg(&dir)
            .status()
            .expect("run npm (node is installed, so npm should be too)");
        assert!(
            status.success(),
            "npm ci in {} failed: {status}",
            dir.display()
        );
    }

    let server = TestServer::start(|_| {});
    run_scenario(&dir, &chromium, &server, &[]);
    server.stop();

    // With --deflate: Chromium's offer accepted, and a long message compressed once.
    let server = TestServer::start(|c| c.deflate = true);
    run_scenario(&dir, &chromium, &server, &["--deflate"]);
    common::await_metric(server.addr, "fanout_deflate_compressed_total", |n| n >= 1);
    server.stop();

    // Over TLS: the page from https://, its socket to wss:// (the page picks the scheme), the
    // publishes over https://, with a certificate made for this run.
    let certs = Path::new(env!("CARGO_TARGET_TMPDIR")).join("browser-tls");
    std::fs::create_dir_all(&certs).unwrap();
    let made = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let (cert, key) = (certs.join("cert.pem"), certs.join("key.pem"));
    std::fs::write(&cert, made.cert.pem()).unwrap();
    std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
    let server = TestServer::start(|c| {
        c.tls_cert = Some(cert.clone());
        c.tls_key = Some(key.clone());
    });
    run_scenario_at(
        &format!("https://{}/", server.addr),
        &dir,
        &chromium,
        &[("NODE_EXTRA_CA_CERTS", cert.as_os_str())],
        &[],
    );
    server.stop();

    // A server that wants tokens: the demo page with one pasted in.
    const SECRET: &str = "the browser test's secret, 32+ bytes";
    let server = TestServer::start(|c| c.auth_hmac_secret = Some(SECRET.into()));
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let claims =
        serde_json::json!({"exp": exp, "channels": ["browser-*"], "publish": ["browser-*"]});
    let key = jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()).unwrap();
    let token = jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).unwrap();
    run_scenario(&dir, &chromium, &server, &["--token", &token]);
    server.stop();
}

/// Runs `run.mjs` against `server` with `args`; fails the test with its output unless it
/// passes.
fn run_scenario(dir: &Path, chromium: &Path, server: &TestServer, args: &[&str]) {
    run_scenario_at(
        &format!("http://{}/", server.addr),
        dir,
        chromium,
        &[],
        args,
    );
}

/// Runs `run.mjs` against the server at `url`, with `env` added to node's environment.
fn run_scenario_at(
    url: &str,
    dir: &Path,
    chromium: &Path,
    env: &[(&str, &std::ffi::OsStr)],
    args: &[&str],
) {
    let child = Command::new("node")
        .arg(dir.join("run.mjs"))
        .arg(url)
        .args(args)
        .envs(env.iter().copied())
        .env("CHROMIUM", chromium)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start node");
    let (status, output) = wait_with_timeout(child, SCRIPT_TIMEOUT);
    println!("{output}");
    assert!(
        status == Some(0),
        "browser scenario failed (exit {status:?}); its output is above"
    );
}

/// Waits for `child`, killing it after `timeout`; returns its exit code (`None` if killed or by
/// signal) and its stdout followed by its stderr.
fn wait_with_timeout(mut child: Child, timeout: Duration) -> (Option<i32>, String) {
    let readers = [
        drain(child.stdout.take().unwrap()),
        drain(child.stderr.take().unwrap()),
    ];
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for node") {
            break status.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(50));
    };
    // A browser left behind by a killed `node` may hold the pipes open: wait for them a little.
    let deadline = Instant::now() + Duration::from_secs(2);
    while readers.iter().any(|r| !r.is_finished()) && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(50));
    }
    let output = readers
        .map(|r| {
            if r.is_finished() {
                r.join().unwrap()
            } else {
                "(output still open)\n".into()
            }
        })
        .concat();
    (status, output)
}

fn drain(mut pipe: impl Read + Send + 'static) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}
