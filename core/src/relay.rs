//! The relay role: schedules exchanges, combines every cell and decodes the slot's data.
//!
//! The relay never holds a private key and never learns which client owns a slot: it only
//! XORs ciphertexts. Decoded upstream data carries a Conn# and nothing else.
//!
//! Call order:
//!
//! 1. When a link delivers its first frame body, [`Relay::handle_hello`]; on `Ok(peer)` the
//!    link belongs to `peer` (an older link of the same peer must be dropped by the shell).
//! 2. For every later frame body: [`Relay::handle_frame`]. An `Err` is that peer's fault:
//!    drop its link and call [`Relay::handle_disconnected`].
//! 3. After any input: [`Relay::poll_event`] until `None`, then [`Relay::poll_transmit`]
//!    until `None`, delivering each frame to its [`Destination`].
//! 4. At [`Relay::poll_timeout`], call [`Relay::handle_timeout`] and go to 3.
//!
//! Exchanges run in intervals. An interval fixes the online client set; a client joining
//! makes the relay finish the exchanges in flight and open a new interval, a member leaving
//! ends the interval at once. Slot owners resend cells of abandoned exchanges, so nothing
//! that was sent is lost. The relay asks trustees up to `trustee_window` exchanges ahead of
//! the last decoded one and clients up to `client_window` ahead.

use heapless::{Deque, Vec};

use crate::online::OnlineSet;
use crate::schedule::Schedule;
use crate::time::{Duration, Instant};
use crate::wire::{self, CellRepr, IntervalRecord, Message, NodeRole, WireError, MAX_HISTORY};
use crate::{cell_length_ok, MAX_CLIENTS, MAX_DOWNSTREAM, MAX_TRUSTEES, MAX_WINDOW, NONCE_LEN};

/// Relay parameters.
#[derive(Debug, Clone, Copy)]
pub struct RelayConfig {
    /// The group id.
    pub group_id: [u8; 16],
    /// The session id.
    pub session_id: [u8; 16],
    /// Number of clients in the group.
    pub clients: u16,
    /// Number of trustees in the group.
    pub trustees: u16,
    /// Number of pseudonym slots.
    pub slots: u16,
    /// Cell length in bytes.
    pub cell_len: usize,
    /// Exchanges clients are asked ahead of the last decoded one.
    pub client_window: u16,
    /// Exchanges trustees are asked ahead of the last decoded one (at least `client_window`).
    pub trustee_window: u16,
    /// Largest downstream payload per exchange.
    pub downstream_len: usize,
    /// Clients that must be online before an interval opens.
    pub min_clients: u16,
    /// Longest pause between new exchanges while nothing is being sent; the pause grows
    /// from a sixteenth of this towards it while the net stays idle.
    pub idle_gap: Duration,
    /// A peer that leaves an exchange unanswered this long is evicted.
    pub exchange_timeout: Duration,
    /// Number of the first interval (choose it so numbers are not reused across restarts).
    pub first_interval: u32,
}

impl RelayConfig {
    /// Longest frame the relay emits with these parameters.
    pub const fn max_frame_len(&self) -> usize {
        let data = if self.cell_len > self.downstream_len {
            self.cell_len
        } else {
            self.downstream_len
        };
        let data = data + 64;
        if data > wire::MAX_CONTROL_FRAME {
            data
        } else {
            wire::MAX_CONTROL_FRAME
        }
    }

    /// Storage the relay needs for these parameters.
    pub const fn storage_len(&self) -> usize {
        self.trustee_window as usize * self.cell_len + self.downstream_len
    }
}

/// Errors in the relay's configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// The cell length is outside the protocol limits.
    CellLength,
    /// Client, trustee or slot count out of range.
    Counts,
    /// A window is zero, above [`MAX_WINDOW`], or the client window exceeds the trustees'.
    Window,
    /// The downstream length is zero or above [`MAX_DOWNSTREAM`].
    DownstreamLength,
    /// The storage is smaller than [`RelayConfig::storage_len`].
    StorageTooSmall,
}

impl core::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            ConfigError::CellLength => "cell length out of range",
            ConfigError::Counts => "client, trustee or slot count out of range",
            ConfigError::Window => "bad window sizes",
            ConfigError::DownstreamLength => "downstream length out of range",
            ConfigError::StorageTooSmall => "storage too small",
        })
    }
}

impl core::error::Error for ConfigError {}

/// A node connected to the relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PeerId {
    /// Client by index.
    Client(u16),
    /// Trustee by index.
    Trustee(u16),
}

impl core::fmt::Display for PeerId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            PeerId::Client(i) => write!(f, "client {i}"),
            PeerId::Trustee(i) => write!(f, "trustee {i}"),
        }
    }
}

/// Errors in a Hello.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HelloError {
    /// The frame does not parse.
    Wire(WireError),
    /// The first frame is not a Hello.
    NotHello,
    /// Another protocol version.
    Version(u16),
    /// Another group or session.
    WrongGroup,
    /// The index is not in the group.
    UnknownIndex,
}

impl core::fmt::Display for HelloError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            HelloError::Wire(e) => write!(f, "bad frame: {e}"),
            HelloError::NotHello => f.write_str("first frame is not a hello"),
            HelloError::Version(v) => write!(f, "protocol version {v} not supported"),
            HelloError::WrongGroup => f.write_str("hello for another group or session"),
            HelloError::UnknownIndex => f.write_str("node index not in the group"),
        }
    }
}

impl core::error::Error for HelloError {}

/// Errors caused by a peer's frame; the peer should be dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PeerError {
    /// The frame does not parse.
    Wire(WireError),
    /// A message this peer may not send now.
    Unexpected,
    /// A cell for an interval that has not started.
    UnknownInterval(u32),
    /// A cell for an exchange this peer was not asked for.
    NotRequested(u64),
    /// A second cell for the same exchange.
    Duplicate(u64),
    /// A cell of the wrong length.
    CellLength(usize),
    /// A client that is not part of the current interval.
    NotMember,
}

impl core::fmt::Display for PeerError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            PeerError::Wire(e) => write!(f, "bad frame: {e}"),
            PeerError::Unexpected => f.write_str("unexpected message"),
            PeerError::UnknownInterval(i) => write!(f, "cell for unknown interval {i}"),
            PeerError::NotRequested(e) => {
                write!(f, "cell for exchange {e}, which was not requested")
            }
            PeerError::Duplicate(e) => write!(f, "second cell for exchange {e}"),
            PeerError::CellLength(n) => write!(f, "cell of {n} bytes, wrong length"),
            PeerError::NotMember => f.write_str("client is not in the current interval"),
        }
    }
}

impl core::error::Error for PeerError {}

impl From<WireError> for PeerError {
    fn from(e: WireError) -> Self {
        PeerError::Wire(e)
    }
}

/// Who receives a frame from [`Relay::poll_transmit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    /// Every trustee.
    Trustees,
    /// Every client in the set.
    Clients(OnlineSet),
}

/// A frame ready to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct Transmit {
    /// Receivers of the frame.
    pub destination: Destination,
    /// Length of the frame written to the output buffer.
    pub len: usize,
}

/// What the relay reports to its shell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RelayEvent<'a> {
    /// Decoded upstream bytes for `conn`, in order.
    Upstream {
        /// The connection.
        conn: u32,
        /// First cell of the connection: open it at the exit (anew if it exists).
        open: bool,
        /// The bytes; empty only when `open`.
        data: &'a [u8],
    },
    /// The slot owner finished sending on `conn` (like a TCP FIN).
    Close {
        /// The connection.
        conn: u32,
    },
    /// An exchange decoded to something that is not a valid cell (a disruption).
    Garbled {
        /// The interval.
        interval: u32,
        /// The exchange.
        exchange: u64,
    },
    /// An interval started.
    IntervalStarted {
        /// The interval number.
        interval: u32,
        /// Clients in it.
        clients: usize,
    },
    /// An interval ended after decoding `done` exchanges.
    IntervalEnded {
        /// The interval number.
        interval: u32,
        /// Exchanges decoded.
        done: u64,
    },
    /// A peer left an exchange unanswered too long; drop its link.
    Evict {
        /// The peer.
        peer: PeerId,
    },
}

/// Source of downstream bytes (replies from the exit), asked once per exchange.
pub trait Downstream {
    /// Whether any bytes or closes are waiting.
    fn has_data(&self) -> bool;
    /// Writes the next bytes of one connection into `buf`; `(conn, 0)` reports a close.
    fn next_chunk(&mut self, buf: &mut [u8]) -> Option<(u32, usize)>;
}

/// A [`Downstream`] with nothing to send.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoDownstream;

impl Downstream for NoDownstream {
    fn has_data(&self) -> bool {
        false
    }
    fn next_chunk(&mut self, _buf: &mut [u8]) -> Option<(u32, usize)> {
        None
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// Finish the exchanges in flight, then end.
    Drain,
    /// End once everything before `end_at` is reported.
    Abort { end_at: u64 },
}

#[derive(Debug, Clone, Copy)]
struct Running {
    interval: u32,
    online: OnlineSet,
    start_pending: bool,
    next_trustee: u64,
    next_client: u64,
    done: u64,
    stop: Option<Stop>,
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    Waiting,
    Opening {
        interval: u32,
        online: OnlineSet,
        open_pending: bool,
        ready: u32,
        since: Instant,
    },
    Running(Running),
}

#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    clients: OnlineSet,
    trustees: u32,
    issued: Instant,
    slot: u16,
}

/// Relay state machine.
pub struct Relay<B> {
    cfg: RelayConfig,
    schedule: Schedule,
    store: B,
    ring: Vec<Slot, MAX_WINDOW>,
    nonces: [[u8; NONCE_LEN]; MAX_TRUSTEES],
    client_nonces: [[u8; NONCE_LEN]; MAX_CLIENTS],
    clients: OnlineSet,
    trustees: u32,
    all_trustees: u32,
    phase: Phase,
    next_interval: u32,
    history: Deque<IntervalRecord, MAX_HISTORY>,
    events: Deque<RelayEvent<'static>, { MAX_CLIENTS + MAX_TRUSTEES + 8 }>,
    idle: bool,
    gap: Duration,
    last_issue: Instant,
    stale_cells: u64,
    decoded: u64,
}

impl<B: AsMut<[u8]> + AsRef<[u8]>> Relay<B> {
    /// Creates a relay; `storage` must hold [`RelayConfig::storage_len`] bytes.
    pub fn new(cfg: RelayConfig, storage: B) -> Result<Self, ConfigError> {
        if !cell_length_ok(cfg.cell_len) {
            return Err(ConfigError::CellLength);
        }
        let (c, t, s) = (
            usize::from(cfg.clients),
            usize::from(cfg.trustees),
            cfg.slots,
        );
        if c == 0 || c > MAX_CLIENTS || t == 0 || t > MAX_TRUSTEES || s == 0 {
            return Err(ConfigError::Counts);
        }
        if cfg.client_window == 0
            || cfg.client_window > cfg.trustee_window
            || usize::from(cfg.trustee_window) > MAX_WINDOW
        {
            return Err(ConfigError::Window);
        }
        if cfg.downstream_len == 0 || cfg.downstream_len > MAX_DOWNSTREAM {
            return Err(ConfigError::DownstreamLength);
        }
        if storage.as_ref().len() < cfg.storage_len() {
            return Err(ConfigError::StorageTooSmall);
        }
        let mut ring = Vec::new();
        for _ in 0..cfg.trustee_window {
            // trustee_window <= MAX_WINDOW, checked above.
            let _ = ring.push(Slot::default());
        }
        Ok(Relay {
            schedule: Schedule::round_robin(s).ok_or(ConfigError::Counts)?,
            store: storage,
            ring,
            nonces: [[0; NONCE_LEN]; MAX_TRUSTEES],
            client_nonces: [[0; NONCE_LEN]; MAX_CLIENTS],
            clients: OnlineSet::new(),
            trustees: 0,
            // t <= MAX_TRUSTEES = 16, so the shift cannot overflow.
            all_trustees: (1u32 << t) - 1,
            phase: Phase::Waiting,
            next_interval: cfg.first_interval,
            history: Deque::new(),
            events: Deque::new(),
            idle: true,
            gap: Duration::default(),
            last_issue: Instant::default(),
            stale_cells: 0,
            decoded: 0,
            cfg,
        })
    }

    /// Clients currently connected.
    pub fn connected_clients(&self) -> OnlineSet {
        self.clients
    }

    /// Number of trustees in the group.
    pub fn trustee_count(&self) -> u16 {
        self.cfg.trustees
    }

    /// Number of trustees currently connected.
    pub fn connected_trustees(&self) -> usize {
        self.trustees.count_ones() as usize
    }

    /// The running interval and its online set.
    pub fn interval(&self) -> Option<(u32, OnlineSet)> {
        match self.phase {
            Phase::Running(r) => Some((r.interval, r.online)),
            _ => None,
        }
    }

    /// Cells that arrived for intervals already over (harmless, counted for diagnostics).
    pub fn stale_cells(&self) -> u64 {
        self.stale_cells
    }

    /// Exchanges decoded since the relay started.
    pub fn exchanges_decoded(&self) -> u64 {
        self.decoded
    }

    /// Checks a link's first frame body without changing any state.
    pub fn check_hello(&self, body: &[u8]) -> Result<PeerId, HelloError> {
        self.parse_hello(body).map(|(peer, _)| peer)
    }

    fn parse_hello(&self, body: &[u8]) -> Result<(PeerId, [u8; NONCE_LEN]), HelloError> {
        let Message::Hello {
            version,
            group_id,
            session_id,
            role,
            index,
            nonce,
        } = Message::parse(body).map_err(HelloError::Wire)?
        else {
            return Err(HelloError::NotHello);
        };
        if version != wire::PROTOCOL_VERSION {
            return Err(HelloError::Version(version));
        }
        if group_id != self.cfg.group_id || session_id != self.cfg.session_id {
            return Err(HelloError::WrongGroup);
        }
        match role {
            NodeRole::Client if index < self.cfg.clients => Ok((PeerId::Client(index), nonce)),
            NodeRole::Trustee if index < self.cfg.trustees => Ok((PeerId::Trustee(index), nonce)),
            _ => Err(HelloError::UnknownIndex),
        }
    }

    /// Checks a link's first frame body and marks the peer connected.
    pub fn handle_hello(&mut self, now: Instant, body: &[u8]) -> Result<PeerId, HelloError> {
        let (peer, nonce) = self.parse_hello(body)?;
        // A peer that reconnects replaces its old link.
        self.handle_disconnected(now, peer);
        match peer {
            PeerId::Client(i) => {
                self.clients.insert(usize::from(i));
                self.client_nonces[usize::from(i)] = nonce;
            }
            PeerId::Trustee(i) => self.trustees |= 1 << i,
        }
        self.advance(now);
        Ok(peer)
    }

    /// A peer's link is gone.
    pub fn handle_disconnected(&mut self, now: Instant, peer: PeerId) {
        let member = match peer {
            PeerId::Client(i) => {
                let i = usize::from(i);
                let was = self.clients.contains(i);
                self.clients.remove(i);
                was && self.online().is_some_and(|o| o.contains(i))
            }
            PeerId::Trustee(i) => {
                let was = self.trustees & (1 << i) != 0;
                self.trustees &= !(1 << i);
                was
            }
        };
        if member {
            self.abort();
        }
        self.advance(now);
    }

    fn online(&self) -> Option<OnlineSet> {
        match self.phase {
            Phase::Waiting => None,
            Phase::Opening { online, .. } => Some(online),
            Phase::Running(r) => Some(r.online),
        }
    }

    /// Ends the current interval without waiting for the exchanges in flight.
    fn abort(&mut self) {
        match self.phase {
            Phase::Waiting => {}
            // No exchange ran, so there is nothing for clients to settle.
            Phase::Opening { .. } => self.phase = Phase::Waiting,
            Phase::Running(mut r) => {
                if matches!(r.stop, Some(Stop::Abort { .. })) {
                    return;
                }
                // Exchanges already complete are still reported.
                let mut end_at = r.done;
                while end_at < r.next_trustee && self.complete(&r, end_at) {
                    end_at += 1;
                }
                r.stop = Some(Stop::Abort { end_at });
                self.phase = Phase::Running(r);
            }
        }
    }

    fn complete(&self, r: &Running, exchange: u64) -> bool {
        let s = &self.ring[(exchange % u64::from(self.cfg.trustee_window)) as usize];
        s.trustees == self.all_trustees && r.online.is_subset(&s.clients)
    }

    fn end_interval(&mut self, interval: u32, done: u64) {
        if self.history.is_full() {
            self.history.pop_front();
        }
        let _ = self.history.push_back(IntervalRecord { interval, done });
        self.push_event(RelayEvent::IntervalEnded { interval, done });
        self.phase = Phase::Waiting;
    }

    fn push_event(&mut self, e: RelayEvent<'static>) {
        if self.events.is_full() {
            self.events.pop_front();
        }
        let _ = self.events.push_back(e);
    }

    /// Moves between phases as connections and progress allow.
    fn advance(&mut self, now: Instant) {
        loop {
            match self.phase {
                Phase::Waiting => {
                    if self.trustees == self.all_trustees
                        && self.clients.len() >= usize::from(self.cfg.min_clients.max(1))
                    {
                        let interval = self.next_interval;
                        self.next_interval = self.next_interval.wrapping_add(1);
                        self.phase = Phase::Opening {
                            interval,
                            online: self.clients,
                            open_pending: true,
                            ready: 0,
                            since: now,
                        };
                    }
                    return;
                }
                Phase::Opening { .. } => return,
                Phase::Running(mut r) => {
                    match r.stop {
                        None if !self.clients.is_subset(&r.online) => {
                            r.stop = Some(Stop::Drain);
                            self.phase = Phase::Running(r);
                        }
                        Some(Stop::Drain) if r.done == r.next_trustee => {
                            self.end_interval(r.interval, r.done);
                            continue;
                        }
                        Some(Stop::Abort { end_at }) if r.done >= end_at => {
                            self.end_interval(r.interval, r.done);
                            continue;
                        }
                        _ => {}
                    }
                    return;
                }
            }
        }
    }

    /// Handles a frame body from a connected peer.
    pub fn handle_frame(
        &mut self,
        now: Instant,
        peer: PeerId,
        body: &[u8],
    ) -> Result<(), PeerError> {
        let result = self.handle_message(now, peer, Message::parse(body)?);
        self.advance(now);
        result
    }

    fn handle_message(
        &mut self,
        now: Instant,
        peer: PeerId,
        msg: Message<'_>,
    ) -> Result<(), PeerError> {
        match (peer, msg) {
            (PeerId::Trustee(t), Message::IntervalReady { interval, nonce }) => {
                let Phase::Opening {
                    interval: cur,
                    online,
                    open_pending: false,
                    mut ready,
                    since,
                } = self.phase
                else {
                    return if self.is_past(interval) {
                        Ok(())
                    } else {
                        Err(PeerError::Unexpected)
                    };
                };
                if cur != interval {
                    return if self.is_past(interval) {
                        Ok(())
                    } else {
                        Err(PeerError::Unexpected)
                    };
                }
                if ready & (1 << t) != 0 {
                    return Err(PeerError::Unexpected);
                }
                ready |= 1 << t;
                self.nonces[usize::from(t)] = nonce;
                if ready != self.all_trustees {
                    self.phase = Phase::Opening {
                        interval,
                        online,
                        open_pending: false,
                        ready,
                        since,
                    };
                    return Ok(());
                }
                self.phase = Phase::Running(Running {
                    interval,
                    online,
                    start_pending: true,
                    next_trustee: 0,
                    next_client: 0,
                    done: 0,
                    stop: None,
                });
                self.idle = false;
                self.gap = Duration::default();
                self.last_issue = now;
                self.push_event(RelayEvent::IntervalStarted {
                    interval,
                    clients: online.len(),
                });
                Ok(())
            }
            (
                _,
                Message::Cell {
                    interval,
                    exchange,
                    cell,
                },
            ) => self.handle_cell(peer, interval, exchange, cell),
            _ => Err(PeerError::Unexpected),
        }
    }

    /// Whether `interval` was opened before and is over.
    fn is_past(&self, interval: u32) -> bool {
        let current = match self.phase {
            Phase::Opening { interval, .. } => Some(interval),
            Phase::Running(r) => Some(r.interval),
            Phase::Waiting => None,
        };
        let first = self.cfg.first_interval;
        let opened = self.next_interval.wrapping_sub(first);
        let age = interval.wrapping_sub(first);
        age < opened && Some(interval) != current
    }

    fn handle_cell(
        &mut self,
        peer: PeerId,
        interval: u32,
        exchange: u64,
        cell: &[u8],
    ) -> Result<(), PeerError> {
        let r = match self.phase {
            Phase::Running(r) if r.interval == interval => r,
            _ if self.is_past(interval) => {
                self.stale_cells += 1;
                return Ok(());
            }
            _ => return Err(PeerError::UnknownInterval(interval)),
        };
        if let Some(Stop::Abort { .. }) = r.stop {
            // The interval is over; late cells are harmless.
            self.stale_cells += 1;
            return Ok(());
        }
        if cell.len() != self.cfg.cell_len {
            return Err(PeerError::CellLength(cell.len()));
        }
        let limit = match peer {
            PeerId::Client(i) => {
                if !r.online.contains(usize::from(i)) {
                    return Err(PeerError::NotMember);
                }
                r.next_client
            }
            PeerId::Trustee(_) => r.next_trustee,
        };
        if exchange < r.done {
            return Err(PeerError::Duplicate(exchange));
        }
        if exchange >= limit {
            return Err(PeerError::NotRequested(exchange));
        }
        let w = u64::from(self.cfg.trustee_window);
        let idx = (exchange % w) as usize;
        let slot = &mut self.ring[idx];
        match peer {
            PeerId::Client(i) => {
                if slot.clients.contains(usize::from(i)) {
                    return Err(PeerError::Duplicate(exchange));
                }
                slot.clients.insert(usize::from(i));
            }
            PeerId::Trustee(t) => {
                if slot.trustees & (1 << t) != 0 {
                    return Err(PeerError::Duplicate(exchange));
                }
                slot.trustees |= 1 << t;
            }
        }
        let l = self.cfg.cell_len;
        let acc = &mut self.store.as_mut()[idx * l..(idx + 1) * l];
        for (a, b) in acc.iter_mut().zip(cell) {
            *a ^= *b;
        }
        Ok(())
    }

    /// Next event; decoded upstream data borrows the relay until the event is dropped.
    #[must_use]
    pub fn poll_event(&mut self, now: Instant) -> Option<RelayEvent<'_>> {
        if let Some(e) = self.events.pop_front() {
            return Some(e);
        }
        // Find the next decoded exchange that carries something.
        let (interval, exchange, idx) = loop {
            let Phase::Running(r) = self.phase else {
                return None;
            };
            let end = match r.stop {
                Some(Stop::Abort { end_at }) => end_at,
                _ => r.next_trustee,
            };
            if r.done >= end || !self.complete(&r, r.done) {
                self.advance(now);
                if let Some(e) = self.events.pop_front() {
                    return Some(e);
                }
                return None;
            }
            let exchange = r.done;
            if let Phase::Running(r) = &mut self.phase {
                r.done += 1;
            }
            self.decoded += 1;
            let idx = (exchange % u64::from(self.cfg.trustee_window)) as usize;
            let l = self.cfg.cell_len;
            let cell = &self.store.as_ref()[idx * l..(idx + 1) * l];
            let empty = cell.iter().all(|&b| b == 0);
            self.idle = empty;
            if !empty {
                self.gap = Duration::default();
            }
            if !empty {
                break (r.interval, exchange, idx);
            }
        };
        let l = self.cfg.cell_len;
        let slot = self.ring[idx].slot;
        let cell = &self.store.as_ref()[idx * l..(idx + 1) * l];
        Some(match CellRepr::parse(cell) {
            // A Conn# names the slot that opened it; anything else is a disruption.
            Ok(CellRepr::Data {
                conn,
                open,
                payload,
            }) if conn >> 16 == u32::from(slot) + 1 => RelayEvent::Upstream {
                conn,
                open,
                data: payload,
            },
            Ok(CellRepr::Close { conn }) if conn >> 16 == u32::from(slot) + 1 => {
                RelayEvent::Close { conn }
            }
            _ => RelayEvent::Garbled { interval, exchange },
        })
    }

    /// Writes the next frame into `out`, which must hold [`RelayConfig::max_frame_len`] bytes.
    pub fn poll_transmit(
        &mut self,
        now: Instant,
        out: &mut [u8],
        downstream: &mut dyn Downstream,
    ) -> Result<Option<Transmit>, WireError> {
        self.advance(now);
        match &mut self.phase {
            Phase::Waiting => Ok(None),
            Phase::Opening {
                interval,
                online,
                open_pending,
                since,
                ..
            } => {
                if !*open_pending {
                    return Ok(None);
                }
                let client_nonces = online.iter().map(|i| self.client_nonces[i]).collect();
                let len = Message::IntervalOpen {
                    interval: *interval,
                    online: *online,
                    client_nonces,
                }
                .emit_frame(out)?;
                *open_pending = false;
                *since = now;
                Ok(Some(Transmit {
                    destination: Destination::Trustees,
                    len,
                }))
            }
            Phase::Running(r) => {
                let mut r = *r;
                let res = self.transmit_running(now, &mut r, out, downstream);
                self.phase = Phase::Running(r);
                res
            }
        }
    }

    fn transmit_running(
        &mut self,
        now: Instant,
        r: &mut Running,
        out: &mut [u8],
        downstream: &mut dyn Downstream,
    ) -> Result<Option<Transmit>, WireError> {
        let to_clients = Destination::Clients(r.online);
        if r.start_pending {
            let mut nonces = heapless::Vec::new();
            for n in &self.nonces[..usize::from(self.cfg.trustees)] {
                let _ = nonces.push(*n);
            }
            let history = self.history.iter().copied().collect();
            let len = Message::IntervalStart {
                interval: r.interval,
                nonces,
                window: self.cfg.client_window,
                history,
            }
            .emit_frame(out)?;
            r.start_pending = false;
            return Ok(Some(Transmit {
                destination: to_clients,
                len,
            }));
        }
        if matches!(r.stop, Some(Stop::Abort { .. })) {
            return Ok(None);
        }
        if r.next_client < r.next_trustee
            && r.next_client < r.done + u64::from(self.cfg.client_window)
        {
            let exchange = r.next_client;
            let slot = self.ring[(exchange % u64::from(self.cfg.trustee_window)) as usize].slot;
            let base = usize::from(self.cfg.trustee_window) * self.cfg.cell_len;
            let scratch = &mut self.store.as_mut()[base..base + self.cfg.downstream_len];
            let (conn, len) = downstream.next_chunk(scratch).unwrap_or((0, 0));
            let len = len.min(self.cfg.downstream_len);
            let n = Message::ClientRequest {
                interval: r.interval,
                exchange,
                slot,
                conn,
                data: &scratch[..len],
            }
            .emit_frame(out)?;
            r.next_client += 1;
            return Ok(Some(Transmit {
                destination: to_clients,
                len: n,
            }));
        }
        let paced = self.idle && !downstream.has_data() && now < self.last_issue + self.gap;
        if r.stop.is_none()
            && r.next_trustee < r.done + u64::from(self.cfg.trustee_window)
            && !paced
        {
            let exchange = r.next_trustee;
            let slot = self.schedule.slot(exchange);
            let n = Message::TrusteeRequest {
                interval: r.interval,
                exchange,
                slot,
            }
            .emit_frame(out)?;
            let idx = (exchange % u64::from(self.cfg.trustee_window)) as usize;
            self.ring[idx] = Slot {
                clients: OnlineSet::new(),
                trustees: 0,
                issued: now,
                slot,
            };
            let l = self.cfg.cell_len;
            self.store.as_mut()[idx * l..(idx + 1) * l].fill(0);
            r.next_trustee += 1;
            self.last_issue = now;
            self.gap = if self.idle && !downstream.has_data() {
                let floor = self.cfg.idle_gap.as_micros() / 16;
                Duration::from_micros(
                    (self.gap.as_micros() * 2)
                        .max(floor)
                        .min(self.cfg.idle_gap.as_micros()),
                )
            } else {
                Duration::default()
            };
            return Ok(Some(Transmit {
                destination: Destination::Trustees,
                len: n,
            }));
        }
        Ok(None)
    }

    /// When [`Relay::handle_timeout`] should next be called.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.phase {
            Phase::Waiting => None,
            Phase::Opening { since, .. } => Some(since + self.cfg.exchange_timeout),
            Phase::Running(r) => {
                let deadline = (r.done < r.next_trustee).then(|| {
                    let s = &self.ring[(r.done % u64::from(self.cfg.trustee_window)) as usize];
                    s.issued + self.cfg.exchange_timeout
                });
                let pace = (r.stop.is_none()
                    && self.idle
                    && r.next_trustee < r.done + u64::from(self.cfg.trustee_window))
                .then(|| self.last_issue + self.gap);
                match (deadline, pace) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                }
            }
        }
    }

    /// Evicts peers that left the oldest exchange (or an interval opening) unanswered.
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.phase {
            Phase::Opening { ready, since, .. } if now >= since + self.cfg.exchange_timeout => {
                for t in 0..self.cfg.trustees {
                    if ready & (1 << t) == 0 {
                        self.push_event(RelayEvent::Evict {
                            peer: PeerId::Trustee(t),
                        });
                    }
                }
            }
            Phase::Running(r)
                if r.done < r.next_trustee && !matches!(r.stop, Some(Stop::Abort { .. })) =>
            {
                let s = self.ring[(r.done % u64::from(self.cfg.trustee_window)) as usize];
                if now < s.issued + self.cfg.exchange_timeout {
                    return;
                }
                for t in 0..self.cfg.trustees {
                    if s.trustees & (1 << t) == 0 {
                        self.push_event(RelayEvent::Evict {
                            peer: PeerId::Trustee(t),
                        });
                    }
                }
                for c in r.online.iter() {
                    if !s.clients.contains(c) {
                        self.push_event(RelayEvent::Evict {
                            peer: PeerId::Client(c as u16),
                        });
                    }
                }
            }
            _ => {}
        }
        self.advance(now);
    }
}

impl<B> core::fmt::Debug for Relay<B> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Relay")
            .field("phase", &self.phase)
            .finish_non_exhaustive()
    }
}
