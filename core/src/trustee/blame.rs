//! A trustee's part in blame rounds (core feature `blame-round`): it checks a
//! `BlameRequest`'s grounds ([`crate::blame::Grounds::check`]) and, only if they hold,
//! answers `BlameReveal` (its cell recomputed, its pad bits at the bit, one per member of
//! the interval in index order, and its identity key's signature over the statement);
//! asked in a dispute (core feature `trustee-dh`, hosted and device trustees alike), it
//! answers `BlameDhProof` for the named client only if the request shows that client's
//! signed reveal of the same round claiming another pad bit for the pair than the trustee
//! revealed ([`crate::blame::Shown`]): the secret fixes every pad of the pair, so a relay
//! never learns it without a real dispute.
//!
//! Owns the answers, the keys they need and the digests its statements sign (the members'
//! link nonces, the trustee nonces, the interval's view). It must not change the cell path
//! (`exchange.rs`); `reveal.rs` recomputes cells and pad bits.

use heapless::Deque;
use sha2::{Digest, Sha256};

use super::{Phase, Trustee};
#[cfg(feature = "trustee-dh")]
use crate::blame::reveal::dh_proof_frame;
use crate::blame::{
    cell_hash, grounds_digest, nonces_digest, Culprit, Facts, Grounds, Round, Statement,
};
#[cfg(feature = "trustee-dh")]
use crate::blame::{dh_context, DhRequest};
use crate::crypto::{IntervalKey, PairKey};
use crate::error::{ConfigError, PeerError};
use crate::identity::IdentityKey;
use crate::ristretto::keys::SecretKey;
use crate::wire::{self, WireError};
use crate::NONCE_LEN;

/// The keys a trustee answers blame with.
#[cfg_attr(not(feature = "trustee-dh"), allow(dead_code))]
pub(super) struct BlameKeys<B> {
    identity: IdentityKey,
    dh: SecretKey,
    dh_public: [u8; 32],
    /// Every client's pad public key (32 bytes each, by index), then every slot's pseudonym
    /// public key (32 bytes each).
    keys: B,
}

/// An answer still to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Task {
    Reveal {
        interval: u32,
        exchange: u64,
        bit: u32,
        /// The digest of the grounds it checked, which its statement signs.
        grounds: [u8; 32],
    },
    #[cfg(feature = "trustee-dh")]
    Dh {
        interval: u32,
        exchange: u64,
        peer: u16,
    },
}

/// What a trustee holds for blame rounds besides its keys.
#[derive(Debug, Default)]
pub(super) struct BlameState {
    /// The members' link nonces so far, in index order.
    members: Sha256,
    /// SHA-256 of the interval's members' link nonces.
    members_digest: [u8; 32],
    /// SHA-256 of the interval's trustee nonces.
    trustee_nonces: [u8; 32],
    /// The interval's view.
    view: [u8; 32],
    /// The round it accepted last: (interval, exchange, bit, grounds digest).
    accepted: Option<(u32, u64, u32, [u8; 32])>,
    tasks: Deque<Task, 4>,
    /// Tests only: its reveals claim the pad bits it shares with the first two members
    /// flipped (the XOR unchanged, so only a dispute shows the lie).
    #[cfg(feature = "disruptor")]
    lies: bool,
}

impl<P, I, B> Trustee<P, I, B>
where
    P: AsMut<[PairKey]> + AsRef<[PairKey]>,
    I: AsMut<[IntervalKey]> + AsRef<[IntervalKey]>,
    B: AsMut<[u8]> + AsRef<[u8]>,
{
    /// Sets what this trustee answers blame rounds with: its Ed25519 identity secret, its
    /// pad secret (the configuration's `session_secret`), and `keys`
    /// ([`Trustee::blame_keys_len`] bytes): every client's pad public key by index, then
    /// every slot's pseudonym public key, then every client's identity public key by
    /// index, 32 bytes each. Without them it answers no round.
    pub fn set_blame_keys(
        &mut self,
        identity: &[u8; 32],
        pad_secret: &[u8; 32],
        keys: B,
    ) -> Result<(), ConfigError> {
        if keys.as_ref().len() < self.blame_keys_len() {
            return Err(ConfigError::StorageTooSmall("blame keys"));
        }
        let dh = crate::crypto::pad_secret(pad_secret)
            .ok_or(ConfigError::Key(crate::crypto::KeyError::ZeroSecret))?;
        self.blame_keys = Some(BlameKeys {
            identity: IdentityKey::from_bytes(identity),
            dh_public: dh.public_key().to_bytes(),
            dh,
            keys,
        });
        Ok(())
    }

    /// Tests only (core feature `disruptor`): this trustee's reveals lie about the pad bits
    /// it shares with the first two members of the interval, in a way its own cell bit does
    /// not show.
    #[cfg(feature = "disruptor")]
    pub fn set_lie_about_pads(&mut self, lie: bool) {
        self.blame.lies = lie;
    }

    /// Bytes of [`Trustee::set_blame_keys`]'s `keys`.
    pub const fn blame_keys_len(&self) -> usize {
        (2 * self.clients + self.slots as usize) * 32
    }

    fn key_at(&self, at: usize) -> Option<[u8; 32]> {
        let keys = self.blame_keys.as_ref()?;
        keys.keys
            .as_ref()
            .get(at * 32..at * 32 + 32)?
            .try_into()
            .ok()
    }

    /// The member at `position` of the interval has link nonce `nonce` (in index order).
    pub(super) fn note_member_nonce(&mut self, position: u32, nonce: &[u8; NONCE_LEN]) {
        if position == 0 {
            self.blame.members = Sha256::new();
        }
        self.blame.members.update(nonce);
    }

    /// The link is new or gone: no round accepted before is answered any more.
    pub(super) fn forget_rounds(&mut self) {
        self.blame.accepted = None;
        self.blame.tasks.clear();
    }

    /// The interval's start: its trustee nonces and its view. Rounds are about the running
    /// interval only: the cells of any earlier one (another interval with the same number
    /// included) are forgotten.
    pub(super) fn note_start(&mut self, nonces: &[u8], view: &[u8; 32]) {
        self.sent_cells.clear();
        self.forget_rounds();
        self.blame.members_digest = core::mem::take(&mut self.blame.members).finalize().into();
        self.blame.trustee_nonces = nonces_digest(
            nonces
                .chunks_exact(NONCE_LEN)
                .filter_map(|n| <&[u8; NONCE_LEN]>::try_from(n).ok()),
        );
        self.blame.view = *view;
    }

    /// A `BlameRequest`: answered only if its grounds hold for the running interval.
    pub(super) fn on_blame_request(
        &mut self,
        interval: u32,
        exchange: u64,
        bit: u32,
        slot: u16,
        grounds: &[u8],
    ) -> Result<(), PeerError> {
        let Phase::Running(running) = &self.phase else {
            return Ok(());
        };
        let (running_interval, announced) = (running.interval, running.trap);
        let Some(pseudonym) = self.key_at(self.clients + usize::from(slot)) else {
            return Ok(());
        };
        if slot >= self.slots {
            return Ok(());
        }
        // The cell length is its own (the exchange it answered); without one it has
        // nothing to reveal, and trap grounds name no trap byte.
        let len = self
            .answered(interval, exchange)
            .map_or(0, |(_, sent)| sent.len);
        let facts = Facts {
            group_id: self.group_id,
            session_id: self.session_id,
            view: self.blame.view,
            interval: running_interval,
            announced,
            slot,
            pseudonym,
            exchange,
            len,
            bit,
        };
        let holds = Grounds::parse(grounds).and_then(|g| g.check(&facts).map(|()| g));
        let (true, Ok(checked)) = (interval == running_interval, holds) else {
            return Ok(());
        };
        let digest = grounds_digest(&facts.view, slot, len as u32, &checked);
        self.blame.accepted = Some((interval, exchange, bit, digest));
        self.push_task(Task::Reveal {
            interval,
            exchange,
            bit,
            grounds: digest,
        });
        Ok(())
    }

    /// A `BlameDhRequest` about the round it accepted, naming a client (core feature
    /// `trustee-dh`): answered only if
    /// it shows that client's signed reveal of the round claiming another pad bit for the
    /// pair than this trustee revealed. Refusing anything else is what an honest trustee
    /// does (an honest relay only asks with such a reveal).
    #[cfg(feature = "trustee-dh")]
    pub(super) fn on_blame_dh_request(&mut self, r: &DhRequest<'_>) {
        if self.shows_dispute(r) {
            self.push_task(Task::Dh {
                interval: r.interval,
                exchange: r.exchange,
                peer: r.peer,
            });
            self.event = Some(super::TrusteeEvent::SecretProven {
                interval: r.interval,
                exchange: r.exchange,
                client: r.peer,
            });
        }
    }

    #[cfg(feature = "trustee-dh")]
    fn shows_dispute(&self, r: &DhRequest<'_>) -> bool {
        let Some((interval, exchange, bit, grounds)) = self.blame.accepted else {
            return false;
        };
        let peer = usize::from(r.peer);
        if (interval, exchange, bit) != (r.interval, r.exchange, r.bit) || peer >= self.clients {
            return false;
        }
        let Some(identity) = self.key_at(self.clients + usize::from(self.slots) + peer) else {
            return false;
        };
        // The client's position among the interval's members.
        let online = self.online.as_ref();
        if !crate::bits::test(online, peer) {
            return false;
        }
        let position = crate::bits::rank(online, peer);
        let Ok((keys, sent)) = self.answered(interval, exchange) else {
            return false;
        };
        let Some(key) = keys.get(position) else {
            return false;
        };
        #[allow(unused_mut)]
        let mut mine = crate::crypto::pad_bit(key, &sent.nonce, bit);
        #[cfg(feature = "disruptor")]
        if self.blame.lies && keys.len() >= 2 && position < 2 {
            mine = !mine;
        }
        let round = Round {
            group_id: &self.group_id,
            session_id: &self.session_id,
            interval,
            exchange,
            bit,
            grounds: &grounds,
            pad_nonce: &sent.nonce,
            trustee_nonces: &self.blame.trustee_nonces,
        };
        r.shown.disputes(
            &round,
            Culprit::Client(r.peer),
            &identity,
            self.trustees,
            usize::from(self.index),
            mine,
        )
    }

    fn push_task(&mut self, task: Task) {
        crate::blame::push_newest(&mut self.blame.tasks, task);
    }

    /// The next blame answer, if one is due (part of [`Trustee::poll_transmit`]).
    pub(super) fn transmit_blame(&mut self, out: &mut [u8]) -> Result<Option<usize>, WireError> {
        while let Some(task) = self.blame.tasks.pop_front() {
            let n = match task {
                Task::Reveal {
                    interval,
                    exchange,
                    bit,
                    grounds,
                } => self.emit_reveal(interval, exchange, bit, &grounds, out)?,
                #[cfg(feature = "trustee-dh")]
                Task::Dh {
                    interval,
                    exchange,
                    peer,
                } => self.emit_dh(interval, exchange, peer, out)?,
            };
            if n.is_some() {
                return Ok(n);
            }
        }
        Ok(None)
    }

    fn emit_reveal(
        &self,
        interval: u32,
        exchange: u64,
        bit: u32,
        grounds: &[u8; 32],
        out: &mut [u8],
    ) -> Result<Option<usize>, WireError> {
        let Some(keys) = self.blame_keys.as_ref() else {
            return Ok(None);
        };
        let Ok((members, sent)) = self.answered(interval, exchange) else {
            return Ok(None);
        };
        let (m, len, nonce) = (members.len(), sent.len, sent.nonce);
        let bits_len = m.div_ceil(8);
        let f = wire::reveal_frame(interval, exchange, bit, bits_len, len, out)?;
        let (head, tail) = out.split_at_mut(f.cell);
        let Some(cell) = tail.get_mut(..len) else {
            return Ok(None);
        };
        if self.recompute_cell(interval, exchange, cell).is_err() {
            return Ok(None);
        }
        let Some(bits) = head.get_mut(f.pad_bits..f.pad_bits + bits_len) else {
            return Ok(None);
        };
        if self.pad_bits(interval, exchange, bit, bits).is_err() {
            return Ok(None);
        }
        #[cfg(feature = "disruptor")]
        if self.blame.lies && m >= 2 {
            if let Some(b) = bits.first_mut() {
                *b ^= 0b11;
            }
        }
        let hash = cell_hash(cell);
        let statement = Statement {
            round: Round {
                group_id: &self.group_id,
                session_id: &self.session_id,
                interval,
                exchange,
                bit,
                grounds,
                pad_nonce: &nonce,
                trustee_nonces: &self.blame.trustee_nonces,
            },
            who: Culprit::Trustee(self.index),
            own: &self.blame.members_digest,
            decoded_hash: &[0; 32],
            cell_hash: &hash,
            cell_bit: crate::bits::test(cell, bit as usize),
            bits,
            count: m as u16,
        };
        let signature = keys.identity.sign(&statement.digest());
        crate::field::put(head, f.signature, &signature);
        Ok(Some(f.len))
    }

    #[cfg(feature = "trustee-dh")]
    fn emit_dh(
        &self,
        interval: u32,
        exchange: u64,
        peer: u16,
        out: &mut [u8],
    ) -> Result<Option<usize>, WireError> {
        let (Some(keys), Some(client)) = (self.blame_keys.as_ref(), self.key_at(usize::from(peer)))
        else {
            return Ok(None);
        };
        let context = dh_context(&self.group_id, &self.session_id, &client, &keys.dh_public);
        dh_proof_frame(&context, &keys.dh, &client, interval, exchange, peer, out)
    }
}
