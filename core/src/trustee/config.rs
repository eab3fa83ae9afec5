//! The trustee's parameters: what a group and this trustee are configured with, and the
//! checks on them.
//!
//! Owns [`TrusteeConfig`]. It must not hold state.

use crate::error::ConfigError;
use crate::policy::Policy;
use crate::wire::{self, MAX_FRAME_BODY};
use crate::{cell_length_ok, MAX_CLIENTS};

/// Static configuration of a trustee.
#[derive(Debug, Clone, Copy)]
pub struct TrusteeConfig<'a> {
    /// Index of this trustee in the group's trustee list.
    pub index: u16,
    /// Number of trustees in the group.
    pub trustees: u16,
    /// The group id.
    pub group_id: [u8; 16],
    /// The session id.
    pub session_id: [u8; 16],
    /// This trustee's session secret key.
    pub session_secret: [u8; 32],
    /// Every client's session public key, in client order.
    pub client_keys: &'a [[u8; 32]],
    /// Number of pseudonym slots.
    pub slots: u16,
    /// The group's base cell length.
    pub cell_len: usize,
    /// Most slots the schedule table can hold (the relay must not announce more).
    pub max_reserved: u16,
    /// Largest frame this trustee receives or builds (declared in its Hello).
    pub max_frame: u32,
    /// Fresh randomness from the platform, used for per-interval nonces.
    pub rng_seed: [u8; 32],
    /// Smallest online set this trustee serves: below it, the few clients online would be
    /// easy to tell apart, so the trustee refuses the interval whatever the relay wants.
    pub min_clients: u16,
    /// The group's policy: the trustee holds the relay to its log window.
    pub policy: Policy,
}

impl TrusteeConfig<'_> {
    /// Checks the parameters against the protocol's limits.
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        if !cell_length_ok(self.cell_len) {
            return Err(ConfigError::CellLength);
        }
        let n = self.client_keys.len();
        if n == 0
            || n > MAX_CLIENTS
            || self.slots == 0
            || self.trustees == 0
            || self.index >= self.trustees
        {
            return Err(ConfigError::Counts);
        }
        let limit = self.max_frame as usize;
        if !(wire::MIN_FRAME_LIMIT..=MAX_FRAME_BODY).contains(&limit) {
            return Err(ConfigError::FrameLimit);
        }
        Ok(())
    }
}
