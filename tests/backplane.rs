//! The Redis backplane: several servers pointed at a real `redis-server` of the test's own, on
//! a free port of 127.0.0.1. Skipped, with the reason printed, only when `redis-server` is not
//! installed (`.ci/run` installs it).

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use fanout::Message;

/// A `redis-server` of the test's own, killed on drop.
struct Redis {
    port: u16,
    child: Option<Child>,
}

impl Redis {
    /// Starts one on a free port; `None` (after saying why) when the binary is missing.
    fn start() -> Option<Redis> {
        if Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_err()
        {
            eprintln!("skipped: redis-server is not installed (apt-get install redis-server)");
            return None;
        }
        let port = free_port();
        let mut redis = Redis { port, child: None };
        redis.restart();
        Some(redis)
    }

    /// Starts it (again) on its port and waits until it answers.
    fn restart(&mut self) {
        assert!(self.child.is_none());
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        let deadline = Instant::now() + TIMEOUT;
        while self.connection().is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Kills it (as a crash would).
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    fn connection(&self) -> redis::RedisResult<redis::Connection> {
        let client = redis::Client::open(self.url())?;
        client.get_connection_with_timeout(Duration::from_secs(1))
    }

    /// `PUBSUB CHANNELS fanout:*` (or `SHARDCHANNELS`), sorted, without the nodes' probe
    /// channels.
    fn channels(&self, sharded: bool) -> Vec<String> {
        let sub = if sharded { "SHARDCHANNELS" } else { "CHANNELS" };
        let mut names: Vec<String> = redis::cmd("PUBSUB")
            .arg(sub)
            .arg("fanout:*")
            .query(&mut self.connection().unwrap())
            .unwrap();
        names.retain(|n| !n.starts_with("fanout:@probe:"));
        names.sort();
        names
    }

    /// How many nodes are subscribed to `channel`.
    fn subscribers(&self, channel: &str, sharded: bool) -> u64 {
        let sub = if sharded { "SHARDNUMSUB" } else { "NUMSUB" };
        let (_, n): (String, u64) = redis::cmd("PUBSUB")
            .arg(sub)
            .arg(format!("fanout:{channel}"))
            .query(&mut self.connection().unwrap())
            .unwrap();
        n
    }

    /// Waits until `n` nodes are subscribed to `channel`.
    fn await_subscribers(&self, channel: &str, n: u64, sharded: bool) {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let got = self.subscribers(channel, sharded);
            if got == n {
                return;
            }
            assert!(Instant::now() < deadline, "{channel}: {got} subscribers");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn await_channels(&self, want: &[&str], sharded: bool) {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let got = self.channels(sharded);
            if got == want {
                return;
            }
            assert!(Instant::now() < deadline, "PUBSUB channels: {got:?}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// A node on `redis`, called `id`.
fn node(redis: &Redis, id: &str) -> TestServer {
    node_with(redis, id, |_| {})
}

fn node_with(redis: &Redis, id: &str, more: impl FnOnce(&mut fanout::Config)) -> TestServer {
    let url = redis.url();
    let server = TestServer::start(|c| {
        c.redis = Some(url);
        c.node_id = Some(id.into());
        more(c);
    });
    await_metric(server.addr, "fanout_backplane_up", |v| v == 1);
    server
}

#[test]
fn a_message_on_one_node_reaches_every_other_node_exactly_once_and_in_order() {
    let Some(redis) = Redis::start() else { return };
    let (a, b, c) = (node(&redis, "a"), node(&redis, "b"), node(&redis, "c"));
    let mut sender = ws(a.addr, "room");
    let mut on_a = ws(a.addr, "room");
    let mut on_b = ws(b.addr, "room");
    let mut on_c: Vec<_> = (0..2).map(|_| ws(c.addr, "room")).collect();
    redis.await_subscribers("room", 3, false);

    let n = 200;
    let mut burst = Vec::new();
    for i in 0..n {
        burst.extend(text(&format!("m{i}")));
    }
    sender.write_all(&burst).unwrap();
    for s in [&mut on_a, &mut on_b].into_iter().chain(on_c.iter_mut()) {
        for i in 0..n {
            expect_text(s, &format!("m{i}"));
        }
    }
    // Then a message from elsewhere: had anything come twice, it would be read first.
    publish_http(b.addr, "room", "from b");
    for s in [&mut on_a, &mut sender, &mut on_b]
        .into_iter()
        .chain(on_c.iter_mut())
    {
        expect_text(s, "from b");
    }
    let n = n as u64;
    // Redis answers a publisher after it has passed the message on: the count may lag.
    await_metric(a.addr, "fanout_backplane_published_total", |v| v == n);
    await_metric(b.addr, "fanout_backplane_published_total", |v| v == 1);
    await_metric(a.addr, "fanout_backplane_received_total", |v| v == 1);
    await_metric(b.addr, "fanout_backplane_received_total", |v| v == n);
    await_metric(c.addr, "fanout_backplane_received_total", |v| v == n + 1);
    // Each node delivered each message once per local subscriber, its own ones included.
    await_metric(a.addr, "fanout_deliveries_total", |v| v == n + 2);
    await_metric(b.addr, "fanout_deliveries_total", |v| v == n + 1);
    await_metric(c.addr, "fanout_deliveries_total", |v| v == 2 * (n + 1));
    let text = get(c.addr, "/metrics").2;
    prometheus_accepts(&text);
    let age: Vec<&str> = (text.lines())
        .filter(|l| l.starts_with("fanout_backplane_age_seconds"))
        .collect();
    println!(
        "C's envelope ages (A to C through Redis):\n{}",
        age.join("\n")
    );
    for s in [&a, &b, &c] {
        assert_eq!(metric(s.addr, "fanout_backplane_dropped_total"), 0);
        assert_eq!(metric(s.addr, "fanout_backplane_subscriptions"), 1);
        assert_eq!(metric(s.addr, "fanout_backplane_age_seconds_count"), {
            metric(s.addr, "fanout_backplane_received_total")
        });
    }
}

#[test]
fn http_and_handle_publishes_cross_nodes_and_binary_keeps_its_bytes() {
    let Some(redis) = Redis::start() else { return };
    let (a, b) = (node(&redis, "a"), node(&redis, "b"));
    let mut on_a = ws(a.addr, "feed");
    let mut on_b = ws(b.addr, "feed");
    redis.await_subscribers("feed", 2, false);

    // HTTP on B reaches A; B's own subscriber gets it once, from B.
    let answer = publish_http(b.addr, "feed", "over http");
    assert_eq!(
        answer, r#"{"channel":"feed","subscribers":1}"#,
        "local count"
    );
    expect_text(&mut on_a, "over http");
    expect_text(&mut on_b, "over http");

    // Handle::publish on A reaches B, binary bytes unchanged.
    let bytes: Vec<u8> = (0..=255).collect();
    a.handle
        .publish("feed", Message::Binary(bytes.clone()))
        .unwrap();
    for s in [&mut on_a, &mut on_b] {
        let f = read_frame(s);
        assert_eq!((f.opcode, &f.payload), (2, &bytes));
    }
    // A publish to a channel this node has nobody on still reaches the others.
    let mut only_b = ws(b.addr, "elsewhere");
    redis.await_subscribers("elsewhere", 1, false);
    let answer = publish_http(a.addr, "elsewhere", "x");
    assert_eq!(answer, r#"{"channel":"elsewhere","subscribers":0}"#);
    expect_text(&mut only_b, "x");

    publish_http(a.addr, "feed", "end");
    expect_text(&mut on_a, "end");
    expect_text(&mut on_b, "end");
    await_metric(a.addr, "fanout_backplane_published_total", |v| v == 3);
    await_metric(b.addr, "fanout_backplane_received_total", |v| v == 3);
    await_metric(a.addr, "fanout_backplane_received_total", |v| v == 1);
}

#[test]
fn only_channels_in_use_are_subscribed_and_the_last_leaver_unsubscribes() {
    let Some(redis) = Redis::start() else { return };
    let a = node(&redis, "a");
    redis.await_channels(&[], false);
    let one = ws(a.addr, "one");
    let two: Vec<_> = (0..3).map(|_| ws(a.addr, "two")).collect();
    redis.await_channels(&["fanout:one", "fanout:two"], false);
    await_metric(a.addr, "fanout_backplane_subscriptions", |v| v == 2);
    // Publishing to a channel nobody here is on does not subscribe it (no history).
    publish_http(a.addr, "nobody", "x");
    await_metric(a.addr, "fanout_backplane_published_total", |v| v == 1);
    assert_eq!(
        redis.channels(false),
        ["fanout:one", "fanout:two"],
        "nobody is not subscribed"
    );

    drop(one);
    redis.await_channels(&["fanout:two"], false);
    let mut two = two.into_iter();
    drop(two.next());
    drop(two.next());
    // Still one subscriber of `two` (and the scrape's own connection).
    await_metric(a.addr, "fanout_connections", |v| v == 2);
    assert_eq!(redis.channels(false), ["fanout:two"]);
    drop(two);
    redis.await_channels(&[], false);
    await_metric(a.addr, "fanout_backplane_subscriptions", |v| v == 0);
}

#[test]
fn a_channel_with_history_stays_subscribed_and_records_remote_messages() {
    let Some(redis) = Redis::start() else { return };
    let a = node_with(&redis, "a", |c| c.history = 5);
    let b = node(&redis, "b");
    // A has no subscriber of `log`, but history: a publish there creates it for its history,
    // so A subscribes it and records what B's clients say too.
    publish_http(a.addr, "log", "first");
    redis.await_subscribers("log", 1, false);
    let mut sender = ws(b.addr, "log");
    redis.await_subscribers("log", 2, false);
    sender.write_all(&text("second")).unwrap();
    await_metric(a.addr, "fanout_backplane_received_total", |v| v == 1);
    let mut late = ws(a.addr, "log");
    expect_text(&mut late, "first");
    expect_text(&mut late, "second");
}

#[test]
fn redis_down_then_back_local_delivery_goes_on_and_nodes_resubscribe() {
    let Some(mut redis) = Redis::start() else {
        return;
    };
    let a = node_with(&redis, "a", |c| c.redis_queue = 8);
    let b = node(&redis, "b");
    let mut pub_a = ws(a.addr, "room");
    let mut sub_a = ws(a.addr, "room");
    let mut sub_b = ws(b.addr, "room");
    redis.await_subscribers("room", 2, false);
    pub_a.write_all(&text("before")).unwrap();
    expect_text(&mut sub_a, "before");
    expect_text(&mut sub_b, "before");

    redis.kill();
    for s in [&a, &b] {
        await_metric(s.addr, "fanout_backplane_up", |v| v == 0);
        await_metric(s.addr, "fanout_backplane_subscriptions", |v| v == 0);
        assert_eq!(get(s.addr, "/healthz").0, 200);
    }
    // Local delivery is unaffected; past the queue of 8, A drops and counts.
    for i in 0..20 {
        pub_a.write_all(&text(&format!("down {i}"))).unwrap();
    }
    for i in 0..20 {
        expect_text(&mut sub_a, &format!("down {i}"));
    }
    // At most 8 wait in the queue; the rest is dropped, by the loop when the queue is full or
    // by the publisher when the pipeline it took (up to 8 more) failed on the dead connection.
    let dropped = await_metric(a.addr, "fanout_backplane_dropped_total", |v| v >= 12);
    assert!(dropped <= 20, "dropped {dropped}");

    let back = Instant::now();
    redis.restart();
    for s in [&a, &b] {
        await_metric(s.addr, "fanout_backplane_up", |v| v == 1);
        await_metric(s.addr, "fanout_backplane_subscriptions", |v| v == 1);
    }
    redis.await_subscribers("room", 2, false);
    let took = back.elapsed();
    assert!(took < Duration::from_secs(3), "resubscribed after {took:?}");
    pub_a.write_all(&text("after")).unwrap();
    expect_text(&mut sub_a, "after");
    // What waited in A's queue may have crossed after the restart (or been lost with the
    // connection, or published before B subscribed again): in order, never twice, and all
    // before "after".
    let mut last = None;
    loop {
        let f = read_frame(&mut sub_b);
        let text = String::from_utf8(f.payload).unwrap();
        if text == "after" {
            break;
        }
        let i: u32 = text.strip_prefix("down ").unwrap().parse().unwrap();
        assert!(last < Some(i), "{text} after {last:?}");
        last = Some(i);
    }
    publish_http(b.addr, "room", "end");
    await_metric(b.addr, "fanout_backplane_published_total", |v| v == 1);
    await_metric(a.addr, "fanout_backplane_received_total", |v| v == 1);
    expect_text(&mut sub_a, "end");
    expect_text(&mut sub_b, "end");
    expect_text(&mut pub_a, "end");
}

#[test]
fn a_full_queue_drops_and_counts_while_local_delivery_goes_on() {
    // A node whose Redis is not there (port 1 refuses; no redis-server needed): nothing is
    // ever sent, so the queue holds 4 and the rest is dropped, each counted.
    let a = TestServer::start(|c| {
        c.redis = Some("redis://127.0.0.1:1/".into());
        c.redis_queue = 4;
    });
    let mut sub = ws(a.addr, "room");
    for i in 0..50 {
        a.handle.publish("room", format!("m{i}")).unwrap();
    }
    for i in 0..50 {
        expect_text(&mut sub, &format!("m{i}"));
    }
    assert_eq!(metric(a.addr, "fanout_backplane_dropped_total"), 46);
    assert_eq!(metric(a.addr, "fanout_backplane_published_total"), 0);
    assert_eq!(metric(a.addr, "fanout_backplane_up"), 0);
    assert_eq!(get(a.addr, "/healthz").0, 200);
}

#[test]
fn sharded_pub_sub_crosses_nodes() {
    let Some(redis) = Redis::start() else { return };
    let sharded = |c: &mut fanout::Config| c.redis_sharded = true;
    let (a, b) = (
        node_with(&redis, "a", sharded),
        node_with(&redis, "b", sharded),
    );
    let mut sub_a = ws(a.addr, "shard");
    let mut sub_b = ws(b.addr, "shard");
    redis.await_subscribers("shard", 2, true);
    assert_eq!(redis.channels(true), ["fanout:shard"]);
    assert_eq!(redis.channels(false), Vec::<String>::new(), "not classic");
    publish_http(a.addr, "shard", "one");
    b.handle.publish("shard", "two").unwrap();
    for s in [&mut sub_a, &mut sub_b] {
        let mut got = [read_frame(s), read_frame(s)].map(|f| f.payload);
        got.sort();
        assert_eq!(got, [b"one".to_vec(), b"two".to_vec()]);
    }
    drop(sub_a);
    redis.await_subscribers("shard", 1, true);
}

#[test]
fn bad_settings_are_refused_at_start() {
    let mut config = fanout::Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        redis: Some("http://nope".into()),
        ..fanout::Config::default()
    };
    let e = fanout::Server::bind(config.clone()).err().expect("bad URL");
    assert!(e.to_string().contains("--redis"), "{e}");
    config.redis = Some("rediss://127.0.0.1:1/".into());
    let e = fanout::Server::bind(config.clone()).err().expect("TLS");
    assert!(
        e.to_string().contains("--redis") && e.to_string().contains("TLS"),
        "{e}"
    );
    config.redis = Some("redis://127.0.0.1:1/".into());
    config.node_id = Some("x".repeat(65));
    let e = fanout::Server::bind(config).err().expect("long node id");
    assert!(e.to_string().contains("--node-id"), "{e}");
}

/// A TCP relay to Redis that can stop passing Redis's bytes to the subscriber connections it
/// relays now (a connection that sent a SUBSCRIBE), as a wedged connection after a failover
/// does: up for both ends, delivering nothing.
struct Relay {
    port: u16,
    subscribers: Arc<Mutex<Vec<Arc<AtomicBool>>>>,
    done: Arc<AtomicBool>,
}

impl Relay {
    fn start(to: u16) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let subscribers: Arc<Mutex<Vec<Arc<AtomicBool>>>> = Arc::default();
        let done = Arc::new(AtomicBool::new(false));
        let (subs, stop) = (subscribers.clone(), done.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Acquire) {
                let Ok((client, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                client.set_nonblocking(false).unwrap();
                let upstream = std::net::TcpStream::connect(("127.0.0.1", to)).unwrap();
                let frozen = Arc::new(AtomicBool::new(false));
                let (mut c_in, mut c_out) = (client.try_clone().unwrap(), client);
                let (mut u_in, mut u_out) = (upstream.try_clone().unwrap(), upstream);
                let (subs, mark) = (subs.clone(), frozen.clone());
                std::thread::spawn(move || {
                    let mut buf = [0u8; 16 * 1024];
                    while let Ok(n @ 1..) = c_in.read(&mut buf) {
                        if buf[..n].windows(9).any(|w| w == b"SUBSCRIBE") {
                            subs.lock().unwrap().push(mark.clone());
                        }
                        if u_out.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = u_out.shutdown(std::net::Shutdown::Both);
                });
                std::thread::spawn(move || {
                    let mut buf = [0u8; 16 * 1024];
                    while let Ok(n @ 1..) = u_in.read(&mut buf) {
                        if frozen.load(Ordering::Acquire) {
                            break; // Swallowed, and nothing more passes.
                        }
                        if c_out.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                });
            }
        });
        Relay {
            port,
            subscribers,
            done,
        }
    }

    /// The subscriber connections relayed now get nothing more from Redis.
    fn wedge(&self) {
        for s in self.subscribers.lock().unwrap().drain(..) {
            s.store(true, Ordering::Release);
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.done.store(true, Ordering::Release);
    }
}

#[test]
fn a_wedged_subscriber_connection_is_found_by_its_probes_and_replaced() {
    let Some(redis) = Redis::start() else { return };
    let relay = Relay::start(redis.port);
    let a = TestServer::start(|c| {
        c.redis = Some(format!("redis://127.0.0.1:{}/", relay.port));
        c.node_id = Some("a".into());
    });
    await_metric(a.addr, "fanout_backplane_up", |v| v == 1);
    let b = node(&redis, "b");
    let mut on_a = ws(a.addr, "room");
    redis.await_subscribers("room", 1, false);
    publish_http(b.addr, "room", "before");
    expect_text(&mut on_a, "before");

    relay.wedge();
    // Within 3 s of probes Redis took but that never came back, plus a probe interval.
    await_metric(a.addr, "fanout_backplane_wedged_total", |v| v == 1);
    // Delivery resumes on the new connection: publish until one gets through (what B
    // published before A had subscribed again is lost, as pub/sub is), then exactly once.
    on_a.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut through = false;
    for i in 0..100 {
        publish_http(b.addr, "room", &format!("try {i}"));
        if read_frame_or_timeout(&mut on_a).is_some() {
            through = true;
            break;
        }
    }
    assert!(through, "nothing reached A after its reconnection");
    on_a.set_read_timeout(Some(TIMEOUT)).unwrap();
    publish_http(b.addr, "room", "after");
    loop {
        // A "try" published just before the one that got through may still arrive first.
        let f = read_frame(&mut on_a);
        let text = String::from_utf8(f.payload).unwrap();
        if text == "after" {
            break;
        }
        assert!(text.starts_with("try "), "{text}");
    }
    assert_eq!(metric(a.addr, "fanout_backplane_up"), 1);
}

/// Python's `prometheus_client` parses the exposition, the age histogram included (skipped,
/// saying so, when it is not installed; `.ci/run` installs it).
fn prometheus_accepts(text: &str) {
    let script = r#"
import sys
try:
    from prometheus_client.parser import text_string_to_metric_families
except ImportError:
    sys.exit(3)
kinds = {f.name: f.type for f in text_string_to_metric_families(sys.stdin.read())}
assert kinds["fanout_backplane_age_seconds"] == "histogram", kinds
assert kinds["fanout_backplane_up"] == "gauge", kinds
"#;
    let Ok(mut child) = Command::new("python3")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .spawn()
    else {
        return eprintln!("skipped the prometheus_client check: no python3");
    };
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(text.as_bytes()).unwrap();
    drop(stdin);
    let status = child.wait().unwrap();
    if status.code() == Some(3) {
        return eprintln!("skipped the prometheus_client check: pip install prometheus_client");
    }
    assert!(
        status.success(),
        "the parser rejected the exposition:\n{text}"
    );
}
