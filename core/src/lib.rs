//! Protocol core of dissent-rs, a Dissent-style low-latency DC-net.
//!
//! Everything here is sans-IO: the role state machines ([`client::Client`],
//! [`trustee::Trustee`], [`relay::Relay`]) take bytes and time in and give frames and events
//! out. They never read a clock, a socket or an RNG, never allocate and never panic on
//! input from the network. The hosted (tokio) and embedded (embassy) shells only move bytes.
//! Every capacity that grows with the group (clients, cells in flight, logs) lives in
//! storage the caller provides, so a desktop relay serving 10,000 clients and a device
//! trustee serving 64 run the same code.
//!
//! Module map: [`wire`] (frames, messages, cells), [`crypto`] (keys, pads, MACs),
//! [`transcript`] (the view every cell is bound to), [`schedule`] (slot reservations),
//! [`bits`] (member and request bitmaps), [`policy`] and [`buddies`] (the group's anonymity
//! minimum, buddy groups and the log window), [`link`] (Noise links between nodes and the
//! relay), [`backoff`] (when to redial the relay), [`time`] (caller-supplied time),
//! [`ristretto`] (Ristretto255 keys, DLEQ proofs, ElGamal and the proof of shuffle, for the
//! dealer-free setup and blame), [`epoch`] (the dealer-free epoch setup's messages and the
//! relay's, trustees' and clients' setup state machines), [`identity`] (Ed25519 identity
//! keys), [`pseudonym`] (slot signatures and accusation proofs).
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs, clippy::std_instead_of_core)]

#[cfg(any(test, feature = "std", feature = "testkit"))]
extern crate std;

pub mod backoff;
pub mod bits;
pub mod blame;
pub mod buddies;
pub mod client;
pub mod credit;
pub mod crypto;
pub mod epoch;
pub mod error;
mod field;
pub mod identity;
pub mod link;
pub mod policy;
pub mod provision;
pub mod pseudonym;
pub mod relay;
mod ring;
pub mod ristretto;
pub mod schedule;
// The harness drives roles with set-up it made itself; its `expect`s are on that set-up.
#[cfg(feature = "testkit")]
#[allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]
pub mod testkit;
pub mod time;
pub mod transcript;
pub mod trustee;
pub mod wire;

pub use time::{Duration, Instant};

/// Most clients in a group (a client index and a pseudonym slot are 16 bits; Conn# keeps
/// `slot + 1` in its top 16 bits).
pub const MAX_CLIENTS: usize = 65_535;
/// Most trustees in a group.
pub const MAX_TRUSTEES: usize = 16;
/// Smallest base cell length: an owned cell is sealed (nonce, `Next`, tag) and laid out
/// around its trap bytes, and a base-length cell must still carry one record with one
/// byte of data (54 bytes).
pub const MIN_CELL_LENGTH: usize =
    wire::cell_len_for(wire::MIN_SEALED_CELL + wire::RECORD_HEADER_LEN + 1);
/// Largest cell of any exchange (an owner's `Next` is 16 bits).
pub const MAX_CELL_LENGTH: usize = 65_535;
/// Largest pipelining window (exchanges in flight).
pub const MAX_WINDOW: usize = 64;
/// Bytes of a link or interval nonce.
pub const NONCE_LEN: usize = 16;
/// Bytes of a presence proof or an interval confirmation (a truncated HMAC-SHA256).
pub const MAC_LEN: usize = 16;
/// Largest downstream payload in one record.
pub const MAX_DOWNSTREAM: usize = u16::MAX as usize;

/// Checks a base cell length against the protocol limits.
pub const fn cell_length_ok(cell_len: usize) -> bool {
    cell_len >= MIN_CELL_LENGTH && cell_len <= MAX_CELL_LENGTH
}
