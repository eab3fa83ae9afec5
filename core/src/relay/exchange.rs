//! Exchanges of a running interval: requests to trustees and members, their cells in, and
//! the XOR of every cell of an exchange.
//!
//! Owns the window of exchanges in flight ([`Window`]: each one's kind, who answered, and
//! the XOR of the cells so far) and the requests. It must not decode (that is
//! `decode.rs`'s) or change the set of members (that ends the interval: `interval.rs`).

use heapless::Vec;

use super::{
    CellError, Destination, Instant, PeerError, PeerId, Phase, Relay, Running, Stop, Transmit,
};
use super::{Peer, PendingClientRequest};
use crate::bits;
use crate::blame::commit::{ExchangeKey, FINGERPRINT_LEN};
use crate::crypto::xor_into;
use crate::wire::{
    ClientRequest, ConnId, Down, Kind, Message, OutputsView, TrusteeRequest, WireError,
};
use crate::MAX_WINDOW;

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
    /// The exit grants the owner of `conn` `bytes` more upstream credit
    /// ([`crate::credit::ExitUpstream`]).
    Grant {
        /// The connection.
        conn: ConnId,
        /// Credit added.
        bytes: u32,
    },
}

/// Source of downstream bytes (replies from the exit), asked once per exchange.
pub trait Downstream {
    /// Whether any bytes or closes are waiting.
    fn has_data(&self) -> bool;
    /// Writes the next bytes of one connection into `buf`, or reports a close or a grant.
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

/// What the relay knows of one exchange in flight.
#[derive(Debug, Clone, Copy)]
pub(super) struct Issued {
    /// What the exchange is for.
    pub(super) kind: Kind,
    /// When its request went out.
    pub(super) issued: Instant,
    /// Trustees whose cell arrived, one bit each.
    pub(super) trustees: u32,
    /// Members whose cell arrived.
    pub(super) clients: u32,
}

/// The downstream record of a request being sent: its data is in
/// [`RelayStorage::downstream`](super::RelayStorage).
#[derive(Debug, Clone, Copy)]
pub(super) enum PendingDown {
    None,
    Data { conn: ConnId, len: usize },
    Close { conn: ConnId },
    Grant { conn: ConnId, bytes: u32 },
}

/// The exchanges in flight, one place each (exchange number modulo the window).
#[derive(Debug)]
pub(super) struct Window<B> {
    issued: Vec<Issued, MAX_WINDOW>,
    /// One bitmap per place: the members whose cell arrived.
    arrived: B,
    /// One cell per place: the XOR of the cells so far.
    accumulators: B,
    /// Bytes of one bitmap.
    bitmap_len: usize,
    /// Bytes of one accumulator (the longest exchange).
    accumulator_len: usize,
    /// One row per place: each node's fingerprint of its cell (`fingerprints.rs`).
    fingerprints: B,
    /// Bytes of one row.
    fingerprint_row: usize,
    /// One per place: the fingerprint key of the (interval, exchange) it was last made for,
    /// so that it is derived once per exchange, not once per cell.
    keys: Vec<Option<(u32, u64, ExchangeKey)>, MAX_WINDOW>,
}

impl<B: AsRef<[u8]> + AsMut<[u8]>> Window<B> {
    /// A window of `len` places over the caller's `arrived` bitmaps and `accumulators`.
    pub(super) fn new(
        len: u16,
        arrived: B,
        bitmap_len: usize,
        accumulators: B,
        accumulator_len: usize,
        fingerprints: B,
        fingerprint_row: usize,
    ) -> Self {
        let mut issued = Vec::new();
        let mut keys = Vec::new();
        for _ in 0..len {
            // len <= MAX_WINDOW, checked with the configuration.
            let _ = issued.push(Issued {
                kind: Kind::Reserve,
                issued: Instant::default(),
                trustees: 0,
                clients: 0,
            });
            let _ = keys.push(None);
        }
        Window {
            issued,
            arrived,
            accumulators,
            bitmap_len,
            accumulator_len,
            fingerprints,
            fingerprint_row,
            keys,
        }
    }

    /// The fingerprint of `cell` of `exchange` of `interval` under `secret`; the exchange's
    /// key is derived on its first cell and kept in the exchange's place.
    fn fingerprint(
        &mut self,
        secret: &[u8; 32],
        interval: u32,
        exchange: u64,
        cell: &[u8],
    ) -> [u8; FINGERPRINT_LEN] {
        let place = self.place(exchange);
        let Some(kept) = self.keys.get_mut(place) else {
            return ExchangeKey::new(secret, interval, exchange).fingerprint(cell);
        };
        if !matches!(kept, Some((i, e, _)) if *i == interval && *e == exchange) {
            *kept = None;
        }
        let (_, _, key) = kept.get_or_insert_with(|| {
            (
                interval,
                exchange,
                ExchangeKey::new(secret, interval, exchange),
            )
        });
        key.fingerprint(cell)
    }

    /// Forgets every kept fingerprint key (the secret changed).
    pub(super) fn forget_keys(&mut self) {
        for k in self.keys.iter_mut() {
            *k = None;
        }
    }

    /// The fingerprints of the cells of `exchange` so far, one per node (zeros: none).
    pub(super) fn fingerprints(&self, exchange: u64) -> &[u8] {
        let at = self.place(exchange) * self.fingerprint_row;
        self.fingerprints
            .as_ref()
            .get(at..at + self.fingerprint_row)
            .unwrap_or(&[])
    }

    /// Records `node`'s fingerprint of its cell of `exchange`.
    fn set_fingerprint(&mut self, exchange: u64, node: usize, fingerprint: &[u8]) {
        let at = self.place(exchange) * self.fingerprint_row + node * fingerprint.len();
        if let Some(dst) = self
            .fingerprints
            .as_mut()
            .get_mut(at..at + fingerprint.len())
        {
            dst.copy_from_slice(fingerprint);
        }
    }

    fn place(&self, exchange: u64) -> usize {
        (exchange % self.issued.len().max(1) as u64) as usize
    }

    /// What is known of `exchange` (which must be in flight).
    pub(super) fn issued(&self, exchange: u64) -> Option<&Issued> {
        self.issued.get(self.place(exchange))
    }

    fn issued_mut(&mut self, exchange: u64) -> Option<&mut Issued> {
        let place = self.place(exchange);
        self.issued.get_mut(place)
    }

    /// The members whose cell for `exchange` arrived.
    pub(super) fn arrived(&self, exchange: u64) -> &[u8] {
        let at = self.place(exchange) * self.bitmap_len;
        self.arrived
            .as_ref()
            .get(at..at + self.bitmap_len)
            .unwrap_or(&[])
    }

    fn arrived_mut(&mut self, exchange: u64) -> &mut [u8] {
        let at = self.place(exchange) * self.bitmap_len;
        self.arrived
            .as_mut()
            .get_mut(at..at + self.bitmap_len)
            .unwrap_or(&mut [])
    }

    /// The XOR of the cells of `exchange` so far, `len` bytes.
    pub(super) fn cell(&self, exchange: u64, len: usize) -> &[u8] {
        let at = self.place(exchange) * self.accumulator_len;
        self.accumulators
            .as_ref()
            .get(at..at + len.min(self.accumulator_len))
            .unwrap_or(&[])
    }

    /// Like [`Window::cell`], to change in place.
    pub(super) fn cell_mut(&mut self, exchange: u64, len: usize) -> &mut [u8] {
        let at = self.place(exchange) * self.accumulator_len;
        self.accumulators
            .as_mut()
            .get_mut(at..at + len.min(self.accumulator_len))
            .unwrap_or(&mut [])
    }

    /// Starts `exchange` of `kind` in its place: nobody has answered, nothing is combined.
    fn start(&mut self, exchange: u64, kind: Kind, slots: u16, now: Instant) {
        if let Some(issued) = self.issued_mut(exchange) {
            *issued = Issued {
                kind,
                issued: now,
                trustees: 0,
                clients: 0,
            };
        }
        self.arrived_mut(exchange).fill(0);
        self.cell_mut(exchange, kind.cell_len(slots)).fill(0);
        let at = self.place(exchange) * self.fingerprint_row;
        if let Some(row) = self
            .fingerprints
            .as_mut()
            .get_mut(at..at + self.fingerprint_row)
        {
            row.fill(0);
        }
    }
}

impl<P, B> Relay<P, B>
where
    P: AsMut<[Peer]> + AsRef<[Peer]>,
    B: AsMut<[u8]> + AsRef<[u8]>,
{
    /// A node's cell: checked against the exchange and combined into its XOR.
    pub(super) fn on_cell(
        &mut self,
        peer: PeerId,
        interval: u32,
        exchange: u64,
        cell: &[u8],
    ) -> Result<(), PeerError> {
        let running = match self.phase {
            Phase::Running(running) if running.interval == interval => running,
            _ if self.is_past(interval) => {
                self.stale_cells += 1;
                return Ok(());
            }
            _ => return Err(CellError::UnknownInterval(interval).into()),
        };
        if let Some(Stop::Abort { .. }) = running.stop {
            // The interval is over; late cells are harmless.
            self.stale_cells += 1;
            return Ok(());
        }
        if exchange < running.done {
            return Err(CellError::Duplicate(exchange).into());
        }
        if exchange >= running.next
            || (matches!(peer, PeerId::Client(_)) && exchange >= Self::client_limit(&running))
        {
            return Err(CellError::NotRequested(exchange).into());
        }
        let Some(&issued) = self.window.issued(exchange) else {
            return Err(CellError::NotRequested(exchange).into());
        };
        let len = issued.kind.cell_len(self.cfg.slots);
        if cell.len() != len {
            return Err(CellError::Length(cell.len()).into());
        }
        match peer {
            PeerId::Client(i) => {
                let i = usize::from(i);
                if !bits::test(self.online.as_ref(), i) {
                    return Err(CellError::NotMember.into());
                }
                let arrived = self.window.arrived_mut(exchange);
                if bits::test(arrived, i) {
                    return Err(CellError::Duplicate(exchange).into());
                }
                bits::set(arrived, i);
                if let Some(issued) = self.window.issued_mut(exchange) {
                    issued.clients += 1;
                }
            }
            PeerId::Trustee(t) => {
                if issued.trustees & (1 << t) != 0 {
                    return Err(CellError::Duplicate(exchange).into());
                }
                if let Some(issued) = self.window.issued_mut(exchange) {
                    issued.trustees |= 1 << t;
                }
            }
        }
        xor_into(self.window.cell_mut(exchange, len), cell);
        if let Some(secret) = &self.fingerprint_secret {
            // The relay's commitment to what this node sent (blame rounds check reveals
            // against it).
            let node = match peer {
                PeerId::Client(i) => usize::from(i),
                PeerId::Trustee(t) => usize::from(self.cfg.clients) + usize::from(t),
            };
            let fingerprint = self.window.fingerprint(secret, interval, exchange, cell);
            self.window.set_fingerprint(exchange, node, &fingerprint);
        }
        Ok(())
    }

    /// Clients are asked for the same exchanges as trustees (one window for both).
    pub(super) fn client_limit(running: &Running) -> u64 {
        match running.client_request {
            Some(request) => request.exchange,
            None => running.next,
        }
    }

    /// Whether every trustee and every member answered `exchange`.
    pub(super) fn complete(&self, running: &Running, exchange: u64) -> bool {
        exchange < Self::client_limit(running)
            && self.window.issued(exchange).is_some_and(|issued| {
                issued.trustees == self.all_trustees && issued.clients == running.members
            })
    }

    /// The running interval's next frame: the client request of the exchange just asked of
    /// the trustees, or the next exchange's trustee request if the window and the pacing
    /// allow one.
    pub(super) fn transmit_running(
        &mut self,
        now: Instant,
        running: &mut Running,
        out: &mut [u8],
        downstream: &mut dyn Downstream,
    ) -> Result<Option<Transmit>, WireError> {
        if let Some(request) = running.client_request {
            let outputs = self
                .request_outputs
                .as_ref()
                .get(..request.outputs_len)
                .unwrap_or(&[]);
            let down = match request.down {
                PendingDown::None => Down::None,
                PendingDown::Data { conn, len } => Down::Data {
                    conn,
                    data: self.downstream.as_ref().get(..len).unwrap_or(&[]),
                },
                PendingDown::Close { conn } => Down::Close { conn },
                PendingDown::Grant { conn, bytes } => Down::Grant { conn, bytes },
            };
            let len = Message::ClientRequest(ClientRequest {
                interval: running.interval,
                exchange: request.exchange,
                kind: request.kind,
                outputs,
                down,
            })
            .emit_frame(out)?;
            running.client_request = None;
            running.asked = true;
            return Ok(Some(Transmit {
                destination: Destination::Members,
                len,
                close_after: false,
            }));
        }
        if let Some(exchange) = self.disrupted.pop_front() {
            // Before any further request: a disrupted exchange's decoded cell, to every
            // member (its window place is not reused until a request is issued).
            let len = self
                .window
                .issued(exchange)
                .map_or(0, |issued| issued.kind.cell_len(self.cfg.slots));
            #[cfg(feature = "blame-round")]
            self.rounds
                .note_decoded(running.interval, exchange, self.window.cell(exchange, len));
            let len = Message::Disrupted {
                interval: running.interval,
                exchange,
                cell: self.window.cell(exchange, len),
            }
            .emit_frame(out)?;
            return Ok(Some(Transmit {
                destination: Destination::Members,
                len,
                close_after: false,
            }));
        }
        if running.stop.is_some() || self.decoding.is_some() {
            return Ok(None);
        }
        if !self.may_issue(now, running, downstream.has_data()) {
            return Ok(None);
        }
        let outputs_len = self.report_outputs(running);
        let kind = running.schedule.next(self.schedule.as_ref());
        let _ = self.unreported.push_back(kind);
        let down = self.next_downstream(downstream);
        match down {
            PendingDown::None => {}
            PendingDown::Data { conn, len } => self.log.record(&Down::Data {
                conn,
                data: self.downstream.as_ref().get(..len).unwrap_or(&[]),
            }),
            PendingDown::Close { conn } => self.log.record(&Down::Close { conn }),
            PendingDown::Grant { conn, bytes } => self.log.record(&Down::Grant { conn, bytes }),
        }
        let exchange = running.next;
        #[cfg(feature = "blame-round")]
        self.rounds.note_exchange(
            exchange,
            kind,
            self.request_outputs
                .as_ref()
                .get(..outputs_len)
                .unwrap_or(&[]),
            &self.log.head().hash,
        );
        let len = Message::TrusteeRequest(TrusteeRequest {
            interval: running.interval,
            exchange,
            kind,
            outputs: self
                .request_outputs
                .as_ref()
                .get(..outputs_len)
                .unwrap_or(&[]),
            head: self.log.head(),
        })
        .emit_frame(out)?;
        self.window.start(exchange, kind, self.cfg.slots, now);
        running.next += 1;
        running.client_request = Some(PendingClientRequest {
            exchange,
            kind,
            outputs_len,
            down,
        });
        self.paced_after(now, running, kind, downstream.has_data());
        Ok(Some(Transmit {
            destination: Destination::Trustees,
            len,
            close_after: false,
        }))
    }

    /// Moves decoded outputs (at most one reservation bitmap per request) into the next
    /// request's outputs and applies them to the relay's own schedule, exactly as every
    /// node will; returns the bytes of outputs.
    fn report_outputs(&mut self, running: &mut Running) -> usize {
        let mut outputs_len = 0;
        let mut reservations = 0;
        let mut disrupted = 0;
        while let Some(output) = self.outputs.front() {
            // A reservation's output has tag 1 or 2, a disrupted exchange's tag 3.
            let tag = output.first().copied().unwrap_or(0);
            let is_reservation = tag == 1 || tag == 2;
            let is_disrupted = tag == 3;
            if (is_reservation && reservations == 1) || (is_disrupted && disrupted == 1) {
                break;
            }
            reservations += usize::from(is_reservation);
            disrupted += usize::from(is_disrupted);
            let Some(dst) = self
                .request_outputs
                .as_mut()
                .get_mut(outputs_len..outputs_len + output.len())
            else {
                break;
            };
            dst.copy_from_slice(output);
            let Some(kind) = self.unreported.pop_front() else {
                break;
            };
            if let (true, Kind::Slot { slot, .. }) = (is_disrupted, kind) {
                // Reported in the request of the exchange about to be issued.
                self.slots.reported(slot, running.interval, running.next);
            }
            if let Ok(view) = OutputsView::parse(dst, self.cfg.slots) {
                for output in view.iter() {
                    let _ = running
                        .schedule
                        .apply(self.schedule.as_mut(), kind, &output);
                }
            }
            outputs_len += dst.len();
            self.outputs.pop_front();
        }
        outputs_len
    }

    /// The downstream record of the next exchange, its data written to the relay's
    /// downstream buffer.
    fn next_downstream(&mut self, downstream: &mut dyn Downstream) -> PendingDown {
        if !downstream.has_data() {
            return PendingDown::None;
        }
        let cap = (self.params.downstream_len as usize).min(self.cfg.downstream_len);
        let buf = self.downstream.as_mut();
        let (buf, _) = buf.split_at_mut(cap.min(buf.len()));
        match downstream.next_chunk(buf) {
            Some(DownChunk::Data { conn, len }) if len > 0 && conn.0 != 0 => PendingDown::Data {
                conn,
                len: len.min(cap),
            },
            Some(DownChunk::Close { conn }) if conn.0 != 0 => PendingDown::Close { conn },
            Some(DownChunk::Grant { conn, bytes }) if conn.0 != 0 => {
                PendingDown::Grant { conn, bytes }
            }
            _ => PendingDown::None,
        }
    }
}
