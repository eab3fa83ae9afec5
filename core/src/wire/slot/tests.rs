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

#[test]
fn fifteen_bytes_load_as_they_lie() {
    let mut rng = ChaCha20Rng::seed_from_u64(15);
    for len in [15, 0, 3, 14, 16] {
        let mut bytes = [0u8; 16];
        let part = &mut bytes[..len];
        rng.fill_bytes(part);
        let mut b = [0u8; 16];
        crate::field::put(&mut b, 0, part);
        assert_eq!(load15(part), u128::from_le_bytes(b), "{len} bytes");
    }
}

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
    assert!(body_mut(&mut [0u8; MIN_SEALED_CELL - 1]).is_none());
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
    assert!(!seal(&mut [0u8; MIN_SEALED_CELL - 1], &CTX, &[0; 24], &key));
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

/// The trap secret of the vectors' relay.
fn trap_secret_of_vectors() -> SecretKey {
    let relay = crate::crypto::pad_secret(&RELAY).unwrap();
    trap_secret(&relay, &[8; 16], &[2; 16], 7).unwrap()
}

fn trap_key() -> TrapKey {
    let announced = trap_secret_of_vectors().public_key().to_bytes();
    TrapKey::owner(&PSEUDONYM, &announced, &[1; 16], &[2; 16], 7, 2).unwrap()
}

/// Pinned in docs/protocol.md ("Trap bytes") and recomputed apart from the Rust code by
/// docs/vectors/pads.py: the relay's trap secret and point of interval 7 (epoch `08×16`),
/// the slot's trap key, the trap bytes of a 128-byte cell of exchange 300, and the
/// sealed cell above laid out around them.
#[test]
fn trap_vectors_and_layout() {
    let r = trap_secret_of_vectors();
    assert_eq!(
        hex(&r.to_bytes()),
        "bc0a79d7df9357d1a82f8023016c5f055c6df6347881927d407e732e30280f0e"
    );
    assert_eq!(
        hex(&r.public_key().to_bytes()),
        "6c6ac57d4e5b57d73df083efe5beedb4f2d40204ee4b8e4705130360b5f6ca22"
    );
    // The relay's side gives the owner's key.
    let public = crate::crypto::pad_public_key(&PSEUDONYM);
    let z = crate::ristretto::keys::dh(&r, &public).unwrap();
    assert_eq!(
        hex(&z),
        "b6a4afa7b06a38b2dc55f9713cdc6ac9a49075f91f724dc585376f5c70969016"
    );
    assert_eq!(
        TrapKey::from_point(&z, &[1; 16], &[2; 16], 7, 2),
        trap_key()
    );
    assert_eq!(
        hex(trap_key().as_bytes()),
        "25a9a17239aa35a56c4742dfb1e36eb0831e0a7940389f81e9d9ce7944a3dca0"
    );
    let traps: std::vec::Vec<usize> = (0..8)
        .map(|k| trap_key().trap_of(300, 128, k).unwrap())
        .collect();
    assert_eq!(
        std::format!("{traps:?}"),
        "[6, 17, 33, 59, 72, 86, 105, 117]"
    );
    assert_eq!(trap_key().trap_of(300, 128, 8), None);
    // An owned 128-byte cell: the record above sealed into 120 bytes, laid out.
    let mut sealed = [0u8; 120];
    let mut w = CellWriter::new(body_mut(&mut sealed).unwrap());
    w.push_data(ConnId(0x0003_0001), true, b"hi").unwrap();
    w.finish(300);
    assert!(seal(&mut sealed, &CTX, &[0x5A; SLOT_NONCE_LEN], &key()));
    let mut cell = [0xFFu8; 128];
    assert!(lay_out(&mut cell, Some(&sealed), &trap_key(), 300));
    assert_eq!(
        hex(&cell[..32]),
        "5a5a5a5a5a5a005a5a5a5a5a5a5a5a5a5a005a5a5a5a5a5a5a5aa1775100e0e5"
    );
    assert_eq!(
        hex(&cell[96..]),
        "02be9b1d1ac001265800c39ea1d7da96a690e99f4b00eb9d8ebfd764b6802d70"
    );
    let mut opened = cell;
    assert_eq!(gather(&mut opened, &trap_key(), 300), 120);
    assert_eq!(open(&mut opened[..120], &CTX, &key()), Opened::Authentic);
    for (k, &t) in traps.iter().enumerate() {
        assert_eq!(cell[t], 0, "block {k}");
        assert!(trap_key().is_trap_bit(300, 128, (t * 8) as u32 + 7));
    }
}

#[test]
fn traps_lay_out_gather_and_scatter_back_at_every_length() {
    let key = trap_key();
    let mut rng = ChaCha20Rng::from_seed([0x7A; 32]);
    for len in (1..=300).chain([1023, 1024, 1025, 16 * 1024, 65_535]) {
        for exchange in [0u64, 1, 300, u64::MAX] {
            let mut sealed = std::vec![0u8; sealed_len(len)];
            rng.fill_bytes(&mut sealed);
            let mut cell = std::vec![0xAAu8; len];
            assert!(lay_out(&mut cell, Some(&sealed), &key, exchange));
            // Exactly one trap byte per block, zero, and the rest is the sealed cell.
            let traps: std::vec::Vec<usize> = (0..traps_in(len))
                .map(|k| key.trap_of(exchange, len, k).unwrap())
                .collect();
            for (k, &t) in traps.iter().enumerate() {
                assert!(t >= k * TRAP_BLOCK && t < ((k + 1) * TRAP_BLOCK).min(len));
                assert_eq!(cell[t], 0);
            }
            let bits = (0..len * 8).filter(|&b| key.is_trap_bit(exchange, len, b as u32));
            assert_eq!(bits.count(), 8 * traps_in(len), "len {len}");
            assert_eq!(sprung(&cell, &key, exchange), None, "len {len}");
            let decoded = cell.clone();
            assert_eq!(gather(&mut cell, &key, exchange), sealed.len());
            assert_eq!(cell[..sealed.len()], sealed[..], "len {len}");
            scatter(&mut cell, &key, exchange);
            assert_eq!(cell, decoded, "len {len}: scattered back exactly");
            assert_eq!(gather_clean(&mut cell, &key, exchange), sealed.len());
            assert_eq!(cell[..sealed.len()], sealed[..], "len {len}");
            scatter_clean(&mut cell, &key, exchange);
            assert_eq!(cell, decoded, "len {len}: scattered back exactly");
            // A non-owner's cell: zeros, with the same work.
            let mut zeros = std::vec![0x55u8; len];
            assert!(lay_out(&mut zeros, None, &key, exchange));
            assert!(zeros.iter().all(|&b| b == 0));
            // A sealed cell of another length is refused.
            if len > 1 {
                assert!(!lay_out(&mut zeros, Some(&sealed[1..]), &key, exchange));
            }
        }
    }
    // Another exchange, slot or interval: other traps (over a long cell, surely).
    let len = 4096;
    let other = [
        (
            TrapKey::owner(
                &PSEUDONYM,
                &trap_secret_of_vectors().public_key().to_bytes(),
                &[1; 16],
                &[2; 16],
                7,
                3,
            )
            .unwrap(),
            300,
        ),
        (
            TrapKey::owner(
                &PSEUDONYM,
                &trap_secret_of_vectors().public_key().to_bytes(),
                &[1; 16],
                &[2; 16],
                8,
                2,
            )
            .unwrap(),
            300,
        ),
        (key.clone(), 301),
    ];
    for (k, e) in other {
        let same = (0..traps_in(len))
            .filter(|&b| k.trap_of(e, len, b) == key.trap_of(300, len, b))
            .count();
        assert!(same < traps_in(len) / 8, "{same} of {}", traps_in(len));
    }
}

#[test]
fn a_changed_trap_byte_springs_and_the_first_set_bit_is_named() {
    let key = trap_key();
    let sealed = sealed();
    let mut cell = [0u8; 128];
    assert!(lay_out(
        &mut cell,
        Some(&sealed[..sealed_len(128)]),
        &key,
        300
    ));
    for k in 0..traps_in(128) {
        let t = key.trap_of(300, 128, k).unwrap();
        for v in 1..=255u8 {
            let mut c = cell;
            c[t] = v;
            let s = sprung(&c, &key, 300).unwrap();
            assert_eq!(s.count, 1);
            assert_eq!(s.bit, (t * 8) as u32 + v.trailing_zeros());
            assert!(key.is_trap_bit(300, 128, s.bit));
        }
    }
    // Every byte garbled: every trap sprung but one in 256.
    let mut c = cell;
    let mut rng = ChaCha20Rng::from_seed([3; 32]);
    rng.fill_bytes(&mut c);
    let s = sprung(&c, &key, 300).unwrap();
    assert!(s.count >= 6, "{s:?}");
}

#[test]
fn traps_drawn_once_are_the_stream_s_and_every_pass_with_them_agrees() {
    let key = trap_key();
    let mut rng = ChaCha20Rng::from_seed([0x3C; 32]);
    let mut storage = std::vec![0xEEu8; traps_in(65_535)];
    for len in (1..=300).chain([1023, 1024, 1025, 16 * 1024, 65_535]) {
        for exchange in [0u64, 300, u64::MAX] {
            let drawn = key.draw(exchange, len, &mut storage).unwrap();
            for k in 0..=traps_in(len) {
                assert_eq!(drawn.trap_of(k), key.trap_of(exchange, len, k), "len {len}");
            }
            let mut sealed = std::vec![0u8; sealed_len(len)];
            rng.fill_bytes(&mut sealed);
            let mut cell = std::vec![0u8; len];
            assert!(lay_out(&mut cell, Some(&sealed), &key, exchange));
            // A clean cell, and one with a trap byte or two changed.
            let mut garbled = cell.clone();
            rng.fill_bytes(&mut garbled[len / 2..]);
            for decoded in [cell, garbled] {
                assert_eq!(
                    drawn.sprung(&decoded),
                    sprung(&decoded, &key, exchange),
                    "len {len}"
                );
                let (mut a, mut b) = (decoded.clone(), decoded.clone());
                assert_eq!(drawn.gather(&mut a), gather(&mut b, &key, exchange));
                assert_eq!(a, b, "len {len}");
                drawn.scatter(&mut a);
                assert_eq!(a, decoded, "len {len}: scattered back exactly");
                if drawn.sprung(&decoded).is_none() {
                    b.copy_from_slice(&decoded);
                    let n = drawn.gather_clean(&mut a);
                    assert_eq!(n, gather_clean(&mut b, &key, exchange));
                    assert_eq!(a[..n], b[..n], "len {len}");
                    drawn.scatter_clean(&mut a);
                    assert_eq!(a, decoded, "len {len}: scattered back exactly");
                }
            }
            // A cell of another length is left alone.
            let mut other = std::vec![7u8; len + 1];
            assert_eq!(drawn.gather(&mut other), 0);
            assert_eq!(drawn.gather_clean(&mut other), 0);
            drawn.scatter(&mut other);
            drawn.scatter_clean(&mut other);
            assert!(other.iter().all(|&b| b == 7));
            assert_eq!(drawn.sprung(&other), None);
        }
    }
    // Storage too short for the cell's traps: nothing is drawn.
    assert!(key.draw(0, 65_535, &mut storage[1..]).is_none());
}
