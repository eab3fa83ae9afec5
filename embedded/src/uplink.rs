//! The device's link to the relay: when to dial (`dissent_core::backoff`), the TCP
//! connection, the Noise handshake (`dissent_core::link`), then records over TCP through the
//! fixed buffers of [`crate::stream`].
//!
//! A role app keeps one [`Uplink`] and one TCP socket for its whole run:
//!
//! ```text
//! loop {
//!     let transport = uplink.connect(&mut socket, &mut inbound, &mut rng).await;
//!     role.handle_connected(now);
//!     let loss = serve(...).await;        // frames both ways until the link fails
//!     role.handle_disconnected(now);
//!     uplink.lost(&mut socket, &loss).await;
//! }
//! ```
//!
//! Every link event is one console line, prefixed with the node's name.

use core::fmt;

use dissent_core::backoff::{Backoff, BackoffConfig};
use dissent_core::link::{Initiator, LinkError, Sealer, Transport, HEADER_LEN, REQUEST_LEN};
use embassy_net::tcp::{ConnectError, Error as TcpError, TcpSocket};
use embassy_net::{IpEndpoint, Ipv4Address};
use embassy_time::{with_timeout, Duration, Instant, Timer};
use rand_core::RngCore;

use crate::println;
use crate::stream::{Inbound, Outbound, StreamError};

/// Time allowed for the TCP connection and the handshake together (the relay allows 10 s).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A link with unacknowledged data for this long is dead.
pub const LINK_TIMEOUT: Duration = Duration::from_secs(30);
/// Keep-alive probes on an idle link, so a vanished relay is noticed.
pub const KEEP_ALIVE: Duration = Duration::from_secs(10);

/// The core's clock value for an embassy instant.
pub fn core_time(at: Instant) -> dissent_core::Instant {
    dissent_core::Instant::from_micros(at.as_micros())
}

/// The core's clock value now.
pub fn now() -> dissent_core::Instant {
    core_time(Instant::now())
}

/// Why a link ended (or never came up).
#[derive(Debug)]
pub enum Loss<E> {
    /// The relay closed the connection.
    Closed,
    /// The connection broke (reset or timed out).
    Tcp(TcpError),
    /// The relay's bytes break the link or frame format, or do not fit this device.
    Stream(StreamError),
    /// Sealing a record failed.
    Seal(LinkError),
    /// The role refused what the relay sent, or could not build a frame.
    Role(E),
}

impl<E: fmt::Display> fmt::Display for Loss<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Closed => f.write_str("the relay closed the connection"),
            Self::Tcp(e) => write!(f, "connection {e:?}"),
            Self::Stream(e) => write!(f, "{e}"),
            Self::Seal(e) => write!(f, "seal: {e}"),
            Self::Role(e) => write!(f, "{e}"),
        }
    }
}

impl<E> From<StreamError> for Loss<E> {
    fn from(e: StreamError) -> Self {
        Loss::Stream(e)
    }
}

impl<E> From<TcpError> for Loss<E> {
    fn from(e: TcpError) -> Self {
        Loss::Tcp(e)
    }
}

impl<E> From<LinkError> for Loss<E> {
    fn from(e: LinkError) -> Self {
        Loss::Seal(e)
    }
}

/// What the node needs to reach and authenticate to the relay.
#[derive(Clone, Copy)]
pub struct Target {
    /// The relay's IPv4 address.
    pub addr: [u8; 4],
    /// The relay's port.
    pub port: u16,
    /// The node's long-term link secret.
    pub link_secret: [u8; 32],
    /// The relay's long-term link public key.
    pub relay_key: [u8; 32],
    /// The group id.
    pub group_id: [u8; 16],
    /// The session id.
    pub session_id: [u8; 16],
}

/// A node's name on the console, e.g. `trustee 1`.
#[derive(Debug, Clone, Copy)]
pub struct NodeName {
    /// `client` or `trustee`.
    pub role: &'static str,
    /// The node's index.
    pub index: u16,
}

impl fmt::Display for NodeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.role, self.index)
    }
}

/// One node's link to the relay across reconnects.
pub struct Uplink {
    name: NodeName,
    target: Target,
    backoff: Backoff,
    next_dial: Instant,
    up_since: Option<Instant>,
    attempt: u32,
}

enum DialError {
    Connect(ConnectError),
    TimedOut,
    Handshake(Loss<LinkError>),
}

impl fmt::Display for DialError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Connect(e) => write!(f, "connect: {e:?}"),
            Self::TimedOut => write!(f, "no handshake within {} s", HANDSHAKE_TIMEOUT.as_secs()),
            Self::Handshake(e) => write!(f, "handshake: {e}"),
        }
    }
}

impl Uplink {
    /// A link for the node `name` to `target`, whose redials are jittered from `seed`.
    pub fn new(name: NodeName, target: Target, seed: [u8; 32]) -> Self {
        Uplink {
            name,
            target,
            backoff: Backoff::new(BackoffConfig::default(), seed),
            next_dial: Instant::now(),
            up_since: None,
            attempt: 0,
        }
    }

    /// Dials until a link is up, waiting as the backoff says between attempts; returns the
    /// link's transport with `inbound` holding any bytes that followed the handshake.
    pub async fn connect(
        &mut self,
        socket: &mut TcpSocket<'_>,
        inbound: &mut Inbound<'_>,
        rng: &mut impl RngCore,
    ) -> Transport {
        let endpoint = IpEndpoint::from((Ipv4Address::from(self.target.addr), self.target.port));
        loop {
            Timer::at(self.next_dial).await;
            self.attempt += 1;
            println!(
                "{}: dialing relay {} (attempt {})",
                self.name, endpoint, self.attempt
            );
            let mut entropy = [0u8; 32];
            rng.fill_bytes(&mut entropy);
            inbound.reset();
            let dialed = with_timeout(
                HANDSHAKE_TIMEOUT,
                dial(socket, endpoint, &self.target, entropy, inbound),
            )
            .await
            .unwrap_or(Err(DialError::TimedOut));
            let at = Instant::now();
            match dialed {
                Ok(transport) => {
                    self.backoff.handle_connected(core_time(at));
                    self.up_since = Some(at);
                    socket.set_timeout(Some(LINK_TIMEOUT));
                    socket.set_keep_alive(Some(KEEP_ALIVE));
                    println!(
                        "{}: link up (attempt {}); stack peak {} B",
                        self.name,
                        self.attempt,
                        crate::stack::peak()
                    );
                    return transport;
                }
                Err(e) => {
                    socket.abort();
                    // Nothing to wait for on a connection that never came up or was refused.
                    let _ = with_timeout(Duration::from_millis(100), socket.flush()).await;
                    let next = match e {
                        DialError::Connect(_) => self.backoff.handle_connect_failed(core_time(at)),
                        _ => self.backoff.handle_handshake_failed(core_time(at)),
                    };
                    self.schedule(next);
                    println!(
                        "{}: {}; next dial in {} ms",
                        self.name,
                        e,
                        (self.next_dial - at).as_millis()
                    );
                }
            }
        }
    }

    /// The link that was up ended because of `loss`: resets the connection and schedules
    /// the next dial.
    pub async fn lost(&mut self, socket: &mut TcpSocket<'_>, loss: &dyn fmt::Display) {
        let at = Instant::now();
        socket.abort();
        let _ = with_timeout(Duration::from_millis(100), socket.flush()).await;
        let next = self.backoff.handle_lost(core_time(at));
        self.schedule(next);
        let up = self
            .up_since
            .take()
            .map_or(0, |since| (at - since).as_millis());
        println!(
            "{}: link lost after {} ms: {}; next dial in {} ms; stack peak {} B",
            self.name,
            up,
            loss,
            (self.next_dial - at).as_millis(),
            crate::stack::peak()
        );
    }

    fn schedule(&mut self, next: dissent_core::Instant) {
        self.next_dial = Instant::from_micros(next.as_micros());
    }
}

/// One attempt: TCP connection, request, response.
async fn dial(
    socket: &mut TcpSocket<'_>,
    endpoint: IpEndpoint,
    target: &Target,
    entropy: [u8; 32],
    inbound: &mut Inbound<'_>,
) -> Result<Transport, DialError> {
    socket.set_timeout(Some(HANDSHAKE_TIMEOUT));
    socket.set_keep_alive(None);
    socket.connect(endpoint).await.map_err(DialError::Connect)?;
    let handshake = |e: LinkError| DialError::Handshake(Loss::Seal(e));
    let mut hs = Initiator::new(
        &target.link_secret,
        &target.relay_key,
        &target.group_id,
        &target.session_id,
        entropy,
    )
    .map_err(handshake)?;
    let mut request = [0u8; HEADER_LEN + REQUEST_LEN];
    let n = hs.write_request(&mut request).map_err(handshake)?;
    write_all(socket, &request[..n])
        .await
        .map_err(|e| DialError::Handshake(Loss::Tcp(e)))?;
    let response = loop {
        if let Some(r) = inbound
            .response()
            .map_err(|e| DialError::Handshake(Loss::Stream(e)))?
        {
            break r;
        }
        fill(socket, inbound).await.map_err(DialError::Handshake)?;
    };
    hs.read_response(&response).map_err(handshake)
}

/// Reads more stream bytes into `inbound`.
pub async fn fill<E>(socket: &mut TcpSocket<'_>, inbound: &mut Inbound<'_>) -> Result<(), Loss<E>> {
    let n = socket.read(inbound.space()).await?;
    if n == 0 {
        return Err(Loss::Closed);
    }
    inbound.filled(n);
    Ok(())
}

/// Seals the `n`-byte frame written to `out.frame_space()` and sends it.
pub async fn send_frame<E>(
    socket: &mut TcpSocket<'_>,
    out: &mut Outbound<'_>,
    sealer: &mut Sealer,
    n: usize,
) -> Result<(), Loss<E>> {
    let record = out.seal(sealer, n)?;
    write_all(socket, record).await?;
    Ok(())
}

/// Writes all of `bytes`.
pub async fn write_all(socket: &mut TcpSocket<'_>, mut bytes: &[u8]) -> Result<(), TcpError> {
    while !bytes.is_empty() {
        let n = socket.write(bytes).await?;
        bytes = &bytes[n..];
    }
    Ok(())
}
