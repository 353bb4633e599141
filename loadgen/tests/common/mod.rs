//! Shared helpers: an in-process fanout server on 127.0.0.1:0, the in-tree tokio peer, a
//! deliberately lossy proxy, and a way to run loadgen in-process.
#![allow(dead_code)]

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;

use clap::Parser;
use fanout::proto::Decoded;
use fanout::proto::frame::{OpCode, Role, parse_header};
use loadgen::cli::Cli;
use loadgen::{Outcome, RunError};

/// fanout on its own thread; shut down when dropped.
pub struct Fanout {
    pub addr: SocketAddr,
    handle: fanout::Handle,
    thread: Option<JoinHandle<io::Result<()>>>,
}

impl Fanout {
    /// A fanout with its defaults and `FANOUT_TEST_THREADS` event loops (default 1), as the
    /// server's own suite runs: the README's test command runs this suite with four.
    pub fn start() -> Fanout {
        Fanout::start_with(|_| {})
    }

    /// The same, with `configure` applied to the configuration first.
    pub fn start_with(configure: impl FnOnce(&mut fanout::Config)) -> Fanout {
        let threads = std::env::var("FANOUT_TEST_THREADS")
            .ok()
            .map(|v| v.parse().expect("FANOUT_TEST_THREADS is a number"))
            .unwrap_or(1);
        let mut config = fanout::Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            threads: fanout::config::Threads::Count(threads),
            ..fanout::Config::default()
        };
        configure(&mut config);
        let server = fanout::Server::bind(config).expect("bind fanout");
        let addr = server.local_addr();
        let handle = server.handle();
        let thread = Some(std::thread::spawn(move || server.run()));
        Fanout {
            addr,
            handle,
            thread,
        }
    }

    pub fn url(&self) -> String {
        format!("ws://{}/", self.addr)
    }
}

impl Drop for Fanout {
    fn drop(&mut self) {
        let _ = self.handle.shutdown();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Runs loadgen in-process with a command line (without the program name), quietly.
pub fn loadgen(cmdline: &str) -> Result<Outcome, RunError> {
    let argv = ["loadgen"]
        .into_iter()
        .chain(cmdline.split_whitespace())
        .chain(["--quiet"]);
    loadgen::run(Cli::try_parse_from(argv).expect("valid loadgen flags"))
}

/// A TCP proxy that forwards everything, except that on each connection it drops every
/// `nth` data frame the server sends (counting from the first), and counts what it dropped.
pub struct LossyProxy {
    pub addr: SocketAddr,
    pub dropped: Arc<AtomicU64>,
}

impl LossyProxy {
    pub fn start(upstream: SocketAddr, nth: u64) -> LossyProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let dropped = Arc::new(AtomicU64::new(0));
        let counter = dropped.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(server) = TcpStream::connect(upstream) else {
                    continue;
                };
                let _ = (client.set_nodelay(true), server.set_nodelay(true));
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                std::thread::spawn(move || pipe(c2, s2));
                let counter = counter.clone();
                std::thread::spawn(move || lossy_pipe(server, client, nth, &counter));
            }
        });
        LossyProxy { addr, dropped }
    }

    pub fn url(&self) -> String {
        format!("ws://{}/", self.addr)
    }

    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::SeqCst)
    }
}

/// Client → server: bytes unchanged.
fn pipe(mut from: TcpStream, mut to: TcpStream) {
    let _ = io::copy(&mut from, &mut to);
    let _ = to.shutdown(Shutdown::Write);
}

/// Server → client: the response head unchanged, then frame by frame, dropping every `nth`
/// data frame.
fn lossy_pipe(mut from: TcpStream, mut to: TcpStream, nth: u64, dropped: &AtomicU64) {
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let mut head_done = false;
    let mut data_frames = 0u64;
    loop {
        let n = match from.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        let mut at = 0;
        if !head_done {
            let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                continue;
            };
            at = end + 4;
            if to.write_all(&buf[..at]).is_err() {
                break;
            }
            head_done = true;
        }
        let mut out = Vec::new();
        while let Ok(Decoded::Complete((h, hl))) = parse_header(&buf[at..], Role::Client) {
            let len = hl + h.payload_len as usize;
            if buf.len() - at < len {
                break;
            }
            let data = matches!(h.opcode, OpCode::Binary | OpCode::Text);
            data_frames += u64::from(data);
            if data && data_frames.is_multiple_of(nth) {
                dropped.fetch_add(1, Ordering::SeqCst);
            } else {
                out.extend_from_slice(&buf[at..at + len]);
            }
            at += len;
        }
        buf.drain(..at);
        if to.write_all(&out).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}
