//! Bitmaps over node indices and slots: the online set of an interval, a request vector.
//!
//! On the wire a set over `n` positions is exactly `ceil(n / 8)` bytes; position `i` is bit
//! `i % 8` (least significant first) of byte `i / 8`, and bits at positions `>= n` are zero.
//!
//! Owns the bitmap layout and its checks; it must not know what a position stands for.

/// Bytes of a bitmap over `n` positions.
pub const fn bitmap_len(n: usize) -> usize {
    n.div_ceil(8)
}

/// A read-only bitmap over `len` positions, borrowed from a buffer (often a frame body).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bits<'a> {
    bytes: &'a [u8],
    len: usize,
}

/// Why bytes are not a bitmap over the expected number of positions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BitsError {
    /// The byte count is not `ceil(n / 8)`.
    Length,
    /// A bit past the last position is set.
    Stray,
}

impl core::fmt::Display for BitsError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            BitsError::Length => "bitmap of the wrong length",
            BitsError::Stray => "bitmap sets a position past its end",
        })
    }
}

impl core::error::Error for BitsError {}

impl<'a> Bits<'a> {
    /// Checks that `bytes` is a bitmap over exactly `len` positions.
    pub fn new_checked(bytes: &'a [u8], len: usize) -> Result<Self, BitsError> {
        if bytes.len() != bitmap_len(len) {
            return Err(BitsError::Length);
        }
        if !len.is_multiple_of(8) {
            if let Some(&last) = bytes.last() {
                if last >> (len % 8) != 0 {
                    return Err(BitsError::Stray);
                }
            }
        }
        Ok(Bits { bytes, len })
    }

    /// Number of positions.
    pub const fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no positions at all.
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The raw bytes.
    pub const fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// Whether position `i` is set (false past the end).
    pub fn contains(&self, i: usize) -> bool {
        i < self.len && test(self.bytes, i)
    }

    /// Number of set positions.
    pub fn count(&self) -> usize {
        self.bytes.iter().map(|b| b.count_ones() as usize).sum()
    }

    /// Set positions in increasing order.
    pub fn iter(&self) -> impl Iterator<Item = usize> + 'a {
        let bytes = self.bytes;
        bytes.iter().enumerate().flat_map(|(k, &b)| {
            (0..8usize).filter_map(move |bit| (b & (1 << bit) != 0).then_some(k * 8 + bit))
        })
    }
}

/// Whether position `i` of a bitmap is set (false past its end).
pub fn test(bytes: &[u8], i: usize) -> bool {
    bytes.get(i / 8).is_some_and(|b| b & (1 << (i % 8)) != 0)
}

/// Sets position `i` of a bitmap; false if it is past the end.
pub fn set(bytes: &mut [u8], i: usize) -> bool {
    match bytes.get_mut(i / 8) {
        Some(b) => {
            *b |= 1 << (i % 8);
            true
        }
        None => false,
    }
}

/// Clears position `i` of a bitmap.
pub fn clear(bytes: &mut [u8], i: usize) {
    if let Some(b) = bytes.get_mut(i / 8) {
        *b &= !(1 << (i % 8));
    }
}

/// The first set position at or after `from`, or `end` if none is before it.
pub fn next_set(bytes: &[u8], mut from: usize, end: usize) -> usize {
    while from < end && !test(bytes, from) {
        from += 1;
    }
    from
}

/// Number of set positions below `i`: the place of position `i` among the set ones.
pub fn rank(bytes: &[u8], i: usize) -> usize {
    let full = (i / 8).min(bytes.len());
    let below = bytes.get(..full).map_or(0, count);
    let part = match bytes.get(i / 8) {
        Some(b) => (b & ((1u8 << (i % 8)) - 1)).count_ones() as usize,
        None => 0,
    };
    below + part
}

/// Number of set positions.
pub fn count(bytes: &[u8]) -> usize {
    bytes.iter().map(|b| b.count_ones() as usize).sum()
}

#[cfg(test)]
mod tests {
    // Test code only: each unwrap() is an assertion on a fixture, never on network input.
    use super::*;

    #[test]
    fn rank_counts_the_set_positions_below() {
        let bytes = [0b1010_0101u8, 0b0000_0011, 0b1000_0000];
        for i in 0..30 {
            let slow = (0..i).filter(|&k| test(&bytes, k)).count();
            assert_eq!(rank(&bytes, i), slow, "position {i}");
        }
        assert_eq!(rank(&[], 5), 0);
    }

    #[test]
    fn layout_is_lsb_first() {
        let mut b = [0u8; 2];
        assert!(set(&mut b, 0) && set(&mut b, 9) && !set(&mut b, 16));
        assert_eq!(b, [0x01, 0x02]);
        let v = Bits::new_checked(&b, 10).unwrap();
        assert!(v.contains(0) && v.contains(9) && !v.contains(1) && !v.contains(10));
        assert_eq!(v.count(), 2);
        let got: heapless::Vec<usize, 4> = v.iter().collect();
        assert_eq!(&got[..], &[0, 9]);
        clear(&mut b, 9);
        assert_eq!(count(&b), 1);
    }

    #[test]
    fn wrong_shapes_are_refused() {
        assert_eq!(Bits::new_checked(&[0, 0], 17), Err(BitsError::Length));
        assert_eq!(Bits::new_checked(&[0x04], 2), Err(BitsError::Stray));
        assert!(Bits::new_checked(&[0x03], 2).is_ok());
        assert!(Bits::new_checked(&[], 0).unwrap().is_empty());
    }
}
