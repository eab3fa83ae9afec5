//! The relay's commitments to what each node sent ([`crate::blame::commit`]): a row of
//! fingerprints per exchange in flight (every member's and trustee's cell, clients by
//! index, then trustees), and the rows of the latest [`ANSWERED`] disrupted exchanges
//! (and reservation exchanges that showed a request), kept for the blame rounds their
//! accusations start.
//!
//! Why [`ANSWERED`] rows, whatever the window: the relay begins a round about an exchange
//! `e` only while fewer than [`ANSWERED`] exchanges of the interval were issued after it
//! ([`crate::blame::within_answered`]). Each decoded exchange keeps at most one row, in the
//! order the exchanges decode, so once `e`'s row is pushed out [`ANSWERED`] later
//! exchanges were decoded, and issued, after it: no round about `e` may begin any more.
//! Every exchange a round may still begin about has its row, however many slots are
//! disrupted at once. No ring of fewer rows does that, however it chose what to let go:
//! [`ANSWERED`] exchanges in a row may all be disrupted and all still within their slots'
//! keep horizons (four busy slots at a window of 16, ⌈144 / `keep_horizon(window)`⌉ in
//! general), and a round may begin about any of them. A ring of `keep_horizon(window)` rows
//! (as before) let go of an exchange still within its slot's horizon once more than that
//! many other exchanges were disrupted since, which several disrupted slots reach within a
//! few exchanges of each (`core/tests/kept_rows.rs`).
//!
//! Owns the kept rows and which exchanges they are. It must not decide when a cell counts
//! (`exchange.rs`) or when an exchange is disrupted (`decode.rs`); the rows in flight live
//! in the window (`exchange.rs`).

use heapless::Vec;

use crate::blame::commit::FINGERPRINT_LEN;
use crate::blame::ANSWERED;

/// Disrupted exchanges whose rows are kept: [`ANSWERED`], as many exchanges of the
/// interval as a round may begin behind.
pub const MAX_KEPT: usize = ANSWERED;

/// The slot of a kept reservation exchange's row.
pub(super) const RESERVATION: u16 = u16::MAX;

/// A kept row: the interval, the exchange and its slot ([`RESERVATION`] for a reservation
/// exchange that showed a request: a forged one is accused at its owner's bit), and the
/// slot's ordinal of the exchange in the interval (0 for a reservation exchange): how many
/// exchanges of the slot came before it, from which a round counts those after it
/// ([`crate::blame::horizon`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct KeptRow {
    pub(super) interval: u32,
    pub(super) exchange: u64,
    pub(super) slot: u16,
    pub(super) ordinal: u64,
}

impl KeptRow {
    fn is(&self, interval: u32, exchange: u64, slot: u16) -> bool {
        self.interval == interval && self.exchange == exchange && self.slot == slot
    }
}

/// The kept rows, a ring over the caller's storage.
#[derive(Debug)]
pub(super) struct Fingerprints<B> {
    rows: B,
    row_len: usize,
    kept: Vec<Option<KeptRow>, MAX_KEPT>,
    next: usize,
}

impl<B: AsRef<[u8]> + AsMut<[u8]>> Fingerprints<B> {
    /// `places` kept rows of `nodes` fingerprints each in `rows`.
    pub(super) fn new(rows: B, nodes: usize, places: usize) -> Self {
        let mut kept = Vec::new();
        for _ in 0..places.min(MAX_KEPT) {
            let _ = kept.push(None);
        }
        Fingerprints {
            rows,
            row_len: nodes * FINGERPRINT_LEN,
            kept,
            next: 0,
        }
    }

    /// Keeps `row` (the fingerprints of a disrupted exchange), over the oldest kept one.
    pub(super) fn keep(&mut self, what: KeptRow, row: &[u8]) {
        let places = self.kept.len();
        if places == 0 {
            return;
        }
        let at = self.next;
        self.next = (at + 1) % places;
        let start = at * self.row_len;
        if let (Some(dst), Some(k)) = (
            self.rows.as_mut().get_mut(start..start + self.row_len),
            self.kept.get_mut(at),
        ) {
            let n = row.len().min(dst.len());
            dst.fill(0);
            if let (Some(d), Some(s)) = (dst.get_mut(..n), row.get(..n)) {
                d.copy_from_slice(s);
            }
            *k = Some(what);
        }
    }

    /// The kept row of `exchange` of `interval` in `slot`, if it is kept.
    pub(super) fn row(&self, interval: u32, exchange: u64, slot: u16) -> Option<&[u8]> {
        let at = self.position(interval, exchange, slot)?;
        let start = at * self.row_len;
        self.rows.as_ref().get(start..start + self.row_len)
    }

    /// The slot's ordinal of `exchange` of `interval` in `slot`, if its row is kept.
    #[cfg(feature = "blame-round")]
    pub(super) fn ordinal(&self, interval: u32, exchange: u64, slot: u16) -> Option<u64> {
        let at = self.position(interval, exchange, slot)?;
        self.kept.get(at).copied().flatten().map(|k| k.ordinal)
    }

    fn position(&self, interval: u32, exchange: u64, slot: u16) -> Option<usize> {
        self.kept
            .iter()
            .position(|k| k.is_some_and(|k| k.is(interval, exchange, slot)))
    }

    /// Node `node`'s fingerprint in a kept row.
    pub(super) fn of(row: &[u8], node: usize) -> Option<[u8; FINGERPRINT_LEN]> {
        let start = node * FINGERPRINT_LEN;
        row.get(start..start + FINGERPRINT_LEN)?.try_into().ok()
    }

    /// Forgets every kept row (the interval ended).
    pub(super) fn clear(&mut self) {
        self.kept.iter_mut().for_each(|k| *k = None);
        self.next = 0;
    }
}
