//! Ristretto255 key pairs and Diffie–Hellman.
//!
//! A secret key is a non-zero scalar `x`; its public key is `X = x·G` with `G` the
//! Ristretto255 base point. The shared secret of `x` and a peer's `Y` is the encoding of
//! `x·Y` (32 bytes). A public key is refused when its encoding is not canonical or is the
//! identity; the group has prime order, so no other check is needed and the shared point is
//! never the identity for a valid peer key.

use curve25519_dalek::ristretto::RistrettoPoint;
use curve25519_dalek::scalar::Scalar;
use rand_core::CryptoRngCore;
use subtle::{ConditionallySelectable, ConstantTimeEq};
use zeroize::{Zeroize, ZeroizeOnDrop};

use super::{decode_key_point, PointError};

/// A secret scalar (never zero). Zeroed on drop.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct SecretKey(Scalar);

impl SecretKey {
    /// Draws a fresh secret key.
    pub fn generate(rng: &mut impl CryptoRngCore) -> Self {
        let scalar = Scalar::random(rng);
        // Zero (probability 2^-252) becomes one, in constant time: a key is never zero.
        let zero = scalar.ct_eq(&Scalar::ZERO);
        Self(Scalar::conditional_select(&scalar, &Scalar::ONE, zero))
    }

    /// A secret key from its canonical encoding; `None` for a non-canonical or zero scalar.
    pub fn from_bytes(bytes: &[u8; 32]) -> Option<Self> {
        let scalar: Option<Scalar> = Scalar::from_canonical_bytes(*bytes).into();
        scalar.filter(|s| *s != Scalar::ZERO).map(Self)
    }

    /// A secret key from 32 bytes read little-endian and reduced modulo the group order
    /// (the value of `Scalar::from_bytes_mod_order`); `None` if that is zero.
    ///
    /// It reduces with `ristretto::scalar_mod_order` (doubling and adding), not the library's
    /// reduction, which is otherwise the largest part of a device trustee's pad keys; the
    /// time does not depend on the secret.
    pub fn from_bytes_mod_order(bytes: &[u8; 32]) -> Option<Self> {
        let mut scalar = super::scalar_mod_order(bytes);
        let zero = scalar.ct_eq(&Scalar::ZERO);
        let key = (!bool::from(zero)).then_some(Self(scalar));
        scalar.zeroize();
        key
    }

    /// The canonical encoding of the scalar.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// The public key `x·G`.
    pub fn public_key(&self) -> PublicKey {
        PublicKey::from_point(RistrettoPoint::mul_base(&self.0))
    }

    /// The shared secret with a peer: the encoding of `x·Y` (constant time in `x`).
    pub fn diffie_hellman(&self, peer: &PublicKey) -> [u8; 32] {
        (self.0 * peer.point).compress().to_bytes()
    }

    pub(crate) fn scalar(&self) -> &Scalar {
        &self.0
    }
}

impl core::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("SecretKey(..)")
    }
}

/// A public key: a point other than the identity, with its encoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PublicKey {
    point: RistrettoPoint,
    bytes: [u8; 32],
}

impl PublicKey {
    /// Decodes a public key, refusing non-canonical encodings and the identity.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, PointError> {
        let point = decode_key_point(bytes)?;
        Ok(Self {
            point,
            bytes: *bytes,
        })
    }

    pub(crate) fn from_point(point: RistrettoPoint) -> Self {
        Self {
            point,
            bytes: point.compress().to_bytes(),
        }
    }

    /// The 32-byte encoding.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.bytes
    }

    /// The encoding, borrowed.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.bytes
    }

    /// The point.
    pub fn point(&self) -> &RistrettoPoint {
        &self.point
    }
}

/// Diffie–Hellman with an encoded peer key: the encoding of `secret·peer`.
///
/// Refuses a peer key that is not canonical or is the identity.
pub fn dh(secret: &SecretKey, peer_public: &[u8; 32]) -> Result<[u8; 32], PointError> {
    let peer = PublicKey::from_bytes(peer_public)?;
    Ok(secret.diffie_hellman(&peer))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::rand_core::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    #[test]
    fn both_sides_agree_and_bad_keys_are_refused() {
        let mut rng = ChaCha20Rng::from_seed([1; 32]);
        let a = SecretKey::generate(&mut rng);
        let b = SecretKey::generate(&mut rng);
        let ab = dh(&a, b.public_key().as_bytes()).unwrap();
        let ba = dh(&b, a.public_key().as_bytes()).unwrap();
        assert_eq!(ab, ba);
        assert_ne!(ab, [0; 32]);
        assert_eq!(dh(&a, &[0; 32]), Err(PointError::Identity));
        // p itself (2^255 - 19): a non-canonical field element.
        let mut p = [0xff; 32];
        p[0] = 0xed;
        p[31] = 0x7f;
        assert_eq!(dh(&a, &p), Err(PointError::NonCanonical));
        // A negative field element (odd low byte) is never a canonical encoding.
        let mut negative = *b.public_key().as_bytes();
        negative[0] |= 1;
        assert_eq!(dh(&a, &negative), Err(PointError::NonCanonical));
    }

    #[test]
    fn secret_keys_round_trip_and_refuse_zero_and_non_canonical() {
        let mut rng = ChaCha20Rng::from_seed([2; 32]);
        let a = SecretKey::generate(&mut rng);
        let back = SecretKey::from_bytes(&a.to_bytes()).unwrap();
        assert_eq!(back.public_key(), a.public_key());
        assert!(SecretKey::from_bytes(&[0; 32]).is_none());
        assert!(SecretKey::from_bytes(&[0xff; 32]).is_none());
    }

    #[test]
    fn reading_bytes_mod_order_is_the_librarys_reduction() {
        use rand_core::RngCore;
        // The group order l, and its neighbours, multiples and the largest 256-bit values.
        let l = Scalar::ZERO - Scalar::ONE;
        let mut l_bytes = l.to_bytes();
        l_bytes[0] += 1;
        let mut cases = std::vec![
            [0; 32],
            [0xff; 32],
            [0x7f; 32],
            l.to_bytes(),
            l_bytes,
            [1; 32],
        ];
        let mut two_l = [0u8; 32];
        let mut carry = 0u16;
        for (out, byte) in two_l.iter_mut().zip(l_bytes) {
            let sum = u16::from(byte) * 2 + carry;
            *out = sum as u8;
            carry = sum >> 8;
        }
        cases.push(two_l);
        let mut rng = ChaCha20Rng::from_seed([3; 32]);
        for _ in 0..200 {
            let mut bytes = [0u8; 32];
            rng.fill_bytes(&mut bytes);
            cases.push(bytes);
        }
        for bytes in cases {
            let expect = Scalar::from_bytes_mod_order(bytes);
            match SecretKey::from_bytes_mod_order(&bytes) {
                Some(key) => assert_eq!(key.0, expect, "{bytes:02x?}"),
                None => assert_eq!(expect, Scalar::ZERO, "{bytes:02x?}"),
            }
        }
        // l and 2l reduce to zero, which is refused.
        assert!(SecretKey::from_bytes_mod_order(&l_bytes).is_none());
        assert!(SecretKey::from_bytes_mod_order(&two_l).is_none());
        assert!(SecretKey::from_bytes_mod_order(&[0; 32]).is_none());
    }
}
