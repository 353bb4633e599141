//! The upgrade handshake and every refusal, over a real socket: exact statuses and headers,
//! a complete response, then the server closes the connection.

mod common;

use std::io::{Read, Write};

use common::*;
use fanout::proto::handshake::Refusal;

#[test]
fn upgrade_answers_101_with_accept_key_and_selected_channel() {
    let server = TestServer::start(|_| {});
    let mut s = connect(server.addr);
    let req = upgrade_request("Sec-WebSocket-Protocol: room42, other\r\n");
    s.write_all(req.as_bytes()).unwrap();
    assert_eq!(
        read_head(&mut s),
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Protocol: room42\r\n\r\n"
    );
}

#[test]
fn request_split_into_single_bytes_with_a_frame_in_the_same_write_loses_nothing() {
    let server = TestServer::start(|c| c.echo = true);
    let mut s = connect(server.addr);
    let mut bytes = upgrade_request("Sec-WebSocket-Protocol: room\r\n").into_bytes();
    // The first frame follows the request in the same segment.
    bytes.extend(text("first"));
    let (head, rest) = bytes.split_at(bytes.len() - 20);
    for b in head {
        s.write_all(&[*b]).unwrap();
    }
    s.write_all(rest).unwrap();
    assert!(read_head(&mut s).starts_with("HTTP/1.1 101 "));
    let f = read_frame(&mut s);
    assert_eq!((f.opcode, f.payload.as_slice()), (1, &b"first"[..]));
}

#[test]
fn default_channel_is_used_but_not_echoed_as_a_subprotocol() {
    let server = TestServer::start(|c| {
        c.default_channel = Some("lobby".into());
        c.echo = true;
    });
    let mut s = connect(server.addr);
    s.write_all(upgrade_request("").as_bytes()).unwrap();
    let head = read_head(&mut s);
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    assert!(!head.contains("Sec-WebSocket-Protocol"), "{head}");
    // It really is on "lobby": a message published there arrives.
    server.handle.publish("lobby", "hi").unwrap();
    assert_eq!(read_frame(&mut s).payload, b"hi");
}

#[test]
fn browser_permessage_deflate_offer_is_ignored() {
    let server = TestServer::start(|_| {});
    let mut s = connect(server.addr);
    let req = upgrade_request(
        "Sec-WebSocket-Protocol: room\r\nOrigin: http://localhost\r\n\
         Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n",
    );
    s.write_all(req.as_bytes()).unwrap();
    let head = read_head(&mut s);
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    assert!(!head.contains("Extensions"), "{head}");
}

/// Sends `request` and asserts the exact status, the reason as the body, any required header,
/// a complete response, and that the server closes the connection after it.
fn refused(server: &TestServer, request: &str, status: u16, refusal: Refusal, header: &str) {
    let (got, head, body) = http(server.addr, request.as_bytes());
    assert_eq!(
        (got, refusal.status),
        (status, status),
        "{head}\r\n\r\n{body}"
    );
    assert_eq!(body, format!("{{\"error\":{:?}}}\n", refusal.reason));
    assert!(
        head.contains("\r\nContent-Type: application/json"),
        "{head}"
    );
    assert!(head.contains("\r\nConnection: close"), "{head}");
    assert!(
        head.contains(&format!("\r\nContent-Length: {}", body.len())),
        "{head}"
    );
    assert!(head.contains(header), "{header:?} not in {head}");
}

#[test]
fn every_refusal_has_its_status() {
    let server = TestServer::start(|c| c.allowed_origins = vec!["https://ok.example".into()]);
    let ch = "Sec-WebSocket-Protocol: room\r\n";
    let up = |extra: &str| upgrade_request(&format!("{ch}{extra}"));
    let long = format!("Sec-WebSocket-Protocol: {}\r\n", "x".repeat(65));
    let cases: &[(String, u16, Refusal, &str)] = &[
        (upgrade_request(""), 400, Refusal::NO_CHANNEL, ""),
        (
            upgrade_request("Sec-WebSocket-Protocol: bad name\r\n"),
            400,
            Refusal::INVALID_CHANNEL,
            "",
        ),
        (
            upgrade_request("Sec-WebSocket-Protocol: a/b, ok\r\n"),
            400,
            Refusal::INVALID_CHANNEL,
            "",
        ),
        (upgrade_request(&long), 400, Refusal::INVALID_CHANNEL, ""),
        (
            up("").replacen("GET", "POST", 1),
            405,
            Refusal::METHOD_NOT_ALLOWED,
            "\r\nAllow: GET",
        ),
        (
            up("").replacen("HTTP/1.1", "HTTP/1.0", 1),
            400,
            Refusal::HTTP_VERSION,
            "",
        ),
        (
            up("").replacen("Host: localhost\r\n", "", 1),
            400,
            Refusal::MISSING_HOST,
            "",
        ),
        (
            up("").replacen("Upgrade: websocket", "Upgrade: h2c", 1),
            400,
            Refusal::UPGRADE_HEADER,
            "",
        ),
        (
            up("").replacen("Connection: Upgrade", "Connection: keep-alive", 1),
            400,
            Refusal::CONNECTION_HEADER,
            "",
        ),
        (
            up("").replacen("dGhlIHNhbXBsZSBub25jZQ==", "c2hvcnQ=", 1),
            400,
            Refusal::INVALID_KEY,
            "",
        ),
        (
            up("").replacen("Version: 13", "Version: 8", 1),
            426,
            Refusal::WS_VERSION,
            "\r\nSec-WebSocket-Version: 13",
        ),
        (
            up("Origin: https://evil.example\r\n"),
            403,
            Refusal::ORIGIN_NOT_ALLOWED,
            "",
        ),
        (
            up(&format!("X-Big: {}\r\n", "a".repeat(9000))),
            431,
            Refusal::HEAD_TOO_LARGE,
            "",
        ),
        (
            "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n".into(),
            404,
            Refusal::NOT_FOUND,
            "",
        ),
        (
            "\x16\x03\x01garbage\r\n\r\n".into(),
            400,
            Refusal::MALFORMED,
            "",
        ),
    ];
    for (request, status, refusal, header) in cases {
        refused(&server, request, *status, *refusal, header);
    }
    // An allowed origin (compared case-insensitively) passes.
    let mut s = connect(server.addr);
    s.write_all(up("Origin: https://OK.example\r\n").as_bytes())
        .unwrap();
    assert!(read_head(&mut s).starts_with("HTTP/1.1 101 "));
}

#[test]
fn healthz_answers_ok() {
    let server = TestServer::start(|_| {});
    let (status, head, body) = get(server.addr, "/healthz");
    assert_eq!(status, 200, "{head}");
    assert_eq!(body, "ok\n");
    assert!(head.contains("\r\nContent-Type: text/plain"), "{head}");
}

#[test]
fn connections_over_the_limit_get_503_and_the_others_are_unaffected() {
    let server = TestServer::start(|c| {
        c.max_connections = Some(2);
        c.echo = true;
    });
    let mut a = ws(server.addr, "room");
    let _b = ws(server.addr, "room");
    let (status, _, body) = http(
        server.addr,
        upgrade_request("Sec-WebSocket-Protocol: room\r\n").as_bytes(),
    );
    assert_eq!(status, 503);
    assert!(body.contains("connection limit"), "{body}");
    a.write_all(&text("still here")).unwrap();
    assert_eq!(read_frame(&mut a).payload, b"still here");
}

#[test]
fn unfinished_handshake_times_out_with_408() {
    let server = TestServer::start(|c| c.handshake_timeout = std::time::Duration::from_millis(200));
    let mut s = connect(server.addr);
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap();
    let (status, _, body) = read_response(&mut s);
    assert_eq!(status, 408);
    assert_eq!(body, "{\"error\":\"handshake timed out\"}\n");
}

#[test]
fn a_silent_connection_times_out_too() {
    let server = TestServer::start(|c| c.handshake_timeout = std::time::Duration::from_millis(100));
    let mut s = connect(server.addr);
    let mut all = Vec::new();
    s.read_to_end(&mut all).unwrap();
    assert!(
        all.starts_with(b"HTTP/1.1 408 "),
        "{:?}",
        String::from_utf8_lossy(&all)
    );
}
