//! Who may listen and who may speak, end to end: tokens in each of their three places, the
//! refusals (401 with what is wrong, 403 for a channel not granted), the classic attacks,
//! expiry during a connection, read-only clients, rate limits, publishing and operator
//! endpoints over HTTP.

mod common;

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use common::*;
use fanout::config::RateLimit;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

const SECRET: &str = "a test secret of at least 32 bytes!!";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// An HS256 token with `claims`.
fn token(claims: Value) -> String {
    let key = EncodingKey::from_secret(SECRET.as_bytes()).unwrap();
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &key).unwrap()
}

/// A token for `channels` and `publish`, valid for an hour.
fn grant(channels: &[&str], publish: &[&str]) -> String {
    token(json!({"exp": now() + 3600, "sub": "u1", "channels": channels, "publish": publish}))
}

fn server(configure: impl FnOnce(&mut fanout::Config)) -> TestServer {
    TestServer::start(|c| {
        c.auth_hmac_secret = Some(SECRET.into());
        configure(c);
    })
}

/// An upgrade with `extra` header lines; the response head.
fn upgrade(addr: std::net::SocketAddr, path: &str, extra: &str) -> (std::net::TcpStream, String) {
    let mut s = connect(addr);
    let req = upgrade_request(extra).replacen("GET / ", &format!("GET {path} "), 1);
    s.write_all(req.as_bytes()).unwrap();
    let head = read_head(&mut s);
    (s, head)
}

/// The exact refusal a bad token gets.
fn refusal(status: &str, reason: &str, www: &str) -> String {
    let body = format!("{{\"error\":\"{reason}\"}}\n");
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n{www}\r\n{body}",
        body.len()
    )
}

fn invalid(reason: &str) -> String {
    let www = format!(
        "WWW-Authenticate: Bearer error=\"invalid_token\", error_description=\"{reason}\"\r\n"
    );
    refusal("401 Unauthorized", reason, &www)
}

fn refused_with(addr: std::net::SocketAddr, path: &str, extra: &str) -> String {
    let (mut s, head) = upgrade(addr, path, extra);
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut s, &mut rest).unwrap();
    head + &rest
}

#[test]
fn a_token_is_taken_from_the_subprotocol_the_query_or_the_header() {
    let server = server(|_| {});
    let t = grant(&["room"], &["room"]);
    let mut listener = ws_with(server.addr, "room", &t);
    for (path, extra) in [
        ("/", format!("Sec-WebSocket-Protocol: room, bearer.{t}\r\n")),
        (
            &format!("/?token={t}")[..],
            "Sec-WebSocket-Protocol: room\r\n".into(),
        ),
        (
            "/",
            format!("Sec-WebSocket-Protocol: room\r\nAuthorization: Bearer {t}\r\n"),
        ),
    ] {
        let (mut s, head) = upgrade(server.addr, path, &extra);
        assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
        // The channel is echoed, never the token.
        assert!(
            head.contains("\r\nSec-WebSocket-Protocol: room\r\n"),
            "{head}"
        );
        assert!(!head.contains("bearer"), "{head}");
        s.write_all(&text(path)).unwrap();
        assert_eq!(read_frame(&mut listener).payload, path.as_bytes());
    }
}

/// A WebSocket on `channel` with token `t` offered as a subprotocol.
fn ws_with(addr: std::net::SocketAddr, channel: &str, t: &str) -> std::net::TcpStream {
    let (s, head) = upgrade(
        addr,
        "/",
        &format!("Sec-WebSocket-Protocol: {channel}, bearer.{t}\r\n"),
    );
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    s
}

#[test]
fn missing_bad_and_forbidden_tokens_get_401_or_403_saying_why() {
    let server = server(|_| {});
    let room = "Sec-WebSocket-Protocol: room\r\n";
    let with = |t: &str| format!("Sec-WebSocket-Protocol: room, bearer.{t}\r\n");
    let missing = "missing token: offer Sec-WebSocket-Protocol bearer.<JWT>, or send ?token=<JWT> or Authorization: Bearer <JWT>";
    assert_eq!(
        refused_with(server.addr, "/", room),
        refusal("401 Unauthorized", missing, "WWW-Authenticate: Bearer\r\n")
    );
    let expired = token(json!({"exp": now() - 10, "channels": ["room"]}));
    assert_eq!(
        refused_with(server.addr, "/", &with(&expired)),
        invalid("token expired")
    );
    let other = grant(&["lobby", "news-*"], &[]);
    let forbidden = "WWW-Authenticate: Bearer error=\"insufficient_scope\", error_description=\"token does not grant this channel\"\r\n";
    assert_eq!(
        refused_with(server.addr, "/", &with(&other)),
        refusal(
            "403 Forbidden",
            "token does not grant this channel",
            forbidden
        )
    );
    // A prefix pattern grants the channels it covers.
    let (_, head) = upgrade(
        server.addr,
        "/",
        &format!("Sec-WebSocket-Protocol: news-eu, bearer.{other}\r\n"),
    );
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    assert_eq!(
        metric(
            server.addr,
            "fanout_auth_refusals_total{reason=\"expired\"}"
        ),
        1
    );
}

#[test]
fn the_classic_attacks_are_refused() {
    let es_key = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/keys/es256.pub.pem"
    ))
    .unwrap();
    let public = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/keys/es256.pub.pem");
    let server = TestServer::start(|c| c.auth_public_key = Some(public.into()));
    let claims = json!({"exp": now() + 3600, "channels": ["room"]});
    let with = |t: &str| format!("Sec-WebSocket-Protocol: room, bearer.{t}\r\n");
    let b64 = |v: &Value| {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let unsupported =
        invalid("unsupported token algorithm: not one that this server's keys verify");
    // alg: none, no signature.
    let none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        b64(&claims)
    );
    assert_eq!(refused_with(server.addr, "/", &with(&none)), unsupported);
    // HS256 "signed" with the public key's PEM bytes as the secret (key confusion).
    let confused = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(&es_key).unwrap(),
    )
    .unwrap();
    assert_eq!(
        refused_with(server.addr, "/", &with(&confused)),
        unsupported
    );
    // A real ES256 token, then the same with its payload changed, and one from another key.
    let signed = |key: &str| {
        let pem =
            std::fs::read(format!("{}/tests/keys/{key}", env!("CARGO_MANIFEST_DIR"))).unwrap();
        let der = pem_rfc7468::decode_vec(&pem).unwrap().1;
        let key = EncodingKey::from_ec_der(&der);
        jsonwebtoken::encode(&Header::new(Algorithm::ES256), &claims, &key).unwrap()
    };
    let good = signed("es256.key.pem");
    let (_, head) = upgrade(server.addr, "/", &with(&good));
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    let parts: Vec<&str> = good.split('.').collect();
    let more = json!({"exp": now() + 3600, "channels": ["*"]});
    let tampered = format!("{}.{}.{}", parts[0], b64(&more), parts[2]);
    assert_eq!(
        refused_with(server.addr, "/", &with(&tampered)),
        invalid("bad token signature")
    );
    let foreign = signed("es256-other.key.pem");
    assert_eq!(
        refused_with(server.addr, "/", &with(&foreign)),
        invalid("bad token signature")
    );
}

#[test]
fn a_token_that_expires_closes_its_connection_with_1008() {
    let server = server(|_| {});
    let t = token(json!({"exp": now() + 2, "channels": ["room"]}));
    let mut s = ws_with(server.addr, "room", &t);
    let f = read_frame(&mut s); // within the test's read timeout
    assert_eq!((f.close_code(), f.close_reason()), (1008, "token expired"));
    await_metric(server.addr, "fanout_token_expired_closes_total", |n| n == 1);
}

#[test]
fn a_receive_only_client_that_sends_is_closed_and_reaches_nobody() {
    for (by_token, configure) in [
        (
            true,
            Box::new(|_: &mut fanout::Config| {}) as Box<dyn FnOnce(&mut fanout::Config)>,
        ),
        (
            false,
            Box::new(|c: &mut fanout::Config| c.client_publish = false),
        ),
    ] {
        let server = server(configure);
        let writer = if by_token {
            grant(&["room"], &[])
        } else {
            grant(&["room"], &["room"])
        };
        let mut listener = ws_with(server.addr, "room", &grant(&["room"], &[]));
        let mut sender = ws_with(server.addr, "room", &writer);
        sender.write_all(&text("not allowed")).unwrap();
        let f = read_frame(&mut sender);
        assert_eq!(
            (f.close_code(), f.close_reason()),
            (1008, "publishing not allowed")
        );
        // Nothing reached the listener: the next frame it gets is a later, legitimate one.
        server.handle.publish("room", "marker").unwrap();
        assert_eq!(read_frame(&mut listener).payload, b"marker");
        assert_eq!(
            metric(server.addr, "fanout_client_publish_refusals_total"),
            1
        );
    }
}

#[test]
fn a_client_over_its_rate_is_closed_or_its_extra_messages_dropped() {
    for policy in [RateLimit::Close, RateLimit::Drop] {
        let server = TestServer::start(|c| {
            c.max_client_rate = Some(1);
            c.max_client_burst = Some(3);
            c.rate_limit = policy;
        });
        let mut listener = ws(server.addr, "room");
        let mut sender = ws(server.addr, "room");
        let burst: Vec<u8> = (0..10u8).flat_map(|i| frame(true, 2, &[i], true)).collect();
        sender.write_all(&burst).unwrap(); // ten at once: three fit the burst
        for i in 0..3u8 {
            assert_eq!(read_frame(&mut listener).payload, [i]);
        }
        match policy {
            RateLimit::Close => {
                let f = read_frame(&mut sender);
                assert_eq!((f.close_code(), f.close_reason()), (1008, "rate limit"));
                assert_eq!(metric(server.addr, "fanout_rate_limited_total"), 1);
            }
            RateLimit::Drop => {
                await_metric(server.addr, "fanout_rate_limited_total", |n| n == 7);
                server.handle.publish("room", "marker").unwrap();
                assert_eq!(read_frame(&mut listener).payload, b"marker");
            }
        }
    }
}

#[test]
fn http_publish_takes_a_jwt_with_a_publish_claim_and_operator_endpoints_the_admin_token() {
    let server = server(|c| {
        c.publish_token = Some("shared".into());
        c.admin_token = Some("adm".into());
    });
    let mut listener = ws_with(server.addr, "room", &grant(&["room"], &[]));
    let publish = |bearer: &str| {
        let auth = format!("Authorization: Bearer {bearer}\r\nConnection: close\r\n");
        http(
            server.addr,
            &publish_request("room", "text/plain", b"hi", &auth),
        )
        .0
    };
    assert_eq!(publish(&grant(&[], &["room"])), 200);
    assert_eq!(
        publish("shared"),
        200,
        "the shared publish token still works"
    );
    assert_eq!(publish(&grant(&[], &["other"])), 403);
    assert_eq!(publish("neither"), 401);
    for _ in 0..2 {
        assert_eq!(read_frame(&mut listener).payload, b"hi");
    }
    let get_with = |path: &str, auth: &str| {
        let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n");
        http(server.addr, req.as_bytes()).0
    };
    for path in ["/metrics", "/channels", "/channels/room"] {
        assert_eq!(get_with(path, ""), 401, "{path}");
        assert_eq!(
            get_with(path, "Authorization: Bearer nope\r\n"),
            403,
            "{path}"
        );
        assert_eq!(
            get_with(path, "Authorization: Bearer adm\r\n"),
            200,
            "{path}"
        );
    }
    assert_eq!(get_with("/healthz", ""), 200);
}
