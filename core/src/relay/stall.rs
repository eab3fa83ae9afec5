//! Members that stall the group: penalties and back-off, the straggler cutoff, and the
//! refusal list.
//!
//! A client the relay drops for stalling (an exchange or a set-up left unanswered, its
//! acknowledgement withheld, a link it does not read, a refused blame, or rejoining too
//! often) gets a penalty: its Hellos are refused with `Goodbye{BackOff}` until its back-off
//! expires. The back-off doubles with each penalty (from [`StallConfig::backoff_initial`]
//! up to [`StallConfig::backoff_cap`]) and halves for each [`StallConfig::decay`] the
//! client spends without one once its last back-off ended. A client on the refusal list is
//! refused with `Goodbye{Excluded}` until [`Relay::readmit`] clears it.
//!
//! Straggler cutoff: once all but a few members (one in eight, at least one) have answered
//! an exchange or the acknowledgement round, the rest get
//! `max(cutoff_floor, cutoff_factor × t)` more, `t` being how long that quorum took; then
//! they are dropped with a penalty.
//!
//! Owns each client's [`Standing`], [`StallConfig`], the quorum times the cutoff is measured
//! from, and the refusal list's API. Penalties are per client (its link key), never per
//! slot: nothing here reads a cell, and trustees are never penalized (the group needs every
//! one). It ends links only through `peers.rs` (`say_goodbye`, `drop_peer`).

use super::{Duration, HelloError, Instant, Peer, PeerError, PeerId, Phase, Relay, RelayEvent};
use crate::wire::GoodbyeReason;
use crate::MAX_WINDOW;

/// How the relay treats members that stall the group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StallConfig {
    /// The least a straggler gets once all but a few members answered.
    pub cutoff_floor: Duration,
    /// A straggler gets this many times what the quorum took (if more than the floor).
    pub cutoff_factor: u32,
    /// The first back-off.
    pub backoff_initial: Duration,
    /// The longest back-off.
    pub backoff_cap: Duration,
    /// Each span this long without a penalty, once a back-off ended, halves the next one.
    pub decay: Duration,
    /// Joins of one client within one `decay` span beyond which its next Hello is a
    /// penalty (a member that rejoins again and again to pull replays or end intervals).
    pub rejoins: u8,
}

impl StallConfig {
    /// The hosted relay's values: a 500 ms floor, factor 4, 1 s to 10 min, halved per
    /// minute without a penalty, 8 joins a minute.
    pub const DEFAULT: StallConfig = StallConfig {
        cutoff_floor: Duration::from_millis(500),
        cutoff_factor: 4,
        backoff_initial: Duration::from_millis(1_000),
        backoff_cap: Duration::from_millis(600_000),
        decay: Duration::from_millis(60_000),
        rejoins: 8,
    };

    /// The back-off of penalty `level` (1 for the first).
    pub fn backoff(&self, level: u8) -> Duration {
        let shift = u32::from(level.max(1) - 1).min(40);
        let us = self
            .backoff_initial
            .as_micros()
            .saturating_mul(1u64 << shift)
            .min(self.backoff_cap.as_micros());
        Duration::from_micros(us)
    }

    /// How long stragglers get once a quorum answered after `took`.
    pub fn grace(&self, took: Duration) -> Duration {
        let scaled = took
            .as_micros()
            .saturating_mul(u64::from(self.cutoff_factor));
        Duration::from_micros(scaled.max(self.cutoff_floor.as_micros()))
    }
}

impl Default for StallConfig {
    fn default() -> Self {
        StallConfig::DEFAULT
    }
}

/// Answers of `members` after which the rest are stragglers: all but one in eight (at least
/// one); `None` for a single member.
pub const fn quorum(members: u32) -> Option<u32> {
    if members < 2 {
        return None;
    }
    let few = if members / 8 > 1 { members / 8 } else { 1 };
    Some(members - few)
}

/// Why a client was penalized.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Stall {
    /// It left an exchange, a set-up or a replay unanswered until the exchange timeout.
    Timeout,
    /// It answered an exchange too late after the others (the straggler cutoff).
    Straggler,
    /// It did not acknowledge an interval's view while the others did.
    WithheldAck,
    /// Its link did not take the frames sent to it.
    TooSlow,
    /// It joined too often.
    Rejoins,
    /// A blame round refused what it had to answer.
    RefusedBlame,
    /// It came back from a restart while a blame round waited for its reveal, which it
    /// no longer had.
    Restarted,
}

impl core::fmt::Display for Stall {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Stall::Timeout => "left an exchange unanswered until the timeout",
            Stall::Straggler => "answered long after the others",
            Stall::WithheldAck => "withheld its acknowledgement",
            Stall::TooSlow => "did not read its link",
            Stall::Rejoins => "rejoined too often",
            Stall::RefusedBlame => "refused a blame round",
            Stall::Restarted => "restarted while a blame round waited for its reveal",
        })
    }
}

/// Why a client is on the refusal list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Exclusion {
    /// The blame round of `exchange` of `interval` convicted it (`kind`); the round's
    /// evidence is named by the two numbers (`blame-<interval>-<exchange>`).
    Convicted {
        /// The interval of the disrupted exchange.
        interval: u32,
        /// The disrupted exchange.
        exchange: u64,
        /// What the verdict says it did.
        kind: crate::blame::BlameKind,
    },
    /// The operator's list had it when the relay started.
    Listed,
}

/// A client's standing at the relay, kept across its reconnects.
#[derive(Debug, Clone, Copy)]
pub struct Standing {
    /// Penalties not yet forgiven (0: none).
    level: u8,
    /// Its Hellos are refused until then.
    until: Option<Instant>,
    /// Joins since `joins_since`.
    joins: u8,
    joins_since: Instant,
    /// On the refusal list.
    excluded: bool,
}

impl Standing {
    /// A client with no penalty.
    pub const CLEAN: Standing = Standing {
        level: 0,
        until: None,
        joins: 0,
        joins_since: Instant::from_micros(0),
        excluded: false,
    };
}

/// When a quorum of one exchange answered (one place per exchange in flight).
#[derive(Debug, Clone, Copy)]
pub(super) struct Quorums {
    exchanges: [Option<(u32, u64, Instant)>; MAX_WINDOW],
    /// The interval whose acknowledgements reached a quorum, and when.
    acks: Option<(u32, Instant)>,
}

impl Quorums {
    pub(super) const NEW: Quorums = Quorums {
        exchanges: [None; MAX_WINDOW],
        acks: None,
    };

    fn place(exchange: u64) -> usize {
        (exchange % MAX_WINDOW as u64) as usize
    }

    /// When a quorum of members answered `exchange` of `interval`, if it did.
    pub(super) fn exchange(&self, interval: u32, exchange: u64) -> Option<Instant> {
        match self.exchanges.get(Self::place(exchange)) {
            Some(Some((i, e, at))) if (*i, *e) == (interval, exchange) => Some(*at),
            _ => None,
        }
    }

    /// When a quorum acknowledged `interval`'s view, if it did.
    pub(super) fn acks(&self, interval: u32) -> Option<Instant> {
        self.acks.filter(|(i, _)| *i == interval).map(|(_, at)| at)
    }
}

impl<P, B> Relay<P, B>
where
    P: AsMut<[Peer]> + AsRef<[Peer]>,
    B: AsMut<[u8]> + AsRef<[u8]>,
{
    /// Penalizes `client` for `why` and ends its link if it has one: its Hellos are refused
    /// until its back-off (returned) expires. This is the hook for a blame round whose
    /// accused refused to answer ([`Stall::RefusedBlame`]). `None` if there is no such
    /// client.
    pub fn penalize(&mut self, now: Instant, client: u16, why: Stall) -> Option<Duration> {
        let back_off = self.add_penalty(now, client, why)?;
        let peer = PeerId::Client(client);
        if let Some(link) = self.link_of(peer) {
            let reason = GoodbyeReason::BackOff {
                millis: millis(back_off),
            };
            self.say_goodbye(link, reason);
            self.push_event(RelayEvent::Dropped { peer, reason });
            self.disconnect(now, peer);
        }
        Some(back_off)
    }

    /// Records a penalty (the caller drops the link).
    pub(super) fn add_penalty(
        &mut self,
        now: Instant,
        client: u16,
        why: Stall,
    ) -> Option<Duration> {
        let stall = self.cfg.stall;
        let peer = PeerId::Client(client);
        let p = self.peer_mut(peer)?;
        let s = &mut p.standing;
        if let Some(until) = s.until {
            // Each full decay span without a penalty since the back-off ended halves it.
            let clean = now.saturating_since(until).as_micros();
            let spans = clean / stall.decay.as_micros().max(1);
            s.level = s.level.saturating_sub(spans.min(255) as u8);
        }
        s.level = s.level.saturating_add(1).min(64);
        let back_off = stall.backoff(s.level);
        s.until = Some(now + back_off);
        self.push_event(RelayEvent::Penalized {
            peer,
            why,
            back_off,
        });
        Some(back_off)
    }

    /// Drops a peer that stalled; a client is penalized for `why` as well.
    pub(super) fn drop_stalled(&mut self, now: Instant, peer: PeerId, why: Option<Stall>) {
        if self.link_of(peer).is_none() {
            return;
        }
        if let (PeerId::Client(i), Some(why)) = (peer, why) {
            let _ = self.add_penalty(now, i, why);
        }
        self.drop_peer(now, peer, GoodbyeReason::Timeout);
    }

    /// Whether `peer` may say hello now: a client on the refusal list or backed off is
    /// refused (and a client that joined too often is penalized now).
    pub(super) fn check_standing(&mut self, now: Instant, peer: PeerId) -> Result<(), PeerError> {
        let i = match peer {
            PeerId::Client(i) => i,
            PeerId::Trustee(j) if self.convicted.has_trustee(j) => {
                return Err(HelloError::Excluded.into())
            }
            PeerId::Trustee(_) => return Ok(()),
        };
        let stall = self.cfg.stall;
        let Some(p) = self.peer_mut(peer) else {
            return Ok(());
        };
        let s = &mut p.standing;
        if s.excluded {
            return Err(HelloError::Excluded.into());
        }
        if let Some(until) = s.until.filter(|u| now < *u) {
            return Err(HelloError::BackedOff(millis(until.saturating_since(now))).into());
        }
        if now.saturating_since(s.joins_since) >= stall.decay || s.joins == 0 {
            s.joins = 0;
            s.joins_since = now;
        }
        s.joins = s.joins.saturating_add(1);
        if s.joins > stall.rejoins {
            s.joins = 0;
            let back_off = self.add_penalty(now, i, Stall::Rejoins).unwrap_or_default();
            return Err(HelloError::BackedOff(millis(back_off)).into());
        }
        Ok(())
    }

    /// Puts `client` on the refusal list for `reason`: its link ends with
    /// `Goodbye{Excluded}` and its Hellos are refused until [`Relay::readmit`]. The relay
    /// reports [`RelayEvent::Excluded`] (not for [`Exclusion::Listed`], which the shell
    /// already holds) so the shell can persist the list. `false` if there is no such client.
    pub fn exclude(&mut self, now: Instant, client: u16, reason: Exclusion) -> bool {
        let peer = PeerId::Client(client);
        let Some(p) = self.peer_mut(peer) else {
            return false;
        };
        let was = core::mem::replace(&mut p.standing.excluded, true);
        if !was && reason != Exclusion::Listed {
            self.push_event(RelayEvent::Excluded { peer, reason });
        }
        if let Some(link) = self.link_of(peer) {
            self.say_goodbye(link, GoodbyeReason::Excluded);
            self.push_event(RelayEvent::Dropped {
                peer,
                reason: GoodbyeReason::Excluded,
            });
            self.disconnect(now, peer);
        }
        true
    }

    /// Takes `client` off the refusal list and forgives its penalties. `false` if it was not
    /// on the list (its penalties are forgiven all the same).
    pub fn readmit(&mut self, client: u16) -> bool {
        let Some(p) = self.peer_mut(PeerId::Client(client)) else {
            return false;
        };
        let was = p.standing.excluded;
        p.standing = Standing::CLEAN;
        was
    }

    /// Number of clients in the group (the indices [`Relay::exclude`] takes).
    pub fn clients(&self) -> u16 {
        self.cfg.clients
    }

    /// Whether `client` is on the refusal list.
    pub fn is_excluded(&self, client: u16) -> bool {
        self.peer(PeerId::Client(client))
            .is_some_and(|p| p.standing.excluded)
    }

    /// How long `client` is still backed off, if it is.
    pub fn backed_off(&self, now: Instant, client: u16) -> Option<Duration> {
        self.peer(PeerId::Client(client))
            .and_then(|p| p.standing.until)
            .filter(|u| now < *u)
            .map(|u| u.saturating_since(now))
    }

    /// A member's cell for `exchange` arrived: notes when a quorum had answered.
    pub(super) fn note_cell(&mut self, now: Instant, exchange: u64) {
        let Phase::Running(running) = self.phase else {
            return;
        };
        let Some(q) = quorum(running.members) else {
            return;
        };
        if self.window.issued(exchange).map(|i| i.clients) == Some(q) {
            if let Some(place) = self.quorums.exchanges.get_mut(Quorums::place(exchange)) {
                *place = Some((running.interval, exchange, now));
            }
        }
    }

    /// A member's acknowledgement arrived: notes when a quorum had acknowledged.
    pub(super) fn note_ack(&mut self, now: Instant) {
        if let Phase::Starting {
            interval,
            members,
            acked,
            ..
        } = self.phase
        {
            if quorum(members) == Some(acked) {
                self.quorums.acks = Some((interval, now));
            }
        }
    }

    /// When the stragglers of a round that started at `since` and reached its quorum at
    /// `quorum_at` are cut.
    pub(super) fn cutoff(&self, since: Instant, quorum_at: Instant) -> Instant {
        quorum_at + self.cfg.stall.grace(quorum_at.saturating_since(since))
    }
}

fn millis(d: Duration) -> u32 {
    d.as_micros().div_ceil(1000).min(u64::from(u32::MAX)) as u32
}
