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
    /// More than one `Host` header line (RFC 9112 §3.2: a server must answer 400).
    pub const DUPLICATE_HOST: Self = Self::new_with(400, "more than one Host header", "");
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
/// exactly one `Host` (400); no body on a `GET` or `HEAD` (400, see [`http::no_body`]). A
/// request with neither `Upgrade` nor `Sec-WebSocket-Key` is not a WebSocket request and is
/// routed by [`http::route`] ([`Request::Http`]). Otherwise: method `GET` (405); `Upgrade` must
/// list
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
    let mut hosts = values(headers, "Host");
    if hosts.next().is_none() {
        return Err(Refusal::MISSING_HOST);
    }
    if hosts.next().is_some() {
        return Err(Refusal::DUPLICATE_HOST);
    }
    if matches!(req.method, Some("GET" | "HEAD")) {
        http::no_body(headers)?;
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
mod tests;
