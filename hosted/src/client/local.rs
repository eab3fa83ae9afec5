//! The local side of a client: its listening port, and a reader and a writer task per local
//! connection, all on the process's main runtime.
//!
//! Owns moving bytes between local sockets and the answering side's channels: upstream
//! chunks into one bounded queue ([`Pending`], which the answering side drains only when it
//! prepares an owned cell), downstream chunks out of one bounded queue per connection. It
//! must not touch the core client or the relay link: nothing here runs on the thread that
//! answers requests, and nothing here holds a lock that thread takes.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use dissent_core::client::{Chunk, Upstream};
use dissent_core::wire::ConnId;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Handle;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tracing::warn;

/// Downstream chunks buffered per local connection before it is closed as not reading.
const LOCAL_QUEUE: usize = 4096;
/// Bytes read from a local connection at a time.
const READ_CHUNK: usize = 16 * 1024;

/// What a local connection sends upstream.
pub(super) enum FromLocal {
    Data(ConnId, Bytes),
    /// The application finished sending.
    Close(ConnId),
}

/// What goes down to a local connection.
pub(super) enum ToLocal {
    Data(Bytes),
    /// The exit ended the connection.
    Close,
}

/// The answering side's handle of one local connection.
pub(super) struct Local {
    /// The name in the log (never the Conn#, which tells the slot).
    pub(super) number: u64,
    pub(super) tx: mpsc::Sender<ToLocal>,
    pub(super) reader: AbortHandle,
    pub(super) accepted: tokio::time::Instant,
    /// An interval ran since the connection was accepted.
    pub(super) carried: bool,
}

/// Upstream bytes from all local connections, in arrival order.
pub(super) struct Pending {
    pub(super) rx: mpsc::Receiver<FromLocal>,
    pub(super) partial: Option<FromLocal>,
    /// Bytes in the queue (added by the readers, taken here).
    pub(super) queued: Arc<AtomicUsize>,
}

impl Pending {
    pub(super) fn new(rx: mpsc::Receiver<FromLocal>) -> Self {
        Pending {
            rx,
            partial: None,
            queued: Arc::default(),
        }
    }

    /// Keeps a chunk just taken from the queue for the next pull.
    pub(super) fn hold(&mut self, up: FromLocal) {
        if let FromLocal::Data(_, d) = &up {
            self.queued.fetch_sub(d.len(), Ordering::Relaxed);
        }
        self.partial = Some(up);
    }
}

impl Upstream for Pending {
    fn next_chunk(&mut self, buf: &mut [u8]) -> Option<Chunk> {
        let item = match self.partial.take() {
            Some(p) => p,
            None => {
                let item = self.rx.try_recv().ok()?;
                if let FromLocal::Data(_, d) = &item {
                    self.queued.fetch_sub(d.len(), Ordering::Relaxed);
                }
                item
            }
        };
        match item {
            FromLocal::Close(conn) => Some(Chunk::Close { conn }),
            FromLocal::Data(conn, data) => {
                let n = data.len().min(buf.len());
                buf[..n].copy_from_slice(&data[..n]);
                if n < data.len() {
                    self.partial = Some(FromLocal::Data(conn, data.slice(n..)));
                }
                Some(Chunk::Data { conn, len: n })
            }
        }
    }

    fn pending(&self) -> usize {
        let partial = match &self.partial {
            Some(FromLocal::Data(_, d)) => d.len(),
            _ => 0,
        };
        partial + self.queued.load(Ordering::Relaxed)
    }
}

/// Accepts local connections and hands them to the answering side, until it is gone.
pub(super) async fn accept_loop(
    listener: TcpListener,
    to_answer: mpsc::Sender<(TcpStream, SocketAddr)>,
) {
    loop {
        match listener.accept().await {
            Ok(accepted) => {
                if to_answer.send(accepted).await.is_err() {
                    return;
                }
            }
            Err(e) => warn!("accept failed: {e}"),
        }
    }
}

/// Pumps one local connection with two tasks on the runtime `local`: reads go upstream,
/// downstream bytes get written.
pub(super) fn spawn_local(
    local: &Handle,
    conn: ConnId,
    number: u64,
    stream: TcpStream,
    up: mpsc::Sender<FromLocal>,
    queued: Arc<AtomicUsize>,
    carried: bool,
) -> Local {
    let (mut r, mut w) = stream.into_split();
    let (tx, mut rx) = mpsc::channel::<ToLocal>(LOCAL_QUEUE);
    let reader = local.spawn(async move {
        let mut buf = vec![0u8; READ_CHUNK];
        loop {
            match r.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    crate::metrics::bytes_up(n as u64);
                    queued.fetch_add(n, Ordering::Relaxed);
                    let chunk = Bytes::copy_from_slice(&buf[..n]);
                    if up.send(FromLocal::Data(conn, chunk)).await.is_err() {
                        return;
                    }
                }
            }
        }
        let _ = up.send(FromLocal::Close(conn)).await;
    });
    let reader_abort = reader.abort_handle();
    local.spawn(async move {
        let _ = w.as_ref().set_nodelay(true);
        while let Some(down) = rx.recv().await {
            match down {
                ToLocal::Data(d) => {
                    if w.write_all(&d).await.is_err() {
                        break;
                    }
                }
                ToLocal::Close => break,
            }
        }
        // The exit closed: finish and close the local side entirely.
        let _ = w.shutdown().await;
        reader_abort.abort();
    });
    Local {
        number,
        tx,
        reader: reader.abort_handle(),
        accepted: tokio::time::Instant::now(),
        carried,
    }
}
