//! Short byte strings as points: an injective encoding for ElGamal plaintexts.
//!
//! A message of at most [`MAX_MESSAGE_LEN`] (30) bytes becomes a 32-byte candidate
//! encoding, tried with counters `k = 0, 1, …, 511` until one decodes to a point:
//!
//! ```text
//! byte 0       (k mod 128) · 2            even: a non-negative field element
//! bytes 1..=30 the message, then zeros
//! byte 31      len | (k div 128) << 5     len ≤ 30 in bits 0..=4, bit 7 clear
//! ```
//!
//! Byte 31 is at most 126, so the candidate is always a canonical field element (below
//! 2^255 − 19) and non-negative. Such a candidate is a valid Ristretto255 encoding with
//! probability about 1/4 (the group has about 2^252 elements, each with one non-negative
//! canonical encoding among about 2^254 such strings), so each counter fails with
//! probability about 3/4 and all 512 fail with probability about (3/4)^512 ≈ 2^-212:
//! [`encode`] then returns [`EncodingError::NoPoint`] instead of looping on.
//!
//! [`decode`] reads the message back and refuses a point that is not an encoding: a length
//! above 30, non-zero padding, or a counter that is not the first one that works (so every
//! message has exactly one point, and `decode(p) = m` only for `p = encode(m)`).

use curve25519_dalek::ristretto::{CompressedRistretto, RistrettoPoint};

/// Longest message [`encode`] takes.
pub const MAX_MESSAGE_LEN: usize = 30;
/// Counters tried before [`encode`] gives up.
pub const MAX_COUNTER: u16 = 512;

/// Why a message could not be encoded, or a point decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EncodingError {
    /// The message is longer than [`MAX_MESSAGE_LEN`].
    TooLong,
    /// No counter below [`MAX_COUNTER`] gives a point (probability about 2^-212).
    NoPoint,
    /// The point is not the encoding of any message.
    NotAnEncoding,
}

impl core::fmt::Display for EncodingError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            EncodingError::TooLong => "message longer than 30 bytes",
            EncodingError::NoPoint => "no counter gives a point for this message",
            EncodingError::NotAnEncoding => "point is not the encoding of a message",
        })
    }
}

impl core::error::Error for EncodingError {}

/// A message of at most 30 bytes: what [`decode`] returns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    bytes: heapless::Vec<u8, MAX_MESSAGE_LEN>,
}

impl Message {
    /// Refuses a message longer than [`MAX_MESSAGE_LEN`].
    fn new(message: &[u8]) -> Result<Self, EncodingError> {
        let bytes = heapless::Vec::from_slice(message).map_err(|_| EncodingError::TooLong)?;
        Ok(Self { bytes })
    }

    /// The message bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }
}

fn candidate(message: &Message, counter: u16) -> [u8; 32] {
    let mut bytes = [0u8; 32];
    let [first, padded @ .., last] = &mut bytes;
    for (byte, m) in padded.iter_mut().zip(message.as_bytes()) {
        *byte = *m;
    }
    // Both fit: counter < 512 and the length is at most 30.
    *first = ((counter & 0x7f) as u8) << 1;
    *last = message.bytes.len() as u8 | (((counter >> 7) as u8) << 5);
    bytes
}

fn first_point(message: &Message) -> Result<(u16, RistrettoPoint), EncodingError> {
    for counter in 0..MAX_COUNTER {
        if let Some(point) = CompressedRistretto(candidate(message, counter)).decompress() {
            return Ok((counter, point));
        }
    }
    Err(EncodingError::NoPoint)
}

/// The point that encodes `message`.
pub fn encode(message: &[u8]) -> Result<RistrettoPoint, EncodingError> {
    first_point(&Message::new(message)?).map(|(_, point)| point)
}

/// The message a point encodes; refuses every point that is not some `encode(m)`.
pub fn decode(point: &RistrettoPoint) -> Result<Message, EncodingError> {
    let [first, padded @ .., last] = point.compress().to_bytes();
    let len = usize::from(last & 0x1f);
    let (message, padding) = padded
        .split_at_checked(len)
        .ok_or(EncodingError::NotAnEncoding)?;
    if padding.iter().any(|&b| b != 0) {
        return Err(EncodingError::NotAnEncoding);
    }
    let counter = u16::from(first >> 1) | (u16::from(last >> 5) << 7);
    let message = Message::new(message).map_err(|_| EncodingError::NotAnEncoding)?;
    match first_point(&message) {
        Ok((first, _)) if first == counter => Ok(message),
        _ => Err(EncodingError::NotAnEncoding),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use curve25519_dalek::constants::RISTRETTO_BASEPOINT_POINT;
    use curve25519_dalek::traits::Identity;

    #[test]
    fn round_trips_every_length_and_refuses_non_encodings() {
        let mut seen = std::vec::Vec::new();
        for len in 0..=MAX_MESSAGE_LEN {
            let fills: &[u8] = if len == 0 { &[0] } else { &[0, 0x5a, 0xff] };
            for &fill in fills {
                let message = [fill; MAX_MESSAGE_LEN];
                let point = encode(&message[..len]).unwrap();
                assert_eq!(decode(&point).unwrap().as_bytes(), &message[..len]);
                seen.push(point.compress());
            }
        }
        // Distinct messages, distinct points (the zero-filled ones differ by length).
        let mut sorted = seen.clone();
        sorted.sort_by_key(|c| c.to_bytes());
        sorted.dedup();
        assert_eq!(sorted.len(), seen.len());

        assert_eq!(encode(&[0; 31]), Err(EncodingError::TooLong));
        // The base point's encoding has a length field of 0x76 & 0x1f = 22 and non-zero
        // padding; the identity encodes the empty message with counter 0 only if that is
        // the first counter that works for it.
        assert_eq!(
            decode(&RISTRETTO_BASEPOINT_POINT),
            Err(EncodingError::NotAnEncoding)
        );
        let empty = encode(&[]).unwrap();
        assert_eq!(
            decode(&RistrettoPoint::identity()).is_ok(),
            empty == RistrettoPoint::identity()
        );
    }

    #[test]
    fn a_later_counter_is_not_an_encoding() {
        // Find a message whose second working counter exists, and show it is refused.
        let message = b"accuse slot 7";
        let (first, point) = first_point(&Message::new(message).unwrap()).unwrap();
        assert_eq!(decode(&point).unwrap().as_bytes(), message);
        let later = (first + 1..MAX_COUNTER)
            .find_map(|k| {
                CompressedRistretto(candidate(&Message::new(message).unwrap(), k)).decompress()
            })
            .unwrap();
        assert_eq!(decode(&later), Err(EncodingError::NotAnEncoding));
    }
}
