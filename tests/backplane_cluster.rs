//! The Redis backplane on a real 3-primary Redis Cluster of the test's own, on free ports of
//! 127.0.0.1, with `--redis-sharded`: each channel subscribed on the shard owning its slot,
//! messages crossing nodes on every shard, and a slot moving to another shard. Skipped, with the
//! reason printed, only when `redis-server` or `redis-cli` is not installed (`.ci/run` installs
//! them).

mod common;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use redis::Value;

/// Three `redis-server --cluster-enabled yes`, made one cluster by `redis-cli --cluster create`,
/// killed (and their directory removed) on drop.
struct Cluster {
    ports: Vec<u16>,
    children: Vec<Child>,
    dir: PathBuf,
}

impl Cluster {
    fn start() -> Option<Cluster> {
        for tool in ["redis-server", "redis-cli"] {
            let found = Command::new(tool)
                .arg("--version")
                .stdout(Stdio::null())
                .status()
                .is_ok();
            if !found {
                eprintln!("skipped: {tool} is not installed (apt-get install redis-server)");
                return None;
            }
        }
        let ports: Vec<u16> = (0..3).map(|_| cluster_port()).collect();
        let dir = std::env::temp_dir().join(format!(
            "fanout-cluster-{}-{}",
            std::process::id(),
            ports[0]
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let mut cluster = Cluster {
            ports,
            children: Vec::new(),
            dir,
        };
        for &port in &cluster.ports {
            let p = port.to_string();
            let child = Command::new("redis-server")
                .args([
                    "--port",
                    &p,
                    "--bind",
                    "127.0.0.1",
                    "--cluster-enabled",
                    "yes",
                ])
                .arg("--cluster-config-file")
                .arg(cluster.dir.join(format!("nodes-{port}.conf")))
                .args(["--save", "", "--appendonly", "no", "--dir"])
                .arg(&cluster.dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start redis-server");
            cluster.children.push(child);
        }
        for i in 0..3 {
            let deadline = Instant::now() + TIMEOUT;
            while cluster.try_con(i).is_err() {
                assert!(Instant::now() < deadline, "redis-server did not start");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let status = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(cluster.ports.iter().map(|p| format!("127.0.0.1:{p}")))
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "redis-cli --cluster create");
        for i in 0..3 {
            cluster.await_ok(i);
        }
        Some(cluster)
    }

    /// Waits until node `i` says `cluster_state:ok` and knows the three primaries' slots.
    fn await_ok(&self, i: usize) {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let info: String = redis::cmd("CLUSTER")
                .arg("INFO")
                .query(&mut self.con(i))
                .unwrap();
            if info.contains("cluster_state:ok") && self.slot_owners(i).len() == 3 {
                return;
            }
            assert!(Instant::now() < deadline, "node {i}: {info}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn try_con(&self, i: usize) -> redis::RedisResult<redis::Connection> {
        let client = redis::Client::open(format!("redis://127.0.0.1:{}/", self.ports[i]))?;
        client.get_connection_with_timeout(Duration::from_secs(1))
    }

    fn con(&self, i: usize) -> redis::Connection {
        self.try_con(i).unwrap()
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.ports[0])
    }

    /// `(first slot, last slot, port)` per range, as node `i` sees them (`CLUSTER SLOTS`).
    fn slot_owners(&self, i: usize) -> Vec<(i64, i64, u16)> {
        let reply: Value = redis::cmd("CLUSTER")
            .arg("SLOTS")
            .query(&mut self.con(i))
            .unwrap();
        let Value::Array(ranges) = reply else {
            panic!("{reply:?}")
        };
        let mut owners = Vec::new();
        for range in ranges {
            let Value::Array(r) = range else { panic!() };
            let (Value::Int(a), Value::Int(b), Value::Array(node)) = (&r[0], &r[1], &r[2]) else {
                panic!("{r:?}")
            };
            let Value::Int(port) = node[1] else { panic!() };
            owners.push((*a, *b, port as u16));
        }
        owners
    }

    /// Redis's slot of a Redis channel (`CLUSTER KEYSLOT`).
    fn slot(&self, redis_channel: &str) -> i64 {
        redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(redis_channel)
            .query(&mut self.con(0))
            .unwrap()
    }

    /// Which node (an index into `ports`) owns fanout channel `name`'s slot.
    fn owner(&self, name: &str) -> usize {
        let slot = self.slot(&format!("fanout:{name}"));
        let (_, _, port) = (self.slot_owners(0).into_iter())
            .find(|(a, b, _)| (*a..=*b).contains(&slot))
            .expect("an owner");
        self.ports.iter().position(|p| *p == port).unwrap()
    }

    /// `PUBSUB SHARDCHANNELS fanout:*` on node `i`, sorted, without the nodes' probes.
    fn shard_channels(&self, i: usize) -> Vec<String> {
        let mut names: Vec<String> = redis::cmd("PUBSUB")
            .arg("SHARDCHANNELS")
            .arg("fanout:*")
            .query(&mut self.con(i))
            .unwrap();
        names.retain(|n| !n.starts_with("fanout:@probe:"));
        names.sort();
        names
    }

    fn await_shard_channels(&self, i: usize, want: &[String]) {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let got = self.shard_channels(i);
            if got == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "node {i}: {got:?}, want {want:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits until `n` nodes are subscribed to `name` on node `i`.
    fn await_subscribers(&self, i: usize, name: &str, n: u64) {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let (_, got): (String, u64) = redis::cmd("PUBSUB")
                .arg("SHARDNUMSUB")
                .arg(format!("fanout:{name}"))
                .query(&mut self.con(i))
                .unwrap();
            if got == n {
                return;
            }
            assert!(Instant::now() < deadline, "{name} on node {i}: {got}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn id(&self, i: usize) -> String {
        redis::cmd("CLUSTER")
            .arg("MYID")
            .query(&mut self.con(i))
            .unwrap()
    }

    /// Moves an empty slot from node `from` to node `to`, as `redis-cli --cluster reshard`
    /// does: IMPORTING, MIGRATING, then NODE on every primary.
    fn move_slot(&self, slot: i64, from: usize, to: usize) {
        let (from_id, to_id) = (self.id(from), self.id(to));
        let setslot = |i: usize, args: &[&str]| {
            let _: () = redis::cmd("CLUSTER")
                .arg("SETSLOT")
                .arg(slot)
                .arg(args)
                .query(&mut self.con(i))
                .unwrap();
        };
        setslot(to, &["IMPORTING", &from_id]);
        setslot(from, &["MIGRATING", &to_id]);
        for i in [to, from, 3 - from - to] {
            setslot(i, &["NODE", &to_id]);
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A free port whose cluster bus port (10 000 above it) is free too.
fn cluster_port() -> u16 {
    loop {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        if port < 55_000 && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}

/// A node on the cluster, called `id`, once it has a connection to every shard.
fn node(cluster: &Cluster, id: &str) -> TestServer {
    let url = cluster.url();
    let server = TestServer::start(|c| {
        c.redis = Some(url);
        c.redis_sharded = true;
        c.node_id = Some(id.into());
    });
    await_metric(server.addr, "fanout_backplane_shards", |v| v == 3);
    await_metric(server.addr, "fanout_backplane_up", |v| v == 1);
    server
}

/// Two channels on each shard: `(name, owner)`.
fn channels_on_every_shard(cluster: &Cluster) -> Vec<(String, usize)> {
    let mut per = [0; 3];
    let mut out = Vec::new();
    for n in 0.. {
        let name = format!("ch{n}");
        let owner = cluster.owner(&name);
        if per[owner] < 2 {
            per[owner] += 1;
            out.push((name, owner));
        }
        if per == [2; 3] {
            return out;
        }
    }
    unreachable!()
}

#[test]
fn each_channel_is_subscribed_on_its_shard_and_crosses_nodes_once_in_order() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let (a, b) = (node(&cluster, "a"), node(&cluster, "b"));
    let channels = channels_on_every_shard(&cluster);
    let mut on_a = Vec::new();
    let mut on_b = Vec::new();
    for (name, _) in &channels {
        on_a.push(ws(a.addr, name));
        on_b.push(ws(b.addr, name));
    }
    for (name, owner) in &channels {
        cluster.await_subscribers(*owner, name, 2);
    }
    let on = |i: usize, channels: &[(String, usize)]| -> Vec<String> {
        let mut v: Vec<String> = (channels.iter())
            .filter(|(_, o)| *o == i)
            .map(|(n, _)| format!("fanout:{n}"))
            .collect();
        v.sort();
        v
    };
    for i in 0..3 {
        assert_eq!(cluster.shard_channels(i), on(i, &channels), "node {i}");
    }
    assert_eq!(metric(a.addr, "fanout_backplane_subscriptions"), 6);

    // Interleaved over the channels, so every shard's pipeline carries some.
    let n = 50;
    for i in 0..n {
        for (name, _) in &channels {
            a.handle.publish(name, format!("{name}-{i}")).unwrap();
        }
    }
    for (k, (name, _)) in channels.iter().enumerate() {
        for s in [&mut on_a[k], &mut on_b[k]] {
            for i in 0..n {
                expect_text(s, &format!("{name}-{i}"));
            }
        }
    }
    // Then a message from B: had anything come twice, it would be read first.
    for (k, (name, _)) in channels.iter().enumerate() {
        publish_http(b.addr, name, "end");
        expect_text(&mut on_a[k], "end");
        expect_text(&mut on_b[k], "end");
    }
    let sent = (n * channels.len()) as u64;
    await_metric(a.addr, "fanout_backplane_published_total", |v| v == sent);
    await_metric(b.addr, "fanout_backplane_received_total", |v| v == sent);
    await_metric(a.addr, "fanout_backplane_received_total", |v| v == 6);
    for s in [&a, &b] {
        assert_eq!(metric(s.addr, "fanout_backplane_dropped_total"), 0);
        assert_eq!(metric(s.addr, "fanout_backplane_invalid_total"), 0);
    }

    // The last subscriber of the first channel of each shard leaves: unsubscribed there.
    let mut left = channels.clone();
    for owner in 0..3 {
        let k = left.iter().position(|(_, o)| *o == owner).unwrap();
        left.remove(k);
        let k = channels.iter().position(|(_, o)| *o == owner).unwrap();
        on_a[k] = ws(a.addr, "elsewhere");
        on_b[k] = ws(b.addr, "elsewhere");
    }
    for i in 0..3 {
        let mut want = on(i, &left);
        if cluster.owner("elsewhere") == i {
            want.push("fanout:elsewhere".into());
            want.sort();
        }
        cluster.await_shard_channels(i, &want);
    }
    drop((on_a, on_b));
    for i in 0..3 {
        cluster.await_shard_channels(i, &[]);
    }
    await_metric(a.addr, "fanout_backplane_subscriptions", |v| v == 0);
    await_metric(b.addr, "fanout_backplane_subscriptions", |v| v == 0);
}

#[test]
fn a_slot_moving_to_another_shard_takes_its_subscriptions_and_delivery_resumes() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let (a, b) = (node(&cluster, "a"), node(&cluster, "b"));
    let name = (0..)
        .map(|n| format!("mv{n}"))
        .find(|n| cluster.owner(n) == 0)
        .unwrap();
    let mut on_b = ws(b.addr, &name);
    cluster.await_subscribers(0, &name, 1);
    publish_http(a.addr, &name, "before");
    expect_text(&mut on_b, "before");

    cluster.move_slot(cluster.slot(&format!("fanout:{name}")), 0, 1);
    // B's subscription follows the slot to node 1, and leaves node 0.
    cluster.await_subscribers(1, &name, 1);
    cluster.await_shard_channels(0, &[]);
    // A's publisher, told MOVED, reads the map again and sends it to node 1. What A published
    // before B had subscribed again is lost, as pub/sub is: publish until one gets through,
    // then exactly once and in order.
    on_b.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut through = None;
    for i in 0..100 {
        publish_http(a.addr, &name, &format!("try {i}"));
        if let Some(f) = read_frame_or_timeout(&mut on_b) {
            through = Some(String::from_utf8(f.payload).unwrap());
            break;
        }
    }
    let through = through.expect("nothing reached B after the slot moved");
    on_b.set_read_timeout(Some(TIMEOUT)).unwrap();
    publish_http(a.addr, &name, "after");
    let mut last: u32 = through.strip_prefix("try ").unwrap().parse().unwrap();
    loop {
        let f = read_frame(&mut on_b);
        let text = String::from_utf8(f.payload).unwrap();
        if text == "after" {
            break;
        }
        let i: u32 = text.strip_prefix("try ").unwrap().parse().unwrap();
        assert!(i > last, "{text} after try {last}");
        last = i;
    }
    assert_eq!(metric(a.addr, "fanout_backplane_dropped_total"), 0);
    assert_eq!(metric(b.addr, "fanout_backplane_up"), 1);
}
