//! The downstream log: every downstream record, kept so a client that reconnects gets the
//! records it missed, checked against the head's hash chain.
//!
//! Owns the log's entries and the head. It must not decide who gets a replay (that is
//! `setup.rs`'s, when it confirms an interval to a member).

use super::*;

/// Bytes of a log entry header: seq, bytes after, tag, conn, data length.
pub(super) const LOG_HEADER: usize = 8 + 8 + 1 + 4 + 4;

pub(super) fn log_entry_len(b: &[u8]) -> usize {
    LOG_HEADER + u32::from_be_bytes([b[21], b[22], b[23], b[24]]) as usize
}

/// A log entry's sequence number.
pub(super) fn log_seq(b: &[u8]) -> u64 {
    u64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
}

impl<P, B> Relay<P, B>
where
    P: AsMut<[Peer]> + AsRef<[Peer]>,
    B: AsMut<[u8]> + AsRef<[u8]>,
{
    /// Data bytes of the largest record in the log.
    pub(super) fn largest_record(&self) -> u32 {
        let buf = &self.store.as_ref()[self.regions.down..self.regions.log];
        self.log
            .offsets(buf, log_entry_len)
            .map(|o| (log_entry_len(&buf[o..]) - LOG_HEADER) as u32)
            .max()
            .unwrap_or(0)
    }

    /// The first record to replay to a member and its log offset, if it missed some the log
    /// still holds and they fit its limits (the client applies the same rule). One pass
    /// over the log.
    pub(super) fn replay_start(&self, p: &Peer, largest: u32) -> Option<(u64, usize)> {
        let seq = p.seq?;
        if seq >= self.head.seq || seq.saturating_add(1) < self.oldest {
            return None;
        }
        if largest as usize + wire::REPLAY_FRAME_OVERHEAD > p.max_frame as usize {
            return None;
        }
        let buf = &self.store.as_ref()[self.regions.down..self.regions.log];
        let mut first = None;
        let mut bytes = 0u64;
        for o in self.log.offsets(buf, log_entry_len) {
            let e = &buf[o..];
            if log_seq(e) > seq {
                first.get_or_insert(o);
                bytes += (log_entry_len(e) - LOG_HEADER + wire::REPLAY_OVERHEAD) as u64;
            }
        }
        let at = first?;
        (bytes <= u64::from(p.replay_limit)).then_some((seq + 1, at))
    }

    /// The replay of record `seq`, at log offset `at`: its frame length and the next
    /// record's offset. `None` if the log has no such record there.
    pub(super) fn emit_replay(
        &self,
        seq: u64,
        at: usize,
        out: &mut [u8],
    ) -> Result<Option<(usize, Option<usize>)>, WireError> {
        let buf = &self.store.as_ref()[self.regions.down..self.regions.log];
        let Some(e) = buf
            .get(at..)
            .filter(|e| e.len() >= LOG_HEADER && log_seq(e) == seq)
        else {
            return Ok(None);
        };
        let len = log_entry_len(e);
        let conn = ConnId(u32::from_be_bytes([e[17], e[18], e[19], e[20]]));
        let down = if e[16] == 1 {
            Down::Close { conn }
        } else {
            Down::Data {
                conn,
                data: &e[LOG_HEADER..len],
            }
        };
        let n = Message::Replay { seq, down }.emit_frame(out)?;
        Ok(Some((n, self.log.after(at, len))))
    }

    /// Appends a downstream record to the head and the log (evicting the oldest records).
    pub(super) fn log_record(&mut self, down: PendingDown) {
        let d = self.regions.outs;
        let (tag, conn, len) = match down {
            PendingDown::None => return,
            PendingDown::Data { conn, len } => (0u8, conn, len),
            PendingDown::Close { conn } => (1u8, conn, 0),
        };
        {
            let store = self.store.as_ref();
            let rec = match down {
                PendingDown::Data { conn, len } => Down::Data {
                    conn,
                    data: &store[d..d + len],
                },
                _ => Down::Close { conn },
            };
            let mut head = self.head;
            transcript::append(&mut head, &rec);
            self.head = head;
        }
        let cap = self.regions.log - self.regions.down;
        let need = LOG_HEADER + len;
        if need > cap {
            self.log.clear();
            self.oldest = self.head.seq + 1;
            return;
        }
        let at = loop {
            if let Some(at) = self.log.push(cap, need) {
                break at;
            }
            let buf = &self.store.as_ref()[self.regions.down..self.regions.log];
            self.log.pop(buf, log_entry_len);
            self.oldest += 1;
        };
        let (seq, bytes) = (self.head.seq, self.head.bytes);
        let (low, high) = self.store.as_mut().split_at_mut(self.regions.down);
        let e = &mut high[at..at + need];
        e[..8].copy_from_slice(&seq.to_be_bytes());
        e[8..16].copy_from_slice(&bytes.to_be_bytes());
        e[16] = tag;
        e[17..21].copy_from_slice(&conn.0.to_be_bytes());
        e[21..25].copy_from_slice(&(len as u32).to_be_bytes());
        e[LOG_HEADER..].copy_from_slice(&low[d..d + len]);
    }
}
