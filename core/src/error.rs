//! The errors of the roles, one type per kind of operation, shared by the client, the
//! trustee and the relay.
//!
//! - [`ConfigError`]: a role refuses to be made with these parameters or this storage.
//! - [`PeerError`]: a frame from the other end of a link broke the protocol, and the link
//!   ends. The relay gets it from a client's or trustee's frame, a node from the relay's.
//!   What was wrong is a nested kind: [`HelloError`] (a node's first frame),
//!   [`IntervalError`] (an interval's set-up), [`RequestError`] (a relay's exchange
//!   request) or [`CellError`] (a node's cell).
//! - [`OpenError`]: a client cannot open another connection.
//!
//! Every enum is `#[non_exhaustive]`, so new causes can be told apart later without breaking
//! callers. Bytes that do not parse are a [`WireError`], carried in [`PeerError::Wire`].
//!
//! This module owns the names and texts of errors; it must not decide when one happens
//! (the roles do).

use core::fmt;

use crate::crypto::KeyError;
use crate::wire::{GoodbyeReason, WireError};

/// A role's parameters or storage are unusable; nothing was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// A cell length is outside the protocol limits, or the longest is below the base.
    CellLength,
    /// Client, trustee or slot counts out of range, or this node's index or slot beyond
    /// them.
    Counts,
    /// The window is zero or above [`crate::MAX_WINDOW`].
    Window,
    /// The downstream length is zero or above [`crate::MAX_DOWNSTREAM`].
    DownstreamLength,
    /// Schedule parameters out of range (`period` ≥ 2, `admit` and `capacity` ≥ 1).
    Schedule,
    /// The frame limit is below [`crate::wire::MIN_FRAME_LIMIT`], above
    /// [`crate::wire::MAX_FRAME_BODY`], or too small for the base cell.
    FrameLimit,
    /// The named region of the caller's storage is smaller than the role needs.
    StorageTooSmall(&'static str),
    /// Key agreement with a peer failed.
    Key(KeyError),
    /// The relay's downstream log is too small to hold the group's log window.
    LogWindow,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::CellLength => write!(
                f,
                "cell length out of range (base {} ..= {} bytes, the smallest being a sealed \
                 cell with one byte of data; the longest not below the base)",
                crate::MIN_CELL_LENGTH,
                crate::MAX_CELL_LENGTH
            ),
            ConfigError::Counts => f.write_str("client, trustee or slot count out of range"),
            ConfigError::Window => f.write_str("window out of range (1 ..= 64)"),
            ConfigError::DownstreamLength => {
                f.write_str("downstream length out of range (1 ..= 65535)")
            }
            ConfigError::Schedule => f.write_str("schedule parameters out of range"),
            ConfigError::FrameLimit => f.write_str("frame limit out of range"),
            ConfigError::StorageTooSmall(region) => {
                write!(f, "storage too small: `{region}`")
            }
            ConfigError::Key(e) => write!(f, "key agreement: {e}"),
            ConfigError::LogWindow => {
                f.write_str("the downstream log is too small for the group's log window")
            }
        }
    }
}

impl core::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            ConfigError::Key(e) => Some(e),
            _ => None,
        }
    }
}

/// A frame from the other end of a link broke the protocol; the link ends.
///
/// At the relay it names what a client or trustee did: the relay says goodbye with
/// [`GoodbyeReason::ProtocolError`] (or, for a refused `Hello`, the reason that names the
/// refusal). At a client or trustee it names what the relay did: the node drops the link
/// and dials again, unless the relay's goodbye says to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PeerError {
    /// The frame does not parse.
    Wire(WireError),
    /// A message this end never receives, or one outside its time.
    Unexpected,
    /// The relay said goodbye.
    Goodbye(GoodbyeReason),
    /// A node's first frame was refused.
    Hello(HelloError),
    /// Something about an interval's set-up does not check.
    Interval(IntervalError),
    /// A relay's exchange request departs from the schedule or the sequence.
    Request(RequestError),
    /// A node's cell does not fit the exchange.
    Cell(CellError),
    /// The output buffer cannot hold the cell.
    BufferTooSmall,
}

impl PeerError {
    /// The relay's reason, if this is its goodbye.
    pub const fn goodbye(&self) -> Option<GoodbyeReason> {
        match self {
            PeerError::Goodbye(r) => Some(*r),
            _ => None,
        }
    }

    /// The goodbye the relay sends a node whose frame caused this.
    pub(crate) const fn reply(&self) -> GoodbyeReason {
        match self {
            PeerError::Hello(HelloError::Version(_)) => GoodbyeReason::Version,
            PeerError::Hello(HelloError::WrongGroup) => GoodbyeReason::WrongGroup,
            PeerError::Hello(HelloError::WrongIdentity) => GoodbyeReason::WrongIdentity,
            PeerError::Hello(HelloError::FrameLimit(_)) => GoodbyeReason::FrameLimit,
            PeerError::Hello(HelloError::AlreadyConnected) => GoodbyeReason::AlreadyConnected,
            PeerError::Hello(HelloError::BackedOff(millis)) => {
                GoodbyeReason::BackOff { millis: *millis }
            }
            PeerError::Hello(HelloError::Excluded) => GoodbyeReason::Excluded,
            _ => GoodbyeReason::ProtocolError,
        }
    }
}

impl fmt::Display for PeerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerError::Wire(e) => write!(f, "bad frame: {e}"),
            PeerError::Unexpected => f.write_str("unexpected message"),
            PeerError::Goodbye(r) => write!(f, "relay said goodbye: {r}"),
            PeerError::Hello(e) => write!(f, "{e}"),
            PeerError::Interval(e) => write!(f, "{e}"),
            PeerError::Request(e) => write!(f, "{e}"),
            PeerError::Cell(e) => write!(f, "{e}"),
            PeerError::BufferTooSmall => f.write_str("output buffer too small for the cell"),
        }
    }
}

impl core::error::Error for PeerError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            PeerError::Wire(e) => Some(e),
            PeerError::Hello(e) => Some(e),
            PeerError::Interval(e) => Some(e),
            PeerError::Request(e) => Some(e),
            PeerError::Cell(e) => Some(e),
            _ => None,
        }
    }
}

impl From<WireError> for PeerError {
    fn from(e: WireError) -> Self {
        match e {
            WireError::BufferTooSmall => PeerError::BufferTooSmall,
            e => PeerError::Wire(e),
        }
    }
}

impl From<HelloError> for PeerError {
    fn from(e: HelloError) -> Self {
        PeerError::Hello(e)
    }
}

impl From<IntervalError> for PeerError {
    fn from(e: IntervalError) -> Self {
        PeerError::Interval(e)
    }
}

impl From<RequestError> for PeerError {
    fn from(e: RequestError) -> Self {
        PeerError::Request(e)
    }
}

impl From<CellError> for PeerError {
    fn from(e: CellError) -> Self {
        PeerError::Cell(e)
    }
}

/// Why the relay refused a node's `Hello`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HelloError {
    /// The first frame is not a `Hello`.
    NotHello,
    /// Another protocol version.
    Version(u16),
    /// Another group or session.
    WrongGroup,
    /// The `Hello` names another node than the one the link authenticated as.
    WrongIdentity,
    /// The node's frame limit is too small for this group (or above the protocol's).
    FrameLimit(u32),
    /// A client's presence proofs are missing or a trustee sent some.
    Proofs,
    /// Another process of this node is connected and a probe is already under way.
    AlreadyConnected,
    /// The client is backed off for this many more milliseconds.
    BackedOff(u32),
    /// The client is on the relay's refusal list.
    Excluded,
}

impl fmt::Display for HelloError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HelloError::NotHello => f.write_str("first frame is not a hello"),
            HelloError::Version(v) => write!(
                f,
                "protocol version {v} not supported (this relay speaks {})",
                crate::wire::PROTOCOL_VERSION
            ),
            HelloError::WrongGroup => f.write_str("hello for another group or session"),
            HelloError::WrongIdentity => {
                f.write_str("hello names another node than the link's key")
            }
            HelloError::FrameLimit(n) => write!(f, "frame limit {n} too small for this group"),
            HelloError::Proofs => f.write_str("presence proofs missing or malformed"),
            HelloError::AlreadyConnected => {
                f.write_str("another process of this node is already connected")
            }
            HelloError::BackedOff(ms) => write!(f, "backed off for {ms} ms more"),
            HelloError::Excluded => f.write_str("on the relay's refusal list"),
        }
    }
}

impl core::error::Error for HelloError {}

/// What does not check in an interval's set-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum IntervalError {
    /// An interval announced again, or older than one already run on this link.
    Stale(u32),
    /// The interval parameters are unusable (nonces, window, lengths, schedule).
    Parameters,
    /// The online set is empty, names unknown clients, or is not the one opened.
    OnlineSet,
    /// This client is not in the interval's online set.
    NotMember,
    /// The online set is smaller than this node's minimum anonymity set.
    TooFewClients {
        /// Clients in the interval.
        online: usize,
        /// The node's minimum.
        min: u16,
    },
    /// A per-member list (`Members`, `Acks`) out of order, for another interval or too
    /// long.
    Members,
    /// A trustee's confirmations out of order, or before it had every acknowledgement.
    Confirms,
    /// A client's acknowledgement from a non-member, repeated, or of the wrong length.
    Ack,
    /// A trustee's confirmation of the interval's view does not check: the relay showed
    /// this client something else than the trustees saw.
    Unconfirmed {
        /// The trustee.
        trustee: u16,
    },
    /// The relay's downstream history contradicts the records this client holds.
    Equivocation,
    /// The start's bitmap of lost members says of this client what its own state does
    /// not: it lost its connections and the start hides it, or the other way round.
    Lost,
    /// The interval's window needs an owner to keep more of its sent cells than this
    /// client's storage holds (`crate::blame::horizon`): in a blame round it could not
    /// give back a cell it sent, and would be convicted of refusing.
    TooFewKept {
        /// The interval's window.
        window: u16,
        /// Owned cells this client keeps.
        kept: usize,
        /// Owned cells the window needs kept.
        needs: usize,
    },
}

impl fmt::Display for IntervalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IntervalError::Stale(i) => write!(f, "interval {i} is not new on this link"),
            IntervalError::Parameters => f.write_str("unusable interval parameters"),
            IntervalError::OnlineSet => f.write_str("bad online set"),
            IntervalError::NotMember => f.write_str("this client is not in the interval"),
            IntervalError::TooFewClients { online, min } => write!(
                f,
                "interval with {online} client{} is below this node's minimum of {min}",
                if *online == 1 { "" } else { "s" }
            ),
            IntervalError::Members => f.write_str("interval members out of order"),
            IntervalError::Confirms => f.write_str("confirmations out of order"),
            IntervalError::Ack => f.write_str("acknowledgement not expected or malformed"),
            IntervalError::Unconfirmed { trustee } => write!(
                f,
                "trustee {trustee} did not confirm the interval the relay showed us"
            ),
            IntervalError::Equivocation => {
                f.write_str("the relay's downstream history contradicts ours")
            }
            IntervalError::Lost => {
                f.write_str("the interval misstates whether this client lost its connections")
            }
            IntervalError::TooFewKept {
                window,
                kept,
                needs,
            } => write!(
                f,
                "a window of {window} needs the last {needs} sent cells kept for blame rounds, \
                 this client keeps {kept} (window {} at most)",
                crate::blame::largest_window(*kept)
            ),
        }
    }
}

impl core::error::Error for IntervalError {}

/// How a relay's exchange request departs from the sequence or the schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RequestError {
    /// A request for an interval other than the current one.
    WrongInterval {
        /// The current interval.
        current: u32,
        /// The interval in the request.
        got: u32,
    },
    /// A request out of sequence.
    OutOfOrder {
        /// The exchange expected next.
        expected: u64,
        /// The exchange requested.
        got: u64,
    },
    /// The request's kind is not what the schedule gives (or its outputs do not fit).
    WrongKind {
        /// The exchange.
        exchange: u64,
    },
    /// More requests outstanding, or exchanges without their outputs, than the window
    /// allows.
    WindowExceeded,
    /// A `Disrupted` output without the matching `Disrupted` frame before it.
    Disrupted {
        /// The exchange reported disrupted.
        exchange: u64,
    },
}

impl RequestError {
    /// Checks that a request for `(interval, exchange)` is the next one of a role in
    /// `current` interval expecting exchange `expected` next.
    pub(crate) fn check_next(
        current: u32,
        expected: u64,
        interval: u32,
        exchange: u64,
    ) -> Result<(), RequestError> {
        if interval != current {
            return Err(RequestError::WrongInterval {
                current,
                got: interval,
            });
        }
        if exchange != expected {
            return Err(RequestError::OutOfOrder {
                expected,
                got: exchange,
            });
        }
        Ok(())
    }
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestError::WrongInterval { current, got } => {
                write!(f, "request for interval {got}, current is {current}")
            }
            RequestError::OutOfOrder { expected, got } => {
                write!(f, "request for exchange {got}, expected {expected}")
            }
            RequestError::WrongKind { exchange } => {
                write!(f, "exchange {exchange} is not what the schedule gives")
            }
            RequestError::WindowExceeded => f.write_str("relay exceeded the request window"),
            RequestError::Disrupted { exchange } => {
                write!(f, "exchange {exchange} reported disrupted without its cell")
            }
        }
    }
}

impl core::error::Error for RequestError {}

/// Why the relay refused a node's cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CellError {
    /// A cell for an interval that is not running and not past.
    UnknownInterval(u32),
    /// A cell for an exchange this node was not asked for.
    NotRequested(u64),
    /// A second cell for the same exchange, or one for an exchange already decoded.
    Duplicate(u64),
    /// A cell of the wrong length.
    Length(usize),
    /// A cell from a client that is not part of the current interval.
    NotMember,
}

impl fmt::Display for CellError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CellError::UnknownInterval(i) => write!(f, "cell for unknown interval {i}"),
            CellError::NotRequested(e) => {
                write!(f, "cell for exchange {e}, which was not requested")
            }
            CellError::Duplicate(e) => write!(f, "second cell for exchange {e}"),
            CellError::Length(n) => write!(f, "cell of {n} bytes, wrong length"),
            CellError::NotMember => f.write_str("client is not in the current interval"),
        }
    }
}

impl core::error::Error for CellError {}

/// A client cannot open another connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum OpenError {
    /// [`crate::client::MAX_CONNECTIONS`] are already open.
    TooManyConnections,
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("too many open connections")
    }
}

impl core::error::Error for OpenError {}
