//! The client's opening handshake (RFC 6455 §4.1): the upgrade request that names the channel
//! in `Sec-WebSocket-Protocol`, and the checks on the server's answer — status `101`, the
//! `Sec-WebSocket-Accept` derived from our key, and the selected protocol being our channel.

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
}

/// An upgrade request and the accept value its answer must carry.
#[derive(Clone, Debug)]
pub struct Request {
    /// The request bytes to send.
    pub bytes: Vec<u8>,
    /// The expected `Sec-WebSocket-Accept` value.
    pub accept: String,
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

/// Parses the server's response head at the start of `buf`. `Complete(n)`: the upgrade was
/// accepted and the head is `n` bytes long (what follows is the first frames).
pub fn parse_response(
    buf: &[u8],
    accept: &str,
    channel: &str,
) -> Result<Decoded<usize>, HandshakeError> {
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
    Ok(Decoded::Complete(n))
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
        assert_eq!(
            parse_response(&bytes, ACCEPT, "room42"),
            Ok(Decoded::Complete(head))
        );
        assert_eq!(
            parse_response(&bytes[..head - 1], ACCEPT, "room42"),
            Ok(Decoded::Partial)
        );
    }

    #[test]
    fn bad_answers_are_refused_by_cause() {
        let ok = |b: &str| parse_response(b.as_bytes(), ACCEPT, "room42");
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
