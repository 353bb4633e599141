//! Publishing from other threads through `Handle::publish`.

mod common;

use common::*;
use fanout::{Message, PublishError};

#[test]
fn publish_from_other_threads_reaches_every_subscriber_in_order() {
    let server = TestServer::start(|_| {});
    let mut subs: Vec<_> = (0..3).map(|_| ws(server.addr, "news")).collect();
    let mut other = ws(server.addr, "sports");
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let h = server.handle.clone();
            std::thread::spawn(move || {
                for i in 0..250u32 {
                    let mut b = vec![t as u8];
                    b.extend(i.to_be_bytes());
                    h.publish("news", Message::Binary(b)).unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    server.handle.publish("sports", "goal").unwrap();
    for sub in &mut subs {
        let mut next = [0u32; 4];
        for _ in 0..1000 {
            let f = read_frame(sub);
            assert_eq!(f.opcode, 2);
            let t = f.payload[0] as usize;
            assert_eq!(
                u32::from_be_bytes(f.payload[1..5].try_into().unwrap()),
                next[t]
            );
            next[t] += 1;
        }
        assert_eq!(next, [250; 4]);
    }
    let f = read_frame(&mut other);
    assert_eq!((f.opcode, f.payload.as_slice()), (1, &b"goal"[..]));
}

#[test]
fn publishing_to_an_empty_channel_is_fine_and_a_stopped_server_says_so() {
    let server = TestServer::start(|_| {});
    let handle = server.handle.clone();
    handle.publish("nobody", "x").unwrap();
    server.stop();
    assert_eq!(handle.publish("nobody", "x"), Err(PublishError::Stopped));
}

#[test]
fn publishing_to_a_name_no_client_could_join_is_refused_and_creates_nothing() {
    let server = TestServer::start(|c| c.history = 5);
    let too_long = "x".repeat(65);
    for name in ["", "two words", "caf\u{e9}", "a/b", too_long.as_str()] {
        assert_eq!(
            server.handle.publish(name, "x"),
            Err(PublishError::InvalidChannel),
            "{name:?}"
        );
    }
    // The longest valid name is fine, and it is the only channel that exists.
    let longest = "x".repeat(64);
    server.handle.publish(&longest, "x").unwrap();
    let info = format!(r#"{{"name":"{longest}","subscribers":0,"history":1}}"#);
    await_channel(server.addr, &longest, &info);
    let (_, _, body) = get(server.addr, "/channels");
    assert_eq!(
        body,
        format!(r#"[{{"name":"{longest}","subscribers":0,"history":1}}]"#)
    );
}
