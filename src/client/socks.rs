//! SOCKS5 for Portage's network sandbox (Gentoo's distcc patch; reference
//! gentoo-and-users.md, "network-sandbox").
//!
//! With `FEATURES=network-sandbox` each build phase runs in a network namespace with only
//! loopback, and Portage starts a SOCKSv5 proxy on a UNIX socket outside it, exporting
//! `DISTCC_SOCKS_PROXY=<socket path>`. Every TCP host is then reached through that proxy:
//! the "no authentication" method, then CONNECT with the distcc host's name as a DOMAINNAME
//! (the proxy resolves it), or an IPv4/IPv6 literal as its own address type.
//!
//! `DISTCC_SOCKS_PROXY` is an absolute UNIX-socket path, `host`, or `host:port` (default
//! port 1080; `[v6]:port` for an IPv6 literal). The handshake bytes are built and parsed here
//! without I/O; [`handshake`] drives them over a stream.

use std::io::{Read, Write};
use std::net::IpAddr;
use std::path::PathBuf;

use thiserror::Error;

/// The SOCKS port when `DISTCC_SOCKS_PROXY` names none.
pub(crate) const DEFAULT_PORT: u16 = 1080;

/// Where the proxy listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Proxy {
    Unix(PathBuf),
    Tcp { host: String, port: u16 },
}

impl std::fmt::Display for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Proxy::Unix(p) => write!(f, "SOCKS proxy {}", p.display()),
            Proxy::Tcp { host, port } if host.contains(':') => {
                write!(f, "SOCKS proxy [{host}]:{port}")
            }
            Proxy::Tcp { host, port } => write!(f, "SOCKS proxy {host}:{port}"),
        }
    }
}

/// What went wrong talking to the proxy. All of them are the host's fault for the
/// scheduler (backoff, another host, local fallback).
#[derive(Debug, Error, PartialEq, Eq)]
pub(crate) enum SocksError {
    #[error("DISTCC_SOCKS_PROXY={0:?} is not a UNIX-socket path, host or host:port")]
    BadSetting(String),
    #[error("{proxy} does not speak SOCKS5 (answered version {version})")]
    NotSocks5 { proxy: String, version: u8 },
    #[error(
        "{proxy} wants authentication (method {method}); only \"no authentication\" is supported"
    )]
    NoAcceptableMethod { proxy: String, method: u8 },
    #[error("{proxy} could not connect to {target}: reply {code} ({})", reply_text(*code))]
    Refused {
        proxy: String,
        target: String,
        code: u8,
    },
    #[error("{proxy} sent a malformed reply")]
    Malformed { proxy: String },
    #[error("host name {0:?} is longer than SOCKS5's 255 bytes")]
    NameTooLong(String),
}

/// RFC 1928's reply codes.
fn reply_text(code: u8) -> &'static str {
    match code {
        1 => "general SOCKS server failure",
        2 => "connection not allowed by ruleset",
        3 => "network unreachable",
        4 => "host unreachable",
        5 => "connection refused",
        6 => "TTL expired",
        7 => "command not supported",
        8 => "address type not supported",
        _ => "unknown reply code",
    }
}

impl Proxy {
    /// Parse a `DISTCC_SOCKS_PROXY` value: `HOST[:PORT]`, `[V6]:PORT`, or a socket path.
    pub(crate) fn parse(value: &std::ffi::OsStr) -> Result<Proxy, SocksError> {
        use std::os::unix::ffi::OsStrExt;
        let bad = || SocksError::BadSetting(value.to_string_lossy().into_owned());
        if value.as_bytes().first() == Some(&b'/') {
            return Ok(Proxy::Unix(PathBuf::from(value)));
        }
        let text = value.to_str().ok_or_else(bad)?.trim();
        let (host, port) = if let Some(rest) = text.strip_prefix('[') {
            let (host, after) = rest.split_once(']').ok_or_else(bad)?;
            match after.strip_prefix(':') {
                Some(p) => (host, Some(p)),
                None if after.is_empty() => (host, None),
                None => return Err(bad()),
            }
        } else if text.matches(':').count() > 1 {
            // A bare IPv6 literal.
            (text, None)
        } else {
            match text.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (text, None),
            }
        };
        if host.is_empty() || host.contains(char::is_whitespace) {
            return Err(bad());
        }
        let port = match port {
            None => DEFAULT_PORT,
            Some(p) => p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(bad)?,
        };
        Ok(Proxy::Tcp {
            host: host.to_owned(),
            port,
        })
    }
}

/// The client's greeting: version 5, one method, "no authentication".
pub(crate) const GREETING: [u8; 3] = [5, 1, 0];

/// Check the proxy's method choice (2 bytes).
pub(crate) fn check_method(proxy: &Proxy, reply: [u8; 2]) -> Result<(), SocksError> {
    match reply {
        [5, 0] => Ok(()),
        [5, method] => Err(SocksError::NoAcceptableMethod {
            proxy: proxy.to_string(),
            method,
        }),
        [version, _] => Err(SocksError::NotSocks5 {
            proxy: proxy.to_string(),
            version,
        }),
    }
}

/// The CONNECT request for `host:port`: literals as IPv4/IPv6, names as DOMAINNAME.
pub(crate) fn connect_request(host: &str, port: u16) -> Result<Vec<u8>, SocksError> {
    let mut req = vec![5, 1, 0];
    let literal = host.trim_start_matches('[').trim_end_matches(']');
    match literal.parse::<IpAddr>() {
        Ok(IpAddr::V4(a)) => {
            req.push(1);
            req.extend_from_slice(&a.octets());
        }
        Ok(IpAddr::V6(a)) => {
            req.push(4);
            req.extend_from_slice(&a.octets());
        }
        Err(_) => {
            let len = u8::try_from(host.len()).map_err(|_| SocksError::NameTooLong(host.into()))?;
            req.push(3);
            req.push(len);
            req.extend_from_slice(host.as_bytes());
        }
    }
    req.extend_from_slice(&port.to_be_bytes());
    Ok(req)
}

/// How long the CONNECT reply is, given its first 5 bytes (the bound address's length
/// depends on its type); checks the reply code.
pub(crate) fn connect_reply_len(
    proxy: &Proxy,
    target: &str,
    head: [u8; 5],
) -> Result<usize, SocksError> {
    let malformed = || SocksError::Malformed {
        proxy: proxy.to_string(),
    };
    if head[0] != 5 {
        return Err(SocksError::NotSocks5 {
            proxy: proxy.to_string(),
            version: head[0],
        });
    }
    if head[1] != 0 {
        return Err(SocksError::Refused {
            proxy: proxy.to_string(),
            target: target.to_owned(),
            code: head[1],
        });
    }
    let addr = match head[3] {
        1 => 4,
        4 => 16,
        3 => 1 + usize::from(head[4]),
        _ => return Err(malformed()),
    };
    // Version, reply, reserved, type, address (the domain's length byte included), port.
    Ok(4 + addr + 2)
}

/// Run the handshake over a fresh connection to the proxy: afterwards the stream is a
/// tunnel to `host:port`. The caller bounds it in time (the stream's reads and writes
/// fail once the connect timeout has passed).
pub(crate) fn handshake<S: Read + Write>(
    stream: &mut S,
    proxy: &Proxy,
    host: &str,
    port: u16,
) -> Result<(), std::io::Error> {
    let target = format!("{host}:{port}");
    let err = |e: SocksError| std::io::Error::other(e.to_string());
    stream.write_all(&GREETING)?;
    let mut method = [0u8; 2];
    stream.read_exact(&mut method)?;
    check_method(proxy, method).map_err(err)?;
    stream.write_all(&connect_request(host, port).map_err(err)?)?;
    stream.flush()?;
    let mut head = [0u8; 5];
    stream.read_exact(&mut head)?;
    let len = connect_reply_len(proxy, &target, head).map_err(err)?;
    let mut rest = vec![0u8; len - head.len()];
    stream.read_exact(&mut rest)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    fn tcp(host: &str, port: u16) -> Proxy {
        Proxy::Tcp {
            host: host.into(),
            port,
        }
    }

    #[test]
    fn settings_like_gentoos_patch() {
        let p = |s: &str| Proxy::parse(OsStr::new(s));
        assert_eq!(
            p("/var/tmp/portage/.portage.1.net.sock"),
            Ok(Proxy::Unix("/var/tmp/portage/.portage.1.net.sock".into()))
        );
        assert_eq!(p("proxy"), Ok(tcp("proxy", 1080)));
        assert_eq!(p("proxy:9050"), Ok(tcp("proxy", 9050)));
        assert_eq!(p("10.0.0.1:1081"), Ok(tcp("10.0.0.1", 1081)));
        assert_eq!(p("[fd00::1]:1082"), Ok(tcp("fd00::1", 1082)));
        assert_eq!(p("fd00::1"), Ok(tcp("fd00::1", 1080)));
        for bad in ["proxy:", "proxy:0", "proxy:x", ":1080", "[fd00::1", "a b"] {
            assert!(p(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn connect_requests_by_address_type() {
        assert_eq!(
            connect_request("red", 3632).unwrap(),
            [5, 1, 0, 3, 3, b'r', b'e', b'd', 0x0e, 0x30]
        );
        assert_eq!(
            connect_request("192.168.0.2", 3632).unwrap(),
            [5, 1, 0, 1, 192, 168, 0, 2, 0x0e, 0x30]
        );
        let v6 = connect_request("fd00::2", 1).unwrap();
        assert_eq!(&v6[..4], &[5, 1, 0, 4]);
        assert_eq!(v6.len(), 4 + 16 + 2);
        assert_eq!(v6[4], 0xfd);
        assert!(connect_request(&"x".repeat(256), 1).is_err());
    }

    #[test]
    fn replies_are_checked_and_name_the_proxy() {
        let p = Proxy::Unix("/run/s".into());
        assert_eq!(check_method(&p, [5, 0]), Ok(()));
        assert!(matches!(
            check_method(&p, [5, 0xff]),
            Err(SocksError::NoAcceptableMethod { method: 0xff, .. })
        ));
        assert!(matches!(
            check_method(&p, [4, 0]),
            Err(SocksError::NotSocks5 { .. })
        ));
        assert_eq!(connect_reply_len(&p, "red:3632", [5, 0, 0, 1, 0]), Ok(10));
        assert_eq!(connect_reply_len(&p, "red:3632", [5, 0, 0, 4, 0]), Ok(22));
        assert_eq!(connect_reply_len(&p, "red:3632", [5, 0, 0, 3, 7]), Ok(14));
        let e = connect_reply_len(&p, "red:3632", [5, 5, 0, 1, 0]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "SOCKS proxy /run/s could not connect to red:3632: reply 5 (connection refused)"
        );
        assert!(connect_reply_len(&p, "red:3632", [5, 0, 0, 9, 0]).is_err());
    }
}
