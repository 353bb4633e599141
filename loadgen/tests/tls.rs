//! loadgen over `wss://` against an in-process fanout serving TLS with a certificate made at
//! test time: the counts are as exact as over `ws://`, trust is explicit, and a certificate
//! not trusted fails the connections with the cause `tls`.

mod common;

use std::path::{Path, PathBuf};

use common::{Fanout, loadgen};
use loadgen::RunError;

/// A certificate and its key, written under a directory of the test's own.
struct Cert {
    cert: PathBuf,
    key: PathBuf,
}

/// A new self-signed certificate for `localhost` and `127.0.0.1`, in `dir` (emptied first).
fn write_cert(name: &str) -> Cert {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("loadgen-tls")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let sans = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    let made = rcgen::generate_simple_self_signed(sans).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, made.cert.pem()).unwrap();
    std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
    Cert { cert, key }
}

/// fanout serving TLS with `cert`, and its `wss://` URL.
fn tls_fanout(cert: &Cert) -> (Fanout, String) {
    let server = Fanout::start_with(|c| {
        c.tls_cert = Some(cert.cert.clone());
        c.tls_key = Some(cert.key.clone());
    });
    let url = format!("wss://{}/", server.addr);
    (server, url)
}

#[test]
fn fanout_over_wss_with_a_ca_file_delivers_everything_exactly() {
    let cert = write_cert("ca-file");
    let (_server, url) = tls_fanout(&cert);
    let ca = cert.cert.display();
    let o = loadgen(&format!(
        "fanout --url {url} --ca-file {ca} --subs 20 --pubs 2 --rate 200 --duration 1s \
         --drain 2s --threads 2 --connect-timeout 60s --expect-no-loss"
    ))
    .expect("no loss over wss");
    // 200 messages, each expected at 20 subscribers and the other publisher.
    assert_eq!(o.json["sent"], 200);
    assert_eq!(o.figures.expected, 200 * 21);
    assert_eq!(o.figures.delivered, 200 * 21);
    assert_eq!(
        (o.figures.lost, o.figures.duplicates, o.figures.reordered),
        (0, 0, 0)
    );
    assert_eq!(o.figures.conn_failures, 0);
}

#[test]
fn large_messages_arrive_whole_over_wss_with_insecure() {
    let cert = write_cert("insecure");
    let (_server, url) = tls_fanout(&cert);
    // 70 000-byte messages span several TLS records (16 KiB each) and several reads.
    let o = loadgen(&format!(
        "fanout --url {url} --insecure --subs 5 --rate 100 --size 70000 --duration 500ms \
         --connect-timeout 60s --expect-no-loss"
    ))
    .expect("no loss over wss");
    assert_eq!(o.figures.expected, 50 * 5);
    assert_eq!(o.figures.delivered, 250);
}

#[test]
fn connect_over_wss_opens_every_connection() {
    let cert = write_cert("connect");
    let (_server, url) = tls_fanout(&cert);
    let ca = cert.cert.display();
    // Started at once, the handshakes progress together on a debug build's one server loop:
    // a generous timeout, so a busy machine cannot fail them all.
    let o = loadgen(&format!(
        "connect --url {url} --ca-file {ca} --conns 100 --connect-rate 0 --hold 200ms \
         --connect-timeout 60s --expect-no-loss"
    ))
    .expect("all open");
    assert_eq!(o.json["open"], 100);
    assert_eq!(o.json["handshakes"], 100);
    assert_eq!(o.json["still_open_after_hold"], 100);
}

#[test]
fn wss_without_a_trust_option_is_refused_with_a_clear_message() {
    let cert = write_cert("no-trust");
    let (_server, url) = tls_fanout(&cert);
    match loadgen(&format!("connect --url {url} --conns 1")) {
        Err(RunError::Setup(e)) => {
            assert!(e.contains("--ca-file") && e.contains("--insecure"), "{e}")
        }
        other => panic!("expected a refusal, got {:?}", other.map(|o| o.json)),
    }
}

#[test]
fn a_certificate_not_trusted_fails_connections_as_tls() {
    let served = write_cert("wrong-ca-served");
    let other = write_cert("wrong-ca-other");
    let (_server, url) = tls_fanout(&served);
    let ca = other.cert.display();
    let o = loadgen(&format!(
        "connect --url {url} --ca-file {ca} --conns 10 --connect-rate 0 --hold 100ms \
         --connect-timeout 60s"
    ))
    .expect("connect reports failures, it does not stop");
    assert_eq!(o.json["open"], 0);
    assert_eq!(o.json["failures"]["tls"], 10, "{}", o.json["failures"]);
    assert_eq!(o.figures.conn_failures, 10);
}

#[test]
fn ws_and_wss_nodes_mix_in_one_run() {
    let cert = write_cert("mixed");
    let (_tls, wss) = tls_fanout(&cert);
    let plain = Fanout::start();
    let ws = plain.url();
    let ca = cert.cert.display();
    // Two separate servers (no cluster between them): each publisher's messages reach only
    // its own node, so one publisher per node and subscribers split evenly.
    let o = loadgen(&format!(
        "fanout --url {wss} --url {ws} --ca-file {ca} --subs 10 --pubs 2 --rate 100 \
         --duration 500ms --connect-timeout 60s"
    ))
    .expect("ran");
    assert_eq!(o.figures.conn_failures, 0);
    // Each of the 50 messages reaches the 5 subscribers of its node.
    assert_eq!(o.figures.delivered, 50 * 5);
}

#[test]
fn publish_refuses_tls_urls() {
    use clap::Parser;
    for url in ["wss://127.0.0.1:1/", "https://127.0.0.1:1/"] {
        let cli = loadgen::cli::Cli::try_parse_from(["loadgen", "publish", "--url", url]).unwrap();
        match loadgen::run(cli) {
            Err(RunError::Setup(e)) => assert!(e.contains("plain HTTP only"), "{e}"),
            other => panic!("expected a refusal, got {:?}", other.map(|o| o.json)),
        }
    }
}
