//! fanout: a WebSocket pub/sub broadcast server on one `mio` event loop.
//!
//! A client picks a channel with `Sec-WebSocket-Protocol`; every data message it sends is
//! delivered to every other subscriber of that channel. Other threads publish through a
//! [`Handle`].
//!
//! # Architecture
//!
//! ```text
//!            accept / read                      encode once           one sendmsg per
//!  sockets ─────────────────┐                 ┌──────────────┐        dirty connection
//!                           ▼                 │ SharedFrame  │        per loop turn
//!   ┌───────────── server.rs: Poll + Slab<Connection> ──────────────────────────────┐
//!   │  connection.rs ──bytes──▶ proto::handshake  (HTTP/1.1 upgrade, refusals)        │
//!   │                 ──bytes──▶ proto::session    (frames, masks, UTF-8, close) ──┐  │
//!   │                                                                  Message    │  │
//!   │  inbox.rs (crossbeam + Waker) ── Handle::publish ─────────────────────────┐ │  │
//!   │                                                                          ▼ ▼  │
//!   │  registry.rs: channel ─▶ [keys]  ──▶  broadcast.rs: OutQueue.push(Arc clone)  │
//!   │  timers.rs: deadline heap (handshake timeout, ping, idle, close wait)         │
//!   └───────────────────────────────────────────────────────────────────────────────┘
//! ```
//!
//! Only `server.rs` and `connection.rs` import `mio` or touch a socket. Everything under
//! [`proto`] is sans-I/O: it takes bytes (and the time, when it needs it) and returns values,
//! so the protocol is tested byte for byte without a network, and the load generator reuses it
//! from the client side.
//!
//! The loop follows mio's rules: it drains accepts, the inbox and writes until `WouldBlock` or
//! empty; reads stop early only when a read came back short (the socket is drained; a new
//! edge fires for later data) or after a fairness cap (the connection is re-read next turn);
//! and every handler tolerates spurious events. There is one `Waker` per `Poll`, shared by
//! every [`Handle`] through an `Arc`.
//!
//! # Layout
//!
//! - [`config`]: every limit and default, with the reason for it; also the CLI.
//! - [`proto`]: the RFC 6455 core: [`proto::handshake`], [`proto::frame`], [`proto::mask`],
//!   [`proto::utf8`], [`proto::close`], [`proto::session`].
//! - [`registry`]: channel → subscribers, O(1) join and leave, and history.
//! - [`hub`]: who gets what: the fan-out, one contiguous batch per channel per turn, and the
//!   slow-consumer policy, with no socket in sight.
//! - [`broadcast`]: the shared encoded frame and each connection's outbound queue.
//! - [`inbox`]: publishing from other threads.
//! - [`timers`]: the deadline queue.
//! - [`metrics`]: the loop's counters and their Prometheus exposition.
//! - [`memory`]: giving freed memory back to the operating system after a burst.
//! - [`server`]: the event loop; [`connection`]: one client's socket and state.
#![deny(missing_docs)]

pub mod broadcast;
pub mod config;
pub mod connection;
pub mod directory;
pub mod hub;
pub mod inbox;
pub mod memory;
pub mod metrics;
pub mod node;
pub mod proto;
pub mod server;
pub mod timers;

pub use broadcast::Message;
pub use config::Config;
pub use inbox::{Handle, PublishError, Stopped};
pub use metrics::Stats;
pub use server::Server;
