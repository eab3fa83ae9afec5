//! What a trustee reveals of an exchange it answered (core feature `blame-round`, hosted
//! and device trustees alike): the cell it sent, recomputed from the pad nonce
//! it keeps for its last [`ANSWERED`] cells, and its pad bits at one bit, one per member of
//! the interval in index order.
//!
//! Owns the record of sent cells. It must not change what the cell path sends
//! (`exchange.rs`) or sign anything.

use super::exchange::Pending;
use super::{Phase, Trustee};
use crate::client::RevealError;
use crate::crypto::{pad_bit, IntervalKey, PadEngine, PairKey, SerialPads};

/// Cells whose pad nonces a trustee keeps, the latest ones ([`crate::blame::horizon::ANSWERED`]).
pub const ANSWERED: usize = crate::blame::horizon::ANSWERED;

impl<P, I, B> Trustee<P, I, B>
where
    P: AsMut<[PairKey]> + AsRef<[PairKey]>,
    I: AsMut<[IntervalKey]> + AsRef<[IntervalKey]>,
    B: AsMut<[u8]> + AsRef<[u8]>,
{
    /// Records a sent cell (the cell path, for every cell).
    pub(super) fn record_sent(&mut self, cell: Pending) {
        if self.sent_cells.is_full() {
            self.sent_cells.pop_front();
        }
        let _ = self.sent_cells.push_back(cell);
    }

    /// The running interval's members' keys, and the sent cell of `exchange` of
    /// `interval`.
    pub(super) fn answered(
        &self,
        interval: u32,
        exchange: u64,
    ) -> Result<(&[IntervalKey], Pending), RevealError> {
        let members = match self.phase {
            Phase::Running(r) if r.interval == interval => r.members as usize,
            _ => return Err(RevealError::Forgotten),
        };
        let cell = *self
            .sent_cells
            .iter()
            .rev()
            .find(|c| c.interval == interval && c.exchange == exchange)
            .ok_or(RevealError::Forgotten)?;
        let keys = self.interval_keys.as_ref();
        Ok((keys.get(..members).unwrap_or(keys), cell))
    }

    /// Recomputes the cell this trustee sent for `exchange` of `interval` (the running
    /// one) into `out`; returns its length.
    pub fn recompute_cell(
        &self,
        interval: u32,
        exchange: u64,
        out: &mut [u8],
    ) -> Result<usize, RevealError> {
        let (keys, cell) = self.answered(interval, exchange)?;
        let dst = out.get_mut(..cell.len).ok_or(RevealError::BufferTooSmall)?;
        dst.fill(0);
        SerialPads.xor_pads(keys, &cell.nonce, dst);
        Ok(cell.len)
    }

    /// This trustee's pad bits at `bit` of `exchange` of `interval`, one per member in
    /// index order, as a bitmap in `out`; returns the count.
    pub fn pad_bits(
        &self,
        interval: u32,
        exchange: u64,
        bit: u32,
        out: &mut [u8],
    ) -> Result<usize, RevealError> {
        let (keys, cell) = self.answered(interval, exchange)?;
        let bitmap = out
            .get_mut(..keys.len().div_ceil(8))
            .ok_or(RevealError::BufferTooSmall)?;
        bitmap.fill(0);
        for (p, key) in keys.iter().enumerate() {
            if pad_bit(key, &cell.nonce, bit) {
                crate::bits::set(bitmap, p);
            }
        }
        Ok(keys.len())
    }
}
