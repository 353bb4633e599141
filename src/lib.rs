//! fanout: a WebSocket pub/sub broadcast server on one mio event loop. (Architecture docs TBD.)
#![deny(missing_docs)]

pub mod proto;
