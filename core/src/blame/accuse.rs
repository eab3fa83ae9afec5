//! The owner's side of an accusation: the choice of the accused bit, and the proof of the
//! `Accuse` record ([`crate::wire::Accusation`]: exchange, bit, and the owner's pseudonym
//! proof over [`crate::pseudonym::accusation_context`], which binds group, session, the
//! interval's view, the interval, the slot, the exchange and the bit). The slot is the
//! record's own (its Conn# names it) and the interval the one it is decoded in, so only
//! the slot's owner can accuse about its slot, and only in that interval.
//!
//! Owns the bit choice and the proof's check; it must not know cells' layout (an owner passes
//! the bytes it wrote into the exchange and the decoded cell, whatever they hold).

use crate::pseudonym;
use crate::wire::Accusation;

/// Whether `accusation` (an `Accuse` record decoded from `slot`'s exchange in `interval`)
/// is proven by `pseudonym`, the slot's key.
pub fn verify_accusation(
    accusation: &Accusation,
    interval: u32,
    pseudonym: &[u8; 32],
    group_id: &[u8; 16],
    session_id: &[u8; 16],
    view: &[u8; 32],
    slot: u16,
) -> bool {
    let context = pseudonym::accusation_context(
        group_id,
        session_id,
        view,
        interval,
        slot,
        accusation.exchange,
        accusation.bit,
    );
    pseudonym::verify_accusation(pseudonym, &context, &accusation.proof)
}

/// The owner's accusation of `bit` of `exchange` of `interval`, proven with its pseudonym
/// key.
#[cfg(feature = "pseudonyms")]
#[allow(clippy::too_many_arguments)]
pub fn prove_accusation(
    key: &pseudonym::PseudonymKey,
    group_id: &[u8; 16],
    session_id: &[u8; 16],
    view: &[u8; 32],
    slot: u16,
    interval: u32,
    exchange: u64,
    bit: u32,
    rng: &mut impl rand_core::CryptoRngCore,
) -> Accusation {
    let context =
        pseudonym::accusation_context(group_id, session_id, view, interval, slot, exchange, bit);
    Accusation {
        exchange,
        bit,
        proof: key.prove_accusation(&context, rng),
    }
}

/// A bit where `written` (what the owner wrote into the exchange, before pads) has 0 and
/// `decoded` (the cell the relay decoded) has 1, searching from bit `start` onwards and
/// wrapping around; `None` if there is none (then the owner accuses nothing this time).
/// Never a bit where the owner wrote 1: revealing the pads there would expose it.
pub fn pick_bit(written: &[u8], decoded: &[u8], start: u32) -> Option<u32> {
    let len = written.len().min(decoded.len());
    if len == 0 {
        return None;
    }
    let first = (start as usize / 8) % len;
    (0..=len).find_map(|k| {
        let i = (first + k) % len;
        let w = written.get(i).copied().unwrap_or(0xff);
        let d = decoded.get(i).copied().unwrap_or(0);
        let mut candidates = !w & d;
        if k == 0 {
            // The first byte: bits from `start` on (the rest comes last, at k == len).
            candidates &= 0xffu8 << (start % 8);
        } else if k == len {
            candidates &= !(0xffu8 << (start % 8));
        }
        (candidates != 0).then(|| (i * 8) as u32 + candidates.trailing_zeros())
    })
}

/// A bit where `decoded` has 1, from bit `start` onwards and wrapping around: the choice
/// of an owner that wrote nothing (zeros) in the exchange. `None` if there is none.
pub fn pick_set_bit(decoded: &[u8], start: u32) -> Option<u32> {
    let len = decoded.len();
    if len == 0 {
        return None;
    }
    let first = (start as usize / 8) % len;
    (0..=len).find_map(|k| {
        let i = (first + k) % len;
        let mut candidates = decoded.get(i).copied().unwrap_or(0);
        if k == 0 {
            candidates &= 0xffu8 << (start % 8);
        } else if k == len {
            candidates &= !(0xffu8 << (start % 8));
        }
        (candidates != 0).then(|| (i * 8) as u32 + candidates.trailing_zeros())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_only_bits_written_zero_and_decoded_one() {
        let written = [0b1111_0000u8, 0xff, 0x00];
        let decoded = [0b1111_1000u8, 0xff, 0x00];
        assert_eq!(pick_bit(&written, &decoded, 0), Some(3));
        assert_eq!(pick_bit(&written, &decoded, 4), Some(3), "wraps around");
        // Only 1 → 0 flips and bits written 1: nothing to accuse.
        assert_eq!(pick_bit(&[0xff, 0x0f], &[0x00, 0x0f], 0), None);
        assert_eq!(pick_bit(&[], &[], 0), None);
        // Written all zeros: the same as any bit decoded 1.
        for start in 0..40 {
            let decoded = [0x00, 0x30, 0x00, 0x81];
            assert_eq!(
                pick_set_bit(&decoded, start),
                pick_bit(&[0; 4], &decoded, start)
            );
        }
        assert_eq!(pick_set_bit(&[0; 4], 3), None);
        // Every choice, from every start, is a 0 written and a 1 decoded.
        let written = [0x5a, 0x33, 0x0f, 0x81];
        let decoded = [0xa5, 0x3c, 0xf0, 0x18];
        for start in 0..40 {
            let b = pick_bit(&written, &decoded, start).unwrap();
            let (i, m) = ((b / 8) as usize, 1u8 << (b % 8));
            assert_eq!(written[i] & m, 0);
            assert_ne!(decoded[i] & m, 0);
        }
    }
}
