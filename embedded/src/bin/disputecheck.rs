//! disputecheck: times what a device trustee computes in a dispute, then exits.
//!
//! A dispute's request shows the client's signed reveal; the trustee checks its Ed25519
//! signature (`dissent_core::identity::verify`, over the statement's 32-byte digest) and,
//! if it holds, proves the pair's Diffie–Hellman secret (`dissent_core::ristretto::dleq::
//! prove_dh`, with the dispute's context). It times each over [`RUNS`] runs, checks the proof
//! with `verify_dh`, and checks that a changed signature is refused. Exits 0 when all holds,
//! 1 otherwise. No provisioning and no network use: `DISSENT_ICOUNT=1 cargo run --release
//! --bin disputecheck` (with `DISSENT_ICOUNT` the board's milliseconds are millions of
//! instructions).
#![no_std]
#![no_main]

use dissent_core::blame::dh_context;
use dissent_core::identity::{verify, IdentityKey};
use dissent_core::ristretto::dleq::{prove_dh, verify_dh};
use dissent_core::ristretto::keys::SecretKey;
use dissent_embedded::{println, stack, Board};
use embassy_time::Instant;
use rand_core::RngCore;

/// Runs of each step timed.
const RUNS: u32 = 10;

#[cortex_m_rt::entry]
fn main() -> ! {
    dissent_embedded::run(|spawner, board| {
        // The pool holds this one task, spawned once.
        spawner.spawn(disputecheck(board).unwrap());
    })
}

#[embassy_executor::task]
async fn disputecheck(mut board: Board) {
    let rng = &mut board.rng;
    let mut seed = [0u8; 32];
    RngCore::fill_bytes(rng, &mut seed);
    let client_identity = IdentityKey::from_bytes(&seed);
    let mut digest = [0u8; 32];
    RngCore::fill_bytes(rng, &mut digest);
    let signature = client_identity.sign(&digest);
    let public = client_identity.public();

    let started = Instant::now();
    let mut checked = true;
    for _ in 0..RUNS {
        checked &= verify(&public, &digest, &signature);
    }
    let verify_us = started.elapsed().as_micros() / u64::from(RUNS);
    let mut changed = signature;
    changed[7] ^= 1;
    let refused = !verify(&public, &digest, &changed);

    let trustee = SecretKey::generate(rng);
    let client = SecretKey::generate(rng).public_key();
    let context = dh_context(
        &[1; 16],
        &[2; 16],
        &client.to_bytes(),
        &trustee.public_key().to_bytes(),
    );
    let started = Instant::now();
    let mut proof = prove_dh(&context, &trustee, &client, rng);
    for _ in 1..RUNS {
        proof = prove_dh(&context, &trustee, &client, rng);
    }
    let prove_us = started.elapsed().as_micros() / u64::from(RUNS);
    let (shared, dleq) = proof;
    let proven = verify_dh(
        &context,
        &trustee.public_key().to_bytes(),
        &client.to_bytes(),
        &shared,
        &dleq,
    )
    .is_ok();

    println!(
        "disputecheck: the client's signature checked in {} us, the pair's secret proved in {} us (each the mean of {} runs); stack peak {} B",
        verify_us,
        prove_us,
        RUNS,
        stack::peak()
    );
    let status = if checked && refused && proven {
        println!("disputecheck: ok");
        0
    } else {
        println!(
            "disputecheck: FAILED: signature checked {}, changed one refused {}, proof checks {}",
            checked, refused, proven
        );
        1
    };
    dissent_embedded::exit(status)
}
