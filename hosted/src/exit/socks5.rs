//! The SOCKS5 exit's protocol (RFC 1928; CONNECT only, no-auth only, IPv4, IPv6 and
//! domain-name targets): the greeting and request, the policy check, the connect to the
//! destination, and the reply code each failure earns.
//!
//! Framing is parsed by the `fast-socks5` crate's server protocol API; this module owns the
//! policy: which commands are allowed, how targets are resolved (via
//! [`tokio::net::lookup_host`], every address tried in order), the timeouts, and which
//! reply code each failure earns. [`negotiate`] speaks it over any byte stream: a TCP
//! connection of the standalone server, or the relay's own queues of one Conn#. It only
//! negotiates; moving the bytes afterwards is the caller's. Nothing here panics on input; a
//! bad peer only ends its own connection, and destinations never appear in its errors (an
//! exit should not keep them).

use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};

use fast_socks5::server::{Socks5ServerProtocol, SocksServerError};
use fast_socks5::util::target_addr::TargetAddr;
use fast_socks5::{ReplyError, Socks5Command};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::timeout;

use super::{bridge, ExitPolicy, CONNECT_TIMEOUT, HANDSHAKE_TIMEOUT};

/// Why a SOCKS5 session ended early.
#[derive(Debug)]
pub enum SessionError {
    /// The client sent nothing usable within [`HANDSHAKE_TIMEOUT`].
    HandshakeTimeout,
    /// The client's greeting or request was malformed, or the client went away.
    Protocol(SocksServerError),
    /// The request was refused with this reply code.
    Refused(ReplyError, String),
    /// The relayed connection failed after CONNECT succeeded.
    Relay(io::Error),
}

impl fmt::Display for SessionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::HandshakeTimeout => write!(f, "no request within {HANDSHAKE_TIMEOUT:?}"),
            Self::Protocol(e) => write!(f, "protocol: {e}"),
            Self::Refused(code, why) => write!(f, "refused ({code}): {why}"),
            Self::Relay(e) => write!(f, "relay: {e}"),
        }
    }
}

impl From<SocksServerError> for SessionError {
    fn from(e: SocksServerError) -> Self {
        Self::Protocol(e)
    }
}

/// Runs one SOCKS5 server session on `client`: [`negotiate`], then copy bytes both ways
/// until both directions have ended.
pub async fn session<S>(client: S, policy: &ExitPolicy) -> Result<(), SessionError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (mut client, mut outbound) = negotiate(client, policy).await?;
    bridge(&mut client, &mut outbound)
        .await
        .map_err(SessionError::Relay)
}

/// Negotiates one SOCKS5 session on `client`: handshake, CONNECT to an allowed destination,
/// success reply. Returns `client` (holding whatever it sent after its request) and the
/// connected destination.
///
/// Every refusal is answered with its RFC 1928 reply code before `client` is dropped.
pub async fn negotiate<S>(client: S, policy: &ExitPolicy) -> Result<(S, TcpStream), SessionError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let handshake = async {
        Socks5ServerProtocol::accept_no_auth(client)
            .await?
            .read_command()
            .await
    };
    let (proto, cmd, target) = timeout(HANDSHAKE_TIMEOUT, handshake)
        .await
        .map_err(|_| SessionError::HandshakeTimeout)??;

    if cmd != Socks5Command::TCPConnect {
        proto.reply_error(&ReplyError::CommandNotSupported).await?;
        return Err(SessionError::Refused(
            ReplyError::CommandNotSupported,
            format!("{cmd:?}"),
        ));
    }

    let outbound = match timeout(CONNECT_TIMEOUT, connect_target(&target, policy)).await {
        Ok(Ok(tcp)) => tcp,
        Ok(Err((code, why))) => {
            if !matches!(code, ReplyError::ConnectionNotAllowed) {
                policy.count_failure();
            }
            proto.reply_error(&code).await?;
            return Err(SessionError::Refused(code, why.to_string()));
        }
        Err(_) => {
            policy.count_failure();
            let code = ReplyError::ConnectionTimeout;
            proto.reply_error(&code).await?;
            return Err(SessionError::Refused(code, "timed out".into()));
        }
    };
    let _ = outbound.set_nodelay(true);

    let bound = outbound
        .local_addr()
        .unwrap_or(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)));
    let client = proto.reply_success(bound).await?;
    Ok((client, outbound))
}

/// Resolves `target` and connects to the first address that accepts.
///
/// Names are checked against the policy after resolution. On failure returns the reply
/// code for the last error seen, and that error.
async fn connect_target(
    target: &TargetAddr,
    policy: &ExitPolicy,
) -> Result<TcpStream, (ReplyError, io::Error)> {
    let resolved: Vec<SocketAddr> = match target {
        TargetAddr::Ip(addr) => vec![*addr],
        TargetAddr::Domain(host, port) => tokio::net::lookup_host((host.as_str(), *port))
            .await
            .map_err(|e| (ReplyError::HostUnreachable, e))?
            .collect(),
    };
    let addrs: Vec<SocketAddr> = resolved
        .iter()
        .copied()
        .filter(|a| policy.allows(a.ip()))
        .collect();
    if addrs.is_empty() && !resolved.is_empty() {
        policy.count_refusal();
        return Err((
            ReplyError::ConnectionNotAllowed,
            io::Error::new(
                io::ErrorKind::PermissionDenied,
                "destination is not globally reachable (see --allow-private-exit)",
            ),
        ));
    }
    let mut last = (
        ReplyError::HostUnreachable,
        io::Error::new(io::ErrorKind::NotFound, "name resolved to no addresses"),
    );
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(tcp) => return Ok(tcp),
            Err(e) => {
                tracing::debug!(error = %e, "socks5 connect attempt failed");
                last = (reply_code(&e), e);
            }
        }
    }
    Err(last)
}

/// The RFC 1928 reply code for a failed TCP connect.
fn reply_code(e: &io::Error) -> ReplyError {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => ReplyError::ConnectionRefused,
        io::ErrorKind::NetworkUnreachable | io::ErrorKind::NetworkDown => {
            ReplyError::NetworkUnreachable
        }
        io::ErrorKind::HostUnreachable => ReplyError::HostUnreachable,
        io::ErrorKind::TimedOut => ReplyError::ConnectionTimeout,
        _ => ReplyError::GeneralFailure,
    }
}
