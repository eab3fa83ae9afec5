//! The relay's blame rounds (core feature `blame-round`): one running at a time, started
//! through [`Relay::start_blame`] (an owner's accusation; the relay's own grounds use the
//! same entry point), up to [`MAX_PARKED`] parked beside it, the next few waiting.
//!
//! A round: `BlameRequest` to every member of the interval and every trustee; each
//! `BlameReveal` is checked (its length, its cell against the kept fingerprint, its
//! identity signature over the statement) and written at its place in the evidence; once
//! every member and every trustee that takes part (its Hello said `blame`) answered, or at
//! the deadline (the exchange timeout), the round ends. A trustee whose link dropped after
//! it was asked (or was down when the request went out) is not waited for: it forgot the
//! round with its link and is not asked again, so nothing it could send would come before
//! the deadline; the round ends as soon as every other answer is in, with the verdict the
//! deadline would give ([`Relay::blame_trustee_gone`]). The end:
//!
//! - a member whose link is down at the deadline (or came back less than the exchange
//!   timeout ago) is not convicted: it owes the round. What the round proves without it
//!   (members that convict themselves, refusers) ends it; otherwise the round *parks*: it
//!   keeps its place in the storage, holds no interval, and every member that owes it
//!   joins no interval ([`Relay::owes_blame`]) until it answers (the round is then judged
//!   with every reveal) or the round gives up (the longest back-off plus one exchange
//!   timeout: no verdict on the absent). A parked round steps aside: the next waiting
//!   round begins at once. When one more would park beyond [`MAX_PARKED`], the one that
//!   parked first gives up ([`RelayEvent::BlameGaveUp`]). A reveal goes to the round
//!   about its exchange, running or parked;
//! - a member that did not answer while connected, or answered what does not check,
//!   refused blame (penalized, then excluded: the relay's own observation); so did a
//!   trustee whose answer does not check; a trustee that did not answer at all is never
//!   convicted for it (one whose Hello did not say `blame` takes no part), and the round
//!   is then inconclusive but for members that convict themselves and refusers (reported
//!   as [`RelayEvent::BlameIncomplete`], counted);
//! - otherwise the verdict is [`crate::blame::judge`]'s; a dispute asks both sides for a
//!   `BlameDhProof`, showing each the other's signed reveal (a member proves a secret only
//!   when shown a reveal that contradicts its own), and the first valid proof settles it
//!   (at the deadline without one, the member refused).
//!
//! Every verdict ends in [`Relay::exclude_convicted`]; the evidence stays in its place
//! until the next round with a verdict ends ([`Relay::evidence`]; at most one ends per
//! call). Exchanges go on during a round. If the interval ends before the deadline, the
//! running round ends with no verdict (its members can no longer recompute its cells); a
//! parked round outlives its interval (its members that owe it kept what they need, and
//! join no other).
//!
//! Storage: the caller's blame region holds every node's keys, then
//! [`super::BLAME_PLACES`] places of one round each (the running one, the parked ones, the
//! last evidence): its answered, refused and resend bitmaps, its pinned fingerprint row and
//! its evidence (`storage.rs` sizes them).
//!
//! Owns the rounds (running and parked), the queue, the blame region and the pad nonces
//! and decoded cells' hashes rounds need. It must not judge (`crate::blame`), decide what
//! is kept (`fingerprints.rs`) or exclude by other means than `blame.rs`.

mod answers;

use heapless::Deque;
use sha2::{Digest, Sha256};

use super::fingerprints::{MAX_KEPT, RESERVATION};
use super::interval::{Phase, Stop};
use super::{
    BlameDropReason, Destination, Instant, Peer, PeerId, Relay, RelayEvent, Stall, Transmit,
    BLAME_PLACES as PLACES, MAX_PARKED,
};
use crate::bits::Bits;
use crate::blame::commit::{ExchangeKey, FINGERPRINT_LEN};
use crate::blame::evidence::Draft;
use crate::blame::{
    cell_hash, grounds_digest, nonces_digest, resolve_dispute, BlameKind, Culprit, DisputeFacts,
    Facts, Finding, Grounds, Header, Round, Statement, MAX_GROUNDS_LEN,
};
use crate::blame::{within_answered, within_horizon};
use crate::crypto::PadNonce;
use crate::error::ConfigError;
use crate::transcript::Transcript;
use crate::wire::{Kind, Message, WireError};
use crate::{MAX_TRUSTEES, NONCE_LEN};

/// A blame round waiting for the one running to end: what [`Relay::start_blame`] was
/// given.
#[derive(Debug, Clone, Copy)]
struct Queued {
    interval: u32,
    exchange: u64,
    bit: u32,
    slot: u16,
    grounds: [u8; MAX_GROUNDS_LEN],
    grounds_len: usize,
}

impl Queued {
    /// The round's `BlameRequest` frame in `out`: its length.
    fn emit_request(&self, out: &mut [u8]) -> Result<Option<usize>, WireError> {
        let Some(grounds) = self.grounds.get(..self.grounds_len) else {
            return Ok(None);
        };
        let message = Message::BlameRequest {
            interval: self.interval,
            exchange: self.exchange,
            bit: self.bit,
            slot: self.slot,
            grounds,
        };
        message.emit_frame(out).map(Some)
    }
}

/// A dispute of the running round: the member at `position` and trustee `trustee`
/// disagree about their pad bit.
#[derive(Debug, Clone, Copy)]
struct Dispute {
    position: usize,
    client: u16,
    trustee: u16,
    /// The requests to send: to the member, to the trustee.
    ask_client: bool,
    ask_trustee: bool,
}

/// A round, running or parked.
#[derive(Debug, Clone, Copy)]
struct Active {
    q: Queued,
    n: usize,
    m: usize,
    pad_nonce: PadNonce,
    /// The exchange's cell length (the trap form of the evidence records it).
    cell_len: u32,
    decoded_hash: [u8; 32],
    trustee_nonces: [u8; 32],
    members_digest: [u8; 32],
    /// The grounds' digest every reveal signs.
    grounds_digest: [u8; 32],
    deadline: Instant,
    /// Trustees that said in their Hello they take no part (bit `j` for trustee `j`): the
    /// round does not wait for them.
    without: u16,
    /// Trustees that cannot answer (bit `j` for trustee `j`): their link dropped after the
    /// request went out and before they answered, or was down when it went out. A trustee
    /// forgets its rounds with its link and is not asked again: the round does not wait
    /// for them.
    gone: u16,
    /// The trustees' nonces of the round's interval (a dispute settled after the interval
    /// ended checks its proof against them).
    nonces: [[u8; NONCE_LEN]; MAX_TRUSTEES],
    request_sent: bool,
    /// Members that came back on a new link before answering are marked in the place's
    /// resend bitmap: owed the request again.
    resend: bool,
    dispute: Option<Dispute>,
    /// Parked: some members were away at the deadline; the round waits for their reveals
    /// until this time (then it ends without a verdict on them) and holds no interval.
    parked: Option<Instant>,
}

/// The relay's blame rounds: one running, up to [`MAX_PARKED`] parked, the next few
/// waiting, each in its own place of the caller's storage.
#[derive(Debug)]
pub(super) struct Rounds<B> {
    /// Every node's identity key then pad key (64 bytes each, clients then trustees), then
    /// [`PLACES`] places of equal length, each a round's answered, refused and resend
    /// bitmaps over the nodes, its pinned fingerprint row and its evidence.
    region: B,
    nodes: usize,
    /// The round in each place: at most one running (not parked), the others parked.
    places: [Option<Active>; PLACES],
    queue: Deque<Queued, 4>,
    /// The evidence of the round that ended last with a verdict: (interval, exchange,
    /// length, place).
    evidence: Option<(u32, u64, usize, usize)>,
    /// Rounds that ended with evidence since the relay started (a tick ends at most one).
    ended: u64,
    /// The running interval's transcript, and the pad nonces of its latest exchanges.
    transcript: Option<Transcript>,
    /// (exchange, its pad nonce, its cell length if a slot's).
    pad_nonces: Deque<(u64, PadNonce, u32), { crate::blame::ANSWERED }>,
    /// SHA-256 of the latest disrupted exchanges' decoded cells: as many as the kept
    /// fingerprint rows at most, so a round finds the hash of every disrupted exchange whose
    /// row is still kept (one pushed out would be taken as zeros, and the reveals of members
    /// shown the cell would not check).
    decoded: Deque<(u32, u64, [u8; 32]), MAX_KEPT>,
    /// Rounds that ended without every trustee's reveal.
    incomplete: u64,
    /// Members of a round that came back before answering, the round's place, and when:
    /// each has the exchange timeout from then to answer (the latest few; one pushed out
    /// is judged at its round's next deadline).
    returned: Deque<(usize, u16, Instant), 16>,
    /// Tests only: sprung traps start no round (owners' accusations alone are exercised).
    #[cfg(feature = "disruptor")]
    traps_ignored: bool,
}

/// A place's parts: the answered, refused and resend bitmaps, the pinned row and the
/// evidence.
type Parts<'a> = (
    &'a mut [u8],
    &'a mut [u8],
    &'a mut [u8],
    &'a mut [u8],
    &'a mut [u8],
);

impl<B: AsRef<[u8]> + AsMut<[u8]>> Rounds<B> {
    pub(super) fn new(region: B, nodes: usize) -> Self {
        Rounds {
            region,
            nodes,
            places: [None; PLACES],
            queue: Deque::new(),
            evidence: None,
            ended: 0,
            transcript: None,
            pad_nonces: Deque::new(),
            #[cfg(feature = "disruptor")]
            traps_ignored: false,
            decoded: Deque::new(),
            incomplete: 0,
            returned: Deque::new(),
        }
    }

    /// An interval starts with `view`'s transcript.
    pub(super) fn interval_started(&mut self, body: &[u8]) {
        self.transcript = Some(Transcript::start(body));
        self.pad_nonces.clear();
    }

    /// The trustee request of `exchange` went out: its pad nonce.
    pub(super) fn note_exchange(
        &mut self,
        exchange: u64,
        kind: Kind,
        outputs: &[u8],
        head: &[u8; 32],
    ) {
        let Some(t) = &mut self.transcript else {
            return;
        };
        t.advance(exchange, kind, outputs, head);
        let nonce = t.pad_nonce();
        if self.pad_nonces.is_full() {
            self.pad_nonces.pop_front();
        }
        let len = match kind {
            Kind::Slot { len, .. } => len,
            Kind::Reserve => 0,
        };
        let _ = self.pad_nonces.push_back((exchange, nonce, len));
    }

    /// A disrupted exchange's decoded cell went to every member.
    pub(super) fn note_decoded(&mut self, interval: u32, exchange: u64, cell: &[u8]) {
        if self.decoded.is_full() {
            self.decoded.pop_front();
        }
        let _ = self
            .decoded
            .push_back((interval, exchange, cell_hash(cell)));
    }

    fn key(&self, node: usize, which: usize) -> Option<[u8; 32]> {
        let at = node * 64 + which * 32;
        self.region.as_ref().get(at..at + 32)?.try_into().ok()
    }

    /// The round in place `k`.
    fn round(&self, k: usize) -> Option<Active> {
        self.places.get(k).copied().flatten()
    }

    /// The round in place `k`, to change.
    fn round_mut(&mut self, k: usize) -> Option<&mut Active> {
        self.places.get_mut(k).and_then(Option::as_mut)
    }

    /// The place of the running (not parked) round.
    fn running(&self) -> Option<usize> {
        self.places
            .iter()
            .position(|p| p.is_some_and(|a| a.parked.is_none()))
    }

    /// The place of the round (running or parked) about `exchange` of `interval`.
    fn about(&self, interval: u32, exchange: u64) -> Option<usize> {
        self.places
            .iter()
            .position(|p| p.is_some_and(|a| (a.q.interval, a.q.exchange) == (interval, exchange)))
    }

    /// Rounds parked now.
    fn parked(&self) -> usize {
        self.places
            .iter()
            .filter(|p| p.is_some_and(|a| a.parked.is_some()))
            .count()
    }

    /// Bytes of one place.
    fn place_len(&self) -> usize {
        self.region.as_ref().len().saturating_sub(self.nodes * 64) / PLACES
    }

    /// Offset of place `k` in the region.
    fn place_at(&self, k: usize) -> usize {
        self.nodes * 64 + k * self.place_len()
    }

    /// Offset of place `k`'s evidence in the region.
    fn evidence_at(&self, k: usize) -> usize {
        self.place_at(k) + 3 * crate::bits::bitmap_len(self.nodes) + self.nodes * FINGERPRINT_LEN
    }

    /// Place `k`'s answered and refused bitmaps and its evidence.
    fn flags(&mut self, k: usize) -> (&mut [u8], &mut [u8], &mut [u8]) {
        let (answered, refused, _, _, evidence) = self.parts(k);
        (answered, refused, evidence)
    }

    /// Place `k`'s answered, refused and resend bitmaps, its round's fingerprint row
    /// (kept here: the relay's ring of kept rows may drop it while the round runs) and
    /// its evidence.
    fn parts(&mut self, k: usize) -> Parts<'_> {
        let len = crate::bits::bitmap_len(self.nodes);
        let row = self.nodes * FINGERPRINT_LEN;
        let (at, place) = (self.place_at(k), self.place_len());
        let region = self.region.as_mut();
        let place = region.get_mut(at..at + place).unwrap_or(&mut []);
        let (answered, rest) = place.split_at_mut(len.min(place.len()));
        let (refused, rest) = rest.split_at_mut(len.min(rest.len()));
        let (resend, rest) = rest.split_at_mut(len.min(rest.len()));
        let (row, evidence) = rest.split_at_mut(row.min(rest.len()));
        (answered, refused, resend, row, evidence)
    }

    /// Place `k`'s bitmap `which` (0 answered, 1 refused, 2 resend).
    fn bitmap(&self, k: usize, which: usize) -> &[u8] {
        let len = crate::bits::bitmap_len(self.nodes);
        let at = self.place_at(k) + which * len;
        self.region.as_ref().get(at..at + len).unwrap_or(&[])
    }

    /// Place `k`'s evidence.
    fn evidence_of(&self, k: usize) -> &[u8] {
        let (at, end) = (self.evidence_at(k), self.place_at(k) + self.place_len());
        self.region.as_ref().get(at..end).unwrap_or(&[])
    }

    /// The group index of round `k`'s member at `position` (its place in the evidence:
    /// the round's own members, whatever interval runs now).
    fn member(&self, k: usize, position: usize) -> Option<u16> {
        let a = self.round(k)?;
        Draft::client_index_in(self.evidence_of(k), a.n, a.m, position)
    }

    /// The position of client `i` among round `k`'s members (placed in index order: a
    /// binary search).
    fn position_of(&self, k: usize, i: u16) -> Option<usize> {
        let (mut low, mut high) = (0, self.round(k)?.n);
        while low < high {
            let mid = low + (high - low) / 2;
            match self.member(k, mid)?.cmp(&i) {
                core::cmp::Ordering::Less => low = mid + 1,
                core::cmp::Ordering::Equal => return Some(mid),
                core::cmp::Ordering::Greater => high = mid,
            }
        }
        None
    }

    /// Whether node `node` answered round `k`.
    fn has_answered(&self, k: usize, node: usize) -> bool {
        crate::bits::test(self.bitmap(k, 0), node)
    }

    /// Whether client `i` owes a parked round its reveal.
    fn owes(&self, i: u16) -> bool {
        (0..PLACES).any(|k| {
            self.round(k).is_some_and(|a| a.parked.is_some())
                && !self.has_answered(k, usize::from(i))
                && self.position_of(k, i).is_some()
        })
    }

    /// Clears in `online` (a bitmap over the clients) every member that owes a parked
    /// round its reveal.
    pub(super) fn clear_owing(&self, online: &mut [u8]) {
        for k in 0..PLACES {
            let Some(a) = self.round(k).filter(|a| a.parked.is_some()) else {
                continue;
            };
            for p in 0..a.n {
                if let Some(i) = self
                    .member(k, p)
                    .filter(|&i| !self.has_answered(k, usize::from(i)))
                {
                    crate::bits::clear(online, usize::from(i));
                }
            }
        }
    }

    /// A free place for a round to begin in: not the last evidence's if another is free
    /// (one always is: at most [`MAX_PARKED`] are parked when none runs).
    fn free_place(&mut self) -> Option<usize> {
        let kept = self.evidence.map(|e| e.3);
        let free = |k: &usize| self.places.get(*k).is_some_and(Option::is_none);
        let k = (0..PLACES)
            .filter(free)
            .find(|&k| Some(k) != kept)
            .or_else(|| (0..PLACES).find(free))?;
        if Some(k) == kept {
            self.evidence = None;
        }
        Some(k)
    }
}

impl<P, B> Relay<P, B>
where
    P: AsMut<[Peer]> + AsRef<[Peer]>,
    B: AsMut<[u8]> + AsRef<[u8]>,
{
    /// Sets `node`'s public keys: its Ed25519 identity key (its reveals' signatures) and its
    /// Ristretto255 pad key (a dispute's proof). Without them its reveals are refused.
    pub fn set_node_keys(
        &mut self,
        node: PeerId,
        identity: &[u8; 32],
        dh: &[u8; 32],
    ) -> Result<(), ConfigError> {
        let at = self.node_position(node).ok_or(ConfigError::Counts)? * 64;
        let region = self.rounds.region.as_mut();
        let dst = region.get_mut(at..at + 64).ok_or(ConfigError::Counts)?;
        crate::field::put(dst, 0, identity);
        crate::field::put(dst, 32, dh);
        Ok(())
    }

    fn node_position(&self, node: PeerId) -> Option<usize> {
        match node {
            PeerId::Client(i) if i < self.cfg.clients => Some(usize::from(i)),
            PeerId::Trustee(t) if t < self.cfg.trustees => {
                Some(usize::from(self.cfg.clients) + usize::from(t))
            }
            _ => None,
        }
    }

    /// Starts a blame round about `bit` of `exchange` of `interval` on `grounds` (its
    /// members check them before they reveal anything); `slot` is the accusing slot (for
    /// a reservation exchange, the accused bit's). The one entry point of every round:
    /// it runs once the round in progress ends or parks (at most four wait; another is
    /// dropped, reported as [`RelayEvent::BlameDropped`]). `false` if dropped.
    pub fn start_blame(
        &mut self,
        interval: u32,
        exchange: u64,
        bit: u32,
        slot: u16,
        grounds: &Grounds,
    ) -> bool {
        let mut q = Queued {
            interval,
            exchange,
            bit,
            slot,
            grounds: [0; MAX_GROUNDS_LEN],
            grounds_len: 0,
        };
        let same = |o: &Queued| o.interval == interval && o.exchange == exchange;
        if self.rounds.about(interval, exchange).is_some() || self.rounds.queue.iter().any(same) {
            return true;
        }
        let reason = match grounds.emit(&mut q.grounds) {
            Some(n) if !self.rounds.queue.is_full() => {
                q.grounds_len = n;
                let _ = self.rounds.queue.push_back(q);
                return true;
            }
            Some(_) => BlameDropReason::QueueFull,
            None => BlameDropReason::Grounds,
        };
        self.push_event(RelayEvent::BlameDropped {
            interval,
            exchange,
            reason,
        });
        false
    }

    /// A trap of `slot` sprang in `exchange` at `bit`: a blame round on the trap's grounds
    /// ([`Relay::trap_grounds`]), the relay's own, with no accusation. One round about a
    /// slot of an interval runs or waits at a time (a disruptor springs a trap in every
    /// cell it changes: the next one is taken up if this one names nobody; a parked one
    /// counts), and none is proven while the queue is full.
    pub(super) fn trap_sprung(&mut self, interval: u32, exchange: u64, slot: u16, bit: u32) {
        #[cfg(feature = "disruptor")]
        if self.rounds.traps_ignored {
            return;
        }
        let same = |o: &Queued| o.interval == interval && o.slot == slot;
        if self.rounds.places.iter().flatten().any(|a| same(&a.q))
            || self.rounds.queue.iter().any(same)
            || self.rounds.queue.is_full()
        {
            return;
        }
        if let Some(grounds) = self.trap_grounds(interval, slot) {
            self.start_blame(interval, exchange, bit, slot, &Grounds::Trap(grounds));
        }
    }

    /// Tests only (core feature `disruptor`): sprung traps start no blame round, so that
    /// owners' accusations are exercised alone.
    #[cfg(feature = "disruptor")]
    pub fn set_ignore_traps(&mut self, ignore: bool) {
        self.rounds.traps_ignored = ignore;
    }

    /// The evidence of the round that ended last: its interval, exchange and bytes (for the
    /// shell to write, after [`RelayEvent::BlameEnded`]).
    pub fn evidence(&self) -> Option<(u32, u64, &[u8])> {
        let (interval, exchange, len, k) = self.rounds.evidence?;
        let bytes = self.rounds.evidence_of(k).get(..len)?;
        Some((interval, exchange, bytes))
    }

    /// Whether a blame round is running (one that is parked is not: it waits aside).
    pub fn blame_running(&self) -> bool {
        self.rounds.running().is_some()
    }

    /// Rounds parked now, waiting for members away at their deadlines (at most
    /// [`MAX_PARKED`]).
    pub fn blame_parked(&self) -> usize {
        self.rounds.parked()
    }

    /// Whether a round about `interval` runs: the interval does not end before the round
    /// does (a member that leaves is waited for until the deadline, and refused blame if
    /// it has not answered by then; the others answer from that interval's state).
    pub(super) fn blame_holds(&self, interval: u32) -> bool {
        self.rounds
            .running()
            .and_then(|k| self.rounds.round(k))
            .is_some_and(|a| a.q.interval == interval)
    }

    /// Whether client `client` owes a blame round its reveal: it was a member, its link was
    /// down at the round's deadline, and it has not answered since. It is admitted to no
    /// interval until it answers every round it owes (or each gives up waiting).
    pub fn owes_blame(&self, client: u16) -> bool {
        self.rounds.owes(client)
    }

    /// Client `i` came back on a new link while a round about its interval runs (or
    /// rounds wait for it), before it answered: each such round sends it the request
    /// again, and it has the exchange timeout from now to answer. One whose process
    /// `restarted` (its Hello has no resume point: it has lost what it would reveal)
    /// cannot answer: it is taken at its word, penalized once ([`Stall::Restarted`]: its
    /// link stays, but its next Hello within the back-off, which doubles with each
    /// penalty, is refused), and each round goes on without its reveal (it then convicts
    /// only members whose own reveals convict them, and refusers).
    pub(super) fn blame_rejoined(&mut self, now: Instant, i: u16, restarted: bool) {
        let mut penalized = false;
        for k in 0..PLACES {
            let Some(a) = self.rounds.round(k) else {
                continue;
            };
            if a.dispute.is_some()
                || self.rounds.position_of(k, i).is_none()
                || self.rounds.has_answered(k, usize::from(i))
            {
                continue;
            }
            self.rounds.returned.retain(|r| (r.0, r.1) != (k, i));
            if restarted {
                let (answered, _, _) = self.rounds.flags(k);
                crate::bits::set(answered, usize::from(i));
                if !penalized {
                    penalized = true;
                    let _ = self.add_penalty(now, i, Stall::Restarted);
                }
                if a.parked.is_some() {
                    self.owing_settled(now);
                }
                self.push_event(RelayEvent::BlameRestarted {
                    interval: a.q.interval,
                    exchange: a.q.exchange,
                    client: i,
                });
                if self.round_answered(k) {
                    self.conclude(now, k);
                }
                continue;
            }
            let back = now + self.cfg.exchange_timeout;
            if self.rounds.returned.is_full() {
                self.rounds.returned.pop_front();
            }
            let _ = self.rounds.returned.push_back((k, i, now));
            let sent = a.request_sent;
            if let Some(round) = self.rounds.round_mut(k) {
                if round.parked.is_some() {
                    // A parked round looks again once it has had its time.
                    round.deadline = round.deadline.min(back);
                }
                round.resend |= sent;
            }
            if sent {
                let (_, _, resend, _, _) = self.rounds.parts(k);
                crate::bits::set(resend, usize::from(i));
            }
        }
    }

    /// Trustee `t`'s link dropped: it forgets every round it was asked in, and is not asked
    /// again when it is back, so no round waits for its reveal any more. A round that then
    /// has every answer it can get (every member answered, every other trustee that takes
    /// part too) ends at once, at the next [`Relay::handle_timeout`] (at most one with
    /// evidence per call), with the verdict its deadline would give: the same answers,
    /// the same absent trustees. A round settling a dispute waits for its proof as before.
    pub(super) fn blame_trustee_gone(&mut self, now: Instant, t: u16) {
        let node = usize::from(self.cfg.clients) + usize::from(t);
        for k in 0..PLACES {
            let Some(a) = self.rounds.round(k) else {
                continue;
            };
            if !a.request_sent || self.rounds.has_answered(k, node) {
                continue;
            }
            if let Some(round) = self.rounds.round_mut(k) {
                round.gone |= 1 << t;
            }
            if a.dispute.is_none() && self.round_answered(k) {
                if let Some(round) = self.rounds.round_mut(k) {
                    round.deadline = round.deadline.min(now);
                }
            }
        }
    }

    /// When the next round times out (a parked one included), or now if the running one's
    /// interval ended or a round waits to begin.
    pub(super) fn blame_deadline(&self) -> Option<Instant> {
        let running = self.interval().map(|(i, _)| i);
        let mut at: Option<Instant> = None;
        for a in self.rounds.places.iter().flatten() {
            // A running round whose interval ended ends now (a parked one outlives its
            // interval: it waits for members that were away at its deadline).
            let t = if a.parked.is_none() && running != Some(a.q.interval) {
                Instant::default()
            } else {
                a.deadline
            };
            at = Some(at.map_or(t, |at| at.min(t)));
        }
        if self.rounds.running().is_none() && !self.rounds.queue.is_empty() {
            at = Some(Instant::default());
        }
        at
    }

    /// Ends each parked round at its deadline and the running one at its own (or when its
    /// interval ends), and starts the next waiting round if none runs (called with the
    /// relay's timeouts). At most one round ends with evidence per call, so the shell
    /// reads each ([`Relay::evidence`]) before the next replaces it.
    pub(super) fn blame_tick(&mut self, now: Instant) {
        let ended = self.rounds.ended;
        for k in 0..PLACES {
            if self.rounds.ended != ended {
                return;
            }
            // It outlives its interval: its members answer from what they kept.
            if let Some(a) = self.rounds.round(k).filter(|a| a.parked.is_some()) {
                if now >= a.deadline {
                    self.conclude(now, k);
                }
            }
        }
        if self.rounds.ended != ended {
            return;
        }
        if let Some(k) = self.rounds.running() {
            let Some(a) = self.rounds.round(k) else {
                return;
            };
            if self.interval().map(|(i, _)| i) != Some(a.q.interval) {
                // The interval ended: its members can no longer reveal its cells.
                self.rounds.returned.retain(|r| r.0 != k);
                if let Some(place) = self.rounds.places.get_mut(k) {
                    *place = None;
                }
                self.push_event(RelayEvent::BlameEnded {
                    interval: a.q.interval,
                    exchange: a.q.exchange,
                    verdict: None,
                });
            } else if now >= a.deadline {
                self.conclude(now, k);
            }
            if self.rounds.running().is_some() || self.rounds.ended != ended {
                return;
            }
        }
        while let Some(q) = self.rounds.queue.pop_front() {
            if self.begin(now, q) {
                return;
            }
        }
    }

    /// Begins round `q`; `false` if it cannot run (not the running interval or one that is
    /// ending because a member left or was excluded, no kept fingerprints, an exchange of a
    /// slot past the keep horizon, grounds that do not hold).
    fn begin(&mut self, now: Instant, q: Queued) -> bool {
        let drop = |relay: &mut Self, reason| {
            relay.push_event(RelayEvent::BlameDropped {
                interval: q.interval,
                exchange: q.exchange,
                reason,
            });
            false
        };
        let running = match self.phase {
            Phase::Running(running)
                if running.interval == q.interval
                    && !matches!(running.stop, Some(Stop::Abort { .. })) =>
            {
                running
            }
            _ => return drop(self, BlameDropReason::Forgotten),
        };
        // Every node keeps the pad nonces of its last `ANSWERED` exchanges only.
        if !within_answered(running.next.saturating_sub(q.exchange + 1)) {
            return drop(self, BlameDropReason::Forgotten);
        }
        let row = if let Some(within) = self.within_keep_horizon(q.interval, q.exchange, q.slot) {
            // The owner gives back the cell it sealed: only while it must still hold it.
            if !within {
                return drop(self, BlameDropReason::PastHorizon);
            }
            Some(q.slot)
        } else if q.bit == u32::from(q.slot)
            && self.kept.row(q.interval, q.exchange, RESERVATION).is_some()
        {
            None
        } else {
            return drop(self, BlameDropReason::Forgotten);
        };
        let Some(Ok(grounds)) = q.grounds.get(..q.grounds_len).map(Grounds::parse) else {
            return drop(self, BlameDropReason::Grounds);
        };
        let Some((pad_nonce, cell_len)) = self
            .rounds
            .pad_nonces
            .iter()
            .find(|p| p.0 == q.exchange)
            .map(|p| (p.1, p.2))
        else {
            return drop(self, BlameDropReason::Forgotten);
        };
        let facts = Facts {
            group_id: self.cfg.group_id,
            session_id: self.cfg.session_id,
            view: self.view,
            interval: q.interval,
            announced: self
                .trap
                .as_ref()
                .filter(|t| t.interval == q.interval)
                .map_or([0; 32], |t| t.point),
            slot: q.slot,
            pseudonym: self.slots.key(q.slot),
            exchange: q.exchange,
            len: cell_len as usize,
            bit: q.bit,
        };
        if grounds.check(&facts).is_err() {
            return drop(self, BlameDropReason::Grounds);
        }
        let digest_of_grounds = grounds_digest(&facts.view, q.slot, cell_len, &grounds);
        let decoded_hash = self
            .rounds
            .decoded
            .iter()
            .find(|d| d.0 == q.interval && d.1 == q.exchange)
            .map_or([0; 32], |d| d.2);
        let m = usize::from(self.cfg.trustees);
        let n = running.members as usize;
        let mut nonces = [0u8; MAX_TRUSTEES * NONCE_LEN];
        for (dst, src) in nonces.chunks_exact_mut(NONCE_LEN).zip(&self.nonces) {
            dst.copy_from_slice(src);
        }
        let trustee_nonces = nonces.get(..m * NONCE_LEN).unwrap_or(&[]);
        let clients = usize::from(self.cfg.clients);
        let mut digest = Sha256::new();
        if let Ok(online) = Bits::new_checked(self.online_bits(), clients) {
            for i in online.iter() {
                digest.update(
                    self.peers
                        .as_ref()
                        .get(i)
                        .map_or([0; NONCE_LEN], |p| p.nonce),
                );
            }
        }
        let members_digest: [u8; 32] = digest.finalize().into();
        let trustee_digest = nonces_digest(
            trustee_nonces
                .chunks_exact(NONCE_LEN)
                .filter_map(|c| <&[u8; NONCE_LEN]>::try_from(c).ok()),
        );
        let header = Header {
            group_id: &self.cfg.group_id,
            session_id: &self.cfg.session_id,
            view: &self.view,
            interval: q.interval,
            exchange: q.exchange,
            bit: q.bit,
            grounds: &grounds,
            cell_len,
            slot: q.slot,
            pad_nonce: &pad_nonce,
            decoded_hash: &decoded_hash,
            trustee_nonces,
            trustees: m as u16,
            clients: n as u16,
        };
        let Some(k) = self.rounds.free_place() else {
            return drop(self, BlameDropReason::QueueFull);
        };
        // Lay out the evidence, every member in its place.
        let online = self.online.as_ref();
        let online = online
            .get(..crate::bits::bitmap_len(clients))
            .unwrap_or(online);
        let peers = self.peers.as_ref();
        let kept = self
            .kept
            .row(q.interval, q.exchange, row.unwrap_or(RESERVATION));
        let (answered, refused, resend, pinned, evidence) = self.rounds.parts(k);
        answered.fill(0);
        refused.fill(0);
        resend.fill(0);
        match kept {
            Some(kept) if kept.len() == pinned.len() => pinned.copy_from_slice(kept),
            _ => return drop(self, BlameDropReason::Forgotten),
        }
        let Some(mut draft) = Draft::new(&header, evidence) else {
            return drop(self, BlameDropReason::Forgotten);
        };
        if let Ok(online) = Bits::new_checked(online, clients) {
            for (position, i) in online.iter().enumerate() {
                let nonce = peers.get(i).map_or([0; NONCE_LEN], |p| p.nonce);
                draft.client_place(position, i as u16, &nonce);
            }
        }
        let without = (0..m)
            .filter(|&t| {
                self.peer(PeerId::Trustee(t as u16))
                    .is_some_and(|p| !p.blame)
            })
            .fold(0u16, |bits, t| bits | 1 << t);
        self.rounds.returned.retain(|r| r.0 != k);
        let Some(place) = self.rounds.places.get_mut(k) else {
            return drop(self, BlameDropReason::QueueFull);
        };
        *place = Some(Active {
            q,
            n,
            m,
            pad_nonce,
            cell_len,
            decoded_hash,
            trustee_nonces: trustee_digest,
            members_digest,
            grounds_digest: digest_of_grounds,
            deadline: now + self.cfg.exchange_timeout,
            without,
            gone: 0,
            nonces: self.nonces,
            request_sent: false,
            resend: false,
            dispute: None,
            parked: None,
        });
        self.push_event(RelayEvent::BlameStarted {
            interval: q.interval,
            exchange: q.exchange,
        });
        true
    }

    /// Whether a round about `exchange` of `slot` in `interval` may still begin as far as
    /// the keep horizon goes ([`crate::blame::horizon`]): fewer than `keep_horizon(window)`
    /// exchanges of the slot were issued after it. `None` if `interval` is not the running
    /// one or the relay keeps no fingerprints of that exchange in that slot. It reads only
    /// the schedule's count of the slot's exchanges, never who owns the slot.
    pub fn within_keep_horizon(&self, interval: u32, exchange: u64, slot: u16) -> Option<bool> {
        let Phase::Running(running) = self.phase else {
            return None;
        };
        if running.interval != interval {
            return None;
        }
        let ordinal = self.kept.ordinal(interval, exchange, slot)?;
        let later = self.issued_after(&running, slot, ordinal);
        Some(within_horizon(self.cfg.window, later))
    }

    /// Exchanges of `slot` issued in the running interval after its exchange of slot
    /// ordinal `ordinal`: those decoded since, and those in flight.
    fn issued_after(&self, running: &super::interval::Running, slot: u16, ordinal: u64) -> u64 {
        let decoded = self.slots.decoded(slot, running.interval);
        let in_flight = (running.done..running.next)
            .filter(|&x| {
                self.window
                    .issued(x)
                    .is_some_and(|i| matches!(i.kind, Kind::Slot { slot: s, .. } if s == slot))
            })
            .count() as u64;
        (decoded + in_flight).saturating_sub(ordinal + 1)
    }
}
