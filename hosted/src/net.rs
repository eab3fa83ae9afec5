//! Framed links over TCP: length-prefixed frames in, frames out, with hard limits.

use std::io;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use dissent_core::wire::{self, FRAME_HEADER_LEN};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, BufWriter};
use tokio::sync::mpsc;

/// Frames a peer may have queued for sending before it counts as too slow.
pub const SEND_QUEUE: usize = 512;

/// Reads frames from one side of a link.
pub struct FrameReader<R> {
    inner: BufReader<R>,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// Wraps a byte stream.
    pub fn new(inner: R) -> Self {
        FrameReader {
            inner: BufReader::with_capacity(128 * 1024, inner),
        }
    }

    /// Reads the next frame body; `Ok(None)` on a clean end of stream between frames.
    pub async fn next(&mut self) -> io::Result<Option<Bytes>> {
        let mut header = [0u8; FRAME_HEADER_LEN];
        match self.inner.read_exact(&mut header).await {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e),
        }
        let n = wire::frame_body_len(header)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
        let mut body = BytesMut::zeroed(n);
        self.inner.read_exact(&mut body).await?;
        Ok(Some(body.freeze()))
    }

    /// Reads the next frame body, failing if none arrives within `limit`.
    pub async fn next_within(&mut self, limit: Duration) -> io::Result<Option<Bytes>> {
        match tokio::time::timeout(limit, self.next()).await {
            Ok(r) => r,
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "no frame within the time limit",
            )),
        }
    }
}

/// Writes every frame from `rx` to `w` until the channel closes, then shuts the stream down.
pub async fn write_frames<W: AsyncWrite + Unpin>(
    w: W,
    mut rx: mpsc::Receiver<Bytes>,
) -> io::Result<()> {
    let mut w = BufWriter::with_capacity(128 * 1024, w);
    while let Some(frame) = rx.recv().await {
        w.write_all(&frame).await?;
        // Batch whatever is already queued into one write.
        while let Ok(frame) = rx.try_recv() {
            w.write_all(&frame).await?;
        }
        w.flush().await?;
    }
    w.shutdown().await
}

/// Time since `origin` as the core's clock.
pub fn core_now(origin: tokio::time::Instant) -> dissent_core::Instant {
    dissent_core::Instant::from_micros(origin.elapsed().as_micros() as u64)
}

/// Converts a core deadline back to a tokio instant.
pub fn tokio_at(origin: tokio::time::Instant, at: dissent_core::Instant) -> tokio::time::Instant {
    origin + Duration::from_micros(at.as_micros())
}

/// Resolves when the process is asked to stop (Ctrl-C or SIGTERM).
pub async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_round_trip_and_garbage_is_an_error() {
        let (a, b) = tokio::io::duplex(1024);
        let (tx, rx) = mpsc::channel(4);
        let writer = tokio::spawn(write_frames(a, rx));
        tx.send(Bytes::from_static(&[0, 0, 0, 3, 1, 2, 3]))
            .await
            .unwrap();
        tx.send(Bytes::from_static(&[0, 0, 0, 1, 9])).await.unwrap();
        drop(tx);
        let mut r = FrameReader::new(b);
        assert_eq!(r.next().await.unwrap().unwrap(), &[1, 2, 3][..]);
        assert_eq!(r.next().await.unwrap().unwrap(), &[9][..]);
        assert!(r.next().await.unwrap().is_none());
        writer.await.unwrap().unwrap();

        let (mut a, b) = tokio::io::duplex(1024);
        a.write_all(&[0xFF, 0xFF, 0xFF, 0xFF, 0]).await.unwrap();
        let err = FrameReader::new(b).next().await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }
}
