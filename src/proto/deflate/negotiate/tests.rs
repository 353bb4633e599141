//! Negotiation vectors: every offer form a client may send (RFC 7692 §5, §7.1; RFC 6455 §9.1)
//! and the exact `Sec-WebSocket-Extensions` answer, or none.

use super::*;

const BASE: &str = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

fn bits(n: u8) -> String {
    format!("{BASE}; server_max_window_bits={n}")
}

/// One test per case: `name: [header values...] => Some(answer) | None;`.
macro_rules! offers {
    ($($name:ident: [$($value:expr),* $(,)?] => $expected:expr;)*) => {$(
        #[test]
        fn $name() {
            let values: &[&str] = &[$($value),*];
            let got = negotiate(values.iter().map(|v| v.as_bytes()));
            let expected: Option<String> = $expected;
            assert_eq!(got.map(|a| a.response().to_owned()), expected, "{values:?}");
        }
    )*};
}

offers! {
    // Accepted, and how the answer varies.
    bare: ["permessage-deflate"] => Some(BASE.into());
    browsers: ["permessage-deflate; client_max_window_bits"] => Some(BASE.into());
    client_bits_value: ["permessage-deflate; client_max_window_bits=10"] => Some(BASE.into());
    client_bits_8: ["permessage-deflate; client_max_window_bits=8"] => Some(BASE.into());
    client_bits_quoted: [r#"permessage-deflate; client_max_window_bits="12""#] => Some(BASE.into());
    both_no_context_offered: [
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
    ] => Some(BASE.into());
    server_bits_9: ["permessage-deflate; server_max_window_bits=9"] => Some(bits(9));
    server_bits_10: ["permessage-deflate; server_max_window_bits=10"] => Some(bits(10));
    server_bits_15: ["permessage-deflate; server_max_window_bits=15"] => Some(bits(15));
    server_bits_quoted: [r#"permessage-deflate; server_max_window_bits="11""#] => Some(bits(11));
    server_bits_escaped: [r#"permessage-deflate; server_max_window_bits="1\3""#] => Some(bits(13));
    everything: [
        "permessage-deflate; client_no_context_takeover; server_max_window_bits=12; \
         client_max_window_bits=9; server_no_context_takeover"
    ] => Some(bits(12));
    whitespace: [" \t permessage-deflate\t;  client_max_window_bits = 10 ;server_max_window_bits= 14 , "]
        => Some(bits(14));
    empty_elements: [" , ,permessage-deflate,,"] => Some(BASE.into());

    // Order of preference, across elements and header lines.
    first_acceptable_wins: ["permessage-deflate; server_max_window_bits=10, permessage-deflate"]
        => Some(bits(10));
    fallback_in_one_line: ["permessage-deflate; server_max_window_bits=8, permessage-deflate"]
        => Some(BASE.into());
    fallback_to_next_line: [
        "permessage-deflate; server_max_window_bits=8",
        "permessage-deflate; server_max_window_bits=11",
    ] => Some(bits(11));
    later_line: ["x-webkit-deflate-frame", "permessage-deflate"] => Some(BASE.into());
    unknown_extensions_skipped: ["foo, bar; baz=1; qux, permessage-deflate"] => Some(BASE.into());
    quoted_comma_is_not_a_separator: [r#"foo; a="x, permessage-deflate; b", permessage-deflate; server_max_window_bits=9"#]
        => Some(bits(9));
    malformed_element_then_good: ["permessage-deflate; ;, permessage-deflate; server_max_window_bits=13"]
        => Some(bits(13));
    malformed_unknown_then_good: ["foo bar, permessage-deflate"] => Some(BASE.into());

    // Declined: the connection runs uncompressed.
    nothing: [] => None;
    empty_value: [""] => None;
    only_others: ["x-webkit-deflate-frame; no_context_takeover"] => None;
    server_bits_8: ["permessage-deflate; server_max_window_bits=8"] => None;
    server_bits_16: ["permessage-deflate; server_max_window_bits=16"] => None;
    server_bits_7: ["permessage-deflate; server_max_window_bits=7"] => None;
    server_bits_leading_zero: ["permessage-deflate; server_max_window_bits=09"] => None;
    server_bits_without_value: ["permessage-deflate; server_max_window_bits"] => None;
    server_bits_empty_quotes: [r#"permessage-deflate; server_max_window_bits="""#] => None;
    server_bits_not_a_token: [r#"permessage-deflate; server_max_window_bits="1 0""#] => None;
    server_bits_long: ["permessage-deflate; server_max_window_bits=0000000010"] => None;
    client_bits_16: ["permessage-deflate; client_max_window_bits=16"] => None;
    client_bits_word: ["permessage-deflate; client_max_window_bits=ten"] => None;
    duplicate_flag: ["permessage-deflate; client_no_context_takeover; client_no_context_takeover"] => None;
    duplicate_client_bits: ["permessage-deflate; client_max_window_bits; client_max_window_bits=10"] => None;
    duplicate_server_bits: ["permessage-deflate; server_max_window_bits=10; server_max_window_bits=10"] => None;
    flag_with_value: ["permessage-deflate; server_no_context_takeover=1"] => None;
    unknown_param: ["permessage-deflate; mystery"] => None;
    unknown_param_with_value: ["permessage-deflate; mystery=1"] => None;
    other_case: ["Permessage-Deflate"] => None;
    param_other_case: ["permessage-deflate; Client_Max_Window_Bits"] => None;
    trailing_semicolon: ["permessage-deflate;"] => None;
    missing_semicolon: ["permessage-deflate server_no_context_takeover"] => None;
    missing_param_name: ["permessage-deflate; =10"] => None;
    unterminated_quote: [r#"permessage-deflate; client_max_window_bits="10"#] => None;
    junk_after_quote: [r#"permessage-deflate; client_max_window_bits="10"x"#] => None;
    prefix_of_the_name: ["permessage-deflat"] => None;
    longer_name: ["permessage-deflate2"] => None;
}

#[test]
fn the_window_a_client_allows() {
    let agreed = |v: &str| negotiate([v.as_bytes()]).unwrap();
    let any = agreed("permessage-deflate");
    assert_eq!(any.server_max_window_bits(), 15);
    assert!(any.accepts(usize::MAX));
    let small = agreed("permessage-deflate; server_max_window_bits=10");
    assert_eq!(small.server_max_window_bits(), 10);
    // Without context takeover a message of 2^N bytes never reaches back further than 2^N.
    assert!(small.accepts(1024));
    assert!(!small.accepts(1025));
    assert!(agreed("permessage-deflate; server_max_window_bits=15").accepts(1 << 20));
}

#[test]
fn arbitrary_values_never_panic() {
    use proptest::prelude::*;
    proptest!(|(values in proptest::collection::vec(
        proptest::collection::vec(prop_oneof![
            Just(b'"'), Just(b'\\'), Just(b','), Just(b';'), Just(b'='), Just(b' '),
            Just(b'9'), Just(b'1'), any::<u8>(),
        ], 0..40),
        0..3,
    ))| {
        let got = negotiate(values.iter().map(|v| v.as_slice()));
        if let Some(agreed) = got {
            prop_assert!(agreed.response().starts_with(BASE));
        }
    });
}
