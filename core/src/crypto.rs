//! Keys, pads and MACs.
//!
//! ```text
//! x            = own pad secret (32 bytes, read little-endian, reduced modulo the group
//!                order l; zero is refused), public key X = x·G on Ristretto255
//! dh           = encode(x · peer's pad public key)          (Ristretto255, 32 bytes)
//! prk          = HKDF-SHA256-Extract(salt = group_id | session_id, ikm = dh)
//! pad key      = HKDF-SHA256-Expand(prk, "dissent-rs v3 pad key" | client_pub | trustee_pub, 32)
//! mac key      = HKDF-SHA256-Expand(prk, "dissent-rs v3 mac key" | client_pub | trustee_pub, 32)
//! interval key = HKDF-SHA256-Expand(pad key, "dissent-rs v4 interval" | interval (u32 BE)
//!                                  | trustee nonce (16) | client nonce (16), 32)
//! pad(e)       = XChaCha12(key = interval key, nonce = first 24 bytes of the transcript
//!                          hash T_e, counter 0), cell-length bytes
//! proof        = HMAC-SHA256(mac key, "dissent-rs v3 presence" | group_id | session_id
//!                            | client index (u16 BE) | link nonce | resume block)[..16]
//! ack          = HMAC-SHA256(mac key, "dissent-rs v3 ack" | T_start)[..16]
//! confirmation = HMAC-SHA256(mac key, "dissent-rs v3 confirm" | T_start)[..16]
//! ```
//!
//! The pad keys are Diffie–Hellman on Ristretto255 (not X25519) so that, in a blame
//! dispute, either side of a pair can prove its shared secret with a DLEQ proof
//! ([`crate::ristretto::dleq::prove_dh`]) and anyone can recompute the pair's pad bits from
//! it ([`pad_bit`]).
//!
//! The trustee nonce is fresh randomness each trustee contributes per interval; the client
//! nonce is fresh randomness the client contributes per link (and a client never accepts
//! the same interval twice on one link), so interval keys never repeat. The transcript hash
//! `T_e` ([`crate::transcript`]) covers everything the node was shown up to exchange `e`:
//! two nodes shown different views compute unrelated pads, and the exchange decodes to
//! noise. Any exchange's pad is computed directly from its key and nonce, so pads can be
//! recomputed later for accountability.
//!
//! The pads are XChaCha12 (HChaCha12 subkey, then ChaCha12: 12 rounds, not 20): the best
//! published attacks on ChaCha reach 7 rounds, and 12 is the margin of Adiantum and of
//! `rand`'s `StdRng` (docs/security.md, "The pad cipher"). Every pad and pad bit is
//! computed by [`IntervalKey::apply_pad`] and [`pad_bit`] from one stream (`pad_stream`).
//! The interval key's label is "v4" since the pads became XChaCha12 (protocol version 4), so
//! a key is never used under both ciphers.
//!
//! Owns key agreement, key derivation, pads and MACs (from well-kept crates, never a
//! hand-rolled primitive); it must not know about frames, intervals' phases or storage.

use chacha20::cipher::StreamCipherSeek;
use chacha20::cipher::{KeyIvInit, StreamCipher};
use chacha20::XChaCha12;
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use x25519_dalek::{PublicKey, StaticSecret};

use crate::ristretto::keys::SecretKey;
use crate::{MAC_LEN, NONCE_LEN};

const PAD_KEY_INFO: &[u8] = b"dissent-rs v3 pad key";
const MAC_KEY_INFO: &[u8] = b"dissent-rs v3 mac key";
const INTERVAL_INFO: &[u8] = b"dissent-rs v4 interval";
const PRESENCE_LABEL: &[u8] = b"dissent-rs v3 presence";
const CONFIRM_LABEL: &[u8] = b"dissent-rs v3 confirm";
const ACK_LABEL: &[u8] = b"dissent-rs v3 ack";

/// Bytes of a pad nonce (the start of a transcript hash).
pub const PAD_NONCE_LEN: usize = 24;

/// A pad nonce: the first [`PAD_NONCE_LEN`] bytes of an exchange's transcript hash.
pub type PadNonce = [u8; PAD_NONCE_LEN];

type HmacSha256 = Hmac<Sha256>;

/// Errors from key agreement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyError {
    /// The peer's public key is not a Ristretto255 key (not canonical, or the identity):
    /// the shared secret would be predictable.
    NonContributory,
    /// The own secret is zero modulo the group order.
    ZeroSecret,
}

impl core::fmt::Display for KeyError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            KeyError::NonContributory => {
                f.write_str("peer public key is not a valid Ristretto255 key")
            }
            KeyError::ZeroSecret => f.write_str("the secret key is zero"),
        }
    }
}

impl core::error::Error for KeyError {}

/// The X25519 public key of a 32-byte secret (the Noise link keys).
pub fn public_key(secret: &[u8; 32]) -> [u8; 32] {
    PublicKey::from(&StaticSecret::from(*secret)).to_bytes()
}

/// The pad secret scalar of 32 secret bytes: read little-endian and reduced modulo the
/// group order; `None` if that is zero.
pub fn pad_secret(secret: &[u8; 32]) -> Option<SecretKey> {
    SecretKey::from_bytes_mod_order(secret)
}

/// The Ristretto255 pad public key of 32 secret bytes (32 zero bytes, never a valid key,
/// for a secret that is zero modulo the group order).
pub fn pad_public_key(secret: &[u8; 32]) -> [u8; 32] {
    pad_secret(secret).map_or([0; 32], |s| s.public_key().to_bytes())
}

/// Bit `bit` of the pad of `key` for `nonce`: byte `bit / 8` of the keystream, bit
/// `bit % 8` (least significant first), as in a bitmap.
pub fn pad_bit(key: &IntervalKey, nonce: &PadNonce, bit: u32) -> bool {
    let mut cipher = pad_stream(key, nonce);
    let mut byte = [0u8; 1];
    cipher.seek(u64::from(bit / 8));
    cipher.apply_keystream(&mut byte);
    byte[0] >> (bit % 8) & 1 == 1
}

/// The long-lived keys one (client, trustee) pair shares in one session.
#[derive(Clone)]
pub struct PairKey {
    pad: [u8; 32],
    mac: [u8; 32],
}

impl core::fmt::Debug for PairKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("PairKey(..)")
    }
}

impl PairKey {
    /// A placeholder to fill storage with before keys are agreed (never used for pads).
    pub const EMPTY: PairKey = PairKey {
        pad: [0; 32],
        mac: [0; 32],
    };

    /// Derives the pair's keys from a Diffie–Hellman output and the public context.
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
        let mut pad = [0u8; 32];
        let mut mac = [0u8; 32];
        // 32 bytes is far below HKDF-SHA256's 8160-byte limit, so expand cannot fail.
        let _ = hk.expand_multi_info(&[PAD_KEY_INFO, client_pub, trustee_pub], &mut pad);
        let _ = hk.expand_multi_info(&[MAC_KEY_INFO, client_pub, trustee_pub], &mut mac);
        PairKey { pad, mac }
    }

    /// Runs Diffie–Hellman on Ristretto255 between `own_secret` and `peer_public` and
    /// derives the pair's keys.
    ///
    /// `own_is_client` says which side `own_secret` belongs to, which fixes the key order.
    pub fn agree(
        own_secret: &[u8; 32],
        peer_public: &[u8; 32],
        own_is_client: bool,
        group_id: &[u8; 16],
        session_id: &[u8; 16],
    ) -> Result<Self, KeyError> {
        let mut out = [Self::EMPTY];
        Self::agree_into(
            own_secret,
            core::slice::from_ref(peer_public),
            own_is_client,
            group_id,
            session_id,
            &mut out,
        )?;
        let [key] = out;
        Ok(key)
    }

    /// Agrees keys with each of `peers`, writing them into `out` (which must be as long).
    ///
    /// The own secret is read and its public key computed once for all peers.
    pub fn agree_into(
        own_secret: &[u8; 32],
        peers: &[[u8; 32]],
        own_is_client: bool,
        group_id: &[u8; 16],
        session_id: &[u8; 16],
        out: &mut [PairKey],
    ) -> Result<(), KeyError> {
        let secret = pad_secret(own_secret).ok_or(KeyError::ZeroSecret)?;
        let own_public = secret.public_key().to_bytes();
        for (peer_public, slot) in peers.iter().zip(out.iter_mut()) {
            let shared = crate::ristretto::keys::dh(&secret, peer_public)
                .map_err(|_| KeyError::NonContributory)?;
            let (c, t) = if own_is_client {
                (&own_public, peer_public)
            } else {
                (peer_public, &own_public)
            };
            *slot = Self::from_shared(&shared, group_id, session_id, c, t);
        }
        Ok(())
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
        if let Ok(hk) = Hkdf::<Sha256>::from_prk(&self.pad) {
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

    fn mac(&self) -> HmacSha256 {
        // HMAC accepts keys of any length.
        <HmacSha256 as Mac>::new_from_slice(&self.mac)
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"))
    }

    /// A client's proof, for this pair's trustee, that it opened the link with `nonce` and
    /// said hello with `resume` (its resume block, `wire::resume_block`).
    pub fn presence_proof(
        &self,
        group_id: &[u8; 16],
        session_id: &[u8; 16],
        client: u16,
        nonce: &[u8; NONCE_LEN],
        resume: &[u8],
    ) -> [u8; MAC_LEN] {
        truncate(self.presence_mac(group_id, session_id, client, nonce, resume))
    }

    /// Checks a presence proof in constant time.
    pub fn check_presence(
        &self,
        group_id: &[u8; 16],
        session_id: &[u8; 16],
        client: u16,
        nonce: &[u8; NONCE_LEN],
        resume: &[u8],
        proof: &[u8],
    ) -> bool {
        let m = self.presence_mac(group_id, session_id, client, nonce, resume);
        proof.len() == MAC_LEN && m.verify_truncated_left(proof).is_ok()
    }

    fn presence_mac(
        &self,
        group_id: &[u8; 16],
        session_id: &[u8; 16],
        client: u16,
        nonce: &[u8; NONCE_LEN],
        resume: &[u8],
    ) -> HmacSha256 {
        let mut m = self.mac();
        m.update(PRESENCE_LABEL);
        m.update(group_id);
        m.update(session_id);
        m.update(&client.to_be_bytes());
        m.update(nonce);
        m.update(resume);
        m
    }

    /// The client's acknowledgement, for this pair's trustee, of an interval's view.
    pub fn acknowledgement(&self, view: &[u8; 32]) -> [u8; MAC_LEN] {
        self.view_mac(ACK_LABEL, view)
    }

    /// Checks an acknowledgement in constant time.
    pub fn check_acknowledgement(&self, view: &[u8; 32], mac: &[u8]) -> bool {
        self.check_view_mac(ACK_LABEL, view, mac)
    }

    /// The trustee's confirmation, for this pair's client, of an interval's view.
    pub fn confirmation(&self, view: &[u8; 32]) -> [u8; MAC_LEN] {
        self.view_mac(CONFIRM_LABEL, view)
    }

    /// Checks a confirmation in constant time.
    pub fn check_confirmation(&self, view: &[u8; 32], mac: &[u8]) -> bool {
        self.check_view_mac(CONFIRM_LABEL, view, mac)
    }

    fn view_mac(&self, label: &[u8], view: &[u8; 32]) -> [u8; MAC_LEN] {
        truncate(self.view_hmac(label, view))
    }

    fn check_view_mac(&self, label: &[u8], view: &[u8; 32], mac: &[u8]) -> bool {
        mac.len() == MAC_LEN
            && self
                .view_hmac(label, view)
                .verify_truncated_left(mac)
                .is_ok()
    }

    fn view_hmac(&self, label: &[u8], view: &[u8; 32]) -> HmacSha256 {
        let mut m = self.mac();
        m.update(label);
        m.update(view);
        m
    }

    /// The raw pad key (for test vectors and blame).
    pub fn pad_key_bytes(&self) -> &[u8; 32] {
        &self.pad
    }
}

fn truncate(m: HmacSha256) -> [u8; MAC_LEN] {
    let full: [u8; 32] = m.finalize().into_bytes().into();
    let mut out = [0u8; MAC_LEN];
    for (o, f) in out.iter_mut().zip(full) {
        *o = f;
    }
    out
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
    /// A placeholder to fill storage with (never used for pads).
    pub const EMPTY: IntervalKey = IntervalKey([0; 32]);

    /// XORs the pad for `nonce` into `buf` (as many bytes as `buf` holds).
    pub fn apply_pad(&self, nonce: &PadNonce, buf: &mut [u8]) {
        // A cell is at most 64 KiB, far below the 256 GiB keystream limit of one nonce, so
        // this cannot run out of keystream.
        pad_stream(self, nonce).apply_keystream(buf);
    }

    /// The raw key bytes (for test vectors and blame).
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

/// The pad stream of `key` for `nonce`, from its first byte: XChaCha12, the HChaCha12
/// subkey of `nonce[..16]`, then ChaCha12 with nonce `0⁴ ‖ nonce[16..]`, counter 0.
///
/// The only place the pad cipher is named: every pad and pad bit comes from here.
fn pad_stream(key: &IntervalKey, nonce: &PadNonce) -> XChaCha12 {
    XChaCha12::new(&key.0.into(), nonce.into())
}

/// XORs many pairs' pads into a cell: the hot loop of every trustee and client.
///
/// The core calls it with the keys of one exchange; a hosted shell may split the keys over
/// its cores (each part into its own buffer, then XOR the parts), a device runs it inline.
pub trait PadEngine {
    /// XORs the pad of every key in `keys` for `nonce` into `out`.
    fn xor_pads(&mut self, keys: &[IntervalKey], nonce: &PadNonce, out: &mut [u8]);
}

/// A [`PadEngine`] that computes every pad in turn on the calling thread.
#[derive(Debug, Default, Clone, Copy)]
pub struct SerialPads;

impl PadEngine for SerialPads {
    fn xor_pads(&mut self, keys: &[IntervalKey], nonce: &PadNonce, out: &mut [u8]) {
        for k in keys {
            k.apply_pad(nonce, out);
        }
    }
}

/// XORs `src` into `dst` (up to the shorter length), a machine word at a time.
pub fn xor_into(dst: &mut [u8], src: &[u8]) {
    let n = dst.len().min(src.len());
    let (d, s) = (dst.split_at_mut(n).0, src.split_at(n).0);
    let mut dc = d.chunks_exact_mut(8);
    let mut sc = s.chunks_exact(8);
    for (a, b) in dc.by_ref().zip(sc.by_ref()) {
        // Chunks of exactly 8 bytes: the conversions always succeed.
        if let (Ok(a), Ok(b)) = (<&mut [u8; 8]>::try_from(a), <&[u8; 8]>::try_from(b)) {
            *a = (u64::from_ne_bytes(*a) ^ u64::from_ne_bytes(*b)).to_ne_bytes();
        }
    }
    for (a, b) in dc.into_remainder().iter_mut().zip(sc.remainder()) {
        *a ^= *b;
    }
}

/// A deterministic generator: the ChaCha20 keystream of a 32-byte seed (nonce zero, from
/// block 0, in whole 32-bit words), the bytes `rand_chacha`'s `ChaCha20Rng::from_seed`
/// gives, without linking
/// a second ChaCha20 (a device's flash is tight). For nonces derived from secrets; never
/// more than 256 GiB from one seed.
pub struct KeystreamRng(chacha20::ChaCha20);

impl KeystreamRng {
    /// The generator of `seed`.
    pub fn from_seed(seed: [u8; 32]) -> Self {
        KeystreamRng(chacha20::ChaCha20::new(&seed.into(), &[0u8; 12].into()))
    }
}

impl rand_core::RngCore for KeystreamRng {
    fn next_u32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        self.fill_bytes(&mut b);
        u32::from_le_bytes(b)
    }

    fn next_u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.fill_bytes(&mut b);
        u64::from_le_bytes(b)
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        dest.fill(0);
        self.0.apply_keystream(dest);
        // As `ChaCha20Rng`, which takes whole 32-bit words: skip to the next one.
        let at: u64 = self.0.current_pos();
        self.0.seek(at.next_multiple_of(4));
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl rand_core::CryptoRng for KeystreamRng {}

#[cfg(test)]
mod tests {
    // Test code only: each unwrap() is an assertion on a fixture, never on network input.
    use super::*;

    /// The keystream generator gives `rand_chacha`'s bytes for the same seed, so proofs
    /// whose nonces it draws are what they were with `ChaCha20Rng`.
    #[test]
    fn keystream_rng_matches_chacha20_rng() {
        use rand_chacha::rand_core::{RngCore as _, SeedableRng as _};
        let seed: [u8; 32] = core::array::from_fn(|i| (i * 11 + 5) as u8);
        let mut ours = KeystreamRng::from_seed(seed);
        let mut theirs = rand_chacha::ChaCha20Rng::from_seed(seed);
        for len in [64, 1, 7, 300, 64] {
            let (mut a, mut b) = (std::vec![0u8; len], std::vec![0u8; len]);
            rand_core::RngCore::fill_bytes(&mut ours, &mut a);
            theirs.fill_bytes(&mut b);
            assert_eq!(a, b, "{len} bytes");
        }
    }

    pub(crate) fn unhex<const N: usize>(s: &str) -> [u8; N] {
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

    /// Vectors computed independently in Python (docs/vectors/pads.py: its own ChaCha12 and
    /// Ristretto255, `hmac`; see docs/protocol.md, "Test vectors").
    #[test]
    fn derivation_vectors() {
        let client = [0x11u8; 32];
        let trustee = [0x22u8; 32];
        let group = [0x33u8; 16];
        let session = [0x44u8; 16];
        assert_eq!(pad_public_key(&client), unhex::<32>(CLIENT_PUB_HEX));
        assert_eq!(pad_public_key(&trustee), unhex::<32>(TRUSTEE_PUB_HEX));
        let dh =
            crate::ristretto::keys::dh(&pad_secret(&client).unwrap(), &pad_public_key(&trustee))
                .unwrap();
        assert_eq!(dh, unhex::<32>(DH_HEX));
        let from_client =
            PairKey::agree(&client, &pad_public_key(&trustee), true, &group, &session).unwrap();
        let from_trustee =
            PairKey::agree(&trustee, &pad_public_key(&client), false, &group, &session).unwrap();
        assert_eq!(from_client.pad, from_trustee.pad);
        assert_eq!(from_client.mac, from_trustee.mac);
        assert_eq!(from_client.pad, unhex::<32>(PAD_KEY_HEX));
        assert_eq!(from_client.mac, unhex::<32>(MAC_KEY_HEX));
        let ik = from_client.interval_key(7, &[0x55; NONCE_LEN], &[0x66; NONCE_LEN]);
        assert_eq!(ik.as_bytes(), &unhex::<32>(INTERVAL_KEY_HEX));
        let mut pad = [0u8; 72];
        ik.apply_pad(&[0x77; PAD_NONCE_LEN], &mut pad);
        assert_eq!(pad[..16], unhex::<16>(PAD_HEAD_HEX));
        assert_eq!(pad[64..], unhex::<8>(PAD_TAIL_HEX));
        // Single bits, as a blame reveal states them (pads.py: `pad_bits.0.13.521`).
        let nonce = [0x77; PAD_NONCE_LEN];
        let bits = [0u32, 13, 521].map(|b| pad_bit(&ik, &nonce, b) as u8);
        assert_eq!(bits, [0, 0, 1]);
        for b in 0..72 * 8 {
            assert_eq!(
                pad_bit(&ik, &nonce, b),
                pad[b as usize / 8] >> (b % 8) & 1 == 1
            );
        }
        let proof =
            from_client.presence_proof(&group, &session, 5, &[0x66; NONCE_LEN], &resume_vector());
        assert_eq!(proof, unhex::<16>(PROOF_HEX));
        assert_eq!(
            from_client.confirmation(&[0x88; 32]),
            unhex::<16>(CONFIRM_HEX)
        );
        assert_eq!(
            from_client.acknowledgement(&[0x88; 32]),
            unhex::<16>(ACK_HEX)
        );
    }

    /// The resume block of the vectors: capacity 65536, epoch `04×16`, seq 77, 1000 bytes,
    /// last interval 9, not lost.
    fn resume_vector() -> [u8; crate::wire::RESUME_BLOCK_LEN] {
        crate::wire::resume_block(
            65536,
            Some(&crate::wire::Resume {
                epoch: [4; 16],
                seq: 77,
                bytes: 1000,
                interval: Some(9),
                lost: false,
            }),
        )
    }

    #[test]
    fn macs_check_and_refuse() {
        let k = PairKey::from_shared(&[9; 32], &[1; 16], &[2; 16], &[3; 32], &[4; 32]);
        let other = PairKey::from_shared(&[8; 32], &[1; 16], &[2; 16], &[3; 32], &[4; 32]);
        let r = resume_vector();
        let p = k.presence_proof(&[1; 16], &[2; 16], 3, &[7; 16], &r);
        assert!(k.check_presence(&[1; 16], &[2; 16], 3, &[7; 16], &r, &p));
        assert!(!k.check_presence(&[1; 16], &[2; 16], 4, &[7; 16], &r, &p));
        assert!(!other.check_presence(&[1; 16], &[2; 16], 3, &[7; 16], &r, &p));
        assert!(!k.check_presence(&[1; 16], &[2; 16], 3, &[7; 16], &r, &p[..15]));
        // The proof covers the resume point: a relay cannot change it.
        let mut changed = r;
        changed[12] ^= 1;
        assert!(!k.check_presence(&[1; 16], &[2; 16], 3, &[7; 16], &changed, &p));
        let c = k.confirmation(&[5; 32]);
        assert!(k.check_confirmation(&[5; 32], &c));
        assert!(!k.check_confirmation(&[6; 32], &c));
        assert!(!other.check_confirmation(&[5; 32], &c));
        let a = k.acknowledgement(&[5; 32]);
        assert!(k.check_acknowledgement(&[5; 32], &a));
        assert!(!k.check_acknowledgement(&[6; 32], &a));
        assert!(!other.check_acknowledgement(&[5; 32], &a));
        // An acknowledgement is not a confirmation: a relay cannot turn one into the other.
        assert!(!k.check_confirmation(&[5; 32], &a));
    }

    #[test]
    fn pads_cancel_and_depend_on_every_input() {
        let k = PairKey::from_shared(&[9; 32], &[1; 16], &[2; 16], &[3; 32], &[4; 32]);
        let ik = k.interval_key(1, &[0; NONCE_LEN], &[0; NONCE_LEN]);
        let mut a = [0u8; 100];
        ik.apply_pad(&[5; PAD_NONCE_LEN], &mut a);
        let mut b = [0u8; 100];
        ik.apply_pad(&[6; PAD_NONCE_LEN], &mut b);
        assert_ne!(a, b);
        ik.apply_pad(&[5; PAD_NONCE_LEN], &mut a);
        assert_eq!(a, [0u8; 100]);
        for (i, t, c) in [
            (2, [0; 16], [0; 16]),
            (1, [1; 16], [0; 16]),
            (1, [0; 16], [1; 16]),
        ] {
            let mut d = [0u8; 100];
            k.interval_key(i, &t, &c)
                .apply_pad(&[6; PAD_NONCE_LEN], &mut d);
            assert_ne!(b, d);
        }
        // The engine and the word-wise XOR agree with applying pads one by one.
        let keys = [ik.clone(), k.interval_key(9, &[1; 16], &[2; 16])];
        let mut one = [3u8; 77];
        for key in &keys {
            key.apply_pad(&[1; PAD_NONCE_LEN], &mut one);
        }
        let mut two = [3u8; 77];
        SerialPads.xor_pads(&keys, &[1; PAD_NONCE_LEN], &mut two);
        assert_eq!(one, two);
        let mut x = [0xF0u8; 19];
        xor_into(&mut x, &[0x0F; 25]);
        assert_eq!(x, [0xFF; 19]);
    }

    #[test]
    fn invalid_peer_keys_and_zero_secrets_are_refused() {
        let zero = [0u8; 32];
        assert_eq!(
            PairKey::agree(&[7; 32], &zero, true, &[0; 16], &[0; 16]).unwrap_err(),
            KeyError::NonContributory
        );
        // Not a canonical encoding (p itself).
        let mut p = [0xff; 32];
        p[0] = 0xed;
        p[31] = 0x7f;
        assert_eq!(
            PairKey::agree(&[7; 32], &p, true, &[0; 16], &[0; 16]).unwrap_err(),
            KeyError::NonContributory
        );
        // The group order itself reduces to zero.
        let l = unhex::<32>("edd3f55c1a631258d69cf7a2def9de1400000000000000000000000000000010");
        assert_eq!(
            PairKey::agree(&l, &pad_public_key(&[7; 32]), true, &[0; 16], &[0; 16]).unwrap_err(),
            KeyError::ZeroSecret
        );
        assert_eq!(pad_public_key(&l), [0; 32]);
    }

    // Printed by docs/vectors/pads.py.
    const CLIENT_PUB_HEX: &str = "108e8d1590f8a01b7c61940faa56371db6742b5de8c9a3e29b1e9f3eafac6e79";
    const TRUSTEE_PUB_HEX: &str =
        "363787233dd9edefbf2c3ed4e3c33caece7f91fe85ed7565d0b2ee2c8610770f";
    const DH_HEX: &str = "6c7f7fd5da43fc7b96264d5f3bcc798034997293c06866c6dced89ffc338c710";
    const PAD_KEY_HEX: &str = "c47aa2bbfba07a89b578e770a46de55f59b4aa6c38d80eccc200e431ea8428e8";
    const MAC_KEY_HEX: &str = "1d7e6e4299cdb528d0cc69e1ed28a3ba4e3fcc87771318d6d7b1ed76dadb6a1b";
    const INTERVAL_KEY_HEX: &str =
        "3798e3aac23bd61eb5636b1fd529f2411b0dbd1aa2c75439583deff4888b70ef";
    const PAD_HEAD_HEX: &str = "101730645239e61297c67826e9ab5181";
    const PAD_TAIL_HEX: &str = "648e9e65675005b9";
    const PROOF_HEX: &str = "7a2888ca60484c6c980a57ea675296ca";
    const CONFIRM_HEX: &str = "295c1b0f8be1e2927e0b00f7f9269eb2";
    const ACK_HEX: &str = "6ceac841f56c20b2bcf7f876454e0b04";
}
