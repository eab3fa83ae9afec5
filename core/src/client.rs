//! The client role: answers every exchange with a cell, writing data in its own slot.
//!
//! Call order for one link to the relay:
//!
//! 1. [`Client::handle_connected`] when the link is up, then drain [`Client::poll_transmit`]
//!    (the first frame is the Hello).
//! 2. For every frame body received: [`Client::handle_frame`] (it may return downstream
//!    bytes for one of this client's connections), then [`Client::poll_event`] until `None`,
//!    then [`Client::poll_transmit`] until `None`, sending each frame.
//! 3. [`Client::handle_disconnected`] when the link drops. Cells of this client that the
//!    relay had not decoded are sent again in the next interval after reconnecting.
//!
//! Application connections are opened with [`Client::open`]; their bytes are pulled through
//! the [`Upstream`] trait when this client's slot comes up, so the application is never
//! asked for more than one cell's worth at a time (backpressure).

use chacha20::cipher::{KeyIvInit, StreamCipher};
use chacha20::ChaCha20;
use heapless::{Deque, FnvIndexMap, Vec};

use crate::crypto::{IntervalKey, KeyError, PadKey};
use crate::schedule::Schedule;
use crate::time::Instant;
use crate::wire::{self, CellRepr, Message, NodeRole, WireError, CELL_HEADER_LEN};
use crate::{cell_length_ok, MAX_TRUSTEES, MAX_WINDOW, NONCE_LEN};

/// Most connections one client has open at once.
pub const MAX_CONNECTIONS: usize = 256;

/// A connection number (Conn#): the slot in the high 16 bits (plus one), a counter below.
pub type ConnId = u32;

/// Static configuration of a client.
#[derive(Debug, Clone, Copy)]
pub struct ClientConfig<'a> {
    /// Index of this client in the group's client list.
    pub index: u16,
    /// The group id.
    pub group_id: [u8; 16],
    /// The session id.
    pub session_id: [u8; 16],
    /// This client's session secret key.
    pub session_secret: [u8; 32],
    /// Every trustee's session public key, in trustee order.
    pub trustee_keys: &'a [[u8; 32]],
    /// This client's pseudonym slot.
    pub slot: u16,
    /// Number of pseudonym slots in the group.
    pub slots: u16,
    /// Cell length in bytes.
    pub cell_len: usize,
    /// Fresh randomness from the platform, used for per-link nonces.
    pub rng_seed: [u8; 32],
}

/// Errors in a client's configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// The cell length is outside the protocol limits.
    CellLength,
    /// No trustees, or more than [`MAX_TRUSTEES`].
    TrusteeCount,
    /// The slot is not below the number of slots.
    Slot,
    /// The storage cannot hold even one cell.
    StorageTooSmall,
    /// Key agreement with a trustee failed.
    Key(KeyError),
}

impl core::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ConfigError::CellLength => f.write_str("cell length out of range"),
            ConfigError::TrusteeCount => f.write_str("trustee count out of range"),
            ConfigError::Slot => f.write_str("slot out of range"),
            ConfigError::StorageTooSmall => f.write_str("storage too small"),
            ConfigError::Key(e) => write!(f, "key agreement: {e}"),
        }
    }
}

impl core::error::Error for ConfigError {}

/// Errors caused by what the relay sent; the link should be dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientError {
    /// The frame does not parse.
    Wire(WireError),
    /// A message a client never receives, or one before the interval started.
    Unexpected,
    /// A request for an interval other than the current one.
    WrongInterval {
        /// The current interval.
        current: u32,
        /// The interval in the request.
        got: u32,
    },
    /// A request out of sequence.
    OutOfOrder {
        /// The exchange expected next.
        expected: u64,
        /// The exchange requested.
        got: u64,
    },
    /// The relay asked for more exchanges than the window allows.
    WindowExceeded,
    /// The interval parameters are unusable (nonce count or window).
    BadParameters,
    /// An interval announced again, or older than one already run on this link.
    StaleInterval(u32),
    /// The scheduled slot is not the one the schedule gives for the exchange.
    WrongSlot {
        /// The exchange.
        exchange: u64,
        /// The slot the relay named.
        got: u16,
    },
}

impl core::fmt::Display for ClientError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ClientError::Wire(e) => write!(f, "bad frame: {e}"),
            ClientError::Unexpected => f.write_str("unexpected message"),
            ClientError::WrongInterval { current, got } => {
                write!(f, "request for interval {got}, current is {current}")
            }
            ClientError::OutOfOrder { expected, got } => {
                write!(f, "request for exchange {got}, expected {expected}")
            }
            ClientError::WindowExceeded => f.write_str("relay exceeded the request window"),
            ClientError::BadParameters => f.write_str("unusable interval parameters"),
            ClientError::StaleInterval(i) => write!(f, "interval {i} is not new on this link"),
            ClientError::WrongSlot { exchange, got } => {
                write!(
                    f,
                    "exchange {exchange} scheduled for slot {got}, not the schedule's"
                )
            }
        }
    }
}

impl core::error::Error for ClientError {}

impl From<WireError> for ClientError {
    fn from(e: WireError) -> Self {
        ClientError::Wire(e)
    }
}

/// Errors from [`Client::open`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum OpenError {
    /// [`MAX_CONNECTIONS`] are already open.
    TooManyConnections,
}

impl core::fmt::Display for OpenError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("too many open connections")
    }
}

impl core::error::Error for OpenError {}

/// A piece of upstream data offered by the application.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chunk {
    /// `len` bytes, already written to the start of the buffer, for `conn`.
    Data {
        /// The connection.
        conn: ConnId,
        /// Bytes written (at least 1, at most the buffer's length).
        len: usize,
    },
    /// The application closed `conn`.
    Close {
        /// The connection.
        conn: ConnId,
    },
}

/// Source of upstream bytes, asked once each time this client's slot comes up.
pub trait Upstream {
    /// Writes the next bytes of some connection into `buf`, or reports a close.
    fn next_chunk(&mut self, buf: &mut [u8]) -> Option<Chunk>;
}

/// An [`Upstream`] with nothing to send.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoUpstream;

impl Upstream for NoUpstream {
    fn next_chunk(&mut self, _buf: &mut [u8]) -> Option<Chunk> {
        None
    }
}

/// Downstream bytes for one of this client's connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery<'a> {
    /// The connection.
    pub conn: ConnId,
    /// The bytes; empty means the exit closed the connection.
    pub data: &'a [u8],
}

/// Things the application should know about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientEvent {
    /// A new interval started with this client in it.
    IntervalStarted {
        /// The interval number.
        interval: u32,
    },
    /// `conn` is closed because bytes of it were lost for good: the link to the relay
    /// dropped (downstream bytes may be missing), or the relay forgot an interval.
    Lost {
        /// The connection.
        conn: ConnId,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Disconnected,
    AwaitStart,
    Running {
        interval: u32,
        next_exchange: u64,
        window: u64,
    },
}

/// An owned cell that the relay has not yet confirmed.
#[derive(Debug, Clone, Copy)]
struct Sent {
    interval: u32,
    exchange: u64,
    store: u8,
}

/// What the client knows of one of its connections.
#[derive(Debug, Clone, Copy, Default)]
struct Conn {
    /// Its OPEN cell has been sent.
    announced: bool,
    /// The application finished sending (a close cell was or will be sent).
    finished: bool,
}

/// Client state machine.
pub struct Client<B> {
    index: u16,
    group_id: [u8; 16],
    session_id: [u8; 16],
    slot: u16,
    schedule: Schedule,
    cell_len: usize,
    rng: ChaCha20,
    link_nonce: [u8; NONCE_LEN],
    last_interval: Option<u32>,
    pad_keys: Vec<PadKey, MAX_TRUSTEES>,
    interval_keys: Vec<IntervalKey, MAX_TRUSTEES>,
    phase: Phase,
    hello_pending: bool,
    requests: Deque<(u64, u16), MAX_WINDOW>,
    store: B,
    capacity: usize,
    free: u64,
    sent: Deque<Sent, MAX_WINDOW>,
    resend: Deque<u8, MAX_WINDOW>,
    conns: FnvIndexMap<ConnId, Conn, MAX_CONNECTIONS>,
    next_conn: u16,
    closes: Deque<ConnId, MAX_CONNECTIONS>,
    events: Deque<ClientEvent, { MAX_CONNECTIONS + MAX_WINDOW }>,
}

impl<B: AsMut<[u8]> + AsRef<[u8]>> Client<B> {
    /// Storage needed to keep `window` unconfirmed cells of `cell_len` bytes.
    pub const fn storage_len(cell_len: usize, window: usize) -> usize {
        cell_len * window
    }

    /// Creates a client; `storage` holds the cells the relay has not confirmed yet and
    /// bounds the window this client accepts (`storage_len / cell_len`, at most 64).
    pub fn new(config: &ClientConfig<'_>, storage: B) -> Result<Self, ConfigError> {
        if !cell_length_ok(config.cell_len) {
            return Err(ConfigError::CellLength);
        }
        if config.trustee_keys.is_empty() || config.trustee_keys.len() > MAX_TRUSTEES {
            return Err(ConfigError::TrusteeCount);
        }
        if config.slot >= config.slots || config.slot == u16::MAX {
            return Err(ConfigError::Slot);
        }
        let capacity = (storage.as_ref().len() / config.cell_len).min(MAX_WINDOW);
        if capacity == 0 {
            return Err(ConfigError::StorageTooSmall);
        }
        let pad_keys = PadKey::agree_all(
            &config.session_secret,
            config.trustee_keys,
            true,
            &config.group_id,
            &config.session_id,
        )
        .map_err(ConfigError::Key)?
        .ok_or(ConfigError::TrusteeCount)?;
        Ok(Client {
            index: config.index,
            group_id: config.group_id,
            session_id: config.session_id,
            slot: config.slot,
            // slots > slot >= 0, checked above.
            schedule: Schedule::round_robin(config.slots).ok_or(ConfigError::Slot)?,
            cell_len: config.cell_len,
            rng: ChaCha20::new(&config.rng_seed.into(), &[0u8; 12].into()),
            link_nonce: [0; NONCE_LEN],
            last_interval: None,
            pad_keys,
            interval_keys: Vec::new(),
            phase: Phase::Disconnected,
            hello_pending: false,
            requests: Deque::new(),
            store: storage,
            capacity,
            free: all_free(capacity),
            sent: Deque::new(),
            resend: Deque::new(),
            conns: FnvIndexMap::new(),
            next_conn: 0,
            closes: Deque::new(),
            events: Deque::new(),
        })
    }

    /// This client's pseudonym slot.
    pub fn slot(&self) -> u16 {
        self.slot
    }

    /// Largest upstream payload per cell.
    pub fn payload_capacity(&self) -> usize {
        CellRepr::capacity(self.cell_len)
    }

    /// The current interval, once one has started.
    pub fn interval(&self) -> Option<u32> {
        match self.phase {
            Phase::Running { interval, .. } => Some(interval),
            _ => None,
        }
    }

    /// Opens a new connection and returns its Conn#.
    pub fn open(&mut self) -> Result<ConnId, OpenError> {
        if self.conns.len() >= MAX_CONNECTIONS {
            return Err(OpenError::TooManyConnections);
        }
        loop {
            self.next_conn = self.next_conn.wrapping_add(1).max(1);
            let conn = (u32::from(self.slot) + 1) << 16 | u32::from(self.next_conn);
            if !self.conns.contains_key(&conn) {
                // Capacity checked above.
                let _ = self.conns.insert(conn, Conn::default());
                return Ok(conn);
            }
        }
    }

    /// Whether `conn` is open (in at least one direction).
    pub fn is_open(&self, conn: ConnId) -> bool {
        self.conns.contains_key(&conn)
    }

    /// The link to the relay is up.
    pub fn handle_connected(&mut self, _now: Instant) {
        // The keystream of one seed lasts 256 GiB: 2^34 links.
        self.link_nonce = [0; NONCE_LEN];
        self.rng.apply_keystream(&mut self.link_nonce);
        self.last_interval = None;
        self.phase = Phase::AwaitStart;
        self.hello_pending = true;
        self.requests.clear();
        self.interval_keys.clear();
    }

    /// The link to the relay is gone: every connection is closed (downstream bytes sent
    /// meanwhile are lost), and the closes are sent once the link is back. Cells the relay
    /// had not confirmed are dropped with their connections.
    pub fn handle_disconnected(&mut self, _now: Instant) {
        let mut lost: Vec<(ConnId, Conn), MAX_CONNECTIONS> = Vec::new();
        for (&conn, &state) in self.conns.iter() {
            let _ = lost.push((conn, state));
        }
        self.conns.clear();
        for (conn, state) in lost {
            // Both queues hold MAX_CONNECTIONS and conns held at most that many.
            if state.announced {
                let _ = self.closes.push_back(conn);
            }
            self.push_event(ClientEvent::Lost { conn });
        }
        self.sent.clear();
        self.resend.clear();
        self.free = all_free(self.capacity);
        self.phase = Phase::Disconnected;
        self.hello_pending = false;
        self.requests.clear();
        self.interval_keys.clear();
    }

    /// Handles one frame body from the relay; returns downstream bytes for this client.
    pub fn handle_frame<'a>(
        &mut self,
        _now: Instant,
        body: &'a [u8],
    ) -> Result<Option<Delivery<'a>>, ClientError> {
        match Message::parse(body)? {
            Message::IntervalStart {
                interval,
                nonces,
                window,
                history,
            } => {
                if self.phase == Phase::Disconnected {
                    return Err(ClientError::Unexpected);
                }
                if self.last_interval.is_some_and(|last| interval <= last) {
                    return Err(ClientError::StaleInterval(interval));
                }
                if nonces.len() != self.pad_keys.len()
                    || window == 0
                    || usize::from(window) > self.capacity
                {
                    return Err(ClientError::BadParameters);
                }
                self.interval_keys.clear();
                for (k, n) in self.pad_keys.iter().zip(nonces.iter()) {
                    // Same length as pad_keys, which is bounded by MAX_TRUSTEES.
                    let _ = self
                        .interval_keys
                        .push(k.interval_key(interval, n, &self.link_nonce));
                }
                self.last_interval = Some(interval);
                self.settle(&history);
                self.requests.clear();
                self.phase = Phase::Running {
                    interval,
                    next_exchange: 0,
                    window: u64::from(window),
                };
                self.push_event(ClientEvent::IntervalStarted { interval });
                Ok(None)
            }
            Message::ClientRequest {
                interval,
                exchange,
                slot,
                conn,
                data,
            } => {
                let Phase::Running {
                    interval: current,
                    next_exchange,
                    window,
                } = self.phase
                else {
                    return Err(ClientError::Unexpected);
                };
                if interval != current {
                    return Err(ClientError::WrongInterval {
                        current,
                        got: interval,
                    });
                }
                if exchange != next_exchange {
                    return Err(ClientError::OutOfOrder {
                        expected: next_exchange,
                        got: exchange,
                    });
                }
                if slot != self.schedule.slot(exchange) {
                    return Err(ClientError::WrongSlot {
                        exchange,
                        got: slot,
                    });
                }
                if self.requests.push_back((exchange, slot)).is_err() {
                    return Err(ClientError::WindowExceeded);
                }
                self.phase = Phase::Running {
                    interval,
                    next_exchange: exchange + 1,
                    window,
                };
                // The relay asks for `exchange` only after decoding everything up to
                // `exchange - window`, so those cells are confirmed.
                while let Some(s) = self.sent.front().copied() {
                    if s.interval == interval && s.exchange + window <= exchange {
                        self.sent.pop_front();
                        self.free |= 1 << s.store;
                    } else {
                        break;
                    }
                }
                if conn != 0 && self.conns.contains_key(&conn) {
                    if data.is_empty() {
                        self.conns.remove(&conn);
                    }
                    return Ok(Some(Delivery { conn, data }));
                }
                Ok(None)
            }
            _ => Err(ClientError::Unexpected),
        }
    }

    /// Next event for the application.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    /// Writes the next frame to send into `out` and returns its length.
    ///
    /// `out` must hold at least a frame with one cell (cell length plus 32 bytes).
    pub fn poll_transmit(
        &mut self,
        out: &mut [u8],
        upstream: &mut dyn Upstream,
    ) -> Result<Option<usize>, ClientError> {
        if self.hello_pending {
            let n = Message::Hello {
                version: wire::PROTOCOL_VERSION,
                group_id: self.group_id,
                session_id: self.session_id,
                role: NodeRole::Client,
                index: self.index,
                nonce: self.link_nonce,
            }
            .emit_frame(out)?;
            self.hello_pending = false;
            return Ok(Some(n));
        }
        let Phase::Running { interval, .. } = self.phase else {
            return Ok(None);
        };
        let Some(&(exchange, slot)) = self.requests.front() else {
            return Ok(None);
        };
        let l = self.cell_len;
        let p = wire::emit_cell_prefix(interval, exchange, l, out)?;
        self.requests.pop_front();
        let cell = &mut out[p..p + l];
        cell.fill(0);
        if slot == self.slot {
            if let Some(idx) = self.fill_owned(upstream)? {
                // Recorded before sending so it is resent if the exchange is abandoned.
                if self
                    .sent
                    .push_back(Sent {
                        interval,
                        exchange,
                        store: idx,
                    })
                    .is_err()
                {
                    return Err(ClientError::WindowExceeded);
                }
                let at = usize::from(idx) * l;
                cell.copy_from_slice(&self.store.as_ref()[at..at + l]);
            }
        }
        for key in &self.interval_keys {
            key.apply_pad(exchange, cell);
        }
        Ok(Some(p + l))
    }

    /// Picks the plaintext for an owned slot; returns its store index, or None if empty.
    fn fill_owned(&mut self, upstream: &mut dyn Upstream) -> Result<Option<u8>, ClientError> {
        if let Some(idx) = self.resend.pop_front() {
            return Ok(Some(idx));
        }
        if self.free == 0 {
            return Err(ClientError::WindowExceeded);
        }
        let idx = self.free.trailing_zeros() as u8;
        let l = self.cell_len;
        let at = usize::from(idx) * l;
        let cap = self.payload_capacity();
        let cell = &mut self.store.as_mut()[at..at + l];
        // (conn, open, payload length); a close is (conn, false, 0).
        let header = if let Some(conn) = self.closes.pop_front() {
            Some((conn, false, 0))
        } else {
            match upstream.next_chunk(&mut cell[CELL_HEADER_LEN..CELL_HEADER_LEN + cap]) {
                Some(Chunk::Data { conn, len }) if len > 0 && len <= cap => {
                    match self.conns.get_mut(&conn) {
                        Some(c) if !c.finished => {
                            let open = !c.announced;
                            c.announced = true;
                            Some((conn, open, len))
                        }
                        // Bytes for a connection that is gone: dropped.
                        _ => None,
                    }
                }
                Some(Chunk::Close { conn }) => match self.conns.get_mut(&conn) {
                    Some(c) if c.announced && !c.finished => {
                        c.finished = true;
                        Some((conn, false, 0))
                    }
                    Some(c) if !c.announced => {
                        // Never announced: the exit never heard of it.
                        self.conns.remove(&conn);
                        None
                    }
                    _ => None,
                },
                _ => None,
            }
        };
        // With nothing else to send, announce a connection that has no data yet, so the
        // exit opens it (some servers speak first).
        let header = header.or_else(|| {
            let (&conn, c) = self.conns.iter_mut().find(|(_, c)| !c.announced)?;
            c.announced = true;
            Some((conn, true, 0))
        });
        let Some((conn, open, len)) = header else {
            return Ok(None);
        };
        wire::emit_header(cell, conn, open, len);
        cell[CELL_HEADER_LEN + len..].fill(0);
        self.free &= !(1 << idx);
        Ok(Some(idx))
    }

    /// Sorts unconfirmed cells into confirmed (freed), to resend, or lost.
    fn settle(&mut self, history: &[wire::IntervalRecord]) {
        while let Some(s) = self.sent.pop_front() {
            match history.iter().find(|r| r.interval == s.interval) {
                Some(r) if s.exchange < r.done => self.free |= 1 << s.store,
                Some(_) => {
                    // resend and sent together never exceed the store capacity (<= 64).
                    let _ = self.resend.push_back(s.store);
                }
                None => {
                    let at = usize::from(s.store) * self.cell_len;
                    let conn = wire::Cell::new_unchecked(&self.store.as_ref()[at..at + 6]).conn();
                    self.free |= 1 << s.store;
                    if self.conns.remove(&conn).is_some() {
                        // The lost cell may have been the close itself: close again.
                        let _ = self.closes.push_back(conn);
                        self.push_event(ClientEvent::Lost { conn });
                    }
                }
            }
        }
    }

    fn push_event(&mut self, event: ClientEvent) {
        if self.events.is_full() {
            self.events.pop_front();
        }
        let _ = self.events.push_back(event);
    }
}

/// The free-slot mask of a store with `capacity` (at most 64) cells.
const fn all_free(capacity: usize) -> u64 {
    if capacity >= 64 {
        u64::MAX
    } else {
        (1u64 << capacity) - 1
    }
}

impl<B> core::fmt::Debug for Client<B> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Client")
            .field("index", &self.index)
            .field("phase", &self.phase)
            .finish_non_exhaustive()
    }
}
