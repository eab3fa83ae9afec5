//! What a member signs when it reveals its part of an exchange at one bit.
//!
//! The statement's digest is SHA-256 of
//! `"dissent-rs v3 blame reveal" ‖ group (16) ‖ session (16) ‖ role (1: 0 client, 1
//! trustee) ‖ index (2) ‖ interval (4) ‖ exchange (8) ‖ bit (4) ‖ grounds digest (32,
//! [`super::grounds_digest`]) ‖ pad nonce (24) ‖
//! trustee nonces digest (32) ‖ own part (a client: its link nonce, 16; a trustee: the
//! digest of the members' link nonces, 32) ‖ SHA-256 of the decoded cell it was sent
//! (32; a trustee: zeros) ‖ SHA-256(cell) (32) ‖ cell bit (1) ‖ pad bit
//! count (2) ‖ pad bits (a bitmap, least significant bit first)`, big-endian integers,
//! signed with the member's Ed25519 identity key. The trustee nonces digest is SHA-256 of
//! the interval's trustee nonces in trustee order; the members' digest is SHA-256 of the
//! link nonces of the interval's members in index order. Both fix every pair's interval
//! key, so a dispute is settled with the nonces both sides signed.
//!
//! Owns the statement and the dispute proofs' context; it must not decide anything.

use sha2::{Digest, Sha256};

use crate::crypto::PadNonce;
use crate::NONCE_LEN;

use super::Culprit;

const REVEAL_LABEL: &[u8] = b"dissent-rs v3 blame reveal";
const DH_LABEL: &[u8] = b"dissent-rs v3 blame dh";

/// A member's signed reveal at one bit.
#[derive(Debug, Clone, Copy)]
pub struct Statement<'a> {
    /// The round, as the member accepted it.
    pub round: Round<'a>,
    /// Who reveals: [`Culprit::Client`] or [`Culprit::Trustee`].
    pub who: Culprit,
    /// A client: its link nonce (the first 16 bytes; the rest zero and not signed). A
    /// trustee: SHA-256 of the members' link nonces, in index order.
    pub own: &'a [u8; 32],
    /// SHA-256 of the decoded cell the relay sent the member in its `Disrupted` frame
    /// (zeros for a trustee, which is not sent one).
    pub decoded_hash: &'a [u8; 32],
    /// SHA-256 of the member's whole cell for the exchange.
    pub cell_hash: &'a [u8; 32],
    /// The cell's bit at the round's `bit`.
    pub cell_bit: bool,
    /// The member's pad bits at the round's `bit`: a client's one per trustee, a trustee's one per
    /// member, as a bitmap.
    pub bits: &'a [u8],
    /// How many pad bits `bits` holds.
    pub count: u16,
}

impl Statement<'_> {
    /// The digest the member signs.
    pub fn digest(&self) -> [u8; 32] {
        let (role, index, own) = match self.who {
            Culprit::Client(i) => (0u8, i, self.own.get(..NONCE_LEN).unwrap_or(&[])),
            Culprit::Trustee(j) => (1u8, j, &self.own[..]),
            Culprit::Relay => (2u8, 0, &self.own[..]),
        };
        let bits = self
            .bits
            .get(..crate::bits::bitmap_len(usize::from(self.count)))
            .unwrap_or(self.bits);
        let r = &self.round;
        Sha256::new()
            .chain_update(REVEAL_LABEL)
            .chain_update(r.group_id)
            .chain_update(r.session_id)
            .chain_update([role])
            .chain_update(index.to_be_bytes())
            .chain_update(r.interval.to_be_bytes())
            .chain_update(r.exchange.to_be_bytes())
            .chain_update(r.bit.to_be_bytes())
            .chain_update(r.grounds)
            .chain_update(r.pad_nonce)
            .chain_update(r.trustee_nonces)
            .chain_update(own)
            .chain_update(self.decoded_hash)
            .chain_update(self.cell_hash)
            .chain_update([u8::from(self.cell_bit)])
            .chain_update(self.count.to_be_bytes())
            .chain_update(bits)
            .finalize()
            .into()
    }

    /// Whether `signature` is `identity`'s signature of this statement.
    pub fn verify(&self, identity: &[u8; 32], signature: &[u8; 64]) -> bool {
        crate::identity::verify(identity, &self.digest(), signature)
    }
}

/// Bytes of a client's reveal in a `BlameDhRequest` (its pad bits apart): link nonce,
/// decoded cell's hash, cell hash, cell bit, signature.
pub const SHOWN_CLIENT_LEN: usize = NONCE_LEN + 32 + 32 + 1 + 64;
/// Bytes of a trustee's: members' digest, cell hash, cell bit, signature.
pub const SHOWN_TRUSTEE_LEN: usize = 32 + 32 + 1 + 64;

/// The other side's signed reveal a `BlameDhRequest` shows: what a member must be shown
/// before it proves a pair's Diffie–Hellman secret (the secret fixes every pad of the pair,
/// so a relay that could ask for it at will would unmask slot owners).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shown<'a> {
    /// Its reveal but its pad bits, as the request's `reveal` field lays it out.
    pub reveal: &'a [u8],
    /// Its pad bits, a bitmap.
    pub pad_bits: &'a [u8],
}

/// A `BlameDhRequest`'s fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DhRequest<'a> {
    /// The interval of the accused exchange.
    pub interval: u32,
    /// The accused exchange.
    pub exchange: u64,
    /// The other side's index.
    pub peer: u16,
    /// The accused bit.
    pub bit: u32,
    /// The other side's reveal.
    pub shown: Shown<'a>,
}

#[cfg(feature = "blame-round")]
impl<'a> DhRequest<'a> {
    /// The fields of `m` if it is a `BlameDhRequest`.
    pub fn of(m: &crate::wire::Message<'a>) -> Option<Self> {
        match *m {
            crate::wire::Message::BlameDhRequest {
                interval,
                exchange,
                peer,
                bit,
                reveal,
                pad_bits,
            } => Some(DhRequest {
                interval,
                exchange,
                peer,
                bit,
                shown: Shown { reveal, pad_bits },
            }),
            _ => None,
        }
    }
}

/// What every reveal of one blame round signs alike: the round as a member that accepted
/// it knows it ([`Shown::disputes`] checks another member's reveal against it).
#[derive(Debug, Clone, Copy)]
pub struct Round<'a> {
    /// The group.
    pub group_id: &'a [u8; 16],
    /// The session.
    pub session_id: &'a [u8; 16],
    /// The interval.
    pub interval: u32,
    /// The exchange.
    pub exchange: u64,
    /// The accused bit.
    pub bit: u32,
    /// The digest of the grounds ([`super::grounds_digest`]).
    pub grounds: &'a [u8; 32],
    /// The exchange's pad nonce.
    pub pad_nonce: &'a PadNonce,
    /// SHA-256 of the interval's trustee nonces, in trustee order.
    pub trustee_nonces: &'a [u8; 32],
}

impl Shown<'_> {
    /// Lays out `who`'s reveal (a client's `own` is its link nonce in the first 16 bytes)
    /// in `out`; returns its length.
    pub fn lay_out(
        who: Culprit,
        own: &[u8; 32],
        decoded: &[u8; 32],
        cell_hash: &[u8],
        cell_bit: bool,
        signature: &[u8],
        out: &mut [u8; SHOWN_CLIENT_LEN],
    ) -> usize {
        let parts: [&[u8]; 4] = match who {
            Culprit::Client(_) => [&own[..NONCE_LEN], decoded, cell_hash, &[]],
            _ => [own, cell_hash, &[], &[]],
        };
        let mut at = 0;
        for p in parts {
            crate::field::put(out, at, p);
            at += p.len();
        }
        crate::field::put(out, at, &[u8::from(cell_bit)]);
        crate::field::put(out, at + 1, signature);
        at + 65
    }

    /// Whether this is `who`'s reveal of `round` (as the member itself signed it), signed with `identity` over `count` pad bits, and
    /// claims at position `at` another pad bit than `mine` (the bit the member revealed
    /// for the pair): a real dispute about this pair in this round. Anything else shows
    /// none, and the member proves nothing.
    pub fn disputes(
        &self,
        round: &Round<'_>,
        who: Culprit,
        identity: &[u8; 32],
        count: u16,
        at: usize,
        mine: bool,
    ) -> bool {
        let mut own = [0u8; 32];
        let mut decoded = [0u8; 32];
        let r = self.reveal;
        let (own_len, decoded_len) = match who {
            Culprit::Client(_) if r.len() == SHOWN_CLIENT_LEN => (NONCE_LEN, 32),
            Culprit::Trustee(_) if r.len() == SHOWN_TRUSTEE_LEN => (32, 0),
            _ => return false,
        };
        let Some((own_part, rest)) = r.split_at_checked(own_len) else {
            return false;
        };
        let Some((decoded_part, rest)) = rest.split_at_checked(decoded_len) else {
            return false;
        };
        crate::field::put(&mut own, 0, own_part);
        crate::field::put(&mut decoded, 0, decoded_part);
        let Some((cell_hash, rest)) = rest.split_at_checked(32) else {
            return false;
        };
        let Some((&cell_bit, signature)) = rest.split_first() else {
            return false;
        };
        let (Ok(cell_hash), Ok(signature)) = (
            <&[u8; 32]>::try_from(cell_hash),
            <&[u8; 64]>::try_from(signature),
        ) else {
            return false;
        };
        if cell_bit > 1
            || at >= usize::from(count)
            || self.pad_bits.len() != crate::bits::bitmap_len(usize::from(count))
            || crate::bits::test(self.pad_bits, at) == mine
        {
            return false;
        }
        Statement {
            round: *round,
            who,
            own: &own,
            decoded_hash: &decoded,
            cell_hash,
            cell_bit: cell_bit == 1,
            bits: self.pad_bits,
            count,
        }
        .verify(identity, signature)
    }
}

/// Bytes of a dispute proof's context.
pub const DH_CONTEXT_LEN: usize = DH_LABEL.len() + 16 + 16 + 32 + 32;

/// The context of the DLEQ proof of a (client, trustee) pair's Diffie–Hellman secret in a
/// dispute ([`crate::ristretto::dleq::prove_dh`]).
pub fn dh_context(
    group_id: &[u8; 16],
    session_id: &[u8; 16],
    client_dh: &[u8; 32],
    trustee_dh: &[u8; 32],
) -> [u8; DH_CONTEXT_LEN] {
    let mut c = [0u8; DH_CONTEXT_LEN];
    let parts: [&[u8]; 5] = [DH_LABEL, group_id, session_id, client_dh, trustee_dh];
    let mut at = 0;
    for p in parts {
        crate::field::put(&mut c, at, p);
        at += p.len();
    }
    c
}

/// SHA-256 of a list of nonces (the trustee nonces, or the members' link nonces).
pub fn nonces_digest<'n>(nonces: impl IntoIterator<Item = &'n [u8; NONCE_LEN]>) -> [u8; 32] {
    let mut h = Sha256::new();
    for n in nonces {
        h.update(n);
    }
    h.finalize().into()
}

/// A member's `BlameDhProof` frame in `out` (its length): the Diffie–Hellman secret of its
/// `secret` with the peer's public key `peer` and its proof under `context` ([`dh_context`]);
/// `None` if `peer` is not a key.
#[cfg(feature = "blame-round")]
pub fn dh_proof_frame(
    context: &[u8],
    secret: &crate::ristretto::keys::SecretKey,
    peer: &[u8; 32],
    interval: u32,
    exchange: u64,
    peer_index: u16,
    out: &mut [u8],
) -> Result<Option<usize>, crate::wire::WireError> {
    let Ok(peer_key) = crate::ristretto::keys::PublicKey::from_bytes(peer) else {
        return Ok(None);
    };
    let (secret, proof) = prove_dh(context, secret, &peer_key);
    let n = crate::wire::Message::BlameDhProof {
        interval,
        exchange,
        peer: peer_index,
        secret: &secret,
        proof: &proof,
    }
    .emit_frame(out)?;
    Ok(Some(n))
}

/// A DLEQ proof of the Diffie–Hellman secret of `secret` with `peer`, its nonce drawn from
/// a generator seeded with the secret and the context (the statement is the same every
/// time it is asked, so the proof may be too).
#[cfg(feature = "blame-round")]
pub fn prove_dh(
    context: &[u8],
    secret: &crate::ristretto::keys::SecretKey,
    peer: &crate::ristretto::keys::PublicKey,
) -> ([u8; 32], [u8; crate::ristretto::dleq::PROOF_LEN]) {
    let seed: [u8; 32] = Sha256::new()
        .chain_update(b"dissent-rs v3 blame dh nonce")
        .chain_update(secret.to_bytes())
        .chain_update(context)
        .finalize()
        .into();
    let mut rng = crate::crypto::KeystreamRng::from_seed(seed);
    crate::ristretto::dleq::prove_dh(context, secret, peer, &mut rng)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> std::string::String {
        b.iter().map(|x| std::format!("{x:02x}")).collect()
    }

    /// docs/protocol.md, "Blame rounds": a client's statement and its Ed25519 signature,
    /// a trustee's statement, the nonce digests and a dispute proof's context.
    #[test]
    fn statement_vectors() {
        let trustee_nonces = nonces_digest([&[0x11; NONCE_LEN], &[0x12; NONCE_LEN]]);
        let members = nonces_digest([&[0x21; NONCE_LEN], &[0x22; NONCE_LEN], &[0x23; NONCE_LEN]]);
        let mut own = [0u8; 32];
        own[..NONCE_LEN].copy_from_slice(&[0x22; NONCE_LEN]);
        let client = Statement {
            round: Round {
                group_id: &[0x01; 16],
                session_id: &[0x02; 16],
                interval: 7,
                exchange: 300,
                bit: 1234,
                grounds: &[0x99; 32],
                pad_nonce: &[0x33; 24],
                trustee_nonces: &trustee_nonces,
            },
            who: Culprit::Client(1),
            own: &own,
            decoded_hash: &[0x44; 32],
            cell_hash: &[0x55; 32],
            cell_bit: true,
            bits: &[0b10],
            count: 2,
        };
        let trustee = Statement {
            who: Culprit::Trustee(0),
            own: &members,
            decoded_hash: &[0; 32],
            cell_bit: false,
            bits: &[0b101],
            count: 3,
            ..client
        };
        let key = crate::identity::IdentityKey::from_seed(&[0x66; 32]);
        let sig = key.sign(&client.digest());
        assert!(client.verify(&key.public(), &sig));
        assert!(!trustee.verify(&key.public(), &sig));
        let got = [
            hex(&trustee_nonces),
            hex(&members),
            hex(&client.digest()),
            hex(&key.public()),
            hex(&sig),
            hex(&trustee.digest()),
            hex(&dh_context(&[1; 16], &[2; 16], &[3; 32], &[4; 32])),
        ];
        assert_eq!(got, VECTORS);
    }

    /// The digests cross-checked with Python's hashlib over the concatenation the module
    /// documents (`G` = `99`×32), the signature with Python's `cryptography` Ed25519.
    const VECTORS: [&str; 7] = [
        "1ccaa784d603c082ea050d6a9c2e0f41f387c042316c3f30e3c5be4c3108f6bf",
        "4cfdb328c67e66bc7775e58eba49b83c8c0f569f25a50a5048cee84561199f98",
        "00927e96e5b8b246fe91283becfb080ccbba281253006f8dc2407c0c168fbd81",
        "34b4d9043156cb6dcf0beb0a2949b7559c940d2bcb6dbe8c53a9b30278e3a746",
        "8ee3a905b39b4245dc8e72f01d1f98f23ef0266017c8ba472541bf31b8efcff3\
         66e01895c4d49b86f5086e33b7a3ad3c22d9f8b3efbe90c8a1097b73347bd20e",
        "2b68acf8e298382af1f9f9c96d467ed45af90f82d6475bca17df03ced49dbeca",
        "64697373656e742d727320763320626c616d65206468\
         01010101010101010101010101010101\
         02020202020202020202020202020202\
         0303030303030303030303030303030303030303030303030303030303030303\
         0404040404040404040404040404040404040404040404040404040404040404",
    ];
}
