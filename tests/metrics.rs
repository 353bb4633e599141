//! `GET /metrics` after a known sequence of events: the values, and that a real Prometheus
//! text parser (Python's `prometheus_client`) accepts the exposition.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};

use common::*;

/// Parses the exposition with `prometheus_client.parser`; `None` when Python or the package is
/// missing (CI installs it).
fn parse_with_prometheus_client(text: &str) -> Option<BTreeMap<String, f64>> {
    let script = r#"
import sys
try:
    from prometheus_client.parser import text_string_to_metric_families
except ImportError:
    sys.exit(3)
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
        print(f"{s.name}{{{labels}}} {s.value}")
"#;
    let mut child = Command::new("python3")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .ok()?;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    if out.status.code() == Some(3) {
        return None;
    }
    assert!(
        out.status.success(),
        "the parser rejected the exposition:\n{text}"
    );
    let parsed = String::from_utf8(out.stdout).unwrap();
    Some(
        parsed
            .lines()
            .map(|l| {
                let (k, v) = l.rsplit_once(' ').unwrap();
                (k.to_owned(), v.parse().unwrap())
            })
            .collect(),
    )
}

#[test]
fn metrics_count_a_known_sequence_of_events() {
    let server = TestServer::start(|_| {});
    let mut a = ws(server.addr, "room");
    let mut b = ws(server.addr, "room");
    for m in ["one", "two", "three"] {
        a.write_all(&text(m)).unwrap();
    }
    for _ in 0..3 {
        read_frame(&mut b);
    }
    // One HTTP publish reaching both, one refused publish, one refused upgrade.
    http(
        server.addr,
        &publish_request("room", "text/plain", b"hi", "Connection: close\r\n"),
    );
    read_frame(&mut a);
    read_frame(&mut b);
    http(
        server.addr,
        &publish_request("room", "text/plain", b"\xff", ""),
    );
    http(server.addr, upgrade_request("").as_bytes());
    // b closes normally: the server echoes 1000.
    b.write_all(&frame(true, 8, &1000u16.to_be_bytes(), true))
        .unwrap();
    assert_eq!(read_frame(&mut b).close_code(), 1000);
    expect_eof(&mut b);

    let (status, head, body) = get(server.addr, "/metrics");
    assert_eq!(status, 200);
    assert!(
        head.contains("Content-Type: text/plain; version=0.0.4"),
        "{head}"
    );
    for line in [
        "fanout_upgrades_total 2",
        "fanout_messages_received_total 3",
        "fanout_deliveries_total 5",
        "fanout_dropped_total 0",
        "fanout_slow_consumer_closes_total 0",
        "fanout_close_frames_sent_total{code=\"1000\"} 1",
        "fanout_publish_requests_total{status=\"200\"} 1",
        "fanout_publish_requests_total{status=\"400\"} 1",
        "fanout_refusals_total{status=\"400\"} 2",
        "fanout_channels 1",
        "fanout_queued_bytes 0",
    ] {
        assert!(
            body.lines().any(|l| l == line),
            "missing {line:?} in\n{body}"
        );
    }

    match parse_with_prometheus_client(&body) {
        None => println!(
            "skipped the prometheus_client check: python3 -m pip install prometheus_client"
        ),
        Some(samples) => {
            assert_eq!(samples["fanout_messages_received_total{}"], 3.0);
            assert_eq!(samples["fanout_deliveries_total{}"], 5.0);
            assert_eq!(
                samples["fanout_close_frames_sent_total{code=\"1000\"}"],
                1.0
            );
            assert_eq!(samples["fanout_refusals_total{status=\"400\"}"], 2.0);
            assert_eq!(
                samples["fanout_publish_requests_total{status=\"200\"}"],
                1.0
            );
            assert!(samples["fanout_connections_accepted_total{}"] >= 6.0);
            assert!(samples["fanout_received_bytes_total{}"] > 0.0);
            assert!(samples["fanout_sent_bytes_total{}"] > 0.0);
        }
    }
}
