//! The TLS transport against a rustls client over an in-memory wire: records per flush, the
//! cap on what rustls holds, error kinds, `close_notify`.

use std::io::{self, Read, Write};
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore};

use super::*;
use crate::broadcast::OutQueue;
use crate::tls::tests::generated;

/// The loop's read buffer, as large as in the server.
const BUF: usize = crate::config::READ_BUFFER_BYTES;

/// The server's side of an in-memory connection: reads what the client sent, writes into a
/// buffer that takes at most `room` more bytes (then `WouldBlock`).
#[derive(Default)]
struct Wire {
    to_server: Vec<u8>,
    to_client: Vec<u8>,
    room: Option<usize>,
}

impl Read for Wire {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.to_server.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = buf.len().min(self.to_server.len());
        buf[..n].copy_from_slice(&self.to_server[..n]);
        self.to_server.drain(..n);
        Ok(n)
    }
}

impl Write for Wire {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.room.map_or(buf.len(), |r| r.min(buf.len()));
        if n == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        if let Some(r) = &mut self.room {
            *r -= n;
        }
        self.to_client.extend_from_slice(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

struct Pair {
    server: TlsStream,
    scratch: Vec<u8>,
    client: ClientConnection,
    wire: Wire,
    out: OutQueue,
    stats: Stats,
}

impl Pair {
    fn new() -> Pair {
        Pair::with_versions(rustls::DEFAULT_VERSIONS)
    }

    /// A pair whose client offers only `versions`, after its handshake.
    fn with_versions(versions: &[&'static rustls::SupportedProtocolVersion]) -> Pair {
        Pair::with(crate::tls::provider(), versions)
    }

    /// A pair whose client has `provider` and offers only `versions`, after its handshake.
    fn with(
        provider: Arc<rustls::crypto::CryptoProvider>,
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> Pair {
        let (config, der) = generated();
        let mut roots = RootCertStore::empty();
        roots.add(CertificateDer::from(der)).unwrap();
        let client = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = ServerName::try_from("localhost").unwrap();
        let mut pair = Pair {
            server: TlsStream::new(config).unwrap(),
            scratch: Vec::new(),
            client: ClientConnection::new(Arc::new(client), name).unwrap(),
            wire: Wire::default(),
            out: OutQueue::default(),
            stats: Stats::default(),
        };
        while pair.client.is_handshaking() || pair.server.is_handshaking() {
            pair.client.write_tls(&mut pair.wire.to_server).unwrap();
            let read = pair.read(&mut vec![0; BUF]);
            assert_eq!(read.unwrap_err().kind(), io::ErrorKind::WouldBlock);
            pair.flush(false);
            pair.deliver();
        }
        assert_eq!(pair.stats.tls_handshakes, 1);
        pair.flush(false); // TLS 1.3 session tickets.
        pair.deliver();
        pair
    }

    fn flush(&mut self, closing: bool) -> Written {
        let (wire, out, stats) = (&mut self.wire, &mut self.out, &mut self.stats);
        self.server
            .flush(wire, out, closing, &mut self.scratch, stats)
            .unwrap()
    }

    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.server
            .read(&mut self.wire, buf, &mut self.scratch, &mut self.stats)
    }

    /// Hands the client what the server wrote; returns the plaintext it decrypted.
    fn deliver(&mut self) -> Vec<u8> {
        let mut from = &self.wire.to_client[..];
        let mut plain = Vec::new();
        while !from.is_empty() {
            self.client.read_tls(&mut from).unwrap();
            self.client.process_new_packets().unwrap();
            let _ = self.client.reader().read_to_end(&mut plain);
        }
        self.wire.to_client.clear();
        plain
    }
}

/// The content types of the records in `bytes`.
fn records(bytes: &[u8]) -> Vec<u8> {
    let mut types = Vec::new();
    let mut rest = bytes;
    while rest.len() >= 5 {
        types.push(rest[0]);
        let len = u16::from_be_bytes([rest[3], rest[4]]) as usize;
        rest = &rest[5 + len..];
    }
    assert!(rest.is_empty(), "a partial record");
    types
}

#[test]
fn a_turn_of_frames_goes_out_in_one_record() {
    let mut pair = Pair::new();
    let mut expected = Vec::new();
    for i in 0..200u8 {
        let frame = Arc::new(vec![0x81, 3, b'm', i, i]);
        expected.extend_from_slice(&frame);
        pair.out.push(frame);
    }
    let sends = pair.stats.sends;
    assert_eq!(pair.flush(false), Written::All);
    assert_eq!(pair.stats.sends - sends, 1, "one write");
    assert_eq!(
        records(&pair.wire.to_client),
        [0x17],
        "one application-data record"
    );
    assert_eq!(pair.deliver(), expected);
    assert!(pair.out.is_empty() && !pair.server.wants_write());
}

#[test]
fn rustls_holds_no_more_than_its_limit_and_the_rest_stays_queued() {
    let mut pair = Pair::new();
    let mut expected = Vec::new();
    for i in 0..64u8 {
        let frame = Arc::new(vec![i; 16 * 1024]);
        expected.extend_from_slice(&frame);
        pair.out.push(frame);
    }
    pair.wire.room = Some(10_000);
    assert_eq!(pair.flush(false), Written::Blocked);
    let taken = expected.len() - pair.out.queued_bytes();
    assert!(taken <= TLS_BUFFER_LIMIT, "rustls took {taken} bytes");
    assert!(pair.server.wants_write());
    let mut received = pair.deliver();
    while !pair.out.is_empty() || pair.server.wants_write() {
        pair.wire.room = Some(100_000);
        pair.flush(false);
        received.extend(pair.deliver());
    }
    assert_eq!(received, expected);
}

#[test]
fn closing_sends_close_notify_after_the_last_bytes() {
    let mut pair = Pair::new();
    pair.out.push(Arc::new(vec![0x88, 2, 0x03, 0xe8]));
    assert_eq!(pair.flush(true), Written::All);
    assert_eq!(records(&pair.wire.to_client), [0x17, 0x17]);
    assert_eq!(pair.deliver(), [0x88, 2, 0x03, 0xe8]);
    let mut rest = Vec::new();
    assert_eq!(
        pair.client.reader().read_to_end(&mut rest).unwrap(),
        0,
        "clean end"
    );
}

#[test]
fn data_after_the_handshake_is_read_in_order_then_the_end() {
    let mut pair = Pair::new();
    pair.client.writer().write_all(b"hello").unwrap();
    pair.client.send_close_notify();
    pair.client.write_tls(&mut pair.wire.to_server).unwrap();
    let mut buf = vec![0; BUF];
    let n = pair.read(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"hello");
    assert!(pair.server.more_buffered());
    assert_eq!(pair.read(&mut buf).unwrap(), 0);
    assert_eq!(pair.server.buffered(), 0, "nothing kept");
}

#[test]
fn a_record_split_across_reads_is_kept_until_whole() {
    let mut pair = Pair::new();
    pair.client.writer().write_all(b"hello, world").unwrap();
    let mut record = Vec::new();
    pair.client.write_tls(&mut record).unwrap();
    let mut buf = vec![0; BUF];
    for (i, &byte) in record.iter().enumerate() {
        pair.wire.to_server.push(byte);
        match pair.read(&mut buf) {
            Ok(n) => {
                assert_eq!(i, record.len() - 1, "plaintext before the last byte");
                assert_eq!(&buf[..n], b"hello, world");
            }
            Err(e) => {
                assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
                assert_eq!(pair.server.buffered(), i + 1, "the partial record kept");
            }
        }
    }
    assert_eq!(pair.server.buffered(), 0, "nothing kept once it is read");
}

#[test]
fn a_full_read_buffer_stops_the_read_and_says_more_is_buffered() {
    let mut pair = Pair::new();
    let sent: Vec<u8> = (0..80 * 1024).map(|i| (i % 251) as u8).collect();
    for chunk in sent.chunks(16 * 1024) {
        pair.client.writer().write_all(chunk).unwrap();
        while pair.client.wants_write() {
            pair.client.write_tls(&mut pair.wire.to_server).unwrap();
        }
    }
    let mut buf = vec![0; BUF];
    let n = pair.read(&mut buf).unwrap();
    assert!((BUF - MAX_RECORD..=BUF).contains(&n), "read {n}");
    assert!(pair.server.more_buffered());
    let mut received = buf[..n].to_vec();
    let m = pair.read(&mut buf).unwrap();
    received.extend_from_slice(&buf[..m]);
    assert!(!pair.server.more_buffered());
    assert_eq!(received, sent);
    assert_eq!(
        pair.read(&mut buf).unwrap_err().kind(),
        io::ErrorKind::WouldBlock
    );
}

#[test]
fn tls_1_2_carries_frames_both_ways() {
    let mut pair = Pair::with_versions(&[&rustls::version::TLS12]);
    assert_eq!(
        pair.client.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );
    pair.out.push(Arc::new(b"\x81\x02hi".to_vec()));
    assert_eq!(pair.flush(false), Written::All);
    assert_eq!(pair.deliver(), b"\x81\x02hi");
    pair.client.writer().write_all(b"back").unwrap();
    pair.client.write_tls(&mut pair.wire.to_server).unwrap();
    let mut buf = vec![0; BUF];
    let n = pair.read(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"back");
    assert_eq!(
        pair.server.buffered(),
        0,
        "an idle connection keeps no buffer"
    );
}

#[test]
fn x25519_is_the_first_choice_and_a_p384_only_client_is_served() {
    let group = |pair: &Pair| {
        pair.client
            .negotiated_key_exchange_group()
            .map(|g| g.name())
    };
    assert_eq!(group(&Pair::new()), Some(rustls::NamedGroup::X25519));
    let p384 = Arc::new(rustls::crypto::CryptoProvider {
        kx_groups: vec![rustls::crypto::ring::kx_group::SECP384R1],
        ..(*crate::tls::provider()).clone()
    });
    let mut pair = Pair::with(p384, rustls::DEFAULT_VERSIONS);
    assert_eq!(group(&pair), Some(rustls::NamedGroup::secp384r1));
    pair.out.push(Arc::new(b"\x81\x01x".to_vec()));
    assert_eq!(pair.flush(false), Written::All);
    assert_eq!(pair.deliver(), b"\x81\x01x");
}

/// A new server's first read of `bytes` from a client, which must fail: the error, the wire
/// (what the server answered) and what it counted.
fn first_read(bytes: &[u8]) -> (io::Error, Wire, Stats) {
    let (config, _) = generated();
    let mut server = TlsStream::new(config).unwrap();
    let mut wire = Wire {
        to_server: bytes.to_vec(),
        ..Wire::default()
    };
    let mut stats = Stats::default();
    let e = server
        .read(&mut wire, &mut vec![0; BUF], &mut Vec::new(), &mut stats)
        .unwrap_err();
    (e, wire, stats)
}

#[test]
fn a_bad_record_after_part_of_a_handshake_message_is_refused_with_an_alert() {
    // Found by the `tls_read` fuzz target: rustls keeps the part of the message in our buffer,
    // so every later call must be given that buffer again, the alert's too.
    let (e, wire, _) = first_read(&[0x16, 3, 3, 0, 2, 0x01, 0x00, 0x31, 0x14, 0xfe, 0xff]);
    assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    assert_eq!(records(&wire.to_client), [0x15], "one alert");
}

#[test]
fn errors_are_counted_by_kind() {
    let (e, wire, stats) = first_read(b"GET / HTTP/1.1\r\n\r\n");
    assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    assert_eq!(stats.tls_errors[ErrorKind::Plaintext as usize], 1);
    assert_eq!(
        wire.to_client, b"\x15\x03\x03\x00\x02\x02\x32",
        "decode_error alert"
    );

    let mut pair = Pair::new();
    pair.wire.to_server = vec![0x17, 3, 3, 0, 20];
    pair.wire.to_server.extend([0u8; 20]);
    let e = pair.read(&mut vec![0; BUF]);
    assert_eq!(e.unwrap_err().kind(), io::ErrorKind::InvalidData);
    assert_eq!(pair.stats.tls_errors[ErrorKind::BadRecord as usize], 1);
    let labels: Vec<_> = ErrorKind::ALL.iter().map(|k| k.label()).collect();
    let want = [
        "plaintext",
        "handshake",
        "alert",
        "bad_record",
        "handshake_timeout",
        "other",
    ];
    assert_eq!(labels, want);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]

    /// Whatever the client's writes and however the wire cuts its records, the server reads
    /// back exactly what was sent, keeps at most a read's worth between reads, and nothing at
    /// the end.
    #[test]
    fn records_cut_anywhere_read_back_whole(
        writes in proptest::collection::vec(1usize..40_000, 1..5),
        cuts in proptest::collection::vec(1usize..30_000, 1..12),
    ) {
        let mut pair = Pair::new();
        let (mut sent, mut wire) = (Vec::new(), Vec::new());
        for (i, &len) in writes.iter().enumerate() {
            let data: Vec<u8> = (0..len).map(|j| (i * 7 + j) as u8).collect();
            for chunk in data.chunks(16 * 1024) {
                pair.client.writer().write_all(chunk).unwrap();
                while pair.client.wants_write() {
                    pair.client.write_tls(&mut wire).unwrap();
                }
            }
            sent.extend(data);
        }
        let (mut received, mut buf) = (Vec::new(), vec![0; BUF]);
        let mut at = 0;
        for cut in cuts.iter().cycle() {
            let n = (*cut).min(wire.len() - at);
            pair.wire.to_server.extend_from_slice(&wire[at..at + n]);
            at += n;
            loop {
                match pair.read(&mut buf) {
                    Ok(n) => {
                        proptest::prop_assert!(n > 0, "an end before the data");
                        received.extend_from_slice(&buf[..n]);
                    }
                    Err(e) => {
                        proptest::prop_assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
                        break;
                    }
                }
                proptest::prop_assert!(pair.server.buffered() <= BUF + MAX_RECORD);
            }
            if at == wire.len() {
                break;
            }
        }
        proptest::prop_assert_eq!(received.len(), sent.len());
        proptest::prop_assert!(received == sent);
        proptest::prop_assert_eq!(pair.server.buffered(), 0);
    }
}
