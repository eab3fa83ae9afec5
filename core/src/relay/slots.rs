//! What the relay knows of each pseudonym slot: its owner's public key, the slot's cell key
//! (derived on first use and kept), its trap key of the running interval (derived from its
//! trap point at its first owned exchange of the interval and kept for the interval), which
//! of the slot's exchanges in the running interval comes next (the ordinal its owner seals), and, after a disruption, which of the slot's
//! cells its owner wrote before it learned of it.
//!
//! One entry per slot in [`RelayStorage::slots`](super::RelayStorage):
//!
//! ```text
//! Entry = key (32) ‖ cell key (32) ‖ cell key state (1) ‖ interval (u32 BE)
//!         ‖ ordinal (u32 BE) ‖ abandon_below (u64 BE)
//!         ‖ trap key (32) ‖ trap interval (u32 BE) ‖ trap state (1)
//!         ‖ disruptions pending (u16 BE)
//! ```
//!
//! The trap state is 0 until the trap key of the trap interval is derived, 1 once it is,
//! 2 if there is none (no valid public key, or no trap secret).
//!
//! The cell key state is 0 until the cell key is derived, 1 once it is, 2 if the public key
//! is no key (no cell of the slot is authentic).
//!
//! `interval` is the interval the counters belong to (they restart with each interval).
//! `abandon_below` is 0 when the slot was not disrupted, `u64::MAX` while a disruption
//! waits to be reported, then the exchange of the request that reported it: the owner
//! wrote every cell of its slot below that exchange without knowing its records had to be
//! sent again, so none of them is delivered (the owner sends them again, in order).
//!
//! Owns the entries. It must not verify cells (`wire::slot`) or decode them (`decode.rs`).

use crate::field;
use crate::ristretto::keys::SecretKey;
use crate::wire::{SlotKey, TrapKey};

/// Bytes of one slot's entry.
pub(super) const ENTRY: usize = 32 + 32 + 1 + 4 + 4 + 8 + 32 + 4 + 1 + 2;

const KEY: usize = 0;
const CELL_KEY: usize = 32;
const STATE: usize = 64;
const INTERVAL: usize = 65;
const ORDINAL: usize = 69;
const ABANDON: usize = 73;
const TRAP_KEY: usize = 81;
const TRAP_INTERVAL: usize = 113;
const TRAP_STATE: usize = 117;
const PENDING: usize = 118;

const UNDERIVED: u8 = 0;
const DERIVED: u8 = 1;
const NO_KEY: u8 = 2;

/// Each slot's key and counters.
#[derive(Debug)]
pub(super) struct Slots<B> {
    storage: B,
}

impl<B: AsRef<[u8]> + AsMut<[u8]>> Slots<B> {
    pub(super) fn new(mut storage: B) -> Self {
        storage.as_mut().fill(0);
        Slots { storage }
    }

    fn entry(&self, slot: u16) -> Option<&[u8]> {
        let at = usize::from(slot) * ENTRY;
        self.storage.as_ref().get(at..at + ENTRY)
    }

    fn entry_mut(&mut self, slot: u16) -> Option<&mut [u8]> {
        let at = usize::from(slot) * ENTRY;
        self.storage.as_mut().get_mut(at..at + ENTRY)
    }

    /// Sets `slot`'s pseudonym public key; false if there is no such slot.
    pub(super) fn set_key(&mut self, slot: u16, key: &[u8; 32]) -> bool {
        match self.entry_mut(slot) {
            Some(e) => {
                field::put(e, KEY, key);
                field::put(e, CELL_KEY, &[0; 32]);
                field::put(e, STATE, &[UNDERIVED]);
                field::put(e, TRAP_STATE, &[UNDERIVED]);
                true
            }
            None => false,
        }
    }

    /// `slot`'s public key (all zeros if none was set: no cell of it is authentic).
    pub(super) fn key(&self, slot: u16) -> [u8; 32] {
        let mut k = [0u8; 32];
        if let Some(src) = self.entry(slot).and_then(|e| e.get(KEY..KEY + 32)) {
            k.copy_from_slice(src);
        }
        k
    }

    /// `slot`'s cell key, derived from `relay` (the relay's DH secret) on first use and
    /// kept. `None` if the slot has no valid public key or the relay no DH secret.
    pub(super) fn cell_key(
        &mut self,
        slot: u16,
        relay: Option<&SecretKey>,
        group_id: &[u8; 16],
        session_id: &[u8; 16],
    ) -> Option<SlotKey> {
        let e = self.entry_mut(slot)?;
        match e.get(STATE).copied()? {
            DERIVED => {
                let bytes = e.get(CELL_KEY..CELL_KEY + 32)?.try_into().ok()?;
                Some(SlotKey::from_bytes(bytes))
            }
            UNDERIVED => {
                let public: [u8; 32] = e.get(KEY..KEY + 32)?.try_into().ok()?;
                let derived = SlotKey::relay(relay?, &public, group_id, session_id, slot).ok();
                match &derived {
                    Some(k) => {
                        field::put(e, CELL_KEY, k.as_bytes());
                        field::put(e, STATE, &[DERIVED]);
                    }
                    None => field::put(e, STATE, &[NO_KEY]),
                }
                derived
            }
            _ => None,
        }
    }

    /// `slot`'s trap key of `interval`, derived from its trap point `Z = r_I·P_s`, which
    /// is computed from `trap` (the interval's trap secret) on first use in the interval;
    /// the key is kept for the interval. `None` if the slot has no valid public key or
    /// there is no trap secret.
    pub(super) fn trap_key(
        &mut self,
        slot: u16,
        interval: u32,
        trap: Option<&SecretKey>,
        group_id: &[u8; 16],
        session_id: &[u8; 16],
    ) -> Option<TrapKey> {
        let e = self.entry_mut(slot)?;
        let state = e.get(TRAP_STATE).copied()?;
        if field::u32_at(e, TRAP_INTERVAL) == interval && state == DERIVED {
            let bytes = e.get(TRAP_KEY..TRAP_KEY + 32)?.try_into().ok()?;
            return Some(TrapKey::from_bytes(bytes));
        }
        if field::u32_at(e, TRAP_INTERVAL) == interval && state == NO_KEY {
            return None;
        }
        let public: [u8; 32] = e.get(KEY..KEY + 32)?.try_into().ok()?;
        let z = crate::ristretto::keys::dh(trap?, &public).ok();
        let key = z.map(|z| TrapKey::from_point(&z, group_id, session_id, interval, slot));
        field::put(e, TRAP_INTERVAL, &interval.to_be_bytes());
        match &key {
            Some(key) => {
                field::put(e, TRAP_KEY, key.as_bytes());
                field::put(e, TRAP_STATE, &[DERIVED]);
            }
            None => field::put(e, TRAP_STATE, &[NO_KEY]),
        }
        key
    }

    /// Moves `slot`'s counters to `interval` (restarting them for a new one).
    fn enter(&mut self, slot: u16, interval: u32) -> Option<&mut [u8]> {
        let e = self.entry_mut(slot)?;
        if field::u32_at(e, INTERVAL) != interval {
            field::put(e, INTERVAL, &interval.to_be_bytes());
            field::put(e, ORDINAL, &0u32.to_be_bytes());
            field::put(e, ABANDON, &0u64.to_be_bytes());
            field::put(e, PENDING, &0u16.to_be_bytes());
        }
        Some(e)
    }

    /// The ordinal of `slot`'s next exchange in `interval` to decode, counted.
    pub(super) fn next_ordinal(&mut self, slot: u16, interval: u32) -> u64 {
        let Some(e) = self.enter(slot, interval) else {
            return 0;
        };
        let n = field::u32_at(e, ORDINAL);
        field::put(e, ORDINAL, &n.wrapping_add(1).to_be_bytes());
        u64::from(n)
    }

    /// Exchanges of `slot` decoded so far in `interval` (the ordinal of its next one).
    #[cfg(any(test, feature = "blame-round"))]
    pub(super) fn decoded(&self, slot: u16, interval: u32) -> u64 {
        self.entry(slot)
            .filter(|e| field::u32_at(e, INTERVAL) == interval)
            .map_or(0, |e| u64::from(field::u32_at(e, ORDINAL)))
    }

    /// Whether `slot`'s cell of `exchange` was written before its owner learned of a
    /// disruption of the slot: it is not delivered.
    pub(super) fn abandoned(&mut self, slot: u16, interval: u32, exchange: u64) -> bool {
        self.enter(slot, interval)
            .is_some_and(|e| exchange < field::u64_at(e, ABANDON))
    }

    /// `slot` was disrupted: its cells are abandoned until the disruption is reported.
    pub(super) fn disrupted(&mut self, slot: u16, interval: u32) {
        if let Some(e) = self.enter(slot, interval) {
            field::put(e, ABANDON, &u64::MAX.to_be_bytes());
            let pending = field::u16_at(e, PENDING).saturating_add(1);
            field::put(e, PENDING, &pending.to_be_bytes());
        }
    }

    /// A disruption of `slot` was reported in the request of `exchange`: once the last one
    /// waiting is, its owner's cells from that exchange on are written knowing of them all.
    pub(super) fn reported(&mut self, slot: u16, interval: u32, exchange: u64) {
        if let Some(e) = self.enter(slot, interval) {
            let pending = field::u16_at(e, PENDING).saturating_sub(1);
            field::put(e, PENDING, &pending.to_be_bytes());
            if pending == 0 && field::u64_at(e, ABANDON) == u64::MAX {
                field::put(e, ABANDON, &exchange.to_be_bytes());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{pad_public_key, pad_secret};

    #[test]
    fn a_cell_key_is_derived_once_and_only_from_a_valid_key() {
        let relay = pad_secret(&[11; 32]).unwrap();
        let mut slots = Slots::new(std::vec![0u8; 3 * ENTRY]);
        let public = pad_public_key(&[9; 32]);
        assert!(slots.set_key(1, &public));
        assert!(!slots.set_key(3, &public), "no such slot");
        // Without the relay's secret there is no key, and nothing is kept.
        assert_eq!(slots.cell_key(1, None, &[1; 16], &[2; 16]), None);
        let want = SlotKey::owner(&[9; 32], &pad_public_key(&[11; 32]), &[1; 16], &[2; 16], 1);
        let got = slots.cell_key(1, Some(&relay), &[1; 16], &[2; 16]);
        assert_eq!(got, want.ok());
        // Kept: later calls read it back without the relay's secret.
        assert_eq!(slots.cell_key(1, None, &[1; 16], &[2; 16]), got);
        // Slot 0 has no key (the identity): never authentic, and remembered as such.
        assert_eq!(slots.cell_key(0, Some(&relay), &[1; 16], &[2; 16]), None);
        assert_eq!(slots.storage[STATE], NO_KEY);
        // A new public key is derived afresh.
        assert!(slots.set_key(1, &pad_public_key(&[10; 32])));
        let other = slots.cell_key(1, Some(&relay), &[1; 16], &[2; 16]);
        assert!(other.is_some() && other != got);
        // The trap key: once per interval, from the owner's `x·R_I`.
        let (g, s) = (&[1; 16], &[2; 16]);
        let trap = pad_secret(&[12; 32]).unwrap();
        let k = slots.trap_key(1, 7, Some(&trap), g, s).unwrap();
        let announced = trap.public_key().to_bytes();
        let owner = TrapKey::owner(&[10; 32], &announced, g, s, 7, 1).unwrap();
        assert_eq!(k, owner);
        assert_eq!(
            slots.trap_key(1, 7, None, g, s),
            Some(k),
            "kept for the interval"
        );
        assert_eq!(
            slots.trap_key(1, 8, None, g, s),
            None,
            "a new interval needs its secret"
        );
        assert_eq!(
            slots.trap_key(0, 7, Some(&trap), g, s),
            None,
            "no key, no trap"
        );
        // The counters are apart from the key.
        assert_eq!(slots.next_ordinal(1, 7), 0);
        assert_eq!(slots.next_ordinal(1, 7), 1);
        assert_eq!(slots.decoded(1, 7), 2);
        assert_eq!(slots.decoded(1, 8), 0, "another interval's count");
        assert_eq!(slots.cell_key(1, None, &[1; 16], &[2; 16]), other);
    }
}
