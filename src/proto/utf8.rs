//! Streaming UTF-8 validation for fragmented text messages (RFC 6455 §5.6, §8.1).
//!
//! §8.1 says that when an endpoint "is to interpret a byte stream as UTF-8 but finds that the byte
//! stream is not, in fact, a valid UTF-8 stream, that endpoint MUST _Fail the WebSocket
//! Connection_", and a text message may arrive in any number of frames, each read in any number
//! of pieces. [`Utf8Validator`] checks the pieces as they arrive and fails on the piece holding the
//! first byte after which the message can no longer be valid (fail fast, as Autobahn's 6.x cases
//! expect), without buffering the message and without allocating.
//!
//! The bulk of each piece goes through `simdutf8::compat::from_utf8`, whose `error_len() == None`
//! means "valid, but ends inside a code point"; those last 1–3 bytes are carried to the next piece.

/// Text was not valid UTF-8.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Utf8Error;

impl std::fmt::Display for Utf8Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("invalid utf-8")
    }
}

impl std::error::Error for Utf8Error {}

/// Validates a text message fed in arbitrary pieces, failing at the first byte that can never
/// begin a valid continuation.
#[derive(Clone, Copy, Debug, Default)]
pub struct Utf8Validator {
    /// The start of a code point cut off at the end of the last piece; only `pending[..len]` is
    /// used. Four bytes so that it can hold the completed sequence while it is checked.
    pending: [u8; 4],
    /// How many bytes of `pending` are carried (0–3).
    len: u8,
    /// A piece already failed: the message is invalid whatever follows, so stay failed.
    failed: bool,
}

impl Utf8Validator {
    /// A validator at the start of a message.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds the next piece of the message.
    ///
    /// `Ok` while everything fed so far is valid UTF-8 or a valid prefix of it (a code point may
    /// straddle pieces); `Err` from the piece in which it stops being one, e.g. `F5`, `C0`,
    /// `ED A0` (a surrogate), `F4 90` (above U+10FFFF) or `E0 80` (overlong). Once failed, every
    /// later call fails too, until [`Self::finish`].
    pub fn feed(&mut self, mut bytes: &[u8]) -> Result<(), Utf8Error> {
        if self.failed {
            return Err(Utf8Error);
        }
        if self.len > 0 {
            // Complete the carried code point first, with as few bytes as it still needs.
            let have = usize::from(self.len);
            // `pending[0]` is a lead byte (C2–F4): its leading ones are the sequence length.
            let need = self.pending[0].leading_ones() as usize;
            let take = (need - have).min(bytes.len());
            self.pending[have..have + take].copy_from_slice(&bytes[..take]);
            // At most 4 bytes: the scalar std check beats dispatching to SIMD.
            match std::str::from_utf8(&self.pending[..have + take]) {
                Ok(_) => {
                    self.len = 0;
                    bytes = &bytes[take..];
                }
                // Still a valid prefix, so every byte of the piece was taken: wait for more.
                Err(e) if e.error_len().is_none() => {
                    self.len = (have + take) as u8;
                    return Ok(());
                }
                Err(_) => return self.fail(),
            }
        }
        match simdutf8::compat::from_utf8(bytes) {
            Ok(_) => Ok(()),
            Err(e) if e.error_len().is_none() => {
                // A valid prefix of one code point: at most 3 bytes.
                let tail = &bytes[e.valid_up_to()..];
                self.pending[..tail.len()].copy_from_slice(tail);
                self.len = tail.len() as u8;
                Ok(())
            }
            Err(_) => self.fail(),
        }
    }

    /// Ends the message: fails if it stopped inside a code point. Resets for the next message.
    ///
    /// Also fails if an earlier [`Self::feed`] failed.
    pub fn finish(&mut self) -> Result<(), Utf8Error> {
        let ok = !self.failed && self.len == 0;
        *self = Self::new();
        if ok { Ok(()) } else { Err(Utf8Error) }
    }

    fn fail(&mut self) -> Result<(), Utf8Error> {
        self.failed = true;
        Err(Utf8Error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// What a whole message is, by std's reading.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum Verdict {
        /// Valid UTF-8.
        Valid,
        /// Valid up to the end, which falls inside a code point.
        Incomplete,
        /// Bytes `..at` are a valid prefix and bytes `..=at` are not.
        InvalidAt(usize),
    }
    use Verdict::*;

    /// The oracle: std's verdict, with the fail-fast position found by definition (the first byte
    /// whose inclusion makes the bytes no prefix of valid UTF-8).
    fn std_verdict(bytes: &[u8]) -> Verdict {
        match std::str::from_utf8(bytes) {
            Ok(_) => Valid,
            Err(e) if e.error_len().is_none() => Incomplete,
            Err(e) => {
                let start = e.valid_up_to();
                let at = (start..bytes.len())
                    .find(|&i| {
                        std::str::from_utf8(&bytes[start..=i])
                            .is_err_and(|e| e.error_len().is_some())
                    })
                    .unwrap();
                // The same position from std's numbers: after the maximal valid subpart when it
                // starts with a lead byte, else at the stray byte itself.
                let len = e.error_len().unwrap();
                let from_std = if (0xC2..=0xF4).contains(&bytes[start]) {
                    start + len
                } else {
                    start
                };
                assert_eq!(at, from_std);
                InvalidAt(at)
            }
        }
    }

    /// Feeds `bytes` cut at `cuts` (sorted) and checks every call against `verdict`: all pieces
    /// before the one holding the failing byte pass, that one and all later ones fail, and
    /// `finish` passes only for valid input. Empty pieces are fed too.
    fn check_split(bytes: &[u8], cuts: &[usize], verdict: Verdict) {
        let mut v = Utf8Validator::new();
        let mut start = 0;
        for &end in cuts.iter().chain([&bytes.len()]) {
            let result = v.feed(&bytes[start..end]);
            let failed = match verdict {
                InvalidAt(at) => at < end,
                _ => false,
            };
            assert_eq!(
                result.is_err(),
                failed,
                "{bytes:02x?} cut at {cuts:?}, piece ..{end}"
            );
            start = end;
        }
        assert_eq!(
            v.finish().is_ok(),
            verdict == Valid,
            "{bytes:02x?} cut at {cuts:?}"
        );
        // `finish` reset the validator for the next message.
        assert_eq!(v.feed("κόσμε".as_bytes()), Ok(()));
        assert_eq!(v.finish(), Ok(()));
    }

    /// Whole, byte by byte, and cut once at every position.
    fn check_all_splits(bytes: &[u8], verdict: Verdict) {
        assert_eq!(std_verdict(bytes), verdict, "{bytes:02x?}");
        check_split(bytes, &[], verdict);
        check_split(bytes, &(0..=bytes.len()).collect::<Vec<_>>(), verdict);
        for cut in 0..=bytes.len() {
            check_split(bytes, &[cut], verdict);
        }
    }

    /// A case behind every valid prefix from 0 to 70 bytes (crossing a 64-byte SIMD block),
    /// ASCII and multibyte, and with valid text after it.
    fn check_everywhere(case: &[u8], verdict: Verdict) {
        let multibyte = "κόσμε€𐍈".repeat(4);
        let mut prefixes: Vec<String> = (0..=70).map(|n| "a".repeat(n)).collect();
        prefixes.extend(
            multibyte
                .char_indices()
                .map(|(i, _)| multibyte[..i].to_owned()),
        );
        for prefix in &prefixes {
            let shift = |v| match v {
                InvalidAt(at) => InvalidAt(prefix.len() + at),
                other => other,
            };
            let mut bytes = [prefix.as_bytes(), case].concat();
            check_all_splits(&bytes, shift(verdict));
            if verdict != Incomplete {
                bytes.extend_from_slice("tail κ".as_bytes());
                check_all_splits(&bytes, shift(verdict));
            }
        }
    }

    /// One test per vector: `name: bytes => verdict,` (Autobahn 6.x style).
    macro_rules! utf8_cases {
        ($($name:ident: $bytes:expr => $verdict:expr,)*) => {$(
            #[test]
            fn $name() {
                check_everywhere($bytes, $verdict);
            }
        )*};
    }

    utf8_cases! {
        empty: b"" => Valid,
        ascii: b"Hello-\x00-\x7f" => Valid,
        kosme: "κόσμε".as_bytes() => Valid,
        first_of_each_length: "\u{0}\u{80}\u{800}\u{10000}".as_bytes() => Valid,
        last_of_each_length: "\u{7f}\u{7ff}\u{ffff}\u{10ffff}".as_bytes() => Valid,
        around_surrogates: "\u{d7ff}\u{e000}\u{fffd}".as_bytes() => Valid,
        noncharacters: "\u{fffe}\u{ffff}\u{1fffe}\u{10fffe}".as_bytes() => Valid,
        lead_f5: b"\xf5\x80\x80\x80" => InvalidAt(0),
        lead_f7_above_max: b"\xf7\xbf\xbf\xbf" => InvalidAt(0),
        lead_fe: b"\xfe" => InvalidAt(0),
        lead_ff: b"\xff" => InvalidAt(0),
        lead_c0: b"\xc0\x80" => InvalidAt(0),
        lead_c1: b"\xc1\xbf" => InvalidAt(0),
        lone_continuation_80: b"\x80" => InvalidAt(0),
        lone_continuation_bf: b"\xbf" => InvalidAt(0),
        extra_continuation: b"\xce\xba\x80" => InvalidAt(2),
        overlong_slash_2: b"\xc0\xaf" => InvalidAt(0),
        overlong_slash_3: b"\xe0\x80\xaf" => InvalidAt(1),
        overlong_slash_4: b"\xf0\x80\x80\xaf" => InvalidAt(1),
        overlong_max_3: b"\xe0\x9f\xbf" => InvalidAt(1),
        overlong_max_4: b"\xf0\x8f\xbf\xbf" => InvalidAt(1),
        surrogate_high: b"\xed\xa0\x80" => InvalidAt(1),
        surrogate_low: b"\xed\xbf\xbf" => InvalidAt(1),
        surrogate_pair: b"\xed\xa0\x80\xed\xb0\x80" => InvalidAt(1),
        above_max: b"\xf4\x90\x80\x80" => InvalidAt(1),
        interrupted_2: b"\xc2\x41" => InvalidAt(1),
        interrupted_3: b"\xe1\x80\x41" => InvalidAt(2),
        interrupted_4: b"\xf0\x90\x80\x41" => InvalidAt(3),
        new_lead_inside: b"\xe1\x80\xe1\x80\x80" => InvalidAt(2),
        autobahn_6_3_1: b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited"
            => InvalidAt(12),
        truncated_2: b"\xc2" => Incomplete,
        truncated_3: b"\xe0\xa0" => Incomplete,
        truncated_4: b"\xf4\x8f\xbf" => Incomplete,
        truncated_lead_4: b"\xf0" => Incomplete,
        truncated_kosme: b"\xce\xba\xe1\xbd" => Incomplete,
    }

    #[test]
    fn failure_is_sticky_until_finish() {
        let mut v = Utf8Validator::new();
        assert_eq!(v.feed(b"\xc0"), Err(Utf8Error));
        assert_eq!(v.feed(b"fine"), Err(Utf8Error));
        assert_eq!(v.finish(), Err(Utf8Error));
        assert_eq!(v.feed(b"fine"), Ok(()));
        assert_eq!(v.finish(), Ok(()));
    }

    /// Bytes that often form near-valid sequences, so random strings hit every branch.
    fn tricky_byte() -> impl Strategy<Value = u8> {
        prop_oneof![
            prop::sample::select(vec![
                0x00, 0x41, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0, 0xc1, 0xc2, 0xdf, 0xe0,
                0xe1, 0xed, 0xef, 0xf0, 0xf1, 0xf4, 0xf5, 0xff,
            ]),
            any::<u8>(),
        ]
    }

    /// Random text with, sometimes, a few random bytes written over it.
    fn mostly_text() -> impl Strategy<Value = Vec<u8>> {
        (
            any::<String>(),
            prop::collection::vec((any::<prop::sample::Index>(), tricky_byte()), 0..3),
        )
            .prop_map(|(s, edits)| {
                let mut bytes = s.into_bytes();
                if !bytes.is_empty() {
                    for (i, b) in edits {
                        let i = i.index(bytes.len());
                        bytes[i] = b;
                    }
                }
                bytes
            })
    }

    fn with_cuts(
        bytes: impl Strategy<Value = Vec<u8>>,
    ) -> impl Strategy<Value = (Vec<u8>, Vec<usize>)> {
        (
            bytes,
            prop::collection::vec(any::<prop::sample::Index>(), 0..8),
        )
            .prop_map(|(b, cuts)| {
                let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(b.len() + 1)).collect();
                cuts.sort_unstable();
                (b, cuts)
            })
    }

    proptest! {
        #[test]
        fn valid_text_any_split((bytes, cuts) in with_cuts(any::<String>().prop_map(String::into_bytes))) {
            check_split(&bytes, &cuts, Valid);
        }

        #[test]
        fn arbitrary_bytes_any_split((bytes, cuts) in with_cuts(prop::collection::vec(tricky_byte(), 0..100))) {
            check_split(&bytes, &cuts, std_verdict(&bytes));
        }

        #[test]
        fn damaged_text_any_split((bytes, cuts) in with_cuts(mostly_text())) {
            check_split(&bytes, &cuts, std_verdict(&bytes));
        }
    }
}
