//! The close handshake and protocol violations: the exact close code and reason, then the TCP
//! connection closes, and nobody else is disturbed.

mod common;

use std::io::Write;

use common::*;

#[test]
fn client_close_is_echoed_then_tcp_closes() {
    let server = TestServer::start(|_| {});
    let mut s = ws(server.addr, "room");
    let mut payload = 1000u16.to_be_bytes().to_vec();
    payload.extend(b"bye");
    s.write_all(&frame(true, 8, &payload, true)).unwrap();
    let f = read_frame(&mut s);
    assert_eq!(
        (f.fin, f.opcode, f.payload.clone()),
        (true, 8, vec![0x03, 0xe8])
    );
    expect_eof(&mut s);
}

#[test]
fn close_without_code_is_answered_with_1000() {
    let server = TestServer::start(|_| {});
    let mut s = ws(server.addr, "room");
    s.write_all(&frame(true, 8, b"", true)).unwrap();
    assert_eq!(read_frame(&mut s).close_code(), 1000);
    expect_eof(&mut s);
}

#[test]
fn tungstenite_close_handshake_completes() {
    let server = TestServer::start(|_| {});
    let mut c = tungstenite_client(&server.url(), "room");
    c.close(None).unwrap();
    loop {
        match c.read() {
            Ok(_) => continue,
            Err(tungstenite::Error::ConnectionClosed) => break,
            Err(e) => panic!("unexpected error {e}"),
        }
    }
}

/// Sends `bytes` after the handshake and asserts the close code and reason, then EOF.
fn violation(bytes: &[u8], code: u16, reason: &str) {
    let server = TestServer::start(|c| c.max_message = 1024);
    let mut bystander = ws(server.addr, "room");
    let mut listener = ws(server.addr, "room");
    let mut s = ws(server.addr, "room");
    s.write_all(bytes).unwrap();
    let f = read_frame(&mut s);
    assert_eq!((f.close_code(), f.close_reason()), (code, reason));
    expect_eof(&mut s);
    // Other connections carry on.
    bystander.write_all(&text("still fine")).unwrap();
    assert_eq!(read_frame(&mut listener).payload, b"still fine");
}

#[test]
fn unmasked_frame_closes_1002() {
    violation(
        &frame(true, 1, b"x", false),
        1002,
        "client frame not masked",
    );
}

#[test]
fn reserved_bits_close_1002() {
    let mut f = text("x");
    f[0] |= 0x20;
    violation(&f, 1002, "reserved bits set");
}

#[test]
fn reserved_opcode_closes_1002() {
    violation(&frame(true, 0xB, b"", true), 1002, "reserved opcode");
}

#[test]
fn oversized_control_frame_closes_1002() {
    violation(
        &frame(true, 9, &[0; 126], true),
        1002,
        "control frame too long",
    );
}

#[test]
fn fragmented_control_frame_closes_1002() {
    violation(
        &frame(false, 9, b"", true),
        1002,
        "fragmented control frame",
    );
}

#[test]
fn continuation_without_start_closes_1002() {
    violation(
        &frame(true, 0, b"x", true),
        1002,
        "unexpected continuation frame",
    );
}

#[test]
fn new_message_inside_fragmented_closes_1002() {
    let mut b = frame(false, 1, b"a", true);
    b.extend(frame(true, 1, b"b", true));
    violation(&b, 1002, "expected continuation frame");
}

#[test]
fn invalid_utf8_closes_1007() {
    violation(
        &frame(true, 1, b"\xce\xba\xe1\xbd\xb9\xcf\x83\xed\xa0\x80", true),
        1007,
        "invalid utf-8",
    );
}

#[test]
fn invalid_utf8_across_fragments_closes_1007_without_waiting_for_the_end() {
    let mut b = frame(false, 1, b"ok\xf0\x90", true);
    b.extend(frame(false, 0, b"\x28", true)); // not a continuation byte
    violation(&b, 1007, "invalid utf-8");
}

#[test]
fn bad_close_codes_close_1002() {
    for code in [999u16, 1004, 1005, 1006, 1015, 1016, 2999, 5000] {
        violation(
            &frame(true, 8, &code.to_be_bytes(), true),
            1002,
            "invalid close code",
        );
    }
    violation(&frame(true, 8, &[3], true), 1002, "invalid close payload");
}

#[test]
fn close_reason_not_utf8_closes_1007() {
    violation(
        &frame(true, 8, b"\x03\xe8\xff\xfe", true),
        1007,
        "invalid utf-8",
    );
}

#[test]
fn oversized_message_closes_1009_before_it_is_sent() {
    // Only the header of a 1 MiB frame is sent: the length alone triggers the close.
    let mut header = vec![0x82, 0xff];
    header.extend((1u64 << 20).to_be_bytes());
    header.extend([1, 2, 3, 4]);
    violation(&header, 1009, "message too big");
    // Fragments that add up past the limit.
    let mut b = frame(false, 2, &[0; 1000], true);
    b.extend(frame(true, 0, &[0; 100], true));
    violation(&b, 1009, "message too big");
}
