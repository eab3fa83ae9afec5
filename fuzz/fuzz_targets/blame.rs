//! Blame evidence made of arbitrary bytes, and a valid evidence file changed at arbitrary
//! places, checked from a group's public keys: errors or a verdict, never a panic; a
//! changed file never names another node offline.
#![no_main]

use dissent_core::blame::{self, BlameKind, Culprit};
use dissent_core::testkit::blame::{rng, Answer, BlameGroup, Culpable, Misdeed};
use libfuzzer_sys::fuzz_target;

struct Fixture {
    group: BlameGroup,
    evidence: Vec<u8>,
    verdict: (Culprit, BlameKind),
}

fn fixture() -> Fixture {
    let mut rng = rng(3);
    let group = BlameGroup::random(4, 2, &mut rng);
    let (verdict, evidence, _) = group.disrupt_until_blamed(
        0,
        24,
        Culpable::Client(2),
        Misdeed::Garble,
        Answer::LieAboutPad,
        &mut rng,
    );
    Fixture {
        group,
        evidence,
        verdict,
    }
}

thread_local! {
    static FIXTURE: Fixture = fixture();
}

fuzz_target!(|data: &[u8]| FIXTURE.with(|f| {
    let _ = blame::verify(data, &f.group);
    // The valid file with each (offset, xor) pair of the input applied.
    let mut changed = f.evidence.clone();
    for pair in data.chunks(3) {
        if let [hi, lo, x] = *pair {
            let at = usize::from(u16::from_be_bytes([hi, lo])) % changed.len();
            changed[at] ^= x;
        }
    }
    if let Ok(v) = blame::verify(&changed, &f.group) {
        assert!(
            v.who == f.verdict.0 || !v.offline,
            "a changed file names {:?}",
            v.who
        );
    }
}));
