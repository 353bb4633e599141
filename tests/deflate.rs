//! permessage-deflate (RFC 7692) with `--deflate`, end to end, against a raw client whose
//! compression is flate2's: negotiation in the 101, a broadcast compressed once and shared by
//! deflate subscribers while plain ones get the plain frame, compressed client messages, a
//! zip bomb, misplaced RSV1, history for a deflate joiner, once per message across loops.

mod common;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};

use common::*;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};

const AGREED: &str = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

fn server(configure: impl FnOnce(&mut fanout::Config)) -> TestServer {
    TestServer::start(|c| {
        c.deflate = true;
        configure(c);
    })
}

/// A WebSocket on `channel` offering `extensions`; the stream and the 101's head.
fn offer(addr: SocketAddr, channel: &str, extensions: &str) -> (TcpStream, String) {
    let mut s = connect(addr);
    let ext =
        format!("Sec-WebSocket-Protocol: {channel}\r\nSec-WebSocket-Extensions: {extensions}\r\n");
    s.write_all(upgrade_request(&ext).as_bytes()).unwrap();
    let head = read_head(&mut s);
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    (s, head)
}

fn deflating(addr: SocketAddr, channel: &str) -> TcpStream {
    let (s, head) = offer(addr, channel, "permessage-deflate; client_max_window_bits");
    assert!(
        head.contains(&format!("\r\nSec-WebSocket-Extensions: {AGREED}\r\n")),
        "{head}"
    );
    s
}

/// A server frame that may have RSV1 set: (rsv1, opcode, payload).
fn read_any(s: &mut TcpStream) -> (bool, u8, Vec<u8>) {
    let (first, payload) = read_frame_raw(s);
    assert_eq!(first & 0x30, 0, "RSV2/RSV3 set");
    (first & 0x40 != 0, first & 0x0f, payload)
}

/// RFC 7692 §7.2.2: append the tail, inflate (no context takeover: a fresh inflater).
fn inflate(compressed: &[u8]) -> Vec<u8> {
    let mut input = compressed.to_vec();
    input.extend_from_slice(&[0x00, 0x00, 0xff, 0xff]);
    let mut out = Vec::with_capacity(64 << 10);
    Decompress::new(false)
        .decompress_vec(&input, &mut out, FlushDecompress::Sync)
        .unwrap();
    out
}

/// RFC 7692 §7.2.1: raw DEFLATE with a sync flush, the tail removed.
fn deflate(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 64);
    Compress::new(Compression::default(), false)
        .compress_vec(payload, &mut out, FlushCompress::Sync)
        .unwrap();
    assert!(out.ends_with(&[0x00, 0x00, 0xff, 0xff]));
    out.truncate(out.len() - 4);
    out
}

/// A masked client frame with RSV1 as given.
fn client_frame(fin: bool, rsv1: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = frame(fin, opcode, payload, true);
    if rsv1 {
        f[0] |= 0x40;
    }
    f
}

/// Dashboard-like JSON, compressible, `n` entries.
fn json(n: usize) -> String {
    let rows: Vec<String> = (0..n)
        .map(|i| {
            format!(
                r#"{{"series":"cpu.load","host":"web-{}","value":{}.{}}}"#,
                i % 7,
                i * 3 % 100,
                i % 10
            )
        })
        .collect();
    format!("[{}]", rows.join(","))
}

#[test]
fn offers_are_answered_exactly_or_declined_without_failing() {
    let server = server(|_| {});
    for (offered, answer) in [
        ("permessage-deflate", Some(AGREED)),
        ("permessage-deflate; client_max_window_bits", Some(AGREED)),
        ("x-webkit-deflate-frame, permessage-deflate", Some(AGREED)),
        (
            "permessage-deflate; server_max_window_bits=10",
            Some(
                "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10",
            ),
        ),
        ("permessage-deflate; unknown_param", None),
        ("permessage-deflate; server_max_window_bits=8", None),
    ] {
        let (_, head) = offer(server.addr, "room", offered);
        let got = head
            .lines()
            .find_map(|l| l.strip_prefix("Sec-WebSocket-Extensions: "));
        assert_eq!(got, answer, "offer {offered:?}");
    }
}

#[test]
fn a_broadcast_is_compressed_once_for_deflate_subscribers_and_plain_for_the_others() {
    let server = server(|_| {});
    let mut d1 = deflating(server.addr, "dash");
    let mut d2 = deflating(server.addr, "dash");
    let mut plain = ws(server.addr, "dash");
    let mut publisher = ws(server.addr, "dash");
    let big = json(40); // about 2 KiB
    publisher.write_all(&text(&big)).unwrap();
    let (rsv1, op, compressed) = read_any(&mut d1);
    assert!(rsv1 && op == 1);
    assert!(
        compressed.len() < big.len() / 3,
        "{} of {}",
        compressed.len(),
        big.len()
    );
    assert_eq!(inflate(&compressed), big.as_bytes());
    assert_eq!(
        read_any(&mut d2),
        (true, 1, compressed.clone()),
        "the same compressed bytes"
    );
    assert_eq!(read_frame(&mut plain).payload, big.as_bytes());
    // Under --deflate-min-size (256 B) everyone gets the plain frame.
    publisher.write_all(&text("small")).unwrap();
    assert_eq!(read_any(&mut d1), (false, 1, b"small".to_vec()));
    // With several loops a scrape sees another loop's counters as of its last turn, and its
    // gauges as of their last walk (100 ms): await them, then check the count stayed at one.
    await_metric(server.addr, "fanout_deflate_compressed_total", |n| n >= 1);
    await_metric(server.addr, "fanout_deflate_connections", |n| n == 2);
    assert_eq!(metric(server.addr, "fanout_deflate_compressed_total"), 1);
}

#[test]
fn a_compressed_client_message_reaches_everyone_in_their_own_form() {
    let server = server(|_| {});
    let mut sender = deflating(server.addr, "room");
    let mut other = deflating(server.addr, "room");
    let mut plain = ws(server.addr, "room");
    let message = json(30);
    // Compressed, and fragmented: RSV1 on the first frame only.
    let compressed = deflate(message.as_bytes());
    let (a, b) = compressed.split_at(compressed.len() / 2);
    sender.write_all(&client_frame(false, true, 1, a)).unwrap();
    sender.write_all(&client_frame(true, false, 0, b)).unwrap();
    assert_eq!(read_frame(&mut plain).payload, message.as_bytes());
    let (rsv1, _, got) = read_any(&mut other);
    assert!(rsv1);
    assert_eq!(inflate(&got), message.as_bytes());
}

#[test]
fn a_zip_bomb_is_closed_with_1009_and_misplaced_rsv1_with_1002() {
    let server = server(|c| c.max_message = 64 << 10);
    let mut bomb = deflating(server.addr, "room");
    let zeros = deflate(&vec![0u8; 10 << 20]); // 10 MiB in about 10 KiB
    assert!(zeros.len() < 64 << 10);
    bomb.write_all(&client_frame(true, true, 2, &zeros))
        .unwrap();
    let (_, op, close) = read_any(&mut bomb);
    assert_eq!((op, u16::from_be_bytes([close[0], close[1]])), (8, 1009));

    for bad in [
        [
            client_frame(false, false, 1, b"a"),
            client_frame(true, true, 0, b"b"),
        ]
        .concat(),
        client_frame(true, true, 9, b"ping"),
    ] {
        let mut s = deflating(server.addr, "room");
        s.write_all(&bad).unwrap();
        let (_, op, close) = read_any(&mut s);
        assert_eq!((op, u16::from_be_bytes([close[0], close[1]])), (8, 1002));
    }
    // Without the extension, RSV1 is a protocol error as ever.
    let mut s = ws(server.addr, "room");
    s.write_all(&client_frame(true, true, 1, b"x")).unwrap();
    assert_eq!(read_frame(&mut s).close_code(), 1002);
}

#[test]
fn a_deflate_joiner_gets_history_compressed() {
    let server = server(|c| c.history = 3);
    let message = json(25);
    server.handle.publish("feed", message.as_str()).unwrap();
    let info = r#"{"name":"feed","subscribers":0,"history":1}"#;
    await_channel(server.addr, "feed", info);
    let mut late = deflating(server.addr, "feed");
    let (rsv1, _, got) = read_any(&mut late);
    assert!(rsv1);
    assert_eq!(inflate(&got), message.as_bytes());
    let mut plain_late = ws(server.addr, "feed");
    assert_eq!(read_frame(&mut plain_late).payload, message.as_bytes());
}

#[test]
fn with_four_loops_a_message_is_still_compressed_once() {
    let server = server(|c| c.threads = fanout::config::Threads::Count(4));
    let mut subs: Vec<TcpStream> = (0..16).map(|_| deflating(server.addr, "room")).collect();
    let message = json(30);
    server.handle.publish("room", message.as_str()).unwrap();
    for s in &mut subs {
        let (rsv1, _, got) = read_any(s);
        assert!(rsv1);
        assert_eq!(inflate(&got), message.as_bytes());
    }
    await_metric(server.addr, "fanout_deflate_compressed_total", |n| n == 1);
}
