//! The relay role: schedules exchanges, combines every cell and decodes the slot's data.
//!
//! The relay never holds a private key and never learns which client owns a slot: it only
//! XORs ciphertexts. Decoded upstream data carries a Conn# and nothing else.
//!
//! Call order (the shell owns the links; each has a [`LinkId`] and, once the Noise
//! handshake authenticated it, a [`PeerId`]):
//!
//! 1. A link's first frame body: [`Relay::handle_hello`].
//! 2. Every later frame body: [`Relay::handle_frame`]. A link that ends:
//!    [`Relay::handle_link_closed`].
//! 3. After any input: [`Relay::poll_event`] until `None`, then [`Relay::poll_transmit`]
//!    until `None`, sending each frame to every link of its [`Destination`]
//!    ([`Relay::links`]); a [`Transmit`] with `close_after` ends its link once sent.
//! 4. At [`Relay::poll_timeout`], call [`Relay::handle_timeout`] and go to 3.
//!
//! An interval runs over the clients connected when it opens: `IntervalOpen` and `Members`
//! to the trustees, their `IntervalReady`, one `IntervalStart` to trustees and members alike,
//! the trustees' confirmations, then to each member its `Confirmed` and any downstream
//! records it missed, then exchanges. Clients joining make the relay finish the exchanges in
//! flight and open a new interval (after `join_delay`, so joiners are batched); a member
//! leaving ends the interval at once. Slot owners resend cells of abandoned exchanges, so
//! nothing that was sent is lost.

use heapless::{Deque, Vec};

use crate::bits::{self, bitmap_len, Bits};
use crate::crypto::xor_into;
pub use crate::error::{CellError, ConfigError, HelloError, IntervalError, PeerError};
use crate::schedule::Schedule;
use crate::time::{Duration, Instant};
use crate::transcript;
use crate::wire::{
    self, CellView, ClientRequest, ConnId, Down, GoodbyeReason, Head, Hello, IntervalRecord,
    IntervalStart, Kind, Message, NodeRole, OutputsView, Params, Prefix, Record, Records, Resume,
    TrusteeRequest, WireError, MAX_FRAME_BODY, MAX_HISTORY,
};
use crate::{
    cell_length_ok, MAC_LEN, MAX_CLIENTS, MAX_DOWNSTREAM, MAX_TRUSTEES, MAX_WINDOW, NONCE_LEN,
};

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
    /// Base cell length (a newly reserved slot's cell).
    pub cell_len: usize,
    /// Longest cell an owner may ask for.
    pub max_cell_len: usize,
    /// Exchanges in flight ahead of the last decoded one.
    pub window: u16,
    /// Largest downstream payload per record.
    pub downstream_len: usize,
    /// Clients that must be connected before an interval opens.
    pub min_clients: u16,
    /// Longest pause between new exchanges while nothing is being sent or reserved; the
    /// pause grows from a sixteenth of this towards it while the net stays idle.
    pub idle_gap: Duration,
    /// Bytes per second of cells an idle net may cost the relay: in a large group an idle
    /// exchange costs every member a cell, so the longest pause grows with the group until
    /// idle exchanges stay within this budget.
    pub idle_budget: u64,
    /// Most bytes of cells one exchange may take in, every member's and trustee's together:
    /// in a large group, long cells are shortened to fit, so one exchange stays quick and
    /// the relay's buffers bounded (goodput per pad byte is about the same either way).
    pub exchange_budget: usize,
    /// A peer that leaves an exchange (or an interval's set-up) unanswered this long is
    /// dropped.
    pub exchange_timeout: Duration,
    /// How long a newly connected client waits before the running interval is ended to let
    /// it in (joiners arriving meanwhile come along).
    pub join_delay: Duration,
    /// How long an already connected node has to answer a probe when a second process
    /// says hello as the same node.
    pub probe_timeout: Duration,
    /// A reservation exchange runs at least every `period` exchanges.
    pub period: u16,
    /// Most slots one reservation exchange admits.
    pub admit: u16,
    /// Most slots reserved at once.
    pub capacity: u16,
    /// Bytes of downstream log kept for clients that reconnect.
    pub log_len: usize,
    /// Number of the first interval (choose it so numbers are not reused across restarts).
    pub first_interval: u32,
    /// This relay instance's identity (fresh randomness per start).
    pub epoch: [u8; 16],
}

/// Bytes of a log entry header: seq, bytes after, tag, conn, data length.
const LOG_HEADER: usize = 8 + 8 + 1 + 4 + 4;

impl RelayConfig {
    /// Longest cell of any exchange (a long slot or a reservation bitmap).
    pub const fn max_exchange_len(&self) -> usize {
        let r = bitmap_len(self.slots as usize);
        if r > self.max_cell_len {
            r
        } else {
            self.max_cell_len
        }
    }

    const fn output_stride(&self) -> usize {
        2 + 1 + bitmap_len(self.slots as usize)
    }

    const fn regions(&self) -> Regions {
        let n = bitmap_len(self.clients as usize);
        let w = self.window as usize;
        let connected = n;
        let online = connected + n;
        let contrib = online + w * n;
        let acc = contrib + w * self.max_exchange_len();
        let table = acc + Schedule::table_len(self.capacity);
        let outq = table + 2 * w * self.output_stride();
        let outs = outq + wire::max_outputs_len(self.slots);
        let down = outs + self.downstream_len;
        let log = down + self.log_len;
        Regions {
            connected,
            online,
            contrib,
            acc,
            table,
            outq,
            outs,
            down,
            log,
        }
    }

    /// Bytes of storage the relay needs.
    pub const fn storage_len(&self) -> usize {
        self.regions().log
    }

    /// Entries of peer storage the relay needs: every client, then every trustee.
    pub const fn peers_len(&self) -> usize {
        self.clients as usize + self.trustees as usize
    }

    /// Longest frame the relay emits with these parameters.
    pub const fn max_frame_len(&self) -> usize {
        wire::FRAME_HEADER_LEN + MAX_FRAME_BODY
    }

    /// Smallest frame limit a node must declare to take part in this group.
    pub const fn min_node_frame(&self) -> usize {
        min_node_frame(self.cell_len, self.clients, self.trustees, self.slots)
    }
}

/// Smallest frame limit a node must declare to take part in a group of these sizes and
/// base cell length: the largest of a base cell, a reservation cell, an `IntervalStart`
/// and a request's fixed part.
pub const fn min_node_frame(cell_len: usize, clients: u16, trustees: u16, slots: u16) -> usize {
    let cell = wire::cell_frame_len(cell_len);
    let reserve = wire::cell_frame_len(bitmap_len(slots as usize));
    let start =
        128 + bitmap_len(clients as usize) + trustees as usize * NONCE_LEN + MAX_HISTORY * 16;
    let request = 64 + wire::max_outputs_len(slots) + 1;
    let mut m = cell;
    if reserve > m {
        m = reserve;
    }
    if start > m {
        m = start;
    }
    if request > m {
        m = request;
    }
    m
}

/// Where each store region ends (each starts where the previous one ends).
#[derive(Debug, Clone, Copy)]
struct Regions {
    connected: usize,
    online: usize,
    contrib: usize,
    acc: usize,
    table: usize,
    outq: usize,
    outs: usize,
    down: usize,
    log: usize,
}

/// A node of the group.
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

/// The shell's handle of one link (one TCP connection).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LinkId(pub u64);

/// What became of a valid Hello.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum HelloOutcome {
    /// The link now belongs to its peer.
    Admitted,
    /// The peer is connected on another link; that link is being probed, and this one is
    /// admitted or refused by the answer (or its absence).
    Probing,
}

/// Who receives a frame from [`Relay::poll_transmit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    /// One link.
    Link(LinkId),
    /// Every trustee.
    Trustees,
    /// Every client of the current interval.
    Members,
    /// Every trustee and every client of the current interval (byte-identical to all).
    TrusteesAndMembers,
}

/// A frame ready to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct Transmit {
    /// Receivers of the frame.
    pub destination: Destination,
    /// Length of the frame written to the output buffer.
    pub len: usize,
    /// Close the link once this frame is sent (a goodbye).
    pub close_after: bool,
}

/// What the relay reports to its shell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RelayEvent<'a> {
    /// Decoded upstream bytes for `conn`, in order.
    Upstream {
        /// The connection.
        conn: ConnId,
        /// First record of the connection: open it at the exit (anew if it exists).
        open: bool,
        /// The bytes; empty only when `open`.
        data: &'a [u8],
    },
    /// The slot owner finished sending on `conn` (like a TCP FIN).
    Close {
        /// The connection.
        conn: ConnId,
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
    /// A peer's link was ended by the relay (a goodbye is on its way).
    Dropped {
        /// The peer.
        peer: PeerId,
        /// Why.
        reason: GoodbyeReason,
    },
    /// A peer joined (its Hello was admitted).
    Joined {
        /// The peer.
        peer: PeerId,
    },
    /// A second process said hello as a connected peer, and the probe of the connected one
    /// settled it.
    Probed {
        /// The peer.
        peer: PeerId,
        /// Which process keeps the peer's place.
        outcome: ProbeOutcome,
    },
}

/// How a probe of a connected peer ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeOutcome {
    /// The connected process answered: it stays, and the newcomer was refused.
    Answered,
    /// The connected process did not answer in time: the newcomer replaced it.
    Silent,
}

/// A downstream chunk from the exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DownChunk {
    /// `len` bytes for `conn`, written to the start of the buffer.
    Data {
        /// The connection.
        conn: ConnId,
        /// Bytes written (at least 1).
        len: usize,
    },
    /// The exit's side of `conn` ended.
    Close {
        /// The connection.
        conn: ConnId,
    },
}

/// Source of downstream bytes (replies from the exit), asked once per exchange.
pub trait Downstream {
    /// Whether any bytes or closes are waiting.
    fn has_data(&self) -> bool;
    /// Writes the next bytes of one connection into `buf`, or reports a close.
    fn next_chunk(&mut self, buf: &mut [u8]) -> Option<DownChunk>;
}

/// A [`Downstream`] with nothing to send.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoDownstream;

impl Downstream for NoDownstream {
    fn has_data(&self) -> bool {
        false
    }
    fn next_chunk(&mut self, _buf: &mut [u8]) -> Option<DownChunk> {
        None
    }
}

/// What the relay is waiting for before the next interval can open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Waiting {
    /// Nothing: an interval is running.
    Nothing,
    /// Trustees still to connect.
    Trustees {
        /// Connected now.
        connected: usize,
        /// In the group.
        needed: usize,
    },
    /// Clients still to connect.
    Clients {
        /// Connected now.
        connected: usize,
        /// The relay's minimum.
        needed: usize,
    },
    /// An interval is being set up with the trustees.
    SettingUp,
}

/// One node's state at the relay.
#[derive(Debug, Clone, Copy)]
pub struct Peer {
    link: Option<LinkId>,
    nonce: [u8; NONCE_LEN],
    proofs: [[u8; MAC_LEN]; MAX_TRUSTEES],
    /// The client's acknowledgement of the starting interval's view, for each trustee.
    acks: [[u8; MAC_LEN]; MAX_TRUSTEES],
    /// The interval `acks` belong to.
    acked: Option<u32>,
    confirms: [[u8; MAC_LEN]; MAX_TRUSTEES],
    max_frame: u32,
    /// Last downstream record this client holds, if the relay knows (same epoch).
    seq: Option<u64>,
    replay_limit: u32,
    /// A second link that said hello as this peer, waiting for the probe's outcome.
    pending: Option<PendingHello>,
    /// When this client connected without being in the running interval.
    waiting_since: Option<Instant>,
}

#[derive(Debug, Clone, Copy)]
struct PendingHello {
    link: LinkId,
    nonce: [u8; NONCE_LEN],
    proofs: [[u8; MAC_LEN]; MAX_TRUSTEES],
    max_frame: u32,
    resume: Option<Resume>,
    probe: u64,
    deadline: Instant,
    probe_sent: bool,
}

impl Peer {
    /// An unconnected peer (to fill storage with).
    pub const EMPTY: Peer = Peer {
        link: None,
        nonce: [0; NONCE_LEN],
        proofs: [[0; MAC_LEN]; MAX_TRUSTEES],
        acks: [[0; MAC_LEN]; MAX_TRUSTEES],
        acked: None,
        confirms: [[0; MAC_LEN]; MAX_TRUSTEES],
        max_frame: 0,
        seq: None,
        replay_limit: 0,
        pending: None,
        waiting_since: None,
    };
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// Finish the exchanges in flight, then end.
    Drain,
    /// End once everything before `end_at` is reported.
    Abort { end_at: u64 },
}

#[derive(Debug, Clone, Copy)]
struct SlotMeta {
    kind: Kind,
    issued: Instant,
    trustees: u32,
    clients: u32,
}

#[derive(Debug, Clone, Copy)]
enum PendingDown {
    None,
    Data { conn: ConnId, len: usize },
    Close { conn: ConnId },
}

#[derive(Debug, Clone, Copy)]
struct Running {
    interval: u32,
    members: u32,
    next: u64,
    done: u64,
    stop: Option<Stop>,
    schedule: Schedule,
    /// A client request to send right after the trustee request of the same exchange.
    client_pending: Option<(u64, Kind, usize, PendingDown)>,
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    Waiting,
    Opening {
        interval: u32,
        members: u32,
        open_sent: bool,
        sent: [u32; MAX_TRUSTEES],
        scan: [usize; MAX_TRUSTEES],
        ready: u32,
        since: Instant,
    },
    /// `IntervalStart` sent; collecting members' acknowledgements, passing them to each
    /// trustee, then collecting the trustees' confirmations.
    Starting {
        interval: u32,
        members: u32,
        start_pending: bool,
        /// Members whose acknowledgement arrived.
        acked: u32,
        /// Acknowledgements passed to each trustee, and its scan position.
        acks_sent: [u32; MAX_TRUSTEES],
        acks_scan: [usize; MAX_TRUSTEES],
        /// Confirmations from each trustee, and its scan position.
        got: [u32; MAX_TRUSTEES],
        scan: [usize; MAX_TRUSTEES],
        since: Instant,
    },
    Confirming {
        interval: u32,
        members: u32,
        scan: usize,
        /// The member being sent the records it missed.
        replay: Option<Replaying>,
        /// Data bytes of the largest record in the log (which does not change until the
        /// interval runs).
        largest: u32,
    },
    Running(Running),
}

/// A member's replay under way: the next record's sequence number and log offset.
#[derive(Debug, Clone, Copy)]
struct Replaying {
    client: u16,
    seq: u64,
    at: usize,
}

/// Record cursor over a decoded cell: ring index, next offset, end of records.
#[derive(Debug, Clone, Copy)]
struct Decoding {
    at: usize,
    end: usize,
}

/// Relay state machine.
pub struct Relay<P, B> {
    cfg: RelayConfig,
    regions: Regions,
    peers: P,
    store: B,
    meta: Vec<SlotMeta, MAX_WINDOW>,
    nonces: [[u8; NONCE_LEN]; MAX_TRUSTEES],
    trustees: u32,
    all_trustees: u32,
    connected: usize,
    phase: Phase,
    params: Params,
    next_interval: u32,
    history: Deque<IntervalRecord, MAX_HISTORY>,
    events: Deque<RelayEvent<'static>, 256>,
    goodbyes: Deque<(LinkId, GoodbyeReason), 256>,
    /// After [`Relay::shutdown`]: the next peer to say goodbye to.
    shutdown_scan: Option<usize>,
    /// Kinds of issued exchanges whose outputs were not reported yet, oldest first.
    unreported: Deque<Kind, { 2 * MAX_WINDOW }>,
    outq_head: usize,
    outq_len: usize,
    head: Head,
    log: crate::ring::Ring,
    oldest: u64,
    decoding: Option<Decoding>,
    decoded_slot: u16,
    /// When a client waiting to join will have waited `join_delay`, if one may be waiting:
    /// peers are scanned then, not on every frame.
    join_check: Option<Instant>,
    /// Some peer may have a probe pending (likewise).
    probes: bool,
    /// The last exchange decoded nothing: an idle net is paced.
    idle: bool,
    /// The last data cell was full, so its owner likely has more: the whole window opens.
    burst: bool,
    gap: Duration,
    last_issue: Instant,
    probe_counter: u64,
    stale_cells: u64,
    decoded: u64,
}

fn log_entry_len(b: &[u8]) -> usize {
    LOG_HEADER + u32::from_be_bytes([b[21], b[22], b[23], b[24]]) as usize
}

/// A log entry's sequence number.
fn log_seq(b: &[u8]) -> u64 {
    u64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
}

impl<P, B> Relay<P, B>
where
    P: AsMut<[Peer]> + AsRef<[Peer]>,
    B: AsMut<[u8]> + AsRef<[u8]>,
{
    /// Creates a relay; `peers` needs [`RelayConfig::peers_len`] entries and `storage`
    /// [`RelayConfig::storage_len`] bytes.
    pub fn new(cfg: RelayConfig, peers: P, storage: B) -> Result<Self, ConfigError> {
        if !cell_length_ok(cfg.cell_len)
            || cfg.max_cell_len < cfg.cell_len
            || cfg.max_cell_len > crate::MAX_CELL_LENGTH
        {
            return Err(ConfigError::CellLength);
        }
        let (c, t) = (usize::from(cfg.clients), usize::from(cfg.trustees));
        if c == 0 || c > MAX_CLIENTS || t == 0 || t > MAX_TRUSTEES || cfg.slots == 0 {
            return Err(ConfigError::Counts);
        }
        if cfg.window == 0 || usize::from(cfg.window) > MAX_WINDOW {
            return Err(ConfigError::Window);
        }
        if cfg.downstream_len == 0 || cfg.downstream_len > MAX_DOWNSTREAM {
            return Err(ConfigError::DownstreamLength);
        }
        if cfg.period < 2 || cfg.admit == 0 || cfg.capacity == 0 {
            return Err(ConfigError::Schedule);
        }
        if storage.as_ref().len() < cfg.storage_len() || peers.as_ref().len() < cfg.peers_len() {
            return Err(ConfigError::StorageTooSmall("storage"));
        }
        let mut meta = Vec::new();
        for _ in 0..cfg.window {
            // window <= MAX_WINDOW, checked above.
            let _ = meta.push(SlotMeta {
                kind: Kind::Reserve,
                issued: Instant::default(),
                trustees: 0,
                clients: 0,
            });
        }
        let mut relay = Relay {
            regions: cfg.regions(),
            peers,
            store: storage,
            meta,
            nonces: [[0; NONCE_LEN]; MAX_TRUSTEES],
            trustees: 0,
            // t <= MAX_TRUSTEES = 16, so the shift cannot overflow.
            all_trustees: (1u32 << t) - 1,
            connected: 0,
            phase: Phase::Waiting,
            params: Params {
                base_len: cfg.cell_len as u32,
                max_len: cfg.max_cell_len as u32,
                downstream_len: cfg.downstream_len as u32,
                period: cfg.period,
                admit: cfg.admit,
                capacity: cfg.capacity.min(cfg.slots),
            },
            next_interval: cfg.first_interval,
            history: Deque::new(),
            events: Deque::new(),
            goodbyes: Deque::new(),
            shutdown_scan: None,
            unreported: Deque::new(),
            outq_head: 0,
            outq_len: 0,
            head: transcript::genesis(&cfg.epoch),
            log: crate::ring::Ring::new(),
            oldest: 1,
            decoding: None,
            decoded_slot: 0,
            join_check: None,
            probes: false,
            idle: true,
            burst: false,
            gap: Duration::default(),
            last_issue: Instant::default(),
            probe_counter: 0,
            stale_cells: 0,
            decoded: 0,
            cfg,
        };
        for p in relay.peers.as_mut()[..cfg.peers_len()].iter_mut() {
            *p = Peer::EMPTY;
        }
        relay.store.as_mut()[..relay.regions.online].fill(0);
        Ok(relay)
    }

    fn peer_index(&self, peer: PeerId) -> Option<usize> {
        match peer {
            PeerId::Client(i) if i < self.cfg.clients => Some(usize::from(i)),
            PeerId::Trustee(j) if j < self.cfg.trustees => {
                Some(usize::from(self.cfg.clients) + usize::from(j))
            }
            _ => None,
        }
    }

    fn peer(&self, peer: PeerId) -> Option<&Peer> {
        self.peer_index(peer).map(|i| &self.peers.as_ref()[i])
    }

    fn peer_mut(&mut self, peer: PeerId) -> Option<&mut Peer> {
        let i = self.peer_index(peer)?;
        Some(&mut self.peers.as_mut()[i])
    }

    /// The link a peer is connected on, if any.
    pub fn link_of(&self, peer: PeerId) -> Option<LinkId> {
        self.peer(peer).and_then(|p| p.link)
    }

    /// Every link a frame for `destination` goes to.
    pub fn links(&self, destination: Destination) -> impl Iterator<Item = LinkId> + '_ {
        let (trustees, members, one) = match destination {
            Destination::Link(l) => (false, false, Some(l)),
            Destination::Trustees => (true, false, None),
            Destination::Members => (false, true, None),
            Destination::TrusteesAndMembers => (true, true, None),
        };
        let n = usize::from(self.cfg.clients);
        let online = &self.store.as_ref()[self.regions.connected..self.regions.online];
        let peers = self.peers.as_ref();
        let t = (0..usize::from(self.cfg.trustees))
            .filter(move |_| trustees)
            .filter_map(move |j| peers[n + j].link);
        let m = Bits::new_checked(online, n)
            .ok()
            .filter(|_| members)
            .into_iter()
            .flat_map(|b| b.iter())
            .filter_map(move |i| peers[i].link);
        one.into_iter().chain(t).chain(m)
    }

    /// The frame limit a connected peer declared.
    pub fn max_frame_of(&self, peer: PeerId) -> Option<u32> {
        self.peer(peer)
            .filter(|p| p.link.is_some())
            .map(|p| p.max_frame)
    }

    /// Clients connected now.
    pub fn connected_clients(&self) -> usize {
        self.connected
    }

    /// Number of trustees connected now.
    pub fn connected_trustees(&self) -> usize {
        self.trustees.count_ones() as usize
    }

    /// The running interval and its number of clients.
    pub fn interval(&self) -> Option<(u32, usize)> {
        match self.phase {
            Phase::Running(r) => Some((r.interval, r.members as usize)),
            _ => None,
        }
    }

    /// Slots reserved in the running interval.
    pub fn reserved_slots(&self) -> usize {
        match self.phase {
            Phase::Running(r) => r.schedule.reserved(),
            _ => 0,
        }
    }

    /// What the relay is waiting for, for status lines.
    pub fn waiting_for(&self) -> Waiting {
        match self.phase {
            Phase::Running(_) => Waiting::Nothing,
            Phase::Waiting => {
                if self.trustees != self.all_trustees {
                    Waiting::Trustees {
                        connected: self.connected_trustees(),
                        needed: usize::from(self.cfg.trustees),
                    }
                } else {
                    Waiting::Clients {
                        connected: self.connected,
                        needed: usize::from(self.cfg.min_clients.max(1)),
                    }
                }
            }
            _ => Waiting::SettingUp,
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

    fn say_goodbye(&mut self, link: LinkId, reason: GoodbyeReason) {
        if self.goodbyes.is_full() {
            self.goodbyes.pop_front();
        }
        let _ = self.goodbyes.push_back((link, reason));
    }

    fn push_event(&mut self, e: RelayEvent<'static>) {
        if self.events.is_full() {
            self.events.pop_front();
        }
        let _ = self.events.push_back(e);
    }

    /// Handles a link's first frame body; `peer` is who the link authenticated as.
    ///
    /// On an error the relay has queued a goodbye for the link and closes it.
    pub fn handle_hello(
        &mut self,
        now: Instant,
        link: LinkId,
        peer: PeerId,
        body: &[u8],
    ) -> Result<HelloOutcome, PeerError> {
        let result = self.check_hello(peer, body);
        let hello = match result {
            Ok(h) => h,
            Err(e) => {
                self.say_goodbye(link, e.reply());
                return Err(e);
            }
        };
        let Some(existing) = self.peer(peer).copied() else {
            self.say_goodbye(link, GoodbyeReason::WrongIdentity);
            return Err(PeerError::Hello(HelloError::WrongIdentity));
        };
        if existing.link.is_some() {
            if existing.pending.is_some() {
                self.say_goodbye(link, GoodbyeReason::AlreadyConnected);
                return Err(PeerError::Hello(HelloError::AlreadyConnected));
            }
            self.probe_counter = self.probe_counter.wrapping_add(1);
            let probe = self.probe_counter;
            let deadline = now + self.cfg.probe_timeout;
            self.probes = true;
            if let Some(p) = self.peer_mut(peer) {
                p.pending = Some(PendingHello {
                    link,
                    nonce: hello.nonce,
                    proofs: hello.proofs,
                    max_frame: hello.max_frame,
                    resume: hello.resume,
                    probe,
                    deadline,
                    probe_sent: false,
                });
            }
            return Ok(HelloOutcome::Probing);
        }
        self.admit(now, link, peer, &hello);
        Ok(HelloOutcome::Admitted)
    }

    fn check_hello(&self, peer: PeerId, body: &[u8]) -> Result<ParsedHello, PeerError> {
        let Message::Hello(Hello {
            version,
            group_id,
            session_id,
            role,
            index,
            nonce,
            max_frame,
            resume,
            proofs,
        }) = Message::parse(body).map_err(PeerError::Wire)?
        else {
            return Err(PeerError::Hello(HelloError::NotHello));
        };
        if version != wire::PROTOCOL_VERSION {
            return Err(PeerError::Hello(HelloError::Version(version)));
        }
        if group_id != self.cfg.group_id || session_id != self.cfg.session_id {
            return Err(PeerError::Hello(HelloError::WrongGroup));
        }
        let named = match role {
            NodeRole::Client => PeerId::Client(index),
            NodeRole::Trustee => PeerId::Trustee(index),
        };
        if named != peer || self.peer_index(peer).is_none() {
            return Err(PeerError::Hello(HelloError::WrongIdentity));
        }
        if (max_frame as usize) < self.cfg.min_node_frame() || max_frame as usize > MAX_FRAME_BODY {
            return Err(PeerError::Hello(HelloError::FrameLimit(max_frame)));
        }
        let t = usize::from(self.cfg.trustees);
        let mut parsed = ParsedHello {
            nonce,
            proofs: [[0; MAC_LEN]; MAX_TRUSTEES],
            max_frame,
            resume,
        };
        match role {
            NodeRole::Client => {
                if proofs.len() != t * MAC_LEN {
                    return Err(PeerError::Hello(HelloError::Proofs));
                }
                for (dst, src) in parsed.proofs.iter_mut().zip(proofs.chunks_exact(MAC_LEN)) {
                    dst.copy_from_slice(src);
                }
            }
            NodeRole::Trustee => {
                if !proofs.is_empty() {
                    return Err(PeerError::Hello(HelloError::Proofs));
                }
                parsed.resume = None;
            }
        }
        Ok(parsed)
    }

    fn admit(&mut self, now: Instant, link: LinkId, peer: PeerId, hello: &ParsedHello) {
        let epoch = self.cfg.epoch;
        let running_member = match (peer, self.phase) {
            (PeerId::Client(i), Phase::Running(_)) => {
                bits::test(self.online_bits(), usize::from(i))
            }
            _ => false,
        };
        if let Some(p) = self.peer_mut(peer) {
            p.link = Some(link);
            p.nonce = hello.nonce;
            p.proofs = hello.proofs;
            p.max_frame = hello.max_frame;
            p.seq = hello.resume.filter(|r| r.epoch == epoch).map(|r| r.seq);
            p.replay_limit = hello.resume.map_or(0, |r| r.limit);
            p.pending = None;
            p.waiting_since = (!running_member).then_some(now);
        }
        if !running_member && matches!(peer, PeerId::Client(_)) {
            let at = now + self.cfg.join_delay;
            self.join_check = Some(self.join_check.map_or(at, |t| t.min(at)));
        }
        match peer {
            PeerId::Client(i) => {
                let conn = &mut self.store.as_mut()[..self.regions.connected];
                if bits::set(conn, usize::from(i)) {
                    self.connected = bits::count(conn);
                }
            }
            PeerId::Trustee(j) => self.trustees |= 1 << j,
        }
        self.push_event(RelayEvent::Joined { peer });
        self.advance(now);
    }

    /// Clears `probes` once no peer has a probe pending (a scan, only when probes end).
    fn recount_probes(&mut self) {
        if self.probes {
            let n = self.cfg.peers_len();
            self.probes = self.peers.as_ref()[..n].iter().any(|p| p.pending.is_some());
        }
    }

    fn online_bits(&self) -> &[u8] {
        &self.store.as_ref()[self.regions.connected..self.regions.online]
    }

    /// A link ended. Frames of a link that is no longer its peer's are ignored.
    pub fn handle_link_closed(&mut self, now: Instant, link: LinkId, peer: PeerId) {
        let Some(p) = self.peer(peer).copied() else {
            return;
        };
        if let Some(pending) = p.pending {
            if pending.link == link {
                if let Some(p) = self.peer_mut(peer) {
                    p.pending = None;
                }
                self.recount_probes();
                return;
            }
        }
        if p.link != Some(link) {
            return;
        }
        self.disconnect(now, peer);
        // A second process was waiting for this one to go: it takes over now.
        if let Some(pending) = p.pending {
            let hello = ParsedHello {
                nonce: pending.nonce,
                proofs: pending.proofs,
                max_frame: pending.max_frame,
                resume: pending.resume,
            };
            self.admit(now, pending.link, peer, &hello);
        }
    }

    fn disconnect(&mut self, now: Instant, peer: PeerId) {
        if let Some(p) = self.peer_mut(peer) {
            p.link = None;
            p.waiting_since = None;
        }
        let member = match peer {
            PeerId::Client(i) => {
                let i = usize::from(i);
                let conn = &mut self.store.as_mut()[..self.regions.connected];
                bits::clear(conn, i);
                self.connected = bits::count(conn);
                !matches!(self.phase, Phase::Waiting) && bits::test(self.online_bits(), i)
            }
            PeerId::Trustee(j) => {
                let was = self.trustees & (1 << j) != 0;
                self.trustees &= !(1 << j);
                was
            }
        };
        if member {
            self.abort();
        }
        self.advance(now);
    }

    /// Ends a peer's link with a goodbye (for example one that does not read its link).
    pub fn drop_peer(&mut self, now: Instant, peer: PeerId, reason: GoodbyeReason) {
        if let Some(link) = self.link_of(peer) {
            self.say_goodbye(link, reason);
            self.push_event(RelayEvent::Dropped { peer, reason });
            self.disconnect(now, peer);
        }
    }

    /// Handles a frame body from a peer's link.
    ///
    /// On an error the relay has queued a goodbye and ended the peer's link.
    pub fn handle_frame(
        &mut self,
        now: Instant,
        link: LinkId,
        peer: PeerId,
        body: &[u8],
    ) -> Result<(), PeerError> {
        if self.peer(peer).and_then(|p| p.link) != Some(link) {
            // An unknown peer, or a replaced or pending link: nothing it says counts.
            return Ok(());
        }
        let result = Message::parse(body)
            .map_err(PeerError::from)
            .and_then(|msg| self.handle_message(now, peer, msg));
        if result.is_err() {
            self.say_goodbye(link, GoodbyeReason::ProtocolError);
            self.disconnect(now, peer);
        }
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
            (_, Message::ProbeReply { nonce }) => {
                if let Some(pending) = self.peer(peer).and_then(|p| p.pending) {
                    if pending.probe == nonce {
                        // The connected process is alive: the newcomer is refused.
                        self.say_goodbye(pending.link, GoodbyeReason::AlreadyConnected);
                        if let Some(p) = self.peer_mut(peer) {
                            p.pending = None;
                        }
                        self.recount_probes();
                        self.push_event(RelayEvent::Probed {
                            peer,
                            outcome: ProbeOutcome::Answered,
                        });
                    }
                }
                Ok(())
            }
            (PeerId::Trustee(t), Message::IntervalReady { interval, nonce }) => {
                self.on_ready(now, t, interval, nonce)
            }
            (
                PeerId::Trustee(t),
                Message::Confirm {
                    interval,
                    first,
                    macs,
                },
            ) => self.on_confirm(t, interval, first, macs),
            (PeerId::Client(i), Message::Ack { interval, macs }) => self.on_ack(i, interval, macs),
            (PeerId::Trustee(_), Message::Refuse { interval, client }) => {
                self.on_refuse(now, interval, client)
            }
            (
                _,
                Message::Cell {
                    interval,
                    exchange,
                    cell,
                },
            ) => self.on_cell(peer, interval, exchange, cell),
            _ => Err(PeerError::Unexpected),
        }
    }

    fn on_ready(
        &mut self,
        now: Instant,
        t: u16,
        interval: u32,
        nonce: [u8; NONCE_LEN],
    ) -> Result<(), PeerError> {
        let Phase::Opening {
            interval: cur,
            members,
            sent,
            mut ready,
            ..
        } = self.phase
        else {
            return self.past_or_unexpected(interval);
        };
        if cur != interval {
            return self.past_or_unexpected(interval);
        }
        if ready & (1 << t) != 0 || sent[usize::from(t)] != members {
            return Err(PeerError::Unexpected);
        }
        ready |= 1 << t;
        self.nonces[usize::from(t)] = nonce;
        if let Phase::Opening { ready: r, .. } = &mut self.phase {
            *r = ready;
        }
        if ready == self.all_trustees {
            self.params = self.interval_params();
            self.phase = Phase::Starting {
                interval,
                members,
                start_pending: true,
                acked: 0,
                acks_sent: [0; MAX_TRUSTEES],
                acks_scan: [0; MAX_TRUSTEES],
                got: [0; MAX_TRUSTEES],
                scan: [0; MAX_TRUSTEES],
                since: now,
            };
        }
        Ok(())
    }

    /// Parameters of the interval about to start: the configured ones, lowered to what
    /// every member's frame limit allows.
    fn interval_params(&self) -> Params {
        let mut frame = MAX_FRAME_BODY;
        let peers = self.peers.as_ref();
        let n = usize::from(self.cfg.clients);
        let online = self.online_bits();
        let mut cells = usize::from(self.cfg.trustees);
        for i in Bits::new_checked(online, n)
            .into_iter()
            .flat_map(|b| b.iter())
        {
            frame = frame.min(peers[i].max_frame as usize);
            cells += 1;
        }
        for j in 0..usize::from(self.cfg.trustees) {
            frame = frame.min(peers[n + j].max_frame as usize);
        }
        let cell_room = frame.saturating_sub(wire::cell_frame_len(0) - wire::FRAME_HEADER_LEN);
        let down_room = frame.saturating_sub(64 + wire::max_outputs_len(self.cfg.slots));
        Params {
            base_len: self.cfg.cell_len as u32,
            max_len: self
                .cfg
                .max_cell_len
                .min(cell_room)
                .min(self.cfg.exchange_budget / cells.max(1))
                .max(self.cfg.cell_len) as u32,
            downstream_len: self.cfg.downstream_len.min(down_room).max(1) as u32,
            period: self.cfg.period,
            admit: self.cfg.admit,
            capacity: self.cfg.capacity.min(self.cfg.slots),
        }
    }

    fn on_confirm(
        &mut self,
        t: u16,
        interval: u32,
        first: u32,
        macs: &[u8],
    ) -> Result<(), PeerError> {
        let Phase::Starting {
            interval: cur,
            members,
            start_pending: false,
            acks_sent,
            mut got,
            mut scan,
            ..
        } = self.phase
        else {
            return self.past_or_unexpected(interval);
        };
        if interval != cur {
            return self.past_or_unexpected(interval);
        }
        let j = usize::from(t);
        if acks_sent[j] != members
            || first != got[j]
            || macs.is_empty()
            || macs.len() % MAC_LEN != 0
            || got[j] as usize + macs.len() / MAC_LEN > members as usize
        {
            return Err(PeerError::Interval(IntervalError::Confirms));
        }
        let n = usize::from(self.cfg.clients);
        for mac in macs.chunks_exact(MAC_LEN) {
            let i = bits::next_set(self.online_bits(), scan[j], n);
            scan[j] = i + 1;
            self.peers.as_mut()[i].confirms[j].copy_from_slice(mac);
            got[j] += 1;
        }
        if let Phase::Starting {
            got: g, scan: s, ..
        } = &mut self.phase
        {
            *g = got;
            *s = scan;
        }
        let t_all = usize::from(self.cfg.trustees);
        if got[..t_all].iter().all(|&g| g == members) {
            self.phase = Phase::Confirming {
                interval,
                members,
                scan: 0,
                replay: None,
                largest: self.largest_record(),
            };
        }
        Ok(())
    }

    fn on_ack(&mut self, i: u16, interval: u32, macs: &[u8]) -> Result<(), PeerError> {
        let Phase::Starting {
            interval: cur,
            start_pending: false,
            acked,
            ..
        } = self.phase
        else {
            return self.past_or_unexpected(interval);
        };
        if interval != cur {
            return self.past_or_unexpected(interval);
        }
        let t = usize::from(self.cfg.trustees);
        let idx = usize::from(i);
        if !bits::test(self.online_bits(), idx)
            || macs.len() != t * MAC_LEN
            || self.peers.as_ref()[idx].acked == Some(cur)
        {
            return Err(PeerError::Interval(IntervalError::Ack));
        }
        let p = &mut self.peers.as_mut()[idx];
        for (dst, mac) in p.acks[..t].iter_mut().zip(macs.chunks_exact(MAC_LEN)) {
            dst.copy_from_slice(mac);
        }
        p.acked = Some(cur);
        if let Phase::Starting { acked: a, .. } = &mut self.phase {
            *a = acked + 1;
        }
        Ok(())
    }

    /// A trustee refused a member of the interval being set up: that client goes, and the
    /// interval opens again without it.
    fn on_refuse(&mut self, now: Instant, interval: u32, client: u16) -> Result<(), PeerError> {
        let cur = match self.phase {
            Phase::Opening { interval, .. } | Phase::Starting { interval, .. } => interval,
            _ => {
                return if self.is_past(interval) {
                    Ok(())
                } else {
                    Err(PeerError::Unexpected)
                }
            }
        };
        if interval != cur {
            return self.past_or_unexpected(interval);
        }
        if usize::from(client) >= usize::from(self.cfg.clients)
            || !bits::test(self.online_bits(), usize::from(client))
        {
            return Err(PeerError::Unexpected);
        }
        self.drop_peer(now, PeerId::Client(client), GoodbyeReason::Refused);
        Ok(())
    }

    /// A set-up message for `interval` outside its phase: ignored if the interval is over
    /// (it crossed the change on the wire), an error otherwise.
    fn past_or_unexpected(&self, interval: u32) -> Result<(), PeerError> {
        if self.is_past(interval) {
            Ok(())
        } else {
            Err(PeerError::Unexpected)
        }
    }

    /// Whether `interval` was opened before and is over.
    fn is_past(&self, interval: u32) -> bool {
        let current = match self.phase {
            Phase::Opening { interval, .. }
            | Phase::Starting { interval, .. }
            | Phase::Confirming { interval, .. } => Some(interval),
            Phase::Running(r) => Some(r.interval),
            Phase::Waiting => None,
        };
        let first = self.cfg.first_interval;
        let opened = self.next_interval.wrapping_sub(first);
        let age = interval.wrapping_sub(first);
        age < opened && Some(interval) != current
    }

    fn on_cell(
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
            _ => return Err(PeerError::Cell(CellError::UnknownInterval(interval))),
        };
        if let Some(Stop::Abort { .. }) = r.stop {
            // The interval is over; late cells are harmless.
            self.stale_cells += 1;
            return Ok(());
        }
        if exchange < r.done {
            return Err(PeerError::Cell(CellError::Duplicate(exchange)));
        }
        if exchange >= r.next
            || (matches!(peer, PeerId::Client(_)) && exchange >= self.client_limit(&r))
        {
            return Err(PeerError::Cell(CellError::NotRequested(exchange)));
        }
        let w = u64::from(self.cfg.window);
        let idx = (exchange % w) as usize;
        let len = self.meta[idx].kind.cell_len(self.cfg.slots);
        if cell.len() != len {
            return Err(PeerError::Cell(CellError::Length(cell.len())));
        }
        let nb = bitmap_len(usize::from(self.cfg.clients));
        match peer {
            PeerId::Client(i) => {
                let i = usize::from(i);
                if !bits::test(self.online_bits(), i) {
                    return Err(PeerError::Cell(CellError::NotMember));
                }
                let start = self.regions.online + idx * nb;
                let contrib = &mut self.store.as_mut()[start..start + nb];
                if bits::test(contrib, i) {
                    return Err(PeerError::Cell(CellError::Duplicate(exchange)));
                }
                bits::set(contrib, i);
                self.meta[idx].clients += 1;
            }
            PeerId::Trustee(t) => {
                if self.meta[idx].trustees & (1 << t) != 0 {
                    return Err(PeerError::Cell(CellError::Duplicate(exchange)));
                }
                self.meta[idx].trustees |= 1 << t;
            }
        }
        let x = self.cfg.max_exchange_len();
        let at = self.regions.contrib + idx * x;
        xor_into(&mut self.store.as_mut()[at..at + len], cell);
        Ok(())
    }

    /// Clients are asked for the same exchanges as trustees (one window for both).
    fn client_limit(&self, r: &Running) -> u64 {
        match r.client_pending {
            Some((e, ..)) => e,
            None => r.next,
        }
    }

    fn complete(&self, r: &Running, exchange: u64) -> bool {
        let m = &self.meta[(exchange % u64::from(self.cfg.window)) as usize];
        exchange < self.client_limit(r) && m.trustees == self.all_trustees && m.clients == r.members
    }

    /// Ends the current interval without waiting for the exchanges in flight.
    fn abort(&mut self) {
        match self.phase {
            Phase::Waiting => {}
            // No exchange ran, so there is nothing for clients to settle.
            Phase::Opening { .. } | Phase::Starting { .. } | Phase::Confirming { .. } => {
                self.phase = Phase::Waiting
            }
            Phase::Running(mut r) => {
                if matches!(r.stop, Some(Stop::Abort { .. })) {
                    return;
                }
                // Exchanges already complete are still reported.
                let mut end_at = r.done;
                while end_at < r.next && self.complete(&r, end_at) {
                    end_at += 1;
                }
                r.stop = Some(Stop::Abort { end_at });
                r.client_pending = None;
                self.phase = Phase::Running(r);
            }
        }
    }

    fn end_interval(&mut self, interval: u32, done: u64) {
        if self.history.is_full() {
            self.history.pop_front();
        }
        let _ = self.history.push_back(IntervalRecord { interval, done });
        // Members that stayed got every record of the interval.
        let n = usize::from(self.cfg.clients);
        let head = self.head.seq;
        let (store, peers) = (self.store.as_ref(), self.peers.as_mut());
        let online = &store[self.regions.connected..self.regions.online];
        for i in Bits::new_checked(online, n)
            .into_iter()
            .flat_map(|b| b.iter())
        {
            if peers[i].link.is_some() {
                peers[i].seq = Some(head);
            }
        }
        self.push_event(RelayEvent::IntervalEnded { interval, done });
        self.unreported.clear();
        self.outq_len = 0;
        self.decoding = None;
        self.phase = Phase::Waiting;
    }

    /// Moves between phases as connections and progress allow.
    fn advance(&mut self, now: Instant) {
        loop {
            match self.phase {
                Phase::Waiting => {
                    if self.trustees == self.all_trustees
                        && self.connected >= usize::from(self.cfg.min_clients.max(1))
                    {
                        let interval = self.next_interval;
                        self.next_interval = self.next_interval.wrapping_add(1);
                        let r = self.regions;
                        let store = self.store.as_mut();
                        let (a, b) = store[..r.online].split_at_mut(r.connected);
                        b.copy_from_slice(a);
                        let members = bits::count(b) as u32;
                        let n = usize::from(self.cfg.clients);
                        for p in self.peers.as_mut()[..n].iter_mut() {
                            p.waiting_since = None;
                        }
                        self.join_check = None;
                        self.phase = Phase::Opening {
                            interval,
                            members,
                            open_sent: false,
                            sent: [0; MAX_TRUSTEES],
                            scan: [0; MAX_TRUSTEES],
                            ready: 0,
                            since: now,
                        };
                    }
                    return;
                }
                Phase::Running(mut r) => {
                    match r.stop {
                        None if self.join_check.is_some_and(|t| now >= t) => {
                            // One scan: the earliest joiner still connected, if any.
                            let ready = self.earliest_joiner().map(|t| t + self.cfg.join_delay);
                            if ready.is_some_and(|t| now >= t) {
                                r.stop = Some(Stop::Drain);
                                self.phase = Phase::Running(r);
                            } else {
                                self.join_check = ready;
                            }
                        }
                        Some(Stop::Drain)
                            if r.done == r.next
                                && r.client_pending.is_none()
                                && self.decoding.is_none() =>
                        {
                            self.end_interval(r.interval, r.done);
                            continue;
                        }
                        Some(Stop::Abort { end_at })
                            if r.done >= end_at && self.decoding.is_none() =>
                        {
                            self.end_interval(r.interval, r.done);
                            continue;
                        }
                        _ => {}
                    }
                    return;
                }
                _ => return,
            }
        }
    }

    fn earliest_joiner(&self) -> Option<Instant> {
        let n = usize::from(self.cfg.clients);
        self.peers.as_ref()[..n]
            .iter()
            .filter(|p| p.link.is_some())
            .filter_map(|p| p.waiting_since)
            .min()
    }

    /// Next event; decoded upstream data borrows the relay until the event is dropped.
    #[must_use]
    pub fn poll_event(&mut self, now: Instant) -> Option<RelayEvent<'_>> {
        if let Some(e) = self.events.pop_front() {
            return Some(e);
        }
        if let Some(d) = self.decoding {
            return self.next_record(d);
        }
        let Phase::Running(mut r) = self.phase else {
            return None;
        };
        let end = match r.stop {
            Some(Stop::Abort { end_at }) => end_at,
            _ => r.next,
        };
        if r.done >= end || !self.complete(&r, r.done) {
            self.advance(now);
            return self.events.pop_front();
        }
        if self.outq_len >= 2 * usize::from(self.cfg.window) {
            // Outputs must be reported before more exchanges are decoded.
            return None;
        }
        let exchange = r.done;
        r.done += 1;
        self.decoded += 1;
        self.phase = Phase::Running(r);
        let idx = (exchange % u64::from(self.cfg.window)) as usize;
        let kind = self.meta[idx].kind;
        let len = kind.cell_len(self.cfg.slots);
        let at = self.regions.contrib + idx * self.cfg.max_exchange_len();
        match kind {
            Kind::Reserve => {
                // Bits past the last slot carry nothing: a client that sets them only wastes
                // its own cell, and nodes would refuse them in the report.
                let slots = usize::from(self.cfg.slots);
                if slots % 8 != 0 && len > 0 {
                    self.store.as_mut()[at + len - 1] &= (1u8 << (slots % 8)) - 1;
                }
                self.idle = self.store.as_ref()[at..at + len].iter().all(|&b| b == 0);
                self.queue_requests_output(at, len);
                if !self.idle {
                    self.gap = Duration::default();
                }
                self.poll_event_tail(now)
            }
            Kind::Slot { slot, .. } => {
                let acc = &self.store.as_ref()[at..at + len];
                let (next, decoded) = match CellView::parse(acc) {
                    Ok(view) => {
                        let ok = view.records().all(|rec| rec.conn().slot() == Some(slot));
                        if ok {
                            let start = at + wire::NEXT_LEN;
                            let used = view.records_len();
                            // No room left for even one more byte in a record.
                            self.burst = len < start - at + used + wire::RECORD_HEADER_LEN + 1;
                            (view.next(), Some((start, start + used, view.is_empty())))
                        } else {
                            (0, None)
                        }
                    }
                    Err(_) => (0, None),
                };
                if decoded.is_none() {
                    // A garbled exchange (a disruption, or members shown different views):
                    // nothing from it or after it reaches the exit, so every owner's bytes
                    // stay in order. The interval ends here; owners resend from this exchange.
                    self.decoded -= 1;
                    if let Phase::Running(r) = &mut self.phase {
                        r.done = exchange;
                        r.stop = Some(Stop::Abort { end_at: exchange });
                        r.client_pending = None;
                    }
                    self.idle = false;
                    self.burst = false;
                    return Some(RelayEvent::Garbled {
                        interval: r.interval,
                        exchange,
                    });
                }
                self.queue_next_output(next);
                match decoded {
                    Some((start, end, empty)) => {
                        self.idle = empty;
                        if !empty {
                            self.gap = Duration::default();
                            self.decoded_slot = slot;
                            self.decoding = Some(Decoding { at: start, end });
                            return self.next_record(Decoding { at: start, end });
                        }
                        self.poll_event_tail(now)
                    }
                    None => self.poll_event_tail(now),
                }
            }
        }
    }

    fn poll_event_tail(&mut self, now: Instant) -> Option<RelayEvent<'_>> {
        self.advance(now);
        if let Some(e) = self.events.pop_front() {
            return Some(e);
        }
        // Look further: the next exchange may be complete too.
        if matches!(self.phase, Phase::Running(_)) {
            return self.poll_event(now);
        }
        None
    }

    fn next_record(&mut self, d: Decoding) -> Option<RelayEvent<'_>> {
        // The cell was checked whole when it was decoded: one record at a time from here.
        let store = self.store.as_ref();
        let Some(rec) = Records::checked(&store[d.at..d.end]).next() else {
            self.decoding = None;
            return None;
        };
        let next_at = d.at + rec.wire_len();
        self.decoding = (next_at < d.end).then_some(Decoding {
            at: next_at,
            end: d.end,
        });
        Some(match rec {
            Record::Data {
                conn,
                open,
                payload,
            } => RelayEvent::Upstream {
                conn,
                open,
                data: payload,
            },
            Record::Close { conn } => RelayEvent::Close { conn },
        })
    }

    fn outq_slot(&self, k: usize) -> usize {
        self.regions.table
            + ((self.outq_head + k) % (2 * usize::from(self.cfg.window))) * self.cfg.output_stride()
    }

    fn queue_next_output(&mut self, next: u16) {
        if self.outq_len >= 2 * usize::from(self.cfg.window) {
            return;
        }
        let at = self.outq_slot(self.outq_len);
        let buf = self.store.as_mut();
        buf[at..at + 2].copy_from_slice(&3u16.to_be_bytes());
        // Three bytes always fit the stride.
        let _ = wire::emit_next_output(&mut buf[at + 2..], 0, next);
        self.outq_len += 1;
    }

    fn queue_requests_output(&mut self, acc_at: usize, len: usize) {
        if self.outq_len >= 2 * usize::from(self.cfg.window) {
            return;
        }
        let at = self.outq_slot(self.outq_len);
        let stride = self.cfg.output_stride();
        let buf = self.store.as_mut();
        let (low, high) = buf.split_at_mut(at);
        let bitmap = &low[acc_at..acc_at + len];
        let slot = &mut high[..stride];
        // The stride holds the bitmap form, the longer of the two encodings.
        let n = wire::emit_requests_output(&mut slot[2..], 0, bitmap).unwrap_or(0);
        slot[..2].copy_from_slice(&(n as u16).to_be_bytes());
        self.outq_len += 1;
    }

    /// Writes the next frame into `out`, which must hold [`RelayConfig::max_frame_len`] bytes.
    pub fn poll_transmit(
        &mut self,
        now: Instant,
        out: &mut [u8],
        downstream: &mut dyn Downstream,
    ) -> Result<Option<Transmit>, WireError> {
        if let Some((link, reason)) = self.goodbyes.pop_front() {
            let len = Message::Goodbye { reason }.emit_frame(out)?;
            return Ok(Some(Transmit {
                destination: Destination::Link(link),
                len,
                close_after: true,
            }));
        }
        if let Some(from) = self.shutdown_scan {
            return self.transmit_shutdown(from, out);
        }
        if let Some(t) = self.transmit_probe(out)? {
            return Ok(Some(t));
        }
        self.advance(now);
        match self.phase {
            Phase::Waiting => return Ok(None),
            Phase::Opening { .. } => return self.transmit_opening(now, out),
            Phase::Starting { .. } => return self.transmit_start(out),
            Phase::Confirming { .. } => {
                if let Some(t) = self.transmit_confirmed(out)? {
                    return Ok(Some(t));
                }
            }
            Phase::Running(_) => {}
        }
        // Running (possibly just now, once every member has its confirmation).
        let Phase::Running(mut r) = self.phase else {
            return Ok(None);
        };
        let res = self.transmit_running(now, &mut r, out, downstream);
        if let Phase::Running(cur) = &mut self.phase {
            *cur = r;
        }
        res
    }

    /// The relay is stopping: every node that said hello (a pending second process too) is
    /// told so and its link closed; nothing else is sent from now on. The shell drains
    /// [`Relay::poll_transmit`] and gives the links a moment to flush before it exits.
    pub fn shutdown(&mut self) {
        self.shutdown_scan.get_or_insert(0);
    }

    fn transmit_shutdown(
        &mut self,
        from: usize,
        out: &mut [u8],
    ) -> Result<Option<Transmit>, WireError> {
        let total = self.cfg.peers_len();
        let mut i = from;
        while i < total {
            let p = &mut self.peers.as_mut()[i];
            // The peer's own link, then a pending one; each is forgotten once told.
            let link = if let Some(link) = p.link.take() {
                link
            } else if let Some(pending) = p.pending.take() {
                pending.link
            } else {
                i += 1;
                continue;
            };
            self.shutdown_scan = Some(i);
            let len = Message::Goodbye {
                reason: GoodbyeReason::ShuttingDown,
            }
            .emit_frame(out)?;
            return Ok(Some(Transmit {
                destination: Destination::Link(link),
                len,
                close_after: true,
            }));
        }
        self.shutdown_scan = Some(total);
        Ok(None)
    }

    fn transmit_probe(&mut self, out: &mut [u8]) -> Result<Option<Transmit>, WireError> {
        // Scans only while some probe may be pending (rare); never per frame otherwise.
        let total = if self.probes { self.cfg.peers_len() } else { 0 };
        for i in 0..total {
            let p = &self.peers.as_ref()[i];
            if let (Some(link), Some(pending)) = (p.link, p.pending) {
                if !pending.probe_sent {
                    let len = Message::Probe {
                        nonce: pending.probe,
                    }
                    .emit_frame(out)?;
                    if let Some(pd) = &mut self.peers.as_mut()[i].pending {
                        pd.probe_sent = true;
                    }
                    return Ok(Some(Transmit {
                        destination: Destination::Link(link),
                        len,
                        close_after: false,
                    }));
                }
            }
        }
        Ok(None)
    }

    fn transmit_opening(
        &mut self,
        now: Instant,
        out: &mut [u8],
    ) -> Result<Option<Transmit>, WireError> {
        let Phase::Opening {
            interval,
            members,
            open_sent,
            mut sent,
            mut scan,
            ..
        } = self.phase
        else {
            return Ok(None);
        };
        if !open_sent {
            let len = Message::IntervalOpen {
                interval,
                online: self.online_bits(),
            }
            .emit_frame(out)?;
            if let Phase::Opening {
                open_sent, since, ..
            } = &mut self.phase
            {
                *open_sent = true;
                *since = now;
            }
            return Ok(Some(Transmit {
                destination: Destination::Trustees,
                len,
                close_after: false,
            }));
        }
        let column = Column {
            interval,
            members,
            entry: NONCE_LEN + MAC_LEN,
            chunk: 2048,
            prefix: |interval, first| Prefix::Members { interval, first },
        };
        let t = self.transmit_column(&column, &mut sent, &mut scan, out, |c, j, e| {
            e[..NONCE_LEN].copy_from_slice(&c.nonce);
            e[NONCE_LEN..].copy_from_slice(&c.proofs[j]);
        })?;
        if let Phase::Opening {
            sent: s, scan: sc, ..
        } = &mut self.phase
        {
            *s = sent;
            *sc = scan;
        }
        Ok(t)
    }

    /// The next frame of a per-member list for some trustee (each trustee gets every member's
    /// entry, in increasing client order); `sent` and `scan` track each trustee's progress.
    fn transmit_column(
        &self,
        column: &Column,
        sent: &mut [u32; MAX_TRUSTEES],
        scan: &mut [usize; MAX_TRUSTEES],
        out: &mut [u8],
        fill: impl Fn(&Peer, usize, &mut [u8]),
    ) -> Result<Option<Transmit>, WireError> {
        let n = usize::from(self.cfg.clients);
        for j in 0..usize::from(self.cfg.trustees) {
            if sent[j] >= column.members {
                continue;
            }
            let Some(link) = self.peers.as_ref()[n + j].link else {
                continue;
            };
            let frame = self.peers.as_ref()[n + j].max_frame as usize;
            let room = frame.min(out.len()).saturating_sub(32) / column.entry;
            let count = ((column.members - sent[j]) as usize)
                .min(room)
                .min(column.chunk);
            if count == 0 {
                return Err(WireError::BufferTooSmall);
            }
            let p = (column.prefix)(column.interval, sent[j]).emit(count * column.entry, out)?;
            let online = &self.store.as_ref()[self.regions.connected..self.regions.online];
            let peers = self.peers.as_ref();
            let len = count * column.entry;
            for entry in out[p..p + len].chunks_exact_mut(column.entry) {
                scan[j] = bits::next_set(online, scan[j], n);
                fill(&peers[scan[j]], j, entry);
                scan[j] += 1;
            }
            sent[j] += count as u32;
            return Ok(Some(Transmit {
                destination: Destination::Link(link),
                len: p + len,
                close_after: false,
            }));
        }
        Ok(None)
    }

    fn transmit_start(&mut self, out: &mut [u8]) -> Result<Option<Transmit>, WireError> {
        let Phase::Starting {
            interval,
            start_pending,
            ..
        } = self.phase
        else {
            return Ok(None);
        };
        if !start_pending {
            return self.transmit_acks(out);
        }
        let t = usize::from(self.cfg.trustees);
        let mut nonces = [0u8; MAX_TRUSTEES * NONCE_LEN];
        for (dst, n) in nonces.chunks_exact_mut(NONCE_LEN).zip(&self.nonces[..t]) {
            dst.copy_from_slice(n);
        }
        let history: Vec<IntervalRecord, MAX_HISTORY> = self.history.iter().copied().collect();
        let len = Message::IntervalStart(IntervalStart {
            interval,
            epoch: self.cfg.epoch,
            online: self.online_bits(),
            nonces: &nonces[..t * NONCE_LEN],
            window: self.cfg.window,
            params: self.params,
            history,
            head: self.head,
            oldest: self.oldest,
            largest: self.largest_record(),
        })
        .emit_frame(out)?;
        if let Phase::Starting { start_pending, .. } = &mut self.phase {
            *start_pending = false;
        }
        Ok(Some(Transmit {
            destination: Destination::TrusteesAndMembers,
            len,
            close_after: false,
        }))
    }

    /// Once every member acknowledged the view: each trustee's column of the
    /// acknowledgements, in member order.
    fn transmit_acks(&mut self, out: &mut [u8]) -> Result<Option<Transmit>, WireError> {
        let Phase::Starting {
            interval,
            members,
            acked,
            mut acks_sent,
            mut acks_scan,
            ..
        } = self.phase
        else {
            return Ok(None);
        };
        if acked != members {
            return Ok(None);
        }
        let column = Column {
            interval,
            members,
            entry: MAC_LEN,
            chunk: 4096,
            prefix: |interval, first| Prefix::Acks { interval, first },
        };
        let t = self.transmit_column(&column, &mut acks_sent, &mut acks_scan, out, |c, j, e| {
            e.copy_from_slice(&c.acks[j])
        })?;
        if let Phase::Starting {
            acks_sent: s,
            acks_scan: sc,
            ..
        } = &mut self.phase
        {
            *s = acks_sent;
            *sc = acks_scan;
        }
        Ok(t)
    }

    fn transmit_confirmed(&mut self, out: &mut [u8]) -> Result<Option<Transmit>, WireError> {
        let Phase::Confirming {
            interval,
            members,
            mut scan,
            replay,
            largest,
        } = self.phase
        else {
            return Ok(None);
        };
        if let Some(Replaying { client, seq, at }) = replay {
            let link = self.peers.as_ref()[usize::from(client)].link;
            if let (Some(link), true) = (link, seq <= self.head.seq) {
                let sent = self.emit_replay(seq, at, out)?;
                if let Phase::Confirming { replay, .. } = &mut self.phase {
                    *replay = sent.and_then(|(_, next)| next).map(|at| Replaying {
                        client,
                        seq: seq + 1,
                        at,
                    });
                }
                if let Some((len, _)) = sent {
                    return Ok(Some(Transmit {
                        destination: Destination::Link(link),
                        len,
                        close_after: false,
                    }));
                }
            }
            if let Phase::Confirming { replay, .. } = &mut self.phase {
                *replay = None;
            }
            return self.transmit_confirmed(out);
        }
        let n = usize::from(self.cfg.clients);
        let t = usize::from(self.cfg.trustees);
        while scan < n {
            let i = scan;
            scan += 1;
            if !bits::test(self.online_bits(), i) {
                continue;
            }
            let p = self.peers.as_ref()[i];
            let Some(link) = p.link else { continue };
            let mut macs = [0u8; MAX_TRUSTEES * MAC_LEN];
            for (dst, m) in macs.chunks_exact_mut(MAC_LEN).zip(&p.confirms[..t]) {
                dst.copy_from_slice(m);
            }
            let len = Message::Confirmed {
                interval,
                macs: &macs[..t * MAC_LEN],
            }
            .emit_frame(out)?;
            let replay = self.replay_start(&p, largest).map(|(seq, at)| Replaying {
                client: i as u16,
                seq,
                at,
            });
            if let Phase::Confirming {
                scan: s, replay: r, ..
            } = &mut self.phase
            {
                *s = scan;
                *r = replay;
            }
            if let Some(p) = self.peers.as_mut().get_mut(i) {
                if replay.is_none() {
                    p.seq = Some(self.head.seq);
                }
            }
            return Ok(Some(Transmit {
                destination: Destination::Link(link),
                len,
                close_after: false,
            }));
        }
        // Everyone has the view: exchanges start.
        let schedule = match Schedule::new(
            self.cfg.slots,
            &self.params,
            self.regions.table - self.regions.acc,
        ) {
            Ok(s) => s,
            Err(_) => {
                self.phase = Phase::Waiting;
                return Ok(None);
            }
        };
        self.phase = Phase::Running(Running {
            interval,
            members,
            next: 0,
            done: 0,
            stop: None,
            schedule,
            client_pending: None,
        });
        self.unreported.clear();
        self.outq_len = 0;
        self.idle = false;
        self.burst = false;
        self.gap = Duration::default();
        self.push_event(RelayEvent::IntervalStarted {
            interval,
            clients: members as usize,
        });
        Ok(None)
    }

    /// Data bytes of the largest record in the log.
    fn largest_record(&self) -> u32 {
        let buf = &self.store.as_ref()[self.regions.down..self.regions.log];
        self.log
            .offsets(buf, log_entry_len)
            .map(|o| (log_entry_len(&buf[o..]) - LOG_HEADER) as u32)
            .max()
            .unwrap_or(0)
    }

    /// The first record to replay to a member and its log offset, if it missed some the log
    /// still holds and they fit its limits (the client applies the same rule). One pass
    /// over the log.
    fn replay_start(&self, p: &Peer, largest: u32) -> Option<(u64, usize)> {
        let seq = p.seq?;
        if seq >= self.head.seq || seq.saturating_add(1) < self.oldest {
            return None;
        }
        if largest as usize + wire::REPLAY_FRAME_OVERHEAD > p.max_frame as usize {
            return None;
        }
        let buf = &self.store.as_ref()[self.regions.down..self.regions.log];
        let mut first = None;
        let mut bytes = 0u64;
        for o in self.log.offsets(buf, log_entry_len) {
            let e = &buf[o..];
            if log_seq(e) > seq {
                first.get_or_insert(o);
                bytes += (log_entry_len(e) - LOG_HEADER + wire::REPLAY_OVERHEAD) as u64;
            }
        }
        let at = first?;
        (bytes <= u64::from(p.replay_limit)).then_some((seq + 1, at))
    }

    /// The replay of record `seq`, at log offset `at`: its frame length and the next
    /// record's offset. `None` if the log has no such record there.
    fn emit_replay(
        &self,
        seq: u64,
        at: usize,
        out: &mut [u8],
    ) -> Result<Option<(usize, Option<usize>)>, WireError> {
        let buf = &self.store.as_ref()[self.regions.down..self.regions.log];
        let Some(e) = buf
            .get(at..)
            .filter(|e| e.len() >= LOG_HEADER && log_seq(e) == seq)
        else {
            return Ok(None);
        };
        let len = log_entry_len(e);
        let conn = ConnId(u32::from_be_bytes([e[17], e[18], e[19], e[20]]));
        let down = if e[16] == 1 {
            Down::Close { conn }
        } else {
            Down::Data {
                conn,
                data: &e[LOG_HEADER..len],
            }
        };
        let n = Message::Replay { seq, down }.emit_frame(out)?;
        Ok(Some((n, self.log.after(at, len))))
    }

    fn transmit_running(
        &mut self,
        now: Instant,
        r: &mut Running,
        out: &mut [u8],
        downstream: &mut dyn Downstream,
    ) -> Result<Option<Transmit>, WireError> {
        if let Some((exchange, kind, outs_len, down)) = r.client_pending {
            let o = self.regions.outq;
            let d = self.regions.outs;
            let store = self.store.as_ref();
            let outputs = &store[o..o + outs_len];
            let down = match down {
                PendingDown::None => Down::None,
                PendingDown::Data { conn, len } => Down::Data {
                    conn,
                    data: &store[d..d + len],
                },
                PendingDown::Close { conn } => Down::Close { conn },
            };
            let len = Message::ClientRequest(ClientRequest {
                interval: r.interval,
                exchange,
                kind,
                outputs,
                down,
            })
            .emit_frame(out)?;
            r.client_pending = None;
            return Ok(Some(Transmit {
                destination: Destination::Members,
                len,
                close_after: false,
            }));
        }
        if r.stop.is_some() || self.decoding.is_some() {
            return Ok(None);
        }
        // Only an idle net with nothing reserved is paced: a reserved slot (a conversation
        // between turns) runs at full speed. One exchange is in flight at a time unless an
        // owner filled its last cell (a bulk sender, likely with more) or the exit has
        // downstream bytes waiting: then the whole window opens. Otherwise an owner's next
        // bytes would wait behind a window of exchanges issued before they existed.
        let paced = self.idle
            && r.schedule.reserved() == 0
            && !downstream.has_data()
            && now < self.last_issue + self.gap;
        let window = if self.burst || downstream.has_data() {
            u64::from(self.cfg.window)
        } else {
            1
        };
        if r.next >= r.done + window || paced {
            return Ok(None);
        }
        // Report decoded outputs (at most one reservation bitmap per request) and apply
        // them to our own schedule, exactly as every node will.
        let mut outs_len = 0;
        let mut reserves = 0;
        while self.outq_len > 0 {
            let at = self.outq_slot(0);
            let store = self.store.as_ref();
            let n = usize::from(u16::from_be_bytes([store[at], store[at + 1]]));
            let is_reserve = store[at + 2] != 0;
            if is_reserve && reserves == 1 {
                break;
            }
            reserves += usize::from(is_reserve);
            let (o, t) = (self.regions.outq, self.regions.acc);
            let store = self.store.as_mut();
            store.copy_within(at + 2..at + 2 + n, o + outs_len);
            let Some(kind) = self.unreported.pop_front() else {
                break;
            };
            let (table_and_rest, q) = store.split_at_mut(o);
            let bytes = &q[outs_len..outs_len + n];
            let table = &mut table_and_rest[t..self.regions.table];
            if let Ok(view) = OutputsView::parse(bytes, self.cfg.slots) {
                for output in view.iter() {
                    let _ = r.schedule.apply(table, kind, &output);
                }
            }
            outs_len += n;
            self.outq_head = (self.outq_head + 1) % (2 * usize::from(self.cfg.window));
            self.outq_len -= 1;
        }
        let kind = {
            let table = &self.store.as_ref()[self.regions.acc..self.regions.table];
            r.schedule.next(table)
        };
        let _ = self.unreported.push_back(kind);
        // The downstream record of this exchange.
        let d = self.regions.outs;
        let cap = (self.params.downstream_len as usize).min(self.cfg.downstream_len);
        let down = if downstream.has_data() {
            match downstream.next_chunk(&mut self.store.as_mut()[d..d + cap]) {
                Some(DownChunk::Data { conn, len }) if len > 0 && conn.0 != 0 => {
                    PendingDown::Data {
                        conn,
                        len: len.min(cap),
                    }
                }
                Some(DownChunk::Close { conn }) if conn.0 != 0 => PendingDown::Close { conn },
                _ => PendingDown::None,
            }
        } else {
            PendingDown::None
        };
        self.log_record(down);
        let exchange = r.next;
        let len = Message::TrusteeRequest(TrusteeRequest {
            interval: r.interval,
            exchange,
            kind,
            outputs: &self.store.as_ref()[self.regions.outq..self.regions.outq + outs_len],
            head: self.head.hash,
        })
        .emit_frame(out)?;
        let idx = (exchange % u64::from(self.cfg.window)) as usize;
        self.meta[idx] = SlotMeta {
            kind,
            issued: now,
            trustees: 0,
            clients: 0,
        };
        let nb = bitmap_len(usize::from(self.cfg.clients));
        let c = self.regions.online + idx * nb;
        self.store.as_mut()[c..c + nb].fill(0);
        let x = self.cfg.max_exchange_len();
        let a = self.regions.contrib + idx * x;
        self.store.as_mut()[a..a + kind.cell_len(self.cfg.slots)].fill(0);
        r.next += 1;
        r.client_pending = Some((exchange, kind, outs_len, down));
        self.last_issue = now;
        self.gap = if self.idle && !downstream.has_data() {
            let cells = u64::from(r.members) + u64::from(self.cfg.trustees);
            let bytes = cells * kind.cell_len(self.cfg.slots) as u64;
            let cost = bytes.saturating_mul(1_000_000) / self.cfg.idle_budget.max(1);
            let longest = self.cfg.idle_gap.as_micros().max(cost);
            let floor = longest / 16;
            Duration::from_micros((self.gap.as_micros() * 2).max(floor).min(longest))
        } else {
            Duration::default()
        };
        Ok(Some(Transmit {
            destination: Destination::Trustees,
            len,
            close_after: false,
        }))
    }

    /// Appends a downstream record to the head and the log (evicting the oldest records).
    fn log_record(&mut self, down: PendingDown) {
        let d = self.regions.outs;
        let (tag, conn, len) = match down {
            PendingDown::None => return,
            PendingDown::Data { conn, len } => (0u8, conn, len),
            PendingDown::Close { conn } => (1u8, conn, 0),
        };
        {
            let store = self.store.as_ref();
            let rec = match down {
                PendingDown::Data { conn, len } => Down::Data {
                    conn,
                    data: &store[d..d + len],
                },
                _ => Down::Close { conn },
            };
            let mut head = self.head;
            transcript::append(&mut head, &rec);
            self.head = head;
        }
        let cap = self.regions.log - self.regions.down;
        let need = LOG_HEADER + len;
        if need > cap {
            self.log.clear();
            self.oldest = self.head.seq + 1;
            return;
        }
        let at = loop {
            if let Some(at) = self.log.push(cap, need) {
                break at;
            }
            let buf = &self.store.as_ref()[self.regions.down..self.regions.log];
            self.log.pop(buf, log_entry_len);
            self.oldest += 1;
        };
        let (seq, bytes) = (self.head.seq, self.head.bytes);
        let (low, high) = self.store.as_mut().split_at_mut(self.regions.down);
        let e = &mut high[at..at + need];
        e[..8].copy_from_slice(&seq.to_be_bytes());
        e[8..16].copy_from_slice(&bytes.to_be_bytes());
        e[16] = tag;
        e[17..21].copy_from_slice(&conn.0.to_be_bytes());
        e[21..25].copy_from_slice(&(len as u32).to_be_bytes());
        e[LOG_HEADER..].copy_from_slice(&low[d..d + len]);
    }

    /// When [`Relay::handle_timeout`] should next be called.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut at: Option<Instant> = None;
        let mut earliest = |t: Instant| {
            at = Some(at.map_or(t, |a: Instant| a.min(t)));
        };
        if self.probes {
            for p in self.peers.as_ref()[..self.cfg.peers_len()].iter() {
                if let Some(pending) = p.pending {
                    earliest(pending.deadline);
                }
            }
        }
        match self.phase {
            Phase::Waiting | Phase::Confirming { .. } => {}
            Phase::Opening { since, .. } | Phase::Starting { since, .. } => {
                earliest(since + self.cfg.exchange_timeout)
            }
            Phase::Running(r) => {
                if r.done < r.next {
                    let s = &self.meta[(r.done % u64::from(self.cfg.window)) as usize];
                    earliest(s.issued + self.cfg.exchange_timeout);
                }
                if r.stop.is_none() {
                    // Idle, one exchange is in flight at a time: the pause matters only once
                    // it has decoded.
                    if self.idle && r.schedule.reserved() == 0 && r.next <= r.done {
                        earliest(self.last_issue + self.gap);
                    }
                    if let Some(t) = self.join_check {
                        earliest(t);
                    }
                }
            }
        }
        at
    }

    /// Drops peers that left an exchange (or an interval's set-up) unanswered, settles
    /// probes, and lets paced exchanges and waiting joiners go on.
    pub fn handle_timeout(&mut self, now: Instant) {
        let total = if self.probes { self.cfg.peers_len() } else { 0 };
        for i in 0..total {
            let p = self.peers.as_ref()[i];
            let Some(pending) = p.pending else { continue };
            if now < pending.deadline {
                continue;
            }
            let peer = self.peer_id(i);
            // The connected process did not answer: it is gone, the newcomer takes over.
            if let Some(old) = p.link {
                self.say_goodbye(old, GoodbyeReason::Replaced);
            }
            self.push_event(RelayEvent::Probed {
                peer,
                outcome: ProbeOutcome::Silent,
            });
            self.disconnect(now, peer);
            let hello = ParsedHello {
                nonce: pending.nonce,
                proofs: pending.proofs,
                max_frame: pending.max_frame,
                resume: pending.resume,
            };
            if let Some(p) = self.peer_mut(peer) {
                p.pending = None;
            }
            self.admit(now, pending.link, peer, &hello);
        }
        self.recount_probes();
        // At most 64 peers per call, so every goodbye fits its queue. The first drop aborts
        // the interval; peers late beyond these 64 meet the timeouts of the next one.
        let mut late: Vec<PeerId, 64> = Vec::new();
        match self.phase {
            Phase::Opening { ready, since, .. } if now >= since + self.cfg.exchange_timeout => {
                for t in 0..self.cfg.trustees {
                    if ready & (1 << t) == 0 {
                        let _ = late.push(PeerId::Trustee(t));
                    }
                }
            }
            Phase::Starting {
                interval,
                acked,
                got,
                members,
                since,
                ..
            } if now >= since + self.cfg.exchange_timeout => {
                if acked < members {
                    let n = usize::from(self.cfg.clients);
                    let peers = self.peers.as_ref();
                    for i in Bits::new_checked(self.online_bits(), n)
                        .into_iter()
                        .flat_map(|b| b.iter())
                    {
                        if peers[i].acked != Some(interval)
                            && late.push(PeerId::Client(i as u16)).is_err()
                        {
                            break;
                        }
                    }
                } else {
                    for t in 0..self.cfg.trustees {
                        if got[usize::from(t)] != members {
                            let _ = late.push(PeerId::Trustee(t));
                        }
                    }
                }
            }
            Phase::Running(r) if r.done < r.next && !matches!(r.stop, Some(Stop::Abort { .. })) => {
                let idx = (r.done % u64::from(self.cfg.window)) as usize;
                let s = self.meta[idx];
                if now >= s.issued + self.cfg.exchange_timeout {
                    for t in 0..self.cfg.trustees {
                        if s.trustees & (1 << t) == 0 {
                            let _ = late.push(PeerId::Trustee(t));
                        }
                    }
                    let nb = bitmap_len(usize::from(self.cfg.clients));
                    let c = self.regions.online + idx * nb;
                    let contrib = &self.store.as_ref()[c..c + nb];
                    let online = self.online_bits();
                    for i in Bits::new_checked(online, usize::from(self.cfg.clients))
                        .into_iter()
                        .flat_map(|b| b.iter())
                    {
                        if !bits::test(contrib, i) && late.push(PeerId::Client(i as u16)).is_err() {
                            break;
                        }
                    }
                }
            }
            _ => {}
        }
        for peer in late {
            self.drop_peer(now, peer, GoodbyeReason::Timeout);
        }
        self.advance(now);
    }

    fn peer_id(&self, i: usize) -> PeerId {
        let n = usize::from(self.cfg.clients);
        if i < n {
            PeerId::Client(i as u16)
        } else {
            PeerId::Trustee((i - n) as u16)
        }
    }
}

/// A per-member list sent to each trustee in chunks (`Members`, `Acks`).
struct Column {
    interval: u32,
    members: u32,
    /// Bytes per member.
    entry: usize,
    /// Most entries per frame.
    chunk: usize,
    /// The message, for an interval and the position of its first entry.
    prefix: fn(u32, u32) -> Prefix,
}

/// A checked Hello's fields the relay keeps.
#[derive(Debug, Clone, Copy)]
struct ParsedHello {
    nonce: [u8; NONCE_LEN],
    proofs: [[u8; MAC_LEN]; MAX_TRUSTEES],
    max_frame: u32,
    resume: Option<Resume>,
}

impl<P, B> core::fmt::Debug for Relay<P, B> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Relay")
            .field("phase", &self.phase)
            .finish_non_exhaustive()
    }
}
