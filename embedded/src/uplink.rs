//! The device's link to the relay: when to dial (`dissent_core::backoff`), the relay's
//! address (looked up by DNS at each dial when the provisioning names it), the TCP
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
use dissent_core::link::{
    Initiator, LinkError, Sealer, Transport, HEADER_LEN, REQUEST_LEN, RESPONSE_LEN,
};
#[cfg(feature = "relay-name")]
use embassy_net::dns::{DnsQueryType, Error as DnsError};
use embassy_net::tcp::{ConnectError, Error as TcpError, TcpSocket};
use embassy_net::{IpEndpoint, Ipv4Address};
use embassy_time::{with_timeout, Duration, Instant, Timer};
use embedded_io_async::Write;
use rand_core::RngCore;

use dissent_core::provision::{Node, Relay};
use dissent_core::wire::{GoodbyeReason, NodeRole, WireError};

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

/// Why a role cannot go on with a link: it refused the relay's frame (`E`, the role's
/// error), or could not build one of its own.
#[derive(Debug)]
pub enum RoleError<E> {
    /// The role refused a frame from the relay.
    Frame(E),
    /// The role could not encode a frame.
    Encode(WireError),
}

impl<E: fmt::Display> fmt::Display for RoleError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Frame(e) => write!(f, "{e}"),
            Self::Encode(e) => write!(f, "cannot build a frame: {e}"),
        }
    }
}

/// Stops the firmware if the relay's `goodbye` means another process of this node holds
/// its place (two would only replace each other); otherwise returns, to dial again.
pub fn stop_if_replaced(name: NodeName, goodbye: Option<GoodbyeReason>) {
    if let Some(r) = goodbye.filter(|r| r.ends_the_process()) {
        println!("{}: {}; this node stops", name, r);
        crate::exit(1)
    }
}

/// Reads the node's configuration for `role` from the provisioning area, with the node's
/// console name; if it does not parse, says why and stops the firmware.
pub fn provisioned(
    area: &'static [u8],
    role: NodeRole,
    role_name: &'static str,
) -> (Node<'static>, NodeName) {
    match Node::parse(area, role) {
        Ok(node) => {
            let name = NodeName {
                role: role_name,
                index: node.index,
            };
            (node, name)
        }
        Err(e) => {
            println!("{}: {}", role_name, e);
            crate::exit(1)
        }
    }
}

/// The node's peers' session keys (32 bytes each, end to end in the provisioning), viewed
/// in place; if they are not whole keys, says so and stops the firmware.
pub fn peer_keys(node: &Node<'static>, name: NodeName) -> &'static [[u8; 32]] {
    let bytes: &'static [u8] = node.pad_keys();
    match bytemuck::try_cast_slice::<u8, [u8; 32]>(bytes) {
        Ok(keys) => keys,
        Err(_) => {
            println!("{}: peer keys are not whole keys", name);
            crate::exit(1)
        }
    }
}

/// A role's link buffers: the TCP socket's, and the record and frame buffers of
/// [`Inbound`] and [`Outbound`]. Apps keep one in a static, zeroed in place in `.bss`.
pub struct LinkBuffers<const SOCKET: usize, const RAW: usize, const PLAIN: usize, const OUT: usize>
{
    /// The socket's receive buffer.
    pub socket_rx: [u8; SOCKET],
    /// The socket's send buffer.
    pub socket_tx: [u8; SOCKET],
    /// Records as received ([`Inbound`]).
    pub raw: [u8; RAW],
    /// Their plaintext ([`Inbound`]).
    pub plain: [u8; PLAIN],
    /// Frames to seal and send ([`Outbound`]).
    pub out: [u8; OUT],
}

impl<const SOCKET: usize, const RAW: usize, const PLAIN: usize, const OUT: usize>
    LinkBuffers<SOCKET, RAW, PLAIN, OUT>
{
    /// All zero.
    pub const fn new() -> Self {
        LinkBuffers {
            socket_rx: [0; SOCKET],
            socket_tx: [0; SOCKET],
            raw: [0; RAW],
            plain: [0; PLAIN],
            out: [0; OUT],
        }
    }
}

impl<const SOCKET: usize, const RAW: usize, const PLAIN: usize, const OUT: usize>
    LinkBuffers<SOCKET, RAW, PLAIN, OUT>
{
    /// The link's TCP socket and record streams, over these buffers.
    pub fn parts(
        &mut self,
        net: embassy_net::Stack<'static>,
    ) -> (TcpSocket<'_>, Inbound<'_>, Outbound<'_>) {
        let (socket, inbound, out) = self.split(net);
        (socket, inbound, Outbound::new(out))
    }

    /// The link's TCP socket and inbound stream, and the output buffer as it is (for a
    /// use of its own before it becomes the [`Outbound`] stream).
    pub fn split(
        &mut self,
        net: embassy_net::Stack<'static>,
    ) -> (TcpSocket<'_>, Inbound<'_>, &mut [u8; OUT]) {
        let LinkBuffers {
            socket_rx,
            socket_tx,
            raw,
            plain,
            out,
        } = self;
        (
            TcpSocket::new(net, socket_rx, socket_tx),
            Inbound::new(raw, plain),
            out,
        )
    }
}

impl<const SOCKET: usize, const RAW: usize, const PLAIN: usize, const OUT: usize> Default
    for LinkBuffers<SOCKET, RAW, PLAIN, OUT>
{
    fn default() -> Self {
        Self::new()
    }
}

/// What the node needs to reach and authenticate to the relay.
#[derive(Clone, Copy)]
pub struct Target {
    /// The relay: an IPv4 address, or a name looked up at each dial.
    pub relay: Relay<'static>,
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

impl Target {
    /// The relay and keys of a provisioned node.
    pub fn of(node: &Node<'static>) -> Self {
        Target {
            relay: node.relay,
            port: node.relay_port,
            link_secret: node.link_secret,
            relay_key: node.relay_key,
            group_id: node.group_id,
            session_id: node.session_id,
        }
    }
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
    net: embassy_net::Stack<'static>,
    target: Target,
    backoff: Backoff,
    next_dial: Instant,
    up_since: Option<Instant>,
    attempt: u32,
}

enum DialError {
    #[cfg(feature = "relay-name")]
    Lookup(DnsError),
    NoAddress,
    Connect(ConnectError),
    TimedOut,
    Handshake(Loss<LinkError>),
}

impl fmt::Display for DialError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            #[cfg(feature = "relay-name")]
            Self::Lookup(e) => write!(f, "cannot look up the relay: {e:?}"),
            #[cfg(feature = "relay-name")]
            Self::NoAddress => f.write_str("the relay's name has no IPv4 address"),
            #[cfg(not(feature = "relay-name"))]
            Self::NoAddress => f.write_str(
                "the relay is provisioned by name; this firmware is built without \
                 `relay-name` and dials addresses only",
            ),
            Self::Connect(e) => write!(f, "connect: {e:?}"),
            Self::TimedOut => write!(f, "no handshake within {} s", HANDSHAKE_TIMEOUT.as_secs()),
            Self::Handshake(e) => write!(f, "handshake: {e}"),
        }
    }
}

impl Uplink {
    /// A link for the node `name` to `target` over `net`, whose redials are jittered from
    /// `seed`.
    pub fn new(
        name: NodeName,
        net: embassy_net::Stack<'static>,
        target: Target,
        seed: [u8; 32],
    ) -> Self {
        Uplink {
            name,
            net,
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
        loop {
            Timer::at(self.next_dial).await;
            self.attempt += 1;
            println!(
                "{}: dialing relay {}:{} (attempt {})",
                self.name, self.target.relay, self.target.port, self.attempt
            );
            let mut entropy = [0u8; 32];
            rng.fill_bytes(&mut entropy);
            inbound.reset();
            let dialed = with_timeout(HANDSHAKE_TIMEOUT, async {
                let addr = match self.target.relay {
                    Relay::Ipv4(addr) => Ipv4Address::from(addr),
                    Relay::Name(name) => lookup(self.net, name).await?,
                };
                let endpoint = IpEndpoint::from((addr, self.target.port));
                dial(socket, endpoint, &self.target, entropy, inbound).await
            })
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
                        DialError::Connect(_) | DialError::NoAddress => {
                            self.backoff.handle_connect_failed(core_time(at))
                        }
                        #[cfg(feature = "relay-name")]
                        DialError::Lookup(_) => self.backoff.handle_connect_failed(core_time(at)),
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

    /// The link that was up ended because of `loss` (with the relay's `goodbye`, if it said
    /// one): resets the connection and schedules the next dial, no sooner than the goodbye
    /// asks (`Backoff::handle_goodbye`).
    pub async fn lost(
        &mut self,
        socket: &mut TcpSocket<'_>,
        loss: &dyn fmt::Display,
        goodbye: Option<GoodbyeReason>,
    ) {
        let at = Instant::now();
        socket.abort();
        let _ = with_timeout(Duration::from_millis(100), socket.flush()).await;
        let next = self.backoff.handle_goodbye(core_time(at), goodbye);
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

    /// Links under `session_id` from the next dial on (a trustee's setup image moves from
    /// its rejoin link to the setup link).
    pub fn set_session(&mut self, session_id: [u8; 16]) {
        self.target.session_id = session_id;
    }

    fn schedule(&mut self, next: dissent_core::Instant) {
        self.next_dial = Instant::from_micros(next.as_micros());
    }
}

/// The relay's IPv4 address, looked up by name through the network's DNS server.
#[cfg(feature = "relay-name")]
async fn lookup(net: embassy_net::Stack<'static>, name: &str) -> Result<Ipv4Address, DialError> {
    let found = net
        .dns_query(name, DnsQueryType::A)
        .await
        .map_err(DialError::Lookup)?;
    // IPv4 is the only protocol built, so every address found is one.
    let embassy_net::IpAddress::Ipv4(v4) = found.first().ok_or(DialError::NoAddress)?;
    Ok(*v4)
}

/// Without `relay-name` the firmware cannot look names up.
#[cfg(not(feature = "relay-name"))]
async fn lookup(_net: embassy_net::Stack<'static>, _name: &str) -> Result<Ipv4Address, DialError> {
    Err(DialError::NoAddress)
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
    let mut request = [0u8; HEADER_LEN + REQUEST_LEN];
    let (hs, n) = request_handshake(target, entropy, &mut request).map_err(handshake)?;
    socket
        .write_all(&request[..n])
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
    read_response(hs, &response).map_err(handshake)
}

// The handshake's two steps out of line: inlined, their locals (X25519, BLAKE2s) would
// stay in the calling task's frame for its whole run, beneath everything else it calls.

/// Starts the handshake: the request record, written into `request`, and its length.
#[inline(never)]
fn request_handshake(
    target: &Target,
    entropy: [u8; 32],
    request: &mut [u8],
) -> Result<(Initiator, usize), LinkError> {
    let mut hs = Initiator::new(
        &target.link_secret,
        &target.relay_key,
        &target.group_id,
        &target.session_id,
        entropy,
    )?;
    let n = hs.write_request(request)?;
    Ok((hs, n))
}

/// Ends the handshake with the relay's response.
#[inline(never)]
fn read_response(hs: Initiator, response: &[u8; RESPONSE_LEN]) -> Result<Transport, LinkError> {
    hs.read_response(response)
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
    socket.write_all(record).await?;
    Ok(())
}

/// Sends every frame the role has: `poll` writes the next one into the space it is given
/// and returns its length, or `None` when there is none.
pub async fn transmit_all<E>(
    socket: &mut TcpSocket<'_>,
    out: &mut Outbound<'_>,
    sealer: &mut Sealer,
    mut poll: impl FnMut(&mut [u8]) -> Result<Option<usize>, WireError>,
) -> Result<(), Loss<RoleError<E>>> {
    loop {
        let n = match poll(out.frame_space()) {
            Ok(Some(n)) => n,
            Ok(None) => return Ok(()),
            Err(e) => return Err(Loss::Role(RoleError::Encode(e))),
        };
        send_frame(socket, out, sealer, n).await?;
    }
}
