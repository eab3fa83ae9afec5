//! Cell plaintexts of data exchanges: the owner's `Next`, then records, then zero padding.
//!
//! ```text
//! Cell     = Next (u16 BE) | Record* | zero padding
//! Record   = Conn# (u32 BE, > 0) | Len (u16 BE: OPEN bit | 15-bit length) | payload
//! ```
//!
//! Owns reading ([`CellView`], [`Records`]) and writing ([`CellWriter`]) them. It must not
//! know about pads, exchanges or who owns a slot.

use super::{ConnId, WireError, MAX_PAYLOAD, NEXT_LEN, OPEN_FLAG, RECORD_HEADER_LEN};
use crate::field;

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
}

impl Record<'_> {
    /// The record's connection.
    pub const fn conn(&self) -> ConnId {
        match *self {
            Record::Data { conn, .. } | Record::Close { conn } => conn,
        }
    }

    /// Bytes this record takes in a cell.
    pub const fn wire_len(&self) -> usize {
        match *self {
            Record::Data { payload, .. } => RECORD_HEADER_LEN + payload.len(),
            Record::Close { .. } => RECORD_HEADER_LEN,
        }
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
            let (conn, open, payload) = read_record_header(h);
            if conn.0 == 0 {
                if open || payload != 0 {
                    return Err(WireError::BadCell);
                }
                break;
            }
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
            let (conn, _, len) = read_record_header(h);
            if conn.0 == 0 || pos + RECORD_HEADER_LEN + len > records.len() {
                return Err(WireError::BadCell);
            }
            pos += RECORD_HEADER_LEN + len;
        }
        Ok(Records { rest: records })
    }
}

/// Reads the record header at the start of `b`: Conn#, open flag, payload length. Bytes
/// missing from a short `b` read as zero (a Conn# of 0 is never a record's).
pub(crate) fn read_record_header(b: &[u8]) -> (ConnId, bool, usize) {
    let conn = ConnId(field::u32_at(b, 0));
    let len = field::u16_at(b, 4);
    (conn, len & OPEN_FLAG != 0, usize::from(len & !OPEN_FLAG))
}

/// Writes a record header at the start of `b` (nothing if `b` is shorter than
/// [`RECORD_HEADER_LEN`]).
pub(crate) fn write_record_header(b: &mut [u8], conn: ConnId, open: bool, len: usize) {
    let raw = (len as u16 & !OPEN_FLAG) | if open { OPEN_FLAG } else { 0 };
    if let Some(header) = b.first_chunk_mut::<RECORD_HEADER_LEN>() {
        let (c, l) = header.split_at_mut(4);
        c.copy_from_slice(&conn.0.to_be_bytes());
        l.copy_from_slice(&raw.to_be_bytes());
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
        let (conn, open, n) = read_record_header(h);
        let n = n.min(rest.len());
        let (payload, rest) = rest.split_at(n);
        self.rest = rest;
        Some(if !open && n == 0 {
            Record::Close { conn }
        } else {
            Record::Data {
                conn,
                open,
                payload,
            }
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
        let mut cell = [0xAAu8; 24];
        let mut w = CellWriter::new(&mut cell);
        w.push_data(ConnId(0x0001_0002), true, b"hey").unwrap();
        w.push_close(ConnId(0x0001_0003)).unwrap();
        assert_eq!(w.finish(300), 2 + 9 + 6);
        assert_eq!(
            cell,
            [
                0x01, 0x2C, // Next = 300
                0, 1, 0, 2, 0x80, 3, b'h', b'e', b'y', // OPEN record
                0, 1, 0, 3, 0, 0, // close
                0, 0, 0, 0, 0, 0, 0 // padding
            ]
        );
        let v = CellView::parse(&cell).unwrap();
        assert_eq!(v.next(), 300);
        let recs: heapless::Vec<Record<'_>, 4> = v.records().collect();
        assert_eq!(
            &recs[..],
            &[
                Record::Data {
                    conn: ConnId(0x0001_0002),
                    open: true,
                    payload: b"hey"
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
    fn cells_refuse_garbage() {
        // Length runs past the cell.
        assert_eq!(
            CellView::parse(&[0, 0, 0, 0, 0, 1, 0, 9, 1, 2]),
            Err(WireError::BadCell)
        );
        // Non-zero padding after the records.
        assert_eq!(
            CellView::parse(&[0, 0, 0, 0, 0, 1, 0, 1, 7, 0, 5]),
            Err(WireError::BadCell)
        );
        // Conn# 0 with a length.
        assert_eq!(
            CellView::parse(&[0, 0, 0, 0, 0, 0, 0, 1, 0, 0]),
            Err(WireError::BadCell)
        );
        // Too short for Next.
        assert_eq!(CellView::parse(&[0]), Err(WireError::BadCell));
        // A trailing partial header must be zero.
        assert!(CellView::parse(&[0, 0, 0, 0, 0]).is_ok());
        assert_eq!(CellView::parse(&[0, 0, 0, 0, 1]), Err(WireError::BadCell));
        // Writers refuse what does not fit.
        let mut small = [0u8; 9];
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
