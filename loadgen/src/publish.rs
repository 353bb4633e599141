//! `loadgen publish`: how many `POST /publish/{channel}` requests one persistent HTTP
//! connection gets accepted per second, and whether each one is delivered.
//!
//! Method: one subscriber joins the channel over WebSocket first. Then one HTTP/1.1 connection
//! sends `--count` publishes back to back, pipelined, with at most `--window` unanswered at a
//! time (a writer thread and a reader thread share the socket). Accepted/s is the number of
//! `200` answers over the time from the first request to the last answer. Delivered counts the
//! frames the subscriber received (each payload carries its sequence number, so loss and order
//! are checked exactly), waiting at most `--drain` after the last answer. Plain blocking
//! sockets: at these rates the server, not this client, is what is measured.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use clap::Args;

use crate::cli::{parse_duration, parse_size};

/// `loadgen publish`.
#[derive(Clone, Debug, Args)]
pub struct PublishArgs {
    /// The server: `http://HOST:PORT/` or `ws://HOST:PORT/` (loopback only; no TLS).
    #[arg(long, default_value = "http://127.0.0.1:8080/")]
    pub url: String,
    /// The channel to publish to.
    #[arg(long, default_value = "publish-bench")]
    pub channel: String,
    /// How many publishes to send.
    #[arg(long, default_value_t = 200_000)]
    pub count: u64,
    /// Body bytes per publish (at least 8: the sequence number).
    #[arg(long, default_value = "64", value_parser = parse_size)]
    pub size: usize,
    /// Most requests sent and not yet answered.
    #[arg(long, default_value_t = 256)]
    pub window: u64,
    /// After the last answer, wait at most this long for deliveries.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub drain: Duration,
    /// Write the figures as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<std::path::PathBuf>,
}

/// What a publish run measured.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PublishReport {
    /// Requests sent.
    pub sent: u64,
    /// `200` answers.
    pub accepted: u64,
    /// Frames the subscriber received, in order and without duplicates.
    pub delivered: u64,
    /// Accepted publishes per second.
    pub accepted_per_sec: f64,
}

/// Runs the publish benchmark.
pub fn run(args: &PublishArgs) -> Result<PublishReport, String> {
    if args.url.starts_with("https://") || args.url.starts_with("wss://") {
        return Err(format!(
            "--url {}: publish speaks plain HTTP only (its reader and writer threads share one \
             blocking socket); measure publishing over TLS-free http://",
            args.url
        ));
    }
    let host = args
        .url
        .trim_start_matches("http://")
        .trim_start_matches("ws://")
        .trim_end_matches('/');
    let addr: std::net::SocketAddr = host
        .parse()
        .map_err(|e| format!("--url: {host:?} is not HOST:PORT ({e})"))?;
    if !addr.ip().is_loopback() {
        return Err(format!("--url {addr}: only loopback targets are allowed"));
    }
    let size = args.size.max(8);
    let subscriber = subscribe(addr, &args.channel)?;
    let count = args.count;
    let drain = args.drain;
    let sub = std::thread::spawn(move || receive(subscriber, count, drain));

    let stream = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
    stream.set_nodelay(true).ok();
    let answered = Arc::new((Mutex::new(0u64), Condvar::new()));
    let accepted = Arc::new(AtomicU64::new(0));
    let reader = {
        let stream = stream.try_clone().map_err(|e| e.to_string())?;
        let (answered, accepted) = (answered.clone(), accepted.clone());
        std::thread::spawn(move || read_answers(stream, count, &answered, &accepted))
    };
    let started = Instant::now();
    write_requests(stream, args, size, &answered)?;
    reader.join().map_err(|_| "reader panicked".to_string())??;
    let elapsed = started.elapsed().as_secs_f64();
    let delivered = sub
        .join()
        .map_err(|_| "subscriber panicked".to_string())??;
    let accepted = accepted.load(Ordering::Relaxed);
    let report = PublishReport {
        sent: count,
        accepted,
        delivered,
        accepted_per_sec: accepted as f64 / elapsed,
    };
    println!(
        "loadgen publish\n  sent                 {}\n  accepted (200)       {}\n  \
         delivered            {}\n  accepted/s           {:.0}\n  elapsed              {:.3}s",
        report.sent, report.accepted, report.delivered, report.accepted_per_sec, elapsed
    );
    if let Some(path) = &args.json {
        let json = serde_json::json!({
            "sent": report.sent, "accepted": report.accepted, "delivered": report.delivered,
            "expected": report.sent, "lost": report.sent - report.delivered,
            "accepted_per_sec": report.accepted_per_sec,
        });
        crate::report::write_json(path, &json)?;
    }
    Ok(report)
}

fn write_requests(
    mut stream: TcpStream,
    args: &PublishArgs,
    size: usize,
    answered: &(Mutex<u64>, Condvar),
) -> Result<(), String> {
    let head = format!(
        "POST /publish/{} HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n\
         Content-Length: {size}\r\n\r\n",
        args.channel
    );
    let mut batch = Vec::with_capacity(64 * (head.len() + size));
    let mut seq = 0u64;
    while seq < args.count {
        // Wait for room in the window, then send as many as fit in one write.
        let room = {
            let (lock, cvar) = answered;
            let guard = cvar
                .wait_while(lock.lock().unwrap(), |done| seq - *done >= args.window)
                .unwrap();
            args.window - (seq - *guard)
        };
        batch.clear();
        for _ in 0..room.min(64).min(args.count - seq) {
            batch.extend_from_slice(head.as_bytes());
            batch.extend_from_slice(&seq.to_be_bytes());
            batch.resize(batch.len() + size - 8, 0);
            seq += 1;
        }
        stream
            .write_all(&batch)
            .map_err(|e| format!("write: {e}"))?;
    }
    Ok(())
}

fn read_answers(
    stream: TcpStream,
    count: u64,
    answered: &(Mutex<u64>, Condvar),
    accepted: &AtomicU64,
) -> Result<(), String> {
    let mut r = BufReader::with_capacity(1 << 16, stream);
    let mut line = String::new();
    for _ in 0..count {
        let (mut status, mut len) = (0u16, 0usize);
        loop {
            line.clear();
            if r.read_line(&mut line).map_err(|e| format!("read: {e}"))? == 0 {
                return Err("the server closed the publishing connection".into());
            }
            if line == "\r\n" {
                break;
            }
            if let Some(s) = line.strip_prefix("HTTP/1.1 ") {
                status = s.get(..3).and_then(|s| s.parse().ok()).unwrap_or(0);
            } else if let Some(v) = line.strip_prefix("Content-Length: ") {
                len = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; len];
        r.read_exact(&mut body)
            .map_err(|e| format!("read body: {e}"))?;
        if status != 200 {
            return Err(format!(
                "publish answered {status}: {}",
                String::from_utf8_lossy(&body)
            ));
        }
        accepted.fetch_add(1, Ordering::Relaxed);
        let (lock, cvar) = answered;
        *lock.lock().unwrap() += 1;
        cvar.notify_one();
    }
    Ok(())
}

fn subscribe(addr: std::net::SocketAddr, channel: &str) -> Result<TcpStream, String> {
    let mut s = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
    let req = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Protocol: {channel}\r\n\r\n"
    );
    s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    let mut head = Vec::new();
    let mut byte = [0u8];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte)
            .map_err(|e| format!("handshake: {e}"))?;
        head.push(byte[0]);
    }
    if !head.starts_with(b"HTTP/1.1 101 ") {
        return Err(format!(
            "subscribe refused: {}",
            String::from_utf8_lossy(&head)
        ));
    }
    Ok(s)
}

/// Reads binary frames carrying sequence numbers; returns how many arrived in order.
fn receive(stream: TcpStream, count: u64, drain: Duration) -> Result<u64, String> {
    stream
        .set_read_timeout(Some(drain))
        .map_err(|e| e.to_string())?;
    let mut r = BufReader::with_capacity(1 << 16, stream);
    let mut next = 0u64;
    while next < count {
        let mut h = [0u8; 2];
        if r.read_exact(&mut h).is_err() {
            break; // Timed out: what did not arrive is lost.
        }
        let len = match h[1] & 0x7f {
            126 => {
                let mut b = [0u8; 2];
                r.read_exact(&mut b).map_err(|e| e.to_string())?;
                u16::from_be_bytes(b) as usize
            }
            127 => {
                let mut b = [0u8; 8];
                r.read_exact(&mut b).map_err(|e| e.to_string())?;
                u64::from_be_bytes(b) as usize
            }
            n => n as usize,
        };
        let mut payload = vec![0; len];
        r.read_exact(&mut payload).map_err(|e| e.to_string())?;
        if h[0] & 0x0f != 2 || len < 8 {
            continue; // A ping, or not ours.
        }
        let seq = u64::from_be_bytes(payload[..8].try_into().unwrap());
        if seq != next {
            return Err(format!("subscriber got message {seq}, expected {next}"));
        }
        next += 1;
    }
    Ok(next)
}
