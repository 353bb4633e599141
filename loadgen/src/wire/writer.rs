//! Masked client frames (RFC 6455 §5.2, §5.3), appended straight into a connection's write
//! buffer so that a turn's frames for one connection leave in one `write`.
//!
//! A payload is the [`Stamp`] followed by a body: zeros (`--payload zeros`, the default), or
//! dashboard-like JSON (`--payload json`, [`json_body`]) for servers that compress, since
//! zeros would shrink to almost nothing. Frames are binary (the stamp is binary), so the body
//! need not be UTF-8; the JSON body is ASCII anyway.

use fanout::proto::Decoded;
use fanout::proto::deflate::Compressor;
use fanout::proto::frame::{FrameHeader, OpCode, RSV1, Role, parse_header_deflate, write_header};
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
    write_stamped_body(out, stamp, size, &[], key);
}

/// [`write_stamped`] with `body` after the stamp (its first `size - STAMP_LEN` bytes; zeros
/// past its end).
pub fn write_stamped_body(
    out: &mut Vec<u8>,
    stamp: &Stamp,
    size: usize,
    body: &[u8],
    key: [u8; 4],
) {
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
    let body = &body[..body.len().min(size - STAMP_LEN)];
    out[at + STAMP_LEN..at + STAMP_LEN + body.len()].copy_from_slice(body);
    apply_mask(&mut out[at..], key, 0);
}

/// [`write_stamped_body`], compressed per RFC 7692 §7.2.1 with `z` (fanout's compressor: no
/// context takeover) and sent with RSV1 set — unless `z` leaves it plain (under its minimum
/// size, or not smaller), as RSV1 is per message.
pub fn write_stamped_compressed(
    out: &mut Vec<u8>,
    stamp: &Stamp,
    size: usize,
    body: &[u8],
    key: [u8; 4],
    z: &mut Compressor,
) {
    let mut payload = Vec::with_capacity(size);
    write_stamped_body(&mut payload, stamp, size, body, [0; 4]);
    // An all-zero key masks nothing: `payload` is an unmasked frame; skip its header.
    let at = payload.len() - size;
    let Some(frame) = z.compress_frame(OpCode::Binary, &payload[at..]) else {
        return write_stamped_body(out, stamp, size, body, key);
    };
    let Ok(Decoded::Complete((_, hl, true))) = parse_header_deflate(&frame, Role::Client) else {
        unreachable!("the compressor makes whole compressed frames");
    };
    let header = FrameHeader {
        fin: true,
        opcode: OpCode::Binary,
        mask: Some(key),
        payload_len: (frame.len() - hl) as u64,
    };
    let start = out.len();
    write_header(out, &header);
    out[start] |= RSV1;
    let at = out.len();
    out.extend_from_slice(&frame[hl..]);
    apply_mask(&mut out[at..], key, 0);
}

/// How many different JSON bodies a run cycles through (message `k` takes body `k % JSON_BODIES`):
/// enough that a server cannot cache one compressed message, few enough to build up front.
pub const JSON_BODIES: usize = 64;

/// A dashboard-like JSON object of exactly `n` bytes (ASCII; padded with spaces inside the
/// object, so it stays valid JSON from 2 bytes up): a host, a timestamp and a list of metrics
/// whose values vary with `seed`. Level-6 DEFLATE takes 1 KiB of it to about a third.
pub fn json_body(n: usize, seed: u64) -> Vec<u8> {
    const METRICS: [(&str, &str); 8] = [
        ("cpu.user", "%"),
        ("cpu.system", "%"),
        ("mem.used", "MiB"),
        ("net.rx", "kB/s"),
        ("net.tx", "kB/s"),
        ("disk.read", "kB/s"),
        ("http.p99", "ms"),
        ("http.rps", "req/s"),
    ];
    let mut rng = KeyGen::new(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5);
    let mut s = format!(
        "{{\"host\":\"web-{:02}\",\"region\":\"eu-west-1\",\"ts\":{},\"metrics\":[",
        rng.next_u64() % 64,
        1_764_900_000_000 + rng.next_u64() % 1_000_000_000
    );
    let end = "]}";
    let mut first = true;
    for i in 0.. {
        let (name, unit) = METRICS[i % METRICS.len()];
        let value = rng.next_u64() % 100_000;
        let item = format!(
            "{}{{\"name\":\"{name}\",\"shard\":{},\"value\":{}.{:02},\"unit\":\"{unit}\"}}",
            if first { "" } else { "," },
            i / METRICS.len(),
            value / 100,
            value % 100
        );
        if s.len() + item.len() + end.len() > n {
            break;
        }
        s.push_str(&item);
        first = false;
    }
    if s.len() + end.len() > n {
        // Too small for even the header: a JSON object of spaces.
        return match n {
            0 => Vec::new(),
            1 => b" ".to_vec(),
            _ => format!("{{{}}}", " ".repeat(n - 2)).into_bytes(),
        };
    }
    let pad = n - s.len() - end.len();
    s.extend(std::iter::repeat_n(' ', pad));
    s.push_str(end);
    s.into_bytes()
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
    fn json_bodies_are_exact_valid_and_vary() {
        for n in [0, 1, 2, 10, 100, 1000, 1024 - STAMP_LEN, 16 * 1024] {
            let b = json_body(n, 1);
            assert_eq!(b.len(), n);
            if n >= 2 {
                let v: serde_json::Value = serde_json::from_slice(&b).expect("valid JSON");
                assert!(v.is_object());
            }
        }
        assert_ne!(json_body(1000, 1), json_body(1000, 2));
        let stamp = Stamp {
            publisher: 1,
            trial: 2,
            seq: 3,
            scheduled_ns: 4,
        };
        let body = json_body(100, 3);
        let mut out = Vec::new();
        write_stamped_body(&mut out, &stamp, STAMP_LEN + 100, &body, [0; 4]);
        assert_eq!(&out[out.len() - 100..], &body[..]);
        assert_eq!(Stamp::read(&out[out.len() - 124..]), Some(stamp));
    }

    #[test]
    fn compressed_frames_inflate_on_the_server_side() {
        let stamp = Stamp {
            publisher: 4,
            trial: 1,
            seq: 9,
            scheduled_ns: 77,
        };
        let mut z = Compressor::new(1, 256);
        for size in [64, 1024, 70_000] {
            let body = json_body(size - STAMP_LEN, 5);
            let mut out = vec![0xEE];
            write_stamped_compressed(&mut out, &stamp, size, &body, [1, 2, 3, 4], &mut z);
            let Ok(Decoded::Complete((h, hl, rsv1))) =
                parse_header_deflate(&out[1..], Role::Server)
            else {
                panic!("size {size}: header does not parse");
            };
            // Under the compressor's minimum size: sent plain.
            assert_eq!(rsv1, size >= 256, "size {size}");
            let mut payload = out[1 + hl..].to_vec();
            assert_eq!(payload.len() as u64, h.payload_len);
            apply_mask(&mut payload, h.mask.expect("masked"), 0);
            if rsv1 {
                payload = fanout::proto::deflate::Inflater::new()
                    .inflate(&payload, 1 << 20)
                    .expect("inflates");
                assert!(h.payload_len < size as u64 / 2, "size {size}");
            }
            assert_eq!(Stamp::read(&payload), Some(stamp));
            assert_eq!(&payload[STAMP_LEN..], &body[..]);
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
