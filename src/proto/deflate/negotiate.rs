//! permessage-deflate negotiation (RFC 7692 §5, §7.1) over the `Sec-WebSocket-Extensions`
//! grammar of RFC 6455 §9.1.
//!
//! The client lists offers in order of preference, in one or several header lines:
//!
//! ```text
//! extension-list = 1#extension                      ; comma-separated, empty elements allowed
//! extension      = token *( OWS ";" OWS param )
//! param          = token [ OWS "=" OWS ( token / quoted-string ) ]
//! ```
//!
//! The first acceptable `permessage-deflate` offer wins, and the answer is always
//! `permessage-deflate; server_no_context_takeover; client_no_context_takeover`, with
//! `server_max_window_bits=N` echoed when the offer carried it. Both no-context-takeover
//! parameters may be added although the client did not offer them (§7.1.1.1, §7.1.1.2); with
//! them, neither side keeps a compression context between messages, which is what lets one
//! compressor serve every subscriber and one inflater serve every connection of a loop.
//!
//! An offer is declined (and the next one tried) when a parameter is unknown, repeated, has a
//! value it must not have, lacks one it must have, or has an invalid value (§7.1: "the server
//! MUST decline" such an offer), or when it asks for `server_max_window_bits=8`: zlib's raw
//! DEFLATE compressor has no 256-byte window (it takes 9..=15). A syntax error declines the
//! element it is in; parsing resumes after the next comma outside a quoted string. Unknown
//! extensions are skipped. Declining never fails the handshake: the connection runs
//! uncompressed.
//!
//! Names are compared exactly (the registered spelling is lower case): an offer spelled
//! otherwise is declined rather than answered in a spelling the client may not recognise.

/// The window the shared compressor uses, in bits (a 32 KiB window: zlib's largest).
pub const COMPRESSOR_WINDOW_BITS: u8 = 15;

const NAME: &[u8] = b"permessage-deflate";

/// The answer, without and with each `server_max_window_bits` value fanout honours (9..=15).
const RESPONSES: [&str; 8] = [
    "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
    "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=9",
    "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10",
    "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=11",
    "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=12",
    "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=13",
    "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=14",
    "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=15",
];

/// What was agreed with one client: a copy of two bytes, kept per connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Agreed {
    /// The `server_max_window_bits` the client asked for (9..=15), if it did.
    server_max_window_bits: Option<u8>,
}

impl Agreed {
    /// The exact `Sec-WebSocket-Extensions` value to send in the 101 response.
    pub fn response(&self) -> &'static str {
        RESPONSES[self
            .server_max_window_bits
            .map_or(0, |n| usize::from(n) - 8)]
    }

    /// The largest window the client lets us compress with, in bits (15 when it set no limit).
    pub fn server_max_window_bits(&self) -> u8 {
        self.server_max_window_bits
            .unwrap_or(COMPRESSOR_WINDOW_BITS)
    }

    /// Whether a message of `payload_len` bytes, compressed by the shared compressor (a
    /// [`COMPRESSOR_WINDOW_BITS`] window), may go to this client compressed.
    ///
    /// Without context takeover a message is compressed on its own, so a back-reference never
    /// reaches further than the message's own length: a message of at most 2^N bytes uses at
    /// most a 2^N window whatever the compressor was configured with. Larger messages go to a
    /// client that asked for a smaller window uncompressed (RSV1 is per message, §6).
    pub fn accepts(&self, payload_len: usize) -> bool {
        let bits = self.server_max_window_bits();
        bits >= COMPRESSOR_WINDOW_BITS || payload_len <= 1 << bits
    }
}

/// The first acceptable permessage-deflate offer in `offers`, the `Sec-WebSocket-Extensions`
/// header values in the order they arrived; `None` means the connection runs uncompressed.
pub fn negotiate<'a>(offers: impl IntoIterator<Item = &'a [u8]>) -> Option<Agreed> {
    offers.into_iter().find_map(|value| {
        let mut cursor = Cursor { s: value, i: 0 };
        std::iter::from_fn(|| cursor.element()).find_map(|e| e.ok().flatten())
    })
}

/// A syntax error in an element of the list.
struct Malformed;

/// A position in one header value.
struct Cursor<'a> {
    s: &'a [u8],
    i: usize,
}

/// RFC 7230 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A window-bits value: 8..=15 written without a leading zero (§7.1.2.1).
fn window_bits(value: &[u8]) -> Option<u8> {
    match value {
        [d @ b'8'..=b'9'] => Some(d - b'0'),
        [b'1', d @ b'0'..=b'5'] => Some(10 + d - b'0'),
        _ => None,
    }
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn skip_ows(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.i += 1;
        }
    }

    fn token(&mut self) -> Result<&'a [u8], Malformed> {
        let start = self.i;
        while self.peek().is_some_and(is_tchar) {
            self.i += 1;
        }
        (self.i > start)
            .then(|| &self.s[start..self.i])
            .ok_or(Malformed)
    }

    /// A parameter value: a token, or a quoted-string unescaped into `buf`. `Err` is a syntax
    /// error; `Ok(None)` a well-formed value that no parameter we know can take: longer than
    /// `buf`, or a quoted string whose content is not a token (RFC 7692 §7.1 requires one).
    fn value<'b>(&mut self, buf: &'b mut [u8; 8]) -> Result<Option<&'b [u8]>, Malformed> {
        let quoted = self.peek() == Some(b'"');
        let mut n = 0;
        let mut keep = |b: u8| {
            if let Some(slot) = buf.get_mut(n) {
                *slot = b;
            }
            n += 1;
        };
        if !quoted {
            self.token()?.iter().for_each(|&b| keep(b));
        } else {
            self.i += 1;
            loop {
                let b = match self.peek().ok_or(Malformed)? {
                    b'"' => break,
                    b'\\' => {
                        self.i += 1;
                        self.peek().ok_or(Malformed)?
                    }
                    b => b,
                };
                self.i += 1;
                keep(b);
            }
            self.i += 1;
        }
        let value = buf
            .get(..n)
            .filter(|v| !v.is_empty() && v.iter().all(|&b| is_tchar(b)));
        Ok(value)
    }

    /// Skips to just past the next comma outside a quoted string (or to the end).
    fn resync(&mut self) {
        let mut quoted = false;
        while let Some(b) = self.peek() {
            self.i += 1;
            match b {
                b'\\' if quoted => self.i += 1,
                b'"' => quoted = !quoted,
                b',' if !quoted => return,
                _ => {}
            }
        }
    }

    /// The next non-empty element: `Ok(Some(_))` for an acceptable permessage-deflate offer,
    /// `Ok(None)` for a declined offer or another extension, `Err` for a syntax error (after
    /// which parsing resumes past the next comma); `None` at the end of the value.
    fn element(&mut self) -> Option<Result<Option<Agreed>, Malformed>> {
        loop {
            self.skip_ows();
            match self.peek()? {
                b',' => self.i += 1,
                _ => break,
            }
        }
        let result = self.parse_element();
        if result.is_err() {
            self.resync();
        }
        Some(result)
    }

    /// Parses one element up to and including the comma that ends it.
    fn parse_element(&mut self) -> Result<Option<Agreed>, Malformed> {
        let name = self.token()?;
        let mut offer = (name == NAME).then_some(Offer::default());
        let mut declined = false;
        loop {
            self.skip_ows();
            match self.peek() {
                None => break,
                Some(b',') => {
                    self.i += 1;
                    break;
                }
                Some(b';') => self.i += 1,
                Some(_) => return Err(Malformed),
            }
            self.skip_ows();
            let param = self.token()?;
            self.skip_ows();
            let mut buf = [0; 8];
            let value = if self.peek() == Some(b'=') {
                self.i += 1;
                self.skip_ows();
                Some(self.value(&mut buf)?)
            } else {
                None
            };
            if let Some(offer) = &mut offer {
                // A bad parameter declines the offer; the rest of it is still parsed, so that
                // the next element starts in the right place.
                declined |= !offer.param(param, value);
            }
        }
        Ok(offer.filter(|_| !declined).and_then(Offer::agree))
    }
}

/// The parameters of one permessage-deflate offer seen so far.
#[derive(Default)]
struct Offer {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: Option<u8>,
    client_max_window_bits: bool,
}

impl Offer {
    /// Records one parameter; whether the offer can still be accepted. `value` is `Some(None)`
    /// for a value no parameter can take.
    fn param(&mut self, name: &[u8], value: Option<Option<&[u8]>>) -> bool {
        let value = match value {
            Some(None) => return false,
            Some(Some(v)) => Some(v),
            None => None,
        };
        let (seen, value_ok) = match name {
            b"server_no_context_takeover" => (
                std::mem::replace(&mut self.server_no_context_takeover, true),
                value.is_none(),
            ),
            b"client_no_context_takeover" => (
                std::mem::replace(&mut self.client_no_context_takeover, true),
                value.is_none(),
            ),
            b"server_max_window_bits" => match value.and_then(window_bits) {
                Some(bits) => (self.server_max_window_bits.replace(bits).is_some(), true),
                None => return false,
            },
            // We never limit the client's window (the inflater has the full 32 KiB), so this
            // is only checked, and never answered.
            b"client_max_window_bits" => (
                std::mem::replace(&mut self.client_max_window_bits, true),
                value.is_none_or(|v| window_bits(v).is_some()),
            ),
            _ => return false,
        };
        !seen && value_ok
    }

    /// The agreement, unless the offer asks for a window the compressor cannot use.
    fn agree(self) -> Option<Agreed> {
        match self.server_max_window_bits {
            Some(bits) if bits < 9 => None,
            server_max_window_bits => Some(Agreed {
                server_max_window_bits,
            }),
        }
    }
}

#[cfg(test)]
mod tests;
