//! Cells this client sent in its own slot that the relay has not yet decoded for sure,
//! kept so they can be sent again when an interval ends before they decoded.
//!
//! They live in [`ClientStorage::sent`](super::ClientStorage), oldest first, each entry
//! contiguous:
//!
//! ```text
//! Entry = State (u8) ‖ Interval (u32 BE) ‖ Exchange (u64 BE) ‖ Len (u16 BE)
//!       ‖ Records (Len bytes, the cell's records as in wire::CellView)
//! ```
//!
//! Owns the entries, their states and the cursor into the entry being sent again. It must
//! not stage anything itself (`stage.rs` pulls records to send again from here).

use heapless::Vec;

use super::{Client, ClientEvent, MAX_CONNECTIONS};
use crate::field;
use crate::ring::EntryRing;
use crate::wire::{CellView, ConnId, IntervalRecord, RECORD_HEADER_LEN};

/// Field offsets of an entry.
mod layout {
    pub(super) const STATE: usize = 0;
    pub(super) const INTERVAL: usize = 1;
    pub(super) const EXCHANGE: usize = 5;
    pub(super) const LEN: usize = 13;
    pub(super) const RECORDS: usize = 15;
}

/// Bytes of an entry before its records.
pub(super) const HEADER_LEN: usize = layout::RECORDS;

/// Bytes of a sent ring of `len` bytes that new data leaves free, so cells an interval's end
/// leaves to send again can always go out: each piece sent again is kept anew (its header,
/// and a split record's) while its first copy waits, until the copy is confirmed. Without it
/// a ring full of such cells had no room to send any of them, and the client stalled for
/// good.
pub(super) const fn reserve(len: usize) -> usize {
    let min = 4 * (HEADER_LEN + RECORD_HEADER_LEN);
    if len / 8 > min {
        len / 8
    } else {
        min
    }
}

/// Where a sent cell stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum State {
    /// Sent; not known to have decoded.
    Sent = 1,
    /// Decoded: done with, dropped from the front.
    Confirmed = 2,
    /// Abandoned by an interval's end: its records go out again.
    Resend = 3,
    /// Sent in an interval the relay no longer remembers: its connections end.
    Lost = 4,
    /// To be sent again, and already waiting for that before cells were just abandoned
    /// (only while [`Client::abandon_from`] or [`Client::settle`] runs).
    Waiting = 5,
}

impl State {
    fn from_byte(b: u8) -> Option<State> {
        match b {
            1 => Some(State::Sent),
            2 => Some(State::Confirmed),
            3 => Some(State::Resend),
            4 => Some(State::Lost),
            5 => Some(State::Waiting),
            _ => None,
        }
    }
}

/// A checked view of one entry.
#[derive(Debug, Clone, Copy)]
pub(super) struct SentEntry<'a> {
    bytes: &'a [u8],
}

impl<'a> SentEntry<'a> {
    /// Checks that `bytes` hold a whole entry, header and records.
    pub(super) fn new_checked(bytes: &'a [u8]) -> Option<Self> {
        (bytes.len() >= HEADER_LEN).then_some(())?;
        bytes
            .get(..entry_len(bytes))
            .map(|bytes| SentEntry { bytes })
    }

    pub(super) fn state(&self) -> Option<State> {
        State::from_byte(field::u8_at(self.bytes, layout::STATE))
    }

    pub(super) fn interval(&self) -> u32 {
        field::u32_at(self.bytes, layout::INTERVAL)
    }

    pub(super) fn exchange(&self) -> u64 {
        field::u64_at(self.bytes, layout::EXCHANGE)
    }

    /// The cell's records.
    pub(super) fn records(&self) -> &'a [u8] {
        self.bytes.get(HEADER_LEN..).unwrap_or(&[])
    }

    /// The whole entry's length.
    fn len(&self) -> usize {
        self.bytes.len()
    }
}

/// An entry's whole length, read from its `Len` field.
fn entry_len(bytes: &[u8]) -> usize {
    HEADER_LEN + usize::from(field::u16_at(bytes, layout::LEN))
}

/// Writes an entry's header into `entry`.
fn emit_header(entry: &mut [u8], state: State, interval: u32, exchange: u64, records: usize) {
    field::put(entry, layout::STATE, &[state as u8]);
    field::put(entry, layout::INTERVAL, &interval.to_be_bytes());
    field::put(entry, layout::EXCHANGE, &exchange.to_be_bytes());
    field::put(entry, layout::LEN, &(records as u16).to_be_bytes());
}

/// Entries sorted at a time when an interval is settled (their offsets are on the stack).
const SORT_BATCH: usize = 256;

/// The sent cells not yet known to have decoded.
#[derive(Debug)]
pub(super) struct SentRing<B> {
    entries: EntryRing<B>,
    /// Where the next record to send again starts, in the first `Resend` entry (an offset
    /// into the storage).
    pub(super) resend_at: Option<usize>,
}

impl<B: AsRef<[u8]> + AsMut<[u8]>> SentRing<B> {
    pub(super) fn new(storage: B) -> Self {
        SentRing {
            entries: EntryRing::new(storage, entry_len),
            resend_at: None,
        }
    }

    /// Forgets every entry.
    pub(super) fn clear(&mut self) {
        self.entries.clear();
        self.resend_at = None;
    }

    /// Most cell content the ring can keep once sent (two entries' headers: a sent prefix
    /// and, should the interval end, the rest); more could not be sent again.
    pub(super) fn room(&self) -> usize {
        self.entries.max_push().saturating_sub(2 * HEADER_LEN)
    }

    /// Most new cell content the ring can keep once sent: [`SentRing::room`] less the
    /// [`reserve`] for cells sent again.
    pub(super) fn room_for_new(&self) -> usize {
        self.room().saturating_sub(reserve(self.entries.capacity()))
    }

    /// Appends an entry for `records` bytes of records, which the caller writes into the
    /// returned slice; `None` if they do not fit.
    pub(super) fn push(
        &mut self,
        state: State,
        interval: u32,
        exchange: u64,
        records: usize,
    ) -> Option<&mut [u8]> {
        let (_, entry) = self.entries.push(HEADER_LEN + records)?;
        emit_header(entry, state, interval, exchange, records);
        entry.get_mut(HEADER_LEN..)
    }

    /// Every entry with its offset, oldest first.
    pub(super) fn iter(&self) -> impl Iterator<Item = (usize, SentEntry<'_>)> + '_ {
        self.entries
            .iter()
            .filter_map(|(at, bytes)| SentEntry::new_checked(bytes).map(|e| (at, e)))
    }

    /// The entry at offset `at`.
    pub(super) fn entry(&self, at: usize) -> Option<SentEntry<'_>> {
        self.entries.entry(at).and_then(SentEntry::new_checked)
    }

    /// Sets the state of the entry at offset `at`.
    pub(super) fn set_state(&mut self, at: usize, state: State) {
        if let Some(entry) = self.entries.entry_mut(at) {
            field::put(entry, layout::STATE, &[state as u8]);
        }
    }

    /// The records of the entry at offset `at`, to change in place.
    pub(super) fn records_mut(&mut self, at: usize) -> Option<&mut [u8]> {
        self.entries.entry_mut(at)?.get_mut(HEADER_LEN..)
    }

    /// Whether some cell waits to be sent again.
    pub(super) fn resend_pending(&self) -> bool {
        self.iter().any(|(_, e)| e.state() == Some(State::Resend))
    }

    /// Drops the confirmed entries at the front.
    pub(super) fn pop_done(&mut self) {
        while let Some(at) = self.entries.front() {
            let Some(entry) = self.entry(at) else {
                break;
            };
            if entry.state() != Some(State::Confirmed) {
                break;
            }
            let len = entry.bytes.len();
            if self.resend_at.is_some_and(|r| r >= at && r < at + len) {
                self.resend_at = None;
            }
            self.entries.pop_front();
        }
    }

    /// Rewrites the ring as one run, in order, without its confirmed entries and without
    /// the bytes of the first entry to send again that the stage already took, so the room
    /// they held is free again as one block. Entries to send again wait at the front for
    /// the stage, and the copies of what was sent again queue behind them: without this,
    /// confirmed copies could not be popped, and their room never came back.
    pub(super) fn compact(&mut self) {
        let resend_at = self.resend_at;
        let mut moved = None;
        self.entries.compact(|entry, from, to| {
            let state = State::from_byte(field::u8_at(entry, layout::STATE));
            if state == Some(State::Confirmed) {
                return 0;
            }
            let whole = entry.len();
            match resend_at {
                Some(a)
                    if matches!(state, Some(State::Resend | State::Waiting))
                        && a >= from + HEADER_LEN
                        && a <= from + whole =>
                {
                    // `a - from` is within the entry, past its header.
                    let skip = a - from - HEADER_LEN;
                    let len = whole - HEADER_LEN - skip;
                    entry.copy_within(HEADER_LEN + skip.., HEADER_LEN);
                    field::put(entry, layout::LEN, &(len as u16).to_be_bytes());
                    moved = Some(to + HEADER_LEN);
                    HEADER_LEN + len
                }
                _ => whole,
            }
        });
        self.resend_at = moved;
    }

    /// Sets every cell to send again to [`State::Waiting`], before more cells are
    /// abandoned: the stage and those cells carry bytes that come before what these have
    /// left to send ([`SentRing::waiting_to_back`] puts them behind).
    fn hold_waiting(&mut self) {
        self.set_all(State::Resend, State::Waiting);
    }

    /// After [`SentRing::hold_waiting`], the ring compacted and the stage requeued: moves
    /// the cells that were waiting behind every other entry, and they are cells to send
    /// again as before. Those cells form one run (everything abandoned since was appended
    /// behind them); the run moves only while the ring is one run too, as compacting and
    /// pushing leave it.
    fn waiting_to_back(&mut self) {
        let mut run: Option<(usize, usize)> = None;
        let mut whole = true;
        for (at, e) in self.iter() {
            if e.state() != Some(State::Waiting) {
                continue;
            }
            run = match run {
                None => Some((at, at + e.len())),
                Some((from, to)) if to == at => Some((from, at + e.len())),
                Some(r) => {
                    whole = false;
                    Some(r)
                }
            };
        }
        if let (Some((from, to)), true) = (run, whole) {
            if let Some(shift) = self.entries.move_run_to_back(from, to) {
                // The cursor is in the run's first entry.
                self.resend_at = self.resend_at.map(|r| {
                    if (from..=to).contains(&r) {
                        r + shift
                    } else {
                        r
                    }
                });
            }
        }
        self.set_all(State::Waiting, State::Resend);
    }

    /// Sets every entry in state `from` to state `to`.
    fn set_all(&mut self, from: State, to: State) {
        loop {
            let offsets: Vec<usize, SORT_BATCH> = self
                .iter()
                .filter(|(_, e)| e.state() == Some(from))
                .take(SORT_BATCH)
                .map(|(at, _)| at)
                .collect();
            if offsets.is_empty() {
                return;
            }
            for at in offsets {
                self.set_state(at, to);
            }
        }
    }

    /// Marks as confirmed the cells of `interval` up to exchange `below`, which decoded
    /// before the relay issued the current request.
    pub(super) fn confirm_up_to(&mut self, interval: u32, below: u64) {
        // The first 64 sent cells, in order, one at a time: a confirmed one is no longer
        // sent, and `passed` counts those of other intervals. (Collected into a list first,
        // they were copied twice at every request.)
        let mut passed = 0;
        for _ in 0..64 {
            let next = self
                .iter()
                .filter(|(_, e)| e.state() == Some(State::Sent))
                .nth(passed)
                .map(|(at, e)| (at, e.interval(), e.exchange()));
            let Some((at, i, e)) = next else {
                break;
            };
            if i == interval && e <= below {
                self.set_state(at, State::Confirmed);
            } else if i == interval {
                break;
            } else {
                passed += 1;
            }
        }
        self.pop_done();
    }

    /// Sorts the sent cells of intervals before `current` by `history`: decoded ones are
    /// done, abandoned ones are to be sent again, and those of forgotten intervals lost.
    /// Returns whether any is lost and whether any is to be sent again.
    fn sort(&mut self, current: u32, history: &[IntervalRecord]) -> (bool, bool) {
        let mut lost_any = false;
        let mut resend_any = false;
        // Offsets only, 256 at a time (the entries are read again one at a time): a
        // device's stack holds this list. Setting a state moves no entry, so the next batch
        // starts where this one ended.
        let mut sorted = 0;
        // The interval of an own cell the history shows disrupted: its later cells there
        // (which the relay withheld) are sent again after it.
        let mut disrupted_in = None;
        loop {
            let offsets: Vec<usize, SORT_BATCH> = self
                .iter()
                .skip(sorted)
                .take(SORT_BATCH)
                .map(|(at, _)| at)
                .collect();
            if offsets.is_empty() {
                break;
            }
            sorted += offsets.len();
            let (lost, resend) = self.sort_at(&offsets, current, history, &mut disrupted_in);
            lost_any |= lost;
            resend_any |= resend;
        }
        (lost_any, resend_any)
    }

    /// Sorts the entries at `offsets` (see [`SentRing::sort`]).
    fn sort_at(
        &mut self,
        offsets: &[usize],
        current: u32,
        history: &[IntervalRecord],
        disrupted_in: &mut Option<u32>,
    ) -> (bool, bool) {
        let mut lost_any = false;
        let mut resend_any = false;
        for &at in offsets {
            let Some((state, interval, exchange)) = self
                .entry(at)
                .map(|e| (e.state(), e.interval(), e.exchange()))
            else {
                continue;
            };
            if state != Some(State::Sent) || interval == current {
                resend_any |= matches!(state, Some(State::Resend | State::Waiting));
                continue;
            }
            let state = match history.iter().find(|h| h.interval == interval) {
                Some(h) if h.decoded(exchange) && *disrupted_in != Some(interval) => {
                    State::Confirmed
                }
                Some(h) => {
                    if exchange < h.done {
                        // Disrupted while this client was away (or after it): as when
                        // the relay's `Disrupted` output is reported.
                        *disrupted_in = Some(interval);
                    }
                    resend_any = true;
                    State::Resend
                }
                None => {
                    lost_any = true;
                    State::Lost
                }
            };
            self.set_state(at, state);
        }
        (lost_any, resend_any)
    }
}

impl<B: AsMut<[u8]> + AsRef<[u8]>> Client<B> {
    /// Sorts unconfirmed cells at the start of a confirmed interval: decoded ones are done,
    /// abandoned ones are sent again first, and those of forgotten intervals are lost.
    pub(super) fn settle(&mut self, current: u32, history: &[IntervalRecord]) {
        // Cells an earlier interval's end or disruption left to send again, not all sent
        // again yet: what the stage took of them, and the cells abandoned now (which carry
        // what was sent of them since), come before the rest of their bytes.
        self.sent.hold_waiting();
        let (lost_any, resend_any) = self.sent.sort(current, history);
        if lost_any {
            self.lose_lost_entries();
        }
        self.sent.pop_done();
        if resend_any {
            // The room below is needed as one block.
            self.sent.compact();
        }
        if resend_any && !self.stage.is_empty() {
            // Bytes staged but never sent go after the ones to send again.
            self.requeue_stage();
        }
        self.sent.waiting_to_back();
        self.purge_stage();
    }

    /// A cell of this client's, of `exchange` in the running `interval`, was disrupted:
    /// it and every later cell of the interval (written before the client knew) are to be
    /// sent again, in order, before anything staged since. Returns whether any was.
    pub(super) fn abandon_from(&mut self, interval: u32, exchange: u64) -> bool {
        self.commit_taken();
        let hits: Vec<usize, SORT_BATCH> = self
            .sent
            .iter()
            .filter(|(_, e)| {
                e.state() == Some(State::Sent)
                    && e.interval() == interval
                    && e.exchange() >= exchange
            })
            .take(SORT_BATCH)
            .map(|(at, _)| at)
            .collect();
        if hits.is_empty() {
            return false;
        }
        // As at an interval's start: the room below is needed as one block, bytes staged
        // go after the ones to send again, and cells waiting to be sent again, which the
        // abandoned cells and the stage carry the first bytes of, go behind them all.
        self.sent.hold_waiting();
        for at in hits {
            self.sent.set_state(at, State::Resend);
        }
        self.sent.compact();
        if !self.stage.is_empty() {
            self.requeue_stage();
        }
        self.sent.waiting_to_back();
        self.purge_stage();
        true
    }

    /// Ends the connections named in lost entries, which are then done.
    fn lose_lost_entries(&mut self) {
        loop {
            let Some((at, gone)) = self
                .sent
                .iter()
                .find(|(_, e)| e.state() == Some(State::Lost))
                .map(|(at, e)| (at, connections_in(e.records())))
            else {
                return;
            };
            self.sent.set_state(at, State::Confirmed);
            self.lose(gone);
        }
    }

    /// Moves the stage's records behind the cells to send again, keeping byte order.
    pub(super) fn requeue_stage(&mut self) {
        let records = self.stage.records();
        match self.sent.push(State::Resend, 0, 0, records.len()) {
            Some(dst) => dst.copy_from_slice(records),
            None => {
                // No room to keep byte order: those connections cannot go on.
                let gone = connections_in(records);
                self.lose(gone);
            }
        }
        self.stage.clear();
    }

    /// Ends `gone`, connections whose bytes cannot be sent in order any more.
    pub(super) fn lose(&mut self, gone: Vec<ConnId, MAX_CONNECTIONS>) {
        for conn in gone {
            if self.connections.swap_remove(&conn).is_some() {
                self.push_event(ClientEvent::Lost { conn });
            }
        }
    }

    /// Ends every connection quietly (nothing is sent upstream for them).
    pub(super) fn lose_all(&mut self) {
        let all: Vec<ConnId, MAX_CONNECTIONS> = self.connections.keys().copied().collect();
        self.connections.clear();
        for conn in all {
            self.push_event(ClientEvent::Lost { conn });
        }
        self.sent.clear();
        self.stage.clear();
        self.stage.taken = None;
    }
}

/// The connections with records in `records` (a record list as in a cell).
pub(super) fn connections_in(records: &[u8]) -> Vec<ConnId, MAX_CONNECTIONS> {
    let mut gone: Vec<ConnId, MAX_CONNECTIONS> = Vec::new();
    if let Ok(view) = CellView::parse_records(records) {
        for rec in view {
            if !gone.contains(&rec.conn()) {
                let _ = gone.push(rec.conn());
            }
        }
    }
    gone
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(ring: &SentRing<[u8; 100]>) -> Vec<(usize, Option<State>, Vec<u8, 64>), 4> {
        ring.iter()
            .map(|(at, e)| (at, e.state(), Vec::from_slice(e.records()).unwrap()))
            .collect()
    }

    #[test]
    fn compacting_keeps_what_waits_and_the_resend_cursor() {
        let mut ring = SentRing::new([0u8; 100]);
        ring.push(State::Sent, 1, 0, 20).unwrap().fill(1);
        ring.push(State::Resend, 1, 1, 40).unwrap().fill(2);
        ring.set_state(0, State::Confirmed);
        ring.pop_done();
        // Does not fit after the second entry: it wraps to the start.
        ring.push(State::Resend, 1, 2, 20).unwrap().fill(3);
        let before: Vec<usize, 4> = records(&ring).iter().map(|r| r.0).collect();
        assert_eq!(&before[..], &[35, 0]);
        // The stage took the first 4 record bytes of the first entry to send again.
        ring.records_mut(35).unwrap()[4..].fill(4);
        ring.resend_at = Some(35 + HEADER_LEN + 4);
        ring.compact();
        // One run from 0, without the staged bytes; the cursor at the first entry's
        // records, not in the wrapped entry behind it.
        let after = records(&ring);
        assert_eq!(after.len(), 2);
        assert_eq!(after[0].0, 0);
        assert_eq!(after[0].1, Some(State::Resend));
        assert_eq!(&after[0].2[..], &[4; 36][..]);
        assert_eq!(after[1].0, HEADER_LEN + 36);
        assert_eq!(&after[1].2[..], &[3; 20][..]);
        assert_eq!(ring.resend_at, Some(HEADER_LEN));
        assert_eq!(ring.entries.max_push(), 100 - (2 * HEADER_LEN + 56));
        // Once both are confirmed, everything is free.
        ring.set_state(0, State::Confirmed);
        ring.set_state(HEADER_LEN + 36, State::Confirmed);
        ring.compact();
        assert_eq!(ring.iter().count(), 0);
        assert_eq!(ring.resend_at, None);
        assert_eq!(ring.entries.max_push(), 100);
    }

    #[test]
    fn cells_waiting_to_be_sent_again_go_behind_the_ones_abandoned_after_them() {
        // An older cell still in flight, a cell waiting to be sent again (whose first 5
        // record bytes the stage took), and a cell sent since with bytes of it, which is
        // now abandoned too; then the stage's bytes are queued behind.
        let mut ring = SentRing::new([0u8; 200]);
        ring.push(State::Sent, 1, 0, 10).unwrap().fill(1);
        ring.push(State::Resend, 1, 1, 20).unwrap().fill(2);
        let sent_since = HEADER_LEN + 10 + HEADER_LEN + 20;
        ring.push(State::Sent, 1, 2, 8).unwrap().fill(3);
        ring.resend_at = Some(HEADER_LEN + 10 + HEADER_LEN + 5);
        ring.hold_waiting();
        ring.set_state(sent_since, State::Resend);
        ring.compact();
        ring.push(State::Resend, 0, 0, 5).unwrap().fill(4);
        ring.waiting_to_back();
        let order: Vec<(Option<State>, u8, usize), 4> = ring
            .iter()
            .map(|(_, e)| (e.state(), e.records()[0], e.records().len()))
            .collect();
        assert_eq!(
            &order[..],
            &[
                (Some(State::Sent), 1, 10),
                (Some(State::Resend), 3, 8),
                (Some(State::Resend), 4, 5),
                (Some(State::Resend), 2, 15),
            ]
        );
        // The cursor moved with the entry it is in: at its (trimmed) records' start.
        let last = ring.iter().last().unwrap().0;
        assert_eq!(ring.resend_at, Some(last + HEADER_LEN));
        // Nothing waiting: nothing moves.
        let before: Vec<usize, 4> = ring.iter().map(|(at, _)| at).collect();
        ring.hold_waiting();
        ring.set_all(State::Waiting, State::Resend);
        ring.waiting_to_back();
        let after: Vec<usize, 4> = ring.iter().map(|(at, _)| at).collect();
        assert_eq!(before, after);
    }

    #[test]
    fn settling_sorts_every_entry_however_many() {
        // More entries than one sorting batch: every one is sorted, none left behind as
        // sent in a forgotten interval.
        let mut ring = SentRing::new(std::vec![0u8; 64 * 1024]);
        let n = 3 * SORT_BATCH as u64 + 5;
        for e in 0..n {
            ring.push(State::Sent, 1, e, 8).unwrap().fill(1);
        }
        let history = [IntervalRecord {
            interval: 1,
            done: n - 10,
            disrupted: 0,
        }];
        let (lost, resend) = ring.sort(2, &history);
        assert!(!lost && resend);
        let states: std::vec::Vec<_> = ring.iter().map(|(_, e)| e.state()).collect();
        assert_eq!(states.len() as u64, n);
        for (e, state) in states.iter().enumerate() {
            let expect = if (e as u64) < n - 10 {
                State::Confirmed
            } else {
                State::Resend
            };
            assert_eq!(*state, Some(expect), "entry {e}");
        }
        // An interval nobody remembers: every entry of it is lost.
        let mut ring = SentRing::new(std::vec![0u8; 64 * 1024]);
        for e in 0..n {
            ring.push(State::Sent, 1, e, 8).unwrap().fill(1);
        }
        assert_eq!(ring.sort(2, &[]), (true, false));
        assert!(ring.iter().all(|(_, e)| e.state() == Some(State::Lost)));
    }

    #[test]
    fn a_cell_the_history_shows_disrupted_is_sent_again_with_every_later_one() {
        // Interval 1 decoded 0 .. 10, exchange 6 disrupted (bit 3); this client's cells at
        // 2, 6 and 8, and at 12 (abandoned); interval 2's cell at 1 decoded.
        let mut ring = SentRing::new(std::vec![0u8; 1024]);
        for (i, e) in [(1, 2), (1, 6), (1, 8), (1, 12), (2, 1)] {
            ring.push(State::Sent, i, e, 8).unwrap().fill(1);
        }
        let history = [
            IntervalRecord {
                interval: 1,
                done: 10,
                disrupted: 1 << 3,
            },
            IntervalRecord {
                interval: 2,
                done: 5,
                disrupted: 1 << 2,
            },
        ];
        assert_eq!(ring.sort(3, &history), (false, true));
        let states: std::vec::Vec<_> = ring.iter().map(|(_, e)| e.state()).collect();
        let (c, r) = (Some(State::Confirmed), Some(State::Resend));
        assert_eq!(states, [c, r, r, r, c]);
    }

    #[test]
    fn the_reserve_is_an_eighth_with_a_floor() {
        assert_eq!(reserve(64 * 1024), 8 * 1024);
        assert_eq!(reserve(384), 4 * (HEADER_LEN + RECORD_HEADER_LEN));
    }
}
