//! The evidence of a blame round: one binary format, written by the relay and checked by
//! anyone from public keys only ([`verify`]).
//!
//! Layout (big-endian integers; `m` trustees, `n` revealed members, bitmaps least
//! significant bit first):
//!
//! ```text
//! magic "DISSENT-BLAME-v4" (an owner's accusation) | "DISSENT-TRAPS-v4" (a sprung trap)
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
use super::reveal::{nonces_digest, Round, Statement};
use super::trap::{TrapError, TrapFacts, TrapGrounds};
use super::{BlameKind, Culprit};
use crate::wire::Accusation;

mod verify;
mod write;

pub use verify::verify;
pub use write::{Draft, Entry, EvidenceWriter};

/// The first bytes of every evidence file.
///
/// The version is the pads' (4: XChaCha12): a file's pad bits and disputes are checked
/// with the pads of its version, so a file of another one is refused
/// ([`EvidenceError::Version`]), never judged with the wrong pads.
pub const MAGIC: &[u8; 16] = b"DISSENT-BLAME-v4";
/// The first bytes of the evidence of a round on a sprung trap.
pub const TRAP_MAGIC: &[u8; 16] = b"DISSENT-TRAPS-v4";
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
    /// Evidence of another protocol version (its last magic byte), whose pads this build
    /// does not compute (version 3's were XChaCha20).
    Version(u8),
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
            EvidenceError::Version(v) => write!(
                f,
                "blame evidence of protocol version {}, not 4: check it with a build of that version",
                char::from(*v)
            ),
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
    /// The dispute whose proof settled the verdict, if one did.
    pub dispute: Option<ProvenDispute>,
}

/// A dispute settled by a proof of the pair's Diffie–Hellman secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProvenDispute {
    /// The client of the pair (its index).
    pub client: u16,
    /// The trustee of the pair.
    pub trustee: u16,
    /// Whether the trustee proved the secret (else the client did).
    pub by_trustee: bool,
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

fn arr<const N: usize>(b: &[u8], at: usize) -> Option<&[u8; N]> {
    b.get(at..at + N)?.try_into().ok()
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    arr::<2>(b, at).map(|a| u16::from_be_bytes(*a))
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
                0x4f, 0xbe, 0x38, 0x05, 0xfc, 0xc7, 0x49, 0xc9, 0x77, 0xb4, 0xe5, 0x0c, 0x9a, 0x80,
                0x61, 0x4e, 0x13, 0x7f, 0xe8, 0x84, 0x99, 0x69, 0x6a, 0x4d, 0x45, 0xdf, 0xd0, 0x05,
                0xf7, 0xd4, 0xe3, 0x4a,
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
        // The same file under version 3's magic (XChaCha20 pads) is refused by its version,
        // under either form, before anything in it is judged.
        for magic in [b"DISSENT-TRAPS-v3", b"DISSENT-BLAME-v3"] {
            other[..16].copy_from_slice(magic);
            assert_eq!(verify(&other, &Nobody), Err(EvidenceError::Version(b'3')));
        }
        other[15] = 0xff;
        assert_eq!(verify(&other, &Nobody), Err(EvidenceError::Malformed));
    }
}
