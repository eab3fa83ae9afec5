//! Time at the relay: the next deadline, and what happens when it passes (peers that left
//! an exchange or a set-up unanswered are dropped, probes settle, paced exchanges go on).
//!
//! Owns [`Relay::poll_timeout`], [`Relay::handle_timeout`] and the pacing of an idle net.
//! It must not send anything itself: drops queue goodbyes through `peers.rs`.

use heapless::Vec;

use super::{Duration, Instant, Peer, PeerId, Phase, Relay, Running, Stall, Stop};
use crate::bits::{self, Bits};
use crate::wire::Kind;

impl<P, B> Relay<P, B>
where
    P: AsMut<[Peer]> + AsRef<[Peer]>,
    B: AsMut<[u8]> + AsRef<[u8]>,
{
    /// When [`Relay::handle_timeout`] should next be called.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut at: Option<Instant> = None;
        let mut earliest = |t: Instant| {
            at = Some(at.map_or(t, |a: Instant| a.min(t)));
        };
        if self.probes {
            for p in self.peers.as_ref().iter().take(self.cfg.peers_len()) {
                if let Some(pending) = p.pending {
                    earliest(pending.deadline);
                }
            }
        }
        match self.phase {
            Phase::Waiting | Phase::Confirming { replay: None, .. } => {}
            Phase::Starting {
                interval,
                members,
                acked,
                since,
                ..
            } => {
                earliest(since + self.cfg.exchange_timeout);
                if acked < members {
                    if let Some(q) = self.quorums.acks(interval) {
                        earliest(self.cutoff(since, q));
                    }
                }
            }
            Phase::Opening { since, .. } | Phase::Confirming { since, .. } => {
                earliest(since + self.cfg.exchange_timeout)
            }
            Phase::Running(running) => {
                // An aborted interval waits for no cell (it may be held by a blame round).
                let aborted = matches!(running.stop, Some(Stop::Abort { .. }));
                if running.done < running.next && !aborted {
                    if let Some(oldest) = self.window.issued(running.done) {
                        earliest(oldest.issued + self.cfg.exchange_timeout);
                        let q = self.quorums.exchange(running.interval, running.done);
                        if let Some(q) = q.filter(|_| oldest.clients < running.members) {
                            earliest(self.cutoff(oldest.issued, q));
                        }
                    }
                }
                if running.stop.is_none() {
                    // Idle, one exchange is in flight at a time: the pause matters only once
                    // it has decoded.
                    if self.idle && running.schedule.reserved() == 0 && running.next <= running.done
                    {
                        earliest(self.last_issue + self.gap);
                    }
                    if let Some(t) = self.join_check {
                        earliest(t);
                    }
                }
            }
        }
        #[cfg(feature = "blame-round")]
        if let Some(t) = self.blame_deadline() {
            earliest(t);
        }
        at
    }

    /// Drops peers that left an exchange (or an interval's set-up, or its replays)
    /// unanswered, and the stragglers of a round all but a few members answered (clients
    /// are penalized: `stall.rs`), settles probes, and lets paced exchanges and waiting
    /// joiners go on.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.settle_probes(now);
        #[cfg(feature = "blame-round")]
        self.blame_tick(now);
        // At most 64 peers per call, so every goodbye fits its queue. The first drop aborts
        // the interval; peers late beyond these 64 meet the timeouts of the next one.
        let mut late: Vec<PeerId, 64> = Vec::new();
        // What the late clients are penalized for: nothing if no member answered either
        // (the relay's or the net's hold-up, not theirs).
        let mut why: Option<Stall> = None;
        match self.phase {
            Phase::Opening { ready, since, .. } if now >= since + self.cfg.exchange_timeout => {
                for t in 0..self.cfg.trustees {
                    if ready & (1 << t) == 0 {
                        let _ = late.push(PeerId::Trustee(t));
                    }
                }
            }
            Phase::Starting {
                interval,
                acked,
                members,
                since,
                ..
            } if acked < members
                && self
                    .quorums
                    .acks(interval)
                    .is_some_and(|q| now >= self.cutoff(since, q)) =>
            {
                why = Some(Stall::WithheldAck);
                self.unacked(interval, &mut late);
            }
            Phase::Starting {
                interval,
                acked,
                confirmed,
                members,
                since,
                ..
            } if now >= since + self.cfg.exchange_timeout => {
                if acked < members {
                    why = (acked > 0).then_some(Stall::WithheldAck);
                    self.unacked(interval, &mut late);
                } else {
                    for (t, &entries) in (0..self.cfg.trustees).zip(&confirmed.entries) {
                        if entries != members {
                            let _ = late.push(PeerId::Trustee(t));
                        }
                    }
                }
            }
            Phase::Confirming {
                replay: Some(r),
                since,
                ..
            } if now >= since + self.cfg.exchange_timeout => {
                // A replay that made no progress that long: its member does not read.
                why = Some(Stall::Timeout);
                let _ = late.push(PeerId::Client(r.client));
            }
            Phase::Running(running)
                if running.done < running.next
                    && !matches!(running.stop, Some(Stop::Abort { .. })) =>
            {
                let oldest = running.done;
                let issued = self.window.issued(oldest).copied();
                let timed_out = issued.filter(|s| now >= s.issued + self.cfg.exchange_timeout);
                let cut = issued.filter(|s| {
                    s.clients < running.members
                        && self
                            .quorums
                            .exchange(running.interval, oldest)
                            .is_some_and(|q| now >= self.cutoff(s.issued, q))
                });
                if let Some(issued) = timed_out.or(cut) {
                    if timed_out.is_some() {
                        for t in 0..self.cfg.trustees {
                            if issued.trustees & (1 << t) == 0 {
                                let _ = late.push(PeerId::Trustee(t));
                            }
                        }
                        why = (issued.clients > 0).then_some(Stall::Timeout);
                    } else {
                        why = Some(Stall::Straggler);
                    }
                    let arrived = self.window.arrived(oldest);
                    for i in Bits::new_checked(self.online_bits(), usize::from(self.cfg.clients))
                        .into_iter()
                        .flat_map(|b| b.iter())
                    {
                        if !bits::test(arrived, i) && late.push(PeerId::Client(i as u16)).is_err() {
                            break;
                        }
                    }
                }
            }
            _ => {}
        }
        for peer in late {
            self.drop_stalled(now, peer, why);
        }
        self.advance(now);
    }

    /// The members of `interval` that have not acknowledged its view.
    fn unacked(&self, interval: u32, late: &mut Vec<PeerId, 64>) {
        let n = usize::from(self.cfg.clients);
        let peers = self.peers.as_ref();
        for i in Bits::new_checked(self.online_bits(), n)
            .into_iter()
            .flat_map(|b| b.iter())
        {
            let acked = peers.get(i).is_some_and(|p| p.acked == Some(interval));
            if !acked && late.push(PeerId::Client(i as u16)).is_err() {
                break;
            }
        }
    }

    /// Whether the next exchange may be issued now.
    ///
    /// Only an idle net with nothing reserved is paced: a reserved slot (a conversation
    /// between turns) runs at full speed. One exchange is in flight at a time unless an
    /// owner filled its last cell (a bulk sender, likely with more) or the exit has
    /// downstream bytes waiting: then the whole window opens. Otherwise an owner's next
    /// bytes would wait behind a window of exchanges issued before they existed.
    pub(super) fn may_issue(&self, now: Instant, running: &Running, downstream: bool) -> bool {
        let paced = self.idle
            && running.schedule.reserved() == 0
            && !downstream
            && now < self.last_issue + self.gap;
        let window = if self.burst || downstream {
            u64::from(self.cfg.window)
        } else {
            1
        };
        running.next < running.done + window && !paced
    }

    /// After issuing an exchange of `kind`: the pause before the next one while the net is
    /// idle. It doubles from a sixteenth of the longest pause up to it, the longest being
    /// `idle_gap`, or longer where a large group's idle exchanges would cost more than
    /// `idle_budget`.
    pub(super) fn paced_after(
        &mut self,
        now: Instant,
        running: &Running,
        kind: Kind,
        downstream: bool,
    ) {
        self.last_issue = now;
        self.gap = if self.idle && !downstream {
            let cells = u64::from(running.members) + u64::from(self.cfg.trustees);
            let bytes = cells * kind.cell_len(self.cfg.slots) as u64;
            let cost = bytes.saturating_mul(1_000_000) / self.cfg.idle_budget.max(1);
            let longest = self.cfg.idle_gap.as_micros().max(cost);
            let floor = longest / 16;
            Duration::from_micros((self.gap.as_micros() * 2).max(floor).min(longest))
        } else {
            Duration::default()
        };
    }
}
