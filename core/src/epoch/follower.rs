//! The verifier every node runs over the relay's setup stream: the relay, each trustee and
//! each client feed it the same messages, in the same order, and it checks every signature,
//! every proof and every transcript digest.
//!
//! Order of an attempt: `Open`; each trustee's `Key` (trustee order); each participant's
//! `Submit` (client order); each trustee's shuffle `Chunk`s and `Seal` (trustee order); each
//! trustee's shares `Chunk`s and `Seal`; each trustee's `Record`. Anything else is the
//! relay's fault (it forwards in this order; drops, duplicates and reorders show up here).
//!
//! The transcript hash `T` is SHA-256 over `"dissent-rs v3 setup transcript"`, then each
//! message but `Chunk`s and `Record`s as `length (u32 BE) ‖ bytes`, and each stage's data
//! (the concatenation of its chunks' data). A `Seal` carries `T` after its stage's data; a
//! `Record` carries `T` after the last `Seal`, and the list hash
//! `SHA-256("dissent-rs v3 pseudonym list" ‖ P_0 ‖ … ‖ P_(N−1))`.
//!
//! A failed check with a valid signature over the transcript this node holds convicts the
//! signer; anything else the relay could have caused names the relay. A relay fault leaves
//! the follower unchanged (the relay role refuses such a frame from a trustee and stays
//! able to go on); the client and trustee roles treat it as the end.

use curve25519_dalek::ristretto::RistrettoPoint;
use curve25519_dalek::traits::{Identity, IsIdentity};
use sha2::{Digest, Sha256};

use core::task::Poll;

use super::message::{SetupMessage, Stage, MAX_SIGNED_LEN, SEAL_LEN};
use super::outcome::{Conviction, FailedCheck, Failure, RelayFault};
use super::proof::{verify_knowledge, verify_shares, verify_submission, Context, SharesCheck};
use super::{SetupConfig, SetupStorage, Waiting};
use crate::bits;
use crate::ristretto::elgamal::{Ciphertext, CIPHERTEXT_LEN};
use crate::ristretto::keys::PublicKey;
use crate::ristretto::shuffle;
use crate::MAX_TRUSTEES;

/// What a message did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// Accepted; the setup goes on.
    Progress,
    /// A new attempt opened.
    Opened,
    /// Every trustee's key is in: clients submit now.
    KeysComplete,
    /// The pseudonym list is decrypted (records follow).
    ListReady,
    /// A trustee was convicted; the relay restarts without it.
    Restarting(Conviction),
    /// Every trustee signed the record: the epoch is established.
    Established,
}

/// A check accepted but not yet done (bounded mode: [`Follower::begin`]).
// No allocator: the state lives inline, in the caller's storage.
#[allow(clippy::large_enum_variant)]
enum Pending {
    Nothing,
    /// Trustee `trustee`'s shuffle, its `Seal` kept for the conviction.
    Shuffle {
        trustee: u8,
        verifier: shuffle::Verifier,
        seal: [u8; SEAL_LEN],
        seal_len: usize,
    },
    /// Trustee `trustee`'s decryption shares, its `Seal` kept for the conviction.
    Shares {
        trustee: u8,
        check: SharesCheck,
        seal: [u8; SEAL_LEN],
        seal_len: usize,
    },
}

/// Compared with `matches!`: a derived `PartialEq` would compare the `Failure` too (its
/// code took 372 B of a device's flash).
#[derive(Clone, Copy)]
enum Phase {
    Running,
    Restarting,
    Established,
    Failed(Failure),
}

pub(crate) struct Follower<'c, B> {
    pub(crate) config: SetupConfig<'c>,
    pub(crate) storage: SetupStorage<B>,
    pub(crate) attempt: Option<u8>,
    pub(crate) trustees: u16,
    pub(crate) convicted: u16,
    /// Trustees the relay left out without a conviction (silent, on its word).
    pub(crate) silenced: u16,
    pub(crate) participants: usize,
    keys: [Option<PublicKey>; MAX_TRUSTEES],
    pub(crate) joint: Option<PublicKey>,
    pub(crate) waiting: Waiting,
    pub(crate) hash: Sha256,
    received: usize,
    pub(crate) list: [u8; 32],
    pub(crate) transcript: [u8; 32],
    phase: Phase,
    evidence: [u8; MAX_SIGNED_LEN],
    evidence_len: usize,
    /// A trustee's own index: its own stages are not re-verified.
    own: Option<u8>,
    pending: Pending,
    /// SHA-256 of the current attempt's `Open`: the same `Open` again is a replay of it.
    open_hash: [u8; 32],
    /// The current attempt is a replay of one this node began before: it is followed and
    /// checked, but the node does not take part in it again.
    pub(crate) replay: bool,
}

fn stage_len(stage: Stage, n: usize) -> usize {
    match stage {
        Stage::Shuffle => shuffle::rows_len(n, 1) + shuffle::proof_len(n, 1),
        Stage::Shares => super::proof::shares_len(n),
    }
}

/// The hash of the pseudonym list, keys in slot order (what every trustee's `Record` signs).
pub(crate) fn list_hash(keys: &mut dyn Iterator<Item = &[u8]>) -> [u8; 32] {
    let mut hash = Sha256::new();
    hash.update(b"dissent-rs v3 pseudonym list");
    for key in keys {
        hash.update(key);
    }
    hash.finalize().into()
}

fn absorb(hash: &mut Sha256, frame: &[u8]) {
    hash.update((frame.len() as u32).to_be_bytes());
    hash.update(frame);
}

impl<'c, B: AsRef<[u8]> + AsMut<[u8]>> Follower<'c, B> {
    pub(crate) fn new(config: SetupConfig<'c>, storage: SetupStorage<B>, own: Option<u8>) -> Self {
        Follower {
            config,
            storage,
            attempt: None,
            trustees: 0,
            convicted: 0,
            silenced: 0,
            participants: 0,
            keys: [None; MAX_TRUSTEES],
            joint: None,
            waiting: Waiting::Open,
            hash: Sha256::new(),
            received: 0,
            list: [0; 32],
            transcript: [0; 32],
            phase: Phase::Running,
            evidence: [0; MAX_SIGNED_LEN],
            evidence_len: 0,
            own,
            pending: Pending::Nothing,
            open_hash: [0; 32],
            replay: false,
        }
    }

    /// Whether `frame` belongs to an attempt before the current one (a replay of an attempt
    /// this node has gone past, which it ignores: as a dropped frame, it changes nothing),
    /// or is the current attempt's `Open` again after this node convicted in it.
    pub(crate) fn is_stale(&self, frame: &[u8]) -> bool {
        let Ok(m) = SetupMessage::parse(frame) else {
            return false;
        };
        let (epoch, attempt) = m.epoch_attempt();
        let Some(current) = self.attempt else {
            return false;
        };
        if epoch != self.config.epoch || matches!(self.phase, Phase::Established) {
            return false;
        }
        if attempt < current {
            return true;
        }
        // The attempt this node convicted in, shown again (the relay shows every node that
        // links the attempts that convicted): it has drawn its conclusion already.
        attempt == current
            && matches!(self.phase, Phase::Restarting)
            && matches!(m, SetupMessage::Open(_))
            && self.open_hash == <[u8; 32]>::from(Sha256::digest(frame))
    }

    pub(crate) fn failure(&self) -> Option<Failure> {
        match self.phase {
            Phase::Failed(f) => Some(f),
            _ => None,
        }
    }

    pub(crate) fn established(&self) -> bool {
        matches!(self.phase, Phase::Established)
    }

    pub(crate) fn fail(&mut self, failure: Failure) -> Failure {
        self.phase = Phase::Failed(failure);
        failure
    }

    fn all_trustees(&self) -> u16 {
        ((1u32 << self.config.trustees.len()) - 1) as u16
    }

    pub(crate) fn n(&self) -> usize {
        self.participants
    }

    /// The current attempt's participants, a bitmap over the clients.
    pub(crate) fn participants(&self) -> &[u8] {
        let len = bits::bitmap_len(self.config.clients.len());
        self.storage.participants.as_ref().get(..len).unwrap_or(&[])
    }

    pub(crate) fn is_participant(&self, client: u16) -> bool {
        bits::test(self.participants(), usize::from(client))
    }

    fn next_trustee(&self, after: Option<u8>) -> Option<u8> {
        let start = after.map_or(0, |a| a + 1);
        (start..MAX_TRUSTEES as u8).find(|j| self.trustees & (1 << j) != 0)
    }

    fn next_participant(&self, after: Option<u16>) -> Option<u16> {
        let start = after.map_or(0, |a| usize::from(a) + 1);
        let bitmap = self.participants();
        (start..self.config.clients.len())
            .find(|&i| bits::test(bitmap, i))
            .and_then(|i| u16::try_from(i).ok())
    }

    fn unexpected() -> Failure {
        Failure::Relay(RelayFault::Unexpected)
    }

    fn check_signature(&self, frame: &[u8], index: u16, client: bool) -> Result<(), Failure> {
        let key = if client {
            self.config.clients.get(usize::from(index))
        } else {
            self.config.trustees.get(usize::from(index))
        };
        match key {
            Some(key) if super::message::signature_holds(frame, &self.config.group, key) => Ok(()),
            _ => Err(Failure::Relay(RelayFault::BadSignature { index, client })),
        }
    }

    /// Checks the epoch and attempt of a message other than `Open`.
    fn current(&self, m: &SetupMessage<'_>) -> Result<u8, Failure> {
        let (epoch, attempt) = m.epoch_attempt();
        match self.attempt {
            Some(a) if a == attempt && epoch == self.config.epoch => Ok(a),
            _ => Err(Self::unexpected()),
        }
    }

    /// Convicts `trustee`; the relay restarts without it, or the setup stops.
    fn convict(&mut self, trustee: u8, check: FailedCheck, frame: &[u8]) -> Result<Event, Failure> {
        let attempt = self.attempt.unwrap_or(0);
        let conviction = Conviction {
            trustee,
            attempt,
            check,
        };
        self.evidence = [0; MAX_SIGNED_LEN];
        for (dst, src) in self.evidence.iter_mut().zip(frame) {
            *dst = *src;
        }
        self.evidence_len = frame.len().min(MAX_SIGNED_LEN);
        self.convicted |= 1 << trustee;
        let remaining = (self.all_trustees() & !self.convicted & !self.silenced).count_ones() as u8;
        let minimum = self.config.min_trustees as u8;
        if remaining < minimum {
            return Err(self.fail(Failure::TooFewTrustees {
                conviction,
                remaining,
                minimum,
            }));
        }
        self.phase = Phase::Restarting;
        self.waiting = Waiting::Open;
        Ok(Event::Restarting(conviction))
    }

    /// Feeds one message from the relay's stream, with every check it calls for.
    pub(crate) fn accept(&mut self, frame: &[u8]) -> Result<Event, Failure> {
        self.finish()?;
        match self.accept_frame(frame, false) {
            Poll::Ready(result) => result,
            Poll::Pending => self.finish(),
        }
    }

    /// Feeds one message; a proof of shuffle it calls for is checked in bounded steps
    /// ([`Follower::work`], `Poll::Pending` until then). Work left from an earlier message
    /// is finished first, at once.
    pub(crate) fn begin(&mut self, frame: &[u8]) -> Poll<Result<Event, Failure>> {
        if let Err(f) = self.finish() {
            return Poll::Ready(Err(f));
        }
        self.accept_frame(frame, true)
    }

    /// Runs the pending check to its end.
    fn finish(&mut self) -> Result<Event, Failure> {
        loop {
            if let Poll::Ready(result) = self.work() {
                return result;
            }
        }
    }

    /// One bounded step of the pending check (at most [`shuffle::STEP_ROWS`] rows of a
    /// proof of shuffle, or twice as many decryption shares); the message's event once it is
    /// done (`Event::Progress` when nothing is pending).
    pub(crate) fn work(&mut self) -> Poll<Result<Event, Failure>> {
        let n = self.participants;
        let attempt = self.attempt.unwrap_or(0);
        let (group, epoch) = (self.config.group, self.config.epoch);
        let rows = self.storage.rows.as_ref();
        let stage = self.storage.stage.as_ref();
        let (j, seal, seal_len, stepped) = match &mut self.pending {
            Pending::Nothing => return Poll::Ready(Ok(Event::Progress)),
            Pending::Shuffle {
                trustee,
                verifier,
                seal,
                seal_len,
            } => {
                let rows_len = shuffle::rows_len(n, 1);
                let total = stage_len(Stage::Shuffle, n);
                let inputs = rows.get(..rows_len).unwrap_or(&[]);
                let stage = stage.get(..total).unwrap_or(&[]);
                let (outputs, proof) = stage.split_at(rows_len.min(stage.len()));
                let Some(joint) = self.joint else {
                    self.pending = Pending::Nothing;
                    return Poll::Ready(Err(Self::unexpected()));
                };
                let stepped = match verifier.step(&joint, inputs, outputs, proof) {
                    Ok(Poll::Pending) => return Poll::Pending,
                    Ok(Poll::Ready(())) => Ok(Stage::Shuffle),
                    Err(e) => Err(FailedCheck::Shuffle(e)),
                };
                (*trustee, *seal, *seal_len, stepped)
            }
            Pending::Shares {
                trustee,
                check,
                seal,
                seal_len,
            } => {
                let key = self.keys.get(usize::from(*trustee)).copied().flatten();
                let Some(key) = key else {
                    self.pending = Pending::Nothing;
                    return Poll::Ready(Err(Self::unexpected()));
                };
                let context = Context::shares(&group, epoch, attempt, *trustee);
                let stepped = match check.step(&context, &key, rows, n, stage) {
                    Ok(Poll::Pending) => return Poll::Pending,
                    Ok(Poll::Ready(())) => Ok(Stage::Shares),
                    Err(e) => Err(FailedCheck::Shares(e)),
                };
                (*trustee, *seal, *seal_len, stepped)
            }
        };
        self.pending = Pending::Nothing;
        let seal = seal.get(..seal_len).unwrap_or(&[]);
        Poll::Ready(match stepped {
            Ok(Stage::Shuffle) => self.shuffle_verified(j, seal),
            Ok(Stage::Shares) => self.shares_verified(j, seal),
            Err(check) => self.convict(j, check, seal),
        })
    }

    fn accept_frame(&mut self, frame: &[u8], bounded: bool) -> Poll<Result<Event, Failure>> {
        if let Phase::Failed(f) = self.phase {
            return Poll::Ready(Err(f));
        }
        if bounded {
            if let Some(started) = self.start_check(frame) {
                return started;
            }
        }
        Poll::Ready(self.accept_now(frame))
    }

    /// In bounded mode, a valid `Seal` of another trustee's stage starts its check.
    ///
    /// Not inlined, nor are the steps below that take a message: each keeps its locals (a
    /// proof's checker, the one-call checks' state) in a frame of its own, so the signature
    /// check every message goes through runs beneath small frames (on a device, 4.2 KiB
    /// less stack than with them inlined into one).
    #[inline(never)]
    fn start_check(&mut self, frame: &[u8]) -> Option<Poll<Result<Event, Failure>>> {
        let Ok(SetupMessage::Seal(m)) = SetupMessage::parse(frame) else {
            return None;
        };
        let Waiting::Seal(j, stage) = self.waiting else {
            return None;
        };
        if !matches!(self.phase, Phase::Running)
            || m.trustee != j
            || m.stage != stage
            || self.own == Some(j)
            || self.current(&SetupMessage::Seal(m)).is_err()
        {
            return None;
        }
        if let Err(f) = self.check_signature(frame, u16::from(j), false) {
            return Some(Poll::Ready(Err(f)));
        }
        let digest: [u8; 32] = self.hash.clone().finalize().into();
        if digest != m.digest {
            return Some(Poll::Ready(Err(Failure::Relay(
                RelayFault::TranscriptMismatch { trustee: j },
            ))));
        }
        self.pend_check(j, stage, frame)
    }

    /// Starts the bounded check of trustee `j`'s `stage`, sealed by `frame`, whose signature
    /// and digest hold. Not inlined: its checker, built here, would otherwise sit in the
    /// frame beneath the signature check's.
    #[inline(never)]
    fn pend_check(
        &mut self,
        j: u8,
        stage: Stage,
        frame: &[u8],
    ) -> Option<Poll<Result<Event, Failure>>> {
        let attempt = self.attempt.unwrap_or(0);
        let n = self.participants;
        let mut seal = [0u8; SEAL_LEN];
        for (dst, src) in seal.iter_mut().zip(frame) {
            *dst = *src;
        }
        let seal_len = frame.len().min(SEAL_LEN);
        if stage == Stage::Shares {
            let key = self.keys.get(usize::from(j)).copied().flatten()?;
            let context = Context::shares(&self.config.group, self.config.epoch, attempt, j);
            let (rows, shares) = (self.storage.rows.as_ref(), self.storage.stage.as_ref());
            let check = match SharesCheck::new(&context, &key, rows, n, shares) {
                Ok(check) => check,
                Err(e) => return Some(Poll::Ready(self.convict(j, FailedCheck::Shares(e), frame))),
            };
            self.pending = Pending::Shares {
                trustee: j,
                check,
                seal,
                seal_len,
            };
            return Some(Poll::Pending);
        }
        let rows_len = shuffle::rows_len(n, 1);
        let total = stage_len(Stage::Shuffle, n);
        let joint = self.joint?;
        let context = Context::shuffle(&self.config.group, self.config.epoch, attempt, j);
        let inputs = self.storage.rows.as_ref().get(..rows_len)?;
        let stage = self.storage.stage.as_ref().get(..total)?;
        let (outputs, proof) = stage.split_at(rows_len.min(stage.len()));
        let verifier =
            match shuffle::Verifier::new(context.as_bytes(), &joint, 1, inputs, outputs, proof) {
                Ok(v) => v,
                Err(e) => {
                    return Some(Poll::Ready(self.convict(j, FailedCheck::Shuffle(e), frame)))
                }
            };
        self.pending = Pending::Shuffle {
            trustee: j,
            verifier,
            seal,
            seal_len,
        };
        Some(Poll::Pending)
    }

    /// Takes a message at once, with every check it calls for (not inlined: see
    /// [`Follower::start_check`]).
    #[inline(never)]
    fn accept_now(&mut self, frame: &[u8]) -> Result<Event, Failure> {
        let message =
            SetupMessage::parse(frame).map_err(|e| Failure::Relay(RelayFault::Malformed(e)))?;
        if let SetupMessage::Open(open) = message {
            return self.open(frame, &open);
        }
        if !matches!(self.phase, Phase::Running) {
            return Err(Self::unexpected());
        }
        let attempt = self.current(&message)?;
        match (message, self.waiting) {
            (SetupMessage::Key(m), Waiting::Key(j)) if m.trustee == j => {
                self.check_signature(frame, u16::from(j), false)?;
                let context = Context::key(&self.config.group, self.config.epoch, attempt, j);
                let key = match PublicKey::from_bytes(&m.share) {
                    Ok(key) => key,
                    Err(e) => return self.convict(j, FailedCheck::KeyProof(e.into()), frame),
                };
                if let Err(e) = verify_knowledge(&context, &key, &m.proof) {
                    return self.convict(j, FailedCheck::KeyProof(e), frame);
                }
                if let Some(slot) = self.keys.get_mut(usize::from(j)) {
                    *slot = Some(key);
                }
                absorb(&mut self.hash, frame);
                match self.next_trustee(Some(j)) {
                    Some(next) => {
                        self.waiting = Waiting::Key(next);
                        Ok(Event::Progress)
                    }
                    None => {
                        let sum = self
                            .keys
                            .iter()
                            .flatten()
                            .fold(RistrettoPoint::identity(), |acc, k| acc + k.point());
                        if sum.is_identity() {
                            return self.convict(j, FailedCheck::JointKey, frame);
                        }
                        self.joint = Some(PublicKey::from_point(sum));
                        self.waiting = match self.next_participant(None) {
                            Some(c) => Waiting::Submit(c),
                            None => return Err(Self::unexpected()),
                        };
                        Ok(Event::KeysComplete)
                    }
                }
            }
            (SetupMessage::Submit(m), Waiting::Submit(c)) if m.client == c => {
                self.check_signature(frame, c, true)?;
                let bad = Failure::Relay(RelayFault::BadSubmission { client: c });
                verify_submission(
                    &self.config.group,
                    self.config.epoch,
                    attempt,
                    c,
                    &m.ciphertext,
                    &m.proof,
                )
                .map_err(|_| bad)?;
                let row = bits::Bits::new_checked(self.participants(), self.config.clients.len())
                    .map(|b| b.iter().take_while(|&i| i < usize::from(c)).count())
                    .unwrap_or(0);
                let start = row * CIPHERTEXT_LEN;
                self.storage
                    .rows
                    .as_mut()
                    .get_mut(start..start + CIPHERTEXT_LEN)
                    .ok_or(bad)?
                    .copy_from_slice(&m.ciphertext);
                absorb(&mut self.hash, frame);
                self.waiting = match (self.next_participant(Some(c)), self.next_trustee(None)) {
                    (Some(next), _) => Waiting::Submit(next),
                    (None, Some(t)) => Waiting::Chunk(t, Stage::Shuffle),
                    (None, None) => return Err(Self::unexpected()),
                };
                self.received = 0;
                Ok(Event::Progress)
            }
            (SetupMessage::Chunk(m), Waiting::Chunk(j, stage))
                if m.trustee == j && m.stage == stage =>
            {
                let total = stage_len(stage, self.n());
                let offset = m.offset as usize;
                let end = offset.checked_add(m.data.len()).filter(|&e| e <= total);
                let (true, Some(end)) = (offset == self.received, end) else {
                    return Err(Failure::Relay(RelayFault::Chunk));
                };
                self.storage
                    .stage
                    .as_mut()
                    .get_mut(offset..end)
                    .ok_or(Failure::Relay(RelayFault::Chunk))?
                    .copy_from_slice(m.data);
                self.hash.update(m.data);
                self.received = end;
                if end == total {
                    self.waiting = Waiting::Seal(j, stage);
                }
                Ok(Event::Progress)
            }
            (SetupMessage::Seal(m), Waiting::Seal(j, stage))
                if m.trustee == j && m.stage == stage =>
            {
                self.check_signature(frame, u16::from(j), false)?;
                let digest: [u8; 32] = self.hash.clone().finalize().into();
                if digest != m.digest {
                    return Err(Failure::Relay(RelayFault::TranscriptMismatch {
                        trustee: j,
                    }));
                }
                match stage {
                    Stage::Shuffle => self.seal_shuffle(j, attempt, frame),
                    Stage::Shares => self.seal_shares(j, frame),
                }
            }
            (SetupMessage::Record(m), Waiting::Record(j)) if m.trustee == j => {
                self.check_signature(frame, u16::from(j), false)?;
                if m.transcript != self.transcript || m.list != self.list {
                    return Err(self.fail(Failure::Disagreement { trustee: j }));
                }
                match self.next_trustee(Some(j)) {
                    Some(next) => {
                        self.waiting = Waiting::Record(next);
                        Ok(Event::Progress)
                    }
                    None => {
                        self.waiting = Waiting::Nothing;
                        self.phase = Phase::Established;
                        Ok(Event::Established)
                    }
                }
            }
            _ => Err(Self::unexpected()),
        }
    }

    /// Takes an `Open` (not inlined: see [`Follower::start_check`]).
    #[inline(never)]
    fn open(&mut self, frame: &[u8], open: &super::message::Open<'_>) -> Result<Event, Failure> {
        let bad = Failure::Relay(RelayFault::BadOpen);
        let hash: [u8; 32] = Sha256::digest(frame).into();
        // The current attempt's `Open` again: the relay replays the attempt (to a node that
        // links again, or after it restarted). The node follows it anew but takes no part.
        let replay = self.attempt == Some(open.attempt) && hash == self.open_hash;
        let later = self.attempt.is_none_or(|a| open.attempt > a) || replay;
        let expected = self.all_trustees() & !self.convicted;
        if open.epoch != self.config.epoch
            || open.group != self.config.group
            || usize::from(open.clients) != self.config.clients.len()
            || !later
            || matches!(self.phase, Phase::Established)
        {
            return Err(bad);
        }
        let me = self.own.map_or(0, |j| 1u16 << j);
        if me & self.convicted != 0 {
            // This trustee checked its own stage as shown to it (a replay) and it failed.
            return Err(Failure::Relay(RelayFault::Excluded));
        }
        // Trustees left out without a conviction: silent, on the relay's word. Only in a
        // group whose minimum is at least 2 and while it remains, never one taken back.
        let silenced = expected & !open.trustees;
        let remaining = open.trustees.count_ones() as usize;
        let silence_ok = self.config.min_trustees >= 2 && remaining >= self.config.min_trustees;
        if open.trustees & !(expected & !self.silenced) != 0 || (silenced != 0 && !silence_ok) {
            // Left out without this node's own conviction: the others convicted it (a
            // trustee does not re-verify its own stages), or the relay excludes it.
            if me != 0 && open.trustees == expected & !me {
                return Err(Failure::Relay(RelayFault::Excluded));
            }
            return Err(bad);
        }
        if silenced & me != 0 {
            return Err(Failure::Relay(RelayFault::Excluded));
        }
        let participants = bits::Bits::new_checked(open.participants, self.config.clients.len())
            .map_err(|_| bad)?
            .count();
        if participants == 0 {
            return Err(bad);
        }
        self.storage
            .participants
            .as_mut()
            .get_mut(..open.participants.len())
            .ok_or(bad)?
            .copy_from_slice(open.participants);
        self.attempt = Some(open.attempt);
        self.silenced = silenced;
        self.open_hash = hash;
        self.replay = replay;
        self.pending = Pending::Nothing;
        self.trustees = open.trustees;
        self.participants = participants;
        self.keys = [None; MAX_TRUSTEES];
        self.joint = None;
        self.received = 0;
        self.hash = Sha256::new();
        self.hash.update(b"dissent-rs v3 setup transcript");
        absorb(&mut self.hash, frame);
        self.phase = Phase::Running;
        self.waiting = self
            .next_trustee(None)
            .map_or(Waiting::Nothing, Waiting::Key);
        Ok(Event::Opened)
    }

    /// Checks a sealed shuffle in one call (not inlined: see [`Follower::start_check`]).
    #[inline(never)]
    fn seal_shuffle(&mut self, j: u8, attempt: u8, frame: &[u8]) -> Result<Event, Failure> {
        let n = self.n();
        let rows_len = shuffle::rows_len(n, 1);
        let total = stage_len(Stage::Shuffle, n);
        let joint = self.joint.ok_or(Self::unexpected())?;
        let stage = self
            .storage
            .stage
            .as_ref()
            .get(..total)
            .ok_or(Self::unexpected())?;
        let (outputs, proof) = stage.split_at(rows_len.min(stage.len()));
        if self.own != Some(j) {
            let context = Context::shuffle(&self.config.group, self.config.epoch, attempt, j);
            let inputs = self
                .storage
                .rows
                .as_ref()
                .get(..rows_len)
                .ok_or(Self::unexpected())?;
            if let Err(e) = shuffle::verify(context.as_bytes(), &joint, 1, inputs, outputs, proof) {
                return self.convict(j, FailedCheck::Shuffle(e), frame);
            }
        }
        self.shuffle_verified(j, frame)
    }

    /// Trustee `j`'s shuffle holds: its outputs become the rows.
    fn shuffle_verified(&mut self, j: u8, frame: &[u8]) -> Result<Event, Failure> {
        let rows_len = shuffle::rows_len(self.n(), 1);
        let (rows, stage) = (self.storage.rows.as_mut(), self.storage.stage.as_ref());
        if let (Some(dst), Some(src)) = (rows.get_mut(..rows_len), stage.get(..rows_len)) {
            dst.copy_from_slice(src);
        }
        absorb(&mut self.hash, frame);
        self.received = 0;
        self.waiting = match (self.next_trustee(Some(j)), self.next_trustee(None)) {
            (Some(next), _) => Waiting::Chunk(next, Stage::Shuffle),
            (None, Some(first)) => Waiting::Chunk(first, Stage::Shares),
            (None, None) => return Err(Self::unexpected()),
        };
        Ok(Event::Progress)
    }

    /// Checks sealed decryption shares in one call (not inlined: see
    /// [`Follower::start_check`]).
    #[inline(never)]
    fn seal_shares(&mut self, j: u8, frame: &[u8]) -> Result<Event, Failure> {
        let n = self.n();
        let key = self
            .keys
            .get(usize::from(j))
            .copied()
            .flatten()
            .ok_or(Self::unexpected())?;
        let attempt = self.attempt.unwrap_or(0);
        if self.own != Some(j) {
            let context = Context::shares(&self.config.group, self.config.epoch, attempt, j);
            let (rows, shares) = (self.storage.rows.as_ref(), self.storage.stage.as_ref());
            if let Err(error) = verify_shares(&context, &key, rows, n, shares) {
                return self.convict(j, FailedCheck::Shares(error), frame);
            }
        }
        self.shares_verified(j, frame)
    }

    /// Trustee `j`'s shares hold: they are stripped from the rows.
    fn shares_verified(&mut self, j: u8, frame: &[u8]) -> Result<Event, Failure> {
        let n = self.n();
        let (rows, shares) = (self.storage.rows.as_mut(), self.storage.stage.as_ref());
        for (ct, d) in rows
            .chunks_exact_mut(CIPHERTEXT_LEN)
            .zip(shares.chunks_exact(32))
            .take(n)
        {
            let d = crate::ristretto::decode_point_at(d).ok();
            if let (Ok(c), Some(d)) = (Ciphertext::from_slice(ct), d) {
                ct.copy_from_slice(&c.strip(&d).to_bytes());
            }
        }
        absorb(&mut self.hash, frame);
        self.received = 0;
        if let Some(next) = self.next_trustee(Some(j)) {
            self.waiting = Waiting::Chunk(next, Stage::Shares);
            return Ok(Event::Progress);
        }
        self.transcript = self.hash.clone().finalize().into();
        let list = list_hash(&mut self.pseudonyms());
        self.list = list;
        self.waiting = self
            .next_trustee(None)
            .map_or(Waiting::Nothing, Waiting::Record);
        Ok(Event::ListReady)
    }

    /// The pseudonym keys in slot order (meaningful once the list is ready).
    pub(crate) fn pseudonyms(&self) -> impl Iterator<Item = &[u8]> {
        self.storage
            .rows
            .as_ref()
            .chunks_exact(CIPHERTEXT_LEN)
            .take(self.n())
            .filter_map(|row| row.get(..32))
    }

    /// The signed message of the last conviction (empty before any).
    pub(crate) fn evidence(&self) -> &[u8] {
        self.evidence.get(..self.evidence_len).unwrap_or(&[])
    }

    /// The transcript hash once `extra` (a stage's data) is appended.
    pub(crate) fn digest_with(&self, extra: &[u8]) -> [u8; 32] {
        let mut h = self.hash.clone();
        h.update(extra);
        h.finalize().into()
    }
}

impl<B: AsRef<[u8]> + AsMut<[u8]>> Follower<'_, B> {
    /// The established epoch, once every record is in.
    pub(crate) fn epoch(&self) -> Option<super::Established> {
        if !self.established() {
            return None;
        }
        Some(super::Established {
            epoch: self.config.epoch,
            attempt: self.attempt.unwrap_or(0),
            transcript: self.transcript,
            list: self.list,
            slots: self.n(),
            trustees: self.trustees,
        })
    }
}
