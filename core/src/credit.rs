//! Flow control of a connection, both ways: how much a connection's exit may read from its
//! destination before the owner's application has taken what came down, and how much the
//! owner may send before the destination has taken what went up.
//!
//! Downstream: every connection starts with [`DOWN_WINDOW`] bytes of credit at the exit.
//! The owner's client counts the bytes its application took ([`Consumed`]) and grants them
//! back in upstream `Grant` records of at least [`GRANT_STEP`] bytes; the exit reads only
//! within its credit ([`ExitCredit`]), and never lets an owner's grants raise it above
//! [`EXIT_CREDIT_CAP`]. So a connection whose reader stops holds at most the window at the
//! exit and at the client.
//!
//! Upstream, the mirror image: every connection starts with [`UP_WINDOW`] bytes of credit
//! at its owner ([`SendCredit`]). The exit counts the bytes its destination took
//! ([`Consumed`] again) and grants them back in downstream `Grant` records of at least
//! [`GRANT_STEP`] bytes ([`ExitUpstream`]); the owner stages a connection's bytes only
//! within its credit, and never lets the exit's grants raise it above [`OWNER_CREDIT_CAP`].
//! An owner that sends beyond what the exit granted is refused by the exit
//! ([`ExitUpstream::received`]). So a destination that stops reading holds at most the
//! window at the exit, and stops the owner.
//!
//! Owns the arithmetic only; it must not know about cells, sockets or tasks.

/// Downstream credit a connection starts with (fixed by protocol version 3).
pub const DOWN_WINDOW: u32 = 1024 * 1024;

/// Smallest grant an owner sends (grants are coalesced up to it).
pub const GRANT_STEP: u32 = DOWN_WINDOW / 4;

/// Most credit an exit holds for one connection, whatever its owner grants.
pub const EXIT_CREDIT_CAP: u32 = 4 * DOWN_WINDOW;

/// Upstream credit a connection starts with at its owner (fixed by protocol version 3):
/// twice the downstream window, as a grant comes back only after the destination took
/// the bytes and the grant waited for an exchange, and a single upload on loopback ran
/// about a fifth slower with 1 MiB.
pub const UP_WINDOW: u32 = 2 * 1024 * 1024;

/// Most upstream credit an owner holds for one connection, whatever its exit grants.
pub const OWNER_CREDIT_CAP: u32 = 4 * UP_WINDOW;

/// The exit's side: bytes it may still read from the destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitCredit {
    credit: u32,
}

impl Default for ExitCredit {
    fn default() -> Self {
        ExitCredit::new()
    }
}

impl ExitCredit {
    /// A new connection's credit: the window.
    pub const fn new() -> Self {
        ExitCredit {
            credit: DOWN_WINDOW,
        }
    }

    /// Bytes the exit may read now.
    pub const fn available(&self) -> u32 {
        self.credit
    }

    /// The exit read `bytes` from the destination (at most [`ExitCredit::available`]).
    pub fn spend(&mut self, bytes: u32) {
        self.credit = self.credit.saturating_sub(bytes);
    }

    /// The owner granted `bytes` more; the credit never exceeds [`EXIT_CREDIT_CAP`].
    pub fn grant(&mut self, bytes: u32) {
        self.credit = self.credit.saturating_add(bytes).min(EXIT_CREDIT_CAP);
    }
}

/// The receiving side of one direction (the owner downstream, the exit upstream): bytes
/// its reader took that are not granted back yet.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Consumed {
    taken: u32,
}

impl Consumed {
    /// The reader took `bytes` of the connection's stream.
    pub fn took(&mut self, bytes: u32) {
        self.taken = self.taken.saturating_add(bytes);
    }

    /// The grant to send now, if the bytes taken reach a step (then counted as granted).
    pub fn grant(&mut self) -> Option<u32> {
        (self.taken >= GRANT_STEP).then(|| core::mem::take(&mut self.taken))
    }

    /// Gives back a grant that could not be sent this time.
    pub fn keep(&mut self, bytes: u32) {
        self.took(bytes);
    }
}

/// The owner's side of upstream: bytes it may still stage for a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendCredit {
    credit: u32,
}

impl Default for SendCredit {
    fn default() -> Self {
        SendCredit::new()
    }
}

impl SendCredit {
    /// A new connection's credit: the window.
    pub const fn new() -> Self {
        SendCredit { credit: UP_WINDOW }
    }

    /// Bytes the owner may stage now.
    pub const fn available(&self) -> u32 {
        self.credit
    }

    /// The owner staged `bytes` (at most [`SendCredit::available`]).
    pub fn spend(&mut self, bytes: u32) {
        self.credit = self.credit.saturating_sub(bytes);
    }

    /// The exit granted `bytes` more; the credit never exceeds [`OWNER_CREDIT_CAP`].
    /// Returns the credit actually added.
    pub fn grant(&mut self, bytes: u32) -> u32 {
        let before = self.credit;
        self.credit = self.credit.saturating_add(bytes).min(OWNER_CREDIT_CAP);
        self.credit - before
    }
}

/// The exit's side of upstream: what the owner may still send, and what the destination
/// took that is not granted back yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitUpstream {
    /// The window plus every grant sent, less every byte received.
    allowed: u32,
    consumed: Consumed,
}

impl Default for ExitUpstream {
    fn default() -> Self {
        ExitUpstream::new()
    }
}

impl ExitUpstream {
    /// A new connection: the owner may send the window.
    pub const fn new() -> Self {
        ExitUpstream {
            allowed: UP_WINDOW,
            consumed: Consumed { taken: 0 },
        }
    }

    /// The owner's `bytes` arrived; false if they exceed what it was granted (an owner that
    /// does not honour its credit: the exit ends the connection).
    #[must_use]
    pub fn received(&mut self, bytes: u32) -> bool {
        match self.allowed.checked_sub(bytes) {
            Some(left) => {
                self.allowed = left;
                true
            }
            None => false,
        }
    }

    /// The destination took `bytes` of the connection's upstream.
    pub fn took(&mut self, bytes: u32) {
        self.consumed.took(bytes);
    }

    /// The grant to send now, if the bytes taken reach a step (then counted as granted).
    pub fn grant(&mut self) -> Option<u32> {
        let bytes = self.consumed.grant()?;
        self.granted(bytes);
        Some(bytes)
    }

    /// A grant of `bytes` went to the owner (for an exit that counts the bytes taken with
    /// a [`Consumed`] of its own, elsewhere).
    pub fn granted(&mut self, bytes: u32) {
        self.allowed = self.allowed.saturating_add(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credit_is_the_window_then_what_is_granted_never_above_the_cap() {
        let mut exit = ExitCredit::new();
        assert_eq!(exit.available(), DOWN_WINDOW);
        exit.spend(DOWN_WINDOW + 5);
        assert_eq!(exit.available(), 0);
        exit.grant(GRANT_STEP);
        assert_eq!(exit.available(), GRANT_STEP);
        exit.grant(u32::MAX);
        assert_eq!(exit.available(), EXIT_CREDIT_CAP);
        let mut owner = Consumed::default();
        owner.took(GRANT_STEP - 1);
        assert_eq!(owner.grant(), None);
        owner.took(10);
        assert_eq!(owner.grant(), Some(GRANT_STEP + 9));
        assert_eq!(owner.grant(), None);
        owner.keep(GRANT_STEP);
        assert_eq!(owner.grant(), Some(GRANT_STEP));
    }

    #[test]
    fn upstream_credit_is_the_window_then_grants_never_above_the_owners_cap() {
        let mut owner = SendCredit::new();
        let mut exit = ExitUpstream::new();
        assert_eq!(owner.available(), UP_WINDOW);
        owner.spend(UP_WINDOW);
        assert!(exit.received(UP_WINDOW));
        assert_eq!(owner.available(), 0);
        // Not one byte beyond the window.
        assert!(!exit.received(1));
        exit.took(GRANT_STEP - 1);
        assert_eq!(exit.grant(), None);
        exit.took(1);
        assert_eq!(exit.grant(), Some(GRANT_STEP));
        assert_eq!(owner.grant(GRANT_STEP), GRANT_STEP);
        owner.spend(GRANT_STEP);
        assert!(exit.received(GRANT_STEP));
        assert!(!exit.received(1));
        // A grant beyond the cap adds only up to it.
        assert_eq!(owner.grant(u32::MAX), OWNER_CREDIT_CAP);
        assert_eq!(owner.grant(1), 0);
        assert_eq!(owner.available(), OWNER_CREDIT_CAP);
    }
}
