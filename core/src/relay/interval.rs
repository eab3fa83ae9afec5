//! The interval's lifecycle: the phases, when an interval opens, drains, aborts and ends.
//!
//! Owns [`Phase`] and the moves between phases. It must not send anything (each phase's
//! frames are `setup.rs`'s and `exchange.rs`'s).

use super::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stop {
    /// Finish the exchanges in flight, then end.
    Drain,
    /// End once everything before `end_at` is reported.
    Abort { end_at: u64 },
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Running {
    pub(super) interval: u32,
    pub(super) members: u32,
    pub(super) next: u64,
    pub(super) done: u64,
    pub(super) stop: Option<Stop>,
    pub(super) schedule: Schedule,
    /// A client request to send right after the trustee request of the same exchange.
    pub(super) client_pending: Option<(u64, Kind, usize, PendingDown)>,
}

#[derive(Debug, Clone, Copy)]
pub(super) enum Phase {
    Waiting,
    Opening {
        interval: u32,
        members: u32,
        open_sent: bool,
        sent: [u32; MAX_TRUSTEES],
        scan: [usize; MAX_TRUSTEES],
        ready: u32,
        since: Instant,
    },
    /// `IntervalStart` sent; collecting members' acknowledgements, passing them to each
    /// trustee, then collecting the trustees' confirmations.
    Starting {
        interval: u32,
        members: u32,
        start_pending: bool,
        /// Members whose acknowledgement arrived.
        acked: u32,
        /// Acknowledgements passed to each trustee, and its scan position.
        acks_sent: [u32; MAX_TRUSTEES],
        acks_scan: [usize; MAX_TRUSTEES],
        /// Confirmations from each trustee, and its scan position.
        got: [u32; MAX_TRUSTEES],
        scan: [usize; MAX_TRUSTEES],
        since: Instant,
    },
    Confirming {
        interval: u32,
        members: u32,
        scan: usize,
        /// The member being sent the records it missed.
        replay: Option<Replaying>,
        /// Data bytes of the largest record in the log (which does not change until the
        /// interval runs).
        largest: u32,
    },
    Running(Running),
}

/// A member's replay under way: the next record's sequence number and log offset.
#[derive(Debug, Clone, Copy)]
pub(super) struct Replaying {
    pub(super) client: u16,
    pub(super) seq: u64,
    pub(super) at: usize,
}

impl<P, B> Relay<P, B>
where
    P: AsMut<[Peer]> + AsRef<[Peer]>,
    B: AsMut<[u8]> + AsRef<[u8]>,
{
    /// Ends the current interval without waiting for the exchanges in flight.
    pub(super) fn abort(&mut self) {
        match self.phase {
            Phase::Waiting => {}
            // No exchange ran, so there is nothing for clients to settle.
            Phase::Opening { .. } | Phase::Starting { .. } | Phase::Confirming { .. } => {
                self.phase = Phase::Waiting
            }
            Phase::Running(mut r) => {
                if matches!(r.stop, Some(Stop::Abort { .. })) {
                    return;
                }
                // Exchanges already complete are still reported.
                let mut end_at = r.done;
                while end_at < r.next && self.complete(&r, end_at) {
                    end_at += 1;
                }
                r.stop = Some(Stop::Abort { end_at });
                r.client_pending = None;
                self.phase = Phase::Running(r);
            }
        }
    }

    pub(super) fn end_interval(&mut self, interval: u32, done: u64) {
        if self.history.is_full() {
            self.history.pop_front();
        }
        let _ = self.history.push_back(IntervalRecord { interval, done });
        // Members that stayed got every record of the interval.
        let n = usize::from(self.cfg.clients);
        let head = self.head.seq;
        let (store, peers) = (self.store.as_ref(), self.peers.as_mut());
        let online = &store[self.regions.connected..self.regions.online];
        for i in Bits::new_checked(online, n)
            .into_iter()
            .flat_map(|b| b.iter())
        {
            if peers[i].link.is_some() {
                peers[i].seq = Some(head);
            }
        }
        self.push_event(RelayEvent::IntervalEnded { interval, done });
        self.unreported.clear();
        self.outq_len = 0;
        self.decoding = None;
        self.phase = Phase::Waiting;
    }

    /// Moves between phases as connections and progress allow.
    pub(super) fn advance(&mut self, now: Instant) {
        loop {
            match self.phase {
                Phase::Waiting => {
                    if self.trustees == self.all_trustees
                        && self.connected >= usize::from(self.cfg.min_clients.max(1))
                    {
                        let interval = self.next_interval;
                        self.next_interval = self.next_interval.wrapping_add(1);
                        let r = self.regions;
                        let store = self.store.as_mut();
                        let (a, b) = store[..r.online].split_at_mut(r.connected);
                        b.copy_from_slice(a);
                        let members = bits::count(b) as u32;
                        let n = usize::from(self.cfg.clients);
                        for p in self.peers.as_mut()[..n].iter_mut() {
                            p.waiting_since = None;
                        }
                        self.join_check = None;
                        self.phase = Phase::Opening {
                            interval,
                            members,
                            open_sent: false,
                            sent: [0; MAX_TRUSTEES],
                            scan: [0; MAX_TRUSTEES],
                            ready: 0,
                            since: now,
                        };
                    }
                    return;
                }
                Phase::Running(mut r) => {
                    match r.stop {
                        None if self.join_check.is_some_and(|t| now >= t) => {
                            // One scan: the earliest joiner still connected, if any.
                            let ready = self.earliest_joiner().map(|t| t + self.cfg.join_delay);
                            if ready.is_some_and(|t| now >= t) {
                                r.stop = Some(Stop::Drain);
                                self.phase = Phase::Running(r);
                            } else {
                                self.join_check = ready;
                            }
                        }
                        Some(Stop::Drain)
                            if r.done == r.next
                                && r.client_pending.is_none()
                                && self.decoding.is_none() =>
                        {
                            self.end_interval(r.interval, r.done);
                            continue;
                        }
                        Some(Stop::Abort { end_at })
                            if r.done >= end_at && self.decoding.is_none() =>
                        {
                            self.end_interval(r.interval, r.done);
                            continue;
                        }
                        _ => {}
                    }
                    return;
                }
                _ => return,
            }
        }
    }
}
