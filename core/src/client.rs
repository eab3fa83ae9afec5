//! The client role: answers every exchange with a cell, writing data in its own slot.
//!
//! Call order for one link to the relay:
//!
//! 1. [`Client::handle_connected`] when the link is up, then drain [`Client::poll_transmit`]
//!    (the first frame is the Hello).
//! 2. For every frame body received: [`Client::handle_frame`]. If it returns a cell, send
//!    it *first*; then hand its downstream delivery (if any) and every
//!    [`Client::poll_replay`] to the application, even if the cell could not be sent (the
//!    client is past that record now); then [`Client::poll_event`] until `None`;
//!    then [`Client::poll_transmit`] until `None`; then [`Client::prepare`].
//! 3. Whenever the application has new bytes or closes a connection: [`Client::prepare`].
//! 4. [`Client::handle_disconnected`] when the link drops. Connections stay open: after
//!    reconnecting, the client asks for the downstream records it missed, and cells the
//!    relay had not decoded are sent again.
//!
//! **Same work whether owner or not.** A cell is computed the moment its request arrives:
//! copy a plaintext (the prepared one in an owned slot, zeros otherwise), XOR the pads, done.
//! Pulling application bytes, bookkeeping of sent cells and delivering downstream bytes all
//! happen outside that path ([`Client::prepare`], and the shell's delivery after sending).
//!
//! **Acting only on a view everyone shares.** The client acknowledges the view it was shown
//! to every trustee ([`Message::Ack`]); a trustee confirms it ([`Message::Confirmed`]) only
//! after every member's acknowledgement matched its own view. Interval parameters (history,
//! downstream head, online set) are acted on only once every trustee has confirmed, so
//! they are the same for every member. Each exchange's cell is keyed by the transcript of
//! everything shown so far, so a relay that shows clients different things later gets noise.
//!
//! Storage (`store`, [`Client::storage_len`] bytes): the schedule table, the stage (the
//! next owned cell's records), a ring of sent cells not yet confirmed, and a buffer for
//! replayed downstream records.

use chacha20::cipher::{KeyIvInit, StreamCipher};
use chacha20::ChaCha20;
use heapless::{Deque, FnvIndexMap, Vec};

use crate::bits::{bitmap_len, Bits};
use crate::crypto::{IntervalKey, KeyError, PadEngine, PairKey, SerialPads};
use crate::ring::Ring;
use crate::schedule::{Deviation, Schedule};
use crate::time::{Duration, Instant};
use crate::transcript::{self, Transcript};
use crate::wire::{
    self, read_record_header as record_header, write_record_header, CellView, ConnId, Down,
    GoodbyeReason, Head, IntervalRecord, Kind, Message, NodeRole, OutputsView, Params, Resume,
    WireError, MAX_FRAME_BODY, MAX_HISTORY, RECORD_HEADER_LEN,
};
use crate::{cell_length_ok, MAC_LEN, MAX_CELL_LENGTH, MAX_TRUSTEES, MAX_WINDOW, NONCE_LEN};

/// Most connections one client has open at once.
pub const MAX_CONNECTIONS: usize = 256;

/// Bytes of a sent-cell entry header: state, interval, exchange, content length.
const SENT_HEADER: usize = 1 + 4 + 8 + 2;
const SENT: u8 = 1;
const CONFIRMED: u8 = 2;
const RESEND: u8 = 3;
/// Sent in an interval the relay no longer remembers: its connections end (in `settle`).
const LOST: u8 = 4;

/// Ring bytes new data leaves free, so cells an interval's end leaves to send again can
/// always go out: each piece sent again is kept anew (its header, and a split record's)
/// while its first copy waits, until the copy is confirmed. Without it a ring full of such
/// cells had no room to send any of them, and the client stalled for good.
const fn ring_reserve(ring_len: usize) -> usize {
    let min = 4 * (SENT_HEADER + RECORD_HEADER_LEN);
    if ring_len / 8 > min {
        ring_len / 8
    } else {
        min
    }
}

/// Bytes of a buffered replay record header: tag, conn, data length.
const REPLAY_HEADER: usize = wire::REPLAY_OVERHEAD;

/// Static configuration of a client.
#[derive(Debug, Clone, Copy)]
pub struct ClientConfig<'a> {
    /// Index of this client in the group's client list.
    pub index: u16,
    /// Number of clients in the group.
    pub clients: u16,
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
    /// The group's base cell length.
    pub cell_len: usize,
    /// Largest frame this client receives or builds (declared in its Hello).
    pub max_frame: u32,
    /// Most reserved slots the schedule table can hold.
    pub max_reserved: u16,
    /// Bytes for sent cells not yet confirmed (bounds data in flight).
    pub ring_len: usize,
    /// Bytes for downstream records replayed after a reconnect (a longer gap ends the
    /// client's connections).
    pub replay_len: usize,
    /// Smallest online set this client sends in.
    pub min_clients: u16,
    /// How long the slot stays reserved after the last data, so a conversation's turns
    /// need no new reservation.
    pub linger: Duration,
    /// Fresh randomness from the platform (link nonces, Conn#s).
    pub rng_seed: [u8; 32],
}

/// Errors in a client's configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// The cell length is outside the protocol limits.
    CellLength,
    /// No trustees or more than [`MAX_TRUSTEES`], or index, slot or client counts off.
    Counts,
    /// The frame limit is below [`wire::MIN_FRAME_LIMIT`], above [`MAX_FRAME_BODY`], or too
    /// small for the base cell.
    FrameLimit,
    /// The storage is smaller than [`Client::storage_len`], or the ring cannot hold a cell
    /// beside its reserve for cells sent again.
    StorageTooSmall,
    /// Key agreement with a trustee failed.
    Key(KeyError),
}

impl core::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ConfigError::CellLength => f.write_str("cell length out of range"),
            ConfigError::Counts => f.write_str("trustee, client or slot numbers out of range"),
            ConfigError::FrameLimit => f.write_str("frame limit out of range"),
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
    /// A message a client never receives, or one out of order.
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
    /// The interval parameters are unusable (nonces, window, lengths, schedule).
    BadParameters,
    /// An interval announced again, or older than one already run on this link.
    StaleInterval(u32),
    /// This client is not in the interval's online set.
    NotMember,
    /// The online set is smaller than this client's minimum anonymity set.
    TooFewClients {
        /// Clients in the interval.
        online: usize,
        /// The client's minimum.
        min: u16,
    },
    /// A trustee's confirmation of the interval's view does not check: the relay showed
    /// this client something else than the trustees saw.
    Unconfirmed {
        /// The trustee.
        trustee: u16,
    },
    /// The relay's downstream history contradicts the records this client holds.
    Equivocation,
    /// The request's kind is not what the schedule gives (or its outputs do not fit).
    WrongKind {
        /// The exchange.
        exchange: u64,
    },
    /// The output buffer cannot hold the cell.
    BufferTooSmall,
    /// The relay said goodbye.
    Goodbye(GoodbyeReason),
}

impl ClientError {
    /// The relay's reason, if this is its goodbye.
    pub const fn goodbye(&self) -> Option<GoodbyeReason> {
        match self {
            ClientError::Goodbye(r) => Some(*r),
            _ => None,
        }
    }
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
            ClientError::NotMember => f.write_str("this client is not in the interval"),
            ClientError::TooFewClients { online, min } => write!(
                f,
                "interval with {online} clients is below this client's minimum of {min}"
            ),
            ClientError::Unconfirmed { trustee } => write!(
                f,
                "trustee {trustee} did not confirm the interval the relay showed us"
            ),
            ClientError::Equivocation => {
                f.write_str("the relay's downstream history contradicts ours")
            }
            ClientError::WrongKind { exchange } => {
                write!(f, "exchange {exchange} is not what the schedule gives")
            }
            ClientError::BufferTooSmall => f.write_str("output buffer too small for the cell"),
            ClientError::Goodbye(r) => write!(f, "relay said goodbye: {r}"),
        }
    }
}

impl core::error::Error for ClientError {}

impl From<WireError> for ClientError {
    fn from(e: WireError) -> Self {
        match e {
            WireError::BufferTooSmall => ClientError::BufferTooSmall,
            e => ClientError::Wire(e),
        }
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
    /// The application finished sending on `conn`.
    Close {
        /// The connection.
        conn: ConnId,
    },
}

/// Source of upstream bytes, pulled by [`Client::prepare`].
pub trait Upstream {
    /// Writes the next bytes of some connection into `buf`, or reports a close.
    fn next_chunk(&mut self, buf: &mut [u8]) -> Option<Chunk>;
    /// Bytes still waiting after what was pulled (a hint for the next cell's length).
    fn pending(&self) -> usize {
        0
    }
}

/// An [`Upstream`] with nothing to send.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoUpstream;

impl Upstream for NoUpstream {
    fn next_chunk(&mut self, _buf: &mut [u8]) -> Option<Chunk> {
        None
    }
}

/// Downstream for one of this client's connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery<'a> {
    /// Bytes for `conn`.
    Data {
        /// The connection.
        conn: ConnId,
        /// The bytes.
        data: &'a [u8],
    },
    /// The exit closed `conn`; it is gone.
    Close {
        /// The connection.
        conn: ConnId,
    },
}

/// What handling one frame produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[must_use]
pub struct Handled<'a> {
    /// Length of the cell frame written to `out`: send it before anything else.
    pub cell: Option<usize>,
    /// Downstream bytes for one of this client's connections (after sending the cell).
    pub delivery: Option<Delivery<'a>>,
}

/// Things the application should know about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientEvent {
    /// An interval with this client started (its view confirmed by every trustee).
    IntervalStarted {
        /// The interval number.
        interval: u32,
        /// Clients in it (the anonymity set).
        clients: usize,
    },
    /// `conn` ended without a close from the exit: bytes of it were lost for good (the
    /// relay forgot an exchange, or the client was away longer than the relay's log).
    /// Nothing is sent upstream for it; the exit closes its side when idle.
    Lost {
        /// The connection.
        conn: ConnId,
    },
}

#[derive(Debug, Clone, Copy)]
struct Running {
    interval: u32,
    next_exchange: u64,
    window: u64,
    transcript: Transcript,
    schedule: Schedule,
    params: Params,
}

#[derive(Debug, Clone)]
enum Phase {
    Disconnected,
    AwaitStart,
    AwaitConfirm {
        /// The acknowledgement of the view went out.
        acked: bool,
        running: Running,
        clients: usize,
        epoch: [u8; 16],
        head: Head,
        oldest: u64,
        largest: u32,
        history: Vec<IntervalRecord, MAX_HISTORY>,
    },
    AwaitReplays {
        running: Running,
        clients: usize,
        until: Head,
    },
    Running(Running),
}

/// What the client knows of one of its connections.
#[derive(Debug, Clone, Copy, Default)]
struct Conn {
    /// Its OPEN record has been staged.
    announced: bool,
    /// The application finished sending (its close was staged).
    finished: bool,
}

/// Which prefix of the stage went into an owned cell: `whole` bytes of whole records, then
/// optionally the first `part` payload bytes of the record at `whole`.
#[derive(Debug, Clone, Copy)]
struct Taken {
    interval: u32,
    exchange: u64,
    whole: usize,
    part: Option<usize>,
}

/// Client state machine.
pub struct Client<B> {
    index: u16,
    clients: u16,
    group_id: [u8; 16],
    session_id: [u8; 16],
    slot: u16,
    slots: u16,
    cell_len: usize,
    max_cell: usize,
    max_frame: u32,
    max_reserved: u16,
    min_clients: u16,
    linger: Duration,
    rng: ChaCha20,
    pairs: Vec<PairKey, MAX_TRUSTEES>,
    ikeys: Vec<IntervalKey, MAX_TRUSTEES>,
    link_nonce: [u8; NONCE_LEN],
    last_interval: Option<u32>,
    phase: Phase,
    hello_pending: bool,
    probe_reply: Option<u64>,
    /// Kinds of issued exchanges whose outputs were not reported yet, oldest first.
    unreported: Deque<Kind, { 2 * MAX_WINDOW }>,
    /// The relay instance and downstream head this client holds, if any.
    epoch: Option<[u8; 16]>,
    head: Head,
    store: B,
    layout: Layout,
    ring: Ring,
    /// Offset (in the ring region) of the next unsent record of the front resend entry.
    resend_at: Option<usize>,
    stage_used: usize,
    taken: Option<Taken>,
    pending_hint: usize,
    last_data: Option<Instant>,
    announced: u16,
    replay_used: usize,
    replay_read: Option<usize>,
    conns: FnvIndexMap<ConnId, Conn, MAX_CONNECTIONS>,
    events: Deque<ClientEvent, { MAX_CONNECTIONS + 8 }>,
}

/// Where the store's regions start and end.
#[derive(Debug, Clone, Copy)]
struct Layout {
    /// End of the schedule table (it starts at 0).
    table: usize,
    /// End of the stage (it starts at `table`).
    stage: usize,
    /// End of the sent-cell ring (it starts at `stage`).
    ring: usize,
    /// End of the replay buffer (it starts at `ring`).
    replay: usize,
}

fn sent_entry_len(b: &[u8]) -> usize {
    SENT_HEADER + usize::from(u16::from_be_bytes([b[13], b[14]]))
}

fn sent_header(b: &[u8]) -> (u8, u32, u64, usize) {
    (
        b[0],
        u32::from_be_bytes([b[1], b[2], b[3], b[4]]),
        u64::from_be_bytes([b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12]]),
        usize::from(u16::from_be_bytes([b[13], b[14]])),
    )
}

#[cfg(feature = "std")]
impl Client<std::vec::Vec<u8>> {
    /// A client with its storage in a `Vec` of [`Client::storage_len`] bytes.
    pub fn with_vec(config: &ClientConfig<'_>) -> Result<Self, ConfigError> {
        Client::new(config, std::vec![0u8; Self::storage_len(config)])
    }
}

impl<B: AsMut<[u8]> + AsRef<[u8]>> Client<B> {
    /// Largest cell a client with frame limit `max_frame` can build.
    pub const fn max_cell(max_frame: u32) -> usize {
        let room = (max_frame as usize).saturating_sub(wire::cell_frame_len(0) - 4);
        if room > MAX_CELL_LENGTH {
            MAX_CELL_LENGTH
        } else {
            room
        }
    }

    /// Bytes of storage a client of this configuration needs.
    pub const fn storage_len(config: &ClientConfig<'_>) -> usize {
        Schedule::table_len(config.max_reserved)
            + Self::max_cell(config.max_frame)
            + config.ring_len
            + config.replay_len
    }

    /// Creates a client; `storage` must hold [`Client::storage_len`] bytes.
    pub fn new(config: &ClientConfig<'_>, storage: B) -> Result<Self, ConfigError> {
        if !cell_length_ok(config.cell_len) {
            return Err(ConfigError::CellLength);
        }
        if config.trustee_keys.is_empty()
            || config.trustee_keys.len() > MAX_TRUSTEES
            || config.slot >= config.slots
            || config.index >= config.clients
        {
            return Err(ConfigError::Counts);
        }
        let limit = config.max_frame as usize;
        let max_cell = Self::max_cell(config.max_frame);
        if !(wire::MIN_FRAME_LIMIT..=MAX_FRAME_BODY).contains(&limit) || max_cell < config.cell_len
        {
            return Err(ConfigError::FrameLimit);
        }
        if storage.as_ref().len() < Self::storage_len(config)
            || config.ring_len < 2 * SENT_HEADER + config.cell_len + ring_reserve(config.ring_len)
        {
            return Err(ConfigError::StorageTooSmall);
        }
        let mut pairs = Vec::new();
        for key in config.trustee_keys {
            let pair = PairKey::agree(
                &config.session_secret,
                key,
                true,
                &config.group_id,
                &config.session_id,
            )
            .map_err(ConfigError::Key)?;
            // At most MAX_TRUSTEES keys, checked above.
            let _ = pairs.push(pair);
        }
        let table = Schedule::table_len(config.max_reserved);
        let stage = table + max_cell;
        let ring = stage + config.ring_len;
        Ok(Client {
            index: config.index,
            clients: config.clients,
            group_id: config.group_id,
            session_id: config.session_id,
            slot: config.slot,
            slots: config.slots,
            cell_len: config.cell_len,
            max_cell,
            max_frame: config.max_frame,
            max_reserved: config.max_reserved,
            min_clients: config.min_clients,
            linger: config.linger,
            rng: ChaCha20::new(&config.rng_seed.into(), &[0u8; 12].into()),
            pairs,
            ikeys: Vec::new(),
            link_nonce: [0; NONCE_LEN],
            last_interval: None,
            phase: Phase::Disconnected,
            hello_pending: false,
            probe_reply: None,
            unreported: Deque::new(),
            epoch: None,
            head: Head {
                seq: 0,
                bytes: 0,
                hash: [0; 32],
            },
            store: storage,
            layout: Layout {
                table,
                stage,
                ring,
                replay: ring + config.replay_len,
            },
            ring: Ring::new(),
            resend_at: None,
            stage_used: 0,
            taken: None,
            pending_hint: 0,
            last_data: None,
            announced: 0,
            replay_used: 0,
            replay_read: None,
            conns: FnvIndexMap::new(),
            events: Deque::new(),
        })
    }

    /// This client's pseudonym slot.
    pub fn slot(&self) -> u16 {
        self.slot
    }

    /// The interval this client is sending in, once its view is confirmed.
    pub fn interval(&self) -> Option<u32> {
        match &self.phase {
            Phase::Running(r) => Some(r.interval),
            _ => None,
        }
    }

    /// Opens a new connection and returns its Conn# (random low bits, never in use).
    pub fn open(&mut self) -> Result<ConnId, OpenError> {
        if self.conns.len() >= MAX_CONNECTIONS {
            return Err(OpenError::TooManyConnections);
        }
        loop {
            let mut low = [0u8; 2];
            // The keystream of one seed lasts 256 GiB.
            self.rng.apply_keystream(&mut low);
            let conn = ConnId::new(self.slot, u16::from_be_bytes(low));
            if low != [0, 0] && !self.conns.contains_key(&conn) {
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

    /// Number of open connections.
    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// The link to the relay is up.
    pub fn handle_connected(&mut self, _now: Instant) {
        // The keystream of one seed lasts 256 GiB: 2^34 links.
        self.link_nonce = [0; NONCE_LEN];
        self.rng.apply_keystream(&mut self.link_nonce);
        self.last_interval = None;
        self.phase = Phase::AwaitStart;
        self.hello_pending = true;
        self.probe_reply = None;
        self.unreported.clear();
        self.ikeys.clear();
    }

    /// The link to the relay is gone. Connections stay open; cells not yet confirmed are
    /// settled against the history of the next interval.
    pub fn handle_disconnected(&mut self, _now: Instant) {
        self.phase = Phase::Disconnected;
        self.hello_pending = false;
        self.probe_reply = None;
        self.unreported.clear();
        self.ikeys.clear();
        self.replay_used = 0;
        self.replay_read = None;
    }

    /// Handles one frame body from the relay. A returned cell (written to `out`, which must
    /// hold a frame of `max_frame` bytes) must be sent before the delivery is acted on.
    pub fn handle_frame<'a>(
        &mut self,
        now: Instant,
        body: &'a [u8],
        out: &mut [u8],
    ) -> Result<Handled<'a>, ClientError> {
        if matches!(self.phase, Phase::Disconnected) {
            return Err(ClientError::Unexpected);
        }
        match Message::parse(body)? {
            Message::Goodbye { reason } => Err(ClientError::Goodbye(reason)),
            Message::Probe { nonce } => {
                self.probe_reply = Some(nonce);
                Ok(Handled::default())
            }
            Message::IntervalStart {
                interval,
                epoch,
                online,
                nonces,
                window,
                params,
                history,
                head,
                oldest,
                largest,
            } => {
                self.on_interval_start(
                    body, interval, epoch, online, nonces, window, params, history, head, oldest,
                    largest,
                )?;
                Ok(Handled::default())
            }
            Message::Confirmed { interval, macs } => {
                self.on_confirmed(interval, macs)?;
                Ok(Handled::default())
            }
            Message::Replay { seq, down } => {
                self.on_replay(seq, down)?;
                Ok(Handled::default())
            }
            Message::ClientRequest {
                interval,
                exchange,
                kind,
                outputs,
                down,
            } => self.on_request(now, interval, exchange, kind, outputs, down, out),
            _ => Err(ClientError::Unexpected),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn on_interval_start(
        &mut self,
        body: &[u8],
        interval: u32,
        epoch: [u8; 16],
        online: &[u8],
        nonces: &[u8],
        window: u16,
        params: Params,
        history: Vec<IntervalRecord, MAX_HISTORY>,
        head: Head,
        oldest: u64,
        largest: u32,
    ) -> Result<(), ClientError> {
        if self.last_interval.is_some_and(|last| interval <= last) {
            return Err(ClientError::StaleInterval(interval));
        }
        let set = Bits::new_checked(online, usize::from(self.clients))
            .map_err(|_| ClientError::BadParameters)?;
        if !set.contains(usize::from(self.index)) {
            return Err(ClientError::NotMember);
        }
        let clients = set.count();
        if clients < usize::from(self.min_clients) {
            return Err(ClientError::TooFewClients {
                online: clients,
                min: self.min_clients,
            });
        }
        if nonces.len() != self.pairs.len() * NONCE_LEN
            || window == 0
            || usize::from(window) > MAX_WINDOW
        {
            return Err(ClientError::BadParameters);
        }
        let ok = params.base_len as usize == self.cell_len
            && params.max_len as usize <= self.max_cell
            && bitmap_len(usize::from(self.slots)) <= self.max_cell
            && params.capacity <= self.max_reserved
            && u64::from(params.downstream_len) + wire::max_outputs_len(self.slots) as u64 + 64
                <= u64::from(self.max_frame);
        if !ok {
            return Err(ClientError::BadParameters);
        }
        let table = &self.store.as_ref()[..self.layout.table];
        let schedule = Schedule::new(self.slots, &params, table.len())
            .map_err(|_| ClientError::BadParameters)?;
        self.ikeys.clear();
        for (pair, n) in self.pairs.iter().zip(nonces.chunks_exact(NONCE_LEN)) {
            let mut nonce = [0u8; NONCE_LEN];
            nonce.copy_from_slice(n);
            // Same length as `pairs`, which is bounded by MAX_TRUSTEES.
            let _ = self
                .ikeys
                .push(pair.interval_key(interval, &nonce, &self.link_nonce));
        }
        self.last_interval = Some(interval);
        self.unreported.clear();
        self.phase = Phase::AwaitConfirm {
            acked: false,
            running: Running {
                interval,
                next_exchange: 0,
                window: u64::from(window),
                transcript: Transcript::start(body),
                schedule,
                params,
            },
            clients,
            epoch,
            head,
            oldest,
            largest,
            history,
        };
        Ok(())
    }

    fn on_confirmed(&mut self, interval: u32, macs: &[u8]) -> Result<(), ClientError> {
        let Phase::AwaitConfirm {
            acked: true,
            running,
            clients,
            epoch,
            head,
            oldest,
            largest,
            history,
        } = &self.phase
        else {
            return Err(ClientError::Unexpected);
        };
        if running.interval != interval || macs.len() != self.pairs.len() * MAC_LEN {
            return Err(ClientError::Unexpected);
        }
        let view = *running.transcript.hash();
        for (t, (pair, mac)) in self
            .pairs
            .iter()
            .zip(macs.chunks_exact(MAC_LEN))
            .enumerate()
        {
            if !pair.check_confirmation(&view, mac) {
                return Err(ClientError::Unconfirmed { trustee: t as u16 });
            }
        }
        // The view is bound: act on it.
        let (running, clients, epoch, head, oldest, largest) =
            (*running, *clients, *epoch, *head, *oldest, *largest);
        let history = history.clone();
        self.commit_taken();
        let same_log = self.epoch == Some(epoch);
        let mut wait_for = None;
        if same_log && head.seq == self.head.seq {
            if head != self.head {
                return Err(ClientError::Equivocation);
            }
        } else if same_log
            && head.seq > self.head.seq
            && self.head.seq.saturating_add(1) >= oldest
            && u64::from(largest) + wire::REPLAY_FRAME_OVERHEAD as u64 <= u64::from(self.max_frame)
            // Saturating: the relay chose these numbers.
            && head
                .bytes
                .saturating_sub(self.head.bytes)
                .saturating_add((head.seq - self.head.seq).saturating_mul(REPLAY_HEADER as u64))
                <= (self.layout.replay - self.layout.ring) as u64
        {
            wait_for = Some(head);
        } else if same_log && head.seq < self.head.seq {
            return Err(ClientError::Equivocation);
        } else {
            // A new relay instance, or away longer than its log: the connections cannot be
            // resumed. They end here, quietly; the exit closes its side when idle. (A client
            // that never followed a log has missed nothing.)
            if self.epoch.is_some() {
                self.lose_all();
            }
            self.epoch = Some(epoch);
            self.head = head;
        }
        self.settle(running.interval, &history);
        self.announced = 0;
        self.phase = match wait_for {
            Some(until) => {
                self.replay_used = 0;
                self.replay_read = None;
                Phase::AwaitReplays {
                    running,
                    clients,
                    until,
                }
            }
            None => {
                self.push_event(ClientEvent::IntervalStarted {
                    interval: running.interval,
                    clients,
                });
                Phase::Running(running)
            }
        };
        Ok(())
    }

    fn on_replay(&mut self, seq: u64, down: Down<'_>) -> Result<(), ClientError> {
        let Phase::AwaitReplays {
            running,
            clients,
            until,
        } = self.phase
        else {
            return Err(ClientError::Unexpected);
        };
        down.check()?;
        if !down.is_record() || seq != self.head.seq + 1 || seq > until.seq {
            return Err(ClientError::Equivocation);
        }
        let (tag, conn, data): (u8, ConnId, &[u8]) = match down {
            Down::Data { conn, data } => (0, conn, data),
            Down::Close { conn } => (1, conn, &[]),
            Down::None => return Err(ClientError::Unexpected),
        };
        let at = self.layout.ring + self.replay_used;
        let end = at + REPLAY_HEADER + data.len();
        if end > self.layout.replay {
            return Err(ClientError::Equivocation);
        }
        let buf = self.store.as_mut();
        buf[at] = tag;
        buf[at + 1..at + 5].copy_from_slice(&conn.0.to_be_bytes());
        buf[at + 5..at + 9].copy_from_slice(&(data.len() as u32).to_be_bytes());
        buf[at + REPLAY_HEADER..end].copy_from_slice(data);
        self.replay_used = end - self.layout.ring;
        transcript::append(&mut self.head, &down);
        if seq == until.seq {
            if self.head != until {
                self.replay_used = 0;
                return Err(ClientError::Equivocation);
            }
            self.replay_read = Some(0);
            self.push_event(ClientEvent::IntervalStarted {
                interval: running.interval,
                clients,
            });
            self.phase = Phase::Running(running);
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn on_request<'a>(
        &mut self,
        now: Instant,
        interval: u32,
        exchange: u64,
        kind: Kind,
        outputs: &[u8],
        down: Down<'a>,
        out: &mut [u8],
    ) -> Result<Handled<'a>, ClientError> {
        let Phase::Running(mut r) = self.phase else {
            return Err(ClientError::Unexpected);
        };
        if interval != r.interval {
            return Err(ClientError::WrongInterval {
                current: r.interval,
                got: interval,
            });
        }
        if exchange != r.next_exchange {
            return Err(ClientError::OutOfOrder {
                expected: r.next_exchange,
                got: exchange,
            });
        }
        down.check()?;
        let view = OutputsView::parse(outputs, self.slots)?;
        let table = &mut self.store.as_mut()[..self.layout.table];
        r.schedule
            .follow(table, &mut self.unreported, &view, kind)
            .map_err(|d| match d {
                Deviation::WrongKind => ClientError::WrongKind { exchange },
                Deviation::WindowExceeded => ClientError::WindowExceeded,
            })?;
        let len = kind.cell_len(self.slots);
        if len > self.max_cell {
            return Err(ClientError::BadParameters);
        }
        let mut head = self.head;
        transcript::append(&mut head, &down);
        r.transcript.advance(exchange, kind, outputs, &head.hash);

        // The cell: the same steps whoever owns the slot.
        let p = wire::emit_cell_prefix(interval, exchange, len, out)?;
        let cell = &mut out[p..p + len];
        match kind {
            Kind::Reserve => {
                cell.fill(0);
                if self.wants_reservation(&r) {
                    crate::bits::set(cell, usize::from(self.slot));
                }
            }
            Kind::Slot { slot, .. } if slot == self.slot => {
                self.fill_owned(now, &r, interval, exchange, cell);
            }
            Kind::Slot { .. } => cell.fill(0),
        }
        SerialPads.xor_pads(&self.ikeys, &r.transcript.pad_nonce(), cell);

        // Cells up to `exchange - window` were decoded before this request was issued. Only
        // an owner has any to settle, so this waits until the cell is done.
        self.confirm_up_to(
            r.interval,
            exchange.saturating_sub(r.window),
            exchange >= r.window,
        );
        r.next_exchange += 1;
        self.head = head;
        self.phase = Phase::Running(r);
        let delivery = match down {
            Down::Data { conn, data } if self.conns.contains_key(&conn) => {
                Some(Delivery::Data { conn, data })
            }
            Down::Close { conn } if self.conns.remove(&conn).is_some() => {
                Some(Delivery::Close { conn })
            }
            _ => None,
        };
        Ok(Handled {
            cell: Some(p + len),
            delivery,
        })
    }

    /// Whether this client asks for its slot in a reservation exchange.
    fn wants_reservation(&self, r: &Running) -> bool {
        let wants = self.stage_used > 0
            || self.resend_pending()
            || self.pending_hint > 0
            || self.conns.values().any(|c| !c.announced);
        let table = &self.store.as_ref()[..self.layout.table];
        wants && (self.announced == 0 || !r.schedule.is_reserved(table, self.slot))
    }

    fn resend_pending(&self) -> bool {
        let ring = &self.store.as_ref()[self.layout.stage..self.layout.ring];
        self.ring
            .offsets(ring, sent_entry_len)
            .any(|o| ring[o] == RESEND)
    }

    /// Writes this client's cell for an owned exchange: the stage's records that fit, then
    /// `Next`.
    fn fill_owned(
        &mut self,
        now: Instant,
        r: &Running,
        interval: u32,
        exchange: u64,
        cell: &mut [u8],
    ) {
        // Bytes staged while the ring had more room may not all fit it now.
        let room = cell
            .len()
            .saturating_sub(wire::NEXT_LEN)
            .min(self.ring_room());
        let stage = &self.store.as_ref()[self.layout.table..self.layout.stage];
        let mut taken = Taken {
            interval,
            exchange,
            whole: 0,
            part: None,
        };
        let mut w = wire::CellWriter::new(cell);
        if self.taken.is_none() {
            let used = self.stage_used;
            while taken.whole < used {
                let (conn, open, n) = record_header(&stage[taken.whole..]);
                let rec = RECORD_HEADER_LEN + n;
                if taken.whole + rec <= room {
                    let payload = &stage[taken.whole + RECORD_HEADER_LEN..taken.whole + rec];
                    // It fits: `room` bounds the writer's space.
                    let _ = if n == 0 && !open {
                        w.push_close(conn)
                    } else {
                        w.push_data(conn, open, payload)
                    };
                    taken.whole += rec;
                    continue;
                }
                let part = room.saturating_sub(taken.whole + RECORD_HEADER_LEN);
                if n > 0 && part > 0 {
                    let payload = &stage[taken.whole + RECORD_HEADER_LEN..][..part];
                    let _ = w.push_data(conn, open, payload);
                    taken.part = Some(part);
                }
                break;
            }
        }
        let sent = taken.whole + taken.part.map_or(0, |p| p + RECORD_HEADER_LEN);
        let left = self.stage_used - taken.whole - taken.part.unwrap_or(0);
        let next = self.next_length(now, r, left);
        w.finish(next);
        self.announced = next;
        if sent > 0 {
            self.taken = Some(taken);
        }
    }

    /// Most cell content the ring can keep once sent (two entries' headers: a sent prefix
    /// and, should the interval end, the rest); more could not be sent again.
    fn ring_room(&self) -> usize {
        self.ring
            .max_push(self.layout.ring - self.layout.stage)
            .saturating_sub(2 * SENT_HEADER)
    }

    /// The length to announce for this client's next cell (0 releases the slot).
    fn next_length(&self, now: Instant, r: &Running, left: usize) -> u16 {
        let base = r.params.base_len as usize;
        let max = (r.params.max_len as usize).min(self.max_cell);
        let more = left + self.pending_hint;
        let len = if more > 0 || self.resend_pending() {
            let need = wire::NEXT_LEN + RECORD_HEADER_LEN + more;
            if self.resend_pending() {
                max
            } else {
                need.div_ceil(64).saturating_mul(64).clamp(base, max)
            }
        } else if self.last_data.is_some_and(|t| now < t + self.linger) {
            base
        } else {
            0
        };
        len.min(u16::MAX as usize) as u16
    }

    fn confirm_up_to(&mut self, interval: u32, below: u64, any: bool) {
        if !any {
            return;
        }
        let (lo, hi) = (self.layout.stage, self.layout.ring);
        let ring = &mut self.store.as_mut()[lo..hi];
        let offsets: Vec<usize, 64> = self
            .ring
            .offsets(ring, sent_entry_len)
            .filter(|&o| ring[o] == SENT)
            .take(64)
            .collect();
        for o in offsets {
            let (_, i, e, _) = sent_header(&ring[o..]);
            if i == interval && e <= below {
                ring[o] = CONFIRMED;
            } else if i == interval {
                break;
            }
        }
        self.pop_done();
    }

    fn pop_done(&mut self) {
        let (lo, hi) = (self.layout.stage, self.layout.ring);
        let ring = &self.store.as_ref()[lo..hi];
        while let Some(o) = self.ring.front() {
            if ring[o] != CONFIRMED {
                break;
            }
            if self
                .resend_at
                .is_some_and(|r| r >= o && r < o + sent_entry_len(&ring[o..]))
            {
                self.resend_at = None;
            }
            self.ring.pop(ring, sent_entry_len);
        }
    }

    /// Moves the stage's last sent prefix into the ring (as sent, unconfirmed).
    fn commit_taken(&mut self) {
        let Some(t) = self.taken.take() else {
            return;
        };
        let content = t.whole + t.part.map_or(0, |p| RECORD_HEADER_LEN + p);
        let cap = self.layout.ring - self.layout.stage;
        let Layout { table, stage, .. } = self.layout;
        let at = self.ring.push(cap, SENT_HEADER + content);
        // Staging never takes more than the ring can keep, so this holds; should it not,
        // the bytes could not be sent again, and their connections end now rather than
        // with a hole later.
        if at.is_none() {
            // The records taken, the split one whole.
            let mut end = table + t.whole;
            if t.part.is_some() {
                let (_, _, n) = record_header(&self.store.as_ref()[end..]);
                end += RECORD_HEADER_LEN + n;
            }
            self.lose_records(table, end);
        }
        let buf = self.store.as_mut();
        if let Some(o) = at {
            let e = &mut buf[stage + o..stage + o + SENT_HEADER];
            e[0] = SENT;
            e[1..5].copy_from_slice(&t.interval.to_be_bytes());
            e[5..13].copy_from_slice(&t.exchange.to_be_bytes());
            e[13..15].copy_from_slice(&(content as u16).to_be_bytes());
            let dst = stage + o + SENT_HEADER;
            buf.copy_within(table..table + t.whole, dst);
            if let Some(part) = t.part {
                let (conn, open, _) = record_header(&buf[table + t.whole..]);
                let h = dst + t.whole;
                write_record_header(&mut buf[h..], conn, open, part);
                buf.copy_within(
                    table + t.whole + RECORD_HEADER_LEN..table + t.whole + RECORD_HEADER_LEN + part,
                    h + RECORD_HEADER_LEN,
                );
            }
        }
        // Drop the sent prefix from the stage; a split record keeps its tail, no longer
        // opening its connection.
        let mut from = table + t.whole;
        if let Some(part) = t.part {
            let (conn, _, n) = record_header(&buf[from..]);
            from += part;
            write_record_header(&mut buf[from..], conn, false, n - part);
        }
        let end = table + self.stage_used;
        buf.copy_within(from..end, table);
        self.stage_used = end - from;
        if at.is_none() {
            self.purge_stage();
        }
    }

    /// Sorts unconfirmed cells at the start of a confirmed interval: decoded ones are done,
    /// abandoned ones are sent again first, and those of forgotten intervals are lost.
    fn settle(&mut self, current: u32, history: &[IntervalRecord]) {
        let (lo, hi) = (self.layout.stage, self.layout.ring);
        let mut lost_any = false;
        let mut resend_any = false;
        // Cells an earlier interval's end left to send again and not all sent yet: their
        // bytes come after those sent again since (behind them in the ring) and the stage.
        let waiting = {
            let ring = &self.store.as_ref()[lo..hi];
            self.ring
                .offsets(ring, sent_entry_len)
                .take_while(|&o| ring[o] == RESEND)
                .count()
        };
        {
            let ring = &mut self.store.as_mut()[lo..hi];
            let offsets: Vec<usize, 256> =
                self.ring.offsets(ring, sent_entry_len).take(256).collect();
            for o in offsets {
                let (state, interval, exchange, _) = sent_header(&ring[o..]);
                if state != SENT || interval == current {
                    resend_any |= state == RESEND;
                    continue;
                }
                ring[o] = match history.iter().find(|h| h.interval == interval) {
                    Some(h) if exchange < h.done => CONFIRMED,
                    Some(_) => {
                        resend_any = true;
                        RESEND
                    }
                    None => {
                        lost_any = true;
                        LOST
                    }
                };
            }
        }
        if lost_any {
            self.lose_lost_entries();
        }
        self.pop_done();
        if resend_any {
            // The room below is needed as one block.
            self.compact();
        }
        if resend_any && self.stage_used > 0 {
            // Bytes staged but never sent go after the ones to send again.
            self.requeue_stage();
        }
        let entries = self
            .ring
            .offsets(&self.store.as_ref()[lo..hi], sent_entry_len)
            .count();
        if waiting > 0 && entries > waiting {
            self.move_to_back(waiting);
            self.pop_done();
        }
        self.purge_stage();
    }

    /// Ends the connections named in entries marked [`LOST`], which are then done.
    fn lose_lost_entries(&mut self) {
        let (lo, hi) = (self.layout.stage, self.layout.ring);
        loop {
            let ring = &self.store.as_ref()[lo..hi];
            let Some(at) = self
                .ring
                .offsets(ring, sent_entry_len)
                .find(|&o| ring[o] == LOST)
            else {
                return;
            };
            let (_, _, _, len) = sent_header(&ring[at..]);
            self.store.as_mut()[lo + at] = CONFIRMED;
            self.lose_records(lo + at + SENT_HEADER, lo + at + SENT_HEADER + len);
        }
    }

    /// Moves the first `n` ring entries (cells to send again) behind the rest, keeping
    /// only what the stage has not taken from the first. The stage must be empty: it holds
    /// each entry on its way.
    fn move_to_back(&mut self, n: usize) {
        let Layout {
            table,
            stage,
            ring: ring_end,
            ..
        } = self.layout;
        let cap = ring_end - stage;
        for i in 0..n {
            let Some(o) = self.ring.front() else {
                break;
            };
            let buf = self.store.as_mut();
            let (_, _, _, len) = sent_header(&buf[stage + o..]);
            let (start, end) = (o + SENT_HEADER, o + SENT_HEADER + len);
            let from = match self.resend_at {
                Some(a) if i == 0 && a >= start && a <= end => a,
                _ => start,
            };
            let len = end - from;
            buf.copy_within(stage + from..stage + end, table);
            self.ring.pop(&buf[stage..ring_end], sent_entry_len);
            self.resend_at = None;
            if len == 0 {
                continue;
            }
            // Popping the entry freed at least as much contiguous room as it needs.
            match self.ring.push(cap, SENT_HEADER + len) {
                Some(at) => {
                    let e = &mut buf[stage + at..stage + at + SENT_HEADER];
                    e[0] = RESEND;
                    e[1..13].fill(0);
                    e[13..15].copy_from_slice(&(len as u16).to_be_bytes());
                    buf.copy_within(table..table + len, stage + at + SENT_HEADER);
                }
                None => self.lose_records(table, table + len),
            }
        }
    }

    /// Rewrites the ring as one run, in order, without its confirmed entries and without
    /// the bytes of the first entry to send again that the stage already took, so the room
    /// they held is free again as one block. Entries to send again wait at the front for
    /// the stage, and the copies of what was sent again queue behind them: without this,
    /// confirmed copies could not be popped, and their room never came back.
    fn compact(&mut self) {
        let Layout {
            stage,
            ring: ring_end,
            ..
        } = self.layout;
        let mut resend_at = self.resend_at;
        let buf = &mut self.store.as_mut()[stage..ring_end];
        self.ring.compact(buf, sent_entry_len, |e, from, to| {
            if e[0] == CONFIRMED {
                return 0;
            }
            match resend_at {
                Some(a) if e[0] == RESEND && a >= from + SENT_HEADER && a <= from + e.len() => {
                    let skip = a - from - SENT_HEADER;
                    let len = e.len() - SENT_HEADER - skip;
                    e.copy_within(SENT_HEADER + skip.., SENT_HEADER);
                    e[13..15].copy_from_slice(&(len as u16).to_be_bytes());
                    resend_at = Some(to + SENT_HEADER);
                    SENT_HEADER + len
                }
                _ => e.len(),
            }
        });
        self.resend_at = resend_at;
    }

    /// Drops the stage's records of connections that ended: their bytes must not reach
    /// the exit after a gap. Only while the stage has no taken prefix.
    fn purge_stage(&mut self) {
        let (mut read, mut kept) = (0, 0);
        let conns = &self.conns;
        let stage = &mut self.store.as_mut()[self.layout.table..self.layout.stage];
        while read + RECORD_HEADER_LEN <= self.stage_used {
            let (conn, _, n) = record_header(&stage[read..]);
            let rec = RECORD_HEADER_LEN + n;
            if conns.contains_key(&conn) {
                stage.copy_within(read..read + rec, kept);
                kept += rec;
            }
            read += rec;
        }
        self.stage_used = kept;
    }

    /// Ends the connections with records in `store[from..to]`: bytes that cannot be sent
    /// in order any more.
    fn lose_records(&mut self, from: usize, to: usize) {
        let mut gone: Vec<ConnId, MAX_CONNECTIONS> = Vec::new();
        if let Ok(view) = CellView::parse_records(&self.store.as_ref()[from..to]) {
            for rec in view {
                if !gone.contains(&rec.conn()) {
                    let _ = gone.push(rec.conn());
                }
            }
        }
        for conn in gone {
            if self.conns.remove(&conn).is_some() {
                self.push_event(ClientEvent::Lost { conn });
            }
        }
    }

    /// Moves the stage's records behind the cells to send again, keeping byte order.
    fn requeue_stage(&mut self) {
        let cap = self.layout.ring - self.layout.stage;
        let used = self.stage_used;
        let Layout { table, stage, .. } = self.layout;
        match self.ring.push(cap, SENT_HEADER + used) {
            Some(o) => {
                let buf = self.store.as_mut();
                let e = &mut buf[stage + o..stage + o + SENT_HEADER];
                e[0] = RESEND;
                e[1..13].fill(0);
                e[13..15].copy_from_slice(&(used as u16).to_be_bytes());
                buf.copy_within(table..table + used, stage + o + SENT_HEADER);
                self.stage_used = 0;
            }
            None => {
                // No room to keep byte order: those connections cannot go on.
                self.stage_used = 0;
                self.lose_records(table, table + used);
            }
        }
    }

    /// Ends every connection quietly (nothing is sent upstream for them).
    fn lose_all(&mut self) {
        let all: Vec<ConnId, MAX_CONNECTIONS> = self.conns.keys().copied().collect();
        self.conns.clear();
        for conn in all {
            self.push_event(ClientEvent::Lost { conn });
        }
        self.ring.clear();
        self.resend_at = None;
        self.stage_used = 0;
        self.taken = None;
    }

    /// Prepares this client's next owned cell: finishes the bookkeeping of the last one,
    /// then stages bytes to send again, then the application's bytes and closes.
    ///
    /// Call it after handling each frame (after sending its cell) and whenever the
    /// application has something new; it never blocks and pulls at most one cell's worth.
    pub fn prepare(&mut self, now: Instant, upstream: &mut dyn Upstream) {
        self.commit_taken();
        let cap = match &self.phase {
            Phase::Running(r) => (r.params.max_len as usize).min(self.max_cell),
            _ => self.cell_len,
        };
        let budget = cap.saturating_sub(wire::NEXT_LEN);
        if self.ring_room() < budget && self.resend_pending() {
            // Take back the room of what is confirmed or already staged again.
            self.compact();
        }
        let resending = self.stage_resends(budget.min(self.ring_room()));
        if !resending {
            // New data leaves the reserve free.
            let reserve = ring_reserve(self.layout.ring - self.layout.stage);
            let room = budget.min(self.ring_room().saturating_sub(reserve));
            self.stage_upstream(room, upstream);
            self.stage_opens(room);
        }
        self.pending_hint = upstream.pending();
        if self.stage_used > 0 || resending || self.pending_hint > 0 {
            self.last_data = Some(now);
        }
    }

    /// Stages records of cells to send again; true while some remain after this.
    fn stage_resends(&mut self, room: usize) -> bool {
        let Layout {
            table,
            stage,
            ring: ring_end,
            ..
        } = self.layout;
        loop {
            let buf = self.store.as_mut();
            let (ring_buf, rest) = buf[table..ring_end].split_at_mut(stage - table);
            let stage_buf = ring_buf;
            let ring = rest;
            let Some(entry) = self
                .ring
                .offsets(ring, sent_entry_len)
                .find(|&o| ring[o] == RESEND)
            else {
                return false;
            };
            let (_, _, _, len) = sent_header(&ring[entry..]);
            let start = entry + SENT_HEADER;
            let end = start + len;
            let mut at = self
                .resend_at
                .filter(|&a| a >= start && a <= end)
                .unwrap_or(start);
            while at + RECORD_HEADER_LEN <= end {
                let (conn, open, n) = record_header(&ring[at..]);
                let rec = RECORD_HEADER_LEN + n;
                if !self.conns.contains_key(&conn) {
                    at += rec;
                    continue;
                }
                let free = room.saturating_sub(self.stage_used);
                if rec <= free {
                    stage_buf[self.stage_used..self.stage_used + rec]
                        .copy_from_slice(&ring[at..at + rec]);
                    self.stage_used += rec;
                    at += rec;
                    continue;
                }
                if n > 0 && free > RECORD_HEADER_LEN {
                    let part = free - RECORD_HEADER_LEN;
                    let s = self.stage_used;
                    write_record_header(&mut stage_buf[s..], conn, open, part);
                    stage_buf[s + RECORD_HEADER_LEN..s + free].copy_from_slice(
                        &ring[at + RECORD_HEADER_LEN..at + RECORD_HEADER_LEN + part],
                    );
                    self.stage_used += free;
                    // The rest of the record stays, as a record of its own.
                    at += part;
                    write_record_header(&mut ring[at..], conn, false, n - part);
                }
                self.resend_at = Some(at);
                return true;
            }
            ring[entry] = CONFIRMED;
            self.resend_at = None;
            self.pop_done();
        }
    }

    fn stage_upstream(&mut self, room: usize, upstream: &mut dyn Upstream) {
        let table = self.layout.table;
        let stage_end = self.layout.stage;
        while self.stage_used + RECORD_HEADER_LEN < room {
            let at = self.stage_used;
            let limit = (room - at - RECORD_HEADER_LEN).min(wire::MAX_PAYLOAD);
            let buf = &mut self.store.as_mut()[table..stage_end];
            let Some(chunk) = upstream
                .next_chunk(&mut buf[at + RECORD_HEADER_LEN..at + RECORD_HEADER_LEN + limit])
            else {
                break;
            };
            match chunk {
                Chunk::Data { conn, len } if len > 0 && len <= limit => {
                    let Some(c) = self.conns.get_mut(&conn).filter(|c| !c.finished) else {
                        // Bytes for a connection that is gone: dropped.
                        continue;
                    };
                    let open = !c.announced;
                    c.announced = true;
                    write_record_header(&mut buf[at..], conn, open, len);
                    self.stage_used += RECORD_HEADER_LEN + len;
                }
                Chunk::Close { conn } => match self.conns.get_mut(&conn) {
                    Some(c) if c.finished => {}
                    Some(c) if !c.announced => {
                        // Never announced: the exit never heard of it.
                        self.conns.remove(&conn);
                    }
                    Some(c) => {
                        c.finished = true;
                        write_record_header(&mut buf[at..], conn, false, 0);
                        self.stage_used += RECORD_HEADER_LEN;
                    }
                    None => {}
                },
                Chunk::Data { .. } => {}
            }
        }
    }

    /// Stages a bare OPEN for every connection with nothing sent yet (servers that speak
    /// first are reached).
    fn stage_opens(&mut self, room: usize) {
        let table = self.layout.table;
        let stage_end = self.layout.stage;
        for (&conn, c) in self.conns.iter_mut() {
            if c.announced || self.stage_used + RECORD_HEADER_LEN > room {
                continue;
            }
            c.announced = true;
            let buf = &mut self.store.as_mut()[table..stage_end];
            write_record_header(&mut buf[self.stage_used..], conn, true, 0);
            self.stage_used += RECORD_HEADER_LEN;
        }
    }

    /// The next downstream record replayed after a reconnect, once the whole gap is checked.
    pub fn poll_replay(&mut self) -> Option<Delivery<'_>> {
        loop {
            let read = self.replay_read?;
            if read >= self.replay_used {
                self.replay_read = None;
                self.replay_used = 0;
                return None;
            }
            let at = self.layout.ring + read;
            let buf = self.store.as_ref();
            let tag = buf[at];
            let conn = ConnId(u32::from_be_bytes([
                buf[at + 1],
                buf[at + 2],
                buf[at + 3],
                buf[at + 4],
            ]));
            let n =
                u32::from_be_bytes([buf[at + 5], buf[at + 6], buf[at + 7], buf[at + 8]]) as usize;
            self.replay_read = Some(read + REPLAY_HEADER + n);
            if !self.conns.contains_key(&conn) {
                continue;
            }
            if tag == 1 {
                self.conns.remove(&conn);
                return Some(Delivery::Close { conn });
            }
            let data = &self.store.as_ref()[at + REPLAY_HEADER..at + REPLAY_HEADER + n];
            return Some(Delivery::Data { conn, data });
        }
    }

    /// Next event for the application.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    /// Writes the next control frame to send into `out` and returns its length.
    pub fn poll_transmit(&mut self, out: &mut [u8]) -> Result<Option<usize>, WireError> {
        if self.hello_pending {
            let mut proofs = [0u8; MAX_TRUSTEES * MAC_LEN];
            for (pair, p) in self.pairs.iter().zip(proofs.chunks_exact_mut(MAC_LEN)) {
                p.copy_from_slice(&pair.presence_proof(
                    &self.group_id,
                    &self.session_id,
                    self.index,
                    &self.link_nonce,
                ));
            }
            let n = Message::Hello {
                version: wire::PROTOCOL_VERSION,
                group_id: self.group_id,
                session_id: self.session_id,
                role: NodeRole::Client,
                index: self.index,
                nonce: self.link_nonce,
                max_frame: self.max_frame,
                resume: self.epoch.map(|epoch| Resume {
                    epoch,
                    seq: self.head.seq,
                    limit: (self.layout.replay - self.layout.ring).min(u32::MAX as usize) as u32,
                }),
                proofs: &proofs[..self.pairs.len() * MAC_LEN],
            }
            .emit_frame(out)?;
            self.hello_pending = false;
            return Ok(Some(n));
        }
        if let Some(nonce) = self.probe_reply {
            let n = Message::ProbeReply { nonce }.emit_frame(out)?;
            self.probe_reply = None;
            return Ok(Some(n));
        }
        if let Phase::AwaitConfirm {
            acked: acked @ false,
            running,
            ..
        } = &mut self.phase
        {
            let view = running.transcript.hash();
            let mut macs = [0u8; MAX_TRUSTEES * MAC_LEN];
            for (pair, m) in self.pairs.iter().zip(macs.chunks_exact_mut(MAC_LEN)) {
                m.copy_from_slice(&pair.acknowledgement(view));
            }
            let n = Message::Ack {
                interval: running.interval,
                macs: &macs[..self.pairs.len() * MAC_LEN],
            }
            .emit_frame(out)?;
            *acked = true;
            return Ok(Some(n));
        }
        Ok(None)
    }

    fn push_event(&mut self, event: ClientEvent) {
        if self.events.is_full() {
            self.events.pop_front();
        }
        let _ = self.events.push_back(event);
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
