use std::vec;
use std::vec::Vec;

use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

use super::*;
use crate::ristretto::elgamal::{joint_key, Ciphertext};
use crate::ristretto::encoding;
use crate::ristretto::keys::SecretKey;

const CONTEXT: &[u8] = b"test group, epoch 1, trustee 0";

struct Setup {
    secret: SecretKey,
    key: PublicKey,
    width: usize,
    inputs: Vec<u8>,
    outputs: Vec<u8>,
    proof: Vec<u8>,
}

fn message(i: usize, k: usize) -> [u8; 6] {
    let mut m = *b"row  k";
    m[3] = i as u8;
    m[4] = (i >> 8) as u8;
    m[5] = k as u8;
    m
}

fn encrypt_rows(
    key: &PublicKey,
    n: usize,
    width: usize,
    salt: u8,
    rng: &mut ChaCha20Rng,
) -> Vec<u8> {
    let mut rows = Vec::with_capacity(rows_len(n, width));
    for i in 0..n {
        for k in 0..width {
            let mut m = message(i, k);
            m[0] ^= salt;
            let point = encoding::encode(&m).unwrap();
            rows.extend_from_slice(&Ciphertext::encrypt(key, &point, rng).to_bytes());
        }
    }
    rows
}

fn shuffle(
    key: &PublicKey,
    width: usize,
    inputs: &[u8],
    rng: &mut ChaCha20Rng,
) -> (Vec<u8>, Vec<u8>) {
    let n = inputs.len() / row_len(width);
    let mut outputs = vec![0u8; inputs.len()];
    let mut proof = vec![0u8; proof_len(n, width)];
    let mut slots = vec![ProverSlot::EMPTY; n];
    prove(
        CONTEXT,
        key,
        width,
        inputs,
        &mut outputs,
        &mut proof,
        &mut slots,
        rng,
    )
    .unwrap();
    (outputs, proof)
}

fn setup(n: usize, width: usize, seed: u8) -> Setup {
    let mut rng = ChaCha20Rng::from_seed([seed; 32]);
    let secret = SecretKey::generate(&mut rng);
    let key = joint_key(&[secret.public_key()]).unwrap();
    let inputs = encrypt_rows(&key, n, width, 0, &mut rng);
    let (outputs, proof) = shuffle(&key, width, &inputs, &mut rng);
    Setup {
        secret,
        key,
        width,
        inputs,
        outputs,
        proof,
    }
}

fn both(s: &Setup, inputs: &[u8], outputs: &[u8], proof: &[u8]) -> Result<(), ShuffleError> {
    let streaming = verify_streaming(CONTEXT, &s.key, s.width, inputs, outputs, proof);
    let batched = verify(CONTEXT, &s.key, s.width, inputs, outputs, proof);
    assert_eq!(streaming, batched, "the two verifiers disagree");
    streaming
}

fn decrypt_rows(s: &Setup, rows: &[u8]) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = rows
        .chunks_exact(row_len(s.width))
        .map(|row| {
            row.chunks_exact(64)
                .flat_map(|ct| {
                    let ct = Ciphertext::from_bytes(ct.try_into().unwrap()).unwrap();
                    let m = encoding::decode(&ct.decrypt(&s.secret)).unwrap();
                    m.as_bytes().to_vec()
                })
                .collect()
        })
        .collect();
    out.sort();
    out
}

#[test]
fn honest_shuffles_verify_and_keep_every_row() {
    for width in [1, 2] {
        for n in [1, 2, 3, 64] {
            let s = setup(n, width, (n + 10 * width) as u8);
            assert_eq!(
                both(&s, &s.inputs, &s.outputs, &s.proof),
                Ok(()),
                "n {n} ω {width}"
            );
            // The same rows, whole (a row's ciphertexts stay together), none equal to its input.
            assert_eq!(decrypt_rows(&s, &s.inputs), decrypt_rows(&s, &s.outputs));
            for (a, b) in s.inputs.chunks_exact(64).zip(s.outputs.chunks_exact(64)) {
                assert_ne!(a, b);
            }
        }
    }
}

#[test]
fn a_shuffle_of_a_shuffle_verifies_and_the_permutation_varies() {
    let s = setup(8, 2, 1);
    let mut rng = ChaCha20Rng::from_seed([9; 32]);
    let (outputs2, proof2) = shuffle(&s.key, 2, &s.outputs, &mut rng);
    assert_eq!(both(&s, &s.outputs, &outputs2, &proof2), Ok(()));
    // Permutations of 8 rows under different seeds: not all the identity, not all equal.
    let first_rows: Vec<Vec<u8>> = (0..6u8)
        .map(|seed| {
            let mut rng = ChaCha20Rng::from_seed([100 + seed; 32]);
            let (out, _) = shuffle(&s.key, 2, &s.inputs, &mut rng);
            let ct = Ciphertext::from_bytes(out[..64].try_into().unwrap()).unwrap();
            encoding::decode(&ct.decrypt(&s.secret))
                .unwrap()
                .as_bytes()
                .to_vec()
        })
        .collect();
    let mut distinct = first_rows.clone();
    distinct.sort();
    distinct.dedup();
    assert!(distinct.len() > 1, "{first_rows:?}");
}

#[test]
fn tampered_outputs_are_refused() {
    for width in [1, 2] {
        let s = setup(5, width, 40 + width as u8);
        let row = row_len(width);
        let mut rng = ChaCha20Rng::from_seed([41; 32]);

        // Two output rows swapped, original proof.
        let mut swapped = s.outputs.clone();
        let (a, b) = swapped.split_at_mut(row);
        a.swap_with_slice(&mut b[..row]);
        assert!(matches!(
            both(&s, &s.inputs, &swapped, &s.proof),
            Err(ShuffleError::Equation(_))
        ));

        // One output ciphertext replaced by a fresh encryption of something else.
        let mut replaced = s.outputs.clone();
        let other = encoding::encode(b"someone else's key").unwrap();
        replaced[row..row + 64]
            .copy_from_slice(&Ciphertext::encrypt(&s.key, &other, &mut rng).to_bytes());
        assert!(matches!(
            both(&s, &s.inputs, &replaced, &s.proof),
            Err(ShuffleError::Equation(_))
        ));

        // One output row duplicated over another.
        let mut duplicated = s.outputs.clone();
        duplicated.copy_within(0..row, 2 * row);
        assert!(matches!(
            both(&s, &s.inputs, &duplicated, &s.proof),
            Err(ShuffleError::Equation(_))
        ));

        // A valid shuffle, with its own valid proof, of a different list.
        let different = encrypt_rows(&s.key, 5, width, 0x80, &mut rng);
        let (outputs_d, proof_d) = shuffle(&s.key, width, &different, &mut rng);
        assert_eq!(both(&s, &different, &outputs_d, &proof_d), Ok(()));
        assert!(matches!(
            both(&s, &s.inputs, &outputs_d, &proof_d),
            Err(ShuffleError::Equation(_))
        ));
        // And a re-encryption of the same list under the original proof.
        let (outputs_again, _) = shuffle(&s.key, width, &s.inputs, &mut rng);
        assert!(matches!(
            both(&s, &s.inputs, &outputs_again, &s.proof),
            Err(ShuffleError::Equation(_))
        ));

        // The proof for another key, and another context.
        let other_key = SecretKey::generate(&mut rng).public_key();
        assert!(matches!(
            verify_streaming(CONTEXT, &other_key, width, &s.inputs, &s.outputs, &s.proof),
            Err(ShuffleError::Equation(_))
        ));
        assert!(matches!(
            verify(CONTEXT, &other_key, width, &s.inputs, &s.outputs, &s.proof),
            Err(ShuffleError::Equation(_))
        ));
        assert!(matches!(
            verify(
                b"another epoch",
                &s.key,
                width,
                &s.inputs,
                &s.outputs,
                &s.proof
            ),
            Err(ShuffleError::Equation(_))
        ));
    }
}

#[test]
fn a_cheater_that_drops_one_row_and_proves_honestly_otherwise_fails() {
    // The prover replaces one input row by its own before shuffling: outputs and proof are
    // honest for the replaced list, and must fail against the real one.
    let s = setup(6, 2, 50);
    let mut rng = ChaCha20Rng::from_seed([51; 32]);
    let mut forged = s.inputs.clone();
    let own = encrypt_rows(&s.key, 1, 2, 0x40, &mut rng);
    forged[3 * 128..4 * 128].copy_from_slice(&own);
    let (outputs, proof) = shuffle(&s.key, 2, &forged, &mut rng);
    assert!(matches!(
        both(&s, &s.inputs, &outputs, &proof),
        Err(ShuffleError::Equation(_))
    ));
}

#[test]
fn malformed_proofs_and_rows_are_typed_errors() {
    let s = setup(3, 2, 60);
    let ok = |proof: &[u8]| both(&s, &s.inputs, &s.outputs, proof);
    assert_eq!(
        ok(&s.proof[..s.proof.len() - 1]),
        Err(ShuffleError::ProofLength)
    );
    assert_eq!(ok(&[]), Err(ShuffleError::ProofLength));
    let mut longer = s.proof.clone();
    longer.push(0);
    assert_eq!(ok(&longer), Err(ShuffleError::ProofLength));
    assert_eq!(
        ok(&vec![0xff; s.proof.len()]),
        Err(ShuffleError::Point {
            part: Part::PermutationCommitment,
            index: 0
        })
    );
    // Garbage of the right length that decodes everywhere: zero points, zero scalars.
    assert!(matches!(
        ok(&vec![0; s.proof.len()]),
        Err(ShuffleError::Equation(_))
    ));
    // Every 32-byte item of the proof, changed, is refused (bit flips and a non-canonical
    // scalar in the responses).
    for item in 0..s.proof.len() / 32 {
        let mut p = s.proof.clone();
        p[32 * item] ^= 0x04;
        assert!(ok(&p).is_err(), "item {item}");
    }
    // s'_1 of 3 rows of width 2 is response 3 + ω + n + 1 (counted from s1), and the
    // responses start at item 3n + 3 + 2ω of the proof.
    let (n, width) = (3, 2);
    let response = 3 + width + n + 1;
    let mut p = s.proof.clone();
    p[32 * (3 * n + 3 + 2 * width + response) + 31] = 0xff;
    assert_eq!(ok(&p), Err(ShuffleError::Scalar { index: response }));

    // Rows: wrong width, ragged lengths, non-canonical ciphertexts.
    assert_eq!(
        verify(CONTEXT, &s.key, 0, &s.inputs, &s.outputs, &s.proof),
        Err(ShuffleError::Width)
    );
    assert_eq!(
        verify(CONTEXT, &s.key, 5, &s.inputs, &s.outputs, &s.proof),
        Err(ShuffleError::Width)
    );
    assert_eq!(
        verify(CONTEXT, &s.key, 2, &s.inputs[..100], &s.outputs, &s.proof),
        Err(ShuffleError::Rows)
    );
    assert_eq!(
        verify(CONTEXT, &s.key, 2, &[], &[], &[]),
        Err(ShuffleError::Rows)
    );
    assert_eq!(
        verify(CONTEXT, &s.key, 2, &s.inputs, &s.outputs[..128], &s.proof),
        Err(ShuffleError::OutputsLength)
    );
    // A 3-row proof read as width 1 (6 rows): wrong length.
    assert_eq!(
        verify(CONTEXT, &s.key, 1, &s.inputs, &s.outputs, &s.proof),
        Err(ShuffleError::ProofLength)
    );
    let mut bad_out = s.outputs.clone();
    bad_out[64 + 32] |= 1; // a negative field element: never canonical
    assert_eq!(
        both(&s, &s.inputs, &bad_out, &s.proof),
        Err(ShuffleError::Point {
            part: Part::Outputs,
            index: 3
        })
    );
    let mut bad_in = s.inputs.clone();
    bad_in[31] = 0xff;
    assert_eq!(
        both(&s, &bad_in, &s.outputs, &s.proof),
        Err(ShuffleError::Point {
            part: Part::Inputs,
            index: 0
        })
    );

    // The prover refuses bad input and short storage.
    let mut rng = ChaCha20Rng::from_seed([61; 32]);
    let mut out = vec![0; s.inputs.len()];
    let mut proof = vec![0; s.proof.len()];
    let mut slots = [ProverSlot::EMPTY; 3];
    assert!(matches!(
        prove(CONTEXT, &s.key, 2, &bad_in, &mut out, &mut proof, &mut slots, &mut rng),
        Err(ShuffleError::Point {
            part: Part::Inputs,
            ..
        })
    ));
    assert_eq!(
        prove(
            CONTEXT,
            &s.key,
            2,
            &s.inputs,
            &mut out,
            &mut proof,
            &mut slots[..2],
            &mut rng
        ),
        Err(ShuffleError::Storage)
    );
}

#[test]
fn random_bytes_never_panic_or_verify() {
    // A bounded, deterministic version of the `ristretto` fuzz target: arbitrary statements
    // and proofs, and honest ones with random 32-byte items replaced by random bytes or by
    // valid points.
    let s = setup(4, 2, 70);
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let valid_point = |seed: u64| {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        SecretKey::generate(&mut rng).public_key().to_bytes()
    };
    for round in 0..300 {
        let width = 1 + (next() % 2) as usize;
        let n = 1 + (next() % 4) as usize;
        let mut data = |len: usize| (0..len).map(|_| next() as u8).collect::<Vec<u8>>();
        let (inputs, outputs, proof) = if round % 3 == 0 {
            let extra = |x: u64| (x % 3) as usize;
            let a = data(rows_len(n, width) + extra(round));
            let b = data(rows_len(n, width));
            let p = data(proof_len(n, width) - extra(round));
            (a, b, p)
        } else {
            let (mut a, mut b, mut p) = (s.inputs.clone(), s.outputs.clone(), s.proof.clone());
            for _ in 0..1 + next() % 3 {
                let which = next() % 3;
                let target: &mut Vec<u8> = match which {
                    0 => &mut a,
                    1 => &mut b,
                    _ => &mut p,
                };
                let item = (next() as usize % (target.len() / 32)) * 32;
                let replacement = if next() % 2 == 0 {
                    valid_point(next())
                } else {
                    let mut r = [0u8; 32];
                    r.iter_mut().for_each(|x| *x = next() as u8);
                    r
                };
                target[item..item + 32].copy_from_slice(&replacement);
            }
            (a, b, p)
        };
        let w = if round % 3 == 0 { width } else { 2 };
        let streaming = verify_streaming(CONTEXT, &s.key, w, &inputs, &outputs, &proof);
        let batched = verify(CONTEXT, &s.key, w, &inputs, &outputs, &proof);
        assert_eq!(streaming, batched, "round {round}");
        if inputs != s.inputs || outputs != s.outputs || proof != s.proof {
            assert!(streaming.is_err(), "round {round}");
        }
    }
}

/// Counts the steps of a resumable verification, up to its result.
fn verify_in_steps(s: &Setup, outputs: &[u8]) -> (Result<(), ShuffleError>, usize) {
    let mut verifier = match Verifier::new(CONTEXT, &s.key, s.width, &s.inputs, outputs, &s.proof) {
        Ok(v) => v,
        Err(e) => return (Err(e), 0),
    };
    for steps in 1.. {
        match verifier.step(&s.key, &s.inputs, outputs, &s.proof) {
            Ok(core::task::Poll::Pending) => continue,
            Ok(core::task::Poll::Ready(())) => return (Ok(()), steps),
            Err(e) => {
                // A failed verifier stays failed.
                assert_eq!(verifier.step(&s.key, &s.inputs, outputs, &s.proof), Err(e));
                return (Err(e), steps);
            }
        }
    }
    unreachable!()
}

#[test]
fn the_steps_are_bounded_and_give_the_one_call_result() {
    let s = setup(64, 2, 9);
    let (result, steps) = verify_in_steps(&s, &s.outputs);
    assert_eq!(result, Ok(()));
    // Validation (844 encodings, 64 a step: 14 steps), then 8 steps per pass: commitments,
    // chain, and one per column.
    assert_eq!(steps, 14 + 4 * 8);

    let mut swapped = s.outputs.clone();
    let row = row_len(2);
    let (first, rest) = swapped.split_at_mut(row);
    first.swap_with_slice(&mut rest[..row]);
    let (result, _) = verify_in_steps(&s, &swapped);
    assert_eq!(result, both(&s, &s.inputs, &swapped, &s.proof));
    assert!(result.is_err());

    // Other bytes between steps (a shorter proof) fail, never panic.
    let mut verifier =
        Verifier::new(CONTEXT, &s.key, s.width, &s.inputs, &s.outputs, &s.proof).unwrap();
    let short = &s.proof[..s.proof.len() - 32];
    assert_eq!(
        verifier.step(&s.key, &s.inputs, &s.outputs, short),
        Err(ShuffleError::ProofLength)
    );

    // The prover in steps writes what `prove` writes from the same randomness.
    let mut rng = ChaCha20Rng::from_seed([3; 32]);
    let (outputs, proof) = shuffle(&s.key, 2, &s.inputs, &mut rng);
    let mut rng = ChaCha20Rng::from_seed([3; 32]);
    let mut stepped_outputs = vec![0u8; outputs.len()];
    let mut stepped_proof = vec![0u8; proof.len()];
    let mut slots = vec![ProverSlot::EMPTY; 64];
    let mut prover = Prover::new(
        2,
        &s.inputs,
        &mut stepped_outputs,
        &mut stepped_proof,
        &mut slots,
        &mut rng,
    )
    .unwrap();
    let mut steps = 0;
    while prover
        .step(
            CONTEXT,
            &s.key,
            &s.inputs,
            &mut stepped_outputs,
            &mut stepped_proof,
            &mut slots,
        )
        .unwrap()
        .is_pending()
    {
        steps += 1;
    }
    // Commit, r̃, chain, announcements, responses: 8 steps each; re-encryption 16.
    assert_eq!(steps + 1, 5 * 8 + 16);
    assert_eq!((stepped_outputs, stepped_proof), (outputs, proof));
}

/// An equation is named in a refusal as its `Debug` writes it.
#[test]
fn equations_display_as_their_debug() {
    use std::format;
    for e in [
        Equation::PermutationSum,
        Equation::ChainEnd,
        Equation::Commitment,
        Equation::Reencryption(2),
        Equation::Chain(63),
        Equation::Batch,
    ] {
        assert_eq!(format!("{e}"), format!("{e:?}"));
    }
}
