//! The local side of a client: its listening port, and a reader and a writer task per local
//! connection, all on the process's main runtime.
//!
//! Owns moving bytes between local sockets and the answering side's channels: upstream
//! chunks into one queue bounded by a [`Budget`] ([`Pending`], which the answering side
//! drains only when it prepares an owned cell), and downstream [`Turn`]s, one per request
//! the answering side answered, whether or not it carries bytes for a local connection
//! ([`dispatch`]). So the answering side does the same for every request, owner or not: it
//! sends one turn, and taking upstream bytes wakes no reader (the dispatcher wakes them).
//! It must not touch the core client or the relay link: nothing here runs on the thread
//! that answers requests, and nothing here holds a lock that thread takes.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use dissent_core::client::{Chunk, Upstream};
use dissent_core::wire::ConnId;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Handle;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, Notify};
use tokio::task::AbortHandle;
use tracing::warn;

/// Downstream chunks buffered per local connection before it is aborted as not reading.
/// The bytes in them are bounded by the connection's credit window
/// (`dissent_core::credit`); this bounds their number.
pub(super) const LOCAL_QUEUE: usize = 4096;
/// Upstream chunks waiting for this client's slot, over all connections.
const UPSTREAM_CHUNKS: usize = 256;
/// Bytes read from a local connection at a time.
const READ_CHUNK: usize = 16 * 1024;

/// What a local connection sends upstream.
pub(super) enum FromLocal {
    Data(ConnId, Bytes),
    /// The application finished sending (EOF on the local socket): a half-close, the
    /// replies still come.
    Close(ConnId),
    /// The application is gone (the local socket was reset, or refused the replies): the
    /// exit drops the connection.
    Abort(ConnId),
}

/// Where the local writers report downstream bytes the applications took (written to
/// their sockets): the core grants them back to the exit as credit (it adds them up and
/// grants in steps). A channel of its own, apart from the upstream queue, so a grant never
/// waits behind the connection's uploads; no lock is shared with the answering side.
pub(super) struct Taken {
    tx: mpsc::UnboundedSender<(ConnId, u32)>,
    /// Bytes were taken.
    pub(super) added: Notify,
}

impl Taken {
    fn add(&self, conn: ConnId, n: u32) {
        if self.tx.send((conn, n)).is_ok() {
            self.added.notify_one();
        }
    }
}

/// Downstream bytes handed to local writers and not yet written, over all connections (at
/// most the credit window per connection, `dissent_core::credit`).
pub(super) static LOCAL_QUEUED: AtomicU64 = AtomicU64::new(0);

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

/// What the upstream queue holds, and the readers' wake-up when it has room.
///
/// Readers read only while the queue is below its bounds, so it holds at most
/// [`UPSTREAM_CHUNKS`] chunks or `UPSTREAM_CHUNKS * READ_CHUNK` bytes, plus one chunk per
/// local connection.
#[derive(Default)]
pub(super) struct Budget {
    bytes: AtomicUsize,
    chunks: AtomicUsize,
    room: Notify,
}

impl Budget {
    fn full(&self) -> bool {
        self.chunks.load(Ordering::Relaxed) >= UPSTREAM_CHUNKS
            || self.bytes.load(Ordering::Relaxed) >= UPSTREAM_CHUNKS * READ_CHUNK
    }

    /// Waits until the queue is below its bounds.
    async fn room(&self) {
        loop {
            let notified = self.room.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if !self.full() {
                return;
            }
            notified.await;
        }
    }

    fn added(&self, len: usize) {
        self.bytes.fetch_add(len, Ordering::Relaxed);
        self.chunks.fetch_add(1, Ordering::Relaxed);
    }

    fn taken(&self, len: usize) {
        self.bytes.fetch_sub(len, Ordering::Relaxed);
        self.chunks.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Upstream bytes from all local connections, in arrival order.
pub(super) struct Pending {
    pub(super) rx: mpsc::UnboundedReceiver<FromLocal>,
    pub(super) partial: Option<FromLocal>,
    /// What the queue holds (added by the readers, taken here).
    pub(super) budget: Arc<Budget>,
    /// The writers' side of the taken bytes (cloned into each writer).
    pub(super) taken: Arc<Taken>,
    /// Downstream bytes the applications took, reported before any upstream chunk.
    taken_rx: mpsc::UnboundedReceiver<(ConnId, u32)>,
}

impl Pending {
    pub(super) fn new(rx: mpsc::UnboundedReceiver<FromLocal>, budget: Arc<Budget>) -> Self {
        let (tx, taken_rx) = mpsc::unbounded_channel();
        Pending {
            rx,
            partial: None,
            budget,
            taken: Arc::new(Taken {
                tx,
                added: Notify::new(),
            }),
            taken_rx,
        }
    }

    /// Keeps a chunk just taken from the queue for the next pull.
    pub(super) fn hold(&mut self, up: FromLocal) {
        if let FromLocal::Data(_, d) = &up {
            self.budget.taken(d.len());
        }
        self.partial = Some(up);
    }
}

impl Upstream for Pending {
    fn next_chunk(&mut self, buf: &mut [u8]) -> Option<Chunk> {
        if let Ok((conn, bytes)) = self.taken_rx.try_recv() {
            return Some(Chunk::Read { conn, bytes });
        }
        let item = match self.partial.take() {
            Some(p) => p,
            None => {
                let item = self.rx.try_recv().ok()?;
                if let FromLocal::Data(_, d) = &item {
                    self.budget.taken(d.len());
                }
                item
            }
        };
        match item {
            FromLocal::Close(conn) => Some(Chunk::Close { conn }),
            FromLocal::Abort(conn) => Some(Chunk::Abort { conn }),
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
        partial + self.budget.bytes.load(Ordering::Relaxed)
    }
}

/// The downstream part of one answered request: the bytes (or the end) for a local
/// connection, or nothing.
pub(super) struct Turn(pub(super) Option<(ConnId, mpsc::Sender<ToLocal>, ToLocal)>);

/// Hands each turn's bytes to its local connection, and lets the readers check for room;
/// names the connections that do not keep up to `stuck` (one whose writer is gone, its
/// application having left, sent its abort itself).
pub(super) async fn dispatch(
    mut turns: mpsc::Receiver<Turn>,
    budget: Arc<Budget>,
    stuck: mpsc::UnboundedSender<ConnId>,
) {
    while let Some(Turn(down)) = turns.recv().await {
        if let Some((conn, tx, down)) = down {
            let len = match &down {
                ToLocal::Data(d) => d.len() as u64,
                ToLocal::Close => 0,
            };
            LOCAL_QUEUED.fetch_add(len, Ordering::Relaxed);
            if let Err(e) = tx.try_send(down) {
                LOCAL_QUEUED.fetch_sub(len, Ordering::Relaxed);
                if let TrySendError::Full(_) = e {
                    let _ = stuck.send(conn);
                }
            }
        }
        budget.room.notify_waiters();
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
///
/// How the application's end is told apart: EOF on read is a shutdown of its sending only
/// (`shutdown(SHUT_WR)`, or a close whose FIN arrived first): a half-close upstream, and
/// the replies keep coming. A read or write that fails (a reset; a write into a socket
/// the application closed, which the kernel answers with a reset) means it is gone in
/// both directions: an abort upstream, so the exit stops reading the destination. An
/// application that closed entirely is thus found out at the latest by the first reply
/// written after its FIN.
/// The connection's number in the log is the caller's to set (`number` is 0 here).
pub(super) fn spawn_local(
    local: &Handle,
    conn: ConnId,
    stream: TcpStream,
    up: mpsc::UnboundedSender<FromLocal>,
    budget: Arc<Budget>,
    taken: Arc<Taken>,
    carried: bool,
) -> Local {
    let (mut r, mut w) = stream.into_split();
    let (tx, mut rx) = mpsc::channel::<ToLocal>(LOCAL_QUEUE);
    let aborts = up.clone();
    let reader = local.spawn(async move {
        let mut buf = vec![0u8; READ_CHUNK];
        loop {
            budget.room().await;
            match r.read(&mut buf).await {
                Ok(0) => break,
                Err(_) => {
                    let _ = up.send(FromLocal::Abort(conn));
                    return;
                }
                Ok(n) => {
                    crate::metrics::bytes_up(n as u64);
                    budget.added(n);
                    let chunk = Bytes::copy_from_slice(&buf[..n]);
                    if up.send(FromLocal::Data(conn, chunk)).is_err() {
                        return;
                    }
                }
            }
        }
        let _ = up.send(FromLocal::Close(conn));
    });
    let reader_abort = reader.abort_handle();
    local.spawn(async move {
        let _ = w.as_ref().set_nodelay(true);
        while let Some(down) = rx.recv().await {
            match down {
                ToLocal::Data(d) => {
                    let written = w.write_all(&d).await;
                    LOCAL_QUEUED.fetch_sub(d.len() as u64, Ordering::Relaxed);
                    if written.is_ok() {
                        taken.add(conn, d.len() as u32);
                    } else {
                        // The application is gone: nothing more to write or read.
                        reader_abort.abort();
                        rx.close();
                        while let Ok(left) = rx.try_recv() {
                            if let ToLocal::Data(d) = left {
                                LOCAL_QUEUED.fetch_sub(d.len() as u64, Ordering::Relaxed);
                            }
                        }
                        let _ = aborts.send(FromLocal::Abort(conn));
                        return;
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
        number: 0,
        tx,
        reader: reader.abort_handle(),
        accepted: tokio::time::Instant::now(),
        carried,
    }
}
