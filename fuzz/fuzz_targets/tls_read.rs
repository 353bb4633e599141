//! `TlsStream::read` (and `flush` of what it answers) over arbitrary bytes from a client, cut
//! into arbitrary pieces: what a hostile peer can send a TLS port before any key is agreed.
//!
//! - no panic, whatever the bytes and the cuts;
//! - a read never returns more than the buffer, and an `Ok(0)` (the end) is final;
//! - what the connection keeps between reads stays within a read buffer and a record;
//! - after an error nothing more is read.
//!
//! The first byte picks the sizes of the pieces (1 to 256 bytes, cycling through the input's
//! next bytes when it is odd; all at once when it is even).
#![no_main]

use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::{Arc, OnceLock};

use fanout::Stats;
use fanout::broadcast::OutQueue;
use fanout::tls::TlsStream;
use fanout::tls::stream::MAX_RECORD;
use libfuzzer_sys::fuzz_target;
use rustls::ServerConfig;

/// The loop's read buffer, as large as in the server.
const BUF: usize = 64 * 1024;

fn config() -> Arc<ServerConfig> {
    static CONFIG: OnceLock<Arc<ServerConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let keys = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/keys");
            fanout::tls::load(&keys.join("es256.cert.pem"), &keys.join("es256.key.pem"))
                .expect("the test certificate")
        })
        .clone()
}

/// The server's side of the wire: what the client sent so far, and a sink for the answers.
#[derive(Default)]
struct Wire {
    to_server: Vec<u8>,
    at: usize,
}

impl Read for Wire {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.at == self.to_server.len() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = buf.len().min(self.to_server.len() - self.at);
        buf[..n].copy_from_slice(&self.to_server[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

impl Write for Wire {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, input)) = data.split_first() else {
        return;
    };
    let mut tls = TlsStream::new(config()).expect("a connection");
    let (mut wire, mut stats, mut out) = (Wire::default(), Stats::default(), OutQueue::default());
    let (mut buf, mut scratch) = (vec![0u8; BUF], Vec::new());
    let mut cuts = input.iter().cycle().map(|&b| usize::from(b) + 1);
    let mut fed = 0;
    while fed < input.len() {
        let n = if mode % 2 == 1 {
            cuts.next().unwrap_or(1)
        } else {
            input.len()
        };
        let end = (fed + n).min(input.len());
        wire.to_server.extend_from_slice(&input[fed..end]);
        fed = end;
        loop {
            match tls.read(&mut wire, &mut buf, &mut scratch, &mut stats) {
                Ok(0) => {
                    assert!(matches!(
                        tls.read(&mut wire, &mut buf, &mut scratch, &mut stats),
                        Ok(0)
                    ));
                    return;
                }
                Ok(n) => assert!(n <= BUF),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => return,
            }
            assert!(tls.buffered_input() <= BUF + MAX_RECORD);
        }
        assert!(tls.buffered_input() <= BUF + MAX_RECORD);
        let _ = tls.flush(&mut wire, &mut out, false, &mut scratch, &mut stats);
    }
});
