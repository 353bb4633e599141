//! Broadcast cost: encode a frame once, then queue it for 10 000 subscribers.
//!
//! The per-subscriber step is a reference-count increment and a queue push, so its cost must
//! not grow with the payload size: compare the `fan_out_10k` figures across sizes.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use fanout::broadcast::{self, OutQueue};
use fanout::proto::frame::OpCode;

const SUBSCRIBERS: usize = 10_000;
const SIZES: [usize; 4] = [16, 1024, 16 * 1024, 64 * 1024];

fn fan_out(c: &mut Criterion) {
    let mut group = c.benchmark_group("fan_out_10k");
    group.throughput(Throughput::Elements(SUBSCRIBERS as u64));
    for size in SIZES {
        let frame = broadcast::encode(OpCode::Binary, &vec![7u8; size]);
        let mut queues: Vec<OutQueue> = (0..SUBSCRIBERS).map(|_| OutQueue::default()).collect();
        group.bench_with_input(BenchmarkId::from_parameter(size), &frame, |b, frame| {
            b.iter(|| {
                for q in &mut queues {
                    q.push(frame.clone());
                }
                // Written out again, as a flush would, so the queues do not grow.
                for q in &mut queues {
                    q.advance(frame.len());
                }
                black_box(&queues);
            })
        });
    }
    group.finish();
}

fn encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode_once");
    for size in SIZES {
        let payload = vec![7u8; size];
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::from_parameter(size), &payload, |b, p| {
            b.iter(|| broadcast::encode(OpCode::Binary, black_box(p)))
        });
    }
    group.finish();
}

criterion_group!(benches, fan_out, encode);
criterion_main!(benches);
