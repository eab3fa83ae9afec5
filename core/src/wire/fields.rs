//! The typed fields that messages carry: connection numbers, node roles, interval records,
//! the downstream head, interval parameters, exchange kinds, downstream records and goodbye
//! reasons.
//!
//! Owns the meaning of each field and its postcard shape; it must not know about frames or
//! about any role's state.

use serde::{Deserialize, Serialize};

use crate::bits::bitmap_len;

use super::WireError;

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
    /// Which of the 64 exchanges below `done` decoded disrupted: bit `k` is exchange
    /// `done − 1 − k` (every member was sent their `Disrupted` frames; one away missed them).
    pub disrupted: u64,
}

impl IntervalRecord {
    /// Whether `exchange` of this interval decoded to its owner's cell: below `done` and
    /// not disrupted (an exchange more than 64 below `done` counts as decoded).
    pub fn decoded(&self, exchange: u64) -> bool {
        let Some(k) = self
            .done
            .checked_sub(exchange)
            .and_then(|d| d.checked_sub(1))
        else {
            return false;
        };
        k >= 64 || self.disrupted & (1 << k) == 0
    }
}

/// What a client already holds of the relay's downstream log, sent when it reconnects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resume {
    /// The relay instance whose log the client followed.
    pub epoch: [u8; 16],
    /// The last record the client handed to its application.
    pub seq: u64,
    /// Data bytes of every record up to `seq`.
    pub bytes: u64,
    /// The last interval in which the client answered an exchange, if any: cells it sent
    /// there can be settled only while that interval is in the history.
    pub interval: Option<u32>,
    /// The client lost its connections and not every client of its buddy group has been
    /// shown so yet: the relay must mark it lost again.
    pub lost: bool,
}

/// Bytes a client counts per replayed record on top of its data, against its replay
/// capacity (`Hello::capacity`).
pub const REPLAY_OVERHEAD: usize = 9;

/// Bytes of a client's resume block: what its presence proof covers besides its link
/// nonce, and what the relay passes each trustee with it in `Members`.
pub const RESUME_BLOCK_LEN: usize = 41;

/// A client's replay capacity and resume point in the fixed form its presence proof covers:
///
/// ```text
/// capacity (u32 BE) ‖ flags (u8: 1 resume, 2 interval, 4 lost) ‖ epoch (16)
///   ‖ seq (u64 BE) ‖ bytes (u64 BE) ‖ interval (u32 BE)        absent fields zero
/// ```
pub fn resume_block(capacity: u32, resume: Option<&Resume>) -> [u8; RESUME_BLOCK_LEN] {
    let mut b = [0u8; RESUME_BLOCK_LEN];
    let (head, rest) = b.split_at_mut(4);
    head.copy_from_slice(&capacity.to_be_bytes());
    let Some(r) = resume else {
        return b;
    };
    let (flags, rest) = rest.split_at_mut(1);
    let (epoch, rest) = rest.split_at_mut(16);
    let (seq, rest) = rest.split_at_mut(8);
    let (bytes, interval) = rest.split_at_mut(8);
    let mut f = 1u8;
    if let Some(i) = r.interval {
        f |= 2;
        interval.copy_from_slice(&i.to_be_bytes());
    }
    if r.lost {
        f |= 4;
    }
    flags.copy_from_slice(&[f]);
    epoch.copy_from_slice(&r.epoch);
    seq.copy_from_slice(&r.seq.to_be_bytes());
    bytes.copy_from_slice(&r.bytes.to_be_bytes());
    b
}

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
    /// The exit grants the owner `bytes` more upstream credit on `conn`: its destination
    /// took that much (`crate::credit`).
    Grant {
        /// The connection.
        conn: ConnId,
        /// Credit added.
        bytes: u32,
    },
}

impl Down<'_> {
    /// Whether this is a record (data, close or grant) that gets a sequence number.
    pub const fn is_record(&self) -> bool {
        !matches!(self, Down::None)
    }

    /// Checks the record's shape: a connection number and, for data, bytes.
    pub fn check(&self) -> Result<(), WireError> {
        match *self {
            Down::None => Ok(()),
            Down::Data { conn, data } if conn.0 != 0 && !data.is_empty() => Ok(()),
            Down::Close { conn } | Down::Grant { conn, .. } if conn.0 != 0 => Ok(()),
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
    /// The node stalled the group and may not rejoin for `millis` more milliseconds.
    BackOff {
        /// The rest of its back-off.
        millis: u32,
    },
    /// The node is on the relay's refusal list until an operator lets it back in.
    Excluded,
    /// The group switches to a new version of its description: the epoch ends here, and
    /// the node fetches the new version from the relay (docs/protocol.md, "Switches").
    Switch,
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
            GoodbyeReason::Switch => "the group switches to a new version at the end of this epoch",
            GoodbyeReason::Refused => {
                "a trustee refused this node's proof of presence or acknowledgement"
            }
            GoodbyeReason::BackOff { millis } => {
                return write!(
                    f,
                    "this node stalled the group and is backed off for {}.{:03} s",
                    millis / 1000,
                    millis % 1000
                )
            }
            GoodbyeReason::Excluded => {
                "this node is excluded: it is on the relay's refusal list until an operator lets it back in"
            }
        })
    }
}
