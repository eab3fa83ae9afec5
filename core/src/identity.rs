//! Identity keys: each client and trustee signs what it states in a blame round with an
//! Ed25519 key (RFC 8032, `ed25519-dalek` without precomputed tables, so a device trustee
//! signs too). Anyone holding the group's public identity keys checks such a statement
//! offline.
//!
//! Blame statements are signed as 32-byte digests (SHA-256 of a labelled message), so a node
//! signs a long statement without holding it twice; the epoch setup signs its messages
//! whole through [`crate::epoch::identity::IdentitySigner`], which this key implements.
//! This is the core's one Ed25519 identity key type.
//!
//! Owns the key type and the checks; it must not know what is signed.

use ed25519_dalek::hazmat::{raw_sign, ExpandedSecretKey};
use ed25519_dalek::{Signature, VerifyingKey};
use sha2::{Digest, Sha512};

/// Bytes of an identity signature.
pub const IDENTITY_SIGNATURE_LEN: usize = 64;

/// A node's identity signing key: the secret expanded as RFC 8032 §5.1.5 says (SHA-512 of
/// the seed; its first half clamped and reduced modulo `l` is the scalar, its second half
/// the nonce prefix), and the public key. Its secret is zeroed on drop.
///
/// It expands the seed itself, with the core's reduction
/// (`ristretto::scalar_mod_order`, the same value), rather than through
/// `SigningKey`, whose reduction links about 1.6 KiB more into a device trustee; the
/// signing is ed25519-dalek's (`hazmat::raw_sign`), and RFC 8032's vectors check both.
pub struct IdentityKey {
    secret: ExpandedSecretKey,
    public: VerifyingKey,
}

impl Clone for IdentityKey {
    fn clone(&self) -> Self {
        IdentityKey {
            secret: ExpandedSecretKey {
                scalar: self.secret.scalar,
                hash_prefix: self.secret.hash_prefix,
            },
            public: self.public,
        }
    }
}

impl core::fmt::Debug for IdentityKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("IdentityKey(..)")
    }
}

impl IdentityKey {
    /// The key of a 32-byte Ed25519 secret (any bytes are a valid secret).
    pub fn from_bytes(secret: &[u8; 32]) -> Self {
        let mut hash: [u8; 64] = Sha512::digest(secret).into();
        let mut scalar_bytes = [0u8; 32];
        let mut hash_prefix = [0u8; 32];
        scalar_bytes.copy_from_slice(&hash[..32]);
        hash_prefix.copy_from_slice(&hash[32..]);
        let clamped = curve25519_dalek::scalar::clamp_integer(scalar_bytes);
        let secret = ExpandedSecretKey {
            scalar: crate::ristretto::scalar_mod_order(&clamped),
            hash_prefix,
        };
        zeroize::Zeroize::zeroize(&mut hash);
        zeroize::Zeroize::zeroize(&mut scalar_bytes);
        let public = VerifyingKey::from(&secret);
        IdentityKey { secret, public }
    }

    /// The key with this 32-byte secret seed (the same as [`IdentityKey::from_bytes`]).
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self::from_bytes(seed)
    }

    /// Signs a whole message (the setup's messages; RFC 8032 Ed25519).
    pub(crate) fn sign_message(&self, message: &[u8]) -> [u8; IDENTITY_SIGNATURE_LEN] {
        raw_sign::<Sha512>(&self.secret, message, &self.public).to_bytes()
    }

    /// The public key.
    pub fn public(&self) -> [u8; 32] {
        self.public.to_bytes()
    }

    /// Signs a digest.
    pub fn sign(&self, digest: &[u8; 32]) -> [u8; IDENTITY_SIGNATURE_LEN] {
        self.sign_message(digest)
    }
}

/// The public identity key of a 32-byte secret.
pub fn identity_public_key(secret: &[u8; 32]) -> [u8; 32] {
    IdentityKey::from_bytes(secret).public()
}

/// Whether `signature` is `public`'s signature of `message` (a blame digest or a whole setup
/// message; strict RFC 8032 checks: no small-order keys, canonical encodings).
///
/// The signature's scalar `S` is checked to be below the group order here, by comparison
/// (RFC 8032 §5.1.7), whatever ed25519-dalek checks: a device builds it with
/// `legacy_compatibility`, which checks only `S`'s top three bits, so as not to link
/// `Scalar::from_canonical_bytes`, whose check multiplies by R and reduces (about 1.6 KiB
/// of a device's flash). With this check first, either build accepts the same signatures.
pub fn verify(public: &[u8; 32], message: &[u8], signature: &[u8]) -> bool {
    let canonical = signature
        .get(32..)
        .and_then(|s| <&[u8; 32]>::try_from(s).ok())
        .is_some_and(crate::ristretto::below_order);
    if !canonical {
        return false;
    }
    let Ok(key) = VerifyingKey::from_bytes(public) else {
        return false;
    };
    let Ok(sig) = Signature::from_slice(signature) else {
        return false;
    };
    key.verify_strict(message, &sig).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 8032 section 7.1, test 1 (the empty message) checks the library as linked; the
    /// digest signatures below are what the protocol uses.
    #[test]
    fn rfc8032_and_digests() {
        let secret = hex32("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60");
        let key = IdentityKey::from_bytes(&secret);
        assert_eq!(
            key.public(),
            hex32("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
        );
        let sig = key.sign_message(b"");
        assert_eq!(
            sig[..32],
            hex32("e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155")
        );
        assert_eq!(
            sig[32..],
            hex32("5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b")
        );
        // The library's own key signs the same bytes, for every secret.
        use ed25519_dalek::Signer;
        for seed in [[0u8; 32], [0xff; 32], secret, [0x42; 32]] {
            let ours = IdentityKey::from_bytes(&seed);
            let theirs = ed25519_dalek::SigningKey::from_bytes(&seed);
            assert_eq!(ours.public(), theirs.verifying_key().to_bytes());
            for m in [&b""[..], b"abc", &[7; 32]] {
                assert_eq!(ours.sign_message(m), theirs.sign(m).to_bytes());
            }
        }
        let digest = [7u8; 32];
        let s = key.sign(&digest);
        assert!(verify(&key.public(), &digest, &s));
        assert!(!verify(&key.public(), &[8; 32], &s));
        let mut bad = s;
        bad[3] ^= 1;
        assert!(!verify(&key.public(), &digest, &bad));
        assert!(!verify(&key.public(), &digest, &s[..63]));
        assert!(!verify(&identity_public_key(&[1; 32]), &digest, &s));
        // The setup's signing boundary is this key: a digest signed through it is the same
        // signature, and a whole message it signs checks under the same public key.
        use crate::epoch::identity::IdentitySigner;
        assert_eq!(IdentitySigner::sign(&key, &digest), s);
        assert_eq!(IdentitySigner::public(&key), key.public());
        let m = IdentitySigner::sign(&key, b"a setup message");
        assert!(verify(&key.public(), b"a setup message", &m));
        assert!(!verify(&key.public(), b"a setup massage", &m));
    }

    /// A signature whose `S` is not below the group order is refused, by the core's own
    /// comparison (what a device, whose ed25519-dalek checks only `S`'s top bits, relies
    /// on): `S + l` makes the same equation hold and has its top three bits clear.
    #[test]
    fn a_signature_with_a_scalar_past_the_order_is_refused() {
        let key = IdentityKey::from_bytes(&[5; 32]);
        let digest = [9u8; 32];
        let good = key.sign(&digest);
        assert!(verify(&key.public(), &digest, &good));
        let s =
            curve25519_dalek::Scalar::from_canonical_bytes(good[32..].try_into().unwrap()).unwrap();
        // S + l, as 32 little-endian bytes: below 2^253, so its top three bits are clear.
        let mut past = [0u8; 32];
        let mut carry = 0u16;
        for (i, out) in past.iter_mut().enumerate() {
            let sum = u16::from(s.as_bytes()[i]) + u16::from(crate::ristretto::ORDER[i]) + carry;
            *out = sum as u8;
            carry = sum >> 8;
        }
        assert_eq!(carry, 0);
        assert_eq!(
            past[31] & 0xe0,
            0,
            "S + l passes a check of the top bits alone"
        );
        assert!(!crate::ristretto::below_order(&past));
        let mut malleated = good;
        malleated[32..].copy_from_slice(&past);
        assert!(!verify(&key.public(), &digest, &malleated));
        assert!(crate::ristretto::below_order(
            &good[32..].try_into().unwrap()
        ));
    }

    fn hex32(s: &str) -> [u8; 32] {
        let mut out = [0u8; 32];
        for (i, b) in out.iter_mut().enumerate() {
            *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap();
        }
        out
    }
}
