//! Losses: which members of an interval being started lost their connections, shown to
//! every member in the start's `lost` bitmap, and what each member holds once it acted on
//! its confirmation (its log position, its pending loss, the replays it is owed).
//!
//! A member is lost by the rule every client applies to itself (protocol.md §5.10): it
//! follows another relay instance's log; the records it missed are past what the log holds,
//! do not fit its frames or together exceed its replay capacity; it answered exchanges in
//! an interval the history no longer has; or it was lost before and its whole buddy group
//! has not been shown so yet. Each member checks its own bit, so the relay can neither hide
//! a loss nor invent one, and every client of a lost member's buddy group ends its
//! connections with it.
//!
//! Owns the `lost` bitmap and the members' log positions between intervals. It must not
//! send anything (`setup.rs` sends the start and the replays) or touch the log's contents.

use super::interval::Replaying;
use super::peers::Follows;
use super::{Peer, Relay};
use crate::bits::{self, bitmap_len};
use crate::buddies;
use crate::wire::{self, REPLAY_OVERHEAD};

impl<P, B> Relay<P, B>
where
    P: AsMut<[Peer]> + AsRef<[Peer]>,
    B: AsMut<[u8]> + AsRef<[u8]>,
{
    /// Whether `p` lost its connections since it last acted on an interval, a loss not yet
    /// counted (its gap, its forgotten cells), given the log's largest record `largest`.
    fn newly_lost(&self, p: &Peer, largest: u32) -> bool {
        let head = self.log.head();
        let gap_lost = match p.follows {
            Follows::Nothing => false,
            Follows::OtherEpoch => true,
            Follows::Log { seq, bytes } if seq < head.seq => {
                // Saturating: the client chose these numbers.
                let size = head
                    .bytes
                    .saturating_sub(bytes)
                    .saturating_add((head.seq - seq).saturating_mul(REPLAY_OVERHEAD as u64));
                !(seq.saturating_add(1) >= self.log.oldest()
                    && u64::from(largest) + wire::REPLAY_FRAME_OVERHEAD as u64
                        <= u64::from(p.max_frame)
                    && size <= u64::from(p.capacity))
            }
            Follows::Log { .. } => false,
        };
        let forgotten = p
            .answered
            .is_some_and(|i| !self.history.iter().any(|h| h.interval == i));
        gap_lost || forgotten
    }

    /// Fills the `lost` bitmap of the interval being started; true if anyone is lost.
    pub(super) fn mark_losses(&mut self, largest: u32) -> bool {
        let n = usize::from(self.cfg.clients);
        if let Some(lost) = self.lost.as_mut().get_mut(..bitmap_len(n)) {
            lost.fill(0);
        }
        let mut any = false;
        let mut i = 0;
        loop {
            i = bits::next_set(self.online_bits(), i, n);
            if i >= n {
                return any;
            }
            let lost = self
                .peers
                .as_ref()
                .get(i)
                .is_some_and(|p| p.loss_pending || self.newly_lost(p, largest));
            if lost {
                bits::set(self.lost.as_mut(), i);
                any = true;
            }
            i += 1;
        }
    }

    /// The `lost` bitmap as the start shows it: empty when nobody is lost.
    pub(super) fn lost_bits(&self, any: bool) -> &[u8] {
        if !any {
            return &[];
        }
        let len = bitmap_len(usize::from(self.cfg.clients));
        let lost = self.lost.as_ref();
        lost.get(..len).unwrap_or(lost)
    }

    /// Member `i` got its confirmation of the interval whose start marked losses in `lost`
    /// (`any`: some): it acted on it exactly as the relay records here. Returns the replay it
    /// is owed, if it missed records the log still holds.
    pub(super) fn settle_member(&mut self, i: usize, any: bool, largest: u32) -> Option<Replaying> {
        let n = self.cfg.clients;
        let k = self.cfg.policy.min_anonymity;
        let lost = self.lost_bits(any);
        let marked = any && bits::test(lost, i);
        let group_lost = any && buddies::group_touches(lost, i as u16, n, k);
        let complete = buddies::group_online(self.online_bits(), i as u16, n, k);
        let p = *self.peers.as_ref().get(i)?;
        let newly = marked && self.newly_lost(&p, largest);
        let head = self.log.head();
        let replay = match p.follows {
            Follows::Log { seq, .. } if !newly && seq < head.seq => self
                .log
                .replay_start(seq, p.max_frame, largest)
                .map(|(seq, at)| Replaying {
                    client: i as u16,
                    seq,
                    at,
                }),
            _ => None,
        };
        let p = self.peers.as_mut().get_mut(i)?;
        if newly {
            p.loss_pending = true;
            p.answered = None;
        }
        if complete && group_lost {
            p.loss_pending = false;
        }
        // Replayed or not, once it has acted on this start it holds the log up to the head
        // (a member whose replays fail says hello again, with where it is).
        p.follows = Follows::Log {
            seq: head.seq,
            bytes: head.bytes,
        };
        replay
    }
}
