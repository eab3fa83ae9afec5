//! Identity keys: each client and trustee signs what it states in a blame round with an
//! Ed25519 key (RFC 8032, `ed25519-dalek` without precomputed tables, so a device trustee
//! signs too). Anyone holding the group's public identity keys checks such a statement
//! offline.
//!
//! Signatures are over 32-byte digests (SHA-256 of a labelled message, built by
//! `crate::blame`), so a node signs a long statement without holding it twice.
//!
//! Owns the key type and the checks; it must not know what is signed.

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

/// Bytes of an identity signature.
pub const IDENTITY_SIGNATURE_LEN: usize = 64;

/// A node's identity signing key. Its secret is zeroed on drop.
#[derive(Clone)]
pub struct IdentityKey(SigningKey);

impl core::fmt::Debug for IdentityKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("IdentityKey(..)")
    }
}

impl IdentityKey {
    /// The key of a 32-byte Ed25519 secret (any bytes are a valid secret).
    pub fn from_bytes(secret: &[u8; 32]) -> Self {
        IdentityKey(SigningKey::from_bytes(secret))
    }

    /// The public key.
    pub fn public(&self) -> [u8; 32] {
        self.0.verifying_key().to_bytes()
    }

    /// Signs a digest.
    pub fn sign(&self, digest: &[u8; 32]) -> [u8; IDENTITY_SIGNATURE_LEN] {
        self.0.sign(digest).to_bytes()
    }
}

/// The public identity key of a 32-byte secret.
pub fn identity_public_key(secret: &[u8; 32]) -> [u8; 32] {
    IdentityKey::from_bytes(secret).public()
}

/// Whether `signature` is `public`'s signature of `digest` (strict RFC 8032 checks: no
/// small-order keys, canonical encodings).
pub fn verify(public: &[u8; 32], digest: &[u8; 32], signature: &[u8]) -> bool {
    let Ok(key) = VerifyingKey::from_bytes(public) else {
        return false;
    };
    let Ok(sig) = Signature::from_slice(signature) else {
        return false;
    };
    key.verify_strict(digest, &sig).is_ok()
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
        let sig = key.0.sign(b"").to_bytes();
        assert_eq!(
            sig[..32],
            hex32("e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155")
        );
        let digest = [7u8; 32];
        let s = key.sign(&digest);
        assert!(verify(&key.public(), &digest, &s));
        assert!(!verify(&key.public(), &[8; 32], &s));
        let mut bad = s;
        bad[3] ^= 1;
        assert!(!verify(&key.public(), &digest, &bad));
        assert!(!verify(&key.public(), &digest, &s[..63]));
        assert!(!verify(&identity_public_key(&[1; 32]), &digest, &s));
    }

    fn hex32(s: &str) -> [u8; 32] {
        let mut out = [0u8; 32];
        for (i, b) in out.iter_mut().enumerate() {
            *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap();
        }
        out
    }
}
