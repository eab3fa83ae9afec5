//! The relay's side of the setup: it opens attempts, collects the clients' submissions and
//! forwards everything, in the protocol's order, to every node. It decides nothing secret:
//! it runs the same verifier as every node (`follower.rs`) only to know when a trustee is
//! convicted (then it opens a new attempt without it, or stops) and to refuse a trustee's
//! or a client's frame that would only make every node fail.
//!
//! Participants that leave mid-setup (their link dropped) or never submit are left out of
//! a new attempt ([`SetupRelay::leave`], [`SetupRelay::drop_missing`]), as long as the
//! group's minimum of clients remains and the relay has opened fewer than its most
//! attempts ([`SetupRelay::limit`]); otherwise the setup stops, saying which. A setup never
//! waits for a node that is gone. A trustee silent on its turn is left out on the relay's
//! word ([`SetupRelay::silent`]) only as far as the group's `min_trustees` lets nodes accept.
//! A relay that restarted goes on from what it kept ([`SetupRelay::resume`],
//! [`SetupRelay::witness`]).
//!
//! Owns the collection and the order of the stream; the checks are the follower's.

use super::follower::{Event, Follower};
use super::message::{Open, SetupMessage, SUBMIT_LEN};
use super::proof::verify_submission;
use super::{Established, Failure, SetupConfig, SetupStorage, Waiting};
use crate::bits::{self, bitmap_len};
use crate::error::ConfigError;
use crate::wire::WireError;

/// What the relay does with a trustee's frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayStep {
    /// Forward the frame, unchanged, to every node; the setup goes on.
    Forward,
    /// Forward it: it convicts its author, and [`SetupRelay::poll_broadcast`] now gives a
    /// new `Open` without it.
    ForwardAndRestart(super::Conviction),
    /// Forward it: the epoch is established.
    ForwardEstablished,
    /// Forward it (the evidence): the setup failed and stops.
    ForwardAndStop(Failure),
    /// Do not forward: the frame is not this trustee's next valid message.
    Refuse(Failure),
}

/// Most attempts a relay opens for departures unless told otherwise ([`SetupRelay::limit`]);
/// convictions always get theirs (at most one per trustee).
pub const MAX_ATTEMPTS: u8 = 8;

/// What a participant's departure does to the setup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Departure {
    /// Nothing: not a participant of the attempt, or the epoch is established or stopped.
    Ignored,
    /// [`SetupRelay::poll_broadcast`] now gives a new `Open` without the departed, over
    /// `remaining` participants.
    Restart {
        /// Participants of the next attempt.
        remaining: usize,
    },
    /// The setup stops (too few clients remain, or too many attempts).
    Stop(Failure),
}

/// Why the relay refused a client's submission (it is not forwarded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubmitRefused {
    /// Not a submission, or not now (no joint key yet, or all forwarded).
    Unexpected,
    /// Another epoch or attempt, or another client than the link's.
    Mismatch,
    /// Not a participant, or already submitted.
    NotAwaited,
    /// Bad signature or bad proof.
    Invalid,
}

/// The relay's setup of one epoch.
pub struct SetupRelay<'c, B> {
    follower: Follower<'c, B>,
    /// `SUBMIT_LEN` bytes per client, then the submitted bitmap, then the next `Open`'s
    /// participants.
    collected: B,
    next_attempt: u8,
    open_pending: bool,
    stopped: Option<Failure>,
    min_clients: usize,
    max_attempts: u8,
    /// Trustees left out as silent (on the relay's word).
    silent: u16,
}

impl<'c, B: AsRef<[u8]> + AsMut<[u8]>> SetupRelay<'c, B> {
    /// Bytes of the `collected` region for `config`.
    pub const fn collected_len(config: &SetupConfig<'_>) -> usize {
        let n = config.clients.len();
        n * SUBMIT_LEN + 2 * bitmap_len(n)
    }

    /// The relay's setup over `participants` (a bitmap over the clients: those connected
    /// when setup starts).
    pub fn new(
        config: SetupConfig<'c>,
        storage: SetupStorage<B>,
        mut collected: B,
        participants: &[u8],
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        storage.check(&config.storage_lens())?;
        let n = config.clients.len();
        if collected.as_ref().len() < Self::collected_len(&config) {
            return Err(ConfigError::StorageTooSmall("collected"));
        }
        let bits = bits::Bits::new_checked(participants, n).map_err(|_| ConfigError::Counts)?;
        if bits.is_empty() || bits.count() == 0 {
            return Err(ConfigError::Counts);
        }
        let at = n * SUBMIT_LEN + bitmap_len(n);
        collected
            .as_mut()
            .get_mut(at..at + bitmap_len(n))
            .ok_or(ConfigError::StorageTooSmall("collected"))?
            .copy_from_slice(participants);
        Ok(SetupRelay {
            follower: Follower::new(config, storage, None),
            collected,
            next_attempt: 0,
            open_pending: true,
            stopped: None,
            min_clients: 1,
            max_attempts: MAX_ATTEMPTS,
            silent: 0,
        })
    }

    /// The group's minimum of participants (at least 1; 1 by default) and the most attempts
    /// the relay opens for departures ([`MAX_ATTEMPTS`] by default).
    pub fn limit(&mut self, min_clients: usize, max_attempts: u8) {
        self.min_clients = min_clients.max(1);
        self.max_attempts = max_attempts.max(1);
    }

    /// A relay that restarted: its next attempt is `next_attempt` (one past the last it
    /// opened before, as it kept it), so that no node is shown an attempt number again with
    /// other content. Only before it opens an attempt; never lowers the number.
    /// It also leaves out the trustees it had left out as silent (`silent`, a bitmap).
    pub fn resume(&mut self, next_attempt: u8, silent: u16) {
        if self.open_pending {
            self.next_attempt = self.next_attempt.max(next_attempt);
            let all = ((1u32 << self.follower.config.trustees.len()) - 1) as u16;
            self.silent |= silent & all;
        }
    }

    /// One frame of an attempt that convicted a trustee, as this relay recorded it (after a
    /// restart, before it opens an attempt): checked as every node checks it, so the relay
    /// knows the conviction again, and its next `Open` leaves the trustee out. The same
    /// frames are what the relay shows every node that links ([`Event::Restarting`] at the
    /// convicting frame).
    pub fn witness(&mut self, frame: &[u8]) -> Result<Event, Failure> {
        if !self.open_pending || self.stopped.is_some() {
            return Err(Failure::Relay(super::RelayFault::Unexpected));
        }
        let event = self.follower.accept(frame);
        if let Ok(SetupMessage::Open(o)) = SetupMessage::parse(frame) {
            if event.is_ok() {
                self.next_attempt = self.next_attempt.max(o.attempt.saturating_add(1));
            }
        }
        if let Err(f @ Failure::TooFewTrustees { .. }) = event {
            self.stopped = Some(f);
        }
        event
    }

    fn n(&self) -> usize {
        self.follower.config.clients.len()
    }

    fn submitted_range(&self) -> core::ops::Range<usize> {
        let n = self.n();
        n * SUBMIT_LEN..n * SUBMIT_LEN + bitmap_len(n)
    }

    fn next_range(&self) -> core::ops::Range<usize> {
        let n = self.n();
        n * SUBMIT_LEN + bitmap_len(n)..n * SUBMIT_LEN + 2 * bitmap_len(n)
    }

    /// The next frame for every node (an `Open` or a collected submission), written into
    /// `out`; `None` when there is none now.
    pub fn poll_broadcast(&mut self, out: &mut [u8]) -> Result<Option<usize>, WireError> {
        if self.stopped.is_some() {
            return Ok(None);
        }
        let config = self.follower.config;
        if self.open_pending {
            let participants = self
                .collected
                .as_ref()
                .get(self.next_range())
                .ok_or(WireError::BufferTooSmall)?;
            let all = ((1u32 << config.trustees.len()) - 1) as u16;
            let open = SetupMessage::Open(Open {
                epoch: config.epoch,
                attempt: self.next_attempt,
                group: config.group,
                trustees: all & !self.follower.convicted & !self.silent,
                clients: self.n() as u16,
                participants,
            });
            let len = open.encode(out)?;
            let frame = out.get(..len).ok_or(WireError::BufferTooSmall)?;
            if let Err(f) = self.follower.accept(frame) {
                self.stopped = Some(f);
                return Ok(None);
            }
            self.open_pending = false;
            self.next_attempt = self.next_attempt.saturating_add(1);
            let range = self.submitted_range();
            if let Some(submitted) = self.collected.as_mut().get_mut(range) {
                submitted.fill(0);
            }
            return Ok(Some(len));
        }
        let Waiting::Submit(client) = self.follower.waiting else {
            return Ok(None);
        };
        let (submitted, awaited) = self.counts();
        if submitted < awaited {
            return Ok(None);
        }
        let at = usize::from(client) * SUBMIT_LEN;
        let frame = self
            .collected
            .as_ref()
            .get(at..at + SUBMIT_LEN)
            .ok_or(WireError::BufferTooSmall)?;
        out.get_mut(..SUBMIT_LEN)
            .ok_or(WireError::BufferTooSmall)?
            .copy_from_slice(frame);
        if let Err(f) = self.follower.accept(frame) {
            self.stopped = Some(f);
            return Ok(None);
        }
        Ok(Some(SUBMIT_LEN))
    }

    /// Submissions collected and awaited in this attempt.
    pub fn counts(&self) -> (usize, usize) {
        let submitted = self
            .collected
            .as_ref()
            .get(self.submitted_range())
            .map_or(0, |b| b.iter().map(|x| x.count_ones() as usize).sum());
        (submitted, self.follower.n())
    }

    /// A client's frame on its link (client `client`).
    pub fn receive_client(&mut self, client: u16, frame: &[u8]) -> Result<(), SubmitRefused> {
        let Ok(SetupMessage::Submit(m)) = SetupMessage::parse(frame) else {
            return Err(SubmitRefused::Unexpected);
        };
        if !matches!(self.follower.waiting, Waiting::Submit(_)) || self.open_pending {
            return Err(SubmitRefused::Unexpected);
        }
        let config = self.follower.config;
        let attempt = self.follower.attempt.unwrap_or(0);
        if m.client != client || m.epoch != config.epoch || m.attempt != attempt {
            return Err(SubmitRefused::Mismatch);
        }
        let range = self.submitted_range();
        let submitted = self.collected.as_ref().get(range.clone()).unwrap_or(&[]);
        if !self.follower.is_participant(client) || bits::test(submitted, usize::from(client)) {
            return Err(SubmitRefused::NotAwaited);
        }
        let key = config.clients.get(usize::from(client));
        let signed = key.is_some_and(|k| super::message::signature_holds(frame, &config.group, k));
        let proved = verify_submission(
            &config.group,
            config.epoch,
            attempt,
            client,
            &m.ciphertext,
            &m.proof,
        );
        if !signed || proved.is_err() {
            return Err(SubmitRefused::Invalid);
        }
        let at = usize::from(client) * SUBMIT_LEN;
        let collected = self.collected.as_mut();
        collected
            .get_mut(at..at + SUBMIT_LEN)
            .ok_or(SubmitRefused::Invalid)?
            .copy_from_slice(frame);
        if let Some(submitted) = collected.get_mut(range) {
            bits::set(submitted, usize::from(client));
        }
        Ok(())
    }

    /// Gives up on the participants that have not submitted: the next `Open` (from
    /// [`Self::poll_broadcast`]) leaves them out. [`Departure::Ignored`] if every
    /// participant submitted, or if the setup is not collecting submissions.
    pub fn drop_missing(&mut self) -> Departure {
        let (submitted, awaited) = self.counts();
        if !matches!(self.follower.waiting, Waiting::Submit(_))
            || self.open_pending
            || self.stopped.is_some()
            || submitted == awaited
        {
            return Departure::Ignored;
        }
        let (from, to) = (self.submitted_range(), self.next_range());
        let collected = self.collected.as_mut();
        let mut copy = [0u8; 1];
        for (i, j) in from.zip(to) {
            if let Some(b) = collected.get(i) {
                copy[0] = *b;
            }
            if let Some(b) = collected.get_mut(j) {
                *b = copy[0];
            }
        }
        self.restart(submitted)
    }

    /// Participant `client`'s link dropped: unless the epoch is established (or the setup
    /// stopped), the setup cannot finish with it (its submission may be in the rows, and its
    /// slot would stay empty all epoch), so the next `Open` leaves it out.
    pub fn leave(&mut self, client: u16) -> Departure {
        if self.stopped.is_some() || self.follower.established() {
            return Departure::Ignored;
        }
        let i = usize::from(client);
        let range = self.next_range();
        let Some(next) = self.collected.as_mut().get_mut(range) else {
            return Departure::Ignored;
        };
        if !bits::test(next, i) {
            return Departure::Ignored;
        }
        bits::clear(next, i);
        let remaining = next.iter().map(|b| b.count_ones() as usize).sum();
        if self.open_pending {
            // The next attempt is not open yet: it simply goes without it.
            return self.check_remaining(remaining);
        }
        self.restart(remaining)
    }

    /// Opens a new attempt over the same participants: a trustee's link dropped and came
    /// back, and it lost the attempt's frames. Counts against the most attempts.
    pub fn reopen(&mut self) -> Departure {
        if self.stopped.is_some() || self.follower.established() || self.open_pending {
            return Departure::Ignored;
        }
        let remaining = self
            .collected
            .as_ref()
            .get(self.next_range())
            .map_or(0, |b| b.iter().map(|x| x.count_ones() as usize).sum());
        self.restart(remaining)
    }

    /// The trustee awaited now (its key, a stage, its record) did not send it within the
    /// shell's bound; before the first `Open`, `trustee` is one that never linked. The next
    /// `Open` leaves it out, on the relay's word (nothing proves silence), when the group's
    /// `min_trustees` is at least 2 and that many remain: nodes accept no more than that.
    /// Otherwise the setup stops ([`Failure::TrusteeSilent`]). Silence does not count
    /// against the most attempts (each trustee is left out at most once).
    pub fn silent(&mut self, trustee: u8) -> Departure {
        if self.stopped.is_some() || self.follower.established() {
            return Departure::Ignored;
        }
        let awaited = match self.waiting() {
            Waiting::Key(j) | Waiting::Chunk(j, _) | Waiting::Seal(j, _) | Waiting::Record(j) => {
                Some(j)
            }
            _ => None,
        };
        let config = self.follower.config;
        let all = ((1u32 << config.trustees.len()) - 1) as u16;
        let before_open = self.follower.attempt.is_none() && self.open_pending;
        let bit = 1u16.checked_shl(u32::from(trustee)).unwrap_or(0);
        if (!before_open && awaited != Some(trustee)) || bit & all == 0 {
            return Departure::Ignored;
        }
        let left = all & !self.follower.convicted & !self.silent & !bit;
        let remaining = left.count_ones() as u8;
        let minimum = config.min_trustees as u8;
        if minimum < 2 || remaining < minimum {
            let f = Failure::TrusteeSilent {
                trustee,
                remaining,
                minimum,
            };
            self.stopped = Some(f);
            return Departure::Stop(f);
        }
        self.silent |= bit;
        self.open_pending = true;
        let participants = self
            .collected
            .as_ref()
            .get(self.next_range())
            .map_or(0, |b| b.iter().map(|x| x.count_ones() as usize).sum());
        Departure::Restart {
            remaining: participants,
        }
    }

    /// Trustees left out as silent so far (bit `j`: trustee `j`).
    pub fn silenced(&self) -> u16 {
        self.silent
    }

    fn check_remaining(&mut self, remaining: usize) -> Departure {
        if remaining < self.min_clients || remaining == 0 {
            let f = Failure::TooFewClients {
                remaining: remaining as u16,
                minimum: self.min_clients as u16,
            };
            self.stopped = Some(f);
            return Departure::Stop(f);
        }
        Departure::Restart { remaining }
    }

    /// A new attempt over the next participants (`remaining` of them), if the limits allow.
    fn restart(&mut self, remaining: usize) -> Departure {
        if let Departure::Stop(f) = self.check_remaining(remaining) {
            return Departure::Stop(f);
        }
        if self.next_attempt >= self.max_attempts {
            let f = Failure::TooManyAttempts {
                attempts: self.next_attempt,
            };
            self.stopped = Some(f);
            return Departure::Stop(f);
        }
        self.open_pending = true;
        Departure::Restart { remaining }
    }

    /// A trustee's frame on its link (trustee `trustee`).
    pub fn receive_trustee(&mut self, trustee: u8, frame: &[u8]) -> RelayStep {
        if let Some(f) = self.stopped {
            return RelayStep::Refuse(f);
        }
        let author = match SetupMessage::parse(frame) {
            Ok(SetupMessage::Key(m)) => m.trustee,
            Ok(SetupMessage::Chunk(m)) => m.trustee,
            Ok(SetupMessage::Seal(m)) => m.trustee,
            Ok(SetupMessage::Record(m)) => m.trustee,
            Ok(_) => trustee.wrapping_add(1),
            Err(e) => return RelayStep::Refuse(Failure::Relay(super::RelayFault::Malformed(e))),
        };
        if author != trustee || self.open_pending {
            return RelayStep::Refuse(Failure::Relay(super::RelayFault::Unexpected));
        }
        match self.follower.accept(frame) {
            Ok(Event::Restarting(conviction)) => {
                self.open_pending = true;
                RelayStep::ForwardAndRestart(conviction)
            }
            Ok(Event::Established) => RelayStep::ForwardEstablished,
            Ok(_) => RelayStep::Forward,
            Err(f @ Failure::TooFewTrustees { .. }) | Err(f @ Failure::Disagreement { .. }) => {
                self.stopped = Some(f);
                RelayStep::ForwardAndStop(f)
            }
            Err(f) => RelayStep::Refuse(f),
        }
    }

    /// The current attempt's participants (those that get a slot), a bitmap over the
    /// clients, bit `i` = client `i`, least significant first.
    pub fn participants(&self) -> &[u8] {
        self.follower.participants()
    }

    /// The trustees of the attempt opened last (bit `j`: trustee `j`; none before the
    /// first): every trustee not convicted.
    pub fn trustees(&self) -> u16 {
        self.follower.attempt.map_or(0, |_| self.follower.trustees)
    }

    /// The attempt opened last, if any.
    pub fn attempt(&self) -> Option<u8> {
        self.follower.attempt
    }

    /// What the setup waits for.
    pub fn waiting(&self) -> Waiting {
        if self.open_pending {
            Waiting::Open
        } else {
            self.follower.waiting
        }
    }

    /// How the setup stopped, if it did.
    pub fn failure(&self) -> Option<Failure> {
        self.stopped
    }

    /// The established epoch, once every record is in.
    pub fn established(&self) -> Option<Established> {
        self.follower.epoch()
    }

    /// The last convicted trustee's signed message (its `Key` or `Seal`), empty before any
    /// conviction.
    pub fn evidence(&self) -> &[u8] {
        self.follower.evidence()
    }

    /// The pseudonym keys in slot order (once the list is ready).
    pub fn pseudonyms(&self) -> impl Iterator<Item = &[u8]> {
        self.follower.pseudonyms()
    }
}
