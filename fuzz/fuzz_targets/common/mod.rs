//! What the `handshake` and `http_request` targets share: the policies every input is parsed
//! under, and checks of the responses and routes `handshake::parse` produces.
#![allow(dead_code)]

use std::sync::LazyLock;

use fanout::config::MAX_HEADER_BYTES;
use fanout::proto::handshake::{self, Policy, Refusal};
use fanout::proto::http::{self, HttpRequest, Route};

/// The publish token of [`strict`].
pub const TOKEN: &str = "s3cret";

static ORIGINS: LazyLock<Vec<String>> = LazyLock::new(|| vec!["https://example.com".to_owned()]);

/// Every field is set (there is no `Default`): a new field fails to compile here, on purpose.
///
/// The server's defaults: no default channel, any origin, 8 KiB heads, no token.
pub fn open() -> Policy<'static> {
    Policy {
        default_channel: None,
        allowed_origins: &[],
        max_header_bytes: MAX_HEADER_BYTES,
        max_message: 4096,
        publish_token: None,
        auth: None,
        now_unix: 0,
        admin_token: None,
        deflate: false,
    }
}

/// Everything optional switched on, with small limits the fuzzer can reach.
pub fn strict() -> Policy<'static> {
    Policy {
        default_channel: Some("lobby"),
        allowed_origins: &ORIGINS,
        max_header_bytes: 512,
        max_message: 16,
        publish_token: Some(TOKEN),
        auth: None,
        now_unix: 0,
        admin_token: None,
        deflate: false,
    }
}

/// A head limit shorter than most requests, and no publish body at all.
pub fn tiny() -> Policy<'static> {
    Policy {
        default_channel: Some("lobby"),
        allowed_origins: &[],
        max_header_bytes: 64,
        max_message: 0,
        publish_token: None,
        auth: None,
        now_unix: 0,
        admin_token: None,
        deflate: false,
    }
}

pub fn policies() -> [Policy<'static>; 3] {
    [open(), strict(), tiny()]
}

/// The first value of header `name` in a parsed response.
fn header<'a>(headers: &[httparse::Header<'a>], name: &str) -> Option<&'a [u8]> {
    headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value)
}

/// Checks that `bytes` is one whole HTTP/1.1 response with `status`, a `Content-Length` equal
/// to its body's length (when `body` is true; else the head of a `HEAD` answer), and nothing
/// after. Returns the head length.
pub fn check_response(bytes: &[u8], status: u16, body: bool) -> usize {
    let mut headers = [httparse::EMPTY_HEADER; 16];
    let mut res = httparse::Response::new(&mut headers);
    let n = match res.parse(bytes) {
        Ok(httparse::Status::Complete(n)) => n,
        other => panic!(
            "response {:?} does not parse: {other:?}",
            String::from_utf8_lossy(bytes)
        ),
    };
    assert_eq!(res.version, Some(1), "not HTTP/1.1");
    assert_eq!(res.code, Some(status));
    assert!(
        res.reason.is_some_and(|r| !r.is_empty() && r != "Error"),
        "reason phrase {:?}",
        res.reason
    );
    assert!(bytes.starts_with(format!("HTTP/1.1 {status} ").as_bytes()));
    assert!(
        bytes[..n].ends_with(b"\r\n\r\n"),
        "head not CRLF-terminated"
    );
    let lengths: Vec<_> = res
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("Content-Length"))
        .collect();
    assert_eq!(lengths.len(), 1, "one Content-Length");
    let length: usize = std::str::from_utf8(lengths[0].value)
        .unwrap()
        .parse()
        .unwrap();
    if body {
        assert_eq!(length, bytes.len() - n, "Content-Length vs body");
    } else {
        assert_eq!(bytes.len(), n, "HEAD answer with a body");
    }
    n
}

/// Checks a refusal and the response it sends, with and without a body.
pub fn check_refusal(refusal: &Refusal) {
    assert!(
        Refusal::ALL.contains(refusal),
        "{refusal:?} not in Refusal::ALL"
    );
    assert!((400..600).contains(&refusal.status), "{refusal:?}");
    assert!(
        refusal.headers.is_empty() || refusal.headers.ends_with("\r\n"),
        "{refusal:?}"
    );
    let mut response = refusal.response();
    let n = check_response(&response, refusal.status, true);
    let body = &response[n..];
    assert!(
        body.starts_with(b"{\"error\":\"") && body.ends_with(b"\"}\n"),
        "{body:?}"
    );
    let mut headers = [httparse::EMPTY_HEADER; 16];
    let mut res = httparse::Response::new(&mut headers);
    res.parse(&response).unwrap();
    assert_eq!(header(res.headers, "Connection"), Some(&b"close"[..]));
    // A `HEAD` request gets the same head without the body.
    http::strip_body(&mut response);
    assert_eq!(response.len(), n);
    check_response(&response, refusal.status, false);
}

/// Whether `haystack` contains `needle`, ASCII case-insensitively.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}

/// Routing invariants of an API request whose head is `head` (the bytes `parse` consumed) at
/// the start of `data`, parsed under `policy`.
pub fn check_http(data: &[u8], head: &[u8], policy: &Policy<'_>, req: &HttpRequest) {
    // The server decides on these from the raw bytes (stats, and stripping a refusal's body).
    assert_eq!(
        req.head,
        http::is_head(data),
        "is_head disagrees with the parse"
    );
    assert_eq!(
        matches!(req.route, Route::Publish { .. }),
        http::is_publish(data),
        "is_publish disagrees with the route"
    );
    if !req.keep_alive {
        assert!(contains(head, b"close"), "closed without Connection: close");
    }
    match &req.route {
        Route::Publish {
            channel, body_len, ..
        } => {
            assert!(!req.head);
            assert!(
                *body_len <= policy.max_message,
                "{body_len} > {}",
                policy.max_message
            );
            assert!(handshake::is_channel(channel.as_bytes()), "{channel:?}");
            if let Some(token) = policy.publish_token {
                let token = token.as_bytes();
                assert!(
                    head.windows(token.len()).any(|w| w == token),
                    "published without the token"
                );
            }
        }
        Route::Channel(name) => assert!(handshake::is_channel(name.as_bytes()), "{name:?}"),
        Route::Channels { after, limit } => {
            assert!((1..=http::MAX_PAGE).contains(limit), "limit {limit}");
            if let Some(after) = after {
                assert!(handshake::is_channel(after.as_bytes()), "after {after:?}");
            }
        }
        Route::Health | Route::Index | Route::Metrics => {}
    }
    if !matches!(req.route, Route::Publish { .. }) {
        // Only a publish has a body: anything else framing one would let a request hide in it.
        let mut headers = [httparse::EMPTY_HEADER; handshake::MAX_HEADERS];
        let mut parsed = httparse::Request::new(&mut headers);
        assert_eq!(
            parsed.parse(head),
            Ok(httparse::Status::Complete(head.len()))
        );
        for h in parsed.headers.iter() {
            assert!(
                !h.name.eq_ignore_ascii_case("Transfer-Encoding"),
                "GET with a body"
            );
            if h.name.eq_ignore_ascii_case("Content-Length") {
                let zero = h.value.trim_ascii();
                assert!(
                    !zero.is_empty() && zero.iter().all(|&b| b == b'0'),
                    "GET with a body of {:?}",
                    h.value
                );
            }
        }
    }
}
