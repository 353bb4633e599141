//! `loadgen peer`: the client contract served with tokio + tokio-tungstenite, written the way a
//! competent user would — the reference point fanout is compared against.
//!
//! - The channel is the first offered `Sec-WebSocket-Protocol` token, echoed in the `101`; a
//!   client that offers none is refused with `400`.
//! - A registry maps channel → members; each member is a bounded `mpsc` sender feeding that
//!   connection's own writer task, which writes whatever is queued and flushes once per batch.
//! - A message is received once and shared: tungstenite's `Message` holds `Bytes`, so the clone
//!   queued for each other member is a reference-count increment, not a copy (tungstenite
//!   still frames it once per member).
//! - A member whose queue is full is a slow consumer: it is dropped from the channel and its
//!   connection closes once its queue drains; nobody else waits for it.
//! - One thread by default (`new_current_thread`), one core like fanout; `--threads N` runs the
//!   multi-threaded runtime.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};

use crate::cli::PeerArgs;

/// Channel → member id → that member's queue.
#[derive(Default)]
struct Registry {
    channels: Mutex<HashMap<String, HashMap<u64, mpsc::Sender<Message>>>>,
}

impl Registry {
    fn join(&self, channel: &str, id: u64, tx: mpsc::Sender<Message>) {
        let mut map = self.channels.lock().expect("registry lock");
        map.entry(channel.to_string()).or_default().insert(id, tx);
    }

    fn leave(&self, channel: &str, id: u64) {
        let mut map = self.channels.lock().expect("registry lock");
        if let Some(members) = map.get_mut(channel) {
            members.remove(&id);
            if members.is_empty() {
                map.remove(channel);
            }
        }
    }

    /// Queues `msg` for every member of `channel` but `from`; drops members whose queue is full.
    fn publish(&self, channel: &str, from: u64, msg: &Message) {
        let mut map = self.channels.lock().expect("registry lock");
        let Some(members) = map.get_mut(channel) else {
            return;
        };
        members.retain(|&id, tx| {
            id == from
                || !matches!(
                    tx.try_send(msg.clone()),
                    Err(mpsc::error::TrySendError::Full(_))
                )
        });
    }
}

/// The first offered subprotocol that is a valid channel name (an RFC 7230 token, 1–64 bytes).
fn offered_channel(req: &Request) -> Option<String> {
    let offered = req.headers().get("sec-websocket-protocol")?.to_str().ok()?;
    let first = offered.split(',').map(str::trim).next()?;
    let token = |c: u8| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c);
    (!first.is_empty() && first.len() <= 64 && first.bytes().all(token)).then(|| first.to_string())
}

// The callback's signature is tungstenite's; its error type is an HTTP response by design.
#[allow(clippy::result_large_err)]
async fn serve_conn(stream: TcpStream, registry: Arc<Registry>, id: u64, queue: usize) {
    let _ = stream.set_nodelay(true);
    let mut channel = None;
    let choose = |req: &Request, mut resp: Response| -> Result<Response, ErrorResponse> {
        let Some(ch) = offered_channel(req) else {
            let mut refusal =
                ErrorResponse::new(Some("offer a channel in Sec-WebSocket-Protocol\n".into()));
            *refusal.status_mut() = StatusCode::BAD_REQUEST;
            return Err(refusal);
        };
        let value = HeaderValue::from_str(&ch).expect("a token is a valid header value");
        resp.headers_mut().insert("sec-websocket-protocol", value);
        channel = Some(ch);
        Ok(resp)
    };
    let Ok(ws) = tokio_tungstenite::accept_hdr_async(stream, choose).await else {
        return;
    };
    let Some(channel) = channel else { return };
    let (mut sink, mut source) = ws.split();
    let (tx, mut rx) = mpsc::channel::<Message>(queue);
    registry.join(&channel, id, tx);
    let writer = tokio::spawn(async move {
        while let Some(msg) = rx.recv().await {
            if sink.feed(msg).await.is_err() {
                return;
            }
            while let Ok(more) = rx.try_recv() {
                if sink.feed(more).await.is_err() {
                    return;
                }
            }
            if sink.flush().await.is_err() {
                return;
            }
        }
        let _ = sink.close().await;
    });
    while let Some(Ok(msg)) = source.next().await {
        match msg {
            Message::Binary(_) | Message::Text(_) => registry.publish(&channel, id, &msg),
            Message::Close(_) => break,
            _ => {}
        }
    }
    registry.leave(&channel, id);
    writer.abort();
}

async fn accept_loop(listener: TcpListener, queue: usize, mut stop: oneshot::Receiver<()>) {
    let registry = Arc::new(Registry::default());
    let ids = AtomicU64::new(0);
    loop {
        tokio::select! {
            _ = &mut stop => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let id = ids.fetch_add(1, Ordering::Relaxed);
                    tokio::spawn(serve_conn(stream, registry.clone(), id, queue));
                }
                // Out of file descriptors, or the like: back off instead of spinning.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
        }
    }
}

/// Listen backlog: `TcpListener::bind`'s 128 overflows under a burst of connects (each
/// overflow costs the client a 1 s SYN retransmit), so a server expecting bursts asks for more.
const BACKLOG: u32 = 1024;

fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

fn runtime(threads: usize) -> io::Result<tokio::runtime::Runtime> {
    if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    }
}

/// Serves until SIGINT/SIGTERM (the `loadgen peer` command).
pub fn serve(args: &PeerArgs) -> io::Result<()> {
    let rt = runtime(args.threads)?;
    rt.block_on(async {
        let listener = bind(args.listen)?;
        eprintln!(
            "loadgen peer: tokio-tungstenite listening on {}",
            listener.local_addr()?
        );
        let (stop_tx, stop_rx) = oneshot::channel();
        tokio::spawn(async move {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("SIGTERM handler");
            tokio::select! { _ = tokio::signal::ctrl_c() => {}, _ = term.recv() => {} }
            let _ = stop_tx.send(());
        });
        accept_loop(listener, args.queue, stop_rx).await;
        Ok(())
    })
}

/// A peer running on its own thread (for tests); stops when dropped.
pub struct PeerServer {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl PeerServer {
    /// Starts a current-thread peer on `listen` (use port 0 for any free port).
    pub fn start(listen: SocketAddr) -> io::Result<PeerServer> {
        let std_listener = std::net::TcpListener::bind(listen)?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let rt = runtime(1)?;
        let (stop, stop_rx) = oneshot::channel();
        let thread = std::thread::spawn(move || {
            rt.block_on(async move {
                let listener = TcpListener::from_std(std_listener).expect("listener");
                accept_loop(listener, 65536, stop_rx).await;
            })
        });
        Ok(PeerServer {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for PeerServer {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
