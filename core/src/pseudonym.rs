//! Pseudonym keys: a slot's owner seals what it writes in its slot under a key derived from
//! its pseudonym key (`crate::wire::slot`, no signature), and signs or proves its
//! accusations with it (Ristretto255).
//!
//! - Pseudonym signatures are schnorrkel's sr25519 Schnorr signatures (feature
//!   `pseudonyms`): `signing_context("dissent-rs v3 slot").bytes(digest)` over a 32-byte
//!   digest, publicly verifiable, for the rare messages anyone must be able to check (signed
//!   accusations). schnorrkel turns on curve25519-dalek's precomputed tables, which a device
//!   has no flash for, so it stays behind the feature: a device never signs or checks them,
//!   and seals its cells with the slot key, which needs only the pseudonym scalar.
//! - Accusation proofs are the core's own Chaum–Pedersen proof
//!   ([`crate::ristretto::dleq`]) of `log_G(P) = log_G(P)` for the pseudonym key `P`, its
//!   context the accusation ([`accusation_context`]): a Fiat–Shamir proof of knowledge of
//!   the pseudonym secret bound to the accusation. Every node checks one before it reveals
//!   anything in a blame round, a device trustee included, without schnorrkel.
//!
//! A pseudonym secret is 32 bytes, read little-endian and reduced modulo the group order
//! to the scalar `x` (as a pad secret; zero is refused); its public key is `x·G`. The
//! schnorrkel key is `x` with the nonce seed `SHA-512("dissent-rs v3 pseudonym nonce" |
//! secret)[..32]` (schnorrkel's signatures are randomised on top of it).
//!
//! Owns pseudonym keys, slot signatures and accusation proofs; it must not know cells or
//! rounds.

use curve25519_dalek::constants::RISTRETTO_BASEPOINT_COMPRESSED;

use crate::ristretto::dleq;

const ACCUSATION_LABEL: &[u8] = b"dissent-rs v3 accusation";

/// Bytes of an accusation context.
pub const ACCUSATION_CONTEXT_LEN: usize = ACCUSATION_LABEL.len() + 16 + 16 + 32 + 4 + 2 + 8 + 4;

/// What an accusation proof is bound to.
#[allow(clippy::too_many_arguments)]
pub fn accusation_context(
    group_id: &[u8; 16],
    session_id: &[u8; 16],
    view: &[u8; 32],
    interval: u32,
    slot: u16,
    exchange: u64,
    bit: u32,
) -> [u8; ACCUSATION_CONTEXT_LEN] {
    let mut c = [0u8; ACCUSATION_CONTEXT_LEN];
    let parts: [&[u8]; 8] = [
        ACCUSATION_LABEL,
        group_id,
        session_id,
        view,
        &interval.to_be_bytes(),
        &slot.to_be_bytes(),
        &exchange.to_be_bytes(),
        &bit.to_be_bytes(),
    ];
    let mut at = 0;
    for p in parts {
        crate::field::put(&mut c, at, p);
        at += p.len();
    }
    c
}

/// Whether `proof` proves an accusation with `context` by the holder of pseudonym key
/// `public`.
pub fn verify_accusation(public: &[u8; 32], context: &[u8], proof: &[u8; 64]) -> bool {
    let g = RISTRETTO_BASEPOINT_COMPRESSED.to_bytes();
    dleq::verify_encoded(context, public, &g, public, proof).is_ok()
}

#[cfg(feature = "pseudonyms")]
pub use signing::{decode_public, verify, PseudonymKey, PseudonymPublic};

#[cfg(feature = "pseudonyms")]
mod signing {
    use rand_core::CryptoRngCore;
    use schnorrkel::{signing_context, Keypair, PublicKey, SecretKey as SrSecret, Signature};
    use sha2::{Digest, Sha512};

    use crate::ristretto::dleq;
    use crate::ristretto::keys::SecretKey;

    const SLOT_CONTEXT: &[u8] = b"dissent-rs v3 slot";

    /// A slot owner's pseudonym key.
    pub struct PseudonymKey {
        keypair: Keypair,
        scalar: SecretKey,
    }

    impl core::fmt::Debug for PseudonymKey {
        fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            f.write_str("PseudonymKey(..)")
        }
    }

    impl PseudonymKey {
        /// The key of a 32-byte secret; `None` if it is zero modulo the group order.
        pub fn from_secret(secret: &[u8; 32]) -> Option<Self> {
            let scalar = crate::crypto::pad_secret(secret)?;
            let mut expanded = [0u8; 64];
            let nonce = Sha512::new()
                .chain_update(b"dissent-rs v3 pseudonym nonce")
                .chain_update(secret)
                .finalize();
            expanded[..32].copy_from_slice(&scalar.to_bytes());
            expanded[32..].copy_from_slice(nonce.get(..32)?);
            let keypair = Keypair::from(SrSecret::from_bytes(&expanded).ok()?);
            Some(PseudonymKey { keypair, scalar })
        }

        /// The public key (32 bytes, a Ristretto255 point).
        pub fn public(&self) -> [u8; 32] {
            self.keypair.public.to_bytes()
        }

        /// Signs a 32-byte digest.
        pub fn sign(&self, digest: &[u8; 32], rng: &mut impl CryptoRngCore) -> [u8; 64] {
            let t = signing_context(SLOT_CONTEXT).bytes(digest);
            let t = schnorrkel::context::attach_rng(t, rng);
            self.keypair.sign(t).to_bytes()
        }

        /// Proves an accusation ([`super::accusation_context`]).
        pub fn prove_accusation(&self, context: &[u8], rng: &mut impl CryptoRngCore) -> [u8; 64] {
            let g = curve25519_dalek::constants::RISTRETTO_BASEPOINT_POINT;
            dleq::prove(context, &self.scalar, &g, rng).1
        }
    }

    /// A decoded pseudonym public key (a relay decodes each slot's key once).
    pub type PseudonymPublic = PublicKey;

    /// Decodes a pseudonym public key; `None` if it is not a Ristretto255 encoding.
    pub fn decode_public(bytes: &[u8; 32]) -> Option<PseudonymPublic> {
        PublicKey::from_bytes(bytes).ok()
    }

    /// Whether `signature` is `public`'s signature of `digest`.
    pub fn verify(public: &PublicKey, digest: &[u8; 32], signature: &[u8; 64]) -> bool {
        let Ok(sig) = Signature::from_bytes(signature) else {
            return false;
        };
        public
            .verify(signing_context(SLOT_CONTEXT).bytes(digest), &sig)
            .is_ok()
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use rand_chacha::rand_core::SeedableRng;
        use rand_chacha::ChaCha20Rng;

        #[test]
        fn signatures_and_accusations_verify_and_bind() {
            let mut rng = ChaCha20Rng::from_seed([5; 32]);
            let key = PseudonymKey::from_secret(&[9; 32]).unwrap();
            let public = PublicKey::from_bytes(&key.public()).unwrap();
            let sig = key.sign(&[1; 32], &mut rng);
            assert!(verify(&public, &[1; 32], &sig));
            assert!(!verify(&public, &[2; 32], &sig));
            let other = PseudonymKey::from_secret(&[10; 32]).unwrap();
            let other_public = PublicKey::from_bytes(&other.public()).unwrap();
            assert!(!verify(&other_public, &[1; 32], &sig));
            // The scalar behind the DLEQ proofs is schnorrkel's own.
            assert_eq!(key.scalar.public_key().to_bytes(), key.public());
            let ctx = super::super::accusation_context(&[1; 16], &[2; 16], &[3; 32], 7, 2, 9, 13);
            let proof = key.prove_accusation(&ctx, &mut rng);
            assert!(super::super::verify_accusation(&key.public(), &ctx, &proof));
            assert!(!super::super::verify_accusation(
                &other.public(),
                &ctx,
                &proof
            ));
            let other_ctx =
                super::super::accusation_context(&[1; 16], &[2; 16], &[3; 32], 7, 2, 9, 14);
            assert!(!super::super::verify_accusation(
                &key.public(),
                &other_ctx,
                &proof
            ));
        }

        /// A pseudonym public key is the pad public key of the same secret (`x·G`), whose
        /// vectors docs/vectors/pads.py computes apart from the Rust code.
        #[test]
        fn public_key_is_x_g() {
            for secret in [[9u8; 32], [0xff; 32], [1; 32]] {
                let key = PseudonymKey::from_secret(&secret).unwrap();
                assert_eq!(key.public(), crate::crypto::pad_public_key(&secret));
            }
            assert!(PseudonymKey::from_secret(&[0; 32]).is_none());
        }
    }
}
