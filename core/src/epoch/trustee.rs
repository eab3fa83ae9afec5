//! The trustee's side of the setup: a key with a proof of knowledge, a shuffle with its
//! proof, decryption shares with DLEQ proofs and the signed epoch record, each in its turn,
//! after verifying everything before it (`follower.rs`).
//!
//! Owns what a trustee sends and when; the checks are the follower's.

use core::task::Poll;

use rand_core::CryptoRngCore;

use super::follower::{Event, Follower};
use super::identity::IdentitySigner;
use super::message::{self, Chunk, Key, Record, Seal, SetupMessage, Stage};
use super::proof::{prove_knowledge, shares_len, Context, SharesProof};
use super::{Established, Failure, SetupConfig, SetupStorage, Waiting};
use crate::error::ConfigError;
#[cfg(feature = "testkit")]
use crate::ristretto::elgamal::{Ciphertext, CIPHERTEXT_LEN};
use crate::ristretto::keys::SecretKey;
use crate::ristretto::shuffle::{self, Prover, ProverSlot};
use crate::wire::WireError;

/// A dishonest trustee, for tests: what it does to its output after proving honestly.
#[cfg(feature = "testkit")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cheat {
    /// Swaps output rows 0 and 1.
    Swap,
    /// Replaces output row 0 with an encryption of a key of its own.
    Replace,
    /// Copies output row 0 over row 1.
    Duplicate,
    /// Re-encrypts output row 0 wrongly (adds `G` to its first component).
    Reencryption,
    /// Sends a wrong decryption share for row 0 (with a proof for the true ones).
    Share,
    /// Sends a key whose proof of knowledge is for another key.
    KeyProof,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Out {
    Nothing,
    Key {
        share: [u8; 32],
        proof: [u8; 64],
    },
    Chunks {
        stage: Stage,
        offset: usize,
        digest: [u8; 32],
    },
    Seal {
        stage: Stage,
        digest: [u8; 32],
    },
    Record,
}

/// The work a frame started that is not done yet.
// No allocator: the state lives inline, in the caller's storage.
#[allow(clippy::large_enum_variant)]
enum Work {
    Nothing,
    /// The follower checks a proof of shuffle.
    Checking,
    /// This trustee shuffles and proves.
    Proving(Prover),
    /// This trustee makes its decryption shares.
    Sharing(SharesProof),
}

/// One trustee's setup.
pub struct SetupTrustee<'c, B, S, I> {
    follower: Follower<'c, B>,
    work: Work,
    /// The event of the frame whose work is under way.
    event: Event,
    index: u8,
    identity: I,
    slots: S,
    secret: Option<SecretKey>,
    out: Out,
    acted: Waiting,
    /// The share of the key this trustee made in the current attempt.
    own_key: Option<[u8; 32]>,
    /// This trustee takes no part in the current attempt: a replay of one it began before
    /// (or began in an earlier process), or one whose `Key` under its index it did not make.
    witness: bool,
    #[cfg(feature = "testkit")]
    cheat: Option<Cheat>,
}

impl<'c, B, S, I> SetupTrustee<'c, B, S, I>
where
    B: AsRef<[u8]> + AsMut<[u8]>,
    S: AsMut<[ProverSlot]>,
    I: IdentitySigner,
{
    /// Trustee `index` of `config`, with its identity key and storage (`slots`: one
    /// [`ProverSlot`] per client).
    pub fn new(
        config: SetupConfig<'c>,
        index: u8,
        identity: I,
        storage: SetupStorage<B>,
        mut slots: S,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        storage.check(&config.storage_lens())?;
        if usize::from(index) >= config.trustees.len() {
            return Err(ConfigError::Counts);
        }
        if slots.as_mut().len() < config.clients.len() {
            return Err(ConfigError::StorageTooSmall("slots"));
        }
        Ok(SetupTrustee {
            follower: Follower::new(config, storage, Some(index)),
            work: Work::Nothing,
            event: Event::Progress,
            index,
            identity,
            slots,
            secret: None,
            out: Out::Nothing,
            acted: Waiting::Nothing,
            own_key: None,
            witness: false,
            #[cfg(feature = "testkit")]
            cheat: None,
        })
    }

    /// Makes this trustee cheat (tests only).
    #[cfg(feature = "testkit")]
    pub fn cheat(&mut self, cheat: Cheat) {
        self.cheat = Some(cheat);
    }

    /// Feeds one frame of the relay's setup stream and does all the work it calls for.
    pub fn receive(
        &mut self,
        frame: &[u8],
        rng: &mut impl CryptoRngCore,
    ) -> Result<Event, Failure> {
        if self.follower.is_stale(frame) {
            return Ok(Event::Progress);
        }
        self.check_own_key(frame);
        let event = match self.follower.accept(frame) {
            Ok(e) => e,
            Err(f) => return Err(self.follower.fail(f)),
        };
        self.accepted(event, rng);
        loop {
            if let Poll::Ready(result) = self.work(rng) {
                return result;
            }
        }
    }

    /// Feeds one frame of the relay's setup stream; the proofs of shuffle it calls for
    /// (checking another trustee's, making this one's) are left to [`SetupTrustee::work`],
    /// in bounded steps: `Poll::Pending` until they are done. A device calls `work` between
    /// its other duties (its watchdog, its links) until it returns `Poll::Ready` with the
    /// frame's event; what it then sends, and the result, are [`SetupTrustee::receive`]'s.
    pub fn begin(
        &mut self,
        frame: &[u8],
        rng: &mut impl CryptoRngCore,
    ) -> Poll<Result<Event, Failure>> {
        if self.working() {
            // The work of the frame before is finished first.
            while self.work(rng).is_pending() {}
        }
        if self.follower.is_stale(frame) {
            return Poll::Ready(Ok(Event::Progress));
        }
        self.check_own_key(frame);
        match self.follower.begin(frame) {
            Poll::Pending => {
                self.work = Work::Checking;
                Poll::Pending
            }
            Poll::Ready(Err(f)) => Poll::Ready(Err(self.follower.fail(f))),
            Poll::Ready(Ok(event)) => {
                self.accepted(event, rng);
                if self.working() {
                    Poll::Pending
                } else {
                    Poll::Ready(Ok(event))
                }
            }
        }
    }

    /// A `Key` under this trustee's index in the current attempt that is not the one it
    /// made (the relay replays an attempt this trustee began in an earlier process, or
    /// splices in its key of an earlier run): the trustee holds no secret for it, so it
    /// takes no further part in the attempt (its shares could only fail, and convict it).
    fn check_own_key(&mut self, frame: &[u8]) {
        let Ok(SetupMessage::Key(m)) = SetupMessage::parse(frame) else {
            return;
        };
        let current = (self.follower.config.epoch, self.follower.attempt);
        if m.trustee == self.index
            && (m.epoch, Some(m.attempt)) == current
            && self.own_key != Some(m.share)
        {
            self.witness = true;
            self.out = Out::Nothing;
        }
    }

    /// Whether this trustee takes no part in the current attempt, only checks it: the
    /// relay replays an attempt it began before (to show the conviction in it, or after
    /// the relay restarted), or forwarded a key under its index that it did not make.
    pub fn witnessing(&self) -> bool {
        self.witness
    }

    /// Whether work is under way ([`SetupTrustee::work`] has more to do).
    pub fn working(&self) -> bool {
        !matches!(self.work, Work::Nothing)
    }

    /// One bounded step of the work under way (at most [`shuffle::STEP_ROWS`] rows of a
    /// proof of shuffle); once it is done, the event of the frame that started it.
    pub fn work(&mut self, rng: &mut impl CryptoRngCore) -> Poll<Result<Event, Failure>> {
        match &mut self.work {
            Work::Nothing => Poll::Ready(Ok(self.event)),
            Work::Checking => match self.follower.work() {
                Poll::Pending => Poll::Pending,
                Poll::Ready(Err(f)) => {
                    self.work = Work::Nothing;
                    Poll::Ready(Err(self.follower.fail(f)))
                }
                Poll::Ready(Ok(event)) => {
                    self.work = Work::Nothing;
                    self.accepted(event, rng);
                    if self.working() {
                        Poll::Pending
                    } else {
                        Poll::Ready(Ok(event))
                    }
                }
            },
            Work::Proving(prover) => {
                let config = self.follower.config;
                let attempt = self.follower.attempt.unwrap_or(0);
                let context = Context::shuffle(&config.group, config.epoch, attempt, self.index);
                let n = self.follower.n();
                let rows_len = shuffle::rows_len(n, 1);
                let total = rows_len + shuffle::proof_len(n, 1);
                let storage = &mut self.follower.storage;
                let (Some(joint), Some(inputs), Some(stage)) = (
                    self.follower.joint,
                    storage.rows.as_ref().get(..rows_len),
                    storage.stage.as_mut().get_mut(..total),
                ) else {
                    self.work = Work::Nothing;
                    return Poll::Ready(Ok(self.event));
                };
                let (outputs, proof) = stage.split_at_mut(rows_len);
                let slots = self.slots.as_mut();
                match prover.step(context.as_bytes(), &joint, inputs, outputs, proof, slots) {
                    Ok(Poll::Pending) => return Poll::Pending,
                    Ok(Poll::Ready(())) => {
                        #[cfg(feature = "testkit")]
                        tamper(self.cheat, outputs, &joint, rng);
                        let digest = self.follower.digest_with(
                            self.follower
                                .storage
                                .stage
                                .as_ref()
                                .get(..total)
                                .unwrap_or(&[]),
                        );
                        self.out = Out::Chunks {
                            stage: Stage::Shuffle,
                            offset: 0,
                            digest,
                        };
                        self.acted = Waiting::Chunk(self.index, Stage::Shuffle);
                    }
                    // As before any proof: nothing to send.
                    Err(_) => {}
                }
                self.work = Work::Nothing;
                Poll::Ready(Ok(self.event))
            }
            Work::Sharing(sharing) => {
                let config = self.follower.config;
                let attempt = self.follower.attempt.unwrap_or(0);
                let me = self.index;
                let context = Context::shares(&config.group, config.epoch, attempt, me);
                let n = self.follower.n();
                let storage = &mut self.follower.storage;
                let Some(secret) = &self.secret else {
                    self.work = Work::Nothing;
                    return Poll::Ready(Ok(self.event));
                };
                let (rows, stage) = (storage.rows.as_ref(), storage.stage.as_mut());
                match sharing.step(&context, secret, rows, n, stage, rng) {
                    Some(Poll::Pending) => return Poll::Pending,
                    Some(Poll::Ready(())) => {
                        #[cfg(feature = "testkit")]
                        if self.cheat == Some(Cheat::Share) {
                            if let Some(first) = stage.get_mut(..32) {
                                let other = SecretKey::generate(rng).public_key();
                                first.copy_from_slice(&other.to_bytes());
                            }
                        }
                        let total = shares_len(n);
                        let digest = self.follower.digest_with(
                            self.follower
                                .storage
                                .stage
                                .as_ref()
                                .get(..total)
                                .unwrap_or(&[]),
                        );
                        self.out = Out::Chunks {
                            stage: Stage::Shares,
                            offset: 0,
                            digest,
                        };
                        self.acted = Waiting::Chunk(me, Stage::Shares);
                    }
                    // A row that does not decode: nothing to send, as before any shares.
                    None => {}
                }
                self.work = Work::Nothing;
                Poll::Ready(Ok(self.event))
            }
        }
    }

    /// After the follower took a frame with `event`: this trustee's turn, if it is one. Not
    /// inlined: its prover's locals would sit beneath the follower's signature checks.
    #[inline(never)]
    fn accepted(&mut self, event: Event, rng: &mut impl CryptoRngCore) {
        self.event = event;
        if matches!(event, Event::Opened | Event::Restarting(_)) {
            self.out = Out::Nothing;
            self.acted = Waiting::Nothing;
            self.work = Work::Nothing;
            self.own_key = None;
            self.witness = event == Event::Opened && self.follower.replay;
        }
        self.act(rng);
    }

    fn act(&mut self, rng: &mut impl CryptoRngCore) {
        let waiting = self.follower.waiting;
        if waiting == self.acted || self.out != Out::Nothing || self.working() || self.witness {
            return;
        }
        let me = self.index;
        let attempt = self.follower.attempt.unwrap_or(0);
        let config = self.follower.config;
        match waiting {
            Waiting::Key(j) if j == me => {
                let secret = SecretKey::generate(rng);
                let context = Context::key(&config.group, config.epoch, attempt, me);
                #[allow(unused_mut)]
                let mut proof = prove_knowledge(&context, &secret, rng);
                #[cfg(feature = "testkit")]
                if self.cheat == Some(Cheat::KeyProof) {
                    let other = SecretKey::generate(rng);
                    proof = prove_knowledge(&context, &other, rng);
                }
                let share = secret.public_key().to_bytes();
                self.out = Out::Key { share, proof };
                self.own_key = Some(share);
                self.secret = Some(secret);
            }
            Waiting::Chunk(j, Stage::Shuffle) if j == me => {
                let n = self.follower.n();
                let rows_len = shuffle::rows_len(n, 1);
                let total = rows_len + shuffle::proof_len(n, 1);
                let storage = &mut self.follower.storage;
                let (Some(inputs), Some(stage)) = (
                    storage.rows.as_ref().get(..rows_len),
                    storage.stage.as_mut().get_mut(..total),
                ) else {
                    return;
                };
                let (outputs, proof) = stage.split_at_mut(rows_len);
                // The work is `work`'s, which marks the turn taken once the proof is made.
                if let Ok(prover) = Prover::new(1, inputs, outputs, proof, self.slots.as_mut(), rng)
                {
                    self.work = Work::Proving(prover);
                }
                return;
            }
            Waiting::Chunk(j, Stage::Shares) if j == me => {
                if self.secret.is_some() {
                    // The work is `work`'s, which marks the turn taken once they are made.
                    self.work = Work::Sharing(SharesProof::new());
                }
                return;
            }
            Waiting::Record(j) if j == me => self.out = Out::Record,
            _ => return,
        }
        self.acted = waiting;
    }

    /// The next frame this trustee sends to the relay, written into `out`; `None` when it
    /// has nothing to send. `out` must hold a chunk ([`message::CHUNK_HEADER_LEN`] +
    /// `chunk_len`).
    pub fn poll_transmit(&mut self, out: &mut [u8]) -> Result<Option<usize>, WireError> {
        let config = self.follower.config;
        let epoch = config.epoch;
        let attempt = self.follower.attempt.unwrap_or(0);
        let trustee = self.index;
        let (message, next) = match self.out {
            Out::Nothing => return Ok(None),
            Out::Key { share, proof } => (
                SetupMessage::Key(Key {
                    epoch,
                    attempt,
                    trustee,
                    share,
                    proof,
                    signature: [0; 64],
                }),
                Out::Nothing,
            ),
            Out::Chunks {
                stage,
                offset,
                digest,
            } => {
                let n = self.follower.n();
                let total = match stage {
                    Stage::Shuffle => shuffle::rows_len(n, 1) + shuffle::proof_len(n, 1),
                    Stage::Shares => shares_len(n),
                };
                let end = total.min(offset + config.chunk_len);
                let data = self
                    .follower
                    .storage
                    .stage
                    .as_ref()
                    .get(offset..end)
                    .ok_or(WireError::Malformed)?;
                let message = SetupMessage::Chunk(Chunk {
                    epoch,
                    attempt,
                    trustee,
                    stage,
                    offset: offset as u32,
                    data,
                });
                let len = message.encode(out)?;
                self.out = if end == total {
                    Out::Seal { stage, digest }
                } else {
                    Out::Chunks {
                        stage,
                        offset: end,
                        digest,
                    }
                };
                return Ok(Some(len));
            }
            Out::Seal { stage, digest } => (
                SetupMessage::Seal(Seal {
                    epoch,
                    attempt,
                    trustee,
                    stage,
                    digest,
                    signature: [0; 64],
                }),
                Out::Nothing,
            ),
            Out::Record => (
                SetupMessage::Record(Record {
                    epoch,
                    attempt,
                    trustee,
                    transcript: self.follower.transcript,
                    list: self.follower.list,
                    signature: [0; 64],
                }),
                Out::Nothing,
            ),
        };
        let len = message.encode(out)?;
        let frame = out.get_mut(..len).ok_or(WireError::BufferTooSmall)?;
        if !message::sign_in_place(frame, &config.group, &self.identity) {
            return Err(WireError::BufferTooSmall);
        }
        self.out = next;
        Ok(Some(len))
    }

    /// The current attempt's participants (those that get a slot), a bitmap over the
    /// clients, bit `i` = client `i`, least significant first.
    pub fn participants(&self) -> &[u8] {
        self.follower.participants()
    }

    /// What the setup waits for.
    pub fn waiting(&self) -> Waiting {
        self.follower.waiting
    }

    /// How the setup failed, if it did.
    pub fn failure(&self) -> Option<Failure> {
        self.follower.failure()
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

    /// The shell's timeout: the setup ends, naming what it waited for.
    pub fn stalled(&mut self) -> Failure {
        let waiting = self.follower.waiting;
        self.follower.fail(Failure::Stalled(waiting))
    }
}

/// Alters the outputs after an honest proof, as `cheat` says.
#[cfg(feature = "testkit")]
fn tamper(
    cheat: Option<Cheat>,
    outputs: &mut [u8],
    joint: &crate::ristretto::keys::PublicKey,
    rng: &mut impl CryptoRngCore,
) {
    let Some(cheat) = cheat else { return };
    let (first, rest) = outputs.split_at_mut(CIPHERTEXT_LEN.min(outputs.len()));
    let Some(second) = rest.get_mut(..CIPHERTEXT_LEN) else {
        return;
    };
    match cheat {
        Cheat::Swap => first.swap_with_slice(second),
        Cheat::Duplicate => second.copy_from_slice(first),
        Cheat::Replace => {
            let mine = SecretKey::generate(rng).public_key();
            first.copy_from_slice(&Ciphertext::encrypt(joint, mine.point(), rng).to_bytes());
        }
        Cheat::Reencryption => {
            if let Ok(ct) = Ciphertext::from_slice(first) {
                let bumped = Ciphertext {
                    a: ct.a + curve25519_dalek::constants::RISTRETTO_BASEPOINT_POINT,
                    b: ct.b,
                };
                first.copy_from_slice(&bumped.to_bytes());
            }
        }
        Cheat::Share | Cheat::KeyProof => {}
    }
}
