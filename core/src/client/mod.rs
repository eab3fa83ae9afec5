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
//! 3. Whenever the application has new bytes, closes a connection or took downstream
//!    bytes, and [`Client::wants_upstream`] says so: [`Client::prepare`]. Otherwise the
//!    preparation after the next cell (step 2) takes them.
//! 4. [`Client::handle_disconnected`] when the link drops. Connections stay open: after
//!    reconnecting, the client asks for the downstream records it missed, and cells the
//!    relay had not decoded are sent again.
//!
//! **Same work whether owner or not.** A cell is computed the moment its request arrives:
//! copy a plaintext (the prepared one in an owned slot, zeros otherwise), XOR the pads, done.
//! Pulling application bytes, bookkeeping of sent cells and delivering downstream bytes all
//! happen outside that path ([`Client::prepare`], and the shell's delivery after sending).
//!
//! **Only what every member shares decides what a slot does.** The slot transmits only in
//! an interval whose online set holds this client's whole buddy group (`buddies.rs`), and
//! a client that loses its connections (away past the relay's log window, or across a relay
//! restart) is marked lost in a confirmed start, where every client of its buddy group
//! ends its connections too. So whatever a relay does with online sets, links and its log,
//! it learns at most which buddy group an owner is in.
//!
//! **Acting only on a view everyone shares.** The client acknowledges the view it was shown
//! to every trustee ([`Message::Ack`]); a trustee confirms it ([`Message::Confirmed`]) only
//! after every member's acknowledgement matched its own view. Interval parameters (history,
//! downstream head, online set) are acted on only once every trustee has confirmed, so
//! they are the same for every member. Each exchange's cell is keyed by the transcript of
//! everything shown so far, so a relay that shows clients different things later gets noise.
//!
//! Storage ([`ClientStorage`], one region per field, sized by
//! [`ClientConfig::storage_lens`]): the schedule table, the stage (the next owned cell's
//! records), a ring of sent cells not yet confirmed, a buffer for replayed downstream
//! records, the slot's anonymity set and the running interval's online set.
//!
//! Files, one concern each: `config.rs` (parameters), `storage.rs` (the caller's storage),
//! `interval.rs` (an interval's view, confirmed before it is acted on), `request.rs` (the
//! cell of each exchange), `stage.rs` (bytes waiting for the next owned cell), `sent.rs`
//! (sent cells kept until they decoded, and sent again otherwise), `replay.rs` (records
//! missed while away), `buddies.rs` (whether the slot may transmit, its anonymity set). This file holds the state and the entry points; the logic of each
//! concern stays in its file. No file here reads a clock, a socket or an RNG.

use chacha20::cipher::{KeyIvInit, StreamCipher};
use chacha20::ChaCha20;
use heapless::index_map::FnvIndexMap;
use heapless::{Deque, Vec};

use crate::crypto::{IntervalKey, PairKey};
pub use crate::error::{ConfigError, IntervalError, OpenError, PeerError, RequestError};
use crate::policy::Policy;
use crate::time::{Duration, Instant};
use crate::wire::{self, ConnId, Head, Hello, Kind, Message, NodeRole, Resume, WireError};
use crate::{MAC_LEN, MAX_TRUSTEES, MAX_WINDOW, NONCE_LEN};

mod accuse;
pub use accuse::{DEVICE_KEPT, KEPT};
#[cfg(feature = "blame-round")]
mod blame;
mod buddies;
mod config;
#[cfg(feature = "disruptor")]
mod disruptor;
mod interval;
mod replay;
mod request;
mod reveal;
mod seal;
mod sent;
mod stage;
mod storage;

use buddies::AnonymitySet;
use config::max_cell;
pub use config::ClientConfig;
#[cfg(feature = "disruptor")]
pub use disruptor::Mode as DisruptorMode;
use interval::{Phase, Running};
use replay::ReplayBuffer;
pub use reveal::{RevealError, ANSWERED};
use sent::SentRing;
use stage::Stage;
pub use storage::{ClientStorage, ClientStorageLens};

/// Most connections one client has open at once.
pub const MAX_CONNECTIONS: usize = 256;

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
    /// The application finished sending on `conn` (a half-close: it still reads).
    Close {
        /// The connection.
        conn: ConnId,
    },
    /// The application took `bytes` of `conn`'s downstream (it wrote them to its reader):
    /// the client grants them back to the exit as credit ([`crate::credit`]).
    Read {
        /// The connection.
        conn: ConnId,
        /// Bytes taken.
        bytes: u32,
    },
    /// The application is gone from `conn` in both directions (its socket was closed or
    /// reset): the exit drops the connection and nothing more is delivered for it.
    Abort {
        /// The connection.
        conn: ConnId,
    },
}

/// The upstream credit of this client's connections, as [`Client::prepare`] pulls
/// ([`crate::credit::SendCredit`]): how many bytes of each it may stage now.
#[derive(Clone, Copy)]
pub struct SendCredits<'a> {
    connections: &'a FnvIndexMap<ConnId, Conn, MAX_CONNECTIONS>,
}

impl SendCredits<'_> {
    /// Bytes of `conn` the client takes now (0 for a connection it does not have).
    pub fn of(&self, conn: ConnId) -> usize {
        self.connections
            .get(&conn)
            .filter(|c| !c.finished)
            .map_or(0, |c| c.send.available() as usize)
    }
}

impl core::fmt::Debug for SendCredits<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("SendCredits")
    }
}

/// Source of upstream bytes, pulled by [`Client::prepare`].
pub trait Upstream {
    /// Writes the next bytes of some connection into `buf`, or reports a close. A `Data`
    /// chunk for `conn` is at most `credit.of(conn)` bytes: a connection without credit
    /// waits (its application's bytes stay where they are) and others go first. Bytes
    /// beyond the credit are not staged: the client ends the connection
    /// ([`ClientEvent::Lost`]) rather than send them.
    fn next_chunk(&mut self, buf: &mut [u8], credit: SendCredits<'_>) -> Option<Chunk>;
    /// Bytes still waiting after what was pulled (a hint for the next cell's length).
    fn pending(&self) -> usize {
        0
    }
}

/// An [`Upstream`] with nothing to send.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoUpstream;

impl Upstream for NoUpstream {
    fn next_chunk(&mut self, _buf: &mut [u8], _credit: SendCredits<'_>) -> Option<Chunk> {
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
    /// The exit granted `bytes` more upstream credit on `conn` (already added to the
    /// client's, and never above its cap: `bytes` is what was added).
    Grant {
        /// The connection.
        conn: ConnId,
        /// Credit added.
        bytes: u32,
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
    /// A cell this client wrote in its slot was disrupted (it did not decode to what the
    /// client signed): nothing of it reached the exit, and its records, with those of the
    /// client's later cells written before it knew, are sent again in order.
    Disrupted {
        /// The interval.
        interval: u32,
        /// The disrupted exchange.
        exchange: u64,
    },
    /// `conn` ended without a close from the exit: bytes of it were lost for good (the
    /// relay forgot an exchange, or this client or a client of its buddy group was away
    /// longer than the relay's log window). Nothing is sent upstream for it; the exit
    /// closes its side when idle.
    Lost {
        /// The connection.
        conn: ConnId,
    },
    /// A blame round named a node, which the relay excluded.
    Blamed {
        /// The interval of the accused exchange.
        interval: u32,
        /// The accused exchange.
        exchange: u64,
        /// Who the verdict names.
        who: crate::blame::Culprit,
        /// Why.
        kind: crate::blame::BlameKind,
    },
    /// The slot's anonymity set shrank (it transmitted in an interval without some of the
    /// clients of the set): every connection of the slot is hidden among `size` clients.
    AnonymitySet {
        /// Clients in the set.
        size: usize,
    },
}

/// What the client knows of one of its connections.
#[derive(Debug, Clone, Copy, Default)]
struct Conn {
    /// Its OPEN record has been staged.
    announced: bool,
    /// The application finished sending (its close was staged).
    finished: bool,
    /// Downstream bytes the application took, not yet granted back.
    credit: crate::credit::Consumed,
    /// Upstream bytes the client may still stage (the exit's grants).
    send: crate::credit::SendCredit,
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
    policy: Policy,
    /// The anonymity minimum this client applies to its slot (at least the group's).
    min_anonymity: u16,
    linger: Duration,
    /// Connection numbers' randomness: a keystream of its own, so the numbers a slot opens
    /// depend on its application alone, not on how often the relay made the link redial.
    rng: ChaCha20,
    /// Link nonces' randomness (the same seed, another stream).
    link_rng: ChaCha20,
    /// The key shared with each trustee.
    pairs: Vec<PairKey, MAX_TRUSTEES>,
    /// The running interval's pad key with each trustee.
    interval_keys: Vec<IntervalKey, MAX_TRUSTEES>,
    link_nonce: [u8; NONCE_LEN],
    /// Links this client opened (wrapping): what it answered and kept is tagged with the
    /// link, since a relay restarted within one interval number numbers its intervals and
    /// exchanges again.
    link: u32,
    last_interval: Option<u32>,
    phase: Phase,
    hello_pending: bool,
    probe_reply: Option<u64>,
    /// Kinds of issued exchanges whose outputs were not reported yet, oldest first.
    unreported: Deque<Kind, { 2 * MAX_WINDOW }>,
    /// The relay instance whose log this client follows, if any.
    epoch: Option<[u8; 16]>,
    /// Where the client's chain of downstream records stands (what its transcripts hash).
    head: Head,
    /// The last downstream record handed to the application: the resume point. It moves
    /// only past records delivered, so a link lost with records not yet delivered loses
    /// none of them.
    delivered: Head,
    /// The last interval in which this client answered an exchange.
    answered: Option<u32>,
    /// This client lost its connections and its whole buddy group has not been shown so
    /// yet: every start must mark it lost until one with its whole group does.
    loss_pending: bool,
    /// The schedule's table of reserved slots.
    schedule: B,
    stage: Stage<B>,
    sent: SentRing<B>,
    replay: ReplayBuffer<B>,
    anonymity: AnonymitySet<B>,
    /// The online set of the interval shown last.
    online: B,
    /// Bytes the application said were still waiting when the stage was last filled.
    pending_hint: usize,
    /// New upstream bytes are prepared at once ([`Client::wants_upstream`]).
    prompt: bool,
    /// A request was answered since the last [`Client::prepare`].
    answered_since_prepare: bool,
    last_data: Option<Instant>,
    /// The `Next` of this client's last owned cell.
    announced_next: u16,
    connections: FnvIndexMap<ConnId, Conn, MAX_CONNECTIONS>,
    events: Deque<ClientEvent, { MAX_CONNECTIONS + 8 }>,
    /// Coins for reservations after a suppressed one (its own keystream).
    trap_rng: ChaCha20,
    /// The reservation exchange (interval, exchange) in which this client last set its bit.
    asked: Option<(u32, u64)>,
    /// Its last request was suppressed (it set its bit and the output did not show it):
    /// until its slot shows up, it sets its bit with probability 1/2, so a member that
    /// keeps inverting it gives it the slot half the time.
    suppressed: bool,
    /// The `Disrupted` frames of the running interval not yet matched by their output:
    /// the exchange and its digest (a window's worth: every exchange in flight may be
    /// disrupted before the first is reported).
    disrupted: Deque<(u64, [u8; wire::DISRUPTED_DIGEST_LEN]), MAX_WINDOW>,
    /// The seed of the randomness of owned cells' nonces.
    seal_seed: [u8; 32],
    /// Its last answered exchanges: pad nonce and what it wrote (`reveal.rs`).
    answered_ring: Deque<reveal::Answered, { reveal::ANSWERED }>,
    /// The accusation waiting to go out in this client's next owned cells.
    pending: Option<accuse::Pending>,
    /// Reservation exchanges (interval, exchange) in which it set its bit, not yet reported,
    /// and the last one it forgot unreported (a full ring): a request shown at or before it
    /// is never called forged.
    asked_ring: Deque<(u32, u64), { accuse::ASKED }>,
    asked_forgot: Option<(u32, u64)>,
    /// Its pseudonym key, which proves its accusations.
    #[cfg(feature = "pseudonyms")]
    pseudonym: Option<crate::pseudonym::PseudonymKey>,
    /// The randomness of its accusations' proofs.
    #[cfg(feature = "pseudonyms")]
    accuse_rng: rand_chacha::ChaCha20Rng,
    /// How this client misbehaves on purpose, if it does (tests only).
    #[cfg(feature = "disruptor")]
    disruptor: Option<disruptor::Disruptor>,
    /// The slot's cell key and the prepared cells of the next owned exchange.
    sealer: Option<seal::Sealer<B>>,
    /// The keys it answers blame rounds with (`blame.rs`).
    #[cfg(feature = "blame-round")]
    blame_keys: Option<blame::BlameKeys<B>>,
    /// What it holds for blame rounds: decoded cells' hashes, answers to send.
    #[cfg(feature = "blame-round")]
    blame: blame::BlameState,
}

#[cfg(feature = "std")]
impl Client<std::vec::Vec<u8>> {
    /// A client with its storage in `Vec`s sized for `config`.
    pub fn with_vecs(config: &ClientConfig<'_>) -> Result<Self, ConfigError> {
        Client::new(config, ClientStorage::with_vecs(config))
    }
}

impl<B: AsMut<[u8]> + AsRef<[u8]>> Client<B> {
    /// Largest cell a client with frame limit `max_frame` can build.
    pub const fn max_cell(max_frame: u32) -> usize {
        max_cell(max_frame)
    }

    /// Bytes of the storage [`Client::set_pseudonym`] takes for a client with frame limit
    /// `max_frame` (its two prepared cells and the owned cells it keeps), for a shell that
    /// sizes it at compile time; [`Client::sealed_len`] is what one client needs.
    pub const fn sealed_len_for(max_frame: u32) -> usize {
        Self::sealed_len_keeping(max_frame, accuse::KEPT)
    }

    /// Like [`Client::sealed_len_for`], keeping `keep` owned cells (at most
    /// [`Client::sealed_len_for`]'s): a device's storage. An owner keeping fewer than the
    /// keep horizon of an interval's window ([`crate::blame::keep_horizon`]) refuses the
    /// interval.
    pub const fn sealed_len_keeping(max_frame: u32, keep: usize) -> usize {
        Self::sealed_len_at(max_cell(max_frame), keep)
    }

    /// Bytes of the storage [`Client::set_pseudonym`] takes to keep `keep` owned cells
    /// beside its two prepared ones in a group whose longest cell is `max_len` bytes (an
    /// interval with longer cells keeps fewer).
    pub const fn sealed_len_at(max_len: usize, keep: usize) -> usize {
        (2 + keep) * max_len
    }

    /// Creates a client in `storage`, each of whose regions holds at least what
    /// [`ClientConfig::storage_lens`] says.
    pub fn new(config: &ClientConfig<'_>, storage: ClientStorage<B>) -> Result<Self, ConfigError> {
        config.check()?;
        storage.check(&config.storage_lens())?;
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
        let ClientStorage {
            schedule,
            stage,
            sent,
            replay,
            anonymity,
            mut online,
        } = storage;
        online.as_mut().fill(0);
        let genesis = Head {
            seq: 0,
            bytes: 0,
            hash: [0; 32],
        };
        Ok(Client {
            index: config.index,
            clients: config.clients,
            group_id: config.group_id,
            session_id: config.session_id,
            slot: config.slot,
            slots: config.slots,
            cell_len: config.cell_len,
            max_cell: max_cell(config.max_frame),
            max_frame: config.max_frame,
            max_reserved: config.max_reserved,
            min_clients: config.min_clients,
            policy: config.policy,
            min_anonymity: config.anonymity_minimum(),
            linger: config.linger,
            rng: ChaCha20::new(&config.rng_seed.into(), &[0u8; 12].into()),
            link_rng: ChaCha20::new(&config.rng_seed.into(), &[1u8; 12].into()),
            pairs,
            interval_keys: Vec::new(),
            link_nonce: [0; NONCE_LEN],
            link: 0,
            last_interval: None,
            phase: Phase::Disconnected,
            hello_pending: false,
            probe_reply: None,
            unreported: Deque::new(),
            epoch: None,
            head: genesis,
            delivered: genesis,
            answered: None,
            loss_pending: false,
            schedule,
            stage: Stage::new(stage),
            sent: SentRing::new(sent),
            replay: ReplayBuffer::new(replay),
            anonymity: AnonymitySet::new(anonymity, usize::from(config.clients)),
            online,
            pending_hint: 0,
            prompt: true,
            answered_since_prepare: false,
            last_data: None,
            announced_next: 0,
            connections: FnvIndexMap::new(),
            events: Deque::new(),
            trap_rng: ChaCha20::new(&config.rng_seed.into(), &[2u8; 12].into()),
            asked: None,
            suppressed: false,
            disrupted: Deque::new(),
            seal_seed: {
                use sha2::{Digest, Sha256};
                Sha256::new()
                    .chain_update(b"dissent-rs v3 seal rng")
                    .chain_update(config.rng_seed)
                    .finalize()
                    .into()
            },
            answered_ring: Deque::new(),
            pending: None,
            asked_ring: Deque::new(),
            asked_forgot: None,
            #[cfg(feature = "pseudonyms")]
            pseudonym: None,
            #[cfg(feature = "pseudonyms")]
            accuse_rng: {
                use rand_core::SeedableRng;
                use sha2::{Digest, Sha256};
                rand_chacha::ChaCha20Rng::from_seed(
                    Sha256::new()
                        .chain_update(b"dissent-rs v3 accusation rng")
                        .chain_update(config.rng_seed)
                        .finalize()
                        .into(),
                )
            },
            #[cfg(feature = "disruptor")]
            disruptor: None,
            sealer: None,
            #[cfg(feature = "blame-round")]
            blame_keys: None,
            #[cfg(feature = "blame-round")]
            blame: blame::BlameState::default(),
        })
    }

    /// Makes this client misbehave on purpose as `mode` says (tests only).
    #[cfg(feature = "disruptor")]
    pub fn set_disruptor(&mut self, mode: Option<DisruptorMode>) {
        self.disruptor = mode.map(|m| disruptor::Disruptor::new(m, &self.seal_seed));
    }

    /// Whether this client answers late on purpose (`DisruptorMode::Slow`): the shell
    /// delays its cells.
    pub fn disrupts_slowly(&self) -> bool {
        #[cfg(feature = "disruptor")]
        if let Some(d) = &self.disruptor {
            return d.mode == DisruptorMode::Slow;
        }
        false
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

    /// The trap point (`R_I`) the running interval's `IntervalStart` announced, which trap
    /// grounds of the interval must carry (`blame::Facts::announced`).
    pub fn trap_point(&self) -> Option<(u32, [u8; 32])> {
        match &self.phase {
            Phase::Running(r) => Some((r.interval, r.trap)),
            _ => None,
        }
    }

    /// Opens a new connection and returns its Conn# (random low bits, never in use).
    pub fn open(&mut self) -> Result<ConnId, OpenError> {
        if self.connections.len() >= MAX_CONNECTIONS {
            return Err(OpenError::TooManyConnections);
        }
        loop {
            let mut low = [0u8; 2];
            // The keystream of one seed lasts 256 GiB.
            self.rng.apply_keystream(&mut low);
            let conn = ConnId::new(self.slot, u16::from_be_bytes(low));
            if low != [0, 0] && !self.connections.contains_key(&conn) {
                // Capacity checked above.
                let _ = self.connections.insert(conn, Conn::default());
                return Ok(conn);
            }
        }
    }

    /// Adds an exit's upstream grant to `conn`'s credit (never above the cap) and tells the
    /// application what was added; `None` for a connection this client does not have.
    fn take_grant(&mut self, conn: ConnId, bytes: u32) -> Option<Delivery<'static>> {
        let c = self.connections.get_mut(&conn)?;
        let bytes = c.send.grant(bytes);
        Some(Delivery::Grant { conn, bytes })
    }

    /// Upstream bytes `conn` may still stage (0 for a connection this client does not have).
    pub fn send_credit(&self, conn: ConnId) -> u32 {
        self.connections
            .get(&conn)
            .map_or(0, |c| c.send.available())
    }

    /// Whether `conn` is open (in at least one direction).
    pub fn is_open(&self, conn: ConnId) -> bool {
        self.connections.contains_key(&conn)
    }

    /// Number of open connections.
    pub fn connections(&self) -> usize {
        self.connections.len()
    }

    /// The link to the relay is up.
    pub fn handle_connected(&mut self, _now: Instant) {
        // The keystream of one seed lasts 256 GiB: 2^34 links.
        self.link_nonce = [0; NONCE_LEN];
        self.link_rng.apply_keystream(&mut self.link_nonce);
        self.link = self.link.wrapping_add(1);
        self.last_interval = None;
        self.phase = Phase::AwaitStart;
        self.hello_pending = true;
        self.probe_reply = None;
        self.unreported.clear();
        self.interval_keys.clear();
        self.disrupted.clear();
    }

    /// The link to the relay is gone. Connections stay open; cells not yet confirmed are
    /// settled against the history of the next interval, and downstream records not yet
    /// delivered are asked for again.
    pub fn handle_disconnected(&mut self, _now: Instant) {
        // What it needs to answer a blame round about the interval it leaves.
        #[cfg(feature = "blame-round")]
        self.keep_for_blame();
        self.phase = Phase::Disconnected;
        self.head = self.delivered;
        self.hello_pending = false;
        self.probe_reply = None;
        self.unreported.clear();
        self.interval_keys.clear();
        self.replay.clear();
    }

    /// Handles one frame body from the relay. A returned cell (written to `out`, which must
    /// hold a frame of `max_frame` bytes) must be sent before the delivery is acted on.
    pub fn handle_frame<'a>(
        &mut self,
        now: Instant,
        body: &'a [u8],
        out: &mut [u8],
    ) -> Result<Handled<'a>, PeerError> {
        if matches!(self.phase, Phase::Disconnected) {
            return Err(PeerError::Unexpected);
        }
        match Message::parse(body)? {
            Message::Goodbye { reason } => Err(PeerError::Goodbye(reason)),
            Message::Probe { nonce } => {
                self.probe_reply = Some(nonce);
                Ok(Handled::default())
            }
            Message::IntervalStart(start) => {
                self.on_interval_start(body, start)?;
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
            Message::Disrupted {
                interval,
                exchange,
                cell,
            } => {
                let Phase::Running(running) = &self.phase else {
                    // Back on a new link within the interval it left (held by a blame
                    // round): the relay still counts it a member, it runs none.
                    return Ok(Handled::default());
                };
                if running.interval != interval || exchange >= running.next_exchange {
                    return Err(PeerError::Unexpected);
                }
                if self.disrupted.is_full() {
                    self.disrupted.pop_front();
                }
                let digest = wire::disrupted_digest(interval, exchange, cell);
                let _ = self.disrupted.push_back((exchange, digest));
                #[cfg(feature = "blame-round")]
                self.note_decoded(interval, exchange, cell);
                self.on_disrupted_cell(interval, exchange, cell);
                Ok(Handled::default())
            }
            Message::ClientRequest(request) => self.on_request(now, request, out),
            Message::Blamed {
                interval,
                exchange,
                role,
                index,
                kind,
            } => {
                let who = crate::blame::Culprit::from_wire(role, index);
                let kind = crate::blame::BlameKind::from_u8(kind);
                let (Some(who), Some(kind)) = (who, kind) else {
                    return Err(WireError::Malformed.into());
                };
                self.push_event(ClientEvent::Blamed {
                    interval,
                    exchange,
                    who,
                    kind,
                });
                Ok(Handled::default())
            }
            #[cfg(feature = "blame-round")]
            Message::BlameRequest {
                interval,
                exchange,
                bit,
                slot,
                grounds,
            } => {
                self.on_blame_request(interval, exchange, bit, slot, grounds)?;
                Ok(Handled::default())
            }
            #[cfg(feature = "blame-round")]
            m @ Message::BlameDhRequest { .. } => {
                if let Some(r) = crate::blame::DhRequest::of(&m) {
                    self.on_blame_dh_request(&r);
                }
                Ok(Handled::default())
            }
            _ => Err(PeerError::Unexpected),
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
            let capacity = self.replay.capacity().min(u32::MAX as usize) as u32;
            let resume = self.epoch.map(|epoch| Resume {
                epoch,
                seq: self.delivered.seq,
                bytes: self.delivered.bytes,
                interval: self.answered,
                lost: self.loss_pending,
            });
            let block = wire::resume_block(capacity, resume.as_ref());
            let mut proofs = [0u8; MAX_TRUSTEES * MAC_LEN];
            for (pair, p) in self.pairs.iter().zip(proofs.chunks_exact_mut(MAC_LEN)) {
                p.copy_from_slice(&pair.presence_proof(
                    &self.group_id,
                    &self.session_id,
                    self.index,
                    &self.link_nonce,
                    &block,
                ));
            }
            let n = Message::Hello(Hello {
                version: wire::PROTOCOL_VERSION,
                group_id: self.group_id,
                session_id: self.session_id,
                role: NodeRole::Client,
                index: self.index,
                nonce: self.link_nonce,
                max_frame: self.max_frame,
                capacity,
                resume,
                proofs: proofs.get(..self.pairs.len() * MAC_LEN).unwrap_or(&[]),
                // Every client build answers blame requests.
                blame: true,
            })
            .emit_frame(out)?;
            self.hello_pending = false;
            return Ok(Some(n));
        }
        if let Some(nonce) = self.probe_reply {
            let n = Message::ProbeReply { nonce }.emit_frame(out)?;
            self.probe_reply = None;
            return Ok(Some(n));
        }
        #[cfg(feature = "disruptor")]
        let withhold = self
            .disruptor
            .as_ref()
            .is_some_and(|d| d.mode == DisruptorMode::WithholdAck);
        #[cfg(not(feature = "disruptor"))]
        let withhold = false;
        if let Phase::AwaitConfirm {
            acked: acked @ false,
            shown,
        } = &mut self.phase
        {
            if withhold {
                return Ok(None);
            }
            let running = &shown.running;
            let view = running.transcript.hash();
            let mut macs = [0u8; MAX_TRUSTEES * MAC_LEN];
            for (pair, m) in self.pairs.iter().zip(macs.chunks_exact_mut(MAC_LEN)) {
                m.copy_from_slice(&pair.acknowledgement(view));
            }
            let n = Message::Ack {
                interval: running.interval,
                macs: macs.get(..self.pairs.len() * MAC_LEN).unwrap_or(&[]),
            }
            .emit_frame(out)?;
            *acked = true;
            return Ok(Some(n));
        }
        #[cfg(feature = "blame-round")]
        if let Some(n) = self.transmit_blame(out)? {
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
