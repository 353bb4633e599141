//! fanout: a WebSocket pub/sub broadcast server on `mio` event loops (one by default).
//!
//! A client picks a channel with `Sec-WebSocket-Protocol`; every data message it sends is
//! delivered to every other subscriber of that channel. Other threads publish through a
//! [`Handle`].
//!
//! # Architecture
//!
//! ```text
//!                 ┌──────────── node.rs (one per process, Arc, read-mostly) ────────────┐
//!                 │ config · directory.rs: channel → loops with subscribers, history    │
//!                 │ global budgets (connections, input memory) · loops' counters        │
//!                 └──────▲───────────────────────────────▲─────────────────────────────┘
//!  sockets               │ joins, leaves, history        │
//!     │     ┌─ loop 0 (server/event_loop.rs): Poll + listener + Slab<Connection> ──┐
//!     └────▶│ connection.rs ─bytes─▶ proto::handshake / proto::http / proto::session│
//!           │                                   │ message, encoded once           │
//!           │ hub.rs: channel → [keys] ◀────────┘   (sans-I/O: who gets what)      │
//!           │   end of turn: one batch per channel ─▶ OutQueue.push(Arc) ─▶ sendmsg │
//!           │   hand-offs: the same Arc frames, one send + one wake-up per loop ────┼─▶ loop 1..N
//!           │ inbox.rs: Handle commands + other loops' hand-offs (crossbeam + Waker)│
//!           │ timers.rs: deadline heap (handshake timeout, ping, idle, close wait)  │
//!           └────────────────────────────────────────────────────────────────────────┘
//! ```
//!
//! - **The loop** (one per thread, `--threads`): the poller, its listener (`SO_REUSEPORT`),
//!   its connections, dirty and re-read lists, timers. Only it and `connection.rs` import
//!   `mio` or touch a socket. A connection's transport is plain TCP or TLS (`--tls-cert`:
//!   rustls, driven by the connection over its socket, see [`tls::stream`]); above it
//!   everything sees plaintext, and a broadcast is still encoded once for every transport.
//! - **The hub** (one per loop, no I/O): the loop's channels and subscriber keys, the batch
//!   of each channel's frames per turn, the slow-consumer policy, and what to hand to which
//!   other loop. It works on the loop's connection table through a small trait, so it is
//!   tested without sockets.
//! - **The node** (one per process): configuration, the channel directory (which loops have
//!   subscribers of a channel), history, the process-wide budgets, and each loop's counters
//!   merged when `/metrics` is scraped.
//!
//! Everything under [`proto`] is sans-I/O: it takes bytes (and the time, when it needs it)
//! and returns values, so the protocol is tested byte for byte without a network, and the
//! load generator reuses it from the client side.
//!
//! Each loop follows mio's rules: it drains accepts, the inbox and writes until `WouldBlock`
//! or empty; reads stop early only when a read came back short (the socket is drained; a new
//! edge fires for later data) or after the connection's share of a turn (it is re-read next
//! turn); and every handler tolerates spurious events. There is one `Waker` per `Poll`,
//! shared by every [`Handle`] and the other loops.
//!
//! # Layout
//!
//! - [`config`]: every limit and default, with the reason for it; also the CLI.
//! - [`proto`]: the RFC 6455 core: [`proto::handshake`], [`proto::frame`], [`proto::mask`],
//!   [`proto::utf8`], [`proto::close`], [`proto::session`], and [`proto::deflate`]
//!   (permessage-deflate: compressed once per message, no state per connection).
//! - [`node`]: what the loops share; [`directory`]: every channel, its loops, its history.
//! - [`hub`]: who gets what on one loop: the fan-out, one contiguous batch per channel per
//!   turn, hand-offs to other loops, and the slow-consumer policy, with no socket in sight.
//! - [`broadcast`]: the shared encoded frame and each connection's outbound queue.
//! - [`inbox`]: publishing from other threads, and loops handing each other messages.
//! - [`timers`]: the deadline queue.
//! - [`metrics`]: the loops' counters and their Prometheus exposition.
//! - [`memory`]: giving freed memory back to the operating system after a burst.
//! - [`backplane`]: several nodes through Redis pub/sub: a bridge thread per connection,
//!   talking to the loops through the inbox; [`backplane::envelope`] is its wire format.
//! - [`auth`]: JWT verification, channel grants and per-connection rate limits (sans-I/O).
//! - [`tls`]: `wss://` and `https://` (rustls): the certificate files and their reloadable
//!   holder, and [`tls::stream`], the TLS transport a connection drives over its socket.
//! - [`server`]: the loops and their threads; [`connection`]: one client's socket and state.
#![deny(missing_docs)]

pub mod auth;
pub mod backplane;
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
pub mod tls;

pub use broadcast::Message;
pub use config::Config;
pub use inbox::{Handle, PublishError, Stopped};
pub use metrics::Stats;
pub use server::Server;
