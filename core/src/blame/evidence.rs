//! The evidence of a blame round: one binary format, written by the relay and checked by
//! anyone from public keys only ([`verify`]).
//!
//! Layout (big-endian integers; `m` trustees, `n` revealed members, bitmaps least
//! significant bit first):
//!
//! ```text
//! magic "DISSENT-BLAME-v3" (an owner's accusation) | "DISSENT-TRAPS-v3" (a sprung trap)
//! group (16) ‖ session (16) ‖ view (32) ‖ interval (4) ‖ exchange (8) ‖ bit (4) ‖
//! slot (2) ‖ pad nonce (24) ‖ SHA-256 of the decoded cell (32) ‖ proof (64: the
//!     accusation's, or the trap grounds' DLEQ proof)
//! m (2) ‖ n (2)
//! trustee nonces: m × 16
//! members, by ascending index: n × (index (2) ‖ link nonce (16) ‖ SHA-256(cell) (32) ‖
//!     cell bit (1) ‖ pad bits, one per trustee (⌈m/8⌉) ‖ signature (64))
//! trustees, in order: m × (SHA-256(cell) (32) ‖ cell bit (1) ‖ pad bits, one per member
//!     in the order above (⌈n/8⌉) ‖ signature (64))
//! d (2), disputes: d × (member position (2) ‖ trustee (2) ‖ prover (1: 0 the member,
//!     1 the trustee) ‖ Diffie–Hellman secret (32) ‖ DLEQ proof (64))
//! verdict: kind (1) ‖ role (1: 0 client, 1 trustee, 2 relay) ‖ index (2)
//! trap form only: R_I (32) ‖ Z (32) ‖ cell length (4)
//! ```
//!
//! The signatures are [`super::Statement`]s; every member's covers the decoded cell's hash
//! it was sent (zeros if it was not shown it: a member whose link dropped before the
//! `Disrupted` frame reached it), so a forged decoding is attested by the members who were
//! shown it. A refused blame names who the relay saw
//! refuse; the reveals it holds are included, but the refusal itself is the relay's word.
//!
//! Owns the format and its verification; it must not know where the bytes come from.

use sha2::{Digest, Sha256};

use crate::bits;
use crate::crypto::PadNonce;
use crate::ristretto::dleq::PROOF_LEN;
use crate::NONCE_LEN;

use super::accuse::verify_accusation;
use super::grounds::Grounds;
use super::judge::{judge, resolve_dispute, DisputeFacts, Finding, Reveals};
use super::reveal::{nonces_digest, Statement};
use super::trap::{TrapError, TrapFacts, TrapGrounds};
use super::{BlameKind, Culprit};
use crate::wire::Accusation;

/// The first bytes of every evidence file.
pub const MAGIC: &[u8; 16] = b"DISSENT-BLAME-v3";
/// The first bytes of the evidence of a round on a sprung trap.
pub const TRAP_MAGIC: &[u8; 16] = b"DISSENT-TRAPS-v3";
/// Bytes the trap form adds after the verdict: `R_I`, `Z` and the cell length.
pub const TRAP_TAIL_LEN: usize = 32 + 32 + 4;

const HEADER_LEN: usize = 16 + 16 + 16 + 32 + 4 + 8 + 4 + 2 + 24 + 32 + 64 + 2 + 2;
const DISPUTE_LEN: usize = 2 + 2 + 1 + 32 + PROOF_LEN;
const VERDICT_LEN: usize = 4;

const fn client_entry_len(m: usize) -> usize {
    2 + NONCE_LEN + 32 + 1 + bits::bitmap_len(m) + 64
}

const fn trustee_entry_len(n: usize) -> usize {
    32 + 1 + bits::bitmap_len(n) + 64
}

/// Bytes of the evidence of `n` members, `m` trustees and `d` disputes.
pub const fn evidence_len(n: usize, m: usize, d: usize) -> usize {
    HEADER_LEN
        + m * NONCE_LEN
        + n * client_entry_len(m)
        + m * trustee_entry_len(n)
        + 2
        + d * DISPUTE_LEN
        + VERDICT_LEN
}

/// The public keys of one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemberKeys {
    /// Its Ed25519 identity key.
    pub identity: [u8; 32],
    /// Its Ristretto255 pad public key.
    pub dh: [u8; 32],
}

/// The group's public keys, from its description.
pub trait Directory {
    /// Client `index`'s keys.
    fn client(&self, index: u16) -> Option<MemberKeys>;
    /// Trustee `index`'s keys.
    fn trustee(&self, index: u16) -> Option<MemberKeys>;
    /// Slot `slot`'s pseudonym public key.
    fn pseudonym(&self, slot: u16) -> Option<[u8; 32]>;
}

/// Why evidence was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EvidenceError {
    /// Not the format (length, magic, an unknown kind, member indices out of order).
    Malformed,
    /// A key the evidence needs is not in the group.
    UnknownKey,
    /// The accusation's pseudonym proof does not verify.
    BadAccusation,
    /// The trap grounds do not hold (the proof, or the bit not in a trap byte).
    BadTrap(TrapError),
    /// A member's reveal signature does not verify (its position; trustees after members).
    BadSignature(usize),
    /// The reveals lead to a dispute the evidence does not settle with a valid proof.
    Unresolved,
    /// A refused blame named against a node whose signed reveal the evidence holds (and
    /// no unsettled dispute of its), or a node that is not in it.
    UnfoundedRefusal,
    /// The reveals convict someone else than the recorded verdict.
    WrongVerdict {
        /// What the reveals show.
        who: Culprit,
        /// Why.
        kind: BlameKind,
    },
}

impl core::fmt::Display for EvidenceError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            EvidenceError::Malformed => f.write_str("not blame evidence (malformed)"),
            EvidenceError::UnknownKey => f.write_str("a key it needs is not in the group"),
            EvidenceError::BadAccusation => f.write_str("the accusation's proof is invalid"),
            EvidenceError::BadTrap(e) => write!(f, "the trap grounds do not hold: {e}"),
            EvidenceError::BadSignature(i) => write!(f, "reveal {i}: invalid signature"),
            EvidenceError::Unresolved => f.write_str("a dispute is not settled by a valid proof"),
            EvidenceError::UnfoundedRefusal => {
                f.write_str("a refused blame names a node whose reveal the evidence holds")
            }
            EvidenceError::WrongVerdict { who, kind } => {
                write!(
                    f,
                    "the reveals convict {who:?} ({kind:?}), not the recorded verdict"
                )
            }
        }
    }
}

impl core::error::Error for EvidenceError {}

/// What checked evidence shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    /// Interval of the accused exchange.
    pub interval: u32,
    /// The accused exchange.
    pub exchange: u64,
    /// The accused bit.
    pub bit: u32,
    /// The exchange's slot (whose owner accused, or whose trap sprang).
    pub slot: u16,
    /// Whether the round stood on a sprung trap (else on the owner's accusation).
    pub trap: bool,
    /// Who is named.
    pub who: Culprit,
    /// Why.
    pub kind: BlameKind,
    /// Whether the verdict follows from the evidence alone (false for a refused blame:
    /// the relay's own observation).
    pub offline: bool,
    /// SHA-256 of the decoded cell the relay published (members compare it with the
    /// `Disrupted` frame they were sent, to check a forged decoding).
    pub decoded_hash: [u8; 32],
}

/// The fixed part of the evidence.
#[derive(Debug, Clone, Copy)]
pub struct Header<'a> {
    /// The group.
    pub group_id: &'a [u8; 16],
    /// The session.
    pub session_id: &'a [u8; 16],
    /// The interval's view (the accusation's proof binds it).
    pub view: &'a [u8; 32],
    /// The interval of the accused exchange.
    pub interval: u32,
    /// The exchange.
    pub exchange: u64,
    /// The bit.
    pub bit: u32,
    /// The round's grounds (an accusation of `exchange` and `bit`, or a sprung trap).
    pub grounds: &'a Grounds,
    /// The exchange's cell length (written in the trap form only).
    pub cell_len: u32,
    /// The exchange's slot.
    pub slot: u16,
    /// The exchange's pad nonce.
    pub pad_nonce: &'a PadNonce,
    /// SHA-256 of the decoded cell.
    pub decoded_hash: &'a [u8; 32],
    /// The interval's trustee nonces, `NONCE_LEN` each.
    pub trustee_nonces: &'a [u8],
    /// Trustees.
    pub trustees: u16,
    /// Members revealed.
    pub clients: u16,
}

/// Writes evidence in order: [`EvidenceWriter::new`], every member
/// ([`EvidenceWriter::client`], by ascending index), every trustee, the disputes, then
/// [`EvidenceWriter::finish`].
#[derive(Debug)]
pub struct EvidenceWriter<'b> {
    out: &'b mut [u8],
    at: usize,
    m: usize,
    n: usize,
    disputes_at: Option<usize>,
    disputes: u16,
    tail: Option<[u8; TRAP_TAIL_LEN]>,
}

/// The trap form's tail: `R_I ‖ Z ‖ cell length`.
pub fn trap_tail(grounds: &TrapGrounds, cell_len: u32) -> [u8; TRAP_TAIL_LEN] {
    let mut t = [0u8; TRAP_TAIL_LEN];
    crate::field::put(&mut t, 0, &grounds.announced);
    crate::field::put(&mut t, 32, &grounds.point);
    crate::field::put(&mut t, 64, &cell_len.to_be_bytes());
    t
}

/// Bytes the header's grounds add after the verdict.
fn tail_len(h: &Header<'_>) -> usize {
    match h.grounds {
        Grounds::Accused(_) => 0,
        Grounds::Trap(_) => TRAP_TAIL_LEN,
    }
}

impl<'b> EvidenceWriter<'b> {
    /// Starts evidence in `out`; `None` if `out` cannot hold [`evidence_len`] for the
    /// header's counts and `disputes` disputes.
    pub fn new(h: &Header<'_>, disputes: usize, out: &'b mut [u8]) -> Option<Self> {
        let (n, m) = (usize::from(h.clients), usize::from(h.trustees));
        if out.len() < evidence_len(n, m, disputes) + tail_len(h)
            || h.trustee_nonces.len() != m * NONCE_LEN
        {
            return None;
        }
        let mut w = EvidenceWriter {
            out,
            at: 0,
            m,
            n,
            disputes_at: None,
            disputes: 0,
            tail: match h.grounds {
                Grounds::Accused(_) => None,
                Grounds::Trap(t) => Some(trap_tail(t, h.cell_len)),
            },
        };
        let (magic, proof) = match h.grounds {
            Grounds::Accused(a) => (MAGIC, &a.proof),
            Grounds::Trap(t) => (TRAP_MAGIC, &t.proof),
        };
        for p in [
            &magic[..],
            h.group_id,
            h.session_id,
            h.view,
            &h.interval.to_be_bytes(),
            &h.exchange.to_be_bytes(),
            &h.bit.to_be_bytes(),
            &h.slot.to_be_bytes(),
            h.pad_nonce,
            h.decoded_hash,
            proof,
            &h.trustees.to_be_bytes(),
            &h.clients.to_be_bytes(),
            h.trustee_nonces,
        ] {
            w.put(p);
        }
        Some(w)
    }

    fn put(&mut self, bytes: &[u8]) {
        crate::field::put(self.out, self.at, bytes);
        self.at += bytes.len();
    }

    fn put_bits(&mut self, bits: &[u8], count: usize) {
        let len = bits::bitmap_len(count);
        for i in 0..len {
            self.put(&[bits.get(i).copied().unwrap_or(0)]);
        }
    }

    /// A member's reveal.
    pub fn client(
        &mut self,
        index: u16,
        nonce: &[u8; NONCE_LEN],
        cell_hash: &[u8; 32],
        cell_bit: bool,
        pad_bits: &[u8],
        signature: &[u8; 64],
    ) {
        self.put(&index.to_be_bytes());
        self.put(nonce);
        self.put(cell_hash);
        self.put(&[u8::from(cell_bit)]);
        self.put_bits(pad_bits, self.m);
        self.put(signature);
    }

    /// A trustee's reveal.
    pub fn trustee(
        &mut self,
        cell_hash: &[u8; 32],
        cell_bit: bool,
        pad_bits: &[u8],
        signature: &[u8; 64],
    ) {
        self.put(cell_hash);
        self.put(&[u8::from(cell_bit)]);
        self.put_bits(pad_bits, self.n);
        self.put(signature);
    }

    /// A dispute's proven Diffie–Hellman secret.
    pub fn dispute(
        &mut self,
        position: u16,
        trustee: u16,
        by_client: bool,
        shared: &[u8; 32],
        proof: &[u8; PROOF_LEN],
    ) {
        if self.disputes_at.is_none() {
            self.disputes_at = Some(self.at);
            self.at += 2;
        }
        self.disputes += 1;
        self.put(&position.to_be_bytes());
        self.put(&trustee.to_be_bytes());
        self.put(&[u8::from(!by_client)]);
        self.put(shared);
        self.put(proof);
    }

    /// Writes the verdict; returns the evidence's length.
    pub fn finish(mut self, who: Culprit, kind: BlameKind) -> usize {
        let at = match self.disputes_at {
            Some(at) => at,
            None => {
                self.at += 2;
                self.at - 2
            }
        };
        crate::field::put(self.out, at, &self.disputes.to_be_bytes());
        let (role, index) = role_of(who);
        self.put(&[kind as u8, role]);
        self.put(&index.to_be_bytes());
        if let Some(tail) = self.tail {
            self.put(&tail);
        }
        self.at
    }
}

/// Evidence filled in as reveals arrive, in any order: the relay lays out the header and
/// every entry's place ([`Draft::new`]), writes each reveal at its place
/// ([`Draft::client`], [`Draft::trustee`]), judges what it holds ([`Draft::judge`], as
/// [`judge`] over every entry) and finishes with the verdict ([`Draft::finish`]). An entry
/// never written stays zero: a signature of 64 zeros marks a node that did not reveal
/// (allowed only in evidence of a refused blame, or of a member that convicted itself).
#[derive(Debug)]
pub struct Draft<'b> {
    out: &'b mut [u8],
    m: usize,
    n: usize,
}

impl<'b> Draft<'b> {
    /// Lays out evidence for the header's counts in `out` (which must hold
    /// [`evidence_len`] with one dispute); `None` if it cannot.
    pub fn new(h: &Header<'_>, out: &'b mut [u8]) -> Option<Self> {
        let (n, m) = (usize::from(h.clients), usize::from(h.trustees));
        let len = evidence_len(n, m, 1);
        let out = out.get_mut(..len)?;
        out.fill(0);
        // The trap form's tail follows the verdict: the relay writes it when the round
        // ends ([`trap_tail`]).
        let plain = Header {
            grounds: &Grounds::Accused(Accusation {
                exchange: h.exchange,
                bit: h.bit,
                proof: match h.grounds {
                    Grounds::Accused(a) => a.proof,
                    Grounds::Trap(t) => t.proof,
                },
            }),
            ..*h
        };
        let out = EvidenceWriter::new(&plain, 1, out)?.out;
        if matches!(h.grounds, Grounds::Trap(_)) {
            crate::field::put(out, 0, TRAP_MAGIC);
        }
        Some(Draft { out, m, n })
    }

    /// Takes up a draft laid out by [`Draft::new`] for `n` members and `m` trustees.
    pub fn resume(out: &'b mut [u8], n: usize, m: usize) -> Option<Self> {
        let out = out.get_mut(..evidence_len(n, m, 1))?;
        Some(Draft { out, m, n })
    }

    /// Whether the member at `position` revealed (its signature is written).
    pub fn revealed(&self, position: usize) -> bool {
        let at = self.client_at(position) + 2 + NONCE_LEN + 33 + bits::bitmap_len(self.m);
        self.out
            .get(at..at + 64)
            .is_some_and(|s| s.iter().any(|&b| b != 0))
    }

    /// The group index of the member at `position`.
    pub fn client_index(&self, position: usize) -> u16 {
        be16(self.out, self.client_at(position)).unwrap_or(0)
    }

    fn client_at(&self, p: usize) -> usize {
        HEADER_LEN + self.m * NONCE_LEN + p * client_entry_len(self.m)
    }

    fn trustee_at(&self, t: usize) -> usize {
        HEADER_LEN
            + self.m * NONCE_LEN
            + self.n * client_entry_len(self.m)
            + t * trustee_entry_len(self.n)
    }

    /// Writes the member at `position`'s reveal (its place fixed by its index order).
    #[allow(clippy::too_many_arguments)]
    pub fn client(
        &mut self,
        position: usize,
        index: u16,
        nonce: &[u8; NONCE_LEN],
        cell_hash: &[u8; 32],
        cell_bit: bool,
        pad_bits: &[u8],
        signature: &[u8; 64],
    ) {
        if position >= self.n {
            return;
        }
        let at = self.client_at(position);
        let bits_len = bits::bitmap_len(self.m);
        let mut put = |at: usize, b: &[u8]| crate::field::put(self.out, at, b);
        put(at, &index.to_be_bytes());
        put(at + 2, nonce);
        put(at + 2 + NONCE_LEN, cell_hash);
        put(at + 2 + NONCE_LEN + 32, &[u8::from(cell_bit)]);
        for i in 0..bits_len {
            put(
                at + 2 + NONCE_LEN + 33 + i,
                &[pad_bits.get(i).copied().unwrap_or(0)],
            );
        }
        put(at + 2 + NONCE_LEN + 33 + bits_len, signature);
    }

    /// The link nonce the member at `position` had in the round's interval (its place).
    pub fn client_nonce(&self, position: usize) -> [u8; NONCE_LEN] {
        let at = self.client_at(position) + 2;
        self.out
            .get(at..at + NONCE_LEN)
            .and_then(|n| n.try_into().ok())
            .unwrap_or([0; NONCE_LEN])
    }

    /// Writes only the index and link nonce of the member at `position` (before its reveal
    /// arrives, or for good if none does).
    pub fn client_place(&mut self, position: usize, index: u16, nonce: &[u8; NONCE_LEN]) {
        if position >= self.n {
            return;
        }
        let at = self.client_at(position);
        crate::field::put(self.out, at, &index.to_be_bytes());
        crate::field::put(self.out, at + 2, nonce);
    }

    /// Writes trustee `t`'s reveal.
    pub fn trustee(
        &mut self,
        t: usize,
        cell_hash: &[u8; 32],
        cell_bit: bool,
        pad_bits: &[u8],
        signature: &[u8; 64],
    ) {
        if t >= self.m {
            return;
        }
        let at = self.trustee_at(t);
        let bits_len = bits::bitmap_len(self.n);
        crate::field::put(self.out, at, cell_hash);
        crate::field::put(self.out, at + 32, &[u8::from(cell_bit)]);
        if let Some(dst) = self.out.get_mut(at + 33..at + 33 + bits_len) {
            for (i, d) in dst.iter_mut().enumerate() {
                *d = pad_bits.get(i).copied().unwrap_or(0);
            }
        }
        crate::field::put(self.out, at + 33 + bits_len, signature);
    }

    /// The verdict of what it holds (every entry), as [`judge`] gives it.
    pub fn judge(&self) -> Finding {
        judge(&DraftReveals(self))
    }

    /// Whether the member at `position` convicts itself (its cell bit is not the XOR of
    /// its own pad bits).
    pub fn client_convicts_itself(&self, position: usize) -> bool {
        let r = DraftReveals(self);
        let pads = (0..self.m).fold(false, |x, t| x ^ r.client_pad_bit(position, t));
        pads != r.client_cell_bit(position)
    }

    /// The pad bit the member at `position` claims to share with trustee `t`.
    pub fn client_pad_bit(&self, position: usize, t: usize) -> bool {
        DraftReveals(self).client_pad_bit(position, t)
    }

    /// Finishes with `dispute` (a proven Diffie–Hellman secret: member position, trustee,
    /// made by the member, secret, proof) and the verdict; returns the evidence's length.
    pub fn finish(
        self,
        dispute: Option<ProvenDispute<'_>>,
        who: Culprit,
        kind: BlameKind,
    ) -> usize {
        let d = usize::from(dispute.is_some());
        let at = self.trustee_at(self.m);
        let out = self.out;
        crate::field::put(out, at, &(d as u16).to_be_bytes());
        let mut at = at + 2;
        if let Some((position, trustee, by_client, shared, proof)) = dispute {
            for part in [
                &position.to_be_bytes()[..],
                &trustee.to_be_bytes(),
                &[u8::from(!by_client)],
                shared,
                proof,
            ] {
                crate::field::put(out, at, part);
                at += part.len();
            }
        }
        let (role, index) = role_of(who);
        crate::field::put(out, at, &[kind as u8, role]);
        crate::field::put(out, at + 2, &index.to_be_bytes());
        at + VERDICT_LEN
    }
}

/// One reveal as a draft holds it ([`Draft::reveal_in`]).
#[derive(Debug, Clone, Copy)]
pub struct Entry<'a> {
    /// A member's link nonce (empty for a trustee).
    pub nonce: &'a [u8],
    /// SHA-256 of its cell.
    pub cell_hash: &'a [u8],
    /// Its cell bit.
    pub cell_bit: bool,
    /// Its pad bits.
    pub pad_bits: &'a [u8],
    /// Its signature (64 zeros if it did not reveal).
    pub signature: &'a [u8],
}

impl Draft<'_> {
    /// The reveal of the member at `position` (`trustee` false) or of trustee `position`
    /// in a draft laid out for `n` members and `m` trustees, read in place.
    pub fn reveal_in(
        draft: &[u8],
        n: usize,
        m: usize,
        trustee: bool,
        position: usize,
    ) -> Option<Entry<'_>> {
        let members = HEADER_LEN + m * NONCE_LEN;
        let (at, nonce, bits) = if trustee {
            if position >= m {
                return None;
            }
            let at = members + n * client_entry_len(m) + position * trustee_entry_len(n);
            (at, 0, bits::bitmap_len(n))
        } else {
            if position >= n {
                return None;
            }
            (
                members + position * client_entry_len(m) + 2,
                NONCE_LEN,
                bits::bitmap_len(m),
            )
        };
        let e = draft.get(at..at + nonce + 33 + bits + 64)?;
        let (nonce, rest) = e.split_at_checked(nonce)?;
        let (cell_hash, rest) = rest.split_at_checked(32)?;
        let (&cell_bit, rest) = rest.split_first()?;
        let (pad_bits, signature) = rest.split_at_checked(bits)?;
        Some(Entry {
            nonce,
            cell_hash,
            cell_bit: cell_bit == 1,
            pad_bits,
            signature,
        })
    }
}

/// A dispute settled in a round, as the evidence records it: the member's position, the
/// trustee, whether the member made the proof, the proven Diffie–Hellman secret, the proof.
pub type ProvenDispute<'a> = (u16, u16, bool, &'a [u8; 32], &'a [u8; PROOF_LEN]);

/// The reveals of a draft, for [`judge`].
struct DraftReveals<'d, 'b>(&'d Draft<'b>);

impl Reveals for DraftReveals<'_, '_> {
    fn clients(&self) -> usize {
        self.0.n
    }
    fn trustees(&self) -> usize {
        self.0.m
    }
    fn client_index(&self, p: usize) -> u16 {
        be16(self.0.out, self.0.client_at(p)).unwrap_or(0)
    }
    fn client_cell_bit(&self, p: usize) -> bool {
        self.0.out.get(self.0.client_at(p) + 2 + NONCE_LEN + 32) == Some(&1)
    }
    fn client_pad_bit(&self, p: usize, t: usize) -> bool {
        let at = self.0.client_at(p) + 2 + NONCE_LEN + 33;
        bits::test(
            self.0
                .out
                .get(at..at + bits::bitmap_len(self.0.m))
                .unwrap_or(&[]),
            t,
        )
    }
    fn trustee_cell_bit(&self, t: usize) -> bool {
        self.0.out.get(self.0.trustee_at(t) + 32) == Some(&1)
    }
    fn trustee_pad_bit(&self, t: usize, p: usize) -> bool {
        let at = self.0.trustee_at(t) + 33;
        bits::test(
            self.0
                .out
                .get(at..at + bits::bitmap_len(self.0.n))
                .unwrap_or(&[]),
            p,
        )
    }
}

fn role_of(who: Culprit) -> (u8, u16) {
    match who {
        Culprit::Client(i) => (0, i),
        Culprit::Trustee(j) => (1, j),
        Culprit::Relay => (2, 0),
    }
}

/// Parsed evidence (borrowing the bytes).
#[derive(Debug, Clone, Copy)]
struct Parsed<'a> {
    bytes: &'a [u8],
    m: usize,
    n: usize,
    nonces_at: usize,
    clients_at: usize,
    trustees_at: usize,
    disputes_at: usize,
    disputes: usize,
    who: Culprit,
    kind: BlameKind,
    /// Where the trap form's tail starts (`None` for an accusation).
    tail_at: Option<usize>,
}

fn arr<const N: usize>(b: &[u8], at: usize) -> Option<&[u8; N]> {
    b.get(at..at + N)?.try_into().ok()
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    arr::<2>(b, at).map(|a| u16::from_be_bytes(*a))
}

impl<'a> Parsed<'a> {
    fn parse(bytes: &'a [u8]) -> Option<Self> {
        let trap = match bytes.get(..16)? {
            m if m == MAGIC => false,
            m if m == TRAP_MAGIC => true,
            _ => return None,
        };
        let m = usize::from(be16(bytes, HEADER_LEN - 4)?);
        let n = usize::from(be16(bytes, HEADER_LEN - 2)?);
        let nonces_at = HEADER_LEN;
        let clients_at = nonces_at + m * NONCE_LEN;
        let trustees_at = clients_at + n * client_entry_len(m);
        let disputes_at = trustees_at + m * trustee_entry_len(n) + 2;
        let disputes = usize::from(be16(bytes, disputes_at - 2)?);
        let verdict_at = disputes_at + disputes * DISPUTE_LEN;
        let tail = if trap { TRAP_TAIL_LEN } else { 0 };
        if bytes.len() != verdict_at + VERDICT_LEN + tail {
            return None;
        }
        // Flag bytes are 0 or 1, nothing else: one encoding per evidence.
        let flags = (0..n)
            .map(|p| clients_at + p * client_entry_len(m) + 2 + NONCE_LEN + 32)
            .chain((0..m).map(|t| trustees_at + t * trustee_entry_len(n) + 32))
            .chain((0..disputes).map(|d| disputes_at + d * DISPUTE_LEN + 4));
        for at in flags {
            if *bytes.get(at)? > 1 {
                return None;
            }
        }
        let kind = BlameKind::from_u8(*bytes.get(verdict_at)?)?;
        let index = be16(bytes, verdict_at + 2)?;
        let who = match bytes.get(verdict_at + 1)? {
            0 => Culprit::Client(index),
            1 => Culprit::Trustee(index),
            2 if index == 0 => Culprit::Relay,
            _ => return None,
        };
        Some(Parsed {
            bytes,
            m,
            n,
            nonces_at,
            clients_at,
            trustees_at,
            disputes_at,
            disputes,
            who,
            kind,
            tail_at: trap.then_some(verdict_at + VERDICT_LEN),
        })
    }

    fn field<const N: usize>(&self, at: usize) -> &'a [u8; N] {
        arr::<N>(self.bytes, at).unwrap_or(&[0; N])
    }

    fn client_at(&self, p: usize) -> usize {
        self.clients_at + p * client_entry_len(self.m)
    }

    fn trustee_at(&self, t: usize) -> usize {
        self.trustees_at + t * trustee_entry_len(self.n)
    }

    fn client_nonce(&self, p: usize) -> &'a [u8; NONCE_LEN] {
        self.field(self.client_at(p) + 2)
    }

    fn trustee_nonce(&self, t: usize) -> &'a [u8; NONCE_LEN] {
        self.field(self.nonces_at + t * NONCE_LEN)
    }

    fn client_bits(&self, p: usize) -> &'a [u8] {
        let at = self.client_at(p) + 2 + NONCE_LEN + 33;
        self.bytes
            .get(at..at + bits::bitmap_len(self.m))
            .unwrap_or(&[])
    }

    fn trustee_bits(&self, t: usize) -> &'a [u8] {
        let at = self.trustee_at(t) + 33;
        self.bytes
            .get(at..at + bits::bitmap_len(self.n))
            .unwrap_or(&[])
    }
}

impl Reveals for Parsed<'_> {
    fn clients(&self) -> usize {
        self.n
    }
    fn trustees(&self) -> usize {
        self.m
    }
    fn client_index(&self, p: usize) -> u16 {
        be16(self.bytes, self.client_at(p)).unwrap_or(0)
    }
    fn client_cell_bit(&self, p: usize) -> bool {
        self.bytes.get(self.client_at(p) + 2 + NONCE_LEN + 32) == Some(&1)
    }
    fn client_pad_bit(&self, p: usize, t: usize) -> bool {
        bits::test(self.client_bits(p), t)
    }
    fn trustee_cell_bit(&self, t: usize) -> bool {
        self.bytes.get(self.trustee_at(t) + 32) == Some(&1)
    }
    fn trustee_pad_bit(&self, t: usize, p: usize) -> bool {
        bits::test(self.trustee_bits(t), p)
    }
}

/// Checks evidence from public keys only: the accusation's proof, every reveal's
/// signature, the verdict the reveals force (settling a dispute with the proven
/// Diffie–Hellman secret and the pad derivation), and that it is the recorded one.
pub fn verify(bytes: &[u8], keys: &impl Directory) -> Result<Verified, EvidenceError> {
    let e = Parsed::parse(bytes).ok_or(EvidenceError::Malformed)?;
    let group_id: &[u8; 16] = e.field(16);
    let session_id: &[u8; 16] = e.field(32);
    let view: &[u8; 32] = e.field(48);
    let interval = u32::from_be_bytes(*e.field(80));
    let exchange = u64::from_be_bytes(*e.field(84));
    let bit = u32::from_be_bytes(*e.field(92));
    let slot = u16::from_be_bytes(*e.field(96));
    let pad_nonce: &PadNonce = e.field(98);
    let decoded_hash: [u8; 32] = *e.field(122);
    let proof: [u8; PROOF_LEN] = *e.field(154);
    let pseudonym = keys.pseudonym(slot).ok_or(EvidenceError::UnknownKey)?;
    // The grounds, and the cell length their check uses (the trap form's).
    let (grounds, cell_len) = match e.tail_at {
        Some(at) => (
            Grounds::Trap(TrapGrounds {
                announced: *e.field(at),
                point: *e.field(at + 32),
                proof,
            }),
            u32::from_be_bytes(*e.field(at + 64)),
        ),
        None => (
            Grounds::Accused(Accusation {
                exchange,
                bit,
                proof,
            }),
            0,
        ),
    };
    match &grounds {
        Grounds::Trap(t) => {
            // A sprung trap: the proof shows `Z = r_I·P_s` for the slot's key, and the bit
            // lies in a trap byte, where the owner wrote 0. That `R_I` was the announced
            // point and the length the exchange's is what every member checked before it
            // signed `G`, which covers both.
            let facts = TrapFacts {
                group_id: *group_id,
                session_id: *session_id,
                interval,
                announced: t.announced,
                slot,
                pseudonym,
                exchange,
                len: cell_len as usize,
            };
            t.check(bit, &facts).map_err(EvidenceError::BadTrap)?;
        }
        Grounds::Accused(a) => {
            if !verify_accusation(a, interval, &pseudonym, group_id, session_id, view, slot) {
                return Err(EvidenceError::BadAccusation);
            }
        }
    }
    let grounds = super::grounds::grounds_digest(view, slot, cell_len, &grounds);
    let trustee_nonces = nonces_digest((0..e.m).map(|t| e.trustee_nonce(t)));
    let client_nonces = nonces_digest((0..e.n).map(|p| e.client_nonce(p)));
    let mut last = None;
    // A node that did not reveal has a signature of zeros.
    let mut absent = false;
    for p in 0..e.n {
        let index = e.client_index(p);
        if last.is_some_and(|l| l >= index) {
            return Err(EvidenceError::Malformed);
        }
        last = Some(index);
        let k = keys.client(index).ok_or(EvidenceError::UnknownKey)?;
        let mut own = [0u8; 32];
        own[..NONCE_LEN].copy_from_slice(e.client_nonce(p));
        let at = e.client_at(p) + 2 + NONCE_LEN;
        let s = Statement {
            group_id,
            session_id,
            who: Culprit::Client(index),
            interval,
            exchange,
            bit,
            grounds: &grounds,
            pad_nonce,
            trustee_nonces: &trustee_nonces,
            own: &own,
            decoded_hash: &decoded_hash,
            cell_hash: e.field(at),
            cell_bit: e.bytes.get(at + 32) == Some(&1),
            bits: e.client_bits(p),
            count: e.m as u16,
        };
        let sig = e.field::<64>(at + 33 + bits::bitmap_len(e.m));
        // Every byte counts: a cell bit is 0 or 1, and an absent reveal is zeros.
        if !entry_well_formed(e.bytes, at, bits::bitmap_len(e.m), sig) {
            return Err(EvidenceError::Malformed);
        }
        if *sig == [0; 64] {
            absent = true;
            continue;
        }
        // A member not shown the decoded cell signed zeros for it.
        let unshown = Statement {
            decoded_hash: &[0; 32],
            ..s
        };
        if !s.verify(&k.identity, sig) && !unshown.verify(&k.identity, sig) {
            return Err(EvidenceError::BadSignature(p));
        }
    }
    for t in 0..e.m {
        let k = keys.trustee(t as u16).ok_or(EvidenceError::UnknownKey)?;
        let at = e.trustee_at(t);
        let s = Statement {
            group_id,
            session_id,
            who: Culprit::Trustee(t as u16),
            interval,
            exchange,
            bit,
            grounds: &grounds,
            pad_nonce,
            trustee_nonces: &trustee_nonces,
            own: &client_nonces,
            decoded_hash: &[0; 32],
            cell_hash: e.field(at),
            cell_bit: e.bytes.get(at + 32) == Some(&1),
            bits: e.trustee_bits(t),
            count: e.n as u16,
        };
        let sig = e.field::<64>(at + 33 + bits::bitmap_len(e.n));
        if !entry_well_formed(e.bytes, at, bits::bitmap_len(e.n), sig) {
            return Err(EvidenceError::Malformed);
        }
        if *sig == [0; 64] {
            absent = true;
            continue;
        }
        if !s.verify(&k.identity, sig) {
            return Err(EvidenceError::BadSignature(e.n + t));
        }
    }
    // A dispute's prover is 0 (the member) or 1 (the trustee).
    if (0..e.disputes).any(|d| {
        !matches!(
            e.bytes.get(e.disputes_at + d * DISPUTE_LEN + 4),
            Some(0 | 1)
        )
    }) {
        return Err(EvidenceError::Malformed);
    }
    let verified = |who, kind, offline| Verified {
        interval,
        exchange,
        bit,
        slot,
        trap: e.tail_at.is_some(),
        who,
        kind,
        offline,
        decoded_hash,
    };
    if e.kind == BlameKind::RefusedBlame {
        // The relay's word, but only about a node whose signed reveal the evidence lacks
        // (the relay keeps every reveal that checks), or a member in a dispute that no
        // proof in it settles.
        let client_signed = |p: usize| {
            *e.field::<64>(e.client_at(p) + 2 + NONCE_LEN + 33 + bits::bitmap_len(e.m)) != [0; 64]
        };
        let founded = match e.who {
            Culprit::Client(i) => match (0..e.n).find(|&p| e.client_index(p) == i) {
                Some(p) if !client_signed(p) => true,
                Some(p) => {
                    !absent
                        && e.disputes == 0
                        && matches!(judge(&e), Finding::Dispute { position, .. } if position == p)
                }
                None => false,
            },
            Culprit::Trustee(t) => {
                let t = usize::from(t);
                t < e.m && *e.field::<64>(e.trustee_at(t) + 33 + bits::bitmap_len(e.n)) == [0; 64]
            }
            Culprit::Relay => false,
        };
        if !founded {
            return Err(EvidenceError::UnfoundedRefusal);
        }
        return Ok(verified(e.who, e.kind, false));
    }
    if absent {
        // Only a member that convicts itself by its own signed reveal is convicted without
        // every reveal (a trustee that cannot take part in blame, for one).
        let position = (0..e.n).find(|&p| Culprit::Client(e.client_index(p)) == e.who);
        let convicts_itself = position.is_some_and(|p| {
            let at = e.client_at(p) + 2 + NONCE_LEN + 33 + bits::bitmap_len(e.m);
            let pads = (0..e.m).fold(false, |x, t| x ^ e.client_pad_bit(p, t));
            *e.field::<64>(at) != [0; 64] && pads != e.client_cell_bit(p)
        });
        if e.kind != BlameKind::Disrupted || !convicts_itself {
            return Err(EvidenceError::Unresolved);
        }
        return Ok(verified(e.who, e.kind, true));
    }
    let (who, kind) = match judge(&e) {
        Finding::Convicted { who, kind } => (who, kind),
        Finding::Dispute { position, trustee } => {
            let client = keys
                .client(e.client_index(position))
                .ok_or(EvidenceError::UnknownKey)?;
            let trustee_keys = keys
                .trustee(trustee as u16)
                .ok_or(EvidenceError::UnknownKey)?;
            let facts = DisputeFacts {
                group_id,
                session_id,
                client_dh: &client.dh,
                trustee_dh: &trustee_keys.dh,
                interval,
                trustee_nonce: e.trustee_nonce(trustee),
                client_nonce: e.client_nonce(position),
                pad_nonce,
                bit,
            };
            let truth = (0..e.disputes)
                .map(|d| e.disputes_at + d * DISPUTE_LEN)
                .filter(|&at| {
                    be16(e.bytes, at) == Some(position as u16)
                        && be16(e.bytes, at + 2) == Some(trustee as u16)
                })
                .find_map(|at| {
                    let by_client = e.bytes.get(at + 4) == Some(&0);
                    resolve_dispute(&facts, by_client, e.field(at + 5), e.field(at + 37))
                })
                .ok_or(EvidenceError::Unresolved)?;
            if e.client_pad_bit(position, trustee) != truth {
                (
                    Culprit::Client(e.client_index(position)),
                    BlameKind::LiedAboutPad,
                )
            } else {
                (Culprit::Trustee(trustee as u16), BlameKind::LiedAboutPad)
            }
        }
    };
    if (who, kind) != (e.who, e.kind) {
        return Err(EvidenceError::WrongVerdict { who, kind });
    }
    Ok(verified(who, kind, true))
}

/// Whether a reveal entry (cell hash at `at`, cell bit, `bits_len` bytes of pad bits, then
/// `sig`) is well formed: its cell bit 0 or 1, and all zeros if it has no signature.
fn entry_well_formed(bytes: &[u8], at: usize, bits_len: usize, sig: &[u8; 64]) -> bool {
    let Some(entry) = bytes.get(at..at + 33 + bits_len) else {
        return false;
    };
    let bit_ok = matches!(entry.get(32), Some(0 | 1));
    bit_ok && (*sig != [0; 64] || entry.iter().all(|&b| b == 0))
}

/// SHA-256 of a cell (what reveals sign and the evidence names).
pub fn cell_hash(cell: &[u8]) -> [u8; 32] {
    Sha256::digest(cell).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Nobody;

    impl Directory for Nobody {
        fn client(&self, _: u16) -> Option<MemberKeys> {
            None
        }
        fn trustee(&self, _: u16) -> Option<MemberKeys> {
            None
        }
        fn pseudonym(&self, _: u16) -> Option<[u8; 32]> {
            None
        }
    }

    /// The trap form, byte for byte (docs/protocol.md, "Evidence file"; the digest
    /// recomputed apart with Python's `hashlib` from the layout).
    #[test]
    fn trap_form_vector() {
        let grounds = Grounds::Trap(TrapGrounds {
            announced: [0x99; 32],
            point: [0xaa; 32],
            proof: [0x66; PROOF_LEN],
        });
        let h = Header {
            group_id: &[1; 16],
            session_id: &[2; 16],
            view: &[3; 32],
            interval: 7,
            exchange: 300,
            bit: 1234,
            grounds: &grounds,
            cell_len: 256,
            slot: 3,
            pad_nonce: &[0x33; 24],
            decoded_hash: &[0x44; 32],
            trustee_nonces: &[0x11; NONCE_LEN],
            trustees: 1,
            clients: 1,
        };
        let len = evidence_len(1, 1, 0) + TRAP_TAIL_LEN;
        let mut out = [0u8; 600];
        let mut w = EvidenceWriter::new(&h, 0, &mut out[..len]).unwrap();
        w.client(0, &[0x21; NONCE_LEN], &[0x55; 32], true, &[1], &[0x77; 64]);
        w.trustee(&[0x55; 32], false, &[1], &[0x88; 64]);
        assert_eq!(w.finish(Culprit::Client(0), BlameKind::Disrupted), len);
        assert_eq!(len, 526);
        let bytes = &out[..len];
        assert_eq!(&bytes[..16], TRAP_MAGIC);
        assert_eq!(&bytes[154..218], &[0x66; 64]);
        assert_eq!(&bytes[len - 4..], &[0, 0, 1, 0]);
        assert_eq!(
            cell_hash(bytes),
            [
                0x62, 0xb3, 0xdb, 0x16, 0x9c, 0x28, 0xad, 0x73, 0x27, 0x05, 0x05, 0x94, 0x1b, 0x89,
                0x68, 0xe9, 0x6b, 0xb2, 0x03, 0x24, 0xe8, 0xf9, 0x5c, 0xe6, 0xa1, 0xab, 0x88, 0xab,
                0x6a, 0x0d, 0x1f, 0x39,
            ]
        );
        // It parses (the keys are what is missing); without its tail, or under the
        // accusation's magic, it does not.
        assert_eq!(verify(bytes, &Nobody), Err(EvidenceError::UnknownKey));
        assert_eq!(
            verify(&bytes[..len - TRAP_TAIL_LEN], &Nobody),
            Err(EvidenceError::Malformed)
        );
        let mut other = bytes.to_vec();
        other[..16].copy_from_slice(MAGIC);
        assert_eq!(verify(&other, &Nobody), Err(EvidenceError::Malformed));
    }
}
