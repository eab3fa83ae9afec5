//! The keep horizon: how far behind the latest exchanges of a slot a blame round about one
//! of its exchanges may still begin, and so how many of its owned cells an owner keeps.
//!
//! A round about exchange `e` of slot `s` asks the slot's owner for the sealed cell it
//! wrote into `e`, which it keeps in a ring of its latest owned cells. The relay begins no
//! round about `e` once [`keep_horizon`]`(window)` or more exchanges of slot `s` were issued
//! after `e` in the interval ([`within_horizon`]); every owner keeps the cells of at least
//! its last `keep_horizon(window)` owned exchanges, and refuses an interval whose window
//! needs more than its storage holds. An owner answers at most the exchanges the relay
//! issued, so it still holds the cell of every round the relay begins. Both sides count
//! public facts only (the window, the schedule's exchanges of the slot), so the decision
//! says nothing about who owns the slot.
//!
//! A round also needs every node's pad nonce of `e`, which each keeps for its last
//! [`ANSWERED`] exchanges of the interval (every slot's and reservation exchanges alike).
//! The relay begins no round about `e` once [`ANSWERED`] or more exchanges of the interval
//! were issued after it ([`within_answered`]), before it asks anyone; a node answers at
//! most the exchanges the relay issued, so it still holds the nonce of every round the
//! relay begins. The relay keeps the fingerprint rows of its latest [`ANSWERED`] disrupted
//! exchanges (the relay's `fingerprints.rs`), so it too holds the row of every exchange a
//! round may still begin about, however many slots are disrupted at once. [`ANSWERED`] is
//! the horizon of the largest window plus [`HORIZON_SLACK`] exchanges (for reservation
//! exchanges between a slot's): an owner's accusation, about 137 exchanges after its
//! exchange at a window of 64 with its slot the busy one, falls within both.
//!
//! Owns the rule. It must not count exchanges (the relay's `round.rs`) or keep cells (the
//! client's `seal.rs`).

/// Exchanges of a slot past [`keep_horizon`]'s `2 × window` that a round may still
/// begin behind: an owner's accusation goes out in its next owned cell after it learns
/// of the disruption, which the relay decodes up to a window later, and that cell may be
/// disrupted in turn.
pub const HORIZON_SLACK: usize = 8;

/// Exchanges of a slot issued after one of its exchanges `e` at which the relay no longer
/// begins a blame round about `e` (with a pipelining window of `window`): the number of its
/// latest owned cells an owner keeps.
pub const fn keep_horizon(window: u16) -> usize {
    2 * window as usize + HORIZON_SLACK
}

/// Exchanges of an interval whose pad nonces every node keeps, the latest ones (and the
/// disrupted ones among which the relay keeps fingerprint rows): the keep horizon of the
/// largest window and [`HORIZON_SLACK`] more.
pub const ANSWERED: usize = keep_horizon(crate::MAX_WINDOW as u16) + HORIZON_SLACK;

/// Whether a blame round about an exchange may begin once `later` exchanges of the
/// interval (of any slot) were issued after it: every node still keeps its pad nonce.
pub const fn within_answered(later: u64) -> bool {
    later < ANSWERED as u64
}

/// Whether a blame round about an exchange of a slot may begin once `later` exchanges of
/// the same slot were issued after it, with a window of `window`.
pub const fn within_horizon(window: u16, later: u64) -> bool {
    later < keep_horizon(window) as u64
}

/// The largest window at which an owner keeping `kept` owned cells still holds every
/// cell a round asks about (0 if none).
pub const fn largest_window(kept: usize) -> u16 {
    let w = kept.saturating_sub(HORIZON_SLACK) / 2;
    if w > crate::MAX_WINDOW {
        crate::MAX_WINDOW as u16
    } else {
        w as u16
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_horizon_and_the_largest_window_agree() {
        for window in 1..=crate::MAX_WINDOW as u16 {
            let h = keep_horizon(window);
            assert_eq!(largest_window(h), window);
            assert!(largest_window(h - 1) < window);
            assert!(within_horizon(window, h as u64 - 1));
            assert!(!within_horizon(window, h as u64));
        }
        assert_eq!(largest_window(0), 0);
        assert!(ANSWERED > keep_horizon(crate::MAX_WINDOW as u16));
        assert!(within_answered(ANSWERED as u64 - 1) && !within_answered(ANSWERED as u64));
        assert_eq!(largest_window(usize::MAX), crate::MAX_WINDOW as u16);
    }
}
