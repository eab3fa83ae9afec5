//! Buddy groups: a public partition of the clients, after "Hang With Your Buddies to Resist
//! Intersection Attacks" (Wolinsky, Syta and Ford, CCS 2013).
//!
//! With an anonymity minimum `k`, group `g` holds the clients `g·k .. (g+1)·k` by index; a
//! last group with fewer than `k` clients joins the group before it, so every group has at
//! least `k` clients and at most `2k − 1`; with fewer than `2k` clients there is one group
//! of all of them. `k` of 0 counts as 1 (every client its own group).
//!
//! A slot transmits only in an interval whose online set holds its owner's whole group, and
//! a client's loss of its connections is shared by its whole group, so whatever a relay
//! does with online sets, links and the log, a slot behaves the same whichever member of
//! the group owns it.
//!
//! Owns the partition. It must not decide what a slot sends (the client's `buddies.rs`
//! applies the rule).

use core::ops::Range;

use crate::bits;

/// The clients of `index`'s buddy group in a group of `clients` clients with anonymity
/// minimum `k` (an index past the last client is taken as the last).
pub fn group_of(index: u16, clients: u16, k: u16) -> Range<u16> {
    let k = k.max(1);
    if clients == 0 {
        return 0..0;
    }
    let index = index.min(clients - 1);
    let full = clients / k;
    if full < 2 {
        return 0..clients;
    }
    let g = index / k;
    if g >= full - 1 {
        (full - 1) * k..clients
    } else {
        g * k..(g + 1) * k
    }
}

/// Whether every client of `index`'s buddy group is in `online` (a bitmap over the
/// clients).
pub fn group_online(online: &[u8], index: u16, clients: u16, k: u16) -> bool {
    group_of(index, clients, k).all(|i| bits::test(online, usize::from(i)))
}

/// Whether some client of `index`'s buddy group is in `set` (a bitmap over the clients).
pub fn group_touches(set: &[u8], index: u16, clients: u16, k: u16) -> bool {
    group_of(index, clients, k).any(|i| bits::test(set, usize::from(i)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_partition_the_clients_with_at_least_k_each() {
        for clients in 1..=40u16 {
            for k in 0..=12u16 {
                let mut next = 0;
                while next < clients {
                    let g = group_of(next, clients, k);
                    assert_eq!(g.start, next, "{clients} clients, k {k}");
                    let size = g.end - g.start;
                    assert!(size >= k.max(1).min(clients), "{clients}/{k}: {g:?}");
                    assert!(
                        size < 2 * k.max(1) || g == (0..clients),
                        "{clients}/{k}: {g:?}"
                    );
                    for i in g.clone() {
                        assert_eq!(group_of(i, clients, k), g);
                    }
                    next = g.end;
                }
                assert_eq!(next, clients);
            }
        }
    }

    #[test]
    fn examples() {
        assert_eq!(group_of(4, 10, 2), 4..6);
        assert_eq!(group_of(9, 10, 3), 6..10);
        assert_eq!(group_of(2, 5, 3), 0..5);
        assert_eq!(group_of(5, 6, 3), 3..6);
        assert_eq!(group_of(7, 8, 1), 7..8);
        assert_eq!(group_of(0, 1, 2), 0..1);
        assert_eq!(group_of(99, 8, 2), 6..8);
        let online = [0b0011_0110u8];
        assert!(group_online(&online, 4, 8, 2));
        assert!(!group_online(&online, 2, 8, 2));
        assert!(group_touches(&online, 2, 8, 2));
        assert!(!group_touches(&online, 6, 8, 2));
    }
}
