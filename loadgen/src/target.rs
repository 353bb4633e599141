//! Where load goes: the `--url` target and the `--source` address range.
//!
//! loadgen only speaks to the address it is given, and by default only to loopback addresses: a
//! capacity test run from a laptop should never flood a host by accident. `--allow-remote` lifts
//! that for a deliberate test against another machine.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};

use rustls::pki_types::ServerName;

/// A resolved `ws://HOST:PORT/PATH` or `wss://HOST:PORT/PATH` target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// `wss://`: connections speak TLS (see `tls.rs` for whom they trust).
    pub tls: bool,
    /// The name the server's certificate must carry, sent as SNI when it is a DNS name: the
    /// host without its port (an IP address is checked against the certificate's IP names).
    pub server_name: ServerName<'static>,
    /// The address every connection goes to.
    pub addr: SocketAddr,
    /// The `Host` header value (`HOST:PORT` as written in the URL).
    pub host: String,
    /// The request path (`/` when the URL has none).
    pub path: String,
}

impl Target {
    /// Parses and resolves `url`; refuses non-loopback addresses unless `allow_remote`.
    pub fn parse(url: &str, allow_remote: bool) -> Result<Target, String> {
        let (tls, rest) = match (url.strip_prefix("ws://"), url.strip_prefix("wss://")) {
            (Some(rest), _) => (false, rest),
            (_, Some(rest)) => (true, rest),
            _ => {
                return Err(format!(
                    "--url {url:?}: only ws:// and wss:// URLs are supported"
                ));
            }
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.is_empty() {
            return Err(format!("--url {url:?}: no host"));
        }
        let port = authority
            .rsplit_once(':')
            .filter(|(h, p)| !h.ends_with(':') && p.parse::<u16>().is_ok());
        let (host, with_port) = match port {
            Some((host, _)) => (host, authority.to_string()),
            None => (
                authority,
                format!("{authority}:{}", if tls { 443 } else { 80 }),
            ),
        };
        let addr = with_port
            .to_socket_addrs()
            .map_err(|e| format!("--url {url:?}: cannot resolve {authority}: {e}"))?
            .next()
            .ok_or_else(|| format!("--url {url:?}: {authority} resolves to nothing"))?;
        check_loopback(addr.ip(), allow_remote, "--url")?;
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let server_name = ServerName::try_from(bare.to_string())
            .map_err(|_| format!("--url {url:?}: {bare:?} is not a valid server name"))?;
        Ok(Target {
            tls,
            server_name,
            addr,
            host: authority.to_string(),
            path: path.to_string(),
        })
    }
}

/// Refuses a non-loopback address unless remote targets were allowed.
fn check_loopback(ip: IpAddr, allow_remote: bool, what: &str) -> Result<(), String> {
    if ip.is_loopback() || allow_remote {
        Ok(())
    } else {
        Err(format!(
            "{what}: {ip} is not a loopback address; loadgen only loads loopback targets unless \
             --allow-remote is given"
        ))
    }
}

/// Parses `--source`: one address, a comma list, or an IPv4 range `127.0.0.1-127.0.0.8`.
pub fn parse_sources(spec: &str, allow_remote: bool) -> Result<Vec<IpAddr>, String> {
    const MAX_SOURCES: u32 = 256;
    let mut out = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        if let Some((a, b)) = part.split_once('-') {
            let a: Ipv4Addr = a
                .trim()
                .parse()
                .map_err(|_| format!("--source: bad address {a:?}"))?;
            let b: Ipv4Addr = b
                .trim()
                .parse()
                .map_err(|_| format!("--source: bad address {b:?}"))?;
            let (lo, hi) = (u32::from(a), u32::from(b));
            if hi < lo || hi - lo >= MAX_SOURCES {
                return Err(format!(
                    "--source {part}: want a range of 1 to {MAX_SOURCES} addresses"
                ));
            }
            out.extend((lo..=hi).map(|n| IpAddr::V4(Ipv4Addr::from(n))));
        } else {
            out.push(
                part.parse()
                    .map_err(|_| format!("--source: bad address {part:?}"))?,
            );
        }
    }
    if out.is_empty() {
        return Err("--source: no address given".into());
    }
    for ip in &out {
        check_loopback(*ip, allow_remote, "--source")?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_with_default_path_and_port() {
        let t = Target::parse("ws://127.0.0.1:9001/", false).unwrap();
        assert_eq!(t.addr, "127.0.0.1:9001".parse().unwrap());
        assert_eq!((t.host.as_str(), t.path.as_str()), ("127.0.0.1:9001", "/"));
        let t = Target::parse("ws://127.0.0.2:80", false).unwrap();
        assert_eq!(t.path, "/");
        let t = Target::parse("ws://localhost:81/x/y", false).unwrap();
        assert!(t.addr.ip().is_loopback());
        assert_eq!(t.path, "/x/y");
    }

    #[test]
    fn bad_and_remote_urls_are_refused() {
        assert!(Target::parse("http://127.0.0.1:1/", false).is_err());
        assert!(Target::parse("ws:///", false).is_err());
        let e = Target::parse("ws://10.0.0.1:80/", false).unwrap_err();
        assert!(e.contains("not a loopback"), "{e}");
    }

    #[test]
    fn wss_urls_default_to_443_and_name_the_host_without_its_port() {
        let t = Target::parse("wss://127.0.0.1:9443/x", false).unwrap();
        assert!(t.tls);
        assert_eq!(t.addr, "127.0.0.1:9443".parse().unwrap());
        assert_eq!((t.host.as_str(), t.path.as_str()), ("127.0.0.1:9443", "/x"));
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(t.server_name, ServerName::from(ip));
        let t = Target::parse("wss://127.0.0.1", false).unwrap();
        assert_eq!((t.addr.port(), t.host.as_str()), (443, "127.0.0.1"));
        let t = Target::parse("wss://localhost:8443/", false).unwrap();
        assert_eq!(t.server_name, ServerName::try_from("localhost").unwrap());
        let t = Target::parse("wss://[::1]:8443/", false).unwrap();
        let ip: IpAddr = "::1".parse().unwrap();
        assert_eq!((t.server_name, t.addr.port()), (ServerName::from(ip), 8443));
        let t = Target::parse("ws://127.0.0.1", false).unwrap();
        assert!(!t.tls);
        assert_eq!(t.addr.port(), 80);
        assert!(Target::parse("wss://10.0.0.1:443/", false).is_err());
        assert!(Target::parse("https://127.0.0.1:1/", false).is_err());
    }

    #[test]
    fn source_ranges_expand() {
        let s = parse_sources("127.0.0.1-127.0.0.8", false).unwrap();
        assert_eq!(s.len(), 8);
        assert_eq!(s[7], "127.0.0.8".parse::<IpAddr>().unwrap());
        assert_eq!(
            parse_sources("127.0.0.3, 127.0.0.4", false).unwrap().len(),
            2
        );
        assert!(parse_sources("127.0.0.8-127.0.0.1", false).is_err());
        assert!(parse_sources("127.0.0.1-127.1.0.1", false).is_err());
        assert!(parse_sources("192.168.1.1", false).is_err());
        assert!(parse_sources("", false).is_err());
    }
}
