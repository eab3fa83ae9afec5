//! Generators with no known discrete logarithm, hashed to the group.
//!
//! ```text
//! H   = from_uniform_bytes(merlin("dissent-rs v3 shuffle generator h")
//!                            .challenge_bytes("generator", 64))
//! H_i = from_uniform_bytes(merlin("dissent-rs v3 shuffle generator h_i")
//!                            .append_u64("index", i).challenge_bytes("generator", 64))
//! ```
//!
//! `from_uniform_bytes` is RFC 9496's one-way map (section 4.3.4, "hash-to-group" with a
//! 64-byte input): two Elligator maps, added. Nobody knows `log_G(H)` or any relation
//! between `G`, `H` and the `H_i`, which the proof of shuffle's Pedersen commitments
//! need. The hash is a merlin transcript (STROBE-128 over Keccak-f\[1600\]), the same
//! primitive as the proofs' challenges: a device links one hash, not two (SHA-512 alone
//! would cost 28 KiB of flash). Hashing runs in constant time in `i` (the prover hashes
//! secret indices).

use curve25519_dalek::ristretto::RistrettoPoint;
use merlin::Transcript;

/// Transcript label of the commitment chain's generator `H`.
pub const H_LABEL: &[u8] = b"dissent-rs v3 shuffle generator h";
/// Transcript label of the permutation commitment's generators `H_i`.
pub const H_I_LABEL: &[u8] = b"dissent-rs v3 shuffle generator h_i";

fn point(mut t: Transcript) -> RistrettoPoint {
    let mut wide = [0u8; 64];
    t.challenge_bytes(b"generator", &mut wide);
    RistrettoPoint::from_uniform_bytes(&wide)
}

/// The generator `H`.
pub fn h() -> RistrettoPoint {
    point(Transcript::new(b"dissent-rs v3 shuffle generator h"))
}

/// The generator `H_i`.
pub fn h_i(i: u32) -> RistrettoPoint {
    let mut t = Transcript::new(b"dissent-rs v3 shuffle generator h_i");
    t.append_u64(b"index", u64::from(i));
    point(t)
}
