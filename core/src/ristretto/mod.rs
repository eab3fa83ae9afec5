//! Group operations and proofs over Ristretto255, for the dealer-free setup and for blame.
//!
//! One prime-order group serves every public-key operation the coming setup and blame
//! protocols need (docs/protocol.md, "Group operations, proofs of shuffle"):
//!
//! - [`keys`]: key pairs and Diffie–Hellman ([`keys::dh`]), refusing the identity and
//!   non-canonical encodings.
//! - [`dleq`]: Chaum–Pedersen proofs that `log_G(A) = log_B(S)`, 64 bytes. A client and a
//!   trustee settle a dispute about their pairwise secret with one; a trustee proves a
//!   decryption share with one.
//! - [`elgamal`]: ElGamal encryption, re-encryption, the trustees' joint key and decryption
//!   shares with proofs.
//! - [`encoding`]: an injective map from short byte strings (≤ 30 bytes) to points and back.
//! - [`shuffle`]: a verifiable re-encryption shuffle of `N` rows of `ω` ciphertexts with a
//!   non-interactive Terelius–Wikström proof, following Haenni, Locher, Koenig and Dubuis,
//!   "Pseudo-Code Algorithms for Verifiable Re-Encryption Mix-Nets" (FC 2017 workshops).
//!
//! Fiat–Shamir challenges come from merlin transcripts; the commitment generators are
//! hashed to the group ([`generators`]) so nobody knows their discrete logarithms. Every
//! domain-separation label starts with `dissent-rs v3`.
//!
//! This module owns only group arithmetic, encodings and proofs: no wire messages, no
//! protocol state, no I/O. It allocates nothing (caller-provided storage, sized by
//! [`shuffle::proof_len`], [`shuffle::rows_len`] and [`shuffle::ProverSlot`]); with the
//! `std` feature the shuffle verifier batches its equations into one multiscalar
//! multiplication. Randomness comes from the caller (`rand_core::CryptoRngCore`).
//! Operations on secrets (scalar multiplications by secret scalars, the secret
//! permutation) run in constant time; operations on public data may not. Nothing here
//! panics on untrusted input: every encoding is checked and every failure is a typed error.

pub mod dleq;
pub mod elgamal;
pub mod encoding;
pub mod generators;
pub mod keys;
mod oblivious;
pub mod shuffle;

use curve25519_dalek::ristretto::{CompressedRistretto, RistrettoPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::IsIdentity;
use merlin::Transcript;

/// Bytes of an encoded point (a compressed Ristretto255 element).
pub const POINT_LEN: usize = 32;
/// Bytes of an encoded scalar (canonical, little-endian, below the group order).
pub const SCALAR_LEN: usize = 32;

/// Why a point encoding was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PointError {
    /// The bytes are not the canonical encoding of a Ristretto255 element.
    NonCanonical,
    /// The bytes encode the identity, where a key or a shared secret is expected.
    Identity,
}

impl core::fmt::Display for PointError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            PointError::NonCanonical => "not a canonical Ristretto255 encoding",
            PointError::Identity => "the identity element where a key is expected",
        })
    }
}

impl core::error::Error for PointError {}

/// Decodes a canonical point encoding (the identity included).
pub(crate) fn decode_point(bytes: &[u8; 32]) -> Result<RistrettoPoint, PointError> {
    CompressedRistretto(*bytes)
        .decompress()
        .ok_or(PointError::NonCanonical)
}

/// Decodes a point from the first 32 bytes of `bytes` (callers pass exact slices).
pub(crate) fn decode_point_at(bytes: &[u8]) -> Result<RistrettoPoint, PointError> {
    let array: &[u8; 32] = bytes
        .get(..POINT_LEN)
        .and_then(|b| b.try_into().ok())
        .ok_or(PointError::NonCanonical)?;
    decode_point(array)
}

/// Decodes a point that must not be the identity (a key or a base).
pub(crate) fn decode_key_point(bytes: &[u8; 32]) -> Result<RistrettoPoint, PointError> {
    let point = decode_point(bytes)?;
    if point.is_identity() {
        return Err(PointError::Identity);
    }
    Ok(point)
}

/// The group order `l = 2^252 + 27742317777372353535851937790883648493`, little-endian.
pub(crate) const ORDER: [u8; 32] = [
    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
];

/// Decodes a canonical scalar (below `l`) from the first 32 bytes of `bytes`: the value of
/// `Scalar::from_canonical_bytes`. The comparison with `l` takes time that depends on the
/// bytes: for the public scalars of proofs only.
///
/// Not `from_canonical_bytes`, whose check multiplies by R and reduces (about 1.6 KiB of a
/// device's flash, linked for nothing else once [`scalar_mod_order`] expands signing keys).
pub(crate) fn decode_scalar_at(bytes: &[u8]) -> Option<Scalar> {
    let array: [u8; 32] = bytes.get(..SCALAR_LEN)?.try_into().ok()?;
    below_order(&array).then(|| scalar_mod_order(&array))
}

/// Whether 32 bytes read little-endian are below `l` (a canonical scalar's encoding), by
/// comparison: time that depends on the bytes, for public scalars only.
pub(crate) fn below_order(bytes: &[u8; 32]) -> bool {
    bytes
        .iter()
        .rev()
        .zip(ORDER.iter().rev())
        .find(|(b, l)| b != l)
        .is_some_and(|(b, l)| b < l)
}

/// 32 bytes read little-endian, reduced modulo `l`: the value of
/// `Scalar::from_bytes_mod_order`, doubling and adding with the library's scalar addition a
/// byte at a time from the top (`x = 256·x + byte`) instead of its reduction (a
/// multiplication by R and a Montgomery reduction, about 1.6 KiB of code on a Cortex-M3).
/// Every step is the library's constant-time addition of reduced scalars, so the result is
/// reduced and the time does not depend on the bytes. The caller zeroes a secret result.
pub(crate) fn scalar_mod_order(bytes: &[u8; 32]) -> Scalar {
    let mut scalar = Scalar::ZERO;
    for byte in bytes.iter().rev() {
        for _ in 0..8 {
            scalar += scalar;
        }
        scalar += Scalar::from(*byte);
    }
    scalar
}

/// `-s`: zero minus `s`, with the library's constant-time subtraction of reduced scalars.
///
/// Not `Neg`, which reduces its operand again first (a multiplication by R and a Montgomery
/// reduction inlined into it, about 1.9 KiB of a device's flash); every `Scalar` is reduced,
/// so the two give the same scalar.
pub(crate) fn neg(s: &Scalar) -> Scalar {
    Scalar::ZERO - s
}

/// A challenge scalar: 64 transcript bytes reduced modulo the group order.
pub(crate) fn challenge_scalar(transcript: &mut Transcript, label: &'static [u8]) -> Scalar {
    let mut wide = [0u8; 64];
    transcript.challenge_bytes(label, &mut wide);
    Scalar::from_bytes_mod_order_wide(&wide)
}

/// `s·P` in constant time. Not inlined: each inlined copy would keep its own 1.3 KiB table
/// in its caller's stack frame (a device's stack budget).
#[inline(never)]
pub(crate) fn mul(s: &Scalar, p: &RistrettoPoint) -> RistrettoPoint {
    s * p
}

/// `s·G` in constant time (not inlined, as [`mul`]).
#[inline(never)]
pub(crate) fn mul_base(s: &Scalar) -> RistrettoPoint {
    RistrettoPoint::mul_base(s)
}

/// `a·A + b·G` in variable time, for public scalars only (not inlined, as [`mul`]).
#[inline(never)]
pub(crate) fn vartime_double_base(a: &Scalar, p: &RistrettoPoint, b: &Scalar) -> RistrettoPoint {
    RistrettoPoint::vartime_double_scalar_mul_basepoint(a, p, b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::rand_core::{RngCore, SeedableRng};

    /// The decoding and the reduction give the library's values: canonical scalars below `l`
    /// only, and `from_bytes_mod_order` for any bytes.
    #[test]
    fn scalars_decode_and_reduce_as_the_library_does() {
        let mut cases = std::vec![[0u8; 32], [0xff; 32], ORDER];
        for delta in [1u8, 2, 0xec] {
            let mut below = ORDER;
            below[0] -= delta;
            let mut above = ORDER;
            above[0] += delta.min(0x12);
            cases.extend([below, above]);
        }
        let mut top = [0u8; 32];
        top[31] = 0x10;
        cases.push(top);
        top[31] = 0x0f;
        cases.push(top);
        top[31] = 0x80;
        cases.push(top);
        let mut rng = rand_chacha::ChaCha20Rng::from_seed([9; 32]);
        for i in 0..200 {
            let mut b = [0u8; 32];
            rng.fill_bytes(&mut b);
            // Half of them in the range of the group order's top byte.
            if i % 2 == 0 {
                b[31] &= 0x1f;
            }
            cases.push(b);
        }
        for b in cases {
            let library: Option<Scalar> = Scalar::from_canonical_bytes(b).into();
            assert_eq!(decode_scalar_at(&b), library, "{b:02x?}");
            assert_eq!(
                scalar_mod_order(&b),
                Scalar::from_bytes_mod_order(b),
                "{b:02x?}"
            );
        }
        assert_eq!(decode_scalar_at(&[0; 31]), None);
    }

    /// The negation is the library's, for the edge scalars and random ones.
    #[test]
    fn scalars_negate_as_the_library_does() {
        let mut cases = std::vec![Scalar::ZERO, Scalar::ONE, Scalar::ZERO - Scalar::ONE];
        let mut rng = rand_chacha::ChaCha20Rng::from_seed([10; 32]);
        for _ in 0..200 {
            let mut b = [0u8; 64];
            rng.fill_bytes(&mut b);
            cases.push(Scalar::from_bytes_mod_order_wide(&b));
        }
        for s in cases {
            assert_eq!(neg(&s), -s, "{:02x?}", s.as_bytes());
            assert_eq!(neg(&s) + s, Scalar::ZERO);
        }
    }
}
