//! Helpers for the TLS tests: certificates made with rcgen at test time, and a rustls client
//! (ring, like the server) that trusts exactly the certificates it is given.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

use super::common::{TIMEOUT, upgrade_request};

/// A certificate and key written to files, and the certificate's DER.
pub struct Cert {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub der: Vec<u8>,
}

/// A directory of its own for the test called `name`, empty.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("tls-tests")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A new self-signed certificate for `localhost`, written to `dir/cert.pem` and `dir/key.pem`
/// (over whatever was there: a rotation).
pub fn write_cert(dir: &Path) -> Cert {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    std::fs::write(&cert, made.cert.pem()).unwrap();
    std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
    Cert {
        cert,
        key,
        der: made.cert.der().to_vec(),
    }
}

/// The server's own provider: X25519 first, as browsers offer it.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    fanout::tls::provider()
}

/// A client config trusting `trusted` (DER certificates), offering ALPN `http/1.1` and the
/// given protocol versions.
pub fn client_config_with(
    trusted: &[&[u8]],
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for der in trusted {
        roots.add(CertificateDer::from(der.to_vec())).unwrap();
    }
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// A client config trusting `trusted`, TLS 1.2 or 1.3.
pub fn client_config(trusted: &[&[u8]]) -> Arc<ClientConfig> {
    client_config_with(trusted, rustls::ALL_VERSIONS)
}

pub type Tls = StreamOwned<ClientConnection, TcpStream>;

/// A TLS connection to `localhost` at `addr`, its handshake complete.
pub fn tls_connect(addr: SocketAddr, config: Arc<ClientConfig>) -> Tls {
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(TIMEOUT)).unwrap();
    tcp.set_nodelay(true).unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let mut tls = StreamOwned::new(ClientConnection::new(config, name).unwrap(), tcp);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock).expect("TLS handshake");
    }
    tls
}

/// The certificate the server presented.
pub fn peer_cert(tls: &Tls) -> Vec<u8> {
    tls.conn.peer_certificates().expect("a certificate")[0].to_vec()
}

/// Reads an HTTP response head byte by byte (no frame bytes after it are consumed).
pub fn read_head(s: &mut impl Read) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).expect("read response head");
        head.push(byte[0]);
    }
    String::from_utf8(head).unwrap()
}

/// A WebSocket on `channel` over TLS, after its 101.
pub fn wss(addr: SocketAddr, config: Arc<ClientConfig>, channel: &str) -> Tls {
    let mut tls = tls_connect(addr, config);
    let req = upgrade_request(&format!("Sec-WebSocket-Protocol: {channel}\r\n"));
    tls.write_all(req.as_bytes()).unwrap();
    let head = read_head(&mut tls);
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    tls
}

/// Sends `request` over TLS and reads the response until the server's `close_notify`:
/// (status, head, body). A TCP EOF without `close_notify` fails.
pub fn https(addr: SocketAddr, config: Arc<ClientConfig>, request: &[u8]) -> (u16, String, String) {
    let mut tls = tls_connect(addr, config);
    tls.write_all(request).unwrap();
    let mut all = Vec::new();
    tls.read_to_end(&mut all)
        .expect("response, then close_notify");
    let text = String::from_utf8_lossy(&all).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("complete response head");
    (
        head[9..12].parse().unwrap(),
        head.to_owned(),
        body.to_owned(),
    )
}

/// The value of the sample `sample` (name and labels) in `GET /metrics` over TLS.
pub fn tls_metric(addr: SocketAddr, config: &Arc<ClientConfig>, sample: &str) -> u64 {
    let req = b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    let (status, _, body) = https(addr, config.clone(), req);
    assert_eq!(status, 200);
    body.lines()
        .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {sample} in\n{body}"))
}

/// Scrapes until `sample` satisfies `ok` (the loops report at the end of their turns).
pub fn await_tls_metric(
    addr: SocketAddr,
    config: &Arc<ClientConfig>,
    sample: &str,
    ok: impl Fn(u64) -> bool,
) -> u64 {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let value = tls_metric(addr, config, sample);
        if ok(value) {
            return value;
        }
        assert!(Instant::now() < deadline, "{sample} stayed at {value}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Reads what the server sends until it closes the TCP connection (EOF or reset).
pub fn read_until_closed(s: &mut TcpStream) -> Vec<u8> {
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return all,
            Ok(n) => all.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return all,
            Err(e) => panic!("not closed: {e} after {all:?}"),
        }
    }
}
