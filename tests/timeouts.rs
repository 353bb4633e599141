//! Heartbeat: the server pings on schedule and closes a connection that stays silent.

mod common;

use std::io::Write;
use std::time::Duration;

use common::*;

#[test]
fn silent_peer_is_pinged_then_closed_1001() {
    let server = TestServer::start(|c| {
        c.ping_interval = Duration::from_millis(100);
        c.idle_timeout = Duration::from_millis(350);
    });
    let mut s = ws(server.addr, "room");
    let mut pings = 0;
    let close = loop {
        let f = read_frame(&mut s);
        match f.opcode {
            9 => pings += 1,
            8 => break f,
            op => panic!("unexpected opcode {op}"),
        }
    };
    assert!(
        pings >= 2,
        "pinged every 100 ms before the 350 ms idle timeout, got {pings}"
    );
    assert_eq!(
        (close.close_code(), close.close_reason()),
        (1001, "idle timeout")
    );
    s.write_all(&frame(true, 8, &1001u16.to_be_bytes(), true))
        .unwrap();
    expect_eof(&mut s);
}

#[test]
fn answering_pings_keeps_the_connection_open() {
    let server = TestServer::start(|c| {
        c.ping_interval = Duration::from_millis(50);
        c.idle_timeout = Duration::from_millis(200);
        c.echo = true;
    });
    let mut s = ws(server.addr, "room");
    // Ten pings answered span 500 ms, well past the idle timeout.
    for _ in 0..10 {
        let f = read_frame(&mut s);
        assert_eq!(f.opcode, 9);
        s.write_all(&frame(true, 10, &f.payload, true)).unwrap();
    }
    s.write_all(&text("alive")).unwrap();
    loop {
        let f = read_frame(&mut s);
        if f.opcode == 1 {
            assert_eq!(f.payload, b"alive");
            break;
        }
        assert_eq!(f.opcode, 9);
    }
}
