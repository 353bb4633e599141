//! Why a TLS connection failed, as `/metrics` counts it.

use crate::metrics::Stats;

/// Why a TLS connection failed, as `fanout_tls_errors_total{kind}` counts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The first bytes are not a TLS record: plaintext (HTTP, most likely) sent to the TLS port.
    Plaintext,
    /// The handshake failed: no protocol version, cipher suite or ALPN protocol in common, or a
    /// peer that broke the handshake's rules.
    Handshake,
    /// The peer sent a fatal alert (a browser that does not trust the certificate sends
    /// `bad_certificate` or `unknown_ca`).
    Alert,
    /// A malformed record, or one that does not decrypt, after the first bytes.
    BadRecord,
    /// The handshake did not complete within `--handshake-timeout`.
    HandshakeTimeout,
    /// Anything else.
    Other,
}

impl ErrorKind {
    /// Every kind, in the order of [`Stats::tls_errors`].
    pub const ALL: [ErrorKind; 6] = [
        ErrorKind::Plaintext,
        ErrorKind::Handshake,
        ErrorKind::Alert,
        ErrorKind::BadRecord,
        ErrorKind::HandshakeTimeout,
        ErrorKind::Other,
    ];

    /// Its `kind` label.
    pub fn label(self) -> &'static str {
        match self {
            ErrorKind::Plaintext => "plaintext",
            ErrorKind::Handshake => "handshake",
            ErrorKind::Alert => "alert",
            ErrorKind::BadRecord => "bad_record",
            ErrorKind::HandshakeTimeout => "handshake_timeout",
            ErrorKind::Other => "other",
        }
    }

    /// Counts one in `stats`.
    pub fn count(self, stats: &mut Stats) {
        stats.tls_errors[self as usize] += 1;
    }

    /// The kind of a rustls error; `first` says whether it came from the peer's first record.
    pub fn of(e: &rustls::Error, first: bool) -> ErrorKind {
        use rustls::Error as E;
        match e {
            E::InvalidMessage(_) if first => ErrorKind::Plaintext,
            E::InvalidMessage(_) | E::DecryptError => ErrorKind::BadRecord,
            E::AlertReceived(_) => ErrorKind::Alert,
            E::PeerIncompatible(_)
            | E::PeerMisbehaved(_)
            | E::NoApplicationProtocol
            | E::InappropriateMessage { .. }
            | E::InappropriateHandshakeMessage { .. } => ErrorKind::Handshake,
            _ => ErrorKind::Other,
        }
    }
}
