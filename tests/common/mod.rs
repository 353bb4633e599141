//! Shared helpers for the integration tests: a real server on 127.0.0.1:0, and a raw client
//! with its own tiny frame codec, independent of the server's, so the tests check the bytes on
//! the wire rather than the server agreeing with itself.
#![allow(dead_code)]

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread::JoinHandle;
use std::time::Duration;

use fanout::{Config, Handle, Server};

/// Event loops for the servers the tests start: `FANOUT_TEST_THREADS` (the suite runs once
/// with the default of 1 and once with 4, see the README), unless a test says otherwise.
pub fn test_threads() -> usize {
    std::env::var("FANOUT_TEST_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
}

/// Long enough for a loaded CI machine; only reached when a test is failing.
pub const TIMEOUT: Duration = Duration::from_secs(10);

pub struct TestServer {
    pub addr: SocketAddr,
    pub handle: Handle,
    thread: Option<JoinHandle<io::Result<()>>>,
}

impl TestServer {
    pub fn start(configure: impl FnOnce(&mut Config)) -> TestServer {
        let mut config = Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            threads: fanout::config::Threads::Count(test_threads()),
            ..Config::default()
        };
        configure(&mut config);
        let server = Server::bind(config).expect("bind");
        let addr = server.local_addr();
        let handle = server.handle();
        let thread = Some(std::thread::spawn(move || server.run()));
        TestServer {
            addr,
            handle,
            thread,
        }
    }

    pub fn url(&self) -> String {
        format!("ws://{}/", self.addr)
    }

    /// Shuts down and waits for the loop to return.
    pub fn stop(self) {
        self.handle.shutdown().unwrap();
        self.join();
    }

    /// Waits for the loop to return on its own (after a shutdown already asked for) and
    /// asserts it returned `Ok`.
    pub fn join(mut self) {
        self.thread.take().unwrap().join().unwrap().unwrap();
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(t) = self.thread.take() {
            let _ = self.handle.shutdown();
            let _ = t.join();
        }
    }
}

pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

pub fn upgrade_request(extra_headers: &str) -> String {
    format!(
        "GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra_headers}\r\n"
    )
}

/// Reads an HTTP response head (through the blank line) byte by byte, so no frame bytes that
/// follow it are consumed.
pub fn read_head(s: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = s.read(&mut byte).expect("read response head");
        assert_eq!(
            n,
            1,
            "EOF inside response head: {:?}",
            String::from_utf8_lossy(&head)
        );
        head.push(byte[0]);
    }
    String::from_utf8(head).unwrap()
}

/// Opens a WebSocket on `channel` with a raw socket; returns it after the 101.
pub fn ws(addr: SocketAddr, channel: &str) -> TcpStream {
    let mut s = connect(addr);
    let req = upgrade_request(&format!("Sec-WebSocket-Protocol: {channel}\r\n"));
    s.write_all(req.as_bytes()).unwrap();
    let head = read_head(&mut s);
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    s
}

/// Sends a request and reads the whole response until the server closes: (status, head, body).
pub fn http(addr: SocketAddr, request: &[u8]) -> (u16, String, String) {
    let mut s = connect(addr);
    s.write_all(request).unwrap();
    read_response(&mut s)
}

pub fn read_response(s: &mut TcpStream) -> (u16, String, String) {
    let mut all = Vec::new();
    s.read_to_end(&mut all).expect("read response to EOF");
    let text = String::from_utf8_lossy(&all).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("complete response head");
    let status = head[9..12].parse().expect("status code");
    (status, head.to_owned(), body.to_owned())
}

/// A client frame (masked with a fixed key unless `mask` is false).
pub fn frame(fin: bool, opcode: u8, payload: &[u8], mask: bool) -> Vec<u8> {
    let key = [0xa1, 0xb2, 0xc3, 0xd4];
    let mut out = vec![(u8::from(fin) << 7) | opcode];
    let m = if mask { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => out.push(m | n as u8),
        n if n <= 0xffff => {
            out.push(m | 126);
            out.extend((n as u16).to_be_bytes());
        }
        n => {
            out.push(m | 127);
            out.extend((n as u64).to_be_bytes());
        }
    }
    if mask {
        out.extend(key);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    } else {
        out.extend(payload);
    }
    out
}

pub fn text(payload: &str) -> Vec<u8> {
    frame(true, 1, payload.as_bytes(), true)
}

/// A frame as the server sent it.
#[derive(Debug, PartialEq, Eq)]
pub struct Frame {
    pub fin: bool,
    pub opcode: u8,
    pub payload: Vec<u8>,
}

impl Frame {
    /// The code of a close frame.
    pub fn close_code(&self) -> u16 {
        assert_eq!(self.opcode, 8, "not a close frame: {self:?}");
        u16::from_be_bytes([self.payload[0], self.payload[1]])
    }

    pub fn close_reason(&self) -> &str {
        std::str::from_utf8(&self.payload[2..]).unwrap()
    }
}

/// Reads one server frame; asserts it is unmasked with no RSV bits.
pub fn read_frame(s: &mut impl Read) -> Frame {
    let (first, payload) = read_frame_raw(s);
    assert_eq!(first & 0x70, 0, "RSV bits set");
    Frame {
        fin: first & 0x80 != 0,
        opcode: first & 0x0f,
        payload,
    }
}

/// Reads one server frame and asserts it is the text `want`.
pub fn expect_text(s: &mut impl Read, want: &str) {
    let f = read_frame(s);
    assert_eq!(
        (f.opcode, String::from_utf8_lossy(&f.payload).as_ref()),
        (1, want)
    );
}

/// A frame, or `None` when the socket's read timeout passed first with nothing read.
pub fn read_frame_or_timeout(s: &mut TcpStream) -> Option<Frame> {
    let mut first = [0u8; 1];
    match s.peek(&mut first) {
        Ok(1..) => Some(read_frame(s)),
        Ok(0) => panic!("EOF"),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            None
        }
        Err(e) => panic!("{e}"),
    }
}

/// Reads one server frame whatever its RSV bits (permessage-deflate sets RSV1): its first
/// header byte and its payload; asserts it is unmasked.
pub fn read_frame_raw(s: &mut impl Read) -> (u8, Vec<u8>) {
    let mut h = [0u8; 2];
    s.read_exact(&mut h).expect("frame header");
    assert_eq!(h[1] & 0x80, 0, "server frames must not be masked");
    let len = match h[1] & 0x7f {
        126 => {
            let mut b = [0u8; 2];
            s.read_exact(&mut b).unwrap();
            u16::from_be_bytes(b) as usize
        }
        127 => {
            let mut b = [0u8; 8];
            s.read_exact(&mut b).unwrap();
            u64::from_be_bytes(b) as usize
        }
        n => n as usize,
    };
    let mut payload = vec![0; len];
    s.read_exact(&mut payload).expect("frame payload");
    (h[0], payload)
}

/// Reads until EOF, asserting the server closed the TCP connection with nothing more to say.
pub fn expect_eof(s: &mut TcpStream) {
    let mut rest = Vec::new();
    match s.read_to_end(&mut rest) {
        Ok(_) => assert!(rest.is_empty(), "unexpected bytes before EOF: {rest:?}"),
        Err(e) => assert_eq!(e.kind(), io::ErrorKind::ConnectionReset, "{e}"),
    }
}

/// Fetches a path with a plain HTTP GET that asks the server to close after answering.
pub fn get(addr: SocketAddr, path: &str) -> (u16, String, String) {
    http(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes(),
    )
}

/// A tungstenite client subscribed to `channel`.
pub fn tungstenite_client(
    url: &str,
    channel: &str,
) -> tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<TcpStream>> {
    use tungstenite::client::IntoClientRequest;
    let mut req = url.into_client_request().unwrap();
    req.headers_mut()
        .insert("Sec-WebSocket-Protocol", channel.parse().unwrap());
    let (ws, resp) = tungstenite::connect(req).expect("tungstenite connect");
    assert_eq!(resp.status(), 101);
    assert_eq!(
        resp.headers()["sec-websocket-protocol"].to_str().unwrap(),
        channel
    );
    if let tungstenite::stream::MaybeTlsStream::Plain(s) = ws.get_ref() {
        s.set_read_timeout(Some(TIMEOUT)).unwrap();
    }
    ws
}

/// Reads lines from a child's stderr until one contains `needle`.
pub fn wait_for_line(r: &mut impl BufRead, needle: &str) -> String {
    let mut line = String::new();
    loop {
        line.clear();
        assert!(r.read_line(&mut line).unwrap() > 0, "EOF before {needle:?}");
        if line.contains(needle) {
            return line;
        }
    }
}

pub fn buffered<R: Read>(r: R) -> BufReader<R> {
    BufReader::new(r)
}

/// Reads one HTTP response from a persistent connection (by its Content-Length).
pub fn read_one_response(r: &mut impl BufRead) -> (u16, String, Vec<u8>) {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        assert!(
            r.read_line(&mut line).unwrap() > 0,
            "EOF inside a response head: {head}"
        );
        if line == "\r\n" {
            break;
        }
        head.push_str(&line);
    }
    let status = head[9..12].parse().unwrap();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .expect("Content-Length")
        .trim()
        .parse()
        .unwrap();
    let mut body = vec![0; len];
    r.read_exact(&mut body).unwrap();
    (status, head, body)
}

/// A `POST /publish/{channel}` request.
pub fn publish_request(channel: &str, content_type: &str, body: &[u8], extra: &str) -> Vec<u8> {
    let mut req = format!(
        "POST /publish/{channel} HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\n\
         Content-Length: {}\r\n{extra}\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    req
}

/// Publishes `body` as text to `channel` with `POST /publish` and asserts the `200`; returns
/// the response body.
pub fn publish_http(addr: SocketAddr, channel: &str, body: &str) -> String {
    let req = publish_request(
        channel,
        "text/plain",
        body.as_bytes(),
        "Connection: close\r\n",
    );
    let (status, _, body) = http(addr, &req);
    assert_eq!(status, 200, "{body}");
    body
}

thread_local! {
    static SCRAPES: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// How many times this thread (this test) has scraped `/metrics` with [`metric`]: each scrape
/// is one send by the server.
pub fn scrape_count() -> u64 {
    SCRAPES.with(|n| n.get())
}

/// The value of an unlabelled sample in `GET /metrics`.
pub fn metric(addr: SocketAddr, name: &str) -> u64 {
    SCRAPES.with(|n| n.set(n.get() + 1));
    let (status, _, body) = get(addr, "/metrics");
    assert_eq!(status, 200);
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{body}"))
}

/// Scrapes `/metrics` until `name` satisfies `ok` (the server has processed what the test
/// sent), and returns the value; fails after [`TIMEOUT`].
pub fn await_metric(addr: SocketAddr, name: &str, mut ok: impl FnMut(u64) -> bool) -> u64 {
    let deadline = std::time::Instant::now() + TIMEOUT;
    loop {
        let value = metric(addr, name);
        if ok(value) {
            return value;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{name} stayed at {value}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The `fanout` binary in a process of its own (for tests that read its memory use).
pub struct ChildServer {
    pub addr: SocketAddr,
    child: std::process::Child,
}

impl ChildServer {
    /// Starts `fanout --listen 127.0.0.1:0 ARGS…` and waits for it to listen.
    pub fn start(args: &[&str]) -> ChildServer {
        use std::process::{Command, Stdio};
        let threads = test_threads().to_string();
        let mut child = Command::new(env!("CARGO_BIN_EXE_fanout"))
            .args(["--listen", "127.0.0.1:0", "--threads", &threads])
            .args(args)
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
        // Keep draining its log so it never blocks on a full pipe.
        std::thread::spawn(move || io::copy(&mut stderr, &mut io::sink()));
        ChildServer { addr, child }
    }

    /// Its process id (to send it signals).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The memory it really holds, in bytes: its anonymous resident pages (`RssAnon`: heap,
    /// stacks), not the pages of its executable that running a code path for the first time
    /// maps in (part of `VmRSS`, and megabytes in a debug build).
    pub fn rss(&self) -> usize {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let kib: usize = status
            .lines()
            .find_map(|l| l.strip_prefix("RssAnon:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .expect("RssAnon");
        kib * 1024
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `Handle::publish` is asynchronous (and with several loops, handled by another loop than a
/// new connection's): waits until `GET /channels/{name}` answers `want`.
pub fn await_channel(addr: SocketAddr, name: &str, want: &str) {
    let deadline = std::time::Instant::now() + TIMEOUT;
    loop {
        let (_, _, body) = get(addr, &format!("/channels/{name}"));
        if body == want {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "/channels/{name}: {body}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}
