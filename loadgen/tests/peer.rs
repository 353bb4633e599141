//! loadgen against the in-tree tokio peer: the same contract, so the same exact counts.

mod common;

use common::loadgen;
use loadgen::peer::PeerServer;

#[test]
fn peer_serves_the_contract_without_loss() {
    let peer = PeerServer::start("127.0.0.1:0".parse().unwrap()).unwrap();
    let url = format!("ws://{}/", peer.addr());
    let o = loadgen(&format!(
        "fanout --url {url} --subs 10 --pubs 2 --rate 200 --duration 1s --expect-no-loss"
    ))
    .expect("no loss");
    assert_eq!(o.figures.expected, 200 * 11);
    assert_eq!(o.figures.delivered, 2200);
    let o = loadgen(&format!(
        "chat --url {url} --rooms 3 --members 3 --rate 90 --duration 1s --expect-no-loss"
    ))
    .expect("no loss");
    assert_eq!(o.figures.delivered, 90 * 2);
}
