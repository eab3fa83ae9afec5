//! The layout of an owned data cell: its body encrypted and authenticated under a key only
//! the slot's owner and the relay can compute.
//!
//! ```text
//! Cell    = nonce (24) | XChaCha20-Poly1305(k_s, nonce, AAD).encrypt(Body) | tag (16)
//! Body    = Next (u16 BE) | Record* | zero padding        (len − 40 bytes)
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
//! The ciphertext is also the whitening: every bit of an owned cell is unpredictable to
//! anyone but its owner and the relay, so a disruptor cannot flip only the bits it knows to
//! be 1. The tag proves to the relay that the owner (or the relay itself) wrote the cell;
//! it proves nothing to anyone else (docs/security.md).
//!
//! Owns the layout, the slot key's derivation and the AEAD's context; the AEAD is the
//! `chacha20poly1305` crate's. It must not know who owns a slot.

use chacha20poly1305::aead::AeadInPlace;
use chacha20poly1305::{KeyInit, XChaCha20Poly1305};
use hkdf::Hkdf;
use sha2::Sha256;

use super::NEXT_LEN;
use crate::crypto::KeyError;
use crate::ristretto::keys::SecretKey;

const SLOT_LABEL: &[u8] = b"dissent-rs v3 slot";
const SLOT_KEY_LABEL: &[u8] = b"dissent-rs v3 slot key";

/// Bytes of an owned cell's nonce.
pub const SLOT_NONCE_LEN: usize = 24;
/// Bytes of an owned cell's tag.
pub const TAG_LEN: usize = 16;
/// Bytes an owned cell spends on its nonce and tag.
pub const SLOT_OVERHEAD: usize = SLOT_NONCE_LEN + TAG_LEN;
/// The shortest cell an owner can write something in (its nonce, `Next` and tag).
pub const MIN_OWNED_CELL: usize = SLOT_OVERHEAD + NEXT_LEN;
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
/// [`seal`]); `None` if the cell is shorter than [`MIN_OWNED_CELL`].
pub fn body_mut(cell: &mut [u8]) -> Option<&mut [u8]> {
    if cell.len() < MIN_OWNED_CELL {
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
    if cell.len() < MIN_OWNED_CELL {
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
mod tests {
    use super::*;
    use crate::wire::{CellView, CellWriter, ConnId};
    use rand_chacha::rand_core::{RngCore, SeedableRng};
    use rand_chacha::ChaCha20Rng;

    const CTX: SlotContext = SlotContext {
        group_id: [1; 16],
        session_id: [2; 16],
        view: [3; 32],
        interval: 7,
        slot: 2,
        ordinal: 5,
    };

    /// The pseudonym secret and the relay's DH secret of the vectors.
    const PSEUDONYM: [u8; 32] = [9; 32];
    const RELAY: [u8; 32] = [11; 32];

    fn hex(b: &[u8]) -> std::string::String {
        b.iter().map(|x| std::format!("{x:02x}")).collect()
    }

    fn key() -> SlotKey {
        let relay_public = crate::crypto::pad_public_key(&RELAY);
        SlotKey::owner(&PSEUDONYM, &relay_public, &[1; 16], &[2; 16], 2).unwrap()
    }

    /// A 128-byte cell: `Next` 300 and an `Open` of Conn# 0x00030001 with "hi", sealed
    /// with nonce `5A×24` (docs/protocol.md, "Owned cells").
    fn sealed() -> [u8; 128] {
        let mut cell = [0u8; 128];
        let mut w = CellWriter::new(body_mut(&mut cell).unwrap());
        w.push_data(ConnId(0x0003_0001), true, b"hi").unwrap();
        w.finish(300);
        assert!(seal(&mut cell, &CTX, &[0x5A; SLOT_NONCE_LEN], &key()));
        cell
    }

    #[test]
    fn owner_and_relay_derive_the_same_key() {
        let relay = crate::crypto::pad_secret(&RELAY).unwrap();
        let public = crate::crypto::pad_public_key(&PSEUDONYM);
        let by_relay = SlotKey::relay(&relay, &public, &[1; 16], &[2; 16], 2).unwrap();
        assert_eq!(by_relay, key());
        // Another slot, group or session: another key.
        for (g, s, slot) in [
            ([1; 16], [2; 16], 3),
            ([4; 16], [2; 16], 2),
            ([1; 16], [4; 16], 2),
        ] {
            assert_ne!(
                SlotKey::relay(&relay, &public, &g, &s, slot).unwrap(),
                by_relay
            );
        }
        // No key with the identity or a zero secret.
        assert_eq!(
            SlotKey::relay(&relay, &[0; 32], &[1; 16], &[2; 16], 2),
            Err(KeyError::NonContributory)
        );
        assert_eq!(
            SlotKey::owner(&[0; 32], &public, &[1; 16], &[2; 16], 2),
            Err(KeyError::ZeroSecret)
        );
    }

    /// schnorrkel's key of a pseudonym secret (scalar `x`, public `x·G`) is the point the
    /// relay derives the slot key from: a device client without schnorrkel and a host
    /// client with it seal under the same key.
    #[cfg(feature = "pseudonyms")]
    #[test]
    fn schnorrkel_public_key_gives_the_same_slot_key() {
        let relay = crate::crypto::pad_secret(&RELAY).unwrap();
        let sr = crate::pseudonym::PseudonymKey::from_secret(&PSEUDONYM).unwrap();
        let by_relay = SlotKey::relay(&relay, &sr.public(), &[1; 16], &[2; 16], 2).unwrap();
        assert_eq!(by_relay, key());
    }

    /// Pinned in docs/protocol.md ("Owned cells") and recomputed apart from the Rust code
    /// by docs/vectors/pads.py (Python's `cryptography`, HChaCha20 written there).
    #[test]
    fn sealed_cell_vector_and_round_trip() {
        assert_eq!(
            hex(&crate::crypto::pad_public_key(&PSEUDONYM)),
            "b8f7a9200f12593e41717e64156d8a81b78972345a3258c928c6ae4029d1307f"
        );
        assert_eq!(
            hex(&crate::crypto::pad_public_key(&RELAY)),
            "46cd03dd0f8b789d0265f6ff367f12c30bccbd0e3626f01096902816390f9e1f"
        );
        assert_eq!(
            hex(key().as_bytes()),
            "4763eaa8d73baaa850fd570bb0b491fbd4093ac011c1dd853b527f9db4d04349"
        );
        let mut cell = sealed();
        assert_eq!(cell[..24], [0x5A; 24]);
        assert_eq!(hex(&cell[24..40]), "a1775100e0e5b041f735561c0a8d6402");
        assert_eq!(hex(&cell[112..]), "6d86a31cef9e85a73803e4a456b19143");
        assert_eq!(open(&mut cell, &CTX, &key()), Opened::Authentic);
        let v = CellView::parse(body(&cell).unwrap()).unwrap();
        assert_eq!(v.next(), 300);
        assert_eq!(v.records().count(), 1);
        assert!(body_mut(&mut [0u8; MIN_OWNED_CELL - 1]).is_none());
        assert_eq!(
            body_mut(&mut [0u8; 100]).unwrap().len(),
            100 - SLOT_OVERHEAD
        );
    }

    #[test]
    fn every_change_is_disrupted() {
        let key = key();
        let cell = sealed();
        // Every single bit flip, anywhere in the cell.
        for bit in 0..cell.len() * 8 {
            let mut c = cell;
            c[bit / 8] ^= 1 << (bit % 8);
            assert_eq!(open(&mut c, &CTX, &key), Opened::Disrupted, "bit {bit}");
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
            assert_eq!(open(&mut c, &ctx, &key), Opened::Disrupted);
        }
        // Another slot's key.
        let relay_public = crate::crypto::pad_public_key(&RELAY);
        let other = SlotKey::owner(&[10; 32], &relay_public, &[1; 16], &[2; 16], 2).unwrap();
        let mut c = cell;
        assert_eq!(open(&mut c, &CTX, &other), Opened::Disrupted);
        // Cut short or grown: the length is authenticated.
        let mut short = [0u8; 127];
        short.copy_from_slice(&cell[..127]);
        assert_eq!(open(&mut short, &CTX, &key), Opened::Disrupted);
        let mut long = [0u8; 129];
        long[..128].copy_from_slice(&cell);
        assert_eq!(open(&mut long, &CTX, &key), Opened::Disrupted);
        // All zeros is nothing, at any length; too short to seal is disrupted.
        assert_eq!(open(&mut [0u8; 128], &CTX, &key), Opened::Empty);
        assert_eq!(open(&mut [1u8; 16], &CTX, &key), Opened::Disrupted);
        assert!(!seal(&mut [0u8; MIN_OWNED_CELL - 1], &CTX, &[0; 24], &key));
    }

    /// Nobody but the owner (and the relay) writes in its slot: a seeded search over the
    /// XOR patterns a disruptor could add to the slot's cell (sparse and dense masks,
    /// bursts, only the nonce, body or tag, and the difference to the owner's own cells of
    /// other exchanges, whose bytes the relay publishes) never yields a cell the relay
    /// takes.
    #[test]
    fn no_xor_pattern_makes_another_writer_the_owner() {
        let key = key();
        let cell = sealed();
        let len = cell.len();
        // The owner's cells of other exchanges, with the same records and nonce.
        let mut replays = std::vec::Vec::new();
        for ordinal in [0, 4, 6, 7] {
            let mut other = [0u8; 128];
            let mut w = CellWriter::new(body_mut(&mut other).unwrap());
            w.push_data(ConnId(0x0003_0001), true, b"hi").unwrap();
            w.finish(300);
            let ctx = SlotContext { ordinal, ..CTX };
            assert!(seal(&mut other, &ctx, &[0x5A; SLOT_NONCE_LEN], &key));
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
                // Only the nonce, only the body, only the tag.
                3 => rng.fill_bytes(&mut pattern[..SLOT_NONCE_LEN]),
                4 => rng.fill_bytes(&mut pattern[SLOT_NONCE_LEN..len - TAG_LEN]),
                _ => rng.fill_bytes(&mut pattern[len - TAG_LEN..]),
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
                open(&mut c, &CTX, &key),
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
            assert_eq!(open(&mut c, &CTX, &key), Opened::Disrupted);
            tried += 1;
        }
        assert!(tried > 1900, "{tried} patterns tried");
    }
}
