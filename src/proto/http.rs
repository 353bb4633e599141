//! The plain HTTP/1.1 API served on the WebSocket port: routing and responses.
//!
//! [`super::handshake::parse`] reads every request head; one that is not a WebSocket upgrade is
//! routed here. Persistent connections are the HTTP/1.1 default (RFC 7230 §6.3): a request is
//! answered and the next one read from the same connection unless it said `Connection: close`.
//! Errors are [`Refusal`]s: a JSON body, then the connection is closed (after a bad request
//! the framing of whatever follows cannot be trusted).

use subtle::ConstantTimeEq;

pub use super::request::json_string;
use super::request::{Policy, Refusal, header, is_channel, list, trim, values};

/// A routed API request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpRequest {
    /// What to do.
    pub route: Route,
    /// Whether the connection stays open for another request after the response.
    pub keep_alive: bool,
    /// A `HEAD` request: answered like `GET`, without the body (RFC 9110 §9.3.2).
    pub head: bool,
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
    /// `GET /channels?after=NAME&limit=N`: one page of channels in name order, with their
    /// subscriber counts: at most `limit` of them, the first after `after`.
    Channels {
        /// The page starts after this name (the last name of the previous page).
        after: Option<String>,
        /// Most channels on the page.
        limit: usize,
    },
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

/// Channels on one `GET /channels` page unless `limit` says fewer: at most about 120 KiB of
/// JSON (64-byte names), built in well under a millisecond, so one request's answer (and the
/// loop's time building it) stays small however many channels exist.
pub const DEFAULT_PAGE: usize = 1000;

/// The largest `limit` a `GET /channels` page may ask for (the default: pages only shrink).
pub const MAX_PAGE: usize = DEFAULT_PAGE;

/// Routes a complete, syntactically valid request that is not a WebSocket upgrade.
pub fn route(req: &httparse::Request<'_, '_>, policy: &Policy<'_>) -> Result<HttpRequest, Refusal> {
    let full = req.path.unwrap_or("");
    let (path, query) = full.split_once('?').unwrap_or((full, ""));
    let head = req.method == Some("HEAD");
    let get = head || req.method == Some("GET");
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
            "/channels" => page(query)?,
            _ => match path.strip_prefix(CHANNEL_PREFIX) {
                Some(name) => Route::Channel(path_channel(name)?),
                None => return Err(Refusal::NOT_FOUND),
            },
        };
        if !get {
            return Err(Refusal::GET_ONLY);
        }
        if matches!(
            route,
            Route::Metrics | Route::Channels { .. } | Route::Channel(_)
        ) {
            admin(req.headers, policy)?;
        }
        route
    };
    let close = list(req.headers, "Connection").any(|t| t.eq_ignore_ascii_case(b"close"));
    Ok(HttpRequest {
        route,
        keep_alive: !close,
        head,
    })
}

/// The bearer token of `Authorization` (the scheme is case-insensitive, RFC 7235 §2.1), or
/// 401 when there is none.
fn bearer<'h>(headers: &'h [httparse::Header<'_>]) -> Result<&'h [u8], Refusal> {
    let given = trim(header(headers, "Authorization").ok_or(Refusal::UNAUTHORIZED)?);
    match given.split_at_checked(7) {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case(b"Bearer ") => Ok(trim(token)),
        _ => Err(Refusal::UNAUTHORIZED),
    }
}

/// With `--admin-token`, the operator endpoints need it as a bearer token.
fn admin(headers: &[httparse::Header<'_>], policy: &Policy<'_>) -> Result<(), Refusal> {
    let Some(token) = policy.admin_token else {
        return Ok(());
    };
    let given = bearer(headers).map_err(|_| Refusal::ADMIN_UNAUTHORIZED)?;
    if token_matches(given, token.as_bytes()) {
        Ok(())
    } else {
        Err(Refusal::ADMIN_FORBIDDEN)
    }
}

/// Who may publish: anyone, without `--publish-token` or `--auth-*`; otherwise a bearer token
/// that is the publish token, or (with `--auth-*`) a valid JWT, returned so that its `publish`
/// claim can be checked against the channel. Checked before the channel name, so an
/// unauthenticated client learns nothing about names.
fn credentials(
    headers: &[httparse::Header<'_>],
    policy: &Policy<'_>,
) -> Result<Option<crate::auth::Grant>, Refusal> {
    if policy.publish_token.is_none() && policy.auth.is_none() {
        return Ok(None);
    }
    let given = bearer(headers)?;
    if let Some(token) = policy.publish_token
        && token_matches(given, token.as_bytes())
    {
        return Ok(None);
    }
    match policy.auth {
        Some(keys) => Ok(Some(keys.verify(given, policy.now_unix)?)),
        None => Err(Refusal::FORBIDDEN_TOKEN),
    }
}

fn publish(
    headers: &[httparse::Header<'_>],
    channel: &str,
    policy: &Policy<'_>,
) -> Result<Route, Refusal> {
    let grant = credentials(headers, policy)?;
    let channel = path_channel(channel)?;
    if grant.is_some_and(|g| !g.may_publish(&channel)) {
        return Err(crate::auth::AuthError::ForbiddenPublish.into());
    }
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

/// Checks that a `GET` or `HEAD` request carries no body.
///
/// RFC 9112 §6.3 frames a body on any request by its length headers, and it belongs to that
/// request; a server that ignored them would answer the body as a second request, which is
/// how a request hidden in a `GET`'s body gets past a proxy ("smuggling"). No endpoint here
/// reads a `GET` body, so one is refused (400, and the connection closes) rather than read
/// and thrown away: it is a broken client or an attack, and refusing ends any doubt about
/// where the next request starts at no cost. `Content-Length: 0` frames no body and passes.
pub fn no_body(headers: &[httparse::Header<'_>]) -> Result<(), Refusal> {
    if header(headers, "Transfer-Encoding").is_some() {
        return Err(Refusal::UNEXPECTED_BODY);
    }
    match content_length(headers) {
        Ok(0) | Err(Refusal::LENGTH_REQUIRED) => Ok(()),
        Err(Refusal::BAD_LENGTH) => Err(Refusal::BAD_LENGTH),
        _ => Err(Refusal::UNEXPECTED_BODY),
    }
}

/// `GET /channels`' query: `limit` (1 to [`MAX_PAGE`], default [`DEFAULT_PAGE`]) and `after`
/// (a channel name, percent-decoded); other parameters are ignored.
fn page(query: &str) -> Result<Route, Refusal> {
    let mut after = None;
    let mut limit = DEFAULT_PAGE;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "limit" => {
                limit = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_PAGE).contains(n))
                    .ok_or(Refusal::BAD_PAGE)?;
            }
            "after" => after = Some(path_channel(value).map_err(|_| Refusal::BAD_PAGE)?),
            _ => {}
        }
    }
    Ok(Route::Channels { after, limit })
}

/// Whether `given` is `expected`, in time that depends on neither: their SHA-256 digests are
/// compared in constant time, so response timing reveals neither the bytes of the token (a
/// byte-by-byte comparison stops at the first difference) nor its length (a constant-time
/// comparison of unequal lengths returns at once).
pub fn token_matches(given: &[u8], expected: &[u8]) -> bool {
    use sha2::{Digest, Sha256};
    bool::from(Sha256::digest(given).ct_eq(&Sha256::digest(expected)))
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

/// `name` percent-encoded for a URL query: every byte but RFC 3986's unreserved ones (letters,
/// digits, `-._~`) as `%XX`, so a channel name such as `a#b&c` survives the round trip.
pub fn percent_encode(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A complete `200 OK` response with `body` of `content_type`.
pub fn ok(content_type: &str, body: &[u8], keep_alive: bool) -> Vec<u8> {
    ok_with(content_type, "", body, keep_alive)
}

/// A complete `200 OK` response with `body` of `content_type` and `extra` header lines (each
/// ending in `\r\n`). Sized exactly, so what a queued response holds is what it sends.
pub fn ok_with(content_type: &str, extra: &str, body: &[u8], keep_alive: bool) -> Vec<u8> {
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\n{extra}{}\r\n",
        body.len(),
        if keep_alive {
            ""
        } else {
            "Connection: close\r\n"
        },
    );
    let mut out = Vec::with_capacity(head.len() + body.len());
    out.extend_from_slice(head.as_bytes());
    out.extend_from_slice(body);
    out
}

/// Whether `request` (a request head, possibly incomplete) is a `POST /publish/…`. Blank
/// lines before a request line are allowed (RFC 9112 §2.2) and skipped here as httparse does.
pub fn is_publish(request: &[u8]) -> bool {
    request.trim_ascii_start().starts_with(b"POST /publish/")
}

/// Whether `request` (a request head, possibly incomplete) is a `HEAD` request.
pub fn is_head(request: &[u8]) -> bool {
    request.trim_ascii_start().starts_with(b"HEAD ")
}

/// Cuts `response` after its head, for a `HEAD` request: the headers, `Content-Length`
/// included, stay those of the `GET` answer.
pub fn strip_body(response: &mut Vec<u8>) {
    if let Some(end) = response.windows(4).position(|w| w == b"\r\n\r\n") {
        response.truncate(end + 4);
    }
}

/// A JSON `200 OK`.
pub fn json(body: &str, keep_alive: bool) -> Vec<u8> {
    ok("application/json", body.as_bytes(), keep_alive)
}

#[cfg(test)]
mod tests;
