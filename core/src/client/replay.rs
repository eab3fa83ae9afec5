//! Replays: the downstream records a client missed while its link was down, sent by the
//! relay after the interval's confirmation, checked against the head every trustee
//! confirmed, and handed to the application only once the whole gap is checked. The
//! client's resume point (`delivered`) moves past each record only as it is handed over,
//! so a link lost before then asks for the records again.
//!
//! They wait in [`ClientStorage::replay`](super::ClientStorage), one after another:
//!
//! ```text
//! Entry = Tag (u8: 0 data, 1 close, 2 grant) ‖ Conn# (u32 BE) ‖ Len (u32 BE) ‖ Data (Len bytes)
//! ```
//!
//! A grant's data is its credit (4 bytes, u32 BE).
//!
//! Owns the buffered records and the reading position. It must not accept a replay outside
//! an interval's confirmation (`interval.rs` decides when replays are expected).

use super::{Client, ClientEvent, Delivery, Phase};
use crate::error::{IntervalError, PeerError};
use crate::field;
use crate::transcript;
use crate::wire::{ConnId, Down, REPLAY_OVERHEAD};

/// Field offsets of an entry.
mod layout {
    pub(super) const TAG: usize = 0;
    pub(super) const CONN: usize = 1;
    pub(super) const LEN: usize = 5;
    pub(super) const DATA: usize = 9;
}

/// Bytes of an entry before its data: what a client counts per replayed record.
const HEADER_LEN: usize = layout::DATA;
const _: () = assert!(HEADER_LEN == REPLAY_OVERHEAD);

const TAG_DATA: u8 = 0;
const TAG_CLOSE: u8 = 1;
const TAG_GRANT: u8 = 2;

/// Downstream records replayed after a reconnect.
#[derive(Debug)]
pub(super) struct ReplayBuffer<B> {
    storage: B,
    /// Bytes of entries held.
    used: usize,
    /// Where the application reads next, once the whole gap is checked.
    read: Option<usize>,
}

impl<B: AsRef<[u8]> + AsMut<[u8]>> ReplayBuffer<B> {
    pub(super) fn new(storage: B) -> Self {
        ReplayBuffer {
            storage,
            used: 0,
            read: None,
        }
    }

    /// Bytes the buffer holds.
    pub(super) fn capacity(&self) -> usize {
        self.storage.as_ref().len()
    }

    /// Forgets every record.
    pub(super) fn clear(&mut self) {
        self.used = 0;
        self.read = None;
    }

    /// Appends `down` (a data or close record); false if it does not fit.
    fn push(&mut self, down: &Down<'_>) -> bool {
        let grant;
        let (tag, conn, data): (u8, ConnId, &[u8]) = match *down {
            Down::Data { conn, data } => (TAG_DATA, conn, data),
            Down::Close { conn } => (TAG_CLOSE, conn, &[]),
            Down::Grant { conn, bytes } => {
                grant = bytes.to_be_bytes();
                (TAG_GRANT, conn, &grant)
            }
            Down::None => return false,
        };
        let at = self.used;
        let Some(entry) = self
            .storage
            .as_mut()
            .get_mut(at..)
            .and_then(|rest| rest.get_mut(..HEADER_LEN + data.len()))
        else {
            return false;
        };
        field::put(entry, layout::TAG, &[tag]);
        field::put(entry, layout::CONN, &conn.0.to_be_bytes());
        field::put(entry, layout::LEN, &(data.len() as u32).to_be_bytes());
        field::put(entry, layout::DATA, data);
        self.used += entry.len();
        true
    }

    /// The header of the entry at `at`: its tag, its connection, and where the next entry
    /// starts.
    fn header(&self, at: usize) -> Option<(u8, ConnId, usize)> {
        let held = self.storage.as_ref().get(at..self.used)?;
        let len = field::u32_at(held, layout::LEN) as usize;
        held.get(HEADER_LEN..)?.get(..len)?;
        Some((
            field::u8_at(held, layout::TAG),
            ConnId(field::u32_at(held, layout::CONN)),
            at + HEADER_LEN + len,
        ))
    }

    /// The data of the entry at `at`.
    fn data(&self, at: usize) -> Option<&[u8]> {
        let held = self.storage.as_ref().get(at..self.used)?;
        let len = field::u32_at(held, layout::LEN) as usize;
        held.get(HEADER_LEN..)?.get(..len)
    }
}

impl<B: AsMut<[u8]> + AsRef<[u8]>> Client<B> {
    /// A record the client missed, `seq`: checked against the chain and kept until the
    /// whole gap is in.
    pub(super) fn on_replay(&mut self, seq: u64, down: Down<'_>) -> Result<(), PeerError> {
        let Phase::AwaitReplays {
            running,
            clients,
            mut chain,
            until,
        } = self.phase
        else {
            return Err(PeerError::Unexpected);
        };
        down.check()?;
        if !down.is_record() || seq != chain.seq + 1 || seq > until.seq {
            return Err(IntervalError::Equivocation.into());
        }
        if !self.replay.push(&down) {
            return Err(IntervalError::Equivocation.into());
        }
        transcript::append(&mut chain, &down);
        if seq < until.seq {
            if let Phase::AwaitReplays { chain: c, .. } = &mut self.phase {
                *c = chain;
            }
            return Ok(());
        }
        if chain != until {
            self.replay.used = 0;
            return Err(IntervalError::Equivocation.into());
        }
        // The whole gap checks: the chain moves on, and the records go to the application
        // one by one (`delivered` follows them there).
        self.head = chain;
        self.replay.read = Some(0);
        self.push_event(ClientEvent::IntervalStarted {
            interval: running.interval,
            clients,
        });
        self.phase = Phase::Running(running);
        Ok(())
    }

    /// The next downstream record replayed after a reconnect, once the whole gap is checked.
    pub fn poll_replay(&mut self) -> Option<Delivery<'_>> {
        loop {
            let read = self.replay.read?;
            let Some((tag, conn, next)) = self.replay.header(read) else {
                self.replay.clear();
                return None;
            };
            self.replay.read = Some(next);
            let data = self.replay.data(read).unwrap_or(&[]);
            let down = match tag {
                TAG_CLOSE => Down::Close { conn },
                TAG_GRANT if data.len() == 4 => Down::Grant {
                    conn,
                    bytes: field::u32_at(data, 0),
                },
                _ => Down::Data { conn, data },
            };
            // Handed over (or not this client's): the resume point moves past it.
            transcript::append(&mut self.delivered, &down);
            if !self.connections.contains_key(&conn) {
                continue;
            }
            match down {
                Down::Close { conn } => {
                    self.connections.swap_remove(&conn);
                    return Some(Delivery::Close { conn });
                }
                Down::Grant { conn, bytes } => match self.take_grant(conn, bytes) {
                    Some(grant) => return Some(grant),
                    None => continue,
                },
                _ => {}
            }
            let data = self.replay.data(read)?;
            return Some(Delivery::Data { conn, data });
        }
    }
}
