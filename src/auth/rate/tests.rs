//! Unit tests for the token bucket: the burst, refill at the rate, the cap after idling, exact
//! arithmetic for rates that do not divide a second, Instants far apart, and a property test
//! that a greedy sender gets exactly `burst + ⌊elapsed × rate⌋` messages however time is cut.

use super::*;
use proptest::prelude::*;

fn nz(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap()
}

const MS: Duration = Duration::from_millis(1);
const YEAR: Duration = Duration::from_secs(365 * 24 * 3600);

/// Takes until refused; how many were taken.
fn drain(b: &mut Bucket, now: Instant) -> u64 {
    let mut n = 0;
    while b.try_take(now) {
        n += 1;
    }
    n
}

#[test]
fn burst_then_refill_at_the_rate() {
    let t0 = Instant::now();
    let mut b = Bucket::new(nz(10), nz(5), t0);
    assert_eq!(drain(&mut b, t0), 5);
    assert!(!b.try_take(t0 + 99 * MS));
    assert!(b.try_take(t0 + 100 * MS));
    assert!(!b.try_take(t0 + 100 * MS));
    // Half a second later: five more (the 99 ms refusal lost nothing), and after that only
    // the burst, however long the wait.
    assert!(!b.try_take(t0 + 199 * MS));
    assert_eq!(drain(&mut b, t0 + 600 * MS), 5);
    assert_eq!(drain(&mut b, t0 + 60_000 * MS), 5);
}

#[test]
fn never_more_than_the_burst() {
    let t0 = Instant::now();
    let mut b = Bucket::new(nz(1000), nz(3), t0);
    assert_eq!(b.available(t0 + 10 * YEAR), 3);
    assert_eq!(drain(&mut b, t0 + Duration::from_secs(60)), 3);
    assert_eq!(b.available(t0 + Duration::from_secs(60)), 0);
}

#[test]
fn long_idle_refills_to_the_burst_only() {
    let t0 = Instant::now();
    let mut b = Bucket::new(nz(u32::MAX), nz(u32::MAX), t0);
    assert!(b.try_take(t0));
    assert_eq!(b.available(t0 + 100 * YEAR), u32::MAX);
    let mut small = Bucket::new(nz(1), nz(2), t0);
    assert_eq!(drain(&mut small, t0), 2);
    assert_eq!(drain(&mut small, t0 + 100 * YEAR), 2);
    assert_eq!(
        drain(&mut small, t0 + 100 * YEAR + Duration::from_secs(1)),
        1
    );
}

#[test]
fn a_third_of_a_second_is_exact() {
    let t0 = Instant::now();
    let mut b = Bucket::new(nz(3), nz(1), t0);
    assert!(b.try_take(t0));
    // 10⁹ / 3 = 333 333 333.3… ns: one nanosecond short is still short.
    assert!(!b.try_take(t0 + Duration::from_nanos(333_333_333)));
    assert_eq!(
        b.wait(t0 + Duration::from_nanos(333_333_333)),
        Duration::from_nanos(1)
    );
    assert!(b.try_take(t0 + Duration::from_nanos(333_333_334)));
    // Three per second for a day, asked at every 1/3 s rounded down to the nanosecond (so the
    // gaps are uneven): exactly 3 × 86 400, no message gained or lost.
    let mut b = Bucket::new(nz(3), nz(2), t0);
    assert_eq!(drain(&mut b, t0), 2);
    let mut taken = 0;
    for i in 1..=3 * 86_400u64 {
        taken += drain(&mut b, t0 + Duration::from_nanos(i * 1_000_000_000 / 3));
    }
    assert_eq!(taken, 3 * 86_400);
}

#[test]
fn instants_far_apart() {
    let t0 = Instant::now();
    let mut b = Bucket::new(nz(7), nz(10), t0);
    assert_eq!(drain(&mut b, t0), 10);
    let later = t0 + 50 * YEAR;
    assert_eq!(drain(&mut b, later), 10);
    assert_eq!(drain(&mut b, later + Duration::from_secs(1)), 7);
    // Half-messages carry over exactly, fifty years from the start.
    assert_eq!(drain(&mut b, later + 1500 * MS), 3);
    assert_eq!(drain(&mut b, later + 2000 * MS), 4);
}

#[test]
fn wait_says_when() {
    let t0 = Instant::now();
    let mut b = Bucket::new(nz(4), nz(2), t0);
    assert_eq!(b.wait(t0), Duration::ZERO);
    drain(&mut b, t0);
    assert_eq!(b.wait(t0), Duration::from_millis(250));
    assert_eq!(b.wait(t0 + 100 * MS), Duration::from_millis(150));
    assert!(!b.try_take(t0 + 249 * MS) && b.try_take(t0 + 250 * MS));
}

#[test]
fn time_going_backwards_earns_nothing() {
    let t0 = Instant::now();
    let later = t0 + Duration::from_secs(10);
    let mut b = Bucket::new(nz(1), nz(1), later);
    assert!(b.try_take(later));
    assert!(!b.try_take(t0));
    assert!(!b.try_take(later + 999 * MS));
    assert!(b.try_take(later + 1000 * MS));
}

#[test]
fn a_few_words() {
    assert!(std::mem::size_of::<Bucket>() <= 32);
}

proptest! {
    #[test]
    fn greedy_sender_gets_exactly_the_rate(
        rate in 1u32..=1_000_000,
        burst in 2u32..=1000,
        steps in proptest::collection::vec(0u64..=u64::MAX, 1..200),
    ) {
        // Steps short enough that a drained bucket never reaches the cap, so nothing is lost
        // to it and the count must be exact.
        let max_step = u64::from(burst - 1) * CREDITS_PER_MESSAGE / u64::from(rate);
        let t0 = Instant::now();
        let mut b = Bucket::new(nz(rate), nz(burst), t0);
        let (mut elapsed, mut taken) = (0u64, drain(&mut b, t0));
        for step in steps {
            elapsed += step % (max_step + 1);
            taken += drain(&mut b, t0 + Duration::from_nanos(elapsed));
        }
        let earned = u128::from(elapsed) * u128::from(rate) / u128::from(CREDITS_PER_MESSAGE);
        prop_assert_eq!(u128::from(taken), u128::from(burst) + earned);
    }

    #[test]
    fn never_more_than_burst_plus_rate(
        rate in 1u32..=1000,
        burst in 1u32..=100,
        steps in proptest::collection::vec((0u64..=5_000_000_000, 0u32..=50), 1..100),
    ) {
        let t0 = Instant::now();
        let mut b = Bucket::new(nz(rate), nz(burst), t0);
        let (mut elapsed, mut taken) = (0u64, 0u64);
        for (step, tries) in steps {
            elapsed += step;
            let now = t0 + Duration::from_nanos(elapsed);
            taken += (0..tries).filter(|_| b.try_take(now)).count() as u64;
            let allowed = u128::from(burst)
                + u128::from(elapsed) * u128::from(rate) / u128::from(CREDITS_PER_MESSAGE);
            prop_assert!(u128::from(taken) <= allowed);
            prop_assert!(b.available(now) <= burst);
        }
    }
}
