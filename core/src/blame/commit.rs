//! The relay's commitments to what each member sent: a keyed universal hash (POLYVAL) of
//! every cell of an exchange in flight, kept for a few disrupted exchanges, so that a
//! member's reveal in a blame round is checked against the cell it really sent.
//!
//! The key of each exchange is derived from a relay secret members never see
//! (ChaCha20 keystream of the secret at nonce `interval ‖ exchange`, the first 16 bytes
//! are POLYVAL's key `H`). The fingerprint is POLYVAL over the cell zero-padded to 16-byte
//! blocks, then one block holding the cell's length in bits (u64 LE, then zeros).
//! Fingerprints never leave the relay, so a member cannot find another cell with the same
//! fingerprint but by chance (at most (⌈len/16⌉ + 1) / 2^128 per try, POLYVAL's bound
//! as an ε-almost-XOR-universal hash).
//!
//! Owns the fingerprint; it must not decide what to keep (the relay does).

use chacha20::cipher::{KeyIvInit, StreamCipher};
use chacha20::ChaCha20;
use polyval::universal_hash::UniversalHash;
use polyval::Polyval;

/// Bytes of a fingerprint.
pub const FINGERPRINT_LEN: usize = 16;

/// The fingerprint key of one exchange (its POLYVAL state, set up once).
#[derive(Clone)]
pub struct ExchangeKey(Polyval);

impl core::fmt::Debug for ExchangeKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("ExchangeKey(..)")
    }
}

impl ExchangeKey {
    /// The key of `exchange` of `interval` under the relay's secret.
    pub fn new(relay_secret: &[u8; 32], interval: u32, exchange: u64) -> Self {
        let mut nonce = [0u8; 12];
        crate::field::put(&mut nonce, 0, &interval.to_be_bytes());
        crate::field::put(&mut nonce, 4, &exchange.to_be_bytes());
        let mut key = [0u8; 16];
        ChaCha20::new(relay_secret.into(), &nonce.into()).apply_keystream(&mut key);
        let state = Polyval::new((&key).into());
        key.fill(0);
        ExchangeKey(state)
    }

    /// The fingerprint of `cell`, as sent by one member.
    pub fn fingerprint(&self, cell: &[u8]) -> [u8; FINGERPRINT_LEN] {
        let mut h = self.0.clone();
        h.update_padded(cell);
        let mut len = [0u8; 16];
        crate::field::put(&mut len, 0, &((cell.len() as u64) * 8).to_le_bytes());
        h.update_padded(&len);
        h.finalize().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_depend_on_the_cell_the_exchange_and_the_secret() {
        let k = ExchangeKey::new(&[1; 32], 3, 4);
        let cell = [0x5a; 100];
        let f = k.fingerprint(&cell);
        assert_eq!(f, ExchangeKey::new(&[1; 32], 3, 4).fingerprint(&cell));
        let mut other = cell;
        other[99] ^= 1;
        assert_ne!(f, k.fingerprint(&other));
        assert_ne!(f, k.fingerprint(&cell[..99]));
        assert_ne!(f, ExchangeKey::new(&[1; 32], 3, 5).fingerprint(&cell));
        assert_ne!(f, ExchangeKey::new(&[1; 32], 4, 4).fingerprint(&cell));
        assert_ne!(f, ExchangeKey::new(&[2; 32], 3, 4).fingerprint(&cell));
    }

    /// docs/protocol.md, "Blame rounds": a fingerprint (cross-checked with a separate
    /// POLYVAL written from RFC 8452, checked against its vector, and the `cryptography`
    /// package's ChaCha20).
    #[test]
    fn fingerprint_vector() {
        let k = ExchangeKey::new(&[0x01; 32], 7, 300);
        let f = k.fingerprint(&[0x5a; 40]);
        let hex: std::string::String = f.iter().map(|x| std::format!("{x:02x}")).collect();
        assert_eq!(hex, "ae6dc0135ebf0f351fb03191daad75fe");
    }
}
