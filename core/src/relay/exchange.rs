//! Exchanges of a running interval: requests to trustees and members, cells in, the XOR of
//! all cells, the decoded records out to the exit, and the outputs reported back.
//!
//! Owns the per-exchange state of the window and the queue of outputs not yet reported. It
//! must not change the set of members (that ends the interval: `interval.rs`).

use super::*;

/// A downstream chunk from the exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DownChunk {
    /// `len` bytes for `conn`, written to the start of the buffer.
    Data {
        /// The connection.
        conn: ConnId,
        /// Bytes written (at least 1).
        len: usize,
    },
    /// The exit's side of `conn` ended.
    Close {
        /// The connection.
        conn: ConnId,
    },
}

/// Source of downstream bytes (replies from the exit), asked once per exchange.
pub trait Downstream {
    /// Whether any bytes or closes are waiting.
    fn has_data(&self) -> bool;
    /// Writes the next bytes of one connection into `buf`, or reports a close.
    fn next_chunk(&mut self, buf: &mut [u8]) -> Option<DownChunk>;
}

/// A [`Downstream`] with nothing to send.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoDownstream;

impl Downstream for NoDownstream {
    fn has_data(&self) -> bool {
        false
    }
    fn next_chunk(&mut self, _buf: &mut [u8]) -> Option<DownChunk> {
        None
    }
}

#[derive(Debug, Clone, Copy)]
pub(super) struct SlotMeta {
    pub(super) kind: Kind,
    pub(super) issued: Instant,
    pub(super) trustees: u32,
    pub(super) clients: u32,
}

#[derive(Debug, Clone, Copy)]
pub(super) enum PendingDown {
    None,
    Data { conn: ConnId, len: usize },
    Close { conn: ConnId },
}

/// Record cursor over a decoded cell: ring index, next offset, end of records.
#[derive(Debug, Clone, Copy)]
pub(super) struct Decoding {
    pub(super) at: usize,
    pub(super) end: usize,
}

impl<P, B> Relay<P, B>
where
    P: AsMut<[Peer]> + AsRef<[Peer]>,
    B: AsMut<[u8]> + AsRef<[u8]>,
{
    pub(super) fn on_cell(
        &mut self,
        peer: PeerId,
        interval: u32,
        exchange: u64,
        cell: &[u8],
    ) -> Result<(), PeerError> {
        let r = match self.phase {
            Phase::Running(r) if r.interval == interval => r,
            _ if self.is_past(interval) => {
                self.stale_cells += 1;
                return Ok(());
            }
            _ => return Err(PeerError::Cell(CellError::UnknownInterval(interval))),
        };
        if let Some(Stop::Abort { .. }) = r.stop {
            // The interval is over; late cells are harmless.
            self.stale_cells += 1;
            return Ok(());
        }
        if exchange < r.done {
            return Err(PeerError::Cell(CellError::Duplicate(exchange)));
        }
        if exchange >= r.next
            || (matches!(peer, PeerId::Client(_)) && exchange >= self.client_limit(&r))
        {
            return Err(PeerError::Cell(CellError::NotRequested(exchange)));
        }
        let w = u64::from(self.cfg.window);
        let idx = (exchange % w) as usize;
        let len = self.meta[idx].kind.cell_len(self.cfg.slots);
        if cell.len() != len {
            return Err(PeerError::Cell(CellError::Length(cell.len())));
        }
        let nb = bitmap_len(usize::from(self.cfg.clients));
        match peer {
            PeerId::Client(i) => {
                let i = usize::from(i);
                if !bits::test(self.online_bits(), i) {
                    return Err(PeerError::Cell(CellError::NotMember));
                }
                let start = self.regions.online + idx * nb;
                let contrib = &mut self.store.as_mut()[start..start + nb];
                if bits::test(contrib, i) {
                    return Err(PeerError::Cell(CellError::Duplicate(exchange)));
                }
                bits::set(contrib, i);
                self.meta[idx].clients += 1;
            }
            PeerId::Trustee(t) => {
                if self.meta[idx].trustees & (1 << t) != 0 {
                    return Err(PeerError::Cell(CellError::Duplicate(exchange)));
                }
                self.meta[idx].trustees |= 1 << t;
            }
        }
        let x = self.cfg.max_exchange_len();
        let at = self.regions.contrib + idx * x;
        xor_into(&mut self.store.as_mut()[at..at + len], cell);
        Ok(())
    }

    /// Clients are asked for the same exchanges as trustees (one window for both).
    pub(super) fn client_limit(&self, r: &Running) -> u64 {
        match r.client_pending {
            Some((e, ..)) => e,
            None => r.next,
        }
    }

    pub(super) fn complete(&self, r: &Running, exchange: u64) -> bool {
        let m = &self.meta[(exchange % u64::from(self.cfg.window)) as usize];
        exchange < self.client_limit(r) && m.trustees == self.all_trustees && m.clients == r.members
    }

    /// Next event; decoded upstream data borrows the relay until the event is dropped.
    #[must_use]
    pub fn poll_event(&mut self, now: Instant) -> Option<RelayEvent<'_>> {
        if let Some(e) = self.events.pop_front() {
            return Some(e);
        }
        if let Some(d) = self.decoding {
            return self.next_record(d);
        }
        let Phase::Running(mut r) = self.phase else {
            return None;
        };
        let end = match r.stop {
            Some(Stop::Abort { end_at }) => end_at,
            _ => r.next,
        };
        if r.done >= end || !self.complete(&r, r.done) {
            self.advance(now);
            return self.events.pop_front();
        }
        if self.outq_len >= 2 * usize::from(self.cfg.window) {
            // Outputs must be reported before more exchanges are decoded.
            return None;
        }
        let exchange = r.done;
        r.done += 1;
        self.decoded += 1;
        self.phase = Phase::Running(r);
        let idx = (exchange % u64::from(self.cfg.window)) as usize;
        let kind = self.meta[idx].kind;
        let len = kind.cell_len(self.cfg.slots);
        let at = self.regions.contrib + idx * self.cfg.max_exchange_len();
        match kind {
            Kind::Reserve => {
                // Bits past the last slot carry nothing: a client that sets them only wastes
                // its own cell, and nodes would refuse them in the report.
                let slots = usize::from(self.cfg.slots);
                if slots % 8 != 0 && len > 0 {
                    self.store.as_mut()[at + len - 1] &= (1u8 << (slots % 8)) - 1;
                }
                self.idle = self.store.as_ref()[at..at + len].iter().all(|&b| b == 0);
                self.queue_requests_output(at, len);
                if !self.idle {
                    self.gap = Duration::default();
                }
                self.poll_event_tail(now)
            }
            Kind::Slot { slot, .. } => {
                let acc = &self.store.as_ref()[at..at + len];
                let (next, decoded) = match CellView::parse(acc) {
                    Ok(view) => {
                        let ok = view.records().all(|rec| rec.conn().slot() == Some(slot));
                        if ok {
                            let start = at + wire::NEXT_LEN;
                            let used = view.records_len();
                            // No room left for even one more byte in a record.
                            self.burst = len < start - at + used + wire::RECORD_HEADER_LEN + 1;
                            (view.next(), Some((start, start + used, view.is_empty())))
                        } else {
                            (0, None)
                        }
                    }
                    Err(_) => (0, None),
                };
                if decoded.is_none() {
                    // A garbled exchange (a disruption, or members shown different views):
                    // nothing from it or after it reaches the exit, so every owner's bytes
                    // stay in order. The interval ends here; owners resend from this exchange.
                    self.decoded -= 1;
                    if let Phase::Running(r) = &mut self.phase {
                        r.done = exchange;
                        r.stop = Some(Stop::Abort { end_at: exchange });
                        r.client_pending = None;
                    }
                    self.idle = false;
                    self.burst = false;
                    return Some(RelayEvent::Garbled {
                        interval: r.interval,
                        exchange,
                    });
                }
                self.queue_next_output(next);
                match decoded {
                    Some((start, end, empty)) => {
                        self.idle = empty;
                        if !empty {
                            self.gap = Duration::default();
                            self.decoded_slot = slot;
                            self.decoding = Some(Decoding { at: start, end });
                            return self.next_record(Decoding { at: start, end });
                        }
                        self.poll_event_tail(now)
                    }
                    None => self.poll_event_tail(now),
                }
            }
        }
    }

    pub(super) fn poll_event_tail(&mut self, now: Instant) -> Option<RelayEvent<'_>> {
        self.advance(now);
        if let Some(e) = self.events.pop_front() {
            return Some(e);
        }
        // Look further: the next exchange may be complete too.
        if matches!(self.phase, Phase::Running(_)) {
            return self.poll_event(now);
        }
        None
    }

    pub(super) fn next_record(&mut self, d: Decoding) -> Option<RelayEvent<'_>> {
        // The cell was checked whole when it was decoded: one record at a time from here.
        let store = self.store.as_ref();
        let Some(rec) = Records::checked(&store[d.at..d.end]).next() else {
            self.decoding = None;
            return None;
        };
        let next_at = d.at + rec.wire_len();
        self.decoding = (next_at < d.end).then_some(Decoding {
            at: next_at,
            end: d.end,
        });
        Some(match rec {
            Record::Data {
                conn,
                open,
                payload,
            } => RelayEvent::Upstream {
                conn,
                open,
                data: payload,
            },
            Record::Close { conn } => RelayEvent::Close { conn },
        })
    }

    pub(super) fn outq_slot(&self, k: usize) -> usize {
        self.regions.table
            + ((self.outq_head + k) % (2 * usize::from(self.cfg.window))) * self.cfg.output_stride()
    }

    pub(super) fn queue_next_output(&mut self, next: u16) {
        if self.outq_len >= 2 * usize::from(self.cfg.window) {
            return;
        }
        let at = self.outq_slot(self.outq_len);
        let buf = self.store.as_mut();
        buf[at..at + 2].copy_from_slice(&3u16.to_be_bytes());
        // Three bytes always fit the stride.
        let _ = wire::emit_next_output(&mut buf[at + 2..], 0, next);
        self.outq_len += 1;
    }

    pub(super) fn queue_requests_output(&mut self, acc_at: usize, len: usize) {
        if self.outq_len >= 2 * usize::from(self.cfg.window) {
            return;
        }
        let at = self.outq_slot(self.outq_len);
        let stride = self.cfg.output_stride();
        let buf = self.store.as_mut();
        let (low, high) = buf.split_at_mut(at);
        let bitmap = &low[acc_at..acc_at + len];
        let slot = &mut high[..stride];
        // The stride holds the bitmap form, the longer of the two encodings.
        let n = wire::emit_requests_output(&mut slot[2..], 0, bitmap).unwrap_or(0);
        slot[..2].copy_from_slice(&(n as u16).to_be_bytes());
        self.outq_len += 1;
    }

    pub(super) fn transmit_running(
        &mut self,
        now: Instant,
        r: &mut Running,
        out: &mut [u8],
        downstream: &mut dyn Downstream,
    ) -> Result<Option<Transmit>, WireError> {
        if let Some((exchange, kind, outs_len, down)) = r.client_pending {
            let o = self.regions.outq;
            let d = self.regions.outs;
            let store = self.store.as_ref();
            let outputs = &store[o..o + outs_len];
            let down = match down {
                PendingDown::None => Down::None,
                PendingDown::Data { conn, len } => Down::Data {
                    conn,
                    data: &store[d..d + len],
                },
                PendingDown::Close { conn } => Down::Close { conn },
            };
            let len = Message::ClientRequest(ClientRequest {
                interval: r.interval,
                exchange,
                kind,
                outputs,
                down,
            })
            .emit_frame(out)?;
            r.client_pending = None;
            return Ok(Some(Transmit {
                destination: Destination::Members,
                len,
                close_after: false,
            }));
        }
        if r.stop.is_some() || self.decoding.is_some() {
            return Ok(None);
        }
        // Only an idle net with nothing reserved is paced: a reserved slot (a conversation
        // between turns) runs at full speed. One exchange is in flight at a time unless an
        // owner filled its last cell (a bulk sender, likely with more) or the exit has
        // downstream bytes waiting: then the whole window opens. Otherwise an owner's next
        // bytes would wait behind a window of exchanges issued before they existed.
        let paced = self.idle
            && r.schedule.reserved() == 0
            && !downstream.has_data()
            && now < self.last_issue + self.gap;
        let window = if self.burst || downstream.has_data() {
            u64::from(self.cfg.window)
        } else {
            1
        };
        if r.next >= r.done + window || paced {
            return Ok(None);
        }
        // Report decoded outputs (at most one reservation bitmap per request) and apply
        // them to our own schedule, exactly as every node will.
        let mut outs_len = 0;
        let mut reserves = 0;
        while self.outq_len > 0 {
            let at = self.outq_slot(0);
            let store = self.store.as_ref();
            let n = usize::from(u16::from_be_bytes([store[at], store[at + 1]]));
            let is_reserve = store[at + 2] != 0;
            if is_reserve && reserves == 1 {
                break;
            }
            reserves += usize::from(is_reserve);
            let (o, t) = (self.regions.outq, self.regions.acc);
            let store = self.store.as_mut();
            store.copy_within(at + 2..at + 2 + n, o + outs_len);
            let Some(kind) = self.unreported.pop_front() else {
                break;
            };
            let (table_and_rest, q) = store.split_at_mut(o);
            let bytes = &q[outs_len..outs_len + n];
            let table = &mut table_and_rest[t..self.regions.table];
            if let Ok(view) = OutputsView::parse(bytes, self.cfg.slots) {
                for output in view.iter() {
                    let _ = r.schedule.apply(table, kind, &output);
                }
            }
            outs_len += n;
            self.outq_head = (self.outq_head + 1) % (2 * usize::from(self.cfg.window));
            self.outq_len -= 1;
        }
        let kind = {
            let table = &self.store.as_ref()[self.regions.acc..self.regions.table];
            r.schedule.next(table)
        };
        let _ = self.unreported.push_back(kind);
        // The downstream record of this exchange.
        let d = self.regions.outs;
        let cap = (self.params.downstream_len as usize).min(self.cfg.downstream_len);
        let down = if downstream.has_data() {
            match downstream.next_chunk(&mut self.store.as_mut()[d..d + cap]) {
                Some(DownChunk::Data { conn, len }) if len > 0 && conn.0 != 0 => {
                    PendingDown::Data {
                        conn,
                        len: len.min(cap),
                    }
                }
                Some(DownChunk::Close { conn }) if conn.0 != 0 => PendingDown::Close { conn },
                _ => PendingDown::None,
            }
        } else {
            PendingDown::None
        };
        self.log_record(down);
        let exchange = r.next;
        let len = Message::TrusteeRequest(TrusteeRequest {
            interval: r.interval,
            exchange,
            kind,
            outputs: &self.store.as_ref()[self.regions.outq..self.regions.outq + outs_len],
            head: self.head.hash,
        })
        .emit_frame(out)?;
        let idx = (exchange % u64::from(self.cfg.window)) as usize;
        self.meta[idx] = SlotMeta {
            kind,
            issued: now,
            trustees: 0,
            clients: 0,
        };
        let nb = bitmap_len(usize::from(self.cfg.clients));
        let c = self.regions.online + idx * nb;
        self.store.as_mut()[c..c + nb].fill(0);
        let x = self.cfg.max_exchange_len();
        let a = self.regions.contrib + idx * x;
        self.store.as_mut()[a..a + kind.cell_len(self.cfg.slots)].fill(0);
        r.next += 1;
        r.client_pending = Some((exchange, kind, outs_len, down));
        self.last_issue = now;
        self.gap = if self.idle && !downstream.has_data() {
            let cells = u64::from(r.members) + u64::from(self.cfg.trustees);
            let bytes = cells * kind.cell_len(self.cfg.slots) as u64;
            let cost = bytes.saturating_mul(1_000_000) / self.cfg.idle_budget.max(1);
            let longest = self.cfg.idle_gap.as_micros().max(cost);
            let floor = longest / 16;
            Duration::from_micros((self.gap.as_micros() * 2).max(floor).min(longest))
        } else {
            Duration::default()
        };
        Ok(Some(Transmit {
            destination: Destination::Trustees,
            len,
            close_after: false,
        }))
    }
}
