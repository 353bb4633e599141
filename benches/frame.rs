//! Frame codec hot paths (RFC 6455 §5.2, §8.1): header parsing, whole-frame encoding, and
//! streaming UTF-8 validation. Pure functions over in-memory bytes; no sockets.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use fanout::proto::frame::{OpCode, Role, encode_frame, encode_masked_frame, parse_header};
use fanout::proto::utf8::Utf8Validator;

const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// One header of each length class, as a client sends it (masked); throughput counts the header.
fn bench_parse_header(c: &mut Criterion) {
    let mut group = c.benchmark_group("parse_header");
    for (name, payload_len) in [("7-bit", 16), ("16-bit", 1024), ("64-bit", 65536)] {
        let frame = encode_masked_frame(OpCode::Binary, &vec![0; payload_len], KEY);
        let header = &frame[..frame.len() - payload_len];
        group.throughput(Throughput::Bytes(header.len() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(name), header, |b, header| {
            b.iter(|| parse_header(black_box(header), Role::Server))
        });
    }
    group.finish();
}

/// What the server does once per broadcast: one allocation, header, copy.
fn bench_encode_frame(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode_frame");
    for size in [16, 125, 1024, 65536] {
        let payload = vec![b'x'; size];
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::from_parameter(size), &payload, |b, payload| {
            b.iter(|| encode_frame(OpCode::Text, black_box(payload)))
        });
    }
    group.finish();
}

/// A text message validated as it would arrive: in 1000-byte pieces, so code points straddle.
fn bench_utf8(c: &mut Criterion) {
    let mut group = c.benchmark_group("utf8");
    for size in [1024, 65536] {
        let ascii = "a".repeat(size);
        let mut multibyte = String::with_capacity(size);
        for c in "κόσμε€𐍈 ".chars().cycle() {
            if multibyte.len() + c.len_utf8() > size {
                break;
            }
            multibyte.push(c);
        }
        for (name, text) in [("ascii", &ascii), ("multibyte", &multibyte)] {
            group.throughput(Throughput::Bytes(text.len() as u64));
            group.bench_with_input(BenchmarkId::new(name, size), text.as_bytes(), |b, bytes| {
                b.iter(|| {
                    let mut v = Utf8Validator::new();
                    for piece in black_box(bytes).chunks(1000) {
                        v.feed(piece).unwrap();
                    }
                    v.finish().unwrap();
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench_parse_header, bench_encode_frame, bench_utf8);
criterion_main!(benches);
