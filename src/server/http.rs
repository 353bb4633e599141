//! Serving HTTP requests on a connection that has not upgraded: the handshake, and the API
//! (publish, channels, metrics, health, the demo page) on persistent connections with
//! pipelined requests answered in order.

use std::sync::atomic::Ordering;

use tracing::debug;

use super::event_loop::Loop;
use crate::broadcast;
use crate::config;
use crate::connection::Phase;
use crate::directory::ChannelInfo;
use crate::metrics::{self, Gauges};
use crate::proto::Decoded;
use crate::proto::frame::OpCode;
use crate::proto::handshake::{self, Refusal, Request};
use crate::proto::http::{self, HttpRequest, Route};

/// The demo page served at `GET /`.
const INDEX_HTML: &str = include_str!("../web/index.html");

impl Loop {
    /// Answers every complete request in `buf` (the connection's unanswered bytes), in order.
    /// It stops early, keeping the rest in the buffer, when the answers waiting for this peer
    /// pass `--max-backpressure` (reading pauses until they drain) or when it has had its
    /// share of the turn (`Loop::turn_used`; it goes on next turn): checked per request, so
    /// one read of pipelined requests cannot queue more than the cap.
    pub(super) fn serve_http(&mut self, key: usize, mut buf: Vec<u8>) {
        let mut pos = 0;
        let reserve = matches!(
            self.conns.get(key).map(|c| &c.phase),
            Some(Phase::Http { reserve: true, .. })
        );
        while pos < buf.len() {
            let used_up = self.turn_used();
            let conn = &mut self.conns[key];
            if conn.out.held_bytes() > self.config.max_backpressure {
                conn.read_paused = true;
                conn.backlog = true;
                break;
            }
            if used_up {
                conn.backlog = true;
                self.stats.read_yields += 1;
                self.reread.push(key);
                break;
            }
            let policy = handshake::Policy {
                default_channel: self.config.default_channel.as_deref(),
                allowed_origins: &self.config.allowed_origins,
                max_header_bytes: config::MAX_HEADER_BYTES,
                max_message: self.config.max_message,
                publish_token: self.config.publish_token.as_deref(),
                auth: self.node.auth.as_ref(),
                now_unix: unix_now(),
                admin_token: self.config.admin_token.as_deref(),
                deflate: self.config.deflate,
            };
            match handshake::parse(&buf[pos..], &policy) {
                Ok(Decoded::Partial) => break,
                Err(refusal) => {
                    if http::is_publish(&buf[pos..]) {
                        self.stats.publishes.add(refusal.status);
                    }
                    return self.refuse_to(key, refusal, http::is_head(&buf[pos..]));
                }
                Ok(Decoded::Complete((Request::Upgrade(_), _))) if reserve => {
                    return self.refuse(key, Refusal::SERVICE_UNAVAILABLE);
                }
                Ok(Decoded::Complete((Request::Upgrade(up), used))) => {
                    let mut rest = buf.split_off(pos + used);
                    if self.upgrade(key, &up) && !rest.is_empty() {
                        self.on_frames(key, &mut rest);
                    }
                    return;
                }
                Ok(Decoded::Complete((Request::Http(mut req), used))) => {
                    let body_start = pos + used;
                    let body_len = match &req.route {
                        Route::Publish { body_len, .. } => *body_len,
                        _ => 0,
                    };
                    if buf.len() < body_start + body_len {
                        break; // The body is still arriving (bounded by --max-message).
                    }
                    pos = body_start + body_len;
                    if reserve {
                        // Past --max-connections: monitoring is still answered, then closed.
                        if !matches!(req.route, Route::Health | Route::Metrics) {
                            if http::is_publish(&buf[body_start - used..]) {
                                self.stats.publishes.add(503);
                            }
                            return self.refuse_to(key, Refusal::SERVICE_UNAVAILABLE, req.head);
                        }
                        req.keep_alive = false;
                    }
                    if !self.answer(key, req, &buf[body_start..pos]) {
                        return;
                    }
                }
            }
        }
        buf.drain(..pos);
        if buf.is_empty() {
            buf = Vec::new(); // An idle persistent connection holds no buffer.
        } else if buf.capacity() > 4 * buf.len().max(1024) {
            buf.shrink_to_fit(); // Nor does the start of a next request keep a big one alive.
        }
        let idle_deadline = self.now + self.config.handshake_timeout;
        if let Some(Phase::Http {
            buf: b, deadline, ..
        }) = self.conns.get_mut(key).map(|c| &mut c.phase)
        {
            *b = buf;
            if pos > 0 {
                *deadline = idle_deadline; // A persistent connection's idle time starts anew.
            }
        }
    }

    /// Answers one API request; returns whether the connection stays open for the next.
    fn answer(&mut self, key: usize, req: HttpRequest, body: &[u8]) -> bool {
        let keep_alive = req.keep_alive;
        let mut response = match req.route {
            Route::Health => http::ok("text/plain; charset=utf-8", b"ok\n", keep_alive),
            Route::Index => http::ok(
                "text/html; charset=utf-8",
                INDEX_HTML.as_bytes(),
                keep_alive,
            ),
            Route::Metrics => {
                let text = self.render_metrics();
                http::ok(
                    "text/plain; version=0.0.4; charset=utf-8",
                    text.as_bytes(),
                    keep_alive,
                )
            }
            Route::Channels { after, limit } => {
                let (page, more) = self.node.directory().page(after.as_deref(), limit);
                let mut body = String::with_capacity(page.len() * 64 + 2);
                body.push('[');
                for (i, info) in page.iter().enumerate() {
                    if i > 0 {
                        body.push(',');
                    }
                    channel_json(&mut body, info);
                }
                body.push(']');
                // Listing costs the loop about what 25 deliveries do per channel.
                self.turn_work += 25 * page.len();
                // More after this page: say where the next one starts (RFC 8288 `Link`).
                let next = match page.last() {
                    Some(last) if more => format!(
                        "Link: </channels?after={}&limit={limit}>; rel=\"next\"\r\n",
                        http::percent_encode(&last.name)
                    ),
                    _ => String::new(),
                };
                http::ok_with("application/json", &next, body.as_bytes(), keep_alive)
            }
            Route::Channel(name) => {
                let info = self.node.directory().info(&name);
                match info {
                    Some(info) => {
                        let mut body = String::new();
                        channel_json(&mut body, &info);
                        http::json(&body, keep_alive)
                    }
                    None => {
                        self.refuse_to(key, Refusal::NO_SUCH_CHANNEL, req.head);
                        return false;
                    }
                }
            }
            Route::Publish { channel, text, .. } => {
                if text && simdutf8::basic::from_utf8(body).is_err() {
                    self.stats.publishes.add(400);
                    self.refuse(key, Refusal::BODY_NOT_UTF8);
                    return false;
                }
                let opcode = if text { OpCode::Text } else { OpCode::Binary };
                let Ok(subscribers) = self.publish(&channel, broadcast::message(opcode, body))
                else {
                    self.stats.publishes.add(503);
                    self.refuse(key, Refusal::TOO_MANY_CHANNELS);
                    return false;
                };
                self.stats.publishes.add(200);
                let json = format!("{{\"channel\":\"{channel}\",\"subscribers\":{subscribers}}}");
                http::json(&json, keep_alive)
            }
        };
        if req.head {
            http::strip_body(&mut response);
        }
        if keep_alive {
            self.enqueue(key, response);
        } else {
            self.respond(key, response);
        }
        keep_alive
    }

    /// Sends a refusal and closes.
    pub(super) fn refuse(&mut self, key: usize, refusal: Refusal) {
        self.refuse_to(key, refusal, false);
    }

    /// Sends a refusal, without its body for a `HEAD` request, and closes.
    pub(super) fn refuse_to(&mut self, key: usize, refusal: Refusal, head: bool) {
        debug!(
            key,
            status = refusal.status,
            reason = refusal.reason,
            "refused"
        );
        self.stats.refusals.add(refusal.status);
        self.stats.auth_refused(&refusal);
        let mut response = refusal.response();
        if head {
            http::strip_body(&mut response);
        }
        self.respond(key, response);
    }

    fn render_metrics(&mut self) -> String {
        self.next_gauges = self.now; // This loop's own gauges, fresh.
        let own = self.snapshot();
        let (stats, hub, loops) = self.node.totals(self.id, &own);
        let (channels, history_bytes) = {
            let directory = self.node.directory();
            (directory.channel_count(), directory.history_bytes())
        };
        let gauges = Gauges {
            connections: self.node.connections.load(Ordering::Acquire),
            queued_bytes: loops.iter().map(|g| g.queued_bytes).sum(),
            channels,
            input_memory: self.node.input_memory.load(Ordering::Acquire),
            history_bytes,
        };
        let mut text = metrics::render(&stats, &hub, &gauges, &loops);
        if let Some(backplane) = &self.node.backplane {
            backplane.stats.render(&mut text);
        }
        text
    }
}

/// Seconds since the Unix epoch, for checking tokens.
pub(super) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// One channel as JSON. Names are RFC 7230 tokens, which hold no character JSON must escape.
fn channel_json(out: &mut String, info: &ChannelInfo) {
    use std::fmt::Write;
    let _ = write!(
        out,
        "{{\"name\":\"{}\",\"subscribers\":{},\"history\":{}}}",
        info.name, info.subscribers, info.history
    );
}
