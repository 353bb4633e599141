//! The envelope a message travels in between nodes, through Redis (sans-I/O: bytes in, values
//! out; no clock read, no socket).
//!
//! ```text
//! byte 0      version (1)
//! byte 1      opcode: 1 text, 2 binary (RFC 6455 §5.2)
//! byte 2      n: length of the node id (1-64)
//! 3 .. 3+n    the publishing node's id
//! 8 bytes     publish time: microseconds since the Unix epoch, big-endian
//! the rest    the payload, as the publisher's client sent it
//! ```
//!
//! The Redis channel names the fanout channel, so the envelope does not. A node drops the
//! envelopes it published itself (Redis sends a publisher's messages back to it when it is
//! also subscribed), and envelopes of a version it does not know.

use crate::proto::frame::OpCode;

/// The envelope version this build writes and reads.
pub const VERSION: u8 = 1;

/// Longest node id (`--node-id`).
pub const MAX_NODE_ID: usize = 64;

/// Bytes an envelope adds to the payload for a node id of `id_len` bytes.
pub const fn overhead(id_len: usize) -> usize {
    3 + id_len + 8
}

/// A decoded envelope, borrowing the bytes it was read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Envelope<'a> {
    /// The publishing node.
    pub node: &'a [u8],
    /// Text or binary.
    pub opcode: OpCode,
    /// When it was accepted on its node, in microseconds since the Unix epoch.
    pub published_us: u64,
    /// The message.
    pub payload: &'a [u8],
}

/// Why bytes from Redis are not an envelope this node takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// Shorter than its header says.
    Truncated,
    /// A version this build does not read (a newer node during a rolling upgrade, or something
    /// else publishing under the prefix).
    Version(u8),
    /// Not text or binary.
    OpCode(u8),
    /// A node id of 0 or more than [`MAX_NODE_ID`] bytes.
    NodeId,
}

/// Appends the envelope of a message to `out`.
///
/// # Panics
/// When `node` is empty or longer than [`MAX_NODE_ID`] (checked when the server starts), or
/// `opcode` is not text or binary.
pub fn encode_into(
    out: &mut Vec<u8>,
    node: &[u8],
    opcode: OpCode,
    published_us: u64,
    payload: &[u8],
) {
    assert!((1..=MAX_NODE_ID).contains(&node.len()), "node id length");
    assert!(
        matches!(opcode, OpCode::Text | OpCode::Binary),
        "data opcode"
    );
    out.reserve(overhead(node.len()) + payload.len());
    out.extend_from_slice(&[VERSION, opcode as u8, node.len() as u8]);
    out.extend_from_slice(node);
    out.extend_from_slice(&published_us.to_be_bytes());
    out.extend_from_slice(payload);
}

/// The envelope of a message.
pub fn encode(node: &[u8], opcode: OpCode, published_us: u64, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_into(&mut out, node, opcode, published_us, payload);
    out
}

/// Reads an envelope.
pub fn decode(bytes: &[u8]) -> Result<Envelope<'_>, DecodeError> {
    let [version, opcode, n, rest @ ..] = bytes else {
        return Err(DecodeError::Truncated);
    };
    if *version != VERSION {
        return Err(DecodeError::Version(*version));
    }
    let opcode = match OpCode::from_u8(*opcode) {
        Some(op @ (OpCode::Text | OpCode::Binary)) => op,
        _ => return Err(DecodeError::OpCode(*opcode)),
    };
    let n = *n as usize;
    if !(1..=MAX_NODE_ID).contains(&n) {
        return Err(DecodeError::NodeId);
    }
    if rest.len() < n + 8 {
        return Err(DecodeError::Truncated);
    }
    let (node, rest) = rest.split_at(n);
    let (time, payload) = rest.split_at(8);
    Ok(Envelope {
        node,
        opcode,
        published_us: u64::from_be_bytes(time.try_into().expect("8 bytes")),
        payload,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_documented_layout() {
        let bytes = encode(b"web-1", OpCode::Text, 0x0102_0304_0506_0708, b"hi");
        assert_eq!(
            bytes,
            [&[1, 1, 5][..], b"web-1", &[1, 2, 3, 4, 5, 6, 7, 8], b"hi"].concat()
        );
        assert_eq!(bytes.len(), overhead(5) + 2);
        let e = decode(&bytes).unwrap();
        assert_eq!(
            e,
            Envelope {
                node: b"web-1",
                opcode: OpCode::Text,
                published_us: 0x0102_0304_0506_0708,
                payload: b"hi",
            }
        );
    }

    #[test]
    fn an_empty_payload_is_a_message() {
        let bytes = encode(b"n", OpCode::Binary, 7, b"");
        let e = decode(&bytes).unwrap();
        assert_eq!(
            (e.opcode, e.payload, e.published_us),
            (OpCode::Binary, &b""[..], 7)
        );
    }

    #[test]
    fn refusals() {
        let good = encode(b"node", OpCode::Binary, 1, b"x");
        assert_eq!(decode(&[]), Err(DecodeError::Truncated));
        assert_eq!(decode(&good[..2]), Err(DecodeError::Truncated));
        for cut in 3..overhead(4) {
            assert_eq!(decode(&good[..cut]), Err(DecodeError::Truncated), "{cut}");
        }
        let mut v2 = good.clone();
        v2[0] = 2;
        assert_eq!(decode(&v2), Err(DecodeError::Version(2)));
        for op in [0u8, 8, 9, 10, 3, 15] {
            let mut bad = good.clone();
            bad[1] = op;
            assert_eq!(decode(&bad), Err(DecodeError::OpCode(op)));
        }
        let mut no_id = good.clone();
        no_id[2] = 0;
        assert_eq!(decode(&no_id), Err(DecodeError::NodeId));
        let mut long_id = good;
        long_id[2] = 65;
        assert_eq!(decode(&long_id), Err(DecodeError::NodeId));
    }

    proptest! {
        #[test]
        fn round_trips(
            node in proptest::collection::vec(any::<u8>(), 1..=MAX_NODE_ID),
            binary in any::<bool>(),
            at in any::<u64>(),
            payload in proptest::collection::vec(any::<u8>(), 0..512),
        ) {
            let opcode = if binary { OpCode::Binary } else { OpCode::Text };
            let bytes = encode(&node, opcode, at, &payload);
            prop_assert_eq!(bytes.len(), overhead(node.len()) + payload.len());
            let e = decode(&bytes).unwrap();
            prop_assert_eq!(e.node, &node[..]);
            prop_assert_eq!(e.opcode, opcode);
            prop_assert_eq!(e.published_us, at);
            prop_assert_eq!(e.payload, &payload[..]);
        }

        #[test]
        fn any_bytes_decode_or_refuse_without_panicking(
            bytes in proptest::collection::vec(any::<u8>(), 0..96),
        ) {
            if let Ok(e) = decode(&bytes) {
                // What decodes re-encodes to the same bytes.
                prop_assert_eq!(encode(e.node, e.opcode, e.published_us, e.payload), bytes);
            }
        }
    }
}
