//! Intervals at the client: the `IntervalStart` the relay shows is checked and
//! acknowledged to every trustee, and acted on only once every trustee confirmed it (so it
//! is what every member was shown): then the client's own loss is checked against the
//! start's bitmap of lost members, a loss in its buddy group ends its connections, the sent
//! cells are settled against its history, and the downstream records missed while away
//! are replayed.
//!
//! Owns the phases of the client's link ([`Phase`]) and the checks on an interval's view.
//! It must not build cells (`request.rs`).

use heapless::Vec;

use super::{Client, ClientEvent};
use crate::bits::{self, bitmap_len, Bits};
use crate::buddies;
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
    /// The slot may transmit in this interval (`buddies.rs`).
    pub(super) may_send: bool,
    /// The slot put out something other than zeros in this interval.
    pub(super) transmitted: bool,
    /// The anonymity set took this interval's online set in.
    pub(super) accounted: bool,
    /// The interval's view (`T_start`), which the slot's sealed cells bind.
    pub(super) view: [u8; 32],
    /// Exchanges of this client's slot requested so far in the interval: the ordinal of
    /// the next one.
    pub(super) ordinal: u64,
    /// The relay's trap point of the interval (`R_I`), as announced.
    pub(super) trap: [u8; 32],
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
    /// The start marks this client lost.
    pub(super) marked_lost: bool,
    /// The start marks some client of this client's buddy group lost.
    pub(super) group_lost: bool,
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
    /// Confirmed; waiting for the downstream records missed, up to `until`. `chain` is
    /// where the records received so far lead.
    AwaitReplays {
        running: Running,
        clients: usize,
        chain: Head,
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
            lost,
            nonces,
            trap,
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
        let n = usize::from(self.clients);
        let set = Bits::new_checked(online, n).map_err(|_| IntervalError::Parameters)?;
        if !set.contains(usize::from(self.index)) {
            return Err(IntervalError::NotMember.into());
        }
        // Lost members: none (empty), or a bitmap within the online set.
        if !lost.is_empty() {
            let lost_set = Bits::new_checked(lost, n).map_err(|_| IntervalError::Parameters)?;
            if lost_set.iter().any(|i| !set.contains(i)) {
                return Err(IntervalError::Parameters.into());
            }
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
        // A blame round may ask for any of its last `keep_horizon(window)` owned cells.
        if let Some(kept) = self.kept_cells(params.max_len as usize) {
            let needs = crate::blame::keep_horizon(window);
            if kept < needs {
                return Err(IntervalError::TooFewKept {
                    window,
                    kept,
                    needs,
                }
                .into());
            }
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
        #[cfg(feature = "blame-round")]
        self.note_trustee_nonces(nonces);
        if let Some(dst) = self.online.as_mut().get_mut(..online.len()) {
            dst.copy_from_slice(online);
        }
        let k = self.policy.min_anonymity;
        let marked_lost = !lost.is_empty() && bits::test(lost, usize::from(self.index));
        let group_lost =
            !lost.is_empty() && buddies::group_touches(lost, self.index, self.clients, k);
        // A cell of its slot the relay showed disrupted, whose output the ended interval
        // never reported: abandoned like any disrupted cell (the interval's history counts
        // it as decoded). Its own by the schedule, as when the output is reported (the
        // kept sealed cells, a few and none on a device, miss some), or by a kept cell.
        if let Phase::Running(r) = &self.phase {
            let ended = r.interval;
            let first_unreported = r.next_exchange.saturating_sub(self.unreported.len() as u64);
            let own = |e: u64| {
                e.checked_sub(first_unreported)
                    .and_then(|i| usize::try_from(i).ok())
                    .and_then(|i| self.unreported.iter().nth(i))
                    .is_some_and(
                        |k| matches!(k, crate::wire::Kind::Slot { slot, .. } if *slot == self.slot),
                    )
            };
            let first = self
                .disrupted
                .iter()
                .map(|d| d.0)
                .find(|&e| own(e) || self.kept_cell(ended, e).is_some());
            if let Some(e) = first {
                self.abandon_from(ended, e);
                self.unprepare();
            }
        }
        self.disrupted.clear();
        // The earlier interval's cells are no longer asked for: the storage is laid out
        // for this one's longest cell.
        self.fit_sealed(params.max_len as usize);
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
                    view: *Transcript::start(body).hash(),
                    ordinal: 0,
                    trap,
                    schedule,
                    params,
                    may_send: false,
                    transmitted: false,
                    accounted: false,
                },
                clients,
                epoch,
                head,
                oldest,
                largest,
                history,
                marked_lost,
                group_lost,
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
            mut running,
            clients,
            epoch,
            head,
            oldest,
            largest,
            history,
            marked_lost,
            group_lost,
        } = shown.clone();
        self.commit_taken();
        // Lost, by the rule the relay applies too (protocol.md §5.10): another relay
        // instance, a gap the relay cannot replay or this client cannot hold, cells sent in
        // an interval the history no longer has, or a loss its buddy group has not all seen.
        let mut wait_for = None;
        let gap_lost = match self.epoch {
            None => false,
            Some(e) if e != epoch => true,
            Some(_) => {
                let have = self.delivered;
                if head.seq < have.seq || (head.seq == have.seq && head != have) {
                    return Err(IntervalError::Equivocation.into());
                }
                if head.seq == have.seq {
                    false
                } else if self.replayable(&head, oldest, largest) {
                    wait_for = Some(head);
                    false
                } else {
                    true
                }
            }
        };
        let forgotten = self
            .answered
            .is_some_and(|i| !history.iter().any(|h| h.interval == i));
        let newly_lost = gap_lost || forgotten;
        if marked_lost != (newly_lost || self.loss_pending) {
            return Err(IntervalError::Lost.into());
        }
        if newly_lost {
            // The connections cannot be resumed. They end here, quietly; the exit closes
            // its side when idle.
            self.lose_all();
            self.loss_pending = true;
            wait_for = None;
        }
        if newly_lost || self.epoch.is_none() {
            // A client that never followed a log has missed nothing.
            self.epoch = Some(epoch);
            self.head = head;
            self.delivered = head;
            self.answered = None;
        }
        let complete = self.group_complete();
        if complete && group_lost {
            // A client of the buddy group lost its connections: so does every other, so a
            // loss shows the relay a group, never a client.
            self.lose_all();
            self.loss_pending = false;
        }
        self.settle(running.interval, &history);
        self.announced_next = 0;
        running.may_send = self.may_transmit();
        self.phase = match wait_for {
            Some(until) => {
                self.replay.clear();
                Phase::AwaitReplays {
                    running,
                    clients,
                    chain: self.delivered,
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

    /// Whether the records after the delivered ones up to `head` can be replayed: the relay
    /// still holds them, every one fits this client's frames, and together they fit its
    /// replay buffer.
    fn replayable(&self, head: &Head, oldest: u64, largest: u32) -> bool {
        let have = self.delivered;
        // Saturating: the relay chose these numbers.
        let size = head.bytes.saturating_sub(have.bytes).saturating_add(
            head.seq
                .saturating_sub(have.seq)
                .saturating_mul(REPLAY_OVERHEAD as u64),
        );
        have.seq.saturating_add(1) >= oldest
            && u64::from(largest) + wire::REPLAY_FRAME_OVERHEAD as u64 <= u64::from(self.max_frame)
            && size <= self.replay.capacity() as u64
    }
}
