//! `--threads 4`: connections spread over four loops by the kernel, and every message reaches
//! every subscriber on every loop exactly once, in each publisher's order; history with no
//! gap or duplicate at the seam whichever loop a joiner lands on; a slow consumer on one loop
//! delays no other; shutdown closes every loop's connections; metrics add the loops up.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use common::*;
use fanout::config::Threads;

const LOOPS: usize = 4;

fn server(configure: impl FnOnce(&mut fanout::Config)) -> TestServer {
    TestServer::start(|c| {
        c.threads = Threads::Count(LOOPS);
        configure(c);
    })
}

/// `n` subscribers of `channel`; asserts the kernel spread them over more than one loop.
fn subscribers(server: &TestServer, channel: &str, n: usize) -> Vec<TcpStream> {
    let subs: Vec<_> = (0..n).map(|_| ws(server.addr, channel)).collect();
    let (_, _, body) = get(server.addr, "/metrics");
    let busy = body
        .lines()
        .filter(|l| l.starts_with("fanout_loop_connections{"))
        .filter(|l| !l.ends_with(" 0"))
        .count();
    assert!(busy > 1, "connections on one loop only:\n{body}");
    subs
}

/// A numbered message: publisher `p`, sequence `i`.
fn numbered(p: u8, i: u16) -> Vec<u8> {
    let [hi, lo] = i.to_be_bytes();
    vec![p, hi, lo]
}

#[test]
fn every_subscriber_on_every_loop_gets_every_message_once_in_each_publishers_order() {
    let server = server(|_| {});
    let mut subs = subscribers(&server, "room", 40);
    let mut pubs: Vec<_> = (0..3).map(|_| ws(server.addr, "room")).collect();
    // Three publishers (on whatever loops they landed), each 200 messages, interleaved.
    let writers: Vec<_> = pubs
        .iter_mut()
        .enumerate()
        .map(|(p, s)| {
            let mut s = s.try_clone().unwrap();
            std::thread::spawn(move || {
                for i in 0..200 {
                    s.write_all(&frame(true, 2, &numbered(p as u8, i), true))
                        .unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    for s in &mut subs {
        let mut next = [0u16; 3];
        for _ in 0..600 {
            let m = read_frame(s).payload;
            let (p, i) = (m[0] as usize, u16::from_be_bytes([m[1], m[2]]));
            assert_eq!(i, next[p], "publisher {p}: in order, no gap, no duplicate");
            next[p] += 1;
        }
    }
    // Each publisher got the other two's 400, nothing of its own.
    for (p, s) in pubs.iter_mut().enumerate() {
        for _ in 0..400 {
            assert_ne!(read_frame(s).payload[0] as usize, p);
        }
    }
    await_metric(server.addr, "fanout_deliveries_total", |n| {
        n == 600 * 40 + 3 * 400
    });
    assert!(metric(server.addr, "fanout_handoffs_total") > 0);
}

#[test]
fn http_and_handle_publishes_reach_every_loop() {
    let server = server(|_| {});
    let mut subs = subscribers(&server, "news", 20);
    let (status, _, body) = http(
        server.addr,
        &publish_request("news", "text/plain", b"from http", "Connection: close\r\n"),
    );
    assert_eq!(
        (status, body.as_str()),
        (200, r#"{"channel":"news","subscribers":20}"#)
    );
    server.handle.publish("news", "from handle").unwrap();
    // (Two publishers: each one's order is kept, not the order between them.)
    for s in &mut subs {
        let mut got = [read_frame(s).payload, read_frame(s).payload];
        got.sort();
        assert_eq!(got, [b"from handle".to_vec(), b"from http".to_vec()]);
    }
}

#[test]
fn joiners_on_any_loop_get_history_then_live_with_no_gap_or_duplicate() {
    let server = server(|c| c.history = 1000);
    let mut publisher = ws(server.addr, "feed");
    let _anchor = subscribers(&server, "feed", 12); // the channel exists on several loops
    // The publisher sends 2 000 numbered messages while 30 joiners arrive, on every loop.
    let writer = std::thread::spawn(move || {
        for i in 0..2000u16 {
            publisher
                .write_all(&frame(true, 2, &numbered(0, i), true))
                .unwrap();
            if i % 100 == 0 {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    });
    let mut joiners = Vec::new();
    for _ in 0..30 {
        joiners.push(ws(server.addr, "feed"));
        std::thread::sleep(Duration::from_millis(1));
    }
    writer.join().unwrap();
    // Each joiner sees a run of consecutive numbers (history, then live) ending at 1999.
    for (j, s) in joiners.iter_mut().enumerate() {
        let first = u16::from_be_bytes(read_frame(s).payload[1..3].try_into().unwrap());
        for want in first + 1..2000 {
            let got = u16::from_be_bytes(read_frame(s).payload[1..3].try_into().unwrap());
            assert_eq!(got, want, "joiner {j}: from {first}, no gap, no duplicate");
        }
    }
}

#[test]
fn a_slow_consumer_on_one_loop_is_cut_off_while_everyone_else_gets_everything() {
    let server = server(|c| {
        c.max_backpressure = 1 << 20;
        c.socket_send_buffer = 64 << 10;
    });
    let stuck = ws(server.addr, "feed");
    socket2::SockRef::from(&stuck)
        .set_recv_buffer_size(4096)
        .unwrap();
    // Twelve readers that keep up: the publisher goes on only as they report each round of
    // 100 messages read, so they never fall behind; the stuck one falls behind by all of it.
    let (progress, rounds) = std::sync::mpsc::channel();
    let readers: Vec<_> = subscribers(&server, "feed", 12)
        .into_iter()
        .map(|mut s| {
            let progress = progress.clone();
            std::thread::spawn(move || {
                for i in 1..=2000 {
                    assert_eq!(read_frame(&mut s).payload.len(), 2048);
                    if i % 100 == 0 {
                        progress.send(()).unwrap();
                    }
                }
            })
        })
        .collect();
    let message = vec![b'x'; 2048];
    for _ in 0..20 {
        for _ in 0..100 {
            server.handle.publish("feed", message.clone()).unwrap();
        }
        for _ in 0..12 {
            rounds.recv_timeout(TIMEOUT).expect("a reader fell behind");
        }
    }
    for r in readers {
        r.join().unwrap();
    }
    await_metric(server.addr, "fanout_slow_consumer_closes_total", |n| n == 1);
    drop(stuck);
}

#[test]
fn shutdown_closes_every_connection_on_every_loop_with_1001() {
    let server = server(|_| {});
    let mut subs = subscribers(&server, "room", 16);
    server.handle.shutdown().unwrap();
    for s in &mut subs {
        let f = read_frame(s);
        assert_eq!(
            (f.close_code(), f.close_reason()),
            (1001, "server shutting down")
        );
        s.write_all(&frame(true, 8, &1001u16.to_be_bytes(), true))
            .unwrap();
        expect_eof(s);
    }
    server.join();
}

#[test]
fn metrics_add_the_loops_up() {
    let server = server(|_| {});
    let _subs = subscribers(&server, "room", 16);
    // The 16 subscribers and the scrape itself (an earlier scrape may still be closing on its
    // loop: scrape until it is gone, and the loops' reports have caught up).
    let deadline = std::time::Instant::now() + TIMEOUT;
    let sample = |body: &str, prefix: &str| -> Vec<u64> {
        body.lines()
            .filter(|l| l.starts_with(prefix))
            .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
            .collect()
    };
    let body = loop {
        let (_, _, body) = get(server.addr, "/metrics");
        let per_loop = sample(&body, "fanout_loop_connections{");
        assert_eq!(per_loop.len(), LOOPS);
        if sample(&body, "fanout_connections ")[0] == 17 && per_loop.iter().sum::<u64>() == 17 {
            break body;
        }
        assert!(std::time::Instant::now() < deadline, "{body}");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(sample(&body, "fanout_loops ")[0], LOOPS as u64);
    assert_eq!(sample(&body, "fanout_upgrades_total ")[0], 16);
    let (_, _, body) = get(server.addr, "/channels/room");
    assert_eq!(body, r#"{"name":"room","subscribers":16,"history":0}"#);
}
