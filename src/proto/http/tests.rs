//! Unit tests for the HTTP API: routing, publish bodies, refusals and their JSON bodies.

use super::*;
use crate::proto::Decoded;
use crate::proto::handshake::{self, Request};
use proptest::prelude::*;

const HOST: &str = "Host: example.com";
/// Bytes after the head: the body of a publish, or the next pipelined request.
const AFTER: &[u8] = b"hello";

/// Any publisher; bodies up to 1024 bytes.
fn open() -> Policy<'static> {
    Policy {
        default_channel: None,
        allowed_origins: &[],
        max_header_bytes: 4096,
        max_message: 1024,
        publish_token: None,
        auth: None,
        now_unix: 0,
        admin_token: None,
        deflate: false,
    }
}

/// Publishing needs `Authorization: Bearer s3cret`.
fn guarded() -> Policy<'static> {
    Policy {
        publish_token: Some("s3cret"),
        auth: None,
        now_unix: 0,
        admin_token: None,
        deflate: false,
        ..open()
    }
}

/// Parses `lines` (plus the blank line, then [`AFTER`]) the way the server does, expecting
/// an API request whose head ends before `AFTER`.
fn request(lines: &[&str], policy: &Policy<'_>) -> Result<HttpRequest, Refusal> {
    let head = format!("{}\r\n\r\n", lines.join("\r\n"));
    let buf = [head.as_bytes(), AFTER].concat();
    match handshake::parse(&buf, policy)? {
        Decoded::Complete((Request::Http(req), n)) if n == head.len() => Ok(req),
        other => panic!("not an API request ending at {}: {other:?}", head.len()),
    }
}

fn routed(route: Route) -> Result<HttpRequest, Refusal> {
    Ok(HttpRequest {
        route,
        keep_alive: true,
        head: false,
    })
}

fn closing(route: Route) -> Result<HttpRequest, Refusal> {
    Ok(HttpRequest {
        route,
        keep_alive: false,
        head: false,
    })
}

fn head(route: Route) -> Result<HttpRequest, Refusal> {
    Ok(HttpRequest {
        route,
        keep_alive: true,
        head: true,
    })
}

fn page(after: Option<&str>, limit: usize) -> Route {
    Route::Channels {
        after: after.map(Into::into),
        limit,
    }
}

fn channel(name: &str) -> Route {
    Route::Channel(name.into())
}

fn text(channel: &str, body_len: usize) -> Route {
    Route::Publish {
        channel: channel.into(),
        text: true,
        body_len,
    }
}

fn binary(channel: &str, body_len: usize) -> Route {
    Route::Publish {
        channel: channel.into(),
        text: false,
        body_len,
    }
}

/// `name: policy, [head lines] => Ok(..) or Err(refusal);` — the request routes exactly so.
macro_rules! requests {
    ($($name:ident: $policy:ident, [$($line:expr),* $(,)?] => $want:expr;)*) => {$(
        #[test]
        fn $name() {
            assert_eq!(request(&[$($line),*], &$policy()), $want);
        }
    )*};
}

requests! {
    // The read-only endpoints.
    health: open, ["GET /healthz HTTP/1.1", HOST] => routed(Route::Health);
    health_query: open, ["GET /healthz?x=1 HTTP/1.1", HOST] => routed(Route::Health);
    head_health: open, ["HEAD /healthz HTTP/1.1", HOST] => head(Route::Health);
    head_metrics: open, ["HEAD /metrics HTTP/1.1", HOST] => head(Route::Metrics);
    head_channel: open, ["HEAD /channels/room HTTP/1.1", HOST] => head(channel("room"));
    index: open, ["GET / HTTP/1.1", HOST] => routed(Route::Index);
    index_query: open, ["GET /?a=b&c HTTP/1.1", HOST] => routed(Route::Index);
    metrics: open, ["GET /metrics HTTP/1.1", HOST] => routed(Route::Metrics);
    channels: open, ["GET /channels HTTP/1.1", HOST] => routed(page(None, DEFAULT_PAGE));
    channels_limit: open, ["GET /channels?limit=1 HTTP/1.1", HOST] => routed(page(None, 1));
    channels_page: open, ["GET /channels?x=1&after=r%23m&limit=1000 HTTP/1.1", HOST] =>
        routed(page(Some("r#m"), 1000));
    channels_limit_0: open, ["GET /channels?limit=0 HTTP/1.1", HOST] => Err(Refusal::BAD_PAGE);
    channels_limit_big: open, ["GET /channels?limit=1001 HTTP/1.1", HOST] => Err(Refusal::BAD_PAGE);
    channels_limit_nan: open, ["GET /channels?limit=ten HTTP/1.1", HOST] => Err(Refusal::BAD_PAGE);
    channels_after_bad: open, ["GET /channels?after=a%20b HTTP/1.1", HOST] => Err(Refusal::BAD_PAGE);
    // A body on GET or HEAD is refused (no smuggled second request); Content-Length: 0 is none.
    get_length_zero: open, ["GET /healthz HTTP/1.1", HOST, "Content-Length: 0"] =>
        routed(Route::Health);
    get_with_body: open, ["GET /healthz HTTP/1.1", HOST, "Content-Length: 5"] =>
        Err(Refusal::UNEXPECTED_BODY);
    head_with_body: open, ["HEAD /healthz HTTP/1.1", HOST, "Content-Length: 5"] =>
        Err(Refusal::UNEXPECTED_BODY);
    get_chunked: open, ["GET /healthz HTTP/1.1", HOST, "Transfer-Encoding: chunked"] =>
        Err(Refusal::UNEXPECTED_BODY);
    get_bad_length: open, ["GET /healthz HTTP/1.1", HOST, "Content-Length: x"] =>
        Err(Refusal::BAD_LENGTH);
    get_huge_length: open, ["GET /healthz HTTP/1.1", HOST, "Content-Length: 99999999999999999999999"] =>
        Err(Refusal::UNEXPECTED_BODY);
    get_lengths_disagree: open, ["GET /healthz HTTP/1.1", HOST, "Content-Length: 0", "Content-Length: 1"] =>
        Err(Refusal::BAD_LENGTH);
    two_hosts: open, ["GET /healthz HTTP/1.1", HOST, "Host: other"] => Err(Refusal::DUPLICATE_HOST);
    one_channel: open, ["GET /channels/room HTTP/1.1", HOST] => routed(channel("room"));
    one_channel_query: open, ["GET /channels/room?v=1 HTTP/1.1", HOST] => routed(channel("room"));
    channel_tchars: open, ["GET /channels/a.b-c_d~1!*'|^` HTTP/1.1", HOST] =>
        routed(channel("a.b-c_d~1!*'|^`"));
    channel_percent_decoded: open, ["GET /channels/a%23b%2a%7E HTTP/1.1", HOST] =>
        routed(channel("a#b*~"));
    channel_percent_itself: open, ["GET /channels/100%25 HTTP/1.1", HOST] => routed(channel("100%"));
    channel_64_bytes: open, [&format!("GET /channels/{} HTTP/1.1", "c".repeat(64)), HOST] =>
        routed(channel(&"c".repeat(64)));
    channel_65_bytes: open, [&format!("GET /channels/{} HTTP/1.1", "c".repeat(65)), HOST] =>
        Err(Refusal::INVALID_CHANNEL);
    channel_space: open, ["GET /channels/a%20b HTTP/1.1", HOST] => Err(Refusal::INVALID_CHANNEL);
    channel_empty: open, ["GET /channels/ HTTP/1.1", HOST] => Err(Refusal::INVALID_CHANNEL);
    channel_nested: open, ["GET /channels/a/b HTTP/1.1", HOST] => Err(Refusal::INVALID_CHANNEL);
    channel_encoded_slash: open, ["GET /channels/a%2Fb HTTP/1.1", HOST] => Err(Refusal::INVALID_CHANNEL);
    channel_short_escape: open, ["GET /channels/a%2 HTTP/1.1", HOST] => Err(Refusal::INVALID_CHANNEL);
    channel_bad_escape: open, ["GET /channels/a%zz HTTP/1.1", HOST] => Err(Refusal::INVALID_CHANNEL);
    channel_non_ascii: open, ["GET /channels/caf%C3%A9 HTTP/1.1", HOST] => Err(Refusal::INVALID_CHANNEL);
    unknown: open, ["GET /favicon.ico HTTP/1.1", HOST] => Err(Refusal::NOT_FOUND);
    health_prefix: open, ["GET /healthzz HTTP/1.1", HOST] => Err(Refusal::NOT_FOUND);
    health_slash: open, ["GET /healthz/ HTTP/1.1", HOST] => Err(Refusal::NOT_FOUND);
    paths_case_sensitive: open, ["GET /HEALTHZ HTTP/1.1", HOST] => Err(Refusal::NOT_FOUND);
    publish_without_slash: open, ["POST /publish HTTP/1.1", HOST, "Content-Length: 5"] =>
        Err(Refusal::NOT_FOUND);
    unknown_post: open, ["POST /nope HTTP/1.1", HOST] => Err(Refusal::NOT_FOUND);
    post_health: open, ["POST /healthz HTTP/1.1", HOST] => Err(Refusal::GET_ONLY);
    post_index: open, ["POST / HTTP/1.1", HOST, "Content-Length: 0"] => Err(Refusal::GET_ONLY);
    put_channels: open, ["PUT /channels HTTP/1.1", HOST] => Err(Refusal::GET_ONLY);
    delete_channel: open, ["DELETE /channels/room HTTP/1.1", HOST] => Err(Refusal::GET_ONLY);
    head_publish: open, ["HEAD /publish/x HTTP/1.1", HOST] => Err(Refusal::POST_ONLY);
    get_publish: open, ["GET /publish/x HTTP/1.1", HOST] => Err(Refusal::POST_ONLY);
    put_publish: open, ["PUT /publish/x HTTP/1.1", HOST, "Content-Length: 5"] => Err(Refusal::POST_ONLY);
    lowercase_post: open, ["post /publish/x HTTP/1.1", HOST, "Content-Length: 5"] =>
        Err(Refusal::POST_ONLY);

    // Publishing: text or binary by Content-Type.
    publish_text_plain: open, ["POST /publish/room HTTP/1.1", HOST, "Content-Length: 5",
        "Content-Type: text/plain"] => routed(text("room", 5));
    publish_text_any_case: open, ["POST /publish/room HTTP/1.1", HOST, "Content-Length: 5",
        "Content-Type: TEXT/html; charset=utf-8"] => routed(text("room", 5));
    publish_json: open, ["POST /publish/room HTTP/1.1", HOST, "Content-Length: 5",
        "Content-Type: application/json"] => routed(text("room", 5));
    publish_json_charset: open, ["POST /publish/room HTTP/1.1", HOST, "Content-Length: 5",
        "Content-Type: application/json; charset=utf-8"] => routed(text("room", 5));
    publish_json_spaced: open, ["POST /publish/room HTTP/1.1", HOST, "Content-Length: 5",
        "content-type:  Application/JSON ;charset=utf-8"] => routed(text("room", 5));
    publish_octets: open, ["POST /publish/room HTTP/1.1", HOST, "Content-Length: 5",
        "Content-Type: application/octet-stream"] => routed(binary("room", 5));
    publish_no_type: open, ["POST /publish/room HTTP/1.1", HOST, "Content-Length: 5"] =>
        routed(binary("room", 5));
    publish_png: open, ["POST /publish/room HTTP/1.1", HOST, "Content-Length: 5",
        "Content-Type: image/png"] => routed(binary("room", 5));
    publish_json_lookalike: open, ["POST /publish/room HTTP/1.1", HOST, "Content-Length: 5",
        "Content-Type: application/jsonp"] => routed(binary("room", 5));
    publish_text_without_slash: open, ["POST /publish/room HTTP/1.1", HOST, "Content-Length: 5",
        "Content-Type: text"] => routed(binary("room", 5));

    // Publishing: the channel.
    publish_query_ignored: open, ["POST /publish/room?x=1 HTTP/1.1", HOST, "Content-Length: 5"] =>
        routed(binary("room", 5));
    publish_percent_decoded: open, ["POST /publish/a%23b HTTP/1.1", HOST, "Content-Length: 5"] =>
        routed(binary("a#b", 5));
    publish_channel_space: open, ["POST /publish/a%20b HTTP/1.1", HOST, "Content-Length: 5"] =>
        Err(Refusal::INVALID_CHANNEL);
    publish_channel_empty: open, ["POST /publish/ HTTP/1.1", HOST, "Content-Length: 5"] =>
        Err(Refusal::INVALID_CHANNEL);
    publish_channel_nested: open, ["POST /publish/a/b HTTP/1.1", HOST, "Content-Length: 5"] =>
        Err(Refusal::INVALID_CHANNEL);
    publish_channel_65_bytes: open, [&format!("POST /publish/{} HTTP/1.1", "p".repeat(65)), HOST,
        "Content-Length: 5"] => Err(Refusal::INVALID_CHANNEL);

    // Publishing: the length.
    publish_empty_body: open, ["POST /publish/room HTTP/1.1", HOST, "Content-Length: 0"] =>
        routed(binary("room", 0));
    publish_length_padded: open, ["POST /publish/room HTTP/1.1", HOST, "Content-Length:   7  "] =>
        routed(binary("room", 7));
    publish_length_leading_zeros: open, ["POST /publish/room HTTP/1.1", HOST, "Content-Length: 007"] =>
        routed(binary("room", 7));
    publish_length_repeated_equal: open, ["POST /publish/room HTTP/1.1", HOST, "Content-Length: 5",
        "Content-Length: 5"] => routed(binary("room", 5));
    publish_exactly_max: open, ["POST /publish/room HTTP/1.1", HOST, "Content-Length: 1024"] =>
        routed(binary("room", 1024));
    publish_over_max: open, ["POST /publish/room HTTP/1.1", HOST, "Content-Length: 1025"] =>
        Err(Refusal::TOO_LARGE);
    publish_over_usize: open, ["POST /publish/room HTTP/1.1", HOST,
        "Content-Length: 99999999999999999999999999"] => Err(Refusal::TOO_LARGE);
    publish_no_length: open, ["POST /publish/room HTTP/1.1", HOST] => Err(Refusal::LENGTH_REQUIRED);
    publish_chunked: open, ["POST /publish/room HTTP/1.1", HOST, "Transfer-Encoding: chunked"] =>
        Err(Refusal::LENGTH_REQUIRED);
    publish_chunked_and_length: open, ["POST /publish/room HTTP/1.1", HOST, "Content-Length: 5",
        "Transfer-Encoding: chunked"] => Err(Refusal::LENGTH_REQUIRED);
    publish_length_word: open, ["POST /publish/room HTTP/1.1", HOST, "Content-Length: abc"] =>
        Err(Refusal::BAD_LENGTH);
    publish_length_negative: open, ["POST /publish/room HTTP/1.1", HOST, "Content-Length: -1"] =>
        Err(Refusal::BAD_LENGTH);
    publish_length_two_numbers: open, ["POST /publish/room HTTP/1.1", HOST, "Content-Length: 1 2"] =>
        Err(Refusal::BAD_LENGTH);
    publish_length_plus: open, ["POST /publish/room HTTP/1.1", HOST, "Content-Length: +5"] =>
        Err(Refusal::BAD_LENGTH);
    publish_length_list: open, ["POST /publish/room HTTP/1.1", HOST, "Content-Length: 5, 5"] =>
        Err(Refusal::BAD_LENGTH);
    publish_length_empty: open, ["POST /publish/room HTTP/1.1", HOST, "Content-Length:"] =>
        Err(Refusal::BAD_LENGTH);
    publish_length_repeated_unequal: open, ["POST /publish/room HTTP/1.1", HOST, "Content-Length: 5",
        "Content-Length: 6"] => Err(Refusal::BAD_LENGTH);

    // Publishing: the token.
    token_missing: guarded, ["POST /publish/room HTTP/1.1", HOST, "Content-Length: 5"] =>
        Err(Refusal::UNAUTHORIZED);
    token_wrong: guarded, ["POST /publish/room HTTP/1.1", HOST, "Content-Length: 5",
        "Authorization: Bearer wrong"] => Err(Refusal::FORBIDDEN_TOKEN);
    token_prefix: guarded, ["POST /publish/room HTTP/1.1", HOST, "Content-Length: 5",
        "Authorization: Bearer s3cre"] => Err(Refusal::FORBIDDEN_TOKEN);
    token_extended: guarded, ["POST /publish/room HTTP/1.1", HOST, "Content-Length: 5",
        "Authorization: Bearer s3cretx"] => Err(Refusal::FORBIDDEN_TOKEN);
    token_basic: guarded, ["POST /publish/room HTTP/1.1", HOST, "Content-Length: 5",
        "Authorization: Basic s3cret"] => Err(Refusal::UNAUTHORIZED);
    token_no_scheme: guarded, ["POST /publish/room HTTP/1.1", HOST, "Content-Length: 5",
        "Authorization: s3cret"] => Err(Refusal::UNAUTHORIZED);
    token_right: guarded, ["POST /publish/room HTTP/1.1", HOST, "Content-Length: 5",
        "Authorization: Bearer s3cret"] => routed(binary("room", 5));
    token_scheme_any_case: guarded, ["POST /publish/room HTTP/1.1", HOST, "Content-Length: 5",
        "authorization: bearer   s3cret"] => routed(binary("room", 5));
    token_checked_before_channel: guarded, ["POST /publish/a%20b HTTP/1.1", HOST] =>
        Err(Refusal::UNAUTHORIZED);
    token_checked_before_length: guarded, ["POST /publish/room HTTP/1.1", HOST,
        "Authorization: Bearer wrong"] => Err(Refusal::FORBIDDEN_TOKEN);
    token_not_needed_to_read: guarded, ["GET /channels HTTP/1.1", HOST] =>
        routed(page(None, DEFAULT_PAGE));
    token_ignored_when_unset: open, ["POST /publish/room HTTP/1.1", HOST, "Content-Length: 5",
        "Authorization: Bearer anything"] => routed(binary("room", 5));

    // Persistent connections.
    keep_alive_explicit: open, ["GET /healthz HTTP/1.1", HOST, "Connection: keep-alive"] =>
        routed(Route::Health);
    close: open, ["GET /healthz HTTP/1.1", HOST, "Connection: close"] => closing(Route::Health);
    close_any_case: open, ["GET /metrics HTTP/1.1", HOST, "connection: CLOSE"] => closing(Route::Metrics);
    close_in_list: open, ["GET /healthz HTTP/1.1", HOST, "Connection: keep-alive, close"] =>
        closing(Route::Health);
    close_on_second_line: open, ["GET /healthz HTTP/1.1", HOST, "Connection: keep-alive",
        "Connection: close"] => closing(Route::Health);
    close_lookalike: open, ["GET /healthz HTTP/1.1", HOST, "Connection: closed"] => routed(Route::Health);
    close_after_publish: open, ["POST /publish/room HTTP/1.1", HOST, "Content-Length: 5",
        "Content-Type: text/plain", "Connection: close"] => closing(text("room", 5));
}

#[test]
fn strip_body_keeps_the_head_and_its_content_length() {
    let mut response = ok("text/plain; charset=utf-8", b"ok\n", true);
    let full = response.clone();
    strip_body(&mut response);
    assert_eq!(response, &full[..full.len() - 3]);
    assert!(response.ends_with(b"Content-Length: 3\r\nCache-Control: no-store\r\n\r\n"));
}

#[test]
fn ok_response_exact() {
    assert_eq!(
        String::from_utf8(ok("text/plain; charset=utf-8", b"ok\n", true)).unwrap(),
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 3\r\n\
             Cache-Control: no-store\r\n\r\nok\n"
    );
    assert_eq!(
        String::from_utf8(ok("text/plain; charset=utf-8", b"ok\n", false)).unwrap(),
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 3\r\n\
             Cache-Control: no-store\r\nConnection: close\r\n\r\nok\n"
    );
    assert_eq!(
        ok("application/octet-stream", b"", true),
        b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: 0\r\n\
              Cache-Control: no-store\r\n\r\n"
    );
    assert_eq!(
        String::from_utf8(json("{\"n\":1}", false)).unwrap(),
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 7\r\n\
             Cache-Control: no-store\r\nConnection: close\r\n\r\n{\"n\":1}"
    );
}

#[test]
fn json_string_vectors() {
    let cases = [
        ("", r#""""#),
        ("room42", r#""room42""#),
        ("say \"hi\"", r#""say \"hi\"""#),
        (r"C:\dir\", r#""C:\\dir\\""#),
        ("a\nb", r#""a\u000ab""#),
        ("\0\t\r\x1b\x1f", r#""\u0000\u0009\u000d\u001b\u001f""#),
        (" ~\x7f/", "\" ~\x7f/\""),
        ("café ✓ 😀", "\"café ✓ 😀\""),
    ];
    for (input, want) in cases {
        assert_eq!(json_string(input), want, "{input:?}");
        assert_eq!(unjson(want).as_deref(), Some(input), "{want}");
    }
}

/// Every API refusal, byte for byte.
#[test]
fn refusal_responses_exact() {
    let cases = [
        (
            Refusal::UNAUTHORIZED,
            "HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nContent-Length: 48\r\n\
                 Connection: close\r\nWWW-Authenticate: Bearer\r\n\r\n\
                 {\"error\":\"missing Authorization: Bearer token\"}\n",
        ),
        (
            Refusal::FORBIDDEN_TOKEN,
            "HTTP/1.1 403 Forbidden\r\nContent-Type: application/json\r\nContent-Length: 32\r\n\
                 Connection: close\r\n\r\n{\"error\":\"wrong publish token\"}\n",
        ),
        (
            Refusal::LENGTH_REQUIRED,
            "HTTP/1.1 411 Length Required\r\nContent-Type: application/json\r\nContent-Length: 71\r\n\
                 Connection: close\r\n\r\n\
                 {\"error\":\"Content-Length required (chunked bodies are not supported)\"}\n",
        ),
        (
            Refusal::BAD_LENGTH,
            "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: 35\r\n\
                 Connection: close\r\n\r\n{\"error\":\"invalid Content-Length\"}\n",
        ),
        (
            Refusal::TOO_LARGE,
            "HTTP/1.1 413 Payload Too Large\r\nContent-Type: application/json\r\n\
                 Content-Length: 43\r\nConnection: close\r\n\r\n\
                 {\"error\":\"body larger than --max-message\"}\n",
        ),
        (
            Refusal::BODY_NOT_UTF8,
            "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: 36\r\n\
                 Connection: close\r\n\r\n{\"error\":\"text body must be UTF-8\"}\n",
        ),
        (
            Refusal::POST_ONLY,
            "HTTP/1.1 405 Method Not Allowed\r\nContent-Type: application/json\r\n\
                 Content-Length: 40\r\nConnection: close\r\nAllow: POST\r\n\r\n\
                 {\"error\":\"only POST is supported here\"}\n",
        ),
        (
            Refusal::GET_ONLY,
            "HTTP/1.1 405 Method Not Allowed\r\nContent-Type: application/json\r\n\
                 Content-Length: 49\r\nConnection: close\r\nAllow: GET, HEAD\r\n\r\n\
                 {\"error\":\"only GET and HEAD are supported here\"}\n",
        ),
        (
            Refusal::NO_SUCH_CHANNEL,
            "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: 28\r\n\
                 Connection: close\r\n\r\n{\"error\":\"no such channel\"}\n",
        ),
    ];
    for (refusal, want) in cases {
        assert_eq!(String::from_utf8(refusal.response()).unwrap(), want);
    }
}

/// Every refusal the server sends, handshake and API alike, has a body that is one JSON
/// object `{"error": reason}` (read back by an independent decoder), and a `Content-Length`
/// that is the body's.
#[test]
fn every_refusal_body_is_the_reason_as_json() {
    let all = Refusal::ALL;
    for r in all {
        let response = String::from_utf8(r.response()).unwrap();
        let (head, body) = response.split_once("\r\n\r\n").unwrap();
        assert!(
            head.starts_with(&format!("HTTP/1.1 {} ", r.status)),
            "{head}"
        );
        assert!(
            head.contains(&format!("\r\nContent-Length: {}\r\n", body.len())),
            "{head}"
        );
        assert!(
            head.contains("\r\nContent-Type: application/json\r\n"),
            "{head}"
        );
        let value = body
            .strip_prefix("{\"error\":")
            .and_then(|b| b.strip_suffix("}\n"))
            .unwrap_or_else(|| panic!("not an error object: {body:?}"));
        assert_eq!(unjson(value).as_deref(), Some(r.reason), "{body:?}");
    }
}

/// Reads `s` as exactly one JSON string literal (RFC 8259 §7): the test's own decoder, so
/// [`json_string`] is not checked against itself.
fn unjson(s: &str) -> Option<String> {
    let mut chars = s.strip_prefix('"')?.strip_suffix('"')?.chars();
    let mut out = String::new();
    while let Some(c) = chars.next() {
        let c = match c {
            '"' => return None,
            '\\' => match chars.next()? {
                c @ ('"' | '\\' | '/') => c,
                'b' => '\u{8}',
                'f' => '\u{c}',
                'n' => '\n',
                'r' => '\r',
                't' => '\t',
                'u' => {
                    let hex: String = chars.by_ref().take(4).collect();
                    if hex.len() != 4 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                        return None;
                    }
                    char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?
                }
                _ => return None,
            },
            c if c < ' ' => return None,
            c => c,
        };
        out.push(c);
    }
    Some(out)
}

/// Every byte percent-encoded, as the strictest client would send it.
fn encode_all(name: &str) -> String {
    name.bytes().map(|b| format!("%{b:02X}")).collect()
}

proptest! {
    #[test]
    fn json_string_round_trips(s in any::<String>()) {
        prop_assert_eq!(unjson(&json_string(&s)), Some(s));
    }

    #[test]
    fn any_channel_routes_plain_or_percent_encoded(
        name in "[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}",
        lower in any::<bool>(),
    ) {
        let mut encoded = encode_all(&name);
        if lower {
            encoded = encoded.to_lowercase();
        }
        // `%` starts an escape in a path, so only names without it travel unencoded.
        if !name.contains('%') {
            let line = format!("GET /channels/{name} HTTP/1.1");
            prop_assert_eq!(request(&[&line, HOST], &open()), routed(channel(&name)));
        }
        let line = format!("GET /channels/{encoded} HTTP/1.1");
        prop_assert_eq!(request(&[&line, HOST], &open()), routed(channel(&name)));
        let line = format!("POST /publish/{encoded}?q HTTP/1.1");
        prop_assert_eq!(
            request(&[&line, HOST, "Content-Length: 3"], &open()),
            routed(binary(&name, 3))
        );
    }

    #[test]
    fn any_path_routes_to_a_valid_channel_or_refuses(
        path in "/[!-~]{0,80}",
        post in any::<bool>(),
    ) {
        let line = format!("{} {path} HTTP/1.1", if post { "POST" } else { "GET" });
        let head = format!("{line}\r\n{HOST}\r\nContent-Length: 1\r\n\r\n");
        match handshake::parse(head.as_bytes(), &open()) {
            Ok(Decoded::Complete((Request::Http(req), n))) => {
                prop_assert_eq!(n, head.len());
                match req.route {
                    Route::Channel(name) | Route::Publish { channel: name, .. } => {
                        prop_assert!(handshake::is_channel(name.as_bytes()), "{name:?}");
                    }
                    _ => {}
                }
            }
            Ok(other) => prop_assert!(false, "{other:?}"),
            Err(_) => {}
        }
    }
}

#[test]
fn tokens_match_only_when_equal_whatever_their_lengths() {
    assert!(token_matches(b"s3cret", b"s3cret"));
    assert!(!token_matches(b"s3cres", b"s3cret"));
    assert!(!token_matches(b"s3cre", b"s3cret"), "a prefix");
    assert!(!token_matches(b"s3crett", b"s3cret"), "longer");
    assert!(!token_matches(b"", b"s3cret"));
}
