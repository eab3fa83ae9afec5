//! Nodes convicted in blame rounds.
//!
//! Owns [`Relay::exclude_convicted`], the one function through which a verdict removes a
//! node: it tells every trustee and member (`Blamed`), says goodbye to the node
//! (`Excluded`) and ends its link (a member's departure ends the interval, so the next one
//! runs without it). A convicted client goes on the relay's refusal list (`stall.rs`,
//! [`Relay::exclude`]), which the shell persists until an operator lets it back in. A
//! convicted trustee is refused for the rest of this relay's epoch (the group cannot run
//! without it: its members need a new epoch). It must not judge (that is `crate::blame`) or
//! run the round.

use heapless::Deque;

use super::{Destination, Exclusion, Instant, Peer, PeerId, Relay, RelayEvent, Transmit};
use crate::blame::{BlameKind, Culprit};
use crate::wire::{GoodbyeReason, Message, WireError};

/// The convicted trustees and the `Blamed` frames still to send.
#[derive(Debug, Default)]
pub(super) struct Convicted {
    /// Bit `j`: trustee `j` was convicted in this epoch.
    trustees: u32,
    /// (interval, exchange, who, kind) not yet told.
    untold: Deque<(u32, u64, Culprit, BlameKind), 8>,
}

impl Convicted {
    /// Whether trustee `j` was convicted in this epoch.
    pub(super) fn has_trustee(&self, j: u16) -> bool {
        j < 32 && self.trustees & (1u32 << j) != 0
    }
}

impl<P, B> Relay<P, B>
where
    P: AsMut<[Peer]> + AsRef<[Peer]>,
    B: AsMut<[u8]> + AsRef<[u8]>,
{
    /// Excludes `node`, convicted (`kind`) in the blame round of `exchange` of `interval`:
    /// every trustee and member is told (`Blamed`), the node gets `Goodbye{Excluded}` and its
    /// link ends (a member's departure ends the interval; the next runs without it). A
    /// client goes on the refusal list ([`Relay::exclude`]); a trustee is refused for the
    /// rest of this epoch. `false` if there is no such node (nothing done).
    pub fn exclude_convicted(
        &mut self,
        now: Instant,
        node: PeerId,
        interval: u32,
        exchange: u64,
        kind: BlameKind,
    ) -> bool {
        let who = match node {
            PeerId::Client(i) => {
                if i >= self.clients() {
                    return false;
                }
                Culprit::Client(i)
            }
            PeerId::Trustee(j) => {
                if self.peer(node).is_none() || j >= 32 {
                    return false;
                }
                Culprit::Trustee(j)
            }
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
        match node {
            PeerId::Client(i) => {
                let reason = Exclusion::Convicted {
                    interval,
                    exchange,
                    kind,
                };
                self.exclude(now, i, reason)
            }
            PeerId::Trustee(j) => {
                self.convicted.trustees |= 1u32 << j;
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
        }
    }

    /// The next `Blamed` frame, to every trustee and member.
    pub(super) fn transmit_blamed(
        &mut self,
        out: &mut [u8],
    ) -> Result<Option<Transmit>, WireError> {
        let Some((interval, exchange, who, kind)) = self.convicted.untold.pop_front() else {
            return Ok(None);
        };
        let (role, index) = who.to_wire();
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
