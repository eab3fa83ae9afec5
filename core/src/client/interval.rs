//! Intervals at the client: the `IntervalStart` the relay shows is checked and
//! acknowledged to every trustee, and acted on only once every trustee confirmed it (so it
//! is what every member was shown): then the sent cells are settled against its history,
//! and the downstream records missed while away are replayed.
//!
//! Owns the phases of the client's link ([`Phase`]) and the checks on an interval's view.
//! It must not build cells (`request.rs`).

use heapless::Vec;

use super::{Client, ClientEvent};
use crate::bits::{bitmap_len, Bits};
use crate::error::{IntervalError, PeerError};
use crate::schedule::Schedule;
use crate::transcript::Transcript;
use crate::wire::{
    self, Head, IntervalRecord, IntervalStart, Params, MAX_HISTORY, REPLAY_OVERHEAD,
};
use crate::{MAC_LEN, MAX_WINDOW, NONCE_LEN};

/// An interval this client sends in.
#[derive(Debug, Clone, Copy)]
pub(super) struct Running {
    pub(super) interval: u32,
    pub(super) next_exchange: u64,
    pub(super) window: u64,
    pub(super) transcript: Transcript,
    pub(super) schedule: Schedule,
    pub(super) params: Params,
}

/// What an `IntervalStart` showed, kept until every trustee has confirmed it.
#[derive(Debug, Clone)]
pub(super) struct Shown {
    pub(super) running: Running,
    /// Clients in the online set.
    pub(super) clients: usize,
    pub(super) epoch: [u8; 16],
    pub(super) head: Head,
    pub(super) oldest: u64,
    pub(super) largest: u32,
    pub(super) history: Vec<IntervalRecord, MAX_HISTORY>,
}

/// Where the client's link to the relay is.
#[derive(Debug, Clone)]
pub(super) enum Phase {
    Disconnected,
    /// Connected, waiting for an interval.
    AwaitStart,
    AwaitConfirm {
        /// The acknowledgement of the view went out.
        acked: bool,
        shown: Shown,
    },
    /// Confirmed; waiting for the downstream records missed, up to `until`.
    AwaitReplays {
        running: Running,
        clients: usize,
        until: Head,
    },
    Running(Running),
}

impl<B: AsMut<[u8]> + AsRef<[u8]>> Client<B> {
    /// Checks the interval's view (`body` is the whole `IntervalStart`, which starts the
    /// transcript) and acknowledges it; nothing of it is acted on until it is confirmed.
    pub(super) fn on_interval_start(
        &mut self,
        body: &[u8],
        start: IntervalStart<'_>,
    ) -> Result<(), PeerError> {
        let IntervalStart {
            interval,
            epoch,
            online,
            nonces,
            window,
            params,
            history,
            head,
            oldest,
            largest,
        } = start;
        if self.last_interval.is_some_and(|last| interval <= last) {
            return Err(IntervalError::Stale(interval).into());
        }
        let set = Bits::new_checked(online, usize::from(self.clients))
            .map_err(|_| IntervalError::Parameters)?;
        if !set.contains(usize::from(self.index)) {
            return Err(IntervalError::NotMember.into());
        }
        let clients = set.count();
        if clients < usize::from(self.min_clients) {
            return Err(IntervalError::TooFewClients {
                online: clients,
                min: self.min_clients,
            }
            .into());
        }
        if nonces.len() != self.pairs.len() * NONCE_LEN
            || window == 0
            || usize::from(window) > MAX_WINDOW
        {
            return Err(IntervalError::Parameters.into());
        }
        let ok = params.base_len as usize == self.cell_len
            && params.max_len as usize <= self.max_cell
            && bitmap_len(usize::from(self.slots)) <= self.max_cell
            && params.capacity <= self.max_reserved
            && u64::from(params.downstream_len) + wire::max_outputs_len(self.slots) as u64 + 64
                <= u64::from(self.max_frame);
        if !ok {
            return Err(IntervalError::Parameters.into());
        }
        let schedule = Schedule::new(self.slots, &params, self.schedule.as_ref().len())
            .map_err(|_| IntervalError::Parameters)?;
        self.interval_keys.clear();
        for (pair, n) in self.pairs.iter().zip(nonces.chunks_exact(NONCE_LEN)) {
            let Ok(nonce) = <[u8; NONCE_LEN]>::try_from(n) else {
                continue;
            };
            // Same length as `pairs`, which is bounded by MAX_TRUSTEES.
            let _ = self
                .interval_keys
                .push(pair.interval_key(interval, &nonce, &self.link_nonce));
        }
        self.last_interval = Some(interval);
        self.unreported.clear();
        self.phase = Phase::AwaitConfirm {
            acked: false,
            shown: Shown {
                running: Running {
                    interval,
                    next_exchange: 0,
                    window: u64::from(window),
                    transcript: Transcript::start(body),
                    schedule,
                    params,
                },
                clients,
                epoch,
                head,
                oldest,
                largest,
                history,
            },
        };
        Ok(())
    }

    /// Every trustee's confirmation of the view: checked, then the view is acted on.
    pub(super) fn on_confirmed(&mut self, interval: u32, macs: &[u8]) -> Result<(), PeerError> {
        let Phase::AwaitConfirm { acked: true, shown } = &self.phase else {
            return Err(PeerError::Unexpected);
        };
        if shown.running.interval != interval || macs.len() != self.pairs.len() * MAC_LEN {
            return Err(PeerError::Unexpected);
        }
        let view = *shown.running.transcript.hash();
        for (t, (pair, mac)) in self
            .pairs
            .iter()
            .zip(macs.chunks_exact(MAC_LEN))
            .enumerate()
        {
            if !pair.check_confirmation(&view, mac) {
                return Err(IntervalError::Unconfirmed { trustee: t as u16 }.into());
            }
        }
        // The view is bound: act on it.
        let Shown {
            running,
            clients,
            epoch,
            head,
            oldest,
            largest,
            history,
        } = shown.clone();
        self.commit_taken();
        let same_log = self.epoch == Some(epoch);
        let mut wait_for = None;
        if same_log && head.seq == self.head.seq {
            if head != self.head {
                return Err(IntervalError::Equivocation.into());
            }
        } else if same_log
            && head.seq > self.head.seq
            && self.head.seq.saturating_add(1) >= oldest
            && u64::from(largest) + wire::REPLAY_FRAME_OVERHEAD as u64 <= u64::from(self.max_frame)
            // Saturating: the relay chose these numbers.
            && head
                .bytes
                .saturating_sub(self.head.bytes)
                .saturating_add((head.seq - self.head.seq).saturating_mul(REPLAY_OVERHEAD as u64))
                <= self.replay.capacity() as u64
        {
            wait_for = Some(head);
        } else if same_log && head.seq < self.head.seq {
            return Err(IntervalError::Equivocation.into());
        } else {
            // A new relay instance, or away longer than its log: the connections cannot be
            // resumed. They end here, quietly; the exit closes its side when idle. (A client
            // that never followed a log has missed nothing.)
            if self.epoch.is_some() {
                self.lose_all();
            }
            self.epoch = Some(epoch);
            self.head = head;
        }
        self.settle(running.interval, &history);
        self.announced_next = 0;
        self.phase = match wait_for {
            Some(until) => {
                self.replay.clear();
                Phase::AwaitReplays {
                    running,
                    clients,
                    until,
                }
            }
            None => {
                self.push_event(ClientEvent::IntervalStarted {
                    interval: running.interval,
                    clients,
                });
                Phase::Running(running)
            }
        };
        Ok(())
    }
}
