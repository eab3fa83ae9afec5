//! The relay's storage: every capacity that grows with the group, provided by the caller as
//! one region per field (embassy `StackResources` flavour), each sized by
//! [`RelayConfig::storage_lens`].
//!
//! Owns the sizes of the regions and the check that the caller's storage holds them. It must
//! not give the regions meaning: each is handed, whole, to the part of the relay that owns
//! it (`peers.rs`, `exchange.rs`, `log.rs`, `losses.rs`, `fingerprints.rs`, `decode.rs`).

use super::{Peer, RelayConfig};
use crate::bits::bitmap_len;
use crate::error::ConfigError;
use crate::schedule::Schedule;
use crate::wire;

/// The relay's storage, one region per field, each at least as long as
/// [`RelayConfig::storage_lens`] says (longer is fine).
///
/// `P` holds [`Peer`] entries and `B` bytes: `Vec`s on a host (`RelayStorage::with_vecs`),
/// `&mut [_]` into static memory without an allocator.
#[derive(Debug)]
pub struct RelayStorage<P, B> {
    /// One entry per client, then one per trustee.
    pub peers: P,
    /// The clients connected now, a bitmap.
    pub connected: B,
    /// The running interval's online set, a bitmap.
    pub online: B,
    /// The members of the interval being started that lost their connections, a bitmap.
    pub lost: B,
    /// For each exchange in flight, the clients whose cell arrived: `window` bitmaps.
    pub arrived: B,
    /// For each exchange in flight, the XOR of its cells so far: `window` cells of the
    /// longest exchange.
    pub accumulators: B,
    /// The schedule's table of reserved slots.
    pub schedule: B,
    /// Outputs of decoded exchanges not yet reported: `2 × window` entries.
    pub outputs: B,
    /// The outputs of the request being sent.
    pub request_outputs: B,
    /// The downstream bytes of the request being sent.
    pub downstream: B,
    /// The downstream log kept for clients that reconnect.
    pub log: B,
    /// Each slot's pseudonym key and counters (`slots.rs`).
    pub slots: B,
    /// One row of fingerprints per exchange in flight (`exchange.rs`).
    pub fingerprints: B,
    /// The rows of the latest disrupted exchanges (`fingerprints.rs`).
    pub kept_fingerprints: B,
    /// The trap bytes of the owned cell being decoded, drawn once (`decode.rs`).
    pub traps: B,
    /// The blame rounds' region: every node's identity and pad keys, then for each round
    /// held at once (running, parked, the last ended) its answers and its evidence (core
    /// feature `blame-round`; empty without it).
    pub blame: B,
}

/// Entries of [`RelayStorage::peers`] and bytes of every other region a relay needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayStorageLens {
    /// Entries of [`RelayStorage::peers`].
    pub peers: usize,
    /// Bytes of [`RelayStorage::connected`].
    pub connected: usize,
    /// Bytes of [`RelayStorage::online`].
    pub online: usize,
    /// Bytes of [`RelayStorage::lost`].
    pub lost: usize,
    /// Bytes of [`RelayStorage::arrived`].
    pub arrived: usize,
    /// Bytes of [`RelayStorage::accumulators`].
    pub accumulators: usize,
    /// Bytes of [`RelayStorage::schedule`].
    pub schedule: usize,
    /// Bytes of [`RelayStorage::outputs`].
    pub outputs: usize,
    /// Bytes of [`RelayStorage::request_outputs`].
    pub request_outputs: usize,
    /// Bytes of [`RelayStorage::downstream`].
    pub downstream: usize,
    /// Bytes of [`RelayStorage::log`].
    pub log: usize,
    /// Bytes of [`RelayStorage::slots`].
    pub slots: usize,
    /// Bytes of [`RelayStorage::fingerprints`].
    pub fingerprints: usize,
    /// Bytes of [`RelayStorage::kept_fingerprints`].
    pub kept_fingerprints: usize,
    /// Bytes of [`RelayStorage::traps`].
    pub traps: usize,
    /// [`RelayStorage::blame`].
    pub blame: usize,
}

impl RelayStorageLens {
    /// Bytes of every region but the peers.
    pub const fn bytes(&self) -> usize {
        self.connected
            + self.online
            + self.lost
            + self.arrived
            + self.accumulators
            + self.schedule
            + self.outputs
            + self.request_outputs
            + self.downstream
            + self.log
            + self.slots
            + self.fingerprints
            + self.kept_fingerprints
            + self.traps
            + self.blame
    }
}

impl RelayConfig {
    /// How long each region of the relay's storage must be.
    pub const fn storage_lens(&self) -> RelayStorageLens {
        let members = bitmap_len(self.clients as usize);
        let window = self.window as usize;
        RelayStorageLens {
            peers: self.peers_len(),
            connected: members,
            online: members,
            lost: members,
            arrived: window * members,
            accumulators: window * self.max_exchange_len(),
            schedule: Schedule::table_len(self.capacity),
            outputs: 2 * window * self.output_stride(),
            request_outputs: wire::max_outputs_len(self.slots),
            downstream: self.downstream_len,
            log: self.log_len,
            slots: self.slots as usize * super::slots::ENTRY,
            fingerprints: window * self.fingerprint_row(),
            kept_fingerprints: self.kept_fingerprint_rows() * self.fingerprint_row(),
            traps: wire::traps_in(self.max_exchange_len()),
            blame: blame_region_len(self.clients as usize, self.trustees as usize),
        }
    }

    /// Bytes of one entry of the outputs queue.
    /// Bytes of one exchange's fingerprints: every member's and trustee's.
    pub(super) const fn fingerprint_row(&self) -> usize {
        (self.clients as usize + self.trustees as usize) * crate::blame::commit::FINGERPRINT_LEN
    }

    /// Disrupted exchanges whose fingerprints are kept: as many as exchanges of the
    /// interval a round may begin behind (`blame::ANSWERED`, whatever the window:
    /// `fingerprints.rs` says why).
    pub(super) const fn kept_fingerprint_rows(&self) -> usize {
        super::fingerprints::MAX_KEPT
    }

    pub(super) const fn output_stride(&self) -> usize {
        super::outputs::entry_len(self.slots)
    }
}

impl<P, B> RelayStorage<P, B>
where
    P: AsRef<[Peer]>,
    B: AsRef<[u8]>,
{
    /// Checks every region against `lens`; names the first one that is too short.
    pub(super) fn check(&self, lens: &RelayStorageLens) -> Result<(), ConfigError> {
        let regions: [(&'static str, usize, usize); 16] = [
            ("peers", self.peers.as_ref().len(), lens.peers),
            ("connected", self.connected.as_ref().len(), lens.connected),
            ("online", self.online.as_ref().len(), lens.online),
            ("lost", self.lost.as_ref().len(), lens.lost),
            ("arrived", self.arrived.as_ref().len(), lens.arrived),
            (
                "accumulators",
                self.accumulators.as_ref().len(),
                lens.accumulators,
            ),
            ("schedule", self.schedule.as_ref().len(), lens.schedule),
            ("outputs", self.outputs.as_ref().len(), lens.outputs),
            (
                "request_outputs",
                self.request_outputs.as_ref().len(),
                lens.request_outputs,
            ),
            (
                "downstream",
                self.downstream.as_ref().len(),
                lens.downstream,
            ),
            ("log", self.log.as_ref().len(), lens.log),
            ("slots", self.slots.as_ref().len(), lens.slots),
            (
                "fingerprints",
                self.fingerprints.as_ref().len(),
                lens.fingerprints,
            ),
            (
                "kept_fingerprints",
                self.kept_fingerprints.as_ref().len(),
                lens.kept_fingerprints,
            ),
            ("traps", self.traps.as_ref().len(), lens.traps),
            ("blame", self.blame.as_ref().len(), lens.blame),
        ];
        match regions.iter().find(|(_, have, need)| have < need) {
            Some((name, ..)) => Err(ConfigError::StorageTooSmall(name)),
            None => Ok(()),
        }
    }
}

#[cfg(feature = "std")]
impl RelayStorage<std::vec::Vec<Peer>, std::vec::Vec<u8>> {
    /// Storage in `Vec`s of exactly the lengths `config` needs.
    pub fn with_vecs(config: &RelayConfig) -> Self {
        let lens = config.storage_lens();
        let bytes = |n: usize| std::vec![0u8; n];
        RelayStorage {
            peers: std::vec![Peer::EMPTY; lens.peers],
            connected: bytes(lens.connected),
            online: bytes(lens.online),
            lost: bytes(lens.lost),
            arrived: bytes(lens.arrived),
            accumulators: bytes(lens.accumulators),
            schedule: bytes(lens.schedule),
            outputs: bytes(lens.outputs),
            request_outputs: bytes(lens.request_outputs),
            downstream: bytes(lens.downstream),
            log: bytes(lens.log),
            slots: bytes(lens.slots),
            fingerprints: bytes(lens.fingerprints),
            kept_fingerprints: bytes(lens.kept_fingerprints),
            traps: bytes(lens.traps),
            blame: bytes(lens.blame),
        }
    }
}

/// Bytes of the blame region of a relay of `clients` and `trustees`: every node's identity
/// and pad keys (64 bytes), then one place per round it holds at once
/// ([`super::BLAME_PLACES`]: the running one, [`super::MAX_PARKED`] parked ones, the last
/// evidence), each three bitmaps over the nodes, the round's fingerprint row and the
/// evidence of one round.
const fn blame_region_len(clients: usize, trustees: usize) -> usize {
    if !cfg!(feature = "blame-round") {
        return 0;
    }
    let nodes = clients + trustees;
    nodes * 64 + super::BLAME_PLACES * blame_place_len(clients, trustees)
}

/// Bytes of one round's place in the blame region.
const fn blame_place_len(clients: usize, trustees: usize) -> usize {
    let nodes = clients + trustees;
    3 * bitmap_len(nodes)
        + nodes * crate::blame::commit::FINGERPRINT_LEN
        + crate::blame::evidence_len(clients, trustees, 1)
        + crate::blame::evidence::TRAP_TAIL_LEN
}
