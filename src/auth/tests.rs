//! Unit tests for verification: one vector per claim rule and per refusal (expired, not yet
//! valid, bad signature, tampered payload, wrong key, `alg: none`, key confusion, algorithms
//! not configured, malformed, missing `exp`), every accepted algorithm, key loading, and the
//! refusals' status, headers and bodies. Tokens are signed here with the test-only keys of
//! `tests/keys/`.

use super::*;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

const SECRET: &[u8] = b"test-only hmac secret, 32+ bytes long";
const NOW: u64 = 1_700_000_000;

const RS256_KEY: &str = include_str!("../../tests/keys/rs256.key.pem");
const RS256_PUB: &str = include_str!("../../tests/keys/rs256.pub.pem");
const RS256_PKCS1_PUB: &str = include_str!("../../tests/keys/rs256.pkcs1.pub.pem");
const ES256_KEY: &str = include_str!("../../tests/keys/es256.key.pem");
const ES256_PUB: &str = include_str!("../../tests/keys/es256.pub.pem");
const ES256_OTHER_KEY: &str = include_str!("../../tests/keys/es256-other.key.pem");
const ES384_KEY: &str = include_str!("../../tests/keys/es384.key.pem");
const ES384_PUB: &str = include_str!("../../tests/keys/es384.pub.pem");
const ED25519_KEY: &str = include_str!("../../tests/keys/ed25519.key.pem");
const ED25519_PUB: &str = include_str!("../../tests/keys/ed25519.pub.pem");

fn der(pem: &str) -> Vec<u8> {
    pem_rfc7468::decode_vec(pem.trim().as_bytes()).unwrap().1
}

/// A compact JWT of `claims` with header `{"alg": alg}`, signed with `key`.
fn signed(alg: Algorithm, key: &EncodingKey, claims: &Value) -> String {
    jsonwebtoken::encode(&Header::new(alg), claims, key).unwrap()
}

/// `claims` signed with the test key for `alg`.
fn sign(alg: Algorithm, claims: &Value) -> String {
    let key = match alg {
        Algorithm::HS256 => EncodingKey::from_secret(SECRET).unwrap(),
        Algorithm::RS256 => EncodingKey::from_rsa_der(&der(RS256_KEY)),
        Algorithm::ES256 => EncodingKey::from_ec_der(&der(ES256_KEY)),
        Algorithm::ES384 => EncodingKey::from_ec_der(&der(ES384_KEY)),
        Algorithm::EdDSA => EncodingKey::from_ed_der(&der(ED25519_KEY)),
        _ => unreachable!("no test key for {alg:?}"),
    };
    signed(alg, &key, claims)
}

/// A token assembled by hand: any header, any payload, any signature bytes.
fn forged(header: &Value, payload: &[u8], signature: &[u8]) -> String {
    let b64 = |b: &[u8]| URL_SAFE_NO_PAD.encode(b);
    format!(
        "{}.{}.{}",
        b64(header.to_string().as_bytes()),
        b64(payload),
        b64(signature)
    )
}

/// `message` (`header.payload`, both base64url) with a valid HS256 signature.
fn hs256_over(message: &str) -> String {
    let key = EncodingKey::from_secret(SECRET).unwrap();
    let sig = jsonwebtoken::crypto::sign(message.as_bytes(), &key, Algorithm::HS256).unwrap();
    format!("{message}.{sig}")
}

fn claims() -> Value {
    json!({"exp": NOW + 60, "sub": "alice", "channels": ["room42", "team-*"], "publish": ["room42"]})
}

fn with(extra: Value) -> Value {
    let mut c = claims();
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    c
}

fn hs() -> AuthKeys {
    AuthKeys::new(Some(SECRET), None).unwrap()
}
fn es() -> AuthKeys {
    AuthKeys::new(None, Some(ES256_PUB.as_bytes())).unwrap()
}
fn rs() -> AuthKeys {
    AuthKeys::new(None, Some(RS256_PUB.as_bytes())).unwrap()
}
fn both() -> AuthKeys {
    AuthKeys::new(Some(SECRET), Some(ES256_PUB.as_bytes())).unwrap()
}

/// `name: keys, token => error;` — verification at `NOW` fails so.
macro_rules! refused {
    ($($name:ident: $keys:ident, $token:expr => $err:ident;)*) => {$(
        #[test]
        fn $name() {
            let token: String = $token;
            assert_eq!($keys().verify(token.as_bytes(), NOW), Err(AuthError::$err));
        }
    )*};
}

/// `name: keys, token;` — verification at `NOW` succeeds.
macro_rules! accepted {
    ($($name:ident: $keys:ident, $token:expr;)*) => {$(
        #[test]
        fn $name() {
            let token: String = $token;
            let grant = $keys().verify(token.as_bytes(), NOW).unwrap();
            assert!(grant.exp > NOW);
        }
    )*};
}

refused! {
    expired_at_exp: hs, sign(Algorithm::HS256, &with(json!({"exp": NOW}))) => Expired;
    expired_long_ago: hs, sign(Algorithm::HS256, &with(json!({"exp": 1}))) => Expired;
    expired_before_epoch: hs, sign(Algorithm::HS256, &with(json!({"exp": -5}))) => Expired;
    expired_fraction: hs, sign(Algorithm::HS256, &with(json!({"exp": NOW as f64 - 0.5}))) => Expired;
    nbf_in_future: hs, sign(Algorithm::HS256, &with(json!({"nbf": NOW + 1}))) => NotYetValid;
    bad_signature: hs, {
        let other = EncodingKey::from_secret(b"another test-only secret of 32+ bytes").unwrap();
        signed(Algorithm::HS256, &other, &claims())
    } => BadSignature;
    tampered_payload: hs, {
        let token = sign(Algorithm::HS256, &claims());
        let parts: Vec<&str> = token.split('.').collect();
        let evil = URL_SAFE_NO_PAD.encode(with(json!({"channels": ["*"]})).to_string());
        format!("{}.{evil}.{}", parts[0], parts[2])
    } => BadSignature;
    empty_signature: hs, {
        let token = sign(Algorithm::HS256, &claims());
        token[..=token.rfind('.').unwrap()].to_owned()
    } => BadSignature;
    wrong_key_es256: es, signed(Algorithm::ES256, &EncodingKey::from_ec_der(&der(ES256_OTHER_KEY)), &claims()) => BadSignature;
    zero_signature_es256: es, forged(&json!({"alg": "ES256"}), claims().to_string().as_bytes(), &[0; 64]) => BadSignature;
    alg_none: hs, forged(&json!({"alg": "none", "typ": "JWT"}), claims().to_string().as_bytes(), b"") => UnsupportedAlgorithm;
    alg_none_with_public_key: es, forged(&json!({"alg": "none"}), claims().to_string().as_bytes(), b"") => UnsupportedAlgorithm;
    alg_none_capitalized: both, forged(&json!({"alg": "None"}), claims().to_string().as_bytes(), b"x") => UnsupportedAlgorithm;
    key_confusion_es256_pem: es, signed(Algorithm::HS256, &EncodingKey::from_secret(ES256_PUB.as_bytes()).unwrap(), &claims()) => UnsupportedAlgorithm;
    key_confusion_rs256_pem: rs, signed(Algorithm::HS256, &EncodingKey::from_secret(RS256_PUB.as_bytes()).unwrap(), &claims()) => UnsupportedAlgorithm;
    key_confusion_with_hmac_configured: both, signed(Algorithm::HS256, &EncodingKey::from_secret(ES256_PUB.as_bytes()).unwrap(), &claims()) => BadSignature;
    rs256_not_configured: es, sign(Algorithm::RS256, &claims()) => UnsupportedAlgorithm;
    es256_not_configured: hs, sign(Algorithm::ES256, &claims()) => UnsupportedAlgorithm;
    es384_on_p256_key: es, sign(Algorithm::ES384, &claims()) => UnsupportedAlgorithm;
    hs384_not_configured: hs, signed(Algorithm::HS384, &EncodingKey::from_secret(SECRET).unwrap(), &claims()) => UnsupportedAlgorithm;
    alg_unknown: hs, forged(&json!({"alg": "XS999"}), b"{}", b"sig") => UnsupportedAlgorithm;
    malformed_empty: hs, String::new() => Malformed;
    malformed_one_part: hs, "abc".into() => Malformed;
    malformed_two_parts: hs, "eyJhbGciOiJIUzI1NiJ9.e30".into() => Malformed;
    malformed_four_parts: hs, format!("{}.x", sign(Algorithm::HS256, &claims())) => Malformed;
    malformed_not_base64url: hs, sign(Algorithm::HS256, &claims()).replacen('e', "+", 1) => Malformed;
    malformed_header_not_json: hs, format!("{}.e30.sig", URL_SAFE_NO_PAD.encode("alg")) => Malformed;
    malformed_header_no_alg: hs, forged(&json!({"typ": "JWT"}), b"{}", b"sig") => Malformed;
    malformed_kid_not_string: hs, hs256_over(&format!("{}.{}",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256","kid":5}"#), URL_SAFE_NO_PAD.encode(claims().to_string()))) => Malformed;
    malformed_alg_not_string: hs, forged(&json!({"alg": 256}), b"{}", b"sig") => Malformed;
    malformed_payload_not_json: hs, hs256_over(&format!("{}.{}",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256"}"#), URL_SAFE_NO_PAD.encode("not json"))) => Malformed;
    malformed_crit_header: hs, {
        let mut header = Header::new(Algorithm::HS256);
        header.crit = Some(vec!["exp".into()]);
        jsonwebtoken::encode(&header, &claims(), &EncodingKey::from_secret(SECRET).unwrap()).unwrap()
    } => Malformed;
    malformed_too_long: hs, sign(Algorithm::HS256, &with(json!({"pad": "x".repeat(jwt::MAX_TOKEN_LEN)}))) => Malformed;
    missing_exp: hs, sign(Algorithm::HS256, &json!({"sub": "alice", "channels": ["*"]})) => MissingExp;
    null_exp: hs, sign(Algorithm::HS256, &with(json!({"exp": null}))) => MissingExp;
    exp_not_number: hs, sign(Algorithm::HS256, &with(json!({"exp": "tomorrow"}))) => InvalidClaims;
    nbf_not_number: hs, sign(Algorithm::HS256, &with(json!({"nbf": [1]}))) => InvalidClaims;
    sub_not_string: hs, sign(Algorithm::HS256, &with(json!({"sub": 42}))) => InvalidClaims;
    channels_not_list: hs, sign(Algorithm::HS256, &with(json!({"channels": "room42"}))) => InvalidClaims;
    channels_not_strings: hs, sign(Algorithm::HS256, &with(json!({"channels": [42]}))) => InvalidClaims;
    channel_pattern_empty: hs, sign(Algorithm::HS256, &with(json!({"channels": [""]}))) => InvalidClaims;
    channel_pattern_slash: hs, sign(Algorithm::HS256, &with(json!({"channels": ["room/1"]}))) => InvalidClaims;
    channel_pattern_too_long: hs, sign(Algorithm::HS256, &with(json!({"channels": ["a".repeat(65)]}))) => InvalidClaims;
    publish_pattern_space: hs, sign(Algorithm::HS256, &with(json!({"publish": ["a b*"]}))) => InvalidClaims;
}

accepted! {
    hs256: hs, sign(Algorithm::HS256, &claims());
    rs256: rs, sign(Algorithm::RS256, &claims());
    rs256_pkcs1_key: rs_pkcs1, sign(Algorithm::RS256, &claims());
    es256: es, sign(Algorithm::ES256, &claims());
    es384_token: es384, sign(Algorithm::ES384, &claims());
    eddsa_token: ed25519, sign(Algorithm::EdDSA, &claims());
    both_keys_hs256: both, sign(Algorithm::HS256, &claims());
    both_keys_es256: both, sign(Algorithm::ES256, &claims());
    one_second_left: hs, sign(Algorithm::HS256, &with(json!({"exp": NOW + 1})));
    fraction_left: hs, sign(Algorithm::HS256, &with(json!({"exp": NOW as f64 + 0.5})));
    nbf_now: hs, sign(Algorithm::HS256, &with(json!({"nbf": NOW})));
    nbf_past_fraction: hs, sign(Algorithm::HS256, &with(json!({"nbf": NOW as f64 - 0.5})));
    other_claims_ignored: hs, sign(Algorithm::HS256, &with(json!({"aud": "x", "iss": 7, "iat": "y"})));
    null_claims_absent: hs, sign(Algorithm::HS256, &with(json!({"sub": null, "publish": null})));
    exp_far_future: hs, sign(Algorithm::HS256, &with(json!({"exp": 1e30})));
}

fn rs_pkcs1() -> AuthKeys {
    AuthKeys::new(None, Some(RS256_PKCS1_PUB.as_bytes())).unwrap()
}
fn es384() -> AuthKeys {
    AuthKeys::new(None, Some(ES384_PUB.as_bytes())).unwrap()
}
fn ed25519() -> AuthKeys {
    AuthKeys::new(None, Some(ED25519_PUB.as_bytes())).unwrap()
}

#[test]
fn grant_holds_the_claims() {
    let grant = hs()
        .verify(sign(Algorithm::HS256, &claims()).as_bytes(), NOW)
        .unwrap();
    assert_eq!((grant.exp, grant.sub.as_deref()), (NOW + 60, Some("alice")));
    assert!(grant.may_join("room42") && grant.may_join("team-a") && !grant.may_join("team"));
    assert!(grant.may_publish("room42") && !grant.may_publish("team-a"));
    assert!(!grant.expired(NOW + 59) && grant.expired(NOW + 60));
    assert_eq!(grant.remaining(NOW + 50).as_secs(), 10);
    assert_eq!(grant.remaining(NOW + 99).as_secs(), 0);
}

#[test]
fn absent_patterns_grant_nothing() {
    let token = sign(Algorithm::HS256, &json!({"exp": NOW + 60}));
    let grant = hs().verify(token.as_bytes(), NOW).unwrap();
    assert!(grant.join.is_empty() && grant.publish.is_empty() && grant.sub.is_none());
}

#[test]
fn leeway_extends_exp_and_nbf() {
    let keys = hs().with_leeway(5);
    let token = sign(Algorithm::HS256, &with(json!({"exp": NOW, "nbf": NOW + 5})));
    assert_eq!(keys.verify(token.as_bytes(), NOW).unwrap().exp, NOW + 5);
    assert_eq!(
        keys.verify(token.as_bytes(), NOW + 5),
        Err(AuthError::Expired)
    );
    let early = sign(Algorithm::HS256, &with(json!({"nbf": NOW + 6})));
    assert_eq!(
        keys.verify(early.as_bytes(), NOW),
        Err(AuthError::NotYetValid)
    );
}

#[test]
fn authorize_join_and_publish() {
    let keys = hs();
    let jwt = sign(Algorithm::HS256, &claims());
    let offer = format!("bearer.{jwt}");
    let token = find_token([offer.as_bytes()], "/", []).unwrap();
    let token = token.as_ref();
    assert_eq!(
        keys.authorize_join(None, "room42", NOW),
        Err(AuthError::MissingToken)
    );
    assert!(keys.authorize_join(token, "team-x", NOW).is_ok());
    assert_eq!(
        keys.authorize_join(token, "lobby", NOW),
        Err(AuthError::ForbiddenChannel)
    );
    assert!(keys.authorize_publish(token, "room42", NOW).is_ok());
    assert_eq!(
        keys.authorize_publish(token, "team-x", NOW),
        Err(AuthError::ForbiddenPublish)
    );
    assert_eq!(
        keys.authorize_publish(token, "room42", NOW + 60),
        Err(AuthError::Expired)
    );
}

#[test]
fn refusals_are_complete_http_responses() {
    let mut reasons = std::collections::HashSet::new();
    for &e in AuthError::ALL {
        assert!(reasons.insert(e.reason()), "duplicate reason {e:?}");
        assert!(!Refusal::ALL.iter().any(|r| r.reason == e.reason()));
        let status = match e {
            AuthError::MultipleTokens => 400,
            AuthError::ForbiddenChannel | AuthError::ForbiddenPublish => 403,
            _ => 401,
        };
        assert_eq!(e.status(), status, "{e:?}");
        // RFC 6750 §3: error_description is %x20-21 / %x23-5B / %x5D-7E.
        assert!(
            e.reason()
                .bytes()
                .all(|b| (0x20..=0x7e).contains(&b) && b != b'"' && b != b'\\')
        );
        let response = String::from_utf8(e.refusal().response()).unwrap();
        let head = format!("HTTP/1.1 {status} ");
        assert!(response.starts_with(&head), "{response}");
        let www = match e {
            AuthError::MissingToken => "WWW-Authenticate: Bearer\r\n".to_owned(),
            _ => format!(
                "WWW-Authenticate: Bearer error=\"{}\", error_description=\"{}\"\r\n",
                e.code(),
                e.reason()
            ),
        };
        assert!(response.contains(&www), "{response}");
        let body = response.split("\r\n\r\n").nth(1).unwrap();
        let json: Value = serde_json::from_str(body).unwrap();
        assert_eq!(json, json!({"error": e.reason()}));
    }
}

#[test]
fn key_problems() {
    let problem =
        |hmac: Option<&[u8]>, pem: Option<&[u8]>| AuthKeys::new(hmac, pem).unwrap_err().problem;
    let key = |name: &str| {
        std::fs::read(format!("{}/tests/keys/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
    };
    let pem =
        |der: &[u8]| pem_rfc7468::encode_string("PUBLIC KEY", Default::default(), der).unwrap();
    let mut bad_point = der(ES256_PUB);
    *bad_point.last_mut().unwrap() ^= 1;
    let (not_spki, bad_point) = (pem(b"\x30\x03\x02\x01\x00"), pem(&bad_point));
    use KeyProblem::*;
    type Case<'a> = (Option<&'a [u8]>, Option<&'a [u8]>, KeyProblem);
    let cases: &[Case<'_>] = &[
        (None, None, NoKey),
        (Some(&SECRET[..31]), None, WeakSecret),
        (
            Some(ES256_PUB.as_bytes()),
            Some(ES256_PUB.as_bytes()),
            SecretIsPublicKey,
        ),
        (None, Some(b"not a key"), NotPem),
        (None, Some(ES256_KEY.as_bytes()), PrivateKey),
        (None, Some(RS256_KEY.as_bytes()), PrivateKey),
        (None, Some(&key("es256.cert.pem")), Certificate),
        (None, Some(&key("ed448.pub.pem")), UnsupportedKeyType),
        (None, Some(&key("secp256k1.pub.pem")), UnsupportedCurve),
        (None, Some(&key("rsa1024.pub.pem")), WeakRsaKey),
        (None, Some(not_spki.as_bytes()), InvalidKey),
        (None, Some(bad_point.as_bytes()), InvalidKey),
    ];
    for (hmac, pem, want) in cases {
        assert_eq!(problem(*hmac, *pem), *want);
    }
}

#[test]
fn from_config_names_the_file() {
    assert!(AuthKeys::from_config(None, None).unwrap().is_none());
    let missing = std::path::Path::new("/nonexistent/fanout-key.pem");
    let err = AuthKeys::from_config(None, Some(missing)).unwrap_err();
    assert_eq!(err.problem, KeyProblem::Unreadable);
    assert!(
        err.to_string()
            .starts_with("--auth-public-key /nonexistent/fanout-key.pem: cannot read the file: ")
    );
    let cert =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/keys/es256.cert.pem");
    let err = AuthKeys::from_config(None, Some(&cert)).unwrap_err();
    assert!(
        err.to_string().contains("es256.cert.pem: a certificate"),
        "{err}"
    );
    let err = AuthKeys::from_config(Some("short"), None).unwrap_err();
    assert_eq!(
        err.to_string(),
        "--auth-hmac-secret: the HMAC secret must be at least 32 bytes"
    );
    let public = cert.with_file_name("es256.pub.pem");
    let keys = AuthKeys::from_config(Some(std::str::from_utf8(SECRET).unwrap()), Some(&public));
    assert_eq!(keys.unwrap().unwrap().algorithms(), ["HS256", "ES256"]);
}

#[test]
fn keys_never_show_secrets_and_are_shareable() {
    fn shareable<T: Send + Sync>() {}
    shareable::<AuthKeys>();
    let shown = format!("{:?}", both());
    assert!(
        shown.contains("HS256") && !shown.contains("test-only"),
        "{shown}"
    );
    let jwt = sign(Algorithm::HS256, &claims());
    let header = format!("Bearer {jwt}");
    let token = find_token([], "/", [header.as_bytes()]).unwrap().unwrap();
    assert!(!format!("{token:?}").contains(&jwt[..20]));
}

#[test]
fn algorithms_follow_the_keys() {
    assert_eq!(hs().algorithms(), ["HS256"]);
    assert_eq!(rs().algorithms(), ["RS256"]);
    assert_eq!(es384().algorithms(), ["ES384"]);
    assert_eq!(ed25519().algorithms(), ["EdDSA"]);
}
