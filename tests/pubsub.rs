//! Fan-out: every other subscriber of the channel gets each message, same opcode and payload,
//! as one unfragmented unmasked frame; other channels get nothing.

mod common;

use std::io::Write;

use common::*;
use tungstenite::Message;

#[test]
fn message_reaches_every_other_subscriber_and_no_other_channel() {
    let server = TestServer::start(|_| {});
    let url = server.url();
    let mut sender = tungstenite_client(&url, "room");
    let mut subs: Vec<_> = (0..5).map(|_| tungstenite_client(&url, "room")).collect();
    let mut other = tungstenite_client(&url, "other");

    sender.send(Message::text("hello room")).unwrap();
    sender.send(Message::binary(vec![0u8, 1, 2, 255])).unwrap();
    for sub in &mut subs {
        assert_eq!(sub.read().unwrap(), Message::text("hello room"));
        assert_eq!(sub.read().unwrap(), Message::binary(vec![0u8, 1, 2, 255]));
    }
    // A message on "other" is the first thing its subscriber sees, and the sender (excluded
    // from its own messages) sees a later reply from a subscriber first.
    subs[0].send(Message::text("reply")).unwrap();
    assert_eq!(sender.read().unwrap(), Message::text("reply"));
    let mut other_sender = tungstenite_client(&url, "other");
    other_sender.send(Message::text("elsewhere")).unwrap();
    assert_eq!(other.read().unwrap(), Message::text("elsewhere"));
}

#[test]
fn echo_delivers_back_to_the_sender() {
    let server = TestServer::start(|c| c.echo = true);
    let mut a = tungstenite_client(&server.url(), "room");
    let mut b = tungstenite_client(&server.url(), "room");
    a.send(Message::text("both")).unwrap();
    assert_eq!(a.read().unwrap(), Message::text("both"));
    assert_eq!(b.read().unwrap(), Message::text("both"));
}

#[test]
fn fragments_are_reassembled_into_one_frame_with_a_ping_in_between() {
    let server = TestServer::start(|_| {});
    let mut sender = ws(server.addr, "room");
    let mut sub = ws(server.addr, "room");
    let mut bytes = frame(false, 1, b"Hel", true);
    bytes.extend(frame(true, 9, b"are you there", true));
    bytes.extend(frame(false, 0, b"lo, ", true));
    bytes.extend(frame(true, 0, "wörld".as_bytes(), true));
    sender.write_all(&bytes).unwrap();

    // The sender gets its pong; the subscriber one unfragmented text frame.
    let pong = read_frame(&mut sender);
    assert_eq!(
        (pong.fin, pong.opcode, pong.payload.as_slice()),
        (true, 10, &b"are you there"[..])
    );
    let got = read_frame(&mut sub);
    assert_eq!(
        got,
        Frame {
            fin: true,
            opcode: 1,
            payload: "Hello, wörld".as_bytes().to_vec()
        }
    );
}

#[test]
fn every_length_class_arrives_intact() {
    let server = TestServer::start(|_| {});
    let mut sender = ws(server.addr, "room");
    let mut sub = ws(server.addr, "room");
    for len in [0usize, 1, 125, 126, 65535, 65536, 300_000] {
        let payload: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
        sender.write_all(&frame(true, 2, &payload, true)).unwrap();
        let got = read_frame(&mut sub);
        assert_eq!((got.fin, got.opcode, got.payload.len()), (true, 2, len));
        assert!(got.payload == payload, "payload of {len} bytes differs");
    }
}

#[test]
fn many_subscribers_each_get_every_message_in_order() {
    let server = TestServer::start(|_| {});
    let mut sender = ws(server.addr, "feed");
    let mut subs: Vec<_> = (0..50).map(|_| ws(server.addr, "feed")).collect();
    let mut burst = Vec::new();
    for i in 0..200u32 {
        burst.extend(frame(true, 2, &i.to_be_bytes(), true));
    }
    sender.write_all(&burst).unwrap();
    for sub in &mut subs {
        for i in 0..200u32 {
            assert_eq!(read_frame(sub).payload, i.to_be_bytes());
        }
    }
}

#[test]
fn ping_in_the_handshake_write_is_answered_after_the_101_and_pongs_keep_their_order() {
    let server = TestServer::start(|_| {});
    let mut s = connect(server.addr);
    let mut bytes = upgrade_request("Sec-WebSocket-Protocol: room\r\n").into_bytes();
    for p in [b"1", b"2", b"3"] {
        bytes.extend(frame(true, 9, p, true));
    }
    s.write_all(&bytes).unwrap();
    assert!(read_head(&mut s).starts_with("HTTP/1.1 101 "));
    for p in [b"1", b"2", b"3"] {
        let f = read_frame(&mut s);
        assert_eq!((f.opcode, f.payload.as_slice()), (10, &p[..]));
    }
}
