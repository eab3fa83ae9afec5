//! Nodes convicted in blame rounds: excluded for the rest of the relay's epoch.
//!
//! Owns the convicted list and [`Relay::exclude_convicted`], the one function through which
//! a verdict removes a node: it tells every trustee and member (`Blamed`), says goodbye to
//! the node (`Excluded`), ends its link (a member's departure ends the interval, so the next
//! one runs without it), and refuses its later hellos ([`Relay::is_excluded`], checked in
//! `peers.rs`). A refusal list that outlives the process (until an operator lets the node
//! back in) joins here: this list is the relay's memory of this epoch only. It must not
//! judge (that is `crate::blame`) or run the round.

use heapless::{Deque, Vec};

use super::{Destination, Instant, Peer, PeerId, Relay, RelayEvent, Transmit};
use crate::blame::{BlameKind, Culprit};
use crate::wire::{GoodbyeReason, Message, WireError};

/// Most nodes one relay excludes in an epoch (more is refused: a group that convicts this
/// many is better restarted).
pub const MAX_EXCLUDED: usize = 64;

/// The convicted nodes and the `Blamed` frames still to send.
#[derive(Debug, Default)]
pub(super) struct Convicted {
    nodes: Vec<PeerId, MAX_EXCLUDED>,
    /// (interval, exchange, who, kind) not yet told.
    untold: Deque<(u32, u64, Culprit, BlameKind), 8>,
}

impl<P, B> Relay<P, B>
where
    P: AsMut<[Peer]> + AsRef<[Peer]>,
    B: AsMut<[u8]> + AsRef<[u8]>,
{
    /// Excludes `node`, convicted (`kind`) in the blame round of `exchange` of `interval`,
    /// for the rest of this relay's epoch: every trustee and member is told (`Blamed`), the
    /// node gets `Goodbye{Excluded}` and its link ends (a member's departure ends the
    /// interval; the next runs without it), and its later hellos are refused. `false` if
    /// the list is full (nothing done).
    pub fn exclude_convicted(
        &mut self,
        now: Instant,
        node: PeerId,
        interval: u32,
        exchange: u64,
        kind: BlameKind,
    ) -> bool {
        if !self.convicted.nodes.contains(&node) && self.convicted.nodes.push(node).is_err() {
            return false;
        }
        let who = match node {
            PeerId::Client(i) => Culprit::Client(i),
            PeerId::Trustee(j) => Culprit::Trustee(j),
        };
        if self.convicted.untold.is_full() {
            self.convicted.untold.pop_front();
        }
        let _ = self
            .convicted
            .untold
            .push_back((interval, exchange, who, kind));
        // The news goes out before the goodbye ends the interval (the members of the
        // interval are still the destination).
        if let Some(link) = self.link_of(node) {
            self.say_goodbye(link, GoodbyeReason::Excluded);
            self.push_event(RelayEvent::Dropped {
                peer: node,
                reason: GoodbyeReason::Excluded,
            });
            self.disconnect(now, node);
        }
        true
    }

    /// Whether `node` was convicted in a blame round of this epoch.
    pub fn is_excluded(&self, node: PeerId) -> bool {
        self.convicted.nodes.contains(&node)
    }

    /// The next `Blamed` frame, to every trustee and member.
    pub(super) fn transmit_blamed(
        &mut self,
        out: &mut [u8],
    ) -> Result<Option<Transmit>, WireError> {
        let Some((interval, exchange, who, kind)) = self.convicted.untold.pop_front() else {
            return Ok(None);
        };
        let (role, index) = match who {
            Culprit::Client(i) => (0, i),
            Culprit::Trustee(j) => (1, j),
            Culprit::Relay => (2, 0),
        };
        let len = Message::Blamed {
            interval,
            exchange,
            role,
            index,
            kind: kind as u8,
        }
        .emit_frame(out)?;
        Ok(Some(Transmit {
            destination: Destination::TrusteesAndMembers,
            len,
            close_after: false,
        }))
    }
}
