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
//! 5. While [`Relay::replay_waiting`] names a link, report how many more frames its send
//!    queue takes with [`Relay::handle_link_room`] (now, and whenever the queue drains),
//!    and go to 3: replays to a member go out only as fast as its link takes them.
//!
//! An interval runs over the clients connected when it opens: `IntervalOpen` and `Members`
//! to the trustees, their `IntervalReady`, one `IntervalStart` to trustees and members alike,
//! the trustees' confirmations, then to each member its `Confirmed` and any downstream
//! records it missed, then exchanges. Clients joining make the relay finish the exchanges in
//! flight and open a new interval (after `join_delay`, so joiners are batched); a member
//! leaving ends the interval at once. Slot owners resend cells of abandoned exchanges, so
//! nothing that was sent is lost.
//!
//! Every capacity that grows with the group is in [`RelayStorage`], one region per field,
//! provided by the caller and sized by [`RelayConfig::storage_lens`].
//!
//! Files, one concern each: `config.rs` (parameters), `storage.rs` (the caller's storage),
//! `peers.rs` (hellos, admission, probes, goodbyes), `interval.rs` (the phases of an
//! interval), `setup.rs` (an interval's set-up), `exchange.rs` (requests and cells),
//! `decode.rs` (decoding and events), `events.rs` (what is reported to the shell),
//! `outputs.rs` (decoded outputs waiting to be reported), `blame.rs` (nodes convicted in
//! blame rounds, excluded), `log.rs` (the downstream log and replays), `losses.rs` (members
//! that lost their connections, and what each holds between intervals), `stall.rs`
//! (penalties, back-off, the straggler cutoff and the refusal list), `timers.rs` (deadlines,
//! timeouts and pacing). This file holds the state and the entry points; the logic of each
//! concern stays in its file. No file here reads a clock, a socket or an RNG.

use heapless::Deque;

use crate::bits::{bitmap_len, Bits};
pub use crate::error::{CellError, ConfigError, HelloError, IntervalError, PeerError};
use crate::time::{Duration, Instant};
use crate::wire::{GoodbyeReason, IntervalRecord, Kind, Message, Params, WireError, MAX_HISTORY};
use crate::{MAX_TRUSTEES, MAX_WINDOW, NONCE_LEN};

mod blame;
mod config;
mod decode;
mod events;
mod exchange;
mod fingerprints;
mod interval;
mod log;
mod losses;
mod outputs;
mod peers;
#[cfg(feature = "blame-round")]
mod round;
mod setup;
mod slots;
mod stall;
mod storage;
mod timers;
mod traps;

use blame::Convicted;
pub use config::{min_node_frame, RelayConfig};
use decode::Decoding;
pub use events::{BlameDropReason, RelayEvent};
use exchange::Window;
pub use exchange::{DownChunk, Downstream, NoDownstream};
use interval::{Columns, PendingClientRequest, Phase, Replaying, Running, Stop};
use log::DownstreamLog;
use outputs::OutputQueue;
pub use peers::Peer;
use slots::Slots;
use stall::Quorums;
pub use stall::{quorum, Exclusion, Stall, StallConfig, Standing};
pub use storage::{RelayStorage, RelayStorageLens};

/// Blame rounds parked at once, at most (each waits for members away at its deadline):
/// one more to park makes the oldest give up ([`RelayEvent::BlameGaveUp`]).
pub const MAX_PARKED: usize = 4;

/// Places of rounds in the blame region ([`RelayStorage::blame`]): the running round's, one
/// per parked round, and the one holding the evidence of the round that ended last.
pub(crate) const BLAME_PLACES: usize = MAX_PARKED + 2;

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

/// How a probe of a connected peer ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeOutcome {
    /// The connected process answered: it stays, and the newcomer was refused.
    Answered,
    /// The connected process did not answer in time: the newcomer replaced it.
    Silent,
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

/// Relay state machine.
pub struct Relay<P, B> {
    cfg: RelayConfig,
    /// Every client, then every trustee ([`RelayStorage::peers`]).
    peers: P,
    /// The clients connected now, a bitmap.
    connected: B,
    /// The running interval's online set, a bitmap.
    online: B,
    /// The members of the interval being started that lost their connections, a bitmap.
    lost: B,
    /// The exchanges in flight.
    window: Window<B>,
    /// The schedule's table of reserved slots.
    schedule: B,
    /// Outputs of decoded exchanges not yet reported.
    outputs: OutputQueue<B>,
    /// The outputs of the request being sent.
    request_outputs: B,
    /// The downstream bytes of the request being sent.
    downstream: B,
    /// Every downstream record, for clients that reconnect.
    log: DownstreamLog<B>,
    /// Each slot's pseudonym key, cell key and counters.
    slots: Slots<B>,
    /// The relay's Ristretto255 DH secret, from which each slot's cell key is derived.
    dh: Option<crate::ristretto::keys::SecretKey>,
    /// The running interval's trap secret and announced point (`traps.rs`).
    trap: Option<traps::IntervalTrap>,
    /// The trap bytes of the owned cell being decoded, drawn once ([`RelayStorage::traps`]).
    traps: B,
    /// The running interval's view (`T_start`), which owners' cells bind.
    view: [u8; 32],
    /// Disrupted exchanges whose decoded cell still has to go to every member (before
    /// any further request: their cells stay in the window until then), and before the
    /// interval ends: its history counts them decoded, so an owner never told would take
    /// its cell for delivered and never send its bytes again.
    disrupted: Deque<u64, { 2 * MAX_WINDOW }>,
    /// Which of the 64 exchanges below the running interval's `done` decoded disrupted
    /// (bit `k`: exchange `done − 1 − k`), for its history record.
    disrupted_recent: u64,
    /// The fingerprints of the latest disrupted exchanges: what an accusation may be
    /// about.
    kept: fingerprints::Fingerprints<B>,
    /// The secret the fingerprints are keyed with (the shell's randomness); none: the
    /// relay commits to nothing and takes no accusation.
    fingerprint_secret: Option<[u8; 32]>,
    /// Valid accusations (interval, exchange, bit) not yet taken up by a blame round.
    accused: Deque<(u32, u64, u32), 8>,
    nonces: [[u8; NONCE_LEN]; MAX_TRUSTEES],
    /// Trustees connected now, one bit each.
    trustees: u32,
    all_trustees: u32,
    connected_clients: usize,
    phase: Phase,
    params: Params,
    next_interval: u32,
    history: Deque<IntervalRecord, MAX_HISTORY>,
    events: Deque<RelayEvent<'static>, 256>,
    goodbyes: Deque<(LinkId, GoodbyeReason), 256>,
    /// After [`Relay::shutdown`]: the next peer to say goodbye to.
    shutdown_position: Option<usize>,
    /// What [`Relay::shutdown`] tells every node.
    shutdown_reason: GoodbyeReason,
    /// After [`Relay::drain`]: no new interval opens.
    draining: bool,
    /// Kinds of issued exchanges whose outputs were not reported yet, oldest first.
    unreported: Deque<Kind, { 2 * MAX_WINDOW }>,
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
    /// The pause before the next exchange of an idle net.
    gap: Duration,
    last_issue: Instant,
    probe_counter: u64,
    stale_cells: u64,
    decoded: u64,
    /// When quorums of members answered, for the straggler cutoff.
    quorums: Quorums,
    /// Trustees convicted in blame rounds, and the verdicts still to announce (`blame.rs`).
    convicted: Convicted,
    /// The blame rounds (`round.rs`).
    #[cfg(feature = "blame-round")]
    rounds: round::Rounds<B>,
}

impl<P, B> Relay<P, B>
where
    P: AsMut<[Peer]> + AsRef<[Peer]>,
    B: AsMut<[u8]> + AsRef<[u8]>,
{
    /// Creates a relay in `storage`, each of whose regions holds at least what
    /// [`RelayConfig::storage_lens`] says.
    pub fn new(cfg: RelayConfig, storage: RelayStorage<P, B>) -> Result<Self, ConfigError> {
        cfg.check()?;
        storage.check(&cfg.storage_lens())?;
        let RelayStorage {
            mut peers,
            mut connected,
            mut online,
            mut lost,
            arrived,
            accumulators,
            schedule,
            outputs,
            request_outputs,
            downstream,
            log,
            slots,
            fingerprints,
            kept_fingerprints,
            traps,
            blame,
        } = storage;
        #[cfg(not(feature = "blame-round"))]
        let _ = blame;
        let members = bitmap_len(usize::from(cfg.clients));
        peers.as_mut().fill(Peer::EMPTY);
        connected.as_mut().fill(0);
        online.as_mut().fill(0);
        lost.as_mut().fill(0);
        Ok(Relay {
            peers,
            connected,
            online,
            lost,
            window: Window::new(
                cfg.window,
                arrived,
                members,
                accumulators,
                cfg.max_exchange_len(),
                fingerprints,
                cfg.fingerprint_row(),
            ),
            schedule,
            outputs: OutputQueue::new(outputs, 2 * usize::from(cfg.window), cfg.output_stride()),
            request_outputs,
            downstream,
            log: DownstreamLog::new(log, &cfg.epoch),
            slots: Slots::new(slots),
            dh: None,
            trap: None,
            traps,
            view: [0; 32],
            disrupted: Deque::new(),
            kept: fingerprints::Fingerprints::new(
                kept_fingerprints,
                usize::from(cfg.clients) + usize::from(cfg.trustees),
                cfg.kept_fingerprint_rows(),
            ),
            fingerprint_secret: None,
            accused: Deque::new(),
            nonces: [[0; NONCE_LEN]; MAX_TRUSTEES],
            trustees: 0,
            // trustees <= MAX_TRUSTEES = 16, so the shift cannot overflow.
            all_trustees: (1u32 << cfg.trustees) - 1,
            connected_clients: 0,
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
            disrupted_recent: 0,
            events: Deque::new(),
            goodbyes: Deque::new(),
            shutdown_position: None,
            shutdown_reason: GoodbyeReason::ShuttingDown,
            draining: false,
            unreported: Deque::new(),
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
            quorums: Quorums::NEW,
            convicted: Convicted::default(),
            #[cfg(feature = "blame-round")]
            rounds: round::Rounds::new(blame, usize::from(cfg.clients) + usize::from(cfg.trustees)),
            cfg,
        })
    }

    /// Sets the relay's Ristretto255 DH secret (32 bytes, read as a pad secret is), which
    /// with each slot's pseudonym public key gives the key the slot's cells are sealed
    /// under (`wire::slot`). Without it no slot delivers anything. `Err` if it is zero.
    pub fn set_dh_secret(&mut self, secret: &[u8; 32]) -> Result<(), ConfigError> {
        let dh = crate::crypto::pad_secret(secret)
            .ok_or(ConfigError::Key(crate::crypto::KeyError::ZeroSecret))?;
        self.dh = Some(dh);
        for slot in 0..self.cfg.slots {
            let key = self.slots.key(slot);
            self.slots.set_key(slot, &key);
        }
        Ok(())
    }

    /// Sets the secret the relay's fingerprints of members' cells are keyed with (32
    /// bytes of the shell's randomness, never sent): from then on it commits to every cell
    /// and takes accusations (`blame::commit`).
    pub fn set_fingerprint_secret(&mut self, secret: &[u8; 32]) {
        self.fingerprint_secret = Some(*secret);
        self.window.forget_keys();
    }

    /// The relay's fingerprint of `node`'s cell of `exchange` of `interval`, if it kept the
    /// exchange's fingerprints (a disrupted exchange of `slot`, or with `slot` `None` a
    /// reservation exchange that showed a request). For the shell's records and tests; it
    /// never goes to a member.
    pub fn kept_fingerprint(
        &self,
        interval: u32,
        exchange: u64,
        slot: Option<u16>,
        node: PeerId,
    ) -> Option<[u8; crate::blame::commit::FINGERPRINT_LEN]> {
        let slot = slot.unwrap_or(fingerprints::RESERVATION);
        let row = self.kept.row(interval, exchange, slot)?;
        let at = match node {
            PeerId::Client(i) => usize::from(i),
            PeerId::Trustee(t) => usize::from(self.cfg.clients) + usize::from(t),
        };
        fingerprints::Fingerprints::<B>::of(row, at)
    }

    /// Whether `cell` is the cell `node` sent for `exchange` of `interval` by the
    /// fingerprint the relay kept (of a disrupted exchange of `slot`, or with `slot` `None`
    /// a reservation exchange): what a blame round checks each reveal against. False if it
    /// kept none.
    pub fn reveal_matches(
        &self,
        interval: u32,
        exchange: u64,
        slot: Option<u16>,
        node: PeerId,
        cell: &[u8],
    ) -> bool {
        let (Some(secret), Some(kept)) = (
            &self.fingerprint_secret,
            self.kept_fingerprint(interval, exchange, slot, node),
        ) else {
            return false;
        };
        let key = crate::blame::commit::ExchangeKey::new(secret, interval, exchange);
        key.fingerprint(cell) == kept
    }

    /// Sets the pseudonym public key of `slot`, whose DH with the relay's key gives the
    /// key every cell of the slot must be sealed under. A slot without one delivers
    /// nothing. `Err` if there is no such slot.
    pub fn set_pseudonym(&mut self, slot: u16, key: &[u8; 32]) -> Result<(), ConfigError> {
        if slot < self.cfg.slots && self.slots.set_key(slot, key) {
            Ok(())
        } else {
            Err(ConfigError::Counts)
        }
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
        let peers = self.peers.as_ref();
        let link = move |i: usize| peers.get(i).and_then(|p| p.link);
        let t = (0..usize::from(self.cfg.trustees))
            .filter(move |_| trustees)
            .filter_map(move |j| link(n + j));
        let m = Bits::new_checked(self.online_bits(), n)
            .ok()
            .filter(|_| members)
            .into_iter()
            .flat_map(|b| b.iter())
            .filter_map(link);
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
        self.connected_clients
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
                        connected: self.connected_clients,
                        needed: usize::from(self.cfg.min_clients.max(1)),
                    }
                }
            }
            _ => Waiting::SettingUp,
        }
    }

    /// The link whose member is owed replays and waits for room on it: the shell reports
    /// the room with [`Relay::handle_link_room`] once the link's send queue has some.
    pub fn replay_waiting(&self) -> Option<LinkId> {
        let Phase::Confirming {
            replay: Some(r), ..
        } = self.phase
        else {
            return None;
        };
        self.peers
            .as_ref()
            .get(usize::from(r.client))
            .filter(|p| p.room == 0)
            .and_then(|p| p.link)
    }

    /// The shell can queue `frames` more frames on `link` now. Replays go out only while a
    /// link has room beyond [`RelayConfig::link_reserve`] (what the interval's own frames
    /// need once it runs: a window of requests and a few more), so a member that reads
    /// slowly delays the interval instead of overflowing its queue.
    pub fn handle_link_room(&mut self, link: LinkId, frames: usize) {
        let frames = frames.saturating_sub(self.cfg.link_reserve());
        let n = self.cfg.peers_len();
        if let Some(p) = self
            .peers
            .as_mut()
            .iter_mut()
            .take(n)
            .find(|p| p.link == Some(link))
        {
            p.room = frames.min(u32::MAX as usize) as u32;
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
                self.on_probe_reply(peer, nonce);
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
            ) => self.on_confirm(now, t, interval, first, macs),
            (PeerId::Client(i), Message::Ack { interval, macs }) => {
                self.on_ack(i, interval, macs)?;
                self.note_ack(now);
                Ok(())
            }
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
            ) => {
                self.on_cell(peer, interval, exchange, cell)?;
                if matches!(peer, PeerId::Client(_)) {
                    self.note_cell(now, exchange);
                }
                Ok(())
            }
            #[cfg(feature = "blame-round")]
            (
                _,
                Message::BlameReveal {
                    interval,
                    exchange,
                    bit,
                    pad_bits,
                    signature,
                    cell,
                },
            ) => {
                self.on_blame_reveal(
                    now, peer, interval, exchange, bit, pad_bits, signature, cell,
                );
                Ok(())
            }
            #[cfg(feature = "blame-round")]
            (
                _,
                Message::BlameDhProof {
                    interval,
                    exchange,
                    peer: other,
                    secret,
                    proof,
                },
            ) => {
                self.on_blame_dh_proof(now, peer, interval, exchange, other, secret, proof);
                Ok(())
            }
            _ => Err(PeerError::Unexpected),
        }
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
        if let Some(from) = self.shutdown_position {
            return self.transmit_shutdown(from, out);
        }
        if let Some(t) = self.transmit_blamed(out)? {
            return Ok(Some(t));
        }
        #[cfg(feature = "blame-round")]
        if let Some(t) = self.transmit_round(out)? {
            return Ok(Some(t));
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
                if let Some(t) = self.transmit_confirmed(now, out)? {
                    return Ok(Some(t));
                }
            }
            Phase::Running(_) => {}
        }
        // Running (possibly just now, once every member has its confirmation).
        let Phase::Running(mut running) = self.phase else {
            return Ok(None);
        };
        let transmit = self.transmit_running(now, &mut running, out, downstream);
        if let Phase::Running(current) = &mut self.phase {
            *current = running;
        }
        transmit
    }

    /// The running interval's online set, a bitmap over the clients.
    fn online_bits(&self) -> &[u8] {
        let online = self.online.as_ref();
        online
            .get(..bitmap_len(usize::from(self.cfg.clients)))
            .unwrap_or(online)
    }

    /// The clients connected now, a bitmap over the clients.
    fn connected_bits(&mut self) -> &mut [u8] {
        let len = bitmap_len(usize::from(self.cfg.clients));
        let connected = self.connected.as_mut();
        let len = len.min(connected.len());
        connected.split_at_mut(len).0
    }
}

impl<P, B> core::fmt::Debug for Relay<P, B> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Relay")
            .field("phase", &self.phase)
            .finish_non_exhaustive()
    }
}
