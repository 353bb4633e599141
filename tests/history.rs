//! `--history N`: a late joiner first gets the channel's last N messages, in order, then live
//! ones, with no gap or duplicate at the seam.

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use common::*;
use fanout::Message;
use fanout::directory::{FRAME_OVERHEAD, channel_overhead};

fn seq(payload: &[u8]) -> u32 {
    u32::from_be_bytes(payload.try_into().unwrap())
}

#[test]
fn late_joiner_gets_the_last_n_then_live_messages() {
    let server = TestServer::start(|c| c.history = 5);
    // Published before anyone joined: kept anyway, since the channel has history.
    for i in 1..=8u32 {
        server
            .handle
            .publish("feed", Message::Binary(i.to_be_bytes().to_vec()))
            .unwrap();
    }
    await_channel(
        server.addr,
        "feed",
        r#"{"name":"feed","subscribers":0,"history":5}"#,
    );
    let mut late = ws(server.addr, "feed");
    for i in 4..=8u32 {
        assert_eq!(seq(&read_frame(&mut late).payload), i);
    }
    server
        .handle
        .publish("feed", Message::Binary(9u32.to_be_bytes().to_vec()))
        .unwrap();
    assert_eq!(seq(&read_frame(&mut late).payload), 9);
    let (_, _, body) = get(server.addr, "/channels/feed");
    assert_eq!(body, r#"{"name":"feed","subscribers":1,"history":5}"#);
}

#[test]
fn no_gap_or_duplicate_at_the_seam_under_concurrent_publishing() {
    const TOTAL: u32 = 20_000;
    const HISTORY: usize = 50;
    const JOINERS: u32 = 8;
    let server = TestServer::start(|c| c.history = HISTORY);
    let handle = server.handle.clone();
    // Every 2 000 messages the publisher calls in a joiner and keeps publishing while it
    // connects; it waits for the joiner's 101 only 100 messages later, so every join happens
    // mid-stream and races with publishing.
    let (join_tx, join_rx) = std::sync::mpsc::channel();
    let (joined_tx, joined_rx) = std::sync::mpsc::channel::<()>();
    let publisher = std::thread::spawn(move || {
        for i in 0..TOTAL {
            handle
                .publish("feed", Message::Binary(i.to_be_bytes().to_vec()))
                .unwrap();
            if i % 2_000 == 1_999 && i / 2_000 < JOINERS {
                join_tx.send(()).unwrap();
            }
            if i % 2_000 == 99 && i > 2_000 && (i - 100) / 2_000 < JOINERS {
                joined_rx.recv().unwrap();
            }
        }
    });
    let mut joiners = Vec::new();
    for _ in 0..JOINERS {
        join_rx.recv().unwrap();
        let mut c = ws(server.addr, "feed");
        joined_tx.send(()).unwrap();
        joiners.push(std::thread::spawn(move || {
            let first = seq(&read_frame(&mut c).payload);
            let mut last = first;
            while last != TOTAL - 1 {
                let next = seq(&read_frame(&mut c).payload);
                assert_eq!(next, last + 1, "gap or duplicate after {last}");
                last = next;
            }
            first
        }));
    }
    publisher.join().unwrap();
    let firsts: Vec<u32> = joiners.into_iter().map(|j| j.join().unwrap()).collect();
    // Every joiner came in mid-stream, so it started with history and went on live: an
    // unbroken run from there to the end proves the seam.
    assert!(
        firsts.iter().all(|&f| f > 0 && f < TOTAL - HISTORY as u32),
        "{firsts:?}"
    );
}

#[test]
fn history_without_subscribers_is_forgotten_after_the_ttl() {
    let server = TestServer::start(|c| {
        c.history = 2;
        c.history_ttl = Duration::from_millis(300);
    });
    let started = Instant::now();
    server.handle.publish("gone", "x").unwrap();
    await_channel(
        server.addr,
        "gone",
        r#"{"name":"gone","subscribers":0,"history":1}"#,
    );
    // Await the expiry (bounded); it must not happen before the TTL.
    loop {
        let (status, _, _) = get(server.addr, "/channels/gone");
        if status == 404 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "never expired");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[test]
fn a_joiner_gets_only_the_newest_history_that_fits_in_half_the_backpressure_cap() {
    const CAP: usize = 2000;
    const SIZE: usize = 300; // a 304-byte frame: 4-byte header, no mask
    let server = TestServer::start(|c| {
        c.history = 5;
        c.max_backpressure = CAP;
    });
    let message = |i: u8| Message::Binary(vec![i; SIZE]);
    for i in 1..=5 {
        server.handle.publish("feed", message(i)).unwrap();
    }
    await_channel(
        server.addr,
        "feed",
        r#"{"name":"feed","subscribers":0,"history":5}"#,
    );
    let mut late = connect(server.addr);
    late.write_all(upgrade_request("Sec-WebSocket-Protocol: feed\r\n").as_bytes())
        .unwrap();
    let head = read_head(&mut late);
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    // What the 101 leaves of half the cap holds two frames, so the three oldest are skipped.
    assert_eq!((CAP / 2 - head.len()) / (SIZE + 4), 2, "{head}");
    for i in [4, 5] {
        assert_eq!(read_frame(&mut late).payload, vec![i; SIZE]);
    }
    // Still subscribed, not closed as a slow consumer: the next live message arrives next.
    server.handle.publish("feed", message(6)).unwrap();
    assert_eq!(read_frame(&mut late).payload, vec![6; SIZE]);
    let (_, _, metrics) = get(server.addr, "/metrics");
    for line in [
        "fanout_history_sent_total 2",
        "fanout_history_skipped_total 3",
        "fanout_slow_consumer_closes_total 0",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in\n{metrics}");
    }
}

#[test]
fn history_memory_keeps_the_newest_frames_of_all_channels_under_the_budget() {
    // 100-byte messages are 102-byte frames: the budget holds three of them and the channel.
    let held = channel_overhead("feed") + 3 * (102 + FRAME_OVERHEAD);
    let server = TestServer::start(|c| {
        c.history = 10;
        c.max_history_memory = held + 50;
    });
    for i in 1..=5u8 {
        server
            .handle
            .publish("feed", Message::Binary(vec![i; 100]))
            .unwrap();
    }
    await_channel(
        server.addr,
        "feed",
        r#"{"name":"feed","subscribers":0,"history":3}"#,
    );
    let mut late = ws(server.addr, "feed");
    for i in 3..=5u8 {
        assert_eq!(read_frame(&mut late).payload, vec![i; 100]);
    }
    let (_, _, body) = get(server.addr, "/channels/feed");
    assert_eq!(body, r#"{"name":"feed","subscribers":1,"history":3}"#);
    assert_eq!(metric(server.addr, "fanout_history_bytes"), held as u64);
    assert_eq!(metric(server.addr, "fanout_history_evicted_total"), 2);
}

#[test]
fn a_message_bigger_than_the_history_budget_is_delivered_but_not_kept() {
    let server = TestServer::start(|c| {
        c.history = 2;
        c.max_history_memory = 50;
    });
    let mut sub = ws(server.addr, "feed");
    // Nobody is on "empty": the frame is kept for no one and the channel is forgotten at once.
    server
        .handle
        .publish("empty", Message::Binary(vec![1; 100]))
        .unwrap();
    server
        .handle
        .publish("feed", Message::Binary(vec![2; 100]))
        .unwrap();
    assert_eq!(read_frame(&mut sub).payload, vec![2; 100]);
    let (_, _, body) = get(server.addr, "/channels");
    assert_eq!(body, r#"[{"name":"feed","subscribers":1,"history":0}]"#);
    assert_eq!(metric(server.addr, "fanout_history_evicted_total"), 2);
}
