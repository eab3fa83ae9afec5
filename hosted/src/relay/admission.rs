//! Who may hold a link to the relay that has not joined yet, and for how long.
//!
//! Every accepted TCP connection is tracked here until its node has joined (its Hello was
//! accepted) or it is dropped. A link goes through two phases:
//!
//! 1. **Handshake**: from `accept` until the node's handshake request has been read,
//!    authenticated as a member's and found fresh. Anyone can open such a link, so these
//!    are bounded per [`Source`] (an IPv4 address, or an IPv6 /64) and in all, and each
//!    must finish within [`Limits::handshake_deadline`].
//! 2. **Hello**: the node is an authenticated member and must send its Hello within
//!    [`Limits::hello_deadline`]. Only a member's key gets a link here, so a stranger cannot
//!    take these slots; each member holds at most [`Limits::per_member`] of them.
//!
//! # Members always have room
//!
//! A full table never refuses the newest link: it evicts the *oldest* handshake of the
//! source that is at its cap (or, when all strangers' slots are taken, the oldest of the
//! source holding the most). Refusing the newest would hand a flooder the table: its idle
//! links would hold every slot of its address, and a member arriving from the same address
//! (everything is 127.0.0.1 in tests, or behind one NAT) would be refused until the
//! flooder stopped. Evicting the oldest admits every new link at once, and it keeps its
//! slot until [`Limits::per_source`] newer links from its own source have arrived. A member
//! sends its request the moment it connects and is authenticated within a millisecond or
//! two on loopback or a LAN, after which it is in the Hello phase, which no stranger can
//! evict. A flooder would have to open `per_source` connections within those milliseconds,
//! faster than the relay accepts them, to push it out, and the member would simply dial
//! again. Sources other than the flooder's are untouched: a full table evicts from the
//! heaviest source, and one source can never hold more than `per_source` of the
//! `handshakes` slots.
//!
//! # Replays
//!
//! A replayed handshake request would authenticate as its member and hold a Hello slot for
//! nothing. [`Replays`] keeps the ephemeral keys of the recent authenticated requests
//! (an honest node never reuses one) in a fixed-size table; the link task checks a request
//! against it before any Diffie-Hellman work (`link::accept_checked`), and
//! [`Admission::handle_handshake`] records the key once the request is authenticated, which
//! also settles the race of two copies arriving together. Only authenticated requests are
//! recorded, so garbage cannot push real entries out; when full, the oldest is forgotten.
//!
//! # Call order
//!
//! The relay's accept loop owns one [`Admission`] and gives each link task a clone of
//! [`Admission::replays`]:
//!
//! - accept → [`Admission::handle_accept`];
//! - the link task: `link::accept_checked` with [`Replays::check`], remembering
//!   [`Ephemeral::of`] the request;
//! - its handshake done → [`Admission::handle_handshake`]: drop the link on `Refuse`;
//! - its Hello accepted → [`Admission::handle_joined`]; the link closed →
//!   [`Admission::handle_closed`];
//! - a timer at [`Admission::poll_timeout`] → [`Admission::handle_timeout`];
//! - after each of these, drain [`Admission::poll_drop`] and close every link it names.
//!
//! The clock comes in as arguments; nothing here reads it.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::fmt;
use std::hash::Hash;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use dissent_core::link::REQUEST_LEN;

/// Descriptors kept for the listener, stdio, logs and the runtime's own.
const MARGIN_DESCRIPTORS: usize = 64;

/// The bounds of [`Admission`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Links from one source in their handshake (at least 1).
    ///
    /// 256: a member from a flooded address keeps its slot until 256 newer links from that
    /// address arrive, many times what the relay accepts while a member authenticates.
    pub per_source: usize,
    /// Links from all sources in their handshake (at least 1).
    ///
    /// 1024: four times `per_source`, so at least four sources are needed to fill it, and
    /// a small share of the descriptors a relay can raise its limit to.
    pub handshakes: usize,
    /// Links of one member waiting for their Hello (at least 1).
    ///
    /// 2: a restarting member's new link, plus one for a late replay of an old request
    /// (older than the replay window) that got through.
    pub per_member: usize,
    /// Time from accept until the request is authenticated.
    ///
    /// 2 s: a node sends its request with the last packet of the TCP handshake, so it
    /// arrives within milliseconds on loopback or a LAN and within one round trip plus one
    /// retransmission (Linux's initial RTO is 1 s) across the Internet; a flood holds no
    /// slot for longer.
    pub handshake_deadline: Duration,
    /// Time from authentication until the Hello.
    ///
    /// 2 s: one round trip (the response out, the Hello back) plus one retransmission.
    pub hello_deadline: Duration,
    /// How long an authenticated request's ephemeral key is remembered.
    ///
    /// 10 min: far beyond any handshake, and the table below still holds a restart of
    /// every member of a 1000-node group every 2.5 minutes.
    pub replay_window: Duration,
    /// Ephemeral keys remembered at most (48 bytes each with their time).
    pub replay_capacity: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            per_source: 256,
            handshakes: 1024,
            per_member: 2,
            handshake_deadline: Duration::from_secs(2),
            hello_deadline: Duration::from_secs(2),
            replay_window: Duration::from_secs(600),
            replay_capacity: 4096,
        }
    }
}

impl Limits {
    /// The default limits, shrunk so handshakes take at most a quarter of `nofile`.
    pub fn within(nofile: u64) -> Self {
        let d = Limits::default();
        let quarter = usize::try_from(nofile / 4).unwrap_or(usize::MAX).max(1);
        let handshakes = d.handshakes.min(quarter);
        Limits {
            handshakes,
            per_source: d.per_source.min((handshakes / 4).max(1)),
            ..d
        }
    }

    /// Descriptors to keep free for members and the relay itself, whatever strangers do.
    ///
    /// Every member (client or trustee) holds its link; links in their handshake are at most
    /// `handshakes`; links of members waiting for a Hello (a restarted node, before its old
    /// link is gone) are at most `per_member` each, and in a large group are counted as
    /// another `handshakes`, since each came through that table within the last
    /// `hello_deadline`; plus a margin for the listener, stdio, logs and the runtime.
    pub fn reserved_descriptors(&self, members: usize) -> u64 {
        let n = members
            .saturating_add(members.saturating_mul(self.per_member).min(self.handshakes))
            .saturating_add(self.handshakes)
            .saturating_add(MARGIN_DESCRIPTORS);
        u64::try_from(n).unwrap_or(u64::MAX)
    }

    /// Descriptors left for exit connections under an open-file limit of `nofile`.
    pub fn exit_descriptors(&self, nofile: u64, members: usize) -> u64 {
        nofile.saturating_sub(self.reserved_descriptors(members))
    }
}

/// Where a link comes from, as far as limits go: an IPv4 address or an IPv6 /64.
///
/// One host on IPv6 usually has a whole /64 to pick addresses from. IPv4-mapped IPv6
/// addresses (from a dual-stack listener) count as their IPv4 address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Source {
    /// One IPv4 address.
    V4(Ipv4Addr),
    /// The upper 64 bits of an IPv6 address.
    V6(u64),
}

impl From<IpAddr> for Source {
    fn from(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(a) => Source::V4(a),
            IpAddr::V6(a) => match a.to_ipv4_mapped() {
                Some(v4) => Source::V4(v4),
                None => Source::V6((u128::from(a) >> 64) as u64),
            },
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::V4(a) => write!(f, "{a}"),
            Source::V6(prefix) => write!(f, "{}/64", Ipv6Addr::from(u128::from(*prefix) << 64)),
        }
    }
}

/// Why a link was refused or dropped before joining.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// Its handshake request repeats a recent one.
    Replayed,
    /// Evicted, the oldest of its source, which reached its cap.
    SourceFull(Source),
    /// Evicted, the oldest of the source holding the most, when all slots were taken.
    AllFull(Source),
    /// No authenticated request within the handshake deadline.
    HandshakeLate,
    /// No Hello within the Hello deadline.
    HelloLate,
    /// Evicted by newer links of the same member.
    Superseded,
    /// The link is no longer waiting (dropped or closed meanwhile).
    NotPending,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Replayed => f.write_str("replayed handshake request"),
            Refusal::SourceFull(s) => write!(f, "too many pending links from {s}"),
            Refusal::AllFull(s) => write!(f, "too many pending links, most from {s}"),
            Refusal::HandshakeLate => f.write_str("handshake not finished in time"),
            Refusal::HelloLate => f.write_str("no Hello in time"),
            Refusal::Superseded => f.write_str("superseded by newer links of the same member"),
            Refusal::NotPending => f.write_str("link no longer pending"),
        }
    }
}

impl std::error::Error for Refusal {}

/// The answer to a link that finished a step.
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Go on.
    Admit,
    /// Close the link.
    Refuse {
        /// Why.
        reason: Refusal,
    },
}

/// A link the relay must close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dropped {
    /// The relay's token for the link.
    pub token: u64,
    /// Why.
    pub reason: Refusal,
}

/// Links refused or dropped so far, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Replayed requests (before or after the key exchange).
    pub replayed: u64,
    /// Evicted at their source's cap.
    pub source_full: u64,
    /// Evicted when all handshake slots were taken.
    pub all_full: u64,
    /// Late handshakes.
    pub handshake_late: u64,
    /// Late Hellos.
    pub hello_late: u64,
    /// Superseded by the same member's newer links.
    pub superseded: u64,
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts = [
            (self.replayed, "replayed"),
            (self.source_full, "source full"),
            (self.all_full, "all full"),
            (self.handshake_late, "handshake late"),
            (self.hello_late, "Hello late"),
            (self.superseded, "superseded"),
        ];
        let mut any = false;
        for (n, what) in parts.into_iter().filter(|(n, _)| *n > 0) {
            f.write_str(if any { ", " } else { "links refused: " })?;
            write!(f, "{n} {what}")?;
            any = true;
        }
        if !any {
            f.write_str("no links refused")?;
        }
        Ok(())
    }
}

/// The ephemeral public key that opens a handshake request, unique to each handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ephemeral(pub [u8; 32]);

impl Ephemeral {
    /// The ephemeral key of a handshake request (its first 32 bytes).
    pub fn of(request: &[u8; REQUEST_LEN]) -> Self {
        let mut e = [0u8; 32];
        e.copy_from_slice(&request[..32]);
        Ephemeral(e)
    }
}

/// The ephemeral keys of recent authenticated requests, shared with the link tasks.
pub struct Replays {
    table: Mutex<ReplayTable>,
    refused: AtomicU64,
}

struct ReplayTable {
    window: Duration,
    capacity: usize,
    /// Oldest first.
    order: VecDeque<(Instant, Ephemeral)>,
    keys: HashSet<Ephemeral>,
}

impl ReplayTable {
    fn expire(&mut self, now: Instant) {
        while let Some(&(at, e)) = self.order.front() {
            if now.saturating_duration_since(at) < self.window {
                break;
            }
            self.order.pop_front();
            self.keys.remove(&e);
        }
    }
}

impl Replays {
    /// An empty table keeping keys for `window`, at most `capacity` of them.
    pub fn new(window: Duration, capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Replays {
            table: Mutex::new(ReplayTable {
                window,
                capacity,
                order: VecDeque::with_capacity(capacity),
                keys: HashSet::with_capacity(capacity),
            }),
            refused: AtomicU64::new(0),
        }
    }

    /// Refuses a request whose ephemeral key was authenticated within the window.
    ///
    /// Cheap and before any Diffie-Hellman work; records nothing.
    pub fn check(&self, now: Instant, request: &[u8; REQUEST_LEN]) -> Result<(), Refusal> {
        let e = Ephemeral::of(request);
        let mut t = self.lock();
        t.expire(now);
        if t.keys.contains(&e) {
            drop(t);
            self.refused.fetch_add(1, Ordering::Relaxed);
            return Err(Refusal::Replayed);
        }
        Ok(())
    }

    /// Records an authenticated request's key, refusing it if it is already there.
    pub fn insert(&self, now: Instant, e: Ephemeral) -> Result<(), Refusal> {
        let mut t = self.lock();
        t.expire(now);
        if t.keys.contains(&e) {
            drop(t);
            self.refused.fetch_add(1, Ordering::Relaxed);
            return Err(Refusal::Replayed);
        }
        if t.order.len() >= t.capacity {
            if let Some((_, old)) = t.order.pop_front() {
                t.keys.remove(&old);
            }
        }
        t.order.push_back((now, e));
        t.keys.insert(e);
        Ok(())
    }

    /// Keys remembered now.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.lock().order.len()
    }

    /// Replays refused so far.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ReplayTable> {
        // Nothing panics while holding the lock, and the table is valid between calls.
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One link not yet joined.
struct Pending<M> {
    source: Source,
    /// Accept order, for "oldest".
    seq: u64,
    deadline: Instant,
    /// Set once the request is authenticated: the link is in its Hello phase.
    member: Option<M>,
}

/// The relay's admission policy for links that have not joined yet.
///
/// Call order in the module documentation. `M` names a member (the relay's `PeerId`).
pub struct Admission<M> {
    limits: Limits,
    links: HashMap<u64, Pending<M>>,
    /// Links in their handshake by source, oldest first: `(seq, token)`.
    by_source: HashMap<Source, BTreeSet<(u64, u64)>>,
    /// `(links in their handshake, source)` for every source that has any.
    loads: BTreeSet<(usize, Source)>,
    /// Links in their handshake in all.
    handshaking: usize,
    /// Links in their Hello phase by member, oldest first.
    by_member: HashMap<M, VecDeque<u64>>,
    deadlines: BTreeSet<(Instant, u64)>,
    drops: VecDeque<Dropped>,
    replays: Arc<Replays>,
    stats: Stats,
    next_seq: u64,
}

impl<M: Copy + Eq + Hash> Admission<M> {
    /// An empty policy with these limits.
    pub fn new(limits: Limits) -> Self {
        Admission {
            limits,
            links: HashMap::new(),
            by_source: HashMap::new(),
            loads: BTreeSet::new(),
            handshaking: 0,
            by_member: HashMap::new(),
            deadlines: BTreeSet::new(),
            drops: VecDeque::new(),
            replays: Arc::new(Replays::new(limits.replay_window, limits.replay_capacity)),
            stats: Stats::default(),
            next_seq: 0,
        }
    }

    /// The replay table, for the link tasks' check before the key exchange.
    pub fn replays(&self) -> Arc<Replays> {
        self.replays.clone()
    }

    /// Starts tracking a link just accepted from `addr`; it is always admitted.
    ///
    /// Room is made first: late links are dropped, then the oldest handshake of `addr`'s
    /// source if it is at its cap, then the oldest of the heaviest source if all slots are
    /// taken. [`Admission::poll_drop`] names them.
    pub fn handle_accept(&mut self, now: Instant, token: u64, addr: IpAddr) {
        self.handle_timeout(now);
        self.forget(token);
        let source = Source::from(addr);
        let per_source = self.limits.per_source.max(1);
        while self.load(source) >= per_source {
            if !self.evict_oldest(source, Refusal::SourceFull(source)) {
                break;
            }
        }
        while self.handshaking >= self.limits.handshakes.max(1) {
            let Some(&(_, heaviest)) = self.loads.last() else {
                break;
            };
            if !self.evict_oldest(heaviest, Refusal::AllFull(heaviest)) {
                break;
            }
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let deadline = now + self.limits.handshake_deadline;
        let load = self.load(source);
        self.by_source
            .entry(source)
            .or_default()
            .insert((seq, token));
        self.set_load(source, load, load + 1);
        self.handshaking += 1;
        self.deadlines.insert((deadline, token));
        self.links.insert(
            token,
            Pending {
                source,
                seq,
                deadline,
                member: None,
            },
        );
    }

    /// The link's request authenticated as `member`'s with ephemeral key `ephemeral`.
    ///
    /// Records the key; refuses a replay or a link no longer pending. An admitted link
    /// has [`Limits::hello_deadline`] to send its Hello; older links of the same member
    /// beyond [`Limits::per_member`] are dropped.
    pub fn handle_handshake(
        &mut self,
        now: Instant,
        token: u64,
        member: M,
        ephemeral: Ephemeral,
    ) -> Verdict {
        if let Err(reason) = self.replays.insert(now, ephemeral) {
            self.forget(token);
            return Verdict::Refuse { reason };
        }
        let Some(p) = self.links.get(&token) else {
            return Verdict::Refuse {
                reason: Refusal::NotPending,
            };
        };
        if p.member.is_some() {
            return Verdict::Refuse {
                reason: Refusal::NotPending,
            };
        }
        let (source, seq, old_deadline) = (p.source, p.seq, p.deadline);
        self.leave_handshake(source, seq, token);
        self.deadlines.remove(&(old_deadline, token));
        let deadline = now + self.limits.hello_deadline;
        self.deadlines.insert((deadline, token));
        if let Some(p) = self.links.get_mut(&token) {
            p.deadline = deadline;
            p.member = Some(member);
        }
        let waiting = self.by_member.entry(member).or_default();
        waiting.push_back(token);
        let mut superseded = Vec::new();
        while waiting.len() > self.limits.per_member.max(1) {
            if let Some(old) = waiting.pop_front() {
                superseded.push(old);
            }
        }
        for old in superseded {
            self.forget(old);
            self.drop_link(old, Refusal::Superseded);
        }
        Verdict::Admit
    }

    /// The link's Hello was accepted: it has joined and is no longer tracked.
    pub fn handle_joined(&mut self, token: u64) {
        self.forget(token);
    }

    /// The link closed; forgetting an unknown token is fine.
    pub fn handle_closed(&mut self, token: u64) {
        self.forget(token);
    }

    /// Drops every link past its deadline at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(&(deadline, token)) = self.deadlines.first() {
            if deadline > now {
                break;
            }
            let reason = match self.forget(token) {
                Some(Pending { member: None, .. }) => Refusal::HandshakeLate,
                Some(Pending {
                    member: Some(_), ..
                }) => Refusal::HelloLate,
                // Not reached: forget() removes a link's deadline with it.
                None => {
                    self.deadlines.remove(&(deadline, token));
                    continue;
                }
            };
            self.drop_link(token, reason);
        }
    }

    /// The earliest deadline, if any link is pending.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadlines.first().map(|&(at, _)| at)
    }

    /// The next link to close, already forgotten here.
    #[must_use]
    pub fn poll_drop(&mut self) -> Option<Dropped> {
        self.drops.pop_front()
    }

    /// Links refused or dropped so far, by reason.
    pub fn stats(&self) -> Stats {
        Stats {
            replayed: self.replays.refused(),
            ..self.stats
        }
    }

    /// Links tracked now: in their handshake, and waiting for their Hello.
    #[cfg(test)]
    pub fn pending(&self) -> (usize, usize) {
        (self.handshaking, self.links.len() - self.handshaking)
    }

    fn load(&self, source: Source) -> usize {
        self.by_source.get(&source).map_or(0, BTreeSet::len)
    }

    fn set_load(&mut self, source: Source, old: usize, new: usize) {
        if old > 0 {
            self.loads.remove(&(old, source));
        }
        if new > 0 {
            self.loads.insert((new, source));
        }
    }

    /// Drops the oldest handshake of `source`; false if it has none.
    fn evict_oldest(&mut self, source: Source, reason: Refusal) -> bool {
        let Some(&(_, token)) = self.by_source.get(&source).and_then(BTreeSet::first) else {
            return false;
        };
        self.forget(token);
        self.drop_link(token, reason);
        true
    }

    /// Removes a link in its handshake from the per-source tables.
    fn leave_handshake(&mut self, source: Source, seq: u64, token: u64) {
        let load = self.load(source);
        if let Some(set) = self.by_source.get_mut(&source) {
            set.remove(&(seq, token));
            if set.is_empty() {
                self.by_source.remove(&source);
            }
        }
        self.set_load(source, load, load.saturating_sub(1));
        self.handshaking = self.handshaking.saturating_sub(1);
    }

    /// Stops tracking `token`, wherever it is.
    fn forget(&mut self, token: u64) -> Option<Pending<M>> {
        let p = self.links.remove(&token)?;
        self.deadlines.remove(&(p.deadline, token));
        match p.member {
            None => self.leave_handshake(p.source, p.seq, token),
            Some(m) => {
                if let Some(waiting) = self.by_member.get_mut(&m) {
                    waiting.retain(|t| *t != token);
                    if waiting.is_empty() {
                        self.by_member.remove(&m);
                    }
                }
            }
        }
        Some(p)
    }

    fn drop_link(&mut self, token: u64, reason: Refusal) {
        let s = &mut self.stats;
        match reason {
            Refusal::SourceFull(_) => s.source_full += 1,
            Refusal::AllFull(_) => s.all_full += 1,
            Refusal::HandshakeLate => s.handshake_late += 1,
            Refusal::HelloLate => s.hello_late += 1,
            Refusal::Superseded => s.superseded += 1,
            // The replay table counts replays; NotPending is never a drop.
            Refusal::Replayed | Refusal::NotPending => {}
        }
        self.drops.push_back(Dropped { token, reason });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));

    fn v4(i: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, i))
    }

    fn small(per_source: usize, handshakes: usize) -> Limits {
        Limits {
            per_source,
            handshakes,
            ..Limits::default()
        }
    }

    fn drops(adm: &mut Admission<u16>) -> Vec<Dropped> {
        std::iter::from_fn(|| adm.poll_drop()).collect()
    }

    fn eph(i: u32) -> Ephemeral {
        let mut e = [0u8; 32];
        e[..4].copy_from_slice(&i.to_be_bytes());
        Ephemeral(e)
    }

    /// The tables agree with each other and stay within the limits.
    fn check_invariants(adm: &Admission<u16>) {
        let in_handshake = adm.links.values().filter(|p| p.member.is_none()).count();
        assert_eq!(adm.handshaking, in_handshake);
        assert!(adm.handshaking <= adm.limits.handshakes);
        let by_source: usize = adm.by_source.values().map(BTreeSet::len).sum();
        assert_eq!(by_source, in_handshake);
        assert_eq!(adm.loads.len(), adm.by_source.len());
        for (n, s) in &adm.loads {
            assert_eq!(adm.by_source[s].len(), *n);
            assert!(*n <= adm.limits.per_source);
        }
        let by_member: usize = adm.by_member.values().map(VecDeque::len).sum();
        assert_eq!(by_member, adm.links.len() - in_handshake);
        assert!(adm
            .by_member
            .values()
            .all(|w| w.len() <= adm.limits.per_member));
        assert_eq!(adm.deadlines.len(), adm.links.len());
        for (token, p) in &adm.links {
            assert!(adm.deadlines.contains(&(p.deadline, *token)));
        }
    }

    #[test]
    fn sources_are_ipv4_addresses_and_ipv6_slash_64s() {
        let ip = |s: &str| Source::from(s.parse::<IpAddr>().unwrap());
        assert_eq!(ip("127.0.0.1"), Source::V4(Ipv4Addr::LOCALHOST));
        assert_ne!(ip("127.0.0.1"), ip("127.0.0.2"));
        assert_eq!(ip("::ffff:127.0.0.1"), ip("127.0.0.1"));
        assert_eq!(
            ip("2001:db8:1:2::1"),
            ip("2001:db8:1:2:ffff:ffff:ffff:ffff")
        );
        assert_ne!(ip("2001:db8:1:2::1"), ip("2001:db8:1:3::1"));
        assert_eq!(ip("2001:db8:1:2:3:4:5:6").to_string(), "2001:db8:1:2::/64");
        assert_eq!(ip("::1").to_string(), "::/64");
        assert_eq!(ip("127.0.0.1").to_string(), "127.0.0.1");

        // One /64 shares one cap however many addresses it uses.
        let mut adm = Admission::<u16>::new(small(2, 100));
        let t0 = Instant::now();
        for i in 0..3u64 {
            let addr = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 2, 0, 0, 0, i as u16 + 1));
            adm.handle_accept(t0, i, addr);
        }
        adm.handle_accept(t0, 3, "2001:db8:1:3::1".parse().unwrap());
        let source = ip("2001:db8:1:2::");
        assert_eq!(
            drops(&mut adm),
            [Dropped {
                token: 0,
                reason: Refusal::SourceFull(source)
            }]
        );
        assert_eq!(
            Refusal::SourceFull(source).to_string(),
            "too many pending links from 2001:db8:1:2::/64"
        );
        check_invariants(&adm);
    }

    #[test]
    fn a_source_at_its_cap_loses_its_oldest_link() {
        let mut adm = Admission::<u16>::new(small(3, 100));
        let t0 = Instant::now();
        for t in 1..=3 {
            adm.handle_accept(t0, t, A);
        }
        adm.handle_accept(t0, 10, B);
        assert!(drops(&mut adm).is_empty());
        adm.handle_accept(t0, 4, A);
        let d = drops(&mut adm);
        assert_eq!(
            d,
            [Dropped {
                token: 1,
                reason: Refusal::SourceFull(Source::from(A))
            }]
        );
        assert_eq!(
            d[0].reason.to_string(),
            "too many pending links from 127.0.0.1"
        );
        assert_eq!(adm.pending(), (4, 0));
        // A link that closed frees its slot: nothing is evicted for the next one.
        adm.handle_closed(2);
        adm.handle_accept(t0, 5, A);
        assert!(drops(&mut adm).is_empty());
        adm.handle_accept(t0, 6, A);
        assert_eq!(drops(&mut adm)[0].token, 3);
        assert_eq!(adm.stats().source_full, 2);
        check_invariants(&adm);
    }

    #[test]
    fn a_full_table_evicts_from_the_heaviest_source() {
        let mut adm = Admission::<u16>::new(small(3, 5));
        let t0 = Instant::now();
        for t in 1..=3 {
            adm.handle_accept(t0, t, A);
        }
        adm.handle_accept(t0, 4, B);
        adm.handle_accept(t0, 5, B);
        assert!(drops(&mut adm).is_empty());
        // The table is full; A holds the most.
        adm.handle_accept(t0, 6, v4(1));
        assert_eq!(
            drops(&mut adm),
            [Dropped {
                token: 1,
                reason: Refusal::AllFull(Source::from(A))
            }]
        );
        // A flood from two sources never pushes out a lone link from a third.
        for t in 100..400u64 {
            let from = if t % 2 == 0 { A } else { B };
            adm.handle_accept(t0, t, from);
            let d = drops(&mut adm);
            assert_eq!(d.len(), 1);
            assert_ne!(d[0].token, 6);
            check_invariants(&adm);
        }
        assert_eq!(adm.pending(), (5, 0));
        assert_eq!(
            adm.stats().all_full + adm.stats().source_full,
            301,
            "{}",
            adm.stats()
        );
    }

    #[test]
    fn deadlines_drop_late_handshakes_and_late_hellos() {
        let limits = Limits::default();
        let mut adm = Admission::<u16>::new(limits);
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        adm.handle_accept(t0, 1, A);
        adm.handle_accept(t0 + ms(100), 2, A);
        adm.handle_accept(t0 + ms(100), 3, A);
        assert_eq!(adm.poll_timeout(), Some(t0 + limits.handshake_deadline));
        // Link 2 authenticates at 1 s: its Hello is due 2 s later.
        assert_eq!(
            adm.handle_handshake(t0 + ms(1000), 2, 7, eph(2)),
            Verdict::Admit
        );
        // Link 3 joins: it is never dropped.
        assert_eq!(
            adm.handle_handshake(t0 + ms(1000), 3, 8, eph(3)),
            Verdict::Admit
        );
        adm.handle_joined(3);
        assert_eq!(adm.pending(), (1, 1));

        adm.handle_timeout(t0 + limits.handshake_deadline - ms(1));
        assert!(drops(&mut adm).is_empty());
        adm.handle_timeout(t0 + limits.handshake_deadline);
        assert_eq!(
            drops(&mut adm),
            [Dropped {
                token: 1,
                reason: Refusal::HandshakeLate
            }]
        );
        let hello_due = t0 + ms(1000) + limits.hello_deadline;
        assert_eq!(adm.poll_timeout(), Some(hello_due));
        adm.handle_timeout(hello_due - ms(1));
        assert!(drops(&mut adm).is_empty());
        adm.handle_timeout(hello_due);
        assert_eq!(
            drops(&mut adm),
            [Dropped {
                token: 2,
                reason: Refusal::HelloLate
            }]
        );
        assert_eq!(adm.poll_timeout(), None);
        assert_eq!(adm.pending(), (0, 0));
        let s = adm.stats();
        assert_eq!((s.handshake_late, s.hello_late), (1, 1));
        assert_eq!(
            s.to_string(),
            "links refused: 1 handshake late, 1 Hello late"
        );
        // A late step of a dropped link is refused.
        assert_eq!(
            adm.handle_handshake(hello_due, 1, 9, eph(1)),
            Verdict::Refuse {
                reason: Refusal::NotPending
            }
        );
        check_invariants(&adm);
    }

    #[test]
    fn a_replayed_request_is_refused() {
        let mut adm = Admission::<u16>::new(Limits::default());
        let replays = adm.replays();
        let t0 = Instant::now();
        let mut request = [0u8; REQUEST_LEN];
        request[..32].copy_from_slice(&eph(5).0);
        request[40] = 1;
        assert_eq!(replays.check(t0, &request), Ok(()));
        adm.handle_accept(t0, 1, A);
        adm.handle_accept(t0, 2, B);
        assert_eq!(
            adm.handle_handshake(t0, 1, 7, Ephemeral::of(&request)),
            Verdict::Admit
        );
        // A copy that got past the check together with the original is refused here.
        assert_eq!(
            adm.handle_handshake(t0, 2, 7, Ephemeral::of(&request)),
            Verdict::Refuse {
                reason: Refusal::Replayed
            }
        );
        // Later copies are refused before the key exchange, whatever follows the key.
        request[40] = 2;
        assert_eq!(replays.check(t0, &request), Err(Refusal::Replayed));
        assert_eq!(adm.stats().replayed, 2);
        assert_eq!(adm.pending(), (0, 1));
        // Another request is fine.
        request[0] ^= 1;
        assert_eq!(replays.check(t0, &request), Ok(()));
        check_invariants(&adm);
    }

    #[test]
    fn the_replay_table_is_bounded_and_forgets() {
        let window = Duration::from_secs(10);
        let r = Replays::new(window, 4);
        let t0 = Instant::now();
        let request = |i: u32| {
            let mut q = [0u8; REQUEST_LEN];
            q[..32].copy_from_slice(&eph(i).0);
            q
        };
        for i in 0..1000 {
            r.insert(t0 + Duration::from_millis(u64::from(i)), eph(i))
                .unwrap();
            assert!(r.len() <= 4);
        }
        let t1 = t0 + Duration::from_millis(999);
        // The newest four are remembered, the oldest were forgotten.
        for i in 996..1000 {
            assert_eq!(r.check(t1, &request(i)), Err(Refusal::Replayed));
        }
        assert_eq!(r.check(t1, &request(995)), Ok(()));
        assert_eq!(r.check(t1, &request(0)), Ok(()));
        // Each key is forgotten once the window has passed since it was recorded.
        let t2 = t0 + Duration::from_millis(997) + window;
        assert_eq!(r.check(t2, &request(996)), Ok(()));
        assert_eq!(r.check(t2, &request(997)), Ok(()));
        assert_eq!(r.check(t2, &request(998)), Err(Refusal::Replayed));
        assert_eq!(r.len(), 2);
        assert_eq!(
            r.check(t0 + Duration::from_secs(3600), &request(999)),
            Ok(())
        );
        assert_eq!(r.len(), 0);
    }

    #[test]
    fn newer_links_of_a_member_supersede_older_ones() {
        let mut adm = Admission::<u16>::new(Limits::default());
        let t0 = Instant::now();
        for t in 1..=3 {
            adm.handle_accept(t0, t, A);
            assert_eq!(
                adm.handle_handshake(t0, t, 7, eph(t as u32)),
                Verdict::Admit
            );
        }
        assert_eq!(
            drops(&mut adm),
            [Dropped {
                token: 1,
                reason: Refusal::Superseded
            }]
        );
        assert_eq!(adm.pending(), (0, 2));
        check_invariants(&adm);
    }

    /// A member restarting during a flood of idle links from its own address gets in.
    #[test]
    fn a_member_gets_in_through_a_flood_from_its_own_address() {
        let limits = Limits::default();
        let mut adm = Admission::<u16>::new(limits);
        let t0 = Instant::now();
        // 20 000 idle links a second from 127.0.0.1 for 5 s; a member (also on
        // 127.0.0.1) dials every 0.5 s and finishes its handshake 2 ms after its accept
        // (40 flood links later), then sends its Hello 2 ms after that.
        let gap = Duration::from_micros(50);
        let mut token = 0u64;
        let mut member_links = Vec::new();
        let mut joined = 0;
        let mut steps: u64 = 0;
        while steps < 100_000 {
            let now = t0 + gap * (steps as u32);
            adm.handle_timeout(now);
            token += 1;
            adm.handle_accept(now, token, A);
            if steps.is_multiple_of(10_000) {
                token += 1;
                adm.handle_accept(now, token, A);
                member_links.push((token, steps));
            }
            for &(t, at) in &member_links {
                if steps == at + 40 {
                    assert_eq!(
                        adm.handle_handshake(now, t, 1, eph(t as u32)),
                        Verdict::Admit
                    );
                }
                if steps == at + 80 {
                    adm.handle_joined(t);
                    joined += 1;
                }
            }
            for d in drops(&mut adm) {
                assert!(
                    member_links.iter().all(|&(t, _)| t != d.token),
                    "member link dropped: {}",
                    d.reason
                );
            }
            assert!(adm.pending().0 <= limits.per_source);
            steps += 1;
        }
        assert_eq!(joined, 10);
        check_invariants(&adm);
        // Had the member needed longer than per_source flood links, it would have lost
        // its slot: the bound is exactly what the documentation says.
        let t = token + 1;
        let now = t0 + gap * (steps as u32);
        adm.handle_accept(now, t, A);
        for i in 0..limits.per_source as u64 {
            adm.handle_accept(now, t + 1 + i, A);
        }
        assert!(drops(&mut adm).iter().any(|d| d.token == t));
    }

    #[test]
    fn memory_stays_bounded_under_churn() {
        let limits = small(8, 32);
        let mut adm = Admission::<u16>::new(limits);
        let t0 = Instant::now();
        // A deterministic mix of accepts, handshakes, Hellos, closes and timeouts.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for step in 0..20_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let now = t0 + Duration::from_millis(step);
            let token = x % 512;
            match x % 7 {
                0..=2 => adm.handle_accept(now, token, v4((x >> 20) as u8 % 6)),
                3 => {
                    let _ =
                        adm.handle_handshake(now, token, (x >> 32) as u16 % 4, eph(step as u32));
                }
                4 => adm.handle_joined(token),
                5 => adm.handle_closed(token),
                _ => adm.handle_timeout(now),
            }
            while adm.poll_drop().is_some() {}
            check_invariants(&adm);
            assert!(adm.links.len() <= limits.handshakes + 4 * limits.per_member);
        }
    }

    #[test]
    fn limits_fit_the_descriptors_and_keep_room_for_members() {
        let d = Limits::default();
        assert_eq!(Limits::within(1 << 20), d);
        let small = Limits::within(1024);
        assert_eq!((small.handshakes, small.per_source), (256, 64));
        let tiny = Limits::within(0);
        assert_eq!((tiny.handshakes, tiny.per_source), (1, 1));
        // 10 members: a link and two waiting each, all strangers' handshakes, the margin.
        assert_eq!(d.reserved_descriptors(10), 30 + 1024 + 64);
        assert_eq!(d.exit_descriptors(1118 + 5, 10), 5);
        assert_eq!(d.exit_descriptors(100, 10), 0);
        // A group of 10,000 under a limit of 20,000 files still has room for exits.
        assert_eq!(d.reserved_descriptors(10_003), 10_003 + 1024 + 1024 + 64);
        assert_eq!(d.exit_descriptors(20_000, 10_003), 7885);
    }

    #[test]
    fn stats_say_what_was_refused() {
        let s = Stats {
            replayed: 3,
            source_full: 120,
            ..Stats::default()
        };
        assert_eq!(s.to_string(), "links refused: 3 replayed, 120 source full");
        assert_eq!(Stats::default().to_string(), "no links refused");
    }
}
