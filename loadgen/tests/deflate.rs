//! `--deflate` against an in-process fanout: negotiated when the server has `--deflate`,
//! declined (and run plain) when it has not; every count exact either way.

mod common;

use common::{Fanout, loadgen};

const SUBS: u64 = 30;
const PUBS: u64 = 2;

fn run(url: &str) -> loadgen::Outcome {
    loadgen(&format!(
        "fanout --url {url} --subs {SUBS} --pubs {PUBS} --rate 200 --duration 1s --drain 2s \
         --size 1024 --payload json --deflate --expect-no-loss"
    ))
    .expect("no loss")
}

#[test]
fn compressed_fanout_delivers_everything_and_counts_are_exact() {
    let server = Fanout::start_with(|c| c.deflate = true);
    let o = run(&server.url());
    // 200 messages, each expected at the subscribers and the other publisher.
    let expected = 200 * (SUBS + PUBS - 1);
    assert_eq!(o.json["sent"], 200);
    assert_eq!(o.figures.expected, expected);
    assert_eq!(o.figures.delivered, expected);
    assert_eq!((o.figures.lost, o.figures.duplicates), (0, 0));
    assert_eq!(
        (o.json["foreign"].as_u64(), o.json["stale"].as_u64()),
        (Some(0), Some(0))
    );
    // Every connection negotiated it (publishers too), and every message came compressed.
    assert_eq!(o.json["deflate_connections"], SUBS + PUBS);
    assert_eq!(o.json["connections"]["deflate_connections"], SUBS + PUBS);
    assert_eq!(o.json["compressed"], expected);
    let per = o.json["wire_bytes_per_delivery"].as_f64().unwrap();
    assert!(
        per > 100.0 && per < 700.0,
        "1 KiB of JSON compressed to {per} bytes"
    );
}

#[test]
fn compressed_publishing_is_inflated_by_the_server_and_delivered() {
    let server = Fanout::start_with(|c| c.deflate = true);
    let url = server.url();
    let o = loadgen(&format!(
        "fanout --url {url} --subs {SUBS} --pubs {PUBS} --rate 200 --duration 1s --drain 2s \
         --size 1024 --payload json --deflate --compress-publish --expect-no-loss"
    ))
    .expect("no loss");
    let expected = 200 * (SUBS + PUBS - 1);
    assert_eq!(o.figures.delivered, expected);
    assert_eq!(o.json["compressed"], expected);
}

#[test]
fn a_server_without_deflate_declines_and_runs_plain() {
    let server = Fanout::start();
    let o = run(&server.url());
    let expected = 200 * (SUBS + PUBS - 1);
    assert_eq!(o.figures.expected, expected);
    assert_eq!(o.figures.delivered, expected);
    assert_eq!(o.json["deflate_connections"], 0);
    assert_eq!(o.json["compressed"], 0);
    assert_eq!(o.json["wire_bytes"], expected * 1024);
    assert_eq!(o.json["wire_bytes_per_delivery"], 1024.0);
}

#[test]
fn connect_counts_negotiated_connections() {
    let server = Fanout::start_with(|c| c.deflate = true);
    let url = server.url();
    let o = loadgen(&format!(
        "connect --url {url} --conns 50 --connect-rate 0 --hold 100ms --deflate --expect-no-loss"
    ))
    .expect("all open");
    assert_eq!(o.json["open"], 50);
    assert_eq!(o.json["deflate_connections"], 50);
}
