//! A FIFO of variable-length entries in a caller's byte buffer, each entry contiguous.
//!
//! When an entry does not fit between the last entry and the end of the buffer it goes to
//! the start (if there is room before the first entry), and the end is marked so readers
//! skip the gap. Offsets index the buffer passed to every call.

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
        if len == 0 || len > cap {
            return None;
        }
        if self.count == 0 {
            self.start = 0;
            self.end = len;
            self.wrap_at = None;
            self.count = 1;
            return Some(0);
        }
        let at = if self.wrap_at.is_none() {
            if self.end + len <= cap {
                self.end
            } else if len <= self.start {
                self.wrap_at = Some(self.end);
                0
            } else {
                return None;
            }
        } else if self.end + len < self.start {
            self.end
        } else {
            return None;
        };
        self.end = at + len;
        self.count += 1;
        Some(at)
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
        self.start += entry_len(&buf[self.start..]);
        if self.wrap_at == Some(self.start) {
            self.start = 0;
            self.wrap_at = None;
        }
    }

    /// Moves the entries into one run from offset 0, in order, so that the free room is one
    /// block. `keep(entry, from, to)` sees each entry in place (it was at offset `from` and
    /// goes to `to`), may rewrite it, and returns how many of its first bytes stay: 0 drops
    /// it. Moves up to the whole buffer.
    pub(crate) fn compact(
        &mut self,
        buf: &mut [u8],
        entry_len: EntryLen,
        mut keep: impl FnMut(&mut [u8], usize, usize) -> usize,
    ) {
        if self.count == 0 {
            return;
        }
        let cap = buf.len();
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
            let len = entry_len(&buf[here..]);
            let n = keep(&mut buf[here..here + len], from, to).min(len);
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
            at += entry_len(&buf[here..]);
            left -= 1;
            Some(here)
        })
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
}
