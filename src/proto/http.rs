//! The plain HTTP/1.1 API served on the WebSocket port: routing and responses.
//!
//! [`super::handshake::parse`] reads every request head; one that is not a WebSocket upgrade is
//! routed here. Persistent connections are the HTTP/1.1 default (RFC 7230 §6.3): a request is
//! answered and the next one read from the same connection unless it said `Connection: close`.
//! Errors are [`Refusal`]s: a JSON body, then the connection is closed (after a bad request
//! the framing of whatever follows cannot be trusted).

use subtle::ConstantTimeEq;

use super::handshake::{Policy, Refusal, is_channel, list, trim, values};

/// A routed API request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpRequest {
    /// What to do.
    pub route: Route,
    /// Whether the connection stays open for another request after the response.
    pub keep_alive: bool,
}

/// The API's endpoints.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// `GET /healthz`: liveness.
    Health,
    /// `GET /`: the embedded demo page.
    Index,
    /// `GET /metrics`: Prometheus text exposition.
    Metrics,
    /// `GET /channels`: every channel with its subscriber count.
    Channels,
    /// `GET /channels/{name}`: one channel (`name` percent-decoded, then a valid channel name).
    Channel(String),
    /// `POST /publish/{channel}`: the body, `body_len` bytes after the head, is one message.
    Publish {
        /// The channel to publish to (percent-decoded from the path).
        channel: String,
        /// Sent as a text frame (`text/*` or `application/json`; must be UTF-8) or binary.
        text: bool,
        /// The `Content-Length`.
        body_len: usize,
    },
}

/// The path prefix for publishing.
pub const PUBLISH_PREFIX: &str = "/publish/";
/// The path prefix for one channel's info.
pub const CHANNEL_PREFIX: &str = "/channels/";

impl Refusal {
    /// `POST /publish` without `Authorization` while `--publish-token` is set.
    pub const UNAUTHORIZED: Self = Self::new_with(
        401,
        "missing Authorization: Bearer token",
        "WWW-Authenticate: Bearer\r\n",
    );
    /// A wrong bearer token.
    pub const FORBIDDEN_TOKEN: Self = Self::new_with(403, "wrong publish token", "");
    /// A publish without `Content-Length` (or with chunked encoding, which is not supported).
    pub const LENGTH_REQUIRED: Self = Self::new_with(
        411,
        "Content-Length required (chunked bodies are not supported)",
        "",
    );
    /// A `Content-Length` that is not a number.
    pub const BAD_LENGTH: Self = Self::new_with(400, "invalid Content-Length", "");
    /// A body over `--max-message`.
    pub const TOO_LARGE: Self = Self::new_with(413, "body larger than --max-message", "");
    /// A text body that is not UTF-8.
    pub const BODY_NOT_UTF8: Self = Self::new_with(400, "text body must be UTF-8", "");
    /// A method other than `POST` on `/publish/…`.
    pub const POST_ONLY: Self =
        Self::new_with(405, "only POST is supported here", "Allow: POST\r\n");
    /// A method other than `GET` on a read-only endpoint.
    pub const GET_ONLY: Self = Self::new_with(405, "only GET is supported here", "Allow: GET\r\n");
    /// `GET /channels/{name}` for a channel nobody is on.
    pub const NO_SUCH_CHANNEL: Self = Self::new_with(404, "no such channel", "");
}

impl Refusal {
    /// Every refusal the server can send, handshake and API alike (for tests that check them
    /// all: distinct reasons, standard status phrases, JSON bodies).
    pub const ALL: [Refusal; 26] = [
        Refusal::HEAD_TOO_LARGE,
        Refusal::TOO_MANY_HEADERS,
        Refusal::MALFORMED,
        Refusal::METHOD_NOT_ALLOWED,
        Refusal::HTTP_VERSION,
        Refusal::MISSING_HOST,
        Refusal::NOT_FOUND,
        Refusal::UPGRADE_HEADER,
        Refusal::CONNECTION_HEADER,
        Refusal::WS_VERSION,
        Refusal::MISSING_KEY,
        Refusal::INVALID_KEY,
        Refusal::ORIGIN_NOT_ALLOWED,
        Refusal::INVALID_CHANNEL,
        Refusal::NO_CHANNEL,
        Refusal::SERVICE_UNAVAILABLE,
        Refusal::TIMEOUT,
        Refusal::UNAUTHORIZED,
        Refusal::FORBIDDEN_TOKEN,
        Refusal::LENGTH_REQUIRED,
        Refusal::BAD_LENGTH,
        Refusal::TOO_LARGE,
        Refusal::BODY_NOT_UTF8,
        Refusal::POST_ONLY,
        Refusal::GET_ONLY,
        Refusal::NO_SUCH_CHANNEL,
    ];
}

/// Routes a complete, syntactically valid request that is not a WebSocket upgrade.
pub fn route(req: &httparse::Request<'_, '_>, policy: &Policy<'_>) -> Result<HttpRequest, Refusal> {
    let full = req.path.unwrap_or("");
    let path = full.split_once('?').map_or(full, |(path, _query)| path);
    let get = req.method == Some("GET");
    let route = if let Some(channel) = path.strip_prefix(PUBLISH_PREFIX) {
        if req.method != Some("POST") {
            return Err(Refusal::POST_ONLY);
        }
        publish(req.headers, channel, policy)?
    } else {
        let route = match path {
            "/healthz" => Route::Health,
            "/" => Route::Index,
            "/metrics" => Route::Metrics,
            "/channels" => Route::Channels,
            _ => match path.strip_prefix(CHANNEL_PREFIX) {
                Some(name) => Route::Channel(path_channel(name)?),
                None => return Err(Refusal::NOT_FOUND),
            },
        };
        if !get {
            return Err(Refusal::GET_ONLY);
        }
        route
    };
    let close = list(req.headers, "Connection").any(|t| t.eq_ignore_ascii_case(b"close"));
    Ok(HttpRequest {
        route,
        keep_alive: !close,
    })
}

fn publish(
    headers: &[httparse::Header<'_>],
    channel: &str,
    policy: &Policy<'_>,
) -> Result<Route, Refusal> {
    if let Some(token) = policy.publish_token {
        let given = trim(header(headers, "Authorization").ok_or(Refusal::UNAUTHORIZED)?);
        // The auth scheme is case-insensitive (RFC 7235 §2.1); `bearer x` is a Bearer token.
        let bearer = match given.split_at_checked(7) {
            Some((scheme, token)) if scheme.eq_ignore_ascii_case(b"Bearer ") => token,
            _ => return Err(Refusal::UNAUTHORIZED),
        };
        // Constant time, so the token cannot be guessed byte by byte from response timing.
        if !bool::from(trim(bearer).ct_eq(token.as_bytes())) {
            return Err(Refusal::FORBIDDEN_TOKEN);
        }
    }
    let channel = path_channel(channel)?;
    if header(headers, "Transfer-Encoding").is_some() {
        return Err(Refusal::LENGTH_REQUIRED);
    }
    let body_len = content_length(headers)?;
    if body_len > policy.max_message {
        return Err(Refusal::TOO_LARGE);
    }
    let media = header(headers, "Content-Type").map_or(&b""[..], |v| {
        trim(v.split(|&b| b == b';').next().unwrap_or_default())
    });
    let text = media.len() >= 5 && media[..5].eq_ignore_ascii_case(b"text/")
        || media.eq_ignore_ascii_case(b"application/json");
    Ok(Route::Publish {
        channel,
        text,
        body_len,
    })
}

/// The body length from `Content-Length`: decimal digits only; repeated lines must agree, since
/// disagreeing lengths leave the message framing ambiguous (RFC 7230 §3.3.2).
fn content_length(headers: &[httparse::Header<'_>]) -> Result<usize, Refusal> {
    let mut lines = values(headers, "Content-Length").map(trim);
    let first = lines.next().ok_or(Refusal::LENGTH_REQUIRED)?;
    if first.is_empty() || !first.iter().all(u8::is_ascii_digit) || lines.any(|l| l != first) {
        return Err(Refusal::BAD_LENGTH);
    }
    // All digits, so the only way to fail is a number too big for `usize`: too large, not bad.
    std::str::from_utf8(first)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(Refusal::TOO_LARGE)
}

/// The channel named by a path segment: percent-decoded (RFC 3986 §2.1, so a client may send
/// `encodeURIComponent(name)`), then it must be a valid channel name like a subprotocol offer.
fn path_channel(segment: &str) -> Result<String, Refusal> {
    let hex = |b: Option<&u8>| b.and_then(|&b| char::from(b).to_digit(16));
    let mut name = Vec::with_capacity(segment.len());
    let mut bytes = segment.as_bytes().iter();
    while let Some(&b) = bytes.next() {
        if b == b'%' {
            let (hi, lo) = (hex(bytes.next()), hex(bytes.next()));
            let (Some(hi), Some(lo)) = (hi, lo) else {
                return Err(Refusal::INVALID_CHANNEL);
            };
            name.push(((hi << 4) | lo) as u8);
        } else {
            name.push(b);
        }
    }
    if !is_channel(&name) {
        return Err(Refusal::INVALID_CHANNEL);
    }
    // A channel name is ASCII (`tchar`s only), so this cannot fail.
    String::from_utf8(name).map_err(|_| Refusal::INVALID_CHANNEL)
}

/// The first value of header `name`.
fn header<'h>(headers: &'h [httparse::Header<'_>], name: &'h str) -> Option<&'h [u8]> {
    values(headers, name).next()
}

/// A complete `200 OK` response with `body` of `content_type`.
pub fn ok(content_type: &str, body: &[u8], keep_alive: bool) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\n{}\r\n",
        body.len(),
        if keep_alive {
            ""
        } else {
            "Connection: close\r\n"
        },
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

/// A JSON `200 OK`.
pub fn json(body: &str, keep_alive: bool) -> Vec<u8> {
    ok("application/json", body.as_bytes(), keep_alive)
}

/// `s` as a JSON string literal, quotes included (RFC 8259 §7).
pub fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
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
        }
    }

    /// Publishing needs `Authorization: Bearer s3cret`.
    fn guarded() -> Policy<'static> {
        Policy {
            publish_token: Some("s3cret"),
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
        })
    }

    fn closing(route: Route) -> Result<HttpRequest, Refusal> {
        Ok(HttpRequest {
            route,
            keep_alive: false,
        })
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
        index: open, ["GET / HTTP/1.1", HOST] => routed(Route::Index);
        index_query: open, ["GET /?a=b&c HTTP/1.1", HOST] => routed(Route::Index);
        metrics: open, ["GET /metrics HTTP/1.1", HOST] => routed(Route::Metrics);
        channels: open, ["GET /channels HTTP/1.1", HOST] => routed(Route::Channels);
        channels_query: open, ["GET /channels?limit=1 HTTP/1.1", HOST] => routed(Route::Channels);
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
        head_metrics: open, ["HEAD /metrics HTTP/1.1", HOST] => Err(Refusal::GET_ONLY);
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
        token_not_needed_to_read: guarded, ["GET /channels HTTP/1.1", HOST] => routed(Route::Channels);
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
                 Content-Length: 39\r\nConnection: close\r\nAllow: GET\r\n\r\n\
                 {\"error\":\"only GET is supported here\"}\n",
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
}
