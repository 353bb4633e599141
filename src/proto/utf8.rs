//! Streaming UTF-8 validation for fragmented text messages (RFC 6455 §5.6, §8.1). STUB.

/// Text was not valid UTF-8.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Utf8Error;

/// Validates a text message fed in arbitrary pieces, failing at the first byte that can never
/// begin a valid continuation.
#[derive(Clone, Copy, Debug, Default)]
pub struct Utf8Validator {
    _stub: (),
}

impl Utf8Validator {
    /// A validator at the start of a message.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds the next piece of the message.
    pub fn feed(&mut self, _bytes: &[u8]) -> Result<(), Utf8Error> {
        todo!()
    }

    /// Ends the message: fails if it stopped inside a code point. Resets for the next message.
    pub fn finish(&mut self) -> Result<(), Utf8Error> {
        todo!()
    }
}
