//! Slow consumers: a subscriber that stops reading is cut off (or skipped) once its queue
//! passes `--max-backpressure`, while the publisher and a fast reader are unaffected.

mod common;

use std::io::Write;
use std::sync::mpsc;
use std::time::Duration;

use common::*;
use fanout::config::SlowConsumer;

const MESSAGES: u32 = 2048;
const SIZE: usize = 16 * 1024; // 32 MiB in all: far past the cap plus the kernel's buffers

fn message(i: u32) -> Vec<u8> {
    let mut m = vec![0u8; SIZE];
    m[..4].copy_from_slice(&i.to_be_bytes());
    m
}

fn seq(payload: &[u8]) -> u32 {
    u32::from_be_bytes(payload[..4].try_into().unwrap())
}

/// Starts a reader thread that reads `count` messages and reports each sequence number.
fn fast_reader(mut s: std::net::TcpStream, count: u32) -> std::thread::JoinHandle<Vec<u32>> {
    std::thread::spawn(move || {
        (0..count)
            .map(|_| seq(&read_frame(&mut s).payload))
            .collect()
    })
}

#[test]
fn stalled_reader_is_closed_1008_while_a_fast_reader_gets_everything() {
    let server = TestServer::start(|c| {
        c.max_backpressure = 256 * 1024;
        c.close_timeout = Duration::from_secs(30); // room for the stalled reader to drain later
        // The publisher writes as fast as it can, faster than this test's reader reads; with
        // so small a cap the kernel's autotuned buffer is what lets the reader keep up.
        c.socket_send_buffer = 0;
    });
    let mut publisher = ws(server.addr, "feed");
    let mut stalled = ws(server.addr, "feed");
    let fast = fast_reader(ws(server.addr, "feed"), MESSAGES);

    for i in 0..MESSAGES {
        publisher
            .write_all(&frame(true, 2, &message(i), true))
            .unwrap();
    }
    assert_eq!(fast.join().unwrap(), (0..MESSAGES).collect::<Vec<_>>());

    // The stalled reader now drains: an unbroken prefix of the messages, then the close.
    let mut expected = 0;
    let close = loop {
        let f = read_frame(&mut stalled);
        if f.opcode == 8 {
            break f;
        }
        assert_eq!(
            seq(&f.payload),
            expected,
            "messages arrive in order with no gap"
        );
        expected += 1;
    };
    assert!(
        expected < MESSAGES,
        "the stalled reader should have been cut off"
    );
    assert_eq!(
        (close.close_code(), close.close_reason()),
        (1008, "slow consumer")
    );

    // The publisher was never disturbed: it still publishes and is heard.
    let mut late = ws(server.addr, "feed");
    publisher.write_all(&text("after")).unwrap();
    assert_eq!(read_frame(&mut late).payload, b"after");
}

#[test]
fn drop_policy_skips_messages_but_keeps_the_connection() {
    let server = TestServer::start(|c| {
        c.max_backpressure = 256 * 1024;
        c.slow_consumer = SlowConsumer::Drop;
        c.socket_send_buffer = 0; // as above
    });
    let mut publisher = ws(server.addr, "feed");
    let stalled = ws(server.addr, "feed");
    let fast = fast_reader(ws(server.addr, "feed"), MESSAGES);
    for i in 0..MESSAGES {
        publisher
            .write_all(&frame(true, 2, &message(i), true))
            .unwrap();
    }
    assert_eq!(fast.join().unwrap(), (0..MESSAGES).collect::<Vec<_>>());

    // The stalled reader drains in a thread and reports what it sees; markers published one
    // at a time show when it is below the cap again and receiving.
    let (tx, rx) = mpsc::channel();
    let mut reader = stalled;
    let drain = std::thread::spawn(move || {
        let mut seen = Vec::new();
        loop {
            let f = read_frame(&mut reader);
            assert_eq!(f.opcode, 2, "no close frame under the drop policy");
            let s = seq(&f.payload);
            if s >= MESSAGES {
                tx.send(()).unwrap();
                return seen;
            }
            seen.push(s);
        }
    });
    let mut marker = MESSAGES;
    loop {
        publisher
            .write_all(&frame(true, 2, &message(marker), true))
            .unwrap();
        if rx.recv_timeout(Duration::from_millis(50)).is_ok() {
            break;
        }
        marker += 1;
        assert!(
            marker < MESSAGES + 400,
            "the stalled reader never recovered"
        );
    }
    let seen = drain.join().unwrap();
    assert!(
        seen.windows(2).all(|w| w[0] < w[1]),
        "in order, no duplicates"
    );
    assert!((seen.len() as u32) < MESSAGES, "some messages were dropped");
    assert_eq!(
        &seen[..10],
        &(0..10).collect::<Vec<_>>(),
        "the first ones were delivered"
    );
}
