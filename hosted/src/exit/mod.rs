//! Exits: where decoded DC-net connections leave the network.
//!
//! The relay turns each tunnelled connection ("Conn#") back into an ordered byte stream
//! from the anonymous client and hands it to an exit of one [`ExitKind`]:
//!
//! - [`ExitKind::Socks5`]: a SOCKS5 server (RFC 1928; CONNECT only, no-auth only, IPv4,
//!   IPv6 and domain-name targets). The client application speaks SOCKS5 through the
//!   tunnel and picks its own destination.
//! - [`ExitKind::Echo`]: every byte comes straight back; for tests and demos.
//! - [`ExitKind::Tcp`]: one fixed `host:port`.
//!
//! This module holds the kinds, the [`ExitPolicy`] and the standalone servers
//! ([`serve_socks5`], [`serve_echo`]: `dissent socks5 -p PORT`, `dissent echo -p PORT`);
//! [`connections`] is the relay's side, one task per open Conn#; `socks5` speaks the
//! SOCKS5 protocol for both; [`reachable`] knows which addresses are not globally
//! reachable.
//!
//! The [`ExitPolicy`] refuses, with reply 0x02 "connection not allowed by ruleset", every
//! destination that is not globally reachable ([`reachable`]) and every address of
//! this host, unless `--allow-private-exit` is given; names are checked after resolution.
//! It counts its refusals for the relay's stats line and never logs a destination.

pub mod connections;
pub mod reachable;
mod socks5;

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context as _;
use fast_socks5::ReplyError;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;

use crate::config::addr::{AddrError, HostPort};

/// Longest wait for a target's DNS resolution plus TCP connect.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest wait for a SOCKS5 client to finish its greeting and request.
///
/// Generous because over the DC-net every round trip can take several exchange rounds.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(60);

/// Pause after a failed `accept` so a persistent error (e.g. out of descriptors) cannot spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Where decoded connections leave the DC-net.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExitKind {
    /// A SOCKS5 server that the client application talks to through the tunnel.
    Socks5,
    /// A loopback that sends every byte back.
    Echo,
    /// A fixed TCP destination, written `host:port`.
    Tcp(HostPort),
}

/// Why a string is not an [`ExitKind`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ParseExitKindError {
    /// The string names no known exit.
    UnknownKind(String),
    /// The text after `tcp:` is not `HOST:PORT` with a port in 1..=65535.
    BadTcpAddr(String, AddrError),
}

impl fmt::Display for ParseExitKindError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownKind(s) => write!(
                f,
                "unknown exit `{s}`: expected `socks5`, `echo` or `tcp:HOST:PORT`"
            ),
            Self::BadTcpAddr(s, e) => write!(f, "bad tcp exit address `{s}`: {e}"),
        }
    }
}

impl std::error::Error for ParseExitKindError {}

impl FromStr for ExitKind {
    type Err = ParseExitKindError;

    /// Parses `socks5`, `echo` or `tcp:HOST:PORT` (IPv6 hosts in brackets: `tcp:[::1]:80`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "socks5" => Ok(Self::Socks5),
            "echo" => Ok(Self::Echo),
            _ => match s.strip_prefix("tcp:") {
                Some(addr) => addr
                    .parse()
                    .map(Self::Tcp)
                    .map_err(|e| ParseExitKindError::BadTcpAddr(addr.to_owned(), e)),
                None => Err(ParseExitKindError::UnknownKind(s.to_owned())),
            },
        }
    }
}

impl fmt::Display for ExitKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Socks5 => f.write_str("socks5"),
            Self::Echo => f.write_str("echo"),
            Self::Tcp(addr) => write!(f, "tcp:{addr}"),
        }
    }
}
/// Which destinations the SOCKS5 exit may connect to, how many it refused, and how many
/// connections to allowed destinations failed.
///
/// Clones share the counters.
#[derive(Clone, Debug)]
pub struct ExitPolicy {
    inner: Arc<PolicyState>,
}

#[derive(Debug)]
struct PolicyState {
    /// Also allow special-purpose addresses and this host's own. Off by default:
    /// anonymous users must not reach services on the exit's host or network.
    allow_private: bool,
    /// This host's interface addresses, read at start and again every
    /// [`HOST_REFRESH`] ([`ExitPolicy::keep_host_addresses_fresh`]).
    host: RwLock<Vec<IpAddr>>,
    /// Networks the operator denies (`--exit-deny`), whatever else allows them: a public
    /// address behind 1:1 NAT, which no interface shows, say.
    deny: Vec<Cidr>,
    /// Requests refused by this policy so far.
    refused: AtomicU64,
    /// Connections to allowed destinations that failed (no address, refused, timed out).
    failed: AtomicU64,
}

/// How often the exit reads this host's addresses again (an interface added later, an
/// address that changed).
pub const HOST_REFRESH: Duration = Duration::from_secs(30);

/// This host's interface addresses, or `None` if they cannot be listed.
fn host_addresses() -> Option<Vec<IpAddr>> {
    match if_addrs::get_if_addrs() {
        Ok(ifs) => Some(ifs.iter().map(|i| i.ip()).collect()),
        Err(e) => {
            tracing::warn!(
                "cannot list this host's addresses ({e}); the exit refuses special-purpose \
                 addresses and --exit-deny networks only"
            );
            None
        }
    }
}

impl ExitPolicy {
    /// Globally reachable addresses only, never this host's own (read from its interfaces
    /// now) nor any in `deny`; with `allow_private`, any address but those in `deny`.
    pub fn new(allow_private: bool, deny: Vec<Cidr>) -> ExitPolicy {
        let host = if allow_private {
            Vec::new()
        } else {
            host_addresses().unwrap_or_default()
        };
        ExitPolicy::with_host_addresses(allow_private, host, deny)
    }

    /// Globally reachable addresses only, except those in `host` and `deny`.
    fn with_host_addresses(allow_private: bool, host: Vec<IpAddr>, deny: Vec<Cidr>) -> ExitPolicy {
        ExitPolicy {
            inner: Arc::new(PolicyState {
                allow_private,
                host: RwLock::new(host),
                deny,
                refused: AtomicU64::new(0),
                failed: AtomicU64::new(0),
            }),
        }
    }

    /// Replaces this host's addresses (and its clones'), logging new ones.
    fn set_host_addresses(&self, host: Vec<IpAddr>) {
        let mut now = self
            .inner
            .host
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for a in host.iter().filter(|a| !now.contains(a)) {
            tracing::info!("the exit refuses this host's new address {a}");
        }
        *now = host;
    }

    /// Reads this host's addresses again every [`HOST_REFRESH`], for as long as the
    /// runtime runs (nothing to do when private addresses are allowed).
    pub fn keep_host_addresses_fresh(&self) {
        if self.inner.allow_private {
            return;
        }
        let policy = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(HOST_REFRESH);
            tick.tick().await;
            loop {
                tick.tick().await;
                if let Some(host) = tokio::task::spawn_blocking(host_addresses)
                    .await
                    .ok()
                    .flatten()
                {
                    policy.set_host_addresses(host);
                }
            }
        });
    }

    /// Whether the policy lets connections reach `ip`.
    pub fn allows(&self, ip: IpAddr) -> bool {
        let carried = match ip {
            IpAddr::V6(v6) => reachable::carried_ipv4(v6).map(IpAddr::V4),
            IpAddr::V4(_) => None,
        };
        let denied = |a: IpAddr| self.inner.deny.iter().any(|c| c.contains(a));
        if denied(ip) || carried.is_some_and(denied) {
            return false;
        }
        if self.inner.allow_private {
            return true;
        }
        let host = self
            .inner
            .host
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let own = |a: IpAddr| host.iter().any(|h| h.to_canonical() == a);
        reachable::special_block(ip).is_none()
            && !own(ip.to_canonical())
            && !carried.is_some_and(own)
    }

    /// Requests refused by this policy (and its clones) since it was made.
    pub fn refused(&self) -> u64 {
        self.inner.refused.load(Ordering::Relaxed)
    }

    fn count_refusal(&self) {
        self.inner.refused.fetch_add(1, Ordering::Relaxed);
    }

    /// Connections to allowed destinations that failed, by this policy's exits (and its
    /// clones') since it was made.
    pub fn failed(&self) -> u64 {
        self.inner.failed.load(Ordering::Relaxed)
    }

    fn count_failure(&self) {
        self.inner.failed.fetch_add(1, Ordering::Relaxed);
    }
}

/// A network the exit refuses (`--exit-deny`): `ADDRESS/PREFIX`, or an address alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Whether `ip` (IPv4-mapped IPv6 taken as IPv4) is in this network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Cidr, String> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("{s:?} is not ADDRESS/PREFIX (e.g. 198.51.100.7/32)"))?;
        let addr = addr.to_canonical();
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|&p| p <= max)
                .ok_or_else(|| format!("{s:?}: the prefix must be 0-{max}"))?,
        };
        Ok(Cidr { addr, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Connects to a fixed `host:port` exit, trying every resolved address, within the timeout.
async fn connect_tcp(addr: &HostPort) -> io::Result<TcpStream> {
    let tcp = match timeout(CONNECT_TIMEOUT, TcpStream::connect(addr.to_string())).await {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(e)) => {
            return Err(io::Error::new(
                e.kind(),
                format!("exit tcp:{addr}: connect failed: {e}"),
            ))
        }
        Err(_) => {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("exit tcp:{addr}: connect timed out after {CONNECT_TIMEOUT:?}"),
            ))
        }
    };
    // Best effort: interactive traffic should not wait for Nagle.
    let _ = tcp.set_nodelay(true);
    Ok(tcp)
}

/// Binds `listen` and serves SOCKS5 on it forever.
pub async fn serve_socks5(listen: SocketAddr, policy: ExitPolicy) -> anyhow::Result<()> {
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding socks5 server to {listen}"))?;
    serve_socks5_on(listener, policy).await
}

/// Serves SOCKS5 on an already bound listener forever, one task per connection.
pub async fn serve_socks5_on(listener: TcpListener, policy: ExitPolicy) -> anyhow::Result<()> {
    tracing::info!(addr = %listener.local_addr()?, "socks5 server listening");
    loop {
        let Some((stream, peer)) = accept(&listener).await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let policy = policy.clone();
        tokio::spawn(async move {
            match socks5::session(stream, &policy).await {
                Err(socks5::SessionError::Refused(ReplyError::ConnectionNotAllowed, _)) => {
                    tracing::info!(
                        "refused a destination by exit policy ({} so far; allow with \
                         --allow-private-exit)",
                        policy.refused()
                    );
                }
                Err(e) => tracing::debug!(%peer, error = %e, "socks5 session ended"),
                Ok(()) => {}
            }
        });
    }
}

/// Binds `listen` and echoes every connection on it forever.
pub async fn serve_echo(listen: SocketAddr) -> anyhow::Result<()> {
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding echo server to {listen}"))?;
    serve_echo_on(listener).await
}

/// Echoes every connection on an already bound listener forever, one task per connection.
pub async fn serve_echo_on(listener: TcpListener) -> anyhow::Result<()> {
    tracing::info!(addr = %listener.local_addr()?, "echo server listening");
    loop {
        let Some((stream, peer)) = accept(&listener).await else {
            continue;
        };
        tokio::spawn(async move {
            if let Err(e) = echo(stream).await {
                tracing::debug!(%peer, error = %e, "echo connection ended");
            }
        });
    }
}

/// Accepts one connection; on error logs it, backs off briefly and returns `None`.
async fn accept(listener: &TcpListener) -> Option<(TcpStream, SocketAddr)> {
    match listener.accept().await {
        Ok(conn) => Some(conn),
        Err(e) => {
            tracing::warn!(error = %e, "accept failed");
            tokio::time::sleep(ACCEPT_BACKOFF).await;
            None
        }
    }
}

/// Sends every byte read from `stream` back into it, then shuts it down at end of input.
async fn echo<S>(stream: S) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite,
{
    let (mut rx, mut tx) = tokio::io::split(stream);
    tokio::io::copy(&mut rx, &mut tx).await?;
    tx.shutdown().await
}

/// Copies bytes both ways until both directions have ended, then shuts both sides down.
async fn bridge<A, B>(mut a: A, mut b: B) -> io::Result<()>
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let copied = tokio::io::copy_bidirectional(&mut a, &mut b).await;
    // Best effort: after an error one side may already be gone.
    let _ = a.shutdown().await;
    let _ = b.shutdown().await;
    copied.map(drop)
}

#[cfg(test)]
mod tests {
    //! Helpers here are shared with the tests of [`super::connections`].

    use super::*;
    use std::net::Ipv4Addr;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    pub(super) const GREETING: [u8; 3] = [0x05, 0x01, 0x00];

    /// A target that reads `ping`, answers `pong:` + what it read, then echoes until EOF.
    pub(super) async fn spawn_target() -> io::Result<SocketAddr> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let mut ping = [0u8; 4];
            if s.read_exact(&mut ping).await.is_err() {
                return;
            }
            let mut reply = b"pong:".to_vec();
            reply.extend_from_slice(&ping);
            if s.write_all(&reply).await.is_err() {
                return;
            }
            let _ = echo(s).await;
        });
        Ok(addr)
    }

    /// A loopback port that nothing listens on.
    pub(super) async fn closed_port() -> io::Result<u16> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        Ok(listener.local_addr()?.port())
    }

    pub(super) fn connect_ipv4(cmd: u8, addr: SocketAddr) -> Vec<u8> {
        let SocketAddr::V4(v4) = addr else {
            panic!("test targets are IPv4");
        };
        let mut req = vec![0x05, cmd, 0x00, 0x01];
        req.extend_from_slice(&v4.ip().octets());
        req.extend_from_slice(&v4.port().to_be_bytes());
        req
    }

    pub(super) fn connect_domain(host: &str, port: u16) -> Vec<u8> {
        let mut req = vec![0x05, 0x01, 0x00, 0x03, host.len() as u8];
        req.extend_from_slice(host.as_bytes());
        req.extend_from_slice(&port.to_be_bytes());
        req
    }

    /// Sends the no-auth greeting and checks the server picks no-auth.
    pub(super) async fn greet<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S) -> io::Result<()> {
        s.write_all(&GREETING).await?;
        let mut choice = [0u8; 2];
        s.read_exact(&mut choice).await?;
        assert_eq!(choice, [0x05, 0x00]);
        Ok(())
    }

    /// Reads a whole request reply and returns its REP code.
    pub(super) async fn read_reply<S: AsyncRead + Unpin>(s: &mut S) -> io::Result<u8> {
        let mut head = [0u8; 4];
        s.read_exact(&mut head).await?;
        assert_eq!(head[0], 0x05, "reply version");
        assert_eq!(head[2], 0x00, "reply reserved byte");
        let addr_len = match head[3] {
            0x01 => 4,
            0x04 => 16,
            0x03 => usize::from(s.read_u8().await?),
            other => panic!("bad reply ATYP {other:#04x}"),
        };
        let mut rest = vec![0u8; addr_len + 2];
        s.read_exact(&mut rest).await?;
        Ok(head[1])
    }

    pub(super) fn pattern(len: usize) -> Vec<u8> {
        dissent_core::testkit::pattern(31, len)
    }

    /// Writes `data` (then shuts down) while reading everything back, concurrently.
    pub(super) async fn round_trip<S: AsyncRead + AsyncWrite>(
        s: S,
        data: &[u8],
    ) -> io::Result<Vec<u8>> {
        let (mut rx, mut tx) = tokio::io::split(s);
        let write = async {
            tx.write_all(data).await?;
            tx.shutdown().await
        };
        let mut back = Vec::new();
        let (w, r) = tokio::join!(write, rx.read_to_end(&mut back));
        w?;
        r?;
        Ok(back)
    }

    #[test]
    fn public_and_private_addresses() {
        let public = [
            "1.1.1.1",
            "93.184.215.14",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
        ];
        let private = [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.1.1",
            "100.64.0.1",
            "192.0.0.1",
            "198.18.0.1",
            "240.0.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "fec0::1",
            "2001:db8::1",
            "::ffff:127.0.0.1",
            "::10.0.0.1",
            "64:ff9b::a00:1",
            "2002:a00:1::1",
        ];
        let public_only = ExitPolicy::with_host_addresses(false, Vec::new(), Vec::new());
        let any = ExitPolicy::new(true, Vec::new());
        for a in public {
            assert!(public_only.allows(a.parse().unwrap()), "{a}");
        }
        for a in private {
            assert!(!public_only.allows(a.parse().unwrap()), "{a}");
            assert!(any.allows(a.parse().unwrap()), "{a}");
        }
    }

    #[test]
    fn this_hosts_own_addresses_are_refused() {
        let own: Vec<IpAddr> = vec![
            "203.0.114.7".parse().unwrap(),
            "2a01:4f8::7".parse().unwrap(),
        ];
        let policy = ExitPolicy::with_host_addresses(false, own, Vec::new());
        for a in [
            "203.0.114.7",
            "::ffff:203.0.114.7",
            "64:ff9b::203.0.114.7",
            "2002:cb00:7207::1",
            "2a01:4f8::7",
        ] {
            assert!(!policy.allows(a.parse().unwrap()), "{a}");
        }
        for a in ["203.0.114.8", "2a01:4f8::8"] {
            assert!(policy.allows(a.parse().unwrap()), "{a}");
        }
        assert!(ExitPolicy::new(true, Vec::new()).allows("203.0.114.7".parse().unwrap()));
    }

    #[test]
    fn addresses_the_host_gains_later_are_refused_once_read_again() {
        let policy = ExitPolicy::with_host_addresses(false, Vec::new(), Vec::new());
        let clone = policy.clone();
        assert!(policy.allows("203.0.114.9".parse().unwrap()));
        // What the periodic re-read does: every clone refuses the new address at once.
        policy.set_host_addresses(vec!["203.0.114.9".parse().unwrap()]);
        for p in [&policy, &clone] {
            assert!(!p.allows("203.0.114.9".parse().unwrap()));
            assert!(!p.allows("::ffff:203.0.114.9".parse().unwrap()));
        }
        // An address the host no longer has is allowed again.
        policy.set_host_addresses(Vec::new());
        assert!(clone.allows("203.0.114.9".parse().unwrap()));
    }

    #[test]
    fn denied_networks_are_refused_even_with_private_addresses_allowed() {
        let deny: Vec<Cidr> = ["198.51.99.0/24", "2a01:4f8:1::/48", "203.0.114.7"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        for allow_private in [false, true] {
            let policy = ExitPolicy::with_host_addresses(allow_private, Vec::new(), deny.clone());
            for a in [
                "198.51.99.1",
                "198.51.99.255",
                "::ffff:198.51.99.1",
                "64:ff9b::198.51.99.1",
                "2a01:4f8:1:2::1",
                "203.0.114.7",
            ] {
                assert!(!policy.allows(a.parse().unwrap()), "{a}");
            }
            for a in ["198.51.98.1", "198.51.97.1", "2a01:4f8:2::1", "203.0.114.8"] {
                assert!(policy.allows(a.parse().unwrap()), "{a}");
            }
        }
    }

    #[test]
    fn networks_parse_and_garbage_is_named() {
        let c: Cidr = "10.1.2.3/8".parse().unwrap();
        assert!(c.contains("10.200.0.1".parse().unwrap()));
        assert!(!c.contains("11.0.0.1".parse().unwrap()));
        assert_eq!(c.to_string(), "10.1.2.3/8");
        let all: Cidr = "::/0".parse().unwrap();
        assert!(all.contains("2001:db8::1".parse().unwrap()));
        assert!(!all.contains("1.2.3.4".parse().unwrap()));
        let any4: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(any4.contains("1.2.3.4".parse().unwrap()));
        assert_eq!(
            "::ffff:1.2.3.4".parse::<Cidr>().unwrap().to_string(),
            "1.2.3.4/32"
        );
        for bad in ["", "x", "1.2.3.4/33", "::1/129", "1.2.3.4/-1", "1.2.3/8"] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn exit_kind_round_trips() {
        let kinds = [
            ExitKind::Socks5,
            ExitKind::Echo,
            ExitKind::Tcp("127.0.0.1:8080".parse().unwrap()),
            ExitKind::Tcp("example.org:443".parse().unwrap()),
            ExitKind::Tcp("[::1]:22".parse().unwrap()),
        ];
        for kind in kinds {
            assert_eq!(kind.to_string().parse::<ExitKind>(), Ok(kind));
        }
        assert_eq!("socks5".parse(), Ok(ExitKind::Socks5));
        assert_eq!(
            "tcp:localhost:7".parse(),
            Ok(ExitKind::Tcp("localhost:7".parse().unwrap()))
        );
    }

    #[test]
    fn exit_kind_rejects_junk() {
        for junk in ["", "SOCKS5", "socks", "echo ", "udp:1.2.3.4:5", "tcp"] {
            assert_eq!(
                junk.parse::<ExitKind>(),
                Err(ParseExitKindError::UnknownKind(junk.into())),
                "{junk:?}"
            );
        }
        for junk in [
            "tcp:",
            "tcp:host",
            "tcp::80",
            "tcp:host:",
            "tcp:host:0",
            "tcp:host:65536",
            "tcp:host:http",
            "tcp:::1:80",
            "tcp:a b:80",
        ] {
            assert!(
                matches!(
                    junk.parse::<ExitKind>(),
                    Err(ParseExitKindError::BadTcpAddr(..))
                ),
                "{junk:?}"
            );
        }
        let msg = "nope".parse::<ExitKind>().err().map(|e| e.to_string());
        assert_eq!(
            msg.as_deref(),
            Some("unknown exit `nope`: expected `socks5`, `echo` or `tcp:HOST:PORT`")
        );
    }

    #[tokio::test]
    async fn serve_echo_on_echoes() -> io::Result<()> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let server = tokio::spawn(serve_echo_on(listener));
        for _ in 0..2 {
            let data = pattern(100 * 1024);
            let back = round_trip(TcpStream::connect(addr).await?, &data).await?;
            assert!(back == data);
        }
        server.abort();
        Ok(())
    }

    #[tokio::test]
    async fn serve_socks5_on_connects_and_survives_bad_clients() -> io::Result<()> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let proxy = listener.local_addr()?;
        let server = tokio::spawn(serve_socks5_on(listener, ExitPolicy::new(true, Vec::new())));

        // A garbage client ends only its own connection.
        let mut bad = TcpStream::connect(proxy).await?;
        bad.write_all(&[0x04, 0x01]).await?;
        let mut rest = Vec::new();
        bad.read_to_end(&mut rest).await?;
        assert!(rest.is_empty());

        let target = spawn_target().await?;
        let mut s = TcpStream::connect(proxy).await?;
        greet(&mut s).await?;
        s.write_all(&connect_ipv4(0x01, target)).await?;
        assert_eq!(read_reply(&mut s).await?, 0x00);
        s.write_all(b"ping").await?;
        let mut pong = [0u8; 9];
        s.read_exact(&mut pong).await?;
        assert_eq!(&pong, b"pong:ping");

        server.abort();
        Ok(())
    }
}
