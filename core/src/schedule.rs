//! Slot reservations: which pseudonym slot owns each exchange (the prototype's NextSlot).
//!
//! The schedule is a deterministic function of what the DC-net itself decoded, so the relay,
//! every client and every trustee run this same code on the same inputs and agree on every
//! exchange (clients and trustees refuse a request whose kind differs from their own).
//! Nothing outside the DC-net says who wants to send.
//!
//! - A *reservation* exchange ([`Kind::Reserve`]) carries one bit per slot. An owner who
//!   wants to send sets its bit; the XOR of all cells is the set of requesting slots (each
//!   bit has one owner, so requests never collide). Up to `admit` requesting slots that are
//!   not yet reserved join the reserved set, with the base cell length.
//! - Every owned cell starts with `Next`: the length the owner wants for its next cell. A
//!   non-zero `Next` keeps (or puts) the slot in the reserved set with that length (clamped
//!   to `base ..= max`); zero releases it. A garbled exchange is never reported: the relay
//!   ends the interval there, and the next one starts with a fresh schedule.
//! - Each exchange goes round robin to the next reserved slot; after `period - 1` slot
//!   exchanges in a row, or whenever nothing is reserved, comes a reservation exchange.
//!
//! A lone sender therefore gets `(period - 1) / period` of all exchanges, and an idle net
//! runs only reservation exchanges. Their cost per exchange is one bit per slot per cell,
//! `ceil(slots / 8)` bytes, paid once every `period` exchanges while anyone sends.
//!
//! The reserved set lives in caller storage ([`Schedule::table_len`] bytes), sorted by slot.
//! A client that sets other slots' bits (jamming) costs at most `admit` base-length
//! exchanges per reservation exchange and cannot take anyone's reservation away.
//!
//! Owns which slot each exchange belongs to; it must not know who owns a slot or what a
//! cell carries.

use heapless::Deque;

use crate::field;
use crate::wire::{Kind, Output, OutputsView, Params};

/// Bytes of one reserved entry in the table: slot (u16 BE), length (u16 BE).
const ENTRY: usize = 4;

/// Errors in schedule parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ScheduleError {
    /// No slots, a period below 2, no admission, no capacity, or lengths out of order.
    Params,
    /// The table storage is smaller than [`Schedule::table_len`].
    Storage,
    /// An output does not fit the exchange it reports (kind mismatch).
    Mismatch,
}

impl core::fmt::Display for ScheduleError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            ScheduleError::Params => "schedule parameters out of range",
            ScheduleError::Storage => "schedule table storage too small",
            ScheduleError::Mismatch => "an exchange output does not match its exchange",
        })
    }
}

impl core::error::Error for ScheduleError {}

/// How a request departs from the schedule a member follows ([`Schedule::follow`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deviation {
    /// Its kind, or an output it reports, is not what the schedule gives.
    WrongKind,
    /// More exchanges are issued without their outputs than a member keeps.
    WindowExceeded,
}

/// The schedule state of one interval (the reserved set is in the caller's table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    slots: u16,
    base: u16,
    max: u16,
    period: u16,
    admit: u16,
    capacity: u16,
    reserved: u16,
    cursor: Option<u16>,
    since: u16,
    rotate: u16,
}

impl Schedule {
    /// Table bytes needed for `capacity` reserved slots.
    pub const fn table_len(capacity: u16) -> usize {
        capacity as usize * ENTRY
    }

    /// A fresh schedule (nothing reserved) for a group of `slots` slots, whose reserved set
    /// will live in a table of `table_len` bytes.
    pub fn new(slots: u16, params: &Params, table_len: usize) -> Result<Self, ScheduleError> {
        if table_len < Self::table_len(params.capacity) {
            return Err(ScheduleError::Storage);
        }
        let ok = slots > 0
            && params.period >= 2
            && params.admit > 0
            && params.capacity > 0
            && params.base_len > 0
            && params.base_len <= params.max_len
            && params.max_len <= u32::from(u16::MAX);
        if !ok {
            return Err(ScheduleError::Params);
        }
        Ok(Schedule {
            slots,
            base: params.base_len as u16,
            max: params.max_len as u16,
            period: params.period,
            admit: params.admit,
            capacity: params.capacity,
            reserved: 0,
            cursor: None,
            since: 0,
            rotate: 0,
        })
    }

    /// Number of slots reserved now.
    pub const fn reserved(&self) -> usize {
        self.reserved as usize
    }

    /// Number of pseudonym slots in the group.
    pub const fn slots(&self) -> u16 {
        self.slots
    }

    /// The kind of the next exchange, advancing the round robin.
    pub fn next(&mut self, table: &[u8]) -> Kind {
        if self.reserved == 0 || self.since + 1 >= self.period {
            self.since = 0;
            return Kind::Reserve;
        }
        let n = self.reserved as usize;
        let mut at = match self.cursor {
            Some(c) => match self.find(table, c) {
                Ok(i) => i + 1,
                Err(i) => i,
            },
            None => 0,
        };
        if at >= n {
            at = 0;
        }
        let (slot, len) = self.entry(table, at);
        self.cursor = Some(slot);
        self.since += 1;
        Kind::Slot {
            slot,
            len: u32::from(len),
        }
    }

    /// Follows the relay's request for an exchange of `kind`, as a client or trustee does:
    /// applies the `outputs` it reports to the issued exchanges in `unreported` (oldest
    /// first), checks that the schedule gives `kind` next, and records `kind` as issued.
    pub fn follow<const N: usize>(
        &mut self,
        table: &mut [u8],
        unreported: &mut Deque<Kind, N>,
        outputs: &OutputsView<'_>,
        kind: Kind,
    ) -> Result<(), Deviation> {
        for output in outputs.iter() {
            let done = unreported.pop_front().ok_or(Deviation::WrongKind)?;
            self.apply(table, done, &output)
                .map_err(|_| Deviation::WrongKind)?;
        }
        if self.next(table) != kind {
            return Err(Deviation::WrongKind);
        }
        unreported
            .push_back(kind)
            .map_err(|_| Deviation::WindowExceeded)
    }

    /// Applies what an exchange of `kind` decoded to.
    pub fn apply(
        &mut self,
        table: &mut [u8],
        kind: Kind,
        output: &Output<'_>,
    ) -> Result<(), ScheduleError> {
        match (kind, output) {
            (Kind::Reserve, Output::Requests(requests)) => {
                let mut admitted = 0u16;
                let mut last = None;
                let rotate = self.rotate;
                let order = requests
                    .iter()
                    .filter(|&s| s >= rotate)
                    .chain(requests.iter().filter(|&s| s < rotate));
                for slot in order {
                    if admitted == self.admit || self.reserved == self.capacity {
                        break;
                    }
                    if slot < self.slots && self.insert(table, slot, self.base) {
                        admitted += 1;
                        last = Some(slot);
                    }
                }
                if admitted == self.admit {
                    if let Some(s) = last {
                        // The cap was hit: start after the last admitted slot next time, so
                        // every requesting slot gets its turn.
                        self.rotate = (s + 1) % self.slots;
                    }
                }
                Ok(())
            }
            (Kind::Slot { slot, .. }, Output::Next(next)) => {
                if *next == 0 {
                    self.remove(table, slot);
                } else {
                    let len = (*next).clamp(self.base, self.max);
                    if !self.update(table, slot, len) && self.reserved < self.capacity {
                        self.insert(table, slot, len);
                    }
                }
                Ok(())
            }
            // A disrupted exchange delivered nothing: the slot stays reserved at its length.
            (Kind::Slot { .. }, Output::Disrupted(_)) => Ok(()),
            _ => Err(ScheduleError::Mismatch),
        }
    }

    /// The cell length `slot` is reserved at, if it is reserved.
    pub fn len_of(&self, table: &[u8], slot: u16) -> Option<u16> {
        let at = self.find(table, slot).ok()?;
        Some(self.entry(table, at).1)
    }

    /// The base cell length (a newly reserved slot's).
    pub const fn base_len(&self) -> u16 {
        self.base
    }

    /// The longest cell length.
    pub const fn max_len(&self) -> u16 {
        self.max
    }

    /// The reserved `(slot, len)` pairs, sorted by slot.
    pub fn iter<'t>(&self, table: &'t [u8]) -> impl Iterator<Item = (u16, u16)> + 't {
        table
            .chunks_exact(ENTRY)
            .take(self.reserved as usize)
            .map(|c| (field::u16_at(c, 0), field::u16_at(c, 2)))
    }

    /// Whether `slot` is reserved.
    pub fn is_reserved(&self, table: &[u8], slot: u16) -> bool {
        self.find(table, slot).is_ok()
    }

    fn entry(&self, table: &[u8], at: usize) -> (u16, u16) {
        let at = at * ENTRY;
        (field::u16_at(table, at), field::u16_at(table, at + 2))
    }

    fn find(&self, table: &[u8], slot: u16) -> Result<usize, usize> {
        let (mut lo, mut hi) = (0usize, self.reserved as usize);
        while lo < hi {
            let mid = (lo + hi) / 2;
            let s = field::u16_at(table, mid * ENTRY);
            match s.cmp(&slot) {
                core::cmp::Ordering::Less => lo = mid + 1,
                core::cmp::Ordering::Greater => hi = mid,
                core::cmp::Ordering::Equal => return Ok(mid),
            }
        }
        Err(lo)
    }

    fn insert(&mut self, table: &mut [u8], slot: u16, len: u16) -> bool {
        if self.reserved >= self.capacity {
            return false;
        }
        let Err(at) = self.find(table, slot) else {
            return false;
        };
        let n = self.reserved as usize;
        table.copy_within(at * ENTRY..n * ENTRY, (at + 1) * ENTRY);
        field::put(table, at * ENTRY, &slot.to_be_bytes());
        field::put(table, at * ENTRY + 2, &len.to_be_bytes());
        self.reserved += 1;
        true
    }

    fn update(&mut self, table: &mut [u8], slot: u16, len: u16) -> bool {
        match self.find(table, slot) {
            Ok(at) => {
                field::put(table, at * ENTRY + 2, &len.to_be_bytes());
                true
            }
            Err(_) => false,
        }
    }

    fn remove(&mut self, table: &mut [u8], slot: u16) {
        if let Ok(at) = self.find(table, slot) {
            let n = self.reserved as usize;
            table.copy_within((at + 1) * ENTRY..n * ENTRY, at * ENTRY);
            self.reserved -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    // Test code only: each unwrap() is an assertion on a fixture, never on network input.
    use super::*;
    use crate::bits::Bits;
    use crate::wire::Requests;

    fn params(period: u16, admit: u16, capacity: u16) -> Params {
        Params {
            base_len: 64,
            max_len: 1000,
            downstream_len: 100,
            period,
            admit,
            capacity,
        }
    }

    fn requests(bitmap: &[u8], slots: u16) -> Output<'_> {
        Output::Requests(Requests::Bitmap(
            Bits::new_checked(bitmap, usize::from(slots)).unwrap(),
        ))
    }

    #[test]
    fn idle_runs_reservations_and_a_lone_sender_gets_the_rest() {
        let mut table = [0u8; 64];
        let mut s = Schedule::new(10, &params(4, 8, 16), table.len()).unwrap();
        assert_eq!(s.next(&table), Kind::Reserve);
        assert_eq!(s.next(&table), Kind::Reserve);
        s.apply(&mut table, Kind::Reserve, &requests(&[0b1000, 0], 10))
            .unwrap();
        let got: heapless::Vec<Kind, 8> = (0..8).map(|_| s.next(&table)).collect();
        let three = Kind::Slot { slot: 3, len: 64 };
        assert_eq!(
            &got[..],
            &[
                three,
                three,
                three,
                Kind::Reserve,
                three,
                three,
                three,
                Kind::Reserve
            ]
        );
        // The owner asks for a long cell, then releases.
        s.apply(&mut table, three, &Output::Next(5000)).unwrap();
        assert_eq!(s.next(&table), Kind::Slot { slot: 3, len: 1000 });
        s.apply(&mut table, three, &Output::Next(0)).unwrap();
        assert_eq!(s.reserved(), 0);
        assert_eq!(s.next(&table), Kind::Reserve);
        // A kind and an output that do not belong together are refused.
        assert_eq!(
            s.apply(&mut table, Kind::Reserve, &Output::Next(3)),
            Err(ScheduleError::Mismatch)
        );
    }

    #[test]
    fn senders_take_turns_and_admission_rotates() {
        let mut table = [0u8; 64];
        let mut s = Schedule::new(16, &params(100, 2, 16), table.len()).unwrap();
        // Slots 1, 5, 9 ask; two are admitted now, the third next time.
        s.apply(
            &mut table,
            Kind::Reserve,
            &requests(&[0b0010_0010, 0b10], 16),
        )
        .unwrap();
        let slots: heapless::Vec<u16, 4> = s.iter(&table).map(|e| e.0).collect();
        assert_eq!(&slots[..], &[1, 5]);
        s.apply(
            &mut table,
            Kind::Reserve,
            &requests(&[0b0010_0010, 0b10], 16),
        )
        .unwrap();
        let slots: heapless::Vec<u16, 4> = s.iter(&table).map(|e| e.0).collect();
        assert_eq!(&slots[..], &[1, 5, 9]);
        let got: heapless::Vec<u16, 6> = (0..6)
            .map(|_| match s.next(&table) {
                Kind::Slot { slot, .. } => slot,
                Kind::Reserve => u16::MAX,
            })
            .collect();
        assert_eq!(&got[..], &[1, 5, 9, 1, 5, 9]);
    }

    #[test]
    fn capacity_and_table_are_respected() {
        let mut table = [0u8; 8];
        assert_eq!(
            Schedule::new(16, &params(4, 8, 3), table.len()),
            Err(ScheduleError::Storage)
        );
        let mut s = Schedule::new(16, &params(4, 8, 2), table.len()).unwrap();
        s.apply(&mut table, Kind::Reserve, &requests(&[0xFF, 0xFF], 16))
            .unwrap();
        assert_eq!(s.reserved(), 2);
        // A slot beyond capacity announcing Next is not added.
        s.apply(
            &mut table,
            Kind::Slot { slot: 9, len: 64 },
            &Output::Next(64),
        )
        .unwrap();
        assert_eq!(s.reserved(), 2);
        assert!(s.is_reserved(&table, 0) && s.is_reserved(&table, 1));
        assert!(Schedule::new(0, &params(4, 8, 2), 8).is_err());
        assert!(Schedule::new(4, &params(1, 8, 2), 8).is_err());
    }
}
