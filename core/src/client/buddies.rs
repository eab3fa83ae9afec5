//! The intersection policy at the client: whether its slot may transmit in the running
//! interval, and the slot's anonymity set.
//!
//! **The rule.** The slot transmits (a reservation request, a cell with anything but
//! zeros) only in an interval whose online set holds this client's whole buddy group
//! ([`crate::buddies`]) and at least [`ClientConfig::anonymity_minimum`] clients of its
//! anonymity set. Both are functions of facts every member shares (the confirmed online
//! set and the intervals in which the slot transmitted, which the relay sees), so a slot that
//! stays silent tells the relay nothing it did not know.
//!
//! **The anonymity set** `C` is the intersection of the online sets of the intervals in
//! which the slot transmitted (every client before the first). By the rule it always holds
//! the buddy group, so it never has fewer than the group's minimum.
//!
//! It lives in [`ClientStorage::anonymity`](super::ClientStorage), a bitmap over the
//! clients; the running interval's online set in [`ClientStorage::online`].
//!
//! Owns the anonymity set and the rule. It must not build cells (`request.rs` asks it) or
//! settle the interval (`interval.rs`).
//!
//! [`ClientConfig::anonymity_minimum`]: super::ClientConfig::anonymity_minimum

use super::{Client, ClientEvent, Phase};
use crate::bits::{self, bitmap_len};
use crate::buddies;

/// The slot's anonymity set, a bitmap over the clients, and its size.
#[derive(Debug)]
pub(super) struct AnonymitySet<B> {
    storage: B,
    clients: usize,
    size: usize,
}

impl<B: AsRef<[u8]> + AsMut<[u8]>> AnonymitySet<B> {
    /// Every client of the group: the slot has not transmitted yet.
    pub(super) fn new(mut storage: B, clients: usize) -> Self {
        let len = bitmap_len(clients);
        if let Some(set) = storage.as_mut().get_mut(..len) {
            set.fill(0);
            for i in 0..clients {
                bits::set(set, i);
            }
        }
        AnonymitySet {
            storage,
            clients,
            size: clients,
        }
    }

    fn set(&self) -> &[u8] {
        let s = self.storage.as_ref();
        s.get(..bitmap_len(self.clients)).unwrap_or(s)
    }

    /// Clients in the set.
    pub(super) fn size(&self) -> usize {
        self.size
    }

    /// Clients of the set that are in `online`.
    pub(super) fn within(&self, online: &[u8]) -> usize {
        self.set()
            .iter()
            .zip(online)
            .map(|(a, o)| (a & o).count_ones() as usize)
            .sum()
    }

    /// Keeps only the clients in `online`.
    fn intersect(&mut self, online: &[u8]) {
        let len = bitmap_len(self.clients);
        let set = self.storage.as_mut();
        let set = set.get_mut(..len).unwrap_or(&mut []);
        for (a, o) in set.iter_mut().zip(online) {
            *a &= o;
        }
        self.size = bits::count(set);
    }
}

impl<B: AsMut<[u8]> + AsRef<[u8]>> Client<B> {
    /// The running interval's online set (kept since its start was shown).
    pub(super) fn online_set(&self) -> &[u8] {
        let o = self.online.as_ref();
        o.get(..bitmap_len(usize::from(self.clients))).unwrap_or(o)
    }

    /// Whether this client's whole buddy group is in the interval being shown.
    pub(super) fn group_complete(&self) -> bool {
        buddies::group_online(
            self.online_set(),
            self.index,
            self.clients,
            self.policy.min_anonymity,
        )
    }

    /// Whether the slot may transmit in the interval being shown: the rule above.
    pub(super) fn may_transmit(&self) -> bool {
        self.group_complete()
            && self.anonymity.within(self.online_set()) >= usize::from(self.min_anonymity)
    }

    /// After a cell went out: if the slot transmitted in this interval for the first time,
    /// the anonymity set shrinks to its online set (bookkeeping, off the cell path).
    pub(super) fn account_transmission(&mut self) {
        let Phase::Running(running) = &mut self.phase else {
            return;
        };
        if !running.transmitted || running.accounted {
            return;
        }
        running.accounted = true;
        let before = self.anonymity.size();
        let len = bitmap_len(usize::from(self.clients));
        let online = self.online.as_ref();
        let online = online.get(..len).unwrap_or(online);
        self.anonymity.intersect(online);
        let size = self.anonymity.size();
        if size != before {
            self.push_event(ClientEvent::AnonymitySet { size });
        }
    }

    /// The slot's anonymity set: the clients online in every interval in which it
    /// transmitted. The relay cannot narrow the slot's owner below these.
    pub fn anonymity_set(&self) -> usize {
        self.anonymity.size()
    }

    /// Whether the slot may transmit in the running interval (its buddy group is online and
    /// its anonymity set large enough); `None` outside a running interval.
    pub fn may_send(&self) -> Option<bool> {
        match &self.phase {
            Phase::Running(r) => Some(r.may_send),
            _ => None,
        }
    }
}
