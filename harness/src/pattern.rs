//! Checked byte streams: the bytes a test or a benchmark sends, so that every byte that
//! comes back can be checked.
//!
//! One generator, the core test network's ([`dissent_core::testkit::pattern`]): xorshift64,
//! one byte a step, different per seed.

/// `len` bytes that do not repeat with any short period, different per `seed`.
pub fn bytes(len: usize, seed: u64) -> Vec<u8> {
    dissent_core::testkit::pattern(seed as usize, len)
}

/// An endless stream: byte `k` is byte `k mod period` of [`bytes`]`(period, seed)`.
pub struct Pattern(Vec<u8>);

impl Pattern {
    /// The stream of `seed` repeating every `period` bytes (a prime keeps streams read at
    /// different offsets from lining up).
    pub fn new(seed: u64, period: usize) -> Pattern {
        Pattern(bytes(period.max(1), seed))
    }

    /// Writes the stream bytes at `offset` into `out`.
    pub fn fill(&self, offset: u64, out: &mut [u8]) {
        let period = self.0.len();
        let mut at = (offset % period as u64) as usize;
        for chunk in out.chunks_mut(period) {
            let (head, tail) = chunk.split_at_mut(chunk.len().min(period - at));
            head.copy_from_slice(&self.0[at..at + head.len()]);
            tail.copy_from_slice(&self.0[..tail.len()]);
            at = (at + chunk.len()) % period;
        }
    }

    /// Whether `data` equals the stream bytes at `offset`.
    pub fn matches(&self, offset: u64, data: &[u8]) -> bool {
        let period = self.0.len();
        let mut at = (offset % period as u64) as usize;
        for chunk in data.chunks(period) {
            let (head, tail) = chunk.split_at(chunk.len().min(period - at));
            if head != &self.0[at..at + head.len()] || tail != &self.0[..tail.len()] {
                return false;
            }
            at = (at + chunk.len()) % period;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_check_every_byte() {
        let p = Pattern::new(1, 65_521);
        let mut a = vec![0u8; 200_000];
        p.fill(12_345, &mut a);
        assert!(p.matches(12_345, &a));
        assert!(p.matches(12_345 + 70_000, &a[70_000..]));
        // The stream is the generator's bytes, repeated.
        let one = bytes(65_521, 1);
        assert_eq!(&a[..10], &one[12_345..12_355]);
        assert_eq!(a[65_521 - 12_345], one[0]);
        a[77_777] ^= 1;
        assert!(!p.matches(12_345, &a));
        assert!(!p.matches(12_346, &a[..1000]));
    }

    #[test]
    fn seeds_differ() {
        assert_ne!(bytes(64, 1), bytes(64, 2));
        assert_eq!(bytes(64, 7), bytes(64, 7));
    }
}
