//! Exchange requests: every request is answered with a cell the moment it arrives. A
//! reservation asks for this client's slot when it has something to send; in its own slot
//! the cell carries the staged records and the length wanted next; otherwise zeros. Then
//! the pads, so every client does the same work whatever it sends.
//!
//! Owns the cell of one exchange and the `Next` announced in it. It must not pull bytes
//! from the application (`stage.rs`) or keep sent cells (`sent.rs`).

use super::stage::Taken;
use super::{Client, Delivery, Handled, Phase, Running};
use crate::crypto::{PadEngine, SerialPads};
use crate::error::{IntervalError, PeerError, RequestError};
use crate::schedule::Deviation;
use crate::time::Instant;
use crate::transcript;
use crate::wire::{
    self, read_record_header, ClientRequest, Down, Kind, OutputsView, Prefix, RECORD_HEADER_LEN,
};

impl<B: AsMut<[u8]> + AsRef<[u8]>> Client<B> {
    /// Answers an exchange request with this client's cell, written to `out`.
    pub(super) fn on_request<'a>(
        &mut self,
        now: Instant,
        request: ClientRequest<'a>,
        out: &mut [u8],
    ) -> Result<Handled<'a>, PeerError> {
        let ClientRequest {
            interval,
            exchange,
            kind,
            outputs,
            down,
        } = request;
        let Phase::Running(mut running) = self.phase else {
            return Err(PeerError::Unexpected);
        };
        RequestError::check_next(running.interval, running.next_exchange, interval, exchange)?;
        down.check()?;
        let view = OutputsView::parse(outputs, self.slots)?;
        running
            .schedule
            .follow(self.schedule.as_mut(), &mut self.unreported, &view, kind)
            .map_err(|d| match d {
                Deviation::WrongKind => RequestError::WrongKind { exchange },
                Deviation::WindowExceeded => RequestError::WindowExceeded,
            })?;
        let len = kind.cell_len(self.slots);
        if len > self.max_cell {
            return Err(IntervalError::Parameters.into());
        }
        let mut head = self.head;
        transcript::append(&mut head, &down);
        running
            .transcript
            .advance(exchange, kind, outputs, &head.hash);

        // The cell: the same steps whoever owns the slot.
        let p = Prefix::Cell { interval, exchange }.emit(len, out)?;
        let Some(cell) = out.get_mut(p..p + len) else {
            return Err(PeerError::BufferTooSmall);
        };
        match kind {
            Kind::Reserve => {
                cell.fill(0);
                if running.may_send && self.wants_reservation(&running) {
                    crate::bits::set(cell, usize::from(self.slot));
                    running.transmitted = true;
                }
            }
            Kind::Slot { slot, .. } if slot == self.slot && running.may_send => {
                running.transmitted |= self.fill_owned(now, &running, interval, exchange, cell);
            }
            // Not this client's slot, or its slot may not transmit now: zeros.
            Kind::Slot { .. } => cell.fill(0),
        }
        SerialPads.xor_pads(&self.interval_keys, &running.transcript.pad_nonce(), cell);

        // Cells up to `exchange - window` were decoded before this request was issued. Only
        // an owner has any to settle, so this waits until the cell is done.
        if exchange >= running.window {
            self.sent
                .confirm_up_to(running.interval, exchange - running.window);
        }
        running.next_exchange += 1;
        self.head = head;
        // The record is handed over with this cell.
        self.delivered = head;
        self.answered = Some(interval);
        self.phase = Phase::Running(running);
        let delivery = match down {
            Down::Data { conn, data } if self.connections.contains_key(&conn) => {
                Some(Delivery::Data { conn, data })
            }
            Down::Close { conn } if self.connections.swap_remove(&conn).is_some() => {
                Some(Delivery::Close { conn })
            }
            _ => None,
        };
        Ok(Handled {
            cell: Some(p + len),
            delivery,
        })
    }

    /// Whether this client asks for its slot in a reservation exchange.
    fn wants_reservation(&self, running: &Running) -> bool {
        let wants = !self.stage.is_empty()
            || self.sent.resend_pending()
            || self.pending_hint > 0
            || self.connections.values().any(|c| !c.announced);
        wants
            && (self.announced_next == 0
                || !running
                    .schedule
                    .is_reserved(self.schedule.as_ref(), self.slot))
    }

    /// Writes this client's cell for an owned exchange: the stage's records that fit, then
    /// `Next`. Returns whether the cell is anything but zeros.
    fn fill_owned(
        &mut self,
        now: Instant,
        running: &Running,
        interval: u32,
        exchange: u64,
        cell: &mut [u8],
    ) -> bool {
        // Bytes staged while the ring had more room may not all fit it now.
        let room = cell
            .len()
            .saturating_sub(wire::NEXT_LEN)
            .min(self.sent.room());
        let stage = self.stage.records();
        let mut taken = Taken {
            interval,
            exchange,
            whole: 0,
            part: None,
        };
        let mut writer = wire::CellWriter::new(cell);
        if self.stage.taken.is_none() {
            while let Some(rest) = stage.get(taken.whole..).filter(|r| !r.is_empty()) {
                let (conn, open, n) = read_record_header(rest);
                let rec = RECORD_HEADER_LEN + n;
                let payload = rest.get(RECORD_HEADER_LEN..).unwrap_or(&[]);
                if taken.whole + rec <= room {
                    // It fits: `room` bounds the writer's space.
                    let kind = wire::read_record(rest).1;
                    let _ = if kind == Some(wire::RecordKind::Abort) {
                        writer.push_abort(conn)
                    } else if kind == Some(wire::RecordKind::Grant) {
                        let bytes = payload.first_chunk::<4>().copied().unwrap_or_default();
                        writer.push_grant(conn, u32::from_be_bytes(bytes))
                    } else if n == 0 && !open {
                        writer.push_close(conn)
                    } else {
                        writer.push_data(conn, open, payload.get(..n).unwrap_or(payload))
                    };
                    taken.whole += rec;
                    continue;
                }
                let part = room.saturating_sub(taken.whole + RECORD_HEADER_LEN);
                if n > 0 && part > 0 && super::stage::is_data(rest) {
                    let _ = writer.push_data(conn, open, payload.get(..part).unwrap_or(payload));
                    taken.part = Some(part);
                }
                break;
            }
        }
        let sent = taken.whole + taken.part.map_or(0, |p| p + RECORD_HEADER_LEN);
        let left = self.stage.len() - taken.whole - taken.part.unwrap_or(0);
        let next = self.next_length(now, running, left);
        writer.finish(next);
        self.announced_next = next;
        if sent > 0 {
            self.stage.taken = Some(taken);
        }
        sent > 0 || next != 0
    }

    /// The length to announce for this client's next cell (0 releases the slot).
    fn next_length(&self, now: Instant, running: &Running, left: usize) -> u16 {
        let base = running.params.base_len as usize;
        let max = (running.params.max_len as usize).min(self.max_cell);
        let more = left + self.pending_hint;
        let len = if more > 0 || self.sent.resend_pending() {
            let need = wire::NEXT_LEN + RECORD_HEADER_LEN + more;
            if self.sent.resend_pending() {
                max
            } else {
                need.div_ceil(64).saturating_mul(64).clamp(base, max)
            }
        } else if self.last_data.is_some_and(|t| now < t + self.linger) {
            base
        } else {
            0
        };
        len.min(u16::MAX as usize) as u16
    }
}
