//! Epoch setup with no dealer: the members' pseudonym keys, shuffled by the trustees.
//!
//! Sans-IO state machines for the three roles of the setup that runs over the relay
//! (docs/protocol.md, "Epoch setup"):
//!
//! 1. the relay opens an attempt ([`message::Open`]: epoch, group fingerprint, trustees,
//!    participants);
//! 2. each trustee, in order, sends a fresh ElGamal key with a proof of knowledge
//!    ([`message::Key`]);
//! 3. each participant sends its fresh pseudonym key encrypted to the joint key, with a
//!    proof of knowledge of the randomness bound to (group, epoch, attempt, client)
//!    ([`message::Submit`]);
//! 4. each trustee, in order, shuffles and re-encrypts the rows and proves it (chunked
//!    [`message::Chunk`]s, then a signed [`message::Seal`] of the transcript);
//! 5. each trustee, in order, sends a decryption share of every row with one DLEQ proof
//!    for all of them; every node strips them: the rows become the pseudonym keys in slot order;
//! 6. each trustee signs the epoch record ([`message::Record`]): transcript and list hash.
//!
//! Every node, the relay included, runs the same verifier (`follower.rs`) over the relay's
//! stream, so every node checks every signature and every proof. A trustee whose proof
//! fails is convicted with its signed message ([`Conviction`]); the relay opens a new
//! attempt without it if at least `min_trustees` remain, and every node checks that it left
//! out exactly the trustees it convicted itself (and, in a group whose `min_trustees` is at
//! least 2, at most as many more as the relay names silent, on its word). Everything else
//! that goes wrong names the relay ([`Failure`]). A client refuses the epoch when its key
//! is missing or appears twice.
//!
//! Restarts: a node takes part in each attempt number once. Frames of an earlier attempt
//! are ignored; the current attempt's `Open` again is followed and checked without taking
//! part (a replay); a relay that restarted resumes at the next attempt it kept
//! ([`SetupRelay::resume`]) and shows every node the attempts that convicted, so a node
//! started afresh checks each conviction itself.
//!
//! A trustee that lost the epoch it helped establish takes it back from the relay with no
//! new setup ([`rejoin`]).
//!
//! Roles: [`SetupRelay`], [`SetupTrustee`], [`SetupClient`]. Identity signatures go through
//! [`identity::IdentitySigner`]. Storage comes from the caller ([`SetupStorage`], sized by
//! [`SetupConfig::storage_lens`]); nothing here allocates or panics on input.
//!
//! Owns the setup's messages, proofs of knowledge and state machines. It must not touch the
//! DC-net roles (`relay`, `client`, `trustee`) or the link; the group arithmetic and the
//! proof of shuffle are `ristretto`'s.

mod client;
mod follower;
pub mod identity;
pub mod message;
mod outcome;
mod proof;
pub mod rejoin;
mod relay;
pub mod session;
pub mod switch;
mod trustee;

pub use client::SetupClient;
pub use follower::Event;
pub use outcome::{Conviction, FailedCheck, Failure, Refusal, RelayFault};
pub use relay::{Departure, RelayStep, SetupRelay, SubmitRefused, MAX_ATTEMPTS};
#[cfg(feature = "testkit")]
pub use trustee::Cheat;
pub use trustee::SetupTrustee;

use crate::bits::bitmap_len;
use crate::error::ConfigError;
use crate::ristretto::elgamal::CIPHERTEXT_LEN;
use crate::ristretto::shuffle::{proof_len, rows_len};
use crate::{MAX_CLIENTS, MAX_TRUSTEES};

/// What the setup of one epoch is about; the same at every node.
#[derive(Debug, Clone, Copy)]
pub struct SetupConfig<'a> {
    /// The group fingerprint.
    pub group: [u8; 32],
    /// The epoch being set up.
    pub epoch: u64,
    /// The trustees' Ed25519 identity keys, in trustee order.
    pub trustees: &'a [[u8; 32]],
    /// The clients' Ed25519 identity keys, in client order.
    pub clients: &'a [[u8; 32]],
    /// Fewest trustees a setup may run with (the group's policy, at least 1).
    pub min_trustees: usize,
    /// Data bytes per `Chunk` a trustee sends (1 ..= [`message::MAX_CHUNK_DATA`]).
    pub chunk_len: usize,
}

impl SetupConfig<'_> {
    /// Checks counts and limits.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.trustees.is_empty()
            || self.trustees.len() > MAX_TRUSTEES
            || self.clients.is_empty()
            || self.clients.len() > MAX_CLIENTS
            || self.min_trustees == 0
            || self.min_trustees > self.trustees.len()
        {
            return Err(ConfigError::Counts);
        }
        if self.chunk_len == 0 || self.chunk_len > message::MAX_CHUNK_DATA {
            return Err(ConfigError::FrameLimit);
        }
        Ok(())
    }

    /// The most frames the relay forwards to every node in one attempt: the `Open`, every
    /// client's submission, and each trustee's key, shuffle chunks, shares chunks, their
    /// two seals and its record (what a setup link's queue must hold for a node that reads
    /// them only once the burst is over).
    pub const fn frames_per_attempt(&self) -> usize {
        let n = self.clients.len();
        let chunk = if self.chunk_len == 0 {
            1
        } else {
            self.chunk_len
        };
        let shuffle = (rows_len(n, 1) + proof_len(n, 1)).div_ceil(chunk);
        let shares = proof::shares_len(n).div_ceil(chunk);
        1 + n + self.trustees.len() * (1 + shuffle + shares + 3)
    }

    /// How long each region of a node's setup storage must be.
    pub const fn storage_lens(&self) -> SetupStorageLens {
        let n = self.clients.len();
        let shuffle = rows_len(n, 1) + proof_len(n, 1);
        let shares = proof::shares_len(n);
        SetupStorageLens {
            participants: bitmap_len(n),
            rows: n * CIPHERTEXT_LEN,
            stage: if shuffle > shares { shuffle } else { shares },
        }
    }
}

/// A node's setup storage, one region per field (longer is fine).
#[derive(Debug)]
pub struct SetupStorage<B> {
    /// The attempt's participants, a bitmap over the clients.
    pub participants: B,
    /// The rows: submissions, then each shuffle's output, then the pseudonym keys.
    pub rows: B,
    /// The stage being received: a shuffle's rows and proof, or decryption shares.
    pub stage: B,
}

/// Bytes of each region of [`SetupStorage`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SetupStorageLens {
    /// Bytes of [`SetupStorage::participants`].
    pub participants: usize,
    /// Bytes of [`SetupStorage::rows`].
    pub rows: usize,
    /// Bytes of [`SetupStorage::stage`].
    pub stage: usize,
}

impl<B: AsRef<[u8]>> SetupStorage<B> {
    fn check(&self, lens: &SetupStorageLens) -> Result<(), ConfigError> {
        let regions: [(&'static str, usize, usize); 3] = [
            (
                "participants",
                self.participants.as_ref().len(),
                lens.participants,
            ),
            ("rows", self.rows.as_ref().len(), lens.rows),
            ("stage", self.stage.as_ref().len(), lens.stage),
        ];
        match regions.iter().find(|(_, have, need)| have < need) {
            Some((name, ..)) => Err(ConfigError::StorageTooSmall(name)),
            None => Ok(()),
        }
    }
}

#[cfg(feature = "std")]
impl SetupStorage<std::vec::Vec<u8>> {
    /// Storage in `Vec`s of exactly the lengths `config` needs.
    pub fn with_vecs(config: &SetupConfig<'_>) -> Self {
        let lens = config.storage_lens();
        SetupStorage {
            participants: std::vec![0u8; lens.participants],
            rows: std::vec![0u8; lens.rows],
            stage: std::vec![0u8; lens.stage],
        }
    }
}

/// What the setup waits for next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Waiting {
    /// The relay's `Open` (first, or after a conviction).
    Open,
    /// Trustee `j`'s key.
    Key(u8),
    /// Client `i`'s submission.
    Submit(u16),
    /// Trustee `j`'s next chunk of a stage.
    Chunk(u8, message::Stage),
    /// Trustee `j`'s seal of a stage.
    Seal(u8, message::Stage),
    /// Trustee `j`'s epoch record.
    Record(u8),
    /// Nothing more: established or failed.
    Nothing,
}

/// An established epoch: what every node agreed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Established {
    /// The epoch.
    pub epoch: u64,
    /// The attempt that established it.
    pub attempt: u8,
    /// The setup transcript hash every trustee signed.
    pub transcript: [u8; 32],
    /// The pseudonym list hash every trustee signed.
    pub list: [u8; 32],
    /// Slots (participants).
    pub slots: usize,
    /// Bit `j`: trustee `j` took part (every trustee not convicted).
    pub trustees: u16,
}
