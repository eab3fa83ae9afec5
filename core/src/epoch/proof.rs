//! The setup's proofs of knowledge and their contexts, built on `ristretto::dleq`.
//!
//! A proof of knowledge of `x` with `X = x·G` is a DLEQ proof that `log_G(X) = log_G(X)`
//! (the Chaum–Pedersen proof with both bases `G` is Schnorr's proof). Contexts:
//!
//! ```text
//! key      "dissent-rs v3 setup key"     ‖ group ‖ epoch (u64 BE) ‖ attempt ‖ trustee
//! submit   "dissent-rs v3 setup submit"  ‖ group ‖ epoch ‖ attempt ‖ client (u16 BE) ‖ a
//! shuffle  "dissent-rs v3 setup shuffle" ‖ group ‖ epoch ‖ attempt ‖ trustee
//! shares   "dissent-rs v3 setup shares"  ‖ group ‖ epoch ‖ attempt ‖ trustee
//! ```
//!
//! A trustee's decryption shares are `d_i = y·b_i` for every row with one DLEQ proof
//! `log_G(Y) = log_B(D)` for `B = Σ w_i·b_i`, `D = Σ w_i·d_i`, the weights drawn after the
//! `d_i` are fixed (`w_i = clone(T).append_u64("index", i).challenge("w")`, `T` =
//! merlin("dissent-rs v3 setup shares") with the context, `Y`, the rows and the `d_i`): one
//! wrong `d_i` makes `D ≠ y·B` but with probability 1/ℓ.
//!
//! A submission's proof is about `b = r·G` and names `a = P + r·Y`, the client and the
//! attempt, so nobody can submit a re-randomised copy of another member's ciphertext (it
//! would not know the randomness) or replay one into another attempt.
//!
//! Owns these statements; the group arithmetic is `ristretto`'s.

use curve25519_dalek::constants::RISTRETTO_BASEPOINT_POINT;
use curve25519_dalek::ristretto::RistrettoPoint;
use curve25519_dalek::scalar::Scalar;
use merlin::Transcript;
use rand_core::CryptoRngCore;

use crate::ristretto::dleq::{self, DleqError};
use crate::ristretto::elgamal::{Ciphertext, CIPHERTEXT_LEN};
use crate::ristretto::keys::{PublicKey, SecretKey};
use crate::ristretto::{decode_point_at, PointError};

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

    /// A trustee's decryption shares.
    pub(crate) fn shares(group: &[u8; 32], epoch: u64, attempt: u8, trustee: u8) -> Self {
        Self::new(
            b"dissent-rs v3 setup shares",
            group,
            epoch,
            attempt,
            &[trustee],
        )
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

/// Bytes of a trustee's shares stage for `n` rows: `d_0 ‖ … ‖ d_(n−1) ‖ proof`.
pub(crate) const fn shares_len(n: usize) -> usize {
    32 * n + 64
}

/// The weights' transcript of trustee `j`'s shares: its context, its key, the rows it
/// decrypts (as every node holds them at its turn) and its values `d_i`.
fn shares_transcript(context: &Context, key: &PublicKey, rows: &[u8], ds: &[u8]) -> Transcript {
    let mut t = Transcript::new(b"dissent-rs v3 setup shares");
    t.append_message(b"context", context.as_bytes());
    t.append_message(b"key", key.as_bytes());
    t.append_message(b"rows", rows);
    t.append_message(b"shares", ds);
    t
}

fn weight(t: &Transcript, i: usize) -> Scalar {
    let mut t = t.clone();
    t.append_u64(b"index", i as u64);
    crate::ristretto::challenge_scalar(&mut t, b"w")
}

/// `(B, D) = (Σ w_i·b_i, Σ w_i·d_i)`; `None` if a point does not decode (`Err(i)`: `d_i`).
fn combine(
    t: &Transcript,
    rows: &[u8],
    ds: &[u8],
    n: usize,
) -> Result<(RistrettoPoint, RistrettoPoint), usize> {
    let pairs = rows
        .chunks_exact(CIPHERTEXT_LEN)
        .zip(ds.chunks_exact(32))
        .take(n)
        .enumerate()
        .map(|(i, (row, d))| {
            let b = row
                .get(32..)
                .and_then(|b| decode_point_at(b).ok())
                .ok_or(i)?;
            let d = decode_point_at(d).map_err(|_| i)?;
            Ok::<_, usize>((weight(t, i), b, d))
        });
    #[cfg(feature = "std")]
    {
        use curve25519_dalek::traits::VartimeMultiscalarMul;
        let mut w = std::vec::Vec::with_capacity(n);
        let mut bs = std::vec::Vec::with_capacity(n);
        let mut dd = std::vec::Vec::with_capacity(n);
        for pair in pairs {
            let (wi, b, d) = pair?;
            w.push(wi);
            bs.push(b);
            dd.push(d);
        }
        Ok((
            RistrettoPoint::vartime_multiscalar_mul(&w, &bs),
            RistrettoPoint::vartime_multiscalar_mul(&w, &dd),
        ))
    }
    #[cfg(not(feature = "std"))]
    {
        use curve25519_dalek::traits::Identity;
        let mut acc = (RistrettoPoint::identity(), RistrettoPoint::identity());
        for pair in pairs {
            let (wi, b, d) = pair?;
            acc.0 += crate::ristretto::mul(&wi, &b);
            acc.1 += crate::ristretto::mul(&wi, &d);
        }
        Ok(acc)
    }
}

/// Trustee `secret`'s shares of the first `n` rows: writes `d_i = y·b_i` and one DLEQ proof
/// that `log_G(Y) = log_B(D)` for the weighted sums into `out` ([`shares_len`] bytes).
pub(crate) fn prove_shares(
    context: &Context,
    secret: &SecretKey,
    rows: &[u8],
    n: usize,
    out: &mut [u8],
    rng: &mut impl CryptoRngCore,
) -> Option<()> {
    let (ds, proof) = out.get_mut(..shares_len(n))?.split_at_mut(32 * n);
    for (row, d) in rows
        .chunks_exact(CIPHERTEXT_LEN)
        .zip(ds.chunks_exact_mut(32))
        .take(n)
    {
        let b = decode_point_at(row.get(32..)?).ok()?;
        d.copy_from_slice(
            crate::ristretto::mul(secret.scalar(), &b)
                .compress()
                .as_bytes(),
        );
    }
    let key = secret.public_key();
    let t = shares_transcript(context, &key, rows.get(..n * CIPHERTEXT_LEN)?, ds);
    let (b, _) = combine(&t, rows, ds, n).ok()?;
    let (_, p) = dleq::prove(context.as_bytes(), secret, &b, rng);
    proof.copy_from_slice(&p);
    Some(())
}

/// Checks trustee `key`'s shares stage against the first `n` rows.
pub(crate) fn verify_shares(
    context: &Context,
    key: &PublicKey,
    rows: &[u8],
    n: usize,
    shares: &[u8],
) -> Result<(), DleqError> {
    let stage = shares.get(..shares_len(n)).ok_or(DleqError::Invalid)?;
    let (ds, proof) = stage.split_at(32 * n);
    let proof: &[u8; 64] = proof.try_into().map_err(|_| DleqError::Invalid)?;
    let rows = rows.get(..n * CIPHERTEXT_LEN).ok_or(DleqError::Invalid)?;
    let t = shares_transcript(context, key, rows, ds);
    let (b, d) =
        combine(&t, rows, ds, n).map_err(|_| DleqError::Point(PointError::NonCanonical))?;
    dleq::verify_vartime(context.as_bytes(), key, &b, &d, proof)
}
