//! The byte stream of a link to the relay, in fixed buffers: records in, frame bodies out;
//! frames in, records out.
//!
//! On the wire a link is `u16 BE length ‖ Noise message` records (`dissent_core::link`)
//! whose plaintexts, concatenated, are the frame stream `u32 BE length ‖ postcard body`
//! (`dissent_core::wire`). A frame may span records and a record may hold several frames.
//! [`Inbound`] keeps two caller-provided buffers: `raw` for stream bytes not yet forming a
//! whole record, `plain` for opened plaintext not yet forming a whole frame. Records are
//! split by the core's `RecordReader` and frames found by its `FrameReader`, as on the
//! host. A record longer than `raw` or a frame longer than `plain` ends the link with a
//! typed error instead of growing anything, so the relay must keep each record's plaintext
//! within the frame limit the node declares. [`Outbound`] frames one message into a buffer and seals it in place.
//!
//! Pure code: it builds and is unit-tested on the host.

use core::fmt;

use dissent_core::link::{
    LinkError, Opener, RecordReader, Sealer, HEADER_LEN, OVERHEAD, RESPONSE_LEN, TAG_LEN,
};
use dissent_core::wire::{FrameReader, FrameStatus, WireError, FRAME_HEADER_LEN};

/// Why the inbound stream of a link cannot go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StreamError {
    /// A record of a length the link layer refuses, or one failing authentication.
    Link(LinkError),
    /// A frame of a length the wire format refuses.
    Wire(WireError),
    /// A record longer than this device's record buffer.
    RecordTooLarge(usize),
    /// A frame longer than this device's frame buffer.
    FrameTooLarge(usize),
}

impl fmt::Display for StreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Link(e) => write!(f, "link: {e}"),
            Self::Wire(e) => write!(f, "frame: {e}"),
            Self::RecordTooLarge(n) => {
                write!(f, "record of {n} bytes exceeds this device's buffer")
            }
            Self::FrameTooLarge(n) => write!(f, "frame of {n} bytes exceeds this device's buffer"),
        }
    }
}

impl core::error::Error for StreamError {}

impl From<LinkError> for StreamError {
    fn from(e: LinkError) -> Self {
        StreamError::Link(e)
    }
}

/// Bytes a record buffer needs for records whose plaintext is at most `plaintext` bytes.
pub const fn record_buffer_len(plaintext: usize) -> usize {
    plaintext + OVERHEAD
}

/// What a blame round's `BlameReveal` frame may take beyond a node's largest frame: it
/// carries the node's cell of the exchange (no longer than its cell frames, at most
/// `max_frame`) and at most 98 bytes more (its fields, the pad bits of up to 64 members and a
/// 64-byte signature). A role's output buffer holds it, so the cell is recomputed and signed
/// where it is sent.
pub const REVEAL_SLACK: usize = 128;

/// Bytes a frame buffer needs for frame bodies of at most `max_frame` bytes.
pub const fn frame_buffer_len(max_frame: usize) -> usize {
    max_frame + FRAME_HEADER_LEN
}

/// The receiving side of a link: stream bytes in, the handshake response and then frame
/// bodies out.
pub struct Inbound<'b> {
    raw: &'b mut [u8],
    raw_len: usize,
    plain: &'b mut [u8],
    start: usize,
    end: usize,
    /// The record at the front of `raw`, opened in place and being moved to `plain`:
    /// (next plaintext byte, end of plaintext, bytes the record takes).
    opened: Option<(usize, usize, usize)>,
    records: RecordReader,
}

impl<'b> Inbound<'b> {
    /// An inbound stream over `raw` (records) and `plain` (frames) buffers, ready for the
    /// handshake response of a new link.
    ///
    /// `raw` bounds the records accepted ([`record_buffer_len`]) and `plain` the frames
    /// ([`frame_buffer_len`]); neither needs to hold more than one of them.
    pub fn new(raw: &'b mut [u8], plain: &'b mut [u8]) -> Self {
        Inbound {
            raw,
            raw_len: 0,
            plain,
            start: 0,
            end: 0,
            opened: None,
            records: RecordReader::initiator(),
        }
    }

    /// Forgets everything; ready for the handshake response of a new link.
    pub fn reset(&mut self) {
        self.raw_len = 0;
        self.start = 0;
        self.end = 0;
        self.opened = None;
        self.records = RecordReader::initiator();
    }

    /// Room to read stream bytes into; call [`Inbound::filled`] with the count read.
    ///
    /// Not empty while the stream is sound: [`Inbound::response`] or
    /// [`Inbound::next_frame`] refuses a record that cannot fit first.
    pub fn space(&mut self) -> &mut [u8] {
        &mut self.raw[self.raw_len..]
    }

    /// `n` bytes were read into [`Inbound::space`].
    pub fn filled(&mut self, n: usize) {
        self.raw_len = (self.raw_len + n).min(self.raw.len());
    }

    /// Stream bytes held that are not yet a whole record.
    pub fn buffered(&self) -> usize {
        self.raw_len
    }

    /// The relay's handshake response, once all of it is in.
    pub fn response(&mut self) -> Result<Option<[u8; RESPONSE_LEN]>, StreamError> {
        let Some((message, used)) = self.split_record()? else {
            return Ok(None);
        };
        // The initiator's record reader passes only RESPONSE_LEN-byte messages.
        let response: [u8; RESPONSE_LEN] = message
            .try_into()
            .map_err(|_| StreamError::Link(LinkError::BadLength(message.len())))?;
        self.consume_raw(used);
        Ok(Some(response))
    }

    /// The next whole frame body, opening records with `opener` as needed; `None` until
    /// more stream bytes arrive.
    ///
    /// The body stays valid until the next call that changes this stream.
    pub fn next_frame(&mut self, opener: &mut Opener) -> Result<Option<&[u8]>, StreamError> {
        loop {
            if let Some((at, len)) = self.split_frame()? {
                return Ok(Some(&self.plain[at..at + len]));
            }
            if let Some((next, end, used)) = self.opened {
                // Move what fits of the opened record's plaintext behind the partial frame.
                if self.start > 0 {
                    self.plain.copy_within(self.start..self.end, 0);
                    self.end -= self.start;
                    self.start = 0;
                }
                let k = (end - next).min(self.plain.len() - self.end);
                if k == 0 {
                    // `plain` is full without a whole frame: split_frame refuses that first.
                    return Err(StreamError::FrameTooLarge(self.plain.len() + 1));
                }
                self.plain[self.end..self.end + k].copy_from_slice(&self.raw[next..next + k]);
                self.end += k;
                if next + k == end {
                    self.opened = None;
                    self.consume_raw(used);
                } else {
                    self.opened = Some((next + k, end, used));
                }
                continue;
            }
            let Some((_, used)) = self.split_record()? else {
                return Ok(None);
            };
            let n = opener.open_in_place(&mut self.raw[HEADER_LEN..used])?;
            self.opened = Some((HEADER_LEN, HEADER_LEN + n, used));
        }
    }

    /// Finds the first whole frame in `plain` and marks it consumed: (body offset, length).
    fn split_frame(&mut self) -> Result<Option<(usize, usize)>, StreamError> {
        let held = &self.plain[self.start..self.end];
        let frames = FrameReader::new(self.plain.len());
        match frames.read(held).map_err(|e| match e {
            WireError::FrameTooLarge(n) => StreamError::FrameTooLarge(n),
            e => StreamError::Wire(e),
        })? {
            FrameStatus::Frame { body, discard } => {
                let at = self.start + discard - body.len();
                let len = body.len();
                self.start += discard;
                if self.start == self.end {
                    // Nothing left: the next plaintext goes to the front, after the caller
                    // is done with this body.
                    self.start = 0;
                    self.end = 0;
                }
                Ok(Some((at, len)))
            }
            FrameStatus::Incomplete { .. } => Ok(None),
        }
    }

    /// The first whole record in `raw`, after any opened one: (message, bytes used).
    fn split_record(&mut self) -> Result<Option<(&[u8], usize)>, StreamError> {
        let held = &self.raw[..self.raw_len];
        if let Some(header) = held.first_chunk::<HEADER_LEN>() {
            let n = HEADER_LEN + usize::from(u16::from_be_bytes(*header));
            if n > self.raw.len() {
                // Lengths the link never allows are refused as such.
                let mut probe = self.records;
                probe.split(header)?;
                return Err(StreamError::RecordTooLarge(n));
            }
        }
        Ok(self.records.split(held)?)
    }

    fn consume_raw(&mut self, used: usize) {
        self.raw.copy_within(used..self.raw_len, 0);
        self.raw_len -= used;
    }
}

/// The sending side of a link: one frame at a time, sealed in place into a record.
pub struct Outbound<'b> {
    buf: &'b mut [u8],
}

impl<'b> Outbound<'b> {
    /// An outbound stream over `buf`, which must hold a record of the largest frame.
    pub fn new(buf: &'b mut [u8]) -> Self {
        Outbound { buf }
    }

    /// Where to write the next frame (header included).
    pub fn frame_space(&mut self) -> &mut [u8] {
        let end = self.buf.len().saturating_sub(TAG_LEN);
        let start = HEADER_LEN.min(end);
        &mut self.buf[start..end]
    }

    /// Seals the `n`-byte frame written to [`Outbound::frame_space`]; returns the record.
    pub fn seal(&mut self, sealer: &mut Sealer, n: usize) -> Result<&[u8], LinkError> {
        let len = sealer.seal_in_place(self.buf, n)?;
        Ok(&self.buf[..len])
    }
}

#[cfg(test)]
mod tests {
    // Test code only: each unwrap() is an assertion on a fixture.
    use dissent_core::crypto::public_key;
    use dissent_core::link::{Initiator, Responder, Transport};
    use dissent_core::wire::{self, Message};

    use super::*;

    const NODE: [u8; 32] = [3; 32];
    const RELAY: [u8; 32] = [4; 32];
    const IDS: [u8; 16] = [1; 16];

    /// A node-side inbound stream after a real handshake with a core relay, whose sending
    /// half is returned.
    fn linked<'b>(
        raw: &'b mut [u8],
        plain: &'b mut [u8],
    ) -> (Inbound<'b>, Opener, Sealer, Transport) {
        let mut node = Initiator::new(&NODE, &public_key(&RELAY), &IDS, &IDS, [5; 32]).unwrap();
        let mut relay = Responder::new(&RELAY, &IDS, &IDS, [6; 32]).unwrap();
        let mut req = [0u8; 128];
        let n = node.write_request(&mut req).unwrap();
        relay.read_request(&req[2..n]).unwrap();
        let mut resp = [0u8; 64];
        let (m, relay) = relay.write_response(&mut resp).unwrap();
        let mut inbound = Inbound::new(raw, plain);
        // The response arrives in two pieces, then the first transport bytes behind it.
        inbound.space()[..10].copy_from_slice(&resp[..10]);
        inbound.filled(10);
        assert_eq!(inbound.response().unwrap(), None);
        inbound.space()[..m - 10].copy_from_slice(&resp[10..m]);
        inbound.filled(m - 10);
        let response = inbound.response().unwrap().unwrap();
        assert_eq!(inbound.buffered(), 0);
        let (sealer, opener) = node.read_response(&response).unwrap().split();
        (inbound, opener, sealer, relay)
    }

    fn frame(body: &[u8]) -> Vec<u8> {
        let mut f = (body.len() as u32).to_be_bytes().to_vec();
        f.extend_from_slice(body);
        f
    }

    fn record(relay: &mut Transport, plain: &[u8]) -> Vec<u8> {
        let mut out = vec![0u8; plain.len() + OVERHEAD];
        let n = relay.seal(plain, &mut out).unwrap();
        out.truncate(n);
        out
    }

    /// Feeds `bytes` in reads of at most `step`, collecting every frame body.
    fn feed(
        inbound: &mut Inbound<'_>,
        opener: &mut Opener,
        mut bytes: &[u8],
        step: usize,
    ) -> Vec<Vec<u8>> {
        let mut frames = Vec::new();
        while !bytes.is_empty() {
            let space = inbound.space();
            let n = step.min(space.len()).min(bytes.len());
            assert!(n > 0, "room to read into");
            space[..n].copy_from_slice(&bytes[..n]);
            inbound.filled(n);
            bytes = &bytes[n..];
            while let Some(body) = inbound.next_frame(opener).unwrap() {
                frames.push(body.to_vec());
            }
        }
        assert_eq!(inbound.buffered(), 0, "every record used");
        frames
    }

    #[test]
    fn frames_spanning_and_sharing_records_come_out_whole() {
        let (mut raw, mut plain) = ([0u8; 600], [0u8; 500]);
        let (mut inbound, mut opener, _, mut relay) = linked(&mut raw, &mut plain);
        let bodies: Vec<Vec<u8>> = (0..12u8)
            .map(|i| vec![i; 1 + usize::from(i) * 37])
            .collect();
        let stream: Vec<u8> = bodies.iter().flat_map(|b| frame(b)).collect();
        // Records of 100 plaintext bytes: frames split across records and several per record.
        let wire: Vec<u8> = stream
            .chunks(100)
            .flat_map(|c| record(&mut relay, c))
            .collect();
        for step in [1, 7, 118, 600] {
            let (mut raw, mut plain) = ([0u8; 600], [0u8; 500]);
            let (mut inbound2, mut opener2, _, mut relay2) = linked(&mut raw, &mut plain);
            let wire2: Vec<u8> = stream
                .chunks(100)
                .flat_map(|c| record(&mut relay2, c))
                .collect();
            assert_eq!(wire2, wire, "same keys, same records");
            assert_eq!(
                feed(&mut inbound2, &mut opener2, &wire2, step),
                bodies,
                "step {step}"
            );
        }
        assert_eq!(feed(&mut inbound, &mut opener, &wire, 50), bodies);
    }

    #[test]
    fn a_whole_record_of_frames_fits_buffers_of_one_frame() {
        // Records of at most `max_frame + 4` plaintext bytes, the device's limit.
        let max_frame = 300;
        let mut raw = vec![0u8; record_buffer_len(frame_buffer_len(max_frame))];
        let mut plain = vec![0u8; frame_buffer_len(max_frame)];
        let (mut inbound, mut opener, _, mut relay) = linked(&mut raw, &mut plain);
        let bodies: Vec<Vec<u8>> = (0..20u8)
            .map(|i| vec![i; [300, 1, 150, 299][usize::from(i) % 4]])
            .collect();
        let stream: Vec<u8> = bodies.iter().flat_map(|b| frame(b)).collect();
        let wire: Vec<u8> = stream
            .chunks(frame_buffer_len(max_frame))
            .flat_map(|c| record(&mut relay, c))
            .collect();
        assert_eq!(feed(&mut inbound, &mut opener, &wire, 333), bodies);
    }

    /// A linked inbound stream holding `bytes`, and the result of asking it for a frame.
    fn first_frame(
        bytes: impl FnOnce(&mut Transport) -> Vec<u8>,
    ) -> Result<Option<Vec<u8>>, StreamError> {
        let (mut raw, mut plain) = ([0u8; 200], [0u8; 100]);
        let (mut inbound, mut opener, _, mut relay) = linked(&mut raw, &mut plain);
        let bytes = bytes(&mut relay);
        let n = bytes.len().min(inbound.space().len());
        inbound.space()[..n].copy_from_slice(&bytes[..n]);
        inbound.filled(n);
        inbound
            .next_frame(&mut opener)
            .map(|f| f.map(<[u8]>::to_vec))
    }

    #[test]
    fn oversized_records_and_frames_are_refused() {
        // A record longer than the raw buffer: refused on its header.
        assert_eq!(
            first_frame(|relay| record(relay, &[0u8; 300])),
            Err(StreamError::RecordTooLarge(318))
        );
        // A frame announcing more than the frame buffer: refused on its header.
        assert_eq!(
            first_frame(|relay| record(relay, &frame(&[7u8; 120])[..50])),
            Err(StreamError::FrameTooLarge(124))
        );
        // Lengths the link or the wire never allow.
        assert_eq!(
            first_frame(|_| vec![0, 15]),
            Err(StreamError::Link(LinkError::BadLength(15)))
        );
        assert_eq!(
            first_frame(|relay| record(relay, &[0, 0, 0, 0])),
            Err(StreamError::Wire(WireError::BadFrameLength(0)))
        );
        // A record sealed for another link fails authentication.
        assert_eq!(
            first_frame(|_| {
                let mut other = Responder::new(&RELAY, &IDS, &IDS, [6; 32]).unwrap();
                let mut node =
                    Initiator::new(&NODE, &public_key(&RELAY), &IDS, &IDS, [9; 32]).unwrap();
                let mut req = [0u8; 128];
                let n = node.write_request(&mut req).unwrap();
                other.read_request(&req[2..n]).unwrap();
                let (_, mut other) = other.write_response(&mut [0u8; 64]).unwrap();
                record(&mut other, &frame(b"x"))
            }),
            Err(StreamError::Link(LinkError::Decrypt))
        );
        // The same record from the right link opens.
        assert_eq!(
            first_frame(|relay| record(relay, &frame(b"x"))),
            Ok(Some(b"x".to_vec()))
        );
    }

    #[test]
    fn outbound_frames_reach_the_relay() {
        let (mut raw, mut plain) = ([0u8; 200], [0u8; 100]);
        let (_, _, mut sealer, mut relay) = linked(&mut raw, &mut plain);
        let mut buf = [0u8; 128];
        let mut out = Outbound::new(&mut buf);
        let hello = Message::ProbeReply { nonce: 300 };
        let n = hello.emit_frame(out.frame_space()).unwrap();
        let rec = out.seal(&mut sealer, n).unwrap().to_vec();
        assert_eq!(rec.len(), n + OVERHEAD);
        let mut opened = vec![0u8; rec.len()];
        let m = relay.open(&rec[2..], &mut opened).unwrap();
        let (body, used) = wire::split_frame(&opened[..m]).unwrap().unwrap();
        assert_eq!(used, m);
        assert_eq!(Message::parse(body).unwrap(), hello);
        // A frame too long for the buffer cannot be written.
        assert_eq!(out.frame_space().len(), 128 - OVERHEAD);
    }
}
