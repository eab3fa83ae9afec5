//! Exchanges at the trustee: each request is checked against the schedule, and its cell is
//! the XOR of this trustee's pads with every member of the interval.
//!
//! Owns the cells requested and not yet sent. It must not change the interval's members
//! (`setup.rs`).

use super::setup::Phase;
use super::Trustee;
use crate::crypto::{IntervalKey, PadEngine, PadNonce, PairKey};
use crate::error::{IntervalError, PeerError, RequestError};
use crate::schedule::Deviation;
use crate::time::Instant;
use crate::wire::{OutputsView, Prefix, TrusteeRequest, WireError};

/// A requested cell, computed when it is sent.
#[derive(Debug, Clone, Copy)]
pub(super) struct Pending {
    pub(super) interval: u32,
    pub(super) exchange: u64,
    pub(super) len: usize,
    pub(super) nonce: PadNonce,
}

impl<P, I, B> Trustee<P, I, B>
where
    P: AsMut<[PairKey]> + AsRef<[PairKey]>,
    I: AsMut<[IntervalKey]> + AsRef<[IntervalKey]>,
    B: AsMut<[u8]> + AsRef<[u8]>,
{
    /// A request for this trustee's cell of the next exchange.
    pub(super) fn on_request(
        &mut self,
        now: Instant,
        request: &TrusteeRequest<'_>,
    ) -> Result<(), PeerError> {
        let TrusteeRequest {
            interval,
            exchange,
            kind,
            outputs,
            ref head,
        } = *request;
        let Phase::Running(mut running) = self.phase else {
            return Err(PeerError::Unexpected);
        };
        RequestError::check_next(running.interval, running.next_exchange, interval, exchange)?;
        let view = OutputsView::parse(outputs, self.slots)?;
        running
            .schedule
            .follow(self.schedule.as_mut(), &mut self.unreported, &view, kind)
            .map_err(|d| match d {
                Deviation::WrongKind => RequestError::WrongKind { exchange },
                Deviation::WindowExceeded => RequestError::WindowExceeded,
            })?;
        let window = self.policy.log_window;
        // A record carries at most `downstream_len` bytes of data, a grant its 4 bytes.
        let max_record = running.downstream_len.max(crate::wire::GRANT_LEN as u32);
        self.checkpoints
            .request(now, &window, head, u64::from(max_record))
            .map_err(|_| IntervalError::Equivocation)?;
        running
            .transcript
            .advance(exchange, kind, outputs, &head.hash);
        self.cells
            .push_back(Pending {
                interval,
                exchange,
                len: kind.cell_len(self.slots),
                nonce: running.transcript.pad_nonce(),
            })
            .map_err(|_| RequestError::WindowExceeded)?;
        running.next_exchange += 1;
        self.phase = Phase::Running(running);
        Ok(())
    }

    /// The oldest requested cell, its pads computed by `engine`.
    pub(super) fn transmit_cell(
        &mut self,
        out: &mut [u8],
        engine: &mut dyn PadEngine,
    ) -> Result<Option<usize>, WireError> {
        let Some(&cell) = self.cells.front() else {
            return Ok(None);
        };
        let members = match self.phase {
            Phase::Running(running) => running.members as usize,
            _ => 0,
        };
        let p = Prefix::Cell {
            interval: cell.interval,
            exchange: cell.exchange,
        }
        .emit(cell.len, out)?;
        self.cells.pop_front();
        #[cfg(feature = "blame-round")]
        self.record_sent(cell);
        let dst = out
            .get_mut(p..p + cell.len)
            .ok_or(WireError::BufferTooSmall)?;
        dst.fill(0);
        let keys = self.interval_keys.as_ref();
        engine.xor_pads(keys.get(..members).unwrap_or(keys), &cell.nonce, dst);
        self.cells_sent += 1;
        Ok(Some(p + cell.len))
    }
}
