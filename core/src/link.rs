//! The link layer: a sans-IO Noise `IK` session between a node and the relay.
//!
//! Every link runs `Noise_IK_25519_ChaChaPoly_BLAKE2s` with the node (client or trustee)
//! as initiator. The node knows the relay's long-term key in advance; the relay learns the
//! node's long-term key from the first handshake message and decides whether to admit it
//! before it answers. The prologue `"dissent-rs v1 link" ‖ group_id ‖ session_id` binds the
//! link to one group and session.
//!
//! On the byte stream everything is a record, `Length (u16 BE) ‖ Noise message`, with
//! `16 ≤ Length ≤ 65535` (docs/protocol.md §1):
//!
//! 1. node → relay: the request, a [`REQUEST_LEN`]-byte handshake message with an empty
//!    payload;
//! 2. relay → node: the response, a [`RESPONSE_LEN`]-byte handshake message with an empty
//!    payload;
//! 3. then transport records both ways, whose plaintexts concatenated form the frame stream
//!    of [`crate::wire`]. Each direction numbers its records from 0 and that number is the
//!    Noise nonce. It is not transmitted, so a dropped, replayed or reordered record fails
//!    authentication.
//!
//! Call order on the node: [`Initiator::new`] → [`Initiator::write_request`] (send the
//! record) → split the response off the stream with [`RecordReader::initiator`] →
//! [`Initiator::read_response`], which gives the [`Transport`].
//!
//! On the relay: [`Responder::new`] → split the request with [`RecordReader::responder`]
//! → [`Responder::read_request`], which gives the node's authenticated static key: admit
//! it or drop the link → [`Responder::write_response`] (send the record), which gives the
//! [`Transport`].
//!
//! Then [`Transport::seal`] each outgoing plaintext of at most [`MAX_PLAINTEXT`] bytes into
//! a record, and [`Transport::open`] each message the same [`RecordReader`] splits off.
//! [`Transport::split`] gives independent [`Sealer`] and [`Opener`] halves for a writer
//! and a reader task. Any error ends the link: a failed [`Opener`] refuses everything after.
//!
//! The Noise work is done by the `clatter` crate. The core never reads an RNG: the caller
//! passes 32 bytes of fresh entropy per handshake, used as the ephemeral X25519 secret
//! exactly as snow would use its RNG's bytes. Nothing here allocates, and no input panics:
//! lengths are checked before any bytes reach clatter, and a record can never exceed the
//! 65535-byte Noise limit because its length field is 16 bits.
//!
//! Owns the link's handshake, records and their keys; it must not look inside a frame
//! (that is [`crate::wire`]'s).

use clatter::bytearray::SensitiveByteArray;
use clatter::cipherstate::CipherState;
use clatter::crypto::cipher::ChaChaPoly;
use clatter::crypto::dh::X25519;
use clatter::crypto::hash::Blake2s;
use clatter::error::{CipherError, HandshakeError};
use clatter::handshakepattern::noise_ik;
use clatter::rand_core::{CryptoRng, RngCore};
use clatter::traits::{Dh, Handshaker};
use clatter::{KeyPair, NqHandshakeCore};

/// The Noise protocol name.
pub const NOISE_PARAMS: &str = "Noise_IK_25519_ChaChaPoly_BLAKE2s";
/// Bytes of a record's length field.
pub const HEADER_LEN: usize = 2;
/// Bytes of the authentication tag in every Noise message.
pub const TAG_LEN: usize = 16;
/// Shortest Noise message in a record.
pub const MIN_MESSAGE: usize = TAG_LEN;
/// Longest Noise message in a record.
pub const MAX_MESSAGE: usize = u16::MAX as usize;
/// Longest record, length field included.
pub const MAX_RECORD: usize = HEADER_LEN + MAX_MESSAGE;
/// Longest plaintext in one transport record.
pub const MAX_PLAINTEXT: usize = MAX_MESSAGE - TAG_LEN;
/// Bytes a transport record adds to its plaintext.
pub const OVERHEAD: usize = HEADER_LEN + TAG_LEN;
/// Length of the request message: ephemeral key, encrypted static key, empty payload.
pub const REQUEST_LEN: usize = 32 + (32 + TAG_LEN) + TAG_LEN;
/// Length of the response message: ephemeral key, empty payload.
pub const RESPONSE_LEN: usize = 32 + TAG_LEN;

const PROLOGUE_LABEL: &[u8; 18] = b"dissent-rs v1 link";
const PROLOGUE_LEN: usize = PROLOGUE_LABEL.len() + 16 + 16;

/// Errors from the link layer; every one of them ends the link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LinkError {
    /// The output buffer cannot hold the result.
    BufferTooSmall,
    /// A record or handshake message has a length the protocol does not allow here.
    BadLength(usize),
    /// A plaintext is longer than [`MAX_PLAINTEXT`].
    TooLong(usize),
    /// A message failed authentication: tampered, replayed, reordered or keyed for another
    /// peer, group or session.
    Decrypt,
    /// A handshake step was called out of order or after a failure.
    OutOfOrder,
    /// The Noise handshake failed for another reason.
    Handshake,
    /// This direction has used up its record numbers.
    Exhausted,
}

impl core::fmt::Display for LinkError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            LinkError::BufferTooSmall => f.write_str("output buffer too small"),
            LinkError::BadLength(n) => write!(f, "record of {n} bytes refused"),
            LinkError::TooLong(n) => write!(f, "plaintext of {n} bytes does not fit a record"),
            LinkError::Decrypt => f.write_str("record failed authentication"),
            LinkError::OutOfOrder => f.write_str("handshake step out of order"),
            LinkError::Handshake => f.write_str("noise handshake failed"),
            LinkError::Exhausted => f.write_str("record numbers used up"),
        }
    }
}

impl core::error::Error for LinkError {}

fn handshake_error(e: HandshakeError) -> LinkError {
    match e {
        HandshakeError::Cipher(CipherError::Decrypt) => LinkError::Decrypt,
        HandshakeError::BufferTooSmall => LinkError::BufferTooSmall,
        HandshakeError::InvalidState | HandshakeError::ErrorState => LinkError::OutOfOrder,
        _ => LinkError::Handshake,
    }
}

fn cipher_error(e: CipherError) -> LinkError {
    match e {
        CipherError::NonceOverflow => LinkError::Exhausted,
        _ => LinkError::Decrypt,
    }
}

/// The RNG type clatter's handshake asks for.
///
/// Never called: both sides hand clatter their ephemeral key pair up front (made from the
/// caller's entropy), and clatter only draws randomness for an ephemeral key it lacks.
#[derive(Clone, Default)]
struct NoRng;

impl RngCore for NoRng {
    fn next_u32(&mut self) -> u32 {
        unreachable!("the ephemeral key is always supplied")
    }
    fn next_u64(&mut self) -> u64 {
        unreachable!("the ephemeral key is always supplied")
    }
    fn fill_bytes(&mut self, _: &mut [u8]) {
        unreachable!("the ephemeral key is always supplied")
    }
    fn try_fill_bytes(&mut self, _: &mut [u8]) -> Result<(), clatter::rand_core::Error> {
        unreachable!("the ephemeral key is always supplied")
    }
}

impl CryptoRng for NoRng {}

type Handshake = NqHandshakeCore<X25519, ChaChaPoly, Blake2s, NoRng>;
type Keys = KeyPair<[u8; 32], SensitiveByteArray<[u8; 32]>>;

fn key_pair(secret: &[u8; 32]) -> Keys {
    let secret = SensitiveByteArray::new(*secret);
    KeyPair::new(X25519::pubkey(&secret), secret)
}

fn prologue(group_id: &[u8; 16], session_id: &[u8; 16]) -> [u8; PROLOGUE_LEN] {
    let mut p = [0u8; PROLOGUE_LEN];
    let (label, ids) = p.split_at_mut(PROLOGUE_LABEL.len());
    label.copy_from_slice(PROLOGUE_LABEL);
    let (group, session) = ids.split_at_mut(16);
    group.copy_from_slice(group_id);
    session.copy_from_slice(session_id);
    p
}

/// Writes `Length ‖ message` for a handshake message of `len` bytes already at
/// `out[HEADER_LEN..]`.
fn put_header(out: &mut [u8], len: usize) -> Result<usize, LinkError> {
    let n = u16::try_from(len).map_err(|_| LinkError::BadLength(len))?;
    let header = out.get_mut(..HEADER_LEN).ok_or(LinkError::BufferTooSmall)?;
    header.copy_from_slice(&n.to_be_bytes());
    Ok(HEADER_LEN + len)
}

/// The node side of a link handshake.
pub struct Initiator {
    hs: Handshake,
}

impl Initiator {
    /// Starts a handshake with the relay whose public key is `relay_public`.
    ///
    /// `own_secret` is the node's long-term X25519 secret; `entropy` must be 32 fresh
    /// random bytes, never reused.
    pub fn new(
        own_secret: &[u8; 32],
        relay_public: &[u8; 32],
        group_id: &[u8; 16],
        session_id: &[u8; 16],
        entropy: [u8; 32],
    ) -> Result<Self, LinkError> {
        let hs = Handshake::new(
            noise_ik(),
            &prologue(group_id, session_id),
            true,
            Some(key_pair(own_secret)),
            Some(key_pair(&entropy)),
            Some(*relay_public),
            None,
        )
        .map_err(handshake_error)?;
        Ok(Initiator { hs })
    }

    /// Writes the request record (`HEADER_LEN + REQUEST_LEN` bytes) into `out`.
    pub fn write_request(&mut self, out: &mut [u8]) -> Result<usize, LinkError> {
        let body = out
            .get_mut(HEADER_LEN..HEADER_LEN + REQUEST_LEN)
            .ok_or(LinkError::BufferTooSmall)?;
        let n = self.hs.write_message(&[], body).map_err(handshake_error)?;
        put_header(out, n)
    }

    /// Reads the relay's response message and finishes the handshake.
    pub fn read_response(mut self, message: &[u8]) -> Result<Transport, LinkError> {
        if message.len() != RESPONSE_LEN {
            return Err(LinkError::BadLength(message.len()));
        }
        self.hs
            .read_message(message, &mut [])
            .map_err(handshake_error)?;
        Transport::new(self.hs)
    }
}

/// The relay side of a link handshake.
pub struct Responder {
    hs: Handshake,
    peer: Option<[u8; 32]>,
}

impl Responder {
    /// Waits for a node's request; `relay_secret` is the relay's long-term X25519 secret.
    ///
    /// `entropy` must be 32 fresh random bytes, never reused.
    pub fn new(
        relay_secret: &[u8; 32],
        group_id: &[u8; 16],
        session_id: &[u8; 16],
        entropy: [u8; 32],
    ) -> Result<Self, LinkError> {
        let hs = Handshake::new(
            noise_ik(),
            &prologue(group_id, session_id),
            false,
            Some(key_pair(relay_secret)),
            Some(key_pair(&entropy)),
            None,
            None,
        )
        .map_err(handshake_error)?;
        Ok(Responder { hs, peer: None })
    }

    /// Reads the node's request message and returns the node's static public key.
    ///
    /// The key is authenticated: only its holder could have made the request. Check that
    /// it belongs to a member before calling [`Responder::write_response`].
    pub fn read_request(&mut self, message: &[u8]) -> Result<[u8; 32], LinkError> {
        if self.peer.is_some() {
            return Err(LinkError::OutOfOrder);
        }
        if message.len() != REQUEST_LEN {
            return Err(LinkError::BadLength(message.len()));
        }
        self.hs
            .read_message(message, &mut [])
            .map_err(handshake_error)?;
        let key = self.hs.get_remote_static().ok_or(LinkError::Handshake)?;
        self.peer = Some(key);
        Ok(key)
    }

    /// The node's static public key, once its request was read.
    pub fn peer(&self) -> Option<&[u8; 32]> {
        self.peer.as_ref()
    }

    /// Writes the response record (`HEADER_LEN + RESPONSE_LEN` bytes) into `out` and
    /// finishes the handshake.
    pub fn write_response(mut self, out: &mut [u8]) -> Result<(usize, Transport), LinkError> {
        if self.peer.is_none() {
            return Err(LinkError::OutOfOrder);
        }
        let body = out
            .get_mut(HEADER_LEN..HEADER_LEN + RESPONSE_LEN)
            .ok_or(LinkError::BufferTooSmall)?;
        let n = self.hs.write_message(&[], body).map_err(handshake_error)?;
        let n = put_header(out, n)?;
        Ok((n, Transport::new(self.hs)?))
    }
}

/// An established link: seals outgoing records and opens incoming ones.
pub struct Transport {
    sealer: Sealer,
    opener: Opener,
    hash: [u8; 32],
}

impl Transport {
    fn new(hs: Handshake) -> Result<Self, LinkError> {
        let initiator = hs.is_initiator();
        let state = hs.finalize().map_err(handshake_error)?;
        let hash = *state.get_handshake_hash();
        let ciphers = state.take();
        let (send, receive) = if initiator {
            (
                ciphers.initiator_to_responder,
                ciphers.responder_to_initiator,
            )
        } else {
            (
                ciphers.responder_to_initiator,
                ciphers.initiator_to_responder,
            )
        };
        Ok(Transport {
            sealer: Sealer { cipher: send },
            opener: Opener {
                cipher: receive,
                failed: false,
            },
            hash,
        })
    }

    /// Seals `plaintext` into the next record in `out`; returns the record's length.
    pub fn seal(&mut self, plaintext: &[u8], out: &mut [u8]) -> Result<usize, LinkError> {
        self.sealer.seal(plaintext, out)
    }

    /// Opens the next incoming record's `message` into `out`; returns the plaintext length.
    pub fn open(&mut self, message: &[u8], out: &mut [u8]) -> Result<usize, LinkError> {
        self.opener.open(message, out)
    }

    /// The Noise handshake hash, the same on both ends of the link.
    pub fn handshake_hash(&self) -> &[u8; 32] {
        &self.hash
    }

    /// Splits the link into its sending and receiving halves.
    pub fn split(self) -> (Sealer, Opener) {
        (self.sealer, self.opener)
    }
}

/// The sending half of a link.
pub struct Sealer {
    cipher: CipherState<ChaChaPoly>,
}

impl Sealer {
    /// Seals `plaintext` into the next record in `out`; returns the record's length.
    pub fn seal(&mut self, plaintext: &[u8], out: &mut [u8]) -> Result<usize, LinkError> {
        if plaintext.len() > MAX_PLAINTEXT {
            return Err(LinkError::TooLong(plaintext.len()));
        }
        let len = plaintext.len() + TAG_LEN;
        let body = out
            .get_mut(HEADER_LEN..HEADER_LEN + len)
            .ok_or(LinkError::BufferTooSmall)?;
        self.cipher
            .encrypt_with_ad(&[], plaintext, body)
            .map_err(cipher_error)?;
        put_header(out, len)
    }

    /// Seals the `plaintext_len` bytes at `buf[HEADER_LEN..]` in place into the next record
    /// starting at `buf[0]`; returns the record's length.
    pub fn seal_in_place(
        &mut self,
        buf: &mut [u8],
        plaintext_len: usize,
    ) -> Result<usize, LinkError> {
        if plaintext_len > MAX_PLAINTEXT {
            return Err(LinkError::TooLong(plaintext_len));
        }
        let len = plaintext_len + TAG_LEN;
        let body = buf
            .get_mut(HEADER_LEN..HEADER_LEN + len)
            .ok_or(LinkError::BufferTooSmall)?;
        self.cipher
            .encrypt_with_ad_in_place(&[], body, plaintext_len)
            .map_err(cipher_error)?;
        put_header(buf, len)
    }

    /// Records sealed so far, which is also the next record's nonce.
    pub fn records(&self) -> u64 {
        self.cipher.get_nonce()
    }
}

/// The receiving half of a link.
pub struct Opener {
    cipher: CipherState<ChaChaPoly>,
    failed: bool,
}

impl Opener {
    /// Opens the next record's `message` into `out`; returns the plaintext length.
    pub fn open(&mut self, message: &[u8], out: &mut [u8]) -> Result<usize, LinkError> {
        let n = self.check(message.len())?;
        let out = out.get_mut(..n).ok_or(LinkError::BufferTooSmall)?;
        let r = self.cipher.decrypt_with_ad(&[], message, out);
        self.settle(r.map(|()| n))
    }

    /// Opens the next record's message in place; the plaintext is left at its start.
    pub fn open_in_place(&mut self, message: &mut [u8]) -> Result<usize, LinkError> {
        self.check(message.len())?;
        let r = self
            .cipher
            .decrypt_with_ad_in_place(&[], message, message.len());
        self.settle(r)
    }

    /// Records opened so far, which is also the next record's nonce.
    pub fn records(&self) -> u64 {
        self.cipher.get_nonce()
    }

    /// Checks a message length and returns its plaintext length.
    fn check(&self, len: usize) -> Result<usize, LinkError> {
        if self.failed {
            return Err(LinkError::Decrypt);
        }
        if !(MIN_MESSAGE..=MAX_MESSAGE).contains(&len) {
            return Err(LinkError::BadLength(len));
        }
        Ok(len - TAG_LEN)
    }

    /// A failed record ends the link: nothing after it is opened either.
    fn settle(&mut self, r: Result<usize, CipherError>) -> Result<usize, LinkError> {
        r.map_err(|e| {
            self.failed = true;
            cipher_error(e)
        })
    }
}

/// Splits a byte stream into records, checking each length as soon as it arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordReader {
    /// The exact length of the next message, while it is a handshake message.
    handshake: Option<usize>,
}

impl RecordReader {
    /// A reader for the relay: the first message must be a [`REQUEST_LEN`]-byte request.
    pub const fn responder() -> Self {
        RecordReader {
            handshake: Some(REQUEST_LEN),
        }
    }

    /// A reader for a node: the first message must be a [`RESPONSE_LEN`]-byte response.
    pub const fn initiator() -> Self {
        RecordReader {
            handshake: Some(RESPONSE_LEN),
        }
    }

    /// A reader of transport records only.
    pub const fn transport() -> Self {
        RecordReader { handshake: None }
    }

    /// Splits the first record off `buf`: its message and the bytes the record used, or
    /// `None` if the record is not complete yet.
    ///
    /// A bad length is refused as soon as the length field is in, before the body. After a
    /// record is returned the caller must drop `used` bytes before the next call.
    pub fn split<'a>(&mut self, buf: &'a [u8]) -> Result<Option<(&'a [u8], usize)>, LinkError> {
        let Some(header) = buf.first_chunk::<HEADER_LEN>() else {
            return Ok(None);
        };
        let n = usize::from(u16::from_be_bytes(*header));
        if n < MIN_MESSAGE || self.handshake.is_some_and(|len| len != n) {
            return Err(LinkError::BadLength(n));
        }
        let Some(message) = buf.get(HEADER_LEN..HEADER_LEN + n) else {
            return Ok(None);
        };
        self.handshake = None;
        Ok(Some((message, HEADER_LEN + n)))
    }
}

#[cfg(test)]
mod tests {
    // Test code only: each unwrap() is an assertion on a fixture, never on network input.
    extern crate std;

    use super::*;
    use crate::crypto::public_key;
    use std::vec;
    use std::vec::Vec;

    const GROUP: [u8; 16] = [1; 16];
    const SESSION: [u8; 16] = [2; 16];
    const NODE: [u8; 32] = [3; 32];
    const RELAY: [u8; 32] = [4; 32];
    const NODE_E: [u8; 32] = [5; 32];
    const RELAY_E: [u8; 32] = [6; 32];

    /// The prologue as docs/protocol.md §1 writes it, built apart from [`prologue`].
    fn spec_prologue() -> Vec<u8> {
        [b"dissent-rs v1 link".as_slice(), &GROUP, &SESSION].concat()
    }

    fn snow_builder<'a>(
        secret: &'a [u8; 32],
        ephemeral: &'a [u8; 32],
        pro: &'a [u8],
    ) -> snow::Builder<'a> {
        snow::Builder::new("Noise_IK_25519_ChaChaPoly_BLAKE2s".parse().unwrap())
            .local_private_key(secret)
            .fixed_ephemeral_key_for_testing_only(ephemeral)
            .prologue(pro)
    }

    fn initiator() -> Initiator {
        Initiator::new(&NODE, &public_key(&RELAY), &GROUP, &SESSION, NODE_E).unwrap()
    }

    fn responder() -> Responder {
        Responder::new(&RELAY, &GROUP, &SESSION, RELAY_E).unwrap()
    }

    /// Runs a core handshake; returns (node, relay) transports.
    fn core_pair() -> (Transport, Transport) {
        let mut node = initiator();
        let mut relay = responder();
        let mut buf = [0u8; 128];
        let n = node.write_request(&mut buf).unwrap();
        let (req, _) = RecordReader::responder().split(&buf[..n]).unwrap().unwrap();
        assert_eq!(relay.read_request(req).unwrap(), public_key(&NODE));
        let mut out = [0u8; 128];
        let (m, relay) = relay.write_response(&mut out).unwrap();
        let (resp, _) = RecordReader::initiator().split(&out[..m]).unwrap().unwrap();
        (node.read_response(resp).unwrap(), relay)
    }

    fn seal_vec(t: &mut Transport, plain: &[u8]) -> Vec<u8> {
        let mut out = vec![0u8; plain.len() + OVERHEAD];
        let n = t.seal(plain, &mut out).unwrap();
        assert_eq!(n, out.len());
        out
    }

    fn open_vec(t: &mut Transport, record: &[u8]) -> Result<Vec<u8>, LinkError> {
        let (msg, used) = RecordReader::transport().split(record)?.unwrap();
        assert_eq!(used, record.len());
        let mut out = vec![0u8; msg.len()];
        let n = t.open(msg, &mut out)?;
        out.truncate(n);
        Ok(out)
    }

    /// Wraps a snow message into a record.
    fn record(msg: &[u8]) -> Vec<u8> {
        let mut r = (msg.len() as u16).to_be_bytes().to_vec();
        r.extend_from_slice(msg);
        r
    }

    #[test]
    fn names_and_lengths_match_the_protocol() {
        let hs = initiator();
        assert_eq!(hs.hs.get_name().as_str(), NOISE_PARAMS);
        assert_eq!(REQUEST_LEN, 96);
        assert_eq!(RESPONSE_LEN, 48);
        assert_eq!(MAX_PLAINTEXT, 65519);
        let p = prologue(&GROUP, &SESSION);
        assert_eq!(&p[..18], b"dissent-rs v1 link");
        assert_eq!(&p[18..34], &GROUP);
        assert_eq!(&p[34..], &SESSION);
    }

    #[test]
    fn core_initiator_speaks_snow_byte_for_byte() {
        let pro = spec_prologue();
        let relay_pub = public_key(&RELAY);
        // A snow initiator with the same keys and ephemeral entropy as the core one.
        let mut twin = snow_builder(&NODE, &NODE_E, &pro)
            .remote_public_key(&relay_pub)
            .build_initiator()
            .unwrap();
        let mut relay = snow_builder(&RELAY, &RELAY_E, &pro)
            .build_responder()
            .unwrap();
        let mut node = initiator();

        let mut req = [0u8; 128];
        let n = node.write_request(&mut req).unwrap();
        assert_eq!(n, HEADER_LEN + REQUEST_LEN);
        let mut snow_req = [0u8; 128];
        let m = twin.write_message(&[], &mut snow_req).unwrap();
        assert_eq!(&req[..n], record(&snow_req[..m]).as_slice());

        let mut payload = [0u8; 64];
        assert_eq!(relay.read_message(&req[2..n], &mut payload).unwrap(), 0);
        assert_eq!(relay.get_remote_static().unwrap(), &public_key(&NODE));
        let mut resp = [0u8; 128];
        let m = relay.write_message(&[], &mut resp).unwrap();
        assert_eq!(m, RESPONSE_LEN);
        twin.read_message(&resp[..m], &mut payload).unwrap();
        let mut node = node.read_response(&resp[..m]).unwrap();
        assert_eq!(node.handshake_hash().as_slice(), relay.get_handshake_hash());
        assert_eq!(twin.get_handshake_hash(), relay.get_handshake_hash());

        let mut twin = twin.into_transport_mode().unwrap();
        let mut relay = relay.into_transport_mode().unwrap();
        let mut buf = vec![0u8; MAX_MESSAGE];
        for plain in [&b"hello"[..], &[], &[0xAB; MAX_PLAINTEXT]] {
            // Node → relay: identical to snow's record, and snow opens it.
            let rec = seal_vec(&mut node, plain);
            let m = twin.write_message(plain, &mut buf).unwrap();
            assert_eq!(rec, record(&buf[..m]));
            let m = relay.read_message(&rec[2..], &mut buf).unwrap();
            assert_eq!(&buf[..m], plain);
            // Relay → node.
            let m = relay.write_message(plain, &mut buf).unwrap();
            assert_eq!(open_vec(&mut node, &record(&buf[..m])).unwrap(), plain);
        }
    }

    #[test]
    fn core_responder_speaks_snow_byte_for_byte() {
        let pro = spec_prologue();
        let relay_pub = public_key(&RELAY);
        let mut node = snow_builder(&NODE, &NODE_E, &pro)
            .remote_public_key(&relay_pub)
            .build_initiator()
            .unwrap();
        let mut twin = snow_builder(&RELAY, &RELAY_E, &pro)
            .build_responder()
            .unwrap();
        let mut relay = responder();

        let mut req = [0u8; 128];
        let m = node.write_message(&[], &mut req).unwrap();
        let rec = record(&req[..m]);
        let (msg, _) = RecordReader::responder().split(&rec).unwrap().unwrap();
        assert_eq!(relay.peer(), None);
        assert_eq!(relay.read_request(msg).unwrap(), public_key(&NODE));
        assert_eq!(relay.peer(), Some(&public_key(&NODE)));
        let mut payload = [0u8; 64];
        twin.read_message(msg, &mut payload).unwrap();

        let mut resp = [0u8; 128];
        let (n, mut relay) = relay.write_response(&mut resp).unwrap();
        let m = twin.write_message(&[], &mut payload).unwrap();
        assert_eq!(&resp[..n], record(&payload[..m]).as_slice());
        node.read_message(&resp[2..n], &mut payload).unwrap();
        assert_eq!(relay.handshake_hash().as_slice(), node.get_handshake_hash());

        let mut twin = twin.into_transport_mode().unwrap();
        let mut node = node.into_transport_mode().unwrap();
        let mut buf = vec![0u8; MAX_MESSAGE];
        for plain in [&b"hello"[..], &[7; 1000], &[]] {
            let rec = seal_vec(&mut relay, plain);
            let m = twin.write_message(plain, &mut buf).unwrap();
            assert_eq!(rec, record(&buf[..m]));
            let m = node.read_message(&rec[2..], &mut buf).unwrap();
            assert_eq!(&buf[..m], plain);
            let m = node.write_message(plain, &mut buf).unwrap();
            assert_eq!(open_vec(&mut relay, &record(&buf[..m])).unwrap(), plain);
        }
    }

    #[test]
    fn halves_and_in_place_variants_agree() {
        let (node, relay) = core_pair();
        let (mut tx, _) = node.split();
        let (_, mut rx) = relay.split();
        let mut buf = [0u8; 64];
        buf[2..7].copy_from_slice(b"hello");
        let n = tx.seal_in_place(&mut buf, 5).unwrap();
        assert_eq!(n, 5 + OVERHEAD);
        let m = rx.open_in_place(&mut buf[2..n]).unwrap();
        assert_eq!(&buf[2..2 + m], b"hello");
        let mut out = [0u8; 64];
        let n = tx.seal(b"world", &mut out).unwrap();
        let mut plain = [0u8; 5];
        assert_eq!(rx.open(&out[2..n], &mut plain).unwrap(), 5);
        assert_eq!(&plain, b"world");
        assert_eq!((tx.records(), rx.records()), (2, 2));
    }

    #[test]
    fn tampered_records_are_refused() {
        let (mut node, mut relay) = core_pair();
        let rec = seal_vec(&mut node, b"attack at dawn");
        // Every single-bit change in the message fails, and the link stays failed.
        for i in 2..rec.len() {
            let (mut n2, mut r2) = core_pair();
            let good = seal_vec(&mut n2, b"attack at dawn");
            assert_eq!(good, rec);
            let mut bad = good.clone();
            bad[i] ^= 0x10;
            assert_eq!(open_vec(&mut r2, &bad), Err(LinkError::Decrypt));
            assert_eq!(open_vec(&mut r2, &good), Err(LinkError::Decrypt));
        }
        // A truncated message (length field adjusted) fails too.
        let cut = record(&rec[2..rec.len() - 1]);
        assert_eq!(open_vec(&mut relay, &cut), Err(LinkError::Decrypt));
        // Tampered handshake messages.
        let mut hs = initiator();
        let mut req = [0u8; 128];
        let n = hs.write_request(&mut req).unwrap();
        for i in [2, 40, n - 1] {
            let mut bad = req;
            bad[i] ^= 1;
            let mut r = responder();
            assert_eq!(r.read_request(&bad[2..n]), Err(LinkError::Decrypt));
            assert_eq!(r.peer(), None);
            assert_eq!(
                r.write_response(&mut [0u8; 128]).err(),
                Some(LinkError::OutOfOrder)
            );
        }
        let mut r = responder();
        r.read_request(&req[2..n]).unwrap();
        let mut resp = [0u8; 64];
        let (m, _) = r.write_response(&mut resp).unwrap();
        resp[m - 1] ^= 1;
        assert_eq!(
            hs.read_response(&resp[2..m]).err(),
            Some(LinkError::Decrypt)
        );
    }

    #[test]
    fn replayed_and_reordered_records_are_refused() {
        let (mut node, _) = core_pair();
        let first = seal_vec(&mut node, b"one");
        let second = seal_vec(&mut node, b"two");
        // Replay.
        let (_, mut relay) = core_pair();
        assert_eq!(open_vec(&mut relay, &first).unwrap(), b"one");
        assert_eq!(open_vec(&mut relay, &first), Err(LinkError::Decrypt));
        assert_eq!(open_vec(&mut relay, &second), Err(LinkError::Decrypt));
        // Reorder.
        let (_, mut relay) = core_pair();
        assert_eq!(open_vec(&mut relay, &second), Err(LinkError::Decrypt));
        assert_eq!(open_vec(&mut relay, &first), Err(LinkError::Decrypt));
        // In order.
        let (_, mut relay) = core_pair();
        assert_eq!(open_vec(&mut relay, &first).unwrap(), b"one");
        assert_eq!(open_vec(&mut relay, &second).unwrap(), b"two");
        // A record reflected back to its sender.
        let (mut node, _) = core_pair();
        let _ = seal_vec(&mut node, b"x");
        let (mut n2, _) = core_pair();
        let own = seal_vec(&mut n2, b"x");
        assert_eq!(open_vec(&mut node, &own), Err(LinkError::Decrypt));
    }

    #[test]
    fn wrong_relay_key_or_session_or_stranger_is_refused() {
        let mut buf = [0u8; 128];
        // The node encrypts to another relay key.
        let mut node =
            Initiator::new(&NODE, &public_key(&[9; 32]), &GROUP, &SESSION, NODE_E).unwrap();
        let n = node.write_request(&mut buf).unwrap();
        assert_eq!(
            responder().read_request(&buf[2..n]),
            Err(LinkError::Decrypt)
        );
        // Another session (prologue).
        let mut node =
            Initiator::new(&NODE, &public_key(&RELAY), &GROUP, &[7; 16], NODE_E).unwrap();
        let n = node.write_request(&mut buf).unwrap();
        assert_eq!(
            responder().read_request(&buf[2..n]),
            Err(LinkError::Decrypt)
        );
        // A stranger gets through the request with its own key, which the relay sees.
        let mut stranger =
            Initiator::new(&[8; 32], &public_key(&RELAY), &GROUP, &SESSION, NODE_E).unwrap();
        let n = stranger.write_request(&mut buf).unwrap();
        let mut relay = responder();
        let key = relay.read_request(&buf[2..n]).unwrap();
        assert_eq!(key, public_key(&[8; 32]));
        assert_ne!(key, public_key(&NODE));
        // Someone without the relay's secret cannot read the request.
        let n = initiator().write_request(&mut buf).unwrap();
        let mut impostor = Responder::new(&[9; 32], &GROUP, &SESSION, RELAY_E).unwrap();
        assert_eq!(impostor.read_request(&buf[2..n]), Err(LinkError::Decrypt));
        // Even replaying the real relay's response to an earlier request fails.
        let mut relay = responder();
        relay.read_request(&buf[2..n]).unwrap();
        let (m, _) = relay.write_response(&mut buf).unwrap();
        let resp = buf;
        let mut other =
            Initiator::new(&NODE, &public_key(&RELAY), &GROUP, &SESSION, [0x55; 32]).unwrap();
        other.write_request(&mut buf).unwrap();
        assert_eq!(
            other.read_response(&resp[2..m]).err(),
            Some(LinkError::Decrypt)
        );
    }

    #[test]
    fn bad_lengths_are_refused_before_the_body() {
        // A responder's first record must be exactly 96 bytes: refused on the header alone.
        for len in [0u16, 15, 16, 95, 97, 65535] {
            let header = len.to_be_bytes();
            assert_eq!(
                RecordReader::responder().split(&header),
                Err(LinkError::BadLength(len.into()))
            );
        }
        assert_eq!(
            RecordReader::initiator().split(&[0, 96]),
            Err(LinkError::BadLength(96))
        );
        // Transport records: 16 ..= 65535.
        let mut rd = RecordReader::transport();
        for len in [0u16, 1, 15] {
            assert_eq!(
                rd.split(&len.to_be_bytes()),
                Err(LinkError::BadLength(len.into()))
            );
        }
        // Truncated: wait for more.
        assert_eq!(rd.split(&[]), Ok(None));
        assert_eq!(rd.split(&[0]), Ok(None));
        assert_eq!(rd.split(&[0xFF, 0xFF, 1, 2, 3]), Ok(None));
        let mut buf = vec![0u8; MAX_RECORD + 3];
        buf[..2].copy_from_slice(&[0xFF, 0xFF]);
        assert_eq!(rd.split(&buf), Ok(Some((&buf[2..MAX_RECORD], MAX_RECORD))));
        // After the handshake record, the reader takes transport records.
        let mut rd = RecordReader::responder();
        let mut two = vec![0u8, 96];
        two.extend([0u8; 96]);
        two.extend([0u8, 16]);
        two.extend([0u8; 16]);
        let (_, used) = rd.split(&two).unwrap().unwrap();
        assert_eq!(used, 98);
        assert_eq!(rd.split(&two[used..]).unwrap().unwrap().1, 18);
        // Handshake messages of the wrong length, passed straight in.
        let mut r = responder();
        assert_eq!(r.read_request(&[0; 97]), Err(LinkError::BadLength(97)));
        assert_eq!(
            initiator().read_response(&[0; 49]).err(),
            Some(LinkError::BadLength(49))
        );
        // Oversized plaintexts, short buffers and short messages.
        let (mut node, mut relay) = core_pair();
        let big = vec![0u8; MAX_PLAINTEXT + 1];
        let mut out = vec![0u8; MAX_RECORD + 100];
        assert_eq!(
            node.seal(&big, &mut out),
            Err(LinkError::TooLong(MAX_PLAINTEXT + 1))
        );
        assert_eq!(
            node.seal(b"abc", &mut out[..20]),
            Err(LinkError::BufferTooSmall)
        );
        assert_eq!(
            initiator().write_request(&mut [0u8; 97]),
            Err(LinkError::BufferTooSmall)
        );
        let rec = seal_vec(&mut node, b"abc");
        assert_eq!(
            relay.open(&rec[2..], &mut [0u8; 2]),
            Err(LinkError::BufferTooSmall)
        );
        assert_eq!(
            relay.open(&rec[2..17], &mut out),
            Err(LinkError::BadLength(15))
        );
        // Nothing was consumed by the refusals above: the record still opens.
        assert_eq!(open_vec(&mut relay, &rec).unwrap(), b"abc");
    }

    #[test]
    fn handshake_steps_out_of_order_are_refused() {
        let mut node = initiator();
        let mut buf = [0u8; 128];
        node.write_request(&mut buf).unwrap();
        assert_eq!(node.write_request(&mut buf), Err(LinkError::OutOfOrder));
        assert_eq!(
            initiator().read_response(&[0; RESPONSE_LEN]).err(),
            Some(LinkError::OutOfOrder)
        );
        let mut relay = responder();
        assert_eq!(
            responder().write_response(&mut buf).err(),
            Some(LinkError::OutOfOrder)
        );
        let n = initiator().write_request(&mut buf).unwrap();
        relay.read_request(&buf[2..n]).unwrap();
        assert_eq!(relay.read_request(&buf[2..n]), Err(LinkError::OutOfOrder));
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let mut rand = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut out = vec![0u8; MAX_MESSAGE];
        let mut buf = vec![0u8; 400];
        for round in 0..2000 {
            let len = match round % 4 {
                0 => REQUEST_LEN,
                1 => RESPONSE_LEN,
                _ => (rand() % 400) as usize,
            };
            let bytes = &mut buf[..len];
            bytes.iter_mut().for_each(|b| *b = rand() as u8);
            for mut rd in [
                RecordReader::responder(),
                RecordReader::initiator(),
                RecordReader::transport(),
            ] {
                let _ = rd.split(bytes);
            }
            let mut r = responder();
            assert!(r.read_request(bytes).is_err());
            let mut i = initiator();
            let mut req = [0u8; 128];
            i.write_request(&mut req).unwrap();
            assert!(i.read_response(bytes).is_err());
            let opener = || Opener {
                cipher: CipherState::new(&[7; 32], 0),
                failed: false,
            };
            let expect = match len {
                0..MIN_MESSAGE => LinkError::BadLength(len),
                _ => LinkError::Decrypt,
            };
            assert_eq!(opener().open(bytes, &mut out), Err(expect));
            assert_eq!(opener().open_in_place(&mut bytes.to_vec()), Err(expect));
        }
    }

    #[test]
    fn states_fit_a_device() {
        use core::mem::size_of;
        std::println!(
            "Initiator {} B, Responder {} B, Transport {} B, Sealer {} B, Opener {} B",
            size_of::<Initiator>(),
            size_of::<Responder>(),
            size_of::<Transport>(),
            size_of::<Sealer>(),
            size_of::<Opener>()
        );
        assert!(size_of::<Initiator>() <= 1024);
        assert!(size_of::<Responder>() <= 1024);
        assert!(size_of::<Transport>() <= 256);
        assert!(size_of::<RecordReader>() <= 16);
    }
}
