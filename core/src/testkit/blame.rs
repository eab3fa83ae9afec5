//! Blame rounds over real keys and pads, for tests: one exchange of a group (clients,
//! trustees, a slot owner), a node that misbehaves in it as the disruptor modes do, the
//! owner's accusation, every node's signed reveal, the verdict (a dispute settled with a
//! DLEQ proof) and the evidence file ([`crate::blame::evidence`]).
//!
//! Its `unwrap`s are on the harness's own keys, never on bytes from elsewhere.

#![allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]

use std::vec;
use std::vec::Vec;

use rand_chacha::rand_core::{RngCore, SeedableRng};
pub use rand_chacha::ChaCha20Rng;

use crate::blame::{
    self, cell_hash, evidence_len, judge, nonces_digest, pick_bit, prove_accusation,
    resolve_dispute, verify_accusation, BlameKind, Culprit, Directory, DisputeFacts,
    EvidenceWriter, Finding, Header, MemberKeys, Reveals, Statement,
};
use crate::crypto::{pad_bit, pad_public_key, IntervalKey, PadNonce, PairKey};
use crate::identity::IdentityKey;
use crate::pseudonym::PseudonymKey;
use crate::ristretto::dleq;
use crate::ristretto::keys::{PublicKey, SecretKey};
use crate::wire::Accusation;
use crate::NONCE_LEN;

/// The interval's view every accusation of the harness binds.
pub const VIEW: [u8; 32] = [0x63; 32];
/// The interval of the harness's exchanges.
pub const INTERVAL: u32 = 9;

/// The harness's randomness, from a seed.
pub fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

/// One node's keys.
pub struct Node {
    /// Its identity key.
    pub identity: IdentityKey,
    /// Its pad secret.
    pub dh_secret: [u8; 32],
    /// Its public keys.
    pub keys: MemberKeys,
}

impl Node {
    /// A node of an identity secret and a pad secret.
    pub fn new(identity: &[u8; 32], dh_secret: &[u8; 32]) -> Node {
        let identity = IdentityKey::from_seed(identity);
        let keys = MemberKeys {
            identity: identity.public(),
            dh: pad_public_key(dh_secret),
        };
        Node {
            identity,
            dh_secret: *dh_secret,
            keys,
        }
    }

    fn random(rng: &mut ChaCha20Rng) -> Node {
        Node::new(&random32(rng), &random32(rng))
    }
}

fn random32(rng: &mut ChaCha20Rng) -> [u8; 32] {
    let mut x = [0u8; 32];
    rng.fill_bytes(&mut x);
    x
}

/// A group: clients (client i owns slot i), trustees, their pair keys and nonces.
pub struct BlameGroup {
    /// The group id.
    pub group_id: [u8; 16],
    /// The session id.
    pub session_id: [u8; 16],
    /// The clients.
    pub clients: Vec<Node>,
    /// The trustees.
    pub trustees: Vec<Node>,
    /// Each client's pseudonym key.
    pub pseudonyms: Vec<PseudonymKey>,
    /// Each client's slot (client i owns slot i unless a test says otherwise).
    pub slots: Vec<u16>,
    /// Each client's link nonce.
    pub client_nonces: Vec<[u8; NONCE_LEN]>,
    /// Each trustee's interval nonce.
    pub trustee_nonces: Vec<[u8; NONCE_LEN]>,
    /// `keys[i][j]`: client i and trustee j's interval key.
    pub keys: Vec<Vec<IntervalKey>>,
}

impl BlameGroup {
    /// A group of `n` clients and `m` trustees with random keys.
    pub fn random(n: usize, m: usize, rng: &mut ChaCha20Rng) -> Self {
        let clients = (0..n).map(|_| Node::random(rng)).collect();
        let trustees = (0..m).map(|_| Node::random(rng)).collect();
        let pseudonyms = (0..n).map(|_| random32(rng)).collect::<Vec<_>>();
        Self::new([0x61; 16], [0x62; 16], clients, trustees, &pseudonyms, rng)
    }

    /// A group of these nodes and pseudonym secrets (client i's is `pseudonyms[i]`).
    pub fn new(
        group_id: [u8; 16],
        session_id: [u8; 16],
        clients: Vec<Node>,
        trustees: Vec<Node>,
        pseudonyms: &[[u8; 32]],
        rng: &mut ChaCha20Rng,
    ) -> Self {
        let pseudonyms = pseudonyms
            .iter()
            .map(|s| PseudonymKey::from_secret(s).unwrap())
            .collect();
        let mut nonce = || {
            let mut x = [0u8; NONCE_LEN];
            rng.fill_bytes(&mut x);
            x
        };
        let client_nonces: Vec<_> = clients.iter().map(|_| nonce()).collect();
        let trustee_nonces: Vec<_> = trustees.iter().map(|_| nonce()).collect();
        let keys = clients
            .iter()
            .zip(&client_nonces)
            .map(|(c, cn)| {
                trustees
                    .iter()
                    .zip(&trustee_nonces)
                    .map(|(t, tn)| {
                        PairKey::agree(&c.dh_secret, &t.keys.dh, true, &group_id, &session_id)
                            .unwrap()
                            .interval_key(INTERVAL, tn, cn)
                    })
                    .collect()
            })
            .collect();
        let slots = (0..clients.len() as u16).collect();
        BlameGroup {
            slots,
            group_id,
            session_id,
            clients,
            trustees,
            pseudonyms,
            client_nonces,
            trustee_nonces,
            keys,
        }
    }
}

impl Directory for BlameGroup {
    fn client(&self, index: u16) -> Option<MemberKeys> {
        self.clients.get(usize::from(index)).map(|c| c.keys)
    }
    fn trustee(&self, index: u16) -> Option<MemberKeys> {
        self.trustees.get(usize::from(index)).map(|t| t.keys)
    }
    fn pseudonym(&self, slot: u16) -> Option<[u8; 32]> {
        let owner = self.slots.iter().position(|&s| s == slot)?;
        self.pseudonyms.get(owner).map(|p| p.public())
    }
}

/// What a misbehaving node does to its cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Misdeed {
    /// Random bytes XORed into its cell (garble-all, garble-every-other, garble-data).
    Garble,
    /// One bit of its cell flipped (flip-payload).
    Flip,
    /// Every other slot's bit of a reservation cell inverted (invert-reservations): the
    /// owner did not ask and sees its bit set.
    InvertReservation,
}

/// Who misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Culpable {
    /// A client, by index.
    Client(usize),
    /// A trustee, by index.
    Trustee(usize),
}

impl Culpable {
    /// As a verdict names it.
    pub fn culprit(self) -> Culprit {
        match self {
            Culpable::Client(i) => Culprit::Client(i as u16),
            Culpable::Trustee(j) => Culprit::Trustee(j as u16),
        }
    }
}

/// How a culprit answers the blame request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Its real cell and its real pad bits.
    Truthful,
    /// Its real cell (the relay's fingerprint forces it), and one pad bit claim flipped so
    /// that its own reveal is consistent.
    LieAboutPad,
}

/// One exchange: what the owner wrote, the cells every node sent, what the relay decoded.
pub struct Exchange {
    /// What the owner wrote (before pads).
    pub written: Vec<u8>,
    /// Each client's cell.
    pub client_cells: Vec<Vec<u8>>,
    /// Each trustee's cell.
    pub trustee_cells: Vec<Vec<u8>>,
    /// The XOR of every cell (a test may forge it).
    pub decoded: Vec<u8>,
    /// The exchange's pad nonce.
    pub pad_nonce: PadNonce,
}

/// Bit `b` of `cell`.
pub fn bit_of(cell: &[u8], b: u32) -> bool {
    cell[(b / 8) as usize] >> (b % 8) & 1 == 1
}

/// The reveals of one round as the relay holds them.
struct Round {
    cell_bits: Vec<bool>,
    client_pads: Vec<Vec<bool>>,
    trustee_cell_bits: Vec<bool>,
    trustee_pads: Vec<Vec<bool>>,
}

impl Reveals for Round {
    fn clients(&self) -> usize {
        self.cell_bits.len()
    }
    fn trustees(&self) -> usize {
        self.trustee_cell_bits.len()
    }
    fn client_index(&self, p: usize) -> u16 {
        p as u16
    }
    fn client_cell_bit(&self, p: usize) -> bool {
        self.cell_bits[p]
    }
    fn client_pad_bit(&self, p: usize, t: usize) -> bool {
        self.client_pads[p][t]
    }
    fn trustee_cell_bit(&self, t: usize) -> bool {
        self.trustee_cell_bits[t]
    }
    fn trustee_pad_bit(&self, t: usize, p: usize) -> bool {
        self.trustee_pads[t][p]
    }
}

fn bitmap(bits: &[bool]) -> Vec<u8> {
    let mut out = vec![0u8; bits.len().div_ceil(8)];
    for (i, &b) in bits.iter().enumerate() {
        if b {
            out[i / 8] |= 1 << (i % 8);
        }
    }
    out
}

impl BlameGroup {
    /// One exchange of `owner`'s slot, `len` bytes, with `misdeed` done by its culprit.
    pub fn exchange(
        &self,
        owner: usize,
        len: usize,
        misdeed: Option<(Culpable, Misdeed)>,
        rng: &mut ChaCha20Rng,
    ) -> Exchange {
        let mut pad_nonce = [0u8; 24];
        rng.fill_bytes(&mut pad_nonce);
        // The owner's whitened cell (random to everyone else), or a reservation request
        // with its bit unset.
        let reservation = matches!(misdeed, Some((_, Misdeed::InvertReservation)));
        let mut written = vec![0u8; len];
        if !reservation {
            rng.fill_bytes(&mut written);
        }
        let mut client_cells: Vec<Vec<u8>> = (0..self.clients.len())
            .map(|i| {
                let mut c = if i == owner {
                    written.clone()
                } else {
                    vec![0u8; len]
                };
                for k in &self.keys[i] {
                    k.apply_pad(&pad_nonce, &mut c);
                }
                c
            })
            .collect();
        let mut trustee_cells: Vec<Vec<u8>> = (0..self.trustees.len())
            .map(|j| {
                let mut c = vec![0u8; len];
                for keys in &self.keys {
                    keys[j].apply_pad(&pad_nonce, &mut c);
                }
                c
            })
            .collect();
        if let Some((who, how)) = misdeed {
            let cell = match who {
                Culpable::Client(i) => &mut client_cells[i],
                Culpable::Trustee(j) => &mut trustee_cells[j],
            };
            match how {
                Misdeed::Garble => {
                    let mut mask = vec![0u8; len];
                    rng.fill_bytes(&mut mask);
                    cell.iter_mut().zip(mask).for_each(|(c, m)| *c ^= m);
                }
                Misdeed::Flip => {
                    let b = rng.next_u32() as usize % (len * 8);
                    cell[b / 8] ^= 1 << (b % 8);
                }
                Misdeed::InvertReservation => {
                    let me = match who {
                        Culpable::Client(i) => i,
                        Culpable::Trustee(_) => usize::MAX,
                    };
                    for s in (0..len * 8).filter(|&s| s != me) {
                        cell[s / 8] ^= 1 << (s % 8);
                    }
                }
            }
        }
        let mut decoded = vec![0u8; len];
        for c in client_cells.iter().chain(&trustee_cells) {
            decoded.iter_mut().zip(c).for_each(|(d, x)| *d ^= x);
        }
        Exchange {
            written,
            client_cells,
            trustee_cells,
            decoded,
            pad_nonce,
        }
    }

    /// The owner of `slot`'s accusation of `bit` of `exchange`, in a group whose slots are
    /// in client order (client `slot` owns slot `slot`; otherwise [`Self::accuse_as`]).
    pub fn accuse(
        &self,
        slot: usize,
        exchange: u64,
        bit: u32,
        rng: &mut ChaCha20Rng,
    ) -> Accusation {
        self.accuse_as(slot, slot, exchange, bit, rng)
    }

    /// An accusation about `slot` proven with the pseudonym key of slot `key` (another
    /// slot's owner forging one when they differ).
    pub fn accuse_as(
        &self,
        key: usize,
        slot: usize,
        exchange: u64,
        bit: u32,
        rng: &mut ChaCha20Rng,
    ) -> Accusation {
        prove_accusation(
            &self.pseudonyms[key],
            &self.group_id,
            &self.session_id,
            &VIEW,
            slot as u16,
            INTERVAL,
            exchange,
            bit,
            rng,
        )
    }

    /// Whether `accusation` about `slot` verifies (as the relay and every node check it).
    pub fn accusation_holds(&self, accusation: &Accusation, slot: usize) -> bool {
        let Some(key) = self.pseudonym(slot as u16) else {
            return false;
        };
        verify_accusation(
            accusation,
            INTERVAL,
            &key,
            &self.group_id,
            &self.session_id,
            &VIEW,
            slot as u16,
        )
    }

    /// The blame round of `accusation` (by the owner of `slot`) over `x`: every node
    /// reveals (`culprit` as `answer` says), the relay judges, settles a dispute (the
    /// honest side proves the pair's secret), and writes the evidence. Returns the verdict
    /// and the evidence.
    pub fn blame_round(
        &self,
        x: &Exchange,
        slot: u16,
        accusation: &Accusation,
        culprit: Option<Culpable>,
        answer: Answer,
        rng: &mut ChaCha20Rng,
    ) -> ((Culprit, BlameKind), Vec<u8>) {
        let b = accusation.bit;
        let (n, m) = (self.clients.len(), self.trustees.len());
        let mut round = Round {
            cell_bits: x.client_cells.iter().map(|c| bit_of(c, b)).collect(),
            client_pads: (0..n)
                .map(|i| {
                    (0..m)
                        .map(|j| pad_bit(&self.keys[i][j], &x.pad_nonce, b))
                        .collect()
                })
                .collect(),
            trustee_cell_bits: x.trustee_cells.iter().map(|c| bit_of(c, b)).collect(),
            trustee_pads: (0..m)
                .map(|j| {
                    (0..n)
                        .map(|i| pad_bit(&self.keys[i][j], &x.pad_nonce, b))
                        .collect()
                })
                .collect(),
        };
        if answer == Answer::LieAboutPad {
            // The culprit flips one of its pad claims (with a random peer) when that makes
            // its reveal consistent.
            match culprit {
                Some(Culpable::Client(i)) => {
                    let xor = round.client_pads[i].iter().fold(false, |a, &p| a ^ p);
                    if xor != round.cell_bits[i] {
                        let j = rng.next_u32() as usize % m;
                        round.client_pads[i][j] ^= true;
                    }
                }
                Some(Culpable::Trustee(j)) => {
                    let xor = round.trustee_pads[j].iter().fold(false, |a, &p| a ^ p);
                    if xor != round.trustee_cell_bits[j] {
                        let i = rng.next_u32() as usize % n;
                        round.trustee_pads[j][i] ^= true;
                    }
                }
                None => {}
            }
        }
        let trustee_nonces = nonces_digest(&self.trustee_nonces);
        let client_nonces = nonces_digest(&self.client_nonces);
        let decoded_hash = cell_hash(&x.decoded);
        let grounds = crate::blame::grounds_digest(
            &VIEW,
            slot,
            0,
            &crate::blame::Grounds::Accused(*accusation),
        );
        let statement = |who, own: &[u8; 32], hash: &[u8; 32], cell_bit, bits: &[u8], count| {
            let trustee = matches!(who, Culprit::Trustee(_));
            Statement {
                round: crate::blame::Round {
                    group_id: &self.group_id,
                    session_id: &self.session_id,
                    interval: INTERVAL,
                    exchange: accusation.exchange,
                    bit: b,
                    grounds: &grounds,
                    pad_nonce: &x.pad_nonce,
                    trustee_nonces: &trustee_nonces,
                },
                who,
                own,
                decoded_hash: if trustee { &[0; 32] } else { &decoded_hash },
                cell_hash: hash,
                cell_bit,
                bits,
                count,
            }
            .digest()
        };
        // The relay judges (and settles a dispute: the honest side answers with a proof).
        let (verdict, dispute) = match judge(&round) {
            Finding::Convicted { who, kind } => ((who, kind), None),
            Finding::Dispute { position, trustee } => {
                let facts = DisputeFacts {
                    group_id: &self.group_id,
                    session_id: &self.session_id,
                    client_dh: &self.clients[position].keys.dh,
                    trustee_dh: &self.trustees[trustee].keys.dh,
                    interval: INTERVAL,
                    trustee_nonce: &self.trustee_nonces[trustee],
                    client_nonce: &self.client_nonces[position],
                    pad_nonce: &x.pad_nonce,
                    bit: b,
                };
                let by_client = culprit != Some(Culpable::Client(position));
                let context = blame::dh_context(
                    &self.group_id,
                    &self.session_id,
                    facts.client_dh,
                    facts.trustee_dh,
                );
                let (secret, peer) = if by_client {
                    (
                        &self.clients[position].dh_secret,
                        &self.trustees[trustee].keys.dh,
                    )
                } else {
                    (
                        &self.trustees[trustee].dh_secret,
                        &self.clients[position].keys.dh,
                    )
                };
                let secret = SecretKey::from_bytes_mod_order(secret).unwrap();
                let peer = PublicKey::from_bytes(peer).unwrap();
                let (shared, proof) = dleq::prove_dh(&context, &secret, &peer, rng);
                let truth = resolve_dispute(&facts, by_client, &shared, &proof).unwrap();
                let who = if round.client_pads[position][trustee] != truth {
                    Culprit::Client(position as u16)
                } else {
                    Culprit::Trustee(trustee as u16)
                };
                (
                    (who, BlameKind::LiedAboutPad),
                    Some((position, trustee, by_client, shared, proof)),
                )
            }
        };
        let trustee_nonce_bytes: Vec<u8> = self.trustee_nonces.concat();
        let header = Header {
            group_id: &self.group_id,
            session_id: &self.session_id,
            view: &VIEW,
            interval: INTERVAL,
            exchange: accusation.exchange,
            bit: accusation.bit,
            grounds: &crate::blame::Grounds::Accused(*accusation),
            cell_len: 0,
            slot,
            pad_nonce: &x.pad_nonce,
            decoded_hash: &decoded_hash,
            trustee_nonces: &trustee_nonce_bytes,
            trustees: m as u16,
            clients: n as u16,
        };
        let d = usize::from(dispute.is_some());
        let mut out = vec![0u8; evidence_len(n, m, d)];
        let mut w = EvidenceWriter::new(&header, d, &mut out).unwrap();
        for i in 0..n {
            let mut own = [0u8; 32];
            own[..NONCE_LEN].copy_from_slice(&self.client_nonces[i]);
            let hash = cell_hash(&x.client_cells[i]);
            let bits = bitmap(&round.client_pads[i]);
            let cell_bit = round.cell_bits[i];
            let digest = statement(
                Culprit::Client(i as u16),
                &own,
                &hash,
                cell_bit,
                &bits,
                m as u16,
            );
            let sig = self.clients[i].identity.sign(&digest);
            w.client(
                i as u16,
                &self.client_nonces[i],
                &hash,
                cell_bit,
                &bits,
                &sig,
            );
        }
        for j in 0..m {
            let hash = cell_hash(&x.trustee_cells[j]);
            let bits = bitmap(&round.trustee_pads[j]);
            let cell_bit = round.trustee_cell_bits[j];
            let digest = statement(
                Culprit::Trustee(j as u16),
                &client_nonces,
                &hash,
                cell_bit,
                &bits,
                n as u16,
            );
            let sig = self.trustees[j].identity.sign(&digest);
            w.trustee(&hash, cell_bit, &bits, &sig);
        }
        if let Some((p, t, by_client, shared, proof)) = dispute {
            w.dispute(p as u16, t as u16, by_client, &shared, &proof);
        }
        let len = w.finish(verdict.0, verdict.1);
        assert_eq!(len, out.len());
        (verdict, out)
    }

    /// Exchanges of `owner`'s slot, each disrupted by `culprit`, until the owner can
    /// accuse (a 0 it wrote decoded as 1); then the blame round. Returns the verdict, the
    /// evidence (checked offline here) and how many exchanges it took.
    #[allow(clippy::too_many_arguments)]
    pub fn disrupt_until_blamed(
        &self,
        owner: usize,
        len: usize,
        culprit: Culpable,
        misdeed: Misdeed,
        answer: Answer,
        rng: &mut ChaCha20Rng,
    ) -> ((Culprit, BlameKind), Vec<u8>, usize) {
        for e in 0..64u64 {
            let x = self.exchange(owner, len, Some((culprit, misdeed)), rng);
            assert_ne!(x.decoded, x.written, "the disruption changed nothing");
            let Some(bit) = pick_bit(&x.written, &x.decoded, rng.next_u32()) else {
                continue;
            };
            assert!(!bit_of(&x.written, bit) && bit_of(&x.decoded, bit));
            let slot = self.slots[owner];
            let accusation = self.accuse_as(owner, usize::from(slot), e, bit, rng);
            // The record's payload is what the relay parses and checks.
            let parsed = Accusation::parse(&accusation.to_bytes()).unwrap();
            assert!(self.accusation_holds(&parsed, usize::from(slot)));
            let (verdict, evidence) =
                self.blame_round(&x, slot, &parsed, Some(culprit), answer, rng);
            let checked = blame::verify(&evidence, self).unwrap();
            assert!(checked.offline);
            assert_eq!((checked.who, checked.kind), verdict);
            assert_eq!(checked.decoded_hash, cell_hash(&x.decoded));
            return (verdict, evidence, e as usize + 1);
        }
        panic!("no accusable bit in 64 disrupted exchanges");
    }
}
