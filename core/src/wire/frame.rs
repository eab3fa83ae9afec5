//! Frames: `Length (u32 BE) ‖ Body`, the unit every link carries.
//!
//! Owns the frame header and finding whole frames in a byte stream. It must not look
//! inside a body (that is `message.rs`'s).

use super::{WireError, FRAME_HEADER_LEN, MAX_FRAME_BODY};

/// Reads a frame length prefix; returns the body length that follows.
pub fn frame_body_len(header: [u8; FRAME_HEADER_LEN]) -> Result<usize, WireError> {
    let n = u32::from_be_bytes(header);
    if n == 0 || n as usize > MAX_FRAME_BODY {
        return Err(WireError::BadFrameLength(n));
    }
    Ok(n as usize)
}

/// Splits the first complete frame off `buf`: `Ok(Some((body, consumed)))`, or `Ok(None)` if
/// more bytes are needed.
pub fn split_frame(buf: &[u8]) -> Result<Option<(&[u8], usize)>, WireError> {
    let Some(header) = buf.first_chunk::<FRAME_HEADER_LEN>() else {
        return Ok(None);
    };
    let n = frame_body_len(*header)?;
    match buf.get(FRAME_HEADER_LEN..FRAME_HEADER_LEN + n) {
        Some(body) => Ok(Some((body, FRAME_HEADER_LEN + n))),
        None => Ok(None),
    }
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
            resume: Some(Resume {
                epoch: [4; 16],
                seq: 77,
                limit: 1 << 20,
            }),
            proofs: &[5; 32],
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
}
