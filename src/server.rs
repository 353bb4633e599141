//! The server: `--threads` event loops sharing one [`Node`].
//!
//! [`Server::bind`] makes every loop's poller, listener and inbox up front (so binding fails
//! before anything runs), the node that links them, and a [`Handle`]; [`Server::run`] runs
//! loop 0 on the calling thread and the others on threads of their own, until a shutdown has
//! closed every loop's connections.
//!
//! Each loop has its own listener on the same address (`SO_REUSEPORT`): the kernel spreads
//! new connections over the loops by a hash of their addresses, with no acceptor thread and
//! no hand-over of sockets between loops, so a connection lives on the loop that accepted it
//! from its first byte to its last. (One acceptor handing sockets round-robin would spread
//! them more evenly, at the price of a cross-thread send and a wake-up per connection and one
//! thread on the accept path; with the kernel's hash, a connect storm is accepted by every
//! loop at once.)

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use mio::net::TcpListener;
use mio::{Poll, Waker};
use tracing::info;

use crate::auth::AuthKeys;
use crate::backplane::{Backplane, Settings};
use crate::config::{self, Config};
use crate::directory::Directory;
use crate::inbox::{self, Handle};
use crate::node::Node;
use crate::proto::handshake;
use crate::tls::Certificates;

mod accept;
mod dispatch;
mod event_loop;
mod http;
mod input;
mod table;

use event_loop::{Loop, WAKER};
pub use event_loop::{READS_PER_TURN, WORK_PER_TURN};

/// A bound fanout server. [`Server::run`] drives it until it is shut down.
pub struct Server {
    loops: Vec<Loop>,
    node: Arc<Node>,
    local_addr: SocketAddr,
}

impl Server {
    /// Binds every loop's listener and prepares the loops; nothing is served until
    /// [`Server::run`]. With `--tls-cert` and `--tls-key` the certificate is loaded here: an
    /// error is `InvalidInput` wrapping a [`crate::tls::TlsError`] that names the file.
    pub fn bind(config: Config) -> io::Result<Server> {
        if let Some(name) = &config.default_channel
            && !handshake::is_channel(name.as_bytes())
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "--default-channel {name:?} is not a valid channel name (a token of 1-64 bytes)"
                ),
            ));
        }
        let auth = AuthKeys::from_config(
            config.auth_hmac_secret.as_deref(),
            config.auth_public_key.as_deref(),
        )
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        let tls =
            Certificates::from_settings(config.tls_cert.as_deref(), config.tls_key.as_deref())
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?
                .map(Arc::new);
        let threads = config.threads.resolve();
        let reuse_port = threads > 1;
        let first = listen(config.listen, reuse_port)?;
        let local_addr = first.local_addr()?;
        let mut parts = Vec::with_capacity(threads);
        let mut links = Vec::with_capacity(threads);
        for i in 0..threads {
            let poll = Poll::new()?;
            let listener = if i == 0 {
                None
            } else {
                Some(listen(local_addr, reuse_port)?)
            };
            let (link, inbox) = inbox::channel(Waker::new(poll.registry(), WAKER)?);
            links.push(link);
            parts.push((poll, listener, inbox));
        }
        let max_connections = config.max_connections.unwrap_or_else(|| {
            let (soft, _) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap_or((1024, 1024));
            (soft as usize).saturating_sub(config::RESERVED_FDS).max(1)
        });
        let (backplane, interest) = match Settings::from_config(&config)? {
            Some(settings) => {
                let (backplane, interest) = Backplane::new(settings);
                (Some(backplane), Some(interest))
            }
            None => (None, None),
        };
        let directory = Directory::new(
            config.history,
            config.history_ttl,
            config.max_history_memory,
        )
        .with_max_channels(config.max_channels)
        .with_deflate(config.deflate)
        .with_interest(interest);
        let node = Arc::new(Node::new(
            config,
            max_connections,
            directory,
            links.into(),
            auth,
            tls,
            backplane,
        ));
        if let Some(backplane) = &node.backplane {
            backplane.start(Handle::new(node.links.clone()), node.directory.clone())?;
        }
        let mut first = Some(first);
        let loops = (parts.into_iter().enumerate())
            .map(|(i, (poll, listener, inbox))| {
                let listener = listener.or_else(|| first.take()).expect("a listener");
                Loop::new(i, node.clone(), poll, listener, inbox)
            })
            .collect::<io::Result<_>>()?;
        Ok(Server {
            loops,
            node,
            local_addr,
        })
    }

    /// The address the server listens on (useful after binding port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The effective connection limit, all loops together.
    pub fn max_connections(&self) -> usize {
        self.node.max_connections
    }

    /// A handle for publishing from other threads and for shutting down.
    pub fn handle(&self) -> Handle {
        Handle::new(self.node.links.clone()).with_tls(self.node.tls.clone())
    }

    /// Runs every loop until a shutdown completes (all connections closed, or the shutdown
    /// timeout passed). Loop 0 runs on this thread. A loop that fails or panics takes the
    /// others down: the error (or the panic) is returned once they have all stopped.
    pub fn run(self) -> io::Result<()> {
        info!(
            addr = %self.local_addr,
            loops = self.loops.len(),
            max_connections = self.node.max_connections,
            tls = self.node.tls.is_some(),
            "listening"
        );
        let mut loops = self.loops.into_iter();
        let first = loops.next().expect("at least one loop");
        let threads: Vec<_> = loops
            .map(|l| {
                let id = l.id;
                std::thread::Builder::new()
                    .name(format!("fanout-loop-{id}"))
                    .spawn(move || l.run())
            })
            .collect::<io::Result<_>>()?;
        let mut result = first.run();
        let handle = Handle::new(self.node.links.clone());
        if result.is_err() {
            let _ = handle.shutdown();
        }
        for thread in threads {
            match thread.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    let _ = handle.shutdown();
                    result = result.and(Err(e));
                }
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        result
    }
}

/// Binds a non-blocking listener with a deep accept queue, with `SO_REUSEPORT` when several
/// loops listen on the same address. mio's own `bind` listens with a backlog of 128, which a
/// burst of connects overflows: every dropped SYN then costs its client a one-second
/// retransmit. The kernel caps the value at `net.core.somaxconn`.
fn listen(addr: SocketAddr, reuse_port: bool) -> io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(config::LISTEN_BACKLOG)?;
    Ok(TcpListener::from_std(socket.into()))
}
