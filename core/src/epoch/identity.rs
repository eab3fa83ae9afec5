//! Identity signatures over the setup messages a node authors (Ed25519, `ed25519-dalek`).
//!
//! The setup needs only two things of a node's identity key: sign bytes, and check a
//! signature against a public key from the group's description. [`IdentitySigner`] is that
//! boundary: the core's one identity key type, [`crate::identity::IdentityKey`] (here also
//! named [`Ed25519Identity`]), implements it, and any other holder of an Ed25519 identity
//! key (a device's secure element) implements the same trait. [`verify`] checks strictly
//! (`verify_strict`: no small-order keys or malleable signatures).
//!
//! Owns the signing boundary only; what is signed is `message.rs`'s, the key type is
//! `crate::identity`'s.

pub use crate::identity::verify;
use crate::identity::{IdentityKey, IDENTITY_SIGNATURE_LEN};

/// Bytes of an Ed25519 signature.
pub const SIGNATURE_LEN: usize = IDENTITY_SIGNATURE_LEN;
/// Bytes of an Ed25519 public key.
pub const IDENTITY_LEN: usize = 32;

/// A node's identity key, as the setup uses it.
pub trait IdentitySigner {
    /// The Ed25519 signature of `message`.
    fn sign(&self, message: &[u8]) -> [u8; SIGNATURE_LEN];
    /// The public key others check the signature with.
    fn public(&self) -> [u8; IDENTITY_LEN];
}

/// An Ed25519 identity key held in memory: the core's identity key.
pub type Ed25519Identity = IdentityKey;

impl IdentitySigner for IdentityKey {
    fn sign(&self, message: &[u8]) -> [u8; SIGNATURE_LEN] {
        self.sign_message(message)
    }
    fn public(&self) -> [u8; IDENTITY_LEN] {
        IdentityKey::public(self)
    }
}
