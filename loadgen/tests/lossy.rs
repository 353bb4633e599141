//! A deliberately lossy path must be reported as loss, exactly, and `--expect-no-loss` must
//! fail on it — in-process and as the binary's exit status.

mod common;

use common::{Fanout, LossyProxy, loadgen};
use loadgen::RunError;

#[test]
fn every_tenth_message_dropped_is_reported_exactly() {
    let server = Fanout::start();
    let proxy = LossyProxy::start(server.addr, 10);
    let url = proxy.url();
    let o = loadgen(&format!(
        "fanout --url {url} --subs 6 --rate 205 --duration 1s --drain 1s"
    ))
    .expect("runs without assertions");
    // 205 messages to 6 subscribers: each drops its 10th, 20th, …, 200th (20 each).
    assert_eq!(proxy.dropped(), 6 * 20);
    assert_eq!(o.figures.expected, 6 * 205);
    assert_eq!(o.figures.lost, proxy.dropped());
    assert_eq!(o.figures.delivered, 6 * 205 - 120);
    assert_eq!(o.figures.duplicates, 0);
    assert_eq!(o.figures.reordered, 0);
}

#[test]
fn expect_no_loss_fails_on_the_lossy_path_with_the_reason() {
    let server = Fanout::start();
    let proxy = LossyProxy::start(server.addr, 10);
    let url = proxy.url();
    let err = loadgen(&format!(
        "fanout --url {url} --subs 3 --rate 100 --duration 500ms --drain 1s --expect-no-loss"
    ))
    .expect_err("loss must fail the assertion");
    let RunError::Assertion { outcome, reasons } = err else {
        panic!("not an assertion: {err}")
    };
    assert_eq!(outcome.figures.lost, 3 * 5);
    assert_eq!(
        reasons,
        vec!["15 of 150 expected deliveries lost (delivered 135)".to_string()]
    );
}

#[test]
fn binary_exits_non_zero_when_an_assertion_fails() {
    let server = Fanout::start();
    let proxy = LossyProxy::start(server.addr, 10);
    let run = |url: &str, extra: &[&str]| {
        let mut args = vec!["fanout", "--url", url, "--subs", "2", "--rate", "100"];
        args.extend_from_slice(&["--duration", "300ms", "--drain", "1s", "--quiet"]);
        args.extend_from_slice(extra);
        std::process::Command::new(env!("CARGO_BIN_EXE_loadgen"))
            .args(args)
            .output()
            .unwrap()
    };
    let lossy = run(&proxy.url(), &["--expect-no-loss"]);
    assert_eq!(lossy.status.code(), Some(3), "{lossy:?}");
    let stderr = String::from_utf8_lossy(&lossy.stderr);
    assert!(
        stderr.contains("assertion failed") && stderr.contains("lost"),
        "{stderr}"
    );
    // The same run straight to the server passes; an impossible p99 bound fails.
    assert_eq!(
        run(&server.url(), &["--expect-no-loss"]).status.code(),
        Some(0)
    );
    let strict = run(&server.url(), &["--max-p99", "1ns"]);
    assert_eq!(strict.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&strict.stderr).contains("--max-p99"));
}

#[test]
fn refused_connections_are_reported_by_cause() {
    // A port nothing listens on: every connection is refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("ws://127.0.0.1:{port}/");
    let err = loadgen(&format!(
        "connect --url {url} --conns 5 --hold 10ms --expect-no-loss"
    ))
    .expect_err("nothing opens");
    let RunError::Assertion { outcome, .. } = err else {
        panic!("{err}")
    };
    assert_eq!(outcome.json["failures"]["refused"], 5);
    assert_eq!(outcome.json["open"], 0);
}
