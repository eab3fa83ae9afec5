//! What a setup attempt ends in: a conviction with its evidence, or a failure that names
//! who is at fault and why.
//!
//! Owns the names and texts of outcomes; the follower decides when one happens.

use core::fmt;

use crate::ristretto::dleq::DleqError;
use crate::ristretto::shuffle::ShuffleError;
use crate::wire::WireError;

/// The check a trustee's signed message failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailedCheck {
    /// Its `Key`'s proof of knowledge.
    KeyProof(DleqError),
    /// The trustees' keys sum to the identity (with its key last).
    JointKey,
    /// Its proof of shuffle.
    Shuffle(ShuffleError),
    /// Its decryption shares' proof.
    Shares(DleqError),
}

/// A trustee caught cheating: who, in which attempt, and which check. Its signed message
/// (the evidence) is kept by the role that convicted it (`evidence()`); with the
/// transcript that message signs (the setup storage keeps the stage's data until the next
/// attempt), anyone holding the group's public keys can repeat the check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conviction {
    /// The trustee's index.
    pub trustee: u8,
    /// The attempt.
    pub attempt: u8,
    /// The failed check.
    pub check: FailedCheck,
}

impl fmt::Display for Conviction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "trustee {} cheated in setup attempt {}: ",
            self.trustee, self.attempt
        )?;
        match self.check {
            FailedCheck::KeyProof(e) => write!(f, "its key's proof of knowledge fails ({e})"),
            FailedCheck::JointKey => f.write_str("its key cancels the joint key"),
            FailedCheck::Shuffle(e) => write!(f, "its shuffle fails: {e}"),
            FailedCheck::Shares(e) => write!(f, "its decryption shares fail ({e})"),
        }
    }
}

/// What the relay sent that it must not have: the relay (or, where said, the author whose
/// link it is) is at fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RelayFault {
    /// Bytes that are not a setup message.
    Malformed(WireError),
    /// A message out of the protocol's order, of another epoch or attempt, or from an
    /// author whose turn it is not (a drop, a reorder or a duplicate).
    Unexpected,
    /// An `Open` for another group or size, an attempt that does not increase, or a trustee
    /// set other than every trustee not convicted.
    BadOpen,
    /// A signature that does not verify: trustee `index` (or client, with `client`).
    BadSignature {
        /// Whose key it should verify with.
        index: u16,
        /// A client's (true) or a trustee's (false).
        client: bool,
    },
    /// A client's submission whose proof fails, or this client's own submission altered.
    BadSubmission {
        /// The client.
        client: u16,
    },
    /// A chunk outside its stage's bytes.
    Chunk,
    /// An `Open` that leaves this trustee out though it convicted nobody: the other nodes
    /// convicted it, or the relay excludes it.
    Excluded,
    /// A trustee's `Seal` signs another transcript than the one received: the relay showed
    /// different messages to different nodes, or altered a chunk.
    TranscriptMismatch {
        /// The trustee whose seal it is.
        trustee: u8,
    },
}

/// Why a client refuses the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// Its pseudonym key is not in the list, or its submission is not in the input (another
    /// submission signed with its identity key took its place).
    KeyMissing,
    /// Its pseudonym key is in the list more than once.
    KeyDuplicated,
    /// It is not among the `Open`'s participants.
    NotParticipant,
}

/// How a setup ended without an epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Failure {
    /// A trustee was convicted and too few trustees remain to restart.
    TooFewTrustees {
        /// The last conviction.
        conviction: Conviction,
        /// Trustees not convicted.
        remaining: u8,
        /// The group's minimum.
        minimum: u8,
    },
    /// The relay broke the protocol.
    Relay(RelayFault),
    /// A trustee's signed epoch record differs from this node's: that trustee or the relay
    /// (which showed it other stages) is lying.
    Disagreement {
        /// The trustee.
        trustee: u8,
    },
    /// A client refused the epoch.
    Refused(Refusal),
    /// Nothing came while waiting (the shell's timeout): the relay, or the awaited author.
    Stalled(super::Waiting),
    /// Participants left (or never submitted) and too few clients remain for the group.
    TooFewClients {
        /// Participants that remain.
        remaining: u16,
        /// The group's minimum.
        minimum: u16,
    },
    /// Participants left (or never submitted) after the last attempt the relay may open.
    TooManyAttempts {
        /// Attempts opened.
        attempts: u8,
    },
    /// A trustee did not answer in time (on the relay's word), and the setup cannot go on
    /// without it: the group's minimum would not remain, or it is 1 (docs/protocol.md §11,
    /// "Silent trustees").
    TrusteeSilent {
        /// The trustee.
        trustee: u8,
        /// Trustees that would remain.
        remaining: u8,
        /// The group's minimum.
        minimum: u8,
    },
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::TooFewTrustees {
                conviction,
                remaining,
                minimum,
            } => write!(
                f,
                "{conviction}; {remaining} trustees remain, the group needs {minimum}: setup stops"
            ),
            Failure::Relay(RelayFault::Excluded) => f.write_str(
                "the relay opened an attempt without this trustee: the other nodes convicted \
                 it (or the relay excludes it)",
            ),
            Failure::Relay(fault) => write!(f, "the relay broke the setup protocol: {fault:?}"),
            Failure::Disagreement { trustee } => write!(
                f,
                "trustee {trustee} signed another epoch record (it or the relay lies)"
            ),
            Failure::Refused(Refusal::KeyMissing) => {
                f.write_str("refusing the epoch: our pseudonym key is not in the list")
            }
            Failure::Refused(Refusal::KeyDuplicated) => {
                f.write_str("refusing the epoch: our pseudonym key is in the list twice")
            }
            Failure::Refused(Refusal::NotParticipant) => {
                f.write_str("not a participant of this epoch's setup")
            }
            Failure::Stalled(w) => write!(f, "setup stalled waiting for {w:?}"),
            Failure::TooFewClients { remaining, minimum } => write!(
                f,
                "{remaining} participants remain, the group needs {minimum}: setup stops"
            ),
            Failure::TooManyAttempts { attempts } => write!(
                f,
                "participants left after {attempts} attempts, the most a setup opens: setup stops"
            ),
            Failure::TrusteeSilent {
                trustee,
                remaining,
                minimum,
            } => write!(
                f,
                "trustee {trustee} did not answer in time (the relay says so; nothing proves \
                 it); {remaining} trustees would remain and the group needs {minimum} (at \
                 least 2 to go on without a silent trustee): setup stops"
            ),
        }
    }
}

impl core::error::Error for Failure {}
