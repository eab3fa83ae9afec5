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
//!
//! Memory per local connection, whatever the relay and the application do: at most
//! [`credit::DOWN_WINDOW`] bytes of downstream waiting for the application ([`Outbox`]: the
//! exit sends no more before the client grants what the application took, and a connection
//! sent more is aborted), and at most one [`READ_CHUNK`] of upstream read from the
//! application and not yet staged, and only within the connection's upstream credit
//! ([`SendGate`]: a connection whose destination stopped reading is not read here, and TCP
//! pushes back on the application).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use bytes::BytesMut;
use dissent_core::client::{Chunk, SendCredits, Upstream};
use dissent_core::credit;
use dissent_core::wire::ConnId;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Handle;
use tokio::sync::{mpsc, Notify};
use tokio::task::AbortHandle;
use tracing::warn;

/// Turns waiting for the dispatcher, over all local connections.
pub(super) const TURN_QUEUE: usize = 4096;
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

/// A local connection's upstream credit (`dissent_core::credit::SendCredit`), as its reader
/// sees it: the window, plus what the exit granted, less what was read. It never exceeds
/// the core client's own credit for the connection (the core adds a grant before the
/// reader hears of it, and the reader spends before the core stages), so every byte read
/// is staged without waiting for credit.
pub(super) struct SendGate {
    credit: AtomicU64,
    granted: Notify,
}

impl SendGate {
    fn new() -> Self {
        SendGate {
            credit: AtomicU64::new(u64::from(credit::UP_WINDOW)),
            granted: Notify::new(),
        }
    }

    /// The exit granted `bytes` more (what the core client added).
    pub(super) fn grant(&self, bytes: u32) {
        if bytes > 0 {
            self.credit.fetch_add(u64::from(bytes), Ordering::Relaxed);
            self.granted.notify_one();
        }
    }

    /// Waits until some credit is left and takes it (at most `max`). Only the connection's
    /// reader takes, so what it saw is still there.
    async fn take(&self, max: usize) -> usize {
        loop {
            let granted = self.granted.notified();
            let left = self.credit.load(Ordering::Relaxed);
            if left > 0 {
                let n = left.min(max as u64);
                self.credit.fetch_sub(n, Ordering::Relaxed);
                return n as usize;
            }
            granted.await;
        }
    }

    /// Gives back what was taken and not read.
    fn untake(&self, n: usize) {
        self.credit.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// Why [`Outbox::push`] refused bytes.
pub(super) enum Refused {
    /// More than the downstream window waits: the application is not reading, and the exit
    /// sent beyond its credit.
    Full,
    /// The application is gone (its writer sent the abort).
    Gone,
}

/// Downstream bytes waiting for a local connection's application, in one buffer (so a
/// stream of one-byte records costs its bytes, not a chunk each), at most
/// [`credit::DOWN_WINDOW`] of them.
pub(super) struct Outbox {
    state: std::sync::Mutex<OutState>,
    ready: Notify,
}

#[derive(Default)]
struct OutState {
    bytes: BytesMut,
    /// Bytes the writer took and has not finished writing.
    writing: usize,
    closed: bool,
    gone: bool,
}

impl Outbox {
    fn new() -> Self {
        Outbox {
            state: std::sync::Mutex::default(),
            ready: Notify::new(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, OutState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `down` for the writer.
    pub(super) fn push(&self, down: &ToLocal) -> Result<(), Refused> {
        let mut s = self.state();
        if s.gone {
            return Err(Refused::Gone);
        }
        match down {
            ToLocal::Data(d) => {
                if s.bytes.len() + s.writing + d.len() > credit::DOWN_WINDOW as usize {
                    return Err(Refused::Full);
                }
                s.bytes.extend_from_slice(d);
                LOCAL_QUEUED.fetch_add(d.len() as u64, Ordering::Relaxed);
            }
            ToLocal::Close => s.closed = true,
        }
        drop(s);
        self.ready.notify_one();
        Ok(())
    }

    /// The next bytes to write (all that wait), or `None` once closed and written; the
    /// last ones are written by then.
    async fn next(&self) -> Option<Bytes> {
        loop {
            let ready = self.ready.notified();
            {
                let mut s = self.state();
                if !s.bytes.is_empty() {
                    let d = s.bytes.split().freeze();
                    s.writing = d.len();
                    return Some(d);
                }
                if s.closed {
                    return None;
                }
            }
            ready.await;
        }
    }

    /// The bytes [`Outbox::next`] gave were written.
    fn written(&self) {
        self.state().writing = 0;
    }

    /// The application is gone: nothing more is queued, what waits is dropped.
    fn gone(&self) {
        let mut s = self.state();
        s.gone = true;
        LOCAL_QUEUED.fetch_sub(s.bytes.len() as u64, Ordering::Relaxed);
        s.bytes = BytesMut::new();
    }
}

/// The answering side's handle of one local connection.
pub(super) struct Local {
    /// The name in the log (never the Conn#, which tells the slot).
    pub(super) number: u64,
    /// Downstream for the application.
    pub(super) out: Arc<Outbox>,
    /// Upstream credit for the reader.
    pub(super) gate: Arc<SendGate>,
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
    fn next_chunk(&mut self, buf: &mut [u8], credit: SendCredits<'_>) -> Option<Chunk> {
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
                // The readers read only within the credit, so this never holds bytes back;
                // should it, the rest waits for a grant.
                let n = data.len().min(buf.len()).min(credit.of(conn));
                if n == 0 {
                    self.partial = Some(FromLocal::Data(conn, data));
                    return None;
                }
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
pub(super) struct Turn(pub(super) Option<(ConnId, Arc<Outbox>, ToLocal)>);

/// Hands each turn's bytes to its local connection, and lets the readers check for room;
/// names the connections that do not keep up to `stuck` (one whose writer is gone, its
/// application having left, sent its abort itself).
pub(super) async fn dispatch(
    mut turns: mpsc::Receiver<Turn>,
    budget: Arc<Budget>,
    stuck: mpsc::UnboundedSender<ConnId>,
) {
    while let Some(Turn(down)) = turns.recv().await {
        if let Some((conn, out, down)) = down {
            if let Err(Refused::Full) = out.push(&down) {
                let _ = stuck.send(conn);
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
    let out = Arc::new(Outbox::new());
    let gate = Arc::new(SendGate::new());
    let aborts = up.clone();
    let reading = gate.clone();
    let reader = local.spawn(async move {
        let mut buf = vec![0u8; READ_CHUNK];
        loop {
            // Nothing is read without credit: the application's writes then wait in its
            // socket.
            let allowed = reading.take(READ_CHUNK).await;
            budget.room().await;
            let read = r.read(&mut buf[..allowed]).await;
            reading.untake(allowed - *read.as_ref().unwrap_or(&allowed));
            match read {
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
    let outbox = out.clone();
    local.spawn(async move {
        let _ = w.as_ref().set_nodelay(true);
        while let Some(d) = outbox.next().await {
            let written = w.write_all(&d).await;
            LOCAL_QUEUED.fetch_sub(d.len() as u64, Ordering::Relaxed);
            if written.is_ok() {
                // Out of the bound before the grant for them can bring more.
                outbox.written();
                taken.add(conn, d.len() as u32);
            } else {
                // The application is gone: nothing more to write or read.
                reader_abort.abort();
                outbox.gone();
                let _ = aborts.send(FromLocal::Abort(conn));
                return;
            }
        }
        // The exit closed: finish and close the local side entirely.
        let _ = w.shutdown().await;
        reader_abort.abort();
    });
    Local {
        number: 0,
        out,
        gate,
        reader: reader.abort_handle(),
        accepted: tokio::time::Instant::now(),
        carried,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stream of one-byte records is bounded by its bytes: the window's worth is queued
    /// (in one buffer), a byte more is refused, and what the writer wrote makes room again.
    #[tokio::test]
    async fn one_byte_records_queue_up_to_the_window_in_bytes() {
        let window = credit::DOWN_WINDOW as usize;
        let out = Outbox::new();
        let byte = ToLocal::Data(Bytes::from_static(b"x"));
        for _ in 0..window {
            assert!(out.push(&byte).is_ok());
        }
        assert!(matches!(out.push(&byte), Err(Refused::Full)));
        assert_eq!(out.state().bytes.len(), window);
        // The writer takes everything waiting; until it is written, it still counts.
        let taken = out.next().await.unwrap();
        assert_eq!(taken.len(), window);
        assert!(matches!(out.push(&byte), Err(Refused::Full)));
        out.written();
        assert!(out.push(&byte).is_ok());
        // The exit's close comes after the bytes.
        assert!(out.push(&ToLocal::Close).is_ok());
        assert_eq!(out.next().await.unwrap().as_ref(), b"x");
        out.written();
        assert!(out.next().await.is_none());
        out.gone();
        assert!(matches!(out.push(&byte), Err(Refused::Gone)));
    }

    /// The reader's credit: the window, then only what is granted.
    #[tokio::test]
    async fn the_reader_takes_only_its_credit() {
        let gate = SendGate::new();
        assert_eq!(gate.take(usize::MAX).await, credit::UP_WINDOW as usize);
        let waiting = gate.take(10);
        tokio::pin!(waiting);
        assert!(futures_poll_once(waiting.as_mut()).is_none());
        gate.grant(4);
        assert_eq!(waiting.await, 4);
        gate.untake(3);
        assert_eq!(gate.take(10).await, 3);
    }

    /// Polls `f` once.
    fn futures_poll_once<F: std::future::Future + Unpin>(f: F) -> Option<F::Output> {
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        let mut f = f;
        match std::pin::Pin::new(&mut f).poll(&mut cx) {
            std::task::Poll::Ready(v) => Some(v),
            std::task::Poll::Pending => None,
        }
    }
}
