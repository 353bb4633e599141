//! The client's opening handshake (RFC 6455 §4.1): the upgrade request that names the channel
//! in `Sec-WebSocket-Protocol`, and the checks on the server's answer — status `101`, the
//! `Sec-WebSocket-Accept` derived from our key, and the selected protocol being our channel.
//!
//! With `--deflate` the request also offers permessage-deflate (RFC 7692) with both
//! no-context-takeover parameters ([`DEFLATE_OFFER`]). The answer either accepts it — one
//! `permessage-deflate` element that carries `server_no_context_takeover` (§7.1.1.1: that is
//! how a server accepts an offer carrying it), optionally `client_no_context_takeover` and
//! `server_max_window_bits`, nothing else — or names no extension at all, and the connection
//! runs plain. Anything else, and any extension in the answer to a request that offered none
//! (RFC 6455 §9.1), is [`HandshakeError::BadExtension`]. No context takeover is what lets the
//! reader inflate just the head of each message on its own (`reader.rs`).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use fanout::proto::Decoded;
use fanout::proto::handshake::accept_key;

/// A response head larger than this is treated as malformed.
pub const MAX_RESPONSE_HEAD: usize = 16 * 1024;

/// Why the server's answer to an upgrade request was not accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandshakeError {
    /// The server answered with another HTTP status (a refusal such as 400 or 503).
    Status(u16),
    /// `Sec-WebSocket-Accept` was missing or did not match our key.
    BadAccept,
    /// `Sec-WebSocket-Protocol` was missing or not the channel we offered.
    BadProtocol,
    /// The response was not parseable HTTP, or too large.
    Malformed,
    /// `Sec-WebSocket-Extensions` named an extension we did not offer, or accepted our
    /// permessage-deflate offer with parameters we cannot honour.
    BadExtension,
}

/// The permessage-deflate offer sent with `--deflate` (RFC 7692 §7.1): neither side keeps a
/// compression context between messages.
pub const DEFLATE_OFFER: &str =
    "permessage-deflate; client_no_context_takeover; server_no_context_takeover";

/// An accepted upgrade.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Accepted {
    /// Length of the response head (what follows is the first frames).
    pub head_len: usize,
    /// The server accepted our permessage-deflate offer.
    pub deflate: bool,
}

/// An upgrade request and the accept value its answer must carry.
#[derive(Clone, Debug)]
pub struct Request {
    /// The request bytes to send.
    pub bytes: Vec<u8>,
    /// The expected `Sec-WebSocket-Accept` value.
    pub accept: String,
}

impl Request {
    /// The same request, offering permessage-deflate ([`DEFLATE_OFFER`]) when `deflate`.
    pub fn offer_deflate(mut self, deflate: bool) -> Request {
        if deflate {
            // Before the blank line that ends the head.
            let at = self.bytes.len() - 2;
            let line = format!("Sec-WebSocket-Extensions: {DEFLATE_OFFER}\r\n");
            self.bytes.splice(at..at, line.into_bytes());
        }
        self
    }
}

/// Builds the upgrade request for `channel`, with `nonce` as the 16-byte key.
pub fn request(
    host: &str,
    path: &str,
    channel: &str,
    token: Option<&str>,
    nonce: [u8; 16],
) -> Request {
    let key = STANDARD.encode(nonce);
    // The channel first (the server selects the first offer); a token as a second offer.
    let token = token.map(|t| format!(", bearer.{t}")).unwrap_or_default();
    let bytes = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Protocol: {channel}{token}\r\n\r\n"
    )
    .into_bytes();
    Request {
        bytes,
        accept: accept_key(key.as_bytes()),
    }
}

/// Parses the server's response head at the start of `buf`, for a request that offered
/// permessage-deflate or not (`offered_deflate`). `Complete`: the upgrade was accepted.
pub fn parse_response(
    buf: &[u8],
    accept: &str,
    channel: &str,
    offered_deflate: bool,
) -> Result<Decoded<Accepted>, HandshakeError> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    let n = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() < MAX_RESPONSE_HEAD => {
            return Ok(Decoded::Partial);
        }
        _ => return Err(HandshakeError::Malformed),
    };
    let status = resp.code.ok_or(HandshakeError::Malformed)?;
    if status != 101 {
        return Err(HandshakeError::Status(status));
    }
    let header = |name: &str| {
        resp.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value.trim_ascii())
    };
    if header("sec-websocket-accept") != Some(accept.as_bytes()) {
        return Err(HandshakeError::BadAccept);
    }
    if header("sec-websocket-protocol") != Some(channel.as_bytes()) {
        return Err(HandshakeError::BadProtocol);
    }
    let extensions = resp
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("sec-websocket-extensions"))
        .map(|h| h.value);
    let deflate = deflate_accepted(extensions, offered_deflate)?;
    Ok(Decoded::Complete(Accepted {
        head_len: n,
        deflate,
    }))
}

/// Whether the `Sec-WebSocket-Extensions` values accept our offer (`offered`); an error for
/// anything we did not offer or cannot honour.
fn deflate_accepted<'a>(
    values: impl Iterator<Item = &'a [u8]>,
    offered: bool,
) -> Result<bool, HandshakeError> {
    let bad = HandshakeError::BadExtension;
    let mut elements = Vec::new();
    for v in values {
        let v = std::str::from_utf8(v).map_err(|_| bad)?;
        elements.extend(v.split(',').map(str::trim).filter(|e| !e.is_empty()));
    }
    let [element] = elements[..] else {
        return if elements.is_empty() {
            Ok(false)
        } else {
            Err(bad)
        };
    };
    if !offered {
        return Err(bad);
    }
    let mut params = element.split(';').map(str::trim);
    if params.next() != Some("permessage-deflate") {
        return Err(bad);
    }
    let (mut server_nct, mut client_nct, mut window) = (false, false, false);
    for p in params {
        let (name, value) = match p.split_once('=') {
            Some((n, v)) => (n.trim_end(), Some(v.trim_start().trim_matches('"'))),
            None => (p, None),
        };
        let seen = match (name, value) {
            ("server_no_context_takeover", None) => &mut server_nct,
            ("client_no_context_takeover", None) => &mut client_nct,
            // Any window the server compresses with is one we can inflate (§7.1.2.1).
            ("server_max_window_bits", Some(v))
                if v.len() <= 2 && v.parse::<u8>().is_ok_and(|b| (8..=15).contains(&b)) =>
            {
                &mut window
            }
            // client_max_window_bits was not offered (§7.1.2.2), nothing else exists.
            _ => return Err(bad),
        };
        if std::mem::replace(seen, true) {
            return Err(bad); // a repeated parameter (§7.1)
        }
    }
    // Without it the server may refer back to earlier messages, and a head could not be
    // inflated on its own.
    if !server_nct {
        return Err(bad);
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The RFC 6455 §1.3 sample nonce and its accept value.
    const NONCE: [u8; 16] = *b"the sample nonce";
    const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

    fn answer(accept: &str, protocol: &str) -> String {
        format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {accept}\r\nSec-WebSocket-Protocol: {protocol}\r\n\r\n"
        )
    }

    #[test]
    fn request_carries_key_channel_and_version() {
        let r = request("127.0.0.1:9", "/", "room42", None, NONCE);
        let text = String::from_utf8(r.bytes).unwrap();
        assert!(text.starts_with("GET / HTTP/1.1\r\nHost: 127.0.0.1:9\r\n"));
        assert!(text.contains("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"));
        assert!(text.contains("Sec-WebSocket-Protocol: room42\r\n"));
        assert!(text.contains("Sec-WebSocket-Version: 13\r\n"));
        assert!(text.ends_with("\r\n\r\n"));
        assert_eq!(r.accept, ACCEPT);
    }

    #[test]
    fn a_token_is_offered_after_the_channel() {
        let r = request("h:1", "/", "room42", Some("a.b.c"), NONCE);
        let text = String::from_utf8(r.bytes).unwrap();
        assert!(text.contains("Sec-WebSocket-Protocol: room42, bearer.a.b.c\r\n"));
    }

    #[test]
    fn good_answer_is_accepted_with_trailing_frame_bytes_left() {
        let mut bytes = answer(ACCEPT, "room42").into_bytes();
        let head = bytes.len();
        bytes.extend_from_slice(&[0x82, 0x00]);
        for offered in [false, true] {
            assert_eq!(
                parse_response(&bytes, ACCEPT, "room42", offered),
                Ok(Decoded::Complete(Accepted {
                    head_len: head,
                    deflate: false
                }))
            );
            assert_eq!(
                parse_response(&bytes[..head - 1], ACCEPT, "room42", offered),
                Ok(Decoded::Partial)
            );
        }
    }

    #[test]
    fn the_deflate_offer_is_one_header_line() {
        let plain = request("h:1", "/", "room42", None, NONCE);
        assert_eq!(plain.clone().offer_deflate(false).bytes, plain.bytes);
        let text = String::from_utf8(plain.offer_deflate(true).bytes).unwrap();
        assert!(text.ends_with(
            "Sec-WebSocket-Protocol: room42\r\nSec-WebSocket-Extensions: permessage-deflate; \
             client_no_context_takeover; server_no_context_takeover\r\n\r\n"
        ));
    }

    /// The answer with `extensions` as `Sec-WebSocket-Extensions` lines, parsed for a request
    /// that offered deflate (`offered`) or not.
    fn with_extensions(extensions: &[&str], offered: bool) -> Result<bool, HandshakeError> {
        let mut text = answer(ACCEPT, "room42");
        text.truncate(text.len() - 2);
        for e in extensions {
            text.push_str(&format!("Sec-WebSocket-Extensions: {e}\r\n"));
        }
        text.push_str("\r\n");
        match parse_response(text.as_bytes(), ACCEPT, "room42", offered)? {
            Decoded::Complete(a) => Ok(a.deflate),
            Decoded::Partial => panic!("a whole head is partial"),
        }
    }

    #[test]
    fn deflate_is_accepted_or_declined() {
        let fanouts = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";
        for accepted in [
            fanouts,
            "permessage-deflate;server_no_context_takeover",
            "permessage-deflate; client_no_context_takeover; server_no_context_takeover; \
             server_max_window_bits=10",
            "permessage-deflate; server_no_context_takeover; server_max_window_bits=\"15\"",
        ] {
            assert_eq!(with_extensions(&[accepted], true), Ok(true), "{accepted}");
        }
        // Declined: no extension at all (fanout without --deflate, or any plain server).
        assert_eq!(with_extensions(&[], true), Ok(false));
        assert_eq!(with_extensions(&[""], true), Ok(false));
    }

    #[test]
    fn bad_extension_answers_are_refused() {
        let bad = Err(HandshakeError::BadExtension);
        let fanouts = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";
        // RFC 6455 §9.1: nothing we did not offer.
        assert_eq!(with_extensions(&[fanouts], false), bad);
        assert_eq!(with_extensions(&["x-webkit-deflate-frame"], false), bad);
        for refused in [
            "x-webkit-deflate-frame",
            "permessage-deflate",
            "permessage-deflate; client_no_context_takeover",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; server_no_context_takeover; client_max_window_bits=10",
            "permessage-deflate; server_no_context_takeover; server_max_window_bits=16",
            "permessage-deflate; server_no_context_takeover; server_max_window_bits",
            "permessage-deflate; server_no_context_takeover; unknown",
            "permessage-deflate; server_no_context_takeover, permessage-deflate; \
             server_no_context_takeover",
        ] {
            assert_eq!(with_extensions(&[refused], true), bad, "{refused}");
        }
        assert_eq!(with_extensions(&[fanouts, "x-other"], true), bad);
    }

    #[test]
    fn bad_answers_are_refused_by_cause() {
        let ok = |b: &str| parse_response(b.as_bytes(), ACCEPT, "room42", false);
        assert_eq!(
            ok(&answer("AAAA", "room42")),
            Err(HandshakeError::BadAccept)
        );
        assert_eq!(
            ok(&answer(ACCEPT, "other")),
            Err(HandshakeError::BadProtocol)
        );
        let refused = "HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\n\r\nfull";
        assert_eq!(ok(refused), Err(HandshakeError::Status(503)));
        assert_eq!(
            ok("SSH-2.0-OpenSSH\r\n\r\n"),
            Err(HandshakeError::Malformed)
        );
        let huge = format!("HTTP/1.1 101 OK\r\nX: {}", "a".repeat(MAX_RESPONSE_HEAD));
        assert_eq!(ok(&huge), Err(HandshakeError::Malformed));
    }
}
