//! Authenticated, encrypted links between the relay and its clients and trustees.
//!
//! The tokio shell around `dissent_core::link`, which holds the whole protocol: a Noise `IK`
//! handshake (X25519, ChaCha20-Poly1305, BLAKE2s) in which the node knows the relay's
//! long-term key from system.json and the relay admits the node's long-term key only if it
//! belongs to a client or trustee of the group, then records,
//! `Length (u16, big endian) | Noise transport message`, whose plaintexts concatenated form
//! the frame stream of `dissent_core::wire`. This module only moves the bytes, keeps the
//! time limit and draws each handshake's entropy from the OS.

pub mod dial;

use std::io;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use dissent_core::link::{
    Initiator, LinkError, Opener, RecordReader, Responder, Sealer, Transport, HEADER_LEN,
    MAX_PLAINTEXT, MAX_RECORD, OVERHEAD, REQUEST_LEN, RESPONSE_LEN,
};
use dissent_core::wire::{self, FrameReader, FrameStatus};
use rand::rngs::OsRng;
use rand::RngCore;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

/// Time allowed for the whole handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Least free room to read into.
const READ_CHUNK: usize = 4 * 1024;
/// A link buffer that grew beyond this for a burst is released once it is empty: a relay
/// holds thousands of links, most of them carrying small frames most of the time.
const KEEP_BUFFER: usize = 64 * 1024;

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

fn noise_error(e: LinkError) -> io::Error {
    io::Error::other(format!("noise: {e}"))
}

/// 32 fresh bytes from the OS for one handshake.
fn entropy() -> io::Result<[u8; 32]> {
    let mut e = [0u8; 32];
    OsRng
        .try_fill_bytes(&mut e)
        .map_err(|e| io::Error::other(format!("no entropy from the OS: {e}")))?;
    Ok(e)
}

/// Reads until `buf` starts with a whole record and returns the bytes it takes;
/// `Ok(None)` on a clean end of stream before any of it.
///
/// A bad length is refused as soon as the length field is in, before the body is read.
async fn read_record<R: AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut BytesMut,
    records: &mut RecordReader,
) -> io::Result<Option<usize>> {
    loop {
        if let Some((_, used)) = records.split(buf).map_err(|e| invalid(e.to_string()))? {
            return Ok(Some(used));
        }
        // Room for the rest of the record under way, and never less than one chunk.
        let record = buf.first_chunk::<HEADER_LEN>().map_or(HEADER_LEN, |h| {
            HEADER_LEN + usize::from(u16::from_be_bytes(*h))
        });
        let want = record.saturating_sub(buf.len()).max(READ_CHUNK);
        if buf.capacity() - buf.len() < want {
            buf.reserve(want);
        }
        if r.read_buf(buf).await? == 0 {
            if buf.is_empty() {
                return Ok(None);
            }
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "stream ended inside a record",
            ));
        }
    }
}

/// The receiving half of an established link.
pub struct LinkReader<R> {
    inner: R,
    opener: Opener,
    records: RecordReader,
    /// Stream bytes not yet opened.
    raw: BytesMut,
    /// Opened plaintext not yet split into frames.
    plain: BytesMut,
}

impl<R: AsyncRead + Unpin> LinkReader<R> {
    /// Reads the next frame body; `Ok(None)` on a clean end of stream between frames.
    pub async fn next(&mut self) -> io::Result<Option<Bytes>> {
        loop {
            if let Some(frame) = self.take_frame()? {
                return Ok(Some(frame));
            }
            let Some(used) = read_record(&mut self.inner, &mut self.raw, &mut self.records).await?
            else {
                if self.plain.is_empty() {
                    return Ok(None);
                }
                return Err(invalid("stream ended inside a frame"));
            };
            self.open_record(used)?;
        }
    }

    /// Takes the first frame's body out of `plain` if it is complete.
    fn take_frame(&mut self) -> io::Result<Option<Bytes>> {
        let status = FrameReader::unbounded()
            .read(&self.plain)
            .map_err(|e| invalid(e.to_string()))?;
        let FrameStatus::Frame { body, discard } = status else {
            return Ok(None);
        };
        let start = discard - body.len();
        let mut frame = self.plain.split_to(discard);
        frame.advance(start);
        Ok(Some(frame.freeze()))
    }

    /// Opens the record of `used` bytes at the start of `raw` into `plain`.
    fn open_record(&mut self, used: usize) -> io::Result<()> {
        let message = &mut self.raw[HEADER_LEN..used];
        let n = self
            .opener
            .open_in_place(message)
            .map_err(|_| invalid("record failed authentication"))?;
        if self.plain.is_empty() && self.plain.capacity() > KEEP_BUFFER {
            self.plain = BytesMut::new();
        }
        self.plain.extend_from_slice(&message[..n]);
        self.raw.advance(used);
        if self.raw.is_empty() && self.raw.capacity() > KEEP_BUFFER {
            self.raw = BytesMut::new();
        }
        Ok(())
    }

    /// The next frame body if one is already complete in what was read, without waiting.
    pub fn next_buffered(&mut self) -> io::Result<Option<Bytes>> {
        loop {
            if let Some(frame) = self.take_frame()? {
                return Ok(Some(frame));
            }
            // Open a whole record that is already buffered, if any.
            let Some((_, used)) = self
                .records
                .split(&self.raw)
                .map_err(|e| invalid(e.to_string()))?
            else {
                return Ok(None);
            };
            self.open_record(used)?;
        }
    }
}

/// The sending half of an established link.
pub struct LinkWriter<W> {
    inner: W,
    sealer: Sealer,
    max_record: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl<W: AsyncWrite + Unpin> LinkWriter<W> {
    /// A handle to lower the largest record plaintext this writer seals (a node's declared
    /// frame limit); it starts at the protocol's largest.
    pub fn max_record(&self) -> std::sync::Arc<std::sync::atomic::AtomicUsize> {
        self.max_record.clone()
    }

    /// Encrypts and writes every frame from `rx` until the channel closes, then shuts down.
    pub async fn run(mut self, mut rx: mpsc::Receiver<Bytes>) -> io::Result<()> {
        // Both grow with the batches; a link with small frames keeps small buffers.
        let mut plain: Vec<u8> = Vec::new();
        let mut out: Vec<u8> = Vec::new();
        while let Some(frame) = rx.recv().await {
            plain.extend_from_slice(&frame);
            // Batch whatever is already queued.
            while plain.len() < 4 * MAX_PLAINTEXT {
                match rx.try_recv() {
                    Ok(f) => plain.extend_from_slice(&f),
                    Err(_) => break,
                }
            }
            let limit = self
                .max_record
                .load(std::sync::atomic::Ordering::Relaxed)
                .clamp(1, MAX_PLAINTEXT);
            for chunk in plain.chunks(limit) {
                let start = out.len();
                out.resize(start + chunk.len() + OVERHEAD, 0);
                self.sealer
                    .seal(chunk, &mut out[start..])
                    .map_err(|e| io::Error::other(format!("encrypt: {e}")))?;
            }
            plain.clear();
            self.inner.write_all(&out).await?;
            out.clear();
            self.inner.flush().await?;
            if plain.capacity() > KEEP_BUFFER {
                plain = Vec::new();
            }
            if out.capacity() > KEEP_BUFFER {
                out = Vec::new();
            }
        }
        self.inner.shutdown().await
    }
}

/// Why a handshake did not complete.
#[derive(Debug)]
pub enum HandshakeError {
    /// Reading or writing the stream failed, or this host had no entropy or Noise state.
    Io(io::Error),
    /// The handshake took longer than [`HANDSHAKE_TIMEOUT`].
    TimedOut,
    /// The peer closed the link before the handshake was done.
    Closed,
    /// Node side: the relay's response does not authenticate (another relay key or group).
    WrongRelayKey,
    /// Relay side: the request is not encrypted to this relay's key for this group.
    NotForThisRelay,
    /// Relay side: the node's static key is not a member of the group.
    NotMember,
    /// Relay side: the request check refused it (a replay, say), for this reason.
    Refused(String),
}

impl HandshakeError {
    /// Whether the node's keys are to blame: a whole request that is not a replay, for
    /// another relay or from a key that is no member.
    pub fn is_key_failure(&self) -> bool {
        matches!(self, Self::NotForThisRelay | Self::NotMember)
    }
}

impl std::fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Io(e) => write!(f, "{e}"),
            Self::TimedOut => f.write_str("handshake timed out"),
            Self::Closed => f.write_str("the link closed during the handshake"),
            Self::WrongRelayKey => {
                f.write_str("relay failed the handshake (wrong relay key or group?)")
            }
            Self::NotForThisRelay => {
                f.write_str("handshake failed (not encrypted to this relay's key)")
            }
            Self::NotMember => f.write_str("static key is not a member of the group"),
            Self::Refused(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for HandshakeError {}

impl From<io::Error> for HandshakeError {
    fn from(e: io::Error) -> Self {
        HandshakeError::Io(e)
    }
}

impl From<HandshakeError> for io::Error {
    fn from(e: HandshakeError) -> Self {
        match e {
            HandshakeError::Io(e) => e,
            HandshakeError::TimedOut => io::Error::new(io::ErrorKind::TimedOut, e.to_string()),
            e => invalid(e.to_string()),
        }
    }
}

/// Runs the node side of the handshake: `own_key` is the node's long-term secret.
pub async fn connect<R, W>(
    mut r: R,
    mut w: W,
    own_key: &[u8; 32],
    relay_key: &[u8; 32],
    group_id: &[u8; 16],
    session_id: &[u8; 16],
) -> Result<(LinkReader<R>, LinkWriter<W>), HandshakeError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut hs = Initiator::new(own_key, relay_key, group_id, session_id, entropy()?)
        .map_err(noise_error)?;
    let mut records = RecordReader::initiator();
    let mut raw = BytesMut::new();
    let transport = in_time(async {
        let mut request = [0u8; HEADER_LEN + REQUEST_LEN];
        let n = hs.write_request(&mut request).map_err(noise_error)?;
        w.write_all(&request[..n]).await?;
        w.flush().await?;
        let Some(used) = read_record(&mut r, &mut raw, &mut records).await? else {
            return Err(HandshakeError::Closed);
        };
        let transport = hs
            .read_response(&raw[HEADER_LEN..used])
            .map_err(|_| HandshakeError::WrongRelayKey)?;
        raw.advance(used);
        Ok(transport)
    })
    .await?;
    Ok(established(transport, r, records, raw, w))
}

/// Runs the relay side of the handshake; `admit` maps the node's static key to an identity.
/// (The relay uses [`accept_checked`]; the tests, without a replay check, this.)
#[cfg(test)]
pub async fn accept<R, W, T>(
    r: R,
    w: W,
    relay_key: &[u8; 32],
    group_id: &[u8; 16],
    session_id: &[u8; 16],
    admit: impl FnOnce(&[u8; 32]) -> Option<T>,
) -> Result<(T, LinkReader<R>, LinkWriter<W>), HandshakeError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let ids = [(*group_id, *session_id)];
    accept_any(r, w, relay_key, &ids, |_, k| admit(k)).await
}

/// Runs the relay side of a handshake that may be under any of several (group id, session
/// id) pairs, without a replay check: [`accept_checked`] with no `check` (tests only: every
/// listener of the relay checks for replays).
#[cfg(test)]
pub async fn accept_any<R, W, T>(
    r: R,
    w: W,
    relay_key: &[u8; 32],
    ids: &[([u8; 16], [u8; 16])],
    admit: impl FnOnce(usize, &[u8; 32]) -> Option<T>,
) -> Result<(T, LinkReader<R>, LinkWriter<W>), HandshakeError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let no_check = |_: &[u8; REQUEST_LEN]| Ok::<(), std::convert::Infallible>(());
    accept_checked(r, w, relay_key, ids, no_check, admit).await
}

/// Runs the relay side of the handshake, first showing the raw request to `check`.
///
/// `check` sees the [`REQUEST_LEN`]-byte request before any Diffie-Hellman work, so a
/// replay cache can refuse a request it has seen (the error's text becomes the link's
/// error). The request may be under any of `ids`' (group id, session id) pairs, tried in
/// turn (the first is the one most links use; a relay after a switch also serves the switch
/// links of the epoch that ended); `admit` then gets the index of the pair that matched and
/// the node's authenticated static key, and maps them to an identity.
pub async fn accept_checked<R, W, T, E>(
    mut r: R,
    mut w: W,
    relay_key: &[u8; 32],
    ids: &[([u8; 16], [u8; 16])],
    check: impl FnOnce(&[u8; REQUEST_LEN]) -> Result<(), E>,
    admit: impl FnOnce(usize, &[u8; 32]) -> Option<T>,
) -> Result<(T, LinkReader<R>, LinkWriter<W>), HandshakeError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
    E: std::fmt::Display,
{
    let mut records = RecordReader::responder();
    let mut raw = BytesMut::new();
    let (who, transport) = in_time(async {
        let Some(used) = read_record(&mut r, &mut raw, &mut records).await? else {
            return Err(HandshakeError::Closed);
        };
        // The responder's record reader lets through only REQUEST_LEN-byte messages.
        let request: &[u8; REQUEST_LEN] = raw[HEADER_LEN..used]
            .try_into()
            .map_err(|_| invalid("handshake request of the wrong length"))?;
        check(request).map_err(|e| HandshakeError::Refused(e.to_string()))?;
        let mut matched = None;
        for (n, (group_id, session_id)) in ids.iter().enumerate() {
            let mut hs =
                Responder::new(relay_key, group_id, session_id, entropy()?).map_err(noise_error)?;
            if let Ok(key) = hs.read_request(request) {
                matched = Some((n, hs, key));
                break;
            }
        }
        let Some((n, hs, key)) = matched else {
            return Err(HandshakeError::NotForThisRelay);
        };
        raw.advance(used);
        let who = admit(n, &key).ok_or(HandshakeError::NotMember)?;
        let mut response = [0u8; HEADER_LEN + RESPONSE_LEN];
        let (len, transport) = hs.write_response(&mut response).map_err(noise_error)?;
        w.write_all(&response[..len]).await?;
        w.flush().await?;
        Ok((who, transport))
    })
    .await?;
    let (reader, writer) = established(transport, r, records, raw, w);
    Ok((who, reader, writer))
}

/// Runs a handshake step within [`HANDSHAKE_TIMEOUT`].
async fn in_time<T>(
    step: impl std::future::Future<Output = Result<T, HandshakeError>>,
) -> Result<T, HandshakeError> {
    tokio::time::timeout(HANDSHAKE_TIMEOUT, step)
        .await
        .map_err(|_| HandshakeError::TimedOut)?
}

/// Turns a finished handshake into the two halves of the link; `raw` holds any stream
/// bytes that arrived after the handshake.
fn established<R, W>(
    transport: Transport,
    r: R,
    records: RecordReader,
    raw: BytesMut,
    w: W,
) -> (LinkReader<R>, LinkWriter<W>) {
    let (sealer, opener) = transport.split();
    (
        LinkReader {
            inner: r,
            opener,
            records,
            raw,
            plain: BytesMut::new(),
        },
        LinkWriter {
            inner: w,
            sealer,
            max_record: std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(MAX_PLAINTEXT)),
        },
    )
}

impl<W: AsyncWrite + Unpin> LinkWriter<W> {
    /// Turns this writer into a sink the caller fills in place and flushes itself.
    pub fn into_sink(self, max_frame: usize) -> LinkSink<W> {
        LinkSink {
            inner: self.inner,
            sealer: self.sealer,
            plain: vec![0u8; 2 * (max_frame + wire::FRAME_HEADER_LEN)],
            used: 0,
            max_frame: max_frame + wire::FRAME_HEADER_LEN,
            sealed: Vec::with_capacity(2 * MAX_RECORD),
        }
    }
}

/// The sending half of a node's link, written in place: frames go into [`LinkSink::room`],
/// and [`LinkSink::flush`] seals and writes everything in one go. Nothing is allocated per
/// frame.
pub struct LinkSink<W> {
    inner: W,
    sealer: Sealer,
    plain: Vec<u8>,
    used: usize,
    max_frame: usize,
    sealed: Vec<u8>,
}

impl<W: AsyncWrite + Unpin> LinkSink<W> {
    /// Whether a whole frame of the declared size still fits before a flush.
    pub fn has_room(&self) -> bool {
        self.plain.len() - self.used >= self.max_frame
    }

    /// Where the next frame goes (write it at the start, then [`LinkSink::commit`]).
    pub fn room(&mut self) -> &mut [u8] {
        &mut self.plain[self.used..]
    }

    /// Keeps the `n` bytes just written to [`LinkSink::room`].
    pub fn commit(&mut self, n: usize) {
        self.used = (self.used + n).min(self.plain.len());
    }

    /// Seals and writes everything committed.
    pub async fn flush(&mut self) -> io::Result<()> {
        if self.used == 0 {
            return Ok(());
        }
        self.sealed.clear();
        for chunk in self.plain[..self.used].chunks(MAX_PLAINTEXT) {
            let start = self.sealed.len();
            self.sealed.resize(start + chunk.len() + OVERHEAD, 0);
            self.sealer
                .seal(chunk, &mut self.sealed[start..])
                .map_err(|e| io::Error::other(format!("encrypt: {e}")))?;
        }
        self.used = 0;
        self.inner.write_all(&self.sealed).await?;
        self.inner.flush().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dissent_core::crypto::public_key;
    use tokio::io::{DuplexStream, ReadHalf, WriteHalf};

    async fn pair(
        node_key: [u8; 32],
        relay_key: [u8; 32],
        relay_pub: [u8; 32],
        members: Vec<[u8; 32]>,
    ) -> (io::Result<()>, io::Result<usize>) {
        let (a, b) = tokio::io::duplex(1 << 20);
        let (ar, aw) = tokio::io::split(a);
        let (br, bw) = tokio::io::split(b);
        let node = async move {
            let (mut reader, writer) =
                connect(ar, aw, &node_key, &relay_pub, &[1; 16], &[2; 16]).await?;
            let (tx, rx) = mpsc::channel(8);
            let w = tokio::spawn(writer.run(rx));
            // One small frame and one spanning several records.
            let max = wire::MAX_FRAME_BODY;
            let mut big = vec![0u8; 4 + max];
            big[..4].copy_from_slice(&(max as u32).to_be_bytes());
            for (i, b) in big[4..].iter_mut().enumerate() {
                *b = i as u8;
            }
            tx.send(Bytes::from_static(&[0, 0, 0, 2, 7, 8]))
                .await
                .unwrap();
            tx.send(Bytes::from(big)).await.unwrap();
            drop(tx);
            w.await.unwrap()?;
            // The relay echoes back one frame.
            let f = reader.next().await?.unwrap();
            assert_eq!(&f[..], &[9]);
            Ok(())
        };
        let relay = async move {
            let (who, mut reader, writer) = accept(br, bw, &relay_key, &[1; 16], &[2; 16], |k| {
                members.iter().position(|m| m == k)
            })
            .await?;
            let (tx, rx) = mpsc::channel(8);
            let w = tokio::spawn(writer.run(rx));
            assert_eq!(&reader.next().await?.unwrap()[..], &[7, 8]);
            let big = reader.next().await?.unwrap();
            assert_eq!(big.len(), wire::MAX_FRAME_BODY);
            assert!(big.iter().enumerate().all(|(i, b)| *b == i as u8));
            assert!(reader.next().await?.is_none());
            tx.send(Bytes::from_static(&[0, 0, 0, 1, 9])).await.unwrap();
            drop(tx);
            w.await.unwrap()?;
            Ok(who)
        };
        tokio::join!(node, relay)
    }

    #[tokio::test]
    async fn members_get_through_and_frames_survive_records() {
        let (node, relay) = ([3u8; 32], [4u8; 32]);
        let (n, r) = pair(
            node,
            relay,
            public_key(&relay),
            vec![[0; 32], public_key(&node)],
        )
        .await;
        n.unwrap();
        assert_eq!(r.unwrap(), 1);
    }

    #[tokio::test]
    async fn strangers_and_wrong_relay_keys_are_refused() {
        let (node, relay) = ([3u8; 32], [4u8; 32]);
        // Not a member.
        let (n, r) = pair(node, relay, public_key(&relay), vec![public_key(&[5; 32])]).await;
        assert!(n.is_err());
        assert!(r.unwrap_err().to_string().contains("not a member"));
        // Node encrypts to the wrong relay key.
        let (n, r) = pair(node, relay, public_key(&[6; 32]), vec![public_key(&node)]).await;
        assert!(n.is_err() && r.is_err());
    }

    #[tokio::test]
    async fn garbage_and_tampering_are_errors() {
        let (a, b) = tokio::io::duplex(4096);
        let (br, bw) = tokio::io::split(b);
        let (_ar, mut aw) = tokio::io::split(a);
        // A first record of the wrong length is refused without waiting for its body.
        aw.write_all(&[0xFF, 0xFF, 1, 2, 3]).await.unwrap();
        let r = accept(br, bw, &[4; 32], &[1; 16], &[2; 16], |_| Some(())).await;
        assert!(r.err().unwrap().to_string().contains("65535"));
        // Right length, random bytes.
        let (a, b) = tokio::io::duplex(4096);
        let (br, bw) = tokio::io::split(b);
        let (_ar, mut aw) = tokio::io::split(a);
        let mut junk = vec![0u8, REQUEST_LEN as u8];
        junk.extend((0..REQUEST_LEN).map(|i| (i * 7) as u8));
        aw.write_all(&junk).await.unwrap();
        let r = accept(br, bw, &[4; 32], &[1; 16], &[2; 16], |_| Some(())).await;
        assert!(r.is_err());
    }

    #[tokio::test]
    async fn requests_are_checked_before_the_key_exchange() {
        use crate::relay::admission::{Ephemeral, Refusal, Replays};
        let (node, relay) = ([3u8; 32], [4u8; 32]);
        let (relay_pub, node_pub) = (public_key(&relay), public_key(&node));
        let replays = Replays::new(Duration::from_secs(60), 16);
        let now = std::time::Instant::now();

        // A member's link: the check sees the request the node sent, byte for byte.
        let (a, b) = tokio::io::duplex(1 << 16);
        let (ar, aw) = tokio::io::split(a);
        let (br, bw) = tokio::io::split(b);
        let mut seen = None;
        let (n, r) = tokio::join!(
            connect(ar, aw, &node, &relay_pub, &[1; 16], &[2; 16]),
            accept_checked(
                br,
                bw,
                &relay,
                &[([1; 16], [2; 16])],
                |req| {
                    seen = Some(*req);
                    replays.check(now, req)
                },
                |_, k| Some(*k),
            )
        );
        n.unwrap();
        assert_eq!(r.unwrap().0, node_pub);
        let request = seen.unwrap();
        replays.insert(now, Ephemeral::of(&request)).unwrap();

        // The same request again is refused by the check, and the key is never looked at.
        let (a, b) = tokio::io::duplex(1 << 16);
        let (_ar, mut aw) = tokio::io::split(a);
        let (br, bw) = tokio::io::split(b);
        aw.write_all(&(REQUEST_LEN as u16).to_be_bytes())
            .await
            .unwrap();
        aw.write_all(&request).await.unwrap();
        let mut admitted = false;
        let r = accept_checked(
            br,
            bw,
            &relay,
            &[([1; 16], [2; 16])],
            |req| replays.check(now, req),
            |_, k| {
                admitted = true;
                Some(*k)
            },
        )
        .await;
        assert_eq!(r.err().unwrap().to_string(), Refusal::Replayed.to_string());
        assert!(!admitted);
        assert_eq!(replays.refused(), 1);

        // Without the check the replay authenticates: the check is what refuses it.
        let (a, b) = tokio::io::duplex(1 << 16);
        let (_ar, mut aw) = tokio::io::split(a);
        let (br, bw) = tokio::io::split(b);
        aw.write_all(&(REQUEST_LEN as u16).to_be_bytes())
            .await
            .unwrap();
        aw.write_all(&request).await.unwrap();
        let r = accept(br, bw, &relay, &[1; 16], &[2; 16], |k| Some(*k)).await;
        assert_eq!(r.unwrap().0, node_pub);
    }

    /// One end of a link as the snow-based releases ran it.
    struct SnowPeer {
        r: ReadHalf<DuplexStream>,
        w: WriteHalf<DuplexStream>,
        state: snow::TransportState,
    }

    impl SnowPeer {
        async fn read_message(r: &mut ReadHalf<DuplexStream>) -> Vec<u8> {
            let mut len = [0u8; 2];
            r.read_exact(&mut len).await.unwrap();
            let mut msg = vec![0u8; usize::from(u16::from_be_bytes(len))];
            r.read_exact(&mut msg).await.unwrap();
            msg
        }

        async fn write_message(w: &mut WriteHalf<DuplexStream>, msg: &[u8]) {
            w.write_all(&(msg.len() as u16).to_be_bytes())
                .await
                .unwrap();
            w.write_all(msg).await.unwrap();
        }

        /// Sends `frame` as one record.
        async fn send(&mut self, frame: &[u8]) {
            let mut buf = vec![0u8; MAX_RECORD];
            let n = self.state.write_message(frame, &mut buf).unwrap();
            Self::write_message(&mut self.w, &buf[..n]).await;
        }

        /// Receives one record's plaintext.
        async fn receive(&mut self) -> Vec<u8> {
            let msg = Self::read_message(&mut self.r).await;
            let mut buf = vec![0u8; MAX_RECORD];
            let n = self.state.read_message(&msg, &mut buf).unwrap();
            buf.truncate(n);
            buf
        }
    }

    fn snow_builder<'a>(key: &'a [u8; 32], prologue: &'a [u8]) -> snow::Builder<'a> {
        snow::Builder::new(dissent_core::link::NOISE_PARAMS.parse().unwrap())
            .local_private_key(key)
            .prologue(prologue)
    }

    /// The prologue as docs/protocol.md §1 writes it, for group 01×16 and session 02×16.
    fn prologue() -> Vec<u8> {
        [b"dissent-rs v1 link".as_slice(), &[1; 16], &[2; 16]].concat()
    }

    #[tokio::test]
    async fn snow_relays_and_snow_nodes_still_interoperate() {
        let (node, relay) = ([3u8; 32], [4u8; 32]);
        let (relay_pub, node_pub) = (public_key(&relay), public_key(&node));
        let frame = [0u8, 0, 0, 3, 7, 8, 9];

        // This node against a relay of the snow-based releases.
        let (a, b) = tokio::io::duplex(1 << 16);
        let (ar, aw) = tokio::io::split(a);
        let (br, bw) = tokio::io::split(b);
        let snow_relay = async move {
            let pro = prologue();
            let mut hs = snow_builder(&relay, &pro).build_responder().unwrap();
            let (mut r, mut w) = (br, bw);
            let msg = SnowPeer::read_message(&mut r).await;
            assert_eq!(msg.len(), REQUEST_LEN);
            hs.read_message(&msg, &mut [0u8; 64]).unwrap();
            assert_eq!(hs.get_remote_static().unwrap(), &node_pub);
            let mut buf = [0u8; 64];
            let n = hs.write_message(&[], &mut buf).unwrap();
            SnowPeer::write_message(&mut w, &buf[..n]).await;
            let mut peer = SnowPeer {
                r,
                w,
                state: hs.into_transport_mode().unwrap(),
            };
            assert_eq!(peer.receive().await, frame);
            peer.send(&frame[..4]).await;
            peer.send(&frame[4..]).await;
        };
        let ours = async move {
            let (mut reader, writer) =
                connect(ar, aw, &node, &relay_pub, &[1; 16], &[2; 16]).await?;
            let (tx, rx) = mpsc::channel(1);
            tx.send(Bytes::copy_from_slice(&frame)).await.unwrap();
            drop(tx);
            writer.run(rx).await?;
            reader.next().await
        };
        let ((), got) = tokio::join!(snow_relay, ours);
        assert_eq!(&got.unwrap().unwrap()[..], &frame[4..]);

        // A node of the snow-based releases against this relay.
        let (a, b) = tokio::io::duplex(1 << 16);
        let (ar, aw) = tokio::io::split(a);
        let (br, bw) = tokio::io::split(b);
        let snow_node = async move {
            let pro = prologue();
            let mut hs = snow_builder(&node, &pro)
                .remote_public_key(&relay_pub)
                .build_initiator()
                .unwrap();
            let (mut r, mut w) = (ar, aw);
            let mut buf = [0u8; 128];
            let n = hs.write_message(&[], &mut buf).unwrap();
            SnowPeer::write_message(&mut w, &buf[..n]).await;
            let msg = SnowPeer::read_message(&mut r).await;
            assert_eq!(msg.len(), RESPONSE_LEN);
            hs.read_message(&msg, &mut buf).unwrap();
            let mut peer = SnowPeer {
                r,
                w,
                state: hs.into_transport_mode().unwrap(),
            };
            peer.send(&frame).await;
            peer.send(&frame).await;
            peer.receive().await
        };
        let ours = async move {
            let (who, mut reader, writer) =
                accept(br, bw, &relay, &[1; 16], &[2; 16], |k| Some(*k)).await?;
            assert_eq!(who, node_pub);
            for _ in 0..2 {
                assert_eq!(&reader.next().await?.unwrap()[..], &frame[4..]);
            }
            let (tx, rx) = mpsc::channel(1);
            tx.send(Bytes::copy_from_slice(&frame)).await.unwrap();
            drop(tx);
            writer.run(rx).await
        };
        let (got, r) = tokio::join!(snow_node, ours);
        r.unwrap();
        assert_eq!(got, frame);
    }
}
