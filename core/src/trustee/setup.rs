//! An interval's set-up at the trustee: `IntervalOpen` and the `Members` (each member's
//! link nonce with its presence proof, checked) → `IntervalReady` with a fresh nonce →
//! `IntervalStart` (checked against the open: same online set, this trustee's nonce) →
//! `Acks` (every member's acknowledgement of the view, which must match this trustee's
//! own) → one confirmation MAC per member.
//!
//! A member whose proof or acknowledgement does not check is named in a `Refuse`; the
//! trustee serves no interval with it and keeps its link.
//!
//! Owns the set-up phases and the checks on an interval's view. It must not compute cells
//! (`exchange.rs`).

use chacha20::cipher::StreamCipher;

use super::window::Breach;
use super::{Refusal, Trustee, TrusteeEvent};
use crate::bits::{self, bitmap_len, Bits};
use crate::crypto::{IntervalKey, PairKey};
use crate::error::{IntervalError, PeerError, RequestError};
use crate::schedule::Schedule;
use crate::time::Instant;
use crate::transcript::Transcript;
use crate::wire::{self, IntervalStart, Params, Prefix, WireError};
use crate::{MAC_LEN, MAX_CELL_LENGTH, MAX_WINDOW, NONCE_LEN};

/// Members confirmed per `Confirm` frame.
const CONFIRM_CHUNK: usize = 2048;

/// Bytes of one `Members` entry: a member's link nonce, its presence proof and its resume
/// block.
const MEMBER_ENTRY: usize = wire::MEMBER_ENTRY_LEN;

/// How far a per-member list (members, acknowledgements, confirmations) has got: `done` of
/// `members` entries, and the online-set position to look at next.
#[derive(Debug, Clone, Copy)]
pub(super) struct Progress {
    pub(super) members: u32,
    pub(super) done: u32,
    pub(super) position: usize,
}

impl Progress {
    fn new(members: u32) -> Self {
        Progress {
            members,
            done: 0,
            position: 0,
        }
    }

    fn is_complete(&self) -> bool {
        self.done == self.members
    }

    /// Checks that `entries` (from position `first`, `entry` bytes each) continue the list.
    fn check_chunk(&self, first: u32, entries: &[u8], entry: usize) -> Result<(), PeerError> {
        if first != self.done
            || entries.is_empty()
            || !entries.len().is_multiple_of(entry)
            || self.done as usize + entries.len() / entry > self.members as usize
        {
            return Err(IntervalError::Members.into());
        }
        Ok(())
    }
}

/// A running interval.
#[derive(Debug, Clone, Copy)]
pub(super) struct Running {
    pub(super) interval: u32,
    pub(super) members: u32,
    pub(super) next_exchange: u64,
    pub(super) transcript: Transcript,
    pub(super) schedule: Schedule,
    /// Most data bytes of one downstream record.
    pub(super) downstream_len: u32,
    /// The relay's trap point of the interval (`R_I`), as announced: what a trap's
    /// grounds must name (`blame::trap`).
    pub(super) trap: [u8; 32],
}

/// Where the trustee is in an interval.
#[derive(Debug, Clone, Copy)]
pub(super) enum Phase {
    Idle,
    /// Receiving and checking the members.
    Opening {
        interval: u32,
        members: Progress,
        nonce: [u8; NONCE_LEN],
    },
    /// `IntervalReady` sent (or pending), waiting for the start.
    Ready {
        interval: u32,
        members: u32,
        nonce: [u8; NONCE_LEN],
        pending: bool,
    },
    /// Checking every member's acknowledgement of `view`.
    Acking {
        interval: u32,
        acks: Progress,
        view: [u8; 32],
        running: Running,
    },
    /// Emitting confirmations.
    Confirming {
        interval: u32,
        confirms: Progress,
        view: [u8; 32],
        running: Running,
    },
    Running(Running),
}

impl<P, I, B> Trustee<P, I, B>
where
    P: AsMut<[PairKey]> + AsRef<[PairKey]>,
    I: AsMut<[IntervalKey]> + AsRef<[IntervalKey]>,
    B: AsMut<[u8]> + AsRef<[u8]>,
{
    /// A new interval over `online`: whatever interval the trustee had is abandoned.
    pub(super) fn on_open(&mut self, interval: u32, online: &[u8]) -> Result<(), PeerError> {
        self.reset();
        let set = Bits::new_checked(online, self.clients).map_err(|_| IntervalError::OnlineSet)?;
        let members = set.count();
        if members == 0 {
            return Err(IntervalError::OnlineSet.into());
        }
        if members < usize::from(self.min_clients) {
            return Err(IntervalError::TooFewClients {
                online: members,
                min: self.min_clients,
            }
            .into());
        }
        if let Some(dst) = self.online.as_mut().get_mut(..online.len()) {
            dst.copy_from_slice(online);
        }
        let mut nonce = [0u8; NONCE_LEN];
        // The keystream of one seed lasts 256 GiB: 2^34 intervals.
        self.rng.apply_keystream(&mut nonce);
        self.phase = Phase::Opening {
            interval,
            members: Progress::new(members as u32),
            nonce,
        };
        Ok(())
    }

    /// The next members' link nonces and presence proofs: each proof is checked, and the
    /// member's pad key for the interval derived.
    pub(super) fn on_members(
        &mut self,
        interval: u32,
        first: u32,
        entries: &[u8],
    ) -> Result<(), PeerError> {
        let Phase::Opening {
            interval: current,
            mut members,
            nonce,
        } = self.phase
        else {
            return Err(PeerError::Unexpected);
        };
        if interval != current {
            return Err(IntervalError::Members.into());
        }
        members.check_chunk(first, entries, MEMBER_ENTRY)?;
        for entry in entries.chunks_exact(MEMBER_ENTRY) {
            let client = self.next_member(&mut members.position);
            let (client_nonce, rest) = entry.split_at(NONCE_LEN);
            let (proof, resume) = rest.split_at(MAC_LEN);
            let Ok(client_nonce) = <[u8; NONCE_LEN]>::try_from(client_nonce) else {
                return Err(IntervalError::Members.into());
            };
            let Some(pair) = self.pairs.as_ref().get(client) else {
                return Err(IntervalError::Members.into());
            };
            if !pair.check_presence(
                &self.group_id,
                &self.session_id,
                client as u16,
                &client_nonce,
                resume,
                proof,
            ) {
                self.refuse(current, client as u16, Refusal::Proof);
                return Ok(());
            }
            let key = pair.interval_key(current, &nonce, &client_nonce);
            #[cfg(feature = "blame-round")]
            self.note_member_nonce(members.done, &client_nonce);
            if let Some(slot) = self.interval_keys.as_mut().get_mut(members.done as usize) {
                *slot = key;
            }
            members.done += 1;
        }
        self.phase = if members.is_complete() {
            Phase::Ready {
                interval: current,
                members: members.members,
                nonce,
                pending: true,
            }
        } else {
            Phase::Opening {
                interval: current,
                members,
                nonce,
            }
        };
        Ok(())
    }

    /// The interval's view (`body` is the whole `IntervalStart`), checked against what was
    /// opened; the members' acknowledgements come next.
    pub(super) fn on_start(
        &mut self,
        now: Instant,
        body: &[u8],
        start: &IntervalStart<'_>,
    ) -> Result<(), PeerError> {
        let Phase::Ready {
            interval: current,
            members,
            nonce,
            pending: false,
        } = self.phase
        else {
            return Err(PeerError::Unexpected);
        };
        let interval = start.interval;
        if interval != current {
            return Err(RequestError::WrongInterval {
                current,
                got: interval,
            }
            .into());
        }
        if Some(start.online) != self.online.as_ref().get(..bitmap_len(self.clients)) {
            return Err(IntervalError::OnlineSet.into());
        }
        let own = usize::from(self.index) * NONCE_LEN;
        if start.nonces.len() != usize::from(self.trustees) * NONCE_LEN
            || start.nonces.get(own..own + NONCE_LEN) != Some(&nonce[..])
        {
            return Err(IntervalError::Parameters.into());
        }
        if start.window == 0 || usize::from(start.window) > MAX_WINDOW {
            return Err(IntervalError::Parameters.into());
        }
        self.check_params(&start.params)?;
        let schedule = Schedule::new(self.slots, &start.params, self.schedule.as_ref().len())
            .map_err(|_| IntervalError::Parameters)?;
        let window = self.policy.log_window;
        match self
            .checkpoints
            .start(now, &window, &start.epoch, &start.head, start.oldest)
        {
            Ok(()) => {}
            Err(Breach::Contradiction) => return Err(IntervalError::Equivocation.into()),
            Err(Breach::Window { required }) => {
                // Refused like a member: nothing confirmed, the link kept.
                self.phase = Phase::Idle;
                self.event = Some(TrusteeEvent::LogWindow {
                    interval,
                    oldest: start.oldest,
                    required,
                });
                return Ok(());
            }
        }
        let transcript = Transcript::start(body);
        #[cfg(feature = "blame-round")]
        self.note_start(start.nonces, transcript.hash());
        self.phase = Phase::Acking {
            interval,
            acks: Progress::new(members),
            view: *transcript.hash(),
            running: Running {
                interval,
                members,
                next_exchange: 0,
                transcript,
                schedule,
                downstream_len: start.params.downstream_len,
                trap: start.trap,
            },
        };
        Ok(())
    }

    /// Checks the interval parameters against this trustee's limits.
    fn check_params(&self, p: &Params) -> Result<(), PeerError> {
        let longest = (p.max_len as usize).max(bitmap_len(usize::from(self.slots)));
        let ok = p.base_len as usize == self.cell_len
            && p.max_len as usize <= MAX_CELL_LENGTH
            && wire::cell_frame_len(longest) - wire::FRAME_HEADER_LEN <= self.max_frame as usize
            && p.capacity <= self.max_reserved;
        if ok {
            Ok(())
        } else {
            Err(IntervalError::Parameters.into())
        }
    }

    /// The next members' acknowledgements of the view, each checked.
    pub(super) fn on_acks(
        &mut self,
        interval: u32,
        first: u32,
        macs: &[u8],
    ) -> Result<(), PeerError> {
        let Phase::Acking {
            interval: current,
            mut acks,
            view,
            running,
        } = self.phase
        else {
            return Err(PeerError::Unexpected);
        };
        if interval != current {
            return Err(IntervalError::Members.into());
        }
        acks.check_chunk(first, macs, MAC_LEN)?;
        for mac in macs.chunks_exact(MAC_LEN) {
            let client = self.next_member(&mut acks.position);
            let acknowledged = self
                .pairs
                .as_ref()
                .get(client)
                .is_some_and(|pair| pair.check_acknowledgement(&view, mac));
            if !acknowledged {
                self.refuse(current, client as u16, Refusal::Ack);
                return Ok(());
            }
            acks.done += 1;
        }
        self.phase = if acks.is_complete() {
            self.event = Some(TrusteeEvent::IntervalStarted {
                interval,
                clients: acks.members as usize,
            });
            Phase::Confirming {
                interval,
                confirms: Progress::new(acks.members),
                view,
                running,
            }
        } else {
            Phase::Acking {
                interval,
                acks,
                view,
                running,
            }
        };
        Ok(())
    }

    /// The next member at or after `position`, moving `position` past it. Called only while
    /// fewer than all members were seen, so there is one.
    fn next_member(&self, position: &mut usize) -> usize {
        let online = self.online.as_ref();
        let online = online.get(..bitmap_len(self.clients)).unwrap_or(online);
        let member = bits::next_set(online, *position, self.clients);
        *position = member + 1;
        member
    }

    /// Refuses the interval because of `client`: nothing more of it is served.
    fn refuse(&mut self, interval: u32, client: u16, what: Refusal) {
        self.phase = Phase::Idle;
        self.refusal = Some((interval, client));
        self.event = Some(TrusteeEvent::Refused {
            interval,
            client,
            what,
        });
    }

    /// The next `Confirm`: this trustee's confirmation of the view for the next members.
    pub(super) fn transmit_confirm(&mut self, out: &mut [u8]) -> Result<Option<usize>, WireError> {
        let Phase::Confirming {
            interval,
            mut confirms,
            view,
            running,
        } = self.phase
        else {
            return Ok(None);
        };
        let room = out.len().saturating_sub(32) / MAC_LEN;
        let count = ((confirms.members - confirms.done) as usize)
            .min(CONFIRM_CHUNK)
            .min(room);
        if count == 0 {
            return Err(WireError::BufferTooSmall);
        }
        let len = count * MAC_LEN;
        let p = Prefix::Confirm {
            interval,
            first: confirms.done,
        }
        .emit(len, out)?;
        let macs = out.get_mut(p..p + len).ok_or(WireError::BufferTooSmall)?;
        for mac in macs.chunks_exact_mut(MAC_LEN) {
            let client = self.next_member(&mut confirms.position);
            if let Some(pair) = self.pairs.as_ref().get(client) {
                mac.copy_from_slice(&pair.confirmation(&view));
            }
        }
        confirms.done += count as u32;
        self.phase = if confirms.is_complete() {
            Phase::Running(running)
        } else {
            Phase::Confirming {
                interval,
                confirms,
                view,
                running,
            }
        };
        Ok(Some(p + len))
    }
}
