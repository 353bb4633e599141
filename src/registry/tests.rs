//! Unit tests for the registry: subscription slots, history order and budgets, TTL expiry.

use std::sync::Arc;

use super::*;

fn frame(b: u8) -> SharedFrame {
    Arc::new(vec![b])
}

#[test]
fn subscribe_and_leave_keep_slots_consistent() {
    let now = Instant::now();
    let mut r = Registry::default();
    let a = r.subscribe("room", 10).unwrap();
    let b = r.subscribe("room", 11).unwrap();
    let c = r.subscribe("room", 12).unwrap();
    let other = r.subscribe("other", 13).unwrap();
    assert_eq!(a.channel, b.channel);
    assert_ne!(a.channel, other.channel);
    assert_eq!((a.slot, b.slot, c.slot), (0, 1, 2));

    // 12 moves into a's slot.
    assert_eq!(r.unsubscribe(a, now), Some(12));
    assert_eq!(r.subscribers(c.channel), &[12, 11]);
    let c = Subscription { slot: a.slot, ..c };
    // Removing the last slot moves nobody.
    assert_eq!(r.unsubscribe(b, now), None);
    assert_eq!(r.unsubscribe(c, now), None);
    assert_eq!(r.lookup("room"), None);
    assert_eq!(r.channel_count(), 1);
    assert_eq!(r.subscribers(other.channel), &[13]);
}

#[test]
fn without_history_publishing_to_nobody_creates_nothing() {
    let mut r = Registry::default();
    assert_eq!(r.channel_for_publish("x", Instant::now()), Ok(None));
    assert_eq!(r.channel_count(), 0);
}

#[test]
fn history_keeps_the_last_n_frames_in_order() {
    let now = Instant::now();
    let mut r = Registry::new(3, Duration::from_secs(60), usize::MAX);
    let ch = r.channel_for_publish("feed", now).unwrap().unwrap();
    for b in 0..5 {
        r.record(ch, &frame(b));
    }
    let got: Vec<u8> = r.history(ch).map(|f| f[0]).collect();
    assert_eq!(got, [2, 3, 4]);
    assert_eq!(
        r.info(ch),
        Some(ChannelInfo {
            name: "feed",
            subscribers: 0,
            history: 3
        })
    );
}

/// Frame bytes `[tag; len]`.
fn sized(tag: u8, len: usize) -> SharedFrame {
    Arc::new(vec![tag; len])
}

fn tags(r: &Registry, ch: usize) -> Vec<u8> {
    r.history(ch).map(|f| f[0]).collect()
}

/// What history is charged for a frame of `len` bytes.
fn cost(len: usize) -> usize {
    len + FRAME_OVERHEAD
}

#[test]
fn history_memory_drops_the_oldest_frames_of_any_channel_first() {
    let now = Instant::now();
    // Room for two channels with one 4-byte frame each, not for a third frame.
    let one = channel_overhead("a") + cost(4);
    let mut r = Registry::new(10, Duration::from_secs(60), 2 * one + cost(4) - 1);
    let a = r.channel_for_publish("a", now).unwrap().unwrap();
    let b = r.channel_for_publish("b", now).unwrap().unwrap();
    r.subscribe("a", 7).unwrap(); // a has a subscriber, b does not
    assert_eq!(r.record(a, &sized(1, 4)), 0);
    assert_eq!(r.record(b, &sized(2, 4)), 0);
    assert_eq!(r.history_bytes(), 2 * one);
    // Over the budget: a's frame 1, the oldest, goes; a stays (it has a subscriber).
    assert_eq!(r.record(a, &sized(3, 4)), 1);
    assert_eq!((tags(&r, a), tags(&r, b)), (vec![3], vec![2]));
    assert_eq!(r.history_bytes(), 2 * one);
    // b's only frame goes next, and b with it (and its overhead): nobody is on it and it has
    // nothing left.
    assert_eq!(r.record(a, &sized(4, 4)), 1);
    assert_eq!(tags(&r, a), [3, 4]);
    assert_eq!(r.lookup("b"), None);
    assert_eq!(r.history_bytes(), one + cost(4));
    // A frame bigger than the whole budget is not kept at all, and takes the rest with it.
    assert_eq!(r.record(a, &sized(5, 2 * one)), 3);
    assert_eq!(tags(&r, a), Vec::<u8>::new());
    assert_eq!(r.history_bytes(), 0);
    assert_eq!(r.lookup("a"), Some(a), "a channel with a subscriber stays");
}

#[test]
fn history_memory_is_given_back_when_frames_or_channels_go() {
    let now = Instant::now();
    let ttl = Duration::from_secs(1);
    let mut r = Registry::new(2, ttl, usize::MAX);
    let ch = r.channel_for_publish("feed", now).unwrap().unwrap();
    for (tag, len) in [(1, 5), (2, 6), (3, 7)] {
        r.record(ch, &sized(tag, len)); // the per-channel limit drops frame 1
    }
    let held = channel_overhead("feed") + cost(6) + cost(7);
    assert_eq!((tags(&r, ch), r.history_bytes()), (vec![2, 3], held));
    r.expire(now + ttl);
    assert_eq!((r.channel_count(), r.history_bytes()), (0, 0));
}

#[test]
fn a_flood_of_channel_names_is_bounded_by_the_history_budget() {
    let now = Instant::now();
    let budget = 100 * (channel_overhead("c00000") + cost(2));
    let mut r = Registry::new(1, Duration::from_secs(300), budget);
    for i in 0..10_000 {
        let ch = r
            .channel_for_publish(&format!("c{i:05}"), now)
            .unwrap()
            .unwrap();
        r.record(ch, &sized(1, 2));
    }
    // Only the newest 100 channels are left, and the queues behind them shrank with them.
    assert_eq!(r.channel_count(), 100);
    assert_eq!(r.history_bytes(), budget);
    assert_eq!(r.lookup("c09899"), None);
    assert!(r.lookup("c09900").is_some());
    r.expire(now);
    assert!(r.expiries.len() <= 2 * 100 + 1024, "{}", r.expiries.len());
    assert!(r.recorded.len() <= 2 * 100 + 1024, "{}", r.recorded.len());
}

#[test]
fn max_channels_refuses_a_new_channel_but_not_an_existing_one() {
    let now = Instant::now();
    let mut r = Registry::new(1, Duration::from_secs(60), usize::MAX).with_max_channels(2);
    let a = r.subscribe("a", 1).unwrap();
    r.channel_for_publish("b", now).unwrap().unwrap();
    assert_eq!(r.subscribe("c", 2), Err(TooManyChannels));
    assert_eq!(r.channel_for_publish("c", now), Err(TooManyChannels));
    assert_eq!(r.subscribe("a", 3).map(|s| s.channel), Ok(a.channel));
    assert_eq!(
        r.channel_for_publish("b", now).map(|c| c.is_some()),
        Ok(true)
    );
}

#[test]
fn pages_go_through_the_names_in_order() {
    let mut r = Registry::default();
    for (key, name) in ["b", "d", "a", "c"].into_iter().enumerate() {
        r.subscribe(name, key).unwrap();
    }
    let names = |after| r.page(after).map(|c| c.name).collect::<Vec<_>>();
    assert_eq!(names(None), ["a", "b", "c", "d"]);
    assert_eq!(names(Some("b")), ["c", "d"]);
    assert_eq!(
        names(Some("bb")),
        ["c", "d"],
        "after a name that does not exist"
    );
    assert_eq!(names(Some("d")), Vec::<&str>::new());
}

#[test]
fn the_eviction_queue_stays_bounded_by_the_frames_held() {
    let mut r = Registry::new(1, Duration::from_secs(60), usize::MAX);
    let ch = r
        .channel_for_publish("feed", Instant::now())
        .unwrap()
        .unwrap();
    for i in 0..100_000u32 {
        r.record(ch, &sized(i as u8, 1));
    }
    assert_eq!(r.history_frames, 1);
    assert!(r.recorded.len() <= 2 + 1024, "{}", r.recorded.len());
    // What is left in the queue still finds the live frame when the budget shrinks.
    r.max_history_bytes = 0;
    r.record(ch, &sized(9, 1));
    assert_eq!((r.history_frames, r.history_bytes()), (0, 0));
}

#[test]
fn history_within_a_budget_keeps_the_newest_frames_that_fit() {
    let mut r = Registry::new(4, Duration::from_secs(60), usize::MAX);
    let ch = r
        .channel_for_publish("feed", Instant::now())
        .unwrap()
        .unwrap();
    // Frames of 1, 2, 3 and 4 bytes, each filled with its own length.
    for len in 1..=4u8 {
        r.record(ch, &Arc::new(vec![len; len as usize]));
    }
    let within = |budget| {
        let (frames, skipped) = r.history_within(ch, budget);
        (frames.map(|f| f[0]).collect::<Vec<_>>(), skipped)
    };
    assert_eq!(within(usize::MAX), (vec![1, 2, 3, 4], 0));
    assert_eq!(within(10), (vec![1, 2, 3, 4], 0));
    assert_eq!(within(9), (vec![2, 3, 4], 1));
    assert_eq!(within(7), (vec![3, 4], 2));
    assert_eq!(
        within(6),
        (vec![4], 3),
        "the newest that fit, not any that fit"
    );
    assert_eq!(within(3), (vec![], 4));
    assert_eq!(within(0), (vec![], 4));
    assert_eq!(r.history_within(ch + 1, 100).1, 0, "unknown channel");
}

#[test]
fn a_channel_with_history_outlives_its_subscribers_by_the_ttl() {
    let t0 = Instant::now();
    let ttl = Duration::from_secs(60);
    let mut r = Registry::new(2, ttl, usize::MAX);
    let s = r.subscribe("feed", 1).unwrap();
    r.record(s.channel, &frame(9));
    r.unsubscribe(s, t0);
    assert_eq!(r.next_expiry(), Some(t0 + ttl));
    r.expire(t0 + ttl - Duration::from_secs(1));
    assert_eq!(r.lookup("feed"), Some(s.channel));

    // A subscriber arriving in time keeps it past the first expiry.
    let s2 = r.subscribe("feed", 2).unwrap();
    r.expire(t0 + ttl);
    assert_eq!(r.lookup("feed"), Some(s2.channel));
    let t1 = t0 + ttl + Duration::from_secs(5);
    r.unsubscribe(s2, t1);
    r.expire(t1 + ttl);
    assert_eq!(r.lookup("feed"), None);
    assert_eq!(r.channel_count(), 0);
}

#[test]
fn an_early_expiry_entry_does_not_cut_a_later_ttl_short() {
    // Created by a publish at t0 (entry for t0+ttl); a subscriber comes and goes, leaving
    // at t0+2: it must live until t0+2+ttl, not die at t0+ttl.
    let t0 = Instant::now();
    let ttl = Duration::from_secs(3);
    let mut r = Registry::new(1, ttl, usize::MAX);
    let ch = r.channel_for_publish("feed", t0).unwrap().unwrap();
    r.record(ch, &frame(1));
    let s = r.subscribe("feed", 7).unwrap();
    r.unsubscribe(s, t0 + Duration::from_secs(2));
    r.expire(t0 + ttl + Duration::from_millis(300));
    assert_eq!(r.lookup("feed"), Some(ch));
    r.expire(t0 + Duration::from_secs(2) + ttl);
    assert_eq!(r.lookup("feed"), None);
}

#[test]
fn a_stale_expiry_does_not_remove_a_recreated_channel() {
    let t0 = Instant::now();
    let ttl = Duration::from_secs(10);
    let mut r = Registry::new(1, ttl, usize::MAX);
    let first = r.channel_for_publish("a", t0).unwrap().unwrap();
    r.record(first, &frame(1));
    r.expire(t0 + ttl); // forgotten
    assert_eq!(r.lookup("a"), None);
    let again = r.channel_for_publish("a", t0 + ttl).unwrap().unwrap();
    assert_eq!(again, first, "slab id reused");
    r.record(again, &frame(2));
    r.expire(t0 + ttl + Duration::from_secs(1));
    assert_eq!(r.lookup("a"), Some(again));
}
