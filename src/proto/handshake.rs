//! The HTTP/1.1 opening handshake, server side (RFC 6455 §4.2).
//!
//! This module owns everything between the first byte a client sends and the first WebSocket
//! frame: parsing the request head ([`parse`], incremental over a growing buffer), deciding
//! whether it is a valid upgrade (§4.2.1) and which channel it subscribes to, computing
//! `Sec-WebSocket-Accept` ([`accept_key`], §1.3 and §4.2.2), and producing the exact bytes of the
//! answer: the `101` ([`upgrade_response`]) or a refusal ([`Refusal::response`], §4.2.2 and
//! §4.4). A request that is not an upgrade is handed to [`super::http`], the small HTTP API on
//! the same port. It is sans-I/O: bytes in, values and bytes out.
//!
//! The channel is carried in the subprotocol (`Sec-WebSocket-Protocol`), so a browser joins
//! `room42` with `new WebSocket(url, ["room42"])` and the server echoes it in the `101`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use sha1::{Digest, Sha1};

use super::Decoded;
use super::http::{self, HttpRequest};

/// The GUID appended to `Sec-WebSocket-Key` before hashing (§1.3).
pub const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Most header lines a request may carry; more is refused with 431 rather than grown into, so
/// parsing needs no allocation. Browsers send about 15.
pub const MAX_HEADERS: usize = 64;

/// Longest channel name in bytes: long enough for any room id, short enough to log and key on.
pub const MAX_CHANNEL_LEN: usize = 64;

/// What the handshake enforces, taken from the server's configuration.
#[derive(Clone, Copy, Debug)]
pub struct Policy<'a> {
    /// Channel used when the client offers no subprotocol; `None` refuses such clients (400).
    pub default_channel: Option<&'a str>,
    /// Allowed `Origin` values; empty allows any origin.
    pub allowed_origins: &'a [String],
    /// Largest request head accepted; a longer one is refused with 431.
    pub max_header_bytes: usize,
    /// Largest `POST /publish` body accepted; a larger one is refused with 413.
    pub max_message: usize,
    /// When set, `POST /publish` needs `Authorization: Bearer <token>`.
    pub publish_token: Option<&'a str>,
}

/// An accepted WebSocket upgrade.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upgrade {
    /// The channel the connection subscribes to (the selected subprotocol or the default).
    pub channel: String,
    /// Whether `channel` was offered as a subprotocol (and so is echoed in the 101).
    pub selected_protocol: bool,
    /// The `Sec-WebSocket-Accept` value.
    pub accept: String,
}

/// A request the handshake accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// A valid WebSocket upgrade.
    Upgrade(Upgrade),
    /// A plain HTTP request for the API on the same port.
    Http(HttpRequest),
}

/// A refused request: a complete HTTP response is sent, then the connection is closed.
///
/// Every refusal the server can send is one of the associated constants below, each with its
/// own reason, so a client developer reading the body knows exactly what to fix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The HTTP status code.
    pub status: u16,
    /// A human-readable reason, sent as the response body.
    pub reason: &'static str,
    /// Extra header lines, each ending in `\r\n`, that this status needs to be actionable
    /// (`Allow` on 405, `WWW-Authenticate` on 401, `Upgrade` and `Sec-WebSocket-Version` on
    /// 426); usually empty.
    pub headers: &'static str,
}

impl Refusal {
    pub(crate) const fn new_with(status: u16, reason: &'static str, headers: &'static str) -> Self {
        Refusal {
            status,
            reason,
            headers,
        }
    }

    /// The head grew past [`Policy::max_header_bytes`] (RFC 6585 §5).
    pub const HEAD_TOO_LARGE: Self = Self::new_with(431, "request header fields too large", "");
    /// The head has more than [`MAX_HEADERS`] header lines.
    pub const TOO_MANY_HEADERS: Self =
        Self::new_with(431, "too many header fields (at most 64)", "");
    /// The bytes are not an HTTP request.
    pub const MALFORMED: Self = Self::new_with(400, "malformed HTTP request", "");
    /// The method is not `GET` (§4.1: the handshake is a GET).
    pub const METHOD_NOT_ALLOWED: Self =
        Self::new_with(405, "only GET is supported", "Allow: GET\r\n");
    /// The request is not HTTP/1.1 (§4.1 requires at least 1.1; 2 and 3 use other upgrades).
    pub const HTTP_VERSION: Self = Self::new_with(400, "HTTP/1.1 required", "");
    /// No `Host` header (§4.2.1 item 2, and RFC 7230 §5.4).
    pub const MISSING_HOST: Self = Self::new_with(400, "missing Host header", "");
    /// A path the server does not serve.
    pub const NOT_FOUND: Self = Self::new_with(404, "not found", "");
    /// `Upgrade` does not list `websocket` (§4.2.1 item 3).
    pub const UPGRADE_HEADER: Self = Self::new_with(400, "Upgrade header must list websocket", "");
    /// `Connection` does not list `upgrade` (§4.2.1 item 4).
    pub const CONNECTION_HEADER: Self =
        Self::new_with(400, "Connection header must list upgrade", "");
    /// `Sec-WebSocket-Version` is missing or not 13 (§4.2.1 item 6, §4.4).
    pub const WS_VERSION: Self = Self::new_with(
        426,
        "unsupported WebSocket version, use 13",
        "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n",
    );
    /// No `Sec-WebSocket-Key` (§4.2.1 item 5).
    pub const MISSING_KEY: Self = Self::new_with(400, "missing Sec-WebSocket-Key header", "");
    /// `Sec-WebSocket-Key` is not one padded base64 value of 16 bytes (§4.1).
    pub const INVALID_KEY: Self = Self::new_with(
        400,
        "invalid Sec-WebSocket-Key: must be base64 of 16 bytes",
        "",
    );
    /// `Origin` is not in [`Policy::allowed_origins`] (§4.2.2 item 4, §10.2).
    pub const ORIGIN_NOT_ALLOWED: Self = Self::new_with(403, "origin not allowed", "");
    /// The first offered subprotocol is not a valid channel name.
    pub const INVALID_CHANNEL: Self = Self::new_with(
        400,
        "invalid channel name: must be a token of 1-64 bytes (letters, digits and !#$%&'*+-.^_`|~)",
        "",
    );
    /// No subprotocol offered and no [`Policy::default_channel`].
    pub const NO_CHANNEL: Self = Self::new_with(
        400,
        "no channel: offer one with Sec-WebSocket-Protocol (e.g. new WebSocket(url, [\"room42\"]))",
        "",
    );
    /// Sent to a connection accepted while the server is full.
    pub const SERVICE_UNAVAILABLE: Self =
        Self::new_with(503, "server is at its connection limit", "");
    /// Sent when the head did not arrive within the handshake timeout.
    pub const TIMEOUT: Self = Self::new_with(408, "handshake timed out", "");

    /// The refusal for a connection the server has no room for (503).
    pub fn service_unavailable() -> Self {
        Self::SERVICE_UNAVAILABLE
    }

    /// The refusal for a client too slow to send its request head (408).
    pub fn timeout() -> Self {
        Self::TIMEOUT
    }

    /// The complete HTTP/1.1 response: status line, headers (with `Connection: close`, since
    /// the server closes after sending it) and `{"error":"<reason>"}` as a JSON body.
    pub fn response(&self) -> Vec<u8> {
        let body = format!("{{\"error\":{}}}\n", http::json_string(self.reason));
        json_response(self.status, self.headers, &body)
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status,
            reason_phrase(self.status),
            self.reason
        )
    }
}

impl std::error::Error for Refusal {}

/// Parses a request head from the start of `buf` and decides what to answer (§4.2.1).
///
/// Call it again with the whole buffer each time more bytes arrive: it returns
/// `Ok(Decoded::Partial)` until the blank line ending the head is in `buf`, then
/// `Complete((request, n))` where `n` is the length of the head alone; bytes after it are the
/// client's first frames and belong to the caller. Work is bounded by
/// [`Policy::max_header_bytes`]: only that much of `buf` is ever looked at.
///
/// Checks, in order (the first failure is the answer): head size (431) and HTTP syntax (400;
/// an HTTP version other than 1.x is reported as [`Refusal::HTTP_VERSION`]); HTTP/1.1 (400);
/// `Host` (400). A request with neither `Upgrade` nor `Sec-WebSocket-Key` is not a WebSocket
/// request and is routed by [`http::route`] ([`Request::Http`]). Otherwise: method `GET`
/// (405); `Upgrade` must list
/// `websocket` and `Connection` must list `upgrade` (case-insensitive comma lists; repeated
/// lines are joined) (400); `Sec-WebSocket-Version: 13` (426); `Sec-WebSocket-Key` must be
/// padded base64 of 16 bytes (400); `Origin`, when sent and the policy lists origins, must be
/// listed (403, ASCII case-insensitive); then the channel is chosen.
///
/// The channel is the *first* value offered in `Sec-WebSocket-Protocol`, which must be a valid
/// channel name (an RFC 7230 token of 1–64 bytes) or the request is refused (400): later offers
/// are not tried, so a typo fails loudly instead of silently joining another room. With nothing
/// offered (no header, or only empty ones) the policy's default channel is used, not echoed in
/// the 101 (a server must not select a subprotocol the client did not offer, §4.2.2); without
/// a default that is a 400. `Sec-WebSocket-Extensions` is ignored: no extension is ever
/// accepted, and an offer is never an error. Any path may be upgraded.
pub fn parse(buf: &[u8], policy: &Policy<'_>) -> Result<Decoded<(Request, usize)>, Refusal> {
    let window = &buf[..buf.len().min(policy.max_header_bytes)];
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(window) {
        Ok(httparse::Status::Complete(n)) => check(&req, policy).map(|r| Decoded::Complete((r, n))),
        Ok(httparse::Status::Partial) if buf.len() > policy.max_header_bytes => {
            Err(Refusal::HEAD_TOO_LARGE)
        }
        Ok(httparse::Status::Partial) => Ok(Decoded::Partial),
        Err(httparse::Error::TooManyHeaders) => Err(Refusal::TOO_MANY_HEADERS),
        Err(httparse::Error::Version) => Err(Refusal::HTTP_VERSION),
        Err(_) => Err(Refusal::MALFORMED),
    }
}

/// The rules of [`parse`] applied to a complete, syntactically valid head.
fn check(req: &httparse::Request<'_, '_>, policy: &Policy<'_>) -> Result<Request, Refusal> {
    let headers: &[httparse::Header<'_>] = req.headers;
    if req.version != Some(1) {
        return Err(Refusal::HTTP_VERSION);
    }
    if values(headers, "Host").next().is_none() {
        return Err(Refusal::MISSING_HOST);
    }
    let key = values(headers, "Sec-WebSocket-Key").next();
    if key.is_none() && values(headers, "Upgrade").next().is_none() {
        return http::route(req, policy).map(Request::Http);
    }
    if req.method != Some("GET") {
        return Err(Refusal::METHOD_NOT_ALLOWED);
    }
    if !has_token(headers, "Upgrade", b"websocket") {
        return Err(Refusal::UPGRADE_HEADER);
    }
    if !has_token(headers, "Connection", b"upgrade") {
        return Err(Refusal::CONNECTION_HEADER);
    }
    let mut versions = list(headers, "Sec-WebSocket-Version");
    if (versions.next(), versions.next()) != (Some(&b"13"[..]), None) {
        return Err(Refusal::WS_VERSION);
    }
    let key = trim(key.ok_or(Refusal::MISSING_KEY)?);
    if values(headers, "Sec-WebSocket-Key").nth(1).is_some() || !valid_key(key) {
        return Err(Refusal::INVALID_KEY);
    }
    if !policy.allowed_origins.is_empty() {
        for origin in values(headers, "Origin") {
            let origin = trim(origin);
            if !policy
                .allowed_origins
                .iter()
                .any(|o| o.as_bytes().eq_ignore_ascii_case(origin))
            {
                return Err(Refusal::ORIGIN_NOT_ALLOWED);
            }
        }
    }
    let (channel, selected_protocol) = match list(headers, "Sec-WebSocket-Protocol").next() {
        Some(offer) if is_channel(offer) => (offer.iter().map(|&b| char::from(b)).collect(), true),
        Some(_) => return Err(Refusal::INVALID_CHANNEL),
        None => (
            policy
                .default_channel
                .ok_or(Refusal::NO_CHANNEL)?
                .to_owned(),
            false,
        ),
    };
    Ok(Request::Upgrade(Upgrade {
        channel,
        selected_protocol,
        accept: accept_key(key),
    }))
}

/// The values of every header line named `name` (ASCII case-insensitive), in order.
pub(super) fn values<'h>(
    headers: &'h [httparse::Header<'_>],
    name: &'h str,
) -> impl Iterator<Item = &'h [u8]> {
    headers
        .iter()
        .filter(move |h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value)
}

/// The elements of header `name` read as one comma-separated list over all its lines, trimmed,
/// with empty elements skipped (RFC 7230 §7: recipients ignore them).
pub(super) fn list<'h>(
    headers: &'h [httparse::Header<'_>],
    name: &'h str,
) -> impl Iterator<Item = &'h [u8]> {
    values(headers, name)
        .flat_map(|v| v.split(|&b| b == b','))
        .map(trim)
        .filter(|e| !e.is_empty())
}

/// Whether header `name`'s comma list holds `token`, ASCII case-insensitively.
fn has_token(headers: &[httparse::Header<'_>], name: &str, token: &[u8]) -> bool {
    list(headers, name).any(|e| e.eq_ignore_ascii_case(token))
}

/// `bytes` without leading and trailing spaces and tabs (RFC 7230 OWS).
pub(super) fn trim(bytes: &[u8]) -> &[u8] {
    let ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = bytes.iter().position(|b| !ows(b)).unwrap_or(bytes.len());
    let end = bytes.iter().rposition(|b| !ows(b)).map_or(start, |i| i + 1);
    &bytes[start..end]
}

/// RFC 7230 `tchar`: the characters allowed in a token.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Whether `name` is a valid channel name: a token of 1 to [`MAX_CHANNEL_LEN`] bytes.
pub fn is_channel(name: &[u8]) -> bool {
    (1..=MAX_CHANNEL_LEN).contains(&name.len()) && name.iter().all(|&b| is_tchar(b))
}

/// Whether `key` is standard, padded base64 of exactly 16 bytes (24 characters, `==`-padded).
fn valid_key(key: &[u8]) -> bool {
    key.len() == 24 && STANDARD.decode(key).is_ok_and(|k| k.len() == 16)
}

/// `base64(SHA-1(key + GUID))`, the `Sec-WebSocket-Accept` value for `key` (§4.2.2 item 5.4).
pub fn accept_key(key: &[u8]) -> String {
    let digest = Sha1::new()
        .chain_update(key)
        .chain_update(GUID.as_bytes())
        .finalize();
    STANDARD.encode(digest)
}

/// The `101 Switching Protocols` response completing the handshake (§4.2.2 item 5); the
/// channel is echoed as `Sec-WebSocket-Protocol` only when the client offered it.
pub fn upgrade_response(up: &Upgrade) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n",
        up.accept
    );
    if up.selected_protocol {
        out.push_str(&format!("Sec-WebSocket-Protocol: {}\r\n", up.channel));
    }
    out.push_str("\r\n");
    out.into_bytes()
}

/// A complete `application/json` response with `Connection: close` and `extra` header lines.
fn json_response(status: u16, extra: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n{extra}\r\n{body}",
        reason_phrase(status),
        body.len(),
    )
    .into_bytes()
}

/// The standard reason phrase for the statuses the server sends (RFC 7231 §6.1, RFC 7235 §3.1,
/// RFC 6585).
fn reason_phrase(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Payload Too Large",
        426 => "Upgrade Required",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::http::Route;
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
                accept: ACCEPT.into()
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
        plain_post_root: strict, ["POST / HTTP/1.1", HOST] => 405, "only GET is supported here";
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
}
