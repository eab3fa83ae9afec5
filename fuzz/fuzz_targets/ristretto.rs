//! The group operations' parsers of untrusted bytes: point and key encodings, ciphertexts,
//! message encodings, DLEQ proofs and the proof of shuffle.
//!
//! Nothing panics, and nothing arbitrary verifies: a DLEQ proof or a proof of shuffle made
//! of fuzz bytes is refused (a forgery would need to break the discrete logarithm or
//! merlin's challenges). Both shuffle verifiers give the same answer.
#![no_main]

use dissent_core::ristretto::elgamal::Ciphertext;
use dissent_core::ristretto::keys::PublicKey;
use dissent_core::ristretto::shuffle::{self, proof_len, row_len};
use dissent_core::ristretto::{dleq, encoding};
use libfuzzer_sys::fuzz_target;

fn array<const N: usize>(data: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    for (i, b) in out.iter_mut().enumerate() {
        *b = data.get(at + i).copied().unwrap_or(0);
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let key_bytes: [u8; 32] = array(data, 0);
    let key = PublicKey::from_bytes(&key_bytes);
    if let Ok(ct) = Ciphertext::from_bytes(&array(data, 32)) {
        if let Ok(m) = encoding::decode(&ct.a) {
            assert_eq!(encoding::encode(m.as_bytes()).unwrap(), ct.a);
        }
        assert_eq!(Ciphertext::from_bytes(&ct.to_bytes()).unwrap(), ct);
    }
    assert!(dleq::verify_encoded(
        b"fuzz",
        &key_bytes,
        &array(data, 32),
        &array(data, 64),
        &array(data, 96)
    )
    .is_err());

    // A shuffle statement and proof cut from the rest: width from one byte, rows filling
    // what is left after a proof of the matching length (or a ragged remainder).
    let Ok(key) = key else { return };
    let Some((&w, rest)) = data.get(160..).and_then(|d| d.split_first()) else {
        return;
    };
    let width = usize::from(w % 3);
    if width == 0 {
        let _ = shuffle::verify(b"fuzz", &key, 1, rest, rest, &[]);
        return;
    }
    let row = row_len(width);
    let n = (rest.len() / (2 * row + 160)).max(1);
    let rows = (n * row).min(rest.len());
    let (inputs, rest) = rest.split_at(rows);
    let (outputs, proof) = rest.split_at(rows.min(rest.len()));
    let proof = &proof[..proof.len().min(proof_len(n, width))];
    let streaming = shuffle::verify_streaming(b"fuzz", &key, width, inputs, outputs, proof);
    let batched = shuffle::verify(b"fuzz", &key, width, inputs, outputs, proof);
    assert_eq!(streaming, batched);
    assert!(streaming.is_err());
});
