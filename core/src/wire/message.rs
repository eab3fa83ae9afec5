//! Protocol messages: the body of one frame, encoded with postcard.
//!
//! Owns [`Message`] and its parse and emit. It must not know what a role does with a
//! message; frame boundaries are `frame.rs`'s, and cell plaintexts
//! `cell.rs`'s.

use serde::{Deserialize, Serialize};

use super::{
    Down, GoodbyeReason, Head, IntervalRecord, Kind, NodeRole, Params, Resume, WireError,
    FRAME_HEADER_LEN, MAX_FRAME_BODY, MAX_HISTORY,
};
use crate::NONCE_LEN;

/// A protocol message (the body of one frame).
///
/// Variable-length fields borrow the frame body, so a parsed message is small.
// `IntervalStart` holds its history inline (8 records, no allocator in the core): a
// message is parsed once per frame on the stack, where the larger variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message<'a> {
    /// Node → relay, the first frame on a link.
    Hello(#[serde(borrow)] Hello<'a>),
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
    /// Relay → one trustee: the next online clients' link nonces, presence proofs and
    /// resume blocks.
    Members {
        /// The interval.
        interval: u32,
        /// Position of the first entry among the interval's members (increasing client order).
        first: u32,
        /// `NONCE_LEN + MAC_LEN + RESUME_BLOCK_LEN` bytes per member: its link nonce, its
        /// proof for this trustee, then its resume block
        /// ([`resume_block`](super::resume_block)).
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
    IntervalStart(#[serde(borrow)] IntervalStart<'a>),
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
    TrusteeRequest(#[serde(borrow)] TrusteeRequest<'a>),
    /// Relay → online clients: the next exchange and one downstream record.
    ClientRequest(#[serde(borrow)] ClientRequest<'a>),
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
    /// Relay → every member, before the request that reports the exchange `Disrupted`:
    /// the exchange's decoded cell (a member refuses a `Disrupted` output without it).
    Disrupted {
        /// The interval.
        interval: u32,
        /// The disrupted exchange.
        exchange: u64,
        /// The cell as the relay decoded it (the XOR of every cell of the exchange).
        #[serde(borrow)]
        cell: &'a [u8],
    },
    /// Relay → every trustee and member: a blame round about `exchange` of `interval`
    /// named a node, which is excluded for the rest of the epoch.
    Blamed {
        /// The interval of the accused exchange.
        interval: u32,
        /// The accused exchange.
        exchange: u64,
        /// Who: 0 a client, 1 a trustee, 2 the relay (`blame::Culprit`).
        role: u8,
        /// The client's or trustee's index (0 for the relay).
        index: u16,
        /// Why (`blame::BlameKind`: 1 disrupted, 2 lied about a pad bit, 3 forged
        /// decoding, 4 refused blame).
        kind: u8,
    },
    /// Relay → every member of the interval and every trustee: a blame round about `bit`
    /// of `exchange` of `interval`, on the slot owner's accusation or a trap the relay
    /// found sprung (each member checks the grounds, `blame::Grounds::check`, before
    /// revealing anything).
    #[cfg(feature = "blame-round")]
    BlameRequest {
        /// The interval of the accused exchange.
        interval: u32,
        /// The accused exchange.
        exchange: u64,
        /// The accused bit.
        bit: u32,
        /// The exchange's slot (for a reservation exchange, the accused bit's).
        slot: u16,
        /// The grounds (`blame::Grounds`): tag 0 and the `Accuse` record's payload (76
        /// bytes), or tag 1 and trap grounds (128 bytes).
        #[serde(borrow)]
        grounds: &'a [u8],
    },
    /// Member or trustee → relay: its part of the accused exchange (`blame::Statement`).
    #[cfg(feature = "blame-round")]
    BlameReveal {
        /// The interval of the accused exchange.
        interval: u32,
        /// The accused exchange.
        exchange: u64,
        /// The accused bit.
        bit: u32,
        /// Its pad bits at `bit` (a client: one per trustee; a trustee: one per member), a
        /// bitmap.
        #[serde(borrow)]
        pad_bits: &'a [u8],
        /// Its identity key's signature over the statement (64 bytes).
        #[serde(borrow)]
        signature: &'a [u8],
        /// Its whole cell of the exchange (the relay checks it against its fingerprint).
        /// Last, so a node computes it where the frame is sent (`wire::Prefix`).
        #[serde(borrow)]
        cell: &'a [u8],
    },
    /// Relay → one side of a (client, trustee) pair whose pad bits differ: prove the
    /// pair's Diffie–Hellman secret. It carries the other side's signed reveal of the
    /// round (`blame::Shown`): a member proves its secret only if that reveal checks
    /// under the other side's identity key and claims another pad bit for the pair than
    /// the member revealed.
    #[cfg(feature = "blame-round")]
    BlameDhRequest {
        /// The interval of the accused exchange.
        interval: u32,
        /// The accused exchange.
        exchange: u64,
        /// The other side: a trustee's index to a client, a client's to a trustee.
        peer: u16,
        /// The accused bit.
        bit: u32,
        /// The other side's reveal but its pad bits (`blame::Shown`): a client's link nonce
        /// (16 bytes) ‖ the decoded cell's hash it signed (32) ‖ SHA-256 of its cell (32) ‖
        /// its cell bit (1: 0 or 1) ‖ its signature (64); a trustee's digest of the members'
        /// link nonces (32) ‖ SHA-256 of its cell (32) ‖ its cell bit (1) ‖ its signature
        /// (64).
        #[serde(borrow)]
        reveal: &'a [u8],
        /// The other side's pad bits at `bit`, a bitmap (a client: one per trustee; a
        /// trustee: one per member).
        #[serde(borrow)]
        pad_bits: &'a [u8],
    },
    /// Client or trustee → relay: the pair's Diffie–Hellman secret and its DLEQ proof
    /// (`dleq::prove_dh`, context `blame::dh_context`).
    #[cfg(feature = "blame-round")]
    BlameDhProof {
        /// The interval of the accused exchange.
        interval: u32,
        /// The accused exchange.
        exchange: u64,
        /// The other side, as in the request.
        peer: u16,
        /// The secret point (32 bytes).
        #[serde(borrow)]
        secret: &'a [u8],
        /// The proof (64 bytes).
        #[serde(borrow)]
        proof: &'a [u8],
    },
}

/// The first frame of a node's link (node → relay).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello<'a> {
    /// Must equal [`PROTOCOL_VERSION`](super::PROTOCOL_VERSION).
    pub version: u16,
    /// The group the node was configured for.
    pub group_id: [u8; 16],
    /// The session the node was configured for.
    pub session_id: [u8; 16],
    /// Client or trustee.
    pub role: NodeRole,
    /// Index of the node in the group's client or trustee list.
    pub index: u16,
    /// Fresh randomness for this link; a client mixes it into all its pads on the link.
    pub nonce: [u8; NONCE_LEN],
    /// Largest frame body the node accepts.
    pub max_frame: u32,
    /// Bytes of downstream records a client can take back after a reconnect (each counted
    /// with [`REPLAY_OVERHEAD`](super::REPLAY_OVERHEAD)); 0 for trustees.
    pub capacity: u32,
    /// The downstream records a client already has (none for trustees and new clients).
    pub resume: Option<Resume>,
    /// A client's presence proof for each trustee, `MAC_LEN` bytes each in trustee
    /// order, over its link nonce, `capacity` and `resume`; empty for trustees.
    #[serde(borrow)]
    pub proofs: &'a [u8],
    /// Whether the node answers blame rounds' requests (built with core feature
    /// `blame-round`). The relay waits for no reveal from a trustee that says `false`;
    /// a member must answer either way.
    pub blame: bool,
}

/// An interval's view, byte-identical to trustees and members (relay → all).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntervalStart<'a> {
    /// The interval number.
    pub interval: u32,
    /// The relay instance (downstream sequence numbers are per instance).
    pub epoch: [u8; 16],
    /// Bitmap of online clients.
    #[serde(borrow)]
    pub online: &'a [u8],
    /// Bitmap of the members that lost their connections (a subset of `online`), or empty
    /// when none did: every member of a lost member's buddy group ends its connections.
    #[serde(borrow)]
    pub lost: &'a [u8],
    /// Each trustee's nonce for this interval, `NONCE_LEN` bytes each in trustee order.
    #[serde(borrow)]
    pub nonces: &'a [u8],
    /// The relay's trap point of this interval, `R_I = r_I·G` (Ristretto255): owners lay
    /// their cells out around trap bytes derived from it (`wire::TrapKey`), and every
    /// member checks a trap's grounds against it.
    pub trap: [u8; 32],
    /// Most exchanges in flight ahead of the last decoded one.
    pub window: u16,
    /// Schedule and length parameters.
    pub params: Params,
    /// How far recent earlier intervals got, so owners can settle unconfirmed cells.
    pub history: heapless::Vec<IntervalRecord, MAX_HISTORY>,
    /// The downstream log so far.
    pub head: Head,
    /// Oldest record the relay can still replay.
    pub oldest: u64,
    /// Data bytes of the largest record the relay can replay (a client whose frames
    /// are smaller cannot take replays).
    pub largest: u32,
}

/// A request for a trustee's cell of one exchange (relay → trustees).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrusteeRequest<'a> {
    /// Interval of the exchange.
    pub interval: u32,
    /// Exchange number within the interval.
    pub exchange: u64,
    /// What the exchange is for.
    pub kind: Kind,
    /// Outputs of exchanges decoded since the previous request ([`OutputsView`](super::OutputsView)).
    #[serde(borrow)]
    pub outputs: &'a [u8],
    /// The downstream log's head after this exchange's record.
    pub head: Head,
}

/// A request for a client's cell of one exchange, with one downstream record (relay → members).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientRequest<'a> {
    /// Interval of the exchange.
    pub interval: u32,
    /// Exchange number within the interval.
    pub exchange: u64,
    /// What the exchange is for.
    pub kind: Kind,
    /// Outputs of exchanges decoded since the previous request ([`OutputsView`](super::OutputsView)).
    #[serde(borrow)]
    pub outputs: &'a [u8],
    /// The next downstream record, if any.
    #[serde(borrow)]
    pub down: Down<'a>,
}

/// The reason in a frame body that is a [`Message::Goodbye`] (to look for one among the
/// frames a relay sent before closing a link that can no longer be written).
pub fn goodbye_reason(body: &[u8]) -> Option<GoodbyeReason> {
    match Message::parse(body) {
        Ok(Message::Goodbye { reason }) => Some(reason),
        _ => None,
    }
}

/// The first byte (postcard's variant index) of the blame round's frames
/// (`BlameRequest`, `BlameReveal`, `BlameDhRequest`, `BlameDhProof`), which a node built
/// without the `blame-round` feature cannot parse; pinned by a test.
pub const BLAME_ROUND_VARIANTS: core::ops::RangeInclusive<u8> = 19..=22;

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

#[cfg(test)]
mod tests {
    // Test code only: each unwrap() is an assertion on a fixture, never on network input.
    use super::*;
    use crate::wire::{ConnId, PROTOCOL_VERSION};

    #[test]
    fn frame_vectors() {
        let mut out = [0u8; 64];
        let n = Message::TrusteeRequest(TrusteeRequest {
            interval: 1,
            exchange: 300,
            kind: Kind::Slot { slot: 2, len: 256 },
            outputs: &[0, 0, 0],
            head: Head {
                seq: 3,
                bytes: 300,
                hash: [0xEE; 32],
            },
        })
        .emit_frame(&mut out)
        .unwrap();
        // Variant 11, interval 1, exchange 300 = AC 02, Kind::Slot = 1, slot 2, len 256 = 80 02,
        // outputs (3 bytes), head (seq 3, bytes 300 = AC 02, hash of 32 bytes).
        assert_eq!(
            &out[..12],
            &[0, 0, 0, 47, 11, 1, 0xAC, 0x02, 1, 2, 0x80, 0x02]
        );
        assert_eq!(&out[12..19], &[3, 0, 0, 0, 3, 0xAC, 0x02]);
        assert_eq!(n, 4 + 47);

        let n = Message::ClientRequest(ClientRequest {
            interval: 2,
            exchange: 5,
            kind: Kind::Reserve,
            outputs: &[],
            down: Down::Data {
                conn: ConnId(0x0002_0001),
                data: b"ok",
            },
        })
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
        entries.extend(rep(0xCA, 41));
        entries.extend(rep(0xCC, 16));
        entries.extend(rep(0xDC, 16));
        entries.extend(rep(0xEC, 41));
        let mut nonces = rep(0x55, 16);
        nonces.extend(rep(0x56, 16));
        let mut macs = rep(0x71, 16);
        macs.extend(rep(0x72, 16));
        let mut history = heapless::Vec::new();
        history
            .push(IntervalRecord {
                interval: 6,
                done: 1000,
                disrupted: 5,
            })
            .unwrap();
        // Next(256) of an earlier slot exchange, then slot 5's request as a list.
        let outputs = [0x00, 0x01, 0x00, 0x02, 0x00, 0x01, 0x00, 0x05];
        let conn = ConnId(0x0003_0001);
        let slot = Kind::Slot { slot: 2, len: 256 };
        let cases: [(Message<'_>, std::vec::Vec<u8>); 29] = [
            (
                Message::Hello(Hello {
                    version: PROTOCOL_VERSION,
                    group_id: [1; 16],
                    session_id: [2; 16],
                    role: NodeRole::Client,
                    index: 3,
                    nonce: [0x66; 16],
                    max_frame: MAX_FRAME_BODY as u32,
                    capacity: 65536,
                    resume: Some(Resume {
                        epoch: [4; 16],
                        seq: 77,
                        bytes: 1000,
                        interval: Some(9),
                        lost: false,
                    }),
                    proofs: &proofs,
                    blame: true,
                }),
                cat(&[
                    &[0, 0, 0, 0x73, 0x00, 0x04],
                    &rep(1, 16),
                    &rep(2, 16),
                    &[0x00, 0x03],
                    &rep(0x66, 16),
                    &[0x80, 0x80, 0x06, 0x80, 0x80, 0x04, 0x01],
                    &rep(4, 16),
                    &[0x4D, 0xE8, 0x07, 0x01, 0x09, 0x00, 0x20],
                    &proofs,
                    &[0x01],
                ]),
            ),
            (
                Message::Hello(Hello {
                    version: PROTOCOL_VERSION,
                    group_id: [1; 16],
                    session_id: [2; 16],
                    role: NodeRole::Trustee,
                    index: 1,
                    nonce: [0; 16],
                    max_frame: MAX_FRAME_BODY as u32,
                    capacity: 0,
                    resume: None,
                    proofs: &[],
                    blame: false,
                }),
                cat(&[
                    &[0, 0, 0, 0x3B, 0x00, 0x04],
                    &rep(1, 16),
                    &rep(2, 16),
                    &[0x01, 0x01],
                    &rep(0, 16),
                    &[0x80, 0x80, 0x06, 0x00, 0x00, 0x00, 0x00],
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
                cat(&[&[0, 0, 0, 0x97, 0x05, 0x07, 0x00, 0x92, 0x01], &entries]),
            ),
            (
                Message::IntervalReady {
                    interval: 7,
                    nonce: [0x55; 16],
                },
                cat(&[&[0, 0, 0, 0x12, 0x06, 0x07], &rep(0x55, 16)]),
            ),
            (
                Message::IntervalStart(IntervalStart {
                    interval: 7,
                    epoch: [9; 16],
                    online: &[0x05],
                    lost: &[0x04],
                    nonces: &nonces,
                    trap: [0x77; 32],
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
                }),
                cat(&[
                    &[0, 0, 0, 0x8D, 0x07, 0x07],
                    &rep(9, 16),
                    &[0x01, 0x05, 0x01, 0x04, 0x20],
                    &nonces,
                    &rep(0x77, 32),
                    &[0x08],
                    &[0x80, 0x02, 0x80, 0x20, 0x80, 0x80, 0x01, 0x10, 0x40, 0x40],
                    &[0x01, 0x06, 0xE8, 0x07, 0x05],
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
                // Down::Grant = 3, conn, bytes 0x40000 (256 KiB) = 80 80 10.
                Message::Replay {
                    seq: 6,
                    down: Down::Grant {
                        conn,
                        bytes: 0x0004_0000,
                    },
                },
                std::vec![0, 0, 0, 9, 0x0A, 0x06, 0x03, 0x81, 0x80, 0x0C, 0x80, 0x80, 0x10,],
            ),
            (
                Message::TrusteeRequest(TrusteeRequest {
                    interval: 7,
                    exchange: 300,
                    kind: slot,
                    outputs: &outputs,
                    head: Head {
                        seq: 3,
                        bytes: 300,
                        hash: [0xEE; 32],
                    },
                }),
                cat(&[
                    &[
                        0, 0, 0, 0x34, 0x0B, 0x07, 0xAC, 0x02, 0x01, 0x02, 0x80, 0x02, 0x08,
                    ],
                    &outputs,
                    &[0x03, 0xAC, 0x02],
                    &rep(0xEE, 32),
                ]),
            ),
            (
                Message::TrusteeRequest(TrusteeRequest {
                    interval: 7,
                    exchange: 301,
                    kind: Kind::Reserve,
                    outputs: &[],
                    head: Head {
                        seq: 3,
                        bytes: 300,
                        hash: [0xEE; 32],
                    },
                }),
                cat(&[
                    &[0, 0, 0, 0x29, 0x0B, 0x07, 0xAD, 0x02, 0x00, 0x00],
                    &[0x03, 0xAC, 0x02],
                    &rep(0xEE, 32),
                ]),
            ),
            (
                Message::ClientRequest(ClientRequest {
                    interval: 7,
                    exchange: 300,
                    kind: slot,
                    outputs: &outputs,
                    down: Down::Data { conn, data: b"ok" },
                }),
                cat(&[
                    &[
                        0, 0, 0, 0x18, 0x0C, 0x07, 0xAC, 0x02, 0x01, 0x02, 0x80, 0x02, 0x08,
                    ],
                    &outputs,
                    &[0x01, 0x81, 0x80, 0x0C, 0x02, b'o', b'k'],
                ]),
            ),
            (
                Message::ClientRequest(ClientRequest {
                    interval: 7,
                    exchange: 301,
                    kind: Kind::Reserve,
                    outputs: &[],
                    down: Down::None,
                }),
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
            (
                Message::Goodbye {
                    reason: GoodbyeReason::BackOff { millis: 4000 },
                },
                std::vec![0, 0, 0, 4, 0x01, 0x0B, 0xA0, 0x1F],
            ),
            (
                Message::Goodbye {
                    reason: GoodbyeReason::Excluded,
                },
                std::vec![0, 0, 0, 2, 0x01, 0x0C],
            ),
            (
                Message::Goodbye {
                    reason: GoodbyeReason::Switch,
                },
                std::vec![0, 0, 0, 2, 0x01, 0x0D],
            ),
            (
                Message::Disrupted {
                    interval: 7,
                    exchange: 300,
                    cell: &[0xEE; 16],
                },
                cat(&[
                    &[0, 0, 0, 0x15, 0x11, 0x07, 0xAC, 0x02, 0x10],
                    &rep(0xEE, 16),
                ]),
            ),
            (
                Message::Blamed {
                    interval: 7,
                    exchange: 300,
                    role: 0,
                    index: 5,
                    kind: 1,
                },
                std::vec![0, 0, 0, 7, 0x12, 0x07, 0xAC, 0x02, 0x00, 0x05, 0x01],
            ),
        ];
        let mut out = [0u8; 256];
        for (msg, want) in &cases {
            let n = msg.emit_frame(&mut out).unwrap();
            assert_eq!(&out[..n], &want[..], "{msg:?}");
            assert_eq!(Message::parse(&want[FRAME_HEADER_LEN..]).unwrap(), *msg);
        }
    }

    #[cfg(feature = "blame-round")]
    #[test]
    fn blame_round_frame_vectors() {
        let cases: [(Message<'_>, std::vec::Vec<u8>); 4] = [
            (
                Message::BlameRequest {
                    interval: 7,
                    exchange: 300,
                    bit: 1234,
                    slot: 3,
                    grounds: &cat(&[&[0x01], &rep(0x5A, 128)]),
                },
                cat(&[
                    &[
                        0, 0, 0, 0x8A, 0x13, 0x07, 0xAC, 0x02, 0xD2, 0x09, 0x03, 0x81, 0x01, 0x01,
                    ],
                    &rep(0x5A, 128),
                ]),
            ),
            (
                Message::BlameReveal {
                    interval: 7,
                    exchange: 300,
                    bit: 1234,
                    cell: &[0xEE; 16],
                    pad_bits: &[0x05],
                    signature: &[0x77; 64],
                },
                cat(&[
                    &[
                        0, 0, 0, 0x5A, 0x14, 0x07, 0xAC, 0x02, 0xD2, 0x09, 0x01, 0x05, 0x40,
                    ],
                    &rep(0x77, 64),
                    &[0x10],
                    &rep(0xEE, 16),
                ]),
            ),
            (
                Message::BlameDhRequest {
                    interval: 7,
                    exchange: 300,
                    peer: 2,
                    bit: 1234,
                    reveal: &cat(&[
                        &rep(0x22, 16),
                        &rep(0x44, 32),
                        &rep(0x55, 32),
                        &[0x01],
                        &rep(0x77, 64),
                    ]),
                    pad_bits: &[0x02],
                },
                cat(&[
                    &[
                        0, 0, 0, 0x9C, 0x15, 0x07, 0xAC, 0x02, 0x02, 0xD2, 0x09, 0x91, 0x01,
                    ],
                    &rep(0x22, 16),
                    &rep(0x44, 32),
                    &rep(0x55, 32),
                    &[0x01],
                    &rep(0x77, 64),
                    &[0x01, 0x02],
                ]),
            ),
            (
                Message::BlameDhProof {
                    interval: 7,
                    exchange: 300,
                    peer: 2,
                    secret: &[0x31; 32],
                    proof: &[0x66; 64],
                },
                cat(&[
                    &[0, 0, 0, 0x67, 0x16, 0x07, 0xAC, 0x02, 0x02, 0x20],
                    &rep(0x31, 32),
                    &[0x40],
                    &rep(0x66, 64),
                ]),
            ),
        ];
        let mut out = [0u8; 256];
        for (msg, want) in &cases {
            // The variant byte every node without the feature recognizes.
            assert!(super::BLAME_ROUND_VARIANTS.contains(&want[FRAME_HEADER_LEN]));
            let n = msg.emit_frame(&mut out).unwrap();
            assert_eq!(&out[..n], &want[..], "{msg:?}");
            assert_eq!(Message::parse(&want[FRAME_HEADER_LEN..]).unwrap(), *msg);
        }
    }

    #[test]
    fn garbage_messages_are_errors() {
        assert_eq!(Message::parse(&[99]), Err(WireError::Malformed));
        assert_eq!(Message::parse(&[2, 1, 1]), Err(WireError::TrailingBytes));
        // A cell whose length varint claims more bytes than exist.
        assert_eq!(
            Message::parse(&[13, 0, 0, 50, 1]),
            Err(WireError::Malformed)
        );
        // Every prefix of a valid message fails cleanly.
        let mut out = [0u8; 64];
        let n = Message::ClientRequest(ClientRequest {
            interval: 2,
            exchange: 5,
            kind: Kind::Slot { slot: 1, len: 99 },
            outputs: &[0, 1, 2],
            down: Down::Data {
                conn: ConnId(9),
                data: b"abc",
            },
        })
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
        assert!(Down::Grant {
            conn: zero,
            bytes: 1
        }
        .check()
        .is_err());
        assert!(Down::Grant {
            conn: one,
            bytes: 0
        }
        .check()
        .is_ok());
    }
}
