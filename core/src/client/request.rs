//! Exchange requests: every request is answered with a cell the moment it arrives. A
//! reservation asks for this client's slot when it has something to send; in its own slot
//! the cell carries the staged records and the length wanted next; otherwise zeros. Then
//! the pads, so every client does the same work whatever it sends.
//!
//! Owns the cell of one exchange and the `Next` announced in it. It must not pull bytes
//! from the application (`stage.rs`) or keep sent cells (`sent.rs`).

use chacha20::cipher::StreamCipher;

use super::reveal;
use super::stage::Taken;
use super::{Client, ClientEvent, Delivery, Handled, Phase, Running};
use crate::crypto::{PadEngine, SerialPads};
use crate::error::{IntervalError, PeerError, RequestError};
use crate::schedule::Deviation;
use crate::time::Instant;
use crate::transcript;
use crate::wire::{
    self, ClientRequest, Down, Kind, Output, OutputsView, Prefix, RECORD_HEADER_LEN,
};

impl<B: AsMut<[u8]> + AsRef<[u8]>> Client<B> {
    /// Answers an exchange request with this client's cell, written to `out`.
    pub(super) fn on_request<'a>(
        &mut self,
        _now: Instant,
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
        // The exchange the first output reports on, and which were disrupted cells of this
        // client's slot.
        let first = exchange.saturating_sub(self.unreported.len() as u64);
        let mut disrupted: Option<u64> = None;
        for (i, output) in view.iter().enumerate() {
            if let Output::Requests(requests) = output {
                let shown = requests.iter().any(|s| s == self.slot);
                let e = first + i as u64;
                // Whether it set its bit there (the ring holds every such exchange not yet
                // reported, unless it forgot one at or after this).
                let mut wrote = false;
                while let Some(&(ai, ae)) = self.asked_ring.front() {
                    if (ai, ae) > (interval, e) {
                        break;
                    }
                    wrote |= (ai, ae) == (interval, e);
                    self.asked_ring.pop_front();
                }
                let sure = self.asked_forgot.is_none_or(|f| f < (interval, e));
                if shown && !wrote && sure {
                    // Set by someone else: forged. The slot is this client's now, and its
                    // first cells there accuse the exchange.
                    self.on_forged_request(interval, e);
                }
                if shown {
                    self.suppressed = false;
                } else if self.asked == Some((interval, first + i as u64)) {
                    self.suppressed = true;
                }
                continue;
            }
            let Output::Disrupted(digest) = output else {
                continue;
            };
            // Shown to every member, owner or not, before this request: or refused.
            let e = first + i as u64;
            let Some(at) = self.disrupted.iter().position(|d| *d == (e, *digest)) else {
                return Err(RequestError::Disrupted { exchange: e }.into());
            };
            for _ in 0..=at {
                self.disrupted.pop_front();
            }
            let own = matches!(
                self.unreported.iter().nth(i),
                Some(Kind::Slot { slot, .. }) if *slot == self.slot
            );
            if own {
                disrupted = disrupted.or(Some(e));
            }
        }
        running
            .schedule
            .follow(self.schedule.as_mut(), &mut self.unreported, &view, kind)
            .map_err(|d| match d {
                Deviation::WrongKind => RequestError::WrongKind { exchange },
                Deviation::WindowExceeded => RequestError::WindowExceeded,
            })?;
        if let Some(e) = disrupted {
            // The cell is abandoned: its records and those of the later cells, in order,
            // go in the next owned cells (nothing prepared before this carries them).
            self.abandon_from(interval, e);
            self.unprepare();
            self.push_event(ClientEvent::Disrupted {
                interval,
                exchange: e,
            });
        }
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
        let mut wrote = reveal::Wrote::Zeros;
        let Some(cell) = out.get_mut(p..p + len) else {
            return Err(PeerError::BufferTooSmall);
        };
        match kind {
            Kind::Reserve => {
                cell.fill(0);
                // Drawn by every client in every reservation (equal work).
                let mut coin = [0u8; 1];
                self.trap_rng.apply_keystream(&mut coin);
                let ask = !self.suppressed || coin[0] & 1 == 1;
                if running.may_send && self.wants_reservation(&running) {
                    if ask {
                        crate::bits::set(cell, usize::from(self.slot));
                        wrote = reveal::Wrote::Request;
                        self.asked = Some((interval, exchange));
                        if self.asked_ring.is_full() {
                            self.asked_forgot = self.asked_ring.pop_front();
                        }
                        let _ = self.asked_ring.push_back((interval, exchange));
                    }
                    running.transmitted = true;
                }
            }
            Kind::Slot { slot, .. } if slot == self.slot && running.may_send => {
                // A copy of the cell prepared (and signed) for this length, or zeros.
                match self.copy_prepared(&running, exchange, cell) {
                    Some(p) => {
                        wrote = reveal::Wrote::Sealed;
                        self.announced_next = p.next;
                        if p.plan.sent() > 0 {
                            self.stage.taken = Some(Taken {
                                interval,
                                exchange,
                                whole: p.plan.whole,
                                part: p.plan.part,
                            });
                        }
                        running.transmitted = true;
                    }
                    None => self.announced_next = 0,
                }
            }
            // Not this client's slot, or its slot may not transmit now: zeros.
            Kind::Slot { .. } => self.zeros_laid_out(exchange, cell),
        }
        if matches!(kind, Kind::Slot { slot, .. } if slot == self.slot) {
            running.ordinal += 1;
        }
        let nonce = running.transcript.pad_nonce();
        SerialPads.xor_pads(&self.interval_keys, &nonce, cell);
        self.record_answered(reveal::Answered {
            link: self.link,
            interval,
            exchange,
            len,
            nonce,
            wrote,
            own: matches!(kind, Kind::Slot { slot, .. } if slot == self.slot),
            trap: running.trap,
        });
        #[cfg(feature = "disruptor")]
        if let Some(d) = &mut self.disruptor {
            d.tamper(
                interval,
                exchange,
                kind,
                self.slot,
                running.params.base_len as usize,
                cell,
            );
        }

        // Cells up to `exchange - window` were decoded before this request was issued. Only
        // an owner has any to settle, so this waits until the cell is done.
        // Only once their outputs were reported (a disruption is known then).
        let reported = (exchange + 1).saturating_sub(self.unreported.len() as u64);
        if exchange >= running.window && reported > 0 {
            let below = (exchange - running.window).min(reported - 1);
            self.sent.confirm_up_to(running.interval, below);
        }
        running.next_exchange += 1;
        self.answered_since_prepare = true;
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
            Down::Grant { conn, bytes } => self.take_grant(conn, bytes),
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

    /// The length to announce for this client's next cell (0 releases the slot).
    pub(super) fn next_length(&self, now: Instant, running: &Running, left: usize) -> u16 {
        let base = running.params.base_len as usize;
        let max = (running.params.max_len as usize).min(self.max_cell);
        let more = left + self.pending_hint;
        let len = if more > 0 || self.sent.resend_pending() {
            let need =
                wire::cell_len_for(wire::SLOT_OVERHEAD + wire::NEXT_LEN + RECORD_HEADER_LEN + more);
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
