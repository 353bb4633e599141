//! Access control: JSON Web Tokens (RFC 7519) on the upgrade and on `POST /publish`, channel
//! grants, and per-connection rate limits.
//!
//! Like [`crate::proto`], this module is sans-I/O: it reads no clock (the caller passes the time:
//! Unix seconds for token checks, an [`Instant`](std::time::Instant) for the bucket), touches no
//! socket and logs nothing, least of all a token. The pieces, in the order a request meets them:
//!
//! - [`token`]: where a token travels: a `bearer.<JWT>` offer in `Sec-WebSocket-Protocol`
//!   (browsers cannot set `Authorization` on a WebSocket), `?token=<JWT>` in the query, or
//!   `Authorization: Bearer <JWT>` (RFC 6750 §2.1). [`find_token`] looks at all three.
//! - [`keys`]: [`AuthKeys`], built once from `--auth-hmac-secret` and/or `--auth-public-key`;
//!   the keys decide which algorithms are accepted, and nothing else does.
//! - [`jwt`]: [`AuthKeys::verify`]: signature, then `exp` (required) and `nbf`, then the claims
//!   become a [`Grant`].
//! - [`grant`]: what a token allows: [`Grant::may_join`] and [`Grant::may_publish`] over
//!   patterns that are channel names or prefixes ending in `*`.
//! - [`rate`]: [`Bucket`], the `--max-client-rate`/`--max-client-burst` token bucket, in exact
//!   integer arithmetic.
//!
//! Every failure is an [`AuthError`]: a `Copy` enum whose [`AuthError::refusal`] is the
//! [`Refusal`] to send (401 with `WWW-Authenticate: Bearer error="invalid_token"`, RFC 6750
//! §3; 403 with `error="insufficient_scope"` for a channel the token does not grant), with a
//! JSON body saying exactly what is wrong.
//!
//! # The JWT library
//!
//! Signatures are checked by [`jsonwebtoken`] (Keats/jsonwebtoken, the most used JWT crate)
//! with its `rust_crypto` backend: pure Rust (RustCrypto's `hmac`, `rsa`, `p256`, `p384`,
//! `ed25519-dalek`), so it builds on a fresh machine with nothing but a Rust toolchain, with
//! no C, assembler or CMake build as `aws-lc-rs` and `ring` need, and it reuses the `base64`
//! 0.23 and `sha2` 0.11 this crate already has. It covers HS256, RS256, ES256 and, for free,
//! ES384 and EdDSA (Ed25519). Its `Algorithm` has no `none`, and `decode` refuses any `alg`
//! outside the caller's list and any key of another family than the algorithm, which is what
//! stops `alg: none` and key confusion (an HS256 token "signed" with the public key's PEM
//! bytes); this module adds its own check of `alg` first, so that each of those is reported as
//! [`AuthError::UnsupportedAlgorithm`]. Its own `exp`/`nbf` checks are switched off because
//! they read the system clock: [`jwt`] checks them against the time it is given. The other
//! candidate, `jwt-simple`, defaults to BoringSSL (a C++ and CMake build) and also reads the
//! clock; its pure-Rust build brings JWE and post-quantum code this server does not need.
//! Public keys are read with `pem-rfc7468` and `spki` (already dependencies of the RustCrypto
//! crates), so a key file is classified by its algorithm identifier and named in every error.

pub mod grant;
pub mod jwt;
pub mod keys;
pub mod rate;
pub mod token;

pub use grant::{Grant, Patterns};
pub use keys::{AuthKeys, KeyError, KeyProblem};
pub use rate::Bucket;
pub use token::{Source, Token, channel_offers, find_token, is_bearer_offer, redact_query};

use crate::proto::close;
use crate::proto::handshake::Refusal;

/// The close code for a connection whose token expired while it was open (1008, policy
/// violation, RFC 6455 §7.4.1): the client should get a fresh token and reconnect.
pub const EXPIRED_CLOSE_CODE: u16 = close::POLICY_VIOLATION;

/// The close reason sent with [`EXPIRED_CLOSE_CODE`].
pub const EXPIRED_CLOSE_REASON: &str = "token expired";

/// The `WWW-Authenticate` header line for an [`AuthError`] (RFC 6750 §3): bare `Bearer` when no
/// token was sent (§3.1 says not to give an error code then), otherwise the error code and the
/// reason as `error_description` (a quoted string, so reasons avoid `"` and `\`).
macro_rules! www_authenticate {
    ("", $reason:literal) => {
        "WWW-Authenticate: Bearer\r\n"
    };
    ($code:literal, $reason:literal) => {
        concat!(
            "WWW-Authenticate: Bearer error=\"",
            $code,
            "\", error_description=\"",
            $reason,
            "\"\r\n"
        )
    };
}

/// Declares [`AuthError`] from one table, so that each variant's status, RFC 6750 error code,
/// reason and header line are written once and cannot disagree.
macro_rules! auth_errors {
    ($( $(#[$doc:meta])* $name:ident => $status:literal, $code:tt, $reason:literal; )*) => {
        /// Why a request was refused access. Each variant is one [`Refusal`] (see
        /// [`AuthError::refusal`]): its HTTP status, a human reason sent as the JSON body, and
        /// the `WWW-Authenticate` header line RFC 6750 §3 asks for.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum AuthError {
            $( $(#[$doc])* $name, )*
        }

        impl AuthError {
            /// Every error (for tests that check them all).
            pub const ALL: &'static [AuthError] = &[$(AuthError::$name),*];

            /// The HTTP status: 401 for a missing or invalid token, 400 for a request that
            /// sends more than one, 403 for a valid token that does not grant the channel.
            pub const fn status(self) -> u16 {
                match self { $(AuthError::$name => $status,)* }
            }

            /// The RFC 6750 §3.1 error code (`invalid_token`, `invalid_request`,
            /// `insufficient_scope`), or `""` when no token was sent.
            pub const fn code(self) -> &'static str {
                match self { $(AuthError::$name => $code,)* }
            }

            /// A short human reason, sent as `{"error": reason}` and as `error_description`.
            pub const fn reason(self) -> &'static str {
                match self { $(AuthError::$name => $reason,)* }
            }

            /// The extra header lines of the refusal, each ending in `\r\n`.
            pub const fn headers(self) -> &'static str {
                match self { $(AuthError::$name => www_authenticate!($code, $reason),)* }
            }
        }
    };
}

auth_errors! {
    /// No token in any of the places [`find_token`] looks.
    MissingToken => 401, "",
        "missing token: offer Sec-WebSocket-Protocol bearer.<JWT>, or send ?token=<JWT> or Authorization: Bearer <JWT>";
    /// More than one token: two places, or one place twice (RFC 6750 §3.1 `invalid_request`:
    /// a client must use exactly one method).
    MultipleTokens => 400, "invalid_request",
        "more than one token: send the token one way only";
    /// Not a JWS compact serialization: three base64url parts, the first a JSON object with an
    /// `alg` string; or longer than [`jwt::MAX_TOKEN_LEN`].
    Malformed => 401, "invalid_token", "malformed token: expected a JWT (header.payload.signature)";
    /// `alg` is `none` or an algorithm none of the configured keys verifies (this includes
    /// HS256 when only a public key is configured: the key-confusion attack).
    UnsupportedAlgorithm => 401, "invalid_token",
        "unsupported token algorithm: not one that this server's keys verify";
    /// The signature does not verify with the configured key.
    BadSignature => 401, "invalid_token", "bad token signature";
    /// The verified token has no `exp` claim; tokens without an end are not accepted.
    MissingExp => 401, "invalid_token", "token has no exp claim";
    /// The current time is at or after `exp` (RFC 7519 §4.1.4).
    Expired => 401, "invalid_token", "token expired";
    /// The current time is before `nbf` (RFC 7519 §4.1.5).
    NotYetValid => 401, "invalid_token", "token not yet valid (nbf is in the future)";
    /// A claim has the wrong type, or a pattern is not a channel name or a prefix ending in `*`.
    InvalidClaims => 401, "invalid_token",
        "invalid token claims: exp and nbf must be numbers, sub a string, channels and publish lists of channel names or prefixes ending in *";
    /// A valid token whose `channels` claim does not cover the requested channel.
    ForbiddenChannel => 403, "insufficient_scope", "token does not grant this channel";
    /// A valid token whose `publish` claim does not cover the channel published to.
    ForbiddenPublish => 403, "insufficient_scope", "token does not grant publishing to this channel";
}

impl AuthError {
    /// The complete refusal to send, as every other handshake or API refusal is sent.
    pub const fn refusal(self) -> Refusal {
        Refusal::new_with(self.status(), self.reason(), self.headers())
    }
}

impl From<AuthError> for Refusal {
    fn from(e: AuthError) -> Self {
        e.refusal()
    }
}

impl std::fmt::Display for AuthError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.reason(), self.status())
    }
}

impl std::error::Error for AuthError {}

impl AuthKeys {
    /// The whole check of a WebSocket upgrade: a token must have been found
    /// ([`AuthError::MissingToken`] otherwise), verify at `now_unix_secs`, and grant `channel`
    /// ([`AuthError::ForbiddenChannel`] otherwise). The returned grant's [`Grant::exp`] is when
    /// the connection must be closed with [`EXPIRED_CLOSE_CODE`], and
    /// [`Grant::may_publish`]`(channel)` whether it may send.
    pub fn authorize_join(
        &self,
        token: Option<&Token<'_>>,
        channel: &str,
        now_unix_secs: u64,
    ) -> Result<Grant, AuthError> {
        self.authorize(
            token,
            now_unix_secs,
            |g| g.may_join(channel),
            AuthError::ForbiddenChannel,
        )
    }

    /// The whole check of `POST /publish/{channel}`: like [`AuthKeys::authorize_join`], but
    /// the token's `publish` claim must cover `channel` ([`AuthError::ForbiddenPublish`]).
    pub fn authorize_publish(
        &self,
        token: Option<&Token<'_>>,
        channel: &str,
        now_unix_secs: u64,
    ) -> Result<Grant, AuthError> {
        self.authorize(
            token,
            now_unix_secs,
            |g| g.may_publish(channel),
            AuthError::ForbiddenPublish,
        )
    }

    /// A token must have been found and verify at `now_unix_secs`, and its grant pass
    /// `allowed` (`refused` otherwise).
    fn authorize(
        &self,
        token: Option<&Token<'_>>,
        now_unix_secs: u64,
        allowed: impl FnOnce(&Grant) -> bool,
        refused: AuthError,
    ) -> Result<Grant, AuthError> {
        let token = token.ok_or(AuthError::MissingToken)?;
        let grant = self.verify(token.as_bytes(), now_unix_secs)?;
        if allowed(&grant) {
            Ok(grant)
        } else {
            Err(refused)
        }
    }
}

#[cfg(test)]
mod tests;
