//! Chaum–Pedersen proofs of discrete-log equality: `log_G(A) = log_B(S)`.
//!
//! The prover knows `x` with `A = x·G` and `S = x·B`. It draws `k`, computes `R1 = k·G`,
//! `R2 = k·B`, the challenge `c` and the response `s = k + c·x`. The proof is `c ‖ s`
//! (64 bytes, both canonical scalars). The verifier recomputes `R1 = s·G − c·A`,
//! `R2 = s·B − c·S` and accepts when the challenge of that transcript is `c`:
//!
//! ```text
//! T = merlin("dissent-rs v3 dleq")
//! T.append("context", context)              caller's domain: what the proof is about
//! T.append("A", A) T.append("B", B) T.append("S", S)
//! T.append("R1", R1) T.append("R2", R2)
//! c = T.challenge("c", 64 bytes) mod l      little-endian, reduced modulo the group order
//! ```
//!
//! Two uses: in a blame dispute a node shows its Diffie–Hellman secret with a peer is what
//! it claims (`B` = the peer's public key, `S` = the shared point: [`prove_dh`],
//! [`verify_dh`]); a trustee proves a decryption share (`B` = a ciphertext's second
//! component, [`super::elgamal`]). The prover's nonce comes from merlin's transcript RNG
//! keyed by the statement, the secret and the caller's RNG, so a weak RNG alone does not
//! reveal the secret.

use curve25519_dalek::ristretto::RistrettoPoint;
use curve25519_dalek::scalar::Scalar;
use merlin::Transcript;
use rand_core::CryptoRngCore;

use super::keys::{PublicKey, SecretKey};
use super::{challenge_scalar, decode_key_point, decode_point, decode_scalar_at, neg, PointError};

/// Bytes of a DLEQ proof: challenge ‖ response.
pub const PROOF_LEN: usize = 64;

/// Why a DLEQ proof was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DleqError {
    /// A point of the statement is not a valid encoding (or a key is the identity).
    Point(PointError),
    /// The challenge or the response is not a canonical scalar.
    NonCanonicalScalar,
    /// The proof does not prove this statement.
    Invalid,
}

impl core::fmt::Display for DleqError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            DleqError::Point(e) => write!(f, "DLEQ statement: {e}"),
            DleqError::NonCanonicalScalar => f.write_str("DLEQ proof: non-canonical scalar"),
            DleqError::Invalid => f.write_str("DLEQ proof does not verify"),
        }
    }
}

impl core::error::Error for DleqError {}

impl From<PointError> for DleqError {
    fn from(e: PointError) -> Self {
        DleqError::Point(e)
    }
}

fn statement(context: &[u8], a: &[u8; 32], b: &[u8; 32], s: &[u8; 32]) -> Transcript {
    let mut t = Transcript::new(b"dissent-rs v3 dleq");
    t.append_message(b"context", context);
    t.append_message(b"A", a);
    t.append_message(b"B", b);
    t.append_message(b"S", s);
    t
}

fn challenge(mut t: Transcript, r1: &RistrettoPoint, r2: &RistrettoPoint) -> Scalar {
    t.append_message(b"R1", r1.compress().as_bytes());
    t.append_message(b"R2", r2.compress().as_bytes());
    challenge_scalar(&mut t, b"c")
}

/// Proves `log_G(x·G) = log_B(x·B)`; returns the encoding of `S = x·B` and the proof.
pub fn prove(
    context: &[u8],
    secret: &SecretKey,
    base: &RistrettoPoint,
    rng: &mut impl CryptoRngCore,
) -> ([u8; 32], [u8; PROOF_LEN]) {
    let x = secret.scalar();
    let a = secret.public_key();
    let s_point = x * base;
    let s_bytes = s_point.compress().to_bytes();
    let t = statement(context, a.as_bytes(), base.compress().as_bytes(), &s_bytes);
    let mut nonce_rng = t
        .build_rng()
        .rekey_with_witness_bytes(b"x", x.as_bytes())
        .finalize(rng);
    let k = Scalar::random(&mut nonce_rng);
    let c = challenge(t, &RistrettoPoint::mul_base(&k), &(k * base));
    let response = k + c * x;
    let mut proof = [0u8; PROOF_LEN];
    proof[..32].copy_from_slice(c.as_bytes());
    proof[32..].copy_from_slice(response.as_bytes());
    (s_bytes, proof)
}

/// Verifies a proof that `log_G(public) = log_B(shared)` for decoded points.
pub fn verify(
    context: &[u8],
    public: &PublicKey,
    base: &RistrettoPoint,
    shared: &RistrettoPoint,
    proof: &[u8; PROOF_LEN],
) -> Result<(), DleqError> {
    let c = decode_scalar_at(&proof[..32]).ok_or(DleqError::NonCanonicalScalar)?;
    let response = decode_scalar_at(&proof[32..]).ok_or(DleqError::NonCanonicalScalar)?;
    let t = statement(
        context,
        public.as_bytes(),
        base.compress().as_bytes(),
        shared.compress().as_bytes(),
    );
    let r1 =
        RistrettoPoint::vartime_double_scalar_mul_basepoint(&neg(&c), public.point(), &response);
    let r2 = response * base - c * shared;
    if challenge(t, &r1, &r2) == c {
        Ok(())
    } else {
        Err(DleqError::Invalid)
    }
}

/// [`verify`] for public statements, in variable time: with the `std` feature `R2` is one
/// two-point multiscalar multiplication instead of two constant-time ones. Accepts exactly
/// the proofs [`verify`] accepts.
pub fn verify_vartime(
    context: &[u8],
    public: &PublicKey,
    base: &RistrettoPoint,
    shared: &RistrettoPoint,
    proof: &[u8; PROOF_LEN],
) -> Result<(), DleqError> {
    #[cfg(feature = "std")]
    {
        use curve25519_dalek::traits::VartimeMultiscalarMul;
        let c = decode_scalar_at(&proof[..32]).ok_or(DleqError::NonCanonicalScalar)?;
        let response = decode_scalar_at(&proof[32..]).ok_or(DleqError::NonCanonicalScalar)?;
        let t = statement(
            context,
            public.as_bytes(),
            base.compress().as_bytes(),
            shared.compress().as_bytes(),
        );
        let r1 = RistrettoPoint::vartime_double_scalar_mul_basepoint(
            &neg(&c),
            public.point(),
            &response,
        );
        let r2 = RistrettoPoint::vartime_multiscalar_mul([response, neg(&c)], [*base, *shared]);
        if challenge(t, &r1, &r2) == c {
            Ok(())
        } else {
            Err(DleqError::Invalid)
        }
    }
    #[cfg(not(feature = "std"))]
    {
        verify(context, public, base, shared, proof)
    }
}

/// Checks a proof of knowledge of `log_G(public)`: a proof of `log_G(A) = log_G(A)` made by
/// [`prove`] with base `G`. Both commitments are then the same point, computed once (in
/// variable time: the statement is public).
pub fn verify_knowledge(
    context: &[u8],
    public: &PublicKey,
    proof: &[u8; PROOF_LEN],
) -> Result<(), DleqError> {
    let c = decode_scalar_at(&proof[..32]).ok_or(DleqError::NonCanonicalScalar)?;
    let response = decode_scalar_at(&proof[32..]).ok_or(DleqError::NonCanonicalScalar)?;
    let base = curve25519_dalek::constants::RISTRETTO_BASEPOINT_COMPRESSED;
    let t = statement(
        context,
        public.as_bytes(),
        base.as_bytes(),
        public.as_bytes(),
    );
    let r =
        RistrettoPoint::vartime_double_scalar_mul_basepoint(&neg(&c), public.point(), &response);
    if challenge(t, &r, &r) == c {
        Ok(())
    } else {
        Err(DleqError::Invalid)
    }
}

/// Proves a Diffie–Hellman secret: returns `secret·peer` (the value [`super::keys::dh`]
/// gives) and a proof that it uses the same secret as the prover's public key.
pub fn prove_dh(
    context: &[u8],
    secret: &SecretKey,
    peer: &PublicKey,
    rng: &mut impl CryptoRngCore,
) -> ([u8; 32], [u8; PROOF_LEN]) {
    prove(context, secret, peer.point(), rng)
}

/// Checks a claimed Diffie–Hellman secret `shared` between `prover` and `peer` (all three
/// encoded) against the prover's proof.
pub fn verify_dh(
    context: &[u8],
    prover: &[u8; 32],
    peer: &[u8; 32],
    shared: &[u8; 32],
    proof: &[u8; PROOF_LEN],
) -> Result<(), DleqError> {
    let prover = PublicKey::from_bytes(prover)?;
    let peer = decode_key_point(peer)?;
    let shared = decode_key_point(shared)?;
    verify(context, &prover, &peer, &shared, proof)
}

/// Decodes a point and checks a proof about it, for callers holding encodings only.
pub fn verify_encoded(
    context: &[u8],
    public: &[u8; 32],
    base: &[u8; 32],
    shared: &[u8; 32],
    proof: &[u8; PROOF_LEN],
) -> Result<(), DleqError> {
    let public = PublicKey::from_bytes(public)?;
    let base = decode_point(base)?;
    let shared = decode_point(shared)?;
    verify(context, &public, &base, &shared, proof)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ristretto::keys::dh;
    use rand_chacha::rand_core::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    #[test]
    fn dh_proofs_verify_and_bind_every_part() {
        let mut rng = ChaCha20Rng::from_seed([3; 32]);
        let client = SecretKey::generate(&mut rng);
        let trustee = SecretKey::generate(&mut rng);
        let other = SecretKey::generate(&mut rng);
        let (shared, proof) = prove_dh(b"blame", &client, &trustee.public_key(), &mut rng);
        assert_eq!(
            shared,
            dh(&client, trustee.public_key().as_bytes()).unwrap()
        );
        let cp = client.public_key().to_bytes();
        let tp = trustee.public_key().to_bytes();
        assert_eq!(verify_dh(b"blame", &cp, &tp, &shared, &proof), Ok(()));

        // Another context, prover, peer or secret: refused.
        let bad = Err(DleqError::Invalid);
        assert_eq!(verify_dh(b"other", &cp, &tp, &shared, &proof), bad);
        let op = other.public_key().to_bytes();
        assert_eq!(verify_dh(b"blame", &op, &tp, &shared, &proof), bad);
        assert_eq!(verify_dh(b"blame", &cp, &op, &shared, &proof), bad);
        let lie = dh(&other, &tp).unwrap();
        assert_eq!(verify_dh(b"blame", &cp, &tp, &lie, &proof), bad);
        // The trustee's own honest value verifies only with its own proof.
        let (same, trustee_proof) = prove_dh(b"blame", &trustee, &client.public_key(), &mut rng);
        assert_eq!(same, shared);
        assert_eq!(verify_dh(b"blame", &cp, &tp, &shared, &trustee_proof), bad);
        assert_eq!(
            verify_dh(b"blame", &tp, &cp, &shared, &trustee_proof),
            Ok(())
        );

        // Every flipped bit of the proof is refused.
        for bit in 0..PROOF_LEN * 8 {
            let mut p = proof;
            p[bit / 8] ^= 1 << (bit % 8);
            assert!(
                verify_dh(b"blame", &cp, &tp, &shared, &p).is_err(),
                "bit {bit}"
            );
        }
        // The variable-time verifier agrees.
        let (cp_point, tp_point) = (client.public_key(), trustee.public_key());
        let shared_point = crate::ristretto::decode_point(&shared).unwrap();
        assert_eq!(
            verify_vartime(b"blame", &cp_point, tp_point.point(), &shared_point, &proof),
            Ok(())
        );
        assert_eq!(
            verify_vartime(b"other", &cp_point, tp_point.point(), &shared_point, &proof),
            bad
        );
        // A proof of knowledge (base G) checks with `verify_knowledge`, and only for its key.
        let g = curve25519_dalek::constants::RISTRETTO_BASEPOINT_POINT;
        let (_, pok) = prove(b"pok", &client, &g, &mut rng);
        assert_eq!(verify_knowledge(b"pok", &cp_point, &pok), Ok(()));
        assert_eq!(
            verify(b"pok", &cp_point, &g, cp_point.point(), &pok),
            Ok(())
        );
        assert_eq!(verify_knowledge(b"pok", &tp_point, &pok), bad);
        assert_eq!(verify_knowledge(b"other", &cp_point, &pok), bad);

        // Non-canonical scalars and points are typed errors.
        let mut p = proof;
        p[63] = 0xff;
        assert_eq!(
            verify_dh(b"blame", &cp, &tp, &shared, &p),
            Err(DleqError::NonCanonicalScalar)
        );
        assert_eq!(
            verify_dh(b"blame", &cp, &tp, &[0; 32], &proof),
            Err(DleqError::Point(PointError::Identity))
        );
        assert_eq!(
            verify_dh(b"blame", &cp, &[0xff; 32], &shared, &proof),
            Err(DleqError::Point(PointError::NonCanonical))
        );
    }
}
