//! Publishing from outside the loop: a `crossbeam-channel` of commands plus the loop's one
//! `mio::Waker`.
//!
//! A [`Handle`] is cheap to clone and `Send`. To avoid one `eventfd` write per message, a shared
//! flag records whether a wake-up is already pending: only the sender that flips it from false
//! to true wakes the loop. The loop clears the flag *before* draining, so a command sent after
//! the drain started either is seen by that drain or flips the flag and wakes the loop again.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crossbeam_channel::{Receiver, Sender};
use mio::Waker;

use crate::broadcast::Message;
use crate::proto::handshake::is_channel;

/// How many commands may wait for the loop before [`Handle::publish`] blocks (backpressure on
/// publishers instead of unbounded memory).
pub const INBOX_CAPACITY: usize = 64 * 1024;

/// A command for the loop.
#[derive(Debug)]
pub enum Command {
    /// Broadcast `message` to every subscriber of `channel`.
    Publish {
        /// The channel name.
        channel: String,
        /// The message.
        message: Message,
    },
    /// Close every connection with 1001 and stop.
    Shutdown,
}

/// The server has stopped; the command was not delivered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stopped;

impl fmt::Display for Stopped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the fanout server has stopped")
    }
}

impl std::error::Error for Stopped {}

/// Why [`Handle::publish`] did not deliver a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PublishError {
    /// The name is not one a client could subscribe to (a token of 1–64 bytes), so nobody
    /// could ever receive the message.
    InvalidChannel,
    /// The server has stopped.
    Stopped,
}

impl fmt::Display for PublishError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PublishError::InvalidChannel => {
                f.write_str("invalid channel name: must be a token of 1-64 bytes")
            }
            PublishError::Stopped => Stopped.fmt(f),
        }
    }
}

impl std::error::Error for PublishError {}

impl From<Stopped> for PublishError {
    fn from(_: Stopped) -> Self {
        PublishError::Stopped
    }
}

/// A cloneable, `Send` handle for publishing into a running server and stopping it.
#[derive(Clone, Debug)]
pub struct Handle {
    tx: Sender<Command>,
    waker: Arc<Waker>,
    wake_pending: Arc<AtomicBool>,
}

impl Handle {
    /// Publishes `message` to every subscriber of `channel` (none is fine). Blocks while the
    /// loop is [`INBOX_CAPACITY`] commands behind. A name no client could subscribe to is
    /// refused here, before it could create a channel (with `--history`) nobody can join.
    pub fn publish(&self, channel: &str, message: impl Into<Message>) -> Result<(), PublishError> {
        if !is_channel(channel.as_bytes()) {
            return Err(PublishError::InvalidChannel);
        }
        Ok(self.send(Command::Publish {
            channel: channel.to_owned(),
            message: message.into(),
        })?)
    }

    /// Asks the server to shut down gracefully (as SIGTERM does). Returns at once.
    pub fn shutdown(&self) -> Result<(), Stopped> {
        self.send(Command::Shutdown)
    }

    fn send(&self, cmd: Command) -> Result<(), Stopped> {
        self.tx.send(cmd).map_err(|_| Stopped)?;
        if !self.wake_pending.swap(true, Ordering::AcqRel) {
            self.waker.wake().map_err(|_| Stopped)?;
        }
        Ok(())
    }
}

/// The loop's end of the inbox.
#[derive(Debug)]
pub struct Inbox {
    rx: Receiver<Command>,
    wake_pending: Arc<AtomicBool>,
    handle: Handle,
}

impl Inbox {
    /// An inbox whose handles wake the loop with `waker`.
    pub fn new(waker: Waker) -> Self {
        let (tx, rx) = crossbeam_channel::bounded(INBOX_CAPACITY);
        let wake_pending = Arc::new(AtomicBool::new(false));
        let handle = Handle {
            tx,
            waker: Arc::new(waker),
            wake_pending: wake_pending.clone(),
        };
        Inbox {
            rx,
            wake_pending,
            handle,
        }
    }

    /// A new handle.
    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }

    /// Called when the waker fired: re-arms the wake-up flag before the caller drains.
    pub fn rearm(&self) {
        self.wake_pending.store(false, Ordering::Release);
    }

    /// The next waiting command, if any.
    pub fn try_next(&self) -> Option<Command> {
        self.rx.try_recv().ok()
    }
}
