//! The outputs of decoded exchanges, waiting to be reported in the next request so every node
//! applies them to its schedule.
//!
//! A ring of `2 × window` fixed-size entries in [`RelayStorage::outputs`](super::RelayStorage):
//!
//! ```text
//! Entry = Len (u16 BE) ‖ Output (Len bytes, wire::Output encoding) ‖ unused
//! ```
//!
//! Owns the queue's entries. It must not decide when outputs are reported or applied (that
//! is `exchange.rs`'s).

use crate::bits::bitmap_len;
use crate::field;
use crate::wire;

/// Bytes of an entry's length field.
const LEN: usize = 2;

/// Bytes of an entry in a group of `slots` slots: the length field and the output in its
/// longest form, a `Next` (3 bytes), a `Disrupted` or a reservation bitmap.
pub(super) const fn entry_len(slots: u16) -> usize {
    let bitmap = 1 + bitmap_len(slots as usize);
    LEN + if bitmap > wire::DISRUPTED_OUTPUT_LEN {
        bitmap
    } else {
        wire::DISRUPTED_OUTPUT_LEN
    }
}

/// Decoded outputs not yet reported, oldest first.
#[derive(Debug)]
pub(super) struct OutputQueue<B> {
    storage: B,
    /// Bytes per entry.
    stride: usize,
    /// Entries the storage holds.
    capacity: usize,
    /// The oldest entry.
    head: usize,
    len: usize,
}

impl<B: AsRef<[u8]> + AsMut<[u8]>> OutputQueue<B> {
    /// An empty queue of `capacity` entries of `stride` bytes over `storage`.
    pub(super) fn new(storage: B, capacity: usize, stride: usize) -> Self {
        OutputQueue {
            storage,
            stride,
            capacity,
            head: 0,
            len: 0,
        }
    }

    /// Whether no more outputs fit (exchanges must wait to be decoded).
    pub(super) fn is_full(&self) -> bool {
        self.len >= self.capacity
    }

    /// Whether nothing waits.
    pub(super) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Forgets every output.
    pub(super) fn clear(&mut self) {
        self.len = 0;
    }

    /// Queues a slot exchange's `Next`.
    pub(super) fn push_next(&mut self, next: u16) {
        if let Some(entry) = self.back() {
            let (len, output) = entry.split_at_mut(LEN);
            // The stride holds the longer of a `Next` and a bitmap.
            let n = wire::emit_next_output(output, 0, next).unwrap_or(0);
            field::put(len, 0, &(n as u16).to_be_bytes());
            self.len += 1;
        }
    }

    /// Queues a disrupted slot exchange's digest.
    pub(super) fn push_disrupted(&mut self, digest: &[u8; wire::DISRUPTED_DIGEST_LEN]) {
        if let Some(entry) = self.back() {
            let (len, output) = entry.split_at_mut(LEN);
            // The stride holds a `Disrupted` output.
            let n = wire::emit_disrupted_output(output, 0, digest).unwrap_or(0);
            field::put(len, 0, &(n as u16).to_be_bytes());
            self.len += 1;
        }
    }

    /// Queues a reservation exchange's decoded request bitmap.
    pub(super) fn push_requests(&mut self, bitmap: &[u8]) {
        if let Some(entry) = self.back() {
            let (len, output) = entry.split_at_mut(LEN);
            // The stride holds the bitmap form, the longer of the two encodings.
            let n = wire::emit_requests_output(output, 0, bitmap).unwrap_or(0);
            field::put(len, 0, &(n as u16).to_be_bytes());
            self.len += 1;
        }
    }

    /// The oldest output.
    pub(super) fn front(&self) -> Option<&[u8]> {
        if self.is_empty() {
            return None;
        }
        let entry = self.entry(self.head)?;
        let n = usize::from(field::u16_at(entry, 0));
        entry.get(LEN..LEN + n)
    }

    /// Drops the oldest output.
    pub(super) fn pop_front(&mut self) {
        if !self.is_empty() {
            self.head = (self.head + 1) % self.capacity.max(1);
            self.len -= 1;
        }
    }

    /// The free entry behind the newest, if one is free.
    fn back(&mut self) -> Option<&mut [u8]> {
        if self.is_full() {
            return None;
        }
        let at = (self.head + self.len) % self.capacity.max(1) * self.stride;
        self.storage.as_mut().get_mut(at..at + self.stride)
    }

    fn entry(&self, index: usize) -> Option<&[u8]> {
        let at = index * self.stride;
        self.storage.as_ref().get(at..at + self.stride)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{Output, OutputsView};

    #[test]
    fn outputs_come_out_in_order_and_wrap() {
        // Room for two outputs of a group of 12 slots (a 2-byte bitmap; a `Disrupted`
        // output is the longest).
        let stride = entry_len(12);
        assert_eq!(stride, LEN + wire::DISRUPTED_OUTPUT_LEN);
        let mut q = OutputQueue::new([0u8; 2 * (LEN + wire::DISRUPTED_OUTPUT_LEN)], 2, stride);
        q.push_next(300);
        q.push_requests(&[0b0000_0101, 0]);
        assert!(q.is_full());
        // A full queue takes nothing more.
        q.push_next(1);
        assert_eq!(q.front(), Some(&[0, 1, 44][..]));
        q.pop_front();
        match OutputsView::parse(q.front().unwrap(), 12)
            .unwrap()
            .iter()
            .next()
        {
            Some(Output::Requests(r)) => assert!(r.iter().eq([0, 2])),
            o => panic!("{o:?}"),
        }
        // The next entry goes where the first was.
        q.push_next(7);
        q.pop_front();
        assert_eq!(q.front(), Some(&[0, 0, 7][..]));
        q.pop_front();
        assert!(q.is_empty() && q.front().is_none());
    }

    #[test]
    fn a_next_keeps_its_bytes_in_a_group_of_few_slots() {
        // Up to 8 slots the bitmap form takes 2 bytes, a `Next` 3, a `Disrupted` 17: the
        // entry holds the longest, so a `Next` queued behind another keeps all three.
        for slots in [1, 4, 8] {
            let stride = entry_len(slots);
            assert_eq!(stride, LEN + wire::DISRUPTED_OUTPUT_LEN);
            let mut storage = [0u8; 3 * (LEN + wire::DISRUPTED_OUTPUT_LEN)];
            let mut q = OutputQueue::new(&mut storage[..], 3, stride);
            q.push_next(0x0180);
            q.push_requests(&[0b1]);
            q.push_next(0x0240);
            for want in [&[0, 1, 0x80][..], &[1, 1][..], &[0, 2, 0x40][..]] {
                assert_eq!(q.front(), Some(want), "{slots} slots");
                q.pop_front();
            }
        }
    }
}
