//! The layout of an owned data cell: its body whitened with a fresh seed, then the owner's
//! pseudonym signature over everything before it.
//!
//! ```text
//! Cell    = seed (16) | ChaCha20(key = SHA-256("dissent-rs v3 whiten" | seed), nonce 0,
//!                                counter 0) ⊕ Body | signature (64)
//! Body    = Next (u16 BE) | Record* | zero padding        (len − 80 bytes)
//! digest  = SHA-256("dissent-rs v3 slot" | group_id (16) | session_id (16) | view (32)
//!                   | interval (u32 BE) | slot (u16 BE) | ordinal (u64 BE) | len (u32 BE)
//!                   | the cell's first len − 64 bytes)
//! signature = sr25519 by the slot's pseudonym key, context "dissent-rs v3 slot", over digest
//! ```
//!
//! `view` is the interval's `T_start` (the view every trustee confirmed), and `ordinal`
//! counts the exchanges of `slot` in the interval from 0: an owner prepares (and signs) its
//! next cell before the relay issues that exchange, so it knows which of its slot's
//! exchanges the cell is for but not the exchange's number; the ordinal names that exchange
//! just as uniquely, and the relay counts it too. A cell of all zeros is "nothing" and is
//! never signed.
//!
//! Whitening makes every bit of an owned cell unpredictable to anyone but its owner, so a
//! disruptor cannot flip only the bits it knows to be 1: each bit it flips is a 0 → 1 flip
//! with probability 1/2, which the owner can accuse.
//!
//! Owns the layout and the signed digest; the signature scheme is `crate::pseudonym`'s.
//! It must not know who owns a slot.

use chacha20::cipher::{KeyIvInit, StreamCipher};
use chacha20::ChaCha20;
use sha2::{Digest, Sha256};

use super::NEXT_LEN;

const WHITEN_LABEL: &[u8] = b"dissent-rs v3 whiten";
const SLOT_LABEL: &[u8] = b"dissent-rs v3 slot";

/// Bytes of an owned cell's whitening seed.
pub const SEED_LEN: usize = 16;
/// Bytes of an owned cell's pseudonym signature.
pub const SIGNATURE_LEN: usize = 64;
/// Bytes an owned cell spends on its seed and signature.
pub const SLOT_OVERHEAD: usize = SEED_LEN + SIGNATURE_LEN;
/// The shortest cell an owner can write something in (its seed, `Next` and signature).
pub const MIN_OWNED_CELL: usize = SLOT_OVERHEAD + NEXT_LEN;

/// What an owned cell's signature binds besides its bytes (and its length).
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
    /// The digest a pseudonym signs for a cell whose first bytes (all but the signature)
    /// are `signed`.
    pub fn digest(&self, signed: &[u8]) -> [u8; 32] {
        let len = u32::try_from(signed.len() + SIGNATURE_LEN).unwrap_or(u32::MAX);
        let mut h = Sha256::new();
        h.update(SLOT_LABEL);
        h.update(self.group_id);
        h.update(self.session_id);
        h.update(self.view);
        h.update(self.interval.to_be_bytes());
        h.update(self.slot.to_be_bytes());
        h.update(self.ordinal.to_be_bytes());
        h.update(len.to_be_bytes());
        h.update(signed);
        h.finalize().into()
    }
}

/// XORs the whitening keystream of `seed` into `body` (whitens a plain body, un-whitens a
/// whitened one).
pub fn whiten(seed: &[u8; SEED_LEN], body: &mut [u8]) {
    let key: [u8; 32] = Sha256::new()
        .chain_update(WHITEN_LABEL)
        .chain_update(seed)
        .finalize()
        .into();
    let mut cell = ChaCha20::new(&key.into(), &[0u8; 12].into());
    // A cell is at most 64 KiB, far below one nonce's keystream.
    cell.apply_keystream(body);
}

/// The body of an owned cell (where the owner writes `Next` and its records before
/// [`seal`]); `None` if the cell is shorter than [`MIN_OWNED_CELL`].
pub fn body_mut(cell: &mut [u8]) -> Option<&mut [u8]> {
    if cell.len() < MIN_OWNED_CELL {
        return None;
    }
    let end = cell.len() - SIGNATURE_LEN;
    cell.get_mut(SEED_LEN..end)
}

/// What a decoded slot cell turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opened {
    /// All zeros: nothing was sent.
    Empty,
    /// Signed by the slot's key; its body (`Next`, records, zeros) is un-whitened in place
    /// at `cell[SEED_LEN..len − SIGNATURE_LEN]`.
    Signed,
    /// Anything else: the exchange was disrupted (or the owner is not who wrote it).
    Disrupted,
}

#[cfg(feature = "pseudonyms")]
pub use signed::{open, seal};

#[cfg(feature = "pseudonyms")]
mod signed {
    use rand_core::CryptoRngCore;

    use super::{whiten, Opened, SlotContext, MIN_OWNED_CELL, SEED_LEN, SIGNATURE_LEN};
    use crate::pseudonym::{verify, PseudonymKey, PseudonymPublic};

    /// Seals an owned cell whose body ([`super::body_mut`]) holds the plain `Next` and
    /// records: writes `seed`, whitens the body and signs. `false` (and the cell untouched)
    /// if the cell is too short.
    pub fn seal(
        cell: &mut [u8],
        ctx: &SlotContext,
        seed: &[u8; SEED_LEN],
        key: &PseudonymKey,
        rng: &mut impl CryptoRngCore,
    ) -> bool {
        if cell.len() < MIN_OWNED_CELL {
            return false;
        }
        let Some((signed, signature)) = cell.split_last_chunk_mut::<SIGNATURE_LEN>() else {
            return false;
        };
        let Some((s, body)) = signed.split_first_chunk_mut::<SEED_LEN>() else {
            return false;
        };
        *s = *seed;
        whiten(seed, body);
        *signature = key.sign(&ctx.digest(signed), rng);
        true
    }

    /// The relay's check of a decoded slot cell: all zeros is [`Opened::Empty`]; a cell
    /// signed by `public` for `ctx` is [`Opened::Signed`] and its body is un-whitened in
    /// place; anything else is [`Opened::Disrupted`] (left as it was).
    pub fn open(cell: &mut [u8], ctx: &SlotContext, public: &PseudonymPublic) -> Opened {
        if cell.iter().all(|&b| b == 0) {
            return Opened::Empty;
        }
        if cell.len() < MIN_OWNED_CELL {
            return Opened::Disrupted;
        }
        let Some((signed, signature)) = cell.split_last_chunk_mut::<SIGNATURE_LEN>() else {
            return Opened::Disrupted;
        };
        if !verify(public, &ctx.digest(signed), signature) {
            return Opened::Disrupted;
        }
        let Some((seed, body)) = signed.split_first_chunk_mut::<SEED_LEN>() else {
            return Opened::Disrupted;
        };
        whiten(seed, body);
        Opened::Signed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whitening_is_its_own_inverse_and_depends_on_the_seed() {
        let mut body = *b"body and more";
        whiten(&[7; SEED_LEN], &mut body);
        assert_ne!(&body, b"body and more");
        whiten(&[7; SEED_LEN], &mut body);
        assert_eq!(&body, b"body and more");
        let mut a = [0u8; 20];
        let mut b = [0u8; 20];
        whiten(&[1; SEED_LEN], &mut a);
        whiten(&[2; SEED_LEN], &mut b);
        assert_ne!(a, b);
        assert!(body_mut(&mut [0u8; MIN_OWNED_CELL - 1]).is_none());
        assert_eq!(
            body_mut(&mut [0u8; 100]).unwrap().len(),
            100 - SLOT_OVERHEAD
        );
    }

    /// Pinned in docs/protocol.md ("Owned cells") and computed by docs/vectors/pads.py.
    #[test]
    fn whitening_and_digest_vectors() {
        let mut body = [0u8; 8];
        whiten(&[0x5A; SEED_LEN], &mut body);
        assert_eq!(hex(&body), "5d20d588dafb2588");
        assert_eq!(
            hex(&CTX.digest(b"signed bytes")),
            "8e2808d9a99e633ada812219524fd97f1084099f2bbf8d502918d44b7c18d74e"
        );
    }

    const CTX: SlotContext = SlotContext {
        group_id: [1; 16],
        session_id: [2; 16],
        view: [3; 32],
        interval: 7,
        slot: 2,
        ordinal: 5,
    };

    fn hex(b: &[u8]) -> std::string::String {
        b.iter().map(|x| std::format!("{x:02x}")).collect()
    }

    #[cfg(feature = "pseudonyms")]
    mod signed {
        use super::super::*;
        use super::{hex, CTX};
        use crate::pseudonym::PseudonymKey;
        use crate::wire::{CellView, CellWriter, ConnId};
        use rand_chacha::rand_core::SeedableRng;
        use rand_chacha::ChaCha20Rng;

        fn key() -> (PseudonymKey, schnorrkel::PublicKey) {
            let key = PseudonymKey::from_secret(&[9; 32]).unwrap();
            let public = schnorrkel::PublicKey::from_bytes(&key.public()).unwrap();
            (key, public)
        }

        /// A 128-byte cell: `Next` 300 and an `Open` of Conn# 0x00030001 with "hi", sealed
        /// with seed `5A×16` (docs/protocol.md, "Owned cells").
        fn sealed() -> [u8; 128] {
            let (key, _) = key();
            let mut cell = [0u8; 128];
            let mut w = CellWriter::new(body_mut(&mut cell).unwrap());
            w.push_data(ConnId(0x0003_0001), true, b"hi").unwrap();
            w.finish(300);
            let mut rng = ChaCha20Rng::from_seed([1; 32]);
            assert!(seal(&mut cell, &CTX, &[0x5A; SEED_LEN], &key, &mut rng));
            cell
        }

        #[test]
        fn sealed_cell_vector_and_round_trip() {
            let (_, public) = key();
            let mut cell = sealed();
            assert_eq!(cell[..16], [0x5A; 16]);
            assert_eq!(hex(&cell[16..32]), "5c0cd58bdafa248830e566a1a6d522eb");
            assert_eq!(
                hex(&CTX.digest(&cell[..64])),
                "9037fb47b0cb022154d539b65f66baa7c034f42d54dfc82a3a10b416d9c676eb"
            );
            assert_eq!(open(&mut cell, &CTX, &public), Opened::Signed);
            let v = CellView::parse(&cell[16..64]).unwrap();
            assert_eq!(v.next(), 300);
            assert_eq!(v.records().count(), 1);
        }

        #[test]
        fn every_change_is_disrupted() {
            let (_, public) = key();
            let cell = sealed();
            // Every single bit flip, anywhere in the cell.
            for bit in 0..cell.len() * 8 {
                let mut c = cell;
                c[bit / 8] ^= 1 << (bit % 8);
                assert_eq!(open(&mut c, &CTX, &public), Opened::Disrupted, "bit {bit}");
                c[bit / 8] ^= 1 << (bit % 8);
                assert_eq!(c, cell, "a disrupted cell is left as it was");
            }
            // Another exchange of the slot, slot, interval, view or group: a replay.
            for ctx in [
                SlotContext { ordinal: 6, ..CTX },
                SlotContext { slot: 3, ..CTX },
                SlotContext { interval: 8, ..CTX },
                SlotContext {
                    view: [4; 32],
                    ..CTX
                },
                SlotContext {
                    group_id: [9; 16],
                    ..CTX
                },
                SlotContext {
                    session_id: [9; 16],
                    ..CTX
                },
            ] {
                let mut c = cell;
                assert_eq!(open(&mut c, &ctx, &public), Opened::Disrupted);
            }
            // Another slot's key.
            let other = PseudonymKey::from_secret(&[10; 32]).unwrap();
            let other = schnorrkel::PublicKey::from_bytes(&other.public()).unwrap();
            let mut c = cell;
            assert_eq!(open(&mut c, &CTX, &other), Opened::Disrupted);
            // Cut short or grown: the length is signed.
            let mut short = [0u8; 127];
            short.copy_from_slice(&cell[..127]);
            assert_eq!(open(&mut short, &CTX, &public), Opened::Disrupted);
            let mut long = [0u8; 129];
            long[..128].copy_from_slice(&cell);
            assert_eq!(open(&mut long, &CTX, &public), Opened::Disrupted);
            // All zeros is nothing, at any length; too short to sign is disrupted.
            assert_eq!(open(&mut [0u8; 128], &CTX, &public), Opened::Empty);
            assert_eq!(open(&mut [1u8; 16], &CTX, &public), Opened::Disrupted);
        }

        /// Nobody but the owner writes in its slot: a seeded search over the XOR patterns a
        /// disruptor could add to the slot's cell (sparse and dense masks, bursts, only the
        /// seed, body or signature, and the difference to the owner's own cells of other
        /// exchanges, whose bytes the relay publishes) never yields a cell the relay takes.
        #[test]
        fn no_xor_pattern_makes_another_writer_the_owner() {
            use rand_chacha::rand_core::RngCore;
            let (key, public) = key();
            let cell = sealed();
            let len = cell.len();
            // The owner's cells of other exchanges, with the same records and seed.
            let mut replays = std::vec::Vec::new();
            for ordinal in [0, 4, 6, 7] {
                let mut other = [0u8; 128];
                let mut w = CellWriter::new(body_mut(&mut other).unwrap());
                w.push_data(ConnId(0x0003_0001), true, b"hi").unwrap();
                w.finish(300);
                let mut rng = ChaCha20Rng::from_seed([ordinal as u8; 32]);
                let ctx = SlotContext { ordinal, ..CTX };
                assert!(seal(&mut other, &ctx, &[0x5A; SEED_LEN], &key, &mut rng));
                let mut pattern = [0u8; 128];
                for ((p, a), b) in pattern.iter_mut().zip(other).zip(cell) {
                    *p = a ^ b;
                }
                replays.push(pattern);
            }
            let mut rng = ChaCha20Rng::from_seed([0xD1; 32]);
            let mut tried = 0;
            for round in 0..2000u32 {
                let mut pattern = [0u8; 128];
                match round % 6 {
                    // Sparse: a few random bits.
                    0 => {
                        for _ in 0..1 + rng.next_u32() % 8 {
                            let bit = rng.next_u32() as usize % (len * 8);
                            pattern[bit / 8] ^= 1 << (bit % 8);
                        }
                    }
                    // Dense: every byte random.
                    1 => rng.fill_bytes(&mut pattern),
                    // A burst of random bytes at a random place.
                    2 => {
                        let at = rng.next_u32() as usize % len;
                        let n = 1 + rng.next_u32() as usize % (len - at);
                        rng.fill_bytes(&mut pattern[at..at + n]);
                    }
                    // Only the seed, only the body, only the signature.
                    3 => rng.fill_bytes(&mut pattern[..SEED_LEN]),
                    4 => rng.fill_bytes(&mut pattern[SEED_LEN..len - SIGNATURE_LEN]),
                    _ => rng.fill_bytes(&mut pattern[len - SIGNATURE_LEN..]),
                }
                // Now and then on top of a replay of another exchange.
                if round % 5 == 0 {
                    let replay = &replays[(round as usize / 5) % replays.len()];
                    for (p, r) in pattern.iter_mut().zip(replay) {
                        *p ^= r;
                    }
                }
                if pattern == [0; 128] {
                    continue;
                }
                let mut c = cell;
                for (b, p) in c.iter_mut().zip(pattern) {
                    *b ^= p;
                }
                assert_eq!(
                    open(&mut c, &CTX, &public),
                    Opened::Disrupted,
                    "round {round}, pattern {}",
                    hex(&pattern)
                );
                tried += 1;
            }
            // The replays themselves, alone.
            for replay in &replays {
                let mut c = cell;
                for (b, p) in c.iter_mut().zip(replay) {
                    *b ^= p;
                }
                assert_eq!(open(&mut c, &CTX, &public), Opened::Disrupted);
                tried += 1;
            }
            assert!(tried > 1900, "{tried} patterns tried");
        }
    }
}
