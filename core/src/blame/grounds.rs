//! What a blame round stands on, as a `BlameRequest` carries it, and the check every
//! member makes before it reveals anything.
//!
//! ```text
//! Grounds = 0x00 ‖ Accusation (76)      the slot owner's `Accuse` record (accuse.rs)
//!         | 0x01 ‖ TrapGrounds (128)    a trap the relay found sprung (trap.rs)
//! ```
//!
//! Every reveal signs the digest `G` of the grounds it checked ([`grounds_digest`]): the
//! tag and payload, with the view, the slot and (for trap grounds) the cell length its
//! check used, so evidence carries nothing the verdict depends on that no signature
//! covers.
//!
//! Owns the tag, the dispatch of the check and `G`. It must not run the round.

use sha2::{Digest, Sha256};

use super::trap::{TrapError, TrapFacts, TrapGrounds, TRAP_GROUNDS_LEN};
use crate::wire::{Accusation, ACCUSE_LEN};

/// Tag of an owner's accusation.
pub const GROUNDS_ACCUSED: u8 = 0;
/// Tag of a sprung trap.
pub const GROUNDS_TRAP: u8 = 1;
/// Bytes of the longest grounds.
pub const MAX_GROUNDS_LEN: usize = 1 + TRAP_GROUNDS_LEN;

const GROUNDS_LABEL: &[u8] = b"dissent-rs v3 blame grounds";

/// `G`, what every reveal signs of the grounds it checked: SHA-256 of
/// `"dissent-rs v3 blame grounds" ‖ view (32) ‖ slot (u16 BE) ‖ cell length (u32 BE: the
/// exchange's for trap grounds, 0 for an accusation) ‖ tag ‖ payload`.
pub fn grounds_digest(view: &[u8; 32], slot: u16, len: u32, grounds: &Grounds) -> [u8; 32] {
    let mut bytes = [0u8; MAX_GROUNDS_LEN];
    let n = grounds.emit(&mut bytes).unwrap_or(0);
    let len = match grounds {
        Grounds::Accused(_) => 0,
        Grounds::Trap(_) => len,
    };
    Sha256::new()
        .chain_update(GROUNDS_LABEL)
        .chain_update(view)
        .chain_update(slot.to_be_bytes())
        .chain_update(len.to_be_bytes())
        .chain_update(bytes.get(..n).unwrap_or(&[]))
        .finalize()
        .into()
}

/// The grounds of a blame round about `bit` of `exchange` of a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grounds {
    /// The slot's owner accused the exchange (its proof is by the slot's pseudonym key).
    Accused(Accusation),
    /// The relay found a trap byte of the exchange sprung.
    Trap(TrapGrounds),
}

/// What every member holds to check grounds about `bit` of `exchange` of `slot`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Facts {
    /// The group id.
    pub group_id: [u8; 16],
    /// The session id.
    pub session_id: [u8; 16],
    /// The interval's view (`T_start`), which accusations bind.
    pub view: [u8; 32],
    /// The interval.
    pub interval: u32,
    /// The trap point the interval's `IntervalStart` announced.
    pub announced: [u8; 32],
    /// The slot.
    pub slot: u16,
    /// The slot's pseudonym public key.
    pub pseudonym: [u8; 32],
    /// The exchange.
    pub exchange: u64,
    /// The exchange's cell length.
    pub len: usize,
    /// The bit.
    pub bit: u32,
}

/// Why a member refuses a blame round's grounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroundsError {
    /// Not grounds (unknown tag, wrong length).
    Malformed,
    /// An accusation of another exchange or bit, or not proven by the slot's key.
    BadAccusation,
    /// Trap grounds that do not hold.
    Trap(TrapError),
}

impl core::fmt::Display for GroundsError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            GroundsError::Malformed => f.write_str("malformed blame grounds"),
            GroundsError::BadAccusation => f.write_str("accusation not proven by the slot"),
            GroundsError::Trap(e) => write!(f, "trap grounds: {e}"),
        }
    }
}

impl core::error::Error for GroundsError {}

impl Grounds {
    /// Parses grounds (the tag and exactly its payload).
    pub fn parse(bytes: &[u8]) -> Result<Self, GroundsError> {
        let (&tag, rest) = bytes.split_first().ok_or(GroundsError::Malformed)?;
        match tag {
            GROUNDS_ACCUSED if rest.len() == ACCUSE_LEN => Accusation::parse(rest)
                .map(Grounds::Accused)
                .ok_or(GroundsError::Malformed),
            GROUNDS_TRAP => TrapGrounds::parse(rest)
                .map(Grounds::Trap)
                .map_err(|_| GroundsError::Malformed),
            _ => Err(GroundsError::Malformed),
        }
    }

    /// Writes the grounds into `out`; their length, or `None` if `out` is too short.
    pub fn emit(&self, out: &mut [u8]) -> Option<usize> {
        let n = match self {
            Grounds::Accused(a) => {
                let b = a.to_bytes();
                out.get_mut(1..1 + b.len())?.copy_from_slice(&b);
                *out.first_mut()? = GROUNDS_ACCUSED;
                1 + b.len()
            }
            Grounds::Trap(t) => {
                let b = t.to_bytes();
                out.get_mut(1..1 + b.len())?.copy_from_slice(&b);
                *out.first_mut()? = GROUNDS_TRAP;
                1 + b.len()
            }
        };
        Some(n)
    }

    /// A member's check before it reveals anything: the same for every member, from what
    /// every member holds.
    pub fn check(&self, facts: &Facts) -> Result<(), GroundsError> {
        match self {
            Grounds::Accused(a) => {
                let ok = a.exchange == facts.exchange
                    && a.bit == facts.bit
                    && super::verify_accusation(
                        a,
                        facts.interval,
                        &facts.pseudonym,
                        &facts.group_id,
                        &facts.session_id,
                        &facts.view,
                        facts.slot,
                    );
                ok.then_some(()).ok_or(GroundsError::BadAccusation)
            }
            Grounds::Trap(t) => t
                .check(
                    facts.bit,
                    &TrapFacts {
                        group_id: facts.group_id,
                        session_id: facts.session_id,
                        interval: facts.interval,
                        announced: facts.announced,
                        slot: facts.slot,
                        pseudonym: facts.pseudonym,
                        exchange: facts.exchange,
                        len: facts.len,
                    },
                )
                .map_err(GroundsError::Trap),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blame::TrapGrounds;

    fn hex(b: &[u8]) -> std::string::String {
        b.iter().map(|x| std::format!("{x:02x}")).collect()
    }

    /// docs/protocol.md, "Reveal statement": `G` of an accusation and of trap grounds
    /// (cross-checked with Python's hashlib over the documented concatenation).
    #[test]
    fn grounds_digest_vectors() {
        let accused = Grounds::Accused(Accusation {
            exchange: 300,
            bit: 1234,
            proof: [0x66; 64],
        });
        let trap = Grounds::Trap(TrapGrounds {
            announced: [0x99; 32],
            point: [0xaa; 32],
            proof: [0x66; 64],
        });
        // An accusation's `G` has length 0 whatever the length given.
        assert_eq!(
            grounds_digest(&[3; 32], 3, 256, &accused),
            grounds_digest(&[3; 32], 3, 0, &accused)
        );
        assert_eq!(
            hex(&grounds_digest(&[3; 32], 3, 0, &accused)),
            "2f597b18a54088c31424c907f0a4e50c9896ab759223ec0285bd9ac391dd0bd7"
        );
        assert_eq!(
            hex(&grounds_digest(&[3; 32], 3, 256, &trap)),
            "948dd078a2d6dab8a9308498e37a6d56fc6dc0b74543d11f30c0d1bf1a429eec"
        );
        // Every input counts.
        let g = grounds_digest(&[3; 32], 3, 256, &trap);
        assert_ne!(g, grounds_digest(&[4; 32], 3, 256, &trap));
        assert_ne!(g, grounds_digest(&[3; 32], 4, 256, &trap));
        assert_ne!(g, grounds_digest(&[3; 32], 3, 257, &trap));
    }
}
