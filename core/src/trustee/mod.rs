//! The trustee role: for every exchange, the XOR of its pads with every online client.
//!
//! Call order for one link to the relay:
//!
//! 1. [`Trustee::handle_connected`], then drain [`Trustee::poll_transmit`] (Hello first).
//! 2. For every frame body received: [`Trustee::handle_frame`], then
//!    [`Trustee::poll_event`] until `None`, then [`Trustee::poll_transmit`] until `None`,
//!    sending each frame.
//! 3. [`Trustee::handle_disconnected`] when the link drops.
//!
//! Per interval: `IntervalOpen` and `Members` (each member's link nonce, with its presence
//! proof, which the trustee checks) → `IntervalReady` with a fresh nonce → `IntervalStart`
//! (checked against the open: same online set, our nonce; and its `oldest` against the
//! group's log window) → `Acks` (every member's
//! acknowledgement of the transcript start, which must match this trustee's own) → one
//! confirmation MAC per member over the transcript start → one cell per request, each
//! checked against the schedule.
//!
//! A member whose proof or acknowledgement does not check is named in a `Refuse`; the
//! trustee serves no interval with it and keeps its link.
//!
//! Storage ([`TrusteeStorage`], one region per field, sized by
//! [`TrusteeConfig::storage_lens`]): a key for each client of the group, an interval key
//! for each member, the online set and the schedule table.
//!
//! Files, one concern each: `config.rs` (parameters), `storage.rs` (the caller's storage),
//! `setup.rs` (an interval's set-up), `exchange.rs` (requests and cells), `window.rs`
//! (checkpoints of the downstream log, held against the log window). This file holds
//! the state and the entry points; the logic of each concern stays in its file. No file
//! here reads a clock, a socket or an RNG.

use chacha20::cipher::KeyIvInit;
use chacha20::ChaCha20;
use heapless::Deque;

use crate::crypto::{IntervalKey, PadEngine, PairKey, SerialPads};
pub use crate::error::{ConfigError, IntervalError, PeerError, RequestError};
use crate::time::Instant;
use crate::wire::{self, Hello, Kind, Message, NodeRole, WireError};
use crate::{MAX_WINDOW, NONCE_LEN};

#[cfg(feature = "blame-round")]
mod blame;
mod config;
mod exchange;
#[cfg(feature = "blame-round")]
mod reveal;
mod setup;
mod storage;
mod window;

pub use config::TrusteeConfig;
use exchange::Pending;
use setup::Phase;
pub use storage::{TrusteeStorage, TrusteeStorageLens};
use window::Checkpoints;

/// Things the shell may want to log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TrusteeEvent {
    /// An interval started: every member acknowledged this trustee's view, which it now
    /// confirms to them.
    IntervalStarted {
        /// The interval number.
        interval: u32,
        /// Clients in it.
        clients: usize,
    },
    /// The start claims the relay no longer holds downstream records that the group's log
    /// window says it must: the trustee does not confirm the interval (it keeps its link).
    LogWindow {
        /// The interval.
        interval: u32,
        /// The oldest record the start claims the relay holds.
        oldest: u64,
        /// The newest `oldest` the window allows.
        required: u64,
    },
    /// A dispute's request showed a client's signed reveal contradicting this trustee's pad
    /// bit for the pair (core feature `trustee-dh`): its next frames prove the pair's
    /// Diffie–Hellman secret, which fixes every pad of the pair for the session.
    SecretProven {
        /// The round's interval.
        interval: u32,
        /// The round's exchange.
        exchange: u64,
        /// The client of the pair.
        client: u16,
    },
    /// A member's proof or acknowledgement did not check; the trustee refused the interval.
    Refused {
        /// The interval.
        interval: u32,
        /// The client.
        client: u16,
        /// What did not check.
        what: Refusal,
    },
}

/// What a trustee found wrong with a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// Its presence proof: the relay listed a client that did not open a link with that
    /// nonce.
    Proof,
    /// Its acknowledgement: the client was shown another view than this trustee, or the
    /// relay forged its acknowledgement.
    Ack,
}

impl core::fmt::Display for Refusal {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Refusal::Proof => "its proof of presence does not check",
            Refusal::Ack => "its acknowledgement of the interval's view does not check",
        })
    }
}

/// Trustee state machine.
pub struct Trustee<P, I, B> {
    index: u16,
    trustees: u16,
    group_id: [u8; 16],
    session_id: [u8; 16],
    clients: usize,
    slots: u16,
    cell_len: usize,
    max_reserved: u16,
    max_frame: u32,
    min_clients: u16,
    policy: crate::policy::Policy,
    /// The downstream heads seen, for the log window.
    checkpoints: Checkpoints,
    /// The key shared with each client.
    pairs: P,
    /// The interval's pad key with each member, in member order.
    interval_keys: I,
    /// The interval's online set.
    online: B,
    /// The schedule's table of reserved slots.
    schedule: B,
    rng: ChaCha20,
    phase: Phase,
    hello_pending: bool,
    /// Whether it answers blame rounds' requests (its Hello says so): with core feature
    /// `blame-round`.
    takes_part_in_blame: bool,
    probe_reply: Option<u64>,
    /// A `Refuse` to send: interval and client.
    refusal: Option<(u32, u16)>,
    /// Kinds of issued exchanges whose outputs were not reported yet, oldest first.
    unreported: Deque<Kind, { 2 * MAX_WINDOW }>,
    cells: Deque<Pending, MAX_WINDOW>,
    /// Its last sent cells' pad nonces (`reveal.rs`).
    #[cfg(feature = "blame-round")]
    sent_cells: Deque<Pending, { reveal::ANSWERED }>,
    /// Cells sent since the trustee was made.
    cells_sent: u64,
    event: Option<TrusteeEvent>,
    /// The keys it answers blame rounds with (`blame.rs`).
    #[cfg(feature = "blame-round")]
    blame_keys: Option<blame::BlameKeys<B>>,
    /// Digests its statements sign, and answers to send.
    #[cfg(feature = "blame-round")]
    blame: blame::BlameState,
}

#[cfg(feature = "std")]
impl Trustee<std::vec::Vec<PairKey>, std::vec::Vec<IntervalKey>, std::vec::Vec<u8>> {
    /// A trustee with its keys and storage in `Vec`s sized for the group.
    pub fn with_vecs(config: &TrusteeConfig<'_>) -> Result<Self, ConfigError> {
        Trustee::new(config, TrusteeStorage::with_vecs(config))
    }
}

impl<P, I, B> Trustee<P, I, B>
where
    P: AsMut<[PairKey]> + AsRef<[PairKey]>,
    I: AsMut<[IntervalKey]> + AsRef<[IntervalKey]>,
    B: AsMut<[u8]> + AsRef<[u8]>,
{
    /// Creates a trustee in `storage` (one key agreement per client), each of whose regions
    /// holds at least what [`TrusteeConfig::storage_lens`] says.
    pub fn new(
        config: &TrusteeConfig<'_>,
        storage: TrusteeStorage<P, I, B>,
    ) -> Result<Self, ConfigError> {
        config.check()?;
        storage.check(&config.storage_lens())?;
        let TrusteeStorage {
            mut pairs,
            interval_keys,
            online,
            schedule,
        } = storage;
        let n = config.client_keys.len();
        let pairs_of_group = pairs.as_mut();
        let len = n.min(pairs_of_group.len());
        PairKey::agree_into(
            &config.session_secret,
            config.client_keys,
            false,
            &config.group_id,
            &config.session_id,
            pairs_of_group.split_at_mut(len).0,
        )
        .map_err(ConfigError::Key)?;
        Ok(Trustee {
            index: config.index,
            trustees: config.trustees,
            group_id: config.group_id,
            session_id: config.session_id,
            clients: n,
            slots: config.slots,
            cell_len: config.cell_len,
            max_reserved: config.max_reserved,
            max_frame: config.max_frame,
            min_clients: config.min_clients,
            policy: config.policy,
            checkpoints: Checkpoints::new(),
            pairs,
            interval_keys,
            online,
            schedule,
            rng: ChaCha20::new(&config.rng_seed.into(), &[0u8; 12].into()),
            phase: Phase::Idle,
            hello_pending: false,
            takes_part_in_blame: cfg!(feature = "blame-round"),
            probe_reply: None,
            refusal: None,
            unreported: Deque::new(),
            cells: Deque::new(),
            #[cfg(feature = "blame-round")]
            sent_cells: Deque::new(),
            cells_sent: 0,
            event: None,
            #[cfg(feature = "blame-round")]
            blame_keys: None,
            #[cfg(feature = "blame-round")]
            blame: blame::BlameState::default(),
        })
    }

    /// The current interval, once one runs.
    pub fn interval(&self) -> Option<u32> {
        match self.phase {
            Phase::Running(running) => Some(running.interval),
            _ => None,
        }
    }

    /// The trap point (`R_I`) the running interval's `IntervalStart` announced, which trap
    /// grounds of the interval must carry (`blame::Facts::announced`).
    pub fn trap_point(&self) -> Option<(u32, [u8; 32])> {
        match self.phase {
            Phase::Running(running) => Some((running.interval, running.trap)),
            _ => None,
        }
    }

    /// Tests only (core feature `disruptor`): whether the trustee takes part in blame
    /// rounds. One that does not says so in its next Hello and leaves blame requests
    /// unanswered, as a trustee built without `blame-round` does.
    #[cfg(feature = "disruptor")]
    pub fn set_takes_part_in_blame(&mut self, takes_part: bool) {
        self.takes_part_in_blame = takes_part && cfg!(feature = "blame-round");
    }

    /// The link to the relay is up.
    pub fn handle_connected(&mut self, _now: Instant) {
        self.hello_pending = true;
        self.reset();
    }

    /// The link to the relay is gone.
    pub fn handle_disconnected(&mut self, _now: Instant) {
        self.hello_pending = false;
        self.reset();
    }

    fn reset(&mut self) {
        self.phase = Phase::Idle;
        self.probe_reply = None;
        self.refusal = None;
        self.unreported.clear();
        self.cells.clear();
        // A relay restarted within one interval number numbers its exchanges again: no
        // round on another link is answered from this link's cells, or the other way.
        #[cfg(feature = "blame-round")]
        {
            self.sent_cells.clear();
            self.forget_rounds();
        }
    }

    /// Handles one frame body from the relay.
    pub fn handle_frame(&mut self, now: Instant, body: &[u8]) -> Result<(), PeerError> {
        // Without the blame round, its requests are left unanswered,
        // not refused as malformed: the Hello said so, and the relay ends its rounds
        // without waiting for this trustee's reveal (docs/protocol.md).
        if !self.takes_part_in_blame
            && body
                .first()
                .is_some_and(|v| wire::BLAME_ROUND_VARIANTS.contains(v))
        {
            return Ok(());
        }
        match Message::parse(body)? {
            Message::Goodbye { reason } => Err(PeerError::Goodbye(reason)),
            Message::Probe { nonce } => {
                self.probe_reply = Some(nonce);
                Ok(())
            }
            Message::IntervalOpen { interval, online } => self.on_open(interval, online),
            Message::Members {
                interval,
                first,
                entries,
            } => self.on_members(interval, first, entries),
            Message::IntervalStart(start) => self.on_start(now, body, &start),
            Message::Acks {
                interval,
                first,
                macs,
            } => self.on_acks(interval, first, macs),
            Message::TrusteeRequest(request) => self.on_request(now, &request),
            // The relay's news of an exclusion: nothing for a trustee to do.
            Message::Blamed { .. } => Ok(()),
            #[cfg(feature = "blame-round")]
            Message::BlameRequest {
                interval,
                exchange,
                bit,
                slot,
                grounds,
            } => self.on_blame_request(interval, exchange, bit, slot, grounds),
            #[cfg(feature = "blame-round")]
            #[cfg(feature = "trustee-dh")]
            m @ Message::BlameDhRequest { .. } => {
                if let Some(r) = crate::blame::DhRequest::of(&m) {
                    self.on_blame_dh_request(&r);
                }
                Ok(())
            }
            // Without `trustee-dh` it proves no secret.
            #[cfg(all(feature = "blame-round", not(feature = "trustee-dh")))]
            Message::BlameDhRequest { .. } => Ok(()),
            _ => Err(PeerError::Unexpected),
        }
    }

    /// Next event for the shell.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<TrusteeEvent> {
        self.event.take()
    }

    /// Writes the next frame to send into `out` and returns its length, computing pads on
    /// this thread.
    ///
    /// `out` must hold the largest frame this trustee declared (`max_frame` plus the header).
    pub fn poll_transmit(&mut self, out: &mut [u8]) -> Result<Option<usize>, WireError> {
        self.poll_transmit_with(out, &mut SerialPads)
    }

    /// Like [`Trustee::poll_transmit`], with the pads of each cell computed by `engine`.
    pub fn poll_transmit_with(
        &mut self,
        out: &mut [u8],
        engine: &mut dyn PadEngine,
    ) -> Result<Option<usize>, WireError> {
        if self.hello_pending {
            let n = Message::Hello(Hello {
                version: wire::PROTOCOL_VERSION,
                group_id: self.group_id,
                session_id: self.session_id,
                role: NodeRole::Trustee,
                index: self.index,
                nonce: [0; NONCE_LEN],
                max_frame: self.max_frame,
                capacity: 0,
                resume: None,
                proofs: &[],
                blame: self.takes_part_in_blame,
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
        if let Some((interval, client)) = self.refusal {
            let n = Message::Refuse { interval, client }.emit_frame(out)?;
            self.refusal = None;
            return Ok(Some(n));
        }
        match self.phase {
            Phase::Ready {
                interval,
                members,
                nonce,
                pending: true,
            } => {
                let n = Message::IntervalReady { interval, nonce }.emit_frame(out)?;
                self.phase = Phase::Ready {
                    interval,
                    members,
                    nonce,
                    pending: false,
                };
                return Ok(Some(n));
            }
            Phase::Confirming { .. } => return self.transmit_confirm(out),
            _ => {}
        }
        #[cfg(feature = "blame-round")]
        if let Some(n) = self.transmit_blame(out)? {
            return Ok(Some(n));
        }
        self.transmit_cell(out, engine)
    }

    /// Cells sent since the trustee was made (one per exchange it served).
    pub fn cells_sent(&self) -> u64 {
        self.cells_sent
    }
}

impl<P, I, B> core::fmt::Debug for Trustee<P, I, B> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Trustee")
            .field("index", &self.index)
            .field("phase", &self.phase)
            .finish_non_exhaustive()
    }
}
