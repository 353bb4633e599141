//! Access-control hot paths: verifying one token (the cost added to each authenticated
//! handshake and `POST /publish`), per algorithm, and one rate-limit check (the cost added to
//! each message a client sends). Pure functions over in-memory bytes, with the test-only keys of
//! `tests/keys/`; throughput counts tokens (or checks), so criterion's time per element is the
//! time per handshake.

use std::hint::black_box;
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use fanout::auth::{AuthKeys, Bucket, find_token};
use jsonwebtoken::{Algorithm, EncodingKey, Header};

const NOW: u64 = 1_700_000_000;
const SECRET: &[u8] = b"test-only hmac secret, 32+ bytes long";

fn der(pem: &str) -> Vec<u8> {
    pem_rfc7468::decode_vec(pem.trim().as_bytes()).unwrap().1
}

/// `(name, keys, token)` for each algorithm: a typical token (sub, a few channel patterns).
fn cases() -> Vec<(&'static str, AuthKeys, String)> {
    let claims = serde_json::json!({
        "exp": NOW + 3600, "sub": "user-1234",
        "channels": ["room42", "team-7-*", "announcements"], "publish": ["room42"],
    });
    let pub_key = |pem: &str| AuthKeys::new(None, Some(pem.as_bytes())).unwrap();
    let sign =
        |alg, key: EncodingKey| jsonwebtoken::encode(&Header::new(alg), &claims, &key).unwrap();
    vec![
        (
            "HS256",
            AuthKeys::new(Some(SECRET), None).unwrap(),
            sign(Algorithm::HS256, EncodingKey::from_secret(SECRET).unwrap()),
        ),
        (
            "RS256",
            pub_key(include_str!("../tests/keys/rs256.pub.pem")),
            sign(
                Algorithm::RS256,
                EncodingKey::from_rsa_der(&der(include_str!("../tests/keys/rs256.key.pem"))),
            ),
        ),
        (
            "ES256",
            pub_key(include_str!("../tests/keys/es256.pub.pem")),
            sign(
                Algorithm::ES256,
                EncodingKey::from_ec_der(&der(include_str!("../tests/keys/es256.key.pem"))),
            ),
        ),
        (
            "ES384",
            pub_key(include_str!("../tests/keys/es384.pub.pem")),
            sign(
                Algorithm::ES384,
                EncodingKey::from_ec_der(&der(include_str!("../tests/keys/es384.key.pem"))),
            ),
        ),
        (
            "EdDSA",
            pub_key(include_str!("../tests/keys/ed25519.pub.pem")),
            sign(
                Algorithm::EdDSA,
                EncodingKey::from_ed_der(&der(include_str!("../tests/keys/ed25519.key.pem"))),
            ),
        ),
    ]
}

/// Finding and verifying the token of one upgrade, and checking its channel: everything the
/// handshake adds.
fn bench_verify(c: &mut Criterion) {
    let mut group = c.benchmark_group("auth_verify");
    group.throughput(Throughput::Elements(1));
    for (name, keys, token) in cases() {
        let offer = format!("bearer.{token}");
        group.bench_with_input(BenchmarkId::from_parameter(name), &offer, |b, offer| {
            b.iter(|| {
                let offers = [&b"room42"[..], black_box(offer.as_bytes())];
                let token = find_token(offers, "/", []).unwrap();
                keys.authorize_join(token.as_ref(), "room42", NOW).unwrap()
            })
        });
    }
    group.finish();
}

/// A refused token costs less: an unsupported `alg` is refused before any cryptography.
fn bench_refuse(c: &mut Criterion) {
    let mut group = c.benchmark_group("auth_refuse");
    group.throughput(Throughput::Elements(1));
    let (_, keys, _) = cases().swap_remove(2);
    let none = "eyJhbGciOiJub25lIn0.eyJleHAiOjk5OTk5OTk5OTl9.";
    group.bench_function("alg_none", |b| {
        b.iter(|| keys.verify(black_box(none.as_bytes()), NOW).unwrap_err())
    });
    group.finish();
}

/// One `--max-client-rate` check per message.
fn bench_bucket(c: &mut Criterion) {
    let mut group = c.benchmark_group("auth_bucket");
    group.throughput(Throughput::Elements(1));
    let t0 = Instant::now();
    let rate = NonZeroU32::new(1000).unwrap();
    let mut bucket = Bucket::new(rate, rate, t0);
    let mut now = t0;
    group.bench_function("try_take", |b| {
        b.iter(|| {
            now += Duration::from_micros(1);
            bucket.try_take(black_box(now))
        })
    });
    group.finish();
}

criterion_group!(benches, bench_verify, bench_refuse, bench_bucket);
criterion_main!(benches);
