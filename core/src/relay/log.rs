//! The downstream log: every downstream record, kept so a client that reconnects gets the
//! records it missed, checked against the head's hash chain.
//!
//! The records live in [`RelayStorage::log`](super::RelayStorage), oldest first, each
//! contiguous, the oldest evicted when a new one needs the room:
//!
//! ```text
//! Entry = Seq (u64 BE) ‖ Bytes (u64 BE: the head's byte count after it)
//!       ‖ Tag (u8: 0 data, 1 close, 2 grant) ‖ Conn# (u32 BE) ‖ Len (u32 BE) ‖ Data (Len bytes)
//! ```
//!
//! A grant's data is its credit (4 bytes, u32 BE).
//!
//! Owns the log's entries, the head and the oldest record kept. It must not decide who gets
//! a replay (that is `setup.rs`'s, when it confirms an interval to a member).

use crate::field;
use crate::ring::EntryRing;
use crate::transcript;
use crate::wire::{self, ConnId, Down, Head, Message, WireError};

/// Field offsets of a log entry.
mod layout {
    pub(super) const SEQ: usize = 0;
    pub(super) const BYTES: usize = 8;
    pub(super) const TAG: usize = 16;
    pub(super) const CONN: usize = 17;
    pub(super) const LEN: usize = 21;
    pub(super) const DATA: usize = 25;
}

/// Bytes of an entry before its data.
pub(super) const HEADER_LEN: usize = layout::DATA;

const TAG_DATA: u8 = 0;
const TAG_CLOSE: u8 = 1;
const TAG_GRANT: u8 = 2;

/// A checked view of one log entry.
#[derive(Debug, Clone, Copy)]
struct LogEntry<'a> {
    bytes: &'a [u8],
}

impl<'a> LogEntry<'a> {
    /// Checks that `bytes` start with a whole entry (header and data) and views it.
    fn new_checked(bytes: &'a [u8]) -> Option<Self> {
        let len = entry_len(bytes);
        (bytes.len() >= HEADER_LEN).then_some(())?;
        bytes.get(..len).map(|bytes| LogEntry { bytes })
    }

    /// The record's sequence number.
    fn seq(&self) -> u64 {
        field::u64_at(self.bytes, layout::SEQ)
    }

    /// Bytes of data.
    fn data_len(&self) -> usize {
        self.bytes.len() - HEADER_LEN
    }

    /// The record.
    fn down(&self) -> Down<'a> {
        let conn = ConnId(field::u32_at(self.bytes, layout::CONN));
        let data = self.bytes.get(HEADER_LEN..).unwrap_or(&[]);
        match field::u8_at(self.bytes, layout::TAG) {
            TAG_CLOSE => Down::Close { conn },
            TAG_GRANT => Down::Grant {
                conn,
                bytes: field::u32_at(data, 0),
            },
            _ => Down::Data { conn, data },
        }
    }
}

/// An entry's whole length, read from its `Len` field.
fn entry_len(bytes: &[u8]) -> usize {
    HEADER_LEN + field::u32_at(bytes, layout::LEN) as usize
}

/// Writes the entry of record `down` with sequence number `seq` into `entry`, which is
/// exactly as long as the entry.
fn emit_entry(entry: &mut [u8], seq: u64, bytes: u64, down: &Down<'_>) {
    let grant;
    let (tag, conn, data): (u8, ConnId, &[u8]) = match *down {
        Down::Data { conn, data } => (TAG_DATA, conn, data),
        Down::Close { conn } => (TAG_CLOSE, conn, &[]),
        Down::Grant { conn, bytes } => {
            grant = bytes.to_be_bytes();
            (TAG_GRANT, conn, &grant)
        }
        Down::None => return,
    };
    field::put(entry, layout::SEQ, &seq.to_be_bytes());
    field::put(entry, layout::BYTES, &bytes.to_be_bytes());
    field::put(entry, layout::TAG, &[tag]);
    field::put(entry, layout::CONN, &conn.0.to_be_bytes());
    field::put(entry, layout::LEN, &(data.len() as u32).to_be_bytes());
    field::put(entry, layout::DATA, data);
}

/// The downstream log and its head.
#[derive(Debug)]
pub(super) struct DownstreamLog<B> {
    entries: EntryRing<B>,
    /// Every record so far, hashed in a chain.
    head: Head,
    /// Sequence number of the oldest record kept (one past the head when none is).
    oldest: u64,
}

impl<B: AsRef<[u8]> + AsMut<[u8]>> DownstreamLog<B> {
    /// An empty log over `storage`, for the relay instance `epoch`.
    pub(super) fn new(storage: B, epoch: &[u8; 16]) -> Self {
        DownstreamLog {
            entries: EntryRing::new(storage, entry_len),
            head: transcript::genesis(epoch),
            oldest: 1,
        }
    }

    /// The head: the last record's number, the bytes so far and the chain hash.
    pub(super) fn head(&self) -> Head {
        self.head
    }

    /// Sequence number of the oldest record the log can still replay.
    pub(super) fn oldest(&self) -> u64 {
        self.oldest
    }

    /// Appends a downstream record to the head and the log (evicting the oldest records).
    pub(super) fn record(&mut self, down: &Down<'_>) {
        if !down.is_record() {
            return;
        }
        transcript::append(&mut self.head, down);
        let data = match *down {
            Down::Data { data, .. } => data.len(),
            Down::Grant { .. } => wire::GRANT_LEN,
            _ => 0,
        };
        let need = HEADER_LEN + data;
        if need > self.entries.capacity() {
            self.entries.clear();
            self.oldest = self.head.seq + 1;
            return;
        }
        while !self.entries.fits(need) {
            self.entries.pop_front();
            self.oldest += 1;
        }
        let (seq, bytes) = (self.head.seq, self.head.bytes);
        if let Some((_, entry)) = self.entries.push(need) {
            emit_entry(entry, seq, bytes, down);
        }
    }

    /// Data bytes of the largest record in the log.
    pub(super) fn largest(&self) -> u32 {
        self.entries
            .iter()
            .filter_map(|(_, e)| LogEntry::new_checked(e))
            .map(|e| e.data_len() as u32)
            .max()
            .unwrap_or(0)
    }

    /// The first record to replay to a member holding records up to `seq`, and its log
    /// offset, if it missed some the log still holds and they fit its frame limit (given
    /// the log's `largest` record). Whether they fit its replay capacity is the caller's
    /// rule (`losses.rs`, as every client applies it). One pass over the log.
    pub(super) fn replay_start(
        &self,
        seq: u64,
        max_frame: u32,
        largest: u32,
    ) -> Option<(u64, usize)> {
        if seq >= self.head.seq || seq.saturating_add(1) < self.oldest {
            return None;
        }
        if largest as usize + wire::REPLAY_FRAME_OVERHEAD > max_frame as usize {
            return None;
        }
        self.entries
            .iter()
            .find(|(_, e)| LogEntry::new_checked(e).is_some_and(|e| e.seq() > seq))
            .map(|(at, _)| (seq + 1, at))
    }

    /// The replay of record `seq`, at log offset `at`: its frame length and the next
    /// record's offset. `None` if the log has no such record there.
    pub(super) fn emit_replay(
        &self,
        seq: u64,
        at: usize,
        out: &mut [u8],
    ) -> Result<Option<(usize, Option<usize>)>, WireError> {
        let Some(e) = self
            .entries
            .entry(at)
            .and_then(LogEntry::new_checked)
            .filter(|e| e.seq() == seq)
        else {
            return Ok(None);
        };
        let n = Message::Replay {
            seq,
            down: e.down(),
        }
        .emit_frame(out)?;
        Ok(Some((n, self.entries.after(at))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONN: ConnId = ConnId(0x0001_0002);

    fn data(bytes: &[u8]) -> Down<'_> {
        Down::Data {
            conn: CONN,
            data: bytes,
        }
    }

    #[test]
    fn entries_keep_their_fields_and_evict_the_oldest() {
        let mut log = DownstreamLog::new([0u8; 3 * HEADER_LEN + 7], &[1; 16]);
        log.record(&data(b"abcd"));
        log.record(&Down::Close { conn: CONN });
        assert_eq!((log.head().seq, log.oldest(), log.largest()), (2, 1, 4));
        let mut out = [0u8; 64];
        let (n, next) = log.emit_replay(1, 0, &mut out).unwrap().unwrap();
        let body = &out[wire::FRAME_HEADER_LEN..n];
        assert_eq!(
            Message::parse(body).unwrap(),
            Message::Replay {
                seq: 1,
                down: data(b"abcd")
            }
        );
        let second = next.unwrap();
        assert_eq!(second, HEADER_LEN + 4);
        let (n, next) = log.emit_replay(2, second, &mut out).unwrap().unwrap();
        assert_eq!(
            Message::parse(&out[wire::FRAME_HEADER_LEN..n]).unwrap(),
            Message::Replay {
                seq: 2,
                down: Down::Close { conn: CONN }
            }
        );
        assert_eq!(next, None);
        // A record of another number at that offset is not replayed.
        assert_eq!(log.emit_replay(3, second, &mut out), Ok(None));
        // A member holding record 0 gets both, from the first, within its frames.
        assert_eq!(log.replay_start(0, 4096, 4), Some((1, 0)));
        assert_eq!(log.replay_start(0, 35, 4), None);
        assert_eq!(log.replay_start(2, 4096, 4), None);
        // A third record evicts the first.
        log.record(&data(b"efgh"));
        assert_eq!((log.head().seq, log.oldest()), (3, 2));
        assert_eq!(log.replay_start(0, 4096, 4), None);
        assert_eq!(log.replay_start(1, 4096, 4), Some((2, second)));
        // A record longer than the whole log empties it.
        log.record(&data(&[7; 3 * HEADER_LEN]));
        assert_eq!((log.head().seq, log.oldest(), log.largest()), (4, 5, 0));
    }
}
