//! The verifier (the paper's `CheckProof`): every encoding, every length, every equation.

use curve25519_dalek::ristretto::RistrettoPoint;
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::Identity;
use merlin::Transcript;

use super::super::keys::PublicKey;
use super::super::{decode_point, generators, mul, vartime_double_base};
use super::{
    check_shape, ciphertexts, final_challenge, first_announcement, first_t, row_challenge,
    statement_transcript, Equation, Item, Part, ProofView, Shape, ShuffleError, MAX_WIDTH,
};

/// Verifies that `outputs` is a re-encryption shuffle of `inputs` under `key`.
///
/// With the `std` feature this is [`verify_batched`] (one multiscalar multiplication),
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

/// Checks every encoding, in a fixed order: inputs, outputs, permutation commitment,
/// chain, announcements, responses.
#[inline(never)]
fn validate(
    shape: Shape,
    inputs: &[u8],
    outputs: &[u8],
    proof: &ProofView<'_>,
) -> Result<(), ShuffleError> {
    for (part, rows) in [(Part::Inputs, inputs), (Part::Outputs, outputs)] {
        for (index, item) in rows.as_chunks::<32>().0.iter().enumerate() {
            point(item, part, index)?;
        }
    }
    for (j, item) in proof.commitments.iter().enumerate() {
        point(item, Part::PermutationCommitment, j)?;
    }
    for (i, item) in proof.chain.iter().enumerate() {
        point(item, Part::CommitmentChain, i)?;
    }
    let announcements = proof.announcements.as_chunks::<32>().0;
    for (index, item) in announcements.iter().enumerate() {
        announcement(item, first_announcement(shape.n) + index)?;
    }
    let responses = proof.s.iter().chain(proof.s4).chain(proof.s_hat);
    for (index, item) in responses.chain(proof.s_prime).enumerate() {
        scalar(item, index)?;
    }
    Ok(())
}

fn check(holds: bool, equation: Equation) -> Result<(), ShuffleError> {
    if holds {
        Ok(())
    } else {
        Err(ShuffleError::Equation(equation))
    }
}

/// Verifies equation by equation with no storage (the allocation-free path, for devices):
/// every encoding first, then one pass over the rows for `t1`, `t2`, `t3` and the chain,
/// and one per column for `t4_k`. Each pass is its own function, so a device's stack holds
/// one pass's points at a time.
pub fn verify_streaming(
    context: &[u8],
    key: &PublicKey,
    width: usize,
    inputs: &[u8],
    outputs: &[u8],
    proof: &[u8],
) -> Result<(), ShuffleError> {
    let shape = check_shape(width, inputs, outputs.len(), proof.len())?;
    let proof = ProofView::new(proof, shape)?;
    validate(shape, inputs, outputs, &proof)?;
    let transcript = statement_transcript(
        context,
        key,
        width,
        shape.n,
        inputs,
        outputs,
        proof.commitments.as_flattened(),
    );
    let (_, c) = final_challenge(transcript.clone(), &proof);
    let r = responses(&proof)?;
    let weighted_commitments = check_commitments(&transcript, shape, &proof, &c, &r)?;
    check_chain(shape, &proof, &c, &r, &weighted_commitments)?;
    let columns = r.s4.iter().zip(proof.t4).enumerate();
    for (k, (s4, t4)) in columns {
        let column = Column { k, s4, t4 };
        check_column(&transcript, shape, key, inputs, outputs, &proof, &c, column)?;
    }
    Ok(())
}

/// `t1` and `t2`; returns `Σ u_j·c_j` for `t3`.
#[inline(never)]
fn check_commitments(
    transcript: &Transcript,
    shape: Shape,
    proof: &ProofView<'_>,
    c: &Scalar,
    r: &Responses,
) -> Result<RistrettoPoint, ShuffleError> {
    let mut commitment_sum = RistrettoPoint::identity();
    let mut weighted_commitments = RistrettoPoint::identity();
    let mut product = Scalar::ONE;
    for (j, bytes) in (0u32..).zip(proof.commitments) {
        let u = row_challenge(transcript, j);
        let c_j = point(bytes, Part::PermutationCommitment, j as usize)?;
        commitment_sum += c_j - generators::h_i(j);
        weighted_commitments += mul(&u, &c_j);
        product *= u;
    }
    let [t1, t2, _] = proof.t;
    let t1 = announcement(t1, first_t(shape.n))?;
    let holds = vartime_double_base(&-c, &commitment_sum, &r.s[0]);
    check(holds == t1, Equation::PermutationSum)?;

    let t2 = announcement(t2, first_t(shape.n) + 1)?;
    let chain_end = point(proof.chain_end, Part::CommitmentChain, shape.n - 1)?;
    let holds = vartime_double_base(&-c, &(chain_end - mul(&product, &generators::h())), &r.s[1]);
    check(holds == t2, Equation::ChainEnd)?;
    Ok(weighted_commitments)
}

/// Every link `t̂_i` of the chain, then `t3`.
#[inline(never)]
fn check_chain(
    shape: Shape,
    proof: &ProofView<'_>,
    c: &Scalar,
    r: &Responses,
    weighted_commitments: &RistrettoPoint,
) -> Result<(), ShuffleError> {
    let mut previous = generators::h();
    let mut weighted_generators = RistrettoPoint::identity();
    let links = (proof.s_hat.iter().zip(proof.s_prime))
        .zip(proof.chain.iter().zip(proof.chain_announcements));
    for (i, ((s_hat, s_prime), (next, t_hat))) in (0u32..).zip(links) {
        let index = i as usize;
        let s_hat = scalar(s_hat, first_s_hat(shape) + index)?;
        let s_prime = scalar(s_prime, first_s_prime(shape) + index)?;
        let next = point(next, Part::CommitmentChain, index)?;
        let t_hat = announcement(t_hat, first_announcement(shape.n) + index)?;
        let holds = vartime_double_base(&s_prime, &previous, &s_hat) - mul(c, &next);
        check(holds == t_hat, Equation::Chain(index))?;
        previous = next;
        weighted_generators += mul(&s_prime, &generators::h_i(i));
    }
    let [_, _, t3] = proof.t;
    let t3 = announcement(t3, first_t(shape.n) + 2)?;
    let holds = vartime_double_base(&-c, weighted_commitments, &r.s[2]) + weighted_generators;
    check(holds == t3, Equation::Commitment)
}

/// One column `k` of the rows: its response `s4_k` and announcement `t4_k`.
struct Column<'a> {
    k: usize,
    s4: &'a Scalar,
    t4: &'a [Item; 2],
}

/// `t4_k`: column `k` of the outputs re-encrypts column `k` of the inputs.
#[allow(clippy::too_many_arguments)]
#[inline(never)]
fn check_column(
    transcript: &Transcript,
    shape: Shape,
    key: &PublicKey,
    inputs: &[u8],
    outputs: &[u8],
    proof: &ProofView<'_>,
    c: &Scalar,
    Column { k, s4, t4 }: Column<'_>,
) -> Result<(), ShuffleError> {
    let width = shape.width.get();
    let mut a = -mul(s4, key.point());
    let mut b = RistrettoPoint::identity();
    let mut weighted_a = RistrettoPoint::identity();
    let mut weighted_b = RistrettoPoint::identity();
    // Ciphertext `j·ω + k`: column `k` of row `j`.
    let column = |rows| ciphertexts(rows).iter().enumerate().skip(k).step_by(width);
    let rows = column(inputs).zip(column(outputs)).zip(proof.s_prime);
    for (j, (((at, input), (_, output)), s_prime)) in (0u32..).zip(rows) {
        let u = row_challenge(transcript, j);
        let s_prime = scalar(s_prime, first_s_prime(shape) + j as usize)?;
        let (input_a, input_b) = ciphertext(input, Part::Inputs, at)?;
        let (output_a, output_b) = ciphertext(output, Part::Outputs, at)?;
        weighted_a += mul(&u, &input_a);
        weighted_b += mul(&u, &input_b);
        a += mul(&s_prime, &output_a);
        b += mul(&s_prime, &output_b);
    }
    let [t4a, t4b] = t4;
    let t4a = announcement(t4a, first_t4(shape) + 2 * k)?;
    let t4b = announcement(t4b, first_t4(shape) + 2 * k + 1)?;
    let a = a - mul(c, &weighted_a);
    let b = b + vartime_double_base(&-c, &weighted_b, &-s4);
    check(a == t4a && b == t4b, Equation::Reencryption(k))
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
        scalars.push(-(rho[0] * c) - rho[2] * c * u);
        points.push(point(commitment, Part::PermutationCommitment, index)?);
        let mut chain_weight = -(rho_hat * c);
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
                -(rho4[0] * cu),
                -(rho4[1] * cu),
                rho4[0] * s_prime,
                rho4[1] * s_prime,
            ]);
            points.extend([input_a, input_b, output_a, output_b]);
        }
        // t̂_i.
        scalars.push(-rho_hat);
        points.push(announcement(t_hat, first_announcement(n) + index)?);
    }
    for (which, (rho, t)) in rho.iter().zip(proof.t).enumerate() {
        scalars.push(-rho);
        points.push(announcement(t, first_t(n) + which)?);
    }
    for (k, (rho4, [t4a, t4b])) in rho4.iter().zip(proof.t4).enumerate() {
        scalars.extend([-rho4[0], -rho4[1]]);
        points.push(announcement(t4a, first_t4(shape) + 2 * k)?);
        points.push(announcement(t4b, first_t4(shape) + 2 * k + 1)?);
    }

    Ok(RistrettoPoint::vartime_multiscalar_mul(&scalars, &points).is_identity())
}
