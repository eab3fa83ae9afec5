//! Blame rounds over real keys and pads (`testkit::blame`): one exchange of a group, a
//! node that garbles it as each disruptor mode would, the owner's accusation, every
//! node's signed reveal, the verdict, and the evidence checked from public keys only.
//! Over many seeds and group sizes: the disruptor is always the one named, an honest
//! member never; a false accusation convicts its maker, a non-owner cannot accuse, a
//! trustee lying about a pad bit is convicted by the pair's proven secret, a forged
//! decoding exposes the relay, and evidence changed in any byte is refused or names
//! nobody else.

// Test code: each index, unwrap() and expect() is on a fixture the test itself set up.
#![allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]

use dissent_core::blame::{self, cell_hash, pick_bit, BlameKind, Culprit, EvidenceError};
use dissent_core::testkit::blame::{bit_of, Answer, BlameGroup, Culpable, Misdeed};
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;

#[test]
fn a_disruptor_is_named_over_many_seeds_and_never_an_honest_member() {
    let mut worst = 0;
    for seed in 0..48u64 {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let n = 2 + rng.next_u32() as usize % 14;
        let m = 1 + rng.next_u32() as usize % 4;
        let g = BlameGroup::random(n, m, &mut rng);
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
        let (verdict, _, took) =
            g.disrupt_until_blamed(owner, len, culprit, misdeed, answer, &mut rng);
        worst = worst.max(took);
        let kind = match answer {
            Answer::Truthful => BlameKind::Disrupted,
            Answer::LieAboutPad => BlameKind::LiedAboutPad,
        };
        assert_eq!(
            verdict,
            (culprit.culprit(), kind),
            "seed {seed}: {misdeed:?} by {culprit:?}, {answer:?}"
        );
    }
    println!("accusations took at most {worst} disrupted exchanges");
}

#[test]
fn a_false_accusation_convicts_its_maker_and_a_non_owner_cannot_accuse() {
    let mut rng = ChaCha20Rng::seed_from_u64(5);
    let g = BlameGroup::random(6, 3, &mut rng);
    let owner = 2;
    // Nobody disrupts; the owner accuses a bit it wrote 1 (which the relay decoded as 1).
    let x = g.exchange(owner, 64, None, &mut rng);
    assert_eq!(x.decoded, x.written);
    let bit = (0..512).find(|&b| bit_of(&x.written, b)).unwrap();
    let accusation = g.accuse(owner, 0, bit, &mut rng);
    let (verdict, evidence) = g.blame_round(
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
    let forged = g.accuse_as(4, owner, 0, bit, &mut rng);
    assert!(!g.accusation_holds(&forged, owner));
    // Nor can an accusation be moved to another exchange, bit or slot.
    let mut moved = accusation;
    moved.bit ^= 1;
    assert!(!g.accusation_holds(&moved, owner));
    let mut moved = accusation;
    moved.exchange += 1;
    assert!(!g.accusation_holds(&moved, owner));
    assert!(!g.accusation_holds(&accusation, owner + 1));
    // The evidence of a non-owner's accusation is refused.
    let (_, evidence) = g.blame_round(&x, owner as u16, &forged, None, Answer::Truthful, &mut rng);
    assert_eq!(
        blame::verify(&evidence, &g),
        Err(EvidenceError::BadAccusation)
    );
}

#[test]
fn a_trustee_lying_about_a_pad_bit_is_convicted_by_the_proven_secret() {
    for seed in 0..16 {
        let mut rng = ChaCha20Rng::seed_from_u64(100 + seed);
        let g = BlameGroup::random(5, 3, &mut rng);
        let culprit = Culpable::Trustee(seed as usize % 3);
        let (verdict, _, _) = g.disrupt_until_blamed(
            1,
            48,
            culprit,
            Misdeed::Garble,
            Answer::LieAboutPad,
            &mut rng,
        );
        assert_eq!(verdict, (culprit.culprit(), BlameKind::LiedAboutPad));
    }
}

#[test]
fn a_forged_decoding_exposes_the_relay() {
    let mut rng = ChaCha20Rng::seed_from_u64(11);
    let g = BlameGroup::random(7, 2, &mut rng);
    let owner = 3;
    let mut x = g.exchange(owner, 80, None, &mut rng);
    // The relay publishes a decoding with a bit set that nobody's cell sets.
    let bit = pick_bit(&x.written, &[0xff; 80], 0).unwrap();
    x.decoded[(bit / 8) as usize] ^= 1 << (bit % 8);
    let accused = pick_bit(&x.written, &x.decoded, 0).unwrap();
    assert_eq!(accused, bit);
    let accusation = g.accuse(owner, 0, accused, &mut rng);
    let (verdict, evidence) = g.blame_round(
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
    let g = BlameGroup::random(4, 2, &mut rng);
    let (verdict, evidence, _) = g.disrupt_until_blamed(
        0,
        32,
        Culpable::Client(2),
        Misdeed::Garble,
        Answer::LieAboutPad,
        &mut rng,
    );
    assert_eq!(verdict, (Culprit::Client(2), BlameKind::LiedAboutPad));
    for i in 0..evidence.len() {
        for flip in [0x01u8, 0x80] {
            let mut bad = evidence.clone();
            bad[i] ^= flip;
            if let Ok(v) = blame::verify(&bad, &g) {
                // Only the verdict's kind byte can turn it into the relay's word.
                assert_eq!(v.who, verdict.0, "byte {i}");
                assert!(!v.offline, "byte {i}: {v:?}");
            }
        }
    }
    // Cut short or extended: refused.
    assert!(blame::verify(&evidence[..evidence.len() - 1], &g).is_err());
    let mut longer = evidence.clone();
    longer.push(0);
    assert!(blame::verify(&longer, &g).is_err());
}
