//! A precise wake-up for an event loop: a `timerfd` registered with the loop's `Poll`.
//!
//! `epoll_wait`'s timeout has millisecond granularity, too coarse to send messages on time at
//! thousands per second (and spinning instead would burn loadgen's core and make its CPU figure
//! meaningless). A timerfd armed to the next due instant wakes the loop within microseconds.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};
use rustix::time::{
    Itimerspec, TimerfdClockId, TimerfdFlags, TimerfdTimerFlags, Timespec, timerfd_create,
    timerfd_settime,
};

/// A one-shot monotonic timer that raises a readable event on its token.
pub struct Timer {
    fd: OwnedFd,
    /// The instant (ns since the run's start) it is armed for, if any.
    armed: Option<u64>,
}

impl Timer {
    /// Creates the timer and registers it under `token`.
    pub fn new(registry: &Registry, token: Token) -> io::Result<Timer> {
        let flags = TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC;
        let fd = timerfd_create(TimerfdClockId::Monotonic, flags)?;
        registry.register(&mut SourceFd(&fd.as_raw_fd()), token, Interest::READABLE)?;
        Ok(Timer { fd, armed: None })
    }

    /// Arms the timer to fire at `at_ns`, given that it is `now_ns` (no syscall when it is
    /// already armed for that instant).
    pub fn arm(&mut self, at_ns: u64, now_ns: u64) -> io::Result<()> {
        if self.armed == Some(at_ns) {
            return Ok(());
        }
        // A zero value would disarm the timer: fire after 1 ns at the least.
        let wait = at_ns.saturating_sub(now_ns).max(1);
        let spec = Itimerspec {
            it_interval: Timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: Timespec {
                tv_sec: (wait / 1_000_000_000) as _,
                tv_nsec: (wait % 1_000_000_000) as _,
            },
        };
        timerfd_settime(&self.fd, TimerfdTimerFlags::empty(), &spec)?;
        self.armed = Some(at_ns);
        Ok(())
    }

    /// Acknowledges an expiry (after its event), so the next one raises a new edge.
    pub fn fired(&mut self) {
        let mut ticks = [0u8; 8];
        let _ = rustix::io::read(&self.fd, &mut ticks);
        self.armed = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mio::{Events, Poll};
    use std::time::{Duration, Instant};

    #[test]
    fn fires_on_time_with_sub_millisecond_precision() {
        let mut poll = Poll::new().unwrap();
        let mut timer = Timer::new(poll.registry(), Token(7)).unwrap();
        let mut events = Events::with_capacity(4);
        for wait_us in [300u64, 1500] {
            let start = Instant::now();
            timer.arm(wait_us * 1000, 0).unwrap();
            poll.poll(&mut events, Some(Duration::from_secs(2)))
                .unwrap();
            let took = start.elapsed();
            assert_eq!(events.iter().next().map(|e| e.token()), Some(Token(7)));
            timer.fired();
            assert!(
                took >= Duration::from_micros(wait_us),
                "fired early: {took:?}"
            );
            // Generous on a loaded CI machine; a millisecond-granular sleep would round a
            // 300 µs wait up to at least 1 ms every time.
            assert!(
                took < Duration::from_micros(wait_us) + Duration::from_millis(50),
                "{took:?}"
            );
        }
    }
}
