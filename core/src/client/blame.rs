//! A client's part in blame rounds (core feature `blame-round`): it checks a
//! `BlameRequest`'s grounds ([`crate::blame::Grounds::check`]) and, only if they hold,
//! answers `BlameReveal` (its cell of the exchange recomputed, its pad bits at the bit, one
//! per trustee, and its identity key's signature over the statement,
//! [`crate::blame::Statement`]); asked in a dispute, it answers `BlameDhProof` (its
//! Diffie–Hellman secret with the trustee and a DLEQ proof of it).
//!
//! A request whose grounds fail gets nothing, and neither does a dispute request about a
//! round it did not accept, nor one that does not show the trustee's signed reveal of that
//! round claiming another pad bit for the pair than this client revealed
//! ([`crate::blame::Shown`]): the secret fixes every pad of the pair, so a relay never
//! learns it without a real dispute. It keeps the hash of every decoded cell the relay showed it
//! (`Disrupted` frames), which its statement signs.
//!
//! A round is about one interval of one link: what it answered and kept is tagged with the
//! link, so a relay restarted within one interval number (which numbers intervals and
//! exchanges again) never gets an answer about a cell of the old link under the new link's
//! facts. When its link drops in an interval, it keeps what that interval's round needs
//! ([`Left`]) until the next interval is shown, so that a member that reconnects within the
//! round answers it (a member whose answer the round lacks refused blame).
//!
//! A test disruptor (core feature `disruptor`) lies in its reveals and withholds the proof
//! that would convict it as `super::disruptor::PadLie` says; nothing else changes here.
//!
//! Owns the answers and the keys they need. It must not decide what a cell holds or keep
//! pad nonces (`reveal.rs` recomputes the cell and the pad bits).

use heapless::{Deque, Vec};

use super::Client;
use crate::blame::reveal::dh_proof_frame;
use crate::blame::{
    cell_hash, dh_context, grounds_digest, nonces_digest, Culprit, DhRequest, Facts, Grounds,
    Round, Statement,
};
use crate::crypto::IntervalKey;
use crate::error::{ConfigError, PeerError};
use crate::identity::IdentityKey;
use crate::ristretto::keys::SecretKey;
use crate::wire::{self, WireError};
use crate::{MAX_TRUSTEES, NONCE_LEN};

/// Decoded cells whose hashes a client keeps, the latest ones.
const DECODED: usize = 16;

/// The keys a client answers blame with.
pub(super) struct BlameKeys<B> {
    identity: IdentityKey,
    dh: SecretKey,
    /// Its own pad public key.
    dh_public: [u8; 32],
    /// The trustees' pad public keys.
    trustees: Vec<[u8; 32], MAX_TRUSTEES>,
    /// The trustees' identity public keys.
    identities: Vec<[u8; 32], MAX_TRUSTEES>,
    /// Every slot's pseudonym public key, 32 bytes each.
    pseudonyms: B,
}

/// An answer still to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Task {
    Reveal {
        /// The link whose record the grounds were checked against: the reveal is of that
        /// record or nothing (a relay restarted within the interval number meanwhile gets
        /// nothing of another link's cell under these grounds).
        link: u32,
        interval: u32,
        exchange: u64,
        bit: u32,
        /// The digest of the grounds it checked, which its statement signs.
        grounds: [u8; 32],
    },
    Dh {
        interval: u32,
        exchange: u64,
        peer: u16,
    },
}

/// The interval a client was running when its link dropped: what a round about it needs.
#[derive(Debug, Clone)]
pub(super) struct Left {
    link: u32,
    interval: u32,
    view: [u8; 32],
    link_nonce: [u8; NONCE_LEN],
    trustee_nonces: [u8; 32],
    keys: Vec<IntervalKey, MAX_TRUSTEES>,
}

/// The interval a round is about, as this client answered it.
struct Context<'a> {
    link: u32,
    view: [u8; 32],
    link_nonce: [u8; NONCE_LEN],
    trustee_nonces: [u8; 32],
    keys: &'a [IntervalKey],
}

/// What a client holds for blame rounds besides its keys.
#[derive(Debug, Default)]
pub(super) struct BlameState {
    /// SHA-256 of the interval's trustee nonces (set when an interval is shown).
    trustee_nonces: [u8; 32],
    /// (link, interval, exchange, SHA-256 of the decoded cell it was shown).
    decoded: Deque<(u32, u32, u64, [u8; 32]), DECODED>,
    /// The round it accepted last: (link, interval, exchange, bit, grounds digest).
    accepted: Option<(u32, u32, u64, u32, [u8; 32])>,
    /// The interval it was running when its link dropped, until the next one is shown.
    left: Option<Left>,
    tasks: Deque<Task, 4>,
    /// Tests only: how it lies about the pad bit it shares with trustee 0.
    #[cfg(feature = "disruptor")]
    lie: super::disruptor::PadLie,
}

impl<B: AsMut<[u8]> + AsRef<[u8]>> Client<B> {
    /// Sets what this client answers blame rounds with: its Ed25519 identity secret, its
    /// pad secret (the configuration's `session_secret`), the trustees' pad public keys in
    /// trustee order, and every slot's pseudonym public key in slot order (`pseudonyms`,
    /// [`Client::pseudonyms_len`] bytes, 32 per slot). Without them it answers no round.
    pub fn set_blame_keys(
        &mut self,
        identity: &[u8; 32],
        pad_secret: &[u8; 32],
        trustees: &[[u8; 32]],
        identities: &[[u8; 32]],
        pseudonyms: B,
    ) -> Result<(), ConfigError> {
        if pseudonyms.as_ref().len() < self.pseudonyms_len() {
            return Err(ConfigError::StorageTooSmall("pseudonyms"));
        }
        if trustees.len() != self.pairs.len() || identities.len() != self.pairs.len() {
            return Err(ConfigError::Counts);
        }
        let dh = crate::crypto::pad_secret(pad_secret)
            .ok_or(ConfigError::Key(crate::crypto::KeyError::ZeroSecret))?;
        let mut t = Vec::new();
        for k in trustees {
            let _ = t.push(*k);
        }
        let mut ids = Vec::new();
        for k in identities {
            let _ = ids.push(*k);
        }
        self.blame_keys = Some(BlameKeys {
            identity: IdentityKey::from_bytes(identity),
            dh_public: dh.public_key().to_bytes(),
            dh,
            trustees: t,
            identities: ids,
            pseudonyms,
        });
        Ok(())
    }

    /// Tests only (core feature `disruptor`): this client's reveals lie about the pad bit
    /// it shares with trustee 0, and it never proves that pair's secret (a disruptor that
    /// hides its flipped cell bit that way is caught by the dispute, on the trustee's
    /// proof).
    #[cfg(feature = "disruptor")]
    pub fn set_lie_about_pads(&mut self, lie: bool) {
        self.blame.lie.lies = lie;
    }

    /// Tests only (core feature `disruptor`): a client that lies about its pads
    /// ([`Client::set_lie_about_pads`]) still proves the pair's secret when a dispute's
    /// request asks, and so convicts itself.
    #[cfg(feature = "disruptor")]
    pub fn set_liar_proves(&mut self, proves: bool) {
        self.blame.lie.proves = proves;
    }

    /// Bytes [`Client::set_blame_keys`] needs for the pseudonym keys.
    pub const fn pseudonyms_len(&self) -> usize {
        self.slots as usize * 32
    }

    /// The interval shown has these trustee nonces (its statement signs their digest). The
    /// interval it left, if any, is no longer answered for: its round has ended.
    pub(super) fn note_trustee_nonces(&mut self, nonces: &[u8]) {
        self.blame.left = None;
        self.blame.trustee_nonces = nonces_digest(
            nonces
                .chunks_exact(NONCE_LEN)
                .filter_map(|n| <&[u8; NONCE_LEN]>::try_from(n).ok()),
        );
    }

    /// The relay showed `cell` as the decoding of `exchange` of `interval`.
    pub(super) fn note_decoded(&mut self, interval: u32, exchange: u64, cell: &[u8]) {
        if self.blame.decoded.is_full() {
            self.blame.decoded.pop_front();
        }
        let _ = self
            .blame
            .decoded
            .push_back((self.link, interval, exchange, cell_hash(cell)));
    }

    /// The link drops: the running interval is kept for a round about it.
    pub(super) fn keep_for_blame(&mut self) {
        let super::Phase::Running(running) = &self.phase else {
            return;
        };
        self.blame.left = Some(Left {
            link: self.link,
            interval: running.interval,
            view: running.view,
            link_nonce: self.link_nonce,
            trustee_nonces: self.blame.trustee_nonces,
            keys: self.interval_keys.clone(),
        });
    }

    /// The interval a round about `interval` is answered from: the running one, or the one
    /// its last link left.
    fn context(&self, interval: u32) -> Option<Context<'_>> {
        match &self.phase {
            super::Phase::Running(r) if r.interval == interval => Some(Context {
                link: self.link,
                view: r.view,
                link_nonce: self.link_nonce,
                trustee_nonces: self.blame.trustee_nonces,
                keys: &self.interval_keys,
            }),
            _ => self
                .blame
                .left
                .as_ref()
                .filter(|l| l.interval == interval)
                .map(|l| Context {
                    link: l.link,
                    view: l.view,
                    link_nonce: l.link_nonce,
                    trustee_nonces: l.trustee_nonces,
                    keys: &l.keys,
                }),
        }
    }

    fn pseudonym_of(&self, slot: u16) -> Option<[u8; 32]> {
        let keys = self.blame_keys.as_ref()?;
        let at = usize::from(slot) * 32;
        keys.pseudonyms.as_ref().get(at..at + 32)?.try_into().ok()
    }

    /// A `BlameRequest`: answered only if its grounds hold for the interval it is about,
    /// the running one or the one its last link left.
    pub(super) fn on_blame_request(
        &mut self,
        interval: u32,
        exchange: u64,
        bit: u32,
        slot: u16,
        grounds: &[u8],
    ) -> Result<(), PeerError> {
        let Some(ctx) = self.context(interval) else {
            // Refused: nothing is revealed.
            return Ok(());
        };
        let (link, view) = (ctx.link, ctx.view);
        let Some(pseudonym) = self.pseudonym_of(slot) else {
            return Ok(());
        };
        // The cell length is its own (the exchange it answered on that link); without one
        // it has nothing to reveal, and trap grounds name no trap byte. The trap point is
        // the one in force when it answered: grounds under another point (a relay that
        // announced the interval's number again) name bits its cell's layout did not keep
        // at zero.
        let (len, announced) = self
            .answered_on(link, interval, exchange)
            .map_or((0, [0; 32]), |a| (a.len, a.trap));
        let facts = Facts {
            group_id: self.group_id,
            session_id: self.session_id,
            view,
            interval,
            announced,
            slot,
            pseudonym,
            exchange,
            len,
            bit,
        };
        let Ok(checked) = Grounds::parse(grounds).and_then(|g| g.check(&facts).map(|()| g)) else {
            // Refused: nothing is revealed.
            return Ok(());
        };
        let digest = grounds_digest(&view, slot, len as u32, &checked);
        // Its own accusation, if it was this one, has done its work.
        if self
            .pending
            .is_some_and(|p| (p.interval, p.exchange, p.bit) == (interval, exchange, bit))
        {
            self.pending = None;
        }
        self.blame.accepted = Some((link, interval, exchange, bit, digest));
        self.push_task(Task::Reveal {
            link,
            interval,
            exchange,
            bit,
            grounds: digest,
        });
        Ok(())
    }

    /// A `BlameDhRequest` about the round it accepted (of the running interval or the one
    /// its last link left), naming a trustee: answered only if it shows that trustee's
    /// signed reveal of the round claiming another pad bit for the pair than this client
    /// revealed. Refusing anything else is what an honest client does (an honest relay only
    /// asks with such a reveal).
    pub(super) fn on_blame_dh_request(&mut self, r: &DhRequest<'_>) {
        #[cfg(feature = "disruptor")]
        if !self.blame.lie.proves(usize::from(r.peer)) {
            return;
        }
        if self.shows_dispute(r) {
            self.push_task(Task::Dh {
                interval: r.interval,
                exchange: r.exchange,
                peer: r.peer,
            });
        }
    }

    fn shows_dispute(&self, r: &DhRequest<'_>) -> bool {
        let Some((link, interval, exchange, bit, grounds)) = self.blame.accepted else {
            return false;
        };
        let ctx = self.context(interval).filter(|c| c.link == link);
        let (Some(keys), Some(ctx)) = (self.blame_keys.as_ref(), ctx) else {
            return false;
        };
        let peer = usize::from(r.peer);
        if (interval, exchange, bit) != (r.interval, r.exchange, r.bit) {
            return false;
        }
        let (Some(identity), Some(key), Some(answered)) = (
            keys.identities.get(peer),
            ctx.keys.get(peer),
            self.answered_on(link, interval, exchange),
        ) else {
            return false;
        };
        // Its position among the interval's members, and their count.
        let online = self.online.as_ref();
        let index = usize::from(self.index);
        let members = crate::bits::rank(online, usize::from(self.clients));
        let position = crate::bits::rank(online, index);
        #[allow(unused_mut)]
        let mut mine = crate::crypto::pad_bit(key, &answered.nonce, bit);
        #[cfg(feature = "disruptor")]
        if self.blame.lie.flips(peer) {
            mine = !mine;
        }
        let round = Round {
            group_id: &self.group_id,
            session_id: &self.session_id,
            interval,
            exchange,
            bit,
            grounds: &grounds,
            pad_nonce: &answered.nonce,
            trustee_nonces: &ctx.trustee_nonces,
        };
        crate::bits::test(online, index)
            && r.shown.disputes(
                &round,
                Culprit::Trustee(r.peer),
                identity,
                members as u16,
                position,
                mine,
            )
    }

    fn push_task(&mut self, task: Task) {
        crate::blame::push_newest(&mut self.blame.tasks, task);
    }

    /// The next blame answer, if one is due (part of [`Client::poll_transmit`]).
    pub(super) fn transmit_blame(&mut self, out: &mut [u8]) -> Result<Option<usize>, WireError> {
        while let Some(task) = self.blame.tasks.pop_front() {
            let n = match task {
                Task::Reveal {
                    link,
                    interval,
                    exchange,
                    bit,
                    grounds,
                } => self.emit_reveal(link, interval, exchange, bit, &grounds, out)?,
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
        link: u32,
        interval: u32,
        exchange: u64,
        bit: u32,
        grounds: &[u8; 32],
        out: &mut [u8],
    ) -> Result<Option<usize>, WireError> {
        let ctx = self.context(interval).filter(|c| c.link == link);
        let (Some(keys), Some(ctx)) = (self.blame_keys.as_ref(), ctx) else {
            return Ok(None);
        };
        let Some(&answered) = self.answered_on(ctx.link, interval, exchange) else {
            return Ok(None);
        };
        let (len, nonce) = (answered.len, answered.nonce);
        let m = self.pairs.len();
        let bits_len = m.div_ceil(8);
        let f = wire::reveal_frame(interval, exchange, bit, bits_len, len, out)?;
        let (head, tail) = out.split_at_mut(f.cell);
        let Some(cell) = tail.get_mut(..len) else {
            return Ok(None);
        };
        if self
            .recompute_on(ctx.link, ctx.keys, interval, exchange, cell)
            .is_err()
        {
            return Ok(None);
        }
        let Some(bits) = head.get_mut(f.pad_bits..f.pad_bits + bits_len) else {
            return Ok(None);
        };
        if self
            .pad_bits_on(ctx.link, ctx.keys, interval, exchange, bit, bits)
            .is_err()
        {
            return Ok(None);
        }
        #[cfg(feature = "disruptor")]
        self.blame.lie.tell(bits);
        let decoded = self
            .blame
            .decoded
            .iter()
            .rev()
            .find(|d| (d.0, d.1, d.2) == (ctx.link, interval, exchange))
            .map_or([0; 32], |d| d.3);
        let mut own = [0u8; 32];
        crate::field::put(&mut own, 0, &ctx.link_nonce);
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
                trustee_nonces: &ctx.trustee_nonces,
            },
            who: Culprit::Client(self.index),
            own: &own,
            decoded_hash: &decoded,
            cell_hash: &hash,
            cell_bit: crate::bits::test(cell, bit as usize),
            bits,
            count: m as u16,
        };
        let signature = keys.identity.sign(&statement.digest());
        crate::field::put(head, f.signature, &signature);
        Ok(Some(f.len))
    }

    fn emit_dh(
        &self,
        interval: u32,
        exchange: u64,
        peer: u16,
        out: &mut [u8],
    ) -> Result<Option<usize>, WireError> {
        let Some(keys) = self.blame_keys.as_ref() else {
            return Ok(None);
        };
        let Some(trustee) = keys.trustees.get(usize::from(peer)) else {
            return Ok(None);
        };
        let context = dh_context(&self.group_id, &self.session_id, &keys.dh_public, trustee);
        dh_proof_frame(&context, &keys.dh, trustee, interval, exchange, peer, out)
    }
}
