//! Unit and property tests for the hub: batches, sender exclusion, backpressure, joins and
//! leaves within a turn, against a plain connection table with sockets that take what each
//! test says.

use std::collections::HashMap;
use std::io::IoSlice;
use std::sync::Arc;
use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::*;
use crate::broadcast::{self, Broadcast, MAX_IOVECS};
use crate::proto::frame::OpCode;

/// A connection table without sockets: each key's queue, what its "socket" took, and how
/// much the socket takes per flush.
#[derive(Default)]
struct Table {
    queues: HashMap<usize, OutQueue>,
    written: HashMap<usize, Vec<u8>>,
    /// Bytes a flush writes (unlimited when absent).
    takes: HashMap<usize, usize>,
    queued: Vec<usize>,
    slow: Vec<usize>,
}

impl Table {
    fn open_key(&mut self, key: usize) {
        self.queues.insert(key, OutQueue::default());
    }

    /// Writes up to `limit` bytes of `key`'s queue to its "socket".
    fn write(&mut self, key: usize, limit: usize) {
        let Some(queue) = self.queues.get_mut(&key) else {
            return;
        };
        let mut iov = [IoSlice::new(&[]); MAX_IOVECS];
        let n = queue.iovecs(&mut iov);
        let bytes: Vec<u8> = iov[..n].iter().flat_map(|s| s.iter().copied()).collect();
        let taken = bytes.len().min(limit);
        self.written
            .entry(key)
            .or_default()
            .extend_from_slice(&bytes[..taken]);
        queue.advance(taken);
    }

    /// Everything `key` was sent: written, then still queued.
    fn stream(&mut self, key: usize) -> Vec<u8> {
        self.write(key, usize::MAX);
        self.written.get(&key).cloned().unwrap_or_default()
    }
}

impl Outboxes for Table {
    fn open(&mut self, key: usize) -> Option<&mut OutQueue> {
        self.queues.get_mut(&key)
    }

    fn queued(&mut self, key: usize) {
        self.queued.push(key);
    }

    fn flush(&mut self, key: usize) {
        let limit = self.takes.get(&key).copied().unwrap_or(usize::MAX);
        self.write(key, limit);
    }

    fn close_slow(&mut self, key: usize) {
        self.slow.push(key);
        self.queues.remove(&key);
    }

    fn deflate(&mut self, _: usize) -> Option<crate::proto::deflate::Agreed> {
        None
    }
}

fn hub(echo: bool, cap: usize, policy: SlowConsumer) -> Hub {
    let directory = Arc::new(Mutex::new(Directory::default()));
    Hub::new(0, 1, directory, echo, cap, policy)
}

fn text(s: &str) -> Broadcast {
    broadcast::message(OpCode::Text, s.as_bytes())
}

/// The bytes of `frames`, one after another.
fn cat(frames: &[Broadcast]) -> Vec<u8> {
    frames
        .iter()
        .flat_map(|f| f.plain().iter().copied())
        .collect()
}

/// Subscribes `keys` to `name` (opening them in `t`); returns the channel id.
fn join(h: &mut Hub, t: &mut Table, name: &str, keys: &[usize]) -> usize {
    let mut channel = 0;
    for &k in keys {
        t.open_key(k);
        channel = h.subscribe(name, k, t).unwrap().channel;
    }
    channel
}

#[test]
fn one_frame_in_a_turn_is_shared_and_skips_its_sender() {
    let (mut h, mut t) = (hub(false, 1 << 20, SlowConsumer::Close), Table::default());
    let ch = join(&mut h, &mut t, "room", &[1, 2, 3]);
    let f = text("hi");
    assert_eq!(h.publish(ch, f.clone(), Some(1)), 3);
    assert!(
        t.queues[&2].is_empty(),
        "nothing is queued before the turn ends"
    );
    h.settle_all(&mut t);
    assert_eq!(
        Arc::strong_count(f.plain()),
        3,
        "one frame, shared by the two receivers"
    );
    assert_eq!(
        (t.stream(1), t.stream(2), t.stream(3)),
        (
            vec![],
            cat(std::slice::from_ref(&f)),
            cat(std::slice::from_ref(&f))
        )
    );
    assert_eq!((h.stats.deliveries, h.stats.batches), (2, 0));
    assert_eq!(t.queued, [2, 3]);
}

#[test]
fn several_frames_in_a_turn_go_out_as_one_shared_buffer() {
    let (mut h, mut t) = (hub(false, 1 << 20, SlowConsumer::Close), Table::default());
    let ch = join(&mut h, &mut t, "room", &[1, 2, 3, 4]);
    let (a, b, c) = (text("a"), text("bb"), text("ccc"));
    h.publish(ch, a.clone(), Some(1));
    h.publish(ch, b.clone(), None);
    h.publish(ch, c.clone(), Some(2));
    h.settle_all(&mut t);
    let all = cat(&[a.clone(), b.clone(), c.clone()]);
    // The others get one entry each, the same buffer.
    for k in [3, 4] {
        assert_eq!(t.queues[&k].len(), 1);
        assert_eq!(t.stream(k), all);
    }
    // Each sender gets the rest, one by one, without its own.
    assert_eq!(t.queues[&1].len(), 2);
    assert_eq!(t.stream(1), cat(&[b.clone(), c.clone()]));
    assert_eq!(t.stream(2), cat(&[a.clone(), b.clone()]));
    assert_eq!((h.stats.deliveries, h.stats.batches), (10, 1));
}

#[test]
fn with_echo_the_sender_gets_the_batch_too() {
    let (mut h, mut t) = (hub(true, 1 << 20, SlowConsumer::Close), Table::default());
    let ch = join(&mut h, &mut t, "room", &[1, 2]);
    h.publish(ch, text("a"), Some(1));
    h.publish(ch, text("b"), Some(1));
    h.settle_all(&mut t);
    assert_eq!(t.queues[&1].len(), 1);
    assert_eq!(t.stream(1), t.stream(2));
}

#[test]
fn a_subscriber_over_the_cap_gets_the_frames_that_fit_and_the_rest_are_dropped_and_counted() {
    let cap = 2 * OutQueue::shared_cost(text("0123456789").plain());
    let (mut h, mut t) = (hub(false, cap, SlowConsumer::Drop), Table::default());
    let ch = join(&mut h, &mut t, "room", &[1, 2]);
    t.takes.insert(2, 0); // 2's socket takes nothing
    let frames: Vec<_> = (0..5).map(|i| text(&format!("012345678{i}"))).collect();
    for f in &frames {
        h.publish(ch, f.clone(), None);
    }
    h.settle_all(&mut t);
    // 1 takes the batch; 2 cannot (over the cap), so two frames fit one by one, three drop.
    assert_eq!(t.stream(1), cat(&frames));
    assert_eq!(t.stream(2), cat(&frames[..2]));
    assert_eq!(h.stats.dropped, 3);
    assert_eq!(h.stats.deliveries, 5 + 2);
}

#[test]
fn under_the_close_policy_a_subscriber_over_the_cap_is_closed() {
    let cap = 2 * OutQueue::shared_cost(text("0123456789").plain());
    let (mut h, mut t) = (hub(false, cap, SlowConsumer::Close), Table::default());
    let ch = join(&mut h, &mut t, "room", &[1, 2, 3]);
    t.takes.insert(2, 0);
    for i in 0..5 {
        h.publish(ch, text(&format!("012345678{i}")), None);
    }
    h.settle_all(&mut t);
    assert_eq!(t.slow, [2]);
    assert_eq!(t.stream(3).len(), 5 * 12, "the others are not disturbed");
}

#[test]
fn a_reader_that_keeps_up_is_written_before_it_is_judged() {
    let cap = 2 * OutQueue::shared_cost(text("0123456789").plain());
    let (mut h, mut t) = (hub(false, cap, SlowConsumer::Close), Table::default());
    let ch = join(&mut h, &mut t, "room", &[1]);
    for i in 0..5 {
        h.publish(ch, text(&format!("012345678{i}")), None);
    }
    h.settle_all(&mut t);
    assert!(t.slow.is_empty());
    assert_eq!(t.stream(1).len(), 5 * 12);
}

#[test]
fn a_joiner_in_the_same_turn_does_not_get_what_was_published_before_it_live() {
    let (mut h, mut t) = (hub(false, 1 << 20, SlowConsumer::Close), Table::default());
    let ch = join(&mut h, &mut t, "room", &[1]);
    h.publish(ch, text("before"), None);
    join(&mut h, &mut t, "room", &[2]); // settles "before" to 1 first
    assert_eq!(t.stream(1), text("before").plain().to_vec());
    h.publish(ch, text("after"), None);
    h.settle_all(&mut t);
    assert_eq!(t.stream(2), text("after").plain().to_vec());
    assert_eq!(t.stream(1), cat(&[text("before"), text("after")]));
}

#[test]
fn a_leaver_gets_what_was_published_before_it_left() {
    let (mut h, mut t) = (hub(false, 1 << 20, SlowConsumer::Close), Table::default());
    let ch = join(&mut h, &mut t, "room", &[1, 2]);
    h.publish(ch, text("a"), None);
    h.publish(ch, text("b"), None);
    let sub = Subscription {
        channel: ch,
        slot: 0,
    };
    assert_eq!(h.unsubscribe(sub, Instant::now(), &mut t), Some(2));
    t.write(1, usize::MAX); // what it was sent before the loop drops it
    t.queues.remove(&1);
    h.publish(ch, text("c"), None);
    h.settle_all(&mut t);
    assert_eq!(t.stream(2), cat(&[text("a"), text("b"), text("c")]));
    assert_eq!(t.written[&1], cat(&[text("a"), text("b")]));
}

#[test]
fn a_batch_larger_than_the_cap_goes_frame_by_frame_even_to_an_empty_queue() {
    let f = text("0123456789");
    // Two frames fit; the five-frame batch (one slot's overhead for 60 bytes) does not.
    let cap = 2 * OutQueue::shared_cost(f.plain()) + 2;
    assert!(5 * f.plain().len() + crate::broadcast::SHARED_OVERHEAD > cap);
    let (mut h, mut t) = (hub(false, cap, SlowConsumer::Drop), Table::default());
    let ch = join(&mut h, &mut t, "room", &[1]);
    t.takes.insert(1, 0);
    for _ in 0..5 {
        h.publish(ch, f.clone(), None);
    }
    h.settle_all(&mut t);
    assert_eq!(t.queues[&1].len(), 2, "two frames, not a five-frame batch");
    assert_eq!(h.stats.dropped, 3);
}

/// One step of the property test.
#[derive(Clone, Debug)]
enum Op {
    /// Subscriber slot `who` (mod the subscribers) publishes a payload, or the API does.
    Publish {
        who: Option<usize>,
        len: usize,
    },
    Join,
    Leave(usize),
    /// The turn ends: pending frames are queued, then each socket takes some bytes.
    EndTurn(Vec<usize>),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (proptest::option::of(0usize..8), 0usize..40)
            .prop_map(|(who, len)| Op::Publish { who, len }),
        1 => Just(Op::Join),
        1 => (0usize..8).prop_map(Op::Leave),
        2 => proptest::collection::vec(0usize..200, 8).prop_map(Op::EndTurn),
    ]
}

/// Runs `ops` through the hub and through the one-by-one reference (each message appended to
/// every other member's stream when published); returns both streams per key, and the
/// messages the hub dropped.
/// Per subscriber: what the hub sent it, and what the reference would have.
type Streams = HashMap<usize, (Vec<u8>, Vec<u8>)>;

fn run(ops: &[Op], echo: bool, cap: usize) -> (Streams, u64) {
    let mut h = hub(echo, cap, SlowConsumer::Drop);
    let mut t = Table::default();
    let mut members: Vec<(usize, Subscription)> = Vec::new();
    let mut reference: HashMap<usize, Vec<u8>> = HashMap::new();
    let mut next_key = 0;
    let mut seq = 0u32;
    let now = Instant::now() + Duration::from_secs(1);
    for op in ops {
        match op {
            Op::Join => {
                t.open_key(next_key);
                let sub = h.subscribe("room", next_key, &mut t).unwrap();
                members.push((next_key, sub));
                reference.insert(next_key, Vec::new());
                next_key += 1;
            }
            Op::Leave(i) if !members.is_empty() => {
                let (key, sub) = members.remove(i % members.len());
                if let Some(moved) = h.unsubscribe(sub, now, &mut t) {
                    members
                        .iter_mut()
                        .find(|(k, _)| *k == moved)
                        .unwrap()
                        .1
                        .slot = sub.slot;
                }
                t.write(key, usize::MAX);
                t.queues.remove(&key);
            }
            Op::Publish { who, len } => {
                let Some(&(_, sub)) = members.first() else {
                    continue; // Nobody on the channel: it does not exist.
                };
                let channel = sub.channel;
                let from = who
                    .filter(|_| !members.is_empty())
                    .map(|w| members[w % members.len()].0);
                seq += 1;
                let mut payload = seq.to_be_bytes().to_vec();
                payload.resize(4 + len, b'x');
                let frame = broadcast::message(OpCode::Binary, &payload);
                for (key, _) in &members {
                    if echo || Some(*key) != from {
                        reference
                            .get_mut(key)
                            .unwrap()
                            .extend_from_slice(frame.plain());
                    }
                }
                h.publish(channel, frame, from);
            }
            Op::EndTurn(takes) => {
                h.settle_all(&mut t);
                for (i, (key, _)) in members.iter().enumerate() {
                    t.write(*key, takes[i % takes.len()]);
                }
            }
            Op::Leave(_) => {}
        }
    }
    h.settle_all(&mut t);
    let keys: Vec<usize> = reference.keys().copied().collect();
    let streams = keys
        .into_iter()
        .map(|k| {
            let got = t.stream(k);
            (k, (got, reference.remove(&k).unwrap()))
        })
        .collect();
    (streams, h.stats.dropped)
}

/// Splits a stream of unmasked binary frames (as encoded above) into their payloads.
fn messages(mut bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let len = (bytes[1] & 0x7f) as usize;
        out.push(bytes[2..2 + len].to_vec());
        bytes = &bytes[2 + len..];
    }
    out
}

proptest! {
    /// With room under the cap, every subscriber gets exactly what publishing one message at
    /// a time would have sent it, byte for byte, whatever the turns, joins, leaves and
    /// partial writes.
    #[test]
    fn batched_delivery_equals_one_by_one(ops in proptest::collection::vec(op(), 1..80), echo: bool) {
        let (streams, dropped) = run(&ops, echo, usize::MAX / 2);
        prop_assert_eq!(dropped, 0);
        for (key, (got, want)) in streams {
            prop_assert_eq!(got, want, "subscriber {}", key);
        }
    }

    /// Under a small cap with `--slow-consumer drop`, each subscriber gets whole messages, in
    /// order, a subsequence of what it would have been sent; what is missing was dropped and
    /// counted.
    #[test]
    fn over_the_cap_whole_messages_are_dropped_and_counted(
        ops in proptest::collection::vec(op(), 1..80),
        cap in 50usize..400,
    ) {
        let (streams, dropped) = run(&ops, false, cap);
        let mut missing = 0;
        for (key, (got, want)) in streams {
            let (got, want) = (messages(&got), messages(&want));
            let mut rest = want.iter();
            for m in &got {
                prop_assert!(rest.any(|w| w == m), "subscriber {}: {:?} out of order", key, m);
            }
            missing += want.len() - got.len();
        }
        prop_assert_eq!(missing as u64, dropped);
    }
}
