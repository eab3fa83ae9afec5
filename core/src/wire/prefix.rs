//! Frame prefixes of messages whose last field the caller writes in place (cells,
//! confirmations, member lists), so a cell's ciphertext is computed where it is sent.
//!
//! Owns producing exactly the bytes [`Message::emit_frame`] would, up to the last field. It
//! must not write that field.

use serde::Serialize;

#[cfg(doc)]
use super::Message;
use super::{WireError, FRAME_HEADER_LEN, MAX_FRAME_BODY};

/// A message whose last field is bytes the caller writes in place, right after the frame
/// prefix [`Prefix::emit`] writes.
///
/// The prefix is exactly what [`Message::emit_frame`] would write before that field, so a
/// node computes a cell's ciphertext (or a trustee its MACs) where the frame is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prefix {
    /// [`Message::Members`]: `NONCE_LEN + MAC_LEN` bytes per member follow.
    Members {
        /// The interval.
        interval: u32,
        /// Position of the first entry among the interval's members.
        first: u32,
    },
    /// [`Message::Confirm`]: `MAC_LEN` bytes per member follow.
    Confirm {
        /// The interval.
        interval: u32,
        /// Position of the first entry among the interval's members.
        first: u32,
    },
    /// [`Message::Acks`]: `MAC_LEN` bytes per member follow.
    Acks {
        /// The interval.
        interval: u32,
        /// Position of the first entry among the interval's members.
        first: u32,
    },
    /// [`Message::Cell`]: the cell follows.
    Cell {
        /// Interval of the exchange.
        interval: u32,
        /// Exchange number.
        exchange: u64,
    },
}

/// Postcard's variant indices of the messages a [`Prefix`] starts; pinned by a test.
const MEMBERS_VARIANT: u32 = 5;
const CONFIRM_VARIANT: u32 = 8;
const CELL_VARIANT: u32 = 13;
const ACKS_VARIANT: u32 = 15;

impl Prefix {
    /// Writes the frame header and every field but the last, for a last field of `tail`
    /// bytes; returns where that field starts in `out`.
    ///
    /// Fails if `out` cannot hold the whole frame or the frame would exceed
    /// [`MAX_FRAME_BODY`].
    pub fn emit(&self, tail: usize, out: &mut [u8]) -> Result<usize, WireError> {
        let len = tail as u64;
        match *self {
            Prefix::Members { interval, first } => {
                emit_fields(&(MEMBERS_VARIANT, interval, first, len), tail, out)
            }
            Prefix::Confirm { interval, first } => {
                emit_fields(&(CONFIRM_VARIANT, interval, first, len), tail, out)
            }
            Prefix::Acks { interval, first } => {
                emit_fields(&(ACKS_VARIANT, interval, first, len), tail, out)
            }
            Prefix::Cell { interval, exchange } => {
                emit_fields(&(CELL_VARIANT, interval, exchange, len), tail, out)
            }
        }
    }
}

/// Encodes `fields` (ending with the byte length of the last field) after a frame header
/// sized for `tail` more bytes.
fn emit_fields<T: Serialize>(fields: &T, tail: usize, out: &mut [u8]) -> Result<usize, WireError> {
    let (header, rest) = out
        .split_first_chunk_mut::<FRAME_HEADER_LEN>()
        .ok_or(WireError::BufferTooSmall)?;
    let n = postcard::to_slice(fields, rest)
        .map_err(|_| WireError::BufferTooSmall)?
        .len();
    let body = n + tail;
    if body > MAX_FRAME_BODY {
        return Err(WireError::BadFrameLength(body as u32));
    }
    if rest.len() < body {
        return Err(WireError::BufferTooSmall);
    }
    *header = (body as u32).to_be_bytes();
    Ok(FRAME_HEADER_LEN + n)
}

/// Postcard's variant index of `Message::BlameReveal`; pinned by a test.
#[cfg(feature = "blame-round")]
const BLAME_REVEAL_VARIANT: u32 = 20;

/// Where the caller writes the fields of a `BlameReveal` frame laid out by
/// [`reveal_frame`]: each is a range of the output.
#[cfg(feature = "blame-round")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RevealFrame {
    /// The pad bits start here.
    pub pad_bits: usize,
    /// The 64-byte signature starts here.
    pub signature: usize,
    /// The cell starts here.
    pub cell: usize,
    /// The frame's whole length.
    pub len: usize,
}

/// Lays out a `BlameReveal` frame of `bits_len` bytes of pad bits, a signature and a cell
/// of `cell_len` bytes in `out`: writes the header and every other field, and says where
/// the three go, so a node recomputes its cell where the frame is sent and signs it there.
/// The bytes are exactly what [`Message::emit_frame`] would write.
#[cfg(feature = "blame-round")]
pub fn reveal_frame(
    interval: u32,
    exchange: u64,
    bit: u32,
    bits_len: usize,
    cell_len: usize,
    out: &mut [u8],
) -> Result<RevealFrame, WireError> {
    let (header, rest) = out
        .split_first_chunk_mut::<FRAME_HEADER_LEN>()
        .ok_or(WireError::BufferTooSmall)?;
    let mut at = 0;
    put(
        rest,
        &mut at,
        &(
            BLAME_REVEAL_VARIANT,
            interval,
            exchange,
            bit,
            bits_len as u64,
        ),
    )?;
    let pad_bits = at;
    at += bits_len;
    put(rest, &mut at, &64u64)?;
    let signature = at;
    at += 64;
    put(rest, &mut at, &(cell_len as u64))?;
    let cell = at;
    let body = at + cell_len;
    if body > MAX_FRAME_BODY {
        return Err(WireError::BadFrameLength(body as u32));
    }
    if rest.len() < body {
        return Err(WireError::BufferTooSmall);
    }
    *header = (body as u32).to_be_bytes();
    Ok(RevealFrame {
        pad_bits: FRAME_HEADER_LEN + pad_bits,
        signature: FRAME_HEADER_LEN + signature,
        cell: FRAME_HEADER_LEN + cell,
        len: FRAME_HEADER_LEN + body,
    })
}

/// Postcard-encodes `v` at `*at` in `rest` and moves `at` past it.
#[cfg(feature = "blame-round")]
fn put<T: Serialize>(rest: &mut [u8], at: &mut usize, v: &T) -> Result<(), WireError> {
    let dst = rest.get_mut(*at..).ok_or(WireError::BufferTooSmall)?;
    *at += postcard::to_slice(v, dst)
        .map_err(|_| WireError::BufferTooSmall)?
        .len();
    Ok(())
}

/// Longest frame of a cell of `cell_len` bytes.
pub const fn cell_frame_len(cell_len: usize) -> usize {
    // Variant (1) + interval (≤ 5) + exchange (≤ 10) + length varint (≤ 3).
    FRAME_HEADER_LEN + 19 + cell_len
}

#[cfg(test)]
mod tests {
    // Test code only: each unwrap() is an assertion on a fixture, never on network input.
    use super::*;

    use crate::wire::Message;

    #[test]
    fn prefixes_match_postcard() {
        for &(interval, exchange, len) in
            &[(0u32, 0u64, 16usize), (7, 1 << 40, 1024), (1, 2, 65535)]
        {
            let cell: std::vec::Vec<u8> = (0..len).map(|i| i as u8).collect();
            let mut a = std::vec![0u8; 65536 + 64];
            let mut b = std::vec![0u8; 65536 + 64];
            let n = Message::Cell {
                interval,
                exchange,
                cell: &cell,
            }
            .emit_frame(&mut a)
            .unwrap();
            let p = Prefix::Cell { interval, exchange }
                .emit(len, &mut b)
                .unwrap();
            b[p..p + len].copy_from_slice(&cell);
            assert_eq!(p + len, n);
            assert_eq!(a[..n], b[..n]);
            assert!(n <= cell_frame_len(len));
        }
        let macs = [0xABu8; 48];
        let mut a = [0u8; 128];
        let mut b = [0u8; 128];
        let n = Message::Confirm {
            interval: 9,
            first: 300,
            macs: &macs,
        }
        .emit_frame(&mut a)
        .unwrap();
        let p = Prefix::Confirm {
            interval: 9,
            first: 300,
        }
        .emit(48, &mut b)
        .unwrap();
        b[p..p + 48].copy_from_slice(&macs);
        assert_eq!(a[..n], b[..p + 48]);
        let n = Message::Acks {
            interval: 9,
            first: 300,
            macs: &macs,
        }
        .emit_frame(&mut a)
        .unwrap();
        let p = Prefix::Acks {
            interval: 9,
            first: 300,
        }
        .emit(48, &mut b)
        .unwrap();
        b[p..p + 48].copy_from_slice(&macs);
        assert_eq!(a[..n], b[..p + 48]);
        let entries = [0xCDu8; 64];
        let n = Message::Members {
            interval: 9,
            first: 2,
            entries: &entries,
        }
        .emit_frame(&mut a)
        .unwrap();
        let p = Prefix::Members {
            interval: 9,
            first: 2,
        }
        .emit(64, &mut b)
        .unwrap();
        b[p..p + 64].copy_from_slice(&entries);
        assert_eq!(a[..n], b[..p + 64]);
    }

    #[cfg(feature = "blame-round")]
    #[test]
    fn reveal_frames_match_postcard() {
        for &(bits_len, cell_len) in &[(1usize, 16usize), (2, 1024), (130, 300)] {
            let bits: std::vec::Vec<u8> = (0..bits_len).map(|i| i as u8 ^ 0x5a).collect();
            let cell: std::vec::Vec<u8> = (0..cell_len).map(|i| i as u8).collect();
            let sig = [0x77u8; 64];
            let mut a = std::vec![0u8; 4096];
            let mut b = std::vec![0u8; 4096];
            let n = Message::BlameReveal {
                interval: 7,
                exchange: 1 << 33,
                bit: 70_000,
                pad_bits: &bits,
                signature: &sig,
                cell: &cell,
            }
            .emit_frame(&mut a)
            .unwrap();
            let f = reveal_frame(7, 1 << 33, 70_000, bits_len, cell_len, &mut b).unwrap();
            b[f.pad_bits..f.pad_bits + bits_len].copy_from_slice(&bits);
            b[f.signature..f.signature + 64].copy_from_slice(&sig);
            b[f.cell..f.cell + cell_len].copy_from_slice(&cell);
            assert_eq!(f.len, n);
            assert_eq!(a[..n], b[..n]);
        }
        let mut small = [0u8; 40];
        assert_eq!(
            reveal_frame(1, 2, 3, 1, 16, &mut small),
            Err(WireError::BufferTooSmall)
        );
    }

    #[test]
    fn frames_that_do_not_fit_are_refused() {
        let cell = Prefix::Cell {
            interval: 1,
            exchange: 2,
        };
        // The whole frame must fit, not only the prefix.
        let mut out = [0u8; 20];
        assert_eq!(cell.emit(16, &mut out), Err(WireError::BufferTooSmall));
        assert_eq!(cell.emit(8, &mut out), Ok(8));
        assert_eq!(cell.emit(0, &mut out[..3]), Err(WireError::BufferTooSmall));
        let mut big = std::vec![0u8; MAX_FRAME_BODY + 64];
        // Variant, interval and exchange take a byte each, the length varint three.
        assert_eq!(
            cell.emit(MAX_FRAME_BODY, &mut big),
            Err(WireError::BadFrameLength(MAX_FRAME_BODY as u32 + 6))
        );
    }
}
