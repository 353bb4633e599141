//! What a verified token allows: until when, for whom, and which channels.
//!
//! The `channels` and `publish` claims are lists of patterns. A pattern is either a channel
//! name (an RFC 7230 token of 1–64 bytes, like every channel), which matches that channel
//! exactly, or a prefix followed by one `*`, which matches every channel that starts with the
//! prefix. So `room-*` grants `room-1` and `room-` but not `room`; `*` alone (the empty prefix)
//! grants every channel. Only a *final* `*` is a wildcard: `*` is a legal character of channel
//! names, so `a*b` names the one channel `a*b`, and a channel whose name ends in `*` is granted
//! by a prefix of it (`room*` is granted by `room*` and `room**`). Anything else (an empty
//! string, a character outside the token set, a prefix longer than 64 bytes) makes the whole
//! token invalid ([`AuthError::InvalidClaims`]) rather than being skipped, so an issuer's
//! mistake fails loudly.
//!
//! An absent claim grants nothing: a token without `channels` can join no channel (write
//! `"channels": ["*"]` to grant them all), and one without `publish` is receive-only.

use std::time::Duration;

use super::AuthError;
use crate::proto::handshake::is_channel;

/// A set of channel patterns: exact names and prefixes (see the [module docs](self)).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Patterns {
    /// Channels granted by name.
    exact: Vec<Box<str>>,
    /// Prefixes (the patterns without their final `*`); an empty one grants everything.
    prefixes: Vec<Box<str>>,
}

impl Patterns {
    /// No channel at all (what an absent claim grants).
    pub fn none() -> Self {
        Patterns::default()
    }

    /// Patterns from a claim's list; [`AuthError::InvalidClaims`] if any one is not valid
    /// ([`Patterns::is_valid`]).
    pub fn parse<S: AsRef<str>>(patterns: impl IntoIterator<Item = S>) -> Result<Self, AuthError> {
        let mut out = Patterns::none();
        for pattern in patterns {
            let pattern = pattern.as_ref();
            if !Patterns::is_valid(pattern) {
                return Err(AuthError::InvalidClaims);
            }
            match pattern.strip_suffix('*') {
                Some(prefix) => out.prefixes.push(prefix.into()),
                None => out.exact.push(pattern.into()),
            }
        }
        Ok(out)
    }

    /// Whether `pattern` is a channel name, or a prefix of at most
    /// [`MAX_CHANNEL_LEN`](crate::proto::handshake::MAX_CHANNEL_LEN) token
    /// characters (possibly none) followed by `*`.
    pub fn is_valid(pattern: &str) -> bool {
        match pattern.strip_suffix('*') {
            Some("") => true,
            Some(prefix) => is_channel(prefix.as_bytes()),
            None => is_channel(pattern.as_bytes()),
        }
    }

    /// Whether some pattern grants `channel` (a valid channel name; the handshake and the HTTP
    /// API check that before asking).
    pub fn matches(&self, channel: &str) -> bool {
        self.exact.iter().any(|name| **name == *channel)
            || self.prefixes.iter().any(|p| channel.starts_with(&**p))
    }

    /// Whether no channel is granted.
    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.prefixes.is_empty()
    }
}

/// The rights of one verified token.
///
/// The handshake needs [`Grant::may_join`] (403 when false); the connection then needs only
/// [`Grant::exp`] (to close with [`super::EXPIRED_CLOSE_CODE`]) and one
/// [`Grant::may_publish`] answer for its channel, so it need not keep the grant itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    /// The Unix second from which the token is no longer valid: its `exp` claim (rounded up
    /// to a whole second) plus the configured leeway. A connection still open then is closed.
    pub exp: u64,
    /// The `sub` claim (the user), for debug logs. The token itself is never kept.
    pub sub: Option<String>,
    /// The `channels` claim: where the connection may subscribe.
    pub join: Patterns,
    /// The `publish` claim: where it may send (empty when absent: receive only).
    pub publish: Patterns,
}

impl Grant {
    /// Whether the token lets a connection subscribe to `channel`.
    pub fn may_join(&self, channel: &str) -> bool {
        self.join.matches(channel)
    }

    /// Whether the token lets its holder publish to `channel` (as a WebSocket client sending
    /// on its channel, or with `POST /publish/{channel}`).
    pub fn may_publish(&self, channel: &str) -> bool {
        self.publish.matches(channel)
    }

    /// Whether the token has expired at `now_unix_secs`.
    pub fn expired(&self, now_unix_secs: u64) -> bool {
        now_unix_secs >= self.exp
    }

    /// How long the token stays valid after `now_unix_secs` (zero once expired): the loop adds
    /// it to the `Instant` it read at the same moment to get the deadline of the connection.
    pub fn remaining(&self, now_unix_secs: u64) -> Duration {
        Duration::from_secs(self.exp.saturating_sub(now_unix_secs))
    }
}

#[cfg(test)]
mod tests;
