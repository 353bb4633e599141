//! Graceful shutdown: every connection gets a 1001 close, the loop returns, and the binary
//! exits 0 on SIGTERM.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::*;

#[test]
fn handle_shutdown_closes_every_connection_with_1001() {
    let server = TestServer::start(|_| {});
    let mut clients: Vec<_> = (0..3).map(|_| ws(server.addr, "room")).collect();
    server.handle.shutdown().unwrap();
    for c in &mut clients {
        let f = read_frame(c);
        assert_eq!(
            (f.close_code(), f.close_reason()),
            (1001, "server shutting down")
        );
        c.write_all(&frame(true, 8, &1001u16.to_be_bytes(), true))
            .unwrap();
        expect_eof(c);
    }
    drop(clients);
    // Every connection has finished its close handshake, so the loop returns by itself: the
    // inbox is gone by now and a second `shutdown()` could fail with `Stopped`.
    server.join();
}

#[test]
fn sigterm_closes_with_1001_and_exits_zero() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_fanout"))
        .args(["--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = buffered(child.stderr.take().unwrap());
    let line = wait_for_line(&mut stderr, "listening");
    let addr = line
        .split("addr=")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .expect("address in the listening line")
        .parse()
        .unwrap();
    let mut c = ws(addr, "room");
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let f = read_frame(&mut c);
    assert_eq!(f.close_code(), 1001);
    c.write_all(&frame(true, 8, &1001u16.to_be_bytes(), true))
        .unwrap();
    expect_eof(&mut c);
    drop(c); // our EOF ends the server's wait for it, so it exits without the close timeout
    let exit = child.wait().unwrap();
    assert_eq!(exit.code(), Some(0));
}

#[test]
fn a_message_in_progress_at_shutdown_gets_one_close_and_nothing_after_it() {
    let server = TestServer::start(|_| {});
    let mut c = ws(server.addr, "room");
    let mut watcher = ws(server.addr, "other");
    c.write_all(&frame(false, 1, b"half of a ", true)).unwrap();
    // The loop has read the first fragment once a later connection's request is answered.
    let (status, _, _) = get(server.addr, "/healthz");
    assert_eq!(status, 200);
    server.handle.shutdown().unwrap();
    let f = read_frame(&mut c);
    assert_eq!(f.close_code(), 1001);
    // The client finishes its message, then answers the close: a continuation is not a
    // protocol error here, and no second close frame follows the first.
    c.write_all(&frame(true, 0, b"message", true)).unwrap();
    c.write_all(&frame(true, 8, &1001u16.to_be_bytes(), true))
        .unwrap();
    expect_eof(&mut c);
    assert_eq!(read_frame(&mut watcher).close_code(), 1001);
    watcher
        .write_all(&frame(true, 8, &1001u16.to_be_bytes(), true))
        .unwrap();
    expect_eof(&mut watcher);
    drop((c, watcher));
    server.join();
}
