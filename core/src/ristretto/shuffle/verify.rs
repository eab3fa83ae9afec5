//! The verifier (the paper's `CheckProof`): every encoding, every length, every equation.

use core::task::Poll;

use curve25519_dalek::ristretto::RistrettoPoint;
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::Identity;
use merlin::Transcript;

use super::super::keys::PublicKey;
use super::super::{decode_point, generators, mul, neg, vartime_double_base};
use super::{
    check_shape, ciphertexts, final_challenge, first_announcement, first_t, row_challenge,
    statement_transcript, Equation, Item, Part, ProofView, Shape, ShuffleError, MAX_WIDTH,
};

/// Verifies that `outputs` is a re-encryption shuffle of `inputs` under `key`.
///
/// With the `std` feature this is `verify_batched` (one multiscalar multiplication),
/// which on failure runs [`verify_streaming`] to name the failing equation; without it,
/// [`verify_streaming`]. Both accept exactly the same proofs, up to probability 2^-252.
pub fn verify(
    context: &[u8],
    key: &PublicKey,
    width: usize,
    inputs: &[u8],
    outputs: &[u8],
    proof: &[u8],
) -> Result<(), ShuffleError> {
    #[cfg(feature = "std")]
    {
        verify_batched(context, key, width, inputs, outputs, proof)
    }
    #[cfg(not(feature = "std"))]
    {
        verify_streaming(context, key, width, inputs, outputs, proof)
    }
}

fn point(bytes: &Item, part: Part, index: usize) -> Result<RistrettoPoint, ShuffleError> {
    decode_point(bytes).map_err(|_| ShuffleError::Point { part, index })
}

/// A ciphertext `[a, b]`; `index` counts ciphertexts within `part` (its points are `2·index`
/// and `2·index + 1`).
fn ciphertext(
    [a, b]: &[Item; 2],
    part: Part,
    index: usize,
) -> Result<(RistrettoPoint, RistrettoPoint), ShuffleError> {
    Ok((point(a, part, 2 * index)?, point(b, part, 2 * index + 1)?))
}

/// The response `index` (counted in proof order: `s1 s2 s3`, `s4_k`, `ŝ_i`, `s'_i`).
fn scalar(bytes: &Item, index: usize) -> Result<Scalar, ShuffleError> {
    Option::from(Scalar::from_canonical_bytes(*bytes)).ok_or(ShuffleError::Scalar { index })
}

/// An announcement; `index` counts the proof's 32-byte items.
fn announcement(bytes: &Item, index: usize) -> Result<RistrettoPoint, ShuffleError> {
    point(bytes, Part::Announcement, index)
}

/// The response index of `ŝ_0`.
const fn first_s_hat(shape: Shape) -> usize {
    3 + shape.width.get()
}

/// The response index of `s'_0`.
const fn first_s_prime(shape: Shape) -> usize {
    3 + shape.width.get() + shape.n
}

/// The item index of `t4_0`'s `a`.
const fn first_t4(shape: Shape) -> usize {
    first_t(shape.n) + 3
}

/// The responses `s1 s2 s3` and `s4_k`, parsed.
struct Responses {
    s: [Scalar; 3],
    s4: [Scalar; MAX_WIDTH],
}

fn responses(proof: &ProofView<'_>) -> Result<Responses, ShuffleError> {
    let mut s = [Scalar::ZERO; 3];
    for (index, (s, bytes)) in s.iter_mut().zip(proof.s).enumerate() {
        *s = scalar(bytes, index)?;
    }
    let mut s4 = [Scalar::ZERO; MAX_WIDTH];
    for (k, (s4, bytes)) in s4.iter_mut().zip(proof.s4).enumerate() {
        *s4 = scalar(bytes, 3 + k)?;
    }
    Ok(Responses { s, s4 })
}

/// The encoding at position `at` of the fixed validation order (inputs, outputs,
/// permutation commitment, chain, announcements, responses): `None` past the last.
fn validate_item(
    shape: Shape,
    inputs: &[u8],
    outputs: &[u8],
    proof: &ProofView<'_>,
    at: usize,
) -> Option<Result<(), ShuffleError>> {
    let mut at = at;
    for (part, rows) in [(Part::Inputs, inputs), (Part::Outputs, outputs)] {
        let items = rows.as_chunks::<32>().0;
        match items.get(at) {
            Some(item) => return Some(point(item, part, at).map(drop)),
            None => at -= items.len(),
        }
    }
    for (part, items) in [
        (Part::PermutationCommitment, proof.commitments),
        (Part::CommitmentChain, proof.chain),
    ] {
        match items.get(at) {
            Some(item) => return Some(point(item, part, at).map(drop)),
            None => at -= items.len(),
        }
    }
    let announcements = proof.announcements.as_chunks::<32>().0;
    match announcements.get(at) {
        Some(item) => {
            let index = first_announcement(shape.n) + at;
            return Some(announcement(item, index).map(drop));
        }
        None => at -= announcements.len(),
    }
    let mut responses = proof.s.iter().chain(proof.s4).chain(proof.s_hat);
    let item = responses.nth(at).or_else(|| {
        let seen = 3 + proof.s4.len() + proof.s_hat.len();
        proof.s_prime.get(at.checked_sub(seen)?)
    })?;
    Some(scalar(item, at).map(drop))
}

fn check(holds: bool, equation: Equation) -> Result<(), ShuffleError> {
    if holds {
        Ok(())
    } else {
        Err(ShuffleError::Equation(equation))
    }
}

/// Rows (or encodings, while validating) one [`Verifier::step`] takes at most: a step is
/// then a few million instructions on a Cortex-M3, so a device can feed its watchdog and
/// serve its links between steps.
pub const STEP_ROWS: usize = 8;
/// Encodings one validating step decodes at most.
const STEP_ITEMS: usize = 8 * STEP_ROWS;

/// Where a [`Verifier`] is.
#[derive(Clone, Copy)]
enum Pass {
    /// Decoding every encoding, from this position of the validation order.
    Validate(usize),
    /// `t1`, `t2`: from row `j`.
    Commitments(usize),
    /// The chain's links, then `t3`: from row `i`.
    Chain(usize),
    /// `t4_k` for column `k`, from row `j`.
    Column(usize, usize),
    /// Every equation held.
    Done,
    /// An equation or an encoding failed; the error was returned.
    Failed(ShuffleError),
}

/// The allocation-free verifier, resumable: [`Verifier::new`] checks the lengths, then each
/// [`Verifier::step`] does at most [`STEP_ROWS`] rows of one pass (or 64 encodings) and
/// returns `Poll::Pending` until the proof is checked. The caller passes the same bytes to
/// every step (they are the caller's storage; the verifier keeps its transcript, challenges
/// and sums, about 1.4 KiB). Every step but the first and the last costs a few multiplications
/// a row; the result, error included, is [`verify_streaming`]'s.
pub struct Verifier {
    shape: Shape,
    pass: Pass,
    /// The transcript after the permutation commitment (for `u_j`).
    transcript: Transcript,
    c: Scalar,
    r: Responses,
    /// `Π u_j`.
    product: Scalar,
    /// Pass sums: `Σ (c_j − H_j)` and `Σ u_j·c_j`; `ĉ_(i−1)` and `Σ s'_i·H_i`; the
    /// column's `a`, `b`, `Σ u_j·a_j,k`, `Σ u_j·b_j,k`.
    sums: [RistrettoPoint; 4],
    /// `Σ u_j·c_j`, kept for `t3`.
    weighted_commitments: RistrettoPoint,
}

impl Verifier {
    /// Checks the shape and lengths of a proof of `outputs` as a shuffle of `inputs`; the
    /// work is in [`Verifier::step`].
    pub fn new(
        context: &[u8],
        key: &PublicKey,
        width: usize,
        inputs: &[u8],
        outputs: &[u8],
        proof: &[u8],
    ) -> Result<Self, ShuffleError> {
        let shape = check_shape(width, inputs, outputs.len(), proof.len())?;
        let view = ProofView::new(proof, shape)?;
        let transcript = statement_transcript(
            context,
            key,
            width,
            shape.n,
            inputs,
            outputs,
            view.commitments.as_flattened(),
        );
        Ok(Verifier {
            shape,
            pass: Pass::Validate(0),
            transcript,
            c: Scalar::ZERO,
            r: Responses {
                s: [Scalar::ZERO; 3],
                s4: [Scalar::ZERO; MAX_WIDTH],
            },
            product: Scalar::ONE,
            sums: [RistrettoPoint::identity(); 4],
            weighted_commitments: RistrettoPoint::identity(),
        })
    }

    /// Does the next bounded part of the check: `Ok(Poll::Ready(()))` once every equation
    /// held, `Ok(Poll::Pending)` while work is left, the first failure otherwise (and again
    /// on every later call). Bytes other than those given to [`Verifier::new`] (another
    /// length included) make the proof fail, never panic.
    pub fn step(
        &mut self,
        key: &PublicKey,
        inputs: &[u8],
        outputs: &[u8],
        proof: &[u8],
    ) -> Result<Poll<()>, ShuffleError> {
        let result = self.advance(key, inputs, outputs, proof);
        match result {
            Err(e) => {
                self.pass = Pass::Failed(e);
                Err(e)
            }
            Ok(()) if matches!(self.pass, Pass::Done) => Ok(Poll::Ready(())),
            Ok(()) => Ok(Poll::Pending),
        }
    }

    fn advance(
        &mut self,
        key: &PublicKey,
        inputs: &[u8],
        outputs: &[u8],
        proof: &[u8],
    ) -> Result<(), ShuffleError> {
        let shape = self.shape;
        let n = shape.n;
        let width = shape.width.get();
        if let Pass::Failed(e) = self.pass {
            return Err(e);
        }
        check_shape(width, inputs, outputs.len(), proof.len())?;
        let view = ProofView::new(proof, shape)?;
        let end = |from: usize| (from + STEP_ROWS).min(n);
        self.pass = match self.pass {
            Pass::Validate(from) => {
                for at in from..from + STEP_ITEMS {
                    match validate_item(shape, inputs, outputs, &view, at) {
                        Some(result) => result?,
                        None => {
                            let (_, c) = final_challenge(self.transcript.clone(), &view);
                            self.c = c;
                            self.r = responses(&view)?;
                            self.pass = Pass::Commitments(0);
                            return Ok(());
                        }
                    }
                }
                Pass::Validate(from + STEP_ITEMS)
            }
            Pass::Commitments(from) => {
                let to = end(from);
                self.commitments(&view, from, to)?;
                if to < n {
                    Pass::Commitments(to)
                } else {
                    self.commitments_end(&view)?;
                    Pass::Chain(0)
                }
            }
            Pass::Chain(from) => {
                let to = end(from);
                self.chain(&view, from, to)?;
                if to < n {
                    Pass::Chain(to)
                } else {
                    self.chain_end(&view)?;
                    Pass::Column(0, 0)
                }
            }
            Pass::Column(k, from) => {
                let to = end(from);
                self.column(key, inputs, outputs, &view, k, from, to)?;
                match (to < n, k + 1 < width) {
                    (true, _) => Pass::Column(k, to),
                    (false, more) => {
                        self.column_end(&view, k)?;
                        if more {
                            Pass::Column(k + 1, 0)
                        } else {
                            Pass::Done
                        }
                    }
                }
            }
            Pass::Done => Pass::Done,
            Pass::Failed(e) => return Err(e),
        };
        Ok(())
    }

    /// Rows `from..to` of `t1` and `t2`'s sums.
    #[inline(never)]
    fn commitments(
        &mut self,
        proof: &ProofView<'_>,
        from: usize,
        to: usize,
    ) -> Result<(), ShuffleError> {
        if from == 0 {
            self.sums = [RistrettoPoint::identity(); 4];
            self.product = Scalar::ONE;
        }
        let rows = proof.commitments.get(from..to).unwrap_or(&[]);
        for (j, bytes) in (from as u32..).zip(rows) {
            let u = row_challenge(&self.transcript, j);
            let c_j = point(bytes, Part::PermutationCommitment, j as usize)?;
            self.sums[0] += c_j - generators::h_i(j);
            self.sums[1] += mul(&u, &c_j);
            self.product *= u;
        }
        Ok(())
    }

    /// `t1` and `t2`.
    #[inline(never)]
    fn commitments_end(&mut self, proof: &ProofView<'_>) -> Result<(), ShuffleError> {
        let (shape, c) = (self.shape, self.c);
        let [t1, t2, _] = proof.t;
        let t1 = announcement(t1, first_t(shape.n))?;
        let holds = vartime_double_base(&neg(&c), &self.sums[0], &self.r.s[0]);
        check(holds == t1, Equation::PermutationSum)?;

        let t2 = announcement(t2, first_t(shape.n) + 1)?;
        let chain_end = point(proof.chain_end, Part::CommitmentChain, shape.n - 1)?;
        let end = chain_end - mul(&self.product, &generators::h());
        let holds = vartime_double_base(&neg(&c), &end, &self.r.s[1]);
        check(holds == t2, Equation::ChainEnd)?;
        self.weighted_commitments = self.sums[1];
        Ok(())
    }

    /// Links `from..to` of the chain, and their share of `t3`'s sum.
    #[inline(never)]
    fn chain(&mut self, proof: &ProofView<'_>, from: usize, to: usize) -> Result<(), ShuffleError> {
        let shape = self.shape;
        if from == 0 {
            self.sums = [
                generators::h(),
                RistrettoPoint::identity(),
                self.sums[2],
                self.sums[3],
            ];
        }
        let links = (proof.s_hat.iter().zip(proof.s_prime))
            .zip(proof.chain.iter().zip(proof.chain_announcements))
            .take(to)
            .skip(from);
        for (i, ((s_hat, s_prime), (next, t_hat))) in (from as u32..).zip(links) {
            let index = i as usize;
            let s_hat = scalar(s_hat, first_s_hat(shape) + index)?;
            let s_prime = scalar(s_prime, first_s_prime(shape) + index)?;
            let next = point(next, Part::CommitmentChain, index)?;
            let t_hat = announcement(t_hat, first_announcement(shape.n) + index)?;
            let holds = vartime_double_base(&s_prime, &self.sums[0], &s_hat) - mul(&self.c, &next);
            check(holds == t_hat, Equation::Chain(index))?;
            self.sums[0] = next;
            self.sums[1] += mul(&s_prime, &generators::h_i(i));
        }
        Ok(())
    }

    /// `t3`.
    #[inline(never)]
    fn chain_end(&mut self, proof: &ProofView<'_>) -> Result<(), ShuffleError> {
        let [_, _, t3] = proof.t;
        let t3 = announcement(t3, first_t(self.shape.n) + 2)?;
        let holds = vartime_double_base(&neg(&self.c), &self.weighted_commitments, &self.r.s[2])
            + self.sums[1];
        check(holds == t3, Equation::Commitment)
    }

    /// Rows `from..to` of column `k`'s sums for `t4_k`.
    #[allow(clippy::too_many_arguments)]
    #[inline(never)]
    fn column(
        &mut self,
        key: &PublicKey,
        inputs: &[u8],
        outputs: &[u8],
        proof: &ProofView<'_>,
        k: usize,
        from: usize,
        to: usize,
    ) -> Result<(), ShuffleError> {
        let shape = self.shape;
        let width = shape.width.get();
        if from == 0 {
            let s4 = self.r.s4.get(k).copied().unwrap_or(Scalar::ZERO);
            let identity = RistrettoPoint::identity();
            self.sums = [-mul(&s4, key.point()), identity, identity, identity];
        }
        // Ciphertext `j·ω + k`: column `k` of row `j`.
        let column = |rows| {
            ciphertexts(rows)
                .iter()
                .enumerate()
                .skip(k)
                .step_by(width)
                .take(to)
                .skip(from)
        };
        let s_primes = proof.s_prime.iter().take(to).skip(from);
        let rows = column(inputs).zip(column(outputs)).zip(s_primes);
        for (j, (((at, input), (_, output)), s_prime)) in (from as u32..).zip(rows) {
            let u = row_challenge(&self.transcript, j);
            let s_prime = scalar(s_prime, first_s_prime(shape) + j as usize)?;
            let (input_a, input_b) = ciphertext(input, Part::Inputs, at)?;
            let (output_a, output_b) = ciphertext(output, Part::Outputs, at)?;
            self.sums[2] += mul(&u, &input_a);
            self.sums[3] += mul(&u, &input_b);
            self.sums[0] += mul(&s_prime, &output_a);
            self.sums[1] += mul(&s_prime, &output_b);
        }
        Ok(())
    }

    /// `t4_k`.
    #[inline(never)]
    fn column_end(&mut self, proof: &ProofView<'_>, k: usize) -> Result<(), ShuffleError> {
        let shape = self.shape;
        let c = self.c;
        let s4 = self.r.s4.get(k).copied().unwrap_or(Scalar::ZERO);
        let [t4a, t4b] = proof.t4.get(k).ok_or(ShuffleError::ProofLength)?;
        let t4a = announcement(t4a, first_t4(shape) + 2 * k)?;
        let t4b = announcement(t4b, first_t4(shape) + 2 * k + 1)?;
        let [a, b, weighted_a, weighted_b] = self.sums;
        let a = a - mul(&c, &weighted_a);
        let b = b + vartime_double_base(&neg(&c), &weighted_b, &neg(&s4));
        check(a == t4a && b == t4b, Equation::Reencryption(k))
    }
}

/// Verifies equation by equation with no storage (the allocation-free path, for devices):
/// every encoding first, then one pass over the rows for `t1` and `t2`, one for the chain
/// and `t3`, and one per column for `t4_k`: [`Verifier`]'s steps, run to the end.
pub fn verify_streaming(
    context: &[u8],
    key: &PublicKey,
    width: usize,
    inputs: &[u8],
    outputs: &[u8],
    proof: &[u8],
) -> Result<(), ShuffleError> {
    let mut verifier = Verifier::new(context, key, width, inputs, outputs, proof)?;
    while verifier.step(key, inputs, outputs, proof)?.is_pending() {}
    Ok(())
}

/// Verifies every equation at once: their sum with weights drawn from the transcript after
/// `c` (`ρ_q = clone(T).append_u64("equation", q).challenge("weight", 64) mod l`) must be
/// the identity, one multiscalar multiplication of `(4 + 4ω)·N + 6 + 2ω` points. On any
/// failure [`verify_streaming`] runs and names the first bad encoding or equation, so both
/// give the same error.
#[cfg(feature = "std")]
pub fn verify_batched(
    context: &[u8],
    key: &PublicKey,
    width: usize,
    inputs: &[u8],
    outputs: &[u8],
    proof: &[u8],
) -> Result<(), ShuffleError> {
    if batch_holds(context, key, width, inputs, outputs, proof) == Ok(true) {
        return Ok(());
    }
    match verify_streaming(context, key, width, inputs, outputs, proof) {
        Err(e) => Err(e),
        Ok(()) => Err(ShuffleError::Equation(Equation::Batch)),
    }
}

#[cfg(feature = "std")]
fn batch_holds(
    context: &[u8],
    key: &PublicKey,
    width: usize,
    inputs: &[u8],
    outputs: &[u8],
    proof: &[u8],
) -> Result<bool, ShuffleError> {
    use curve25519_dalek::constants::RISTRETTO_BASEPOINT_POINT;
    use curve25519_dalek::traits::{IsIdentity, VartimeMultiscalarMul};
    use std::vec::Vec;

    let shape = check_shape(width, inputs, outputs.len(), proof.len())?;
    let n = shape.n;
    let proof = ProofView::new(proof, shape)?;
    let transcript = statement_transcript(
        context,
        key,
        width,
        n,
        inputs,
        outputs,
        proof.commitments.as_flattened(),
    );
    let u: Vec<Scalar> = (0..n)
        .map(|j| row_challenge(&transcript, j as u32))
        .collect();
    let (after, c) = final_challenge(transcript, &proof);
    let weight = |q: usize| {
        let mut t = after.clone();
        t.append_u64(b"equation", q as u64);
        super::super::challenge_scalar(&mut t, b"weight")
    };
    // Equations: 0 t1, 1 t2, 2 t3, 3 + 2k + {0, 1} t4_k, 3 + 2ω + i t̂_i.
    let rho: [Scalar; 3] = [weight(0), weight(1), weight(2)];
    let rho4: Vec<[Scalar; 2]> = (0..width)
        .map(|k| [weight(3 + 2 * k), weight(4 + 2 * k)])
        .collect();
    let rho_hat: Vec<Scalar> = (0..n).map(|i| weight(3 + 2 * width + i)).collect();
    let r = responses(&proof)?;
    let s_hat = (proof.s_hat.iter().enumerate())
        .map(|(i, bytes)| scalar(bytes, first_s_hat(shape) + i))
        .collect::<Result<Vec<_>, _>>()?;
    let s_prime = (proof.s_prime.iter().enumerate())
        .map(|(i, bytes)| scalar(bytes, first_s_prime(shape) + i))
        .collect::<Result<Vec<_>, _>>()?;

    let capacity = (4 + 4 * width) * n + 6 + 2 * width;
    let mut scalars: Vec<Scalar> = Vec::with_capacity(capacity);
    let mut points: Vec<RistrettoPoint> = Vec::with_capacity(capacity);

    // G, H, Y.
    let mut g = rho[0] * r.s[0] + rho[1] * r.s[1] + rho[2] * r.s[2];
    let mut y = Scalar::ZERO;
    for (rho4, s4) in rho4.iter().zip(&r.s4) {
        g -= rho4[1] * s4;
        y -= rho4[0] * s4;
    }
    for (rho_hat, s_hat) in rho_hat.iter().zip(&s_hat) {
        g += rho_hat * s_hat;
    }
    let product: Scalar = u.iter().product();
    // `ĉ_0 = H` enters the first link's equation with weight ρ̂_0·s'_0.
    let first_link =
        (rho_hat.iter().zip(&s_prime).map(|(r, s)| r * s).next()).unwrap_or(Scalar::ZERO);
    scalars.extend([g, rho[1] * c * product + first_link, y]);
    points.extend([RISTRETTO_BASEPOINT_POINT, generators::h(), *key.point()]);

    // Row i with the next link's weight ρ̂_(i+1)·s'_(i+1) (none after the last).
    let next_links = (rho_hat.iter().zip(&s_prime).skip(1))
        .map(|(r, s)| Some(r * s))
        .chain(core::iter::once(None));
    let weights = (u.iter().zip(&s_prime)).zip(rho_hat.iter().zip(next_links));
    let items = (proof.commitments.iter().zip(proof.chain)).zip(proof.chain_announcements);
    let ciphertext_rows = (ciphertexts(inputs).chunks_exact(shape.width.get()))
        .zip(ciphertexts(outputs).chunks_exact(shape.width.get()));
    let rows = weights.zip(items).zip(ciphertext_rows);
    for (i, ((((u, s_prime), (rho_hat, next_link)), ((commitment, chain), t_hat)), (ins, outs))) in
        (0u32..).zip(rows)
    {
        let index = i as usize;
        // H_i, c_i, ĉ_i.
        scalars.push(rho[0] * c + rho[2] * s_prime);
        points.push(generators::h_i(i));
        scalars.push(neg(&(rho[0] * c)) - rho[2] * c * u);
        points.push(point(commitment, Part::PermutationCommitment, index)?);
        let mut chain_weight = neg(&(rho_hat * c));
        match next_link {
            Some(next) => chain_weight += next,
            None => chain_weight -= rho[1] * c,
        }
        scalars.push(chain_weight);
        points.push(point(chain, Part::CommitmentChain, index)?);
        // Inputs (weight u_i), outputs (weight s'_i).
        let cts = ins.iter().zip(outs).zip(&rho4);
        for (k, ((input, output), rho4)) in cts.enumerate() {
            let at = index * shape.width.get() + k;
            let (input_a, input_b) = ciphertext(input, Part::Inputs, at)?;
            let (output_a, output_b) = ciphertext(output, Part::Outputs, at)?;
            let cu = c * u;
            scalars.extend([
                neg(&(rho4[0] * cu)),
                neg(&(rho4[1] * cu)),
                rho4[0] * s_prime,
                rho4[1] * s_prime,
            ]);
            points.extend([input_a, input_b, output_a, output_b]);
        }
        // t̂_i.
        scalars.push(neg(rho_hat));
        points.push(announcement(t_hat, first_announcement(n) + index)?);
    }
    for (which, (rho, t)) in rho.iter().zip(proof.t).enumerate() {
        scalars.push(neg(rho));
        points.push(announcement(t, first_t(n) + which)?);
    }
    for (k, (rho4, [t4a, t4b])) in rho4.iter().zip(proof.t4).enumerate() {
        scalars.extend([neg(&rho4[0]), neg(&rho4[1])]);
        points.push(announcement(t4a, first_t4(shape) + 2 * k)?);
        points.push(announcement(t4b, first_t4(shape) + 2 * k + 1)?);
    }

    Ok(RistrettoPoint::vartime_multiscalar_mul(&scalars, &points).is_identity())
}
