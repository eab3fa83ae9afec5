//! What a client reveals of an exchange it answered: the cell it sent, recomputed, and its
//! pad bits at one bit (one per trustee). It keeps, for its last [`ANSWERED`] exchanges,
//! the pad nonce and what it wrote before the pads (zeros, its request bit, or a sealed cell
//! of its slot, whose bytes `seal.rs` keeps for its last few owned exchanges).
//!
//! Owns the record of answered exchanges. It must not decide what a cell holds (the cell
//! path in `request.rs` does) or sign anything (a blame round's reveal is signed by whoever
//! holds the identity key).

use super::Client;
use crate::crypto::{pad_bit, IntervalKey, PadEngine, PadNonce, SerialPads};

/// Exchanges whose pad nonces a client keeps, the latest ones ([`crate::blame::horizon::ANSWERED`]).
pub const ANSWERED: usize = crate::blame::horizon::ANSWERED;

/// What a client wrote into an exchange before its pads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Wrote {
    /// Zeros.
    Zeros,
    /// A reservation bitmap with its own bit set.
    Request,
    /// A sealed cell of its slot.
    Sealed,
}

/// One answered exchange.
#[derive(Debug, Clone, Copy)]
pub(super) struct Answered {
    /// The link it answered on.
    pub(super) link: u32,
    pub(super) interval: u32,
    pub(super) exchange: u64,
    pub(super) len: usize,
    pub(super) nonce: PadNonce,
    pub(super) wrote: Wrote,
    /// An exchange of its own slot.
    pub(super) own: bool,
    /// The trap point (`R_I`) in force when it answered: the layout its cell (an owner's)
    /// followed, which trap grounds about this exchange must carry.
    #[cfg_attr(not(feature = "blame-round"), allow(dead_code))]
    pub(super) trap: [u8; 32],
}

/// Why a client cannot recompute a cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RevealError {
    /// Not one of its last answered exchanges of the running interval.
    Forgotten,
    /// Its sealed cell of that exchange is no longer kept.
    SealedForgotten,
    /// `out` is shorter than the cell.
    BufferTooSmall,
}

impl<B: AsMut<[u8]> + AsRef<[u8]>> Client<B> {
    /// Records an answered exchange (the cell path, for every exchange: equal work).
    pub(super) fn record_answered(&mut self, answered: Answered) {
        if self.answered_ring.is_full() {
            self.answered_ring.pop_front();
        }
        let _ = self.answered_ring.push_back(answered);
    }

    /// The record of `exchange` of `interval` answered on the running link.
    pub(super) fn answered_at(&self, interval: u32, exchange: u64) -> Option<&Answered> {
        self.answered_on(self.link, interval, exchange)
    }

    /// The record of `exchange` of `interval` answered on `link`: a relay restarted within
    /// one interval number numbers its exchanges again, on another link (and the latest
    /// record wins on one link).
    pub(super) fn answered_on(&self, link: u32, interval: u32, exchange: u64) -> Option<&Answered> {
        self.answered_ring
            .iter()
            .rev()
            .find(|a| a.link == link && a.interval == interval && a.exchange == exchange)
    }

    /// Recomputes the cell this client sent for `exchange` of `interval` (the running
    /// one) into `out`; returns its length.
    pub fn recompute_cell(
        &self,
        interval: u32,
        exchange: u64,
        out: &mut [u8],
    ) -> Result<usize, RevealError> {
        if self.interval_keys.is_empty() || self.running_interval() != Some(interval) {
            return Err(RevealError::Forgotten);
        }
        self.recompute_on(self.link, &self.interval_keys, interval, exchange, out)
    }

    /// [`Client::recompute_cell`] for `exchange` of `interval` answered on `link` with
    /// `keys`.
    pub(super) fn recompute_on(
        &self,
        link: u32,
        keys: &[IntervalKey],
        interval: u32,
        exchange: u64,
        out: &mut [u8],
    ) -> Result<usize, RevealError> {
        let a = *self
            .answered_on(link, interval, exchange)
            .ok_or(RevealError::Forgotten)?;
        let cell = out.get_mut(..a.len).ok_or(RevealError::BufferTooSmall)?;
        cell.fill(0);
        match a.wrote {
            Wrote::Zeros => {}
            Wrote::Request => {
                crate::bits::set(cell, usize::from(self.slot));
            }
            Wrote::Sealed => {
                let kept = self
                    .kept_cell_on(link, interval, exchange)
                    .filter(|k| k.len() == a.len)
                    .ok_or(RevealError::SealedForgotten)?;
                cell.copy_from_slice(kept);
            }
        }
        SerialPads.xor_pads(keys, &a.nonce, cell);
        // A disruptor reveals the cell it really sent (and so convicts itself).
        #[cfg(feature = "disruptor")]
        if let Some(d) = &self.disruptor {
            d.again(interval, exchange, self.slot, cell);
        }
        Ok(a.len)
    }

    /// This client's pad bits at `bit` of `exchange` of `interval` (the running one), one
    /// per trustee in trustee order, as a bitmap in `out` (`⌈trustees/8⌉` bytes); returns
    /// the count.
    pub fn pad_bits(
        &self,
        interval: u32,
        exchange: u64,
        bit: u32,
        out: &mut [u8],
    ) -> Result<usize, RevealError> {
        if self.interval_keys.is_empty() || self.running_interval() != Some(interval) {
            return Err(RevealError::Forgotten);
        }
        self.pad_bits_on(self.link, &self.interval_keys, interval, exchange, bit, out)
    }

    /// [`Client::pad_bits`] for `exchange` of `interval` answered on `link` with `keys`.
    pub(super) fn pad_bits_on(
        &self,
        link: u32,
        keys: &[IntervalKey],
        interval: u32,
        exchange: u64,
        bit: u32,
        out: &mut [u8],
    ) -> Result<usize, RevealError> {
        let a = *self
            .answered_on(link, interval, exchange)
            .ok_or(RevealError::Forgotten)?;
        if keys.is_empty() {
            return Err(RevealError::Forgotten);
        }
        let n = keys.len();
        let bitmap = out
            .get_mut(..n.div_ceil(8))
            .ok_or(RevealError::BufferTooSmall)?;
        bitmap.fill(0);
        for (t, key) in keys.iter().enumerate() {
            if pad_bit(key, &a.nonce, bit) {
                crate::bits::set(bitmap, t);
            }
        }
        Ok(n)
    }

    fn running_interval(&self) -> Option<u32> {
        match &self.phase {
            super::Phase::Running(r) => Some(r.interval),
            _ => None,
        }
    }
}
