//! Unit tests for the outbound queue: partial writes, urgent and pinned frames, pong
//! coalescing, and what the queue is charged.

use std::sync::Arc;

use super::*;
use crate::broadcast::{MAX_IOVECS, encode};
use crate::proto::frame::OpCode;

fn frame(bytes: &[u8]) -> SharedFrame {
    Arc::new(bytes.to_vec())
}

fn pending(q: &OutQueue) -> Vec<u8> {
    let mut iov = [IoSlice::new(&[]); MAX_IOVECS];
    let n = q.iovecs(&mut iov);
    iov[..n].iter().flat_map(|s| s.iter().copied()).collect()
}

#[test]
fn one_encoding_is_shared_by_every_queue() {
    let f = encode(OpCode::Text, b"hi");
    let mut queues: Vec<OutQueue> = (0..3).map(|_| OutQueue::default()).collect();
    for q in &mut queues {
        q.push(f.clone());
    }
    assert_eq!(Arc::strong_count(&f), 4);
    for q in &queues {
        assert_eq!(pending(q), [0x81, 2, b'h', b'i']);
        assert_eq!(q.queued_bytes(), 4);
        assert_eq!(q.held_bytes(), 4 + SHARED_OVERHEAD);
    }
}

#[test]
fn advance_tracks_partial_frames() {
    let mut q = OutQueue::default();
    q.push(frame(b"abc"));
    q.push(frame(b"de"));
    q.advance(2);
    assert_eq!(pending(&q), b"cde");
    assert_eq!(q.queued_bytes(), 3);
    assert_eq!(
        q.held_bytes(),
        5 + 2 * SHARED_OVERHEAD,
        "a started frame is still held"
    );
    q.advance(2);
    assert_eq!(pending(&q), b"e");
    assert_eq!(q.held_bytes(), 2 + SHARED_OVERHEAD);
    q.advance(1);
    assert!(q.is_empty());
    assert_eq!((q.queued_bytes(), q.held_bytes()), (0, 0));
}

#[test]
fn what_the_loop_made_is_charged_its_capacity_and_headers() {
    let mut q = OutQueue::default();
    let mut response = Vec::with_capacity(100);
    response.extend_from_slice(b"HTTP/1.1 200 OK\r\n\r\n");
    q.push_pinned(Arc::new(response));
    q.push_urgent(frame(&[0x8a, 0]));
    assert_eq!(q.queued_bytes(), 19 + 2);
    assert_eq!(q.held_bytes(), 100 + 2 + 2 * OWNED_OVERHEAD);
}

#[test]
fn urgent_frames_jump_the_queue_but_not_a_partial_frame() {
    let mut q = OutQueue::default();
    q.push(frame(b"abc"));
    q.push_urgent(frame(b"P"));
    assert_eq!(pending(&q), b"Pabc");
    q.advance(2); // "P" and "a" written: "bc" is a partial frame now
    q.push(frame(b"xy"));
    q.push_urgent(frame(b"Q"));
    assert_eq!(pending(&q), b"bcQxy");
    assert_eq!(q.queued_bytes(), 5);
}

#[test]
fn urgent_frames_keep_their_order_and_never_pass_pinned_ones() {
    let mut q = OutQueue::default();
    q.push_pinned(frame(b"101 "));
    q.push(frame(b"hist "));
    q.push_urgent(frame(b"P1 "));
    q.push_urgent(frame(b"P2 "));
    q.push(frame(b"live"));
    assert_eq!(pending(&q), b"101 P1 P2 hist live");
    // Once the pinned and urgent frames are written, a new urgent one goes first again.
    q.advance(10);
    q.push_urgent(frame(b"P3 "));
    assert_eq!(pending(&q), b"P3 hist live");
}

#[test]
fn a_waiting_pong_is_replaced_by_a_newer_one() {
    let mut q = OutQueue::default();
    q.push(frame(b"data "));
    assert!(!q.push_pong(frame(b"pong1 "), true));
    for i in 2..1000 {
        assert!(q.push_pong(frame(format!("pong{i} ").as_bytes()), true));
    }
    assert_eq!(pending(&q), b"pong999 data ");
    assert_eq!(q.len(), 2);
    assert_eq!(q.queued_bytes(), 13);
    assert_eq!(q.held_bytes(), 5 + SHARED_OVERHEAD + 8 + OWNED_OVERHEAD);
}

#[test]
fn pongs_queue_in_order_when_not_coalesced() {
    let mut q = OutQueue::default();
    q.push(frame(b"data "));
    assert!(!q.push_pong(frame(b"p1 "), false));
    assert!(!q.push_pong(frame(b"p2 "), false));
    assert_eq!(pending(&q), b"p1 p2 data ");
    // Coalescing later replaces the newest one still waiting.
    assert!(q.push_pong(frame(b"p3 "), true));
    assert_eq!(pending(&q), b"p1 p3 data ");
}

#[test]
fn a_started_pong_goes_out_whole_and_the_next_one_queues_behind_it() {
    let mut q = OutQueue::default();
    q.push(frame(b"data "));
    q.push_pong(frame(b"pong1 "), true);
    q.advance(3); // "pon" written
    assert!(
        !q.push_pong(frame(b"pong2 "), true),
        "the started pong is not replaced"
    );
    assert!(
        q.push_pong(frame(b"pong3 "), true),
        "but the one behind it is"
    );
    assert_eq!(pending(&q), b"g1 pong3 data ");
    // Written through the pong: the next pong is queued afresh, ahead of the data.
    q.advance(9);
    assert!(!q.push_pong(frame(b"pong4 "), true));
    assert_eq!(pending(&q), b"pong4 data ");
}

#[test]
fn a_pong_behind_a_pinned_response_keeps_its_place_when_replaced() {
    let mut q = OutQueue::default();
    q.push_pinned(frame(b"101 "));
    q.push(frame(b"hist "));
    q.push_pong(frame(b"p1 "), true);
    q.push_urgent(frame(b"ping "));
    q.push_pong(frame(b"p2 "), true);
    assert_eq!(pending(&q), b"101 p2 ping hist ");
    q.advance(4);
    q.push_pong(frame(b"p3 "), true);
    assert_eq!(pending(&q), b"p3 ping hist ");
}

#[test]
fn discard_keeps_only_a_started_frame() {
    let mut q = OutQueue::default();
    q.push(frame(b"abc"));
    q.push(frame(b"def"));
    q.discard_unstarted();
    assert!(q.is_empty());
    assert_eq!((q.queued_bytes(), q.held_bytes()), (0, 0));

    q.push(frame(b"abc"));
    q.push(frame(b"def"));
    q.advance(1);
    q.push_pong(frame(b"P"), true);
    q.discard_unstarted();
    assert_eq!(pending(&q), b"bc");
    assert_eq!(q.queued_bytes(), 2);
    assert_eq!(q.held_bytes(), 3 + SHARED_OVERHEAD);
    assert!(
        !q.push_pong(frame(b"Q"), true),
        "the discarded pong is not replaced"
    );
}

#[test]
fn iovecs_are_capped_at_the_slice_length() {
    let mut q = OutQueue::default();
    for _ in 0..MAX_IOVECS + 5 {
        q.push(frame(b"x"));
    }
    let mut iov = [IoSlice::new(&[]); MAX_IOVECS];
    assert_eq!(q.iovecs(&mut iov), MAX_IOVECS);
}

fn gathered(q: &OutQueue) -> (Vec<u8>, Vec<usize>) {
    let mut scratch = Vec::new();
    let mut iov = [IoSlice::new(&[]); MAX_IOVECS];
    let n = q.gather(&mut scratch, &mut iov);
    let bytes = iov[..n].iter().flat_map(|s| s.iter().copied()).collect();
    (bytes, iov[..n].iter().map(|s| s.len()).collect())
}

#[test]
fn gather_joins_runs_of_small_entries_and_keeps_big_ones_apart() {
    let mut q = OutQueue::default();
    let big = vec![b'B'; GATHER_BELOW];
    for piece in [
        &b"ab"[..],
        b"cd",
        &big,
        b"ef",
        &big,
        &big,
        b"gh",
        b"ij",
        b"kl",
    ] {
        q.push(frame(piece));
    }
    q.advance(1); // the first entry is partly written
    let (bytes, lens) = gathered(&q);
    assert_eq!(bytes, pending(&q));
    assert_eq!(lens, [3, GATHER_BELOW, 2, GATHER_BELOW, GATHER_BELOW, 6]);
}

#[test]
fn gather_stops_near_its_limit_and_at_the_slice_count() {
    let mut q = OutQueue::default();
    for _ in 0..(GATHER_LIMIT / 1000 + 10) {
        q.push(frame(&[7; 1000]));
    }
    let (bytes, lens) = gathered(&q);
    assert_eq!(lens.len(), 1);
    assert!((GATHER_LIMIT..GATHER_LIMIT + 1000).contains(&bytes.len()));

    let mut q = OutQueue::default();
    for i in 0..MAX_IOVECS + 5 {
        q.push(frame(&vec![i as u8; GATHER_BELOW]));
    }
    let (bytes, lens) = gathered(&q);
    assert_eq!(lens.len(), MAX_IOVECS);
    assert_eq!(bytes, pending(&q)[..bytes.len()]);
}
