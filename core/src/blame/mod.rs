//! Blame: an owner's accusation of a disrupted exchange, the members' signed reveals, the
//! verdict they force, and the evidence anyone can check offline.
//!
//! - [`accuse`]: the owner's accusation (an `Accuse` record: exchange, bit and its
//!   pseudonym proof) and the choice of the bit (one where the owner wrote 0 and the
//!   decoded cell has 1, never one where it wrote 1).
//! - [`reveal`]: what a member signs with its identity key when it reveals its part of an
//!   exchange at one bit: its cell's hash and bit, its pad bits, and the nonces its pads
//!   were made with; and [`reveal::Shown`], the other side's reveal a dispute's request
//!   must show before a member proves a pair's Diffie–Hellman secret.
//! - [`mod@judge`]: the verdict the reveals force (a member whose cell bit is not the XOR of
//!   its own pad bits convicts itself; a pair that disagrees about its pad bit is a
//!   dispute, settled by the pair's Diffie–Hellman secret with a DLEQ proof; everyone
//!   consistent means the cells XOR to 0 at the bit: the relay's decoding was false).
//! - [`trap`]: the grounds of a round the relay starts itself, a sprung trap byte (the
//!   slot's trap point and the relay's DLEQ proof of it), and every member's check.
//! - [`grounds`]: what a `BlameRequest` stands on (an accusation or a sprung trap).
//! - [`horizon`]: how far behind a slot's latest exchanges a round may begin, and so how
//!   many owned cells an owner keeps.
//! - [`evidence`]: the evidence file's binary format, written once and checked once
//!   ([`evidence::verify`]) from public keys only.
//!
//! Owns the blame statements and their checks. It must not know links, timers or storage
//! of a role: the relay, clients and trustees call it with what they hold. No allocation.

pub mod accuse;
pub mod commit;
pub mod evidence;
pub mod grounds;
pub mod horizon;
pub mod judge;
pub mod reveal;
pub mod trap;

#[cfg(feature = "pseudonyms")]
pub use accuse::prove_accusation;
pub use accuse::{pick_bit, verify_accusation};
pub use evidence::{
    cell_hash, evidence_len, verify, Directory, EvidenceError, EvidenceWriter, Header, MemberKeys,
    ProvenDispute, Verified,
};
pub use grounds::{grounds_digest, Facts, Grounds, GroundsError, MAX_GROUNDS_LEN};
pub use horizon::{keep_horizon, largest_window, within_answered, within_horizon, ANSWERED};
pub use judge::{judge, resolve_dispute, DisputeFacts, Finding, Reveals};
pub use reveal::{dh_context, nonces_digest, DhRequest, Round, Shown, Statement, DH_CONTEXT_LEN};
pub use trap::{trap_context, TrapError, TrapFacts, TrapGrounds, TRAP_GROUNDS_LEN};

/// Who a verdict names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Culprit {
    /// A client, by its index in the group.
    Client(u16),
    /// A trustee, by index.
    Trustee(u16),
    /// The relay.
    Relay,
}

/// Why a member or the relay was named.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum BlameKind {
    /// Its signed cell bit is not the XOR of its own signed pad bits (plaintext 0 at the
    /// accused bit): it wrote 1 there, and signed it. Offline-verifiable.
    Disrupted = 1,
    /// Its signed claim about a pad bit it shares with a peer differs from the bit the
    /// pair's proven Diffie–Hellman secret gives. Offline-verifiable.
    LiedAboutPad = 2,
    /// Every reveal is consistent, so the cells XOR to 0 at the bit the relay decoded as
    /// 1: the relay's decoding was false. Offline-verifiable against the decoded cell
    /// every member was sent.
    ForgedDecoding = 3,
    /// No reveal, a reveal whose cell does not match the relay's fingerprint, or a bad
    /// signature: the relay's own observation, not offline-verifiable.
    RefusedBlame = 4,
}

impl BlameKind {
    /// The kind of a wire byte.
    pub fn from_u8(b: u8) -> Option<Self> {
        match b {
            1 => Some(BlameKind::Disrupted),
            2 => Some(BlameKind::LiedAboutPad),
            3 => Some(BlameKind::ForgedDecoding),
            4 => Some(BlameKind::RefusedBlame),
            _ => None,
        }
    }
}

impl core::fmt::Display for BlameKind {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            BlameKind::Disrupted => "disrupted an exchange",
            BlameKind::LiedAboutPad => "lied about a pad bit",
            BlameKind::ForgedDecoding => "forged a decoding",
            BlameKind::RefusedBlame => "refused blame",
        })
    }
}

impl Culprit {
    /// The culprit of a `Blamed` frame's `role` (0 a client, 1 a trustee, 2 the relay) and
    /// `index`; `None` for another role.
    pub fn from_wire(role: u8, index: u16) -> Option<Self> {
        match role {
            0 => Some(Culprit::Client(index)),
            1 => Some(Culprit::Trustee(index)),
            2 => Some(Culprit::Relay),
            _ => None,
        }
    }

    /// The `role` and `index` of a `Blamed` frame (index 0 for the relay).
    pub fn to_wire(self) -> (u8, u16) {
        match self {
            Culprit::Client(i) => (0, i),
            Culprit::Trustee(j) => (1, j),
            Culprit::Relay => (2, 0),
        }
    }
}

impl core::fmt::Display for Culprit {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Culprit::Client(i) => write!(f, "client {i}"),
            Culprit::Trustee(j) => write!(f, "trustee {j}"),
            Culprit::Relay => f.write_str("the relay"),
        }
    }
}

/// Queues `item` at the back of `queue`, dropping the oldest entry when it is full (a
/// member's pending blame answers: the newest request is the one a relay waits for).
#[cfg(feature = "blame-round")]
pub(crate) fn push_newest<T, const N: usize>(queue: &mut heapless::Deque<T, N>, item: T) {
    if queue.is_full() {
        queue.pop_front();
    }
    let _ = queue.push_back(item);
}
