//! The daemon's access list (distcc 3.4 `access.c`, `--allow`, `--allow-private`).
//!
//! Rules are `ADDR[/BITS]`, IPv4 or IPv6, or a host name (all its addresses). An IPv4 client
//! that reaches an IPv6 socket arrives as `::ffff:a.b.c.d`; it is compared as the IPv4
//! address it is (3.4 got that wrong). An empty list means "loopback only" — stricter than
//! 3.4, which served everyone when no `--allow` was given.

use std::net::{IpAddr, ToSocketAddrs};

use ipnet::IpNet;
use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub(crate) enum AclError {
    #[error("can't parse internet address {0:?} (use ADDR[/BITS], e.g. 192.168.0.0/24)")]
    BadAddress(String),
    #[error("bad prefix length in {0:?}: IPv4 allows /0–/32, IPv6 /0–/128")]
    BadBits(String),
}

/// One `--allow` rule: a network (an address and how many leading bits must match).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rule {
    pub net: IpNet,
}

/// The private networks `--allow-private` adds, including `::1` (3.4 forgot it).
pub(crate) const PRIVATE: &[&str] = &[
    "192.168.0.0/16",
    "10.0.0.0/8",
    "172.16.0.0/12",
    "127.0.0.0/8",
    "fe80::/10",
    "fc00::/7",
    "::1/128",
];

impl Rule {
    /// Parse `ADDR[/BITS]`; a host name expands to one rule per address.
    ///
    /// Split by hand rather than with `IpNet::from_str`: that needs the `/BITS`, knows no
    /// brackets or host names, and cannot tell a bad address from a bad prefix length.
    pub(crate) fn parse(spec: &str) -> Result<Vec<Rule>, AclError> {
        let (addr, bits) = match spec.split_once('/') {
            Some((a, b)) => (a, Some(b)),
            None => (spec, None),
        };
        let addrs: Vec<IpAddr> = match addr.trim_matches(|c| c == '[' || c == ']').parse() {
            Ok(ip) => vec![ip],
            Err(_) if !addr.is_empty() => (addr, 0)
                .to_socket_addrs()
                .map_err(|_| AclError::BadAddress(spec.to_owned()))?
                .map(|sa| sa.ip())
                .collect(),
            Err(_) => return Err(AclError::BadAddress(spec.to_owned())),
        };
        if addrs.is_empty() {
            return Err(AclError::BadAddress(spec.to_owned()));
        }
        addrs
            .into_iter()
            .map(|addr| {
                let net = match bits {
                    // A plain address is a host rule: /32 or /128.
                    None => IpNet::from(addr),
                    Some(b) => b
                        .parse::<u8>()
                        .ok()
                        .and_then(|b| IpNet::new(addr, b).ok())
                        .ok_or_else(|| AclError::BadBits(spec.to_owned()))?,
                };
                Ok(Rule { net })
            })
            .collect()
    }

    /// Does `client` fall inside this rule? An IPv4-mapped IPv6 client is the IPv4 address
    /// it carries; an IPv4 rule never matches a real IPv6 client.
    pub(crate) fn matches(&self, client: IpAddr) -> bool {
        self.net.contains(&client.to_canonical())
    }
}

/// The whole access list.
#[derive(Debug, Clone, Default)]
pub(crate) struct Acl {
    rules: Vec<Rule>,
}

impl Acl {
    /// Build from `--allow` specs and the `--allow-private` flag. With neither, loopback only.
    pub(crate) fn new(allow: &[String], allow_private: bool) -> Result<Acl, AclError> {
        let mut rules = Vec::new();
        for spec in allow {
            rules.extend(Rule::parse(spec)?);
        }
        if allow_private {
            for spec in PRIVATE {
                rules.extend(Rule::parse(spec)?);
            }
        }
        Ok(Acl { rules })
    }

    /// True when neither `--allow` nor `--allow-private` was given.
    pub(crate) fn is_default(&self) -> bool {
        self.rules.is_empty()
    }

    pub(crate) fn allows(&self, client: IpAddr) -> bool {
        if self.rules.is_empty() {
            return client.to_canonical().is_loopback();
        }
        self.rules.iter().any(|r| r.matches(client))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn acl(specs: &[&str]) -> Acl {
        Acl::new(
            &specs.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            false,
        )
        .unwrap()
    }

    #[test]
    fn ipv4_prefixes() {
        let a = acl(&["192.168.0.0/24"]);
        assert!(a.allows(ip("192.168.0.7")));
        assert!(!a.allows(ip("192.168.1.7")));
        let a = acl(&["10.1.2.3"]);
        assert!(a.allows(ip("10.1.2.3")));
        assert!(!a.allows(ip("10.1.2.4")));
        let a = acl(&["172.16.0.0/12"]);
        assert!(a.allows(ip("172.31.255.1")));
        assert!(!a.allows(ip("172.32.0.1")));
        let a = acl(&["0.0.0.0/0"]);
        assert!(a.allows(ip("8.8.8.8")));
        assert!(
            !a.allows(ip("::2")),
            "an IPv4 rule never matches a real IPv6 client"
        );
    }

    #[test]
    fn ipv6_and_mapped() {
        let a = acl(&["fe80::/10"]);
        assert!(a.allows(ip("fe80::1")));
        assert!(!a.allows(ip("fec0::1")));
        let a = acl(&["192.168.0.0/16"]);
        assert!(
            a.allows(ip("::ffff:192.168.4.5")),
            "v4-mapped client matches v4 rule"
        );
        assert!(!a.allows(ip("::ffff:10.0.0.1")));
        let a = acl(&["[::1]"]);
        assert!(a.allows(ip("::1")));
    }

    #[test]
    fn default_is_loopback_only() {
        let a = acl(&[]);
        assert!(a.is_default());
        for lo in [
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(Ipv6Addr::LOCALHOST),
        ] {
            assert!(a.allows(lo));
        }
        assert!(a.allows(ip("127.0.0.9")));
        assert!(a.allows(ip("::ffff:127.0.0.1")));
        assert!(!a.allows(ip("192.168.0.2")));
    }

    #[test]
    fn private_includes_ipv6_loopback() {
        let a = Acl::new(&[], true).unwrap();
        assert!(a.allows(ip("::1")));
        assert!(a.allows(ip("10.3.3.3")));
        assert!(a.allows(ip("fd00::5")));
        assert!(!a.allows(ip("8.8.8.8")));
    }

    #[test]
    fn host_names_resolve() {
        let a = acl(&["localhost"]);
        assert!(a.allows(ip("127.0.0.1")));
    }

    #[test]
    fn bad_specs() {
        assert!(matches!(
            Rule::parse("10.0.0.0/33"),
            Err(AclError::BadBits(_))
        ));
        assert!(matches!(Rule::parse("::/129"), Err(AclError::BadBits(_))));
        assert!(matches!(
            Rule::parse("1.2.3.4/x"),
            Err(AclError::BadBits(_))
        ));
        assert!(matches!(Rule::parse(""), Err(AclError::BadAddress(_))));
        assert!(matches!(
            Rule::parse("no.such.host.invalid"),
            Err(AclError::BadAddress(_))
        ));
    }
}
