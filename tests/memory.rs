//! `--max-input-memory`: partly received input (messages, request heads, publish bodies) of all
//! connections together is bounded; the connection that would take it over is turned away with
//! 1013 or 503, and everyone else carries on.

mod common;

use std::io::Write;

use common::*;

const BUDGET: usize = 64 << 10;
const GAUGE: &str = "fanout_input_memory_bytes";

/// The first `part` bytes of a masked binary frame of `len` bytes filled with `fill`.
fn partial_frame(len: usize, part: usize, fill: u8) -> Vec<u8> {
    let whole = frame(true, 2, &vec![fill; len], true);
    let header = whole.len() - len;
    whole[..header + part].to_vec()
}

#[test]
fn a_partial_message_over_the_budget_is_closed_with_1013_and_others_carry_on() {
    let server = TestServer::start(|c| c.max_input_memory = BUDGET);
    let mut reader = ws(server.addr, "room");
    let mut a = ws(server.addr, "room");
    let mut b = ws(server.addr, "room");

    // A holds 16 KiB of a 20 KiB message: within the budget (its buffer is at most twice that).
    let whole_a = frame(true, 2, &[b'a'; 20 << 10], true);
    let split = whole_a.len() - (4 << 10);
    a.write_all(&whole_a[..split]).unwrap();
    await_metric(server.addr, GAUGE, |v| v >= 16 << 10);

    // B's 50 KiB of a 60 KiB message takes the total over 64 KiB: B, and only B, is closed.
    b.write_all(&partial_frame(60 << 10, 50 << 10, b'b'))
        .unwrap();
    let f = read_frame(&mut b);
    assert_eq!(
        (f.opcode, f.close_code(), f.close_reason()),
        (8, 1013, "server busy: input memory full, try again later")
    );
    // B's buffer is given back at once; A's is still there.
    let left = await_metric(server.addr, GAUGE, |v| v < 32 << 10);
    assert!(
        left >= 16 << 10,
        "A's partial message is still held: {left}"
    );

    // A finishes its message and the reader gets all of it.
    a.write_all(&whole_a[split..]).unwrap();
    let got = read_frame(&mut reader);
    assert_eq!((got.opcode, got.payload.len()), (2, 20 << 10));
    assert!(got.payload.iter().all(|&x| x == b'a'));
    await_metric(server.addr, GAUGE, |v| v == 0);
    assert_eq!(metric(server.addr, "fanout_input_memory_refusals_total"), 1);
    assert_eq!(
        metric(server.addr, "fanout_close_frames_sent_total{code=\"1013\"}"),
        1
    );
}

#[test]
fn a_publish_body_over_the_budget_gets_503_and_the_budget_is_freed() {
    let server = TestServer::start(|c| c.max_input_memory = BUDGET);
    let mut a = ws(server.addr, "room");
    a.write_all(&partial_frame(40 << 10, 30 << 10, b'a'))
        .unwrap();
    await_metric(server.addr, GAUGE, |v| v >= 30 << 10);

    // 40 KiB of a 60 KiB body on top of A's 30 KiB: refused before the body is complete.
    let request = publish_request("room", "text/plain", &[b'x'; 60 << 10], "");
    let mut p = connect(server.addr);
    p.write_all(&request[..request.len() - (20 << 10)]).unwrap();
    let (status, head, body) = read_response(&mut p);
    assert_eq!(status, 503);
    for header in ["Retry-After: 1", "Connection: close"] {
        assert!(head.lines().any(|l| l == header), "{header} in {head}");
    }
    assert_eq!(
        body,
        "{\"error\":\"server busy: input memory full, try again later\"}\n"
    );
    await_metric(server.addr, GAUGE, |v| v < 64 << 10);
    let refused = "fanout_publish_requests_total{status=\"503\"}";
    assert_eq!(metric(server.addr, refused), 1);

    // A small publish still goes through, and A's connection was never disturbed.
    let (status, _, body) = http(
        server.addr,
        &publish_request("room", "text/plain", b"hi", "Connection: close\r\n"),
    );
    assert_eq!(
        (status, body.as_str()),
        (200, r#"{"channel":"room","subscribers":1}"#)
    );
    let f = read_frame(&mut a);
    assert_eq!((f.opcode, f.payload.as_slice()), (1, &b"hi"[..]));
}

#[test]
fn an_idle_keep_alive_connection_holds_no_input_memory() {
    let server = TestServer::start(|_| {});
    let mut p = buffered(connect(server.addr));
    p.get_mut()
        .write_all(&publish_request("room", "text/plain", b"hi", ""))
        .unwrap();
    let (status, _, body) = read_one_response(&mut p);
    assert_eq!(
        (status, body.as_slice()),
        (200, &br#"{"channel":"room","subscribers":0}"#[..])
    );
    // Still connected, answered, and nothing of its request is kept.
    assert_eq!(
        metric(server.addr, "fanout_connections"),
        2,
        "p and the scrape"
    );
    assert_eq!(metric(server.addr, GAUGE), 0);
}

#[test]
fn a_server_close_gives_back_the_input_at_once() {
    let server = TestServer::start(|c| {
        c.max_input_memory = BUDGET;
        c.idle_timeout = std::time::Duration::from_millis(300);
        c.close_timeout = std::time::Duration::from_secs(10);
    });
    let mut s = ws(server.addr, "room");
    s.write_all(&partial_frame(50 << 10, 40 << 10, b's'))
        .unwrap();
    await_metric(server.addr, GAUGE, |v| v >= 40 << 10);
    // Then silence: the idle timeout closes it. Its partial message is dropped with the close,
    // and the budget is given back then, not when the peer answers or the close times out.
    let f = read_frame(&mut s);
    assert_eq!((f.close_code(), f.close_reason()), (1001, "idle timeout"));
    assert_eq!(metric(server.addr, GAUGE), 0);
    // So a newcomer's 30 KiB fit.
    let mut t = ws(server.addr, "room");
    t.write_all(&partial_frame(40 << 10, 30 << 10, b't'))
        .unwrap();
    await_metric(server.addr, GAUGE, |v| v >= 30 << 10);
    assert_eq!(metric(server.addr, "fanout_input_memory_refusals_total"), 0);
}

#[test]
fn the_start_of_a_next_request_does_not_keep_a_big_buffer() {
    let server = TestServer::start(|_| {});
    let mut p = buffered(connect(server.addr));
    let mut requests = publish_request("room", "application/octet-stream", &[1; 200 << 10], "");
    requests.extend_from_slice(b"GET /hea"); // the first bytes of the next request
    p.get_mut().write_all(&requests).unwrap();
    let (status, _, _) = read_one_response(&mut p);
    assert_eq!(status, 200);
    // Answered, so its 200 KiB body is done with; only the 8 bytes wait, in a small buffer.
    let held = metric(server.addr, GAUGE);
    assert!((8..1024).contains(&held), "{held}");
}
