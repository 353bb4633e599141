//! TLS for `wss://` and `https://` on the listener's port (`--tls-cert`, `--tls-key`): the
//! certificate files, their validation, and the reloadable holder every loop takes its
//! `rustls::ServerConfig` from. No socket here; the per-connection transport is in
//! [`stream`], driven by the connection over whatever `Read + Write` it owns.
//!
//! - **Loading** ([`load`]): the certificate chain and the private key are read as PEM
//!   (`rustls::pki_types::pem::PemObject`: PKCS#8, PKCS#1 or SEC1 keys), and the key is checked
//!   against the certificate's public key, so a wrong pair fails at start-up (exit 2) or at a
//!   reload, not at the first handshake. Every error names the file it is about.
//! - **Protocols**: TLS 1.2 and 1.3; ALPN `http/1.1` (the only protocol served: the WebSocket
//!   upgrade and the HTTP API are HTTP/1.1). No client certificates.
//! - **Rotation** ([`Certificates::reload`], `Handle::reload_tls`, SIGHUP): the files are read
//!   again and, if they are good, the new configuration is swapped in; connections accepted
//!   from then on use it, established ones keep the session they have. A bad file keeps the
//!   old certificate and the error is logged and returned. Every loop reads the same holder
//!   (through the node), so with `--threads N` all of them see the new certificate at once.
//!
//! The crypto provider is *ring*, named explicitly ([`provider`]): it builds with nothing but
//! a C compiler, where rustls' default (aws-lc-rs) also needs cmake (and, on some targets,
//! NASM and bindgen's libclang), which a fresh machine often lacks. (The cost: no post-quantum
//! key exchange, see [`provider`].)

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tracing::{info, warn};

mod error;
pub mod stream;

pub use error::ErrorKind;
pub use stream::TlsStream;

/// The one application protocol offered in ALPN.
pub const ALPN_HTTP_1_1: &[u8] = b"http/1.1";

/// The crypto provider: *ring*, which needs only a C compiler to build (see the module doc),
/// with the key exchange groups in the order browsers and OpenSSL prefer them: X25519, then
/// P-256, then P-384. (rustls 0.23.48's *ring* defaults put P-384 first: a server picks the
/// first of its groups the client sent a key share for, so a client sending several shares
/// would make it pay a P-384 exchange, about 2 ms of CPU here against a fraction of that.)
///
/// rustls 0.23.48 deprecates *ring* because it has no post-quantum key exchange
/// (X25519MLKEM768 is aws-lc-rs only): the key exchange is classical, the price of building
/// anywhere with a C compiler.
#[allow(deprecated)]
pub fn provider() -> Arc<CryptoProvider> {
    use rustls::crypto::ring::kx_group::{SECP256R1, SECP384R1, X25519};
    Arc::new(CryptoProvider {
        kx_groups: vec![X25519, SECP256R1, SECP384R1],
        ..rustls::crypto::ring::default_provider()
    })
}

/// Why the TLS configuration could not be loaded. Each variant names the file at fault.
#[derive(Debug)]
pub enum TlsError {
    /// `--tls-cert` without `--tls-key`, or the other way round.
    Incomplete {
        /// The setting that is given.
        given: &'static str,
        /// The setting that is missing.
        missing: &'static str,
    },
    /// A file could not be read.
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The certificate file holds no PEM certificate.
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// The key file holds no usable PEM private key (none, a malformed one, or a kind rustls
    /// cannot sign with).
    BadKey {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The private key is not the certificate's (or the certificate cannot be parsed).
    Mismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// What rustls said.
        reason: String,
    },
    /// A reload was asked for, but the server runs without TLS.
    NotConfigured,
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsError::Incomplete { given, missing } => {
                write!(f, "{given} is set without {missing}: TLS needs both")
            }
            TlsError::Read { path, source } => {
                write!(f, "cannot read TLS file {}: {source}", path.display())
            }
            TlsError::NoCertificate { path } => write!(
                f,
                "no PEM certificate (-----BEGIN CERTIFICATE-----) in --tls-cert file {}",
                path.display()
            ),
            TlsError::BadKey { path, reason } => {
                write!(
                    f,
                    "no usable private key in --tls-key file {}: {reason}",
                    path.display()
                )
            }
            TlsError::Mismatch { cert, key, reason } => write!(
                f,
                "the key in {} does not go with the certificate in {}: {reason}",
                key.display(),
                cert.display()
            ),
            TlsError::NotConfigured => f.write_str("TLS is not configured (--tls-cert, --tls-key)"),
        }
    }
}

impl std::error::Error for TlsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TlsError::Read { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Reads and checks a certificate chain and its key; returns the server configuration.
pub fn load(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|source| TlsError::Read {
            path: path.to_owned(),
            source,
        })
    };
    let cert_pem = read(cert)?;
    let key_pem = read(key)?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| TlsError::NoCertificate {
            path: cert.to_owned(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: cert.to_owned(),
        });
    }
    let private = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsError::BadKey {
        path: key.to_owned(),
        reason: pem_reason(e),
    })?;
    let provider = provider();
    // Parse the key first, so a key rustls cannot use is blamed on the key file.
    provider
        .key_provider
        .load_private_key(private.clone_key())
        .map_err(|e| TlsError::BadKey {
            path: key.to_owned(),
            reason: e.to_string(),
        })?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .expect("ring supports TLS 1.2 and 1.3")
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(|e| TlsError::Mismatch {
            cert: cert.to_owned(),
            key: key.to_owned(),
            reason: e.to_string(),
        })?;
    config.alpn_protocols = vec![ALPN_HTTP_1_1.to_vec()];
    Ok(Arc::new(config))
}

fn pem_reason(e: pem::Error) -> String {
    match e {
        pem::Error::NoItemsFound => {
            "no PEM private key (-----BEGIN ... PRIVATE KEY-----) found".into()
        }
        e => format!("{e:?}"),
    }
}

/// The files and the configuration now in force: shared by every loop and every `Handle`.
#[derive(Debug)]
pub struct Certificates {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<Arc<ServerConfig>>,
}

impl Certificates {
    /// Loads `cert` and `key` (see [`load`]).
    pub fn load(cert: &Path, key: &Path) -> Result<Certificates, TlsError> {
        Ok(Certificates {
            current: RwLock::new(load(cert, key)?),
            cert: cert.to_owned(),
            key: key.to_owned(),
        })
    }

    /// The certificates the settings ask for: `None` without TLS; an error when only one of
    /// the two files is given or they do not load.
    pub fn from_settings(
        cert: Option<&Path>,
        key: Option<&Path>,
    ) -> Result<Option<Certificates>, TlsError> {
        match (cert, key) {
            (None, None) => Ok(None),
            (Some(cert), Some(key)) => Certificates::load(cert, key).map(Some),
            (Some(_), None) => Err(TlsError::Incomplete {
                given: "--tls-cert",
                missing: "--tls-key",
            }),
            (None, Some(_)) => Err(TlsError::Incomplete {
                given: "--tls-key",
                missing: "--tls-cert",
            }),
        }
    }

    /// The configuration for a connection accepted now.
    pub fn current(&self) -> Arc<ServerConfig> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Reads the files again and, if they load, uses them for every connection accepted from
    /// now on. On an error the old certificate stays in force; the error is logged and
    /// returned.
    pub fn reload(&self) -> Result<(), TlsError> {
        match load(&self.cert, &self.key) {
            Ok(config) => {
                *self.current.write().unwrap_or_else(|e| e.into_inner()) = config;
                info!(cert = %self.cert.display(), "TLS certificate reloaded");
                Ok(())
            }
            Err(e) => {
                warn!(error = %e, "TLS reload failed; keeping the certificate in use");
                Err(e)
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
