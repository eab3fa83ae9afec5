//! The setup messages: their bytes, parse and emit, and what an identity signature covers.
//!
//! Every integer is big-endian; every message starts with `tag (1) ‖ epoch (8) ‖ attempt (1)`.
//!
//! ```text
//! Open    0x01  header ‖ group (32) ‖ trustees (u16 bitmap) ‖ clients (u16) ‖ participants
//!               (ceil(clients / 8) bytes, bit i = client i, least significant first)
//! Key     0x02  header ‖ trustee (1) ‖ share (32) ‖ proof (64) ‖ signature (64)
//! Submit  0x03  header ‖ client (u16) ‖ ciphertext (64) ‖ proof (64) ‖ signature (64)
//! Chunk   0x04  header ‖ trustee (1) ‖ stage (1) ‖ offset (u32) ‖ length (u16) ‖ data
//! Seal    0x05  header ‖ trustee (1) ‖ stage (1) ‖ digest (32) ‖ signature (64)
//! Record  0x06  header ‖ trustee (1) ‖ transcript (32) ‖ list (32) ‖ signature (64)
//! ```
//!
//! A signature is the author's Ed25519 identity signature of
//! `"dissent-rs v3 setup" ‖ group fingerprint (32) ‖ every byte of the message before it`.
//! `Open` (the relay's) and `Chunk` (bound by the next `Seal`) carry none.
//!
//! Owns the bytes and their checks; it must not know what a role does with a message.

use super::identity::{self, IdentitySigner, IDENTITY_LEN, SIGNATURE_LEN};
use crate::bits::bitmap_len;
use crate::wire::WireError;

/// Bytes of the common header.
pub const HEADER_LEN: usize = 10;
/// Bytes of a `Key` message.
pub const KEY_LEN: usize = HEADER_LEN + 1 + 32 + 64 + SIGNATURE_LEN;
/// Bytes of a `Submit` message.
pub const SUBMIT_LEN: usize = HEADER_LEN + 2 + 64 + 64 + SIGNATURE_LEN;
/// Bytes of a `Chunk` message before its data.
pub const CHUNK_HEADER_LEN: usize = HEADER_LEN + 1 + 1 + 4 + 2;
/// Bytes of a `Seal` message.
pub const SEAL_LEN: usize = HEADER_LEN + 1 + 1 + 32 + SIGNATURE_LEN;
/// Bytes of a `Record` message.
pub const RECORD_LEN: usize = HEADER_LEN + 1 + 32 + 32 + SIGNATURE_LEN;
/// Longest signed message (`Submit`).
pub const MAX_SIGNED_LEN: usize = SUBMIT_LEN;
/// Most data bytes one `Chunk` carries: a whole `Chunk` is then at most 4,096 bytes, the
/// largest frame body a device takes, so every node of any group can take every setup frame.
pub const MAX_CHUNK_DATA: usize = 4096 - CHUNK_HEADER_LEN;
/// The context every identity signature starts with.
pub const SIGNATURE_CONTEXT: &[u8] = b"dissent-rs v3 setup";

const OPEN: u8 = 1;
const KEY: u8 = 2;
const SUBMIT: u8 = 3;
const CHUNK: u8 = 4;
const SEAL: u8 = 5;
const RECORD: u8 = 6;

/// Which trustee stage a `Chunk` or `Seal` belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The shuffled rows then the proof of shuffle (wire value 1).
    Shuffle,
    /// One decryption share per row (wire value 2).
    Shares,
}

impl Stage {
    fn to_byte(self) -> u8 {
        match self {
            Stage::Shuffle => 1,
            Stage::Shares => 2,
        }
    }
    fn from_byte(b: u8) -> Result<Self, WireError> {
        match b {
            1 => Ok(Stage::Shuffle),
            2 => Ok(Stage::Shares),
            _ => Err(WireError::Malformed),
        }
    }
}

/// Relay → every node: setup attempt `attempt` of `epoch` opens over these members.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Open<'a> {
    /// The epoch.
    pub epoch: u64,
    /// The attempt (0, then one more at each restart).
    pub attempt: u8,
    /// The group fingerprint.
    pub group: [u8; 32],
    /// Bit `j`: trustee `j` takes part.
    pub trustees: u16,
    /// Clients in the group (the bitmap's positions).
    pub clients: u16,
    /// Bit `i`: client `i` takes part (gets a slot).
    pub participants: &'a [u8],
}

/// Trustee → relay → every node: its ElGamal share for this attempt, with a proof of
/// knowledge of its secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key {
    /// The epoch.
    pub epoch: u64,
    /// The attempt.
    pub attempt: u8,
    /// The trustee's index in the group.
    pub trustee: u8,
    /// `Y_j = y_j·G`.
    pub share: [u8; 32],
    /// DLEQ proof of `log_G(Y_j)` (see `proof.rs`).
    pub proof: [u8; 64],
    /// Identity signature.
    pub signature: [u8; 64],
}

/// Client → relay → every node: its pseudonym key encrypted to the trustees' joint key,
/// with a proof of knowledge of the randomness.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Submit {
    /// The epoch.
    pub epoch: u64,
    /// The attempt.
    pub attempt: u8,
    /// The client's index in the group.
    pub client: u16,
    /// `(P + r·Y, r·G)`.
    pub ciphertext: [u8; 64],
    /// DLEQ proof of `log_G(r·G)`, bound to the group, epoch, attempt, client and `P + r·Y`.
    pub proof: [u8; 64],
    /// Identity signature.
    pub signature: [u8; 64],
}

/// Trustee → relay → every node: part of a stage's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunk<'a> {
    /// The epoch.
    pub epoch: u64,
    /// The attempt.
    pub attempt: u8,
    /// The trustee whose stage this is.
    pub trustee: u8,
    /// Which stage.
    pub stage: Stage,
    /// Where `data` starts in the stage's bytes.
    pub offset: u32,
    /// At most [`MAX_CHUNK_DATA`] bytes.
    pub data: &'a [u8],
}

/// Trustee → relay → every node: the end of its stage, signing the transcript so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seal {
    /// The epoch.
    pub epoch: u64,
    /// The attempt.
    pub attempt: u8,
    /// The trustee.
    pub trustee: u8,
    /// Which stage it ends.
    pub stage: Stage,
    /// The setup transcript hash after the stage's data.
    pub digest: [u8; 32],
    /// Identity signature.
    pub signature: [u8; 64],
}

/// Trustee → relay → every node: the signed epoch record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record {
    /// The epoch.
    pub epoch: u64,
    /// The attempt that established it.
    pub attempt: u8,
    /// The trustee.
    pub trustee: u8,
    /// The setup transcript hash after the last stage.
    pub transcript: [u8; 32],
    /// SHA-256 of the pseudonym list (see `follower.rs`).
    pub list: [u8; 32],
    /// Identity signature.
    pub signature: [u8; 64],
}

/// One setup message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetupMessage<'a> {
    /// See [`Open`].
    Open(Open<'a>),
    /// See [`Key`].
    Key(Key),
    /// See [`Submit`].
    Submit(Submit),
    /// See [`Chunk`].
    Chunk(Chunk<'a>),
    /// See [`Seal`].
    Seal(Seal),
    /// See [`Record`].
    Record(Record),
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if self.bytes.len() < n {
            return Err(WireError::Malformed);
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }
    /// The next `N` bytes, borrowed: a result of a reference is a pointer, so each field
    /// is copied once, into the message (a result of the array itself was copied again
    /// through the stack at every field: 1.5 KiB of a device's flash).
    fn array<const N: usize>(&mut self) -> Result<&'a [u8; N], WireError> {
        self.take(N)?.try_into().map_err(|_| WireError::Malformed)
    }
    fn u8(&mut self) -> Result<u8, WireError> {
        Ok(u8::from_be_bytes(*self.array()?))
    }
    fn u16(&mut self) -> Result<u16, WireError> {
        Ok(u16::from_be_bytes(*self.array()?))
    }
    fn u32(&mut self) -> Result<u32, WireError> {
        Ok(u32::from_be_bytes(*self.array()?))
    }
    fn u64(&mut self) -> Result<u64, WireError> {
        Ok(u64::from_be_bytes(*self.array()?))
    }
}

struct Writer<'a> {
    out: &'a mut [u8],
    at: usize,
}

impl Writer<'_> {
    fn put(&mut self, bytes: &[u8]) -> Result<(), WireError> {
        let end = self
            .at
            .checked_add(bytes.len())
            .ok_or(WireError::BufferTooSmall)?;
        self.out
            .get_mut(self.at..end)
            .ok_or(WireError::BufferTooSmall)?
            .copy_from_slice(bytes);
        self.at = end;
        Ok(())
    }
    fn header(&mut self, tag: u8, epoch: u64, attempt: u8) -> Result<(), WireError> {
        self.put(&[tag])?;
        self.put(&epoch.to_be_bytes())?;
        self.put(&[attempt])
    }
}

impl<'a> SetupMessage<'a> {
    /// Parses one message; refuses unknown tags, wrong lengths, set bits past the
    /// participants, chunks longer than [`MAX_CHUNK_DATA`] and trailing bytes.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, WireError> {
        let mut r = Reader { bytes };
        let tag = r.u8()?;
        let epoch = r.u64()?;
        let attempt = r.u8()?;
        let message = match tag {
            OPEN => {
                let group = *r.array()?;
                let trustees = r.u16()?;
                let clients = r.u16()?;
                let participants = r.take(bitmap_len(usize::from(clients)))?;
                crate::bits::Bits::new_checked(participants, usize::from(clients))
                    .map_err(|_| WireError::Malformed)?;
                SetupMessage::Open(Open {
                    epoch,
                    attempt,
                    group,
                    trustees,
                    clients,
                    participants,
                })
            }
            KEY => SetupMessage::Key(Key {
                epoch,
                attempt,
                trustee: r.u8()?,
                share: *r.array()?,
                proof: *r.array()?,
                signature: *r.array()?,
            }),
            SUBMIT => SetupMessage::Submit(Submit {
                epoch,
                attempt,
                client: r.u16()?,
                ciphertext: *r.array()?,
                proof: *r.array()?,
                signature: *r.array()?,
            }),
            CHUNK => {
                let trustee = r.u8()?;
                let stage = Stage::from_byte(r.u8()?)?;
                let offset = r.u32()?;
                let len = usize::from(r.u16()?);
                if len == 0 || len > MAX_CHUNK_DATA {
                    return Err(WireError::Malformed);
                }
                SetupMessage::Chunk(Chunk {
                    epoch,
                    attempt,
                    trustee,
                    stage,
                    offset,
                    data: r.take(len)?,
                })
            }
            SEAL => SetupMessage::Seal(Seal {
                epoch,
                attempt,
                trustee: r.u8()?,
                stage: Stage::from_byte(r.u8()?)?,
                digest: *r.array()?,
                signature: *r.array()?,
            }),
            RECORD => SetupMessage::Record(Record {
                epoch,
                attempt,
                trustee: r.u8()?,
                transcript: *r.array()?,
                list: *r.array()?,
                signature: *r.array()?,
            }),
            _ => return Err(WireError::Malformed),
        };
        if !r.bytes.is_empty() {
            return Err(WireError::TrailingBytes);
        }
        Ok(message)
    }

    /// Writes the message into `out`; returns its length.
    pub fn encode(&self, out: &mut [u8]) -> Result<usize, WireError> {
        let mut w = Writer { out, at: 0 };
        match self {
            SetupMessage::Open(m) => {
                if m.participants.len() != bitmap_len(usize::from(m.clients)) {
                    return Err(WireError::Malformed);
                }
                w.header(OPEN, m.epoch, m.attempt)?;
                w.put(&m.group)?;
                w.put(&m.trustees.to_be_bytes())?;
                w.put(&m.clients.to_be_bytes())?;
                w.put(m.participants)?;
            }
            SetupMessage::Key(m) => {
                w.header(KEY, m.epoch, m.attempt)?;
                w.put(&[m.trustee])?;
                w.put(&m.share)?;
                w.put(&m.proof)?;
                w.put(&m.signature)?;
            }
            SetupMessage::Submit(m) => {
                w.header(SUBMIT, m.epoch, m.attempt)?;
                w.put(&m.client.to_be_bytes())?;
                w.put(&m.ciphertext)?;
                w.put(&m.proof)?;
                w.put(&m.signature)?;
            }
            SetupMessage::Chunk(m) => {
                let len = u16::try_from(m.data.len()).map_err(|_| WireError::Malformed)?;
                if m.data.is_empty() || m.data.len() > MAX_CHUNK_DATA {
                    return Err(WireError::Malformed);
                }
                w.header(CHUNK, m.epoch, m.attempt)?;
                w.put(&[m.trustee, m.stage.to_byte()])?;
                w.put(&m.offset.to_be_bytes())?;
                w.put(&len.to_be_bytes())?;
                w.put(m.data)?;
            }
            SetupMessage::Seal(m) => {
                w.header(SEAL, m.epoch, m.attempt)?;
                w.put(&[m.trustee, m.stage.to_byte()])?;
                w.put(&m.digest)?;
                w.put(&m.signature)?;
            }
            SetupMessage::Record(m) => {
                w.header(RECORD, m.epoch, m.attempt)?;
                w.put(&[m.trustee])?;
                w.put(&m.transcript)?;
                w.put(&m.list)?;
                w.put(&m.signature)?;
            }
        }
        Ok(w.at)
    }

    /// The epoch and attempt of any message.
    pub fn epoch_attempt(&self) -> (u64, u8) {
        match self {
            SetupMessage::Open(m) => (m.epoch, m.attempt),
            SetupMessage::Key(m) => (m.epoch, m.attempt),
            SetupMessage::Submit(m) => (m.epoch, m.attempt),
            SetupMessage::Chunk(m) => (m.epoch, m.attempt),
            SetupMessage::Seal(m) => (m.epoch, m.attempt),
            SetupMessage::Record(m) => (m.epoch, m.attempt),
        }
    }

    /// Whether the message carries an identity signature (its last 64 bytes).
    pub fn is_signed(&self) -> bool {
        matches!(
            self,
            SetupMessage::Key(_)
                | SetupMessage::Submit(_)
                | SetupMessage::Seal(_)
                | SetupMessage::Record(_)
        )
    }
}

/// The bytes a signature covers, in `buf`: context ‖ group ‖ `unsigned`.
fn signing_input<'b>(
    group: &[u8; 32],
    unsigned: &[u8],
    buf: &'b mut [u8; 256],
) -> Option<&'b [u8]> {
    let total = SIGNATURE_CONTEXT.len() + 32 + unsigned.len();
    let out = buf.get_mut(..total)?;
    let (context, rest) = out.split_at_mut(SIGNATURE_CONTEXT.len());
    context.copy_from_slice(SIGNATURE_CONTEXT);
    let (g, tail) = rest.split_at_mut(32);
    g.copy_from_slice(group);
    tail.copy_from_slice(unsigned);
    Some(out)
}

/// Signs an encoded signed message in place: its last 64 bytes become the signature of
/// everything before them.
pub fn sign_in_place(frame: &mut [u8], group: &[u8; 32], signer: &impl IdentitySigner) -> bool {
    let Some(split) = frame.len().checked_sub(SIGNATURE_LEN) else {
        return false;
    };
    let (unsigned, signature) = frame.split_at_mut(split);
    let mut buf = [0u8; 256];
    let Some(input) = signing_input(group, unsigned, &mut buf) else {
        return false;
    };
    signature.copy_from_slice(&signer.sign(input));
    true
}

/// Whether an encoded signed message's last 64 bytes are `public`'s signature of the rest.
pub fn signature_holds(frame: &[u8], group: &[u8; 32], public: &[u8; IDENTITY_LEN]) -> bool {
    let Some(split) = frame.len().checked_sub(SIGNATURE_LEN) else {
        return false;
    };
    let (unsigned, signature) = frame.split_at(split);
    let Ok(signature) = <&[u8; SIGNATURE_LEN]>::try_from(signature) else {
        return false;
    };
    let mut buf = [0u8; 256];
    match signing_input(group, unsigned, &mut buf) {
        Some(input) => identity::verify(public, input, signature),
        None => false,
    }
}
