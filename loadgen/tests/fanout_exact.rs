//! loadgen against an in-process fanout server: every count must be exact.

mod common;

use common::{Fanout, loadgen};

#[test]
fn fanout_delivers_everything_and_counts_are_exact() {
    let server = Fanout::start();
    let url = server.url();
    let o = loadgen(&format!(
        "fanout --url {url} --subs 20 --pubs 2 --rate 200 --duration 1s --drain 2s \
         --expect-no-loss"
    ))
    .expect("no loss");
    // 200 messages, each expected at 20 subscribers and the other publisher.
    assert_eq!(o.json["sent"], 200);
    assert_eq!(o.figures.expected, 200 * 21);
    assert_eq!(o.figures.delivered, o.figures.expected);
    assert_eq!(
        (o.figures.lost, o.figures.duplicates, o.figures.reordered),
        (0, 0, 0)
    );
    assert_eq!(o.figures.conn_failures, 0);
    assert!(o.figures.latency_us.p50 > 0.0);
    assert!(o.figures.latency_us.max >= o.figures.latency_us.p99);
}

#[test]
fn chat_rooms_are_isolated_and_complete() {
    let server = Fanout::start();
    let url = server.url();
    let o = loadgen(&format!(
        "chat --url {url} --rooms 5 --members 4 --rate 200 --duration 1s --threads 2 \
         --expect-no-loss"
    ))
    .expect("no loss");
    // 200 messages, each expected at the 3 other members of its room and nowhere else: a
    // message leaking into another room would show up as a delivery past `expected`.
    assert_eq!(o.figures.expected, 200 * 3);
    assert_eq!(o.figures.delivered, 600);
    assert_eq!(o.json["stale"], 0);
    assert_eq!(o.json["foreign"], 0);
}

#[test]
fn large_messages_arrive_whole() {
    let server = Fanout::start();
    let url = server.url();
    let o = loadgen(&format!(
        "fanout --url {url} --subs 5 --rate 100 --size 70000 --duration 500ms \
         --expect-no-loss"
    ))
    .expect("no loss");
    assert_eq!(o.figures.expected, 50 * 5);
    assert_eq!(o.figures.delivered, 250);
}

#[test]
fn connect_opens_every_connection_from_several_sources() {
    let server = Fanout::start();
    let url = server.url();
    let pid = std::process::id().to_string();
    let o = loadgen(&format!(
        "connect --url {url} --conns 300 --source 127.0.0.1-127.0.0.3 --connect-rate 0 --hold \
         200ms --server-pid {pid} --expect-no-loss"
    ))
    .expect("all open");
    assert_eq!(o.json["open"], 300);
    assert_eq!(o.json["handshakes"], 300);
    assert_eq!(o.json["still_open_after_hold"], 300);
    assert!(o.json["handshakes_per_sec"].as_f64().unwrap() > 0.0);
    assert!(o.json["server_rss_bytes_per_conn"].is_number());
}

#[test]
fn sweep_finds_a_passing_rate_and_reuses_connections() {
    let server = Fanout::start();
    let url = server.url();
    let o = loadgen(&format!(
        "sweep --url {url} --subs 10 --start-rate 100 --max-steps 3 --step-duration 300ms \
         --drain 1s --slo 1s"
    ))
    .expect("sweep runs");
    let steps = o.json["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 3);
    // 100 → 200 → 400 msg/s all pass at this size; each step's counts are exact.
    for (s, rate) in steps.iter().zip([100.0, 200.0, 400.0]) {
        assert_eq!(s["offered_rate"], rate);
        assert_eq!(s["pass"], true, "{s}");
        assert_eq!(s["expected"], s["delivered"]);
        assert_eq!(
            s["expected"].as_u64().unwrap(),
            s["sent"].as_u64().unwrap() * 10
        );
    }
    assert_eq!(o.json["max_rate"], 400.0);
    assert_eq!(o.json["reopened_connections"], 0);
    assert_eq!(o.json["connections"]["handshakes"], 11);
}

#[test]
fn every_message_received_is_counted_for_settling() {
    use loadgen::engine::{Engine, EngineOpts, Plan, TrialSpec};
    use loadgen::target::Target;
    use std::time::Duration;

    let server = Fanout::start();
    let mut plan = Plan::new(&Target::parse(&server.url(), false).unwrap(), Vec::new());
    let ch = plan.channel("settle".into());
    plan.publisher(ch);
    plan.subscribers(ch, 5);
    let opts = EngineOpts {
        threads: 2,
        connect_rate: 0.0,
        max_pending: 64,
        connect_timeout: Duration::from_secs(5),
        size: 64,
        payload: Default::default(),
        compress_publish: false,
    };
    let mut engine = Engine::start(plan, opts).unwrap();
    assert_eq!(engine.connect(&mut |_| {}).unwrap().open, 6);
    let spec = TrialSpec {
        rate: 200.0,
        duration: Duration::from_millis(300),
        drain: Duration::from_secs(2),
        interval: Duration::from_millis(100),
    };
    let r = engine.trial(&spec, &mut |_| {}).unwrap();
    assert_eq!((r.lost, r.tally.delivered), (0, r.sent * 5));
    // The shared counter `settle` watches has seen every one of them (it once stayed at 0, so
    // a sweep never waited for a server's backlog after a failed step).
    assert_eq!(engine.frames(), r.tally.delivered);
    assert_eq!(
        engine.settle(Duration::from_millis(50), Duration::from_secs(1)),
        0
    );
}

#[test]
fn a_token_opens_a_server_with_access_control_and_without_one_every_upgrade_is_refused() {
    const SECRET: &str = "a-test-secret-of-at-least-32-bytes!";
    let server = Fanout::start_with(|c| c.auth_hmac_secret = Some(SECRET.into()));
    let url = server.url();
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let claims = serde_json::json!({"exp": exp, "channels": ["*"], "publish": ["*"]});
    let key = jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()).unwrap();
    let token = jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).unwrap();
    let o = loadgen(&format!(
        "fanout --url {url} --token {token} --subs 10 --rate 100 --duration 500ms \
         --expect-no-loss"
    ))
    .expect("no loss with a token");
    assert_eq!(o.figures.delivered, 50 * 10);
    let err = loadgen(&format!(
        "connect --url {url} --conns 3 --hold 10ms --expect-no-loss"
    ))
    .expect_err("no token, no upgrade");
    let loadgen::RunError::Assertion { outcome, .. } = err else {
        panic!("{err}")
    };
    assert_eq!(outcome.json["failures"]["http_401"], 3);
}
