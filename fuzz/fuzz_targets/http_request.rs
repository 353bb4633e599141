//! `handshake::parse` seen as the HTTP API: pipelined requests on one connection, routed.
//!
//! The input is a connection's bytes. Under each policy of `common::policies`, requests are
//! taken from it the way `Server::serve_http` does: parse at `pos`; an API request moves `pos`
//! past its head and its publish body (when all of it is there) and goes on; anything else
//! ends the connection. Checked:
//! - progress: every `Complete((_, n))` has `n > 0`, so the loop ends;
//! - routing invariants (`common::check_http`): a publish's `body_len <= max_message` and its
//!   channel is a valid channel name, the token was sent when one is required, `GET
//!   /channels/{name}` names a valid channel, `is_head`/`is_publish` (which the server applies
//!   to the raw bytes) agree with the parse, and `keep_alive` is false only when asked;
//! - the answers: `http::ok` for the request is a well-formed response whose `Content-Length`
//!   is its body's (and whose `Connection: close` matches `keep_alive`), `strip_body` leaves
//!   exactly its head; a refusal's response is well-formed with and without its body.
//!
//! Then, over the input as text: `http::json_string` must be a JSON string literal that decodes
//! back to it, and `http::percent_encode` must survive `GET /channels?after=` (a valid channel
//! name comes back as `after`; anything else is refused, never misread).
#![no_main]

mod common;

use fanout::proto::Decoded;
use fanout::proto::handshake::{self, Policy, Request};
use fanout::proto::http::{self, HttpRequest};
use libfuzzer_sys::fuzz_target;

/// Checks the `200` the server would build for `req`, with `body` as its body.
fn check_ok(req: &HttpRequest, body: &[u8]) {
    let mut response = http::ok("application/json", body, req.keep_alive);
    let n = common::check_response(&response, 200, true);
    assert_eq!(
        common::contains(&response[..n], b"Connection: close"),
        !req.keep_alive,
        "Connection: close vs keep_alive"
    );
    http::strip_body(&mut response);
    assert_eq!(response.len(), n, "strip_body cut at the wrong place");
}

/// Serves `data` as one connection under `policy`; returns how many requests were answered.
fn serve(data: &[u8], policy: &Policy<'_>) -> usize {
    let mut pos = 0;
    let mut served = 0;
    loop {
        let buf = &data[pos..];
        match handshake::parse(buf, policy) {
            Ok(Decoded::Partial) => return served,
            Err(refusal) => {
                common::check_refusal(&refusal);
                return served;
            }
            Ok(Decoded::Complete((Request::Upgrade(up), n))) => {
                assert!(n > 0 && n <= buf.len());
                assert!(
                    handshake::is_channel(up.channel.as_bytes()),
                    "{:?}",
                    up.channel
                );
                return served;
            }
            Ok(Decoded::Complete((Request::Http(req), n))) => {
                assert!(n > 0 && n <= buf.len(), "n = {n} of {}", buf.len());
                common::check_http(buf, &buf[..n], policy, &req);
                let body_len = match req.route {
                    http::Route::Publish { body_len, .. } => body_len,
                    _ => 0,
                };
                let Some(body) = buf[n..].get(..body_len) else {
                    return served; // the body is still arriving
                };
                check_ok(&req, body);
                served += 1;
                if !req.keep_alive {
                    return served;
                }
                pos += n + body_len;
            }
        }
    }
}

/// Decodes a JSON string literal (RFC 8259 §7) as `json_string` writes it; panics on anything
/// else, including raw control characters.
fn unjson(literal: &str) -> String {
    let inner = literal
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or_else(|| panic!("not quoted: {literal:?}"));
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('"') => out.push('"'),
                Some('\\') => out.push('\\'),
                Some('u') => {
                    let hex: String = chars.by_ref().take(4).collect();
                    let code = u32::from_str_radix(&hex, 16).expect("\\u escape");
                    out.push(char::from_u32(code).expect("\\u escape of a scalar value"));
                }
                other => panic!("unexpected escape {other:?} in {literal:?}"),
            },
            '"' => panic!("unescaped quote in {literal:?}"),
            c if (c as u32) < 0x20 => panic!("raw control character in {literal:?}"),
            c => out.push(c),
        }
    }
    out
}

/// `percent_encode` of a channel name, sent back as `GET /channels?after=`, names it again.
fn check_percent_round_trip(name: &str) {
    let request = format!(
        "GET /channels?limit=1&after={} HTTP/1.1\r\nHost: x\r\n\r\n",
        http::percent_encode(name)
    );
    let answer = handshake::parse(request.as_bytes(), &common::open());
    if handshake::is_channel(name.as_bytes()) {
        let Ok(Decoded::Complete((Request::Http(req), _))) = answer else {
            panic!("{request:?}: {answer:?}");
        };
        let after = Some(name.to_owned());
        assert_eq!(
            req.route,
            http::Route::Channels { after, limit: 1 },
            "{request:?}"
        );
    } else {
        assert!(answer.is_err(), "{request:?}: {answer:?}");
    }
}

fuzz_target!(|data: &[u8]| {
    for policy in &common::policies() {
        serve(data, policy);
    }
    if let Ok(name) = std::str::from_utf8(data) {
        check_percent_round_trip(name);
    }
    let text = String::from_utf8_lossy(data);
    assert_eq!(
        unjson(&http::json_string(&text)),
        text,
        "json_string round trip"
    );
});
