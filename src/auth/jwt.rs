//! Verifying a token (RFC 7519 §7.2) at a time the caller gives.
//!
//! The steps, each with its own [`AuthError`], in the order a token meets them:
//!
//! 1. Shape: at most [`MAX_TOKEN_LEN`] bytes, three base64url parts (the JWS compact
//!    serialization, RFC 7515 §7.1), the first a JSON object with a string `alg`
//!    ([`AuthError::Malformed`]).
//! 2. Algorithm: `alg` must be one a configured key verifies ([`AuthError::UnsupportedAlgorithm`]);
//!    the key is chosen by `alg` and verifies only that algorithm, so `none`, an algorithm the
//!    server was not configured for, and HS256 "signed" with the public key's bytes all stop
//!    here. The library checks the same again.
//! 3. Signature ([`AuthError::BadSignature`]), by [`jsonwebtoken::decode`], whose own `exp` and
//!    `nbf` checks are off because they read the system clock.
//! 4. Times, as NumericDates (seconds, fractions rounded up): `exp` is required
//!    ([`AuthError::MissingExp`]) and the token is refused from that second on
//!    ([`AuthError::Expired`]); before `nbf`, when present, it is not yet valid
//!    ([`AuthError::NotYetValid`]). Both with the configured leeway.
//! 5. Claims: `sub` a string, `channels` and `publish` lists of patterns ([`super::grant`]);
//!    anything else is [`AuthError::InvalidClaims`]. Other claims (`iss`, `aud`, `iat`, `jti`…)
//!    are ignored.

use std::borrow::Cow;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use serde::Deserialize;
use serde_json::Value;

use super::AuthError;
use super::grant::{Grant, Patterns};
use super::keys::AuthKeys;

/// Longest token accepted, in bytes: far more than any sensible set of claims, and a bound on
/// the work an unauthenticated client can ask for (the request head is bounded anyway).
pub const MAX_TOKEN_LEN: usize = 8192;

/// The only header field looked at before the signature is checked.
#[derive(Deserialize)]
struct Header<'a> {
    /// The signing algorithm (RFC 7515 §4.1.1).
    #[serde(borrow)]
    alg: Cow<'a, str>,
}

/// The claims this server reads, each kept as raw JSON so that a wrong type is reported as
/// [`AuthError::InvalidClaims`] rather than as a malformed token. JSON `null` counts as absent.
#[derive(Deserialize)]
struct Claims {
    /// Expiration time (RFC 7519 §4.1.4): required.
    #[serde(default)]
    exp: Option<Value>,
    /// Not before (§4.1.5): optional.
    #[serde(default)]
    nbf: Option<Value>,
    /// Subject (§4.1.2): the user, for logs.
    #[serde(default)]
    sub: Option<Value>,
    /// Patterns of the channels the holder may join.
    #[serde(default)]
    channels: Option<Value>,
    /// Patterns of the channels the holder may publish to.
    #[serde(default)]
    publish: Option<Value>,
}

impl AuthKeys {
    /// Verifies `token` at `now_unix_secs` (seconds since the Unix epoch, read by the caller)
    /// and returns what it grants. See the [module docs](self) for the order of the checks.
    pub fn verify(&self, token: &[u8], now_unix_secs: u64) -> Result<Grant, AuthError> {
        let header = header_part(token)?;
        let alg = serde_json::from_slice::<Header<'_>>(&header)
            .map_err(|_| AuthError::Malformed)?
            .alg;
        let verifier = self.verifier(&alg).ok_or(AuthError::UnsupportedAlgorithm)?;
        let claims = jsonwebtoken::decode::<Claims>(token, &verifier.key, &verifier.validation)
            .map_err(|e| library_error(e.kind(), token))?
            .claims;
        let exp = numeric_date(claims.exp)?.ok_or(AuthError::MissingExp)?;
        let exp = exp.saturating_add(self.leeway);
        if now_unix_secs >= exp {
            return Err(AuthError::Expired);
        }
        if let Some(nbf) = numeric_date(claims.nbf)?
            && now_unix_secs.saturating_add(self.leeway) < nbf
        {
            return Err(AuthError::NotYetValid);
        }
        let sub = match claims.sub {
            None | Some(Value::Null) => None,
            Some(Value::String(sub)) => Some(sub),
            Some(_) => return Err(AuthError::InvalidClaims),
        };
        Ok(Grant {
            exp,
            sub,
            join: patterns(claims.channels)?,
            publish: patterns(claims.publish)?,
        })
    }
}

/// The decoded header of a token of the right shape: three parts of base64url characters
/// (the signature may be empty, so that an unsigned token is refused for its `alg`).
fn header_part(token: &[u8]) -> Result<Vec<u8>, AuthError> {
    let b64url = |b: &u8| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_';
    if token.len() > MAX_TOKEN_LEN || !token.iter().all(|b| b64url(b) || *b == b'.') {
        return Err(AuthError::Malformed);
    }
    let mut parts = token.split(|&b| b == b'.');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(header), Some(payload), Some(_), None)
            if !header.is_empty() && !payload.is_empty() =>
        {
            URL_SAFE_NO_PAD
                .decode(header)
                .map_err(|_| AuthError::Malformed)
        }
        _ => Err(AuthError::Malformed),
    }
}

/// What each of the library's errors means here. Key errors cannot happen with keys that
/// [`AuthKeys::new`] accepted, except for a signature of the wrong shape, which is a bad
/// signature. A JSON error comes from the header or from the claims, which the library reads
/// into its own typed fields after the signature is checked: when the header parses and the
/// payload is a JSON object, the claims had a wrong type (say `"nbf": [1]`).
fn library_error(kind: &ErrorKind, token: &[u8]) -> AuthError {
    match kind {
        ErrorKind::InvalidSignature
        | ErrorKind::InvalidEcdsaKey
        | ErrorKind::InvalidEddsaKey
        | ErrorKind::InvalidRsaKey(_)
        | ErrorKind::InvalidKeyFormat => AuthError::BadSignature,
        ErrorKind::InvalidAlgorithm
        | ErrorKind::UnsupportedAlgorithm
        | ErrorKind::InvalidAlgorithmName
        | ErrorKind::MissingAlgorithm => AuthError::UnsupportedAlgorithm,
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::ImmatureSignature => AuthError::NotYetValid,
        ErrorKind::MissingRequiredClaim(_) => AuthError::MissingExp,
        ErrorKind::InvalidClaimFormat(_) => AuthError::InvalidClaims,
        ErrorKind::Json(_)
            if jsonwebtoken::decode_header(token).is_ok() && payload_is_object(token) =>
        {
            AuthError::InvalidClaims
        }
        _ => AuthError::Malformed,
    }
}

/// Whether the token's payload is a base64url JSON object (on the error path only).
fn payload_is_object(token: &[u8]) -> bool {
    let payload = token.split(|&b| b == b'.').nth(1).unwrap_or_default();
    URL_SAFE_NO_PAD
        .decode(payload)
        .is_ok_and(|json| serde_json::from_slice::<serde_json::Map<String, Value>>(&json).is_ok())
}

/// A NumericDate claim (RFC 7519 §2) as whole seconds: fractions round up (a token valid
/// "until 10.5" is valid at 10 and not at 11, which is what `now < ceil(exp)` gives for whole
/// seconds), dates before the epoch are 0, and absent or `null` is `None`.
fn numeric_date(claim: Option<Value>) -> Result<Option<u64>, AuthError> {
    let n = match claim {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Number(n)) => n,
        Some(_) => return Err(AuthError::InvalidClaims),
    };
    if let Some(secs) = n.as_u64() {
        return Ok(Some(secs));
    }
    match n.as_f64() {
        // `as` saturates: a date past `u64::MAX` seconds is "never".
        Some(secs) if secs.is_finite() => Ok(Some(secs.max(0.0).ceil() as u64)),
        _ => Err(AuthError::InvalidClaims),
    }
}

/// A pattern-list claim: absent or `null` grants nothing; otherwise a list of strings.
fn patterns(claim: Option<Value>) -> Result<Patterns, AuthError> {
    match claim {
        None | Some(Value::Null) => Ok(Patterns::none()),
        Some(Value::Array(items)) => {
            let names = items
                .iter()
                .map(|v| v.as_str().ok_or(AuthError::InvalidClaims))
                .collect::<Result<Vec<_>, _>>()?;
            Patterns::parse(names)
        }
        Some(_) => Err(AuthError::InvalidClaims),
    }
}
