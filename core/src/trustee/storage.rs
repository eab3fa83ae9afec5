//! The trustee's storage, provided by the caller as one region per field, each sized by
//! [`TrusteeConfig::storage_lens`]. Nothing is large inline, so a `Trustee` is cheap to
//! move; on a device the regions are initialised in place.
//!
//! Owns the sizes of the regions and the check that the caller's storage holds them. It must
//! not give the regions meaning.

use super::TrusteeConfig;
use crate::bits::bitmap_len;
use crate::crypto::{IntervalKey, PairKey};
use crate::error::ConfigError;
use crate::schedule::Schedule;

/// The trustee's storage, one region per field, each at least as long as
/// [`TrusteeConfig::storage_lens`] says (longer is fine).
#[derive(Debug)]
pub struct TrusteeStorage<P, I, B> {
    /// The key shared with each client of the group.
    pub pairs: P,
    /// The running interval's pad key with each member.
    pub interval_keys: I,
    /// The interval's online set, a bitmap.
    pub online: B,
    /// The schedule's table of reserved slots.
    pub schedule: B,
}

/// Entries of the key regions and bytes of the others of a trustee's storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrusteeStorageLens {
    /// Entries of [`TrusteeStorage::pairs`].
    pub pairs: usize,
    /// Entries of [`TrusteeStorage::interval_keys`].
    pub interval_keys: usize,
    /// Bytes of [`TrusteeStorage::online`].
    pub online: usize,
    /// Bytes of [`TrusteeStorage::schedule`].
    pub schedule: usize,
}

impl TrusteeConfig<'_> {
    /// How long each region of the trustee's storage must be.
    pub const fn storage_lens(&self) -> TrusteeStorageLens {
        let clients = self.client_keys.len();
        TrusteeStorageLens {
            pairs: clients,
            interval_keys: clients,
            online: bitmap_len(clients),
            schedule: Schedule::table_len(self.max_reserved),
        }
    }
}

impl<P, I, B> TrusteeStorage<P, I, B>
where
    P: AsRef<[PairKey]>,
    I: AsRef<[IntervalKey]>,
    B: AsRef<[u8]>,
{
    /// Checks every region against `lens`; names the first one that is too short.
    pub(super) fn check(&self, lens: &TrusteeStorageLens) -> Result<(), ConfigError> {
        let regions: [(&'static str, usize, usize); 4] = [
            ("pairs", self.pairs.as_ref().len(), lens.pairs),
            (
                "interval_keys",
                self.interval_keys.as_ref().len(),
                lens.interval_keys,
            ),
            ("online", self.online.as_ref().len(), lens.online),
            ("schedule", self.schedule.as_ref().len(), lens.schedule),
        ];
        match regions.iter().find(|(_, have, need)| have < need) {
            Some((name, ..)) => Err(ConfigError::StorageTooSmall(name)),
            None => Ok(()),
        }
    }
}

#[cfg(feature = "std")]
impl TrusteeStorage<std::vec::Vec<PairKey>, std::vec::Vec<IntervalKey>, std::vec::Vec<u8>> {
    /// Storage in `Vec`s of exactly the lengths `config` needs.
    pub fn with_vecs(config: &TrusteeConfig<'_>) -> Self {
        let lens = config.storage_lens();
        TrusteeStorage {
            pairs: std::vec![PairKey::EMPTY; lens.pairs],
            interval_keys: std::vec![IntervalKey::EMPTY; lens.interval_keys],
            online: std::vec![0u8; lens.online],
            schedule: std::vec![0u8; lens.schedule],
        }
    }
}
