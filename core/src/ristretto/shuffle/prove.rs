//! The prover: shuffle, re-encrypt and prove (the paper's `GenShuffle` and `GenProof`).

use core::task::Poll;

use chacha20::cipher::{KeyIvInit, StreamCipher, StreamCipherSeek};
use chacha20::ChaCha20;
use curve25519_dalek::ristretto::RistrettoPoint;
use curve25519_dalek::scalar::Scalar;
use merlin::Transcript;
use rand_core::CryptoRngCore;
use subtle::{Choice, ConditionallySelectable, ConstantTimeEq, ConstantTimeGreater};
use zeroize::{Zeroize, Zeroizing};

use super::super::elgamal::Ciphertext;
use super::super::generators;
use super::super::keys::PublicKey;
use super::super::{decode_point, mul, mul_base, oblivious};
use super::{
    check_shape, ciphertexts, ciphertexts_mut, final_challenge, row_challenge,
    statement_transcript, Item, Part, ProofMut, ProofView, ProverSlot, Shape, ShuffleError,
    MAX_WIDTH, STEP_ROWS,
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

/// Slots `i` and `j` (distinct), or [`ShuffleError::Storage`] if either is outside `slots`.
fn slot_pair(
    slots: &mut [ProverSlot],
    i: usize,
    j: usize,
) -> Result<[&mut ProverSlot; 2], ShuffleError> {
    slots
        .get_disjoint_mut([i, j])
        .map_err(|_| ShuffleError::Storage)
}

fn swap_slots([a, b]: [&mut ProverSlot; 2], swap: Choice) {
    u64::conditional_swap(&mut a.key, &mut b.key, swap);
    u32::conditional_swap(&mut a.index, &mut b.index, swap);
    u32::conditional_swap(&mut a.tag, &mut b.tag, swap);
}

/// Swaps rows `i` and `j` of `ciphertexts` (`width` to a row) when `swap` is set.
fn swap_rows(
    ciphertexts: &mut [[Item; 2]],
    width: usize,
    i: usize,
    j: usize,
    swap: Choice,
) -> Result<(), ShuffleError> {
    for k in 0..width {
        let [a, b] = ciphertexts
            .get_disjoint_mut([i * width + k, j * width + k])
            .map_err(|_| ShuffleError::Storage)?;
        let (a_words, _) = a.as_flattened_mut().as_chunks_mut::<8>();
        let (b_words, _) = b.as_flattened_mut().as_chunks_mut::<8>();
        for (x, y) in a_words.iter_mut().zip(b_words) {
            let mut p = u64::from_le_bytes(*x);
            let mut q = u64::from_le_bytes(*y);
            u64::conditional_swap(&mut p, &mut q, swap);
            *x = p.to_le_bytes();
            *y = q.to_le_bytes();
        }
    }
    Ok(())
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

fn write_point(item: &mut Item, point: &RistrettoPoint) {
    *item = point.compress().to_bytes();
}

fn write_scalar(item: &mut Item, scalar: &Scalar) {
    *item = scalar.to_bytes();
}

/// Shuffles and re-encrypts `inputs` into `outputs` and writes the proof.
///
/// `inputs` and `outputs` hold `n` rows of `width` ciphertexts ([`super::rows_len`]
/// bytes), `proof` holds [`super::proof_len`]`(n, width)` bytes and `slots` at least `n`
/// slots. `context` binds the proof to its use (the group, the epoch, the trustee); the
/// verifier passes the same. Refuses an input that is not a canonical encoding. On success
/// `slots` is cleared (it held the permutation). [`Prover`]'s steps, run to the end.
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
    let mut prover = Prover::new(width, inputs, outputs, proof, slots, rng)?;
    while prover
        .step(context, key, inputs, outputs, proof, slots)?
        .is_pending()
    {}
    Ok(())
}

/// Where a [`Prover`] is.
#[derive(Clone, Copy)]
enum Phase {
    /// The permutation commitment `c_j`, from row `j` (slots in input order).
    Commit(usize),
    /// Re-encrypting the outputs, from ciphertext `at`.
    Reencrypt(usize),
    /// `r̃`, from row `j`.
    RTilde(usize),
    /// The chain and its announcements, from row `i`.
    Chain(usize),
    /// `t3` and `t4_k`, from row `i`.
    Announce(usize),
    /// The responses `ŝ_i` and `s'_i`, from row `i`.
    Respond(usize),
    /// The proof is written.
    Done,
}

/// The prover, resumable: [`Prover::new`] draws the secrets and sorts the rows (no
/// multiplication), then each [`Prover::step`] does at most [`super::STEP_ROWS`] rows of
/// one phase and returns `Poll::Pending` until the proof is written. The caller passes the
/// same buffers to every step; the prover keeps its seed and secret sums (zeroized when it
/// is dropped), and its public running sums (`t3`, `t4_k`) in their places in the proof.
/// Same randomness, same bytes as [`prove`].
pub struct Prover {
    shape: Shape,
    phase: Phase,
    secrets: Secrets,
    r_sum: Zeroizing<Scalar>,
    r_tilde: Zeroizing<Scalar>,
    r_hat: Zeroizing<Scalar>,
    r_prime: Zeroizing<[Scalar; MAX_WIDTH]>,
    /// The transcript after the permutation commitment (once the outputs are written).
    transcript: Option<Transcript>,
    c: Scalar,
}

impl Prover {
    /// Checks the lengths and the inputs' encodings, draws the secret seed and the
    /// permutation from `rng` and moves the rows into `outputs` in their new order.
    pub fn new(
        width: usize,
        inputs: &[u8],
        outputs: &mut [u8],
        proof: &mut [u8],
        slots: &mut [ProverSlot],
        rng: &mut impl CryptoRngCore,
    ) -> Result<Self, ShuffleError> {
        let shape = check_shape(width, inputs, outputs.len(), proof.len())?;
        let n = shape.n;
        let slots = slots.get_mut(..n).ok_or(ShuffleError::Storage)?;
        for (index, item) in inputs.as_chunks::<32>().0.iter().enumerate() {
            decode_point(item).map_err(|_| ShuffleError::Point {
                part: Part::Inputs,
                index,
            })?;
        }

        let mut seed = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(seed.as_mut());
        let secrets = Secrets { seed };

        // ψ: sort random keys (ties broken by index); the input rows travel with them, so
        // output row i is input row ψ(i) and slot i holds ψ(i).
        for (j, slot) in (0u32..).zip(slots.iter_mut()) {
            *slot = ProverSlot {
                key: rng.next_u64(),
                index: j,
                tag: 0,
            };
        }
        outputs.copy_from_slice(inputs);
        let output_ciphertexts = ciphertexts_mut(outputs);
        oblivious::sort(n, &mut |i, j, ascending| {
            let [a, b] = slot_pair(slots, i, j)?;
            let greater = a.key.ct_gt(&b.key) | (a.key.ct_eq(&b.key) & a.index.ct_gt(&b.index));
            let swap = order(greater, ascending);
            swap_slots([a, b], swap);
            swap_rows(output_ciphertexts, width, i, j, swap)
        })?;

        // ψ⁻¹: sort by ψ(i) carrying i; slot j then holds ψ⁻¹(j).
        for (i, slot) in (0u32..).zip(slots.iter_mut()) {
            slot.tag = i;
        }
        oblivious::sort(n, &mut |i, j, ascending| {
            let [a, b] = slot_pair(slots, i, j)?;
            let swap = order(a.index.ct_gt(&b.index), ascending);
            swap_slots([a, b], swap);
            Ok(())
        })?;
        Ok(Prover {
            shape,
            phase: Phase::Commit(0),
            secrets,
            r_sum: Zeroizing::new(Scalar::ZERO),
            r_tilde: Zeroizing::new(Scalar::ZERO),
            r_hat: Zeroizing::new(Scalar::ZERO),
            r_prime: Zeroizing::new([Scalar::ZERO; MAX_WIDTH]),
            transcript: None,
            c: Scalar::ZERO,
        })
    }

    /// Does the next bounded part of the proof: `Ok(Poll::Ready(()))` once the proof is
    /// written (and `slots` cleared), `Ok(Poll::Pending)` while work is left. `inputs`,
    /// `outputs`, `proof` and `slots` must be the buffers given to [`Prover::new`], as it
    /// left them; other lengths are refused.
    #[allow(clippy::too_many_arguments)]
    pub fn step(
        &mut self,
        context: &[u8],
        key: &PublicKey,
        inputs: &[u8],
        outputs: &mut [u8],
        proof: &mut [u8],
        slots: &mut [ProverSlot],
    ) -> Result<Poll<()>, ShuffleError> {
        let shape = self.shape;
        let (n, width) = (shape.n, shape.width.get());
        check_shape(width, inputs, outputs.len(), proof.len())?;
        let slots = slots.get_mut(..n).ok_or(ShuffleError::Storage)?;
        let end = |from: usize, len: usize| (from + STEP_ROWS).min(len);
        self.phase = match self.phase {
            Phase::Commit(from) => {
                let to = end(from, n);
                self.commit(proof, slots, from, to)?;
                if to < n {
                    Phase::Commit(to)
                } else {
                    // Back to output order: slot i holds ψ(i) again.
                    oblivious::sort(n, &mut |i, j, ascending| {
                        let [a, b] = slot_pair(slots, i, j)?;
                        let swap = order(a.tag.ct_gt(&b.tag), ascending);
                        swap_slots([a, b], swap);
                        Ok(())
                    })?;
                    Phase::Reencrypt(0)
                }
            }
            Phase::Reencrypt(from) => {
                let to = end(from, n * width);
                self.reencrypt(key, outputs, from, to)?;
                if to < n * width {
                    Phase::Reencrypt(to)
                } else {
                    let commitments = ProofMut::new(proof, shape)?.commitments;
                    self.transcript = Some(statement_transcript(
                        context,
                        key,
                        width,
                        n,
                        inputs,
                        outputs,
                        commitments.as_flattened(),
                    ));
                    Phase::RTilde(0)
                }
            }
            Phase::RTilde(from) => {
                let to = end(from, n);
                let transcript = self.transcript.as_ref().ok_or(ShuffleError::Storage)?;
                // r̃ = Σ r_j·u_j (input order, public u_j).
                for j in from..to {
                    let r = Zeroizing::new(self.secrets.scalar(Stream::Commitment, j));
                    *self.r_tilde += *r * row_challenge(transcript, j as u32);
                }
                if to < n {
                    Phase::RTilde(to)
                } else {
                    Phase::Chain(0)
                }
            }
            Phase::Chain(from) => {
                let to = end(from, n);
                self.chain(proof, slots, from, to)?;
                if to < n {
                    Phase::Chain(to)
                } else {
                    Phase::Announce(0)
                }
            }
            Phase::Announce(from) => {
                let to = end(from, n);
                self.announce(key, outputs, proof, from, to)?;
                if to < n {
                    Phase::Announce(to)
                } else {
                    self.announce_end(proof)?;
                    Phase::Respond(0)
                }
            }
            Phase::Respond(from) => {
                let to = end(from, n);
                self.respond(proof, slots, from, to)?;
                if to < n {
                    Phase::Respond(to)
                } else {
                    slots.zeroize();
                    Phase::Done
                }
            }
            Phase::Done => Phase::Done,
        };
        Ok(match self.phase {
            Phase::Done => Poll::Ready(()),
            _ => Poll::Pending,
        })
    }

    /// `c_j = r_j·G + H_ψ⁻¹(j)` for rows `from..to` (slot j holds ψ⁻¹(j) in its tag).
    #[inline(never)]
    fn commit(
        &mut self,
        proof: &mut [u8],
        slots: &[ProverSlot],
        from: usize,
        to: usize,
    ) -> Result<(), ShuffleError> {
        let out = ProofMut::new(proof, self.shape)?;
        let rows = slots.iter().zip(out.commitments.iter_mut());
        for (j, (slot, commitment)) in rows.enumerate().take(to).skip(from) {
            let r = Zeroizing::new(self.secrets.scalar(Stream::Commitment, j));
            *self.r_sum += *r;
            write_point(commitment, &(mul_base(&r) + generators::h_i(slot.tag)));
        }
        Ok(())
    }

    /// Re-encrypts output ciphertexts `from..to` in place (ciphertext `i·ω + k` is row i,
    /// column k).
    #[inline(never)]
    fn reencrypt(
        &mut self,
        key: &PublicKey,
        outputs: &mut [u8],
        from: usize,
        to: usize,
    ) -> Result<(), ShuffleError> {
        let cts = ciphertexts_mut(outputs).iter_mut().enumerate();
        for (at, [a, b]) in cts.take(to).skip(from) {
            // Checked in `new` (the same bytes, moved).
            let decode = |bytes| {
                decode_point(bytes).map_err(|_| ShuffleError::Point {
                    part: Part::Inputs,
                    index: 0,
                })
            };
            let ct = Ciphertext {
                a: decode(a)?,
                b: decode(b)?,
            };
            let r = Zeroizing::new(self.secrets.scalar(Stream::Reencryption, at));
            let ct = ct.reencrypt_with(key, &r);
            write_point(a, &ct.a);
            write_point(b, &ct.b);
        }
        Ok(())
    }

    /// The chain and its announcements for rows `from..to`, in output order, with
    /// `u'_i = u_ψ(i)`.
    #[inline(never)]
    fn chain(
        &mut self,
        proof: &mut [u8],
        slots: &[ProverSlot],
        from: usize,
        to: usize,
    ) -> Result<(), ShuffleError> {
        let width = self.shape.width.get();
        let transcript = self.transcript.as_ref().ok_or(ShuffleError::Storage)?;
        let out = ProofMut::new(proof, self.shape)?;
        // ĉ_(i−1): H, or the link the step before wrote.
        let mut previous = match from.checked_sub(1) {
            None => generators::h(),
            Some(last) => {
                let written = out.chain.get(last).ok_or(ShuffleError::Storage)?;
                decode_point(written).map_err(|_| ShuffleError::Storage)?
            }
        };
        let links = out.chain.iter_mut().zip(out.chain_announcements.iter_mut());
        let rows = slots.iter().zip(links).enumerate().take(to).skip(from);
        for (i, (slot, (link, link_announcement))) in rows {
            let u = Zeroizing::new(row_challenge(transcript, slot.index));
            let chain_r = Zeroizing::new(self.secrets.scalar(Stream::Chain, i));
            let chain_nonce = Zeroizing::new(self.secrets.scalar(Stream::ChainNonce, i));
            let row_nonce = Zeroizing::new(self.secrets.scalar(Stream::RowNonce, i));
            let next = mul_base(&chain_r) + mul(&u, &previous);
            let announcement = mul_base(&chain_nonce) + mul(&row_nonce, &previous);
            write_point(link, &next);
            write_point(link_announcement, &announcement);
            *self.r_hat = *self.r_hat * *u + *chain_r;
            for (k, r_prime) in self.r_prime.iter_mut().take(width).enumerate() {
                let r = Zeroizing::new(self.secrets.scalar(Stream::Reencryption, i * width + k));
                *r_prime += *r * *u;
            }
            previous = next;
        }
        Ok(())
    }

    fn nonce(&self, k: usize) -> Zeroizing<Scalar> {
        Zeroizing::new(self.secrets.scalar(Stream::Nonce, k))
    }

    /// Rows `from..to` of `t3` and `t4_k`, summed where the proof keeps them.
    #[inline(never)]
    fn announce(
        &mut self,
        key: &PublicKey,
        outputs: &[u8],
        proof: &mut [u8],
        from: usize,
        to: usize,
    ) -> Result<(), ShuffleError> {
        let width = self.shape.width.get();
        let out = ProofMut::new(proof, self.shape)?;
        let written = |item: &Item| decode_point(item).map_err(|_| ShuffleError::Storage);
        let mut t3;
        let mut t4 = [[RistrettoPoint::default(); 2]; MAX_WIDTH];
        if from == 0 {
            t3 = mul_base(&self.nonce(2));
            for (k, t4k) in t4.iter_mut().enumerate().take(width) {
                let w4 = self.nonce(3 + k);
                *t4k = [-mul(&w4, key.point()), -mul_base(&w4)];
            }
        } else {
            t3 = written(&out.t[2])?;
            for (t4k, [a, b]) in t4.iter_mut().zip(out.t4.iter()) {
                *t4k = [written(a)?, written(b)?];
            }
        }
        let rows = ciphertexts(outputs).chunks_exact(width);
        for (i, out_row) in (0u32..).zip(rows).take(to).skip(from) {
            let row_nonce = Zeroizing::new(self.secrets.scalar(Stream::RowNonce, i as usize));
            t3 += mul(&row_nonce, &generators::h_i(i));
            for (k, (t4k, [a, b])) in t4.iter_mut().zip(out_row).enumerate() {
                // Written by `reencrypt` from a valid ciphertext.
                let index = 2 * (i as usize * width + k);
                let decode = |bytes, index| {
                    decode_point(bytes).map_err(|_| ShuffleError::Point {
                        part: Part::Outputs,
                        index,
                    })
                };
                t4k[0] += mul(&row_nonce, &decode(a, index)?);
                t4k[1] += mul(&row_nonce, &decode(b, index + 1)?);
            }
        }
        write_point(&mut out.t[2], &t3);
        for ([a_out, b_out], [a, b]) in out.t4.iter_mut().zip(&t4) {
            write_point(a_out, a);
            write_point(b_out, b);
        }
        Ok(())
    }

    /// Writes `t1`, `t2` (`t3`, `t4_k` are written), draws `c` and writes `s1`, `s2`,
    /// `s3`, `s4_k`.
    #[inline(never)]
    fn announce_end(&mut self, proof: &mut [u8]) -> Result<(), ShuffleError> {
        let shape = self.shape;
        let out = ProofMut::new(proof, shape)?;
        let [t1_out, t2_out, _] = out.t;
        write_point(t1_out, &mul_base(&self.nonce(0)));
        write_point(t2_out, &mul_base(&self.nonce(1)));
        let transcript = self.transcript.clone().ok_or(ShuffleError::Storage)?;
        let (_, c) = final_challenge(transcript, &ProofView::new(proof, shape)?);
        self.c = c;

        let out = ProofMut::new(proof, shape)?;
        let [s1, s2, s3] = out.s;
        write_scalar(s1, &(*self.nonce(0) + c * *self.r_sum));
        write_scalar(s2, &(*self.nonce(1) + c * *self.r_hat));
        write_scalar(s3, &(*self.nonce(2) + c * *self.r_tilde));
        for (k, (s4, r)) in out.s4.iter_mut().zip(self.r_prime.iter()).enumerate() {
            write_scalar(s4, &(*self.nonce(3 + k) + c * r));
        }
        Ok(())
    }

    /// The responses `ŝ_i` and `s'_i` for rows `from..to`.
    #[inline(never)]
    fn respond(
        &mut self,
        proof: &mut [u8],
        slots: &[ProverSlot],
        from: usize,
        to: usize,
    ) -> Result<(), ShuffleError> {
        let c = self.c;
        let transcript = self.transcript.as_ref().ok_or(ShuffleError::Storage)?;
        let out = ProofMut::new(proof, self.shape)?;
        let responses = out.s_hat.iter_mut().zip(out.s_prime.iter_mut());
        let rows = slots.iter().zip(responses).enumerate().take(to).skip(from);
        for (i, (slot, (s_hat, s_prime))) in rows {
            let u = Zeroizing::new(row_challenge(transcript, slot.index));
            let chain_r = Zeroizing::new(self.secrets.scalar(Stream::Chain, i));
            let chain_nonce = Zeroizing::new(self.secrets.scalar(Stream::ChainNonce, i));
            let row_nonce = Zeroizing::new(self.secrets.scalar(Stream::RowNonce, i));
            write_scalar(s_hat, &(*chain_nonce + c * *chain_r));
            write_scalar(s_prime, &(*row_nonce + c * *u));
        }
        Ok(())
    }
}

impl zeroize::DefaultIsZeroes for ProverSlot {}
