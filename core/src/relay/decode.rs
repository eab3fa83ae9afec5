//! Decoding: once every trustee and member answered an exchange, the XOR of their cells is
//! the slot owner's plaintext. Its records go to the exit one event at a time, and what the
//! exchange decoded to is queued as an output for the next request.
//!
//! Owns [`Relay::poll_event`] and the cursor over a decoded cell. It must not issue
//! requests (`exchange.rs`) or change the combined cells.

use super::{Duration, Instant, Peer, Phase, Relay, RelayEvent, Stop};
use crate::wire::{self, CellView, Kind, Record, Records};

/// Where the next record of a decoded cell starts: offsets into the exchange's combined
/// cell, up to the end of its records.
#[derive(Debug, Clone, Copy)]
pub(super) struct Decoding {
    exchange: u64,
    at: usize,
    end: usize,
}

/// What a slot exchange's combined cell decoded to.
struct Decoded {
    /// The owner's `Next`.
    next: u16,
    /// Where its records start and end in the cell.
    records: (usize, usize),
    /// The owner filled the cell: it likely has more.
    full: bool,
}

impl<P, B> Relay<P, B>
where
    P: AsMut<[Peer]> + AsRef<[Peer]>,
    B: AsMut<[u8]> + AsRef<[u8]>,
{
    /// Next event; decoded upstream data borrows the relay until the event is dropped.
    #[must_use]
    pub fn poll_event(&mut self, now: Instant) -> Option<RelayEvent<'_>> {
        if let Some(e) = self.events.pop_front() {
            return Some(e);
        }
        if let Some(decoding) = self.decoding {
            return self.next_record(decoding);
        }
        let Phase::Running(mut running) = self.phase else {
            return None;
        };
        let end = match running.stop {
            Some(Stop::Abort { end_at }) => end_at,
            _ => running.next,
        };
        if running.done >= end || !self.complete(&running, running.done) {
            self.advance(now);
            return self.events.pop_front();
        }
        if self.outputs.is_full() {
            // Outputs must be reported before more exchanges are decoded.
            return None;
        }
        let exchange = running.done;
        running.done += 1;
        self.disrupted_recent <<= 1;
        self.decoded += 1;
        self.phase = Phase::Running(running);
        let kind = self
            .window
            .issued(exchange)
            .map_or(Kind::Reserve, |issued| issued.kind);
        let len = kind.cell_len(self.cfg.slots);
        match kind {
            Kind::Reserve => {
                let cell = self.window.cell_mut(exchange, len);
                // Bits past the last slot carry nothing: a client that sets them only wastes
                // its own cell, and nodes would refuse them in the report.
                let slots = usize::from(self.cfg.slots);
                if slots % 8 != 0 {
                    if let Some(last) = cell.last_mut() {
                        *last &= (1u8 << (slots % 8)) - 1;
                    }
                }
                self.idle = cell.iter().all(|&b| b == 0);
                self.outputs.push_requests(self.window.cell(exchange, len));
                if !self.idle && self.fingerprint_secret.is_some() {
                    // A request shown may be forged: its owner would accuse it.
                    let what = super::fingerprints::KeptRow {
                        interval: running.interval,
                        exchange,
                        slot: super::fingerprints::RESERVATION,
                        ordinal: 0,
                    };
                    self.kept.keep(what, self.window.fingerprints(exchange));
                }
                if !self.idle {
                    self.gap = Duration::default();
                }
                self.poll_event_tail(now)
            }
            Kind::Slot { slot, .. } => {
                let interval = running.interval;
                let ordinal = self.slots.next_ordinal(slot, interval);
                let ctx = wire::SlotContext {
                    group_id: self.cfg.group_id,
                    session_id: self.cfg.session_id,
                    view: self.view,
                    interval,
                    slot,
                    ordinal,
                };
                let key = self.slots.cell_key(
                    slot,
                    self.dh.as_ref(),
                    &self.cfg.group_id,
                    &self.cfg.session_id,
                );
                let empty = self.window.cell(exchange, len).iter().all(|&b| b == 0);
                // The trap key: one scalar multiplication at the slot's first owned
                // exchange of the interval, kept for the interval.
                let trap_key = if empty {
                    None
                } else {
                    self.trap_key(slot, interval)
                };
                let cell = self.window.cell_mut(exchange, len);
                // The cell's trap bytes, drawn once for every pass over it.
                let traps = trap_key
                    .as_ref()
                    .and_then(|k| k.draw(exchange, cell.len(), self.traps.as_mut()));
                let (opened, sprung) = match (&key, &traps) {
                    _ if empty => (wire::Opened::Empty, None),
                    (Some(key), Some(traps)) => open_laid_out(cell, &ctx, key, traps),
                    _ => (wire::Opened::Disrupted, None),
                };
                if let Some(sprung) = sprung {
                    self.push_event(RelayEvent::TrapSprung {
                        interval,
                        exchange,
                        slot,
                        bit: sprung.bit,
                        sprung: u32::try_from(sprung.count).unwrap_or(u32::MAX),
                    });
                    // A cell that opened all the same is kept here (a disrupted one is kept
                    // below): the round on the trap reveals against these fingerprints.
                    if opened != wire::Opened::Disrupted && self.fingerprint_secret.is_some() {
                        let what = super::fingerprints::KeptRow {
                            interval,
                            exchange,
                            slot,
                            ordinal,
                        };
                        self.kept.keep(what, self.window.fingerprints(exchange));
                    }
                    #[cfg(feature = "blame-round")]
                    self.trap_sprung(interval, exchange, slot, sprung.bit);
                }
                let cell = self.window.cell_mut(exchange, len);
                let decoded = match opened {
                    wire::Opened::Empty => Some(None),
                    wire::Opened::Authentic => cell
                        .get(..wire::sealed_len(len))
                        .and_then(|sealed| decode(sealed, slot))
                        .map(Some),
                    wire::Opened::Disrupted => None,
                };
                let Some(decoded) = decoded else {
                    // Disrupted: not what the slot's owner sealed (or, sealed, records of
                    // another slot's connections). Nothing of it reaches the exit; the slot
                    // stays reserved and the interval goes on. The owner's cells written
                    // before it learns of this are not delivered either: it sends their
                    // records again, in order.
                    let digest = wire::disrupted_digest(interval, exchange, cell);
                    self.slots.disrupted(slot, interval);
                    self.outputs.push_disrupted(&digest);
                    // At most 2 × window exchanges wait to be reported, each at most once.
                    let _ = self.disrupted.push_back(exchange);
                    // Decoded in order: `exchange` is `done − 1`. An owner away now learns
                    // of it from the history when it is back.
                    self.disrupted_recent |= 1;
                    if self.fingerprint_secret.is_some() {
                        let what = super::fingerprints::KeptRow {
                            interval,
                            exchange,
                            slot,
                            ordinal,
                        };
                        self.kept.keep(what, self.window.fingerprints(exchange));
                    }
                    self.idle = false;
                    self.burst = false;
                    return Some(RelayEvent::Garbled { interval, exchange });
                };
                let Some(decoded) = decoded else {
                    // All zeros: the owner released its slot (or had nothing).
                    self.burst = false;
                    self.outputs.push_next(0);
                    self.idle = true;
                    return self.poll_event_tail(now);
                };
                self.burst = decoded.full;
                self.outputs.push_next(decoded.next);
                let (at, end) = decoded.records;
                self.take_accusations(slot, exchange, at, end);
                self.idle = at == end;
                if self.idle || self.slots.abandoned(slot, interval, exchange) {
                    return self.poll_event_tail(now);
                }
                self.gap = Duration::default();
                self.decoded_slot = slot;
                let decoding = Decoding { exchange, at, end };
                self.decoding = Some(decoding);
                if let Some(e) = self.events.pop_front() {
                    return Some(e);
                }
                self.next_record(decoding)
            }
        }
    }

    /// After an exchange that gave the exit nothing: moves on, and looks at the next one.
    fn poll_event_tail(&mut self, now: Instant) -> Option<RelayEvent<'_>> {
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

    /// The next record of the cell being decoded, as an event.
    fn next_record(&mut self, mut decoding: Decoding) -> Option<RelayEvent<'_>> {
        // The cell was checked whole when it was decoded: one record at a time from here.
        loop {
            let Decoding { exchange, at, end } = decoding;
            let cell = self.window.cell(exchange, end);
            let Some(rec) = Records::checked(cell.get(at..).unwrap_or(&[])).next() else {
                self.decoding = None;
                return None;
            };
            let at = at + rec.wire_len();
            self.decoding = (at < end).then_some(Decoding { at, ..decoding });
            return Some(match rec {
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
                Record::Abort { conn } => RelayEvent::Abort { conn },
                Record::Grant { conn, bytes } => RelayEvent::Grant { conn, bytes },
                // For the blame rounds (taken when the cell was decoded), never the exit.
                Record::Accuse { .. } => {
                    decoding = self.decoding?;
                    continue;
                }
            });
        }
    }
}

impl<P, B> Relay<P, B>
where
    P: AsMut<[Peer]> + AsRef<[Peer]>,
    B: AsMut<[u8]> + AsRef<[u8]>,
{
    /// Takes the `Accuse` records of an authentic cell of `slot` (exchange `at`, records
    /// from `start` to `end`) up for blame rounds.
    fn take_accusations(&mut self, slot: u16, at: u64, start: usize, end: usize) {
        let mut found: [Option<wire::Accusation>; 2] = [None; 2];
        let cell = self.window.cell(at, end);
        let records = Records::checked(cell.get(start..).unwrap_or(&[]));
        let accusations = records.filter_map(|rec| match rec {
            Record::Accuse { accusation, .. } => Some(accusation),
            _ => None,
        });
        for (f, a) in found.iter_mut().zip(accusations) {
            *f = Some(a);
        }
        for accusation in found.into_iter().flatten() {
            if let Some(event) = self.accusation(slot, at, &accusation) {
                self.push_event(event);
            }
        }
    }

    /// An `Accuse` record decoded from exchange `at` of `slot`: kept for a
    /// blame round if its proof holds under the slot's pseudonym key and it is about an
    /// earlier exchange of the slot whose fingerprints the relay kept (a disrupted one of
    /// the slot, or a reservation exchange that showed a request, at the slot's own bit).
    fn accusation(
        &mut self,
        slot: u16,
        at: u64,
        accusation: &wire::Accusation,
    ) -> Option<RelayEvent<'static>> {
        let Phase::Running(running) = self.phase else {
            return None;
        };
        let (interval, exchange, bit) = (running.interval, accusation.exchange, accusation.bit);
        if exchange >= at
            || self
                .accused
                .iter()
                .any(|a| a.0 == interval && a.1 == exchange)
        {
            return None;
        }
        let disrupted = self.kept.row(interval, exchange, slot).is_some();
        let reservation = bit == u32::from(slot)
            && self
                .kept
                .row(interval, exchange, super::fingerprints::RESERVATION)
                .is_some();
        if !disrupted && !reservation {
            return None;
        }
        let valid = crate::blame::verify_accusation(
            accusation,
            interval,
            &self.slots.key(slot),
            &self.cfg.group_id,
            &self.cfg.session_id,
            &self.view,
            slot,
        );
        if !valid {
            return None;
        }
        if self.accused.is_full() {
            self.accused.pop_front();
        }
        let _ = self.accused.push_back((interval, exchange, bit));
        #[cfg(feature = "blame-round")]
        {
            self.start_blame(
                interval,
                exchange,
                bit,
                slot,
                &crate::blame::Grounds::Accused(*accusation),
            );
        }
        Some(RelayEvent::Accused {
            interval,
            exchange,
            bit,
        })
    }
}

/// Checks the trap bytes of a decoded owned cell, then gathers its sealed bytes to its
/// front and opens them there. A cell that does not open is put back as it was decoded
/// (every member is shown it); one that opens keeps its body, decrypted, at the front
/// (`decode` reads it there). A sprung trap is reported either way. `traps` were drawn
/// once for the cell: no pass runs the trap stream again.
fn open_laid_out(
    cell: &mut [u8],
    ctx: &wire::SlotContext,
    key: &wire::SlotKey,
    traps: &wire::CellTraps<'_>,
) -> (wire::Opened, Option<wire::Sprung>) {
    let sprung = traps.sprung(cell);
    // Zeros in every trap (the usual case): moved a run at a time, put back with zeros.
    let n = match sprung {
        None => traps.gather_clean(cell),
        Some(_) => traps.gather(cell),
    };
    let opened = match cell.get_mut(..n) {
        Some(sealed) => wire::open(sealed, ctx, key),
        None => wire::Opened::Disrupted,
    };
    if opened == wire::Opened::Disrupted {
        match sprung {
            None => traps.scatter_clean(cell),
            Some(_) => traps.scatter(cell),
        }
    }
    (opened, sprung)
}

/// Checks an authentic, decrypted slot cell: its records parse and every one names a
/// connection of `slot`. `None` if not. Offsets are into the whole cell.
fn decode(cell: &[u8], slot: u16) -> Option<Decoded> {
    let body = wire::body(cell)?;
    let view = CellView::parse(body).ok()?;
    if !view.records().all(|rec| rec.conn().slot() == Some(slot)) {
        return None;
    }
    let start = wire::SLOT_NONCE_LEN + wire::NEXT_LEN;
    let end = start + view.records_len();
    Some(Decoded {
        next: view.next(),
        records: (start, end),
        // No room left for even one more byte in a record.
        full: body.len() < wire::NEXT_LEN + view.records_len() + wire::RECORD_HEADER_LEN + 1,
    })
}
