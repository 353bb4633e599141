//! Loading and reloading certificate files: good pairs, and every bad file named.

use std::path::PathBuf;

use super::*;

/// A directory of its own for `name`.
fn dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("fanout-tls-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes a new self-signed `localhost` certificate and key into `dir`; returns the paths and
/// the certificate's DER.
fn write_pair(dir: &Path) -> (PathBuf, PathBuf, Vec<u8>) {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, made.cert.pem()).unwrap();
    std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
    (cert, key, made.cert.der().to_vec())
}

/// A server configuration for a new certificate, and the certificate's DER.
pub(super) fn generated() -> (Arc<ServerConfig>, Vec<u8>) {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let der = made.cert.der().to_vec();
    let key = PrivateKeyDer::try_from(made.signing_key.serialize_der()).unwrap();
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![CertificateDer::from(der.clone())], key)
        .unwrap();
    config.alpn_protocols = vec![ALPN_HTTP_1_1.to_vec()];
    (Arc::new(config), der)
}

#[test]
fn a_generated_pair_loads_with_alpn_http_1_1() {
    let d = dir("good");
    let (cert, key, _) = write_pair(&d);
    let config = load(&cert, &key).unwrap();
    assert_eq!(config.alpn_protocols, [b"http/1.1".to_vec()]);
    assert!(Certificates::from_settings(None, None).unwrap().is_none());
    assert!(
        Certificates::from_settings(Some(&cert), Some(&key))
            .unwrap()
            .is_some()
    );
}

#[test]
fn every_bad_setting_names_its_file() {
    let d = dir("bad");
    let (cert, key, _) = write_pair(&d);
    let e = Certificates::from_settings(Some(&cert), None).unwrap_err();
    assert_eq!(
        e.to_string(),
        "--tls-cert is set without --tls-key: TLS needs both"
    );
    let missing = d.join("missing.pem");
    let e = load(&missing, &key).unwrap_err().to_string();
    assert!(
        e.starts_with(&format!("cannot read TLS file {}: ", missing.display())),
        "{e}"
    );
    let e = load(&key, &key).unwrap_err().to_string();
    assert!(
        e.contains(&format!("--tls-cert file {}", key.display())),
        "{e}"
    );
    let e = load(&cert, &cert).unwrap_err().to_string();
    assert!(e.starts_with(&format!(
        "no usable private key in --tls-key file {}",
        cert.display()
    )));
    let other = dir("bad-other");
    let (_, other_key, _) = write_pair(&other);
    let e = load(&cert, &other_key).unwrap_err().to_string();
    let start = format!(
        "the key in {} does not go with the certificate in {}",
        other_key.display(),
        cert.display()
    );
    assert!(e.starts_with(&start), "{e}");
}

#[test]
fn a_bad_reload_keeps_the_certificate_in_force() {
    let d = dir("reload");
    let (cert, key, _) = write_pair(&d);
    let certs = Certificates::load(&cert, &key).unwrap();
    let before = certs.current();
    std::fs::write(&key, "garbage").unwrap();
    assert!(matches!(certs.reload(), Err(TlsError::BadKey { .. })));
    assert!(Arc::ptr_eq(&before, &certs.current()));
    write_pair(&d);
    certs.reload().unwrap();
    assert!(!Arc::ptr_eq(&before, &certs.current()));
}
