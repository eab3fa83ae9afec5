//! The body of a data exchange's cell: the owner's `Next`, then records, then zero padding.
//! (In an owned cell this body is whitened and signed, `slot.rs`.)
//!
//! ```text
//! Body     = Next (u16 BE) | Record* | zero padding
//! Record   = Conn# (u32 BE, > 0) | Kind (u8) | Len (u16 BE) | payload (Len bytes)
//! Kind     = 1 Open (Len ≥ 0) | 2 Data (Len ≥ 1) | 3 Close (Len = 0)
//!          | 4 Accuse (Len = 76: exchange u64 BE | bit u32 BE | proof, 64 bytes)
//!          | 5 Abort (Len = 0) | 6 Grant (Len = 4: bytes u32 BE)
//! ```
//!
//! Owns reading ([`CellView`], [`Records`]) and writing ([`CellWriter`]) them. It must not
//! know about pads, exchanges or who owns a slot.

use super::{ConnId, WireError, MAX_PAYLOAD, NEXT_LEN, RECORD_HEADER_LEN};
use crate::field;

/// What a record is, in its header's kind byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum RecordKind {
    /// The first record of a connection (the exit opens it), with its first bytes if any.
    Open = 1,
    /// Bytes for an open connection (at least one).
    Data = 2,
    /// The owner has finished sending on the connection (a half-close, like a TCP FIN).
    Close = 3,
    /// The owner accuses an exchange of its slot that came back disrupted.
    Accuse = 4,
    /// The owner is done with the connection in both directions (like a TCP reset): the
    /// exit drops it at once.
    Abort = 5,
    /// The owner grants the exit more downstream credit on the connection.
    Grant = 6,
}

impl RecordKind {
    /// The kind of a header's kind byte.
    pub const fn from_byte(b: u8) -> Option<Self> {
        match b {
            1 => Some(RecordKind::Open),
            2 => Some(RecordKind::Data),
            3 => Some(RecordKind::Close),
            4 => Some(RecordKind::Accuse),
            5 => Some(RecordKind::Abort),
            6 => Some(RecordKind::Grant),
            _ => None,
        }
    }
}

/// Bytes of an accusation's proof (a DLEQ proof by the slot's pseudonym key).
pub const ACCUSE_PROOF_LEN: usize = 64;

/// Bytes of an `Accuse` record's payload.
pub const ACCUSE_LEN: usize = 8 + 4 + ACCUSE_PROOF_LEN;

/// An owner's accusation: a bit of an exchange of its slot that it wrote as 0 and that
/// decoded as 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accusation {
    /// The disrupted exchange (of the same interval).
    pub exchange: u64,
    /// The bit: byte `bit / 8` of the cell, bit `bit % 8` (least significant first).
    pub bit: u32,
    /// The slot key's proof over the accusation ([`crate::pseudonym::accusation_context`]).
    pub proof: [u8; ACCUSE_PROOF_LEN],
}

impl Accusation {
    /// The record's payload.
    pub fn to_bytes(&self) -> [u8; ACCUSE_LEN] {
        let mut b = [0u8; ACCUSE_LEN];
        field::put(&mut b, 0, &self.exchange.to_be_bytes());
        field::put(&mut b, 8, &self.bit.to_be_bytes());
        field::put(&mut b, 12, &self.proof);
        b
    }

    /// Reads a record's payload.
    pub fn parse(payload: &[u8]) -> Option<Self> {
        if payload.len() != ACCUSE_LEN {
            return None;
        }
        let mut proof = [0u8; ACCUSE_PROOF_LEN];
        proof.copy_from_slice(payload.get(12..)?);
        Some(Accusation {
            exchange: field::u64_at(payload, 0),
            bit: field::u32_at(payload, 8),
            proof,
        })
    }
}

/// Bytes of a `Grant` record's payload.
pub const GRANT_LEN: usize = 4;

/// One record of a decoded cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Record<'a> {
    /// Bytes for `conn`; `open` marks the connection's first record (the exit opens it).
    Data {
        /// Conn#, never 0.
        conn: ConnId,
        /// First record of the connection.
        open: bool,
        /// Payload; empty only in an opening record.
        payload: &'a [u8],
    },
    /// The owner has finished sending on `conn` (like a TCP FIN).
    Close {
        /// Conn#, never 0.
        conn: ConnId,
    },
    /// The owner is done with `conn` in both directions (like a TCP reset).
    Abort {
        /// Conn#, never 0.
        conn: ConnId,
    },
    /// The owner grants `bytes` more of downstream credit on `conn`.
    Grant {
        /// Conn#, never 0.
        conn: ConnId,
        /// Credit added.
        bytes: u32,
    },
    /// The owner accuses an exchange of its slot (`conn` names the slot, low bits 0).
    Accuse {
        /// Conn# of the slot with low bits 0.
        conn: ConnId,
        /// What it accuses.
        accusation: Accusation,
    },
}

impl Record<'_> {
    /// The record's connection (an accusation's: the slot's, low bits 0).
    pub const fn conn(&self) -> ConnId {
        match *self {
            Record::Data { conn, .. }
            | Record::Close { conn }
            | Record::Abort { conn }
            | Record::Grant { conn, .. }
            | Record::Accuse { conn, .. } => conn,
        }
    }

    /// Bytes this record takes in a cell.
    pub const fn wire_len(&self) -> usize {
        match *self {
            Record::Data { payload, .. } => RECORD_HEADER_LEN + payload.len(),
            Record::Close { .. } | Record::Abort { .. } => RECORD_HEADER_LEN,
            Record::Grant { .. } => RECORD_HEADER_LEN + GRANT_LEN,
            Record::Accuse { .. } => RECORD_HEADER_LEN + ACCUSE_LEN,
        }
    }
}

/// Checks one record header and its length: the kind is known and its length allowed.
fn check_header(kind: Option<RecordKind>, conn: ConnId, len: usize) -> Result<(), WireError> {
    let ok = conn.0 != 0
        && match kind {
            Some(RecordKind::Open) => true,
            Some(RecordKind::Data) => len > 0,
            Some(RecordKind::Close) | Some(RecordKind::Abort) => len == 0,
            Some(RecordKind::Grant) => len == GRANT_LEN,
            Some(RecordKind::Accuse) => len == ACCUSE_LEN && conn.0 & 0xFFFF == 0,
            None => false,
        };
    if ok {
        Ok(())
    } else {
        Err(WireError::BadCell)
    }
}

/// A checked view of a data exchange's cell plaintext.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CellView<'a> {
    next: u16,
    records: &'a [u8],
}

impl<'a> CellView<'a> {
    /// Checks a decoded cell: the records are well formed and everything after them is zero.
    pub fn parse(cell: &'a [u8]) -> Result<Self, WireError> {
        let Some((next, rest)) = cell.split_first_chunk::<NEXT_LEN>() else {
            return Err(WireError::BadCell);
        };
        let mut pos = 0;
        while let Some(h) = rest
            .get(pos..)
            .and_then(<[u8]>::first_chunk::<RECORD_HEADER_LEN>)
        {
            let (conn, kind, payload) = read_record(h);
            if conn.0 == 0 {
                if h.iter().any(|&b| b != 0) {
                    return Err(WireError::BadCell);
                }
                break;
            }
            check_header(kind, conn, payload)?;
            if pos + RECORD_HEADER_LEN + payload > rest.len() {
                return Err(WireError::BadCell);
            }
            pos += RECORD_HEADER_LEN + payload;
        }
        let (records, padding) = rest.split_at_checked(pos).ok_or(WireError::BadCell)?;
        if padding.iter().any(|&b| b != 0) {
            return Err(WireError::BadCell);
        }
        Ok(CellView {
            next: u16::from_be_bytes(*next),
            records,
        })
    }

    /// The length the owner asks for its next cell (0: release the slot).
    pub const fn next(&self) -> u16 {
        self.next
    }

    /// Whether the cell carries no record.
    pub const fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The records, in order.
    pub fn records(&self) -> Records<'a> {
        Records { rest: self.records }
    }

    /// Bytes the records take (after `Next`, before the zero padding).
    pub const fn records_len(&self) -> usize {
        self.records.len()
    }
}

impl<'a> CellView<'a> {
    /// Checks a bare list of records (no `Next`, no padding) and iterates it.
    pub fn parse_records(records: &'a [u8]) -> Result<Records<'a>, WireError> {
        let mut pos = 0;
        while pos < records.len() {
            let h = records
                .get(pos..)
                .and_then(<[u8]>::first_chunk::<RECORD_HEADER_LEN>)
                .ok_or(WireError::BadCell)?;
            let (conn, kind, len) = read_record(h);
            check_header(kind, conn, len)?;
            if pos + RECORD_HEADER_LEN + len > records.len() {
                return Err(WireError::BadCell);
            }
            pos += RECORD_HEADER_LEN + len;
        }
        Ok(Records { rest: records })
    }
}

/// Reads the record header at the start of `b`: Conn#, kind, payload length. Bytes
/// missing from a short `b` read as zero (a Conn# of 0 is never a record's).
pub(crate) fn read_record(b: &[u8]) -> (ConnId, Option<RecordKind>, usize) {
    let conn = ConnId(field::u32_at(b, 0));
    let kind = RecordKind::from_byte(field::u8_at(b, 4));
    (conn, kind, usize::from(field::u16_at(b, 5)))
}

/// Reads a connection record's header at the start of `b`: Conn#, whether it opens the
/// connection, payload length (a close is a record that neither opens nor carries bytes).
pub(crate) fn read_record_header(b: &[u8]) -> (ConnId, bool, usize) {
    let (conn, kind, len) = read_record(b);
    (conn, kind == Some(RecordKind::Open), len)
}

/// Writes a connection record's header at the start of `b` (nothing if `b` is shorter
/// than [`RECORD_HEADER_LEN`]): `Open` if `open`, else `Data`, or `Close` for no bytes.
pub(crate) fn write_record_header(b: &mut [u8], conn: ConnId, open: bool, len: usize) {
    let kind = if open {
        RecordKind::Open
    } else if len == 0 {
        RecordKind::Close
    } else {
        RecordKind::Data
    };
    write_header(b, conn, kind, len);
}

/// Writes a record header of `kind` at the start of `b`.
pub(crate) fn write_header(b: &mut [u8], conn: ConnId, kind: RecordKind, len: usize) {
    if let Some(header) = b.first_chunk_mut::<RECORD_HEADER_LEN>() {
        field::put(header, 0, &conn.0.to_be_bytes());
        field::put(header, 4, &[kind as u8]);
        field::put(header, 5, &(len.min(MAX_PAYLOAD) as u16).to_be_bytes());
    }
}

/// Iterator over the records of a [`CellView`].
#[derive(Debug, Clone)]
pub struct Records<'a> {
    rest: &'a [u8],
}

impl<'a> Records<'a> {
    /// Iterates records a [`CellView`] already checked (for example the tail of its records
    /// after some were taken), without checking them again. On unchecked bytes it never
    /// panics: a length past the end is cut short.
    pub const fn checked(records: &'a [u8]) -> Self {
        Records { rest: records }
    }
}

impl<'a> Iterator for Records<'a> {
    type Item = Record<'a>;

    fn next(&mut self) -> Option<Record<'a>> {
        // The view was checked: every header and payload is in bounds.
        let (h, rest) = self.rest.split_first_chunk::<RECORD_HEADER_LEN>()?;
        let (conn, kind, n) = read_record(h);
        let n = n.min(rest.len());
        let (payload, rest) = rest.split_at(n);
        self.rest = rest;
        Some(match kind {
            Some(RecordKind::Close) => Record::Close { conn },
            Some(RecordKind::Abort) => Record::Abort { conn },
            Some(RecordKind::Grant) => Record::Grant {
                conn,
                bytes: field::u32_at(payload, 0),
            },
            Some(RecordKind::Accuse) => match Accusation::parse(payload) {
                Some(accusation) => Record::Accuse { conn, accusation },
                None => return None,
            },
            Some(RecordKind::Open) => Record::Data {
                conn,
                open: true,
                payload,
            },
            _ => Record::Data {
                conn,
                open: false,
                payload,
            },
        })
    }
}

/// Writes records into a cell plaintext, then its `Next` and zero padding.
#[derive(Debug)]
pub struct CellWriter<'a> {
    cell: &'a mut [u8],
    pos: usize,
}

impl<'a> CellWriter<'a> {
    /// Starts a cell in `cell` (its whole length is the cell length).
    pub fn new(cell: &'a mut [u8]) -> Self {
        CellWriter {
            pos: NEXT_LEN.min(cell.len()),
            cell,
        }
    }

    /// Largest payload a data record written now can hold (0 if not even a header fits).
    pub fn room(&self) -> usize {
        self.cell
            .len()
            .saturating_sub(self.pos + RECORD_HEADER_LEN)
            .min(MAX_PAYLOAD)
    }

    /// Whether a record header (a close or a bare open) still fits.
    pub fn has_room_for_header(&self) -> bool {
        self.pos + RECORD_HEADER_LEN <= self.cell.len()
    }

    /// Appends a data record; `payload` must fit [`CellWriter::room`] and `conn` be non-zero.
    pub fn push_data(&mut self, conn: ConnId, open: bool, payload: &[u8]) -> Result<(), WireError> {
        if conn.0 == 0 || (payload.is_empty() && !open) {
            return Err(WireError::BadCell);
        }
        let buf = self.reserve(conn, open, payload.len())?;
        buf.copy_from_slice(payload);
        Ok(())
    }

    /// Appends a data record of `len` bytes and returns where its payload goes.
    pub fn reserve(
        &mut self,
        conn: ConnId,
        open: bool,
        len: usize,
    ) -> Result<&mut [u8], WireError> {
        if len > self.room() || !self.has_room_for_header() {
            return Err(WireError::BufferTooSmall);
        }
        let at = self.pos;
        let record = self
            .cell
            .get_mut(at..at + RECORD_HEADER_LEN + len)
            .ok_or(WireError::BufferTooSmall)?;
        let (header, payload) = record.split_at_mut(RECORD_HEADER_LEN);
        write_record_header(header, conn, open, len);
        self.pos = at + RECORD_HEADER_LEN + len;
        Ok(payload)
    }

    /// Appends a close record.
    pub fn push_close(&mut self, conn: ConnId) -> Result<(), WireError> {
        if conn.0 == 0 {
            return Err(WireError::BadCell);
        }
        self.reserve(conn, false, 0).map(|_| ())
    }

    /// Appends an abort record.
    pub fn push_abort(&mut self, conn: ConnId) -> Result<(), WireError> {
        self.push_header(conn, RecordKind::Abort, &[])
    }

    /// Appends a grant of `bytes` of downstream credit (0 adds nothing).
    pub fn push_grant(&mut self, conn: ConnId, bytes: u32) -> Result<(), WireError> {
        self.push_header(conn, RecordKind::Grant, &bytes.to_be_bytes())
    }

    /// Appends a record of `kind` with `payload`.
    fn push_header(
        &mut self,
        conn: ConnId,
        kind: RecordKind,
        payload: &[u8],
    ) -> Result<(), WireError> {
        if conn.0 == 0 {
            return Err(WireError::BadCell);
        }
        if payload.len() > self.room() || !self.has_room_for_header() {
            return Err(WireError::BufferTooSmall);
        }
        let at = self.pos;
        let record = self
            .cell
            .get_mut(at..at + RECORD_HEADER_LEN + payload.len())
            .ok_or(WireError::BufferTooSmall)?;
        let (header, body) = record.split_at_mut(RECORD_HEADER_LEN);
        write_header(header, conn, kind, payload.len());
        body.copy_from_slice(payload);
        self.pos = at + RECORD_HEADER_LEN + payload.len();
        Ok(())
    }

    /// Appends an accusation by the owner of `slot`.
    pub fn push_accuse(&mut self, slot: u16, accusation: &Accusation) -> Result<(), WireError> {
        let conn = ConnId::new(slot, 0);
        if ACCUSE_LEN > self.room() || !self.has_room_for_header() {
            return Err(WireError::BufferTooSmall);
        }
        let at = self.pos;
        let record = self
            .cell
            .get_mut(at..at + RECORD_HEADER_LEN + ACCUSE_LEN)
            .ok_or(WireError::BufferTooSmall)?;
        let (header, payload) = record.split_at_mut(RECORD_HEADER_LEN);
        write_header(header, conn, RecordKind::Accuse, ACCUSE_LEN);
        payload.copy_from_slice(&accusation.to_bytes());
        self.pos = at + RECORD_HEADER_LEN + ACCUSE_LEN;
        Ok(())
    }

    /// Writes `next`, zeroes the rest and returns the bytes used (`Next` plus records).
    pub fn finish(self, next: u16) -> usize {
        if let Some(field) = self.cell.first_chunk_mut::<NEXT_LEN>() {
            *field = next.to_be_bytes();
        }
        if let Some(padding) = self.cell.get_mut(self.pos..) {
            padding.fill(0);
        }
        self.pos
    }
}

#[cfg(test)]
mod tests {
    // Test code only: each unwrap() is an assertion on a fixture, never on network input.
    use super::*;

    #[test]
    fn cell_vector() {
        let mut cell = [0xAAu8; 30];
        let mut w = CellWriter::new(&mut cell);
        w.push_data(ConnId(0x0001_0002), true, b"hey").unwrap();
        w.push_data(ConnId(0x0001_0002), false, b"!").unwrap();
        w.push_close(ConnId(0x0001_0003)).unwrap();
        assert_eq!(w.finish(300), 2 + 10 + 8 + 7);
        assert_eq!(
            cell,
            [
                0x01, 0x2C, // Next = 300
                0, 1, 0, 2, 1, 0, 3, b'h', b'e', b'y', // Open record
                0, 1, 0, 2, 2, 0, 1, b'!', // Data record
                0, 1, 0, 3, 3, 0, 0, // Close record
                0, 0, 0 // padding
            ]
        );
        let v = CellView::parse(&cell).unwrap();
        assert_eq!(v.next(), 300);
        let recs: heapless::Vec<Record<'_>, 4> = v.records().collect();
        assert_eq!(recs.len(), 3);
        assert_eq!(
            &recs[..],
            &[
                Record::Data {
                    conn: ConnId(0x0001_0002),
                    open: true,
                    payload: b"hey"
                },
                Record::Data {
                    conn: ConnId(0x0001_0002),
                    open: false,
                    payload: b"!"
                },
                Record::Close {
                    conn: ConnId(0x0001_0003)
                }
            ]
        );
        // All zero: nothing sent, slot released.
        let zero = [0u8; 16];
        let v = CellView::parse(&zero).unwrap();
        assert!(v.is_empty() && v.next() == 0);
    }

    #[test]
    fn accusation_vector() {
        let mut cell = [0u8; 2 + 7 + ACCUSE_LEN + 3];
        let mut w = CellWriter::new(&mut cell);
        let accusation = Accusation {
            exchange: 300,
            bit: 0x0102,
            proof: [0xAB; ACCUSE_PROOF_LEN],
        };
        w.push_accuse(2, &accusation).unwrap();
        w.finish(0);
        assert_eq!(
            &cell[..2 + 7 + 12],
            &[0, 0, 0, 3, 0, 0, 4, 0, 76, 0, 0, 0, 0, 0, 0, 1, 0x2C, 0, 0, 1, 2]
        );
        assert_eq!(&cell[21..21 + 64], &[0xAB; 64]);
        {
            let v = CellView::parse(&cell).unwrap();
            let recs: heapless::Vec<Record<'_>, 2> = v.records().collect();
            assert_eq!(
                &recs[..],
                &[Record::Accuse {
                    conn: ConnId::new(2, 0),
                    accusation
                }]
            );
        }
        // An accusation must name a slot with low bits 0, and be exactly 76 bytes.
        for (at, value) in [(5, 1), (8, 75), (8, 77)] {
            let mut bad = cell;
            bad[at] = value;
            assert_eq!(CellView::parse(&bad), Err(WireError::BadCell), "{at}");
        }
    }

    #[test]
    fn abort_grant_vector() {
        let mut cell = [0u8; 2 + 7 + 11 + 2];
        let mut w = CellWriter::new(&mut cell);
        w.push_abort(ConnId(0x0001_0002)).unwrap();
        w.push_grant(ConnId(0x0001_0003), 0x0004_0000).unwrap();
        // Full: a record no longer fits.
        assert_eq!(w.push_abort(ConnId(1)), Err(WireError::BufferTooSmall));
        assert_eq!(w.push_abort(ConnId(0)), Err(WireError::BadCell));
        assert_eq!(w.finish(0), 20);
        assert_eq!(
            cell,
            [
                0, 0, // Next = 0
                0, 1, 0, 2, 5, 0, 0, // Abort
                0, 1, 0, 3, 6, 0, 4, 0, 4, 0, 0, // Grant of 256 KiB
                0, 0 // padding
            ]
        );
        let v = CellView::parse(&cell).unwrap();
        let recs: heapless::Vec<Record<'_>, 2> = v.records().collect();
        assert_eq!(
            &recs[..],
            &[
                Record::Abort {
                    conn: ConnId(0x0001_0002)
                },
                Record::Grant {
                    conn: ConnId(0x0001_0003),
                    bytes: 0x0004_0000
                }
            ]
        );
        assert_eq!(recs[1].wire_len(), 11);
        // An abort with bytes, a grant of another length: garbled.
        for (at, value) in [(8, 1), (15, 3), (15, 5)] {
            let mut bad = cell;
            bad[at] = value;
            assert_eq!(CellView::parse(&bad), Err(WireError::BadCell), "{at}");
        }
    }

    #[test]
    fn cells_refuse_garbage() {
        // Length runs past the cell.
        assert_eq!(
            CellView::parse(&[0, 0, 0, 0, 0, 1, 2, 0, 9, 1, 2]),
            Err(WireError::BadCell)
        );
        // Non-zero padding after the records.
        assert_eq!(
            CellView::parse(&[0, 0, 0, 0, 0, 1, 2, 0, 1, 7, 0, 5]),
            Err(WireError::BadCell)
        );
        // Conn# 0 with a kind or a length.
        assert_eq!(
            CellView::parse(&[0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0]),
            Err(WireError::BadCell)
        );
        assert_eq!(
            CellView::parse(&[0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0]),
            Err(WireError::BadCell)
        );
        // An unknown kind, an empty data record, a close with bytes.
        for bad in [
            [0, 0, 0, 0, 0, 1, 9, 0, 1, 7],
            [0, 0, 0, 0, 0, 1, 2, 0, 0, 0],
            [0, 0, 0, 0, 0, 1, 3, 0, 1, 7],
        ] {
            assert_eq!(CellView::parse(&bad), Err(WireError::BadCell), "{bad:?}");
        }
        // Too short for Next.
        assert_eq!(CellView::parse(&[0]), Err(WireError::BadCell));
        // A trailing partial header must be zero.
        assert!(CellView::parse(&[0, 0, 0, 0, 0]).is_ok());
        assert_eq!(CellView::parse(&[0, 0, 0, 0, 1]), Err(WireError::BadCell));
        // Writers refuse what does not fit.
        let mut small = [0u8; 10];
        let mut w = CellWriter::new(&mut small);
        assert_eq!(w.room(), 1);
        assert_eq!(
            w.push_data(ConnId(1), false, b"ab"),
            Err(WireError::BufferTooSmall)
        );
        assert_eq!(w.push_data(ConnId(0), false, b"a"), Err(WireError::BadCell));
        assert_eq!(w.push_data(ConnId(1), false, b""), Err(WireError::BadCell));
    }
}
