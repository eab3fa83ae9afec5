//! Keys and pads.
//!
//! ```text
//! dh          = X25519(own session secret, peer session public)
//! prk         = HKDF-SHA256-Extract(salt = group_id | session_id, ikm = dh)
//! pad key     = HKDF-SHA256-Expand(prk, "dissent-rs v1 pad key" | client_pub | trustee_pub, 32)
//! interval key= HKDF-SHA256-Expand(pad key, "dissent-rs v1 interval" | interval(u32 BE)
//!                                | trustee nonce(16) | client nonce(16), 32)
//! pad(e)      = ChaCha20(key = interval key, nonce = 0(4) | e(u64 BE), counter 0), cell-length bytes
//! ```
//!
//! The trustee nonce is fresh randomness each trustee contributes per interval; the client
//! nonce is fresh randomness the client contributes per link (and a client never accepts
//! the same interval twice on one link). A client's pads are therefore never reused, even
//! if the relay replays old interval announcements; an honest trustee's never are either. Any exchange's pad is computed directly from its number, so trustees
//! can run ahead and a pad can be recomputed later for accountability.

use chacha20::cipher::{KeyIvInit, StreamCipher};
use chacha20::ChaCha20;
use hkdf::Hkdf;
use sha2::Sha256;
use x25519_dalek::{PublicKey, StaticSecret};

use crate::NONCE_LEN;

/// Info prefix of the pad-key expansion.
const PAD_KEY_INFO: &[u8] = b"dissent-rs v1 pad key";
/// Info prefix of the interval-key expansion.
const INTERVAL_INFO: &[u8] = b"dissent-rs v1 interval";

/// Errors from key agreement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyError {
    /// The peer's public key is a low-order point: the shared secret would be predictable.
    NonContributory,
}

impl core::fmt::Display for KeyError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            KeyError::NonContributory => {
                f.write_str("peer public key gives a non-contributory shared secret")
            }
        }
    }
}

impl core::error::Error for KeyError {}

/// The X25519 public key of a 32-byte secret.
pub fn public_key(secret: &[u8; 32]) -> [u8; 32] {
    PublicKey::from(&StaticSecret::from(*secret)).to_bytes()
}

/// The long-lived pad key shared by one (client, trustee) pair in one session.
#[derive(Clone)]
pub struct PadKey([u8; 32]);

impl core::fmt::Debug for PadKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("PadKey(..)")
    }
}

impl PadKey {
    /// Derives the pad key from an X25519 output and the public context.
    pub fn from_shared(
        dh: &[u8; 32],
        group_id: &[u8; 16],
        session_id: &[u8; 16],
        client_pub: &[u8; 32],
        trustee_pub: &[u8; 32],
    ) -> Self {
        let mut salt = [0u8; 32];
        salt[..16].copy_from_slice(group_id);
        salt[16..].copy_from_slice(session_id);
        let hk = Hkdf::<Sha256>::new(Some(&salt), dh);
        let mut key = [0u8; 32];
        // 32 bytes is far below HKDF-SHA256's 8160-byte limit, so expand cannot fail.
        let _ = hk.expand_multi_info(&[PAD_KEY_INFO, client_pub, trustee_pub], &mut key);
        PadKey(key)
    }

    /// Runs X25519 between `own_secret` and `peer_public` and derives the pad key.
    ///
    /// `own_is_client` says which side `own_secret` belongs to, which fixes the key order.
    pub fn agree(
        own_secret: &[u8; 32],
        peer_public: &[u8; 32],
        own_is_client: bool,
        group_id: &[u8; 16],
        session_id: &[u8; 16],
    ) -> Result<Self, KeyError> {
        let secret = StaticSecret::from(*own_secret);
        let own_public = PublicKey::from(&secret).to_bytes();
        let shared = secret.diffie_hellman(&PublicKey::from(*peer_public));
        if !shared.was_contributory() {
            return Err(KeyError::NonContributory);
        }
        let (c, t) = if own_is_client {
            (&own_public, peer_public)
        } else {
            (peer_public, &own_public)
        };
        Ok(Self::from_shared(
            shared.as_bytes(),
            group_id,
            session_id,
            c,
            t,
        ))
    }

    /// Agrees a pad key with each of `peers`; `None` if there are more than `N`.
    pub fn agree_all<const N: usize>(
        own_secret: &[u8; 32],
        peers: &[[u8; 32]],
        own_is_client: bool,
        group_id: &[u8; 16],
        session_id: &[u8; 16],
    ) -> Result<Option<heapless::Vec<PadKey, N>>, KeyError> {
        let mut keys = heapless::Vec::new();
        for peer in peers {
            let key = Self::agree(own_secret, peer, own_is_client, group_id, session_id)?;
            if keys.push(key).is_err() {
                return Ok(None);
            }
        }
        Ok(Some(keys))
    }

    /// Derives the key of this pair's pads for one interval.
    pub fn interval_key(
        &self,
        interval: u32,
        trustee_nonce: &[u8; NONCE_LEN],
        client_nonce: &[u8; NONCE_LEN],
    ) -> IntervalKey {
        let mut key = [0u8; 32];
        // A pad key is 32 bytes, a valid HKDF-SHA256 PRK, so from_prk cannot fail;
        // 32 output bytes cannot exceed the expand limit either.
        if let Ok(hk) = Hkdf::<Sha256>::from_prk(&self.0) {
            let info: [&[u8]; 4] = [
                INTERVAL_INFO,
                &interval.to_be_bytes(),
                trustee_nonce,
                client_nonce,
            ];
            let _ = hk.expand_multi_info(&info, &mut key);
        }
        IntervalKey(key)
    }

    /// The raw key bytes (for test vectors and blame).
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

/// The key of one pair's pads within one interval.
#[derive(Clone)]
pub struct IntervalKey([u8; 32]);

impl core::fmt::Debug for IntervalKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("IntervalKey(..)")
    }
}

impl IntervalKey {
    /// XORs the pad of `exchange` into `buf` (as many bytes as `buf` holds).
    pub fn apply_pad(&self, exchange: u64, buf: &mut [u8]) {
        let mut nonce = [0u8; 12];
        nonce[4..].copy_from_slice(&exchange.to_be_bytes());
        let mut cipher = ChaCha20::new(&self.0.into(), &nonce.into());
        // A cell is at most MAX_CELL_LENGTH bytes, far below the 256 GiB keystream limit of
        // one nonce, so this cannot run out of keystream.
        cipher.apply_keystream(buf);
    }

    /// The raw key bytes (for test vectors and blame).
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    // Test code only: each unwrap() is an assertion on a fixture, never on network input.
    use super::*;

    fn unhex<const N: usize>(s: &str) -> [u8; N] {
        let mut out = [0u8; N];
        for (i, b) in out.iter_mut().enumerate() {
            *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap();
        }
        out
    }

    /// RFC 7748 section 6.1.
    #[test]
    fn x25519_rfc7748() {
        let a = unhex::<32>("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a");
        let b_pub = unhex::<32>("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f");
        assert_eq!(
            public_key(&a),
            unhex::<32>("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
        );
        let shared = StaticSecret::from(a).diffie_hellman(&PublicKey::from(b_pub));
        assert_eq!(
            shared.to_bytes(),
            unhex::<32>("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742")
        );
    }

    /// Vectors computed independently with Python's `cryptography` and `hmac` modules
    /// (see docs/protocol.md, "Test vectors").
    #[test]
    fn pad_derivation_vectors() {
        let client = [0x11u8; 32];
        let trustee = [0x22u8; 32];
        let group = [0x33u8; 16];
        let session = [0x44u8; 16];
        let from_client =
            PadKey::agree(&client, &public_key(&trustee), true, &group, &session).unwrap();
        let from_trustee =
            PadKey::agree(&trustee, &public_key(&client), false, &group, &session).unwrap();
        assert_eq!(from_client.as_bytes(), from_trustee.as_bytes());
        assert_eq!(from_client.as_bytes(), &unhex::<32>(PAD_KEY_HEX));
        let ik = from_client.interval_key(7, &[0x55; NONCE_LEN], &[0x66; NONCE_LEN]);
        assert_eq!(ik.as_bytes(), &unhex::<32>(INTERVAL_KEY_HEX));
        let mut pad = [0u8; 72];
        ik.apply_pad(0x0102_0304_0506, &mut pad);
        assert_eq!(pad[..16], unhex::<16>(PAD_HEAD_HEX));
        assert_eq!(pad[64..], unhex::<8>(PAD_TAIL_HEX));
    }

    #[test]
    fn pads_are_random_access_and_cancel() {
        let k = PadKey::from_shared(&[9; 32], &[1; 16], &[2; 16], &[3; 32], &[4; 32]);
        let ik = k.interval_key(1, &[0; NONCE_LEN], &[0; NONCE_LEN]);
        let mut a = [0u8; 100];
        ik.apply_pad(5, &mut a);
        let mut b = [0u8; 100];
        ik.apply_pad(6, &mut b);
        assert_ne!(a, b);
        ik.apply_pad(5, &mut a);
        assert_eq!(a, [0u8; 100]);
        // Another interval or nonce gives another pad.
        let mut c = [0u8; 100];
        k.interval_key(2, &[0; NONCE_LEN], &[0; NONCE_LEN])
            .apply_pad(6, &mut c);
        assert_ne!(b, c);
        let mut d = [0u8; 100];
        k.interval_key(1, &[1; NONCE_LEN], &[0; NONCE_LEN])
            .apply_pad(6, &mut d);
        assert_ne!(b, d);
        let mut e = [0u8; 100];
        k.interval_key(1, &[0; NONCE_LEN], &[1; NONCE_LEN])
            .apply_pad(6, &mut e);
        assert_ne!(b, e);
    }

    #[test]
    fn low_order_peer_key_is_refused() {
        let zero = [0u8; 32];
        assert_eq!(
            PadKey::agree(&[7; 32], &zero, true, &[0; 16], &[0; 16]).unwrap_err(),
            KeyError::NonContributory
        );
    }

    const PAD_KEY_HEX: &str = "b21f430d7a03edb1a05ed71726de6bfd477002da16b5468ac4944f28d0c5594f";
    const INTERVAL_KEY_HEX: &str =
        "55b5914eb15577544e68980e3b5ffc9963285fba768a3605cb7141afb321ef59";
    const PAD_HEAD_HEX: &str = "4fab8d90139d60101d5fad975ec48d76";
    const PAD_TAIL_HEX: &str = "636cbf2bfaac3375";
}
