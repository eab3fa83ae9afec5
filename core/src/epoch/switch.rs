//! Switches: a running group moves to a new version of its description between epochs.
//!
//! A group's description (its members' public keys and its policy) has a `version`; an
//! epoch runs one version. When the relay finds a newer version it announces the switch:
//! every DC-net link is told `Goodbye{Switch}`, and every node of the running epoch fetches
//! the new version from the relay on a *switch link* (docs/protocol.md, "Switches"):
//!
//! ```text
//! Update   0x10  version (u64) ‖ digest (32) ‖ total (u32) ‖ offset (u32) ‖ length (u16) ‖ data
//! Removed  0x11  version (u64) ‖ digest (32)
//! ```
//!
//! `Update`s carry the signed description's bytes in order (`offset` counts from 0, each
//! chunk continues the previous one, `total` the whole length); `Removed` tells a member
//! that the version leaves it out (its keys are refused from then on). Integers are
//! big-endian. The description's format is the shell's; this module sees its digest (what
//! the trustees sign), its version and the identity keys of its trustees and clients.
//!
//! **The rule** ([`check`]): a node running version `v` with trustees `T` accepts version
//! `w` only if `w > v` and every key of `T ∪ T'` (`T'` the trustees of `w`) has signed the
//! digest of `w` with its identity key. Every running trustee must agree, so a relay or an
//! assembler cannot slip in members (one honest trustee is enough to refuse), and a new
//! trustee cannot be added without its own signature; a trustee that is being removed
//! signs its own removal. A relay that serves an older or the same version, or a digest
//! other than the one it announced, is refused, naming why.
//!
//! Owns the switch link's messages, their reassembly ([`UpdateReceiver`]) and the rule. It
//! must not parse the description or touch the DC-net roles.

use crate::identity::verify;
use crate::wire::WireError;

/// Tag of an `Update` message.
pub const UPDATE: u8 = 0x10;
/// Tag of a `Removed` message.
pub const REMOVED: u8 = 0x11;
/// Bytes of an `Update` before its data.
pub const UPDATE_HEADER_LEN: usize = 1 + 8 + 32 + 4 + 4 + 2;
/// Bytes of a `Removed` message.
pub const REMOVED_LEN: usize = 1 + 8 + 32;
/// Most data bytes one `Update` carries.
pub const MAX_UPDATE_DATA: usize = 32 * 1024;
/// Bytes of an identity signature.
pub const SIGNATURE_LEN: usize = 64;

/// The running epoch's version, as the rule sees it.
#[derive(Debug, Clone, Copy)]
pub struct Running<'a> {
    /// The version the epoch runs.
    pub version: u64,
    /// Identity keys of its trustees.
    pub trustees: &'a [[u8; 32]],
}

/// A version offered for the switch.
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    /// Its version.
    pub version: u64,
    /// The digest its trustees sign.
    pub digest: [u8; 32],
    /// Identity keys of its trustees.
    pub trustees: &'a [[u8; 32]],
    /// Identity keys of its clients.
    pub clients: &'a [[u8; 32]],
}

/// Why a node refuses a version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The version is not newer than the running one (a replay or a downgrade).
    NotNewer {
        /// The running version.
        running: u64,
        /// The offered one.
        offered: u64,
    },
    /// This trustee (identity key; of the running epoch, the new version or both) has not
    /// signed the version, or its signature does not verify.
    Unsigned {
        /// The trustee's identity key.
        trustee: [u8; 32],
        /// Whether it is a trustee of the running epoch (else only of the new version).
        running: bool,
    },
    /// The version has no trustee or no client.
    Empty,
    /// The bytes served are not those of the announced digest.
    WrongDigest,
}

impl core::fmt::Display for Refused {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Refused::NotNewer { running, offered } => write!(
                f,
                "version {offered} is not newer than the running version {running} \
                 (a replayed or downgraded description)"
            ),
            Refused::Unsigned { running, .. } => write!(
                f,
                "a {} trustee has not signed it (or its signature does not verify)",
                if *running { "running" } else { "new" }
            ),
            Refused::Empty => f.write_str("it has no trustee or no client"),
            Refused::WrongDigest => {
                f.write_str("the description served is not the one the relay announced")
            }
        }
    }
}

/// Checks `candidate` against the running epoch: newer, and signed by every trustee of
/// both. `signatures` are (identity key, signature) pairs in any order; a pair whose key is
/// nobody's is ignored.
pub fn check(
    running: Running<'_>,
    candidate: Candidate<'_>,
    signatures: &[([u8; 32], [u8; SIGNATURE_LEN])],
) -> Result<(), Refused> {
    if candidate.version <= running.version {
        return Err(Refused::NotNewer {
            running: running.version,
            offered: candidate.version,
        });
    }
    if candidate.trustees.is_empty() || candidate.clients.is_empty() {
        return Err(Refused::Empty);
    }
    let signed = |key: &[u8; 32]| {
        signatures
            .iter()
            .any(|(k, sig)| k == key && verify(key, &candidate.digest, sig))
    };
    for key in running.trustees {
        if !signed(key) {
            return Err(Refused::Unsigned {
                trustee: *key,
                running: true,
            });
        }
    }
    for key in candidate.trustees {
        if !signed(key) {
            return Err(Refused::Unsigned {
                trustee: *key,
                running: false,
            });
        }
    }
    Ok(())
}

/// What a node of the running epoch does at the switch to an accepted version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// It is a trustee of the new version, at this index.
    Trustee(usize),
    /// It is a client of the new version, at this index (a slot in the next setup).
    Client(usize),
    /// The new version leaves it out: it stops, and its keys are refused.
    Removed,
}

/// Where the node with this identity key stands in `candidate`.
pub fn verdict(identity: &[u8; 32], candidate: Candidate<'_>) -> Verdict {
    if let Some(j) = candidate.trustees.iter().position(|k| k == identity) {
        return Verdict::Trustee(j);
    }
    match candidate.clients.iter().position(|k| k == identity) {
        Some(i) => Verdict::Client(i),
        None => Verdict::Removed,
    }
}

/// A switch link message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SwitchMessage<'a> {
    /// A chunk of the new version's signed description.
    Update {
        /// The new version.
        version: u64,
        /// Its digest (what the trustees signed).
        digest: [u8; 32],
        /// Bytes of the whole description.
        total: u32,
        /// Where this chunk starts.
        offset: u32,
        /// The chunk.
        data: &'a [u8],
    },
    /// The new version leaves this member out.
    Removed {
        /// The new version.
        version: u64,
        /// Its digest.
        digest: [u8; 32],
    },
}

/// Takes `N` bytes off the front of `rest`.
fn take<const N: usize>(rest: &mut &[u8]) -> Result<[u8; N], WireError> {
    let (head, tail) = rest.split_at_checked(N).ok_or(WireError::Malformed)?;
    *rest = tail;
    head.try_into().map_err(|_| WireError::Malformed)
}

/// Puts `bytes` at the front of `out`, which moves past them.
fn put(out: &mut &mut [u8], bytes: &[u8]) -> Result<(), WireError> {
    let (head, tail) = core::mem::take(out)
        .split_at_mut_checked(bytes.len())
        .ok_or(WireError::BufferTooSmall)?;
    head.copy_from_slice(bytes);
    *out = tail;
    Ok(())
}

impl<'a> SwitchMessage<'a> {
    /// Parses one switch link frame body.
    pub fn parse(body: &'a [u8]) -> Result<SwitchMessage<'a>, WireError> {
        let mut rest = body;
        let [tag] = take::<1>(&mut rest)?;
        let version = u64::from_be_bytes(take(&mut rest)?);
        let digest: [u8; 32] = take(&mut rest)?;
        match tag {
            UPDATE => {
                let total = u32::from_be_bytes(take(&mut rest)?);
                let offset = u32::from_be_bytes(take(&mut rest)?);
                let len = usize::from(u16::from_be_bytes(take(&mut rest)?));
                if rest.len() != len || len > MAX_UPDATE_DATA {
                    return Err(WireError::Malformed);
                }
                Ok(SwitchMessage::Update {
                    version,
                    digest,
                    total,
                    offset,
                    data: rest,
                })
            }
            REMOVED if rest.is_empty() => Ok(SwitchMessage::Removed { version, digest }),
            _ => Err(WireError::Malformed),
        }
    }

    /// Writes the message into `out`; returns its length.
    pub fn emit(&self, out: &mut [u8]) -> Result<usize, WireError> {
        let len = match self {
            SwitchMessage::Update { data, .. } if data.len() > MAX_UPDATE_DATA => {
                return Err(WireError::Malformed)
            }
            SwitchMessage::Update { data, .. } => UPDATE_HEADER_LEN + data.len(),
            SwitchMessage::Removed { .. } => REMOVED_LEN,
        };
        let mut w = out.get_mut(..len).ok_or(WireError::BufferTooSmall)?;
        match self {
            SwitchMessage::Update {
                version,
                digest,
                total,
                offset,
                data,
            } => {
                put(&mut w, &[UPDATE])?;
                put(&mut w, &version.to_be_bytes())?;
                put(&mut w, digest)?;
                put(&mut w, &total.to_be_bytes())?;
                put(&mut w, &offset.to_be_bytes())?;
                put(&mut w, &(data.len() as u16).to_be_bytes())?;
                put(&mut w, data)?;
            }
            SwitchMessage::Removed { version, digest } => {
                put(&mut w, &[REMOVED])?;
                put(&mut w, &version.to_be_bytes())?;
                put(&mut w, digest)?;
            }
        }
        Ok(len)
    }
}

/// The `Update` that carries the bytes of `description` from `offset` (at most
/// [`MAX_UPDATE_DATA`]), or `None` past its end.
pub fn update_at<'a>(
    version: u64,
    digest: [u8; 32],
    description: &'a [u8],
    offset: usize,
) -> Option<SwitchMessage<'a>> {
    if offset >= description.len() {
        return None;
    }
    let end = description
        .len()
        .min(offset.saturating_add(MAX_UPDATE_DATA));
    Some(SwitchMessage::Update {
        version,
        digest,
        total: u32::try_from(description.len()).ok()?,
        offset: u32::try_from(offset).ok()?,
        data: description.get(offset..end)?,
    })
}

/// What a node makes of a switch link frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// More chunks follow.
    More,
    /// The whole description is in: [`UpdateReceiver::description`].
    Complete,
    /// The relay says the new version leaves this node out.
    Removed,
}

/// Why a node drops a switch link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateError {
    /// The frame does not parse.
    Wire(WireError),
    /// A chunk of another version or digest than the first, or out of order.
    Inconsistent,
    /// The description does not fit the node's buffer.
    TooLong,
    /// The relay named a version that is not newer than the running one.
    NotNewer,
}

impl core::fmt::Display for UpdateError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            UpdateError::Wire(e) => write!(f, "a switch frame does not parse: {e:?}"),
            UpdateError::Inconsistent => {
                f.write_str("the relay's chunks disagree on the version, digest or order")
            }
            UpdateError::TooLong => f.write_str("the description is longer than a node takes"),
            UpdateError::NotNewer => f.write_str("the relay offers a version that is not newer"),
        }
    }
}

/// A node's side of the switch link: reassembles the description into `B`.
pub struct UpdateReceiver<B> {
    running: u64,
    buf: B,
    have: usize,
    total: Option<usize>,
    version: u64,
    digest: [u8; 32],
}

impl<B: AsRef<[u8]> + AsMut<[u8]>> UpdateReceiver<B> {
    /// A receiver for a node running version `running`, with room for a description of
    /// `buf`'s length.
    pub fn new(running: u64, buf: B) -> Self {
        UpdateReceiver {
            running,
            buf,
            have: 0,
            total: None,
            version: 0,
            digest: [0; 32],
        }
    }

    /// Takes one frame from the relay.
    pub fn receive(&mut self, body: &[u8]) -> Result<Received, UpdateError> {
        let message = SwitchMessage::parse(body).map_err(UpdateError::Wire)?;
        let (version, digest) = match message {
            SwitchMessage::Update {
                version, digest, ..
            }
            | SwitchMessage::Removed { version, digest } => (version, digest),
        };
        if version <= self.running {
            return Err(UpdateError::NotNewer);
        }
        if self.total.is_some() && (version != self.version || digest != self.digest) {
            return Err(UpdateError::Inconsistent);
        }
        self.version = version;
        self.digest = digest;
        match message {
            SwitchMessage::Removed { .. } => Ok(Received::Removed),
            SwitchMessage::Update {
                total,
                offset,
                data,
                ..
            } => {
                let total = total as usize;
                if self.total.is_some_and(|t| t != total) || offset as usize != self.have {
                    return Err(UpdateError::Inconsistent);
                }
                if total > self.buf.as_ref().len() {
                    return Err(UpdateError::TooLong);
                }
                let end = self.have.saturating_add(data.len());
                if end > total || data.is_empty() {
                    return Err(UpdateError::Inconsistent);
                }
                let room = self
                    .buf
                    .as_mut()
                    .get_mut(self.have..end)
                    .ok_or(UpdateError::TooLong)?;
                room.copy_from_slice(data);
                self.total = Some(total);
                self.have = end;
                Ok(if end == total {
                    Received::Complete
                } else {
                    Received::More
                })
            }
        }
    }

    /// The announced version and digest (once a frame is in).
    pub fn announced(&self) -> (u64, [u8; 32]) {
        (self.version, self.digest)
    }

    /// The whole description, once [`Received::Complete`].
    pub fn description(&self) -> Option<&[u8]> {
        match self.total {
            Some(t) if t == self.have => self.buf.as_ref().get(..t),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_reassemble_and_disorder_is_refused() {
        let text: [u8; 70_000] = core::array::from_fn(|i| i as u8);
        let mut rx = UpdateReceiver::new(3, [0u8; 70_000]);
        let mut frame = [0u8; UPDATE_HEADER_LEN + MAX_UPDATE_DATA];
        let mut offset = 0;
        let mut last = Received::More;
        while let Some(m) = update_at(4, [9; 32], &text, offset) {
            let n = m.emit(&mut frame).unwrap();
            assert_eq!(SwitchMessage::parse(&frame[..n]).unwrap(), m);
            last = rx.receive(&frame[..n]).unwrap();
            offset += MAX_UPDATE_DATA;
        }
        assert_eq!(last, Received::Complete);
        assert_eq!(rx.description().unwrap(), &text[..]);

        // A chunk out of order, another version, a stale one.
        let mut rx = UpdateReceiver::new(3, [0u8; 70_000]);
        let second = update_at(4, [9; 32], &text, MAX_UPDATE_DATA).unwrap();
        let n = second.emit(&mut frame).unwrap();
        assert_eq!(rx.receive(&frame[..n]), Err(UpdateError::Inconsistent));
        let stale = update_at(3, [9; 32], &text, 0).unwrap();
        let n = stale.emit(&mut frame).unwrap();
        assert_eq!(rx.receive(&frame[..n]), Err(UpdateError::NotNewer));
        let mut small = UpdateReceiver::new(3, [0u8; 100]);
        let first = update_at(4, [9; 32], &text, 0).unwrap();
        let n = first.emit(&mut frame).unwrap();
        assert_eq!(small.receive(&frame[..n]), Err(UpdateError::TooLong));
        assert!(SwitchMessage::parse(&frame[..n - 1]).is_err());
    }
}
