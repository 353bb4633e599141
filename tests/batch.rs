//! Batched turns on the wire: messages read in one turn reach each subscriber as one
//! contiguous buffer, byte for byte what they would be one by one, the sender excluded, with
//! pongs between whole messages.

mod common;

use std::io::Write;

use common::*;

fn message(channel: u8, i: u8) -> Vec<u8> {
    vec![channel, i, b'-', b'x']
}

#[test]
fn a_turn_of_messages_on_two_channels_arrives_whole_in_order_and_not_to_its_sender() {
    let server = TestServer::start(|_| {});
    let mut a_pub = ws(server.addr, "a");
    let mut b_pub = ws(server.addr, "b");
    let mut a_subs: Vec<_> = (0..3).map(|_| ws(server.addr, "a")).collect();
    let mut b_sub = ws(server.addr, "b");
    // Twenty messages in one write each: read in one turn, they make one batch per channel.
    let burst = |ch| -> Vec<u8> {
        (0..20)
            .flat_map(|i| frame(true, 2, &message(ch, i), true))
            .collect()
    };
    a_pub.write_all(&burst(b'a')).unwrap();
    b_pub.write_all(&burst(b'b')).unwrap();
    for s in a_subs.iter_mut() {
        for i in 0..20 {
            let f = read_frame(s);
            assert_eq!((f.fin, f.opcode, f.payload), (true, 2, message(b'a', i)));
        }
    }
    for i in 0..20 {
        assert_eq!(read_frame(&mut b_sub).payload, message(b'b', i));
    }
    assert!(metric(server.addr, "fanout_batches_total") >= 2);
    assert_eq!(metric(server.addr, "fanout_deliveries_total"), 80);
    // The senders got nothing of their own: the next frame each sees is someone else's.
    a_subs[0].write_all(&text("from a sub")).unwrap();
    assert_eq!(read_frame(&mut a_pub).payload, b"from a sub");
}

#[test]
fn a_ping_between_batches_is_answered_between_whole_messages() {
    let server = TestServer::start(|_| {});
    let mut publisher = ws(server.addr, "feed");
    let mut sub = ws(server.addr, "feed");
    let burst: Vec<u8> = (0..50)
        .flat_map(|i| frame(true, 2, &[i; 300], true))
        .collect();
    publisher.write_all(&burst).unwrap();
    sub.write_all(&frame(true, 9, b"ping", true)).unwrap();
    publisher.write_all(&burst).unwrap();
    let (mut data, mut pongs) = (0, 0);
    while data < 100 || pongs < 1 {
        let f = read_frame(&mut sub);
        match f.opcode {
            2 => {
                assert_eq!(f.payload, [(data % 50) as u8; 300]);
                data += 1;
            }
            10 => {
                assert_eq!(f.payload, b"ping");
                pongs += 1;
            }
            op => panic!("unexpected opcode {op}"),
        }
    }
    assert_eq!(pongs, 1);
}

#[test]
fn a_message_sent_just_before_a_close_or_a_violation_still_arrives_before_our_close() {
    let server = TestServer::start(|c| c.echo = true);
    for (ending, code) in [
        (frame(true, 8, &1000u16.to_be_bytes(), true), 1000),
        (frame(true, 2, b"unmasked", false), 1002),
    ] {
        let mut s = ws(server.addr, "room");
        let mut bytes = text("last words");
        bytes.extend(ending);
        s.write_all(&bytes).unwrap(); // read in one turn: the echo is still pending at the close
        let f = read_frame(&mut s);
        assert_eq!((f.opcode, f.payload.as_slice()), (1, &b"last words"[..]));
        assert_eq!(read_frame(&mut s).close_code(), code);
    }
}
