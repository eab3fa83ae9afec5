//! A trustee that lost the epoch it helped establish takes it back from the relay, with no
//! new setup (docs/protocol.md §11, "Rejoin links").
//!
//! An epoch is established once the relay holds every epoch trustee's `Record`. A trustee
//! that stops after its own `Record` went out and before it kept the epoch (a crash, a
//! kill, a board reset before its flash is written, or its kept epoch lost) would otherwise
//! wait for a setup the relay never opens again. The relay of an established epoch serves
//! such a trustee on a *rejoin link* (session id [`super::session::rejoin_session`]; only
//! the epoch's trustees are admitted; a relay still setting the epoch up refuses it) these
//! frames, then closes the link:
//!
//! ```text
//! the Open of the attempt that established the epoch (as relayed in the setup)
//! every epoch trustee's Record (as relayed in the setup), in any order
//! List  0x07  epoch (8) ‖ attempt (1) ‖ first slot (u16) ‖ keys (32 bytes each, 1 ..= LIST_KEYS_PER_FRAME)
//!             (the pseudonym list in slot order, the frames in order)
//! ```
//!
//! [`Rejoin`] takes the epoch only if: the `Open` is of this group and epoch and names this
//! trustee among its trustees; each trustee the `Open` names sent one `Record` of that
//! attempt whose signature holds under its identity key, all naming one transcript and one
//! list hash; the list has one key per participant and hashes to it. What makes this safe
//! is the trustee's own signature: it signs its `Record` only after it checked every proof
//! and signature of the attempt and decrypted the list itself, so the relay can give back
//! only the epoch this trustee verified, never one of its own making; the other trustees'
//! signatures show that they established it too. The `Open`'s participants are the relay's
//! word, as in the setup (a relay that lies about them makes the trustee's cells garble, as
//! a relay can anyway).
//!
//! Owns the rejoin link's frames and their checks; the link and the keeping are the shells'.

use super::message::{signature_holds, SetupMessage, HEADER_LEN};
use super::{Established, SetupConfig};
use crate::bits::bitmap_len;
use crate::error::ConfigError;
use crate::wire::WireError;

/// The `List` frame's tag.
const LIST: u8 = 7;
/// Bytes of a `List` frame before its keys.
pub const LIST_HEADER_LEN: usize = HEADER_LEN + 2;
/// Most pseudonym keys one `List` frame carries: a frame is then at most 4,096 bytes, the
/// largest a device takes.
pub const LIST_KEYS_PER_FRAME: usize = (4096 - LIST_HEADER_LEN) / 32;

/// Writes the `List` frame of `keys` (32 bytes each, slots `first..`) into `out`; returns
/// its length.
pub fn encode_list(
    epoch: u64,
    attempt: u8,
    first: u16,
    keys: &[u8],
    out: &mut [u8],
) -> Result<usize, WireError> {
    if keys.is_empty() || !keys.len().is_multiple_of(32) || keys.len() / 32 > LIST_KEYS_PER_FRAME {
        return Err(WireError::Malformed);
    }
    let len = LIST_HEADER_LEN + keys.len();
    let out = out.get_mut(..len).ok_or(WireError::BufferTooSmall)?;
    let (header, body) = out.split_at_mut(LIST_HEADER_LEN);
    let (tag, rest) = header.split_at_mut(1);
    let (e, rest) = rest.split_at_mut(8);
    let (a, f) = rest.split_at_mut(1);
    tag.copy_from_slice(&[LIST]);
    e.copy_from_slice(&epoch.to_be_bytes());
    a.copy_from_slice(&[attempt]);
    f.copy_from_slice(&first.to_be_bytes());
    body.copy_from_slice(keys);
    Ok(len)
}

/// A parsed `List` frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct List<'a> {
    /// The epoch.
    pub epoch: u64,
    /// The attempt that established it.
    pub attempt: u8,
    /// The slot of the first key.
    pub first: u16,
    /// The keys, 32 bytes each.
    pub keys: &'a [u8],
}

impl<'a> List<'a> {
    /// Parses a `List` frame; refuses another tag, no keys, or a partial key.
    pub fn parse(frame: &'a [u8]) -> Result<Self, WireError> {
        let (header, keys) = frame
            .split_at_checked(LIST_HEADER_LEN)
            .ok_or(WireError::Malformed)?;
        let (&tag, rest) = header.split_first().ok_or(WireError::Malformed)?;
        let (epoch, rest) = rest.split_at_checked(8).ok_or(WireError::Malformed)?;
        let (&attempt, first) = rest.split_first().ok_or(WireError::Malformed)?;
        if tag != LIST
            || keys.is_empty()
            || !keys.len().is_multiple_of(32)
            || keys.len() / 32 > LIST_KEYS_PER_FRAME
        {
            return Err(WireError::Malformed);
        }
        let epoch = u64::from_be_bytes(epoch.try_into().map_err(|_| WireError::Malformed)?);
        let first = u16::from_be_bytes(first.try_into().map_err(|_| WireError::Malformed)?);
        Ok(List {
            epoch,
            attempt,
            first,
            keys,
        })
    }
}

/// Why a rejoin link's frames do not give the trustee its epoch back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RejoinError {
    /// Bytes that are not a rejoin frame.
    Malformed(WireError),
    /// A frame out of order, of another group, epoch or attempt, or a second one.
    Unexpected,
    /// The `Open` does not name this trustee: the epoch is not its to take back.
    NotAnEpochTrustee,
    /// Trustee `j`'s `Record` does not verify under its identity key.
    BadSignature {
        /// The trustee.
        trustee: u8,
    },
    /// Trustee `j`'s `Record` names another transcript or list than the others.
    Disagreement {
        /// The trustee.
        trustee: u8,
    },
    /// The list is not one key per participant, or does not hash to what the records sign.
    WrongList,
    /// The link ended before every record and the whole list came.
    Incomplete,
}

impl core::fmt::Display for RejoinError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            RejoinError::Malformed(e) => write!(f, "the relay sent a malformed frame ({e})"),
            RejoinError::Unexpected => f.write_str(
                "the relay sent a frame out of order, or of another group, epoch or attempt",
            ),
            RejoinError::NotAnEpochTrustee => {
                f.write_str("the epoch's Open does not name this trustee")
            }
            RejoinError::BadSignature { trustee } => {
                write!(f, "trustee {trustee}'s record does not verify")
            }
            RejoinError::Disagreement { trustee } => write!(
                f,
                "trustee {trustee}'s record names another transcript or list"
            ),
            RejoinError::WrongList => {
                f.write_str("the pseudonym list is not the one the records sign")
            }
            RejoinError::Incomplete => {
                f.write_str("the link ended before every record and the whole list came")
            }
        }
    }
}

impl core::error::Error for RejoinError {}

/// The trustee's side of a rejoin link: takes the frames in the order they came and, once
/// every record and the whole list are in and check, gives the epoch back.
///
/// Call order: [`Rejoin::new`], then [`Rejoin::receive`] for each frame until it returns
/// the [`Established`] epoch or an error; when the link ends first, [`Rejoin::ended`].
/// Then [`Rejoin::pseudonyms`] and [`Rejoin::participants`] are the epoch's.
#[derive(Debug)]
pub struct Rejoin<'c, B> {
    config: SetupConfig<'c>,
    own: u8,
    storage: B,
    open: Option<Opened>,
    /// Bit `j`: trustee `j`'s record is in.
    records: u16,
    /// The transcript and list hash the first record named.
    signed: Option<([u8; 32], [u8; 32])>,
    /// Keys of the list in so far.
    filled: usize,
}

#[derive(Debug, Clone, Copy)]
struct Opened {
    attempt: u8,
    trustees: u16,
    slots: usize,
}

impl<'c, B: AsRef<[u8]> + AsMut<[u8]>> Rejoin<'c, B> {
    /// Bytes of storage a rejoin of `config`'s group needs: the participants' bitmap, then
    /// one 32-byte key per client.
    pub const fn storage_len(config: &SetupConfig<'_>) -> usize {
        bitmap_len(config.clients.len()) + 32 * config.clients.len()
    }

    /// Trustee `own` of `config`'s group, taking its epoch back into `storage`
    /// ([`Rejoin::storage_len`] bytes at least).
    pub fn new(config: SetupConfig<'c>, own: u8, storage: B) -> Result<Self, ConfigError> {
        config.validate()?;
        if usize::from(own) >= config.trustees.len() {
            return Err(ConfigError::Counts);
        }
        if storage.as_ref().len() < Self::storage_len(&config) {
            return Err(ConfigError::StorageTooSmall("rejoin"));
        }
        Ok(Rejoin {
            config,
            own,
            storage,
            open: None,
            records: 0,
            signed: None,
            filled: 0,
        })
    }

    /// Takes the next frame of the rejoin link: `Ok(Some(_))` once the epoch is back.
    pub fn receive(&mut self, frame: &[u8]) -> Result<Option<Established>, RejoinError> {
        if frame.first() == Some(&LIST) {
            self.take_list(frame)?;
        } else {
            match SetupMessage::parse(frame).map_err(RejoinError::Malformed)? {
                SetupMessage::Open(o) => self.take_open(&o)?,
                SetupMessage::Record(r) => self.take_record(frame, &r)?,
                _ => return Err(RejoinError::Unexpected),
            }
        }
        self.complete()
    }

    /// The link ended: what was missing.
    pub fn ended(&self) -> RejoinError {
        RejoinError::Incomplete
    }

    /// The storage back, for the setup that follows when the relay closes the rejoin link
    /// before any frame (it is setting the epoch up).
    pub fn into_storage(self) -> B {
        self.storage
    }

    /// The epoch's participants, a bitmap over the clients (once the `Open` is in).
    pub fn participants(&self) -> &[u8] {
        let n = bitmap_len(self.config.clients.len());
        self.storage.as_ref().get(..n).unwrap_or(&[])
    }

    /// The pseudonym keys in slot order (once the epoch is back).
    pub fn pseudonyms(&self) -> impl Iterator<Item = &[u8]> {
        let at = bitmap_len(self.config.clients.len());
        self.storage
            .as_ref()
            .get(at..at + 32 * self.filled)
            .unwrap_or(&[])
            .chunks_exact(32)
    }

    fn take_open(&mut self, o: &super::message::Open<'_>) -> Result<(), RejoinError> {
        if self.open.is_some()
            || o.epoch != self.config.epoch
            || o.group != self.config.group
            || usize::from(o.clients) != self.config.clients.len()
            || self.config.trustees.len() < 16 && o.trustees >> self.config.trustees.len() != 0
        {
            return Err(RejoinError::Unexpected);
        }
        if o.trustees & (1 << self.own) == 0 {
            return Err(RejoinError::NotAnEpochTrustee);
        }
        let bitmap = self
            .storage
            .as_mut()
            .get_mut(..o.participants.len())
            .ok_or(RejoinError::Unexpected)?;
        bitmap.copy_from_slice(o.participants);
        let slots = o.participants.iter().map(|b| b.count_ones() as usize).sum();
        self.open = Some(Opened {
            attempt: o.attempt,
            trustees: o.trustees,
            slots,
        });
        Ok(())
    }

    fn take_record(&mut self, frame: &[u8], r: &super::message::Record) -> Result<(), RejoinError> {
        let open = self.open.ok_or(RejoinError::Unexpected)?;
        let bit = 1u16.checked_shl(u32::from(r.trustee)).unwrap_or(0);
        if r.epoch != self.config.epoch
            || r.attempt != open.attempt
            || open.trustees & bit == 0
            || self.records & bit != 0
        {
            return Err(RejoinError::Unexpected);
        }
        let key = self
            .config
            .trustees
            .get(usize::from(r.trustee))
            .ok_or(RejoinError::Unexpected)?;
        if !signature_holds(frame, &self.config.group, key) {
            return Err(RejoinError::BadSignature { trustee: r.trustee });
        }
        match self.signed {
            None => self.signed = Some((r.transcript, r.list)),
            Some(signed) if signed != (r.transcript, r.list) => {
                return Err(RejoinError::Disagreement { trustee: r.trustee })
            }
            Some(_) => {}
        }
        self.records |= bit;
        Ok(())
    }

    fn take_list(&mut self, frame: &[u8]) -> Result<(), RejoinError> {
        let open = self.open.ok_or(RejoinError::Unexpected)?;
        let list = List::parse(frame).map_err(RejoinError::Malformed)?;
        if list.epoch != self.config.epoch
            || list.attempt != open.attempt
            || usize::from(list.first) != self.filled
        {
            return Err(RejoinError::Unexpected);
        }
        let count = list.keys.len() / 32;
        if self.filled + count > open.slots {
            return Err(RejoinError::WrongList);
        }
        let at = bitmap_len(self.config.clients.len()) + 32 * self.filled;
        self.storage
            .as_mut()
            .get_mut(at..at + list.keys.len())
            .ok_or(RejoinError::WrongList)?
            .copy_from_slice(list.keys);
        self.filled += count;
        Ok(())
    }

    fn complete(&self) -> Result<Option<Established>, RejoinError> {
        let (Some(open), Some((transcript, list))) = (self.open, self.signed) else {
            return Ok(None);
        };
        if self.records != open.trustees || self.filled < open.slots {
            return Ok(None);
        }
        if super::follower::list_hash(&mut self.pseudonyms()) != list {
            return Err(RejoinError::WrongList);
        }
        Ok(Some(Established {
            epoch: self.config.epoch,
            attempt: open.attempt,
            transcript,
            list,
            slots: open.slots,
            trustees: open.trustees,
        }))
    }
}
