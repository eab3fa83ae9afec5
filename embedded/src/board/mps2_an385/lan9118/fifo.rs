//! LAN9118 FIFO framing, free of register access so the host can test it.
//!
//! Receive: the RX status FIFO holds one status word per frame; its length field counts
//! the frame plus its 4-byte FCS, and the RX data FIFO holds that many bytes, little-endian
//! in 32-bit words, the last word zero-padded. Transmit: two command words (A: first and
//! last segment flags and the buffer length; B: a tag and the frame length), then the frame
//! in little-endian words, the last one padded.
//!
//! [`read_frame`] always pops exactly the frame's words, also when it refuses the frame, so
//! the next frame starts on its own first word. Nothing here panics on any status word.

/// Largest frame handed to or taken from the stack: Ethernet header and 1500 bytes, no FCS.
pub const MAX_FRAME: usize = 1514;
/// Length of the frame check sequence the controller leaves at the end of each frame.
pub const FCS_LEN: usize = 4;
/// Shortest frame worth reading: an Ethernet header.
const MIN_FRAME: usize = 14;

const RX_STS_FILTER_FAIL: u32 = 1 << 30;
const RX_STS_LEN_SHIFT: u32 = 16;
const RX_STS_LEN_MASK: u32 = 0x3fff;
const RX_STS_ERROR: u32 = 1 << 15;

/// TX command A: first segment of a frame.
pub const TX_CMD_A_FIRST: u32 = 1 << 13;
/// TX command A: last segment of a frame.
pub const TX_CMD_A_LAST: u32 = 1 << 12;
/// TX command A: the buffer length field (11 bits).
const TX_CMD_A_LEN_MASK: u32 = 0x7ff;

/// Why a received frame was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RxError {
    /// The controller flagged the frame (CRC, length, collision or MII error).
    Errored,
    /// The frame is not for this address (only seen in promiscuous or receive-all modes).
    Filtered,
    /// Shorter than an Ethernet header once the FCS is removed.
    TooShort {
        /// Length in the status word, FCS included.
        len: usize,
    },
    /// Longer than the receive buffer once the FCS is removed.
    TooLong {
        /// Length in the status word, FCS included.
        len: usize,
    },
}

/// Why a frame was not queued for transmission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TxError {
    /// Empty, or longer than [`MAX_FRAME`].
    BadLength {
        /// The frame's length.
        len: usize,
    },
}

/// Data FIFO words a frame of `len` bytes (FCS included, for receive) occupies.
pub const fn words(len: usize) -> usize {
    len.div_ceil(4)
}

/// Frames waiting in the RX status FIFO, from the `RX_FIFO_INF` register.
pub const fn rx_frames_waiting(rx_fifo_inf: u32) -> usize {
    ((rx_fifo_inf >> 16) & 0xff) as usize
}

/// Free bytes in the TX data FIFO, from the `TX_FIFO_INF` register.
pub const fn tx_free_bytes(tx_fifo_inf: u32) -> usize {
    (tx_fifo_inf & 0xffff) as usize
}

/// TX data FIFO bytes that sending a `len`-byte frame takes, command words included.
pub const fn tx_fifo_bytes(len: usize) -> usize {
    8 + 4 * words(len)
}

/// Pops the frame described by `status` from the data FIFO into `buf`, without its FCS.
///
/// `next_word` pops one word from the RX data FIFO. Returns the frame's length.
pub fn read_frame(
    status: u32,
    buf: &mut [u8],
    mut next_word: impl FnMut() -> u32,
) -> Result<usize, RxError> {
    let len = ((status >> RX_STS_LEN_SHIFT) & RX_STS_LEN_MASK) as usize;
    let verdict = if status & RX_STS_ERROR != 0 {
        Err(RxError::Errored)
    } else if status & RX_STS_FILTER_FAIL != 0 {
        Err(RxError::Filtered)
    } else if len < MIN_FRAME + FCS_LEN {
        Err(RxError::TooShort { len })
    } else if len - FCS_LEN > buf.len() {
        Err(RxError::TooLong { len })
    } else {
        Ok(len - FCS_LEN)
    };
    match verdict {
        Ok(frame_len) => {
            for i in 0..words(len) {
                let bytes = next_word().to_le_bytes();
                let start = 4 * i;
                // The last words carry the FCS, which is dropped.
                if start < frame_len {
                    let n = (frame_len - start).min(4);
                    buf[start..start + n].copy_from_slice(&bytes[..n]);
                }
            }
        }
        Err(_) => {
            for _ in 0..words(len) {
                next_word();
            }
        }
    }
    verdict
}

/// Pushes `frame` into the TX data FIFO as one single-segment frame tagged `tag`.
///
/// `push` writes one word to the TX data FIFO; nothing is pushed if the frame is refused.
pub fn write_frame(frame: &[u8], tag: u16, mut push: impl FnMut(u32)) -> Result<(), TxError> {
    let len = frame.len();
    if len == 0 || len > MAX_FRAME {
        return Err(TxError::BadLength { len });
    }
    // MAX_FRAME fits the 11-bit length field, so the cast and mask keep every bit.
    let len_field = len as u32 & TX_CMD_A_LEN_MASK;
    push(TX_CMD_A_FIRST | TX_CMD_A_LAST | len_field);
    push(u32::from(tag) << 16 | len_field);
    for chunk in frame.chunks(4) {
        let mut word = [0u8; 4];
        word[..chunk.len()].copy_from_slice(chunk);
        push(u32::from_le_bytes(word));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use super::*;

    const FCS: [u8; 4] = [0xde, 0xad, 0xbe, 0xef];

    /// A frame as the controller queues it: status word and data words, FCS appended.
    fn queued(frame: &[u8]) -> (u32, Vec<u32>) {
        let mut bytes = frame.to_vec();
        bytes.extend_from_slice(&FCS);
        let status = (bytes.len() as u32) << 16;
        let words = bytes
            .chunks(4)
            .map(|c| {
                let mut w = [0u8; 4];
                w[..c.len()].copy_from_slice(c);
                u32::from_le_bytes(w)
            })
            .collect();
        (status, words)
    }

    fn frame(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 + 7) as u8).collect()
    }

    /// Reads one frame from a FIFO of words, failing the test if the FIFO runs dry.
    fn read(status: u32, fifo: &mut VecDeque<u32>, buf: &mut [u8]) -> Result<usize, RxError> {
        read_frame(status, buf, || {
            fifo.pop_front().expect("read past the frame's words")
        })
    }

    #[test]
    fn every_length_reads_back_without_fcs() {
        for len in [14, 15, 16, 17, 60, 61, 62, 63, 64, 1513, MAX_FRAME] {
            let sent = frame(len);
            let (status, data) = queued(&sent);
            assert_eq!(data.len(), words(len + FCS_LEN), "len {len}");
            let mut fifo: VecDeque<u32> = data.into();
            let mut buf = [0u8; MAX_FRAME];
            assert_eq!(read(status, &mut fifo, &mut buf), Ok(len), "len {len}");
            assert_eq!(&buf[..len], &sent[..], "len {len}");
            assert!(fifo.is_empty(), "len {len}: all words popped");
        }
    }

    #[test]
    fn refused_frames_pop_their_words_so_the_next_frame_is_intact() {
        let bad_frames = [
            // (status tweak, frame length, expected error)
            (RX_STS_ERROR, 60, RxError::Errored),
            (RX_STS_FILTER_FAIL, 61, RxError::Filtered),
        ];
        for (flag, len, expected) in bad_frames {
            let (status, mut data) = queued(&frame(len));
            let good = frame(99);
            let (good_status, good_data) = queued(&good);
            data.extend(good_data);
            let mut fifo: VecDeque<u32> = data.into();
            let mut buf = [0u8; MAX_FRAME];
            assert_eq!(read(status | flag, &mut fifo, &mut buf), Err(expected));
            assert_eq!(read(good_status, &mut fifo, &mut buf), Ok(99));
            assert_eq!(&buf[..99], &good[..]);
            assert!(fifo.is_empty());
        }
    }

    #[test]
    fn frame_longer_than_the_buffer_is_dropped_whole() {
        let (status, data) = queued(&frame(200));
        let n = data.len();
        let mut fifo: VecDeque<u32> = data.into();
        fifo.push_back(0x1234_5678);
        let mut small = [0u8; 100];
        assert_eq!(
            read(status, &mut fifo, &mut small),
            Err(RxError::TooLong { len: 204 })
        );
        assert_eq!(fifo.len(), 1, "popped exactly {n} words");
        assert_eq!(small, [0u8; 100], "buffer untouched");
    }

    #[test]
    fn runt_and_empty_status_are_refused() {
        for len in [0usize, 1, 4, 5, 17] {
            let status = (len as u32) << 16;
            let mut fifo: VecDeque<u32> = vec![7; words(len)].into();
            let mut buf = [0u8; MAX_FRAME];
            assert_eq!(
                read(status, &mut fifo, &mut buf),
                Err(RxError::TooShort { len })
            );
            assert!(fifo.is_empty(), "len {len}");
        }
    }

    #[test]
    fn status_length_field_is_14_bits() {
        // Bits above the field (30: filter fail is separate, 31 reserved) must not leak in.
        let (status, data) = queued(&frame(60));
        let mut fifo: VecDeque<u32> = data.into();
        let mut buf = [0u8; MAX_FRAME];
        assert_eq!(read(status | 1 << 31, &mut fifo, &mut buf), Ok(60));
        let huge = RX_STS_LEN_MASK << RX_STS_LEN_SHIFT;
        let mut fifo: VecDeque<u32> = vec![0; words(0x3fff)].into();
        assert_eq!(
            read(huge, &mut fifo, &mut buf),
            Err(RxError::TooLong { len: 0x3fff })
        );
        assert!(fifo.is_empty());
    }

    #[test]
    fn tx_words_are_commands_then_padded_little_endian_data() {
        let sent = frame(42);
        let mut pushed = Vec::new();
        write_frame(&sent, 0xbeef, |w| pushed.push(w)).unwrap();
        assert_eq!(pushed.len(), 2 + 11);
        assert_eq!(
            pushed[0],
            0x0000_3000 | 42,
            "command A: first, last, length"
        );
        assert_eq!(pushed[1], 0xbeef_0000 | 42, "command B: tag, length");
        assert_eq!(
            pushed[2],
            u32::from_le_bytes([sent[0], sent[1], sent[2], sent[3]])
        );
        assert_eq!(pushed[12], u32::from_le_bytes([sent[40], sent[41], 0, 0]));
        let data: Vec<u8> = pushed[2..].iter().flat_map(|w| w.to_le_bytes()).collect();
        assert_eq!(&data[..42], &sent[..]);
        assert_eq!(tx_fifo_bytes(42), 4 * pushed.len());
    }

    #[test]
    fn tx_refuses_empty_and_oversized_frames() {
        for len in [0, MAX_FRAME + 1, 2048] {
            let mut pushed = 0;
            assert_eq!(
                write_frame(&frame(len), 1, |_| pushed += 1),
                Err(TxError::BadLength { len })
            );
            assert_eq!(pushed, 0, "len {len}");
        }
        let mut pushed = Vec::new();
        write_frame(&frame(MAX_FRAME), 1, |w| pushed.push(w)).unwrap();
        assert_eq!(pushed[0] & 0x7ff, MAX_FRAME as u32);
    }

    #[test]
    fn fifo_info_registers() {
        // RX_FIFO_INF: status frames in 23:16, data bytes used in 15:0.
        assert_eq!(rx_frames_waiting(0x0003_0100), 3);
        assert_eq!(rx_frames_waiting(0x0000_0ffc), 0);
        // TX_FIFO_INF: status used in 23:16, data bytes free in 15:0.
        assert_eq!(tx_free_bytes(0x0002_1200), 0x1200);
        assert!(tx_fifo_bytes(MAX_FRAME) <= 0x1200);
    }
}
