//! Wire formats: link frames, protocol messages and the upstream cell plaintext.
//!
//! Every link (client ↔ relay, trustee ↔ relay) carries a sequence of frames:
//!
//! ```text
//! Frame    = Length (u32, big endian) | Body (Length bytes, 1 ..= MAX_FRAME_BODY)
//! Body     = postcard encoding of [`Message`]
//! ```
//!
//! Inside a [`Message::ClientRequest`] the relay carries the prototype's downstream record
//! `Conn#(4) | Len(2) | NextSlot(2) | payload` as the fields `conn`, `data` (its length is
//! `Len`) and `slot`. Before XOR, the slot owner's upstream cell is the prototype's
//! `Conn#(4) | Len(2) | payload | zero padding`, handled by [`CellRepr`]; the top bit of
//! `Len` marks the first cell of a connection (OPEN), the other 15 bits are the length.
//!
//! Nothing in this module panics on any input: every parser returns a [`WireError`]. The
//! one exception is by contract: the accessors of a [`Cell`] built with
//! [`Cell::new_unchecked`] index the header, so that buffer must hold at least
//! [`CELL_HEADER_LEN`] bytes (use [`Cell::new_checked`] on untrusted bytes).

use serde::{Deserialize, Serialize};

use crate::online::OnlineSet;
use crate::{MAX_CLIENTS, MAX_TRUSTEES, NONCE_LEN};

/// Protocol version carried in [`Message::Hello`].
pub const PROTOCOL_VERSION: u16 = 1;

/// Bytes of the frame length prefix.
pub const FRAME_HEADER_LEN: usize = 4;

/// Largest frame body accepted from any peer (a client request with the largest
/// downstream payload fits).
pub const MAX_FRAME_BODY: usize = crate::MAX_DOWNSTREAM + 256;

/// Longest frame of any message other than a cell or a client request (an interval open
/// naming every client).
pub const MAX_CONTROL_FRAME: usize = FRAME_HEADER_LEN + 64 + MAX_CLIENTS * NONCE_LEN;

/// Most previous intervals a [`Message::IntervalStart`] reports.
pub const MAX_HISTORY: usize = 8;

/// Errors from parsing or emitting wire data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum WireError {
    /// The output buffer cannot hold the encoding.
    BufferTooSmall,
    /// A frame announced a length of zero or more than [`MAX_FRAME_BODY`].
    BadFrameLength(u32),
    /// The frame body is not a valid message.
    Malformed,
    /// The message decoded but left unused bytes in the frame.
    TrailingBytes,
    /// A cell's `Len` field exceeds the space in the cell.
    BadCellLength,
}

impl core::fmt::Display for WireError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            WireError::BufferTooSmall => f.write_str("output buffer too small"),
            WireError::BadFrameLength(n) => write!(f, "frame length {n} out of range"),
            WireError::Malformed => f.write_str("malformed message"),
            WireError::TrailingBytes => f.write_str("trailing bytes after message"),
            WireError::BadCellLength => f.write_str("cell length field exceeds the cell"),
        }
    }
}

impl core::error::Error for WireError {}

/// Which kind of node opens a link to the relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeRole {
    /// A DC-net client (index into the group's clients).
    Client,
    /// An anytrust trustee (index into the group's trustees).
    Trustee,
}

/// One completed-exchange record of a previous interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntervalRecord {
    /// The interval number.
    pub interval: u32,
    /// Exchanges `0 .. done` of that interval were decoded; later ones were abandoned.
    pub done: u64,
}

/// A protocol message (the body of one frame).
///
/// Messages are built on the stack and emitted at once, so the size of the largest variant
/// (an interval start) is not a concern.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message<'a> {
    /// Node → relay, the first frame on a link.
    Hello {
        /// Must equal [`PROTOCOL_VERSION`].
        version: u16,
        /// The group the node was configured for.
        group_id: [u8; 16],
        /// The session the node was configured for.
        session_id: [u8; 16],
        /// Client or trustee.
        role: NodeRole,
        /// Index of the node in the group's client or trustee list.
        index: u16,
        /// Fresh randomness for this link; a client mixes it into all its pads on the link.
        nonce: [u8; NONCE_LEN],
    },
    /// Relay → trustee: prepare pads for a new interval over this online client set.
    IntervalOpen {
        /// The new interval number (strictly increasing).
        interval: u32,
        /// The clients whose pads the trustee must include.
        online: OnlineSet,
        /// The link nonce of each online client, in increasing client order.
        client_nonces: heapless::Vec<[u8; NONCE_LEN], MAX_CLIENTS>,
    },
    /// Trustee → relay: ready for the interval; `nonce` is fresh randomness for its pads.
    IntervalReady {
        /// The interval being acknowledged.
        interval: u32,
        /// Fresh per-interval nonce mixed into every pad of this trustee.
        nonce: [u8; NONCE_LEN],
    },
    /// Relay → clients: the interval starts now.
    IntervalStart {
        /// The interval number.
        interval: u32,
        /// Each trustee's nonce for this interval, in trustee order.
        nonces: heapless::Vec<[u8; NONCE_LEN], MAX_TRUSTEES>,
        /// Most exchanges a client may be asked for ahead of the last decoded one.
        window: u16,
        /// How far recent earlier intervals got, so slot owners can resend lost cells.
        history: heapless::Vec<IntervalRecord, MAX_HISTORY>,
    },
    /// Relay → trustee: send your cell for this exchange (`slot` is the prototype's NextSlot).
    TrusteeRequest {
        /// Interval of the exchange.
        interval: u32,
        /// Exchange number within the interval.
        exchange: u64,
        /// The pseudonym slot scheduled for the exchange.
        slot: u16,
    },
    /// Relay → clients: one downstream record and a request for the next exchange's cell.
    ClientRequest {
        /// Interval of the requested exchange.
        interval: u32,
        /// Requested exchange number.
        exchange: u64,
        /// The pseudonym slot scheduled for the exchange (NextSlot).
        slot: u16,
        /// Conn# of the downstream data; 0 when there is none.
        conn: u32,
        /// Downstream payload (`Len` = its length); empty with `conn > 0` means closed.
        #[serde(borrow)]
        data: &'a [u8],
    },
    /// Client or trustee → relay: a ciphertext cell.
    Cell {
        /// Interval of the exchange.
        interval: u32,
        /// Exchange number.
        exchange: u64,
        /// Exactly the group's cell length of ciphertext.
        #[serde(borrow)]
        cell: &'a [u8],
    },
}

impl<'a> Message<'a> {
    /// Parses one frame body.
    pub fn parse(body: &'a [u8]) -> Result<Self, WireError> {
        let (msg, rest) =
            postcard::take_from_bytes::<Message<'a>>(body).map_err(|_| WireError::Malformed)?;
        if !rest.is_empty() {
            return Err(WireError::TrailingBytes);
        }
        Ok(msg)
    }

    /// Emits this message as a complete frame (length prefix included); returns its length.
    pub fn emit_frame(&self, out: &mut [u8]) -> Result<usize, WireError> {
        if out.len() < FRAME_HEADER_LEN {
            return Err(WireError::BufferTooSmall);
        }
        let (head, body) = out.split_at_mut(FRAME_HEADER_LEN);
        let n = postcard::to_slice(self, body)
            .map_err(|_| WireError::BufferTooSmall)?
            .len();
        if n > MAX_FRAME_BODY {
            return Err(WireError::BadFrameLength(n as u32));
        }
        head.copy_from_slice(&(n as u32).to_be_bytes());
        Ok(FRAME_HEADER_LEN + n)
    }
}

/// Reads a frame length prefix; returns the body length that follows.
pub fn frame_body_len(header: [u8; FRAME_HEADER_LEN]) -> Result<usize, WireError> {
    let n = u32::from_be_bytes(header);
    if n == 0 || n as usize > MAX_FRAME_BODY {
        return Err(WireError::BadFrameLength(n));
    }
    Ok(n as usize)
}

/// Splits the first complete frame off `buf`: `Ok(Some((body, consumed)))`, or `Ok(None)` if
/// more bytes are needed.
pub fn split_frame(buf: &[u8]) -> Result<Option<(&[u8], usize)>, WireError> {
    let Some(header) = buf.first_chunk::<FRAME_HEADER_LEN>() else {
        return Ok(None);
    };
    let n = frame_body_len(*header)?;
    match buf.get(FRAME_HEADER_LEN..FRAME_HEADER_LEN + n) {
        Some(body) => Ok(Some((body, FRAME_HEADER_LEN + n))),
        None => Ok(None),
    }
}

/// Postcard's variant index of [`Message::Cell`]; pinned by a test.
const CELL_VARIANT: u32 = 6;

/// Writes the frame prefix of a [`Message::Cell`] with a `cell_len`-byte cell; the caller
/// writes the cell bytes right after the returned length.
///
/// Produces exactly the bytes `Message::Cell { .. }.emit_frame()` would, without needing
/// the cell to exist yet, so nodes can compute the ciphertext in place.
pub fn emit_cell_prefix(
    interval: u32,
    exchange: u64,
    cell_len: usize,
    out: &mut [u8],
) -> Result<usize, WireError> {
    if out.len() < FRAME_HEADER_LEN {
        return Err(WireError::BufferTooSmall);
    }
    let fields = (CELL_VARIANT, interval, exchange, cell_len as u64);
    let n = postcard::to_slice(&fields, &mut out[FRAME_HEADER_LEN..])
        .map_err(|_| WireError::BufferTooSmall)?
        .len();
    let body = n + cell_len;
    if body > MAX_FRAME_BODY {
        return Err(WireError::BadFrameLength(body as u32));
    }
    if out.len() < FRAME_HEADER_LEN + body {
        return Err(WireError::BufferTooSmall);
    }
    out[..FRAME_HEADER_LEN].copy_from_slice(&(body as u32).to_be_bytes());
    Ok(FRAME_HEADER_LEN + n)
}

/// Bytes of the upstream cell header: `Conn#(4) | Len(2)`.
pub const CELL_HEADER_LEN: usize = 6;

/// Bit of the `Len` field that marks the first cell of a connection.
pub const OPEN_FLAG: u16 = 0x8000;

/// Largest payload length the `Len` field can express.
pub const MAX_PAYLOAD: usize = 0x7FFF;

/// A read/write wrapper around an upstream cell plaintext: `Conn#(4) | Len(2) | payload | 0-pad`.
#[derive(Debug)]
pub struct Cell<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Cell<T> {
    /// Wraps a buffer without checking it (accessors panic if it is shorter than the header).
    pub const fn new_unchecked(buffer: T) -> Self {
        Cell { buffer }
    }

    /// Wraps a buffer, checking that the header fits and `Len` fits the rest.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let cell = Cell::new_unchecked(buffer);
        cell.check_len()?;
        Ok(cell)
    }

    /// Checks that the header fits and that `Len` does not run past the cell.
    pub fn check_len(&self) -> Result<(), WireError> {
        let b = self.buffer.as_ref();
        if b.len() < CELL_HEADER_LEN {
            return Err(WireError::BufferTooSmall);
        }
        if self.payload_len() > b.len() - CELL_HEADER_LEN {
            return Err(WireError::BadCellLength);
        }
        Ok(())
    }

    /// Payload length (the low 15 bits of `Len`).
    pub fn payload_len(&self) -> usize {
        usize::from(self.len_field() & !OPEN_FLAG)
    }

    /// Whether the OPEN bit of `Len` is set.
    pub fn opens(&self) -> bool {
        self.len_field() & OPEN_FLAG != 0
    }

    /// The `Conn#` field.
    pub fn conn(&self) -> u32 {
        let b = self.buffer.as_ref();
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }

    /// The raw `Len` field (OPEN bit and payload length).
    pub fn len_field(&self) -> u16 {
        let b = self.buffer.as_ref();
        u16::from_be_bytes([b[4], b[5]])
    }

    /// The payload (the bytes after the header, as many as `Len` says).
    pub fn payload(&self) -> &[u8] {
        let b = self.buffer.as_ref();
        &b[CELL_HEADER_LEN..CELL_HEADER_LEN + self.payload_len()]
    }

    /// True when every byte after the payload is zero.
    pub fn padding_is_zero(&self) -> bool {
        let b = self.buffer.as_ref();
        b[CELL_HEADER_LEN + self.payload_len()..]
            .iter()
            .all(|&x| x == 0)
    }

    /// Consumes the wrapper, returning the buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }
}

/// What a decoded upstream cell says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CellRepr<'a> {
    /// All zero: the slot owner sent nothing.
    Empty,
    /// Bytes for connection `conn`; `open` marks the connection's first cell.
    Data {
        /// Conn#, never 0.
        conn: u32,
        /// First cell of the connection: the exit opens it (anew, if the Conn# was in use).
        open: bool,
        /// Payload; empty only in an OPEN cell.
        payload: &'a [u8],
    },
    /// The slot owner has finished sending on `conn` (like a TCP FIN).
    Close {
        /// Conn#, never 0.
        conn: u32,
    },
}

impl<'a> CellRepr<'a> {
    /// Parses a cell plaintext; anything but a well-formed cell with zero padding is an error.
    pub fn parse(cell: &'a [u8]) -> Result<Self, WireError> {
        let c = Cell::new_checked(cell)?;
        if !c.padding_is_zero() {
            return Err(WireError::Malformed);
        }
        let (conn, open, len) = (c.conn(), c.opens(), c.payload_len());
        match (conn, open, len) {
            (0, false, 0) => Ok(CellRepr::Empty),
            (0, _, _) => Err(WireError::Malformed),
            (conn, false, 0) => Ok(CellRepr::Close { conn }),
            (conn, open, len) => Ok(CellRepr::Data {
                conn,
                open,
                payload: &cell[CELL_HEADER_LEN..CELL_HEADER_LEN + len],
            }),
        }
    }

    /// Writes this cell into all of `cell` (header, payload, zero padding).
    pub fn emit(&self, cell: &mut [u8]) -> Result<(), WireError> {
        let (conn, open, payload): (u32, bool, &[u8]) = match *self {
            CellRepr::Empty => (0, false, &[]),
            CellRepr::Data {
                conn,
                open,
                payload,
            } => (conn, open, payload),
            CellRepr::Close { conn } => (conn, false, &[]),
        };
        if cell.len() < CELL_HEADER_LEN + payload.len() || payload.len() > MAX_PAYLOAD {
            return Err(WireError::BufferTooSmall);
        }
        emit_header(cell, conn, open, payload.len());
        cell[CELL_HEADER_LEN..CELL_HEADER_LEN + payload.len()].copy_from_slice(payload);
        cell[CELL_HEADER_LEN + payload.len()..].fill(0);
        Ok(())
    }

    /// Largest payload a cell of `cell_len` bytes can carry.
    pub const fn capacity(cell_len: usize) -> usize {
        let cap = cell_len.saturating_sub(CELL_HEADER_LEN);
        if cap > MAX_PAYLOAD {
            MAX_PAYLOAD
        } else {
            cap
        }
    }
}

/// Writes a cell header; `cell` must hold at least the header and `len <= MAX_PAYLOAD`.
pub(crate) fn emit_header(cell: &mut [u8], conn: u32, open: bool, len: usize) {
    let raw = (len as u16 & !OPEN_FLAG) | if open { OPEN_FLAG } else { 0 };
    cell[..4].copy_from_slice(&conn.to_be_bytes());
    cell[4..6].copy_from_slice(&raw.to_be_bytes());
}

#[cfg(test)]
mod tests {
    // Test code only: each unwrap() is an assertion on a fixture, never on network input.
    use super::*;

    #[test]
    fn cell_vector() {
        let mut cell = [0xAAu8; 16];
        CellRepr::Data {
            conn: 0x0001_0002,
            open: false,
            payload: b"hey",
        }
        .emit(&mut cell)
        .unwrap();
        assert_eq!(
            cell,
            [0, 1, 0, 2, 0, 3, b'h', b'e', b'y', 0, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(
            CellRepr::parse(&cell).unwrap(),
            CellRepr::Data {
                conn: 0x0001_0002,
                open: false,
                payload: b"hey"
            }
        );
        // The first cell of a connection sets the top bit of Len.
        let open = CellRepr::Data {
            conn: 0x0001_0002,
            open: true,
            payload: b"hey",
        };
        open.emit(&mut cell).unwrap();
        assert_eq!(cell[..7], [0, 1, 0, 2, 0x80, 3, b'h']);
        assert_eq!(CellRepr::parse(&cell).unwrap(), open);
        let bare = CellRepr::Data {
            conn: 9,
            open: true,
            payload: b"",
        };
        bare.emit(&mut cell).unwrap();
        assert_eq!(cell[..7], [0, 0, 0, 9, 0x80, 0, 0]);
        assert_eq!(CellRepr::parse(&cell).unwrap(), bare);
    }

    #[test]
    fn cell_empty_and_close() {
        let mut cell = [1u8; 8];
        CellRepr::Empty.emit(&mut cell).unwrap();
        assert_eq!(cell, [0; 8]);
        assert_eq!(CellRepr::parse(&cell).unwrap(), CellRepr::Empty);
        CellRepr::Close { conn: 7 }.emit(&mut cell).unwrap();
        assert_eq!(cell, [0, 0, 0, 7, 0, 0, 0, 0]);
        assert_eq!(CellRepr::parse(&cell).unwrap(), CellRepr::Close { conn: 7 });
    }

    #[test]
    fn cell_rejects_garbage() {
        // Len runs past the end.
        assert_eq!(
            CellRepr::parse(&[0, 0, 0, 1, 0, 9, 1, 2]),
            Err(WireError::BadCellLength)
        );
        // Non-zero padding.
        assert_eq!(
            CellRepr::parse(&[0, 0, 0, 1, 0, 1, 1, 2]),
            Err(WireError::Malformed)
        );
        // Conn# 0 with a length, or with the OPEN bit.
        assert_eq!(
            CellRepr::parse(&[0, 0, 0, 0, 0, 1, 1, 0]),
            Err(WireError::Malformed)
        );
        assert_eq!(
            CellRepr::parse(&[0, 0, 0, 0, 0x80, 0, 0, 0]),
            Err(WireError::Malformed)
        );
        // The OPEN bit is not part of the length.
        assert_eq!(
            CellRepr::parse(&[0, 0, 0, 1, 0x80, 9, 1, 2]),
            Err(WireError::BadCellLength)
        );
        // Too short for the header.
        assert_eq!(CellRepr::parse(&[0, 0]), Err(WireError::BufferTooSmall));
        // Payload too big for the cell.
        let mut small = [0u8; 7];
        assert_eq!(
            CellRepr::Data {
                conn: 1,
                open: false,
                payload: b"ab"
            }
            .emit(&mut small),
            Err(WireError::BufferTooSmall)
        );
    }

    #[test]
    fn frame_vectors() {
        let mut out = [0u8; 64];
        let n = Message::TrusteeRequest {
            interval: 1,
            exchange: 300,
            slot: 2,
        }
        .emit_frame(&mut out)
        .unwrap();
        // Variant 4, interval 1, exchange 300 = varint AC 02, slot 2.
        assert_eq!(&out[..n], &[0, 0, 0, 5, 4, 1, 0xAC, 0x02, 2]);

        let n = Message::ClientRequest {
            interval: 2,
            exchange: 5,
            slot: 1,
            conn: 0x0002_0001,
            data: b"ok",
        }
        .emit_frame(&mut out)
        .unwrap();
        // Variant 5, interval 2, exchange 5, slot 1, conn 0x20001 = varint 81 80 08, len 2.
        assert_eq!(
            &out[..n],
            &[0, 0, 0, 10, 5, 2, 5, 1, 0x81, 0x80, 0x08, 2, b'o', b'k']
        );
    }

    #[test]
    fn cell_prefix_matches_postcard() {
        for &(interval, exchange, len) in
            &[(0u32, 0u64, 16usize), (7, 1 << 40, 1024), (1, 2, 32768)]
        {
            let cell: heapless::Vec<u8, 65536> = (0..len).map(|i| i as u8).collect();
            let mut a = [0u8; 65536 + 64];
            let mut b = [0u8; 65536 + 64];
            let n = Message::Cell {
                interval,
                exchange,
                cell: &cell,
            }
            .emit_frame(&mut a)
            .unwrap();
            let p = emit_cell_prefix(interval, exchange, len, &mut b).unwrap();
            b[p..p + len].copy_from_slice(&cell);
            assert_eq!(p + len, n);
            assert_eq!(a[..n], b[..n]);
        }
    }

    #[test]
    fn largest_control_frame_fits() {
        let mut out = [0u8; MAX_CONTROL_FRAME];
        let mut online = OnlineSet::new();
        let mut client_nonces = heapless::Vec::new();
        for i in 0..MAX_CLIENTS {
            online.insert(i);
            client_nonces.push([0xFF; NONCE_LEN]).unwrap();
        }
        let open = Message::IntervalOpen {
            interval: u32::MAX,
            online,
            client_nonces,
        };
        let n = open.emit_frame(&mut out).unwrap();
        assert_eq!(Message::parse(&out[FRAME_HEADER_LEN..n]).unwrap(), open);
        let start = Message::IntervalStart {
            interval: u32::MAX,
            nonces: (0..MAX_TRUSTEES).map(|_| [0xFF; NONCE_LEN]).collect(),
            window: u16::MAX,
            history: (0..MAX_HISTORY)
                .map(|_| IntervalRecord {
                    interval: u32::MAX,
                    done: u64::MAX,
                })
                .collect(),
        };
        assert!(start.emit_frame(&mut out).is_ok());
    }

    #[test]
    fn frames_round_trip_and_split() {
        let mut out = [0u8; 256];
        let msg = Message::Hello {
            version: PROTOCOL_VERSION,
            group_id: [1; 16],
            session_id: [2; 16],
            role: NodeRole::Trustee,
            index: 3,
            nonce: [9; NONCE_LEN],
        };
        let n = msg.emit_frame(&mut out).unwrap();
        assert_eq!(split_frame(&out[..n - 1]).unwrap(), None);
        let (body, used) = split_frame(&out[..n]).unwrap().unwrap();
        assert_eq!(used, n);
        assert_eq!(Message::parse(body).unwrap(), msg);
    }

    #[test]
    fn garbage_frames_are_errors() {
        assert_eq!(
            split_frame(&[0, 0, 0, 0, 1]),
            Err(WireError::BadFrameLength(0))
        );
        assert_eq!(
            split_frame(&[0xFF, 0xFF, 0xFF, 0xFF]),
            Err(WireError::BadFrameLength(u32::MAX))
        );
        assert_eq!(Message::parse(&[99]), Err(WireError::Malformed));
        assert_eq!(Message::parse(&[4, 1, 1]), Err(WireError::Malformed));
        assert_eq!(
            Message::parse(&[4, 1, 1, 1, 0]),
            Err(WireError::TrailingBytes)
        );
        // A cell whose length varint claims more bytes than exist.
        assert_eq!(Message::parse(&[6, 0, 0, 50, 1]), Err(WireError::Malformed));
        // Every prefix of a valid message fails cleanly.
        let mut out = [0u8; 64];
        let n = Message::ClientRequest {
            interval: 2,
            exchange: 5,
            slot: 1,
            conn: 9,
            data: b"abc",
        }
        .emit_frame(&mut out)
        .unwrap();
        for cut in FRAME_HEADER_LEN..n - 1 {
            assert!(Message::parse(&out[FRAME_HEADER_LEN..cut]).is_err());
        }
    }
}
