//! The verdict that members' reveals at one bit force.
//!
//! Every member's plaintext is 0 at an accused bit (the owner's included: it accuses only
//! where it wrote 0), so an honest member's cell bit is the XOR of its pad bits. In order:
//!
//! 1. A client, then a trustee, whose cell bit is not the XOR of its own pad bits convicts
//!    itself ([`super::BlameKind::Disrupted`]).
//! 2. A (client, trustee) pair whose claims about their shared pad bit differ is a
//!    dispute: the pair's Diffie–Hellman secret, proven with a DLEQ proof by either side,
//!    gives the true bit ([`resolve_dispute`]) and the side that claimed otherwise is
//!    convicted ([`super::BlameKind::LiedAboutPad`]).
//! 3. Otherwise every pad bit appears twice, so the cells XOR to 0 at the bit, which the
//!    relay decoded as 1: the relay's decoding was false
//!    ([`super::BlameKind::ForgedDecoding`]).
//!
//! Owns the rules; the relay and the offline verifier both call it, with the reveals they
//! hold.

use crate::crypto::{pad_bit, PadNonce, PairKey};
use crate::ristretto::dleq;
use crate::NONCE_LEN;

use super::reveal::dh_context;
use super::{BlameKind, Culprit};

/// The reveals of one blame round: `clients()` members (by position in the interval's
/// member list) and `trustees()` trustees.
pub trait Reveals {
    /// Members revealed.
    fn clients(&self) -> usize;
    /// Trustees revealed.
    fn trustees(&self) -> usize;
    /// The group index of the member at `position`.
    fn client_index(&self, position: usize) -> u16;
    /// The cell bit the member at `position` signed.
    fn client_cell_bit(&self, position: usize) -> bool;
    /// The pad bit the member at `position` claims to share with trustee `trustee`.
    fn client_pad_bit(&self, position: usize, trustee: usize) -> bool;
    /// The cell bit trustee `trustee` signed.
    fn trustee_cell_bit(&self, trustee: usize) -> bool;
    /// The pad bit trustee `trustee` claims to share with the member at `position`.
    fn trustee_pad_bit(&self, trustee: usize, position: usize) -> bool;
}

/// What the reveals show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finding {
    /// Someone is convicted by its own signed reveal, or the relay by all of them.
    Convicted {
        /// Who.
        who: Culprit,
        /// Why.
        kind: BlameKind,
    },
    /// The member at `position` and trustee `trustee` disagree about their pad bit: ask
    /// both for their Diffie–Hellman secret and call [`resolve_dispute`].
    Dispute {
        /// The member's position.
        position: usize,
        /// The trustee.
        trustee: usize,
    },
}

/// The verdict of `reveals` (see the module).
pub fn judge(reveals: &impl Reveals) -> Finding {
    let (n, m) = (reveals.clients(), reveals.trustees());
    for p in 0..n {
        let pads = (0..m).fold(false, |x, t| x ^ reveals.client_pad_bit(p, t));
        if pads != reveals.client_cell_bit(p) {
            return Finding::Convicted {
                who: Culprit::Client(reveals.client_index(p)),
                kind: BlameKind::Disrupted,
            };
        }
    }
    for t in 0..m {
        let pads = (0..n).fold(false, |x, p| x ^ reveals.trustee_pad_bit(t, p));
        if pads != reveals.trustee_cell_bit(t) {
            return Finding::Convicted {
                who: Culprit::Trustee(t as u16),
                kind: BlameKind::Disrupted,
            };
        }
    }
    for p in 0..n {
        for t in 0..m {
            if reveals.client_pad_bit(p, t) != reveals.trustee_pad_bit(t, p) {
                return Finding::Dispute {
                    position: p,
                    trustee: t,
                };
            }
        }
    }
    Finding::Convicted {
        who: Culprit::Relay,
        kind: BlameKind::ForgedDecoding,
    }
}

/// A proven Diffie–Hellman secret of a disputed pair, and the public facts that fix the
/// pair's pad at the accused bit.
#[derive(Debug, Clone, Copy)]
pub struct DisputeFacts<'a> {
    /// The group.
    pub group_id: &'a [u8; 16],
    /// The session.
    pub session_id: &'a [u8; 16],
    /// The client's pad public key.
    pub client_dh: &'a [u8; 32],
    /// The trustee's pad public key.
    pub trustee_dh: &'a [u8; 32],
    /// The interval.
    pub interval: u32,
    /// The trustee's nonce for the interval (as both signed).
    pub trustee_nonce: &'a [u8; NONCE_LEN],
    /// The client's link nonce (as both signed).
    pub client_nonce: &'a [u8; NONCE_LEN],
    /// The exchange's pad nonce (as both signed).
    pub pad_nonce: &'a PadNonce,
    /// The accused bit.
    pub bit: u32,
}

/// The true pad bit of a disputed pair, from `shared` (the pair's Diffie–Hellman secret)
/// proven by `proof`, made by the client (`by_client`) or the trustee; `None` if the
/// proof does not prove it.
pub fn resolve_dispute(
    facts: &DisputeFacts<'_>,
    by_client: bool,
    shared: &[u8; 32],
    proof: &[u8; dleq::PROOF_LEN],
) -> Option<bool> {
    let context = dh_context(
        facts.group_id,
        facts.session_id,
        facts.client_dh,
        facts.trustee_dh,
    );
    let (prover, peer) = if by_client {
        (facts.client_dh, facts.trustee_dh)
    } else {
        (facts.trustee_dh, facts.client_dh)
    };
    dleq::verify_dh(&context, prover, peer, shared, proof).ok()?;
    let key = PairKey::from_shared(
        shared,
        facts.group_id,
        facts.session_id,
        facts.client_dh,
        facts.trustee_dh,
    )
    .interval_key(facts.interval, facts.trustee_nonce, facts.client_nonce);
    Some(pad_bit(&key, facts.pad_nonce, facts.bit))
}
