//! The verifier (the paper's `CheckProof`): every encoding, every length, every equation.

use curve25519_dalek::ristretto::RistrettoPoint;
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::Identity;
use merlin::Transcript;

use super::super::elgamal::{Ciphertext, CIPHERTEXT_LEN};
use super::super::keys::PublicKey;
use super::super::{decode_point_at, decode_scalar_at, generators, mul, vartime_double_base};
use super::{
    check_shape, final_challenge, row_challenge, row_len, statement_transcript, Equation, Layout,
    Part, ShuffleError, MAX_WIDTH,
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

fn point(
    bytes: &[u8],
    at: usize,
    part: Part,
    index: usize,
) -> Result<RistrettoPoint, ShuffleError> {
    bytes
        .get(at..at + 32)
        .ok_or(ShuffleError::Point { part, index })
        .and_then(|b| decode_point_at(b).map_err(|_| ShuffleError::Point { part, index }))
}

fn ciphertext(rows: &[u8], at: usize, part: Part) -> Result<Ciphertext, ShuffleError> {
    let index = at / 32;
    let bytes = rows
        .get(at..at + CIPHERTEXT_LEN)
        .ok_or(ShuffleError::Point { part, index })?;
    let a = decode_point_at(&bytes[..32]).map_err(|_| ShuffleError::Point { part, index })?;
    let b = decode_point_at(&bytes[32..]).map_err(|_| ShuffleError::Point {
        part,
        index: index + 1,
    })?;
    Ok(Ciphertext { a, b })
}

fn scalar(proof: &[u8], at: usize, layout: &Layout) -> Result<Scalar, ShuffleError> {
    proof
        .get(at..at + 32)
        .and_then(decode_scalar_at)
        .ok_or(ShuffleError::Scalar {
            index: layout.response_index(at),
        })
}

fn announcement(proof: &[u8], at: usize) -> Result<RistrettoPoint, ShuffleError> {
    point(proof, at, Part::Announcement, at / 32)
}

/// The responses, parsed.
struct Responses {
    s: [Scalar; 3],
    s4: [Scalar; MAX_WIDTH],
}

fn responses(proof: &[u8], layout: &Layout) -> Result<Responses, ShuffleError> {
    let mut s = [Scalar::ZERO; 3];
    for (which, s) in s.iter_mut().enumerate() {
        *s = scalar(proof, layout.s(which), layout)?;
    }
    let mut s4 = [Scalar::ZERO; MAX_WIDTH];
    for (k, s4) in s4.iter_mut().enumerate().take(layout.width) {
        *s4 = scalar(proof, layout.s(3 + k), layout)?;
    }
    Ok(Responses { s, s4 })
}

/// Checks every encoding, in a fixed order: inputs, outputs, permutation commitment,
/// chain, announcements, responses.
#[inline(never)]
fn validate(
    layout: &Layout,
    inputs: &[u8],
    outputs: &[u8],
    proof: &[u8],
) -> Result<(), ShuffleError> {
    for (part, rows) in [(Part::Inputs, inputs), (Part::Outputs, outputs)] {
        for (index, item) in rows.chunks_exact(32).enumerate() {
            decode_point_at(item).map_err(|_| ShuffleError::Point { part, index })?;
        }
    }
    let n = layout.n;
    for j in 0..n {
        point(proof, layout.commitment(j), Part::PermutationCommitment, j)?;
    }
    for i in 0..n {
        point(proof, layout.chain(i), Part::CommitmentChain, i)?;
    }
    for at in layout.announcements().step_by(32) {
        announcement(proof, at)?;
    }
    let mut at = layout.s(0);
    while at < proof.len() {
        scalar(proof, at, layout)?;
        at += 32;
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
    let n = check_shape(width, inputs, outputs.len(), proof.len())?;
    let layout = Layout { n, width };
    validate(&layout, inputs, outputs, proof)?;
    let transcript = statement_transcript(
        context,
        key,
        width,
        n,
        inputs,
        outputs,
        &proof[layout.commitments()],
    );
    let (_, c) = final_challenge(transcript.clone(), proof, &layout);
    let r = responses(proof, &layout)?;
    let weighted_commitments = check_commitments(&transcript, &layout, proof, &c, &r)?;
    check_chain(&layout, proof, &c, &r, &weighted_commitments)?;
    for k in 0..width {
        check_column(&transcript, &layout, key, inputs, outputs, proof, &c, &r, k)?;
    }
    Ok(())
}

/// `t1` and `t2`; returns `Σ u_j·c_j` for `t3`.
#[inline(never)]
fn check_commitments(
    transcript: &Transcript,
    layout: &Layout,
    proof: &[u8],
    c: &Scalar,
    r: &Responses,
) -> Result<RistrettoPoint, ShuffleError> {
    let n = layout.n;
    let mut commitment_sum = RistrettoPoint::identity();
    let mut weighted_commitments = RistrettoPoint::identity();
    let mut product = Scalar::ONE;
    for j in 0..n {
        let u = row_challenge(transcript, j as u32);
        let c_j = point(proof, layout.commitment(j), Part::PermutationCommitment, j)?;
        commitment_sum += c_j - generators::h_i(j as u32);
        weighted_commitments += mul(&u, &c_j);
        product *= u;
    }
    let t1 = announcement(proof, layout.t(0))?;
    let holds = vartime_double_base(&-c, &commitment_sum, &r.s[0]);
    check(holds == t1, Equation::PermutationSum)?;

    let t2 = announcement(proof, layout.t(1))?;
    let chain_end = point(proof, layout.chain(n - 1), Part::CommitmentChain, n - 1)?;
    let holds = vartime_double_base(&-c, &(chain_end - mul(&product, &generators::h())), &r.s[1]);
    check(holds == t2, Equation::ChainEnd)?;
    Ok(weighted_commitments)
}

/// Every link `t̂_i` of the chain, then `t3`.
#[inline(never)]
fn check_chain(
    layout: &Layout,
    proof: &[u8],
    c: &Scalar,
    r: &Responses,
    weighted_commitments: &RistrettoPoint,
) -> Result<(), ShuffleError> {
    let mut previous = generators::h();
    let mut weighted_generators = RistrettoPoint::identity();
    for i in 0..layout.n {
        let s_hat = scalar(proof, layout.s_hat(i), layout)?;
        let s_prime = scalar(proof, layout.s_prime(i), layout)?;
        let next = point(proof, layout.chain(i), Part::CommitmentChain, i)?;
        let t_hat = announcement(proof, layout.chain_announcement(i))?;
        let holds = vartime_double_base(&s_prime, &previous, &s_hat) - mul(c, &next);
        check(holds == t_hat, Equation::Chain(i))?;
        previous = next;
        weighted_generators += mul(&s_prime, &generators::h_i(i as u32));
    }
    let t3 = announcement(proof, layout.t(2))?;
    let holds = vartime_double_base(&-c, weighted_commitments, &r.s[2]) + weighted_generators;
    check(holds == t3, Equation::Commitment)
}

/// `t4_k`: column `k` of the outputs re-encrypts column `k` of the inputs.
#[allow(clippy::too_many_arguments)]
#[inline(never)]
fn check_column(
    transcript: &Transcript,
    layout: &Layout,
    key: &PublicKey,
    inputs: &[u8],
    outputs: &[u8],
    proof: &[u8],
    c: &Scalar,
    r: &Responses,
    k: usize,
) -> Result<(), ShuffleError> {
    let row = row_len(layout.width);
    let mut a = -mul(&r.s4[k], key.point());
    let mut b = RistrettoPoint::identity();
    let mut weighted_a = RistrettoPoint::identity();
    let mut weighted_b = RistrettoPoint::identity();
    for j in 0..layout.n {
        let u = row_challenge(transcript, j as u32);
        let s_prime = scalar(proof, layout.s_prime(j), layout)?;
        let input = ciphertext(inputs, j * row + k * CIPHERTEXT_LEN, Part::Inputs)?;
        let output = ciphertext(outputs, j * row + k * CIPHERTEXT_LEN, Part::Outputs)?;
        weighted_a += mul(&u, &input.a);
        weighted_b += mul(&u, &input.b);
        a += mul(&s_prime, &output.a);
        b += mul(&s_prime, &output.b);
    }
    let t4a = announcement(proof, layout.t4(k, 0))?;
    let t4b = announcement(proof, layout.t4(k, 1))?;
    let a = a - mul(c, &weighted_a);
    let b = b + vartime_double_base(&-c, &weighted_b, &-r.s4[k]);
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

    let n = check_shape(width, inputs, outputs.len(), proof.len())?;
    let layout = Layout { n, width };
    let row = row_len(width);
    let transcript = statement_transcript(
        context,
        key,
        width,
        n,
        inputs,
        outputs,
        &proof[layout.commitments()],
    );
    let u: Vec<Scalar> = (0..n)
        .map(|j| row_challenge(&transcript, j as u32))
        .collect();
    let (after, c) = final_challenge(transcript, proof, &layout);
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
    let r = responses(proof, &layout)?;
    let s_hat = (0..n)
        .map(|i| scalar(proof, layout.s_hat(i), &layout))
        .collect::<Result<Vec<_>, _>>()?;
    let s_prime = (0..n)
        .map(|i| scalar(proof, layout.s_prime(i), &layout))
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
    for i in 0..n {
        g += rho_hat[i] * s_hat[i];
    }
    let product: Scalar = u.iter().product();
    scalars.extend([g, rho[1] * c * product + rho_hat[0] * s_prime[0], y]);
    points.extend([RISTRETTO_BASEPOINT_POINT, generators::h(), *key.point()]);

    for i in 0..n {
        // H_i, c_i, ĉ_i.
        scalars.push(rho[0] * c + rho[2] * s_prime[i]);
        points.push(generators::h_i(i as u32));
        scalars.push(-(rho[0] * c) - rho[2] * c * u[i]);
        points.push(point(
            proof,
            layout.commitment(i),
            Part::PermutationCommitment,
            i,
        )?);
        let mut chain = -(rho_hat[i] * c);
        if i + 1 < n {
            chain += rho_hat[i + 1] * s_prime[i + 1];
        } else {
            chain -= rho[1] * c;
        }
        scalars.push(chain);
        points.push(point(proof, layout.chain(i), Part::CommitmentChain, i)?);
        // Inputs (weight u_i), outputs (weight s'_i).
        for (k, rho4) in rho4.iter().enumerate() {
            let input = ciphertext(inputs, i * row + k * CIPHERTEXT_LEN, Part::Inputs)?;
            let output = ciphertext(outputs, i * row + k * CIPHERTEXT_LEN, Part::Outputs)?;
            let cu = c * u[i];
            scalars.extend([
                -(rho4[0] * cu),
                -(rho4[1] * cu),
                rho4[0] * s_prime[i],
                rho4[1] * s_prime[i],
            ]);
            points.extend([input.a, input.b, output.a, output.b]);
        }
        // t̂_i.
        scalars.push(-rho_hat[i]);
        points.push(announcement(proof, layout.chain_announcement(i))?);
    }
    for (which, rho) in rho.iter().enumerate() {
        scalars.push(-rho);
        points.push(announcement(proof, layout.t(which))?);
    }
    for (k, rho4) in rho4.iter().enumerate() {
        scalars.extend([-rho4[0], -rho4[1]]);
        points.push(announcement(proof, layout.t4(k, 0))?);
        points.push(announcement(proof, layout.t4(k, 1))?);
    }

    Ok(RistrettoPoint::vartime_multiscalar_mul(&scalars, &points).is_identity())
}
