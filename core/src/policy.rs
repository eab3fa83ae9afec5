//! The group's policy: what every member agrees on before any interval and that bounds what
//! a relay learns by choosing who is online. Two rules live here:
//!
//! - **The anonymity minimum** `k` ([`Policy::min_anonymity`]). Clients are partitioned into
//!   buddy groups of at least `k` ([`crate::buddies`]); a slot transmits only while its
//!   owner's whole group is online, and a loss is shared by the whole group.
//! - **The log window** ([`LogWindow`]). The relay must be able to replay every downstream
//!   record appended within the last `time`, unless more than `bytes` were appended since:
//!   "`time` or `bytes`, whichever is less". The trustees hold the relay to it
//!   (`trustee/window.rs`), so a client away for less than the window recovers every byte.
//!
//! Owns the policy's values and the size a record counts for in the window. It must not hold
//! state: the checks that apply it are the roles'.

use crate::time::Duration;

/// Bytes a downstream record counts for in the log window beyond its data (a `Replay`
/// frame's fields besides the data fit in it).
pub const WINDOW_RECORD_OVERHEAD: u64 = 32;

/// Default anonymity minimum: buddy groups of two.
pub const DEFAULT_MIN_ANONYMITY: u16 = 2;
/// Default time part of the log window: ten minutes.
pub const DEFAULT_WINDOW_TIME: Duration = Duration::from_millis(600_000);
/// Default size part of the log window: 32 MiB.
pub const DEFAULT_WINDOW_BYTES: u64 = 32 * 1024 * 1024;

/// The log window: how long, and how many bytes, of downstream records the relay must be
/// able to replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogWindow {
    /// Records appended within this long must be held (unless `bytes` came after them).
    pub time: Duration,
    /// Records followed by at most this many bytes (data plus
    /// [`WINDOW_RECORD_OVERHEAD`] per record, the record itself included) must be held.
    pub bytes: u64,
}

impl LogWindow {
    /// The window of the defaults: ten minutes or 32 MiB.
    pub const DEFAULT: LogWindow = LogWindow {
        time: DEFAULT_WINDOW_TIME,
        bytes: DEFAULT_WINDOW_BYTES,
    };

    /// No window: the relay may forget any record (a test switch; every client away for any
    /// time may be lost).
    pub const NONE: LogWindow = LogWindow {
        time: Duration::from_micros(0),
        bytes: 0,
    };

    /// The window size of the records after a head of `(seq, bytes)` up to a head of
    /// `(head_seq, head_bytes)`: their data plus the per-record overhead.
    pub const fn size_between(seq: u64, bytes: u64, head_seq: u64, head_bytes: u64) -> u64 {
        let records = head_seq.saturating_sub(seq);
        head_bytes
            .saturating_sub(bytes)
            .saturating_add(records.saturating_mul(WINDOW_RECORD_OVERHEAD))
    }
}

/// What every member of a group agrees on about intersection and the log (the group
/// description's policy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// The anonymity minimum `k`: buddy groups have at least this many clients (1: every
    /// client is its own group, which protects nothing against intersection).
    pub min_anonymity: u16,
    /// The log window.
    pub log_window: LogWindow,
}

impl Policy {
    /// The defaults: buddy groups of two, a window of ten minutes or 32 MiB.
    pub const DEFAULT: Policy = Policy {
        min_anonymity: DEFAULT_MIN_ANONYMITY,
        log_window: LogWindow::DEFAULT,
    };
}

impl Default for Policy {
    fn default() -> Self {
        Policy::DEFAULT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_sizes_count_data_and_records() {
        assert_eq!(LogWindow::size_between(3, 100, 3, 100), 0);
        assert_eq!(LogWindow::size_between(3, 100, 5, 150), 50 + 2 * 32);
        // Numbers a relay chose never overflow.
        assert_eq!(LogWindow::size_between(0, 0, u64::MAX, u64::MAX), u64::MAX);
        assert_eq!(LogWindow::size_between(9, 9, 1, 1), 0);
    }
}
