//! Generators with no known discrete logarithm, hashed to the group.
//!
//! ```text
//! H   = from_uniform_bytes(SHA-512("dissent-rs v3 shuffle generator h"))
//! H_i = from_uniform_bytes(SHA-512("dissent-rs v3 shuffle generator h_i" ‖ u32 LE i))
//! ```
//!
//! `from_uniform_bytes` is RFC 9496's one-way map (section 4.3.4, "hash-to-group" with a
//! 64-byte input): two Elligator maps, added. Nobody knows `log_G(H)` or any relation
//! between `G`, `H` and the `H_i`, which the proof of shuffle's Pedersen commitments
//! need. Hashing runs in constant time in `i` (the prover hashes secret indices).

use curve25519_dalek::ristretto::RistrettoPoint;
use sha2::{Digest, Sha512};

/// Label of the commitment chain's generator `H`.
pub const H_LABEL: &[u8] = b"dissent-rs v3 shuffle generator h";
/// Label prefix of the permutation commitment's generators `H_i`.
pub const H_I_LABEL: &[u8] = b"dissent-rs v3 shuffle generator h_i";

/// The generator `H`.
pub fn h() -> RistrettoPoint {
    let wide: [u8; 64] = Sha512::digest(H_LABEL).into();
    RistrettoPoint::from_uniform_bytes(&wide)
}

/// The generator `H_i`.
pub fn h_i(i: u32) -> RistrettoPoint {
    let wide: [u8; 64] = Sha512::new()
        .chain_update(H_I_LABEL)
        .chain_update(i.to_le_bytes())
        .finalize()
        .into();
    RistrettoPoint::from_uniform_bytes(&wide)
}
