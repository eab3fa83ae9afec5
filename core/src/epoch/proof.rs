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

/// Rows one step of [`SharesCheck`] or [`SharesProof`] takes at most.
const SHARES_STEP_ROWS: usize = 2 * crate::ristretto::shuffle::STEP_ROWS;

/// Adds rows `from..to` to `(B, D)` (`D` only if `d` is given); `Err(i)` if `b_i` or `d_i`
/// does not decode.
fn combine_rows(
    t: &Transcript,
    rows: &[u8],
    ds: &[u8],
    (from, to): (usize, usize),
    b: &mut RistrettoPoint,
    d: Option<&mut RistrettoPoint>,
) -> Result<(), usize> {
    let pairs = rows
        .chunks_exact(CIPHERTEXT_LEN)
        .zip(ds.chunks_exact(32))
        .enumerate()
        .take(to)
        .skip(from);
    let mut d_sum = RistrettoPoint::default();
    let with_d = d.is_some();
    for (i, (row, d_bytes)) in pairs {
        let b_i = row
            .get(32..)
            .and_then(|b| decode_point_at(b).ok())
            .ok_or(i)?;
        let w = weight(t, i);
        if with_d {
            let d_i = decode_point_at(d_bytes).map_err(|_| i)?;
            d_sum += crate::ristretto::mul(&w, &d_i);
        }
        *b += crate::ristretto::mul(&w, &b_i);
    }
    if let Some(d) = d {
        *d += d_sum;
    }
    Ok(())
}

/// [`verify_shares`] in bounded steps (at most [`SHARES_STEP_ROWS`] rows a step): the same
/// result, for a device that must not spend seconds in one call.
pub(crate) struct SharesCheck {
    t: Transcript,
    next: usize,
    b: RistrettoPoint,
    d: RistrettoPoint,
}

impl SharesCheck {
    /// Starts the check of trustee `key`'s shares stage against the first `n` rows.
    pub(crate) fn new(
        context: &Context,
        key: &PublicKey,
        rows: &[u8],
        n: usize,
        shares: &[u8],
    ) -> Result<Self, DleqError> {
        let stage = shares.get(..shares_len(n)).ok_or(DleqError::Invalid)?;
        let (ds, _) = stage.split_at(32 * n);
        let rows = rows.get(..n * CIPHERTEXT_LEN).ok_or(DleqError::Invalid)?;
        Ok(SharesCheck {
            t: shares_transcript(context, key, rows, ds),
            next: 0,
            b: RistrettoPoint::default(),
            d: RistrettoPoint::default(),
        })
    }

    /// The next bounded part; `Poll::Ready(())` once the proof held.
    pub(crate) fn step(
        &mut self,
        context: &Context,
        key: &PublicKey,
        rows: &[u8],
        n: usize,
        shares: &[u8],
    ) -> Result<core::task::Poll<()>, DleqError> {
        let stage = shares.get(..shares_len(n)).ok_or(DleqError::Invalid)?;
        let (ds, proof) = stage.split_at(32 * n);
        let proof: &[u8; 64] = proof.try_into().map_err(|_| DleqError::Invalid)?;
        let rows = rows.get(..n * CIPHERTEXT_LEN).ok_or(DleqError::Invalid)?;
        let to = (self.next + SHARES_STEP_ROWS).min(n);
        let (b, d) = (&mut self.b, &mut self.d);
        combine_rows(&self.t, rows, ds, (self.next, to), b, Some(d))
            .map_err(|_| DleqError::Point(PointError::NonCanonical))?;
        self.next = to;
        if to < n {
            return Ok(core::task::Poll::Pending);
        }
        dleq::verify_vartime(context.as_bytes(), key, &self.b, &self.d, proof)?;
        Ok(core::task::Poll::Ready(()))
    }
}

/// Trustee `secret`'s shares of the first `n` rows, in bounded steps (at most
/// [`SHARES_STEP_ROWS`] rows a step): writes `d_i = y·b_i`, then one DLEQ proof that
/// `log_G(Y) = log_B(D)` for the weighted sums ([`shares_len`] bytes). Only `B` is summed
/// (the proof needs no `D`).
// No allocator: the state lives inline, in the caller's storage.
#[allow(clippy::large_enum_variant)]
pub(crate) enum SharesProof {
    /// Writing `d_i` from row `next`.
    Shares { next: usize },
    /// Summing `B` from row `next`, with the weights' transcript.
    Combine {
        t: Transcript,
        next: usize,
        b: RistrettoPoint,
    },
    /// Written.
    Done,
}

impl SharesProof {
    pub(crate) const fn new() -> Self {
        SharesProof::Shares { next: 0 }
    }

    /// The next bounded part; `Some(Poll::Ready(()))` once `out` holds the stage, `None`
    /// if a row does not decode (then there is nothing to send).
    pub(crate) fn step(
        &mut self,
        context: &Context,
        secret: &SecretKey,
        rows: &[u8],
        n: usize,
        out: &mut [u8],
        rng: &mut impl CryptoRngCore,
    ) -> Option<core::task::Poll<()>> {
        let (ds, proof) = out.get_mut(..shares_len(n))?.split_at_mut(32 * n);
        let rows = rows.get(..n * CIPHERTEXT_LEN)?;
        match self {
            SharesProof::Shares { next } => {
                let to = (*next + SHARES_STEP_ROWS).min(n);
                let cells = rows
                    .chunks_exact(CIPHERTEXT_LEN)
                    .zip(ds.chunks_exact_mut(32))
                    .take(to)
                    .skip(*next);
                for (row, d) in cells {
                    let b = decode_point_at(row.get(32..)?).ok()?;
                    d.copy_from_slice(
                        crate::ristretto::mul(secret.scalar(), &b)
                            .compress()
                            .as_bytes(),
                    );
                }
                *self = if to < n {
                    SharesProof::Shares { next: to }
                } else {
                    let key = secret.public_key();
                    SharesProof::Combine {
                        t: shares_transcript(context, &key, rows, ds),
                        next: 0,
                        b: RistrettoPoint::default(),
                    }
                };
                Some(core::task::Poll::Pending)
            }
            SharesProof::Combine { t, next, b } => {
                let to = (*next + SHARES_STEP_ROWS).min(n);
                combine_rows(t, rows, ds, (*next, to), b, None).ok()?;
                if to < n {
                    *next = to;
                    return Some(core::task::Poll::Pending);
                }
                let (_, p) = dleq::prove(context.as_bytes(), secret, b, rng);
                proof.copy_from_slice(&p);
                *self = SharesProof::Done;
                Some(core::task::Poll::Ready(()))
            }
            SharesProof::Done => Some(core::task::Poll::Ready(())),
        }
    }
}
