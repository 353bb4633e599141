//! Unit tests for the upgrade handshake: the RFC accept-key sample, every refusal with its
//! status and reason, incremental parsing, and arbitrary bytes never panicking.

use super::*;
use crate::proto::http::Route;
use crate::proto::request::reason_phrase;
use proptest::prelude::*;
use std::sync::LazyLock;

const KEY: &str = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==";
const HOST: &str = "Host: example.com";
const UPG: &str = "Upgrade: websocket";
const CONN: &str = "Connection: Upgrade";
const VER: &str = "Sec-WebSocket-Version: 13";
const PROTO: &str = "Sec-WebSocket-Protocol: room42";
/// The RFC §1.3 sample key's accept value.
const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";
const MAX: usize = 1024;

static ORIGINS: LazyLock<Vec<String>> =
    LazyLock::new(|| vec!["https://example.com".into(), "http://localhost:8080".into()]);

/// No default channel; only two origins allowed.
fn strict() -> Policy<'static> {
    Policy {
        default_channel: None,
        allowed_origins: &ORIGINS,
        max_header_bytes: MAX,
        max_message: 1024,
        publish_token: None,
        auth: None,
        now_unix: 0,
        admin_token: None,
        deflate: false,
    }
}

/// A default channel; any origin allowed.
fn lenient() -> Policy<'static> {
    Policy {
        default_channel: Some("lobby"),
        allowed_origins: &[],
        max_header_bytes: MAX,
        max_message: 1024,
        publish_token: None,
        auth: None,
        now_unix: 0,
        admin_token: None,
        deflate: false,
    }
}

/// A request head: `lines` joined by CRLF, ended by the blank line.
fn head(lines: &[&str]) -> Vec<u8> {
    format!("{}\r\n\r\n", lines.join("\r\n")).into_bytes()
}

fn valid() -> Vec<u8> {
    head(&["GET /chat HTTP/1.1", HOST, UPG, CONN, KEY, VER, PROTO])
}

fn upgrade(channel: &str, selected_protocol: bool) -> Request {
    Request::Upgrade(Upgrade {
        channel: channel.into(),
        selected_protocol,
        accept: ACCEPT.into(),
        grant: None,
        deflate: None,
    })
}

#[test]
fn rfc_accept_key_sample() {
    assert_eq!(accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="), ACCEPT);
}

#[test]
fn valid_request_gets_exact_101() {
    let buf = valid();
    let Ok(Decoded::Complete((Request::Upgrade(up), n))) = parse(&buf, &strict()) else {
        panic!("not accepted: {:?}", parse(&buf, &strict()));
    };
    assert_eq!(n, buf.len());
    assert_eq!(
        String::from_utf8(upgrade_response(&up)).unwrap(),
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\
             Sec-WebSocket-Protocol: room42\r\n\r\n"
    );
}

#[test]
fn default_channel_is_not_echoed() {
    let buf = head(&["GET / HTTP/1.1", HOST, UPG, CONN, KEY, VER]);
    let Ok(Decoded::Complete((Request::Upgrade(up), _))) = parse(&buf, &lenient()) else {
        panic!("not accepted");
    };
    assert_eq!(
        up,
        Upgrade {
            channel: "lobby".into(),
            selected_protocol: false,
            accept: ACCEPT.into(),
            grant: None,
            deflate: None,
        }
    );
    assert_eq!(
        String::from_utf8(upgrade_response(&up)).unwrap(),
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
    );
}

fn routed(route: Route) -> Request {
    Request::Http(HttpRequest {
        route,
        keep_alive: true,
        head: false,
    })
}

#[test]
fn health_check() {
    let buf = head(&["GET /healthz?probe=1 HTTP/1.1", HOST]);
    assert_eq!(
        parse(&buf, &strict()),
        Ok(Decoded::Complete((routed(Route::Health), buf.len())))
    );
}

/// Without `Upgrade` and `Sec-WebSocket-Key` a request is plain HTTP: `GET /` is the demo
/// page (it used to be a 426), whatever other headers say.
#[test]
fn plain_root_is_the_index() {
    for lines in [
        &["GET / HTTP/1.1", HOST][..],
        &["GET /?x=1 HTTP/1.1", HOST, CONN],
        &[
            "GET / HTTP/1.1",
            HOST,
            VER,
            PROTO,
            "Origin: https://evil.example",
        ],
    ] {
        let buf = head(lines);
        assert_eq!(
            parse(&buf, &strict()),
            Ok(Decoded::Complete((routed(Route::Index), buf.len()))),
            "{lines:?}"
        );
    }
}

/// A plain request's head ends where the upgrade's does; the bytes after it (a publish
/// body, the next pipelined request) are the caller's.
#[test]
fn plain_request_every_split_point() {
    let request = head(&["GET /healthz HTTP/1.1", HOST, "Connection: close"]);
    let mut buf = request.clone();
    buf.extend_from_slice(b"GET / HTTP/1.1\r\n");
    let want = Request::Http(HttpRequest {
        route: Route::Health,
        keep_alive: false,
        head: false,
    });
    for split in 0..=buf.len() {
        let got = parse(&buf[..split], &strict());
        if split < request.len() {
            assert_eq!(got, Ok(Decoded::Partial), "split {split}");
        } else {
            assert_eq!(
                got,
                Ok(Decoded::Complete((want.clone(), request.len()))),
                "split {split}"
            );
        }
    }
}

#[test]
fn refusal_responses_exact() {
    let cases: [(Refusal, &str); 4] = [
        (
            Refusal::WS_VERSION,
            "HTTP/1.1 426 Upgrade Required\r\nContent-Type: application/json\r\n\
                 Content-Length: 50\r\nConnection: close\r\nUpgrade: websocket\r\n\
                 Sec-WebSocket-Version: 13\r\n\r\n{\"error\":\"unsupported WebSocket version, use 13\"}\n",
        ),
        (
            Refusal::METHOD_NOT_ALLOWED,
            "HTTP/1.1 405 Method Not Allowed\r\nContent-Type: application/json\r\n\
                 Content-Length: 34\r\nConnection: close\r\nAllow: GET\r\n\r\n\
                 {\"error\":\"only GET is supported\"}\n",
        ),
        (
            Refusal::NO_CHANNEL,
            "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n\
                 Content-Length: 102\r\nConnection: close\r\n\r\n{\"error\":\"no channel: offer one \
                 with Sec-WebSocket-Protocol (e.g. new WebSocket(url, [\\\"room42\\\"]))\"}\n",
        ),
        (
            Refusal::service_unavailable(),
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n\
                 Content-Length: 46\r\nConnection: close\r\n\r\n\
                 {\"error\":\"server is at its connection limit\"}\n",
        ),
    ];
    for (refusal, want) in cases {
        assert_eq!(String::from_utf8(refusal.response()).unwrap(), want);
    }
    assert_eq!(
        (Refusal::timeout().status, Refusal::timeout().reason),
        (408, "handshake timed out")
    );
    assert_eq!(
        Refusal::TIMEOUT.to_string(),
        "408 Request Timeout: handshake timed out"
    );
}

#[test]
fn version_426_names_version_13() {
    let buf = head(&[
        "GET / HTTP/1.1",
        HOST,
        UPG,
        CONN,
        KEY,
        "Sec-WebSocket-Version: 8",
    ]);
    let response = parse(&buf, &strict()).unwrap_err().response();
    let text = String::from_utf8(response).unwrap();
    assert!(
        text.starts_with("HTTP/1.1 426 Upgrade Required\r\n"),
        "{text}"
    );
    assert!(text.contains("\r\nSec-WebSocket-Version: 13\r\n"), "{text}");
}

#[test]
fn every_refusal_has_its_own_reason() {
    let all = Refusal::ALL;
    let mut reasons: Vec<_> = all.iter().map(|r| r.reason).collect();
    reasons.sort_unstable();
    reasons.dedup();
    assert_eq!(reasons.len(), all.len());
    for r in all {
        assert_ne!(reason_phrase(r.status), "Error", "{r:?}");
        assert!(r.headers.is_empty() || r.headers.ends_with("\r\n"), "{r:?}");
    }
}

/// `name: policy, [head lines] => status, "reason";` — the request is refused exactly so.
macro_rules! refused {
    ($($name:ident: $policy:ident, [$($line:expr),* $(,)?] => $status:literal, $reason:literal;)*) => {$(
        #[test]
        fn $name() {
            let got = parse(&head(&[$($line),*]), &$policy()).unwrap_err();
            assert_eq!((got.status, got.reason), ($status, $reason));
        }
    )*};
}

/// `name: policy, [head lines] => channel, selected;` — the upgrade is accepted so.
macro_rules! accepted {
    ($($name:ident: $policy:ident, [$($line:expr),* $(,)?] => $channel:literal, $selected:literal;)*) => {$(
        #[test]
        fn $name() {
            let buf = head(&[$($line),*]);
            let want = Ok(Decoded::Complete((upgrade($channel, $selected), buf.len())));
            assert_eq!(parse(&buf, &$policy()), want);
        }
    )*};
}

refused! {
    garbage: strict, ["\x01\x02 nonsense"] => 400, "malformed HTTP request";
    bad_header_name: strict, ["GET / HTTP/1.1", "Bad Name: x"] => 400, "malformed HTTP request";
    post: strict, ["POST / HTTP/1.1", HOST, UPG, CONN, KEY, VER, PROTO] => 405, "only GET is supported";
    lowercase_get: strict, ["get / HTTP/1.1", HOST, UPG, CONN, KEY, VER, PROTO] => 405, "only GET is supported";
    http_1_0: strict, ["GET / HTTP/1.0", HOST, UPG, CONN, KEY, VER, PROTO] => 400, "HTTP/1.1 required";
    http_2: strict, ["GET / HTTP/2.0", HOST, UPG, CONN, KEY, VER, PROTO] => 400, "HTTP/1.1 required";
    no_host: strict, ["GET / HTTP/1.1", UPG, CONN, KEY, VER, PROTO] => 400, "missing Host header";
    plain_http_1_0: strict, ["GET /healthz HTTP/1.0", HOST] => 400, "HTTP/1.1 required";
    plain_no_host: strict, ["GET /healthz HTTP/1.1"] => 400, "missing Host header";
    plain_post_root: strict, ["POST / HTTP/1.1", HOST] => 405, "only GET and HEAD are supported here";
    plain_other: strict, ["GET /favicon.ico HTTP/1.1", HOST] => 404, "not found";
    plain_healthz_prefix: strict, ["GET /healthzz HTTP/1.1", HOST] => 404, "not found";
    no_upgrade_header: strict, ["GET / HTTP/1.1", HOST, CONN, KEY, VER, PROTO] => 400,
        "Upgrade header must list websocket";
    upgrade_other: strict, ["GET / HTTP/1.1", HOST, "Upgrade: h2c", CONN, KEY, VER, PROTO] => 400,
        "Upgrade header must list websocket";
    upgrade_substring: strict, ["GET / HTTP/1.1", HOST, "Upgrade: websockets", CONN, KEY, VER] => 400,
        "Upgrade header must list websocket";
    no_connection: strict, ["GET / HTTP/1.1", HOST, UPG, KEY, VER, PROTO] => 400,
        "Connection header must list upgrade";
    connection_keep_alive: strict, ["GET / HTTP/1.1", HOST, UPG, "Connection: keep-alive", KEY, VER] => 400,
        "Connection header must list upgrade";
    no_version: strict, ["GET / HTTP/1.1", HOST, UPG, CONN, KEY, PROTO] => 426,
        "unsupported WebSocket version, use 13";
    version_8: strict, ["GET / HTTP/1.1", HOST, UPG, CONN, KEY, "Sec-WebSocket-Version: 8", PROTO] => 426,
        "unsupported WebSocket version, use 13";
    version_list: strict, ["GET / HTTP/1.1", HOST, UPG, CONN, KEY, "Sec-WebSocket-Version: 13, 8"] => 426,
        "unsupported WebSocket version, use 13";
    no_key: strict, ["GET / HTTP/1.1", HOST, UPG, CONN, VER, PROTO] => 400, "missing Sec-WebSocket-Key header";
    key_too_short: strict, ["GET / HTTP/1.1", HOST, UPG, CONN, "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA", VER] => 400,
        "invalid Sec-WebSocket-Key: must be base64 of 16 bytes";
    key_17_bytes: strict, ["GET / HTTP/1.1", HOST, UPG, CONN, "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAAA=", VER] => 400,
        "invalid Sec-WebSocket-Key: must be base64 of 16 bytes";
    key_not_base64: strict, ["GET / HTTP/1.1", HOST, UPG, CONN, "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ!!", VER] => 400,
        "invalid Sec-WebSocket-Key: must be base64 of 16 bytes";
    key_twice: strict, ["GET / HTTP/1.1", HOST, UPG, CONN, KEY, KEY, VER, PROTO] => 400,
        "invalid Sec-WebSocket-Key: must be base64 of 16 bytes";
    origin_other: strict, ["GET / HTTP/1.1", HOST, UPG, CONN, KEY, VER, PROTO, "Origin: https://evil.example"] => 403,
        "origin not allowed";
    origin_prefix: strict, ["GET / HTTP/1.1", HOST, UPG, CONN, KEY, VER, PROTO, "Origin: https://example.com.evil"] => 403,
        "origin not allowed";
    channel_not_token: strict, ["GET / HTTP/1.1", HOST, UPG, CONN, KEY, VER, "Sec-WebSocket-Protocol: room/42"] => 400,
        "invalid channel name: must be a token of 1-64 bytes (letters, digits and !#$%&'*+-.^_`|~)";
    channel_first_invalid: strict, ["GET / HTTP/1.1", HOST, UPG, CONN, KEY, VER, "Sec-WebSocket-Protocol: a b, room42"] => 400,
        "invalid channel name: must be a token of 1-64 bytes (letters, digits and !#$%&'*+-.^_`|~)";
    channel_65_bytes: strict, ["GET / HTTP/1.1", HOST, UPG, CONN, KEY, VER, &format!("Sec-WebSocket-Protocol: {}", "a".repeat(65))] => 400,
        "invalid channel name: must be a token of 1-64 bytes (letters, digits and !#$%&'*+-.^_`|~)";
    no_channel: strict, ["GET / HTTP/1.1", HOST, UPG, CONN, KEY, VER] => 400,
        "no channel: offer one with Sec-WebSocket-Protocol (e.g. new WebSocket(url, [\"room42\"]))";
    empty_protocol_no_default: strict, ["GET / HTTP/1.1", HOST, UPG, CONN, KEY, VER, "Sec-WebSocket-Protocol: "] => 400,
        "no channel: offer one with Sec-WebSocket-Protocol (e.g. new WebSocket(url, [\"room42\"]))";
}

accepted! {
    case_and_lists: strict, ["GET /any/path?x HTTP/1.1", "host: example.com", "UPGRADE: WebSocket",
        "connection: keep-alive, Upgrade", "sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==",
        "sec-websocket-version: 13", "sec-websocket-protocol: Room42"] => "Room42", true;
    repeated_lines_combine: strict, ["GET / HTTP/1.1", HOST, "Upgrade: h2c", "Upgrade: websocket",
        "Connection: keep-alive", "Connection: upgrade", KEY, VER, PROTO] => "room42", true;
    first_of_several_offers: strict, ["GET / HTTP/1.1", HOST, UPG, CONN, KEY, VER,
        "Sec-WebSocket-Protocol:  a.b-c_d~1 , room42", "Sec-WebSocket-Protocol: x"] => "a.b-c_d~1", true;
    offer_on_second_line: strict, ["GET / HTTP/1.1", HOST, UPG, CONN, KEY, VER,
        "Sec-WebSocket-Protocol: ", "Sec-WebSocket-Protocol: room42"] => "room42", true;
    every_tchar: strict, ["GET / HTTP/1.1", HOST, UPG, CONN, KEY, VER,
        "Sec-WebSocket-Protocol: !#$%&'*+-.^_`|~09azAZ"] => "!#$%&'*+-.^_`|~09azAZ", true;
    origin_allowed_any_case: strict, ["GET / HTTP/1.1", HOST, UPG, CONN, KEY, VER, PROTO,
        "Origin: HTTP://LocalHost:8080"] => "room42", true;
    origin_absent_allowed: strict, ["GET / HTTP/1.1", HOST, UPG, CONN, KEY, VER, PROTO] => "room42", true;
    origin_any_when_unlisted: lenient, ["GET / HTTP/1.1", HOST, UPG, CONN, KEY, VER, PROTO,
        "Origin: https://evil.example"] => "room42", true;
    extensions_ignored: strict, ["GET / HTTP/1.1", HOST, UPG, CONN, KEY, VER, PROTO,
        "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits"] => "room42", true;
    empty_protocol_uses_default: lenient, ["GET / HTTP/1.1", HOST, UPG, CONN, KEY, VER,
        "Sec-WebSocket-Protocol:"] => "lobby", false;
    channel_64_bytes: strict, ["GET / HTTP/1.1", HOST, UPG, CONN, KEY, VER,
        &format!("Sec-WebSocket-Protocol: {}", "z".repeat(64))] =>
        "zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz", true;
    leading_blank_lines: strict, ["\r\nGET / HTTP/1.1", HOST, UPG, CONN, KEY, VER, PROTO] => "room42", true;
}

#[test]
fn head_size_limit_boundaries() {
    let base = valid();
    let pad = |total: usize| {
        let filler = "x".repeat(total - base.len() - "X-Pad: \r\n".len());
        let mut buf = base[..base.len() - 2].to_vec();
        buf.extend_from_slice(format!("X-Pad: {filler}\r\n\r\n").as_bytes());
        assert_eq!(buf.len(), total);
        buf
    };
    let at_limit = pad(MAX);
    assert_eq!(
        parse(&at_limit, &strict()),
        Ok(Decoded::Complete((upgrade("room42", true), MAX)))
    );
    assert_eq!(
        parse(&pad(MAX + 1), &strict()),
        Err(Refusal::HEAD_TOO_LARGE)
    );
    // Incomplete: Partial up to the limit, 431 beyond it.
    let open = b"GET / HTTP/1.1\r\nX: "
        .iter()
        .copied()
        .chain(std::iter::repeat(b'y'));
    let open: Vec<u8> = open.take(MAX + 1).collect();
    assert_eq!(parse(&open[..MAX], &strict()), Ok(Decoded::Partial));
    assert_eq!(parse(&open, &strict()), Err(Refusal::HEAD_TOO_LARGE));
    // A complete head at the limit followed by frame bytes is fine.
    let mut with_frame = at_limit.clone();
    with_frame.extend_from_slice(&[0x81, 0x80, 1, 2, 3, 4]);
    assert_eq!(
        parse(&with_frame, &strict()),
        Ok(Decoded::Complete((upgrade("room42", true), MAX)))
    );
}

#[test]
fn header_count_limit_boundaries() {
    let with_extra = |extra: usize| {
        let mut lines = vec!["GET / HTTP/1.1", HOST, UPG, CONN, KEY, VER, PROTO];
        lines.extend(std::iter::repeat_n("X: y", extra));
        head(&lines)
    };
    let big = Policy {
        max_header_bytes: 8192,
        ..strict()
    };
    let fits = with_extra(MAX_HEADERS - 6);
    assert_eq!(
        parse(&fits, &big),
        Ok(Decoded::Complete((upgrade("room42", true), fits.len())))
    );
    let over = with_extra(MAX_HEADERS - 5);
    assert_eq!(parse(&over, &big), Err(Refusal::TOO_MANY_HEADERS));
    assert_eq!(
        Refusal::TOO_MANY_HEADERS.reason,
        format!("too many header fields (at most {MAX_HEADERS})")
    );
}

#[test]
fn every_split_point_with_trailing_frame() {
    let request = valid();
    let mut buf = request.clone();
    buf.extend_from_slice(&[0x81, 0x82, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f]);
    for split in 0..=buf.len() {
        let got = parse(&buf[..split], &strict());
        if split < request.len() {
            assert_eq!(got, Ok(Decoded::Partial), "split {split}");
        } else {
            assert_eq!(
                got,
                Ok(Decoded::Complete((upgrade("room42", true), request.len()))),
                "split {split}"
            );
        }
    }
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = parse(&bytes, &strict());
        let _ = parse(&bytes, &Policy { max_header_bytes: 64, ..lenient() });
    }

    #[test]
    fn arbitrary_headers_never_panic(lines in proptest::collection::vec("[ -~\t]{0,40}", 0..12)) {
        let mut all = vec!["GET / HTTP/1.1".to_owned(), HOST.into(), UPG.into(), CONN.into()];
        all.extend(lines);
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        let _ = parse(&head(&refs), &strict());
    }

    #[test]
    fn any_split_gives_partial_then_the_same_complete(
        channel in "[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}",
        upper in any::<bool>(),
        frame in proptest::collection::vec(any::<u8>(), 0..16),
        split in any::<proptest::sample::Index>(),
    ) {
        let proto = format!("Sec-WebSocket-Protocol: {channel}");
        // Header names are case-insensitive: try them as written and upper-cased.
        let mut lines = vec!["GET / HTTP/1.1".to_owned()];
        for line in [HOST, UPG, CONN, KEY, VER, &proto] {
            let (name, value) = line.split_once(':').unwrap();
            let name = if upper { name.to_uppercase() } else { name.to_owned() };
            lines.push(format!("{name}:{value}"));
        }
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        let request = head(&refs);
        let mut buf = request.clone();
        buf.extend_from_slice(&frame);
        let split = split.index(request.len());
        prop_assert_eq!(parse(&buf[..split], &strict()), Ok(Decoded::Partial));
        let want = Ok(Decoded::Complete((upgrade(&channel, true), request.len())));
        prop_assert_eq!(parse(&buf, &strict()), want);
    }
}
