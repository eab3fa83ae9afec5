//! What the relay reports to its shell: [`RelayEvent`] and why a blame round was dropped
//! ([`BlameDropReason`]). Owns the shapes of those reports only; the relay's files decide
//! when each is raised.

use super::{Exclusion, PeerId, ProbeOutcome, Stall};
use crate::time::Duration;
use crate::wire::{ConnId, GoodbyeReason};

/// Why a blame round was not run ([`RelayEvent::BlameDropped`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BlameDropReason {
    /// One round was running and four were waiting.
    QueueFull,
    /// Its interval ended or is ending, or the exchange's fingerprints or pad nonce are no
    /// longer kept (for an exchange whose fingerprints were kept: [`crate::blame::ANSWERED`]
    /// or more exchanges of the interval were issued after it).
    Forgotten,
    /// Its grounds do not hold for the relay.
    Grounds,
    /// `keep_horizon(window)` or more exchanges of its slot were issued after it
    /// ([`crate::blame::horizon`]): its owner may no longer hold its cell.
    PastHorizon,
}

impl core::fmt::Display for BlameDropReason {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            BlameDropReason::QueueFull => "one round runs and four wait",
            BlameDropReason::Forgotten => "its exchange or interval is gone",
            BlameDropReason::Grounds => "its grounds do not hold",
            BlameDropReason::PastHorizon => {
                "its slot has moved on past the keep horizon: its owner may no longer hold the cell"
            }
        })
    }
}

/// What the relay reports to its shell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RelayEvent<'a> {
    /// Decoded upstream bytes for `conn`, in order.
    Upstream {
        /// The connection.
        conn: ConnId,
        /// First record of the connection: open it at the exit (anew if it exists).
        open: bool,
        /// The bytes; empty only when `open`.
        data: &'a [u8],
    },
    /// The slot owner finished sending on `conn` (like a TCP FIN).
    Close {
        /// The connection.
        conn: ConnId,
    },
    /// The slot owner is done with `conn` in both directions (like a TCP reset): the exit
    /// drops the connection at once, discards what it queued for it and sends nothing more
    /// downstream for it.
    Abort {
        /// The connection.
        conn: ConnId,
    },
    /// The slot owner grants `bytes` more of downstream credit on `conn`.
    Grant {
        /// The connection.
        conn: ConnId,
        /// Credit added.
        bytes: u32,
    },
    /// A slot exchange was disrupted: its cell is not one its owner sealed. Nothing of it
    /// reached the exit; the interval goes on, the slot stays reserved, and the exchange is
    /// reported to every member.
    Garbled {
        /// The interval.
        interval: u32,
        /// The exchange.
        exchange: u64,
    },
    /// An interval started.
    IntervalStarted {
        /// The interval number.
        interval: u32,
        /// Clients in it.
        clients: usize,
    },
    /// An interval ended after decoding `done` exchanges.
    IntervalEnded {
        /// The interval number.
        interval: u32,
        /// Exchanges decoded.
        done: u64,
    },
    /// A peer's link was ended by the relay (a goodbye is on its way).
    Dropped {
        /// The peer.
        peer: PeerId,
        /// Why.
        reason: GoodbyeReason,
    },
    /// A peer joined (its Hello was admitted).
    Joined {
        /// The peer.
        peer: PeerId,
    },
    /// A second process said hello as a connected peer, and the probe of the connected one
    /// settled it.
    Probed {
        /// The peer.
        peer: PeerId,
        /// Which process keeps the peer's place.
        outcome: ProbeOutcome,
    },
    /// A client was penalized for stalling the group: a new Hello from it is refused for
    /// `back_off`. Whether its link is also ended is reported apart
    /// ([`RelayEvent::Dropped`]): a client that came back from a restart keeps its link.
    Penalized {
        /// The client.
        peer: PeerId,
        /// What it did.
        why: Stall,
        /// How long it is refused.
        back_off: Duration,
    },
    /// A client's Hello was refused: it is backed off or on the refusal list.
    Refused {
        /// The client.
        peer: PeerId,
        /// The goodbye it got.
        reason: GoodbyeReason,
    },
    /// A client was put on the refusal list (the shell persists the list).
    Excluded {
        /// The client.
        peer: PeerId,
        /// Why.
        reason: Exclusion,
    },
    /// A slot's owner accused a bit of an exchange of its slot, proven with its pseudonym
    /// key: a disrupted exchange, or a reservation exchange that showed its bit although it
    /// did not ask. The slot is not named (but a reservation exchange's accused bit is its
    /// slot: a shell must not log the bit).
    Accused {
        /// The interval.
        interval: u32,
        /// The accused exchange.
        exchange: u64,
        /// The accused bit.
        bit: u32,
    },
    /// A blame round started: `BlameRequest` goes to every member and trustee.
    BlameStarted {
        /// The interval.
        interval: u32,
        /// The accused exchange.
        exchange: u64,
    },
    /// A trustee joined that takes no part in blame rounds (its Hello said so): rounds do not wait for its reveal, and the ones that need it end
    /// without a verdict on anyone but members that convict themselves or refuse
    /// ([`RelayEvent::BlameIncomplete`]).
    TrusteeWithoutBlame {
        /// The trustee.
        trustee: u16,
    },
    /// A blame round ended without the reveal of every trustee: it convicts only members
    /// that refused or convict themselves. Reported before its [`RelayEvent::BlameEnded`].
    BlameIncomplete {
        /// The interval.
        interval: u32,
        /// The accused exchange.
        exchange: u64,
        /// Bitmap of the trustees without a reveal (bit `j` for trustee `j`).
        absent: u16,
        /// Such rounds since the relay started, this one included.
        count: u64,
    },
    /// A blame round reached its deadline without the reveals of `members` members whose
    /// links were down (or had just come back): none of them is convicted for it. The
    /// round waits for them (parked) and no longer holds its interval; each is admitted to
    /// no interval until it answers (`Relay::owes_blame`, feature `blame-round`).
    BlameAwaiting {
        /// The interval.
        interval: u32,
        /// The accused exchange.
        exchange: u64,
        /// Members it waits for.
        members: u16,
    },
    /// A parked blame round gave up waiting for its `members` members away before its
    /// time: another round parked while [`MAX_PARKED`](super::MAX_PARKED) were parked, and this one parked
    /// first. None of them is convicted for it, and each owes it nothing more. Reported
    /// before its [`RelayEvent::BlameEnded`] (no verdict).
    BlameGaveUp {
        /// The interval.
        interval: u32,
        /// The accused exchange.
        exchange: u64,
        /// Members it waited for.
        members: u16,
    },
    /// A member that owed a blame round its reveal came back from a restart (its Hello has
    /// no resume point): it cannot answer, is taken at its word and penalized, and the
    /// round goes on without its reveal.
    BlameRestarted {
        /// The interval.
        interval: u32,
        /// The accused exchange.
        exchange: u64,
        /// The member.
        client: u16,
    },
    /// A blame round was not run: why.
    BlameDropped {
        /// The interval.
        interval: u32,
        /// The accused exchange.
        exchange: u64,
        /// Why it was not run.
        reason: BlameDropReason,
    },
    /// A blame round ended: the node it named first (every one named is excluded), or
    /// `None` (inconclusive). Its evidence, if any, is `Relay::evidence` (feature
    /// `blame-round`) until the next round ends.
    BlameEnded {
        /// The interval.
        interval: u32,
        /// The accused exchange.
        exchange: u64,
        /// Who was named first, and why.
        verdict: Option<(crate::blame::Culprit, crate::blame::BlameKind)>,
    },
    /// A trap byte of an owned exchange decoded non-zero: someone other than the slot's
    /// owner changed the cell (`wire::slot`). Grounds for a blame round about `bit` (set in
    /// the first sprung trap byte, where the owner wrote 0) without any accusation:
    /// [`Relay::trap_grounds`](super::Relay::trap_grounds). Reported whether or not the cell opened (one that opened
    /// was delivered).
    TrapSprung {
        /// The interval.
        interval: u32,
        /// The exchange.
        exchange: u64,
        /// The exchange's slot.
        slot: u16,
        /// A bit set in the first sprung trap byte.
        bit: u32,
        /// How many trap bytes were not zero.
        sprung: u32,
    },
}
