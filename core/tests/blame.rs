//! Blame rounds over real keys and pads: one exchange of a group (clients, trustees, a
//! slot owner), a disruptor that garbles it as each disruptor mode would, the owner's
//! accusation, every member's signed reveal, the verdict, and the evidence checked from
//! public keys only. Over many seeds and group sizes: the disruptor is always the one
//! named, an honest member never; a false accusation convicts its maker, a trustee lying
//! about a pad bit is convicted by the pair's proven secret, a forged decoding exposes the
//! relay, and evidence changed in any byte is refused or names nobody else.

// Test code: each index, unwrap() and expect() is on a fixture the test itself set up.
#![allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]

use dissent_core::blame::{
    self, cell_hash, evidence_len, judge, nonces_digest, pick_bit, prove_accusation,
    resolve_dispute, verify_accusation, BlameKind, Culprit, Directory, DisputeFacts, EvidenceError,
    EvidenceWriter, Finding, Header, MemberKeys, Reveals, Statement,
};
use dissent_core::crypto::{pad_bit, pad_public_key, IntervalKey, PadNonce, PairKey};
use dissent_core::identity::IdentityKey;
use dissent_core::pseudonym::PseudonymKey;
use dissent_core::ristretto::dleq;
use dissent_core::ristretto::keys::SecretKey;
use dissent_core::wire::Accusation;
use dissent_core::NONCE_LEN;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;

const GROUP: [u8; 16] = [0x61; 16];
const SESSION: [u8; 16] = [0x62; 16];
const VIEW: [u8; 32] = [0x63; 32];
const INTERVAL: u32 = 9;

struct Node {
    identity: IdentityKey,
    dh_secret: [u8; 32],
    keys: MemberKeys,
}

fn node(rng: &mut ChaCha20Rng) -> Node {
    let mut id = [0u8; 32];
    rng.fill_bytes(&mut id);
    let mut dh_secret = [0u8; 32];
    rng.fill_bytes(&mut dh_secret);
    let identity = IdentityKey::from_seed(&id);
    let keys = MemberKeys {
        identity: identity.public(),
        dh: pad_public_key(&dh_secret),
    };
    Node {
        identity,
        dh_secret,
        keys,
    }
}

/// A group: `n` clients (client i owns slot i), `m` trustees, their pair keys and nonces.
struct Group {
    clients: Vec<Node>,
    trustees: Vec<Node>,
    pseudonyms: Vec<PseudonymKey>,
    client_nonces: Vec<[u8; NONCE_LEN]>,
    trustee_nonces: Vec<[u8; NONCE_LEN]>,
    /// keys[i][j]: client i and trustee j's interval key.
    keys: Vec<Vec<IntervalKey>>,
}

impl Group {
    fn new(n: usize, m: usize, rng: &mut ChaCha20Rng) -> Self {
        let clients: Vec<Node> = (0..n).map(|_| node(rng)).collect();
        let trustees: Vec<Node> = (0..m).map(|_| node(rng)).collect();
        let pseudonyms = (0..n)
            .map(|_| {
                let mut s = [0u8; 32];
                rng.fill_bytes(&mut s);
                PseudonymKey::from_secret(&s).unwrap()
            })
            .collect();
        let mut nonce = || {
            let mut x = [0u8; NONCE_LEN];
            rng.fill_bytes(&mut x);
            x
        };
        let client_nonces: Vec<_> = (0..n).map(|_| nonce()).collect();
        let trustee_nonces: Vec<_> = (0..m).map(|_| nonce()).collect();
        let keys = clients
            .iter()
            .zip(&client_nonces)
            .map(|(c, cn)| {
                trustees
                    .iter()
                    .zip(&trustee_nonces)
                    .map(|(t, tn)| {
                        PairKey::agree(&c.dh_secret, &t.keys.dh, true, &GROUP, &SESSION)
                            .unwrap()
                            .interval_key(INTERVAL, tn, cn)
                    })
                    .collect()
            })
            .collect();
        Group {
            clients,
            trustees,
            pseudonyms,
            client_nonces,
            trustee_nonces,
            keys,
        }
    }
}

impl Directory for Group {
    fn client(&self, index: u16) -> Option<MemberKeys> {
        self.clients.get(usize::from(index)).map(|c| c.keys)
    }
    fn trustee(&self, index: u16) -> Option<MemberKeys> {
        self.trustees.get(usize::from(index)).map(|t| t.keys)
    }
    fn pseudonym(&self, slot: u16) -> Option<[u8; 32]> {
        self.pseudonyms.get(usize::from(slot)).map(|p| p.public())
    }
}

/// What a misbehaving node does.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Misdeed {
    /// Random bytes XORed into its cell (garble-all, garble-every-other, garble-data).
    Garble,
    /// One bit of its cell flipped (flip-payload).
    Flip,
    /// Every other slot's bit of a reservation cell inverted (invert-reservations): the
    /// owner did not ask and sees its bit set.
    InvertReservation,
}

/// Who misbehaves, and how it reveals.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Culpable {
    Client(usize),
    Trustee(usize),
}

/// How a culprit answers the blame request.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Answer {
    /// Its real cell and its real pad bits.
    Truthful,
    /// Its real cell (the relay's fingerprint forces it), and one pad bit claim flipped
    /// so that its own reveal is consistent.
    LieAboutPad,
}

/// One exchange: the cells every node sent, and what the relay decoded.
struct Exchange {
    written: Vec<u8>,
    client_cells: Vec<Vec<u8>>,
    trustee_cells: Vec<Vec<u8>>,
    decoded: Vec<u8>,
    pad_nonce: PadNonce,
}

fn exchange(
    g: &Group,
    owner: usize,
    len: usize,
    misdeed: Option<(Culpable, Misdeed)>,
    rng: &mut ChaCha20Rng,
) -> Exchange {
    let mut pad_nonce = [0u8; 24];
    rng.fill_bytes(&mut pad_nonce);
    // The owner's whitened cell (random to everyone else), or a reservation request with
    // its bit unset.
    let reservation = matches!(misdeed, Some((_, Misdeed::InvertReservation)));
    let mut written = vec![0u8; len];
    if !reservation {
        rng.fill_bytes(&mut written);
    }
    let mut client_cells: Vec<Vec<u8>> = (0..g.clients.len())
        .map(|i| {
            let mut c = if i == owner {
                written.clone()
            } else {
                vec![0u8; len]
            };
            for k in &g.keys[i] {
                k.apply_pad(&pad_nonce, &mut c);
            }
            c
        })
        .collect();
    let mut trustee_cells: Vec<Vec<u8>> = (0..g.trustees.len())
        .map(|j| {
            let mut c = vec![0u8; len];
            for keys in &g.keys {
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
                for s in 0..len * 8 {
                    if s != me {
                        cell[s / 8] ^= 1 << (s % 8);
                    }
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

fn bit_of(cell: &[u8], b: u32) -> bool {
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

/// Runs the blame round of `accusation` over exchange `x`: every node reveals (the
/// culprit as `answer` says), the relay judges and settles a dispute, and writes the
/// evidence. Returns the verdict and the evidence.
fn blame_round(
    g: &Group,
    x: &Exchange,
    slot: u16,
    accusation: &Accusation,
    culprit: Option<Culpable>,
    answer: Answer,
    rng: &mut ChaCha20Rng,
) -> ((Culprit, BlameKind), Vec<u8>) {
    let b = accusation.bit;
    let (n, m) = (g.clients.len(), g.trustees.len());
    let mut round = Round {
        cell_bits: x.client_cells.iter().map(|c| bit_of(c, b)).collect(),
        client_pads: (0..n)
            .map(|i| {
                (0..m)
                    .map(|j| pad_bit(&g.keys[i][j], &x.pad_nonce, b))
                    .collect()
            })
            .collect(),
        trustee_cell_bits: x.trustee_cells.iter().map(|c| bit_of(c, b)).collect(),
        trustee_pads: (0..m)
            .map(|j| {
                (0..n)
                    .map(|i| pad_bit(&g.keys[i][j], &x.pad_nonce, b))
                    .collect()
            })
            .collect(),
    };
    if answer == Answer::LieAboutPad {
        // The culprit flips one of its pad claims (with a random peer) when that makes its
        // reveal consistent.
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
    let trustee_nonces = nonces_digest(&g.trustee_nonces);
    let client_nonces = nonces_digest(&g.client_nonces);
    let statement = |who, own: &[u8; 32], hash: &[u8; 32], cell_bit, bits: &[u8], count| {
        Statement {
            group_id: &GROUP,
            session_id: &SESSION,
            who,
            interval: INTERVAL,
            exchange: accusation.exchange,
            bit: b,
            pad_nonce: &x.pad_nonce,
            trustee_nonces: &trustee_nonces,
            own,
            cell_hash: hash,
            cell_bit,
            bits,
            count,
        }
        .digest()
    };
    // The relay judges (and settles a dispute: the honest side answers with its proof).
    let (verdict, dispute) = match judge(&round) {
        Finding::Convicted { who, kind } => ((who, kind), None),
        Finding::Dispute { position, trustee } => {
            let facts = DisputeFacts {
                group_id: &GROUP,
                session_id: &SESSION,
                client_dh: &g.clients[position].keys.dh,
                trustee_dh: &g.trustees[trustee].keys.dh,
                interval: INTERVAL,
                trustee_nonce: &g.trustee_nonces[trustee],
                client_nonce: &g.client_nonces[position],
                pad_nonce: &x.pad_nonce,
                bit: b,
            };
            let by_client = culprit != Some(Culpable::Client(position));
            let context = blame::dh_context(&GROUP, &SESSION, facts.client_dh, facts.trustee_dh);
            let (secret, peer) = if by_client {
                (&g.clients[position].dh_secret, &g.trustees[trustee].keys.dh)
            } else {
                (&g.trustees[trustee].dh_secret, &g.clients[position].keys.dh)
            };
            let secret = SecretKey::from_bytes_mod_order(secret).unwrap();
            let peer = dissent_core::ristretto::keys::PublicKey::from_bytes(peer).unwrap();
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
    let trustee_nonce_bytes: Vec<u8> = g.trustee_nonces.concat();
    let decoded_hash = cell_hash(&x.decoded);
    let header = Header {
        group_id: &GROUP,
        session_id: &SESSION,
        view: &VIEW,
        interval: INTERVAL,
        accusation,
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
        own[..NONCE_LEN].copy_from_slice(&g.client_nonces[i]);
        let hash = cell_hash(&x.client_cells[i]);
        let bits = bitmap(&round.client_pads[i]);
        let digest = statement(
            Culprit::Client(i as u16),
            &own,
            &hash,
            round.cell_bits[i],
            &bits,
            m as u16,
        );
        let sig = g.clients[i].identity.sign(&digest);
        w.client(
            i as u16,
            &g.client_nonces[i],
            &hash,
            round.cell_bits[i],
            &bits,
            &sig,
        );
    }
    for j in 0..m {
        let hash = cell_hash(&x.trustee_cells[j]);
        let bits = bitmap(&round.trustee_pads[j]);
        let digest = statement(
            Culprit::Trustee(j as u16),
            &client_nonces,
            &hash,
            round.trustee_cell_bits[j],
            &bits,
            n as u16,
        );
        let sig = g.trustees[j].identity.sign(&digest);
        w.trustee(&hash, round.trustee_cell_bits[j], &bits, &sig);
    }
    if let Some((p, t, by_client, shared, proof)) = dispute {
        w.dispute(p as u16, t as u16, by_client, &shared, &proof);
    }
    let len = w.finish(verdict.0, verdict.1);
    assert_eq!(len, out.len());
    (verdict, out)
}

/// Exchanges of `owner`'s slot, each disrupted, until the owner can accuse (a 0 it wrote
/// decoded as 1); then the blame round. Returns the verdict (checked offline from the
/// evidence) and how many exchanges it took.
fn disrupt_until_blamed(
    g: &Group,
    owner: usize,
    len: usize,
    culprit: Culpable,
    misdeed: Misdeed,
    answer: Answer,
    rng: &mut ChaCha20Rng,
) -> ((Culprit, BlameKind), usize) {
    for e in 0..64u64 {
        let x = exchange(g, owner, len, Some((culprit, misdeed)), rng);
        assert_ne!(x.decoded, x.written, "the disruption changed nothing");
        let Some(bit) = pick_bit(&x.written, &x.decoded, rng.next_u32()) else {
            continue;
        };
        assert!(!bit_of(&x.written, bit) && bit_of(&x.decoded, bit));
        let accusation = prove_accusation(
            &g.pseudonyms[owner],
            &GROUP,
            &SESSION,
            &VIEW,
            owner as u16,
            INTERVAL,
            e,
            bit,
            rng,
        );
        // The record's payload is what the relay parses and checks.
        let parsed = Accusation::parse(&accusation.to_bytes()).unwrap();
        assert!(verify_accusation(
            &parsed,
            INTERVAL,
            &g.pseudonyms[owner].public(),
            &GROUP,
            &SESSION,
            &VIEW,
            owner as u16
        ));
        let (verdict, evidence) =
            blame_round(g, &x, owner as u16, &parsed, Some(culprit), answer, rng);
        let checked = blame::verify(&evidence, g).unwrap();
        assert!(checked.offline);
        assert_eq!((checked.who, checked.kind), verdict);
        assert_eq!(checked.decoded_hash, cell_hash(&x.decoded));
        return (verdict, e as usize + 1);
    }
    panic!("no accusable bit in 64 disrupted exchanges");
}

#[test]
fn a_disruptor_is_named_over_many_seeds_and_never_an_honest_member() {
    let mut worst = 0;
    for seed in 0..48u64 {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let n = 2 + rng.next_u32() as usize % 14;
        let m = 1 + rng.next_u32() as usize % 4;
        let g = Group::new(n, m, &mut rng);
        let owner = rng.next_u32() as usize % n;
        let misdeed =
            [Misdeed::Garble, Misdeed::Flip, Misdeed::InvertReservation][seed as usize % 3];
        // A trustee disrupts one seed in four (garbling or flipping: trustees have no slot).
        let culprit = if seed % 4 == 3 && misdeed != Misdeed::InvertReservation {
            Culpable::Trustee(rng.next_u32() as usize % m)
        } else {
            let others: Vec<usize> = (0..n).filter(|&i| i != owner).collect();
            Culpable::Client(others[rng.next_u32() as usize % others.len()])
        };
        let answer = if seed % 2 == 0 {
            Answer::Truthful
        } else {
            Answer::LieAboutPad
        };
        let len = match misdeed {
            Misdeed::InvertReservation => n.div_ceil(8),
            _ => 16 + rng.next_u32() as usize % 200,
        };
        let (verdict, took) =
            disrupt_until_blamed(&g, owner, len, culprit, misdeed, answer, &mut rng);
        worst = worst.max(took);
        let expected = match culprit {
            Culpable::Client(i) => Culprit::Client(i as u16),
            Culpable::Trustee(j) => Culprit::Trustee(j as u16),
        };
        let kind = match answer {
            Answer::Truthful => BlameKind::Disrupted,
            Answer::LieAboutPad => BlameKind::LiedAboutPad,
        };
        assert_eq!(
            verdict,
            (expected, kind),
            "seed {seed}: {misdeed:?} by {culprit:?}, {answer:?}"
        );
    }
    println!("accusations took at most {worst} disrupted exchanges");
}

#[test]
fn a_false_accusation_convicts_its_maker_and_a_non_owner_cannot_accuse() {
    let mut rng = ChaCha20Rng::seed_from_u64(5);
    let g = Group::new(6, 3, &mut rng);
    let owner = 2;
    // Nobody disrupts; the owner accuses a bit it wrote 1 (which the relay decoded as 1).
    let x = exchange(&g, owner, 64, None, &mut rng);
    assert_eq!(x.decoded, x.written);
    let bit = (0..512).find(|&b| bit_of(&x.written, b)).unwrap();
    let accusation = prove_accusation(
        &g.pseudonyms[owner],
        &GROUP,
        &SESSION,
        &VIEW,
        owner as u16,
        INTERVAL,
        0,
        bit,
        &mut rng,
    );
    let (verdict, evidence) = blame_round(
        &g,
        &x,
        owner as u16,
        &accusation,
        None,
        Answer::Truthful,
        &mut rng,
    );
    assert_eq!(
        verdict,
        (Culprit::Client(owner as u16), BlameKind::Disrupted)
    );
    assert_eq!(blame::verify(&evidence, &g).unwrap().who, verdict.0);
    // Another member's pseudonym cannot accuse about the owner's slot.
    let forged = prove_accusation(
        &g.pseudonyms[4],
        &GROUP,
        &SESSION,
        &VIEW,
        owner as u16,
        INTERVAL,
        0,
        bit,
        &mut rng,
    );
    assert!(!verify_accusation(
        &forged,
        INTERVAL,
        &g.pseudonyms[owner].public(),
        &GROUP,
        &SESSION,
        &VIEW,
        owner as u16
    ));
    // Nor can an accusation be moved to another exchange, bit, slot or view.
    let p = g.pseudonyms[owner].public();
    let mut moved = accusation;
    moved.bit ^= 1;
    assert!(!verify_accusation(
        &moved,
        INTERVAL,
        &p,
        &GROUP,
        &SESSION,
        &VIEW,
        owner as u16
    ));
    let mut moved = accusation;
    moved.exchange += 1;
    assert!(!verify_accusation(
        &moved,
        INTERVAL,
        &p,
        &GROUP,
        &SESSION,
        &VIEW,
        owner as u16
    ));
    assert!(!verify_accusation(
        &accusation,
        INTERVAL,
        &p,
        &GROUP,
        &SESSION,
        &[0; 32],
        owner as u16
    ));
    assert!(!verify_accusation(
        &accusation,
        INTERVAL,
        &p,
        &GROUP,
        &SESSION,
        &VIEW,
        owner as u16 + 1
    ));
    assert!(!verify_accusation(
        &accusation,
        INTERVAL + 1,
        &p,
        &GROUP,
        &SESSION,
        &VIEW,
        owner as u16
    ));
    // The evidence of a non-owner's accusation is refused.
    let (_, evidence) = blame_round(
        &g,
        &x,
        owner as u16,
        &forged,
        None,
        Answer::Truthful,
        &mut rng,
    );
    assert_eq!(
        blame::verify(&evidence, &g),
        Err(EvidenceError::BadAccusation)
    );
}

#[test]
fn a_trustee_lying_about_a_pad_bit_is_convicted_by_the_proven_secret() {
    for seed in 0..16 {
        let mut rng = ChaCha20Rng::seed_from_u64(100 + seed);
        let g = Group::new(5, 3, &mut rng);
        let culprit = Culpable::Trustee(seed as usize % 3);
        let (verdict, _) = disrupt_until_blamed(
            &g,
            1,
            48,
            culprit,
            Misdeed::Garble,
            Answer::LieAboutPad,
            &mut rng,
        );
        assert_eq!(
            verdict,
            (Culprit::Trustee(seed as u16 % 3), BlameKind::LiedAboutPad)
        );
    }
}

#[test]
fn a_forged_decoding_exposes_the_relay() {
    let mut rng = ChaCha20Rng::seed_from_u64(11);
    let g = Group::new(7, 2, &mut rng);
    let owner = 3;
    let mut x = exchange(&g, owner, 80, None, &mut rng);
    // The relay publishes a decoding with a bit set that nobody's cell sets.
    let bit = pick_bit(&x.written, &[0xff; 80], 0).unwrap();
    x.decoded[(bit / 8) as usize] ^= 1 << (bit % 8);
    let accusation = prove_accusation(
        &g.pseudonyms[owner],
        &GROUP,
        &SESSION,
        &VIEW,
        owner as u16,
        INTERVAL,
        0,
        pick_bit(&x.written, &x.decoded, 0).unwrap(),
        &mut rng,
    );
    let (verdict, evidence) = blame_round(
        &g,
        &x,
        owner as u16,
        &accusation,
        None,
        Answer::Truthful,
        &mut rng,
    );
    assert_eq!(verdict, (Culprit::Relay, BlameKind::ForgedDecoding));
    let checked = blame::verify(&evidence, &g).unwrap();
    assert_eq!(checked.who, Culprit::Relay);
    assert_eq!(checked.decoded_hash, cell_hash(&x.decoded));
}

#[test]
fn evidence_changed_in_any_byte_is_refused_or_names_nobody_else() {
    let mut rng = ChaCha20Rng::seed_from_u64(21);
    let g = Group::new(4, 2, &mut rng);
    let (verdict, _) = disrupt_until_blamed(
        &g,
        0,
        32,
        Culpable::Client(2),
        Misdeed::Garble,
        Answer::LieAboutPad,
        &mut rng,
    );
    assert_eq!(verdict.0, Culprit::Client(2));
    // Rebuild that round's evidence to tamper with.
    let mut rng = ChaCha20Rng::seed_from_u64(21);
    let g = Group::new(4, 2, &mut rng);
    let x = loop {
        let x = exchange(
            &g,
            0,
            32,
            Some((Culpable::Client(2), Misdeed::Garble)),
            &mut rng,
        );
        if pick_bit(&x.written, &x.decoded, 0).is_some() {
            break x;
        }
    };
    let bit = pick_bit(&x.written, &x.decoded, 0).unwrap();
    let accusation = prove_accusation(
        &g.pseudonyms[0],
        &GROUP,
        &SESSION,
        &VIEW,
        0,
        INTERVAL,
        3,
        bit,
        &mut rng,
    );
    let (verdict, evidence) = blame_round(
        &g,
        &x,
        0,
        &accusation,
        Some(Culpable::Client(2)),
        Answer::LieAboutPad,
        &mut rng,
    );
    let good = blame::verify(&evidence, &g).unwrap();
    assert_eq!((good.who, good.kind), verdict);
    for i in 0..evidence.len() {
        for flip in [0x01u8, 0x80] {
            let mut bad = evidence.clone();
            bad[i] ^= flip;
            match blame::verify(&bad, &g) {
                Err(_) => {}
                Ok(v) => assert!(
                    v.who == verdict.0 || v.kind == BlameKind::RefusedBlame,
                    "byte {i}: {v:?}"
                ),
            }
        }
    }
    // Cut short or extended: refused.
    assert!(blame::verify(&evidence[..evidence.len() - 1], &g).is_err());
    let mut longer = evidence.clone();
    longer.push(0);
    assert!(blame::verify(&longer, &g).is_err());
}
