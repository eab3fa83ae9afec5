//! The interval's lifecycle: the phases, when an interval opens, drains, aborts and ends.
//!
//! Owns [`Phase`] and the moves between phases. It must not send anything (each phase's
//! frames are `setup.rs`'s and `exchange.rs`'s).

use super::exchange::PendingDown;
use super::peers::Follows;
use super::{Instant, Peer, Relay, RelayEvent};
use crate::bits::{self, bitmap_len, Bits};
use crate::schedule::Schedule;
use crate::wire::{IntervalRecord, Kind};
use crate::MAX_TRUSTEES;

/// How a running interval ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stop {
    /// Finish the exchanges in flight, then end.
    Drain,
    /// End once everything before `end_at` is reported.
    Abort { end_at: u64 },
}

/// A running interval: exchanges `done .. next` are in flight.
#[derive(Debug, Clone, Copy)]
pub(super) struct Running {
    pub(super) interval: u32,
    /// Clients in its online set.
    pub(super) members: u32,
    /// The next exchange to issue.
    pub(super) next: u64,
    /// Exchanges decoded (or, once aborted, reported).
    pub(super) done: u64,
    pub(super) stop: Option<Stop>,
    pub(super) schedule: Schedule,
    /// A client request to send right after the trustee request of the same exchange.
    pub(super) client_request: Option<PendingClientRequest>,
    /// Some client request went out to the members.
    pub(super) asked: bool,
}

/// The client request of an exchange whose trustee request just went out.
#[derive(Debug, Clone, Copy)]
pub(super) struct PendingClientRequest {
    pub(super) exchange: u64,
    pub(super) kind: Kind,
    /// Bytes of its outputs, in the relay's request outputs.
    pub(super) outputs_len: usize,
    pub(super) down: PendingDown,
}

/// How far a per-member list (members, acknowledgements, confirmations) has got with each
/// trustee: its entries so far, and the online-set position to look at next.
#[derive(Debug, Clone, Copy)]
pub(super) struct Columns {
    pub(super) entries: [u32; MAX_TRUSTEES],
    pub(super) position: [usize; MAX_TRUSTEES],
}

impl Columns {
    pub(super) const NEW: Columns = Columns {
        entries: [0; MAX_TRUSTEES],
        position: [0; MAX_TRUSTEES],
    };
}

/// Where the relay is between intervals.
#[derive(Debug, Clone, Copy)]
pub(super) enum Phase {
    /// For enough trustees and clients.
    Waiting,
    /// `IntervalOpen` and the members to each trustee; collecting their `IntervalReady`.
    Opening {
        interval: u32,
        members: u32,
        open_sent: bool,
        /// Members sent to each trustee.
        members_sent: Columns,
        /// Trustees ready, one bit each.
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
        /// Acknowledgements passed to each trustee.
        acks_sent: Columns,
        /// Confirmations from each trustee.
        confirmed: Columns,
        since: Instant,
        /// The start marks some member lost (in the relay's `lost` bitmap).
        lost: bool,
        /// Data bytes of the largest record in the log.
        largest: u32,
    },
    /// Each member gets its `Confirmed`, then any downstream records it missed, as fast
    /// as its link takes them.
    Confirming {
        interval: u32,
        members: u32,
        /// The next client to look at.
        position: usize,
        /// The member being sent the records it missed.
        replay: Option<Replaying>,
        /// Data bytes of the largest record in the log (which does not change until the
        /// interval runs).
        largest: u32,
        /// The start marked some member lost.
        lost: bool,
        /// When the last frame of this phase went out (a replay that stalls this long
        /// past the exchange timeout drops its member).
        since: Instant,
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
            Phase::Running(mut running) => {
                if matches!(running.stop, Some(Stop::Abort { .. })) {
                    return;
                }
                // Exchanges already complete are still reported.
                let mut end_at = running.done;
                while end_at < running.next && self.complete(&running, end_at) {
                    end_at += 1;
                }
                running.stop = Some(Stop::Abort { end_at });
                running.client_request = None;
                self.phase = Phase::Running(running);
            }
        }
    }

    /// The interval ended after `done` exchanges: recorded in the history, and the relay
    /// waits for the next. `asked`: members were sent requests in it.
    pub(super) fn end_interval(&mut self, interval: u32, done: u64, asked: bool) {
        if self.history.is_full() {
            self.history.pop_front();
        }
        let _ = self.history.push_back(IntervalRecord {
            interval,
            done,
            disrupted: self.disrupted_recent,
        });
        self.disrupted_recent = 0;
        // Members that stayed got every record and request of the interval (not one back
        // on a new link within it: that link got none, and it holds what it said).
        let n = usize::from(self.cfg.clients);
        let head = self.log.head();
        let peers = self.peers.as_mut();
        let online = self.online.as_ref();
        let online = online.get(..bitmap_len(n)).unwrap_or(online);
        for i in Bits::new_checked(online, n)
            .into_iter()
            .flat_map(|b| b.iter())
        {
            if let Some(p) = peers.get_mut(i).filter(|p| p.link.is_some() && !p.rejoined) {
                p.follows = Follows::Log {
                    seq: head.seq,
                    bytes: head.bytes,
                };
                if asked {
                    p.answered = Some(interval);
                }
            }
        }
        for p in peers.iter_mut().take(n) {
            p.rejoined = false;
        }
        self.push_event(RelayEvent::IntervalEnded { interval, done });
        self.unreported.clear();
        self.outputs.clear();
        self.disrupted.clear();
        self.kept.clear();
        self.decoding = None;
        self.phase = Phase::Waiting;
    }

    /// The epoch is ending (a switch): the running interval finishes the exchanges in
    /// flight and issues no new one, and no new interval opens. [`Relay::drained`] says when
    /// it is done; the shell then calls [`Relay::shutdown_for`].
    pub fn drain(&mut self, now: Instant) {
        self.draining = true;
        self.advance(now);
    }

    /// After [`Relay::drain`]: no exchange is in flight (no interval runs).
    pub fn drained(&self) -> bool {
        self.draining && !matches!(self.phase, Phase::Running(_))
    }

    /// Whether a blame round about `interval` holds it open (`round.rs`).
    fn round_holds(&self, interval: u32) -> bool {
        #[cfg(feature = "blame-round")]
        return self.blame_holds(interval);
        #[cfg(not(feature = "blame-round"))]
        {
            let _ = interval;
            false
        }
    }

    /// Moves between phases as connections and progress allow.
    pub(super) fn advance(&mut self, now: Instant) {
        loop {
            match self.phase {
                Phase::Waiting => {
                    if !self.draining
                        && self.trustees == self.all_trustees
                        && self.connected_clients >= usize::from(self.cfg.min_clients.max(1))
                    {
                        // The interval's online set: the clients connected now.
                        let len = bitmap_len(usize::from(self.cfg.clients));
                        let online = self.online.as_mut();
                        let connected = self.connected.as_ref();
                        for (member, &c) in online.iter_mut().zip(connected).take(len) {
                            *member = c;
                        }
                        // Not the members that owe a blame round their reveal.
                        #[cfg(feature = "blame-round")]
                        {
                            let online = self.online.as_mut();
                            let len = len.min(online.len());
                            self.rounds.clear_owing(online.split_at_mut(len).0);
                        }
                        let members = bits::count(self.online_bits()) as u32;
                        if (members as usize) < usize::from(self.cfg.min_clients.max(1)) {
                            return;
                        }
                        let interval = self.next_interval;
                        self.next_interval = self.next_interval.wrapping_add(1);
                        let n = usize::from(self.cfg.clients);
                        for p in self.peers.as_mut().iter_mut().take(n) {
                            p.waiting_since = None;
                        }
                        self.join_check = None;
                        self.phase = Phase::Opening {
                            interval,
                            members,
                            open_sent: false,
                            members_sent: Columns::NEW,
                            ready: 0,
                            since: now,
                        };
                    }
                    return;
                }
                Phase::Running(mut running) => {
                    match running.stop {
                        None if self.draining => {
                            running.stop = Some(Stop::Drain);
                            self.phase = Phase::Running(running);
                            continue;
                        }
                        None if self.join_check.is_some_and(|t| now >= t) => {
                            // One scan: the earliest joiner still connected, if any.
                            let ready = self.earliest_joiner().map(|t| t + self.cfg.join_delay);
                            if ready.is_some_and(|t| now >= t) {
                                running.stop = Some(Stop::Drain);
                                self.phase = Phase::Running(running);
                            } else {
                                self.join_check = ready;
                            }
                        }
                        Some(Stop::Drain)
                            if running.done == running.next
                                && running.client_request.is_none()
                                && self.decoding.is_none()
                                && self.disrupted.is_empty()
                                && !self.round_holds(running.interval) =>
                        {
                            let asked = running.asked;
                            self.end_interval(running.interval, running.done, asked);
                            continue;
                        }
                        Some(Stop::Abort { end_at })
                            if running.done >= end_at
                                && self.decoding.is_none()
                                && self.disrupted.is_empty()
                                && !self.round_holds(running.interval) =>
                        {
                            let asked = running.asked;
                            self.end_interval(running.interval, running.done, asked);
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
