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
//! (checked against the open: same online set, our nonce) → `Acks` (every member's
//! acknowledgement of the transcript start, which must match this trustee's own) → one
//! confirmation MAC per member over the transcript start → one cell per request, each
//! checked against the schedule.
//!
//! A member whose proof or acknowledgement does not check is named in a `Refuse`; the
//! trustee serves no interval with it and keeps its link.
//!
//! Storage: `pairs` and `keys` hold one entry per client of the group; `store` holds
//! [`Trustee::storage_len`] bytes (the online set and the schedule table). Nothing is large
//! inline, so a `Trustee` is cheap to move; initialise the storage in place on a device.

use chacha20::cipher::{KeyIvInit, StreamCipher};
use chacha20::ChaCha20;
use heapless::Deque;

use crate::bits::{bitmap_len, Bits};
use crate::crypto::{IntervalKey, PadEngine, PadNonce, PairKey, SerialPads};
pub use crate::error::{ConfigError, IntervalError, PeerError, RequestError};
use crate::schedule::{Deviation, Schedule};
use crate::time::Instant;
use crate::transcript::Transcript;
use crate::wire::{
    self, Hello, IntervalStart, Kind, Message, NodeRole, OutputsView, Prefix, TrusteeRequest,
    WireError, MAX_FRAME_BODY,
};
use crate::{cell_length_ok, MAC_LEN, MAX_CELL_LENGTH, MAX_CLIENTS, MAX_WINDOW, NONCE_LEN};

/// Members confirmed per `Confirm` frame.
const CONFIRM_CHUNK: usize = 2048;

/// Static configuration of a trustee.
#[derive(Debug, Clone, Copy)]
pub struct TrusteeConfig<'a> {
    /// Index of this trustee in the group's trustee list.
    pub index: u16,
    /// Number of trustees in the group.
    pub trustees: u16,
    /// The group id.
    pub group_id: [u8; 16],
    /// The session id.
    pub session_id: [u8; 16],
    /// This trustee's session secret key.
    pub session_secret: [u8; 32],
    /// Every client's session public key, in client order.
    pub client_keys: &'a [[u8; 32]],
    /// Number of pseudonym slots.
    pub slots: u16,
    /// The group's base cell length.
    pub cell_len: usize,
    /// Most slots the schedule table can hold (the relay must not announce more).
    pub max_reserved: u16,
    /// Largest frame this trustee receives or builds (declared in its Hello).
    pub max_frame: u32,
    /// Fresh randomness from the platform, used for per-interval nonces.
    pub rng_seed: [u8; 32],
    /// Smallest online set this trustee serves: below it, the few clients online would be
    /// easy to tell apart, so the trustee refuses the interval whatever the relay wants.
    pub min_clients: u16,
}

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

#[derive(Debug, Clone, Copy)]
enum Phase {
    Idle,
    /// Receiving members; `scan` is the next online-set position to look at.
    Opening {
        interval: u32,
        members: u32,
        got: u32,
        scan: usize,
        nonce: [u8; NONCE_LEN],
    },
    /// `IntervalReady` sent (or pending), waiting for the start.
    Ready {
        interval: u32,
        members: u32,
        nonce: [u8; NONCE_LEN],
        pending: bool,
    },
    /// Checking every member's acknowledgement of `view`.
    Acking {
        interval: u32,
        members: u32,
        got: u32,
        scan: usize,
        view: [u8; 32],
        running: Running,
    },
    /// Emitting confirmations.
    Confirming {
        interval: u32,
        members: u32,
        sent: u32,
        scan: usize,
        view: [u8; 32],
        running: Running,
    },
    Running(Running),
}

#[derive(Debug, Clone, Copy)]
struct Running {
    interval: u32,
    members: u32,
    next_exchange: u64,
    transcript: Transcript,
    schedule: Schedule,
}

#[derive(Debug, Clone, Copy)]
struct Pending {
    interval: u32,
    exchange: u64,
    len: usize,
    nonce: PadNonce,
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
    pairs: P,
    keys: I,
    store: B,
    rng: ChaCha20,
    phase: Phase,
    hello_pending: bool,
    probe_reply: Option<u64>,
    /// A `Refuse` to send: interval and client.
    refusal: Option<(u32, u16)>,
    /// Kinds of issued exchanges whose outputs were not reported yet, oldest first.
    unreported: Deque<Kind, { 2 * MAX_WINDOW }>,
    cells: Deque<Pending, MAX_WINDOW>,
    /// Cells sent since the trustee was made.
    cells_sent: u64,
    event: Option<TrusteeEvent>,
}

#[cfg(feature = "std")]
impl Trustee<std::vec::Vec<PairKey>, std::vec::Vec<IntervalKey>, std::vec::Vec<u8>> {
    /// A trustee with its keys and storage in `Vec`s sized for the group.
    pub fn with_vecs(config: &TrusteeConfig<'_>) -> Result<Self, ConfigError> {
        let n = config.client_keys.len();
        Trustee::new(
            config,
            std::vec![PairKey::EMPTY; n],
            std::vec![IntervalKey::EMPTY; n],
            std::vec![0u8; Self::storage_len(config)],
        )
    }
}

impl<P, I, B> Trustee<P, I, B>
where
    P: AsMut<[PairKey]> + AsRef<[PairKey]>,
    I: AsMut<[IntervalKey]> + AsRef<[IntervalKey]>,
    B: AsMut<[u8]> + AsRef<[u8]>,
{
    /// Bytes of `store` a trustee of this configuration needs.
    pub const fn storage_len(config: &TrusteeConfig<'_>) -> usize {
        bitmap_len(config.client_keys.len()) + Schedule::table_len(config.max_reserved)
    }

    /// Creates a trustee (one key agreement per client); `pairs` and `keys` need an entry
    /// per client.
    pub fn new(
        config: &TrusteeConfig<'_>,
        mut pairs: P,
        keys: I,
        store: B,
    ) -> Result<Self, ConfigError> {
        if !cell_length_ok(config.cell_len) {
            return Err(ConfigError::CellLength);
        }
        let n = config.client_keys.len();
        if n == 0
            || n > MAX_CLIENTS
            || config.slots == 0
            || config.trustees == 0
            || config.index >= config.trustees
        {
            return Err(ConfigError::Counts);
        }
        let limit = config.max_frame as usize;
        if !(wire::MIN_FRAME_LIMIT..=MAX_FRAME_BODY).contains(&limit) {
            return Err(ConfigError::FrameLimit);
        }
        if pairs.as_ref().len() < n
            || keys.as_ref().len() < n
            || store.as_ref().len() < Self::storage_len(config)
        {
            return Err(ConfigError::StorageTooSmall("storage"));
        }
        PairKey::agree_into(
            &config.session_secret,
            config.client_keys,
            false,
            &config.group_id,
            &config.session_id,
            &mut pairs.as_mut()[..n],
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
            pairs,
            keys,
            store,
            rng: ChaCha20::new(&config.rng_seed.into(), &[0u8; 12].into()),
            phase: Phase::Idle,
            hello_pending: false,
            probe_reply: None,
            refusal: None,
            unreported: Deque::new(),
            cells: Deque::new(),
            cells_sent: 0,
            event: None,
        })
    }

    /// The current interval, once one runs.
    pub fn interval(&self) -> Option<u32> {
        match self.phase {
            Phase::Running(r) => Some(r.interval),
            _ => None,
        }
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
    }

    fn online_len(&self) -> usize {
        bitmap_len(self.clients)
    }

    /// Handles one frame body from the relay.
    pub fn handle_frame(&mut self, _now: Instant, body: &[u8]) -> Result<(), PeerError> {
        match Message::parse(body)? {
            Message::Goodbye { reason } => Err(PeerError::Goodbye(reason)),
            Message::Probe { nonce } => {
                self.probe_reply = Some(nonce);
                Ok(())
            }
            Message::IntervalOpen { interval, online } => {
                self.reset();
                let set = Bits::new_checked(online, self.clients)
                    .map_err(|_| PeerError::Interval(IntervalError::OnlineSet))?;
                let members = set.count();
                if members == 0 {
                    return Err(PeerError::Interval(IntervalError::OnlineSet));
                }
                if members < usize::from(self.min_clients) {
                    return Err(PeerError::Interval(IntervalError::TooFewClients {
                        online: members,
                        min: self.min_clients,
                    }));
                }
                let len = self.online_len();
                self.store.as_mut()[..len].copy_from_slice(online);
                let mut nonce = [0u8; NONCE_LEN];
                // The keystream of one seed lasts 256 GiB: 2^34 intervals.
                self.rng.apply_keystream(&mut nonce);
                self.phase = Phase::Opening {
                    interval,
                    members: members as u32,
                    got: 0,
                    scan: 0,
                    nonce,
                };
                Ok(())
            }
            Message::Members {
                interval,
                first,
                entries,
            } => self.handle_members(interval, first, entries),
            Message::IntervalStart(IntervalStart {
                interval,
                online,
                nonces,
                window,
                params,
                ..
            }) => {
                let Phase::Ready {
                    interval: cur,
                    members,
                    nonce,
                    pending: false,
                } = self.phase
                else {
                    return Err(PeerError::Unexpected);
                };
                if interval != cur {
                    return Err(PeerError::Request(RequestError::WrongInterval {
                        current: cur,
                        got: interval,
                    }));
                }
                if online != &self.store.as_ref()[..self.online_len()] {
                    return Err(PeerError::Interval(IntervalError::OnlineSet));
                }
                let own = usize::from(self.index) * NONCE_LEN;
                if nonces.len() != usize::from(self.trustees) * NONCE_LEN
                    || nonces[own..own + NONCE_LEN] != nonce
                {
                    return Err(PeerError::Interval(IntervalError::Parameters));
                }
                if window == 0 || usize::from(window) > MAX_WINDOW {
                    return Err(PeerError::Interval(IntervalError::Parameters));
                }
                self.check_params(&params)?;
                let table = &self.store.as_ref()[self.online_len()..];
                let schedule = Schedule::new(self.slots, &params, table.len())
                    .map_err(|_| IntervalError::Parameters)?;
                let transcript = Transcript::start(body);
                self.phase = Phase::Acking {
                    interval,
                    members,
                    got: 0,
                    scan: 0,
                    view: *transcript.hash(),
                    running: Running {
                        interval,
                        members,
                        next_exchange: 0,
                        transcript,
                        schedule,
                    },
                };
                Ok(())
            }
            Message::Acks {
                interval,
                first,
                macs,
            } => self.handle_acks(interval, first, macs),
            Message::TrusteeRequest(request) => self.handle_request(&request),
            _ => Err(PeerError::Unexpected),
        }
    }

    fn check_params(&self, p: &wire::Params) -> Result<(), PeerError> {
        let longest = (p.max_len as usize).max(bitmap_len(usize::from(self.slots)));
        let ok = p.base_len as usize == self.cell_len
            && p.max_len as usize <= MAX_CELL_LENGTH
            && wire::cell_frame_len(longest) - wire::FRAME_HEADER_LEN <= self.max_frame as usize
            && p.capacity <= self.max_reserved;
        if ok {
            Ok(())
        } else {
            Err(PeerError::Interval(IntervalError::Parameters))
        }
    }

    fn handle_members(
        &mut self,
        interval: u32,
        first: u32,
        entries: &[u8],
    ) -> Result<(), PeerError> {
        let Phase::Opening {
            interval: cur,
            members,
            mut got,
            mut scan,
            nonce,
        } = self.phase
        else {
            return Err(PeerError::Unexpected);
        };
        const ENTRY: usize = NONCE_LEN + MAC_LEN;
        check_chunk((interval, first, entries, ENTRY), (cur, got, members))?;
        for entry in entries.chunks_exact(ENTRY) {
            let client = self.next_member(&mut scan);
            let mut client_nonce = [0u8; NONCE_LEN];
            client_nonce.copy_from_slice(&entry[..NONCE_LEN]);
            let pair = &self.pairs.as_ref()[client];
            if !pair.check_presence(
                &self.group_id,
                &self.session_id,
                client as u16,
                &client_nonce,
                &entry[NONCE_LEN..],
            ) {
                self.refuse(cur, client as u16, Refusal::Proof);
                return Ok(());
            }
            let key = pair.interval_key(cur, &nonce, &client_nonce);
            self.keys.as_mut()[got as usize] = key;
            got += 1;
        }
        self.phase = if got == members {
            Phase::Ready {
                interval: cur,
                members,
                nonce,
                pending: true,
            }
        } else {
            Phase::Opening {
                interval: cur,
                members,
                got,
                scan,
                nonce,
            }
        };
        Ok(())
    }

    /// The next member at or after `scan`, moving `scan` past it. Called only while fewer
    /// than all members were seen, so there is one.
    fn next_member(&self, scan: &mut usize) -> usize {
        let online = &self.store.as_ref()[..self.online_len()];
        let member = crate::bits::next_set(online, *scan, self.clients);
        *scan = member + 1;
        member
    }

    /// Refuses the interval because of `client`: nothing more of it is served.
    fn refuse(&mut self, interval: u32, client: u16, what: Refusal) {
        self.phase = Phase::Idle;
        self.refusal = Some((interval, client));
        self.event = Some(TrusteeEvent::Refused {
            interval,
            client,
            what,
        });
    }

    fn handle_acks(&mut self, interval: u32, first: u32, macs: &[u8]) -> Result<(), PeerError> {
        let Phase::Acking {
            interval: cur,
            members,
            mut got,
            mut scan,
            view,
            running,
        } = self.phase
        else {
            return Err(PeerError::Unexpected);
        };
        check_chunk((interval, first, macs, MAC_LEN), (cur, got, members))?;
        for mac in macs.chunks_exact(MAC_LEN) {
            let client = self.next_member(&mut scan);
            if !self.pairs.as_ref()[client].check_acknowledgement(&view, mac) {
                self.refuse(cur, client as u16, Refusal::Ack);
                return Ok(());
            }
            got += 1;
        }
        self.phase = if got == members {
            self.event = Some(TrusteeEvent::IntervalStarted {
                interval,
                clients: members as usize,
            });
            Phase::Confirming {
                interval,
                members,
                sent: 0,
                scan: 0,
                view,
                running,
            }
        } else {
            Phase::Acking {
                interval,
                members,
                got,
                scan,
                view,
                running,
            }
        };
        Ok(())
    }

    fn handle_request(&mut self, request: &TrusteeRequest<'_>) -> Result<(), PeerError> {
        let TrusteeRequest {
            interval,
            exchange,
            kind,
            outputs,
            ref head,
        } = *request;
        let Phase::Running(mut r) = self.phase else {
            return Err(PeerError::Unexpected);
        };
        if interval != r.interval {
            return Err(PeerError::Request(RequestError::WrongInterval {
                current: r.interval,
                got: interval,
            }));
        }
        if exchange != r.next_exchange {
            return Err(PeerError::Request(RequestError::OutOfOrder {
                expected: r.next_exchange,
                got: exchange,
            }));
        }
        let view = OutputsView::parse(outputs, self.slots)?;
        let split = self.online_len();
        let table = &mut self.store.as_mut()[split..];
        r.schedule
            .follow(table, &mut self.unreported, &view, kind)
            .map_err(|d| match d {
                Deviation::WrongKind => PeerError::Request(RequestError::WrongKind { exchange }),
                Deviation::WindowExceeded => PeerError::Request(RequestError::WindowExceeded),
            })?;
        r.transcript.advance(exchange, kind, outputs, head);
        self.cells
            .push_back(Pending {
                interval,
                exchange,
                len: kind.cell_len(self.slots),
                nonce: r.transcript.pad_nonce(),
            })
            .map_err(|_| PeerError::Request(RequestError::WindowExceeded))?;
        r.next_exchange += 1;
        self.phase = Phase::Running(r);
        Ok(())
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
                resume: None,
                proofs: &[],
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
            Phase::Confirming {
                interval,
                members,
                sent,
                scan,
                view,
                running,
            } => return self.emit_confirm(out, interval, members, sent, scan, view, running),
            _ => {}
        }
        let Some(&cell) = self.cells.front() else {
            return Ok(None);
        };
        let members = match self.phase {
            Phase::Running(r) => r.members as usize,
            _ => 0,
        };
        let p = Prefix::Cell {
            interval: cell.interval,
            exchange: cell.exchange,
        }
        .emit(cell.len, out)?;
        self.cells.pop_front();
        let dst = &mut out[p..p + cell.len];
        dst.fill(0);
        engine.xor_pads(&self.keys.as_ref()[..members], &cell.nonce, dst);
        self.cells_sent += 1;
        Ok(Some(p + cell.len))
    }

    /// Cells sent since the trustee was made (one per exchange it served).
    pub fn cells_sent(&self) -> u64 {
        self.cells_sent
    }

    #[allow(clippy::too_many_arguments)]
    fn emit_confirm(
        &mut self,
        out: &mut [u8],
        interval: u32,
        members: u32,
        sent: u32,
        mut scan: usize,
        view: [u8; 32],
        running: Running,
    ) -> Result<Option<usize>, WireError> {
        let room = out.len().saturating_sub(32) / MAC_LEN;
        let count = ((members - sent) as usize).min(CONFIRM_CHUNK).min(room);
        if count == 0 {
            return Err(WireError::BufferTooSmall);
        }
        let p = Prefix::Confirm {
            interval,
            first: sent,
        }
        .emit(count * MAC_LEN, out)?;
        let online = &self.store.as_ref()[..self.online_len()];
        for mac in out[p..p + count * MAC_LEN].chunks_exact_mut(MAC_LEN) {
            scan = crate::bits::next_set(online, scan, self.clients);
            mac.copy_from_slice(&self.pairs.as_ref()[scan].confirmation(&view));
            scan += 1;
        }
        let n = p + count * MAC_LEN;
        let sent = sent + count as u32;
        self.phase = if sent == members {
            Phase::Running(running)
        } else {
            Phase::Confirming {
                interval,
                members,
                sent,
                scan,
                view,
                running,
            }
        };
        Ok(Some(n))
    }
}

/// Checks that a chunk of a per-member list (`Members`, `Acks`: interval, first position,
/// entries, bytes per entry) continues the current one (interval, entries so far, members).
fn check_chunk(
    (interval, first, data, entry): (u32, u32, &[u8], usize),
    (cur, got, members): (u32, u32, u32),
) -> Result<(), PeerError> {
    if interval != cur
        || first != got
        || data.is_empty()
        || data.len() % entry != 0
        || got as usize + data.len() / entry > members as usize
    {
        return Err(PeerError::Interval(IntervalError::Members));
    }
    Ok(())
}

impl<P, I, B> core::fmt::Debug for Trustee<P, I, B> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Trustee")
            .field("index", &self.index)
            .field("phase", &self.phase)
            .finish_non_exhaustive()
    }
}
