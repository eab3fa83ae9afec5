//! The relay's peers: links saying hello, admission, probes of a node that says hello
//! twice, links that close (a trustee's is told to the blame rounds, which stop waiting
//! for it: `round.rs`), and goodbyes.
//!
//! Owns the per-node [`Peer`] records and the connected-clients bitmap. It must not touch
//! an interval's state except through `Relay::abort` and `Relay::advance` (a member
//! leaving ends the interval).

use super::{
    Destination, HelloError, HelloOutcome, Instant, LinkId, PeerError, PeerId, Phase, ProbeOutcome,
    Relay, RelayEvent, Standing, Transmit,
};
use crate::bits;
use crate::wire::{
    self, GoodbyeReason, Hello, Message, NodeRole, Resume, WireError, MAX_FRAME_BODY,
    RESUME_BLOCK_LEN,
};
use crate::{MAC_LEN, MAX_TRUSTEES, NONCE_LEN};

/// One node's state at the relay.
#[derive(Debug, Clone, Copy)]
pub struct Peer {
    pub(super) link: Option<LinkId>,
    pub(super) nonce: [u8; NONCE_LEN],
    pub(super) proofs: [[u8; MAC_LEN]; MAX_TRUSTEES],
    /// The client's acknowledgement of the starting interval's view, for each trustee.
    pub(super) acks: [[u8; MAC_LEN]; MAX_TRUSTEES],
    /// The interval `acks` belong to.
    pub(super) acked: Option<u32>,
    pub(super) confirms: [[u8; MAC_LEN]; MAX_TRUSTEES],
    pub(super) max_frame: u32,
    /// Which downstream log the client follows, and how far.
    pub(super) follows: Follows,
    /// The last interval in which the client answered an exchange.
    pub(super) answered: Option<u32>,
    /// The client lost its connections and its buddy group has not all been shown so.
    pub(super) loss_pending: bool,
    /// Bytes of replayed records the client can hold.
    pub(super) capacity: u32,
    /// The resume block of its Hello, which its presence proofs cover.
    pub(super) block: [u8; RESUME_BLOCK_LEN],
    /// Frames the shell says the link can take now (replays wait for room).
    pub(super) room: u32,
    /// A second link that said hello as this peer, waiting for the probe's outcome.
    pub(super) pending: Option<PendingHello>,
    /// When this client connected without being in the running interval.
    pub(super) waiting_since: Option<Instant>,
    /// A member back on a new link within the running interval (one a blame round holds):
    /// this link got none of the interval's frames, so it holds what its Hello said.
    pub(super) rejoined: bool,
    /// Its penalties and place on the refusal list, kept across its reconnects.
    pub(super) standing: Standing,
    /// Whether it answers blame requests (its Hello's `blame`; a trustee's counts).
    pub(super) blame: bool,
}

/// Which downstream log a client follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Follows {
    /// None yet: it has missed nothing, and is never lost.
    Nothing,
    /// Another relay instance's: it is lost.
    OtherEpoch,
    /// This relay's, up to record `seq` and `bytes` data bytes.
    Log { seq: u64, bytes: u64 },
}

/// A second link that said hello as a connected peer, waiting for the probe of the first.
#[derive(Debug, Clone, Copy)]
pub(super) struct PendingHello {
    pub(super) link: LinkId,
    pub(super) hello: ParsedHello,
    /// The probe's nonce.
    pub(super) probe: u64,
    /// When the connected process counts as gone.
    pub(super) deadline: Instant,
    pub(super) probe_sent: bool,
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
        follows: Follows::Nothing,
        answered: None,
        loss_pending: false,
        capacity: 0,
        block: [0; RESUME_BLOCK_LEN],
        room: 0,
        pending: None,
        waiting_since: None,
        rejoined: false,
        standing: Standing::CLEAN,
        blame: false,
    };
}

/// A checked Hello's fields the relay keeps.
#[derive(Debug, Clone, Copy)]
pub(super) struct ParsedHello {
    pub(super) nonce: [u8; NONCE_LEN],
    pub(super) proofs: [[u8; MAC_LEN]; MAX_TRUSTEES],
    pub(super) max_frame: u32,
    pub(super) capacity: u32,
    pub(super) resume: Option<Resume>,
    pub(super) blame: bool,
}

impl<P, B> Relay<P, B>
where
    P: AsMut<[Peer]> + AsRef<[Peer]>,
    B: AsMut<[u8]> + AsRef<[u8]>,
{
    pub(super) fn peer_index(&self, peer: PeerId) -> Option<usize> {
        match peer {
            PeerId::Client(i) if i < self.cfg.clients => Some(usize::from(i)),
            PeerId::Trustee(j) if j < self.cfg.trustees => {
                Some(usize::from(self.cfg.clients) + usize::from(j))
            }
            _ => None,
        }
    }

    pub(super) fn peer(&self, peer: PeerId) -> Option<&Peer> {
        self.peers.as_ref().get(self.peer_index(peer)?)
    }

    pub(super) fn peer_mut(&mut self, peer: PeerId) -> Option<&mut Peer> {
        let i = self.peer_index(peer)?;
        self.peers.as_mut().get_mut(i)
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
            return Err(HelloError::WrongIdentity.into());
        };
        if let Err(e) = self.check_standing(now, peer) {
            let reason = e.reply();
            self.say_goodbye(link, reason);
            self.push_event(RelayEvent::Refused { peer, reason });
            return Err(e);
        }
        if existing.link.is_some() {
            if existing.pending.is_some() {
                self.say_goodbye(link, GoodbyeReason::AlreadyConnected);
                return Err(HelloError::AlreadyConnected.into());
            }
            self.probe_counter = self.probe_counter.wrapping_add(1);
            let probe = self.probe_counter;
            let deadline = now + self.cfg.probe_timeout;
            self.probes = true;
            if let Some(p) = self.peer_mut(peer) {
                p.pending = Some(PendingHello {
                    link,
                    hello,
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

    /// Checks a `Hello` against the group and the link's identity.
    fn check_hello(&self, peer: PeerId, body: &[u8]) -> Result<ParsedHello, PeerError> {
        let Message::Hello(Hello {
            version,
            group_id,
            session_id,
            role,
            index,
            nonce,
            max_frame,
            capacity,
            resume,
            proofs,
            blame,
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
            capacity,
            resume,
            blame,
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
                parsed.capacity = 0;
            }
        }
        Ok(parsed)
    }

    /// The link is now `peer`'s.
    fn admit(&mut self, now: Instant, link: LinkId, peer: PeerId, hello: &ParsedHello) {
        let epoch = self.cfg.epoch;
        let running_member = match (peer, self.phase) {
            (PeerId::Client(i), Phase::Running(_)) => {
                bits::test(self.online_bits(), usize::from(i))
            }
            _ => false,
        };
        // A member that owes a blame round its reveal joins no interval until it answers.
        #[cfg(feature = "blame-round")]
        let owes = matches!(peer, PeerId::Client(i) if self.owes_blame(i));
        #[cfg(not(feature = "blame-round"))]
        let owes = false;
        if let Some(p) = self.peer_mut(peer) {
            p.link = Some(link);
            p.nonce = hello.nonce;
            p.proofs = hello.proofs;
            p.max_frame = hello.max_frame;
            p.follows = match hello.resume {
                None => Follows::Nothing,
                Some(r) if r.epoch != epoch => Follows::OtherEpoch,
                Some(r) => Follows::Log {
                    seq: r.seq,
                    bytes: r.bytes,
                },
            };
            p.answered = hello.resume.and_then(|r| r.interval);
            p.loss_pending = hello.resume.is_some_and(|r| r.lost);
            p.capacity = hello.capacity;
            p.block = wire::resume_block(hello.capacity, hello.resume.as_ref());
            p.room = 0;
            p.pending = None;
            p.waiting_since = (!running_member && !owes).then_some(now);
            p.rejoined = running_member;
            p.blame = hello.blame;
        }
        if !running_member && !owes && matches!(peer, PeerId::Client(_)) {
            let at = now + self.cfg.join_delay;
            self.join_check = Some(self.join_check.map_or(at, |t| t.min(at)));
        }
        match peer {
            PeerId::Client(i) => {
                let connected = self.connected_bits();
                if bits::set(connected, usize::from(i)) {
                    self.connected_clients = bits::count(connected);
                }
            }
            PeerId::Trustee(j) => self.trustees |= 1 << j,
        }
        self.push_event(RelayEvent::Joined { peer });
        #[cfg(feature = "blame-round")]
        if let (PeerId::Client(i), true) = (peer, running_member || owes) {
            // A member back within a blame round about its interval (or one that waits for
            // it) answers it.
            self.blame_rejoined(now, i, hello.resume.is_none());
        }
        if let (PeerId::Trustee(trustee), false) = (peer, hello.blame) {
            self.push_event(RelayEvent::TrusteeWithoutBlame { trustee });
        }
        self.advance(now);
    }

    /// Clears `probes` once no peer has a probe pending (a scan, only when probes end).
    pub(super) fn recount_probes(&mut self) {
        if self.probes {
            let n = self.cfg.peers_len();
            self.probes = self
                .peers
                .as_ref()
                .iter()
                .take(n)
                .any(|p| p.pending.is_some());
        }
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
            self.admit(now, pending.link, peer, &pending.hello);
        }
    }

    /// `peer`'s link is gone; a member's ends the interval.
    pub(super) fn disconnect(&mut self, now: Instant, peer: PeerId) {
        if let Some(p) = self.peer_mut(peer) {
            p.link = None;
            p.waiting_since = None;
        }
        let member = match peer {
            PeerId::Client(i) => {
                let i = usize::from(i);
                let connected = self.connected_bits();
                bits::clear(connected, i);
                self.connected_clients = bits::count(connected);
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
        // A trustee forgets the blame rounds it was asked in with its link.
        #[cfg(feature = "blame-round")]
        if let PeerId::Trustee(j) = peer {
            self.blame_trustee_gone(now, j);
        }
        self.advance(now);
    }

    /// Ends a peer's link with a goodbye (for example one that does not read its link: a
    /// client dropped as [`GoodbyeReason::TooSlow`] is penalized too).
    pub fn drop_peer(&mut self, now: Instant, peer: PeerId, reason: GoodbyeReason) {
        if let Some(link) = self.link_of(peer) {
            if let (PeerId::Client(i), GoodbyeReason::TooSlow) = (peer, reason) {
                let _ = self.add_penalty(now, i, super::Stall::TooSlow);
            }
            self.say_goodbye(link, reason);
            self.push_event(RelayEvent::Dropped { peer, reason });
            self.disconnect(now, peer);
        }
    }

    /// The relay is stopping: every node that said hello (a pending second process too) is
    /// told so and its link closed; nothing else is sent from now on. The shell drains
    /// [`Relay::poll_transmit`] and gives the links a moment to flush before it exits.
    pub fn shutdown(&mut self) {
        self.shutdown_position.get_or_insert(0);
    }

    /// Like [`Relay::shutdown`], with the reason every node is told: `ShuttingDown` when
    /// the relay stops, `Switch` when the epoch ends for a new version of the group.
    pub fn shutdown_for(&mut self, reason: GoodbyeReason) {
        self.shutdown_reason = reason;
        self.shutdown();
    }

    pub(super) fn transmit_shutdown(
        &mut self,
        from: usize,
        out: &mut [u8],
    ) -> Result<Option<Transmit>, WireError> {
        let total = self.cfg.peers_len();
        let mut i = from;
        while let Some(p) = self.peers.as_mut().get_mut(i).filter(|_| i < total) {
            // The peer's own link, then a pending one; each is forgotten once told.
            let link = if let Some(link) = p.link.take() {
                link
            } else if let Some(pending) = p.pending.take() {
                pending.link
            } else {
                i += 1;
                continue;
            };
            self.shutdown_position = Some(i);
            let len = Message::Goodbye {
                reason: self.shutdown_reason,
            }
            .emit_frame(out)?;
            return Ok(Some(Transmit {
                destination: Destination::Link(link),
                len,
                close_after: true,
            }));
        }
        self.shutdown_position = Some(total);
        Ok(None)
    }

    /// A probe to a connected peer that another process said hello as.
    pub(super) fn transmit_probe(&mut self, out: &mut [u8]) -> Result<Option<Transmit>, WireError> {
        // Scans only while some probe may be pending (rare); never per frame otherwise.
        let total = if self.probes { self.cfg.peers_len() } else { 0 };
        for p in self.peers.as_mut().iter_mut().take(total) {
            if let (Some(link), Some(pending)) = (p.link, &mut p.pending) {
                if !pending.probe_sent {
                    let len = Message::Probe {
                        nonce: pending.probe,
                    }
                    .emit_frame(out)?;
                    pending.probe_sent = true;
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

    /// A peer answered a probe: if it is the one under way, the connected process is
    /// alive and the newcomer is refused.
    pub(super) fn on_probe_reply(&mut self, peer: PeerId, nonce: u64) {
        let Some(pending) = self.peer(peer).and_then(|p| p.pending) else {
            return;
        };
        if pending.probe != nonce {
            return;
        }
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

    /// Probes whose deadline passed: the connected process did not answer, so it is gone
    /// and the newcomer takes over.
    pub(super) fn settle_probes(&mut self, now: Instant) {
        let total = if self.probes { self.cfg.peers_len() } else { 0 };
        for i in 0..total {
            let Some(&p) = self.peers.as_ref().get(i) else {
                break;
            };
            let Some(pending) = p.pending else { continue };
            if now < pending.deadline {
                continue;
            }
            let peer = self.peer_id(i);
            if let Some(old) = p.link {
                self.say_goodbye(old, GoodbyeReason::Replaced);
            }
            self.push_event(RelayEvent::Probed {
                peer,
                outcome: ProbeOutcome::Silent,
            });
            self.disconnect(now, peer);
            if let Some(p) = self.peer_mut(peer) {
                p.pending = None;
            }
            self.admit(now, pending.link, peer, &pending.hello);
        }
        self.recount_probes();
    }

    /// The peer of entry `i` of the peer storage.
    fn peer_id(&self, i: usize) -> PeerId {
        let n = usize::from(self.cfg.clients);
        if i < n {
            PeerId::Client(i as u16)
        } else {
            PeerId::Trustee((i - n) as u16)
        }
    }

    /// When the client that has waited longest to join connected.
    pub(super) fn earliest_joiner(&self) -> Option<Instant> {
        let n = usize::from(self.cfg.clients);
        self.peers
            .as_ref()
            .iter()
            .take(n)
            .filter(|p| p.link.is_some())
            .filter_map(|p| p.waiting_since)
            .min()
    }
}
