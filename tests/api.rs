//! The HTTP API on the WebSocket port: publishing, channel info, the demo page.

mod common;

use std::io::Write;

use common::*;

#[test]
fn publish_delivers_text_or_binary_by_content_type_and_counts_subscribers() {
    let server = TestServer::start(|_| {});
    let mut subs = [ws(server.addr, "news"), ws(server.addr, "news")];
    let cases: [(&str, &[u8], u8); 4] = [
        ("text/plain", b"hello", 1),
        ("application/json; charset=utf-8", br#"{"v":1}"#, 1),
        ("application/octet-stream", &[0, 159, 146, 150], 2),
        ("image/png", b"\x89PNG", 2),
    ];
    for (content_type, body, opcode) in cases {
        let (status, head, resp) = http(
            server.addr,
            &publish_request("news", content_type, body, "Connection: close\r\n"),
        );
        assert_eq!(status, 200, "{head}");
        assert!(head.contains("Content-Type: application/json"), "{head}");
        assert_eq!(resp, r#"{"channel":"news","subscribers":2}"#);
        for sub in &mut subs {
            let f = read_frame(sub);
            assert_eq!(
                (f.opcode, f.payload.as_slice()),
                (opcode, body),
                "{content_type}"
            );
        }
    }
    let (status, _, resp) = http(
        server.addr,
        &publish_request("empty", "text/plain", b"x", "Connection: close\r\n"),
    );
    assert_eq!(
        (status, resp.as_str()),
        (200, r#"{"channel":"empty","subscribers":0}"#)
    );
}

#[test]
fn pipelined_publishes_on_one_connection_are_answered_in_order() {
    let server = TestServer::start(|_| {});
    let mut sub = ws(server.addr, "feed");
    let mut conn = connect(server.addr);
    let mut batch = Vec::new();
    for i in 0..1000u32 {
        batch.extend(publish_request(
            "feed",
            "application/octet-stream",
            &i.to_be_bytes(),
            "",
        ));
    }
    conn.write_all(&batch).unwrap();
    let mut reader = buffered(conn.try_clone().unwrap());
    for _ in 0..1000 {
        let (status, _, body) = read_one_response(&mut reader);
        assert_eq!(
            (status, body.as_slice()),
            (200, &br#"{"channel":"feed","subscribers":1}"#[..])
        );
    }
    for i in 0..1000u32 {
        assert_eq!(read_frame(&mut sub).payload, i.to_be_bytes());
    }
    // Still open for more.
    conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert_eq!(read_one_response(&mut reader).2, b"ok\n");
}

fn refused(server: &TestServer, request: &[u8], status: u16, error: &str) {
    let (got, head, body) = http(server.addr, request);
    assert_eq!(got, status, "{head}\r\n\r\n{body}");
    assert_eq!(body, format!("{{\"error\":{error:?}}}\n"));
}

#[test]
fn publish_errors_have_their_status() {
    let server = TestServer::start(|c| c.max_message = 16);
    let head_only = |extra: &str| format!("POST /publish/news HTTP/1.1\r\nHost: x\r\n{extra}\r\n");
    refused(
        &server,
        head_only("").as_bytes(),
        411,
        "Content-Length required (chunked bodies are not supported)",
    );
    refused(
        &server,
        head_only("Transfer-Encoding: chunked\r\n").as_bytes(),
        411,
        "Content-Length required (chunked bodies are not supported)",
    );
    // 413 is answered from the head alone: the 17-byte body is never sent.
    refused(
        &server,
        head_only("Content-Length: 17\r\n").as_bytes(),
        413,
        "body larger than --max-message",
    );
    refused(
        &server,
        &publish_request("a/b", "text/plain", b"x", ""),
        400,
        "invalid channel name: must be a token of 1-64 bytes (letters, digits and !#$%&'*+-.^_`|~)",
    );
    refused(
        &server,
        &publish_request("news", "text/plain", b"\xff\xfe", ""),
        400,
        "text body must be UTF-8",
    );
    refused(
        &server,
        b"GET /publish/news HTTP/1.1\r\nHost: x\r\n\r\n",
        405,
        "only POST is supported here",
    );
    refused(
        &server,
        b"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n",
        404,
        "not found",
    );
    refused(
        &server,
        b"DELETE /channels HTTP/1.1\r\nHost: x\r\n\r\n",
        405,
        "only GET and HEAD are supported here",
    );
}

#[test]
fn publish_token_is_required_when_configured() {
    let server = TestServer::start(|c| c.publish_token = Some("s3cret".into()));
    let req = |auth: &str| publish_request("news", "text/plain", b"x", auth);
    refused(
        &server,
        &req(""),
        401,
        "missing Authorization: Bearer token",
    );
    refused(
        &server,
        &req("Authorization: Bearer s3cre\r\n"),
        403,
        "wrong publish token",
    );
    refused(
        &server,
        &req("Authorization: Bearer s3crett\r\n"),
        403,
        "wrong publish token",
    );
    let (status, _, body) = http(
        server.addr,
        &req("Authorization: Bearer s3cret\r\nConnection: close\r\n"),
    );
    assert_eq!(
        (status, body.as_str()),
        (200, r#"{"channel":"news","subscribers":0}"#)
    );
}

#[test]
fn channels_report_subscriber_counts() {
    let server = TestServer::start(|_| {});
    let _a = [ws(server.addr, "alpha"), ws(server.addr, "alpha")];
    let _b = ws(server.addr, "beta");
    let (status, _, body) = get(server.addr, "/channels");
    assert_eq!(status, 200);
    assert_eq!(
        body,
        r#"[{"name":"alpha","subscribers":2,"history":0},{"name":"beta","subscribers":1,"history":0}]"#
    );
    let (_, _, body) = get(server.addr, "/channels/beta");
    assert_eq!(body, r#"{"name":"beta","subscribers":1,"history":0}"#);
    let (status, _, body) = get(server.addr, "/channels/gamma");
    assert_eq!(
        (status, body.as_str()),
        (404, "{\"error\":\"no such channel\"}\n")
    );
}

#[test]
fn root_serves_the_demo_page() {
    let server = TestServer::start(|_| {});
    let (status, head, body) = get(server.addr, "/");
    assert_eq!(status, 200);
    assert!(
        head.contains("Content-Type: text/html; charset=utf-8"),
        "{head}"
    );
    assert!(
        body.to_ascii_lowercase().starts_with("<!doctype html>"),
        "{body}"
    );
}

#[test]
fn a_half_closed_client_still_gets_every_pipelined_answer() {
    let server = TestServer::start(|_| {});
    let mut conn = connect(server.addr);
    let request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    conn.write_all(&request.repeat(2000)).unwrap();
    conn.shutdown(std::net::Shutdown::Write).unwrap();
    let mut reader = buffered(conn);
    for i in 0..2000 {
        let (status, _, body) = read_one_response(&mut reader);
        assert_eq!(
            (status, body.as_slice()),
            (200, &b"ok\n"[..]),
            "response {i}"
        );
    }
    let mut rest = Vec::new();
    std::io::Read::read_to_end(&mut reader, &mut rest).unwrap();
    assert!(rest.is_empty(), "nothing after the last answer");
}

#[test]
fn head_is_answered_like_get_without_the_body() {
    let server = TestServer::start(|_| {});
    let mut s = connect(server.addr);
    // HEAD then GET, pipelined: the HEAD answer must end at its blank line, or the GET answer
    // would not start where it should.
    s.write_all(
        b"HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n\
          GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let head = "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n\
                Content-Length: 3\r\nCache-Control: no-store\r\n";
    assert_eq!(
        read_all(&mut s),
        format!("{head}\r\n{head}Connection: close\r\n\r\nok\n")
    );

    // A refusal to a HEAD request has no body either, also after blank lines before the
    // request line (allowed by RFC 9112 §2.2).
    for (request, length) in [
        (
            &b"HEAD /channels/nobody HTTP/1.1\r\nHost: x\r\n\r\n"[..],
            28,
        ),
        (b"\r\nHEAD /nowhere HTTP/1.1\r\nHost: x\r\n\r\n", 22),
    ] {
        let mut s = connect(server.addr);
        s.write_all(request).unwrap();
        assert_eq!(
            read_all(&mut s),
            format!(
                "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\n\
                 Content-Length: {length}\r\nConnection: close\r\n\r\n"
            )
        );
    }
}

/// Everything the server sends until it closes.
fn read_all(s: &mut std::net::TcpStream) -> String {
    let mut all = String::new();
    std::io::Read::read_to_string(s, &mut all).unwrap();
    all
}
