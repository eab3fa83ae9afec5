//! The client's parameters: what a group and this client are configured with, the checks
//! on them, and the cell and storage lengths they imply.
//!
//! Owns [`ClientConfig`]. It must not hold state: everything here is a function of the
//! parameters.

use super::sent;
use crate::error::ConfigError;
use crate::policy::Policy;
use crate::time::Duration;
use crate::wire::{self, MAX_FRAME_BODY};
use crate::{cell_length_ok, MAX_CELL_LENGTH, MAX_TRUSTEES};

/// Static configuration of a client.
#[derive(Debug, Clone, Copy)]
pub struct ClientConfig<'a> {
    /// Index of this client in the group's client list.
    pub index: u16,
    /// Number of clients in the group.
    pub clients: u16,
    /// The group id.
    pub group_id: [u8; 16],
    /// The session id.
    pub session_id: [u8; 16],
    /// This client's session secret key.
    pub session_secret: [u8; 32],
    /// Every trustee's session public key, in trustee order.
    pub trustee_keys: &'a [[u8; 32]],
    /// This client's pseudonym slot.
    pub slot: u16,
    /// Number of pseudonym slots in the group.
    pub slots: u16,
    /// The group's base cell length.
    pub cell_len: usize,
    /// Largest frame this client receives or builds (declared in its Hello).
    pub max_frame: u32,
    /// Most reserved slots the schedule table can hold.
    pub max_reserved: u16,
    /// Bytes for sent cells not yet confirmed (bounds data in flight): at least two entry
    /// headers, the base cell and the reserve kept for cells sent again.
    pub sent_len: usize,
    /// Bytes for downstream records replayed after a reconnect (a longer gap ends the
    /// client's connections).
    pub replay_len: usize,
    /// Smallest online set this client sends in.
    pub min_clients: u16,
    /// The group's policy: its anonymity minimum (buddy groups) and log window.
    pub policy: Policy,
    /// This client's own anonymity minimum: its slot transmits only while its anonymity
    /// set stays at least this large (and at least the group's minimum). It may only raise
    /// the group's minimum.
    pub min_anonymity: u16,
    /// How long the slot stays reserved after the last data, so a conversation's turns
    /// need no new reservation.
    pub linger: Duration,
    /// Fresh randomness from the platform (link nonces, Conn#s).
    pub rng_seed: [u8; 32],
}

/// Largest cell a client with frame limit `max_frame` can build.
pub const fn max_cell(max_frame: u32) -> usize {
    let room = (max_frame as usize).saturating_sub(wire::cell_frame_len(0) - 4);
    if room > MAX_CELL_LENGTH {
        MAX_CELL_LENGTH
    } else {
        room
    }
}

impl ClientConfig<'_> {
    /// The anonymity minimum this client applies to its slot: its own, at least the
    /// group's.
    pub const fn anonymity_minimum(&self) -> u16 {
        let k = self.policy.min_anonymity;
        if self.min_anonymity > k {
            self.min_anonymity
        } else {
            k
        }
    }

    /// Checks the parameters against the protocol's limits.
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        if !cell_length_ok(self.cell_len) {
            return Err(ConfigError::CellLength);
        }
        if self.trustee_keys.is_empty()
            || self.trustee_keys.len() > MAX_TRUSTEES
            || self.slot >= self.slots
            || self.index >= self.clients
        {
            return Err(ConfigError::Counts);
        }
        let limit = self.max_frame as usize;
        if !(wire::MIN_FRAME_LIMIT..=MAX_FRAME_BODY).contains(&limit)
            || max_cell(self.max_frame) < self.cell_len
        {
            return Err(ConfigError::FrameLimit);
        }
        if self.sent_len < 2 * sent::HEADER_LEN + self.cell_len + sent::reserve(self.sent_len) {
            return Err(ConfigError::StorageTooSmall("sent"));
        }
        Ok(())
    }
}
