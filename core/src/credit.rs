//! Downstream flow control: how much a connection's exit may read from its destination
//! before the owner's application has taken what came down.
//!
//! Every connection starts with [`DOWN_WINDOW`] bytes of credit at the exit. The owner's
//! client counts the bytes its application took ([`OwnerCredit`]) and grants them back in
//! `Grant` records of at least [`GRANT_STEP`] bytes; the exit reads only within its credit
//! ([`ExitCredit`]), and never lets an owner's grants raise it above [`EXIT_CREDIT_CAP`].
//! So a connection whose reader stops holds at most the window at the exit and at the
//! client. Owns the arithmetic only; it must not know about cells, sockets or tasks.

/// Downstream credit a connection starts with (fixed by protocol version 3).
pub const DOWN_WINDOW: u32 = 1024 * 1024;

/// Smallest grant an owner sends (grants are coalesced up to it).
pub const GRANT_STEP: u32 = DOWN_WINDOW / 4;

/// Most credit an exit holds for one connection, whatever its owner grants.
pub const EXIT_CREDIT_CAP: u32 = 4 * DOWN_WINDOW;

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

/// The owner's side: bytes its application took that are not granted back yet.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OwnerCredit {
    taken: u32,
}

impl OwnerCredit {
    /// The application took `bytes` of the connection's downstream.
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
        let mut owner = OwnerCredit::default();
        owner.took(GRANT_STEP - 1);
        assert_eq!(owner.grant(), None);
        owner.took(10);
        assert_eq!(owner.grant(), Some(GRANT_STEP + 9));
        assert_eq!(owner.grant(), None);
        owner.keep(GRANT_STEP);
        assert_eq!(owner.grant(), Some(GRANT_STEP));
    }
}
