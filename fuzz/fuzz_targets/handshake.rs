//! `handshake::parse` over arbitrary bytes, as the server calls it: again with the whole
//! buffer each time more bytes arrive.
//!
//! Under each policy of `common::policies`:
//! - the answer for the whole input is consistent: `Complete((_, n))` has `0 < n <= len` and
//!   `n <= max_header_bytes`, and parsing only the head gives the same answer; `Partial` means
//!   the input still fits in `max_header_bytes`;
//! - an `Upgrade`'s channel satisfies `is_channel` (and is the policy's default when it was not
//!   offered), its accept key is base64 of 20 bytes, and its `101` parses back with the same
//!   accept key and protocol;
//! - an API request keeps the routing invariants of `common::check_http`;
//! - every refusal is in `Refusal::ALL`, and its `response()` is one well-formed HTTP/1.1
//!   response whose `Content-Length` is its body's length.
//!
//! Under one policy (picked by the input's length), growing prefixes: once a prefix gives
//! `Complete` or `Err`, every longer one gives the same, and a head of `n` bytes is `Partial`
//! at `n - 1` bytes (so the first `Complete` comes at exactly `n`).
#![no_main]

mod common;

use fanout::proto::Decoded;
use fanout::proto::handshake::{self, Policy, Refusal, Request, Upgrade};
use libfuzzer_sys::fuzz_target;

type Answer = Result<Decoded<(Request, usize)>, Refusal>;

/// Inputs up to this long have every prefix parsed.
const EVERY_PREFIX: usize = 128;

/// Longer inputs have this many prefixes parsed, evenly spaced (and the ones around the end of
/// a complete head).
const SAMPLED_PREFIXES: usize = 64;

fn check_upgrade(policy: &Policy<'_>, up: &Upgrade) {
    assert!(
        handshake::is_channel(up.channel.as_bytes()),
        "{:?}",
        up.channel
    );
    if !up.selected_protocol {
        assert_eq!(Some(up.channel.as_str()), policy.default_channel);
    }
    assert!(
        up.accept.len() == 28 && up.accept.ends_with('='),
        "{:?}",
        up.accept
    );
    let response = handshake::upgrade_response(up);
    let mut headers = [httparse::EMPTY_HEADER; 16];
    let mut res = httparse::Response::new(&mut headers);
    assert_eq!(
        res.parse(&response),
        Ok(httparse::Status::Complete(response.len()))
    );
    assert_eq!((res.version, res.code), (Some(1), Some(101)));
    let get = |name: &str| {
        let mut values = res
            .headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(name));
        let first = values.next().map(|h| h.value);
        assert!(values.next().is_none(), "{name} twice");
        first
    };
    assert_eq!(get("Upgrade"), Some(&b"websocket"[..]));
    assert_eq!(get("Sec-WebSocket-Accept"), Some(up.accept.as_bytes()));
    let protocol = up.selected_protocol.then_some(up.channel.as_bytes());
    assert_eq!(get("Sec-WebSocket-Protocol"), protocol);
}

fn check_answer(data: &[u8], policy: &Policy<'_>, answer: &Answer) {
    match answer {
        Ok(Decoded::Complete((request, n))) => {
            let n = *n;
            assert!(n > 0 && n <= data.len(), "n = {n} of {}", data.len());
            assert!(n <= policy.max_header_bytes, "head of {n} bytes accepted");
            assert!(data[..n].ends_with(b"\n"), "head does not end a line");
            let head_only = handshake::parse(&data[..n], policy);
            assert_eq!(
                &head_only, answer,
                "bytes after the head changed the answer"
            );
            match request {
                Request::Upgrade(up) => check_upgrade(policy, up),
                Request::Http(req) => common::check_http(data, &data[..n], policy, req),
            }
        }
        Ok(Decoded::Partial) => {
            assert!(
                data.len() <= policy.max_header_bytes,
                "{} bytes partial",
                data.len()
            );
        }
        Err(refusal) => common::check_refusal(refusal),
    }
}

fn check_prefixes(data: &[u8], policy: &Policy<'_>, whole: &Answer) {
    let len = data.len();
    let mut lengths: Vec<usize> = if len <= EVERY_PREFIX {
        (0..=len).collect()
    } else {
        (0..=SAMPLED_PREFIXES)
            .map(|i| len * i / SAMPLED_PREFIXES)
            .collect()
    };
    // A complete head is partial one byte short of its end, and complete from there on.
    if let Ok(Decoded::Complete((_, n))) = whole {
        lengths.extend([n - 1, *n]);
        lengths.sort_unstable();
        lengths.dedup();
        assert_eq!(
            handshake::parse(&data[..n - 1], policy),
            Ok(Decoded::Partial),
            "n = {n}"
        );
    }
    let mut decided: Option<(usize, Answer)> = None;
    for k in lengths {
        let answer = if k == len {
            whole.clone()
        } else {
            handshake::parse(&data[..k], policy)
        };
        match &decided {
            Some((at, first)) => assert_eq!(
                &answer, first,
                "{k} bytes answer differently from {at} bytes"
            ),
            None if answer != Ok(Decoded::Partial) => decided = Some((k, answer)),
            None => {}
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let policies = common::policies();
    for policy in &policies {
        check_answer(data, policy, &handshake::parse(data, policy));
    }
    let policy = &policies[data.len() % policies.len()];
    check_prefixes(data, policy, &handshake::parse(data, policy));
});
