//! Times the proof of shuffle: one trustee's shuffle + proof, and one member's check of every
//! trustee's proof, for rows of 2 ciphertexts (a pseudonym key and a spare column).
//!
//!     cargo bench -p dissent-core --bench shuffle
//!
//! `DISSENT_SHUFFLE_SIZES=64,1000` picks the sizes (default 64, 1000, 10000);
//! `DISSENT_SHUFFLE_TRUSTEES` the number of trustees (default 3). Prints numbers only.

use std::time::Instant;

use dissent_core::ristretto::elgamal::{joint_key, Ciphertext};
use dissent_core::ristretto::keys::SecretKey;
use dissent_core::ristretto::shuffle::{
    proof_len, prove, rows_len, verify, verify_streaming, ProverSlot,
};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

const WIDTH: usize = 2;

fn main() {
    let sizes: Vec<usize> = std::env::var("DISSENT_SHUFFLE_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![64, 1_000, 10_000]);
    let trustees: usize = std::env::var("DISSENT_SHUFFLE_TRUSTEES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let mut rng = ChaCha20Rng::from_seed([7; 32]);
    let keys: Vec<_> = (0..trustees)
        .map(|_| SecretKey::generate(&mut rng).public_key())
        .collect();
    let key = joint_key(&keys).unwrap();
    println!("proof of shuffle, width {WIDTH}, {trustees} trustees, one thread");
    println!(
        "{:>7} {:>11} {:>16} {:>18} {:>20}",
        "N", "proof KiB", "shuffle+proof s", "verify all (batch) s", "verify one (stream) s"
    );
    for &n in &sizes {
        let mut rows = vec![0u8; rows_len(n, WIDTH)];
        for ct in rows.chunks_exact_mut(64) {
            let m = SecretKey::generate(&mut rng).public_key();
            ct.copy_from_slice(&Ciphertext::encrypt(&key, m.point(), &mut rng).to_bytes());
        }
        let mut slots = vec![ProverSlot::EMPTY; n];
        let mut stages = vec![rows];
        let mut proofs = Vec::new();
        let mut prove_time = 0.0;
        for t in 0..trustees {
            let mut out = vec![0u8; rows_len(n, WIDTH)];
            let mut proof = vec![0u8; proof_len(n, WIDTH)];
            let started = Instant::now();
            prove(
                &[t as u8],
                &key,
                WIDTH,
                &stages[t],
                &mut out,
                &mut proof,
                &mut slots,
                &mut rng,
            )
            .unwrap();
            prove_time += started.elapsed().as_secs_f64();
            stages.push(out);
            proofs.push(proof);
        }
        let started = Instant::now();
        for (t, proof) in proofs.iter().enumerate() {
            verify(&[t as u8], &key, WIDTH, &stages[t], &stages[t + 1], proof).unwrap();
        }
        let verify_all = started.elapsed().as_secs_f64();
        let started = Instant::now();
        verify_streaming(&[0], &key, WIDTH, &stages[0], &stages[1], &proofs[0]).unwrap();
        let streaming = started.elapsed().as_secs_f64();
        println!(
            "{:>7} {:>11.1} {:>16.3} {:>20.3} {:>21.3}",
            n,
            proof_len(n, WIDTH) as f64 / 1024.0,
            prove_time / trustees as f64,
            verify_all,
            streaming
        );
    }
}
