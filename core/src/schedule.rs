//! The slot schedule: which pseudonym slot owns each exchange (the prototype's NextSlot).
//!
//! Today the schedule is round-robin over all pseudonym slots within an interval. It is a
//! value the relay owns and consults once per exchange, so a schedule driven by slot
//! reservations can replace it without changing the roles' APIs.

/// Round-robin schedule over `slots` pseudonym slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    slots: u16,
}

impl Schedule {
    /// A schedule over `slots` slots; `None` if there are none.
    pub const fn round_robin(slots: u16) -> Option<Self> {
        if slots == 0 {
            None
        } else {
            Some(Schedule { slots })
        }
    }

    /// Number of slots scheduled.
    pub const fn slots(&self) -> u16 {
        self.slots
    }

    /// The slot that owns `exchange` of an interval.
    pub const fn slot(&self, exchange: u64) -> u16 {
        (exchange % self.slots as u64) as u16
    }
}

#[cfg(test)]
mod tests {
    // Test code only: each unwrap() is an assertion on a fixture, never on network input.
    use super::*;

    #[test]
    fn round_robin_visits_every_slot() {
        assert!(Schedule::round_robin(0).is_none());
        let s = Schedule::round_robin(3).unwrap();
        let got: heapless::Vec<u16, 7> = (0..7).map(|e| s.slot(e)).collect();
        assert_eq!(&got[..], &[0, 1, 2, 0, 1, 2, 0]);
    }
}
