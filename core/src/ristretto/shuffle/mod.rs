//! A verifiable re-encryption shuffle of rows of ElGamal ciphertexts.
//!
//! A trustee takes `N` rows of `ω` ciphertexts under the joint key `Y`, permutes the rows
//! with a secret permutation `ψ` and re-encrypts every ciphertext:
//! `e'_i,k = e_ψ(i),k + (r̃_i,k·Y, r̃_i,k·G)`. It proves that it did, without revealing
//! `ψ`, with the Terelius–Wikström proof as written in Haenni, Locher, Koenig and Dubuis,
//! "Pseudo-Code Algorithms for Verifiable Re-Encryption Mix-Nets" (FC 2017 workshops),
//! algorithms 4.2 to 4.5 (`GenPermutationCommitment`, `GenCommitmentChain`, `GenProof`,
//! `CheckProof`). Rows generalise the paper's single ciphertexts: one permutation moves
//! whole rows, and the re-encryption proof (the paper's `t_4`) is made once per column
//! `k` with its own randomness, against the same `s'_i`.
//!
//! Notation (additive; `G` the base point, `H`, `H_i` from [`super::generators`]):
//!
//! ```text
//! commitment   c_j = r_j·G + H_ψ⁻¹(j)                  for j < N (input order)
//! challenges   u_j (from the transcript, below)        u'_i = u_ψ(i)
//! chain        ĉ_0 = H,  ĉ_i = r̂_i·G + u'_i·ĉ_(i−1)     for i = 1..N (output order)
//! aggregates   r̄ = Σ r_j   r̂ = Σ r̂_i·Π_(l>i) u'_l   r̃ = Σ r_j·u_j   r'_k = Σ r̃_i,k·u'_i
//! announce     t1 = ω1·G   t2 = ω2·G   t3 = ω3·G + Σ ω'_i·H_i
//!              t4_k = (−ω4_k·Y + Σ ω'_i·a'_i,k,  −ω4_k·G + Σ ω'_i·b'_i,k)
//!              t̂_i = ω̂_i·G + ω'_i·ĉ_(i−1)
//! challenge    c (from the transcript)
//! responses    s1 = ω1 + c·r̄   s2 = ω2 + c·r̂   s3 = ω3 + c·r̃   s4_k = ω4_k + c·r'_k
//!              ŝ_i = ω̂_i + c·r̂_i   s'_i = ω'_i + c·u'_i
//! ```
//!
//! The verifier checks, with `ĉ_0 = H`:
//!
//! ```text
//! t1   = s1·G − c·(Σ c_j − Σ H_j)
//! t2   = s2·G − c·(ĉ_N − (Π u_j)·H)
//! t3   = s3·G + Σ s'_i·H_i − c·Σ u_j·c_j
//! t4_k = (−s4_k·Y + Σ s'_i·a'_i,k − c·Σ u_j·a_j,k,  −s4_k·G + Σ s'_i·b'_i,k − c·Σ u_j·b_j,k)
//! t̂_i  = ŝ_i·G + s'_i·ĉ_(i−1) − c·ĉ_i
//! ```
//!
//! Transcript (merlin; every point and scalar as its 32-byte encoding):
//!
//! ```text
//! T = merlin("dissent-rs v3 shuffle")
//! T.append("context", context)  T.append_u64("n", N)  T.append_u64("width", ω)
//! T.append("key", Y)  T.append("inputs", e)  T.append("outputs", e')
//! T.append("permutation commitment", c_0 ‖ … ‖ c_(N−1))
//! u_j = clone(T).append_u64("index", j).challenge("u", 64 bytes) mod l
//! T.append("commitment chain", ĉ_1 ‖ … ‖ ĉ_N)
//! T.append("announcements", t̂_1 ‖ … ‖ t̂_N ‖ t1 ‖ t2 ‖ t3 ‖ t4_0 ‖ … ‖ t4_(ω−1))
//! c = T.challenge("c", 64 bytes) mod l
//! ```
//!
//! The proof's bytes (32 each; a `t4_k` is its two points `a ‖ b`), in this order:
//! `c_j` (N), `ĉ_i` (N), `t̂_i` (N), `t1 t2 t3`, `t4_k` (2ω), `s1 s2 s3`, `s4_k` (ω),
//! `ŝ_i` (N), `s'_i` (N): [`proof_len`] = 32·(5N + 6 + 3ω) bytes.
//!
//! The prover's permutation never steers a branch or a memory address: rows move through a
//! sorting network with constant-time swaps (`oblivious`), `H_ψ⁻¹(j)` and `u_ψ(i)` are
//! computed by hashing the secret index, and every multiplication by a secret scalar is
//! constant time. Its secret scalars come from ChaCha20 keyed by 32 bytes of the caller's
//! RNG, so it needs storage only for the permutation ([`ProverSlot`], 16 bytes a row).

mod prove;
mod verify;

pub use prove::{prove, Prover};
#[cfg(feature = "std")]
pub use verify::verify_batched;
pub use verify::{verify, verify_streaming, Verifier, STEP_ROWS};

use core::num::NonZeroUsize;

use merlin::Transcript;

use super::elgamal::CIPHERTEXT_LEN;
use super::keys::PublicKey;

/// Widest row (ciphertexts per row).
pub const MAX_WIDTH: usize = 4;
/// Most rows in one shuffle (keeps every transcript message below 4 GiB).
pub const MAX_ROWS: usize = 1 << 20;

/// Bytes of one row of `width` ciphertexts.
pub const fn row_len(width: usize) -> usize {
    width * CIPHERTEXT_LEN
}

/// Bytes of `n` rows of `width` ciphertexts.
pub const fn rows_len(n: usize, width: usize) -> usize {
    n * row_len(width)
}

/// Bytes of the proof for `n` rows of `width` ciphertexts: `32·(5n + 6 + 3·width)`.
pub const fn proof_len(n: usize, width: usize) -> usize {
    32 * (5 * n + 6 + 3 * width)
}

/// One row's share of the prover's storage: where the secret permutation is kept.
#[derive(Clone, Copy, Default, Debug)]
pub struct ProverSlot {
    key: u64,
    index: u32,
    tag: u32,
}

impl ProverSlot {
    /// An empty slot, for static arrays.
    pub const EMPTY: Self = Self {
        key: 0,
        index: 0,
        tag: 0,
    };
}

/// A part of a shuffle's statement or proof.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Part {
    /// The input rows.
    Inputs,
    /// The output rows.
    Outputs,
    /// The permutation commitment `c_j`.
    PermutationCommitment,
    /// The commitment chain `ĉ_i`.
    CommitmentChain,
    /// The announcements `t̂_i`, `t1`, `t2`, `t3`, `t4_k`.
    Announcement,
    /// The responses `s1`, `s2`, `s3`, `s4_k`, `ŝ_i`, `s'_i`.
    Response,
}

/// A verification equation of the proof.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Equation {
    /// `t1`: the permutation commitment commits to a permutation's sum.
    PermutationSum,
    /// `t2`: the commitment chain ends at the product of the challenges.
    ChainEnd,
    /// `t3`: the commitment opens to the permuted challenges.
    Commitment,
    /// `t4_k`: column `k` of the outputs re-encrypts the inputs.
    Reencryption(usize),
    /// `t̂_i`: link `i` of the commitment chain.
    Chain(usize),
    /// The batched check failed where each equation alone held (probability about 2^-252).
    Batch,
}

/// The equation's name, as its `Debug` writes it (`Reencryption(2)`): written out, a
/// device links no `Debug` code for tuple variants (about 600 B of its flash).
impl core::fmt::Display for Equation {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Equation::PermutationSum => f.write_str("PermutationSum"),
            Equation::ChainEnd => f.write_str("ChainEnd"),
            Equation::Commitment => f.write_str("Commitment"),
            Equation::Reencryption(k) => write!(f, "Reencryption({k})"),
            Equation::Chain(i) => write!(f, "Chain({i})"),
            Equation::Batch => f.write_str("Batch"),
        }
    }
}

/// Why a shuffle could not be made, or its proof was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ShuffleError {
    /// The width is 0 or above [`MAX_WIDTH`].
    Width,
    /// No rows, more than [`MAX_ROWS`], or a length that is not a whole number of rows.
    Rows,
    /// Outputs and inputs differ in length.
    OutputsLength,
    /// The proof is not [`proof_len`] bytes.
    ProofLength,
    /// The prover's storage has fewer slots than rows.
    Storage,
    /// A point is not a canonical encoding; `index` counts 32-byte items within `part`.
    Point {
        /// Where.
        part: Part,
        /// Which item.
        index: usize,
    },
    /// A response is not a canonical scalar; `index` counts responses in proof order.
    Scalar {
        /// Which response.
        index: usize,
    },
    /// An equation does not hold: the outputs are not a shuffle of the inputs (or the
    /// proof is for other data).
    Equation(Equation),
}

impl core::fmt::Display for ShuffleError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ShuffleError::Width => write!(f, "row width not in 1..={MAX_WIDTH}"),
            ShuffleError::Rows => write!(f, "not 1..={MAX_ROWS} whole rows"),
            ShuffleError::OutputsLength => f.write_str("outputs and inputs differ in length"),
            ShuffleError::ProofLength => f.write_str("proof has the wrong length"),
            ShuffleError::Storage => f.write_str("prover storage smaller than the rows"),
            ShuffleError::Point { part, index } => {
                write!(f, "{part:?} item {index}: not a canonical point")
            }
            ShuffleError::Scalar { index } => {
                write!(f, "response {index}: not a canonical scalar")
            }
            ShuffleError::Equation(e) => write!(f, "proof of shuffle fails: {e}"),
        }
    }
}

impl core::error::Error for ShuffleError {}

/// The shape of a shuffle: `n` rows of `width` ciphertexts.
#[derive(Clone, Copy)]
struct Shape {
    n: usize,
    width: NonZeroUsize,
}

/// Rows, width and lengths, checked.
fn check_shape(
    width: usize,
    inputs: &[u8],
    outputs_len: usize,
    proof_bytes: usize,
) -> Result<Shape, ShuffleError> {
    let width = match NonZeroUsize::new(width) {
        Some(width) if width.get() <= MAX_WIDTH => width,
        _ => return Err(ShuffleError::Width),
    };
    let row = row_len(width.get());
    if inputs.is_empty() || !inputs.len().is_multiple_of(row) || inputs.len() / row > MAX_ROWS {
        return Err(ShuffleError::Rows);
    }
    let n = inputs.len() / row;
    if outputs_len != inputs.len() {
        return Err(ShuffleError::OutputsLength);
    }
    if proof_bytes != proof_len(n, width.get()) {
        return Err(ShuffleError::ProofLength);
    }
    Ok(Shape { n, width })
}

/// One 32-byte item of a proof: a point or a scalar.
type Item = [u8; 32];

/// Rows of ciphertexts as pairs of points `[a, b]` (a whole number of them: [`check_shape`]).
fn ciphertexts(rows: &[u8]) -> &[[Item; 2]] {
    rows.as_chunks::<32>().0.as_chunks::<2>().0
}

/// Rows of ciphertexts as pairs of points, for writing.
fn ciphertexts_mut(rows: &mut [u8]) -> &mut [[Item; 2]] {
    rows.as_chunks_mut::<32>().0.as_chunks_mut::<2>().0
}

/// Where the announcements start among a proof's items (for error indices).
const fn first_announcement(n: usize) -> usize {
    2 * n
}

/// Where `t1` starts among a proof's items (for error indices).
const fn first_t(n: usize) -> usize {
    3 * n
}

/// Splits the first `len` items off `rest`.
fn take<'a, T>(rest: &mut &'a [T], len: usize) -> Result<&'a [T], ShuffleError> {
    let (head, tail) = rest
        .split_at_checked(len)
        .ok_or(ShuffleError::ProofLength)?;
    *rest = tail;
    Ok(head)
}

/// Splits the first `N` items off `rest`.
fn take_array<'a, T, const N: usize>(rest: &mut &'a [T]) -> Result<&'a [T; N], ShuffleError> {
    let (head, tail) = rest
        .split_first_chunk::<N>()
        .ok_or(ShuffleError::ProofLength)?;
    *rest = tail;
    Ok(head)
}

/// Splits the first `len` items off `rest`, for writing.
fn take_mut<'a, T>(rest: &mut &'a mut [T], len: usize) -> Result<&'a mut [T], ShuffleError> {
    let (head, tail) = core::mem::take(rest)
        .split_at_mut_checked(len)
        .ok_or(ShuffleError::ProofLength)?;
    *rest = tail;
    Ok(head)
}

/// Splits the first `N` items off `rest`, for writing.
fn take_array_mut<'a, T, const N: usize>(
    rest: &mut &'a mut [T],
) -> Result<&'a mut [T; N], ShuffleError> {
    let (head, tail) = core::mem::take(rest)
        .split_first_chunk_mut::<N>()
        .ok_or(ShuffleError::ProofLength)?;
    *rest = tail;
    Ok(head)
}

/// A proof's bytes cut into its named parts, in proof order.
struct ProofView<'a> {
    /// `c_j` (N).
    commitments: &'a [Item],
    /// `ĉ_i` (N).
    chain: &'a [Item],
    /// `ĉ_N`, the last link of the chain.
    chain_end: &'a Item,
    /// Every announcement's bytes, as the transcript takes them.
    announcements: &'a [u8],
    /// `t̂_i` (N).
    chain_announcements: &'a [Item],
    /// `t1`, `t2`, `t3`.
    t: &'a [Item; 3],
    /// `t4_k` as `[a, b]` (ω).
    t4: &'a [[Item; 2]],
    /// `s1`, `s2`, `s3`.
    s: &'a [Item; 3],
    /// `s4_k` (ω).
    s4: &'a [Item],
    /// `ŝ_i` (N).
    s_hat: &'a [Item],
    /// `s'_i` (N).
    s_prime: &'a [Item],
}

impl<'a> ProofView<'a> {
    /// Cuts `proof` for `shape`; refuses any other length.
    fn new(proof: &'a [u8], shape: Shape) -> Result<Self, ShuffleError> {
        let (n, width) = (shape.n, shape.width.get());
        let (mut rest, []) = proof.as_chunks::<32>() else {
            return Err(ShuffleError::ProofLength);
        };
        let commitments = take(&mut rest, n)?;
        let chain = take(&mut rest, n)?;
        let mut announcements = take(&mut rest, n + 3 + 2 * width)?;
        let announcement_bytes = announcements.as_flattened();
        let chain_announcements = take(&mut announcements, n)?;
        let t = take_array(&mut announcements)?;
        let s = take_array(&mut rest)?;
        let s4 = take(&mut rest, width)?;
        let s_hat = take(&mut rest, n)?;
        let s_prime = take(&mut rest, n)?;
        let (t4, []) = announcements.as_chunks::<2>() else {
            return Err(ShuffleError::ProofLength);
        };
        if !rest.is_empty() {
            return Err(ShuffleError::ProofLength);
        }
        Ok(Self {
            commitments,
            chain,
            chain_end: chain.last().ok_or(ShuffleError::Rows)?,
            announcements: announcement_bytes,
            chain_announcements,
            t,
            t4,
            s,
            s4,
            s_hat,
            s_prime,
        })
    }
}

/// A proof's buffer cut into its named parts, for the prover to write.
struct ProofMut<'a> {
    commitments: &'a mut [Item],
    chain: &'a mut [Item],
    chain_announcements: &'a mut [Item],
    t: &'a mut [Item; 3],
    t4: &'a mut [[Item; 2]],
    s: &'a mut [Item; 3],
    s4: &'a mut [Item],
    s_hat: &'a mut [Item],
    s_prime: &'a mut [Item],
}

impl<'a> ProofMut<'a> {
    /// Cuts `proof` for `shape`; refuses any other length.
    fn new(proof: &'a mut [u8], shape: Shape) -> Result<Self, ShuffleError> {
        let (n, width) = (shape.n, shape.width.get());
        let (mut rest, []) = proof.as_chunks_mut::<32>() else {
            return Err(ShuffleError::ProofLength);
        };
        let commitments = take_mut(&mut rest, n)?;
        let chain = take_mut(&mut rest, n)?;
        let chain_announcements = take_mut(&mut rest, n)?;
        let t = take_array_mut(&mut rest)?;
        let (t4, []) = take_mut(&mut rest, 2 * width)?.as_chunks_mut::<2>() else {
            return Err(ShuffleError::ProofLength);
        };
        let s = take_array_mut(&mut rest)?;
        let s4 = take_mut(&mut rest, width)?;
        let s_hat = take_mut(&mut rest, n)?;
        let s_prime = take_mut(&mut rest, n)?;
        if !rest.is_empty() {
            return Err(ShuffleError::ProofLength);
        }
        Ok(Self {
            commitments,
            chain,
            chain_announcements,
            t,
            t4,
            s,
            s4,
            s_hat,
            s_prime,
        })
    }
}

/// The transcript up to the permutation commitment (shared by prover and verifier).
fn statement_transcript(
    context: &[u8],
    key: &PublicKey,
    width: usize,
    n: usize,
    inputs: &[u8],
    outputs: &[u8],
    commitments: &[u8],
) -> Transcript {
    let mut t = Transcript::new(b"dissent-rs v3 shuffle");
    t.append_message(b"context", context);
    t.append_u64(b"n", n as u64);
    t.append_u64(b"width", width as u64);
    t.append_message(b"key", key.as_bytes());
    t.append_message(b"inputs", inputs);
    t.append_message(b"outputs", outputs);
    t.append_message(b"permutation commitment", commitments);
    t
}

/// `u_j`: the challenge for input row `j` (constant time in `j`).
fn row_challenge(after_commitment: &Transcript, j: u32) -> curve25519_dalek::scalar::Scalar {
    let mut t = after_commitment.clone();
    t.append_u64(b"index", u64::from(j));
    super::challenge_scalar(&mut t, b"u")
}

/// The transcript's final challenge `c`, after the chain and the announcements.
fn final_challenge(
    mut after_commitment: Transcript,
    proof: &ProofView<'_>,
) -> (Transcript, curve25519_dalek::scalar::Scalar) {
    after_commitment.append_message(b"commitment chain", proof.chain.as_flattened());
    after_commitment.append_message(b"announcements", proof.announcements);
    let c = super::challenge_scalar(&mut after_commitment, b"c");
    (after_commitment, c)
}

#[cfg(test)]
mod tests;
