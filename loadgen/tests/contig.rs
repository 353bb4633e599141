//! loadgen against the reference peer (`peers/contig.rs`) in both modes: the same contract, so
//! the same exact counts — with two publishers on one channel, so a `shared` turn often holds
//! a subscriber's own frames, which it must not receive.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use common::loadgen;

/// The peer as a child process; killed when dropped.
struct ContigPeer {
    child: Child,
    url: String,
}

impl ContigPeer {
    fn start(mode: &str) -> ContigPeer {
        let mut child = Command::new(env!("CARGO_BIN_EXE_contig-peer"))
            .args(["--listen", "127.0.0.1:0", "--mode", mode])
            .stderr(Stdio::piped())
            .spawn()
            .expect("start contig-peer");
        let mut line = String::new();
        let stderr = child.stderr.take().expect("stderr");
        BufReader::new(stderr)
            .read_line(&mut line)
            .expect("its first line");
        let addr = line
            .trim()
            .rsplit(' ')
            .next()
            .expect("an address")
            .to_string();
        assert!(line.contains(&format!("{mode} mode")), "{line}");
        ContigPeer {
            child,
            url: format!("ws://{addr}/"),
        }
    }
}

impl Drop for ContigPeer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn both_modes_serve_the_contract_without_loss() {
    for mode in ["copy", "shared"] {
        let peer = ContigPeer::start(mode);
        let url = &peer.url;
        let o = loadgen(&format!(
            "fanout --url {url} --subs 20 --pubs 2 --rate 2000 --duration 1s --expect-no-loss"
        ))
        .unwrap_or_else(|e| panic!("{mode}: {e}"));
        assert_eq!(o.figures.expected, 2000 * 21, "{mode}");
        assert_eq!(o.figures.delivered, 2000 * 21, "{mode}");
        assert_eq!(
            (o.figures.duplicates, o.figures.reordered),
            (0, 0),
            "{mode}"
        );
        let o = loadgen(&format!(
            "chat --url {url} --rooms 3 --members 3 --rate 300 --duration 1s --expect-no-loss"
        ))
        .unwrap_or_else(|e| panic!("{mode}: {e}"));
        assert_eq!(o.figures.delivered, 300 * 2, "{mode}");
        let o = loadgen(&format!(
            "sweep --url {url} --subs 50 --start-rate 1000 --max-steps 2 --step-duration 300ms"
        ))
        .unwrap_or_else(|e| panic!("{mode}: {e}"));
        assert_eq!(o.figures.lost, 0, "{mode}");
    }
}

#[test]
fn a_client_without_a_channel_is_refused() {
    use std::io::{Read, Write};
    let peer = ContigPeer::start("copy");
    let addr = peer.url.trim_start_matches("ws://").trim_end_matches('/');
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.write_all(
        b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
}
