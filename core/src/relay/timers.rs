//! Time at the relay: the next deadline, and what happens when it passes (peers that left
//! an exchange or a set-up unanswered are dropped, probes settle, paced exchanges go on).
//!
//! Owns [`Relay::poll_timeout`] and [`Relay::handle_timeout`]. It must not send anything
//! itself: drops queue goodbyes through `peers.rs`.

use super::*;

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
            for p in self.peers.as_ref()[..self.cfg.peers_len()].iter() {
                if let Some(pending) = p.pending {
                    earliest(pending.deadline);
                }
            }
        }
        match self.phase {
            Phase::Waiting | Phase::Confirming { .. } => {}
            Phase::Opening { since, .. } | Phase::Starting { since, .. } => {
                earliest(since + self.cfg.exchange_timeout)
            }
            Phase::Running(r) => {
                if r.done < r.next {
                    let s = &self.meta[(r.done % u64::from(self.cfg.window)) as usize];
                    earliest(s.issued + self.cfg.exchange_timeout);
                }
                if r.stop.is_none() {
                    // Idle, one exchange is in flight at a time: the pause matters only once
                    // it has decoded.
                    if self.idle && r.schedule.reserved() == 0 && r.next <= r.done {
                        earliest(self.last_issue + self.gap);
                    }
                    if let Some(t) = self.join_check {
                        earliest(t);
                    }
                }
            }
        }
        at
    }

    /// Drops peers that left an exchange (or an interval's set-up) unanswered, settles
    /// probes, and lets paced exchanges and waiting joiners go on.
    pub fn handle_timeout(&mut self, now: Instant) {
        let total = if self.probes { self.cfg.peers_len() } else { 0 };
        for i in 0..total {
            let p = self.peers.as_ref()[i];
            let Some(pending) = p.pending else { continue };
            if now < pending.deadline {
                continue;
            }
            let peer = self.peer_id(i);
            // The connected process did not answer: it is gone, the newcomer takes over.
            if let Some(old) = p.link {
                self.say_goodbye(old, GoodbyeReason::Replaced);
            }
            self.push_event(RelayEvent::Probed {
                peer,
                outcome: ProbeOutcome::Silent,
            });
            self.disconnect(now, peer);
            let hello = ParsedHello {
                nonce: pending.nonce,
                proofs: pending.proofs,
                max_frame: pending.max_frame,
                resume: pending.resume,
            };
            if let Some(p) = self.peer_mut(peer) {
                p.pending = None;
            }
            self.admit(now, pending.link, peer, &hello);
        }
        self.recount_probes();
        // At most 64 peers per call, so every goodbye fits its queue. The first drop aborts
        // the interval; peers late beyond these 64 meet the timeouts of the next one.
        let mut late: Vec<PeerId, 64> = Vec::new();
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
                got,
                members,
                since,
                ..
            } if now >= since + self.cfg.exchange_timeout => {
                if acked < members {
                    let n = usize::from(self.cfg.clients);
                    let peers = self.peers.as_ref();
                    for i in Bits::new_checked(self.online_bits(), n)
                        .into_iter()
                        .flat_map(|b| b.iter())
                    {
                        if peers[i].acked != Some(interval)
                            && late.push(PeerId::Client(i as u16)).is_err()
                        {
                            break;
                        }
                    }
                } else {
                    for t in 0..self.cfg.trustees {
                        if got[usize::from(t)] != members {
                            let _ = late.push(PeerId::Trustee(t));
                        }
                    }
                }
            }
            Phase::Running(r) if r.done < r.next && !matches!(r.stop, Some(Stop::Abort { .. })) => {
                let idx = (r.done % u64::from(self.cfg.window)) as usize;
                let s = self.meta[idx];
                if now >= s.issued + self.cfg.exchange_timeout {
                    for t in 0..self.cfg.trustees {
                        if s.trustees & (1 << t) == 0 {
                            let _ = late.push(PeerId::Trustee(t));
                        }
                    }
                    let nb = bitmap_len(usize::from(self.cfg.clients));
                    let c = self.regions.online + idx * nb;
                    let contrib = &self.store.as_ref()[c..c + nb];
                    let online = self.online_bits();
                    for i in Bits::new_checked(online, usize::from(self.cfg.clients))
                        .into_iter()
                        .flat_map(|b| b.iter())
                    {
                        if !bits::test(contrib, i) && late.push(PeerId::Client(i as u16)).is_err() {
                            break;
                        }
                    }
                }
            }
            _ => {}
        }
        for peer in late {
            self.drop_peer(now, peer, GoodbyeReason::Timeout);
        }
        self.advance(now);
    }
}
