//! The trial of a worker: queue each publisher's messages when due (open loop), count what
//! was sent and how many deliveries that makes expected, report progress intervals, and hand
//! the counts over when collected.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;

use super::conn::State;
use super::recv::RecvState;
use super::worker::Worker;
use super::{Reply, TrialPlan, WorkerTrial};
use crate::stats::{Failures, latency_histogram};
use crate::wire::stamp::Stamp;
use crate::wire::writer::{write_stamped_body, write_stamped_compressed};
use fanout::proto::deflate::{Compressor, DEFAULT_LEVEL, DEFAULT_MIN_SIZE};

/// The trial in progress.
pub struct TrialRun {
    pub(super) plan: Arc<TrialPlan>,
    pub(super) heap: BinaryHeap<Reverse<(u64, usize, u64)>>,
    /// Every message of the schedule is queued; `Reply::Done` goes out once it is counted.
    pub(super) done: bool,
    pub(super) done_reported: bool,
    pub(super) sent: u64,
    pub(super) expected: u64,
    pub(super) dropped: Failures,
    pub(super) next_interval_ns: u64,
    pub(super) interval_index: u64,
    /// How late each message left: actual send time minus its slot (loadgen's own delay).
    pub(super) lag: hdrhistogram::Histogram<u64>,
    /// The loop's compressor for `--compress-publish` (reset for each message).
    pub(super) compressor: Option<Compressor>,
}

impl Worker {
    pub(super) fn start_trial(&mut self, plan: Arc<TrialPlan>) {
        let mut heap = BinaryHeap::new();
        for (li, c) in self.conns.iter().enumerate() {
            if let (Some(q), State::Open) = (c.publisher, &c.state)
                && let Some(due) = plan.schedule.due_ns(q, 0)
            {
                heap.push(Reverse((due, li, 0)));
            }
        }
        self.rx = RecvState {
            trial: Some(plan.id),
            ..RecvState::default()
        };
        self.synced = (0, 0);
        let start = plan.schedule.start_ns();
        self.trial = Some(TrialRun {
            next_interval_ns: start + plan.interval_ns,
            plan,
            heap,
            done: false,
            done_reported: false,
            sent: 0,
            expected: 0,
            dropped: Failures::default(),
            interval_index: 0,
            lag: latency_histogram(),
            compressor: (self.shared.compress_publish)
                .then(|| Compressor::new(DEFAULT_LEVEL, DEFAULT_MIN_SIZE)),
        });
    }

    pub(super) fn collect(&mut self) {
        self.sync_shared();
        let Some(t) = self.trial.take() else { return };
        let mut rx = std::mem::take(&mut self.rx);
        for c in &mut self.conns {
            c.trackers = Vec::new();
        }
        let (tail, tail_delivered) = rx.end_interval();
        let _ = self.replies.send(Reply::Collected(Box::new(WorkerTrial {
            tally: rx.tally,
            hist: rx.hist,
            sent: t.sent,
            expected: t.expected,
            dropped: t.dropped,
            last_delivery_ns: rx.last_delivery_ns,
            tail: (t.interval_index, tail, tail_delivered),
            lag: t.lag,
        })));
    }

    pub(super) fn publish_step(&mut self, now: u64) {
        let Some(t) = self.trial.as_mut() else { return };
        let size = self.shared.size;
        while let Some(&Reverse((due, li, k))) = t.heap.peek() {
            if due > now {
                break;
            }
            t.heap.pop();
            let conn = &mut self.conns[li];
            let Some(q) = conn.publisher.filter(|_| conn.state == State::Open) else {
                continue;
            };
            if !conn.has_output() {
                self.dirty.push(li);
            }
            let stamp = Stamp {
                publisher: q,
                trial: t.plan.id,
                seq: k,
                scheduled_ns: due,
            };
            let bodies = &self.shared.bodies;
            let body = match bodies.len() {
                0 => &[][..],
                n => &bodies[(k as usize + q as usize) % n][..],
            };
            let key = self.keys.key();
            match t.compressor.as_mut().filter(|_| conn.reader.deflate) {
                Some(z) => write_stamped_compressed(&mut conn.wbuf, &stamp, size, body, key, z),
                None => write_stamped_body(&mut conn.wbuf, &stamp, size, body, key),
            }
            t.lag.saturating_record(now.saturating_sub(due).max(1));
            t.sent += 1;
            t.expected += t.plan.receivers[conn.channel as usize].saturating_sub(1);
            if let Some(next) = t.plan.schedule.due_ns(q, k + 1) {
                t.heap.push(Reverse((next, li, k + 1)));
            }
        }
        t.done |= t.heap.is_empty();
    }

    pub(super) fn interval_step(&mut self, now: u64) {
        let Some(t) = self.trial.as_mut() else { return };
        while now >= t.next_interval_ns {
            let (hist, delivered) = self.rx.end_interval();
            let _ = self.replies.send(Reply::Interval {
                index: t.interval_index,
                hist,
                delivered,
            });
            t.interval_index += 1;
            t.next_interval_ns += t.plan.interval_ns;
        }
    }
}
