//! The grounds of a blame round the relay starts itself: a *sprung trap*. Every owned cell
//! is laid out around secret trap bytes where its owner writes 0 (`wire::slot`); a decoded
//! cell with a non-zero trap byte was changed by someone else. The relay names a bit `b`
//! set in such a byte and shows why only the owner's zero can be there:
//!
//! ```text
//! Grounds = R_I (32) ‖ Z (32) ‖ proof (64)
//! R_I     = r_I · G                (the trap point interval I's IntervalStart announced)
//! Z       = r_I · P_s              (the slot's trap point; wire::TrapKey derives from it)
//! proof   = DLEQ: log_G(R_I) = log_{P_s}(Z)     (ristretto::dleq, context below)
//! context = "dissent-rs v3 trap" ‖ group_id (16) ‖ session_id (16) ‖ interval (u32 BE)
//!           ‖ slot (u16 BE)
//! ```
//!
//! A member (client or trustee) checks, before it reveals anything: `R_I` is the point the
//! interval's `IntervalStart` announced (every trustee confirmed that view), the proof holds
//! for slot `s`'s pseudonym public key `P_s`, and `b` lies in the trap byte of its block in
//! exchange `e` under the key derived from `Z`. The owner wrote 0 in every trap byte, so the
//! round cannot expose it; a relay that names any other bit, or shows another `Z`, gets
//! the same refusal from every member, since every check uses only what all of them hold.
//!
//! Owns the trap grounds' format, proof and check. It must not lay cells out (that is
//! `wire::slot`) or run the round.

use rand_core::CryptoRngCore;

use crate::ristretto::dleq::{self, PROOF_LEN};
use crate::ristretto::keys::{PublicKey, SecretKey};
use crate::wire::TrapKey;

const TRAP_LABEL: &[u8] = b"dissent-rs v3 trap";

/// Bytes of trap grounds: the interval's trap point, the slot's and the proof.
pub const TRAP_GROUNDS_LEN: usize = 32 + 32 + PROOF_LEN;
/// Bytes of the proof's context.
pub const TRAP_CONTEXT_LEN: usize = TRAP_LABEL.len() + 16 + 16 + 4 + 2;

/// Why a member refuses trap grounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrapError {
    /// The grounds are not `TRAP_GROUNDS_LEN` bytes.
    Malformed,
    /// The relay's trap point is not the one the interval announced.
    WrongAnnouncement,
    /// The proof does not show `Z = r_I·P_s` for this slot.
    BadProof,
    /// The bit is not in a trap byte of the exchange (or not in the cell).
    NotATrap,
}

impl core::fmt::Display for TrapError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            TrapError::Malformed => "trap grounds of the wrong length",
            TrapError::WrongAnnouncement => "trap point not the one the interval announced",
            TrapError::BadProof => "trap point not proven for this slot",
            TrapError::NotATrap => "the bit is not in a trap byte",
        })
    }
}

impl core::error::Error for TrapError {}

/// The context of a trap proof.
pub fn trap_context(
    group_id: &[u8; 16],
    session_id: &[u8; 16],
    interval: u32,
    slot: u16,
) -> [u8; TRAP_CONTEXT_LEN] {
    let mut c = [0u8; TRAP_CONTEXT_LEN];
    let parts: [&[u8]; 5] = [
        TRAP_LABEL,
        group_id,
        session_id,
        &interval.to_be_bytes(),
        &slot.to_be_bytes(),
    ];
    let mut at = 0;
    for p in parts {
        crate::field::put(&mut c, at, p);
        at += p.len();
    }
    c
}

/// What every member holds to check trap grounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrapFacts {
    /// The group id.
    pub group_id: [u8; 16],
    /// The session id.
    pub session_id: [u8; 16],
    /// The interval.
    pub interval: u32,
    /// The trap point the interval's `IntervalStart` announced (`R_I`).
    pub announced: [u8; 32],
    /// The slot of the exchange.
    pub slot: u16,
    /// Slot `slot`'s pseudonym public key (`P_s`).
    pub pseudonym: [u8; 32],
    /// The exchange.
    pub exchange: u64,
    /// The exchange's cell length.
    pub len: usize,
}

/// A sprung trap's grounds: the interval's and the slot's trap points and the relay's
/// proof that they share `r_I`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrapGrounds {
    /// `R_I = r_I·G`.
    pub announced: [u8; 32],
    /// `Z = r_I·P_s`.
    pub point: [u8; 32],
    /// The DLEQ proof that `log_G(R_I) = log_{P_s}(Z)`.
    pub proof: [u8; PROOF_LEN],
}

impl TrapGrounds {
    /// The relay's grounds for `slot` in `interval`: `trap` is its trap secret `r_I`.
    /// `None` if `pseudonym` is not a valid key.
    pub fn prove(
        trap: &SecretKey,
        pseudonym: &[u8; 32],
        group_id: &[u8; 16],
        session_id: &[u8; 16],
        interval: u32,
        slot: u16,
        rng: &mut impl CryptoRngCore,
    ) -> Option<Self> {
        let base = PublicKey::from_bytes(pseudonym).ok()?;
        let context = trap_context(group_id, session_id, interval, slot);
        let (point, proof) = dleq::prove(&context, trap, base.point(), rng);
        Some(TrapGrounds {
            announced: trap.public_key().to_bytes(),
            point,
            proof,
        })
    }

    /// Parses grounds from exactly [`TRAP_GROUNDS_LEN`] bytes.
    pub fn parse(bytes: &[u8]) -> Result<Self, TrapError> {
        let bytes: &[u8; TRAP_GROUNDS_LEN] = bytes.try_into().map_err(|_| TrapError::Malformed)?;
        let (announced, rest) = bytes
            .split_first_chunk::<32>()
            .ok_or(TrapError::Malformed)?;
        let (point, proof) = rest.split_first_chunk::<32>().ok_or(TrapError::Malformed)?;
        let proof: [u8; PROOF_LEN] = proof.try_into().map_err(|_| TrapError::Malformed)?;
        Ok(TrapGrounds {
            announced: *announced,
            point: *point,
            proof,
        })
    }

    /// The grounds' bytes.
    pub fn to_bytes(&self) -> [u8; TRAP_GROUNDS_LEN] {
        let mut b = [0u8; TRAP_GROUNDS_LEN];
        crate::field::put(&mut b, 0, &self.announced);
        crate::field::put(&mut b, 32, &self.point);
        crate::field::put(&mut b, 64, &self.proof);
        b
    }

    /// The trap key these grounds give (for a member that checked them).
    pub fn trap_key(&self, facts: &TrapFacts) -> TrapKey {
        TrapKey::from_point(
            &self.point,
            &facts.group_id,
            &facts.session_id,
            facts.interval,
            facts.slot,
        )
    }

    /// A member's check before it reveals `bit` of `facts.exchange`: the announced trap
    /// point, the proof for the slot's key, and the bit in a trap byte of the exchange.
    pub fn check(&self, bit: u32, facts: &TrapFacts) -> Result<(), TrapError> {
        if self.announced != facts.announced {
            return Err(TrapError::WrongAnnouncement);
        }
        let context = trap_context(
            &facts.group_id,
            &facts.session_id,
            facts.interval,
            facts.slot,
        );
        let points = (
            PublicKey::from_bytes(&self.announced),
            PublicKey::from_bytes(&facts.pseudonym),
            PublicKey::from_bytes(&self.point),
        );
        let (Ok(announced), Ok(pseudonym), Ok(point)) = points else {
            return Err(TrapError::BadProof);
        };
        dleq::verify(
            &context,
            &announced,
            pseudonym.point(),
            point.point(),
            &self.proof,
        )
        .map_err(|_| TrapError::BadProof)?;
        if !self
            .trap_key(facts)
            .is_trap_bit(facts.exchange, facts.len, bit)
        {
            return Err(TrapError::NotATrap);
        }
        Ok(())
    }
}
