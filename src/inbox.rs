//! The ways into a loop from outside it: [`Handle`] commands from other threads (publish,
//! shut down), and hand-offs of messages from the other loops, each through a
//! `crossbeam-channel`, plus the loop's one `mio::Waker`.
//!
//! A [`Handle`] is cheap to clone and `Send`. To avoid one `eventfd` write per message, a shared
//! flag per loop records whether a wake-up is already pending: only the sender that flips it
//! from false to true wakes the loop. The loop clears the flag *before* draining, so a command
//! sent after the drain started either is seen by that drain or flips the flag and wakes the
//! loop again. Loops hand each other what they have at the end of a turn, in one send per
//! target loop, so a loop wakes another at most once per turn.
//!
//! `Handle::publish` encodes the message once, in the caller's thread, and gives the frame to
//! the first loop, which publishes it like a message from one of its clients: to its own
//! subscribers and, by hand-off, to the other loops that have subscribers of the channel.

use std::fmt;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crossbeam_channel::{Receiver, Sender};
use mio::Waker;

use crate::broadcast::{Broadcast, Message};
use crate::directory::Shared;
use crate::proto::handshake::is_channel;
use crate::tls::{Certificates, TlsError};

/// How many commands may wait for the first loop before [`Handle::publish`] blocks
/// (backpressure on publishers instead of unbounded memory).
pub const INBOX_CAPACITY: usize = 64 * 1024;

/// A command for a loop.
#[derive(Debug)]
pub enum Command {
    /// Broadcast an encoded frame to every subscriber of `channel`.
    Publish {
        /// The channel name.
        channel: String,
        /// The frame, encoded once.
        frame: Broadcast,
    },
    /// A message from another node (through the backplane): delivered like `Publish`, but
    /// not published to the backplane again.
    Remote {
        /// The channel name.
        channel: String,
        /// The frame, encoded once.
        frame: Broadcast,
    },
    /// Close every connection with 1001 and stop.
    Shutdown,
}

/// A message one loop hands another: the same shared frame, never a copy.
#[derive(Clone, Debug)]
pub struct Handoff {
    /// The channel.
    pub channel: Arc<Shared>,
    /// The frame.
    pub frame: Broadcast,
    /// The loop it arrived on, and its sequence number there (for the history seam, see
    /// [`crate::directory`]).
    pub origin: usize,
    /// See `origin`.
    pub seq: u64,
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

/// One loop's ways in, held by the others and by every [`Handle`].
#[derive(Debug)]
pub struct Link {
    commands: Sender<Command>,
    handoffs: Sender<Vec<Handoff>>,
    waker: Waker,
    wake_pending: Arc<AtomicBool>,
}

impl Link {
    fn wake(&self) -> io::Result<()> {
        if !self.wake_pending.swap(true, Ordering::AcqRel) {
            self.waker.wake()?;
        }
        Ok(())
    }

    fn command(&self, cmd: Command) -> Result<(), Stopped> {
        self.commands.send(cmd).map_err(|_| Stopped)?;
        self.wake().map_err(|_| Stopped)
    }

    /// Hands a turn's messages to this loop and wakes it (unless a wake-up is pending). Never
    /// blocks: a loop must not wait for another.
    pub fn hand_off(&self, batch: Vec<Handoff>) -> Result<(), Stopped> {
        self.handoffs.send(batch).map_err(|_| Stopped)?;
        self.wake().map_err(|_| Stopped)
    }
}

/// A loop's ends of its channels, and the [`Link`] others reach it through.
pub fn channel(waker: Waker) -> (Link, Inbox) {
    let (commands, command_rx) = crossbeam_channel::bounded(INBOX_CAPACITY);
    let (handoffs, handoff_rx) = crossbeam_channel::unbounded();
    let wake_pending = Arc::new(AtomicBool::new(false));
    let link = Link {
        commands,
        handoffs,
        waker,
        wake_pending: wake_pending.clone(),
    };
    let inbox = Inbox {
        commands: command_rx,
        handoffs: handoff_rx,
        wake_pending,
    };
    (link, inbox)
}

/// A cloneable, `Send` handle for publishing into a running server, rotating its TLS
/// certificate and stopping it.
#[derive(Clone, Debug)]
pub struct Handle {
    links: Arc<[Link]>,
    tls: Option<Arc<Certificates>>,
}

impl Handle {
    /// A handle over the loops' links.
    pub fn new(links: Arc<[Link]>) -> Self {
        Handle { links, tls: None }
    }

    /// The same handle, able to reload the server's TLS certificate (see
    /// [`Handle::reload_tls`]).
    pub fn with_tls(self, tls: Option<Arc<Certificates>>) -> Self {
        Handle { tls, ..self }
    }

    /// Reads `--tls-cert` and `--tls-key` again (what SIGHUP does): connections accepted from
    /// now on, on every loop, use the new certificate; established ones are untouched. On an
    /// error (logged too) the old certificate stays in force.
    pub fn reload_tls(&self) -> Result<(), TlsError> {
        self.tls.as_ref().ok_or(TlsError::NotConfigured)?.reload()
    }

    /// Publishes `message` to every subscriber of `channel` (none is fine). Blocks while the
    /// first loop is [`INBOX_CAPACITY`] commands behind. A name no client could subscribe to
    /// is refused here, before it could create a channel (with `--history`) nobody can join.
    pub fn publish(&self, channel: &str, message: impl Into<Message>) -> Result<(), PublishError> {
        if !is_channel(channel.as_bytes()) {
            return Err(PublishError::InvalidChannel);
        }
        Ok(self.links[0].command(Command::Publish {
            channel: channel.to_owned(),
            frame: message.into().encode(),
        })?)
    }

    /// Hands a message from another node to the first loop (the backplane's subscriber
    /// thread; one thread and one loop keep each origin's order). Blocks while that loop is
    /// [`INBOX_CAPACITY`] commands behind.
    pub(crate) fn remote(&self, channel: &str, frame: Broadcast) -> Result<(), Stopped> {
        self.links[0].command(Command::Remote {
            channel: channel.to_owned(),
            frame,
        })
    }

    /// Asks the server to shut down gracefully (as SIGTERM does): every loop closes its
    /// connections. Returns at once.
    pub fn shutdown(&self) -> Result<(), Stopped> {
        let mut sent = false;
        for link in self.links.iter() {
            sent |= link.command(Command::Shutdown).is_ok();
        }
        if sent { Ok(()) } else { Err(Stopped) }
    }
}

/// A loop's end of its channels.
#[derive(Debug)]
pub struct Inbox {
    commands: Receiver<Command>,
    handoffs: Receiver<Vec<Handoff>>,
    wake_pending: Arc<AtomicBool>,
}

impl Inbox {
    /// Called when the waker fired: re-arms the wake-up flag before the caller drains.
    pub fn rearm(&self) {
        self.wake_pending.store(false, Ordering::Release);
    }

    /// The next waiting command, if any.
    pub fn try_next(&self) -> Option<Command> {
        self.commands.try_recv().ok()
    }

    /// The next batch of messages another loop handed over, if any.
    pub fn try_handoffs(&self) -> Option<Vec<Handoff>> {
        self.handoffs.try_recv().ok()
    }
}
