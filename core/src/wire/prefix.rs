//! Frame prefixes of messages whose last field the caller writes in place (cells,
//! confirmations, member lists), so a cell's ciphertext is computed where it is sent.
//!
//! Owns producing exactly the bytes [`super::Message::emit_frame`] would, up to the last
//! field. It must not write that field.

use serde::Serialize;

use super::{WireError, FRAME_HEADER_LEN, MAX_FRAME_BODY};
use crate::NONCE_LEN;

/// Postcard's variant index of [`Message::Cell`](super::Message::Cell); pinned by a test.
const CELL_VARIANT: u32 = 13;

/// Postcard's variant index of [`Message::Confirm`](super::Message::Confirm); pinned by a test.
const CONFIRM_VARIANT: u32 = 8;

/// Postcard's variant index of [`Message::Members`](super::Message::Members); pinned by a test.
const MEMBERS_VARIANT: u32 = 5;

/// Postcard's variant index of [`Message::Acks`](super::Message::Acks); pinned by a test.
const ACKS_VARIANT: u32 = 15;

/// Writes the frame prefix of a [`Message::Members`](super::Message::Members) with `count` entries; the caller writes
/// the entries (`NONCE_LEN + MAC_LEN` bytes each) right after the returned length.
pub fn emit_members_prefix(
    interval: u32,
    first: u32,
    count: usize,
    out: &mut [u8],
) -> Result<usize, WireError> {
    let len = count * (NONCE_LEN + crate::MAC_LEN);
    emit_prefix(&(MEMBERS_VARIANT, interval, first, len as u64), len, out)
}

/// Writes the frame prefix of a [`Message::Cell`](super::Message::Cell) with a `cell_len`-byte cell; the caller
/// writes the cell bytes right after the returned length.
///
/// Produces exactly the bytes `Message::Cell { .. }.emit_frame()` would, without needing
/// the cell to exist yet, so nodes can compute the ciphertext in place.
pub fn emit_cell_prefix(
    interval: u32,
    exchange: u64,
    cell_len: usize,
    out: &mut [u8],
) -> Result<usize, WireError> {
    emit_prefix(
        &(CELL_VARIANT, interval, exchange, cell_len as u64),
        cell_len,
        out,
    )
}

/// Writes the frame prefix of a [`Message::Confirm`](super::Message::Confirm) with `count` MACs; the caller writes
/// the MACs right after the returned length.
pub fn emit_confirm_prefix(
    interval: u32,
    first: u32,
    count: usize,
    out: &mut [u8],
) -> Result<usize, WireError> {
    let len = count * crate::MAC_LEN;
    emit_prefix(&(CONFIRM_VARIANT, interval, first, len as u64), len, out)
}

/// Writes the frame prefix of a [`Message::Acks`](super::Message::Acks) with `count` MACs; the caller writes
/// the MACs right after the returned length.
pub fn emit_acks_prefix(
    interval: u32,
    first: u32,
    count: usize,
    out: &mut [u8],
) -> Result<usize, WireError> {
    let len = count * crate::MAC_LEN;
    emit_prefix(&(ACKS_VARIANT, interval, first, len as u64), len, out)
}

/// Encodes `fields` (ending with the byte length of a trailing slice) after a frame
/// header sized for `tail` more bytes.
fn emit_prefix<T: Serialize>(fields: &T, tail: usize, out: &mut [u8]) -> Result<usize, WireError> {
    if out.len() < FRAME_HEADER_LEN {
        return Err(WireError::BufferTooSmall);
    }
    let n = postcard::to_slice(fields, &mut out[FRAME_HEADER_LEN..])
        .map_err(|_| WireError::BufferTooSmall)?
        .len();
    let body = n + tail;
    if body > MAX_FRAME_BODY {
        return Err(WireError::BadFrameLength(body as u32));
    }
    if out.len() < FRAME_HEADER_LEN + body {
        return Err(WireError::BufferTooSmall);
    }
    out[..FRAME_HEADER_LEN].copy_from_slice(&(body as u32).to_be_bytes());
    Ok(FRAME_HEADER_LEN + n)
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
    fn cell_prefix_matches_postcard() {
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
            let p = emit_cell_prefix(interval, exchange, len, &mut b).unwrap();
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
        let p = emit_confirm_prefix(9, 300, 3, &mut b).unwrap();
        b[p..p + 48].copy_from_slice(&macs);
        assert_eq!(a[..n], b[..p + 48]);
        let n = Message::Acks {
            interval: 9,
            first: 300,
            macs: &macs,
        }
        .emit_frame(&mut a)
        .unwrap();
        let p = emit_acks_prefix(9, 300, 3, &mut b).unwrap();
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
        let p = emit_members_prefix(9, 2, 2, &mut b).unwrap();
        b[p..p + 64].copy_from_slice(&entries);
        assert_eq!(a[..n], b[..p + 64]);
    }
}
