//! The `Accuse` record's payload and the choice of the accused bit.
//!
//! Payload (big-endian): `interval (4) ‖ exchange (8) ‖ bit (4) ‖ proof (64)`, 80 bytes.
//! The proof is the owner's pseudonym proof ([`crate::pseudonym::accusation_context`]:
//! group, session, the interval's view, interval, slot, exchange, bit). The slot is the
//! record's own (its Conn# names it), so only the slot's owner can accuse about its slot.
//!
//! Owns the payload and the bit choice; it must not know cells' layout (an owner passes
//! the bytes it wrote into the exchange and the decoded cell, whatever they hold).

use crate::pseudonym;

/// Bytes of an accusation payload.
pub const ACCUSATION_LEN: usize = 4 + 8 + 4 + 64;

/// An owner's accusation: exchange `exchange` of interval `interval` decoded with bit
/// `bit` set where the owner wrote 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accusation {
    /// The interval.
    pub interval: u32,
    /// The disrupted exchange.
    pub exchange: u64,
    /// The accused bit: byte `bit / 8`, bit `bit % 8` (least significant first).
    pub bit: u32,
    /// The owner's pseudonym proof.
    pub proof: [u8; 64],
}

impl Accusation {
    /// The payload bytes.
    pub fn encode(&self) -> [u8; ACCUSATION_LEN] {
        let mut out = [0u8; ACCUSATION_LEN];
        let parts: [&[u8]; 4] = [
            &self.interval.to_be_bytes(),
            &self.exchange.to_be_bytes(),
            &self.bit.to_be_bytes(),
            &self.proof,
        ];
        let mut at = 0;
        for p in parts {
            crate::field::put(&mut out, at, p);
            at += p.len();
        }
        out
    }

    /// Parses a payload; `None` unless it is exactly [`ACCUSATION_LEN`] bytes.
    pub fn parse(bytes: &[u8]) -> Option<Self> {
        let b: &[u8; ACCUSATION_LEN] = bytes.try_into().ok()?;
        let (interval, rest) = b.split_first_chunk::<4>()?;
        let (exchange, rest) = rest.split_first_chunk::<8>()?;
        let (bit, rest) = rest.split_first_chunk::<4>()?;
        Some(Accusation {
            interval: u32::from_be_bytes(*interval),
            exchange: u64::from_be_bytes(*exchange),
            bit: u32::from_be_bytes(*bit),
            proof: rest.try_into().ok()?,
        })
    }

    /// Whether the proof is `pseudonym`'s (the key of `slot`) for this accusation.
    pub fn verify(
        &self,
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
            self.interval,
            slot,
            self.exchange,
            self.bit,
        );
        pseudonym::verify_accusation(pseudonym, &context, &self.proof)
    }

    /// The owner's accusation of `bit` of `exchange`, proven with its pseudonym key.
    #[cfg(feature = "pseudonyms")]
    #[allow(clippy::too_many_arguments)]
    pub fn prove(
        key: &pseudonym::PseudonymKey,
        group_id: &[u8; 16],
        session_id: &[u8; 16],
        view: &[u8; 32],
        slot: u16,
        interval: u32,
        exchange: u64,
        bit: u32,
        rng: &mut impl rand_core::CryptoRngCore,
    ) -> Self {
        let context = pseudonym::accusation_context(
            group_id, session_id, view, interval, slot, exchange, bit,
        );
        Accusation {
            interval,
            exchange,
            bit,
            proof: key.prove_accusation(&context, rng),
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_round_trips_and_refuses_other_lengths() {
        let a = Accusation {
            interval: 7,
            exchange: 0x0102_0304_0506_0708,
            bit: 1234,
            proof: [0xab; 64],
        };
        let bytes = a.encode();
        assert_eq!(
            &bytes[..16],
            &[0, 0, 0, 7, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 4, 0xd2]
        );
        assert_eq!(Accusation::parse(&bytes), Some(a));
        assert_eq!(Accusation::parse(&bytes[..79]), None);
        let mut longer = [0u8; 81];
        longer[..80].copy_from_slice(&bytes);
        assert_eq!(Accusation::parse(&longer), None);
    }

    #[test]
    fn picks_only_bits_written_zero_and_decoded_one() {
        let written = [0b1111_0000u8, 0xff, 0x00];
        let decoded = [0b1111_1000u8, 0xff, 0x00];
        assert_eq!(pick_bit(&written, &decoded, 0), Some(3));
        assert_eq!(pick_bit(&written, &decoded, 4), Some(3), "wraps around");
        // Only 1 → 0 flips and bits written 1: nothing to accuse.
        assert_eq!(pick_bit(&[0xff, 0x0f], &[0x00, 0x0f], 0), None);
        assert_eq!(pick_bit(&[], &[], 0), None);
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
