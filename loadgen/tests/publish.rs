//! `loadgen publish` against an in-process fanout: every pipelined publish is accepted and
//! delivered, in order.

mod common;

use common::Fanout;
use loadgen::publish::{PublishArgs, run};

#[test]
fn pipelined_publishes_are_all_accepted_and_delivered() {
    let server = Fanout::start();
    let args = PublishArgs {
        url: server.url(),
        channel: "bench".into(),
        count: 5_000,
        size: 64,
        window: 128,
        drain: std::time::Duration::from_secs(5),
        json: None,
    };
    let report = run(&args).expect("publish run");
    assert_eq!(
        (report.sent, report.accepted, report.delivered),
        (5_000, 5_000, 5_000)
    );
    assert!(report.accepted_per_sec > 0.0);
}
