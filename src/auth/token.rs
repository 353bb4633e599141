//! Finding the token in a request, over what the handshake already has: the
//! `Sec-WebSocket-Protocol` offers, the request path, and the `Authorization` values.
//!
//! A token can travel three ways, each a [`Source`]:
//!
//! - [`Source::Subprotocol`]: an extra offer `bearer.<JWT>` (JWT characters are all RFC 7230
//!   token characters, so the offer is a valid subprotocol). It is how a browser sends one:
//!   `new WebSocket(url, ["room42", "bearer." + jwt])`. The handshake must pick the channel
//!   from the *other* offers ([`channel_offers`]) and never echo the `bearer.` offer: the 101
//!   selects the channel, which the client also offered. The prefix is matched exactly, in
//!   lower case, like every subprotocol comparison (RFC 6455 §4.1 treats them as case-sensitive
//!   strings); with authentication on, no channel whose name starts with `bearer.` can be
//!   chosen.
//! - [`Source::Query`]: `?token=<JWT>` in the request target, percent-decoded (RFC 3986 §2.1;
//!   `+` stays `+`). Request paths end up in logs: log [`redact_query`] of them.
//! - [`Source::Authorization`]: `Authorization: Bearer <JWT>` (RFC 6750 §2.1; the scheme is
//!   case-insensitive, RFC 7235 §2.1). Other schemes (`Basic`…) are not tokens and are ignored.
//!
//! **More than one token is refused** ([`AuthError::MultipleTokens`], 400 `invalid_request`),
//! whether in two places or twice in one, as RFC 6750 §3.1 says: picking one silently would
//! let whichever the server looks at first decide the rights, and two tokens are a client bug
//! or an attempt to confuse a proxy that checks the other one. A place that is present but
//! empty (`?token=`, `bearer.`, `Bearer` alone) carries an empty token, which
//! [`super::AuthKeys::verify`] refuses as malformed: the client tried to authenticate, so
//! "missing token" would mislead.

use std::borrow::Cow;
use std::fmt;

use super::AuthError;

/// The subprotocol offer prefix that marks a token.
pub const BEARER_PREFIX: &[u8] = b"bearer.";

/// The query parameter that carries a token.
pub const QUERY_PARAM: &str = "token";

/// Where a token was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Source {
    /// A `bearer.<JWT>` offer in `Sec-WebSocket-Protocol`.
    Subprotocol,
    /// `?token=<JWT>` in the request target.
    Query,
    /// `Authorization: Bearer <JWT>`.
    Authorization,
}

/// A token found in a request. Its `Debug` shows only the source and the length, so that a
/// token never reaches a log by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Token<'a> {
    source: Source,
    value: Cow<'a, [u8]>,
}

impl<'a> Token<'a> {
    /// Where the token was found.
    pub fn source(&self) -> Source {
        self.source
    }

    /// The token (the JWT itself), to hand to [`super::AuthKeys::verify`].
    pub fn as_bytes(&self) -> &[u8] {
        &self.value
    }
}

impl fmt::Debug for Token<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("source", &self.source)
            .field("len", &self.value.len())
            .finish_non_exhaustive()
    }
}

/// Whether a `Sec-WebSocket-Protocol` offer carries a token rather than a channel.
pub fn is_bearer_offer(offer: &[u8]) -> bool {
    offer.starts_with(BEARER_PREFIX)
}

/// The offers that may name a channel: all but the `bearer.` ones, in order.
pub fn channel_offers<'a, I>(offers: I) -> impl Iterator<Item = &'a [u8]>
where
    I: IntoIterator<Item = &'a [u8]>,
{
    offers.into_iter().filter(|o| !is_bearer_offer(o))
}

/// The one token of a request, looked for in all three places: the subprotocol `offers` (the
/// trimmed elements of every `Sec-WebSocket-Protocol` line, as the handshake lists them), the
/// request target `path`, and every `Authorization` header value. `Ok(None)` when there is
/// none, [`AuthError::MultipleTokens`] when there is more than one, and
/// [`AuthError::Malformed`] for a query value with a bad percent escape.
pub fn find_token<'a, O, A>(
    offers: O,
    path: &'a str,
    authorization: A,
) -> Result<Option<Token<'a>>, AuthError>
where
    O: IntoIterator<Item = &'a [u8]>,
    A: IntoIterator<Item = &'a [u8]>,
{
    let found = [
        from_offers(offers)?,
        from_query(path)?,
        from_authorization(authorization)?,
    ];
    single(found.into_iter().flatten())
}

/// The token in a `bearer.<JWT>` offer, if exactly one offer has one.
pub fn from_offers<'a, O>(offers: O) -> Result<Option<Token<'a>>, AuthError>
where
    O: IntoIterator<Item = &'a [u8]>,
{
    single(offers.into_iter().filter_map(|offer| {
        offer.strip_prefix(BEARER_PREFIX).map(|jwt| Token {
            source: Source::Subprotocol,
            value: Cow::Borrowed(jwt),
        })
    }))
}

/// The token in `path`'s `token` query parameter, percent-decoded.
pub fn from_query(path: &str) -> Result<Option<Token<'_>>, AuthError> {
    let Some((_, query)) = path.split_once('?') else {
        return Ok(None);
    };
    let values = query.split('&').filter_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (key == QUERY_PARAM).then_some(value)
    });
    match single(values)? {
        Some(value) => Ok(Some(Token {
            source: Source::Query,
            value: percent_decode(value.as_bytes()).ok_or(AuthError::Malformed)?,
        })),
        None => Ok(None),
    }
}

/// The token of the `Authorization` values that use the `Bearer` scheme.
pub fn from_authorization<'a, A>(values: A) -> Result<Option<Token<'a>>, AuthError>
where
    A: IntoIterator<Item = &'a [u8]>,
{
    let ows = |b: &u8| *b == b' ' || *b == b'\t';
    single(values.into_iter().filter_map(|value| {
        let value = value.trim_ascii();
        let split = value.iter().position(ows).unwrap_or(value.len());
        let (scheme, rest) = value.split_at(split);
        scheme.eq_ignore_ascii_case(b"Bearer").then(|| Token {
            source: Source::Authorization,
            value: Cow::Borrowed(rest.trim_ascii()),
        })
    }))
}

/// `path` with the value of its `token` query parameters replaced by `REDACTED`, for logs;
/// borrowed unchanged when it has none.
pub fn redact_query(path: &str) -> Cow<'_, str> {
    let Some((target, query)) = path.split_once('?') else {
        return Cow::Borrowed(path);
    };
    let is_token = |pair: &str| pair.split_once('=').unwrap_or((pair, "")).0 == QUERY_PARAM;
    if !query.split('&').any(is_token) {
        return Cow::Borrowed(path);
    }
    let pairs: Vec<&str> = query
        .split('&')
        .map(|pair| {
            if is_token(pair) {
                "token=REDACTED"
            } else {
                pair
            }
        })
        .collect();
    Cow::Owned(format!("{target}?{}", pairs.join("&")))
}

/// The only item of `items`, `None` when empty, [`AuthError::MultipleTokens`] past one.
fn single<T>(mut items: impl Iterator<Item = T>) -> Result<Option<T>, AuthError> {
    match (items.next(), items.next()) {
        (Some(_), Some(_)) => Err(AuthError::MultipleTokens),
        (item, _) => Ok(item),
    }
}

/// `bytes` with `%XX` escapes decoded (RFC 3986 §2.1), borrowed when there is none; `None`
/// for a `%` not followed by two hex digits.
fn percent_decode(bytes: &[u8]) -> Option<Cow<'_, [u8]>> {
    if !bytes.contains(&b'%') {
        return Some(Cow::Borrowed(bytes));
    }
    let hex = |b: Option<&u8>| b.and_then(|&b| char::from(b).to_digit(16));
    let mut out = Vec::with_capacity(bytes.len());
    let mut it = bytes.iter();
    while let Some(&b) = it.next() {
        if b == b'%' {
            let (hi, lo) = (hex(it.next())?, hex(it.next())?);
            out.push((hi << 4 | lo) as u8);
        } else {
            out.push(b);
        }
    }
    Some(Cow::Owned(out))
}

#[cfg(test)]
mod tests;
