//! The client side of the project's WebSocket codec, sans I/O: nothing here touches a socket.
//!
//! - [`handshake`]: the upgrade request (§4.1) and the checks on the server's `101` answer.
//! - [`reader`]: a streaming reader of server frames that keeps only what loadgen needs, with a
//!   scan that walks whole frames of a large read without state.
//! - [`writer`]: masked client frames (§5.3) carrying a [`stamp::Stamp`].
//! - [`stamp`]: the header every published payload starts with.
//! - [`inflate`]: the head of a permessage-deflate message (RFC 7692), inflated just enough.
//!
//! Frame headers are parsed and encoded by `fanout::proto::frame` and masked by
//! `fanout::proto::mask`, the same code the server runs, used here from the client's side.

pub mod handshake;
pub mod inflate;
pub mod reader;
pub mod stamp;
pub mod writer;
