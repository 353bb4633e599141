//! Unit tests for the directory: channels and their loops, history order and budgets, TTL
//! expiry, pages, and the seam between history and live messages across loops.

use std::sync::Arc;

use super::*;
use crate::proto::deflate::DeflatableFrame;

/// A "frame" of the single byte `b` (the directory never looks inside).
fn frame(b: u8) -> Broadcast {
    sized(b, 1)
}

/// Frame bytes `[tag; len]`.
fn sized(tag: u8, len: usize) -> Broadcast {
    Arc::new(DeflatableFrame::new(Arc::new(vec![tag; len])))
}

/// What history is charged for a frame of `len` bytes.
fn cost(len: usize) -> usize {
    len + FRAME_OVERHEAD
}

/// Records `frame` on `shared` as loop 0's next message.
fn record(d: &mut Directory, shared: &Shared, frame: &Broadcast) -> usize {
    let seq = d.next_seq + 1; // any increasing number will do for loop 0
    d.record(shared, 0, seq, frame).0
}

/// The first byte of each history frame a joiner on loop 0 would get.
fn tags(d: &Directory, shared: &Shared) -> Vec<u8> {
    let (frames, _) = d.history_for(shared, 0, &[u64::MAX], usize::MAX);
    frames.iter().map(|f| f.plain()[0]).collect()
}

#[test]
fn loops_are_added_and_removed_with_their_first_and_last_subscriber() {
    let now = Instant::now();
    let mut d = Directory::default();
    let a = d.join("room", 0, true).unwrap();
    let b = d.join("room", 3, true).unwrap();
    d.join("room", 3, false).unwrap();
    assert!(Arc::ptr_eq(&a, &b));
    assert_eq!(a.loops(), 0b1001);
    assert_eq!(d.subscribers(&a), 3);
    d.leave(&a, 3, false, now);
    assert_eq!(a.loops(), 0b1001);
    d.leave(&a, 3, true, now);
    assert_eq!(a.loops(), 0b0001);
    d.leave(&a, 0, true, now);
    assert_eq!((a.loops(), d.channel_count()), (0, 0));
    assert!(d.lookup("room").is_none());
    // Created again: a new channel, which the old reference does not reach.
    let again = d.join("room", 1, true).unwrap();
    assert_ne!(again.uid, a.uid);
    assert_eq!(d.subscribers(&a), 0);
}

#[test]
fn without_history_publishing_to_nobody_creates_nothing() {
    let mut d = Directory::default();
    assert!(
        d.channel_for_publish("x", Instant::now())
            .unwrap()
            .is_none()
    );
    assert_eq!(d.channel_count(), 0);
}

#[test]
fn history_keeps_the_last_n_frames_in_order() {
    let now = Instant::now();
    let mut d = Directory::new(3, Duration::from_secs(60), usize::MAX);
    let ch = d.channel_for_publish("feed", now).unwrap().unwrap();
    for b in 0..5 {
        record(&mut d, &ch, &frame(b));
    }
    assert_eq!(tags(&d, &ch), [2, 3, 4]);
    let info = ChannelInfo {
        name: "feed".into(),
        subscribers: 0,
        history: 3,
    };
    assert_eq!(d.info("feed"), Some(info));
}

#[test]
fn history_memory_drops_the_oldest_frames_of_any_channel_first() {
    let now = Instant::now();
    // Room for two channels with one 4-byte frame each, not for a third frame.
    let one = channel_overhead("a") + cost(4);
    let mut d = Directory::new(10, Duration::from_secs(60), 2 * one + cost(4) - 1);
    let a = d.channel_for_publish("a", now).unwrap().unwrap();
    let b = d.channel_for_publish("b", now).unwrap().unwrap();
    d.join("a", 0, true).unwrap(); // a has a subscriber, b does not
    assert_eq!(record(&mut d, &a, &sized(1, 4)), 0);
    assert_eq!(record(&mut d, &b, &sized(2, 4)), 0);
    assert_eq!(d.history_bytes(), 2 * one);
    // Over the budget: a's frame 1, the oldest, goes; a stays (it has a subscriber).
    assert_eq!(record(&mut d, &a, &sized(3, 4)), 1);
    assert_eq!((tags(&d, &a), tags(&d, &b)), (vec![3], vec![2]));
    assert_eq!(d.history_bytes(), 2 * one);
    // b's only frame goes next, and b with it (and its overhead).
    assert_eq!(record(&mut d, &a, &sized(4, 4)), 1);
    assert_eq!(tags(&d, &a), [3, 4]);
    assert!(d.lookup("b").is_none());
    assert_eq!(d.history_bytes(), one + cost(4));
    // A frame bigger than the whole budget is not kept at all, and takes the rest with it.
    assert_eq!(record(&mut d, &a, &sized(5, 2 * one)), 3);
    assert_eq!(tags(&d, &a), Vec::<u8>::new());
    assert_eq!(d.history_bytes(), 0);
    assert!(d.lookup("a").is_some(), "a channel with a subscriber stays");
}

#[test]
fn history_memory_is_given_back_when_frames_or_channels_go() {
    let now = Instant::now();
    let ttl = Duration::from_secs(1);
    let mut d = Directory::new(2, ttl, usize::MAX);
    let ch = d.channel_for_publish("feed", now).unwrap().unwrap();
    for (tag, len) in [(1, 5), (2, 6), (3, 7)] {
        record(&mut d, &ch, &sized(tag, len)); // the per-channel limit drops frame 1
    }
    let held = channel_overhead("feed") + cost(6) + cost(7);
    assert_eq!((tags(&d, &ch), d.history_bytes()), (vec![2, 3], held));
    d.expire(now + ttl);
    assert_eq!((d.channel_count(), d.history_bytes()), (0, 0));
}

#[test]
fn a_flood_of_channel_names_is_bounded_by_the_history_budget() {
    let now = Instant::now();
    let budget = 100 * (channel_overhead("c00000") + cost(2));
    let mut d = Directory::new(1, Duration::from_secs(300), budget);
    for i in 0..10_000 {
        let ch = d
            .channel_for_publish(&format!("c{i:05}"), now)
            .unwrap()
            .unwrap();
        record(&mut d, &ch, &sized(1, 2));
    }
    // Only the newest 100 channels are left, and the queues behind them shrank with them.
    assert_eq!(d.channel_count(), 100);
    assert_eq!(d.history_bytes(), budget);
    assert!(d.lookup("c09899").is_none());
    assert!(d.lookup("c09900").is_some());
    d.expire(now);
    assert!(d.expiries.len() <= 2 * 100 + 1024, "{}", d.expiries.len());
    assert!(d.recorded.len() <= 2 * 100 + 1024, "{}", d.recorded.len());
}

#[test]
fn max_channels_refuses_a_new_channel_but_not_an_existing_one() {
    let now = Instant::now();
    let mut d = Directory::new(1, Duration::from_secs(60), usize::MAX).with_max_channels(2);
    let a = d.join("a", 0, true).unwrap();
    d.channel_for_publish("b", now).unwrap().unwrap();
    assert_eq!(d.join("c", 0, true).map(|_| ()), Err(TooManyChannels));
    assert_eq!(
        d.channel_for_publish("c", now).map(|_| ()),
        Err(TooManyChannels)
    );
    assert_eq!(d.join("a", 1, true).map(|s| s.uid), Ok(a.uid));
    assert!(d.channel_for_publish("b", now).unwrap().is_some());
}

#[test]
fn pages_go_through_the_names_in_order() {
    let mut d = Directory::default();
    for name in ["b", "d", "a", "c"] {
        d.join(name, 0, true).unwrap();
    }
    let names = |after, limit| {
        let (page, more) = d.page(after, limit);
        (page.into_iter().map(|c| c.name).collect::<Vec<_>>(), more)
    };
    assert_eq!(
        names(None, 10),
        (vec!["a".into(), "b".into(), "c".into(), "d".into()], false)
    );
    assert_eq!(names(None, 2), (vec!["a".into(), "b".into()], true));
    assert_eq!(names(Some("b"), 2), (vec!["c".into(), "d".into()], false));
    assert_eq!(names(Some("bb"), 10), (vec!["c".into(), "d".into()], false));
    assert_eq!(names(Some("d"), 10), (Vec::<String>::new(), false));
}

#[test]
fn the_eviction_queue_stays_bounded_by_the_frames_held() {
    let mut d = Directory::new(1, Duration::from_secs(60), usize::MAX);
    let ch = d
        .channel_for_publish("feed", Instant::now())
        .unwrap()
        .unwrap();
    for i in 0..100_000u32 {
        record(&mut d, &ch, &sized(i as u8, 1));
    }
    assert_eq!(d.history_frames, 1);
    assert!(d.recorded.len() <= 2 + 1024, "{}", d.recorded.len());
    // What is left in the queue still finds the live frame when the budget shrinks.
    d.max_history_bytes = 0;
    record(&mut d, &ch, &sized(9, 1));
    assert_eq!((d.history_frames, d.history_bytes()), (0, 0));
}

#[test]
fn history_within_a_budget_keeps_the_newest_frames_that_fit() {
    let mut d = Directory::new(4, Duration::from_secs(60), usize::MAX);
    let ch = d
        .channel_for_publish("feed", Instant::now())
        .unwrap()
        .unwrap();
    // Frames of 1, 2, 3 and 4 bytes, each filled with its own length.
    for len in 1..=4u8 {
        record(&mut d, &ch, &sized(len, len as usize));
    }
    let within = |budget| {
        let (frames, skipped) = d.history_for(&ch, 0, &[u64::MAX], budget);
        (
            frames.iter().map(|f| f.plain()[0]).collect::<Vec<_>>(),
            skipped,
        )
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
}

#[test]
fn a_joiner_gets_what_arrived_and_not_what_is_on_its_way() {
    let now = Instant::now();
    let mut d = Directory::new(10, Duration::from_secs(60), usize::MAX);
    let ch = d.join("feed", 0, true).unwrap(); // loop 0 has a subscriber
    d.record(&ch, 0, 1, &frame(1)); // loop 0's own message: no hand-off
    d.join("feed", 1, true).unwrap(); // loop 1 gets a subscriber
    // Loop 0's messages 2 and 3 are recorded with loop 1 in their mask: handed to loop 1.
    assert_eq!(d.record(&ch, 0, 2, &frame(2)).1, 0b11);
    d.record(&ch, 0, 3, &frame(3));
    // Loop 2 never had subscribers: everything is history for a joiner there.
    let joiner_on = |lp: usize, received: &[u64]| {
        let (frames, _) = d.history_for(&ch, lp, received, usize::MAX);
        frames.iter().map(|f| f.plain()[0]).collect::<Vec<_>>()
    };
    assert_eq!(joiner_on(2, &[0, 0, 0]), [1, 2, 3]);
    // Loop 1 has received message 2 but not yet 3: 3 will arrive live, so it is left out.
    assert_eq!(joiner_on(1, &[2, 0, 0]), [1, 2]);
    assert_eq!(joiner_on(1, &[3, 0, 0]), [1, 2, 3]);
    // Loop 0, the origin: its own messages are all history for it.
    assert_eq!(joiner_on(0, &[0, 0, 0]), [1, 2, 3]);
    d.leave(&ch, 1, true, now);
    assert_eq!(d.record(&ch, 0, 4, &frame(4)).1, 0b01);
}

#[test]
fn a_channel_with_history_outlives_its_subscribers_by_the_ttl() {
    let t0 = Instant::now();
    let ttl = Duration::from_secs(60);
    let mut d = Directory::new(2, ttl, usize::MAX);
    let ch = d.join("feed", 0, true).unwrap();
    record(&mut d, &ch, &frame(9));
    d.leave(&ch, 0, true, t0);
    assert_eq!(d.next_expiry(), Some(t0 + ttl));
    d.expire(t0 + ttl - Duration::from_secs(1));
    assert!(d.lookup("feed").is_some());

    // A subscriber arriving in time keeps it past the first expiry.
    let again = d.join("feed", 0, true).unwrap();
    assert_eq!(again.uid, ch.uid);
    d.expire(t0 + ttl);
    assert!(d.lookup("feed").is_some());
    let t1 = t0 + ttl + Duration::from_secs(5);
    d.leave(&ch, 0, true, t1);
    d.expire(t1 + ttl);
    assert!(d.lookup("feed").is_none());
    assert_eq!(d.channel_count(), 0);
}

#[test]
fn an_early_expiry_entry_does_not_cut_a_later_ttl_short() {
    // Created by a publish at t0 (entry for t0+ttl); a subscriber comes and goes, leaving
    // at t0+2: it must live until t0+2+ttl, not die at t0+ttl.
    let t0 = Instant::now();
    let ttl = Duration::from_secs(3);
    let mut d = Directory::new(1, ttl, usize::MAX);
    let ch = d.channel_for_publish("feed", t0).unwrap().unwrap();
    record(&mut d, &ch, &frame(1));
    d.join("feed", 0, true).unwrap();
    d.leave(&ch, 0, true, t0 + Duration::from_secs(2));
    d.expire(t0 + ttl + Duration::from_millis(300));
    assert!(d.lookup("feed").is_some());
    d.expire(t0 + Duration::from_secs(2) + ttl);
    assert!(d.lookup("feed").is_none());
}

#[test]
fn a_stale_expiry_does_not_remove_a_recreated_channel() {
    let t0 = Instant::now();
    let ttl = Duration::from_secs(10);
    let mut d = Directory::new(1, ttl, usize::MAX);
    let first = d.channel_for_publish("a", t0).unwrap().unwrap();
    record(&mut d, &first, &frame(1));
    d.expire(t0 + ttl); // forgotten
    assert!(d.lookup("a").is_none());
    let again = d.channel_for_publish("a", t0 + ttl).unwrap().unwrap();
    assert_eq!(again.slot, first.slot, "slab slot reused");
    record(&mut d, &again, &frame(2));
    d.expire(t0 + ttl + Duration::from_secs(1));
    assert!(d.lookup("a").is_some());
}
