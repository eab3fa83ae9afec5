//! `HOST:PORT` addresses: the one parser behind every address option and `system.json`.
//!
//! A host is a DNS name, an IPv4 address or an IPv6 address in brackets (`[::1]:80`); the
//! port is 1-65535. Errors say what is wrong and how to write it instead, so a typo fails
//! at start rather than as a connection that never comes up.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// Longest DNS name accepted.
const MAX_NAME_LEN: usize = 253;
/// Longest label of a DNS name.
const MAX_LABEL_LEN: usize = 63;

/// A checked `host:port`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostPort {
    host: Host,
    port: u16,
}

/// The host part of a [`HostPort`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Host {
    /// A DNS name, resolved when connecting.
    Name(String),
    /// A literal address.
    Ip(IpAddr),
}

/// Why a string is not a [`HostPort`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AddrError {
    /// Nothing was given.
    Empty,
    /// No `:PORT` at the end.
    NoPort(String),
    /// Nothing before the `:PORT`.
    EmptyHost,
    /// The port is not a decimal number.
    PortNotNumber(String),
    /// The port is 0 or above 65535.
    PortOutOfRange(String),
    /// An IPv6 address and port written without brackets (host, port as written).
    Ipv6NeedsBrackets(String, String),
    /// A `[` without its `]`, or text between `]` and `:`.
    BadBrackets(String),
    /// The text in brackets is not an IPv6 address.
    NotIpv6(String),
    /// The host is neither an IPv4 address nor a valid DNS name.
    BadHost(String),
}

impl fmt::Display for AddrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => write!(
                f,
                "the address is empty: write HOST:PORT, e.g. 127.0.0.1:12345"
            ),
            Self::NoPort(s) => write!(
                f,
                "`{s}` has no port: write HOST:PORT, e.g. {}:12345",
                if s.contains(':') && !s.starts_with('[') {
                    format!("[{s}]")
                } else {
                    s.clone()
                }
            ),
            Self::EmptyHost => write!(
                f,
                "the host is empty: write HOST:PORT, e.g. 127.0.0.1:12345"
            ),
            Self::PortNotNumber(p) => {
                write!(f, "port `{p}` is not a number: ports are 1-65535")
            }
            Self::PortOutOfRange(p) => write!(f, "port {p} is out of range: ports are 1-65535"),
            Self::Ipv6NeedsBrackets(host, port) => {
                write!(f, "an IPv6 address needs brackets: write [{host}]:{port}")
            }
            Self::BadBrackets(s) => {
                write!(
                    f,
                    "`{s}`: write an IPv6 address as [ADDRESS]:PORT, e.g. [::1]:12345"
                )
            }
            Self::NotIpv6(s) => write!(f, "`{s}` in brackets is not an IPv6 address"),
            Self::BadHost(s) => write!(f, "`{s}` is not a host name or an IPv4 address"),
        }
    }
}

impl std::error::Error for AddrError {}

impl FromStr for HostPort {
    type Err = AddrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err(AddrError::Empty);
        }
        if let Some(rest) = s.strip_prefix('[') {
            let (inside, after) = rest
                .split_once(']')
                .ok_or_else(|| AddrError::BadBrackets(s.to_owned()))?;
            let port = match after.strip_prefix(':') {
                Some(port) => port,
                None if after.is_empty() => return Err(AddrError::NoPort(s.to_owned())),
                None => return Err(AddrError::BadBrackets(s.to_owned())),
            };
            let ip: Ipv6Addr = inside
                .parse()
                .map_err(|_| AddrError::NotIpv6(inside.to_owned()))?;
            return Ok(HostPort {
                host: Host::Ip(IpAddr::V6(ip)),
                port: parse_port(port)?,
            });
        }
        let Some((host, port)) = s.rsplit_once(':') else {
            return Err(AddrError::NoPort(s.to_owned()));
        };
        if host.contains(':') {
            // `::1:80` is itself an IPv6 address; most likely `[::1]:80` was meant.
            let split = host.parse::<Ipv6Addr>().is_ok() && parse_port(port).is_ok();
            return Err(if split {
                AddrError::Ipv6NeedsBrackets(host.to_owned(), port.to_owned())
            } else if s.parse::<Ipv6Addr>().is_ok() {
                AddrError::NoPort(s.to_owned())
            } else {
                AddrError::BadBrackets(s.to_owned())
            });
        }
        if host.is_empty() {
            return Err(AddrError::EmptyHost);
        }
        let port = parse_port(port)?;
        let host = match host.parse::<Ipv4Addr>() {
            Ok(ip) => Host::Ip(IpAddr::V4(ip)),
            Err(_) if is_host_name(host) => Host::Name(host.to_owned()),
            Err(_) => return Err(AddrError::BadHost(host.to_owned())),
        };
        Ok(HostPort { host, port })
    }
}

/// Parses a port in 1..=65535.
fn parse_port(port: &str) -> Result<u16, AddrError> {
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(AddrError::PortNotNumber(port.to_owned()));
    }
    match port.parse::<u16>() {
        Ok(p) if p != 0 => Ok(p),
        _ => Err(AddrError::PortOutOfRange(port.to_owned())),
    }
}

/// Whether `host` is a DNS name: dot-separated labels of letters, digits and inner hyphens.
fn is_host_name(host: &str) -> bool {
    let host = host.strip_suffix('.').unwrap_or(host);
    // All-numeric labels would make a mistyped IPv4 address (`1.2.3`) look like a name.
    let numeric = host.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    !host.is_empty()
        && !numeric
        && host.len() <= MAX_NAME_LEN
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= MAX_LABEL_LEN
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

impl HostPort {
    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The host.
    pub fn host(&self) -> &Host {
        &self.host
    }

    /// The same host with another port.
    pub fn with_port(&self, port: u16) -> HostPort {
        HostPort {
            host: self.host.clone(),
            port,
        }
    }
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            Host::Name(name) => write!(f, "{name}:{}", self.port),
            Host::Ip(IpAddr::V4(ip)) => write!(f, "{ip}:{}", self.port),
            Host::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]:{}", self.port),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<HostPort, AddrError> {
        s.parse()
    }

    #[test]
    fn accepts_names_and_addresses() {
        for (text, shown) in [
            ("127.0.0.1:12345", "127.0.0.1:12345"),
            ("localhost:1", "localhost:1"),
            ("relay.example.org:65535", "relay.example.org:65535"),
            ("relay.example.org.:443", "relay.example.org.:443"),
            ("[::1]:8080", "[::1]:8080"),
            ("[2001:db8:0::1]:80", "[2001:db8::1]:80"),
        ] {
            assert_eq!(
                parse(text).map(|a| a.to_string()),
                Ok(shown.into()),
                "{text}"
            );
        }
        let a = parse("[::1]:8080").unwrap();
        assert_eq!(a.port(), 8080);
        assert_eq!(a.host(), &Host::Ip("::1".parse().unwrap()));
        assert_eq!(a.with_port(9).to_string(), "[::1]:9");
    }

    #[test]
    fn refuses_with_a_reason() {
        let cases: [(&str, AddrError, &str); 15] = [
            ("", AddrError::Empty, "empty"),
            (
                "127.0.0.1",
                AddrError::NoPort("127.0.0.1".into()),
                "127.0.0.1:12345",
            ),
            (
                "localhost",
                AddrError::NoPort("localhost".into()),
                "has no port",
            ),
            ("::1", AddrError::NoPort("::1".into()), "[::1]:12345"),
            ("[::1]", AddrError::NoPort("[::1]".into()), "has no port"),
            (
                "127.0.0.1:99999",
                AddrError::PortOutOfRange("99999".into()),
                "1-65535",
            ),
            ("host:0", AddrError::PortOutOfRange("0".into()), "1-65535"),
            ("host:", AddrError::PortNotNumber("".into()), "not a number"),
            (
                "host:http",
                AddrError::PortNotNumber("http".into()),
                "not a number",
            ),
            (":80", AddrError::EmptyHost, "host is empty"),
            (
                "::1:80",
                AddrError::Ipv6NeedsBrackets("::1".into(), "80".into()),
                "write [::1]:80",
            ),
            (
                "fe80::",
                AddrError::NoPort("fe80::".into()),
                "[fe80::]:12345",
            ),
            (
                "[::1:80",
                AddrError::BadBrackets("[::1:80".into()),
                "[ADDRESS]:PORT",
            ),
            (
                "[::1]80",
                AddrError::BadBrackets("[::1]80".into()),
                "[ADDRESS]:PORT",
            ),
            (
                "[1.2.3.4]:80",
                AddrError::NotIpv6("1.2.3.4".into()),
                "not an IPv6",
            ),
        ];
        for (text, want, says) in cases {
            let got = parse(text).unwrap_err();
            assert_eq!(got, want, "{text:?}");
            assert!(got.to_string().contains(says), "{text:?}: {got}");
        }
        for bad in [
            "a_b:80",
            "bad host:80",
            "-x:80",
            "a..b:80",
            "1.2.3:80",
            "x]:80",
            "é:80",
        ] {
            assert!(
                matches!(
                    parse(bad),
                    Err(AddrError::BadHost(_) | AddrError::BadBrackets(_))
                ),
                "{bad}: {:?}",
                parse(bad)
            );
        }
        let long = format!("{}:80", "a".repeat(64));
        assert!(matches!(parse(&long), Err(AddrError::BadHost(_))));
    }
}
