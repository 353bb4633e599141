//! The HTTP/1.1 request layer shared by the handshake and the API: what the server enforces
//! ([`Policy`]), every refusal it can send ([`Refusal`], each a complete response), and the
//! header helpers both read requests with. It depends on neither [`super::handshake`] nor
//! [`super::http`]; they depend on it (and the handshake, which reads every request head
//! first, on the API's router).

use crate::auth::AuthKeys;

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
    /// When set, `POST /publish` needs `Authorization: Bearer <token>` (or, with `auth`, a
    /// JWT whose `publish` claim covers the channel).
    pub publish_token: Option<&'a str>,
    /// When set, every WebSocket upgrade needs a valid JWT granting its channel, and a
    /// `POST /publish` may present one (see [`crate::auth`]).
    pub auth: Option<&'a AuthKeys>,
    /// The time, in seconds since the Unix epoch, tokens are checked against.
    pub now_unix: u64,
    /// When set, `GET /channels`, `/channels/{name}` and `/metrics` need
    /// `Authorization: Bearer <token>`.
    pub admin_token: Option<&'a str>,
    /// Whether a permessage-deflate offer may be accepted (`--deflate`).
    pub deflate: bool,
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
        let body = format!("{{\"error\":{}}}\n", json_string(self.reason));
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

impl Refusal {
    /// `POST /publish` without `Authorization` while `--publish-token` is set.
    pub const UNAUTHORIZED: Self = Self::new_with(
        401,
        "missing Authorization: Bearer token",
        "WWW-Authenticate: Bearer\r\n",
    );
    /// A wrong bearer token.
    pub const FORBIDDEN_TOKEN: Self = Self::new_with(403, "wrong publish token", "");
    /// An operator endpoint without `Authorization` while `--admin-token` is set.
    pub const ADMIN_UNAUTHORIZED: Self = Self::new_with(
        401,
        "missing Authorization: Bearer admin token",
        "WWW-Authenticate: Bearer\r\n",
    );
    /// An operator endpoint with a wrong admin token.
    pub const ADMIN_FORBIDDEN: Self = Self::new_with(403, "wrong admin token", "");
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
    /// A method other than `GET` or `HEAD` on a read-only endpoint.
    pub const GET_ONLY: Self = Self::new_with(
        405,
        "only GET and HEAD are supported here",
        "Allow: GET, HEAD\r\n",
    );
    /// A request (head or publish body) that would take the server over
    /// `--max-input-memory`.
    pub const INPUT_MEMORY: Self = Self::new_with(
        503,
        "server busy: input memory full, try again later",
        "Retry-After: 1\r\n",
    );
    /// `GET /channels/{name}` for a channel nobody is on.
    pub const NO_SUCH_CHANNEL: Self = Self::new_with(404, "no such channel", "");
    /// A `GET` or `HEAD` with a body (`Content-Length` other than 0, or `Transfer-Encoding`).
    pub const UNEXPECTED_BODY: Self = Self::new_with(
        400,
        "GET and HEAD requests may not carry a body (Content-Length or Transfer-Encoding)",
        "",
    );
    /// `GET /channels` with a bad `limit` or `after`.
    pub const BAD_PAGE: Self = Self::new_with(
        400,
        "invalid query: limit must be 1-1000 and after a channel name",
        "",
    );
    /// A new channel would take the server over `--max-channels`.
    pub const TOO_MANY_CHANNELS: Self = Self::new_with(
        503,
        "server busy: too many channels (--max-channels), try again later",
        "Retry-After: 1\r\n",
    );
}

impl Refusal {
    /// Every refusal the server can send, handshake and API alike (for tests that check them
    /// all: distinct reasons, standard status phrases, JSON bodies).
    pub const ALL: [Refusal; 33] = [
        Refusal::HEAD_TOO_LARGE,
        Refusal::TOO_MANY_HEADERS,
        Refusal::MALFORMED,
        Refusal::METHOD_NOT_ALLOWED,
        Refusal::HTTP_VERSION,
        Refusal::MISSING_HOST,
        Refusal::DUPLICATE_HOST,
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
        Refusal::ADMIN_UNAUTHORIZED,
        Refusal::ADMIN_FORBIDDEN,
        Refusal::LENGTH_REQUIRED,
        Refusal::BAD_LENGTH,
        Refusal::TOO_LARGE,
        Refusal::BODY_NOT_UTF8,
        Refusal::POST_ONLY,
        Refusal::GET_ONLY,
        Refusal::NO_SUCH_CHANNEL,
        Refusal::INPUT_MEMORY,
        Refusal::UNEXPECTED_BODY,
        Refusal::BAD_PAGE,
        Refusal::TOO_MANY_CHANNELS,
    ];
}

/// The values of every header line named `name` (ASCII case-insensitive), in order.
pub fn values<'h>(
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
pub fn list<'h>(
    headers: &'h [httparse::Header<'_>],
    name: &'h str,
) -> impl Iterator<Item = &'h [u8]> {
    values(headers, name)
        .flat_map(|v| v.split(|&b| b == b','))
        .map(trim)
        .filter(|e| !e.is_empty())
}

/// Whether header `name`'s comma list holds `token`, ASCII case-insensitively.
pub fn has_token(headers: &[httparse::Header<'_>], name: &str, token: &[u8]) -> bool {
    list(headers, name).any(|e| e.eq_ignore_ascii_case(token))
}

/// `bytes` without leading and trailing spaces and tabs (RFC 7230 OWS).
pub fn trim(bytes: &[u8]) -> &[u8] {
    let ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = bytes.iter().position(|b| !ows(b)).unwrap_or(bytes.len());
    let end = bytes.iter().rposition(|b| !ows(b)).map_or(start, |i| i + 1);
    &bytes[start..end]
}

/// RFC 7230 `tchar`: the characters allowed in a token.
pub fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Whether `name` is a valid channel name: a token of 1 to [`MAX_CHANNEL_LEN`] bytes.
pub fn is_channel(name: &[u8]) -> bool {
    (1..=MAX_CHANNEL_LEN).contains(&name.len()) && name.iter().all(|&b| is_tchar(b))
}

/// The first value of header `name`.
pub fn header<'h>(headers: &'h [httparse::Header<'_>], name: &'h str) -> Option<&'h [u8]> {
    values(headers, name).next()
}

/// A complete `application/json` response with `Connection: close` and `extra` header lines.
pub(super) fn json_response(status: u16, extra: &str, body: &str) -> Vec<u8> {
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
pub fn reason_phrase(status: u16) -> &'static str {
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
