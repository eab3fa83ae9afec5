//! The stage: the records of this client's next owned cell, pulled from the application
//! (and from cells to send again) before the exchange comes, so the cell itself is only a
//! copy and the pads.
//!
//! The records live in [`ClientStorage::stage`](super::ClientStorage), one cell long, in
//! the cell's own record format (`wire::CellView`). After an owned cell went out, the
//! prefix it took moves to the sent ring (`sent.rs`).
//!
//! Owns what is staged and how much of it the last owned cell took. It must not build
//! cells (`request.rs`) or decide what is sent again (`sent.rs`).

use super::sent::{connections_in, State};
use super::{Chunk, Client, ClientEvent, Phase, SendCredits, Upstream};
use crate::time::Instant;
use crate::wire::{
    self, read_record, read_record_header, write_header, write_record_header, RecordKind,
    RECORD_HEADER_LEN,
};

/// Which prefix of the stage went into an owned cell: `whole` bytes of whole records, then
/// optionally the first `part` payload bytes of the record at `whole`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Taken {
    pub(super) interval: u32,
    pub(super) exchange: u64,
    pub(super) whole: usize,
    pub(super) part: Option<usize>,
}

impl Taken {
    /// Bytes of records the cell carried (a split record with its own header).
    fn content(&self) -> usize {
        self.whole + self.part.map_or(0, |p| RECORD_HEADER_LEN + p)
    }
}

/// Records waiting for this client's next owned cell.
#[derive(Debug)]
pub(super) struct Stage<B> {
    storage: B,
    /// Bytes of records staged.
    used: usize,
    /// The prefix the last owned cell took, until it moves to the sent ring.
    pub(super) taken: Option<Taken>,
    /// Counts changes other than appends (a cell prepared from the stage is rebuilt).
    pub(super) version: u32,
}

impl<B: AsRef<[u8]> + AsMut<[u8]>> Stage<B> {
    pub(super) fn new(storage: B) -> Self {
        Stage {
            storage,
            used: 0,
            taken: None,
            version: 0,
        }
    }

    /// The records staged.
    pub(super) fn records(&self) -> &[u8] {
        let storage = self.storage.as_ref();
        storage.get(..self.used).unwrap_or(storage)
    }

    /// Bytes of records staged.
    pub(super) fn len(&self) -> usize {
        self.used
    }

    pub(super) fn is_empty(&self) -> bool {
        self.used == 0
    }

    /// Drops every staged record.
    pub(super) fn clear(&mut self) {
        self.used = 0;
        self.version = self.version.wrapping_add(1);
    }

    /// Appends `record` (a whole record, header included); false if it does not fit.
    pub(super) fn push(&mut self, record: &[u8]) -> bool {
        let at = self.used;
        match self
            .storage
            .as_mut()
            .get_mut(at..)
            .and_then(|rest| rest.get_mut(..record.len()))
        {
            Some(dst) => {
                dst.copy_from_slice(record);
                self.used += record.len();
                true
            }
            None => false,
        }
    }

    /// The bytes after the staged records, up to `room` bytes of the cell in all.
    fn free(&mut self, room: usize) -> &mut [u8] {
        let end = room.min(self.storage.as_ref().len());
        self.storage
            .as_mut()
            .get_mut(self.used..end)
            .unwrap_or(&mut [])
    }
}

impl<B: AsMut<[u8]> + AsRef<[u8]>> Client<B> {
    /// Prepares this client's next owned cell: finishes the bookkeeping of the last one,
    /// then stages bytes to send again, then the application's bytes and closes.
    ///
    /// Call it after handling each frame (after sending its cell) and whenever the
    /// application has something new; it never blocks and pulls at most one cell's worth.
    pub fn prepare(&mut self, now: Instant, upstream: &mut dyn Upstream) {
        let before = (self.stage.len(), self.stage.version);
        self.commit_taken();
        self.keep_copied();
        self.account_transmission();
        let cap = match &self.phase {
            Phase::Running(running) => (running.params.max_len as usize).min(self.max_cell),
            _ => self.cell_len,
        };
        let budget = Self::record_room(cap);
        if self.sent.room() < budget && self.sent.resend_pending() {
            // Take back the room of what is confirmed or already staged again.
            self.sent.compact();
        }
        // An accusation first: it is small, and it waits for nothing.
        self.stage_accusation(budget.min(self.sent.room_for_new()));
        let resending = self.stage_resends(budget.min(self.sent.room()));
        if !resending {
            // New data leaves the reserve free.
            let room = budget.min(self.sent.room_for_new());
            // Grants first: they must not wait behind the connection's own uploads.
            self.stage_grants(room);
            self.stage_upstream(room, upstream);
            self.stage_opens(room);
        }
        self.pending_hint = upstream.pending();
        if !self.stage.is_empty() || resending || self.pending_hint > 0 {
            self.last_data = Some(now);
        }
        self.reseal(now);
        // Between two cells, one preparation of new bytes out of turn: the first that
        // staged something. One that staged nothing (the application only took
        // downstream bytes, or nothing was waiting) leaves the next bytes theirs.
        let staged = (self.stage.len(), self.stage.version) != before;
        let after_cell = core::mem::take(&mut self.answered_since_prepare);
        self.prompt = self.pending_hint == 0 && (after_cell || !staged);
    }

    /// Whether bytes the application offers now (new bytes, a close, downstream bytes it
    /// took) should be handed over with a [`Client::prepare`] at once, rather than wait
    /// for the preparation after the next cell.
    ///
    /// True after a cell while the application had nothing more waiting, until a
    /// preparation stages something: so the first bytes after a quiet spell go out in
    /// the next owned cell, and a busy sender's bytes wake nothing (each cell's
    /// preparation takes them, and the cell is sealed once per cell).
    pub fn wants_upstream(&self) -> bool {
        self.prompt
    }

    /// Stages records of cells to send again; true while some remain after this.
    fn stage_resends(&mut self, room: usize) -> bool {
        loop {
            let Some((entry, records)) = self
                .sent
                .iter()
                .find(|(_, e)| e.state() == Some(State::Resend))
                .map(|(at, e)| (at, e.records().len()))
            else {
                return false;
            };
            let start = entry + super::sent::HEADER_LEN;
            let end = start + records;
            let mut at = self
                .sent
                .resend_at
                .filter(|&a| a >= start && a <= end)
                .unwrap_or(start);
            let Some(records) = self.sent.records_mut(entry) else {
                return false;
            };
            // Offsets below are into the entry's records.
            while at + RECORD_HEADER_LEN <= end {
                let Some(rest) = records.get_mut(at - start..end - start) else {
                    break;
                };
                let (conn, open, n) = read_record_header(rest);
                let rec = RECORD_HEADER_LEN + n;
                if !self.connections.contains_key(&conn) && !is_abort(rest) {
                    at += rec;
                    continue;
                }
                let free = room.saturating_sub(self.stage.len());
                if rec <= free {
                    if let Some(record) = rest.get(..rec) {
                        self.stage.push(record);
                    }
                    at += rec;
                    continue;
                }
                if n > 0 && free > RECORD_HEADER_LEN && is_data(rest) {
                    let part = free - RECORD_HEADER_LEN;
                    let dst = self.stage.free(room);
                    if let (Some(dst), Some(payload)) = (
                        dst.get_mut(..free),
                        rest.get(RECORD_HEADER_LEN..RECORD_HEADER_LEN + part),
                    ) {
                        let (header, body) = dst.split_at_mut(RECORD_HEADER_LEN);
                        write_record_header(header, conn, open, part);
                        body.copy_from_slice(payload);
                        self.stage.used += free;
                    }
                    // The rest of the record stays, as a record of its own.
                    at += part;
                    if let Some(rest) = rest.get_mut(part..) {
                        write_record_header(rest, conn, false, n - part);
                    }
                }
                self.sent.resend_at = Some(at);
                return true;
            }
            self.sent.set_state(entry, State::Confirmed);
            self.sent.resend_at = None;
            self.sent.pop_done();
        }
    }

    /// Stages the application's bytes and closes, as far as `room` allows.
    fn stage_upstream(&mut self, room: usize, upstream: &mut dyn Upstream) {
        while self.stage.len() + RECORD_HEADER_LEN < room {
            let limit = (room - self.stage.len() - RECORD_HEADER_LEN).min(wire::MAX_PAYLOAD);
            let free = self.stage.free(room);
            let Some((header, rest)) = free.split_first_chunk_mut::<RECORD_HEADER_LEN>() else {
                break;
            };
            let credit = SendCredits {
                connections: &self.connections,
            };
            let Some(chunk) = upstream.next_chunk(rest.get_mut(..limit).unwrap_or(&mut []), credit)
            else {
                break;
            };
            match chunk {
                Chunk::Data { conn, len } if len > 0 && len <= limit => {
                    let Some(c) = self.connections.get_mut(&conn).filter(|c| !c.finished) else {
                        // Bytes for a connection that is gone: dropped.
                        continue;
                    };
                    if len > c.send.available() as usize {
                        // Beyond the connection's credit: never sent. The connection
                        // cannot go on without these bytes, so it ends here.
                        let announced = c.announced;
                        self.connections.swap_remove(&conn);
                        if announced {
                            write_header(header, conn, RecordKind::Abort, 0);
                            self.stage.used += RECORD_HEADER_LEN;
                        }
                        self.push_event(ClientEvent::Lost { conn });
                        continue;
                    }
                    c.send.spend(len as u32);
                    let open = !c.announced;
                    c.announced = true;
                    write_record_header(header, conn, open, len);
                    self.stage.used += RECORD_HEADER_LEN + len;
                }
                Chunk::Close { conn } => match self.connections.get_mut(&conn) {
                    Some(c) if c.finished => {}
                    Some(c) if !c.announced => {
                        // Never announced: the exit never heard of it.
                        self.connections.swap_remove(&conn);
                    }
                    Some(c) => {
                        c.finished = true;
                        write_record_header(header, conn, false, 0);
                        self.stage.used += RECORD_HEADER_LEN;
                    }
                    None => {}
                },
                Chunk::Abort { conn } => match self.connections.swap_remove(&conn) {
                    // The exit heard of it: it drops the connection. The record is sent
                    // (and sent again) like any other, though the client forgot `conn`.
                    Some(c) if c.announced => {
                        write_header(header, conn, RecordKind::Abort, 0);
                        self.stage.used += RECORD_HEADER_LEN;
                    }
                    _ => {}
                },
                Chunk::Read { conn, bytes } => {
                    let Some(c) = self.connections.get_mut(&conn).filter(|c| c.announced) else {
                        continue;
                    };
                    c.credit.took(bytes);
                    let Some(grant) = c.credit.grant() else {
                        continue;
                    };
                    match rest
                        .get_mut(..wire::GRANT_LEN)
                        .filter(|_| limit >= wire::GRANT_LEN)
                    {
                        Some(payload) => {
                            payload.copy_from_slice(&grant.to_be_bytes());
                            write_header(header, conn, RecordKind::Grant, wire::GRANT_LEN);
                            self.stage.used += RECORD_HEADER_LEN + wire::GRANT_LEN;
                        }
                        // No room: the next cell takes it.
                        None => c.credit.keep(grant),
                    }
                }
                Chunk::Data { .. } => {}
            }
        }
    }

    /// Stages a `Grant` for every announced connection whose application took a grant
    /// step's worth of downstream bytes since the last one.
    fn stage_grants(&mut self, room: usize) {
        for (&conn, c) in self.connections.iter_mut() {
            if !c.announced {
                continue;
            }
            let Some(bytes) = c.credit.grant() else {
                continue;
            };
            let len = RECORD_HEADER_LEN + wire::GRANT_LEN;
            if self.stage.len() + len > room {
                c.credit.keep(bytes);
                continue;
            }
            let mut record = [0u8; RECORD_HEADER_LEN + wire::GRANT_LEN];
            let (header, payload) = record.split_at_mut(RECORD_HEADER_LEN);
            write_header(header, conn, RecordKind::Grant, wire::GRANT_LEN);
            payload.copy_from_slice(&bytes.to_be_bytes());
            self.stage.push(&record);
        }
    }

    /// Stages a bare OPEN for every connection with nothing sent yet (servers that speak
    /// first are reached).
    fn stage_opens(&mut self, room: usize) {
        for (&conn, c) in self.connections.iter_mut() {
            if c.announced || self.stage.len() + RECORD_HEADER_LEN > room {
                continue;
            }
            c.announced = true;
            let mut header = [0u8; RECORD_HEADER_LEN];
            write_record_header(&mut header, conn, true, 0);
            self.stage.push(&header);
        }
    }

    /// Moves the stage's last sent prefix into the sent ring (as sent, unconfirmed).
    pub(super) fn commit_taken(&mut self) {
        let Some(taken) = self.stage.taken.take() else {
            return;
        };
        let content = taken.content();
        let staged = self.stage.records();
        let split = taken
            .part
            .and_then(|_| staged.get(taken.whole..))
            .map(read_record_header);
        let pushed = self
            .sent
            .push(State::Sent, taken.interval, taken.exchange, content);
        // Staging never takes more than the ring can keep, so this holds; should it not,
        // the bytes could not be sent again, and their connections end now rather than
        // with a hole later.
        let kept = match pushed {
            Some(dst) => {
                let (whole, rest) = dst.split_at_mut(taken.whole.min(dst.len()));
                if let Some(src) = staged.get(..taken.whole) {
                    whole.copy_from_slice(src);
                }
                if let (Some(part), Some((conn, open, _))) = (taken.part, split) {
                    let payload = staged
                        .get(taken.whole + RECORD_HEADER_LEN..)
                        .and_then(|p| p.get(..part));
                    if let (Some((header, body)), Some(payload)) =
                        (rest.split_first_chunk_mut::<RECORD_HEADER_LEN>(), payload)
                    {
                        write_record_header(header, conn, open, part);
                        if let Some(body) = body.get_mut(..part) {
                            body.copy_from_slice(payload);
                        }
                    }
                }
                true
            }
            None => {
                // The records taken, the split one whole.
                let end = taken.whole + split.map_or(0, |(_, _, n)| RECORD_HEADER_LEN + n);
                let gone = connections_in(staged.get(..end).unwrap_or(staged));
                self.lose(gone);
                false
            }
        };
        // Drop the sent prefix from the stage; a split record keeps its tail, no longer
        // opening its connection.
        let mut from = taken.whole;
        if let (Some(part), Some((conn, _, n))) = (taken.part, split) {
            from += part;
            if let Some(header) = self.stage.storage.as_mut().get_mut(from..) {
                write_record_header(header, conn, false, n - part);
            }
        }
        let end = self.stage.used;
        let from = from.min(end);
        self.stage.storage.as_mut().copy_within(from..end, 0);
        self.stage.used = end - from;
        self.stage.version = self.stage.version.wrapping_add(1);
        if !kept {
            self.purge_stage();
        }
    }

    /// Drops the stage's records of connections that ended: their bytes must not reach
    /// the exit after a gap. Only while the stage has no taken prefix.
    pub(super) fn purge_stage(&mut self) {
        let (mut read, mut kept) = (0, 0);
        let used = self.stage.used;
        let storage = self.stage.storage.as_mut();
        while read + RECORD_HEADER_LEN <= used {
            let Some(rest) = storage.get(read..used) else {
                break;
            };
            let (conn, _, n) = read_record_header(rest);
            let rec = (RECORD_HEADER_LEN + n).min(rest.len());
            if self.connections.contains_key(&conn) || is_abort(rest) {
                storage.copy_within(read..read + rec, kept);
                kept += rec;
            }
            read += rec;
        }
        self.stage.used = kept;
        self.stage.version = self.stage.version.wrapping_add(1);
    }
}

/// Whether the record at the start of `b` carries connection bytes (`Open` or `Data`): only
/// those may be split across cells.
pub(super) fn is_data(b: &[u8]) -> bool {
    matches!(read_record(b).1, Some(RecordKind::Open | RecordKind::Data))
}

/// Whether the record at the start of `b` is an abort: it stays though its connection is
/// gone (the client forgot it when the application left).
fn is_abort(b: &[u8]) -> bool {
    read_record(b).1 == Some(RecordKind::Abort)
}
