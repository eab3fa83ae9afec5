//! Wire formats: link frames, protocol messages, cell plaintexts and exchange outputs.
//!
//! Every link (client ↔ relay, trustee ↔ relay) carries a sequence of frames:
//!
//! ```text
//! Frame    = Length (u32, big endian) | Body (Length bytes, 1 ..= MAX_FRAME_BODY)
//! Body     = postcard encoding of [`Message`]
//! ```
//!
//! A data exchange's cell plaintext, before pads, is the prototype's upstream record list
//! with the owner's length announcement in front ([`CellView`], [`CellWriter`]):
//!
//! ```text
//! Cell     = Next (u16 BE) | Record* | zero padding
//! Record   = Conn# (u32 BE, > 0) | Len (u16 BE: OPEN bit | 15-bit length) | payload
//! ```
//!
//! An all-zero cell means nothing was sent (and the slot is released). A reservation
//! exchange's cell is a bitmap with one bit per pseudonym slot ([`crate::bits`]). What the
//! relay decoded is reported back to every node as [`Output`]s, so everyone can run the same
//! schedule ([`crate::schedule`]).
//!
//! Nothing in this module panics on any input: every parser returns a [`WireError`].

use serde::{Deserialize, Serialize};

use crate::bits::{bitmap_len, Bits};
use crate::NONCE_LEN;

/// Protocol version carried in [`Message::Hello`].
pub const PROTOCOL_VERSION: u16 = 2;

/// Bytes of the frame length prefix.
pub const FRAME_HEADER_LEN: usize = 4;

/// Largest frame body accepted from any peer (and what hosted nodes declare they accept).
pub const MAX_FRAME_BODY: usize = 96 * 1024;

/// Smallest frame limit a node may declare in its Hello.
pub const MIN_FRAME_LIMIT: usize = 1024;

/// Most previous intervals an [`Message::IntervalStart`] reports.
pub const MAX_HISTORY: usize = 8;

/// Bytes of a record header in a cell: `Conn#(4) | Len(2)`.
pub const RECORD_HEADER_LEN: usize = 6;

/// Bytes of a cell's `Next` field.
pub const NEXT_LEN: usize = 2;

/// Bit of a record's `Len` field that marks the first record of a connection.
pub const OPEN_FLAG: u16 = 0x8000;

/// Largest payload one record's `Len` can express.
pub const MAX_PAYLOAD: usize = 0x7FFF;

/// Errors from parsing or emitting wire data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum WireError {
    /// The output buffer cannot hold the encoding.
    BufferTooSmall,
    /// A frame announced a length of zero or more than the limit.
    BadFrameLength(u32),
    /// The frame body is not a valid message.
    Malformed,
    /// The message decoded but left unused bytes in the frame.
    TrailingBytes,
    /// A cell's records run past the cell, or its padding is not zero.
    BadCell,
    /// An exchange output list is malformed.
    BadOutputs,
}

impl core::fmt::Display for WireError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            WireError::BufferTooSmall => f.write_str("output buffer too small"),
            WireError::BadFrameLength(n) => write!(f, "frame length {n} out of range"),
            WireError::Malformed => f.write_str("malformed message"),
            WireError::TrailingBytes => f.write_str("trailing bytes after message"),
            WireError::BadCell => f.write_str("cell records malformed"),
            WireError::BadOutputs => f.write_str("exchange outputs malformed"),
        }
    }
}

impl core::error::Error for WireError {}

/// A connection number (Conn#): `slot + 1` in the high 16 bits, the rest chosen at random by
/// the slot's owner, so the owner recognises its connections downstream and nobody else can
/// predict them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ConnId(pub u32);

impl ConnId {
    /// The connection of `slot` with the low bits `low`.
    pub const fn new(slot: u16, low: u16) -> Self {
        ConnId(((slot as u32) + 1) << 16 | low as u32)
    }

    /// The pseudonym slot that owns this connection, if the number is well formed.
    pub const fn slot(&self) -> Option<u16> {
        let hi = self.0 >> 16;
        if hi == 0 {
            None
        } else {
            Some((hi - 1) as u16)
        }
    }
}

impl core::fmt::Display for ConnId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{:#010x}", self.0)
    }
}

/// Which kind of node opens a link to the relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeRole {
    /// A DC-net client (index into the group's clients).
    Client,
    /// An anytrust trustee (index into the group's trustees).
    Trustee,
}

/// How far one earlier interval got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntervalRecord {
    /// The interval number.
    pub interval: u32,
    /// Exchanges `0 .. done` of that interval were decoded; later ones were abandoned.
    pub done: u64,
}

/// What a client already holds of the relay's downstream log, sent when it reconnects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resume {
    /// The relay instance whose log the client followed.
    pub epoch: [u8; 16],
    /// The last record the client has.
    pub seq: u64,
    /// Most bytes of missed records the client can take back: the records' lengths plus
    /// [`REPLAY_OVERHEAD`] each. A longer gap ends its connections instead.
    pub limit: u32,
}

/// Bytes a client counts per replayed record on top of its data (see [`Resume::limit`]).
pub const REPLAY_OVERHEAD: usize = 9;

/// Most bytes a `Replay` frame body takes beyond its record's data.
pub const REPLAY_FRAME_OVERHEAD: usize = 32;

/// The head of the downstream log: every record so far, hashed in a chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    /// Sequence number of the last record (0 before any).
    pub seq: u64,
    /// Payload bytes of all records so far.
    pub bytes: u64,
    /// Chain hash after the last record.
    pub hash: [u8; 32],
}

/// Group-wide parameters of one interval, fixed by the relay and bound into every cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Params {
    /// Length of a newly reserved slot's cell (the group's configured cell length).
    pub base_len: u32,
    /// Longest cell an owner may announce.
    pub max_len: u32,
    /// Most downstream payload bytes per record.
    pub downstream_len: u32,
    /// A reservation exchange runs at least every `period` exchanges while slots are reserved.
    pub period: u16,
    /// Most slots one reservation exchange may add to the schedule.
    pub admit: u16,
    /// Most slots reserved at once.
    pub capacity: u16,
}

/// What an exchange is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Kind {
    /// Every slot may set its bit to ask for exchanges; the cell is a slot bitmap.
    Reserve,
    /// The owner of `slot` writes a cell of `len` bytes.
    Slot {
        /// The pseudonym slot.
        slot: u16,
        /// Cell length of this exchange.
        len: u32,
    },
}

impl Kind {
    /// Cell length of an exchange of this kind in a group with `slots` slots.
    pub const fn cell_len(&self, slots: u16) -> usize {
        match *self {
            Kind::Reserve => bitmap_len(slots as usize),
            Kind::Slot { len, .. } => len as usize,
        }
    }

    /// Fixed-width encoding used in the transcript: tag (1), slot (u16 BE), len (u32 BE).
    pub fn transcript_bytes(&self) -> [u8; 7] {
        let mut b = [0u8; 7];
        if let Kind::Slot { slot, len } = *self {
            b[0] = 1;
            b[1..3].copy_from_slice(&slot.to_be_bytes());
            b[3..7].copy_from_slice(&len.to_be_bytes());
        }
        b
    }
}

/// A downstream record: what the exit sent for one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Down<'a> {
    /// No downstream record in this exchange.
    None,
    /// Bytes for `conn` (never empty).
    Data {
        /// The connection.
        conn: ConnId,
        /// The bytes.
        #[serde(borrow)]
        data: &'a [u8],
    },
    /// The exit's side of `conn` ended: the connection is gone.
    Close {
        /// The connection.
        conn: ConnId,
    },
}

impl Down<'_> {
    /// Whether this is a record (data or close) that gets a sequence number.
    pub const fn is_record(&self) -> bool {
        !matches!(self, Down::None)
    }

    /// Checks the record's shape: a connection number and, for data, bytes.
    pub fn check(&self) -> Result<(), WireError> {
        match *self {
            Down::None => Ok(()),
            Down::Data { conn, data } if conn.0 != 0 && !data.is_empty() => Ok(()),
            Down::Close { conn } if conn.0 != 0 => Ok(()),
            _ => Err(WireError::Malformed),
        }
    }
}

/// Why the relay ends a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum GoodbyeReason {
    /// Another process of the same node is connected and alive.
    AlreadyConnected,
    /// Another process of the same node took this node's place.
    Replaced,
    /// The Hello's protocol version is not supported.
    Version,
    /// The Hello names another group or session.
    WrongGroup,
    /// The Hello names a node other than the one the link authenticated as.
    WrongIdentity,
    /// The node's declared frame limit is too small for this group.
    FrameLimit,
    /// The node sent something the protocol does not allow.
    ProtocolError,
    /// The node left an exchange unanswered too long.
    Timeout,
    /// The node is not reading its link fast enough.
    TooSlow,
    /// The relay is stopping.
    ShuttingDown,
    /// A trustee refused this node's presence proof or acknowledgement.
    Refused,
}

impl GoodbyeReason {
    /// Whether the node's process must stop rather than dial again: another process of the
    /// same node holds its place, and two would only replace each other.
    pub const fn ends_the_process(self) -> bool {
        matches!(
            self,
            GoodbyeReason::AlreadyConnected | GoodbyeReason::Replaced
        )
    }
}

impl core::fmt::Display for GoodbyeReason {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            GoodbyeReason::AlreadyConnected => {
                "another process of this node is already connected to the relay"
            }
            GoodbyeReason::Replaced => "another process of this node took its place",
            GoodbyeReason::Version => "the relay speaks another protocol version",
            GoodbyeReason::WrongGroup => "the relay serves another group or session",
            GoodbyeReason::WrongIdentity => "the hello names another node than the link key",
            GoodbyeReason::FrameLimit => "this node's frame limit is too small for the group",
            GoodbyeReason::ProtocolError => "the relay saw a protocol error from this node",
            GoodbyeReason::Timeout => "this node did not answer an exchange in time",
            GoodbyeReason::TooSlow => "this node did not read its link fast enough",
            GoodbyeReason::ShuttingDown => "the relay is shutting down",
            GoodbyeReason::Refused => {
                "a trustee refused this node's proof of presence or acknowledgement"
            }
        })
    }
}

/// A protocol message (the body of one frame).
///
/// Variable-length fields borrow the frame body, so a parsed message is small.
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
        /// Largest frame body the node accepts.
        max_frame: u32,
        /// The downstream records a client already has (none for trustees and new clients).
        resume: Option<Resume>,
        /// A client's presence proof for each trustee, `MAC_LEN` bytes each in trustee
        /// order; empty for trustees.
        #[serde(borrow)]
        proofs: &'a [u8],
    },
    /// Relay → node, just before the relay closes the link.
    Goodbye {
        /// Why.
        reason: GoodbyeReason,
    },
    /// Relay → node: answer with [`Message::ProbeReply`] to show this link is alive.
    Probe {
        /// Echoed back.
        nonce: u64,
    },
    /// Node → relay: the answer to a probe.
    ProbeReply {
        /// The probe's nonce.
        nonce: u64,
    },
    /// Relay → trustees: a new interval over this online set; members follow.
    IntervalOpen {
        /// The interval number.
        interval: u32,
        /// Bitmap of online clients (`ceil(clients / 8)` bytes).
        #[serde(borrow)]
        online: &'a [u8],
    },
    /// Relay → one trustee: the next online clients' link nonces and presence proofs.
    Members {
        /// The interval.
        interval: u32,
        /// Position of the first entry among the interval's members (increasing client order).
        first: u32,
        /// `NONCE_LEN + MAC_LEN` bytes per member: its link nonce, then its proof for this trustee.
        #[serde(borrow)]
        entries: &'a [u8],
    },
    /// Trustee → relay: every member checked; `nonce` is fresh randomness for its pads.
    IntervalReady {
        /// The interval.
        interval: u32,
        /// Fresh per-interval nonce mixed into every pad of this trustee.
        nonce: [u8; NONCE_LEN],
    },
    /// Relay → trustees and online clients, byte-identical to all: the interval's view.
    IntervalStart {
        /// The interval number.
        interval: u32,
        /// The relay instance (downstream sequence numbers are per instance).
        epoch: [u8; 16],
        /// Bitmap of online clients.
        #[serde(borrow)]
        online: &'a [u8],
        /// Each trustee's nonce for this interval, `NONCE_LEN` bytes each in trustee order.
        #[serde(borrow)]
        nonces: &'a [u8],
        /// Most exchanges in flight ahead of the last decoded one.
        window: u16,
        /// Schedule and length parameters.
        params: Params,
        /// How far recent earlier intervals got, so owners can settle unconfirmed cells.
        history: heapless::Vec<IntervalRecord, MAX_HISTORY>,
        /// The downstream log so far.
        head: Head,
        /// Oldest record the relay can still replay.
        oldest: u64,
        /// Data bytes of the largest record the relay can replay (a client whose frames
        /// are smaller cannot take replays).
        largest: u32,
    },
    /// Trustee → relay: its confirmation of the interval's view for the next members.
    Confirm {
        /// The interval.
        interval: u32,
        /// Position of the first entry among the interval's members.
        first: u32,
        /// `MAC_LEN` bytes per member.
        #[serde(borrow)]
        macs: &'a [u8],
    },
    /// Relay → one client: every trustee's confirmation of the view, `MAC_LEN` bytes each.
    Confirmed {
        /// The interval.
        interval: u32,
        /// One MAC per trustee, in trustee order.
        #[serde(borrow)]
        macs: &'a [u8],
    },
    /// Relay → one client: a downstream record it missed while away.
    Replay {
        /// The record's sequence number.
        seq: u64,
        /// The record.
        #[serde(borrow)]
        down: Down<'a>,
    },
    /// Relay → trustees: send your cell for this exchange.
    TrusteeRequest {
        /// Interval of the exchange.
        interval: u32,
        /// Exchange number within the interval.
        exchange: u64,
        /// What the exchange is for.
        kind: Kind,
        /// Outputs of exchanges decoded since the previous request ([`OutputsView`]).
        #[serde(borrow)]
        outputs: &'a [u8],
        /// The downstream chain hash after this exchange's record.
        head: [u8; 32],
    },
    /// Relay → online clients: the next exchange and one downstream record.
    ClientRequest {
        /// Interval of the exchange.
        interval: u32,
        /// Exchange number within the interval.
        exchange: u64,
        /// What the exchange is for.
        kind: Kind,
        /// Outputs of exchanges decoded since the previous request ([`OutputsView`]).
        #[serde(borrow)]
        outputs: &'a [u8],
        /// The next downstream record, if any.
        #[serde(borrow)]
        down: Down<'a>,
    },
    /// Client or trustee → relay: a ciphertext cell.
    Cell {
        /// Interval of the exchange.
        interval: u32,
        /// Exchange number.
        exchange: u64,
        /// Exactly the exchange's cell length of ciphertext.
        #[serde(borrow)]
        cell: &'a [u8],
    },
    /// Client → relay, after `IntervalStart`: its acknowledgement of the view it was shown,
    /// for each trustee.
    Ack {
        /// The interval.
        interval: u32,
        /// One MAC per trustee, `MAC_LEN` bytes each in trustee order.
        #[serde(borrow)]
        macs: &'a [u8],
    },
    /// Relay → one trustee: the next members' acknowledgements for it.
    Acks {
        /// The interval.
        interval: u32,
        /// Position of the first entry among the interval's members.
        first: u32,
        /// `MAC_LEN` bytes per member.
        #[serde(borrow)]
        macs: &'a [u8],
    },
    /// Trustee → relay: a member's presence proof or acknowledgement does not check; the
    /// trustee serves no interval with it.
    Refuse {
        /// The interval.
        interval: u32,
        /// The client.
        client: u16,
    },
}

/// The reason in a frame body that is a [`Message::Goodbye`] (to look for one among the
/// frames a relay sent before closing a link that can no longer be written).
pub fn goodbye_reason(body: &[u8]) -> Option<GoodbyeReason> {
    match Message::parse(body) {
        Ok(Message::Goodbye { reason }) => Some(reason),
        _ => None,
    }
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

    /// Length of the frame [`Message::emit_frame`] would write.
    pub fn frame_len(&self) -> usize {
        FRAME_HEADER_LEN
            + postcard::experimental::serialized_size(self).unwrap_or(usize::MAX - FRAME_HEADER_LEN)
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
const CELL_VARIANT: u32 = 13;

/// Postcard's variant index of [`Message::Confirm`]; pinned by a test.
const CONFIRM_VARIANT: u32 = 8;

/// Postcard's variant index of [`Message::Members`]; pinned by a test.
const MEMBERS_VARIANT: u32 = 5;

/// Postcard's variant index of [`Message::Acks`]; pinned by a test.
const ACKS_VARIANT: u32 = 15;

/// Writes the frame prefix of a [`Message::Members`] with `count` entries; the caller writes
/// the entries (`NONCE_LEN + MAC_LEN` bytes each) right after the returned length.
pub fn emit_members_prefix(
    interval: u32,
    first: u32,
    count: usize,
    out: &mut [u8],
) -> Result<usize, WireError> {
    let len = count * (NONCE_LEN + crate::MAC_LEN);
    emit_prefix(&(MEMBERS_VARIANT, interval, first, len as u64), len, out)
}

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
    emit_prefix(
        &(CELL_VARIANT, interval, exchange, cell_len as u64),
        cell_len,
        out,
    )
}

/// Writes the frame prefix of a [`Message::Confirm`] with `count` MACs; the caller writes
/// the MACs right after the returned length.
pub fn emit_confirm_prefix(
    interval: u32,
    first: u32,
    count: usize,
    out: &mut [u8],
) -> Result<usize, WireError> {
    let len = count * crate::MAC_LEN;
    emit_prefix(&(CONFIRM_VARIANT, interval, first, len as u64), len, out)
}

/// Writes the frame prefix of a [`Message::Acks`] with `count` MACs; the caller writes
/// the MACs right after the returned length.
pub fn emit_acks_prefix(
    interval: u32,
    first: u32,
    count: usize,
    out: &mut [u8],
) -> Result<usize, WireError> {
    let len = count * crate::MAC_LEN;
    emit_prefix(&(ACKS_VARIANT, interval, first, len as u64), len, out)
}

/// Encodes `fields` (ending with the byte length of a trailing slice) after a frame
/// header sized for `tail` more bytes.
fn emit_prefix<T: Serialize>(fields: &T, tail: usize, out: &mut [u8]) -> Result<usize, WireError> {
    if out.len() < FRAME_HEADER_LEN {
        return Err(WireError::BufferTooSmall);
    }
    let n = postcard::to_slice(fields, &mut out[FRAME_HEADER_LEN..])
        .map_err(|_| WireError::BufferTooSmall)?
        .len();
    let body = n + tail;
    if body > MAX_FRAME_BODY {
        return Err(WireError::BadFrameLength(body as u32));
    }
    if out.len() < FRAME_HEADER_LEN + body {
        return Err(WireError::BufferTooSmall);
    }
    out[..FRAME_HEADER_LEN].copy_from_slice(&(body as u32).to_be_bytes());
    Ok(FRAME_HEADER_LEN + n)
}

/// Longest frame of a cell of `cell_len` bytes.
pub const fn cell_frame_len(cell_len: usize) -> usize {
    // Variant (1) + interval (≤ 5) + exchange (≤ 10) + length varint (≤ 3).
    FRAME_HEADER_LEN + 19 + cell_len
}

// ---------------------------------------------------------------------------------------
// Cell plaintexts

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
        while let Some(h) = rest.get(pos..pos + RECORD_HEADER_LEN) {
            let conn = u32::from_be_bytes([h[0], h[1], h[2], h[3]]);
            let len = u16::from_be_bytes([h[4], h[5]]);
            if conn == 0 {
                if len != 0 {
                    return Err(WireError::BadCell);
                }
                break;
            }
            let payload = usize::from(len & !OPEN_FLAG);
            if pos + RECORD_HEADER_LEN + payload > rest.len() {
                return Err(WireError::BadCell);
            }
            pos += RECORD_HEADER_LEN + payload;
        }
        if rest[pos..].iter().any(|&b| b != 0) {
            return Err(WireError::BadCell);
        }
        Ok(CellView {
            next: u16::from_be_bytes(*next),
            records: &rest[..pos],
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
                .get(pos..pos + RECORD_HEADER_LEN)
                .ok_or(WireError::BadCell)?;
            let conn = u32::from_be_bytes([h[0], h[1], h[2], h[3]]);
            let len = usize::from(u16::from_be_bytes([h[4], h[5]]) & !OPEN_FLAG);
            if conn == 0 || pos + RECORD_HEADER_LEN + len > records.len() {
                return Err(WireError::BadCell);
            }
            pos += RECORD_HEADER_LEN + len;
        }
        Ok(Records { rest: records })
    }
}

/// Reads the record header at the start of `b` (at least [`RECORD_HEADER_LEN`] bytes):
/// Conn#, open flag, payload length.
pub(crate) fn read_record_header(b: &[u8]) -> (ConnId, bool, usize) {
    let conn = ConnId(u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
    let len = u16::from_be_bytes([b[4], b[5]]);
    (conn, len & OPEN_FLAG != 0, usize::from(len & !OPEN_FLAG))
}

/// Writes a record header at the start of `b` (at least [`RECORD_HEADER_LEN`] bytes).
pub(crate) fn write_record_header(b: &mut [u8], conn: ConnId, open: bool, len: usize) {
    let raw = (len as u16 & !OPEN_FLAG) | if open { OPEN_FLAG } else { 0 };
    b[..4].copy_from_slice(&conn.0.to_be_bytes());
    b[4..6].copy_from_slice(&raw.to_be_bytes());
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
        write_record_header(&mut self.cell[at..], conn, open, len);
        self.pos = at + RECORD_HEADER_LEN + len;
        Ok(&mut self.cell[at + RECORD_HEADER_LEN..self.pos])
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
        if self.cell.len() >= NEXT_LEN {
            self.cell[..NEXT_LEN].copy_from_slice(&next.to_be_bytes());
        }
        self.cell[self.pos..].fill(0);
        self.pos
    }
}

// ---------------------------------------------------------------------------------------
// Exchange outputs

const OUT_NEXT: u8 = 0;
const OUT_BITMAP: u8 = 1;
const OUT_LIST: u8 = 2;

/// The slots a reservation exchange decoded to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requests<'a> {
    /// As a bitmap with one bit per slot.
    Bitmap(Bits<'a>),
    /// As a strictly increasing list of slots, `u16` big endian each.
    List(&'a [u8]),
}

impl<'a> Requests<'a> {
    /// The requesting slots in increasing order.
    pub fn iter(&self) -> impl Iterator<Item = u16> + 'a {
        let (bits, list) = match *self {
            Requests::Bitmap(b) => (Some(b), &[][..]),
            Requests::List(l) => (None, l),
        };
        bits.into_iter()
            .flat_map(|b| b.iter().map(|s| s as u16))
            .chain(
                list.chunks_exact(2)
                    .map(|c| u16::from_be_bytes([c[0], c[1]])),
            )
    }
}

/// What the relay decoded in one exchange, as far as the schedule needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output<'a> {
    /// A slot's exchange decoded; its owner asks for `next` bytes next (0: release; a
    /// garbled exchange also reports 0).
    Next(u16),
    /// A reservation exchange decoded to these requests.
    Requests(Requests<'a>),
}

/// A checked list of outputs in a request's `outputs` field.
///
/// ```text
/// Output = 0x00 | Next (u16 BE)
///        | 0x01 | bitmap (ceil(slots / 8) bytes)
///        | 0x02 | count (u16 BE) | slot (u16 BE) × count, strictly increasing
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputsView<'a> {
    bytes: &'a [u8],
    slots: u16,
}

impl<'a> OutputsView<'a> {
    /// Checks an output list for a group with `slots` slots.
    pub fn parse(bytes: &'a [u8], slots: u16) -> Result<Self, WireError> {
        let view = OutputsView { bytes, slots };
        let mut it = view.raw_iter();
        for item in it.by_ref() {
            item?;
        }
        Ok(view)
    }

    /// The raw bytes (hashed into the transcript).
    pub const fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The outputs, in exchange order.
    pub fn iter(&self) -> impl Iterator<Item = Output<'a>> + 'a {
        self.raw_iter().map_while(|o| o.ok())
    }

    fn raw_iter(&self) -> impl Iterator<Item = Result<Output<'a>, WireError>> + 'a {
        let slots = self.slots;
        let mut rest = self.bytes;
        core::iter::from_fn(move || {
            let (&tag, tail) = rest.split_first()?;
            let parsed = match tag {
                OUT_NEXT => tail
                    .split_first_chunk::<2>()
                    .map(|(n, t)| (Output::Next(u16::from_be_bytes(*n)), t)),
                OUT_BITMAP => {
                    let n = bitmap_len(usize::from(slots));
                    (tail.len() >= n)
                        .then(|| tail.split_at(n))
                        .and_then(|(b, t)| {
                            Bits::new_checked(b, usize::from(slots))
                                .ok()
                                .map(|b| (Output::Requests(Requests::Bitmap(b)), t))
                        })
                }
                OUT_LIST => tail.split_first_chunk::<2>().and_then(|(c, t)| {
                    let n = usize::from(u16::from_be_bytes(*c)) * 2;
                    let (list, t) = (t.len() >= n).then(|| t.split_at(n))?;
                    let ok = list
                        .chunks_exact(2)
                        .map(|c| u16::from_be_bytes([c[0], c[1]]))
                        .try_fold(None::<u16>, |prev, s| {
                            (s < slots && prev.is_none_or(|p| s > p)).then_some(Some(s))
                        })
                        .is_some();
                    ok.then_some((Output::Requests(Requests::List(list)), t))
                }),
                _ => None,
            };
            match parsed {
                Some((o, t)) => {
                    rest = t;
                    Some(Ok(o))
                }
                None => {
                    rest = &[];
                    Some(Err(WireError::BadOutputs))
                }
            }
        })
    }
}

/// Appends a `Next` output to `out` at `at`; returns the new end.
pub fn emit_next_output(out: &mut [u8], at: usize, next: u16) -> Result<usize, WireError> {
    let dst = out.get_mut(at..at + 3).ok_or(WireError::BufferTooSmall)?;
    dst[0] = OUT_NEXT;
    dst[1..].copy_from_slice(&next.to_be_bytes());
    Ok(at + 3)
}

/// Appends a reservation output for the decoded request `bitmap`, in its shorter form.
pub fn emit_requests_output(out: &mut [u8], at: usize, bitmap: &[u8]) -> Result<usize, WireError> {
    let set = crate::bits::count(bitmap);
    if 3 + 2 * set < 1 + bitmap.len() {
        let end = at + 3 + 2 * set;
        let dst = out.get_mut(at..end).ok_or(WireError::BufferTooSmall)?;
        dst[0] = OUT_LIST;
        dst[1..3].copy_from_slice(&(set as u16).to_be_bytes());
        let mut k = 3;
        for (byte, &b) in bitmap.iter().enumerate() {
            for bit in 0..8 {
                if b & (1 << bit) != 0 {
                    let slot = (byte * 8 + bit) as u16;
                    dst[k..k + 2].copy_from_slice(&slot.to_be_bytes());
                    k += 2;
                }
            }
        }
        Ok(end)
    } else {
        let end = at + 1 + bitmap.len();
        let dst = out.get_mut(at..end).ok_or(WireError::BufferTooSmall)?;
        dst[0] = OUT_BITMAP;
        dst[1..].copy_from_slice(bitmap);
        Ok(end)
    }
}

/// Longest output list one request carries: at most one reservation bitmap, and a `Next`
/// for every other exchange that can be waiting to be reported.
pub const fn max_outputs_len(slots: u16) -> usize {
    1 + bitmap_len(slots as usize) + 3 * 2 * crate::MAX_WINDOW
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

    #[test]
    fn outputs_round_trip_in_both_forms() {
        let mut out = [0u8; 64];
        let mut bitmap = [0u8; 4]; // 30 slots
        crate::bits::set(&mut bitmap, 3);
        crate::bits::set(&mut bitmap, 29);
        let at = emit_next_output(&mut out, 0, 512).unwrap();
        let at = emit_requests_output(&mut out, at, &bitmap).unwrap();
        // Two bits of 30: the list (3 + 4 bytes) is longer than the bitmap (1 + 4).
        assert_eq!(&out[..at], &[0, 2, 0, 1, 8, 0, 0, 0x20]);
        let dense = [0xFFu8, 0xFF, 0xFF, 0x3F];
        let at2 = emit_requests_output(&mut out, at, &dense).unwrap();
        let view = OutputsView::parse(&out[..at2], 30).unwrap();
        let mut it = view.iter();
        assert_eq!(it.next(), Some(Output::Next(512)));
        match it.next() {
            Some(Output::Requests(r)) => {
                let s: heapless::Vec<u16, 4> = r.iter().collect();
                assert_eq!(&s[..], &[3, 29]);
            }
            o => panic!("{o:?}"),
        }
        match it.next() {
            Some(Output::Requests(r)) => assert_eq!(r.iter().count(), 30),
            o => panic!("{o:?}"),
        }
        assert_eq!(it.next(), None);
        drop(it);
        // A sparse list for many slots.
        let mut out = [0u8; 64];
        let mut big = [0u8; 1250];
        crate::bits::set(&mut big, 9_999);
        let n = emit_requests_output(&mut out, 0, &big).unwrap();
        assert_eq!(&out[..n], &[2, 0, 1, 0x27, 0x0F]);
        assert!(OutputsView::parse(&out[..n], 10_000).is_ok());
        assert_eq!(
            OutputsView::parse(&out[..n], 9_999),
            Err(WireError::BadOutputs)
        );
    }

    #[test]
    fn outputs_refuse_garbage() {
        for bad in [
            &[9u8][..],
            &[0, 1][..],
            &[1, 0xFF][..],
            &[2, 0, 2, 0, 5, 0, 5][..],
            &[2, 0, 2, 0, 5, 0, 4][..],
            &[2, 0, 1][..],
        ] {
            assert_eq!(
                OutputsView::parse(bad, 30),
                Err(WireError::BadOutputs),
                "{bad:?}"
            );
        }
        assert!(OutputsView::parse(&[], 30).is_ok());
    }

    #[test]
    fn frame_vectors() {
        let mut out = [0u8; 64];
        let n = Message::TrusteeRequest {
            interval: 1,
            exchange: 300,
            kind: Kind::Slot { slot: 2, len: 256 },
            outputs: &[0, 0, 0],
            head: [0xEE; 32],
        }
        .emit_frame(&mut out)
        .unwrap();
        // Variant 11, interval 1, exchange 300 = AC 02, Kind::Slot = 1, slot 2, len 256 = 80 02,
        // outputs (3 bytes), head (32 bytes).
        assert_eq!(
            &out[..12],
            &[0, 0, 0, 44, 11, 1, 0xAC, 0x02, 1, 2, 0x80, 0x02]
        );
        assert_eq!(&out[12..16], &[3, 0, 0, 0]);
        assert_eq!(n, 4 + 44);

        let n = Message::ClientRequest {
            interval: 2,
            exchange: 5,
            kind: Kind::Reserve,
            outputs: &[],
            down: Down::Data {
                conn: ConnId(0x0002_0001),
                data: b"ok",
            },
        }
        .emit_frame(&mut out)
        .unwrap();
        // Variant 12, interval 2, exchange 5, Reserve = 0, no outputs, Down::Data = 1,
        // conn 0x20001 = 81 80 08, data "ok".
        assert_eq!(
            &out[..n],
            &[0, 0, 0, 12, 12, 2, 5, 0, 0, 1, 0x81, 0x80, 0x08, 2, b'o', b'k']
        );
    }

    /// Concatenates parts; `rep(b, n)` is `n` copies of `b`.
    fn cat(parts: &[&[u8]]) -> std::vec::Vec<u8> {
        parts.concat()
    }

    fn rep(b: u8, n: usize) -> std::vec::Vec<u8> {
        std::vec![b; n]
    }

    /// The byte-exact frames of docs/protocol.md, section 2 ("Byte-exact frames").
    #[test]
    fn documented_frame_vectors() {
        let proofs = [0xABu8; 32];
        let mut entries = rep(0xAA, 16);
        entries.extend(rep(0xBA, 16));
        entries.extend(rep(0xCC, 16));
        entries.extend(rep(0xDC, 16));
        let mut nonces = rep(0x55, 16);
        nonces.extend(rep(0x56, 16));
        let mut macs = rep(0x71, 16);
        macs.extend(rep(0x72, 16));
        let mut history = heapless::Vec::new();
        history
            .push(IntervalRecord {
                interval: 6,
                done: 1000,
            })
            .unwrap();
        // Next(256) of an earlier slot exchange, then slot 5's request as a list.
        let outputs = [0x00, 0x01, 0x00, 0x02, 0x00, 0x01, 0x00, 0x05];
        let conn = ConnId(0x0003_0001);
        let slot = Kind::Slot { slot: 2, len: 256 };
        let cases: [(Message<'_>, std::vec::Vec<u8>); 23] = [
            (
                Message::Hello {
                    version: PROTOCOL_VERSION,
                    group_id: [1; 16],
                    session_id: [2; 16],
                    role: NodeRole::Client,
                    index: 3,
                    nonce: [0x66; 16],
                    max_frame: MAX_FRAME_BODY as u32,
                    resume: Some(Resume {
                        epoch: [4; 16],
                        seq: 77,
                        limit: 65536,
                    }),
                    proofs: &proofs,
                },
                cat(&[
                    &[0, 0, 0, 0x6D, 0x00, 0x02],
                    &rep(1, 16),
                    &rep(2, 16),
                    &[0x00, 0x03],
                    &rep(0x66, 16),
                    &[0x80, 0x80, 0x06, 0x01],
                    &rep(4, 16),
                    &[0x4D, 0x80, 0x80, 0x04, 0x20],
                    &proofs,
                ]),
            ),
            (
                Message::Hello {
                    version: PROTOCOL_VERSION,
                    group_id: [1; 16],
                    session_id: [2; 16],
                    role: NodeRole::Trustee,
                    index: 1,
                    nonce: [0; 16],
                    max_frame: MAX_FRAME_BODY as u32,
                    resume: None,
                    proofs: &[],
                },
                cat(&[
                    &[0, 0, 0, 0x39, 0x00, 0x02],
                    &rep(1, 16),
                    &rep(2, 16),
                    &[0x01, 0x01],
                    &rep(0, 16),
                    &[0x80, 0x80, 0x06, 0x00, 0x00],
                ]),
            ),
            (
                Message::Goodbye {
                    reason: GoodbyeReason::AlreadyConnected,
                },
                std::vec![0, 0, 0, 2, 0x01, 0x00],
            ),
            (
                Message::Goodbye {
                    reason: GoodbyeReason::Timeout,
                },
                std::vec![0, 0, 0, 2, 0x01, 0x07],
            ),
            (
                Message::Probe { nonce: 1 },
                std::vec![0, 0, 0, 2, 0x02, 0x01],
            ),
            (
                Message::ProbeReply { nonce: 1 },
                std::vec![0, 0, 0, 2, 0x03, 0x01],
            ),
            (
                Message::IntervalOpen {
                    interval: 7,
                    online: &[0x05],
                },
                std::vec![0, 0, 0, 4, 0x04, 0x07, 0x01, 0x05],
            ),
            (
                Message::Members {
                    interval: 7,
                    first: 0,
                    entries: &entries,
                },
                cat(&[&[0, 0, 0, 0x44, 0x05, 0x07, 0x00, 0x40], &entries]),
            ),
            (
                Message::IntervalReady {
                    interval: 7,
                    nonce: [0x55; 16],
                },
                cat(&[&[0, 0, 0, 0x12, 0x06, 0x07], &rep(0x55, 16)]),
            ),
            (
                Message::IntervalStart {
                    interval: 7,
                    epoch: [9; 16],
                    online: &[0x05],
                    nonces: &nonces,
                    window: 8,
                    params: Params {
                        base_len: 256,
                        max_len: 4096,
                        downstream_len: 16384,
                        period: 16,
                        admit: 64,
                        capacity: 64,
                    },
                    history,
                    head: Head {
                        seq: 3,
                        bytes: 300,
                        hash: [0xEE; 32],
                    },
                    oldest: 1,
                    largest: 300,
                },
                cat(&[
                    &[0, 0, 0, 0x6A, 0x07, 0x07],
                    &rep(9, 16),
                    &[0x01, 0x05, 0x20],
                    &nonces,
                    &[0x08],
                    &[0x80, 0x02, 0x80, 0x20, 0x80, 0x80, 0x01, 0x10, 0x40, 0x40],
                    &[0x01, 0x06, 0xE8, 0x07],
                    &[0x03, 0xAC, 0x02],
                    &rep(0xEE, 32),
                    &[0x01],
                    &[0xAC, 0x02],
                ]),
            ),
            (
                Message::Confirm {
                    interval: 7,
                    first: 0,
                    macs: &macs,
                },
                cat(&[&[0, 0, 0, 0x24, 0x08, 0x07, 0x00, 0x20], &macs]),
            ),
            (
                Message::Confirmed {
                    interval: 7,
                    macs: &macs,
                },
                cat(&[&[0, 0, 0, 0x23, 0x09, 0x07, 0x20], &macs]),
            ),
            (
                Message::Replay {
                    seq: 4,
                    down: Down::Data { conn, data: b"hi" },
                },
                std::vec![0, 0, 0, 9, 0x0A, 0x04, 0x01, 0x81, 0x80, 0x0C, 0x02, b'h', b'i'],
            ),
            (
                Message::Replay {
                    seq: 5,
                    down: Down::Close { conn },
                },
                std::vec![0, 0, 0, 6, 0x0A, 0x05, 0x02, 0x81, 0x80, 0x0C],
            ),
            (
                Message::TrusteeRequest {
                    interval: 7,
                    exchange: 300,
                    kind: slot,
                    outputs: &outputs,
                    head: [0xEE; 32],
                },
                cat(&[
                    &[
                        0, 0, 0, 0x31, 0x0B, 0x07, 0xAC, 0x02, 0x01, 0x02, 0x80, 0x02, 0x08,
                    ],
                    &outputs,
                    &rep(0xEE, 32),
                ]),
            ),
            (
                Message::TrusteeRequest {
                    interval: 7,
                    exchange: 301,
                    kind: Kind::Reserve,
                    outputs: &[],
                    head: [0xEE; 32],
                },
                cat(&[
                    &[0, 0, 0, 0x26, 0x0B, 0x07, 0xAD, 0x02, 0x00, 0x00],
                    &rep(0xEE, 32),
                ]),
            ),
            (
                Message::ClientRequest {
                    interval: 7,
                    exchange: 300,
                    kind: slot,
                    outputs: &outputs,
                    down: Down::Data { conn, data: b"ok" },
                },
                cat(&[
                    &[
                        0, 0, 0, 0x18, 0x0C, 0x07, 0xAC, 0x02, 0x01, 0x02, 0x80, 0x02, 0x08,
                    ],
                    &outputs,
                    &[0x01, 0x81, 0x80, 0x0C, 0x02, b'o', b'k'],
                ]),
            ),
            (
                Message::ClientRequest {
                    interval: 7,
                    exchange: 301,
                    kind: Kind::Reserve,
                    outputs: &[],
                    down: Down::None,
                },
                std::vec![0, 0, 0, 7, 0x0C, 0x07, 0xAD, 0x02, 0x00, 0x00, 0x00],
            ),
            (
                Message::Cell {
                    interval: 7,
                    exchange: 300,
                    cell: &[0xEE; 16],
                },
                cat(&[
                    &[0, 0, 0, 0x15, 0x0D, 0x07, 0xAC, 0x02, 0x10],
                    &rep(0xEE, 16),
                ]),
            ),
            (
                Message::Ack {
                    interval: 7,
                    macs: &macs,
                },
                cat(&[&[0, 0, 0, 0x23, 0x0E, 0x07, 0x20], &macs]),
            ),
            (
                Message::Acks {
                    interval: 7,
                    first: 0,
                    macs: &macs,
                },
                cat(&[&[0, 0, 0, 0x24, 0x0F, 0x07, 0x00, 0x20], &macs]),
            ),
            (
                Message::Refuse {
                    interval: 7,
                    client: 300,
                },
                std::vec![0, 0, 0, 4, 0x10, 0x07, 0xAC, 0x02],
            ),
            (
                Message::Goodbye {
                    reason: GoodbyeReason::Refused,
                },
                std::vec![0, 0, 0, 2, 0x01, 0x0A],
            ),
        ];
        let mut out = [0u8; 256];
        for (msg, want) in &cases {
            let n = msg.emit_frame(&mut out).unwrap();
            assert_eq!(&out[..n], &want[..], "{msg:?}");
            assert_eq!(Message::parse(&want[FRAME_HEADER_LEN..]).unwrap(), *msg);
        }
    }

    #[test]
    fn cell_prefix_matches_postcard() {
        for &(interval, exchange, len) in
            &[(0u32, 0u64, 16usize), (7, 1 << 40, 1024), (1, 2, 65535)]
        {
            let cell: std::vec::Vec<u8> = (0..len).map(|i| i as u8).collect();
            let mut a = std::vec![0u8; 65536 + 64];
            let mut b = std::vec![0u8; 65536 + 64];
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
            assert!(n <= cell_frame_len(len));
        }
        let macs = [0xABu8; 48];
        let mut a = [0u8; 128];
        let mut b = [0u8; 128];
        let n = Message::Confirm {
            interval: 9,
            first: 300,
            macs: &macs,
        }
        .emit_frame(&mut a)
        .unwrap();
        let p = emit_confirm_prefix(9, 300, 3, &mut b).unwrap();
        b[p..p + 48].copy_from_slice(&macs);
        assert_eq!(a[..n], b[..p + 48]);
        let n = Message::Acks {
            interval: 9,
            first: 300,
            macs: &macs,
        }
        .emit_frame(&mut a)
        .unwrap();
        let p = emit_acks_prefix(9, 300, 3, &mut b).unwrap();
        b[p..p + 48].copy_from_slice(&macs);
        assert_eq!(a[..n], b[..p + 48]);
        let entries = [0xCDu8; 64];
        let n = Message::Members {
            interval: 9,
            first: 2,
            entries: &entries,
        }
        .emit_frame(&mut a)
        .unwrap();
        let p = emit_members_prefix(9, 2, 2, &mut b).unwrap();
        b[p..p + 64].copy_from_slice(&entries);
        assert_eq!(a[..n], b[..p + 64]);
    }

    #[test]
    fn frames_round_trip_and_split() {
        let mut out = [0u8; 256];
        let msg = Message::Hello {
            version: PROTOCOL_VERSION,
            group_id: [1; 16],
            session_id: [2; 16],
            role: NodeRole::Client,
            index: 3,
            nonce: [9; NONCE_LEN],
            max_frame: MAX_FRAME_BODY as u32,
            resume: Some(Resume {
                epoch: [4; 16],
                seq: 77,
                limit: 1 << 20,
            }),
            proofs: &[5; 32],
        };
        let n = msg.emit_frame(&mut out).unwrap();
        assert_eq!(msg.frame_len(), n);
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
        assert_eq!(Message::parse(&[2, 1, 1]), Err(WireError::TrailingBytes));
        // A cell whose length varint claims more bytes than exist.
        assert_eq!(
            Message::parse(&[13, 0, 0, 50, 1]),
            Err(WireError::Malformed)
        );
        // Every prefix of a valid message fails cleanly.
        let mut out = [0u8; 64];
        let n = Message::ClientRequest {
            interval: 2,
            exchange: 5,
            kind: Kind::Slot { slot: 1, len: 99 },
            outputs: &[0, 1, 2],
            down: Down::Data {
                conn: ConnId(9),
                data: b"abc",
            },
        }
        .emit_frame(&mut out)
        .unwrap();
        for cut in FRAME_HEADER_LEN..n - 1 {
            assert!(Message::parse(&out[FRAME_HEADER_LEN..cut]).is_err());
        }
        // A downstream record must name a connection, and data must not be empty.
        let (zero, one) = (ConnId(0), ConnId(1));
        assert!(Down::Data {
            conn: zero,
            data: b"x"
        }
        .check()
        .is_err());
        assert!(Down::Data {
            conn: one,
            data: b""
        }
        .check()
        .is_err());
        assert!(Down::Close { conn: zero }.check().is_err());
        assert!(Down::Close { conn: one }.check().is_ok());
    }
}
