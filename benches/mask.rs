//! Masking throughput (RFC 6455 §5.3): the byte-at-a-time oracle against the fast in-place and
//! copying paths, with `memcpy` of the same size as the bandwidth ceiling.
//!
//! Run: `cargo bench --bench mask` (add `-- --measurement-time 2 --warm-up-time 1` for a quick
//! pass). One group per payload size; the ids are:
//! - `naive`: `apply_mask_naive`, in place. LLVM does not vectorise it (~2 GiB/s), so it stays
//!   the honest byte-at-a-time baseline. Every function gets its offset through `black_box`, as
//!   the server's offsets are run-time values: with a constant offset LLVM unrolls the oracle by
//!   four with the key bytes in registers (still one byte per load, XOR and store, ~6 GiB/s).
//! - `apply_mask`: in place, on a buffer as the allocator aligned it.
//! - `apply_mask_unaligned`: in place, starting one byte in, as a payload behind a frame header
//!   usually does; this is what the 16-byte alignment head is for.
//! - `unmask_into`: copying into a cleared `Vec` with enough capacity.
//! - `memcpy`: `dst.copy_from_slice(src)`. `dst` is placed at the same offset within a 4 KiB
//!   page as `src`: glibc's `rep movsb` path on AMD Zen drops to ~3 GiB/s when the destination
//!   sits a few bytes after the source modulo 4 KiB, which would make the ceiling meaningless.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use fanout::proto::mask::{apply_mask, apply_mask_naive, unmask_into};

const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

const SIZES: [(&str, usize); 5] = [
    ("16B", 16),
    ("125B", 125),
    ("1KiB", 1 << 10),
    ("64KiB", 64 << 10),
    ("1MiB", 1 << 20),
];

const PAGE: usize = 4096;

fn mask(c: &mut Criterion) {
    for (label, size) in SIZES {
        let mut group = c.benchmark_group(format!("mask/{label}"));
        group.throughput(Throughput::Bytes(size as u64));

        let src: Vec<u8> = (0..size).map(|i| (i * 7) as u8).collect();
        let mut buf = vec![0u8; size + 1];
        buf[..size].copy_from_slice(&src);

        group.bench_function("naive", |b| {
            b.iter(|| apply_mask_naive(black_box(&mut buf[..size]), black_box(KEY), black_box(1)))
        });
        group.bench_function("apply_mask", |b| {
            b.iter(|| apply_mask(black_box(&mut buf[..size]), black_box(KEY), black_box(1)))
        });
        group.bench_function("apply_mask_unaligned", |b| {
            b.iter(|| apply_mask(black_box(&mut buf[1..]), black_box(KEY), black_box(1)))
        });

        let mut dst = Vec::with_capacity(size);
        group.bench_function("unmask_into", |b| {
            b.iter(|| {
                dst.clear();
                unmask_into(
                    black_box(&mut dst),
                    black_box(&src),
                    black_box(KEY),
                    black_box(1),
                );
            })
        });

        let mut backing = vec![0u8; size + PAGE];
        let skew = (src.as_ptr() as usize).wrapping_sub(backing.as_ptr() as usize) % PAGE;
        let copy_dst = &mut backing[skew..skew + size];
        group.bench_function("memcpy", |b| {
            b.iter(|| black_box(&mut *copy_dst).copy_from_slice(black_box(&src)))
        });

        group.finish();
    }
}

criterion_group!(benches, mask);
criterion_main!(benches);
