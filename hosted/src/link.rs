//! Authenticated, encrypted links between the relay and its clients and trustees.
//!
//! Every link starts with a Noise `IK` handshake (X25519, ChaCha20-Poly1305, BLAKE2s):
//! the node knows the relay's long-term key from system.json, and the relay learns the
//! node's long-term key from the first handshake message and admits it only if that key
//! belongs to a client or trustee of the group. The prologue binds the group and session.
//!
//! After the handshake the byte stream is a sequence of records,
//! `Length (u16, big endian) | Noise transport message`, whose plaintexts concatenated form
//! the frame stream of `dissent_core::wire`.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use dissent_core::wire;
use snow::{Builder, StatelessTransportState};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

/// The Noise protocol name.
pub const NOISE_PARAMS: &str = "Noise_IK_25519_ChaChaPoly_BLAKE2s";
/// Largest Noise message.
const MAX_RECORD: usize = 65535;
/// Authentication tag per record.
const TAG: usize = 16;
/// Largest plaintext per record.
const MAX_PLAIN: usize = MAX_RECORD - TAG;
/// Time allowed for the whole handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

fn prologue(group_id: &[u8; 16], session_id: &[u8; 16]) -> Vec<u8> {
    [b"dissent-rs v1 link".as_slice(), group_id, session_id].concat()
}

/// Length of the first handshake message: ephemeral key, encrypted static key, empty payload.
const FIRST_MESSAGE_LEN: usize = 32 + (32 + TAG) + TAG;

async fn read_record<R: AsyncRead + Unpin>(r: &mut R, buf: &mut Vec<u8>) -> io::Result<bool> {
    read_record_of(r, buf, None).await
}

/// Reads one record; with `exact`, any other length is refused before its body is read.
async fn read_record_of<R: AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut Vec<u8>,
    exact: Option<usize>,
) -> io::Result<bool> {
    let mut len = [0u8; 2];
    match r.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(false),
        Err(e) => return Err(e),
    }
    let n = usize::from(u16::from_be_bytes(len));
    if n < TAG {
        return Err(invalid(format!("record of {n} bytes is too short")));
    }
    if exact.is_some_and(|e| e != n) {
        return Err(invalid(format!("handshake message of {n} bytes")));
    }
    buf.resize(n, 0);
    r.read_exact(buf).await?;
    Ok(true)
}

async fn write_record<W: AsyncWrite + Unpin>(w: &mut W, record: &[u8]) -> io::Result<()> {
    // Records are at most MAX_RECORD bytes by construction.
    w.write_all(&(record.len() as u16).to_be_bytes()).await?;
    w.write_all(record).await
}

/// The receiving half of an established link.
pub struct LinkReader<R> {
    inner: BufReader<R>,
    state: Arc<StatelessTransportState>,
    nonce: u64,
    record: Vec<u8>,
    plain: BytesMut,
    scratch: Vec<u8>,
}

impl<R: AsyncRead + Unpin> LinkReader<R> {
    fn new(inner: BufReader<R>, state: Arc<StatelessTransportState>) -> Self {
        LinkReader {
            inner,
            state,
            nonce: 0,
            record: Vec::new(),
            plain: BytesMut::new(),
            scratch: vec![0u8; MAX_RECORD],
        }
    }

    /// Reads the next frame body; `Ok(None)` on a clean end of stream between frames.
    pub async fn next(&mut self) -> io::Result<Option<Bytes>> {
        loop {
            let split = wire::split_frame(&self.plain).map_err(|e| invalid(e.to_string()))?;
            if let Some((body, used)) = split {
                let start = used - body.len();
                let mut frame = self.plain.split_to(used);
                frame.advance(start);
                return Ok(Some(frame.freeze()));
            }
            if !read_record(&mut self.inner, &mut self.record).await? {
                if self.plain.is_empty() {
                    return Ok(None);
                }
                return Err(invalid("stream ended inside a frame"));
            }
            let n = self
                .state
                .read_message(self.nonce, &self.record, &mut self.scratch)
                .map_err(|_| invalid("record failed authentication"))?;
            self.nonce += 1;
            self.plain.extend_from_slice(&self.scratch[..n]);
        }
    }

    /// Reads the next frame body, failing if none arrives within `limit`.
    pub async fn next_within(&mut self, limit: Duration) -> io::Result<Option<Bytes>> {
        match tokio::time::timeout(limit, self.next()).await {
            Ok(r) => r,
            Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "no frame in time")),
        }
    }
}

/// The sending half of an established link.
pub struct LinkWriter<W> {
    inner: W,
    state: Arc<StatelessTransportState>,
}

impl<W: AsyncWrite + Unpin> LinkWriter<W> {
    /// Encrypts and writes every frame from `rx` until the channel closes, then shuts down.
    pub async fn run(mut self, mut rx: mpsc::Receiver<Bytes>) -> io::Result<()> {
        let mut nonce = 0u64;
        let mut plain: Vec<u8> = Vec::with_capacity(2 * MAX_PLAIN);
        let mut record = vec![0u8; MAX_RECORD];
        let mut out: Vec<u8> = Vec::with_capacity(4 * MAX_RECORD);
        while let Some(frame) = rx.recv().await {
            plain.extend_from_slice(&frame);
            // Batch whatever is already queued.
            while plain.len() < 4 * MAX_PLAIN {
                match rx.try_recv() {
                    Ok(f) => plain.extend_from_slice(&f),
                    Err(_) => break,
                }
            }
            for chunk in plain.chunks(MAX_PLAIN) {
                let n = self
                    .state
                    .write_message(nonce, chunk, &mut record)
                    .map_err(|e| io::Error::other(format!("encrypt: {e}")))?;
                nonce += 1;
                out.extend_from_slice(&(n as u16).to_be_bytes());
                out.extend_from_slice(&record[..n]);
            }
            plain.clear();
            self.inner.write_all(&out).await?;
            out.clear();
            self.inner.flush().await?;
        }
        self.inner.shutdown().await
    }
}

/// Runs the node side of the handshake: `own_key` is the node's long-term secret.
pub async fn connect<R, W>(
    r: R,
    mut w: W,
    own_key: &[u8; 32],
    relay_key: &[u8; 32],
    group_id: &[u8; 16],
    session_id: &[u8; 16],
) -> io::Result<(LinkReader<R>, LinkWriter<W>)>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let pro = prologue(group_id, session_id);
    let mut hs = Builder::new(params())
        .local_private_key(own_key)
        .remote_public_key(relay_key)
        .prologue(&pro)
        .build_initiator()
        .map_err(noise_error)?;
    let mut r = BufReader::with_capacity(2 * MAX_RECORD, r);
    in_time(async {
        send_handshake(&mut hs, &mut w).await?;
        let mut rec = Vec::new();
        if !read_record(&mut r, &mut rec).await? {
            return Err(invalid("relay closed the link during the handshake"));
        }
        let mut payload = vec![0u8; MAX_RECORD];
        hs.read_message(&rec, &mut payload)
            .map_err(|_| invalid("relay failed the handshake (wrong relay key or group?)"))?;
        Ok(())
    })
    .await?;
    established(hs, r, w)
}

/// Runs the relay side of the handshake; `admit` maps the node's static key to an identity.
pub async fn accept<R, W, T>(
    r: R,
    mut w: W,
    relay_key: &[u8; 32],
    group_id: &[u8; 16],
    session_id: &[u8; 16],
    admit: impl FnOnce(&[u8; 32]) -> Option<T>,
) -> io::Result<(T, LinkReader<R>, LinkWriter<W>)>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let pro = prologue(group_id, session_id);
    let mut hs = Builder::new(params())
        .local_private_key(relay_key)
        .prologue(&pro)
        .build_responder()
        .map_err(noise_error)?;
    let mut r = BufReader::with_capacity(2 * MAX_RECORD, r);
    let who = in_time(async {
        let mut rec = Vec::new();
        if !read_record_of(&mut r, &mut rec, Some(FIRST_MESSAGE_LEN)).await? {
            return Err(invalid("closed before the handshake"));
        }
        let mut payload = vec![0u8; MAX_RECORD];
        hs.read_message(&rec, &mut payload)
            .map_err(|_| invalid("handshake failed (not encrypted to this relay's key)"))?;
        let key: [u8; 32] = hs
            .get_remote_static()
            .and_then(|k| k.try_into().ok())
            .ok_or_else(|| invalid("handshake without a static key"))?;
        let who = admit(&key).ok_or_else(|| invalid("static key is not a member of the group"))?;
        send_handshake(&mut hs, &mut w).await?;
        Ok(who)
    })
    .await?;
    let (reader, writer) = established(hs, r, w)?;
    Ok((who, reader, writer))
}

fn noise_error(e: snow::Error) -> io::Error {
    io::Error::other(format!("noise: {e}"))
}

/// Writes our handshake message (empty payload) as one record.
async fn send_handshake<W: AsyncWrite + Unpin>(
    hs: &mut snow::HandshakeState,
    w: &mut W,
) -> io::Result<()> {
    let mut msg = vec![0u8; MAX_RECORD];
    let n = hs.write_message(&[], &mut msg).map_err(noise_error)?;
    write_record(w, &msg[..n]).await?;
    w.flush().await
}

/// Runs a handshake step within [`HANDSHAKE_TIMEOUT`].
async fn in_time<T>(step: impl std::future::Future<Output = io::Result<T>>) -> io::Result<T> {
    tokio::time::timeout(HANDSHAKE_TIMEOUT, step)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "handshake timed out"))?
}

/// Turns a finished handshake into the two halves of the link.
fn established<R, W>(
    hs: snow::HandshakeState,
    r: BufReader<R>,
    w: W,
) -> io::Result<(LinkReader<R>, LinkWriter<W>)>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let state = Arc::new(hs.into_stateless_transport_mode().map_err(noise_error)?);
    Ok((
        LinkReader::new(r, state.clone()),
        LinkWriter { inner: w, state },
    ))
}

fn params() -> snow::params::NoiseParams {
    // NOISE_PARAMS is a valid, supported protocol name.
    NOISE_PARAMS
        .parse()
        .unwrap_or_else(|_| unreachable!("valid noise parameters"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use dissent_core::crypto::public_key;

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
        let mut junk = vec![0u8, FIRST_MESSAGE_LEN as u8];
        junk.extend((0..FIRST_MESSAGE_LEN).map(|i| (i * 7) as u8));
        aw.write_all(&junk).await.unwrap();
        let r = accept(br, bw, &[4; 32], &[1; 16], &[2; 16], |_| Some(())).await;
        assert!(r.is_err());
    }
}
