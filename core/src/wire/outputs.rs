//! Exchange outputs: what the relay decoded, reported to every node so all run the same
//! schedule.
//!
//! ```text
//! Output = 0x00 | Next (u16 BE)
//!        | 0x01 | bitmap (ceil(slots / 8) bytes)
//!        | 0x02 | count (u16 BE) | slot (u16 BE) × count, strictly increasing
//!        | 0x03 | digest (16)
//! ```
//!
//! `0x03` reports a disrupted slot exchange (its cell did not verify): `digest` is
//! [`disrupted_digest`] of the exchange and its decoded cell, which the relay sends to every
//! member in a `Disrupted` frame before the request that reports it.
//!
//! Owns the output list's parse ([`OutputsView`]) and emit. It must not apply outputs to a
//! schedule (that is [`crate::schedule`]'s).

use crate::bits::{bitmap_len, Bits};
use crate::field;

use super::WireError;

const OUT_NEXT: u8 = 0;
const OUT_BITMAP: u8 = 1;
const OUT_LIST: u8 = 2;
const OUT_DISRUPTED: u8 = 3;

/// Bytes of a disrupted exchange's digest in its output.
pub const DISRUPTED_DIGEST_LEN: usize = 16;

const DISRUPTED_LABEL: &[u8] = b"dissent-rs v3 disrupted";

/// The digest a `Disrupted` output carries: the first 16 bytes of
/// `SHA-256("dissent-rs v3 disrupted" | interval (u32 BE) | exchange (u64 BE) | cell)`.
pub fn disrupted_digest(interval: u32, exchange: u64, cell: &[u8]) -> [u8; DISRUPTED_DIGEST_LEN] {
    use sha2::{Digest, Sha256};
    let h: [u8; 32] = Sha256::new()
        .chain_update(DISRUPTED_LABEL)
        .chain_update(interval.to_be_bytes())
        .chain_update(exchange.to_be_bytes())
        .chain_update(cell)
        .finalize()
        .into();
    let mut d = [0u8; DISRUPTED_DIGEST_LEN];
    d.copy_from_slice(
        h.get(..DISRUPTED_DIGEST_LEN)
            .unwrap_or(&[0; DISRUPTED_DIGEST_LEN]),
    );
    d
}

/// The slots a reservation exchange decoded to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requests<'a> {
    /// As a bitmap with one bit per slot.
    Bitmap(Bits<'a>),
    /// As a strictly increasing list of slots, `u16` big endian each.
    List(&'a [u8]),
}

impl<'a> Requests<'a> {
    /// The requesting slots in increasing order.
    pub fn iter(&self) -> impl Iterator<Item = u16> + 'a {
        let (bits, list) = match *self {
            Requests::Bitmap(b) => (Some(b), &[][..]),
            Requests::List(l) => (None, l),
        };
        bits.into_iter()
            .flat_map(|b| b.iter().map(|s| s as u16))
            .chain(list.chunks_exact(2).map(|c| field::u16_at(c, 0)))
    }
}

/// What the relay decoded in one exchange, as far as the schedule needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output<'a> {
    /// A slot's exchange decoded; its owner asks for `next` bytes next (0: release; a
    /// garbled exchange also reports 0).
    Next(u16),
    /// A reservation exchange decoded to these requests.
    Requests(Requests<'a>),
    /// A slot's exchange was disrupted: its cell did not verify. Nothing of it was
    /// delivered and the slot stays reserved at its length. The digest names the decoded
    /// cell ([`disrupted_digest`]).
    Disrupted(&'a [u8; DISRUPTED_DIGEST_LEN]),
}

/// A checked list of outputs in a request's `outputs` field.
///
/// ```text
/// Output = 0x00 | Next (u16 BE)
///        | 0x01 | bitmap (ceil(slots / 8) bytes)
///        | 0x02 | count (u16 BE) | slot (u16 BE) × count, strictly increasing
///        | 0x03 | digest (16)
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputsView<'a> {
    bytes: &'a [u8],
    slots: u16,
}

impl<'a> OutputsView<'a> {
    /// Checks an output list for a group with `slots` slots.
    pub fn parse(bytes: &'a [u8], slots: u16) -> Result<Self, WireError> {
        let view = OutputsView { bytes, slots };
        let mut it = view.raw_iter();
        for item in it.by_ref() {
            item?;
        }
        Ok(view)
    }

    /// The raw bytes (hashed into the transcript).
    pub const fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The outputs, in exchange order.
    pub fn iter(&self) -> impl Iterator<Item = Output<'a>> + 'a {
        self.raw_iter().map_while(|o| o.ok())
    }

    fn raw_iter(&self) -> impl Iterator<Item = Result<Output<'a>, WireError>> + 'a {
        let slots = self.slots;
        let mut rest = self.bytes;
        core::iter::from_fn(move || {
            let (&tag, tail) = rest.split_first()?;
            let parsed = match tag {
                OUT_NEXT => tail
                    .split_first_chunk::<2>()
                    .map(|(n, t)| (Output::Next(u16::from_be_bytes(*n)), t)),
                OUT_BITMAP => {
                    let n = bitmap_len(usize::from(slots));
                    (tail.len() >= n)
                        .then(|| tail.split_at(n))
                        .and_then(|(b, t)| {
                            Bits::new_checked(b, usize::from(slots))
                                .ok()
                                .map(|b| (Output::Requests(Requests::Bitmap(b)), t))
                        })
                }
                OUT_LIST => tail.split_first_chunk::<2>().and_then(|(c, t)| {
                    let n = usize::from(u16::from_be_bytes(*c)) * 2;
                    let (list, t) = (t.len() >= n).then(|| t.split_at(n))?;
                    let ok = list
                        .chunks_exact(2)
                        .map(|c| field::u16_at(c, 0))
                        .try_fold(None::<u16>, |prev, s| {
                            (s < slots && prev.is_none_or(|p| s > p)).then_some(Some(s))
                        })
                        .is_some();
                    ok.then_some((Output::Requests(Requests::List(list)), t))
                }),
                OUT_DISRUPTED => tail
                    .split_first_chunk::<DISRUPTED_DIGEST_LEN>()
                    .map(|(d, t)| (Output::Disrupted(d), t)),
                _ => None,
            };
            match parsed {
                Some((o, t)) => {
                    rest = t;
                    Some(Ok(o))
                }
                None => {
                    rest = &[];
                    Some(Err(WireError::BadOutputs))
                }
            }
        })
    }
}

/// Appends a `Next` output to `out` at `at`; returns the new end.
pub fn emit_next_output(out: &mut [u8], at: usize, next: u16) -> Result<usize, WireError> {
    let [hi, lo] = next.to_be_bytes();
    put_at(out, at, &[OUT_NEXT, hi, lo])
}

/// Appends a `Disrupted` output to `out` at `at`; returns the new end.
pub fn emit_disrupted_output(
    out: &mut [u8],
    at: usize,
    digest: &[u8; DISRUPTED_DIGEST_LEN],
) -> Result<usize, WireError> {
    let end = put_at(out, at, &[OUT_DISRUPTED])?;
    put_at(out, end, digest)
}

/// Appends a reservation output for the decoded request `bitmap`, in its shorter form.
pub fn emit_requests_output(out: &mut [u8], at: usize, bitmap: &[u8]) -> Result<usize, WireError> {
    let set = crate::bits::count(bitmap);
    if 3 + 2 * set < 1 + bitmap.len() {
        let end = at + 3 + 2 * set;
        let dst = out.get_mut(at..end).ok_or(WireError::BufferTooSmall)?;
        let (head, list) = dst.split_at_mut(3);
        let [hi, lo] = (set as u16).to_be_bytes();
        head.copy_from_slice(&[OUT_LIST, hi, lo]);
        let slots = bitmap.iter().enumerate().flat_map(|(byte, &b)| {
            (0..8usize).filter_map(move |bit| (b & (1 << bit) != 0).then_some(byte * 8 + bit))
        });
        for (entry, slot) in list.chunks_exact_mut(2).zip(slots) {
            entry.copy_from_slice(&(slot as u16).to_be_bytes());
        }
        Ok(end)
    } else {
        let end = at + 1 + bitmap.len();
        let dst = out.get_mut(at..end).ok_or(WireError::BufferTooSmall)?;
        let (tag, rest) = dst.split_at_mut(1);
        tag.copy_from_slice(&[OUT_BITMAP]);
        rest.copy_from_slice(bitmap);
        Ok(end)
    }
}

/// Writes `bytes` at `out[at..]`; returns where they end.
fn put_at(out: &mut [u8], at: usize, bytes: &[u8]) -> Result<usize, WireError> {
    let end = at + bytes.len();
    out.get_mut(at..end)
        .ok_or(WireError::BufferTooSmall)?
        .copy_from_slice(bytes);
    Ok(end)
}

/// Bytes of a `Disrupted` output.
pub const DISRUPTED_OUTPUT_LEN: usize = 1 + DISRUPTED_DIGEST_LEN;

/// Longest output list one request carries: at most one reservation bitmap, at most one
/// `Disrupted`, and a `Next` for every other exchange that can be waiting to be reported.
pub const fn max_outputs_len(slots: u16) -> usize {
    1 + bitmap_len(slots as usize) + DISRUPTED_OUTPUT_LEN + 3 * 2 * crate::MAX_WINDOW
}

#[cfg(test)]
mod tests {
    // Test code only: each unwrap() is an assertion on a fixture, never on network input.
    use super::*;

    #[test]
    fn outputs_round_trip_in_both_forms() {
        let mut out = [0u8; 64];
        let mut bitmap = [0u8; 4]; // 30 slots
        crate::bits::set(&mut bitmap, 3);
        crate::bits::set(&mut bitmap, 29);
        let at = emit_next_output(&mut out, 0, 512).unwrap();
        let at = emit_requests_output(&mut out, at, &bitmap).unwrap();
        // Two bits of 30: the list (3 + 4 bytes) is longer than the bitmap (1 + 4).
        assert_eq!(&out[..at], &[0, 2, 0, 1, 8, 0, 0, 0x20]);
        let dense = [0xFFu8, 0xFF, 0xFF, 0x3F];
        let at2 = emit_requests_output(&mut out, at, &dense).unwrap();
        let view = OutputsView::parse(&out[..at2], 30).unwrap();
        let mut it = view.iter();
        assert_eq!(it.next(), Some(Output::Next(512)));
        match it.next() {
            Some(Output::Requests(r)) => {
                let s: heapless::Vec<u16, 4> = r.iter().collect();
                assert_eq!(&s[..], &[3, 29]);
            }
            o => panic!("{o:?}"),
        }
        match it.next() {
            Some(Output::Requests(r)) => assert_eq!(r.iter().count(), 30),
            o => panic!("{o:?}"),
        }
        assert_eq!(it.next(), None);
        drop(it);
        // A disrupted exchange's digest.
        let digest = disrupted_digest(7, 9, b"cell");
        // Pinned in docs/protocol.md ("Exchange outputs").
        let hex: std::string::String = digest.iter().map(|b| std::format!("{b:02x}")).collect();
        assert_eq!(hex, "5fbc2f70bb08095a316565e3e5d4ceb8");
        let n = emit_disrupted_output(&mut out, 0, &digest).unwrap();
        assert_eq!(n, DISRUPTED_OUTPUT_LEN);
        assert_eq!(out[0], 3);
        let view = OutputsView::parse(&out[..n], 30).unwrap();
        assert_eq!(view.iter().next(), Some(Output::Disrupted(&digest)));
        assert_ne!(digest, disrupted_digest(7, 10, b"cell"));
        // A sparse list for many slots.
        let mut out = [0u8; 64];
        let mut big = [0u8; 1250];
        crate::bits::set(&mut big, 9_999);
        let n = emit_requests_output(&mut out, 0, &big).unwrap();
        assert_eq!(&out[..n], &[2, 0, 1, 0x27, 0x0F]);
        assert!(OutputsView::parse(&out[..n], 10_000).is_ok());
        assert_eq!(
            OutputsView::parse(&out[..n], 9_999),
            Err(WireError::BadOutputs)
        );
    }

    #[test]
    fn outputs_refuse_garbage() {
        for bad in [
            &[9u8][..],
            &[0, 1][..],
            &[1, 0xFF][..],
            &[2, 0, 2, 0, 5, 0, 5][..],
            &[2, 0, 2, 0, 5, 0, 4][..],
            &[2, 0, 1][..],
            &[3, 1, 2, 3][..],
        ] {
            assert_eq!(
                OutputsView::parse(bad, 30),
                Err(WireError::BadOutputs),
                "{bad:?}"
            );
        }
        assert!(OutputsView::parse(&[], 30).is_ok());
    }
}
