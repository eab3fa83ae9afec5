//! shufflecheck: times a device trustee's part in the verifiable shuffle, then exits.
//!
//! It encrypts 64 rows of 2 ciphertexts under a fresh key, shuffles them with a proof
//! (`dissent_core::ristretto::shuffle::prove`), checks the proof with the allocation-free
//! verifier (`verify_streaming`) and checks that a proof of other outputs is refused. It
//! prints the times, the buffer sizes and the stack peak; exits 0 when all holds, 1
//! otherwise. No provisioning and no network use: `cargo run --release --bin shufflecheck`.
#![no_std]
#![no_main]

use dissent_core::ristretto::elgamal::{joint_key, Ciphertext};
use dissent_core::ristretto::keys::SecretKey;
use dissent_core::ristretto::shuffle::{proof_len, prove, rows_len, verify_streaming, ProverSlot};
use dissent_embedded::{println, stack, Board};
use embassy_time::Instant;
use static_cell::ConstStaticCell;

/// Rows (group members) and ciphertexts per row.
const ROWS: usize = 64;
const WIDTH: usize = 2;
const ROWS_LEN: usize = rows_len(ROWS, WIDTH);
const PROOF_LEN: usize = proof_len(ROWS, WIDTH);

static INPUTS: ConstStaticCell<[u8; ROWS_LEN]> = ConstStaticCell::new([0; ROWS_LEN]);
static OUTPUTS: ConstStaticCell<[u8; ROWS_LEN]> = ConstStaticCell::new([0; ROWS_LEN]);
static PROOF: ConstStaticCell<[u8; PROOF_LEN]> = ConstStaticCell::new([0; PROOF_LEN]);
static SLOTS: ConstStaticCell<[ProverSlot; ROWS]> = ConstStaticCell::new([ProverSlot::EMPTY; ROWS]);

#[cortex_m_rt::entry]
fn main() -> ! {
    dissent_embedded::run(|spawner, board| {
        // The pool holds this one task, spawned once.
        spawner.spawn(shufflecheck(board).unwrap());
    })
}

#[embassy_executor::task]
async fn shufflecheck(mut board: Board) {
    let start_stack = stack::peak();
    let (inputs, outputs, proof, slots) =
        (INPUTS.take(), OUTPUTS.take(), PROOF.take(), SLOTS.take());
    let rng = &mut board.rng;
    let trustees = [SecretKey::generate(rng), SecretKey::generate(rng)];
    // Two trustees' joint key: the key is public data to the prover.
    let key = match joint_key(&[trustees[0].public_key(), trustees[1].public_key()]) {
        Ok(key) => key,
        Err(e) => {
            println!("shufflecheck: FAILED: joint key: {}", e);
            dissent_embedded::exit(1)
        }
    };
    let started = Instant::now();
    for ct in inputs.chunks_exact_mut(64) {
        let member = SecretKey::generate(rng).public_key();
        ct.copy_from_slice(&Ciphertext::encrypt(&key, member.point(), rng).to_bytes());
    }
    let encrypt_ms = started.elapsed().as_millis();
    let encrypt_stack = stack::peak();

    let started = Instant::now();
    let proved = prove(
        b"shufflecheck",
        &key,
        WIDTH,
        inputs,
        outputs,
        proof,
        slots,
        rng,
    );
    let prove_ms = started.elapsed().as_millis();
    let prove_stack = stack::peak();
    let started = Instant::now();
    let verified = verify_streaming(b"shufflecheck", &key, WIDTH, inputs, outputs, proof);
    let verify_ms = started.elapsed().as_millis();
    // Two output rows swapped: the same proof must fail.
    let (first, rest) = outputs.split_at_mut(WIDTH * 64);
    first.swap_with_slice(&mut rest[..WIDTH * 64]);
    let tampered = verify_streaming(b"shufflecheck", &key, WIDTH, inputs, outputs, proof);

    println!(
        "shufflecheck: {} rows of {} ciphertexts; encrypt {} ms, shuffle+proof {} ms, verify {} ms",
        ROWS, WIDTH, encrypt_ms, prove_ms, verify_ms
    );
    println!(
        "shufflecheck: buffers {} B (rows 2 x {}, proof {}, slots {})",
        2 * ROWS_LEN + PROOF_LEN + core::mem::size_of::<[ProverSlot; ROWS]>(),
        ROWS_LEN,
        PROOF_LEN,
        core::mem::size_of::<[ProverSlot; ROWS]>(),
    );
    println!(
        "shufflecheck: stack peak {} B at start, {} B after encrypting, {} B after proving, {} B after verifying",
        start_stack,
        encrypt_stack,
        prove_stack,
        stack::peak()
    );
    let status = match (proved, verified, tampered) {
        (Ok(()), Ok(()), Err(_)) => {
            println!("shufflecheck: ok");
            0
        }
        (p, v, t) => {
            println!(
                "shufflecheck: FAILED: prove {:?}, verify {:?}, tampered {:?}",
                p, v, t
            );
            1
        }
    };
    dissent_embedded::exit(status)
}
