//! The prover: shuffle, re-encrypt and prove (the paper's `GenShuffle` and `GenProof`).

use chacha20::cipher::{KeyIvInit, StreamCipher, StreamCipherSeek};
use chacha20::ChaCha20;
use curve25519_dalek::ristretto::RistrettoPoint;
use curve25519_dalek::scalar::Scalar;
use rand_core::CryptoRngCore;
use subtle::{Choice, ConditionallySelectable, ConstantTimeEq, ConstantTimeGreater};
use zeroize::{Zeroize, Zeroizing};

use super::super::elgamal::{Ciphertext, CIPHERTEXT_LEN};
use super::super::generators;
use super::super::keys::PublicKey;
use super::super::{decode_point_at, mul, mul_base, oblivious};
use super::{
    check_shape, final_challenge, row_challenge, row_len, statement_transcript, Layout, Part,
    ProverSlot, ShuffleError, MAX_WIDTH,
};

/// Streams of the prover's secret scalars (the ChaCha20 nonce).
#[derive(Clone, Copy)]
#[repr(u32)]
enum Stream {
    /// `r_j`, the permutation commitment's randomness.
    Commitment = 1,
    /// `r̃_i,k`, the re-encryption randomness (index `i·ω + k`).
    Reencryption = 2,
    /// `r̂_i`, the commitment chain's randomness.
    Chain = 3,
    /// `ω̂_i`.
    ChainNonce = 4,
    /// `ω'_i`.
    RowNonce = 5,
    /// `ω1`, `ω2`, `ω3`, then `ω4_k` at `3 + k`.
    Nonce = 6,
}

/// Secret scalars drawn at random access from one seed.
struct Secrets {
    seed: Zeroizing<[u8; 32]>,
}

impl Secrets {
    fn scalar(&self, stream: Stream, index: usize) -> Scalar {
        let mut nonce = [0u8; 12];
        nonce[..4].copy_from_slice(&(stream as u32).to_le_bytes());
        let mut cipher = ChaCha20::new(self.seed.as_ref().into(), &nonce.into());
        cipher.seek(index as u64 * 64);
        let mut wide = Zeroizing::new([0u8; 64]);
        cipher.apply_keystream(wide.as_mut());
        Scalar::from_bytes_mod_order_wide(&wide)
    }
}

fn swap_slots(slots: &mut [ProverSlot], i: usize, j: usize, swap: Choice) {
    let (left, right) = slots.split_at_mut(j);
    let (a, b) = (&mut left[i], &mut right[0]);
    u64::conditional_swap(&mut a.key, &mut b.key, swap);
    u32::conditional_swap(&mut a.index, &mut b.index, swap);
    u32::conditional_swap(&mut a.tag, &mut b.tag, swap);
}

/// Swaps rows `i < j` of `rows` (each `len` bytes, a multiple of 8) when `swap` is set.
fn swap_rows(rows: &mut [u8], len: usize, i: usize, j: usize, swap: Choice) {
    let (left, right) = rows.split_at_mut(j * len);
    let a = &mut left[i * len..(i + 1) * len];
    let b = &mut right[..len];
    for (x, y) in a.chunks_exact_mut(8).zip(b.chunks_exact_mut(8)) {
        let mut p = u64::from_le_bytes([x[0], x[1], x[2], x[3], x[4], x[5], x[6], x[7]]);
        let mut q = u64::from_le_bytes([y[0], y[1], y[2], y[3], y[4], y[5], y[6], y[7]]);
        u64::conditional_swap(&mut p, &mut q, swap);
        x.copy_from_slice(&p.to_le_bytes());
        y.copy_from_slice(&q.to_le_bytes());
    }
}

/// Whether the comparison says to swap: `greater` for an ascending pair, else its opposite
/// (keys are distinct, so "not greater" is "less").
fn order(greater: Choice, ascending: bool) -> Choice {
    if ascending {
        greater
    } else {
        !greater
    }
}

fn write_point(proof: &mut [u8], at: usize, point: &RistrettoPoint) {
    proof[at..at + 32].copy_from_slice(point.compress().as_bytes());
}

fn write_scalar(proof: &mut [u8], at: usize, scalar: &Scalar) {
    proof[at..at + 32].copy_from_slice(scalar.as_bytes());
}

/// Shuffles and re-encrypts `inputs` into `outputs` and writes the proof.
///
/// `inputs` and `outputs` hold `n` rows of `width` ciphertexts ([`super::rows_len`]
/// bytes), `proof` holds [`super::proof_len`]`(n, width)` bytes and `slots` at least `n`
/// slots. `context` binds the proof to its use (the group, the epoch, the trustee); the
/// verifier passes the same. Refuses an input that is not a canonical encoding. On success
/// `slots` is cleared (it held the permutation).
#[allow(clippy::too_many_arguments)]
pub fn prove(
    context: &[u8],
    key: &PublicKey,
    width: usize,
    inputs: &[u8],
    outputs: &mut [u8],
    proof: &mut [u8],
    slots: &mut [ProverSlot],
    rng: &mut impl CryptoRngCore,
) -> Result<(), ShuffleError> {
    let n = check_shape(width, inputs, outputs.len(), proof.len())?;
    if slots.len() < n {
        return Err(ShuffleError::Storage);
    }
    let slots = &mut slots[..n];
    let row = row_len(width);
    let layout = Layout { n, width };
    for (index, item) in inputs.chunks_exact(32).enumerate() {
        decode_point_at(item).map_err(|_| ShuffleError::Point {
            part: Part::Inputs,
            index,
        })?;
    }

    let mut seed = Zeroizing::new([0u8; 32]);
    rng.fill_bytes(seed.as_mut());
    let secrets = Secrets { seed };

    // ψ: sort random keys (ties broken by index); the input rows travel with them, so
    // output row i is input row ψ(i) and slot i holds ψ(i).
    for (j, slot) in slots.iter_mut().enumerate() {
        *slot = ProverSlot {
            key: rng.next_u64(),
            index: j as u32,
            tag: 0,
        };
    }
    outputs.copy_from_slice(inputs);
    oblivious::sort(n, &mut |i, j, ascending| {
        let (a, b) = (slots[i], slots[j]);
        let greater = a.key.ct_gt(&b.key) | (a.key.ct_eq(&b.key) & a.index.ct_gt(&b.index));
        let swap = order(greater, ascending);
        swap_slots(slots, i, j, swap);
        swap_rows(outputs, row, i, j, swap);
    });

    // ψ⁻¹: sort by ψ(i) carrying i; slot j then holds ψ⁻¹(j). Commit: c_j = r_j·G + H_ψ⁻¹(j).
    for (i, slot) in slots.iter_mut().enumerate() {
        slot.tag = i as u32;
    }
    oblivious::sort(n, &mut |i, j, ascending| {
        let swap = order(slots[i].index.ct_gt(&slots[j].index), ascending);
        swap_slots(slots, i, j, swap);
    });
    let mut r_sum = Zeroizing::new(Scalar::ZERO);
    for (j, slot) in slots.iter().enumerate() {
        let r = Zeroizing::new(secrets.scalar(Stream::Commitment, j));
        *r_sum += *r;
        let c = mul_base(&r) + generators::h_i(slot.tag);
        write_point(proof, layout.commitment(j), &c);
    }
    // Back to output order: slot i holds ψ(i) again.
    oblivious::sort(n, &mut |i, j, ascending| {
        let swap = order(slots[i].tag.ct_gt(&slots[j].tag), ascending);
        swap_slots(slots, i, j, swap);
    });

    // Re-encrypt every output ciphertext in place.
    for (i, out_row) in outputs.chunks_exact_mut(row).enumerate() {
        for (k, ct_bytes) in out_row.chunks_exact_mut(CIPHERTEXT_LEN).enumerate() {
            // Checked above (the same bytes, moved).
            let ct = Ciphertext::from_slice(ct_bytes).map_err(|_| ShuffleError::Point {
                part: Part::Inputs,
                index: 0,
            })?;
            let r = Zeroizing::new(secrets.scalar(Stream::Reencryption, i * width + k));
            ct_bytes.copy_from_slice(&ct.reencrypt_with(key, &r).to_bytes());
        }
    }

    let transcript = statement_transcript(
        context,
        key,
        width,
        n,
        inputs,
        outputs,
        &proof[layout.commitments()],
    );

    // r̃ = Σ r_j·u_j (input order, public u_j).
    let mut r_tilde = Zeroizing::new(Scalar::ZERO);
    for j in 0..n {
        let r = Zeroizing::new(secrets.scalar(Stream::Commitment, j));
        *r_tilde += *r * row_challenge(&transcript, j as u32);
    }

    // The chain and its announcements, in output order, with u'_i = u_ψ(i).
    let mut previous = generators::h();
    let mut r_hat = Zeroizing::new(Scalar::ZERO);
    let mut r_prime = Zeroizing::new([Scalar::ZERO; MAX_WIDTH]);
    for (i, slot) in slots.iter().enumerate() {
        let u = Zeroizing::new(row_challenge(&transcript, slot.index));
        let chain_r = Zeroizing::new(secrets.scalar(Stream::Chain, i));
        let chain_nonce = Zeroizing::new(secrets.scalar(Stream::ChainNonce, i));
        let row_nonce = Zeroizing::new(secrets.scalar(Stream::RowNonce, i));
        let next = mul_base(&chain_r) + mul(&u, &previous);
        let announcement = mul_base(&chain_nonce) + mul(&row_nonce, &previous);
        write_point(proof, layout.chain(i), &next);
        write_point(proof, layout.chain_announcement(i), &announcement);
        *r_hat = *r_hat * *u + *chain_r;
        for k in 0..width {
            let r = Zeroizing::new(secrets.scalar(Stream::Reencryption, i * width + k));
            r_prime[k] += *r * *u;
        }
        previous = next;
    }

    // t1, t2, t3, t4_k.
    let nonce = |k: usize| Zeroizing::new(secrets.scalar(Stream::Nonce, k));
    let mut t3 = mul_base(&nonce(2));
    let mut t4 = [[RistrettoPoint::default(); 2]; MAX_WIDTH];
    for (k, t4k) in t4.iter_mut().enumerate().take(width) {
        let w4 = nonce(3 + k);
        *t4k = [-mul(&w4, key.point()), -mul_base(&w4)];
    }
    for (i, out_row) in outputs.chunks_exact(row).enumerate() {
        let row_nonce = Zeroizing::new(secrets.scalar(Stream::RowNonce, i));
        t3 += mul(&row_nonce, &generators::h_i(i as u32));
        for (k, ct_bytes) in out_row.chunks_exact(CIPHERTEXT_LEN).enumerate() {
            // Written above from a valid ciphertext.
            let ct = Ciphertext::from_slice(ct_bytes).map_err(|_| ShuffleError::Point {
                part: Part::Outputs,
                index: 2 * (i * width + k),
            })?;
            t4[k][0] += mul(&row_nonce, &ct.a);
            t4[k][1] += mul(&row_nonce, &ct.b);
        }
    }
    write_point(proof, layout.t(0), &mul_base(&nonce(0)));
    write_point(proof, layout.t(1), &mul_base(&nonce(1)));
    write_point(proof, layout.t(2), &t3);
    for (k, t4k) in t4.iter().enumerate().take(width) {
        write_point(proof, layout.t4(k, 0), &t4k[0]);
        write_point(proof, layout.t4(k, 1), &t4k[1]);
    }

    let (_, c) = final_challenge(transcript.clone(), proof, &layout);

    write_scalar(proof, layout.s(0), &(*nonce(0) + c * *r_sum));
    write_scalar(proof, layout.s(1), &(*nonce(1) + c * *r_hat));
    write_scalar(proof, layout.s(2), &(*nonce(2) + c * *r_tilde));
    for (k, r) in r_prime.iter().enumerate().take(width) {
        write_scalar(proof, layout.s(3 + k), &(*nonce(3 + k) + c * r));
    }
    for (i, slot) in slots.iter().enumerate() {
        let u = Zeroizing::new(row_challenge(&transcript, slot.index));
        let chain_r = Zeroizing::new(secrets.scalar(Stream::Chain, i));
        let chain_nonce = Zeroizing::new(secrets.scalar(Stream::ChainNonce, i));
        let row_nonce = Zeroizing::new(secrets.scalar(Stream::RowNonce, i));
        write_scalar(proof, layout.s_hat(i), &(*chain_nonce + c * *chain_r));
        write_scalar(proof, layout.s_prime(i), &(*row_nonce + c * *u));
    }
    slots.zeroize();
    Ok(())
}

impl zeroize::DefaultIsZeroes for ProverSlot {}
