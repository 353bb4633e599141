//! Unit tests for finding the token: each source, percent-decoding, the refusal of more than
//! one token, channel offers without the `bearer.` one, and redaction for logs.

use super::*;

type Found = Result<Option<(Source, &'static str)>, AuthError>;

/// `name: [offers], path, [authorization values] => found;` — what [`find_token`] returns.
macro_rules! found {
    ($($name:ident: [$($o:literal),*], $path:literal, [$($a:literal),*] => $want:expr;)*) => {$(
        #[test]
        fn $name() {
            let offers: &[&[u8]] = &[$($o.as_bytes()),*];
            let auth: &[&[u8]] = &[$($a.as_bytes()),*];
            let got = find_token(offers.iter().copied(), $path, auth.iter().copied())
                .map(|t| t.map(|t| (t.source(), String::from_utf8(t.as_bytes().to_vec()).unwrap())));
            let want: Found = $want;
            assert_eq!(got, want.map(|w| w.map(|(s, v)| (s, v.to_owned()))));
        }
    )*};
}

use AuthError::{Malformed, MultipleTokens};
use Source::{Authorization, Query, Subprotocol};

found! {
    nothing: [], "/chat", [] => Ok(None);
    channel_offer_only: ["room42"], "/chat?x=1", [] => Ok(None);
    subprotocol: ["room42", "bearer.a.b.c"], "/", [] => Ok(Some((Subprotocol, "a.b.c")));
    subprotocol_first: ["bearer.a.b.c", "room42"], "/", [] => Ok(Some((Subprotocol, "a.b.c")));
    subprotocol_empty: ["room42", "bearer."], "/", [] => Ok(Some((Subprotocol, "")));
    subprotocol_case_sensitive: ["Bearer.a.b.c"], "/", [] => Ok(None);
    query: [], "/chat?token=a.b.c", [] => Ok(Some((Query, "a.b.c")));
    query_among_others: ["room42"], "/?x=1&token=a.b.c&y", [] => Ok(Some((Query, "a.b.c")));
    query_percent_decoded: [], "/?token=a%2Eb%2ec", [] => Ok(Some((Query, "a.b.c")));
    query_plus_kept: [], "/?token=a+b", [] => Ok(Some((Query, "a+b")));
    query_empty: [], "/?token=", [] => Ok(Some((Query, "")));
    query_no_value: [], "/?token", [] => Ok(Some((Query, "")));
    query_bad_escape: [], "/?token=a%2", [] => Err(Malformed);
    query_bad_hex: [], "/?token=a%zz", [] => Err(Malformed);
    query_other_name: [], "/?tokens=a&xtoken=b&Token=c", [] => Ok(None);
    authorization: [], "/", ["Bearer a.b.c"] => Ok(Some((Authorization, "a.b.c")));
    authorization_case: [], "/", ["bEARER   a.b.c  "] => Ok(Some((Authorization, "a.b.c")));
    authorization_tab: [], "/", ["Bearer\ta.b.c"] => Ok(Some((Authorization, "a.b.c")));
    authorization_bare: [], "/", ["Bearer"] => Ok(Some((Authorization, "")));
    authorization_basic_ignored: [], "/", ["Basic dXNlcjpwYXNz"] => Ok(None);
    authorization_prefix_scheme: [], "/", ["Bearerx a.b.c"] => Ok(None);
    basic_and_bearer: [], "/", ["Basic dXNlcjpwYXNz", "Bearer a.b.c"] => Ok(Some((Authorization, "a.b.c")));
    two_offers: ["bearer.a", "bearer.b"], "/", [] => Err(MultipleTokens);
    two_query: [], "/?token=a&token=b", [] => Err(MultipleTokens);
    two_headers: [], "/", ["Bearer a", "Bearer b"] => Err(MultipleTokens);
    offer_and_query: ["bearer.a"], "/?token=a", [] => Err(MultipleTokens);
    query_and_header: [], "/?token=a", ["Bearer a"] => Err(MultipleTokens);
    offer_and_header: ["bearer.a"], "/", ["Bearer a"] => Err(MultipleTokens);
}

#[test]
fn channel_offers_skip_bearer() {
    let offers: [&[u8]; 4] = [b"bearer.x.y.z", b"room42", b"bearer.", b"lobby"];
    let left: Vec<&[u8]> = channel_offers(offers).collect();
    assert_eq!(left, [&b"room42"[..], b"lobby"]);
    assert!(
        is_bearer_offer(b"bearer.x") && !is_bearer_offer(b"bearer") && !is_bearer_offer(b"room")
    );
}

#[test]
fn query_without_escapes_is_borrowed() {
    let token = from_query("/?token=a.b.c").unwrap().unwrap();
    assert!(matches!(token.value, Cow::Borrowed(_)));
}

#[test]
fn redaction() {
    for (path, want) in [
        ("/chat", "/chat"),
        ("/chat?x=1", "/chat?x=1"),
        ("/chat?token=secret", "/chat?token=REDACTED"),
        (
            "/?a=1&token=s&b=2&token",
            "/?a=1&token=REDACTED&b=2&token=REDACTED",
        ),
        ("/?tokens=keep", "/?tokens=keep"),
    ] {
        assert_eq!(redact_query(path), want);
        assert_eq!(matches!(redact_query(path), Cow::Borrowed(_)), path == want);
    }
}

#[test]
fn debug_hides_the_token() {
    let token = from_authorization([&b"Bearer header.payload.signature"[..]])
        .unwrap()
        .unwrap();
    let shown = format!("{token:?}");
    assert_eq!(shown, "Token { source: Authorization, len: 24, .. }");
}
