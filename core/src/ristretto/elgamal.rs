//! ElGamal over Ristretto255: encryption, re-encryption, the trustees' joint key and
//! decryption shares with proofs.
//!
//! ```text
//! joint key    Y = Y_0 + … + Y_(M−1)                  (Y_j = y_j·G, trustee j's key)
//! encrypt      (a, b) = (m + r·Y, r·G)                r fresh
//! re-encrypt   (a, b) → (a + r'·Y, b + r'·G)           r' fresh
//! share        d_j = y_j·b, with a DLEQ proof of log_G(Y_j) = log_b(d_j)
//!              under the context "dissent-rs v3 decryption share"
//! strip        (a, b) → (a − d_j, b)                  one trustee's layer removed
//! decrypt      m = a − Σ d_j
//! ```
//!
//! A ciphertext is encoded as `a ‖ b` (64 bytes); a row of `ω` ciphertexts as their
//! concatenation. A decryption share is `d_j ‖ proof` (96 bytes).

use curve25519_dalek::ristretto::RistrettoPoint;
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::Identity;
use rand_core::CryptoRngCore;

use super::dleq::{self, DleqError};
use super::keys::{PublicKey, SecretKey};
use super::{decode_point, decode_point_at, mul, mul_base, PointError};

/// Bytes of an encoded ciphertext: `a ‖ b`.
pub const CIPHERTEXT_LEN: usize = 64;
/// Bytes of an encoded decryption share: `d ‖ proof`.
pub const SHARE_LEN: usize = 32 + dleq::PROOF_LEN;
/// The DLEQ context of a decryption share's proof.
pub const SHARE_CONTEXT: &[u8] = b"dissent-rs v3 decryption share";

/// One ElGamal ciphertext `(a, b) = (m + r·Y, r·G)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ciphertext {
    /// The message, blinded: `m + r·Y`.
    pub a: RistrettoPoint,
    /// The randomness: `r·G`.
    pub b: RistrettoPoint,
}

impl Ciphertext {
    /// Encrypts the point `message` to `key` with fresh randomness.
    pub fn encrypt(
        key: &PublicKey,
        message: &RistrettoPoint,
        rng: &mut impl CryptoRngCore,
    ) -> Self {
        Self::encrypt_with(key, message, &Scalar::random(rng))
    }

    /// Encrypts with the given randomness `r` (constant time in `r` and `message`).
    pub fn encrypt_with(key: &PublicKey, message: &RistrettoPoint, r: &Scalar) -> Self {
        Self {
            a: message + mul(r, key.point()),
            b: mul_base(r),
        }
    }

    /// The same plaintext under fresh randomness.
    pub fn reencrypt(&self, key: &PublicKey, rng: &mut impl CryptoRngCore) -> Self {
        self.reencrypt_with(key, &Scalar::random(rng))
    }

    /// Re-encrypts with the given randomness `r'` (constant time in `r'`).
    pub fn reencrypt_with(&self, key: &PublicKey, r: &Scalar) -> Self {
        Self {
            a: self.a + mul(r, key.point()),
            b: self.b + mul_base(r),
        }
    }

    /// Decrypts with the whole secret key of `Y` (one trustee, or tests).
    pub fn decrypt(&self, secret: &SecretKey) -> RistrettoPoint {
        self.a - mul(secret.scalar(), &self.b)
    }

    /// Removes one trustee's layer with its (verified) share `d_j`.
    pub fn strip(&self, share: &RistrettoPoint) -> Self {
        Self {
            a: self.a - share,
            b: self.b,
        }
    }

    /// The 64-byte encoding `a ‖ b`.
    pub fn to_bytes(&self) -> [u8; CIPHERTEXT_LEN] {
        let mut out = [0u8; CIPHERTEXT_LEN];
        out[..32].copy_from_slice(self.a.compress().as_bytes());
        out[32..].copy_from_slice(self.b.compress().as_bytes());
        out
    }

    /// Decodes `a ‖ b`, refusing non-canonical points.
    pub fn from_bytes(bytes: &[u8; CIPHERTEXT_LEN]) -> Result<Self, PointError> {
        Self::from_slice(bytes)
    }

    /// Decodes the first 64 bytes of `bytes`, refusing short input and non-canonical points.
    pub(crate) fn from_slice(bytes: &[u8]) -> Result<Self, PointError> {
        let a = decode_point_at(bytes.get(..32).ok_or(PointError::NonCanonical)?)?;
        let b = decode_point_at(bytes.get(32..64).ok_or(PointError::NonCanonical)?)?;
        Ok(Self { a, b })
    }
}

/// The trustees' joint key: the sum of their keys; refuses an empty list or an identity sum.
pub fn joint_key(keys: &[PublicKey]) -> Result<PublicKey, PointError> {
    let sum: RistrettoPoint = keys
        .iter()
        .fold(RistrettoPoint::identity(), |acc, k| acc + k.point());
    if sum == RistrettoPoint::identity() {
        return Err(PointError::Identity);
    }
    Ok(PublicKey::from_point(sum))
}

/// Trustee `secret`'s decryption share of `ciphertext`: `d = y·b` and its proof, encoded.
pub fn decryption_share(
    secret: &SecretKey,
    ciphertext: &Ciphertext,
    rng: &mut impl CryptoRngCore,
) -> [u8; SHARE_LEN] {
    let (d, proof) = dleq::prove(SHARE_CONTEXT, secret, &ciphertext.b, rng);
    let mut out = [0u8; SHARE_LEN];
    out[..32].copy_from_slice(&d);
    out[32..].copy_from_slice(&proof);
    out
}

/// Checks trustee `key`'s share of `ciphertext`; returns `d` to [`Ciphertext::strip`] with.
pub fn verify_share(
    key: &PublicKey,
    ciphertext: &Ciphertext,
    share: &[u8; SHARE_LEN],
) -> Result<RistrettoPoint, DleqError> {
    let mut d_bytes = [0u8; 32];
    d_bytes.copy_from_slice(&share[..32]);
    let mut proof = [0u8; dleq::PROOF_LEN];
    proof.copy_from_slice(&share[32..]);
    let d = decode_point(&d_bytes)?;
    dleq::verify(SHARE_CONTEXT, key, &ciphertext.b, &d, &proof)?;
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::rand_core::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    #[test]
    fn layered_decryption_with_verified_shares() {
        let mut rng = ChaCha20Rng::from_seed([4; 32]);
        let trustees: [SecretKey; 3] = core::array::from_fn(|_| SecretKey::generate(&mut rng));
        let keys = trustees.each_ref().map(|t| t.public_key());
        let joint = joint_key(&keys).unwrap();
        let message = SecretKey::generate(&mut rng).public_key();
        let ct = Ciphertext::encrypt(&joint, message.point(), &mut rng);
        let ct = ct.reencrypt(&joint, &mut rng);
        let ct = Ciphertext::from_bytes(&ct.to_bytes()).unwrap();

        let mut layered = ct;
        for (t, k) in trustees.iter().zip(&keys) {
            let share = decryption_share(t, &ct, &mut rng);
            let d = verify_share(k, &ct, &share).unwrap();
            // The share proves nothing for another trustee or another ciphertext.
            let other = if k == &keys[0] { &keys[1] } else { &keys[0] };
            assert_eq!(verify_share(other, &ct, &share), Err(DleqError::Invalid));
            let ct2 = ct.reencrypt(&joint, &mut rng);
            assert_eq!(verify_share(k, &ct2, &share), Err(DleqError::Invalid));
            // A wrong share value with the right proof is refused.
            let mut wrong = share;
            wrong[..32].copy_from_slice(message.as_bytes());
            assert_eq!(verify_share(k, &ct, &wrong), Err(DleqError::Invalid));
            layered = layered.strip(&d);
        }
        assert_eq!(layered.a, *message.point());
        assert_eq!(joint_key(&[]), Err(PointError::Identity));
    }
}
