//! Sets of node indices, such as an interval's online clients.

use serde::{Deserialize, Serialize};

use crate::MAX_CLIENTS;

const WORDS: usize = MAX_CLIENTS / 64;

/// A set of client indices below [`MAX_CLIENTS`], stored as a bitmap.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OnlineSet {
    bits: [u64; WORDS],
}

impl OnlineSet {
    /// The empty set.
    pub const fn new() -> Self {
        OnlineSet { bits: [0; WORDS] }
    }

    /// Adds `index`; returns false if it is out of range.
    pub fn insert(&mut self, index: usize) -> bool {
        if index >= MAX_CLIENTS {
            return false;
        }
        self.bits[index / 64] |= 1 << (index % 64);
        true
    }

    /// Removes `index`.
    pub fn remove(&mut self, index: usize) {
        if index < MAX_CLIENTS {
            self.bits[index / 64] &= !(1 << (index % 64));
        }
    }

    /// Whether `index` is in the set.
    pub fn contains(&self, index: usize) -> bool {
        index < MAX_CLIENTS && self.bits[index / 64] & (1 << (index % 64)) != 0
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.bits.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.bits.iter().all(|&w| w == 0)
    }

    /// Whether every member of `self` is also in `other`.
    pub fn is_subset(&self, other: &OnlineSet) -> bool {
        self.bits
            .iter()
            .zip(other.bits.iter())
            .all(|(a, b)| a & !b == 0)
    }

    /// Whether any member is at or above `limit`.
    pub fn any_at_or_above(&self, limit: usize) -> bool {
        self.iter().any(|i| i >= limit)
    }

    /// Members in increasing order.
    pub fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        (0..MAX_CLIENTS).filter(move |&i| self.contains(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_operations() {
        let mut s = OnlineSet::new();
        assert!(s.is_empty());
        assert!(s.insert(0) && s.insert(63) && s.insert(64) && s.insert(255));
        assert!(!s.insert(256));
        assert_eq!(s.len(), 4);
        assert!(s.contains(64) && !s.contains(65) && !s.contains(1000));
        let mut t = s;
        t.remove(63);
        assert!(t.is_subset(&s) && !s.is_subset(&t));
        assert!(s.any_at_or_above(255) && !t.any_at_or_above(256));
        let v: heapless::Vec<usize, 8> = s.iter().collect();
        assert_eq!(&v[..], &[0, 63, 64, 255]);
    }
}
