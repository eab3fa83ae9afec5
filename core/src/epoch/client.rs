//! The client's side of the setup: a fresh pseudonym key per attempt, submitted encrypted
//! to the trustees' joint key with a proof of knowledge of the randomness; every proof
//! checked (`follower.rs`); its own key found exactly once in the decrypted list, or the
//! epoch refused.
//!
//! Owns what a client sends and its own-key checks; the other checks are the follower's.

use rand_core::CryptoRngCore;

use super::follower::{Event, Follower};
use super::identity::IdentitySigner;
use super::message::{self, SetupMessage, Submit, SUBMIT_LEN};
use super::proof::submission;
use super::{Established, Failure, Refusal, SetupConfig, SetupStorage, Waiting};
use crate::error::ConfigError;
use crate::ristretto::keys::SecretKey;

/// One client's setup.
pub struct SetupClient<'c, B, I> {
    follower: Follower<'c, B>,
    index: u16,
    identity: I,
    pseudonym: Option<SecretKey>,
    submission: Option<[u8; SUBMIT_LEN]>,
    pending: bool,
    slot: Option<u16>,
}

impl<'c, B, I> SetupClient<'c, B, I>
where
    B: AsRef<[u8]> + AsMut<[u8]>,
    I: IdentitySigner,
{
    /// Client `index` of `config`, with its identity key and storage.
    pub fn new(
        config: SetupConfig<'c>,
        index: u16,
        identity: I,
        storage: SetupStorage<B>,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        storage.check(&config.storage_lens())?;
        if usize::from(index) >= config.clients.len() {
            return Err(ConfigError::Counts);
        }
        Ok(SetupClient {
            follower: Follower::new(config, storage, None),
            index,
            identity,
            pseudonym: None,
            submission: None,
            pending: false,
            slot: None,
        })
    }

    /// Feeds one frame of the relay's setup stream.
    pub fn receive(
        &mut self,
        frame: &[u8],
        rng: &mut impl CryptoRngCore,
    ) -> Result<Event, Failure> {
        if self.follower.is_stale(frame) {
            return Ok(Event::Progress);
        }
        let event = match self.follower.accept(frame) {
            Ok(e) => e,
            Err(f) => return Err(self.follower.fail(f)),
        };
        match event {
            Event::Opened => {
                self.submission = None;
                self.pending = false;
                self.pseudonym = None;
                self.slot = None;
                if !self.follower.is_participant(self.index) {
                    return Err(self
                        .follower
                        .fail(Failure::Refused(Refusal::NotParticipant)));
                }
            }
            // In a replay of an attempt this client began before, it submits nothing again.
            Event::KeysComplete if !self.follower.replay => self.submit(rng),
            Event::ListReady => self.find_own_key()?,
            _ => {}
        }
        Ok(event)
    }

    fn submit(&mut self, rng: &mut impl CryptoRngCore) {
        let Some(joint) = self.follower.joint else {
            return;
        };
        let config = self.follower.config;
        let attempt = self.follower.attempt.unwrap_or(0);
        let pseudonym = SecretKey::generate(rng);
        let (ciphertext, proof) = submission(
            &config.group,
            config.epoch,
            attempt,
            self.index,
            &joint,
            &pseudonym.public_key(),
            rng,
        );
        let message = SetupMessage::Submit(Submit {
            epoch: config.epoch,
            attempt,
            client: self.index,
            ciphertext,
            proof,
            signature: [0; 64],
        });
        let mut frame = [0u8; SUBMIT_LEN];
        if message.encode(&mut frame).is_ok()
            && message::sign_in_place(&mut frame, &config.group, &self.identity)
        {
            self.submission = Some(frame);
            self.pending = true;
            self.pseudonym = Some(pseudonym);
        }
    }

    fn find_own_key(&mut self) -> Result<(), Failure> {
        let Some(mine) = self.pseudonym.as_ref().map(|p| p.public_key().to_bytes()) else {
            return Err(self.follower.fail(Failure::Refused(Refusal::KeyMissing)));
        };
        let mut found = None;
        let mut count = 0usize;
        for (slot, key) in self.follower.pseudonyms().enumerate() {
            if key == mine {
                count += 1;
                found = u16::try_from(slot).ok();
            }
        }
        match count {
            0 => Err(self.follower.fail(Failure::Refused(Refusal::KeyMissing))),
            1 => {
                self.slot = found;
                Ok(())
            }
            _ => Err(self.follower.fail(Failure::Refused(Refusal::KeyDuplicated))),
        }
    }

    /// This client's submission, once, to send to the relay.
    pub fn poll_transmit(&mut self) -> Option<&[u8]> {
        if !self.pending {
            return None;
        }
        self.pending = false;
        self.submission.as_ref().map(|s| s.as_slice())
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

    /// This client's slot (its key's position in the list), once the list is ready.
    pub fn slot(&self) -> Option<u16> {
        self.slot
    }

    /// The pseudonym key's secret (keep it for the epoch).
    pub fn pseudonym(&self) -> Option<&SecretKey> {
        self.pseudonym.as_ref()
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
