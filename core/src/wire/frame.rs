//! Frames: `Length (u32 BE) ‖ Body`, the unit every link carries.
//!
//! [`FrameReader`] finds whole frames in the plaintext a shell has received, in the manner
//! of rustls's unbuffered API: the shell keeps the bytes in its own buffer, the reader says
//! where the first frame's body is and how many bytes to discard once the body is used, and
//! a length prefix the protocol or the shell's buffer cannot take is an error as soon as it
//! is in. The hosted link and the device's stream both read frames with it.
//!
//! Owns the frame header and finding whole frames in a byte stream. It must not look
//! inside a body (that is `message.rs`'s) or hold any bytes.

use super::{WireError, FRAME_HEADER_LEN, MAX_FRAME_BODY};

/// Finds whole frames at the front of the bytes a shell holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameReader {
    /// Longest frame (header included) the shell's buffer takes.
    capacity: usize,
}

/// What the bytes held start with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum FrameStatus<'a> {
    /// A whole frame. Once done with `body`, drop `discard` bytes (header and body) from the
    /// front of what is held.
    Frame {
        /// The frame's body.
        body: &'a [u8],
        /// Bytes the frame takes.
        discard: usize,
    },
    /// No whole frame yet: at least `needed` more bytes must arrive.
    Incomplete {
        /// Bytes still missing from the first frame (or from its header).
        needed: usize,
    },
}

impl FrameReader {
    /// A reader for frames of up to `capacity` bytes, header included: the length of the
    /// shell's buffer (longer frames are refused on their header, never half-read).
    pub const fn new(capacity: usize) -> Self {
        FrameReader { capacity }
    }

    /// A reader for every frame the protocol allows, for a buffer that grows to hold it.
    pub const fn unbounded() -> Self {
        FrameReader::new(FRAME_HEADER_LEN + MAX_FRAME_BODY)
    }

    /// Looks at the front of `held`: a whole frame, or how much more is needed.
    ///
    /// Fails on a length prefix of zero or above [`MAX_FRAME_BODY`]
    /// ([`WireError::BadFrameLength`]), or of a frame longer than the reader's capacity
    /// ([`WireError::FrameTooLarge`]). Either ends the link.
    pub fn read<'a>(&self, held: &'a [u8]) -> Result<FrameStatus<'a>, WireError> {
        let Some((header, rest)) = held.split_first_chunk::<FRAME_HEADER_LEN>() else {
            return Ok(FrameStatus::Incomplete {
                needed: FRAME_HEADER_LEN - held.len(),
            });
        };
        let n = frame_body_len(*header)?;
        if FRAME_HEADER_LEN + n > self.capacity {
            return Err(WireError::FrameTooLarge(FRAME_HEADER_LEN + n));
        }
        Ok(match rest.get(..n) {
            Some(body) => FrameStatus::Frame {
                body,
                discard: FRAME_HEADER_LEN + n,
            },
            None => FrameStatus::Incomplete {
                needed: n - rest.len(),
            },
        })
    }
}

/// Reads a frame length prefix; returns the body length that follows.
pub fn frame_body_len(header: [u8; FRAME_HEADER_LEN]) -> Result<usize, WireError> {
    let n = u32::from_be_bytes(header);
    if n == 0 || n as usize > MAX_FRAME_BODY {
        return Err(WireError::BadFrameLength(n));
    }
    Ok(n as usize)
}

/// Splits the first complete frame off `buf` ([`FrameReader::unbounded`]):
/// `Ok(Some((body, consumed)))`, or `Ok(None)` if more bytes are needed.
pub fn split_frame(buf: &[u8]) -> Result<Option<(&[u8], usize)>, WireError> {
    Ok(match FrameReader::unbounded().read(buf)? {
        FrameStatus::Frame { body, discard } => Some((body, discard)),
        FrameStatus::Incomplete { .. } => None,
    })
}

#[cfg(test)]
mod tests {
    // Test code only: each unwrap() is an assertion on a fixture, never on network input.
    use super::*;

    use crate::wire::{Hello, Message, NodeRole, Resume, PROTOCOL_VERSION};
    use crate::NONCE_LEN;

    #[test]
    fn frames_round_trip_and_split() {
        let mut out = [0u8; 256];
        let msg = Message::Hello(Hello {
            version: PROTOCOL_VERSION,
            group_id: [1; 16],
            session_id: [2; 16],
            role: NodeRole::Client,
            index: 3,
            nonce: [9; NONCE_LEN],
            max_frame: MAX_FRAME_BODY as u32,
            capacity: 1 << 20,
            resume: Some(Resume {
                epoch: [4; 16],
                seq: 77,
                bytes: 1000,
                interval: None,
                lost: true,
            }),
            proofs: &[5; 32],
            blame: true,
        });
        let n = msg.emit_frame(&mut out).unwrap();
        assert_eq!(msg.frame_len(), n);
        assert_eq!(split_frame(&out[..n - 1]).unwrap(), None);
        let (body, used) = split_frame(&out[..n]).unwrap().unwrap();
        assert_eq!(used, n);
        assert_eq!(Message::parse(body).unwrap(), msg);
    }

    #[test]
    fn garbage_frames_are_errors() {
        assert_eq!(
            split_frame(&[0, 0, 0, 0, 1]),
            Err(WireError::BadFrameLength(0))
        );
        assert_eq!(
            split_frame(&[0xFF, 0xFF, 0xFF, 0xFF]),
            Err(WireError::BadFrameLength(u32::MAX))
        );
    }

    #[test]
    fn a_reader_finds_frames_byte_by_byte_within_its_capacity() {
        // Two frames, fed one byte more at a time.
        let stream = [0, 0, 0, 2, 7, 8, 0, 0, 0, 1, 9];
        let reader = FrameReader::new(6);
        let mut seen = std::vec::Vec::new();
        let mut start = 0;
        for end in 0..=stream.len() {
            loop {
                match reader.read(&stream[start..end]).unwrap() {
                    FrameStatus::Frame { body, discard } => {
                        seen.push(body.to_vec());
                        start += discard;
                    }
                    FrameStatus::Incomplete { needed } => {
                        // Exactly what is missing: the header, then the body.
                        let missing = match end - start {
                            held @ 0..4 => 4 - held,
                            held => 4 + usize::from(stream[start + 3]) - held,
                        };
                        assert_eq!(needed, missing);
                        break;
                    }
                }
            }
        }
        assert_eq!(seen, [std::vec![7, 8], std::vec![9]]);
        assert_eq!(start, stream.len());
        // A frame longer than the buffer is refused on its header, before its body.
        assert_eq!(reader.read(&[0, 0, 0, 3]), Err(WireError::FrameTooLarge(7)));
        assert_eq!(
            reader.read(&[0, 0, 0, 0]),
            Err(WireError::BadFrameLength(0))
        );
        assert_eq!(
            FrameReader::unbounded().read(&(MAX_FRAME_BODY as u32 + 1).to_be_bytes()),
            Err(WireError::BadFrameLength(MAX_FRAME_BODY as u32 + 1))
        );
        assert_eq!(
            reader.read(&[0, 0]),
            Ok(FrameStatus::Incomplete { needed: 2 })
        );
    }
}
