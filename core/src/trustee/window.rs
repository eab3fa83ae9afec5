//! The log window at the trustee: checkpoints of the downstream log's head as requests
//! show it, and the check that an interval's `oldest` keeps every record the group's log
//! window ([`LogWindow`]) says the relay must still hold.
//!
//! **Checkpoints.** Each request carries the head after its record (`seq`, `bytes`, hash).
//! The trustee keeps at most [`CHECKPOINTS`] of them, `(its own clock, seq, bytes)`, a new
//! one once `time/16` passed or `bytes/16` of window size came since the newest, so they
//! always reach back past the window's time or past its size (whichever is less), to
//! within a sixteenth of it.
//!
//! **The check.** At a start, the oldest checkpoint `c` with `now − c.at < time − slack`
//! and a window size from `c` to the start's head of at most `bytes` says that every record
//! after `c.seq` was appended within the window: the start's `oldest` must be at most
//! `c.seq + 1`. The slack, `time / 4`, covers a request's way from the relay to the
//! trustee (a trustee that slow misses the exchange timeout long before), so an honest relay,
//! which evicts by size only, is never refused; a relay that claims to have forgotten
//! records within the window is. The head never goes back within one relay instance.
//!
//! Owns the checkpoints. It must not confirm or refuse an interval itself (`setup.rs` acts
//! on the answer).

use heapless::Deque;

use crate::policy::LogWindow;
use crate::time::Instant;
use crate::wire::Head;

/// Most checkpoints a trustee keeps.
pub(super) const CHECKPOINTS: usize = 32;

#[derive(Debug, Clone, Copy)]
struct Checkpoint {
    at: Instant,
    seq: u64,
    bytes: u64,
}

/// What an interval's log facts break.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Breach {
    /// The head went back, or a record's size does not add up: the relay contradicts
    /// what it showed before.
    Contradiction,
    /// `oldest` drops records the window says must be held: every one from `required`.
    Window { required: u64 },
}

/// The heads this trustee has seen, in the relay instance of the last start.
#[derive(Debug)]
pub(super) struct Checkpoints {
    epoch: Option<[u8; 16]>,
    ring: Deque<Checkpoint, CHECKPOINTS>,
    /// The head of the last start or request.
    last: Option<Head>,
}

impl Checkpoints {
    pub(super) const fn new() -> Self {
        Checkpoints {
            epoch: None,
            ring: Deque::new(),
            last: None,
        }
    }

    /// A request's head, at the trustee's `now`: checked against the last one (at most one
    /// record, of at most `max_record` bytes, per exchange) and kept as a checkpoint if
    /// due.
    pub(super) fn request(
        &mut self,
        now: Instant,
        window: &LogWindow,
        head: &Head,
        max_record: u64,
    ) -> Result<(), Breach> {
        if let Some(last) = self.last {
            let same = head.seq == last.seq;
            let next = head.seq == last.seq.wrapping_add(1)
                && head.bytes >= last.bytes
                && head.bytes - last.bytes <= max_record;
            if (same && head != &last) || !(same || next) {
                return Err(Breach::Contradiction);
            }
        }
        self.last = Some(*head);
        let due = match self.ring.back() {
            None => true,
            Some(c) => {
                now.saturating_since(c.at).as_micros() >= window.time.as_micros() / 16
                    || LogWindow::size_between(c.seq, c.bytes, head.seq, head.bytes)
                        >= window.bytes / 16
            }
        };
        if due {
            if self.ring.is_full() {
                self.ring.pop_front();
            }
            let _ = self.ring.push_back(Checkpoint {
                at: now,
                seq: head.seq,
                bytes: head.bytes,
            });
        }
        Ok(())
    }

    /// An interval's start of relay instance `epoch` with the log at `head`, claiming to
    /// hold every record from `oldest`.
    pub(super) fn start(
        &mut self,
        now: Instant,
        window: &LogWindow,
        epoch: &[u8; 16],
        head: &Head,
        oldest: u64,
    ) -> Result<(), Breach> {
        if self.epoch != Some(*epoch) {
            // Another relay instance: a log of its own, of which nothing is known yet.
            self.epoch = Some(*epoch);
            self.ring.clear();
            self.last = None;
        }
        if let Some(last) = self.last {
            if head.seq < last.seq || (head.seq == last.seq && *head != last) {
                return Err(Breach::Contradiction);
            }
        }
        if oldest == 0 || oldest > head.seq.saturating_add(1) {
            return Err(Breach::Contradiction);
        }
        self.last = Some(*head);
        let required = self.required(now, window, head);
        if oldest > required {
            return Err(Breach::Window { required });
        }
        if self.ring.is_empty() {
            let _ = self.ring.push_back(Checkpoint {
                at: now,
                seq: head.seq,
                bytes: head.bytes,
            });
        }
        Ok(())
    }

    /// The newest `oldest` the window allows at `now` with the log at `head`.
    fn required(&self, now: Instant, window: &LogWindow, head: &Head) -> u64 {
        let none = head.seq.saturating_add(1);
        let time = window.time.as_micros();
        let reach = time - time / 4;
        if reach == 0 || window.bytes == 0 {
            return none;
        }
        self.ring
            .iter()
            .find(|c| {
                c.seq <= head.seq
                    && now.saturating_since(c.at).as_micros() < reach
                    && LogWindow::size_between(c.seq, c.bytes, head.seq, head.bytes) <= window.bytes
            })
            .map_or(none, |c| c.seq + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::Duration;

    const EPOCH: [u8; 16] = [3; 16];
    const WINDOW: LogWindow = LogWindow {
        time: Duration::from_millis(16_000),
        bytes: 16_000,
    };

    fn head(seq: u64, bytes: u64) -> Head {
        Head {
            seq,
            bytes,
            hash: [seq as u8; 32],
        }
    }

    fn at(secs: u64) -> Instant {
        Instant::from_micros(secs * 1_000_000)
    }

    #[test]
    fn records_within_the_window_must_be_held() {
        let mut c = Checkpoints::new();
        c.start(at(0), &WINDOW, &EPOCH, &head(0, 0), 1).unwrap();
        // One record a second, 100 bytes each: checkpoints every second (a sixteenth of
        // the window's time).
        for s in 1..=20 {
            c.request(at(s), &WINDOW, &head(s, 100 * s), 1000).unwrap();
        }
        // At 20 s the window reaches back 12 s (16 s less the slack): the checkpoint of 9 s
        // is the oldest inside it, so records from 10 on must be held.
        let now = at(20);
        assert_eq!(c.clone_start(now, 21), Err(Breach::Window { required: 10 }));
        assert_eq!(c.clone_start(now, 11), Err(Breach::Window { required: 10 }));
        assert_eq!(c.clone_start(now, 10), Ok(()));
        assert_eq!(c.clone_start(now, 1), Ok(()));
        // Long after, nothing is required any more.
        assert_eq!(c.clone_start(at(40), 21), Ok(()));
    }

    #[test]
    fn the_size_bound_holds_when_records_come_fast() {
        let mut c = Checkpoints::new();
        c.start(at(0), &WINDOW, &EPOCH, &head(0, 0), 1).unwrap();
        // 1000 bytes a record, 100 records in one second: well past the 16 000 bytes.
        for s in 1..=100u64 {
            let now = Instant::from_micros(s * 10_000);
            c.request(now, &WINDOW, &head(s, 1000 * s), 1000).unwrap();
        }
        let now = Instant::from_micros(1_000_001);
        let Err(Breach::Window { required }) = c.clone_start(now, 101) else {
            panic!("a lie within the window passes");
        };
        // Every record after `required − 1` fits the size bound, and the bound is tight to
        // within a sixteenth of it.
        let size = LogWindow::size_between(required - 1, 1000 * (required - 1), 100, 100_000);
        assert!(size <= WINDOW.bytes, "{size}");
        assert!(size + WINDOW.bytes / 16 + 1032 > WINDOW.bytes, "{size}");
        assert_eq!(c.clone_start(now, required), Ok(()));
    }

    #[test]
    fn the_head_never_goes_back_and_records_come_one_at_a_time() {
        let mut c = Checkpoints::new();
        c.start(at(0), &WINDOW, &EPOCH, &head(5, 50), 1).unwrap();
        assert_eq!(
            c.request(at(1), &WINDOW, &head(7, 60), 1000),
            Err(Breach::Contradiction)
        );
        c.request(at(1), &WINDOW, &head(6, 60), 1000).unwrap();
        assert_eq!(
            c.request(at(1), &WINDOW, &head(7, 2000), 1000),
            Err(Breach::Contradiction)
        );
        let mut forked = head(6, 60);
        forked.hash = [9; 32];
        assert_eq!(
            c.request(at(1), &WINDOW, &forked, 1000),
            Err(Breach::Contradiction)
        );
        assert_eq!(
            c.start(at(2), &WINDOW, &EPOCH, &head(5, 50), 1),
            Err(Breach::Contradiction)
        );
        assert_eq!(
            c.start(at(2), &WINDOW, &EPOCH, &head(6, 60), 8),
            Err(Breach::Contradiction)
        );
        // Another relay instance starts a log of its own.
        c.start(at(2), &WINDOW, &[4; 16], &head(0, 0), 1).unwrap();
    }

    #[test]
    fn no_window_requires_nothing() {
        let mut c = Checkpoints::new();
        c.start(at(0), &LogWindow::NONE, &EPOCH, &head(0, 0), 1)
            .unwrap();
        c.request(at(1), &LogWindow::NONE, &head(1, 10), 100)
            .unwrap();
        assert_eq!(
            c.start(at(1), &LogWindow::NONE, &EPOCH, &head(1, 10), 2),
            Ok(())
        );
    }

    impl Checkpoints {
        /// `start` on a copy, so one state answers several questions.
        fn clone_start(&self, now: Instant, oldest: u64) -> Result<(), Breach> {
            let mut copy = Checkpoints {
                epoch: self.epoch,
                ring: self.ring.clone(),
                last: self.last,
            };
            let head = self.last.expect("a head");
            copy.start(now, &WINDOW, &EPOCH, &head, oldest)
        }
    }
}
