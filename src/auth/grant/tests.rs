//! Unit tests for channel patterns: a table of what each pattern form grants, the validity
//! rules, and a property test against a naive reference matcher.

use super::*;
use proptest::prelude::*;

/// `pattern => [granted], [not granted];` — one pattern, checked both ways.
macro_rules! grants {
    ($($pattern:literal => [$($yes:literal),*], [$($no:literal),*];)*) => {
        #[test]
        fn pattern_table() {
            $(
                let p = Patterns::parse([$pattern]).unwrap();
                $(assert!(p.matches($yes), "{} should grant {}", $pattern, $yes);)*
                $(assert!(!p.matches($no), "{} should not grant {}", $pattern, $no);)*
            )*
        }
    };
}

grants! {
    "room42" => ["room42"], ["room4", "room420", "Room42", "xroom42"];
    "room-*" => ["room-", "room-1", "room-abc*"], ["room", "room_1", "xroom-1"];
    "*" => ["a", "room42", "*", "~"], [];
    "**" => ["*", "**", "*a"], ["a", "a*"];
    "a*b" => ["a*b"], ["ab", "a*bc", "a-b"];
    "room*" => ["room", "room*", "rooms"], ["roo"];
}

#[test]
fn validity() {
    let long = "a".repeat(64);
    for ok in [
        "a",
        "*",
        "a*",
        "a*b",
        "**",
        "!#$%&'*+-.^_`|~",
        &long,
        &format!("{long}*"),
    ] {
        assert!(Patterns::is_valid(ok), "{ok:?}");
    }
    let too_long = "a".repeat(65);
    for bad in [
        "",
        "a b",
        "a/b*",
        "room\u{e9}",
        "a\"",
        "(x)*",
        &too_long,
        &format!("{too_long}*"),
    ] {
        assert!(!Patterns::is_valid(bad), "{bad:?}");
        assert_eq!(Patterns::parse(["ok", bad]), Err(AuthError::InvalidClaims));
    }
}

#[test]
fn none_grants_nothing() {
    assert!(Patterns::none().is_empty() && !Patterns::none().matches("a"));
    let empty: [&str; 0] = [];
    assert_eq!(Patterns::parse(empty), Ok(Patterns::none()));
}

/// The reference: a pattern ending in `*` matches the channels that begin, byte by byte, with
/// everything before that `*`; any other pattern matches only itself.
fn naive(patterns: &[String], channel: &str) -> bool {
    patterns.iter().any(|p| {
        let (p, c) = (p.as_bytes(), channel.as_bytes());
        match p.split_last() {
            Some((b'*', body)) => c.len() >= body.len() && (0..body.len()).all(|i| c[i] == body[i]),
            _ => p == c,
        }
    })
}

/// A channel name: RFC 7230 token characters, 1–64 bytes. The alphabet is small so that
/// random patterns and channels often share prefixes.
const CHANNEL: &str = "[ab*~.-]{1,64}";

/// A pattern: a channel name, or a (possibly empty) prefix and `*`.
fn pattern() -> impl Strategy<Value = String> {
    prop_oneof![
        CHANNEL.prop_map(String::from),
        "[ab*~.-]{0,6}".prop_map(|p| format!("{p}*")),
        "[ab]{1,3}".prop_map(String::from),
    ]
}

proptest! {
    #[test]
    fn matches_the_reference(
        join in proptest::collection::vec(pattern(), 0..6),
        publish in proptest::collection::vec(pattern(), 0..6),
        channels in proptest::collection::vec(
            prop_oneof![CHANNEL.prop_map(String::from), "[ab]{1,4}".prop_map(String::from)],
            1..16,
        ),
    ) {
        let grant = Grant {
            exp: 1,
            sub: None,
            join: Patterns::parse(&join).unwrap(),
            publish: Patterns::parse(&publish).unwrap(),
        };
        for channel in &channels {
            prop_assert_eq!(grant.may_join(channel), naive(&join, channel), "{}", channel);
            prop_assert_eq!(grant.may_publish(channel), naive(&publish, channel), "{}", channel);
        }
    }

    #[test]
    fn any_token_characters_match_the_reference(
        patterns in proptest::collection::vec("[!#$%&'*+.^_`|~0-9A-Za-z-]{1,5}", 0..5),
        channel in "[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}",
    ) {
        let parsed = Patterns::parse(&patterns).unwrap();
        prop_assert_eq!(parsed.matches(&channel), naive(&patterns, &channel));
    }
}
