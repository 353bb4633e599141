//! Broadcast cost: encode a frame once, then queue it for 10 000 subscribers; a turn's
//! batch built once and queued to 10 000 subscribers; and one turn's hand-off of 64 messages
//! to another loop (`--threads`): the batch built, sent, the wake-up written, and drained.
//!
//! The per-subscriber step is a reference-count increment and a queue push, so its cost must
//! not grow with the payload size: compare the `fan_out_10k` figures across sizes.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use fanout::broadcast::{self, OutQueue};
use fanout::config::SlowConsumer;
use fanout::directory::Directory;
use fanout::hub::{Hub, Outboxes};
use fanout::inbox::Handoff;
use fanout::proto::frame::OpCode;
use std::sync::{Arc, Mutex};

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

/// The loop's connection table reduced to queues, written out at once.
struct Queues(Vec<OutQueue>);

impl Outboxes for Queues {
    fn open(&mut self, key: usize) -> Option<&mut OutQueue> {
        self.0.get_mut(key)
    }
    fn queued(&mut self, _: usize) {}
    fn flush(&mut self, _: usize) {}
    fn close_slow(&mut self, _: usize) {}
    fn deflate(&mut self, _: usize) -> Option<fanout::proto::deflate::Agreed> {
        None
    }
}

/// One turn of 16 messages of 64 bytes to 10 000 subscribers: built into one batch and queued
/// as one entry each (`batched`), against queuing the 16 frames to each (`one_by_one`, what
/// the hub does when each message has a turn of its own). Per element: one subscriber.
fn batch(c: &mut Criterion) {
    const MESSAGES: usize = 16;
    let mut group = c.benchmark_group("turn_16x64B_to_10k");
    group.throughput(Throughput::Elements(SUBSCRIBERS as u64));
    let frames: Vec<_> = (0..MESSAGES)
        .map(|i| broadcast::message(OpCode::Binary, &[i as u8; 64]))
        .collect();
    for batched in [true, false] {
        let directory = Arc::new(Mutex::new(Directory::default()));
        let mut hub = Hub::new(0, 1, directory, false, usize::MAX, SlowConsumer::Drop);
        let mut table = Queues((0..SUBSCRIBERS).map(|_| OutQueue::default()).collect());
        let mut channel = 0;
        for key in 0..SUBSCRIBERS {
            channel = hub.subscribe("room", key, &mut table).unwrap().channel;
        }
        let name = if batched { "batched" } else { "one_by_one" };
        group.bench_function(name, |b| {
            b.iter(|| {
                for f in &frames {
                    hub.publish(channel, f.clone(), None);
                    if !batched {
                        hub.settle_all(&mut table);
                    }
                }
                hub.settle_all(&mut table);
                for q in &mut table.0 {
                    q.advance(q.queued_bytes());
                }
                black_box(&table.0);
            })
        });
    }
    group.finish();
}

/// One loop's turn of 64 messages for another loop: 64 `Handoff`s (two reference-count
/// increments each, no copy), one channel send, one wake-up (an `eventfd` write, since the
/// receiver re-arms each time, as a loop does once per turn), and the receiver's drain. On one
/// thread: the cost without contention, per message.
fn handoff(c: &mut Criterion) {
    const MESSAGES: usize = 64;
    let directory = Arc::new(Mutex::new(Directory::default()));
    let mut hub = Hub::new(
        0,
        1,
        directory.clone(),
        false,
        usize::MAX,
        SlowConsumer::Drop,
    );
    let mut table = Queues(vec![OutQueue::default()]);
    hub.subscribe("room", 0, &mut table).unwrap();
    let shared = directory.lock().unwrap().lookup("room").unwrap();
    let frame = broadcast::message(OpCode::Binary, &[7; 64]);
    let poll = mio::Poll::new().unwrap();
    let waker = mio::Waker::new(poll.registry(), mio::Token(0)).unwrap();
    let (link, inbox) = fanout::inbox::channel(waker);
    let mut group = c.benchmark_group("handoff");
    group.throughput(Throughput::Elements(MESSAGES as u64));
    group.bench_function("turn_of_64", |b| {
        b.iter(|| {
            let batch: Vec<Handoff> = (0..MESSAGES as u64)
                .map(|seq| Handoff {
                    channel: shared.clone(),
                    frame: frame.clone(),
                    origin: 0,
                    seq,
                })
                .collect();
            link.hand_off(batch).unwrap();
            inbox.rearm();
            black_box(inbox.try_handoffs().unwrap());
        })
    });
    group.finish();
}

criterion_group!(benches, fan_out, encode, batch, handoff);
criterion_main!(benches);
