//! The publisher thread: takes what the loops queued and publishes it to Redis in pipelines.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use redis::{Client, Connection};
use tracing::debug;

use crate::proto::frame::OpCode;

use super::stats::Link;
use super::{
    BackplaneStats, CONNECT_TIMEOUT, FIRST_BACKOFF, IO_TIMEOUT, Outgoing, PUBLISH_BATCH, Settings,
    back_off, envelope,
};

/// How often an idle publisher looks at the stop flag and the subscriber's reconnections.
const IDLE: Duration = Duration::from_millis(100);

/// How often the publisher sends this node a probe through Redis, so the subscriber sees
/// when its connection stopped delivering (see `subscriber::WEDGED_AFTER`).
const PROBE_EVERY: Duration = Duration::from_secs(1);

pub(super) struct Publisher {
    pub(super) settings: Arc<Settings>,
    pub(super) stats: Arc<BackplaneStats>,
    pub(super) stop: Arc<AtomicBool>,
    pub(super) queue: Receiver<Outgoing>,
    /// Bumped by the subscriber each time it connects: Redis may have restarted, so this
    /// connection is replaced before it is used (rather than losing a pipeline on it).
    pub(super) generation: Arc<AtomicU64>,
}

impl Publisher {
    pub(super) fn run(self) {
        let mut con: Option<Connection> = None;
        let mut seen = u64::MAX;
        let mut backoff = FIRST_BACKOFF;
        let mut batch = Vec::with_capacity(PUBLISH_BATCH);
        let mut buf = Vec::new();
        let mut next_probe = Instant::now();
        while !self.stop.load(Ordering::Acquire) {
            let generation = self.generation.load(Ordering::Acquire);
            if con.is_none() || generation != seen {
                match self.connect() {
                    Ok(c) => {
                        con = Some(c);
                        seen = generation;
                        backoff = FIRST_BACKOFF;
                        self.stats.set(Link::Publisher, true, None);
                    }
                    Err(e) => {
                        con = None;
                        debug!(error = %e, "backplane: publisher cannot connect");
                        self.stats.set(Link::Publisher, false, Some(&e));
                        // The queue fills meanwhile, up to --redis-queue; then loops drop.
                        back_off(&mut backoff, &self.stop, || {});
                        continue;
                    }
                }
            }
            if Instant::now() >= next_probe
                && let Some(c) = con.as_mut()
            {
                next_probe = Instant::now() + PROBE_EVERY;
                if let Err(e) = self.probe(c, &mut buf) {
                    self.stats.set(Link::Publisher, false, Some(&e));
                    con = None;
                    continue;
                }
            }
            match self.queue.recv_timeout(IDLE) {
                Ok(first) => batch.push(first),
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => return,
            }
            while batch.len() < PUBLISH_BATCH {
                match self.queue.try_recv() {
                    Ok(m) => batch.push(m),
                    Err(_) => break,
                }
            }
            let n = batch.len() as u64;
            let generation = self.generation.load(Ordering::Acquire);
            if generation != seen {
                // The subscriber reconnected while this waited: Redis may have restarted, so
                // this connection is replaced before the batch goes out on it.
                con = self.connect().ok();
                seen = generation;
            }
            let Some(c) = con.as_mut() else {
                self.stats.dropped.fetch_add(n, Ordering::Relaxed);
                self.stats.set(Link::Publisher, false, None);
                batch.clear();
                continue;
            };
            match self.send(c, &batch, &mut buf) {
                Ok(()) => {
                    self.stats.published.fetch_add(n, Ordering::Relaxed);
                }
                Err(e) => {
                    // Some of it may have reached Redis: sending it again could deliver it
                    // twice, so it is counted as dropped and the connection replaced.
                    self.stats.dropped.fetch_add(n, Ordering::Relaxed);
                    self.stats.set(Link::Publisher, false, Some(&e));
                    con = None;
                }
            }
            batch.clear();
        }
    }

    fn connect(&self) -> redis::RedisResult<Connection> {
        let client = Client::open(self.settings.connection(false))?;
        let con = client.get_connection_with_timeout(CONNECT_TIMEOUT)?;
        con.set_read_timeout(Some(IO_TIMEOUT))?;
        con.set_write_timeout(Some(IO_TIMEOUT))?;
        Ok(con)
    }

    /// Publishes a probe (an empty envelope) to this node's own probe channel.
    fn probe(&self, con: &mut Connection, buf: &mut Vec<u8>) -> redis::RedisResult<()> {
        let command = if self.settings.sharded {
            "SPUBLISH"
        } else {
            "PUBLISH"
        };
        let now = super::unix_micros();
        buf.clear();
        envelope::encode_into(buf, &self.settings.node_id, OpCode::Binary, now, b"");
        redis::cmd(command)
            .arg(self.settings.probe_channel())
            .arg(&buf[..])
            .exec(con)?;
        self.stats.probe_acked_us.store(now, Ordering::Release);
        Ok(())
    }

    /// One pipeline of PUBLISH (or SPUBLISH) commands, one envelope each.
    fn send(
        &self,
        con: &mut Connection,
        batch: &[Outgoing],
        buf: &mut Vec<u8>,
    ) -> redis::RedisResult<()> {
        let command = if self.settings.sharded {
            "SPUBLISH"
        } else {
            "PUBLISH"
        };
        let node = &self.settings.node_id;
        let mut pipe = redis::pipe();
        for m in batch {
            let Some((opcode, payload)) = m.frame.message() else {
                continue;
            };
            buf.clear();
            envelope::encode_into(buf, node, opcode, m.published_us, payload);
            pipe.cmd(command)
                .arg(self.settings.redis_channel(&m.channel))
                .arg(&buf[..])
                .ignore();
        }
        pipe.exec(con)
    }
}
