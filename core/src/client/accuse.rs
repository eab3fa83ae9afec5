//! The owner's accusations: a cell of its slot came back `Disrupted`, or a reservation
//! exchange showed its bit although it did not ask. The owner picks the bit
//! ([`crate::blame::pick_bit`]: one it wrote 0 and the decoded cell shows 1), proves the
//! accusation with its pseudonym key once, and [`Client::prepare`] stages the `Accuse`
//! record in its next owned cells (equal work: the cell path only copies what was sealed),
//! until the interval ends or the record went out in [`MAX_SENDS`] owned cells.
//!
//! Owns the pending accusation and the owned exchanges the sealed bytes were kept for. It
//! must not seal cells (`seal.rs`) or touch the sent ring (`sent.rs`): an `Accuse` record
//! names no connection, so it is never sent again from there.

use super::Client;
use crate::wire::{self, RECORD_HEADER_LEN};

/// Owned exchanges whose sealed bytes are kept, the latest ones, at most: the keep horizon
/// of the largest window ([`crate::blame::keep_horizon`]). The relay begins no blame round
/// about an exchange of a slot once that many exchanges of the slot were issued after it,
/// so an owner that keeps this many holds the cell of every round at any window.
pub const KEPT: usize = crate::blame::keep_horizon(crate::MAX_WINDOW as u16);

/// What a device client keeps ([`Client::sealed_len_keeping`]): the keep horizon of a
/// window of 16, the hosted relay's default (a device refuses an interval with a larger
/// window, [`crate::error::IntervalError::TooFewKept`]).
pub const DEVICE_KEPT: usize = crate::blame::keep_horizon(16);

/// Owned cells an accusation goes out in, at most.
pub(super) const MAX_SENDS: u8 = 8;

/// Reservation exchanges in which this client set its bit, not yet reported.
pub(super) const ASKED: usize = 16;

/// An owned exchange whose sealed bytes are kept, and where.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Kept {
    /// The link it was sent on.
    pub(super) link: u32,
    pub(super) interval: u32,
    pub(super) exchange: u64,
    pub(super) len: usize,
}

/// An accusation waiting to go out.
#[derive(Debug, Clone, Copy)]
pub(super) struct Pending {
    pub(super) interval: u32,
    pub(super) exchange: u64,
    pub(super) bit: u32,
    /// The record's payload, once proven.
    pub(super) record: Option<[u8; wire::ACCUSE_LEN]>,
    /// Owned cells it went out in.
    pub(super) sends: u8,
}

impl<B: AsMut<[u8]> + AsRef<[u8]>> Client<B> {
    /// The relay showed `cell` as the decoding of `exchange` of `interval`: if it was an
    /// exchange of this client's slot whose sealed bytes it kept, it accuses a bit.
    /// It accuses its latest disrupted exchange (the relay keeps the latest few).
    pub(super) fn on_disrupted_cell(&mut self, interval: u32, exchange: u64, cell: &[u8]) {
        // Start at the body: the nonce is as good a place as any, but the body is longer.
        let start = (8 * wire::SLOT_NONCE_LEN) as u32;
        let bit = match self.kept_cell(interval, exchange) {
            Some(written) => crate::blame::pick_bit(written, cell, start),
            // An owned exchange it wrote nothing in (zeros): any bit the decoded cell has.
            None if self.answered_at(interval, exchange).is_some_and(|a| {
                a.own && a.wrote == super::reveal::Wrote::Zeros && a.len == cell.len()
            }) =>
            {
                crate::blame::accuse::pick_set_bit(cell, start)
            }
            None => return,
        };
        if let Some(bit) = bit {
            self.pending = Some(Pending {
                interval,
                exchange,
                bit,
                record: None,
                sends: 0,
            });
        }
    }

    /// A reservation exchange showed this client's bit although it wrote 0 there: it
    /// accuses that exchange at its own bit (safe to reveal: it wrote 0), unless it has a
    /// disrupted cell of this interval to accuse already.
    pub(super) fn on_forged_request(&mut self, interval: u32, exchange: u64) {
        if self.pending.is_some_and(|p| p.interval == interval) {
            return;
        }
        self.pending = Some(Pending {
            interval,
            exchange,
            bit: u32::from(self.slot),
            record: None,
            sends: 0,
        });
    }

    /// The accusation this client would send now, if any.
    pub fn pending_accusation(&self) -> Option<(u32, u64, u32)> {
        self.pending.map(|p| (p.interval, p.exchange, p.bit))
    }

    /// Stages the pending accusation's record if it is not staged already (part of
    /// [`Client::prepare`]).
    pub(super) fn stage_accusation(&mut self, room: usize) {
        let running = match &self.phase {
            super::Phase::Running(r) => *r,
            _ => return,
        };
        let Some(mut pending) = self.pending else {
            return;
        };
        if pending.interval != running.interval || pending.sends >= MAX_SENDS {
            self.pending = None;
            return;
        }
        if self.stage_holds_accusation()
            || self.stage.len() + RECORD_HEADER_LEN + wire::ACCUSE_LEN > room
        {
            return;
        }
        if pending.record.is_none() {
            pending.record = self.prove(&running, &pending);
        }
        let Some(payload) = pending.record else {
            // No pseudonym key: nothing to accuse with.
            self.pending = None;
            return;
        };
        let mut record = [0u8; RECORD_HEADER_LEN + wire::ACCUSE_LEN];
        let (header, body) = record.split_at_mut(RECORD_HEADER_LEN);
        wire::write_header(
            header,
            wire::ConnId::new(self.slot, 0),
            wire::RecordKind::Accuse,
            wire::ACCUSE_LEN,
        );
        body.copy_from_slice(&payload);
        self.stage.push(&record);
        pending.sends += 1;
        self.pending = Some(pending);
    }

    /// Whether the stage holds an `Accuse` record.
    fn stage_holds_accusation(&self) -> bool {
        let stage = self.stage.records();
        let mut at = 0;
        while let Some(rest) = stage.get(at..).filter(|r| r.len() >= RECORD_HEADER_LEN) {
            let (_, kind, n) = wire::read_record(rest);
            if kind == Some(wire::RecordKind::Accuse) {
                return true;
            }
            at += RECORD_HEADER_LEN + n;
        }
        false
    }

    #[cfg(feature = "pseudonyms")]
    fn prove(
        &mut self,
        running: &super::Running,
        pending: &Pending,
    ) -> Option<[u8; wire::ACCUSE_LEN]> {
        let key = self.pseudonym.as_ref()?;
        let accusation = crate::blame::prove_accusation(
            key,
            &self.group_id,
            &self.session_id,
            &running.view,
            self.slot,
            pending.interval,
            pending.exchange,
            pending.bit,
            &mut self.accuse_rng,
        );
        Some(accusation.to_bytes())
    }

    #[cfg(not(feature = "pseudonyms"))]
    fn prove(
        &mut self,
        _running: &super::Running,
        _pending: &Pending,
    ) -> Option<[u8; wire::ACCUSE_LEN]> {
        None
    }
}
