//! Payload masking (RFC 6455 §5.3). STUB: being implemented.

/// XORs `buf` with `key` in place, as if `buf` started `offset` bytes into the payload.
pub fn apply_mask(buf: &mut [u8], key: [u8; 4], offset: usize) {
    apply_mask_naive(buf, key, offset)
}

/// The byte-at-a-time reference implementation; the test oracle for [`apply_mask`].
pub fn apply_mask_naive(buf: &mut [u8], key: [u8; 4], offset: usize) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b ^= key[(offset + i) & 3];
    }
}

/// Appends `src` XOR `key` to `dst` (as if `src` started `offset` bytes into the payload).
pub fn unmask_into(dst: &mut Vec<u8>, src: &[u8], key: [u8; 4], offset: usize) {
    let start = dst.len();
    dst.extend_from_slice(src);
    apply_mask_naive(&mut dst[start..], key, offset)
}
