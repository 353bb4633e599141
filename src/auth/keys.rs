//! The keys that verify tokens, and the algorithms they imply.
//!
//! The accepted algorithms follow from the configuration and from nothing a token says: an
//! HMAC secret (`--auth-hmac-secret`) accepts HS256; a public key (`--auth-public-key`, PEM)
//! accepts exactly one algorithm, the one its type calls for: RSA → RS256, EC P-256 → ES256,
//! EC P-384 → ES384, Ed25519 → EdDSA. Both may be set; then a token's `alg` picks the key, and
//! each key only ever verifies its own algorithm (RFC 8725 §3.1, against key confusion).
//!
//! Everything is checked once, at start-up, so that a bad key fails loudly there with the file
//! named, rather than turning every later token into "bad signature": the file must hold one
//! PEM block with a public key (a private key or a certificate is refused with the command that
//! extracts the public key); RSA keys must have at least 2048 bits (RFC 7518 §3.3); EC and
//! Ed25519 points must be valid; and an HMAC secret must have at least 32 bytes (RFC 7518 §3.2:
//! as long as the hash, since a short one is found offline from any one token).

use std::fmt;
use std::path::{Path, PathBuf};

use jsonwebtoken::crypto::CryptoProvider;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use rsa::pkcs1::DecodeRsaPublicKey as _;
use rsa::traits::PublicKeyParts as _;
use spki::{ObjectIdentifier, SubjectPublicKeyInfoRef};

/// Shortest HMAC secret accepted, in bytes: the SHA-256 output size (RFC 7518 §3.2).
pub const MIN_HMAC_SECRET_LEN: usize = 32;

/// Smallest RSA modulus accepted, in bits (RFC 7518 §3.3).
pub const MIN_RSA_BITS: usize = 2048;

/// `rsaEncryption` (RFC 8017 appendix C).
const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
/// `id-ecPublicKey` (RFC 5480 §2.1.1).
const EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
/// `secp256r1`, the curve of ES256 (RFC 5480 §2.1.1.1).
const P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
/// `secp384r1`, the curve of ES384.
const P384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
/// `id-Ed25519` (RFC 8410 §3).
const ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");

/// What is wrong with the configured keys. Each variant has a reason that says how to fix it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyProblem {
    /// Neither an HMAC secret nor a public key was given.
    NoKey,
    /// The HMAC secret is shorter than [`MIN_HMAC_SECRET_LEN`].
    WeakSecret,
    /// The HMAC secret is the public key file itself, which would let anyone holding the public
    /// key sign HS256 tokens.
    SecretIsPublicKey,
    /// The key file could not be read.
    Unreadable,
    /// The file is not one PEM block.
    NotPem,
    /// The PEM block is a private key.
    PrivateKey,
    /// The PEM block is a certificate.
    Certificate,
    /// The PEM block is a public key of a type with no supported JWT algorithm (Ed448, DSA…).
    UnsupportedKeyType,
    /// An EC key on a curve other than P-256 and P-384 (secp256k1, P-521…).
    UnsupportedCurve,
    /// An RSA key shorter than [`MIN_RSA_BITS`].
    WeakRsaKey,
    /// The PEM block's contents are not a valid key of the type its label or identifier says.
    InvalidKey,
}

impl KeyProblem {
    /// A human reason, for the error printed at start-up.
    pub fn reason(self) -> &'static str {
        match self {
            KeyProblem::NoKey => "no key: set --auth-hmac-secret or --auth-public-key",
            KeyProblem::WeakSecret => "the HMAC secret must be at least 32 bytes",
            KeyProblem::SecretIsPublicKey => {
                "the HMAC secret is the public key itself: anyone could sign tokens"
            }
            KeyProblem::Unreadable => "cannot read the file",
            KeyProblem::NotPem => "not a PEM file (expected -----BEGIN PUBLIC KEY-----)",
            KeyProblem::PrivateKey => {
                "a private key: give the public key (openssl pkey -in KEY -pubout)"
            }
            KeyProblem::Certificate => {
                "a certificate: give its public key (openssl x509 -in CERT -pubkey -noout)"
            }
            KeyProblem::UnsupportedKeyType => {
                "unsupported key type (supported: RSA, EC P-256 or P-384, Ed25519)"
            }
            KeyProblem::UnsupportedCurve => "unsupported EC curve (supported: P-256, P-384)",
            KeyProblem::WeakRsaKey => "the RSA key must have at least 2048 bits",
            KeyProblem::InvalidKey => "the key is malformed",
        }
    }
}

/// A configuration error: the problem, and the key file it is about (when there is one).
#[derive(Debug)]
pub struct KeyError {
    /// The key file, or `None` for the HMAC secret and for keys given as bytes.
    pub file: Option<PathBuf>,
    /// What is wrong.
    pub problem: KeyProblem,
    /// The I/O error behind [`KeyProblem::Unreadable`].
    pub io: Option<std::io::Error>,
}

impl KeyError {
    fn new(problem: KeyProblem) -> Self {
        KeyError {
            file: None,
            problem,
            io: None,
        }
    }
}

impl From<KeyProblem> for KeyError {
    fn from(problem: KeyProblem) -> Self {
        KeyError::new(problem)
    }
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.file {
            Some(file) => write!(f, "--auth-public-key {}: ", file.display())?,
            None if self.problem == KeyProblem::WeakSecret => write!(f, "--auth-hmac-secret: ")?,
            None => write!(f, "auth: ")?,
        }
        f.write_str(self.problem.reason())?;
        match &self.io {
            Some(io) => write!(f, ": {io}"),
            None => Ok(()),
        }
    }
}

impl std::error::Error for KeyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.io.as_ref().map(|e| e as _)
    }
}

/// One key and the one algorithm it verifies.
pub(super) struct Verifier {
    /// The only `alg` this key verifies.
    pub(super) alg: Algorithm,
    /// The secret or public key.
    pub(super) key: DecodingKey,
    /// `alg` alone, with the library's clock-reading checks off (see [`super::jwt`]).
    pub(super) validation: Validation,
}

impl Verifier {
    fn new(alg: Algorithm, key: DecodingKey) -> Self {
        let mut validation = Validation::new(alg);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.leeway = 0;
        Verifier {
            alg,
            key,
            validation,
        }
    }
}

/// The configured verification keys: built once at start-up, then shared (it is `Send` and
/// `Sync`) by every loop that checks tokens.
pub struct AuthKeys {
    /// The HS256 key.
    pub(super) hmac: Option<Verifier>,
    /// The public key, with its algorithm.
    pub(super) public: Option<Verifier>,
    /// Seconds of clock skew forgiven on `exp` and `nbf`.
    pub(super) leeway: u64,
}

impl AuthKeys {
    /// Keys from an HMAC secret and/or a PEM public key given as bytes; at least one is needed.
    /// Errors carry no file name (see [`AuthKeys::from_config`] for that).
    pub fn new(
        hmac_secret: Option<&[u8]>,
        public_key_pem: Option<&[u8]>,
    ) -> Result<Self, KeyError> {
        // With exactly one backend feature the library picks it itself; this covers a build in
        // which another crate also turned on `aws_lc_rs` (then it would panic on first use).
        if CryptoProvider::try_get_default().is_none() {
            let _ = jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.install_default();
        }
        let hmac = match hmac_secret {
            Some(secret) if secret.len() < MIN_HMAC_SECRET_LEN => {
                return Err(KeyProblem::WeakSecret.into());
            }
            Some(secret)
                if public_key_pem.is_some_and(|p| p.trim_ascii() == secret.trim_ascii()) =>
            {
                return Err(KeyProblem::SecretIsPublicKey.into());
            }
            Some(secret) => {
                let key = DecodingKey::from_secret(secret).map_err(|_| KeyProblem::WeakSecret)?;
                Some(Verifier::new(Algorithm::HS256, key))
            }
            None => None,
        };
        let public = match public_key_pem {
            Some(pem) => {
                let (alg, key) = public_key(pem)?;
                Some(Verifier::new(alg, key))
            }
            None => None,
        };
        if hmac.is_none() && public.is_none() {
            return Err(KeyProblem::NoKey.into());
        }
        Ok(AuthKeys {
            hmac,
            public,
            leeway: 0,
        })
    }

    /// Keys from the command line: `--auth-hmac-secret` (its UTF-8 bytes are the secret) and
    /// `--auth-public-key FILE`. `Ok(None)` when neither is set: authentication is off. An error
    /// about the file names it.
    pub fn from_config(
        hmac_secret: Option<&str>,
        public_key_file: Option<&Path>,
    ) -> Result<Option<Self>, KeyError> {
        let pem = match public_key_file {
            Some(path) => Some(std::fs::read(path).map_err(|io| KeyError {
                file: Some(path.to_owned()),
                problem: KeyProblem::Unreadable,
                io: Some(io),
            })?),
            None => None,
        };
        if hmac_secret.is_none() && pem.is_none() {
            return Ok(None);
        }
        AuthKeys::new(hmac_secret.map(str::as_bytes), pem.as_deref())
            .map(Some)
            .map_err(|mut e| {
                if !matches!(
                    e.problem,
                    KeyProblem::WeakSecret | KeyProblem::NoKey | KeyProblem::SecretIsPublicKey
                ) {
                    e.file = public_key_file.map(Path::to_owned);
                }
                e
            })
    }

    /// Forgives `secs` seconds of clock skew between the token issuer and this server: a token
    /// is accepted until `exp + secs` and from `nbf - secs`. The default is 0.
    pub fn with_leeway(mut self, secs: u64) -> Self {
        self.leeway = secs;
        self
    }

    /// The algorithms accepted, for the start-up log (e.g. `["HS256", "ES256"]`).
    pub fn algorithms(&self) -> Vec<&'static str> {
        [&self.hmac, &self.public]
            .into_iter()
            .flatten()
            .map(|v| alg_name(v.alg))
            .collect()
    }

    /// The key that verifies `alg`, or `None` when no configured key does (including `none`).
    pub(super) fn verifier(&self, alg: &str) -> Option<&Verifier> {
        [&self.hmac, &self.public]
            .into_iter()
            .flatten()
            .find(|v| alg_name(v.alg) == alg)
    }
}

impl fmt::Debug for AuthKeys {
    /// Shows the algorithms and the leeway, never a key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthKeys")
            .field("algorithms", &self.algorithms())
            .field("leeway", &self.leeway)
            .finish_non_exhaustive()
    }
}

/// The JOSE name of one of the algorithms a key here can imply (RFC 7518 §3.1, RFC 8037 §3.1).
pub(super) fn alg_name(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::HS256 => "HS256",
        Algorithm::RS256 => "RS256",
        Algorithm::ES256 => "ES256",
        Algorithm::ES384 => "ES384",
        Algorithm::EdDSA => "EdDSA",
        // No key built by this module implies any other algorithm.
        _ => "unsupported",
    }
}

/// The algorithm and verification key of a PEM public key: `PUBLIC KEY` (SPKI, RFC 5280
/// §4.1.2.7) of any supported type, or `RSA PUBLIC KEY` (PKCS#1).
fn public_key(pem: &[u8]) -> Result<(Algorithm, DecodingKey), KeyProblem> {
    let (label, der) = pem_rfc7468::decode_vec(pem.trim_ascii()).map_err(|_| KeyProblem::NotPem)?;
    let (alg, key) = match label {
        "PUBLIC KEY" => spki_key(&der)?,
        "RSA PUBLIC KEY" => (Algorithm::RS256, rsa_key(&der)?),
        "CERTIFICATE" => return Err(KeyProblem::Certificate),
        label if label.ends_with("PRIVATE KEY") => return Err(KeyProblem::PrivateKey),
        _ => return Err(KeyProblem::UnsupportedKeyType),
    };
    // The library parses EC and Ed25519 points when it builds a verifier: build one now, on a
    // dummy signature, so that an invalid point is an error here and not a refusal of every
    // token later. A bad signature is `Ok(false)`; only a bad key is an error.
    jsonwebtoken::crypto::verify("AA", b"", &key, alg).map_err(|_| KeyProblem::InvalidKey)?;
    Ok((alg, key))
}

/// The algorithm and key of a DER `SubjectPublicKeyInfo`.
fn spki_key(der: &[u8]) -> Result<(Algorithm, DecodingKey), KeyProblem> {
    let spki = SubjectPublicKeyInfoRef::try_from(der).map_err(|_| KeyProblem::InvalidKey)?;
    let (oid, parameters) = spki.algorithm.oids().map_err(|_| KeyProblem::InvalidKey)?;
    // The key itself: PKCS#1 `RSAPublicKey` DER, an SEC1 point, or 32 Ed25519 bytes.
    let bits = spki
        .subject_public_key
        .as_bytes()
        .ok_or(KeyProblem::InvalidKey)?;
    match (oid, parameters) {
        (RSA_ENCRYPTION, _) => Ok((Algorithm::RS256, rsa_key(bits)?)),
        (EC_PUBLIC_KEY, Some(P256)) => Ok((Algorithm::ES256, DecodingKey::from_ec_der(bits))),
        (EC_PUBLIC_KEY, Some(P384)) => Ok((Algorithm::ES384, DecodingKey::from_ec_der(bits))),
        (EC_PUBLIC_KEY, _) => Err(KeyProblem::UnsupportedCurve),
        (ED25519, _) => Ok((Algorithm::EdDSA, DecodingKey::from_ed_der(bits))),
        _ => Err(KeyProblem::UnsupportedKeyType),
    }
}

/// The key of a PKCS#1 `RSAPublicKey`, parsed now (the library would only parse it per
/// token, and report a bad key as a bad signature) and at least [`MIN_RSA_BITS`] long.
fn rsa_key(pkcs1: &[u8]) -> Result<DecodingKey, KeyProblem> {
    let key = rsa::PublicKey::from_pkcs1_der(pkcs1).map_err(|_| KeyProblem::InvalidKey)?;
    if key.n().bit_width() < MIN_RSA_BITS as u32 {
        return Err(KeyProblem::WeakRsaKey);
    }
    Ok(DecodingKey::from_rsa_der(pkcs1))
}
