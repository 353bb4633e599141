//! Masked client frames (RFC 6455 §5.2, §5.3), appended straight into a connection's write
//! buffer so that a turn's frames for one connection leave in one `write`.

use fanout::proto::frame::{FrameHeader, OpCode, write_header};
use fanout::proto::mask::apply_mask;

use super::stamp::{STAMP_LEN, Stamp};

/// A small, fast generator of masking keys (xorshift64*). Keys only need to differ from frame
/// to frame so that the server really unmasks; they protect nothing on loopback.
#[derive(Clone, Debug)]
pub struct KeyGen(u64);

impl KeyGen {
    /// A generator seeded with `seed` (any value; zero is replaced).
    pub fn new(seed: u64) -> KeyGen {
        KeyGen(seed | 1)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// The next masking key.
    pub fn key(&mut self) -> [u8; 4] {
        (self.next_u64() as u32).to_le_bytes()
    }
}

/// Appends one masked, unfragmented binary frame of `size` payload bytes that starts with
/// `stamp` and is zero-padded.
pub fn write_stamped(out: &mut Vec<u8>, stamp: &Stamp, size: usize, key: [u8; 4]) {
    debug_assert!(size >= STAMP_LEN);
    let header = FrameHeader {
        fin: true,
        opcode: OpCode::Binary,
        mask: Some(key),
        payload_len: size as u64,
    };
    write_header(out, &header);
    let at = out.len();
    out.resize(at + size, 0);
    stamp.write(&mut out[at..at + STAMP_LEN]);
    apply_mask(&mut out[at..], key, 0);
}

/// Appends one masked control frame (pong or close) with `payload` (≤ 125 bytes).
pub fn write_control(out: &mut Vec<u8>, opcode: OpCode, payload: &[u8], key: [u8; 4]) {
    debug_assert!(opcode.is_control() && payload.len() <= 125);
    let header = FrameHeader {
        fin: true,
        opcode,
        mask: Some(key),
        payload_len: payload.len() as u64,
    };
    write_header(out, &header);
    let at = out.len();
    out.extend_from_slice(payload);
    apply_mask(&mut out[at..], key, 0);
}

#[cfg(test)]
mod tests {
    use super::*;
    use fanout::proto::Decoded;
    use fanout::proto::frame::{Role, parse_header};

    #[test]
    fn stamped_frames_decode_on_the_server_side() {
        let stamp = Stamp {
            publisher: 1,
            trial: 2,
            seq: 3,
            scheduled_ns: 4,
        };
        for size in [STAMP_LEN, 64, 200, 16 * 1024, 70_000] {
            let mut out = vec![0xEE]; // bytes already queued stay untouched
            write_stamped(&mut out, &stamp, size, [9, 8, 7, 6]);
            let Ok(Decoded::Complete((h, hl))) = parse_header(&out[1..], Role::Server) else {
                panic!("size {size}: header does not parse");
            };
            assert_eq!(
                (h.opcode, h.fin, h.payload_len),
                (OpCode::Binary, true, size as u64)
            );
            let mut payload = out[1 + hl..].to_vec();
            assert_eq!(payload.len(), size);
            apply_mask(&mut payload, h.mask.expect("masked"), 0);
            assert_eq!(Stamp::read(&payload), Some(stamp));
            assert!(payload[STAMP_LEN..].iter().all(|&b| b == 0));
        }
    }

    #[test]
    fn keys_vary() {
        let mut g = KeyGen::new(0);
        let a = g.key();
        let b = g.key();
        assert_ne!(a, b);
    }
}
