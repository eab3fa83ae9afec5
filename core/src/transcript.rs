//! The view every cell is bound to.
//!
//! A relay that shows different nodes different things (an online set, a history, a
//! downstream record, a schedule) must not learn anything from how a slot owner reacts.
//! So every node hashes what it was shown into a running transcript and keys the pads of
//! each exchange with it: nodes with different views compute unrelated pads and the
//! exchange decodes to noise, whatever the owner wrote.
//!
//! ```text
//! T_start = SHA-256("dissent-rs v2 interval" | IntervalStart body, as received)
//! T_e     = SHA-256("dissent-rs v2 exchange" | T_(e-1) | e (u64 BE) | kind (7 bytes)
//!                   | outputs length (u32 BE) | outputs | downstream head hash after e)
//! ```
//!
//! with `T_(-1) = T_start`. The pad nonce of exchange `e` is the first 24 bytes of `T_e`.
//!
//! Downstream records are chained across intervals, so a client that reconnects can check
//! the records it missed against the head every other member holds:
//!
//! ```text
//! D_0 = SHA-256("dissent-rs v2 downstream" | epoch)
//! D_n = SHA-256("dissent-rs v2 record" | D_(n-1) | n (u64 BE) | tag (0 data, 1 close)
//!               | conn (u32 BE) | data length (u32 BE) | data)
//! ```
//!
//! Owns the running hash every pad is bound to and the downstream chain; it must not
//! decide what is shown (the roles do).

use sha2::{Digest, Sha256};

use crate::crypto::{PadNonce, PAD_NONCE_LEN};
use crate::wire::{Down, Head, Kind};

const INTERVAL_LABEL: &[u8] = b"dissent-rs v2 interval";
const EXCHANGE_LABEL: &[u8] = b"dissent-rs v2 exchange";
const GENESIS_LABEL: &[u8] = b"dissent-rs v2 downstream";
const RECORD_LABEL: &[u8] = b"dissent-rs v2 record";

/// The running hash of one node's view of an interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transcript {
    hash: [u8; 32],
}

impl Transcript {
    /// Starts an interval's transcript from the `IntervalStart` body as received.
    pub fn start(interval_start_body: &[u8]) -> Self {
        let mut h = Sha256::new();
        h.update(INTERVAL_LABEL);
        h.update(interval_start_body);
        Transcript {
            hash: h.finalize().into(),
        }
    }

    /// The current hash (after `start`, the view the trustees confirm).
    pub fn hash(&self) -> &[u8; 32] {
        &self.hash
    }

    /// Adds exchange `exchange`: its kind, the outputs reported with it and the downstream
    /// head after its record.
    pub fn advance(&mut self, exchange: u64, kind: Kind, outputs: &[u8], head: &[u8; 32]) {
        let mut h = Sha256::new();
        h.update(EXCHANGE_LABEL);
        h.update(self.hash);
        h.update(exchange.to_be_bytes());
        h.update(kind.transcript_bytes());
        h.update((outputs.len() as u32).to_be_bytes());
        h.update(outputs);
        h.update(head);
        self.hash = h.finalize().into();
    }

    /// The pad nonce of the exchange last added.
    pub fn pad_nonce(&self) -> PadNonce {
        let mut n = [0u8; PAD_NONCE_LEN];
        n.copy_from_slice(&self.hash[..PAD_NONCE_LEN]);
        n
    }
}

/// The head of a fresh downstream log of relay instance `epoch`.
pub fn genesis(epoch: &[u8; 16]) -> Head {
    let mut h = Sha256::new();
    h.update(GENESIS_LABEL);
    h.update(epoch);
    Head {
        seq: 0,
        bytes: 0,
        hash: h.finalize().into(),
    }
}

/// Appends a record to a downstream head; `Down::None` leaves it unchanged. A grant hashes
/// as tag 2 with its credit as 4 bytes of data (u32 BE), which the head's byte count
/// includes, as the log and the replays hold it.
pub fn append(head: &mut Head, down: &Down<'_>) {
    let grant;
    let (tag, conn, data): (u8, u32, &[u8]) = match *down {
        Down::None => return,
        Down::Data { conn, data } => (0, conn.0, data),
        Down::Close { conn } => (1, conn.0, &[]),
        Down::Grant { conn, bytes } => {
            grant = bytes.to_be_bytes();
            (2, conn.0, &grant)
        }
    };
    let seq = head.seq.wrapping_add(1);
    let mut h = Sha256::new();
    h.update(RECORD_LABEL);
    h.update(head.hash);
    h.update(seq.to_be_bytes());
    h.update([tag]);
    h.update(conn.to_be_bytes());
    h.update((data.len() as u32).to_be_bytes());
    h.update(data);
    head.seq = seq;
    head.bytes = head.bytes.wrapping_add(data.len() as u64);
    head.hash = h.finalize().into();
}

#[cfg(test)]
mod tests {
    // Test code only: each unwrap() is an assertion on a fixture, never on network input.
    use super::*;

    #[test]
    fn every_input_changes_the_transcript() {
        let base = Transcript::start(b"start");
        assert_ne!(base, Transcript::start(b"starT"));
        let step = |e, kind, out: &[u8], head| {
            let mut t = base;
            t.advance(e, kind, out, head);
            t
        };
        let k = Kind::Slot { slot: 1, len: 64 };
        let a = step(1, k, b"o", &[0; 32]);
        for b in [
            step(2, k, b"o", &[0; 32]),
            step(1, Kind::Reserve, b"o", &[0; 32]),
            step(1, Kind::Slot { slot: 1, len: 65 }, b"o", &[0; 32]),
            step(1, k, b"p", &[0; 32]),
            step(1, k, b"o", &[1; 32]),
        ] {
            assert_ne!(a, b);
            assert_ne!(a.pad_nonce(), b.pad_nonce());
        }
    }

    #[test]
    fn downstream_chain() {
        let g = genesis(&[1; 16]);
        assert_ne!(g, genesis(&[2; 16]));
        let mut a = g;
        append(&mut a, &Down::None);
        assert_eq!(a, g);
        append(
            &mut a,
            &Down::Data {
                conn: crate::wire::ConnId(5),
                data: b"xy",
            },
        );
        assert_eq!((a.seq, a.bytes), (1, 2));
        let mut b = g;
        append(
            &mut b,
            &Down::Close {
                conn: crate::wire::ConnId(5),
            },
        );
        assert_eq!((b.seq, b.bytes), (1, 0));
        assert_ne!(a.hash, b.hash);
    }

    fn unhex<const N: usize>(s: &str) -> [u8; N] {
        let mut out = [0u8; N];
        for (i, b) in out.iter_mut().enumerate() {
            // Test fixture: the constants below are valid hex.
            *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap();
        }
        out
    }

    /// Vectors computed independently with Python's `hashlib` (docs/vectors/pads.py).
    #[test]
    fn transcript_vectors() {
        let mut t = Transcript::start(&[1, 2, 3]);
        assert_eq!(t.hash(), &unhex::<32>(T_START_HEX));
        let kind = Kind::Slot {
            slot: 0x0203,
            len: 0x0000_0400,
        };
        t.advance(0x0102_0304_0506_0708, kind, &[0, 1, 0], &[0x99; 32]);
        assert_eq!(t.hash(), &unhex::<32>(T_EXCHANGE_HEX));
        assert_eq!(t.pad_nonce(), unhex::<24>(EXCHANGE_PAD_NONCE_HEX));

        let conn = crate::wire::ConnId(0x0002_0005);
        let mut head = genesis(&[0xAA; 16]);
        assert_eq!((head.seq, head.bytes), (0, 0));
        assert_eq!(head.hash, unhex::<32>(GENESIS_HEX));
        append(&mut head, &Down::Data { conn, data: b"hi" });
        assert_eq!((head.seq, head.bytes), (1, 2));
        assert_eq!(head.hash, unhex::<32>(DATA_HEX));
        append(&mut head, &Down::Close { conn });
        assert_eq!((head.seq, head.bytes), (2, 2));
        assert_eq!(head.hash, unhex::<32>(CLOSE_HEX));
        append(
            &mut head,
            &Down::Grant {
                conn,
                bytes: 0x0004_0000,
            },
        );
        assert_eq!((head.seq, head.bytes), (3, 6));
        assert_eq!(head.hash, unhex::<32>(GRANT_HEX));
    }

    // Printed by docs/vectors/pads.py.
    const T_START_HEX: &str = "e6dd8fb1703c117b232ddf6355646687fab687442e3297620338967d379ee8b1";
    const T_EXCHANGE_HEX: &str = "35bf0e8e60897bacd62399b31dd0ffa72b4664ddf69fc8b4cb53d5be45481d8f";
    const EXCHANGE_PAD_NONCE_HEX: &str = "35bf0e8e60897bacd62399b31dd0ffa72b4664ddf69fc8b4";
    const GENESIS_HEX: &str = "7543f2cd62f65176b2abe3557df8aea9d084fdc6c24356623a2a2062bdf4da79";
    const DATA_HEX: &str = "52d38fbcd7fb89fa88059f2e549f03e38a4f52ff75811687b8e026cebc078d17";
    const CLOSE_HEX: &str = "8a26414f36854d0742ebf16df15085b2165b7e8e32c4cf628aa0f1f751df303e";
    const GRANT_HEX: &str = "068145958d4255cd3a8c35518ba6a27d4d998d202573a53a4d9abfec5c3046cc";
}
