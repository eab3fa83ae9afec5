//! What a blame round stands on, as a `BlameRequest` carries it, and the check every
//! member makes before it reveals anything.
//!
//! ```text
//! Grounds = 0x00 ‖ Accusation (76)      the slot owner's `Accuse` record (accuse.rs)
//!         | 0x01 ‖ TrapGrounds (128)    a trap the relay found sprung (trap.rs)
//! ```
//!
//! Owns the tag and the dispatch of the check. It must not run the round.

use super::trap::{TrapError, TrapFacts, TrapGrounds, TRAP_GROUNDS_LEN};
use crate::wire::{Accusation, ACCUSE_LEN};

/// Tag of an owner's accusation.
pub const GROUNDS_ACCUSED: u8 = 0;
/// Tag of a sprung trap.
pub const GROUNDS_TRAP: u8 = 1;
/// Bytes of the longest grounds.
pub const MAX_GROUNDS_LEN: usize = 1 + TRAP_GROUNDS_LEN;

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
