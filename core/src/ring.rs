//! A FIFO of variable-length entries in caller storage, each entry contiguous (in the
//! flavour of smoltcp's `storage::RingBuffer`, for entries of many lengths).
//!
//! When an entry does not fit between the last entry and the end of the buffer it goes to
//! the start (if there is room before the first entry), and the end is marked so readers
//! skip the gap. [`Ring`] keeps only the positions, and offsets index the buffer passed to
//! every call; [`EntryRing`] holds its storage as well.
//!
//! Owns where entries are; it must not know what is in them beyond their length, which the
//! caller's [`EntryLen`] reads from an entry's first bytes. Nothing here panics: a length
//! that points outside the buffer ends an iteration or a read early.

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Ring {
    /// Offset of the first entry.
    start: usize,
    /// Offset just past the last entry.
    end: usize,
    /// Where the data before the wrap stops (readers jump to 0 there).
    wrap_at: Option<usize>,
    count: usize,
}

/// Reads an entry's total length from its first bytes.
pub(crate) type EntryLen = fn(&[u8]) -> usize;

impl Ring {
    pub(crate) const fn new() -> Self {
        Ring {
            start: 0,
            end: 0,
            wrap_at: None,
            count: 0,
        }
    }

    pub(crate) fn clear(&mut self) {
        *self = Ring::new();
    }

    /// Reserves `len` contiguous bytes at the back; returns their offset.
    pub(crate) fn push(&mut self, cap: usize, len: usize) -> Option<usize> {
        let (at, wraps) = self.place(cap, len)?;
        if self.count == 0 {
            self.start = 0;
            self.wrap_at = None;
        } else if wraps {
            self.wrap_at = Some(self.end);
        }
        self.end = at + len;
        self.count += 1;
        Some(at)
    }

    /// Whether [`Ring::push`] would take an entry of `len` bytes now.
    pub(crate) fn fits(&self, cap: usize, len: usize) -> bool {
        self.place(cap, len).is_some()
    }

    /// Where an entry of `len` bytes would go, and whether it wraps to the start.
    fn place(&self, cap: usize, len: usize) -> Option<(usize, bool)> {
        if len == 0 || len > cap {
            return None;
        }
        if self.count == 0 {
            return Some((0, false));
        }
        if self.wrap_at.is_none() {
            if self.end + len <= cap {
                Some((self.end, false))
            } else if len <= self.start {
                Some((0, true))
            } else {
                None
            }
        } else if self.end + len < self.start {
            Some((self.end, false))
        } else {
            None
        }
    }

    /// Longest entry [`Ring::push`] would accept now.
    pub(crate) fn max_push(&self, cap: usize) -> usize {
        if self.count == 0 {
            cap
        } else if self.wrap_at.is_none() {
            (cap - self.end).max(self.start.saturating_sub(1))
        } else {
            self.start.saturating_sub(self.end + 1)
        }
    }

    /// Offset of the first entry.
    pub(crate) fn front(&self) -> Option<usize> {
        (self.count > 0).then_some(self.start)
    }

    /// Removes the first entry, whose length `entry_len` reads.
    pub(crate) fn pop(&mut self, buf: &[u8], entry_len: EntryLen) {
        if self.count == 0 {
            return;
        }
        self.count -= 1;
        if self.count == 0 {
            *self = Ring::new();
            return;
        }
        self.start += buf.get(self.start..).map_or(0, entry_len);
        if self.wrap_at == Some(self.start) {
            self.start = 0;
            self.wrap_at = None;
        }
    }

    /// Moves the entries into one run from offset 0, in order, so that the free room is one
    /// block. `keep(entry, from, to)` sees each entry in place (it was at offset `from` and
    /// goes to `to`), may rewrite it, and returns how many of its first bytes stay: 0 drops
    /// it. Moves up to the whole buffer. A length that points outside the buffer ends the
    /// ring at the entries before it.
    pub(crate) fn compact(
        &mut self,
        buf: &mut [u8],
        entry_len: EntryLen,
        mut keep: impl FnMut(&mut [u8], usize, usize) -> usize,
    ) {
        let cap = buf.len();
        if self.count == 0 || self.start >= cap {
            return;
        }
        let shift = self.start;
        // The first entry to 0; entries that had wrapped to 0 now follow the gap after the
        // others, so every entry lies at or past where it goes.
        buf.rotate_left(shift);
        let (mut from, mut to, mut kept) = (self.start, 0, 0);
        for _ in 0..self.count {
            if self.wrap_at == Some(from) {
                from = 0;
            }
            let here = (from + cap - shift) % cap;
            let Some(rest) = buf.get_mut(here..) else {
                break;
            };
            let len = entry_len(rest);
            let Some(entry) = rest.get_mut(..len).filter(|_| len > 0 && to <= here) else {
                break;
            };
            let n = keep(entry, from, to).min(len);
            // `to <= here` and `here + len <= cap`: both ranges are in the buffer.
            buf.copy_within(here..here + n, to);
            if n > 0 {
                kept += 1;
            }
            to += n;
            from += len;
        }
        *self = if kept == 0 {
            Ring::new()
        } else {
            Ring {
                start: 0,
                end: to,
                wrap_at: None,
                count: kept,
            }
        };
    }

    /// Offset of the entry after the one at `at`, which is `len` bytes long; `None` after
    /// the last.
    pub(crate) fn after(&self, at: usize, len: usize) -> Option<usize> {
        let next = at + len;
        if self.wrap_at == Some(next) {
            // Entries wrapped, so the first of them is at 0.
            Some(0)
        } else {
            (next != self.end).then_some(next)
        }
    }

    /// Offsets of every entry, oldest first.
    pub(crate) fn offsets<'b>(
        &self,
        buf: &'b [u8],
        entry_len: EntryLen,
    ) -> impl Iterator<Item = usize> + 'b {
        let mut at = self.start;
        let mut left = self.count;
        let wrap_at = self.wrap_at;
        core::iter::from_fn(move || {
            if left == 0 {
                return None;
            }
            if wrap_at == Some(at) {
                at = 0;
            }
            let here = at;
            at += buf.get(here..).map_or(0, entry_len);
            left -= 1;
            Some(here)
        })
    }
}

/// A [`Ring`] with its storage: entries are read and written through it.
#[derive(Debug)]
pub(crate) struct EntryRing<B> {
    storage: B,
    ring: Ring,
    entry_len: EntryLen,
}

impl<B: AsRef<[u8]> + AsMut<[u8]>> EntryRing<B> {
    /// An empty ring over `storage`, whose entries' lengths `entry_len` reads.
    pub(crate) fn new(storage: B, entry_len: EntryLen) -> Self {
        EntryRing {
            storage,
            ring: Ring::new(),
            entry_len,
        }
    }

    /// Bytes of storage.
    pub(crate) fn capacity(&self) -> usize {
        self.storage.as_ref().len()
    }

    /// Forgets every entry.
    pub(crate) fn clear(&mut self) {
        self.ring.clear();
    }

    /// Reserves `len` contiguous bytes at the back: their offset and the bytes.
    pub(crate) fn push(&mut self, len: usize) -> Option<(usize, &mut [u8])> {
        let cap = self.capacity();
        let at = self.ring.push(cap, len)?;
        let entry = self.storage.as_mut().get_mut(at..at + len)?;
        Some((at, entry))
    }

    /// Whether [`EntryRing::push`] would take an entry of `len` bytes now.
    pub(crate) fn fits(&self, len: usize) -> bool {
        self.ring.fits(self.capacity(), len)
    }

    /// Longest entry [`EntryRing::push`] would accept now, whatever its place (an entry
    /// as long as the room before the first may fit even so: see [`EntryRing::fits`]).
    pub(crate) fn max_push(&self) -> usize {
        self.ring.max_push(self.capacity())
    }

    /// Offset of the first entry.
    pub(crate) fn front(&self) -> Option<usize> {
        self.ring.front()
    }

    /// The entry at offset `at`, to change in place (its length must stay).
    pub(crate) fn entry_mut(&mut self, at: usize) -> Option<&mut [u8]> {
        let rest = self.storage.as_mut().get_mut(at..)?;
        let len = (self.entry_len)(rest);
        rest.get_mut(..len)
    }

    /// Moves the entries into one run from the start, in order, so the free room is one
    /// block; `keep` as in [`Ring::compact`].
    pub(crate) fn compact(&mut self, keep: impl FnMut(&mut [u8], usize, usize) -> usize) {
        self.ring
            .compact(self.storage.as_mut(), self.entry_len, keep);
    }

    /// Moves the entries in bytes `from..to` behind every later entry, in place, and
    /// returns how far they moved (the later entries moved back by `to - from`). Only while
    /// the entries lie in one run (after [`EntryRing::compact`], and pushes since that did
    /// not wrap) and `from..to` starts and ends at entries; `None`, and nothing moved,
    /// otherwise.
    pub(crate) fn move_run_to_back(&mut self, from: usize, to: usize) -> Option<usize> {
        let Ring {
            start,
            end,
            wrap_at,
            ..
        } = self.ring;
        if wrap_at.is_some() || from < start || from > to || to > end {
            return None;
        }
        self.storage
            .as_mut()
            .get_mut(from..end)?
            .rotate_left(to - from);
        Some(end - to)
    }

    /// Removes the first entry.
    pub(crate) fn pop_front(&mut self) {
        self.ring.pop(self.storage.as_ref(), self.entry_len);
    }

    /// Offset of the entry after the one at `at`; `None` after the last.
    pub(crate) fn after(&self, at: usize) -> Option<usize> {
        let len = self.entry(at).map_or(0, <[u8]>::len);
        self.ring.after(at, len)
    }

    /// Offsets of every entry, oldest first.
    pub(crate) fn offsets(&self) -> impl Iterator<Item = usize> + '_ {
        self.ring.offsets(self.storage.as_ref(), self.entry_len)
    }

    /// Every entry with its offset, oldest first.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (usize, &[u8])> + '_ {
        self.offsets()
            .filter_map(move |at| self.entry(at).map(|entry| (at, entry)))
    }

    /// The entry at offset `at` (its whole length, as `entry_len` reads it).
    pub(crate) fn entry(&self, at: usize) -> Option<&[u8]> {
        let rest = self.storage.as_ref().get(at..)?;
        let len = (self.entry_len)(rest);
        rest.get(..len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn len_of(b: &[u8]) -> usize {
        usize::from(b[0])
    }

    fn put(r: &mut Ring, buf: &mut [u8], len: u8) -> Option<usize> {
        let at = r.push(buf.len(), usize::from(len))?;
        buf[at] = len;
        Some(at)
    }

    #[test]
    fn wraps_and_keeps_order() {
        let mut buf = [0u8; 10];
        let mut r = Ring::new();
        assert_eq!(put(&mut r, &mut buf, 4), Some(0));
        assert_eq!(put(&mut r, &mut buf, 4), Some(4));
        assert_eq!(put(&mut r, &mut buf, 3), None);
        assert_eq!(r.max_push(buf.len()), 2);
        r.pop(&buf, len_of);
        assert_eq!(r.max_push(buf.len()), 3);
        // 3 bytes fit before the first entry (at 4): wrap.
        assert_eq!(put(&mut r, &mut buf, 3), Some(0));
        assert_eq!(put(&mut r, &mut buf, 1), None);
        let offs: heapless::Vec<usize, 4> = r.offsets(&buf, len_of).collect();
        assert_eq!(&offs[..], &[4, 0]);
        r.pop(&buf, len_of);
        assert_eq!(r.front(), Some(0));
        r.pop(&buf, len_of);
        assert_eq!(r.front(), None);
        assert_eq!(put(&mut r, &mut buf, 10), Some(0));
        assert_eq!(put(&mut r, &mut buf, 11), None);
    }

    #[test]
    fn the_first_entry_moved_to_the_back_always_fits() {
        // Full from the start: popping the first entry frees exactly the room it needs.
        let mut buf = [0u8; 9];
        let mut r = Ring::new();
        assert_eq!(put(&mut r, &mut buf, 4), Some(0));
        assert_eq!(put(&mut r, &mut buf, 4), Some(4));
        r.pop(&buf, len_of);
        assert_eq!(put(&mut r, &mut buf, 4), Some(0));
        let offs: heapless::Vec<usize, 4> = r.offsets(&buf, len_of).collect();
        assert_eq!(&offs[..], &[4, 0]);
        assert_eq!(r.max_push(buf.len()), 0);
        assert_eq!(put(&mut r, &mut buf, 1), None);
        // And again from the wrapped state.
        r.pop(&buf, len_of);
        assert_eq!(put(&mut r, &mut buf, 4), Some(4));
        let offs: heapless::Vec<usize, 4> = r.offsets(&buf, len_of).collect();
        assert_eq!(&offs[..], &[0, 4]);
    }

    #[test]
    fn compact_keeps_order_and_frees_one_block() {
        // Entries hold their length, then a tag; the gap before the wrap is dropped too.
        let mut buf = [0u8; 12];
        let mut r = Ring::new();
        for (len, tag) in [(3, 1), (4, 2), (3, 3)] {
            let at = put(&mut r, &mut buf, len).unwrap();
            buf[at + 1] = tag;
        }
        r.pop(&buf, len_of);
        // 3 bytes fit before the first entry (at 3): wrap, leaving 2 unused bytes at the end.
        let at = put(&mut r, &mut buf, 3).unwrap();
        assert_eq!(at, 0);
        buf[at + 1] = 4;
        assert_eq!(r.max_push(buf.len()), 0);
        let mut seen = heapless::Vec::<(usize, usize), 4>::new();
        r.compact(&mut buf, len_of, |e, from, to| {
            seen.push((from, to)).unwrap();
            // Drop tag 3, keep the others whole.
            if e[1] == 3 {
                0
            } else {
                e.len()
            }
        });
        assert_eq!(&seen[..], &[(3, 0), (7, 4), (0, 4)]);
        let tags: heapless::Vec<u8, 4> = r.offsets(&buf, len_of).map(|o| buf[o + 1]).collect();
        assert_eq!(&tags[..], &[2, 4]);
        assert_eq!(r.max_push(buf.len()), 5);
        // Everything dropped: empty.
        r.compact(&mut buf, len_of, |_, _, _| 0);
        assert_eq!(r.front(), None);
        assert_eq!(r.max_push(buf.len()), 12);
    }

    #[test]
    fn after_walks_the_entries_in_order() {
        let mut buf = [0u8; 10];
        let mut r = Ring::new();
        for len in [3, 3, 3] {
            put(&mut r, &mut buf, len);
        }
        r.pop(&buf, len_of);
        put(&mut r, &mut buf, 2);
        let offs: heapless::Vec<usize, 4> = r.offsets(&buf, len_of).collect();
        assert_eq!(&offs[..], &[3, 6, 0]);
        let mut walked: heapless::Vec<usize, 4> = heapless::Vec::new();
        let mut at = r.front();
        while let Some(o) = at {
            walked.push(o).unwrap();
            at = r.after(o, len_of(&buf[o..]));
        }
        assert_eq!(walked, offs);
    }

    #[test]
    fn an_entry_ring_reads_back_what_it_holds() {
        let mut r = EntryRing::new([0u8; 10], len_of);
        for len in [4u8, 4] {
            let (_, e) = r.push(usize::from(len)).unwrap();
            e.fill(len);
        }
        assert!(!r.fits(3) && r.fits(2));
        r.pop_front();
        // Three bytes fit before the first entry: the ring wraps.
        assert!(r.fits(3) && !r.fits(5));
        let (at, e) = r.push(3).unwrap();
        e.fill(3);
        assert_eq!(at, 0);
        assert!(r.iter().eq([(4, &[4u8; 4][..]), (0, &[3u8; 3][..])]));
        assert_eq!(r.after(4), Some(0));
        assert_eq!(r.after(0), None);
        r.clear();
        assert_eq!(r.iter().count(), 0);
        assert_eq!(r.push(11), None);
    }
}
