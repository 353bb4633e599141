//! permessage-deflate hot paths (RFC 7692): compressing a broadcast once (level 1, 6, 9) and
//! inflating a client's message, on dashboard-like JSON (repeated keys, changing numbers).
//!
//! `compress` is what one broadcast costs, once for all its subscribers: reset, deflate, one
//! exactly sized frame. `compress_size` runs level 1 over sizes to choose the minimum size
//! worth compressing; `inflate` is the per-loop inflater on one whole message. The compressed
//! sizes are printed once at start-up.
//!
//! Measured with `cargo bench --bench deflate -- --warm-up-time 1 --measurement-time 4` on
//! the 2-core development VM while other builds ran (load 4–5), so read the times as ratios:
//!
//! | 1 KiB JSON | frame  | compress | inflate |
//! |------------|--------|----------|---------|
//! | plain      | 1028 B | –        | –       |
//! | level 1    | 346 B  | 15 µs    | 2.4 µs  |
//! | level 6    | 270 B  | 47 µs    | 5.1 µs  |
//! | level 9    | 271 B  | 50 µs    | 7.1 µs  |
//!
//! Level 1 over sizes: 64 B 7.6 µs (not smaller: sent plain), 128 B 8.0 µs (132 → 123 B),
//! 256 B 9.5 µs (260 → 165 B), 512 B 7.7 µs (516 → 233 B), 1 KiB 10.6 µs, 4 KiB 22.7 µs
//! (4100 → 976 B). Below 1 KiB the time is mostly fixed: each message starts with a reset that
//! clears zlib-rs's 128 KiB hash table.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use fanout::proto::Decoded;
use fanout::proto::deflate::{Compressor, Inflater};
use fanout::proto::frame::{OpCode, Role, header_len, parse_header_deflate};

const LEVELS: [u32; 3] = [1, 6, 9];
const SIZES: [usize; 6] = [64, 128, 256, 512, 1024, 4096];

/// About `size` bytes of a metrics dashboard's JSON update, the same for every run.
fn dashboard_json(size: usize) -> Vec<u8> {
    const HOSTS: [&str; 4] = ["web-01", "web-02", "db-01", "cache-01"];
    const NAMES: [&str; 6] = ["cpu", "mem", "disk_io", "net_rx", "net_tx", "load"];
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut out = String::from(r#"{"type":"update","ts":1733380000123,"series":["#);
    let mut i = 0;
    while out.len() < size {
        let r = next();
        if i > 0 {
            out.push(',');
        }
        out.push_str(&format!(
            r#"{{"host":"{}","metric":"{}","value":{}.{:02},"ok":{}}}"#,
            HOSTS[(r % 4) as usize],
            NAMES[(r >> 8) as usize % 6],
            (r >> 16) % 1000,
            (r >> 32) % 100,
            r & 1 == 0
        ));
        i += 1;
    }
    out.truncate(size.saturating_sub(2));
    out.push_str("]}");
    out.into_bytes()
}

/// Compressed frame length, or the plain one when compressing did not pay.
fn compressed_len(level: u32, payload: &[u8]) -> usize {
    Compressor::new(level, 0)
        .compress_frame(OpCode::Text, payload)
        .map_or(
            header_len(payload.len() as u64, false) + payload.len(),
            |f| f.len(),
        )
}

fn print_sizes() {
    for size in SIZES {
        let payload = dashboard_json(size);
        let plain = header_len(size as u64, false) + size;
        let sizes: Vec<String> = LEVELS
            .iter()
            .map(|&l| format!("level {l}: {}", compressed_len(l, &payload)))
            .collect();
        eprintln!(
            "{size} B of JSON: frame {plain} B plain, {}",
            sizes.join(", ")
        );
    }
}

fn bench_compress(c: &mut Criterion) {
    print_sizes();
    let payload = dashboard_json(1024);
    let mut group = c.benchmark_group("compress");
    group.throughput(Throughput::Bytes(payload.len() as u64));
    for level in LEVELS {
        let mut compressor = Compressor::new(level, 0);
        group.bench_function(BenchmarkId::new("1024", format!("level{level}")), |b| {
            b.iter(|| compressor.compress_frame(OpCode::Text, black_box(&payload)))
        });
    }
    group.finish();
}

fn bench_compress_size(c: &mut Criterion) {
    let mut group = c.benchmark_group("compress_size");
    let mut compressor = Compressor::new(1, 0);
    for size in SIZES {
        let payload = dashboard_json(size);
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::new("level1", size), &payload, |b, p| {
            b.iter(|| compressor.compress_frame(OpCode::Text, black_box(p)))
        });
    }
    group.finish();
}

fn bench_inflate(c: &mut Criterion) {
    let payload = dashboard_json(1024);
    let mut group = c.benchmark_group("inflate");
    group.throughput(Throughput::Bytes(payload.len() as u64));
    let mut inflater = Inflater::new();
    for level in LEVELS {
        let frame = Compressor::new(level, 0)
            .compress_frame(OpCode::Text, &payload)
            .expect("JSON compresses");
        let Ok(Decoded::Complete((_, at, true))) = parse_header_deflate(&frame, Role::Client)
        else {
            panic!("a compressed frame");
        };
        let compressed = &frame[at..];
        group.bench_function(BenchmarkId::new("1024", format!("level{level}")), |b| {
            b.iter(|| inflater.inflate(black_box(compressed), 1 << 20).unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, bench_compress, bench_compress_size, bench_inflate);
criterion_main!(benches);
