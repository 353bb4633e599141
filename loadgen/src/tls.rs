//! Whom a `wss://` connection trusts: the rustls client configuration built once per run from
//! `--ca-file` or `--insecure`, shared by every connection (rustls on *ring*, as the server).
//!
//! There is no default trust store: loadgen loads servers its user runs, usually with a
//! self-signed certificate, and the system's roots would be one more dependency for nothing.
//! So a `wss://` URL needs one of the two flags, and without either it is refused up front.
//! `--insecure` skips the certificate's chain and name checks but still checks the handshake
//! signatures with the provider's algorithms, so the cost measured is the real one.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// How `wss://` connections check the server's certificate.
#[derive(Clone, Copy, Debug)]
pub enum Trust<'a> {
    /// Trust the certificates in this PEM file (e.g. the server's self-signed one).
    CaFile(&'a Path),
    /// Accept any certificate (signatures are still verified).
    Insecure,
}

/// The client configuration for `trust`: TLS 1.2 and 1.3, ALPN `http/1.1` (as the server), no
/// session resumption.
pub fn client_config(trust: Trust<'_>) -> Result<Arc<ClientConfig>, String> {
    let provider = fanout::tls::provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(rustls::ALL_VERSIONS)
        .map_err(|e| format!("TLS: {e}"))?;
    let builder = match trust {
        Trust::CaFile(path) => {
            let name = path.display();
            let pem = std::fs::read(path).map_err(|e| format!("--ca-file {name}: {e}"))?;
            let mut roots = RootCertStore::empty();
            for der in CertificateDer::pem_slice_iter(&pem) {
                let der = der.map_err(|e| format!("--ca-file {name}: bad PEM: {e}"))?;
                roots
                    .add(der)
                    .map_err(|e| format!("--ca-file {name}: unusable certificate: {e}"))?;
            }
            if roots.is_empty() {
                return Err(format!("--ca-file {name}: no certificate in the file"));
            }
            builder.with_root_certificates(roots)
        }
        Trust::Insecure => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider))),
    };
    let mut config = builder.with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    // Every connection stands for a client of its own: a full handshake each, never a
    // resumption of another connection's session (which would make handshakes look cheap).
    config.resumption = rustls::client::Resumption::disabled();
    Ok(Arc::new(config))
}

/// `--insecure`: any certificate for any name, but a handshake signature must verify against
/// the certificate's key with one of the provider's algorithms.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_file_without_certificates_or_missing_is_refused() {
        let dir = std::env::temp_dir().join(format!("loadgen-tls-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let e = client_config(Trust::CaFile(&empty)).unwrap_err();
        assert!(e.contains("no certificate"), "{e}");
        let e = client_config(Trust::CaFile(&dir.join("absent.pem"))).unwrap_err();
        assert!(e.contains("absent.pem"), "{e}");
        assert!(client_config(Trust::Insecure).is_ok());
        let first = fanout::tls::provider().kx_groups[0].name();
        assert_eq!(first, rustls::NamedGroup::X25519);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
