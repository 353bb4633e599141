//! fanout: a WebSocket pub/sub broadcast server on one mio event loop.
#![deny(missing_docs)]

pub mod broadcast;
pub mod config;
pub mod connection;
pub mod inbox;
pub mod proto;
pub mod registry;
pub mod server;
pub mod timers;

pub use broadcast::Message;
pub use config::Config;
pub use inbox::{Handle, Stopped};
pub use server::Server;
