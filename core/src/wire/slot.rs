//! The layout of an owned data cell: its body encrypted and authenticated under a key only
//! the slot's owner and the relay can compute, laid out around secret *trap bytes*.
//!
//! ```text
//! Sealed  = nonce (24) | XChaCha20-Poly1305(k_s, nonce, AAD).encrypt(Body) | tag (16)
//! Body    = Next (u16 BE) | Record* | zero padding        (sealed_len(len) − 40 bytes)
//! AAD     = "dissent-rs v3 slot" | group_id (16) | session_id (16) | view (32)
//!           | interval (u32 BE) | slot (u16 BE) | ordinal (u64 BE) | len (u32 BE)
//! k_s     = HKDF-SHA256(salt = session_id, ikm = dh,
//!                       info = "dissent-rs v3 slot key" | group_id (16) | slot (u16 BE), 32)
//! dh      = encode(x_s · R) = encode(r · P_s)               (Ristretto255, 32 bytes)
//! ```
//!
//! `x_s` is the pseudonym secret scalar of slot `s` and `P_s = x_s·G` its public key
//! (`crate::pseudonym`; read from 32 secret bytes as a pad secret is); `r` is the relay's
//! Ristretto255 DH secret and `R = r·G` its public key. The owner computes `k_s` once per
//! epoch, the relay once per slot on first use. The nonce is fresh randomness per cell.
//!
//! `view` is the interval's `T_start` (the view every trustee confirmed), and `ordinal`
//! counts the exchanges of `slot` in the interval from 0: an owner prepares (and seals) its
//! next cell before the relay issues that exchange, so it knows which of its slot's
//! exchanges the cell is for but not the exchange's number; the ordinal names that exchange
//! just as uniquely, and the relay counts it too. A cell of all zeros is "nothing" and is
//! never sealed.
//!
//! **Traps.** A cell of `len` bytes is cut into blocks of [`TRAP_BLOCK`] bytes (the last
//! one shorter when `len` is not a multiple). One byte of each block is a trap byte, where
//! the owner writes 0; the sealed cell (`sealed_len(len) = len − ⌈len/16⌉` bytes) fills the
//! other bytes in order. Which byte is secret to the owner and the relay:
//!
//! ```text
//! R_I     = r_I · G          announced in interval I's IntervalStart (r_I: trap_secret)
//! Z       = encode(x_s · R_I) = encode(r_I · P_s)
//! k_trap  = HKDF-SHA256(salt = session_id, ikm = Z, info = "dissent-rs v3 trap key"
//!                       | group_id (16) | interval (u32 BE) | slot (u16 BE), 32)
//! stream  = ChaCha20(k_trap, nonce = 0 (4) | exchange (u64 BE), counter 0)
//! trap(k) = 16·k + stream[k] mod size_k   (size_k = 16, or the last block's length)
//! r_I     = HKDF-SHA256(salt = session_id, ikm = relay DH secret (32, canonical),
//!                       info = "dissent-rs v3 trap secret" | epoch (16) | interval (u32 BE), 32)
//!           read little-endian modulo the group order
//! ```
//!
//! The owner lays its sealed cell out in the cell path, where it knows the exchange; a
//! non-owner does the same work writing zeros. The relay checks every trap byte of a
//! decoded owned cell (a non-zero one is a *sprung trap*: someone else wrote there), then
//! gathers the sealed bytes to the front of the cell in place to open it, and puts them
//! back if it does not open (the decoded cell is what every member is shown). A disruptor
//! does not know where the traps are, so every byte it changes is a trap with probability
//! 1/16 (docs/security.md). An owned cell is never shorter than [`MIN_OWNED_CELL`] (45)
//! bytes, so it always has at least three blocks.
//!
//! The ciphertext is also the whitening: every bit of an owned cell is unpredictable to
//! anyone but its owner and the relay, so a disruptor cannot flip only the bits it knows to
//! be 1. The tag proves to the relay that the owner (or the relay itself) wrote the cell;
//! it proves nothing to anyone else (docs/security.md).
//!
//! Owns the layout, the slot and trap keys' derivations and the AEAD's context; the AEAD is
//! the `chacha20poly1305` crate's, the trap stream the `chacha20` crate's. It must not know
//! who owns a slot.

use chacha20::cipher::{KeyIvInit, StreamCipher, StreamCipherSeek};
use chacha20::ChaCha20;
use chacha20poly1305::aead::AeadInPlace;
use chacha20poly1305::{KeyInit, XChaCha20Poly1305};
use hkdf::Hkdf;
use sha2::Sha256;

use super::NEXT_LEN;
use crate::crypto::KeyError;
use crate::ristretto::keys::SecretKey;

const SLOT_LABEL: &[u8] = b"dissent-rs v3 slot";
const SLOT_KEY_LABEL: &[u8] = b"dissent-rs v3 slot key";
const TRAP_KEY_LABEL: &[u8] = b"dissent-rs v3 trap key";
const TRAP_SECRET_LABEL: &[u8] = b"dissent-rs v3 trap secret";

/// Bytes of an owned cell's nonce.
pub const SLOT_NONCE_LEN: usize = 24;
/// Bytes of an owned cell's tag.
pub const TAG_LEN: usize = 16;
/// Bytes an owned cell spends on its nonce and tag.
pub const SLOT_OVERHEAD: usize = SLOT_NONCE_LEN + TAG_LEN;
/// The shortest sealed cell (its nonce, `Next` and tag).
pub const MIN_SEALED_CELL: usize = SLOT_OVERHEAD + NEXT_LEN;
/// Bytes of a cell per trap byte.
pub const TRAP_BLOCK: usize = 16;
/// The shortest cell an owner can write something in: one holding [`MIN_SEALED_CELL`]
/// sealed bytes and its trap bytes.
pub const MIN_OWNED_CELL: usize = cell_len_for(MIN_SEALED_CELL);

/// Trap bytes in a cell of `len` bytes: one per block of [`TRAP_BLOCK`].
pub const fn traps_in(len: usize) -> usize {
    len.div_ceil(TRAP_BLOCK)
}

/// Bytes of the sealed cell an owned cell of `len` bytes holds beside its trap bytes.
pub const fn sealed_len(len: usize) -> usize {
    len - traps_in(len)
}

/// The shortest cell holding `sealed` sealed bytes beside its trap bytes.
pub const fn cell_len_for(sealed: usize) -> usize {
    sealed + sealed.div_ceil(TRAP_BLOCK - 1)
}
/// Bytes of an owned cell's associated data.
pub const AAD_LEN: usize = SLOT_LABEL.len() + 16 + 16 + 32 + 4 + 2 + 8 + 4;

/// The key that seals one slot's cells: only its owner and the relay can compute it.
#[derive(Clone, PartialEq, Eq)]
pub struct SlotKey([u8; 32]);

impl core::fmt::Debug for SlotKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("SlotKey(..)")
    }
}

impl SlotKey {
    /// Derives slot `slot`'s key from the Diffie–Hellman output of its pseudonym key and
    /// the relay's key.
    pub fn from_shared(
        dh: &[u8; 32],
        group_id: &[u8; 16],
        session_id: &[u8; 16],
        slot: u16,
    ) -> Self {
        let hk = Hkdf::<Sha256>::new(Some(session_id), dh);
        let mut key = [0u8; 32];
        // 32 bytes is far below HKDF-SHA256's 8160-byte limit, so expand cannot fail.
        let _ = hk.expand_multi_info(&[SLOT_KEY_LABEL, group_id, &slot.to_be_bytes()], &mut key);
        SlotKey(key)
    }

    /// The owner's side: from the 32 pseudonym secret bytes and the relay's DH public key.
    pub fn owner(
        pseudonym_secret: &[u8; 32],
        relay_public: &[u8; 32],
        group_id: &[u8; 16],
        session_id: &[u8; 16],
        slot: u16,
    ) -> Result<Self, KeyError> {
        let secret = crate::crypto::pad_secret(pseudonym_secret).ok_or(KeyError::ZeroSecret)?;
        let dh = crate::ristretto::keys::dh(&secret, relay_public)
            .map_err(|_| KeyError::NonContributory)?;
        Ok(Self::from_shared(&dh, group_id, session_id, slot))
    }

    /// The relay's side: from its DH secret and the slot's pseudonym public key.
    pub fn relay(
        relay_secret: &SecretKey,
        pseudonym_public: &[u8; 32],
        group_id: &[u8; 16],
        session_id: &[u8; 16],
        slot: u16,
    ) -> Result<Self, KeyError> {
        let dh = crate::ristretto::keys::dh(relay_secret, pseudonym_public)
            .map_err(|_| KeyError::NonContributory)?;
        Ok(Self::from_shared(&dh, group_id, session_id, slot))
    }

    /// A key kept as bytes (a relay caches each slot's key in its storage).
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        SlotKey(bytes)
    }

    /// The key's bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

/// The key of one slot's trap bytes in one interval: only the slot's owner and the relay
/// can compute it (or anyone the relay shows `Z` to, once the interval's cells are sent).
#[derive(Clone, PartialEq, Eq)]
pub struct TrapKey([u8; 32]);

impl core::fmt::Debug for TrapKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("TrapKey(..)")
    }
}

/// The relay's trap secret of `interval`, `r_I`: derived from its DH secret, its instance
/// (`epoch`) and the interval, so it is fresh in every interval and every relay instance.
/// `None` only if the derivation gives zero (probability 2^-252).
pub fn trap_secret(
    relay: &SecretKey,
    epoch: &[u8; 16],
    session_id: &[u8; 16],
    interval: u32,
) -> Option<SecretKey> {
    let mut ikm = relay.to_bytes();
    let hk = Hkdf::<Sha256>::new(Some(session_id), &ikm);
    ikm.fill(0);
    let mut bytes = [0u8; 32];
    // 32 bytes is far below HKDF-SHA256's limit, so expand cannot fail.
    let _ = hk.expand_multi_info(
        &[TRAP_SECRET_LABEL, epoch, &interval.to_be_bytes()],
        &mut bytes,
    );
    let secret = SecretKey::from_bytes_mod_order(&bytes);
    bytes.fill(0);
    secret
}

impl TrapKey {
    /// Derives slot `slot`'s trap key of `interval` from the trap point `Z`.
    pub fn from_point(
        z: &[u8; 32],
        group_id: &[u8; 16],
        session_id: &[u8; 16],
        interval: u32,
        slot: u16,
    ) -> Self {
        let hk = Hkdf::<Sha256>::new(Some(session_id), z);
        let mut key = [0u8; 32];
        // 32 bytes is far below HKDF-SHA256's limit, so expand cannot fail.
        let _ = hk.expand_multi_info(
            &[
                TRAP_KEY_LABEL,
                group_id,
                &interval.to_be_bytes(),
                &slot.to_be_bytes(),
            ],
            &mut key,
        );
        TrapKey(key)
    }

    /// The owner's side: from the 32 pseudonym secret bytes and the interval's announced
    /// trap point `R_I`.
    pub fn owner(
        pseudonym_secret: &[u8; 32],
        trap_public: &[u8; 32],
        group_id: &[u8; 16],
        session_id: &[u8; 16],
        interval: u32,
        slot: u16,
    ) -> Result<Self, KeyError> {
        let secret = crate::crypto::pad_secret(pseudonym_secret).ok_or(KeyError::ZeroSecret)?;
        Self::from_secret(&secret, trap_public, group_id, session_id, interval, slot)
    }

    /// The owner's side from its pseudonym secret scalar (as [`TrapKey::owner`]).
    pub fn from_secret(
        secret: &SecretKey,
        trap_public: &[u8; 32],
        group_id: &[u8; 16],
        session_id: &[u8; 16],
        interval: u32,
        slot: u16,
    ) -> Result<Self, KeyError> {
        let z = crate::ristretto::keys::dh(secret, trap_public)
            .map_err(|_| KeyError::NonContributory)?;
        Ok(Self::from_point(&z, group_id, session_id, interval, slot))
    }

    /// A key kept as bytes.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        TrapKey(bytes)
    }

    /// The key's bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The trap stream of `exchange`, from keystream byte `at`.
    fn stream(&self, exchange: u64, at: usize) -> ChaCha20 {
        let mut nonce = [0u8; 12];
        crate::field::put(&mut nonce, 4, &exchange.to_be_bytes());
        let mut cipher = ChaCha20::new(&self.0.into(), &nonce.into());
        cipher.seek(at as u64);
        cipher
    }

    /// Where the trap byte of block `block` of a `len`-byte cell of `exchange` is (an
    /// offset into the cell); `None` past the cell.
    pub fn trap_of(&self, exchange: u64, len: usize, block: usize) -> Option<usize> {
        let start = block.checked_mul(TRAP_BLOCK).filter(|&s| s < len)?;
        let size = (len - start).min(TRAP_BLOCK);
        let mut byte = [0u8; 1];
        self.stream(exchange, block).apply_keystream(&mut byte);
        Some(start + usize::from(byte[0]) % size)
    }

    /// Whether `bit` of a `len`-byte cell of `exchange` lies in a trap byte.
    pub fn is_trap_bit(&self, exchange: u64, len: usize, bit: u32) -> bool {
        let byte = bit as usize / 8;
        byte < len && self.trap_of(exchange, len, byte / TRAP_BLOCK) == Some(byte)
    }

    /// Draws the trap bytes of a `len`-byte cell of `exchange` once, into `storage` (at
    /// least [`traps_in`]`(len)` bytes): every pass over the cell after reads them there
    /// instead of running the trap stream again. `None` if `storage` is shorter.
    pub fn draw<'a>(
        &self,
        exchange: u64,
        len: usize,
        storage: &'a mut [u8],
    ) -> Option<CellTraps<'a>> {
        let offsets = storage.get_mut(..traps_in(len))?;
        offsets.fill(0);
        self.stream(exchange, 0).apply_keystream(offsets);
        // Every block's offset is a mask but the last one's, which divides when the block
        // is short (the same offsets as `blocks`).
        if let Some(last) = offsets.last_mut() {
            let size = len - (traps_in(len) - 1) * TRAP_BLOCK;
            *last = u8::try_from(usize::from(*last) % size).unwrap_or(0);
        }
        if let Some((_, whole)) = offsets.split_last_mut() {
            whole.iter_mut().for_each(|o| *o &= (TRAP_BLOCK - 1) as u8);
        }
        Some(CellTraps { offsets, len })
    }

    /// Calls `f(start, size, trap)` for every block of a `len`-byte cell of `exchange`, in
    /// order (`rev`: last block first).
    fn blocks(&self, exchange: u64, len: usize, rev: bool, mut f: impl FnMut(usize, usize, usize)) {
        const CHUNK: usize = 64;
        let blocks = traps_in(len);
        let chunks = blocks.div_ceil(CHUNK);
        let mut stream = self.stream(exchange, 0);
        let mut buf = [0u8; CHUNK];
        for i in 0..chunks {
            let c = if rev { chunks - 1 - i } else { i };
            buf.fill(0);
            if rev {
                stream.seek((c * CHUNK) as u64);
            }
            stream.apply_keystream(&mut buf);
            let first = c * CHUNK;
            let n = (blocks - first).min(CHUNK);
            for j in 0..n {
                let j = if rev { n - 1 - j } else { j };
                let start = (first + j) * TRAP_BLOCK;
                let size = (len - start).min(TRAP_BLOCK);
                let r = usize::from(buf.get(j).copied().unwrap_or(0));
                // A whole block's offset is a mask; only the last block divides.
                let offset = if size == TRAP_BLOCK {
                    r & (TRAP_BLOCK - 1)
                } else {
                    r % size
                };
                f(start, size, start + offset);
            }
        }
    }
}

/// The trap bytes of one cell of one exchange, drawn once ([`TrapKey::draw`]): each
/// block's trap offset, in the caller's storage. [`CellTraps::sprung`], the gathers and
/// the scatters do what the free functions of the same names do with the trap key, without
/// running the trap stream again; they are for a cell of the length the traps were drawn
/// for, and do nothing to one of another length.
#[derive(Debug)]
pub struct CellTraps<'a> {
    offsets: &'a [u8],
    len: usize,
}

impl CellTraps<'_> {
    /// Where the trap byte of block `block` is (an offset into the cell); `None` past the
    /// cell.
    pub fn trap_of(&self, block: usize) -> Option<usize> {
        let offset = self.offsets.get(block)?;
        Some(block * TRAP_BLOCK + usize::from(*offset))
    }

    /// [`sprung`] with these traps (`None` for a cell of another length).
    pub fn sprung(&self, cell: &[u8]) -> Option<Sprung> {
        (cell.len() == self.len).then(|| sprung_in(cell, self))?
    }

    /// [`gather`] with these traps (0, the cell untouched, for one of another length).
    pub fn gather(&self, cell: &mut [u8]) -> usize {
        if cell.len() != self.len {
            return 0;
        }
        gather_in(cell, self)
    }

    /// [`gather_clean`] with these traps (0, the cell untouched, for one of another
    /// length).
    pub fn gather_clean(&self, cell: &mut [u8]) -> usize {
        if cell.len() != self.len {
            return 0;
        }
        gather_clean_in(cell, self)
    }

    /// [`scatter`] with these traps (nothing for a cell of another length).
    pub fn scatter(&self, cell: &mut [u8]) {
        if cell.len() == self.len {
            scatter_in(cell, self);
        }
    }

    /// [`scatter_clean`] with these traps (nothing for a cell of another length).
    pub fn scatter_clean(&self, cell: &mut [u8]) {
        if cell.len() == self.len {
            scatter_clean_in(cell, self);
        }
    }
}

/// Where a pass over a cell learns its trap bytes: the trap stream, or traps drawn once.
trait Blocks {
    /// Calls `f(start, size, trap)` for every block of a `len`-byte cell, in order (`rev`:
    /// last block first).
    fn each(&self, len: usize, rev: bool, f: impl FnMut(usize, usize, usize));
}

impl Blocks for (&TrapKey, u64) {
    fn each(&self, len: usize, rev: bool, f: impl FnMut(usize, usize, usize)) {
        self.0.blocks(self.1, len, rev, f);
    }
}

impl Blocks for CellTraps<'_> {
    fn each(&self, len: usize, rev: bool, mut f: impl FnMut(usize, usize, usize)) {
        let mut visit = |(k, offset): (usize, &u8)| {
            let start = k * TRAP_BLOCK;
            f(
                start,
                (len - start).min(TRAP_BLOCK),
                start + usize::from(*offset),
            );
        };
        if rev {
            self.offsets.iter().enumerate().rev().for_each(&mut visit);
        } else {
            self.offsets.iter().enumerate().for_each(&mut visit);
        }
    }
}

/// A whole block's 15 sealed bytes (`x`, little-endian, the top byte ignored) spread
/// around a zero at offset `t`: bytes below `t` stay, the rest move up one.
fn spread(x: u128, t: usize) -> u128 {
    let below = (1u128 << (8 * t)) - 1;
    let fifteen = u128::MAX >> 8;
    (x & below) | ((x & fifteen & !below) << 8)
}

/// A whole block (`x`, little-endian) with its byte at offset `t` taken out: the 15 others
/// in order in the low bytes.
fn squeeze(x: u128, t: usize) -> u128 {
    let below = (1u128 << (8 * t)) - 1;
    (x & below) | ((x >> 8) & !below)
}

/// A whole block's 15 sealed bytes as a little-endian number (the top byte zero), read as
/// two overlapping 8-byte words: no copy through memory of a length known only at run time.
fn load15(part: &[u8]) -> u128 {
    let word = |at: usize| {
        part.get(at..at + 8)
            .and_then(|w| <[u8; 8]>::try_from(w).ok())
            .map_or(0, u64::from_le_bytes)
    };
    if part.len() != TRAP_BLOCK - 1 {
        let mut b = [0u8; 16];
        crate::field::put(&mut b, 0, part);
        return u128::from_le_bytes(b);
    }
    u128::from(word(0)) | (u128::from(word(7) >> 8) << 64)
}

/// Reads 16 bytes at `at` (zeros past the end).
fn read16(bytes: &[u8], at: usize) -> u128 {
    let mut b = [0u8; 16];
    if let Some(src) = bytes.get(at..at + 16) {
        b.copy_from_slice(src);
    } else if let Some(src) = bytes.get(at..) {
        crate::field::put(&mut b, 0, src);
    }
    u128::from_le_bytes(b)
}

/// Writes the low `n` bytes of `x` at `at` (as many as fit).
fn write_low(bytes: &mut [u8], at: usize, x: u128, n: usize) {
    let b = x.to_le_bytes();
    if n == 16 {
        if let Some(dst) = bytes.get_mut(at..at + 16) {
            dst.copy_from_slice(&b);
            return;
        }
    }
    let n = n.min(bytes.len().saturating_sub(at));
    crate::field::put(bytes, at, b.get(..n).unwrap_or(&[]));
}

/// Lays a cell of `exchange` out: `sealed` (exactly [`sealed_len`] of the cell's length)
/// in the bytes that are not traps, in order, and 0 in every trap byte. With `sealed`
/// `None`, the same work writes zeros everywhere (a non-owner's cell). `false` (the cell
/// all zeros) if `sealed` has another length.
pub fn lay_out(cell: &mut [u8], sealed: Option<&[u8]>, traps: &TrapKey, exchange: u64) -> bool {
    let len = cell.len();
    if sealed.is_some_and(|s| s.len() != sealed_len(len)) {
        cell.fill(0);
        return false;
    }
    // A non-owner copies from zeros: the same copies, spreads and writes as an owner.
    const ZEROS: [u8; TRAP_BLOCK - 1] = [0; TRAP_BLOCK - 1];
    let mut from = 0;
    traps.blocks(exchange, len, false, |start, size, trap| {
        let part = match sealed {
            Some(s) => s.get(from..from + size - 1).unwrap_or(&[]),
            None => ZEROS.get(..size - 1).unwrap_or(&[]),
        };
        from += size - 1;
        if size == TRAP_BLOCK {
            let x = spread(load15(part), trap - start);
            write_low(cell, start, x, TRAP_BLOCK);
        } else {
            let before = trap - start;
            crate::field::put(cell, start, part.get(..before).unwrap_or(&[]));
            crate::field::put(cell, trap, &[0]);
            crate::field::put(cell, trap + 1, part.get(before..).unwrap_or(&[]));
        }
    });
    true
}

/// A decoded cell's sprung traps: how many trap bytes are not zero, and the first set bit
/// of the first of them (a bit of the cell, least significant first in its byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sprung {
    /// Trap bytes that are not zero.
    pub count: usize,
    /// The first set bit of the first of them.
    pub bit: u32,
}

/// Checks the trap bytes of a decoded cell of `exchange`: `None` if every one is zero.
pub fn sprung(cell: &[u8], traps: &TrapKey, exchange: u64) -> Option<Sprung> {
    sprung_in(cell, &(traps, exchange))
}

fn sprung_in(cell: &[u8], traps: &impl Blocks) -> Option<Sprung> {
    let mut found: Option<Sprung> = None;
    traps.each(cell.len(), false, |_, _, trap| {
        let b = cell.get(trap).copied().unwrap_or(0);
        if b != 0 {
            match &mut found {
                Some(s) => s.count += 1,
                None => {
                    let bit = (trap * 8) as u32 + b.trailing_zeros();
                    found = Some(Sprung { count: 1, bit });
                }
            }
        }
    });
    found
}

/// Gathers the sealed bytes of a decoded cell of `exchange` to its front, in place (the
/// trap bytes go to its end); returns how many there are ([`sealed_len`]). [`scatter`]
/// undoes it exactly.
pub fn gather(cell: &mut [u8], traps: &TrapKey, exchange: u64) -> usize {
    gather_in(cell, &(traps, exchange))
}

fn gather_in(cell: &mut [u8], traps: &impl Blocks) -> usize {
    // Byte by byte, a swap for each sealed byte: the same swaps in reverse order undo it.
    let mut w = 0;
    traps.each(cell.len(), false, |start, size, trap| {
        for i in start..start + size {
            if i != trap {
                cell.swap(w, i);
                w += 1;
            }
        }
    });
    w
}

/// [`gather`] for a cell none of whose trap bytes is sprung (the usual case, checked with
/// [`sprung`] first): the sealed bytes are moved a block's run at a time, and
/// [`scatter_clean`] puts them back with zeros in the traps. On a cell with a sprung trap
/// the trap bytes' values would be lost: use [`gather`] there.
pub fn gather_clean(cell: &mut [u8], traps: &TrapKey, exchange: u64) -> usize {
    gather_clean_in(cell, &(traps, exchange))
}

fn gather_clean_in(cell: &mut [u8], traps: &impl Blocks) -> usize {
    let mut w = 0;
    traps.each(cell.len(), false, |start, size, trap| {
        if size == TRAP_BLOCK {
            // 16 bytes written at `w ≤ start`: the 16th is the next block's to overwrite,
            // and none is a byte of a later block not yet read.
            let x = squeeze(read16(cell, start), trap - start);
            write_low(cell, w, x, TRAP_BLOCK);
            w += TRAP_BLOCK - 1;
            return;
        }
        cell.copy_within(start..trap, w);
        w += trap - start;
        cell.copy_within(trap + 1..start + size, w);
        w += start + size - trap - 1;
    });
    w
}

/// Undoes [`gather_clean`]: the sealed bytes back in place, zeros in the trap bytes.
pub fn scatter_clean(cell: &mut [u8], traps: &TrapKey, exchange: u64) {
    scatter_clean_in(cell, &(traps, exchange));
}

fn scatter_clean_in(cell: &mut [u8], traps: &impl Blocks) {
    let mut w = sealed_len(cell.len());
    traps.each(cell.len(), true, |start, size, trap| {
        if size == TRAP_BLOCK {
            // Last block first: the 16 bytes written at `start ≥ w` hold no byte of an
            // earlier block not yet moved.
            w -= TRAP_BLOCK - 1;
            let x = spread(read16(cell, w), trap - start);
            write_low(cell, start, x, TRAP_BLOCK);
            return;
        }
        let after = start + size - trap - 1;
        w -= after;
        cell.copy_within(w..w + after, trap + 1);
        let before = trap - start;
        w -= before;
        cell.copy_within(w..w + before, start);
        if let Some(t) = cell.get_mut(trap) {
            *t = 0;
        }
    });
}

/// Undoes [`gather`]: the cell is byte for byte what it was before.
pub fn scatter(cell: &mut [u8], traps: &TrapKey, exchange: u64) {
    scatter_in(cell, &(traps, exchange));
}

fn scatter_in(cell: &mut [u8], traps: &impl Blocks) {
    let mut w = sealed_len(cell.len());
    traps.each(cell.len(), true, |start, size, trap| {
        for i in (start..start + size).rev() {
            if i != trap {
                w -= 1;
                cell.swap(w, i);
            }
        }
    });
}

/// What an owned cell's tag binds besides its bytes (and its length).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotContext {
    /// The group id.
    pub group_id: [u8; 16],
    /// The session id.
    pub session_id: [u8; 16],
    /// The interval's confirmed view (`T_start`).
    pub view: [u8; 32],
    /// The interval.
    pub interval: u32,
    /// The slot.
    pub slot: u16,
    /// Which of the slot's exchanges in the interval (from 0).
    pub ordinal: u64,
}

impl SlotContext {
    /// The associated data of a cell of `len` bytes.
    pub fn aad(&self, len: usize) -> [u8; AAD_LEN] {
        let len = u32::try_from(len).unwrap_or(u32::MAX);
        let mut a = [0u8; AAD_LEN];
        let parts: [&[u8]; 8] = [
            SLOT_LABEL,
            &self.group_id,
            &self.session_id,
            &self.view,
            &self.interval.to_be_bytes(),
            &self.slot.to_be_bytes(),
            &self.ordinal.to_be_bytes(),
            &len.to_be_bytes(),
        ];
        let mut at = 0;
        for p in parts {
            crate::field::put(&mut a, at, p);
            at += p.len();
        }
        a
    }
}

/// The body of an owned cell (where the owner writes `Next` and its records before
/// [`seal`]); `None` if the cell is shorter than [`MIN_SEALED_CELL`].
pub fn body_mut(cell: &mut [u8]) -> Option<&mut [u8]> {
    if cell.len() < MIN_SEALED_CELL {
        return None;
    }
    let end = cell.len() - TAG_LEN;
    cell.get_mut(SLOT_NONCE_LEN..end)
}

/// The body of an opened cell (`Next`, records, zeros); `None` if too short.
pub fn body(cell: &[u8]) -> Option<&[u8]> {
    cell.get(SLOT_NONCE_LEN..cell.len().checked_sub(TAG_LEN)?)
}

/// What a decoded slot cell turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opened {
    /// All zeros: nothing was sent.
    Empty,
    /// Sealed under the slot's key; its body (`Next`, records, zeros) is decrypted in place
    /// at `cell[SLOT_NONCE_LEN..len − TAG_LEN]`.
    Authentic,
    /// Anything else: the exchange was disrupted (or the owner is not who wrote it).
    Disrupted,
}

/// Splits a cell into nonce, body and tag; `None` if it is too short.
fn split(cell: &mut [u8]) -> Option<(&[u8; SLOT_NONCE_LEN], &mut [u8], &mut [u8; TAG_LEN])> {
    if cell.len() < MIN_SEALED_CELL {
        return None;
    }
    let (rest, tag) = cell.split_last_chunk_mut::<TAG_LEN>()?;
    let (nonce, body) = rest.split_first_chunk_mut::<SLOT_NONCE_LEN>()?;
    Some((nonce, body, tag))
}

/// Seals an owned cell whose body ([`body_mut`]) holds the plain `Next` and records: writes
/// `nonce`, encrypts the body in place and writes the tag. `false` (and the cell untouched)
/// if the cell is too short.
pub fn seal(
    cell: &mut [u8],
    ctx: &SlotContext,
    nonce: &[u8; SLOT_NONCE_LEN],
    key: &SlotKey,
) -> bool {
    let aad = ctx.aad(cell.len());
    let Some((_, body, tag)) = split(cell) else {
        return false;
    };
    let aead = XChaCha20Poly1305::new(&key.0.into());
    // Fails only past 256 GiB of body, far above a cell's 64 KiB.
    let Ok(t) = aead.encrypt_in_place_detached(nonce.into(), &aad, body) else {
        return false;
    };
    *tag = t.into();
    if let Some(n) = cell.first_chunk_mut::<SLOT_NONCE_LEN>() {
        *n = *nonce;
    }
    true
}

/// The relay's check of a decoded slot cell: all zeros is [`Opened::Empty`]; a cell sealed
/// under `key` for `ctx` is [`Opened::Authentic`] and its body is decrypted in place;
/// anything else is [`Opened::Disrupted`] (left as it was).
pub fn open(cell: &mut [u8], ctx: &SlotContext, key: &SlotKey) -> Opened {
    if cell.iter().all(|&b| b == 0) {
        return Opened::Empty;
    }
    let aad = ctx.aad(cell.len());
    let Some((nonce, body, tag)) = split(cell) else {
        return Opened::Disrupted;
    };
    let aead = XChaCha20Poly1305::new(&key.0.into());
    // The tag is checked before anything is decrypted: a failure leaves the body as it was.
    match aead.decrypt_in_place_detached(nonce.into(), &aad, body, (&*tag).into()) {
        Ok(()) => Opened::Authentic,
        Err(_) => Opened::Disrupted,
    }
}

#[cfg(test)]
mod tests;
