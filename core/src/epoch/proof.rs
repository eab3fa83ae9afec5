//! The setup's proofs of knowledge and their contexts, built on `ristretto::dleq`.
//!
//! A proof of knowledge of `x` with `X = x·G` is a DLEQ proof that `log_G(X) = log_G(X)`
//! (the Chaum–Pedersen proof with both bases `G` is Schnorr's proof). Contexts:
//!
//! ```text
//! key      "dissent-rs v3 setup key"     ‖ group ‖ epoch (u64 BE) ‖ attempt ‖ trustee
//! submit   "dissent-rs v3 setup submit"  ‖ group ‖ epoch ‖ attempt ‖ client (u16 BE) ‖ a
//! shuffle  "dissent-rs v3 setup shuffle" ‖ group ‖ epoch ‖ attempt ‖ trustee
//! ```
//!
//! A submission's proof is about `b = r·G` and names `a = P + r·Y`, the client and the
//! attempt, so nobody can submit a re-randomised copy of another member's ciphertext (it
//! would not know the randomness) or replay one into another attempt.
//!
//! Owns these statements; the group arithmetic is `ristretto`'s.

use curve25519_dalek::constants::RISTRETTO_BASEPOINT_POINT;
use rand_core::CryptoRngCore;

use crate::ristretto::dleq::{self, DleqError};
use crate::ristretto::elgamal::Ciphertext;
use crate::ristretto::keys::{PublicKey, SecretKey};

/// Longest context (the submission's).
const CONTEXT_LEN: usize = 26 + 32 + 8 + 1 + 2 + 32;

/// A context: label ‖ group ‖ epoch ‖ attempt ‖ `tail`.
pub(crate) struct Context {
    bytes: [u8; CONTEXT_LEN],
    len: usize,
}

impl Context {
    fn new(label: &[u8], group: &[u8; 32], epoch: u64, attempt: u8, tail: &[u8]) -> Self {
        let mut c = Context {
            bytes: [0; CONTEXT_LEN],
            len: 0,
        };
        for part in [label, group, &epoch.to_be_bytes(), &[attempt], tail] {
            for (dst, src) in c.bytes.iter_mut().skip(c.len).zip(part) {
                *dst = *src;
            }
            c.len += part.len();
        }
        c
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        self.bytes.get(..self.len).unwrap_or(&[])
    }

    /// A trustee's key.
    pub(crate) fn key(group: &[u8; 32], epoch: u64, attempt: u8, trustee: u8) -> Self {
        Self::new(
            b"dissent-rs v3 setup key",
            group,
            epoch,
            attempt,
            &[trustee],
        )
    }

    /// A client's submission with first component `a`.
    pub(crate) fn submit(group: &[u8; 32], epoch: u64, attempt: u8, client: u16, a: &[u8]) -> Self {
        let mut tail = [0u8; 34];
        let (head, rest) = tail.split_at_mut(2);
        head.copy_from_slice(&client.to_be_bytes());
        for (dst, src) in rest.iter_mut().zip(a) {
            *dst = *src;
        }
        Self::new(b"dissent-rs v3 setup submit", group, epoch, attempt, &tail)
    }

    /// A trustee's shuffle.
    pub(crate) fn shuffle(group: &[u8; 32], epoch: u64, attempt: u8, trustee: u8) -> Self {
        Self::new(
            b"dissent-rs v3 setup shuffle",
            group,
            epoch,
            attempt,
            &[trustee],
        )
    }
}

/// A proof of knowledge of `secret` under `context`.
pub(crate) fn prove_knowledge(
    context: &Context,
    secret: &SecretKey,
    rng: &mut impl CryptoRngCore,
) -> [u8; 64] {
    dleq::prove(context.as_bytes(), secret, &RISTRETTO_BASEPOINT_POINT, rng).1
}

/// Checks a proof of knowledge of the discrete logarithm of `public`.
pub(crate) fn verify_knowledge(
    context: &Context,
    public: &PublicKey,
    proof: &[u8; 64],
) -> Result<(), DleqError> {
    dleq::verify_knowledge(context.as_bytes(), public, proof)
}

/// Decodes a submission's ciphertext and checks its proof of knowledge of the randomness.
pub(crate) fn verify_submission(
    group: &[u8; 32],
    epoch: u64,
    attempt: u8,
    client: u16,
    ciphertext: &[u8; 64],
    proof: &[u8; 64],
) -> Result<Ciphertext, DleqError> {
    let ct = Ciphertext::from_bytes(ciphertext)?;
    let (a, b) = ciphertext.split_at(32);
    let b: &[u8; 32] = b.try_into().map_err(|_| DleqError::Invalid)?;
    let b = PublicKey::from_bytes(b)?;
    let context = Context::submit(group, epoch, attempt, client, a);
    verify_knowledge(&context, &b, proof)?;
    Ok(ct)
}

/// A client's submission of `pseudonym` under `joint`: the ciphertext and its proof.
pub(crate) fn submission(
    group: &[u8; 32],
    epoch: u64,
    attempt: u8,
    client: u16,
    joint: &PublicKey,
    pseudonym: &PublicKey,
    rng: &mut impl CryptoRngCore,
) -> ([u8; 64], [u8; 64]) {
    let r = SecretKey::generate(rng);
    let ct = Ciphertext::encrypt_with(joint, pseudonym.point(), r.scalar()).to_bytes();
    let context = Context::submit(group, epoch, attempt, client, ct.get(..32).unwrap_or(&[]));
    (ct, prove_knowledge(&context, &r, rng))
}
