//! Protocol core of dissent-rs, a Dissent-style low-latency DC-net.
//!
//! Everything here is sans-IO: the role state machines ([`client::Client`],
//! [`trustee::Trustee`], [`relay::Relay`]) take bytes and time in and give frames and events
//! out. They never read a clock, a socket or an RNG, never allocate and never panic on
//! input from the network. The hosted (tokio) and embedded (embassy) shells only move bytes.
//!
//! Module map: [`wire`] (frames, messages, cells), [`crypto`] (keys and pads), [`link`]
//! (Noise links between nodes and the relay), [`backoff`] (when to redial the relay),
//! [`online`] (online sets), [`schedule`] (slot schedule), [`time`] (caller-supplied time).
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs, clippy::std_instead_of_core)]

#[cfg(feature = "std")]
extern crate std;

pub mod backoff;
pub mod client;
pub mod crypto;
pub mod link;
pub mod online;
pub mod relay;
pub mod schedule;
pub mod time;
pub mod trustee;
pub mod wire;

pub use online::OnlineSet;
pub use time::{Duration, Instant};

/// Most clients in a group.
pub const MAX_CLIENTS: usize = 256;
/// Most trustees in a group.
pub const MAX_TRUSTEES: usize = 16;
/// Smallest cell length.
pub const MIN_CELL_LENGTH: usize = 16;
/// Largest cell length (the payload length must fit the 15 bits of a cell's `Len`).
pub const MAX_CELL_LENGTH: usize = 32768;
/// Largest pipelining window (exchanges in flight) of any role.
pub const MAX_WINDOW: usize = 64;
/// Bytes of a trustee's per-interval nonce.
pub const NONCE_LEN: usize = 16;
/// Largest downstream payload in one relay → client record (its `Len` is 2 bytes).
pub const MAX_DOWNSTREAM: usize = u16::MAX as usize;

/// Checks a cell length against the protocol limits.
pub const fn cell_length_ok(cell_len: usize) -> bool {
    cell_len >= MIN_CELL_LENGTH && cell_len <= MAX_CELL_LENGTH
}
