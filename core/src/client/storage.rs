//! The client's storage, provided by the caller as one region per field, each sized by
//! [`ClientConfig::storage_lens`].
//!
//! Owns the sizes of the regions and the check that the caller's storage holds them. It must
//! not give the regions meaning: each is handed, whole, to the part of the client that owns
//! it (`stage.rs`, `sent.rs`, `replay.rs`, `buddies.rs`, and the schedule).

use super::{max_cell, ClientConfig};
use crate::bits::bitmap_len;
use crate::error::ConfigError;
use crate::schedule::Schedule;

/// The client's storage, one region per field, each at least as long as
/// [`ClientConfig::storage_lens`] says (longer is fine).
///
/// `Vec`s on a host (`ClientStorage::with_vecs`), `&mut [u8]` into static memory without an
/// allocator.
#[derive(Debug)]
pub struct ClientStorage<B> {
    /// The schedule's table of reserved slots.
    pub schedule: B,
    /// The records of the next owned cell.
    pub stage: B,
    /// Sent cells not yet known to have decoded.
    pub sent: B,
    /// Downstream records replayed after a reconnect.
    pub replay: B,
    /// The slot's anonymity set: the clients that were online in every interval in which
    /// it transmitted, a bitmap.
    pub anonymity: B,
    /// The running interval's online set, a bitmap.
    pub online: B,
}

/// Bytes of each region of a client's storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientStorageLens {
    /// Bytes of [`ClientStorage::schedule`].
    pub schedule: usize,
    /// Bytes of [`ClientStorage::stage`].
    pub stage: usize,
    /// Bytes of [`ClientStorage::sent`].
    pub sent: usize,
    /// Bytes of [`ClientStorage::replay`].
    pub replay: usize,
    /// Bytes of [`ClientStorage::anonymity`].
    pub anonymity: usize,
    /// Bytes of [`ClientStorage::online`].
    pub online: usize,
}

impl ClientStorageLens {
    /// Bytes of every region together.
    pub const fn bytes(&self) -> usize {
        self.schedule + self.stage + self.sent + self.replay + self.anonymity + self.online
    }
}

impl ClientConfig<'_> {
    /// How long each region of the client's storage must be.
    pub const fn storage_lens(&self) -> ClientStorageLens {
        ClientStorageLens {
            schedule: Schedule::table_len(self.max_reserved),
            stage: max_cell(self.max_frame),
            sent: self.sent_len,
            replay: self.replay_len,
            anonymity: bitmap_len(self.clients as usize),
            online: bitmap_len(self.clients as usize),
        }
    }
}

impl<B: AsRef<[u8]>> ClientStorage<B> {
    /// Checks every region against `lens`; names the first one that is too short.
    pub(super) fn check(&self, lens: &ClientStorageLens) -> Result<(), ConfigError> {
        let regions: [(&'static str, usize, usize); 6] = [
            ("schedule", self.schedule.as_ref().len(), lens.schedule),
            ("stage", self.stage.as_ref().len(), lens.stage),
            ("sent", self.sent.as_ref().len(), lens.sent),
            ("replay", self.replay.as_ref().len(), lens.replay),
            ("anonymity", self.anonymity.as_ref().len(), lens.anonymity),
            ("online", self.online.as_ref().len(), lens.online),
        ];
        match regions.iter().find(|(_, have, need)| have < need) {
            Some((name, ..)) => Err(ConfigError::StorageTooSmall(name)),
            None => Ok(()),
        }
    }
}

#[cfg(feature = "std")]
impl ClientStorage<std::vec::Vec<u8>> {
    /// Storage in `Vec`s of exactly the lengths `config` needs.
    pub fn with_vecs(config: &ClientConfig<'_>) -> Self {
        let lens = config.storage_lens();
        ClientStorage {
            schedule: std::vec![0u8; lens.schedule],
            stage: std::vec![0u8; lens.stage],
            sent: std::vec![0u8; lens.sent],
            replay: std::vec![0u8; lens.replay],
            anonymity: std::vec![0u8; lens.anonymity],
            online: std::vec![0u8; lens.online],
        }
    }
}
