//! The driver side of the engine: runs a connect phase or a trial on every thread, waits for
//! it (bounded), reports progress, and merges the threads' results.
//!
//! When a trial is over: every thread has queued its whole schedule (`Done`) and then either
//! every expected delivery has arrived or `drain` has passed since the later of the schedule's
//! end and the last `Done`. Whatever has not arrived by then is lost.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use super::{Command, Engine, Reply, TrialPlan, empty, merge_hist};
use crate::pacing::Schedule;
use crate::stats::{Failures, Percentiles, Tally, latency_histogram};

/// How often the progress callback runs.
const TICK: Duration = Duration::from_millis(200);

/// A live view for the progress line.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// `connect` or `trial`.
    pub phase: &'static str,
    /// Connections planned / open now.
    pub planned: u64,
    /// Connections open now.
    pub open: u64,
    /// This trial's messages sent so far.
    pub sent: u64,
    /// Deliveries expected from what was sent so far.
    pub expected: u64,
    /// Deliveries so far.
    pub delivered: u64,
    /// Deliveries per second over the latest complete interval.
    pub rate_now: f64,
    /// p99 latency (µs) over the latest complete interval.
    pub p99_us: f64,
    /// Time since the phase began.
    pub elapsed: Duration,
}

/// The result of a connect phase.
#[derive(Clone, Debug, Default)]
pub struct ConnectReport {
    /// Connections planned.
    pub planned: u64,
    /// Connections open at the end.
    pub open: u64,
    /// Handshakes completed in this phase.
    pub handshakes: u64,
    /// Handshakes that negotiated permessage-deflate.
    pub deflated: u64,
    /// Connect failures by cause.
    pub failures: Failures,
    /// Open connections that had closed since the previous phase, by cause.
    pub dropped: Failures,
    /// From the phase's start to its last completed handshake.
    pub time_to_open: Duration,
}

impl ConnectReport {
    /// Completed handshakes per second over `time_to_open`.
    pub fn handshakes_per_sec(&self) -> f64 {
        let s = self.time_to_open.as_secs_f64();
        if s > 0.0 {
            self.handshakes as f64 / s
        } else {
            0.0
        }
    }
}

/// What a trial offers.
#[derive(Clone, Copy, Debug)]
pub struct TrialSpec {
    /// Messages per second published, over all publishers.
    pub rate: f64,
    /// How long publishing lasts.
    pub duration: Duration,
    /// How long to wait for in-flight deliveries after publishing ends.
    pub drain: Duration,
    /// Timeline resolution (progress and plots).
    pub interval: Duration,
}

/// One timeline interval of a trial.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct Point {
    /// End of the interval, seconds since the trial began.
    pub t_s: f64,
    /// Deliveries in the interval.
    pub delivered: u64,
    /// Deliveries per second in the interval.
    pub per_sec: f64,
    /// Latency of those deliveries.
    pub latency_us: Percentiles,
}

/// The result of a trial.
#[derive(Clone, Debug)]
pub struct TrialReport {
    /// Offered messages per second.
    pub rate: f64,
    /// Publishing time.
    pub duration: Duration,
    /// Messages the schedule held.
    pub scheduled: u64,
    /// Messages sent (less than `scheduled` when publishers were closed or loadgen fell behind).
    pub sent: u64,
    /// Deliveries expected from what was sent.
    pub expected: u64,
    /// Counters.
    pub tally: Tally,
    /// `expected - delivered`.
    pub lost: u64,
    /// Latency over the whole trial.
    pub latency: Percentiles,
    /// The full latency histogram (ns).
    pub hist: Histogram<u64>,
    /// Per-interval deliveries and latency.
    pub timeline: Vec<Point>,
    /// Connections that closed during the trial, by cause.
    pub dropped: Failures,
    /// From the trial command to the collected results.
    pub wall: Duration,
    /// From the schedule's start to the last delivery (at least `duration`).
    pub active: Duration,
    /// Whether loadgen had not queued its whole schedule when the trial was cut off.
    pub behind: bool,
    /// How late loadgen queued messages after their slots (its own share of the latency).
    pub send_lag: Percentiles,
}

impl TrialReport {
    /// Deliveries per second over the active time.
    pub fn delivered_per_sec(&self) -> f64 {
        self.tally.delivered as f64 / self.active.as_secs_f64().max(1e-9)
    }
}

impl Engine {
    fn snapshot(&self, phase: &'static str, since: Instant, last: (f64, f64)) -> Snapshot {
        let s = &self.shared;
        Snapshot {
            phase,
            planned: self.planned(),
            open: self.open(),
            sent: s.sent.load(Ordering::Relaxed),
            expected: s.expected.load(Ordering::Relaxed),
            delivered: s.delivered.load(Ordering::Relaxed),
            rate_now: last.0,
            p99_us: last.1,
            elapsed: since.elapsed(),
        }
    }

    /// Opens every connection that is not open, at the connect rate; waits until each has
    /// opened or failed.
    pub fn connect(
        &mut self,
        progress: &mut dyn FnMut(&Snapshot),
    ) -> Result<ConnectReport, String> {
        let threads = self.handles.len();
        let to_open = self.planned() - self.open();
        let rate = self.opts.connect_rate;
        let start_ns = self.shared.now_ns();
        let cap = (self.opts.max_pending / threads).max(1);
        self.broadcast(|| Command::Connect {
            start_ns,
            rate: rate / threads as f64,
            cap,
        });
        let since = Instant::now();
        let pace = if rate > 0.0 {
            to_open as f64 / rate
        } else {
            0.0
        };
        let budget =
            Duration::from_secs_f64(pace) + self.opts.connect_timeout * 2 + Duration::from_secs(10);
        let mut report = ConnectReport {
            planned: self.planned(),
            ..ConnectReport::default()
        };
        let mut open = vec![0u64; self.open_per_channel.len()];
        let (mut replied, mut last_open_ns, mut next_tick) = (0, start_ns, since);
        while replied < threads {
            match self.replies.recv_timeout(Duration::from_millis(50)) {
                Ok(Reply::Connected {
                    open_per_channel,
                    failures,
                    dropped,
                    handshakes,
                    deflated,
                    last_open_ns: l,
                }) => {
                    replied += 1;
                    open.iter_mut()
                        .zip(&open_per_channel)
                        .for_each(|(a, b)| *a += b);
                    report.failures.merge(&failures);
                    report.dropped.merge(&dropped);
                    report.handshakes += handshakes;
                    report.deflated += deflated;
                    last_open_ns = last_open_ns.max(l);
                }
                Ok(Reply::Fatal(e)) => return Err(e),
                Ok(_) | Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return Err("engine threads are gone".into()),
            }
            if Instant::now() >= next_tick {
                next_tick += TICK;
                progress(&self.snapshot("connect", since, (0.0, 0.0)));
            }
            if since.elapsed() > budget {
                return Err(format!("connect phase did not finish within {budget:?}"));
            }
        }
        self.open_per_channel = open;
        report.open = self.open();
        report.time_to_open = Duration::from_nanos(last_open_ns - start_ns);
        progress(&self.snapshot("connect", since, (0.0, 0.0)));
        Ok(report)
    }

    /// Waits until no message at all has arrived for `quiet` (at most `max`), so a server
    /// still working off an earlier trial's backlog does not slow the next one down. Returns
    /// how many messages arrived meanwhile.
    pub fn settle(&self, quiet: Duration, max: Duration) -> u64 {
        let frames = || self.shared.frames.load(Ordering::Relaxed);
        let (first, since) = (frames(), Instant::now());
        let (mut last, mut last_change) = (first, since);
        while since.elapsed() < max && last_change.elapsed() < quiet {
            std::thread::sleep(Duration::from_millis(20));
            let now = frames();
            if now != last {
                (last, last_change) = (now, Instant::now());
            }
        }
        last - first
    }

    /// Runs one trial over the open connections and returns its counts.
    pub fn trial(
        &mut self,
        spec: &TrialSpec,
        progress: &mut dyn FnMut(&Snapshot),
    ) -> Result<TrialReport, String> {
        let threads = self.handles.len();
        let publishers = self
            .shared
            .plan
            .conns
            .iter()
            .filter(|c| c.publisher.is_some())
            .count();
        if publishers == 0 {
            return Err("the plan has no publishers".into());
        }
        self.trial_id += 1;
        self.shared.reset_counters();
        let lead = Duration::from_millis(20); // lets every thread set up before the first slot
        let start_ns = self.shared.now_ns() + lead.as_nanos() as u64;
        let duration_ns = spec.duration.as_nanos() as u64;
        let schedule = Schedule::new(start_ns, duration_ns, spec.rate, publishers as u32);
        let interval_ns = spec.interval.as_nanos().max(1) as u64;
        let plan = Arc::new(TrialPlan {
            id: self.trial_id,
            schedule,
            receivers: self.open_per_channel.clone(),
            interval_ns,
        });
        let since = Instant::now();
        self.broadcast(|| Command::Trial(plan.clone()));
        let end = since + lead + spec.duration;
        let give_up = end + spec.drain + spec.duration.max(Duration::from_secs(10));
        let mut intervals: Vec<(Histogram<u64>, u64)> = Vec::new();
        let (mut done, mut all_done_at, mut next_tick, mut last) = (0, None, since, (0.0, 0.0));
        let behind = loop {
            match self.replies.recv_timeout(Duration::from_millis(10)) {
                Ok(Reply::Interval {
                    index,
                    hist,
                    delivered,
                }) => {
                    add_interval(&mut intervals, index, &hist, delivered);
                    let (h, d) = &intervals[index as usize];
                    last = (
                        *d as f64 / spec.interval.as_secs_f64(),
                        Percentiles::of(h).p99,
                    );
                }
                Ok(Reply::Done) => {
                    done += 1;
                    if done == threads {
                        all_done_at = Some(Instant::now());
                    }
                }
                Ok(Reply::Fatal(e)) => return Err(e),
                Ok(_) | Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return Err("engine threads are gone".into()),
            }
            let now = Instant::now();
            if now >= next_tick {
                next_tick += TICK;
                progress(&self.snapshot("trial", since, last));
            }
            if let Some(d) = all_done_at {
                let s = &self.shared;
                let all_in =
                    s.delivered.load(Ordering::Relaxed) >= s.expected.load(Ordering::Relaxed);
                if (all_in && now >= end) || now >= d.max(end) + spec.drain {
                    break false;
                }
            }
            if now >= give_up {
                break true;
            }
        };
        self.broadcast(|| Command::Collect);
        let mut parts = Vec::with_capacity(threads);
        while parts.len() < threads {
            match self.replies.recv_timeout(Duration::from_secs(10)) {
                Ok(Reply::Collected(w)) => parts.push(w),
                Ok(Reply::Interval {
                    index,
                    hist,
                    delivered,
                }) => add_interval(&mut intervals, index, &hist, delivered),
                Ok(Reply::Fatal(e)) => return Err(e),
                Ok(_) => {}
                Err(_) => return Err("engine threads did not report the trial's results".into()),
            }
        }
        let (mut hist, _) = empty();
        let mut r = TrialReport {
            rate: spec.rate,
            duration: spec.duration,
            scheduled: schedule.total(),
            sent: 0,
            expected: 0,
            tally: Tally::default(),
            lost: 0,
            latency: Percentiles::default(),
            hist: latency_histogram(),
            timeline: Vec::new(),
            dropped: Failures::default(),
            wall: since.elapsed(),
            active: spec.duration,
            behind,
            send_lag: Percentiles::default(),
        };
        let mut lag = latency_histogram();
        let mut last_ns = 0;
        for w in &parts {
            r.sent += w.sent;
            r.expected += w.expected;
            r.tally.merge(&w.tally);
            r.dropped.merge(&w.dropped);
            merge_hist(&mut hist, &w.hist);
            merge_hist(&mut lag, &w.lag);
            last_ns = last_ns.max(w.last_delivery_ns);
            let (index, h, d) = &w.tail;
            add_interval(&mut intervals, *index, h, *d);
        }
        r.lost = r.expected.saturating_sub(r.tally.delivered);
        r.latency = Percentiles::of(&hist);
        r.send_lag = Percentiles::of(&lag);
        r.hist = hist;
        r.active = spec
            .duration
            .max(Duration::from_nanos(last_ns.saturating_sub(start_ns)));
        let secs = spec.interval.as_secs_f64();
        r.timeline = intervals
            .iter()
            .enumerate()
            .map(|(i, (h, d))| Point {
                t_s: (i + 1) as f64 * secs,
                delivered: *d,
                per_sec: *d as f64 / secs,
                latency_us: Percentiles::of(h),
            })
            .collect();
        Ok(r)
    }
}

fn add_interval(
    intervals: &mut Vec<(Histogram<u64>, u64)>,
    index: u64,
    hist: &Histogram<u64>,
    delivered: u64,
) {
    let i = index as usize;
    while intervals.len() <= i {
        intervals.push((latency_histogram(), 0));
    }
    merge_hist(&mut intervals[i].0, hist);
    intervals[i].1 += delivered;
}
