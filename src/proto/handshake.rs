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
use super::deflate::{self, Agreed};
use super::http::{self, HttpRequest};
pub use super::request::{MAX_CHANNEL_LEN, MAX_HEADERS, Policy, Refusal, is_channel};
use super::request::{has_token, list, trim, values};
use crate::auth::{self, Grant};

/// The GUID appended to `Sec-WebSocket-Key` before hashing (§1.3).
pub const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// An accepted WebSocket upgrade.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upgrade {
    /// The channel the connection subscribes to (the selected subprotocol or the default).
    pub channel: String,
    /// Whether `channel` was offered as a subprotocol (and so is echoed in the 101).
    pub selected_protocol: bool,
    /// The `Sec-WebSocket-Accept` value.
    pub accept: String,
    /// What the client's token allows (with `--auth-*`): when it expires, where it may
    /// publish.
    pub grant: Option<Grant>,
    /// The permessage-deflate offer accepted (with `--deflate`), answered in the 101.
    pub deflate: Option<Agreed>,
}

/// A request the handshake accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// A valid WebSocket upgrade.
    Upgrade(Upgrade),
    /// A plain HTTP request for the API on the same port.
    Http(HttpRequest),
}

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
/// a default that is a 400. `Sec-WebSocket-Extensions` is read only with
/// [`Policy::deflate`]: the first acceptable permessage-deflate offer is answered (see
/// [`super::deflate`]); an offer is never an error. Any path may be upgraded.
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
    // A `bearer.<JWT>` offer carries a token, never a channel (see `crate::auth`).
    let offers = list(headers, "Sec-WebSocket-Protocol");
    let (channel, selected_protocol) = match auth::channel_offers(offers).next() {
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
    let grant = match policy.auth {
        Some(keys) => {
            let token = auth::find_token(
                list(headers, "Sec-WebSocket-Protocol"),
                req.path.unwrap_or(""),
                values(headers, "Authorization"),
            )?;
            Some(keys.authorize_join(token.as_ref(), &channel, policy.now_unix)?)
        }
        None => None,
    };
    Ok(Request::Upgrade(Upgrade {
        channel,
        selected_protocol,
        accept: accept_key(key),
        grant,
        deflate: policy
            .deflate
            .then(|| deflate::negotiate(values(headers, "Sec-WebSocket-Extensions")))
            .flatten(),
    }))
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
    if let Some(agreed) = &up.deflate {
        out.push_str(&format!(
            "Sec-WebSocket-Extensions: {}\r\n",
            agreed.response()
        ));
    }
    out.push_str("\r\n");
    out.into_bytes()
}

#[cfg(test)]
mod tests;
