//! Identity signatures over the setup messages a node authors (Ed25519, `ed25519-dalek`).
//!
//! The setup needs only two things of a node's identity key: sign bytes, and check a
//! signature against a public key from the group's description. [`IdentitySigner`] is that
//! boundary: [`Ed25519Identity`] implements it over an `ed25519-dalek` signing key, and any
//! other holder of an Ed25519 identity key (a node's key file, a device's secure element)
//! implements the same trait. [`verify`] checks strictly (`verify_strict`: no small-order
//! keys or malleable signatures).
//!
//! Owns the signing boundary only; what is signed is `message.rs`'s.

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

/// Bytes of an Ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;
/// Bytes of an Ed25519 public key.
pub const IDENTITY_LEN: usize = 32;

/// A node's identity key, as the setup uses it.
pub trait IdentitySigner {
    /// The Ed25519 signature of `message`.
    fn sign(&self, message: &[u8]) -> [u8; SIGNATURE_LEN];
    /// The public key others check the signature with.
    fn public(&self) -> [u8; IDENTITY_LEN];
}

/// An Ed25519 identity key held in memory.
pub struct Ed25519Identity(SigningKey);

impl Ed25519Identity {
    /// The key with this 32-byte secret seed.
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self(SigningKey::from_bytes(seed))
    }
}

impl core::fmt::Debug for Ed25519Identity {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Ed25519Identity(..)")
    }
}

impl IdentitySigner for Ed25519Identity {
    fn sign(&self, message: &[u8]) -> [u8; SIGNATURE_LEN] {
        self.0.sign(message).to_bytes()
    }
    fn public(&self) -> [u8; IDENTITY_LEN] {
        self.0.verifying_key().to_bytes()
    }
}

/// Whether `signature` is `public`'s Ed25519 signature of `message` (strict checks).
pub fn verify(
    public: &[u8; IDENTITY_LEN],
    message: &[u8],
    signature: &[u8; SIGNATURE_LEN],
) -> bool {
    match VerifyingKey::from_bytes(public) {
        Ok(key) => key
            .verify_strict(message, &Signature::from_bytes(signature))
            .is_ok(),
        Err(_) => false,
    }
}
