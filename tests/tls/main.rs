//! `wss://` and `https://` (`--tls-cert`, `--tls-key`): pub/sub and the HTTP API over TLS,
//! certificate rotation (`Handle::reload_tls`, SIGHUP), bad files, plaintext on the TLS port,
//! stalled handshakes, and the close sequence. Certificates are made with rcgen at test time.

#[path = "../common/mod.rs"]
mod common;
mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use support::*;
use tungstenite::Message;
use tungstenite::client::IntoClientRequest;

fn tls_server(cert: &Cert, configure: impl FnOnce(&mut fanout::Config)) -> TestServer {
    TestServer::start(|c| {
        c.tls_cert = Some(cert.cert.clone());
        c.tls_key = Some(cert.key.clone());
        configure(c);
    })
}

/// A tungstenite client over rustls, subscribed to `channel`.
fn tungstenite_wss(
    server: &TestServer,
    cert: &Cert,
    channel: &str,
) -> tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<TcpStream>> {
    let tcp = TcpStream::connect(server.addr).unwrap();
    tcp.set_read_timeout(Some(TIMEOUT)).unwrap();
    let url = format!("wss://localhost:{}/", server.addr.port());
    let mut req = url.into_client_request().unwrap();
    req.headers_mut()
        .insert("Sec-WebSocket-Protocol", channel.parse().unwrap());
    let connector = tungstenite::Connector::Rustls(client_config(&[&cert.der]));
    let (ws, resp) =
        tungstenite::client_tls_with_config(req, tcp, None, Some(connector)).expect("wss");
    assert_eq!(resp.status(), 101);
    assert!(matches!(
        ws.get_ref(),
        tungstenite::stream::MaybeTlsStream::Rustls(_)
    ));
    ws
}

#[test]
fn pub_sub_over_wss_with_tungstenite() {
    let cert = write_cert(&temp_dir("pubsub"));
    let server = tls_server(&cert, |_| {});
    let mut a = tungstenite_wss(&server, &cert, "room");
    let mut b = tungstenite_wss(&server, &cert, "room");
    a.send(Message::text("hello over tls")).unwrap();
    assert_eq!(b.read().unwrap(), Message::text("hello over tls"));
    let big = vec![7u8; 100_000]; // Several records each way.
    b.send(Message::binary(big.clone())).unwrap();
    assert_eq!(a.read().unwrap(), Message::binary(big));
    let config = client_config(&[&cert.der]);
    await_tls_metric(server.addr, &config, "fanout_tls_handshakes_total", |n| {
        n >= 3
    });
}

#[test]
fn https_publish_reaches_wss_subscribers_frame_by_frame() {
    let cert = write_cert(&temp_dir("publish"));
    let server = tls_server(&cert, |_| {});
    let config = client_config(&[&cert.der]);
    let mut sub = wss(server.addr, config.clone(), "news");
    let req = publish_request("news", "text/plain", b"hello", "Connection: close\r\n");
    let (status, head, body) = https(server.addr, config.clone(), &req);
    assert_eq!(status, 200, "{head}");
    assert_eq!(body, r#"{"channel":"news","subscribers":1}"#);
    let mut frame = [0u8; 7];
    sub.read_exact(&mut frame).unwrap();
    assert_eq!(&frame, b"\x81\x05hello");
    // Many messages queued in one turn reach the subscriber in order.
    for i in 0..50 {
        server.handle.publish("news", format!("m{i:02}")).unwrap();
    }
    for i in 0..50 {
        let f = read_frame(&mut sub);
        assert_eq!((f.opcode, f.payload), (1, format!("m{i:02}").into_bytes()));
    }
}

#[test]
fn tls_1_2_and_1_3_both_negotiate_http_1_1() {
    let cert = write_cert(&temp_dir("versions"));
    let server = tls_server(&cert, |_| {});
    for (version, wanted) in [
        (&rustls::version::TLS12, rustls::ProtocolVersion::TLSv1_2),
        (&rustls::version::TLS13, rustls::ProtocolVersion::TLSv1_3),
    ] {
        let config = client_config_with(&[&cert.der], &[version]);
        let mut tls = wss(server.addr, config, "room");
        assert_eq!(tls.conn.protocol_version(), Some(wanted));
        assert_eq!(tls.conn.alpn_protocol(), Some(&b"http/1.1"[..]));
        // Our close, the server's close frame, then its close_notify: a clean TLS end.
        tls.write_all(&frame(true, 8, &1000u16.to_be_bytes(), true))
            .unwrap();
        assert_eq!(read_frame(&mut tls).close_code(), 1000);
        let mut rest = Vec::new();
        tls.read_to_end(&mut rest)
            .expect("close_notify, not a bare EOF");
        assert!(rest.is_empty(), "{rest:?}");
    }
}

#[test]
fn reload_tls_serves_new_connections_the_new_certificate() {
    let dir = temp_dir("reload");
    let old = write_cert(&dir);
    let server = tls_server(&old, |_| {});
    let mut before = wss(server.addr, client_config(&[&old.der]), "room");
    assert_eq!(peer_cert(&before), old.der);

    let new = write_cert(&dir); // Same paths, new contents.
    server.handle.reload_tls().unwrap();
    let both = client_config(&[&old.der, &new.der]);
    // Every loop sees it (with several loops, new connections land on all of them).
    for _ in 0..8 {
        assert_eq!(peer_cert(&tls_connect(server.addr, both.clone())), new.der);
    }
    // The connection made before is untouched and still receives.
    server.handle.publish("room", "after rotation").unwrap();
    assert_eq!(read_frame(&mut before).payload, b"after rotation");

    // A bad file keeps the certificate in force, and the error names the file.
    std::fs::write(&new.cert, "not a certificate").unwrap();
    let e = server.handle.reload_tls().unwrap_err().to_string();
    assert!(e.contains(new.cert.to_str().unwrap()), "{e}");
    assert!(e.contains("no PEM certificate"), "{e}");
    assert_eq!(peer_cert(&tls_connect(server.addr, both.clone())), new.der);
    let other = write_cert(&temp_dir("reload-other"));
    std::fs::write(&new.cert, std::fs::read(&other.cert).unwrap()).unwrap();
    let e = server.handle.reload_tls().unwrap_err().to_string();
    assert!(e.contains("does not go with the certificate"), "{e}");
    assert_eq!(peer_cert(&tls_connect(server.addr, both)), new.der);
}

#[test]
fn sighup_rotates_the_certificate_of_the_binary() {
    let dir = temp_dir("sighup");
    let old = write_cert(&dir);
    let (cert, key) = (old.cert.to_str().unwrap(), old.key.to_str().unwrap());
    let server = ChildServer::start(&["--tls-cert", cert, "--tls-key", key]);
    let mut before = wss(server.addr, client_config(&[&old.der]), "room");
    assert_eq!(peer_cert(&before), old.der);

    let new = write_cert(&dir);
    let kill = Command::new("kill")
        .args(["-HUP", &server.pid().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let both = client_config(&[&old.der, &new.der]);
    let deadline = Instant::now() + TIMEOUT;
    while peer_cert(&tls_connect(server.addr, both.clone())) != new.der {
        assert!(Instant::now() < deadline, "still the old certificate");
        std::thread::sleep(Duration::from_millis(10));
    }
    let req = publish_request("room", "text/plain", b"still here", "Connection: close\r\n");
    assert_eq!(https(server.addr, both, &req).0, 200);
    assert_eq!(read_frame(&mut before).payload, b"still here");
}

/// Runs `fanout` with `args` and no `FANOUT_*` variables but `env`; it must exit 2 with
/// `needle` in its message.
fn exits_2(args: &[&str], env: &[(&str, &str)], needle: &str) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fanout"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("FANOUT_") {
            cmd.env_remove(name);
        }
    }
    let out = cmd
        .args(["--listen", "127.0.0.1:0"])
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
    assert!(
        stderr.contains(needle),
        "{args:?}: {needle:?} not in {stderr}"
    );
}

#[test]
fn bad_tls_settings_exit_2_naming_the_file() {
    let dir = temp_dir("bad-files");
    let good = write_cert(&dir);
    let (cert, key) = (good.cert.to_str().unwrap(), good.key.to_str().unwrap());
    exits_2(
        &["--tls-cert", cert],
        &[],
        "--tls-cert is set without --tls-key",
    );
    exits_2(
        &[],
        &[("FANOUT_TLS_KEY", key)],
        "--tls-key is set without --tls-cert",
    );
    let missing = dir.join("missing.pem");
    let missing = missing.to_str().unwrap();
    exits_2(&["--tls-cert", missing, "--tls-key", key], &[], missing);
    exits_2(&["--tls-cert", cert, "--tls-key", missing], &[], missing);
    let empty = dir.join("empty.pem");
    std::fs::write(&empty, "").unwrap();
    let empty = empty.to_str().unwrap();
    let needle =
        format!("no PEM certificate (-----BEGIN CERTIFICATE-----) in --tls-cert file {empty}");
    exits_2(&["--tls-cert", empty, "--tls-key", key], &[], &needle);
    let needle = format!("no usable private key in --tls-key file {empty}");
    exits_2(&["--tls-cert", cert, "--tls-key", empty], &[], &needle);
    // The key file holds a certificate, not a key.
    exits_2(
        &["--tls-cert", cert, "--tls-key", cert],
        &[],
        &format!("--tls-key file {cert}"),
    );
    let other = write_cert(&temp_dir("bad-files-other"));
    let other_key = other.key.to_str().unwrap();
    let needle = format!("the key in {other_key} does not go with the certificate in {cert}");
    exits_2(&["--tls-cert", cert, "--tls-key", other_key], &[], &needle);
}

#[test]
fn plaintext_http_to_the_tls_port_is_closed_at_once() {
    let cert = write_cert(&temp_dir("plaintext"));
    // A hang would last this long; the read timeout fails the test first.
    let server = tls_server(&cert, |c| c.handshake_timeout = Duration::from_secs(60));
    let mut s = connect(server.addr);
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    // A fatal decode_error alert, in a TLS record, then the end.
    assert_eq!(read_until_closed(&mut s), b"\x15\x03\x03\x00\x02\x02\x32");
    let config = client_config(&[&cert.der]);
    let sample = "fanout_tls_errors_total{kind=\"plaintext\"}";
    await_tls_metric(server.addr, &config, sample, |n| n == 1);
}

#[test]
fn stalled_handshakes_are_closed_after_the_handshake_timeout() {
    let cert = write_cert(&temp_dir("stalled"));
    let timeout = Duration::from_millis(300);
    let server = tls_server(&cert, |c| c.handshake_timeout = timeout);
    let config = client_config(&[&cert.der]);
    let mut hello = Vec::new();
    let name = "localhost".try_into().unwrap();
    let mut client = rustls::ClientConnection::new(config.clone(), name).unwrap();
    client.write_tls(&mut hello).unwrap();
    for sent in [&[][..], &hello[..hello.len() / 2]] {
        let start = Instant::now();
        let mut s = connect(server.addr);
        s.write_all(sent).unwrap();
        assert_eq!(read_until_closed(&mut s), b"", "no 408 before TLS is up");
        assert!(
            start.elapsed() >= timeout,
            "closed after {:?}",
            start.elapsed()
        );
    }
    let sample = "fanout_tls_errors_total{kind=\"handshake_timeout\"}";
    await_tls_metric(server.addr, &config, sample, |n| n == 2);
}

/// What an idle `wss://` subscriber costs the server, beside a plain `ws://` one: RSS growth
/// over `FANOUT_IDLE_CONNS` (default 2000) upgraded connections, divided by their number.
/// Prints the figures (the README quotes them); run with
/// `cargo test --test tls -- --ignored idle_connection_memory --nocapture`.
#[test]
#[ignore = "a measurement: slow in a debug build, and it prints rather than asserts much"]
fn idle_connection_memory() {
    let n: usize = std::env::var("FANOUT_IDLE_CONNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let cert = write_cert(&temp_dir("idle-memory"));
    let (c, k) = (cert.cert.to_str().unwrap(), cert.key.to_str().unwrap());
    let config = client_config(&[&cert.der]);
    for tls in [false, true] {
        let args: &[&str] = if tls {
            &["--tls-cert", c, "--tls-key", k]
        } else {
            &[]
        };
        let server = ChildServer::start(args);
        // One connection first, so buffers every connection shares are already there.
        let open = || -> Box<dyn std::any::Any> {
            if tls {
                Box::new(wss(server.addr, config.clone(), "idle"))
            } else {
                Box::new(ws(server.addr, "idle"))
            }
        };
        let _warm = open();
        let before = server.rss();
        let conns: Vec<_> = (0..n).map(|_| open()).collect();
        std::thread::sleep(Duration::from_millis(500)); // Let the trim after the burst run.
        let per = server.rss().saturating_sub(before) / n;
        let kind = if tls { "wss" } else { "ws" };
        println!("{kind}: {per} bytes of RSS per idle connection ({n} connections)");
        assert!(per < 64 << 10, "{kind}: {per} bytes per idle connection");
        drop(conns);
    }
}

#[test]
fn a_client_that_does_not_trust_the_certificate_is_counted_as_an_alert() {
    let cert = write_cert(&temp_dir("alert"));
    let stranger = write_cert(&temp_dir("alert-stranger"));
    let server = tls_server(&cert, |_| {});
    let mut tcp = connect(server.addr);
    let name = "localhost".try_into().unwrap();
    let mut client = rustls::ClientConnection::new(client_config(&[&stranger.der]), name).unwrap();
    let e = loop {
        match client.complete_io(&mut tcp) {
            Err(e) => break e.to_string(),
            Ok(_) => assert!(client.is_handshaking(), "trusted a stranger's certificate"),
        }
    };
    assert!(e.starts_with("invalid peer certificate"), "{e}");
    let sample = "fanout_tls_errors_total{kind=\"alert\"}";
    await_tls_metric(server.addr, &client_config(&[&cert.der]), sample, |n| {
        n == 1
    });
}

#[test]
fn a_backlog_larger_than_the_socket_buffer_arrives_whole_and_in_order() {
    let cert = write_cert(&temp_dir("backlog"));
    let server = tls_server(&cert, |c| {
        c.socket_send_buffer = 64 << 10;
        c.max_backpressure = 16 << 20;
    });
    let config = client_config(&[&cert.der]);
    let mut sub = wss(server.addr, config.clone(), "bulk");
    // 4 MiB queued before the subscriber reads a byte: the server's writes block (rustls
    // holding its capped share, the queue the rest) and resume on writable events.
    for i in 0..512u32 {
        let mut body = vec![(i % 251) as u8; 8 << 10];
        body[..4].copy_from_slice(&i.to_be_bytes());
        server.handle.publish("bulk", body).unwrap();
    }
    await_tls_metric(server.addr, &config, "fanout_send_blocked_total", |n| n > 0);
    for i in 0..512u32 {
        let f = read_frame(&mut sub);
        assert_eq!((f.opcode, f.payload.len()), (2, 8 << 10));
        assert_eq!(f.payload[..4], i.to_be_bytes());
        assert!(f.payload[4..].iter().all(|&b| b == (i % 251) as u8));
    }
}

#[test]
fn partial_records_count_against_the_input_memory_budget() {
    const PART: usize = 12 << 10;
    let cert = write_cert(&temp_dir("input-memory"));
    let server = tls_server(&cert, |c| {
        c.max_input_memory = 40 << 10;
        c.close_timeout = Duration::from_secs(600); // Only dropping its input frees it.
    });
    let config = client_config(&[&cert.der]);
    let mut sub = wss(server.addr, config.clone(), "calm");
    // A record header announcing 16 KiB, then 12 KiB of it: the server keeps the partial record.
    let mut partial = vec![0x17, 3, 3, 0x40, 0x00];
    partial.extend(vec![0u8; PART]);
    let mut holders = Vec::new();
    for i in 1..=3 {
        let mut tls = tls_connect(server.addr, config.clone());
        tls.sock.write_all(&partial).unwrap();
        await_tls_metric(server.addr, &config, "fanout_input_memory_bytes", |n| {
            n as usize >= i * partial.len()
        });
        holders.push(tls);
    }
    // 36 KiB held: the fourth takes the total over 40 KiB and is the one answered 503.
    let mut over = tls_connect(server.addr, config.clone());
    over.sock.write_all(&partial).unwrap();
    let mut answer = Vec::new();
    over.read_to_end(&mut answer).unwrap();
    assert_eq!(
        String::from_utf8(answer).unwrap(),
        String::from_utf8(fanout::proto::handshake::Refusal::INPUT_MEMORY.response()).unwrap()
    );
    assert_eq!(
        tls_metric(server.addr, &config, "fanout_input_memory_refusals_total"),
        1
    );
    // Its memory is given back while it is still open, and the others carry on.
    await_tls_metric(server.addr, &config, "fanout_input_memory_bytes", |n| {
        n as usize <= 3 * partial.len()
    });
    server
        .handle
        .publish("calm", b"still here".to_vec())
        .unwrap();
    assert_eq!(read_frame(&mut sub).payload, b"still here");
}
