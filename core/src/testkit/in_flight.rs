//! Frames in flight between the test net's nodes, in delivery order (arrival time, then
//! send order): sending appends and delivering takes the head, each in constant time.

use std::collections::VecDeque;
use std::rc::Rc;

use crate::relay::LinkId;
use crate::Instant;

/// One frame on its way.
pub(super) struct Wire {
    pub(super) at: Instant,
    pub(super) seq: u64,
    pub(super) to_relay: bool,
    pub(super) link: LinkId,
    /// The whole frame (header and body), shared by every copy of a broadcast.
    pub(super) frame: Rc<[u8]>,
    pub(super) close_after: bool,
}

/// Frames in flight, in delivery order: arrival time, then send order.
#[derive(Default)]
pub(super) struct InFlight {
    queue: VecDeque<Wire>,
}

impl InFlight {
    /// Adds a frame. Constant time while arrival times do not go back (one latency for
    /// every link, a clock that only moves on); a frame that would arrive before one
    /// already queued (a test that lowered the latency mid-run) is inserted in order.
    pub(super) fn push(&mut self, w: Wire) {
        let in_order = self
            .queue
            .back()
            .is_none_or(|last| (last.at, last.seq) <= (w.at, w.seq));
        if in_order {
            self.queue.push_back(w);
        } else {
            let k = self
                .queue
                .partition_point(|q| (q.at, q.seq) <= (w.at, w.seq));
            self.queue.insert(k, w);
        }
    }

    /// The next frame to arrive.
    pub(super) fn front(&self) -> Option<&Wire> {
        self.queue.front()
    }

    /// Takes the next frame to arrive.
    pub(super) fn pop(&mut self) -> Option<Wire> {
        self.queue.pop_front()
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = &Wire> {
        self.queue.iter()
    }
}
