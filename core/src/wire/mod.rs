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
//! Record   = Conn# (u32 BE, > 0) | Kind (u8: Open 1, Data 2, Close 3, Accuse 4)
//!            | Len (u16 BE) | payload
//! ```
//!
//! An all-zero cell means nothing was sent (and the slot is released). A reservation
//! exchange's cell is a bitmap with one bit per pseudonym slot ([`crate::bits`]). What the
//! relay decoded is reported back to every node as [`Output`]s, so everyone can run the same
//! schedule ([`crate::schedule`]).
//!
//! Nothing in this module panics on any input: every parser returns a [`WireError`].
//!
//! Files: `frame.rs` (frame boundaries), `message.rs` (message bodies), `prefix.rs` (frame
//! prefixes for fields written in place), `fields.rs` (the typed fields messages carry),
//! `cell.rs` (cell plaintexts), `outputs.rs` (exchange outputs). Everything public is
//! re-exported here.
//!
//! Owns the bytes on the wire and their checks; it must not hold state or know what a role
//! does with a message.

mod cell;
mod fields;
mod frame;
mod message;
mod outputs;
mod prefix;
mod slot;

pub(crate) use cell::{read_record, read_record_header, write_header, write_record_header};
pub use cell::{
    Accusation, CellView, CellWriter, Record, RecordKind, Records, ACCUSE_LEN, ACCUSE_PROOF_LEN,
    GRANT_LEN,
};
pub use fields::{
    resume_block, ConnId, Down, GoodbyeReason, Head, IntervalRecord, Kind, NodeRole, Params,
    Resume, REPLAY_FRAME_OVERHEAD, REPLAY_OVERHEAD, RESUME_BLOCK_LEN,
};
pub use frame::{frame_body_len, split_frame, FrameReader, FrameStatus};
pub use message::{
    goodbye_reason, ClientRequest, Hello, IntervalStart, Message, TrusteeRequest,
    BLAME_ROUND_VARIANTS,
};
pub use outputs::{
    disrupted_digest, emit_disrupted_output, emit_next_output, emit_requests_output,
    max_outputs_len, Output, OutputsView, Requests, DISRUPTED_DIGEST_LEN, DISRUPTED_OUTPUT_LEN,
};
pub use prefix::{cell_frame_len, Prefix};
#[cfg(feature = "blame-round")]
pub use prefix::{reveal_frame, RevealFrame};
pub use slot::{
    body, body_mut, cell_len_for, gather, gather_clean, lay_out, open, scatter, scatter_clean,
    seal, sealed_len, sprung, trap_secret, traps_in, CellTraps, Opened, SlotContext, SlotKey,
    Sprung, TrapKey, AAD_LEN, MIN_OWNED_CELL, MIN_SEALED_CELL, SLOT_NONCE_LEN, SLOT_OVERHEAD,
    TAG_LEN, TRAP_BLOCK,
};

/// Protocol version carried in [`Message::Hello`] (4: XChaCha12 pads).
pub const PROTOCOL_VERSION: u16 = 4;

/// Bytes of the frame length prefix.
pub const FRAME_HEADER_LEN: usize = 4;

/// Largest frame body accepted from any peer (and what hosted nodes declare they accept).
pub const MAX_FRAME_BODY: usize = 96 * 1024;

/// Smallest frame limit a node may declare in its Hello.
pub const MIN_FRAME_LIMIT: usize = 1024;

/// Bytes of one `Members` entry: a member's link nonce, its presence proof for the
/// trustee, and its resume block.
pub const MEMBER_ENTRY_LEN: usize = crate::NONCE_LEN + crate::MAC_LEN + RESUME_BLOCK_LEN;

/// Most previous intervals an [`Message::IntervalStart`] reports.
pub const MAX_HISTORY: usize = 8;

/// Bytes of a record header in a cell: `Conn#(4) | Kind(1) | Len(2)`.
pub const RECORD_HEADER_LEN: usize = 7;

/// Bytes of a cell's `Next` field.
pub const NEXT_LEN: usize = 2;

/// Largest payload one record's `Len` can express.
pub const MAX_PAYLOAD: usize = u16::MAX as usize;

/// Errors from parsing or emitting wire data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum WireError {
    /// The output buffer cannot hold the encoding.
    BufferTooSmall,
    /// A frame announced a length of zero or more than the limit.
    BadFrameLength(u32),
    /// A frame (header included, this many bytes) longer than the reader's buffer.
    FrameTooLarge(usize),
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
            WireError::FrameTooLarge(n) => write!(f, "frame of {n} bytes exceeds the buffer"),
            WireError::Malformed => f.write_str("malformed message"),
            WireError::TrailingBytes => f.write_str("trailing bytes after message"),
            WireError::BadCell => f.write_str("cell records malformed"),
            WireError::BadOutputs => f.write_str("exchange outputs malformed"),
        }
    }
}

impl core::error::Error for WireError {}
